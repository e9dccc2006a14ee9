//! The interface every forwarding target implements.
//!
//! A backend is owned by exactly one task (see DESIGN.md), which hands it ordered
//! batches of deltas and gets back one result per delta. Packets travel between
//! the target and the control plane as [`PacketIn`] (punted by the target) and
//! [`PacketOut`] (sent by the control plane through a [`PacketSender`]).

use crate::diff::Delta;
use crate::model::{ForwardingState, PortId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The class of a backend failure, following the gRPC/P4Runtime codes where they fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    ResourceExhausted,
    Unsupported,
    Unavailable,
    /// Not attempted because an earlier update of the batch it depends on failed.
    Aborted,
    Internal,
}

/// A failure of one delta, or of the backend as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind:?}: {message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
}

impl BackendError {
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<crate::model::ModelError> for BackendError {
    fn from(e: crate::model::ModelError) -> Self {
        use crate::model::ModelError as M;
        let kind = match &e {
            M::AlreadyExists(_) => BackendErrorKind::AlreadyExists,
            M::NotFound(_) => BackendErrorKind::NotFound,
            M::MissingReference { .. } | M::InUse { .. } | M::Invalid { .. } => {
                BackendErrorKind::InvalidArgument
            }
        };
        BackendError::new(kind, e.to_string())
    }
}

/// What a target can do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// A short name for logs: `x86`, `p4runtime`, `sai`.
    pub target: String,
    /// Largest batch the target takes in one call.
    pub max_batch: usize,
    pub ipv6: bool,
    pub weighted_groups: bool,
    pub max_group_members: usize,
    pub vrfs: bool,
    /// The target punts packets to the control plane and sends packets from it.
    pub packet_io: bool,
}

/// Per-port packet counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    pub port: PortId,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_drops: u64,
    pub tx_drops: u64,
    pub rx_errors: u64,
}

/// A forwarding target.
pub trait Backend: Send {
    fn capabilities(&self) -> Capabilities;

    /// Applies `batch` in order and returns exactly one result per delta. A failed
    /// delta leaves the target as it was for that delta; later deltas are still
    /// attempted (those depending on a failed one fail in turn).
    fn apply(&mut self, batch: &[Delta]) -> Vec<Result<(), BackendError>>;

    /// Reads back everything the target has installed.
    fn read(&mut self) -> Result<ForwardingState, BackendError>;

    /// Packet counters per port, where the target keeps them.
    fn port_counters(&mut self) -> Vec<PortCounters> {
        Vec::new()
    }

    /// Named drop and punt counters, where the target keeps them.
    fn drop_counters(&mut self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// A handle for sending packets through the target, if it has packet I/O.
    fn packet_sender(&self) -> Option<PacketSender> {
        None
    }
}

/// Why a target handed a packet to the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PuntReason {
    Arp,
    NeighborDiscovery,
    /// Addressed to one of the router's own addresses.
    ToMe,
    /// Routed to a next hop whose neighbor is not resolved yet.
    NeighborMiss,
    /// TTL or hop limit would reach zero.
    TtlExpired,
    AclTrap,
    AclCopy,
}

/// A packet punted by the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketIn {
    /// The port the packet arrived on.
    pub port: PortId,
    pub reason: PuntReason,
    /// The frame as received (VLAN tags included).
    pub frame: Vec<u8>,
}

/// Where the control plane sends a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketDest {
    /// Out of this port, as is.
    Port(PortId),
    /// Through the forwarding pipeline as if received on this port.
    Ingress(PortId),
}

/// A packet from the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketOut {
    pub dest: PacketDest,
    pub frame: Vec<u8>,
}

/// A cloneable, thread-safe way to send packets through a target.
pub type PacketSender = Arc<dyn Fn(PacketOut) -> Result<(), BackendError> + Send + Sync>;

/// Where a target delivers punted packets.
pub type PacketInSink = Arc<dyn Fn(PacketIn) + Send + Sync>;
