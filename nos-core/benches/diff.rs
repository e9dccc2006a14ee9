//! `nos_core::diff` between two large forwarding states.
//!
//! The old state has 1,000,000 IPv4 routes over 10,000 weighted next-hop groups
//! (2–4 members each) built from 64 next hops on 4 router interfaces. The new state
//! changes the action of 1% of the routes, adds 1% new routes, removes 1%, and
//! modifies 100 groups. Prints build time, diff time, the number of deltas and
//! memory: process RSS before building, after building both states, and the peak
//! RSS during the diff.
//!
//! Run with `cargo bench -p nos-core --bench diff`.

use nos_core::{
    diff, Delta, ForwardingState, GroupId, GroupMember, Kind, NextHop, NextHopGroup, NextHopId,
    Object, ObjectKey, Port, PortId, RifId, RifKind, Route, RouteAction, RouteKey, RouterInterface,
    Vrf, VrfId,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::net::Ipv4Addr;
use std::time::Instant;

const ROUTES: u32 = 1_000_000;
const GROUPS: u32 = 10_000;
const RIFS: u32 = 4;
const HOPS_PER_RIF: u32 = 16;
const CHANGED_GROUPS: usize = 100;

/// A line of /proc/self/status, in kB.
fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
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

/// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux ≥ 4.0).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn prefix(i: u32) -> ipnet::IpNet {
    // Consecutive /24s from 16.0.0.0: 1,000,000 of them end below 32.0.0.0.
    let base = u32::from(Ipv4Addr::new(16, 0, 0, 0));
    let net = ipnet::Ipv4Net::new(Ipv4Addr::from(base + (i << 8)), 24).expect("prefix length");
    ipnet::IpNet::V4(net)
}

fn random_group(id: u32, rng: &mut StdRng) -> NextHopGroup {
    let hops: Vec<u32> = (1..=RIFS * HOPS_PER_RIF).collect();
    let n = rng.gen_range(2..=4);
    let mut members: Vec<GroupMember> = hops
        .choose_multiple(rng, n)
        .map(|h| GroupMember {
            next_hop: NextHopId(*h),
            weight: rng.gen_range(1..=4),
        })
        .collect();
    members.sort();
    NextHopGroup {
        id: GroupId(id),
        members,
    }
}

fn build_old(rng: &mut StdRng) -> ForwardingState {
    let mut s = ForwardingState::new();
    let mut put = |o: Object| {
        s.upsert(o).expect("a valid object");
    };
    put(Object::Vrf(Vrf {
        id: VrfId::DEFAULT,
        name: "default".into(),
    }));
    for r in 1..=RIFS {
        put(Object::Port(Port {
            id: PortId(r),
            name: format!("eth{r}"),
            mtu: 1500,
            admin_up: true,
        }));
        put(Object::from(RouterInterface {
            id: RifId(r),
            name: format!("eth{r}"),
            vrf: VrfId::DEFAULT,
            kind: RifKind::Port { port: PortId(r) },
            mac: nos_core::MacAddr([0x02, 0, 0, 0, 0, r as u8]),
            mtu: 1500,
            admin_up: true,
        }));
        for h in 0..HOPS_PER_RIF {
            put(Object::NextHop(NextHop {
                id: NextHopId((r - 1) * HOPS_PER_RIF + h + 1),
                rif: RifId(r),
                ip: Ipv4Addr::new(198, 18, r as u8, h as u8 + 2).into(),
            }));
        }
    }
    for g in 1..=GROUPS {
        put(Object::Group(random_group(g, rng)));
    }
    for i in 0..ROUTES {
        put(Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: prefix(i),
            action: RouteAction::Group(GroupId(i % GROUPS + 1)),
        }));
    }
    s
}

/// The old state with 1% of the routes re-pointed, 1% added, 1% removed, and
/// `CHANGED_GROUPS` groups modified.
fn derive_new(old: &ForwardingState, rng: &mut StdRng) -> ForwardingState {
    let mut s = old.clone();
    let one_percent = (ROUTES / 100) as usize;
    let mut idx: Vec<u32> = (0..ROUTES).collect();
    let (picked, _) = idx.partial_shuffle(rng, 2 * one_percent);
    let (changed, removed) = picked.split_at(one_percent);
    for &i in changed {
        let old_group = i % GROUPS + 1;
        let g = (old_group + rng.gen_range(1..GROUPS) - 1) % GROUPS + 1;
        s.upsert(Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: prefix(i),
            action: RouteAction::Group(GroupId(g)),
        }))
        .expect("re-point a route");
    }
    for &i in removed {
        s.remove(&ObjectKey::Route(RouteKey {
            vrf: VrfId::DEFAULT,
            prefix: prefix(i),
        }))
        .expect("remove a route");
    }
    for i in ROUTES..ROUTES + one_percent as u32 {
        s.upsert(Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: prefix(i),
            action: RouteAction::Group(GroupId(rng.gen_range(1..=GROUPS))),
        }))
        .expect("add a route");
    }
    let mut groups: Vec<u32> = (1..=GROUPS).collect();
    let (picked, _) = groups.partial_shuffle(rng, CHANGED_GROUPS);
    for &g in picked.iter() {
        let mut new = random_group(g, rng);
        while Some(&new) == old.groups().get(&GroupId(g)) {
            new = random_group(g, rng);
        }
        s.upsert(Object::Group(new)).expect("modify a group");
    }
    s
}

fn main() {
    let mut rng = StdRng::seed_from_u64(0x6e6f_7364);
    let rss_start = status_kb("VmRSS:");

    let t = Instant::now();
    let old = build_old(&mut rng);
    let build_old_time = t.elapsed();
    let t = Instant::now();
    let new = derive_new(&old, &mut rng);
    let build_new_time = t.elapsed();
    let rss_built = status_kb("VmRSS:");

    let peak_reset = reset_peak();
    let t = Instant::now();
    let deltas = diff(&old, &new);
    let diff_time = t.elapsed();
    let peak = status_kb("VmHWM:");

    let mut counts = std::collections::BTreeMap::<(Kind, &str), usize>::new();
    for d in &deltas {
        let what = match d {
            Delta::Create(_) => "create",
            Delta::Modify(_) => "modify",
            Delta::Delete(_) => "delete",
        };
        *counts.entry((d.key().kind(), what)).or_default() += 1;
    }

    println!(
        "diff of two forwarding states: {} routes / {} groups old, {} routes / {} groups new",
        old.routes().len(),
        old.groups().len(),
        new.routes().len(),
        new.groups().len()
    );
    println!(
        "  build old state      {:>8.0} ms",
        build_old_time.as_secs_f64() * 1e3
    );
    println!(
        "  derive new state     {:>8.0} ms (clone + changes)",
        build_new_time.as_secs_f64() * 1e3
    );
    println!(
        "  diff                 {:>8.0} ms (target <= 1000 ms)",
        diff_time.as_secs_f64() * 1e3
    );
    println!("  deltas               {:>8}", deltas.len());
    for ((kind, what), n) in &counts {
        println!("    {kind:?} {what}: {n}");
    }
    println!("  RSS before building  {:>8}", mib(rss_start));
    println!("  RSS with both states {:>8}", mib(rss_built));
    if peak_reset {
        println!("  peak RSS during diff {:>8}", mib(peak));
    } else {
        println!(
            "  peak RSS (process)   {:>8} (could not reset the peak mark)",
            mib(peak)
        );
    }
    assert!(!deltas.is_empty());
}
