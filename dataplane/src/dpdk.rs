//! Packet I/O through DPDK (the `dpdk` feature): the EAL, a packet-buffer
//! pool, ports probed from device strings (`net_af_packet0,iface=veth1`,
//! `net_null0`, `net_memif0,role=server`, ...) or built from rings, and each
//! worker's view of a port ([`DpdkQueues`]: its receive queues and its own
//! transmit queue), which implements [`PacketIo`].
//!
//! Frames stay in their mbufs from receive to transmit: [`Mbuf`] implements
//! the engine's [`Frame`], so the pipeline rewrites the packet buffer in place
//! and a forwarded mbuf is handed to the egress device as it is.
//!
//! The EAL can be started once per process; [`eal`] starts it the first time
//! and returns the running one afterwards. Debian loads DPDK's drivers as
//! plugins from `<libdir>/dpdk/pmds-<ABI>`; the EAL is pointed at that
//! directory with `-d`, and a missing directory or driver is reported with the
//! package to install.
//!
//! This is an FFI module: every `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use crate::backend::{PacketIo, Received, RxBurst, TxFrames};
use crate::engine::Frame;
use dpdk_sys as sys;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::raw::{c_char, c_int, c_uint};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// Frames moved per burst.
pub const BURST: usize = 32;
/// Descriptors per receive and transmit queue.
const QUEUE_DESCRIPTORS: u16 = 1024;
/// Packet buffers in the pool shared by every port (about 75 MB).
const POOL_MBUFS: c_uint = 32 * 1024 - 1;
/// Per-lcore cache of the pool.
const POOL_CACHE: c_uint = 256;

/// What the EAL gets when the configuration gives no arguments: no hugepages,
/// no PCI scan, 512 MB of ordinary memory, no files shared with other DPDK
/// processes, no telemetry socket, one core for the EAL itself. Ports come
/// from virtual devices.
pub const DEFAULT_EAL_ARGS: &[&str] = &[
    "--no-huge",
    "--no-pci",
    "-m",
    "512",
    "--no-shconf",
    "--no-telemetry",
    "-l",
    "0",
];

/// What to install when DPDK's drivers are missing.
const DRIVER_HINT: &str = "install DPDK's drivers: `apt-get install dpdk` on Debian/Ubuntu \
    (each driver is also packaged alone, e.g. librte-net-af-packet23, librte-net-ring23)";

/// Why DPDK could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("DPDK's EAL did not start (arguments: {args}): {reason}")]
    Eal { args: String, reason: String },
    #[error("DPDK's drivers were not found: {0}")]
    Drivers(String),
    #[error("DPDK device {device:?}: {reason}")]
    Device { device: String, reason: String },
    #[error("DPDK: {0}")]
    Resource(String),
}

/// The text of a DPDK error number (`rte_errno` or a negative return code).
fn strerror(code: c_int) -> String {
    let code = code.abs();
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string, valid until the next call on this thread; it is
    // copied out at once.
    let s = unsafe { CStr::from_ptr(sys::rte_strerror(code)) };
    format!("{} (errno {code})", s.to_string_lossy())
}

fn rte_errno() -> c_int {
    // SAFETY: reads this thread's rte_errno through the shim.
    unsafe { sys::nos_errno() }
}

/// The running EAL and the packet-buffer pool every port shares.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
    pool: Pool,
}

#[derive(Debug, Clone, Copy)]
struct Pool(NonNull<sys::rte_mempool>);

// SAFETY: a DPDK mempool is made to be used from many threads at once (its
// ring is multi-producer/multi-consumer, its caches are per lcore).
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

static EAL: OnceLock<Result<Eal, String>> = OnceLock::new();

impl Eal {
    /// The arguments the EAL was started with (after the program name).
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// The directory of DPDK's driver plugins, as found when this was built.
pub fn pmd_dir() -> Option<PathBuf> {
    (!sys::PMD_DIR.is_empty()).then(|| PathBuf::from(sys::PMD_DIR))
}

/// Starts the EAL with `args` (the configuration's; [`DEFAULT_EAL_ARGS`] when
/// empty), or returns the EAL already running in this process. It can only
/// start once: later calls get the first one whatever their arguments (a
/// warning says so when they differ).
pub fn eal(args: &[String]) -> Result<&'static Eal, DpdkError> {
    let args: Vec<String> = if args.is_empty() {
        DEFAULT_EAL_ARGS.iter().map(|s| s.to_string()).collect()
    } else {
        args.to_vec()
    };
    let res = EAL.get_or_init(|| start_eal(&args));
    match res {
        Ok(e) => {
            if e.args != args {
                tracing::warn!(
                    running = ?e.args,
                    asked = ?args,
                    "DPDK's EAL is already running with other arguments; it starts once per process, so the running one is used"
                );
            }
            Ok(e)
        }
        Err(reason) => Err(DpdkError::Eal {
            args: args.join(" "),
            reason: reason.clone(),
        }),
    }
}

fn start_eal(args: &[String]) -> Result<Eal, String> {
    let mut argv: Vec<String> = vec!["nos-dataplane".into()];
    argv.extend(args.iter().cloned());
    // Debian's drivers are plugins: point the EAL at their directory unless
    // the arguments already name one.
    if !args.iter().any(|a| a == "-d" || a.starts_with("-d")) {
        match pmd_dir() {
            Some(dir) if dir.is_dir() => {
                argv.push("-d".into());
                argv.push(dir.display().to_string());
            }
            Some(dir) => {
                return Err(format!(
                    "DPDK's driver directory {} does not exist; {DRIVER_HINT}",
                    dir.display()
                ))
            }
            None => {
                return Err(format!(
                    "no DPDK driver directory was found when nos was built; {DRIVER_HINT}"
                ))
            }
        }
    }
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(|_| format!("EAL argument {a:?} contains NUL")))
        .collect::<Result<_, _>>()?;
    // The EAL keeps pointers into argv (and getopt permutes it): both live
    // for the rest of the process.
    let cargs: &'static [CString] = Vec::leak(cargs);
    let ptrs: &'static mut [*mut c_char] = Vec::leak(
        cargs
            .iter()
            .map(|c| c.as_ptr() as *mut c_char)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect::<Vec<_>>(),
    );
    let argc = argv.len() as c_int;
    let ptr_addr = ptrs.as_mut_ptr() as usize;
    // rte_eal_init pins the thread that calls it to the EAL's main core; a
    // thread of its own keeps the caller (a tokio worker, a test) unpinned.
    let rc = std::thread::Builder::new()
        .name("dpdk-eal-init".into())
        .spawn(move || {
            // SAFETY: argv is a NUL-terminated array of `argc` valid C strings
            // that live for the rest of the process (leaked above).
            let rc = unsafe { sys::rte_eal_init(argc, ptr_addr as *mut *mut c_char) };
            if rc < 0 {
                Err(strerror(rte_errno()))
            } else {
                Ok(())
            }
        })
        .map_err(|e| format!("cannot start the EAL's thread: {e}"))?
        .join()
        .map_err(|_| "the EAL's initialisation panicked".to_string())?;
    rc?;
    let name = CString::new("nos_mbufs").expect("no NUL");
    // SAFETY: the EAL is initialised; the name is a valid C string.
    let pool = unsafe {
        sys::rte_pktmbuf_pool_create(
            name.as_ptr(),
            POOL_MBUFS,
            POOL_CACHE,
            0,
            sys::RTE_MBUF_DEFAULT_BUF_SIZE,
            sys::SOCKET_ID_ANY,
        )
    };
    let pool = NonNull::new(pool).ok_or_else(|| {
        format!(
            "cannot create the packet-buffer pool ({POOL_MBUFS} buffers): {}; give the EAL more memory (-m)",
            strerror(rte_errno())
        )
    })?;
    tracing::info!(args = ?argv, version = sys::VERSION, "DPDK EAL started");
    Ok(Eal {
        args: args.to_vec(),
        pool: Pool(pool),
    })
}

/// Registers the calling thread with the EAL (an lcore id, so the buffer
/// pool's per-core cache serves it); unregisters on drop. `None` when the
/// EAL is not running or has no lcore left (the thread then works uncached).
#[derive(Debug)]
pub struct LcoreGuard(());

impl LcoreGuard {
    pub fn register() -> Option<Self> {
        if !matches!(EAL.get(), Some(Ok(_))) {
            return None;
        }
        // SAFETY: the EAL is initialised; registering the calling thread has
        // no other precondition.
        let rc = unsafe { sys::rte_thread_register() };
        if rc != 0 {
            tracing::debug!("rte_thread_register: {}", strerror(rte_errno()));
            return None;
        }
        Some(Self(()))
    }
}

impl Drop for LcoreGuard {
    fn drop(&mut self) {
        // SAFETY: this thread registered itself in `register`.
        unsafe { sys::rte_thread_unregister() }
    }
}

// ---- packet buffers ------------------------------------------------------------

/// An owned mbuf (one segment, as the dataplane configures its ports); freed
/// when dropped unless handed to a device.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf value; DPDK allows freeing it
// from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: the pointer is a live mbuf this value owns.
        unsafe { self.0.as_ref() }
    }

    fn raw_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: the pointer is a live mbuf this value owns exclusively.
        unsafe { self.0.as_mut() }
    }

    /// Whether the frame spans several segments (the dataplane handles
    /// single-segment frames only; such a frame is counted and dropped).
    pub fn is_segmented(&self) -> bool {
        let m = self.raw();
        m.nb_segs != 1 || u32::from(m.data_len) != m.pkt_len
    }

    /// Copies `bytes` into the buffer as its whole frame; `false` when it does not fit.
    pub fn set(&mut self, bytes: &[u8]) -> bool {
        let m = self.raw_mut();
        let cap = usize::from(m.buf_len).saturating_sub(usize::from(m.data_off));
        if bytes.len() > cap {
            return false;
        }
        m.data_len = bytes.len() as u16;
        m.pkt_len = bytes.len() as u32;
        self.bytes_mut().copy_from_slice(bytes);
        true
    }

    fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Frame for Mbuf {
    #[inline]
    fn bytes(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off is the start of the frame and data_len
        // bytes of it are initialised (set by the driver or by `set`); the
        // buffer lives as long as this Mbuf.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in `bytes`, and this Mbuf owns the buffer exclusively.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        let m = self.raw_mut();
        if len < usize::from(m.data_len) {
            m.data_len = len as u16;
            m.pkt_len = len as u32;
        }
    }

    #[inline]
    fn grow_to(&mut self, len: usize) -> bool {
        if len <= usize::from(self.raw().data_len) {
            return true;
        }
        if len - usize::from(self.raw().data_len) > self.room() {
            return false;
        }
        let m = self.raw_mut();
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        true
    }

    #[inline]
    fn room(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len)
            .saturating_sub(usize::from(m.data_off))
            .saturating_sub(usize::from(m.data_len))
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        let mut p = self.0.as_ptr();
        // SAFETY: the mbuf is owned by this value and freed exactly once.
        unsafe { sys::rte_pktmbuf_free_bulk(&mut p, 1) }
    }
}

/// Up to [`BURST`] mbufs: what a receive burst filled, or what is about to
/// be sent. Slots are `None` once their mbuf has been taken; dropping the
/// burst frees what is left.
#[derive(Debug)]
pub struct MbufBurst {
    slots: [Option<Mbuf>; BURST],
    len: usize,
}

impl Default for MbufBurst {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| None),
            len: 0,
        }
    }
}

impl MbufBurst {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mbuf in slot `i`, if it is still there.
    pub fn get(&self, i: usize) -> Option<&Mbuf> {
        self.slots.get(i)?.as_ref()
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Mbuf> {
        self.slots.get_mut(i)?.as_mut()
    }

    /// Takes the mbuf out of slot `i`.
    pub fn take(&mut self, i: usize) -> Option<Mbuf> {
        self.slots.get_mut(i)?.take()
    }

    /// Appends an mbuf; gives it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.slots[self.len] = Some(m);
        self.len += 1;
        Ok(())
    }

    /// Frees every mbuf still held, in one call, and empties the burst.
    pub fn clear(&mut self) {
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        let mut k = 0;
        for s in self.slots[..self.len].iter_mut() {
            if let Some(m) = s.take() {
                raw[k] = m.into_raw();
                k += 1;
            }
        }
        self.len = 0;
        if k > 0 {
            // SAFETY: raw[..k] are distinct mbufs this burst owned; ownership
            // was released by into_raw.
            unsafe { sys::rte_pktmbuf_free_bulk(raw.as_mut_ptr(), k as c_uint) }
        }
    }

    /// Compacts the held mbufs to the front (after slots were taken), so that
    /// slots `0..len` are all `Some`.
    fn compact(&mut self) {
        let mut w = 0;
        for r in 0..self.len {
            if self.slots[r].is_some() {
                self.slots.swap(w, r);
                w += 1;
            }
        }
        self.len = w;
    }

    /// The slots as the raw pointer array DPDK's burst functions take.
    fn raw_slots(&mut self) -> *mut *mut sys::rte_mbuf {
        // Option<Mbuf> is a pointer with None as null (Mbuf is a transparent
        // NonNull), so the array has the layout of `*mut rte_mbuf[BURST]`.
        self.slots.as_mut_ptr().cast()
    }

    /// Allocates one mbuf per frame from the pool and copies the frames in.
    /// Frames that do not fit one buffer are skipped; returns how many were
    /// taken.
    pub fn fill(&mut self, eal: &Eal, frames: &[&[u8]]) -> Result<usize, DpdkError> {
        let want = frames.len().min(BURST - self.len);
        if want == 0 {
            return Ok(0);
        }
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        // SAFETY: the pool is live; raw has room for `want` pointers.
        let rc = unsafe {
            sys::nos_pktmbuf_alloc_bulk(eal.pool.0.as_ptr(), raw.as_mut_ptr(), want as c_uint)
        };
        if rc != 0 {
            return Err(DpdkError::Resource(format!(
                "the packet-buffer pool is exhausted ({} free)",
                // SAFETY: the pool is live.
                unsafe { sys::nos_mempool_avail(eal.pool.0.as_ptr()) }
            )));
        }
        let mut taken = 0;
        for (p, f) in raw[..want].iter().zip(frames) {
            // SAFETY: alloc_bulk returned `want` valid, reset mbufs, now owned here.
            let mut m = Mbuf(unsafe { NonNull::new_unchecked(*p) });
            if m.set(f) {
                let _ = self.push(m);
                taken += 1;
            }
        }
        Ok(taken)
    }
}

impl Drop for MbufBurst {
    fn drop(&mut self) {
        self.clear();
    }
}

// ---- ports ----------------------------------------------------------------------

/// A DPDK port the dataplane configured and started; stopped (and its device
/// removed, when the dataplane probed it) when the last handle goes.
#[derive(Debug)]
pub struct DpdkPort {
    id: u16,
    device: String,
    driver: String,
    probed: bool,
    rx_queues: u16,
    tx_queues: u16,
}

/// The device name of a device string: what comes before the first comma.
fn device_name(devargs: &str) -> &str {
    devargs.split(',').next().unwrap_or(devargs).trim()
}

/// The driver a virtual device name asks for: `net_af_packet0` → `net_af_packet`.
pub fn driver_of(device: &str) -> &str {
    device.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// The Linux interface a `net_af_packet` device string binds (`iface=`).
pub fn af_packet_iface(devargs: &str) -> Option<&str> {
    if !driver_of(device_name(devargs)).starts_with("net_af_packet") {
        return None;
    }
    devargs
        .split(',')
        .skip(1)
        .find_map(|kv| kv.trim().strip_prefix("iface="))
}

fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: `c` is a valid C string and `id` a live u16.
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

/// The plugin file a driver would be loaded from, if the plugin directory
/// has one.
fn plugin_present(dir: &Path, driver: &str) -> bool {
    let stem = format!("librte_{driver}.so");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with(&stem))
        })
        .unwrap_or(false)
}

impl DpdkPort {
    /// Opens the port a device string names: probes the device (or, when a
    /// port of that name already exists, such as one built from rings, takes
    /// it as it is), sets up `workers` transmit queues (one per worker) and up
    /// to `workers` receive queues spread by RSS, and starts it in
    /// promiscuous mode. For `net_af_packet` devices without `qpairs=`, as
    /// many queue pairs as workers are asked for.
    pub fn open(eal: &Eal, devargs: &str, workers: u16) -> Result<Arc<Self>, DpdkError> {
        let workers = workers.max(1);
        let name = device_name(devargs).to_string();
        let err = |reason: String| DpdkError::Device {
            device: devargs.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(err("the device string has no device name".into()));
        }
        let (id, probed) = match port_by_name(&name) {
            Some(id) => (id, false),
            None => {
                let mut args = devargs.trim().to_string();
                if driver_of(&name) == "net_af_packet" && workers > 1 && !args.contains("qpairs=") {
                    args.push_str(&format!(",qpairs={workers}"));
                }
                let c = CString::new(args.as_str())
                    .map_err(|_| err("the device string contains NUL".into()))?;
                // SAFETY: the EAL is running (`eal` proves it) and `c` is a valid C string.
                let rc = unsafe { sys::rte_dev_probe(c.as_ptr()) };
                if rc != 0 {
                    let driver = driver_of(&name);
                    let hint = match pmd_dir() {
                        Some(dir) if !plugin_present(&dir, driver) => format!(
                            "; the driver {driver} is not in {}: {DRIVER_HINT}",
                            dir.display()
                        ),
                        _ => String::new(),
                    };
                    return Err(err(format!("probe failed: {}{hint}", strerror(rc))));
                }
                let id = port_by_name(&name).ok_or_else(|| {
                    err(format!("the device was probed but no port is named {name}"))
                })?;
                (id, true)
            }
        };
        // From here on, dropping `port` stops it (and removes what we probed).
        let mut port = DpdkPort {
            id,
            device: devargs.to_string(),
            driver: String::new(),
            probed,
            rx_queues: 0,
            tx_queues: 0,
        };
        // SAFETY: nos_port_info is plain data; zero is a valid value.
        let mut info: sys::nos_port_info = unsafe { std::mem::zeroed() };
        // SAFETY: `id` is a valid port and `info` a live struct.
        let rc = unsafe { sys::nos_port_info(id, &mut info) };
        if rc != 0 {
            return Err(err(format!(
                "cannot read the device's capabilities: {}",
                strerror(rc)
            )));
        }
        // SAFETY: the shim NUL-terminates `driver` (strncpy into a zeroed array
        // one byte shorter than it).
        port.driver = unsafe { CStr::from_ptr(info.driver.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        if info.max_tx_queues < workers {
            return Err(err(format!(
                "the device offers {} transmit queues and the dataplane needs one per worker ({workers}){}",
                info.max_tx_queues,
                if driver_of(&name) == "net_af_packet" {
                    format!("; add qpairs={workers} to the device string")
                } else {
                    String::new()
                }
            )));
        }
        let rxq = workers.min(info.max_rx_queues.max(1));
        let mut stage: *const c_char = std::ptr::null();
        // SAFETY: the port exists and is stopped; the pool is live; `stage`
        // receives a pointer to a static string.
        let rc = unsafe {
            sys::nos_port_start(
                id,
                rxq,
                workers,
                QUEUE_DESCRIPTORS,
                eal.pool.0.as_ptr(),
                1,
                &mut stage,
            )
        };
        if rc != 0 {
            let stage = if stage.is_null() {
                "setup".to_string()
            } else {
                // SAFETY: the shim sets `stage` to a string literal.
                unsafe { CStr::from_ptr(stage) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(err(format!("{stage}: {}", strerror(rc))));
        }
        port.rx_queues = rxq;
        port.tx_queues = workers;
        tracing::info!(
            device = %port.device,
            port = id,
            driver = %port.driver,
            rx_queues = rxq,
            tx_queues = workers,
            "DPDK port started"
        );
        Ok(Arc::new(port))
    }

    pub fn port_id(&self) -> u16 {
        self.id
    }

    pub fn driver(&self) -> &str {
        &self.driver
    }

    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }

    /// Worker `worker`'s handle: the receive queues `q` with `q % workers ==
    /// worker` and transmit queue `worker`.
    pub fn queues(self: &Arc<Self>, eal: &'static Eal, worker: u16, workers: u16) -> DpdkQueues {
        let rx: Vec<u16> = (0..self.rx_queues)
            .filter(|q| q % workers.max(1) == worker)
            .collect();
        DpdkQueues {
            port: self.clone(),
            eal,
            rx,
            next_rx: 0,
            tx: worker.min(self.tx_queues.saturating_sub(1)),
        }
    }

    /// Frames the device lost before the dataplane saw them (no descriptor,
    /// no buffer) and receive errors it counted.
    pub fn missed(&self) -> u64 {
        let mut s = sys::nos_port_stats::default();
        // SAFETY: the port is live and `s` a live struct.
        let rc = unsafe { sys::nos_port_stats(self.id, &mut s) };
        if rc != 0 {
            return 0;
        }
        s.imissed + s.rx_nombuf + s.ierrors
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        // SAFETY: the port is live and no handle to it remains (this is the
        // last owner), so no worker polls it any more.
        let rc = unsafe {
            if self.probed {
                sys::nos_port_remove(self.id)
            } else {
                // A port built elsewhere (from rings) is stopped and left to its builder.
                sys::rte_eth_dev_stop(self.id)
            }
        };
        if rc != 0 {
            tracing::warn!(device = %self.device, "stopping the DPDK port: {}", strerror(rc));
        } else {
            tracing::info!(device = %self.device, "DPDK port stopped");
        }
    }
}

/// One worker's handle on a [`DpdkPort`]: its share of the receive queues and
/// its own transmit queue, so workers never share a queue and need no lock.
#[derive(Debug)]
pub struct DpdkQueues {
    port: Arc<DpdkPort>,
    eal: &'static Eal,
    rx: Vec<u16>,
    next_rx: usize,
    tx: u16,
}

impl DpdkQueues {
    /// Receives up to [`BURST`] frames from the next of this worker's queues
    /// into an empty `burst`.
    pub fn rx_burst(&mut self, burst: &mut MbufBurst) -> usize {
        if self.rx.is_empty() {
            return 0;
        }
        burst.clear();
        let q = self.rx[self.next_rx];
        self.next_rx = (self.next_rx + 1) % self.rx.len();
        // SAFETY: the port is started, queue `q` is this worker's alone, and
        // the slots have room for BURST pointers (all None, i.e. null).
        let n = unsafe { sys::nos_rx_burst(self.port.id, q, burst.raw_slots(), BURST as u16) };
        burst.len = usize::from(n);
        burst.len
    }

    /// Hands the burst's mbufs to this worker's transmit queue. The device
    /// takes a prefix; what it did not take stays in the burst.
    pub fn tx_burst(&mut self, burst: &mut MbufBurst) -> usize {
        burst.compact();
        if burst.len == 0 {
            return 0;
        }
        // SAFETY: slots 0..len hold owned mbufs (compacted); the queue is this
        // worker's alone. The device takes ownership of the first `sent`.
        let sent = unsafe {
            sys::nos_tx_burst(self.port.id, self.tx, burst.raw_slots(), burst.len as u16)
        };
        let sent = usize::from(sent);
        for s in burst.slots[..sent].iter_mut() {
            // The device owns them now: forget, don't free.
            if let Some(m) = s.take() {
                std::mem::forget(m);
            }
        }
        burst.compact();
        sent
    }

    pub fn port(&self) -> &Arc<DpdkPort> {
        &self.port
    }
}

impl PacketIo for DpdkQueues {
    fn describe(&self) -> String {
        format!("DPDK {} ({})", self.port.device, self.port.driver)
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        None
    }

    fn receive(&mut self, rx: &mut RxBurst) -> io::Result<Received> {
        Ok(Received::Mbufs(self.rx_burst(&mut rx.mbufs)))
    }

    fn transmit(&mut self, frames: TxFrames<'_>) -> io::Result<usize> {
        match frames {
            TxFrames::Mbufs(burst) => Ok(self.tx_burst(burst)),
            TxFrames::Bytes(list) => {
                let mut sent = 0;
                for chunk in list.chunks(BURST) {
                    let mut b = MbufBurst::default();
                    b.fill(self.eal, chunk)
                        .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e.to_string()))?;
                    sent += self.tx_burst(&mut b);
                }
                Ok(sent)
            }
        }
    }

    fn missed(&self) -> u64 {
        self.port.missed()
    }
}

// ---- rings (tests and benchmarks) --------------------------------------------

/// A DPDK ring of mbufs, for ports built from rings ([`port_from_rings`]):
/// tests and benchmarks feed frames in and read them out.
#[derive(Debug)]
pub struct Ring(NonNull<sys::rte_ring>);

// SAFETY: rings created with flags 0 are multi-producer/multi-consumer.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

static RING_SEQ: AtomicU32 = AtomicU32::new(0);

impl Ring {
    /// A ring of `size` slots (a power of two; one slot stays empty).
    pub fn new(_eal: &Eal, size: u32) -> Result<Self, DpdkError> {
        let name = format!("nos_ring{}", RING_SEQ.fetch_add(1, Ordering::Relaxed));
        let c = CString::new(name).expect("no NUL");
        // SAFETY: the EAL is running; `c` is a valid C string.
        let r = unsafe { sys::rte_ring_create(c.as_ptr(), size, sys::SOCKET_ID_ANY, 0) };
        NonNull::new(r).map(Ring).ok_or_else(|| {
            DpdkError::Resource(format!("cannot create a ring: {}", strerror(rte_errno())))
        })
    }

    /// Moves the burst's mbufs into the ring; what does not fit stays.
    pub fn enqueue(&self, burst: &mut MbufBurst) -> usize {
        burst.compact();
        // SAFETY: slots 0..len are owned mbufs; the ring takes the first `n`.
        let n = unsafe {
            sys::nos_ring_enqueue_burst(
                self.0.as_ptr(),
                burst.raw_slots().cast(),
                burst.len as c_uint,
            )
        } as usize;
        for s in burst.slots[..n].iter_mut() {
            if let Some(m) = s.take() {
                std::mem::forget(m);
            }
        }
        burst.compact();
        n
    }

    /// Takes up to a burst of mbufs out of the ring into an empty `burst`.
    pub fn dequeue(&self, burst: &mut MbufBurst) -> usize {
        burst.clear();
        // SAFETY: the slots have room for BURST pointers; the ring hands over
        // ownership of the mbufs it returns.
        let n = unsafe {
            sys::nos_ring_dequeue_burst(self.0.as_ptr(), burst.raw_slots().cast(), BURST as c_uint)
        };
        burst.len = n as usize;
        burst.len
    }

    pub fn count(&self) -> usize {
        // SAFETY: the ring is live.
        unsafe { sys::nos_ring_count(self.0.as_ptr()) as usize }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut b = MbufBurst::default();
        while self.dequeue(&mut b) > 0 {
            b.clear();
        }
        // SAFETY: the ring is live and owned by this value.
        unsafe { sys::rte_ring_free(self.0.as_ptr()) }
    }
}

/// Builds an ethdev whose receive queues read `rx` and whose transmit queues
/// write `tx` (DPDK's ring driver names it `net_ring_<name>`); a port bound to
/// the device string `net_ring_<name>` then uses it. The rings must outlive
/// the port. Returns the DPDK port id.
pub fn port_from_rings(
    _eal: &Eal,
    name: &str,
    rx: &[&Ring],
    tx: &[&Ring],
) -> Result<u16, DpdkError> {
    let c = CString::new(name)
        .map_err(|_| DpdkError::Resource("ring port name contains NUL".into()))?;
    let rxp: Vec<*mut sys::rte_ring> = rx.iter().map(|r| r.0.as_ptr()).collect();
    let txp: Vec<*mut sys::rte_ring> = tx.iter().map(|r| r.0.as_ptr()).collect();
    // SAFETY: the arrays hold live rings and their lengths are passed.
    let rc = unsafe {
        sys::rte_eth_from_rings(
            c.as_ptr(),
            rxp.as_ptr(),
            rxp.len() as c_uint,
            txp.as_ptr(),
            txp.len() as c_uint,
            0,
        )
    };
    if rc < 0 {
        return Err(DpdkError::Device {
            device: name.to_string(),
            reason: format!("rte_eth_from_rings: {}", strerror(rte_errno())),
        });
    }
    Ok(rc as u16)
}

/// The running EAL, if any (for code that only uses DPDK when it is there).
pub fn running() -> Option<&'static Eal> {
    EAL.get().and_then(|r| r.as_ref().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings() {
        assert_eq!(device_name("net_af_packet0,iface=veth1"), "net_af_packet0");
        assert_eq!(driver_of("net_af_packet0"), "net_af_packet");
        assert_eq!(driver_of("net_null12"), "net_null");
        assert_eq!(
            af_packet_iface("net_af_packet0,iface=veth1,qpairs=2"),
            Some("veth1")
        );
        assert_eq!(af_packet_iface("net_null0"), None);
        assert_eq!(af_packet_iface("net_af_packet1"), None);
    }

    #[test]
    fn plugin_lookup_names_the_file() {
        let Some(dir) = pmd_dir() else { return };
        if !dir.is_dir() {
            return;
        }
        assert!(plugin_present(&dir, "net_ring"));
        assert!(plugin_present(&dir, "net_af_packet"));
        assert!(!plugin_present(&dir, "net_nonexistent"));
    }
}

// ---- DPDK's LPM (benchmarks) ---------------------------------------------------

/// DPDK's IPv4 LPM (`rte_lpm`, DIR-24-8), for comparison with the engine's
/// tables in the LPM benchmark.
#[derive(Debug)]
pub struct RteLpm(NonNull<sys::rte_lpm>);

// SAFETY: lookups only read the tables; adds need `&mut self`.
unsafe impl Send for RteLpm {}
// SAFETY: as above.
unsafe impl Sync for RteLpm {}

static LPM_SEQ: AtomicU32 = AtomicU32::new(0);

impl RteLpm {
    /// An empty table for up to `max_rules` prefixes, `tbl8s` of them
    /// longer than /24 in distinct /24s.
    pub fn new(_eal: &Eal, max_rules: u32, tbl8s: u32) -> Result<Self, DpdkError> {
        let name = format!("nos_lpm{}", LPM_SEQ.fetch_add(1, Ordering::Relaxed));
        let c = CString::new(name).expect("no NUL");
        // SAFETY: the EAL is running; `c` is a valid C string.
        let l = unsafe { sys::nos_lpm_create(c.as_ptr(), sys::SOCKET_ID_ANY, max_rules, tbl8s) };
        NonNull::new(l).map(RteLpm).ok_or_else(|| {
            DpdkError::Resource(format!(
                "cannot create an rte_lpm: {}",
                strerror(rte_errno())
            ))
        })
    }

    /// Adds `addr/len` → `value` (24 bits).
    pub fn add(&mut self, addr: u32, len: u8, value: u32) -> Result<(), DpdkError> {
        // SAFETY: the table is live and owned by `self`.
        let rc = unsafe { sys::rte_lpm_add(self.0.as_ptr(), addr, len, value) };
        if rc < 0 {
            return Err(DpdkError::Resource(format!(
                "rte_lpm_add {addr:#x}/{len}: {}",
                strerror(-rc)
            )));
        }
        Ok(())
    }

    /// Looks up `addrs` into `out` (`u32::MAX` for a miss).
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [u32]) {
        let n = addrs.len().min(out.len());
        // SAFETY: both slices hold at least `n` elements; the table is live.
        unsafe {
            sys::nos_lpm_lookup_bulk(
                self.0.as_ptr(),
                addrs.as_ptr(),
                out.as_mut_ptr(),
                n as c_uint,
            )
        }
    }
}

impl Drop for RteLpm {
    fn drop(&mut self) {
        // SAFETY: the table was created by `new` and is freed once.
        unsafe { sys::rte_lpm_free(self.0.as_ptr()) }
    }
}
