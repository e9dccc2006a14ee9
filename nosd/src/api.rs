//! The local management API between `nosd` and `nosctl`: one JSON request per
//! line on a Unix socket, one JSON response per line back.

use nos_core::config::ConfigError;
use nos_core::store::CommitInfo;
use serde::{Deserialize, Serialize};

/// The default path of the management socket.
pub const DEFAULT_SOCKET: &str = "/run/nosd/nosd.sock";

/// A request from `nosctl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    ShowInterfaces,
    ShowRoutes,
    ShowFib,
    ShowNeighbors,
    ShowCounters,
    ShowBgpSummary,
    ShowBgpNeighbor {
        address: std::net::IpAddr,
    },
    /// BGP paths, all or those inside a prefix.
    ShowBgpRoutes {
        prefix: Option<ipnet::IpNet>,
    },
    /// The configuration of a commit (default: the newest).
    ShowConfig {
        commit: Option<u64>,
    },
    ConfigCommit {
        yaml: String,
        message: Option<String>,
    },
    ConfigHistory,
    ConfigDiff {
        from: u64,
        to: u64,
    },
    ConfigRollback {
        commit: u64,
        message: Option<String>,
    },
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok {
        data: serde_json::Value,
    },
    Error {
        message: String,
        /// For configuration errors: each field path and what is wrong with it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<ConfigError>,
    },
}

impl Response {
    pub fn ok<T: Serialize>(v: &T) -> Response {
        match serde_json::to_value(v) {
            Ok(data) => Response::Ok { data },
            Err(e) => Response::error(format!("cannot encode the answer: {e}")),
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
            errors: Vec::new(),
        }
    }
}

/// A port with its counters (`show interfaces`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    pub name: String,
    pub linux: String,
    pub admin_up: bool,
    /// Installed in the target (its Linux interface exists and was opened).
    pub installed: bool,
    pub mtu: u32,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_drops: u64,
    pub tx_drops: u64,
}

/// A router interface (`show interfaces`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRow {
    pub name: String,
    /// `port eth1`, `vlan 10 (eth3, eth4 tagged)`, `eth2 vlan 100`.
    pub on: String,
    pub vrf: String,
    pub mac: String,
    pub mtu: u32,
    pub admin_up: bool,
    pub installed: bool,
    pub addresses: Vec<String>,
}

/// `show interfaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interfaces {
    pub ports: Vec<PortRow>,
    pub interfaces: Vec<InterfaceRow>,
}

/// A RIB route (`show routes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    pub vrf: String,
    pub prefix: String,
    pub protocol: String,
    pub distance: u8,
    /// `198.51.100.2 via eth2 (weight 1)`, `directly connected, eth1`, `blackhole`.
    pub next_hops: Vec<String>,
}

/// An installed forwarding entry (`show fib`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibRow {
    pub vrf: String,
    pub prefix: String,
    /// `forward`, `ecmp`, `drop`, `cpu`.
    pub action: String,
    /// Per next hop: `198.51.100.2 eth2 02:..:..` or `... unresolved`.
    pub next_hops: Vec<String>,
}

/// A neighbor (`show neighbors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborRow {
    pub address: String,
    pub mac: Option<String>,
    pub interface: String,
    pub port: Option<String>,
    pub state: String,
    pub age_s: Option<u64>,
    /// Installed in the target.
    pub installed: bool,
}

/// `config commit` and `config rollback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub commit: CommitInfo,
    /// Forwarding changes this commit caused in the desired state are applied
    /// asynchronously; this says whether the configuration differs from the previous commit.
    pub changed: bool,
}

/// `show config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownConfig {
    pub commit: Option<CommitInfo>,
    pub yaml: String,
}
