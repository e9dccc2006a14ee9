//! Two hosts ping each other through a P4Runtime target programmed by the
//! `p4` controller: the x86 target always, bmv2 when `simple_switch_grpc`
//! and `p4c` are installed. Needs root (network namespaces), `ip`, `ping`
//! and `socat`.

use bmv2_tests::{bmv2_available, compile_for_bmv2, have, two_hosts, TargetKind};
use std::path::PathBuf;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `nos-p4rt-target`, next to this test's own directory, built if needed.
fn x86_target() -> PathBuf {
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

#[test]
fn two_hosts_ping_through_every_available_target() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    if !is_root() || !have("ip") || !have("socat") || !have("ping") {
        eprintln!("SKIPPED: needs root, ip, ping and socat");
        return;
    }
    let mut targets = vec![TargetKind::X86 {
        binary: x86_target(),
    }];
    let programs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../p4/programs");
    let build = std::env::temp_dir().join(format!("bmv2-nos-{}", std::process::id()));
    if bmv2_available() {
        compile_for_bmv2(&programs, &build).expect("p4c compiles nos.p4");
        targets.push(TargetKind::Bmv2 {
            build: build.clone(),
        });
    } else {
        eprintln!("bmv2: not run (simple_switch_grpc or p4c is not on PATH)");
    }
    let mut ran = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let prefix = format!("b{}{i}", std::process::id() % 10_000);
        let o = two_hosts(t, &prefix).unwrap_or_else(|e| panic!("{}: {e:#}", t.name()));
        assert!(o.h1_to_h2, "{}: h1 cannot reach h2", o.target);
        assert!(o.h2_to_h1, "{}: h2 cannot reach h1", o.target);
        assert!(
            o.punted_to_me > 0,
            "{}: pings to the router were not punted",
            o.target
        );
        ran.push(o.target);
    }
    let _ = std::fs::remove_dir_all(&build);
    eprintln!("targets ran: {}", ran.join(", "));
}
