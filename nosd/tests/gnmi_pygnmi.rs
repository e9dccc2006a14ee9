//! Interop: the third-party Python client pygnmi (from PyPI, on grpcio)
//! against a real nosd over TLS with a configured user: Capabilities, Get,
//! Set, Subscribe ONCE, and a STREAM ON_CHANGE subscription that sees a port
//! go down and a static route appear, both committed with nosctl while it
//! streams.
//!
//! nosd runs in a namespace of its own with one port (a veth to a host
//! namespace); the client runs in the same namespace and connects to
//! 127.0.0.1. Needs root and pygnmi in a virtual environment:
//! `scripts/test.sh` installs it into `target/pygnmi-venv` (or set
//! `NOS_PYGNMI_PYTHON` to a Python that has it). Without it the test is
//! skipped with a message, except under CI=true, where it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nosd::lab::Lab;
use serde_json::Value as Json;

const NOSD: &str = env!("CARGO_BIN_EXE_nosd");
const NOSCTL: &str = env!("CARGO_BIN_EXE_nosctl");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pygnmi_client.py");
const PORT: u16 = 9339;

/// A Python with pygnmi, or why there is none.
fn python() -> Result<PathBuf, String> {
    let candidate = match std::env::var_os("NOS_PYGNMI_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pygnmi-venv/bin/python3"),
    };
    let ok = Command::new(&candidate)
        .args(["-c", "import pygnmi"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(candidate)
    } else {
        Err(format!(
            "{} cannot import pygnmi (scripts/test.sh installs it; or set NOS_PYGNMI_PYTHON)",
            candidate.display()
        ))
    }
}

fn config(port_linux: &str, hash: &str, extra: &str) -> String {
    format!(
        "system:\n  hostname: pygnmi-r1\n\
         ports:\n  - name: eth1\n    linux: {port_linux}\n{extra}\
         interfaces:\n  - name: eth1\n    port: eth1\n    ipv4: [192.0.2.1/24]\n\
         management:\n  users:\n    - name: ops\n      password_hash: '{hash}'\n"
    )
}

fn nosctl_commit(socket: &Path, file: &Path, yaml: &str) {
    std::fs::write(file, yaml).expect("write config");
    let out = Command::new(NOSCTL)
        .arg("--socket")
        .arg(socket)
        .args(["config", "commit"])
        .arg(file)
        .output()
        .expect("nosctl");
    assert!(
        out.status.success(),
        "nosctl config commit: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pygnmi_over_tls_with_a_user() {
    let python = match python() {
        Ok(p) => p,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and pygnmi is missing: {why}")
        }
        Err(why) => {
            eprintln!("\n*** SKIPPING the pygnmi interop test: {why} ***\n");
            return;
        }
    };

    let prefix = format!("pg{}", std::process::id() % 10000);
    let mut lab = Lab::new(&prefix).expect("lab");
    let router = lab.netns("r").expect("router namespace");
    let host = lab.netns("h").expect("host namespace");
    let port_if = lab.name("r1");
    let host_if = lab.name("h1");
    lab.veth(&router, &port_if, &host, &host_if).expect("veth");
    lab.must(
        &host,
        &["ip", "addr", "add", "192.0.2.2/24", "dev", &host_if],
    )
    .expect("host address");

    let hash = gnmi_server::security::hash_password("s3cret").expect("hash");
    let dir = lab.dir.clone();
    let cfg = dir.join("config.yaml");
    std::fs::write(&cfg, config(&port_if, &hash, "")).expect("write config");
    let state = dir.join("state");
    let socket = dir.join("nosd.sock");
    let log = dir.join("nosd.log");
    let addr = format!("127.0.0.1:{PORT}");
    lab.spawn(
        &router,
        Path::new(NOSD),
        &[
            "run",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--socket",
            socket.to_str().expect("utf-8"),
            "--host-interface",
            "none",
            "--gnmi-addr",
            &addr,
        ],
        &log,
    )
    .expect("start nosd");
    let nosd_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready: the certificate exists and the server listens.
    let cert = state.join("gnmi-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(cert.exists() && socket.exists() && nosd_log().contains("gNMI/gNOI server listening")) {
        assert!(
            Instant::now() < deadline,
            "nosd did not start:\n{}",
            nosd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut client = Command::new("ip")
        .args(["netns", "exec", &router])
        .arg(&python)
        .arg(SCRIPT)
        .args(["127.0.0.1", &PORT.to_string()])
        .arg(&cert)
        .args(["ops", "s3cret"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the pygnmi client");
    // Killed if the test fails before it ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = client.stdout.take().expect("stdout");
    let stderr = client.stderr.take().expect("stderr");
    let client = Reap(client);
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });

    let mut lines = BufReader::new(stdout).lines();
    // pygnmi prints its own messages on stdout too: events are the JSON lines.
    let mut chatter = Vec::new();
    let mut next_event = || -> Json {
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "the client ended early; it said:\n{}\nnosd:\n{}",
                        chatter.join("\n"),
                        nosd_log()
                    )
                })
                .expect("read the client");
            match serde_json::from_str::<Json>(&line) {
                Ok(v) if v.get("event").is_some() => return v,
                _ => chatter.push(line),
            }
        }
    };

    let synced = next_event();
    assert_eq!(synced["event"], "synced", "{synced}");
    // While the client streams: a static route, then the port disabled,
    // each its own commit through nosctl.
    let file = dir.join("change.yaml");
    let route =
        "static_routes:\n  - prefix: 203.0.113.0/24\n    next_hops: [{ address: 192.0.2.2 }]\n";
    let with_route =
        config(&port_if, &hash, "").replace("management:", &format!("{route}management:"));
    nosctl_commit(&socket, &file, &with_route);
    let disabled = with_route.replace(
        &format!("    linux: {port_if}\n"),
        &format!("    linux: {port_if}\n    enabled: false\n"),
    );
    assert_ne!(disabled, with_route);
    nosctl_commit(&socket, &file, &disabled);

    let done = next_event();
    drop(client);
    let stderr = errors.join().unwrap_or_default();
    assert_eq!(
        done["event"],
        "done",
        "{done}\nclient stderr:\n{stderr}\nnosd:\n{}",
        nosd_log()
    );
    let r = &done["result"];
    eprintln!(
        "pygnmi saw: {}",
        serde_json::to_string_pretty(r).unwrap_or_default()
    );

    // A wrong password: UNAUTHENTICATED.
    let wrong = r["wrong_password"].as_str().unwrap_or_default();
    assert!(wrong.contains("UNAUTHENTICATED"), "wrong password: {wrong}");
    // Capabilities.
    let models: Vec<&str> = r["capabilities"]["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert!(models.contains(&"openconfig-interfaces"), "{models:?}");
    assert!(r["capabilities"]["gnmi_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    // Get and Set.
    assert_eq!(r["hostname"], serde_json::json!(["pygnmi-r1"]));
    assert_eq!(r["set"], serde_json::json!(["UPDATE"]));
    assert_eq!(r["description"], serde_json::json!(["set by pygnmi"]));
    // Subscribe ONCE.
    assert_eq!(r["once"]["synced"], true);
    let once = r["once"]["leaves"].as_object().expect("leaves");
    let oper = once
        .iter()
        .find(|(k, _)| k.ends_with("state/oper-status"))
        .map(|(_, v)| v.clone());
    assert_eq!(oper, Some(Json::from("UP")), "{once:?}");
    assert!(
        once.iter()
            .any(|(k, v)| k.ends_with("state/description") && v == "set by pygnmi"),
        "{once:?}"
    );
    // Subscribe STREAM ON_CHANGE: UP at first, no route; then the route and DOWN.
    assert_eq!(r["stream_initial"]["synced"], true);
    let initial = r["stream_initial"]["leaves"].as_object().expect("leaves");
    assert!(initial.values().any(|v| v == "UP"), "{initial:?}");
    assert!(
        !initial.keys().any(|k| k.contains("203.0.113.0/24")),
        "{initial:?}"
    );
    assert_eq!(r["stream"]["route_seen"], true, "{}", r["stream"]);
    assert_eq!(r["stream"]["oper_down"], true, "{}", r["stream"]);

    // The Set is a commit in the history nosctl shows.
    let out = Command::new(NOSCTL)
        .arg("--socket")
        .arg(&socket)
        .args(["--json", "config", "history"])
        .output()
        .expect("nosctl");
    let history: Json = serde_json::from_slice(&out.stdout).expect("history JSON");
    let messages: Vec<&str> = history
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("gNMI Set by ops")),
        "{messages:?}"
    );

    assert!(
        lab.stop_children(Duration::from_secs(10)),
        "nosd did not stop cleanly:\n{}",
        nosd_log()
    );
}
