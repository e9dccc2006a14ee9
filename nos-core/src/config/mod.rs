//! The configuration document (YAML) and its validation.
//!
//! The document is what operators write and what the store keeps, commit by
//! commit. Every struct refuses unknown fields, so a typo is an error that names
//! the field's path, never a silently ignored setting.

use crate::mac::MacAddr;
use crate::model::AclStage;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

mod validate;

pub use validate::{
    as_path_regex, parse_community, parse_large_community, parse_masked_mac, parse_protocol,
    password_hash_format,
};
pub use validate::{ConfigError, ConfigErrors};

/// The whole configuration of one router.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub system: SystemConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrfs: Vec<VrfConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_routes: Vec<StaticRouteConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclRuleConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpConfig>,
    #[serde(default, skip_serializing_if = "ManagementConfig::is_empty")]
    pub management: ManagementConfig,
}

/// Management access (the gNMI/gNOI server): who may use it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Users allowed to manage the router over gNMI/gNOI, which send their
    /// name and password as the `username` and `password` request metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserConfig>,
}

impl ManagementConfig {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A management user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// The password's hash, never the password: an Argon2 PHC string
    /// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`, what `nosctl
    /// hash-password` prints) or a SHA-512 crypt string (`$6$salt$hash`, as in
    /// /etc/shadow or `mkpasswd -m sha-512`).
    pub password_hash: String,
}

/// System-wide settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// The router MAC used by every interface that sets none of its own. When absent,
    /// a locally administered address is derived from the hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_mac: Option<MacAddr>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            hostname: default_hostname(),
            router_mac: None,
        }
    }
}

fn default_hostname() -> String {
    "nos".into()
}

/// Which forwarding target `nosd` drives, and how the x86 dataplane runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    #[serde(default)]
    pub backend: BackendKind,
    /// Forwarding workers (threads, one per core) of the x86 dataplane,
    /// 1..=64 (default 1). Each polls its share of every port's queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u16>,
    /// DPDK: its EAL arguments and the ports it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpdk: Option<DpdkConfig>,
    /// The P4Runtime target `backend: p4runtime` programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p4runtime: Option<P4RuntimeTargetConfig>,
}

/// A P4Runtime target (a P4 switch, bmv2 `simple_switch_grpc`, or
/// `nos-p4rt-target`) running the nos.p4 program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P4RuntimeTargetConfig {
    /// The target's gRPC server: `host:port` (`[v6]:port` for an IPv6
    /// address) or `unix:/path` (a Unix socket).
    pub address: String,
    /// The device id the target serves (default 1).
    #[serde(default = "default_device_id")]
    pub device_id: u64,
    /// A fixed election id (at least 1). Absent: the wall clock in
    /// microseconds at connect, so a restarted controller's ids keep
    /// increasing and it takes over from its previous self.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_id: Option<u64>,
    /// The controller's role (absent: the default role, full access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A P4Info file (text format) to push instead of the nos.p4 P4Info
    /// built into nosd; nosd refuses to start when it lacks anything the
    /// compiler needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p4info: Option<String>,
    /// The device config file pushed with the P4Info (bmv2: p4c's JSON);
    /// absent: empty (`nos-p4rt-target` needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_config: Option<String>,
    /// P4 port numbers of ports. A port not listed here is P4 port
    /// 1 + its position under `ports` (the first port is 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<P4PortConfig>,
}

fn default_device_id() -> u64 {
    1
}

/// The P4 port number (`standard_metadata.ingress_port`) of a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P4PortConfig {
    /// The port's name (under `ports`).
    pub port: String,
    /// 1..=510; 255 is the CPU port.
    pub number: u32,
}

impl DataplaneConfig {
    /// The number of forwarding workers.
    pub fn worker_count(&self) -> u16 {
        self.workers.unwrap_or(1)
    }

    /// The EAL arguments (empty: the dataplane's defaults, which need no
    /// hugepages and no NICs).
    pub fn eal_args(&self) -> &[String] {
        self.dpdk
            .as_ref()
            .map(|d| d.eal_args.as_slice())
            .unwrap_or(&[])
    }
}

/// DPDK: how its EAL starts and which ports it carries. A port listed here
/// gets its packets from a DPDK device; every other port uses an AF_PACKET
/// socket on its Linux interface. (The choice lives here, not under `ports`,
/// so that the ports keep the shape the OpenConfig interface model gives them.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    /// Arguments of DPDK's EAL, e.g. `[--no-huge, --no-pci, -m, "512",
    /// --no-shconf]`. Empty or absent: those plus `--no-telemetry -l 0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eal_args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<DpdkPortConfig>,
}

/// A port whose packet I/O is a DPDK device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkPortConfig {
    /// The port's name (under `ports`).
    pub port: String,
    /// The DPDK device string: a virtual device and its arguments
    /// (`net_af_packet0,iface=veth1`, `net_memif0,role=server`, `net_null0`).
    /// Default: `net_af_packet<i>,iface=<linux>`, with `<i>` the entry's
    /// position in this list and `<linux>` the port's Linux interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Config {
    /// The DPDK device string of port `name`, when DPDK carries it.
    pub fn dpdk_device(&self, name: &str) -> Option<String> {
        let dpdk = self.dataplane.dpdk.as_ref()?;
        let i = dpdk.ports.iter().position(|p| p.port == name)?;
        self.dpdk_entry_device(i)
    }

    /// The device string of entry `i` of `dataplane.dpdk.ports`.
    pub fn dpdk_entry_device(&self, i: usize) -> Option<String> {
        let entry = self.dataplane.dpdk.as_ref()?.ports.get(i)?;
        Some(match &entry.device {
            Some(d) => d.clone(),
            None => {
                let linux = self
                    .ports
                    .iter()
                    .find(|p| p.name == entry.port)
                    .map(|p| p.linux_name())
                    .unwrap_or(&entry.port);
                format!("net_af_packet{i},iface={linux}")
            }
        })
    }

    /// The P4 port number of port `name` under the P4Runtime backend:
    /// its `dataplane.p4runtime.ports` entry, or 1 + its position under
    /// `ports`. `None`: no such port.
    pub fn p4_port(&self, name: &str) -> Option<u32> {
        let listed = self
            .dataplane
            .p4runtime
            .as_ref()
            .and_then(|p| p.ports.iter().find(|e| e.port == name));
        match listed {
            Some(e) => Some(e.number),
            None => {
                let i = self.ports.iter().position(|p| p.name == name)?;
                u32::try_from(i + 1).ok()
            }
        }
    }

    /// Whether any port is carried by DPDK.
    pub fn uses_dpdk(&self) -> bool {
        self.dataplane
            .dpdk
            .as_ref()
            .is_some_and(|d| !d.ports.is_empty())
    }
}

/// The forwarding targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The in-process x86 software dataplane (AF_PACKET packet I/O).
    #[default]
    X86,
    /// A P4Runtime target (`dataplane.p4runtime`), programmed over gRPC;
    /// ARP, ND and the router's own traffic reach the control plane by
    /// packet-in and leave by packet-out.
    #[serde(rename = "p4runtime")]
    P4Runtime,
}

/// A port and the Linux interface it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// The Linux network interface carrying this port's packets (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<String>,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl PortConfig {
    /// The Linux interface name this port uses.
    pub fn linux_name(&self) -> &str {
        self.linux.as_deref().unwrap_or(&self.name)
    }
}

fn default_mtu() -> u32 {
    1500
}

fn yes() -> bool {
    true
}

/// A VRF besides `default`, which always exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrfConfig {
    pub name: String,
}

/// A VLAN and its member ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanConfig {
    pub id: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ports that carry this VLAN untagged (access ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untagged: Vec<String>,
    /// Ports that carry this VLAN with an 802.1Q tag (trunk ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tagged: Vec<String>,
}

/// A router interface: on a port (`port`), on a sub-port (`port` and `vlan`), or
/// on a VLAN (`vlan` only, which must be listed under `vlans`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The VRF (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Addresses with their prefix length, e.g. `192.0.2.1/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4: Vec<Ipv4Net>,
    /// Addresses with their prefix length, e.g. `2001:db8:1::1/64`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Net>,
}

impl InterfaceConfig {
    pub fn vrf_name(&self) -> &str {
        self.vrf.as_deref().unwrap_or(DEFAULT_VRF)
    }

    /// All addresses, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.ipv4
            .iter()
            .map(|n| IpNet::V4(*n))
            .chain(self.ipv6.iter().map(|n| IpNet::V6(*n)))
    }
}

/// The name of the VRF that always exists.
pub const DEFAULT_VRF: &str = "default";

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRouteConfig {
    pub prefix: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    /// Next hops; more than one makes a weighted (ECMP) group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_hops: Vec<StaticNextHop>,
    /// Drop matching packets (a null route). Exclusive with `next_hops`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub blackhole: bool,
    /// Administrative distance (default 1).
    #[serde(default = "default_static_distance")]
    pub distance: u8,
}

impl StaticRouteConfig {
    pub fn vrf_name(&self) -> &str {
        self.vrf.as_deref().unwrap_or(DEFAULT_VRF)
    }
}

fn default_static_distance() -> u8 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One next hop of a static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNextHop {
    pub address: IpAddr,
    /// The interface to reach it through (default: the interface whose subnet holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// An ACL rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    pub name: String,
    #[serde(default = "default_stage")]
    pub stage: AclStage,
    /// Higher wins among matching rules of a stage.
    pub priority: u32,
    #[serde(default, rename = "match")]
    pub matches: AclMatchConfig,
    pub action: AclActionConfig,
    /// The VRF to select, for `action: set_vrf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
}

fn default_stage() -> AclStage {
    AclStage::Ingress
}

/// What an ACL rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclActionConfig {
    Permit,
    Drop,
    Trap,
    Copy,
    SetVrf,
}

/// Match fields of an ACL rule; absent fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclMatchConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_port: Option<String>,
    /// `aa:bb:cc:dd:ee:ff` or `aa:bb:cc:dd:ee:ff/ff:ff:ff:00:00:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ether_type: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpNet>,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or a protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A port (`5001`) or an inclusive range (`1000-2000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<u8>,
}

/// An L4 port or port range as written in the config: `5001` or `"1000-2000"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    Single(u16),
    Range(String),
}

/// BGP settings. Parsed and validated now; used by the routing crate's BGP speaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<BgpNeighborConfig>,
    /// Prefixes this router originates (announced to neighbors whose export
    /// policy accepts them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<IpNet>,
    /// Routing policies, referred to by neighbors' `import_policy` and `export_policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyConfig>,
    /// TCP port to listen on and connect to (default 179; tests use others).
    #[serde(default = "default_bgp_port")]
    pub port: u16,
    /// Upstream ISPs and their roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Originate a default route to these neighbors while at least one upstream
    /// session is established (and withdraw it when none is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<DefaultRouteConfig>,
}

/// An upstream ISP: the neighbors that connect to it and its role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// Addresses of configured neighbors (`bgp.neighbors[].address`).
    pub neighbors: Vec<IpAddr>,
    pub role: UpstreamRole,
    /// For `load_share`: traffic is split in proportion to the weights of the
    /// load-sharing upstreams that announce a prefix (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// How an upstream's routes are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamRole {
    /// Preferred (local-pref 200 unless the import policy sets one).
    Primary,
    /// Used when no primary has the prefix (local-pref 50), and as the
    /// precomputed failover path.
    Backup,
    /// Shares traffic with the other load-sharing upstreams that announce the
    /// same prefix, by weight (local-pref 100).
    LoadShare,
}

/// Conditional default-route origination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRouteConfig {
    /// Neighbors (addresses) that receive the default route.
    pub to: Vec<IpAddr>,
}

fn default_bgp_port() -> u16 {
    179
}

/// A routing policy: rules tried in order; the first whose match fits decides.
/// A route no rule matches is rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<PolicyRuleConfig>,
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuleConfig {
    #[serde(default, rename = "match")]
    pub matches: PolicyMatchConfig,
    #[serde(default)]
    pub set: PolicySetConfig,
    pub action: PolicyActionConfig,
}

/// `accept` or `reject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyActionConfig {
    Accept,
    Reject,
}

/// What a rule matches; every field given must match, absent fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyMatchConfig {
    /// A prefix list: the route matches if any entry does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixMatchConfig>,
    /// A community `ASN:VALUE` the route must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// An AS number the AS path must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_path_contains: Option<u32>,
    /// A regular expression over the AS path written as FRR prints it
    /// (`64501 64502 {64503,64504}`); `_` matches a delimiter or either end,
    /// as in FRR and Cisco (`^64501_`, `_64666_`, `_64510$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_path_regex: Option<String>,
    /// A large community `GLOBAL:LOCAL1:LOCAL2` the route must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_community: Option<String>,
}

/// A prefix-list entry: routes inside `prefix` whose length is in `ge..=le`
/// (both default to the prefix's own length, so a bare entry matches exactly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixMatchConfig {
    pub prefix: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub le: Option<u8>,
}

/// What an accepting rule changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// Prepend the local AS this many extra times (export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_path_prepend: Option<u8>,
    /// Communities `ASN:VALUE` to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities_add: Vec<String>,
    /// Large communities `GLOBAL:LOCAL1:LOCAL2` to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities_add: Vec<String>,
    /// Replace the next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
}

/// A BGP neighbor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpNeighborConfig {
    pub address: IpAddr,
    pub remote_as: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds; 0 disables keepalives, otherwise at least 3.
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Wait for the peer to connect instead of connecting to it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub passive: bool,
    /// Address families: `ipv4_unicast`, `ipv6_unicast` (default: the neighbor's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<AddressFamily>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_policy: Option<String>,
    /// Set ourselves as the next hop of routes sent to this (iBGP) neighbor;
    /// eBGP neighbors always get next-hop-self.
    #[serde(default, skip_serializing_if = "is_false")]
    pub next_hop_self: bool,
    /// eBGP multihop: the peer is this many hops away (the session's TTL);
    /// without it an eBGP session is single-hop (TTL 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebgp_multihop: Option<u8>,
    /// TCP MD5 signature key (RFC 2385), at most 80 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Keep the routes the neighbor sends before import policy (the pre-policy
    /// Adj-RIB-In), so a new import policy applies at once, without asking
    /// the neighbor to send its routes again. Costs memory per route.
    #[serde(default, skip_serializing_if = "is_false")]
    pub soft_reconfiguration_inbound: bool,
}

fn default_hold_time() -> u16 {
    90
}

/// BGP address families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressFamily {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Config {
    /// Parses and validates a YAML document. Every error names the field's path in
    /// the document and says why it is wrong.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigErrors> {
        let config = validate::parse(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The canonical YAML rendering (what the store keeps and `config diff` compares).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a Config always serializes")
    }

    /// Checks every cross-reference and value; see [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        validate::validate(self)
    }

    /// The router MAC for an interface that sets none.
    pub fn router_mac(&self) -> MacAddr {
        if let Some(m) = self.system.router_mac {
            return m;
        }
        // FNV-1a over the hostname: stable across restarts, distinct per lab router.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.system.hostname.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
    }
}
