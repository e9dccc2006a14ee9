//! `nosd` with `dataplane: { backend: p4runtime }` programming the
//! project's x86 P4Runtime target (`nos-p4rt-target`), end to end.
//!
//! ```text
//!  host A ──veth── [pa = P4 port 5   nos-p4rt-target   P4 port 7 = pb] ──veth── host B
//!  192.0.2.2/24          namespace `sw`: the target and nosd (gRPC on its loopback)   198.51.100.2/24
//!  2001:db8:1::2/64                                                                  2001:db8:2::2/64
//! ```
//!
//! The hosts have no static ARP or ND entries: nosd answers ARP and ND by
//! packet-in and packet-out and learns the hosts the same way. Kernel
//! forwarding is off in `sw`, so what crosses it went through the target.
//! Needs root, `ip` and `ping`; builds `nos-p4rt-target` when it is not
//! next to this test yet.

use nosd::api::{FibRow, NeighborRow, Request, Response};
use nosd::client::call;
use nosd::lab::{have, Lab};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOSD: &str = env!("CARGO_BIN_EXE_nosd");
const GRPC: &str = "127.0.0.1:9559";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn can_run() -> bool {
    if is_root() && have("ip") && have("ping") {
        return true;
    }
    eprintln!("SKIPPED: needs root, ip and ping");
    false
}

/// `nos-p4rt-target`, next to this test's own directory, built if needed.
fn target_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let bin = dir.join("nos-p4rt-target");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "dataplane", "--bin", "nos-p4rt-target"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo runs");
        assert!(st.success(), "building nos-p4rt-target");
    }
    bin
}

/// A process in a namespace, killed when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn start(ns: Option<&str>, program: &Path, args: &[&str], log: &Path) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log file"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc { child }
    }

    /// SIGTERM, then waits (SIGKILL after 10 s); whether it exited cleanly.
    fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return st.success(),
                Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return false,
            }
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab: processes first, so they are gone before the namespaces are.
struct P4Lab {
    nosd: Option<Proc>,
    target: Option<Proc>,
    lab: Lab,
    a: String,
    b: String,
    sw: String,
    target_args: Vec<String>,
    config: PathBuf,
    socket: PathBuf,
    state: PathBuf,
}

const A_V4: &str = "192.0.2.2";
const B_V4: &str = "198.51.100.2";
const A_V6: &str = "2001:db8:1::2";
const B_V6: &str = "2001:db8:2::2";

impl P4Lab {
    /// Hosts A and B on the target's P4 ports 5 and 7; `extra` is appended
    /// to the router's configuration.
    fn new(tag: &str, extra: &str) -> P4Lab {
        let prefix = format!("q{tag}{}", std::process::id() % 10_000);
        let mut lab = Lab::new(&prefix).expect("lab");
        let a = lab.netns("a").expect("netns");
        let b = lab.netns("b").expect("netns");
        let sw = lab.netns("sw").expect("netns");
        let (pa, pb) = (lab.name("pa"), lab.name("pb"));
        lab.veth(&a, &lab.name("ha"), &sw, &pa).expect("veth");
        lab.veth(&b, &lab.name("hb"), &sw, &pb).expect("veth");
        lab.kernel_forwarding_off(&sw).expect("sysctl");
        for (ns, ifname, v4, gw4, v6, gw6) in [
            (
                &a,
                lab.name("ha"),
                "192.0.2.2/24",
                "192.0.2.1",
                "2001:db8:1::2/64",
                "2001:db8:1::1",
            ),
            (
                &b,
                lab.name("hb"),
                "198.51.100.2/24",
                "198.51.100.1",
                "2001:db8:2::2/64",
                "2001:db8:2::1",
            ),
        ] {
            let must = |args: &[&str]| {
                lab.must(ns, args).expect("host setup");
            };
            must(&["ip", "addr", "add", v4, "dev", &ifname]);
            must(&["ip", "-6", "addr", "add", v6, "dev", &ifname, "nodad"]);
            must(&["ip", "route", "add", "default", "via", gw4]);
            must(&["ip", "-6", "route", "add", "default", "via", gw6]);
            // Hosts revalidate the router's address every second or so, so
            // a restarted nosd hears from them (and learns them) soon.
            for fam in ["ipv4", "ipv6"] {
                must(&[
                    "sysctl",
                    "-qw",
                    &format!("net.{fam}.neigh.{ifname}.base_reachable_time_ms=1000"),
                ]);
                must(&[
                    "sysctl",
                    "-qw",
                    &format!("net.{fam}.neigh.{ifname}.delay_first_probe_time=1"),
                ]);
            }
        }
        let config = lab.dir.join("router.yaml");
        std::fs::write(
            &config,
            format!(
                r#"system:
  hostname: p4-router
dataplane:
  backend: p4runtime
  p4runtime:
    address: "{GRPC}"
    device_id: 1
    ports:
      - {{ port: eth1, number: 5 }}
      - {{ port: eth2, number: 7 }}
ports:
  - name: eth1
    linux: {pa}
  - name: eth2
    linux: {pb}
interfaces:
  - name: eth1
    port: eth1
    ipv4: [192.0.2.1/24]
    ipv6: ["2001:db8:1::1/64"]
  - name: eth2
    port: eth2
    ipv4: [198.51.100.1/24]
    ipv6: ["2001:db8:2::1/64"]
{extra}"#
            ),
        )
        .expect("config");
        let target_args = vec![
            "--grpc-addr".to_string(),
            GRPC.into(),
            "--device-id".into(),
            "1".into(),
            "-i".into(),
            format!("5@{pa}"),
            "-i".into(),
            format!("7@{pb}"),
        ];
        let socket = lab.dir.join("nosd.sock");
        let state = lab.dir.join("state");
        P4Lab {
            nosd: None,
            target: None,
            lab,
            a,
            b,
            sw,
            target_args,
            config,
            socket,
            state,
        }
    }

    /// A log, without the colours tracing writes.
    fn log(&self, name: &str) -> String {
        plain(&std::fs::read_to_string(self.lab.dir.join(name)).unwrap_or_default())
    }

    fn start_target(&mut self) {
        let args: Vec<&str> = self.target_args.iter().map(|s| s.as_str()).collect();
        self.target = Some(Proc::start(
            Some(&self.sw),
            &target_binary(),
            &args,
            &self.lab.dir.join("target.log"),
        ));
    }

    fn start_nosd(&mut self) {
        let log = self.lab.dir.join("nosd.log");
        self.nosd = Some(Proc::start(
            Some(&self.sw),
            Path::new(NOSD),
            &[
                "run",
                "--config",
                &self.config.to_string_lossy(),
                "--state-dir",
                &self.state.to_string_lossy(),
                "--socket",
                &self.socket.to_string_lossy(),
                "--log-level",
                "info,p4=debug",
            ],
            &log,
        ));
        let start = Instant::now();
        while call(&self.socket, &Request::ConfigHistory).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "nosd did not come up; its log:\n{}",
                self.log("nosd.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ask<T: serde::de::DeserializeOwned>(&self, req: Request) -> T {
        match call(&self.socket, &req).expect("nosd answers") {
            Response::Ok { data } => serde_json::from_value(data).expect("a well-formed answer"),
            Response::Error { message, .. } => panic!("{req:?}: {message}"),
        }
    }

    fn counters(&self) -> HashMap<String, u64> {
        self.ask::<Vec<(String, u64)>>(Request::ShowCounters)
            .into_iter()
            .collect()
    }

    fn fib(&self) -> Vec<FibRow> {
        self.ask(Request::ShowFib)
    }

    fn neighbors(&self) -> Vec<NeighborRow> {
        self.ask(Request::ShowNeighbors)
    }

    fn ping(&self, ns: &str, dst: &str) -> bool {
        self.lab
            .exec(ns, &["ping", "-c", "1", "-W", "1", dst])
            .is_ok_and(|o| o.status.success())
    }

    fn ping_until(&self, ns: &str, dst: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.ping(ns, dst) {
                return true;
            }
        }
        false
    }

    fn wait(&self, what: &str, within: Duration, mut f: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}; nosd's log:\n{}\ntarget's log:\n{}",
                self.log("nosd.log"),
                self.log("target.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Both hosts learned (from packet-ins) and installed.
    fn hosts_learned(&self) -> bool {
        let n = self.neighbors();
        [A_V4, B_V4]
            .iter()
            .all(|h| n.iter().any(|r| r.address == *h && r.installed))
    }
}

/// `s` without ANSI escape sequences (`ESC [ ... letter`).
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The numbers of `ping -q`'s summary: (transmitted, received).
fn ping_summary(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok());
    Some((nums.next()??, nums.next()??))
}

#[test]
fn hosts_talk_through_the_target_across_nosd_and_target_restarts() {
    if !can_run() {
        return;
    }
    let mut lab = P4Lab::new("r", "");

    // nosd first: the target is not there yet, and nosd keeps running.
    lab.start_nosd();
    lab.wait(
        "nosd says it will reconnect",
        Duration::from_secs(10),
        |l| {
            l.log("nosd.log")
                .contains("nosd keeps running and reconnects")
        },
    );
    assert!(lab.nosd.as_mut().is_some_and(|p| p.alive()), "nosd died");
    lab.start_target();

    // ARP through packet-in/out: no static entries on the hosts.
    assert!(
        lab.ping_until(&lab.a, B_V4, Duration::from_secs(30)),
        "A cannot reach B through the target; nosd's log:\n{}\ntarget's log:\n{}",
        lab.log("nosd.log"),
        lab.log("target.log")
    );
    assert!(
        lab.ping_until(&lab.b, A_V4, Duration::from_secs(5)),
        "B cannot reach A"
    );
    assert!(
        lab.ping_until(&lab.a, B_V6, Duration::from_secs(10)),
        "A cannot reach B over IPv6 (ND by packet-in/out)"
    );
    assert!(
        lab.ping_until(&lab.b, A_V6, Duration::from_secs(5)),
        "B cannot reach A over IPv6"
    );
    // The router's own address: packet-in to nosd's kernel stack, the
    // answer by packet-out.
    assert!(
        lab.ping_until(&lab.a, "192.0.2.1", Duration::from_secs(5)),
        "A cannot ping the router"
    );
    lab.wait(
        "both hosts learned by packet-in",
        Duration::from_secs(10),
        |l| l.hosts_learned(),
    );
    let log = lab.log("nosd.log");
    for line in [
        "connecting to the P4Runtime target",
        "primary controller",
        "pipeline pushed",
    ] {
        assert!(log.contains(line), "nosd's log lacks {line:?}:\n{log}");
    }
    let c = lab.counters();
    assert!(c["p4runtime_packet_ins"] > 0, "no packet-ins: {c:?}");
    let fib = lab.fib();
    assert!(
        fib.iter().all(|r| r.action != "not installed"),
        "refused entries: {fib:?}"
    );

    // (a) nosd restarts while A streams pings to B every 10 ms.
    let stream = Command::new("ip")
        .args([
            "netns", "exec", &lab.a, "ping", "-q", "-c", "700", "-i", "0.01", "-W", "2", B_V4,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping starts");
    std::thread::sleep(Duration::from_millis(1000));
    let old = lab.nosd.take().expect("nosd");
    assert!(old.stop(), "nosd did not stop cleanly");
    // Only the new run's log from here.
    let _ = std::fs::rename(lab.lab.dir.join("nosd.log"), lab.lab.dir.join("nosd-1.log"));
    lab.start_nosd();
    let out = stream.wait_with_output().expect("ping ends");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (sent, received) = ping_summary(&text).unwrap_or_else(|| panic!("ping said: {text}"));
    eprintln!("across the nosd restart: {sent} sent, {received} received");
    assert_eq!(
        sent,
        received,
        "packets lost across the nosd restart:\n{text}\nnosd's log:\n{}",
        lab.log("nosd.log")
    );
    // The restarted nosd took everything over without writing: its
    // configuration, and the hosts once it learned them again.
    lab.wait(
        "the restarted nosd is ready",
        Duration::from_secs(20),
        |l| l.log("nosd.log").contains("P4Runtime target ready"),
    );
    lab.wait(
        "the restarted nosd learned the hosts",
        Duration::from_secs(30),
        |l| l.hosts_learned(),
    );
    lab.wait(
        "the configuration installed",
        Duration::from_secs(15),
        |l| {
            let f = l.fib();
            ["192.0.2.2/32", "198.51.100.2/32", "192.0.2.1/32"]
                .iter()
                .all(|p| {
                    f.iter()
                        .any(|r| r.prefix == *p && r.action != "not installed")
                })
        },
    );
    let c = lab.counters();
    eprintln!(
        "restarted nosd: {} updates written, {} adopted, {} pipeline pushes",
        c["p4runtime_updates_written"], c["p4runtime_adopted"], c["p4runtime_pipeline_pushes"]
    );
    // The configuration's entries are all taken over. A neighbor the new
    // nosd learns that the old one had not (a host's IPv6 link-local
    // address, seen only once the host speaks from it) is a new entry: a
    // write or two for the hosts' link-local neighbors, nothing else.
    assert!(
        c["p4runtime_updates_written"] <= 2,
        "writes after the restart: {c:?}"
    );
    assert!(
        c["p4runtime_adopted"] >= 13,
        "the configuration's entries were not taken over: {c:?}"
    );
    assert_eq!(
        c["p4runtime_pipeline_pushes"], 0,
        "pipeline pushed again: {c:?}"
    );
    assert!(c["p4runtime_adopted"] > 0, "nothing adopted: {c:?}");
    let log = lab.log("nosd.log");
    assert!(
        log.contains("the target runs the pipeline already"),
        "{log}"
    );
    let reconciled = log
        .lines()
        .find(|l| l.contains("reconciled with the target"))
        .unwrap_or_else(|| panic!("no reconcile line:\n{log}"));
    eprintln!("{reconciled}");
    assert!(reconciled.contains("written=0"), "{reconciled}");

    // (b) the target restarts: nosd pushes the pipeline and replays everything.
    let before = lab.counters();
    let t = lab.target.take().expect("target");
    assert!(t.stop(), "the target did not stop cleanly");
    assert!(
        !lab.ping(&lab.a, B_V4),
        "traffic passes with the target stopped"
    );
    lab.start_target();
    assert!(
        lab.ping_until(&lab.a, B_V4, Duration::from_secs(30)),
        "traffic did not resume after the target restarted; nosd's log:\n{}",
        lab.log("nosd.log")
    );
    assert!(
        lab.ping_until(&lab.a, B_V6, Duration::from_secs(5)),
        "IPv6 did not resume"
    );
    let after = lab.counters();
    let written = after["p4runtime_updates_written"] - before["p4runtime_updates_written"];
    eprintln!("target restart: {written} updates replayed");
    assert_eq!(after["p4runtime_pipeline_pushes"], 1, "{after:?}");
    assert!(
        after["p4runtime_connects"] > before["p4runtime_connects"],
        "{after:?}"
    );
    // Interfaces, admits, neighbors, next hops and routes of both hosts.
    assert!(written >= 10, "only {written} updates replayed: {after:?}");
    assert!(lab.lab.dir.join("nosd-1.log").exists());
    let n = lab.nosd.take().expect("nosd");
    assert!(n.stop(), "nosd did not stop cleanly");
}

#[test]
fn entries_the_target_refuses_show_as_not_installed() {
    if !can_run() {
        return;
    }
    // eth3 would be P4 port 3 (1 + its position), which the target lacks.
    let mut lab = P4Lab::new(
        "x",
        r#"  - name: eth3
    port: eth3
    ipv4: [203.0.113.1/24]
static_routes:
  - prefix: 198.18.0.0/24
    next_hops: [{ address: 203.0.113.2 }]
"#,
    );
    let text = std::fs::read_to_string(&lab.config).expect("config");
    let text = text.replace(
        "interfaces:\n",
        &format!(
            "  - name: eth3\n    linux: {}\ninterfaces:\n",
            lab.lab.name("pc")
        ),
    );
    // nosd reaches the target through a Unix socket here (socat carries it
    // to the target's TCP port), when socat is installed.
    let sock = lab.lab.dir.join("grpc.sock");
    let _socat = have("socat").then(|| {
        Proc::start(
            Some(&lab.sw),
            Path::new("socat"),
            &[
                &format!("UNIX-LISTEN:{},fork,unlink-early", sock.display()),
                &format!("TCP:{GRPC}"),
            ],
            &lab.lab.dir.join("socat.log"),
        )
    });
    let text = if have("socat") {
        text.replace(
            &format!("address: \"{GRPC}\""),
            &format!("address: \"unix:{}\"", sock.display()),
        )
    } else {
        eprintln!("socat is not installed: nosd uses TCP");
        text
    };
    std::fs::write(&lab.config, text).expect("config");
    lab.start_target();
    lab.start_nosd();
    assert!(
        lab.ping_until(&lab.a, B_V4, Duration::from_secs(30)),
        "the rest of the configuration does not forward; nosd's log:\n{}",
        lab.log("nosd.log")
    );
    lab.wait("the refused route shows", Duration::from_secs(15), |l| {
        l.fib()
            .iter()
            .any(|r| r.prefix == "198.18.0.0/24" && r.action == "not installed")
    });
    let fib = lab.fib();
    let row = fib
        .iter()
        .find(|r| r.prefix == "198.18.0.0/24")
        .expect("the row");
    eprintln!("{row:?}");
    assert!(
        row.next_hops.iter().any(|h| h.starts_with("refused: ")),
        "{row:?}"
    );
    // What an operator sees.
    let out = Command::new(env!("CARGO_BIN_EXE_nosctl"))
        .arg("--socket")
        .arg(&lab.socket)
        .args(["show", "fib"])
        .output()
        .expect("nosctl runs");
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}");
    let line = table
        .lines()
        .find(|l| l.contains("198.18.0.0/24"))
        .unwrap_or_else(|| panic!("no row for the refused route:\n{table}"));
    assert!(
        line.contains("not installed") && line.contains("refused: "),
        "{line}"
    );
    assert!(
        fib.iter()
            .any(|r| r.prefix == "198.51.100.2/32" && r.action == "forward"),
        "{fib:?}"
    );
    let log = lab.log("nosd.log");
    let refusal = log
        .lines()
        .find(|l| l.contains("the target refused an update"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    eprintln!("{refusal}");
    // The error, the delta and the entry.
    assert!(
        refusal.contains("port 3 is not a port of this target"),
        "{refusal}"
    );
    assert!(refusal.contains("delta="), "{refusal}");
    assert!(refusal.contains("entry="), "{refusal}");
    assert!(lab.counters()["p4runtime_updates_failed"] > 0);
    if have("socat") {
        assert!(
            log.contains("addr=unix:"),
            "not connected by the Unix socket:\n{log}"
        );
    }
}

/// Writes the nos.p4 P4Info without the table named `table`.
fn p4info_without(table: &str, path: &Path) {
    let text = include_str!("../../p4/programs/nos.p4info.txtpb");
    let mut out = String::new();
    let mut block = String::new();
    let mut in_block = false;
    for line in text.lines() {
        if !in_block && line == "tables {" {
            in_block = true;
            block.clear();
        }
        if in_block {
            block.push_str(line);
            block.push('\n');
            if line == "}" {
                in_block = false;
                if !block.contains(&format!("name: \"{table}\"\n")) {
                    out.push_str(&block);
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.len() < text.len(), "table {table} not found");
    std::fs::write(path, out).expect("p4info");
}

#[test]
fn a_p4info_lacking_a_table_stops_nosd_at_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p4info = dir.path().join("broken.p4info.txtpb");
    p4info_without("ipv6_lpm", &p4info);
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "dataplane:\n  backend: p4runtime\n  p4runtime:\n    address: \"127.0.0.1:1\"\n    p4info: \"{}\"\n",
            p4info.display()
        ),
    )
    .expect("config");
    let start = Instant::now();
    let out = Command::new(NOSD)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(dir.path().join("nosd.sock"))
        .args(["--host-interface", "none"])
        .output()
        .expect("nosd runs");
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "nosd started anyway:\n{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    eprintln!("{err}");
    assert!(
        err.contains("ipv6_lpm"),
        "the error does not name the table:\n{err}"
    );
}

/// Removes a test's bgpd files (the lab kills the process with its namespace).
struct FrrFiles(String);

impl Drop for FrrFiles {
    fn drop(&mut self) {
        let run = format!("/var/run/frr/{}", self.0);
        if let Ok(pid) = std::fs::read_to_string(format!("{run}/bgpd.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&run);
        let _ = std::fs::remove_dir_all(format!("/etc/frr/{}", self.0));
    }
}

#[test]
fn bgp_with_frr_runs_over_packet_in_and_packet_out() {
    if !can_run() {
        return;
    }
    if !have("vtysh") || !Path::new("/usr/lib/frr/bgpd").exists() {
        eprintln!("SKIPPED: needs FRR (vtysh, /usr/lib/frr/bgpd)");
        return;
    }
    let mut lab = P4Lab::new(
        "g",
        r#"bgp:
  asn: 64500
  router_id: 192.0.2.1
  networks: [192.0.2.0/24]
  neighbors:
    - { address: 198.51.100.2, remote_as: 64501, hold_time: 9, import_policy: in, export_policy: out }
  policies:
    - name: in
      rules: [{ action: accept }]
    - name: out
      rules:
        - match: { prefixes: [{ prefix: 192.0.2.0/24 }] }
          action: accept
"#,
    );
    // FRR's bgpd alone in host B (see shared/TESTING-NOTES.md), announcing
    // B's loopback network.
    let ns = lab.b.clone();
    let _frr = FrrFiles(ns.clone());
    lab.lab
        .must(&ns, &["ip", "addr", "add", "203.0.113.1/32", "dev", "lo"])
        .expect("loopback address");
    let etc = PathBuf::from(format!("/etc/frr/{ns}"));
    let run = PathBuf::from(format!("/var/run/frr/{ns}"));
    std::fs::create_dir_all(&etc).expect("frr etc");
    std::fs::create_dir_all(&run).expect("frr run");
    std::fs::write(
        etc.join("bgpd.conf"),
        format!(
            "frr defaults traditional\nhostname {ns}\nlog file {}/bgpd.log debugging\ndebug bgp neighbor-events\n!\n\
router bgp 64501\n bgp router-id 198.51.100.2\n no bgp ebgp-requires-policy\n no bgp network import-check\n\
 neighbor 198.51.100.1 remote-as 64500\n neighbor 198.51.100.1 timers 3 9\n neighbor 198.51.100.1 timers connect 1\n\
 address-family ipv4 unicast\n  network 203.0.113.0/24\n exit-address-family\n!\n",
            lab.lab.dir.display()
        ),
    )
    .expect("bgpd.conf");
    std::fs::write(etc.join("vtysh.conf"), "").expect("vtysh.conf");
    let dir = lab.lab.dir.to_string_lossy().into_owned();
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
    lab.start_target();
    lab.start_nosd();
    let conf = format!("/etc/frr/{ns}/bgpd.conf");
    let pid = format!("/var/run/frr/{ns}/bgpd.pid");
    lab.lab
        .must(
            &ns,
            &[
                "/usr/lib/frr/bgpd",
                "-N",
                &ns,
                "-Z",
                "-n",
                "-S",
                "-f",
                &conf,
                "-d",
                "-i",
                &pid,
            ],
        )
        .expect("bgpd starts");

    lab.wait(
        "the BGP session is established",
        Duration::from_secs(60),
        |l| match call(&l.socket, &Request::ShowBgpSummary) {
            Ok(Response::Ok { data }) => data.to_string().contains("Established"),
            _ => false,
        },
    );
    lab.wait("FRR's route is installed", Duration::from_secs(20), |l| {
        l.fib()
            .iter()
            .any(|r| r.prefix == "203.0.113.0/24" && r.action != "not installed")
    });
    assert!(
        lab.ping_until(&lab.a, "203.0.113.1", Duration::from_secs(10)),
        "A cannot reach B's loopback along the BGP route"
    );
    let routes = lab
        .lab
        .must(
            &ns,
            &["vtysh", "-N", &ns, "-c", "show bgp ipv4 unicast json"],
        )
        .expect("vtysh");
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("192.0.2.0/24"),
        "FRR did not receive nosd's network: {routes}"
    );
    let c = lab.counters();
    eprintln!(
        "BGP over P4Runtime: {} packet-ins, {} updates written",
        c["p4runtime_packet_ins"], c["p4runtime_updates_written"]
    );
    assert!(c["p4runtime_packet_ins"] > 5, "{c:?}");

    // Graceful restart, nosd restarting: the target forwards on without
    // nosd, so nosd's OPEN lists its family with "forwarding state
    // preserved" and FRR sees it as restart-capable. nosd is killed and
    // started again at once (its TCP connection dies with its host
    // interface, so FRR learns of the restart from the new OPEN, with the
    // "Restart State" bit): FRR keeps nosd's route throughout, and it is
    // fresh (not stale) after nosd's End-of-RIB.
    let show = |l: &P4Lab, what: &str| {
        l.lab
            .must(&ns, &["vtysh", "-N", &ns, "-c", what])
            .map(|o| String::from_utf8_lossy(&o.stdout).replace(char::is_whitespace, ""))
            .unwrap_or_default()
    };
    let neighbor = "show bgp neighbors 198.51.100.1 json";
    let route = "show bgp ipv4 unicast 192.0.2.0/24 json";
    // Samples FRR's view of nosd's route and session every ~50 ms until
    // `done(neighbor, route)`, failing after `limit` with `what`; returns
    // how many samples lacked the route.
    let watch = |l: &P4Lab, limit: u64, what: &str, done: &dyn Fn(&str, &str) -> bool| {
        let start = Instant::now();
        let mut missing = 0;
        loop {
            let r = show(l, route);
            if !r.contains("192.0.2.0/24") {
                missing += 1;
            }
            let n = show(l, neighbor);
            if done(&n, &r) {
                return missing;
            }
            assert!(
                start.elapsed() < Duration::from_secs(limit),
                "{what}: {n}\n{r}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let gr = show(&lab, neighbor);
    assert!(
        gr.contains("\"remoteGrMode\":\"Restart\"") && gr.contains("\"fBit\":true"),
        "FRR does not see nosd as restart-capable with its forwarding preserved: {gr}"
    );
    let mut nosd = lab.nosd.take().expect("nosd runs");
    let _ = nosd.child.kill();
    let _ = nosd.child.wait();
    lab.start_nosd();
    // The second session, opened by the restarted nosd with the "Restart
    // State" bit, and nosd's route refreshed by its End-of-RIB.
    let missing = watch(
        &lab,
        60,
        "nosd's session did not come back gracefully",
        &|n, r| {
            n.contains("\"connectionsEstablished\":2")
                && n.contains("\"rBit\":true")
                && n.contains("\"bgpState\":\"Established\"")
                && r.contains("192.0.2.0/24")
                && !r.contains("\"stale\":true")
        },
    );
    assert_eq!(missing, 0, "FRR dropped nosd's route while nosd restarted");
    let log = lab.log("nosd.log");
    assert!(
        log.contains("BGP sessions say we restarted (graceful restart)"),
        "the restarted nosd does not say it restarted"
    );
    // Route selection was deferred (RFC 4724 4.1) until FRR was back; FRR,
    // itself in its start-up period, sets the Restart State bit, so its
    // End-of-RIB is not waited for.
    assert!(
        log.contains("route selection deferred") && log.contains("selecting routes"),
        "the restarted nosd did not defer route selection"
    );
    assert!(lab.ping_until(&lab.a, "203.0.113.1", Duration::from_secs(10)));

    // RFC 8538: both sides set the N bit, so when nosd hangs (SIGSTOP) past
    // the hold time, FRR's hold timer expiry is graceful too: FRR keeps
    // nosd's route (stale) until nosd is back and refreshes it.
    let n = show(&lab, neighbor);
    assert!(
        n.contains("\"nBit\":true"),
        "FRR does not see nosd's N bit: {n}"
    );
    let pid = lab.nosd.as_ref().expect("nosd runs").child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} nosd");
    };
    signal("-STOP");
    // Until FRR's hold timer (9 s) has expired and it kept the route stale.
    let mut missing = watch(&lab, 30, "FRR's hold timer did not expire", &|_, r| {
        r.contains("\"stale\":true")
    });
    signal("-CONT");
    missing += watch(
        &lab,
        60,
        "nosd's session did not come back after the hold timer expired",
        &|n, r| {
            n.contains("\"connectionsEstablished\":3")
                && n.contains("\"bgpState\":\"Established\"")
                && r.contains("192.0.2.0/24")
                && !r.contains("\"stale\":true")
        },
    );
    assert_eq!(
        missing, 0,
        "FRR dropped nosd's route when its hold timer expired"
    );
    assert!(lab.ping_until(&lab.a, "203.0.113.1", Duration::from_secs(10)));
}
