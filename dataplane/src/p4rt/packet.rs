//! Packet-in and packet-out: the controller headers of the contract
//! (`packet_in`: ingress_port, punt_reason; `packet_out`: egress_port,
//! ingress_port, submit_to_ingress) and the relay that hands punted packets
//! to the primary controller's stream.
//!
//! The relay is what the dataplane's I/O thread calls for every punt, so it
//! takes one short lock and never blocks: a controller whose stream is
//! backed up loses packet-ins (counted), not the dataplane its pace.

use super::arbitration::StreamId;
use super::bitstring;
use super::contract::{MetaField, MetaRole};
use super::error::RpcError;
use nos_core::backend::{PacketDest, PacketIn, PacketInSink, PacketOut, PacketSender, PuntReason};
use nos_core::PortId;
use p4runtime_proto::p4::v1 as p4;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tonic::Status;

/// A message for a controller's stream.
pub type StreamItem = Result<p4::StreamMessageResponse, Status>;

/// How many packet-ins may wait for one controller before more are dropped.
pub const PACKET_IN_QUEUE: usize = 4096;

/// Where the messages for one controller go.
#[derive(Clone, Debug)]
pub struct StreamHandle {
    /// Arbitration updates and stream errors (never dropped).
    pub ctl: mpsc::UnboundedSender<StreamItem>,
    /// Packet-ins (dropped when full).
    pub pkt: mpsc::Sender<StreamItem>,
}

/// What packet I/O needs, apart from the rest of the target so that neither
/// the dataplane's punts nor the controllers' packet-outs wait for a write.
#[derive(Default)]
pub struct IoState {
    pub controllers: HashMap<StreamId, StreamHandle>,
    pub primaries: BTreeSet<StreamId>,
    /// The header fields of the current pipeline (none before one is set).
    pub packet_in: Option<Vec<MetaField>>,
    pub packet_out: Option<Vec<MetaField>>,
    pub ports: BTreeSet<u32>,
    pub sender: Option<PacketSender>,
    /// Packet-ins dropped because no controller could take them.
    pub dropped: u64,
}

impl std::fmt::Debug for IoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoState")
            .field("controllers", &self.controllers.len())
            .field("primaries", &self.primaries)
            .field("pipeline", &self.packet_in.is_some())
            .field("ports", &self.ports)
            .field("sender", &self.sender.is_some())
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Hands the dataplane's punted packets to the primary controller. Create
/// it first, give [`PacketInRelay::sink`] to the dataplane
/// (`X86Backend::start`), then the relay to the server.
#[derive(Clone, Debug, Default)]
pub struct PacketInRelay {
    pub(crate) io: Arc<Mutex<IoState>>,
}

pub(crate) fn lock(io: &Mutex<IoState>) -> MutexGuard<'_, IoState> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

impl PacketInRelay {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sink the dataplane delivers punted packets to.
    pub fn sink(&self) -> PacketInSink {
        let io = self.io.clone();
        Arc::new(move |p: PacketIn| deliver(&io, &p))
    }

    /// Packet-ins dropped so far (no pipeline, no primary, or its stream full).
    pub fn dropped(&self) -> u64 {
        lock(&self.io).dropped
    }
}

fn deliver(io: &Mutex<IoState>, p: &PacketIn) {
    let mut io = lock(io);
    let msg = match (&io.packet_in, io.primaries.is_empty()) {
        (Some(fields), false) => encode_packet_in(fields, p),
        _ => {
            io.dropped += 1;
            return;
        }
    };
    let mut lost = 0;
    for s in &io.primaries {
        let delivered = io.controllers.get(s).is_some_and(|h| {
            h.pkt
                .try_send(Ok(p4::StreamMessageResponse {
                    update: Some(p4::stream_message_response::Update::Packet(msg.clone())),
                }))
                .is_ok()
        });
        if !delivered {
            lost += 1;
        }
    }
    io.dropped += lost;
}

/// The `punt_reason` code of the contract.
pub fn punt_code(r: PuntReason) -> u128 {
    match r {
        PuntReason::Arp => 1,
        PuntReason::NeighborDiscovery => 2,
        PuntReason::ToMe => 3,
        PuntReason::NeighborMiss => 4,
        PuntReason::TtlExpired => 5,
        PuntReason::AclTrap => 6,
        PuntReason::AclCopy => 7,
    }
}

/// A punted packet as a PacketIn: one metadata value per header field, in
/// P4Info order (padding and unknown fields 0).
pub fn encode_packet_in(fields: &[MetaField], p: &PacketIn) -> p4::PacketIn {
    p4::PacketIn {
        payload: p.frame.clone(),
        metadata: fields
            .iter()
            .map(|f| {
                let v = match f.role {
                    MetaRole::IngressPort => u128::from(p.port.0),
                    MetaRole::PuntReason => punt_code(p.reason),
                    _ => 0,
                };
                p4::PacketMetadata {
                    metadata_id: f.id,
                    value: bitstring::encode(v & bitstring::max_value(f.bits)),
                }
            })
            .collect(),
    }
}

/// A controller's PacketOut as a packet for the dataplane. Every field of
/// the `packet_out` header must be given exactly once (INVALID_ARGUMENT
/// otherwise, as the specification has it for stream errors), and the port
/// must be one of the target's.
pub fn decode_packet_out(
    fields: &[MetaField],
    ports: &BTreeSet<u32>,
    po: &p4::PacketOut,
) -> Result<PacketOut, RpcError> {
    let mut values: Vec<Option<u128>> = vec![None; fields.len()];
    for m in &po.metadata {
        let Some(i) = fields.iter().position(|f| f.id == m.metadata_id) else {
            return Err(RpcError::invalid(format!(
                "packet_out has no metadata field with id {}",
                m.metadata_id
            )));
        };
        if values[i].is_some() {
            return Err(RpcError::invalid(format!(
                "packet_out metadata {} is given twice",
                m.metadata_id
            )));
        }
        let v = bitstring::decode(
            &m.value,
            fields[i].bits,
            &format!("packet_out metadata {}", m.metadata_id),
        )
        .map_err(|e| RpcError::invalid(e.message))?;
        values[i] = Some(v);
    }
    let get = |role: MetaRole| -> Result<u128, RpcError> {
        let mut out = 0;
        for (f, v) in fields.iter().zip(values.iter()) {
            let Some(x) = v else {
                return Err(RpcError::invalid(format!(
                    "packet_out metadata {} is missing (every field must be given)",
                    f.id
                )));
            };
            if f.role == role {
                out = *x;
            }
        }
        Ok(out)
    };
    let submit = get(MetaRole::SubmitToIngress)? == 1;
    let port = if submit {
        get(MetaRole::IngressPort)?
    } else {
        get(MetaRole::EgressPort)?
    };
    let port = u32::try_from(port).unwrap_or(u32::MAX);
    if !ports.contains(&port) {
        return Err(RpcError::invalid(format!(
            "packet_out {} port {port} is not a port of this target",
            if submit { "ingress" } else { "egress" }
        )));
    }
    if po.payload.is_empty() {
        return Err(RpcError::invalid("packet_out has an empty payload"));
    }
    Ok(PacketOut {
        dest: if submit {
            PacketDest::Ingress(PortId(port))
        } else {
            PacketDest::Port(PortId(port))
        },
        frame: po.payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_fields() -> Vec<MetaField> {
        vec![
            MetaField {
                id: 1,
                bits: 9,
                role: MetaRole::EgressPort,
            },
            MetaField {
                id: 2,
                bits: 9,
                role: MetaRole::IngressPort,
            },
            MetaField {
                id: 3,
                bits: 1,
                role: MetaRole::SubmitToIngress,
            },
            MetaField {
                id: 4,
                bits: 5,
                role: MetaRole::Other,
            },
        ]
    }

    fn po(vals: &[(u32, &[u8])]) -> p4::PacketOut {
        p4::PacketOut {
            payload: vec![1, 2, 3],
            metadata: vals
                .iter()
                .map(|(id, v)| p4::PacketMetadata {
                    metadata_id: *id,
                    value: v.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn packet_out_metadata() {
        let ports: BTreeSet<u32> = [1, 2].into();
        let f = out_fields();
        let p = decode_packet_out(
            &f,
            &ports,
            &po(&[(1, &[2]), (2, &[0]), (3, &[0]), (4, &[0])]),
        )
        .unwrap();
        assert_eq!(p.dest, PacketDest::Port(PortId(2)));
        let p = decode_packet_out(
            &f,
            &ports,
            &po(&[(4, &[0]), (3, &[1]), (2, &[0, 1]), (1, &[0])]),
        )
        .unwrap();
        assert_eq!(p.dest, PacketDest::Ingress(PortId(1)));
        let bad = |m: &[(u32, &[u8])]| decode_packet_out(&f, &ports, &po(m)).unwrap_err().code;
        assert_eq!(
            bad(&[(1, &[2]), (2, &[0]), (3, &[0])]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            bad(&[(1, &[2]), (2, &[0]), (3, &[0]), (4, &[0]), (9, &[0])]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            bad(&[(1, &[7]), (2, &[0]), (3, &[0]), (4, &[0])]),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            bad(&[(1, &[2]), (2, &[0]), (3, &[2]), (4, &[0])]),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn packet_in_metadata() {
        let f = vec![
            MetaField {
                id: 1,
                bits: 9,
                role: MetaRole::IngressPort,
            },
            MetaField {
                id: 2,
                bits: 8,
                role: MetaRole::PuntReason,
            },
            MetaField {
                id: 3,
                bits: 7,
                role: MetaRole::Other,
            },
        ];
        let p = encode_packet_in(
            &f,
            &PacketIn {
                port: PortId(258),
                reason: PuntReason::TtlExpired,
                frame: vec![9],
            },
        );
        assert_eq!(p.payload, vec![9]);
        let m: Vec<(u32, Vec<u8>)> = p
            .metadata
            .into_iter()
            .map(|m| (m.metadata_id, m.value))
            .collect();
        assert_eq!(m, vec![(1, vec![1, 2]), (2, vec![5]), (3, vec![0])]);
    }
}
