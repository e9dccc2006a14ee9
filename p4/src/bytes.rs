//! P4Runtime binary strings ("bytestrings") for `bit<W>` values.
//!
//! The P4Runtime specification (section "Bytestrings") has every value of a
//! `bit<W>` field travel as big-endian bytes. A client must send the
//! shortest encoding (at least one byte: zero is `\x00`); a receiver must
//! also accept longer, zero-padded encodings, and must refuse a string that
//! is empty or whose value does not fit in `W` bits. This module is the one
//! place the crate turns numbers into such strings and back.

/// Why a binary string or a value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BytesError {
    #[error("{what}: empty binary string (a value needs at least one byte)")]
    Empty { what: String },
    #[error("{what}: value 0x{hex} does not fit in {bits} bits")]
    Overflow {
        what: String,
        hex: String,
        bits: u32,
    },
}

/// The all-ones value of a `bits`-wide field (`bits` ≤ 128).
pub fn max_value(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The shortest binary string of `v` (one byte at least).
pub fn encode(v: u128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let start = (v.leading_zeros() / 8).min(15) as usize;
    bytes[start..].to_vec()
}

/// The shortest binary string of `v` for a `bits`-wide field; a value that
/// does not fit is refused (`what` names the field in the error).
pub fn encode_checked(
    v: u128,
    bits: u32,
    what: &dyn std::fmt::Display,
) -> Result<Vec<u8>, BytesError> {
    if v > max_value(bits) {
        return Err(BytesError::Overflow {
            what: what.to_string(),
            hex: format!("{v:x}"),
            bits,
        });
    }
    Ok(encode(v))
}

/// The value of a received binary string for a `bits`-wide field: leading
/// zero bytes are accepted; an empty string or a value wider than `bits`
/// is refused.
pub fn decode(bytes: &[u8], bits: u32, what: &dyn std::fmt::Display) -> Result<u128, BytesError> {
    if bytes.is_empty() {
        return Err(BytesError::Empty {
            what: what.to_string(),
        });
    }
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    let overflow = || BytesError::Overflow {
        what: what.to_string(),
        hex: significant.iter().map(|b| format!("{b:02x}")).collect(),
        bits,
    };
    if significant.len() > 16 {
        return Err(overflow());
    }
    let v = significant
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    if v > max_value(bits) {
        return Err(overflow());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(b: &[u8], bits: u32) -> Result<u128, BytesError> {
        decode(b, bits, &"f")
    }

    #[test]
    fn shortest_out() {
        assert_eq!(encode(0), vec![0]);
        assert_eq!(encode(1), vec![1]);
        assert_eq!(encode(0x63), vec![0x63]);
        assert_eq!(encode(0x100), vec![1, 0]);
        assert_eq!(encode(0x3064), vec![0x30, 0x64]);
        assert_eq!(encode(u128::MAX), vec![0xff; 16]);
        assert_eq!(encode_checked(511, 9, &"port").unwrap(), vec![1, 0xff]);
        assert!(matches!(
            encode_checked(512, 9, &"port"),
            Err(BytesError::Overflow { bits: 9, .. })
        ));
        assert_eq!(
            encode_checked(u128::MAX, 128, &"x").unwrap(),
            vec![0xff; 16]
        );
    }

    #[test]
    fn padded_in_and_overflow_refused() {
        // The specification's examples for bit<16> and bit<12>.
        assert_eq!(d(b"\x00\x63", 16), Ok(0x63));
        assert_eq!(d(b"\x00\x00\x63", 16), Ok(0x63));
        assert_eq!(d(b"\x00\x30\x64", 16), Ok(0x3064));
        assert_eq!(d(b"\x0f\xff", 12), Ok(0xfff));
        assert_eq!(d(&[0; 20], 9), Ok(0));
        let mut padded = vec![0u8; 3];
        padded.extend([0xff; 16]);
        assert_eq!(d(&padded, 128), Ok(u128::MAX));
        assert!(matches!(d(b"", 8), Err(BytesError::Empty { .. })));
        assert!(matches!(
            d(b"\x01\x63", 8),
            Err(BytesError::Overflow { .. })
        ));
        assert!(matches!(
            d(b"\x10\x00", 12),
            Err(BytesError::Overflow { .. })
        ));
        assert!(matches!(
            d(b"\x02\x00", 9),
            Err(BytesError::Overflow { .. })
        ));
        assert!(matches!(
            d(&[1u8; 17], 128),
            Err(BytesError::Overflow { .. })
        ));
        let e = d(b"\x02\x00", 9).unwrap_err().to_string();
        assert!(e.contains("0x0200") && e.contains("9 bits"), "{e}");
    }

    proptest! {
        #[test]
        fn round_trip(v in any::<u128>(), bits in 1u32..=128, pad in 0usize..4) {
            let v = v & max_value(bits);
            let enc = encode_checked(v, bits, &"f").unwrap();
            prop_assert!(enc.len() == 1 || enc[0] != 0, "shortest: {:?}", enc);
            prop_assert!(enc.len() <= bits.div_ceil(8) as usize);
            let mut padded = vec![0u8; pad];
            padded.extend(&enc);
            prop_assert_eq!(decode(&padded, bits, &"f").unwrap(), v);
        }
    }
}
