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

/// A 64-byte (60 without the FCS) UDP/IPv4 frame to `dst_mac`, from `src` to
/// `dst`, source port `sport`, destination port 53, with a valid header
/// checksum.
pub fn udp_frame(dst_mac: [u8; 6], src: [u8; 4], dst: u32, sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&[2, 0xbb, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst.to_be_bytes());
    let mut sum = 0u32;
    for w in ip.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}
