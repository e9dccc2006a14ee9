//! The compiler from the forwarding model to P4Runtime entities of the
//! nos.p4 program (see `p4/programs/README.md` for the name contract).
//!
//! | model object | entities |
//! |---|---|
//! | port, VRF | none (ports are the target's; VRFs are numbers in entries) |
//! | router interface `R` | `router_interface` `R` (port, source MAC, VLAN) and one `ingress_rif` entry per (port, VLAN) it receives on |
//! | the router MACs | one `l3_admit` entry per MAC of an interface that receives anything |
//! | neighbor | `neighbor` (rif, IP) → `set_dst_mac`, or `set_dst_mac_and_port` when the model names the member port |
//! | next hop | `nexthop` → `set_ip_nexthop` |
//! | group | `wcmp_group`, one `TableEntry` whose action is a one-shot `action_profile_action_set` |
//! | route | `ipv4_lpm` / `ipv6_lpm` (vrf, prefix) → next hop, group, `drop` or `to_cpu` |
//! | ACL rule | `acl_pre_ingress` / `acl_ingress`, P4 priority = model priority + 1 (P4 priorities start at 1) |
//!
//! An interface that is administratively down, or whose port is, receives
//! nothing: its `ingress_rif` entries (and an `l3_admit` entry no other
//! interface needs) are left out; its `router_interface` entry stays, so
//! next hops on it stay valid. IPv4 addresses in `neighbor_ip` are
//! IPv4-mapped (`::ffff:a.b.c.d`), so IPv4-mapped IPv6 addresses are
//! refused. An ACL rule matching IPv4 (IPv6) addresses without an
//! EtherType also matches EtherType 0x0800 (0x86dd), since the program's
//! address fields are 0 for the other family.
//!
//! Every id comes from the [`Schema`], which resolved it by name.

use crate::bytes::{encode_checked, max_value, BytesError};
use crate::p4info::{AclTable, ActionRef, FieldRef, RouteTable, Schema, TableRef};
use ipnet::IpNet;
use nos_core::{
    AclAction, AclRule, AclStage, Delta, ForwardingState, MacAddr, ModelError, Neighbor, NextHop,
    NextHopGroup, Object, ObjectKey, PortId, RifKind, Route, RouteAction, RouterInterface,
};
use p4::field_match::FieldMatchType as M;
use p4runtime_proto::p4::v1 as p4;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Why an object cannot be written to the target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A value does not fit its field in this P4Info.
    #[error(transparent)]
    Value(#[from] BytesError),
    /// The program cannot express the object.
    #[error("{0}")]
    Unsupported(String),
    /// The object would share its entry with another object.
    #[error("{0}")]
    Conflict(String),
    /// The delta does not fit the model (a dangling reference, say).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// One update to write, with what the write planner needs to order it.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub update: p4::Update,
    /// The dependency level of its table ([`Schema::level`]).
    pub level: u8,
    /// A hash of the entry's key: two updates of one entry never share a
    /// batch.
    pub key: u64,
}

/// What one delta compiled to.
#[derive(Clone, Debug)]
pub struct CompiledDelta {
    pub updates: Vec<Planned>,
    /// The object the delta replaced or removed (to undo it in the model).
    pub previous: Option<Object>,
}

/// Names a field in value errors.
struct Label(&'static str, &'static str);

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}.{}`", self.0, self.1)
    }
}

fn bytes(v: u128, owner: &'static str, f: &FieldRef) -> Result<Vec<u8>, CompileError> {
    Ok(encode_checked(v, f.bits, &Label(owner, f.name))?)
}

fn exact(t: TableRef, f: &FieldRef, v: u128) -> Result<p4::FieldMatch, CompileError> {
    Ok(p4::FieldMatch {
        field_id: f.id,
        field_match_type: Some(M::Exact(p4::field_match::Exact {
            value: bytes(v, t.name, f)?,
        })),
    })
}

fn ternary(t: TableRef, f: &FieldRef, v: u128, mask: u128) -> Result<p4::FieldMatch, CompileError> {
    let mask = mask & max_value(f.bits);
    Ok(p4::FieldMatch {
        field_id: f.id,
        field_match_type: Some(M::Ternary(p4::field_match::Ternary {
            value: bytes(v & mask, t.name, f)?,
            mask: bytes(mask, t.name, f)?,
        })),
    })
}

fn call(a: &ActionRef, values: &[u128]) -> Result<p4::Action, CompileError> {
    Ok(p4::Action {
        action_id: a.id,
        params: a
            .params
            .iter()
            .zip(values)
            .map(|(p, v)| {
                Ok(p4::action::Param {
                    param_id: p.id,
                    value: bytes(*v, a.name, p)?,
                })
            })
            .collect::<Result<_, CompileError>>()?,
    })
}

fn direct(a: p4::Action) -> Option<p4::TableAction> {
    Some(p4::TableAction {
        r#type: Some(p4::table_action::Type::Action(a)),
    })
}

fn table_entry(
    t: TableRef,
    r#match: Vec<p4::FieldMatch>,
    action: Option<p4::TableAction>,
    priority: i32,
) -> p4::Entity {
    p4::Entity {
        entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
            table_id: t.id,
            r#match,
            action,
            priority,
            ..Default::default()
        })),
    }
}

fn mac(m: MacAddr) -> u128 {
    m.0.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

/// An address as the program's 128-bit `neighbor_ip`.
fn neighbor_ip(ip: IpAddr, what: &dyn fmt::Display) -> Result<u128, CompileError> {
    match ip {
        IpAddr::V4(v4) => Ok(0xffff_0000_0000 | u128::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return Err(CompileError::Unsupported(format!(
                    "{what}: the IPv4-mapped address {v6} would share its entry with IPv4's {}",
                    v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)
                )));
            }
            Ok(u128::from(v6))
        }
    }
}

fn prefix_mask(len: u8, bits: u32) -> u128 {
    if len == 0 {
        0
    } else {
        max_value(bits) & !(max_value(bits) >> u32::from(len))
    }
}

/// The hash of an entity's key (table, match, priority; clone session id).
pub fn key_hash(e: &p4::Entity) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &e.entity {
        Some(p4::entity::Entity::TableEntry(t)) => {
            t.table_id.hash(&mut h);
            t.priority.hash(&mut h);
            for m in &t.r#match {
                m.field_id.hash(&mut h);
                match &m.field_match_type {
                    Some(M::Exact(x)) => x.value.hash(&mut h),
                    Some(M::Lpm(x)) => (&x.value, x.prefix_len).hash(&mut h),
                    Some(M::Ternary(x)) => (&x.value, &x.mask).hash(&mut h),
                    Some(M::Range(x)) => (&x.low, &x.high).hash(&mut h),
                    Some(M::Optional(x)) => x.value.hash(&mut h),
                    Some(M::Other(x)) => x.value.hash(&mut h),
                    None => {}
                }
            }
        }
        Some(p4::entity::Entity::PacketReplicationEngineEntry(p)) => {
            1u8.hash(&mut h);
            if let Some(p4::packet_replication_engine_entry::Type::CloneSessionEntry(c)) = &p.r#type
            {
                c.session_id.hash(&mut h);
            }
        }
        _ => 2u8.hash(&mut h),
    }
    h.finish()
}

/// The same entity with its key only (what a DELETE carries).
pub fn key_only(e: &p4::Entity) -> p4::Entity {
    match &e.entity {
        Some(p4::entity::Entity::TableEntry(t)) => p4::Entity {
            entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                table_id: t.table_id,
                r#match: t.r#match.clone(),
                priority: t.priority,
                ..Default::default()
            })),
        },
        _ => e.clone(),
    }
}

fn table_id_of(e: &p4::Entity) -> u32 {
    match &e.entity {
        Some(p4::entity::Entity::TableEntry(t)) => t.table_id,
        _ => 0,
    }
}

/// The replication session ACL copies use (see the program's README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloneSession {
    pub session_id: u32,
    /// The CPU port.
    pub port: u32,
}

/// Turns model objects, deltas and whole states into entities, with the
/// ids of one P4Info.
#[derive(Clone, Debug)]
pub struct Compiler {
    s: Arc<Schema>,
    clone_session: Option<CloneSession>,
}

/// What a router interface receives: (port, VLAN tag or 0).
fn receives(r: &RouterInterface, model: &ForwardingState) -> Vec<(PortId, u16)> {
    if !r.admin_up {
        return Vec::new();
    }
    let up = |p: &PortId| model.ports().get(p).is_none_or(|p| p.admin_up);
    let mut v: Vec<(PortId, u16)> = match &r.kind {
        RifKind::Port { port } => vec![(*port, 0)],
        RifKind::SubPort { port, vlan } => vec![(*port, *vlan)],
        RifKind::Vlan { vlan, members } => members
            .iter()
            .map(|m| (m.port, if m.tagged { *vlan } else { 0 }))
            .collect(),
    };
    v.retain(|(p, _)| up(p));
    v
}

impl Compiler {
    pub fn new(schema: Arc<Schema>, clone_session: Option<CloneSession>) -> Self {
        Self {
            s: schema,
            clone_session,
        }
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.s
    }

    fn planned(&self, ty: p4::update::Type, entity: p4::Entity) -> Planned {
        let level = self.s.level(table_id_of(&entity)).unwrap_or(0);
        let key = key_hash(&entity);
        let entity = if ty == p4::update::Type::Delete {
            key_only(&entity)
        } else {
            entity
        };
        Planned {
            update: p4::Update {
                r#type: ty as i32,
                entity: Some(entity),
            },
            level,
            key,
        }
    }

    /// The entities every state has: the clone session for ACL copies.
    pub fn base_entities(&self) -> Vec<p4::Entity> {
        self.clone_session
            .iter()
            .map(|c| p4::Entity {
                entity: Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type: Some(
                            p4::packet_replication_engine_entry::Type::CloneSessionEntry(
                                p4::CloneSessionEntry {
                                    session_id: c.session_id,
                                    replicas: vec![p4::Replica {
                                        port_kind: Some(p4::replica::PortKind::Port(
                                            crate::bytes::encode(u128::from(c.port)),
                                        )),
                                        instance: 0,
                                        backup_replicas: Vec::new(),
                                    }],
                                    class_of_service: 0,
                                    packet_length_bytes: 0,
                                },
                            ),
                        ),
                    },
                )),
            })
            .collect()
    }

    // ---- one object ----

    /// The entities of `obj` in the context of `model` (which holds what
    /// it refers to), except the shared `l3_admit` entries.
    pub fn object(
        &self,
        obj: &Object,
        model: &ForwardingState,
        out: &mut Vec<p4::Entity>,
    ) -> Result<(), CompileError> {
        match obj {
            Object::Port(_) | Object::Vrf(_) => Ok(()),
            Object::Rif(r) => self.rif(r, model, out),
            Object::Neighbor(n) => {
                out.push(self.neighbor(n, model)?);
                Ok(())
            }
            Object::NextHop(n) => {
                out.push(self.next_hop(n)?);
                Ok(())
            }
            Object::Group(g) => {
                out.push(self.group(g)?);
                Ok(())
            }
            Object::Route(r) => {
                out.push(self.route(r)?);
                Ok(())
            }
            Object::Acl(a) => {
                out.push(self.acl(a)?);
                Ok(())
            }
        }
    }

    fn rif(
        &self,
        r: &RouterInterface,
        model: &ForwardingState,
        out: &mut Vec<p4::Entity>,
    ) -> Result<(), CompileError> {
        let s = &*self.s;
        let rid = u128::from(r.id.0);
        let (port, vlan) = match &r.kind {
            RifKind::Port { port } => (*port, 0),
            RifKind::SubPort { port, vlan } => (*port, *vlan),
            RifKind::Vlan { vlan, members } => {
                let Some(first) = members.first() else {
                    return Err(CompileError::Unsupported(format!(
                        "router interface {}: a VLAN interface needs a member port",
                        r.id
                    )));
                };
                let tagged = members.iter().any(|m| m.tagged);
                (first.port, if tagged { *vlan } else { 0 })
            }
        };
        let action = if vlan == 0 {
            call(&s.set_port_and_src_mac, &[u128::from(port.0), mac(r.mac)])?
        } else {
            call(
                &s.set_port_and_src_mac_and_vlan,
                &[u128::from(port.0), mac(r.mac), u128::from(vlan)],
            )?
        };
        out.push(table_entry(
            s.router_interface,
            vec![exact(s.router_interface, &s.router_interface_rif_id, rid)?],
            direct(action),
            0,
        ));
        for (p, v) in receives(r, model) {
            out.push(self.ingress(p, v, r)?);
        }
        Ok(())
    }

    fn ingress(
        &self,
        port: PortId,
        vlan: u16,
        r: &RouterInterface,
    ) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        let t = s.ingress_rif;
        Ok(table_entry(
            t,
            vec![
                exact(t, &s.ingress_rif_in_port, u128::from(port.0))?,
                exact(t, &s.ingress_rif_vlan_id, u128::from(vlan))?,
            ],
            direct(call(
                &s.set_ingress_rif,
                &[u128::from(r.id.0), u128::from(r.vrf.0)],
            )?),
            0,
        ))
    }

    /// The `l3_admit` entry of one router MAC.
    pub fn admit(&self, m: MacAddr) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        Ok(table_entry(
            s.l3_admit,
            vec![ternary(
                s.l3_admit,
                &s.l3_admit_dst_mac,
                mac(m),
                max_value(48),
            )?],
            direct(call(&s.admit_to_l3, &[])?),
            1,
        ))
    }

    /// The router MACs that need an `l3_admit` entry, among `of` (every
    /// MAC when `None`).
    fn admitted(model: &ForwardingState, of: Option<&BTreeSet<MacAddr>>) -> BTreeSet<MacAddr> {
        model
            .rifs()
            .values()
            .filter(|r| of.is_none_or(|s| s.contains(&r.mac)))
            .filter(|r| !receives(r, model).is_empty())
            .map(|r| r.mac)
            .collect()
    }

    fn neighbor(&self, n: &Neighbor, model: &ForwardingState) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        let t = s.neighbor;
        let what = format!("neighbor {} on router interface {}", n.ip, n.rif);
        let key = vec![
            exact(t, &s.neighbor_rif_id, u128::from(n.rif.0))?,
            exact(t, &s.neighbor_ip, neighbor_ip(n.ip, &what)?)?,
        ];
        let action = match n.port {
            None => call(&s.set_dst_mac, &[mac(n.mac)])?,
            Some(p) => {
                let Some(rif) = model.rifs().get(&n.rif) else {
                    return Err(CompileError::Model(ModelError::MissingReference {
                        object: ObjectKey::Neighbor(n.rif, n.ip),
                        missing: ObjectKey::Rif(n.rif),
                    }));
                };
                let tagged = match &rif.kind {
                    RifKind::Port { .. } => false,
                    RifKind::SubPort { .. } => true,
                    RifKind::Vlan { members, .. } => match members.iter().find(|m| m.port == p) {
                        Some(m) => m.tagged,
                        None => {
                            return Err(CompileError::Unsupported(format!(
                                "{what}: port {p} is not a member of the interface"
                            )))
                        }
                    },
                };
                call(
                    &s.set_dst_mac_and_port,
                    &[mac(n.mac), u128::from(p.0), u128::from(tagged)],
                )?
            }
        };
        Ok(table_entry(t, key, direct(action), 0))
    }

    fn next_hop(&self, n: &NextHop) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        let what = format!("next hop {}", n.id);
        Ok(table_entry(
            s.nexthop,
            vec![exact(s.nexthop, &s.nexthop_id, u128::from(n.id.0))?],
            direct(call(
                &s.set_ip_nexthop,
                &[u128::from(n.rif.0), neighbor_ip(n.ip, &what)?],
            )?),
            0,
        ))
    }

    fn group(&self, g: &NextHopGroup) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        let mut members = g.members.clone();
        members.sort();
        let total: u64 = members.iter().map(|m| u64::from(m.weight)).sum();
        if s.max_group_weight > 0 && total > u64::from(s.max_group_weight) {
            return Err(CompileError::Unsupported(format!(
                "group {}: its weights add up to {total}, above the selector's largest group ({})",
                g.id, s.max_group_weight
            )));
        }
        let actions = members
            .iter()
            .map(|m| {
                Ok(p4::ActionProfileAction {
                    action: Some(call(&s.set_nexthop_id, &[u128::from(m.next_hop.0)])?),
                    weight: i32::try_from(m.weight).map_err(|_| {
                        CompileError::Unsupported(format!(
                            "group {}: weight {} does not fit P4Runtime's int32",
                            g.id, m.weight
                        ))
                    })?,
                    watch_kind: None,
                })
            })
            .collect::<Result<Vec<_>, CompileError>>()?;
        Ok(table_entry(
            s.wcmp_group,
            vec![exact(s.wcmp_group, &s.wcmp_group_id, u128::from(g.id.0))?],
            Some(p4::TableAction {
                r#type: Some(p4::table_action::Type::ActionProfileActionSet(
                    p4::ActionProfileActionSet {
                        action_profile_actions: actions,
                        ..Default::default()
                    },
                )),
            }),
            0,
        ))
    }

    fn route_table(&self, prefix: &IpNet) -> &RouteTable {
        match prefix {
            IpNet::V4(_) => &self.s.ipv4_lpm,
            IpNet::V6(_) => &self.s.ipv6_lpm,
        }
    }

    fn route_key(&self, vrf: u32, prefix: &IpNet) -> Result<Vec<p4::FieldMatch>, CompileError> {
        let rt = self.route_table(prefix);
        let t = rt.table;
        let mut m = vec![exact(t, &rt.vrf_id, u128::from(vrf))?];
        let len = prefix.prefix_len();
        if len > 0 {
            let value = match prefix.trunc() {
                IpNet::V4(p) => u128::from(u32::from(p.addr())),
                IpNet::V6(p) => u128::from(p.addr()),
            };
            m.push(p4::FieldMatch {
                field_id: rt.dst.id,
                field_match_type: Some(M::Lpm(p4::field_match::Lpm {
                    value: bytes(value, t.name, &rt.dst)?,
                    prefix_len: i32::from(len),
                })),
            });
        }
        Ok(m)
    }

    fn route(&self, r: &Route) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        let action = match r.action {
            RouteAction::NextHop(n) => call(&s.set_nexthop_id, &[u128::from(n.0)])?,
            RouteAction::Group(g) => call(&s.set_wcmp_group_id, &[u128::from(g.0)])?,
            RouteAction::Drop => call(&s.drop, &[])?,
            RouteAction::ToCpu => call(&s.to_cpu, &[])?,
        };
        Ok(table_entry(
            self.route_table(&r.prefix).table,
            self.route_key(r.vrf.0, &r.prefix)?,
            direct(action),
            0,
        ))
    }

    fn acl_key(&self, a: &AclRule) -> Result<(&AclTable, Vec<p4::FieldMatch>, i32), CompileError> {
        let s = &*self.s;
        let t = match a.stage {
            AclStage::PreIngress => &s.acl_pre_ingress,
            AclStage::Ingress => &s.acl_ingress,
        };
        let tr = t.table;
        let m = &a.matches;
        let mut key = Vec::new();
        let full = |f: &FieldRef| max_value(f.bits);
        if let Some(p) = m.in_port {
            key.push(ternary(tr, &t.in_port, u128::from(p.0), full(&t.in_port))?);
        }
        if let Some(x) = m.src_mac.filter(|x| x.mask != MacAddr([0; 6])) {
            key.push(ternary(tr, &t.src_mac, mac(x.value), mac(x.mask))?);
        }
        if let Some(x) = m.dst_mac.filter(|x| x.mask != MacAddr([0; 6])) {
            key.push(ternary(tr, &t.dst_mac, mac(x.value), mac(x.mask))?);
        }
        let family = match (m.src_ip, m.dst_ip) {
            (Some(IpNet::V4(_)), Some(IpNet::V6(_))) | (Some(IpNet::V6(_)), Some(IpNet::V4(_))) => {
                return Err(CompileError::Unsupported(format!(
                    "ACL rule {}: source and destination prefixes of different families never match",
                    a.id
                )))
            }
            (Some(IpNet::V4(_)), _) | (_, Some(IpNet::V4(_))) => Some(0x0800u128),
            (Some(IpNet::V6(_)), _) | (_, Some(IpNet::V6(_))) => Some(0x86dd),
            _ => None,
        };
        match (m.ether_type.filter(|x| x.mask != 0), family) {
            (Some(x), _) => key.push(ternary(
                tr,
                &t.ether_type,
                u128::from(x.value),
                u128::from(x.mask),
            )?),
            (None, Some(e)) => key.push(ternary(tr, &t.ether_type, e, full(&t.ether_type))?),
            (None, None) => {}
        }
        if let Some(v) = m.vlan {
            key.push(ternary(tr, &t.vlan_id, u128::from(v), full(&t.vlan_id))?);
        }
        let mut prefix =
            |p: &Option<IpNet>, f4: &FieldRef, f6: &FieldRef| -> Result<(), CompileError> {
                match p {
                    Some(IpNet::V4(n)) if n.prefix_len() > 0 => key.push(ternary(
                        tr,
                        f4,
                        u128::from(u32::from(n.addr())),
                        prefix_mask(n.prefix_len(), 32),
                    )?),
                    Some(IpNet::V6(n)) if n.prefix_len() > 0 => key.push(ternary(
                        tr,
                        f6,
                        u128::from(n.addr()),
                        prefix_mask(n.prefix_len(), 128),
                    )?),
                    _ => {}
                }
                Ok(())
            };
        prefix(&m.src_ip, &t.src_ipv4, &t.src_ipv6)?;
        prefix(&m.dst_ip, &t.dst_ipv4, &t.dst_ipv6)?;
        if let Some(p) = m.ip_proto {
            key.push(ternary(tr, &t.ip_proto, u128::from(p), full(&t.ip_proto))?);
        }
        for (r, f) in [(m.src_port, &t.l4_src_port), (m.dst_port, &t.l4_dst_port)] {
            if let Some(r) = r {
                if r.first == 0 && u128::from(r.last) >= full(f) {
                    continue; // the whole range: "don't care"
                }
                key.push(p4::FieldMatch {
                    field_id: f.id,
                    field_match_type: Some(M::Range(p4::field_match::Range {
                        low: bytes(u128::from(r.first), tr.name, f)?,
                        high: bytes(u128::from(r.last), tr.name, f)?,
                    })),
                });
            }
        }
        if let Some(x) = m.tcp_flags.filter(|x| x.mask != 0) {
            key.push(ternary(
                tr,
                &t.tcp_flags,
                u128::from(x.value),
                u128::from(x.mask),
            )?);
        }
        if let Some(d) = m.dscp {
            key.push(ternary(tr, &t.dscp, u128::from(d), full(&t.dscp))?);
        }
        key.sort_by_key(|f| f.field_id);
        let priority = i32::try_from(u64::from(a.priority) + 1).map_err(|_| {
            CompileError::Unsupported(format!(
                "ACL rule {}: priority {} is above P4Runtime's largest ({})",
                a.id,
                a.priority,
                i32::MAX - 1
            ))
        })?;
        Ok((t, key, priority))
    }

    fn acl(&self, a: &AclRule) -> Result<p4::Entity, CompileError> {
        let s = &*self.s;
        let (t, key, priority) = self.acl_key(a)?;
        let action = match a.action {
            AclAction::Permit => call(&s.acl_forward, &[])?,
            AclAction::Drop => call(&s.acl_drop, &[])?,
            AclAction::Trap => call(&s.acl_trap, &[])?,
            AclAction::Copy => call(&s.acl_copy, &[])?,
            AclAction::SetVrf(v) => {
                if a.stage != AclStage::PreIngress {
                    return Err(CompileError::Unsupported(format!(
                        "ACL rule {}: set-vrf is a pre-ingress action",
                        a.id
                    )));
                }
                call(&s.set_vrf, &[u128::from(v.0)])?
            }
        };
        Ok(table_entry(t.table, key, direct(action), priority))
    }

    // ---- whole states ----

    /// Every entity `model` calls for: the base entities, the objects'
    /// entities and the `l3_admit` entries. Objects that do not compile
    /// are handed to `bad` (a model the compiler accepted delta by delta
    /// has none).
    pub fn state(
        &self,
        model: &ForwardingState,
        mut each: impl FnMut(p4::Entity),
        mut bad: impl FnMut(ObjectKey, CompileError),
    ) {
        for e in self.base_entities() {
            each(e);
        }
        for m in Self::admitted(model, None) {
            match self.admit(m) {
                Ok(e) => each(e),
                Err(err) => bad(ObjectKey::Vrf(nos_core::VrfId::DEFAULT), err),
            }
        }
        let mut buf = Vec::new();
        for o in model.objects() {
            buf.clear();
            match self.object(&o, model, &mut buf) {
                Ok(()) => buf.drain(..).for_each(&mut each),
                Err(err) => bad(o.key(), err),
            }
        }
    }

    // ---- deltas ----

    /// The objects whose entities a change of `key` can change: the object
    /// itself, the interfaces on a port, the neighbors on an interface.
    fn affected(key: &ObjectKey, model: &ForwardingState) -> Vec<ObjectKey> {
        let mut v = vec![*key];
        match key {
            ObjectKey::Port(p) => v.extend(
                model
                    .rifs()
                    .values()
                    .filter(|r| r.ports().contains(p))
                    .map(|r| ObjectKey::Rif(r.id)),
            ),
            ObjectKey::Rif(r) => v.extend(
                model
                    .neighbors()
                    .range((*r, IpAddr::V4(Ipv4Addr::UNSPECIFIED))..)
                    .take_while(|((rif, _), _)| rif == r)
                    .map(|((rif, ip), _)| ObjectKey::Neighbor(*rif, *ip)),
            ),
            _ => {}
        }
        v
    }

    /// The entities of the objects under `keys` and the admit entries of
    /// `macs`, as `model` has them.
    fn entities_of(
        &self,
        keys: &[ObjectKey],
        macs: &BTreeSet<MacAddr>,
        model: &ForwardingState,
    ) -> Result<Vec<p4::Entity>, CompileError> {
        let mut out = Vec::new();
        for k in keys {
            if let Some(o) = model.get(k) {
                self.object(&o, model, &mut out)?;
            }
        }
        for m in Self::admitted(model, Some(macs)) {
            out.push(self.admit(m)?);
        }
        Ok(out)
    }

    /// Checks that `obj` does not claim an entry another object of `model`
    /// has: an `ingress_rif` (port, VLAN), or an ACL key.
    fn check_conflicts(&self, obj: &Object, model: &ForwardingState) -> Result<(), CompileError> {
        match obj {
            Object::Rif(r) => {
                let mine = receives(r, model);
                for other in model.rifs().values().filter(|o| o.id != r.id) {
                    if let Some((p, v)) = receives(other, model)
                        .into_iter()
                        .find(|x| mine.contains(x))
                    {
                        return Err(CompileError::Conflict(format!(
                            "router interface {}: port {p} {} already belongs to router interface {}",
                            r.id,
                            if v == 0 { "untagged".to_string() } else { format!("VLAN {v}") },
                            other.id
                        )));
                    }
                }
                Ok(())
            }
            Object::Acl(a) => {
                let (_, key, _) = self.acl_key(a)?;
                for other in model
                    .acls()
                    .values()
                    .filter(|o| o.id != a.id && o.stage == a.stage && o.priority == a.priority)
                {
                    if self.acl_key(other).is_ok_and(|(_, k, _)| k == key) {
                        return Err(CompileError::Conflict(format!(
                            "ACL rule {}: ACL rule {} has the same match and priority (one P4 entry)",
                            a.id, other.id
                        )));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Applies `d` to `model` and returns the updates that take the target
    /// from the entities of the state before to those of the state after.
    /// On error `model` is unchanged.
    pub fn delta(
        &self,
        model: &mut ForwardingState,
        d: &Delta,
    ) -> Result<CompiledDelta, CompileError> {
        use p4::update::Type;
        let key = d.key();
        let previous = model.get(&key);
        // Objects with exactly one entity, which no other entity depends
        // on for its contents: the fast path (routes, above all).
        let single = matches!(
            key,
            ObjectKey::Neighbor(..)
                | ObjectKey::NextHop(_)
                | ObjectKey::Group(_)
                | ObjectKey::Route(_)
                | ObjectKey::Acl(_)
        );
        if single {
            if let Delta::Create(o) | Delta::Modify(o) = d {
                self.check_conflicts(o, model)?;
            }
            let old = match (&previous, d) {
                (Some(p), Delta::Modify(_) | Delta::Delete(_)) => {
                    let mut v = Vec::new();
                    self.object(p, model, &mut v)?;
                    v.pop()
                }
                _ => None,
            };
            model.apply(d)?;
            let new = match d {
                Delta::Create(o) | Delta::Modify(o) => {
                    let mut v = Vec::new();
                    match self.object(o, model, &mut v) {
                        Ok(()) => v.pop(),
                        Err(e) => {
                            undo(model, d, &previous);
                            return Err(e);
                        }
                    }
                }
                Delta::Delete(_) => None,
            };
            let updates = match (d, old, new) {
                (Delta::Create(_), _, Some(n)) => vec![self.planned(Type::Insert, n)],
                (Delta::Modify(_), Some(o), Some(n)) => {
                    if o == n {
                        Vec::new()
                    } else if key_hash(&o) == key_hash(&n) && key_only(&o) == key_only(&n) {
                        vec![self.planned(Type::Modify, n)]
                    } else {
                        vec![self.planned(Type::Delete, o), self.planned(Type::Insert, n)]
                    }
                }
                (Delta::Modify(_), None, Some(n)) => vec![self.planned(Type::Insert, n)],
                (Delta::Delete(_), Some(o), _) => vec![self.planned(Type::Delete, o)],
                _ => Vec::new(),
            };
            return Ok(CompiledDelta { updates, previous });
        }

        // Ports, VRFs and router interfaces: compare the entity sets of
        // everything the change touches.
        let mut keys = Self::affected(&key, model);
        let mut macs: BTreeSet<MacAddr> = BTreeSet::new();
        let rif_macs =
            |model: &ForwardingState, keys: &[ObjectKey], macs: &mut BTreeSet<MacAddr>| {
                for k in keys {
                    if let ObjectKey::Rif(r) = k {
                        macs.extend(model.rifs().get(r).map(|r| r.mac));
                    }
                }
            };
        rif_macs(model, &keys, &mut macs);
        if let Delta::Create(Object::Rif(r)) | Delta::Modify(Object::Rif(r)) = d {
            macs.insert(r.mac);
        }
        let old = self.entities_of(&keys, &macs, model).unwrap_or_else(|e| {
            tracing::warn!(object = %key, "the installed object no longer compiles: {e}");
            Vec::new()
        });
        if let Delta::Create(o) | Delta::Modify(o) = d {
            // Checked against the state after the change (a port's state
            // matters), so apply first.
            model.apply(d)?;
            if let Err(e) = self.check_conflicts(o, model) {
                undo(model, d, &previous);
                return Err(e);
            }
        } else {
            model.apply(d)?;
        }
        for k in Self::affected(&key, model) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let new = match self.entities_of(&keys, &macs, model) {
            Ok(n) => n,
            Err(e) => {
                undo(model, d, &previous);
                return Err(e);
            }
        };
        Ok(CompiledDelta {
            updates: self.set_diff(old, new),
            previous,
        })
    }

    /// The updates from one set of entities to another, matched by key:
    /// deletes first, then modifies and inserts.
    fn set_diff(&self, old: Vec<p4::Entity>, new: Vec<p4::Entity>) -> Vec<Planned> {
        use p4::update::Type;
        let old_keys: Vec<p4::Entity> = old.iter().map(key_only).collect();
        let new_keys: Vec<p4::Entity> = new.iter().map(key_only).collect();
        let mut out = Vec::new();
        for (o, k) in old.iter().zip(&old_keys) {
            if !new_keys.contains(k) {
                out.push(self.planned(Type::Delete, o.clone()));
            }
        }
        for (n, k) in new.into_iter().zip(&new_keys) {
            match old_keys.iter().position(|x| x == k) {
                Some(i) if old[i] == n => {}
                Some(_) => out.push(self.planned(Type::Modify, n)),
                None => out.push(self.planned(Type::Insert, n)),
            }
        }
        out
    }
}

/// Takes `d` back out of `model` (it was applied; `previous` is what it
/// replaced).
pub fn undo(model: &mut ForwardingState, d: &Delta, previous: &Option<Object>) {
    let inverse = match (d, previous) {
        (Delta::Create(o), _) => Delta::Delete(o.key()),
        (Delta::Modify(_), Some(p)) | (Delta::Delete(_), Some(p)) => {
            if matches!(d, Delta::Delete(_)) {
                Delta::Create(p.clone())
            } else {
                Delta::Modify(p.clone())
            }
        }
        _ => return,
    };
    if let Err(e) = model.apply(&inverse) {
        tracing::error!(delta = ?d, "cannot take the change back out of the controller's model: {e}");
    }
}

#[cfg(test)]
mod tests;
