//! Prefixes on the wire (RFC 4271 section 4.3, RFC 4760 section 5, RFC 7911
//! section 3): `[path id (4 octets, ADD-PATH only)] length (1 octet, bits)
//! prefix (ceil(length / 8) octets)`.
//!
//! Decoding is one tight loop over the slice: no reader object, no allocation
//! besides the output vector, trailing bits past the prefix length cleared.
//! bgp-rs is not used here: its parser guesses ADD-PATH from the bytes and
//! allocates per prefix.

use crate::bgp::msg::Nlri;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a run of prefixes could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NlriError {
    /// The field ends inside a path identifier, length octet or prefix.
    Truncated,
    /// A length beyond 32 (IPv4) or 128 (IPv6) bits.
    TooLong(u8),
}

impl std::fmt::Display for NlriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NlriError::Truncated => f.write_str("prefix runs past the end of its field"),
            NlriError::TooLong(l) => write!(f, "prefix length {l} is too long for the family"),
        }
    }
}

/// Splits off the optional path identifier and the length octet.
#[inline]
fn head(b: &[u8], add_path: bool) -> Result<(Option<u32>, u8, &[u8]), NlriError> {
    let (path_id, b) = if add_path {
        let (id, rest) = b.split_first_chunk::<4>().ok_or(NlriError::Truncated)?;
        (Some(u32::from_be_bytes(*id)), rest)
    } else {
        (None, b)
    };
    let (&len, rest) = b.split_first().ok_or(NlriError::Truncated)?;
    Ok((path_id, len, rest))
}

/// Appends the IPv4 prefixes of `b` to `out`.
pub(super) fn parse_v4(mut b: &[u8], add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    // A /24 takes 4 octets (8 with a path id): a fair guess for a full table.
    out.reserve(b.len() / if add_path { 8 } else { 4 });
    while !b.is_empty() {
        let (path_id, len, rest) = head(b, add_path)?;
        if len > 32 {
            return Err(NlriError::TooLong(len));
        }
        let n = usize::from(len.div_ceil(8));
        let (bytes, rest) = rest.split_at_checked(n).ok_or(NlriError::Truncated)?;
        let mut octets = [0u8; 4];
        if let Some(dst) = octets.get_mut(..n) {
            dst.copy_from_slice(bytes);
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let addr = Ipv4Addr::from(u32::from_be_bytes(octets) & mask);
        let net = Ipv4Net::new(addr, len).map_err(|_| NlriError::TooLong(len))?;
        out.push(Nlri {
            prefix: IpNet::V4(net),
            path_id,
        });
        b = rest;
    }
    Ok(())
}

/// Appends the IPv6 prefixes of `b` to `out`.
pub(super) fn parse_v6(mut b: &[u8], add_path: bool, out: &mut Vec<Nlri>) -> Result<(), NlriError> {
    out.reserve(b.len() / if add_path { 10 } else { 6 });
    while !b.is_empty() {
        let (path_id, len, rest) = head(b, add_path)?;
        if len > 128 {
            return Err(NlriError::TooLong(len));
        }
        let n = usize::from(len.div_ceil(8));
        let (bytes, rest) = rest.split_at_checked(n).ok_or(NlriError::Truncated)?;
        let mut octets = [0u8; 16];
        if let Some(dst) = octets.get_mut(..n) {
            dst.copy_from_slice(bytes);
        }
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        let addr = Ipv6Addr::from(u128::from_be_bytes(octets) & mask);
        let net = Ipv6Net::new(addr, len).map_err(|_| NlriError::TooLong(len))?;
        out.push(Nlri {
            prefix: IpNet::V6(net),
            path_id,
        });
        b = rest;
    }
    Ok(())
}

/// Octets `net` takes on the wire, without a path identifier.
#[inline]
pub(super) fn wire_len(net: &IpNet) -> usize {
    1 + usize::from(net.prefix_len().div_ceil(8))
}

/// Writes `[path id] length prefix` with the host bits cleared.
#[inline]
pub(super) fn write(out: &mut Vec<u8>, net: &IpNet, path_id: Option<u32>) {
    if let Some(id) = path_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    let len = net.prefix_len();
    let n = usize::from(len.div_ceil(8));
    out.push(len);
    match net {
        IpNet::V4(v4) => {
            let o = v4.network().octets();
            out.extend_from_slice(o.get(..n).unwrap_or(&o));
        }
        IpNet::V6(v6) => {
            let o = v6.network().octets();
            out.extend_from_slice(o.get(..n).unwrap_or(&o));
        }
    }
}
