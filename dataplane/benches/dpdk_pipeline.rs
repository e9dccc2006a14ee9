//! Forwarding rate of one worker core through the whole pipeline on DPDK
//! ports, with the anchors measured in the same run.
//!
//! * The project: 64-byte UDP/IPv4 frames come in on a `net_ring` port and
//!   leave by a `net_null` port; one worker (the benchmark's own thread runs
//!   the worker loop) parses them, runs 16 ingress ACL rules that match
//!   nothing, looks them up in 1M IPv4 routes, picks a member of a weighted
//!   group by the flow hash (half the routes point at groups), and rewrites
//!   MACs, TTL and checksum in the mbuf.
//! * Anchor 1: the same loop and ports with no pipeline (receive, transmit).
//! * Anchor 2: DPDK's `dpdk-testpmd` in io forwarding mode between two
//!   `net_null` ports (one forwarding core), when it is installed (Debian
//!   package dpdk-dev).
//!
//! Frames are put in the ring before each timed round (untimed); a round ends
//! when the worker has forwarded all of them.
//!
//! Run with `cargo bench -p dataplane --features dpdk --bench dpdk_pipeline`.

mod common;

use dataplane::backend::{ManualWorker, PacketIo, Received, RxBurst, TxFrames};
use dataplane::dpdk::{self, DpdkPort, Eal, MbufBurst, Ring};
use dataplane::X86Backend;
use nos_core::{
    AclAction, AclId, AclMatch, AclRule, AclStage, Backend, ForwardingState, GroupId, GroupMember,
    NextHopGroup, NextHopId, Object, PortId, Route, RouteAction, VrfId,
};
use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUTES: usize = 1_000_000;
const NEXT_HOPS: u32 = 64;
const GROUPS: u32 = 16;
const ACL_RULES: u32 = 16;
/// Frames per timed round (few enough for their buffers to stay in cache, as
/// a NIC writing into the last-level cache would leave them).
const ROUND: usize = 1024;
const MAC_IN: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// A xorshift generator: the benchmark needs no statistical quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Distinct IPv4 prefixes, mostly /24 with some /16–/23, over 1.0.0.0–223.255.255.255.
fn prefixes(rng: &mut Rng) -> Vec<(u32, u8)> {
    let mut seen = HashSet::with_capacity(ROUTES);
    let mut out = Vec::with_capacity(ROUTES);
    while out.len() < ROUTES {
        let r = rng.next();
        let len = match r % 10 {
            0..=6 => 24,
            7 => 22,
            8 => 20,
            _ => 16 + (r >> 8) as u8 % 8,
        };
        let addr = (0x0100_0000 + ((r >> 16) as u32) % 0xdf00_0000) & (!0u32 << (32 - len));
        if seen.insert((addr, len)) {
            out.push((addr, len));
        }
    }
    out
}

fn state(table: &[(u32, u8)]) -> ForwardingState {
    let mut objs = common::two_ports(NEXT_HOPS);
    for g in 0..GROUPS {
        objs.push(Object::Group(NextHopGroup {
            id: GroupId(g),
            members: (0..4)
                .map(|k| GroupMember {
                    next_hop: NextHopId((g * 4 + k) % NEXT_HOPS),
                    weight: 1 + k,
                })
                .collect(),
        }));
    }
    // Ingress rules that never match this traffic (TCP to ports 1000..),
    // so every frame is checked against all of them.
    for r in 0..ACL_RULES {
        objs.push(Object::from(AclRule {
            id: AclId(r),
            name: format!("rule{r}"),
            stage: AclStage::Ingress,
            priority: 100 + r,
            matches: AclMatch {
                ip_proto: Some(6),
                dst_port: Some(nos_core::PortRange {
                    first: 1000 + r as u16,
                    last: 1000 + r as u16,
                }),
                ..Default::default()
            },
            action: AclAction::Drop,
        }));
    }
    for (i, &(a, l)) in table.iter().enumerate() {
        let action = if i % 2 == 0 {
            RouteAction::NextHop(NextHopId(i as u32 % NEXT_HOPS))
        } else {
            RouteAction::Group(GroupId(i as u32 % GROUPS))
        };
        objs.push(Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: ipnet::Ipv4Net::new(a.into(), l).unwrap().into(),
            action,
        }));
    }
    ForwardingState::from_objects(objs).unwrap()
}

fn frame(dst: u32, sport: u16) -> Vec<u8> {
    common::udp_frame(MAC_IN, [198, 18, 0, 1], dst, sport)
}

/// Puts `frames` into `ring` (untimed part of a round).
fn load(eal: &Eal, ring: &Ring, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(dpdk::BURST) {
        let refs: Vec<&[u8]> = chunk.iter().map(|f| f.as_slice()).collect();
        let mut b = MbufBurst::default();
        b.fill(eal, &refs).expect("buffers for a round");
        while !b.is_empty() {
            ring.enqueue(&mut b);
        }
    }
}

/// Times rounds of `frames` through `step` (which returns the frames it
/// finished) for about `secs`; returns frames per second.
fn measure(
    eal: &Eal,
    ring: &Ring,
    frames: &[Vec<u8>],
    secs: f64,
    mut step: impl FnMut() -> usize,
) -> f64 {
    let mut busy = Duration::ZERO;
    let mut done = 0usize;
    while busy.as_secs_f64() < secs {
        load(eal, ring, frames);
        let start = Instant::now();
        let mut n = 0;
        while n < frames.len() {
            n += step();
        }
        busy += start.elapsed();
        done += n;
    }
    done as f64 / busy.as_secs_f64()
}

/// dpdk-testpmd forwarding between two net_null ports on one core: the
/// packets per second its statistics print, summed over both ports.
fn testpmd() -> Option<f64> {
    let out = Command::new("timeout")
        .args([
            "-s",
            "INT",
            "8",
            "dpdk-testpmd",
            "--no-huge",
            "--no-pci",
            "-m",
            "512",
            "--no-shconf",
            "--no-telemetry",
            "--file-prefix",
            "nosbench",
            "-l",
            "0,1",
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--",
            "--forward-mode=io",
            "--total-num-mbufs=16384",
            "--stats-period",
            "2",
            "--auto-start",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last statistics block has one "Rx-pps:" line per port.
    let pps: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rx-pps:"))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    if pps.len() < 2 {
        return None;
    }
    Some(pps[pps.len() - 2..].iter().sum())
}

fn main() {
    let eal = dpdk::eal(&[]).expect("DPDK's EAL");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let table = prefixes(&mut rng);
    let st = state(&table);
    let mut backend = X86Backend::detached();
    let start = Instant::now();
    for r in backend.apply(&nos_core::diff(&ForwardingState::new(), &st)) {
        r.expect("state applies");
    }
    println!(
        "tables: {} routes ({} next hops, {} weighted groups), {} ingress ACL rules; compiled in {:.1} s",
        table.len(),
        NEXT_HOPS,
        GROUPS,
        ACL_RULES,
        start.elapsed().as_secs_f64()
    );

    // Port 1: a ring port the benchmark fills; port 2: net_null, which takes
    // every frame sent to it and generates none.
    let rx = Ring::new(eal, 16384).unwrap();
    let unused = Ring::new(eal, 1024).unwrap();
    dpdk::port_from_rings(eal, "bench_in", &[&rx], &[&unused]).unwrap();
    let port_in = DpdkPort::open(eal, "net_ring_bench_in", 1).unwrap();
    let port_out = DpdkPort::open(eal, "net_null0,no-rx=1", 1).unwrap();
    let ports: Vec<(PortId, Box<dyn PacketIo>)> = vec![
        (PortId(1), Box::new(port_in.queues(eal, 0, 1))),
        (PortId(2), Box::new(port_out.queues(eal, 0, 1))),
    ];
    let mut worker = ManualWorker::new(&backend.tables_reader(), ports, Arc::new(|_| {}));

    // Destinations: 1024 flows, then a different random address in the
    // table for every frame of a round.
    let pick = |rng: &mut Rng| {
        let (a, l) = table[(rng.next() % table.len() as u64) as usize];
        let host = if l >= 32 { 0 } else { u32::MAX >> l };
        a | (rng.next() as u32 & host)
    };
    let hot: Vec<u32> = (0..1024).map(|_| pick(&mut rng)).collect();
    let hot_frames: Vec<Vec<u8>> = (0..ROUND)
        .map(|i| frame(hot[i % hot.len()], 1024 + (i % 1024) as u16))
        .collect();
    let random_frames: Vec<Vec<u8>> = (0..ROUND)
        .map(|i| frame(pick(&mut rng), i as u16))
        .collect();

    let mut forwarded = 0u64;
    let mut step = |w: &mut ManualWorker| {
        w.round();
        let f = w.counters().forwarded;
        let d = (f - forwarded) as usize;
        forwarded = f;
        d
    };
    // Warm up (and check that the frames are forwarded, not dropped).
    measure(eal, &rx, &hot_frames, 0.2, || step(&mut worker));
    let c = worker.counters().clone();
    assert_eq!(
        c.named()
            .iter()
            .filter(|(k, v)| (k.starts_with("drop.") || k.starts_with("punt.")) && *v > 0)
            .count(),
        0,
        "frames were dropped or punted: {:?}",
        c.named()
    );
    let hot_pps = measure(eal, &rx, &hot_frames, 2.0, || step(&mut worker));
    let random_pps = measure(eal, &rx, &random_frames, 2.0, || step(&mut worker));
    let out = worker.port_counters(PortId(2));
    assert!(out.tx_packets >= worker.counters().forwarded && out.tx_drops == 0);
    drop(worker);

    // The pipeline alone, on heap frames (copied in for each frame).
    let tables = backend.tables();
    let mut counters = dataplane::engine::Counters::default();
    let mut buf = Vec::with_capacity(128);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for f in &hot_frames {
            buf.clear();
            buf.extend_from_slice(f);
            std::hint::black_box(dataplane::engine::process(
                &tables,
                PortId(1),
                &mut buf,
                &mut counters,
            ));
        }
        n += hot_frames.len() as u64;
    }
    let alone_pps = n as f64 / start.elapsed().as_secs_f64();
    drop(tables);

    // Anchor 1: the same ports and loop shape, no pipeline.
    let mut rx_q: Box<dyn PacketIo> = Box::new(port_in.queues(eal, 0, 1));
    let mut tx_q: Box<dyn PacketIo> = Box::new(port_out.queues(eal, 0, 1));
    let mut burst = RxBurst::default();
    let io_pps = measure(eal, &rx, &hot_frames, 2.0, || {
        match rx_q.receive(&mut burst) {
            Ok(Received::Mbufs(n)) if n > 0 => {
                let sent = tx_q
                    .transmit(TxFrames::Mbufs(&mut burst.mbufs))
                    .unwrap_or(0);
                burst.mbufs.clear();
                sent
            }
            _ => 0,
        }
    });
    drop(rx_q);
    drop(tx_q);
    drop(port_in);
    drop(port_out);

    println!(
        "Pipeline on DPDK (net_ring in, net_null out), 64-byte frames, one core, {} routes:",
        table.len()
    );
    println!(
        "  1024 flows:                        {:6.2} Mpps",
        hot_pps / 1e6
    );
    println!(
        "  random destination per frame:      {:6.2} Mpps",
        random_pps / 1e6
    );
    println!(
        "  process() alone (heap frames, 1024 flows): {:6.2} Mpps",
        alone_pps / 1e6
    );
    println!(
        "  anchor, same ports, no pipeline:   {:6.2} Mpps (pipeline at {:.0}% of it)",
        io_pps / 1e6,
        100.0 * hot_pps / io_pps
    );
    match testpmd() {
        Some(pps) => println!(
            "  anchor, dpdk-testpmd io forwarding net_null<->net_null, one forwarding core: {:6.2} Mpps (pipeline at {:.0}% of it)",
            pps / 1e6,
            100.0 * hot_pps / pps
        ),
        None => println!("  anchor, dpdk-testpmd: not run (install dpdk-dev for dpdk-testpmd)"),
    }
}
