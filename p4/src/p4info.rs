//! The P4Info as the controller uses it: a name index built once per
//! pipeline ([`P4Names`]), and from it the [`Schema`]: every table, match
//! field, action, parameter, action profile and controller-header field the
//! compiler and the packet path use, resolved by *name* to the ids and bit
//! widths this P4Info gives them.
//!
//! Nothing in the crate knows an id in advance. [`Schema::resolve`] either
//! finds everything or fails with one [`SchemaError`] that names every
//! missing or mismatched piece, so a wrong P4Info is reported when the
//! controller starts or connects, not by a failed write later.

use p4runtime_proto::p4::config::v1 as cfg;
use std::collections::HashMap;
use std::fmt;

/// A match kind of a P4Info match field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchKind {
    Exact,
    Lpm,
    Ternary,
    Range,
    Optional,
    /// A match kind this crate does not use (architecture-specific).
    Other,
}

impl MatchKind {
    fn of(f: &cfg::MatchField) -> MatchKind {
        use cfg::match_field::{Match, MatchType as M};
        match &f.r#match {
            Some(Match::MatchType(t)) => match M::try_from(*t) {
                Ok(M::Exact) => MatchKind::Exact,
                Ok(M::Lpm) => MatchKind::Lpm,
                Ok(M::Ternary) => MatchKind::Ternary,
                Ok(M::Range) => MatchKind::Range,
                Ok(M::Optional) => MatchKind::Optional,
                _ => MatchKind::Other,
            },
            _ => MatchKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MatchKind::Exact => "EXACT",
            MatchKind::Lpm => "LPM",
            MatchKind::Ternary => "TERNARY",
            MatchKind::Range => "RANGE",
            MatchKind::Optional => "OPTIONAL",
            MatchKind::Other => "another match kind",
        }
    }
}

/// A match field of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    pub id: u32,
    pub name: String,
    pub bits: u32,
    pub kind: MatchKind,
}

/// A table of the P4Info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub id: u32,
    pub name: String,
    pub fields: Vec<FieldInfo>,
    /// Actions entries may use (not those scoped default-only).
    pub entry_actions: Vec<u32>,
    /// The action profile or selector implementing the table (0: direct).
    pub implementation_id: u32,
}

/// A parameter of an action, or a field of a controller header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    pub id: u32,
    pub name: String,
    pub bits: u32,
}

/// An action of the P4Info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionInfo {
    pub id: u32,
    pub name: String,
    pub params: Vec<ParamInfo>,
}

/// An action profile (or selector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileInfo {
    pub id: u32,
    pub name: String,
    pub table_ids: Vec<u32>,
    pub with_selector: bool,
    /// Largest group (0: no limit given).
    pub max_group_size: u32,
    /// Whether group sizes count the sum of member weights (rather than
    /// the number of members).
    pub sum_of_weights: bool,
}

/// A controller header (`packet_in`, `packet_out`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub id: u32,
    pub name: String,
    /// Fields in P4Info order.
    pub fields: Vec<ParamInfo>,
}

/// Everything of a P4Info, findable by name and by id.
#[derive(Clone, Debug, Default)]
pub struct P4Names {
    tables: Vec<TableInfo>,
    actions: Vec<ActionInfo>,
    profiles: Vec<ProfileInfo>,
    headers: Vec<HeaderInfo>,
    table_by_name: HashMap<String, usize>,
    table_by_id: HashMap<u32, usize>,
    action_by_name: HashMap<String, usize>,
    action_by_id: HashMap<u32, usize>,
    profile_by_name: HashMap<String, usize>,
    header_by_name: HashMap<String, usize>,
}

fn preamble(p: &Option<cfg::Preamble>) -> (u32, &str, &str) {
    p.as_ref()
        .map(|p| (p.id, p.name.as_str(), p.alias.as_str()))
        .unwrap_or((0, "", ""))
}

fn bits(w: i32) -> u32 {
    u32::try_from(w).unwrap_or(0)
}

/// Registers `i` under the object's name, its alias and its name without a
/// leading dot (p4c writes fully qualified names for objects inside a
/// control unless the program gives them global names).
fn index(map: &mut HashMap<String, usize>, name: &str, alias: &str, i: usize) {
    for n in [name, alias, name.strip_prefix('.').unwrap_or(name)] {
        if !n.is_empty() {
            map.entry(n.to_string()).or_insert(i);
        }
    }
}

impl P4Names {
    /// Indexes `info`.
    pub fn new(info: &cfg::P4Info) -> P4Names {
        let mut n = P4Names::default();
        for a in &info.actions {
            let (id, name, alias) = preamble(&a.preamble);
            let i = n.actions.len();
            n.actions.push(ActionInfo {
                id,
                name: name.to_string(),
                params: a
                    .params
                    .iter()
                    .map(|p| ParamInfo {
                        id: p.id,
                        name: p.name.clone(),
                        bits: bits(p.bitwidth),
                    })
                    .collect(),
            });
            index(&mut n.action_by_name, name, alias, i);
            n.action_by_id.insert(id, i);
        }
        for t in &info.tables {
            let (id, name, alias) = preamble(&t.preamble);
            let i = n.tables.len();
            n.tables.push(TableInfo {
                id,
                name: name.to_string(),
                fields: t
                    .match_fields
                    .iter()
                    .map(|f| FieldInfo {
                        id: f.id,
                        name: f.name.clone(),
                        bits: bits(f.bitwidth),
                        kind: MatchKind::of(f),
                    })
                    .collect(),
                entry_actions: t
                    .action_refs
                    .iter()
                    .filter(|r| r.scope != cfg::action_ref::Scope::DefaultOnly as i32)
                    .map(|r| r.id)
                    .collect(),
                implementation_id: t.implementation_id,
            });
            index(&mut n.table_by_name, name, alias, i);
            n.table_by_id.insert(id, i);
        }
        for p in &info.action_profiles {
            let (id, name, alias) = preamble(&p.preamble);
            let i = n.profiles.len();
            n.profiles.push(ProfileInfo {
                id,
                name: name.to_string(),
                table_ids: p.table_ids.clone(),
                with_selector: p.with_selector,
                max_group_size: u32::try_from(p.max_group_size).unwrap_or(0),
                // Sum of weights is the default when the P4Info says nothing.
                sum_of_weights: !matches!(
                    p.selector_size_semantics,
                    Some(cfg::action_profile::SelectorSizeSemantics::SumOfMembers(_))
                ),
            });
            index(&mut n.profile_by_name, name, alias, i);
        }
        for h in &info.controller_packet_metadata {
            let (id, name, alias) = preamble(&h.preamble);
            let i = n.headers.len();
            n.headers.push(HeaderInfo {
                id,
                name: name.to_string(),
                fields: h
                    .metadata
                    .iter()
                    .map(|m| ParamInfo {
                        id: m.id,
                        name: m.name.clone(),
                        bits: bits(m.bitwidth),
                    })
                    .collect(),
            });
            index(&mut n.header_by_name, name, alias, i);
        }
        n
    }

    pub fn table(&self, name: &str) -> Option<&TableInfo> {
        self.table_by_name.get(name).map(|i| &self.tables[*i])
    }

    pub fn table_by_id(&self, id: u32) -> Option<&TableInfo> {
        self.table_by_id.get(&id).map(|i| &self.tables[*i])
    }

    pub fn action(&self, name: &str) -> Option<&ActionInfo> {
        self.action_by_name.get(name).map(|i| &self.actions[*i])
    }

    pub fn action_by_id(&self, id: u32) -> Option<&ActionInfo> {
        self.action_by_id.get(&id).map(|i| &self.actions[*i])
    }

    pub fn profile(&self, name: &str) -> Option<&ProfileInfo> {
        self.profile_by_name.get(name).map(|i| &self.profiles[*i])
    }

    pub fn header(&self, name: &str) -> Option<&HeaderInfo> {
        self.header_by_name.get(name).map(|i| &self.headers[*i])
    }

    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }
}

impl TableInfo {
    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_by_id(&self, id: u32) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.id == id)
    }
}

impl ActionInfo {
    pub fn param_by_id(&self, id: u32) -> Option<&ParamInfo> {
        self.params.iter().find(|p| p.id == id)
    }
}

/// A P4Info that lacks (or disagrees with) what the controller needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// One line per missing or mismatched piece.
    pub problems: Vec<String>,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the P4Info lacks what the controller needs ({} problem{}): {}",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            self.problems.join("; ")
        )
    }
}

impl std::error::Error for SchemaError {}

/// A resolved table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub id: u32,
    /// The name the compiler uses (for messages).
    pub name: &'static str,
}

/// A resolved match field, action parameter or header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRef {
    pub id: u32,
    pub bits: u32,
    pub name: &'static str,
}

/// A resolved action with its parameters in the order they were asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRef {
    pub id: u32,
    pub name: &'static str,
    pub params: Vec<FieldRef>,
}

/// The tables of the two ACL stages share their key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclTable {
    pub table: TableRef,
    pub in_port: FieldRef,
    pub src_mac: FieldRef,
    pub dst_mac: FieldRef,
    pub ether_type: FieldRef,
    pub vlan_id: FieldRef,
    pub src_ipv4: FieldRef,
    pub dst_ipv4: FieldRef,
    pub src_ipv6: FieldRef,
    pub dst_ipv6: FieldRef,
    pub ip_proto: FieldRef,
    pub l4_src_port: FieldRef,
    pub l4_dst_port: FieldRef,
    pub tcp_flags: FieldRef,
    pub dscp: FieldRef,
}

/// A route table (`ipv4_lpm`, `ipv6_lpm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable {
    pub table: TableRef,
    pub vrf_id: FieldRef,
    pub dst: FieldRef,
}

/// Everything the compiler and the packet path use, resolved by name.
/// Actions carry their parameters in the order listed in the comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub l3_admit: TableRef,
    pub l3_admit_dst_mac: FieldRef,
    /// `admit_to_l3()`
    pub admit_to_l3: ActionRef,

    pub ingress_rif: TableRef,
    pub ingress_rif_in_port: FieldRef,
    pub ingress_rif_vlan_id: FieldRef,
    /// `set_ingress_rif(rif_id, vrf_id)`
    pub set_ingress_rif: ActionRef,

    pub router_interface: TableRef,
    pub router_interface_rif_id: FieldRef,
    /// `set_port_and_src_mac(port, src_mac)`
    pub set_port_and_src_mac: ActionRef,
    /// `set_port_and_src_mac_and_vlan(port, src_mac, vlan_id)`
    pub set_port_and_src_mac_and_vlan: ActionRef,

    pub neighbor: TableRef,
    pub neighbor_rif_id: FieldRef,
    pub neighbor_ip: FieldRef,
    /// `set_dst_mac(dst_mac)`
    pub set_dst_mac: ActionRef,
    /// `set_dst_mac_and_port(dst_mac, port, tagged)`
    pub set_dst_mac_and_port: ActionRef,

    pub nexthop: TableRef,
    pub nexthop_id: FieldRef,
    /// `set_ip_nexthop(rif_id, neighbor_ip)`
    pub set_ip_nexthop: ActionRef,

    pub wcmp_group: TableRef,
    pub wcmp_group_id: FieldRef,
    /// The selector's largest group, counted in weights (0: no limit).
    pub max_group_weight: u32,

    pub ipv4_lpm: RouteTable,
    pub ipv6_lpm: RouteTable,
    /// `set_nexthop_id(nexthop_id)` (routes and group members)
    pub set_nexthop_id: ActionRef,
    /// `set_wcmp_group_id(wcmp_group_id)`
    pub set_wcmp_group_id: ActionRef,
    /// `drop()`
    pub drop: ActionRef,
    /// `to_cpu()`
    pub to_cpu: ActionRef,

    pub acl_pre_ingress: AclTable,
    pub acl_ingress: AclTable,
    /// `set_vrf(vrf_id)`
    pub set_vrf: ActionRef,
    pub acl_forward: ActionRef,
    pub acl_drop: ActionRef,
    pub acl_trap: ActionRef,
    pub acl_copy: ActionRef,

    /// The `packet_in` header: `ingress_port`, `punt_reason`.
    pub packet_in: PacketInHeader,
    /// The `packet_out` header.
    pub packet_out: PacketOutHeader,
}

/// The packet-in header fields the controller reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketInHeader {
    pub ingress_port: FieldRef,
    pub punt_reason: FieldRef,
}

/// The packet-out header: the fields the controller sets, and every field
/// of the header (all are sent, the others as 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketOutHeader {
    pub egress_port: FieldRef,
    pub ingress_port: FieldRef,
    pub submit_to_ingress: FieldRef,
    pub all: Vec<(u32, u32)>,
}

/// Collects what is missing while the schema is resolved.
struct Resolver<'a> {
    names: &'a P4Names,
    problems: Vec<String>,
}

const MISSING: u32 = 0;

impl<'a> Resolver<'a> {
    fn table(&mut self, name: &'static str) -> (TableRef, Option<&'a TableInfo>) {
        let t = self.names.table(name);
        if t.is_none() {
            self.problems.push(format!("table `{name}` is missing"));
        }
        (
            TableRef {
                id: t.map_or(MISSING, |t| t.id),
                name,
            },
            t,
        )
    }

    fn field(
        &mut self,
        table: Option<&TableInfo>,
        tname: &str,
        name: &'static str,
        kind: MatchKind,
    ) -> FieldRef {
        let Some(t) = table else {
            return FieldRef {
                id: MISSING,
                bits: 0,
                name,
            };
        };
        match t.field(name) {
            None => {
                self.problems
                    .push(format!("table `{tname}` has no match field `{name}`"));
                FieldRef {
                    id: MISSING,
                    bits: 0,
                    name,
                }
            }
            Some(f) => {
                if f.kind != kind {
                    self.problems.push(format!(
                        "match field `{tname}.{name}` is {}; the controller writes it as {}",
                        f.kind.name(),
                        kind.name()
                    ));
                }
                if f.bits == 0 || f.bits > 128 {
                    self.problems.push(format!(
                        "match field `{tname}.{name}` is {} bits wide; the controller handles 1 to 128",
                        f.bits
                    ));
                }
                FieldRef {
                    id: f.id,
                    bits: f.bits,
                    name,
                }
            }
        }
    }

    /// Action `name` with `params`, usable by entries of every table in
    /// `tables`.
    fn action(
        &mut self,
        name: &'static str,
        params: &[&'static str],
        tables: &[&(TableRef, Option<&'a TableInfo>)],
    ) -> ActionRef {
        let Some(a) = self.names.action(name) else {
            self.problems.push(format!("action `{name}` is missing"));
            return ActionRef {
                id: MISSING,
                name,
                params: params
                    .iter()
                    .map(|p| FieldRef {
                        id: MISSING,
                        bits: 0,
                        name: p,
                    })
                    .collect(),
            };
        };
        let mut out = Vec::new();
        for p in params {
            match a.params.iter().find(|q| q.name == *p) {
                Some(q) => {
                    if q.bits == 0 || q.bits > 128 {
                        self.problems.push(format!(
                            "parameter `{name}.{p}` is {} bits wide; the controller handles 1 to 128",
                            q.bits
                        ));
                    }
                    out.push(FieldRef {
                        id: q.id,
                        bits: q.bits,
                        name: p,
                    })
                }
                None => {
                    self.problems
                        .push(format!("action `{name}` has no parameter `{p}`"));
                    out.push(FieldRef {
                        id: MISSING,
                        bits: 0,
                        name: p,
                    });
                }
            }
        }
        for q in &a.params {
            if !params.contains(&q.name.as_str()) {
                self.problems.push(format!(
                    "action `{name}` has a parameter `{}` the controller does not set",
                    q.name
                ));
            }
        }
        for (t, info) in tables {
            if let Some(info) = info {
                if !info.entry_actions.contains(&a.id) {
                    self.problems.push(format!(
                        "table `{}` does not offer action `{name}` to its entries",
                        t.name
                    ));
                }
            }
        }
        ActionRef {
            id: a.id,
            name,
            params: out,
        }
    }

    fn header_field(
        &mut self,
        h: Option<&'a HeaderInfo>,
        hname: &str,
        name: &'static str,
    ) -> FieldRef {
        let f = h.and_then(|h| h.fields.iter().find(|f| f.name == name));
        if h.is_some() && f.is_none() {
            self.problems
                .push(format!("controller header `{hname}` has no field `{name}`"));
        }
        FieldRef {
            id: f.map_or(MISSING, |f| f.id),
            bits: f.map_or(0, |f| f.bits),
            name,
        }
    }

    fn acl(&mut self, name: &'static str) -> (AclTable, (TableRef, Option<&'a TableInfo>)) {
        use MatchKind::{Range, Ternary};
        let t = self.table(name);
        let info = t.1;
        let mut f = |n: &'static str, k: MatchKind| self.field(info, name, n, k);

        let acl = AclTable {
            table: t.0,
            in_port: f("in_port", Ternary),
            src_mac: f("src_mac", Ternary),
            dst_mac: f("dst_mac", Ternary),
            ether_type: f("ether_type", Ternary),
            vlan_id: f("vlan_id", Ternary),
            src_ipv4: f("src_ipv4", Ternary),
            dst_ipv4: f("dst_ipv4", Ternary),
            src_ipv6: f("src_ipv6", Ternary),
            dst_ipv6: f("dst_ipv6", Ternary),
            ip_proto: f("ip_proto", Ternary),
            l4_src_port: f("l4_src_port", Range),
            l4_dst_port: f("l4_dst_port", Range),
            tcp_flags: f("tcp_flags", Ternary),
            dscp: f("dscp", Ternary),
        };
        (acl, t)
    }
}

impl Schema {
    /// Resolves everything the controller uses in the P4Info indexed by
    /// `names`; the error lists every missing or mismatched piece.
    pub fn resolve(names: &P4Names) -> Result<Schema, SchemaError> {
        use MatchKind::{Exact, Lpm, Ternary};
        let mut r = Resolver {
            names,
            problems: Vec::new(),
        };
        let l3 = r.table("l3_admit");
        let l3_dst = r.field(l3.1, "l3_admit", "dst_mac", Ternary);
        let admit = r.action("admit_to_l3", &[], &[&l3]);

        let ing = r.table("ingress_rif");
        let ing_port = r.field(ing.1, "ingress_rif", "in_port", Exact);
        let ing_vlan = r.field(ing.1, "ingress_rif", "vlan_id", Exact);
        let set_ing = r.action("set_ingress_rif", &["rif_id", "vrf_id"], &[&ing]);

        let ri = r.table("router_interface");
        let ri_id = r.field(ri.1, "router_interface", "rif_id", Exact);
        let psm = r.action("set_port_and_src_mac", &["port", "src_mac"], &[&ri]);
        let psmv = r.action(
            "set_port_and_src_mac_and_vlan",
            &["port", "src_mac", "vlan_id"],
            &[&ri],
        );

        let nb = r.table("neighbor");
        let nb_rif = r.field(nb.1, "neighbor", "rif_id", Exact);
        let nb_ip = r.field(nb.1, "neighbor", "neighbor_ip", Exact);
        let sdm = r.action("set_dst_mac", &["dst_mac"], &[&nb]);
        let sdmp = r.action(
            "set_dst_mac_and_port",
            &["dst_mac", "port", "tagged"],
            &[&nb],
        );

        let nh = r.table("nexthop");
        let nh_id = r.field(nh.1, "nexthop", "nexthop_id", Exact);
        let sipn = r.action("set_ip_nexthop", &["rif_id", "neighbor_ip"], &[&nh]);

        let wg = r.table("wcmp_group");
        let wg_id = r.field(wg.1, "wcmp_group", "wcmp_group_id", Exact);
        let selector = names.profile("wcmp_group_selector");
        let mut max_group_weight = 0;
        match selector {
            None => r
                .problems
                .push("action selector `wcmp_group_selector` is missing".to_string()),
            Some(p) => {
                if !p.with_selector {
                    r.problems
                        .push("action profile `wcmp_group_selector` is not a selector".to_string());
                }
                if let Some(t) = wg.1 {
                    if t.implementation_id != p.id {
                        r.problems.push(
                            "table `wcmp_group` is not implemented by `wcmp_group_selector`"
                                .to_string(),
                        );
                    }
                }
                if p.sum_of_weights || p.max_group_size == 0 {
                    max_group_weight = p.max_group_size;
                }
            }
        }

        let v4 = r.table("ipv4_lpm");
        let v4_vrf = r.field(v4.1, "ipv4_lpm", "vrf_id", Exact);
        let v4_dst = r.field(v4.1, "ipv4_lpm", "ipv4_dst", Lpm);
        let v6 = r.table("ipv6_lpm");
        let v6_vrf = r.field(v6.1, "ipv6_lpm", "vrf_id", Exact);
        let v6_dst = r.field(v6.1, "ipv6_lpm", "ipv6_dst", Lpm);
        let snh = r.action("set_nexthop_id", &["nexthop_id"], &[&v4, &v6, &wg]);
        let swg = r.action("set_wcmp_group_id", &["wcmp_group_id"], &[&v4, &v6]);
        let drop = r.action("drop", &[], &[&v4, &v6]);
        let to_cpu = r.action("to_cpu", &[], &[&v4, &v6]);

        let (pre, pre_t) = r.acl("acl_pre_ingress");
        let (ingress, ing_t) = r.acl("acl_ingress");
        let set_vrf = r.action("set_vrf", &["vrf_id"], &[&pre_t]);
        let fwd = r.action("acl_forward", &[], &[&pre_t, &ing_t]);
        let adrop = r.action("acl_drop", &[], &[&pre_t, &ing_t]);
        let trap = r.action("acl_trap", &[], &[&pre_t, &ing_t]);
        let copy = r.action("acl_copy", &[], &[&pre_t, &ing_t]);

        let pin = names.header("packet_in");
        if pin.is_none() {
            r.problems
                .push("controller header `packet_in` is missing".to_string());
        }
        let pin_port = r.header_field(pin, "packet_in", "ingress_port");
        let pin_reason = r.header_field(pin, "packet_in", "punt_reason");
        let pout = names.header("packet_out");
        if pout.is_none() {
            r.problems
                .push("controller header `packet_out` is missing".to_string());
        }
        let pout_egress = r.header_field(pout, "packet_out", "egress_port");
        let pout_ingress = r.header_field(pout, "packet_out", "ingress_port");
        let pout_submit = r.header_field(pout, "packet_out", "submit_to_ingress");
        let pout_all = pout
            .map(|h| h.fields.iter().map(|f| (f.id, f.bits)).collect())
            .unwrap_or_default();

        if !r.problems.is_empty() {
            return Err(SchemaError {
                problems: r.problems,
            });
        }
        Ok(Schema {
            l3_admit: l3.0,
            l3_admit_dst_mac: l3_dst,
            admit_to_l3: admit,
            ingress_rif: ing.0,
            ingress_rif_in_port: ing_port,
            ingress_rif_vlan_id: ing_vlan,
            set_ingress_rif: set_ing,
            router_interface: ri.0,
            router_interface_rif_id: ri_id,
            set_port_and_src_mac: psm,
            set_port_and_src_mac_and_vlan: psmv,
            neighbor: nb.0,
            neighbor_rif_id: nb_rif,
            neighbor_ip: nb_ip,
            set_dst_mac: sdm,
            set_dst_mac_and_port: sdmp,
            nexthop: nh.0,
            nexthop_id: nh_id,
            set_ip_nexthop: sipn,
            wcmp_group: wg.0,
            wcmp_group_id: wg_id,
            max_group_weight,
            ipv4_lpm: RouteTable {
                table: v4.0,
                vrf_id: v4_vrf,
                dst: v4_dst,
            },
            ipv6_lpm: RouteTable {
                table: v6.0,
                vrf_id: v6_vrf,
                dst: v6_dst,
            },
            set_nexthop_id: snh,
            set_wcmp_group_id: swg,
            drop,
            to_cpu,
            acl_pre_ingress: pre,
            acl_ingress: ingress,
            set_vrf,
            acl_forward: fwd,
            acl_drop: adrop,
            acl_trap: trap,
            acl_copy: copy,
            packet_in: PacketInHeader {
                ingress_port: pin_port,
                punt_reason: pin_reason,
            },
            packet_out: PacketOutHeader {
                egress_port: pout_egress,
                ingress_port: pout_ingress,
                submit_to_ingress: pout_submit,
                all: pout_all,
            },
        })
    }

    /// Resolves straight from a P4Info.
    pub fn from_p4info(info: &cfg::P4Info) -> Result<Schema, SchemaError> {
        Schema::resolve(&P4Names::new(info))
    }

    /// The dependency level of a table's entries: an entry may refer to
    /// entries of lower levels only, so inserts go level by level upward
    /// and deletes downward. Tables the controller does not manage: `None`.
    pub fn level(&self, table_id: u32) -> Option<u8> {
        let t = table_id;
        if t == self.l3_admit.id
            || t == self.router_interface.id
            || t == self.acl_pre_ingress.table.id
            || t == self.acl_ingress.table.id
        {
            Some(0)
        } else if t == self.ingress_rif.id || t == self.neighbor.id || t == self.nexthop.id {
            Some(1)
        } else if t == self.wcmp_group.id {
            Some(2)
        } else if t == self.ipv4_lpm.table.id || t == self.ipv6_lpm.table.id {
            Some(3)
        } else {
            None
        }
    }

    /// The controller's name of a managed table.
    pub fn table_name(&self, table_id: u32) -> Option<&'static str> {
        [
            self.l3_admit,
            self.ingress_rif,
            self.router_interface,
            self.neighbor,
            self.nexthop,
            self.wcmp_group,
            self.ipv4_lpm.table,
            self.ipv6_lpm.table,
            self.acl_pre_ingress.table,
            self.acl_ingress.table,
        ]
        .into_iter()
        .find(|t| t.id == table_id)
        .map(|t| t.name)
    }

    /// The ids of every table the controller manages.
    pub fn managed_tables(&self) -> [u32; 10] {
        [
            self.l3_admit.id,
            self.ingress_rif.id,
            self.router_interface.id,
            self.neighbor.id,
            self.nexthop.id,
            self.wcmp_group.id,
            self.ipv4_lpm.table.id,
            self.ipv6_lpm.table.id,
            self.acl_pre_ingress.table.id,
            self.acl_ingress.table.id,
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn nos_p4info() -> cfg::P4Info {
        p4runtime_proto::text_format::p4info_from_text(include_str!("../programs/nos.p4info.txtpb"))
            .expect("nos.p4info.txtpb parses")
    }

    #[test]
    fn the_committed_p4info_resolves_by_name() {
        let info = nos_p4info();
        let s = Schema::from_p4info(&info).unwrap();
        let names = P4Names::new(&info);
        assert_eq!(s.ipv4_lpm.table.id, names.table("ipv4_lpm").unwrap().id);
        assert_eq!(s.neighbor_ip.bits, 128);
        assert_eq!(s.set_port_and_src_mac.params[0].bits, 9);
        assert_eq!(s.max_group_weight, 256);
        assert_eq!(s.packet_out.all.len(), 4);
        assert_eq!(s.level(s.ipv6_lpm.table.id), Some(3));
        assert_eq!(s.level(12345), None);
    }

    #[test]
    fn ids_come_from_the_p4info_not_from_the_code() {
        let mut info = nos_p4info();
        // Renumber every table and action: the schema follows.
        let old_route = Schema::from_p4info(&info).unwrap().ipv4_lpm.table.id;
        for t in &mut info.tables {
            if let Some(p) = &mut t.preamble {
                p.id += 1000;
            }
        }
        for p in &mut info.action_profiles {
            p.table_ids.iter_mut().for_each(|i| *i += 1000);
        }
        let s = Schema::from_p4info(&info).unwrap();
        assert_eq!(s.ipv4_lpm.table.id, old_route + 1000);
    }

    #[test]
    fn every_missing_piece_is_named() {
        let mut info = nos_p4info();
        info.tables.retain(|t| {
            let n = &t.preamble.as_ref().unwrap().name;
            n != "ipv6_lpm" && n != "neighbor"
        });
        for a in &mut info.actions {
            if a.preamble.as_ref().unwrap().name == "set_nexthop_id" {
                a.params[0].name = "nh".into();
            }
        }
        for t in &mut info.tables {
            if t.preamble.as_ref().unwrap().name == "ipv4_lpm" {
                t.match_fields[1].match_type_mut_exact();
            }
        }
        let e = Schema::from_p4info(&info).unwrap_err();
        let text = e.to_string();
        for want in [
            "table `ipv6_lpm` is missing",
            "table `neighbor` is missing",
            "action `set_nexthop_id` has no parameter `nexthop_id`",
            "match field `ipv4_lpm.ipv4_dst` is EXACT",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
    }

    trait MakeExact {
        fn match_type_mut_exact(&mut self);
    }

    impl MakeExact for cfg::MatchField {
        fn match_type_mut_exact(&mut self) {
            self.r#match = Some(cfg::match_field::Match::MatchType(
                cfg::match_field::MatchType::Exact as i32,
            ));
        }
    }
}
