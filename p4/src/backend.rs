//! [`P4RuntimeBackend`]: a `nos_core::Backend` that programs a P4Runtime
//! target.
//!
//! The backend owns a small tokio runtime and, in it, one *session* task
//! that owns everything: the connection ([`Client`]), the schema and
//! compiler of the target's P4Info, and the model of what the target holds
//! (every delta the target accepted). The synchronous trait methods send
//! the session a command and wait for its answer, so the nosd driver
//! thread can own the backend like any other.
//!
//! The session:
//!
//! * connects (retrying with exponential backoff), wins arbitration, makes
//!   sure the target runs the pipeline (pushed with VERIFY_AND_COMMIT unless
//!   the target reports the pipeline's cookie), resolves the [`Schema`] from
//!   the P4Info the target reports, and **reconciles**: reads the target's
//!   entries, compares them with the model and writes only the difference
//!   (nothing when nothing changed; everything after a target restart);
//! * compiles each batch of deltas, writes the updates in dependency order
//!   and maps every per-update error back to the delta that caused it; a
//!   refused delta is logged with its error and entry, reported as failed
//!   and taken back out of the model, so it shows as not installed;
//! * audits on a timer: reads and compares again, reports any divergence
//!   and repairs it;
//! * hands packet-ins to the sink it was given and sends packet-outs on the
//!   stream.
//!
//! While the session is not connected, or not the primary, every delta
//! fails with UNAVAILABLE (the driver retries).

use crate::canon::{canonical, EntityKey, EntityValue};
use crate::client::{Client, ClientConfig, ClientError, Mastership, PipelineConfig, UpdateError};
use crate::compile::{undo, CloneSession, CompileError, Compiler};
use crate::p4info::{P4Names, Schema, SchemaError};
use crate::packet::{decode_packet_in, encode_packet_out};
use crate::ports::{PortMap, PortNumbering};
use crate::reconcile::{compare, Divergence};
use crate::write::{write_ordered, PhaseTracker, WriteOptions, WriteReport};
use nos_core::backend::{BackendErrorKind, Capabilities, PacketInSink, PacketSender};
use nos_core::{Backend, BackendError, Delta, ForwardingState, Object, ObjectKey};
use p4runtime_proto::p4::v1 as p4;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::Code;

/// How the backend reaches and treats its target.
#[derive(Clone)]
pub struct P4RuntimeConfig {
    pub client: ClientConfig,
    /// The pipeline the target must run.
    pub pipeline: PipelineConfig,
    pub write: WriteOptions,
    /// Read-and-compare period (`None`: no periodic audit).
    pub audit_every: Option<Duration>,
    /// After a controller restart, how long the entries the target held are
    /// kept for adoption: periodic audits meanwhile leave the ones nothing
    /// has asked for yet in place (they forward while the control plane
    /// learns its routes again; BGP defers route selection for up to its
    /// restart time). An explicit audit deletes them at any time.
    pub adopt_for: Duration,
    /// The clone session ACL copies use (written with the entries).
    pub clone_session: Option<CloneSession>,
    /// First and longest wait between connection attempts.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Where packet-ins go.
    pub packet_in: Option<PacketInSink>,
    /// The P4 port number of each port, by name (`None`: a port's id is
    /// its P4 port number). With a numbering, deltas, packet-ins,
    /// packet-outs and reads are translated between the two.
    pub port_numbers: Option<PortNumbering>,
}

impl std::fmt::Debug for P4RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P4RuntimeConfig")
            .field("client", &self.client)
            .field("cookie", &self.pipeline.cookie)
            .field("write", &self.write)
            .field("audit_every", &self.audit_every)
            .field("adopt_for", &self.adopt_for)
            .field("clone_session", &self.clone_session)
            .finish_non_exhaustive()
    }
}

impl P4RuntimeConfig {
    pub fn new(client: ClientConfig, pipeline: PipelineConfig) -> Self {
        Self {
            client,
            pipeline,
            write: WriteOptions::default(),
            audit_every: Some(Duration::from_secs(60)),
            adopt_for: Duration::from_secs(180),
            clone_session: Some(CloneSession {
                session_id: 255,
                port: 255,
            }),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            packet_in: None,
            port_numbers: None,
        }
    }
}

/// The reason of the session's state before its first connection attempt.
pub const NOT_CONNECTED_YET: &str = "not connected yet";

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("cannot start the P4Runtime backend's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Where the session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    Disconnected {
        reason: String,
    },
    /// Connected, not (yet) able to write: backup, or arbitration pending.
    Connected {
        mastership: Mastership,
    },
    /// The target's P4Info lacks what the controller needs.
    Unusable {
        reason: String,
    },
    /// Primary, pipeline in place, reconciled.
    Ready {
        election_id: u128,
    },
}

/// What an audit found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub missing: usize,
    pub different: usize,
    pub extra: usize,
    pub unreadable: usize,
    /// Updates written to repair it.
    pub written: usize,
    /// Of those, refused by the target.
    pub failed: usize,
    pub examples: Vec<String>,
}

impl AuditReport {
    pub fn diverged(&self) -> bool {
        self.missing + self.different + self.extra > 0
    }
}

/// Counters of the session.
#[derive(Debug, Default)]
pub struct Stats {
    pub connects: AtomicU64,
    pub pipeline_pushes: AtomicU64,
    pub reconciles: AtomicU64,
    pub audits: AtomicU64,
    /// Updates sent in Write RPCs (reconciliation and audits included).
    pub updates_written: AtomicU64,
    pub write_rpcs: AtomicU64,
    pub updates_failed: AtomicU64,
    /// Updates not sent because the target already held the entry (taken
    /// over after a controller restart).
    pub adopted: AtomicU64,
    pub packet_ins: AtomicU64,
    pub packet_ins_undecodable: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connects: u64,
    pub pipeline_pushes: u64,
    pub reconciles: u64,
    pub audits: u64,
    pub updates_written: u64,
    pub write_rpcs: u64,
    pub updates_failed: u64,
    pub adopted: u64,
    pub packet_ins: u64,
    pub packet_ins_undecodable: u64,
}

impl Stats {
    fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            connects: g(&self.connects),
            pipeline_pushes: g(&self.pipeline_pushes),
            reconciles: g(&self.reconciles),
            audits: g(&self.audits),
            updates_written: g(&self.updates_written),
            write_rpcs: g(&self.write_rpcs),
            updates_failed: g(&self.updates_failed),
            adopted: g(&self.adopted),
            packet_ins: g(&self.packet_ins),
            packet_ins_undecodable: g(&self.packet_ins_undecodable),
        }
    }
}

/// What the synchronous side and the packet path share with the session.
struct Shared {
    stats: Stats,
    state: Mutex<SessionState>,
    /// The stream and schema packet-outs use (set while ready).
    packet_path: Mutex<Option<(Client, Arc<Schema>)>>,
    /// Port ids ↔ P4 port numbers, when the config has a numbering.
    ports: Option<Mutex<PortMap>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Reply<T> = std::sync::mpsc::Sender<T>;

enum Command {
    Apply(Vec<Delta>, Reply<Vec<Result<(), BackendError>>>),
    Read(Reply<ForwardingState>),
    Audit(bool, Reply<Result<AuditReport, BackendError>>),
}

enum Event {
    Mastership(u64, Mastership),
}

/// A `nos_core::Backend` over P4Runtime (see the module docs).
pub struct P4RuntimeBackend {
    runtime: Option<tokio::runtime::Runtime>,
    cmd: Option<mpsc::UnboundedSender<Command>>,
    caps: Capabilities,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for P4RuntimeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P4RuntimeBackend")
            .field("state", &*lock(&self.shared.state))
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::new(BackendErrorKind::Unavailable, reason)
}

/// The backend error of a refused update.
pub fn update_error(e: &UpdateError) -> BackendError {
    let kind = match e.code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            BackendErrorKind::InvalidArgument
        }
        Code::NotFound => BackendErrorKind::NotFound,
        Code::AlreadyExists => BackendErrorKind::AlreadyExists,
        Code::ResourceExhausted => BackendErrorKind::ResourceExhausted,
        Code::Unimplemented => BackendErrorKind::Unsupported,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::PermissionDenied => {
            BackendErrorKind::Unavailable
        }
        Code::Aborted => BackendErrorKind::Aborted,
        _ => BackendErrorKind::Internal,
    };
    BackendError::new(kind, format!("the target refused it: {e}"))
}

fn compile_error(e: CompileError) -> BackendError {
    match e {
        CompileError::Model(m) => BackendError::from(m),
        CompileError::Conflict(m) => BackendError::new(BackendErrorKind::AlreadyExists, m),
        other => BackendError::new(BackendErrorKind::InvalidArgument, other.to_string()),
    }
}

impl P4RuntimeBackend {
    /// Checks the configured P4Info against what the compiler needs (an
    /// error names every missing table, action, field...), then starts the
    /// session, which connects in the background.
    pub fn start(cfg: P4RuntimeConfig) -> Result<Self, StartError> {
        let schema = Schema::from_p4info(&cfg.pipeline.p4info)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("p4runtime")
            .enable_all()
            .build()?;
        let caps = Capabilities {
            target: "p4runtime".into(),
            max_batch: usize::MAX,
            ipv6: true,
            weighted_groups: true,
            max_group_members: if schema.max_group_weight > 0 {
                schema.max_group_weight as usize
            } else {
                usize::MAX
            },
            vrfs: true,
            packet_io: true,
        };
        let shared = Arc::new(Shared {
            stats: Stats::default(),
            state: Mutex::new(SessionState::Disconnected {
                reason: NOT_CONNECTED_YET.into(),
            }),
            packet_path: Mutex::new(None),
            ports: cfg.port_numbers.is_some().then(Mutex::default),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let session = Session {
            cfg,
            shared: shared.clone(),
            model: ForwardingState::new(),
            adopt: HashMap::new(),
            adopt_until: None,
            conn: None,
            generation: 0,
        };
        runtime.spawn(session.run(rx));
        Ok(Self {
            runtime: Some(runtime),
            cmd: Some(tx),
            caps,
            shared,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.cmd.as_ref()?.send(make(tx)).ok()?;
        rx.recv().ok()
    }

    /// Reads the target and compares it with the model; with `repair`,
    /// writes the difference.
    pub fn audit(&self, repair: bool) -> Result<AuditReport, BackendError> {
        self.ask(|tx| Command::Audit(repair, tx))
            .unwrap_or_else(|| Err(unavailable("the P4Runtime session has stopped")))
    }

    pub fn state(&self) -> SessionState {
        lock(&self.shared.state).clone()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// A handle on the session's state and counters that stays usable
    /// after the backend moved into a driver.
    pub fn monitor(&self) -> Monitor {
        Monitor {
            shared: self.shared.clone(),
        }
    }

    /// Waits until the session is ready (or `timeout` passes).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if matches!(self.state(), SessionState::Ready { .. }) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The session's state and counters, readable from anywhere
/// ([`P4RuntimeBackend::monitor`]).
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Monitor {
    pub fn state(&self) -> SessionState {
        lock(&self.shared.state).clone()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }
}

impl StatsSnapshot {
    /// The counters by name (`p4runtime_<counter>`).
    pub fn named(&self) -> Vec<(String, u64)> {
        [
            ("connects", self.connects),
            ("pipeline_pushes", self.pipeline_pushes),
            ("reconciles", self.reconciles),
            ("audits", self.audits),
            ("updates_written", self.updates_written),
            ("write_rpcs", self.write_rpcs),
            ("updates_failed", self.updates_failed),
            ("adopted", self.adopted),
            ("packet_ins", self.packet_ins),
            ("packet_ins_undecodable", self.packet_ins_undecodable),
        ]
        .into_iter()
        .map(|(n, v)| (format!("p4runtime_{n}"), v))
        .collect()
    }
}

impl Drop for P4RuntimeBackend {
    fn drop(&mut self) {
        // Closing the command channel ends the session; then the runtime.
        self.cmd = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Backend for P4RuntimeBackend {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn apply(&mut self, batch: &[Delta]) -> Vec<Result<(), BackendError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let n = batch.len();
        self.ask(|tx| Command::Apply(batch.to_vec(), tx))
            .unwrap_or_else(|| vec![Err(unavailable("the P4Runtime session has stopped")); n])
    }

    /// The model of what the target accepted (the session's own record;
    /// [`P4RuntimeBackend::audit`] compares it with the target).
    fn read(&mut self) -> Result<ForwardingState, BackendError> {
        let s = self
            .ask(Command::Read)
            .ok_or_else(|| unavailable("the P4Runtime session has stopped"))?;
        Ok(match &self.shared.ports {
            Some(m) => lock(m).untranslate(&s),
            None => s,
        })
    }

    /// The session's counters (P4Runtime keeps the target's own counters
    /// in counter entities, which nos.p4 does not have).
    fn drop_counters(&mut self) -> Vec<(String, u64)> {
        self.stats().named()
    }

    fn packet_sender(&self) -> Option<PacketSender> {
        let shared = self.shared.clone();
        Some(Arc::new(move |p| {
            let path = lock(&shared.packet_path).clone();
            let Some((client, schema)) = path else {
                return Err(unavailable("no P4Runtime connection for packet-out"));
            };
            let p = match &shared.ports {
                // A port not programmed yet (the session is still
                // connecting, or the port was refused).
                Some(m) => lock(m)
                    .packet_out(p)
                    .map_err(|e| unavailable(format!("{e} in the target yet")))?,
                None => p,
            };
            let out = encode_packet_out(&schema, p)
                .map_err(|e| BackendError::new(BackendErrorKind::InvalidArgument, e.to_string()))?;
            client.try_packet_out(out).map_err(|e| match e.code() {
                Code::ResourceExhausted => {
                    BackendError::new(BackendErrorKind::ResourceExhausted, e.to_string())
                }
                _ => unavailable(e.to_string()),
            })
        }))
    }
}

/// One connection to the target.
struct Conn {
    client: Client,
    generation: u64,
    /// Set once primary, pipeline in place and the schema resolved.
    ready: Option<Ready>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Ready {
    names: Arc<P4Names>,
    compiler: Compiler,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Deltas compiled per slice of a large batch (see `Session::apply`): big
/// enough for full Write batches, small enough that compiling the next slice
/// overlaps the target's work on this one.
const APPLY_SLICE: usize = 20_000;

/// Slices written at once, when they are all of one phase.
const SLICES_IN_FLIGHT: usize = 2;

/// The writes of one slice, in flight.
struct Writing {
    /// The delta each update belongs to.
    owners: Vec<usize>,
    /// The slice is one phase (continuing the phase before it).
    single: bool,
    task: tokio::task::JoinHandle<WriteReport>,
}

impl Writing {
    async fn await_report(self) -> (Vec<usize>, Option<WriteReport>) {
        match self.task.await {
            Ok(r) => (self.owners, Some(r)),
            Err(e) => {
                tracing::error!("a write task failed: {e}");
                (self.owners, None)
            }
        }
    }
}

/// What the settled slices of one apply add up to.
#[derive(Default)]
struct Settled {
    /// A write found the target unavailable.
    lost: bool,
    /// Refusals logged one by one (the rest are counted).
    logged: usize,
    failures: usize,
}

/// Why the target is compared with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// A new connection (the first one after a restart adopts).
    Connect,
    /// The periodic audit.
    Periodic,
    /// Someone asked for an audit.
    Asked,
}

struct Session {
    cfg: P4RuntimeConfig,
    shared: Arc<Shared>,
    model: ForwardingState,
    /// Entries the target held when this controller, with nothing
    /// programmed yet, connected: a controller restart. Deltas that call
    /// for them take them over without a write; the first periodic audit
    /// after `adopt_for`, or any audit asked for, deletes the ones nobody
    /// asked for.
    adopt: HashMap<EntityKey, EntityValue>,
    /// Until when periodic audits keep adoptable entries (`adopt_for` after
    /// the restart).
    adopt_until: Option<Instant>,
    conn: Option<Conn>,
    generation: u64,
}

impl Session {
    fn set_state(&self, s: SessionState) {
        *lock(&self.shared.state) = s;
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
        let mut backoff = self.cfg.reconnect_initial;
        let mut next_connect = tokio::time::Instant::now();
        let audit_every = self.cfg.audit_every;
        let mut next_audit = audit_every.map(|d| tokio::time::Instant::now() + d);
        loop {
            let disconnected = self.conn.is_none();
            let audit_at = next_audit;
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Apply(d, tx)) => { let _ = tx.send(self.apply(&d).await); }
                    Some(Command::Read(tx)) => { let _ = tx.send(self.model.clone()); }
                    Some(Command::Audit(repair, tx)) => { let _ = tx.send(self.reconcile(repair, Check::Asked).await); }
                },
                Some(Event::Mastership(generation, m)) = ev_rx.recv() => {
                    if self.conn.as_ref().is_some_and(|c| c.generation == generation) {
                        self.on_mastership(m).await;
                        if self.conn.is_none() {
                            next_connect = tokio::time::Instant::now() + self.cfg.reconnect_initial;
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_connect), if disconnected => {
                    match self.connect(&ev_tx).await {
                        Ok(()) => backoff = self.cfg.reconnect_initial,
                        Err(e) => {
                            tracing::debug!("P4Runtime connection to {} failed: {e}; next attempt in {backoff:?}", self.cfg.client.addr);
                            self.set_state(SessionState::Disconnected { reason: e.to_string() });
                            next_connect = tokio::time::Instant::now() + backoff;
                            backoff = (backoff * 2).min(self.cfg.reconnect_max);
                        }
                    }
                },
                _ = async { match audit_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                    if self.is_ready() {
                        if let Err(e) = self.reconcile(true, Check::Periodic).await {
                            tracing::warn!("periodic audit failed: {e}");
                        }
                    }
                    next_audit = audit_every.map(|d| tokio::time::Instant::now() + d);
                },
            }
        }
        *lock(&self.shared.packet_path) = None;
        tracing::debug!("P4Runtime session stopped");
    }

    fn is_ready(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.ready.is_some())
    }

    async fn connect(&mut self, ev: &mpsc::UnboundedSender<Event>) -> Result<(), ClientError> {
        let client = Client::connect(self.cfg.client.clone()).await?;
        self.generation += 1;
        let generation = self.generation;
        self.shared.stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(addr = %self.cfg.client.addr, "connected to the P4Runtime target");
        let mut tasks = Vec::new();
        // Mastership changes reach the session as events.
        let mut ms = client.watch_mastership();
        let ev = ev.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let m = ms.borrow_and_update().clone();
                let closed = matches!(m, Mastership::Closed { .. });
                if ev.send(Event::Mastership(generation, m)).is_err() || closed {
                    return;
                }
                if ms.changed().await.is_err() {
                    let _ = ev.send(Event::Mastership(
                        generation,
                        Mastership::Closed {
                            reason: "the stream task ended".into(),
                        },
                    ));
                    return;
                }
            }
        }));
        // Packet-ins go to the sink, decoded with the current schema.
        if let Some(mut pins) = client.take_packet_ins() {
            let shared = self.shared.clone();
            let sink = self.cfg.packet_in.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(p) = pins.recv().await {
                    shared.stats.packet_ins.fetch_add(1, Ordering::Relaxed);
                    let schema = lock(&shared.packet_path).as_ref().map(|(_, s)| s.clone());
                    let (Some(schema), Some(sink)) = (schema, &sink) else {
                        continue;
                    };
                    match decode_packet_in(&schema, &p) {
                        Ok(pi) => {
                            let pi = match &shared.ports {
                                Some(m) => lock(m).packet_in(pi),
                                None => Some(pi),
                            };
                            match pi {
                                Some(pi) => sink(pi),
                                None => tracing::debug!(
                                    "dropping a packet-in from a port the model does not hold"
                                ),
                            }
                        }
                        Err(e) => {
                            shared
                                .stats
                                .packet_ins_undecodable
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("dropping a packet-in: {e}");
                        }
                    }
                }
            }));
        }
        self.set_state(SessionState::Connected {
            mastership: client.mastership(),
        });
        self.conn = Some(Conn {
            client,
            generation,
            ready: None,
            tasks,
        });
        Ok(())
    }

    fn drop_connection(&mut self, reason: String) {
        *lock(&self.shared.packet_path) = None;
        self.conn = None;
        self.set_state(SessionState::Disconnected { reason });
    }

    async fn on_mastership(&mut self, m: Mastership) {
        match m {
            Mastership::Closed { reason } => {
                tracing::warn!("lost the P4Runtime target: {reason}");
                self.drop_connection(reason);
            }
            Mastership::Primary { election_id } => {
                if self.is_ready() {
                    return;
                }
                match self.become_ready().await {
                    Ok(()) => self.set_state(SessionState::Ready { election_id }),
                    Err(e) => {
                        if e.is_disconnect() {
                            tracing::warn!("P4Runtime setup failed: {e}");
                            self.drop_connection(e.to_string());
                        } else {
                            tracing::error!("the P4Runtime target cannot be used: {e}");
                            self.set_state(SessionState::Unusable {
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            other => {
                if let Some(c) = &mut self.conn {
                    if c.ready.take().is_some() {
                        tracing::warn!("no longer the primary controller: {other:?}");
                    }
                }
                *lock(&self.shared.packet_path) = None;
                self.set_state(SessionState::Connected { mastership: other });
            }
        }
    }

    /// Pipeline, schema, reconciliation.
    async fn become_ready(&mut self) -> Result<(), SetupError> {
        let Some(conn) = &mut self.conn else {
            return Err(SetupError::Client(ClientError::StreamClosed(
                "not connected".into(),
            )));
        };
        let client = conn.client.clone();
        let version = client.capabilities().await?;
        tracing::info!(p4runtime = %version, "target capabilities");
        let outcome = client.ensure_pipeline(&self.cfg.pipeline).await?;
        if outcome == crate::client::PipelineOutcome::Pushed {
            self.shared
                .stats
                .pipeline_pushes
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                cookie = self.cfg.pipeline.cookie,
                "pipeline pushed (VERIFY_AND_COMMIT)"
            );
        } else {
            tracing::info!(
                cookie = self.cfg.pipeline.cookie,
                "the target runs the pipeline already"
            );
        }
        // Ids come from the P4Info the target reports.
        let info = match client.target_p4info().await? {
            Some(i) => i,
            None => {
                tracing::warn!("the target reports no P4Info; using the configured one");
                self.cfg.pipeline.p4info.clone()
            }
        };
        let names = Arc::new(P4Names::new(&info));
        let schema = Arc::new(Schema::resolve(&names).map_err(SetupError::Schema)?);
        let compiler = Compiler::new(schema.clone(), self.cfg.clone_session);
        if let Some(c) = &mut self.conn {
            c.ready = Some(Ready { names, compiler });
        }
        *lock(&self.shared.packet_path) = Some((client, schema));
        self.shared.stats.reconciles.fetch_add(1, Ordering::Relaxed);
        let r = self.reconcile(true, Check::Connect).await.map_err(|e| {
            SetupError::Client(ClientError::Rpc {
                op: "reconcile",
                code: Code::Unavailable,
                message: e.message,
            })
        })?;
        tracing::info!(
            missing = r.missing,
            different = r.different,
            extra = r.extra,
            written = r.written,
            failed = r.failed,
            "reconciled with the target"
        );
        Ok(())
    }

    async fn apply(&mut self, deltas: &[Delta]) -> Vec<Result<(), BackendError>> {
        let n = deltas.len();
        let (client, compiler) = match &self.conn {
            Some(Conn {
                client,
                ready: Some(r),
                ..
            }) => (client.clone(), r.compiler.clone()),
            _ => {
                let reason = match self.shared.state.lock().map(|s| s.clone()) {
                    Ok(s) => format!("the P4Runtime target is not ready: {s:?}"),
                    Err(_) => "the P4Runtime target is not ready".to_string(),
                };
                return vec![Err(unavailable(reason)); n];
            }
        };
        let mut results: Vec<Result<(), BackendError>> = vec![Ok(()); n];
        // Into P4 port numbers (the model and the target use those).
        let original = deltas;
        let translated: Vec<Delta>;
        let deltas = match (&self.shared.ports, &self.cfg.port_numbers) {
            (Some(map), Some(numbering)) => {
                let mut map = lock(map);
                translated = original
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match map.translate(d, numbering) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(delta = ?d, "cannot program this change: {e}");
                            results[i] = Err(BackendError::new(
                                BackendErrorKind::InvalidArgument,
                                e.to_string(),
                            ));
                            d.clone()
                        }
                    })
                    .collect();
                &translated[..]
            }
            _ => original,
        };
        // Slices of the batch are compiled and written in turn; a slice is
        // compiled while the writes of the one before are in flight, and
        // written once they are done, so the dependency order holds across
        // slices as within one.
        let mut applied: Vec<(usize, Option<Object>)> = Vec::new();
        let mut writing: VecDeque<Writing> = VecDeque::new();
        let mut tracker = PhaseTracker::default();
        let mut settled = Settled::default();
        let mut at = 0;
        while at < deltas.len() && !settled.lost {
            let end = (at + APPLY_SLICE).min(deltas.len());
            let mut planned = Vec::new();
            let mut owners = Vec::new();
            // Off the async worker, so the tasks writing the slice before
            // (spawned on this worker) run meanwhile.
            tokio::task::block_in_place(|| {
                for (i, d) in deltas.iter().enumerate().take(end).skip(at) {
                    if results[i].is_err() {
                        continue;
                    }
                    match compiler.delta(&mut self.model, d) {
                        Ok(c) => {
                            for u in c.updates {
                                owners.push(i);
                                planned.push(u);
                            }
                            applied.push((i, c.previous));
                        }
                        Err(e) => {
                            tracing::warn!(delta = ?d, "cannot program this change: {e}");
                            results[i] = Err(compile_error(e));
                        }
                    }
                }
            });
            if !self.adopt.is_empty() {
                let n = self.adopt(&mut planned, &mut owners);
                self.shared
                    .stats
                    .adopted
                    .fetch_add(n as u64, Ordering::Relaxed);
                // After a restart, what still needs a write (and why).
                for u in planned.iter().take(8) {
                    if let Some(e) = &u.update.entity {
                        tracing::debug!(kind = u.update.r#type, entry = %self.describe(e), "not adoptable: writing");
                    }
                }
            }
            // A slice that is one phase continuing the phase in flight goes
            // out beside it (a full table: one phase of routes); any other
            // waits until everything before it is done.
            let mut new_phases = planned.iter().map(|u| tracker.push(u));
            let continues = new_phases.next() == Some(false) || planned.is_empty();
            let single = continues && !new_phases.any(|cut| cut);
            let overlaps = single && writing.iter().all(|w| w.single);
            while !writing.is_empty() && (!overlaps || writing.len() >= SLICES_IN_FLIGHT) {
                if let Some(w) = writing.pop_front() {
                    self.settle(w.await_report().await, deltas, &mut results, &mut settled);
                }
            }
            if settled.lost {
                // This slice, compiled but not sent, is refused below with
                // the rest.
                break;
            }
            let c = client.clone();
            let opts = self.cfg.write;
            self.shared
                .stats
                .updates_written
                .fetch_add(planned.len() as u64, Ordering::Relaxed);
            writing.push_back(Writing {
                owners,
                single,
                task: tokio::spawn(async move { write_ordered(&c, planned, opts).await }),
            });
            at = end;
        }
        while let Some(w) = writing.pop_front() {
            self.settle(w.await_report().await, deltas, &mut results, &mut settled);
        }
        for r in results.iter_mut().skip(at) {
            if r.is_ok() {
                *r = Err(unavailable("not sent: the P4Runtime target is unavailable"));
            }
        }
        if settled.failures > settled.logged {
            tracing::warn!("{} more refused updates", settled.failures - settled.logged);
        }
        let lost = settled.lost;
        // Take the refused deltas back out of the model, newest first; a
        // later delta of the same object that went through stands.
        if results.iter().any(|r| r.is_err()) {
            let mut stands: HashSet<ObjectKey> = HashSet::new();
            for (i, previous) in applied.iter().rev() {
                let d = &deltas[*i];
                if results[*i].is_ok() {
                    stands.insert(d.key());
                } else if !stands.contains(&d.key()) {
                    undo(&mut self.model, d, previous);
                }
            }
        }
        if let Some(map) = &self.shared.ports {
            let mut map = lock(map);
            for (d, r) in original.iter().zip(&results) {
                if let (Delta::Delete(ObjectKey::Port(id)), Ok(())) = (d, r) {
                    map.forget(*id);
                }
            }
        }
        if lost {
            // The stream will say why; until then, write nothing more.
            if let Some(c) = &mut self.conn {
                c.ready = None;
            }
            *lock(&self.shared.packet_path) = None;
            self.set_state(SessionState::Disconnected {
                reason: "a write found the target unavailable".into(),
            });
            self.conn = None;
        }
        results
    }

    /// Takes one slice's write report into the per-delta `results`.
    fn settle(
        &self,
        (owners, report): (Vec<usize>, Option<WriteReport>),
        deltas: &[Delta],
        results: &mut [Result<(), BackendError>],
        s: &mut Settled,
    ) {
        let Some(report) = report else {
            for i in owners {
                results[i] = Err(BackendError::new(
                    BackendErrorKind::Internal,
                    "the task writing this change failed",
                ));
            }
            return;
        };
        let stats = &self.shared.stats;
        stats
            .write_rpcs
            .fetch_add(report.rpcs as u64, Ordering::Relaxed);
        stats
            .updates_failed
            .fetch_add(report.failures() as u64, Ordering::Relaxed);
        s.failures += report.failures();
        for (j, r) in report.results.iter().enumerate() {
            let Err(e) = r else { continue };
            let i = owners[j];
            // UNAVAILABLE: the connection is gone. (PERMISSION_DENIED, a
            // deposed primary, is followed by the arbitration update that
            // takes the session out of the ready state.)
            if e.code == Code::Unavailable {
                s.lost = true;
            }
            if s.logged < 20 {
                let entry = report
                    .failed
                    .iter()
                    .find(|(k, _)| *k == j)
                    .and_then(|(_, u)| u.entity.as_ref())
                    .map(|e| self.describe(e))
                    .unwrap_or_else(|| "(entry not kept)".into());
                tracing::warn!(delta = ?deltas[i], entry = %entry, "the target refused an update: {e}");
                s.logged += 1;
            }
            if results[i].is_ok() {
                results[i] = Err(update_error(e));
            }
        }
    }

    fn describe(&self, e: &p4::Entity) -> String {
        let Some(Ready { names, .. }) = self.conn.as_ref().and_then(|c| c.ready.as_ref()) else {
            return format!("{e:?}");
        };
        match crate::canon::canonical(names, e) {
            Ok((k, v)) => format!("{} → {v:?}", crate::reconcile::describe(names, &k)),
            Err(_) => match crate::canon::table_key(
                names,
                match &e.entity {
                    Some(p4::entity::Entity::TableEntry(t)) => t,
                    _ => return format!("{e:?}"),
                },
            ) {
                Ok(k) => crate::reconcile::describe(names, &k),
                Err(_) => format!("{e:?}"),
            },
        }
    }

    /// Reads the target and compares it with the model; with `repair`,
    /// writes the difference. On connect with nothing programmed yet (a
    /// controller restart), what the target holds is kept for adoption
    /// instead of deleted.
    async fn reconcile(&mut self, repair: bool, check: Check) -> Result<AuditReport, BackendError> {
        let on_connect = check == Check::Connect;
        let Some(Conn {
            client,
            ready: Some(r),
            ..
        }) = &self.conn
        else {
            return Err(unavailable("the P4Runtime target is not ready"));
        };
        let (client, names, compiler) = (client.clone(), r.names.clone(), r.compiler.clone());
        if !on_connect {
            self.shared.stats.audits.fetch_add(1, Ordering::Relaxed);
        }
        let mut entities = client
            .read_all_tables()
            .await
            .map_err(|e| unavailable(format!("reading the target's entries: {e}")))?;
        for base in compiler.base_entities() {
            if let Ok((EntityKey::CloneSession(_), _)) = canonical(&names, &base) {
                match client.read(vec![crate::compile::key_only(&base)]).await {
                    Ok(found) => entities.extend(found),
                    Err(e) => tracing::debug!("the target does not read clone sessions back: {e}"),
                }
            }
        }
        let model = &self.model;
        let d: Divergence =
            tokio::task::block_in_place(|| compare(&names, &compiler, model, entities));
        // A fresh comparison replaces any adoption still pending.
        let pending = std::mem::take(&mut self.adopt);
        let restart = on_connect && self.model.is_empty();
        if restart {
            self.adopt_until = Some(Instant::now() + self.cfg.adopt_for);
        }
        // Within `adopt_for`, a periodic audit or a reconnect (a flapping
        // channel) keeps what is left of the restart's entries, as found then;
        // any other extra entry goes, and an audit asked for deletes them all.
        let window = check != Check::Asked && self.adopt_until.is_some_and(|t| Instant::now() < t);
        let mut report = AuditReport {
            missing: d.missing,
            different: d.different,
            unreadable: d.unreadable,
            examples: d.examples.clone(),
            ..Default::default()
        };
        let mut updates = d.updates;
        let (keep, delete): (Vec<_>, Vec<_>) = if restart {
            if !d.extras.is_empty() {
                tracing::info!(
                    entries = d.extras.len(),
                    "the target holds entries from before this controller started; deltas that call for them take them over"
                );
            }
            (d.extras, Vec::new())
        } else if window {
            d.extras
                .into_iter()
                .partition(|(k, v, _)| pending.get(k) == Some(v))
        } else {
            (Vec::new(), d.extras)
        };
        report.extra = delete.len();
        updates.extend(Divergence::deletes(&delete));
        self.adopt = keep.into_iter().map(|(k, v, _)| (k, v)).collect();
        if updates.is_empty() {
            return Ok(report);
        }
        if !on_connect {
            tracing::warn!(
                missing = report.missing,
                different = report.different,
                extra = report.extra,
                "the target differs from the model; examples: {}",
                report.examples.join("; ")
            );
        }
        if repair {
            let n = updates.len();
            let w = write_ordered(&client, updates, self.cfg.write).await;
            let stats = &self.shared.stats;
            stats.updates_written.fetch_add(n as u64, Ordering::Relaxed);
            stats.write_rpcs.fetch_add(w.rpcs as u64, Ordering::Relaxed);
            stats
                .updates_failed
                .fetch_add(w.failures() as u64, Ordering::Relaxed);
            report.written = n;
            report.failed = w.failures();
            for (i, u) in w.failed.iter().take(10) {
                let err = w.results[*i]
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let entry = u
                    .entity
                    .as_ref()
                    .map(|e| self.describe(e))
                    .unwrap_or_default();
                tracing::error!(entry = %entry, "the target refused a repair: {err}");
            }
        }
        Ok(report)
    }

    /// Drops the updates whose entries the target already holds as
    /// adoptable (turning an INSERT of an entry it holds differently into
    /// a MODIFY); returns how many were dropped.
    fn adopt(
        &mut self,
        planned: &mut Vec<crate::compile::Planned>,
        owners: &mut Vec<usize>,
    ) -> usize {
        let Some(Ready { names, .. }) = self.conn.as_ref().and_then(|c| c.ready.as_ref()) else {
            return 0;
        };
        let names = names.clone();
        let mut dropped = 0;
        let mut keep_p = Vec::with_capacity(planned.len());
        let mut keep_o = Vec::with_capacity(owners.len());
        for (mut p, o) in planned.drain(..).zip(owners.drain(..)) {
            let is_delete = p.update.r#type == p4::update::Type::Delete as i32;
            if let Some(Ok((k, v))) = p.update.entity.as_ref().map(|e| canonical(&names, e)) {
                if let Some(have) = self.adopt.remove(&k) {
                    if !is_delete {
                        if have == v {
                            dropped += 1;
                            continue;
                        }
                        p.update.r#type = p4::update::Type::Modify as i32;
                    }
                }
            }
            keep_p.push(p);
            keep_o.push(o);
        }
        *planned = keep_p;
        *owners = keep_o;
        dropped
    }
}

/// Why a connection could not be made ready.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Schema(SchemaError),
}

impl SetupError {
    fn is_disconnect(&self) -> bool {
        match self {
            SetupError::Client(e) => e.is_disconnect() || matches!(e, ClientError::NotPrimary(_)),
            SetupError::Schema(_) => false,
        }
    }
}
