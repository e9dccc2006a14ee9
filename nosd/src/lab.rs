//! Labs made of Linux network namespaces and veth pairs, for `nosd demo` and the
//! end-to-end tests: hosts are namespaces, the router is `nosd` running in a
//! namespace of its own. Everything a lab creates is removed when it is dropped,
//! including the processes it started. Namespaces get no route out and use only
//! documentation address ranges.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A set of namespaces and processes, torn down on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: PathBuf,
}

/// Runs a command and fails with its stderr when it fails.
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

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Lab {
    /// A lab whose namespace and interface names start with `prefix` (keep it to
    /// 6 characters or fewer: interface names are limited to 15).
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        if !have("ip") {
            bail!("the `ip` command (iproute2) is required to build a lab");
        }
        let dir = std::env::temp_dir().join(format!("{prefix}-lab"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            prefix: prefix.to_string(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        })
    }

    /// The full name of a namespace or interface of this lab.
    pub fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Creates a namespace with `lo` up; returns its full name.
    pub fn netns(&mut self, short: &str) -> anyhow::Result<String> {
        let ns = self.name(short);
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a veth pair with one end in each namespace, both up.
    pub fn veth(&mut self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> anyhow::Result<()> {
        run(
            "ip",
            &["link", "add", if_a, "type", "veth", "peer", "name", if_b],
        )?;
        run("ip", &["link", "set", if_a, "netns", ns_a])?;
        run("ip", &["link", "set", if_b, "netns", ns_b])?;
        run("ip", &["-n", ns_a, "link", "set", if_a, "up"])?;
        run("ip", &["-n", ns_b, "link", "set", if_b, "up"])?;
        Ok(())
    }

    /// Runs a command inside a namespace and returns its output (success or not).
    pub fn exec(&self, ns: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(args);
        Command::new("ip")
            .args(&full)
            .output()
            .with_context(|| format!("cannot run {} in {ns}", args.join(" ")))
    }

    /// Like [`Lab::exec`] but fails when the command fails.
    pub fn must(&self, ns: &str, args: &[&str]) -> anyhow::Result<Output> {
        let out = self.exec(ns, args)?;
        if !out.status.success() {
            bail!(
                "`{}` in {ns} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Starts a long-running process in a namespace; it is killed when the lab drops.
    pub fn spawn(
        &mut self,
        ns: &str,
        program: &Path,
        args: &[&str],
        log: &Path,
    ) -> anyhow::Result<()> {
        let logf = std::fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        self.children.push(child);
        Ok(())
    }

    /// Sends SIGTERM to the processes this lab started and waits up to `timeout`
    /// for each; returns whether all exited successfully.
    pub fn stop_children(&mut self, timeout: Duration) -> bool {
        let mut ok = true;
        for mut c in self.children.drain(..) {
            // SIGTERM through kill(1) keeps this crate free of unsafe code.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(st)) => {
                        ok &= st.success();
                        break;
                    }
                    Ok(None) if start.elapsed() < timeout => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        ok = false;
                        break;
                    }
                }
            }
        }
        ok
    }

    /// Turns kernel forwarding off in a namespace, so packets crossing it provably
    /// go through the NOS dataplane.
    pub fn kernel_forwarding_off(&self, ns: &str) -> anyhow::Result<()> {
        for s in ["net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"] {
            self.must(ns, &["sysctl", "-qw", s])?;
        }
        Ok(())
    }

    /// Turns off checksum and segmentation offloads on a host's interface, so its
    /// TCP segments are real frames of at most the MTU (as on a physical wire).
    pub fn offloads_off(&self, ns: &str, ifname: &str) -> anyhow::Result<()> {
        if !have("ethtool") {
            bail!("ethtool is required to turn off veth offloads (apt-get install ethtool)");
        }
        self.must(
            ns,
            &[
                "ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ],
        )?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        // A failed test leaves its logs behind for whoever reads its output.
        if std::thread::panicking() || std::env::var_os("NOS_KEEP_LAB").is_some() {
            eprintln!("lab files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The topology of the demo and the end-to-end test:
///
/// ```text
///  host A ──veth── [eth1  router (nosd)  eth2] ──veth── host B
///  192.0.2.2/24         192.0.2.1/24 198.51.100.1/24      198.51.100.2/24
///  2001:db8:1::2/64            eth3.100                     2001:db8:2::2/64
///                          198.18.0.1/24                    lo: 203.0.113.1, 2001:db8:99::1
///                               │ veth, VLAN 100 tagged
///                             host C 198.18.0.2 (a user-space responder; see `TwoHosts`)
/// ```
/// The router reaches 203.0.113.0/24 and 2001:db8:99::/64 by static routes via host B.
#[derive(Debug)]
pub struct TwoHosts {
    pub lab: Lab,
    pub host_a: String,
    pub host_b: String,
    pub host_c: String,
    /// Host C's end of its link to the router (eth3, VLAN 100 tagged).
    pub host_c_if: String,
    pub router: String,
    pub socket: PathBuf,
    pub config_with_route: PathBuf,
    pub config_without_route: PathBuf,
}

pub const B_FAR_V4: &str = "203.0.113.1";
pub const B_FAR_V6: &str = "2001:db8:99::1";
pub const B_NEAR_V4: &str = "198.51.100.2";
pub const A_V4: &str = "192.0.2.2";
/// Host C sits behind the router's sub-port eth3.100 (802.1Q VLAN 100).
pub const C_V4: &str = "198.18.0.2";
pub const C_VLAN: u16 = 100;

/// The router's configuration in [`TwoHosts`]; `acl` adds the rules under `acl:`.
pub fn two_hosts_config(
    port_a: &str,
    port_b: &str,
    port_c: &str,
    static_routes: bool,
    acl: &str,
) -> String {
    let mut c = format!(
        r#"system:
  hostname: lab-router
ports:
  - name: eth1
    linux: {port_a}
  - name: eth2
    linux: {port_b}
  - name: eth3
    linux: {port_c}
interfaces:
  - name: eth1
    port: eth1
    ipv4: [192.0.2.1/24]
    ipv6: ["2001:db8:1::1/64"]
  - name: eth2
    port: eth2
    ipv4: [198.51.100.1/24]
    ipv6: ["2001:db8:2::1/64"]
  - name: eth3.100
    port: eth3
    vlan: 100
    ipv4: [198.18.0.1/24]
    ipv6: ["2001:db8:3::1/64"]
"#
    );
    if static_routes {
        c.push_str(
            r#"static_routes:
  - prefix: 203.0.113.0/24
    next_hops: [{ address: 198.51.100.2 }]
  - prefix: "2001:db8:99::/64"
    next_hops: [{ address: "2001:db8:2::2" }]
"#,
        );
    }
    if !acl.is_empty() {
        c.push_str("acl:\n");
        c.push_str(acl);
    }
    c
}

impl TwoHosts {
    /// Builds the namespaces and veths and starts `nosd` (the binary at `nosd`) in
    /// the router namespace with the static routes configured; waits until its
    /// management socket answers.
    pub fn start(prefix: &str, nosd: &Path, acl: &str) -> anyhow::Result<Self> {
        Self::start_with(prefix, nosd, acl, |_| String::new())
    }

    /// Like [`TwoHosts::start`], with a `dataplane:` section in the router's
    /// configuration: `dataplane` gets the router's three port interfaces
    /// (to A, B and C) and returns the section (empty for the defaults).
    pub fn start_with(
        prefix: &str,
        nosd: &Path,
        acl: &str,
        dataplane: impl Fn([&str; 3]) -> String,
    ) -> anyhow::Result<Self> {
        let mut lab = Lab::new(prefix)?;
        let host_a = lab.netns("a")?;
        let host_b = lab.netns("b")?;
        let host_c = lab.netns("c")?;
        let router = lab.netns("r")?;
        let (ia, ra, ib, rb) = (
            lab.name("ha"),
            lab.name("r1"),
            lab.name("hb"),
            lab.name("r2"),
        );
        let (ic, rc) = (lab.name("hc"), lab.name("r3"));
        lab.veth(&host_a, &ia, &router, &ra)?;
        lab.veth(&host_b, &ib, &router, &rb)?;
        // Host C is reached over 802.1Q VLAN 100. Kernels without VLAN devices
        // exist (this project's CI machine is one), so the host on that link is a
        // user-space responder the caller runs in `host_c` on `host_c_if`.
        lab.veth(&host_c, &ic, &router, &rc)?;
        lab.kernel_forwarding_off(&router)?;
        // The router's ports carry no kernel addresses; keep the kernel's IPv6 off them.
        for port in [&ra, &rb, &rc] {
            lab.must(
                &router,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{port}.disable_ipv6=1"),
                ],
            )?;
        }
        for (ns, ifname, v4, v6, gw4, gw6) in [
            (
                &host_a,
                &ia,
                "192.0.2.2/24",
                "2001:db8:1::2/64",
                "192.0.2.1",
                "2001:db8:1::1",
            ),
            (
                &host_b,
                &ib,
                "198.51.100.2/24",
                "2001:db8:2::2/64",
                "198.51.100.1",
                "2001:db8:2::1",
            ),
        ] {
            lab.must(ns, &["ip", "addr", "add", v4, "dev", ifname])?;
            lab.must(ns, &["ip", "-6", "addr", "add", v6, "dev", ifname, "nodad"])?;
            lab.must(ns, &["ip", "route", "add", "default", "via", gw4])?;
            lab.must(ns, &["ip", "-6", "route", "add", "default", "via", gw6])?;
            if have("ethtool") {
                lab.offloads_off(ns, ifname)?;
            }
        }
        lab.must(
            &host_b,
            &["ip", "addr", "add", "203.0.113.1/32", "dev", "lo"],
        )?;
        lab.must(
            &host_b,
            &["ip", "-6", "addr", "add", "2001:db8:99::1/128", "dev", "lo"],
        )?;

        let with = lab.dir.join("router.yaml");
        let without = lab.dir.join("router-no-static.yaml");
        let dp = dataplane([&ra, &rb, &rc]);
        std::fs::write(
            &with,
            format!("{dp}{}", two_hosts_config(&ra, &rb, &rc, true, acl)),
        )?;
        std::fs::write(
            &without,
            format!("{dp}{}", two_hosts_config(&ra, &rb, &rc, false, acl)),
        )?;
        let socket = lab.dir.join("nosd.sock");
        let state = lab.dir.join("state");
        let log = lab.dir.join("nosd.log");
        lab.spawn(
            &router,
            nosd,
            &[
                "run",
                "--config",
                &with.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
                "--socket",
                &socket.to_string_lossy(),
                "--log-level",
                "info,routing=debug",
            ],
            &log,
        )?;
        let start = Instant::now();
        while crate::client::call(&socket, &crate::api::Request::ConfigHistory).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                let l = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("nosd did not come up within 10 s; its log:\n{l}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            lab,
            host_a,
            host_b,
            host_c,
            host_c_if: ic,
            router,
            socket,
            config_with_route: with,
            config_without_route: without,
        })
    }

    /// nosd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.lab.dir.join("nosd.log")).unwrap_or_default()
    }

    /// Pings `dst` from `ns` (`count` echo requests, 0.2 s apart); whether any answer came.
    pub fn ping(&self, ns: &str, dst: &str, count: u32) -> anyhow::Result<bool> {
        let c = count.to_string();
        let out = self
            .lab
            .exec(ns, &["ping", "-c", &c, "-i", "0.2", "-W", "1", dst])?;
        Ok(out.status.success())
    }

    /// Pings until an answer comes or `within` passes (the first packets may wait
    /// for neighbor resolution).
    pub fn ping_until(&self, ns: &str, dst: &str, within: Duration) -> anyhow::Result<bool> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.ping(ns, dst, 1)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
