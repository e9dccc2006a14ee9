//! Parsing with field paths, and the cross-reference checks of a configuration.

use super::{
    AclActionConfig, AclRuleConfig, Config, InterfaceConfig, PortSpec, StaticRouteConfig,
    DEFAULT_VRF,
};
use crate::mac::MacAddr;
use crate::model::{AclStage, Masked, PortRange};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

/// One thing wrong with a configuration: where (the field's path in the document,
/// e.g. `interfaces[1].ipv4[0]`) and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Everything wrong with a configuration (never empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Parses YAML into a [`Config`], naming the path of the first field that does not fit.
pub(super) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(document)".to_string()
        } else {
            path
        };
        let mut reason = e.into_inner().to_string();
        // serde_yaml starts its message with its own path ("ports[0]: unknown
        // field ..."); the path is already ours, so keep only the reason.
        if let Some((head, rest)) = reason.split_once(": ") {
            if !head.contains(' ') && path.starts_with(head) {
                reason = rest.to_string();
            }
        }
        ConfigError::new(path, reason).into()
    })
}

/// Cross-reference and value checks. Every problem is reported, not only the first,
/// each with the path of the field at fault.
pub(super) fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut v = Validator::new(config);
    v.system();
    v.ports();
    v.dataplane();
    v.p4runtime();
    v.vrfs();
    v.vlans();
    v.interfaces();
    v.static_routes();
    v.acl();
    v.bgp();
    v.management();
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(v.errors))
    }
}

/// The MTUs a port or interface may have.
const MTU_MIN: u32 = 68;
const MTU_MAX: u32 = 9216;
/// Linux keeps interface names in IFNAMSIZ (16) bytes, the last one a NUL.
const LINUX_IFNAME_MAX: usize = 15;
const HOSTNAME_MAX: usize = 63;
const VLAN_MIN: u16 = 1;
const VLAN_MAX: u16 = 4094;
/// Forwarding workers of the x86 dataplane.
const WORKERS_MAX: u16 = 64;
/// P4 port numbers a port may have (nos.p4's ports are 9 bits; 511 is
/// the drop port of v1model) and the CPU port among them.
const P4_PORTS: std::ops::RangeInclusive<u32> = 1..=510;
const P4_CPU_PORT: u32 = 255;

/// Checks a gRPC target address: `host:port`, `[v6]:port` or `unix:/path`.
fn grpc_address_ok(addr: &str) -> Result<(), String> {
    if let Some(path) = addr.strip_prefix("unix:") {
        if !path.starts_with('/') || path.len() < 2 || path.contains('\0') {
            return Err(format!(
                "{addr:?}: a Unix socket is written unix:/absolute/path"
            ));
        }
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{port:?} in {addr:?} is not a TCP port (1..=65535)"
            ))
        }
    }
    if let Some(v6) = host.strip_prefix('[') {
        let Some(v6) = v6.strip_suffix(']') else {
            return Err(format!("{host:?} in {addr:?} lacks its closing ]"));
        };
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{v6:?} in {addr:?} is not an IPv6 address"));
    }
    if host.is_empty() {
        return Err(format!("{addr:?} has no host"));
    }
    if host.contains(':') {
        return Err(format!(
            "{addr:?}: write an IPv6 address in brackets, as [{host}]:{port}"
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return Err(format!(
            "{host:?} in {addr:?} is not a host name or address"
        ));
    }
    Ok(())
}

/// Checks a DPDK device string: `name[,key=value...]`, the name starting
/// with a letter and made of letters, digits, `_`, `-`, `.` and `:`, no spaces.
fn dpdk_device_ok(device: &str) -> Result<(), String> {
    if device.is_empty() {
        return Err("the DPDK device string is empty".into());
    }
    if let Some(c) = device.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("DPDK device {device:?} contains {c:?}"));
    }
    let mut parts = device.split(',');
    let name = parts.next().unwrap_or_default();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(format!(
            "DPDK device name {name:?} must start with a letter and hold only letters, digits, '_', '-', '.' and ':' (e.g. net_af_packet0,iface=veth1)"
        ));
    }
    for kv in parts {
        match kv.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => {
                return Err(format!(
                    "DPDK device argument {kv:?} in {device:?} is not key=value"
                ))
            }
        }
    }
    Ok(())
}

/// Parses an ACL MAC match: `aa:bb:cc:dd:ee:ff` (every bit must match) or
/// `aa:bb:cc:dd:ee:ff/ff:ff:ff:00:00:00` (only the bits set in the mask must match).
pub fn parse_masked_mac(s: &str) -> Result<Masked<MacAddr>, String> {
    let (value, mask) = match s.split_once('/') {
        Some((v, m)) => (v.trim(), Some(m.trim())),
        None => (s.trim(), None),
    };
    let bad = || {
        format!(
            "invalid MAC match {s:?}: expected aa:bb:cc:dd:ee:ff or \
             aa:bb:cc:dd:ee:ff/ff:ff:ff:00:00:00 (address/mask)"
        )
    };
    let value: MacAddr = value.parse().map_err(|_| bad())?;
    let mask = match mask {
        Some(m) => m.parse().map_err(|_| bad())?,
        None => MacAddr::BROADCAST,
    };
    Ok(Masked { value, mask })
}

/// Parses an ACL protocol: `tcp` (6), `udp` (17), `icmp` (1), `icmpv6` (58), or an IP
/// protocol number 0..=255.
pub fn parse_protocol(s: &str) -> Result<u8, String> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" | "ipv6-icmp" => Ok(58),
        _ => t.parse::<u8>().map_err(|_| {
            format!(
                "unknown protocol {s:?}: use tcp, udp, icmp, icmpv6 or a protocol number 0..=255"
            )
        }),
    }
}

impl PortSpec {
    /// The inclusive port range this spec stands for: `5001` is 5001..=5001 and
    /// `"1000-2000"` is 1000..=2000.
    pub fn range(&self) -> Result<PortRange, String> {
        match self {
            PortSpec::Single(p) => Ok(PortRange {
                first: *p,
                last: *p,
            }),
            PortSpec::Range(s) => {
                let bad = || {
                    format!(
                        "invalid port or port range {s:?}: expected a port (5001) or a range \
                         (\"1000-2000\") of ports 0..=65535"
                    )
                };
                let port = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
                let (first, last) = match s.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => {
                        let p = port(s)?;
                        (p, p)
                    }
                };
                if first > last {
                    return Err(format!(
                        "port range {first}-{last} is empty: the first port must not exceed the last"
                    ));
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

/// An address configured on an interface, and where.
#[derive(Debug)]
struct OwnAddress<'a> {
    vrf: &'a str,
    net: IpNet,
    /// Index into `config.interfaces`.
    interface: usize,
    path: String,
}

/// Walks a configuration once, section by section, collecting every error.
struct Validator<'a> {
    config: &'a Config,
    errors: Vec<ConfigError>,
    /// Port name → index of its first definition.
    ports: HashMap<&'a str, usize>,
    /// Every VRF that exists, `default` included.
    vrfs: HashSet<&'a str>,
    /// VLAN id → index of its first definition.
    vlans: HashMap<u16, usize>,
    /// Interface name → index of its first definition.
    interfaces: HashMap<&'a str, usize>,
    /// Every address configured on an interface.
    own: Vec<OwnAddress<'a>>,
}

impl<'a> Validator<'a> {
    fn new(config: &'a Config) -> Self {
        Self {
            config,
            errors: Vec::new(),
            ports: HashMap::new(),
            vrfs: HashSet::new(),
            vlans: HashMap::new(),
            interfaces: HashMap::new(),
            own: Vec::new(),
        }
    }

    fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError::new(path, reason));
    }

    fn missing_port(&self, name: &str) -> String {
        let names = self.config.ports.iter().map(|p| p.name.as_str());
        format!("port {name} does not exist (ports: {})", name_list(names))
    }

    fn missing_vrf(&self, name: &str) -> String {
        let names =
            std::iter::once(DEFAULT_VRF).chain(self.config.vrfs.iter().map(|v| v.name.as_str()));
        format!(
            "vrf {name} does not exist (vrfs: {}); list it under vrfs",
            name_list(names)
        )
    }

    fn missing_interface(&self, name: &str) -> String {
        let names = self.config.interfaces.iter().map(|i| i.name.as_str());
        format!(
            "interface {name} does not exist (interfaces: {})",
            name_list(names)
        )
    }

    /// Checks that `vlan` is a usable VLAN id; reports it at `path` otherwise.
    fn vlan_id_ok(&mut self, vlan: u16, path: String) -> bool {
        if (VLAN_MIN..=VLAN_MAX).contains(&vlan) {
            true
        } else {
            self.err(
                path,
                format!("VLAN id {vlan} is outside {VLAN_MIN}..={VLAN_MAX}"),
            );
            false
        }
    }

    fn mtu(&mut self, mtu: u32, path: String) {
        if !(MTU_MIN..=MTU_MAX).contains(&mtu) {
            self.err(path, format!("mtu {mtu} is outside {MTU_MIN}..={MTU_MAX}"));
        }
    }

    fn unicast_mac(&mut self, mac: MacAddr, path: String) {
        if mac.is_multicast() {
            self.err(
                path,
                format!("{mac} is a multicast MAC address; a router MAC must be unicast"),
            );
        } else if mac == MacAddr::ZERO {
            self.err(path, format!("{mac} is not a usable router MAC"));
        }
    }

    fn system(&mut self) {
        let sys = &self.config.system;
        let h = &sys.hostname;
        let path = "system.hostname";
        if h.is_empty() {
            self.err(path, "the hostname is empty");
        } else {
            if let Some(c) = h
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
            {
                self.err(
                    path,
                    format!(
                        "hostname {h:?} contains {c:?}; only letters, digits, '-' and '.' are allowed"
                    ),
                );
            }
            let n = h.chars().count();
            if n > HOSTNAME_MAX {
                self.err(
                    path,
                    format!(
                        "hostname {h:?} is {n} characters long; at most {HOSTNAME_MAX} are allowed"
                    ),
                );
            }
        }
        if let Some(mac) = sys.router_mac {
            self.unicast_mac(mac, "system.router_mac".into());
        }
    }

    fn ports(&mut self) {
        let config = self.config;
        let mut linux: HashMap<&str, usize> = HashMap::new();
        for (i, port) in config.ports.iter().enumerate() {
            let p = format!("ports[{i}]");
            let name = port.name.as_str();
            let mut name_taken = false;
            if name.is_empty() {
                self.err(format!("{p}.name"), "the port name is empty");
            } else if let Some(&k) = self.ports.get(name) {
                name_taken = true;
                self.err(
                    format!("{p}.name"),
                    format!("port name {name} is already used by ports[{k}]"),
                );
            } else {
                self.ports.insert(name, i);
            }

            let lname = port.linux_name();
            let lpath = if port.linux.is_some() {
                format!("{p}.linux")
            } else {
                format!("{p}.name")
            };
            // An empty or duplicate port name without `linux` was reported above.
            let report_linux = port.linux.is_some() || !(name.is_empty() || name_taken);
            if report_linux {
                if lname.is_empty() {
                    self.err(lpath.clone(), "the Linux interface name is empty");
                } else if lname == "." || lname == ".." || lname.contains(['/', ':']) {
                    self.err(
                        lpath.clone(),
                        format!("{lname:?} is not a valid Linux interface name"),
                    );
                } else if let Some(c) = lname.chars().find(|c| c.is_whitespace()) {
                    self.err(
                        lpath.clone(),
                        format!("Linux interface name {lname:?} contains whitespace ({c:?})"),
                    );
                }
                let n = lname.len();
                if n > LINUX_IFNAME_MAX {
                    self.err(
                        lpath.clone(),
                        format!(
                            "Linux interface name {lname} is {n} bytes long; Linux allows at most {LINUX_IFNAME_MAX}"
                        ),
                    );
                }
                if !lname.is_empty() {
                    if let Some(&k) = linux.get(lname) {
                        self.err(
                            lpath,
                            format!(
                                "Linux interface {lname} is already used by port {} (ports[{k}])",
                                config.ports[k].name
                            ),
                        );
                    } else {
                        linux.insert(lname, i);
                    }
                }
            }
            self.mtu(port.mtu, format!("{p}.mtu"));
        }
    }

    fn dataplane(&mut self) {
        let dp = &self.config.dataplane;
        if let Some(w) = dp.workers {
            if !(1..=WORKERS_MAX).contains(&w) {
                self.err(
                    "dataplane.workers",
                    format!("{w} workers is outside 1..={WORKERS_MAX}"),
                );
            }
        }
        let Some(dpdk) = &dp.dpdk else { return };
        for (i, a) in dpdk.eal_args.iter().enumerate() {
            let path = format!("dataplane.dpdk.eal_args[{i}]");
            if a.is_empty() {
                self.err(path, "an EAL argument is empty");
            } else if a.contains('\0') {
                self.err(path, "an EAL argument contains a NUL character");
            }
        }
        let mut ports: HashMap<&str, usize> = HashMap::new();
        let mut devices: HashMap<String, usize> = HashMap::new();
        for (i, entry) in dpdk.ports.iter().enumerate() {
            let p = format!("dataplane.dpdk.ports[{i}]");
            let name = entry.port.as_str();
            if !self.ports.contains_key(name) {
                let reason = self.missing_port(name);
                self.err(format!("{p}.port"), reason);
            } else if let Some(&k) = ports.get(name) {
                self.err(
                    format!("{p}.port"),
                    format!("port {name} is already bound to DPDK by dataplane.dpdk.ports[{k}]"),
                );
                continue;
            } else {
                ports.insert(name, i);
            }
            let device = self.config.dpdk_entry_device(i);
            let Some(device) = device else { continue };
            let dpath = if entry.device.is_some() {
                format!("{p}.device")
            } else {
                format!("{p}.port")
            };
            if let Err(reason) = dpdk_device_ok(&device) {
                self.err(dpath, reason);
                continue;
            }
            // DPDK names a device by what comes before the first comma.
            let dev_name = device.split(',').next().unwrap_or_default().to_string();
            if let Some(&k) = devices.get(&dev_name) {
                self.err(
                    dpath,
                    format!("DPDK device {dev_name} is already used by dataplane.dpdk.ports[{k}]"),
                );
            } else {
                devices.insert(dev_name, i);
            }
        }
    }

    fn p4runtime(&mut self) {
        use super::BackendKind;
        let config = self.config;
        let dp = &config.dataplane;
        let Some(p4) = &dp.p4runtime else {
            if dp.backend == BackendKind::P4Runtime {
                self.err(
                    "dataplane.p4runtime",
                    "backend p4runtime needs the target: dataplane.p4runtime.address (host:port)",
                );
            }
            return;
        };
        if dp.backend == BackendKind::P4Runtime {
            // Settings of the x86 dataplane would be silently ignored.
            if dp.workers.is_some() {
                self.err(
                    "dataplane.workers",
                    "only the x86 backend has forwarding workers (the P4Runtime target forwards)",
                );
            }
            if dp.dpdk.is_some() {
                self.err(
                    "dataplane.dpdk",
                    "only the x86 backend uses DPDK (the P4Runtime target owns the ports)",
                );
            }
        } else {
            self.err(
                "dataplane.p4runtime",
                "only backend p4runtime uses a P4Runtime target (set dataplane.backend: p4runtime, or remove this section)",
            );
        }
        if let Err(reason) = grpc_address_ok(&p4.address) {
            self.err("dataplane.p4runtime.address", reason);
        }
        if p4.election_id == Some(0) {
            self.err(
                "dataplane.p4runtime.election_id",
                "election id 0 is not an election id (P4Runtime ids start at 1)",
            );
        }
        if let Some(role) = &p4.role {
            if role.is_empty() || role.chars().any(|c| c.is_control()) {
                self.err(
                    "dataplane.p4runtime.role",
                    "the role name is empty or contains control characters (omit it for the default role)",
                );
            }
        }
        for (field, path) in [("p4info", &p4.p4info), ("device_config", &p4.device_config)] {
            if path
                .as_deref()
                .is_some_and(|p| p.is_empty() || p.contains('\0'))
            {
                self.err(
                    format!("dataplane.p4runtime.{field}"),
                    "the file name is empty or contains a NUL character",
                );
            }
        }
        let mut listed: HashMap<&str, usize> = HashMap::new();
        for (i, e) in p4.ports.iter().enumerate() {
            let p = format!("dataplane.p4runtime.ports[{i}]");
            if !self.ports.contains_key(e.port.as_str()) {
                let reason = self.missing_port(&e.port);
                self.err(format!("{p}.port"), reason);
            } else if let Some(&k) = listed.get(e.port.as_str()) {
                self.err(
                    format!("{p}.port"),
                    format!(
                        "port {} already has a P4 port number (dataplane.p4runtime.ports[{k}])",
                        e.port
                    ),
                );
            } else {
                listed.insert(&e.port, i);
            }
            if !P4_PORTS.contains(&e.number) || e.number == P4_CPU_PORT {
                self.err(
                    format!("{p}.number"),
                    format!(
                        "P4 port {} is outside 1..=510 or is the CPU port {P4_CPU_PORT}",
                        e.number
                    ),
                );
            }
        }
        // Every port's effective number, once.
        let mut numbers: HashMap<u32, &str> = HashMap::new();
        for (i, port) in config.ports.iter().enumerate() {
            let Some(n) = config.p4_port(&port.name) else {
                continue;
            };
            let path = match listed.get(port.name.as_str()) {
                Some(k) => format!("dataplane.p4runtime.ports[{k}].number"),
                None => {
                    if !P4_PORTS.contains(&n) || n == P4_CPU_PORT {
                        self.err(
                            format!("ports[{i}].name"),
                            format!("port {} would be P4 port {n} (1 + its position), which is outside 1..=510 or the CPU port; give it a number under dataplane.p4runtime.ports", port.name),
                        );
                        continue;
                    }
                    format!("ports[{i}].name")
                }
            };
            if let Some(other) = numbers.get(&n) {
                if *other != port.name {
                    self.err(
                        path,
                        format!(
                            "port {} would be P4 port {n}, which port {other} is already (a port not listed under dataplane.p4runtime.ports is 1 + its position under ports)",
                            port.name
                        ),
                    );
                }
            } else {
                numbers.insert(n, &port.name);
            }
        }
    }

    fn vrfs(&mut self) {
        self.vrfs.insert(DEFAULT_VRF);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, vrf) in self.config.vrfs.iter().enumerate() {
            let path = format!("vrfs[{i}].name");
            let name = vrf.name.as_str();
            if name.is_empty() {
                self.err(path, "the vrf name is empty");
            } else if name == DEFAULT_VRF {
                self.err(
                    path,
                    "vrf default always exists and must not be listed under vrfs",
                );
            } else if let Some(&k) = seen.get(name) {
                self.err(path, format!("vrf {name} is already listed at vrfs[{k}]"));
            } else {
                seen.insert(name, i);
                self.vrfs.insert(name);
            }
        }
    }

    fn vlans(&mut self) {
        let config = self.config;
        // Port → (VLAN id, path) of its first untagged membership.
        let mut untagged_in: HashMap<&str, (u16, String)> = HashMap::new();
        for (i, vlan) in config.vlans.iter().enumerate() {
            let p = format!("vlans[{i}]");
            let id = vlan.id;
            if self.vlan_id_ok(id, format!("{p}.id")) {
                if let Some(&k) = self.vlans.get(&id) {
                    self.err(
                        format!("{p}.id"),
                        format!("VLAN {id} is already defined at vlans[{k}]"),
                    );
                } else {
                    self.vlans.insert(id, i);
                }
            }
            if vlan.untagged.is_empty() && vlan.tagged.is_empty() {
                self.err(
                    p.clone(),
                    format!(
                        "VLAN {id} has no member ports; list at least one port under untagged or tagged"
                    ),
                );
            }
            // Port → (path, tagged) of its membership in this VLAN.
            let mut member: HashMap<&str, (String, bool)> = HashMap::new();
            let lists = [(false, &vlan.untagged), (true, &vlan.tagged)];
            for (tagged, list) in lists {
                let field = if tagged { "tagged" } else { "untagged" };
                for (j, port) in list.iter().enumerate() {
                    let q = format!("{p}.{field}[{j}]");
                    let port = port.as_str();
                    if !self.ports.contains_key(port) {
                        let reason = self.missing_port(port);
                        self.err(q, reason);
                        continue;
                    }
                    if let Some((prev, prev_tagged)) = member.get(port) {
                        let reason = if *prev_tagged == tagged {
                            format!("port {port} is listed twice in VLAN {id} (also {prev})")
                        } else {
                            format!(
                                "port {port} is both tagged and untagged in VLAN {id} (untagged at {prev}); \
                                 a port carries a VLAN one way or the other"
                            )
                        };
                        self.err(q, reason);
                        continue;
                    }
                    member.insert(port, (q.clone(), tagged));
                    if tagged {
                        continue;
                    }
                    if let Some((other, at)) = untagged_in.get(port) {
                        let reason = format!(
                            "port {port} is already an untagged member of VLAN {other} ({at}); \
                             a port is an untagged member of at most one VLAN"
                        );
                        self.err(q, reason);
                    } else {
                        untagged_in.insert(port, (id, q));
                    }
                }
            }
        }
    }

    /// The first VLAN that carries `port` untagged: its id and the member's path.
    fn untagged_membership(&self, port: &str) -> Option<(u16, String)> {
        self.config.vlans.iter().enumerate().find_map(|(i, v)| {
            v.untagged
                .iter()
                .position(|p| p == port)
                .map(|j| (v.id, format!("vlans[{i}].untagged[{j}]")))
        })
    }

    /// The path of `port`'s tagged membership in VLAN `vlan`, if it has one.
    fn tagged_membership(&self, port: &str, vlan: u16) -> Option<String> {
        self.config.vlans.iter().enumerate().find_map(|(i, v)| {
            if v.id != vlan {
                return None;
            }
            v.tagged
                .iter()
                .position(|p| p == port)
                .map(|j| format!("vlans[{i}].tagged[{j}]"))
        })
    }

    fn interfaces(&mut self) {
        let config = self.config;
        let mut port_rif: HashMap<&str, usize> = HashMap::new();
        let mut sub_rif: HashMap<(&str, u16), usize> = HashMap::new();
        let mut vlan_rif: HashMap<u16, usize> = HashMap::new();
        for (i, itf) in config.interfaces.iter().enumerate() {
            let p = format!("interfaces[{i}]");
            let name = itf.name.as_str();
            if name.is_empty() {
                self.err(format!("{p}.name"), "the interface name is empty");
            } else if let Some(&k) = self.interfaces.get(name) {
                self.err(
                    format!("{p}.name"),
                    format!("interface name {name} is already used by interfaces[{k}]"),
                );
            } else {
                self.interfaces.insert(name, i);
            }

            match (itf.port.as_deref(), itf.vlan) {
                (None, None) => self.err(
                    p.clone(),
                    format!(
                        "interface {name} has neither port nor vlan: set port for a port interface, \
                         port and vlan for a sub-port, or vlan alone for a VLAN interface"
                    ),
                ),
                (Some(port), None) => {
                    if !self.ports.contains_key(port) {
                        let reason = self.missing_port(port);
                        self.err(format!("{p}.port"), reason);
                    } else if let Some(&k) = port_rif.get(port) {
                        self.err(
                            format!("{p}.port"),
                            format!(
                                "port {port} already has an interface for its untagged frames: {} (interfaces[{k}])",
                                config.interfaces[k].name
                            ),
                        );
                    } else {
                        port_rif.insert(port, i);
                        if let Some((vlan, at)) = self.untagged_membership(port) {
                            self.err(
                                format!("{p}.port"),
                                format!(
                                    "port {port} is an untagged member of VLAN {vlan} ({at}), so its untagged \
                                     frames belong to that VLAN; remove the port from the VLAN or make this \
                                     interface a sub-port by adding vlan"
                                ),
                            );
                        }
                    }
                }
                (Some(port), Some(vlan)) => {
                    let port_ok = self.ports.contains_key(port);
                    if !port_ok {
                        let reason = self.missing_port(port);
                        self.err(format!("{p}.port"), reason);
                    }
                    if self.vlan_id_ok(vlan, format!("{p}.vlan")) && port_ok {
                        if let Some(&k) = sub_rif.get(&(port, vlan)) {
                            self.err(
                                format!("{p}.vlan"),
                                format!(
                                    "port {port} VLAN {vlan} already has a sub-port interface: {} (interfaces[{k}])",
                                    config.interfaces[k].name
                                ),
                            );
                        } else {
                            sub_rif.insert((port, vlan), i);
                            if let Some(at) = self.tagged_membership(port, vlan) {
                                self.err(
                                    format!("{p}.vlan"),
                                    format!(
                                        "port {port} is a tagged member of VLAN {vlan} ({at}), so its frames \
                                         tagged {vlan} belong to that VLAN; a sub-port for the same tag conflicts"
                                    ),
                                );
                            }
                        }
                    }
                }
                (None, Some(vlan)) => {
                    if self.vlan_id_ok(vlan, format!("{p}.vlan")) {
                        if !self.vlans.contains_key(&vlan) {
                            self.err(
                                format!("{p}.vlan"),
                                format!(
                                    "VLAN {vlan} is not defined under vlans; a VLAN interface needs the VLAN \
                                     and its member ports (or set port as well to make a sub-port)"
                                ),
                            );
                        } else if let Some(&k) = vlan_rif.get(&vlan) {
                            self.err(
                                format!("{p}.vlan"),
                                format!(
                                    "VLAN {vlan} already has an interface: {} (interfaces[{k}])",
                                    config.interfaces[k].name
                                ),
                            );
                        } else {
                            vlan_rif.insert(vlan, i);
                        }
                    }
                }
            }

            if let Some(vrf) = itf.vrf.as_deref() {
                if !self.vrfs.contains(vrf) {
                    let reason = self.missing_vrf(vrf);
                    self.err(format!("{p}.vrf"), reason);
                }
            }
            if let Some(mtu) = itf.mtu {
                self.mtu(mtu, format!("{p}.mtu"));
            }
            if let Some(mac) = itf.mac {
                self.unicast_mac(mac, format!("{p}.mac"));
            }
            self.addresses(i, itf);
        }
    }

    /// An interface's addresses: usable host addresses, no duplicates, and no
    /// subnet overlapping another in the same VRF.
    fn addresses(&mut self, i: usize, itf: &'a InterfaceConfig) {
        let vrf = itf.vrf_name();
        for (j, net) in itf.ipv4.iter().enumerate() {
            let path = format!("interfaces[{i}].ipv4[{j}]");
            let a = net.addr();
            let len = net.prefix_len();
            let problem = if a.is_unspecified()
                || a.is_multicast()
                || a.is_loopback()
                || a.is_broadcast()
            {
                Some(format!("{net}: {a} is not a unicast host address"))
            } else if len < 31 && a == net.network() {
                let first = std::net::Ipv4Addr::from(u32::from(a).wrapping_add(1));
                Some(format!(
                        "{net}: {a} is the network address of {}; use a host address such as {first}/{len}",
                        net.trunc()
                    ))
            } else if len < 31 && a == net.broadcast() {
                Some(format!(
                    "{net}: {a} is the broadcast address of {}; use a host address",
                    net.trunc()
                ))
            } else {
                None
            };
            self.add_own(i, vrf, IpNet::V4(*net), path, problem);
        }
        for (j, net) in itf.ipv6.iter().enumerate() {
            let path = format!("interfaces[{i}].ipv6[{j}]");
            let a = net.addr();
            let problem = if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                Some(format!("{net}: {a} is not a unicast host address"))
            } else {
                None
            };
            self.add_own(i, vrf, IpNet::V6(*net), path, problem);
        }
    }

    /// Records an interface address, reporting its own `problem` (if any) and any
    /// conflict with the addresses recorded before it.
    fn add_own(
        &mut self,
        interface: usize,
        vrf: &'a str,
        net: IpNet,
        path: String,
        problem: Option<String>,
    ) {
        if let Some(reason) = problem {
            self.err(path.clone(), reason);
        }
        if let Some(reason) = self.address_conflict(interface, vrf, net) {
            self.err(path.clone(), reason);
        }
        self.own.push(OwnAddress {
            vrf,
            net,
            interface,
            path,
        });
    }

    fn address_conflict(&self, interface: usize, vrf: &str, net: IpNet) -> Option<String> {
        let names = &self.config.interfaces;
        let link_local = is_link_local(net.addr());
        self.own.iter().find_map(|o| {
            let same_itf = o.interface == interface;
            // Link-local subnets repeat on every link by design: only an interface's own
            // addresses are compared with each other.
            let comparable =
                same_itf || (o.vrf == vrf && !link_local && !is_link_local(o.net.addr()));
            if !comparable {
                return None;
            }
            let other = &names[o.interface].name;
            if o.net.addr() == net.addr() {
                return Some(if same_itf {
                    format!("address {} is listed twice on interface {other} (also {})", net.addr(), o.path)
                } else {
                    format!(
                        "address {} is already assigned to interface {other} as {} ({}) in vrf {vrf}",
                        net.addr(),
                        o.net,
                        o.path
                    )
                });
            }
            if o.net.contains(&net) || net.contains(&o.net) {
                return Some(format!(
                    "{net} overlaps {} on interface {other} ({}); subnets within vrf {vrf} must not overlap",
                    o.net, o.path
                ));
            }
            None
        })
    }

    fn static_routes(&mut self) {
        let config = self.config;
        let mut keys: HashMap<(&str, IpNet), usize> = HashMap::new();
        for (i, route) in config.static_routes.iter().enumerate() {
            self.static_route(i, route, &mut keys);
        }
    }

    fn static_route(
        &mut self,
        i: usize,
        route: &'a StaticRouteConfig,
        keys: &mut HashMap<(&'a str, IpNet), usize>,
    ) {
        let config = self.config;
        let p = format!("static_routes[{i}]");
        let prefix = route.prefix;
        let vrf = route.vrf_name();
        if prefix.trunc() != prefix {
            self.err(
                format!("{p}.prefix"),
                format!(
                    "prefix {prefix} has host bits set; did you mean {}?",
                    prefix.trunc()
                ),
            );
        }
        let vrf_ok = self.vrfs.contains(vrf);
        if !vrf_ok {
            let reason = self.missing_vrf(vrf);
            self.err(format!("{p}.vrf"), reason);
        }
        if let Some(&k) = keys.get(&(vrf, prefix.trunc())) {
            self.err(
                format!("{p}.prefix"),
                format!(
                    "a static route for {} in vrf {vrf} is already defined at static_routes[{k}]",
                    prefix.trunc()
                ),
            );
        } else {
            keys.insert((vrf, prefix.trunc()), i);
        }
        match (route.next_hops.is_empty(), route.blackhole) {
            (true, false) => self.err(
                p.clone(),
                format!(
                    "route {prefix} has no next_hops and is not blackhole: true; give one or the other"
                ),
            ),
            (false, true) => self.err(
                format!("{p}.blackhole"),
                format!(
                    "route {prefix} has both next_hops and blackhole: true; a blackhole route drops \
                     traffic and takes no next hops"
                ),
            ),
            _ => {}
        }
        if route.distance == 0 {
            self.err(
                format!("{p}.distance"),
                "distance 0 is reserved for connected routes; use 1..=255",
            );
        }

        let prefix_family = family(&prefix.addr());
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (j, hop) in route.next_hops.iter().enumerate() {
            let q = format!("{p}.next_hops[{j}]");
            let a = hop.address;
            if hop.weight == 0 {
                self.err(
                    format!("{q}.weight"),
                    "weight 0 is not allowed; weights are at least 1",
                );
            }
            if let Some(&k) = seen.get(&a) {
                self.err(
                    format!("{q}.address"),
                    format!("next hop {a} is listed twice in this route (also {p}.next_hops[{k}])"),
                );
                continue;
            }
            seen.insert(a, j);
            if family(&a) != prefix_family {
                self.err(
                    format!("{q}.address"),
                    format!(
                        "next hop {a} is {} but prefix {prefix} is {prefix_family}",
                        family(&a)
                    ),
                );
                continue;
            }
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() || is_v4_broadcast(&a) {
                self.err(
                    format!("{q}.address"),
                    format!("next hop {a} is not a unicast address"),
                );
                continue;
            }
            if !vrf_ok {
                continue;
            }
            if let Some(o) = self.own.iter().find(|o| o.vrf == vrf && o.net.addr() == a) {
                let reason = format!(
                    "next hop {a} is this router's own address (interface {}, {})",
                    config.interfaces[o.interface].name, o.path
                );
                self.err(format!("{q}.address"), reason);
                continue;
            }
            match hop.interface.as_deref() {
                Some(name) => match self.interfaces.get(name) {
                    None => {
                        let reason = self.missing_interface(name);
                        self.err(format!("{q}.interface"), reason);
                    }
                    Some(&k) => {
                        let itf_vrf = config.interfaces[k].vrf_name();
                        if itf_vrf != vrf {
                            self.err(
                                format!("{q}.interface"),
                                format!(
                                    "interface {name} is in vrf {itf_vrf}, but the route is in vrf {vrf}"
                                ),
                            );
                        }
                    }
                },
                None => {
                    let connected = self.own.iter().find(|o| o.vrf == vrf && o.net.contains(&a));
                    match connected {
                        None => {
                            let hint = if is_link_local(a) {
                                "; a link-local next hop needs interface to say which link it is on"
                            } else {
                                ""
                            };
                            self.err(
                                format!("{q}.address"),
                                format!(
                                    "no interface in vrf {vrf} has a subnet containing {a}{hint}"
                                ),
                            );
                        }
                        Some(o) => {
                            if let (IpNet::V4(n), IpAddr::V4(v4)) = (o.net, a) {
                                if n.prefix_len() < 31 && (v4 == n.network() || v4 == n.broadcast())
                                {
                                    let what = if v4 == n.network() {
                                        "network"
                                    } else {
                                        "broadcast"
                                    };
                                    let reason = format!(
                                        "next hop {a} is the {what} address of {} (interface {})",
                                        n.trunc(),
                                        config.interfaces[o.interface].name
                                    );
                                    self.err(format!("{q}.address"), reason);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn acl(&mut self) {
        let config = self.config;
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut slots: HashMap<(AclStage, u32), usize> = HashMap::new();
        for (i, rule) in config.acl.iter().enumerate() {
            let p = format!("acl[{i}]");
            let name = rule.name.as_str();
            if name.is_empty() {
                self.err(format!("{p}.name"), "the rule name is empty");
            } else if let Some(&k) = names.get(name) {
                self.err(
                    format!("{p}.name"),
                    format!("rule name {name} is already used by acl[{k}]"),
                );
            } else {
                names.insert(name, i);
            }
            if let Some(&k) = slots.get(&(rule.stage, rule.priority)) {
                self.err(
                    format!("{p}.priority"),
                    format!(
                        "priority {} in stage {} is already used by rule {} (acl[{k}]); \
                         priorities within a stage must be unique",
                        rule.priority,
                        stage_name(rule.stage),
                        config.acl[k].name
                    ),
                );
            } else {
                slots.insert((rule.stage, rule.priority), i);
            }
            self.acl_match(&p, rule);
            self.acl_action(&p, rule);
        }
    }

    fn acl_match(&mut self, p: &str, rule: &AclRuleConfig) {
        let m = &rule.matches;
        let mp = format!("{p}.match");
        if let Some(port) = m.in_port.as_deref() {
            if !self.ports.contains_key(port) {
                let reason = self.missing_port(port);
                self.err(format!("{mp}.in_port"), reason);
            }
        }
        for (field, mac) in [("src_mac", &m.src_mac), ("dst_mac", &m.dst_mac)] {
            if let Some(mac) = mac {
                if let Err(reason) = parse_masked_mac(mac) {
                    self.err(format!("{mp}.{field}"), reason);
                }
            }
        }
        // Ok(None): no protocol; Err(()): a protocol that did not parse (reported).
        let protocol = match m.protocol.as_deref().map(parse_protocol) {
            None => Ok(None),
            Some(Ok(n)) => Ok(Some(n)),
            Some(Err(reason)) => {
                self.err(format!("{mp}.protocol"), reason);
                Err(())
            }
        };
        for (field, spec) in [("src_port", &m.src_port), ("dst_port", &m.dst_port)] {
            let Some(spec) = spec else { continue };
            if let Err(reason) = spec.range() {
                self.err(format!("{mp}.{field}"), reason);
            }
            let why = match protocol {
                Ok(Some(6 | 17)) | Err(()) => None,
                Ok(Some(n)) => Some(format!("this rule has protocol {}", protocol_name(n))),
                Ok(None) => Some("this rule sets no protocol".to_string()),
            };
            if let Some(why) = why {
                self.err(
                    format!("{mp}.{field}"),
                    format!("matching {field} needs protocol tcp or udp ({why})"),
                );
            }
        }
        if let Some(vlan) = m.vlan {
            self.vlan_id_ok(vlan, format!("{mp}.vlan"));
        }
        if let Some(dscp) = m.dscp {
            if dscp > 63 {
                self.err(
                    format!("{mp}.dscp"),
                    format!("dscp {dscp} is outside 0..=63"),
                );
            }
        }
        for (field, net) in [("src_ip", &m.src_ip), ("dst_ip", &m.dst_ip)] {
            if let Some(net) = net {
                if net.trunc() != *net {
                    self.err(
                        format!("{mp}.{field}"),
                        format!(
                            "{field} {net} has host bits set; did you mean {}?",
                            net.trunc()
                        ),
                    );
                }
            }
        }
        if let (Some(src), Some(dst)) = (m.src_ip, m.dst_ip) {
            if family(&src.addr()) != family(&dst.addr()) {
                self.err(
                    format!("{mp}.dst_ip"),
                    format!(
                        "dst_ip {dst} is {} but src_ip {src} is {}; a packet has one or the other",
                        family(&dst.addr()),
                        family(&src.addr())
                    ),
                );
            }
        }
    }

    fn acl_action(&mut self, p: &str, rule: &AclRuleConfig) {
        match (rule.action, rule.vrf.as_deref()) {
            (AclActionConfig::SetVrf, vrf) => {
                match vrf {
                    None => self.err(
                        format!("{p}.action"),
                        "action set_vrf needs vrf: the VRF to route matching packets in",
                    ),
                    Some(v) if !self.vrfs.contains(v) => {
                        let reason = self.missing_vrf(v);
                        self.err(format!("{p}.vrf"), reason);
                    }
                    Some(_) => {}
                }
                if rule.stage != AclStage::PreIngress {
                    self.err(
                        format!("{p}.stage"),
                        format!(
                            "action set_vrf is only valid in stage pre_ingress (this rule is in stage {}{})",
                            stage_name(rule.stage),
                            if rule.stage == AclStage::Ingress { ", the default" } else { "" }
                        ),
                    );
                }
            }
            (action, Some(v)) => self.err(
                format!("{p}.vrf"),
                format!(
                    "vrf {v} is only used with action set_vrf (this rule's action is {})",
                    action_name(action)
                ),
            ),
            (_, None) => {}
        }
    }

    fn bgp(&mut self) {
        let Some(bgp) = &self.config.bgp else { return };
        if bgp.asn == 0 {
            self.err("bgp.asn", "AS number 0 is reserved and cannot be used");
        }
        if bgp.router_id.is_unspecified() {
            self.err(
                "bgp.router_id",
                "router id 0.0.0.0 is not allowed; use an IPv4 address of this router",
            );
        }
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (i, n) in bgp.neighbors.iter().enumerate() {
            let p = format!("bgp.neighbors[{i}]");
            let a = n.address;
            if let Some(&k) = seen.get(&a) {
                self.err(
                    format!("{p}.address"),
                    format!("neighbor {a} is already configured at bgp.neighbors[{k}]"),
                );
            } else {
                seen.insert(a, i);
            }
            if a.is_unspecified() || a.is_multicast() || is_v4_broadcast(&a) {
                self.err(
                    format!("{p}.address"),
                    format!("neighbor address {a} is not a unicast address"),
                );
            }
            if n.remote_as == 0 {
                self.err(
                    format!("{p}.remote_as"),
                    "AS number 0 is reserved and cannot be used",
                );
            }
            for (field, name) in [
                ("import_policy", &n.import_policy),
                ("export_policy", &n.export_policy),
            ] {
                if let Some(name) = name {
                    if !bgp.policies.iter().any(|p| &p.name == name) {
                        self.err(
                            format!("{p}.{field}"),
                            format!(
                                "policy {name} does not exist (policies: {})",
                                name_list(bgp.policies.iter().map(|p| p.name.as_str()))
                            ),
                        );
                    }
                }
            }
            if n.ebgp_multihop == Some(0) {
                self.err(
                    format!("{p}.ebgp_multihop"),
                    "the hop count must be at least 1",
                );
            }
            if n.ebgp_multihop.is_some() && n.remote_as == bgp.asn {
                self.err(
                    format!("{p}.ebgp_multihop"),
                    "ebgp_multihop applies to eBGP neighbors only",
                );
            }
            if let Some(pw) = &n.password {
                if pw.is_empty() || pw.len() > 80 {
                    self.err(format!("{p}.password"), "a TCP MD5 key has 1 to 80 bytes");
                }
            }
            if n.hold_time != 0 && n.hold_time < 3 {
                self.err(
                    format!("{p}.hold_time"),
                    format!(
                        "hold time {} s is too short: use 0 (no keepalives) or at least 3 seconds",
                        n.hold_time
                    ),
                );
            }
        }
        for (i, net) in bgp.networks.iter().enumerate() {
            if net.trunc() != *net {
                self.err(
                    format!("bgp.networks[{i}]"),
                    format!("{net} has host bits set (did you mean {}?)", net.trunc()),
                );
            }
        }
        let neighbor = |a: &IpAddr| bgp.neighbors.iter().any(|n| n.address == *a);
        let mut upstream_of: HashMap<IpAddr, usize> = HashMap::new();
        let mut upstream_names: HashMap<&str, usize> = HashMap::new();
        for (i, u) in bgp.upstreams.iter().enumerate() {
            let p = format!("bgp.upstreams[{i}]");
            if let Some(k) = upstream_names.insert(u.name.as_str(), i) {
                self.err(
                    format!("{p}.name"),
                    format!(
                        "upstream {} is already defined at bgp.upstreams[{k}]",
                        u.name
                    ),
                );
            }
            if u.neighbors.is_empty() {
                self.err(
                    format!("{p}.neighbors"),
                    "an upstream needs at least one neighbor",
                );
            }
            for (k, a) in u.neighbors.iter().enumerate() {
                if !neighbor(a) {
                    self.err(
                        format!("{p}.neighbors[{k}]"),
                        format!("{a} is not a configured BGP neighbor"),
                    );
                } else if let Some(j) = upstream_of.insert(*a, i) {
                    if j != i {
                        self.err(
                            format!("{p}.neighbors[{k}]"),
                            format!("{a} already belongs to bgp.upstreams[{j}]"),
                        );
                    }
                }
            }
            if u.weight == 0 {
                self.err(format!("{p}.weight"), "weight must be at least 1");
            }
        }
        if let Some(d) = &bgp.default_route {
            for (k, a) in d.to.iter().enumerate() {
                if !neighbor(a) {
                    self.err(
                        format!("bgp.default_route.to[{k}]"),
                        format!("{a} is not a configured BGP neighbor"),
                    );
                }
            }
            if bgp.upstreams.is_empty() {
                self.err(
                    "bgp.default_route",
                    "a conditional default route needs at least one entry in bgp.upstreams",
                );
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, pol) in bgp.policies.iter().enumerate() {
            let p = format!("bgp.policies[{i}]");
            if let Some(k) = names.insert(pol.name.as_str(), i) {
                self.err(
                    format!("{p}.name"),
                    format!(
                        "policy {} is already defined at bgp.policies[{k}]",
                        pol.name
                    ),
                );
            }
            for (r, rule) in pol.rules.iter().enumerate() {
                let rp = format!("{p}.rules[{r}]");
                for (e, pm) in rule.matches.prefixes.iter().enumerate() {
                    let ep = format!("{rp}.match.prefixes[{e}]");
                    if pm.prefix.trunc() != pm.prefix {
                        self.err(
                            format!("{ep}.prefix"),
                            format!(
                                "{} has host bits set (did you mean {}?)",
                                pm.prefix,
                                pm.prefix.trunc()
                            ),
                        );
                    }
                    let len = pm.prefix.prefix_len();
                    let max = pm.prefix.max_prefix_len();
                    let ge = pm.ge.unwrap_or(len);
                    let le = pm.le.unwrap_or(if pm.ge.is_some() { max } else { len });
                    if ge < len || le > max || ge > le {
                        self.err(
                            ep,
                            format!(
                                "lengths must satisfy {len} <= ge <= le <= {max} for {}; got ge {ge}, le {le}",
                                pm.prefix
                            ),
                        );
                    }
                }
                if let Some(c) = &rule.matches.community {
                    if let Err(e) = parse_community(c) {
                        self.err(format!("{rp}.match.community"), e);
                    }
                }
                for (k, c) in rule.set.communities_add.iter().enumerate() {
                    if let Err(e) = parse_community(c) {
                        self.err(format!("{rp}.set.communities_add[{k}]"), e);
                    }
                }
                if let Some(c) = &rule.matches.large_community {
                    if let Err(e) = parse_large_community(c) {
                        self.err(format!("{rp}.match.large_community"), e);
                    }
                }
                for (k, c) in rule.set.large_communities_add.iter().enumerate() {
                    if let Err(e) = parse_large_community(c) {
                        self.err(format!("{rp}.set.large_communities_add[{k}]"), e);
                    }
                }
                if let Some(r) = &rule.matches.as_path_regex {
                    if let Err(e) = as_path_regex(r) {
                        self.err(format!("{rp}.match.as_path_regex"), e);
                    }
                }
                if let Some(nh) = rule.set.next_hop {
                    if nh.is_unspecified() || nh.is_multicast() {
                        self.err(
                            format!("{rp}.set.next_hop"),
                            format!("{nh} is not a unicast address"),
                        );
                    }
                }
            }
        }
    }
}

impl Validator<'_> {
    fn management(&mut self) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, u) in self.config.management.users.iter().enumerate() {
            let p = format!("management.users[{i}]");
            let n = &u.name;
            if n.is_empty() {
                self.err(format!("{p}.name"), "the user name is empty");
            } else if n.len() > USER_NAME_MAX {
                self.err(
                    format!("{p}.name"),
                    format!("user name {n:?} is {} characters long; at most {USER_NAME_MAX} are allowed", n.len()),
                );
            } else if let Some(c) = n
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                self.err(
                    format!("{p}.name"),
                    format!("user name {n:?} contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"),
                );
            } else if n.starts_with('-') {
                self.err(
                    format!("{p}.name"),
                    format!("user name {n:?} starts with '-'"),
                );
            }
            if let Some(first) = names.insert(n.as_str(), i) {
                self.err(
                    format!("{p}.name"),
                    format!("user {n:?} is already defined at management.users[{first}]"),
                );
            }
            if let Err(why) = password_hash_format(&u.password_hash) {
                self.err(format!("{p}.password_hash"), why);
            }
        }
    }
}

/// The longest management user name.
const USER_NAME_MAX: usize = 32;

/// Checks that `s` is a password hash the management server can verify: an
/// Argon2 PHC string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`) or a
/// SHA-512 crypt string (`$6$[rounds=N$]SALT$HASH`). Only the form is
/// checked here; the server verifies passwords against it.
pub fn password_hash_format(s: &str) -> Result<(), String> {
    const HINT: &str = "expected an Argon2 PHC string ($argon2id$...) or a SHA-512 crypt string \
                        ($6$...), never the password itself; `nosctl hash-password` makes one";
    let b64 = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    let crypt64 = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let parts: Vec<&str> = s.split('$').collect();
    match parts.as_slice() {
        ["", "argon2id" | "argon2i" | "argon2d", rest @ ..] => {
            let rest = match rest.split_first() {
                Some((v, r)) if v.starts_with("v=") => {
                    if !matches!(&v[2..], "16" | "19") {
                        return Err(format!(
                            "Argon2 version {:?} is unknown (16 or 19)",
                            &v[2..]
                        ));
                    }
                    r
                }
                _ => rest,
            };
            let [params, salt, hash] = rest else {
                return Err(format!("malformed Argon2 hash: {HINT}"));
            };
            let mut seen = HashSet::new();
            for kv in params.split(',') {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("malformed Argon2 parameter {kv:?}: {HINT}"))?;
                if !matches!(k, "m" | "t" | "p") || v.parse::<u32>().is_err() || !seen.insert(k) {
                    return Err(format!("malformed Argon2 parameter {kv:?}: {HINT}"));
                }
            }
            if seen.len() != 3 {
                return Err(format!("the Argon2 hash lacks one of m, t and p: {HINT}"));
            }
            if !b64(salt) || salt.len() < 11 {
                return Err("the Argon2 salt is not base64 of at least 8 bytes".into());
            }
            if !b64(hash) || hash.len() < 16 {
                return Err("the Argon2 hash is not base64 of at least 12 bytes".into());
            }
            Ok(())
        }
        ["", "6", rest @ ..] => {
            let rest = match rest.split_first() {
                Some((r, more)) if r.starts_with("rounds=") => {
                    match r["rounds=".len()..].parse::<u32>() {
                        Ok(n) if (1000..=999_999_999).contains(&n) => {}
                        _ => return Err(format!("SHA-512 crypt {r:?} is not 1000..=999999999")),
                    }
                    more
                }
                _ => rest,
            };
            let [salt, hash] = rest else {
                return Err(format!("malformed SHA-512 crypt hash: {HINT}"));
            };
            if salt.is_empty() || salt.len() > 16 || !crypt64(salt) {
                return Err(
                    "the SHA-512 crypt salt must be 1 to 16 characters of [./0-9A-Za-z]".into(),
                );
            }
            if hash.len() != 86 || !crypt64(hash) {
                return Err("the SHA-512 crypt hash must be 86 characters of [./0-9A-Za-z]".into());
            }
            Ok(())
        }
        _ => Err(format!("not a supported password hash: {HINT}")),
    }
}

/// Parses a large community written `GLOBAL:LOCAL1:LOCAL2` (RFC 8092; each a 32-bit number).
pub fn parse_large_community(s: &str) -> Result<(u32, u32, u32), String> {
    let bad = || {
        format!("invalid large community {s:?}: expected GLOBAL:LOCAL1:LOCAL2 with each part 0..=4294967295")
    };
    let mut it = s.split(':').map(|p| p.trim().parse::<u32>());
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Ok((a, b, c)),
        _ => Err(bad()),
    }
}

/// Compiles an AS-path regular expression in FRR's dialect: `_` matches a
/// delimiter (space, comma, braces, parentheses) or the start or end.
pub fn as_path_regex(s: &str) -> Result<regex::Regex, String> {
    let translated = s.replace('_', r"(?:^|$|[ ,{}()])");
    regex::Regex::new(&translated)
        .map_err(|e| format!("invalid AS-path regular expression {s:?}: {e}"))
}

/// Parses a standard community written `ASN:VALUE` (each 0..=65535).
pub fn parse_community(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid community {s:?}: expected ASN:VALUE with each part 0..=65535");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    Ok((u32::from(a) << 16) | u32::from(b))
}

/// Up to eight names, comma-separated, for "does not exist" messages.
fn name_list<'b>(names: impl Iterator<Item = &'b str>) -> String {
    let mut seen = HashSet::new();
    let names: Vec<&str> = names.filter(|n| !n.is_empty() && seen.insert(*n)).collect();
    if names.is_empty() {
        return "none defined".into();
    }
    let mut s = names.iter().take(8).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        s.push_str(&format!(", and {} more", names.len() - 8));
    }
    s
}

fn family(a: &IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn is_v4_broadcast(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.is_broadcast())
}

/// IPv6 link-local (fe80::/10).
fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

fn stage_name(s: AclStage) -> &'static str {
    match s {
        AclStage::PreIngress => "pre_ingress",
        AclStage::Ingress => "ingress",
    }
}

fn action_name(a: AclActionConfig) -> &'static str {
    match a {
        AclActionConfig::Permit => "permit",
        AclActionConfig::Drop => "drop",
        AclActionConfig::Trap => "trap",
        AclActionConfig::Copy => "copy",
        AclActionConfig::SetVrf => "set_vrf",
    }
}

fn protocol_name(n: u8) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortConfig, VlanConfig, VrfConfig};

    const EXAMPLE: &str = include_str!("../../../examples/router.yaml");

    /// A small valid configuration the tests change one thing at a time.
    const BASE: &str = "
ports:
  - name: eth1
  - name: eth2
  - name: eth3
  - name: eth4
vrfs:
  - name: blue
vlans:
  - id: 10
    untagged: [eth3]
  - id: 20
    tagged: [eth3, eth4]
interfaces:
  - name: wan
    port: eth1
    ipv4: [192.0.2.1/24]
    ipv6: ['2001:db8:1::1/64']
  - name: lan
    port: eth2
    vrf: blue
    ipv4: [198.51.100.1/24]
    ipv6: ['2001:db8:2::1/64']
  - name: users
    vlan: 10
    ipv4: [203.0.113.1/24]
";

    fn parse_ok(yaml: &str) -> Config {
        parse(yaml).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{yaml}"))
    }

    fn base() -> Config {
        parse_ok(BASE)
    }

    /// The base configuration with more sections appended.
    fn with(extra: &str) -> Config {
        parse_ok(&format!("{BASE}{extra}"))
    }

    /// Asserts that validation reports exactly one error, at `path`, whose reason
    /// contains `needle`.
    #[track_caller]
    fn expect(config: &Config, path: &str, needle: &str) {
        let errs = match validate(config) {
            Ok(()) => panic!("expected an error at {path}, but the config validated"),
            Err(e) => e,
        };
        assert!(
            errs.0.len() == 1 && errs.0[0].path == path && errs.0[0].reason.contains(needle),
            "expected one error at {path} containing {needle:?}; got:\n{errs}"
        );
    }

    #[track_caller]
    fn valid(config: &Config) {
        if let Err(e) = validate(config) {
            panic!("expected no errors, got:\n{e}");
        }
    }

    #[test]
    fn base_and_example_validate() {
        valid(&base());
        let example = parse_ok(EXAMPLE);
        valid(&example);
        assert!(Config::from_yaml(EXAMPLE).is_ok());
    }

    #[test]
    fn reports_every_error_not_only_the_first() {
        let mut c = base();
        c.system.hostname = String::new();
        c.ports[0].mtu = 1;
        c.vlans[1].id = 0;
        let errs = validate(&c).unwrap_err().0;
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["system.hostname", "ports[0].mtu", "vlans[1].id"]);
    }

    // ---- dataplane ------------------------------------------------------------

    #[test]
    fn dpdk_ports_and_eal_args() {
        let c = with(
            "dataplane:
  workers: 2
  dpdk:
    eal_args: [--no-huge, --no-pci, -m, '512', --no-shconf]
    ports:
      - port: eth1
      - port: eth2
        device: net_null0,size=64
",
        );
        valid(&c);
        assert_eq!(c.dataplane.worker_count(), 2);
        assert_eq!(c.dataplane.eal_args()[0], "--no-huge");
        assert_eq!(
            c.dpdk_device("eth1").as_deref(),
            Some("net_af_packet0,iface=eth1")
        );
        assert_eq!(c.dpdk_device("eth2").as_deref(), Some("net_null0,size=64"));
        assert_eq!(c.dpdk_device("eth3"), None);
        assert!(c.uses_dpdk());
        assert!(!base().uses_dpdk());
        // Round trip, and nothing is written for a config without DPDK.
        let again = Config::from_yaml(&c.to_yaml()).unwrap();
        assert_eq!(again, c);
        assert!(!base().to_yaml().contains("dpdk"));
    }

    #[test]
    fn dpdk_port_must_exist_once() {
        let c = with("dataplane: { dpdk: { ports: [{ port: eth9 }] } }\n");
        expect(
            &c,
            "dataplane.dpdk.ports[0].port",
            "port eth9 does not exist",
        );
        let c = with(
            "dataplane: { dpdk: { ports: [{ port: eth1 }, { port: eth1, device: net_null1 }] } }\n",
        );
        expect(
            &c,
            "dataplane.dpdk.ports[1].port",
            "already bound to DPDK by dataplane.dpdk.ports[0]",
        );
    }

    #[test]
    fn dpdk_device_strings() {
        let dev = |d: &str| {
            with(&format!(
                "dataplane: {{ dpdk: {{ ports: [{{ port: eth1, device: '{d}' }}] }} }}\n"
            ))
        };
        valid(&dev("net_memif0,role=server,socket=/run/memif.sock"));
        expect(&dev(""), "dataplane.dpdk.ports[0].device", "empty");
        expect(
            &dev("net_null0, size=64"),
            "dataplane.dpdk.ports[0].device",
            "contains ' '",
        );
        expect(
            &dev("0net"),
            "dataplane.dpdk.ports[0].device",
            "must start with a letter",
        );
        expect(
            &dev("net_null0,size"),
            "dataplane.dpdk.ports[0].device",
            "not key=value",
        );
        let c = with(
            "dataplane: { dpdk: { ports: [{ port: eth1, device: 'net_null0' }, { port: eth2, device: 'net_null0,size=64' }] } }\n",
        );
        expect(
            &c,
            "dataplane.dpdk.ports[1].device",
            "DPDK device net_null0 is already used by dataplane.dpdk.ports[0]",
        );
    }

    #[test]
    fn dataplane_workers_and_eal_args() {
        expect(
            &with("dataplane: { workers: 0 }\n"),
            "dataplane.workers",
            "outside 1..=64",
        );
        expect(
            &with("dataplane: { workers: 65 }\n"),
            "dataplane.workers",
            "outside 1..=64",
        );
        valid(&with("dataplane: { workers: 64 }\n"));
        expect(
            &with("dataplane: { dpdk: { eal_args: [--no-huge, ''] } }\n"),
            "dataplane.dpdk.eal_args[1]",
            "empty",
        );
        let err = Config::from_yaml("dataplane: { dpdk: { eal: [] } }\n").unwrap_err();
        assert!(err.to_string().contains("dataplane.dpdk"), "{err}");
    }

    // ---- system -------------------------------------------------------------

    #[test]
    fn p4runtime_target() {
        let c = with(
            "dataplane:
  backend: p4runtime
  p4runtime:
    address: 127.0.0.1:9559
    device_id: 3
    election_id: 10
    role: nos
    ports: [{ port: eth2, number: 7 }]
",
        );
        valid(&c);
        let p4 = c.dataplane.p4runtime.as_ref().unwrap();
        assert_eq!((p4.device_id, p4.election_id), (3, Some(10)));
        assert_eq!(c.p4_port("eth2"), Some(7));
        assert_eq!(c.p4_port(&c.ports[0].name), Some(1));
        assert_eq!(c.p4_port("nope"), None);
        valid(&with(
            "dataplane: { backend: p4runtime, p4runtime: { address: '[2001:db8::1]:9559' } }\n",
        ));
        valid(&with(
            "dataplane: { backend: p4runtime, p4runtime: { address: 'unix:/run/p4rt.sock' } }\n",
        ));
        assert_eq!(
            with("dataplane: { backend: p4runtime, p4runtime: { address: 'sw1:9559' } }\n")
                .dataplane
                .p4runtime
                .unwrap()
                .device_id,
            1
        );
    }

    #[test]
    fn p4runtime_needs_its_section_and_only_with_its_backend() {
        expect(
            &with("dataplane: { backend: p4runtime }\n"),
            "dataplane.p4runtime",
            "needs the target",
        );
        expect(
            &with("dataplane: { p4runtime: { address: 'sw:1' } }\n"),
            "dataplane.p4runtime",
            "only backend p4runtime",
        );
        expect(
            &with(
                "dataplane: { backend: p4runtime, workers: 2, p4runtime: { address: 'sw:1' } }\n",
            ),
            "dataplane.workers",
            "only the x86 backend",
        );
        expect(
            &with("dataplane: { backend: p4runtime, dpdk: { eal_args: [--no-huge] }, p4runtime: { address: 'sw:1' } }\n"),
            "dataplane.dpdk",
            "only the x86 backend uses DPDK",
        );
        let err = Config::from_yaml("dataplane: { backend: p4rt }\n").unwrap_err();
        assert!(err.to_string().contains("dataplane.backend"), "{err}");
    }

    #[test]
    fn p4runtime_fields() {
        let p4 = |extra: &str| {
            with(&format!(
                "dataplane: {{ backend: p4runtime, p4runtime: {{ {extra} }} }}\n"
            ))
        };
        for (addr, needle) in [
            ("sw", "not host:port"),
            ("sw:0", "not a TCP port"),
            ("sw:x", "not a TCP port"),
            (":9559", "no host"),
            ("2001:db8::1:9559", "in brackets"),
            ("[2001:db8::g]:1", "not an IPv6 address"),
            ("a b:1", "not a host name"),
            ("unix:run/p4rt.sock", "unix:/absolute/path"),
            ("unix:/", "unix:/absolute/path"),
        ] {
            expect(
                &p4(&format!("address: '{addr}'")),
                "dataplane.p4runtime.address",
                needle,
            );
        }
        expect(
            &p4("address: 'sw:1', p4info: ''"),
            "dataplane.p4runtime.p4info",
            "empty",
        );
        expect(
            &p4("address: 'sw:1', election_id: 0"),
            "dataplane.p4runtime.election_id",
            "election id 0",
        );
        expect(
            &p4("address: 'sw:1', role: ''"),
            "dataplane.p4runtime.role",
            "empty",
        );
        let err = Config::from_yaml(
            "dataplane: { backend: p4runtime, p4runtime: { address: 'sw:1', device: 2 } }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("dataplane.p4runtime"), "{err}");
    }

    #[test]
    fn p4runtime_port_numbers() {
        let p4 = |ports: &str| {
            with(&format!(
                "dataplane: {{ backend: p4runtime, p4runtime: {{ address: 'sw:1', ports: [{ports}] }} }}\n"
            ))
        };
        expect(
            &p4("{ port: eth9, number: 5 }"),
            "dataplane.p4runtime.ports[0].port",
            "does not exist",
        );
        expect(
            &p4("{ port: eth2, number: 20 }, { port: eth2, number: 21 }"),
            "dataplane.p4runtime.ports[1].port",
            "already has a P4 port number",
        );
        for n in [0, 255, 511] {
            expect(
                &p4(&format!("{{ port: eth2, number: {n} }}")),
                "dataplane.p4runtime.ports[0].number",
                "outside 1..=510",
            );
        }
        // eth1 is P4 port 1 by default (the first port).
        let c = p4("{ port: eth2, number: 1 }");
        expect(
            &c,
            "dataplane.p4runtime.ports[0].number",
            "port eth2 would be P4 port 1, which port eth1 is already",
        );
        valid(&p4("{ port: eth2, number: 1 }, { port: eth1, number: 2 }"));
    }

    #[test]
    fn hostname_not_empty() {
        let mut c = base();
        c.system.hostname = String::new();
        expect(&c, "system.hostname", "hostname is empty");
    }

    #[test]
    fn hostname_characters() {
        let mut c = base();
        c.system.hostname = "edge_1".into();
        expect(&c, "system.hostname", "contains '_'");
        c.system.hostname = "Edge-1.lab".into();
        valid(&c);
    }

    #[test]
    fn hostname_length() {
        let mut c = base();
        c.system.hostname = "a".repeat(64);
        expect(&c, "system.hostname", "64 characters long; at most 63");
        c.system.hostname = "a".repeat(63);
        valid(&c);
    }

    // ---- ports --------------------------------------------------------------

    #[test]
    fn port_names_unique() {
        let mut c = base();
        c.ports.push(PortConfig {
            name: "eth1".into(),
            linux: Some("eth5".into()),
            mtu: 1500,
            enabled: true,
            description: None,
        });
        expect(
            &c,
            "ports[4].name",
            "port name eth1 is already used by ports[0]",
        );
    }

    #[test]
    fn linux_names_unique() {
        let mut c = base();
        c.ports[3].linux = Some("eth2".into());
        expect(
            &c,
            "ports[3].linux",
            "Linux interface eth2 is already used by port eth2 (ports[1])",
        );
    }

    #[test]
    fn linux_name_length() {
        let mut c = base();
        c.ports[3].linux = Some("enp0s31f6-long-x".into());
        expect(
            &c,
            "ports[3].linux",
            "16 bytes long; Linux allows at most 15",
        );
        c.ports.push(PortConfig {
            name: "a-very-long-port-name".into(),
            linux: Some("eth9".into()),
            mtu: 1500,
            enabled: true,
            description: None,
        });
        c.ports[3].linux = None;
        valid(&c);
    }

    #[test]
    fn port_mtu_range() {
        let mut c = base();
        c.ports[1].mtu = 9217;
        expect(&c, "ports[1].mtu", "mtu 9217 is outside 68..=9216");
        c.ports[1].mtu = 67;
        expect(&c, "ports[1].mtu", "mtu 67");
        c.ports[1].mtu = 68;
        valid(&c);
        c.ports[1].mtu = 9216;
        valid(&c);
    }

    // ---- vrfs ---------------------------------------------------------------

    #[test]
    fn vrf_names_unique() {
        let mut c = base();
        c.vrfs.push(VrfConfig {
            name: "blue".into(),
        });
        expect(&c, "vrfs[1].name", "vrf blue is already listed at vrfs[0]");
    }

    #[test]
    fn vrf_default_is_implicit() {
        let mut c = base();
        c.vrfs.push(VrfConfig {
            name: "default".into(),
        });
        expect(&c, "vrfs[1].name", "default always exists");
    }

    // ---- vlans --------------------------------------------------------------

    #[test]
    fn vlan_id_range() {
        let mut c = base();
        c.vlans[1].id = 4095;
        expect(&c, "vlans[1].id", "VLAN id 4095 is outside 1..=4094");
    }

    #[test]
    fn vlan_id_unique() {
        let mut c = base();
        c.vlans.push(VlanConfig {
            id: 20,
            name: None,
            untagged: vec![],
            tagged: vec!["eth2".into()],
        });
        expect(&c, "vlans[2].id", "VLAN 20 is already defined at vlans[1]");
    }

    #[test]
    fn vlan_members_exist() {
        let mut c = base();
        c.vlans[1].tagged.push("eth9".into());
        expect(
            &c,
            "vlans[1].tagged[2]",
            "port eth9 does not exist (ports: eth1, eth2, eth3, eth4)",
        );
    }

    #[test]
    fn untagged_in_at_most_one_vlan() {
        let mut c = base();
        c.vlans.push(VlanConfig {
            id: 30,
            name: None,
            untagged: vec!["eth4".into(), "eth3".into()],
            tagged: vec![],
        });
        expect(
            &c,
            "vlans[2].untagged[1]",
            "port eth3 is already an untagged member of VLAN 10 (vlans[0].untagged[0])",
        );
    }

    #[test]
    fn not_tagged_and_untagged_in_one_vlan() {
        let mut c = base();
        c.vlans[0].tagged.push("eth3".into());
        expect(
            &c,
            "vlans[0].tagged[0]",
            "port eth3 is both tagged and untagged in VLAN 10",
        );
    }

    #[test]
    fn vlan_member_listed_twice() {
        let mut c = base();
        c.vlans[1].tagged.push("eth4".into());
        expect(
            &c,
            "vlans[1].tagged[2]",
            "port eth4 is listed twice in VLAN 20",
        );
    }

    #[test]
    fn vlan_needs_a_member() {
        let mut c = base();
        c.vlans.push(VlanConfig {
            id: 30,
            name: None,
            untagged: vec![],
            tagged: vec![],
        });
        expect(&c, "vlans[2]", "VLAN 30 has no member ports");
    }

    // ---- interfaces ---------------------------------------------------------

    fn interface(yaml: &str) -> InterfaceConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn interface_names_unique() {
        let mut c = base();
        c.interfaces
            .push(interface("{name: wan, port: eth4, ipv4: [192.0.2.129/25]}"));
        c.interfaces[3].ipv4.clear();
        expect(
            &c,
            "interfaces[3].name",
            "interface name wan is already used by interfaces[0]",
        );
    }

    #[test]
    fn interface_needs_port_or_vlan() {
        let mut c = base();
        c.interfaces.push(interface("{name: lost}"));
        expect(
            &c,
            "interfaces[3]",
            "interface lost has neither port nor vlan",
        );
    }

    #[test]
    fn interface_port_exists() {
        let mut c = base();
        c.interfaces[0].port = Some("eth7".into());
        expect(&c, "interfaces[0].port", "port eth7 does not exist");
    }

    #[test]
    fn interface_vlan_range() {
        let mut c = base();
        c.interfaces
            .push(interface("{name: sub, port: eth1, vlan: 5000}"));
        expect(&c, "interfaces[3].vlan", "VLAN id 5000 is outside 1..=4094");
    }

    #[test]
    fn vlan_interface_needs_listed_vlan() {
        let mut c = base();
        c.interfaces.push(interface("{name: svi, vlan: 30}"));
        expect(
            &c,
            "interfaces[3].vlan",
            "VLAN 30 is not defined under vlans",
        );
    }

    #[test]
    fn vlan_interface_unique_per_vlan() {
        let mut c = base();
        c.interfaces.push(interface("{name: users2, vlan: 10}"));
        expect(
            &c,
            "interfaces[3].vlan",
            "VLAN 10 already has an interface: users (interfaces[2])",
        );
    }

    #[test]
    fn port_interface_conflicts_with_untagged_membership() {
        let mut c = base();
        c.interfaces.push(interface("{name: p3, port: eth3}"));
        expect(
            &c,
            "interfaces[3].port",
            "port eth3 is an untagged member of VLAN 10 (vlans[0].untagged[0])",
        );
    }

    #[test]
    fn port_interface_unique_per_port() {
        let mut c = base();
        c.interfaces.push(interface("{name: wan2, port: eth1}"));
        expect(
            &c,
            "interfaces[3].port",
            "port eth1 already has an interface for its untagged frames: wan (interfaces[0])",
        );
    }

    #[test]
    fn sub_port_unique() {
        let mut c = base();
        c.interfaces
            .push(interface("{name: s1, port: eth1, vlan: 100}"));
        c.interfaces
            .push(interface("{name: s2, port: eth1, vlan: 100}"));
        expect(
            &c,
            "interfaces[4].vlan",
            "port eth1 VLAN 100 already has a sub-port interface: s1 (interfaces[3])",
        );
        // A sub-port beside a port interface on the same port is fine.
        c.interfaces.pop();
        valid(&c);
    }

    #[test]
    fn sub_port_conflicts_with_tagged_membership() {
        let mut c = base();
        c.interfaces
            .push(interface("{name: s, port: eth4, vlan: 20}"));
        expect(
            &c,
            "interfaces[3].vlan",
            "port eth4 is a tagged member of VLAN 20 (vlans[1].tagged[1])",
        );
        // Another tag on the same port is fine.
        c.interfaces[3].vlan = Some(21);
        valid(&c);
    }

    #[test]
    fn interface_vrf_exists() {
        let mut c = base();
        c.interfaces[1].vrf = Some("red".into());
        expect(
            &c,
            "interfaces[1].vrf",
            "vrf red does not exist (vrfs: default, blue)",
        );
        c.interfaces[1].vrf = Some("default".into());
        valid(&c);
    }

    #[test]
    fn interface_mtu_range() {
        let mut c = base();
        c.interfaces[0].mtu = Some(10_000);
        expect(&c, "interfaces[0].mtu", "mtu 10000 is outside 68..=9216");
    }

    #[test]
    fn ipv4_not_network_address() {
        let mut c = base();
        c.interfaces[0].ipv4[0] = "192.0.2.0/24".parse().unwrap();
        expect(
            &c,
            "interfaces[0].ipv4[0]",
            "192.0.2.0 is the network address of 192.0.2.0/24",
        );
    }

    #[test]
    fn ipv4_not_broadcast_address() {
        let mut c = base();
        c.interfaces[0].ipv4[0] = "192.0.2.255/24".parse().unwrap();
        expect(
            &c,
            "interfaces[0].ipv4[0]",
            "192.0.2.255 is the broadcast address of 192.0.2.0/24",
        );
    }

    #[test]
    fn ipv4_point_to_point_prefixes_use_every_address() {
        let mut c = base();
        c.interfaces[0].ipv4 = vec![
            "192.0.2.0/31".parse().unwrap(),
            "192.0.2.255/32".parse().unwrap(),
        ];
        valid(&c);
    }

    #[test]
    fn duplicate_address_on_one_interface() {
        let mut c = base();
        c.interfaces[0].ipv4.push("192.0.2.1/24".parse().unwrap());
        expect(
            &c,
            "interfaces[0].ipv4[1]",
            "address 192.0.2.1 is listed twice on interface wan (also interfaces[0].ipv4[0])",
        );
    }

    #[test]
    fn duplicate_address_across_interfaces() {
        let mut c = base();
        c.interfaces[2].ipv4 = vec!["192.0.2.1/24".parse().unwrap()];
        expect(
            &c,
            "interfaces[2].ipv4[0]",
            "address 192.0.2.1 is already assigned to interface wan as 192.0.2.1/24 (interfaces[0].ipv4[0])",
        );
    }

    #[test]
    fn subnets_overlap_across_interfaces() {
        let mut c = base();
        c.interfaces[2].ipv4 = vec!["192.0.2.129/25".parse().unwrap()];
        expect(
            &c,
            "interfaces[2].ipv4[0]",
            "192.0.2.129/25 overlaps 192.0.2.1/24 on interface wan (interfaces[0].ipv4[0])",
        );
    }

    #[test]
    fn subnets_overlap_within_one_interface() {
        let mut c = base();
        c.interfaces[0].ipv4.push("192.0.0.1/16".parse().unwrap());
        expect(
            &c,
            "interfaces[0].ipv4[1]",
            "192.0.0.1/16 overlaps 192.0.2.1/24 on interface wan (interfaces[0].ipv4[0])",
        );
    }

    #[test]
    fn subnets_may_overlap_in_different_vrfs() {
        let mut c = base();
        // lan is in vrf blue; wan in default.
        c.interfaces[1].ipv4 = vec!["192.0.2.1/24".parse().unwrap()];
        c.interfaces[1].ipv6 = vec!["2001:db8:1::1/64".parse().unwrap()];
        valid(&c);
    }

    #[test]
    fn ipv6_subnets_overlap() {
        let mut c = base();
        c.interfaces[2].ipv6 = vec!["2001:db8:1:0:8000::1/65".parse().unwrap()];
        expect(
            &c,
            "interfaces[2].ipv6[0]",
            "2001:db8:1:0:8000::1/65 overlaps 2001:db8:1::1/64 on interface wan (interfaces[0].ipv6[0])",
        );
    }

    #[test]
    fn ipv6_duplicates() {
        let mut c = base();
        c.interfaces[0]
            .ipv6
            .push("2001:db8:1::1/64".parse().unwrap());
        expect(
            &c,
            "interfaces[0].ipv6[1]",
            "address 2001:db8:1::1 is listed twice",
        );
    }

    #[test]
    fn ipv6_link_local_repeats_across_interfaces() {
        let mut c = base();
        c.interfaces[0].ipv6.push("fe80::1/64".parse().unwrap());
        c.interfaces[2].ipv6.push("fe80::1/64".parse().unwrap());
        valid(&c);
    }

    // ---- static routes ------------------------------------------------------

    #[test]
    fn route_prefix_without_host_bits() {
        let c = with("static_routes:\n  - {prefix: 10.1.2.3/16, blackhole: true}\n");
        expect(
            &c,
            "static_routes[0].prefix",
            "prefix 10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?",
        );
    }

    #[test]
    fn route_vrf_exists() {
        let c = with("static_routes:\n  - {prefix: 10.0.0.0/8, vrf: red, blackhole: true}\n");
        expect(&c, "static_routes[0].vrf", "vrf red does not exist");
    }

    #[test]
    fn route_needs_next_hops_or_blackhole() {
        let c = with("static_routes:\n  - {prefix: 10.0.0.0/8}\n");
        expect(
            &c,
            "static_routes[0]",
            "route 10.0.0.0/8 has no next_hops and is not blackhole",
        );
    }

    #[test]
    fn route_not_both_next_hops_and_blackhole() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, blackhole: true, next_hops: [{address: 192.0.2.2}]}\n",
        );
        expect(
            &c,
            "static_routes[0].blackhole",
            "route 10.0.0.0/8 has both next_hops and blackhole: true",
        );
    }

    #[test]
    fn next_hop_family_matches_prefix() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: '2001:db8:1::2'}]}\n",
        );
        expect(
            &c,
            "static_routes[0].next_hops[0].address",
            "next hop 2001:db8:1::2 is IPv6 but prefix 10.0.0.0/8 is IPv4",
        );
    }

    #[test]
    fn next_hop_interface_exists() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: 192.0.2.2, interface: wan0}]}\n",
        );
        expect(
            &c,
            "static_routes[0].next_hops[0].interface",
            "interface wan0 does not exist (interfaces: wan, lan, users)",
        );
    }

    #[test]
    fn next_hop_interface_in_route_vrf() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: 198.51.100.2, interface: lan}]}\n",
        );
        expect(
            &c,
            "static_routes[0].next_hops[0].interface",
            "interface lan is in vrf blue, but the route is in vrf default",
        );
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, vrf: blue, next_hops: [{address: 198.51.100.2, interface: lan}]}\n",
        );
        valid(&c);
    }

    #[test]
    fn next_hop_in_a_connected_subnet() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: 198.51.100.99}]}\n",
        );
        // 198.51.100.0/24 is connected, but in vrf blue.
        expect(
            &c,
            "static_routes[0].next_hops[0].address",
            "no interface in vrf default has a subnet containing 198.51.100.99",
        );
    }

    #[test]
    fn next_hop_not_own_address() {
        let c =
            with("static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: 192.0.2.1}]}\n");
        expect(
            &c,
            "static_routes[0].next_hops[0].address",
            "next hop 192.0.2.1 is this router's own address (interface wan, interfaces[0].ipv4[0])",
        );
    }

    #[test]
    fn next_hop_weight_at_least_one() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: 192.0.2.2, weight: 0}]}\n",
        );
        expect(
            &c,
            "static_routes[0].next_hops[0].weight",
            "weight 0 is not allowed",
        );
    }

    #[test]
    fn next_hops_unique_in_a_route() {
        let c = with(
            "static_routes:\n  - {prefix: 10.0.0.0/8, next_hops: [{address: 192.0.2.2}, {address: 192.0.2.2, weight: 2}]}\n",
        );
        expect(
            &c,
            "static_routes[0].next_hops[1].address",
            "next hop 192.0.2.2 is listed twice in this route (also static_routes[0].next_hops[0])",
        );
    }

    #[test]
    fn route_unique_per_vrf_and_prefix() {
        let c = with(
            "static_routes:
  - {prefix: 10.0.0.0/8, blackhole: true}
  - {prefix: 10.0.0.0/8, vrf: blue, blackhole: true}
  - {prefix: 10.0.0.0/8, vrf: default, next_hops: [{address: 192.0.2.2}]}
",
        );
        expect(
            &c,
            "static_routes[2].prefix",
            "a static route for 10.0.0.0/8 in vrf default is already defined at static_routes[0]",
        );
    }

    #[test]
    fn route_distance_range() {
        let c = with("static_routes:\n  - {prefix: 10.0.0.0/8, blackhole: true, distance: 0}\n");
        expect(&c, "static_routes[0].distance", "distance 0 is reserved");
        let c = with("static_routes:\n  - {prefix: 10.0.0.0/8, blackhole: true, distance: 255}\n");
        valid(&c);
    }

    #[test]
    fn ipv6_route() {
        let c = with(
            "static_routes:\n  - {prefix: '::/0', next_hops: [{address: '2001:db8:1::fe'}]}\n",
        );
        valid(&c);
        let c = with(
            "static_routes:\n  - {prefix: '2001:db8:9::/48', next_hops: [{address: '2001:db8:9::1'}]}\n",
        );
        expect(
            &c,
            "static_routes[0].next_hops[0].address",
            "no interface in vrf default has a subnet containing 2001:db8:9::1",
        );
    }

    // ---- acl ----------------------------------------------------------------

    fn acl(rules: &str) -> Config {
        with(&format!("acl:\n{rules}"))
    }

    #[test]
    fn acl_names_unique() {
        let c = acl(
            "  - {name: a, priority: 1, action: drop}\n  - {name: a, priority: 2, action: drop}\n",
        );
        expect(&c, "acl[1].name", "rule name a is already used by acl[0]");
    }

    #[test]
    fn acl_in_port_exists() {
        let c = acl("  - {name: a, priority: 1, action: drop, match: {in_port: eth8}}\n");
        expect(&c, "acl[0].match.in_port", "port eth8 does not exist");
    }

    #[test]
    fn acl_macs_parse() {
        let c = acl(
            "  - {name: a, priority: 1, action: drop, match: {src_mac: '02:00:00:00:00:01/ff:ff:ff:00:00:00', dst_mac: '02:00:00:00:00'}}\n",
        );
        expect(
            &c,
            "acl[0].match.dst_mac",
            "invalid MAC match \"02:00:00:00:00\"",
        );
        let c = acl(
            "  - {name: a, priority: 1, action: drop, match: {src_mac: '02:00:00:00:00:01/ff:ff:ff:00:00'}}\n",
        );
        expect(&c, "acl[0].match.src_mac", "invalid MAC match");
    }

    #[test]
    fn acl_protocol_parses() {
        let c = acl("  - {name: a, priority: 1, action: drop, match: {protocol: tpc}}\n");
        expect(&c, "acl[0].match.protocol", "unknown protocol \"tpc\"");
        let c = acl("  - {name: a, priority: 1, action: drop, match: {protocol: '256'}}\n");
        expect(&c, "acl[0].match.protocol", "unknown protocol \"256\"");
        let c = acl("  - {name: a, priority: 1, action: drop, match: {protocol: '47'}}\n");
        valid(&c);
    }

    #[test]
    fn acl_ports_parse() {
        let c = acl(
            "  - {name: a, priority: 1, action: drop, match: {protocol: udp, dst_port: '2000-1000'}}\n",
        );
        expect(&c, "acl[0].match.dst_port", "port range 2000-1000 is empty");
        let c = acl(
            "  - {name: a, priority: 1, action: drop, match: {protocol: udp, src_port: '10-x'}}\n",
        );
        expect(
            &c,
            "acl[0].match.src_port",
            "invalid port or port range \"10-x\"",
        );
    }

    #[test]
    fn acl_ports_need_tcp_or_udp() {
        let c = acl("  - {name: a, priority: 1, action: drop, match: {dst_port: 22}}\n");
        expect(
            &c,
            "acl[0].match.dst_port",
            "matching dst_port needs protocol tcp or udp (this rule sets no protocol)",
        );
        let c = acl(
            "  - {name: a, priority: 1, action: drop, match: {protocol: icmp, src_port: '1-2'}}\n",
        );
        expect(
            &c,
            "acl[0].match.src_port",
            "matching src_port needs protocol tcp or udp (this rule has protocol icmp)",
        );
    }

    #[test]
    fn acl_set_vrf_needs_vrf() {
        let c = acl("  - {name: a, stage: pre_ingress, priority: 1, action: set_vrf}\n");
        expect(&c, "acl[0].action", "action set_vrf needs vrf");
    }

    #[test]
    fn acl_set_vrf_vrf_exists() {
        let c = acl("  - {name: a, stage: pre_ingress, priority: 1, action: set_vrf, vrf: red}\n");
        expect(&c, "acl[0].vrf", "vrf red does not exist");
        let c =
            acl("  - {name: a, stage: pre_ingress, priority: 1, action: set_vrf, vrf: default}\n");
        valid(&c);
    }

    #[test]
    fn acl_set_vrf_only_pre_ingress() {
        let c = acl("  - {name: a, priority: 1, action: set_vrf, vrf: blue}\n");
        expect(
            &c,
            "acl[0].stage",
            "action set_vrf is only valid in stage pre_ingress (this rule is in stage ingress, the default)",
        );
    }

    #[test]
    fn acl_vrf_only_with_set_vrf() {
        let c = acl("  - {name: a, priority: 1, action: permit, vrf: blue}\n");
        expect(
            &c,
            "acl[0].vrf",
            "vrf blue is only used with action set_vrf (this rule's action is permit)",
        );
    }

    #[test]
    fn acl_vlan_range() {
        let c = acl("  - {name: a, priority: 1, action: drop, match: {vlan: 0}}\n");
        expect(&c, "acl[0].match.vlan", "VLAN id 0 is outside 1..=4094");
    }

    #[test]
    fn acl_dscp_range() {
        let c = acl("  - {name: a, priority: 1, action: drop, match: {dscp: 64}}\n");
        expect(&c, "acl[0].match.dscp", "dscp 64 is outside 0..=63");
    }

    #[test]
    fn acl_ips_without_host_bits() {
        let c = acl("  - {name: a, priority: 1, action: drop, match: {src_ip: 192.0.2.1/24}}\n");
        expect(
            &c,
            "acl[0].match.src_ip",
            "src_ip 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?",
        );
    }

    #[test]
    fn acl_ips_same_family() {
        let c = acl(
            "  - {name: a, priority: 1, action: drop, match: {src_ip: 192.0.2.0/24, dst_ip: '2001:db8::/32'}}\n",
        );
        expect(
            &c,
            "acl[0].match.dst_ip",
            "dst_ip 2001:db8::/32 is IPv6 but src_ip 192.0.2.0/24 is IPv4",
        );
    }

    #[test]
    fn acl_priority_unique_per_stage() {
        let c = acl("  - {name: a, priority: 5, action: drop}
  - {name: b, stage: pre_ingress, priority: 5, action: set_vrf, vrf: blue}
  - {name: c, priority: 5, action: permit}
");
        expect(
            &c,
            "acl[2].priority",
            "priority 5 in stage ingress is already used by rule a (acl[0])",
        );
    }

    // ---- bgp ----------------------------------------------------------------

    fn bgp(body: &str) -> Config {
        with(&format!("bgp:\n{body}"))
    }

    #[test]
    fn bgp_policy_references_and_prefix_lengths() {
        let head = "  asn: 64500\n  router_id: 192.0.2.1\n";
        let c = bgp(&format!(
            "{head}  neighbors:\n    - {{address: 192.0.2.2, remote_as: 64501, import_policy: nope}}\n  policies:\n    - name: p\n"
        ));
        expect(
            &c,
            "bgp.neighbors[0].import_policy",
            "policy nope does not exist (policies: p)",
        );
        let c = bgp(&format!(
            "{head}  policies:\n    - name: p\n      rules:\n        - match: {{prefixes: [{{prefix: 10.0.0.0/8, ge: 4}}]}}\n          action: accept\n"
        ));
        expect(
            &c,
            "bgp.policies[0].rules[0].match.prefixes[0]",
            "lengths must satisfy 8 <= ge",
        );
        let c = bgp(&format!(
            "{head}  policies:\n    - name: p\n      rules:\n        - match: {{community: \"1:x\"}}\n          action: accept\n"
        ));
        expect(
            &c,
            "bgp.policies[0].rules[0].match.community",
            "invalid community",
        );
    }

    #[test]
    fn bgp_policy_regex_and_large_community_are_checked() {
        let head = "  asn: 64500\n  router_id: 192.0.2.1\n";
        let c = bgp(&format!(
            "{head}  policies:\n    - name: p\n      rules:\n        - match: {{as_path_regex: \"_(64501\"}}\n          action: accept\n"
        ));
        expect(
            &c,
            "bgp.policies[0].rules[0].match.as_path_regex",
            "invalid AS-path regular expression",
        );
        let c = bgp(&format!(
            "{head}  policies:\n    - name: p\n      rules:\n        - set: {{large_communities_add: [\"1:2\"]}}\n          action: accept\n"
        ));
        expect(
            &c,
            "bgp.policies[0].rules[0].set.large_communities_add[0]",
            "invalid large community",
        );
    }

    #[test]
    fn bgp_asn_not_zero() {
        let c = bgp("  asn: 0\n  router_id: 192.0.2.1\n");
        expect(&c, "bgp.asn", "AS number 0 is reserved");
    }

    #[test]
    fn bgp_router_id_not_zero() {
        let c = bgp("  asn: 64500\n  router_id: 0.0.0.0\n");
        expect(&c, "bgp.router_id", "router id 0.0.0.0 is not allowed");
    }

    #[test]
    fn bgp_neighbors_unique() {
        let c = bgp(
            "  asn: 64500\n  router_id: 192.0.2.1\n  neighbors:\n    - {address: 192.0.2.2, remote_as: 1}\n    - {address: 192.0.2.2, remote_as: 2}\n",
        );
        expect(
            &c,
            "bgp.neighbors[1].address",
            "neighbor 192.0.2.2 is already configured at bgp.neighbors[0]",
        );
    }

    #[test]
    fn bgp_remote_as_not_zero() {
        let c = bgp(
            "  asn: 64500\n  router_id: 192.0.2.1\n  neighbors:\n    - {address: 192.0.2.2, remote_as: 0}\n",
        );
        expect(&c, "bgp.neighbors[0].remote_as", "AS number 0 is reserved");
    }

    #[test]
    fn bgp_hold_time() {
        let c = bgp(
            "  asn: 64500\n  router_id: 192.0.2.1\n  neighbors:\n    - {address: 192.0.2.2, remote_as: 1, hold_time: 2}\n",
        );
        expect(
            &c,
            "bgp.neighbors[0].hold_time",
            "hold time 2 s is too short: use 0 (no keepalives) or at least 3",
        );
        for ok in [0, 3] {
            let c = bgp(&format!(
                "  asn: 64500\n  router_id: 192.0.2.1\n  neighbors:\n    - {{address: 192.0.2.2, remote_as: 1, hold_time: {ok}}}\n"
            ));
            valid(&c);
        }
    }

    // ---- helpers ------------------------------------------------------------

    #[test]
    fn masked_mac() {
        let m = parse_masked_mac("02:00:00:00:00:01").unwrap();
        assert_eq!(m.value, "02:00:00:00:00:01".parse().unwrap());
        assert_eq!(m.mask, MacAddr::BROADCAST);
        let m = parse_masked_mac("00:00:5e:00:53:00/ff:ff:ff:ff:ff:00").unwrap();
        assert_eq!(m.value, MacAddr([0, 0, 0x5e, 0, 0x53, 0]));
        assert_eq!(m.mask, MacAddr([0xff, 0xff, 0xff, 0xff, 0xff, 0]));
        assert!(parse_masked_mac("").is_err());
        assert!(parse_masked_mac("02:00:00:00:00:01/").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol("tcp"), Ok(6));
        assert_eq!(parse_protocol("UDP"), Ok(17));
        assert_eq!(parse_protocol("icmp"), Ok(1));
        assert_eq!(parse_protocol("icmpv6"), Ok(58));
        assert_eq!(parse_protocol("0"), Ok(0));
        assert_eq!(parse_protocol("255"), Ok(255));
        assert!(parse_protocol("-1").is_err());
        assert!(parse_protocol("sctp").is_err());
    }

    #[test]
    fn port_specs() {
        let r = |first, last| Ok(PortRange { first, last });
        assert_eq!(PortSpec::Single(5001).range(), r(5001, 5001));
        assert_eq!(PortSpec::Range("1000-2000".into()).range(), r(1000, 2000));
        assert_eq!(PortSpec::Range(" 80 ".into()).range(), r(80, 80));
        assert_eq!(PortSpec::Range("0-65535".into()).range(), r(0, 65535));
        assert!(PortSpec::Range("2-1".into()).range().is_err());
        assert!(PortSpec::Range("1-65536".into()).range().is_err());
        assert!(PortSpec::Range("1-2-3".into()).range().is_err());
        assert!(PortSpec::Range("".into()).range().is_err());
    }

    // ---- management ---------------------------------------------------------

    const ARGON2: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    fn users(list: &[(&str, &str)]) -> Config {
        let mut yaml = String::from("management:\n  users:\n");
        for (name, hash) in list {
            yaml.push_str(&format!(
                "    - name: {name:?}\n      password_hash: {hash:?}\n"
            ));
        }
        with(&yaml)
    }

    #[test]
    fn management_users_with_argon2_and_sha512_hashes() {
        let c = users(&[("admin", ARGON2), ("ops", SHA512)]);
        valid(&c);
        assert_eq!(c.management.users[1].name, "ops");
        // The section round-trips, and is left out when empty.
        let again = parse_ok(&c.to_yaml());
        assert_eq!(again, c);
        assert!(!base().to_yaml().contains("management"));
    }

    #[test]
    fn user_names_unique() {
        let c = users(&[("admin", ARGON2), ("admin", SHA512)]);
        expect(
            &c,
            "management.users[1].name",
            "already defined at management.users[0]",
        );
    }

    #[test]
    fn user_name_characters_and_length() {
        expect(&users(&[("", ARGON2)]), "management.users[0].name", "empty");
        expect(
            &users(&[("bad name", ARGON2)]),
            "management.users[0].name",
            "contains ' '",
        );
        expect(
            &users(&[("-x", ARGON2)]),
            "management.users[0].name",
            "starts with '-'",
        );
        let long = "a".repeat(33);
        expect(
            &users(&[(&long, ARGON2)]),
            "management.users[0].name",
            "at most 32",
        );
        valid(&users(&[(&"a".repeat(32), ARGON2)]));
    }

    #[test]
    fn password_hash_must_be_a_hash() {
        let p = "management.users[0].password_hash";
        expect(
            &users(&[("admin", "secret")]),
            p,
            "never the password itself",
        );
        expect(
            &users(&[(
                "admin",
                "$argon2id$v=19$m=19456,t=2$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
            )]),
            p,
            "lacks one of m, t and p",
        );
        expect(
            &users(&[(
                "admin",
                "$argon2id$v=19$m=x,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
            )]),
            p,
            "malformed Argon2 parameter",
        );
        expect(
            &users(&[(
                "admin",
                "$argon2id$v=18$m=1,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
            )]),
            p,
            "version",
        );
        expect(
            &users(&[(
                "admin",
                "$argon2id$v=19$m=1,t=2,p=1$c2$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
            )]),
            p,
            "salt",
        );
        expect(
            &users(&[("admin", "$6$saltsalt$short")]),
            p,
            "86 characters",
        );
        expect(&users(&[("admin", "$6$rounds=10$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1")]), p, "rounds");
        expect(
            &users(&[("admin", "$1$saltsalt$abc")]),
            p,
            "not a supported password hash",
        );
        valid(&users(&[("admin", "$6$rounds=5000$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1")]));
    }

    #[test]
    fn parse_names_the_path() {
        let e = parse("interfaces:\n  - name: a\n    ipv4: [192.0.2.300/24]\n").unwrap_err();
        assert_eq!(e.0[0].path, "interfaces[0].ipv4[0]");
        let e = parse("ports:\n  - name: a\n    mtux: 1\n").unwrap_err();
        assert_eq!(e.0[0].path, "ports[0].mtux");
    }
}

#[cfg(test)]
mod parse_tests {
    use crate::config::Config;

    #[test]
    fn unknown_field_names_its_path_once() {
        let e = Config::from_yaml("ports:\n  - name: eth1\n    speed: 100\n").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, "ports[0].speed");
        assert!(
            e.0[0].reason.starts_with("unknown field `speed`"),
            "{}",
            e.0[0].reason
        );
    }

    #[test]
    fn yaml_syntax_error_says_where() {
        let e = Config::from_yaml("ports: [\n").unwrap_err();
        assert!(e.0[0].reason.contains("line 2"), "{}", e.0[0].reason);
    }
}
