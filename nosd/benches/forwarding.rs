//! Forwarding against the kernel (issue 5, "Against the kernel").
//!
//! One topology, built afresh for each run from network namespaces and veths:
//!
//! ```text
//!  host A ──veth── [r1   router   r2] ──veth── host B
//!  192.0.2.2/24   192.0.2.1/24  198.51.100.1/24  198.51.100.2/24
//! ```
//!
//! Host A floods UDP to 198.51.100.2 in 64-byte frames (60 bytes on the veth,
//! plus the 4-byte FCS a wire would add) for a fixed time; the generator is
//! this program re-executed inside host A, writing prebuilt frames to an
//! AF_PACKET socket with `sendmmsg` (256 UDP source ports, so flows spread
//! over workers). Offered load is what the generator handed to the kernel;
//! `r1 rx` what reached the router's port (the rest was dropped on the veth);
//! delivered is the growth of host B's `rx_packets` over the run. The router is,
//! in turn:
//!
//! 1. `kernel`: Linux forwarding in the router namespace (`ip_forward=1`,
//!    addresses on r1/r2, a permanent neighbor entry for host B);
//! 2. `nosd af_packet`: nosd (the binary built with this bench, release
//!    profile) on AF_PACKET ports, kernel forwarding off;
//! 3. `nosd dpdk`: nosd with DPDK `net_af_packet` ports on the same veths,
//!    when nosd was built with DPDK (otherwise the run says it was skipped).
//!
//! ```text
//! cargo bench -p nosd --bench forwarding
//! cargo bench -p nosd --features dataplane/dpdk --bench forwarding
//! cargo bench -p nosd --bench forwarding -- --seconds 10 --workers 2 --only kernel,afpacket
//! ```
//!
//! On veths the kernel forwards in the sender's own softirq (a veth hands the
//! frame to its peer's backlog on the sending CPU), so in the kernel run the
//! generator's rate and the kernel's forwarding share one core; nosd reads
//! the router's veths from threads of its own. `--senders 2` gives the kernel
//! both cores.
//!
//! Options: `--seconds S` (flood duration, default 5), `--workers N` (nosd's
//! forwarding workers, default 1), `--senders N` (generator threads, default
//! 1), `--only kernel,afpacket,dpdk`. Needs root and iproute2; traffic goes only
//! into the namespaces this program creates, and they are removed on exit.

use anyhow::{bail, Context};
use dataplane::afpacket::PacketSocket;
use nosd::lab::Lab;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const NOSD: &str = env!("CARGO_BIN_EXE_nosd");
/// Set in the generator's environment: `IFNAME SRC_MAC DST_MAC SECONDS SENDERS`.
const GEN_ENV: &str = "NOS_FORWARDING_BENCH_GEN";
/// Frame length on the veth (64 with the FCS).
const FRAME_LEN: usize = 60;

struct Opts {
    seconds: u64,
    workers: u32,
    senders: u32,
    only: Vec<String>,
}

fn main() {
    if let Ok(spec) = std::env::var(GEN_ENV) {
        match generate(&spec) {
            Ok((sent, secs)) => println!("sent {sent} {secs}"),
            Err(e) => {
                eprintln!("generator: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    let mut o = Opts {
        seconds: 5,
        workers: 1,
        senders: 1,
        only: vec!["kernel".into(), "afpacket".into(), "dpdk".into()],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--seconds" => o.seconds = val().parse().unwrap_or(o.seconds),
            "--workers" => o.workers = val().parse().unwrap_or(o.workers),
            "--senders" => o.senders = val().parse().unwrap_or(o.senders),
            "--only" => o.only = val().split(',').map(str::to_string).collect(),
            _ => {} // `--bench` from cargo, and anything else
        }
    }
    let features = if dataplane::DPDK_BUILT {
        " --features dataplane/dpdk"
    } else {
        ""
    };
    println!(
        "command: cargo bench -p nosd{features} --bench forwarding -- --seconds {} --workers {} --senders {} --only {}",
        o.seconds,
        o.workers,
        o.senders,
        o.only.join(",")
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "flood: UDP 192.0.2.2 -> 198.51.100.2, {FRAME_LEN}-byte frames (64 with FCS), {} s, {} sender thread(s), host A -> router -> host B over veths",
        o.seconds, o.senders
    );
    println!(
        "{:<16} {:>12} {:>12} {:>13} {:>7} {:>10}",
        "router", "offered pps", "r1 rx pps", "delivered pps", "loss %", "vs kernel"
    );
    let pid = std::process::id() % 1000;
    let mut kernel_pps: Option<f64> = None;
    for which in ["kernel", "afpacket", "dpdk"] {
        if !o.only.iter().any(|w| w == which) {
            continue;
        }
        let label = match which {
            "kernel" => "kernel",
            "afpacket" => "nosd af_packet",
            _ => "nosd dpdk",
        };
        if which == "dpdk" && !dataplane::DPDK_BUILT {
            println!(
                "{label:<16} skipped: nosd was built without DPDK (cargo bench -p nosd --features dataplane/dpdk --bench forwarding)"
            );
            continue;
        }
        let prefix = format!("f{}{pid}", &which[..1]);
        match run_one(which, &prefix, &o) {
            Ok(r) => {
                let offered = r.sent as f64 / r.secs;
                let delivered = r.delivered as f64 / r.secs;
                let at_router = r.at_router as f64 / r.secs;
                let loss = (100.0 * (1.0 - r.delivered as f64 / (r.sent.max(1)) as f64)).max(0.0);
                if which == "kernel" {
                    kernel_pps = Some(delivered);
                }
                let ratio = kernel_pps
                    .filter(|k| *k > 0.0)
                    .map_or("-".to_string(), |k| format!("{:.2}x", delivered / k));
                println!(
                    "{label:<16} {offered:>12.0} {at_router:>12.0} {delivered:>13.0} {loss:>7.2} {ratio:>10}"
                );
                if let Some(d) = r.drops {
                    println!("{:<16} nosd counters: {d}", "");
                }
            }
            Err(e) => println!("{label:<16} failed: {e:#}"),
        }
    }
}

struct Outcome {
    sent: u64,
    /// Frames the router's port r1 received (the rest were dropped on the veth).
    at_router: u64,
    delivered: u64,
    secs: f64,
    /// nosd's counters after the flood (`nosctl show counters` and the ports'
    /// drops from `show interfaces`), nonzero only.
    drops: Option<String>,
}

/// Names of one lab's namespaces and interfaces.
struct Topo {
    a: String,
    r: String,
    b: String,
    ha: String,
    r1: String,
    r2: String,
    hb: String,
}

fn build(lab: &mut Lab) -> anyhow::Result<Topo> {
    let a = lab.netns("a")?;
    let r = lab.netns("r")?;
    let b = lab.netns("b")?;
    let t = Topo {
        ha: lab.name("ha"),
        r1: lab.name("r1"),
        r2: lab.name("r2"),
        hb: lab.name("hb"),
        a,
        r,
        b,
    };
    lab.veth(&t.a, &t.ha, &t.r, &t.r1)?;
    lab.veth(&t.b, &t.hb, &t.r, &t.r2)?;
    for (ns, ifname, addr, gw) in [
        (&t.a, &t.ha, "192.0.2.2/24", "192.0.2.1"),
        (&t.b, &t.hb, "198.51.100.2/24", "198.51.100.1"),
    ] {
        lab.must(ns, &["ip", "addr", "add", addr, "dev", ifname])?;
        lab.must(ns, &["ip", "route", "add", "default", "via", gw])?;
    }
    Ok(t)
}

fn read_sys(lab: &Lab, ns: &str, path: &str) -> anyhow::Result<String> {
    let out = lab.must(ns, &["cat", path])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `rx_packets` of host B's and the router's r1 interfaces.
fn rx_packets(lab: &Lab, t: &Topo) -> anyhow::Result<(u64, u64)> {
    let mut v = [0u64; 2];
    for (i, (ns, ifname)) in [(&t.b, &t.hb), (&t.r, &t.r1)].into_iter().enumerate() {
        v[i] = read_sys(
            lab,
            ns,
            &format!("/sys/class/net/{ifname}/statistics/rx_packets"),
        )?
        .parse()
        .context("rx_packets")?;
    }
    Ok((v[0], v[1]))
}

/// Pings B from A until it answers (neighbors resolved), then returns the
/// MAC address host A has for its gateway (the router's r1).
fn warm_up(lab: &Lab, t: &Topo) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let out = lab.exec(
            &t.a,
            &["ping", "-c", "1", "-W", "1", "-i", "0.2", "198.51.100.2"],
        )?;
        if out.status.success() {
            break;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("host A cannot ping host B through the router");
        }
    }
    let out = lab.must(&t.a, &["ip", "neigh", "show", "192.0.2.1", "dev", &t.ha])?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = s.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            if let Some(m) = words.next() {
                return Ok(m.to_string());
            }
        }
    }
    bail!("host A has no MAC address for its gateway: {s}")
}

fn run_one(which: &str, prefix: &str, o: &Opts) -> anyhow::Result<Outcome> {
    let mut lab = Lab::new(prefix)?;
    let t = build(&mut lab)?;
    let hb_mac = read_sys(&lab, &t.b, &format!("/sys/class/net/{}/address", t.hb))?;
    if which == "kernel" {
        lab.must(&t.r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        lab.must(&t.r, &["ip", "addr", "add", "192.0.2.1/24", "dev", &t.r1])?;
        lab.must(
            &t.r,
            &["ip", "addr", "add", "198.51.100.1/24", "dev", &t.r2],
        )?;
        lab.must(
            &t.r,
            &[
                "ip",
                "neigh",
                "replace",
                "198.51.100.2",
                "lladdr",
                &hb_mac,
                "dev",
                &t.r2,
                "nud",
                "permanent",
            ],
        )?;
    } else {
        lab.kernel_forwarding_off(&t.r)?;
        let dataplane = if which == "dpdk" {
            format!(
                "dataplane:
  workers: {w}
  dpdk:
    eal_args: [--no-huge, --no-pci, -m, '512', --no-shconf, --no-telemetry, -l, '0']
    ports:
      - {{ port: eth1, device: 'net_af_packet0,iface={r1}' }}
      - {{ port: eth2, device: 'net_af_packet1,iface={r2}' }}
",
                w = o.workers,
                r1 = t.r1,
                r2 = t.r2
            )
        } else {
            format!("dataplane:\n  workers: {}\n", o.workers)
        };
        let config = format!(
            "{dataplane}system:
  hostname: bench-router
ports:
  - {{ name: eth1, linux: {r1} }}
  - {{ name: eth2, linux: {r2} }}
interfaces:
  - {{ name: eth1, port: eth1, ipv4: [192.0.2.1/24] }}
  - {{ name: eth2, port: eth2, ipv4: [198.51.100.1/24] }}
",
            r1 = t.r1,
            r2 = t.r2
        );
        let cfg = lab.dir.join("router.yaml");
        std::fs::write(&cfg, config)?;
        let socket = lab.dir.join("nosd.sock");
        let state = lab.dir.join("state");
        let log = lab.dir.join("nosd.log");
        let r = t.r.clone();
        lab.spawn(
            &r,
            Path::new(NOSD),
            &[
                "run",
                "--config",
                &cfg.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
                "--socket",
                &socket.to_string_lossy(),
                "--log-level",
                "info",
            ],
            &log,
        )?;
        let start = Instant::now();
        while nosd::client::call(&socket, &nosd::api::Request::ConfigHistory).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "nosd did not come up within 20 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // With DPDK, both ports really are DPDK devices.
        while which == "dpdk"
            && std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("DPDK port started")
                .count()
                < 2
        {
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "nosd did not start its two DPDK ports; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let gw_mac = warm_up(&lab, &t)?;
    let ha_mac = read_sys(&lab, &t.a, &format!("/sys/class/net/{}/address", t.ha))?;
    // Let the warm-up's stragglers pass.
    std::thread::sleep(Duration::from_millis(300));
    let before = rx_packets(&lab, &t)?;
    let exe = std::env::current_exe()?;
    let spec = format!("{} {ha_mac} {gw_mac} {} {}", t.ha, o.seconds, o.senders);
    let out = Command::new("ip")
        .args(["netns", "exec", &t.a])
        .arg(&exe)
        .env(GEN_ENV, &spec)
        .output()
        .context("start the generator in host A")?;
    if !out.status.success() {
        bail!(
            "generator failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut words = stdout.split_whitespace().skip(1);
    let (Some(Ok(sent)), Some(Ok(secs))) = (
        words.next().map(str::parse::<u64>),
        words.next().map(str::parse::<f64>),
    ) else {
        bail!("generator output: {stdout}");
    };
    // Frames still queued in the router drain out.
    std::thread::sleep(Duration::from_millis(500));
    let after = rx_packets(&lab, &t)?;
    let mut drops = None;
    if which != "kernel" {
        let socket = lab.dir.join("nosd.sock");
        let mut found = Vec::new();
        for req in [
            nosd::api::Request::ShowCounters,
            nosd::api::Request::ShowInterfaces,
        ] {
            if let Ok(nosd::api::Response::Ok { data }) = nosd::client::call(&socket, &req) {
                found.push(nonzero(&data));
            }
        }
        drops = Some(found.join(" "));
        lab.stop_children(Duration::from_secs(10));
    }
    Ok(Outcome {
        sent,
        delivered: after.0.saturating_sub(before.0),
        at_router: after.1.saturating_sub(before.1),
        secs: secs.max(1e-3),
        drops,
    })
}

/// The nonzero counters in nosd's answers, as `name=value`: the pairs of
/// `show counters` and the `*drops` fields of `show interfaces` (named by
/// the interface).
fn nonzero(v: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            // A zero pair falls through to the arm below, which prints nothing for it.
            serde_json::Value::Array(a)
                if a.len() == 2 && a[0].is_string() && a[1].as_f64().is_some_and(|n| n != 0.0) =>
            {
                out.push(format!("{}={}", a[0].as_str().unwrap_or(""), a[1]));
            }
            serde_json::Value::Object(m) if m.contains_key("rx_drops") => {
                let name = m.get("name").and_then(|n| n.as_str()).unwrap_or(path);
                for k in ["rx_drops", "tx_drops"] {
                    if let Some(n) = m.get(k).filter(|n| n.as_f64() != Some(0.0)) {
                        out.push(format!("{name}.{k}={n}"));
                    }
                }
            }
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out.join(" ")
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC address {s}"))?;
    v.try_into().map_err(|_| anyhow::anyhow!("MAC address {s}"))
}

/// 256 frames from host A to host B, UDP ports 1024+i -> 9, complete checksums
/// (UDP checksum 0: none, allowed over IPv4).
fn frames(src: [u8; 6], dst: [u8; 6]) -> Vec<Vec<u8>> {
    (0..256u16)
        .map(|i| {
            let mut f = Vec::with_capacity(FRAME_LEN);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&src);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&i.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[192, 0, 2, 2]);
            ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
            let mut sum: u32 = ip
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend_from_slice(&ip);
            let udp_len = (FRAME_LEN - 34) as u16;
            f.extend_from_slice(&(1024 + i).to_be_bytes());
            f.extend_from_slice(&9u16.to_be_bytes());
            f.extend_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.resize(FRAME_LEN, 0);
            f
        })
        .collect()
}

/// The generator (inside host A): floods for the given time; returns frames
/// sent and the seconds the flood lasted.
fn generate(spec: &str) -> anyhow::Result<(u64, f64)> {
    let w: Vec<&str> = spec.split_whitespace().collect();
    let [ifname, src, dst, secs, senders] = w[..] else {
        bail!("bad generator spec {spec:?}");
    };
    let frames = frames(parse_mac(src)?, parse_mac(dst)?);
    let secs: u64 = secs.parse()?;
    let senders: usize = senders.parse()?;
    let batches: Vec<Vec<&[u8]>> = frames
        .chunks(32)
        .map(|c| c.iter().map(Vec::as_slice).collect())
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = (0..senders.max(1))
            .map(|k| {
                let batches = &batches;
                s.spawn(move || -> anyhow::Result<u64> {
                    let sock = PacketSocket::open(ifname)?;
                    let mut sent = 0u64;
                    let mut at = k;
                    while Instant::now() < end {
                        for _ in 0..16 {
                            at = (at + 1) % batches.len();
                            sent += sock.send_batch(&batches[at]).unwrap_or(0) as u64;
                        }
                    }
                    Ok(sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sender thread"))
            .sum::<anyhow::Result<u64>>()
    })?;
    Ok((total, start.elapsed().as_secs_f64()))
}
