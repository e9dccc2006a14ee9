//! SAI southbound: the SAI C ABI, loading a vendor `libsai.so`, object-id
//! bookkeeping and the compiler from forwarding-model deltas to SAI calls.
//!
//! Empty for now: a later issue fills this crate. Nothing here is usable yet, and
//! `nosd` offers no `sai` backend until it is.
