//! Entities in canonical form, so what a target reads back can be compared
//! with what the compiler produces.
//!
//! Targets may pad binary strings, order match fields, parameters and
//! one-shot members as they like, and realize a member's weight by
//! repeating it; the canonical form takes all of that out: values are
//! numbers decoded with the bit widths of the P4Info (padding accepted,
//! overflow refused), fields and parameters sorted by id, one-shot members
//! merged by action and sorted. Read-only parts of an entry (counters,
//! meters, idle time) are not part of it.

use crate::bytes::{decode, encode, max_value, BytesError};
use crate::p4info::P4Names;
use p4::entity::Entity as E;
use p4::field_match::FieldMatchType as M;
use p4runtime_proto::p4::v1 as p4;

/// The value of one match field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldValue {
    Exact(u128),
    Lpm { value: u128, len: u32 },
    Ternary { value: u128, mask: u128 },
    Range { low: u128, high: u128 },
    Optional(u128),
}

/// What identifies an entity on the target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKey {
    Table {
        table_id: u32,
        priority: i32,
        /// (field id, value), sorted by field id.
        fields: Box<[(u32, FieldValue)]>,
    },
    CloneSession(u32),
}

/// An action with its parameter values, sorted by parameter id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    pub action_id: u32,
    pub params: Box<[(u32, u128)]>,
}

/// What an entity holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntityValue {
    /// A table entry's direct action.
    Action(Call),
    /// A one-shot action set: (action, total weight), sorted.
    ActionSet(Box<[(Call, i32)]>),
    /// A table entry with no action (a target returning keys only).
    NoAction,
    CloneSession {
        /// (port, instance), sorted.
        replicas: Box<[(u128, u32)]>,
        class_of_service: u32,
        packet_length_bytes: i32,
    },
}

/// Why an entity has no canonical form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error("the P4Info has no table with id {0}")]
    UnknownTable(u32),
    #[error("table `{table}` has no match field with id {field}")]
    UnknownField { table: String, field: u32 },
    #[error("the P4Info has no action with id {0}")]
    UnknownAction(u32),
    #[error("action `{action}` has no parameter with id {param}")]
    UnknownParam { action: String, param: u32 },
    #[error("table `{table}`, field `{field}`: {kind} match where the P4Info says {want}")]
    WrongKind {
        table: String,
        field: String,
        kind: &'static str,
        want: &'static str,
    },
    #[error("table `{table}`, field `{field}`: prefix length {len} is outside 0..={bits}")]
    PrefixLength {
        table: String,
        field: String,
        len: i32,
        bits: u32,
    },
    #[error(transparent)]
    Value(#[from] BytesError),
    #[error("{0}")]
    Unsupported(String),
}

fn kind_name(m: &M) -> &'static str {
    match m {
        M::Exact(_) => "EXACT",
        M::Lpm(_) => "LPM",
        M::Ternary(_) => "TERNARY",
        M::Range(_) => "RANGE",
        M::Optional(_) => "OPTIONAL",
        M::Other(_) => "an architecture-specific",
    }
}

fn call(names: &P4Names, a: &p4::Action) -> Result<Call, CanonError> {
    let info = names
        .action_by_id(a.action_id)
        .ok_or(CanonError::UnknownAction(a.action_id))?;
    let mut params = a
        .params
        .iter()
        .map(|p| {
            let spec = info
                .param_by_id(p.param_id)
                .ok_or_else(|| CanonError::UnknownParam {
                    action: info.name.clone(),
                    param: p.param_id,
                })?;
            let what = format!("action `{}`, parameter `{}`", info.name, spec.name);
            Ok((p.param_id, decode(&p.value, spec.bits, &what)?))
        })
        .collect::<Result<Vec<_>, CanonError>>()?;
    params.sort_unstable();
    Ok(Call {
        action_id: a.action_id,
        params: params.into_boxed_slice(),
    })
}

/// The canonical key of a table entry.
pub fn table_key(names: &P4Names, t: &p4::TableEntry) -> Result<EntityKey, CanonError> {
    use crate::p4info::MatchKind as K;
    let info = names
        .table_by_id(t.table_id)
        .ok_or(CanonError::UnknownTable(t.table_id))?;
    let mut fields = Vec::with_capacity(t.r#match.len());
    for m in &t.r#match {
        let spec = info
            .field_by_id(m.field_id)
            .ok_or_else(|| CanonError::UnknownField {
                table: info.name.clone(),
                field: m.field_id,
            })?;
        let what = format!("table `{}`, field `{}`", info.name, spec.name);
        let bits = spec.bits;
        let d = |b: &[u8]| decode(b, bits, &what);
        let Some(mt) = &m.field_match_type else {
            return Err(CanonError::Unsupported(format!("{what}: no match value")));
        };
        let wrong = || CanonError::WrongKind {
            table: info.name.clone(),
            field: spec.name.clone(),
            kind: kind_name(mt),
            want: spec.kind.name(),
        };
        let v = match (mt, spec.kind) {
            (M::Exact(e), K::Exact) => FieldValue::Exact(d(&e.value)?),
            (M::Lpm(l), K::Lpm) => {
                if l.prefix_len < 0 || l.prefix_len as u32 > bits {
                    return Err(CanonError::PrefixLength {
                        table: info.name.clone(),
                        field: spec.name.clone(),
                        len: l.prefix_len,
                        bits,
                    });
                }
                let len = l.prefix_len as u32;
                let host = if len == 0 {
                    max_value(bits)
                } else {
                    max_value(bits - len)
                };
                FieldValue::Lpm {
                    value: d(&l.value)? & !host,
                    len,
                }
            }
            (M::Ternary(x), K::Ternary) => {
                let mask = d(&x.mask)?;
                FieldValue::Ternary {
                    value: d(&x.value)? & mask,
                    mask,
                }
            }
            (M::Range(r), K::Range) => FieldValue::Range {
                low: d(&r.low)?,
                high: d(&r.high)?,
            },
            (M::Optional(o), K::Optional) => FieldValue::Optional(d(&o.value)?),
            _ => return Err(wrong()),
        };
        fields.push((m.field_id, v));
    }
    fields.sort_unstable();
    Ok(EntityKey::Table {
        table_id: t.table_id,
        priority: t.priority,
        fields: fields.into_boxed_slice(),
    })
}

fn clone_session(c: &p4::CloneSessionEntry) -> Result<(EntityKey, EntityValue), CanonError> {
    let mut replicas = c
        .replicas
        .iter()
        .map(|r| {
            #[allow(deprecated)] // egress_port: the older form of `port`
            let port = match &r.port_kind {
                Some(p4::replica::PortKind::Port(b)) => decode(
                    b,
                    128,
                    &format!("clone session {}, replica port", c.session_id),
                )?,
                Some(p4::replica::PortKind::EgressPort(p)) => u128::from(*p),
                None => 0,
            };
            Ok((port, r.instance))
        })
        .collect::<Result<Vec<_>, CanonError>>()?;
    replicas.sort_unstable();
    Ok((
        EntityKey::CloneSession(c.session_id),
        EntityValue::CloneSession {
            replicas: replicas.into_boxed_slice(),
            class_of_service: c.class_of_service,
            packet_length_bytes: c.packet_length_bytes,
        },
    ))
}

/// The canonical key and value of `e`.
pub fn canonical(names: &P4Names, e: &p4::Entity) -> Result<(EntityKey, EntityValue), CanonError> {
    use p4::table_action::Type as T;
    match &e.entity {
        Some(E::TableEntry(t)) => {
            let key = table_key(names, t)?;
            let value = match t.action.as_ref().and_then(|a| a.r#type.as_ref()) {
                None => EntityValue::NoAction,
                Some(T::Action(a)) => EntityValue::Action(call(names, a)?),
                Some(T::ActionProfileActionSet(set)) => {
                    let mut members: Vec<(Call, i32)> = Vec::new();
                    for m in &set.action_profile_actions {
                        let Some(a) = &m.action else {
                            return Err(CanonError::Unsupported(
                                "a one-shot member without an action".into(),
                            ));
                        };
                        let c = call(names, a)?;
                        match members.iter_mut().find(|(x, _)| *x == c) {
                            Some((_, w)) => *w = w.saturating_add(m.weight),
                            None => members.push((c, m.weight)),
                        }
                    }
                    members.sort();
                    EntityValue::ActionSet(members.into_boxed_slice())
                }
                Some(T::ActionProfileMemberId(_)) | Some(T::ActionProfileGroupId(_)) => {
                    return Err(CanonError::Unsupported(
                        "entries through action profile members or groups are not the controller's (it writes one-shot sets)".into(),
                    ))
                }
            };
            Ok((key, value))
        }
        Some(E::PacketReplicationEngineEntry(p)) => match &p.r#type {
            Some(p4::packet_replication_engine_entry::Type::CloneSessionEntry(c)) => {
                clone_session(c)
            }
            _ => Err(CanonError::Unsupported(
                "multicast groups are not the controller's".into(),
            )),
        },
        _ => Err(CanonError::Unsupported(
            "only table entries and clone sessions are compared".into(),
        )),
    }
}

/// An entity holding only `key` (for a DELETE), with the shortest
/// binary strings.
pub fn key_entity(key: &EntityKey) -> p4::Entity {
    match key {
        EntityKey::Table {
            table_id,
            priority,
            fields,
        } => p4::Entity {
            entity: Some(E::TableEntry(p4::TableEntry {
                table_id: *table_id,
                priority: *priority,
                r#match: fields
                    .iter()
                    .map(|(id, v)| p4::FieldMatch {
                        field_id: *id,
                        field_match_type: Some(match *v {
                            FieldValue::Exact(x) => {
                                M::Exact(p4::field_match::Exact { value: encode(x) })
                            }
                            FieldValue::Lpm { value, len } => M::Lpm(p4::field_match::Lpm {
                                value: encode(value),
                                prefix_len: len as i32,
                            }),
                            FieldValue::Ternary { value, mask } => {
                                M::Ternary(p4::field_match::Ternary {
                                    value: encode(value),
                                    mask: encode(mask),
                                })
                            }
                            FieldValue::Range { low, high } => M::Range(p4::field_match::Range {
                                low: encode(low),
                                high: encode(high),
                            }),
                            FieldValue::Optional(x) => {
                                M::Optional(p4::field_match::Optional { value: encode(x) })
                            }
                        }),
                    })
                    .collect(),
                ..Default::default()
            })),
        },
        EntityKey::CloneSession(id) => p4::Entity {
            entity: Some(E::PacketReplicationEngineEntry(
                p4::PacketReplicationEngineEntry {
                    r#type: Some(
                        p4::packet_replication_engine_entry::Type::CloneSessionEntry(
                            p4::CloneSessionEntry {
                                session_id: *id,
                                ..Default::default()
                            },
                        ),
                    ),
                },
            )),
        },
    }
}

/// The table of a key (0 for clone sessions).
pub fn key_table(key: &EntityKey) -> u32 {
    match key {
        EntityKey::Table { table_id, .. } => *table_id,
        EntityKey::CloneSession(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4info::tests::nos_p4info;

    fn names() -> P4Names {
        P4Names::new(&nos_p4info())
    }

    fn lpm_entry(value: Vec<u8>, len: i32, vrf: Vec<u8>) -> p4::Entity {
        let n = names();
        let t = n.table("ipv4_lpm").unwrap();
        let a = n.action("set_nexthop_id").unwrap();
        p4::Entity {
            entity: Some(E::TableEntry(p4::TableEntry {
                table_id: t.id,
                r#match: vec![
                    p4::FieldMatch {
                        field_id: t.field("ipv4_dst").unwrap().id,
                        field_match_type: Some(M::Lpm(p4::field_match::Lpm {
                            value,
                            prefix_len: len,
                        })),
                    },
                    p4::FieldMatch {
                        field_id: t.field("vrf_id").unwrap().id,
                        field_match_type: Some(M::Exact(p4::field_match::Exact { value: vrf })),
                    },
                ],
                action: Some(p4::TableAction {
                    r#type: Some(p4::table_action::Type::Action(p4::Action {
                        action_id: a.id,
                        params: vec![p4::action::Param {
                            param_id: 1,
                            value: vec![0, 0, 0, 7],
                        }],
                    })),
                }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn padding_and_order_do_not_matter() {
        let n = names();
        let a = canonical(&n, &lpm_entry(vec![10, 1, 0, 0], 16, vec![0])).unwrap();
        let b = canonical(
            &n,
            &lpm_entry(vec![0, 0, 10, 1, 0, 0], 16, vec![0, 0, 0, 0]),
        )
        .unwrap();
        assert_eq!(a, b);
        let (key, value) = a;
        match &key {
            EntityKey::Table { fields, .. } => {
                assert!(fields.windows(2).all(|w| w[0].0 < w[1].0), "sorted by id")
            }
            _ => panic!(),
        }
        assert!(
            matches!(value, EntityValue::Action(Call { ref params, .. }) if params[..] == [(1, 7)])
        );
        // The key entity is canonical and decodes to the same key.
        let back = key_entity(&key);
        assert_eq!(canonical(&n, &back).unwrap().0, key);
    }

    #[test]
    fn overflow_and_unknown_ids_are_refused() {
        let n = names();
        assert!(matches!(
            canonical(&n, &lpm_entry(vec![1, 10, 1, 0, 0], 16, vec![0])),
            Err(CanonError::Value(BytesError::Overflow { .. }))
        ));
        assert!(matches!(
            canonical(&n, &lpm_entry(vec![10, 1, 0, 0], 33, vec![0])),
            Err(CanonError::PrefixLength { len: 33, .. })
        ));
        assert!(matches!(
            canonical(&n, &lpm_entry(vec![10, 1, 0, 0], 16, vec![])),
            Err(CanonError::Value(BytesError::Empty { .. }))
        ));
        let mut e = lpm_entry(vec![10, 1, 0, 0], 16, vec![0]);
        if let Some(E::TableEntry(t)) = &mut e.entity {
            t.table_id = 99;
        }
        assert_eq!(canonical(&n, &e), Err(CanonError::UnknownTable(99)));
    }

    #[test]
    fn repeated_members_add_up() {
        let n = names();
        let t = n.table("wcmp_group").unwrap();
        let a = n.action("set_nexthop_id").unwrap();
        let member = |nh: u8, w: i32| p4::ActionProfileAction {
            action: Some(p4::Action {
                action_id: a.id,
                params: vec![p4::action::Param {
                    param_id: 1,
                    value: vec![nh],
                }],
            }),
            weight: w,
            watch_kind: None,
        };
        let group = |members| p4::Entity {
            entity: Some(E::TableEntry(p4::TableEntry {
                table_id: t.id,
                r#match: vec![p4::FieldMatch {
                    field_id: 1,
                    field_match_type: Some(M::Exact(p4::field_match::Exact { value: vec![1] })),
                }],
                action: Some(p4::TableAction {
                    r#type: Some(p4::table_action::Type::ActionProfileActionSet(
                        p4::ActionProfileActionSet {
                            action_profile_actions: members,
                            ..Default::default()
                        },
                    )),
                }),
                ..Default::default()
            })),
        };
        let x = canonical(&n, &group(vec![member(2, 1), member(1, 3), member(2, 1)])).unwrap();
        let y = canonical(&n, &group(vec![member(1, 3), member(2, 2)])).unwrap();
        assert_eq!(x, y);
    }
}
