//! Checks `p4/programs/nos.p4info.txtpb`: it parses as a P4Info, holds every
//! table, action, selector and packet header the control plane resolves by
//! name, with the expected keys and parameters, uses well-formed and unique
//! ids, and agrees with the `@name`/`@id` annotations of `nos.p4`.

use p4runtime_proto::p4::config::v1::{self as cfg, match_field::MatchType, p4_ids, P4Info};
use p4runtime_proto::text_format::p4info_from_text;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

fn programs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../programs")
}

fn load() -> P4Info {
    let path = programs_dir().join("nos.p4info.txtpb");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    p4info_from_text(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn preamble_name(p: &Option<cfg::Preamble>) -> &str {
    p.as_ref().map(|p| p.name.as_str()).unwrap_or("")
}

fn preamble_id(p: &Option<cfg::Preamble>) -> u32 {
    p.as_ref().map(|p| p.id).unwrap_or(0)
}

use MatchType::{Exact, Lpm, Range, Ternary};

/// The key fields of the two ACL tables.
const ACL_KEYS: &[(&str, i32, MatchType)] = &[
    ("in_port", 9, Ternary),
    ("src_mac", 48, Ternary),
    ("dst_mac", 48, Ternary),
    ("ether_type", 16, Ternary),
    ("vlan_id", 12, Ternary),
    ("src_ipv4", 32, Ternary),
    ("dst_ipv4", 32, Ternary),
    ("src_ipv6", 128, Ternary),
    ("dst_ipv6", 128, Ternary),
    ("ip_proto", 8, Ternary),
    ("l4_src_port", 16, Range),
    ("l4_dst_port", 16, Range),
    ("tcp_flags", 8, Ternary),
    ("dscp", 6, Ternary),
    ("ttl", 8, Ternary),
];

/// A table: name, key fields (name, bit width, match kind) in order, actions.
type TableSpec = (
    &'static str,
    Vec<(&'static str, i32, MatchType)>,
    Vec<&'static str>,
);

/// Tables the compiler needs.
fn expected_tables() -> Vec<TableSpec> {
    vec![
        (
            "l3_admit",
            vec![("dst_mac", 48, Ternary), ("in_port", 9, Ternary)],
            vec!["admit_to_l3", "NoAction"],
        ),
        (
            "ingress_rif",
            vec![("in_port", 9, Exact), ("vlan_id", 12, Exact)],
            vec!["set_ingress_rif", "NoAction"],
        ),
        (
            "acl_pre_ingress",
            ACL_KEYS.to_vec(),
            vec![
                "set_vrf",
                "acl_forward",
                "acl_drop",
                "acl_trap",
                "acl_copy",
                "NoAction",
            ],
        ),
        (
            "ipv4_lpm",
            vec![("vrf_id", 32, Exact), ("ipv4_dst", 32, Lpm)],
            vec!["set_nexthop_id", "set_wcmp_group_id", "drop", "to_cpu"],
        ),
        (
            "ipv6_lpm",
            vec![("vrf_id", 32, Exact), ("ipv6_dst", 128, Lpm)],
            vec!["set_nexthop_id", "set_wcmp_group_id", "drop", "to_cpu"],
        ),
        (
            "wcmp_group",
            vec![("wcmp_group_id", 32, Exact)],
            vec!["set_nexthop_id", "NoAction"],
        ),
        (
            "nexthop",
            vec![("nexthop_id", 32, Exact)],
            vec!["set_ip_nexthop", "drop"],
        ),
        (
            "neighbor",
            vec![("rif_id", 32, Exact), ("neighbor_ip", 128, Exact)],
            vec!["set_dst_mac", "set_dst_mac_and_port", "neighbor_miss"],
        ),
        (
            "router_interface",
            vec![("rif_id", 32, Exact)],
            vec![
                "set_port_and_src_mac",
                "set_port_and_src_mac_and_vlan",
                "drop",
            ],
        ),
        (
            "acl_ingress",
            ACL_KEYS.to_vec(),
            vec![
                "acl_forward",
                "acl_drop",
                "acl_trap",
                "acl_copy",
                "NoAction",
            ],
        ),
    ]
}

/// Actions and their parameters (name, bit width), in order.
fn expected_actions() -> Vec<(&'static str, Vec<(&'static str, i32)>)> {
    vec![
        ("NoAction", vec![]),
        ("admit_to_l3", vec![]),
        ("set_ingress_rif", vec![("rif_id", 32), ("vrf_id", 32)]),
        ("set_vrf", vec![("vrf_id", 32)]),
        ("acl_forward", vec![]),
        ("acl_drop", vec![]),
        ("acl_trap", vec![]),
        ("acl_copy", vec![]),
        ("set_nexthop_id", vec![("nexthop_id", 32)]),
        ("set_wcmp_group_id", vec![("wcmp_group_id", 32)]),
        ("drop", vec![]),
        ("to_cpu", vec![]),
        ("set_ip_nexthop", vec![("rif_id", 32), ("neighbor_ip", 128)]),
        ("set_dst_mac", vec![("dst_mac", 48)]),
        (
            "set_dst_mac_and_port",
            vec![("dst_mac", 48), ("port", 9), ("tagged", 1)],
        ),
        ("set_port_and_src_mac", vec![("port", 9), ("src_mac", 48)]),
        (
            "set_port_and_src_mac_and_vlan",
            vec![("port", 9), ("src_mac", 48), ("vlan_id", 12)],
        ),
        ("neighbor_miss", vec![]),
    ]
}

#[test]
fn parses_as_v1model_p4info() {
    let info = load();
    assert_eq!(
        info.pkg_info.as_ref().map(|p| p.arch.as_str()),
        Some("v1model")
    );
}

#[test]
fn tables_have_the_expected_keys_and_actions() {
    let info = load();
    let action_names: HashMap<u32, &str> = info
        .actions
        .iter()
        .map(|a| (preamble_id(&a.preamble), preamble_name(&a.preamble)))
        .collect();
    let expected = expected_tables();
    let names: BTreeSet<&str> = info
        .tables
        .iter()
        .map(|t| preamble_name(&t.preamble))
        .collect();
    let want: BTreeSet<&str> = expected.iter().map(|t| t.0).collect();
    assert_eq!(names, want, "table set");

    for (name, keys, actions) in expected {
        let t = info
            .tables
            .iter()
            .find(|t| preamble_name(&t.preamble) == name)
            .unwrap();
        let got: Vec<(&str, i32, Option<MatchType>)> = t
            .match_fields
            .iter()
            .map(|m| {
                let kind = match m.r#match {
                    Some(cfg::match_field::Match::MatchType(k)) => MatchType::try_from(k).ok(),
                    _ => None,
                };
                (m.name.as_str(), m.bitwidth, kind)
            })
            .collect();
        let want: Vec<(&str, i32, Option<MatchType>)> =
            keys.iter().map(|&(n, w, k)| (n, w, Some(k))).collect();
        assert_eq!(got, want, "keys of {name}");
        let field_ids: Vec<u32> = t.match_fields.iter().map(|m| m.id).collect();
        assert_eq!(
            field_ids,
            (1..=field_ids.len() as u32).collect::<Vec<_>>(),
            "field ids of {name}"
        );

        let refs: Vec<&str> = t
            .action_refs
            .iter()
            .map(|r| {
                *action_names
                    .get(&r.id)
                    .unwrap_or_else(|| panic!("{name} refers to undefined action {:#x}", r.id))
            })
            .collect();
        assert_eq!(refs, actions, "actions of {name}");
        if t.const_default_action_id != 0 {
            assert!(
                t.action_refs
                    .iter()
                    .any(|r| r.id == t.const_default_action_id),
                "{name}: const default action is not one of its actions"
            );
        }
        assert!(t.size > 0, "{name} has no size");
    }
}

#[test]
fn actions_have_the_expected_parameters() {
    let info = load();
    let got: BTreeMap<&str, Vec<(u32, &str, i32)>> = info
        .actions
        .iter()
        .map(|a| {
            let params = a
                .params
                .iter()
                .map(|p| (p.id, p.name.as_str(), p.bitwidth))
                .collect();
            (preamble_name(&a.preamble), params)
        })
        .collect();
    let want: BTreeMap<&str, Vec<(u32, &str, i32)>> = expected_actions()
        .into_iter()
        .map(|(name, params)| {
            let params = params
                .into_iter()
                .zip(1..)
                .map(|((p, w), id)| (id, p, w))
                .collect();
            (name, params)
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn wcmp_group_uses_a_one_shot_weighted_selector() {
    let info = load();
    let table = info
        .tables
        .iter()
        .find(|t| preamble_name(&t.preamble) == "wcmp_group")
        .unwrap();
    let profile = info
        .action_profiles
        .iter()
        .find(|p| preamble_name(&p.preamble) == "wcmp_group_selector")
        .expect("wcmp_group_selector");
    assert_eq!(table.implementation_id, preamble_id(&profile.preamble));
    assert_eq!(profile.table_ids, [preamble_id(&table.preamble)]);
    assert!(profile.with_selector);
    assert!(profile.size > 0 && profile.max_group_size > 0);
    assert!(matches!(
        profile.selector_size_semantics,
        Some(cfg::action_profile::SelectorSizeSemantics::SumOfWeights(_))
    ));
    let annotations = &table.preamble.as_ref().unwrap().annotations;
    assert!(annotations.iter().any(|a| a == "@oneshot"));
    // Every other table is direct.
    for t in &info.tables {
        if t.preamble != table.preamble {
            assert_eq!(t.implementation_id, 0, "{}", preamble_name(&t.preamble));
        }
    }
}

#[test]
fn controller_headers_carry_the_punt_and_inject_metadata() {
    let info = load();
    let header = |name: &str| -> Vec<(u32, String, i32)> {
        let h = info
            .controller_packet_metadata
            .iter()
            .find(|c| preamble_name(&c.preamble) == name)
            .unwrap_or_else(|| panic!("no {name} header"));
        h.metadata
            .iter()
            .map(|m| (m.id, m.name.clone(), m.bitwidth))
            .collect()
    };
    let owned = |v: &[(u32, &str, i32)]| -> Vec<(u32, String, i32)> {
        v.iter().map(|&(i, n, w)| (i, n.to_string(), w)).collect()
    };
    assert_eq!(
        header("packet_in"),
        owned(&[
            (1, "ingress_port", 9),
            (2, "punt_reason", 8),
            (3, "unused_pad", 7)
        ])
    );
    assert_eq!(
        header("packet_out"),
        owned(&[
            (1, "egress_port", 9),
            (2, "ingress_port", 9),
            (3, "submit_to_ingress", 1),
            (4, "unused_pad", 5),
        ])
    );
    // bmv2 wants byte-aligned headers.
    for c in &info.controller_packet_metadata {
        let bits: i32 = c.metadata.iter().map(|m| m.bitwidth).sum();
        assert_eq!(bits % 8, 0, "{} is {bits} bits", preamble_name(&c.preamble));
    }
}

/// Every object id, with the prefix its kind must carry.
fn all_ids(info: &P4Info) -> Vec<(u32, p4_ids::Prefix, String)> {
    use p4_ids::Prefix;
    let mut ids = Vec::new();
    for t in &info.tables {
        ids.push((
            preamble_id(&t.preamble),
            Prefix::Table,
            preamble_name(&t.preamble).into(),
        ));
    }
    for a in &info.actions {
        ids.push((
            preamble_id(&a.preamble),
            Prefix::Action,
            preamble_name(&a.preamble).into(),
        ));
    }
    for p in &info.action_profiles {
        ids.push((
            preamble_id(&p.preamble),
            Prefix::ActionProfile,
            preamble_name(&p.preamble).into(),
        ));
    }
    for c in &info.controller_packet_metadata {
        ids.push((
            preamble_id(&c.preamble),
            Prefix::ControllerHeader,
            preamble_name(&c.preamble).into(),
        ));
    }
    ids
}

#[test]
fn ids_are_unique_and_correctly_prefixed() {
    let info = load();
    let ids = all_ids(&info);
    let mut seen = HashMap::new();
    for (id, prefix, name) in &ids {
        assert_eq!(
            id >> 24,
            *prefix as u32,
            "{name}: id {id:#010x} lacks prefix {prefix:?}"
        );
        assert_ne!(
            id & 0x00ff_ffff,
            0,
            "{name}: id {id:#010x} has no object part"
        );
        if let Some(other) = seen.insert(*id, name) {
            panic!("id {id:#010x} used by both {other} and {name}");
        }
    }
    // Names are unique per kind, and aliases equal the (global) names.
    let mut names = BTreeSet::new();
    for (_, prefix, name) in &ids {
        assert!(names.insert((*prefix as u32, name.clone())), "{name} twice");
    }
    for t in &info.tables {
        let p = t.preamble.as_ref().unwrap();
        assert_eq!(p.alias, p.name);
    }
}

/// `@name(".x") @id(0x...)` pairs declared in nos.p4 must match the P4Info.
#[test]
fn agrees_with_the_p4_source() {
    let info = load();
    let source = std::fs::read_to_string(programs_dir().join("nos.p4")).unwrap();
    let by_name: HashMap<String, u32> = all_ids(&info)
        .into_iter()
        .map(|(id, _, name)| (name, id))
        .collect();
    let mut declared = 0;
    for line in source.lines() {
        let line = line.trim();
        let (Some(n), Some(i)) = (line.find("@name(\"."), line.find("@id(0x")) else {
            continue;
        };
        let name = &line[n + 8..];
        let name = &name[..name.find('"').unwrap()];
        let id = &line[i + 6..];
        let id = u32::from_str_radix(&id[..id.find(')').unwrap()], 16).unwrap();
        assert_eq!(
            by_name.get(name),
            Some(&id),
            "{name} in nos.p4 vs the P4Info"
        );
        declared += 1;
    }
    // Every table, action (but core's NoAction) and the selector.
    assert_eq!(
        declared,
        info.tables.len() + info.actions.len() - 1 + info.action_profiles.len()
    );
}

/// The key of every table in nos.p4 (names and match kinds, selector fields
/// left out as p4c does) must match the P4Info.
#[test]
fn keys_agree_with_the_p4_source() {
    let info = load();
    let source = std::fs::read_to_string(programs_dir().join("nos.p4")).unwrap();
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("table ") {
            current = Some(rest.trim_end_matches(" {").to_string());
            continue;
        }
        let Some(table) = &current else { continue };
        if line.starts_with("actions") {
            current = None;
            continue;
        }
        // "<expr> : <kind> @name("<field>");"
        let Some((_, rhs)) = line.split_once(" : ") else {
            continue;
        };
        let kind = rhs.split([' ', ';']).next().unwrap().to_string();
        if kind == "selector" {
            continue;
        }
        let name = rhs
            .split('"')
            .nth(1)
            .expect("key field without @name")
            .to_string();
        tables.entry(table.clone()).or_default().push((name, kind));
    }
    let from_info: BTreeMap<String, Vec<(String, String)>> = info
        .tables
        .iter()
        .map(|t| {
            let keys = t
                .match_fields
                .iter()
                .map(|m| {
                    let kind = match m.r#match {
                        Some(cfg::match_field::Match::MatchType(k)) => {
                            MatchType::try_from(k).unwrap().as_str_name().to_lowercase()
                        }
                        _ => String::new(),
                    };
                    (m.name.clone(), kind)
                })
                .collect();
            (preamble_name(&t.preamble).to_string(), keys)
        })
        .collect();
    assert_eq!(tables, from_info);
}
