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
    let mut extras: Vec<(EntityKey, EntityValue, u8)> = have
        .into_iter()
        .map(|(k, v)| {
            let l = level(&k);
            (k, v, l)
        })
        .collect();
    d.extra = extras.len();
    extras.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    for (k, _, _) in extras.iter().take(EXAMPLES) {
        example(&mut d, "extra", k);
    }
    inserts.sort_by_key(|p| p.level);
    d.updates = inserts;
    d.extras = extras;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4info::tests::nos_p4info;
    use crate::p4info::Schema;
    use nos_core::{Delta, Object, Port, PortId, RifId, RifKind, RouterInterface, Vrf, VrfId};
    use std::sync::Arc;

    fn setup() -> (P4Names, Compiler, ForwardingState) {
        let names = P4Names::new(&nos_p4info());
        let c = Compiler::new(Arc::new(Schema::resolve(&names).unwrap()), None);
        let mut m = ForwardingState::new();
        for o in [
            Object::Vrf(Vrf {
                id: VrfId(0),
                name: "d".into(),
            }),
            Object::Port(Port {
                id: PortId(1),
                name: "p1".into(),
                mtu: 1500,
                admin_up: true,
            }),
        ] {
            m.upsert(o).unwrap();
        }
        (names, c, m)
    }

    fn rif(id: u32, last: u8) -> Object {
        Object::from(RouterInterface {
            id: RifId(id),
            name: String::new(),
            vrf: VrfId(0),
            kind: RifKind::Port { port: PortId(1) },
            mac: nos_core::MacAddr([2, 0, 0, 0, 0, last]),
            mtu: 1500,
            admin_up: true,
        })
    }

    fn entities(c: &Compiler, m: &ForwardingState) -> Vec<p4::Entity> {
        let mut v = Vec::new();
        c.state(m, |e| v.push(e), |k, e| panic!("{k}: {e}"));
        v
    }

    #[test]
    fn missing_different_and_extra() {
        let (names, c, mut m) = setup();
        c.delta(&mut m, &Delta::Create(rif(1, 1))).unwrap();
        let same = compare(&names, &c, &m, entities(&c, &m));
        assert!(same.is_empty() && same.updates.is_empty(), "{same:?}");

        // The target lacks everything.
        let d = compare(&names, &c, &m, Vec::new());
        assert_eq!((d.missing, d.different, d.extra), (3, 0, 0));
        assert!(d
            .updates
            .iter()
            .all(|u| u.update.r#type == p4::update::Type::Insert as i32));
        assert!(d.updates.windows(2).all(|w| w[0].level <= w[1].level));

        // The target has another MAC on the interface, and an interface
        // the model lacks.
        let mut other = m.clone();
        c.delta(&mut other, &Delta::Modify(rif(1, 9))).unwrap();
        let mut target = entities(&c, &other);
        let mut extra = ForwardingState::new();
        extra
            .upsert(Object::Vrf(Vrf {
                id: VrfId(0),
                name: "d".into(),
            }))
            .unwrap();
        extra
            .upsert(Object::Port(Port {
                id: PortId(1),
                name: "p1".into(),
                mtu: 1500,
                admin_up: true,
            }))
            .unwrap();
        let mut r2 = rif(2, 9);
        if let Object::Rif(r) = &mut r2 {
            r.admin_up = false; // no ingress entry to collide with
        }
        c.delta(&mut extra, &Delta::Create(r2)).unwrap();
        target.extend(entities(&c, &extra).into_iter().filter(|e| {
            matches!(&e.entity, Some(p4::entity::Entity::TableEntry(t)) if t.table_id == c.schema().router_interface.id)
        }));
        let d = compare(&names, &c, &m, target);
        // router_interface 1 differs (MAC); l3_admit 02::01 is missing and
        // 02::09 extra; router_interface 2 is extra.
        assert_eq!(
            (d.missing, d.different, d.extra),
            (1, 1, 2),
            "{:?}",
            d.examples
        );
        let deletes = Divergence::deletes(&d.extras);
        assert_eq!(deletes.len(), 2);
        assert!(
            d.examples
                .iter()
                .any(|e| e.starts_with("extra: router_interface {rif_id=0x2}")),
            "{:?}",
            d.examples
        );
    }
}
