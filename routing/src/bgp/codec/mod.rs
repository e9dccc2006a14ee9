//! BGP wire format: the one module that reads and writes BGP bytes.
//!
//! bgp-rs 0.6 does part of the work behind this boundary, and the boundary
//! keeps peer input away from its defects:
//!
//! * Headers are read with `bgp_rs::Header`; OPEN, NOTIFICATION, KEEPALIVE
//!   and ROUTE-REFRESH are written with `bgp_rs::Message::encode`; the
//!   NOTIFICATION body is read with `bgp_rs::Notification::parse`.
//! * UPDATE attributes are framed and checked here first (flags, lengths,
//!   duplicates, RFC 7606 actions), and only then are the values of the
//!   attributes bgp-rs reads correctly handed to `bgp_rs::PathAttribute::parse`
//!   (bgp-rs alone skips attributes it fails on, and has arithmetic that
//!   overflows on short values of other codes).
//! * AS_PATH/AS4_PATH, MP_REACH_NLRI/MP_UNREACH_NLRI, NLRI and OPEN
//!   capabilities are read here: bgp-rs guesses the AS number width and the
//!   ADD-PATH encoding from the bytes, reaches `unimplemented!()` for some
//!   AFI/SAFI values and rejects OPENs with capabilities for families it does
//!   not know.
//! * UPDATEs are framed here; bgp-rs writes the attributes it writes correctly
//!   (ORIGIN, NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, ORIGINATOR_ID,
//!   CLUSTER_LIST, EXTENDED COMMUNITIES). The rest are written here: bgp-rs
//!   picks the AS_PATH width from the values instead of the capability,
//!   always writes a 2-octet AGGREGATOR, panics on ATOMIC_AGGREGATE, LARGE
//!   COMMUNITIES and AS4_AGGREGATOR, and its UPDATE encoder panics on
//!   withdrawals with path identifiers and cannot place IPv6 NLRI.
//!
//! ADD-PATH: path identifiers are read for a family exactly when it is in
//! [`SessionCaps::add_path_rx`]. [`SessionCaps`] says nothing about sending
//! them (this speaker only receives additional paths), so [`encode`],
//! [`encode_updates`] and [`encode_withdrawals`] never write them;
//! [`encode_add_path`] does, for the families it is given.

mod aspath;
mod encode;
mod nlri;
mod open;
mod update;

#[cfg(test)]
mod tests;

use crate::bgp::msg::{err, Family, Message, MessageError, Notification, SessionCaps};
use crate::bgp::msg::{RouteRefresh, IPV4_UNICAST};
use ipnet::IpNet;

pub use encode::{encode_updates, encode_withdrawals};
/// The name of a path attribute type code, for log lines about [`crate::bgp::msg::AttrIssue`]s.
pub use update::attr_name;

/// Length of the message header.
pub const HEADER_LEN: usize = 19;
/// Largest message (RFC 4271 section 4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;

const MSG_OPEN: u8 = 1;
const MSG_UPDATE: u8 = 2;
const MSG_NOTIFICATION: u8 = 3;
const MSG_KEEPALIVE: u8 = 4;
const MSG_ROUTE_REFRESH: u8 = 5;

/// Smallest whole message of each type (RFC 4271 section 4, RFC 2918).
fn min_len(msg_type: u8) -> Option<usize> {
    match msg_type {
        MSG_OPEN => Some(29),
        MSG_UPDATE => Some(23),
        MSG_NOTIFICATION => Some(21),
        MSG_KEEPALIVE => Some(19),
        MSG_ROUTE_REFRESH => Some(23),
        _ => None,
    }
}

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} octets exceeds the {MAX_MESSAGE_LEN}-octet maximum")]
    MessageTooLong(usize),
    #[error("path attributes of {0} octets leave no room for NLRI in one UPDATE")]
    AttributesTooLong(usize),
    #[error("announced prefixes need path attributes")]
    MissingAttributes,
    #[error("announced prefixes need a next hop")]
    MissingNextHop,
    #[error("next hop {0} is not of the announced prefixes' family")]
    NextHopFamily(std::net::IpAddr),
    #[error("IPv4 and IPv6 prefixes announced together (they need different next hops)")]
    MixedFamilies,
    #[error("{0} carries a path identifier but ADD-PATH send is not in use for its family")]
    PathIdNotNegotiated(IpNet),
    #[error("AS_SET of {0} ASes is longer than one segment (255)")]
    AsSetTooLong(usize),
    #[error("capability {code} is too long for one optional parameter")]
    CapabilityTooLong { code: u8 },
    #[error("graceful restart time {0} s exceeds 4095 s")]
    RestartTimeTooLarge(u16),
    #[error("attribute {0} is written from PathAttrs fields, not as a raw attribute")]
    ReservedAttributeCode(u8),
    #[error("an End-of-RIB UPDATE carries nothing else")]
    EndOfRibNotEmpty,
    #[error("bgp-rs: {0}")]
    BgpRs(String),
}

/// Writes a message through bgp-rs (header included; bgp-rs checks the size).
fn encode_bgprs(msg: &bgp_rs::Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    msg.encode(&mut out)
        .map_err(|e| EncodeError::BgpRs(e.to_string()))?;
    Ok(out)
}

/// A Bad Message Length error for a message of `body_len` octets after the
/// header; the data is the (2-octet) length field.
fn length_error(body_len: usize, reason: impl Into<String>) -> MessageError {
    let total = u16::try_from(body_len.saturating_add(HEADER_LEN)).unwrap_or(u16::MAX);
    MessageError::new(
        err::HEADER,
        err::BAD_MESSAGE_LENGTH,
        total.to_be_bytes().to_vec(),
        reason,
    )
}

/// Validates a 19-byte header: marker all ones, length 19..=4096 and the
/// minimum of its type (OPEN 29, UPDATE 23, NOTIFICATION 21, KEEPALIVE exactly
/// 19, ROUTE-REFRESH 23), known type 1..=5. Returns (type, total length).
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(u8, usize), MessageError> {
    let header = bgp_rs::Header::parse(&mut &h[..]).map_err(|e| {
        MessageError::new(
            err::HEADER,
            err::BAD_MESSAGE_LENGTH,
            Vec::new(),
            format!("header: {e}"),
        )
    })?;
    if header.marker != [0xff; 16] {
        return Err(MessageError::new(
            err::HEADER,
            err::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
            "marker is not all ones",
        ));
    }
    let len = usize::from(header.length);
    let bad_length = |why: String| {
        MessageError::new(
            err::HEADER,
            err::BAD_MESSAGE_LENGTH,
            header.length.to_be_bytes().to_vec(),
            why,
        )
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_length(format!(
            "message length {len} outside 19..=4096"
        )));
    }
    let Some(min) = min_len(header.record_type) else {
        return Err(MessageError::new(
            err::HEADER,
            err::BAD_MESSAGE_TYPE,
            vec![header.record_type],
            format!("unknown message type {}", header.record_type),
        ));
    };
    if len < min || (header.record_type == MSG_KEEPALIVE && len != HEADER_LEN) {
        return Err(bad_length(format!(
            "length {len} is wrong for message type {}",
            header.record_type
        )));
    }
    Ok((header.record_type, len))
}

/// Decodes one message body (the bytes after the header).
///
/// UPDATE errors follow RFC 7606: a session reset is an `Err`; treat-as-withdraw
/// sets [`crate::bgp::msg::Update::treat_as_withdraw`] (the prefixes are still
/// listed, and `attrs` is `None`), and discarded attributes are listed in
/// `issues`.
pub fn decode(msg_type: u8, body: &[u8], caps: &SessionCaps) -> Result<Message, MessageError> {
    let total = body.len().saturating_add(HEADER_LEN);
    let Some(min) = min_len(msg_type) else {
        return Err(MessageError::new(
            err::HEADER,
            err::BAD_MESSAGE_TYPE,
            vec![msg_type],
            format!("unknown message type {msg_type}"),
        ));
    };
    if total > MAX_MESSAGE_LEN || total < min {
        return Err(length_error(
            body.len(),
            format!("length {total} is wrong for message type {msg_type}"),
        ));
    }
    match msg_type {
        MSG_OPEN => open::decode(body).map(Message::Open),
        MSG_UPDATE => update::decode(body, caps).map(Message::Update),
        MSG_NOTIFICATION => decode_notification(body, total),
        MSG_KEEPALIVE if body.is_empty() => Ok(Message::Keepalive),
        MSG_KEEPALIVE => Err(length_error(body.len(), "KEEPALIVE with a body")),
        _ => decode_route_refresh(body),
    }
}

fn decode_notification(body: &[u8], total: usize) -> Result<Message, MessageError> {
    // `total` is at most 4096 here, and the body at least 2 octets.
    let header = bgp_rs::Header {
        marker: [0xff; 16],
        length: u16::try_from(total).unwrap_or(u16::MAX),
        record_type: MSG_NOTIFICATION,
    };
    let n = bgp_rs::Notification::parse(&header, &mut &body[..])
        .map_err(|e| length_error(body.len(), format!("NOTIFICATION: {e}")))?;
    Ok(Message::Notification(Notification {
        code: n.major_err_code,
        subcode: n.minor_err_code,
        data: n.data,
    }))
}

fn decode_route_refresh(body: &[u8]) -> Result<Message, MessageError> {
    // RFC 2918: AFI, reserved (ignored on receipt), SAFI.
    match *body {
        [a0, a1, _reserved, safi] => Ok(Message::RouteRefresh(RouteRefresh {
            family: (u16::from_be_bytes([a0, a1]), safi),
        })),
        _ => {
            // RFC 7313 section 5: Invalid Message Length, data = the message.
            let mut data = frame(MSG_ROUTE_REFRESH, body.len());
            data.extend_from_slice(body);
            Err(MessageError::new(
                err::ROUTE_REFRESH,
                1,
                data,
                format!("ROUTE-REFRESH body of {} octets (must be 4)", body.len()),
            ))
        }
    }
}

/// A header for a message with `body_len` octets after it (the caller checks
/// the total against [`MAX_MESSAGE_LEN`]).
fn frame(msg_type: u8, body_len: usize) -> Vec<u8> {
    let total = body_len.saturating_add(HEADER_LEN);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    out.push(msg_type);
    out
}

/// Encodes one message with its header. UPDATEs must fit in 4096 bytes; use
/// [`encode_updates`] for many prefixes. Path identifiers are never written
/// (see [`encode_add_path`]); an [`crate::bgp::msg::Nlri`] carrying one is an
/// error.
pub fn encode(msg: &Message, caps: &SessionCaps) -> Result<Vec<u8>, EncodeError> {
    encode_add_path(msg, caps, &[])
}

/// As [`encode`], writing ADD-PATH path identifiers (0 when an
/// [`crate::bgp::msg::Nlri`] has none) for the families in `send_path_ids`,
/// for a session where ADD-PATH send was negotiated for them.
pub fn encode_add_path(
    msg: &Message,
    caps: &SessionCaps,
    send_path_ids: &[Family],
) -> Result<Vec<u8>, EncodeError> {
    match msg {
        Message::Open(o) => open::encode(o),
        Message::Update(u) => encode::update(u, caps, send_path_ids),
        Message::Notification(n) => {
            let total = n.data.len().saturating_add(HEADER_LEN + 2);
            if total > MAX_MESSAGE_LEN {
                return Err(EncodeError::MessageTooLong(total));
            }
            encode_bgprs(&bgp_rs::Message::Notification(bgp_rs::Notification {
                major_err_code: n.code,
                minor_err_code: n.subcode,
                data: n.data.clone(),
            }))
        }
        Message::Keepalive => encode_bgprs(&bgp_rs::Message::KeepAlive),
        Message::RouteRefresh(r) => {
            let (afi, safi) = r.family;
            match (bgp_rs::AFI::try_from(afi), bgp_rs::SAFI::try_from(safi)) {
                (Ok(afi), Ok(safi)) => {
                    encode_bgprs(&bgp_rs::Message::RouteRefresh(bgp_rs::RouteRefresh {
                        afi,
                        safi,
                        subtype: 0,
                    }))
                }
                // bgp-rs has no value for this family: write it directly.
                _ => {
                    let mut out = frame(MSG_ROUTE_REFRESH, 4);
                    out.extend_from_slice(&afi.to_be_bytes());
                    out.push(0);
                    out.push(safi);
                    Ok(out)
                }
            }
        }
    }
}

/// The End-of-RIB marker for a family (RFC 4724 section 2): an empty UPDATE
/// for IPv4 unicast, an UPDATE with an empty MP_UNREACH_NLRI otherwise.
pub fn end_of_rib(family: Family) -> Vec<u8> {
    if family == IPV4_UNICAST {
        let mut out = frame(MSG_UPDATE, 4);
        out.extend_from_slice(&[0, 0, 0, 0]);
        return out;
    }
    let [a0, a1] = family.0.to_be_bytes();
    let body = [
        0,
        0,
        0,
        6,
        update::FLAG_OPTIONAL,
        update::code::MP_UNREACH_NLRI,
        3,
        a0,
        a1,
        family.1,
    ];
    let mut out = frame(MSG_UPDATE, body.len());
    out.extend_from_slice(&body);
    out
}
