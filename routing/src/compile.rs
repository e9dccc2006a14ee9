//! From a validated configuration and the learned neighbors to the desired
//! forwarding state: ports, VRFs, router interfaces, connected and local routes,
//! static routes, neighbor host routes and ACL rules.
//!
//! Ids are allocated by name (or by next-hop identity) and kept for the life of
//! the process, so a commit that changes one static route changes one route in
//! the diff, not every id in the table. Routes for the same prefix from several
//! sources are chosen by administrative distance (connected/local 0, static as
//! configured).

use crate::bgp::speaker::BgpRoute;
use ipnet::IpNet;
use nos_core::config::{
    parse_masked_mac, parse_protocol, AclActionConfig, Config, InterfaceConfig, DEFAULT_VRF,
};
use nos_core::model::*;
use nos_core::MacAddr;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

/// Hands out small integer ids that stay the same for the same key.
#[derive(Debug)]
struct IdMap<K> {
    ids: HashMap<K, u32>,
    next: u32,
}

impl<K: Hash + Eq> IdMap<K> {
    fn new(first: u32) -> Self {
        Self {
            ids: HashMap::new(),
            next: first,
        }
    }

    fn get(&mut self, k: K) -> u32 {
        let next = &mut self.next;
        *self.ids.entry(k).or_insert_with(|| {
            let id = *next;
            *next += 1;
            id
        })
    }

    /// Forgets the key of `id`, so the key gets a new id next time.
    fn forget(&mut self, id: u32) {
        self.ids.retain(|_, v| *v != id);
    }

    fn lookup(&self, k: &K) -> Option<u32> {
        self.ids.get(k).copied()
    }
}

/// A learned neighbor, as the host stack reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LearnedNeighbor {
    pub mac: MacAddr,
    pub port: Option<PortId>,
}

/// Where a route came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// An address of the router itself.
    Local,
    /// A subnet of one of the router's interfaces.
    Connected,
    /// A host route to a resolved neighbor on a connected subnet.
    Neighbor,
    Static,
    Ebgp,
    Ibgp,
}

/// One next hop of a RIB entry, for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RibNextHop {
    pub address: Option<IpAddr>,
    pub interface: String,
    pub weight: u32,
}

/// A selected route with where it came from, for `show routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RibEntry {
    pub vrf: String,
    pub prefix: IpNet,
    pub protocol: Protocol,
    pub distance: u8,
    pub next_hops: Vec<RibNextHop>,
    pub blackhole: bool,
}

/// A router interface as the host stack needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInterface {
    pub rif: RouterInterface,
    pub addresses: Vec<IpNet>,
}

/// The result of compiling: the desired state plus what the RIB and host stack show.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub state: ForwardingState,
    pub rib: Vec<RibEntry>,
    pub interfaces: Vec<HostInterface>,
    /// Every next hop, which the host stack resolves ahead of traffic.
    pub resolve: Vec<(RifId, IpAddr)>,
    /// The rank of the best non-BGP route per key, to decide BGP changes
    /// incrementally.
    pub base_ranks: HashMap<RouteKey, Rank>,
}

/// How routes for one key are ranked: lower wins.
pub type Rank = (bool, u8, Protocol);

/// Keeps the better of the routes offered for one key.
fn offer(candidates: &mut BTreeMap<RouteKey, Candidate>, key: RouteKey, c: Candidate) {
    match candidates.get(&key) {
        Some(old) if rank(old) <= rank(&c) => {}
        _ => {
            candidates.insert(key, c);
        }
    }
}

fn rank(c: &Candidate) -> Rank {
    (c.protocol == Protocol::Neighbor, c.distance, c.protocol)
}

/// How many BGP routes deep a next hop may be resolved through (a route
/// via a route via a route...); deeper chains are left unresolved.
pub const MAX_RECURSION: u8 = 4;

/// The prefixes covering `addr`, longest first, except `own` (the route
/// whose next hop is being resolved).
pub fn covering_prefixes(addr: IpAddr, own: IpNet) -> impl Iterator<Item = IpNet> {
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (0..=max)
        .rev()
        .filter_map(move |len| IpNet::new(addr, len).ok().map(|p| p.trunc()))
        .filter(move |p| *p != own)
}

/// Every address of prefix `p`, as a range of a map keyed by address.
pub fn addresses_of(p: IpNet) -> std::ops::RangeInclusive<IpAddr> {
    match p {
        IpNet::V4(n) => IpAddr::V4(n.network())..=IpAddr::V4(n.broadcast()),
        IpNet::V6(n) => IpAddr::V6(n.network())..=IpAddr::V6(n.broadcast()),
    }
}

/// The longest BGP route in `bgp` covering `addr`, other than the route for
/// `own`.
pub fn covering_route(
    bgp: &BTreeMap<IpNet, BgpRoute>,
    addr: IpAddr,
    own: IpNet,
) -> Option<&BgpRoute> {
    if bgp.is_empty() {
        return None;
    }
    covering_prefixes(addr, own).find_map(|p| bgp.get(&p))
}

/// Administrative distance and protocol of a BGP route.
pub fn bgp_rank(r: &BgpRoute) -> (u8, Protocol) {
    if r.ebgp {
        (20, Protocol::Ebgp)
    } else {
        (200, Protocol::Ibgp)
    }
}

/// The enabled default-VRF interface whose subnet holds `nh`.
pub fn connected(interfaces: &[HostInterface], nh: IpAddr) -> Option<&HostInterface> {
    interfaces
        .iter()
        .filter(|h| h.rif.vrf == VrfId::DEFAULT && h.rif.admin_up)
        .find(|h| {
            h.addresses
                .iter()
                .any(|a| a.contains(&nh) && a.addr() != nh)
        })
}

/// Compilation failures. A validated configuration should never produce one;
/// they exist so that an inconsistency is reported, not panicked on.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Config(String),
}

/// Compiles configurations into forwarding states, keeping ids stable across calls.
#[derive(Debug)]
pub struct Compiler {
    ports: IdMap<String>,
    vrfs: IdMap<String>,
    rifs: IdMap<String>,
    next_hops: IdMap<(RifId, IpAddr)>,
    /// Groups by (members, backup members); the backup is empty except for BGP
    /// path lists.
    groups: IdMap<(Vec<GroupMember>, Vec<GroupMember>)>,
    /// The backup members of BGP path-list groups, for fast failover.
    group_backups: HashMap<GroupId, Vec<GroupMember>>,
    /// Groups created for BGP path lists (static ECMP groups are not rewritten
    /// on failover: their members come from the configuration).
    bgp_groups: std::collections::HashSet<GroupId>,
    /// Static routes of the default VRF (prefix, next hops) from the last
    /// compile, for recursive resolution of BGP next hops.
    statics: Vec<(IpNet, Vec<IpAddr>)>,
    acls: IdMap<String>,
}

impl Default for Compiler {
    fn default() -> Self {
        Self::new()
    }
}

struct Candidate {
    distance: u8,
    protocol: Protocol,
    action: RouteAction,
    next_hops: Vec<RibNextHop>,
}

impl Compiler {
    pub fn new() -> Self {
        let mut vrfs = IdMap::new(1);
        vrfs.ids.insert(DEFAULT_VRF.to_string(), VrfId::DEFAULT.0);
        Self {
            ports: IdMap::new(1),
            vrfs,
            rifs: IdMap::new(1),
            next_hops: IdMap::new(1),
            groups: IdMap::new(1),
            group_backups: HashMap::new(),
            bgp_groups: std::collections::HashSet::new(),
            statics: Vec::new(),
            acls: IdMap::new(1),
        }
    }

    /// The id of a configured port, if it was ever compiled.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports.lookup(&name.to_string()).map(PortId)
    }

    pub fn compile(
        &mut self,
        config: &Config,
        neighbors: &BTreeMap<(RifId, IpAddr), LearnedNeighbor>,
        bgp: &BTreeMap<IpNet, BgpRoute>,
    ) -> Result<Compiled, CompileError> {
        let mut s = ForwardingState::new();
        self.statics = config
            .static_routes
            .iter()
            .filter(|r| r.vrf_name() == DEFAULT_VRF && !r.blackhole)
            .map(|r| (r.prefix, r.next_hops.iter().map(|n| n.address).collect()))
            .collect();
        let vrf_names: HashMap<VrfId, String> = std::iter::once(DEFAULT_VRF.to_string())
            .chain(config.vrfs.iter().map(|v| v.name.clone()))
            .map(|n| (VrfId(self.vrfs.get(n.clone())), n))
            .collect();
        for (id, name) in &vrfs_sorted(&vrf_names) {
            s.upsert(Object::Vrf(Vrf {
                id: *id,
                name: name.clone(),
            }))?;
        }
        let mut port_mtu = HashMap::new();
        for p in &config.ports {
            let id = PortId(self.ports.get(p.name.clone()));
            port_mtu.insert(p.name.as_str(), p.mtu);
            s.upsert(Object::Port(Port {
                id,
                name: p.name.clone(),
                mtu: p.mtu,
                admin_up: p.enabled,
            }))?;
        }
        let router_mac = config.router_mac();
        let mut interfaces = Vec::new();
        let mut rif_by_name = HashMap::new();
        for i in &config.interfaces {
            let rif = self.rif(config, i, router_mac, &port_mtu)?;
            rif_by_name.insert(i.name.clone(), rif.clone());
            s.upsert(Object::from(rif.clone()))?;
            interfaces.push(HostInterface {
                rif,
                addresses: i.addresses().collect(),
            });
        }

        let mut candidates: BTreeMap<RouteKey, Candidate> = BTreeMap::new();
        // Lower distance wins; a neighbor host route (an artifact of resolving a
        // connected subnet) yields to any route configured or learned for the
        // same prefix, whatever its distance.

        // Local and connected routes: both go to the CPU. For a subnet that means
        // "glean": the host stack resolves the destination and queues the packet.
        for hi in &interfaces {
            // Link-local addresses are per link: they never enter the VRF's table.
            for addr in hi.addresses.iter().filter(|a| !is_link_local(a.addr())) {
                let host = IpNet::new(addr.addr(), addr.max_prefix_len())
                    .map_err(|e| CompileError::Config(e.to_string()))?;
                let on_if = vec![RibNextHop {
                    address: None,
                    interface: hi.rif.name.clone(),
                    weight: 1,
                }];
                offer(
                    &mut candidates,
                    RouteKey {
                        vrf: hi.rif.vrf,
                        prefix: host,
                    },
                    Candidate {
                        distance: 0,
                        protocol: Protocol::Local,
                        action: RouteAction::ToCpu,
                        next_hops: on_if.clone(),
                    },
                );
                if addr.prefix_len() < addr.max_prefix_len() {
                    offer(
                        &mut candidates,
                        RouteKey {
                            vrf: hi.rif.vrf,
                            prefix: addr.trunc(),
                        },
                        Candidate {
                            distance: 0,
                            protocol: Protocol::Connected,
                            action: RouteAction::ToCpu,
                            next_hops: on_if,
                        },
                    );
                }
            }
        }

        // Resolved neighbors on connected subnets: neighbor entry, next hop, host route.
        for ((rif_id, ip), n) in neighbors {
            let Some(hi) = interfaces.iter().find(|h| h.rif.id == *rif_id) else {
                continue;
            };
            if let Some(p) = n.port {
                if !hi.rif.ports().contains(&p) {
                    continue;
                }
            }
            s.upsert(Object::Neighbor(Neighbor {
                rif: *rif_id,
                ip: *ip,
                mac: n.mac,
                port: n.port,
            }))?;
            let on_subnet = hi
                .addresses
                .iter()
                .any(|a| a.contains(ip) && a.addr() != *ip);
            if !on_subnet || is_link_local(*ip) {
                continue;
            }
            let nh = self.next_hop(&mut s, *rif_id, *ip)?;
            offer(
                &mut candidates,
                RouteKey {
                    vrf: hi.rif.vrf,
                    prefix: IpNet::from(*ip),
                },
                Candidate {
                    distance: 0,
                    protocol: Protocol::Neighbor,
                    action: RouteAction::NextHop(nh),
                    next_hops: vec![RibNextHop {
                        address: Some(*ip),
                        interface: hi.rif.name.clone(),
                        weight: 1,
                    }],
                },
            );
        }

        let mut resolve = Vec::new();
        for r in &config.static_routes {
            let vrf = VrfId(self.vrfs.get(r.vrf_name().to_string()));
            let key = RouteKey {
                vrf,
                prefix: r.prefix,
            };
            if r.blackhole {
                offer(
                    &mut candidates,
                    key,
                    Candidate {
                        distance: r.distance,
                        protocol: Protocol::Static,
                        action: RouteAction::Drop,
                        next_hops: Vec::new(),
                    },
                );
                continue;
            }
            let mut members = Vec::new();
            let mut shown = Vec::new();
            for nh in &r.next_hops {
                let hi = match &nh.interface {
                    Some(name) => interfaces.iter().find(|h| &h.rif.name == name),
                    None => interfaces
                        .iter()
                        .filter(|h| h.rif.vrf == vrf)
                        .find(|h| h.addresses.iter().any(|a| a.contains(&nh.address))),
                };
                let Some(hi) = hi else {
                    return Err(CompileError::Config(format!(
                        "static route {}: next hop {} is not on any interface",
                        r.prefix, nh.address
                    )));
                };
                let id = self.next_hop(&mut s, hi.rif.id, nh.address)?;
                resolve.push((hi.rif.id, nh.address));
                members.push(GroupMember {
                    next_hop: id,
                    weight: nh.weight,
                });
                shown.push(RibNextHop {
                    address: Some(nh.address),
                    interface: hi.rif.name.clone(),
                    weight: nh.weight,
                });
            }
            let action = if members.len() == 1 {
                RouteAction::NextHop(members[0].next_hop)
            } else {
                members.sort();
                let gid = GroupId(self.groups.get((members.clone(), Vec::new())));
                if !s.contains(&ObjectKey::Group(gid)) {
                    s.upsert(Object::Group(NextHopGroup { id: gid, members }))?;
                }
                RouteAction::Group(gid)
            };
            offer(
                &mut candidates,
                key,
                Candidate {
                    distance: r.distance,
                    protocol: Protocol::Static,
                    action,
                    next_hops: shown,
                },
            );
        }

        // What connected, local, neighbor and static routes offer, for deciding
        // later BGP changes without a full compile.
        let base_ranks: HashMap<RouteKey, Rank> =
            candidates.iter().map(|(k, c)| (*k, rank(c))).collect();

        // BGP routes (default VRF), each through its path-list group.
        let mut scratch = Vec::new();
        for r in bgp.values() {
            let Some((action, shown)) =
                self.bgp_objects(&mut s, &interfaces, bgp, r, &mut scratch)?
            else {
                continue;
            };
            scratch.clear();
            let (distance, protocol) = bgp_rank(r);
            offer(
                &mut candidates,
                RouteKey {
                    vrf: VrfId::DEFAULT,
                    prefix: r.prefix,
                },
                Candidate {
                    distance,
                    protocol,
                    action,
                    next_hops: shown,
                },
            );
        }

        let mut rib = Vec::with_capacity(base_ranks.len());
        for (key, c) in candidates {
            s.upsert(Object::Route(Route {
                vrf: key.vrf,
                prefix: key.prefix,
                action: c.action,
            }))?;
            // BGP routes are listed by the router task, from the BGP table.
            if matches!(c.protocol, Protocol::Ebgp | Protocol::Ibgp) {
                continue;
            }
            rib.push(RibEntry {
                vrf: vrf_names.get(&key.vrf).cloned().unwrap_or_default(),
                prefix: key.prefix,
                protocol: c.protocol,
                distance: c.distance,
                next_hops: c.next_hops,
                blackhole: c.action == RouteAction::Drop,
            });
        }
        // Groups and next hops of routes that lost to a better one stay
        // unreferenced; drop them so the target holds only what forwarding uses.
        // Backup next hops of path lists are kept: failover needs them.
        let unused: Vec<ObjectKey> = s
            .groups()
            .keys()
            .map(|id| ObjectKey::Group(*id))
            .filter(|k| s.users_of(k) == 0)
            .collect();
        for k in unused {
            s.remove(&k)?;
        }
        let backups: std::collections::HashSet<NextHopId> = s
            .groups()
            .keys()
            .filter_map(|g| self.group_backups.get(g))
            .flatten()
            .map(|m| m.next_hop)
            .collect();
        let unused: Vec<ObjectKey> = s
            .next_hops()
            .keys()
            .filter(|id| !backups.contains(id))
            .map(|id| ObjectKey::NextHop(*id))
            .filter(|k| s.users_of(k) == 0)
            .collect();
        for k in unused {
            s.remove(&k)?;
        }

        for a in &config.acl {
            s.upsert(Object::from(self.acl(a)?))?;
        }
        // Every next hop in the table needs its neighbor resolved ahead of traffic.
        resolve.clear();
        resolve.extend(s.next_hops().values().map(|n| (n.rif, n.ip)));
        Ok(Compiled {
            state: s,
            rib,
            interfaces,
            resolve,
            base_ranks,
        })
    }

    /// The objects of one BGP route in `s`: its next hops and backup next hops
    /// (created when missing) and its path-list group, keyed by (next hops,
    /// backup). Every object created is also pushed to `out` as a Create delta,
    /// in dependency order. Returns the route's action and next hops for display,
    /// or None when no next hop resolves (see [`Compiler::resolve_next_hop`];
    /// `bgp` is the BGP table the resolution may go through).
    pub fn bgp_objects(
        &mut self,
        s: &mut ForwardingState,
        interfaces: &[HostInterface],
        bgp: &BTreeMap<IpNet, BgpRoute>,
        r: &BgpRoute,
        out: &mut Vec<nos_core::Delta>,
    ) -> Result<Option<(RouteAction, Vec<RibNextHop>)>, CompileError> {
        let mut members = Vec::new();
        let mut shown = Vec::new();
        for (i, nh) in r.next_hops.iter().enumerate() {
            let weight = r.weights.get(i).copied().unwrap_or(1).max(1);
            // A next hop on a connected subnet, or else reached recursively
            // through a static or BGP route (e.g. an eBGP multihop peer's
            // loopback, an iBGP peer's next hop).
            for (rif, name, ip) in self.resolve_next_hop(interfaces, bgp, r.prefix, *nh) {
                let id = self.ensure_next_hop(s, rif, ip, out)?;
                if members.iter().any(|m: &GroupMember| m.next_hop == id) {
                    continue;
                }
                members.push(GroupMember {
                    next_hop: id,
                    weight,
                });
                shown.push(RibNextHop {
                    address: Some(*nh),
                    interface: if ip == *nh {
                        name
                    } else {
                        format!("{name} via {ip}")
                    },
                    weight,
                });
            }
        }
        if members.is_empty() {
            return Ok(None);
        }
        let mut backup = Vec::new();
        for nh in &r.backup {
            for (rif, _, ip) in self.resolve_next_hop(interfaces, bgp, r.prefix, *nh) {
                let id = self.ensure_next_hop(s, rif, ip, out)?;
                if !backup.iter().any(|m: &GroupMember| m.next_hop == id) {
                    backup.push(GroupMember {
                        next_hop: id,
                        weight: 1,
                    });
                }
            }
        }
        members.sort();
        backup.sort();
        let gid = GroupId(self.groups.get((members.clone(), backup.clone())));
        self.bgp_groups.insert(gid);
        if !s.contains(&ObjectKey::Group(gid)) {
            let g = Object::Group(NextHopGroup { id: gid, members });
            s.upsert(g.clone())?;
            out.push(nos_core::Delta::Create(g));
        }
        if !backup.is_empty() {
            self.group_backups.insert(gid, backup);
        }
        Ok(Some((RouteAction::Group(gid), shown)))
    }

    /// Where a BGP next hop of the route for `own` is reached: itself when it
    /// is on a connected subnet; otherwise through the longest route covering
    /// it, a static route (default VRF; it wins a tie, having the lower
    /// distance) or a BGP route, whose own next hops are resolved the same way
    /// (at most [`MAX_RECURSION`] BGP routes deep). Nothing when that longest
    /// route would be `own` itself: a route cannot be reached through itself
    /// (RFC 4271 9.1.2.1), and no shorter route is used instead.
    pub fn resolve_next_hop(
        &self,
        interfaces: &[HostInterface],
        bgp: &BTreeMap<IpNet, BgpRoute>,
        own: IpNet,
        nh: IpAddr,
    ) -> Vec<(RifId, String, IpAddr)> {
        let mut out = Vec::new();
        self.resolve_into(interfaces, bgp, own, nh, MAX_RECURSION, &mut out);
        out
    }

    fn resolve_into(
        &self,
        interfaces: &[HostInterface],
        bgp: &BTreeMap<IpNet, BgpRoute>,
        own: IpNet,
        nh: IpAddr,
        depth: u8,
        out: &mut Vec<(RifId, String, IpAddr)>,
    ) {
        let mut add = |x: (RifId, String, IpAddr)| {
            if !out.iter().any(|o| o.0 == x.0 && o.2 == x.2) {
                out.push(x);
            }
        };
        if let Some(hi) = connected(interfaces, nh) {
            add((hi.rif.id, hi.rif.name.clone(), nh));
            return;
        }
        let fixed = self
            .statics
            .iter()
            .filter(|(p, _)| p.contains(&nh))
            .max_by_key(|(p, _)| p.prefix_len());
        let learned = covering_route(bgp, nh, own);
        // The route itself would be the longest match: unresolvable.
        let longest_other = fixed
            .map(|(p, _)| p.prefix_len())
            .max(learned.map(|r| r.prefix.prefix_len()));
        if own.contains(&nh) && Some(own.prefix_len()) > longest_other {
            return;
        }
        // The static route wins a tie: its distance is the lower.
        match (fixed, learned) {
            (Some((f, via)), l) if l.is_none_or(|r| f.prefix_len() >= r.prefix.prefix_len()) => {
                for v in via {
                    if let Some(hi) = connected(interfaces, *v) {
                        add((hi.rif.id, hi.rif.name.clone(), *v));
                    }
                }
            }
            (_, Some(r)) if depth > 0 => {
                for next in &r.next_hops {
                    self.resolve_into(interfaces, bgp, r.prefix, *next, depth - 1, out);
                }
            }
            _ => {}
        }
    }

    fn ensure_next_hop(
        &mut self,
        s: &mut ForwardingState,
        rif: RifId,
        ip: IpAddr,
        out: &mut Vec<nos_core::Delta>,
    ) -> Result<NextHopId, CompileError> {
        let id = NextHopId(self.next_hops.get((rif, ip)));
        if !s.contains(&ObjectKey::NextHop(id)) {
            let o = Object::NextHop(NextHop { id, rif, ip });
            s.upsert(o.clone())?;
            out.push(nos_core::Delta::Create(o));
        }
        Ok(id)
    }

    /// Whether a group in `s` keeps `nh` as a backup.
    pub fn is_backup(&self, s: &ForwardingState, nh: NextHopId) -> bool {
        s.groups()
            .keys()
            .filter_map(|g| self.group_backups.get(g))
            .any(|b| b.iter().any(|m| m.next_hop == nh))
    }

    /// The backup next hops recorded for a path-list group.
    pub fn backups_of(&self, g: GroupId) -> Vec<NextHopId> {
        self.group_backups
            .get(&g)
            .map(|b| b.iter().map(|m| m.next_hop).collect())
            .unwrap_or_default()
    }

    /// Fast failover: every group with a member whose address is in `dead`
    /// loses those members; a group left empty takes its backup. Returns the
    /// group modifications (already applied to `s`), one per affected group.
    pub fn fail_next_hops(
        &mut self,
        s: &mut ForwardingState,
        dead: &[IpAddr],
    ) -> Vec<nos_core::Delta> {
        let is_dead = |s: &ForwardingState, id: &NextHopId| {
            s.next_hops().get(id).is_some_and(|n| dead.contains(&n.ip))
        };
        let mut out = Vec::new();
        let affected: Vec<NextHopGroup> = s
            .groups()
            .values()
            .filter(|g| self.bgp_groups.contains(&g.id))
            .filter(|g| g.members.iter().any(|m| is_dead(s, &m.next_hop)))
            .cloned()
            .collect();
        for g in affected {
            let mut members: Vec<GroupMember> = g
                .members
                .iter()
                .filter(|m| !is_dead(s, &m.next_hop))
                .copied()
                .collect();
            if members.is_empty() {
                members = self
                    .group_backups
                    .get(&g.id)
                    .map(|b| {
                        b.iter()
                            .filter(|m| {
                                !is_dead(s, &m.next_hop) && s.next_hops().contains_key(&m.next_hop)
                            })
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
            }
            if members.is_empty() {
                continue;
            }
            let o = Object::Group(NextHopGroup { id: g.id, members });
            if s.upsert(o.clone()).is_ok() {
                out.push(nos_core::Delta::Modify(o));
                // Its content no longer matches its key: the next route with
                // that path list gets a group of its own.
                self.groups.forget(g.id.0);
            }
        }
        out
    }

    fn next_hop(
        &mut self,
        s: &mut ForwardingState,
        rif: RifId,
        ip: IpAddr,
    ) -> Result<NextHopId, CompileError> {
        let id = NextHopId(self.next_hops.get((rif, ip)));
        if !s.contains(&ObjectKey::NextHop(id)) {
            s.upsert(Object::NextHop(NextHop { id, rif, ip }))?;
        }
        Ok(id)
    }

    fn rif(
        &mut self,
        config: &Config,
        i: &InterfaceConfig,
        router_mac: MacAddr,
        port_mtu: &HashMap<&str, u32>,
    ) -> Result<RouterInterface, CompileError> {
        let port_of = |name: &str, ports: &IdMap<String>| {
            ports.lookup(&name.to_string()).map(PortId).ok_or_else(|| {
                CompileError::Config(format!("interface {}: port {name} does not exist", i.name))
            })
        };
        let (kind, mtu) = match (&i.port, i.vlan) {
            (Some(p), None) => (
                RifKind::Port {
                    port: port_of(p, &self.ports)?,
                },
                port_mtu.get(p.as_str()).copied(),
            ),
            (Some(p), Some(v)) => (
                RifKind::SubPort {
                    port: port_of(p, &self.ports)?,
                    vlan: v,
                },
                port_mtu.get(p.as_str()).copied(),
            ),
            (None, Some(v)) => {
                let vlan = config.vlans.iter().find(|x| x.id == v).ok_or_else(|| {
                    CompileError::Config(format!("interface {}: VLAN {v} is not defined", i.name))
                })?;
                let mut members = Vec::new();
                for p in &vlan.untagged {
                    members.push(VlanMember {
                        port: port_of(p, &self.ports)?,
                        tagged: false,
                    });
                }
                for p in &vlan.tagged {
                    members.push(VlanMember {
                        port: port_of(p, &self.ports)?,
                        tagged: true,
                    });
                }
                let mtu = vlan
                    .untagged
                    .iter()
                    .chain(&vlan.tagged)
                    .filter_map(|p| port_mtu.get(p.as_str()).copied())
                    .min();
                (RifKind::Vlan { vlan: v, members }, mtu)
            }
            (None, None) => {
                return Err(CompileError::Config(format!(
                    "interface {} has neither a port nor a VLAN",
                    i.name
                )))
            }
        };
        Ok(RouterInterface {
            id: RifId(self.rifs.get(i.name.clone())),
            name: i.name.clone(),
            vrf: VrfId(self.vrfs.get(i.vrf_name().to_string())),
            kind,
            mac: i.mac.unwrap_or(router_mac),
            mtu: i.mtu.or(mtu).unwrap_or(1500),
            admin_up: i.enabled,
        })
    }

    fn acl(&mut self, a: &nos_core::config::AclRuleConfig) -> Result<AclRule, CompileError> {
        let m = &a.matches;
        let bad = |e: String| CompileError::Config(format!("acl {}: {e}", a.name));
        let matches = AclMatch {
            in_port: match &m.in_port {
                Some(p) => Some(
                    self.port_id(p)
                        .ok_or_else(|| bad(format!("port {p} does not exist")))?,
                ),
                None => None,
            },
            src_mac: m
                .src_mac
                .as_deref()
                .map(parse_masked_mac)
                .transpose()
                .map_err(bad)?,
            dst_mac: m
                .dst_mac
                .as_deref()
                .map(parse_masked_mac)
                .transpose()
                .map_err(bad)?,
            ether_type: m.ether_type.map(|e| Masked {
                value: e,
                mask: 0xffff,
            }),
            vlan: m.vlan,
            src_ip: m.src_ip,
            dst_ip: m.dst_ip,
            ip_proto: m
                .protocol
                .as_deref()
                .map(parse_protocol)
                .transpose()
                .map_err(bad)?,
            src_port: m
                .src_port
                .as_ref()
                .map(|p| p.range())
                .transpose()
                .map_err(bad)?,
            dst_port: m
                .dst_port
                .as_ref()
                .map(|p| p.range())
                .transpose()
                .map_err(bad)?,
            tcp_flags: None,
            dscp: m.dscp,
        };
        let action = match a.action {
            AclActionConfig::Permit => AclAction::Permit,
            AclActionConfig::Drop => AclAction::Drop,
            AclActionConfig::Trap => AclAction::Trap,
            AclActionConfig::Copy => AclAction::Copy,
            AclActionConfig::SetVrf => {
                let name = a.vrf.clone().unwrap_or_else(|| DEFAULT_VRF.to_string());
                AclAction::SetVrf(VrfId(self.vrfs.get(name)))
            }
        };
        Ok(AclRule {
            id: AclId(self.acls.get(a.name.clone())),
            name: a.name.clone(),
            stage: a.stage,
            priority: a.priority,
            matches,
            action,
        })
    }
}

fn vrfs_sorted(m: &HashMap<VrfId, String>) -> Vec<(VrfId, String)> {
    let mut v: Vec<_> = m.iter().map(|(k, n)| (*k, n.clone())).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
system: { hostname: r1 }
ports:
  - { name: eth1 }
  - { name: eth2 }
interfaces:
  - name: eth1
    port: eth1
    ipv4: [192.0.2.1/24]
    ipv6: ["2001:db8:1::1/64"]
  - name: eth2
    port: eth2
    ipv4: [198.51.100.1/24]
static_routes:
  - prefix: 203.0.113.0/24
    next_hops: [{ address: 198.51.100.2 }]
  - prefix: 198.18.0.0/15
    next_hops: [{ address: 198.51.100.2, weight: 3 }, { address: 192.0.2.2 }]
  - prefix: 198.18.0.0/16
    blackhole: true
acl:
  - name: no-iperf
    priority: 10
    match: { protocol: tcp, dst_port: 5001 }
    action: drop
"#;

    fn route(s: &ForwardingState, p: &str) -> Option<RouteAction> {
        s.routes()
            .get(&RouteKey {
                vrf: VrfId::DEFAULT,
                prefix: p.parse().unwrap(),
            })
            .copied()
    }

    #[test]
    fn compiles_connected_local_static_and_acl() {
        let config = Config::from_yaml(CONFIG).unwrap();
        let mut c = Compiler::new();
        let out = c
            .compile(&config, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let s = &out.state;
        s.validate().unwrap();
        assert_eq!(s.ports().len(), 2);
        assert_eq!(s.rifs().len(), 2);
        assert_eq!(route(s, "192.0.2.1/32"), Some(RouteAction::ToCpu));
        assert_eq!(route(s, "192.0.2.0/24"), Some(RouteAction::ToCpu));
        assert_eq!(route(s, "2001:db8:1::1/128"), Some(RouteAction::ToCpu));
        assert!(matches!(
            route(s, "203.0.113.0/24"),
            Some(RouteAction::NextHop(_))
        ));
        let Some(RouteAction::Group(g)) = route(s, "198.18.0.0/15") else {
            panic!("ECMP route should use a group")
        };
        let weights: Vec<u32> = s.groups()[&g].members.iter().map(|m| m.weight).collect();
        assert_eq!(weights.iter().sum::<u32>(), 4);
        assert_eq!(route(s, "198.18.0.0/16"), Some(RouteAction::Drop));
        let acl = s.acls().values().next().unwrap();
        assert_eq!(acl.matches.ip_proto, Some(6));
        assert_eq!(
            acl.matches.dst_port,
            Some(PortRange {
                first: 5001,
                last: 5001
            })
        );
        assert_eq!(out.resolve.len(), 2);
    }

    #[test]
    fn ids_are_stable_and_neighbors_add_host_routes() {
        let config = Config::from_yaml(CONFIG).unwrap();
        let mut c = Compiler::new();
        let a = c
            .compile(&config, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let rif = a.interfaces[1].rif.id;
        let mut n = BTreeMap::new();
        n.insert(
            (rif, "198.51.100.2".parse().unwrap()),
            LearnedNeighbor {
                mac: "02:00:00:00:00:02".parse().unwrap(),
                port: None,
            },
        );
        let b = c.compile(&config, &n, &BTreeMap::new()).unwrap();
        let deltas = nos_core::diff(&a.state, &b.state);
        // One neighbor and one host route; the next hop already existed.
        assert_eq!(deltas.len(), 2, "{deltas:?}");
        assert!(matches!(
            route(&b.state, "198.51.100.2/32"),
            Some(RouteAction::NextHop(_))
        ));
    }

    #[test]
    fn a_static_host_route_beats_the_neighbor_host_route() {
        let mut config = Config::from_yaml(CONFIG).unwrap();
        config.static_routes.push(
            serde_yaml::from_str("{prefix: 198.51.100.50/32, next_hops: [{address: 192.0.2.2}]}")
                .unwrap(),
        );
        let mut c = Compiler::new();
        let a = c
            .compile(&config, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let rif2 = a.interfaces[1].rif.id;
        let mut n = BTreeMap::new();
        let mac: MacAddr = "02:00:00:00:00:32".parse().unwrap();
        n.insert(
            (rif2, "198.51.100.50".parse().unwrap()),
            LearnedNeighbor { mac, port: None },
        );
        let b = c.compile(&config, &n, &BTreeMap::new()).unwrap();
        let Some(RouteAction::NextHop(nh)) = route(&b.state, "198.51.100.50/32") else {
            panic!()
        };
        assert_eq!(
            b.state.next_hops()[&nh].ip,
            "192.0.2.2".parse::<IpAddr>().unwrap(),
            "the firewall hop wins"
        );
        let rib = b
            .rib
            .iter()
            .find(|r| r.prefix == "198.51.100.50/32".parse::<IpNet>().unwrap())
            .unwrap();
        assert_eq!(rib.protocol, Protocol::Static);
    }

    #[test]
    fn link_local_addresses_stay_out_of_the_table() {
        let mut config = Config::from_yaml(CONFIG).unwrap();
        config.interfaces[0]
            .ipv6
            .push("fe80::1/64".parse().unwrap());
        let out = Compiler::new()
            .compile(&config, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert!(out
            .state
            .routes()
            .keys()
            .all(|k| !is_link_local(k.prefix.addr())));
    }

    #[test]
    fn rollback_of_a_static_route_removes_route_and_next_hop() {
        let config = Config::from_yaml(CONFIG).unwrap();
        let mut without = config.clone();
        without.static_routes.clear();
        let mut c = Compiler::new();
        let a = c
            .compile(&config, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let b = c
            .compile(&without, &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        assert!(b.state.next_hops().is_empty());
        assert!(b.state.groups().is_empty());
        let mut s = a.state.clone();
        for d in nos_core::diff(&a.state, &b.state) {
            s.apply(&d).unwrap();
        }
        assert_eq!(s, b.state);
    }
}
