//! P4Runtime binary strings for `bit<W>` values (the specification's
//! "Bytestrings" section): big-endian, any length accepted on input as long
//! as the value fits in `W` bits (leading zero bytes are ignored), the
//! shortest encoding produced on output.

use super::error::RpcError;

/// The value of a received binary string that must fit in `bits` bits
/// (`bits` ≤ 128). An empty string or a value wider than `bits` is
/// OUT_OF_RANGE, as the specification requires.
pub fn decode(bytes: &[u8], bits: u32, what: &dyn std::fmt::Display) -> Result<u128, RpcError> {
    if bytes.is_empty() {
        return Err(RpcError::out_of_range(format!(
            "{what}: empty binary string (a value needs at least one byte)"
        )));
    }
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    let too_wide = || {
        RpcError::out_of_range(format!(
            "{what}: value 0x{} does not fit in {bits} bits",
            hex(significant)
        ))
    };
    if significant.len() > 16 {
        return Err(too_wide());
    }
    let mut v: u128 = 0;
    for b in significant {
        v = (v << 8) | u128::from(*b);
    }
    if bits < 128 && v >> bits != 0 {
        return Err(too_wide());
    }
    Ok(v)
}

/// The canonical (shortest, at least one byte) binary string of `v`.
pub fn encode(v: u128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(15);
    bytes[start..].to_vec()
}

/// The all-ones value of a `bits`-wide field.
pub fn max_value(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// Lower-case hex of `bytes`, for messages.
pub fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "0".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn d(b: &[u8], bits: u32) -> Result<u128, Code> {
        decode(b, bits, &"field").map_err(|e| e.code)
    }

    #[test]
    fn accepts_the_specification_examples() {
        assert_eq!(d(b"\x63", 8), Ok(99));
        assert_eq!(d(b"\x00\x63", 16), Ok(99));
        assert_eq!(d(b"\x30\x64", 16), Ok(0x3064));
        assert_eq!(d(b"\x00\x30\x64", 16), Ok(0x3064));
        assert_eq!(d(b"\x00\x00\x63", 12), Ok(99));
        assert_eq!(d(b"\x00", 1), Ok(0));
        assert_eq!(d(&[0u8; 40], 9), Ok(0));
        assert_eq!(d(&[0xff; 16], 128), Ok(u128::MAX));
        let mut padded = vec![0u8; 4];
        padded.extend_from_slice(&[0xff; 16]);
        assert_eq!(d(&padded, 128), Ok(u128::MAX));
    }

    #[test]
    fn refuses_the_specification_counterexamples() {
        assert_eq!(d(b"\x01\x63", 8), Err(Code::OutOfRange));
        assert_eq!(d(b"", 8), Err(Code::OutOfRange));
        assert_eq!(d(b"\x01\x00\x63", 16), Err(Code::OutOfRange));
        assert_eq!(d(b"\x10\x63", 12), Err(Code::OutOfRange));
        assert_eq!(d(b"\x00\x40\x63", 12), Err(Code::OutOfRange));
        assert_eq!(d(b"\x02\x00", 9), Err(Code::OutOfRange));
        assert_eq!(d(&[1u8; 17], 128), Err(Code::OutOfRange));
    }

    #[test]
    fn encodes_the_shortest_string() {
        assert_eq!(encode(0), vec![0]);
        assert_eq!(encode(99), vec![0x63]);
        assert_eq!(encode(0x3064), vec![0x30, 0x64]);
        assert_eq!(encode(0x100), vec![1, 0]);
        assert_eq!(encode(u128::MAX), vec![0xff; 16]);
        for v in [0u128, 1, 255, 256, 0xdead_beef, u128::MAX >> 1] {
            assert_eq!(decode(&encode(v), 128, &"x").unwrap(), v);
        }
    }
}
