//! The router's host interface: a TUN device holding the router's addresses in
//! the kernel, so its own traffic (BGP sessions, pings to the router) uses the
//! kernel's IP stack while forwarding stays in the NOS dataplane.
//!
//! One task owns the device: it moves packets between the TUN and the host stack
//! and keeps the device's addresses equal to those of the committed config
//! (default VRF).

use anyhow::Context;
use dataplane::tun::TunDevice;
use ipnet::IpNet;
use nos_core::config::{Config, DEFAULT_VRF};
use routing::host::KernelPath;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Creates the device and starts its task; returns the host stack's side.
pub fn start(
    name: &str,
    mut config: watch::Receiver<Config>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<KernelPath> {
    let tun = TunDevice::create(name)?;
    // IPv6 may be disabled by default in a lab namespace; the host interface needs it.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "0");
    ip(&["link", "set", "dev", name, "mtu", "9216", "up"])?;
    let tun = Arc::new(tun);
    let (to_kernel, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    let (tx, from_kernel) = mpsc::channel::<Vec<u8>>(1024);
    // Reads block, so they get a thread of their own; it ends with the process.
    let reader = tun.clone();
    std::thread::Builder::new()
        .name("hostif-rx".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match reader.recv(&mut buf) {
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            tun = reader.name(),
                            "read failed, host interface stopped: {e}"
                        );
                        return;
                    }
                }
            }
        })?;
    let name = name.to_string();
    tokio::spawn(async move {
        let mut have: BTreeSet<IpNet> = BTreeSet::new();
        let mut routes: BTreeSet<IpNet> = BTreeSet::new();
        let first = config.borrow_and_update().clone();
        sync_addresses(&name, &first, &mut have);
        sync_routes(&name, &first, &mut routes);
        loop {
            tokio::select! {
                Some(p) = rx.recv() => {
                    if let Err(e) = tun.send(&p) {
                        tracing::debug!(tun = %name, "write to the kernel failed: {e}");
                    }
                }
                r = config.changed() => {
                    if r.is_err() { break; }
                    let c = config.borrow_and_update().clone();
                    sync_addresses(&name, &c, &mut have);
                    sync_routes(&name, &c, &mut routes);
                }
                _ = shutdown.changed() => break,
            }
        }
    });
    Ok(KernelPath {
        to_kernel,
        from_kernel,
    })
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2) to configure the host interface")?;
    if !out.status.success() {
        anyhow::bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Gives the kernel a route into the host interface for every static route of
/// the default VRF, so the router's own traffic reaches destinations beyond
/// its subnets (an eBGP multihop peer's loopback); the host stack hands such
/// packets to the forwarding pipeline.
fn sync_routes(name: &str, config: &Config, have: &mut BTreeSet<IpNet>) {
    let want: BTreeSet<IpNet> = config
        .static_routes
        .iter()
        .filter(|r| r.vrf_name() == DEFAULT_VRF && !r.blackhole)
        .map(|r| r.prefix)
        .collect();
    for r in have.difference(&want) {
        if let Err(e) = ip(&["route", "del", &r.to_string(), "dev", name]) {
            tracing::warn!("host interface: {e}");
        }
    }
    for r in want.difference(have) {
        if let Err(e) = ip(&["route", "replace", &r.to_string(), "dev", name]) {
            tracing::warn!("host interface: {e}");
        }
    }
    *have = want;
}

/// Makes the device's addresses those of the default VRF's interfaces.
fn sync_addresses(name: &str, config: &Config, have: &mut BTreeSet<IpNet>) {
    let want: BTreeSet<IpNet> = config
        .interfaces
        .iter()
        .filter(|i| i.vrf_name() == DEFAULT_VRF && i.enabled)
        .flat_map(|i| i.addresses())
        .collect();
    for a in have.difference(&want) {
        if let Err(e) = ip(&["addr", "del", &a.to_string(), "dev", name]) {
            tracing::warn!("host interface: {e}");
        }
    }
    for a in want.difference(have) {
        let s = a.to_string();
        let mut args = vec!["addr", "replace", s.as_str(), "dev", name];
        if matches!(a, IpNet::V6(_)) {
            args.push("nodad");
        }
        if let Err(e) = ip(&args) {
            tracing::warn!("host interface: {e}");
        }
    }
    tracing::debug!(
        tun = name,
        addresses = want.len(),
        "host interface addresses in step with the config"
    );
    *have = want;
}
