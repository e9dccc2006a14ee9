//! The name contract of `p4/programs/README.md`, as the x86 target implements
//! it, and the check of a controller's P4Info against it.
//!
//! The target knows tables, actions, match fields, parameters and controller
//! header fields by name only. [`Pipeline::resolve`] finds each of them in
//! the P4Info a controller pushes, checks match kinds and bit widths, and
//! keeps the ids that P4Info gives them; every later request is decoded with
//! those ids. A P4Info that lacks something the target implements is refused
//! with one message naming everything that is missing or different.

use super::error::RpcError;
use p4runtime_proto::p4::config::v1 as cfg;
use p4runtime_proto::p4::v1::ForwardingPipelineConfig;
use std::collections::{BTreeSet, HashMap};

/// A match kind the contract uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchKind {
    Exact,
    Lpm,
    Ternary,
    Range,
}

impl MatchKind {
    fn proto(self) -> cfg::match_field::MatchType {
        use cfg::match_field::MatchType as M;
        match self {
            MatchKind::Exact => M::Exact,
            MatchKind::Lpm => M::Lpm,
            MatchKind::Ternary => M::Ternary,
            MatchKind::Range => M::Range,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MatchKind::Exact => "EXACT",
            MatchKind::Lpm => "LPM",
            MatchKind::Ternary => "TERNARY",
            MatchKind::Range => "RANGE",
        }
    }
}

/// A key field of a contract table.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    pub name: &'static str,
    pub bits: u32,
    pub kind: MatchKind,
}

/// A parameter of a contract action.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub bits: u32,
}

macro_rules! key {
    ($name:expr, $bits:expr, $kind:expr) => {
        KeySpec {
            name: $name,
            bits: $bits,
            kind: $kind,
        }
    };
}

macro_rules! param {
    ($name:expr, $bits:expr) => {
        ParamSpec {
            name: $name,
            bits: $bits,
        }
    };
}

use MatchKind::{Exact, Lpm, Range, Ternary};

/// Index of each ACL key field in the key of both ACL tables.
pub mod acl_field {
    pub const IN_PORT: usize = 0;
    pub const SRC_MAC: usize = 1;
    pub const DST_MAC: usize = 2;
    pub const ETHER_TYPE: usize = 3;
    pub const VLAN_ID: usize = 4;
    pub const SRC_IPV4: usize = 5;
    pub const DST_IPV4: usize = 6;
    pub const SRC_IPV6: usize = 7;
    pub const DST_IPV6: usize = 8;
    pub const IP_PROTO: usize = 9;
    pub const L4_SRC_PORT: usize = 10;
    pub const L4_DST_PORT: usize = 11;
    pub const TCP_FLAGS: usize = 12;
    pub const DSCP: usize = 13;
    pub const TTL: usize = 14;
}

/// The key of both ACL stages.
const ACL_KEYS: &[KeySpec] = &[
    key!("in_port", 9, Ternary),
    key!("src_mac", 48, Ternary),
    key!("dst_mac", 48, Ternary),
    key!("ether_type", 16, Ternary),
    key!("vlan_id", 12, Ternary),
    key!("src_ipv4", 32, Ternary),
    key!("dst_ipv4", 32, Ternary),
    key!("src_ipv6", 128, Ternary),
    key!("dst_ipv6", 128, Ternary),
    key!("ip_proto", 8, Ternary),
    key!("l4_src_port", 16, Range),
    key!("l4_dst_port", 16, Range),
    key!("tcp_flags", 8, Ternary),
    key!("dscp", 6, Ternary),
    key!("ttl", 8, Ternary),
];

/// An action of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    AdmitToL3,
    SetIngressRif,
    SetVrf,
    AclForward,
    AclDrop,
    AclTrap,
    AclCopy,
    SetNexthopId,
    SetWcmpGroupId,
    Drop,
    ToCpu,
    SetIpNexthop,
    SetDstMac,
    SetDstMacAndPort,
    SetPortAndSrcMac,
    SetPortAndSrcMacAndVlan,
}

impl ActionKind {
    pub const ALL: [ActionKind; 16] = [
        ActionKind::AdmitToL3,
        ActionKind::SetIngressRif,
        ActionKind::SetVrf,
        ActionKind::AclForward,
        ActionKind::AclDrop,
        ActionKind::AclTrap,
        ActionKind::AclCopy,
        ActionKind::SetNexthopId,
        ActionKind::SetWcmpGroupId,
        ActionKind::Drop,
        ActionKind::ToCpu,
        ActionKind::SetIpNexthop,
        ActionKind::SetDstMac,
        ActionKind::SetDstMacAndPort,
        ActionKind::SetPortAndSrcMac,
        ActionKind::SetPortAndSrcMacAndVlan,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            ActionKind::AdmitToL3 => "admit_to_l3",
            ActionKind::SetIngressRif => "set_ingress_rif",
            ActionKind::SetVrf => "set_vrf",
            ActionKind::AclForward => "acl_forward",
            ActionKind::AclDrop => "acl_drop",
            ActionKind::AclTrap => "acl_trap",
            ActionKind::AclCopy => "acl_copy",
            ActionKind::SetNexthopId => "set_nexthop_id",
            ActionKind::SetWcmpGroupId => "set_wcmp_group_id",
            ActionKind::Drop => "drop",
            ActionKind::ToCpu => "to_cpu",
            ActionKind::SetIpNexthop => "set_ip_nexthop",
            ActionKind::SetDstMac => "set_dst_mac",
            ActionKind::SetDstMacAndPort => "set_dst_mac_and_port",
            ActionKind::SetPortAndSrcMac => "set_port_and_src_mac",
            ActionKind::SetPortAndSrcMacAndVlan => "set_port_and_src_mac_and_vlan",
        }
    }

    /// Parameters in contract order (the order values are stored in).
    pub fn params(self) -> &'static [ParamSpec] {
        match self {
            ActionKind::SetIngressRif => &[param!("rif_id", 32), param!("vrf_id", 32)],
            ActionKind::SetVrf => &[param!("vrf_id", 32)],
            ActionKind::SetNexthopId => &[param!("nexthop_id", 32)],
            ActionKind::SetWcmpGroupId => &[param!("wcmp_group_id", 32)],
            ActionKind::SetIpNexthop => &[param!("rif_id", 32), param!("neighbor_ip", 128)],
            ActionKind::SetDstMac => &[param!("dst_mac", 48)],
            ActionKind::SetDstMacAndPort => &[
                param!("dst_mac", 48),
                param!("port", 9),
                param!("tagged", 1),
            ],
            ActionKind::SetPortAndSrcMac => &[param!("port", 9), param!("src_mac", 48)],
            ActionKind::SetPortAndSrcMacAndVlan => &[
                param!("port", 9),
                param!("src_mac", 48),
                param!("vlan_id", 12),
            ],
            ActionKind::AdmitToL3
            | ActionKind::AclForward
            | ActionKind::AclDrop
            | ActionKind::AclTrap
            | ActionKind::AclCopy
            | ActionKind::Drop
            | ActionKind::ToCpu => &[],
        }
    }
}

/// A table of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableKind {
    L3Admit,
    IngressRif,
    AclPreIngress,
    Ipv4Lpm,
    Ipv6Lpm,
    WcmpGroup,
    Nexthop,
    Neighbor,
    RouterInterface,
    AclIngress,
}

impl TableKind {
    pub const ALL: [TableKind; 10] = [
        TableKind::L3Admit,
        TableKind::IngressRif,
        TableKind::AclPreIngress,
        TableKind::Ipv4Lpm,
        TableKind::Ipv6Lpm,
        TableKind::WcmpGroup,
        TableKind::Nexthop,
        TableKind::Neighbor,
        TableKind::RouterInterface,
        TableKind::AclIngress,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            TableKind::L3Admit => "l3_admit",
            TableKind::IngressRif => "ingress_rif",
            TableKind::AclPreIngress => "acl_pre_ingress",
            TableKind::Ipv4Lpm => "ipv4_lpm",
            TableKind::Ipv6Lpm => "ipv6_lpm",
            TableKind::WcmpGroup => "wcmp_group",
            TableKind::Nexthop => "nexthop",
            TableKind::Neighbor => "neighbor",
            TableKind::RouterInterface => "router_interface",
            TableKind::AclIngress => "acl_ingress",
        }
    }

    /// Key fields in contract order (the order match values are stored in).
    pub fn keys(self) -> &'static [KeySpec] {
        match self {
            TableKind::L3Admit => &[key!("dst_mac", 48, Ternary), key!("in_port", 9, Ternary)],
            TableKind::IngressRif => &[key!("in_port", 9, Exact), key!("vlan_id", 12, Exact)],
            TableKind::AclPreIngress | TableKind::AclIngress => ACL_KEYS,
            TableKind::Ipv4Lpm => &[key!("vrf_id", 32, Exact), key!("ipv4_dst", 32, Lpm)],
            TableKind::Ipv6Lpm => &[key!("vrf_id", 32, Exact), key!("ipv6_dst", 128, Lpm)],
            TableKind::WcmpGroup => &[key!("wcmp_group_id", 32, Exact)],
            TableKind::Nexthop => &[key!("nexthop_id", 32, Exact)],
            TableKind::Neighbor => &[key!("rif_id", 32, Exact), key!("neighbor_ip", 128, Exact)],
            TableKind::RouterInterface => &[key!("rif_id", 32, Exact)],
        }
    }

    /// The actions entries of the table may use (for `wcmp_group`, the
    /// action of every member of a one-shot action set).
    pub fn actions(self) -> &'static [ActionKind] {
        use ActionKind as A;
        match self {
            TableKind::L3Admit => &[A::AdmitToL3],
            TableKind::IngressRif => &[A::SetIngressRif],
            TableKind::AclPreIngress => {
                &[A::SetVrf, A::AclForward, A::AclDrop, A::AclTrap, A::AclCopy]
            }
            TableKind::AclIngress => &[A::AclForward, A::AclDrop, A::AclTrap, A::AclCopy],
            TableKind::Ipv4Lpm | TableKind::Ipv6Lpm => {
                &[A::SetNexthopId, A::SetWcmpGroupId, A::Drop, A::ToCpu]
            }
            TableKind::WcmpGroup => &[A::SetNexthopId],
            TableKind::Nexthop => &[A::SetIpNexthop],
            TableKind::Neighbor => &[A::SetDstMac, A::SetDstMacAndPort],
            TableKind::RouterInterface => &[A::SetPortAndSrcMac, A::SetPortAndSrcMacAndVlan],
        }
    }

    /// Whether the table is implemented by the action selector and written
    /// with one-shot action sets.
    pub fn one_shot(self) -> bool {
        self == TableKind::WcmpGroup
    }

    /// Whether entries need a (non-zero) priority: any ternary or range key.
    pub fn needs_priority(self) -> bool {
        self.keys()
            .iter()
            .any(|k| matches!(k.kind, MatchKind::Ternary | MatchKind::Range))
    }
}

/// The selector behind `wcmp_group`.
pub const SELECTOR_NAME: &str = "wcmp_group_selector";

/// What a controller header field carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaRole {
    /// packet_in.ingress_port, packet_out.ingress_port.
    IngressPort,
    /// packet_in.punt_reason.
    PuntReason,
    /// packet_out.egress_port.
    EgressPort,
    /// packet_out.submit_to_ingress.
    SubmitToIngress,
    /// Padding and anything else the target does not interpret (always 0
    /// in packet-ins, any in-range value accepted in packet-outs).
    Other,
}

/// One field of a controller header, with its P4Info id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaField {
    pub id: u32,
    pub bits: u32,
    pub role: MetaRole,
}

const PACKET_IN_FIELDS: &[(&str, u32, MetaRole)] = &[
    ("ingress_port", 9, MetaRole::IngressPort),
    ("punt_reason", 8, MetaRole::PuntReason),
];

const PACKET_OUT_FIELDS: &[(&str, u32, MetaRole)] = &[
    ("egress_port", 9, MetaRole::EgressPort),
    ("ingress_port", 9, MetaRole::IngressPort),
    ("submit_to_ingress", 1, MetaRole::SubmitToIngress),
];

/// The ids one table has in the current P4Info.
#[derive(Clone, Debug)]
pub struct TableIds {
    pub id: u32,
    /// The id of each contract key field, in contract order.
    pub field_ids: Vec<u32>,
    /// Every action the P4Info lets the table use, with its scope.
    pub action_refs: HashMap<u32, cfg::action_ref::Scope>,
    /// The action of the (constant) default entry.
    pub default_action: Option<u32>,
}

/// A pipeline the target accepted: the controller's config and every id
/// resolved from its P4Info.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub config: ForwardingPipelineConfig,
    tables: Vec<TableIds>,
    table_by_id: HashMap<u32, TableKind>,
    /// Tables of the P4Info outside the contract, by id (for messages).
    other_tables: HashMap<u32, String>,
    action_ids: Vec<u32>,
    action_by_id: HashMap<u32, ActionKind>,
    /// Every action of the P4Info, by id (for messages).
    action_names: HashMap<u32, String>,
    param_ids: Vec<Vec<u32>>,
    /// Most weight a one-shot group may carry (0: no limit).
    pub max_group_weight: u32,
    pub packet_in: Vec<MetaField>,
    pub packet_out: Vec<MetaField>,
}

fn preamble(p: &Option<cfg::Preamble>) -> (u32, &str, &str) {
    p.as_ref()
        .map(|p| (p.id, p.name.as_str(), p.alias.as_str()))
        .unwrap_or((0, "", ""))
}

/// Whether a P4Info object called `name` (alias `alias`) is the contract's
/// `want`. p4c may prefix names with their control (`ingress.l3_admit`)
/// unless the program gives global names, as nos.p4 does.
fn named(name: &str, alias: &str, want: &str) -> bool {
    name == want || alias == want || name.strip_prefix('.') == Some(want)
}

impl Pipeline {
    /// Checks `config`'s P4Info against the contract and resolves its ids.
    pub fn resolve(config: ForwardingPipelineConfig) -> Result<Pipeline, RpcError> {
        let Some(info) = config.p4info.as_ref() else {
            return Err(RpcError::invalid(
                "the forwarding pipeline config has no P4Info",
            ));
        };
        let mut problems: Vec<String> = Vec::new();

        // Actions first: tables refer to them by id.
        let mut action_ids = vec![0u32; ActionKind::ALL.len()];
        let mut param_ids = vec![Vec::new(); ActionKind::ALL.len()];
        let mut action_by_id = HashMap::new();
        let mut action_names = HashMap::new();
        for a in &info.actions {
            let (id, name, _) = preamble(&a.preamble);
            action_names.insert(id, name.to_string());
        }
        for kind in ActionKind::ALL {
            let Some(a) = info.actions.iter().find(|a| {
                let (_, n, al) = preamble(&a.preamble);
                named(n, al, kind.name())
            }) else {
                problems.push(format!("action `{}` is missing", kind.name()));
                continue;
            };
            let (id, _, _) = preamble(&a.preamble);
            action_ids[kind.index()] = id;
            action_by_id.insert(id, kind);
            for p in kind.params() {
                match a.params.iter().find(|q| q.name == p.name) {
                    None => problems.push(format!(
                        "action `{}` has no parameter `{}`",
                        kind.name(),
                        p.name
                    )),
                    Some(q) if q.bitwidth != p.bits as i32 => problems.push(format!(
                        "parameter `{}.{}` is {} bits wide; the target needs {}",
                        kind.name(),
                        p.name,
                        q.bitwidth,
                        p.bits
                    )),
                    Some(q) => param_ids[kind.index()].push(q.id),
                }
            }
            for q in &a.params {
                if !kind.params().iter().any(|p| p.name == q.name) {
                    problems.push(format!(
                        "action `{}` has a parameter `{}` the target does not know",
                        kind.name(),
                        q.name
                    ));
                }
            }
        }

        let mut tables = Vec::new();
        let mut table_by_id = HashMap::new();
        let mut selector_id = None;
        for kind in TableKind::ALL {
            let Some(t) = info.tables.iter().find(|t| {
                let (_, n, al) = preamble(&t.preamble);
                named(n, al, kind.name())
            }) else {
                problems.push(format!("table `{}` is missing", kind.name()));
                tables.push(TableIds {
                    id: 0,
                    field_ids: Vec::new(),
                    action_refs: HashMap::new(),
                    default_action: None,
                });
                continue;
            };
            let (id, _, _) = preamble(&t.preamble);
            table_by_id.insert(id, kind);
            let mut field_ids = Vec::new();
            for k in kind.keys() {
                match t.match_fields.iter().find(|f| f.name == k.name) {
                    None => problems.push(format!(
                        "table `{}` has no match field `{}`",
                        kind.name(),
                        k.name
                    )),
                    Some(f) => {
                        let kind_ok = matches!(
                            f.r#match,
                            Some(cfg::match_field::Match::MatchType(m)) if m == k.kind.proto() as i32
                        );
                        if !kind_ok || f.bitwidth != k.bits as i32 {
                            problems.push(format!(
                                "match field `{}.{}` must be {} {} bits wide",
                                kind.name(),
                                k.name,
                                k.kind.name(),
                                k.bits
                            ));
                        }
                        field_ids.push(f.id);
                    }
                }
            }
            for f in &t.match_fields {
                if !kind.keys().iter().any(|k| k.name == f.name) {
                    problems.push(format!(
                        "table `{}` has a match field `{}` the target does not know",
                        kind.name(),
                        f.name
                    ));
                }
            }
            let action_refs: HashMap<u32, cfg::action_ref::Scope> = t
                .action_refs
                .iter()
                .map(|r| {
                    (
                        r.id,
                        cfg::action_ref::Scope::try_from(r.scope)
                            .unwrap_or(cfg::action_ref::Scope::TableAndDefault),
                    )
                })
                .collect();
            for a in kind.actions() {
                let aid = action_ids[a.index()];
                let usable = aid != 0
                    && action_refs
                        .get(&aid)
                        .is_some_and(|s| *s != cfg::action_ref::Scope::DefaultOnly);
                if !usable {
                    problems.push(format!(
                        "table `{}` does not offer action `{}`",
                        kind.name(),
                        a.name()
                    ));
                }
            }
            if kind.one_shot() {
                selector_id = Some(t.implementation_id);
            } else if t.implementation_id != 0 {
                problems.push(format!(
                    "table `{}` has an implementation; the target needs a direct table",
                    kind.name()
                ));
            }
            let default_action = match t.const_default_action_id {
                0 => info
                    .actions
                    .iter()
                    .map(|a| preamble(&a.preamble))
                    .find(|(_, n, al)| named(n, al, "NoAction"))
                    .map(|(id, _, _)| id),
                id => Some(id),
            };
            tables.push(TableIds {
                id,
                field_ids,
                action_refs,
                default_action,
            });
        }
        let other_tables = info
            .tables
            .iter()
            .map(|t| preamble(&t.preamble))
            .filter(|(id, _, _)| !table_by_id.contains_key(id))
            .map(|(id, n, _)| (id, n.to_string()))
            .collect();

        // The selector of wcmp_group.
        let mut max_group_weight = 0;
        match selector_id {
            None => {}
            Some(0) => problems.push(format!(
                "table `wcmp_group` has no implementation; the target needs it implemented by the action selector `{SELECTOR_NAME}`"
            )),
            Some(sid) => match info
                .action_profiles
                .iter()
                .find(|p| preamble(&p.preamble).0 == sid)
            {
                None => problems.push(format!(
                    "table `wcmp_group` refers to action profile {sid}, which the P4Info lacks"
                )),
                Some(p) if !p.with_selector => problems.push(format!(
                    "action profile `{}` of table `wcmp_group` has no selector",
                    preamble(&p.preamble).1
                )),
                Some(p) => {
                    if matches!(
                        p.selector_size_semantics,
                        Some(cfg::action_profile::SelectorSizeSemantics::SumOfMembers(_))
                    ) {
                        problems.push(format!(
                            "action profile `{}` counts group sizes in members; the target counts weights (sum_of_weights)",
                            preamble(&p.preamble).1
                        ));
                    }
                    max_group_weight = u32::try_from(p.max_group_size).unwrap_or(0);
                }
            },
        }

        let packet_in = resolve_header(info, "packet_in", PACKET_IN_FIELDS, &mut problems);
        let packet_out = resolve_header(info, "packet_out", PACKET_OUT_FIELDS, &mut problems);

        if !problems.is_empty() {
            return Err(RpcError::invalid(format!(
                "the P4Info does not provide what the x86 target implements (p4/programs/README.md): {}",
                problems.join("; ")
            )));
        }
        Ok(Pipeline {
            config,
            tables,
            table_by_id,
            other_tables,
            action_ids,
            action_by_id,
            action_names,
            param_ids,
            max_group_weight,
            packet_in,
            packet_out,
        })
    }

    pub fn table(&self, kind: TableKind) -> &TableIds {
        &self.tables[kind.index()]
    }

    /// The contract table with P4Info id `id`, or the error for an unknown id.
    pub fn table_kind(&self, id: u32) -> Result<TableKind, RpcError> {
        if let Some(k) = self.table_by_id.get(&id) {
            return Ok(*k);
        }
        Err(match self.other_tables.get(&id) {
            Some(name) => RpcError::unimplemented(format!(
                "the x86 target does not implement table `{name}` ({id})"
            )),
            None => RpcError::invalid(format!("the P4Info has no table with id {id}")),
        })
    }

    pub fn action_id(&self, kind: ActionKind) -> u32 {
        self.action_ids[kind.index()]
    }

    pub fn param_ids(&self, kind: ActionKind) -> &[u32] {
        &self.param_ids[kind.index()]
    }

    pub fn action_kind(&self, id: u32) -> Option<ActionKind> {
        self.action_by_id.get(&id).copied()
    }

    pub fn action_name(&self, id: u32) -> String {
        self.action_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub fn cookie(&self) -> Option<u64> {
        self.config.cookie.as_ref().map(|c| c.cookie)
    }
}

fn resolve_header(
    info: &cfg::P4Info,
    name: &str,
    needed: &[(&str, u32, MetaRole)],
    problems: &mut Vec<String>,
) -> Vec<MetaField> {
    let Some(h) = info.controller_packet_metadata.iter().find(|h| {
        let (_, n, al) = preamble(&h.preamble);
        named(n, al, name)
    }) else {
        problems.push(format!("controller header `{name}` is missing"));
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let fields: Vec<MetaField> = h
        .metadata
        .iter()
        .map(|m| {
            let role = match needed.iter().find(|(n, _, _)| *n == m.name) {
                Some((n, bits, role)) => {
                    seen.insert(*n);
                    if m.bitwidth != *bits as i32 {
                        problems.push(format!(
                            "field `{name}.{n}` is {} bits wide; the target needs {bits}",
                            m.bitwidth
                        ));
                    }
                    *role
                }
                None => MetaRole::Other,
            };
            MetaField {
                id: m.id,
                bits: u32::try_from(m.bitwidth).unwrap_or(0).min(128),
                role,
            }
        })
        .collect();
    for (n, _, _) in needed {
        if !seen.contains(n) {
            problems.push(format!("controller header `{name}` has no field `{n}`"));
        }
    }
    fields
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p4runtime_proto::text_format::p4info_from_text;

    pub fn nos_p4info() -> cfg::P4Info {
        let text = include_str!("../../../p4/programs/nos.p4info.txtpb");
        p4info_from_text(text).expect("nos.p4info.txtpb parses")
    }

    fn config(info: cfg::P4Info) -> ForwardingPipelineConfig {
        ForwardingPipelineConfig {
            p4info: Some(info),
            ..Default::default()
        }
    }

    #[test]
    fn the_committed_p4info_satisfies_the_contract() {
        let p = Pipeline::resolve(config(nos_p4info())).expect("resolves");
        assert_eq!(p.table(TableKind::L3Admit).id, 0x0200_0001);
        assert_eq!(p.table(TableKind::AclIngress).id, 0x0200_000a);
        assert_eq!(
            p.action_id(ActionKind::SetPortAndSrcMacAndVlan),
            0x0100_0010
        );
        assert_eq!(p.param_ids(ActionKind::SetDstMacAndPort), &[1, 2, 3]);
        assert_eq!(p.max_group_weight, 256);
        assert_eq!(p.packet_in.len(), 3);
        assert_eq!(p.packet_out.len(), 4);
        assert_eq!(
            p.table(TableKind::Neighbor).default_action,
            Some(0x0100_0011)
        );
    }

    #[test]
    fn a_missing_table_and_a_wrong_field_are_named() {
        let mut info = nos_p4info();
        info.tables
            .retain(|t| preamble(&t.preamble).1 != "ipv6_lpm");
        let rif = info
            .tables
            .iter_mut()
            .find(|t| preamble(&t.preamble).1 == "ingress_rif")
            .unwrap();
        rif.match_fields[1].bitwidth = 16;
        let e = Pipeline::resolve(config(info)).unwrap_err();
        assert_eq!(e.code, tonic::Code::InvalidArgument);
        assert!(e.message.contains("table `ipv6_lpm` is missing"), "{e}");
        assert!(
            e.message
                .contains("match field `ingress_rif.vlan_id` must be EXACT 12 bits wide"),
            "{e}"
        );
    }

    #[test]
    fn missing_packet_metadata_is_named() {
        let mut info = nos_p4info();
        info.controller_packet_metadata[1]
            .metadata
            .retain(|m| m.name != "submit_to_ingress");
        let e = Pipeline::resolve(config(info)).unwrap_err();
        assert!(
            e.message
                .contains("controller header `packet_out` has no field `submit_to_ingress`"),
            "{e}"
        );
    }
}
