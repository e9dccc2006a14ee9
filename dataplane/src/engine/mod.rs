//! The forwarding pipeline.
//!
//! [`Tables::build`] compiles a `ForwardingState` into an immutable snapshot and
//! [`TableWriter`] keeps one up to date batch by batch, publishing each new
//! snapshot with an atomic pointer swap;
//! [`process`] runs one received frame through it and rewrites the frame in place
//! when it is forwarded. Per frame the pipeline does a handful of bounds-checked
//! header reads, one ingress interface lookup (an array index for untagged
//! frames, a hash lookup for tagged ones), one LPM lookup, the ACL rules that
//! can match the packet's protocol (none looked at when no rule can) and array
//! indexing; it allocates nothing (only pushing an 802.1Q tag may grow the
//! frame's buffer) and takes no lock.
//!
//! Stages, in order:
//! 1. Ethernet and at most one 802.1Q tag → ingress router interface (admin state).
//! 2. ARP → punt. 3. ICMPv6 neighbor discovery → punt.
//! 4. L3 admit: the destination MAC must be the interface's.
//! 5. IPv4/IPv6 header checks.
//! 6. Pre-ingress ACL (may select the VRF).
//! 7. LPM in the VRF (a drop route stops here).
//! 8. Ingress ACL; then a route to the router is punted, and a next hop or a
//!    weighted group's member is picked by a hash of the flow.
//! 9. TTL / hop limit.
//! 10. Neighbor and egress (port, VLAN tag, admin state, MTU).
//! 11. Rewrite: MACs, VLAN tag, TTL and IPv4 checksum.

mod acl;
mod counters;
pub mod lpm;
mod parse;
mod tables;
mod writer;

#[cfg(test)]
mod tests;

pub use counters::{
    punt_index, punt_name, ClassCounters, Counters, DropReason, RouteClass, PUNT_COUNT,
    PUNT_REASONS,
};
pub(crate) use tables::FastMap;
pub use tables::{Tables, MAX_GROUP_SLOTS};
pub use writer::TableWriter;

use acl::{AclPacket, RuleAction};
use nos_core::backend::PuntReason;
use nos_core::PortId;
use parse::{Addrs, Ip, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_VLAN, TAG_OFFSET};
use tables::{mix64, Egress};

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the rewritten frame out of `port`. If `copy` is true, the I/O layer also
    /// punts a copy (`AclCopy`) of the frame as it was received.
    Forward {
        port: PortId,
        copy: bool,
    },
    /// Hand the frame, unchanged, to the control plane.
    Punt(PuntReason),
    Drop(DropReason),
}

/// A frame the pipeline can rewrite in place: a `Vec<u8>`, or the data of a
/// packet buffer owned by the packet I/O layer (a DPDK mbuf), so that frames
/// need not be copied in and out of the pipeline.
pub trait Frame {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Shortens the frame to `len` bytes (nothing when it is not longer).
    fn truncate(&mut self, len: usize);
    /// Lengthens the frame to `len` bytes (the new bytes are unspecified);
    /// `false`, with the frame unchanged, when its buffer has no room.
    fn grow_to(&mut self, len: usize) -> bool;
    /// How many bytes the frame can grow by.
    fn room(&self) -> usize;
}

impl Frame for Vec<u8> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self
    }
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len)
    }
    #[inline]
    fn grow_to(&mut self, len: usize) -> bool {
        if len > self.len() {
            self.resize(len, 0);
        }
        true
    }
    #[inline]
    fn room(&self) -> usize {
        usize::MAX
    }
}

/// Runs one frame (as on the wire, with its 802.1Q tag if it had one) received on
/// `in_port` through the pipeline, rewriting it in place when it is forwarded, and
/// counts the verdict (and, for a frame that reached the route lookup, under
/// the class of route it found). A frame that is punted or dropped is left
/// unchanged.
pub fn process<F: Frame + ?Sized>(
    tables: &Tables,
    in_port: PortId,
    frame: &mut F,
    counters: &mut Counters,
) -> Verdict {
    let len = frame.bytes().len();
    let mut class = None;
    let v = match pipeline(tables, in_port, frame, &mut class) {
        Ok(v) | Err(v) => v,
    };
    match class {
        Some(c) => counters.record_routed(v, c, len),
        None => counters.record(v),
    }
    v
}

/// Loads what [`process`] will first need of `frame` (its headers and the
/// route table entry of its destination, in the VRF of the interface it
/// arrived on) without deciding anything; returns a value made of those
/// loads. A worker calls it for every frame of a burst before processing
/// them, so that the frames' cache misses overlap instead of each frame
/// waiting for its own in turn.
#[inline]
pub fn warm(tables: &Tables, in_port: PortId, frame: &[u8]) -> u32 {
    let mut eth = parse::Eth::default();
    if !parse::ethernet(frame, &mut eth) {
        return 0;
    }
    let Some(ing) = tables.ingress(in_port, eth.vlan().filter(|v| *v != 0)) else {
        return 0;
    };
    let Some(routes) = tables.vrfs.get(ing.vrf as usize) else {
        return 0;
    };
    let l3 = eth.l3;
    match eth.ether_type {
        ETH_IPV4 => frame.get(l3 + 16..l3 + 20).map_or(0, |d| {
            routes
                .v4
                .touch(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
        }),
        ETH_IPV6 => frame.get(l3 + 24..l3 + 40).map_or(0, |d| {
            let mut a = [0u8; 16];
            a.copy_from_slice(d);
            routes.v6.touch(u128::from_be_bytes(a))
        }),
        _ => 0,
    }
}

#[inline]
fn drop(r: DropReason) -> Verdict {
    Verdict::Drop(r)
}

/// The pipeline proper; early exits are `Err(verdict)`.
fn pipeline<F: Frame + ?Sized>(
    t: &Tables,
    in_port: PortId,
    frame: &mut F,
    class: &mut Option<RouteClass>,
) -> Result<Verdict, Verdict> {
    // 1. Ethernet, VLAN tag, ingress interface.
    let mut eth = parse::Eth::default();
    if !parse::ethernet(frame.bytes(), &mut eth) {
        return Err(drop(DropReason::Truncated));
    }
    let ing = *t
        // VLAN id 0 is a priority tag: such frames belong to the untagged interface.
        .ingress(in_port, eth.vlan().filter(|v| *v != 0))
        .ok_or(drop(DropReason::NoRouterInterface))?;
    if !ing.up {
        return Err(drop(DropReason::InterfaceDown));
    }

    // 2. ARP, whatever its destination MAC.
    if eth.ether_type == ETH_ARP {
        return Err(Verdict::Punt(PuntReason::Arp));
    }

    // 3. Neighbor discovery, unicast or multicast. (The IP header is parsed
    // in place: the pipeline reads its fields where the parser wrote them.)
    let mut ip = Ip::default();
    let parsed = match eth.ether_type {
        ETH_IPV4 => parse::ipv4(frame.bytes(), eth.l3, &mut ip),
        ETH_IPV6 => {
            let r = parse::ipv6(frame.bytes(), eth.l3, &mut ip);
            if r.is_ok() && ip.is_neighbor_discovery() {
                return Err(Verdict::Punt(PuntReason::NeighborDiscovery));
            }
            r
        }
        _ => Err(DropReason::UnknownEthertype),
    };

    // 4. L3 admit.
    if eth.dst != ing.mac {
        return Err(drop(if eth.is_multicast() {
            DropReason::Multicast
        } else {
            DropReason::NotForUs
        }));
    }

    // 5. IP header.
    parsed.map_err(drop)?;
    // The ACL key, built the first time a stage has a rule for the
    // packet's protocol.
    let mut key = None;
    let mut acl_key = || {
        *key.get_or_insert_with(|| {
            AclPacket {
                in_port,
                eth: &eth,
                ip: &ip,
            }
            .key()
        })
    };

    // 6. Pre-ingress ACL.
    let mut vrf = ing.vrf;
    let mut copy = false;
    let pre = if t.pre_ingress.may_match(ip.proto) {
        t.pre_ingress.first_match(&acl_key())
    } else {
        None
    };
    match pre {
        None | Some(RuleAction::Permit) => {}
        Some(RuleAction::Drop) => return Err(drop(DropReason::AclDrop)),
        Some(RuleAction::Trap) => return Err(Verdict::Punt(PuntReason::AclTrap)),
        Some(RuleAction::Copy) => copy = true,
        Some(RuleAction::SetVrf(v)) => vrf = v,
    }

    // 7. Route lookup.
    *class = Some(RouteClass::NoRoute);
    let routes = t.vrfs.get(vrf as usize).ok_or(drop(DropReason::NoRoute))?;
    let found = match ip.addrs {
        Addrs::V4 { dst, .. } => routes.v4.lookup(dst),
        Addrs::V6 { dst, .. } => routes.v6.lookup(dst),
    };
    let action = *found
        .and_then(|i| t.actions.get(i as usize))
        .ok_or(drop(DropReason::NoRoute))?;
    *class = Some(action.class);
    if action.class == RouteClass::Drop {
        return Err(drop(DropReason::RouteDrop));
    }

    // 8. Ingress ACL: it sees traffic to the router too, so rules can protect it.
    let ingress = if t.ingress_acl.may_match(ip.proto) {
        t.ingress_acl.first_match(&acl_key())
    } else {
        None
    };
    match ingress {
        None | Some(RuleAction::Permit) | Some(RuleAction::SetVrf(_)) => {}
        Some(RuleAction::Drop) => return Err(drop(DropReason::AclDrop)),
        Some(RuleAction::Trap) => return Err(Verdict::Punt(PuntReason::AclTrap)),
        Some(RuleAction::Copy) => copy = true,
    }
    if action.class == RouteClass::Local {
        return Err(Verdict::Punt(PuntReason::ToMe));
    }
    // A next hop is a group of one slot: the same pick, with no branch on
    // the kind of route.
    let pick = (u64::from(flow_hash(&ip)) * u64::from(action.len)) >> 32;
    let nh = *t
        .group_slots
        .get(action.start as usize + pick as usize)
        .ok_or(drop(DropReason::RouteDrop))?;

    // 9. TTL / hop limit (decremented below, once the frame is sure to leave).
    if ip.ttl <= 1 {
        return Err(Verdict::Punt(PuntReason::TtlExpired));
    }

    // 10. Neighbor and egress.
    let Some(Egress::Resolved {
        port,
        dst_mac,
        src_mac,
        vlan,
        mtu,
        up,
    }) = t.next_hops.get(nh as usize).copied()
    else {
        return Err(Verdict::Punt(PuntReason::NeighborMiss));
    };
    if !up {
        return Err(drop(DropReason::InterfaceDown));
    }
    if ip.len as u64 > u64::from(mtu) {
        return Err(drop(DropReason::MtuExceeded));
    }

    // A tag to push needs 4 bytes more than the frame without its padding.
    let end = eth.l3 + ip.len;
    if !eth.tagged
        && vlan.is_some()
        && frame
            .room()
            .saturating_add(frame.bytes().len().saturating_sub(end))
            < 4
    {
        return Err(drop(DropReason::MtuExceeded));
    }

    // 11. Rewrite. Trailing Ethernet padding is cut off first.
    frame.truncate(end);
    if ip.is_ipv6() {
        parse::ipv6_decrement_hop_limit(frame.bytes_mut(), eth.l3);
    } else {
        parse::ipv4_decrement_ttl(frame.bytes_mut(), eth.l3);
    }
    if let Some(m) = frame.bytes_mut().get_mut(0..12) {
        m[..6].copy_from_slice(&dst_mac);
        m[6..].copy_from_slice(&src_mac);
    }
    if eth.tagged || vlan.is_some() {
        set_vlan_tag(frame, eth.tagged.then_some(eth.tci as u16), vlan);
    }
    Ok(Verdict::Forward { port, copy })
}

/// Makes the frame's 802.1Q tag what the egress needs: `have` is the received
/// tag's TCI (if tagged), `want` the VLAN to send with (if any). A rewritten tag
/// keeps the received priority bits; a pushed tag has priority 0.
fn set_vlan_tag<F: Frame + ?Sized>(frame: &mut F, have: Option<u16>, want: Option<u16>) {
    match (have, want) {
        (None, None) => {}
        (Some(tci), Some(vid)) => {
            let tci = (tci & 0xf000) | (vid & 0x0fff);
            if let Some(b) = frame.bytes_mut().get_mut(TAG_OFFSET + 2..TAG_OFFSET + 4) {
                b.copy_from_slice(&tci.to_be_bytes());
            }
        }
        (None, Some(vid)) => {
            let len = frame.bytes().len();
            // The pipeline checked the room before rewriting the frame.
            if len < TAG_OFFSET || !frame.grow_to(len + 4) {
                return;
            }
            let f = frame.bytes_mut();
            f.copy_within(TAG_OFFSET..len, TAG_OFFSET + 4);
            if let Some(b) = f.get_mut(TAG_OFFSET..TAG_OFFSET + 4) {
                b[..2].copy_from_slice(&ETH_VLAN.to_be_bytes());
                b[2..].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            }
        }
        (Some(_), None) => {
            let len = frame.bytes().len();
            if len >= TAG_OFFSET + 4 {
                frame
                    .bytes_mut()
                    .copy_within(TAG_OFFSET + 4..len, TAG_OFFSET);
                frame.truncate(len - 4);
            }
        }
    }
}

/// A hash of the flow: addresses, protocol and L4 ports (when the packet carries
/// them). The same flow always hashes the same. For IPv4 the protocol and
/// ports are spread by a multiplication and folded into the addresses before
/// one finalizing mix.
#[inline(always)]
fn flow_hash(ip: &Ip) -> u32 {
    let ports = if ip.has & parse::HAS_PORTS != 0 {
        ip.port_pair
    } else {
        0
    };
    let l4 = u64::from(ip.proto) << 32 | u64::from(ports);
    let h = match ip.addrs {
        Addrs::V4 { src, dst } => {
            mix64((u64::from(src) << 32 | u64::from(dst)) ^ l4.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        }
        Addrs::V6 { src, dst } => {
            let h = mix64(src as u64 ^ mix64((src >> 64) as u64));
            let h = mix64(h ^ dst as u64);
            let h = mix64(h ^ (dst >> 64) as u64);
            mix64(h ^ l4)
        }
    };
    (h >> 32) as u32
}
