//! LPM benchmark: load time, memory and lookup rate of the engine's route tables on
//! a synthetic full IPv4 table (900k prefixes) and a synthetic IPv6 table (200k
//! prefixes), incremental updates of the full IPv4 table, batches committed
//! into the x86 backend, plus the whole pipeline on one core.
//!
//! Run with `cargo bench -p dataplane --bench lpm`.

mod common;

use dataplane::backend::X86Backend;
use dataplane::engine::lpm::{Lpm4, Lpm6, Prefix, PrefixMap};
use dataplane::engine::{process, Counters, Tables, Verdict};
use nos_core::{
    Backend, Delta, ForwardingState, NextHopId, Object, ObjectKey, PortId, Route, RouteAction,
    RouteKey, VrfId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

const V4_PREFIXES: usize = 900_000;
const V6_PREFIXES: usize = 200_000;
const RANDOM_LOOKUPS: usize = 10_000_000;
const HOT_SET: usize = 1024;
const HOT_ROUNDS: usize = 10_000;
/// Distinct route values (next hops) the prefixes point at.
const VALUES: u32 = 64;

/// Picks from `(weight, item)` pairs.
fn pick<T: Copy>(rng: &mut StdRng, table: &[(u32, T)]) -> T {
    let total: u32 = table.iter().map(|e| e.0).sum();
    let mut x = rng.gen_range(0..total);
    for &(w, v) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].1
}

/// A length drawn from an inclusive range, weighted by the number of prefixes
/// of each length (so short lengths, of which few exist, are rarer).
fn len_in(rng: &mut StdRng, lo: u8, hi: u8) -> u8 {
    let weights: Vec<(u32, u8)> = (lo..=hi).map(|l| (1u32 << (l - lo).min(20), l)).collect();
    pick(rng, &weights)
}

/// IPv4 prefixes with a BGP-like length mix: ~60% /24, 10% /23, 10% /22,
/// 12% /16–/21, 5% /8–/15, 3% /25–/32; distinct, random addresses in 1.0.0.0 to
/// 223.255.255.255.
fn ipv4_table(rng: &mut StdRng) -> Vec<Prefix<u32>> {
    #[derive(Clone, Copy)]
    enum Band {
        Fixed(u8),
        Range(u8, u8),
    }
    let bands = [
        (600, Band::Fixed(24)),
        (100, Band::Fixed(23)),
        (100, Band::Fixed(22)),
        (120, Band::Range(16, 21)),
        (50, Band::Range(8, 15)),
        (30, Band::Range(25, 32)),
    ];
    let mut seen = HashSet::with_capacity(V4_PREFIXES);
    let mut out = Vec::with_capacity(V4_PREFIXES);
    while out.len() < V4_PREFIXES {
        let len = match pick(rng, &bands) {
            Band::Fixed(l) => l,
            Band::Range(a, b) => len_in(rng, a, b),
        };
        // Retry a taken prefix with new addresses of the same length, so that the
        // short lengths (of which few exist) keep their share.
        for _ in 0..1000 {
            let addr: u32 = rng.gen_range(0x0100_0000..0xe000_0000);
            let addr = addr & (!0 << (32 - len));
            if seen.insert((addr, len)) {
                out.push((addr, len, rng.gen_range(0..VALUES)));
                break;
            }
        }
    }
    out
}

/// IPv6 prefixes, mostly /32–/48: allocations (/29–/32) spread over 2000::/4 and
/// more-specifics, four in five of them inside an existing allocation.
fn ipv6_table(rng: &mut StdRng) -> Vec<Prefix<u128>> {
    let lens = [
        (480, 48u8),
        (110, 32),
        (90, 44),
        (80, 40),
        (50, 36),
        (30, 29),
        (100, 0), // 0: any of /33–/47
        (40, 56),
        (20, 64),
    ];
    let mut seen = HashSet::with_capacity(V6_PREFIXES);
    let mut out = Vec::with_capacity(V6_PREFIXES);
    let mut allocations: Vec<u128> = Vec::new();
    while out.len() < V6_PREFIXES {
        let mut len = pick(rng, &lens);
        if len == 0 {
            len = rng.gen_range(33..=47);
        }
        let random: u128 = (0x2u128 << 124) | (rng.gen::<u128>() >> 4);
        let addr = if len > 32 && !allocations.is_empty() && rng.gen_range(0..5) != 0 {
            let base = allocations[rng.gen_range(0..allocations.len())];
            base | (random & (u128::MAX >> 32))
        } else {
            random
        };
        let addr = addr & (u128::MAX << (128 - u32::from(len)));
        if seen.insert((addr, len)) {
            if len <= 32 {
                allocations.push(addr & (u128::MAX << 96));
            }
            out.push((addr, len, rng.gen_range(0..VALUES)));
        }
    }
    out
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The best of three timed passes of `pass`, which looks up `n` keys and
/// gives a checksum of the answers: (lookups/s, checksum). This machine's
/// neighbours make single passes vary by up to two times; every lookup rate
/// below, the engine's and rte_lpm's alike, is measured this way.
fn best_of_three(n: usize, mut pass: impl FnMut() -> u64) -> (f64, u64) {
    let mut best = (0.0, 0);
    for _ in 0..3 {
        let start = Instant::now();
        let sum = pass();
        let r = rate(n, start.elapsed());
        if r > best.0 {
            best = (r, black_box(sum));
        }
    }
    best
}

/// Times `rounds` passes of lookups over `keys`, returning (lookups/s,
/// checksum).
fn time_lookups<K: Copy>(
    keys: &[K],
    rounds: usize,
    lookup: impl Fn(K) -> Option<u32>,
) -> (f64, u64) {
    best_of_three(keys.len() * rounds, || {
        let mut sum = 0u64;
        for _ in 0..rounds {
            for &k in keys {
                sum = sum.wrapping_add(u64::from(lookup(black_box(k)).unwrap_or(0)));
            }
        }
        sum
    })
}

/// Keys per call in the streaming measurements: many bursts at once, which
/// lets a bulk lookup start on the next burst's reads before it has finished
/// the current one.
const STREAM: usize = 4096;

/// Lookups per second over `keys` in chunks of `chunk`, `rounds` times;
/// `lookup` answers one chunk and gives the sum of its values (misses as 0).
fn time_bulk(
    keys: &[u32],
    rounds: usize,
    chunk: usize,
    lookup: &mut impl FnMut(&[u32]) -> u64,
) -> (f64, u64) {
    best_of_three(keys.len() * rounds, || {
        let mut sum = 0u64;
        for _ in 0..rounds {
            for c in keys.chunks(chunk) {
                sum = sum.wrapping_add(lookup(black_box(c)));
            }
        }
        sum
    })
}

/// Keys inside the table's prefixes (random host bits).
fn hot_v4(rng: &mut StdRng, t: &[Prefix<u32>]) -> Vec<u32> {
    (0..HOT_SET)
        .map(|_| {
            let (a, l, _) = t[rng.gen_range(0..t.len())];
            a | (rng.gen::<u32>() & (u32::MAX.checked_shr(u32::from(l)).unwrap_or(0)))
        })
        .collect()
}

fn hot_v6(rng: &mut StdRng, t: &[Prefix<u128>]) -> Vec<u128> {
    (0..HOT_SET)
        .map(|_| {
            let (a, l, _) = t[rng.gen_range(0..t.len())];
            a | (rng.gen::<u128>() & (u128::MAX.checked_shr(u32::from(l)).unwrap_or(0)))
        })
        .collect()
}

fn bench_ipv4(rng: &mut StdRng) -> Vec<Prefix<u32>> {
    let table = ipv4_table(rng);
    let mut hist = [0usize; 33];
    for p in &table {
        hist[usize::from(p.1)] += 1;
    }
    let pct = |r: std::ops::RangeInclusive<usize>| {
        100.0 * hist[r].iter().sum::<usize>() as f64 / table.len() as f64
    };
    println!(
        "IPv4: {} prefixes (/24 {:.1}%, /23 {:.1}%, /22 {:.1}%, /16-/21 {:.1}%, /8-/15 {:.1}%, /25-/32 {:.1}%)",
        table.len(),
        pct(24..=24),
        pct(23..=23),
        pct(22..=22),
        pct(16..=21),
        pct(8..=15),
        pct(25..=32)
    );

    let random: Vec<u32> = (0..RANDOM_LOOKUPS).map(|_| rng.gen()).collect();
    let hot = hot_v4(rng, &table);
    let layouts: [(&str, Option<u32>); 2] = [
        ("default layout (Lpm4::build)", None),
        ("compact layout (18-bit direct array)", Some(18)),
    ];
    // The default layout's load rate and random and hot lookup rates.
    let mut ours = None;
    for (name, bits) in layouts {
        let input = table.clone();
        let start = Instant::now();
        let lpm = match bits {
            None => Lpm4::build(input),
            Some(b) => Lpm4::build_with_direct_bits(input, b),
        };
        let load = start.elapsed();
        println!("  {name}: {}-bit direct array", lpm.direct_bits());
        println!(
            "    load: {:.1} ms ({:.2} M prefixes/s)",
            load.as_secs_f64() * 1e3,
            rate(table.len(), load) / 1e6
        );
        println!(
            "    memory: {} bytes ({:.1} MiB, {:.1} bytes/prefix; {} nodes)",
            lpm.memory_bytes(),
            mib(lpm.memory_bytes()),
            lpm.memory_bytes() as f64 / table.len() as f64,
            lpm.node_count()
        );
        let (r, sum) = time_lookups(&random, 1, |k| lpm.lookup(k));
        let hits = random.iter().filter(|&&k| lpm.lookup(k).is_some()).count();
        println!(
            "    random lookups: {:.1} M/s over {} destinations ({:.0}% hit; checksum {sum})",
            r / 1e6,
            RANDOM_LOOKUPS,
            100.0 * hits as f64 / RANDOM_LOOKUPS as f64
        );
        let (r, sum) = time_lookups(&hot, HOT_ROUNDS, |k| lpm.lookup(k));
        println!(
            "    cache-hot lookups: {:.1} M/s ({} destinations x {} rounds; checksum {sum})",
            r / 1e6,
            HOT_SET,
            HOT_ROUNDS
        );
        let mut out = vec![None; STREAM];
        let mut bulk = |c: &[u32]| {
            lpm.lookup_bulk(c, &mut out[..c.len()]);
            out[..c.len()]
                .iter()
                .map(|v| u64::from(v.unwrap_or(0)))
                .sum()
        };
        let (br, bsum) = time_bulk(&random, 1, 64, &mut bulk);
        let (bh, bhsum) = time_bulk(&hot, HOT_ROUNDS, 64, &mut bulk);
        println!(
            "    in bulks of 64 (lookup_bulk): random {:.1} M/s (checksum {bsum}), cache-hot {:.1} M/s (checksum {bhsum})",
            br / 1e6,
            bh / 1e6
        );
        let (sr, ssum) = time_bulk(&random, 1, STREAM, &mut bulk);
        println!(
            "    streaming, {STREAM} keys per lookup_bulk: random {:.1} M/s (checksum {ssum})",
            sr / 1e6
        );
        if bits.is_none() {
            ours = Some((rate(table.len(), load), [br, bh, sr], lpm));
        }
    }
    #[cfg(feature = "dpdk")]
    if let Some((load, rates, lpm)) = &ours {
        bench_rte_lpm(&table, &random, &hot, *load, *rates, lpm);
    }
    #[cfg(not(feature = "dpdk"))]
    {
        drop(ours);
        println!("  DPDK rte_lpm: not run (build with --features dpdk to compare)");
    }
    table
}

/// DPDK's rte_lpm on the same table and destinations, and the ratios.
#[cfg(feature = "dpdk")]
fn bench_rte_lpm(
    table: &[Prefix<u32>],
    random: &[u32],
    hot: &[u32],
    our_load: f64,
    [our_random, our_hot, our_stream]: [f64; 3],
    ours: &Lpm4,
) {
    use dataplane::dpdk;
    let eal = match dpdk::eal(&[]) {
        Ok(e) => e,
        Err(e) => {
            println!("  DPDK rte_lpm: not run: {e}");
            return;
        }
    };
    let tbl8s = table
        .iter()
        .filter(|p| p.1 > 24)
        .map(|p| p.0 >> 8)
        .collect::<HashSet<u32>>()
        .len() as u32
        + 1024;
    let mut lpm = dpdk::RteLpm::new(eal, table.len() as u32 + 1, tbl8s).expect("rte_lpm");
    // Shortest prefixes first (the order rte_lpm adds fastest in); the sort
    // is timed too.
    let start = Instant::now();
    let mut sorted = table.to_vec();
    sorted.sort_by_key(|p| p.1);
    for p in &sorted {
        lpm.add(p.0, p.1, p.2).expect("rte_lpm_add");
    }
    let load = start.elapsed();
    let mut hops = vec![0u32; STREAM];
    let mut bulk = |c: &[u32]| {
        lpm.lookup_bulk(c, &mut hops[..c.len()]);
        hops[..c.len()]
            .iter()
            .map(|v| u64::from(if *v == u32::MAX { 0 } else { *v }))
            .sum()
    };
    // Same answers as the engine's table, or the comparison means nothing.
    let mut out = [0u32; 64];
    for c in random[..100_000].chunks(64) {
        lpm.lookup_bulk(c, &mut out[..c.len()]);
        for (k, v) in c.iter().zip(&out) {
            let theirs = (*v != u32::MAX).then_some(*v);
            assert_eq!(
                theirs,
                ours.lookup(*k),
                "rte_lpm and the engine differ on {k:#x}"
            );
        }
    }
    let (r, sum) = time_bulk(random, 1, 64, &mut bulk);
    let (h, hsum) = time_bulk(hot, HOT_ROUNDS, 64, &mut bulk);
    let (st, ssum) = time_bulk(random, 1, STREAM, &mut bulk);
    let memory = (1usize << 24) * 4 + tbl8s as usize * 256 * 4;
    println!("  DPDK rte_lpm (DIR-24-8), same prefixes and destinations, lookups with rte_lpm_lookup_bulk:");
    println!(
        "    load: {:.1} ms ({:.3} M prefixes/s); tables {:.1} MiB",
        load.as_secs_f64() * 1e3,
        rate(table.len(), load) / 1e6,
        mib(memory)
    );
    println!(
        "    in bulks of 64: random {:.1} M/s (checksum {sum}), cache-hot {:.1} M/s (checksum {hsum})",
        r / 1e6,
        h / 1e6
    );
    println!(
        "    streaming, {STREAM} keys per rte_lpm_lookup_bulk: random {:.1} M/s (checksum {ssum})",
        st / 1e6
    );
    println!(
        "    engine / rte_lpm: in bulks of 64 random {:.2}x, cache-hot {:.2}x; streaming random {:.2}x; load {:.1}x",
        our_random / r,
        our_hot / h,
        our_stream / st,
        our_load / rate(table.len(), load)
    );
}

fn bench_ipv6(rng: &mut StdRng) {
    let table = ipv6_table(rng);
    let in_range = table.iter().filter(|p| (32..=48).contains(&p.1)).count();
    println!(
        "IPv6: {} prefixes ({:.0}% /32-/48)",
        table.len(),
        100.0 * in_range as f64 / table.len() as f64
    );
    let input = table.clone();
    let start = Instant::now();
    let lpm = Lpm6::build(input);
    let load = start.elapsed();
    println!(
        "  load: {:.1} ms ({:.2} M prefixes/s)",
        load.as_secs_f64() * 1e3,
        rate(table.len(), load) / 1e6
    );
    println!(
        "  memory: {} bytes ({:.1} MiB, {:.1} bytes/prefix; {} nodes)",
        lpm.memory_bytes(),
        mib(lpm.memory_bytes()),
        lpm.memory_bytes() as f64 / table.len() as f64,
        lpm.node_count()
    );
    // Random destinations in 2000::/4, where the table is.
    let random: Vec<u128> = (0..RANDOM_LOOKUPS)
        .map(|_| (0x2u128 << 124) | (rng.gen::<u128>() >> 4))
        .collect();
    let (r, sum) = time_lookups(&random, 1, |k| lpm.lookup(k));
    println!(
        "  random lookups: {:.1} M/s over {} destinations in 2000::/4 (checksum {sum})",
        r / 1e6,
        RANDOM_LOOKUPS
    );
    let hot = hot_v6(rng, &table);
    let (r, sum) = time_lookups(&hot, HOT_ROUNDS, |k| lpm.lookup(k));
    println!(
        "  cache-hot lookups: {:.1} M/s ({} destinations x {} rounds; checksum {sum})",
        r / 1e6,
        HOT_SET,
        HOT_ROUNDS
    );
}

/// A forwarding state with two port interfaces, `VALUES` next hops and the IPv4
/// table's prefixes as routes.
fn full_state(table: &[Prefix<u32>]) -> ForwardingState {
    let mut objs = common::two_ports(VALUES);
    for &(a, l, v) in table {
        objs.push(Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: ipnet::Ipv4Net::new(a.into(), l).unwrap().into(),
            action: RouteAction::NextHop(NextHopId(v)),
        }));
    }
    ForwardingState::from_objects(objs).unwrap()
}

fn bench_pipeline(rng: &mut StdRng, table: &[Prefix<u32>]) {
    let start = Instant::now();
    let state = full_state(table);
    let model = start.elapsed();
    let start = Instant::now();
    let tables = Tables::build(&state);
    let build = start.elapsed();
    println!(
        "Pipeline: Tables::build of a state with {} routes: {:.1} ms (building the ForwardingState itself: {:.1} ms)",
        tables.route_count(),
        build.as_secs_f64() * 1e3,
        model.as_secs_f64() * 1e3
    );

    // 64-byte UDP/IPv4 frames to random destinations inside the table.
    let hot = hot_v4(rng, table);
    let frames: Vec<Vec<u8>> = hot
        .iter()
        .map(|&dst| common::udp_frame([2, 0, 0, 0, 0, 1], [10, 9, 9, 9], dst, 0))
        .collect();
    let mut buf = Vec::with_capacity(64);
    let mut counters = Counters::default();
    let rounds = 5_000;
    let start = Instant::now();
    for _ in 0..rounds {
        for f in &frames {
            buf.clear();
            buf.extend_from_slice(f);
            black_box(process(&tables, PortId(1), &mut buf, &mut counters));
        }
    }
    let d = start.elapsed();
    let n = rounds * frames.len();
    assert_eq!(counters.forwarded as usize, n, "{:?}", counters.named());
    let mut probe = frames[0].clone();
    assert!(matches!(
        process(&tables, PortId(1), &mut probe, &mut Counters::default()),
        Verdict::Forward { .. }
    ));
    println!(
        "  process(): {:.1} M frames/s on one core (64-byte IPv4 frames, {} destinations, frame copy included)",
        rate(n, d) / 1e6,
        frames.len()
    );
}

/// One random change to a full table: a new value for an existing prefix (half
/// of the changes), a removal (a quarter) or a new /24 (a quarter).
fn random_change(rng: &mut StdRng, table: &[Prefix<u32>]) -> (u32, u8, Option<u32>) {
    let (a, l, _) = table[rng.gen_range(0..table.len())];
    match rng.gen_range(0..4) {
        0 | 1 => (a, l, Some(rng.gen_range(0..VALUES))),
        2 => (a, l, None),
        _ => (
            rng.gen::<u32>() & 0xffff_ff00,
            24,
            Some(rng.gen_range(0..VALUES)),
        ),
    }
}

fn bench_incremental(rng: &mut StdRng, table: &[Prefix<u32>]) {
    const UPDATES: usize = 200_000;
    let mut map = PrefixMap::default();
    let start = Instant::now();
    for &(a, l, v) in table {
        map.insert(a, l, v).expect("valid prefix");
    }
    let fill = start.elapsed();
    let mut lpm = Lpm4::from_map(&map);
    let changes: Vec<_> = (0..UPDATES).map(|_| random_change(rng, table)).collect();
    let start = Instant::now();
    for &(a, l, v) in &changes {
        match v {
            Some(v) => {
                map.insert(a, l, v).expect("valid prefix");
            }
            None => {
                map.remove(a, l);
            }
        }
        lpm.update(&map, a, l);
    }
    let d = start.elapsed();
    let rebuilt = Lpm4::from_map(&map);
    let probes: Vec<u32> = (0..1_000_000).map(|_| rng.gen()).collect();
    let differ = probes
        .iter()
        .filter(|&&k| lpm.lookup(k) != rebuilt.lookup(k))
        .count();
    assert_eq!(differ, 0, "the patched table answers like a bulk load");
    println!(
        "IPv4 incremental updates on the {}-prefix table: {:.2} M updates/s ({} changes: 50% new value, 25% removal, 25% new /24; prefix map included), {:.1} MiB after ({:.1} MiB bulk-loaded); filling the prefix map: {:.2} M prefixes/s",
        table.len(),
        rate(UPDATES, d) / 1e6,
        UPDATES,
        mib(lpm.memory_bytes()),
        mib(rebuilt.memory_bytes()),
        rate(table.len(), fill) / 1e6
    );
}

/// Route batches committed into the x86 backend (no packet I/O): the whole table
/// in one batch, then batches of route changes of several sizes, with the
/// tables published after every batch.
fn bench_backend(rng: &mut StdRng, table: &[Prefix<u32>]) {
    let state = full_state(table);
    let everything = nos_core::diff(&ForwardingState::new(), &state);
    let mut backend = X86Backend::detached();
    let start = Instant::now();
    let results = backend.apply(&everything);
    let d = start.elapsed();
    assert!(results.iter().all(|r| r.is_ok()));
    println!(
        "x86 backend: the whole table ({} deltas) in one batch: {:.0} ms ({:.2} M deltas/s)",
        everything.len(),
        d.as_secs_f64() * 1e3,
        rate(everything.len(), d) / 1e6
    );
    let mut current = state;
    for batch in [1usize, 100, 1_000, 10_000] {
        let total = (batch * 200).clamp(2_000, 200_000);
        let mut deltas = Vec::with_capacity(total);
        let mut scratch = current.clone();
        while deltas.len() < total {
            let (a, l, v) = random_change(rng, table);
            let prefix = ipnet::Ipv4Net::new(a.into(), l).expect("valid").into();
            let key = RouteKey {
                vrf: VrfId::DEFAULT,
                prefix,
            };
            let exists = scratch.routes().contains_key(&key);
            let d = match (v, exists) {
                (None, true) => Delta::Delete(ObjectKey::Route(key)),
                (None, false) => continue,
                (Some(v), e) => {
                    let r = Object::Route(Route {
                        vrf: VrfId::DEFAULT,
                        prefix,
                        action: RouteAction::NextHop(NextHopId(v)),
                    });
                    if e {
                        Delta::Modify(r)
                    } else {
                        Delta::Create(r)
                    }
                }
            };
            scratch.apply(&d).expect("a valid change");
            deltas.push(d);
        }
        let start = Instant::now();
        for chunk in deltas.chunks(batch) {
            let r = backend.apply(chunk);
            debug_assert!(r.iter().all(|r| r.is_ok()));
        }
        let d = start.elapsed();
        current = scratch;
        println!(
            "  route changes in batches of {batch:>6}: {:.0} k routes/s ({} changes)",
            rate(total, d) / 1e3,
            total
        );
    }
    assert_eq!(backend.tables().route_count(), current.routes().len());
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore arguments.
    let mut rng = StdRng::seed_from_u64(0x5eed_1e9f);
    let table = bench_ipv4(&mut rng);
    bench_ipv6(&mut rng);
    bench_incremental(&mut rng, &table);
    bench_backend(&mut rng, &table);
    bench_pipeline(&mut rng, &table);
}
