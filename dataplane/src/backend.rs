//! The in-process x86 backend: a `nos_core::Backend` whose target is the
//! [`crate::engine`] running on forwarding workers over packet I/O.
//!
//! The backend task owns the installed `ForwardingState`. After each batch its
//! [`TableWriter`] patches the standby copy of the [`Tables`] with what the batch
//! changed and publishes it with an atomic pointer swap, so the workers never
//! wait for the control plane and never see half a batch. A worker loads the
//! published tables once per burst and lets go of them before the next one
//! (the writer reuses the copy it swapped out once no worker holds it).
//!
//! Packet I/O sits behind one trait, [`PacketIo`]: AF_PACKET sockets
//! ([`crate::afpacket`]) and, with the `dpdk` feature, DPDK devices
//! ([`crate::dpdk`]), chosen per port ([`PortBinding`]). Every port gives every
//! worker a handle of its own (for DPDK, its own receive queues and transmit
//! queue; for AF_PACKET, its own socket in a fanout group), so workers share
//! nothing on the packet path and take no lock. Each worker runs to
//! completion: receive a burst, run the whole pipeline on each frame, send
//! the burst out grouped by egress port. The backend sends workers port
//! additions and removals over channels (with an eventfd to wake a worker
//! asleep in `poll`); worker 0 also sends the control plane's packets.
//! Counters are kept per worker and summed when read.

use crate::afpacket::{poll_readable, PacketSocket, RecvBatch, Waker};
use crate::engine::{process, Counters, Frame, TableWriter, Tables, Verdict};
use arc_swap::ArcSwap;
use nos_core::backend::{
    PacketDest, PacketIn, PacketInSink, PacketOut, PacketSender, PortCounters, PuntReason,
};
use nos_core::{
    Backend, BackendError, BackendErrorKind, Capabilities, Delta, ForwardingState, Object,
    ObjectKey, Port, PortId,
};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether this build can drive DPDK ports (the `dpdk` cargo feature).
pub const DPDK_BUILT: bool = cfg!(feature = "dpdk");

/// Maps a model port to the Linux interface that carries its packets
/// (AF_PACKET).
pub type PortResolver = Arc<dyn Fn(&Port) -> Option<String> + Send + Sync>;

/// How one port's packets reach the dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortBinding {
    /// An AF_PACKET socket on this Linux interface.
    AfPacket(String),
    /// A DPDK device string: a virtual device with its arguments
    /// (`net_af_packet0,iface=veth1`, `net_null0`, `net_memif0,role=server`),
    /// or the name of a port already built in this process (from rings).
    Dpdk(String),
}

/// Maps a model port to its packet I/O.
pub type PortBinder = Arc<dyn Fn(&Port) -> Option<PortBinding> + Send + Sync>;

/// How the forwarding workers are set up.
#[derive(Clone, Debug)]
pub struct IoOptions {
    /// Forwarding workers (threads); at least 1.
    pub workers: u16,
    /// Arguments for DPDK's EAL (empty: [`crate::dpdk::DEFAULT_EAL_ARGS`] when
    /// built with DPDK).
    pub eal_args: Vec<String>,
    /// Start the EAL at once (ports bound to DPDK are configured), so that a
    /// failure stops the start instead of refusing each port later.
    pub start_dpdk: bool,
}

impl Default for IoOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            eal_args: Vec::new(),
            start_dpdk: false,
        }
    }
}

/// What one [`PacketIo::receive`] call filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// This many frames in [`RxBurst::heap`].
    Heap(usize),
    /// This many mbufs in [`RxBurst::mbufs`].
    #[cfg(feature = "dpdk")]
    Mbufs(usize),
}

/// A worker's receive buffers: heap frames for socket I/O, packet buffers
/// (mbufs) for DPDK.
#[derive(Debug, Default)]
pub struct RxBurst {
    pub heap: RecvBatch,
    #[cfg(feature = "dpdk")]
    pub mbufs: crate::dpdk::MbufBurst,
}

/// Frames for [`PacketIo::transmit`].
#[derive(Debug)]
pub enum TxFrames<'a> {
    /// Frames as bytes; the I/O copies what it keeps.
    Bytes(&'a [&'a [u8]]),
    /// Packet buffers: a DPDK port takes those it sends (the rest stay in the
    /// burst); socket I/O copies their bytes and leaves them.
    #[cfg(feature = "dpdk")]
    Mbufs(&'a mut crate::dpdk::MbufBurst),
}

/// Route changes in one batch after which the writer's standby tables are
/// brought up to date at once (see [`X86Backend::apply`]).
const CATCH_UP_AFTER: usize = 4096;

/// One port's packet I/O as one worker sees it. Each worker has its own
/// handle per port, so implementations need no locking.
pub trait PacketIo: Send {
    /// What carries the port, for logs.
    fn describe(&self) -> String;
    /// A descriptor that turns readable when frames wait (sockets), or `None`
    /// for devices the worker polls (DPDK).
    fn readiness_fd(&self) -> Option<RawFd>;
    /// Receives up to a burst of frames, without blocking.
    fn receive(&mut self, rx: &mut RxBurst) -> io::Result<Received>;
    /// Sends frames; returns how many left.
    fn transmit(&mut self, frames: TxFrames<'_>) -> io::Result<usize>;
    /// Frames the device lost before the dataplane saw them, when it counts them.
    fn missed(&self) -> u64 {
        0
    }
    /// Frames this handle's own receive queue lost since the last call (a
    /// socket whose queue overflowed); the worker adds them to the port's
    /// receive drops. Devices counted as a whole report through `missed`.
    fn take_lost(&mut self) -> u64 {
        0
    }
}

enum Ctl {
    AddPort(PortId, Box<dyn PacketIo>),
    RemovePort(PortId),
}

/// What a worker counted: the pipeline's verdicts and its ports' traffic.
#[derive(Clone, Debug, Default)]
struct WorkerStats {
    counters: Counters,
    ports: crate::engine::FastMap<PortId, PortCounters>,
}

struct Shared {
    tables: ArcSwap<Tables>,
    /// One slot per worker, written by it every 50 ms, summed when read.
    stats: Vec<Mutex<WorkerStats>>,
    stop: AtomicBool,
    wakers: Vec<Waker>,
}

impl Shared {
    fn wake_all(&self) {
        for w in &self.wakers {
            w.wake();
        }
    }
}

/// Reads the tables an [`X86Backend`] publishes.
#[derive(Clone)]
pub struct TablesReader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TablesReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TablesReader")
    }
}

impl TablesReader {
    /// The tables forwarding uses now.
    pub fn load(&self) -> Arc<Tables> {
        self.shared.tables.load_full()
    }
}

/// The x86 software dataplane as a forwarding target.
pub struct X86Backend {
    state: ForwardingState,
    writer: TableWriter,
    shared: Arc<Shared>,
    binder: Option<PortBinder>,
    opts: IoOptions,
    ctl: Vec<Sender<Ctl>>,
    out: Sender<PacketOut>,
    workers: Vec<JoinHandle<()>>,
    /// DPDK ports, kept so that their removal can wait for the workers to let
    /// go of them (and for the driver's own loss counters).
    #[cfg(feature = "dpdk")]
    dpdk_ports: std::collections::HashMap<PortId, Arc<crate::dpdk::DpdkPort>>,
}

impl std::fmt::Debug for X86Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X86Backend")
            .field("objects", &self.state.len())
            .field("packet_io", &self.binder.is_some())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl X86Backend {
    /// Starts the dataplane with AF_PACKET packet I/O on one worker: every port
    /// created in the model is bound to the Linux interface `resolver` names,
    /// and punted packets go to `punt`.
    pub fn start(resolver: PortResolver, punt: PacketInSink) -> std::io::Result<Self> {
        let binder: PortBinder = Arc::new(move |p: &Port| resolver(p).map(PortBinding::AfPacket));
        Self::start_with(binder, punt, IoOptions::default()).map_err(|e| match e {
            StartError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }

    /// Starts the dataplane with `opts.workers` forwarding workers; every port
    /// created in the model gets the packet I/O `binder` chooses for it.
    pub fn start_with(
        binder: PortBinder,
        punt: PacketInSink,
        opts: IoOptions,
    ) -> Result<Self, StartError> {
        if opts.start_dpdk {
            #[cfg(feature = "dpdk")]
            crate::dpdk::eal(&opts.eal_args)?;
            #[cfg(not(feature = "dpdk"))]
            return Err(StartError::NoDpdk);
        }
        Ok(Self::build(Some(binder), Some(punt), opts)?)
    }

    /// A dataplane with no packet I/O: tables are compiled and published but no
    /// interface is opened (for tests and benchmarks of the control path).
    pub fn detached() -> Self {
        Self::build(None, None, IoOptions::default())
            .expect("a detached dataplane opens no descriptors but an eventfd")
    }

    fn build(
        binder: Option<PortBinder>,
        punt: Option<PacketInSink>,
        mut opts: IoOptions,
    ) -> std::io::Result<Self> {
        opts.workers = opts.workers.max(1);
        let n = usize::from(opts.workers);
        let shared = Arc::new(Shared {
            tables: ArcSwap::from_pointee(Tables::empty()),
            stats: (0..n).map(|_| Mutex::new(WorkerStats::default())).collect(),
            stop: AtomicBool::new(false),
            wakers: (0..n).map(|_| Waker::new()).collect::<io::Result<_>>()?,
        });
        let (out_tx, out_rx) = channel();
        let mut ctl = Vec::with_capacity(n);
        let mut workers = Vec::new();
        let mut out_rx = Some(out_rx);
        for i in 0..n {
            let (ctl_tx, ctl_rx) = channel();
            ctl.push(ctl_tx);
            if let Some(punt) = &punt {
                let w = Worker::new(i, shared.clone(), ctl_rx, out_rx.take(), punt.clone());
                workers.push(
                    std::thread::Builder::new()
                        .name(format!("dp-worker{i}"))
                        .spawn(move || w.run())?,
                );
            }
        }
        Ok(Self {
            state: ForwardingState::new(),
            writer: TableWriter::new(),
            shared,
            binder,
            opts,
            ctl,
            out: out_tx,
            workers,
            #[cfg(feature = "dpdk")]
            dpdk_ports: std::collections::HashMap::new(),
        })
    }

    /// The tables the workers currently forward with.
    pub fn tables(&self) -> Arc<Tables> {
        self.shared.tables.load_full()
    }

    /// A handle that reads the published tables after the backend has been
    /// handed to its owner (for benchmarks and diagnostics).
    pub fn tables_reader(&self) -> TablesReader {
        TablesReader {
            shared: self.shared.clone(),
        }
    }

    /// Opens one handle per worker on the port's packet I/O.
    fn open_port(&mut self, p: &Port) -> Result<Vec<Box<dyn PacketIo>>, BackendError> {
        let Some(binder) = &self.binder else {
            return Ok(Vec::new());
        };
        let binding = binder(p).ok_or_else(|| {
            BackendError::new(
                BackendErrorKind::InvalidArgument,
                format!("port {} has no packet I/O bound", p.name),
            )
        })?;
        let workers = self.opts.workers;
        match binding {
            PortBinding::AfPacket(ifname) => {
                silence_kernel(&ifname);
                let group = (workers > 1).then(fanout_group);
                (0..workers)
                    .map(|_| {
                        PacketSocket::open_in_fanout(&ifname, group)
                            .map(|s| Box::new(s) as Box<dyn PacketIo>)
                            .map_err(|e| {
                                BackendError::new(
                                    BackendErrorKind::Unavailable,
                                    format!("port {}: cannot open {ifname}: {e}", p.name),
                                )
                            })
                    })
                    .collect()
            }
            #[cfg(feature = "dpdk")]
            PortBinding::Dpdk(devargs) => {
                let unavailable = |e: crate::dpdk::DpdkError| {
                    BackendError::new(
                        BackendErrorKind::Unavailable,
                        format!("port {}: {e}", p.name),
                    )
                };
                let eal = crate::dpdk::eal(&self.opts.eal_args).map_err(unavailable)?;
                if let Some(iface) = crate::dpdk::af_packet_iface(&devargs) {
                    silence_kernel(iface);
                }
                let port =
                    crate::dpdk::DpdkPort::open(eal, &devargs, workers).map_err(unavailable)?;
                let handles = (0..workers)
                    .map(|w| Box::new(port.queues(eal, w, workers)) as Box<dyn PacketIo>)
                    .collect();
                self.dpdk_ports.insert(p.id, port);
                Ok(handles)
            }
            #[cfg(not(feature = "dpdk"))]
            PortBinding::Dpdk(devargs) => Err(BackendError::new(
                BackendErrorKind::Unsupported,
                format!(
                    "port {} is bound to the DPDK device {devargs:?}, but this build has no DPDK \
                     support: build with `--features dpdk` (and libdpdk-dev installed), or use io: af_packet",
                    p.name
                ),
            )),
        }
    }

    fn apply_one(&mut self, d: &Delta) -> Result<(), BackendError> {
        // Open the port's I/O before touching the model, so a port whose
        // interface or device is missing is refused whole and the model keeps
        // matching the target.
        let handles = match d {
            Delta::Create(Object::Port(p)) => Some((p.id, self.open_port(p)?)),
            _ => None,
        };
        if let Err(e) = self.state.apply(d) {
            #[cfg(feature = "dpdk")]
            if let Some((id, _)) = &handles {
                self.dpdk_ports.remove(id);
            }
            return Err(e.into());
        }
        if let Some((id, handles)) = handles {
            for (ctl, h) in self.ctl.iter().zip(handles) {
                tracing::info!(port = %id, io = %h.describe(), "port bound");
                let _ = ctl.send(Ctl::AddPort(id, h));
            }
            self.shared.wake_all();
        }
        if let (Delta::Delete(ObjectKey::Port(id)), false) = (d, self.workers.is_empty()) {
            for ctl in &self.ctl {
                let _ = ctl.send(Ctl::RemovePort(*id));
            }
            self.shared.wake_all();
            #[cfg(feature = "dpdk")]
            if let Some(port) = self.dpdk_ports.remove(id) {
                // Stop the device here, once every worker has dropped its handle,
                // so that the same device can be probed again at once.
                let start = Instant::now();
                while Arc::strong_count(&port) > 1 && start.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                drop(port);
            }
        }
        Ok(())
    }

    fn summed(&self) -> WorkerStats {
        let mut sum = WorkerStats::default();
        for slot in &self.shared.stats {
            let w = slot.lock().unwrap_or_else(|e| e.into_inner());
            sum.counters.add(&w.counters);
            for (id, c) in &w.ports {
                let s = sum.ports.entry(*id).or_insert_with(|| PortCounters {
                    port: *id,
                    ..Default::default()
                });
                s.rx_packets += c.rx_packets;
                s.rx_bytes += c.rx_bytes;
                s.tx_packets += c.tx_packets;
                s.tx_bytes += c.tx_bytes;
                s.rx_drops += c.rx_drops;
                s.tx_drops += c.tx_drops;
                s.rx_errors += c.rx_errors;
            }
        }
        sum
    }
}

/// Why the dataplane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[cfg(feature = "dpdk")]
    #[error("{0}")]
    Dpdk(#[from] crate::dpdk::DpdkError),
    #[error(
        "ports are bound to DPDK devices, but this build has no DPDK support: build with \
         `--features dpdk` (and libdpdk-dev installed), or bind the ports with io: af_packet"
    )]
    NoDpdk,
}

/// A fanout group id for the sockets of one port, unique in this process.
fn fanout_group() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ((std::process::id() << 8) as u16).wrapping_add(n as u16)
}

impl Backend for X86Backend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            target: "x86".into(),
            max_batch: usize::MAX,
            ipv6: true,
            weighted_groups: true,
            max_group_members: 256,
            vrfs: true,
            packet_io: !self.workers.is_empty(),
        }
    }

    fn apply(&mut self, batch: &[Delta]) -> Vec<Result<(), BackendError>> {
        let results: Vec<_> = batch.iter().map(|d| self.apply_one(d)).collect();
        let applied: Vec<&Delta> = batch
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(d, _)| d)
            .collect();
        if !applied.is_empty() {
            self.writer
                .commit(&self.state, &applied, &self.shared.tables);
            // After a large batch, the copy the next batch will patch is
            // brought up to date now, so that the next (small, urgent:
            // a failover's group rewrite) batch pays only for itself.
            self.writer.catch_up(&self.state, CATCH_UP_AFTER);
        }
        results
    }

    fn read(&mut self) -> Result<ForwardingState, BackendError> {
        Ok(self.state.clone())
    }

    fn port_counters(&mut self) -> Vec<PortCounters> {
        #[allow(unused_mut)]
        let mut sum = self.summed().ports;
        // Frames a DPDK device lost before any worker saw them.
        #[cfg(feature = "dpdk")]
        for (id, port) in &self.dpdk_ports {
            let missed = port.missed();
            if missed > 0 {
                sum.entry(*id)
                    .or_insert_with(|| PortCounters {
                        port: *id,
                        ..Default::default()
                    })
                    .rx_drops += missed;
            }
        }
        let mut v: Vec<_> = sum
            .into_values()
            .filter(|c| self.state.ports().contains_key(&c.port))
            .collect();
        v.sort_by_key(|c| c.port);
        v
    }

    fn drop_counters(&mut self) -> Vec<(String, u64)> {
        self.summed().counters.named()
    }

    fn packet_sender(&self) -> Option<PacketSender> {
        if self.workers.is_empty() {
            return None;
        }
        let out = Mutex::new(self.out.clone());
        let shared = self.shared.clone();
        Some(Arc::new(move |p: PacketOut| {
            out.lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(p)
                .map_err(|_| {
                    BackendError::new(
                        BackendErrorKind::Unavailable,
                        "dataplane workers have stopped",
                    )
                })?;
            shared.wakers[0].wake();
            Ok(())
        }))
    }
}

impl Drop for X86Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        // The workers' port handles are gone; DPDK ports stop as the map drops.
    }
}

/// Most frames one receive call returns, whatever the I/O.
const MAX_BURST: usize = 64;

/// A burst of received frames, whatever holds them.
trait FrameBurst {
    type F: Frame + ?Sized;
    /// Frame `i`, or `None` when it cannot be forwarded as received (cut,
    /// or spread over several buffers).
    fn frame(&mut self, i: usize) -> Option<&mut Self::F>;
    /// Frame `i`'s length as received.
    #[inline]
    fn wire_len(&self, i: usize) -> usize {
        self.bytes(i).map_or(0, <[u8]>::len)
    }
    /// A copy of frame `i`'s bytes (for the control plane).
    fn copy(&self, i: usize) -> Vec<u8> {
        self.bytes(i).map(<[u8]>::to_vec).unwrap_or_default()
    }
    /// Sends frames `idx` out of `io`; returns how many left.
    fn send(&mut self, io: &mut dyn PacketIo, idx: &[(PortId, usize)]) -> io::Result<usize>;
    /// The burst is done with: release what it still holds.
    fn finish(&mut self) {}
    /// Frame `i`'s bytes as received, if it is there.
    fn bytes(&self, i: usize) -> Option<&[u8]>;
}

impl FrameBurst for RecvBatch {
    type F = Vec<u8>;

    #[inline]
    fn frame(&mut self, i: usize) -> Option<&mut Vec<u8>> {
        if self.meta[i].truncated {
            None
        } else {
            Some(&mut self.bufs[i])
        }
    }

    #[inline]
    fn bytes(&self, i: usize) -> Option<&[u8]> {
        self.bufs.get(i).map(|b| b.as_slice())
    }

    fn send(&mut self, io: &mut dyn PacketIo, idx: &[(PortId, usize)]) -> io::Result<usize> {
        let mut refs: [&[u8]; crate::afpacket::BATCH] = [&[]; crate::afpacket::BATCH];
        let mut sent = 0;
        for chunk in idx.chunks(crate::afpacket::BATCH) {
            for (k, (_, i)) in chunk.iter().enumerate() {
                refs[k] = self.bufs[*i].as_slice();
            }
            sent += io.transmit(TxFrames::Bytes(&refs[..chunk.len()]))?;
        }
        Ok(sent)
    }
}

#[cfg(feature = "dpdk")]
impl FrameBurst for crate::dpdk::MbufBurst {
    type F = crate::dpdk::Mbuf;

    #[inline]
    fn frame(&mut self, i: usize) -> Option<&mut crate::dpdk::Mbuf> {
        self.get_mut(i).filter(|m| !m.is_segmented())
    }

    fn send(&mut self, io: &mut dyn PacketIo, idx: &[(PortId, usize)]) -> io::Result<usize> {
        let mut set = crate::dpdk::MbufBurst::default();
        for (_, i) in idx {
            if let Some(m) = self.take(*i) {
                let _ = set.push(m);
            }
        }
        let sent = io.transmit(TxFrames::Mbufs(&mut set));
        // Whatever the port did not take is freed with `set`.
        sent
    }

    fn finish(&mut self) {
        self.clear();
    }

    #[inline]
    fn bytes(&self, i: usize) -> Option<&[u8]> {
        self.get(i).map(|m| m.bytes())
    }
}

/// One port as a worker holds it.
struct Slot {
    id: PortId,
    io: Box<dyn PacketIo>,
}

/// What forwarding a burst needs besides the burst and the ports.
struct Fwd {
    shared: Arc<Shared>,
    punt: PacketInSink,
    stats: WorkerStats,
    pending: Vec<(PortId, usize)>,
}

fn port_entry(stats: &mut WorkerStats, port: PortId) -> &mut PortCounters {
    stats.ports.entry(port).or_insert_with(|| PortCounters {
        port,
        ..Default::default()
    })
}

impl Fwd {
    /// Runs `n` received frames through the pipeline and sends them out
    /// grouped by egress port. The tables are loaded once for the burst.
    fn burst<B: FrameBurst>(&mut self, ports: &mut [Slot], in_port: PortId, b: &mut B, n: usize) {
        self.pending.clear();
        let mut out_len = [0u32; MAX_BURST];
        {
            let tables = self.shared.tables.load();
            // What the pipeline will first read of each frame (headers, the
            // route entry) is loaded for the whole burst first: independent
            // loads whose cache misses overlap.
            let mut warmed = 0u32;
            for i in 0..n {
                if let Some(f) = b.bytes(i) {
                    warmed ^= crate::engine::warm(&tables, in_port, f);
                }
            }
            std::hint::black_box(warmed);
            let keep_original = tables.has_copy_rules();
            let counters = &mut self.stats.counters;
            let pc = self
                .stats
                .ports
                .entry(in_port)
                .or_insert_with(|| PortCounters {
                    port: in_port,
                    ..Default::default()
                });
            for i in 0..n {
                pc.rx_packets += 1;
                pc.rx_bytes += b.wire_len(i) as u64;
                let original = keep_original.then(|| b.copy(i));
                let Some(frame) = b.frame(i) else {
                    pc.rx_errors += 1;
                    continue;
                };
                let verdict = process(&tables, in_port, frame, counters);
                // Its length as it leaves (the pipeline may have pushed or
                // popped a tag).
                out_len[i % MAX_BURST] = frame.bytes().len() as u32;
                match verdict {
                    Verdict::Forward { port, copy } => {
                        if let (true, Some(frame)) = (copy, original) {
                            (self.punt)(PacketIn {
                                port: in_port,
                                reason: PuntReason::AclCopy,
                                frame,
                            });
                        }
                        self.pending.push((port, i));
                    }
                    Verdict::Punt(reason) => (self.punt)(PacketIn {
                        port: in_port,
                        reason,
                        frame: b.copy(i),
                    }),
                    Verdict::Drop(_) => pc.rx_drops += 1,
                }
            }
            // The table guard ends here, before the frames go out.
        }
        self.pending.sort_unstable_by_key(|(p, _)| *p);
        let pending = std::mem::take(&mut self.pending);
        for group in pending.chunk_by(|a, b| a.0 == b.0) {
            let port = group[0].0;
            let mut lens = [0u64; MAX_BURST];
            for (k, (_, i)) in group.iter().enumerate().take(MAX_BURST) {
                lens[k] = u64::from(out_len[i % MAX_BURST]);
            }
            let result = match ports.iter_mut().find(|s| s.id == port) {
                Some(slot) => b.send(slot.io.as_mut(), group),
                None => Ok(0),
            };
            let pc = port_entry(&mut self.stats, port);
            match result {
                Ok(sent) => {
                    pc.tx_packets += sent as u64;
                    // Bytes of the frames that left, assuming the device took a
                    // prefix (as sockets and DPDK devices do).
                    pc.tx_bytes += lens[..sent.min(MAX_BURST)].iter().sum::<u64>();
                    pc.tx_drops += (group.len() - sent) as u64;
                }
                Err(e) => {
                    pc.tx_drops += group.len() as u64;
                    tracing::debug!(port = %port, "send failed: {e}");
                }
            }
        }
        self.pending = pending;
        b.finish();
    }

    /// Sends one frame from the control plane out of `port`.
    fn send_bytes(&mut self, ports: &mut [Slot], port: PortId, frame: &[u8]) {
        let result = match ports.iter_mut().find(|s| s.id == port) {
            Some(slot) => slot.io.transmit(TxFrames::Bytes(&[frame])),
            None => Ok(0),
        };
        let pc = port_entry(&mut self.stats, port);
        match result {
            Ok(1) => {
                pc.tx_packets += 1;
                pc.tx_bytes += frame.len() as u64;
            }
            Ok(_) => pc.tx_drops += 1,
            Err(e) => {
                pc.tx_drops += 1;
                tracing::debug!(port = %port, "send failed: {e}");
            }
        }
    }
}

/// Empty polling rounds after which a worker that polls devices naps between
/// rounds (so an idle DPDK worker does not hold a whole core).
const IDLE_ROUNDS: u32 = 4096;
const IDLE_NAP: Duration = Duration::from_micros(50);
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// A forwarding worker: polls its handles of every port, runs each burst
/// through the engine and sends the results out, to completion.
struct Worker {
    index: usize,
    ctl: Receiver<Ctl>,
    /// The control plane's packets (worker 0 only).
    out: Option<Receiver<PacketOut>>,
    ports: Vec<Slot>,
    fwd: Fwd,
    rx: RxBurst,
    /// One reusable batch for re-injected packets (a RecvBatch holds 32
    /// frame buffers: too big to build per packet).
    scratch: Option<RecvBatch>,
    fds: Vec<RawFd>,
    ready: Vec<bool>,
    idle: u32,
    #[cfg(feature = "dpdk")]
    _lcore: Option<crate::dpdk::LcoreGuard>,
}

impl Worker {
    fn new(
        index: usize,
        shared: Arc<Shared>,
        ctl: Receiver<Ctl>,
        out: Option<Receiver<PacketOut>>,
        punt: PacketInSink,
    ) -> Self {
        Self {
            index,
            ctl,
            out,
            ports: Vec::new(),
            fwd: Fwd {
                shared,
                punt,
                stats: WorkerStats::default(),
                pending: Vec::with_capacity(MAX_BURST),
            },
            rx: RxBurst::default(),
            scratch: None,
            fds: Vec::new(),
            ready: Vec::new(),
            idle: 0,
            #[cfg(feature = "dpdk")]
            _lcore: None,
        }
    }

    fn run(mut self) {
        let mut last_publish = Instant::now();
        while !self.fwd.shared.stop.load(Ordering::Relaxed) {
            self.round();
            if last_publish.elapsed() >= PUBLISH_EVERY {
                self.count_lost();
                self.publish();
                last_publish = Instant::now();
            }
        }
        self.count_lost();
        self.publish();
    }

    /// Adds the frames the ports' receive queues lost to their drops.
    fn count_lost(&mut self) {
        for slot in &mut self.ports {
            let lost = slot.io.take_lost();
            if lost > 0 {
                let id = slot.id;
                self.fwd
                    .stats
                    .ports
                    .entry(id)
                    .or_insert_with(|| PortCounters {
                        port: id,
                        ..Default::default()
                    })
                    .rx_drops += lost;
            }
        }
    }

    /// One pass over the ports: waits for frames (in `poll`) when every port
    /// is a socket, otherwise polls each port once. Returns the frames received.
    fn round(&mut self) -> usize {
        let polled = self.ports.iter().any(|s| s.io.readiness_fd().is_none());
        let shared = self.fwd.shared.clone();
        let waker = &shared.wakers[self.index];
        if polled {
            self.ready.clear();
            self.ready.resize(self.ports.len(), true);
        } else {
            self.fds.clear();
            self.fds.push(waker.as_raw_fd());
            self.fds
                .extend(self.ports.iter().filter_map(|s| s.io.readiness_fd()));
            let mut ready = std::mem::take(&mut self.ready);
            if let Err(e) = poll_readable(&self.fds, 100, &mut ready) {
                tracing::error!("dataplane poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                self.ready = ready;
                return 0;
            }
            if ready.first().copied().unwrap_or(false) {
                waker.drain();
            }
            ready.remove(0);
            self.ready = ready;
        }
        self.control();
        let mut got = 0;
        for i in 0..self.ports.len() {
            if !self.ready.get(i).copied().unwrap_or(false) {
                continue;
            }
            // Bounded work per port per round keeps ports fair.
            for _ in 0..if polled { 1 } else { 8 } {
                let port = self.ports[i].id;
                let n = match self.ports[i].io.receive(&mut self.rx) {
                    Ok(Received::Heap(n)) if n > 0 => {
                        self.fwd.burst(&mut self.ports, port, &mut self.rx.heap, n);
                        n
                    }
                    #[cfg(feature = "dpdk")]
                    Ok(Received::Mbufs(n)) if n > 0 => {
                        self.fwd.burst(&mut self.ports, port, &mut self.rx.mbufs, n);
                        n
                    }
                    Ok(_) => 0,
                    Err(e) => {
                        tracing::warn!(port = %port, "receive failed: {e}");
                        0
                    }
                };
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        if polled {
            if got == 0 {
                self.idle = self.idle.saturating_add(1);
                if self.idle > IDLE_ROUNDS {
                    waker.drain();
                    std::thread::sleep(IDLE_NAP);
                }
            } else {
                self.idle = 0;
            }
        }
        got
    }

    fn control(&mut self) {
        while let Ok(c) = self.ctl.try_recv() {
            match c {
                Ctl::AddPort(id, io) => {
                    #[cfg(feature = "dpdk")]
                    if io.readiness_fd().is_none() && self._lcore.is_none() {
                        // A DPDK port: give this thread an lcore for the buffer pool's cache.
                        self._lcore = crate::dpdk::LcoreGuard::register();
                    }
                    self.ports.retain(|s| s.id != id);
                    self.ports.push(Slot { id, io });
                    port_entry(&mut self.fwd.stats, id);
                }
                Ctl::RemovePort(id) => {
                    self.ports.retain(|s| s.id != id);
                    self.fwd.stats.ports.remove(&id);
                }
            }
        }
        let Some(out) = &self.out else { return };
        while let Ok(p) = out.try_recv() {
            match p.dest {
                PacketDest::Port(port) => self.fwd.send_bytes(&mut self.ports, port, &p.frame),
                PacketDest::Ingress(port) => {
                    let mut b = self.scratch.take().unwrap_or_default();
                    b.bufs[0] = p.frame;
                    b.meta[0] = Default::default();
                    self.fwd.burst(&mut self.ports, port, &mut b, 1);
                    self.scratch = Some(b);
                }
            }
        }
    }

    fn publish(&self) {
        let mut slot = self.fwd.shared.stats[self.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        slot.counters.clone_from(&self.fwd.stats.counters);
        slot.ports.clone_from(&self.fwd.stats.ports);
    }
}

/// The forwarding loop of one worker, run by the caller's thread instead of
/// a worker thread (benchmarks measure a core's forwarding rate with it).
pub struct ManualWorker {
    worker: Worker,
}

impl std::fmt::Debug for ManualWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualWorker")
            .field("ports", &self.worker.ports.len())
            .finish()
    }
}

impl ManualWorker {
    /// A worker forwarding with the tables `reader` reads, over `ports`;
    /// punted frames go to `punt`.
    pub fn new(
        reader: &TablesReader,
        ports: Vec<(PortId, Box<dyn PacketIo>)>,
        punt: PacketInSink,
    ) -> Self {
        let (_tx, rx) = channel();
        let mut worker = Worker::new(0, reader.shared.clone(), rx, None, punt);
        for (id, io) in ports {
            worker.ports.push(Slot { id, io });
        }
        #[cfg(feature = "dpdk")]
        {
            worker._lcore = crate::dpdk::LcoreGuard::register();
        }
        Self { worker }
    }

    /// One round over the ports (a burst from each); returns the frames received.
    pub fn round(&mut self) -> usize {
        self.worker.round()
    }

    /// What the pipeline did so far.
    pub fn counters(&self) -> &Counters {
        &self.worker.fwd.stats.counters
    }

    /// Traffic per port so far.
    pub fn port_counters(&self, port: PortId) -> PortCounters {
        self.worker
            .fwd
            .stats
            .ports
            .get(&port)
            .cloned()
            .unwrap_or_default()
    }
}

/// Keeps the kernel's own IP stack off a port the dataplane takes over, as a
/// switch ASIC's ports would be: no ARP replies for the host's addresses (Linux
/// answers for any local address on any interface by default) and no IPv6
/// (neighbor discovery, router solicitations). The router's own addresses live
/// on its host interface instead.
fn silence_kernel(ifname: &str) {
    for (key, value) in [
        (format!("/proc/sys/net/ipv4/conf/{ifname}/arp_ignore"), "8"),
        (
            format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
            "1",
        ),
    ] {
        if let Err(e) = std::fs::write(&key, value) {
            tracing::warn!(%ifname, "cannot set {key} to {value}: {e}; the kernel may answer for the router on this port");
        }
    }
}
