//! Table entries in the target's own canonical form, decoded from and
//! encoded to `p4.v1.TableEntry` with the ids of the current pipeline.
//!
//! Entries are stored by contract position (key field index, action kind,
//! parameter index), not by P4Info id, so a pipeline pushed with other ids
//! (RECONCILE_AND_COMMIT) keeps them. Values are numbers; encoding them
//! again gives the canonical message the specification's read-write symmetry
//! asks for: match fields in P4Info order of the contract, "don't care"
//! fields omitted, the shortest binary strings.

use super::bitstring::{self, max_value};
use super::contract::{ActionKind, MatchKind, Pipeline, TableKind};
use super::error::RpcError;
use p4::field_match::FieldMatchType;
use p4::table_action::Type as TableActionType;
use p4runtime_proto::p4::config::v1::action_ref::Scope;
use p4runtime_proto::p4::v1 as p4;
use smallvec::SmallVec;

/// The value of one key field; "don't care" is `None` in [`EntryKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldValue {
    Exact(u128),
    Lpm { value: u128, len: u32 },
    Ternary { value: u128, mask: u128 },
    Range { low: u128, high: u128 },
}

/// What identifies an entry in its table: the match and the priority.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey {
    /// One element per contract key field, in contract order.
    /// Inline for up to two fields (every table but the ACLs): keys are
    /// compared in place when a table is searched.
    pub fields: SmallVec<[Option<FieldValue>; 2]>,
    pub priority: i32,
}

impl EntryKey {
    /// The value of an exact field (always present in a decoded key).
    pub fn exact(&self, i: usize) -> u128 {
        match self.fields.get(i) {
            Some(Some(FieldValue::Exact(v))) => *v,
            _ => 0,
        }
    }
}

/// An action with its parameter values in contract order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionCall {
    pub kind: ActionKind,
    pub params: SmallVec<[u128; 2]>,
}

/// A one-shot action set, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneShot {
    /// Each member's action and weight, in the order given.
    pub members: Vec<(ActionCall, i32)>,
    pub selection_mode: i32,
    pub size_semantics: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredAction {
    Direct(ActionCall),
    OneShot(OneShot),
}

/// An installed entry: its action and the controller's opaque data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub action: StoredAction,
    pub metadata: Vec<u8>,
    pub controller_metadata: u64,
    /// The model object id the target allocated for it (ACL rules); 0 else.
    pub model_id: u32,
}

impl Entry {
    /// The direct action (every table but `wcmp_group` has one).
    pub fn direct(&self) -> Option<&ActionCall> {
        match &self.action {
            StoredAction::Direct(a) => Some(a),
            StoredAction::OneShot(_) => None,
        }
    }
}

/// A decoded table-entry update (the default entry is handled apart).
#[derive(Clone, Debug)]
pub struct TableWrite {
    pub key: EntryKey,
    /// `None` when the update carries no action (DELETE, or a MODIFY that
    /// changes nothing).
    pub action: Option<StoredAction>,
    pub metadata: Vec<u8>,
    pub controller_metadata: u64,
}

/// "table `t`, field `f`", formatted only when an error needs it.
struct FieldLabel(TableKind, usize);

impl std::fmt::Display for FieldLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.0.keys().get(self.1).map_or("?", |k| k.name);
        write!(f, "table `{}`, field `{name}`", self.0.name())
    }
}

/// "action `a`, parameter `p`", formatted only when an error needs it.
struct ParamLabel(ActionKind, usize);

impl std::fmt::Display for ParamLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.0.params().get(self.1).map_or("?", |p| p.name);
        write!(f, "action `{}`, parameter `{name}`", self.0.name())
    }
}

fn field_label(kind: TableKind, i: usize) -> FieldLabel {
    FieldLabel(kind, i)
}

/// Checks the parts of a written entry this target has no use for: direct
/// resources, idle timeout, the const flag.
pub fn check_unsupported_fields(te: &p4::TableEntry, kind: TableKind) -> Result<(), RpcError> {
    let t = kind.name();
    if te.is_const {
        return Err(RpcError::invalid(format!(
            "table `{t}`: is_const must be false in a write"
        )));
    }
    if te.idle_timeout_ns != 0 || te.time_since_last_hit.is_some() {
        return Err(RpcError::invalid(format!(
            "table `{t}` does not support idle timeout"
        )));
    }
    if te.meter_config.is_some() || te.counter_data.is_some() || te.meter_counter_data.is_some() {
        return Err(RpcError::invalid(format!(
            "table `{t}` has no direct counter or meter"
        )));
    }
    Ok(())
}

/// Decodes and validates the match and priority of `te` for table `kind`.
pub fn decode_key(
    pipe: &Pipeline,
    kind: TableKind,
    te: &p4::TableEntry,
) -> Result<EntryKey, RpcError> {
    let ids = &pipe.table(kind).field_ids;
    let specs = kind.keys();
    let mut fields: SmallVec<[Option<FieldValue>; 2]> = smallvec::smallvec![None; specs.len()];
    for m in &te.r#match {
        let Some(i) = ids.iter().position(|id| *id == m.field_id) else {
            return Err(RpcError::invalid(format!(
                "table `{}` has no match field with id {}",
                kind.name(),
                m.field_id
            )));
        };
        if fields[i].is_some() {
            return Err(RpcError::invalid(format!(
                "{}: given twice",
                field_label(kind, i)
            )));
        }
        fields[i] = Some(decode_field(kind, i, m)?);
    }
    for (i, s) in specs.iter().enumerate() {
        if s.kind == MatchKind::Exact && fields[i].is_none() {
            return Err(RpcError::invalid(format!(
                "{}: an exact field must be given",
                field_label(kind, i)
            )));
        }
    }
    if kind.needs_priority() {
        if te.priority <= 0 {
            return Err(RpcError::invalid(format!(
                "table `{}` has ternary or range fields: entries need a priority above 0",
                kind.name()
            )));
        }
    } else if te.priority != 0 {
        return Err(RpcError::invalid(format!(
            "table `{}` has no ternary or range field: the priority must be 0",
            kind.name()
        )));
    }
    Ok(EntryKey {
        fields,
        priority: te.priority,
    })
}

fn decode_field(kind: TableKind, i: usize, m: &p4::FieldMatch) -> Result<FieldValue, RpcError> {
    let spec = kind.keys()[i];
    let label = field_label(kind, i);
    let bits = spec.bits;
    let given = match &m.field_match_type {
        None => return Err(RpcError::invalid(format!("{label}: no match value"))),
        Some(FieldMatchType::Exact(_)) => "EXACT",
        Some(FieldMatchType::Lpm(_)) => "LPM",
        Some(FieldMatchType::Ternary(_)) => "TERNARY",
        Some(FieldMatchType::Range(_)) => "RANGE",
        Some(FieldMatchType::Optional(_)) => "OPTIONAL",
        Some(FieldMatchType::Other(_)) => "an architecture-specific match",
    };
    let mismatch = || {
        RpcError::invalid(format!(
            "{label}: the field is {}, the entry gives {given}",
            spec.kind.name()
        ))
    };
    match (&m.field_match_type, spec.kind) {
        (Some(FieldMatchType::Exact(e)), MatchKind::Exact) => Ok(FieldValue::Exact(
            bitstring::decode(&e.value, bits, &label)?,
        )),
        (Some(FieldMatchType::Lpm(l)), MatchKind::Lpm) => {
            let value = bitstring::decode(&l.value, bits, &label)?;
            let len = l.prefix_len;
            if len == 0 {
                return Err(RpcError::invalid(format!(
                    "{label}: prefix length 0 is \"don't care\", which must be omitted"
                )));
            }
            if len < 0 || len as u32 > bits {
                return Err(RpcError::invalid(format!(
                    "{label}: prefix length {len} is outside 1..={bits}"
                )));
            }
            let len = len as u32;
            if value & max_value(bits - len) != 0 {
                return Err(RpcError::invalid(format!(
                    "{label}: the value has bits set beyond its /{len} prefix"
                )));
            }
            Ok(FieldValue::Lpm { value, len })
        }
        (Some(FieldMatchType::Ternary(t)), MatchKind::Ternary) => {
            let value = bitstring::decode(&t.value, bits, &label)?;
            let mask = bitstring::decode(&t.mask, bits, &label)?;
            if mask == 0 {
                return Err(RpcError::invalid(format!(
                    "{label}: mask 0 is \"don't care\", which must be omitted"
                )));
            }
            if value & !mask != 0 {
                return Err(RpcError::invalid(format!(
                    "{label}: the value has bits set outside the mask"
                )));
            }
            Ok(FieldValue::Ternary { value, mask })
        }
        (Some(FieldMatchType::Range(r)), MatchKind::Range) => {
            let low = bitstring::decode(&r.low, bits, &label)?;
            let high = bitstring::decode(&r.high, bits, &label)?;
            if low > high {
                return Err(RpcError::invalid(format!(
                    "{label}: the range's low bound {low} is above its high bound {high}"
                )));
            }
            if low == 0 && high == max_value(bits) {
                return Err(RpcError::invalid(format!(
                    "{label}: the full range is \"don't care\", which must be omitted"
                )));
            }
            Ok(FieldValue::Range { low, high })
        }
        _ => Err(mismatch()),
    }
}

/// Decodes one action (a direct action, or the action of a one-shot
/// member) of an entry of table `kind`.
pub fn decode_action_call(
    pipe: &Pipeline,
    kind: TableKind,
    a: &p4::Action,
) -> Result<ActionCall, RpcError> {
    let t = kind.name();
    let table = pipe.table(kind);
    let Some(scope) = table.action_refs.get(&a.action_id) else {
        return Err(RpcError::invalid(format!(
            "table `{t}` has no action with id {} ({})",
            a.action_id,
            pipe.action_name(a.action_id)
        )));
    };
    if *scope == Scope::DefaultOnly {
        return Err(RpcError::permission_denied(format!(
            "action `{}` may only be the default action of table `{t}`",
            pipe.action_name(a.action_id)
        )));
    }
    let Some(action) = pipe
        .action_kind(a.action_id)
        .filter(|k| kind.actions().contains(k))
    else {
        return Err(RpcError::unimplemented(format!(
            "the x86 target does not implement action `{}` in table `{t}`",
            pipe.action_name(a.action_id)
        )));
    };
    let specs = action.params();
    let ids = pipe.param_ids(action);
    let mut values: SmallVec<[Option<u128>; 4]> = smallvec::smallvec![None; specs.len()];
    for p in &a.params {
        let Some(i) = ids.iter().position(|id| *id == p.param_id) else {
            return Err(RpcError::invalid(format!(
                "action `{}` has no parameter with id {}",
                action.name(),
                p.param_id
            )));
        };
        let label = ParamLabel(action, i);
        if values[i].is_some() {
            return Err(RpcError::invalid(format!("{label}: given twice")));
        }
        values[i] = Some(bitstring::decode(&p.value, specs[i].bits, &label)?);
    }
    let params = values
        .iter()
        .zip(specs)
        .map(|(v, s)| {
            v.ok_or_else(|| {
                RpcError::invalid(format!(
                    "action `{}`: parameter `{}` is missing",
                    action.name(),
                    s.name
                ))
            })
        })
        .collect::<Result<SmallVec<[u128; 2]>, RpcError>>()?;
    Ok(ActionCall {
        kind: action,
        params,
    })
}

/// Decodes the action of an INSERT or MODIFY for table `kind`.
pub fn decode_action(
    pipe: &Pipeline,
    kind: TableKind,
    ta: &p4::TableAction,
) -> Result<StoredAction, RpcError> {
    let t = kind.name();
    match &ta.r#type {
        None => Err(RpcError::invalid(format!(
            "table `{t}`: the action is empty"
        ))),
        Some(TableActionType::Action(a)) => {
            if kind.one_shot() {
                return Err(RpcError::invalid(format!(
                    "table `{t}` is implemented by an action selector: write an action_profile_action_set"
                )));
            }
            Ok(StoredAction::Direct(decode_action_call(pipe, kind, a)?))
        }
        Some(TableActionType::ActionProfileMemberId(_))
        | Some(TableActionType::ActionProfileGroupId(_)) => Err(if kind.one_shot() {
            RpcError::unimplemented(format!(
                "table `{t}`: the x86 target supports one-shot programming only (action_profile_action_set)"
            ))
        } else {
            RpcError::invalid(format!(
                "table `{t}` is a direct table: its entries take an action"
            ))
        }),
        Some(TableActionType::ActionProfileActionSet(set)) => {
            if !kind.one_shot() {
                return Err(RpcError::invalid(format!(
                    "table `{t}` is a direct table: its entries take an action, not an action set"
                )));
            }
            decode_one_shot(pipe, kind, set).map(StoredAction::OneShot)
        }
    }
}

fn decode_one_shot(
    pipe: &Pipeline,
    kind: TableKind,
    set: &p4::ActionProfileActionSet,
) -> Result<OneShot, RpcError> {
    use p4::action_profile_action_set::{ActionSelectionMode as Mode, SizeSemantics as Size};
    let t = kind.name();
    if set.group_action.is_some() {
        return Err(RpcError::invalid(format!(
            "table `{t}`: the selector has no group action"
        )));
    }
    match Mode::try_from(set.action_selection_mode) {
        Ok(Mode::DefaultModeDeterminedByActionSelector) | Ok(Mode::Hash) => {}
        Ok(Mode::Random) => {
            return Err(RpcError::unimplemented(format!(
                "table `{t}`: the selector picks members by hash, not at random"
            )))
        }
        Err(_) => {
            return Err(RpcError::invalid(format!(
                "table `{t}`: unknown action selection mode {}",
                set.action_selection_mode
            )))
        }
    }
    match Size::try_from(set.size_semantics) {
        Ok(Size::DefaultSizeDeterminedByActionSelector) | Ok(Size::SumOfWeights) => {}
        _ => {
            return Err(RpcError::invalid(format!(
                "table `{t}`: the selector counts group sizes as the sum of weights"
            )))
        }
    }
    if set.action_profile_actions.is_empty() {
        return Err(RpcError::unimplemented(format!(
            "table `{t}`: the x86 target does not support empty groups"
        )));
    }
    let mut members = Vec::with_capacity(set.action_profile_actions.len());
    let mut total: u64 = 0;
    for (n, m) in set.action_profile_actions.iter().enumerate() {
        let Some(a) = &m.action else {
            return Err(RpcError::invalid(format!(
                "table `{t}`: member {n} has no action"
            )));
        };
        if m.weight <= 0 {
            return Err(RpcError::invalid(format!(
                "table `{t}`: member {n} has weight {}; weights start at 1",
                m.weight
            )));
        }
        if m.watch_kind.is_some() {
            return Err(RpcError::unimplemented(format!(
                "table `{t}`: the x86 target does not watch ports (member {n})"
            )));
        }
        total += m.weight as u64;
        members.push((decode_action_call(pipe, kind, a)?, m.weight));
    }
    if pipe.max_group_weight > 0 && total > u64::from(pipe.max_group_weight) {
        return Err(RpcError::invalid(format!(
            "table `{t}`: the weights add up to {total}, above the selector's max_group_size {}",
            pipe.max_group_weight
        )));
    }
    Ok(OneShot {
        members,
        selection_mode: set.action_selection_mode,
        size_semantics: set.size_semantics,
    })
}

/// Decodes a table-entry write (`INSERT`, `MODIFY` or `DELETE`) of a
/// regular (not default) entry.
#[allow(deprecated)] // controller_metadata: deprecated, still read back as written
pub fn decode_table_write(
    pipe: &Pipeline,
    kind: TableKind,
    te: &p4::TableEntry,
    is_delete: bool,
) -> Result<TableWrite, RpcError> {
    let key = decode_key(pipe, kind, te)?;
    // A delete is identified by its key; everything else is ignored.
    let action = if is_delete {
        None
    } else {
        check_unsupported_fields(te, kind)?;
        te.action
            .as_ref()
            .map(|a| decode_action(pipe, kind, a))
            .transpose()?
    };
    Ok(TableWrite {
        key,
        action,
        metadata: te.metadata.clone(),
        controller_metadata: te.controller_metadata,
    })
}

fn encode_field(v: &FieldValue) -> FieldMatchType {
    match *v {
        FieldValue::Exact(value) => FieldMatchType::Exact(p4::field_match::Exact {
            value: bitstring::encode(value),
        }),
        FieldValue::Lpm { value, len } => FieldMatchType::Lpm(p4::field_match::Lpm {
            value: bitstring::encode(value),
            prefix_len: len as i32,
        }),
        FieldValue::Ternary { value, mask } => FieldMatchType::Ternary(p4::field_match::Ternary {
            value: bitstring::encode(value),
            mask: bitstring::encode(mask),
        }),
        FieldValue::Range { low, high } => FieldMatchType::Range(p4::field_match::Range {
            low: bitstring::encode(low),
            high: bitstring::encode(high),
        }),
    }
}

/// The match of `key` with the current pipeline's field ids.
pub fn encode_key(pipe: &Pipeline, kind: TableKind, key: &EntryKey) -> Vec<p4::FieldMatch> {
    let ids = &pipe.table(kind).field_ids;
    key.fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.as_ref().map(|v| p4::FieldMatch {
                field_id: ids.get(i).copied().unwrap_or(0),
                field_match_type: Some(encode_field(v)),
            })
        })
        .collect()
}

pub fn encode_action_call(pipe: &Pipeline, a: &ActionCall) -> p4::Action {
    let ids = pipe.param_ids(a.kind);
    p4::Action {
        action_id: pipe.action_id(a.kind),
        params: a
            .params
            .iter()
            .enumerate()
            .map(|(i, v)| p4::action::Param {
                param_id: ids.get(i).copied().unwrap_or(0),
                value: bitstring::encode(*v),
            })
            .collect(),
    }
}

fn encode_action(pipe: &Pipeline, a: &StoredAction) -> p4::TableAction {
    let t = match a {
        StoredAction::Direct(call) => TableActionType::Action(encode_action_call(pipe, call)),
        StoredAction::OneShot(set) => {
            TableActionType::ActionProfileActionSet(p4::ActionProfileActionSet {
                group_action: None,
                action_profile_actions: set
                    .members
                    .iter()
                    .map(|(call, weight)| p4::ActionProfileAction {
                        action: Some(encode_action_call(pipe, call)),
                        weight: *weight,
                        watch_kind: None,
                    })
                    .collect(),
                action_selection_mode: set.selection_mode,
                size_semantics: set.size_semantics,
            })
        }
    };
    p4::TableAction { r#type: Some(t) }
}

/// An installed entry as a `TableEntry` with the current pipeline's ids.
#[allow(deprecated)] // controller_metadata: deprecated, still read back as written
pub fn encode_entry(
    pipe: &Pipeline,
    kind: TableKind,
    key: &EntryKey,
    entry: &Entry,
) -> p4::TableEntry {
    p4::TableEntry {
        table_id: pipe.table(kind).id,
        r#match: encode_key(pipe, kind, key),
        action: Some(encode_action(pipe, &entry.action)),
        priority: key.priority,
        controller_metadata: entry.controller_metadata,
        metadata: entry.metadata.clone(),
        ..Default::default()
    }
}

/// The (constant) default entry of table `kind`.
pub fn default_entry(pipe: &Pipeline, kind: TableKind) -> p4::TableEntry {
    let t = pipe.table(kind);
    p4::TableEntry {
        table_id: t.id,
        action: t.default_action.map(|id| p4::TableAction {
            r#type: Some(TableActionType::Action(p4::Action {
                action_id: id,
                params: Vec::new(),
            })),
        }),
        is_default_action: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::contract::tests::nos_p4info;
    use tonic::Code;

    fn pipe() -> Pipeline {
        Pipeline::resolve(p4::ForwardingPipelineConfig {
            p4info: Some(nos_p4info()),
            ..Default::default()
        })
        .unwrap()
    }

    fn lpm(value: &[u8], len: i32) -> p4::FieldMatch {
        p4::FieldMatch {
            field_id: 2,
            field_match_type: Some(FieldMatchType::Lpm(p4::field_match::Lpm {
                value: value.to_vec(),
                prefix_len: len,
            })),
        }
    }

    fn exact(id: u32, value: &[u8]) -> p4::FieldMatch {
        p4::FieldMatch {
            field_id: id,
            field_match_type: Some(FieldMatchType::Exact(p4::field_match::Exact {
                value: value.to_vec(),
            })),
        }
    }

    fn route(matches: Vec<p4::FieldMatch>) -> p4::TableEntry {
        p4::TableEntry {
            table_id: 0x0200_0004,
            r#match: matches,
            ..Default::default()
        }
    }

    #[test]
    fn lpm_keys_are_checked_and_canonical() {
        let p = pipe();
        let k = decode_key(
            &p,
            TableKind::Ipv4Lpm,
            &route(vec![exact(1, &[0, 0, 0, 0]), lpm(&[0, 10, 1, 0, 0], 16)]),
        )
        .unwrap();
        assert_eq!(k.fields[0], Some(FieldValue::Exact(0)));
        assert_eq!(
            k.fields[1],
            Some(FieldValue::Lpm {
                value: 0x0a01_0000,
                len: 16
            })
        );
        let back = encode_key(&p, TableKind::Ipv4Lpm, &k);
        assert_eq!(back, vec![exact(1, &[0]), lpm(&[10, 1, 0, 0], 16)]);

        let code = |m| {
            decode_key(&p, TableKind::Ipv4Lpm, &route(m))
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(vec![exact(1, &[0]), lpm(&[10, 1, 0, 1], 16)]),
            Code::InvalidArgument
        );
        assert_eq!(
            code(vec![exact(1, &[0]), lpm(&[10, 1, 0, 0], 0)]),
            Code::InvalidArgument
        );
        assert_eq!(
            code(vec![exact(1, &[0]), lpm(&[10, 1, 0, 0], 33)]),
            Code::InvalidArgument
        );
        assert_eq!(code(vec![exact(1, &[1, 0, 0, 0, 0])]), Code::OutOfRange);
        assert_eq!(code(vec![lpm(&[10, 0, 0, 0], 8)]), Code::InvalidArgument);
        assert_eq!(
            code(vec![exact(1, &[0]), exact(1, &[0])]),
            Code::InvalidArgument
        );
        assert_eq!(code(vec![exact(9, &[0])]), Code::InvalidArgument);
        assert_eq!(
            code(vec![exact(1, &[0]), exact(2, &[0])]),
            Code::InvalidArgument
        );
    }

    #[test]
    fn ternary_and_range_keys_need_priorities() {
        let p = pipe();
        let ternary = |v: &[u8], m: &[u8]| p4::FieldMatch {
            field_id: 4,
            field_match_type: Some(FieldMatchType::Ternary(p4::field_match::Ternary {
                value: v.to_vec(),
                mask: m.to_vec(),
            })),
        };
        let te = |m, priority| p4::TableEntry {
            table_id: 0x0200_000a,
            r#match: vec![m],
            priority,
            ..Default::default()
        };
        let ok = decode_key(
            &p,
            TableKind::AclIngress,
            &te(ternary(&[8, 0], &[0xff, 0xff]), 5),
        )
        .unwrap();
        assert_eq!(
            ok.fields[3],
            Some(FieldValue::Ternary {
                value: 0x800,
                mask: 0xffff
            })
        );
        let code = |m, prio| {
            decode_key(&p, TableKind::AclIngress, &te(m, prio))
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(ternary(&[8, 0], &[0xff, 0xff]), 0),
            Code::InvalidArgument
        );
        assert_eq!(code(ternary(&[8, 1], &[0xff, 0]), 1), Code::InvalidArgument);
        assert_eq!(code(ternary(&[0], &[0]), 1), Code::InvalidArgument);
        let range = |lo: u16, hi: u16| p4::FieldMatch {
            field_id: 12,
            field_match_type: Some(FieldMatchType::Range(p4::field_match::Range {
                low: lo.to_be_bytes().to_vec(),
                high: hi.to_be_bytes().to_vec(),
            })),
        };
        assert!(decode_key(&p, TableKind::AclIngress, &te(range(80, 80), 1)).is_ok());
        assert_eq!(code(range(81, 80), 1), Code::InvalidArgument);
        assert_eq!(code(range(0, 0xffff), 1), Code::InvalidArgument);
    }

    #[test]
    fn actions_are_checked_against_the_table() {
        let p = pipe();
        let act = |id: u32, params: Vec<(u32, Vec<u8>)>| p4::TableAction {
            r#type: Some(TableActionType::Action(p4::Action {
                action_id: id,
                params: params
                    .into_iter()
                    .map(|(param_id, value)| p4::action::Param { param_id, value })
                    .collect(),
            })),
        };
        let ok = decode_action(
            &p,
            TableKind::RouterInterface,
            &act(
                0x0100_000f,
                vec![(2, vec![0, 2, 0, 0, 0, 0, 1]), (1, vec![0, 1])],
            ),
        )
        .unwrap();
        assert_eq!(
            ok,
            StoredAction::Direct(ActionCall {
                kind: ActionKind::SetPortAndSrcMac,
                params: smallvec::smallvec![1, 0x0200_0000_0001]
            })
        );
        let code = |a| {
            decode_action(&p, TableKind::RouterInterface, &a)
                .unwrap_err()
                .code
        };
        // Missing parameter, unknown parameter, overflowing value.
        assert_eq!(
            code(act(0x0100_000f, vec![(1, vec![1])])),
            Code::InvalidArgument
        );
        assert_eq!(
            code(act(
                0x0100_000f,
                vec![(1, vec![1]), (2, vec![1]), (3, vec![1])]
            )),
            Code::InvalidArgument
        );
        assert_eq!(
            code(act(0x0100_000f, vec![(1, vec![2, 0]), (2, vec![1])])),
            Code::OutOfRange
        );
        // An action of another table; the constant default action.
        assert_eq!(
            code(act(0x0100_0008, vec![(1, vec![1])])),
            Code::InvalidArgument
        );
        assert_eq!(code(act(0x0100_000a, vec![])), Code::PermissionDenied);
    }
}
