//! BGP, the installed forwarding table and routing policy as OpenConfig
//! data, and BGP back into the configuration document.
//!
//! | OpenConfig | configuration document / state |
//! |---|---|
//! | `/network-instances/network-instance[name=DEFAULT]/protocols/protocol[identifier=BGP][name=BGP]/bgp/global` | `bgp.asn`, `bgp.router_id` |
//! | `.../bgp/neighbors/neighbor[neighbor-address=A]` | `bgp.neighbors[]` entry `A`: `peer-as` ↔ `remote_as`, `description`, `auth-password` ↔ `password` (write-only), `timers/.../hold-time`, `transport/.../passive-mode` ↔ `passive`, `ebgp-multihop` ↔ `ebgp_multihop`, `apply-policy` ↔ `import_policy`/`export_policy` (one each), `afi-safis` ↔ `families` |
//! | `.../neighbor/state/session-state`, `.../afi-safi/state/prefixes` | the speaker's session state and Adj-RIB-In / Adj-RIB-Out / Loc-RIB counts |
//! | `.../bgp/rib/afi-safis/afi-safi[afi-safi-name=F]/{ipv4,ipv6}-unicast/loc-rib/routes/route[prefix=P][origin=O][path-id=I]` | a path the speaker selected for `P` (best or equal-cost; read-only): `origin` is the neighbor's address, or `BGP` for a network it originates (`bgp.networks`); `path-id` the ADD-PATH id (0 without); `valid-route` true |
//! | `.../bgp/rib/attr-sets/attr-set[index=N]` | a distinct set of those paths' attributes (`origin`, `next-hop`, `med`, `local-pref`), numbered from 0 in their order at each read; a route's `attr-index` names its set. The AS path is not served (openconfig-rib-bgp has it only as AS segments, not as one leaf) |
//! | `/network-instances/network-instance[name=N]/afts` | the forwarding table installed in the target (read-only) |
//! | `/routing-policy/...` | `bgp.policies` (read-only): rule *i* (from 1) of policy `P` is statement `i`; its prefix matches are prefix-set `P/i`, its community and large-community matches community-set `P/i`, its AS-path matches as-path-set `P/i` |
//!
//! Large communities (`A:B:C`) appear as community-set members and in
//! `set-community/inline/communities`, beside standard ones: the project
//! keeps them in the same rule, and openconfig-bgp-policy 6.2.0 has no
//! large-community set (its community-member type does not allow them,
//! a known deviation). An AS-path "contains" match is the member
//! `(^|_)ASN(_|$)`.
//!
//! Neighbors have no administrative shutdown in the document: `enabled` is
//! always true, and a Set of `false` is refused. Routing policy is served
//! read-only: a Set that changes it is refused with UNIMPLEMENTED (change
//! `bgp.policies` with `nosctl config commit`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use nos_core::config::{
    AddressFamily, BgpConfig, BgpNeighborConfig, Config, PolicyActionConfig, PolicyConfig,
    PolicyRuleConfig,
};
use tonic::Code;

use crate::backend::{Aft, BgpFamily, BgpOrigin, BgpRoute, LocRib, State};
use crate::error::Failure;
use crate::mapping::{
    b, bool_leaf, container, entries, esc, id, instance_path, leaf, obj, s, str_leaf, u, uint_leaf,
    Problems,
};
use crate::schema::{Value, BGP, BGP_PROTOCOL, IPV4_UNICAST, IPV6_UNICAST};
use crate::tree::{Children, Data};

/// The hold time of a neighbor that sets none (the document's default).
const DEFAULT_HOLD_TIME: u16 = 90;

pub(crate) fn bgp_path(ni: &str) -> String {
    format!(
        "{}/protocols/protocol[identifier={}][name={BGP_PROTOCOL}]/bgp",
        instance_path(ni),
        BGP.name
    )
}

fn neighbor_path(ni: &str, address: &str) -> String {
    format!(
        "{}/neighbors/neighbor[neighbor-address={}]",
        bgp_path(ni),
        esc(address)
    )
}

fn family_ident(f: AddressFamily) -> &'static crate::schema::Ident {
    match f {
        AddressFamily::Ipv4Unicast => &IPV4_UNICAST,
        AddressFamily::Ipv6Unicast => &IPV6_UNICAST,
    }
}

fn family_of(f: BgpFamily) -> AddressFamily {
    match f {
        BgpFamily::Ipv4Unicast => AddressFamily::Ipv4Unicast,
        BgpFamily::Ipv6Unicast => AddressFamily::Ipv6Unicast,
    }
}

/// `config` and, with state, `state` holding the same leaves plus `extra`.
fn cfg_state(
    members: &mut Vec<(&'static str, Data)>,
    cfg: Vec<(&'static str, Data)>,
    with_state: bool,
    extra: Vec<(&'static str, Data)>,
) {
    if with_state {
        let mut st = cfg.clone();
        st.extend(extra);
        members.push(("state", obj(st)));
    }
    members.push(("config", obj(cfg)));
}

fn strs(v: Option<&String>) -> Option<Data> {
    v.map(|p| Data::Leaf(Value::Strs(vec![p.clone()])))
}

/// The BGP protocol entry of the default instance.
pub(crate) fn render_bgp(bgp: &BgpConfig, state: Option<&State>, loc_rib: Option<&LocRib>) -> Data {
    let with_state = state.is_some();
    let bgp_state = state.and_then(|s| s.bgp.as_ref());
    let mut global = Vec::new();
    let mut extra = Vec::new();
    if let Some(bs) = bgp_state {
        extra.push(("total-prefixes", u(bs.total_prefixes)));
    }
    cfg_state(
        &mut global,
        vec![
            ("as", u(u64::from(bgp.asn))),
            ("router-id", s(bgp.router_id.to_string())),
        ],
        with_state,
        extra,
    );

    let neighbors: Vec<Data> = bgp
        .neighbors
        .iter()
        .map(|n| {
            let ns = bgp_state.and_then(|bs| bs.neighbors.get(&n.address));
            let address = n.address.to_string();
            let mut m = vec![("neighbor-address", s(&address))];
            let mut cfg = vec![
                ("neighbor-address", s(&address)),
                ("peer-as", u(u64::from(n.remote_as))),
                ("enabled", b(true)),
            ];
            if let Some(d) = &n.description {
                cfg.push(("description", s(d)));
            }
            let mut extra = Vec::new();
            if let Some(ns) = ns {
                extra.push(("session-state", s(ns.session_state.as_str())));
            }
            if with_state {
                let mut st = cfg.clone();
                st.extend(extra);
                m.push(("state", obj(st)));
            }
            if let Some(p) = &n.password {
                // Write-only: kept in the tree for Set, never shown.
                cfg.push(("auth-password", s(p)));
            }
            m.push(("config", obj(cfg)));

            let mut timers = Vec::new();
            let hold = vec![("hold-time", u(u64::from(n.hold_time)))];
            let negotiated = ns
                .and_then(|ns| ns.negotiated_hold_time)
                .map(|h| ("negotiated-hold-time", u(u64::from(h))));
            cfg_state(
                &mut timers,
                hold,
                with_state,
                negotiated.into_iter().collect(),
            );
            m.push(("timers", obj(timers)));

            let mut transport = Vec::new();
            cfg_state(
                &mut transport,
                vec![("passive-mode", b(n.passive))],
                with_state,
                Vec::new(),
            );
            m.push(("transport", obj(transport)));

            let mut multihop = Vec::new();
            let mut mh = vec![("enabled", b(n.ebgp_multihop.is_some()))];
            if let Some(ttl) = n.ebgp_multihop {
                mh.push(("multihop-ttl", u(u64::from(ttl))));
            }
            cfg_state(&mut multihop, mh, with_state, Vec::new());
            m.push(("ebgp-multihop", obj(multihop)));

            let mut ap = Vec::new();
            if let Some(v) = strs(n.import_policy.as_ref()) {
                ap.push(("import-policy", v));
            }
            if let Some(v) = strs(n.export_policy.as_ref()) {
                ap.push(("export-policy", v));
            }
            if !ap.is_empty() {
                let mut apply = Vec::new();
                cfg_state(&mut apply, ap, with_state, Vec::new());
                m.push(("apply-policy", obj(apply)));
            }

            // Families: the configured ones, and (in state) the active ones.
            let mut families: Vec<AddressFamily> = n.families.clone();
            if let Some(ns) = ns {
                for f in ns.families.keys() {
                    if !families.contains(&family_of(*f)) {
                        families.push(family_of(*f));
                    }
                }
            }
            let afs: Vec<Data> = families
                .iter()
                .filter_map(|f| {
                    let configured = n.families.contains(f);
                    if !configured && !with_state {
                        return None;
                    }
                    let ident = family_ident(*f);
                    let key = ("afi-safi-name", id(ident));
                    let enabled = configured || n.families.is_empty();
                    let bf = match f {
                        AddressFamily::Ipv4Unicast => BgpFamily::Ipv4Unicast,
                        AddressFamily::Ipv6Unicast => BgpFamily::Ipv6Unicast,
                    };
                    let counts = ns.and_then(|ns| ns.families.get(&bf));
                    let mut e = vec![key.clone()];
                    if with_state {
                        let mut st = vec![key.clone(), ("enabled", b(enabled))];
                        if ns.is_some() {
                            st.push(("active", b(counts.is_some())));
                        }
                        if let Some(c) = counts {
                            st.push((
                                "prefixes",
                                obj(vec![
                                    ("received", u(c.received)),
                                    ("sent", u(c.sent)),
                                    ("installed", u(c.installed)),
                                ]),
                            ));
                        }
                        e.push(("state", obj(st)));
                    }
                    if configured {
                        e.push(("config", obj(vec![key, ("enabled", b(true))])));
                    }
                    Some(obj(e))
                })
                .collect();
            if !afs.is_empty() {
                m.push(("afi-safis", obj(vec![("afi-safi", Data::List(afs))])));
            }
            obj(m)
        })
        .collect();

    let mut bgp_members = vec![("global", obj(global))];
    if !neighbors.is_empty() {
        bgp_members.push(("neighbors", obj(vec![("neighbor", Data::List(neighbors))])));
    }
    if let Some(rib) = loc_rib {
        bgp_members.push(("rib", render_rib(rib)));
    }
    let pcfg = vec![("identifier", id(&BGP)), ("name", s(BGP_PROTOCOL))];
    let mut protocol = vec![("identifier", id(&BGP)), ("name", s(BGP_PROTOCOL))];
    cfg_state(&mut protocol, pcfg, with_state, Vec::new());
    protocol.push(("bgp", obj(bgp_members)));
    obj(protocol)
}

/// The BGP RIB: the Loc-RIB per family, its routes' attributes as attribute
/// sets (one per distinct set, numbered from 0 in their order).
pub(crate) fn render_rib(rib: &LocRib) -> Data {
    type Attrs = (BgpOrigin, Option<IpAddr>, Option<u32>, Option<u32>);
    let attrs_of = |r: &BgpRoute| -> Attrs { (r.origin, r.next_hop, r.med, r.local_pref) };
    let mut sets: BTreeMap<Attrs, u64> = rib.iter().map(|r| (attrs_of(r), 0)).collect();
    for (i, index) in sets.values_mut().enumerate() {
        *index = i as u64;
    }
    let attr_sets: Vec<Data> = sets
        .iter()
        .map(|((origin, next_hop, med, local_pref), index)| {
            let mut st = vec![("index", u(*index)), ("origin", s(origin.as_str()))];
            if let Some(nh) = next_hop {
                st.push(("next-hop", s(nh.to_string())));
            }
            if let Some(med) = med {
                st.push(("med", u(u64::from(*med))));
            }
            if let Some(lp) = local_pref {
                st.push(("local-pref", u(u64::from(*lp))));
            }
            obj(vec![("index", u(*index)), ("state", obj(st))])
        })
        .collect();
    let mut families = Vec::new();
    for (ident, family, v6) in [
        (&IPV4_UNICAST, "ipv4-unicast", false),
        (&IPV6_UNICAST, "ipv6-unicast", true),
    ] {
        let routes: Vec<Data> = rib
            .iter()
            .filter(|r| r.prefix.addr().is_ipv6() == v6)
            .map(|r| {
                let prefix = s(r.prefix.to_string());
                let origin = match r.peer {
                    Some(a) => s(a.to_string()),
                    None => id(&BGP),
                };
                let path_id = u(u64::from(r.path_id));
                let keys = vec![("prefix", prefix), ("origin", origin), ("path-id", path_id)];
                let mut st = keys.clone();
                st.push(("attr-index", u(sets[&attrs_of(r)])));
                st.push(("valid-route", b(true)));
                let mut e = keys;
                e.push(("state", obj(st)));
                obj(e)
            })
            .collect();
        let key = ("afi-safi-name", id(ident));
        let mut f = vec![key.clone(), ("state", obj(vec![key]))];
        if !routes.is_empty() {
            f.push((
                family,
                obj(vec![(
                    "loc-rib",
                    obj(vec![("routes", obj(vec![("route", Data::List(routes))]))]),
                )]),
            ));
        }
        families.push(obj(f));
    }
    let mut members = Vec::new();
    if !attr_sets.is_empty() {
        members.push(("attr-sets", obj(vec![("attr-set", Data::List(attr_sets))])));
    }
    members.push(("afi-safis", obj(vec![("afi-safi", Data::List(families))])));
    obj(members)
}

/// The installed forwarding table of one VRF.
pub(crate) fn render_aft(aft: &Aft) -> Data {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (prefix, group) in &aft.entries {
        let p = prefix.to_string();
        let mut st = vec![("prefix", s(&p))];
        if let Some(g) = group {
            st.push(("next-hop-group", u(*g)));
        }
        let e = obj(vec![("prefix", s(&p)), ("state", obj(st))]);
        match prefix {
            IpNet::V4(_) => v4.push(e),
            IpNet::V6(_) => v6.push(e),
        }
    }
    let groups: Vec<Data> = aft
        .next_hop_groups
        .iter()
        .map(|(gid, members)| {
            let hops: Vec<Data> = members
                .iter()
                .map(|(index, weight)| {
                    obj(vec![
                        ("index", u(*index)),
                        (
                            "state",
                            obj(vec![("index", u(*index)), ("weight", u(*weight))]),
                        ),
                    ])
                })
                .collect();
            let mut g = vec![("id", u(*gid)), ("state", obj(vec![("id", u(*gid))]))];
            if !hops.is_empty() {
                g.push(("next-hops", obj(vec![("next-hop", Data::List(hops))])));
            }
            obj(g)
        })
        .collect();
    let hops: Vec<Data> = aft
        .next_hops
        .iter()
        .map(|(index, nh)| {
            let mut st = vec![("index", u(*index))];
            if let Some(ip) = nh.ip_address {
                st.push(("ip-address", s(ip.to_string())));
            }
            if let Some(mac) = &nh.mac_address {
                st.push(("mac-address", s(mac)));
            }
            let mut h = vec![("index", u(*index)), ("state", obj(st))];
            if let Some((port, sub)) = &nh.interface {
                h.push((
                    "interface-ref",
                    obj(vec![(
                        "state",
                        obj(vec![
                            ("interface", s(port)),
                            ("subinterface", u(u64::from(*sub))),
                        ]),
                    )]),
                ));
            }
            obj(h)
        })
        .collect();
    let mut m = Vec::new();
    let list = |name: &'static str, e: Vec<Data>| obj(vec![(name, Data::List(e))]);
    m.push(("ipv4-unicast", list("ipv4-entry", v4)));
    m.push(("ipv6-unicast", list("ipv6-entry", v6)));
    m.push(("next-hop-groups", list("next-hop-group", groups)));
    m.push(("next-hops", list("next-hop", hops)));
    obj(m)
}

/// The name of the sets statement `index` (from 1) of policy `policy`
/// matches on.
fn set_name(policy: &str, index: usize) -> String {
    format!("{policy}/{index}")
}

/// `exact` or `min..max`, as openconfig-routing-policy writes a
/// masklength-range; the bounds are what the speaker applies (a `ge`
/// alone reaches the family's longest prefix).
fn masklength_range(prefix: &IpNet, ge: Option<u8>, le: Option<u8>) -> String {
    let len = prefix.prefix_len();
    let lo = ge.unwrap_or(len);
    let hi = le.unwrap_or(if ge.is_some() {
        prefix.max_prefix_len()
    } else {
        len
    });
    if lo == len && hi == len {
        "exact".into()
    } else {
        format!("{lo}..{hi}")
    }
}

/// The routing policy of `config` (`bgp.policies`).
pub(crate) fn render_routing_policy(config: &Config, with_state: bool) -> Data {
    let policies: &[PolicyConfig] = config.bgp.as_ref().map_or(&[], |b| &b.policies);
    let mut prefix_sets = Vec::new();
    let mut community_sets = Vec::new();
    let mut as_path_sets = Vec::new();
    let mut definitions = Vec::new();
    for p in policies {
        let mut statements = Vec::new();
        for (i, rule) in p.rules.iter().enumerate() {
            let name = set_name(&p.name, i + 1);
            let sets = rule_sets(rule, &name, with_state);
            let mut conditions = Vec::new();
            if let Some(ps) = sets.prefix_set {
                prefix_sets.push(ps);
                let mut c = Vec::new();
                cfg_state(
                    &mut c,
                    vec![("prefix-set", s(&name)), ("match-set-options", s("ANY"))],
                    with_state,
                    Vec::new(),
                );
                conditions.push(("match-prefix-set", obj(c)));
            }
            let mut bgp_conditions = Vec::new();
            if let Some(cs) = sets.community_set {
                community_sets.push(cs);
                cfg_state(
                    &mut bgp_conditions,
                    vec![("community-set", s(&name))],
                    with_state,
                    Vec::new(),
                );
            }
            if let Some(ap) = sets.as_path_set {
                as_path_sets.push(ap);
                let mut c = Vec::new();
                cfg_state(
                    &mut c,
                    vec![("as-path-set", s(&name)), ("match-set-options", s("ALL"))],
                    with_state,
                    Vec::new(),
                );
                bgp_conditions.push(("match-as-path-set", obj(c)));
            }
            if !bgp_conditions.is_empty() {
                conditions.push(("bgp-conditions", obj(bgp_conditions)));
            }
            let index = (i + 1).to_string();
            let mut st = vec![("name", s(&index))];
            cfg_state(&mut st, vec![("name", s(&index))], with_state, Vec::new());
            if !conditions.is_empty() {
                st.push(("conditions", obj(conditions)));
            }
            st.push(("actions", rule_actions(rule, with_state)));
            statements.push(obj(st));
        }
        let mut d = vec![("name", s(&p.name))];
        cfg_state(&mut d, vec![("name", s(&p.name))], with_state, Vec::new());
        if !statements.is_empty() {
            d.push((
                "statements",
                obj(vec![("statement", Data::List(statements))]),
            ));
        }
        definitions.push(obj(d));
    }
    let list = |name: &'static str, e: Vec<Data>| obj(vec![(name, Data::List(e))]);
    obj(vec![
        (
            "defined-sets",
            obj(vec![
                ("prefix-sets", list("prefix-set", prefix_sets)),
                (
                    "bgp-defined-sets",
                    obj(vec![
                        ("community-sets", list("community-set", community_sets)),
                        ("as-path-sets", list("as-path-set", as_path_sets)),
                    ]),
                ),
            ]),
        ),
        ("policy-definitions", list("policy-definition", definitions)),
    ])
}

struct RuleSets {
    prefix_set: Option<Data>,
    community_set: Option<Data>,
    as_path_set: Option<Data>,
}

fn rule_sets(rule: &PolicyRuleConfig, name: &str, with_state: bool) -> RuleSets {
    let m = &rule.matches;
    let prefix_set = (!m.prefixes.is_empty()).then(|| {
        let v4 = m.prefixes.iter().any(|p| p.prefix.addr().is_ipv4());
        let v6 = m.prefixes.iter().any(|p| !p.prefix.addr().is_ipv4());
        let mode = match (v4, v6) {
            (true, false) => "IPV4",
            (false, true) => "IPV6",
            _ => "MIXED",
        };
        let prefixes: Vec<Data> = m
            .prefixes
            .iter()
            .map(|p| {
                let ip = p.prefix.to_string();
                let range = masklength_range(&p.prefix, p.ge, p.le);
                let mut e = vec![("ip-prefix", s(&ip)), ("masklength-range", s(&range))];
                cfg_state(
                    &mut e,
                    vec![("ip-prefix", s(&ip)), ("masklength-range", s(&range))],
                    with_state,
                    Vec::new(),
                );
                obj(e)
            })
            .collect();
        let mut e = vec![("name", s(name))];
        cfg_state(
            &mut e,
            vec![("name", s(name)), ("mode", s(mode))],
            with_state,
            Vec::new(),
        );
        e.push(("prefixes", obj(vec![("prefix", Data::List(prefixes))])));
        obj(e)
    });
    // A rule's community and large-community matches must both hold.
    let members: Vec<String> = m
        .community
        .iter()
        .chain(m.large_community.iter())
        .cloned()
        .collect();
    let community_set = (!members.is_empty()).then(|| {
        let mut e = vec![("community-set-name", s(name))];
        cfg_state(
            &mut e,
            vec![
                ("community-set-name", s(name)),
                ("community-member", Data::Leaf(Value::Strs(members))),
                ("match-set-options", s("ALL")),
            ],
            with_state,
            Vec::new(),
        );
        obj(e)
    });
    // AS-path members as regular expressions over the AS path: an AS
    // number anywhere in it, and the rule's own expression.
    let as_members: Vec<String> = m
        .as_path_contains
        .map(|asn| format!("(^|_){asn}(_|$)"))
        .into_iter()
        .chain(m.as_path_regex.iter().cloned())
        .collect();
    let as_path_set = (!as_members.is_empty()).then(|| {
        let mut e = vec![("as-path-set-name", s(name))];
        cfg_state(
            &mut e,
            vec![
                ("as-path-set-name", s(name)),
                ("as-path-set-member", Data::Leaf(Value::Strs(as_members))),
            ],
            with_state,
            Vec::new(),
        );
        obj(e)
    });
    RuleSets {
        prefix_set,
        community_set,
        as_path_set,
    }
}

fn rule_actions(rule: &PolicyRuleConfig, with_state: bool) -> Data {
    let result = match rule.action {
        PolicyActionConfig::Accept => "ACCEPT_ROUTE",
        PolicyActionConfig::Reject => "REJECT_ROUTE",
    };
    let mut a = Vec::new();
    cfg_state(
        &mut a,
        vec![("policy-result", s(result))],
        with_state,
        Vec::new(),
    );
    let set = &rule.set;
    let mut bgp = Vec::new();
    let mut leaves = Vec::new();
    if let Some(lp) = set.local_pref {
        leaves.push(("set-local-pref", u(u64::from(lp))));
    }
    if let Some(med) = set.med {
        leaves.push(("set-med", u(u64::from(med))));
    }
    if let Some(nh) = set.next_hop {
        leaves.push(("set-next-hop", s(nh.to_string())));
    }
    if !leaves.is_empty() {
        cfg_state(&mut bgp, leaves, with_state, Vec::new());
    }
    if let Some(n) = set.as_path_prepend.filter(|n| *n > 0) {
        let mut p = Vec::new();
        cfg_state(
            &mut p,
            vec![("repeat-n", u(u64::from(n)))],
            with_state,
            Vec::new(),
        );
        bgp.push(("set-as-path-prepend", obj(p)));
    }
    let added: Vec<String> = set
        .communities_add
        .iter()
        .chain(set.large_communities_add.iter())
        .cloned()
        .collect();
    if !added.is_empty() {
        let mut c = Vec::new();
        cfg_state(
            &mut c,
            vec![("method", s("INLINE")), ("options", s("ADD"))],
            with_state,
            Vec::new(),
        );
        let mut inline = Vec::new();
        cfg_state(
            &mut inline,
            vec![("communities", Data::Leaf(Value::Strs(added)))],
            with_state,
            Vec::new(),
        );
        c.push(("inline", obj(inline)));
        bgp.push(("set-community", obj(c)));
    }
    if !bgp.is_empty() {
        a.push(("bgp-actions", obj(bgp)));
    }
    obj(a)
}

/// The OpenConfig path of what configuration error path `bgp.<rest>`
/// names, when the served models express it.
pub(crate) fn gnmi_path_of(config: &Config, rest: &str) -> Option<String> {
    let bgp = config.bgp.as_ref()?;
    let base = bgp_path(crate::schema::DEFAULT_NI);
    match rest {
        "asn" => return Some(format!("{base}/global/config/as")),
        "router_id" => return Some(format!("{base}/global/config/router-id")),
        _ => {}
    }
    let tail = rest.strip_prefix("neighbors[")?;
    let (index, field) = tail.split_once(']')?;
    let n = bgp.neighbors.get(index.parse::<usize>().ok()?)?;
    let npath = neighbor_path(crate::schema::DEFAULT_NI, &n.address.to_string());
    let leaf = match field.trim_start_matches('.') {
        "remote_as" => "config/peer-as",
        "description" => "config/description",
        "password" => "config/auth-password",
        "hold_time" => "timers/config/hold-time",
        "passive" => "transport/config/passive-mode",
        "ebgp_multihop" => "ebgp-multihop/config/multihop-ttl",
        "import_policy" => "apply-policy/config/import-policy",
        "export_policy" => "apply-policy/config/export-policy",
        "families" => "afi-safis",
        _ => return Some(npath),
    };
    Some(format!("{npath}/{leaf}"))
}

// ---------------------------------------------------------------- back to the document

/// Refuses a change to `/routing-policy` (served read-only).
pub(crate) fn check_routing_policy(root: &Children, old: &Config, p: &mut Problems) {
    let now = render_routing_policy(old, false);
    let given = root
        .get("routing-policy")
        .cloned()
        .unwrap_or_else(Data::empty);
    if given != now {
        p.0.push(Failure::new(
            Code::Unimplemented,
            "/routing-policy",
            "routing policy is read-only over gNMI; change bgp.policies in the configuration \
             document (nosctl config commit)",
        ));
    }
}

/// The `bgp:` section the BGP protocol entry `entry` (of the default
/// instance) describes, `old` supplying what the served models do not
/// express. `None` for the entry means the protocol is absent.
pub(crate) fn bgp_from(
    entry: Option<&Children>,
    ni: &str,
    old: Option<&BgpConfig>,
    p: &mut Problems,
) -> Option<BgpConfig> {
    let path = bgp_path(ni);
    let Some(entry) = entry else {
        if let Some(o) = old {
            if !o.networks.is_empty()
                || !o.policies.is_empty()
                || !o.upstreams.is_empty()
                || o.default_route.is_some()
            {
                p.add(
                    &path,
                    "removing BGP would also remove its networks, policies, upstreams and \
                     default route, which gNMI does not show; remove them first with \
                     nosctl config commit",
                );
                return old.cloned();
            }
        }
        return None;
    };
    let empty = Children::new();
    let bgp = container(entry, "bgp").unwrap_or(&empty);
    let global = container(bgp, "global")
        .and_then(|g| container(g, "config"))
        .unwrap_or(&empty);
    let asn = uint_leaf(global, "as").or(old.map(|o| u64::from(o.asn)));
    let router_id = str_leaf(global, "router-id")
        .and_then(|r| r.parse::<Ipv4Addr>().ok())
        .or(old.map(|o| o.router_id));
    let (Some(asn), Some(router_id)) = (asn, router_id) else {
        p.add(
            &format!("{path}/global/config"),
            "BGP needs its as and router-id",
        );
        return old.cloned();
    };
    let mut neighbors = Vec::new();
    let list = container(bgp, "neighbors").map_or(&[][..], |c| entries(c, "neighbor"));
    for e in list {
        let Some(nc) = e.children() else { continue };
        let Some(address) = str_leaf(nc, "neighbor-address") else {
            continue;
        };
        let Ok(ip) = address.parse::<IpAddr>() else {
            continue;
        };
        let npath = neighbor_path(ni, address);
        p.mirror(nc, "neighbor-address", &npath);
        let prev = old.and_then(|o| o.neighbors.iter().find(|n| n.address == ip));
        if let Some(n) = neighbor_from(nc, ip, &npath, prev, p) {
            neighbors.push(n);
        }
    }
    // The document's order: surviving neighbors first, then new ones.
    let mut ordered = Vec::with_capacity(neighbors.len());
    for o in old.map_or(&[][..], |o| &o.neighbors) {
        if let Some(i) = neighbors.iter().position(|n| n.address == o.address) {
            ordered.push(neighbors.remove(i));
        }
    }
    ordered.extend(neighbors);
    let base = old.cloned().unwrap_or(BgpConfig {
        asn: 0,
        router_id,
        neighbors: Vec::new(),
        networks: Vec::new(),
        policies: Vec::new(),
        port: 179,
        upstreams: Vec::new(),
        default_route: None,
    });
    Some(BgpConfig {
        asn: u32::try_from(asn).unwrap_or(u32::MAX),
        router_id,
        neighbors: ordered,
        ..base
    })
}

fn neighbor_from(
    nc: &Children,
    address: IpAddr,
    npath: &str,
    prev: Option<&BgpNeighborConfig>,
    p: &mut Problems,
) -> Option<BgpNeighborConfig> {
    let empty = Children::new();
    let cfg = container(nc, "config").unwrap_or(&empty);
    let Some(remote_as) = uint_leaf(cfg, "peer-as") else {
        p.add(
            &format!("{npath}/config/peer-as"),
            "a neighbor needs its peer-as",
        );
        return None;
    };
    if bool_leaf(cfg, "enabled") == Some(false) {
        p.add(
            &format!("{npath}/config/enabled"),
            "this server cannot shut a neighbor down administratively; remove the neighbor \
             instead",
        );
        return None;
    }
    let sub = |name: &str| container(nc, name).and_then(|c| container(c, "config"));
    let hold_time = sub("timers")
        .and_then(|c| uint_leaf(c, "hold-time"))
        .map_or(DEFAULT_HOLD_TIME, |h| u16::try_from(h).unwrap_or(u16::MAX));
    let passive = sub("transport")
        .and_then(|c| bool_leaf(c, "passive-mode"))
        .unwrap_or(false);
    let multihop = sub("ebgp-multihop");
    let ebgp_multihop = match (
        multihop.and_then(|c| bool_leaf(c, "enabled")),
        multihop.and_then(|c| uint_leaf(c, "multihop-ttl")),
    ) {
        (Some(true), Some(ttl)) => Some(u8::try_from(ttl).unwrap_or(u8::MAX)),
        (Some(true), None) => {
            p.add(
                &format!("{npath}/ebgp-multihop/config/multihop-ttl"),
                "ebgp-multihop is enabled without a multihop-ttl",
            );
            return None;
        }
        _ => None,
    };
    let apply = sub("apply-policy");
    let mut one_policy = |name: &str| -> Option<Option<String>> {
        match apply.and_then(|c| leaf(c, name)) {
            Some(Value::Strs(v)) if v.len() > 1 => {
                p.add(
                    &format!("{npath}/apply-policy/config/{name}"),
                    format!(
                        "this server applies one {name} per neighbor; {} were given",
                        v.len()
                    ),
                );
                None
            }
            Some(Value::Strs(v)) => Some(v.first().cloned()),
            _ => Some(None),
        }
    };
    let import_policy = one_policy("import-policy")?;
    let export_policy = one_policy("export-policy")?;
    let mut families = Vec::new();
    let afs = container(nc, "afi-safis").map_or(&[][..], |c| entries(c, "afi-safi"));
    for e in afs {
        let Some(ac) = e.children() else { continue };
        let f = match leaf(ac, "afi-safi-name") {
            Some(Value::Ident(i)) if **i == IPV4_UNICAST => AddressFamily::Ipv4Unicast,
            Some(Value::Ident(i)) if **i == IPV6_UNICAST => AddressFamily::Ipv6Unicast,
            _ => continue,
        };
        let apath = format!(
            "{npath}/afi-safis/afi-safi[afi-safi-name={}]",
            family_ident(f).name
        );
        p.mirror(ac, "afi-safi-name", &apath);
        let enabled = container(ac, "config")
            .and_then(|c| bool_leaf(c, "enabled"))
            .unwrap_or(true);
        if enabled && !families.contains(&f) {
            families.push(f);
        }
    }
    families.sort_by_key(|f| matches!(f, AddressFamily::Ipv6Unicast));
    Some(BgpNeighborConfig {
        address,
        remote_as: u32::try_from(remote_as).unwrap_or(u32::MAX),
        description: str_leaf(cfg, "description").map(str::to_owned),
        hold_time,
        passive,
        families,
        import_policy,
        export_policy,
        next_hop_self: prev.is_some_and(|n| n.next_hop_self),
        ebgp_multihop,
        password: str_leaf(cfg, "auth-password").map(str::to_owned),
        soft_reconfiguration_inbound: prev.is_some_and(|n| n.soft_reconfiguration_inbound),
    })
}
