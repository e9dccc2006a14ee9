//! The x86 dataplane as a P4Runtime target: a tonic `P4Runtime` server for
//! the P4Info of `p4/programs/nos.p4`, whose entries drive an
//! [`X86Backend`](crate::X86Backend) (or any `nos_core::Backend`).
//!
//! ```text
//! controller ──gRPC──► Server ── P4Info check (contract) ── Pipeline (ids)
//!                        │ Write: decode, validate, store entries
//!                        │        derive model objects ── shadow model
//!                        │        deltas ──► Backend::apply (one call per batch)
//!                        │ Read:  stored entries, canonical form
//!                        │ StreamChannel: arbitration, PacketOut ──► PacketSender
//!                        ◄── PacketIn ◄── PacketInRelay ◄── the dataplane's punts
//! ```
//!
//! * [`contract`]: the tables, actions and controller headers the target
//!   implements, by name, and the check of a pushed P4Info against them.
//! * [`bitstring`]: P4Runtime binary strings.
//! * `entry`: table entries in canonical form, to and from `TableEntry`.
//! * `state`: the installed entries and their translation into the
//!   forwarding model (which entries make which objects; see its docs).
//! * `arbitration`: primary election on the stream.
//! * `packet`: packet-in/out headers and the packet-in relay.
//! * `server`: the service, [`Server`].
//!
//! Error codes follow the P4Runtime specification: a batch with failed
//! updates returns UNKNOWN with one `p4.v1.Error` per update (OK for the
//! updates that succeeded). Within an update: an existing entry inserted
//! again is ALREADY_EXISTS; a missing entry modified or deleted is
//! NOT_FOUND; malformed entities, unknown ids and wrong match kinds are
//! INVALID_ARGUMENT; binary strings that are empty or wider than their
//! field are OUT_OF_RANGE; a reference to something not installed (a next
//! hop on a router interface without a `router_interface` entry, a route to
//! a missing next hop or group) is NOT_FOUND; removing something still used
//! is FAILED_PRECONDITION; legal P4Runtime the target cannot realize (masks
//! the engine cannot match, watch ports, member/group programming, ...) is
//! UNIMPLEMENTED. Updates are applied in request order.

mod arbitration;
pub mod bitstring;
pub mod contract;
mod entry;
pub mod error;
mod packet;
mod server;
mod state;

pub use error::RpcError;
pub use packet::PacketInRelay;
pub use server::{transport, Options, PortConfig, ResponseStream, Server, StartError};
