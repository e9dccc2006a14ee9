//! The P4Runtime southbound of the NOS.
//!
//! ```text
//! nos-core deltas ─► compile::Compiler ─► write (ordered batches) ─► client::Client ─gRPC─► target
//!                        ▲  ids by name                                  │ StreamChannel task:
//!                   p4info::Schema ◄── the P4Info the target reports      │ arbitration, packet-in
//! target's entries ─► canon (canonical keys) ─► reconcile::compare ─► repair writes
//! ```
//!
//! * [`bytes`]: canonical binary strings (shortest out, padded in, overflow
//!   refused).
//! * [`p4info`]: the P4Info name index and the [`p4info::Schema`] of every
//!   table, field, action, parameter and header field the controller uses,
//!   resolved by name; a P4Info lacking any of them is refused with an
//!   error naming each.
//! * [`compile`]: model objects, deltas and whole states → entities.
//! * [`canon`]: entities in canonical form, for comparing reads.
//! * [`client`]: the P4Runtime client (stream and arbitration, pipeline,
//!   Write with per-update errors, Read, packets).
//! * [`write`]: dependent updates in successive batches.
//! * [`reconcile`]: target vs model, and the updates that repair it.
//! * [`packet`]: packet-in/out controller headers.
//! * [`ports`]: port ids ↔ P4 port numbers.
//! * [`backend`]: [`P4RuntimeBackend`], the `nos_core::Backend`.

pub mod backend;
pub mod bytes;
pub mod canon;
pub mod client;
pub mod compile;
pub mod p4info;
pub mod packet;
pub mod ports;
pub mod reconcile;
pub mod write;

pub use backend::{AuditReport, Monitor, P4RuntimeBackend, P4RuntimeConfig, SessionState};
pub use client::{Client, ClientConfig, ClientError, Failover, Mastership, PipelineConfig};
pub use compile::{CloneSession, CompileError, Compiler};
pub use p4info::{P4Names, Schema, SchemaError};

/// The nos.p4 P4Info committed with the program (`programs/nos.p4info.txtpb`).
pub fn nos_p4info(
) -> Result<p4runtime_proto::p4::config::v1::P4Info, p4runtime_proto::text_format::TextFormatError>
{
    p4runtime_proto::text_format::p4info_from_text(include_str!("../programs/nos.p4info.txtpb"))
}
