//! The BGP-4 speaker.
//!
//! * [`msg`]: messages as typed values.
//! * [`codec`]: the one module that reads and writes BGP bytes (bgp-rs inside),
//!   including RFC 7606 error handling.
//! * [`session`]: one task per peer running the RFC 4271 state machine.
//! * [`speaker`]: the task owning Adj-RIB-In/Out and the Loc-RIB.
//! * [`policy`]: import and export policies.
//! * [`sharded`]: the hash map of the RIB's per-prefix tables.

pub mod codec;
pub mod md5;
pub mod msg;
pub mod policy;
pub mod session;
pub mod sharded;
pub mod speaker;
