//! The forwarding-state model shared by every part of the NOS.
//!
//! * [`model`]: typed forwarding objects and [`model::ForwardingState`], which keeps
//!   references valid (no route to a missing group, no neighbor on a missing interface).
//! * [`diff`]: turns two states into an ordered list of [`diff::Delta`]s.
//! * [`backend`]: the [`backend::Backend`] trait every forwarding target implements.
//! * [`config`] and [`store`]: the YAML configuration model and its sled-backed store
//!   with numbered commits, history and rollback.

pub mod backend;
pub mod checksum;
pub mod config;
pub mod diff;
pub mod driver;
pub mod mac;
pub mod model;
pub mod store;

pub use backend::{Backend, BackendError, BackendErrorKind, Capabilities};
pub use diff::{diff, Delta};
pub use mac::MacAddr;
pub use model::*;
