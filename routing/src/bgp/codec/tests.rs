//! Codec tests: round trips, RFC 7606 cases on hand-built bytes, packing, and
//! randomized no-panic runs.

use super::update::{FLAG_EXTENDED, FLAG_OPTIONAL, FLAG_PARTIAL, FLAG_TRANSITIVE};
use super::*;
use crate::bgp::msg::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const WK: u8 = FLAG_TRANSITIVE; // well-known
const OT: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
const ON: u8 = FLAG_OPTIONAL;

fn caps(four_octet_as: bool, ebgp: bool, add_path_rx: &[Family]) -> SessionCaps {
    SessionCaps {
        four_octet_as,
        add_path_rx: add_path_rx.to_vec(),
        ebgp,
        ..SessionCaps::default()
    }
}

fn ibgp4() -> SessionCaps {
    caps(true, false, &[])
}

fn ebgp4() -> SessionCaps {
    caps(true, true, &[])
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn nlri(s: &str) -> Nlri {
    Nlri {
        prefix: net(s),
        path_id: None,
    }
}

/// One attribute on the wire.
fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, code];
    if flags & FLAG_EXTENDED != 0 {
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        v.push(value.len() as u8);
    }
    v.extend_from_slice(value);
    v
}

fn origin_igp() -> Vec<u8> {
    attr(WK, 1, &[0])
}

/// AS_PATH with one 4-octet AS_SEQUENCE.
fn as_path4(asns: &[u32]) -> Vec<u8> {
    let mut v = vec![2, asns.len() as u8];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes());
    }
    attr(WK, 2, &v)
}

/// AS_PATH with one 2-octet AS_SEQUENCE.
fn as_path2(asns: &[u16]) -> Vec<u8> {
    let mut v = vec![2, asns.len() as u8];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes());
    }
    attr(WK, 2, &v)
}

fn next_hop(a: [u8; 4]) -> Vec<u8> {
    attr(WK, 3, &a)
}

/// ORIGIN, AS_PATH (4-octet 65001) and NEXT_HOP 192.0.2.1.
fn mandatory() -> Vec<u8> {
    [origin_igp(), as_path4(&[65001]), next_hop([192, 0, 2, 1])].concat()
}

/// 10.0.0.0/8 and 192.168.1.0/24 in NLRI form.
fn two_prefixes() -> Vec<u8> {
    vec![8, 10, 24, 192, 168, 1]
}

fn body(withdrawn: &[u8], attrs: &[u8], nlri_field: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri_field);
    b
}

fn dec_update(b: &[u8], c: &SessionCaps) -> Result<Update, MessageError> {
    match decode(2, b, c)? {
        Message::Update(u) => Ok(u),
        other => panic!("not an UPDATE: {other:?}"),
    }
}

/// Decodes an UPDATE built from `attrs` and the two test prefixes.
fn with_attrs(attrs: &[u8], c: &SessionCaps) -> Result<Update, MessageError> {
    dec_update(&body(&[], attrs, &two_prefixes()), c)
}

/// Splits a whole message and decodes it.
fn decode_whole(bytes: &[u8], c: &SessionCaps) -> Result<Message, MessageError> {
    let header: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
    let (t, len) = parse_header(&header)?;
    assert_eq!(len, bytes.len(), "header length");
    decode(t, &bytes[HEADER_LEN..], c)
}

fn roundtrip(m: &Message, c: &SessionCaps) {
    let bytes = encode(m, c).unwrap();
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    assert_eq!(&decode_whole(&bytes, c).unwrap(), m);
}

fn err_code(r: Result<Update, MessageError>) -> (u8, u8) {
    let e = r.expect_err("expected a session reset");
    (e.notification.code, e.notification.subcode)
}

/// The update was treated as withdrawn because of attribute `code`.
fn assert_taw(u: &Update, code: u8) {
    assert!(u.treat_as_withdraw, "not treat-as-withdraw: {u:?}");
    assert!(u.attrs.is_none());
    assert_eq!(u.announced.len(), 2, "prefixes still listed");
    assert!(
        u.issues
            .iter()
            .any(|i| i.code == code && i.action == ErrorAction::TreatAsWithdraw),
        "no treat-as-withdraw issue for {code}: {:?}",
        u.issues
    );
}

/// The attribute `code` was discarded and the route kept.
fn assert_discard(u: &Update, code: u8) -> Arc<PathAttrs> {
    assert!(!u.treat_as_withdraw, "unexpected treat-as-withdraw: {u:?}");
    assert!(
        u.issues
            .iter()
            .any(|i| i.code == code && i.action == ErrorAction::AttributeDiscard),
        "no discard issue for {code}: {:?}",
        u.issues
    );
    u.attrs.clone().expect("attributes kept")
}

fn full_attrs() -> PathAttrs {
    PathAttrs {
        origin: Origin::Egp,
        as_path: vec![
            AsSegment::Sequence(vec![65001, 4_200_000_001, 65002]),
            AsSegment::Set(vec![64512, 64513]),
        ],
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        link_local_next_hop: None,
        med: Some(50),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some((4_200_000_002, Ipv4Addr::new(198, 51, 100, 7))),
        communities: vec![0xfde8_0001, 0xffff_ff01],
        large_communities: vec![(4_200_000_001, 1, 2), (65001, 3, 4)],
        extended_communities: vec![0x0002_fde8_0000_0064],
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 9)),
        cluster_list: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
        unknown: vec![RawAttribute {
            flags: OT | FLAG_PARTIAL,
            code: 99,
            value: vec![1, 2, 3],
        }],
    }
}

fn v6_attrs() -> PathAttrs {
    let mut a = PathAttrs::new(
        Origin::Igp,
        vec![AsSegment::Sequence(vec![65001])],
        Some("2001:db8::1".parse().unwrap()),
    );
    a.link_local_next_hop = Some("fe80::1".parse().unwrap());
    a
}

// ---------------------------------------------------------------- header

fn header(len: u16, t: u8) -> [u8; HEADER_LEN] {
    let mut h = [0xff; HEADER_LEN];
    h[16..18].copy_from_slice(&len.to_be_bytes());
    h[18] = t;
    h
}

#[test]
fn header_accepts_each_type_at_its_minimum() {
    for (t, min) in [(1, 29), (2, 23), (3, 21), (4, 19), (5, 23)] {
        assert_eq!(parse_header(&header(min, t)), Ok((t, usize::from(min))));
        let short = parse_header(&header(min - 1, t)).unwrap_err();
        assert_eq!(
            (short.notification.code, short.notification.subcode),
            (1, 2)
        );
        assert_eq!(short.notification.data, (min - 1).to_be_bytes().to_vec());
    }
    assert_eq!(parse_header(&header(4096, 2)), Ok((2, 4096)));
}

#[test]
fn header_errors() {
    let mut h = header(19, 4);
    h[3] = 0;
    let e = parse_header(&h).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (1, 1));

    for len in [0u16, 18, 4097, 65535] {
        let e = parse_header(&header(len, 2)).unwrap_err();
        assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
        assert_eq!(e.notification.data, len.to_be_bytes().to_vec());
    }
    let e = parse_header(&header(20, 4)).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (1, 2));

    for t in [0u8, 6, 255] {
        let e = parse_header(&header(40, t)).unwrap_err();
        assert_eq!((e.notification.code, e.notification.subcode), (1, 3));
        assert_eq!(e.notification.data, vec![t]);
    }
}

// ---------------------------------------------------------------- OPEN

fn open_body(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

/// One capabilities optional parameter holding `caps` (already TLVs).
fn cap_param(caps: &[u8]) -> Vec<u8> {
    let mut v = vec![2, caps.len() as u8];
    v.extend_from_slice(caps);
    v
}

fn open_err(b: &[u8]) -> (u8, u8, Vec<u8>) {
    let e = decode(1, b, &SessionCaps::default()).unwrap_err();
    (
        e.notification.code,
        e.notification.subcode,
        e.notification.data,
    )
}

#[test]
fn open_roundtrip_all_capabilities() {
    let open = Open {
        version: 4,
        my_as: AS_TRANS,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 9),
        capabilities: vec![
            Capability::MultiProtocol(IPV4_UNICAST),
            Capability::MultiProtocol(IPV6_UNICAST),
            Capability::MultiProtocol((25, 65)),
            Capability::MultiProtocol((3, 200)),
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart {
                restarting: true,
                notification: true,
                restart_time: 120,
                families: vec![(IPV4_UNICAST, true), (IPV6_UNICAST, false)],
            },
            Capability::AddPath(vec![(IPV4_UNICAST, 1), (IPV6_UNICAST, 3)]),
            Capability::AddPath(vec![((3, 9), 7)]),
            Capability::Unknown {
                code: 70,
                value: vec![],
            },
            Capability::Unknown {
                code: 73,
                value: b"router".to_vec(),
            },
        ],
    };
    roundtrip(&Message::Open(open.clone()), &SessionCaps::default());
    assert_eq!(open.asn(), 4_200_000_001);
    let bare = Open {
        capabilities: vec![],
        ..open
    };
    roundtrip(&Message::Open(bare), &SessionCaps::default());
}

#[test]
fn open_with_unknown_multiprotocol_families_decodes() {
    // MP capability for AFI 25 / SAFI 65 (L2VPN VPLS), and for AFI 999 /
    // SAFI 201, which bgp-rs has no value for.
    let caps_tlvs = [
        vec![1, 4, 0, 25, 0, 65],
        vec![1, 4, 0x03, 0xe7, 0, 201],
        vec![1, 4, 0, 1, 0, 1],
        vec![65, 4, 0, 0, 0xfd, 0xe9],
    ]
    .concat();
    let b = open_body(4, 65001, 180, [10, 0, 0, 1], &cap_param(&caps_tlvs));
    let Message::Open(o) = decode(1, &b, &SessionCaps::default()).unwrap() else {
        panic!()
    };
    assert_eq!(o.families(), vec![(25, 65), (999, 201), IPV4_UNICAST]);
    assert_eq!(o.asn(), 65001);
    // bgp-rs alone refuses the whole OPEN.
    assert!(bgp_rs::Open::parse(&mut &b[..]).is_err());
}

#[test]
fn open_capability_shapes() {
    // Wrong-length known capabilities are kept as Unknown, never fatal.
    let tlvs = [
        vec![1, 3, 0, 1, 0],
        vec![2, 1, 0],
        vec![65, 2, 0, 1],
        vec![64, 3, 0, 0, 0],
        vec![69, 0],
        vec![128, 0],
    ]
    .concat();
    let b = open_body(4, 65001, 0, [10, 0, 0, 1], &cap_param(&tlvs));
    let Message::Open(o) = decode(1, &b, &SessionCaps::default()).unwrap() else {
        panic!()
    };
    assert_eq!(o.capabilities.len(), 6);
    assert!(o
        .capabilities
        .iter()
        .all(|c| matches!(c, Capability::Unknown { .. })));
    // Several capability parameters, one capability each, and an empty one.
    let params = [
        cap_param(&[2, 0]),
        cap_param(&[]),
        cap_param(&[64, 6, 0x80 | 0x01, 0x2c, 0, 2, 1, 0x80]),
        cap_param(&[64, 2, 0x40, 0x5a]),
    ]
    .concat();
    let b = open_body(4, 65001, 3, [10, 0, 0, 1], &params);
    let Message::Open(o) = decode(1, &b, &SessionCaps::default()).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::RouteRefresh,
            Capability::GracefulRestart {
                restarting: true,
                notification: false,
                restart_time: 300,
                families: vec![(IPV6_UNICAST, true)],
            },
            Capability::GracefulRestart {
                restarting: false,
                notification: true,
                restart_time: 90,
                families: vec![],
            }
        ]
    );
}

#[test]
fn open_extended_optional_parameters_rfc9072() {
    let tlvs = [vec![2, 0], vec![65, 4, 0, 1, 0, 0]].concat();
    let mut params = vec![255];
    params.extend_from_slice(&((tlvs.len() + 3) as u16).to_be_bytes());
    params.push(2);
    params.extend_from_slice(&(tlvs.len() as u16).to_be_bytes());
    params.extend_from_slice(&tlvs);
    let mut b = open_body(4, AS_TRANS, 90, [10, 0, 0, 1], &[]);
    b.pop();
    b.push(255);
    b.extend_from_slice(&params);
    let Message::Open(o) = decode(1, &b, &SessionCaps::default()).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![Capability::RouteRefresh, Capability::FourOctetAs(65536)]
    );
}

#[test]
fn open_errors() {
    let ok = cap_param(&[2, 0]);
    assert_eq!(
        open_err(&open_body(3, 65001, 90, [10, 0, 0, 1], &ok)),
        (2, 1, vec![0, 4])
    );
    for hold in [1, 2] {
        assert_eq!(
            open_err(&open_body(4, 65001, hold, [10, 0, 0, 1], &ok)),
            (2, 6, vec![])
        );
    }
    for hold in [0, 3, 65535] {
        assert!(decode(
            1,
            &open_body(4, 65001, hold, [10, 0, 0, 1], &ok),
            &SessionCaps::default()
        )
        .is_ok());
    }
    assert_eq!(
        open_err(&open_body(4, 65001, 90, [0, 0, 0, 0], &ok)),
        (2, 3, vec![])
    );
    assert_eq!(
        open_err(&open_body(4, 0, 90, [10, 0, 0, 1], &ok)),
        (2, 2, vec![])
    );
    // Optional parameter type 1 (authentication, deprecated) and 7.
    for t in [1u8, 7] {
        assert_eq!(
            open_err(&open_body(4, 65001, 90, [10, 0, 0, 1], &[t, 1, 0])),
            (2, 4, vec![])
        );
    }
    // Capability TLV overrunning its parameter.
    assert_eq!(
        open_err(&open_body(
            4,
            65001,
            90,
            [10, 0, 0, 1],
            &cap_param(&[65, 4, 0, 1])
        )),
        (2, 0, vec![])
    );
    // Capability header cut in half.
    assert_eq!(
        open_err(&open_body(4, 65001, 90, [10, 0, 0, 1], &cap_param(&[65]))),
        (2, 0, vec![])
    );
    // Parameter overrunning the parameters.
    assert_eq!(
        open_err(&open_body(4, 65001, 90, [10, 0, 0, 1], &[2, 9, 2, 0])),
        (2, 0, vec![])
    );
    // Optional Parameters Length disagreeing with the message.
    let mut b = open_body(4, 65001, 90, [10, 0, 0, 1], &ok);
    b.push(0);
    assert_eq!(open_err(&b), (2, 0, vec![]));
    // Too short for an OPEN at all.
    assert_eq!(open_err(&[4, 0, 1]).0, 1);
}

// ---------------------------------------------------------------- others

#[test]
fn notification_keepalive_route_refresh_roundtrip() {
    let c = SessionCaps::default();
    roundtrip(
        &Message::Notification(Notification {
            code: err::CEASE,
            subcode: err::ADMIN_SHUTDOWN,
            data: b"maintenance".to_vec(),
        }),
        &c,
    );
    roundtrip(
        &Message::Notification(Notification {
            code: err::HOLD_TIMER_EXPIRED,
            subcode: 0,
            data: vec![],
        }),
        &c,
    );
    roundtrip(&Message::Keepalive, &c);
    assert_eq!(encode(&Message::Keepalive, &c).unwrap().len(), 19);
    for family in [IPV4_UNICAST, IPV6_UNICAST, (3, 7), (1, 250)] {
        roundtrip(&Message::RouteRefresh(RouteRefresh { family }), &c);
    }
    let too_long = Notification {
        code: 6,
        subcode: 0,
        data: vec![0; 4096],
    };
    assert!(encode(&Message::Notification(too_long), &c).is_err());
}

#[test]
fn keepalive_and_route_refresh_length_errors() {
    let c = SessionCaps::default();
    let e = decode(4, &[0], &c).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
    assert_eq!(e.notification.data, vec![0, 20]);

    // RFC 7313: wrong ROUTE-REFRESH length, data = the whole message.
    let e = decode(5, &[0, 1, 0, 1, 9], &c).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (7, 1));
    assert_eq!(e.notification.data.len(), 24);
    assert_eq!(&e.notification.data[..16], &[0xff; 16]);
    assert_eq!(&e.notification.data[16..19], &[0, 24, 5]);
    assert_eq!(&e.notification.data[19..], &[0, 1, 0, 1, 9]);
    // Shorter than the minimum: a header length error.
    let e = decode(5, &[0, 1, 0], &c).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
    // Reserved octet ignored.
    assert_eq!(
        decode(5, &[0, 2, 7, 1], &c).unwrap(),
        Message::RouteRefresh(RouteRefresh {
            family: IPV6_UNICAST
        })
    );
    // NOTIFICATION without its two codes; unknown message type.
    let e = decode(3, &[6], &c).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
    let e = decode(9, &[], &c).unwrap_err();
    assert_eq!(
        (
            e.notification.code,
            e.notification.subcode,
            e.notification.data
        ),
        (1, 3, vec![9])
    );
    // A body beyond the maximum message size.
    let e = decode(2, &[0; 5000], &c).unwrap_err();
    assert_eq!((e.notification.code, e.notification.subcode), (1, 2));
}

// ---------------------------------------------------------------- UPDATE round trips

#[test]
fn update_v4_roundtrip_all_attributes() {
    let c = ibgp4();
    let u = Update {
        withdrawn: vec![nlri("172.16.0.0/12"), nlri("0.0.0.0/0")],
        announced: vec![
            nlri("10.0.0.0/8"),
            nlri("192.168.1.0/24"),
            nlri("203.0.113.7/32"),
        ],
        attrs: Some(Arc::new(full_attrs())),
        ..Update::default()
    };
    roundtrip(&Message::Update(u.clone()), &c);
    // And with 2-octet AS numbers: AS_TRANS, AS4_PATH and AS4_AGGREGATOR.
    roundtrip(&Message::Update(u), &caps(false, false, &[]));
}

#[test]
fn update_pure_withdrawal_roundtrip() {
    let u = Update {
        withdrawn: vec![nlri("10.1.0.0/16"), nlri("2001:db8:1::/48")],
        ..Update::default()
    };
    roundtrip(&Message::Update(u), &ebgp4());
}

#[test]
fn update_v6_mp_reach_with_link_local_roundtrip() {
    let c = ebgp4();
    let u = Update {
        withdrawn: vec![nlri("10.9.0.0/16"), nlri("2001:db8:ff::/48")],
        announced: vec![
            nlri("2001:db8:1::/48"),
            nlri("::/0"),
            nlri("2001:db8::1/128"),
        ],
        attrs: Some(Arc::new(v6_attrs())),
        ..Update::default()
    };
    let bytes = encode(&Message::Update(u.clone()), &c).unwrap();
    // MP_REACH_NLRI is the first attribute (RFC 7606 section 5.1), with a
    // 32-octet next hop (global + link-local).
    let wlen = u16::from_be_bytes([bytes[19], bytes[20]]) as usize;
    let attrs_at = 21 + wlen + 2;
    assert_eq!(bytes[attrs_at + 1], 14);
    assert_eq!(bytes[attrs_at] & !FLAG_EXTENDED, FLAG_OPTIONAL);
    assert_eq!(&bytes[attrs_at + 3..attrs_at + 7], &[0, 2, 1, 32]);
    assert_eq!(
        decode_whole(&bytes, &c).unwrap(),
        Message::Update(u.clone())
    );

    // Without the link-local address: a 16-octet next hop.
    let mut attrs = v6_attrs();
    attrs.link_local_next_hop = None;
    let u = Update {
        attrs: Some(Arc::new(attrs)),
        ..u
    };
    let bytes = encode(&Message::Update(u.clone()), &c).unwrap();
    let wlen = u16::from_be_bytes([bytes[19], bytes[20]]) as usize;
    assert_eq!(bytes[21 + wlen + 2 + 6], 16);
    assert_eq!(decode_whole(&bytes, &c).unwrap(), Message::Update(u));
}

#[test]
fn update_mixed_families_are_refused() {
    let mut attrs = v6_attrs();
    attrs.next_hop = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let u = Update {
        announced: vec![nlri("10.0.0.0/8"), nlri("2001:db8::/32")],
        attrs: Some(Arc::new(attrs)),
        ..Update::default()
    };
    assert!(matches!(
        encode(&Message::Update(u), &ibgp4()),
        Err(EncodeError::MixedFamilies)
    ));
    let u = Update {
        announced: vec![nlri("10.0.0.0/8")],
        ..Update::default()
    };
    assert!(matches!(
        encode(&Message::Update(u), &ibgp4()),
        Err(EncodeError::MissingAttributes)
    ));
}

#[test]
fn ipv4_in_mp_reach_decodes() {
    let mp = attr(ON, 14, &[0, 1, 1, 4, 192, 0, 2, 7, 0, 16, 10, 20]);
    let attrs = [mp, origin_igp(), as_path4(&[65001])].concat();
    let u = dec_update(&body(&[], &attrs, &[]), &ibgp4()).unwrap();
    assert_eq!(u.announced, vec![nlri("10.20.0.0/16")]);
    let a = u.attrs.unwrap();
    assert_eq!(a.next_hop, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
    // IPv4 MP_REACH with a 16-octet next hop (no extended next hop here).
    let mp = attr(
        ON,
        14,
        &[[0, 1, 1, 16].as_slice(), &[0; 16], &[0, 8, 10]].concat(),
    );
    let attrs = [mp, origin_igp(), as_path4(&[65001])].concat();
    assert_eq!(
        err_code(dec_update(&body(&[], &attrs, &[]), &ibgp4())),
        (3, 9)
    );
}

// ---------------------------------------------------------------- ADD-PATH

#[test]
fn add_path_ipv4_with_and_without_negotiation() {
    // path id 1 10.0.0.0/8, path id 2 10.0.0.0/8, withdrawn path id 7 10.1.0.0/16
    let nlri_field = [0, 0, 0, 1, 8, 10, 0, 0, 0, 2, 8, 10];
    let withdrawn = [0, 0, 0, 7, 16, 10, 1];
    let b = body(&withdrawn, &mandatory(), &nlri_field);

    let u = dec_update(&b, &caps(true, false, &[IPV4_UNICAST])).unwrap();
    assert_eq!(
        u.announced,
        vec![
            Nlri {
                prefix: net("10.0.0.0/8"),
                path_id: Some(1)
            },
            Nlri {
                prefix: net("10.0.0.0/8"),
                path_id: Some(2)
            }
        ]
    );
    assert_eq!(
        u.withdrawn,
        vec![Nlri {
            prefix: net("10.1.0.0/16"),
            path_id: Some(7)
        }]
    );
    // Re-encoded with path ids for IPv4: the same bytes.
    let again = encode_add_path(&Message::Update(u.clone()), &ibgp4(), &[IPV4_UNICAST]).unwrap();
    assert_eq!(&again[HEADER_LEN..], &b[..]);
    // Plain encode refuses to drop the path ids.
    assert!(matches!(
        encode(&Message::Update(u), &ibgp4()),
        Err(EncodeError::PathIdNotNegotiated(_))
    ));

    // Not negotiated for IPv4 (only IPv6): the same bytes are plain prefixes
    // (0.0.0.0/0 three times, ...), never guessed as path ids; here the
    // withdrawn field then no longer parses.
    let v6_only = caps(true, false, &[IPV6_UNICAST]);
    assert_eq!(err_code(dec_update(&b, &v6_only)), (3, 10));
    // Bytes that parse both ways: path id 0 + 10.0.1.0/24, twice, or four
    // 0.0.0.0/0 and 10.0.1.0/24, twice.
    let both = [0, 0, 0, 0, 24, 10, 0, 1, 0, 0, 0, 0, 24, 10, 0, 2];
    let b = body(&[], &mandatory(), &both);
    let u = dec_update(&b, &v6_only).unwrap();
    assert!(u.announced.iter().all(|n| n.path_id.is_none()));
    assert_eq!(u.announced.len(), 10);
    assert_eq!(u.announced[0].prefix, net("0.0.0.0/0"));
    assert_eq!(u.announced[4].prefix, net("10.0.1.0/24"));
    let u = dec_update(&b, &caps(true, false, &[IPV4_UNICAST])).unwrap();
    assert_eq!(
        u.announced,
        vec![
            Nlri {
                prefix: net("10.0.1.0/24"),
                path_id: Some(0)
            },
            Nlri {
                prefix: net("10.0.2.0/24"),
                path_id: Some(0)
            }
        ]
    );

    // Plain prefixes read as ADD-PATH: the last one is truncated.
    let plain = body(&[], &mandatory(), &two_prefixes());
    assert_eq!(
        err_code(dec_update(&plain, &caps(true, false, &[IPV4_UNICAST]))),
        (3, 10)
    );
}

#[test]
fn add_path_ipv6_mp_roundtrip() {
    let c = caps(true, false, &[IPV6_UNICAST]);
    let u = Update {
        withdrawn: vec![Nlri {
            prefix: net("2001:db8:9::/48"),
            path_id: Some(9),
        }],
        announced: vec![
            Nlri {
                prefix: net("2001:db8:1::/48"),
                path_id: Some(1),
            },
            Nlri {
                prefix: net("2001:db8:1::/48"),
                path_id: Some(2),
            },
        ],
        attrs: Some(Arc::new(v6_attrs())),
        ..Update::default()
    };
    let bytes = encode_add_path(&Message::Update(u.clone()), &c, &[IPV6_UNICAST]).unwrap();
    assert_eq!(decode_whole(&bytes, &c).unwrap(), Message::Update(u));
    // Without negotiation the first path id octets read as a prefix length
    // of 0 and the rest no longer parses.
    assert!(decode_whole(&bytes, &ibgp4()).is_err());
}

// ---------------------------------------------------------------- AS numbers

#[test]
fn as_path_two_and_four_octet_encoding() {
    let mut attrs = PathAttrs::new(
        Origin::Igp,
        vec![AsSegment::Sequence(vec![65001, 4_200_000_001])],
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    );
    attrs.aggregator = Some((4_200_000_001, Ipv4Addr::new(192, 0, 2, 2)));
    let prefixes = [net("10.0.0.0/8")];

    let four = encode_updates(&attrs, &prefixes, &ebgp4()).unwrap();
    let four = &four[0];
    let as_path_4 = as_path4(&[65001, 4_200_000_001]);
    assert!(four.windows(as_path_4.len()).any(|w| w == as_path_4));
    assert!(!four.windows(2).any(|w| w == [OT, 17]), "no AS4_PATH");
    let agg4 = attr(OT, 7, &[0xfa, 0x56, 0xea, 0x01, 192, 0, 2, 2]);
    assert!(four.windows(agg4.len()).any(|w| w == agg4));

    let two_caps = caps(false, true, &[]);
    let two = encode_updates(&attrs, &prefixes, &two_caps).unwrap();
    let two = &two[0];
    let as_path_2 = as_path2(&[65001, AS_TRANS]);
    assert!(two.windows(as_path_2.len()).any(|w| w == as_path_2));
    let as4 = {
        let mut v = vec![2, 2];
        v.extend_from_slice(&65001u32.to_be_bytes());
        v.extend_from_slice(&4_200_000_001u32.to_be_bytes());
        attr(OT, 17, &v)
    };
    assert!(two.windows(as4.len()).any(|w| w == as4));
    let agg2 = attr(OT, 7, &[0x5b, 0xa0, 192, 0, 2, 2]);
    assert!(two.windows(agg2.len()).any(|w| w == agg2));
    let as4agg = attr(OT, 18, &[0xfa, 0x56, 0xea, 0x01, 192, 0, 2, 2]);
    assert!(two.windows(as4agg.len()).any(|w| w == as4agg));

    for (bytes, c) in [(four, ebgp4()), (two, two_caps)] {
        let Message::Update(u) = decode_whole(bytes, &c).unwrap() else {
            panic!()
        };
        assert_eq!(u.attrs.as_deref(), Some(&attrs));
        assert!(u.issues.is_empty(), "{:?}", u.issues);
    }

    // Only 2-octet ASes: no AS4_PATH at all.
    let small = PathAttrs::new(
        Origin::Igp,
        vec![AsSegment::Sequence(vec![65001, 65002])],
        attrs.next_hop,
    );
    let bytes = encode_updates(&small, &prefixes, &caps(false, true, &[])).unwrap();
    assert!(!bytes[0].windows(2).any(|w| w == [OT, 17]));
}

#[test]
fn as4_path_merge_on_decode() {
    let c = caps(false, true, &[]);
    // AS_PATH 100 AS_TRANS AS_TRANS, AS4_PATH 70000 80000.
    let as4 = {
        let mut v = vec![2, 2];
        v.extend_from_slice(&70000u32.to_be_bytes());
        v.extend_from_slice(&80000u32.to_be_bytes());
        attr(OT, 17, &v)
    };
    let attrs = [
        origin_igp(),
        as_path2(&[100, AS_TRANS, AS_TRANS]),
        next_hop([192, 0, 2, 1]),
        as4.clone(),
    ]
    .concat();
    let u = with_attrs(&attrs, &c).unwrap();
    assert_eq!(
        u.attrs.unwrap().as_path,
        vec![AsSegment::Sequence(vec![100, 70000, 80000])]
    );

    // AGGREGATOR with a real AS and AS4_AGGREGATOR: both AS4 attributes
    // ignored (RFC 6793 section 4.2.3).
    let agg = attr(OT, 7, &[0, 100, 192, 0, 2, 9]);
    let as4agg = attr(OT, 18, &[0, 1, 0x11, 0x70, 192, 0, 2, 9]);
    let attrs2 = [attrs.clone(), agg, as4agg.clone()].concat();
    let u = with_attrs(&attrs2, &c).unwrap();
    let a = u.attrs.clone().unwrap();
    assert_eq!(
        a.as_path,
        vec![AsSegment::Sequence(vec![
            100,
            u32::from(AS_TRANS),
            u32::from(AS_TRANS)
        ])]
    );
    assert_eq!(a.aggregator, Some((100, Ipv4Addr::new(192, 0, 2, 9))));
    assert_eq!(u.issues.len(), 1);

    // AGGREGATOR AS_TRANS: AS4_AGGREGATOR used.
    let agg = attr(OT, 7, &[0x5b, 0xa0, 192, 0, 2, 9]);
    let attrs3 = [attrs.clone(), agg, as4agg].concat();
    let a = with_attrs(&attrs3, &c).unwrap().attrs.unwrap();
    assert_eq!(a.aggregator, Some((70000, Ipv4Addr::new(192, 0, 2, 9))));
    assert_eq!(
        a.as_path,
        vec![AsSegment::Sequence(vec![100, 70000, 80000])]
    );

    // On a 4-octet session AS4_PATH is discarded.
    let attrs4 = [mandatory(), as4].concat();
    let u = with_attrs(&attrs4, &ebgp4()).unwrap();
    let a = assert_discard(&u, 17);
    assert_eq!(a.as_path, vec![AsSegment::Sequence(vec![65001])]);
}

#[test]
fn malformed_as4_attributes_are_discarded() {
    let c = caps(false, true, &[]);
    let base = [origin_igp(), as_path2(&[100]), next_hop([192, 0, 2, 1])].concat();
    for bad in [
        attr(OT, 17, &[2, 2, 0, 0, 0, 1]),            // overrun
        attr(OT, 17, &[2, 1, 0, 0, 0, 0]),            // AS 0
        attr(OT, 17, &[9, 1, 0, 0, 0, 1]),            // bad type
        attr(ON, 17, &[2, 1, 0, 0, 0, 1]),            // flags
        attr(OT, 18, &[0, 1, 0x11, 0x70, 192, 0, 2]), // length
        attr(OT, 18, &[0, 0, 0, 0, 192, 0, 2, 1]),    // AS 0
    ] {
        let u = with_attrs(&[base.clone(), bad].concat(), &c).unwrap();
        let code = u.issues[0].code;
        let a = assert_discard(&u, code);
        assert_eq!(a.as_path, vec![AsSegment::Sequence(vec![100])]);
    }
    // Confederation segments are dropped from AS4_PATH, the rest kept.
    let mut v = vec![3, 1, 0, 0, 0xfd, 0xe8, 2, 1];
    v.extend_from_slice(&70000u32.to_be_bytes());
    let u = with_attrs(&[base, attr(OT, 17, &v)].concat(), &c).unwrap();
    let a = assert_discard(&u, 17);
    assert_eq!(a.as_path, vec![AsSegment::Sequence(vec![70000])]);
}

// ---------------------------------------------------------------- packing

#[test]
fn packing_10000_ipv4_prefixes() {
    let c = ebgp4();
    let mut attrs = full_attrs();
    attrs.local_pref = None;
    let prefixes: Vec<IpNet> = (0..10_000u32)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).unwrap()))
        .collect();
    let msgs = encode_updates(&attrs, &prefixes, &c).unwrap();
    let total: usize = msgs.iter().map(|m| m.len()).sum();
    assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE_LEN));
    // Every message but the last is full to within one prefix.
    assert!(msgs[..msgs.len() - 1]
        .iter()
        .all(|m| m.len() > MAX_MESSAGE_LEN - 4));
    assert_eq!(msgs.len(), total.div_ceil(MAX_MESSAGE_LEN));
    let mut back = Vec::new();
    for m in &msgs {
        let Message::Update(u) = decode_whole(m, &c).unwrap() else {
            panic!()
        };
        assert_eq!(u.attrs.as_deref(), Some(&attrs));
        assert!(!u.treat_as_withdraw);
        back.extend(u.announced.into_iter().map(|n| n.prefix));
    }
    assert_eq!(back, prefixes);

    let withdrawals = encode_withdrawals(&prefixes, &c).unwrap();
    assert!(withdrawals.len() <= 10);
    let mut back = Vec::new();
    for m in &withdrawals {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        let Message::Update(u) = decode_whole(m, &c).unwrap() else {
            panic!()
        };
        assert!(u.announced.is_empty() && u.attrs.is_none());
        back.extend(u.withdrawn.into_iter().map(|n| n.prefix));
    }
    assert_eq!(back, prefixes);
}

#[test]
fn packing_ipv6_prefixes() {
    let c = ibgp4();
    let attrs = v6_attrs();
    let prefixes: Vec<IpNet> = (0..5_000u128)
        .map(|i| {
            let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 80));
            IpNet::V6(ipnet::Ipv6Net::new(a, 48).unwrap())
        })
        .collect();
    for msgs in [
        encode_updates(&attrs, &prefixes, &c).unwrap(),
        encode_withdrawals(&prefixes, &c).unwrap(),
    ] {
        let mut back = Vec::new();
        for m in &msgs {
            assert!(m.len() <= MAX_MESSAGE_LEN);
            let Message::Update(u) = decode_whole(m, &c).unwrap() else {
                panic!()
            };
            if let Some(a) = &u.attrs {
                assert_eq!(**a, attrs);
            }
            back.extend(u.announced.iter().chain(&u.withdrawn).map(|n| n.prefix));
        }
        assert_eq!(back, prefixes);
        assert!(msgs.len() <= 5_000 * 7 / 4000 + 2);
    }
}

#[test]
fn packing_errors() {
    let c = ibgp4();
    let v4 = PathAttrs::new(
        Origin::Igp,
        vec![],
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    );
    assert!(encode_updates(&v4, &[], &c).unwrap().is_empty());
    assert!(matches!(
        encode_updates(&v4, &[net("10.0.0.0/8"), net("2001:db8::/32")], &c),
        Err(EncodeError::MixedFamilies)
    ));
    assert!(matches!(
        encode_updates(&v4, &[net("2001:db8::/32")], &c),
        Err(EncodeError::NextHopFamily(_))
    ));
    let mut none = v4.clone();
    none.next_hop = None;
    assert!(matches!(
        encode_updates(&none, &[net("10.0.0.0/8")], &c),
        Err(EncodeError::MissingNextHop)
    ));
    let mut huge = v4.clone();
    huge.communities = (0..1100).collect();
    assert!(matches!(
        encode_updates(&huge, &[net("10.0.0.0/8")], &c),
        Err(EncodeError::AttributesTooLong(_))
    ));
    huge.communities = (0..20_000).collect();
    assert!(encode_updates(&huge, &[net("10.0.0.0/8")], &c).is_err());
    let mut raw = v4;
    raw.unknown.push(RawAttribute {
        flags: OT,
        code: 8,
        value: vec![0; 4],
    });
    assert!(matches!(
        encode_updates(&raw, &[net("10.0.0.0/8")], &c),
        Err(EncodeError::ReservedAttributeCode(8))
    ));
}

#[test]
fn host_bits_are_cleared() {
    let attrs = PathAttrs::new(
        Origin::Igp,
        vec![],
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    );
    let msgs = encode_updates(&attrs, &[net("10.1.2.3/15")], &ibgp4()).unwrap();
    assert_eq!(&msgs[0][msgs[0].len() - 3..], &[15, 10, 0]);
    // Trailing bits set on the wire are ignored on receipt.
    let u = with_attrs(&mandatory(), &ibgp4()).unwrap();
    assert_eq!(u.announced[1].prefix, net("192.168.1.0/24"));
    let b = body(&[], &mandatory(), &[15, 10, 1]);
    let u = dec_update(&b, &ibgp4()).unwrap();
    assert_eq!(u.announced[0].prefix, net("10.0.0.0/15"));
}

// ---------------------------------------------------------------- End-of-RIB

#[test]
fn end_of_rib_markers() {
    for (family, len) in [(IPV4_UNICAST, 23), (IPV6_UNICAST, 29)] {
        let bytes = end_of_rib(family);
        assert_eq!(bytes.len(), len);
        let Message::Update(u) = decode_whole(&bytes, &ebgp4()).unwrap() else {
            panic!()
        };
        assert_eq!(u.end_of_rib, Some(family));
        assert!(u.withdrawn.is_empty() && u.announced.is_empty() && u.attrs.is_none());
        assert_eq!(
            encode(&Message::Update(u), &ebgp4()).unwrap(),
            bytes,
            "encode of the decoded marker"
        );
    }
    // An MP_UNREACH with prefixes is no marker; neither is one beside other
    // attributes.
    let mp = attr(ON, 15, &[0, 2, 1, 32, 0x20, 0x01, 0x0d, 0xb8]);
    let u = dec_update(&body(&[], &mp, &[]), &ebgp4()).unwrap();
    assert_eq!(u.end_of_rib, None);
    assert_eq!(u.withdrawn, vec![nlri("2001:db8::/32")]);
    let mp = [attr(ON, 15, &[0, 2, 1]), origin_igp()].concat();
    assert_eq!(
        dec_update(&body(&[], &mp, &[]), &ebgp4())
            .unwrap()
            .end_of_rib,
        None
    );
    let u = Update {
        end_of_rib: Some(IPV4_UNICAST),
        withdrawn: vec![nlri("10.0.0.0/8")],
        ..Update::default()
    };
    assert!(encode(&Message::Update(u), &ebgp4()).is_err());
}

// ---------------------------------------------------------------- RFC 7606: per attribute

#[test]
fn rfc7606_origin() {
    let rest = [as_path4(&[65001]), next_hop([192, 0, 2, 1])].concat();
    for bad in [attr(WK, 1, &[0, 0]), attr(WK, 1, &[]), attr(WK, 1, &[3])] {
        let u = with_attrs(&[bad, rest.clone()].concat(), &ebgp4()).unwrap();
        assert_taw(&u, 1);
    }
    for (v, o) in [(0, Origin::Igp), (1, Origin::Egp), (2, Origin::Incomplete)] {
        let u = with_attrs(&[attr(WK, 1, &[v]), rest.clone()].concat(), &ebgp4()).unwrap();
        assert_eq!(u.attrs.unwrap().origin, o);
    }
}

#[test]
fn rfc7606_as_path() {
    let c = ebgp4();
    let rest = [origin_igp(), next_hop([192, 0, 2, 1])].concat();
    for bad in [
        attr(WK, 2, &[2, 2, 0, 0, 0xfd, 0xe9]),    // overrun
        attr(WK, 2, &[2, 1, 0, 0, 0xfd, 0xe9, 2]), // underrun
        attr(WK, 2, &[2, 0]),                      // zero-length segment
        attr(WK, 2, &[7, 1, 0, 0, 0xfd, 0xe9]),    // segment type
        attr(WK, 2, &[2, 1, 0, 0, 0, 0]),          // AS 0
        attr(WK, 2, &[3, 1, 0, 0, 0xfd, 0xe9, 2, 1, 0, 0, 0xfd, 0xe9]), // confed from eBGP
    ] {
        let u = with_attrs(&[rest.clone(), bad].concat(), &c).unwrap();
        assert_taw(&u, 2);
    }
    // Confederation segments are fine from an internal peer; an empty
    // AS_PATH is fine.
    let confed = attr(WK, 2, &[3, 1, 0, 0, 0xfd, 0xe9, 2, 1, 0, 0, 0xfd, 0xe9]);
    let u = with_attrs(&[rest.clone(), confed].concat(), &ibgp4()).unwrap();
    assert_eq!(
        u.attrs.unwrap().as_path,
        vec![
            AsSegment::ConfedSequence(vec![65001]),
            AsSegment::Sequence(vec![65001])
        ]
    );
    let u = with_attrs(&[rest, attr(WK, 2, &[])].concat(), &ibgp4()).unwrap();
    assert_eq!(u.attrs.unwrap().as_path, vec![]);
    // A 2-octet path read on a 4-octet session is malformed.
    let two = [origin_igp(), as_path2(&[65001]), next_hop([192, 0, 2, 1])].concat();
    assert_taw(&with_attrs(&two, &c).unwrap(), 2);
}

#[test]
fn rfc7606_next_hop() {
    let c = ebgp4();
    let base = [origin_igp(), as_path4(&[65001])].concat();
    let u = with_attrs(
        &[base.clone(), attr(WK, 3, &[192, 0, 2, 1, 0])].concat(),
        &c,
    )
    .unwrap();
    assert_taw(&u, 3);
    let u = with_attrs(&[base.clone(), attr(WK, 3, &[192, 0, 2])].concat(), &c).unwrap();
    assert_taw(&u, 3);
    for bad in [
        [0, 0, 0, 0],
        [0, 1, 2, 3],
        [127, 0, 0, 1],
        [224, 0, 0, 5],
        [239, 1, 1, 1],
        [240, 0, 0, 1],
        [255, 255, 255, 255],
    ] {
        let u = with_attrs(&[base.clone(), next_hop(bad)].concat(), &c).unwrap();
        assert_taw(&u, 3);
    }
    let u = with_attrs(&[base, next_hop([198, 51, 100, 1])].concat(), &c).unwrap();
    assert_eq!(
        u.attrs.unwrap().next_hop,
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)))
    );
}

#[test]
fn rfc7606_med() {
    let u = with_attrs(&[mandatory(), attr(ON, 4, &[0, 0, 1])].concat(), &ebgp4()).unwrap();
    assert_taw(&u, 4);
    let u = with_attrs(
        &[mandatory(), attr(ON, 4, &[0, 0, 1, 0])].concat(),
        &ebgp4(),
    )
    .unwrap();
    assert_eq!(u.attrs.unwrap().med, Some(256));
}

#[test]
fn rfc7606_local_pref() {
    // From an external peer: discarded whatever its shape.
    for v in [vec![0, 0, 0, 100], vec![0, 0, 1]] {
        let u = with_attrs(&[mandatory(), attr(WK, 5, &v)].concat(), &ebgp4()).unwrap();
        assert_eq!(assert_discard(&u, 5).local_pref, None);
    }
    // From an internal peer: a bad length is treat-as-withdraw.
    let u = with_attrs(&[mandatory(), attr(WK, 5, &[0, 0, 1])].concat(), &ibgp4()).unwrap();
    assert_taw(&u, 5);
    let u = with_attrs(
        &[mandatory(), attr(WK, 5, &[0, 0, 0, 100])].concat(),
        &ibgp4(),
    )
    .unwrap();
    assert_eq!(u.attrs.unwrap().local_pref, Some(100));
}

#[test]
fn rfc7606_atomic_aggregate() {
    let u = with_attrs(&[mandatory(), attr(WK, 6, &[1])].concat(), &ebgp4()).unwrap();
    assert!(!assert_discard(&u, 6).atomic_aggregate);
    let u = with_attrs(&[mandatory(), attr(WK, 6, &[])].concat(), &ebgp4()).unwrap();
    assert!(u.attrs.unwrap().atomic_aggregate);
}

#[test]
fn rfc7606_aggregator() {
    let four = [0, 0, 0xfd, 0xe9, 10, 0, 0, 1];
    let two = [0xfd, 0xe9, 10, 0, 0, 1];
    // 6 octets on a 4-octet session, 8 on a 2-octet one, 7 anywhere, AS 0.
    let two_caps = caps(false, true, &[]);
    let base2 = [origin_igp(), as_path2(&[65001]), next_hop([192, 0, 2, 1])].concat();
    for (attrs, c) in [
        ([mandatory(), attr(OT, 7, &two)].concat(), ebgp4()),
        (
            [base2.clone(), attr(OT, 7, &four)].concat(),
            two_caps.clone(),
        ),
        ([mandatory(), attr(OT, 7, &four[..7])].concat(), ebgp4()),
        (
            [mandatory(), attr(OT, 7, &[0, 0, 0, 0, 10, 0, 0, 1])].concat(),
            ebgp4(),
        ),
    ] {
        let u = with_attrs(&attrs, &c).unwrap();
        assert_eq!(assert_discard(&u, 7).aggregator, None);
    }
    let expected = Some((65001, Ipv4Addr::new(10, 0, 0, 1)));
    let u = with_attrs(&[mandatory(), attr(OT, 7, &four)].concat(), &ebgp4()).unwrap();
    assert_eq!(u.attrs.unwrap().aggregator, expected);
    let u = with_attrs(&[base2, attr(OT, 7, &two)].concat(), &two_caps).unwrap();
    assert_eq!(u.attrs.unwrap().aggregator, expected);
}

#[test]
fn rfc7606_communities_and_route_reflection() {
    for (code, flags, bad) in [
        (8u8, OT, vec![0, 0, 0, 1, 0, 0]),
        (8, OT, vec![]),
        (9, ON, vec![10, 0, 0]),
        (9, ON, vec![10, 0, 0, 1, 0]),
        (10, ON, vec![10, 0, 0, 1, 0, 0]),
        (10, ON, vec![]),
        (16, OT, vec![0; 12]),
        (16, OT, vec![]),
        (32, OT, vec![0; 8]),
        (32, OT, vec![0; 13]),
        (32, OT, vec![]),
    ] {
        let u = with_attrs(&[mandatory(), attr(flags, code, &bad)].concat(), &ibgp4()).unwrap();
        assert_taw(&u, code);
    }
    let good = [
        mandatory(),
        attr(OT, 8, &[0xfd, 0xe9, 0, 1]),
        attr(ON, 9, &[10, 0, 0, 9]),
        attr(ON, 10, &[10, 0, 0, 1, 10, 0, 0, 2]),
        attr(OT, 16, &[0, 2, 0xfd, 0xe9, 0, 0, 0, 100]),
        attr(OT, 32, &[0, 0, 0xfd, 0xe9, 0, 0, 0, 1, 0, 0, 0, 2]),
    ]
    .concat();
    let a = with_attrs(&good, &ibgp4()).unwrap().attrs.unwrap();
    assert_eq!(a.communities, vec![0xfde9_0001]);
    assert_eq!(a.originator_id, Some(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(
        a.cluster_list,
        vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
    );
    assert_eq!(a.extended_communities, vec![0x0002_fde9_0000_0064]);
    assert_eq!(a.large_communities, vec![(65001, 1, 2)]);
}

#[test]
fn rfc7606_mp_reach_is_session_reset() {
    let base = [origin_igp(), as_path4(&[65001])].concat();
    let reset = |mp: Vec<u8>| {
        let e = dec_update(
            &body(&[], &[mp.clone(), base.clone()].concat(), &[]),
            &ibgp4(),
        )
        .unwrap_err();
        (
            e.notification.code,
            e.notification.subcode,
            e.notification.data == mp,
        )
    };
    // Too short for AFI, SAFI and next hop length.
    assert_eq!(reset(attr(ON, 14, &[0, 2, 1])), (3, 5, true));
    // IPv6 next hop of 20 octets.
    let nh20 = [
        [0, 2, 1, 20].as_slice(),
        &[0x20; 20],
        &[0, 32, 0x20, 1, 0xd, 0xb8],
    ]
    .concat();
    assert_eq!(reset(attr(ON, 14, &nh20)), (3, 9, true));
    // Next hop length past the end of the attribute.
    assert_eq!(reset(attr(ON, 14, &[0, 2, 1, 16, 0x20, 1])), (3, 9, true));
    // No reserved octet.
    let no_res = [[0, 2, 1, 16].as_slice(), &[0x20; 16]].concat();
    assert_eq!(reset(attr(ON, 14, &no_res)), (3, 5, true));
    // NLRI: prefix length 129, and a truncated prefix.
    let long = [[0, 2, 1, 16].as_slice(), &[0x20; 16], &[0, 129]].concat();
    assert_eq!(reset(attr(ON, 14, &long)), (3, 10, false));
    let cut = [[0, 2, 1, 16].as_slice(), &[0x20; 16], &[0, 64, 0x20, 1]].concat();
    assert_eq!(reset(attr(ON, 14, &cut)), (3, 10, false));
    // Flags: transitive MP_REACH_NLRI.
    let good = [
        [0, 2, 1, 16].as_slice(),
        &[0x20; 16],
        &[0, 32, 0x20, 1, 0xd, 0xb8],
    ]
    .concat();
    assert_eq!(reset(attr(OT, 14, &good)), (3, 4, true));
    // The well-formed one decodes.
    let u = dec_update(
        &body(&[], &[attr(ON, 14, &good), base].concat(), &[]),
        &ibgp4(),
    )
    .unwrap();
    assert_eq!(u.announced, vec![nlri("2001:db8::/32")]);
    assert_eq!(
        u.attrs.unwrap().next_hop,
        Some(IpAddr::V6(
            "2020:2020:2020:2020:2020:2020:2020:2020".parse().unwrap()
        ))
    );
}

#[test]
fn rfc7606_mp_unreach_is_session_reset() {
    let reset = |mp: Vec<u8>| {
        let e = dec_update(&body(&[], &mp, &[]), &ibgp4()).unwrap_err();
        (e.notification.code, e.notification.subcode)
    };
    assert_eq!(reset(attr(ON, 15, &[0, 2])), (3, 5));
    assert_eq!(reset(attr(ON, 15, &[0, 2, 1, 200])), (3, 10));
    assert_eq!(reset(attr(ON, 15, &[0, 1, 1, 24, 10, 0])), (3, 10));
    assert_eq!(reset(attr(WK, 15, &[0, 2, 1])), (3, 4));
}

#[test]
fn unsupported_families_in_mp_attributes_are_ignored() {
    // L2VPN/VPLS, BGP-LS and an unassigned AFI: bgp-rs reaches
    // unimplemented!() or refuses these; here they are skipped.
    let base = [origin_igp(), as_path4(&[65001])].concat();
    for (afi, safi) in [(25u16, 65u8), (16388, 71), (999, 1), (1, 128), (2, 4)] {
        let mut v = afi.to_be_bytes().to_vec();
        v.extend_from_slice(&[safi, 4, 10, 0, 0, 1, 0, 0, 17, 1, 2, 3, 4, 5]);
        let mp = attr(ON, 14, &v);
        let u = dec_update(&body(&[], &[mp, base.clone()].concat(), &[]), &ibgp4()).unwrap();
        assert!(u.announced.is_empty());
        assert_eq!(u.issues[0].code, 14);
        assert_eq!(u.issues[0].action, ErrorAction::AttributeDiscard);

        let mut v = afi.to_be_bytes().to_vec();
        v.extend_from_slice(&[safi, 0, 17, 1, 2, 3]);
        let u = dec_update(&body(&[], &attr(ON, 15, &v), &[]), &ibgp4()).unwrap();
        assert!(u.withdrawn.is_empty());
        // Its End-of-RIB is still reported.
        let eor = dec_update(&body(&[], &attr(ON, 15, &v[..3]), &[]), &ibgp4()).unwrap();
        assert_eq!(eor.end_of_rib, Some((afi, safi)));
    }
}

/// bgp-rs on its own reaches `unimplemented!()` for a BGP-LS MP_REACH_NLRI:
/// the reason such input never reaches it.
#[test]
#[should_panic]
fn bgprs_alone_panics_on_bgp_ls() {
    let mp = attr(ON, 14, &[0x40, 0x04, 71, 4, 10, 0, 0, 1, 0, 0, 1]);
    let _ = bgp_rs::PathAttribute::parse(&mut &mp[..], &bgp_rs::Capabilities::default());
}

// ---------------------------------------------------------------- RFC 7606: structure

#[test]
fn rfc7606_attribute_flags() {
    let rest = [as_path4(&[65001]), next_hop([192, 0, 2, 1])].concat();
    // ORIGIN marked optional; MED marked well-known; COMMUNITIES
    // non-transitive; LOCAL_PREF (iBGP) optional.
    let u = with_attrs(&[attr(OT, 1, &[0]), rest.clone()].concat(), &ibgp4()).unwrap();
    assert_taw(&u, 1);
    for (flags, code, v) in [
        (WK, 4u8, vec![0, 0, 0, 1]),
        (ON, 8, vec![0, 0, 0, 1]),
        (OT, 5, vec![0, 0, 0, 1]),
    ] {
        let u = with_attrs(
            &[origin_igp(), rest.clone(), attr(flags, code, &v)].concat(),
            &ibgp4(),
        )
        .unwrap();
        assert_taw(&u, code);
    }
    let a = [origin_igp(), as_path4(&[1]), attr(OT, 3, &[192, 0, 2, 1])].concat();
    assert_taw(&with_attrs(&a, &ibgp4()).unwrap(), 3);
    // The Partial and Extended Length bits do not matter.
    let a = [
        attr(WK | FLAG_PARTIAL, 1, &[0]),
        attr(WK | FLAG_EXTENDED, 2, &[2, 1, 0, 0, 0xfd, 0xe9]),
        attr(WK | FLAG_EXTENDED, 3, &[192, 0, 2, 1]),
        attr(ON | FLAG_EXTENDED, 4, &[0, 0, 0, 7]),
    ]
    .concat();
    let u = with_attrs(&a, &ibgp4()).unwrap();
    assert!(u.issues.is_empty());
    assert_eq!(u.attrs.unwrap().med, Some(7));
}

#[test]
fn rfc7606_duplicates() {
    let a = [
        mandatory(),
        attr(ON, 4, &[0, 0, 0, 1]),
        attr(ON, 4, &[0, 0, 0, 2]),
        attr(ON, 4, &[0, 0]),
    ]
    .concat();
    let u = with_attrs(&a, &ebgp4()).unwrap();
    let attrs = assert_discard(&u, 4);
    assert_eq!(attrs.med, Some(1));
    assert_eq!(u.issues.len(), 2);

    let mp = attr(
        ON,
        14,
        &[[0, 2, 1, 16].as_slice(), &[0x20; 16], &[0]].concat(),
    );
    let twice = [mp.clone(), origin_igp(), as_path4(&[1]), mp].concat();
    assert_eq!(
        err_code(dec_update(&body(&[], &twice, &[]), &ebgp4())),
        (3, 1)
    );
    let un = attr(ON, 15, &[0, 2, 1]);
    let twice = [un.clone(), un].concat();
    assert_eq!(
        err_code(dec_update(&body(&[], &twice, &[]), &ebgp4())),
        (3, 1)
    );
}

#[test]
fn rfc7606_missing_well_known() {
    let origin = origin_igp();
    let path = as_path4(&[65001]);
    let nh = next_hop([192, 0, 2, 1]);
    for (attrs, missing) in [
        ([path.clone(), nh.clone()].concat(), 1u8),
        ([origin.clone(), nh.clone()].concat(), 2),
        ([origin.clone(), path.clone()].concat(), 3),
    ] {
        let u = with_attrs(&attrs, &ebgp4()).unwrap();
        assert_taw(&u, missing);
        assert!(u.issues.iter().any(|i| i.reason.contains("missing")));
    }
    // No NEXT_HOP is needed when only MP_REACH_NLRI announces.
    let mp = attr(
        ON,
        14,
        &[[0, 2, 1, 16].as_slice(), &[0x20; 16], &[0, 16, 0x20, 1]].concat(),
    );
    let u = dec_update(&body(&[], &[mp, origin, path].concat(), &[]), &ebgp4()).unwrap();
    assert!(!u.treat_as_withdraw && u.attrs.is_some());
    // Nothing is mandatory without announcements.
    let u = dec_update(&body(&[8, 10], &[], &[]), &ebgp4()).unwrap();
    assert!(!u.treat_as_withdraw && u.issues.is_empty());
}

#[test]
fn rfc7606_unrecognized_attributes() {
    // Unknown well-known: treat-as-withdraw.
    let u = with_attrs(&[mandatory(), attr(WK, 99, &[1])].concat(), &ebgp4()).unwrap();
    assert_taw(&u, 99);
    // Unknown optional transitive: kept, Partial set. Unknown optional
    // non-transitive: dropped quietly.
    let u = with_attrs(
        &[mandatory(), attr(OT, 99, &[1, 2]), attr(ON, 98, &[3])].concat(),
        &ebgp4(),
    )
    .unwrap();
    assert!(u.issues.is_empty());
    assert_eq!(
        u.attrs.unwrap().unknown,
        vec![RawAttribute {
            flags: OT | FLAG_PARTIAL,
            code: 99,
            value: vec![1, 2]
        }]
    );
}

#[test]
fn rfc7606_attribute_list_framing() {
    // The last attribute claims more than the Path Attributes field holds,
    // NLRI present: treat-as-withdraw, NLRI located by the total length.
    let overrun = [mandatory(), vec![ON, 4, 9, 0, 0]].concat();
    assert_taw(&with_attrs(&overrun, &ebgp4()).unwrap(), 4);
    // Fewer than three octets left for an attribute.
    let stub = [mandatory(), vec![ON]].concat();
    assert_taw(&with_attrs(&stub, &ebgp4()).unwrap(), 0);
    // Extended length header cut short.
    let stub = [mandatory(), vec![ON | FLAG_EXTENDED, 4, 0]].concat();
    assert_taw(&with_attrs(&stub, &ebgp4()).unwrap(), 4);
    // No NLRI can be located at all: session reset.
    let b = body(&[8, 10], &[mandatory(), vec![ON, 4, 9, 0, 0]].concat(), &[]);
    assert_eq!(err_code(dec_update(&b, &ebgp4())), (3, 1));
    // An MP_REACH_NLRI that overruns: session reset.
    let b = body(
        &[],
        &[mandatory(), vec![ON, 14, 40, 0, 2, 1]].concat(),
        &two_prefixes(),
    );
    assert_eq!(err_code(dec_update(&b, &ebgp4())), (3, 1));
    // Withdrawn Routes Length or Total Path Attribute Length past the end.
    assert_eq!(err_code(dec_update(&[0, 5, 8, 10], &ebgp4())), (3, 1));
    assert_eq!(err_code(dec_update(&[0, 0, 0, 9, 1], &ebgp4())), (3, 1));
    assert_eq!(err_code(dec_update(&[0, 2, 8, 10], &ebgp4())), (3, 1));
}

#[test]
fn rfc7606_nlri_errors_reset() {
    for nlri_field in [vec![33, 10, 0, 0, 0, 0], vec![24, 10, 0], vec![8]] {
        let b = body(&[], &mandatory(), &nlri_field);
        let e = dec_update(&b, &ebgp4()).unwrap_err();
        assert_eq!((e.notification.code, e.notification.subcode), (3, 10));
        let b = body(&nlri_field, &[], &[]);
        assert_eq!(err_code(dec_update(&b, &ebgp4())), (3, 10));
    }
}

#[test]
fn rfc7606_strongest_action_wins() {
    // A discard and a treat-as-withdraw: treat-as-withdraw, both listed.
    let a = [mandatory(), attr(WK, 6, &[1]), attr(ON, 4, &[1])].concat();
    let u = with_attrs(&a, &ebgp4()).unwrap();
    assert_taw(&u, 4);
    assert!(u
        .issues
        .iter()
        .any(|i| i.code == 6 && i.action == ErrorAction::AttributeDiscard));
    // And a session reset beats both.
    let mp = attr(ON, 15, &[0, 2]);
    let b = body(&[], &[a, mp].concat(), &two_prefixes());
    assert_eq!(err_code(dec_update(&b, &ebgp4())), (3, 5));
}

#[test]
fn both_nlri_field_and_mp_reach_with_different_next_hops() {
    let mp = attr(
        ON,
        14,
        &[[0, 2, 1, 16].as_slice(), &[0x20; 16], &[0, 16, 0x20, 1]].concat(),
    );
    let u = with_attrs(&[mp, mandatory()].concat(), &ebgp4()).unwrap();
    assert!(u.treat_as_withdraw);
    assert_eq!(u.announced.len(), 3);
    // Same IPv4 next hop in both: fine.
    let mp = attr(ON, 14, &[0, 1, 1, 4, 192, 0, 2, 1, 0, 16, 10, 20]);
    let u = with_attrs(&[mp, mandatory()].concat(), &ebgp4()).unwrap();
    assert!(!u.treat_as_withdraw);
    assert_eq!(u.announced.len(), 3);
}

// ---------------------------------------------------------------- randomized

/// xorshift64*: deterministic, seeded per test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn caps(&mut self) -> SessionCaps {
        let bits = self.next();
        let mut add_path_rx = Vec::new();
        if bits & 2 != 0 {
            add_path_rx.push(IPV4_UNICAST);
        }
        if bits & 4 != 0 {
            add_path_rx.push(IPV6_UNICAST);
        }
        caps(bits & 1 != 0, bits & 8 != 0, &add_path_rx)
    }
}

/// Clears what a re-encode cannot carry (issues).
fn comparable(m: &Message) -> Message {
    match m {
        Message::Update(u) => Message::Update(Update {
            issues: Vec::new(),
            ..u.clone()
        }),
        other => other.clone(),
    }
}

fn has_confed(m: &Message) -> bool {
    let Message::Update(u) = m else { return false };
    u.attrs
        .as_ref()
        .is_some_and(|a| a.as_path.iter().any(super::aspath::is_confed))
}

/// Decoding never panics; whatever decodes and re-encodes decodes again to
/// the same message (the fuzz target checks the same).
fn check(msg_type: u8, body: &[u8], c: &SessionCaps) {
    let Ok(m) = decode(msg_type, body, c) else {
        return;
    };
    let Ok(bytes) = encode_add_path(&m, c, &c.add_path_rx) else {
        return;
    };
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    let again = decode_whole(&bytes, c)
        .unwrap_or_else(|e| panic!("re-encoded message fails to decode: {e}\n{m:?}\n{bytes:?}"));
    // An UPDATE with attributes but no prefixes re-encodes as an empty one
    // (attributes without NLRI are not written).
    let empty = matches!(&m, Message::Update(u)
        if u.announced.is_empty() && u.withdrawn.is_empty() && u.end_of_rib.is_none());
    if !empty && (c.four_octet_as || !has_confed(&m)) {
        assert_eq!(comparable(&again), comparable(&m), "{bytes:?}");
    }
}

#[test]
fn random_bodies_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40_000 {
        let msg_type = rng.below(8) as u8;
        let len = rng.below(600);
        let b: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        check(msg_type, &b, &rng.caps());
    }
}

/// Random bodies shaped like UPDATEs: consistent length fields and random
/// attributes (mostly known codes, sane flags) so the walk gets deep.
#[test]
fn random_structured_updates_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let codes = [
        1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 99, 0,
    ];
    for _ in 0..40_000 {
        let mut attrs = Vec::new();
        for _ in 0..rng.below(6) {
            let code = codes[rng.below(codes.len())];
            let flags = match rng.below(4) {
                0 => rng.byte(),
                _ => super::update::expected_flags(code).unwrap_or(OT),
            };
            let len = match rng.below(3) {
                0 => rng.below(40),
                _ => [0, 1, 4, 6, 8, 12, 16, 21, 37][rng.below(9)],
            };
            let mut value: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if code == 14 && len >= 4 && rng.below(2) == 0 {
                value[0] = 0;
                value[1] = [1u8, 2][rng.below(2)];
                value[2] = 1;
                value[3] = [4u8, 16, 32][rng.below(3)];
            }
            if code == 15 && len >= 3 && rng.below(2) == 0 {
                value[0] = 0;
                value[1] = [1u8, 2][rng.below(2)];
                value[2] = 1;
            }
            attrs.extend(attr(flags & !FLAG_EXTENDED, code, &value));
        }
        let w: Vec<u8> = (0..rng.below(12)).map(|_| rng.byte() % 40).collect();
        let n: Vec<u8> = (0..rng.below(12)).map(|_| rng.byte() % 40).collect();
        check(2, &body(&w, &attrs, &n), &rng.caps());
    }
}

fn valid_updates() -> Vec<(Vec<u8>, SessionCaps)> {
    let mut out = Vec::new();
    let u4 = Update {
        withdrawn: vec![nlri("172.16.0.0/12")],
        announced: vec![nlri("10.0.0.0/8"), nlri("192.168.1.0/24")],
        attrs: Some(Arc::new(full_attrs())),
        ..Update::default()
    };
    for c in [ibgp4(), caps(false, false, &[])] {
        out.push((encode(&Message::Update(u4.clone()), &c).unwrap(), c));
    }
    let u6 = Update {
        withdrawn: vec![nlri("2001:db8:9::/48")],
        announced: vec![nlri("2001:db8:1::/48"), nlri("2001:db8:2::/47")],
        attrs: Some(Arc::new(v6_attrs())),
        ..Update::default()
    };
    out.push((
        encode(&Message::Update(u6.clone()), &ebgp4()).unwrap(),
        ebgp4(),
    ));
    let ap = caps(true, false, &[IPV4_UNICAST, IPV6_UNICAST]);
    for u in [u4, u6] {
        let with_ids = Update {
            announced: u
                .announced
                .iter()
                .enumerate()
                .map(|(i, n)| Nlri {
                    path_id: Some(i as u32 + 1),
                    ..*n
                })
                .collect(),
            ..u
        };
        out.push((
            encode_add_path(&Message::Update(with_ids), &ap, &ap.add_path_rx).unwrap(),
            ap.clone(),
        ));
    }
    out.push((end_of_rib(IPV6_UNICAST), ebgp4()));
    out
}

#[test]
fn mutated_valid_updates_never_panic() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let seeds = valid_updates();
    for (bytes, c) in &seeds {
        // The seeds themselves round trip.
        check(2, &bytes[HEADER_LEN..], c);
    }
    for _ in 0..60_000 {
        let (bytes, c) = &seeds[rng.below(seeds.len())];
        let mut b = bytes[HEADER_LEN..].to_vec();
        for _ in 0..1 + rng.below(4) {
            if b.is_empty() {
                break;
            }
            let i = rng.below(b.len());
            match rng.below(6) {
                0 => b[i] = rng.byte(),
                1 => b[i] ^= 1 << rng.below(8),
                2 => {
                    b.remove(i);
                }
                3 => b.insert(i, rng.byte()),
                4 => b.truncate(i),
                _ => b[i] = b[i].wrapping_add(1),
            }
        }
        let c = if rng.below(4) == 0 {
            rng.caps()
        } else {
            c.clone()
        };
        check(2, &b, &c);
    }
}

#[test]
fn mutated_opens_never_panic() {
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let open = Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::MultiProtocol(IPV4_UNICAST),
            Capability::MultiProtocol(IPV6_UNICAST),
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![(IPV4_UNICAST, true)],
            },
            Capability::AddPath(vec![(IPV4_UNICAST, 1)]),
        ],
    };
    let bytes = encode(&Message::Open(open), &SessionCaps::default()).unwrap();
    for _ in 0..30_000 {
        let mut b = bytes[HEADER_LEN..].to_vec();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(b.len());
            match rng.below(4) {
                0 => b[i] = rng.byte(),
                1 => {
                    b.remove(i);
                }
                2 => b.insert(i, rng.byte()),
                _ => b[i] ^= 1 << rng.below(8),
            }
            if b.is_empty() {
                break;
            }
        }
        check(1, &b, &SessionCaps::default());
    }
}
