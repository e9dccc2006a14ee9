//! The in-process x86 backend: a `nos_core::Backend` whose target is the
//! [`crate::engine`] running on an I/O thread over AF_PACKET sockets.
//!
//! The backend task owns the installed `ForwardingState`. After each batch its
//! [`TableWriter`] patches the standby copy of the [`Tables`] with what the batch
//! changed and publishes it with an atomic pointer swap, so the I/O thread never
//! waits for the control plane and never sees half a batch. The
//! I/O thread owns the sockets; the backend sends it port additions and removals,
//! and the control plane's packets, over channels with an eventfd to wake it.

use crate::afpacket::{poll_readable, PacketSocket, RecvBatch, Waker};
use crate::engine::{process, Counters, TableWriter, Tables, Verdict};
use arc_swap::ArcSwap;
use nos_core::backend::{
    PacketDest, PacketIn, PacketInSink, PacketOut, PacketSender, PortCounters, PuntReason,
};
use nos_core::{
    Backend, BackendError, BackendErrorKind, Capabilities, Delta, ForwardingState, Object,
    ObjectKey, Port, PortId,
};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Maps a model port to the Linux interface that carries its packets.
pub type PortResolver = Arc<dyn Fn(&Port) -> Option<String> + Send + Sync>;

enum Ctl {
    AddPort(PortId, PacketSocket),
    RemovePort(PortId),
}

struct Shared {
    tables: ArcSwap<Tables>,
    counters: Mutex<Counters>,
    port_counters: Mutex<HashMap<PortId, PortCounters>>,
    stop: AtomicBool,
    waker: Waker,
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
    resolver: Option<PortResolver>,
    ctl: Sender<Ctl>,
    out: Sender<PacketOut>,
    io: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for X86Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X86Backend")
            .field("objects", &self.state.len())
            .field("packet_io", &self.resolver.is_some())
            .finish()
    }
}

impl X86Backend {
    /// Starts the dataplane with packet I/O: every port created in the model is
    /// bound to the Linux interface `resolver` names, and punted packets go to `punt`.
    pub fn start(resolver: PortResolver, punt: PacketInSink) -> std::io::Result<Self> {
        Self::build(Some(resolver), Some(punt))
    }

    /// A dataplane with no packet I/O: tables are compiled and published but no
    /// interface is opened (for tests and benchmarks of the control path).
    pub fn detached() -> Self {
        Self::build(None, None).expect("a detached dataplane opens no descriptors but an eventfd")
    }

    fn build(resolver: Option<PortResolver>, punt: Option<PacketInSink>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            tables: ArcSwap::from_pointee(Tables::empty()),
            counters: Mutex::new(Counters::default()),
            port_counters: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            waker: Waker::new()?,
        });
        let (ctl_tx, ctl_rx) = channel();
        let (out_tx, out_rx) = channel();
        let io = match punt {
            Some(punt) => {
                let sh = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("dp-io".into())
                        .spawn(move || IoThread::new(sh, ctl_rx, out_rx, punt).run())?,
                )
            }
            None => None,
        };
        Ok(Self {
            state: ForwardingState::new(),
            writer: TableWriter::new(),
            shared,
            resolver,
            ctl: ctl_tx,
            out: out_tx,
            io,
        })
    }

    /// The tables the I/O thread currently forwards with.
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

    fn apply_one(&mut self, d: &Delta) -> Result<(), BackendError> {
        // Open the socket before touching the model, so a port whose interface is
        // missing is refused whole and the model keeps matching the target.
        let new_socket = match (d, &self.resolver) {
            (Delta::Create(Object::Port(p)), Some(resolve)) => {
                let ifname = resolve(p).ok_or_else(|| {
                    BackendError::new(
                        BackendErrorKind::InvalidArgument,
                        format!("port {} has no Linux interface bound", p.name),
                    )
                })?;
                silence_kernel(&ifname);
                let sock = PacketSocket::open(&ifname).map_err(|e| {
                    BackendError::new(
                        BackendErrorKind::Unavailable,
                        format!("port {}: cannot open {ifname}: {e}", p.name),
                    )
                })?;
                Some((p.id, sock))
            }
            _ => None,
        };
        self.state.apply(d)?;
        if let Some((id, sock)) = new_socket {
            tracing::info!(port = %id, ifname = sock.ifname(), "port bound to Linux interface");
            let _ = self.ctl.send(Ctl::AddPort(id, sock));
            self.shared.waker.wake();
        }
        if let (Delta::Delete(ObjectKey::Port(id)), true) = (d, self.io.is_some()) {
            let _ = self.ctl.send(Ctl::RemovePort(*id));
            self.shared.waker.wake();
        }
        Ok(())
    }
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
            packet_io: self.io.is_some(),
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
        }
        results
    }

    fn read(&mut self) -> Result<ForwardingState, BackendError> {
        Ok(self.state.clone())
    }

    fn port_counters(&mut self) -> Vec<PortCounters> {
        let pc = self
            .shared
            .port_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = pc.values().cloned().collect();
        v.sort_by_key(|c| c.port);
        v
    }

    fn drop_counters(&mut self) -> Vec<(String, u64)> {
        self.shared
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .named()
    }

    fn packet_sender(&self) -> Option<PacketSender> {
        self.io.as_ref()?;
        let out = Mutex::new(self.out.clone());
        let shared = self.shared.clone();
        Some(Arc::new(move |p: PacketOut| {
            out.lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(p)
                .map_err(|_| {
                    BackendError::new(
                        BackendErrorKind::Unavailable,
                        "dataplane I/O thread has stopped",
                    )
                })?;
            shared.waker.wake();
            Ok(())
        }))
    }
}

impl Drop for X86Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.waker.wake();
        if let Some(h) = self.io.take() {
            let _ = h.join();
        }
    }
}

/// The forwarding thread: polls every port, runs each burst through the engine,
/// sends the results out grouped by port.
struct IoThread {
    shared: Arc<Shared>,
    ctl: Receiver<Ctl>,
    out: Receiver<PacketOut>,
    punt: PacketInSink,
    ports: Vec<(PortId, PacketSocket)>,
    counters: Counters,
    port_counters: HashMap<PortId, PortCounters>,
    pending: Vec<(PortId, usize)>,
    scratch: Option<RecvBatch>,
}

impl IoThread {
    fn new(
        shared: Arc<Shared>,
        ctl: Receiver<Ctl>,
        out: Receiver<PacketOut>,
        punt: PacketInSink,
    ) -> Self {
        Self {
            shared,
            ctl,
            out,
            punt,
            ports: Vec::new(),
            counters: Counters::default(),
            port_counters: HashMap::new(),
            pending: Vec::with_capacity(crate::afpacket::BATCH),
            scratch: None,
        }
    }

    fn run(mut self) {
        let mut batch = RecvBatch::default();
        let mut ready = Vec::new();
        let mut last_publish = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let mut fds = vec![self.shared.waker.as_raw_fd()];
            fds.extend(self.ports.iter().map(|(_, s)| s.as_raw_fd()));
            if let Err(e) = poll_readable(&fds, 100, &mut ready) {
                tracing::error!("dataplane poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if ready.first().copied().unwrap_or(false) {
                self.shared.waker.drain();
            }
            self.control();
            for i in 0..self.ports.len() {
                if !ready.get(i + 1).copied().unwrap_or(false) {
                    continue;
                }
                // Bounded work per port per round keeps ports fair.
                for _ in 0..8 {
                    let port = self.ports[i].0;
                    let n = match self.ports[i].1.recv_batch(&mut batch) {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(port = %port, "receive failed: {e}");
                            0
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    self.forward_batch(port, &mut batch, n);
                }
            }
            if last_publish.elapsed() >= Duration::from_millis(50) {
                self.publish();
                last_publish = Instant::now();
            }
        }
        self.publish();
    }

    fn control(&mut self) {
        while let Ok(c) = self.ctl.try_recv() {
            match c {
                Ctl::AddPort(id, sock) => {
                    self.ports.retain(|(p, _)| *p != id);
                    self.ports.push((id, sock));
                    self.port_counters
                        .entry(id)
                        .or_insert_with(|| PortCounters {
                            port: id,
                            ..Default::default()
                        });
                }
                Ctl::RemovePort(id) => {
                    self.ports.retain(|(p, _)| *p != id);
                    self.port_counters.remove(&id);
                }
            }
        }
        while let Ok(p) = self.out.try_recv() {
            match p.dest {
                PacketDest::Port(port) => self.send(port, &[&p.frame]),
                PacketDest::Ingress(port) => {
                    // One reusable batch for re-injected packets (a RecvBatch
                    // holds 32 frame buffers: too big to build per packet).
                    let mut b = self.scratch.take().unwrap_or_default();
                    b.bufs[0] = p.frame;
                    b.meta[0] = Default::default();
                    self.forward_batch(port, &mut b, 1);
                    self.scratch = Some(b);
                }
            }
        }
    }

    fn forward_batch(&mut self, in_port: PortId, batch: &mut RecvBatch, n: usize) {
        let tables = self.shared.tables.load();
        self.pending.clear();
        let pc = self
            .port_counters
            .entry(in_port)
            .or_insert_with(|| PortCounters {
                port: in_port,
                ..Default::default()
            });
        let keep_original = tables.has_copy_rules();
        for i in 0..n {
            pc.rx_packets += 1;
            pc.rx_bytes += batch.bufs[i].len() as u64;
            if batch.meta[i].truncated {
                pc.rx_errors += 1;
                continue;
            }
            let original = keep_original.then(|| batch.bufs[i].clone());
            match process(&tables, in_port, &mut batch.bufs[i], &mut self.counters) {
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
                    frame: batch.bufs[i].clone(),
                }),
                Verdict::Drop(_) => pc.rx_drops += 1,
            }
        }
        self.pending.sort_unstable_by_key(|(p, _)| *p);
        let pending = std::mem::take(&mut self.pending);
        for group in pending.chunk_by(|a, b| a.0 == b.0) {
            let frames: Vec<&[u8]> = group
                .iter()
                .map(|(_, i)| batch.bufs[*i].as_slice())
                .collect();
            self.send(group[0].0, &frames);
        }
        self.pending = pending;
    }

    fn send(&mut self, port: PortId, frames: &[&[u8]]) {
        let pc = self
            .port_counters
            .entry(port)
            .or_insert_with(|| PortCounters {
                port,
                ..Default::default()
            });
        let Some((_, sock)) = self.ports.iter().find(|(p, _)| *p == port) else {
            pc.tx_drops += frames.len() as u64;
            return;
        };
        match sock.send_batch(frames) {
            Ok(sent) => {
                pc.tx_packets += sent as u64;
                pc.tx_bytes += frames[..sent].iter().map(|f| f.len() as u64).sum::<u64>();
                pc.tx_drops += (frames.len() - sent) as u64;
            }
            Err(e) => {
                pc.tx_drops += frames.len() as u64;
                tracing::debug!(port = %port, "send failed: {e}");
            }
        }
    }

    fn publish(&self) {
        *self
            .shared
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.counters.clone();
        *self
            .shared
            .port_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.port_counters.clone();
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
