//! End-to-end: nosd routes real packets between network namespaces through the
//! x86 dataplane (AF_PACKET), with kernel forwarding off in the router namespace.
//!
//! Needs root, iproute2, ping, socat and ethtool; `scripts/test.sh` installs them.

use dataplane::afpacket::{PacketSocket, RecvBatch};
use nos_core::MacAddr;
use nosd::lab::{TwoHosts, A_V4, B_FAR_V4, B_FAR_V6, B_NEAR_V4, C_V4, C_VLAN};
use routing::host::packet::*;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOSCTL: &str = env!("CARGO_BIN_EXE_nosctl");
const NOSD: &str = env!("CARGO_BIN_EXE_nosd");

/// Drops TCP to port 5001 and nothing else.
const ACL: &str = r#"  - name: no-iperf
    priority: 100
    match: { protocol: tcp, dst_port: 5001 }
    action: drop
"#;

fn nosctl(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(NOSCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run nosctl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_reachable(lab: &TwoHosts, dst: &str, expect: bool, what: &str) {
    if expect {
        assert!(
            lab.ping_until(&lab.host_a, dst, Duration::from_secs(8))
                .unwrap(),
            "{what}: host A cannot reach {dst}\nnosd log:\n{}",
            lab.log()
        );
    } else {
        // Give the change a moment to reach the dataplane, then insist on silence.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !lab.ping(&lab.host_a, dst, 3).unwrap(),
            "{what}: host A still reaches {dst}"
        );
    }
}

/// Starts `socat` in host B listening on `port` and writing what it receives to `out`.
fn listen(lab: &TwoHosts, proto: &str, port: u16, out: &Path) -> std::process::Child {
    let spec = match proto {
        "tcp" => format!("TCP-LISTEN:{port},reuseaddr"),
        _ => format!("UDP-RECV:{port},reuseaddr"),
    };
    let c = Command::new("ip")
        .args(["netns", "exec", &lab.host_b, "socat", "-u", &spec])
        .arg(format!("CREATE:{}", out.display()))
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (apt-get install socat)");
    std::thread::sleep(Duration::from_millis(300));
    c
}

fn send(lab: &TwoHosts, proto: &str, port: u16, file: &Path, timeout_s: u32) -> bool {
    let spec = match proto {
        "tcp" => format!("TCP:{B_FAR_V4}:{port},connect-timeout={timeout_s}"),
        _ => format!("UDP-SENDTO:{B_FAR_V4}:{port}"),
    };
    lab.lab
        .exec(
            &lab.host_a,
            &["socat", "-u", &format!("OPEN:{}", file.display()), &spec],
        )
        .unwrap()
        .status
        .success()
}

fn wait_size(path: &Path, size: u64, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= size {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn routes_real_packets_through_the_x86_dataplane() {
    let prefix = format!("nt{}", std::process::id() % 10000);
    let lab = TwoHosts::start(&prefix, Path::new(NOSD), ACL).expect("build the lab");
    scenarios(lab);
}

/// The same scenarios with the router's ports on DPDK `net_af_packet`
/// devices bound to its veths, and two forwarding workers. Needs nosd built
/// with DPDK (`cargo test -p nosd --features dataplane/dpdk`, as
/// scripts/test.sh runs it); without it, it says so and checks nothing.
#[test]
fn routes_real_packets_through_dpdk_af_packet_ports() {
    if !dataplane::DPDK_BUILT {
        eprintln!("built without DPDK: run with --features dataplane/dpdk");
        return;
    }
    let prefix = format!("nd{}", std::process::id() % 10000);
    let lab = TwoHosts::start_with(&prefix, Path::new(NOSD), ACL, |[a, b, _c]| {
        format!(
            "dataplane:
  workers: 2
  dpdk:
    eal_args: [--no-huge, --no-pci, -m, '512', --no-shconf, --no-telemetry, -l, '0']
    ports:
      - {{ port: eth1, device: 'net_af_packet0,iface={a}' }}
      - {{ port: eth2, device: 'net_af_packet1,iface={b}' }}
      - {{ port: eth3 }}
"
        )
    })
    .expect("build the lab");
    let start = Instant::now();
    while lab.log().matches("DPDK port started").count() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "nosd did not start its three DPDK ports:\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    scenarios(lab);
}

fn scenarios(mut lab: TwoHosts) {
    // Kernel forwarding is off in the router namespace.
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        let out = lab.lab.must(&lab.router, &["sysctl", "-n", key]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{key}");
    }

    // IPv4 and IPv6, connected and through the static route.
    assert_reachable(&lab, B_NEAR_V4, true, "connected subnet");
    assert_reachable(&lab, B_FAR_V4, true, "static route v4");
    assert_reachable(&lab, B_FAR_V6, true, "static route v6");
    // 802.1Q: host C sits behind a sub-port on VLAN 100 and answers only tagged frames.
    let mut host_c = Command::new("ip")
        .args(["netns", "exec", &lab.host_c])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "vlan_host_responder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NOS_VLAN_HOST_IF", &lab.host_c_if)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert_reachable(&lab, C_V4, true, "VLAN sub-port (tagged frames both ways)");
    let _ = host_c.kill();
    let _ = host_c.wait();
    // The router answers pings to its own addresses (through its host interface).
    assert_reachable(&lab, "192.0.2.1", true, "router address");
    assert_reachable(&lab, "2001:db8:1::1", true, "router address v6");

    // A 10 MB TCP transfer from A to B arrives intact.
    let dir = lab.lab.dir.clone();
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = dir.join("send.bin");
    let dst = dir.join("recv.bin");
    std::fs::write(&src, &data).unwrap();
    let mut server = listen(&lab, "tcp", 5002, &dst);
    let started = Instant::now();
    assert!(
        send(&lab, "tcp", 5002, &src, 5),
        "TCP transfer to port 5002 failed"
    );
    let _ = server.wait();
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), data.len(), "received size");
    assert!(got == data, "received bytes differ from the ones sent");
    eprintln!("10 MB TCP transfer took {:?}", started.elapsed());

    // The ACL drops TCP to port 5001 ...
    let blocked = dir.join("blocked.bin");
    let mut server = listen(&lab, "tcp", 5001, &blocked);
    assert!(
        !send(&lab, "tcp", 5001, &src, 2),
        "TCP to port 5001 got through the ACL"
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(std::fs::metadata(&blocked).map(|m| m.len()).unwrap_or(0), 0);
    // ... and only it: UDP to port 5001 passes.
    let small = dir.join("small.bin");
    std::fs::write(&small, b"udp to 5001 is not blocked\n").unwrap();
    let udp_out = dir.join("udp.bin");
    let mut server = listen(&lab, "udp", 5001, &udp_out);
    assert!(send(&lab, "udp", 5001, &small, 2));
    assert!(
        wait_size(&udp_out, 10, Duration::from_secs(3)),
        "UDP to port 5001 was dropped"
    );
    let _ = server.kill();
    let _ = server.wait();
    let (ok, counters) = nosctl(&lab.socket, &["show", "counters"]);
    assert!(ok, "{counters}");
    assert!(
        counters.contains("acl"),
        "the ACL drop is counted: {counters}"
    );

    // Commits, rollback and roll-forward move the static route.
    let without = lab.config_without_route.to_string_lossy().to_string();
    let (ok, out) = nosctl(
        &lab.socket,
        &["config", "commit", &without, "-m", "drop the static routes"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("commit 2"), "{out}");
    assert_reachable(
        &lab,
        B_FAR_V4,
        false,
        "after committing a config without the route",
    );
    assert_reachable(&lab, B_NEAR_V4, true, "connected subnet survives");
    let (ok, out) = nosctl(&lab.socket, &["config", "rollback", "1"]);
    assert!(ok && out.contains("commit 3"), "{out}");
    assert_reachable(
        &lab,
        B_FAR_V4,
        true,
        "after rollback to commit 1 (with the route)",
    );
    assert_reachable(
        &lab,
        B_FAR_V6,
        true,
        "after rollback to commit 1 (with the route)",
    );
    let (ok, out) = nosctl(&lab.socket, &["config", "rollback", "2"]);
    assert!(ok && out.contains("commit 4"), "{out}");
    assert_reachable(
        &lab,
        B_FAR_V4,
        false,
        "after rollback to commit 2 (without the route)",
    );
    let (ok, out) = nosctl(
        &lab.socket,
        &["config", "rollback", "3", "-m", "roll forward"],
    );
    assert!(ok && out.contains("commit 5"), "{out}");
    assert_reachable(&lab, B_FAR_V4, true, "after rolling forward");

    let (ok, hist) = nosctl(&lab.socket, &["config", "history"]);
    assert!(
        ok && hist.contains("roll forward") && hist.contains("drop the static routes"),
        "{hist}"
    );
    let (ok, diff) = nosctl(&lab.socket, &["config", "diff", "1", "2"]);
    assert!(ok && diff.contains("-static_routes"), "{diff}");
    let (ok, fib) = nosctl(&lab.socket, &["--json", "show", "fib"]);
    assert!(ok && fib.contains("203.0.113.0/24"), "{fib}");
    let (ok, neigh) = nosctl(&lab.socket, &["show", "neighbors"]);
    assert!(
        ok && neigh.contains(A_V4) && neigh.contains("reachable"),
        "{neigh}"
    );

    // An invalid configuration is refused with the field's path; nothing changes.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&lab.config_with_route)
            .unwrap()
            .replace("198.51.100.1/24", "192.0.2.5/24"),
    )
    .unwrap();
    let (ok, out) = nosctl(&lab.socket, &["config", "commit", &bad.to_string_lossy()]);
    assert!(!ok, "an overlapping address was accepted: {out}");
    assert!(
        out.contains("interfaces[1].ipv4[0]"),
        "error names the path: {out}"
    );
    let (_, hist2) = nosctl(&lab.socket, &["--json", "config", "history"]);
    assert_eq!(
        hist2.matches("\"number\"").count(),
        5,
        "no commit was added: {hist2}"
    );
    assert_reachable(&lab, B_FAR_V4, true, "after a refused commit");

    // SIGTERM shuts nosd down cleanly, even with a management connection open.
    let _held = UnixStream::connect(&lab.socket).unwrap();
    assert!(
        lab.lab.stop_children(Duration::from_secs(10)),
        "nosd did not exit cleanly:\n{}",
        lab.log()
    );
}

/// Host C of the lab: answers ARP and ICMP echo for C_V4, only in 802.1Q VLAN
/// C_VLAN frames, for up to 60 s. Runs only when the test above starts it inside
/// host C's namespace.
#[test]
fn vlan_host_responder() {
    let Ok(ifname) = std::env::var("NOS_VLAN_HOST_IF") else {
        return;
    };
    let mut sock = PacketSocket::open(&ifname).expect("open host C's interface");
    let me: Ipv4Addr = C_V4.parse().unwrap();
    let mac = MacAddr([0x02, 0, 0, 0, 0x0c, 0x02]);
    let mut batch = RecvBatch::default();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let n = sock.recv_batch(&mut batch).unwrap_or(0);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for f in &batch.bufs[..n] {
            let Ok(eth) = parse_eth(f) else { continue };
            if eth.vlan != Some(C_VLAN) {
                continue;
            }
            let p = &f[eth.payload..];
            let reply = match eth.ethertype {
                ETHERTYPE_ARP => match parse_arp(p) {
                    Ok(a) if a.op == ARP_REQUEST && a.target_ip == me => {
                        let r = Arp {
                            op: ARP_REPLY,
                            sender_mac: mac,
                            sender_ip: me,
                            target_mac: a.sender_mac,
                            target_ip: a.sender_ip,
                        };
                        Some((ETHERTYPE_ARP, build_arp(&r)))
                    }
                    _ => None,
                },
                ETHERTYPE_IPV4 => match parse_ipv4(p) {
                    Ok(ip)
                        if ip.dst == std::net::IpAddr::V4(me)
                            && ip.proto == PROTO_ICMP
                            && p.get(ip.header_len) == Some(&ICMP_ECHO_REQUEST) =>
                    {
                        let std::net::IpAddr::V4(src) = ip.src else {
                            continue;
                        };
                        let icmp =
                            build_icmpv4(ICMP_ECHO_REPLY, 0, &p[ip.header_len + 4..ip.total_len]);
                        Some((ETHERTYPE_IPV4, build_ipv4(me, src, PROTO_ICMP, 64, &icmp)))
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some((et, payload)) = reply {
                let frame = build_eth(eth.src, mac, Some(C_VLAN), et, &payload);
                let _ = sock.send_batch(&[&frame]);
            }
        }
    }
}
