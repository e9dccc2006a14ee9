//! Decoding and building the frames the host stack handles: Ethernet with an
//! optional 802.1Q tag, ARP, IPv4 with ICMP, IPv6 with ICMPv6 (echo, neighbor
//! discovery, time exceeded). Decoding returns a typed error, never panics.

use nos_core::MacAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP6_TIME_EXCEEDED: u8 = 3;
pub const ICMP6_ECHO_REQUEST: u8 = 128;
pub const ICMP6_ECHO_REPLY: u8 = 129;
pub const ICMP6_NEIGHBOR_SOLICIT: u8 = 135;
pub const ICMP6_NEIGHBOR_ADVERT: u8 = 136;

/// Why a frame could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame truncated in the {0} header")]
    Truncated(&'static str),
    #[error("unsupported {0}")]
    Unsupported(&'static str),
    #[error("bad {0}")]
    Malformed(&'static str),
}

/// An Ethernet header with its optional VLAN tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eth {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub vlan: Option<u16>,
    pub ethertype: u16,
    /// Offset of the payload in the frame.
    pub payload: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac_at(b: &[u8], at: usize) -> Option<MacAddr> {
    let s = b.get(at..at + 6)?;
    let mut m = [0u8; 6];
    m.copy_from_slice(s);
    Some(MacAddr(m))
}

pub fn parse_eth(f: &[u8]) -> Result<Eth, DecodeError> {
    let t = DecodeError::Truncated("Ethernet");
    let dst = mac_at(f, 0).ok_or(t)?;
    let src = mac_at(f, 6).ok_or(t)?;
    let mut et = be16(f, 12).ok_or(t)?;
    let mut off = 14;
    let mut vlan = None;
    if et == ETHERTYPE_VLAN {
        // VLAN id 0 is a priority tag: the frame belongs to the untagged VLAN.
        vlan = Some(be16(f, 14).ok_or(t)? & 0x0fff).filter(|v| *v != 0);
        et = be16(f, 16).ok_or(t)?;
        off = 18;
    }
    Ok(Eth {
        dst,
        src,
        vlan,
        ethertype: et,
        payload: off,
    })
}

/// Builds an Ethernet frame around `payload`.
pub fn build_eth(
    dst: MacAddr,
    src: MacAddr,
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len().max(46));
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(v) = vlan {
        f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    // Pad to the Ethernet minimum of 60 bytes without FCS.
    while f.len() < 60 {
        f.push(0);
    }
    f
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 = request, 2 = reply.
    pub op: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

pub fn parse_arp(p: &[u8]) -> Result<Arp, DecodeError> {
    let t = DecodeError::Truncated("ARP");
    if p.len() < 28 {
        return Err(t);
    }
    if be16(p, 0) != Some(1) || be16(p, 2) != Some(ETHERTYPE_IPV4) || p[4] != 6 || p[5] != 4 {
        return Err(DecodeError::Unsupported("ARP hardware or protocol type"));
    }
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    Ok(Arp {
        op: be16(p, 6).ok_or(t)?,
        sender_mac: mac_at(p, 8).ok_or(t)?,
        sender_ip: ip(14),
        target_mac: mac_at(p, 18).ok_or(t)?,
        target_ip: ip(24),
    })
}

pub fn build_arp(a: &Arp) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    p.push(6);
    p.push(4);
    p.extend_from_slice(&a.op.to_be_bytes());
    p.extend_from_slice(&a.sender_mac.0);
    p.extend_from_slice(&a.sender_ip.octets());
    p.extend_from_slice(&a.target_mac.0);
    p.extend_from_slice(&a.target_ip.octets());
    p
}

/// The fields of an IP header the host stack uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ttl: u8,
    /// Offset of the L4 payload within the IP packet.
    pub header_len: usize,
    /// Length of the IP packet (header and payload), without link padding.
    pub total_len: usize,
    /// A fragment (IPv4 MF set or offset non-zero; IPv6 with a fragment header).
    pub fragmented: bool,
}

pub fn parse_ipv4(p: &[u8]) -> Result<Ip, DecodeError> {
    if p.len() < 20 {
        return Err(DecodeError::Truncated("IPv4"));
    }
    if p[0] >> 4 != 4 {
        return Err(DecodeError::Malformed("IPv4 version"));
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl || total > p.len() {
        return Err(DecodeError::Malformed("IPv4 header or total length"));
    }
    Ok(Ip {
        src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
        dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
        proto: p[9],
        ttl: p[8],
        header_len: ihl,
        total_len: total,
        fragmented: u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0,
    })
}

pub fn parse_ipv6(p: &[u8]) -> Result<Ip, DecodeError> {
    if p.len() < 40 {
        return Err(DecodeError::Truncated("IPv6"));
    }
    if p[0] >> 4 != 6 {
        return Err(DecodeError::Malformed("IPv6 version"));
    }
    let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
    if 40 + plen > p.len() {
        return Err(DecodeError::Malformed("IPv6 payload length"));
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&p[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    Ok(Ip {
        src: addr(8),
        dst: addr(24),
        proto: p[6],
        ttl: p[7],
        header_len: 40,
        total_len: 40 + plen,
        fragmented: p[6] == 44,
    })
}

pub use nos_core::checksum::{fold, sum16};

/// Builds an IPv4 packet (no options, DF clear) with a correct header checksum.
pub fn build_ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = fold(sum16(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Builds an IPv6 packet; for ICMPv6 the checksum at payload offset 2 is filled in.
pub fn build_ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = hop_limit;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    if next == PROTO_ICMPV6 && payload.len() >= 4 {
        p[42] = 0;
        p[43] = 0;
        let c = icmpv6_checksum(src, dst, &p[40..]);
        p[42..44].copy_from_slice(&c.to_be_bytes());
    }
    p
}

pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc = acc.wrapping_add(msg.len() as u32);
    acc = acc.wrapping_add(u32::from(PROTO_ICMPV6));
    fold(sum16(acc, msg))
}

/// Builds an ICMPv4 message with its checksum.
pub fn build_icmpv4(kind: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(rest);
    let c = fold(sum16(0, &m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A neighbor solicitation or advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nd {
    pub kind: u8,
    pub target: Ipv6Addr,
    /// Source (NS) or target (NA) link-layer address option.
    pub lladdr: Option<MacAddr>,
    /// NA flags: router, solicited, override.
    pub flags: u8,
}

/// Decodes an NS or NA (the ICMPv6 message, starting at its type byte).
pub fn parse_nd(m: &[u8]) -> Result<Nd, DecodeError> {
    if m.len() < 24 {
        return Err(DecodeError::Truncated("neighbor discovery"));
    }
    let kind = m[0];
    if kind != ICMP6_NEIGHBOR_SOLICIT && kind != ICMP6_NEIGHBOR_ADVERT {
        return Err(DecodeError::Unsupported("ICMPv6 type"));
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&m[8..24]);
    let mut lladdr = None;
    let mut off = 24;
    while off + 2 <= m.len() {
        let len = usize::from(m[off + 1]) * 8;
        if len == 0 || off + len > m.len() {
            return Err(DecodeError::Malformed("neighbor discovery option length"));
        }
        if (m[off] == 1 || m[off] == 2) && len >= 8 {
            lladdr = mac_at(m, off + 2);
        }
        off += len;
    }
    Ok(Nd {
        kind,
        target: Ipv6Addr::from(t),
        lladdr,
        flags: m[4],
    })
}

/// Builds an NS (`kind` 135, option = source lladdr) or NA (136, option = target
/// lladdr) message; the checksum is filled in by [`build_ipv6`].
pub fn build_nd(kind: u8, flags: u8, target: Ipv6Addr, lladdr: MacAddr) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, flags, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.push(if kind == ICMP6_NEIGHBOR_SOLICIT { 1 } else { 2 });
    m.push(1);
    m.extend_from_slice(&lladdr.0);
    m
}

/// The solicited-node multicast address of `ip` and its Ethernet address.
pub fn solicited_node(ip: Ipv6Addr) -> (Ipv6Addr, MacAddr) {
    let o = ip.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    let g = group.octets();
    (group, MacAddr([0x33, 0x33, g[12], g[13], g[14], g[15]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_round_trip() {
        let a = Arp {
            op: ARP_REQUEST,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(192, 0, 2, 2),
        };
        let f = build_eth(
            MacAddr::BROADCAST,
            a.sender_mac,
            Some(10),
            ETHERTYPE_ARP,
            &build_arp(&a),
        );
        let e = parse_eth(&f).unwrap();
        assert_eq!(e.vlan, Some(10));
        assert_eq!(e.ethertype, ETHERTYPE_ARP);
        assert_eq!(parse_arp(&f[e.payload..]).unwrap(), a);
    }

    #[test]
    fn ipv4_checksum_is_valid() {
        let p = build_ipv4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            1,
            64,
            &[1, 2, 3],
        );
        assert_eq!(fold(sum16(0, &p[..20])), 0);
        let ip = parse_ipv4(&p).unwrap();
        assert_eq!(ip.total_len, 23);
    }

    #[test]
    fn nd_round_trip_and_checksum() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let (group, mac) = solicited_node(target);
        assert_eq!(group, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mac, MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
        let m = build_nd(
            ICMP6_NEIGHBOR_SOLICIT,
            0,
            target,
            MacAddr([2, 0, 0, 0, 0, 1]),
        );
        let p = build_ipv6(src, group, PROTO_ICMPV6, 255, &m);
        assert_eq!(icmpv6_checksum(src, group, &p[40..]), 0);
        let nd = parse_nd(&p[40..]).unwrap();
        assert_eq!(nd.target, target);
        assert_eq!(nd.lladdr, Some(MacAddr([2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn decoders_reject_garbage_without_panicking() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = parse_eth(&junk);
            let _ = parse_arp(&junk);
            let _ = parse_ipv4(&junk);
            let _ = parse_ipv6(&junk);
            let _ = parse_nd(&junk);
        }
        let mut bad_opt = build_nd(ICMP6_NEIGHBOR_ADVERT, 0, Ipv6Addr::LOCALHOST, MacAddr::ZERO);
        bad_opt[25] = 0;
        assert_eq!(
            parse_nd(&bad_opt),
            Err(DecodeError::Malformed("neighbor discovery option length"))
        );
    }
}
