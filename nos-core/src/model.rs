//! Typed forwarding objects and the reference-checked [`ForwardingState`].
//!
//! Objects refer to each other by id. The dependency levels are, bottom to top:
//! port and VRF → router interface → neighbor and next hop → next-hop group → route;
//! ACL rules refer to ports and VRFs only. [`ForwardingState`] refuses any change
//! that would leave a dangling reference, in either direction: nothing may point
//! at a missing object, and nothing that is still referenced may be removed.

use crate::mac::MacAddr;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A front-panel (or virtual) port.
    PortId
);
id_type!(
    /// A virtual routing and forwarding instance; `VrfId(0)` is the default VRF.
    VrfId
);
id_type!(
    /// A router interface (L3 interface).
    RifId
);
id_type!(
    /// A next hop: an IP address reached through a router interface.
    NextHopId
);
id_type!(
    /// A weighted group of next hops.
    GroupId
);
id_type!(
    /// An ACL rule.
    AclId
);

impl VrfId {
    pub const DEFAULT: VrfId = VrfId(0);
}

/// A port of the switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub id: PortId,
    pub name: String,
    pub mtu: u32,
    pub admin_up: bool,
}

/// A VRF.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vrf {
    pub id: VrfId,
    pub name: String,
}

/// A member port of a VLAN router interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VlanMember {
    pub port: PortId,
    /// Tagged members send and receive 802.1Q frames; untagged members carry the VLAN
    /// as their native (access) VLAN.
    pub tagged: bool,
}

/// Where a router interface sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RifKind {
    /// Untagged frames of one port.
    Port { port: PortId },
    /// A VLAN (SVI) spanning member ports.
    Vlan { vlan: u16, members: Vec<VlanMember> },
    /// Frames of one port tagged with one VLAN id.
    SubPort { port: PortId, vlan: u16 },
}

/// A router interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInterface {
    pub id: RifId,
    pub name: String,
    pub vrf: VrfId,
    pub kind: RifKind,
    pub mac: MacAddr,
    pub mtu: u32,
    pub admin_up: bool,
}

impl RouterInterface {
    /// Whether frames arriving on `port` with outer VLAN tag `vlan` (`None` when
    /// untagged) belong to this interface.
    pub fn receives(&self, port: PortId, vlan: Option<u16>) -> bool {
        match (&self.kind, vlan) {
            (RifKind::Port { port: p }, None) => *p == port,
            (RifKind::SubPort { port: p, vlan: v }, Some(t)) => *p == port && *v == t,
            (RifKind::Vlan { vlan: v, members }, tag) => members.iter().any(|m| {
                m.port == port
                    && if m.tagged {
                        tag == Some(*v)
                    } else {
                        tag.is_none()
                    }
            }),
            _ => false,
        }
    }

    /// The (port, VLAN tag) pairs a frame for this interface leaves through; for a
    /// VLAN interface, only `member` when given (else every member: a flood).
    pub fn egress(&self, member: Option<PortId>) -> Vec<(PortId, Option<u16>)> {
        match &self.kind {
            RifKind::Port { port } => vec![(*port, None)],
            RifKind::SubPort { port, vlan } => vec![(*port, Some(*vlan))],
            RifKind::Vlan { vlan, members } => members
                .iter()
                .filter(|m| member.is_none_or(|p| p == m.port))
                .map(|m| (m.port, m.tagged.then_some(*vlan)))
                .collect(),
        }
    }

    /// Every port this interface uses.
    pub fn ports(&self) -> Vec<PortId> {
        match &self.kind {
            RifKind::Port { port } | RifKind::SubPort { port, .. } => vec![*port],
            RifKind::Vlan { members, .. } => members.iter().map(|m| m.port).collect(),
        }
    }
}

/// A resolved neighbor (ARP or ND entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    pub rif: RifId,
    pub ip: IpAddr,
    pub mac: MacAddr,
    /// The member port the neighbor was learned on, for VLAN interfaces.
    pub port: Option<PortId>,
}

/// A next hop: an address reached through a router interface. The neighbor entry
/// for the address may be missing; targets then punt the packet for resolution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub id: NextHopId,
    pub rif: RifId,
    pub ip: IpAddr,
}

/// One weighted member of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupMember {
    pub next_hop: NextHopId,
    pub weight: u32,
}

/// A weighted group of next hops (ECMP when all weights are equal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHopGroup {
    pub id: GroupId,
    pub members: Vec<GroupMember>,
}

/// What a route does with a matching packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum RouteAction {
    NextHop(NextHopId),
    Group(GroupId),
    Drop,
    /// Deliver to the control plane (addresses of the router itself).
    ToCpu,
}

/// The key of a route: a prefix in a VRF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteKey {
    pub vrf: VrfId,
    pub prefix: IpNet,
}

/// A route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub vrf: VrfId,
    pub prefix: IpNet,
    pub action: RouteAction,
}

impl Route {
    pub fn key(&self) -> RouteKey {
        RouteKey {
            vrf: self.vrf,
            prefix: self.prefix,
        }
    }
}

/// A value with a mask: a packet field matches when `field & mask == value & mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Masked<T> {
    pub value: T,
    pub mask: T,
}

/// An inclusive range of L4 ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }
}

/// Fields an ACL rule can match. Absent fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclMatch {
    pub in_port: Option<PortId>,
    pub src_mac: Option<Masked<MacAddr>>,
    pub dst_mac: Option<Masked<MacAddr>>,
    pub ether_type: Option<Masked<u16>>,
    pub vlan: Option<u16>,
    pub src_ip: Option<IpNet>,
    pub dst_ip: Option<IpNet>,
    pub ip_proto: Option<u8>,
    pub src_port: Option<PortRange>,
    pub dst_port: Option<PortRange>,
    pub tcp_flags: Option<Masked<u8>>,
    pub dscp: Option<u8>,
}

/// The pipeline stage an ACL rule sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclStage {
    /// Before routing: may select the VRF.
    PreIngress,
    /// After routing: permit, drop, trap or copy to CPU.
    Ingress,
}

/// What an ACL rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "vrf")]
pub enum AclAction {
    Permit,
    Drop,
    /// Send to the control plane instead of forwarding.
    Trap,
    /// Forward, and send a copy to the control plane.
    Copy,
    /// Pre-ingress only: route the packet in this VRF.
    SetVrf(VrfId),
}

/// An ACL rule. Among the rules of a stage that match, the highest priority wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub id: AclId,
    pub name: String,
    pub stage: AclStage,
    pub priority: u32,
    #[serde(rename = "match")]
    pub matches: AclMatch,
    pub action: AclAction,
}

/// Any forwarding object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "object")]
pub enum Object {
    Port(Port),
    Vrf(Vrf),
    /// Boxed, as is `Acl`: the large, rare kinds do not make every object
    /// (and every delta of a million-route batch) as large as they are.
    Rif(Box<RouterInterface>),
    Neighbor(Neighbor),
    NextHop(NextHop),
    Group(NextHopGroup),
    Route(Route),
    Acl(Box<AclRule>),
}

impl From<RouterInterface> for Object {
    fn from(r: RouterInterface) -> Self {
        Object::Rif(Box::new(r))
    }
}

impl From<AclRule> for Object {
    fn from(a: AclRule) -> Self {
        Object::Acl(Box::new(a))
    }
}

/// The identity of a forwarding object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKey {
    Port(PortId),
    Vrf(VrfId),
    Rif(RifId),
    Neighbor(RifId, IpAddr),
    NextHop(NextHopId),
    Group(GroupId),
    Route(RouteKey),
    Acl(AclId),
}

/// Object kinds in dependency order: every kind refers only to kinds before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Port,
    Vrf,
    Rif,
    Neighbor,
    NextHop,
    Group,
    Route,
    Acl,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Port,
        Kind::Vrf,
        Kind::Rif,
        Kind::Neighbor,
        Kind::NextHop,
        Kind::Group,
        Kind::Route,
        Kind::Acl,
    ];
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectKey::Port(p) => write!(f, "port {p}"),
            ObjectKey::Vrf(v) => write!(f, "vrf {v}"),
            ObjectKey::Rif(r) => write!(f, "router-interface {r}"),
            ObjectKey::Neighbor(r, ip) => write!(f, "neighbor {ip} on router-interface {r}"),
            ObjectKey::NextHop(n) => write!(f, "next-hop {n}"),
            ObjectKey::Group(g) => write!(f, "next-hop-group {g}"),
            ObjectKey::Route(k) => write!(f, "route {} in vrf {}", k.prefix, k.vrf),
            ObjectKey::Acl(a) => write!(f, "acl-rule {a}"),
        }
    }
}

impl ObjectKey {
    pub fn kind(&self) -> Kind {
        match self {
            ObjectKey::Port(_) => Kind::Port,
            ObjectKey::Vrf(_) => Kind::Vrf,
            ObjectKey::Rif(_) => Kind::Rif,
            ObjectKey::Neighbor(..) => Kind::Neighbor,
            ObjectKey::NextHop(_) => Kind::NextHop,
            ObjectKey::Group(_) => Kind::Group,
            ObjectKey::Route(_) => Kind::Route,
            ObjectKey::Acl(_) => Kind::Acl,
        }
    }
}

impl Object {
    pub fn key(&self) -> ObjectKey {
        match self {
            Object::Port(p) => ObjectKey::Port(p.id),
            Object::Vrf(v) => ObjectKey::Vrf(v.id),
            Object::Rif(r) => ObjectKey::Rif(r.id),
            Object::Neighbor(n) => ObjectKey::Neighbor(n.rif, n.ip),
            Object::NextHop(n) => ObjectKey::NextHop(n.id),
            Object::Group(g) => ObjectKey::Group(g.id),
            Object::Route(r) => ObjectKey::Route(r.key()),
            Object::Acl(a) => ObjectKey::Acl(a.id),
        }
    }

    pub fn kind(&self) -> Kind {
        self.key().kind()
    }

    /// The objects this one refers to.
    pub fn references(&self) -> References {
        match self {
            Object::Port(_) | Object::Vrf(_) => References::new(),
            Object::Rif(r) => {
                let mut v: References = r.ports().into_iter().map(ObjectKey::Port).collect();
                v.push(ObjectKey::Vrf(r.vrf));
                v
            }
            Object::Neighbor(n) => {
                let mut v: References = smallvec::smallvec![ObjectKey::Rif(n.rif)];
                v.extend(n.port.map(ObjectKey::Port));
                v
            }
            Object::NextHop(n) => smallvec::smallvec![ObjectKey::Rif(n.rif)],
            Object::Group(g) => g
                .members
                .iter()
                .map(|m| ObjectKey::NextHop(m.next_hop))
                .collect(),
            Object::Route(r) => route_refs(r.vrf, r.action).collect(),
            Object::Acl(a) => {
                let mut v = References::new();
                v.extend(a.matches.in_port.map(ObjectKey::Port));
                if let AclAction::SetVrf(vrf) = a.action {
                    v.push(ObjectKey::Vrf(vrf));
                }
                v
            }
        }
    }

    /// Checks the object's own fields (not its references).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Object::Port(p) if p.mtu < 68 => Err(format!("mtu {} is below 68", p.mtu)),
            Object::Rif(r) => {
                match &r.kind {
                    RifKind::Vlan { vlan, members } => {
                        check_vlan(*vlan)?;
                        let mut ports: Vec<_> = members.iter().map(|m| m.port).collect();
                        ports.sort();
                        ports.dedup();
                        if ports.len() != members.len() {
                            return Err("a port is listed twice in the VLAN".into());
                        }
                    }
                    RifKind::SubPort { vlan, .. } => check_vlan(*vlan)?,
                    RifKind::Port { .. } => {}
                }
                if r.mac.is_multicast() {
                    return Err(format!("router MAC {} is a multicast address", r.mac));
                }
                Ok(())
            }
            Object::Neighbor(n) if n.mac.is_multicast() => {
                Err(format!("neighbor MAC {} is a multicast address", n.mac))
            }
            Object::Group(g) => {
                if g.members.is_empty() {
                    return Err("a next-hop group needs at least one member".into());
                }
                if g.members.iter().any(|m| m.weight == 0) {
                    return Err("member weights must be at least 1".into());
                }
                let mut ids: Vec<_> = g.members.iter().map(|m| m.next_hop).collect();
                ids.sort();
                ids.dedup();
                if ids.len() != g.members.len() {
                    return Err("a next hop is listed twice in the group".into());
                }
                Ok(())
            }
            Object::Route(r) if r.prefix.trunc() != r.prefix => Err(format!(
                "prefix {} has host bits set (did you mean {}?)",
                r.prefix,
                r.prefix.trunc()
            )),
            Object::Acl(a) => {
                if let (AclAction::SetVrf(_), AclStage::Ingress) = (a.action, a.stage) {
                    return Err("set-vrf is only valid in the pre-ingress stage".into());
                }
                if let Some(v) = a.matches.vlan {
                    check_vlan(v)?;
                }
                for r in [a.matches.src_port, a.matches.dst_port]
                    .into_iter()
                    .flatten()
                {
                    if r.first > r.last {
                        return Err(format!("port range {}-{} is empty", r.first, r.last));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn check_vlan(vlan: u16) -> Result<(), String> {
    if (1..=4094).contains(&vlan) {
        Ok(())
    } else {
        Err(format!("VLAN id {vlan} is outside 1..=4094"))
    }
}

/// What [`ForwardingState::insert`] requires of the object's presence.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Any,
    Absent,
    Present,
}

/// What one object refers to (a route: its VRF and its next hop or group).
pub type References = SmallVec<[ObjectKey; 4]>;

/// Reference counts, keyed by small ids: a fast non-cryptographic hash
/// (the keys come from the model, not from the network).
type Users = HashMap<ObjectKey, u32, fxhash::FxBuildHasher>;

fn route_refs(vrf: VrfId, action: RouteAction) -> impl Iterator<Item = ObjectKey> {
    let target = match action {
        RouteAction::NextHop(n) => Some(ObjectKey::NextHop(n)),
        RouteAction::Group(g) => Some(ObjectKey::Group(g)),
        RouteAction::Drop | RouteAction::ToCpu => None,
    };
    std::iter::once(ObjectKey::Vrf(vrf)).chain(target)
}

/// Whether `ip` is an IPv6 link-local address (fe80::/10): valid on one link
/// only, so never routed.
pub fn is_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Why a change to the model was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    #[error("{0} does not exist")]
    NotFound(ObjectKey),
    #[error("{object} refers to {missing}, which does not exist")]
    MissingReference {
        object: ObjectKey,
        missing: ObjectKey,
    },
    #[error("{object} is still referred to by {users} object(s)")]
    InUse { object: ObjectKey, users: u32 },
    #[error("{object} is invalid: {reason}")]
    Invalid { object: ObjectKey, reason: String },
}

/// The whole forwarding state of one switch, with every reference valid.
///
/// The maps are private so that every change goes through [`ForwardingState::upsert`]
/// or [`ForwardingState::remove`], which keep reference counts and refuse dangling
/// references.
#[derive(Clone, Debug, Default)]
pub struct ForwardingState {
    ports: BTreeMap<PortId, Port>,
    vrfs: BTreeMap<VrfId, Vrf>,
    rifs: BTreeMap<RifId, RouterInterface>,
    neighbors: BTreeMap<(RifId, IpAddr), Neighbor>,
    next_hops: BTreeMap<NextHopId, NextHop>,
    groups: BTreeMap<GroupId, NextHopGroup>,
    routes: BTreeMap<RouteKey, RouteAction>,
    acls: BTreeMap<AclId, AclRule>,
    /// How many objects refer to each referenced object.
    users: Users,
}

impl PartialEq for ForwardingState {
    fn eq(&self, o: &Self) -> bool {
        self.ports == o.ports
            && self.vrfs == o.vrfs
            && self.rifs == o.rifs
            && self.neighbors == o.neighbors
            && self.next_hops == o.next_hops
            && self.groups == o.groups
            && self.routes == o.routes
            && self.acls == o.acls
    }
}
impl Eq for ForwardingState {}

impl ForwardingState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ports(&self) -> &BTreeMap<PortId, Port> {
        &self.ports
    }
    pub fn vrfs(&self) -> &BTreeMap<VrfId, Vrf> {
        &self.vrfs
    }
    pub fn rifs(&self) -> &BTreeMap<RifId, RouterInterface> {
        &self.rifs
    }
    pub fn neighbors(&self) -> &BTreeMap<(RifId, IpAddr), Neighbor> {
        &self.neighbors
    }
    pub fn next_hops(&self) -> &BTreeMap<NextHopId, NextHop> {
        &self.next_hops
    }
    pub fn groups(&self) -> &BTreeMap<GroupId, NextHopGroup> {
        &self.groups
    }
    pub fn routes(&self) -> &BTreeMap<RouteKey, RouteAction> {
        &self.routes
    }
    pub fn acls(&self) -> &BTreeMap<AclId, AclRule> {
        &self.acls
    }

    /// Number of objects of every kind together.
    pub fn len(&self) -> usize {
        self.ports.len()
            + self.vrfs.len()
            + self.rifs.len()
            + self.neighbors.len()
            + self.next_hops.len()
            + self.groups.len()
            + self.routes.len()
            + self.acls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        match key {
            ObjectKey::Port(k) => self.ports.contains_key(k),
            ObjectKey::Vrf(k) => self.vrfs.contains_key(k),
            ObjectKey::Rif(k) => self.rifs.contains_key(k),
            ObjectKey::Neighbor(r, ip) => self.neighbors.contains_key(&(*r, *ip)),
            ObjectKey::NextHop(k) => self.next_hops.contains_key(k),
            ObjectKey::Group(k) => self.groups.contains_key(k),
            ObjectKey::Route(k) => self.routes.contains_key(k),
            ObjectKey::Acl(k) => self.acls.contains_key(k),
        }
    }

    /// The object stored under `key`, cloned.
    pub fn get(&self, key: &ObjectKey) -> Option<Object> {
        Some(match key {
            ObjectKey::Port(k) => Object::Port(self.ports.get(k)?.clone()),
            ObjectKey::Vrf(k) => Object::Vrf(self.vrfs.get(k)?.clone()),
            ObjectKey::Rif(k) => Object::from(self.rifs.get(k)?.clone()),
            ObjectKey::Neighbor(r, ip) => Object::Neighbor(self.neighbors.get(&(*r, *ip))?.clone()),
            ObjectKey::NextHop(k) => Object::NextHop(self.next_hops.get(k)?.clone()),
            ObjectKey::Group(k) => Object::Group(self.groups.get(k)?.clone()),
            ObjectKey::Route(k) => Object::Route(Route {
                vrf: k.vrf,
                prefix: k.prefix,
                action: *self.routes.get(k)?,
            }),
            ObjectKey::Acl(k) => Object::from(self.acls.get(k)?.clone()),
        })
    }

    /// How many objects refer to `key`.
    pub fn users_of(&self, key: &ObjectKey) -> u32 {
        self.users.get(key).copied().unwrap_or(0)
    }

    /// Inserts or replaces an object after checking its fields and references.
    /// Returns the object it replaced, if any.
    pub fn upsert(&mut self, obj: Object) -> Result<Option<Object>, ModelError> {
        self.insert(obj, Expect::Any)
    }

    /// [`ForwardingState::upsert`] with a precondition on the object being
    /// there, in one search of its map.
    fn insert(&mut self, obj: Object, expect: Expect) -> Result<Option<Object>, ModelError> {
        let key = obj.key();
        let unmet = |key: ObjectKey| match expect {
            Expect::Absent => ModelError::AlreadyExists(key),
            _ => ModelError::NotFound(key),
        };
        let refs = obj.references();
        let checked = obj
            .check()
            .map_err(|reason| ModelError::Invalid {
                object: key,
                reason,
            })
            .and_then(|()| {
                // Router interfaces change the ports they use only if those
                // exist; every reference is checked before anything changes.
                match refs.iter().find(|r| !self.contains(r)) {
                    Some(r) => Err(ModelError::MissingReference {
                        object: key,
                        missing: *r,
                    }),
                    None => Ok(()),
                }
            });
        if let Err(e) = checked {
            // The precondition is reported first, as a caller checking it
            // beforehand would have.
            return Err(match (expect, self.contains(&key)) {
                (Expect::Absent, true) | (Expect::Present, false) => unmet(key),
                _ => e,
            });
        }
        let old = self.put(obj);
        if matches!(
            (expect, &old),
            (Expect::Absent, Some(_)) | (Expect::Present, None)
        ) {
            match old {
                Some(o) => {
                    self.put(o);
                }
                None => {
                    self.take(&key);
                }
            }
            return Err(unmet(key));
        }
        for r in refs {
            *self.users.entry(r).or_insert(0) += 1;
        }
        if let Some(old) = &old {
            self.release(old);
        }
        Ok(old)
    }

    /// Removes an object nothing refers to any more.
    pub fn remove(&mut self, key: &ObjectKey) -> Result<Object, ModelError> {
        let users = self.users_of(key);
        if users > 0 {
            return Err(ModelError::InUse {
                object: *key,
                users,
            });
        }
        let old = self.take(key).ok_or(ModelError::NotFound(*key))?;
        self.release(&old);
        Ok(old)
    }

    fn release(&mut self, old: &Object) {
        for r in old.references() {
            if let Some(n) = self.users.get_mut(&r) {
                *n -= 1;
                if *n == 0 {
                    self.users.remove(&r);
                }
            }
        }
    }

    fn put(&mut self, obj: Object) -> Option<Object> {
        match obj {
            Object::Port(p) => self.ports.insert(p.id, p).map(Object::Port),
            Object::Vrf(v) => self.vrfs.insert(v.id, v).map(Object::Vrf),
            Object::Rif(r) => self.rifs.insert(r.id, *r).map(Object::from),
            Object::Neighbor(n) => self
                .neighbors
                .insert((n.rif, n.ip), n)
                .map(Object::Neighbor),
            Object::NextHop(n) => self.next_hops.insert(n.id, n).map(Object::NextHop),
            Object::Group(g) => self.groups.insert(g.id, g).map(Object::Group),
            Object::Route(r) => self.routes.insert(r.key(), r.action).map(|action| {
                Object::Route(Route {
                    vrf: r.vrf,
                    prefix: r.prefix,
                    action,
                })
            }),
            Object::Acl(a) => self.acls.insert(a.id, *a).map(Object::from),
        }
    }

    fn take(&mut self, key: &ObjectKey) -> Option<Object> {
        Some(match key {
            ObjectKey::Port(k) => Object::Port(self.ports.remove(k)?),
            ObjectKey::Vrf(k) => Object::Vrf(self.vrfs.remove(k)?),
            ObjectKey::Rif(k) => Object::from(self.rifs.remove(k)?),
            ObjectKey::Neighbor(r, ip) => Object::Neighbor(self.neighbors.remove(&(*r, *ip))?),
            ObjectKey::NextHop(k) => Object::NextHop(self.next_hops.remove(k)?),
            ObjectKey::Group(k) => Object::Group(self.groups.remove(k)?),
            ObjectKey::Route(k) => Object::Route(Route {
                vrf: k.vrf,
                prefix: k.prefix,
                action: self.routes.remove(k)?,
            }),
            ObjectKey::Acl(k) => Object::from(self.acls.remove(k)?),
        })
    }

    /// Applies one delta with its precondition: a create needs the object absent,
    /// a modify needs it present, a delete needs it present and unreferenced.
    pub fn apply(&mut self, delta: &crate::diff::Delta) -> Result<(), ModelError> {
        use crate::diff::Delta;
        match delta {
            Delta::Create(o) => self.insert(o.clone(), Expect::Absent).map(|_| ()),
            Delta::Modify(o) => self.insert(o.clone(), Expect::Present).map(|_| ()),
            Delta::Delete(k) => self.remove(k).map(|_| ()),
        }
    }

    /// Every object, kind by kind in dependency order.
    pub fn objects(&self) -> impl Iterator<Item = Object> + '_ {
        self.ports
            .values()
            .cloned()
            .map(Object::Port)
            .chain(self.vrfs.values().cloned().map(Object::Vrf))
            .chain(self.rifs.values().cloned().map(Object::from))
            .chain(self.neighbors.values().cloned().map(Object::Neighbor))
            .chain(self.next_hops.values().cloned().map(Object::NextHop))
            .chain(self.groups.values().cloned().map(Object::Group))
            .chain(self.routes.iter().map(|(k, a)| {
                Object::Route(Route {
                    vrf: k.vrf,
                    prefix: k.prefix,
                    action: *a,
                })
            }))
            .chain(self.acls.values().cloned().map(Object::from))
    }

    /// Re-checks every object and reference from scratch (for tests and audits).
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut users = Users::default();
        for o in self.objects() {
            o.check().map_err(|reason| ModelError::Invalid {
                object: o.key(),
                reason,
            })?;
            for r in o.references() {
                if !self.contains(&r) {
                    return Err(ModelError::MissingReference {
                        object: o.key(),
                        missing: r,
                    });
                }
                *users.entry(r).or_insert(0) += 1;
            }
        }
        if users != self.users {
            return Err(ModelError::Invalid {
                object: ObjectKey::Vrf(VrfId::DEFAULT),
                reason: "internal reference counts disagree with the objects".into(),
            });
        }
        Ok(())
    }

    /// The router interface that receives frames arriving on `port` with outer VLAN
    /// tag `vlan` (`None` for untagged frames): a sub-port or tagged VLAN member for a
    /// tagged frame; a port interface or untagged VLAN member otherwise.
    pub fn ingress_rif(&self, port: PortId, vlan: Option<u16>) -> Option<&RouterInterface> {
        self.rifs.values().find(|r| r.receives(port, vlan))
    }

    /// Builds a state from objects given in any order that respects dependencies.
    pub fn from_objects(objs: impl IntoIterator<Item = Object>) -> Result<Self, ModelError> {
        let mut s = Self::new();
        for o in objs {
            s.upsert(o)?;
        }
        Ok(s)
    }
}

impl Serialize for ForwardingState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let routes: Vec<Route> = self
            .routes
            .iter()
            .map(|(k, a)| Route {
                vrf: k.vrf,
                prefix: k.prefix,
                action: *a,
            })
            .collect();
        let mut st = s.serialize_struct("ForwardingState", 8)?;
        st.serialize_field("ports", &self.ports.values().collect::<Vec<_>>())?;
        st.serialize_field("vrfs", &self.vrfs.values().collect::<Vec<_>>())?;
        st.serialize_field("router_interfaces", &self.rifs.values().collect::<Vec<_>>())?;
        st.serialize_field("neighbors", &self.neighbors.values().collect::<Vec<_>>())?;
        st.serialize_field("next_hops", &self.next_hops.values().collect::<Vec<_>>())?;
        st.serialize_field("groups", &self.groups.values().collect::<Vec<_>>())?;
        st.serialize_field("routes", &routes)?;
        st.serialize_field("acl_rules", &self.acls.values().collect::<Vec<_>>())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for ForwardingState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Lists {
            ports: Vec<Port>,
            vrfs: Vec<Vrf>,
            router_interfaces: Vec<RouterInterface>,
            neighbors: Vec<Neighbor>,
            next_hops: Vec<NextHop>,
            groups: Vec<NextHopGroup>,
            routes: Vec<Route>,
            acl_rules: Vec<AclRule>,
        }
        let l = Lists::deserialize(d)?;
        let objs = l
            .ports
            .into_iter()
            .map(Object::Port)
            .chain(l.vrfs.into_iter().map(Object::Vrf))
            .chain(l.router_interfaces.into_iter().map(Object::from))
            .chain(l.neighbors.into_iter().map(Object::Neighbor))
            .chain(l.next_hops.into_iter().map(Object::NextHop))
            .chain(l.groups.into_iter().map(Object::Group))
            .chain(l.routes.into_iter().map(Object::Route))
            .chain(l.acl_rules.into_iter().map(Object::from));
        ForwardingState::from_objects(objs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn port(id: u32) -> Object {
        Object::Port(Port {
            id: PortId(id),
            name: format!("eth{id}"),
            mtu: 1500,
            admin_up: true,
        })
    }

    pub fn rif(id: u32, port: u32) -> Object {
        Object::from(RouterInterface {
            id: RifId(id),
            name: format!("rif{id}"),
            vrf: VrfId::DEFAULT,
            kind: RifKind::Port { port: PortId(port) },
            mac: "02:00:00:00:00:01".parse().unwrap(),
            mtu: 1500,
            admin_up: true,
        })
    }

    fn default_vrf() -> Object {
        Object::Vrf(Vrf {
            id: VrfId::DEFAULT,
            name: "default".into(),
        })
    }

    #[test]
    fn refuses_dangling_references_both_ways() {
        let mut s = ForwardingState::new();
        assert!(matches!(
            s.upsert(rif(1, 1)),
            Err(ModelError::MissingReference { .. })
        ));
        s.upsert(port(1)).unwrap();
        s.upsert(default_vrf()).unwrap();
        s.upsert(rif(1, 1)).unwrap();
        let nh = Object::NextHop(NextHop {
            id: NextHopId(1),
            rif: RifId(1),
            ip: "192.0.2.2".parse().unwrap(),
        });
        s.upsert(nh).unwrap();
        let route = Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: "198.51.100.0/24".parse().unwrap(),
            action: RouteAction::Group(GroupId(9)),
        });
        assert_eq!(
            s.upsert(route),
            Err(ModelError::MissingReference {
                object: ObjectKey::Route(RouteKey {
                    vrf: VrfId::DEFAULT,
                    prefix: "198.51.100.0/24".parse().unwrap()
                }),
                missing: ObjectKey::Group(GroupId(9))
            })
        );
        assert_eq!(
            s.remove(&ObjectKey::Rif(RifId(1))),
            Err(ModelError::InUse {
                object: ObjectKey::Rif(RifId(1)),
                users: 1
            })
        );
        s.remove(&ObjectKey::NextHop(NextHopId(1))).unwrap();
        s.remove(&ObjectKey::Rif(RifId(1))).unwrap();
        s.validate().unwrap();
    }

    #[test]
    fn modify_moves_references() {
        let mut s =
            ForwardingState::from_objects([port(1), port(2), default_vrf(), rif(1, 1)]).unwrap();
        s.upsert(rif(1, 2)).unwrap();
        assert_eq!(s.users_of(&ObjectKey::Port(PortId(1))), 0);
        assert_eq!(s.users_of(&ObjectKey::Port(PortId(2))), 1);
        s.remove(&ObjectKey::Port(PortId(1))).unwrap();
        s.validate().unwrap();
    }

    #[test]
    fn rejects_bad_fields() {
        let mut s = ForwardingState::from_objects([default_vrf()]).unwrap();
        let r = Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: "198.51.100.1/24".parse().unwrap(),
            action: RouteAction::Drop,
        });
        assert!(matches!(s.upsert(r), Err(ModelError::Invalid { .. })));
        let g = Object::Group(NextHopGroup {
            id: GroupId(1),
            members: vec![],
        });
        assert!(matches!(s.upsert(g), Err(ModelError::Invalid { .. })));
    }

    #[test]
    fn serde_round_trip() {
        let s = ForwardingState::from_objects([port(1), default_vrf(), rif(1, 1)]).unwrap();
        let j = serde_json::to_string(&s).unwrap();
        let back: ForwardingState = serde_json::from_str(&j).unwrap();
        assert_eq!(s, back);
    }
}
