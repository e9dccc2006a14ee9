//! Header parsing and checksum arithmetic. Every read is bounds-checked; nothing
//! here allocates.

use super::DropReason;

pub(crate) const ETH_IPV4: u32 = 0x0800;
pub(crate) const ETH_ARP: u32 = 0x0806;
pub(crate) const ETH_VLAN: u16 = 0x8100;
pub(crate) const ETH_IPV6: u32 = 0x86dd;

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

/// A MAC address as the low 48 bits of an integer (for masked comparisons).
#[inline]
pub(crate) fn mac_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// The Ethernet header. Every field is a whole integer the parser writes
/// once, so the pipeline's later reads are served straight from those
/// writes (a wide read over several narrow writes stalls the processor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Eth {
    /// Destination MAC as the low 48 bits (see [`mac_u64`]).
    pub dst: u64,
    /// Source MAC, likewise.
    pub src: u64,
    /// Tag control information of the outer 802.1Q tag (priority, DEI and
    /// VLAN id), when `tagged`.
    pub tci: u32,
    pub tagged: bool,
    /// The ether type after the tag.
    pub ether_type: u32,
    /// Offset of the L3 header.
    pub l3: usize,
}

impl Eth {
    /// VLAN id of the outer 802.1Q tag, if there is one.
    #[inline]
    pub fn vlan(&self) -> Option<u16> {
        self.tagged.then_some((self.tci & 0x0fff) as u16)
    }

    /// The group bit of the destination MAC.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        (self.dst >> 40) & 1 == 1
    }
}

/// Parses the Ethernet header and at most one 802.1Q tag into `eth`;
/// `false` when the frame is too short.
#[inline(always)]
pub(crate) fn ethernet(f: &[u8], eth: &mut Eth) -> bool {
    let Some(h) = f.get(..14) else {
        return false;
    };
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[..8]);
        u64::from_be_bytes(w)
    };
    eth.dst = word(&h[..8]) >> 16;
    eth.src = word(&h[4..12]) & 0xffff_ffff_ffff;
    let t = u16::from_be_bytes([h[12], h[13]]);
    if t == ETH_VLAN {
        let Some(tag) = f.get(14..18) else {
            return false;
        };
        eth.tci = u32::from(u16::from_be_bytes([tag[0], tag[1]]));
        eth.tagged = true;
        eth.ether_type = u32::from(u16::from_be_bytes([tag[2], tag[3]]));
        eth.l3 = 18;
    } else {
        eth.tci = 0;
        eth.tagged = false;
        eth.ether_type = u32::from(t);
        eth.l3 = 14;
    }
    true
}

/// Source and destination addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addrs {
    V4 { src: u32, dst: u32 },
    V6 { src: u128, dst: u128 },
}

/// What the pipeline needs of an IP packet. As with [`Eth`], the L4 fields
/// are plain integers with presence bits rather than options. The layout is
/// fixed so that the protocol and the DSCP, which the ACL key shifts into
/// neighbouring bytes, do not sit side by side (the compiler would read them
/// with one load spanning the parser's two writes, which the processor
/// cannot forward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Ip {
    pub addrs: Addrs,
    /// Length of the IP packet, header included.
    pub len: usize,
    /// Source port (high 16 bits) and destination port (low 16 bits).
    pub port_pair: u32,
    /// Upper-layer protocol (for IPv6, after the extension headers walked).
    pub proto: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    pub dscp: u8,
    /// Which of the L4 fields the packet has (`HAS_*`).
    pub has: u8,
    pub tcp_flag_bits: u8,
    pub icmp6: u8,
}

/// [`Ip::has`]: TCP or UDP ports (first fragments).
pub(crate) const HAS_PORTS: u8 = 1;
/// [`Ip::has`]: TCP flags.
pub(crate) const HAS_TCP_FLAGS: u8 = 2;
/// [`Ip::has`]: an ICMPv6 type.
pub(crate) const HAS_ICMP6: u8 = 4;

impl Default for Ip {
    fn default() -> Self {
        Ip {
            addrs: Addrs::V4 { src: 0, dst: 0 },
            proto: 0,
            dscp: 0,
            ttl: 0,
            has: 0,
            port_pair: 0,
            tcp_flag_bits: 0,
            icmp6: 0,
            len: 0,
        }
    }
}

impl Ip {
    pub fn is_ipv6(&self) -> bool {
        matches!(self.addrs, Addrs::V6 { .. })
    }

    /// L4 ports (source, destination), for TCP and UDP packets that carry them.
    #[inline]
    pub fn ports(&self) -> Option<(u16, u16)> {
        (self.has & HAS_PORTS != 0)
            .then_some(((self.port_pair >> 16) as u16, self.port_pair as u16))
    }

    /// TCP flags, for TCP packets that carry them.
    #[inline]
    pub fn tcp_flags(&self) -> Option<u8> {
        (self.has & HAS_TCP_FLAGS != 0).then_some(self.tcp_flag_bits)
    }

    /// ICMPv6 type, for ICMPv6 packets.
    #[inline]
    pub fn icmp6_type(&self) -> Option<u8> {
        (self.has & HAS_ICMP6 != 0).then_some(self.icmp6)
    }

    /// Router solicitation/advertisement, neighbor solicitation/advertisement or
    /// redirect.
    pub fn is_neighbor_discovery(&self) -> bool {
        matches!(self.icmp6_type(), Some(133..=137))
    }
}

/// Reads ports, TCP flags and ICMPv6 type from the L4 header at `l4`, which must
/// end by `end` (the end of the IP packet in the frame).
#[inline(always)]
fn l4_fields(ip: &mut Ip, f: &[u8], l4: usize, end: usize) {
    let Some(l4h) = f.get(l4..end) else {
        return;
    };
    match ip.proto {
        PROTO_TCP | PROTO_UDP => {
            if let Some(p) = l4h.get(..4) {
                ip.port_pair = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                ip.has |= HAS_PORTS;
            }
            if ip.proto == PROTO_TCP {
                if let Some(&fl) = l4h.get(13) {
                    ip.tcp_flag_bits = fl;
                    ip.has |= HAS_TCP_FLAGS;
                }
            }
        }
        PROTO_ICMPV6 if ip.is_ipv6() => {
            if let Some(&t) = l4h.first() {
                ip.icmp6 = t;
                ip.has |= HAS_ICMP6;
            }
        }
        _ => {}
    }
}

/// The 16-bit one's complement sum of `b` (an even number of bytes), folded:
/// the tests' reference for checksums.
#[cfg(test)]
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

/// Whether an IPv4 header (a multiple of 4 bytes) has a valid checksum: its
/// 16-bit one's complement sum is 0xffff. Summed as 32-bit words in native
/// byte order and folded (RFC 1071: the sum does not depend on the word
/// size or the byte order, and 0xffff reads the same either way), which
/// takes five additions for a header without options.
#[inline(always)]
pub(crate) fn ipv4_header_sum_ok(header: &[u8]) -> bool {
    let word = |w: &[u8]| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    let mut acc: u64 = match header.first_chunk::<20>() {
        // No options: five loads, no loop.
        Some(h) if header.len() == 20 => {
            word(&h[0..4]) + word(&h[4..8]) + word(&h[8..12]) + word(&h[12..16]) + word(&h[16..20])
        }
        _ => header.chunks_exact(4).map(word).sum(),
    };
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc == 0xffff
}

/// Parses and checks the IPv4 header at `l3` into `ip` (which must be as
/// [`Ip::default`] made it).
#[inline(always)]
pub(crate) fn ipv4(f: &[u8], l3: usize, ip: &mut Ip) -> Result<(), DropReason> {
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
    if !ipv4_header_sum_ok(header) {
        return Err(DropReason::BadChecksum);
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    ip.addrs = Addrs::V4 {
        src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
    };
    ip.proto = h[9];
    ip.dscp = h[1] >> 2;
    ip.ttl = h[8];
    ip.len = total;
    // Only the first fragment (offset 0) carries the L4 header.
    if frag & 0x1fff == 0 {
        l4_fields(ip, f, l3 + hlen, l3 + total);
    }
    Ok(())
}

/// Extension headers walked to find the upper-layer protocol.
const MAX_EXT_HEADERS: usize = 8;

/// Parses and checks the IPv6 header at `l3` into `ip` (which must be as
/// [`Ip::default`] made it), walking hop-by-hop, routing,
/// destination-options, fragment and authentication headers.
pub(crate) fn ipv6(f: &[u8], l3: usize, ip: &mut Ip) -> Result<(), DropReason> {
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
    ip.addrs = Addrs::V6 {
        src: u128_at(h, 8).ok_or(DropReason::Truncated)?,
        dst: u128_at(h, 24).ok_or(DropReason::Truncated)?,
    };
    ip.proto = h[6];
    ip.dscp = tclass >> 2;
    ip.ttl = h[7];
    ip.len = total;
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
                    return Ok(());
                };
                if fo & 0xfff8 != 0 {
                    ip.proto = n;
                    return Ok(());
                }
                (n, 8)
            }
            // Authentication header: 4-octet units after the first 8.
            (51, Some(n), Some(&l)) => (n, (usize::from(l) + 2) * 4),
            (0 | 43 | 60 | 44 | 51, _, _) => return Ok(()),
            _ => break,
        };
        if off + ext_len > end {
            return Ok(());
        }
        ip.proto = next;
        off += ext_len;
    }
    l4_fields(ip, f, off, end);
    Ok(())
}

/// Decrements the IPv4 TTL at `l3` and updates the header checksum incrementally
/// (RFC 1624, equation 3). The caller has checked the header and that TTL > 1.
#[inline]
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
        fn the_word_sum_check_agrees_with_the_16_bit_sum(
            words in 5usize..=15,
            bytes in proptest::collection::vec(any::<u8>(), 60),
            fix in any::<bool>(),
        ) {
            let mut h = bytes[..words * 4].to_vec();
            if fix {
                // Set the checksum field so that the header is valid.
                h[10] = 0;
                h[11] = 0;
                let c = !ones_sum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(ipv4_header_sum_ok(&h), ones_sum(&h) == 0xffff);
        }

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
    fn a_word_sum_that_needs_every_fold_is_still_valid() {
        // The 32-bit words add up to 0xffff_ffff: folding to 16 bits takes
        // two rounds (0xffff + 0xffff = 0x1fffe, then 0xffff).
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&[0xff; 4]);
        assert_eq!(ones_sum(&h), 0xffff);
        assert!(ipv4_header_sum_ok(&h));
        h[19] = 1;
        assert!(!ipv4_header_sum_ok(&h));
    }

    #[test]
    fn ethernet_with_and_without_tag() {
        let parse = |f: &[u8]| {
            let mut e = Eth::default();
            ethernet(f, &mut e).then_some(e)
        };
        let mut f = vec![0u8; 14];
        f[..12].copy_from_slice(&[2, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        f[12] = 0x08;
        let e = parse(&f).unwrap();
        assert_eq!((e.vlan(), e.ether_type, e.l3), (None, ETH_IPV4, 14));
        assert_eq!((e.dst, e.src), (0x0202_0304_0506, 0x0a0b_0c0d_0e0f));
        assert!(!e.is_multicast());
        f[0] = 0x03;
        assert!(parse(&f).unwrap().is_multicast());
        f[12] = 0x81;
        f[13] = 0x00;
        assert_eq!(parse(&f), None);
        f.extend([0xa0, 0x64, 0x86, 0xdd]);
        let e = parse(&f).unwrap();
        assert_eq!(
            (e.vlan(), e.ether_type, e.l3, e.tci),
            (Some(100), ETH_IPV6, 18, 0xa064)
        );
        assert_eq!(parse(&f[..13]), None);
    }
}
