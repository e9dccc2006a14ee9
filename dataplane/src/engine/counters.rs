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

/// The class of route a routed frame matched: what its route does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum RouteClass {
    /// No route in the VRF.
    NoRoute,
    /// A route to the router itself (its own addresses): to the CPU.
    Local,
    /// A blackhole route.
    Drop,
    /// A route to one next hop.
    NextHop,
    /// A route to a weighted group of next hops (ECMP or load share).
    Group,
}

impl RouteClass {
    pub const COUNT: usize = 5;
    pub const ALL: [RouteClass; RouteClass::COUNT] = [
        RouteClass::NoRoute,
        RouteClass::Local,
        RouteClass::Drop,
        RouteClass::NextHop,
        RouteClass::Group,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouteClass::NoRoute => "no_route",
            RouteClass::Local => "local",
            RouteClass::Drop => "drop",
            RouteClass::NextHop => "next_hop",
            RouteClass::Group => "group",
        }
    }
}

/// What happened to the frames of one route class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    /// Frames that reached the route lookup with this result.
    pub packets: u64,
    /// Their bytes, as received.
    pub bytes: u64,
    pub forwarded: u64,
    pub punted: u64,
    /// Drops after the lookup, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl ClassCounters {
    #[inline]
    fn record(&mut self, v: Verdict, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
        match v {
            Verdict::Forward { .. } => self.forwarded += 1,
            Verdict::Punt(_) => self.punted += 1,
            Verdict::Drop(r) => self.drops[r as usize] += 1,
        }
    }

    fn add(&mut self, o: &ClassCounters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.forwarded += o.forwarded;
        self.punted += o.punted;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
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
    /// Routed frames by the class of route they matched, indexed by
    /// `RouteClass as usize`.
    pub routes: [ClassCounters; RouteClass::COUNT],
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

    /// Counts one verdict on a frame of `len` bytes whose route lookup
    /// found a route of class `class`.
    #[inline]
    pub fn record_routed(&mut self, v: Verdict, class: RouteClass, len: usize) {
        self.record(v);
        self.routes[class as usize].record(v, len);
    }

    /// The counters of one route class.
    pub fn route_class(&self, c: RouteClass) -> &ClassCounters {
        &self.routes[c as usize]
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.routes.iter_mut().zip(other.routes.iter()) {
            a.add(b);
        }
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

    /// Every counter with its name: `forwarded`, `drop.<reason>`,
    /// `punt.<reason>`, and per route class `route.<class>.packets`,
    /// `.bytes`, `.forwarded`, `.punted` and `.drop.<reason>`; always the
    /// same list in the same order (zeros included).
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut v = Vec::with_capacity(Self::NAMED);
        v.push(("forwarded".to_string(), self.forwarded));
        for r in DropReason::ALL {
            v.push((format!("drop.{}", r.name()), self.drops[r as usize]));
        }
        for r in PUNT_REASONS {
            v.push((format!("punt.{}", punt_name(r)), self.punts[punt_index(r)]));
        }
        for c in RouteClass::ALL {
            let k = &self.routes[c as usize];
            let n = c.name();
            v.push((format!("route.{n}.packets"), k.packets));
            v.push((format!("route.{n}.bytes"), k.bytes));
            v.push((format!("route.{n}.forwarded"), k.forwarded));
            v.push((format!("route.{n}.punted"), k.punted));
            for r in DropReason::ALL {
                v.push((format!("route.{n}.drop.{}", r.name()), k.drops[r as usize]));
            }
        }
        v
    }

    /// How many counters [`Counters::named`] lists.
    pub const NAMED: usize =
        1 + DropReason::COUNT + PUNT_COUNT + RouteClass::COUNT * (4 + DropReason::COUNT);
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
        assert_eq!(named.len(), Counters::NAMED);
    }
}
