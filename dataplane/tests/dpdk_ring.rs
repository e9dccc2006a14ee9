//! DPDK ports built from rings (`net_ring`), `net_null` and `net_memif`, through the x86
//! backend with two forwarding workers: a generated stream of frames goes into
//! port A's two receive rings, and every frame that comes out of port B's
//! transmit rings is checked against a model of the pipeline (MACs, TTL, IPv4
//! checksum, payload), as are the frames punted to the control plane and the
//! counters.
//!
//! DPDK's EAL starts once per process, so the scenarios run one after the
//! other in one test function. Needs DPDK (`--features dpdk`, libdpdk-dev and
//! dpdk installed); no hugepages, NICs or root.
#![cfg(feature = "dpdk")]

use dataplane::backend::{IoOptions, ManualWorker, PacketIo, PortBinder, PortBinding};
use dataplane::dpdk::{self, DpdkPort, Eal, MbufBurst, Ring};
use dataplane::engine::Frame;
use dataplane::X86Backend;
use nos_core::backend::{PacketIn, PuntReason};
use nos_core::{
    Backend, ForwardingState, GroupId, GroupMember, MacAddr, Neighbor, NextHop, NextHopGroup,
    NextHopId, Object, Port, PortId, RifId, RifKind, Route, RouteAction, RouterInterface, Vrf,
    VrfId,
};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_A: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
/// Neighbors on port B: the host route's and the two group members'.
const NEIGH: [(Ipv4Addr, [u8; 6]); 3] = [
    (Ipv4Addr::new(198, 51, 100, 2), [2, 0xbb, 0, 0, 0, 2]),
    (Ipv4Addr::new(198, 51, 100, 3), [2, 0xbb, 0, 0, 0, 3]),
    (Ipv4Addr::new(198, 51, 100, 4), [2, 0xbb, 0, 0, 0, 4]),
];

fn state() -> ForwardingState {
    let mut objs = vec![Object::Vrf(Vrf {
        id: VrfId::DEFAULT,
        name: "default".into(),
    })];
    for (p, mac) in [(1u32, MAC_A), (2, MAC_B)] {
        objs.push(Object::Port(Port {
            id: PortId(p),
            name: format!("p{p}"),
            mtu: 1500,
            admin_up: true,
        }));
        objs.push(Object::from(RouterInterface {
            id: RifId(p),
            name: format!("rif{p}"),
            vrf: VrfId::DEFAULT,
            kind: RifKind::Port { port: PortId(p) },
            mac: MacAddr(mac),
            mtu: 1500,
            admin_up: true,
        }));
    }
    for (i, (ip, mac)) in NEIGH.iter().enumerate() {
        objs.push(Object::Neighbor(Neighbor {
            rif: RifId(2),
            ip: (*ip).into(),
            mac: MacAddr(*mac),
            port: None,
        }));
        objs.push(Object::NextHop(NextHop {
            id: NextHopId(i as u32 + 1),
            rif: RifId(2),
            ip: (*ip).into(),
        }));
    }
    // A next hop whose neighbor is unknown.
    objs.push(Object::NextHop(NextHop {
        id: NextHopId(9),
        rif: RifId(2),
        ip: Ipv4Addr::new(198, 51, 100, 9).into(),
    }));
    objs.push(Object::Group(NextHopGroup {
        id: GroupId(1),
        members: vec![
            GroupMember {
                next_hop: NextHopId(2),
                weight: 1,
            },
            GroupMember {
                next_hop: NextHopId(3),
                weight: 1,
            },
        ],
    }));
    let route = |p: &str, action| {
        Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: p.parse().unwrap(),
            action,
        })
    };
    objs.push(route("198.51.100.2/32", RouteAction::NextHop(NextHopId(1))));
    objs.push(route("203.0.113.0/24", RouteAction::Group(GroupId(1))));
    objs.push(route("192.0.2.1/32", RouteAction::ToCpu));
    objs.push(route("10.0.0.0/8", RouteAction::Drop));
    objs.push(route("198.18.0.0/15", RouteAction::NextHop(NextHopId(9))));
    ForwardingState::from_objects(objs).unwrap()
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for w in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 64-byte (60 without the FCS) UDP/IPv4 frame from host A to `dst`,
/// carrying `seq` in its payload.
fn frame(dst: Ipv4Addr, ttl: u8, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&MAC_A);
    f[6..12].copy_from_slice(&HOST_A);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[8] = ttl;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, 2]);
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&4000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5001u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    f
}

/// What the model says happens to a frame.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// Leaves port B, addressed to one of these MACs.
    Out(Vec<[u8; 6]>),
    Punt(PuntReason),
    Drop,
}

fn model(dst: Ipv4Addr, ttl: u8) -> Expect {
    let o = dst.octets();
    let routed = |e: Expect| {
        if ttl <= 1 {
            Expect::Punt(PuntReason::TtlExpired)
        } else {
            e
        }
    };
    match o {
        [198, 51, 100, 2] => routed(Expect::Out(vec![NEIGH[0].1])),
        [203, 0, 113, _] => routed(Expect::Out(vec![NEIGH[1].1, NEIGH[2].1])),
        [192, 0, 2, 1] => Expect::Punt(PuntReason::ToMe),
        [10, ..] => Expect::Drop,
        [198, 18 | 19, ..] => routed(Expect::Punt(PuntReason::NeighborMiss)),
        _ => Expect::Drop,
    }
}

/// Checks one frame that left port B against the frame that went in.
fn check_out(sent: &[u8], got: &[u8], macs: &[[u8; 6]]) -> Result<[u8; 6], String> {
    if got.len() != sent.len() {
        return Err(format!("length {} instead of {}", got.len(), sent.len()));
    }
    let dst: [u8; 6] = got[0..6].try_into().unwrap();
    if !macs.contains(&dst) {
        return Err(format!("destination MAC {dst:02x?} not among {macs:02x?}"));
    }
    if got[6..12] != MAC_B {
        return Err(format!("source MAC {:02x?} is not port B's", &got[6..12]));
    }
    if got[12..14] != sent[12..14] {
        return Err("EtherType changed".into());
    }
    if got[22] != sent[22] - 1 {
        return Err(format!("TTL {} after {}", got[22], sent[22]));
    }
    if checksum(&got[14..34]) != 0 {
        return Err("IPv4 header checksum is wrong".into());
    }
    let mut a = sent[14..34].to_vec();
    let mut b = got[14..34].to_vec();
    for h in [&mut a, &mut b] {
        h[8] = 0;
        h[10] = 0;
        h[11] = 0;
    }
    if a != b {
        return Err("IPv4 header fields besides TTL and checksum changed".into());
    }
    if got[34..] != sent[34..] {
        return Err("payload changed".into());
    }
    Ok(dst)
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[42..46].try_into().unwrap())
}

/// The generated stream: destinations across every route class, a few TTL 1.
fn stream(n: u32) -> Vec<(Ipv4Addr, u8)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ttl = if i % 97 == 0 { 1 } else { 64 };
            let dst = match x % 16 {
                0..=5 => Ipv4Addr::new(198, 51, 100, 2),
                6..=11 => Ipv4Addr::new(203, 0, 113, (x >> 8) as u8),
                12 => Ipv4Addr::new(192, 0, 2, 1),
                13 => Ipv4Addr::new(10, (x >> 8) as u8, 1, 1),
                14 => Ipv4Addr::new(198, 18, 0, (x >> 8) as u8),
                _ => Ipv4Addr::new(100, 64, (x >> 8) as u8, 1),
            };
            (dst, ttl)
        })
        .collect()
}

fn binder() -> PortBinder {
    Arc::new(|p: &Port| match p.name.as_str() {
        "p1" => Some(PortBinding::Dpdk("net_ring_nos_a".into())),
        "p2" => Some(PortBinding::Dpdk("net_ring_nos_b".into())),
        _ => None,
    })
}

/// Two workers forward a generated stream from port A's rings to port B's;
/// every output and punt is what the model says.
fn ring_loop(eal: &'static Eal) {
    const N: u32 = 20_000;
    let a_rx = [Ring::new(eal, 8192).unwrap(), Ring::new(eal, 8192).unwrap()];
    let a_tx = [Ring::new(eal, 8192).unwrap(), Ring::new(eal, 8192).unwrap()];
    let b_rx = [Ring::new(eal, 8192).unwrap(), Ring::new(eal, 8192).unwrap()];
    let b_tx = [Ring::new(eal, 8192).unwrap(), Ring::new(eal, 8192).unwrap()];
    dpdk::port_from_rings(eal, "nos_a", &[&a_rx[0], &a_rx[1]], &[&a_tx[0], &a_tx[1]]).unwrap();
    dpdk::port_from_rings(eal, "nos_b", &[&b_rx[0], &b_rx[1]], &[&b_tx[0], &b_tx[1]]).unwrap();

    let (punt_tx, punt_rx) = mpsc::channel::<PacketIn>();
    let punt_tx = std::sync::Mutex::new(punt_tx);
    let mut backend = X86Backend::start_with(
        binder(),
        Arc::new(move |p| {
            let _ = punt_tx.lock().unwrap().send(p);
        }),
        IoOptions {
            workers: 2,
            eal_args: Vec::new(),
            start_dpdk: true,
        },
    )
    .expect("start the dataplane");
    let results = backend.apply(&nos_core::diff(&ForwardingState::new(), &state()));
    for r in &results {
        r.as_ref().expect("the state applies");
    }

    let plan = stream(N);
    let frames: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, (dst, ttl))| frame(*dst, *ttl, i as u32))
        .collect();
    let expect: Vec<Expect> = plan.iter().map(|(d, t)| model(*d, *t)).collect();
    let want_out = expect
        .iter()
        .filter(|e| matches!(e, Expect::Out(_)))
        .count();

    let mut seen: HashMap<u32, [u8; 6]> = HashMap::new();
    let mut errors = Vec::new();
    let mut next = 0usize;
    let mut pending = MbufBurst::default();
    let mut out = MbufBurst::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (next < frames.len() || !pending.is_empty() || seen.len() < want_out)
        && Instant::now() < deadline
    {
        if pending.is_empty() && next < frames.len() {
            let end = (next + dpdk::BURST).min(frames.len());
            let refs: Vec<&[u8]> = frames[next..end].iter().map(|f| f.as_slice()).collect();
            assert_eq!(pending.fill(eal, &refs).unwrap(), end - next);
            next = end;
        }
        if !pending.is_empty() {
            // Alternate the receive rings (the two workers' queues).
            a_rx[(next / dpdk::BURST) % 2].enqueue(&mut pending);
        }
        for ring in &b_tx {
            while ring.dequeue(&mut out) > 0 {
                for i in 0..out.len() {
                    let got = out.get(i).unwrap().bytes();
                    let seq = seq_of(got);
                    let Some(Expect::Out(macs)) = expect.get(seq as usize) else {
                        errors.push(format!(
                            "frame {seq} left port B; the model says {:?}",
                            expect.get(seq as usize)
                        ));
                        continue;
                    };
                    match check_out(&frames[seq as usize], got, macs) {
                        Ok(mac) => {
                            if seen.insert(seq, mac).is_some() {
                                errors.push(format!("frame {seq} left twice"));
                            }
                        }
                        Err(e) => errors.push(format!("frame {seq}: {e}")),
                    }
                }
                out.clear();
            }
        }
        if next >= frames.len() && pending.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(
        errors.is_empty(),
        "{} wrong frames, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(seen.len(), want_out, "frames forwarded out of port B");
    for ring in &a_tx {
        assert_eq!(ring.count(), 0, "nothing goes back out of port A");
    }
    // Both members of the group carried traffic.
    let group: Vec<[u8; 6]> = seen
        .iter()
        .filter(|(s, _)| matches!(&expect[**s as usize], Expect::Out(m) if m.len() == 2))
        .map(|(_, m)| *m)
        .collect();
    for member in [NEIGH[1].1, NEIGH[2].1] {
        let n = group.iter().filter(|m| **m == member).count();
        assert!(
            n > group.len() / 4,
            "group member {member:02x?} got {n} of {}",
            group.len()
        );
    }

    // Punts: every one the model predicts, with its reason, frame unchanged.
    let want_punts: Vec<(usize, PuntReason)> = expect
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Expect::Punt(r) => Some((i, *r)),
            _ => None,
        })
        .collect();
    let mut punts = HashMap::new();
    let end = Instant::now() + Duration::from_secs(5);
    while punts.len() < want_punts.len() && Instant::now() < end {
        if let Ok(p) = punt_rx.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(p.port, PortId(1));
            punts.insert(seq_of(&p.frame) as usize, (p.reason, p.frame));
        }
    }
    for (i, reason) in &want_punts {
        let Some((r, f)) = punts.get(i) else {
            panic!("frame {i} was not punted ({reason:?})");
        };
        assert_eq!(r, reason, "punt reason of frame {i}");
        assert_eq!(f, &frames[*i], "a punted frame is unchanged");
    }

    // Counters, summed over the workers once they have published them.
    std::thread::sleep(Duration::from_millis(150));
    let drops: HashMap<String, u64> = backend.drop_counters().into_iter().collect();
    assert_eq!(drops["forwarded"], want_out as u64, "{drops:?}");
    let want_drops = expect.iter().filter(|e| **e == Expect::Drop).count() as u64;
    assert_eq!(
        drops["drop.no_route"] + drops["drop.route_drop"],
        want_drops,
        "{drops:?}"
    );
    let pc: HashMap<PortId, _> = backend
        .port_counters()
        .into_iter()
        .map(|c| (c.port, c))
        .collect();
    assert_eq!(pc[&PortId(1)].rx_packets, u64::from(N));
    assert_eq!(pc[&PortId(1)].rx_bytes, u64::from(N) * 60);
    assert_eq!(pc[&PortId(1)].rx_drops, want_drops);
    assert_eq!(pc[&PortId(2)].tx_packets, want_out as u64);
    assert_eq!(pc[&PortId(2)].tx_bytes, want_out as u64 * 60);
    assert_eq!(pc[&PortId(2)].tx_drops, 0);

    // Deleting the ports stops them; the dataplane lets go of the rings.
    let back = backend.apply(&nos_core::diff(&state(), &ForwardingState::new()));
    assert!(back.iter().all(|r| r.is_ok()), "{back:?}");
    drop(backend);
}

/// A `net_null` device probed from its device string, driven by a worker on
/// this thread: the zeroed frames it generates (`copy=1`) are dropped by the
/// pipeline as not for the router; then the device is removed and probed again.
fn null_device(eal: &'static Eal) {
    let port = DpdkPort::open(eal, "net_null0,size=64,copy=1", 1).expect("probe net_null0");
    assert_eq!(port.driver(), "net_null");
    let io: Box<dyn PacketIo> = Box::new(port.queues(eal, 0, 1));
    let mut backend = X86Backend::detached();
    for r in backend.apply(&nos_core::diff(&ForwardingState::new(), &state())) {
        r.unwrap();
    }
    let mut w = ManualWorker::new(
        &backend.tables_reader(),
        vec![(PortId(1), io)],
        Arc::new(|_| {}),
    );
    let mut got = 0;
    for _ in 0..100 {
        got += w.round();
    }
    assert!(got >= 100, "net_null delivers a burst each round ({got})");
    let c = w.counters();
    assert_eq!(c.forwarded, 0);
    assert_eq!(
        c.drop_count(dataplane::engine::DropReason::NotForUs) as usize,
        got
    );
    drop(w);
    drop(port);
    // The device was removed: its name can be probed again.
    let again = DpdkPort::open(eal, "net_null0", 1).expect("probe net_null0 again");
    drop(again);
}

/// Shared-memory packet interfaces (`net_memif`): two pairs in this process,
/// a worker on the server ends as ports A and B, the test on the client
/// ends: frames sent into A's pair come out of B's pair rewritten as the
/// model says.
fn memif_pairs(eal: &'static Eal) {
    let dir = std::env::temp_dir().join(format!("nos-memif-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = |n: &str| dir.join(n).display().to_string();
    let open = |name: &str, role: &str, socket: &str| {
        DpdkPort::open(eal, &format!("{name},role={role},socket={socket},id=0"), 1)
            .unwrap_or_else(|e| panic!("probe {name}: {e}"))
    };
    let (a_sock, b_sock) = (sock("a.sock"), sock("b.sock"));
    let a_server = open("net_memif10", "server", &a_sock);
    let a_client = open("net_memif11", "client", &a_sock);
    let b_server = open("net_memif12", "server", &b_sock);
    let b_client = open("net_memif13", "client", &b_sock);
    assert_eq!(a_server.driver(), "net_memif");

    let mut backend = X86Backend::detached();
    for r in backend.apply(&nos_core::diff(&ForwardingState::new(), &state())) {
        r.unwrap();
    }
    let mut w = ManualWorker::new(
        &backend.tables_reader(),
        vec![
            (
                PortId(1),
                Box::new(a_server.queues(eal, 0, 1)) as Box<dyn PacketIo>,
            ),
            (PortId(2), Box::new(b_server.queues(eal, 0, 1))),
        ],
        Arc::new(|_| {}),
    );
    let mut inject = a_client.queues(eal, 0, 1);
    let mut collect = b_client.queues(eal, 0, 1);

    let plan: Vec<(Ipv4Addr, u8)> = stream(2_000)
        .into_iter()
        .filter(|(d, t)| matches!(model(*d, *t), Expect::Out(_)))
        .take(512)
        .collect();
    let frames: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, (d, t))| frame(*d, *t, i as u32))
        .collect();
    assert_eq!(frames.len(), 512);
    let mut seen: HashMap<u32, [u8; 6]> = HashMap::new();
    let mut errors = Vec::new();
    let mut rx = dataplane::backend::RxBurst::default();
    // The client ends connect to their servers in the background, and a
    // memif that is not connected yet drops what it is given: frames not seen
    // after a while are sent again.
    let mut todo: Vec<usize> = (0..frames.len()).collect();
    let mut last_send = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < frames.len() && Instant::now() < deadline {
        if todo.is_empty() && last_send.elapsed() > Duration::from_millis(100) {
            todo = (0..frames.len())
                .filter(|i| !seen.contains_key(&(*i as u32)))
                .collect();
        }
        if !todo.is_empty() {
            let n = todo.len().min(32);
            let refs: Vec<&[u8]> = todo[..n].iter().map(|i| frames[*i].as_slice()).collect();
            let sent = inject
                .transmit(dataplane::backend::TxFrames::Bytes(&refs))
                .unwrap_or(0);
            todo.drain(..sent);
            last_send = Instant::now();
        }
        w.round();
        if let Ok(dataplane::backend::Received::Mbufs(n)) = collect.receive(&mut rx) {
            for i in 0..n {
                let got = rx.mbufs.get(i).unwrap().bytes();
                let seq = seq_of(got);
                let Some((d, t)) = plan.get(seq as usize) else {
                    errors.push(format!("unknown frame {seq}"));
                    continue;
                };
                let Expect::Out(macs) = model(*d, *t) else {
                    unreachable!("only forwarded frames are sent")
                };
                match check_out(&frames[seq as usize], got, &macs) {
                    Ok(mac) => {
                        seen.insert(seq, mac);
                    }
                    Err(e) => errors.push(format!("frame {seq}: {e}")),
                }
            }
            rx.mbufs.clear();
        }
        if todo.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        seen.len(),
        frames.len(),
        "every frame crossed both memif pairs"
    );
    assert!(w.counters().forwarded >= frames.len() as u64);
    drop(w);
    drop((inject, collect));
    drop((a_client, b_client, a_server, b_server));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A device whose driver is not installed is refused with what to install.
fn missing_driver(eal: &'static Eal) {
    let err = DpdkPort::open(eal, "net_nosuchdriver0", 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("net_nosuchdriver0"), "{err}");
    assert!(err.contains("apt-get install dpdk"), "{err}");
}

#[test]
fn dpdk_ring_and_null_ports() {
    let eal = dpdk::eal(&[]).expect("DPDK's EAL starts without hugepages or NICs");
    assert!(eal.args().iter().any(|a| a == "--no-huge"));
    ring_loop(eal);
    null_device(eal);
    memif_pairs(eal);
    missing_driver(eal);
}
