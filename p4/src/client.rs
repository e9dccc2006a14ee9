//! The P4Runtime client: one gRPC channel to a target, the StreamChannel
//! owned by one task (arbitration, packet-in, stream errors), and the
//! unary RPCs (Capabilities, pipeline config, Write, Read).
//!
//! **Arbitration.** The client sends a `MasterArbitrationUpdate` with the
//! device id, the role (empty: the default role) and an election id, and
//! follows the target's answers (the specification's "Client Arbitration"
//! rules): status OK makes it the primary, ALREADY_EXISTS a backup (the
//! target reports the primary's election id), NOT_FOUND means there is no
//! primary (the target reports the highest election id it has seen). Under
//! [`Failover::Primary`] the client claims the primary role at once with an
//! election id above any the target reports (and, once deposed by a higher
//! id, stays a backup); under [`Failover::Backup`] it
//! stays a backup while another controller is primary and claims the role
//! only when there is none. The first election id is the wall clock in
//! microseconds (or the configured floor, if higher) and every claim adds
//! at least one, so a restarted controller's ids keep increasing.
//!
//! **Writes.** [`Client::write`] sends one batch; a batch with failed
//! updates comes back as status UNKNOWN whose details hold one
//! `p4.v1.Error` per update, decoded into one result per update.

use crate::bytes;
use p4::p4_runtime_client::P4RuntimeClient;
use p4::stream_message_request::Update as Req;
use p4::stream_message_response::Update as Resp;
use p4runtime_proto::google::rpc;
use p4runtime_proto::p4::config::v1 as cfg;
use p4runtime_proto::p4::v1 as p4;
use p4runtime_proto::prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

/// Largest message either side may send (a Read of a million routes).
const MAX_MESSAGE: usize = 1 << 30;
/// Packet-ins waiting for the application before more are dropped.
const PACKET_IN_QUEUE: usize = 4096;
/// Stream messages (arbitration, packet-outs) waiting to be sent.
const STREAM_QUEUE: usize = 4096;

/// How the client takes part in the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failover {
    /// Be the primary: claim the role with an election id above any the
    /// target reports (once: a primary deposed by a controller with a
    /// higher id stays a backup until there is no primary).
    Primary,
    /// Be a backup while another controller is primary (the first
    /// arbitration update carries no election id); claim the role when the
    /// target says there is no primary.
    Backup,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port`, a URI (`http://host:port`), or `unix:/path` for a Unix
    /// socket.
    pub addr: String,
    pub device_id: u64,
    /// The role; empty for the default role (full access).
    pub role: String,
    pub failover: Failover,
    /// The lowest election id to use (the clock gives a higher one
    /// normally).
    pub election_id_floor: u128,
    /// A fixed election id: used as it is, never raised above another
    /// controller's (`None`: the clock's, see [`initial_election_id`]).
    pub election_id: Option<u128>,
    pub connect_timeout: Duration,
    /// Deadline of every unary RPC.
    pub rpc_timeout: Duration,
}

impl ClientConfig {
    pub fn new(addr: impl Into<String>, device_id: u64) -> Self {
        Self {
            addr: addr.into(),
            device_id,
            role: String::new(),
            failover: Failover::Primary,
            election_id_floor: 1,
            election_id: None,
            connect_timeout: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(600),
        }
    }
}

/// Where the client stands in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mastership {
    /// Waiting for the target's answer.
    Pending,
    Primary {
        election_id: u128,
    },
    /// Another controller is primary (with this election id).
    Backup {
        primary: Option<u128>,
    },
    /// Nobody is primary; the highest election id the target has seen.
    NoPrimary {
        highest: Option<u128>,
    },
    /// The stream ended.
    Closed {
        reason: String,
    },
}

/// A failure of the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("`{addr}` is not a usable target address: {reason}")]
    Address { addr: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{op} failed: {code:?}: {message}")]
    Rpc {
        op: &'static str,
        code: Code,
        message: String,
    },
    #[error("not the primary controller ({0:?})")]
    NotPrimary(Mastership),
    #[error("the stream channel is closed: {0}")]
    StreamClosed(String),
    #[error("{op}: malformed answer from the target: {reason}")]
    Malformed { op: &'static str, reason: String },
    #[error("{0} timed out")]
    Timeout(&'static str),
}

impl ClientError {
    fn rpc(op: &'static str, s: &Status) -> Self {
        ClientError::Rpc {
            op,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// The gRPC code of the failure (UNAVAILABLE for connection problems).
    pub fn code(&self) -> Code {
        match self {
            ClientError::Rpc { code, .. } => *code,
            ClientError::NotPrimary(_) => Code::PermissionDenied,
            ClientError::Address { .. } => Code::InvalidArgument,
            ClientError::Malformed { .. } => Code::Internal,
            ClientError::Timeout(_) => Code::DeadlineExceeded,
            ClientError::Connect { .. } | ClientError::StreamClosed(_) => Code::Unavailable,
        }
    }

    /// Whether the connection is gone (retrying later may work).
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self.code(),
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown
        ) && !matches!(self, ClientError::Malformed { .. })
    }
}

/// The target's verdict on one update of a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct UpdateError {
    pub code: Code,
    pub message: String,
}

/// Why a Write failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Some updates failed: one result per update, in order.
    #[error("{} of {} updates failed", .0.iter().filter(|r| r.is_err()).count(), .0.len())]
    Updates(Vec<Result<(), UpdateError>>),
    /// The whole request failed.
    #[error(transparent)]
    Request(#[from] ClientError),
}

/// A forwarding pipeline to push: P4Info, the target's device config and
/// the cookie that identifies the pair.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub p4info: cfg::P4Info,
    pub device_config: Vec<u8>,
    pub cookie: u64,
}

/// 64-bit FNV-1a (stable across builds, unlike std's hasher).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl PipelineConfig {
    /// The pipeline with a cookie derived from its contents.
    pub fn new(p4info: cfg::P4Info, device_config: Vec<u8>) -> Self {
        let cookie = fnv1a(&[&p4info.encode_to_vec(), &device_config]);
        Self {
            p4info,
            device_config,
            cookie,
        }
    }
}

/// What [`Client::ensure_pipeline`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineOutcome {
    /// The target had another pipeline (or none): ours was committed.
    Pushed,
    /// The target reported our cookie: nothing was sent.
    AlreadyInstalled,
}

/// Counters of the stream task.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub packet_ins: AtomicU64,
    pub packet_ins_dropped: AtomicU64,
    pub stream_errors: AtomicU64,
}

/// A connected client. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct Client {
    cfg: Arc<ClientConfig>,
    rpc: P4RuntimeClient<Channel>,
    stream_tx: mpsc::Sender<p4::StreamMessageRequest>,
    mastership: watch::Receiver<Mastership>,
    packet_in: Arc<Mutex<Option<mpsc::Receiver<p4::PacketIn>>>>,
    stream_errors: Arc<Mutex<Option<mpsc::Receiver<p4::StreamError>>>>,
    counters: Arc<StreamCounters>,
}

fn uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

fn from_uint128(v: &p4::Uint128) -> u128 {
    (u128::from(v.high) << 64) | u128::from(v.low)
}

/// The first election id of a client started now.
pub fn initial_election_id(floor: u128) -> u128 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    now.max(floor)
}

fn arbitration(cfg: &ClientConfig, election_id: Option<u128>) -> p4::StreamMessageRequest {
    p4::StreamMessageRequest {
        update: Some(Req::Arbitration(p4::MasterArbitrationUpdate {
            device_id: cfg.device_id,
            role: (!cfg.role.is_empty()).then(|| p4::Role {
                name: cfg.role.clone(),
                ..Default::default()
            }),
            election_id: election_id.map(uint128),
            status: None,
        })),
    }
}

fn uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The task owning the stream: follows arbitration, hands packet-ins and
/// stream errors on, and ends when the stream does.
struct StreamTask {
    cfg: Arc<ClientConfig>,
    election_id: u128,
    /// Whether this stream has been the primary (a primary that another
    /// controller deposed with a higher id stays a backup).
    was_primary: bool,
    tx: mpsc::Sender<p4::StreamMessageRequest>,
    state: watch::Sender<Mastership>,
    packet_in: mpsc::Sender<p4::PacketIn>,
    errors: mpsc::Sender<p4::StreamError>,
    counters: Arc<StreamCounters>,
}

impl StreamTask {
    async fn run(mut self, mut inbound: Streaming<p4::StreamMessageResponse>) {
        let reason = loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = self.state.closed() => break "the client was dropped".to_string(),
            };
            match msg {
                Ok(Some(m)) => self.handle(m).await,
                Ok(None) => break "the target ended the stream".to_string(),
                Err(s) => break format!("{:?}: {}", s.code(), s.message()),
            }
        };
        tracing::info!(addr = %self.cfg.addr, "P4Runtime stream closed: {reason}");
        let _ = self.state.send(Mastership::Closed { reason });
    }

    async fn claim(&mut self, above: u128) {
        // Above the reported id, offset by our own id's low bits so that
        // two backups claiming at once rarely pick the same id.
        // A fixed election id is claimed as it is.
        if self.election_id <= above && self.cfg.election_id.is_none() {
            self.election_id = above
                .saturating_add(1)
                .saturating_add(self.election_id & 0xffff);
        }
        tracing::info!(election_id = self.election_id, "claiming the primary role");
        let _ = self.state.send(Mastership::Pending);
        let _ = self
            .tx
            .send(arbitration(&self.cfg, Some(self.election_id)))
            .await;
    }

    async fn handle(&mut self, m: p4::StreamMessageResponse) {
        match m.update {
            Some(Resp::Arbitration(a)) => {
                let reported = a.election_id.as_ref().map(from_uint128);
                let code = a.status.as_ref().map_or(Code::Ok as i32, |s| s.code);
                match Code::from(code) {
                    Code::Ok => {
                        self.was_primary = true;
                        tracing::info!(election_id = self.election_id, "primary controller");
                        let _ = self.state.send(Mastership::Primary {
                            election_id: self.election_id,
                        });
                    }
                    Code::AlreadyExists => {
                        let _ = self.state.send(Mastership::Backup { primary: reported });
                        // A fixed election id is not raised above another
                        // controller's: it stays a backup.
                        if self.cfg.failover == Failover::Primary
                            && !self.was_primary
                            && self.cfg.election_id.is_none()
                        {
                            self.claim(reported.unwrap_or(self.election_id)).await;
                        } else {
                            tracing::info!(primary = ?reported, "backup controller");
                        }
                    }
                    Code::NotFound => {
                        let _ = self.state.send(Mastership::NoPrimary { highest: reported });
                        let above = reported.unwrap_or(self.election_id);
                        if self.cfg.election_id.is_some() && self.election_id < above {
                            // The target wants at least the highest id it
                            // has seen; a fixed id below it cannot win.
                            tracing::warn!(
                                election_id = self.election_id,
                                highest = above,
                                "no primary, but the fixed election id is below the highest the target has seen: not claiming"
                            );
                        } else {
                            self.claim(above).await;
                        }
                    }
                    other => tracing::warn!(
                        "arbitration answered {other:?}: {}",
                        a.status.map(|s| s.message).unwrap_or_default()
                    ),
                }
            }
            Some(Resp::Packet(p)) => {
                self.counters.packet_ins.fetch_add(1, Ordering::Relaxed);
                if self.packet_in.try_send(p).is_err() {
                    self.counters
                        .packet_ins_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Resp::Error(e)) => {
                self.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    code = ?Code::from(e.canonical_code),
                    "the target refused a stream message: {}",
                    e.message
                );
                let _ = self.errors.try_send(e);
            }
            Some(Resp::Digest(_)) | Some(Resp::IdleTimeoutNotification(_)) => {
                tracing::debug!("ignoring a digest or idle-timeout notification");
            }
            Some(Resp::Other(a)) => {
                tracing::debug!(type_url = %a.type_url, "ignoring a stream message")
            }
            None => tracing::debug!("empty stream message"),
        }
    }
}

impl Client {
    /// Connects, opens the stream and sends the first arbitration update;
    /// returns once the target has answered it.
    pub async fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        let cfg = Arc::new(cfg);
        let unix = cfg.addr.strip_prefix("unix:").map(str::to_string);
        // A Unix socket's endpoint URI is not used, but must parse.
        let target = match &unix {
            Some(_) => "http://localhost".to_string(),
            None => uri(&cfg.addr),
        };
        let endpoint = Endpoint::from_shared(target).map_err(|e| ClientError::Address {
            addr: cfg.addr.clone(),
            reason: e.to_string(),
        })?;
        let endpoint = endpoint
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_adaptive_window(true);
        let connected = match unix {
            Some(path) => {
                endpoint
                    .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                        let path = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
            }
            None => endpoint.connect().await,
        };
        let channel = connected.map_err(|e| ClientError::Connect {
            addr: cfg.addr.clone(),
            reason: format!(
                "{e}: {}",
                std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
            ),
        })?;
        let mut rpc = P4RuntimeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let election_id = cfg
            .election_id
            .unwrap_or_else(|| initial_election_id(cfg.election_id_floor));
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        // A backup announces itself without an election id (so it cannot
        // depose anyone) and claims one only when there is no primary.
        let first = (cfg.failover == Failover::Primary).then_some(election_id);
        tx.send(arbitration(&cfg, first))
            .await
            .map_err(|_| ClientError::StreamClosed("the stream queue closed".into()))?;
        let inbound = tokio::time::timeout(
            cfg.connect_timeout,
            rpc.stream_channel(ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| ClientError::Timeout("StreamChannel"))?
        .map_err(|s| ClientError::rpc("StreamChannel", &s))?
        .into_inner();
        let (state_tx, state_rx) = watch::channel(Mastership::Pending);
        let (pin_tx, pin_rx) = mpsc::channel(PACKET_IN_QUEUE);
        let (err_tx, err_rx) = mpsc::channel(64);
        let counters = Arc::new(StreamCounters::default());
        tokio::spawn(
            StreamTask {
                cfg: cfg.clone(),
                election_id,
                was_primary: false,
                tx: tx.clone(),
                state: state_tx,
                packet_in: pin_tx,
                errors: err_tx,
                counters: counters.clone(),
            }
            .run(inbound),
        );
        let client = Client {
            cfg,
            rpc,
            stream_tx: tx,
            mastership: state_rx,
            packet_in: Arc::new(Mutex::new(Some(pin_rx))),
            stream_errors: Arc::new(Mutex::new(Some(err_rx))),
            counters,
        };
        let timeout = client.cfg.connect_timeout;
        let m = client
            .wait_for(timeout, |m| !matches!(m, Mastership::Pending))
            .await?;
        if let Mastership::Closed { reason } = m {
            return Err(ClientError::StreamClosed(reason));
        }
        Ok(client)
    }

    /// Connects, retrying with exponential backoff (from `initial` up to
    /// `max` between attempts) until it works or `give_up` says stop.
    pub async fn connect_with_backoff(
        cfg: ClientConfig,
        initial: Duration,
        max: Duration,
        mut give_up: impl FnMut(u32, &ClientError) -> bool,
    ) -> Result<Client, ClientError> {
        let mut delay = initial;
        let mut attempt = 0u32;
        loop {
            match Client::connect(cfg.clone()).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    attempt += 1;
                    if give_up(attempt, &e) {
                        return Err(e);
                    }
                    tracing::debug!(
                        attempt,
                        "connecting to {} failed: {e}; retrying in {delay:?}",
                        cfg.addr
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max);
                }
            }
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The client's current place in the election.
    pub fn mastership(&self) -> Mastership {
        self.mastership.borrow().clone()
    }

    /// A receiver of mastership changes.
    pub fn watch_mastership(&self) -> watch::Receiver<Mastership> {
        self.mastership.clone()
    }

    /// Waits until the mastership satisfies `f` (or the stream closes).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        f: impl Fn(&Mastership) -> bool,
    ) -> Result<Mastership, ClientError> {
        let mut rx = self.mastership.clone();
        let r = tokio::time::timeout(timeout, async {
            loop {
                let m = rx.borrow_and_update().clone();
                if f(&m) || matches!(m, Mastership::Closed { .. }) {
                    return m;
                }
                if rx.changed().await.is_err() {
                    return Mastership::Closed {
                        reason: "the stream task ended".into(),
                    };
                }
            }
        })
        .await;
        r.map_err(|_| ClientError::Timeout("arbitration"))
    }

    /// The primary's election id, if this client is the primary.
    fn primary_id(&self) -> Result<u128, ClientError> {
        match &*self.mastership.borrow() {
            Mastership::Primary { election_id } => Ok(*election_id),
            other => Err(ClientError::NotPrimary(other.clone())),
        }
    }

    /// Packet-ins (once: the first caller takes the receiver).
    pub fn take_packet_ins(&self) -> Option<mpsc::Receiver<p4::PacketIn>> {
        self.packet_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Stream errors the target reported (once, like packet-ins).
    pub fn take_stream_errors(&self) -> Option<mpsc::Receiver<p4::StreamError>> {
        self.stream_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// Queues a packet-out without waiting (the queue holds a few
    /// thousand).
    pub fn try_packet_out(&self, p: p4::PacketOut) -> Result<(), ClientError> {
        self.stream_tx
            .try_send(p4::StreamMessageRequest {
                update: Some(Req::Packet(p)),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ClientError::Rpc {
                    op: "PacketOut",
                    code: Code::ResourceExhausted,
                    message: "the stream's send queue is full".into(),
                },
                mpsc::error::TrySendError::Closed(_) => {
                    ClientError::StreamClosed("packet-out on a closed stream".into())
                }
            })
    }

    /// Sends a packet-out, waiting for room in the queue.
    pub async fn packet_out(&self, p: p4::PacketOut) -> Result<(), ClientError> {
        self.stream_tx
            .send(p4::StreamMessageRequest {
                update: Some(Req::Packet(p)),
            })
            .await
            .map_err(|_| ClientError::StreamClosed("packet-out on a closed stream".into()))
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.cfg.rpc_timeout);
        r
    }

    /// The P4Runtime version the target implements.
    pub async fn capabilities(&self) -> Result<String, ClientError> {
        let r = self
            .rpc
            .clone()
            .capabilities(self.request(p4::CapabilitiesRequest {
                device_id: self.cfg.device_id,
            }))
            .await
            .map_err(|s| ClientError::rpc("Capabilities", &s))?;
        Ok(r.into_inner().p4runtime_api_version)
    }

    /// The target's pipeline config, with what `response_type` asks for
    /// (`None`: the target has no pipeline).
    pub async fn get_pipeline(
        &self,
        response_type: p4::get_forwarding_pipeline_config_request::ResponseType,
    ) -> Result<Option<p4::ForwardingPipelineConfig>, ClientError> {
        let r = self
            .rpc
            .clone()
            .get_forwarding_pipeline_config(self.request(p4::GetForwardingPipelineConfigRequest {
                device_id: self.cfg.device_id,
                response_type: response_type as i32,
            }))
            .await;
        match r {
            Ok(r) => Ok(r.into_inner().config),
            // Some targets answer FAILED_PRECONDITION / NOT_FOUND before a
            // pipeline is set.
            Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => Ok(None),
            Err(s) => Err(ClientError::rpc("GetForwardingPipelineConfig", &s)),
        }
    }

    /// The cookie of the target's pipeline.
    pub async fn pipeline_cookie(&self) -> Result<Option<u64>, ClientError> {
        use p4::get_forwarding_pipeline_config_request::ResponseType;
        Ok(self
            .get_pipeline(ResponseType::CookieOnly)
            .await?
            .and_then(|c| c.cookie)
            .map(|c| c.cookie))
    }

    /// The P4Info of the target's pipeline.
    pub async fn target_p4info(&self) -> Result<Option<cfg::P4Info>, ClientError> {
        use p4::get_forwarding_pipeline_config_request::ResponseType;
        Ok(self
            .get_pipeline(ResponseType::P4infoAndCookie)
            .await?
            .and_then(|c| c.p4info))
    }

    /// Sends `config` with `action`.
    pub async fn set_pipeline(
        &self,
        config: &PipelineConfig,
        action: p4::set_forwarding_pipeline_config_request::Action,
    ) -> Result<(), ClientError> {
        let election_id = self.primary_id()?;
        self.rpc
            .clone()
            .set_forwarding_pipeline_config(self.request(p4::SetForwardingPipelineConfigRequest {
                device_id: self.cfg.device_id,
                role: self.cfg.role.clone(),
                election_id: Some(uint128(election_id)),
                action: action as i32,
                config: Some(p4::ForwardingPipelineConfig {
                    p4info: Some(config.p4info.clone()),
                    p4_device_config: config.device_config.clone(),
                    cookie: Some(p4::forwarding_pipeline_config::Cookie {
                        cookie: config.cookie,
                    }),
                }),
                ..Default::default()
            }))
            .await
            .map_err(|s| ClientError::rpc("SetForwardingPipelineConfig", &s))?;
        Ok(())
    }

    /// Commits `config` (VERIFY_AND_COMMIT) unless the target already
    /// reports its cookie.
    pub async fn ensure_pipeline(
        &self,
        config: &PipelineConfig,
    ) -> Result<PipelineOutcome, ClientError> {
        use p4::set_forwarding_pipeline_config_request::Action;
        if self.pipeline_cookie().await? == Some(config.cookie) {
            return Ok(PipelineOutcome::AlreadyInstalled);
        }
        self.set_pipeline(config, Action::VerifyAndCommit).await?;
        Ok(PipelineOutcome::Pushed)
    }

    /// Writes one batch (CONTINUE_ON_ERROR).
    pub async fn write(&self, updates: Vec<p4::Update>) -> Result<(), WriteError> {
        self.write_with(updates, p4::write_request::Atomicity::ContinueOnError)
            .await
    }

    /// Writes one batch with the given atomicity.
    pub async fn write_with(
        &self,
        updates: Vec<p4::Update>,
        atomicity: p4::write_request::Atomicity,
    ) -> Result<(), WriteError> {
        let election_id = self.primary_id()?;
        let n = updates.len();
        if n == 0 {
            return Ok(());
        }
        let r = self
            .rpc
            .clone()
            .write(self.request(p4::WriteRequest {
                device_id: self.cfg.device_id,
                role: self.cfg.role.clone(),
                election_id: Some(uint128(election_id)),
                updates,
                atomicity: atomicity as i32,
                ..Default::default()
            }))
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(s) => Err(decode_write_status(&s, n)),
        }
    }

    /// Reads the entities `filters` select (wildcards as the specification
    /// defines them: `table_id` 0 is every table, a table entry without a
    /// match every entry of its table).
    pub async fn read(&self, filters: Vec<p4::Entity>) -> Result<Vec<p4::Entity>, ClientError> {
        let mut s = self
            .rpc
            .clone()
            .read(self.request(p4::ReadRequest {
                device_id: self.cfg.device_id,
                role: self.cfg.role.clone(),
                entities: filters,
            }))
            .await
            .map_err(|s| ClientError::rpc("Read", &s))?
            .into_inner();
        let mut out = Vec::new();
        loop {
            match s.message().await {
                Ok(Some(r)) => out.extend(r.entities),
                Ok(None) => return Ok(out),
                Err(st) => return Err(ClientError::rpc("Read", &st)),
            }
        }
    }

    /// Every table entry of the target.
    pub async fn read_all_tables(&self) -> Result<Vec<p4::Entity>, ClientError> {
        self.read(vec![p4::Entity {
            entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry::default())),
        }])
        .await
    }
}

/// One result per update from a failed Write's status: the details of a
/// batch failure (UNKNOWN) are a `google.rpc.Status` with one `p4.v1.Error`
/// per update; anything else failed the whole request.
pub fn decode_write_status(s: &Status, n: usize) -> WriteError {
    if s.code() != Code::Unknown || s.details().is_empty() {
        return WriteError::Request(ClientError::rpc("Write", s));
    }
    let malformed = |reason: String| {
        WriteError::Request(ClientError::Malformed {
            op: "Write",
            reason,
        })
    };
    let st = match rpc::Status::decode(s.details()) {
        Ok(st) => st,
        Err(e) => {
            return malformed(format!(
                "the status details are not a google.rpc.Status: {e}"
            ))
        }
    };
    if st.details.len() != n {
        return malformed(format!(
            "{} error details for {n} updates (status: {})",
            st.details.len(),
            s.message()
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (i, any) in st.details.iter().enumerate() {
        let e: p4::Error = match any.to_msg() {
            Ok(e) => e,
            Err(err) => {
                return malformed(format!(
                    "detail {i} is not a p4.v1.Error ({}): {err}",
                    any.type_url
                ))
            }
        };
        out.push(if e.canonical_code == Code::Ok as i32 {
            Ok(())
        } else {
            Err(UpdateError {
                code: Code::from(e.canonical_code),
                message: e.message,
            })
        });
    }
    WriteError::Updates(out)
}

/// A controller header field's value from a packet's metadata.
pub fn metadata_value(
    meta: &[p4::PacketMetadata],
    id: u32,
    bits: u32,
    what: &str,
) -> Result<Option<u128>, bytes::BytesError> {
    meta.iter()
        .find(|m| m.metadata_id == id)
        .map(|m| bytes::decode(&m.value, bits, &what))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p4runtime_proto::prost_types::Any;

    fn batch_status(errors: &[(Code, &str)]) -> Status {
        let details = errors
            .iter()
            .map(|(c, m)| {
                Any::from_msg(&p4::Error {
                    canonical_code: *c as i32,
                    message: m.to_string(),
                    ..Default::default()
                })
                .unwrap()
            })
            .collect();
        let st = rpc::Status {
            code: Code::Unknown as i32,
            message: "batch".into(),
            details,
        };
        Status::with_details(Code::Unknown, "batch", st.encode_to_vec().into())
    }

    #[test]
    fn per_update_errors_are_decoded_in_order() {
        let s = batch_status(&[
            (Code::Ok, ""),
            (Code::NotFound, "no such entry"),
            (Code::Ok, ""),
        ]);
        match decode_write_status(&s, 3) {
            WriteError::Updates(r) => {
                assert_eq!(r[0], Ok(()));
                assert_eq!(
                    r[1],
                    Err(UpdateError {
                        code: Code::NotFound,
                        message: "no such entry".into()
                    })
                );
                assert_eq!(r[2], Ok(()));
            }
            other => panic!("{other:?}"),
        }
        // The wrong number of details is malformed, not silently shifted.
        assert!(matches!(
            decode_write_status(&s, 4),
            WriteError::Request(ClientError::Malformed { .. })
        ));
        // Garbage details.
        let bad = Status::with_details(Code::Unknown, "x", vec![0xff, 0xff].into());
        assert!(matches!(
            decode_write_status(&bad, 1),
            WriteError::Request(ClientError::Malformed { .. })
        ));
        // A request-level failure.
        let denied = Status::permission_denied("not primary");
        assert!(matches!(
            decode_write_status(&denied, 1),
            WriteError::Request(ClientError::Rpc {
                code: Code::PermissionDenied,
                ..
            })
        ));
    }

    #[test]
    fn cookies_follow_the_contents() {
        let a = PipelineConfig::new(cfg::P4Info::default(), b"x".to_vec());
        let b = PipelineConfig::new(cfg::P4Info::default(), b"x".to_vec());
        let c = PipelineConfig::new(cfg::P4Info::default(), b"y".to_vec());
        assert_eq!(a.cookie, b.cookie);
        assert_ne!(a.cookie, c.cookie);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn election_ids_grow_with_the_clock() {
        let a = initial_election_id(1);
        std::thread::sleep(Duration::from_millis(2));
        let b = initial_election_id(1);
        assert!(b > a);
        assert_eq!(initial_election_id(u128::MAX), u128::MAX);
    }
}
