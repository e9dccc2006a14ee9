//! Incremental compilation of forwarding tables, published without ever stopping
//! forwarding.
//!
//! The [`TableWriter`] keeps the authoritative route set ([`PrefixMap`]s per VRF
//! and address family, values interned into a table of distinct route actions)
//! and two copies of the compiled [`Tables`], in the manner of a left-right
//! structure: the *published* copy, which the forwarding workers read through an
//! [`ArcSwap`], and the *standby* copy, which nobody reads once the workers have
//! finished the burst they were processing when it was swapped out.
//!
//! A batch of model changes is committed by
//! 1. recording it in the route set and the action table,
//! 2. bringing the standby up to date — the changes it missed from the previous
//!    batch plus this batch's — by patching only the route-table regions those
//!    changes touch (or bulk-loading a table when a batch rewrites a large part of
//!    it) and recompiling interfaces, next hops, groups and ACLs only when one of
//!    them changed,
//! 3. publishing it with one atomic pointer swap; the copy swapped out becomes the
//!    standby and lags by exactly this batch (after a batch of [`COPY_AFTER`]
//!    route changes or more, a copy of the tables just published becomes the
//!    standby instead: copying is cheaper than patching so much again).
//!
//! A worker therefore never sees half a batch, and the cost of a batch is
//! proportional to what it changes, not to the size of the table. A VRF created or
//! deleted recompiles everything (rare, and the VRF list is part of every route's
//! key).

use super::lpm::{Lpm, PrefixMap};
use super::tables::{next_hop_index, Action, Tables, VrfTables};
use arc_swap::ArcSwap;
use ipnet::IpNet;
use nos_core::{Delta, ForwardingState, NextHopId, Object, ObjectKey, RouteAction, VrfId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a commit waits for workers to leave the standby copy before it
/// copies the published tables instead. Workers hold a copy for one burst
/// (microseconds); only a long-lived reader (a diagnostic holding an `Arc`) makes
/// the wait run out.
const STANDBY_WAIT: Duration = Duration::from_millis(5);

/// Prefixes shorter than this are not patched: the table is bulk-loaded.
const SHORT_PREFIX: u8 = 8;

/// Group slots above which a commit that compiles new actions recompiles all of
/// them, dropping slots of actions that are gone.
const GROUP_SLOT_SLACK: usize = 1 << 20;

/// One change a copy of the tables has to take.
#[derive(Clone, Copy, Debug)]
enum Change {
    V4 {
        vrf: u32,
        addr: u32,
        len: u8,
    },
    V6 {
        vrf: u32,
        addr: u128,
        len: u8,
    },
    /// The action at this index of the action table is new (or reused).
    Action(u32),
}

/// Distinct route actions, each with the number of routes using it. Freed
/// indices are reused.
#[derive(Debug, Default)]
struct ActionTable {
    index: HashMap<RouteAction, u32>,
    keys: Vec<Option<RouteAction>>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl ActionTable {
    /// The index of `action`, taking a reference; `true` when the index is new.
    fn acquire(&mut self, action: RouteAction) -> (u32, bool) {
        if let Some(&i) = self.index.get(&action) {
            self.refs[i as usize] += 1;
            return (i, false);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.keys[i as usize] = Some(action);
                self.refs[i as usize] = 1;
                i
            }
            None => {
                self.keys.push(Some(action));
                self.refs.push(1);
                (self.keys.len() - 1) as u32
            }
        };
        self.index.insert(action, i);
        (i, true)
    }

    fn release(&mut self, i: u32) {
        let r = &mut self.refs[i as usize];
        *r -= 1;
        if *r == 0 {
            if let Some(a) = self.keys[i as usize].take() {
                self.index.remove(&a);
            }
            self.free.push(i);
        }
    }
}

/// The copy of the tables that is not published.
#[derive(Debug)]
struct Standby {
    tables: Arc<Tables>,
    /// Changes committed since this copy was last brought up to date.
    missed: Vec<Change>,
    /// The generation of non-route objects it was compiled with.
    objects: u64,
}

/// Compiles successive forwarding states into published [`Tables`],
/// incrementally (see the module documentation).
#[derive(Debug, Default)]
pub struct TableWriter {
    vrf_index: BTreeMap<VrfId, u32>,
    v4: Vec<PrefixMap<u32>>,
    v6: Vec<PrefixMap<u128>>,
    actions: ActionTable,
    /// Bumped by every change to an object other than a route.
    objects: u64,
    /// Next-hop indices for the current `objects` generation.
    nh_index: HashMap<NextHopId, u32>,
    /// The generation the published copy was compiled with.
    published_objects: u64,
    standby: Option<Standby>,
    /// Route changes in one batch from which the next standby is a copy of
    /// the tables just published rather than the old copy replaying them
    /// (`None`: the default, [`COPY_AFTER`]).
    copy_after: Option<usize>,
}

/// Route changes in one batch beyond which copying the published tables
/// (a memory copy of the route tables: about 35 MiB for a full IPv4 table)
/// costs less than patching the same changes into the standby copy again.
const COPY_AFTER: usize = 32_768;

impl TableWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the batch size from which the standby is copied rather than
    /// patched (32,768 route changes by default).
    pub fn set_copy_after(&mut self, changes: usize) {
        self.copy_after = Some(changes);
    }

    /// Compiles `state` from scratch, making it the writer's route set.
    pub fn compile(&mut self, state: &ForwardingState) -> Tables {
        self.vrf_index = state
            .vrfs()
            .keys()
            .enumerate()
            .map(|(i, v)| (*v, i as u32))
            .collect();
        self.v4 = vec![PrefixMap::default(); self.vrf_index.len()];
        self.v6 = vec![PrefixMap::default(); self.vrf_index.len()];
        self.actions = ActionTable::default();
        for (key, action) in state.routes() {
            let (i, _) = self.actions.acquire(*action);
            let vrf = self.vrf_index[&key.vrf] as usize;
            let stored = match key.prefix {
                IpNet::V4(n) => self.v4[vrf].insert(n.network().into(), n.prefix_len(), i),
                IpNet::V6(n) => self.v6[vrf].insert(n.network().into(), n.prefix_len(), i),
            };
            debug_assert!(stored.is_ok(), "route action table overflow");
        }
        self.objects += 1;
        self.published_objects = self.objects;
        self.nh_index = next_hop_index(state);
        self.standby = None;
        let mut t = Tables::empty();
        self.compile_objects(&mut t, state);
        t.vrfs = self
            .v4
            .iter()
            .zip(&self.v6)
            .map(|(a, b)| VrfTables {
                v4: Lpm::from_map(a),
                v6: Lpm::from_map(b),
            })
            .collect();
        t.routes = state.routes().len();
        t
    }

    /// Publishes into `target` the tables for `state`, which has just taken
    /// `applied` (the deltas of one batch the model accepted, in order) on top of
    /// the state of the previous commit.
    pub fn commit(
        &mut self,
        state: &ForwardingState,
        applied: &[&Delta],
        target: &ArcSwap<Tables>,
    ) {
        let vrfs_changed = self.vrf_index.len() != state.vrfs().len()
            || !self.vrf_index.keys().eq(state.vrfs().keys());
        if vrfs_changed {
            let t = self.compile(state);
            // The standby starts as a copy: cheaper than compiling twice, and
            // the published tables are never written to.
            let copy = t.clone();
            target.store(Arc::new(t));
            self.standby = Some(Standby {
                tables: Arc::new(copy),
                missed: Vec::new(),
                objects: self.published_objects,
            });
            return;
        }
        let mut changes = Vec::new();
        let mut objects_changed = false;
        for d in applied {
            match d {
                Delta::Create(Object::Route(r)) | Delta::Modify(Object::Route(r)) => {
                    self.set_route(r.vrf, r.prefix, Some(r.action), &mut changes)
                }
                Delta::Delete(ObjectKey::Route(k)) => {
                    self.set_route(k.vrf, k.prefix, None, &mut changes)
                }
                _ => objects_changed = true,
            }
        }
        if objects_changed {
            self.objects += 1;
            self.nh_index = next_hop_index(state);
        }

        // The standby, or (on a writer that has compiled nothing yet) a copy
        // of the published tables, which are up to date until this batch.
        let mut standby = self.standby.take().unwrap_or_else(|| Standby {
            tables: Arc::new(Tables::clone(&target.load())),
            missed: Vec::new(),
            objects: self.published_objects,
        });
        standby.missed.extend_from_slice(&changes);
        self.bring_up(&mut standby, state);

        let behind = self.published_objects;
        self.published_objects = self.objects;
        if changes.len() >= self.copy_after.unwrap_or(COPY_AFTER) {
            // A large batch (a full table arriving): the next standby starts
            // as a copy of what is published now instead of replaying it.
            target.swap(standby.tables);
            let copy = Tables::clone(&target.load());
            self.standby = Some(Standby {
                tables: Arc::new(copy),
                missed: Vec::new(),
                objects: self.objects,
            });
            return;
        }
        let old = target.swap(standby.tables);
        self.standby = Some(Standby {
            tables: old,
            missed: changes,
            objects: behind,
        });
    }

    /// Applies to `standby` what it missed, objects and routes.
    fn bring_up(&mut self, standby: &mut Standby, state: &ForwardingState) {
        let todo = std::mem::take(&mut standby.missed);
        let t = exclusive(&mut standby.tables);
        if standby.objects != self.objects {
            self.compile_objects(t, state);
        } else {
            self.compile_new_actions(t, state, &todo);
        }
        self.update_routes(t, &todo);
        t.routes = self.v4.iter().map(PrefixMap::len).sum::<usize>()
            + self.v6.iter().map(PrefixMap::len).sum::<usize>();
        standby.objects = self.objects;
    }

    /// Brings the standby copy up to date now when it lags the published one
    /// by at least `behind` route changes (by anything, with 0), so that the next batch costs only
    /// its own changes: after a large batch (a full table), the next one
    /// would otherwise replay it first, as when a failover's one group
    /// rewrite follows the table's load. `state` is the state of the last
    /// commit.
    pub fn catch_up(&mut self, state: &ForwardingState, behind: usize) {
        let Some(mut standby) = self.standby.take() else {
            return;
        };
        // With `behind` 0, anything missed counts, objects included.
        let lagging = match behind {
            0 => !standby.missed.is_empty() || standby.objects != self.objects,
            n => standby.missed.len() >= n,
        };
        if lagging {
            self.bring_up(&mut standby, state);
        }
        self.standby = Some(standby);
    }

    /// Records a route set (`Some`) or removed (`None`) in the route set.
    fn set_route(
        &mut self,
        vrf: VrfId,
        prefix: IpNet,
        action: Option<RouteAction>,
        changes: &mut Vec<Change>,
    ) {
        let Some(&v) = self.vrf_index.get(&vrf) else {
            return; // the model refuses routes in unknown VRFs
        };
        let value = action.map(|a| {
            let (i, new) = self.actions.acquire(a);
            if new {
                changes.push(Change::Action(i));
            }
            i
        });
        let old = match (prefix, value) {
            (IpNet::V4(n), Some(i)) => self.v4[v as usize]
                .insert(n.network().into(), n.prefix_len(), i)
                .ok()
                .flatten(),
            (IpNet::V4(n), None) => self.v4[v as usize].remove(n.network().into(), n.prefix_len()),
            (IpNet::V6(n), Some(i)) => self.v6[v as usize]
                .insert(n.network().into(), n.prefix_len(), i)
                .ok()
                .flatten(),
            (IpNet::V6(n), None) => self.v6[v as usize].remove(n.network().into(), n.prefix_len()),
        };
        if let Some(old) = old {
            self.actions.release(old);
        }
        changes.push(match prefix {
            IpNet::V4(n) => Change::V4 {
                vrf: v,
                addr: n.network().into(),
                len: n.prefix_len(),
            },
            IpNet::V6(n) => Change::V6 {
                vrf: v,
                addr: n.network().into(),
                len: n.prefix_len(),
            },
        });
    }

    /// Interfaces, next hops, ACLs and every action.
    fn compile_objects(&self, t: &mut Tables, state: &ForwardingState) {
        let mut fresh = Tables::empty();
        fresh.compile_except_routes(state);
        t.ingress = fresh.ingress;
        t.vrf_ids = fresh.vrf_ids;
        t.next_hops = fresh.next_hops;
        t.pre_ingress = fresh.pre_ingress;
        t.ingress_acl = fresh.ingress_acl;
        self.compile_all_actions(t, state);
    }

    fn compile_all_actions(&self, t: &mut Tables, state: &ForwardingState) {
        t.actions.clear();
        t.group_slots.clear();
        let mut cache = HashMap::new();
        for key in &self.actions.keys {
            let a = match key {
                Some(k) => t.compile_action(state, *k, &self.nh_index, &mut cache),
                None => Action::DROP,
            };
            t.actions.push(a);
        }
    }

    /// Compiles the actions `todo` introduces (objects unchanged).
    fn compile_new_actions(&self, t: &mut Tables, state: &ForwardingState, todo: &[Change]) {
        let new: Vec<u32> = todo
            .iter()
            .filter_map(|c| match c {
                Change::Action(i) => Some(*i),
                _ => None,
            })
            .collect();
        if new.is_empty() {
            return;
        }
        if t.group_slots.len() > GROUP_SLOT_SLACK {
            self.compile_all_actions(t, state);
            return;
        }
        if t.actions.len() < self.actions.keys.len() {
            t.actions.resize(self.actions.keys.len(), Action::DROP);
        }
        let mut cache = HashMap::new();
        for i in new {
            if let Some(k) = self.actions.keys[i as usize] {
                t.actions[i as usize] = t.compile_action(state, k, &self.nh_index, &mut cache);
            }
        }
    }

    /// Patches the route tables `todo` touches, or bulk-loads those it rewrites
    /// in large part.
    fn update_routes(&self, t: &mut Tables, todo: &[Change]) {
        let n = self.vrf_index.len();
        let mut v4: Vec<Vec<(u32, u8)>> = vec![Vec::new(); n];
        let mut v6: Vec<Vec<(u128, u8)>> = vec![Vec::new(); n];
        for c in todo {
            match *c {
                Change::V4 { vrf, addr, len } => v4[vrf as usize].push((addr, len)),
                Change::V6 { vrf, addr, len } => v6[vrf as usize].push((addr, len)),
                Change::Action(_) => {}
            }
        }
        for (i, vrf) in t.vrfs.iter_mut().enumerate() {
            patch(&mut vrf.v4, &self.v4[i], &v4[i]);
            patch(&mut vrf.v6, &self.v6[i], &v6[i]);
        }
    }
}

/// Applies `changed` prefixes of `map` to `lpm`.
fn patch<K: super::lpm::Key>(lpm: &mut Lpm<K>, map: &PrefixMap<K>, changed: &[(K, u8)]) {
    if changed.is_empty() {
        return;
    }
    // A bulk load costs about as much as patching a quarter of the table, or
    // as changing a prefix that covers a large part of the address space (a
    // default route: every trie node below it holds its value).
    if changed.len() * 4 >= map.len() || changed.iter().any(|c| c.1 < SHORT_PREFIX) {
        *lpm = lpm.reloaded(map);
        return;
    }
    for &(addr, len) in changed {
        lpm.update(map, addr, len);
    }
    if lpm.needs_compaction() {
        *lpm = lpm.reloaded(map);
    }
}

/// The tables behind `arc` for writing: waits briefly for the workers still
/// reading them to let go, and copies them if one does not.
fn exclusive(arc: &mut Arc<Tables>) -> &mut Tables {
    let deadline = Instant::now() + STANDBY_WAIT;
    while Arc::strong_count(arc) > 1 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    Arc::make_mut(arc)
}
