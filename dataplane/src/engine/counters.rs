//! Why frames are dropped, and the per-thread counters of what the pipeline did.

use super::Verdict;
use nos_core::backend::PuntReason;

/// Why the pipeline dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// The frame ends before a header the pipeline needs (Ethernet, VLAN tag, IP
    /// header) or before the end of the IP packet its header announces.
    Truncated,
    /// Addressed to the router but neither IPv4 nor IPv6 (nor ARP).
    UnknownEthertype,
    /// No router interface for the ingress port and VLAN.
    NoRouterInterface,
    /// The ingress or egress router interface or port is administratively down.
    InterfaceDown,
    /// Unicast to a MAC address other than the ingress router interface's.
    NotForUs,
    /// Multicast or broadcast that is not ARP or neighbor discovery.
    Multicast,
    /// IP version, header length or total length is wrong.
    BadIpHeader,
    /// IPv4 header checksum is wrong.
    BadChecksum,
    /// No route in the VRF.
    NoRoute,
    /// The matching route drops (blackhole), or its group has no usable member.
    RouteDrop,
    /// An ACL rule dropped the packet.
    AclDrop,
    /// The IP packet is longer than the egress MTU.
    MtuExceeded,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 12;

    /// Every reason, in counter order (`ALL[r as usize] == r`).
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::UnknownEthertype,
        DropReason::NoRouterInterface,
        DropReason::InterfaceDown,
        DropReason::NotForUs,
        DropReason::Multicast,
        DropReason::BadIpHeader,
        DropReason::BadChecksum,
        DropReason::NoRoute,
        DropReason::RouteDrop,
        DropReason::AclDrop,
        DropReason::MtuExceeded,
    ];

    /// The reason in snake_case, as used in counter names.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::UnknownEthertype => "unknown_ethertype",
            DropReason::NoRouterInterface => "no_router_interface",
            DropReason::InterfaceDown => "interface_down",
            DropReason::NotForUs => "not_for_us",
            DropReason::Multicast => "multicast",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NoRoute => "no_route",
            DropReason::RouteDrop => "route_drop",
            DropReason::AclDrop => "acl_drop",
            DropReason::MtuExceeded => "mtu_exceeded",
        }
    }
}

/// Number of punt reasons.
pub const PUNT_COUNT: usize = 7;

/// Every punt reason, in counter order (`PUNT_REASONS[punt_index(r)] == r`).
pub const PUNT_REASONS: [PuntReason; PUNT_COUNT] = [
    PuntReason::Arp,
    PuntReason::NeighborDiscovery,
    PuntReason::ToMe,
    PuntReason::NeighborMiss,
    PuntReason::TtlExpired,
    PuntReason::AclTrap,
    PuntReason::AclCopy,
];

/// The slot of a punt reason in [`Counters::punts`].
pub fn punt_index(r: PuntReason) -> usize {
    match r {
        PuntReason::Arp => 0,
        PuntReason::NeighborDiscovery => 1,
        PuntReason::ToMe => 2,
        PuntReason::NeighborMiss => 3,
        PuntReason::TtlExpired => 4,
        PuntReason::AclTrap => 5,
        PuntReason::AclCopy => 6,
    }
}

/// A punt reason in snake_case, as used in counter names.
pub fn punt_name(r: PuntReason) -> &'static str {
    match r {
        PuntReason::Arp => "arp",
        PuntReason::NeighborDiscovery => "neighbor_discovery",
        PuntReason::ToMe => "to_me",
        PuntReason::NeighborMiss => "neighbor_miss",
        PuntReason::TtlExpired => "ttl_expired",
        PuntReason::AclTrap => "acl_trap",
        PuntReason::AclCopy => "acl_copy",
    }
}

/// What the pipeline did, frame by frame. Each forwarding thread keeps its own and
/// the backend sums them with [`Counters::add`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames forwarded (including those also copied to the CPU).
    pub forwarded: u64,
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Punts, indexed by [`punt_index`]. Copies of forwarded frames count under
    /// `AclCopy`.
    pub punts: [u64; PUNT_COUNT],
}

impl Counters {
    /// Counts one verdict.
    #[inline]
    pub fn record(&mut self, v: Verdict) {
        match v {
            Verdict::Forward { copy, .. } => {
                self.forwarded += 1;
                if copy {
                    self.punts[punt_index(PuntReason::AclCopy)] += 1;
                }
            }
            Verdict::Punt(r) => self.punts[punt_index(r)] += 1,
            Verdict::Drop(r) => self.drops[r as usize] += 1,
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.forwarded += other.forwarded;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.punts.iter_mut().zip(other.punts.iter()) {
            *a += b;
        }
    }

    /// Drops for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// Punts for one reason.
    pub fn punt_count(&self, r: PuntReason) -> u64 {
        self.punts[punt_index(r)]
    }

    /// Every counter with its name: `forwarded`, `drop.<reason>` and
    /// `punt.<reason>`, always the same list in the same order (zeros included).
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut v = Vec::with_capacity(1 + DropReason::COUNT + PUNT_COUNT);
        v.push(("forwarded".to_string(), self.forwarded));
        for r in DropReason::ALL {
            v.push((format!("drop.{}", r.name()), self.drops[r as usize]));
        }
        for r in PUNT_REASONS {
            v.push((format!("punt.{}", punt_name(r)), self.punts[punt_index(r)]));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_of_reasons_are_consistent() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in PUNT_REASONS.iter().enumerate() {
            assert_eq!(punt_index(*r), i);
        }
    }

    #[test]
    fn record_add_and_name() {
        let mut a = Counters::default();
        a.record(Verdict::Drop(DropReason::NoRoute));
        a.record(Verdict::Punt(PuntReason::Arp));
        a.record(Verdict::Forward {
            port: nos_core::PortId(1),
            copy: true,
        });
        let mut b = a.clone();
        b.add(&a);
        let named = b.named();
        let get = |n: &str| named.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("forwarded"), 2);
        assert_eq!(get("drop.no_route"), 2);
        assert_eq!(get("punt.arp"), 2);
        assert_eq!(get("punt.acl_copy"), 2);
        assert_eq!(get("drop.truncated"), 0);
        assert_eq!(named.len(), 1 + DropReason::COUNT + PUNT_COUNT);
    }
}
