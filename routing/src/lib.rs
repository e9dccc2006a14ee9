//! Routing: the RIB across protocols and everything the control plane does on
//! its interfaces.
//!
//! * [`compile`]: connected, local and static routes and ACLs from the committed
//!   configuration plus learned neighbors, into the desired forwarding state.
//! * [`router`]: the task that owns that state and sends deltas down.
//! * [`host`]: the host stack task: ARP/ND, neighbor resolution, ICMP.
//!
//! BGP arrives with the routing issue and plugs in beside the static routes.

pub mod bgp;
pub mod compile;
pub mod host;
pub mod router;
