//! Plain-text tables for `nosctl`.

use crate::api::*;
use nos_core::store::CommitInfo;

/// Formats rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<width$}  ", c, width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn yn(b: bool) -> String {
    if b { "up" } else { "down" }.to_string()
}

pub fn interfaces(i: &Interfaces) -> String {
    let ports: Vec<Vec<String>> = i
        .ports
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.linux.clone(),
                yn(p.admin_up),
                if p.installed { "yes" } else { "no" }.into(),
                p.mtu.to_string(),
                p.rx_packets.to_string(),
                p.tx_packets.to_string(),
                p.rx_drops.to_string(),
                p.tx_drops.to_string(),
            ]
        })
        .collect();
    let rifs: Vec<Vec<String>> = i
        .interfaces
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.on.clone(),
                r.vrf.clone(),
                yn(r.admin_up),
                r.mac.clone(),
                r.mtu.to_string(),
                r.addresses.join(", "),
            ]
        })
        .collect();
    format!(
        "Ports\n{}\nRouter interfaces\n{}",
        table(
            &[
                "Port",
                "Linux",
                "Admin",
                "Installed",
                "MTU",
                "RxPkts",
                "TxPkts",
                "RxDrops",
                "TxDrops"
            ],
            &ports
        ),
        table(
            &["Interface", "On", "VRF", "Admin", "MAC", "MTU", "Addresses"],
            &rifs
        )
    )
}

pub fn routes(r: &[RouteRow]) -> String {
    let code = |p: &str| match p {
        "local" => "L",
        "connected" => "C",
        "neighbor" => "N",
        "static" => "S",
        "ebgp" | "ibgp" => "B",
        _ => "?",
    };
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|x| {
            vec![
                code(&x.protocol).to_string(),
                x.vrf.clone(),
                x.prefix.clone(),
                format!("[{}]", x.distance),
                x.next_hops.join("; "),
            ]
        })
        .collect();
    format!(
        "Codes: L - local, C - connected, N - neighbor host route, S - static, B - BGP\n\n{}",
        table(&["", "VRF", "Prefix", "Dist", "Next hops"], &rows)
    )
}

pub fn fib(r: &[FibRow]) -> String {
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|x| {
            vec![
                x.vrf.clone(),
                x.prefix.clone(),
                x.action.clone(),
                x.next_hops.join("; "),
            ]
        })
        .collect();
    table(
        &[
            "VRF",
            "Prefix",
            "Action",
            "Next hops (address interface MAC)",
        ],
        &rows,
    )
}

pub fn neighbors(r: &[NeighborRow]) -> String {
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|x| {
            vec![
                x.address.clone(),
                x.mac.clone().unwrap_or_else(|| "-".into()),
                x.interface.clone(),
                x.port.clone().unwrap_or_else(|| "-".into()),
                x.state.clone(),
                x.age_s
                    .map(|a| format!("{a}s"))
                    .unwrap_or_else(|| "-".into()),
                if x.installed { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    table(
        &[
            "Address",
            "MAC",
            "Interface",
            "Port",
            "State",
            "Age",
            "Installed",
        ],
        &rows,
    )
}

pub fn history(h: &[CommitInfo]) -> String {
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|c| {
            vec![
                c.number.to_string(),
                c.timestamp.clone(),
                c.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["Commit", "Time (UTC)", "Message"], &rows)
}

pub fn counters(c: &[(String, u64)]) -> String {
    let rows: Vec<Vec<String>> = c
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(n, v)| vec![n.clone(), v.to_string()])
        .collect();
    table(&["Counter", "Value"], &rows)
}

/// `show bgp summary`, with FRR's columns.
pub fn bgp_summary(s: &routing::bgp::speaker::Summary) -> String {
    let rows: Vec<Vec<String>> = s
        .neighbors
        .iter()
        .map(|n| {
            let state = if n.state == "Established" {
                n.accepted.to_string()
            } else {
                n.state.clone()
            };
            vec![
                n.address.to_string(),
                "4".into(),
                n.remote_as.to_string(),
                uptime(n.state_for_s),
                state,
                n.advertised.to_string(),
                n.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "BGP router identifier {}, local AS number {}\nLoc-RIB prefixes {}\n\n{}",
        s.router_id,
        s.asn,
        s.loc_rib_prefixes,
        table(
            &[
                "Neighbor",
                "V",
                "AS",
                "Up/Down",
                "State/PfxRcd",
                "PfxSnt",
                "Desc"
            ],
            &rows
        )
    )
}

/// `show bgp neighbor ADDR`.
pub fn bgp_neighbor(n: &routing::bgp::speaker::NeighborSummary) -> String {
    let mut out = format!(
        "BGP neighbor is {}, remote AS {}{}\n  BGP state = {}, for {}\n",
        n.address,
        n.remote_as,
        n.description
            .as_ref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        n.state,
        uptime(n.state_for_s)
    );
    if let Some(id) = &n.router_id {
        out.push_str(&format!(
            "  Remote router ID {id}, hold time {} s\n",
            n.hold_time_s.unwrap_or(0)
        ));
    }
    out.push_str(&format!(
        "  Address families: {}\n  Prefixes received {}, accepted {}, advertised {}\n  Import policy: {}, export policy: {}\n",
        if n.families.is_empty() { "-".into() } else { n.families.join(", ") },
        n.received,
        n.accepted,
        n.advertised,
        n.import_policy.as_deref().unwrap_or("none (eBGP: accept nothing, RFC 8212)"),
        n.export_policy.as_deref().unwrap_or("none (eBGP: announce nothing, RFC 8212)"),
    ));
    if let Some(gr) = &n.graceful_restart {
        let mut line = String::from("  Graceful restart:");
        if let Some(t) = gr.restart_time_s {
            line.push_str(&format!(" peer's restart time {t} s"));
            line.push_str(&if gr.preserved.is_empty() {
                ", no forwarding kept while it restarts".to_string()
            } else {
                format!(", forwarding kept for {}", gr.preserved.join(", "))
            });
            if gr.peer_restarted {
                line.push_str(", peer has just restarted");
            }
            line.push_str(if gr.notification {
                ", notification (RFC 8538) on"
            } else {
                ", notification (RFC 8538) off"
            });
        }
        if gr.stale_routes > 0 {
            line.push_str(&format!(
                "{}{} stale routes kept until its End-of-RIB",
                if gr.restart_time_s.is_some() {
                    "; "
                } else {
                    " "
                },
                gr.stale_routes
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(e) = &n.last_error {
        out.push_str(&format!("  Last reset: {e}\n"));
    }
    out
}

/// `show bgp routes`, with FRR's columns.
pub fn bgp_routes(r: &[routing::bgp::speaker::RouteRow]) -> String {
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|x| {
            vec![
                format!(
                    "*{}",
                    if x.best {
                        ">"
                    } else if x.multipath {
                        "="
                    } else {
                        " "
                    }
                ),
                x.prefix.clone(),
                x.next_hop.clone(),
                x.med.map(|m| m.to_string()).unwrap_or_default(),
                x.local_pref.to_string(),
                format!("{} {}", x.as_path, x.origin).trim().to_string(),
            ]
        })
        .collect();
    format!(
        "Status codes: * valid, > best, = multipath\n\n{}",
        table(
            &["", "Network", "Next Hop", "Metric", "LocPrf", "Path"],
            &rows
        )
    )
}

fn uptime(s: u64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(
            &["A", "Long header"],
            &[
                vec!["xxxx".into(), "1".into()],
                vec!["y".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A     Long header\nxxxx  1\ny     22\n");
    }

    #[test]
    fn a_neighbor_shows_its_graceful_restart() {
        let mut n: routing::bgp::speaker::NeighborSummary =
            serde_json::from_value(serde_json::json!({
                "address": "198.51.100.2", "remote_as": 64501, "description": null,
                "state": "Established", "state_for_s": 5, "router_id": "198.51.100.2",
                "hold_time_s": 9, "families": ["ipv4-unicast"], "received": 1, "accepted": 1,
                "advertised": 0, "import_policy": "in", "export_policy": "out", "last_error": null,
                "graceful_restart": { "restart_time_s": 120, "preserved": ["ipv4-unicast"],
                    "peer_restarted": true, "notification": true, "stale_routes": 0 }
            }))
            .unwrap();
        let out = bgp_neighbor(&n);
        assert!(
            out.contains("Graceful restart: peer's restart time 120 s, forwarding kept for ipv4-unicast, peer has just restarted, notification (RFC 8538) on"),
            "{out}"
        );
        n.graceful_restart = Some(routing::bgp::speaker::GracefulRestartInfo {
            restart_time_s: None,
            preserved: vec![],
            peer_restarted: false,
            notification: false,
            stale_routes: 42,
        });
        assert!(
            bgp_neighbor(&n)
                .contains("Graceful restart: 42 stale routes kept until its End-of-RIB"),
            "{}",
            bgp_neighbor(&n)
        );
    }
}
