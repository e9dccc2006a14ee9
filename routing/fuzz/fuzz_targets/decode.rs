//! Fuzzes the BGP decode boundary.
//!
//! The first input byte selects the message type and the session
//! capabilities; the rest is the message body:
//!
//! * bits 0-2: message type (0, 6 and 7 exercise the unknown-type path),
//! * bit 3: 4-octet AS numbers negotiated,
//! * bit 4 / bit 5: ADD-PATH receive for IPv4 / IPv6 unicast,
//! * bit 6: external session.
//!
//! Decoding must not panic. A message that decodes is encoded again (with path
//! identifiers for the ADD-PATH families), and when that succeeds the bytes
//! must decode to the same message, apart from the issues list and the cases
//! a re-encode cannot reproduce (attributes without prefixes; confederation
//! segments rebuilt from AS4_PATH on 2-octet sessions).

#![no_main]

use libfuzzer_sys::fuzz_target;
use routing::bgp::codec::{self, HEADER_LEN, MAX_MESSAGE_LEN};
use routing::bgp::msg::{AsSegment, Message, SessionCaps, Update, IPV4_UNICAST, IPV6_UNICAST};

fn caps(selector: u8) -> SessionCaps {
    let mut add_path_rx = Vec::new();
    if selector & 0x10 != 0 {
        add_path_rx.push(IPV4_UNICAST);
    }
    if selector & 0x20 != 0 {
        add_path_rx.push(IPV6_UNICAST);
    }
    SessionCaps {
        four_octet_as: selector & 0x08 != 0,
        add_path_rx,
        ebgp: selector & 0x40 != 0,
        ..SessionCaps::default()
    }
}

fn comparable(m: &Message) -> Message {
    match m {
        Message::Update(u) => Message::Update(Update {
            issues: Vec::new(),
            ..u.clone()
        }),
        other => other.clone(),
    }
}

fn reproducible(m: &Message, caps: &SessionCaps) -> bool {
    let Message::Update(u) = m else { return true };
    let only_attributes =
        u.announced.is_empty() && u.withdrawn.is_empty() && u.end_of_rib.is_none();
    let confed = u.attrs.as_ref().is_some_and(|a| {
        a.as_path
            .iter()
            .any(|s| matches!(s, AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_)))
    });
    !only_attributes && (caps.four_octet_as || !confed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let msg_type = selector & 0x07;
    let caps = caps(selector);
    let Ok(msg) = codec::decode(msg_type, body, &caps) else {
        return;
    };
    let Ok(bytes) = codec::encode_add_path(&msg, &caps, &caps.add_path_rx) else {
        return;
    };
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    let header: [u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .expect("encoded message has a header");
    let (t, len) = codec::parse_header(&header).expect("encoded header is valid");
    assert_eq!(len, bytes.len());
    let again = codec::decode(t, &bytes[HEADER_LEN..], &caps)
        .unwrap_or_else(|e| panic!("re-encoded {msg:?} does not decode: {e}"));
    if reproducible(&msg, &caps) {
        assert_eq!(comparable(&again), comparable(&msg));
    }
});
