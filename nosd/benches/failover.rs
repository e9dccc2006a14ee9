//! Failover benchmark (BGP PIC): 1M prefixes learned from two ISPs, the primary
//! is lost; how long until every prefix forwards via the backup, in the
//! forwarding model (the driver's installed state) and in the x86 dataplane
//! (the tables the forwarding thread uses).
//!
//! The router task's input is exactly what the BGP speaker emits: a `Set` per
//! prefix (best next hop ISP1, backup ISP2), then on session loss
//! `NextHopsDown([ISP1])` followed by a `Set` per prefix (now via ISP2). The
//! anchor in the same run is per-prefix convergence: the time until those 1M
//! route rewrites are installed, which is what failover costs without PIC.
//!
//! `cargo bench -p nosd --bench failover [-- --prefixes N]`

use dataplane::engine::{process, Counters, Verdict};
use dataplane::X86Backend;
use ipnet::{IpNet, Ipv4Net};
use nos_core::config::Config;
use nos_core::driver::{Driver, DriverHandle};
use nos_core::{ForwardingState, MacAddr, PortId, RouteAction};
use routing::bgp::speaker::{BgpRibChange, BgpRoute, BgpVia};
use routing::host::NeighborEvent;
use routing::router::Router;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
ports: [{ name: eth1 }, { name: eth2 }, { name: eth3 }]
interfaces:
  - { name: eth1, port: eth1, ipv4: [192.0.2.1/24] }
  - { name: eth2, port: eth2, ipv4: [198.51.100.1/24] }
  - { name: eth3, port: eth3, ipv4: [198.18.1.1/24] }
"#;

const ISP1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x02]);
const ISP2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x02]);

fn installed<T: Send + 'static>(
    d: &DriverHandle,
    f: impl FnOnce(&ForwardingState) -> T + Send + 'static,
) -> T {
    let (tx, rx) = channel();
    d.query(move |s, _| {
        let _ = tx.send(f(s));
    });
    rx.recv().expect("driver answers")
}

/// A frame from host A to `dst`, as the dataplane would receive it on eth1.
fn frame(router_mac: MacAddr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&router_mac.0);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, 2]);
    ip[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x30, 0x39, 0x13, 0x89, 0, 26, 0, 0]);
    f.resize(64, 0);
    f
}

fn main() {
    let mut n: u32 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--prefixes" {
            n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n);
        }
    }
    let isp1: IpAddr = "198.51.100.2".parse().unwrap();
    let isp2: IpAddr = "198.18.1.2".parse().unwrap();
    let prefixes: Vec<IpNet> = (0..n)
        .map(|i| {
            // 10.0.0.0 upwards in /24s, then 11/8 ..., never a lab subnet.
            let a = 10 + (i >> 16);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::new(a as u8, (i >> 8) as u8, i as u8, 0), 24).unwrap())
        })
        .collect();

    let config = Config::from_yaml(CONFIG).unwrap();
    let router_mac = config.router_mac();
    let mut router = Router::new();
    router.set_config(config);
    let backend = X86Backend::detached();
    let tables = backend.tables_reader();
    let driver = Driver::spawn(Box::new(backend), Duration::from_secs(5), |_| {}).unwrap();
    let d = driver.handle();
    let (base, _) = router.recompute();
    d.apply(base);
    // The ISPs' neighbors are resolved.
    for (rif, ip, mac) in [(2u32, isp1, ISP1_MAC), (3, isp2, ISP2_MAC)] {
        router.neighbor(NeighborEvent::Up {
            rif: nos_core::RifId(rif),
            ip,
            mac,
            port: None,
        });
    }
    let (deltas, _) = router.recompute();
    d.apply(deltas);

    // Learn the table: best ISP1, backup ISP2.
    let t = Instant::now();
    // Every prefix goes the same way: one shared `BgpVia`, as the speaker sends.
    let via = Arc::new(BgpVia {
        next_hops: vec![isp1],
        weights: Vec::new(),
        ebgp: true,
        backup: vec![isp2],
    });
    for chunk in prefixes.chunks(10_000) {
        let changes = chunk
            .iter()
            .map(|p| {
                BgpRibChange::Set(BgpRoute {
                    prefix: *p,
                    via: via.clone(),
                })
            })
            .collect();
        let deltas = router.bgp(changes).0;
        d.apply(deltas);
    }
    let learned = installed(&d, |s| s.routes().len());
    println!(
        "failover benchmark: {n} prefixes via ISP1 (backup ISP2); table programmed in {:.2} s ({} routes installed)",
        t.elapsed().as_secs_f64(),
        learned
    );
    // Wait for the dataplane to publish it.
    let sample: Vec<Ipv4Addr> = (0..1000u32)
        .map(|i| {
            let IpNet::V4(p) = prefixes[(i as usize * 7919) % prefixes.len()] else {
                unreachable!()
            };
            Ipv4Addr::from(u32::from(p.network()) + 5)
        })
        .collect();
    let frames: Vec<Vec<u8>> = sample.iter().map(|a| frame(router_mac, *a)).collect();
    // Whether every sampled prefix leaves towards `mac` with these tables.
    let all_via = |t: &dataplane::engine::Tables, mac: MacAddr| {
        frames.iter().all(|f| {
            let mut f = f.clone();
            matches!(
                process(t, PortId(1), &mut f, &mut Counters::default()),
                Verdict::Forward { .. }
            ) && f[0..6] == mac.0
        })
    };
    let t = Instant::now();
    while !all_via(&tables.load(), ISP1_MAC) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the dataplane never forwarded via ISP1"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // What one check of the sample costs (it bounds how late the dataplane
    // figure below can be).
    // Only the published tables' address is kept: holding them would make the
    // dataplane copy them instead of patching its standby copy (which keeps
    // them alive, so the address stays theirs).
    let (published, check_cost) = {
        let published = tables.load();
        let c = Instant::now();
        assert!(all_via(&published, ISP1_MAC));
        (std::sync::Arc::as_ptr(&published), c.elapsed())
    };

    // ISP1 is lost: what the speaker sends first, then the per-prefix changes.
    let t0 = Instant::now();
    let deltas = router.bgp(vec![BgpRibChange::NextHopsDown(vec![isp1])]).0;
    let pic_writes = deltas.len();
    d.apply(deltas);
    let router_done = t0.elapsed();
    // Forwarding model: the groups the BGP routes use now point at ISP2 (every
    // BGP route points at one of them, checked below without the clock).
    let isp2_ip = isp2;
    let groups_ok = move |s: &ForwardingState| {
        s.groups().values().all(|g| {
            g.members
                .iter()
                .all(|m| s.next_hops()[&m.next_hop].ip == isp2_ip)
        })
    };
    while !installed(&d, groups_ok) {}
    let model_done = t0.elapsed();
    // The dataplane: the first published tables after the failover that send
    // every sampled prefix to ISP2.
    let dataplane_done = loop {
        let t = tables.load();
        if !std::ptr::eq(std::sync::Arc::as_ptr(&t), published) {
            let at = t0.elapsed();
            assert!(
                all_via(&t, ISP2_MAC),
                "the new tables do not forward via ISP2"
            );
            break at;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the dataplane never moved to ISP2"
        );
        std::hint::spin_loop();
    };

    let via_groups = installed(&d, |s: &ForwardingState| {
        s.routes()
            .values()
            .filter(|a| matches!(a, RouteAction::Group(_)))
            .count()
    });
    assert_eq!(
        via_groups, n as usize,
        "every BGP route points at a path-list group"
    );

    // The anchor: per-prefix convergence (what failover costs without PIC).
    let t1 = Instant::now();
    let via = Arc::new(BgpVia {
        next_hops: vec![isp2],
        weights: Vec::new(),
        ebgp: true,
        backup: Vec::new(),
    });
    for chunk in prefixes.chunks(10_000) {
        let changes = chunk
            .iter()
            .map(|p| {
                BgpRibChange::Set(BgpRoute {
                    prefix: *p,
                    via: via.clone(),
                })
            })
            .collect();
        let deltas = router.bgp(changes).0;
        d.apply(deltas);
    }
    let converged_routes = installed(&d, |s| s.routes().len());
    let per_prefix = t1.elapsed();
    assert!(all_via(&tables.load(), ISP2_MAC));

    println!("  PIC failover: {pic_writes} write(s) to the target");
    println!(
        "    router task done            {:>9.3} ms",
        router_done.as_secs_f64() * 1e3
    );
    println!(
        "    forwarding model (installed) {:>9.3} ms  (target <= 10 ms)",
        model_done.as_secs_f64() * 1e3
    );
    println!(
        "    x86 dataplane forwarding    {:>9.3} ms  (target <= 10 ms; new tables published, then 1,000 sampled prefixes checked in {:.3} ms)",
        dataplane_done.as_secs_f64() * 1e3,
        check_cost.as_secs_f64() * 1e3
    );
    println!(
        "  anchor, per-prefix convergence of {n} routes (no PIC): {:.1} ms ({} routes installed)",
        per_prefix.as_secs_f64() * 1e3,
        converged_routes
    );
    println!(
        "  ratio: PIC in the dataplane is {:.0}x faster than per-prefix convergence",
        per_prefix.as_secs_f64() / dataplane_done.as_secs_f64().max(1e-9)
    );
    driver.stop();
}
