//! AS_PATH and AS4_PATH (RFC 4271 section 4.3, RFC 5065 section 3, RFC 6793).
//!
//! bgp-rs is not used for these: it guesses 2- or 4-octet AS numbers from the
//! bytes (the width depends on the negotiated capability), knows no
//! confederation segments and writes 2-octet numbers whenever every AS fits.

use super::EncodeError;
use crate::bgp::msg::{AsSegment, AS_TRANS};

const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;
const AS_CONFED_SEQUENCE: u8 = 3;
const AS_CONFED_SET: u8 = 4;

/// Most AS numbers one segment can carry (the count is one octet).
const MAX_SEGMENT_ASNS: usize = 255;

/// Decodes a path of `width`-octet AS numbers (2 or 4). An error names what is
/// malformed (RFC 7606 section 7.2).
pub(super) fn parse(mut v: &[u8], four_octet: bool) -> Result<Vec<AsSegment>, String> {
    let width = if four_octet { 4 } else { 2 };
    let mut segments: Vec<AsSegment> = Vec::with_capacity(1);
    while !v.is_empty() {
        let Some((&[kind, count], rest)) = v.split_first_chunk::<2>() else {
            return Err("a single octet left where a segment header should be".into());
        };
        if count == 0 {
            return Err("segment of length zero".into());
        }
        let (asn_bytes, rest) = rest
            .split_at_checked(usize::from(count) * width)
            .ok_or_else(|| format!("segment of {count} ASes overruns the attribute"))?;
        let asns: Vec<u32> = if four_octet {
            asn_bytes
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            asn_bytes
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        };
        let segment = match kind {
            AS_SET => AsSegment::Set(asns),
            AS_SEQUENCE => AsSegment::Sequence(asns),
            AS_CONFED_SEQUENCE => AsSegment::ConfedSequence(asns),
            AS_CONFED_SET => AsSegment::ConfedSet(asns),
            other => return Err(format!("unknown segment type {other}")),
        };
        push(&mut segments, segment);
        v = rest;
    }
    Ok(segments)
}

/// Appends a segment, joining it to the previous one when both are sequences of
/// the same kind (a path longer than 255 ASes arrives split; one segment
/// is the canonical form).
pub(super) fn push(segments: &mut Vec<AsSegment>, segment: AsSegment) {
    match (segments.last_mut(), segment) {
        (Some(AsSegment::Sequence(prev)), AsSegment::Sequence(next))
        | (Some(AsSegment::ConfedSequence(prev)), AsSegment::ConfedSequence(next)) => {
            prev.extend(next)
        }
        (_, segment) => {
            if !asns(&segment).is_empty() {
                segments.push(segment)
            }
        }
    }
}

pub(super) fn asns(segment: &AsSegment) -> &[u32] {
    match segment {
        AsSegment::Sequence(v)
        | AsSegment::Set(v)
        | AsSegment::ConfedSequence(v)
        | AsSegment::ConfedSet(v) => v,
    }
}

pub(super) fn is_confed(segment: &AsSegment) -> bool {
    matches!(
        segment,
        AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_)
    )
}

/// Path length as RFC 6793 section 4.2.3 counts it: a set counts one,
/// confederation segments count nothing.
pub(super) fn count(segments: &[AsSegment]) -> usize {
    segments
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
        })
        .sum()
}

/// Whether a 2-octet encoding of this path loses information (some AS above
/// 65535 outside confederation segments, which AS4_PATH never carries).
pub(super) fn needs_as4_path(segments: &[AsSegment]) -> bool {
    segments
        .iter()
        .filter(|s| !is_confed(s))
        .any(|s| asns(s).iter().any(|&a| a > u32::from(u16::MAX)))
}

/// Rebuilds the path from AS_PATH and AS4_PATH (RFC 6793 section 4.2.3): when
/// AS_PATH is not shorter, its leading ASes (all but as many as AS4_PATH
/// holds) followed by AS4_PATH; otherwise AS_PATH alone.
pub(super) fn merge_as4(as_path: Vec<AsSegment>, as4_path: Vec<AsSegment>) -> Vec<AsSegment> {
    let n_as = count(&as_path);
    let n_as4 = count(&as4_path);
    if n_as < n_as4 {
        return as_path;
    }
    let mut keep = n_as - n_as4;
    let mut merged: Vec<AsSegment> = Vec::with_capacity(as_path.len() + as4_path.len());
    let mut cut = false;
    for segment in as_path {
        if cut {
            break;
        }
        match segment {
            AsSegment::Sequence(mut v) => {
                if keep == 0 {
                    cut = true;
                    continue;
                }
                if v.len() >= keep {
                    v.truncate(keep);
                    keep = 0;
                    cut = true;
                } else {
                    keep -= v.len();
                }
                push(&mut merged, AsSegment::Sequence(v));
            }
            AsSegment::Set(v) => {
                if keep == 0 {
                    cut = true;
                    continue;
                }
                keep -= 1;
                cut = keep == 0;
                push(&mut merged, AsSegment::Set(v));
            }
            // Counted as nothing: kept when they come before the cut.
            confed => push(&mut merged, confed),
        }
    }
    for segment in as4_path {
        push(&mut merged, segment);
    }
    merged
}

/// Writes the path segments (the attribute value). With `four_octet` false,
/// AS numbers above 65535 become AS_TRANS. Sequences longer than 255 ASes are
/// split; a set that long cannot be split without changing its meaning.
pub(super) fn write(
    out: &mut Vec<u8>,
    segments: &[AsSegment],
    four_octet: bool,
) -> Result<(), EncodeError> {
    for segment in segments {
        let (kind, list) = match segment {
            AsSegment::Set(v) => (AS_SET, v),
            AsSegment::Sequence(v) => (AS_SEQUENCE, v),
            AsSegment::ConfedSequence(v) => (AS_CONFED_SEQUENCE, v),
            AsSegment::ConfedSet(v) => (AS_CONFED_SET, v),
        };
        if list.len() > MAX_SEGMENT_ASNS && matches!(kind, AS_SET | AS_CONFED_SET) {
            return Err(EncodeError::AsSetTooLong(list.len()));
        }
        for chunk in list.chunks(MAX_SEGMENT_ASNS) {
            out.push(kind);
            // chunks() yields at most 255 elements.
            out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
            for &asn in chunk {
                if four_octet {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let two = u16::try_from(asn).unwrap_or(AS_TRANS);
                    out.extend_from_slice(&two.to_be_bytes());
                }
            }
        }
    }
    Ok(())
}

/// AS4_PATH content: the path without confederation segments (RFC 6793
/// section 3 forbids them there).
pub(super) fn without_confed(segments: &[AsSegment]) -> Vec<AsSegment> {
    segments.iter().filter(|s| !is_confed(s)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(v: &[u32]) -> AsSegment {
        AsSegment::Sequence(v.to_vec())
    }

    #[test]
    fn parse_two_and_four_octet() {
        let two = [2, 2, 0xfd, 0xe9, 0x5b, 0xa0];
        assert_eq!(parse(&two, false), Ok(vec![seq(&[65001, 23456])]));
        let four = [2, 1, 0, 1, 0x11, 0x70];
        assert_eq!(parse(&four, true), Ok(vec![seq(&[70000])]));
        // The same bytes are a different path at the other width.
        assert!(parse(&four, false).is_err());
    }

    #[test]
    fn parse_errors() {
        assert!(parse(&[2], false).is_err(), "underrun");
        assert!(parse(&[2, 0], false).is_err(), "zero length");
        assert!(parse(&[2, 2, 0, 1], false).is_err(), "overrun");
        assert!(parse(&[5, 1, 0, 1], false).is_err(), "bad type");
        assert_eq!(parse(&[], false), Ok(vec![]));
    }

    #[test]
    fn long_sequences_split_and_join() {
        let long: Vec<u32> = (1..=600).collect();
        let mut out = Vec::new();
        write(&mut out, &[seq(&long)], true).unwrap();
        assert_eq!(out.len(), 3 * 2 + 600 * 4);
        assert_eq!(parse(&out, true).unwrap(), vec![seq(&long)]);
        let set = AsSegment::Set(long);
        assert!(write(&mut Vec::new(), &[set], true).is_err());
    }

    #[test]
    fn merge_rfc6793() {
        // AS_PATH 65001 AS_TRANS AS_TRANS, AS4_PATH 70000 80000.
        let merged = merge_as4(
            vec![seq(&[65001, 23456, 23456])],
            vec![seq(&[70000, 80000])],
        );
        assert_eq!(merged, vec![seq(&[65001, 70000, 80000])]);
        // AS4_PATH longer than AS_PATH: ignored.
        let merged = merge_as4(vec![seq(&[65001])], vec![seq(&[70000, 80000])]);
        assert_eq!(merged, vec![seq(&[65001])]);
        // A set counts one; leading confederation segments stay.
        let merged = merge_as4(
            vec![
                AsSegment::ConfedSequence(vec![64512]),
                seq(&[1, 2]),
                AsSegment::Set(vec![3, 4]),
            ],
            vec![seq(&[70000]), AsSegment::Set(vec![3, 4])],
        );
        assert_eq!(
            merged,
            vec![
                AsSegment::ConfedSequence(vec![64512]),
                seq(&[1, 70000]),
                AsSegment::Set(vec![3, 4])
            ]
        );
    }
}
