//! Pipeline tests on a small hand-built forwarding state and hand-built frames.

use super::parse::ones_sum;
use super::*;
use nos_core::{
    AclAction, AclId, AclMatch, AclRule, AclStage, ForwardingState, GroupId, GroupMember, MacAddr,
    Masked, Neighbor, NextHop, NextHopGroup, NextHopId, Object, Port, PortRange, RifId, RifKind,
    Route, RouteAction, RouterInterface, VlanMember, Vrf, VrfId,
};
use proptest::prelude::*;

const BLUE: VrfId = VrfId(1);

fn rif_mac(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, id as u8]
}

fn nbr_mac(n: u8) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, n]
}

fn port(id: u32, up: bool) -> Object {
    Object::Port(Port {
        id: PortId(id),
        name: format!("eth{id}"),
        mtu: 1500,
        admin_up: up,
    })
}

fn rif(id: u32, vrf: VrfId, kind: RifKind, up: bool) -> Object {
    Object::from(RouterInterface {
        id: RifId(id),
        name: format!("rif{id}"),
        vrf,
        kind,
        mac: MacAddr(rif_mac(id)),
        mtu: 1500,
        admin_up: up,
    })
}

fn nbr(rif: u32, ip: &str, mac: u8, port: Option<u32>) -> Object {
    Object::Neighbor(Neighbor {
        rif: RifId(rif),
        ip: ip.parse().unwrap(),
        mac: MacAddr(nbr_mac(mac)),
        port: port.map(PortId),
    })
}

fn nh(id: u32, rif: u32, ip: &str) -> Object {
    Object::NextHop(NextHop {
        id: NextHopId(id),
        rif: RifId(rif),
        ip: ip.parse().unwrap(),
    })
}

fn route(vrf: VrfId, prefix: &str, action: RouteAction) -> Object {
    Object::Route(Route {
        vrf,
        prefix: prefix.parse().unwrap(),
        action,
    })
}

fn acl(id: u32, stage: AclStage, priority: u32, matches: AclMatch, action: AclAction) -> Object {
    Object::from(AclRule {
        id: AclId(id),
        name: format!("acl{id}"),
        stage,
        priority,
        matches,
        action,
    })
}

/// The test topology:
///
/// | rif | where                                   | vrf  |
/// |-----|-----------------------------------------|------|
/// | 1   | port 1                                  | 0    |
/// | 2   | port 2                                  | 0    |
/// | 3   | port 3, VLAN 100 (sub-port)             | 0    |
/// | 4   | VLAN 200: port 4 tagged, port 5 untagged| 0    |
/// | 5   | port 6 (port admin-down)                | 0    |
/// | 6   | port 2, VLAN 300 (sub-port)             | blue |
/// | 7   | port 7 (interface admin-down)           | 0    |
fn base_objects() -> Vec<Object> {
    let nh_ = |n| RouteAction::NextHop(NextHopId(n));
    let mut v = vec![
        port(1, true),
        port(2, true),
        port(3, true),
        port(4, true),
        port(5, true),
        port(6, false),
        port(7, true),
        Object::Vrf(Vrf {
            id: VrfId::DEFAULT,
            name: "default".into(),
        }),
        Object::Vrf(Vrf {
            id: BLUE,
            name: "blue".into(),
        }),
        rif(1, VrfId::DEFAULT, RifKind::Port { port: PortId(1) }, true),
        rif(2, VrfId::DEFAULT, RifKind::Port { port: PortId(2) }, true),
        rif(
            3,
            VrfId::DEFAULT,
            RifKind::SubPort {
                port: PortId(3),
                vlan: 100,
            },
            true,
        ),
        rif(
            4,
            VrfId::DEFAULT,
            RifKind::Vlan {
                vlan: 200,
                members: vec![
                    VlanMember {
                        port: PortId(4),
                        tagged: true,
                    },
                    VlanMember {
                        port: PortId(5),
                        tagged: false,
                    },
                ],
            },
            true,
        ),
        rif(5, VrfId::DEFAULT, RifKind::Port { port: PortId(6) }, true),
        rif(
            6,
            BLUE,
            RifKind::SubPort {
                port: PortId(2),
                vlan: 300,
            },
            true,
        ),
        rif(7, VrfId::DEFAULT, RifKind::Port { port: PortId(7) }, false),
        nbr(1, "10.0.1.2", 1, None),
        nbr(2, "10.0.2.2", 2, None),
        nbr(2, "2001:db8:2::2", 22, None),
        nbr(3, "10.0.3.2", 3, None),
        nbr(4, "10.0.4.2", 4, Some(4)),
        nbr(4, "10.0.4.3", 5, Some(5)),
        nbr(4, "10.0.4.4", 6, None),
        nbr(5, "10.0.5.2", 7, None),
        nbr(6, "10.0.6.2", 8, None),
        nbr(2, "10.0.2.11", 11, None),
        nbr(2, "10.0.2.12", 12, None),
        nbr(2, "10.0.2.13", 13, None),
        nh(1, 2, "10.0.2.2"),
        nh(2, 3, "10.0.3.2"),
        nh(3, 4, "10.0.4.2"),
        nh(4, 4, "10.0.4.3"),
        nh(5, 4, "10.0.4.4"),
        nh(6, 2, "10.0.2.9"),
        nh(7, 1, "10.0.1.2"),
        nh(8, 6, "10.0.6.2"),
        nh(9, 5, "10.0.5.2"),
        nh(10, 2, "2001:db8:2::2"),
        nh(11, 2, "10.0.2.11"),
        nh(12, 2, "10.0.2.12"),
        nh(13, 2, "10.0.2.13"),
        Object::Group(NextHopGroup {
            id: GroupId(1),
            members: [(11, 1), (12, 3), (13, 6)]
                .into_iter()
                .map(|(n, w)| GroupMember {
                    next_hop: NextHopId(n),
                    weight: w,
                })
                .collect(),
        }),
    ];
    let d = VrfId::DEFAULT;
    v.extend([
        route(d, "198.51.100.0/24", nh_(1)),
        route(d, "203.0.113.0/24", RouteAction::Drop),
        route(d, "192.0.2.1/32", RouteAction::ToCpu),
        route(d, "10.100.0.0/16", nh_(2)),
        route(d, "10.104.2.0/24", nh_(3)),
        route(d, "10.104.3.0/24", nh_(4)),
        route(d, "10.104.4.0/24", nh_(5)),
        route(d, "10.106.0.0/16", nh_(6)),
        route(d, "10.101.0.0/16", nh_(7)),
        route(d, "10.105.0.0/16", nh_(9)),
        route(d, "10.200.0.0/16", RouteAction::Group(GroupId(1))),
        route(d, "2001:db8:100::/48", nh_(10)),
        route(d, "2001:db8::1/128", RouteAction::ToCpu),
        route(BLUE, "198.51.100.0/24", nh_(8)),
    ]);
    v
}

fn state_with(extra: Vec<Object>) -> ForwardingState {
    ForwardingState::from_objects(base_objects().into_iter().chain(extra)).unwrap()
}

fn tables_with(extra: Vec<Object>) -> Tables {
    Tables::build(&state_with(extra))
}

const SRC_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];

fn ether(dst: [u8; 6], vlan: Option<u16>, ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&SRC_MAC);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    h
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&8u16.to_be_bytes());
    h
}

fn v4_addr(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn v6_addr(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn set_ipv4_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let c = !ones_sum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 packet with a valid header checksum and `options` (a multiple of 4 bytes).
fn ipv4_opts(src: &str, dst: &str, proto: u8, ttl: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let hlen = 20 + options.len();
    let mut p = vec![0u8; hlen];
    p[0] = 0x40 | (hlen / 4) as u8;
    p[1] = 0x28; // DSCP 10
    p[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&v4_addr(src));
    p[16..20].copy_from_slice(&v4_addr(dst));
    p[20..].copy_from_slice(options);
    set_ipv4_checksum(&mut p[..hlen]);
    p.extend_from_slice(l4);
    p
}

fn ipv4(src: &str, dst: &str, proto: u8, ttl: u8, l4: &[u8]) -> Vec<u8> {
    ipv4_opts(src, dst, proto, ttl, &[], l4)
}

fn ipv6(src: &str, dst: &str, next: u8, hop: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = hop;
    p[8..24].copy_from_slice(&v6_addr(src));
    p[24..40].copy_from_slice(&v6_addr(dst));
    p.extend_from_slice(l4);
    p
}

/// An untagged TCP/IPv4 frame to router interface 1 (port 1).
fn tcp4(dst: &str, dport: u16) -> Vec<u8> {
    ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.9.9.9", dst, 6, 64, &tcp(40000, dport, 0x02)),
    )
}

fn run(t: &Tables, port: u32, frame: &mut Vec<u8>) -> Verdict {
    let mut c = Counters::default();
    process(t, PortId(port), frame, &mut c)
}

fn fwd(port: u32) -> Verdict {
    Verdict::Forward {
        port: PortId(port),
        copy: false,
    }
}

/// Checks an IPv4 header's checksum by recomputing it from scratch.
fn assert_ipv4_checksum(h: &[u8]) {
    let hlen = usize::from(h[0] & 0x0f) * 4;
    let mut c = h[..hlen].to_vec();
    let got = u16::from_be_bytes([c[10], c[11]]);
    c[10] = 0;
    c[11] = 0;
    assert_eq!(got, !ones_sum(&c), "header checksum");
}

#[test]
fn ipv4_forward_rewrites_macs_ttl_and_checksum() {
    let t = tables_with(vec![]);
    let mut f = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.9.9.9", "198.51.100.7", 17, 64, &udp(1, 2)),
    );
    let before = f.clone();
    let mut c = Counters::default();
    assert_eq!(process(&t, PortId(1), &mut f, &mut c), fwd(2));
    assert_eq!(f.len(), before.len());
    assert_eq!(f[0..6], nbr_mac(2));
    assert_eq!(f[6..12], rif_mac(2));
    assert_eq!(f[14 + 8], 63);
    assert_ipv4_checksum(&f[14..]);
    // Everything but MACs, TTL and checksum is unchanged.
    assert_eq!(f[12..22], before[12..22]);
    assert_eq!(f[14 + 12..], before[14 + 12..]);
    assert_eq!(c.forwarded, 1);
}

#[test]
fn ipv4_options_are_forwarded() {
    let t = tables_with(vec![]);
    let opts = [0x94, 0x04, 0, 0]; // router alert
    let mut f = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4_opts("10.9.9.9", "198.51.100.7", 6, 10, &opts, &tcp(1, 2, 0x10)),
    );
    assert_eq!(run(&t, 1, &mut f), fwd(2));
    assert_eq!(f[14 + 8], 9);
    assert_eq!(f[14 + 20..14 + 24], opts);
    assert_ipv4_checksum(&f[14..]);
}

#[test]
fn ipv6_forward_decrements_hop_limit() {
    let t = tables_with(vec![]);
    let mut f = ether(
        rif_mac(1),
        None,
        0x86dd,
        &ipv6("2001:db8:9::9", "2001:db8:100::5", 17, 2, &udp(5, 6)),
    );
    assert_eq!(run(&t, 1, &mut f), fwd(2));
    assert_eq!(f[0..6], nbr_mac(22));
    assert_eq!(f[6..12], rif_mac(2));
    assert_eq!(f[14 + 7], 1);
}

#[test]
fn route_misses_drops_and_to_cpu() {
    let t = tables_with(vec![]);
    let mut c = Counters::default();
    let mut f = tcp4("8.8.8.8", 80);
    assert_eq!(
        process(&t, PortId(1), &mut f, &mut c),
        Verdict::Drop(DropReason::NoRoute)
    );
    let mut f = tcp4("203.0.113.9", 80);
    assert_eq!(
        process(&t, PortId(1), &mut f, &mut c),
        Verdict::Drop(DropReason::RouteDrop)
    );
    let mut f = tcp4("192.0.2.1", 22);
    let before = f.clone();
    assert_eq!(
        process(&t, PortId(1), &mut f, &mut c),
        Verdict::Punt(PuntReason::ToMe)
    );
    assert_eq!(f, before, "punted frames are left as received");
    let mut f = ether(
        rif_mac(1),
        None,
        0x86dd,
        &ipv6("2001:db8:9::9", "2001:db8::1", 6, 64, &tcp(1, 179, 2)),
    );
    assert_eq!(
        process(&t, PortId(1), &mut f, &mut c),
        Verdict::Punt(PuntReason::ToMe)
    );
    assert_eq!(c.drop_count(DropReason::NoRoute), 1);
    assert_eq!(c.drop_count(DropReason::RouteDrop), 1);
    assert_eq!(c.punt_count(PuntReason::ToMe), 2);
    let named = c.named();
    assert!(named.contains(&("drop.no_route".to_string(), 1)));
    assert!(named.contains(&("punt.to_me".to_string(), 2)));
}

#[test]
fn route_classes_count_packets_bytes_and_verdicts() {
    let t = tables_with(vec![]);
    let mut c = Counters::default();
    let mut sent = |dst: &str, ttl: u8| {
        let mut f = ether(
            rif_mac(1),
            None,
            0x0800,
            &ipv4("10.9.9.9", dst, 17, ttl, &udp(1, 2)),
        );
        let len = f.len() as u64;
        let v = process(&t, PortId(1), &mut f, &mut c);
        (v, len)
    };
    let (v, nh_len) = sent("198.51.100.7", 64);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    let (v, _) = sent("198.51.100.8", 1);
    assert_eq!(v, Verdict::Punt(PuntReason::TtlExpired));
    let (v, group_len) = sent("10.200.1.1", 64);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    assert_eq!(
        sent("203.0.113.1", 64).0,
        Verdict::Drop(DropReason::RouteDrop)
    );
    assert_eq!(sent("8.8.8.8", 64).0, Verdict::Drop(DropReason::NoRoute));
    assert_eq!(sent("192.0.2.1", 64).0, Verdict::Punt(PuntReason::ToMe));
    // Not routed at all: no class.
    let mut arp = ether([0xff; 6], None, 0x0806, &[0u8; 28]);
    process(&t, PortId(1), &mut arp, &mut c);

    let nh = c.route_class(RouteClass::NextHop);
    assert_eq!((nh.packets, nh.forwarded, nh.punted), (2, 1, 1));
    assert_eq!(nh.bytes, 2 * nh_len);
    let g = c.route_class(RouteClass::Group);
    assert_eq!((g.packets, g.forwarded, g.bytes), (1, 1, group_len));
    let d = c.route_class(RouteClass::Drop);
    assert_eq!(d.drops[DropReason::RouteDrop as usize], 1);
    assert_eq!(
        c.route_class(RouteClass::NoRoute).drops[DropReason::NoRoute as usize],
        1
    );
    assert_eq!(c.route_class(RouteClass::Local).punted, 1);
    let routed: u64 = RouteClass::ALL
        .iter()
        .map(|k| c.route_class(*k).packets)
        .sum();
    assert_eq!(routed, 6, "the ARP frame has no route class");
    let mut sum = Counters::default();
    sum.add(&c);
    sum.add(&c);
    let named = sum.named();
    assert_eq!(named.len(), Counters::NAMED);
    assert!(named.contains(&("route.next_hop.packets".to_string(), 4)));
    assert!(named.contains(&("route.group.bytes".to_string(), 2 * group_len)));
    assert!(named.contains(&("route.drop.drop.route_drop".to_string(), 2)));
}

#[test]
fn arp_is_punted_whatever_the_destination() {
    let t = tables_with(vec![]);
    let arp = [0u8; 28];
    for dst in [[0xff; 6], rif_mac(1), nbr_mac(9)] {
        let mut f = ether(dst, None, 0x0806, &arp);
        assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::Arp));
    }
    // On a tagged sub-port too.
    let mut f = ether([0xff; 6], Some(100), 0x0806, &arp);
    assert_eq!(run(&t, 3, &mut f), Verdict::Punt(PuntReason::Arp));
}

#[test]
fn neighbor_discovery_is_punted() {
    let t = tables_with(vec![]);
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&v6_addr("2001:db8:2::1"));
    let pkt = ipv6("2001:db8:2::2", "ff02::1:ff00:1", 58, 255, &ns);
    let mut f = ether([0x33, 0x33, 0xff, 0, 0, 1], None, 0x86dd, &pkt);
    assert_eq!(
        run(&t, 1, &mut f),
        Verdict::Punt(PuntReason::NeighborDiscovery)
    );
    // Unicast NA to our MAC.
    let pkt = ipv6("2001:db8:2::2", "2001:db8:2::1", 58, 255, &[136, 0, 0, 0]);
    let mut f = ether(rif_mac(1), None, 0x86dd, &pkt);
    assert_eq!(
        run(&t, 1, &mut f),
        Verdict::Punt(PuntReason::NeighborDiscovery)
    );
    // Other ICMPv6 to a multicast group is not punted.
    let pkt = ipv6("2001:db8:2::2", "ff02::1", 58, 1, &[130, 0, 0, 0]);
    let mut f = ether([0x33, 0x33, 0, 0, 0, 1], None, 0x86dd, &pkt);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::Multicast));
}

#[test]
fn ttl_expiry_is_punted_before_rewrite() {
    let t = tables_with(vec![]);
    for ttl in [0, 1] {
        let mut f = ether(
            rif_mac(1),
            None,
            0x0800,
            &ipv4("10.9.9.9", "198.51.100.7", 17, ttl, &udp(1, 2)),
        );
        let before = f.clone();
        assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::TtlExpired));
        assert_eq!(f, before);
    }
    let mut f = ether(
        rif_mac(1),
        None,
        0x86dd,
        &ipv6("2001:db8:9::9", "2001:db8:100::5", 17, 1, &udp(5, 6)),
    );
    assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::TtlExpired));
}

#[test]
fn missing_neighbor_is_punted() {
    let t = tables_with(vec![]);
    let mut f = tcp4("10.106.0.1", 80);
    assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::NeighborMiss));
    // A neighbor on a VLAN interface without a known member port.
    let mut f = tcp4("10.104.4.1", 80);
    assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::NeighborMiss));
}

#[test]
fn admin_down_interfaces_drop() {
    let t = tables_with(vec![]);
    // Egress port down.
    let mut f = tcp4("10.105.0.1", 80);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::InterfaceDown));
    // Ingress port down, ingress interface down.
    let mut f = ether(
        rif_mac(5),
        None,
        0x0800,
        &ipv4("1.1.1.1", "198.51.100.1", 6, 9, &[]),
    );
    assert_eq!(run(&t, 6, &mut f), Verdict::Drop(DropReason::InterfaceDown));
    let mut f = ether(
        rif_mac(7),
        None,
        0x0800,
        &ipv4("1.1.1.1", "198.51.100.1", 6, 9, &[]),
    );
    assert_eq!(run(&t, 7, &mut f), Verdict::Drop(DropReason::InterfaceDown));
}

#[test]
fn no_router_interface() {
    let t = tables_with(vec![]);
    let mut f = tcp4("198.51.100.7", 80);
    assert_eq!(
        run(&t, 99, &mut f),
        Verdict::Drop(DropReason::NoRouterInterface)
    );
    // Tagged frame on a port interface; unknown VLAN on a sub-port's port.
    let mut f = ether(
        rif_mac(1),
        Some(5),
        0x0800,
        &ipv4("1.1.1.1", "198.51.100.1", 6, 9, &[]),
    );
    assert_eq!(
        run(&t, 1, &mut f),
        Verdict::Drop(DropReason::NoRouterInterface)
    );
    let mut f = ether(
        rif_mac(3),
        Some(999),
        0x0800,
        &ipv4("1.1.1.1", "198.51.100.1", 6, 9, &[]),
    );
    assert_eq!(
        run(&t, 3, &mut f),
        Verdict::Drop(DropReason::NoRouterInterface)
    );
    let mut f = tcp4("198.51.100.7", 80);
    assert_eq!(
        run(&Tables::empty(), 1, &mut f),
        Verdict::Drop(DropReason::NoRouterInterface)
    );
}

#[test]
fn ingress_map_agrees_with_the_model() {
    let s = state_with(vec![]);
    let t = Tables::build(&s);
    for port in 0..10 {
        for vlan in [None, Some(0), Some(100), Some(200), Some(300), Some(4095)] {
            assert_eq!(
                t.ingress_rif(PortId(port), vlan),
                s.ingress_rif(PortId(port), vlan).map(|r| r.id),
                "port {port} vlan {vlan:?}"
            );
        }
    }
}

#[test]
fn l3_admit() {
    let t = tables_with(vec![]);
    let pkt = ipv4("10.9.9.9", "198.51.100.7", 6, 64, &tcp(1, 2, 0));
    let mut f = ether(nbr_mac(1), None, 0x0800, &pkt);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::NotForUs));
    // Another router interface's MAC is not ours on this interface.
    let mut f = ether(rif_mac(2), None, 0x0800, &pkt);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::NotForUs));
    let mut f = ether([0xff; 6], None, 0x0800, &pkt);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::Multicast));
    let mut f = ether([0x01, 0, 0x5e, 0, 0, 5], None, 0x0800, &pkt);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::Multicast));
    let mut f = ether(rif_mac(1), None, 0x88cc, &[0; 46]);
    assert_eq!(
        run(&t, 1, &mut f),
        Verdict::Drop(DropReason::UnknownEthertype)
    );
}

#[test]
fn bad_and_truncated_headers() {
    let t = tables_with(vec![]);
    let good = ipv4("10.9.9.9", "198.51.100.7", 6, 64, &tcp(1, 2, 0));
    let case = |edit: &dyn Fn(&mut Vec<u8>), fix_checksum: bool| {
        let mut p = good.clone();
        edit(&mut p);
        if fix_checksum && p.len() >= 20 {
            set_ipv4_checksum(&mut p[..20]);
        }
        let mut f = ether(rif_mac(1), None, 0x0800, &p);
        run(&t, 1, &mut f)
    };
    let bad = |r| Verdict::Drop(r);
    assert_eq!(case(&|p| p[11] ^= 1, false), bad(DropReason::BadChecksum));
    assert_eq!(case(&|p| p[0] = 0x44, true), bad(DropReason::BadIpHeader));
    assert_eq!(case(&|p| p[0] = 0x65, true), bad(DropReason::BadIpHeader));
    assert_eq!(
        case(&|p| p[2..4].copy_from_slice(&19u16.to_be_bytes()), true),
        bad(DropReason::BadIpHeader)
    );
    // Total length beyond the frame.
    assert_eq!(
        case(&|p| p[2..4].copy_from_slice(&100u16.to_be_bytes()), true),
        bad(DropReason::Truncated)
    );
    assert_eq!(case(&|p| p.truncate(19), false), bad(DropReason::Truncated));
    // IHL beyond the frame.
    assert_eq!(
        case(
            &|p| {
                p.truncate(20);
                p[0] = 0x4f;
                p[2..4].copy_from_slice(&20u16.to_be_bytes());
            },
            true
        ),
        bad(DropReason::BadIpHeader)
    );
    for len in [0, 1, 13] {
        let mut f = tcp4("198.51.100.7", 80);
        f.truncate(len);
        assert_eq!(run(&t, 1, &mut f), bad(DropReason::Truncated));
    }
    let mut f = ether(rif_mac(3), Some(100), 0x0800, &[]);
    f.truncate(17);
    assert_eq!(run(&t, 3, &mut f), bad(DropReason::Truncated));
    // IPv6: payload length beyond the frame, wrong version, short header.
    let good6 = ipv6("2001:db8:9::9", "2001:db8:100::5", 17, 9, &udp(5, 6));
    let mut p = good6.clone();
    p[5] += 1;
    let mut f = ether(rif_mac(1), None, 0x86dd, &p);
    assert_eq!(run(&t, 1, &mut f), bad(DropReason::Truncated));
    let mut p = good6.clone();
    p[0] = 0x40;
    let mut f = ether(rif_mac(1), None, 0x86dd, &p);
    assert_eq!(run(&t, 1, &mut f), bad(DropReason::BadIpHeader));
    let mut f = ether(rif_mac(1), None, 0x86dd, &good6[..39]);
    assert_eq!(run(&t, 1, &mut f), bad(DropReason::Truncated));
}

#[test]
fn ethernet_padding_is_accepted_and_removed() {
    let t = tables_with(vec![]);
    let pkt = ipv4("10.9.9.9", "198.51.100.7", 1, 64, &[8, 0, 0, 0, 0, 0, 0, 0]);
    let mut f = ether(rif_mac(1), None, 0x0800, &pkt);
    f.resize(60, 0);
    assert_eq!(run(&t, 1, &mut f), fwd(2));
    assert_eq!(f.len(), 14 + 28);
}

#[test]
fn mtu_exceeded() {
    let t = tables_with(vec![]);
    let mut f = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.9.9.9", "198.51.100.7", 17, 64, &vec![0u8; 1481]),
    );
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::MtuExceeded));
    let mut f = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.9.9.9", "198.51.100.7", 17, 64, &vec![0u8; 1480]),
    );
    assert_eq!(run(&t, 1, &mut f), fwd(2));
}

fn dport_rule(id: u32, proto: u8, port: u16, action: AclAction) -> Object {
    acl(
        id,
        AclStage::Ingress,
        10,
        AclMatch {
            ip_proto: Some(proto),
            dst_port: Some(PortRange {
                first: port,
                last: port,
            }),
            ..Default::default()
        },
        action,
    )
}

#[test]
fn acl_drops_tcp_5001_only() {
    let t = tables_with(vec![dport_rule(1, 6, 5001, AclAction::Drop)]);
    let mut c = Counters::default();
    let mut f = tcp4("198.51.100.7", 5001);
    assert_eq!(
        process(&t, PortId(1), &mut f, &mut c),
        Verdict::Drop(DropReason::AclDrop)
    );
    let mut f = tcp4("198.51.100.7", 5002);
    assert_eq!(process(&t, PortId(1), &mut f, &mut c), fwd(2));
    let mut f = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.9.9.9", "198.51.100.7", 17, 64, &udp(40000, 5001)),
    );
    assert_eq!(process(&t, PortId(1), &mut f, &mut c), fwd(2));
    assert_eq!(c.drop_count(DropReason::AclDrop), 1);
    assert_eq!(c.forwarded, 2);
}

#[test]
fn acl_priority_and_trap() {
    let permit = acl(
        2,
        AclStage::Ingress,
        20,
        AclMatch {
            src_ip: Some("10.9.9.0/24".parse().unwrap()),
            ..Default::default()
        },
        AclAction::Permit,
    );
    let t = tables_with(vec![dport_rule(1, 6, 5001, AclAction::Drop), permit]);
    let mut f = tcp4("198.51.100.7", 5001);
    assert_eq!(
        run(&t, 1, &mut f),
        fwd(2),
        "the higher-priority permit wins"
    );
    let t = tables_with(vec![dport_rule(1, 6, 5001, AclAction::Trap)]);
    let mut f = tcp4("198.51.100.7", 5001);
    assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::AclTrap));
}

#[test]
fn acl_copy_forwards_and_counts() {
    let t = tables_with(vec![dport_rule(1, 6, 179, AclAction::Copy)]);
    let mut c = Counters::default();
    let mut f = tcp4("198.51.100.7", 179);
    assert_eq!(
        process(&t, PortId(1), &mut f, &mut c),
        Verdict::Forward {
            port: PortId(2),
            copy: true
        }
    );
    assert_eq!(c.forwarded, 1);
    assert_eq!(c.punt_count(PuntReason::AclCopy), 1);
    // A pre-ingress copy is carried to the forward verdict too.
    let pre = acl(
        1,
        AclStage::PreIngress,
        1,
        AclMatch {
            ip_proto: Some(6),
            ..Default::default()
        },
        AclAction::Copy,
    );
    let t = tables_with(vec![pre]);
    let mut f = tcp4("198.51.100.7", 80);
    assert_eq!(
        run(&t, 1, &mut f),
        Verdict::Forward {
            port: PortId(2),
            copy: true
        }
    );
}

#[test]
fn pre_ingress_set_vrf() {
    let rule = acl(
        1,
        AclStage::PreIngress,
        5,
        AclMatch {
            src_ip: Some("10.9.9.0/24".parse().unwrap()),
            ..Default::default()
        },
        AclAction::SetVrf(BLUE),
    );
    let t = tables_with(vec![rule]);
    // Routed in the blue VRF: out of the VLAN 300 sub-port on port 2.
    let mut f = tcp4("198.51.100.7", 80);
    assert_eq!(run(&t, 1, &mut f), fwd(2));
    assert_eq!(f[0..6], nbr_mac(8));
    assert_eq!(f[6..12], rif_mac(6));
    assert_eq!(f[12..16], [0x81, 0x00, 0x01, 0x2c]);
    assert_ipv4_checksum(&f[18..]);
    // The blue VRF has no route for this one.
    let mut f = tcp4("10.100.0.1", 80);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::NoRoute));
    // Without a match the interface's VRF is used.
    let mut f = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.8.8.8", "198.51.100.7", 6, 64, &tcp(1, 2, 0)),
    );
    assert_eq!(run(&t, 1, &mut f), fwd(2));
    assert_eq!(f[0..6], nbr_mac(2));
    assert_eq!(f[12..14], [0x08, 0x00]);
}

#[test]
fn acl_match_fields() {
    let t_for = |m: AclMatch| tables_with(vec![acl(1, AclStage::Ingress, 1, m, AclAction::Drop)]);
    let dropped = |t: &Tables, mut f: Vec<u8>, port: u32| {
        run(t, port, &mut f) == Verdict::Drop(DropReason::AclDrop)
    };
    let f = || tcp4("198.51.100.7", 80); // SYN, DSCP 10, from 10.9.9.9, port 1
    let mask = |v: [u8; 6], m: [u8; 6]| {
        Some(Masked {
            value: MacAddr(v),
            mask: MacAddr(m),
        })
    };
    let cases: Vec<(AclMatch, bool)> = vec![
        (AclMatch::default(), true),
        (
            AclMatch {
                in_port: Some(PortId(1)),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                in_port: Some(PortId(2)),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                src_mac: mask([0x02, 0xbb, 0, 0, 0, 0], [0xff, 0xff, 0, 0, 0, 0]),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                src_mac: mask([0x02, 0xcc, 0, 0, 0, 0], [0xff, 0xff, 0, 0, 0, 0]),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                dst_mac: mask(rif_mac(1), [0xff; 6]),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                ether_type: Some(Masked {
                    value: 0x0800,
                    mask: 0xffff,
                }),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                ether_type: Some(Masked {
                    value: 0x86dd,
                    mask: 0xffff,
                }),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                vlan: Some(100),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                dst_ip: Some("198.51.100.0/24".parse().unwrap()),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                dst_ip: Some("198.51.101.0/24".parse().unwrap()),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                dst_ip: Some("::/0".parse().unwrap()),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                src_ip: Some("0.0.0.0/0".parse().unwrap()),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                ip_proto: Some(17),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                src_port: Some(PortRange {
                    first: 39000,
                    last: 41000,
                }),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                src_port: Some(PortRange {
                    first: 1,
                    last: 1023,
                }),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                tcp_flags: Some(Masked {
                    value: 0x02,
                    mask: 0x12,
                }),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                tcp_flags: Some(Masked {
                    value: 0x10,
                    mask: 0x10,
                }),
                ..Default::default()
            },
            false,
        ),
        (
            AclMatch {
                dscp: Some(10),
                ..Default::default()
            },
            true,
        ),
        (
            AclMatch {
                dscp: Some(46),
                ..Default::default()
            },
            false,
        ),
    ];
    for (i, (m, expect)) in cases.into_iter().enumerate() {
        let t = t_for(m.clone());
        assert_eq!(dropped(&t, f(), 1), expect, "case {i}: {m:?}");
    }
    // VLAN matches the ingress tag.
    let t = t_for(AclMatch {
        vlan: Some(100),
        ..Default::default()
    });
    let tagged = ether(
        rif_mac(3),
        Some(100),
        0x0800,
        &ipv4("10.9.9.9", "198.51.100.7", 6, 64, &tcp(1, 2, 0)),
    );
    assert!(dropped(&t, tagged, 3));
    // L4 ports need TCP or UDP: ICMP never matches a port rule.
    let t = t_for(AclMatch {
        dst_port: Some(PortRange {
            first: 0,
            last: 65535,
        }),
        ..Default::default()
    });
    let icmp = ether(
        rif_mac(1),
        None,
        0x0800,
        &ipv4("10.9.9.9", "198.51.100.7", 1, 64, &[8, 0, 0, 0, 0, 0, 0, 0]),
    );
    assert!(!dropped(&t, icmp, 1));
    assert!(dropped(&t, f(), 1));
    // IPv6 prefixes match IPv6 packets.
    let t = t_for(AclMatch {
        src_ip: Some("2001:db8:9::/48".parse().unwrap()),
        ..Default::default()
    });
    let v6 = ether(
        rif_mac(1),
        None,
        0x86dd,
        &ipv6("2001:db8:9::9", "2001:db8:100::5", 17, 9, &udp(5, 6)),
    );
    assert!(dropped(&t, v6, 1));
    assert!(!dropped(&t, f(), 1));
}

#[test]
fn untagged_in_tagged_out() {
    let t = tables_with(vec![]);
    // Sub-port: port 3, VLAN 100.
    let mut f = tcp4("10.100.1.1", 80);
    let len = f.len();
    assert_eq!(run(&t, 1, &mut f), fwd(3));
    assert_eq!(f.len(), len + 4);
    assert_eq!(f[0..6], nbr_mac(3));
    assert_eq!(f[6..12], rif_mac(3));
    assert_eq!(f[12..18], [0x81, 0x00, 0x00, 100, 0x08, 0x00]);
    assert_eq!(f[18 + 8], 63);
    assert_ipv4_checksum(&f[18..]);
    // Tagged VLAN member: port 4, VLAN 200.
    let mut f = tcp4("10.104.2.1", 80);
    assert_eq!(run(&t, 1, &mut f), fwd(4));
    assert_eq!(f[12..18], [0x81, 0x00, 0x00, 200, 0x08, 0x00]);
    assert_eq!(f[0..6], nbr_mac(4));
    assert_eq!(f[6..12], rif_mac(4));
    // Untagged VLAN member: port 5.
    let mut f = tcp4("10.104.3.1", 80);
    assert_eq!(run(&t, 1, &mut f), fwd(5));
    assert_eq!(f.len(), len);
    assert_eq!(f[12..14], [0x08, 0x00]);
    assert_ipv4_checksum(&f[14..]);
}

#[test]
fn tagged_in() {
    let t = tables_with(vec![]);
    let pkt = |dst| ipv4("10.9.9.9", dst, 6, 64, &tcp(1, 2, 0));
    // Sub-port in, port interface out: the tag is removed.
    let mut f = ether(rif_mac(3), Some(100), 0x0800, &pkt("10.101.0.1"));
    let len = f.len();
    assert_eq!(run(&t, 3, &mut f), fwd(1));
    assert_eq!(f.len(), len - 4);
    assert_eq!(f[0..6], nbr_mac(1));
    assert_eq!(f[6..12], rif_mac(1));
    assert_eq!(f[12..14], [0x08, 0x00]);
    assert_ipv4_checksum(&f[14..]);
    // Tagged VLAN member in (priority 5), sub-port out: VLAN rewritten, priority kept.
    let mut f = ether(rif_mac(4), Some(200), 0x0800, &pkt("10.100.0.1"));
    f[14] |= 0xa0;
    assert_eq!(run(&t, 4, &mut f), fwd(3));
    assert_eq!(f[12..18], [0x81, 0x00, 0xa0, 100, 0x08, 0x00]);
    assert_ipv4_checksum(&f[18..]);
    // Untagged VLAN member in, tagged member out.
    let mut f = ether(rif_mac(4), None, 0x0800, &pkt("10.104.2.1"));
    assert_eq!(run(&t, 5, &mut f), fwd(4));
    assert_eq!(f[12..16], [0x81, 0x00, 0x00, 200]);
    // A frame tagged with the VLAN on its untagged member has no interface.
    let mut f = ether(rif_mac(4), Some(200), 0x0800, &pkt("10.104.2.1"));
    assert_eq!(
        run(&t, 5, &mut f),
        Verdict::Drop(DropReason::NoRouterInterface)
    );
}

#[test]
fn weighted_group_is_stable_and_proportional() {
    let t = tables_with(vec![]);
    let member = |f: &[u8]| f[5];
    let mut counts = [0u32; 3];
    let flows = 12_000u32;
    for i in 0..flows {
        let src = format!("10.{}.{}.{}", 1 + i % 7, (i / 7) % 250, i % 200);
        let mk = || {
            ether(
                rif_mac(1),
                None,
                0x0800,
                &ipv4(
                    &src,
                    "10.200.3.4",
                    6,
                    64,
                    &tcp(1024 + (i % 5000) as u16, 443, 0x02),
                ),
            )
        };
        let mut a = mk();
        assert_eq!(run(&t, 1, &mut a), fwd(2));
        for _ in 0..2 {
            let mut b = mk();
            run(&t, 1, &mut b);
            assert_eq!(member(&a), member(&b), "flow {i} changed member");
        }
        counts[usize::from(member(&a)) - 11] += 1;
    }
    // Weights 1:3:6.
    let expect = [0.1, 0.3, 0.6];
    for (c, e) in counts.iter().zip(expect) {
        let share = f64::from(*c) / f64::from(flows);
        assert!((share - e).abs() < 0.03, "counts {counts:?}");
    }
}

#[test]
fn group_slots_are_scaled_down() {
    let big = Object::Group(NextHopGroup {
        id: GroupId(2),
        members: vec![
            GroupMember {
                next_hop: NextHopId(11),
                weight: 1_000_000,
            },
            GroupMember {
                next_hop: NextHopId(12),
                weight: 3_000_001,
            },
        ],
    });
    let t = tables_with(vec![
        big,
        route(
            VrfId::DEFAULT,
            "10.201.0.0/16",
            RouteAction::Group(GroupId(2)),
        ),
    ]);
    assert!(t.group_slots.len() as u64 <= 3 * 10 + 2 * MAX_GROUP_SLOTS);
    let mut f = tcp4("10.201.0.1", 80);
    assert_eq!(run(&t, 1, &mut f), fwd(2));
}

#[test]
fn ipv6_extension_headers_reach_the_l4_ports() {
    let rule = acl(
        1,
        AclStage::Ingress,
        1,
        AclMatch {
            ip_proto: Some(17),
            dst_port: Some(PortRange {
                first: 53,
                last: 53,
            }),
            ..Default::default()
        },
        AclAction::Drop,
    );
    let t = tables_with(vec![rule]);
    // Hop-by-hop (8 bytes) then UDP to port 53.
    let mut l4 = vec![17u8, 0, 1, 4, 0, 0, 0, 0];
    l4.extend(udp(5353, 53));
    let mut f = ether(
        rif_mac(1),
        None,
        0x86dd,
        &ipv6("2001:db8:9::9", "2001:db8:100::5", 0, 9, &l4),
    );
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::AclDrop));
}

fn valid_frames() -> Vec<(u32, Vec<u8>)> {
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&v6_addr("2001:db8:2::1"));
    vec![
        (1, tcp4("198.51.100.7", 80)),
        (1, tcp4("10.200.1.1", 80)),
        (
            3,
            ether(
                rif_mac(3),
                Some(100),
                0x0800,
                &ipv4("1.2.3.4", "10.101.0.1", 17, 3, &udp(1, 2)),
            ),
        ),
        (
            1,
            ether(
                rif_mac(1),
                None,
                0x0800,
                &ipv4_opts("1.2.3.4", "10.100.0.1", 6, 3, &[1, 1, 1, 0], &tcp(1, 2, 3)),
            ),
        ),
        (
            5,
            ether(
                rif_mac(4),
                None,
                0x86dd,
                &ipv6("2001:db8:9::9", "2001:db8:100::5", 17, 9, &udp(5, 6)),
            ),
        ),
        (
            1,
            ether(
                [0x33, 0x33, 0xff, 0, 0, 1],
                None,
                0x86dd,
                &ipv6("fe80::1", "ff02::1:ff00:1", 58, 255, &ns),
            ),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        port in 0u32..9,
        tag in proptest::option::of(prop_oneof![Just(100u16), Just(200), Just(300), 0u16..4096]),
        ether_type in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), any::<u16>()],
    ) {
        let t = tables_with(vec![dport_rule(1, 6, 5001, AclAction::Drop)]);
        let mut c = Counters::default();
        let mut raw = bytes.clone();
        process(&t, PortId(port), &mut raw, &mut c);
        // The same bytes behind a plausible Ethernet header for the port.
        let mut f = ether(rif_mac(port.min(4)), tag, ether_type, &bytes);
        process(&t, PortId(port), &mut f, &mut c);
        let total: u64 = c.forwarded + c.drops.iter().sum::<u64>()
            + c.punts.iter().sum::<u64>() - c.punts[punt_index(PuntReason::AclCopy)];
        prop_assert_eq!(total, 2);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let t = tables_with(vec![]);
        let (port, mut f) = valid_frames().swap_remove(which);
        for (i, b) in edits {
            let i = i.index(f.len());
            f[i] = b;
        }
        if let Some(c) = cut {
            let n = c.index(f.len() + 1);
            f.truncate(n);
        }
        let mut c = Counters::default();
        if let Verdict::Forward { .. } = process(&t, PortId(port), &mut f, &mut c) {
            // Whatever was forwarded carries a valid IPv4 checksum.
            if f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[14] >> 4 == 4 {
                let hlen = usize::from(f[14] & 0x0f) * 4;
                prop_assert_eq!(ones_sum(&f[14..14 + hlen]), 0xffff);
            }
        }
    }
}

#[test]
fn valid_frames_are_valid() {
    let t = tables_with(vec![]);
    let expect = [
        fwd(2),
        fwd(2),
        fwd(1),
        fwd(3),
        fwd(2),
        Verdict::Punt(PuntReason::NeighborDiscovery),
    ];
    for ((port, mut f), e) in valid_frames().into_iter().zip(expect) {
        assert_eq!(run(&t, port, &mut f), e);
    }
}

#[test]
fn tables_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tables>();
    let t = Tables::build(&state_with(vec![]));
    assert_eq!(t.route_count(), 14);
    assert!(format!("{t:?}").contains("routes: 14"));
}

#[test]
fn tables_say_whether_any_rule_copies() {
    assert!(tables_with(vec![dport_rule(1, 6, 179, AclAction::Copy)]).has_copy_rules());
    assert!(!tables_with(vec![dport_rule(1, 6, 179, AclAction::Drop)]).has_copy_rules());
}

#[test]
fn priority_tagged_frames_use_the_untagged_interface() {
    // VLAN id 0 with priority bits: the frame is handled as untagged (802.1Q).
    let t = tables_with(vec![]);
    let mut f = tcp4("198.51.100.7", 80);
    f.splice(12..12, [0x81, 0x00, 0xa0, 0x00]);
    assert!(
        matches!(run(&t, 1, &mut f), Verdict::Forward { .. }),
        "{:?}",
        run(&t, 1, &mut tcp4("198.51.100.7", 80))
    );
}

#[test]
fn ingress_acl_protects_the_router_itself() {
    // 192.0.2.1 is the router's own address (a ToCpu route).
    let t = tables_with(vec![dport_rule(1, 6, 22, AclAction::Drop)]);
    let mut f = tcp4("192.0.2.1", 22);
    assert_eq!(run(&t, 1, &mut f), Verdict::Drop(DropReason::AclDrop));
    let mut f = tcp4("192.0.2.1", 179);
    assert_eq!(run(&t, 1, &mut f), Verdict::Punt(PuntReason::ToMe));
}

/// What a lookup of `addr` in VRF `vrf` resolves to, in terms that do not
/// depend on how the tables were compiled (indices differ between builds).
fn resolved(t: &Tables, vrf: usize, addr: std::net::IpAddr) -> String {
    let v = &t.vrfs[vrf];
    let hit = match addr {
        std::net::IpAddr::V4(a) => v.v4.lookup(a.into()),
        std::net::IpAddr::V6(a) => v.v6.lookup(a.into()),
    };
    let Some(i) = hit else {
        return "miss".into();
    };
    let a = t.actions[i as usize];
    let slots = &t.group_slots[a.start as usize..(a.start + a.len) as usize];
    let egress: Vec<_> = slots.iter().map(|&n| t.next_hops[n as usize]).collect();
    match a.class {
        RouteClass::Drop => "drop".into(),
        RouteClass::Local => "cpu".into(),
        RouteClass::NextHop => format!("{:?}", egress[0]),
        RouteClass::Group => format!("{egress:?}"),
        RouteClass::NoRoute => "no route action".into(),
    }
}

/// Applies `deltas` to `state` (each must be accepted) and commits them.
fn commit(
    w: &mut TableWriter,
    state: &mut ForwardingState,
    target: &arc_swap::ArcSwap<Tables>,
    deltas: &[nos_core::Delta],
) {
    for d in deltas {
        state.apply(d).unwrap();
    }
    let refs: Vec<&nos_core::Delta> = deltas.iter().collect();
    w.commit(state, &refs, target);
}

/// Asserts that `t` forwards like a full build of `state` for the first and last
/// address of every prefix in `probes` and for `extra` addresses.
fn assert_like_full_build(t: &Tables, state: &ForwardingState, probes: &[ipnet::IpNet]) {
    let full = Tables::build(state);
    assert_eq!(t.route_count(), full.route_count());
    assert_eq!(t.vrf_ids, full.vrf_ids);
    for vrf in 0..full.vrfs.len() {
        for p in probes {
            for a in [p.network(), p.broadcast()] {
                assert_eq!(
                    resolved(t, vrf, a),
                    resolved(&full, vrf, a),
                    "vrf #{vrf}, address {a} (probe {p})"
                );
            }
        }
    }
}

fn route_pool() -> Vec<ipnet::IpNet> {
    [
        "0.0.0.0/0",
        "10.0.0.0/8",
        "10.104.0.0/16",
        "10.104.2.0/24",
        "10.104.2.0/25",
        "10.104.2.128/26",
        "10.104.2.130/32",
        "10.104.0.0/20",
        "10.200.0.0/16",
        "10.200.7.0/24",
        "10.200.7.64/27",
        "198.51.100.0/24",
        "198.51.100.0/22",
        "198.51.100.77/32",
        "::/0",
        "2001:db8::/32",
        "2001:db8:100::/48",
        "2001:db8:100:7::/64",
        "2001:db8:100:7::9/128",
        "2001:db8:100:7:8000::/65",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The writer's incrementally patched tables (both copies, as they take turns
    /// being published) forward like a full build after every batch: routes
    /// added, changed and removed, groups rewritten, neighbors changed, and with a
    /// long-lived reader forcing the copy path now and then, the standby
    /// copy brought up to date early now and then, and large batches handing
    /// on a copy of the published tables as the next standby.
    #[test]
    fn table_writer_matches_a_full_build(
        batches in proptest::collection::vec(
            (
                proptest::collection::vec((0usize..20, 0usize..7, any::<bool>()), 0..30),
                0u8..8,
                0u8..3,
                any::<bool>(),
            ),
            1..8,
        ),
        copy_after in proptest::sample::select(vec![1usize, 6, 1 << 30]),
    ) {
        let pool = route_pool();
        let mut state = ForwardingState::new();
        let mut w = TableWriter::new();
        // Batches from this many route changes hand on a copy of the
        // published tables as the next standby.
        w.set_copy_after(copy_after);
        let target = arc_swap::ArcSwap::from_pointee(Tables::empty());
        // Enough other routes that batches are patched in, not bulk-loaded.
        let filler: Vec<Object> = (0..400u32)
            .map(|i| {
                let p = format!("10.50.{}.{}/{}", i / 2, (i % 2) * 128, 24 + i % 2);
                route(VrfId::DEFAULT, &p, RouteAction::NextHop(NextHopId(1 + i % 3)))
            })
            .collect();
        let initial = nos_core::diff(&ForwardingState::new(), &state_with(filler));
        commit(&mut w, &mut state, &target, &initial);
        assert_like_full_build(&target.load(), &state, &pool);
        // Readers holding a published copy across commits (0, 1 or 2 of them).
        let mut readers: Vec<(u8, std::sync::Arc<Tables>)> = Vec::new();
        for (ops, object_change, hold, catch_up) in batches {
            let mut deltas = Vec::new();
            let mut scratch = state.clone();
            for (p, a, blue) in ops {
                let prefix = pool[p];
                let vrf = if blue { BLUE } else { VrfId::DEFAULT };
                let action = match a {
                    0 => None,
                    1 => Some(RouteAction::Drop),
                    2 => Some(RouteAction::ToCpu),
                    3 => Some(RouteAction::NextHop(NextHopId(1))),
                    4 => Some(RouteAction::NextHop(NextHopId(if blue { 8 } else { 7 }))),
                    5 => Some(RouteAction::NextHop(NextHopId(10))),
                    _ => Some(RouteAction::Group(GroupId(1))),
                };
                let key = nos_core::RouteKey { vrf, prefix };
                let exists = scratch.routes().contains_key(&key);
                let d = match (action, exists) {
                    (None, true) => nos_core::Delta::Delete(nos_core::ObjectKey::Route(key)),
                    (None, false) => continue,
                    (Some(action), true) => nos_core::Delta::Modify(Object::Route(Route { vrf, prefix, action })),
                    (Some(action), false) => nos_core::Delta::Create(Object::Route(Route { vrf, prefix, action })),
                };
                scratch.apply(&d).unwrap();
                deltas.push(d);
            }
            let green = VrfId(7);
            match object_change {
                0 => deltas.push(nos_core::Delta::Modify(Object::Group(NextHopGroup {
                    id: GroupId(1),
                    members: vec![GroupMember { next_hop: NextHopId(12), weight: 2 }],
                }))),
                1 => deltas.push(nos_core::Delta::Modify(nbr(2, "10.0.2.2", 99, None))),
                // A VRF created or deleted between batches of route changes.
                2 if !scratch.vrfs().contains_key(&green) => {
                    deltas.push(nos_core::Delta::Create(Object::Vrf(Vrf { id: green, name: "green".into() })))
                }
                2 => deltas.push(nos_core::Delta::Delete(nos_core::ObjectKey::Vrf(green))),
                _ => {}
            }
            if hold > 0 {
                readers.push((hold, target.load_full()));
            }
            commit(&mut w, &mut state, &target, &deltas);
            if catch_up {
                // The standby copy brought up to date between batches.
                w.catch_up(&state, 0);
            }
            readers.retain_mut(|(left, _)| {
                *left -= 1;
                *left > 0
            });
            assert_like_full_build(&target.load(), &state, &pool);
        }
    }
}

#[test]
fn a_group_rewrite_through_the_writer_forwards_like_a_full_build() {
    // Fast failover: group 1 loses two of its members; routes are untouched.
    let mut state = ForwardingState::new();
    let mut w = TableWriter::new();
    let target = arc_swap::ArcSwap::from_pointee(Tables::empty());
    let initial = nos_core::diff(&ForwardingState::new(), &state_with(vec![]));
    commit(&mut w, &mut state, &target, &initial);
    let rewrite = nos_core::Delta::Modify(Object::Group(NextHopGroup {
        id: GroupId(1),
        members: vec![GroupMember {
            next_hop: NextHopId(13),
            weight: 1,
        }],
    }));
    commit(&mut w, &mut state, &target, &[rewrite]);
    let quick = target.load_full();
    let full = Tables::build(&state);
    let mut macs = std::collections::HashSet::new();
    for i in 0..200u32 {
        let src = format!("10.1.{}.{}", i % 250, i % 200);
        let mk = || {
            ether(
                rif_mac(1),
                None,
                0x0800,
                &ipv4(&src, "10.200.3.4", 6, 64, &tcp(1024 + i as u16, 443, 0x02)),
            )
        };
        let (mut a, mut b) = (mk(), mk());
        let va = process(&quick, PortId(1), &mut a, &mut Counters::default());
        let vb = process(&full, PortId(1), &mut b, &mut Counters::default());
        assert_eq!(va, vb);
        assert!(matches!(va, Verdict::Forward { .. }), "{va:?}");
        assert_eq!(a, b, "same rewrite");
        macs.insert(a[0..6].to_vec());
    }
    assert_eq!(
        macs.len(),
        1,
        "every flow now goes to the one remaining member"
    );
}
