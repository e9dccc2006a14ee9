//! The x86 software dataplane.
//!
//! * [`engine`]: the forwarding pipeline (parse → L3 admit → pre-ingress ACL → LPM →
//!   next hop / weighted group → neighbor rewrite → router-interface egress → ingress
//!   ACL → TTL/checksum), compiled from a `nos_core::ForwardingState` into immutable
//!   [`engine::Tables`].
//! * [`afpacket`]: packet I/O on Linux interfaces with AF_PACKET sockets.
//! * [`backend`]: the in-process `nos_core::Backend` that compiles deltas into tables,
//!   publishes them to the forwarding thread without locks, and runs packet I/O.
//! * [`tun`]: the TUN device that gives the router's own addresses to the kernel
//!   (its host interface, for BGP's TCP and pings to the router).
//! * [`p4rt`]: the dataplane as a P4Runtime target (the `nos.p4` P4Info), served
//!   over gRPC by the `nos-p4rt-target` binary.

pub mod afpacket;
pub mod backend;
pub mod engine;
mod hugepages;
pub mod p4rt;
pub mod tun;

pub use backend::{PortResolver, X86Backend};
