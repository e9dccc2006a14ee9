//! Packet-in and packet-out with the program's controller headers, by the
//! names the [`Schema`] resolved: `packet_in` carries `ingress_port` and
//! `punt_reason`; `packet_out` carries `egress_port`, `ingress_port` and
//! `submit_to_ingress` (every other field of the header is sent as 0).

use crate::bytes::{self, BytesError};
use crate::p4info::Schema;
use nos_core::backend::{PacketDest, PacketIn, PacketOut, PuntReason};
use nos_core::PortId;
use p4runtime_proto::p4::v1 as p4;

/// Why a packet-in could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet-in without the `{0}` metadata field")]
    Missing(&'static str),
    #[error(transparent)]
    Value(#[from] BytesError),
    #[error("packet-in: unknown punt reason {0}")]
    UnknownReason(u128),
    #[error("packet-in: port {0} is not a port number")]
    BadPort(u128),
}

/// The program's `punt_reason` codes.
pub fn punt_reason(code: u128) -> Option<PuntReason> {
    Some(match code {
        1 => PuntReason::Arp,
        2 => PuntReason::NeighborDiscovery,
        3 => PuntReason::ToMe,
        4 => PuntReason::NeighborMiss,
        5 => PuntReason::TtlExpired,
        6 => PuntReason::AclTrap,
        7 => PuntReason::AclCopy,
        _ => return None,
    })
}

/// Decodes a PacketIn with the `packet_in` header of `s`.
pub fn decode_packet_in(s: &Schema, p: &p4::PacketIn) -> Result<PacketIn, PacketError> {
    let h = &s.packet_in;
    let get = |f: &crate::p4info::FieldRef| -> Result<u128, PacketError> {
        let m = p
            .metadata
            .iter()
            .find(|m| m.metadata_id == f.id)
            .ok_or(PacketError::Missing(f.name))?;
        Ok(bytes::decode(
            &m.value,
            f.bits,
            &format!("packet_in.{}", f.name),
        )?)
    };
    let port = get(&h.ingress_port)?;
    let reason = get(&h.punt_reason)?;
    Ok(PacketIn {
        port: PortId(u32::try_from(port).map_err(|_| PacketError::BadPort(port))?),
        reason: punt_reason(reason).ok_or(PacketError::UnknownReason(reason))?,
        frame: p.payload.clone(),
    })
}

/// A PacketOut with the `packet_out` header of `s`.
pub fn encode_packet_out(s: &Schema, p: PacketOut) -> Result<p4::PacketOut, BytesError> {
    let h = &s.packet_out;
    let (egress, ingress, submit) = match p.dest {
        PacketDest::Port(port) => (u128::from(port.0), 0, 0),
        PacketDest::Ingress(port) => (0, u128::from(port.0), 1),
    };
    let metadata = h
        .all
        .iter()
        .map(|(id, bits)| {
            let (v, name) = if *id == h.egress_port.id {
                (egress, "egress_port")
            } else if *id == h.ingress_port.id {
                (ingress, "ingress_port")
            } else if *id == h.submit_to_ingress.id {
                (submit, "submit_to_ingress")
            } else {
                (0, "padding")
            };
            Ok(p4::PacketMetadata {
                metadata_id: *id,
                value: bytes::encode_checked(v, *bits, &format!("packet_out.{name}"))?,
            })
        })
        .collect::<Result<_, BytesError>>()?;
    Ok(p4::PacketOut {
        payload: p.frame,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4info::tests::nos_p4info;

    #[test]
    fn headers_by_name() {
        let s = Schema::from_p4info(&nos_p4info()).unwrap();
        let out = encode_packet_out(
            &s,
            PacketOut {
                dest: PacketDest::Ingress(PortId(3)),
                frame: vec![1, 2],
            },
        )
        .unwrap();
        let v = |id: u32| {
            out.metadata
                .iter()
                .find(|m| m.metadata_id == id)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(out.metadata.len(), 4, "every field, padding too");
        assert_eq!(v(s.packet_out.ingress_port.id), vec![3]);
        assert_eq!(v(s.packet_out.submit_to_ingress.id), vec![1]);
        assert_eq!(v(s.packet_out.egress_port.id), vec![0]);
        assert!(encode_packet_out(
            &s,
            PacketOut {
                dest: PacketDest::Port(PortId(600)),
                frame: vec![]
            }
        )
        .is_err());

        let pin = |meta: Vec<(u32, Vec<u8>)>| p4::PacketIn {
            payload: vec![9],
            metadata: meta
                .into_iter()
                .map(|(metadata_id, value)| p4::PacketMetadata { metadata_id, value })
                .collect(),
        };
        let (port, reason) = (s.packet_in.ingress_port.id, s.packet_in.punt_reason.id);
        let p = decode_packet_in(&s, &pin(vec![(port, vec![0, 2]), (reason, vec![4])])).unwrap();
        assert_eq!(p.port, PortId(2));
        assert_eq!(p.reason, PuntReason::NeighborMiss);
        assert_eq!(
            decode_packet_in(&s, &pin(vec![(port, vec![2])])),
            Err(PacketError::Missing("punt_reason"))
        );
        assert_eq!(
            decode_packet_in(&s, &pin(vec![(port, vec![2]), (reason, vec![99])])),
            Err(PacketError::UnknownReason(99))
        );
        assert!(matches!(
            decode_packet_in(&s, &pin(vec![(port, vec![2, 0]), (reason, vec![1])])),
            Err(PacketError::Value(_))
        ));
    }
}
