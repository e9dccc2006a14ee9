//! The owner of one backend: a thread that applies ordered deltas to the target
//! and keeps the model of what is *installed* exactly in step with it.
//!
//! The driver keeps two states. `desired` is what the control plane asked for
//! (every delta it received, applied in order); `installed` is what the target
//! accepted (only deltas whose per-delta result was `Ok`). When a delta fails,
//! the two differ, the failure is logged with the object and reason and reported
//! as an event, and the driver retries the difference on its reconcile timer,
//! or at once when told the target has become ready ([`DriverHandle::retry`]),
//! so the target and the model never drift apart silently.

use crate::backend::{Backend, BackendError};
use crate::diff::{diff, Delta};
use crate::model::{ForwardingState, ObjectKey};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
                    installed: ForwardingState::new(),
                    events: Box::new(events),
                    behind: false,
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
                            // Take the deltas already queued too (bigger batches); stop at
                            // the first other message and handle it after this batch.
                            while let Ok(m) = rx.try_recv() {
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
                        Ok(Msg::Query(q)) => q(&w.installed, w.backend.as_mut()),
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
    installed: ForwardingState,
    events: Box<dyn Fn(DriverEvent) + Send>,
    /// Some delta was refused and not yet installed: `installed` lags `desired`.
    /// While false the two are equal, so a batch can go to the target as it is
    /// instead of costing a comparison of whole tables.
    behind: bool,
}

impl Worker {
    fn apply(&mut self, deltas: Vec<Delta>) {
        let mut consistent = true;
        for d in &deltas {
            if let Err(e) = self.desired.apply(d) {
                tracing::error!("control plane sent an inconsistent delta {d:?}: {e}");
                consistent = false;
            }
        }
        if self.behind || !consistent {
            // Push exactly the difference: this also retries anything that failed
            // before, in dependency order.
            let todo = diff(&self.installed, &self.desired);
            self.push(&todo);
        } else {
            self.push(&deltas);
        }
    }

    fn reconcile(&mut self) {
        if self.behind {
            let todo = diff(&self.installed, &self.desired);
            tracing::info!(
                deltas = todo.len(),
                "retrying changes the target refused earlier"
            );
            self.push(&todo);
        }
    }

    fn push(&mut self, deltas: &[Delta]) {
        let max = self.backend.capabilities().max_batch.max(1);
        let mut failed = 0usize;
        for chunk in deltas.chunks(max) {
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
                        if let Err(e) = self.installed.apply(d) {
                            tracing::error!(
                                "target accepted {d:?} but the installed model refuses it: {e}"
                            );
                        }
                        (self.events)(match d {
                            Delta::Delete(k) => DriverEvent::Removed(*k),
                            _ => DriverEvent::Installed(d.key()),
                        });
                    }
                    Err(error) => {
                        failed += 1;
                        if failed <= 10 {
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
        if failed > 10 {
            tracing::warn!("{} more changes refused by the target", failed - 10);
        }
        // After a full retry with no refusal the two states are equal again.
        self.behind = failed > 0 || (self.behind && self.installed != self.desired);
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
                    if let Delta::Create(Object::Port(p)) = d {
                        if p.name == "bad" && !*self.heal.lock().unwrap() {
                            return Err(BackendError::new(
                                BackendErrorKind::Unavailable,
                                "no such interface",
                            ));
                        }
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

    fn installed(h: &DriverHandle) -> ForwardingState {
        let (tx, rx) = channel();
        h.query(move |s, _| tx.send(s.clone()).unwrap());
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
        let (tx, rx) = channel();
        h.query(move |inst, b| tx.send(b.read().unwrap() == *inst).unwrap());
        assert!(rx.recv().unwrap(), "target and installed model agree");
        d.stop();
    }

    #[test]
    fn a_retry_request_installs_refused_changes_before_the_reconcile_timer() {
        let heal = Arc::new(Mutex::new(false));
        let d = Driver::spawn(
            Box::new(Picky {
                state: ForwardingState::new(),
                heal: heal.clone(),
            }),
            // Far beyond the test: only `retry` can install the refused port.
            Duration::from_secs(3600),
            |_| {},
        )
        .unwrap();
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
}
