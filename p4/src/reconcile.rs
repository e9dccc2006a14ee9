//! Comparing what a target holds with what the forwarding model calls for,
//! and the updates that close the gap.
//!
//! Both sides are brought to canonical form ([`crate::canon`]) and matched
//! by key: an entity the model needs and the target lacks is *missing*
//! (INSERT), one the target holds differently is *different* (MODIFY), one
//! the target holds in a table the controller manages but the model does
//! not need is *extra* (DELETE). Entities of tables the controller does not
//! manage, and clone sessions other than its own, are left alone.

use crate::canon::{canonical, key_entity, key_table, EntityKey, EntityValue, FieldValue};
use crate::compile::{key_hash, Compiler, Planned};
use crate::p4info::P4Names;
use nos_core::ForwardingState;
use p4runtime_proto::p4::v1 as p4;
use std::collections::HashMap;

/// How many examples of divergence a report keeps.
const EXAMPLES: usize = 10;

/// What a comparison found, and the updates that repair it.
#[derive(Clone, Debug, Default)]
pub struct Divergence {
    pub missing: usize,
    pub different: usize,
    pub extra: usize,
    /// Target entities that have no canonical form (logged, left alone).
    pub unreadable: usize,
    /// A few of the differences, for the log.
    pub examples: Vec<String>,
    /// INSERTs and MODIFYs, upward by level.
    pub updates: Vec<Planned>,
    /// What the target holds and the model does not need, downward by
    /// level ([`Divergence::deletes`] removes them).
    pub extras: Vec<(EntityKey, EntityValue, u8)>,
}

impl Divergence {
    pub fn is_empty(&self) -> bool {
        self.missing == 0 && self.different == 0 && self.extra == 0
    }

    /// The DELETEs of the extra entities, downward by level.
    pub fn deletes(extras: &[(EntityKey, EntityValue, u8)]) -> Vec<Planned> {
        extras
            .iter()
            .map(|(k, _, l)| planned(p4::update::Type::Delete, key_entity(k), *l))
            .collect()
    }
}

/// A key as `table {field=value, ...} priority p`, with the P4Info's names.
pub fn describe(names: &P4Names, key: &EntityKey) -> String {
    match key {
        EntityKey::CloneSession(id) => format!("clone session {id}"),
        EntityKey::Table {
            table_id,
            priority,
            fields,
        } => {
            let t = names.table_by_id(*table_id);
            let tname = t.map_or_else(|| format!("#{table_id}"), |t| t.name.clone());
            let f: Vec<String> = fields
                .iter()
                .map(|(id, v)| {
                    let n = t
                        .and_then(|t| t.field_by_id(*id))
                        .map_or_else(|| format!("#{id}"), |f| f.name.clone());
                    let v = match v {
                        FieldValue::Exact(x) | FieldValue::Optional(x) => format!("0x{x:x}"),
                        FieldValue::Lpm { value, len } => format!("0x{value:x}/{len}"),
                        FieldValue::Ternary { value, mask } => format!("0x{value:x}&&&0x{mask:x}"),
                        FieldValue::Range { low, high } => format!("{low}..{high}"),
                    };
                    format!("{n}={v}")
                })
                .collect();
            if *priority != 0 {
                format!("{tname} {{{}}} priority {priority}", f.join(", "))
            } else {
                format!("{tname} {{{}}}", f.join(", "))
            }
        }
    }
}

fn planned(ty: p4::update::Type, entity: p4::Entity, level: u8) -> Planned {
    Planned {
        key: key_hash(&entity),
        update: p4::Update {
            r#type: ty as i32,
            entity: Some(entity),
        },
        level,
    }
}

/// Compares `target` (what a Read returned) with the entities `model`
/// compiles to.
pub fn compare(
    names: &P4Names,
    compiler: &Compiler,
    model: &ForwardingState,
    target: Vec<p4::Entity>,
) -> Divergence {
    let schema = compiler.schema().clone();
    let own_sessions: Vec<u32> = compiler
        .base_entities()
        .iter()
        .filter_map(|e| match canonical(names, e) {
            Ok((EntityKey::CloneSession(id), _)) => Some(id),
            _ => None,
        })
        .collect();
    let mut d = Divergence::default();
    let mut have: HashMap<EntityKey, EntityValue> = HashMap::with_capacity(target.len());
    for e in target {
        match canonical(names, &e) {
            Ok((k, v)) => {
                let managed = match &k {
                    EntityKey::Table { table_id, .. } => schema.level(*table_id).is_some(),
                    EntityKey::CloneSession(id) => own_sessions.contains(id),
                };
                if managed {
                    have.insert(k, v);
                }
            }
            Err(err) => {
                d.unreadable += 1;
                if d.unreadable <= EXAMPLES {
                    tracing::warn!("cannot compare an entity the target holds: {err}");
                }
            }
        }
    }
    let mut inserts: Vec<Planned> = Vec::new();
    let level = |k: &EntityKey| schema.level(key_table(k)).unwrap_or(0);
    let example = |d: &mut Divergence, what: &str, k: &EntityKey| {
        if d.examples.len() < EXAMPLES {
            d.examples.push(format!("{what}: {}", describe(names, k)));
        }
    };
    compiler.state(
        model,
        |e| {
            let (k, v) = match canonical(names, &e) {
                Ok(x) => x,
                Err(err) => {
                    tracing::error!("the compiler produced an entity it cannot read: {err}");
                    return;
                }
            };
            match have.remove(&k) {
                None => {
                    d.missing += 1;
                    example(&mut d, "missing", &k);
                    inserts.push(planned(p4::update::Type::Insert, e, level(&k)));
                }
                Some(tv) if tv != v => {
                    d.different += 1;
                    example(&mut d, "different", &k);
                    inserts.push(planned(p4::update::Type::Modify, e, level(&k)));
                }
                Some(_) => {}
            }
        },
        |key, err| tracing::error!(object = %key, "an object of the model does not compile: {err}"),
    );
    let mut deletes: Vec<(EntityKey, u8)> = have
        .into_keys()
        .map(|k| {
            let l = level(&k);
            (k, l)
        })
        .collect();
    d.extra = deletes.len();
    deletes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (k, _) in deletes.iter().take(EXAMPLES) {
        example(&mut d, "extra", k);
    }
    inserts.sort_by_key(|p| p.level);
    d.updates = inserts;
    d.updates.extend(
        deletes
            .into_iter()
            .map(|(k, l)| planned(p4::update::Type::Delete, key_entity(&k), l)),
    );
    d
}
