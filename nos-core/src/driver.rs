//! The owner of one backend: a thread that applies ordered deltas to the target
//! and keeps the model of what is *installed* exactly in step with it.
//!
//! The driver keeps `desired`, what the control plane asked for (every delta
//! it received, applied in order), and what the target accepted (only deltas
//! whose per-delta result was `Ok`): the same state while the target takes
//! everything, a separate `installed` once it refuses something. When a delta
//! fails, the failure is logged with the object and reason and reported as an
//! event, and the driver retries the difference on its reconcile timer,
//! or at once when told the target has become ready ([`DriverHandle::retry`]),
//! so the target and the model never drift apart silently.

use crate::backend::{Backend, BackendError};
use crate::diff::{diff, Delta};
use crate::model::{ForwardingState, Object, ObjectKey};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Queued batches of deltas are merged into one apply until it holds this many
/// deltas (or more: the last batch taken is taken whole).
const MERGE_UP_TO: usize = 65_536;

/// What the driver reports upward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverEvent {
    /// The target accepted this object (create or modify).
    Installed(ObjectKey),
    /// The target removed this object.
    Removed(ObjectKey),
    /// The target refused a delta; the driver will retry it.
    Failed { key: ObjectKey, error: BackendError },
}

type Query = Box<dyn FnOnce(&ForwardingState, &mut dyn Backend) + Send>;

enum Msg {
    Apply(Vec<Delta>),
    Query(Query),
    Retry,
    Stop,
}

/// A handle to the driver thread; cloning it is cheap.
#[derive(Clone)]
pub struct DriverHandle {
    tx: Sender<Msg>,
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverHandle")
    }
}

/// The driver thread's join handle; joining waits for the backend to be dropped.
#[derive(Debug)]
pub struct Driver {
    handle: DriverHandle,
    thread: Option<JoinHandle<()>>,
}

impl DriverHandle {
    /// Queues deltas for the target. Returns false if the driver has stopped.
    pub fn apply(&self, deltas: Vec<Delta>) -> bool {
        self.tx.send(Msg::Apply(deltas)).is_ok()
    }

    /// Retries the changes the target refused, now rather than at the next
    /// reconcile (a target that has just become ready, say). Returns false if
    /// the driver has stopped.
    pub fn retry(&self) -> bool {
        self.tx.send(Msg::Retry).is_ok()
    }

    /// Runs `f` on the driver thread with the installed state and the backend
    /// (for reads and counters). Returns false if the driver has stopped.
    pub fn query(
        &self,
        f: impl FnOnce(&ForwardingState, &mut dyn Backend) + Send + 'static,
    ) -> bool {
        self.tx.send(Msg::Query(Box::new(f))).is_ok()
    }
}

impl Driver {
    /// Starts the driver thread. `events` is called on the driver thread.
    pub fn spawn(
        backend: Box<dyn Backend>,
        reconcile_every: Duration,
        events: impl Fn(DriverEvent) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("backend-driver".into())
            .spawn(move || {
                let mut w = Worker {
                    backend,
                    desired: ForwardingState::new(),
                    installed: None,
                    events: Box::new(events),
                };
                // A message taken off the queue while gathering a batch, handled next.
                let mut held: Option<Msg> = None;
                // Reconcile on a fixed schedule, however busy the queue is.
                let mut next_reconcile = Instant::now() + reconcile_every;
                loop {
                    let now = Instant::now();
                    if now >= next_reconcile {
                        w.reconcile();
                        next_reconcile = now + reconcile_every;
                    }
                    let msg = match held.take() {
                        Some(m) => Ok(m),
                        None => rx.recv_timeout(next_reconcile.saturating_duration_since(now)),
                    };
                    match msg {
                        Ok(Msg::Apply(d)) => {
                            let mut all = d;
                            // Take the deltas already queued too (bigger batches, until
                            // MERGE_UP_TO deltas, so a full table is not copied into one
                            // vector); stop at the first other message and handle it
                            // after this batch.
                            while all.len() < MERGE_UP_TO {
                                let Ok(m) = rx.try_recv() else { break };
                                match m {
                                    Msg::Apply(more) => all.extend(more),
                                    other => {
                                        held = Some(other);
                                        break;
                                    }
                                }
                            }
                            w.apply(all);
                        }
                        Ok(Msg::Query(q)) => q(
                            w.installed.as_ref().unwrap_or(&w.desired),
                            w.backend.as_mut(),
                        ),
                        Ok(Msg::Retry) => w.reconcile(),
                        Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
                tracing::debug!("backend driver stopped");
            })?;
        Ok(Self {
            handle: DriverHandle { tx },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Stops the thread and drops the backend.
    pub fn stop(mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.handle.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    backend: Box<dyn Backend>,
    desired: ForwardingState,
    /// What the target holds while it differs from `desired` (a change it
    /// refused and has not taken since). `None` while the two are equal: the
    /// state is then kept once, and a batch goes to the target as it is,
    /// without comparing whole tables.
    installed: Option<ForwardingState>,
    events: Box<dyn Fn(DriverEvent) + Send>,
}

impl Worker {
    fn apply(&mut self, deltas: Vec<Delta>) {
        if self.installed.is_some() {
            for d in &deltas {
                if let Err(e) = self.desired.apply(d) {
                    tracing::error!("control plane sent an inconsistent delta {d:?}: {e}");
                }
            }
            // Push exactly the difference: this also retries anything that
            // failed before, in dependency order.
            self.push_difference();
            return;
        }
        // In step with the target. What each delta replaces is remembered
        // (only where something is replaced: a full table of new routes
        // remembers nothing), to rebuild what the target holds if it refuses
        // a delta.
        let mut replaced: Vec<(usize, Object)> = Vec::new();
        let mut inconsistent = Vec::new();
        for (i, d) in deltas.iter().enumerate() {
            let key = d.key();
            let before = match d {
                Delta::Create(_) => None,
                _ => self.desired.get(&key),
            };
            match self.desired.apply(d) {
                Ok(()) => {
                    if let Some(b) = before {
                        replaced.push((i, b));
                    }
                }
                Err(e) => {
                    tracing::error!("control plane sent an inconsistent delta {d:?}: {e}");
                    inconsistent.push(i);
                }
            }
        }
        if !inconsistent.is_empty() {
            // The control plane and the driver disagree: go back to the state
            // before the batch (what the target holds) and push the
            // difference.
            let applied: Vec<usize> = (0..deltas.len())
                .filter(|i| inconsistent.binary_search(i).is_err())
                .collect();
            self.installed = Some(self.reverted(&deltas, &applied, &replaced));
            self.push_difference();
            return;
        }
        let failed = self.push(&deltas, None);
        if !failed.is_empty() {
            // A refused delta that a later accepted one on the same object
            // overtook (a route modified, then deleted) leaves nothing to
            // take back: the object is as the later delta says.
            let mut last_accepted: std::collections::HashMap<ObjectKey, usize> =
                std::collections::HashMap::new();
            for (i, d) in deltas.iter().enumerate() {
                if failed.binary_search(&i).is_err() {
                    last_accepted.insert(d.key(), i);
                }
            }
            let undo: Vec<usize> = failed
                .into_iter()
                .filter(|&i| last_accepted.get(&deltas[i].key()).is_none_or(|&a| a < i))
                .collect();
            if !undo.is_empty() {
                self.installed = Some(self.reverted(&deltas, &undo, &replaced));
            }
        }
    }

    /// `desired` with the deltas at `undo` (indices into `deltas`, in
    /// order) taken back, last first: what the target holds when it refused
    /// exactly those.
    fn reverted(
        &mut self,
        deltas: &[Delta],
        undo: &[usize],
        replaced: &[(usize, Object)],
    ) -> ForwardingState {
        let mut s = self.desired.clone();
        let mut exact = true;
        for &i in undo.iter().rev() {
            let key = deltas[i].key();
            let before = replaced
                .binary_search_by_key(&i, |(j, _)| *j)
                .ok()
                .map(|k| replaced[k].1.clone());
            let r = match before {
                Some(obj) => s.upsert(obj).map(|_| ()),
                None if s.contains(&key) => s.remove(&key).map(|_| ()),
                None => Ok(()),
            };
            if let Err(e) = r {
                tracing::debug!(object = %key, "cannot take back a refused change in the installed model: {e}");
                exact = false;
            }
        }
        if exact {
            return s;
        }
        // What the target holds cannot be worked out from the batch (a refused
        // object that an accepted one refers to): ask the target.
        match self.backend.read() {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!("cannot read the target back after a refusal: {e}; the next retry compares with the model as far as it was taken back");
                s
            }
        }
    }

    fn reconcile(&mut self) {
        if self.installed.is_some() {
            self.push_difference();
        }
    }

    /// Pushes the difference between what the target holds and `desired`.
    fn push_difference(&mut self) {
        let Some(mut installed) = self.installed.take() else {
            return;
        };
        let todo = diff(&installed, &self.desired);
        if !todo.is_empty() {
            tracing::info!(
                deltas = todo.len(),
                "retrying changes the target refused earlier"
            );
        }
        self.push(&todo, Some(&mut installed));
        // After a push with no refusal left the two are equal again.
        if installed != self.desired {
            self.installed = Some(installed);
        }
    }

    /// Sends `deltas` to the target, reporting each result; applies the
    /// accepted ones to `installed` when given. Returns the indices of the
    /// refused ones.
    fn push(
        &mut self,
        deltas: &[Delta],
        mut installed: Option<&mut ForwardingState>,
    ) -> Vec<usize> {
        let max = self.backend.capabilities().max_batch.max(1);
        let mut failed = Vec::new();
        for (c, chunk) in deltas.chunks(max).enumerate() {
            let results = self.backend.apply(chunk);
            for (i, d) in chunk.iter().enumerate() {
                let r = results.get(i).cloned().unwrap_or_else(|| {
                    Err(BackendError::new(
                        crate::backend::BackendErrorKind::Internal,
                        "backend returned fewer results than deltas",
                    ))
                });
                match r {
                    Ok(()) => {
                        if let Some(inst) = installed.as_deref_mut() {
                            if let Err(e) = inst.apply(d) {
                                tracing::error!(
                                    "target accepted {d:?} but the installed model refuses it: {e}"
                                );
                            }
                        }
                        (self.events)(match d {
                            Delta::Delete(k) => DriverEvent::Removed(*k),
                            _ => DriverEvent::Installed(d.key()),
                        });
                    }
                    Err(error) => {
                        failed.push(c * max + i);
                        if failed.len() <= 10 {
                            tracing::warn!(object = %d.key(), "target refused change: {error}");
                        }
                        (self.events)(DriverEvent::Failed {
                            key: d.key(),
                            error,
                        });
                    }
                }
            }
        }
        if failed.len() > 10 {
            tracing::warn!("{} more changes refused by the target", failed.len() - 10);
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendErrorKind, Capabilities};
    use crate::model::{Object, Port, PortId};
    use std::sync::{Arc, Mutex};

    /// A backend over a plain ForwardingState that refuses ports named "bad"
    /// until `heal` is set.
    struct Picky {
        state: ForwardingState,
        heal: Arc<Mutex<bool>>,
    }

    impl Backend for Picky {
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                target: "picky".into(),
                max_batch: 2,
                ipv6: true,
                weighted_groups: true,
                max_group_members: 8,
                vrfs: true,
                packet_io: false,
            }
        }
        fn apply(&mut self, batch: &[Delta]) -> Vec<Result<(), BackendError>> {
            batch
                .iter()
                .map(|d| {
                    let healed = *self.heal.lock().unwrap();
                    let refused = match d {
                        Delta::Create(Object::Port(p)) | Delta::Modify(Object::Port(p)) => {
                            p.name == "bad"
                        }
                        Delta::Delete(ObjectKey::Port(PortId(7))) => true,
                        _ => false,
                    };
                    if refused && !healed {
                        return Err(BackendError::new(
                            BackendErrorKind::Unavailable,
                            "no such interface",
                        ));
                    }
                    self.state.apply(d).map_err(BackendError::from)
                })
                .collect()
        }
        fn read(&mut self) -> Result<ForwardingState, BackendError> {
            Ok(self.state.clone())
        }
    }

    fn port(id: u32, name: &str) -> Delta {
        Delta::Create(Object::Port(Port {
            id: PortId(id),
            name: name.into(),
            mtu: 1500,
            admin_up: true,
        }))
    }

    /// Renames port `id` to "bad", which the picky target refuses.
    fn rename_bad(id: u32) -> Delta {
        Delta::Modify(Object::Port(Port {
            id: PortId(id),
            name: "bad".into(),
            mtu: 1500,
            admin_up: true,
        }))
    }

    fn installed(h: &DriverHandle) -> ForwardingState {
        let (tx, rx) = channel();
        h.query(move |s, _| tx.send(s.clone()).unwrap());
        rx.recv().unwrap()
    }

    /// A driver over a `Picky` target that never reconciles by itself within
    /// a test, and the switch that heals the target.
    fn picky_driver() -> (Driver, Arc<Mutex<bool>>) {
        let heal = Arc::new(Mutex::new(false));
        let d = Driver::spawn(
            Box::new(Picky {
                state: ForwardingState::new(),
                heal: heal.clone(),
            }),
            Duration::from_secs(3600),
            |_| {},
        )
        .unwrap();
        (d, heal)
    }

    /// Whether the target holds exactly the driver's installed model.
    fn agrees(h: &DriverHandle) -> bool {
        let (tx, rx) = channel();
        h.query(move |inst, b| tx.send(b.read().unwrap() == *inst).unwrap());
        rx.recv().unwrap()
    }

    #[test]
    fn failed_deltas_are_reported_and_retried_until_the_target_takes_them() {
        let heal = Arc::new(Mutex::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let d = Driver::spawn(
            Box::new(Picky {
                state: ForwardingState::new(),
                heal: heal.clone(),
            }),
            Duration::from_millis(50),
            move |e| ev.lock().unwrap().push(e),
        )
        .unwrap();
        let h = d.handle();
        h.apply(vec![port(1, "good"), port(2, "bad"), port(3, "good")]);
        let s = installed(&h);
        assert_eq!(
            s.ports().len(),
            2,
            "the refused port is not in the installed model"
        );
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            DriverEvent::Failed {
                key: ObjectKey::Port(PortId(2)),
                ..
            }
        )));
        *heal.lock().unwrap() = true;
        // Queries arriving more often than the reconcile period must not starve it.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(20));
            let _ = installed(&h);
        }
        let s = installed(&h);
        assert_eq!(
            s.ports().len(),
            3,
            "the reconcile timer installed it once the target healed"
        );
        assert!(agrees(&h), "target and installed model agree");
        d.stop();
    }

    #[test]
    fn a_retry_request_installs_refused_changes_before_the_reconcile_timer() {
        // No reconcile within the test: only `retry` can install the refused port.
        let (d, heal) = picky_driver();
        let h = d.handle();
        h.apply(vec![port(1, "bad")]);
        assert!(installed(&h).ports().is_empty());
        // Nothing heals by itself while the target still refuses.
        assert!(h.retry());
        assert!(installed(&h).ports().is_empty());
        *heal.lock().unwrap() = true;
        assert!(h.retry());
        assert_eq!(
            installed(&h).ports().len(),
            1,
            "retry pushed the refused port to the healed target"
        );
        d.stop();
    }

    #[test]
    fn a_refused_modify_or_delete_leaves_the_installed_model_as_the_target_has_it() {
        let (d, heal) = picky_driver();
        let h = d.handle();
        h.apply(vec![port(1, "good"), port(7, "good")]);
        assert_eq!(installed(&h).ports().len(), 2);
        // A refused rename and a refused delete, beside an accepted create.
        h.apply(vec![
            rename_bad(1),
            Delta::Delete(ObjectKey::Port(PortId(7))),
            port(8, "good"),
        ]);
        let s = installed(&h);
        assert_eq!(
            s.ports()[&PortId(1)].name,
            "good",
            "the rename did not happen"
        );
        assert!(
            s.ports().contains_key(&PortId(7)),
            "the delete did not happen"
        );
        assert!(s.ports().contains_key(&PortId(8)));
        assert!(agrees(&h), "target and installed model agree");
        // A refused rename overtaken by an accepted delete of the same port.
        h.apply(vec![port(3, "good")]);
        h.apply(vec![
            rename_bad(3),
            Delta::Delete(ObjectKey::Port(PortId(3))),
        ]);
        assert!(!installed(&h).ports().contains_key(&PortId(3)));
        assert!(agrees(&h), "target and installed model agree");
        // An inconsistent delta (a port nobody created) beside a good one.
        h.apply(vec![
            Delta::Delete(ObjectKey::Port(PortId(5))),
            port(9, "good"),
        ]);
        assert!(installed(&h).ports().contains_key(&PortId(9)));
        *heal.lock().unwrap() = true;
        h.retry();
        let s = installed(&h);
        assert_eq!(s.ports()[&PortId(1)].name, "bad");
        assert!(!s.ports().contains_key(&PortId(7)));
        assert!(agrees(&h), "target and installed model agree");
        d.stop();
    }
}
