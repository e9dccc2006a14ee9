//! End-to-end: nosd routes real packets between network namespaces through the
//! x86 dataplane (AF_PACKET), with kernel forwarding off in the router namespace.
//!
//! Needs root, iproute2, ping, socat and ethtool; `scripts/test.sh` installs them.

use nosd::lab::{TwoHosts, A_V4, B_FAR_V4, B_FAR_V6, B_NEAR_V4};
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
    let mut lab = TwoHosts::start(&prefix, Path::new(NOSD), ACL).expect("build the lab");

    // Kernel forwarding is off in the router namespace.
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        let out = lab.lab.must(&lab.router, &["sysctl", "-n", key]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{key}");
    }

    // IPv4 and IPv6, connected and through the static route.
    assert_reachable(&lab, B_NEAR_V4, true, "connected subnet");
    assert_reachable(&lab, B_FAR_V4, true, "static route v4");
    assert_reachable(&lab, B_FAR_V6, true, "static route v6");
    // The router answers pings to its own addresses.
    assert_reachable(&lab, "192.0.2.1", true, "router address");

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

    // SIGTERM shuts nosd down cleanly.
    assert!(
        lab.lab.stop_children(Duration::from_secs(10)),
        "nosd did not exit cleanly:\n{}",
        lab.log()
    );
}
