//! The diff from one forwarding state to another, as an ordered list of deltas.
//!
//! Order: creates and modifies kind by kind bottom-up (port, VRF, router interface,
//! neighbor, next hop, group, route, ACL), then deletes top-down. Applying the deltas
//! in that order keeps every intermediate state valid: a created or modified object
//! only refers to objects that already exist (lower kinds were created first), and an
//! object is deleted only after everything above it that referred to it was modified
//! away or deleted.

use crate::model::*;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::BTreeMap;
use std::iter::Peekable;

/// One change to a forwarding state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delta {
    Create(Object),
    Modify(Object),
    Delete(ObjectKey),
}

impl Delta {
    pub fn key(&self) -> ObjectKey {
        match self {
            Delta::Create(o) | Delta::Modify(o) => o.key(),
            Delta::Delete(k) => *k,
        }
    }
}

/// The ordered deltas that turn `old` into `new`.
pub fn diff(old: &ForwardingState, new: &ForwardingState) -> Vec<Delta> {
    let mut ups: Vec<Delta> = Vec::new();
    let mut dels: [Vec<Delta>; 8] = Default::default();
    let mut emit = |kind: Kind, d: Delta| match d {
        Delta::Delete(_) => dels[kind as usize].push(d),
        _ => ups.push(d),
    };
    walk(
        old.ports(),
        new.ports(),
        |_, p| Object::Port(p.clone()),
        ObjectKey::Port,
        |d| emit(Kind::Port, d),
    );
    walk(
        old.vrfs(),
        new.vrfs(),
        |_, v| Object::Vrf(v.clone()),
        ObjectKey::Vrf,
        |d| emit(Kind::Vrf, d),
    );
    walk(
        old.rifs(),
        new.rifs(),
        |_, r| Object::from(r.clone()),
        ObjectKey::Rif,
        |d| emit(Kind::Rif, d),
    );
    walk(
        old.neighbors(),
        new.neighbors(),
        |_, n| Object::Neighbor(n.clone()),
        |(r, ip)| ObjectKey::Neighbor(r, ip),
        |d| emit(Kind::Neighbor, d),
    );
    walk(
        old.next_hops(),
        new.next_hops(),
        |_, n| Object::NextHop(n.clone()),
        ObjectKey::NextHop,
        |d| emit(Kind::NextHop, d),
    );
    walk(
        old.groups(),
        new.groups(),
        |_, g| Object::Group(g.clone()),
        ObjectKey::Group,
        |d| emit(Kind::Group, d),
    );
    walk(
        old.routes(),
        new.routes(),
        |k, a| {
            Object::Route(Route {
                vrf: k.vrf,
                prefix: k.prefix,
                action: *a,
            })
        },
        ObjectKey::Route,
        |d| emit(Kind::Route, d),
    );
    walk(
        old.acls(),
        new.acls(),
        |_, a| Object::from(a.clone()),
        ObjectKey::Acl,
        |d| emit(Kind::Acl, d),
    );
    for d in dels.into_iter().rev() {
        ups.extend(d);
    }
    ups
}

/// Merge-walks two sorted maps and reports creates, modifies and deletes.
fn walk<K: Ord + Copy, V: PartialEq>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    obj: impl Fn(&K, &V) -> Object,
    key: impl Fn(K) -> ObjectKey,
    mut out: impl FnMut(Delta),
) {
    let mut o: Peekable<_> = old.iter().peekable();
    let mut n: Peekable<_> = new.iter().peekable();
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some((ok, _)), None) => {
                out(Delta::Delete(key(**ok)));
                o.next();
            }
            (None, Some((nk, nv))) => {
                out(Delta::Create(obj(nk, nv)));
                n.next();
            }
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                std::cmp::Ordering::Less => {
                    out(Delta::Delete(key(**ok)));
                    o.next();
                }
                std::cmp::Ordering::Greater => {
                    out(Delta::Create(obj(nk, nv)));
                    n.next();
                }
                std::cmp::Ordering::Equal => {
                    if ov != nv {
                        out(Delta::Modify(obj(nk, nv)));
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::MacAddr;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// A random state over small id spaces, so that two random states overlap and
    /// the diff has creates, modifies and deletes of every kind. Objects whose
    /// references are missing are simply left out.
    fn arb_state() -> impl Strategy<Value = ForwardingState> {
        (
            prop::collection::btree_set(0u32..6, 0..6),
            prop::collection::btree_set(0u32..3, 0..3),
            prop::collection::vec((0u32..8, 0u32..6, 0u32..3, prop::option::of(1u16..4)), 0..8),
            prop::collection::vec((0u32..8, 0u8..6, any::<u8>(), any::<bool>()), 0..10),
            prop::collection::vec((0u32..10, 0u32..8, 0u8..6), 0..10),
            prop::collection::vec(
                (0u32..6, prop::collection::vec((0u32..10, 1u32..4), 1..4)),
                0..6,
            ),
            prop::collection::vec((0u32..3, 0u8..4, 20u8..33, 0u8..4, 0u32..10), 0..20),
            prop::collection::vec((0u32..6, 0u32..6, 0u32..3, 0u8..4), 0..6),
        )
            .prop_map(|(ports, vrfs, rifs, neighs, nhs, groups, routes, acls)| {
                let mut s = ForwardingState::new();
                let mac = MacAddr([2, 0, 0, 0, 0, 1]);
                for p in ports {
                    let _ = s.upsert(Object::Port(Port {
                        id: PortId(p),
                        name: format!("p{p}"),
                        mtu: 1500,
                        admin_up: true,
                    }));
                }
                for v in vrfs {
                    let _ = s.upsert(Object::Vrf(Vrf {
                        id: VrfId(v),
                        name: format!("v{v}"),
                    }));
                }
                for (id, port, vrf, vlan) in rifs {
                    let kind = match vlan {
                        None => RifKind::Port { port: PortId(port) },
                        Some(v) => RifKind::SubPort {
                            port: PortId(port),
                            vlan: v,
                        },
                    };
                    let _ = s.upsert(Object::from(RouterInterface {
                        id: RifId(id),
                        name: format!("r{id}"),
                        vrf: VrfId(vrf),
                        kind,
                        mac,
                        mtu: 1500,
                        admin_up: true,
                    }));
                }
                for (rif, host, macb, v6) in neighs {
                    let ip = if v6 {
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host as u16))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
                    };
                    let _ = s.upsert(Object::Neighbor(Neighbor {
                        rif: RifId(rif),
                        ip,
                        mac: MacAddr([2, 0, 0, 0, 1, macb]),
                        port: None,
                    }));
                }
                for (id, rif, host) in nhs {
                    let _ = s.upsert(Object::NextHop(NextHop {
                        id: NextHopId(id),
                        rif: RifId(rif),
                        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                    }));
                }
                for (id, members) in groups {
                    let mut m: Vec<GroupMember> = members
                        .into_iter()
                        .map(|(nh, w)| GroupMember {
                            next_hop: NextHopId(nh),
                            weight: w,
                        })
                        .collect();
                    m.sort_by_key(|g| g.next_hop);
                    m.dedup_by_key(|g| g.next_hop);
                    let _ = s.upsert(Object::Group(NextHopGroup {
                        id: GroupId(id),
                        members: m,
                    }));
                }
                for (vrf, net, len, act, target) in routes {
                    let prefix: ipnet::IpNet =
                        ipnet::Ipv4Net::new(Ipv4Addr::new(198, 18, net, 0), len)
                            .unwrap()
                            .trunc()
                            .into();
                    let action = match act {
                        0 => RouteAction::NextHop(NextHopId(target)),
                        1 => RouteAction::Group(GroupId(target % 6)),
                        2 => RouteAction::Drop,
                        _ => RouteAction::ToCpu,
                    };
                    let _ = s.upsert(Object::Route(Route {
                        vrf: VrfId(vrf),
                        prefix,
                        action,
                    }));
                }
                for (id, port, vrf, act) in acls {
                    let (stage, action) = match act {
                        0 => (AclStage::PreIngress, AclAction::SetVrf(VrfId(vrf))),
                        1 => (AclStage::Ingress, AclAction::Drop),
                        2 => (AclStage::Ingress, AclAction::Trap),
                        _ => (AclStage::Ingress, AclAction::Permit),
                    };
                    let _ = s.upsert(Object::from(AclRule {
                        id: AclId(id),
                        name: format!("a{id}"),
                        stage,
                        priority: id * 10,
                        matches: AclMatch {
                            in_port: Some(PortId(port)),
                            ..Default::default()
                        },
                        action,
                    }));
                }
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Applying diff(a, b) to a yields b, and every intermediate state is valid:
        /// the dependency order holds at every step.
        #[test]
        fn diff_applies_in_dependency_order(a in arb_state(), b in arb_state()) {
            let deltas = diff(&a, &b);
            let mut s = a.clone();
            for d in &deltas {
                prop_assert!(s.apply(d).is_ok(), "delta {:?} failed: {:?}", d, s.clone().apply(d));
                prop_assert!(s.validate().is_ok());
            }
            prop_assert_eq!(&s, &b);
            prop_assert!(diff(&b, &s).is_empty());
        }

        /// The order is creates/modifies ascending by kind, then deletes descending.
        #[test]
        fn diff_order_shape(a in arb_state(), b in arb_state()) {
            let deltas = diff(&a, &b);
            let first_delete = deltas.iter().position(|d| matches!(d, Delta::Delete(_))).unwrap_or(deltas.len());
            let (ups, dels) = deltas.split_at(first_delete);
            prop_assert!(ups.windows(2).all(|w| w[0].key().kind() <= w[1].key().kind()));
            prop_assert!(dels.iter().all(|d| matches!(d, Delta::Delete(_))));
            prop_assert!(dels.windows(2).all(|w| w[0].key().kind() >= w[1].key().kind()));
        }
    }

    #[test]
    fn identical_states_have_no_diff() {
        let s = ForwardingState::from_objects([crate::model::tests::port(1)]).unwrap();
        assert!(diff(&s, &s.clone()).is_empty());
    }
}
