//! BGP interop with real daemons: FRR's bgpd and GoBGP, each in its own network
//! namespace, peering with nosd over veths; a host's traffic is forwarded by the
//! x86 dataplane along the routes they announce.
//!
//! ```text
//!  host A ── eth1 [ nosd AS 64500 ] eth2 ── ISP1: FRR bgpd AS 64501 (IPv4 + IPv6 sessions)
//!  192.0.2.2       192.0.2.1        198.51.100.1  198.51.100.2, lo 203.0.113.1, 2001:db8:99::1
//!                                   eth3 ── ISP2: GoBGP AS 64502
//!                              198.18.1.1     198.18.1.2, lo 203.0.113.1
//! ```
//! Both ISPs announce 203.0.113.0/24; ISP2 with a longer AS path (the backup).
//! The IPv4 session with FRR is signed with TCP MD5 (RFC 2385).
//! Needs root, iproute2, ping, frr and gobgpd; `scripts/test.sh` installs them.

use nosd::lab::{have, Lab};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NOSCTL: &str = env!("CARGO_BIN_EXE_nosctl");
const NOSD: &str = env!("CARGO_BIN_EXE_nosd");

struct BgpLab {
    lab: Lab,
    host_a: String,
    isp1: String,
    isp2: String,
    router: String,
    isp2_if: String,
    socket: PathBuf,
}

impl BgpLab {
    fn nosctl(&self, args: &[&str]) -> Value {
        let out = Command::new(NOSCTL)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nosctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.lab.dir.join("nosd.log")).unwrap_or_default()
    }

    fn vtysh(&self, cmd: &str) -> Value {
        let out = self
            .lab
            .exec(&self.isp1, &["vtysh", "-N", &self.isp1, "-c", cmd])
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn gobgp(&self, args: &[&str]) -> String {
        let mut full = vec!["gobgp", "-p", "50051"];
        full.extend_from_slice(args);
        let out = self.lab.exec(&self.isp2, &full).unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn ping(&self, dst: &str) -> bool {
        self.lab
            .exec(&self.host_a, &["ping", "-c", "1", "-W", "1", dst])
            .unwrap()
            .status
            .success()
    }

    fn rx_packets(&self, ns: &str, ifname: &str) -> u64 {
        let out = self
            .lab
            .exec(
                ns,
                &[
                    "cat",
                    &format!("/sys/class/net/{ifname}/statistics/rx_packets"),
                ],
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

/// Polls `f` until it returns true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn neighbor_state(lab: &BgpLab, addr: &str) -> String {
    let s = lab.nosctl(&["show", "bgp", "summary"]);
    s["neighbors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["address"] == addr)
        .map(|n| n["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn fib_next_hops(lab: &BgpLab, prefix: &str) -> Vec<String> {
    let fib = lab.nosctl(&["show", "fib"]);
    fib.as_array()
        .into_iter()
        .flatten()
        .find(|r| r["prefix"] == prefix)
        .map(|r| {
            r["next_hops"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to `secs` for `prefix` to be installed with a next hop `via`.
fn installed_via(lab: &BgpLab, prefix: &str, via: &str, secs: u64) -> bool {
    eventually(Duration::from_secs(secs), || {
        fib_next_hops(lab, prefix)
            .iter()
            .any(|n| n.starts_with(via))
    })
}

fn router_config(p: &str) -> String {
    format!(
        r#"system:
  hostname: bgp-router
ports:
  - {{ name: eth1, linux: {p}r1 }}
  - {{ name: eth2, linux: {p}r2 }}
  - {{ name: eth3, linux: {p}r3 }}
interfaces:
  - {{ name: eth1, port: eth1, ipv4: [192.0.2.1/24], ipv6: ["2001:db8:1::1/64"] }}
  - {{ name: eth2, port: eth2, ipv4: [198.51.100.1/24], ipv6: ["2001:db8:2::1/64"] }}
  - {{ name: eth3, port: eth3, ipv4: [198.18.1.1/24] }}
bgp:
  asn: 64500
  router_id: 192.0.2.1
  networks: [192.0.2.0/24, "2001:db8:1::/64"]
  neighbors:
    - {{ address: 198.51.100.2, remote_as: 64501, hold_time: 9, description: isp1-frr, import_policy: isp-in, export_policy: customer-out, password: nos-md5-key }}
    - {{ address: "2001:db8:2::2", remote_as: 64501, hold_time: 9, families: [ipv6_unicast], import_policy: isp-in, export_policy: customer-out }}
    - {{ address: 198.18.1.2, remote_as: 64502, hold_time: 9, description: isp2-gobgp, import_policy: isp-in, export_policy: customer-out }}
  policies:
    - name: isp-in
      rules:
        - {{ action: accept }}
    - name: customer-out
      rules:
        - match: {{ prefixes: [{{ prefix: 192.0.2.0/24 }}, {{ prefix: "2001:db8:1::/64" }}] }}
          action: accept
"#
    )
}

fn frr_config(ns: &str, dir: &Path, graceful_restart: bool) -> String {
    let gr = if graceful_restart {
        " bgp graceful-restart\n bgp graceful-restart restart-time 60\n"
    } else {
        ""
    };
    format!(
        r#"frr defaults traditional
hostname {ns}
log file {}/bgpd.log debugging
!
router bgp 64501
 bgp router-id 198.51.100.2
{gr}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 198.51.100.1 remote-as 64500
 neighbor 198.51.100.1 timers 3 9
 neighbor 198.51.100.1 timers connect 1
 neighbor 198.51.100.1 password nos-md5-key
 neighbor 2001:db8:2::1 remote-as 64500
 neighbor 2001:db8:2::1 timers 3 9
 neighbor 2001:db8:2::1 timers connect 1
 address-family ipv4 unicast
  network 203.0.113.0/24
  no neighbor 2001:db8:2::1 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:99::/64
  neighbor 2001:db8:2::1 activate
 exit-address-family
!
"#,
        dir.display()
    )
}

const GOBGP_CONFIG: &str = r#"[global.config]
  as = 64502
  router-id = "198.18.1.2"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.1.1"
    peer-as = 64500
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
"#;

fn start(prefix: &str, graceful_restart: bool) -> BgpLab {
    for tool in ["ip", "ping", "vtysh", "gobgpd", "gobgp"] {
        assert!(
            have(tool),
            "{tool} is required (scripts/test.sh installs it)"
        );
    }
    assert!(
        Path::new("/usr/lib/frr/bgpd").exists(),
        "FRR's bgpd is required (apt-get install frr)"
    );
    let mut lab = Lab::new(prefix).unwrap();
    let host_a = lab.netns("a").unwrap();
    let isp1 = lab.netns("i1").unwrap();
    let isp2 = lab.netns("i2").unwrap();
    let router = lab.netns("r").unwrap();
    let n = |s: &str| format!("{prefix}{s}");
    lab.veth(&host_a, &n("ha"), &router, &n("r1")).unwrap();
    lab.veth(&isp1, &n("i1"), &router, &n("r2")).unwrap();
    lab.veth(&isp2, &n("i2"), &router, &n("r3")).unwrap();
    lab.kernel_forwarding_off(&router).unwrap();
    let sh = |ns: &str, cmd: &str| {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        lab.must(ns, &args).unwrap();
    };
    sh(
        &host_a,
        &format!("ip addr add 192.0.2.2/24 dev {}", n("ha")),
    );
    sh(
        &host_a,
        &format!("ip -6 addr add 2001:db8:1::2/64 dev {} nodad", n("ha")),
    );
    sh(&host_a, "ip route add default via 192.0.2.1");
    sh(&host_a, "ip -6 route add default via 2001:db8:1::1");
    sh(
        &isp1,
        &format!("ip addr add 198.51.100.2/24 dev {}", n("i1")),
    );
    sh(
        &isp1,
        &format!("ip -6 addr add 2001:db8:2::2/64 dev {} nodad", n("i1")),
    );
    sh(&isp1, "ip addr add 203.0.113.1/32 dev lo");
    sh(&isp1, "ip -6 addr add 2001:db8:99::1/128 dev lo");
    sh(&isp1, "ip route add default via 198.51.100.1");
    sh(&isp1, "ip -6 route add default via 2001:db8:2::1");
    sh(&isp2, &format!("ip addr add 198.18.1.2/24 dev {}", n("i2")));
    sh(&isp2, "ip addr add 203.0.113.1/32 dev lo");
    sh(&isp2, "ip route add default via 198.18.1.1");
    for (ns, ifname) in [(&host_a, n("ha")), (&isp1, n("i1")), (&isp2, n("i2"))] {
        if have("ethtool") {
            lab.offloads_off(ns, &ifname).unwrap();
        }
    }

    // FRR's bgpd alone, without zebra (see shared/TESTING-NOTES.md).
    let dir = lab.dir.clone();
    install_frr_config(&isp1, &dir, &frr_config(&isp1, &dir, graceful_restart));
    start_bgpd(&lab, &isp1);

    let gcfg = dir.join("gobgp.toml");
    std::fs::write(&gcfg, GOBGP_CONFIG).unwrap();
    lab.spawn(
        &isp2,
        Path::new("/usr/bin/gobgpd"),
        &[
            "-f",
            &gcfg.to_string_lossy(),
            "--api-hosts",
            "127.0.0.1:50051",
            "-l",
            "warn",
        ],
        &dir.join("gobgpd.log"),
    )
    .unwrap();

    let socket = spawn_nosd(&mut lab, &router, &router_config(prefix));
    let l = BgpLab {
        lab,
        host_a,
        isp1,
        isp2,
        router,
        isp2_if: n("i2"),
        socket,
    };
    assert!(
        eventually(Duration::from_secs(10), || l.socket.exists()),
        "nosd did not start:\n{}",
        l.log()
    );
    l
}

/// Writes bgpd's configuration for namespace `ns` under /etc/frr/NS, makes its
/// run directory, and lets the frr user write its log into the lab directory.
fn install_frr_config(ns: &str, lab_dir: &Path, bgpd_conf: &str) {
    let etc = PathBuf::from(format!("/etc/frr/{ns}"));
    let run = PathBuf::from(format!("/var/run/frr/{ns}"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(etc.join("bgpd.conf"), bgpd_conf).unwrap();
    std::fs::write(etc.join("vtysh.conf"), "").unwrap();
    let _ = Command::new("chown")
        .args([
            "-R",
            "frr:frr",
            "/var/run/frr",
            &etc.to_string_lossy(),
            &lab_dir.to_string_lossy(),
        ])
        .status();
    let _ = Command::new("chmod")
        .args(["a+rwx", &lab_dir.to_string_lossy()])
        .status();
}

/// Writes the router's configuration and starts nosd in namespace `router`;
/// returns its management socket.
fn spawn_nosd(lab: &mut Lab, router: &str, config: &str) -> PathBuf {
    let dir = lab.dir.clone();
    let rcfg = dir.join("router.yaml");
    std::fs::write(&rcfg, config).unwrap();
    let socket = dir.join("nosd.sock");
    lab.spawn(
        router,
        Path::new(NOSD),
        &[
            "run",
            "--config",
            &rcfg.to_string_lossy(),
            "--state-dir",
            &dir.join("state").to_string_lossy(),
            "--socket",
            &socket.to_string_lossy(),
            "--log-level",
            "info,routing=debug",
        ],
        &dir.join("nosd.log"),
    )
    .unwrap();
    socket
}

/// Starts FRR's bgpd (alone, no zebra) in namespace `ns` with its config under /etc/frr/NS.
fn start_bgpd(lab: &Lab, ns: &str) {
    lab.must(
        ns,
        &[
            "/usr/lib/frr/bgpd",
            "-N",
            ns,
            "-Z",
            "-n",
            "-S",
            "-f",
            &format!("/etc/frr/{ns}/bgpd.conf"),
            "-d",
            "-i",
            &format!("/var/run/frr/{ns}/bgpd.pid"),
        ],
    )
    .unwrap();
}

fn bgpd_pid(lab: &BgpLab) -> String {
    std::fs::read_to_string(format!("/var/run/frr/{}/bgpd.pid", lab.isp1))
        .unwrap()
        .trim()
        .to_string()
}

impl Drop for BgpLab {
    fn drop(&mut self) {
        // bgpd daemonized itself: kill it by its pid file, then remove its files.
        let run = format!("/var/run/frr/{}", self.isp1);
        if let Ok(pid) = std::fs::read_to_string(format!("{run}/bgpd.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&run);
        let _ = std::fs::remove_dir_all(format!("/etc/frr/{}", self.isp1));
    }
}

#[test]
fn peers_with_frr_and_gobgp_and_forwards_along_their_routes() {
    let prefix = format!("bg{}", std::process::id() % 10000);
    let lab = start(&prefix, false);

    // Sessions come up with both daemons, over IPv4 and IPv6.
    for peer in ["198.51.100.2", "2001:db8:2::2", "198.18.1.2"] {
        assert!(
            eventually(Duration::from_secs(30), || neighbor_state(&lab, peer)
                == "Established"),
            "session with {peer} did not come up: {}\nnosd log:\n{}",
            neighbor_state(&lab, peer),
            lab.log()
        );
    }

    // Routes received, installed and forwarding host A's traffic: the best path is
    // ISP1 (shorter AS path), IPv4 and IPv6.
    assert!(
        installed_via(&lab, "203.0.113.0/24", "198.51.100.2", 15),
        "203.0.113.0/24 via ISP1 not installed: {:?}\n{}",
        fib_next_hops(&lab, "203.0.113.0/24"),
        lab.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || lab.ping("203.0.113.1")),
        "host A cannot reach 203.0.113.1 via ISP1"
    );
    assert!(
        eventually(Duration::from_secs(15), || lab.ping("2001:db8:99::1")),
        "host A cannot reach 2001:db8:99::1 over the IPv6 session's route"
    );

    // Routes advertised back per export policy: FRR and GoBGP see our network.
    assert!(
        eventually(Duration::from_secs(15), || {
            lab.vtysh("show bgp ipv4 unicast json")["routes"]
                .get("192.0.2.0/24")
                .is_some()
        }),
        "FRR did not receive 192.0.2.0/24: {}",
        lab.vtysh("show bgp ipv4 unicast json")
    );
    assert!(
        eventually(Duration::from_secs(15), || {
            lab.vtysh("show bgp ipv6 unicast json")["routes"]
                .get("2001:db8:1::/64")
                .is_some()
        }),
        "FRR did not receive 2001:db8:1::/64 over the IPv6 session"
    );
    assert!(
        eventually(Duration::from_secs(15), || lab
            .gobgp(&["global", "rib", "-a", "ipv4", "-j"])
            .contains("192.0.2.0/24")),
        "GoBGP did not receive 192.0.2.0/24: {}",
        lab.gobgp(&["global", "rib", "-a", "ipv4", "-j"])
    );

    // ISP2 announces the same prefix with a longer AS path: a backup.
    lab.gobgp(&[
        "global",
        "rib",
        "add",
        "-a",
        "ipv4",
        "203.0.113.0/24",
        "aspath",
        "64502,64502",
    ]);
    assert!(
        eventually(Duration::from_secs(10), || {
            let r = lab.nosctl(&["show", "bgp", "routes", "203.0.113.0/24"]);
            r.as_array().is_some_and(|v| v.len() == 2)
        }),
        "the backup path from GoBGP did not arrive: {}",
        lab.nosctl(&["show", "bgp", "routes"])
    );
    assert!(
        fib_next_hops(&lab, "203.0.113.0/24")
            .iter()
            .any(|n| n.starts_with("198.51.100.2")),
        "ISP1 stays best"
    );

    // Route refresh: a new import policy for ISP1 makes nosd ask FRR to send its
    // routes again (ROUTE-REFRESH); they come back with the new local-pref.
    let config = std::fs::read_to_string(lab.lab.dir.join("router.yaml"))
        .unwrap()
        .replace(
            "    - name: isp-in\n      rules:\n        - { action: accept }\n",
            "    - name: isp-in\n      rules:\n        - { action: accept }\n    - name: isp1-in\n      rules:\n        - { set: { local_pref: 300 }, action: accept }\n",
        )
        .replace(
            "description: isp1-frr, import_policy: isp-in",
            "description: isp1-frr, import_policy: isp1-in",
        );
    let refreshed = lab.lab.dir.join("router-refresh.yaml");
    std::fs::write(&refreshed, config).unwrap();
    let out = Command::new(NOSCTL)
        .arg("--socket")
        .arg(&lab.socket)
        .args([
            "config",
            "commit",
            &refreshed.to_string_lossy(),
            "-m",
            "isp1 local-pref 300",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(Duration::from_secs(15), || {
            let r = lab.nosctl(&["show", "bgp", "routes", "203.0.113.0/24"]);
            r.as_array()
                .into_iter()
                .flatten()
                .any(|x| x["peer"] == "198.51.100.2" && x["local_pref"] == 300)
        }),
        "ISP1's routes did not come back with local-pref 300 after the route refresh: {}\n{}",
        lab.nosctl(&["show", "bgp", "routes"]),
        lab.log()
    );

    // Hold-timer expiry: freeze bgpd; nosd's hold timer (9 s) fires, it sends a
    // NOTIFICATION and fails over to ISP2; then bgpd resumes and the session returns.
    let pid = bgpd_pid(&lab);
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(
        installed_via(&lab, "203.0.113.0/24", "198.18.1.2", 20),
        "no failover after the hold timer: {}",
        lab.log()
    );
    let n = lab.nosctl(&["show", "bgp", "neighbor", "198.51.100.2"]);
    assert!(
        n["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("hold timer expired"),
        "{n}"
    );
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    assert!(
        eventually(Duration::from_secs(60), || neighbor_state(
            &lab,
            "198.51.100.2"
        ) == "Established"),
        "the session with FRR did not come back after the hold-timer reset"
    );
    assert!(
        installed_via(&lab, "203.0.113.0/24", "198.51.100.2", 15),
        "traffic did not return to ISP1"
    );

    // Failover: kill ISP1's bgpd; traffic moves to ISP2.
    let pid = bgpd_pid(&lab);
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(
        installed_via(&lab, "203.0.113.0/24", "198.18.1.2", 15),
        "203.0.113.0/24 did not fail over to ISP2: {:?}\n{}",
        fib_next_hops(&lab, "203.0.113.0/24"),
        lab.log()
    );
    let before = lab.rx_packets(&lab.isp2, &lab.isp2_if);
    assert!(
        eventually(Duration::from_secs(10), || lab.ping("203.0.113.1")),
        "no traffic via ISP2 after failover"
    );
    assert!(
        lab.rx_packets(&lab.isp2, &lab.isp2_if) > before,
        "the pings went through ISP2"
    );

    // Withdrawal: GoBGP withdraws; the prefix leaves the FIB.
    lab.gobgp(&["global", "rib", "del", "-a", "ipv4", "203.0.113.0/24"]);
    assert!(
        eventually(Duration::from_secs(10), || fib_next_hops(
            &lab,
            "203.0.113.0/24"
        )
        .is_empty()),
        "203.0.113.0/24 still installed after the withdrawal"
    );
    let _ = &lab.router;
}

#[test]
fn keeps_forwarding_while_frr_restarts_gracefully() {
    let prefix = format!("gr{}", std::process::id() % 10000);
    let lab = start(&prefix, true);
    assert!(
        eventually(Duration::from_secs(30), || neighbor_state(
            &lab,
            "198.51.100.2"
        ) == "Established"),
        "session with FRR did not come up:\n{}",
        lab.log()
    );
    assert!(
        installed_via(&lab, "203.0.113.0/24", "198.51.100.2", 15),
        "203.0.113.0/24 via FRR not installed"
    );
    assert!(eventually(Duration::from_secs(10), || lab.ping("203.0.113.1")));

    // bgpd dies without a NOTIFICATION; FRR advertised graceful restart, so nosd
    // keeps its routes and host A's traffic keeps flowing through ISP1.
    Command::new("kill")
        .args(["-KILL", &bgpd_pid(&lab)])
        .status()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || neighbor_state(
            &lab,
            "198.51.100.2"
        ) != "Established"),
        "nosd did not notice bgpd's death"
    );
    for _ in 0..5 {
        assert!(
            fib_next_hops(&lab, "203.0.113.0/24")
                .iter()
                .any(|n| n.starts_with("198.51.100.2")),
            "the route was withdrawn during the graceful restart: {:?}",
            fib_next_hops(&lab, "203.0.113.0/24")
        );
        assert!(
            lab.ping("203.0.113.1"),
            "traffic stopped during the graceful restart"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // bgpd comes back, re-sends its routes and End-of-RIB: the stale routes are
    // refreshed, nothing is lost.
    start_bgpd(&lab.lab, &lab.isp1);
    assert!(
        eventually(Duration::from_secs(60), || neighbor_state(
            &lab,
            "198.51.100.2"
        ) == "Established"),
        "session with FRR did not come back:\n{}",
        lab.log()
    );
    assert!(
        eventually(Duration::from_secs(20), || lab
            .log()
            .contains("stale routes swept after End-of-RIB")),
        "no End-of-RIB sweep:\n{}",
        lab.log()
    );
    assert!(fib_next_hops(&lab, "203.0.113.0/24")
        .iter()
        .any(|n| n.starts_with("198.51.100.2")));
    assert!(lab.ping("203.0.113.1"));
}

/// eBGP multihop: FRR peers from its loopback 203.0.113.99, which nosd reaches
/// by a static route; FRR's routes carry that loopback as next hop, resolved
/// recursively through the static route. One more route, 198.20.0.0/16, has
/// the next hop 198.19.0.1 (set by FRR's export route-map), which only FRR's
/// BGP route 198.19.0.0/16 covers: resolved through that BGP route, then the
/// static route.
#[test]
fn peers_over_ebgp_multihop_and_resolves_next_hops_recursively() {
    for tool in ["ip", "ping", "vtysh"] {
        assert!(
            have(tool),
            "{tool} is required (scripts/test.sh installs it)"
        );
    }
    let prefix = format!("mh{}", std::process::id() % 10000);
    let mut lab = Lab::new(&prefix).unwrap();
    let host_a = lab.netns("a").unwrap();
    let isp1 = lab.netns("i1").unwrap();
    let router = lab.netns("r").unwrap();
    let n = |s: &str| format!("{prefix}{s}");
    lab.veth(&host_a, &n("ha"), &router, &n("r1")).unwrap();
    lab.veth(&isp1, &n("i1"), &router, &n("r2")).unwrap();
    lab.kernel_forwarding_off(&router).unwrap();
    for (ns, cmd) in [
        (&host_a, format!("ip addr add 192.0.2.2/24 dev {}", n("ha"))),
        (&host_a, "ip route add default via 192.0.2.1".to_string()),
        (
            &isp1,
            format!("ip addr add 198.51.100.2/24 dev {}", n("i1")),
        ),
        (&isp1, "ip addr add 203.0.113.99/32 dev lo".to_string()),
        (&isp1, "ip addr add 198.19.0.1/32 dev lo".to_string()),
        (&isp1, "ip addr add 198.20.0.1/32 dev lo".to_string()),
        (&isp1, "ip route add default via 198.51.100.1".to_string()),
    ] {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        lab.must(ns, &args).unwrap();
    }
    for (ns, ifname) in [(&host_a, n("ha")), (&isp1, n("i1"))] {
        if have("ethtool") {
            lab.offloads_off(ns, &ifname).unwrap();
        }
    }
    let dir = lab.dir.clone();
    let frr = format!(
        r#"frr defaults traditional
hostname {isp1}
log file {}/bgpd.log debugging
!
ip prefix-list third-party seq 5 permit 198.20.0.0/16
!
route-map to-nos permit 10
 match ip address prefix-list third-party
 set ip next-hop 198.19.0.1
route-map to-nos permit 20
!
router bgp 64501
 bgp router-id 203.0.113.99
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as 64500
 neighbor 192.0.2.1 ebgp-multihop 2
 neighbor 192.0.2.1 update-source 203.0.113.99
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 address-family ipv4 unicast
  network 198.19.0.0/16
  network 198.20.0.0/16
  neighbor 192.0.2.1 route-map to-nos out
 exit-address-family
!
"#,
        dir.display()
    );
    install_frr_config(&isp1, &dir, &frr);
    start_bgpd(&lab, &isp1);
    let cleanup = FrrGuard(isp1.clone());

    let config = format!(
        r#"ports:
  - {{ name: eth1, linux: {p}r1 }}
  - {{ name: eth2, linux: {p}r2 }}
interfaces:
  - {{ name: eth1, port: eth1, ipv4: [192.0.2.1/24] }}
  - {{ name: eth2, port: eth2, ipv4: [198.51.100.1/24] }}
static_routes:
  - {{ prefix: 203.0.113.99/32, next_hops: [{{ address: 198.51.100.2 }}] }}
bgp:
  asn: 64500
  router_id: 192.0.2.1
  neighbors:
    - {{ address: 203.0.113.99, remote_as: 64501, hold_time: 9, ebgp_multihop: 2, import_policy: all }}
  policies:
    - {{ name: all, rules: [{{ action: accept }}] }}
"#,
        p = prefix
    );
    let socket = spawn_nosd(&mut lab, &router, &config);
    let l = BgpLab {
        lab,
        host_a,
        isp1: isp1.clone(),
        isp2: String::new(),
        router,
        isp2_if: String::new(),
        socket,
    };
    assert!(
        eventually(Duration::from_secs(40), || l.socket.exists()
            && neighbor_state(&l, "203.0.113.99") == "Established"),
        "multihop session did not come up:\n{}",
        l.log()
    );
    assert!(
        installed_via(&l, "198.19.0.0/16", "198.51.100.2", 15),
        "198.19.0.0/16 not installed via the static route's next hop: {:?}\n{}",
        fib_next_hops(&l, "198.19.0.0/16"),
        l.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || l.ping("198.19.0.1")),
        "host A cannot reach 198.19.0.1"
    );
    // Through a BGP route, then the static route, to the same interface.
    assert!(
        installed_via(&l, "198.20.0.0/16", "198.51.100.2", 15),
        "198.20.0.0/16 not installed through 198.19.0.0/16: {:?}\n{}",
        fib_next_hops(&l, "198.20.0.0/16"),
        l.log()
    );
    let routes = l.nosctl(&["show", "bgp", "routes", "198.20.0.0/16"]);
    assert!(
        routes.to_string().contains("198.19.0.1"),
        "the route keeps its BGP next hop: {routes}"
    );
    assert!(
        eventually(Duration::from_secs(10), || l.ping("198.20.0.1")),
        "host A cannot reach 198.20.0.1"
    );
    drop(cleanup);
}

/// Stops a bgpd started by a test and removes its files.
struct FrrGuard(String);

impl Drop for FrrGuard {
    fn drop(&mut self) {
        let run = format!("/var/run/frr/{}", self.0);
        if let Ok(pid) = std::fs::read_to_string(format!("{run}/bgpd.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&run);
        let _ = std::fs::remove_dir_all(format!("/etc/frr/{}", self.0));
    }
}
