//! End-to-end scenarios against real P4Runtime targets (bmv2 `simple_switch_grpc`
//! where installed, the x86 P4Runtime target always).
//!
//! Empty for now: the P4Runtime issue adds the scenarios. The x86 dataplane's
//! end-to-end test of the foundation lives in `nosd/tests/`.
