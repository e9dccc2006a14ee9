//! `nosd demo`: builds a two-host lab, starts the router on the x86 dataplane
//! and shows traffic crossing it, then cleans up.

use crate::api::{Request, Response};
use crate::lab::{TwoHosts, A_V4, B_FAR_V4, B_FAR_V6, B_NEAR_V4};
use crate::{client, render};
use std::time::Duration;

fn show(socket: &std::path::Path, req: Request) -> anyhow::Result<serde_json::Value> {
    match client::call(socket, &req)? {
        Response::Ok { data } => Ok(data),
        Response::Error { message, .. } => anyhow::bail!("{message}"),
    }
}

/// Runs the demo; with `keep`, leaves the lab running until Ctrl-C.
pub fn run(keep: bool) -> anyhow::Result<()> {
    if !nix_root() {
        anyhow::bail!("the demo creates network namespaces and needs root (try: sudo nosd demo)");
    }
    let me = std::env::current_exe()?;
    let prefix = format!("nd{}", std::process::id() % 10000);
    println!("Building the lab: host A ({A_V4}) -- router (nosd, x86 dataplane) -- host B ({B_NEAR_V4}, {B_FAR_V4} behind a static route)");
    let lab = TwoHosts::start(&prefix, &me, "")?;
    println!("Kernel forwarding is off in the router namespace: every packet below crosses the NOS dataplane.\n");
    let mut all_ok = true;
    for (what, dst) in [
        ("connected subnet", B_NEAR_V4),
        ("static route, IPv4", B_FAR_V4),
        ("static route, IPv6", B_FAR_V6),
    ] {
        let ok = lab.ping_until(&lab.host_a, dst, Duration::from_secs(5))?;
        let out = lab
            .lab
            .exec(&lab.host_a, &["ping", "-c", "3", "-i", "0.2", dst])?;
        let ok = ok && out.status.success();
        all_ok &= ok;
        println!(
            "== host A pings {dst} ({what}): {}",
            if ok { "OK" } else { "FAILED" }
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
        println!();
    }
    let routes: Vec<crate::api::RouteRow> =
        serde_json::from_value(show(&lab.socket, Request::ShowRoutes)?)?;
    println!("== nosctl show routes\n{}", render::routes(&routes));
    let n: Vec<crate::api::NeighborRow> =
        serde_json::from_value(show(&lab.socket, Request::ShowNeighbors)?)?;
    println!("== nosctl show neighbors\n{}", render::neighbors(&n));
    let i: crate::api::Interfaces =
        serde_json::from_value(show(&lab.socket, Request::ShowInterfaces)?)?;
    println!("== nosctl show interfaces\n{}", render::interfaces(&i));
    if keep {
        println!(
            "The lab stays up until Ctrl-C. Try:\n  nosctl --socket {} show fib\n  ip netns exec {} ping {B_FAR_V4}",
            lab.socket.display(),
            lab.host_a
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(tokio::signal::ctrl_c())?;
    }
    println!("Cleaning up the lab.");
    drop(lab);
    if !all_ok {
        anyhow::bail!("some pings failed");
    }
    Ok(())
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
