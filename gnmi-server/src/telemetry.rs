//! Telemetry data for Subscribe: the served tree flattened into leaves,
//! matched against subscription paths, and the hub that turns the backend's
//! change notifications into leaf-level differences shared by every
//! streaming subscriber.
//!
//! The hub reads the configuration and state once per change, however many
//! subscribers there are, and broadcasts what changed; each subscriber only
//! matches the changed leaves against its own paths. The hub runs while at
//! least one subscription holds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use tokio::sync::{broadcast, oneshot, watch, Mutex};

use crate::backend::Backend;
use crate::mapping::{self, StateView, Tables};
use crate::path::{key_matches, Elem};
use crate::proto::gnmi::PathElem;
use crate::schema::{Kind, Node, Value, ROOT};
use crate::tree::{entry_keys, Data};

/// How many differences the hub keeps for subscribers that have not read
/// them yet; one that falls further behind is ended as too slow.
const DELTA_BACKLOG: usize = 1024;

/// One element of a leaf's path: the schema node and, for a list entry, its
/// key values in the list's key order (shared by every leaf of the entry).
#[derive(Clone, Debug)]
pub(crate) struct LeafStep {
    pub node: &'static Node,
    keys: Option<Arc<[Option<Value>]>>,
}

impl LeafStep {
    fn new(node: &'static Node, keys: Vec<Option<Value>>) -> Self {
        Self {
            node,
            keys: (!keys.is_empty()).then(|| keys.into()),
        }
    }

    /// The key values, in the list's key order (none for other nodes).
    pub(crate) fn keys(&self) -> &[Option<Value>] {
        self.keys.as_deref().unwrap_or(&[])
    }
}

/// A leaf's path text (`/a/b[k=v]/c`), shared between snapshots, deltas
/// and subscriptions.
pub(crate) type Key = Arc<str>;

/// A leaf of the data tree: where it is and its value. The steps down to
/// its container are shared by the container's leaves.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    parent: Arc<[LeafStep]>,
    node: &'static Node,
    pub value: Value,
}

impl Leaf {
    /// The step at depth `i` (the leaf itself at `depth() - 1`).
    fn step(&self, i: usize) -> Option<LeafStep> {
        match self.parent.get(i) {
            Some(s) => Some(s.clone()),
            None if i == self.parent.len() => Some(LeafStep {
                node: self.node,
                keys: None,
            }),
            None => None,
        }
    }

    fn depth(&self) -> usize {
        self.parent.len() + 1
    }

    /// The leaf's path as gNMI elements, from `skip` elements on.
    pub(crate) fn elems(&self, skip: usize) -> Vec<PathElem> {
        (skip..self.depth())
            .filter_map(|i| self.step(i))
            .map(|s| PathElem {
                name: s.node.name.to_owned(),
                key: s
                    .node
                    .keys()
                    .iter()
                    .zip(s.keys())
                    .filter_map(|(k, v)| v.as_ref().map(|v| ((*k).to_owned(), v.key_string())))
                    .collect(),
            })
            .collect()
    }

    /// The value in JSON (RFC 7951 with `ietf`).
    pub(crate) fn json(&self, ietf: bool) -> serde_json::Value {
        match self.node.leaf_type() {
            Some(t) => t.to_json(&self.value, ietf),
            None => serde_json::Value::Null,
        }
    }

    /// Whether the leaf is at or below a node `pattern` matches.
    pub(crate) fn matches(&self, pattern: &[Elem]) -> bool {
        self.matches_from(pattern, 0)
    }

    fn matches_from(&self, pattern: &[Elem], i: usize) -> bool {
        match pattern.split_first() {
            None => true,
            Some((Elem::AnyDepth, rest)) => (i..=self.depth()).any(|j| self.matches_from(rest, j)),
            Some((elem, rest)) => match self.parent.get(i) {
                Some(step) => step_matches(elem, step) && self.matches_from(rest, i + 1),
                None if i == self.parent.len() => {
                    let leaf = LeafStep {
                        node: self.node,
                        keys: None,
                    };
                    step_matches(elem, &leaf) && rest.iter().all(|e| *e == Elem::AnyDepth)
                }
                None => false,
            },
        }
    }

    /// Whether every node on the leaf's path is in one of `models`.
    pub(crate) fn in_models(&self, models: &HashSet<String>) -> bool {
        self.parent.iter().all(|s| models.contains(s.node.module))
            && models.contains(self.node.module)
    }
}

/// Leaves by their canonical path text (`/a/b[k=v]/c`, keys in schema order).
pub(crate) type Leaves = BTreeMap<Key, Arc<Leaf>>;

/// Leaves with their path texts, in path order.
pub(crate) type LeafList = Vec<(Key, Arc<Leaf>)>;

/// Every leaf of `root`.
pub(crate) fn flatten(root: &Data) -> Leaves {
    let mut out = Vec::new();
    let mut steps = Vec::new();
    let mut text = String::new();
    flatten_at(&ROOT, root, &mut steps, &mut text, &mut out);
    // Mostly in order already: a sort and a bulk build beat one search per
    // insertion.
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().collect()
}

fn flatten_at(
    node: &'static Node,
    data: &Data,
    steps: &mut Vec<LeafStep>,
    text: &mut String,
    out: &mut LeafList,
) {
    let Some(children) = data.children() else {
        return;
    };
    // The steps to this node, shared by its leaves (made at the first one).
    let mut parent: Option<Arc<[LeafStep]>> = None;
    for c in node.children() {
        let Some(d) = children.get(c.name) else {
            continue;
        };
        if c.secret {
            // Write-only leaves are never sent.
            continue;
        }
        let len = text.len();
        match (&c.kind, d) {
            (Kind::Leaf(_), Data::Leaf(v)) => {
                text.push('/');
                text.push_str(c.name);
                let parent = parent
                    .get_or_insert_with(|| Arc::from(steps.as_slice()))
                    .clone();
                out.push((
                    Key::from(text.as_str()),
                    Arc::new(Leaf {
                        parent,
                        node: c,
                        value: v.clone(),
                    }),
                ));
            }
            (Kind::List { .. }, Data::List(entries)) => {
                for e in entries {
                    let keys: Vec<Option<Value>> =
                        entry_keys(c, e).into_iter().map(|k| k.cloned()).collect();
                    text.push('/');
                    text.push_str(c.name);
                    for (k, v) in c.keys().iter().zip(&keys) {
                        let v = v.as_ref().map(Value::key_string).unwrap_or_default();
                        let v = v.replace('\\', "\\\\").replace(']', "\\]");
                        let _ = write!(text, "[{k}={v}]");
                    }
                    steps.push(LeafStep::new(c, keys));
                    flatten_at(c, e, steps, text, out);
                    steps.pop();
                    text.truncate(len);
                }
            }
            (Kind::Container(_), Data::Container(_)) => {
                text.push('/');
                text.push_str(c.name);
                steps.push(LeafStep::new(c, Vec::new()));
                flatten_at(c, d, steps, text, out);
                steps.pop();
            }
            _ => {}
        }
        text.truncate(len);
    }
}

fn step_matches(elem: &Elem, step: &LeafStep) -> bool {
    let keys = match elem {
        Elem::AnyDepth => return true,
        Elem::Any { keys } => keys,
        Elem::Name { name, module, keys } => {
            if step.node.name != name || module.as_deref().is_some_and(|m| m != step.node.module) {
                return false;
            }
            keys
        }
    };
    if keys.is_empty() {
        return true;
    }
    let node = step.node;
    if !node.is_list() || keys.keys().any(|k| !node.keys().contains(&k.as_str())) {
        return false;
    }
    node.keys()
        .iter()
        .zip(step.keys())
        .all(|(k, v)| key_matches(node, keys, k, v.as_ref()))
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The configuration and state now, as leaves, and when they were read;
/// with the large `tables` asked for.
pub(crate) async fn read(backend: &dyn Backend, tables: Tables) -> (i64, Leaves) {
    let (config, _) = backend.config().await;
    let state = backend.state().await;
    let afts = if tables.afts {
        Some(backend.afts().await)
    } else {
        None
    };
    let loc_rib = if tables.rib {
        Some(backend.loc_rib().await)
    } else {
        None
    };
    let now = SystemTime::now();
    let view = StateView {
        state: &state,
        now,
        afts: afts.as_ref(),
        loc_rib: loc_rib.as_ref(),
    };
    let data = mapping::render(&config, Some(&view));
    (nanos(now), flatten(&data))
}

/// The leaves as of one read, numbered.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub seq: u64,
    pub time: i64,
    pub leaves: Leaves,
}

/// What changed from snapshot `seq - 1` to snapshot `seq`.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub seq: u64,
    pub time: i64,
    /// New and changed leaves, with their new values.
    pub changed: LeafList,
    /// Leaves that no longer exist, as they were.
    pub removed: LeafList,
}

/// The leaves new or changed in `new`, and those gone from `old`: one walk
/// over both maps in key order.
fn diff(old: &Leaves, new: &Leaves) -> (LeafList, LeafList) {
    use std::cmp::Ordering;
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    let mut o = old.iter().peekable();
    let mut n = new.iter().peekable();
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(_), None) => {
                removed.extend(o.by_ref().map(|(k, v)| (k.clone(), v.clone())));
            }
            (None, Some(_)) => {
                changed.extend(n.by_ref().map(|(k, v)| (k.clone(), v.clone())));
            }
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                Ordering::Less => {
                    removed.push(((*ok).clone(), (*ov).clone()));
                    o.next();
                }
                Ordering::Greater => {
                    changed.push(((*nk).clone(), (*nv).clone()));
                    n.next();
                }
                Ordering::Equal => {
                    if !Arc::ptr_eq(ov, nv) && ov.value != nv.value {
                        changed.push(((*nk).clone(), (*nv).clone()));
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
    (changed, removed)
}

/// The shared reader of the backend's data for streaming subscriptions.
#[derive(Debug)]
pub(crate) struct Hub {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    deltas: broadcast::Sender<Arc<Delta>>,
    /// Dropping the hub stops its task.
    _stop: oneshot::Sender<()>,
}

impl Hub {
    /// Reads the data once and starts following the backend's changes.
    async fn start(backend: Arc<dyn Backend>, tables: Tables) -> Hub {
        let mut changes = backend.changes();
        changes.borrow_and_update();
        let (time, leaves) = read(backend.as_ref(), tables).await;
        let (snap_tx, snapshot) = watch::channel(Arc::new(Snapshot {
            seq: 0,
            time,
            leaves,
        }));
        let (deltas, _) = broadcast::channel(DELTA_BACKLOG);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let tx = deltas.clone();
        tokio::spawn(async move {
            let mut following = true;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    r = changes.changed(), if following => {
                        if r.is_err() {
                            // The backend announces no more changes.
                            following = false;
                            continue;
                        }
                    }
                }
                changes.borrow_and_update();
                let (time, leaves) = read(backend.as_ref(), tables).await;
                let old = snap_tx.borrow().clone();
                let (changed, removed) = diff(&old.leaves, &leaves);
                if changed.is_empty() && removed.is_empty() {
                    continue;
                }
                let seq = old.seq + 1;
                // The snapshot first: a subscriber that takes it and then
                // sees this delta skips the delta by its number.
                snap_tx.send_replace(Arc::new(Snapshot { seq, time, leaves }));
                let _ = tx.send(Arc::new(Delta {
                    seq,
                    time,
                    changed,
                    removed,
                }));
            }
        });
        Hub {
            snapshot,
            deltas,
            _stop: stop,
        }
    }

    /// The differences to come, and the snapshot they follow: differences
    /// numbered up to the snapshot's `seq` are already in it.
    pub(crate) fn follow(&self) -> (broadcast::Receiver<Arc<Delta>>, Arc<Snapshot>) {
        let rx = self.deltas.subscribe();
        let snap = self.snapshot.borrow().clone();
        (rx, snap)
    }

    /// The newest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }
}

/// The hubs of a service: started by the first subscription that needs
/// one, stopped when the last one ends. Subscriptions share a hub by the
/// large tables (forwarding tables, Loc-RIB) they can reach: the others do
/// not read them.
#[derive(Debug, Default)]
pub(crate) struct HubSlot {
    hubs: Mutex<HashMap<Tables, Weak<Hub>>>,
}

impl HubSlot {
    pub(crate) async fn get(&self, backend: &Arc<dyn Backend>, tables: Tables) -> Arc<Hub> {
        let mut hubs = self.hubs.lock().await;
        hubs.retain(|_, h| h.strong_count() > 0);
        let slot = hubs.entry(tables).or_default();
        if let Some(hub) = slot.upgrade() {
            return hub;
        }
        let hub = Arc::new(Hub::start(backend.clone(), tables).await);
        *slot = Arc::downgrade(&hub);
        hub
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::join;
    use crate::proto::gnmi::Path;
    use nos_core::config::Config;

    fn pattern(text: &str) -> Vec<Elem> {
        let elems = text
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, key) = match s.split_once('[') {
                    Some((n, k)) => {
                        let (k, v) = k.trim_end_matches(']').split_once('=').expect("k=v");
                        (n, [(k.to_owned(), v.to_owned())].into_iter().collect())
                    }
                    None => (s, Default::default()),
                };
                PathElem {
                    name: name.to_owned(),
                    key,
                }
            })
            .collect();
        join(
            None,
            Some(&Path {
                elem: elems,
                ..Default::default()
            }),
        )
        .expect("path")
        .elems
    }

    fn leaves() -> Leaves {
        let config = Config::from_yaml(
            "system: {hostname: r1}\nports:\n  - {name: eth1, description: up}\n  - {name: eth2}\n",
        )
        .expect("config");
        flatten(&mapping::render(&config, None))
    }

    fn matching(p: &str) -> Vec<String> {
        let p = pattern(p);
        leaves()
            .iter()
            .filter(|(_, l)| l.matches(&p))
            .map(|(k, _)| k.to_string())
            .collect()
    }

    #[test]
    fn diff_finds_changed_new_and_removed_leaves() {
        let leaf = |v: &str| {
            Arc::new(Leaf {
                parent: Arc::from(Vec::new()),
                node: &ROOT,
                value: Value::Str(v.into()),
            })
        };
        let map = |entries: &[(&str, &str)]| -> Leaves {
            entries
                .iter()
                .map(|(k, v)| (Key::from(*k), leaf(v)))
                .collect()
        };
        let old = map(&[("/a", "1"), ("/b", "2"), ("/c", "3"), ("/e", "5")]);
        let new = map(&[("/b", "2"), ("/c", "30"), ("/d", "4"), ("/f", "6")]);
        let (changed, removed) = diff(&old, &new);
        let keys = |l: &LeafList| l.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        assert_eq!(keys(&changed), ["/c", "/d", "/f"]);
        assert_eq!(keys(&removed), ["/a", "/e"]);
        assert_eq!(changed[0].1.value, Value::Str("30".into()));
        let (changed, removed) = diff(&new, &new);
        assert!(changed.is_empty() && removed.is_empty());
        let (changed, removed) = diff(&Leaves::new(), &new);
        assert_eq!((changed.len(), removed.len()), (4, 0));
    }

    #[test]
    fn leaves_have_canonical_paths() {
        let l = leaves();
        let hostname = l.get("/system/config/hostname").expect("hostname leaf");
        assert_eq!(hostname.value, Value::Str("r1".into()));
        assert!(l.contains_key("/interfaces/interface[name=eth1]/config/description"));
        assert_eq!(
            hostname.elems(1).len(),
            2,
            "elements after the first: config, hostname"
        );
    }

    #[test]
    fn patterns_match_leaves_at_or_below() {
        assert_eq!(matching("/system/config/hostname").len(), 1);
        assert_eq!(
            matching("/interfaces/interface[name=eth1]/config/description"),
            vec!["/interfaces/interface[name=eth1]/config/description".to_owned()]
        );
        let eth1 = matching("/interfaces/interface[name=eth1]");
        assert!(!eth1.is_empty());
        assert!(eth1
            .iter()
            .all(|k| k.starts_with("/interfaces/interface[name=eth1]/")));
        let both = matching("/interfaces/interface[name=*]/config/mtu");
        assert_eq!(both.len(), 2);
        assert_eq!(matching("/.../mtu").len(), 2);
        assert_eq!(matching("/interfaces/*/config/enabled").len(), 2);
        assert!(matching("/interfaces/interface[name=eth9]").is_empty());
        assert!(matching("/openconfig-system:system/config").len() == 1);
        assert!(matching("/openconfig-interfaces:system").is_empty());
    }
}
