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
        "Codes: L - local, C - connected, N - neighbor host route, S - static\n\n{}",
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
}
