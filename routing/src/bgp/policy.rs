//! Routing policies: prefix lists with ge/le, community and AS-path matches;
//! accept or reject; set local-pref, MED, communities and AS-path prepend.

use super::msg::{AsSegment, PathAttrs};
use ipnet::IpNet;
use nos_core::config::{parse_community, PolicyActionConfig, PolicyConfig};

/// A compiled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    prefixes: Vec<(IpNet, u8, u8)>,
    community: Option<u32>,
    as_path_contains: Option<u32>,
    accept: bool,
    local_pref: Option<u32>,
    med: Option<u32>,
    prepend: u8,
    communities_add: Vec<u32>,
}

impl Policy {
    /// Compiles a validated policy (invalid communities are skipped with a log line).
    pub fn compile(p: &PolicyConfig) -> Policy {
        let community = |s: &String| match parse_community(s) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(policy = %p.name, "{e}");
                None
            }
        };
        let rules = p
            .rules
            .iter()
            .map(|r| Rule {
                prefixes: r
                    .matches
                    .prefixes
                    .iter()
                    .map(|m| {
                        let len = m.prefix.prefix_len();
                        let ge = m.ge.unwrap_or(len);
                        let le = m.le.unwrap_or(if m.ge.is_some() {
                            m.prefix.max_prefix_len()
                        } else {
                            len
                        });
                        (m.prefix, ge, le)
                    })
                    .collect(),
                community: r.matches.community.as_ref().and_then(community),
                as_path_contains: r.matches.as_path_contains,
                accept: r.action == PolicyActionConfig::Accept,
                local_pref: r.set.local_pref,
                med: r.set.med,
                prepend: r.set.as_path_prepend.unwrap_or(0),
                communities_add: r.set.communities_add.iter().filter_map(community).collect(),
            })
            .collect();
        Policy {
            name: p.name.clone(),
            rules,
        }
    }

    /// Runs the policy: `None` when rejected, else the attributes as changed by
    /// the accepting rule. `local_as` is what AS-path prepend repeats.
    pub fn apply(&self, prefix: &IpNet, attrs: &PathAttrs, local_as: u32) -> Option<PathAttrs> {
        for r in &self.rules {
            if !r.matches(prefix, attrs) {
                continue;
            }
            if !r.accept {
                return None;
            }
            let mut out = attrs.clone();
            if let Some(lp) = r.local_pref {
                out.local_pref = Some(lp);
            }
            if let Some(m) = r.med {
                out.med = Some(m);
            }
            for c in &r.communities_add {
                if !out.communities.contains(c) {
                    out.communities.push(*c);
                }
            }
            if r.prepend > 0 {
                let extra = vec![local_as; usize::from(r.prepend)];
                match out.as_path.first_mut() {
                    Some(AsSegment::Sequence(seq)) => {
                        seq.splice(0..0, extra);
                    }
                    _ => out.as_path.insert(0, AsSegment::Sequence(extra)),
                }
            }
            return Some(out);
        }
        None
    }
}

impl Rule {
    fn matches(&self, prefix: &IpNet, attrs: &PathAttrs) -> bool {
        if !self.prefixes.is_empty()
            && !self.prefixes.iter().any(|(net, ge, le)| {
                net.contains(prefix) && (*ge..=*le).contains(&prefix.prefix_len())
            })
        {
            return false;
        }
        if let Some(c) = self.community {
            if !attrs.communities.contains(&c) {
                return false;
            }
        }
        if let Some(asn) = self.as_path_contains {
            let has = attrs.as_path.iter().any(|s| match s {
                AsSegment::Sequence(v)
                | AsSegment::Set(v)
                | AsSegment::ConfedSequence(v)
                | AsSegment::ConfedSet(v) => v.contains(&asn),
            });
            if !has {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::msg::Origin;

    fn policy(yaml: &str) -> Policy {
        Policy::compile(&serde_yaml::from_str(yaml).unwrap())
    }

    fn attrs(path: Vec<u32>) -> PathAttrs {
        PathAttrs::new(
            Origin::Igp,
            vec![AsSegment::Sequence(path)],
            Some("192.0.2.2".parse().unwrap()),
        )
    }

    #[test]
    fn prefix_lists_with_ge_and_le() {
        let p = policy(
            "name: p\nrules:\n  - match: {prefixes: [{prefix: 198.18.0.0/15, ge: 16, le: 24}]}\n    set: {local_pref: 200}\n    action: accept\n",
        );
        let a = attrs(vec![64501]);
        assert_eq!(
            p.apply(&"198.18.4.0/24".parse().unwrap(), &a, 64500)
                .unwrap()
                .local_pref,
            Some(200)
        );
        assert!(
            p.apply(&"198.18.0.0/15".parse().unwrap(), &a, 64500)
                .is_none(),
            "shorter than ge"
        );
        assert!(
            p.apply(&"198.18.4.0/25".parse().unwrap(), &a, 64500)
                .is_none(),
            "longer than le"
        );
        assert!(
            p.apply(&"203.0.113.0/24".parse().unwrap(), &a, 64500)
                .is_none(),
            "outside: no rule matches"
        );
    }

    #[test]
    fn first_matching_rule_decides_and_sets_apply() {
        let p = policy(
            "name: p\nrules:\n  - match: {as_path_contains: 64666}\n    action: reject\n  - set: {med: 5, as_path_prepend: 2, communities_add: [\"64500:7\"]}\n    action: accept\n",
        );
        assert!(p
            .apply(
                &"192.0.2.0/24".parse().unwrap(),
                &attrs(vec![64501, 64666]),
                64500
            )
            .is_none());
        let out = p
            .apply(&"192.0.2.0/24".parse().unwrap(), &attrs(vec![64501]), 64500)
            .unwrap();
        assert_eq!(out.med, Some(5));
        assert_eq!(out.communities, vec![(64500 << 16) | 7]);
        assert_eq!(
            out.as_path,
            vec![AsSegment::Sequence(vec![64500, 64500, 64501])]
        );
    }
}
