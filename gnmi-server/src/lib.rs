//! gNMI and gNOI management services on OpenConfig paths.
//!
//! Empty for now: the management issue fills this crate. Until then `nosctl` over
//! the local management socket is the only management interface.
