//! Full-table ingest (issue 3, "Figures to measure").
//!
//! A feeder that speaks BGP itself announces N distinct IPv4 prefixes (default
//! 1,000,000, with a prefix-length mix like today's global table) in P distinct
//! attribute sets (default 100,000) over one eBGP session. Every UPDATE is
//! generated and encoded with the project's codec before anything is timed, and
//! the same bytes go to each receiver in turn:
//!
//! * `frr`: FRR's bgpd alone (no zebra) in a network namespace, veth to the
//!   root namespace where the feeder runs. Measured: Established → `pfxRcd` = N
//!   (`show bgp ipv4 unicast summary json`), → a best path for the last prefix
//!   sent (bgpd's decision process runs from a FIFO queue behind `pfxRcd`, so
//!   this is when its Loc-RIB holds the whole table), and bgpd's peak RSS.
//! * `gobgp`: gobgpd in a namespace likewise. Measured: Established → accepted
//!   = N (`gobgp neighbor -j`) and → N destinations in the global RIB
//!   (`gobgp global rib summary`), and gobgpd's peak RSS.
//! * `nos`: this project's stack in this process, wired as `nosd::daemon` wires
//!   it but without packet I/O: the BGP speaker and its session tasks, the
//!   router task, and the driver thread over a detached x86 backend, peering on
//!   127.0.0.1 at a non-standard port. Measured: Established → N prefixes in the
//!   Loc-RIB (the speaker's Loc-RIB changes, counted on their way to the router
//!   task), → N BGP routes in the driver's installed forwarding model, and this
//!   process's peak RSS (VmHWM, reset just before the stack starts; it includes
//!   the pre-encoded feed, which is resident before the reset).
//!
//! "Established" is the moment the feeder sends its KEEPALIVE in OpenConfirm,
//! after the peer's OPEN and KEEPALIVE; the feeder then writes every UPDATE as
//! fast as TCP takes it, then End-of-RIB, and keeps the session up (KEEPALIVE
//! every 30 s, hold time 180 s) until the receiver is measured.
//!
//! The anchors run first and nos last: a nos run that times out can leave its
//! tasks busy for a while, and that must not take CPU from FRR or GoBGP.
//!
//! ```text
//! cargo bench -p nosd --bench bgp_ingest
//! cargo bench -p nosd --bench bgp_ingest -- --prefixes 100000 --paths 10000 --only nos,frr
//! ```
//!
//! Options: `--prefixes N`, `--paths P`, `--only nos,frr,gobgp`, `--timeout S`
//! (per receiver; default 180 s per million prefixes, at least 30 s),
//! `--seed X`. FRR and GoBGP need root, iproute2 and the `frr` and `gobgpd`
//! packages; a receiver that cannot run is skipped with a line saying why.
//! `RUST_LOG` turns on the nos stack's logs (to stderr).

use anyhow::Context;
use ipnet::{IpNet, Ipv4Net};
use nos_core::config::Config;
use nos_core::driver::{Driver, DriverEvent, DriverHandle};
use nos_core::ObjectKey;
use nosd::lab::{have, run, Lab};
use routing::bgp::codec;
use routing::bgp::msg::{
    AsSegment, Capability, Message, Open, Origin, PathAttrs, SessionCaps, AS_TRANS, IPV4_UNICAST,
};
use routing::bgp::speaker::{BgpQuery, BgpRibChange, Speaker};
use routing::host::{HostView, NeighborEvent};
use routing::router::{Router, RouterQuery};
use serde_json::Value;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// The feeder's AS: 4-octet, so the OPEN carries AS_TRANS and every AS_PATH
/// needs the 4-octet encoding.
const FEEDER_AS: u32 = 4_200_000_001;
const NOS_AS: u32 = 64500;
const FRR_AS: u32 = 64501;
const GOBGP_AS: u32 = 64502;
const HOLD_TIME: u16 = 180;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// UPDATEs are handed to TCP in chunks of whole messages of about this size,
/// so a KEEPALIVE can go between two chunks.
const CHUNK: usize = 64 * 1024;
/// The BGP message type of UPDATE (RFC 4271 section 4.1).
const MSG_UPDATE: u8 = 2;
/// How often the progress of a run is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn main() {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bgp_ingest: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    watch_signals();
    let net = LinkNet::for_process();
    let started = Instant::now();
    let feed = match Feed::generate(&args, net.feeder) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("bgp_ingest: cannot build the feed: {e:#}");
            std::process::exit(1);
        }
    };
    feed.describe(started.elapsed());
    let timeout = args.timeout.unwrap_or_else(|| {
        let per_million = 180.0 * args.prefixes as f64 / 1e6;
        Duration::from_secs_f64(per_million.max(30.0))
    });
    println!(
        "per-receiver timeout {:.0} s; load average at start: {}",
        timeout.as_secs_f64(),
        loadavg()
    );
    let mut outcomes = Vec::new();
    for which in [Which::Frr, Which::Gobgp, Which::Nos] {
        if !args.only.contains(&which) || interrupted() {
            continue;
        }
        println!();
        let o = match which {
            Which::Frr => run_frr(&feed, net, timeout),
            Which::Gobgp => run_gobgp(&feed, net, timeout),
            Which::Nos => run_nos(&feed, net, timeout),
        };
        outcomes.push(o);
    }
    summarize(&feed, &outcomes);
    // A nos run that timed out may leave tasks busy; they are not waited for.
    std::process::exit(if interrupted() { 130 } else { 0 });
}

const USAGE: &str = "usage: cargo bench -p nosd --bench bgp_ingest -- \
[--prefixes N] [--paths P] [--only nos,frr,gobgp] [--timeout SECONDS] [--seed X]";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Nos,
    Frr,
    Gobgp,
}

#[derive(Debug)]
struct Args {
    prefixes: usize,
    paths: usize,
    only: Vec<Which>,
    timeout: Option<Duration>,
    seed: u64,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut a = Args {
            prefixes: 1_000_000,
            paths: 100_000,
            only: vec![Which::Nos, Which::Frr, Which::Gobgp],
            timeout: None,
            seed: 1,
        };
        let mut it = std::env::args().skip(1);
        let num = |v: Option<String>, name: &str| -> Result<u64, String> {
            let v = v.ok_or_else(|| format!("{name} needs a value"))?;
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        while let Some(x) = it.next() {
            match x.as_str() {
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                "--prefixes" => a.prefixes = num(it.next(), "--prefixes")? as usize,
                "--paths" => a.paths = num(it.next(), "--paths")? as usize,
                "--timeout" => a.timeout = Some(Duration::from_secs(num(it.next(), "--timeout")?)),
                "--seed" => a.seed = num(it.next(), "--seed")?,
                "--only" => {
                    let v = it.next().ok_or("--only needs a value")?;
                    a.only = v
                        .split(',')
                        .map(|s| match s.trim() {
                            "nos" => Ok(Which::Nos),
                            "frr" => Ok(Which::Frr),
                            "gobgp" => Ok(Which::Gobgp),
                            o => Err(format!("--only: unknown receiver {o:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                o => return Err(format!("unknown argument {o:?}")),
            }
        }
        if a.prefixes == 0 || a.paths == 0 {
            return Err("--prefixes and --paths must be at least 1".into());
        }
        if a.paths > a.prefixes {
            return Err("--paths cannot exceed --prefixes (every set carries a prefix)".into());
        }
        Ok(a)
    }
}

/// SIGINT or SIGTERM ends the measurement loops, so the namespaces and daemons
/// are removed by their guards before the process exits.
fn watch_signals() {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut term) = signal(SignalKind::terminate()) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                INTERRUPTED.store(true, Ordering::SeqCst);
                eprintln!("bgp_ingest: interrupted; cleaning up");
            });
        });
}

// ---- the link between the feeder and a daemon's namespace ------------------

/// A /30 in 198.19.0.0/16 (benchmarking range), chosen from the process id so
/// concurrent runs do not collide: the feeder is .1, the receiver .2. nos uses
/// the same next hop, on an interface it is configured with.
#[derive(Clone, Copy, Debug)]
struct LinkNet {
    feeder: Ipv4Addr,
    receiver: Ipv4Addr,
}

impl LinkNet {
    fn for_process() -> Self {
        let pid = std::process::id();
        let third = (pid % 250) as u8;
        let fourth = ((pid / 250) % 64) as u8 * 4;
        Self {
            feeder: Ipv4Addr::new(198, 19, third, fourth + 1),
            receiver: Ipv4Addr::new(198, 19, third, fourth + 2),
        }
    }
}

// ---- the feed -----------------------------------------------------------------

/// SplitMix64: small, fast and deterministic for a given seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn weighted<T: Copy>(&mut self, choices: &[(T, u64)]) -> T {
        let total: u64 = choices.iter().map(|c| c.1).sum();
        let mut x = self.below(total);
        for &(v, w) in choices {
            if x < w {
                return v;
            }
            x -= w;
        }
        choices[choices.len() - 1].0
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Ranges no generated prefix may overlap: "this network", private, shared,
/// loopback, link-local, IETF and documentation ranges, the benchmarking range
/// the labs use, multicast and reserved.
const EXCLUDED: [(u32, u8); 13] = [
    (u32::from_be_bytes([0, 0, 0, 0]), 8),
    (u32::from_be_bytes([10, 0, 0, 0]), 8),
    (u32::from_be_bytes([100, 64, 0, 0]), 10),
    (u32::from_be_bytes([127, 0, 0, 0]), 8),
    (u32::from_be_bytes([169, 254, 0, 0]), 16),
    (u32::from_be_bytes([172, 16, 0, 0]), 12),
    (u32::from_be_bytes([192, 0, 0, 0]), 24),
    (u32::from_be_bytes([192, 0, 2, 0]), 24),
    (u32::from_be_bytes([192, 168, 0, 0]), 16),
    (u32::from_be_bytes([198, 18, 0, 0]), 15),
    (u32::from_be_bytes([198, 51, 100, 0]), 24),
    (u32::from_be_bytes([203, 0, 113, 0]), 24),
    (u32::from_be_bytes([224, 0, 0, 0]), 3),
];

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Whether `addr/len` overlaps one of [`EXCLUDED`] (either contains the other).
fn excluded(addr: u32, len: u8) -> bool {
    EXCLUDED.iter().any(|&(net, elen)| {
        let m = mask(len.min(elen));
        addr & m == net & m
    })
}

/// How many prefixes of each length (index = length) a feed of `n` has:
/// about 60 % /24, 10 % /23, 10 % /22, 12 % /16–/21, 5 % /8–/15, 3 % /25–/32.
/// No length gets more than 3/4 of the prefixes that exist at that length
/// (so short lengths stay possible at any N); the excess moves one bit longer.
fn length_quotas(n: usize) -> [usize; 33] {
    // Shares in parts per million.
    let mut share = [0u64; 33];
    share[24] = 600_000;
    share[23] = 100_000;
    share[22] = 100_000;
    for (l, w) in [(16, 10), (17, 6), (18, 10), (19, 20), (20, 26), (21, 28)] {
        share[l] = 120_000 * w / 100;
    }
    // /8–/15 in proportion to the room at each length.
    let room: u64 = (8..=15).map(|l| 1u64 << l).sum();
    for (l, s) in share.iter_mut().enumerate().take(16).skip(8) {
        *s = 50_000 * (1u64 << l) / room;
    }
    for (l, w) in [
        (25, 30),
        (26, 20),
        (27, 15),
        (28, 12),
        (29, 10),
        (30, 6),
        (31, 2),
        (32, 5),
    ] {
        share[l] = 30_000 * w / 100;
    }
    let mut q = [0usize; 33];
    for (l, s) in share.iter().enumerate() {
        q[l] = (n as u128 * u128::from(*s) / 1_000_000) as usize;
    }
    let assigned: usize = q.iter().sum();
    q[24] += n - assigned;
    for l in 8..32 {
        let cap = ((1u64 << l) / 4 * 3) as usize;
        if q[l] > cap {
            q[l + 1] += q[l] - cap;
            q[l] = cap;
        }
    }
    q
}

fn random_asn(rng: &mut Rng) -> u32 {
    if rng.below(10) < 7 {
        // 2-octet public ASNs, without AS_TRANS.
        loop {
            let a = rng.range(1, 64495) as u32;
            if a != u32::from(AS_TRANS) {
                return a;
            }
        }
    } else {
        rng.range(131_072, 399_999) as u32
    }
}

/// One attribute set: an AS path of 2–6 ASes starting with the feeder's,
/// sometimes a MED, 0–4 communities, sometimes a large community.
fn attribute_set(rng: &mut Rng, next_hop: Ipv4Addr) -> PathAttrs {
    let len = rng.weighted(&[(2, 15), (3, 30), (4, 30), (5, 15), (6, 10)]);
    let mut path = vec![FEEDER_AS];
    for _ in 1..len {
        path.push(random_asn(rng));
    }
    let origin = rng.weighted(&[(Origin::Igp, 90), (Origin::Incomplete, 8), (Origin::Egp, 2)]);
    let mut a = PathAttrs::new(
        origin,
        vec![AsSegment::Sequence(path)],
        Some(IpAddr::V4(next_hop)),
    );
    if rng.below(100) < 40 {
        a.med = Some(rng.below(1000) as u32);
    }
    for _ in 0..rng.below(5) {
        a.communities.push((65000 << 16) | rng.range(1, 999) as u32);
    }
    a.communities.sort_unstable();
    a.communities.dedup();
    if rng.below(100) < 20 {
        a.large_communities
            .push((FEEDER_AS, 1, rng.range(1, 99) as u32));
    }
    a
}

/// The pre-encoded table.
#[derive(Debug)]
struct Feed {
    /// Whole UPDATE messages, about [`CHUNK`] octets per element.
    chunks: Vec<Vec<u8>>,
    end_of_rib: Vec<u8>,
    prefixes: usize,
    paths: usize,
    updates: usize,
    bytes: usize,
    lengths: [usize; 33],
    next_hop: Ipv4Addr,
    /// The last prefix of the last UPDATE.
    last_prefix: IpNet,
}

impl Feed {
    fn generate(args: &Args, next_hop: Ipv4Addr) -> anyhow::Result<Self> {
        let mut rng = Rng(args.seed);
        let n = args.prefixes;
        let quotas = length_quotas(n);
        let mut seen: HashSet<u64> = HashSet::with_capacity(n);
        let mut prefixes: Vec<Ipv4Net> = Vec::with_capacity(n);
        for (len, &quota) in quotas.iter().enumerate() {
            let len = len as u8;
            let mut made = 0;
            while made < quota {
                let addr = rng.next() as u32 & mask(len);
                if excluded(addr, len) || !seen.insert(u64::from(addr) << 8 | u64::from(len)) {
                    continue;
                }
                prefixes.push(Ipv4Net::new(Ipv4Addr::from(addr), len).context("prefix length")?);
                made += 1;
            }
        }
        drop(seen);
        rng.shuffle(&mut prefixes);

        // Distinct attribute sets.
        let p = args.paths;
        let mut sets: HashSet<PathAttrs> = HashSet::with_capacity(p);
        let mut attrs: Vec<PathAttrs> = Vec::with_capacity(p);
        while attrs.len() < p {
            let a = attribute_set(&mut rng, next_hop);
            if sets.insert(a.clone()) {
                attrs.push(a);
            }
        }
        drop(sets);

        // Every set gets one prefix; the rest are skewed towards a minority of
        // sets (density ∝ 1/√rank), as real tables are.
        let mut groups: Vec<Vec<IpNet>> = vec![Vec::new(); p];
        for (i, pfx) in prefixes.iter().enumerate() {
            let j = if i < p {
                i
            } else {
                let u = rng.unit();
                ((p as f64 * u * u) as usize).min(p - 1)
            };
            groups[j].push(IpNet::V4(*pfx));
        }
        drop(prefixes);
        let mut order: Vec<usize> = (0..p).collect();
        rng.shuffle(&mut order);

        let caps = SessionCaps {
            four_octet_as: true,
            add_path_rx: Vec::new(),
            ebgp: true,
            ..SessionCaps::default()
        };
        let mut chunks = Vec::new();
        let mut chunk = Vec::with_capacity(CHUNK + codec::MAX_MESSAGE_LEN);
        let (mut updates, mut bytes) = (0, 0);
        let last_prefix = order
            .last()
            .and_then(|&j| groups[j].last().copied())
            .context("an empty feed")?;
        for j in order {
            for m in codec::encode_updates(&attrs[j], &groups[j], &caps)
                .with_context(|| format!("encoding attribute set {j}"))?
            {
                updates += 1;
                bytes += m.len();
                chunk.extend_from_slice(&m);
                if chunk.len() >= CHUNK {
                    chunks.push(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(CHUNK + codec::MAX_MESSAGE_LEN),
                    ));
                }
            }
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        Ok(Self {
            chunks,
            end_of_rib: codec::end_of_rib(IPV4_UNICAST),
            prefixes: n,
            paths: p,
            updates,
            bytes,
            lengths: quotas,
            next_hop,
            last_prefix,
        })
    }

    fn describe(&self, took: Duration) {
        let pct = |r: std::ops::RangeInclusive<usize>| {
            let c: usize = self.lengths[r].iter().sum();
            100.0 * c as f64 / self.prefixes as f64
        };
        println!(
            "feed: {} IPv4 prefixes in {} attribute sets, {} UPDATEs, {:.1} MB \
             (feeder AS {FEEDER_AS}, next hop {}); generated and encoded in {:.1} s",
            self.prefixes,
            self.paths,
            self.updates,
            self.bytes as f64 / 1e6,
            self.next_hop,
            took.as_secs_f64()
        );
        println!(
            "prefix lengths: /8-/15 {:.1}%, /16-/21 {:.1}%, /22 {:.1}%, /23 {:.1}%, \
             /24 {:.1}%, /25-/32 {:.1}%",
            pct(8..=15),
            pct(16..=21),
            pct(22..=22),
            pct(23..=23),
            pct(24..=24),
            pct(25..=32)
        );
    }
}

// ---- the feeder ---------------------------------------------------------------

/// What the feeder has done so far.
#[derive(Clone, Debug, Default)]
struct FeedStatus {
    /// When the feeder sent its KEEPALIVE in OpenConfirm (the session is
    /// Established for it, and for the peer on receipt).
    established: Option<Instant>,
    /// When the last UPDATE and the End-of-RIB were handed to TCP.
    written: Option<Instant>,
    /// The peer's AS and BGP identifier.
    peer: Option<(u32, Ipv4Addr)>,
    /// Why the feeder could not connect, establish or write.
    error: Option<String>,
    /// Why the session ended on the peer's side (NOTIFICATION or close).
    closed: Option<String>,
    /// UPDATEs the peer sent besides End-of-RIB (none are expected: nothing
    /// is exported to the feeder).
    updates_from_peer: u64,
}

/// One BGP session from the feeder, on a thread with its own runtime; the
/// session is closed when this is dropped.
#[derive(Debug)]
struct Feeder {
    status: Arc<Mutex<FeedStatus>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    fn start(feed: Arc<Feed>, local: IpAddr, peer: SocketAddr) -> anyhow::Result<Self> {
        let status = Arc::new(Mutex::new(FeedStatus::default()));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let st = status.clone();
        let thread = std::thread::Builder::new()
            .name("bgp-feeder".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        lock(&st).error = Some(format!("feeder runtime: {e}"));
                        return;
                    }
                };
                rt.block_on(async {
                    tokio::select! {
                        r = feed_session(&feed, local, peer, &st) => {
                            if let Err(e) = r {
                                lock(&st).error = Some(e);
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
            })?;
        Ok(Self {
            status,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    fn status(&self) -> FeedStatus {
        lock(&self.status).clone()
    }

    /// Waits until the session is Established; fails on the feeder's error or
    /// after `within`.
    fn established(&self, within: Duration) -> Result<Instant, String> {
        let start = Instant::now();
        loop {
            let s = self.status();
            if let Some(t) = s.established {
                return Ok(t);
            }
            if let Some(e) = s.error {
                return Err(e);
            }
            if interrupted() {
                return Err("interrupted".into());
            }
            if start.elapsed() > within {
                return Err(format!(
                    "the session did not come up within {} s",
                    within.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, Vec<u8>), String> {
    let mut header = [0u8; codec::HEADER_LEN];
    r.read_exact(&mut header)
        .await
        .map_err(|e| format!("reading from the peer: {e}"))?;
    let (kind, len) = codec::parse_header(&header).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len - codec::HEADER_LEN];
    r.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading from the peer: {e}"))?;
    Ok((kind, body))
}

/// Connects (retrying while the peer is not listening yet), runs the OPEN
/// exchange, writes the feed, then keeps the session up until cancelled.
async fn feed_session(
    feed: &Feed,
    local: IpAddr,
    peer: SocketAddr,
    st: &Mutex<FeedStatus>,
) -> Result<(), String> {
    let caps = SessionCaps {
        four_octet_as: true,
        add_path_rx: Vec::new(),
        ebgp: true,
        ..SessionCaps::default()
    };
    let give_up = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        sock.bind(SocketAddr::new(local, 0))
            .map_err(|e| format!("bind {local}: {e}"))?;
        match sock.connect(peer).await {
            Ok(s) => break s,
            Err(e) if Instant::now() > give_up => {
                return Err(format!("cannot connect to {peer}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);

    let open = Open {
        version: 4,
        my_as: AS_TRANS,
        hold_time: HOLD_TIME,
        router_id: match local {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::new(198, 19, 255, 1),
        },
        capabilities: vec![
            Capability::MultiProtocol(IPV4_UNICAST),
            Capability::FourOctetAs(FEEDER_AS),
            Capability::RouteRefresh,
        ],
    };
    let bytes =
        codec::encode(&Message::Open(open), &SessionCaps::default()).map_err(|e| e.to_string())?;
    let keepalive =
        codec::encode(&Message::Keepalive, &SessionCaps::default()).map_err(|e| e.to_string())?;
    w.write_all(&bytes)
        .await
        .map_err(|e| format!("sending OPEN: {e}"))?;
    let handshake = async {
        let mut got_open = false;
        loop {
            let (kind, body) = read_message(&mut r).await?;
            match codec::decode(kind, &body, &caps).map_err(|e| e.to_string())? {
                Message::Open(o) if !got_open => {
                    lock(st).peer = Some((o.asn(), o.router_id));
                    got_open = true;
                }
                Message::Keepalive if got_open => return Ok(()),
                Message::Notification(n) => {
                    return Err(format!(
                        "the peer sent NOTIFICATION {}/{} during the OPEN exchange",
                        n.code, n.subcode
                    ))
                }
                other => {
                    return Err(format!(
                        "unexpected message during the OPEN exchange: {other:?}"
                    ))
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), handshake)
        .await
        .map_err(|_| "no OPEN and KEEPALIVE from the peer within 60 s".to_string())??;
    w.write_all(&keepalive)
        .await
        .map_err(|e| format!("sending KEEPALIVE: {e}"))?;
    lock(st).established = Some(Instant::now());

    // Whatever the peer sends from now on is read (so it never blocks on us)
    // and only NOTIFICATIONs and the close are noted.
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<Result<u8, String>>();
    tokio::spawn(async move {
        loop {
            match read_message(&mut r).await {
                Ok((kind, body)) => {
                    let note = match codec::decode(kind, &body, &caps) {
                        // End-of-RIB (an empty UPDATE) is not counted.
                        Ok(Message::Update(u)) if u.end_of_rib.is_some() => Ok(0),
                        Ok(Message::Notification(n)) => Err(format!(
                            "the peer sent NOTIFICATION {}/{}",
                            n.code, n.subcode
                        )),
                        _ => Ok(kind),
                    };
                    let stop = note.is_err();
                    if closed_tx.send(note).is_err() || stop {
                        return;
                    }
                }
                Err(e) => {
                    let _ = closed_tx.send(Err(format!("the peer closed the session ({e})")));
                    return;
                }
            }
        }
    });

    let w = Arc::new(tokio::sync::Mutex::new(w));
    let ka = w.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(
            tokio::time::Instant::now() + KEEPALIVE_EVERY,
            KEEPALIVE_EVERY,
        );
        loop {
            every.tick().await;
            if ka.lock().await.write_all(&keepalive).await.is_err() {
                return;
            }
        }
    });

    let note = |m: Option<Result<u8, String>>| match m {
        Some(Ok(MSG_UPDATE)) => lock(st).updates_from_peer += 1,
        Some(Err(e)) => {
            let mut s = lock(st);
            if s.closed.is_none() {
                s.closed = Some(e);
            }
        }
        Some(Ok(_)) | None => {}
    };
    for c in feed.chunks.iter().chain(std::iter::once(&feed.end_of_rib)) {
        let mut guard = w.lock().await;
        let write = guard.write_all(c);
        tokio::pin!(write);
        loop {
            tokio::select! {
                r = &mut write => {
                    r.map_err(|e| format!("writing UPDATEs: {e}"))?;
                    break;
                }
                m = closed_rx.recv() => note(m),
            }
        }
    }
    lock(st).written = Some(Instant::now());
    loop {
        match closed_rx.recv().await {
            Some(m) => note(Some(m)),
            None => std::future::pending::<()>().await,
        }
    }
}

// ---- measuring ----------------------------------------------------------------

/// One reading of a count.
#[derive(Clone, Copy, Debug)]
enum Sample {
    /// The count, and when it was read.
    Count(u64, Instant),
    /// Not read, but known to be below the target at this instant (it cannot
    /// exceed another count that was below its target then).
    Below(Instant),
    /// Nothing new.
    Nothing,
}

/// A count that must reach a target, sampled at instants.
#[derive(Debug)]
struct Track {
    what: String,
    /// What reaching the target means, for the report.
    goal: String,
    target: u64,
    last: u64,
    /// Established → the first sample at or above the target.
    reached: Option<Duration>,
    /// Time between that sample and the one before it.
    resolution: Duration,
    previous: Duration,
}

impl Track {
    fn new(what: impl Into<String>, target: u64) -> Self {
        let what = what.into();
        Self {
            goal: format!("{what} = {target}"),
            what,
            target,
            last: 0,
            reached: None,
            resolution: Duration::ZERO,
            previous: Duration::ZERO,
        }
    }

    /// A yes/no condition (count 1 when it holds).
    fn condition(what: impl Into<String>, goal: impl Into<String>) -> Self {
        Self {
            goal: goal.into(),
            ..Self::new(what, 1)
        }
    }

    fn sample(&mut self, s: Sample, t0: Instant) {
        let (count, at) = match s {
            Sample::Count(c, at) => (Some(c), at),
            Sample::Below(at) => (None, at),
            Sample::Nothing => return,
        };
        if self.reached.is_some() {
            return;
        }
        let at = at.saturating_duration_since(t0);
        if let Some(c) = count {
            self.last = c;
            if c >= self.target {
                self.reached = Some(at);
                self.resolution = at.saturating_sub(self.previous);
            }
        }
        self.previous = at;
    }

    fn done(&self) -> bool {
        self.reached.is_some()
    }
}

/// What one receiver's run gave.
#[derive(Debug)]
struct Outcome {
    name: &'static str,
    /// Why it did not run, if it did not.
    skipped: Option<String>,
    /// The figures: the first is "every prefix in the RIB".
    tracks: Vec<Track>,
    /// Established → the feeder handed the last UPDATE to TCP.
    written: Option<Duration>,
    peak_rss_kb: Option<u64>,
    problems: Vec<String>,
}

impl Outcome {
    fn skipped(name: &'static str, why: impl Into<String>) -> Self {
        let why = why.into();
        println!("== {name}: skipped: {why}");
        Self {
            name,
            skipped: Some(why),
            tracks: Vec::new(),
            written: None,
            peak_rss_kb: None,
            problems: Vec::new(),
        }
    }

    fn rib(&self) -> Option<Duration> {
        self.tracks.first().and_then(|t| t.reached)
    }
}

/// Samples `probe` (counts in the order of `tracks`, with the instant they were
/// read) until every track reaches its target, the timeout passes, the session
/// fails, or the run is interrupted. Prints progress.
fn measure(
    t0: Instant,
    timeout: Duration,
    feeder: &Feeder,
    tracks: &mut [Track],
    interval: impl Fn(Duration) -> Duration,
    mut probe: impl FnMut() -> Vec<Sample>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut next_progress = PROGRESS_EVERY;
    loop {
        for (t, s) in tracks.iter_mut().zip(probe()) {
            t.sample(s, t0);
        }
        let el = t0.elapsed();
        if tracks.iter().all(Track::done) {
            break;
        }
        let st = feeder.status();
        if let Some(e) = st.error.or(st.closed) {
            problems.push(format!("session failed at {:.2} s: {e}", el.as_secs_f64()));
            break;
        }
        if el > timeout {
            for t in tracks.iter().filter(|t| !t.done()) {
                problems.push(format!(
                    "{}: did not finish in {:.0} s ({} of {} reached)",
                    t.what,
                    timeout.as_secs_f64(),
                    t.last,
                    t.target
                ));
            }
            break;
        }
        if interrupted() {
            problems.push("interrupted".into());
            break;
        }
        if el >= next_progress {
            let counts: Vec<String> = tracks
                .iter()
                .map(|t| format!("{} {}", t.what, t.last))
                .collect();
            println!("   t={:6.1} s  {}", el.as_secs_f64(), counts.join(", "));
            next_progress += PROGRESS_EVERY;
        }
        std::thread::sleep(interval(el));
    }
    problems
}

/// For daemons polled through their CLI: often at first, then about 40 polls
/// over the elapsed time (each poll costs the daemon and the machine some CPU).
fn cli_interval(elapsed: Duration) -> Duration {
    (elapsed / 40).clamp(Duration::from_millis(50), Duration::from_millis(500))
}

fn report(o: &Outcome, feed: &Feed) {
    if let Some(w) = o.written {
        println!(
            "   the feeder had handed every UPDATE and End-of-RIB to TCP at {:.2} s",
            w.as_secs_f64()
        );
    }
    for t in &o.tracks {
        match t.reached {
            Some(d) => println!(
                "   Established → {}: {:.3} s (sampling resolution {:.3} s), {:.0} prefixes/s",
                t.goal,
                d.as_secs_f64(),
                t.resolution.as_secs_f64(),
                feed.prefixes as f64 / d.as_secs_f64().max(1e-9)
            ),
            None => println!(
                "   Established → {}: not reached (last seen {})",
                t.goal, t.last
            ),
        }
    }
    println!("   peak RSS: {}", mib(o.peak_rss_kb));
    for p in &o.problems {
        println!("   PROBLEM: {p}");
    }
}

/// A field of /proc/PID/status (or /proc/self/status), in kB.
fn status_kb(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0))
}

/// Resets this process's peak-RSS mark (VmHWM) to its current RSS (Linux ≥ 4.0).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "version unknown".into())
}

// ---- FRR and GoBGP in a namespace ---------------------------------------------

/// One namespace with a veth to the root namespace (the feeder's side), torn
/// down on drop with everything started in it.
#[derive(Debug)]
struct NsLab {
    root_if: String,
    /// FRR's per-instance config and run directories, removed on drop.
    frr_dirs: Vec<PathBuf>,
    // Dropped last: kills the namespace's processes and deletes it.
    lab: Lab,
    ns: String,
}

impl NsLab {
    fn new(prefix: &str, net: LinkNet) -> anyhow::Result<Self> {
        let mut lab = Lab::new(prefix)?;
        let ns = lab.netns("n")?;
        let me = Self {
            root_if: lab.name("r"),
            frr_dirs: Vec::new(),
            ns,
            lab,
        };
        let ns_if = me.lab.name("d");
        run(
            "ip",
            &[
                "link",
                "add",
                &me.root_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
                "netns",
                &me.ns,
            ],
        )?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", net.feeder),
                "dev",
                &me.root_if,
            ],
        )?;
        run("ip", &["link", "set", &me.root_if, "up"])?;
        me.lab.must(
            &me.ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/30", net.receiver),
                "dev",
                &ns_if,
            ],
        )?;
        me.lab.must(&me.ns, &["ip", "link", "set", &ns_if, "up"])?;
        Ok(me)
    }

    /// The pid of the one daemon running in the namespace.
    fn daemon_pid(&self) -> Option<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Runs commands in the namespace at the same time; for each that
    /// succeeds, its output and when it was collected.
    fn exec_all(&self, commands: &[&[&str]]) -> Vec<Option<(String, Instant)>> {
        let children: Vec<_> = commands
            .iter()
            .map(|args| {
                Command::new("ip")
                    .args(["netns", "exec", &self.ns])
                    .args(*args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        children
            .into_iter()
            .map(|c| {
                let out = c?.wait_with_output().ok()?;
                let at = Instant::now();
                out.status
                    .success()
                    .then(|| (String::from_utf8_lossy(&out.stdout).to_string(), at))
            })
            .collect()
    }
}

impl Drop for NsLab {
    fn drop(&mut self) {
        // bgpd daemonizes; `Lab` kills whatever is left in the namespace.
        for d in &self.frr_dirs {
            if let Ok(pid) = std::fs::read_to_string(d.join("bgpd.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        if let Some(pid) = self.daemon_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for d in &self.frr_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_if])
            .stderr(Stdio::null())
            .status();
    }
}

fn frr_config(ns: &str, dir: &Path, net: LinkNet) -> String {
    format!(
        r#"frr defaults traditional
hostname {ns}
log file {}/bgpd.log informational
!
router bgp {FRR_AS}
 bgp router-id {receiver}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {feeder} remote-as {FEEDER_AS}
 neighbor {feeder} passive
 neighbor {feeder} timers 60 {HOLD_TIME}
 address-family ipv4 unicast
  neighbor {feeder} activate
 exit-address-family
!
"#,
        dir.display(),
        receiver = net.receiver,
        feeder = net.feeder,
    )
}

fn run_frr(feed: &Arc<Feed>, net: LinkNet, timeout: Duration) -> Outcome {
    const NAME: &str = "frr";
    let bgpd = Path::new("/usr/lib/frr/bgpd");
    if !bgpd.exists() || !have("vtysh") {
        return Outcome::skipped(
            NAME,
            "FRR's bgpd or vtysh is not installed (apt-get install frr)",
        );
    }
    let prefix = format!("bf{}", std::process::id() % 10000);
    let mut lab = match NsLab::new(&prefix, net) {
        Ok(l) => l,
        Err(e) => return Outcome::skipped(NAME, format!("cannot build the namespace: {e:#}")),
    };
    let ns = lab.ns.clone();
    let etc = PathBuf::from(format!("/etc/frr/{ns}"));
    let rundir = PathBuf::from(format!("/var/run/frr/{ns}"));
    lab.frr_dirs = vec![etc.clone(), rundir.clone()];
    let version = first_line(&bgpd.to_string_lossy(), &["--version"]);
    println!(
        "== frr: {version}, alone (no zebra) in namespace {ns}; feeder {} → {}:179",
        net.feeder, net.receiver
    );
    let started = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&etc)?;
        std::fs::create_dir_all(&rundir)?;
        std::fs::write(etc.join("bgpd.conf"), frr_config(&ns, &lab.lab.dir, net))?;
        std::fs::write(etc.join("vtysh.conf"), "")?;
        let dir = lab.lab.dir.to_string_lossy().to_string();
        let _ = Command::new("chown")
            .args([
                "-R",
                "frr:frr",
                "/var/run/frr",
                &etc.to_string_lossy(),
                &dir,
            ])
            .status();
        let _ = Command::new("chmod").args(["a+rwx", &dir]).status();
        lab.lab.must(
            &ns,
            &[
                &bgpd.to_string_lossy(),
                "-N",
                &ns,
                "-Z",
                "-n",
                "-S",
                "-f",
                &etc.join("bgpd.conf").to_string_lossy(),
                "-d",
                "-i",
                &rundir.join("bgpd.pid").to_string_lossy(),
            ],
        )?;
        Ok(())
    })();
    if let Err(e) = started {
        return Outcome::skipped(NAME, format!("cannot start bgpd: {e:#}"));
    }
    let bgpd_pid = || -> Option<u32> {
        std::fs::read_to_string(rundir.join("bgpd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let vtysh = |cmd: &str| -> Option<Value> {
        let out = Command::new("vtysh")
            .args(["-N", &ns, "-d", "bgpd", "-c", cmd])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let feeder_key = net.feeder.to_string();
    let pfx_rcd = || -> Option<(u64, Instant)> {
        let v = vtysh("show bgp ipv4 unicast summary json")?;
        let at = Instant::now();
        let peers = v.get("peers").or_else(|| v["ipv4Unicast"].get("peers"))?;
        Some((peers[&feeder_key]["pfxRcd"].as_u64()?, at))
    };
    // bgpd runs the decision process from a FIFO work queue after counting a
    // prefix in pfxRcd: the last prefix sent having a best path means the
    // queue has caught up, i.e. the whole table is in its Loc-RIB.
    let last = feed.last_prefix.to_string();
    let last_best = || -> Option<(u64, Instant)> {
        let v = vtysh(&format!("show bgp ipv4 unicast {last} json"))?;
        let at = Instant::now();
        let best = v["paths"]
            .as_array()?
            .iter()
            .any(|p| p["bestpath"]["overall"].as_bool() == Some(true));
        Some((u64::from(best), at))
    };
    let n = feed.prefixes as u64;
    let mut received = false;
    external_run(
        NAME,
        feed,
        net,
        timeout,
        vec![
            Track::condition(
                "last prefix best",
                format!("Loc-RIB (best path for the last prefix sent, {last})"),
            ),
            Track::new("pfxRcd", n),
        ],
        move || {
            let r = if received { None } else { pfx_rcd() };
            if r.is_some_and(|(c, _)| c >= n) {
                received = true;
            }
            let best = match (received, r) {
                (true, _) => last_best().map_or(Sample::Nothing, |(c, at)| Sample::Count(c, at)),
                (false, Some((_, at))) => Sample::Below(at),
                (false, None) => Sample::Nothing,
            };
            vec![
                best,
                r.map_or(Sample::Nothing, |(c, at)| Sample::Count(c, at)),
            ]
        },
        bgpd_pid,
        &lab,
    )
}

fn gobgp_config(net: LinkNet) -> String {
    format!(
        r#"[global.config]
  as = {GOBGP_AS}
  router-id = "{receiver}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{feeder}"
    peer-as = {FEEDER_AS}
  [neighbors.transport.config]
    passive-mode = true
  [neighbors.timers.config]
    hold-time = {HOLD_TIME}
    keepalive-interval = 60
"#,
        receiver = net.receiver,
        feeder = net.feeder,
    )
}

/// The largest `accepted` count of any family of any peer in `gobgp neighbor -j`.
fn gobgp_accepted(v: &Value) -> Option<u64> {
    v.as_array()?
        .iter()
        .flat_map(|p| p["afi_safis"].as_array().into_iter().flatten())
        .map(|a| a["state"]["accepted"].as_u64().unwrap_or(0))
        .max()
}

fn run_gobgp(feed: &Arc<Feed>, net: LinkNet, timeout: Duration) -> Outcome {
    const NAME: &str = "gobgp";
    if !have("gobgpd") || !have("gobgp") {
        return Outcome::skipped(
            NAME,
            "gobgpd or gobgp is not installed (apt-get install gobgpd)",
        );
    }
    let prefix = format!("bg{}", std::process::id() % 10000);
    let mut lab = match NsLab::new(&prefix, net) {
        Ok(l) => l,
        Err(e) => return Outcome::skipped(NAME, format!("cannot build the namespace: {e:#}")),
    };
    let ns = lab.ns.clone();
    let version = first_line("gobgpd", &["--version"]);
    println!(
        "== gobgp: {version}, in namespace {ns}; feeder {} → {}:179",
        net.feeder, net.receiver
    );
    let cfg = lab.lab.dir.join("gobgpd.toml");
    let log = lab.lab.dir.join("gobgpd.log");
    let started = std::fs::write(&cfg, gobgp_config(net))
        .map_err(anyhow::Error::from)
        .and_then(|_| {
            lab.lab.spawn(
                &ns,
                Path::new("/usr/bin/gobgpd"),
                &[
                    "-f",
                    &cfg.to_string_lossy(),
                    "--api-hosts",
                    "127.0.0.1:50051",
                    "-l",
                    "warn",
                ],
                &log,
            )
        });
    if let Err(e) = started {
        return Outcome::skipped(NAME, format!("cannot start gobgpd: {e:#}"));
    }
    const ACCEPTED: &[&str] = &["gobgp", "-p", "50051", "neighbor", "-j"];
    const RIB: &[&str] = &[
        "gobgp", "-p", "50051", "global", "rib", "summary", "-a", "ipv4",
    ];
    let probe_lab = &lab;
    let n = feed.prefixes as u64;
    // The two commands run at the same time, each until its count is reached.
    let (mut rib_done, mut accepted_done) = (false, false);
    external_run(
        NAME,
        feed,
        net,
        timeout,
        vec![
            Track::new("global RIB destinations", n),
            Track::new("accepted", n),
        ],
        move || {
            let mut commands = Vec::new();
            if !rib_done {
                commands.push(RIB);
            }
            if !accepted_done {
                commands.push(ACCEPTED);
            }
            let mut outputs = probe_lab.exec_all(&commands).into_iter();
            let rib = if rib_done {
                None
            } else {
                outputs.next().flatten()
            };
            let accepted = if accepted_done {
                None
            } else {
                outputs.next().flatten()
            };
            // "Table afi:AFI_IP safi:SAFI_UNICAST\nDestination: 1000000, Path: 1000000"
            let rib = rib.and_then(|(out, at)| {
                let count = out.split("Destination:").nth(1)?.split(',').next()?;
                Some((count.trim().parse::<u64>().ok()?, at))
            });
            let accepted = accepted.and_then(|(out, at)| {
                Some((gobgp_accepted(&serde_json::from_str(&out).ok()?)?, at))
            });
            rib_done |= rib.is_some_and(|(c, _)| c >= n);
            accepted_done |= accepted.is_some_and(|(c, _)| c >= n);
            [rib, accepted]
                .into_iter()
                .map(|x| x.map_or(Sample::Nothing, |(c, at)| Sample::Count(c, at)))
                .collect()
        },
        || probe_lab.daemon_pid(),
        probe_lab,
    )
}

/// Runs the feeder against a daemon listening at `net.receiver`:179 and samples
/// it until `tracks` are reached; reads the daemon's peak RSS at the end.
#[allow(clippy::too_many_arguments)]
fn external_run(
    name: &'static str,
    feed: &Arc<Feed>,
    net: LinkNet,
    timeout: Duration,
    mut tracks: Vec<Track>,
    probe: impl FnMut() -> Vec<Sample>,
    pid: impl Fn() -> Option<u32>,
    lab: &NsLab,
) -> Outcome {
    let feeder = match Feeder::start(
        feed.clone(),
        IpAddr::V4(net.feeder),
        SocketAddr::new(IpAddr::V4(net.receiver), 179),
    ) {
        Ok(f) => f,
        Err(e) => return Outcome::skipped(name, format!("cannot start the feeder: {e:#}")),
    };
    let t0 = match feeder.established(Duration::from_secs(60)) {
        Ok(t) => t,
        Err(e) => {
            let o = Outcome {
                name,
                skipped: None,
                tracks,
                written: None,
                peak_rss_kb: None,
                problems: vec![format!(
                    "no session: {e}; logs in {}",
                    lab.lab.dir.display()
                )],
            };
            report(&o, feed);
            return o;
        }
    };
    let problems = measure(t0, timeout, &feeder, &mut tracks, cli_interval, probe);
    let st = feeder.status();
    let peak = pid().and_then(|p| status_kb(Some(p), "VmHWM"));
    let o = Outcome {
        name,
        skipped: None,
        tracks,
        written: st.written.map(|w| w.saturating_duration_since(t0)),
        peak_rss_kb: peak,
        problems,
    };
    report(&o, feed);
    drop(feeder);
    o
}

// ---- nos, in process --------------------------------------------------------

fn nos_config(port: u16, net: LinkNet, feeder: Ipv4Addr) -> String {
    format!(
        r#"system:
  hostname: bgp-ingest
ports:
  - {{ name: eth1, linux: nosbench0 }}
interfaces:
  - {{ name: eth1, port: eth1, ipv4: [{receiver}/30] }}
bgp:
  asn: {NOS_AS}
  router_id: {receiver}
  port: {port}
  neighbors:
    - {{ address: {feeder}, remote_as: {FEEDER_AS}, passive: true, hold_time: {HOLD_TIME}, import_policy: accept-all }}
  policies:
    - name: accept-all
      rules:
        - {{ action: accept }}
"#,
        receiver = net.receiver,
    )
}

/// Counts the speaker's Loc-RIB changes on their way to the router task.
#[derive(Debug)]
struct Tap {
    target: u64,
    /// Prefixes set minus prefixes removed (every prefix of the feed is new).
    prefixes: AtomicU64,
    reached: OnceLock<Instant>,
}

/// The nos control plane as `nosd::daemon` wires it, minus packet I/O, the
/// host stack and the management socket.
/// Routes the driver installed, counted from its events as it goes (a
/// question to the driver waits behind the batch it is applying).
struct FibTap {
    /// Route installs minus route removals.
    routes: AtomicI64,
    /// The count that means every prefix of the feed is in (set once the
    /// configuration's own routes are in).
    target: AtomicI64,
    reached: OnceLock<Instant>,
}

struct NosStack {
    rt: Option<tokio::runtime::Runtime>,
    shutdown: watch::Sender<bool>,
    driver: Option<Driver>,
    dh: DriverHandle,
    bgp_q: mpsc::Sender<BgpQuery>,
    tap: Arc<Tap>,
    fib_tap: Arc<FibTap>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Kept so the tasks' channels stay open.
    _config: watch::Sender<Config>,
    _neighbors: mpsc::Sender<NeighborEvent>,
    _router_q: mpsc::Sender<RouterQuery>,
    _view: watch::Receiver<HostView>,
}

impl NosStack {
    fn start(config: Config, target: u64) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nos")
            .enable_all()
            .build()?;
        let _enter = rt.enter();
        let (config_tx, config_rx) = watch::channel(config);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let fib_tap = Arc::new(FibTap {
            routes: AtomicI64::new(0),
            target: AtomicI64::new(i64::MAX),
            reached: OnceLock::new(),
        });
        let events = fib_tap.clone();
        let driver = Driver::spawn(
            Box::new(dataplane::X86Backend::detached()),
            Duration::from_secs(5),
            move |e| {
                let step = match e {
                    DriverEvent::Installed(ObjectKey::Route(_)) => 1,
                    DriverEvent::Removed(ObjectKey::Route(_)) => -1,
                    _ => return,
                };
                let n = events.routes.fetch_add(step, Ordering::Relaxed) + step;
                if n >= events.target.load(Ordering::Relaxed) {
                    let _ = events.reached.set(Instant::now());
                }
            },
        )?;
        let dh = driver.handle();
        let mut tasks = Vec::new();

        let (fib_tx, mut fib_rx) = mpsc::unbounded_channel();
        let fwd = dh.clone();
        tasks.push(rt.spawn(async move {
            while let Some(d) = fib_rx.recv().await {
                if !fwd.apply(d) {
                    break;
                }
            }
        }));
        let (view_tx, view_rx) = watch::channel(HostView::default());
        let (neigh_tx, neigh_rx) = mpsc::channel(1024);
        let (router_q_tx, router_q_rx) = mpsc::channel(16);
        let (bgp_q_tx, bgp_q_rx) = mpsc::channel(16);
        let (rib_tx, mut rib_rx) = mpsc::unbounded_channel::<Vec<BgpRibChange>>();
        let (router_rib_tx, router_rib_rx) = mpsc::unbounded_channel();
        let tap = Arc::new(Tap {
            target,
            prefixes: AtomicU64::new(0),
            reached: OnceLock::new(),
        });
        let t = tap.clone();
        tasks.push(rt.spawn(async move {
            let mut count: i64 = 0;
            while let Some(changes) = rib_rx.recv().await {
                for c in &changes {
                    if matches!(c, BgpRibChange::Set(_)) {
                        count += 1;
                    } else if matches!(c, BgpRibChange::Remove(_)) {
                        count -= 1;
                    }
                }
                let n = count.max(0) as u64;
                t.prefixes.store(n, Ordering::Relaxed);
                if n >= t.target {
                    let _ = t.reached.set(Instant::now());
                }
                if router_rib_tx.send(changes).is_err() {
                    break;
                }
            }
        }));
        tasks.push(rt.spawn(Speaker::new().run(
            config_rx.clone(),
            rib_tx,
            bgp_q_rx,
            shutdown_rx.clone(),
        )));
        tasks.push(rt.spawn(Router::new().run(
            config_rx,
            neigh_rx,
            router_rib_rx,
            router_q_rx,
            fib_tx,
            view_tx,
            shutdown_rx,
        )));
        drop(_enter);
        Ok(Self {
            rt: Some(rt),
            shutdown: shutdown_tx,
            driver: Some(driver),
            dh,
            bgp_q: bgp_q_tx,
            tap,
            fib_tap,
            tasks,
            _config: config_tx,
            _neighbors: neigh_tx,
            _router_q: router_q_tx,
            _view: view_rx,
        })
    }

    /// Routes in the driver's installed model, and when they were counted.
    fn installed_routes(&self, within: Duration) -> Option<(u64, Instant)> {
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.dh.query(move |s, _| {
            let _ = tx.send((s.routes().len() as u64, Instant::now()));
        }) {
            return None;
        }
        rx.recv_timeout(within).ok()
    }

    fn summary(&self, within: Duration) -> Option<routing::bgp::speaker::Summary> {
        let rt = self.rt.as_ref()?;
        let q = self.bgp_q.clone();
        rt.block_on(async move {
            let (tx, rx) = oneshot::channel();
            q.send(BgpQuery::Summary(tx)).await.ok()?;
            tokio::time::timeout(within, rx).await.ok()?.ok()?
        })
    }
}

impl Drop for NosStack {
    /// Stops the tasks and the driver, waiting a few seconds at most: a stack
    /// still busy with the table is left to the process exit.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        let wait = Duration::from_secs(5);
        if let Some(rt) = self.rt.take() {
            let tasks = std::mem::take(&mut self.tasks);
            rt.block_on(async {
                let until = tokio::time::Instant::now() + wait;
                for t in tasks {
                    let _ = tokio::time::timeout_at(until, t).await;
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        }
        if let Some(d) = self.driver.take() {
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = std::thread::Builder::new()
                .name("driver-stop".into())
                .spawn(move || {
                    d.stop();
                    let _ = tx.send(());
                });
            let _ = rx.recv_timeout(wait);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    // The speaker listens on [::] (dual stack); a port free there is free for it.
    let l = std::net::TcpListener::bind("[::]:0").context("binding [::]:0")?;
    Ok(l.local_addr()?.port())
}

fn run_nos(feed: &Arc<Feed>, net: LinkNet, timeout: Duration) -> Outcome {
    const NAME: &str = "nos";
    let feeder_addr = Ipv4Addr::new(127, 0, 0, 2);
    let port = match free_port() {
        Ok(p) => p,
        Err(e) => return Outcome::skipped(NAME, format!("no free TCP port: {e:#}")),
    };
    let config = match Config::from_yaml(&nos_config(port, net, feeder_addr)) {
        Ok(c) => c,
        Err(e) => return Outcome::skipped(NAME, format!("the benchmark's config is invalid: {e}")),
    };
    println!(
        "== nos: speaker + router + driver over a detached x86 backend, in this process; \
         feeder {feeder_addr} → 127.0.0.1:{port}"
    );
    let rss_at_reset = status_kb(None, "VmRSS");
    let reset = reset_peak();
    let stack = match NosStack::start(config, feed.prefixes as u64) {
        Ok(s) => s,
        Err(e) => return Outcome::skipped(NAME, format!("cannot start the stack: {e:#}")),
    };
    // The routes the configuration alone gives (connected and local), before any BGP.
    let mut baseline = 0;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(10) {
        let n = stack
            .installed_routes(Duration::from_secs(1))
            .map_or(0, |x| x.0);
        if n > 0 && n == baseline {
            break;
        }
        baseline = n;
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = feed.prefixes as u64;
    // From here on the driver's route events count the feed's prefixes.
    let base_events = stack.fib_tap.routes.load(Ordering::Relaxed);
    stack
        .fib_tap
        .target
        .store(base_events + n as i64, Ordering::Relaxed);
    let mut tracks = vec![
        Track::new("Loc-RIB prefixes", n),
        Track::new("forwarding-model BGP routes", n),
    ];
    let feeder = match Feeder::start(
        feed.clone(),
        IpAddr::V4(feeder_addr),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
    ) {
        Ok(f) => f,
        Err(e) => return Outcome::skipped(NAME, format!("cannot start the feeder: {e:#}")),
    };
    let t0 = match feeder.established(Duration::from_secs(60)) {
        Ok(t) => t,
        Err(e) => {
            let o = Outcome {
                name: NAME,
                skipped: None,
                tracks,
                written: None,
                peak_rss_kb: None,
                problems: vec![format!("no session: {e}")],
            };
            report(&o, feed);
            return o;
        }
    };
    let fib_tap = stack.fib_tap.clone();
    let tap = stack.tap.clone();
    let problems = measure(
        t0,
        timeout,
        &feeder,
        &mut tracks,
        |_| Duration::from_millis(10),
        || {
            let loc = match tap.reached.get() {
                Some(at) => Sample::Count(tap.target, *at),
                None => Sample::Count(tap.prefixes.load(Ordering::Relaxed), Instant::now()),
            };
            let f = match fib_tap.reached.get() {
                Some(at) => Sample::Count(n, *at),
                None => Sample::Count(
                    (fib_tap.routes.load(Ordering::Relaxed) - base_events).max(0) as u64,
                    Instant::now(),
                ),
            };
            vec![loc, f]
        },
    );
    let peak = status_kb(None, "VmHWM");
    let st = feeder.status();
    let mut o = Outcome {
        name: NAME,
        skipped: None,
        tracks,
        written: st.written.map(|w| w.saturating_duration_since(t0)),
        peak_rss_kb: peak,
        problems,
    };
    report(&o, feed);
    println!(
        "   (peak RSS is this whole process's VmHWM{}; RSS at the reset, with the \
         pre-encoded feed resident: {})",
        if reset {
            ", reset just before the stack started"
        } else {
            " (could not be reset)"
        },
        mib(rss_at_reset)
    );
    match stack.summary(Duration::from_secs(5)) {
        Some(s) => {
            let accepted: u64 = s.neighbors.iter().map(|x| x.accepted).sum();
            let fib = stack
                .installed_routes(Duration::from_secs(5))
                .map_or("(no answer within 5 s)".to_string(), |(n, _)| {
                    n.saturating_sub(baseline).to_string()
                });
            println!(
                "   now: Loc-RIB {} prefixes, Adj-RIB-In {} accepted; forwarding model {} \
                 BGP routes (besides {} routes from the configuration)",
                s.loc_rib_prefixes, accepted, fib, baseline
            );
        }
        None => o
            .problems
            .push("the speaker did not answer a summary query within 5 s".into()),
    }
    if st.updates_from_peer > 0 {
        println!(
            "   (nos sent {} UPDATEs to the feeder)",
            st.updates_from_peer
        );
    }
    drop(feeder);
    drop(stack);
    o
}

// ---- the summary ----------------------------------------------------------------

fn summarize(feed: &Feed, outcomes: &[Outcome]) {
    println!();
    println!(
        "== summary: {} prefixes, {} attribute sets, {} UPDATEs ({:.1} MB); load average now {}",
        feed.prefixes,
        feed.paths,
        feed.updates,
        feed.bytes as f64 / 1e6,
        loadavg()
    );
    println!(
        "{:<6} {:<58} {:>10} {:>11} {:>9}",
        "", "Established →", "time", "prefixes/s", "peak RSS"
    );
    for o in outcomes {
        if let Some(why) = &o.skipped {
            println!("{:<6} skipped: {why}", o.name);
            continue;
        }
        for (i, t) in o.tracks.iter().enumerate() {
            let (time, rate) = match t.reached {
                Some(d) => (
                    format!("{:.3} s", d.as_secs_f64()),
                    format!("{:.0}", feed.prefixes as f64 / d.as_secs_f64().max(1e-9)),
                ),
                None => ("—".into(), format!("({} seen)", t.last)),
            };
            println!(
                "{:<6} {:<58} {:>10} {:>11} {:>9}",
                if i == 0 { o.name } else { "" },
                t.goal,
                time,
                rate,
                if i == 0 {
                    mib(o.peak_rss_kb)
                } else {
                    String::new()
                }
            );
        }
    }
    let Some(nos) = outcomes
        .iter()
        .find(|o| o.name == "nos" && o.skipped.is_none())
    else {
        return;
    };
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.3}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "n/a".into(),
    };
    let fib = nos.tracks.get(1).and_then(|t| t.reached);
    let anchors: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.name != "nos" && o.skipped.is_none())
        .collect();
    if !anchors.is_empty() {
        println!("ratios nos/anchor (below 1 favours nos):");
    }
    for anchor in anchors {
        for t in &anchor.tracks {
            println!(
                "  vs {:<5} {:<58} time: nos Loc-RIB {}, nos forwarding model {}",
                anchor.name,
                t.goal,
                ratio(nos.rib(), t.reached),
                ratio(fib, t.reached)
            );
        }
        let rss = match (nos.peak_rss_kb, anchor.peak_rss_kb) {
            (Some(a), Some(b)) if b > 0 => format!("{:.3}", a as f64 / b as f64),
            _ => "n/a".into(),
        };
        println!("  vs {:<5} peak RSS: {rss}", anchor.name);
    }
    println!("(issue 3's target for 1M prefixes: ≤ 1 s and ≤ 250 MB, and faster than both)");
}
