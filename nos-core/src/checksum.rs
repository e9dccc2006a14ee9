//! The Internet checksum (RFC 1071), shared by everything that builds or
//! completes IP, ICMP, TCP and UDP headers.

/// Adds `data` to a running one's-complement sum as 16-bit big-endian words
/// (an odd last byte is padded with zero).
pub fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds the carries of a running sum and complements it: the checksum to
/// write, or 0 when verifying data that includes a correct checksum.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(0, &data)), !0xddf2);
        // An odd length pads with zero.
        assert_eq!(sum16(0, &[0xab]), 0xab00);
    }
}
