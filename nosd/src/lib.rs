//! `nosd` (the daemon) and `nosctl` (its CLI): wiring only. The logic lives in
//! `nos-core`, `routing`, `dataplane` and `p4`; this crate connects their tasks
//! ([`daemon`]), speaks the local management protocol ([`api`], [`client`]),
//! renders tables ([`render`]) and builds network-namespace labs ([`lab`]) for
//! `nosd demo` and the end-to-end tests, and serves gNMI on the daemon's
//! state ([`gnmi`]); [`p4rt`] starts the P4Runtime backend.

pub mod api;
pub mod client;
pub mod daemon;
pub mod demo;
pub mod gnmi;
pub mod hostif;
pub mod lab;
pub mod p4rt;
pub mod render;
