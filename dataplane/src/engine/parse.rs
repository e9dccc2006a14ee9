//! Header parsing and checksum arithmetic. Every read is bounds-checked; nothing
//! here allocates.

use super::DropReason;

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_ARP: u16 = 0x0806;
pub(crate) const ETH_VLAN: u16 = 0x8100;
pub(crate) const ETH_IPV6: u16 = 0x86dd;

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;

/// Offset of the MAC addresses' end, where an 802.1Q tag sits.
pub(crate) const TAG_OFFSET: usize = 12;

#[inline]
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

#[inline]
fn u128_at(b: &[u8], off: usize) -> Option<u128> {
    let s: [u8; 16] = b.get(off..off.checked_add(16)?)?.try_into().ok()?;
    Some(u128::from_be_bytes(s))
}

#[inline]
fn mac_at(b: &[u8], off: usize) -> Option<[u8; 6]> {
    b.get(off..off.checked_add(6)?)?.try_into().ok()
}

/// A MAC address as the low 48 bits of an integer (for masked comparisons).
#[inline]
pub(crate) fn mac_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// The Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// VLAN id of the outer 802.1Q tag, if there is one.
    pub vlan: Option<u16>,
    /// Tag control information of that tag (priority, DEI and VLAN id).
    pub tci: u16,
    /// The ether type after the tag.
    pub ether_type: u16,
    /// Offset of the L3 header.
    pub l3: usize,
}

/// Parses the Ethernet header and at most one 802.1Q tag.
#[inline]
pub(crate) fn ethernet(f: &[u8]) -> Option<Eth> {
    let dst = mac_at(f, 0)?;
    let src = mac_at(f, 6)?;
    let t = u16_at(f, 12)?;
    if t == ETH_VLAN {
        let tci = u16_at(f, 14)?;
        Some(Eth {
            dst,
            src,
            vlan: Some(tci & 0x0fff),
            tci,
            ether_type: u16_at(f, 16)?,
            l3: 18,
        })
    } else {
        Some(Eth {
            dst,
            src,
            vlan: None,
            tci: 0,
            ether_type: t,
            l3: 14,
        })
    }
}

/// Source and destination addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addrs {
    V4 { src: u32, dst: u32 },
    V6 { src: u128, dst: u128 },
}

/// What the pipeline needs of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ip {
    pub addrs: Addrs,
    /// Upper-layer protocol (for IPv6, after the extension headers walked).
    pub proto: u8,
    pub dscp: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Length of the IP packet, header included.
    pub len: usize,
    /// L4 ports, for TCP and UDP packets that carry them (first fragments).
    pub ports: Option<(u16, u16)>,
    /// TCP flags, for TCP packets that carry them.
    pub tcp_flags: Option<u8>,
    /// ICMPv6 type, for ICMPv6 packets.
    pub icmp6_type: Option<u8>,
}

impl Ip {
    pub fn is_ipv6(&self) -> bool {
        matches!(self.addrs, Addrs::V6 { .. })
    }

    /// Router solicitation/advertisement, neighbor solicitation/advertisement or
    /// redirect.
    pub fn is_neighbor_discovery(&self) -> bool {
        matches!(self.icmp6_type, Some(133..=137))
    }
}

/// Reads ports, TCP flags and ICMPv6 type from the L4 header at `l4`, which must
/// end by `end` (the end of the IP packet in the frame).
fn l4_fields(ip: &mut Ip, f: &[u8], l4: usize, end: usize) {
    let Some(l4h) = f.get(l4..end) else {
        return;
    };
    match ip.proto {
        PROTO_TCP | PROTO_UDP => {
            if let (Some(s), Some(d)) = (u16_at(l4h, 0), u16_at(l4h, 2)) {
                ip.ports = Some((s, d));
            }
            if ip.proto == PROTO_TCP {
                ip.tcp_flags = l4h.get(13).copied();
            }
        }
        PROTO_ICMPV6 if ip.is_ipv6() => ip.icmp6_type = l4h.first().copied(),
        _ => {}
    }
}

/// The 16-bit one's complement sum of `b` (an even number of bytes), folded.
#[inline]
pub(crate) fn ones_sum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for w in b.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Parses and checks the IPv4 header at `l3`.
pub(crate) fn ipv4(f: &[u8], l3: usize) -> Result<Ip, DropReason> {
    let h = f.get(l3..l3 + 20).ok_or(DropReason::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(DropReason::BadIpHeader);
    }
    let hlen = usize::from(h[0] & 0x0f) * 4;
    if hlen < 20 {
        return Err(DropReason::BadIpHeader);
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < hlen {
        return Err(DropReason::BadIpHeader);
    }
    let avail = f.len() - l3;
    if total > avail {
        return Err(DropReason::Truncated);
    }
    let header = f.get(l3..l3 + hlen).ok_or(DropReason::Truncated)?;
    if ones_sum(header) != 0xffff {
        return Err(DropReason::BadChecksum);
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let mut ip = Ip {
        addrs: Addrs::V4 {
            src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        },
        proto: h[9],
        dscp: h[1] >> 2,
        ttl: h[8],
        len: total,
        ports: None,
        tcp_flags: None,
        icmp6_type: None,
    };
    // Only the first fragment (offset 0) carries the L4 header.
    if frag & 0x1fff == 0 {
        l4_fields(&mut ip, f, l3 + hlen, l3 + total);
    }
    Ok(ip)
}

/// Extension headers walked to find the upper-layer protocol.
const MAX_EXT_HEADERS: usize = 8;

/// Parses and checks the IPv6 header at `l3`, walking hop-by-hop, routing,
/// destination-options, fragment and authentication headers.
pub(crate) fn ipv6(f: &[u8], l3: usize) -> Result<Ip, DropReason> {
    let h = f.get(l3..l3 + 40).ok_or(DropReason::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(DropReason::BadIpHeader);
    }
    let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let total = 40 + payload;
    if total > f.len() - l3 {
        return Err(DropReason::Truncated);
    }
    let tclass = ((h[0] & 0x0f) << 4) | (h[1] >> 4);
    let mut ip = Ip {
        addrs: Addrs::V6 {
            src: u128_at(h, 8).ok_or(DropReason::Truncated)?,
            dst: u128_at(h, 24).ok_or(DropReason::Truncated)?,
        },
        proto: h[6],
        dscp: tclass >> 2,
        ttl: h[7],
        len: total,
        ports: None,
        tcp_flags: None,
        icmp6_type: None,
    };
    let end = l3 + total;
    let mut off = l3 + 40;
    for _ in 0..MAX_EXT_HEADERS {
        let next = f.get(off).copied();
        let (next, ext_len) = match (ip.proto, next, f.get(off + 1)) {
            // Hop-by-hop, routing, destination options: 8-octet units after the first 8.
            (0 | 43 | 60, Some(n), Some(&l)) => (n, (usize::from(l) + 1) * 8),
            // Fragment: only the first fragment carries the L4 header.
            (44, Some(n), _) => {
                let Some(fo) = u16_at(f, off + 2) else {
                    return Ok(ip);
                };
                if fo & 0xfff8 != 0 {
                    ip.proto = n;
                    return Ok(ip);
                }
                (n, 8)
            }
            // Authentication header: 4-octet units after the first 8.
            (51, Some(n), Some(&l)) => (n, (usize::from(l) + 2) * 4),
            (0 | 43 | 60 | 44 | 51, _, _) => return Ok(ip),
            _ => break,
        };
        if off + ext_len > end {
            return Ok(ip);
        }
        ip.proto = next;
        off += ext_len;
    }
    l4_fields(&mut ip, f, off, end);
    Ok(ip)
}

/// Decrements the IPv4 TTL at `l3` and updates the header checksum incrementally
/// (RFC 1624, equation 3). The caller has checked the header and that TTL > 1.
pub(crate) fn ipv4_decrement_ttl(f: &mut [u8], l3: usize) {
    let (Some(old_word), Some(old_ck)) = (u16_at(f, l3 + 8), u16_at(f, l3 + 10)) else {
        return;
    };
    let new_word = old_word.wrapping_sub(0x0100);
    // HC' = ~(~HC + ~m + m')
    let mut sum = u32::from(!old_ck) + u32::from(!old_word) + u32::from(new_word);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let new_ck = !(sum as u16);
    if let Some(b) = f.get_mut(l3 + 8..l3 + 12) {
        b[..2].copy_from_slice(&new_word.to_be_bytes());
        b[2..].copy_from_slice(&new_ck.to_be_bytes());
    }
}

/// Decrements the IPv6 hop limit at `l3`.
pub(crate) fn ipv6_decrement_hop_limit(f: &mut [u8], l3: usize) {
    if let Some(h) = f.get_mut(l3 + 7) {
        *h = h.wrapping_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The header checksum computed from scratch.
    fn full_checksum(h: &[u8]) -> u16 {
        let mut c = h.to_vec();
        c[10] = 0;
        c[11] = 0;
        !ones_sum(&c)
    }

    proptest! {
        #[test]
        fn incremental_ttl_update_equals_recomputation(
            mut hdr in proptest::collection::vec(any::<u8>(), 20),
            ttl in 2u8..=255,
            noncanonical in any::<bool>(),
        ) {
            hdr[0] = 0x45;
            hdr[8] = ttl;
            let ck = if noncanonical {
                // Make the rest of the header sum to 0xffff (by setting the
                // identification field), so that both 0x0000 and the
                // non-canonical 0xffff are valid checksums; take the latter.
                hdr[4] = 0;
                hdr[5] = 0;
                let c = full_checksum(&hdr);
                hdr[4..6].copy_from_slice(&c.to_be_bytes());
                prop_assert_eq!(full_checksum(&hdr), 0);
                0xffff
            } else {
                full_checksum(&hdr)
            };
            hdr[10..12].copy_from_slice(&ck.to_be_bytes());
            prop_assert_eq!(ones_sum(&hdr), 0xffff);
            ipv4_decrement_ttl(&mut hdr, 0);
            prop_assert_eq!(hdr[8], ttl - 1);
            prop_assert_eq!(u16::from_be_bytes([hdr[10], hdr[11]]), full_checksum(&hdr));
        }
    }

    #[test]
    fn ethernet_with_and_without_tag() {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let e = ethernet(&f).unwrap();
        assert_eq!((e.vlan, e.ether_type, e.l3), (None, ETH_IPV4, 14));
        f[12] = 0x81;
        f[13] = 0x00;
        assert_eq!(ethernet(&f), None);
        f.extend([0xa0, 0x64, 0x86, 0xdd]);
        let e = ethernet(&f).unwrap();
        assert_eq!(
            (e.vlan, e.ether_type, e.l3, e.tci),
            (Some(100), ETH_IPV6, 18, 0xa064)
        );
        assert_eq!(ethernet(&f[..13]), None);
    }
}
