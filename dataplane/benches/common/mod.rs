//! What the dataplane benchmarks share: the forwarding state they start from.

use nos_core::{
    MacAddr, Neighbor, NextHop, NextHopId, Object, Port, PortId, RifId, RifKind, RouterInterface,
    Vrf, VrfId,
};

/// The default VRF, two port interfaces (ports and interfaces 1 and 2) and
/// `next_hops` resolved next hops (ids 0..) on interface 2, at 10.0.2.0 and up.
pub fn two_ports(next_hops: u32) -> Vec<Object> {
    let mut objs = vec![Object::Vrf(Vrf {
        id: VrfId::DEFAULT,
        name: "default".into(),
    })];
    for p in 1..=2u32 {
        objs.push(Object::Port(Port {
            id: PortId(p),
            name: format!("eth{p}"),
            mtu: 1500,
            admin_up: true,
        }));
        objs.push(Object::from(RouterInterface {
            id: RifId(p),
            name: format!("rif{p}"),
            vrf: VrfId::DEFAULT,
            kind: RifKind::Port { port: PortId(p) },
            mac: MacAddr([2, 0, 0, 0, 0, p as u8]),
            mtu: 1500,
            admin_up: true,
        }));
    }
    for v in 0..next_hops {
        let ip = std::net::Ipv4Addr::from(0x0a00_0200 + v);
        objs.push(Object::Neighbor(Neighbor {
            rif: RifId(2),
            ip: ip.into(),
            mac: MacAddr([2, 0xaa, 0, 0, 0, v as u8]),
            port: None,
        }));
        objs.push(Object::NextHop(NextHop {
            id: NextHopId(v),
            rif: RifId(2),
            ip: ip.into(),
        }));
    }
    objs
}
