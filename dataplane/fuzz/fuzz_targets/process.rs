//! Fuzzes the forwarding pipeline, `dataplane::engine::process`, on arbitrary
//! bytes.
//!
//! The first input byte picks the ingress port (1 to 3; port 3 carries a
//! VLAN 100 sub-port); the rest is the frame as received. The tables hold
//! IPv4 and IPv6 routes to a next hop, a weighted group, the CPU, a drop and
//! an unresolved next hop, and ingress ACL rules (drop, trap, copy).
//!
//! The pipeline must not panic, and:
//! * a punted or dropped frame is left as it was received;
//! * a forwarded frame leaves with the egress interface's MAC as its source,
//!   the neighbor's as its destination, and is no longer than the frame
//!   received plus one pushed VLAN tag.

#![no_main]

use dataplane::engine::{process, warm, Counters, Tables, Verdict};
use libfuzzer_sys::fuzz_target;
use nos_core::{
    AclAction, AclId, AclMatch, AclRule, AclStage, ForwardingState, GroupId, GroupMember, MacAddr,
    Neighbor, NextHop, NextHopGroup, NextHopId, Object, Port, PortId, PortRange, RifId, RifKind,
    Route, RouteAction, RouterInterface, Vrf, VrfId,
};
use std::net::IpAddr;
use std::sync::OnceLock;

const NEIGHBOR_MACS: [[u8; 6]; 3] = [
    [2, 0xbb, 0, 0, 0, 1],
    [2, 0xbb, 0, 0, 0, 2],
    [2, 0xbb, 0, 0, 0, 3],
];

fn rif_mac(rif: u32) -> [u8; 6] {
    [2, 0, 0, 0, 0, rif as u8]
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut objs = vec![Object::Vrf(Vrf {
            id: VrfId::DEFAULT,
            name: "default".into(),
        })];
        for p in 1..=3u32 {
            objs.push(Object::Port(Port {
                id: PortId(p),
                name: format!("p{p}"),
                mtu: 1500,
                admin_up: true,
            }));
        }
        for (r, kind) in [
            (1u32, RifKind::Port { port: PortId(1) }),
            (2, RifKind::Port { port: PortId(2) }),
            (
                3,
                RifKind::SubPort {
                    port: PortId(3),
                    vlan: 100,
                },
            ),
        ] {
            objs.push(Object::from(RouterInterface {
                id: RifId(r),
                name: format!("rif{r}"),
                vrf: VrfId::DEFAULT,
                kind,
                mac: MacAddr(rif_mac(r)),
                mtu: 1500,
                admin_up: true,
            }));
        }
        let neighbors: [(u32, IpAddr); 3] = [
            (2, "198.51.100.2".parse().unwrap()),
            (3, "198.18.0.2".parse().unwrap()),
            (2, "2001:db8:2::2".parse().unwrap()),
        ];
        for (i, (rif, ip)) in neighbors.iter().enumerate() {
            objs.push(Object::Neighbor(Neighbor {
                rif: RifId(*rif),
                ip: *ip,
                mac: MacAddr(NEIGHBOR_MACS[i]),
                port: None,
            }));
            objs.push(Object::NextHop(NextHop {
                id: NextHopId(i as u32 + 1),
                rif: RifId(*rif),
                ip: *ip,
            }));
        }
        objs.push(Object::NextHop(NextHop {
            id: NextHopId(9),
            rif: RifId(2),
            ip: "198.51.100.9".parse().unwrap(),
        }));
        objs.push(Object::Group(NextHopGroup {
            id: GroupId(1),
            members: vec![
                GroupMember {
                    next_hop: NextHopId(1),
                    weight: 3,
                },
                GroupMember {
                    next_hop: NextHopId(2),
                    weight: 1,
                },
            ],
        }));
        for (prefix, action) in [
            ("0.0.0.0/0", RouteAction::NextHop(NextHopId(1))),
            ("203.0.113.0/24", RouteAction::Group(GroupId(1))),
            ("198.18.0.0/24", RouteAction::NextHop(NextHopId(2))),
            ("192.0.2.1/32", RouteAction::ToCpu),
            ("10.0.0.0/8", RouteAction::Drop),
            ("100.64.0.0/10", RouteAction::NextHop(NextHopId(9))),
            ("::/0", RouteAction::NextHop(NextHopId(3))),
            ("2001:db8:1::1/128", RouteAction::ToCpu),
        ] {
            objs.push(Object::Route(Route {
                vrf: VrfId::DEFAULT,
                prefix: prefix.parse().unwrap(),
                action,
            }));
        }
        for (id, proto, port, action) in [
            (1u32, 6u8, 22u16, AclAction::Trap),
            (2, 17, 53, AclAction::Copy),
            (3, 6, 5001, AclAction::Drop),
        ] {
            objs.push(Object::from(AclRule {
                id: AclId(id),
                name: format!("rule{id}"),
                stage: AclStage::Ingress,
                priority: 100 + id,
                matches: AclMatch {
                    ip_proto: Some(proto),
                    dst_port: Some(PortRange {
                        first: port,
                        last: port,
                    }),
                    ..Default::default()
                },
                action,
            }));
        }
        let state = ForwardingState::from_objects(objs).expect("a valid state");
        Tables::build(&state)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let port = PortId(u32::from(sel % 3) + 1);
    let mut buf = frame.to_vec();
    let mut counters = Counters::default();
    // The burst's warm-up pass reads the same bytes first.
    std::hint::black_box(warm(tables(), port, frame));
    match process(tables(), port, &mut buf, &mut counters) {
        Verdict::Forward { port: out, .. } => {
            assert!(buf.len() >= 14, "a forwarded frame has an Ethernet header");
            assert!(buf.len() <= frame.len() + 4, "grew by more than a tag");
            let egress_rif = match out.0 {
                2 => 2,
                3 => 3,
                other => panic!("forwarded to port {other}, which no next hop uses"),
            };
            assert_eq!(buf[6..12], rif_mac(egress_rif), "source MAC");
            assert!(
                NEIGHBOR_MACS.iter().any(|m| buf[0..6] == *m),
                "destination MAC is a neighbor's"
            );
        }
        Verdict::Punt(_) | Verdict::Drop(_) => {
            assert_eq!(buf, frame, "a punted or dropped frame is unchanged");
        }
    }
    assert_eq!(
        counters.named().iter().map(|(_, v)| *v).sum::<u64>()
            - counters.punts[dataplane::engine::punt_index(nos_core::backend::PuntReason::AclCopy)],
        1,
        "exactly one verdict is counted"
    );
});
