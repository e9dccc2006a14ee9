//! The compiled snapshot the pipeline runs on.
//!
//! Everything that can be resolved ahead of time is: the ingress map gives a
//! router interface's MAC, VRF and up/down state in one hash lookup; routes point
//! into a small array of distinct actions; every next hop carries its complete
//! egress (port, MACs, VLAN tag, MTU, up/down) or is marked unresolved; weighted
//! groups are expanded into slot tables.

use super::acl::{self, Rule};
use super::counters::RouteClass;
use super::lpm::{Lpm4, Lpm6};
use nos_core::{
    AclStage, ForwardingState, GroupId, NextHopId, PortId, RifId, RifKind, RouteAction, VrfId,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Most slots a weighted group expands into; larger weight sums are scaled down.
pub const MAX_GROUP_SLOTS: u64 = 4096;

/// The splitmix64 finalizer: a cheap, well-mixing 64-bit hash.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fixed, fast hasher for integer keys on the packet path (the ingress
/// map, the workers' port counters).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = mix64(self.0 ^ x);
    }

    fn write_u32(&mut self, x: u32) {
        self.0 = mix64(self.0 ^ u64::from(x));
    }
}

/// A hash map with [`MixHasher`], for small integer keys on the packet path.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

/// The ingress map's key: the port and the outer VLAN tag (`0xffff` when untagged).
#[inline]
pub(crate) fn ingress_key(port: PortId, vlan: Option<u16>) -> u64 {
    (u64::from(port.0) << 16) | u64::from(vlan.unwrap_or(0xffff))
}

/// Untagged frames on ports numbered below this find their interface by
/// indexing an array; others (and tagged frames) through a hash map.
const DIRECT_PORTS: u32 = 4096;

/// Router interfaces by the (port, VLAN) frames arrive on.
#[derive(Clone, Debug, Default)]
pub(crate) struct IngressTable {
    /// Untagged frames, by port number (below [`DIRECT_PORTS`]).
    untagged: Vec<Option<Ingress>>,
    /// Everything else, by [`ingress_key`].
    other: FastMap<u64, Ingress>,
}

impl IngressTable {
    /// Adds `ing` for (`port`, `vlan`) unless that pair already has one.
    fn add_first(&mut self, port: PortId, vlan: Option<u16>, ing: Ingress) {
        if vlan.is_none() && port.0 < DIRECT_PORTS {
            let i = port.0 as usize;
            if self.untagged.len() <= i {
                self.untagged.resize(i + 1, None);
            }
            self.untagged[i].get_or_insert(ing);
        } else {
            self.other.entry(ingress_key(port, vlan)).or_insert(ing);
        }
    }

    #[inline]
    pub(crate) fn get(&self, port: PortId, vlan: Option<u16>) -> Option<&Ingress> {
        if vlan.is_none() && port.0 < DIRECT_PORTS {
            self.untagged.get(port.0 as usize)?.as_ref()
        } else {
            self.other.get(&ingress_key(port, vlan))
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.untagged.iter().flatten().count() + self.other.len()
    }
}

/// The router interface frames of one (port, VLAN) arrive on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ingress {
    pub rif: RifId,
    /// The interface's MAC as the low 48 bits (as `Eth::dst` holds it).
    pub mac: u64,
    /// Index of the interface's VRF in `Tables::vrfs`.
    pub vrf: u32,
    /// Both the interface and the port are administratively up.
    pub up: bool,
}

/// A route's action with its references resolved to indices. A next hop
/// and a group are both a range of `Tables::group_slots` (one slot for a
/// next hop), so the pipeline picks the egress the same way for both,
/// without a branch on which kind of route it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Action {
    /// What the route does (`Local`: to the CPU); also its counters' class.
    pub class: RouteClass,
    /// First slot of `Tables::group_slots` (each an index into
    /// `Tables::next_hops`) the flow hash picks from.
    pub start: u32,
    /// Number of slots; 0 for `Drop` and `Local`.
    pub len: u32,
}

impl Action {
    pub const DROP: Action = Action {
        class: RouteClass::Drop,
        start: 0,
        len: 0,
    };
    pub const TO_CPU: Action = Action {
        class: RouteClass::Local,
        start: 0,
        len: 0,
    };
}

/// Where and how a next hop's packets leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Egress {
    Resolved {
        port: PortId,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        /// The 802.1Q tag to send with, if any.
        vlan: Option<u16>,
        /// Largest IP packet that may leave: the smaller of the interface's and
        /// the port's MTU.
        mtu: u32,
        /// Both the egress interface and the port are administratively up.
        up: bool,
    },
    /// No neighbor entry (or, on a VLAN interface, no known member port for it).
    Unresolved,
}

/// The routes of one VRF.
#[derive(Clone, Debug, Default)]
pub(crate) struct VrfTables {
    pub v4: Lpm4,
    pub v6: Lpm6,
}

/// An immutable, compiled snapshot of a [`ForwardingState`], ready for
/// [`process`](super::process). Cheap to share between threads (`Send + Sync`).
#[derive(Clone)]
pub struct Tables {
    pub(crate) ingress: IngressTable,
    /// Route tables per VRF, in `vrf_ids` order.
    pub(crate) vrfs: Vec<VrfTables>,
    pub(crate) vrf_ids: Vec<VrfId>,
    /// Route actions; the route tables' values index into it.
    pub(crate) actions: Vec<Action>,
    pub(crate) group_slots: Vec<u32>,
    pub(crate) next_hops: Vec<Egress>,
    pub(crate) pre_ingress: acl::Stage,
    pub(crate) ingress_acl: acl::Stage,
    pub(super) routes: usize,
}

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tables")
            .field("ingress_keys", &self.ingress.len())
            .field("vrfs", &self.vrf_ids)
            .field("routes", &self.routes)
            .field("actions", &self.actions.len())
            .field("next_hops", &self.next_hops.len())
            .field("group_slots", &self.group_slots.len())
            .field("pre_ingress_rules", &self.pre_ingress.len())
            .field("ingress_rules", &self.ingress_acl.len())
            .field("lpm_bytes", &self.lpm_memory_bytes())
            .finish()
    }
}

impl Default for Tables {
    fn default() -> Self {
        Self::empty()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Slot counts for weights: reduced by their common divisor and, if the sum is
/// still above [`MAX_GROUP_SLOTS`], scaled down proportionally (every member
/// keeping at least one slot).
fn slot_counts(weights: &[u32]) -> Vec<u64> {
    let g = weights
        .iter()
        .fold(0u64, |g, &w| gcd(g, u64::from(w)))
        .max(1);
    let mut counts: Vec<u64> = weights.iter().map(|&w| u64::from(w) / g).collect();
    let total: u64 = counts.iter().sum();
    if total > MAX_GROUP_SLOTS {
        for c in counts.iter_mut() {
            *c = (*c * MAX_GROUP_SLOTS / total).max(1);
        }
    }
    counts
}

impl Tables {
    /// Tables that forward nothing: every frame is dropped with
    /// `NoRouterInterface`.
    pub fn empty() -> Tables {
        Tables {
            ingress: IngressTable::default(),
            vrfs: Vec::new(),
            vrf_ids: Vec::new(),
            actions: Vec::new(),
            group_slots: Vec::new(),
            next_hops: Vec::new(),
            pre_ingress: acl::Stage::default(),
            ingress_acl: acl::Stage::default(),
            routes: 0,
        }
    }

    /// Compiles a forwarding state from scratch.
    pub fn build(state: &ForwardingState) -> Tables {
        super::writer::TableWriter::new().compile(state)
    }

    /// Ingress map, next hops and ACLs; returns the VRF index.
    pub(super) fn compile_except_routes(
        &mut self,
        state: &ForwardingState,
    ) -> BTreeMap<VrfId, u32> {
        let t = self;

        // VRFs: every VRF the state knows (the model guarantees that every
        // interface and route refers to one of them).
        let mut vrf_index: BTreeMap<VrfId, u32> = BTreeMap::new();
        for v in state.vrfs().keys() {
            let n = vrf_index.len() as u32;
            vrf_index.insert(*v, n);
        }
        t.vrf_ids = vec![VrfId::DEFAULT; vrf_index.len()];
        for (&id, &i) in &vrf_index {
            t.vrf_ids[i as usize] = id;
        }

        // Ingress: the first interface in id order wins, as in
        // `ForwardingState::ingress_rif`.
        for r in state.rifs().values() {
            let port_up = |p: &PortId| state.ports().get(p).is_some_and(|p| p.admin_up);
            let vrf = vrf_index[&r.vrf];
            let mut add = |port: PortId, vlan: Option<u16>| {
                t.ingress.add_first(
                    port,
                    vlan,
                    Ingress {
                        rif: r.id,
                        mac: super::parse::mac_u64(r.mac.0),
                        vrf,
                        up: r.admin_up && port_up(&port),
                    },
                );
            };
            match &r.kind {
                RifKind::Port { port } => add(*port, None),
                RifKind::SubPort { port, vlan } => add(*port, Some(*vlan)),
                RifKind::Vlan { vlan, members } => {
                    for m in members {
                        add(m.port, if m.tagged { Some(*vlan) } else { None });
                    }
                }
            }
        }

        // Next hops with their egress resolved, in id order (see `next_hop_index`).
        for nh in state.next_hops().values() {
            t.next_hops.push(resolve(state, nh.rif, nh.ip));
        }

        // ACLs.
        let vi = |v: VrfId| vrf_index.get(&v).copied();
        let (mut pre, mut ing) = (Vec::new(), Vec::new());
        for r in state.acls().values() {
            let rule = Rule::compile(r, vi);
            match r.stage {
                AclStage::PreIngress => pre.push(rule),
                AclStage::Ingress => ing.push(rule),
            }
        }
        t.pre_ingress = acl::Stage::new(pre);
        t.ingress_acl = acl::Stage::new(ing);
        vrf_index
    }

    pub(super) fn compile_action(
        &mut self,
        state: &ForwardingState,
        action: RouteAction,
        nh_index: &HashMap<NextHopId, u32>,
        group_cache: &mut HashMap<GroupId, Action>,
    ) -> Action {
        match action {
            RouteAction::Drop => Action::DROP,
            RouteAction::ToCpu => Action::TO_CPU,
            RouteAction::NextHop(id) => nh_index.get(&id).map_or(Action::DROP, |&i| {
                let start = self.group_slots.len() as u32;
                self.group_slots.push(i);
                Action {
                    class: RouteClass::NextHop,
                    start,
                    len: 1,
                }
            }),
            RouteAction::Group(gid) => {
                if let Some(a) = group_cache.get(&gid) {
                    return *a;
                }
                let mut members: Vec<(u32, u32)> = state
                    .groups()
                    .get(&gid)
                    .map(|g| {
                        g.members
                            .iter()
                            .filter(|m| m.weight > 0)
                            .filter_map(|m| nh_index.get(&m.next_hop).map(|&i| (i, m.weight)))
                            .collect()
                    })
                    .unwrap_or_default();
                members.sort_unstable();
                let weights: Vec<u32> = members.iter().map(|m| m.1).collect();
                let start = self.group_slots.len() as u32;
                for (m, n) in members.iter().zip(slot_counts(&weights)) {
                    let end = self.group_slots.len() + n as usize;
                    self.group_slots.resize(end, m.0);
                }
                let len = self.group_slots.len() as u32 - start;
                let a = if len == 0 {
                    Action::DROP
                } else {
                    Action {
                        class: RouteClass::Group,
                        start,
                        len,
                    }
                };
                group_cache.insert(gid, a);
                a
            }
        }
    }

    /// The ingress entry for frames on `port` with outer tag `vlan`.
    #[inline]
    pub(crate) fn ingress(&self, port: PortId, vlan: Option<u16>) -> Option<&Ingress> {
        self.ingress.get(port, vlan)
    }

    /// The router interface that frames on `port` with outer tag `vlan` arrive on
    /// (the same answer as `ForwardingState::ingress_rif`).
    pub fn ingress_rif(&self, port: PortId, vlan: Option<u16>) -> Option<RifId> {
        self.ingress(port, vlan).map(|i| i.rif)
    }

    /// Whether any ACL rule copies packets to the CPU; the I/O layer then keeps
    /// each frame's received bytes, so the copy is the packet as it arrived.
    pub fn has_copy_rules(&self) -> bool {
        self.pre_ingress
            .rules()
            .iter()
            .chain(self.ingress_acl.rules())
            .any(|r| matches!(r.action, super::acl::RuleAction::Copy))
    }

    /// Number of routes compiled, over all VRFs.
    pub fn route_count(&self) -> usize {
        self.routes
    }

    /// Bytes used by the route tables of all VRFs.
    pub fn lpm_memory_bytes(&self) -> usize {
        self.vrfs
            .iter()
            .map(|v| v.v4.memory_bytes() + v.v6.memory_bytes())
            .sum()
    }
}

/// Resolves the egress of a next hop (`rif`, `ip`) against the neighbor table.
fn resolve(state: &ForwardingState, rif: RifId, ip: std::net::IpAddr) -> Egress {
    let Some(r) = state.rifs().get(&rif) else {
        return Egress::Unresolved;
    };
    let Some(n) = state.neighbors().get(&(rif, ip)) else {
        return Egress::Unresolved;
    };
    let (port, vlan) = match &r.kind {
        RifKind::Port { port } => (*port, None),
        RifKind::SubPort { port, vlan } => (*port, Some(*vlan)),
        RifKind::Vlan { vlan, members } => {
            let Some(m) = n.port.and_then(|p| members.iter().find(|m| m.port == p)) else {
                return Egress::Unresolved;
            };
            (m.port, m.tagged.then_some(*vlan))
        }
    };
    let p = state.ports().get(&port);
    Egress::Resolved {
        port,
        dst_mac: n.mac.0,
        src_mac: r.mac.0,
        vlan,
        mtu: p.map_or(r.mtu, |p| p.mtu.min(r.mtu)),
        up: r.admin_up && p.is_some_and(|p| p.admin_up),
    }
}

/// Each next hop's index in `Tables::next_hops` (they are pushed in id order).
pub(super) fn next_hop_index(state: &ForwardingState) -> HashMap<NextHopId, u32> {
    state
        .next_hops()
        .keys()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ing(rif: u32) -> Ingress {
        Ingress {
            rif: RifId(rif),
            mac: 0x0200_0000_0001,
            vrf: 0,
            up: true,
        }
    }

    #[test]
    fn ingress_by_port_array_and_by_map_keep_the_first_interface() {
        let mut t = IngressTable::default();
        let high = PortId(DIRECT_PORTS + 7);
        for (port, vlan, rif) in [
            (PortId(3), None, 1),
            (PortId(3), Some(10), 2),
            (high, None, 3),
            (PortId(3), None, 4),
            (high, None, 5),
            (PortId(0), None, 6),
        ] {
            t.add_first(port, vlan, ing(rif));
        }
        let rif = |port, vlan| t.get(port, vlan).map(|i| i.rif.0);
        assert_eq!(rif(PortId(3), None), Some(1));
        assert_eq!(rif(PortId(3), Some(10)), Some(2));
        assert_eq!(rif(high, None), Some(3));
        assert_eq!(rif(PortId(0), None), Some(6));
        assert_eq!(rif(PortId(2), None), None);
        assert_eq!(rif(PortId(3), Some(11)), None);
        assert_eq!(rif(PortId(9999), None), None);
        assert_eq!(t.len(), 4);
    }
}
