//! The tonic `P4Runtime` service of the x86 target.
//!
//! One lock ([`Core`]) serializes what changes the target: pipeline,
//! entries, backend and arbitration; the RPCs that take it run on tokio's
//! blocking pool, since a large batch compiles the engine's tables. Packet
//! I/O has its own small lock ([`IoState`]), so punts and packet-outs never
//! wait for a write.

use super::arbitration::{Arbiter, StreamId};
use super::contract::Pipeline;
use super::error::{batch_status, RpcError};
use super::packet::{
    decode_packet_out, lock, IoState, PacketInRelay, StreamHandle, StreamItem, PACKET_IN_QUEUE,
};
use super::state::{backend_error, State};
use crate::X86Backend;
use nos_core::backend::PacketSender;
use nos_core::{Backend, BackendError, Delta, ForwardingState, Object, Port, PortId, Vrf, VrfId};
use p4::p4_runtime_server::{P4Runtime, P4RuntimeServer};
use p4::stream_message_request::Update as Req;
use p4::stream_message_response::Update as Resp;
use p4runtime_proto::p4::v1 as p4;
use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Most entities in one `ReadResponse`.
const READ_CHUNK: usize = 1024;

/// A data port of the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The P4 port number (bmv2's 9-bit numbering: 1..=510 except 255,
    /// the CPU port).
    pub id: u32,
    /// The Linux interface carrying the port's packets.
    pub ifname: String,
    pub mtu: u32,
}

/// How the target is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The device id controllers must address.
    pub device_id: u64,
    pub ports: Vec<PortConfig>,
}

/// Why the target could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("port {id}: {reason}")]
    BadPort { id: u32, reason: String },
    #[error("the dataplane refused port {id} ({ifname}): {error}")]
    Backend {
        id: u32,
        ifname: String,
        error: BackendError,
    },
    #[error("the dataplane refused the default VRF: {0}")]
    DefaultVrf(BackendError),
}

/// Everything a change to the target touches.
struct Core<B> {
    backend: B,
    /// The committed pipeline.
    pipeline: Option<Arc<Pipeline>>,
    /// A pipeline saved by VERIFY_AND_SAVE, waiting for COMMIT.
    saved: Option<Arc<Pipeline>>,
    state: State,
    arbiter: Arbiter,
}

impl<B> Core<B> {
    /// The pipeline requests are decoded with: a saved one takes over once
    /// a pipeline has been committed (the specification asks that requests
    /// after VERIFY_AND_SAVE use the new config).
    fn current(&self) -> Result<Arc<Pipeline>, RpcError> {
        match (&self.pipeline, &self.saved) {
            (Some(_), Some(s)) => Ok(s.clone()),
            (Some(p), None) => Ok(p.clone()),
            (None, _) => Err(RpcError::failed_precondition(
                "no forwarding pipeline is set (SetForwardingPipelineConfig first)",
            )),
        }
    }
}

struct Inner<B> {
    device_id: u64,
    core: Mutex<Core<B>>,
    io: Arc<Mutex<IoState>>,
    next_stream: AtomicU64,
}

/// The x86 dataplane as a P4Runtime target: serve it with
/// [`Server::into_service`].
pub struct Server<B: Backend + 'static = X86Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend + 'static> Clone for Server<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B: Backend + 'static> std::fmt::Debug for Server<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("device_id", &self.inner.device_id)
            .finish()
    }
}

fn check_ports(ports: &[PortConfig]) -> Result<(), StartError> {
    let mut seen = BTreeSet::new();
    for p in ports {
        let bad = |reason: &str| StartError::BadPort {
            id: p.id,
            reason: reason.into(),
        };
        if p.id == 0 || p.id > 510 || p.id == 255 {
            return Err(bad(
                "data ports are 1..=510 except 255 (the CPU port of the program)",
            ));
        }
        if !seen.insert(p.id) {
            return Err(bad("given twice"));
        }
        if p.ifname.is_empty() {
            return Err(bad("no interface name"));
        }
        if ports.iter().filter(|q| q.ifname == p.ifname).count() > 1 {
            return Err(bad(&format!("interface {} is used twice", p.ifname)));
        }
        if p.mtu < 68 {
            return Err(bad(&format!("MTU {} is below 68", p.mtu)));
        }
    }
    Ok(())
}

impl<B: Backend + 'static> Server<B> {
    /// A target for `backend` with `options.ports` created in it (for an
    /// [`X86Backend`] with packet I/O, this binds them to their
    /// interfaces). Punted packets reach controllers through `relay`, whose
    /// sink the backend must have been given.
    pub fn new(options: Options, mut backend: B, relay: PacketInRelay) -> Result<Self, StartError> {
        check_ports(&options.ports)?;
        let mut base = Vec::new();
        base.push(Delta::Create(Object::Vrf(Vrf {
            id: VrfId::DEFAULT,
            name: "default".into(),
        })));
        for p in &options.ports {
            base.push(Delta::Create(Object::Port(Port {
                id: PortId(p.id),
                name: p.ifname.clone(),
                mtu: p.mtu,
                admin_up: true,
            })));
        }
        let results = backend.apply(&base);
        for (d, r) in base.iter().zip(&results) {
            match (d, r) {
                (_, Ok(())) => {}
                (Delta::Create(Object::Port(p)), Err(e)) => {
                    return Err(StartError::Backend {
                        id: p.id.0,
                        ifname: p.name.clone(),
                        error: e.clone(),
                    })
                }
                (_, Err(e)) => return Err(StartError::DefaultVrf(e.clone())),
            }
        }
        let mut model = ForwardingState::new();
        for d in &base {
            if let Err(e) = model.apply(d) {
                tracing::error!("the target's own model refuses {d:?}: {e}");
            }
        }
        {
            let mut io = lock(&relay.io);
            io.ports = options.ports.iter().map(|p| p.id).collect();
            io.sender = backend.packet_sender();
        }
        Ok(Self {
            inner: Arc::new(Inner {
                device_id: options.device_id,
                core: Mutex::new(Core {
                    backend,
                    pipeline: None,
                    saved: None,
                    state: State::new(model),
                    arbiter: Arbiter::new(options.device_id),
                }),
                io: relay.io,
                next_stream: AtomicU64::new(1),
            }),
        })
    }

    /// The tonic service.
    pub fn into_service(self) -> P4RuntimeServer<Self> {
        P4RuntimeServer::new(self)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20)
    }

    pub fn device_id(&self) -> u64 {
        self.inner.device_id
    }

    /// Runs `f` on the backend (for tests and diagnostics); waits for any
    /// request in progress.
    pub fn with_backend<R>(&self, f: impl FnOnce(&mut B) -> R) -> R {
        f(&mut self.inner.lock_core().backend)
    }

    /// The forwarding model the installed entries translate to.
    pub fn model(&self) -> ForwardingState {
        self.inner.lock_core().state.model().clone()
    }

    /// Sends packet-outs through `sender` instead of the backend's own.
    pub fn set_packet_sender(&self, sender: PacketSender) {
        lock(&self.inner.io).sender = Some(sender);
    }

    /// Ends every controller stream with UNAVAILABLE (for shutdown).
    pub fn close_streams(&self) {
        let handles: Vec<StreamHandle> = lock(&self.inner.io)
            .controllers
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            let _ = h
                .ctl
                .send(Err(Status::unavailable("the target is shutting down")));
        }
    }
}

impl<B: Backend + 'static> Inner<B> {
    fn lock_core(&self) -> MutexGuard<'_, Core<B>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_device(&self, id: u64) -> Result<(), RpcError> {
        if id == self.device_id {
            Ok(())
        } else {
            Err(RpcError::not_found(format!(
                "device id {id} does not match this target's ({})",
                self.device_id
            )))
        }
    }

    /// Tells the packet path about the primary and the pipeline's headers.
    fn publish_io(&self, core: &Core<B>) {
        let mut io = lock(&self.io);
        io.primaries = core.arbiter.primaries();
        let p = core.current().ok();
        io.packet_in = p.as_ref().map(|p| p.packet_in.clone());
        io.packet_out = p.as_ref().map(|p| p.packet_out.clone());
    }

    fn send_notes(&self, notes: Vec<(StreamId, p4::MasterArbitrationUpdate)>) {
        let io = lock(&self.io);
        for (s, u) in notes {
            if let Some(h) = io.controllers.get(&s) {
                let _ = h.ctl.send(Ok(p4::StreamMessageResponse {
                    update: Some(Resp::Arbitration(u)),
                }));
            }
        }
    }

    #[allow(deprecated)] // role_id: deprecated; non-zero means a role this target lacks
    fn write(&self, req: p4::WriteRequest) -> Result<(), Status> {
        use p4::write_request::Atomicity;
        self.check_device(req.device_id)?;
        let mut core = self.lock_core();
        core.arbiter
            .check_primary(&req.role, req.role_id, req.election_id.as_ref())?;
        let pipe = core.current()?;
        // One backend apply publishes one set of tables, so a batch that
        // is all-or-none at this level is also atomic for packets.
        let all_or_none = match Atomicity::try_from(req.atomicity) {
            Ok(Atomicity::ContinueOnError) => false,
            Ok(Atomicity::RollbackOnError) | Ok(Atomicity::DataplaneAtomic) => true,
            Err(_) => {
                return Err(
                    RpcError::invalid(format!("unknown atomicity {}", req.atomicity)).into(),
                )
            }
        };
        let core = &mut *core;
        let results = core
            .state
            .write(&pipe, &mut core.backend, &req.updates, all_or_none);
        if results.iter().all(|r| r.is_ok()) {
            Ok(())
        } else {
            for (i, r) in results.iter().enumerate() {
                if let Err(e) = r {
                    tracing::debug!(update = i, "write refused: {e}");
                }
            }
            Err(batch_status(&results, "update"))
        }
    }

    fn read(&self, req: p4::ReadRequest) -> Result<Vec<StreamItemRead>, Status> {
        self.check_device(req.device_id)?;
        let core = self.lock_core();
        let pipe = core.current()?;
        let mut entities = Vec::new();
        let mut results = Vec::with_capacity(req.entities.len());
        for e in &req.entities {
            match core.state.read(&pipe, e) {
                Ok(found) => {
                    entities.extend(found);
                    results.push(Ok(()));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        drop(core);
        let mut out: Vec<StreamItemRead> = Vec::new();
        let mut rest = entities.into_iter().peekable();
        while rest.peek().is_some() {
            out.push(Ok(p4::ReadResponse {
                entities: rest.by_ref().take(READ_CHUNK).collect(),
            }));
        }
        if results.iter().any(|r| r.is_err()) {
            out.push(Err(batch_status(&results, "read request")));
        }
        Ok(out)
    }

    #[allow(deprecated)] // role_id: deprecated; non-zero means a role this target lacks
    fn set_pipeline(&self, req: p4::SetForwardingPipelineConfigRequest) -> Result<(), Status> {
        use p4::set_forwarding_pipeline_config_request::Action;
        self.check_device(req.device_id)?;
        let mut core = self.lock_core();
        core.arbiter
            .check_primary(&req.role, req.role_id, req.election_id.as_ref())?;
        let verified = |config: Option<p4::ForwardingPipelineConfig>| {
            config
                .ok_or_else(|| {
                    RpcError::invalid("the request carries no forwarding pipeline config")
                })
                .and_then(Pipeline::resolve)
                .map(Arc::new)
        };
        match Action::try_from(req.action) {
            Ok(Action::Verify) => {
                verified(req.config)?;
            }
            Ok(Action::VerifyAndSave) => {
                core.saved = Some(verified(req.config)?);
            }
            Ok(Action::VerifyAndCommit) => {
                let p = verified(req.config)?;
                let core = &mut *core;
                core.state.clear(&mut core.backend);
                core.pipeline = Some(p);
                core.saved = None;
                tracing::info!(cookie = ?core.pipeline.as_ref().and_then(|p| p.cookie()), "pipeline committed; forwarding state cleared");
            }
            Ok(Action::Commit) => {
                if req.config.is_some() {
                    return Err(RpcError::invalid(
                        "COMMIT takes no config: it commits the one saved before",
                    )
                    .into());
                }
                let Some(p) = core.saved.take() else {
                    return Err(RpcError::not_found(
                        "there is no saved config to commit (VERIFY_AND_SAVE first)",
                    )
                    .into());
                };
                core.pipeline = Some(p);
                tracing::info!("saved pipeline committed");
            }
            Ok(Action::ReconcileAndCommit) => {
                // Entries are kept by name, so any P4Info that satisfies the
                // contract keeps the forwarding state as it is.
                let p = verified(req.config)?;
                core.pipeline = Some(p);
                core.saved = None;
                tracing::info!("pipeline reconciled; forwarding state kept");
            }
            _ => {
                return Err(
                    RpcError::invalid(format!("unknown pipeline action {}", req.action)).into(),
                )
            }
        }
        self.publish_io(&core);
        Ok(())
    }

    fn get_pipeline(
        &self,
        req: p4::GetForwardingPipelineConfigRequest,
    ) -> Result<p4::GetForwardingPipelineConfigResponse, Status> {
        use p4::get_forwarding_pipeline_config_request::ResponseType as R;
        self.check_device(req.device_id)?;
        let core = self.lock_core();
        let Some(p) = &core.pipeline else {
            return Ok(p4::GetForwardingPipelineConfigResponse { config: None });
        };
        let c = &p.config;
        let config = match R::try_from(req.response_type) {
            Ok(R::All) => c.clone(),
            Ok(R::CookieOnly) => p4::ForwardingPipelineConfig {
                cookie: c.cookie,
                ..Default::default()
            },
            Ok(R::P4infoAndCookie) => p4::ForwardingPipelineConfig {
                p4info: c.p4info.clone(),
                cookie: c.cookie,
                ..Default::default()
            },
            Ok(R::DeviceConfigAndCookie) => p4::ForwardingPipelineConfig {
                p4_device_config: c.p4_device_config.clone(),
                cookie: c.cookie,
                ..Default::default()
            },
            Err(_) => {
                return Err(RpcError::invalid(format!(
                    "unknown response type {}",
                    req.response_type
                ))
                .into())
            }
        };
        Ok(p4::GetForwardingPipelineConfigResponse {
            config: Some(config),
        })
    }

    fn arbitrate(
        &self,
        stream: StreamId,
        u: &p4::MasterArbitrationUpdate,
        handle: &StreamHandle,
    ) -> Result<(), RpcError> {
        let mut core = self.lock_core();
        let notes = core.arbiter.update(stream, u)?;
        lock(&self.io).controllers.insert(stream, handle.clone());
        self.publish_io(&core);
        drop(core);
        self.send_notes(notes);
        Ok(())
    }

    fn leave(&self, stream: StreamId) {
        let mut core = self.lock_core();
        let notes = core.arbiter.remove(stream);
        lock(&self.io).controllers.remove(&stream);
        self.publish_io(&core);
        drop(core);
        self.send_notes(notes);
    }

    fn packet_out(&self, stream: StreamId, po: &p4::PacketOut) -> Result<(), RpcError> {
        let io = lock(&self.io);
        if !io.primaries.contains(&stream) {
            return Err(RpcError::permission_denied(
                "only the primary controller may send packets",
            ));
        }
        let Some(fields) = &io.packet_out else {
            return Err(RpcError::failed_precondition(
                "no forwarding pipeline is set",
            ));
        };
        let out = decode_packet_out(fields, &io.ports, po)?;
        let Some(sender) = io.sender.clone() else {
            return Err(RpcError::new(
                tonic::Code::Unavailable,
                "this target has no packet I/O",
            ));
        };
        drop(io);
        sender(out).map_err(|e| backend_error(&e))
    }
}

type StreamItemRead = Result<p4::ReadResponse, Status>;

/// The messages of one controller's stream: arbitration updates and errors
/// first, packet-ins after; the stream ends when its control channel does.
pub struct ResponseStream {
    ctl: mpsc::UnboundedReceiver<StreamItem>,
    pkt: mpsc::Receiver<StreamItem>,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream").finish_non_exhaustive()
    }
}

impl Stream for ResponseStream {
    type Item = StreamItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        match self.ctl.poll_recv(cx) {
            Poll::Ready(item) => return Poll::Ready(item),
            Poll::Pending => {}
        }
        match self.pkt.poll_recv(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            _ => Poll::Pending,
        }
    }
}

fn stream_error(e: &RpcError, details: Option<p4::stream_error::Details>) -> StreamItem {
    Ok(p4::StreamMessageResponse {
        update: Some(Resp::Error(e.to_stream_error(details))),
    })
}

/// The HTTP/2 transport the target is served on: windows sized for
/// Write batches of thousands of updates (a 10,000-route batch is about
/// 1 MB, which the default 64 KiB stream window would move in sixteen
/// round trips), no Nagle delay on the small responses.
pub fn transport() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("the request's task failed: {e}")))?
}

/// Serves one controller's stream until it ends.
async fn run_stream<B: Backend + 'static>(
    inner: Arc<Inner<B>>,
    stream: StreamId,
    mut inbound: Streaming<p4::StreamMessageRequest>,
    handle: StreamHandle,
) {
    let mut live = false;
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = handle.ctl.closed() => break,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(stream, "controller stream failed: {e}");
                break;
            }
        };
        match msg.update {
            Some(Req::Arbitration(u)) => {
                let (i, h) = (inner.clone(), handle.clone());
                let r = tokio::task::spawn_blocking(move || i.arbitrate(stream, &u, &h)).await;
                match r {
                    Ok(Ok(())) => live = true,
                    Ok(Err(e)) => {
                        tracing::info!(stream, "arbitration refused: {e}");
                        let _ = handle.ctl.send(Err(e.into()));
                        break;
                    }
                    Err(e) => {
                        let _ = handle
                            .ctl
                            .send(Err(Status::internal(format!("arbitration failed: {e}"))));
                        break;
                    }
                }
            }
            Some(Req::Packet(p)) => {
                if let Err(e) = inner.packet_out(stream, &p) {
                    tracing::debug!(stream, "packet-out refused: {e}");
                    let details = p4::stream_error::Details::PacketOut(p4::PacketOutError {
                        packet_out: Some(p),
                    });
                    let _ = handle.ctl.send(stream_error(&e, Some(details)));
                }
            }
            Some(Req::DigestAck(a)) => {
                let e = RpcError::invalid(format!("the P4Info has no digest {}", a.digest_id));
                let details = p4::stream_error::Details::DigestListAck(p4::DigestListAckError {
                    digest_list_ack: Some(a),
                });
                let _ = handle.ctl.send(stream_error(&e, Some(details)));
            }
            Some(Req::Other(any)) => {
                let e = RpcError::unimplemented(format!(
                    "the x86 target does not handle stream messages of type {}",
                    any.type_url
                ));
                let details =
                    p4::stream_error::Details::Other(p4::StreamOtherError { other: Some(any) });
                let _ = handle.ctl.send(stream_error(&e, Some(details)));
            }
            None => {
                let e = RpcError::invalid("empty stream message");
                let _ = handle.ctl.send(stream_error(&e, None));
            }
        }
    }
    if live {
        let i = inner.clone();
        let _ = tokio::task::spawn_blocking(move || i.leave(stream)).await;
    }
}

#[tonic::async_trait]
impl<B: Backend + 'static> P4Runtime for Server<B> {
    async fn write(
        &self,
        request: Request<p4::WriteRequest>,
    ) -> Result<Response<p4::WriteResponse>, Status> {
        let inner = self.inner.clone();
        let req = request.into_inner();
        blocking(move || inner.write(req)).await?;
        Ok(Response::new(p4::WriteResponse {}))
    }

    type ReadStream = tokio_stream::Iter<std::vec::IntoIter<StreamItemRead>>;

    async fn read(
        &self,
        request: Request<p4::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let inner = self.inner.clone();
        let req = request.into_inner();
        let items = blocking(move || inner.read(req)).await?;
        Ok(Response::new(tokio_stream::iter(items)))
    }

    async fn set_forwarding_pipeline_config(
        &self,
        request: Request<p4::SetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::SetForwardingPipelineConfigResponse>, Status> {
        let inner = self.inner.clone();
        let req = request.into_inner();
        blocking(move || inner.set_pipeline(req)).await?;
        Ok(Response::new(p4::SetForwardingPipelineConfigResponse {}))
    }

    async fn get_forwarding_pipeline_config(
        &self,
        request: Request<p4::GetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::GetForwardingPipelineConfigResponse>, Status> {
        let inner = self.inner.clone();
        let req = request.into_inner();
        Ok(Response::new(
            blocking(move || inner.get_pipeline(req)).await?,
        ))
    }

    type StreamChannelStream = ResponseStream;

    async fn stream_channel(
        &self,
        request: Request<Streaming<p4::StreamMessageRequest>>,
    ) -> Result<Response<Self::StreamChannelStream>, Status> {
        let stream = self.inner.next_stream.fetch_add(1, Ordering::Relaxed);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (pkt_tx, pkt_rx) = mpsc::channel(PACKET_IN_QUEUE);
        let handle = StreamHandle {
            ctl: ctl_tx,
            pkt: pkt_tx,
        };
        tokio::spawn(run_stream(
            self.inner.clone(),
            stream,
            request.into_inner(),
            handle,
        ));
        Ok(Response::new(ResponseStream {
            ctl: ctl_rx,
            pkt: pkt_rx,
        }))
    }

    async fn capabilities(
        &self,
        _request: Request<p4::CapabilitiesRequest>,
    ) -> Result<Response<p4::CapabilitiesResponse>, Status> {
        Ok(Response::new(p4::CapabilitiesResponse {
            p4runtime_api_version: p4runtime_proto::P4RUNTIME_API_VERSION.into(),
            experimental: None,
        }))
    }
}
