use super::*;
use crate::canon::{canonical, EntityValue};
use crate::p4info::tests::nos_p4info;
use crate::p4info::P4Names;
use nos_core::{
    AclId, AclMatch, GroupId, GroupMember, Masked, NextHopId, Port, PortRange, RifId, Vrf, VrfId,
};

fn compiler() -> (Compiler, P4Names) {
    let info = nos_p4info();
    let names = P4Names::new(&info);
    let s = Arc::new(Schema::resolve(&names).unwrap());
    (
        Compiler::new(
            s,
            Some(CloneSession {
                session_id: 255,
                port: 255,
            }),
        ),
        names,
    )
}

fn port(id: u32, up: bool) -> Object {
    Object::Port(Port {
        id: PortId(id),
        name: format!("p{id}"),
        mtu: 1500,
        admin_up: up,
    })
}

fn rif(id: u32, kind: RifKind, m: u8) -> Object {
    Object::from(RouterInterface {
        id: RifId(id),
        name: format!("r{id}"),
        vrf: VrfId(0),
        kind,
        mac: MacAddr([2, 0, 0, 0, 0, m]),
        mtu: 1500,
        admin_up: true,
    })
}

fn base() -> ForwardingState {
    let mut s = ForwardingState::new();
    s.upsert(Object::Vrf(Vrf {
        id: VrfId(0),
        name: "default".into(),
    }))
    .unwrap();
    for p in 1..=3 {
        s.upsert(port(p, true)).unwrap();
    }
    s
}

fn table_of(n: &P4Names, p: &Planned) -> String {
    match &p.update.entity.as_ref().unwrap().entity {
        Some(p4::entity::Entity::TableEntry(t)) => n.table_by_id(t.table_id).unwrap().name.clone(),
        _ => "pre".into(),
    }
}

fn types(n: &P4Names, u: &[Planned]) -> Vec<(String, i32)> {
    u.iter()
        .map(|p| (table_of(n, p), p.update.r#type))
        .collect()
}

const INS: i32 = p4::update::Type::Insert as i32;
const MODI: i32 = p4::update::Type::Modify as i32;
const DEL: i32 = p4::update::Type::Delete as i32;

#[test]
fn a_port_interface_is_three_entries_and_shares_its_admit() {
    let (c, n) = compiler();
    let mut m = base();
    let d = c
        .delta(
            &mut m,
            &Delta::Create(rif(1, RifKind::Port { port: PortId(1) }, 1)),
        )
        .unwrap();
    assert_eq!(
        types(&n, &d.updates),
        vec![
            ("router_interface".into(), INS),
            ("ingress_rif".into(), INS),
            ("l3_admit".into(), INS)
        ]
    );
    // A second interface with the same MAC needs no second admit entry.
    let d = c
        .delta(
            &mut m,
            &Delta::Create(rif(2, RifKind::Port { port: PortId(2) }, 1)),
        )
        .unwrap();
    assert_eq!(
        types(&n, &d.updates),
        vec![
            ("router_interface".into(), INS),
            ("ingress_rif".into(), INS)
        ]
    );
    // Deleting the first keeps the admit entry; the second removes it.
    let d = c
        .delta(&mut m, &Delta::Delete(ObjectKey::Rif(RifId(1))))
        .unwrap();
    assert_eq!(
        types(&n, &d.updates),
        vec![
            ("router_interface".into(), DEL),
            ("ingress_rif".into(), DEL)
        ]
    );
    let d = c
        .delta(&mut m, &Delta::Delete(ObjectKey::Rif(RifId(2))))
        .unwrap();
    assert_eq!(d.updates.len(), 3);
    assert!(d.updates.iter().all(|u| u.update.r#type == DEL));
}

#[test]
fn a_port_going_down_removes_what_its_interface_receives() {
    let (c, n) = compiler();
    let mut m = base();
    c.delta(
        &mut m,
        &Delta::Create(rif(1, RifKind::Port { port: PortId(1) }, 1)),
    )
    .unwrap();
    let d = c.delta(&mut m, &Delta::Modify(port(1, false))).unwrap();
    assert_eq!(
        types(&n, &d.updates),
        vec![("ingress_rif".into(), DEL), ("l3_admit".into(), DEL)]
    );
    let d = c.delta(&mut m, &Delta::Modify(port(1, true))).unwrap();
    assert_eq!(
        types(&n, &d.updates),
        vec![("ingress_rif".into(), INS), ("l3_admit".into(), INS)]
    );
}

#[test]
fn a_vlan_change_deletes_then_modifies_then_inserts() {
    let (c, n) = compiler();
    let mut m = base();
    c.delta(
        &mut m,
        &Delta::Create(rif(
            1,
            RifKind::SubPort {
                port: PortId(1),
                vlan: 10,
            },
            1,
        )),
    )
    .unwrap();
    let d = c
        .delta(
            &mut m,
            &Delta::Modify(rif(
                1,
                RifKind::SubPort {
                    port: PortId(1),
                    vlan: 20,
                },
                1,
            )),
        )
        .unwrap();
    assert_eq!(
        types(&n, &d.updates),
        vec![
            ("ingress_rif".into(), DEL),
            ("router_interface".into(), MODI),
            ("ingress_rif".into(), INS)
        ]
    );
    assert_eq!(crate::write::phases(&d.updates), vec![0, 1, 2, 3]);
}

#[test]
fn conflicting_objects_are_refused_and_leave_the_model_alone() {
    let (c, _) = compiler();
    let mut m = base();
    c.delta(
        &mut m,
        &Delta::Create(rif(1, RifKind::Port { port: PortId(1) }, 1)),
    )
    .unwrap();
    let before = m.clone();
    let e = c
        .delta(
            &mut m,
            &Delta::Create(rif(2, RifKind::Port { port: PortId(1) }, 2)),
        )
        .unwrap_err();
    assert!(matches!(e, CompileError::Conflict(_)), "{e}");
    assert_eq!(m, before);
    // A value wider than its field (ports are 9 bits).
    c.delta(&mut m, &Delta::Create(port(600, true))).unwrap();
    let e = c
        .delta(
            &mut m,
            &Delta::Create(rif(3, RifKind::Port { port: PortId(600) }, 3)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("set_port_and_src_mac.port"), "{e}");
    assert!(!m.contains(&ObjectKey::Rif(RifId(3))));
    // A dangling reference.
    let e = c
        .delta(
            &mut m,
            &Delta::Create(Object::NextHop(NextHop {
                id: NextHopId(1),
                rif: RifId(9),
                ip: "192.0.2.1".parse().unwrap(),
            })),
        )
        .unwrap_err();
    assert!(matches!(e, CompileError::Model(_)));
    // Same ACL key twice.
    let acl = |id: u32| {
        Object::from(AclRule {
            id: AclId(id),
            name: format!("a{id}"),
            stage: AclStage::Ingress,
            priority: 10,
            matches: AclMatch {
                ip_proto: Some(6),
                ..Default::default()
            },
            action: AclAction::Drop,
        })
    };
    c.delta(&mut m, &Delta::Create(acl(1))).unwrap();
    assert!(matches!(
        c.delta(&mut m, &Delta::Create(acl(2))),
        Err(CompileError::Conflict(_))
    ));
}

fn routed() -> (Compiler, P4Names, ForwardingState) {
    let (c, n) = compiler();
    let mut m = base();
    for d in [
        Delta::Create(rif(1, RifKind::Port { port: PortId(1) }, 1)),
        Delta::Create(Object::NextHop(NextHop {
            id: NextHopId(1),
            rif: RifId(1),
            ip: "192.0.2.1".parse().unwrap(),
        })),
        Delta::Create(Object::NextHop(NextHop {
            id: NextHopId(2),
            rif: RifId(1),
            ip: "2001:db8::2".parse().unwrap(),
        })),
    ] {
        c.delta(&mut m, &d).unwrap();
    }
    (c, n, m)
}

#[test]
fn routes_groups_and_their_canonical_form() {
    let (c, n, mut m) = routed();
    let g = Object::Group(NextHopGroup {
        id: GroupId(7),
        members: vec![
            GroupMember {
                next_hop: NextHopId(2),
                weight: 3,
            },
            GroupMember {
                next_hop: NextHopId(1),
                weight: 1,
            },
        ],
    });
    let d = c.delta(&mut m, &Delta::Create(g)).unwrap();
    let e = d.updates[0].update.entity.clone().unwrap();
    match canonical(&n, &e).unwrap().1 {
        EntityValue::ActionSet(members) => {
            assert_eq!(members.len(), 2);
            assert_eq!(members[0].1, 1, "sorted by next hop: nh 1 weight 1 first");
        }
        other => panic!("{other:?}"),
    }
    let route = |p: &str, a: RouteAction| {
        Object::Route(Route {
            vrf: VrfId(0),
            prefix: p.parse().unwrap(),
            action: a,
        })
    };
    let d = c
        .delta(
            &mut m,
            &Delta::Create(route("198.51.100.0/24", RouteAction::Group(GroupId(7)))),
        )
        .unwrap();
    let Some(p4::entity::Entity::TableEntry(t)) =
        &d.updates[0].update.entity.as_ref().unwrap().entity
    else {
        panic!()
    };
    assert_eq!(t.r#match.len(), 2);
    match &t.r#match[1].field_match_type {
        Some(M::Lpm(l)) => {
            assert_eq!(l.value, vec![198, 51, 100, 0]);
            assert_eq!(l.prefix_len, 24);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.r#match[0].field_match_type,
        Some(M::Exact(p4::field_match::Exact { value: vec![0] })),
        "shortest bytes"
    );
    // A default route leaves the LPM field out.
    let d = c
        .delta(&mut m, &Delta::Create(route("::/0", RouteAction::Drop)))
        .unwrap();
    let Some(p4::entity::Entity::TableEntry(t)) =
        &d.updates[0].update.entity.as_ref().unwrap().entity
    else {
        panic!()
    };
    assert_eq!(t.r#match.len(), 1);
    // Modify: one MODIFY; the same action again: nothing.
    let d = c
        .delta(
            &mut m,
            &Delta::Modify(route("198.51.100.0/24", RouteAction::NextHop(NextHopId(1)))),
        )
        .unwrap();
    assert_eq!(types(&n, &d.updates), vec![("ipv4_lpm".into(), MODI)]);
    let d = c
        .delta(
            &mut m,
            &Delta::Modify(route("198.51.100.0/24", RouteAction::NextHop(NextHopId(1)))),
        )
        .unwrap();
    assert!(d.updates.is_empty());
    let d = c
        .delta(
            &mut m,
            &Delta::Delete(ObjectKey::Route(nos_core::RouteKey {
                vrf: VrfId(0),
                prefix: "198.51.100.0/24".parse().unwrap(),
            })),
        )
        .unwrap();
    assert_eq!(types(&n, &d.updates), vec![("ipv4_lpm".into(), DEL)]);
    let Some(p4::entity::Entity::TableEntry(t)) =
        &d.updates[0].update.entity.as_ref().unwrap().entity
    else {
        panic!()
    };
    assert!(t.action.is_none(), "a delete carries the key only");
}

#[test]
fn groups_heavier_than_the_selector_allows_are_refused() {
    let (c, _, mut m) = routed();
    let g = Object::Group(NextHopGroup {
        id: GroupId(1),
        members: vec![
            GroupMember {
                next_hop: NextHopId(1),
                weight: 200,
            },
            GroupMember {
                next_hop: NextHopId(2),
                weight: 57,
            },
        ],
    });
    let e = c.delta(&mut m, &Delta::Create(g)).unwrap_err();
    assert!(e.to_string().contains("257"), "{e}");
}

#[test]
fn acl_rules_become_ternary_entries() {
    let (c, n, mut m) = routed();
    let rule = AclRule {
        id: AclId(1),
        name: "a".into(),
        stage: AclStage::PreIngress,
        priority: 0,
        matches: AclMatch {
            in_port: Some(PortId(2)),
            dst_ip: Some("198.51.100.0/24".parse().unwrap()),
            dst_port: Some(PortRange {
                first: 5001,
                last: 5001,
            }),
            src_port: Some(PortRange {
                first: 0,
                last: 65535,
            }),
            src_mac: Some(Masked {
                value: MacAddr([2, 0, 0, 0, 0, 0xff]),
                mask: MacAddr([0xff, 0xff, 0xff, 0, 0, 0]),
            }),
            ..Default::default()
        },
        action: AclAction::SetVrf(VrfId(0)),
    };
    let d = c.delta(&mut m, &Delta::Create(Object::from(rule))).unwrap();
    let Some(p4::entity::Entity::TableEntry(t)) =
        &d.updates[0].update.entity.as_ref().unwrap().entity
    else {
        panic!()
    };
    let info = n.table_by_id(t.table_id).unwrap();
    assert_eq!(info.name, "acl_pre_ingress");
    assert_eq!(t.priority, 1, "model priority 0 is P4 priority 1");
    let names: Vec<&str> = t
        .r#match
        .iter()
        .map(|f| info.field_by_id(f.field_id).unwrap().name.as_str())
        .collect();
    // Sorted by id; the full source port range is "don't care"; IPv4
    // prefixes also match the IPv4 EtherType.
    assert_eq!(
        names,
        vec![
            "in_port",
            "src_mac",
            "ether_type",
            "dst_ipv4",
            "l4_dst_port"
        ]
    );
    match &t.r#match[1].field_match_type {
        Some(M::Ternary(x)) => {
            assert_eq!(x.value, vec![2, 0, 0, 0, 0, 0], "value masked");
            assert_eq!(x.mask, vec![0xff, 0xff, 0xff, 0, 0, 0]);
        }
        other => panic!("{other:?}"),
    }
    assert!(canonical(&n, d.updates[0].update.entity.as_ref().unwrap()).is_ok());
}

#[test]
fn a_whole_state_compiles_to_what_its_deltas_wrote() {
    let (c, n, m) = routed();
    let mut from_state = Vec::new();
    c.state(
        &m,
        |e| from_state.push(canonical(&n, &e).unwrap()),
        |k, e| panic!("{k}: {e}"),
    );
    let mut from_deltas = Vec::new();
    let mut scratch = ForwardingState::new();
    for d in nos_core::diff(&ForwardingState::new(), &m) {
        for u in c.delta(&mut scratch, &d).unwrap().updates {
            from_deltas.push(canonical(&n, u.update.entity.as_ref().unwrap()).unwrap());
        }
    }
    from_deltas.extend(c.base_entities().iter().map(|e| canonical(&n, e).unwrap()));
    let key = |x: &(crate::canon::EntityKey, EntityValue)| x.0.clone();
    from_state.sort_by_key(key);
    from_deltas.sort_by_key(key);
    assert_eq!(from_state, from_deltas);
    assert_eq!(scratch, m);
}

#[test]
fn ipv4_mapped_neighbors_are_refused() {
    let (c, _, mut m) = routed();
    let e = c
        .delta(
            &mut m,
            &Delta::Create(Object::Neighbor(Neighbor {
                rif: RifId(1),
                ip: "::ffff:192.0.2.9".parse().unwrap(),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                port: None,
            })),
        )
        .unwrap_err();
    assert!(e.to_string().contains("IPv4-mapped"), "{e}");
}
