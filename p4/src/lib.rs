//! P4Runtime southbound: client, P4Info name resolution, the compiler from
//! forwarding-model deltas to table entries, and the P4 program.
//!
//! Empty for now: the P4Runtime issue fills this crate. Nothing here is usable yet,
//! and `nosd` offers no `p4runtime` backend until it is.
