//! The installed P4 entries and their translation into the forwarding model.
//!
//! Every table entry the controller wrote is kept (by table and key, in the
//! form of [`super::entry`]); the objects of a `nos_core::ForwardingState`
//! are derived from them per the name contract:
//!
//! | model object | derived from |
//! |---|---|
//! | port | the target's configured ports (not P4 entries) |
//! | VRF | created while anything refers to it; VRF 0 always exists |
//! | router interface `R` | `router_interface` entry `R` (port, MAC, VLAN) and the `ingress_rif` entries pointing at `R` (ingress ports and VLANs, VRF) |
//! | neighbor | `neighbor` entry |
//! | next hop | `nexthop` entry |
//! | group | `wcmp_group` entry (one-shot action set; duplicate members add up) |
//! | route | `ipv4_lpm` / `ipv6_lpm` entry |
//! | ACL rule | `acl_pre_ingress` / `acl_ingress` entry |
//!
//! `l3_admit` entries are kept and read back but not translated: the x86
//! engine admits a frame to routing when it is addressed to the MAC of the
//! interface it arrived on, which is what the canonical encoding (one
//! `l3_admit` entry per router MAC) says.
//!
//! The kind of a router interface follows from its entries: with exactly
//! one `ingress_rif` entry on the `router_interface` port (untagged, or on
//! its VLAN) it is a port or sub-port interface; with several, or on other
//! ports, a VLAN interface whose members are the `ingress_rif` entries
//! (tagged when their `vlan_id` is not 0); with none, it receives nothing.
//!
//! Each update is validated, applied to the store and to a shadow copy of
//! the model (which refuses dangling references exactly as the backend's
//! model does), and its model deltas are collected; the batch's deltas go to
//! the backend in one `apply`, and a delta the backend refuses is reported
//! on the update that caused it.

use super::contract::{acl_field, ActionKind, Pipeline, TableKind};
use super::entry::{
    decode_table_write, default_entry, encode_entry, ActionCall, Entry, EntryKey, FieldValue,
    StoredAction,
};
use super::error::RpcError;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nos_core::backend::BackendErrorKind;
use nos_core::{
    diff, AclAction, AclId, AclMatch, AclRule, AclStage, Backend, BackendError, Delta,
    ForwardingState, GroupId, GroupMember, MacAddr, Masked, ModelError, Neighbor, NextHop,
    NextHopGroup, NextHopId, Object, ObjectKey, PortId, PortRange, RifId, RifKind, Route,
    RouteAction, RouteKey, RouterInterface, VlanMember, Vrf, VrfId,
};
use p4::entity::Entity as E;
use p4runtime_proto::p4::v1 as p4;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tonic::Code;

/// The MTU of derived router interfaces: the program has no MTU check, so
/// only the port's MTU limits what leaves.
const RIF_MTU: u32 = 65_535;

/// The VLAN id a VLAN interface without tagged members is given in the
/// model (never put on the wire).
const NO_TAG_VLAN: u16 = 1;

/// What one successful update changed, to undo it.
#[derive(Debug)]
pub struct Applied {
    store: StoreUndo,
    /// Where its deltas are in the batch's log (see [`State::update`]).
    model: std::ops::Range<usize>,
}

/// The deltas a batch applied to the shadow model, each with the object it
/// replaced, in order.
pub type ModelLog = Vec<(Delta, Option<Object>)>;

#[derive(Debug)]
enum StoreUndo {
    Nothing,
    Table {
        kind: TableKind,
        key: EntryKey,
        old: Option<Entry>,
    },
    Clone {
        id: u32,
        old: Option<p4::CloneSessionEntry>,
    },
}

/// The installed entries and the model derived from them.
#[derive(Debug)]
pub struct State {
    tables: Vec<BTreeMap<EntryKey, Entry>>,
    /// `ingress_rif` entries by router interface: (port, vlan) → VRF.
    ingress_by_rif: HashMap<u32, BTreeMap<(u32, u32), u32>>,
    clone_sessions: BTreeMap<u32, p4::CloneSessionEntry>,
    next_acl_id: u32,
    /// The model as the backend holds it (after the current batch, as the
    /// batch goes).
    shadow: ForwardingState,
    /// Ports and the default VRF: what remains when every entry is gone.
    base: ForwardingState,
    ports: BTreeSet<u32>,
}

fn port_list(ports: &BTreeSet<u32>) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn mac(v: u128) -> MacAddr {
    let b = (v as u64).to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A 128-bit `neighbor_ip`: IPv4-mapped addresses are IPv4.
fn neighbor_ip(v: u128) -> IpAddr {
    let a = Ipv6Addr::from(v);
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

/// The prefix length of a ternary mask on a `bits`-wide address, if the
/// mask is a prefix mask.
fn prefix_len(mask: u128, bits: u32) -> Option<u8> {
    let ones = mask.count_ones();
    let expect = if ones == 0 {
        0
    } else {
        (u128::MAX >> (128 - ones)) << (bits - ones)
    };
    (mask == expect).then_some(ones as u8)
}

/// The VRF an object puts into use (one at most).
fn vrf_of(o: &Object) -> Option<VrfId> {
    match o {
        Object::Rif(r) => Some(r.vrf),
        Object::Route(r) => Some(r.vrf),
        Object::Acl(a) => match a.action {
            AclAction::SetVrf(v) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

/// How an object of the model is called in P4 terms, for messages.
fn describe(k: &ObjectKey) -> String {
    match k {
        ObjectKey::Port(p) => format!("port {p}"),
        ObjectKey::Vrf(v) => format!("VRF {v}"),
        ObjectKey::Rif(r) => format!("router interface {r} (router_interface)"),
        ObjectKey::Neighbor(r, ip) => {
            format!("neighbor {ip} on router interface {r} (neighbor)")
        }
        ObjectKey::NextHop(n) => format!("next hop {n} (nexthop)"),
        ObjectKey::Group(g) => format!("group {g} (wcmp_group)"),
        ObjectKey::Route(k) => format!("route {} in VRF {}", k.prefix, k.vrf),
        ObjectKey::Acl(a) => format!("ACL rule {a}"),
    }
}

/// A refusal of the model, as the error of the update that caused it.
///
/// A reference to something not installed (a next hop on a router interface
/// that has no `router_interface` entry, a route to a missing group) is
/// NOT_FOUND, as the specification has it for references to action profile
/// members and groups; removing something still referred to is
/// FAILED_PRECONDITION, as for a group still used by a table entry.
pub fn model_error(e: ModelError) -> RpcError {
    match e {
        ModelError::MissingReference { object, missing } => match missing {
            ObjectKey::Port(_) => RpcError::invalid(format!(
                "{} refers to {}, which this target does not have",
                describe(&object),
                describe(&missing)
            )),
            ObjectKey::Vrf(_) => RpcError::internal(format!(
                "{} refers to {}, which the target failed to create",
                describe(&object),
                describe(&missing)
            )),
            _ => RpcError::not_found(format!(
                "{} refers to {}, which is not installed",
                describe(&object),
                describe(&missing)
            )),
        },
        ModelError::InUse { object, users } => RpcError::failed_precondition(format!(
            "{} is still used by {users} other entr{}",
            describe(&object),
            if users == 1 { "y" } else { "ies" }
        )),
        ModelError::Invalid { object, reason } => {
            RpcError::invalid(format!("{}: {reason}", describe(&object)))
        }
        ModelError::AlreadyExists(k) | ModelError::NotFound(k) => RpcError::internal(format!(
            "the target's model disagrees with its entries about {}",
            describe(&k)
        )),
    }
}

/// A backend's refusal, with the canonical code of its kind.
pub fn backend_error(e: &BackendError) -> RpcError {
    let code = match e.kind {
        BackendErrorKind::InvalidArgument => Code::InvalidArgument,
        BackendErrorKind::NotFound => Code::NotFound,
        BackendErrorKind::AlreadyExists => Code::AlreadyExists,
        BackendErrorKind::ResourceExhausted => Code::ResourceExhausted,
        BackendErrorKind::Unsupported => Code::Unimplemented,
        BackendErrorKind::Unavailable => Code::Unavailable,
        BackendErrorKind::Aborted => Code::Aborted,
        BackendErrorKind::Internal => Code::Internal,
    };
    RpcError::new(code, format!("the dataplane refused it: {}", e.message))
}

fn rif_key(rif: u32) -> EntryKey {
    EntryKey {
        fields: smallvec::smallvec![Some(FieldValue::Exact(u128::from(rif)))],
        priority: 0,
    }
}

fn param(call: &ActionCall, i: usize) -> u128 {
    call.params.get(i).copied().unwrap_or(0)
}

/// The egress of a `router_interface` action: port, MAC, VLAN (0 = none).
fn rif_egress(call: &ActionCall) -> (u32, u128, u32) {
    match call.kind {
        ActionKind::SetPortAndSrcMacAndVlan => {
            (param(call, 0) as u32, param(call, 1), param(call, 2) as u32)
        }
        _ => (param(call, 0) as u32, param(call, 1), 0),
    }
}

fn inverse(d: &Delta, prev: &Option<Object>, exists_now: bool) -> Delta {
    match prev {
        None => Delta::Delete(d.key()),
        Some(p) if exists_now => Delta::Modify(p.clone()),
        Some(p) => Delta::Create(p.clone()),
    }
}

impl State {
    /// A state with nothing installed but `ports` and the default VRF.
    pub fn new(base: ForwardingState) -> Self {
        let ports = base.ports().keys().map(|p| p.0).collect();
        Self {
            tables: vec![BTreeMap::new(); TableKind::ALL.len()],
            ingress_by_rif: HashMap::new(),
            clone_sessions: BTreeMap::new(),
            next_acl_id: 1,
            shadow: base.clone(),
            base,
            ports,
        }
    }

    /// The model the installed entries translate to.
    pub fn model(&self) -> &ForwardingState {
        &self.shadow
    }

    /// Number of installed table entries.
    pub fn entry_count(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    fn table(&self, kind: TableKind) -> &BTreeMap<EntryKey, Entry> {
        &self.tables[kind.index()]
    }

    fn check_port(&self, port: u128, what: &str) -> Result<(), RpcError> {
        if u32::try_from(port).is_ok_and(|p| self.ports.contains(&p)) {
            Ok(())
        } else {
            Err(RpcError::invalid(format!(
                "{what}: port {port} is not a port of this target (ports: {})",
                port_list(&self.ports)
            )))
        }
    }

    /// Puts (or removes) an entry, keeping the `ingress_rif` index; returns
    /// the entry it replaced.
    fn put_entry(&mut self, kind: TableKind, key: &EntryKey, new: Option<Entry>) -> Option<Entry> {
        if kind == TableKind::IngressRif {
            let at = (key.exact(0) as u32, key.exact(1) as u32);
            if let Some(old) = self.table(kind).get(key).and_then(|e| e.direct()) {
                let rif = param(old, 0) as u32;
                if let Some(m) = self.ingress_by_rif.get_mut(&rif) {
                    m.remove(&at);
                    if m.is_empty() {
                        self.ingress_by_rif.remove(&rif);
                    }
                }
            }
            if let Some(call) = new.as_ref().and_then(|e| e.direct()) {
                self.ingress_by_rif
                    .entry(param(call, 0) as u32)
                    .or_default()
                    .insert(at, param(call, 1) as u32);
            }
        }
        let t = &mut self.tables[kind.index()];
        match new {
            Some(e) => t.insert(key.clone(), e),
            None => t.remove(key),
        }
    }

    // ---- checks that span entries ----

    /// An `ingress_rif` entry (port, vlan) → (rif, vrf) must fit the other
    /// entries of its router interface: one VRF, each port once, one VLAN,
    /// and the VLAN the `router_interface` entry sends with.
    fn check_ingress(&self, key: &EntryKey, call: &ActionCall) -> Result<(), RpcError> {
        let (port, vlan) = (key.exact(0) as u32, key.exact(1) as u32);
        let (rif, vrf) = (param(call, 0) as u32, param(call, 1) as u32);
        self.check_port(u128::from(port), "table `ingress_rif`")?;
        let what = format!("ingress_rif (port {port}, vlan {vlan}) → router interface {rif}");
        if let Some(others) = self.ingress_by_rif.get(&rif) {
            for (&(p, v), &f) in others.iter().filter(|(at, _)| **at != (port, vlan)) {
                if f != vrf {
                    return Err(RpcError::unimplemented(format!(
                        "{what}: the interface already receives in VRF {f} (port {p}); one router interface has one VRF"
                    )));
                }
                if p == port {
                    return Err(RpcError::unimplemented(format!(
                        "{what}: port {port} already belongs to the interface (vlan {v}); a port joins an interface once"
                    )));
                }
                if vlan != 0 && v != 0 && v != vlan {
                    return Err(RpcError::unimplemented(format!(
                        "{what}: the interface already receives VLAN {v}; one router interface has one VLAN"
                    )));
                }
            }
        }
        if vlan != 0 {
            if let Some(e) = self.table(TableKind::RouterInterface).get(&rif_key(rif)) {
                let egress_vlan = e.direct().map(|c| rif_egress(c).2).unwrap_or(0);
                if egress_vlan != vlan {
                    return Err(RpcError::unimplemented(format!(
                        "{what}: router_interface {rif} sends {}; an interface receives and sends on the same VLAN",
                        if egress_vlan == 0 {
                            "untagged".to_string()
                        } else {
                            format!("on VLAN {egress_vlan}")
                        }
                    )));
                }
            }
        }
        Ok(())
    }

    /// A `router_interface` entry must send on the VLAN its `ingress_rif`
    /// entries receive.
    fn check_router_interface(&self, rif: u32, call: &ActionCall) -> Result<(), RpcError> {
        let (port, _, vlan) = rif_egress(call);
        self.check_port(u128::from(port), "table `router_interface`")?;
        let tagged = self
            .ingress_by_rif
            .get(&rif)
            .and_then(|m| m.keys().map(|(_, v)| *v).find(|v| *v != 0));
        if let Some(t) = tagged {
            if t != vlan {
                return Err(RpcError::unimplemented(format!(
                    "router_interface {rif}: its ingress_rif entries receive VLAN {t}, so it must send on VLAN {t}"
                )));
            }
        }
        Ok(())
    }

    // ---- derivation ----

    /// Router interface `rif`, if it has a `router_interface` entry.
    fn derive_rif(&self, rif: u32) -> Option<Object> {
        let e = self.table(TableKind::RouterInterface).get(&rif_key(rif))?;
        let (port, mac_v, vlan) = rif_egress(e.direct()?);
        let empty = BTreeMap::new();
        let ingress = self.ingress_by_rif.get(&rif).unwrap_or(&empty);
        let vrf = ingress.values().next().copied().unwrap_or(0);
        let tagged = ingress.keys().map(|(_, v)| *v).find(|v| *v != 0);
        let vlan_id = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let kind = if ingress.len() == 1 && ingress.contains_key(&(port, vlan)) {
            if vlan == 0 {
                RifKind::Port { port: PortId(port) }
            } else {
                RifKind::SubPort {
                    port: PortId(port),
                    vlan: vlan_id(vlan),
                }
            }
        } else {
            let v = if vlan != 0 {
                vlan_id(vlan)
            } else {
                tagged.map(vlan_id).unwrap_or(NO_TAG_VLAN)
            };
            RifKind::Vlan {
                vlan: v,
                members: ingress
                    .keys()
                    .map(|(p, t)| VlanMember {
                        port: PortId(*p),
                        tagged: *t != 0,
                    })
                    .collect(),
            }
        };
        Some(Object::from(RouterInterface {
            id: RifId(rif),
            name: format!("rif{rif}"),
            vrf: VrfId(vrf),
            kind,
            mac: mac(mac_v),
            mtu: RIF_MTU,
            admin_up: true,
        }))
    }

    /// The model object of an entry of any table but the router interface
    /// ones (which depend on other entries), with the checks that need only
    /// the entry itself.
    fn derive_own(
        &self,
        kind: TableKind,
        key: &EntryKey,
        entry: &Entry,
    ) -> Result<Option<Object>, RpcError> {
        let t = kind.name();
        let direct = || {
            entry
                .direct()
                .ok_or_else(|| RpcError::internal(format!("table `{t}`: stored without an action")))
        };
        Ok(Some(match kind {
            TableKind::L3Admit | TableKind::IngressRif | TableKind::RouterInterface => {
                return Ok(None)
            }
            TableKind::Neighbor => {
                let call = direct()?;
                let port = match call.kind {
                    ActionKind::SetDstMacAndPort => {
                        self.check_port(param(call, 1), "table `neighbor`")?;
                        Some(PortId(param(call, 1) as u32))
                    }
                    _ => None,
                };
                Object::Neighbor(Neighbor {
                    rif: RifId(key.exact(0) as u32),
                    ip: neighbor_ip(key.exact(1)),
                    mac: mac(param(call, 0)),
                    port,
                })
            }
            TableKind::Nexthop => {
                let call = direct()?;
                Object::NextHop(NextHop {
                    id: NextHopId(key.exact(0) as u32),
                    rif: RifId(param(call, 0) as u32),
                    ip: neighbor_ip(param(call, 1)),
                })
            }
            TableKind::WcmpGroup => {
                let StoredAction::OneShot(set) = &entry.action else {
                    return Err(RpcError::internal("wcmp_group entry without an action set"));
                };
                let mut members: Vec<GroupMember> = Vec::new();
                for (call, weight) in &set.members {
                    let nh = NextHopId(param(call, 0) as u32);
                    let w = u32::try_from(*weight).unwrap_or(0);
                    match members.iter_mut().find(|m| m.next_hop == nh) {
                        Some(m) => m.weight += w,
                        None => members.push(GroupMember {
                            next_hop: nh,
                            weight: w,
                        }),
                    }
                }
                Object::Group(NextHopGroup {
                    id: GroupId(key.exact(0) as u32),
                    members,
                })
            }
            TableKind::Ipv4Lpm | TableKind::Ipv6Lpm => {
                let (vrf, prefix) = route_key(kind, key)?;
                let call = direct()?;
                let action = match call.kind {
                    ActionKind::SetNexthopId => {
                        RouteAction::NextHop(NextHopId(param(call, 0) as u32))
                    }
                    ActionKind::SetWcmpGroupId => {
                        RouteAction::Group(GroupId(param(call, 0) as u32))
                    }
                    ActionKind::ToCpu => RouteAction::ToCpu,
                    _ => RouteAction::Drop,
                };
                Object::Route(Route {
                    vrf,
                    prefix,
                    action,
                })
            }
            TableKind::AclPreIngress | TableKind::AclIngress => {
                Object::from(self.derive_acl(kind, key, entry, direct()?)?)
            }
        }))
    }

    fn derive_acl(
        &self,
        kind: TableKind,
        key: &EntryKey,
        entry: &Entry,
        call: &ActionCall,
    ) -> Result<AclRule, RpcError> {
        use acl_field as f;
        let t = kind.name();
        let ternary = |i: usize| match key.fields.get(i) {
            Some(Some(FieldValue::Ternary { value, mask })) => Some((*value, *mask)),
            _ => None,
        };
        let name = |i: usize| kind.keys()[i].name;
        let exact_only = |i: usize, full: u128| -> Result<Option<u128>, RpcError> {
            match ternary(i) {
                None => Ok(None),
                Some((v, m)) if m == full => Ok(Some(v)),
                Some(_) => Err(RpcError::unimplemented(format!(
                    "table `{t}`: the x86 target matches `{}` exactly (mask 0x{full:x}) or not at all",
                    name(i)
                ))),
            }
        };
        let prefix = |i4: usize, i6: usize| -> Result<Option<IpNet>, RpcError> {
            match (ternary(i4), ternary(i6)) {
                (None, None) => Ok(None),
                (Some(_), Some(_)) => Err(RpcError::unimplemented(format!(
                    "table `{t}`: the x86 target matches `{}` or `{}`, not both",
                    name(i4),
                    name(i6)
                ))),
                (Some((v, m)), None) => match prefix_len(m, 32) {
                    Some(len) => Ok(Ipv4Net::new(Ipv4Addr::from(v as u32), len)
                        .ok()
                        .map(IpNet::V4)),
                    None => Err(RpcError::unimplemented(format!(
                        "table `{t}`: the x86 target matches `{}` with a prefix mask only",
                        name(i4)
                    ))),
                },
                (None, Some((v, m))) => match prefix_len(m, 128) {
                    Some(len) => Ok(Ipv6Net::new(Ipv6Addr::from(v), len).ok().map(IpNet::V6)),
                    None => Err(RpcError::unimplemented(format!(
                        "table `{t}`: the x86 target matches `{}` with a prefix mask only",
                        name(i6)
                    ))),
                },
            }
        };
        let range = |i: usize| match key.fields.get(i) {
            Some(Some(FieldValue::Range { low, high })) => Some(PortRange {
                first: *low as u16,
                last: *high as u16,
            }),
            _ => None,
        };
        if ternary(f::TTL).is_some() {
            return Err(RpcError::unimplemented(format!(
                "table `{t}`: the x86 target does not match on `ttl`"
            )));
        }
        let in_port = exact_only(f::IN_PORT, 0x1ff)?;
        if let Some(p) = in_port {
            self.check_port(p, &format!("table `{t}`, field `in_port`"))?;
        }
        let vlan = exact_only(f::VLAN_ID, 0xfff)?;
        if vlan == Some(0) {
            return Err(RpcError::unimplemented(format!(
                "table `{t}`: the x86 target cannot match untagged frames (vlan_id 0)"
            )));
        }
        let masked_mac = |i: usize| {
            ternary(i).map(|(v, m)| Masked {
                value: mac(v),
                mask: mac(m),
            })
        };
        let matches = AclMatch {
            in_port: in_port.map(|p| PortId(p as u32)),
            src_mac: masked_mac(f::SRC_MAC),
            dst_mac: masked_mac(f::DST_MAC),
            ether_type: ternary(f::ETHER_TYPE).map(|(v, m)| Masked {
                value: v as u16,
                mask: m as u16,
            }),
            vlan: vlan.map(|v| v as u16),
            src_ip: prefix(f::SRC_IPV4, f::SRC_IPV6)?,
            dst_ip: prefix(f::DST_IPV4, f::DST_IPV6)?,
            ip_proto: exact_only(f::IP_PROTO, 0xff)?.map(|v| v as u8),
            src_port: range(f::L4_SRC_PORT),
            dst_port: range(f::L4_DST_PORT),
            tcp_flags: ternary(f::TCP_FLAGS).map(|(v, m)| Masked {
                value: v as u8,
                mask: m as u8,
            }),
            dscp: exact_only(f::DSCP, 0x3f)?.map(|v| v as u8),
        };
        let action = match call.kind {
            ActionKind::AclForward => AclAction::Permit,
            ActionKind::AclDrop => AclAction::Drop,
            ActionKind::AclTrap => AclAction::Trap,
            ActionKind::AclCopy => AclAction::Copy,
            ActionKind::SetVrf => AclAction::SetVrf(VrfId(param(call, 0) as u32)),
            other => {
                return Err(RpcError::internal(format!(
                    "table `{t}` stored action `{}`",
                    other.name()
                )))
            }
        };
        Ok(AclRule {
            id: AclId(entry.model_id),
            name: format!("{t}#{}", entry.model_id),
            stage: if kind == TableKind::AclPreIngress {
                AclStage::PreIngress
            } else {
                AclStage::Ingress
            },
            priority: u32::try_from(key.priority).unwrap_or(0),
            matches,
            action,
        })
    }

    // ---- the shadow model ----

    /// Makes the shadow hold `new` under `key` (nothing when `None`),
    /// creating the VRF it needs first and removing the one the old object
    /// alone used. One search of the shadow's map for the object itself.
    fn put_object(
        &mut self,
        key: ObjectKey,
        new: Option<Object>,
        log: &mut Vec<(Delta, Option<Object>)>,
    ) -> Result<(), ModelError> {
        let (d, old) = match new {
            Some(n) => {
                if let Some(v) = vrf_of(&n) {
                    let k = ObjectKey::Vrf(v);
                    if !self.shadow.contains(&k) {
                        let vrf = Object::Vrf(Vrf {
                            id: v,
                            name: format!("vrf{v}"),
                        });
                        self.shadow.apply(&Delta::Create(vrf.clone()))?;
                        log.push((Delta::Create(vrf), None));
                    }
                }
                let old = self.shadow.upsert(n.clone())?;
                if old.as_ref() == Some(&n) {
                    return Ok(());
                }
                match old {
                    Some(o) => (Delta::Modify(n), Some(o)),
                    None => (Delta::Create(n), None),
                }
            }
            None => match self.shadow.remove(&key) {
                Ok(o) => (Delta::Delete(key), Some(o)),
                Err(ModelError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        let old_vrf = old.as_ref().and_then(vrf_of);
        log.push((d, old));
        if let Some(v) = old_vrf {
            let k = ObjectKey::Vrf(v);
            if v != VrfId::DEFAULT && self.shadow.users_of(&k) == 0 {
                let vrf = self.shadow.remove(&k)?;
                log.push((Delta::Delete(k), Some(vrf)));
            }
        }
        Ok(())
    }

    fn undo_model(&mut self, log: Vec<(Delta, Option<Object>)>) {
        for (d, prev) in log.into_iter().rev() {
            let inv = inverse(&d, &prev, self.shadow.contains(&d.key()));
            if let Err(e) = self.shadow.apply(&inv) {
                tracing::error!("cannot undo {d:?} in the target's model: {e}");
            }
        }
    }

    fn undo_store(&mut self, undo: StoreUndo) {
        match undo {
            StoreUndo::Nothing => {}
            StoreUndo::Table { kind, key, old } => {
                self.put_entry(kind, &key, old);
            }
            StoreUndo::Clone { id, old } => match old {
                Some(o) => {
                    self.clone_sessions.insert(id, o);
                }
                None => {
                    self.clone_sessions.remove(&id);
                }
            },
        }
    }

    /// Undoes a successful update (store and shadow).
    /// Undoes a successful update, the last one in `log`.
    fn undo(&mut self, a: Applied, log: &mut ModelLog) {
        let tail = log.split_off(a.model.start);
        self.undo_model(tail);
        self.undo_store(a.store);
    }

    // ---- updates ----

    /// Applies one update to the store and the shadow model, appending its
    /// model deltas to `log` (nothing when it fails).
    pub fn update(
        &mut self,
        pipe: &Pipeline,
        u: &p4::Update,
        log: &mut ModelLog,
    ) -> Result<Applied, RpcError> {
        use p4::update::Type;
        let ty = match Type::try_from(u.r#type) {
            Ok(Type::Insert) => Type::Insert,
            Ok(Type::Modify) => Type::Modify,
            Ok(Type::Delete) => Type::Delete,
            _ => {
                return Err(RpcError::invalid(format!(
                    "update type {} is not INSERT, MODIFY or DELETE",
                    u.r#type
                )))
            }
        };
        let Some(entity) = u.entity.as_ref().and_then(|e| e.entity.as_ref()) else {
            return Err(RpcError::invalid("the update has no entity"));
        };
        match entity {
            E::TableEntry(te) => self.table_update(pipe, ty, te, log),
            E::PacketReplicationEngineEntry(pre) => self.pre_update(ty, pre, log.len()),
            E::ActionProfileMember(_) | E::ActionProfileGroup(_) => Err(RpcError::unimplemented(
                "the x86 target supports one-shot action selector programming only (no action profile members or groups)",
            )),
            other => Err(RpcError::unimplemented(format!(
                "the x86 target has no {} entities",
                entity_name(other)
            ))),
        }
    }

    fn table_update(
        &mut self,
        pipe: &Pipeline,
        ty: p4::update::Type,
        te: &p4::TableEntry,
        log: &mut ModelLog,
    ) -> Result<Applied, RpcError> {
        let start = log.len();
        use p4::update::Type;
        let kind = pipe.table_kind(te.table_id)?;
        let t = kind.name();
        if te.is_default_action {
            if !te.r#match.is_empty() || te.priority != 0 {
                return Err(RpcError::invalid(format!(
                    "table `{t}`: the default entry has no match and no priority"
                )));
            }
            return Err(match ty {
                Type::Modify => RpcError::permission_denied(format!(
                    "table `{t}`: the default action is constant"
                )),
                _ => RpcError::invalid(format!(
                    "table `{t}`: the default entry can only be modified, not inserted or deleted"
                )),
            });
        }
        let w = decode_table_write(pipe, kind, te, ty == Type::Delete)?;
        // What the update needs of the entry it replaces (the entry itself
        // comes back from the store when it is replaced). An INSERT into a
        // table whose entries are checked alone (routes, next hops...) finds
        // out whether the entry exists when it is stored: one search of the
        // table instead of two.
        let checked_alone = !matches!(kind, TableKind::IngressRif | TableKind::RouterInterface);
        let late_exists = ty == Type::Insert && checked_alone;
        let (exists, old_model_id, old_rif) = match late_exists {
            true => (false, 0, None),
            false => match self.table(kind).get(&w.key) {
                Some(e) => (true, e.model_id, e.direct().map(|c| param(c, 0) as u32)),
                None => (false, 0, None),
            },
        };
        let new = match ty {
            Type::Insert => {
                if exists {
                    return Err(RpcError::already_exists(format!(
                        "table `{t}`: the entry already exists"
                    )));
                }
                let Some(action) = w.action else {
                    return Err(RpcError::invalid(format!(
                        "table `{t}`: an INSERT needs an action"
                    )));
                };
                let model_id = if matches!(kind, TableKind::AclPreIngress | TableKind::AclIngress) {
                    self.next_acl_id
                } else {
                    0
                };
                Some(Entry {
                    action,
                    metadata: w.metadata,
                    controller_metadata: w.controller_metadata,
                    model_id,
                })
            }
            Type::Modify => {
                if !exists {
                    return Err(RpcError::not_found(format!(
                        "table `{t}`: no such entry to modify"
                    )));
                }
                let Some(action) = w.action else {
                    // No action and no direct resource: nothing changes.
                    return Ok(Applied {
                        store: StoreUndo::Nothing,
                        model: start..start,
                    });
                };
                Some(Entry {
                    action,
                    metadata: w.metadata,
                    controller_metadata: w.controller_metadata,
                    model_id: old_model_id,
                })
            }
            _ => {
                if !exists {
                    return Err(RpcError::not_found(format!(
                        "table `{t}`: no such entry to delete"
                    )));
                }
                None
            }
        };

        // Checks that need other entries, and the object of entries that
        // stand alone (derived before the store changes, so a refusal
        // leaves nothing to undo).
        let mut own = None;
        if let Some(e) = &new {
            match (kind, e.direct()) {
                (TableKind::IngressRif, Some(call)) => self.check_ingress(&w.key, call)?,
                (TableKind::RouterInterface, Some(call)) => {
                    self.check_router_interface(w.key.exact(0) as u32, call)?
                }
                _ => own = self.derive_own(kind, &w.key, e)?,
            }
        }
        let affected_rifs: Vec<u32> = match kind {
            TableKind::RouterInterface => vec![w.key.exact(0) as u32],
            TableKind::IngressRif => {
                let new_rif = new
                    .as_ref()
                    .and_then(|e| e.direct())
                    .map(|c| param(c, 0) as u32);
                let mut v: Vec<u32> = old_rif.into_iter().chain(new_rif).collect();
                v.dedup();
                v
            }
            _ => Vec::new(),
        };
        let own_key = match kind {
            TableKind::Neighbor => Some(ObjectKey::Neighbor(
                RifId(w.key.exact(0) as u32),
                neighbor_ip(w.key.exact(1)),
            )),
            TableKind::Nexthop => Some(ObjectKey::NextHop(NextHopId(w.key.exact(0) as u32))),
            TableKind::WcmpGroup => Some(ObjectKey::Group(GroupId(w.key.exact(0) as u32))),
            TableKind::Ipv4Lpm | TableKind::Ipv6Lpm => {
                let (vrf, prefix) = route_key(kind, &w.key)?;
                Some(ObjectKey::Route(RouteKey { vrf, prefix }))
            }
            TableKind::AclPreIngress | TableKind::AclIngress => {
                let id = new.as_ref().map_or(old_model_id, |e| e.model_id);
                Some(ObjectKey::Acl(AclId(id)))
            }
            _ => None,
        };

        let is_insert_acl =
            ty == Type::Insert && own_key.is_some_and(|k| matches!(k, ObjectKey::Acl(_)));
        let prev = self.put_entry(kind, &w.key, new);
        if late_exists && prev.is_some() {
            self.put_entry(kind, &w.key, prev);
            return Err(RpcError::already_exists(format!(
                "table `{t}`: the entry already exists"
            )));
        }
        let mut result = Ok(());
        for rif in affected_rifs {
            let obj = self.derive_rif(rif);
            result = self.put_object(ObjectKey::Rif(RifId(rif)), obj, log);
            if result.is_err() {
                break;
            }
        }
        if let (Ok(()), Some(k)) = (&result, own_key) {
            result = self.put_object(k, own, log);
        }
        match result {
            Ok(()) => {
                if is_insert_acl {
                    self.next_acl_id = self.next_acl_id.wrapping_add(1).max(1);
                }
                Ok(Applied {
                    store: StoreUndo::Table {
                        kind,
                        key: w.key,
                        old: prev,
                    },
                    model: start..log.len(),
                })
            }
            Err(e) => {
                let tail = log.split_off(start);
                self.undo_model(tail);
                self.put_entry(kind, &w.key, prev);
                Err(model_error(e).context(format!("table `{t}`")))
            }
        }
    }

    fn pre_update(
        &mut self,
        ty: p4::update::Type,
        pre: &p4::PacketReplicationEngineEntry,
        at: usize,
    ) -> Result<Applied, RpcError> {
        use p4::packet_replication_engine_entry::Type as Pre;
        use p4::update::Type;
        let cs = match &pre.r#type {
            Some(Pre::CloneSessionEntry(cs)) => cs,
            Some(Pre::MulticastGroupEntry(_)) => {
                return Err(RpcError::unimplemented(
                    "the x86 target has no multicast groups",
                ))
            }
            None => return Err(RpcError::invalid("the replication engine entry is empty")),
        };
        let id = cs.session_id;
        if id == 0 {
            return Err(RpcError::invalid("clone session id 0 is not valid"));
        }
        let old = self.clone_sessions.get(&id).cloned();
        let what = format!("clone session {id}");
        match ty {
            Type::Insert if old.is_some() => {
                return Err(RpcError::already_exists(format!("{what} already exists")))
            }
            Type::Modify | Type::Delete if old.is_none() => {
                return Err(RpcError::not_found(format!("{what} does not exist")))
            }
            _ => {}
        }
        if ty == Type::Delete {
            self.clone_sessions.remove(&id);
        } else {
            if cs.packet_length_bytes < 0 {
                return Err(RpcError::invalid(format!(
                    "{what}: packet_length_bytes {} is negative",
                    cs.packet_length_bytes
                )));
            }
            let mut canonical = cs.clone();
            for r in &mut canonical.replicas {
                if let Some(p4::replica::PortKind::Port(p)) = &mut r.port_kind {
                    let v = super::bitstring::decode(p, 32, &format!("{what}, replica port"))?;
                    *p = super::bitstring::encode(v);
                }
            }
            self.clone_sessions.insert(id, canonical);
        }
        Ok(Applied {
            store: StoreUndo::Clone { id, old },
            model: at..at,
        })
    }

    /// Applies a batch: every update to the store and the shadow, then all
    /// their model deltas to `backend` in one call. Returns one result per
    /// update. With `all_or_none` (ROLLBACK_ON_ERROR, DATAPLANE_ATOMIC) the
    /// first failure undoes the whole batch and the other updates report
    /// ABORTED.
    pub fn write(
        &mut self,
        pipe: &Pipeline,
        backend: &mut dyn Backend,
        updates: &[p4::Update],
        all_or_none: bool,
    ) -> Vec<Result<(), RpcError>> {
        let mut results: Vec<Result<(), RpcError>> = vec![Ok(()); updates.len()];
        let mut applied: Vec<(usize, Applied)> = Vec::with_capacity(updates.len());
        let mut log = ModelLog::with_capacity(updates.len());
        for (i, u) in updates.iter().enumerate() {
            match self.update(pipe, u, &mut log) {
                Ok(a) => applied.push((i, a)),
                Err(e) => {
                    results[i] = Err(e);
                    if all_or_none {
                        break;
                    }
                }
            }
        }
        if all_or_none {
            if let Some(failed) = results.iter().position(|r| r.is_err()) {
                for (_, a) in applied.into_iter().rev() {
                    self.undo(a, &mut log);
                }
                abort_others(&mut results, failed);
                return results;
            }
        }

        // The batch's deltas in order, with the object each replaced and the
        // update it belongs to.
        let n = log.len();
        let mut owners = Vec::with_capacity(n);
        let mut stores = Vec::with_capacity(applied.len());
        for (i, a) in applied {
            owners.extend(a.model.map(|_| i));
            stores.push((i, a.store));
        }
        let (deltas, prevs): (Vec<Delta>, Vec<Option<Object>>) = log.into_iter().unzip();
        if deltas.is_empty() {
            return results;
        }
        let outcome = backend.apply(&deltas);
        let mut refused: BTreeMap<usize, RpcError> = BTreeMap::new();
        for (n, owner) in owners.iter().enumerate() {
            let err = match outcome.get(n) {
                Some(Ok(())) => continue,
                Some(Err(e)) => backend_error(e),
                None => RpcError::internal("the dataplane returned no result for this change"),
            };
            tracing::error!(
                delta = ?deltas[n],
                "the dataplane refused a change its model accepted: {}",
                err.message
            );
            refused.entry(*owner).or_insert(err);
        }
        if refused.is_empty() {
            return results;
        }

        if all_or_none {
            // Take back what the backend did take, newest first; then undo
            // the whole batch here.
            let took = |n: usize| matches!(outcome.get(n), Some(Ok(())));
            let undo: Vec<Delta> = (0..deltas.len())
                .rev()
                .filter(|n| took(*n))
                .map(|n| {
                    inverse(
                        &deltas[n],
                        &prevs[n],
                        !matches!(deltas[n], Delta::Delete(_)),
                    )
                })
                .collect();
            for r in backend.apply(&undo) {
                if let Err(e) = r {
                    tracing::error!("cannot take back a change from the dataplane: {e}");
                }
            }
            self.undo_model(deltas.into_iter().zip(prevs).collect());
            for (_, store) in stores.into_iter().rev() {
                self.undo_store(store);
            }
            let first = refused.keys().next().copied().unwrap_or(0);
            for (i, e) in refused {
                results[i] = Err(e);
            }
            abort_others(&mut results, first);
            return results;
        }

        // Forget the refused updates (newest first), then bring the backend
        // in line with what the remaining entries describe.
        for (i, store) in stores.into_iter().rev() {
            if refused.contains_key(&i) {
                self.undo_store(store);
            }
        }
        for (i, e) in refused {
            results[i] = Err(e);
        }
        self.resync(backend);
        results
    }

    /// Makes `backend` hold what the stored entries describe, starting from
    /// what it reports; the shadow becomes what it then holds.
    fn resync(&mut self, backend: &mut dyn Backend) {
        let have = match backend.read() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read the dataplane's state back: {e}");
                return;
            }
        };
        let want = self.derive_all();
        let deltas = diff(&have, &want);
        for (d, r) in deltas.iter().zip(backend.apply(&deltas)) {
            if let Err(e) = r {
                tracing::error!(delta = ?d, "the dataplane refuses an installed entry's change: {e}");
            }
        }
        match backend.read() {
            Ok(s) => self.shadow = s,
            Err(e) => {
                tracing::error!("cannot read the dataplane's state back: {e}");
                self.shadow = want;
            }
        }
    }

    /// The model of every stored entry, built from scratch.
    fn derive_all(&self) -> ForwardingState {
        let mut s = self.base.clone();
        let mut objects: Vec<Object> = Vec::new();
        for key in self.table(TableKind::RouterInterface).keys() {
            objects.extend(self.derive_rif(key.exact(0) as u32));
        }
        for kind in [
            TableKind::Neighbor,
            TableKind::Nexthop,
            TableKind::WcmpGroup,
            TableKind::Ipv4Lpm,
            TableKind::Ipv6Lpm,
            TableKind::AclPreIngress,
            TableKind::AclIngress,
        ] {
            for (key, e) in self.table(kind) {
                match self.derive_own(kind, key, e) {
                    Ok(o) => objects.extend(o),
                    Err(err) => tracing::error!("table `{}`: {}", kind.name(), err.message),
                }
            }
        }
        for o in objects {
            if let Some(v) = vrf_of(&o) {
                if !s.contains(&ObjectKey::Vrf(v)) {
                    let _ = s.upsert(Object::Vrf(Vrf {
                        id: v,
                        name: format!("vrf{v}"),
                    }));
                }
            }
            if let Err(e) = s.upsert(o) {
                tracing::error!("an installed entry does not fit the model: {e}");
            }
        }
        s
    }

    /// Removes every entry (a new pipeline was committed): the backend keeps
    /// its ports and the default VRF only.
    pub fn clear(&mut self, backend: &mut dyn Backend) {
        for t in &mut self.tables {
            t.clear();
        }
        self.ingress_by_rif.clear();
        self.clone_sessions.clear();
        let deltas = diff(&self.shadow, &self.base);
        let mut refused = false;
        for (d, r) in deltas.iter().zip(backend.apply(&deltas)) {
            if let Err(e) = r {
                tracing::error!(delta = ?d, "the dataplane refuses to remove an object: {e}");
                refused = true;
            }
        }
        self.shadow = if refused {
            backend.read().unwrap_or_else(|_| self.base.clone())
        } else {
            self.base.clone()
        };
    }

    // ---- reads ----

    /// The entities one read request selects.
    pub fn read(&self, pipe: &Pipeline, entity: &p4::Entity) -> Result<Vec<p4::Entity>, RpcError> {
        let Some(e) = &entity.entity else {
            return Err(RpcError::invalid("a read request must name an entity type"));
        };
        match e {
            E::TableEntry(te) => Ok(self
                .read_table(pipe, te)?
                .into_iter()
                .map(|t| p4::Entity {
                    entity: Some(E::TableEntry(t)),
                })
                .collect()),
            E::PacketReplicationEngineEntry(pre) => self.read_pre(pre),
            E::ActionProfileMember(_) | E::ActionProfileGroup(_) => Err(RpcError::unimplemented(
                "the x86 target supports one-shot action selector programming only (no action profile members or groups)",
            )),
            other => Err(RpcError::unimplemented(format!(
                "the x86 target has no {} entities",
                entity_name(other)
            ))),
        }
    }

    #[allow(deprecated)] // controller_metadata: deprecated, still read back as written
    fn read_table(
        &self,
        pipe: &Pipeline,
        te: &p4::TableEntry,
    ) -> Result<Vec<p4::TableEntry>, RpcError> {
        use p4::table_action::Type as TA;
        if te.table_id == 0 {
            let filtered = !te.r#match.is_empty()
                || te.action.is_some()
                || te.priority != 0
                || te.controller_metadata != 0
                || !te.metadata.is_empty()
                || te.is_default_action;
            if filtered {
                return Err(RpcError::invalid(
                    "a read of all tables (table_id 0) takes no other filter",
                ));
            }
            let mut out = Vec::with_capacity(self.entry_count());
            for kind in TableKind::ALL {
                out.extend(
                    self.table(kind)
                        .iter()
                        .map(|(k, e)| encode_entry(pipe, kind, k, e)),
                );
            }
            return Ok(out);
        }
        let kind = pipe.table_kind(te.table_id)?;
        if te.is_default_action {
            if !te.r#match.is_empty() || te.priority != 0 {
                return Err(RpcError::invalid(format!(
                    "table `{}`: the default entry has no match and no priority",
                    kind.name()
                )));
            }
            return Ok(vec![default_entry(pipe, kind)]);
        }
        let action_filter = match te.action.as_ref().and_then(|a| a.r#type.as_ref()) {
            None => None,
            Some(TA::Action(a)) if !kind.one_shot() => Some(a.action_id),
            Some(_) => {
                return Err(RpcError::invalid(format!(
                    "table `{}`: reads filter on a direct action's id only",
                    kind.name()
                )))
            }
        };
        let keep = |e: &Entry, key: &EntryKey| {
            (te.priority == 0 || key.priority == te.priority)
                && (te.controller_metadata == 0 || e.controller_metadata == te.controller_metadata)
                && (te.metadata.is_empty() || e.metadata == te.metadata)
                && action_filter
                    .is_none_or(|id| e.direct().is_some_and(|c| pipe.action_id(c.kind) == id))
        };
        if !te.r#match.is_empty() {
            let key = super::entry::decode_key(pipe, kind, te)?;
            return Ok(self
                .table(kind)
                .get(&key)
                .filter(|e| keep(e, &key))
                .map(|e| encode_entry(pipe, kind, &key, e))
                .into_iter()
                .collect());
        }
        Ok(self
            .table(kind)
            .iter()
            .filter(|(k, e)| keep(e, k))
            .map(|(k, e)| encode_entry(pipe, kind, k, e))
            .collect())
    }

    fn read_pre(
        &self,
        pre: &p4::PacketReplicationEngineEntry,
    ) -> Result<Vec<p4::Entity>, RpcError> {
        use p4::packet_replication_engine_entry::Type as Pre;
        let id = match &pre.r#type {
            Some(Pre::MulticastGroupEntry(_)) => {
                return Err(RpcError::unimplemented(
                    "the x86 target has no multicast groups",
                ))
            }
            Some(Pre::CloneSessionEntry(cs)) => cs.session_id,
            None => 0,
        };
        Ok(self
            .clone_sessions
            .iter()
            .filter(|(k, _)| id == 0 || **k == id)
            .map(|(_, cs)| p4::Entity {
                entity: Some(E::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type: Some(Pre::CloneSessionEntry(cs.clone())),
                    },
                )),
            })
            .collect())
    }
}

fn abort_others(results: &mut [Result<(), RpcError>], failed: usize) {
    for (i, r) in results.iter_mut().enumerate() {
        if i != failed && r.is_ok() {
            *r = Err(RpcError::new(
                Code::Aborted,
                format!("not applied: update {failed} failed and the batch is all-or-none"),
            ));
        }
    }
}

/// The VRF and prefix of a route entry.
fn route_key(kind: TableKind, key: &EntryKey) -> Result<(VrfId, IpNet), RpcError> {
    let vrf = VrfId(key.exact(0) as u32);
    let (value, len) = match key.fields.get(1) {
        Some(Some(FieldValue::Lpm { value, len })) => (*value, *len as u8),
        _ => (0, 0),
    };
    let prefix = if kind == TableKind::Ipv4Lpm {
        Ipv4Net::new(Ipv4Addr::from(value as u32), len).map(IpNet::V4)
    } else {
        Ipv6Net::new(Ipv6Addr::from(value), len).map(IpNet::V6)
    };
    let prefix = prefix
        .map_err(|_| RpcError::internal(format!("table `{}`: prefix length {len}", kind.name())))?;
    Ok((vrf, prefix))
}

fn entity_name(e: &E) -> &'static str {
    match e {
        E::ExternEntry(_) => "extern",
        E::TableEntry(_) => "table",
        E::ActionProfileMember(_) => "action profile member",
        E::ActionProfileGroup(_) => "action profile group",
        E::MeterEntry(_) => "meter",
        E::DirectMeterEntry(_) => "direct meter",
        E::CounterEntry(_) => "counter",
        E::DirectCounterEntry(_) => "direct counter",
        E::PacketReplicationEngineEntry(_) => "packet replication engine",
        E::ValueSetEntry(_) => "value set",
        E::RegisterEntry(_) => "register",
        E::DigestEntry(_) => "digest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_len(0xffff_ff00, 32), Some(24));
        assert_eq!(prefix_len(0xffff_ffff, 32), Some(32));
        assert_eq!(prefix_len(0x8000_0000, 32), Some(1));
        assert_eq!(prefix_len(0xff00_ff00, 32), None);
        assert_eq!(prefix_len(0x0000_00ff, 32), None);
        assert_eq!(prefix_len(u128::MAX, 128), Some(128));
        assert_eq!(prefix_len(u128::MAX << 64, 128), Some(64));
    }

    #[test]
    fn neighbor_addresses_are_ipv4_mapped() {
        let v4: u128 = 0xffff_c000_0201;
        assert_eq!(neighbor_ip(v4), "192.0.2.1".parse::<IpAddr>().unwrap());
        let v6 = u128::from("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(neighbor_ip(v6), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(mac(0x0200_0000_0a01), "02:00:00:00:0a:01".parse().unwrap());
    }
}
