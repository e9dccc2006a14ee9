//! End-to-end scenarios that drive a real P4Runtime target through the
//! `p4` crate's controller: the project's x86 target (`nos-p4rt-target`)
//! always, bmv2's `simple_switch_grpc` when it and `p4c` are on PATH; the
//! same scenario on both.
//!
//! A scenario is a lab of Linux network namespaces: hosts `h1` and `h2`,
//! and a switch namespace `sw` whose interfaces `p1` and `p2` are the
//! target's ports 1 and 2 (veth pairs to the hosts' `eth0`). The target runs
//! inside `sw` and listens for gRPC on that namespace's loopback; `socat`
//! carries the connection out through a Unix socket in the lab's directory
//! to a loopback port of the test's namespace, so no lab interface is ever
//! in the root namespace. The controller ([`p4::P4RuntimeBackend`])
//! programs a `nos_core::ForwardingState` (two routed interfaces, the
//! hosts as neighbors and next hops, host routes, a route to the CPU), and
//! the hosts ping each other through the switch. Hosts use the
//! documentation ranges 192.0.2.0/24 and 198.51.100.0/24 and have no route
//! out of the lab. Everything is removed when the lab drops.

use anyhow::{bail, Context};
use nos_core::backend::{PacketIn, PuntReason};
use nos_core::{
    Backend, Delta, ForwardingState, MacAddr, Neighbor, NextHop, NextHopId, Object, Port, PortId,
    RifId, RifKind, Route, RouteAction, RouterInterface, Vrf, VrfId,
};
use p4::{ClientConfig, P4RuntimeBackend, P4RuntimeConfig, PipelineConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs a command; fails with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {cmd} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces and processes, removed on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: PathBuf,
}

impl Lab {
    /// A lab whose namespaces are named `<prefix><short>`.
    pub fn new(prefix: &str) -> anyhow::Result<Lab> {
        if !have("ip") {
            bail!("the `ip` command (iproute2) is required");
        }
        let dir = std::env::temp_dir().join(format!("{prefix}-lab"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Lab {
            prefix: prefix.to_string(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        })
    }

    pub fn netns(&mut self, short: &str) -> anyhow::Result<String> {
        let ns = format!("{}{short}", self.prefix);
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair created straight inside two namespaces, both ends up.
    pub fn veth(&self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> anyhow::Result<()> {
        run(
            "ip",
            &[
                "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns",
                ns_b,
            ],
        )?;
        run("ip", &["-n", ns_a, "link", "set", if_a, "up"])?;
        run("ip", &["-n", ns_b, "link", "set", if_b, "up"])?;
        Ok(())
    }

    /// Runs a command in a namespace; fails when it fails.
    pub fn must(&self, ns: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Starts a process in a namespace (`None`: here), output to
    /// `<dir>/<log>`; it is killed when the lab drops.
    pub fn spawn(&mut self, ns: Option<&str>, args: &[&str], log: &str) -> anyhow::Result<()> {
        let out = std::fs::File::create(self.dir.join(log))?;
        let err = out.try_clone()?;
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(args);
                c
            }
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
        };
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {}", args.join(" ")))?;
        self.children.push(child);
        Ok(())
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Whether every process the lab started is still running.
    pub fn children_alive(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The target a scenario runs against.
#[derive(Clone, Debug)]
pub enum TargetKind {
    /// The project's x86 target, this binary.
    X86 { binary: PathBuf },
    /// bmv2 `simple_switch_grpc` with the program compiled by p4c into
    /// this directory (`nos.json`, `nos.p4info.txtpb`).
    Bmv2 { build: PathBuf },
}

impl TargetKind {
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::X86 { .. } => "x86 (nos-p4rt-target)",
            TargetKind::Bmv2 { .. } => "bmv2 (simple_switch_grpc)",
        }
    }
}

/// Whether bmv2 can run here.
pub fn bmv2_available() -> bool {
    have("simple_switch_grpc") && have("p4c")
}

/// Compiles `programs/nos.p4` for bmv2 into `out`.
pub fn compile_for_bmv2(programs: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let json = out.join("nos.json");
    let info = out.join("nos.p4info.txtpb");
    let src = programs.join("nos.p4");
    run(
        "p4c",
        &[
            "--target",
            "bmv2",
            "--arch",
            "v1model",
            "-o",
            &out.to_string_lossy(),
            "--p4runtime-files",
            &info.to_string_lossy(),
            &src.to_string_lossy(),
        ],
    )?;
    if !json.exists() {
        bail!("p4c wrote no {}", json.display());
    }
    Ok(())
}

/// Addresses of the two-host scenario.
pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const H1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x02]);
pub const H2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x02]);

fn mac_text(m: MacAddr) -> String {
    m.0.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The forwarding state of the scenario: interfaces 1 (port 1,
/// 192.0.2.1/24) and 2 (port 2, 198.51.100.1/24), the hosts as neighbors
/// and next hops, host routes to them, and the router's own addresses to
/// the CPU.
pub fn two_hosts_state() -> ForwardingState {
    let mut s = ForwardingState::new();
    let rif = |id: u32| {
        Object::from(RouterInterface {
            id: RifId(id),
            name: format!("rif{id}"),
            vrf: VrfId::DEFAULT,
            kind: RifKind::Port { port: PortId(id) },
            mac: ROUTER_MAC,
            mtu: 1500,
            admin_up: true,
        })
    };
    let route = |p: &str, a: RouteAction| {
        Object::Route(Route {
            vrf: VrfId::DEFAULT,
            prefix: p.parse().expect("a prefix"),
            action: a,
        })
    };
    let objects = vec![
        Object::Vrf(Vrf {
            id: VrfId::DEFAULT,
            name: "default".into(),
        }),
        Object::Port(Port {
            id: PortId(1),
            name: "p1".into(),
            mtu: 1500,
            admin_up: true,
        }),
        Object::Port(Port {
            id: PortId(2),
            name: "p2".into(),
            mtu: 1500,
            admin_up: true,
        }),
        rif(1),
        rif(2),
        Object::Neighbor(Neighbor {
            rif: RifId(1),
            ip: "192.0.2.2".parse().expect("an address"),
            mac: H1_MAC,
            port: None,
        }),
        Object::Neighbor(Neighbor {
            rif: RifId(2),
            ip: "198.51.100.2".parse().expect("an address"),
            mac: H2_MAC,
            port: None,
        }),
        Object::NextHop(NextHop {
            id: NextHopId(1),
            rif: RifId(1),
            ip: "192.0.2.2".parse().expect("an address"),
        }),
        Object::NextHop(NextHop {
            id: NextHopId(2),
            rif: RifId(2),
            ip: "198.51.100.2".parse().expect("an address"),
        }),
        route("192.0.2.2/32", RouteAction::NextHop(NextHopId(1))),
        route("198.51.100.2/32", RouteAction::NextHop(NextHopId(2))),
        route("192.0.2.1/32", RouteAction::ToCpu),
        route("198.51.100.1/32", RouteAction::ToCpu),
    ];
    for o in objects {
        if let Err(e) = s.upsert(o) {
            unreachable!("the scenario's state is valid: {e}");
        }
    }
    s
}

/// What a scenario saw.
#[derive(Debug)]
pub struct Outcome {
    pub target: &'static str,
    pub h1_to_h2: bool,
    pub h2_to_h1: bool,
    /// Packet-ins with reason TO_ME after pinging the router.
    pub punted_to_me: usize,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn ping(lab: &Lab, ns: &str, dst: &str, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if lab.must(ns, &["ping", "-c", "1", "-W", "1", dst]).is_ok() {
            return true;
        }
    }
    false
}

/// Builds the two-host lab, starts `kind` in it, programs it and pings.
pub fn two_hosts(kind: &TargetKind, prefix: &str) -> anyhow::Result<Outcome> {
    for p in ["ping", "socat"] {
        if !have(p) {
            bail!("`{p}` is required");
        }
    }
    let mut lab = Lab::new(prefix)?;
    let h1 = lab.netns("h1")?;
    let h2 = lab.netns("h2")?;
    let sw = lab.netns("sw")?;
    lab.veth(&h1, "eth0", &sw, "p1")?;
    lab.veth(&h2, "eth0", &sw, "p2")?;
    for (ns, mac, addr, gw) in [
        (&h1, H1_MAC, "192.0.2.2/24", "192.0.2.1"),
        (&h2, H2_MAC, "198.51.100.2/24", "198.51.100.1"),
    ] {
        lab.must(
            ns,
            &["ip", "link", "set", "eth0", "address", &mac_text(mac)],
        )?;
        lab.must(ns, &["ip", "addr", "add", addr, "dev", "eth0"])?;
        lab.must(ns, &["ip", "route", "add", "default", "via", gw])?;
        // The controller here runs no ARP responder: the hosts know the
        // router's MAC.
        lab.must(
            ns,
            &[
                "ip",
                "neigh",
                "replace",
                gw,
                "lladdr",
                &mac_text(ROUTER_MAC),
                "dev",
                "eth0",
            ],
        )?;
    }
    for p in ["p1", "p2"] {
        lab.must(
            &sw,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{p}.disable_ipv6=1"),
            ],
        )?;
    }

    // The target inside `sw`, and the way out to it.
    let (pipeline, start): (PipelineConfig, Vec<String>) = match kind {
        TargetKind::X86 { binary } => (
            PipelineConfig::new(p4::nos_p4info()?, b"x86".to_vec()),
            vec![
                binary.to_string_lossy().into_owned(),
                "--grpc-addr".into(),
                "127.0.0.1:9559".into(),
                "--device-id".into(),
                "1".into(),
                "-i".into(),
                "1@p1".into(),
                "-i".into(),
                "2@p2".into(),
            ],
        ),
        TargetKind::Bmv2 { build } => {
            let text = std::fs::read_to_string(build.join("nos.p4info.txtpb"))?;
            let info = p4runtime_info(&text)?;
            (
                PipelineConfig::new(info, std::fs::read(build.join("nos.json"))?),
                [
                    "simple_switch_grpc",
                    "--device-id",
                    "1",
                    "--no-p4",
                    "-i",
                    "1@p1",
                    "-i",
                    "2@p2",
                    "--",
                    "--grpc-server-addr",
                    "127.0.0.1:9559",
                    "--cpu-port",
                    "255",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            )
        }
    };
    let args: Vec<&str> = start.iter().map(|s| s.as_str()).collect();
    lab.spawn(Some(&sw), &args, "target.log")?;
    let sock = lab.dir.join("grpc.sock");
    let sock = sock.to_string_lossy().into_owned();
    lab.spawn(
        Some(&sw),
        &[
            "socat",
            &format!("UNIX-LISTEN:{sock},fork,unlink-early"),
            "TCP:127.0.0.1:9559",
        ],
        "socat-sw.log",
    )?;
    let port = free_port()?;
    lab.spawn(
        None,
        &[
            "socat",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            &format!("UNIX-CONNECT:{sock}"),
        ],
        "socat-root.log",
    )?;

    let punts: Arc<Mutex<Vec<PacketIn>>> = Arc::default();
    let sink = punts.clone();
    let mut cfg = P4RuntimeConfig::new(ClientConfig::new(format!("127.0.0.1:{port}"), 1), pipeline);
    cfg.audit_every = None;
    cfg.reconnect_max = Duration::from_millis(500);
    cfg.packet_in = Some(Arc::new(move |p| {
        if let Ok(mut v) = sink.lock() {
            v.push(p);
        }
    }));
    let mut backend = P4RuntimeBackend::start(cfg)?;
    if !backend.wait_ready(Duration::from_secs(20)) {
        bail!(
            "{} never became ready ({:?}); its log:\n{}",
            kind.name(),
            backend.state(),
            lab.log("target.log")
        );
    }
    let state = two_hosts_state();
    let deltas: Vec<Delta> = nos_core::diff(&ForwardingState::new(), &state);
    let results = backend.apply(&deltas);
    for (d, r) in deltas.iter().zip(&results) {
        if let Err(e) = r {
            bail!("{}: {:?} refused: {e}", kind.name(), d.key());
        }
    }
    let h1_to_h2 = ping(&lab, &h1, "198.51.100.2", Duration::from_secs(5));
    let h2_to_h1 = ping(&lab, &h2, "192.0.2.2", Duration::from_secs(5));
    // Pings to the router are punted (no one answers them here).
    let _ = lab.must(&h1, &["ping", "-c", "2", "-W", "1", "192.0.2.1"]);
    let punted_to_me = punts
        .lock()
        .map(|v| v.iter().filter(|p| p.reason == PuntReason::ToMe).count())
        .unwrap_or(0);
    if !lab.children_alive() {
        bail!(
            "a process of the lab died; target log:\n{}",
            lab.log("target.log")
        );
    }
    drop(backend);
    Ok(Outcome {
        target: kind.name(),
        h1_to_h2,
        h2_to_h1,
        punted_to_me,
    })
}

fn p4runtime_info(text: &str) -> anyhow::Result<p4runtime_proto::p4::config::v1::P4Info> {
    p4runtime_proto::text_format::p4info_from_text(text)
        .map_err(|e| anyhow::anyhow!("p4c's P4Info: {e}"))
}
