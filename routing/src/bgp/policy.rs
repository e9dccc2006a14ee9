//! Routing policies: prefix lists with ge/le, community and AS-path matches;
//! accept or reject; set local-pref, MED, communities and AS-path prepend.

use super::msg::{AsSegment, PathAttrs};
use ipnet::IpNet;
use nos_core::config::{
    as_path_regex, parse_community, parse_large_community, PolicyActionConfig, PolicyConfig,
};
use std::net::IpAddr;

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    prefixes: Vec<(IpNet, u8, u8)>,
    community: Option<u32>,
    large_community: Option<(u32, u32, u32)>,
    as_path_contains: Option<u32>,
    as_path_regex: Option<regex::Regex>,
    large_communities_add: Vec<(u32, u32, u32)>,
    next_hop: Option<IpAddr>,
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
                large_community: r
                    .matches
                    .large_community
                    .as_deref()
                    .and_then(|c| large(&p.name, c)),
                as_path_contains: r.matches.as_path_contains,
                as_path_regex: r.matches.as_path_regex.as_deref().and_then(
                    |x| match as_path_regex(x) {
                        Ok(re) => Some(re),
                        Err(e) => {
                            tracing::error!(policy = %p.name, "{e}");
                            None
                        }
                    },
                ),
                large_communities_add: r
                    .set
                    .large_communities_add
                    .iter()
                    .filter_map(|c| large(&p.name, c))
                    .collect(),
                next_hop: r.set.next_hop,
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
            for c in &r.large_communities_add {
                if !out.large_communities.contains(c) {
                    out.large_communities.push(*c);
                }
            }
            if let Some(nh) = r.next_hop {
                out.next_hop = Some(nh);
                out.link_local_next_hop = None;
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

fn large(policy: &str, s: &str) -> Option<(u32, u32, u32)> {
    match parse_large_community(s) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(%policy, "{e}");
            None
        }
    }
}

impl PartialEq for Policy {
    /// Two policies are equal when compiled from the same configuration text.
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && format!("{:?}", self.rules) == format!("{:?}", o.rules)
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
        if let Some(c) = self.large_community {
            if !attrs.large_communities.contains(&c) {
                return false;
            }
        }
        if let Some(re) = &self.as_path_regex {
            if !re.is_match(&crate::bgp::speaker::as_path_string(&attrs.as_path)) {
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
    fn as_path_regex_large_communities_and_next_hop() {
        let p = policy(
            "name: p\nrules:\n  - match: {as_path_regex: \"_64666_\"}\n    action: reject\n  - match: {as_path_regex: \"^64501_\", large_community: \"64500:1:2\"}\n    set: {large_communities_add: [\"64500:7:7\"], next_hop: 192.0.2.99}\n    action: accept\n",
        );
        let pfx = "192.0.2.0/24".parse().unwrap();
        let mut a = attrs(vec![64501, 64502]);
        a.large_communities.push((64500, 1, 2));
        let out = p.apply(&pfx, &a, 64500).expect("accepted");
        assert!(out.large_communities.contains(&(64500, 7, 7)));
        assert_eq!(out.next_hop, Some("192.0.2.99".parse().unwrap()));
        assert!(
            p.apply(&pfx, &attrs(vec![64501, 64666, 64502]), 64500)
                .is_none(),
            "_64666_ in the middle"
        );
        assert!(
            p.apply(&pfx, &attrs(vec![64501, 64502]), 64500).is_none(),
            "no large community"
        );
        let mut b = attrs(vec![645011]);
        b.large_communities.push((64500, 1, 2));
        assert!(
            p.apply(&pfx, &b, 64500).is_none(),
            "_ is a delimiter: 645011 is not 64501"
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
