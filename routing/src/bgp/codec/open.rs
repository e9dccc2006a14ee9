//! OPEN (RFC 4271 section 4.2) with optional parameters (RFC 5492, RFC 9072)
//! and capabilities.
//!
//! Decoding is done here rather than by bgp-rs: its OPEN parser rejects the
//! whole message when a capability names an AFI/SAFI, ADD-PATH direction or
//! ORF type it does not know. Encoding goes through `bgp_rs::Open`, with every
//! capability bgp-rs cannot represent handed to it as an opaque one.

use super::{encode_bgprs, EncodeError};
use crate::bgp::msg::{err, Capability, Family, MessageError, Open};
use bgp_rs::{AddPathDirection, OpenCapability, OpenParameter, AFI, SAFI};
use std::convert::TryFrom;
use std::net::Ipv4Addr;

/// Optional parameter type carrying capabilities (RFC 5492).
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072: this value in the Non-Ext OP Type position marks extended
/// (2-octet) parameter lengths.
const PARAM_EXTENDED: u8 = 255;

const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_GRACEFUL_RESTART: u8 = 64;
const CAP_FOUR_OCTET_AS: u8 = 65;
const CAP_ADD_PATH: u8 = 69;

/// Restart State (R) bit in the first octet of the graceful restart capability.
const GR_RESTARTING: u8 = 0x80;
/// Graceful Notification (N) bit beside it (RFC 8538).
const GR_NOTIFICATION: u8 = 0x40;
/// Forwarding State (F) bit of each family in the graceful restart capability.
const GR_FORWARDING: u8 = 0x80;

fn open_error(subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> MessageError {
    MessageError::new(err::OPEN, subcode, data, reason)
}

fn malformed(reason: impl Into<String>) -> MessageError {
    // Subcode 0: "Unspecific" (RFC 4271 section 6.2 leaves malformed optional
    // parameter framing without a subcode of its own).
    open_error(0, Vec::new(), reason)
}

/// Decodes an OPEN body (everything after the header, at least 10 octets).
pub(super) fn decode(body: &[u8]) -> Result<Open, MessageError> {
    let Some((fixed, rest)) = body.split_first_chunk::<10>() else {
        return Err(super::length_error(
            body.len(),
            "OPEN shorter than 29 octets",
        ));
    };
    let [version, as_hi, as_lo, hold_hi, hold_lo, id0, id1, id2, id3, opt_len] = *fixed;
    if version != 4 {
        return Err(open_error(
            err::UNSUPPORTED_VERSION,
            4u16.to_be_bytes().to_vec(),
            format!("BGP version {version} is not supported (only 4)"),
        ));
    }
    let my_as = u16::from_be_bytes([as_hi, as_lo]);
    if my_as == 0 {
        // RFC 7607: AS 0 in an OPEN is a Bad Peer AS.
        return Err(open_error(err::BAD_PEER_AS, Vec::new(), "peer AS 0"));
    }
    let hold_time = u16::from_be_bytes([hold_hi, hold_lo]);
    if hold_time == 1 || hold_time == 2 {
        return Err(open_error(
            err::UNACCEPTABLE_HOLD_TIME,
            Vec::new(),
            format!("hold time {hold_time} s (must be 0 or at least 3)"),
        ));
    }
    let router_id = Ipv4Addr::from([id0, id1, id2, id3]);
    if router_id.is_unspecified() {
        return Err(open_error(
            err::BAD_BGP_IDENTIFIER,
            Vec::new(),
            "BGP identifier 0.0.0.0",
        ));
    }
    let capabilities = parameters(opt_len, rest)?;
    Ok(Open {
        version,
        my_as,
        hold_time,
        router_id,
        capabilities,
    })
}

/// Walks the optional parameters (classic 1-octet lengths, or RFC 9072
/// extended 2-octet lengths).
fn parameters(opt_len: u8, rest: &[u8]) -> Result<Vec<Capability>, MessageError> {
    let (mut params, extended) = if opt_len == 255 && rest.first() == Some(&PARAM_EXTENDED) {
        let Some((&[_, hi, lo], params)) = rest.split_first_chunk::<3>() else {
            return Err(malformed("extended optional parameters length missing"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if params.len() != len {
            return Err(malformed(format!(
                "extended optional parameters length {len} but {} octets follow",
                params.len()
            )));
        }
        (params, true)
    } else {
        if rest.len() != usize::from(opt_len) {
            return Err(malformed(format!(
                "optional parameters length {opt_len} but {} octets follow",
                rest.len()
            )));
        }
        (rest, false)
    };
    let mut caps = Vec::new();
    while let Some((&kind, after)) = params.split_first() {
        let (len, after) = if extended {
            let (l, after) = after
                .split_first_chunk::<2>()
                .ok_or_else(|| malformed("optional parameter header truncated"))?;
            (usize::from(u16::from_be_bytes(*l)), after)
        } else {
            let (&l, after) = after
                .split_first()
                .ok_or_else(|| malformed("optional parameter header truncated"))?;
            (usize::from(l), after)
        };
        let (value, after) = after.split_at_checked(len).ok_or_else(|| {
            malformed(format!(
                "optional parameter {kind} of length {len} overruns the message"
            ))
        })?;
        if kind != PARAM_CAPABILITIES {
            return Err(open_error(
                err::UNSUPPORTED_OPTIONAL_PARAMETER,
                Vec::new(),
                format!("optional parameter type {kind} is not supported"),
            ));
        }
        capabilities(value, &mut caps)?;
        params = after;
    }
    Ok(caps)
}

/// Walks the capability TLVs of one parameter (RFC 5492 section 4).
fn capabilities(mut v: &[u8], out: &mut Vec<Capability>) -> Result<(), MessageError> {
    while let Some((&[code, len], rest)) = v.split_first_chunk::<2>() {
        let (value, rest) = rest.split_at_checked(usize::from(len)).ok_or_else(|| {
            malformed(format!(
                "capability {code} of length {len} overruns its parameter"
            ))
        })?;
        out.push(capability(code, value));
        v = rest;
    }
    if !v.is_empty() {
        return Err(malformed("capability header truncated"));
    }
    Ok(())
}

fn family(afi: [u8; 2], safi: u8) -> Family {
    (u16::from_be_bytes(afi), safi)
}

/// One capability. A known code whose value has the wrong shape is kept as
/// `Unknown` (and so not acted on) instead of failing the session.
fn capability(code: u8, value: &[u8]) -> Capability {
    let unknown = || Capability::Unknown {
        code,
        value: value.to_vec(),
    };
    match code {
        CAP_MULTIPROTOCOL => match *value {
            [a0, a1, _reserved, safi] => Capability::MultiProtocol(family([a0, a1], safi)),
            _ => unknown(),
        },
        CAP_ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
        CAP_FOUR_OCTET_AS => match *value {
            [a, b, c, d] => Capability::FourOctetAs(u32::from_be_bytes([a, b, c, d])),
            _ => unknown(),
        },
        CAP_GRACEFUL_RESTART => {
            let Some((&[flags, time_lo], tuples)) = value.split_first_chunk::<2>() else {
                return unknown();
            };
            if !tuples.len().is_multiple_of(4) {
                return unknown();
            }
            Capability::GracefulRestart {
                restarting: flags & GR_RESTARTING != 0,
                notification: flags & GR_NOTIFICATION != 0,
                restart_time: u16::from_be_bytes([flags & 0x0f, time_lo]),
                families: tuples
                    .chunks_exact(4)
                    .map(|t| (family([t[0], t[1]], t[2]), t[3] & GR_FORWARDING != 0))
                    .collect(),
            }
        }
        CAP_ADD_PATH if !value.is_empty() && value.len().is_multiple_of(4) => Capability::AddPath(
            value
                .chunks_exact(4)
                .map(|t| (family([t[0], t[1]], t[2]), t[3]))
                .collect(),
        ),
        _ => unknown(),
    }
}

/// bgp-rs's AFI/SAFI for a family, when it has one for both numbers.
fn bgprs_family((afi, safi): Family) -> Option<(AFI, SAFI)> {
    let a = AFI::try_from(afi).ok()?;
    let s = SAFI::try_from(safi).ok()?;
    Some((a, s))
}

fn opaque(code: u8, value: Vec<u8>) -> Result<OpenCapability, EncodeError> {
    // bgp-rs writes each capability as its own parameter whose length octet is
    // 2 + the value length: keep that within one octet.
    let cap_length = u8::try_from(value.len())
        .ok()
        .filter(|&l| l <= 253)
        .ok_or(EncodeError::CapabilityTooLong { code })?;
    Ok(OpenCapability::Unknown {
        cap_code: code,
        cap_length,
        value,
    })
}

fn to_bgprs(cap: &Capability) -> Result<OpenCapability, EncodeError> {
    Ok(match cap {
        Capability::MultiProtocol(f) => match bgprs_family(*f) {
            Some(pair) => OpenCapability::MultiProtocol(pair),
            None => {
                let [a0, a1] = f.0.to_be_bytes();
                opaque(CAP_MULTIPROTOCOL, vec![a0, a1, 0, f.1])?
            }
        },
        Capability::RouteRefresh => OpenCapability::RouteRefresh,
        Capability::FourOctetAs(asn) => OpenCapability::FourByteASN(*asn),
        Capability::AddPath(list) => {
            let typed: Option<Vec<_>> = list
                .iter()
                .map(|&(f, dir)| {
                    let (a, s) = bgprs_family(f)?;
                    let d = AddPathDirection::try_from(dir).ok()?;
                    Some((a, s, d))
                })
                .collect();
            match typed {
                Some(typed) if !typed.is_empty() && typed.len() <= 63 => {
                    OpenCapability::AddPath(typed)
                }
                _ => {
                    let mut v = Vec::with_capacity(list.len() * 4);
                    for &((afi, safi), dir) in list {
                        v.extend_from_slice(&afi.to_be_bytes());
                        v.push(safi);
                        v.push(dir);
                    }
                    opaque(CAP_ADD_PATH, v)?
                }
            }
        }
        Capability::GracefulRestart {
            restarting,
            notification,
            restart_time,
            families,
        } => {
            if *restart_time > 0x0fff {
                return Err(EncodeError::RestartTimeTooLarge(*restart_time));
            }
            let [t_hi, t_lo] = restart_time.to_be_bytes();
            let mut v = Vec::with_capacity(2 + families.len() * 4);
            let mut flags = t_hi;
            if *restarting {
                flags |= GR_RESTARTING;
            }
            if *notification {
                flags |= GR_NOTIFICATION;
            }
            v.push(flags);
            v.push(t_lo);
            for &((afi, safi), forwarding) in families {
                v.extend_from_slice(&afi.to_be_bytes());
                v.push(safi);
                v.push(if forwarding { GR_FORWARDING } else { 0 });
            }
            opaque(CAP_GRACEFUL_RESTART, v)?
        }
        Capability::Unknown { code, value } => opaque(*code, value.clone())?,
    })
}

/// Encodes an OPEN with its header through bgp-rs.
pub(super) fn encode(open: &Open) -> Result<Vec<u8>, EncodeError> {
    let caps = open
        .capabilities
        .iter()
        .map(to_bgprs)
        .collect::<Result<Vec<_>, _>>()?;
    let parameters = if caps.is_empty() {
        Vec::new()
    } else {
        vec![OpenParameter::Capabilities(caps)]
    };
    encode_bgprs(&bgp_rs::Message::Open(bgp_rs::Open {
        version: open.version,
        peer_asn: open.my_as,
        hold_timer: open.hold_time,
        identifier: u32::from(open.router_id),
        parameters,
    }))
}
