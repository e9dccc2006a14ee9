//! The x86 software dataplane.
//!
//! * [`engine`]: the forwarding pipeline (parse → L3 admit → pre-ingress ACL → LPM →
//!   next hop / weighted group → neighbor rewrite → router-interface egress → ingress
//!   ACL → TTL/checksum), compiled from a `nos_core::ForwardingState` into immutable
//!   [`engine::Tables`].
//! * [`afpacket`]: packet I/O on Linux interfaces with AF_PACKET sockets.
//! * `dpdk` (the `dpdk` feature): packet I/O through DPDK devices, frames kept
//!   in their mbufs from receive to transmit.
//! * [`backend`]: the in-process `nos_core::Backend` that compiles deltas into tables,
//!   publishes them to the forwarding workers without locks, and runs them over
//!   the packet I/O each port is bound to ([`backend::PacketIo`]).
//! * [`tun`]: the TUN device that gives the router's own addresses to the kernel
//!   (its host interface, for BGP's TCP and pings to the router).
//! * [`p4rt`]: the dataplane as a P4Runtime target (the `nos.p4` P4Info), served
//!   over gRPC by the `nos-p4rt-target` binary.

pub mod afpacket;
pub mod backend;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod engine;
mod hugepages;
pub mod p4rt;
pub mod tun;

pub use backend::{
    IoOptions, PortBinder, PortBinding, PortResolver, StartError, X86Backend, DPDK_BUILT,
};
