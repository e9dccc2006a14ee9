//! The router's configuration document and state, seen as OpenConfig data,
//! and back.
//!
//! | OpenConfig | configuration document |
//! |---|---|
//! | `/interfaces/interface[name=P]` | the port `P` (`ports[]`) |
//! | `.../subinterfaces/subinterface[index=0]` | the router interface on `P`'s untagged frames (`port: P`) |
//! | `.../subinterfaces/subinterface[index=V]` | the sub-port interface `port: P, vlan: V` |
//! | `.../ipv4/addresses/address[ip=A]`, `ipv6` | that interface's `ipv4`/`ipv6` addresses |
//! | `.../ipv4/neighbors/neighbor[ip=A]`, `ipv6` | the ARP / neighbor-discovery entry for `A` on that interface ([`State::neighbors`], read-only; origin `DYNAMIC`, the document configures no static neighbors) |
//! | `/network-instances/network-instance[name=DEFAULT]` | the `default` VRF |
//! | `/network-instances/network-instance[name=V]` | `vrfs[]` entry `V` |
//! | `.../protocol[identifier=STATIC][name=STATIC]/static-routes/static[prefix=P]` | the static route for `P` in that VRF |
//! | `.../next-hops/next-hop[index=A]` | its next hop `A` (`index` is the address; `DROP` for a blackhole route) |
//! | `/system/config/hostname` | `system.hostname` |
//! | `.../protocol[identifier=BGP][name=BGP]/bgp`, `.../afts`, `/routing-policy` | see `mapping_bgp` |
//!
//! Settings of the document that the served models do not express (a port's
//! Linux interface, a router interface's name, VRF, MAC and MTU, VLAN
//! interfaces, next-hop weights, VLANs, ACLs, BGP networks, upstreams, the
//! conditional default route, a neighbor's next-hop-self and soft
//! reconfiguration) are kept as they are by every Set.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nos_core::config::{
    Config, InterfaceConfig, PortConfig, StaticNextHop, StaticRouteConfig, SystemConfig, VrfConfig,
    DEFAULT_VRF,
};
use tonic::Code;

use crate::backend::{Neighbor, OperStatus, State};
use crate::error::Failure;
use crate::schema::{
    Value, BGP, BGP_PROTOCOL, DEFAULT_INSTANCE, DEFAULT_NI, DROP, ETHERNET_CSMACD, L3VRF, STATIC,
    STATIC_PROTOCOL,
};
use crate::tree::{Children, Data};

/// The MTU of a port that sets none (the configuration document's default).
const DEFAULT_PORT_MTU: u32 = 1500;
/// The administrative distance of a static route that sets none.
const DEFAULT_DISTANCE: u8 = 1;
/// The highest VLAN id, which bounds subinterface indexes.
const VLAN_MAX: u32 = 4094;

// ---------------------------------------------------------------- paths

/// Escapes a key value for a path string.
pub(crate) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace(']', "\\]")
}

pub(crate) fn interface_path(port: &str) -> String {
    format!("/interfaces/interface[name={}]", esc(port))
}

pub(crate) fn subinterface_path(port: &str, index: u32) -> String {
    format!(
        "{}/subinterfaces/subinterface[index={index}]",
        interface_path(port)
    )
}

fn address_path(port: &str, index: u32, ip: IpAddr) -> String {
    let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
    format!(
        "{}/{family}/addresses/address[ip={ip}]",
        subinterface_path(port, index)
    )
}

/// The network-instance name of a VRF.
fn instance_name(vrf: &str) -> &str {
    if vrf == DEFAULT_VRF {
        DEFAULT_NI
    } else {
        vrf
    }
}

pub(crate) fn instance_path(ni: &str) -> String {
    format!("/network-instances/network-instance[name={}]", esc(ni))
}

fn static_path(ni: &str, prefix: &IpNet) -> String {
    format!(
        "{}/protocols/protocol[identifier={}][name={STATIC_PROTOCOL}]/static-routes/static[prefix={prefix}]",
        instance_path(ni),
        STATIC.name,
    )
}

fn next_hop_path(ni: &str, prefix: &IpNet, index: &str) -> String {
    format!(
        "{}/next-hops/next-hop[index={}]",
        static_path(ni, prefix),
        esc(index)
    )
}

/// The subinterface index of a router interface on a port.
fn subinterface_index(itf: &InterfaceConfig) -> u32 {
    itf.vlan.map_or(0, u32::from)
}

/// The OpenConfig path of the thing a configuration error path (as
/// `Config::validate` reports it, e.g. `interfaces[1].ipv4[0]`) names in
/// `config`, when the served models express it.
pub(crate) fn gnmi_path_of(config: &Config, cfg_path: &str) -> Option<String> {
    if cfg_path == "system.hostname" {
        return Some("/system/config/hostname".into());
    }
    if let Some(rest) = cfg_path.strip_prefix("bgp.") {
        return crate::mapping_bgp::gnmi_path_of(config, rest);
    }
    let (section, index, rest) = split_indexed(cfg_path)?;
    match section {
        "ports" => {
            let p = config.ports.get(index)?;
            let base = interface_path(&p.name);
            Some(match rest {
                ".mtu" | ".name" | ".enabled" | ".description" => {
                    format!("{base}/config{}", rest.replace('.', "/"))
                }
                _ => base,
            })
        }
        "vrfs" => config.vrfs.get(index).map(|v| instance_path(&v.name)),
        "interfaces" => {
            let itf = config.interfaces.get(index)?;
            let port = itf.port.as_deref()?;
            let idx = subinterface_index(itf);
            if let Some((family, j, _)) = rest.strip_prefix('.').and_then(split_indexed) {
                let ip = match family {
                    "ipv4" => itf.ipv4.get(j).map(|n| IpAddr::V4(n.addr())),
                    "ipv6" => itf.ipv6.get(j).map(|n| IpAddr::V6(n.addr())),
                    _ => None,
                };
                if let Some(ip) = ip {
                    return Some(address_path(port, idx, ip));
                }
            }
            Some(subinterface_path(port, idx))
        }
        "static_routes" => {
            let r = config.static_routes.get(index)?;
            let ni = instance_name(r.vrf_name());
            if let Some(("next_hops", j, _)) = rest.strip_prefix('.').and_then(split_indexed) {
                if let Some(h) = r.next_hops.get(j) {
                    return Some(next_hop_path(ni, &r.prefix, &h.address.to_string()));
                }
            }
            Some(static_path(ni, &r.prefix))
        }
        _ => None,
    }
}

/// `name[3].rest` → (`name`, 3, `.rest`).
fn split_indexed(s: &str) -> Option<(&str, usize, &str)> {
    let open = s.find('[')?;
    let close = open + s[open..].find(']')?;
    let index = s[open + 1..close].parse().ok()?;
    Some((&s[..open], index, &s[close + 1..]))
}

// ---------------------------------------------------------------- rendering

pub(crate) fn s(v: impl Into<String>) -> Data {
    Data::Leaf(Value::Str(v.into()))
}

pub(crate) fn u(v: u64) -> Data {
    Data::Leaf(Value::Uint(v))
}

pub(crate) fn b(v: bool) -> Data {
    Data::Leaf(Value::Bool(v))
}

pub(crate) fn id(v: &'static crate::schema::Ident) -> Data {
    Data::Leaf(Value::Ident(v))
}

pub(crate) fn obj(members: Vec<(&'static str, Data)>) -> Data {
    Data::Container(members.into_iter().collect())
}

fn admin(enabled: bool) -> Data {
    s(if enabled { "UP" } else { "DOWN" })
}

/// State shown alongside the configuration.
#[derive(Debug)]
pub(crate) struct StateView<'a> {
    pub state: &'a State,
    pub now: SystemTime,
    /// The installed forwarding tables, when the request reaches them.
    pub afts: Option<&'a crate::backend::Afts>,
    /// The BGP Loc-RIB, when the request reaches it.
    pub loc_rib: Option<&'a crate::backend::LocRib>,
}

/// The large tables a request reads only when its paths can reach them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Tables {
    /// The installed forwarding tables (`afts`).
    pub afts: bool,
    /// The BGP Loc-RIB (`bgp/rib`).
    pub rib: bool,
}

impl Tables {
    /// The tables some of `paths` can reach.
    pub(crate) fn reached<'a>(paths: impl IntoIterator<Item = &'a [crate::path::Elem]>) -> Tables {
        paths
            .into_iter()
            .fold(Tables::default(), |t, elems| Tables {
                afts: t.afts || reaches_afts(elems),
                rib: t.rib || reaches_rib(elems),
            })
    }
}

/// Whether a path pattern can match the node at `way` or something inside
/// it (or above it).
fn reaches(elems: &[crate::path::Elem], way: &[&str]) -> bool {
    use crate::path::Elem;
    for (i, want) in way.iter().enumerate() {
        match elems.get(i) {
            None | Some(Elem::AnyDepth) => return true,
            Some(Elem::Any { .. }) => {}
            Some(Elem::Name { name, .. }) if name == want => {}
            Some(_) => return false,
        }
    }
    true
}

/// Whether a path pattern can match `afts` of a network instance or
/// something inside it (or above it).
pub(crate) fn reaches_afts(elems: &[crate::path::Elem]) -> bool {
    reaches(elems, &["network-instances", "network-instance", "afts"])
}

/// Whether a path pattern can match the BGP `rib` (or something inside it,
/// or above it).
pub(crate) fn reaches_rib(elems: &[crate::path::Elem]) -> bool {
    reaches(
        elems,
        &[
            "network-instances",
            "network-instance",
            "protocols",
            "protocol",
            "bgp",
            "rib",
        ],
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn date_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The configuration (and, with `state`, the state) as a data tree.
pub(crate) fn render(config: &Config, state: Option<&StateView<'_>>) -> Data {
    let mut root = Children::new();
    let interfaces: Vec<Data> = config
        .ports
        .iter()
        .map(|p| render_port(config, p, state))
        .collect();
    root.insert(
        "interfaces",
        obj(vec![("interface", Data::List(interfaces))]),
    );

    let mut instances = vec![render_instance(config, DEFAULT_VRF, state)];
    for v in &config.vrfs {
        instances.push(render_instance(config, &v.name, state));
    }
    root.insert(
        "network-instances",
        obj(vec![("network-instance", Data::List(instances))]),
    );

    let hostname = config.system.hostname.clone();
    let mut system = vec![("config", obj(vec![("hostname", s(hostname.clone()))]))];
    if let Some(sv) = state {
        let mut st = vec![
            ("hostname", s(hostname)),
            ("current-datetime", s(date_time(sv.now))),
        ];
        if let Some(boot) = sv.state.boot_time_ns {
            st.push(("boot-time", u(boot)));
        }
        system.push(("state", obj(st)));
    }
    root.insert("system", obj(system));
    root.insert(
        "routing-policy",
        crate::mapping_bgp::render_routing_policy(config, state.is_some()),
    );
    Data::Container(root)
}

fn render_port(config: &Config, p: &PortConfig, state: Option<&StateView<'_>>) -> Data {
    let mut cfg = vec![
        ("name", s(&p.name)),
        ("type", id(&ETHERNET_CSMACD)),
        ("mtu", u(u64::from(p.mtu))),
        ("enabled", b(p.enabled)),
    ];
    if let Some(d) = &p.description {
        cfg.push(("description", s(d)));
    }
    let oper = state.map(|sv| sv.state.interfaces.get(&p.name));
    let mut members = vec![("name", s(&p.name))];
    if let Some(oper) = oper {
        let mut st = cfg.clone();
        st.push(("admin-status", admin(p.enabled)));
        st.push((
            "oper-status",
            s(oper.map_or(OperStatus::Unknown, |o| o.oper_status).as_str()),
        ));
        if let Some(c) = oper.and_then(|o| o.counters) {
            st.push((
                "counters",
                obj(vec![
                    ("in-octets", u(c.in_octets)),
                    ("in-pkts", u(c.in_pkts)),
                    ("in-errors", u(c.in_errors)),
                    ("in-discards", u(c.in_discards)),
                    ("out-octets", u(c.out_octets)),
                    ("out-pkts", u(c.out_pkts)),
                    ("out-errors", u(c.out_errors)),
                    ("out-discards", u(c.out_discards)),
                ]),
            ));
        }
        members.push(("state", obj(st)));
    }
    members.push(("config", obj(cfg)));

    let port_oper = oper.map(|o| o.map_or(OperStatus::Unknown, |o| o.oper_status));
    let mut subs: Vec<&InterfaceConfig> = config
        .interfaces
        .iter()
        .filter(|i| i.port.as_deref() == Some(p.name.as_str()))
        .collect();
    subs.sort_by_key(|i| subinterface_index(i));
    if !subs.is_empty() {
        let entries = subs
            .into_iter()
            .map(|i| {
                let neighbors = state.and_then(|sv| sv.state.neighbors.get(&i.name));
                render_subinterface(i, port_oper, neighbors)
            })
            .collect();
        members.push((
            "subinterfaces",
            obj(vec![("subinterface", Data::List(entries))]),
        ));
    }
    obj(members)
}

fn render_subinterface(
    itf: &InterfaceConfig,
    port_oper: Option<OperStatus>,
    neighbors: Option<&BTreeMap<IpAddr, Neighbor>>,
) -> Data {
    let index = u64::from(subinterface_index(itf));
    let mut cfg = vec![("index", u(index)), ("enabled", b(itf.enabled))];
    if let Some(d) = &itf.description {
        cfg.push(("description", s(d)));
    }
    let mut members = vec![("index", u(index))];
    if let Some(port_oper) = port_oper {
        let oper = match (itf.enabled, port_oper) {
            (false, _) => OperStatus::Down,
            (true, OperStatus::Up) => OperStatus::Up,
            (true, OperStatus::Down | OperStatus::NotPresent) => OperStatus::LowerLayerDown,
            (true, other) => other,
        };
        let mut st = cfg.clone();
        st.push(("admin-status", admin(itf.enabled)));
        st.push(("oper-status", s(oper.as_str())));
        members.push(("state", obj(st)));
    }
    members.push(("config", obj(cfg)));
    let with_state = port_oper.is_some();
    let v4: Vec<IpNet> = itf.ipv4.iter().map(|n| IpNet::V4(*n)).collect();
    let v6: Vec<IpNet> = itf.ipv6.iter().map(|n| IpNet::V6(*n)).collect();
    for (family, nets) in [("ipv4", v4), ("ipv6", v6)] {
        let v6 = family == "ipv6";
        let neighbors: Vec<Data> = neighbors
            .into_iter()
            .flatten()
            .filter(|(ip, _)| ip.is_ipv6() == v6)
            .map(|(ip, n)| {
                let ip = ip.to_string();
                let mut st = vec![("ip", s(&ip))];
                if let Some(mac) = &n.link_layer_address {
                    st.push(("link-layer-address", s(mac)));
                }
                st.push(("origin", s(n.origin.as_str())));
                if v6 {
                    st.push(("neighbor-state", s(n.state.as_str())));
                }
                obj(vec![("ip", s(&ip)), ("state", obj(st))])
            })
            .collect();
        if nets.is_empty() && neighbors.is_empty() {
            continue;
        }
        let addresses: Vec<Data> = nets
            .iter()
            .map(|n| {
                let ip = n.addr().to_string();
                let len = u64::from(n.prefix_len());
                let cfg = vec![("ip", s(&ip)), ("prefix-length", u(len))];
                let mut m = vec![("ip", s(&ip))];
                if with_state {
                    let mut st = cfg.clone();
                    st.push(("origin", s("STATIC")));
                    m.push(("state", obj(st)));
                }
                m.push(("config", obj(cfg)));
                obj(m)
            })
            .collect();
        let mut ip = Vec::new();
        if !addresses.is_empty() {
            ip.push(("addresses", obj(vec![("address", Data::List(addresses))])));
        }
        if !neighbors.is_empty() {
            ip.push(("neighbors", obj(vec![("neighbor", Data::List(neighbors))])));
        }
        members.push((family, obj(ip)));
    }
    obj(members)
}

fn render_instance(config: &Config, vrf: &str, state: Option<&StateView<'_>>) -> Data {
    let with_state = state.is_some();
    let name = instance_name(vrf);
    let ty = if vrf == DEFAULT_VRF {
        &DEFAULT_INSTANCE
    } else {
        &L3VRF
    };
    let cfg = vec![("name", s(name)), ("type", id(ty))];
    let mut members = vec![("name", s(name))];
    if with_state {
        members.push(("state", obj(cfg.clone())));
    }
    members.push(("config", obj(cfg)));

    let routes: Vec<Data> = config
        .static_routes
        .iter()
        .filter(|r| r.vrf_name() == vrf)
        .map(|r| render_route(config, r, with_state))
        .collect();
    let pcfg = vec![("identifier", id(&STATIC)), ("name", s(STATIC_PROTOCOL))];
    let mut protocol = vec![("identifier", id(&STATIC)), ("name", s(STATIC_PROTOCOL))];
    if with_state {
        protocol.push(("state", obj(pcfg.clone())));
    }
    protocol.push(("config", obj(pcfg)));
    if !routes.is_empty() {
        protocol.push(("static-routes", obj(vec![("static", Data::List(routes))])));
    }
    let mut protocols = vec![obj(protocol)];
    if vrf == DEFAULT_VRF {
        if let Some(bgp) = &config.bgp {
            protocols.push(crate::mapping_bgp::render_bgp(
                bgp,
                state.map(|sv| sv.state),
                state.and_then(|sv| sv.loc_rib),
            ));
        }
    }
    members.push(("protocols", obj(vec![("protocol", Data::List(protocols))])));
    if let Some(aft) = state.and_then(|sv| sv.afts?.get(vrf)) {
        members.push(("afts", crate::mapping_bgp::render_aft(aft)));
    }
    obj(members)
}

fn render_route(config: &Config, r: &StaticRouteConfig, with_state: bool) -> Data {
    let prefix = r.prefix.to_string();
    let mut members = vec![("prefix", s(&prefix))];
    let cfg = vec![("prefix", s(&prefix))];
    if with_state {
        members.push(("state", obj(cfg.clone())));
    }
    members.push(("config", obj(cfg)));
    let preference = u(u64::from(r.distance));
    let mut hops = Vec::new();
    if r.blackhole {
        let cfg = vec![
            ("index", s(DROP.name)),
            ("next-hop", id(&DROP)),
            ("preference", preference.clone()),
        ];
        let mut m = vec![("index", s(DROP.name))];
        if with_state {
            m.push(("state", obj(cfg.clone())));
        }
        m.push(("config", obj(cfg)));
        hops.push(obj(m));
    }
    for h in &r.next_hops {
        let index = h.address.to_string();
        let cfg = vec![
            ("index", s(&index)),
            ("next-hop", s(&index)),
            ("preference", preference.clone()),
        ];
        let mut m = vec![("index", s(&index))];
        if with_state {
            m.push(("state", obj(cfg.clone())));
        }
        m.push(("config", obj(cfg)));
        let itf = h
            .interface
            .as_deref()
            .and_then(|n| config.interfaces.iter().find(|i| i.name == n));
        if let Some((port, idx)) =
            itf.and_then(|i| Some((i.port.as_deref()?, subinterface_index(i))))
        {
            let cfg = vec![("interface", s(port)), ("subinterface", u(u64::from(idx)))];
            let mut r = Vec::new();
            if with_state {
                r.push(("state", obj(cfg.clone())));
            }
            r.push(("config", obj(cfg)));
            m.push(("interface-ref", obj(r)));
        }
        hops.push(obj(m));
    }
    if !hops.is_empty() {
        members.push(("next-hops", obj(vec![("next-hop", Data::List(hops))])));
    }
    obj(members)
}

// ---------------------------------------------------------------- back to the document

pub(crate) fn get<'a>(c: &'a Children, name: &str) -> Option<&'a Data> {
    c.get(name)
}

pub(crate) fn container<'a>(c: &'a Children, name: &str) -> Option<&'a Children> {
    get(c, name).and_then(Data::children)
}

pub(crate) fn entries<'a>(c: &'a Children, name: &str) -> &'a [Data] {
    match get(c, name) {
        Some(Data::List(e)) => e,
        _ => &[],
    }
}

pub(crate) fn leaf<'a>(c: &'a Children, name: &str) -> Option<&'a Value> {
    match get(c, name) {
        Some(Data::Leaf(v)) => Some(v),
        _ => None,
    }
}

pub(crate) fn str_leaf<'a>(c: &'a Children, name: &str) -> Option<&'a str> {
    match leaf(c, name) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

pub(crate) fn uint_leaf(c: &Children, name: &str) -> Option<u64> {
    match leaf(c, name) {
        Some(Value::Uint(n)) => Some(*n),
        _ => None,
    }
}

pub(crate) fn bool_leaf(c: &Children, name: &str) -> Option<bool> {
    match leaf(c, name) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// Collects the problems found while turning a tree back into a document.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Failure>);

impl Problems {
    pub(crate) fn add(&mut self, path: &str, reason: impl Into<String>) {
        self.0
            .push(Failure::new(Code::InvalidArgument, path, reason));
    }

    /// `config/<key>`, when present, must equal the list key it mirrors.
    pub(crate) fn mirror(&mut self, entry: &Children, key: &str, path: &str) {
        if let (Some(cfg), Some(k)) = (container(entry, "config"), leaf(entry, key)) {
            if let Some(v) = leaf(cfg, key) {
                if v != k {
                    self.add(
                        &format!("{path}/config/{key}"),
                        format!(
                            "{} differs from the list key {key}={}",
                            v.key_string(),
                            k.key_string()
                        ),
                    );
                }
            }
        }
    }
}

/// A subinterface read from the tree.
struct Sub {
    port: String,
    index: u32,
    enabled: bool,
    description: Option<String>,
    ipv4: Vec<Ipv4Net>,
    ipv6: Vec<Ipv6Net>,
}

/// The document `tree` describes: `old` with everything the served models
/// express taken from `tree`. Every problem found is returned, each with
/// its OpenConfig path.
pub(crate) fn to_config(tree: &Data, old: &Config) -> Result<Config, Vec<Failure>> {
    let mut p = Problems::default();
    let empty = Children::new();
    let root = tree.children().unwrap_or(&empty);
    let mut new = old.clone();

    new.system.hostname = container(root, "system")
        .and_then(|s| container(s, "config"))
        .and_then(|c| str_leaf(c, "hostname"))
        .map_or_else(|| SystemConfig::default().hostname, str::to_owned);

    let (ports, subs) = ports_from(root, old, &mut p);
    new.ports = ports;
    new.interfaces = router_interfaces(subs, old);
    let mut bgp_entry = None;
    let (vrfs, routes) = instances_from(root, old, &new.interfaces, &mut bgp_entry, &mut p);
    new.vrfs = vrfs;
    new.static_routes = routes;
    new.bgp = crate::mapping_bgp::bgp_from(bgp_entry, DEFAULT_NI, old.bgp.as_ref(), &mut p);
    crate::mapping_bgp::check_routing_policy(root, old, &mut p);

    if p.0.is_empty() {
        Ok(new)
    } else {
        Err(p.0)
    }
}

fn ports_from(root: &Children, old: &Config, p: &mut Problems) -> (Vec<PortConfig>, Vec<Sub>) {
    let mut tree_ports: Vec<PortConfig> = Vec::new();
    let mut subs = Vec::new();
    let interfaces = container(root, "interfaces").map_or(&[][..], |c| entries(c, "interface"));
    for e in interfaces {
        let Some(ec) = e.children() else { continue };
        let Some(name) = str_leaf(ec, "name") else {
            continue;
        };
        let path = interface_path(name);
        p.mirror(ec, "name", &path);
        let empty = Children::new();
        let cfg = container(ec, "config").unwrap_or(&empty);
        let old_port = old.ports.iter().find(|o| o.name == name);
        tree_ports.push(PortConfig {
            name: name.to_owned(),
            linux: old_port.and_then(|o| o.linux.clone()),
            mtu: uint_leaf(cfg, "mtu").map_or(DEFAULT_PORT_MTU, |m| m as u32),
            enabled: bool_leaf(cfg, "enabled").unwrap_or(true),
            description: str_leaf(cfg, "description").map(str::to_owned),
        });
        let subifs = container(ec, "subinterfaces").map_or(&[][..], |c| entries(c, "subinterface"));
        for se in subifs {
            let Some(sc) = se.children() else { continue };
            let Some(index) = uint_leaf(sc, "index") else {
                continue;
            };
            let index = index as u32;
            let spath = subinterface_path(name, index);
            p.mirror(sc, "index", &spath);
            if index > VLAN_MAX {
                p.add(
                    &spath,
                    format!(
                        "subinterface index {index} is neither 0 (the port's untagged frames) nor a \
                         VLAN id 1..={VLAN_MAX} (a sub-port for that tag)"
                    ),
                );
                continue;
            }
            let scfg = container(sc, "config").unwrap_or(&empty);
            let mut sub = Sub {
                port: name.to_owned(),
                index,
                enabled: bool_leaf(scfg, "enabled").unwrap_or(true),
                description: str_leaf(scfg, "description").map(str::to_owned),
                ipv4: Vec::new(),
                ipv6: Vec::new(),
            };
            for family in ["ipv4", "ipv6"] {
                let addrs = container(sc, family)
                    .and_then(|c| container(c, "addresses"))
                    .map_or(&[][..], |c| entries(c, "address"));
                for ae in addrs {
                    let Some(ac) = ae.children() else { continue };
                    let Some(ip) = str_leaf(ac, "ip") else {
                        continue;
                    };
                    let Ok(addr) = ip.parse::<IpAddr>() else {
                        continue;
                    };
                    let apath = address_path(name, index, addr);
                    p.mirror(ac, "ip", &apath);
                    let len = container(ac, "config").and_then(|c| uint_leaf(c, "prefix-length"));
                    let Some(len) = len else {
                        p.add(
                            &format!("{apath}/config/prefix-length"),
                            "an address needs its prefix-length",
                        );
                        continue;
                    };
                    let len = len as u8;
                    match addr {
                        IpAddr::V4(a) => match Ipv4Net::new(a, len) {
                            Ok(n) => sub.ipv4.push(n),
                            Err(_) => p.add(&apath, format!("/{len} is not an IPv4 prefix length")),
                        },
                        IpAddr::V6(a) => match Ipv6Net::new(a, len) {
                            Ok(n) => sub.ipv6.push(n),
                            Err(_) => p.add(&apath, format!("/{len} is not an IPv6 prefix length")),
                        },
                    }
                }
            }
            subs.push(sub);
        }
    }

    // Keep the document's order: surviving ports first, then new ones.
    let mut ports = Vec::with_capacity(tree_ports.len());
    for o in &old.ports {
        if let Some(i) = tree_ports.iter().position(|t| t.name == o.name) {
            ports.push(tree_ports.remove(i));
        }
    }
    ports.extend(tree_ports);
    (ports, subs)
}

/// The router interfaces: VLAN interfaces as they were, port and sub-port
/// interfaces from the subinterfaces (keeping their names, VRFs, MACs and
/// MTUs), new ones named after their port (`eth1`, `eth1.100`).
fn router_interfaces(subs: Vec<Sub>, old: &Config) -> Vec<InterfaceConfig> {
    let vlan_of = |index: u32| (index != 0).then_some(index as u16);
    let mut subs: Vec<Option<Sub>> = subs.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for o in &old.interfaces {
        let Some(port) = o.port.as_deref() else {
            out.push(o.clone());
            continue;
        };
        let found = subs.iter_mut().find(|s| {
            s.as_ref()
                .is_some_and(|s| s.port == port && vlan_of(s.index) == o.vlan)
        });
        if let Some(sub) = found.and_then(Option::take) {
            out.push(InterfaceConfig {
                enabled: sub.enabled,
                description: sub.description,
                ipv4: sub.ipv4,
                ipv6: sub.ipv6,
                ..o.clone()
            });
        }
    }
    let mut names: HashSet<String> = old
        .interfaces
        .iter()
        .map(|i| i.name.clone())
        .chain(out.iter().map(|i| i.name.clone()))
        .collect();
    for sub in subs.into_iter().flatten() {
        let base = match vlan_of(sub.index) {
            None => sub.port.clone(),
            Some(v) => format!("{}.{v}", sub.port),
        };
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        names.insert(name.clone());
        out.push(InterfaceConfig {
            name,
            port: Some(sub.port),
            vlan: vlan_of(sub.index),
            vrf: None,
            mac: None,
            mtu: None,
            enabled: sub.enabled,
            description: sub.description,
            ipv4: sub.ipv4,
            ipv6: sub.ipv6,
        });
    }
    out
}

fn instances_from<'a>(
    root: &'a Children,
    old: &Config,
    interfaces: &[InterfaceConfig],
    bgp_entry: &mut Option<&'a Children>,
    p: &mut Problems,
) -> (Vec<VrfConfig>, Vec<StaticRouteConfig>) {
    let mut vrf_names: Vec<String> = Vec::new();
    let mut routes: Vec<StaticRouteConfig> = Vec::new();
    let instances =
        container(root, "network-instances").map_or(&[][..], |c| entries(c, "network-instance"));
    for e in instances {
        let Some(ec) = e.children() else { continue };
        let Some(ni) = str_leaf(ec, "name") else {
            continue;
        };
        let path = instance_path(ni);
        p.mirror(ec, "name", &path);
        let is_default = ni == DEFAULT_NI;
        if let Some(Value::Ident(t)) = container(ec, "config").and_then(|c| leaf(c, "type")) {
            let want = if is_default {
                &DEFAULT_INSTANCE
            } else {
                &L3VRF
            };
            if *t != want {
                p.add(
                    &format!("{path}/config/type"),
                    format!(
                        "network instance {ni} is of type {}, not {}",
                        want.name, t.name
                    ),
                );
            }
        }
        let vrf = if is_default {
            None
        } else {
            vrf_names.push(ni.to_owned());
            Some(ni.to_owned())
        };
        let protocols = container(ec, "protocols").map_or(&[][..], |c| entries(c, "protocol"));
        for pe in protocols {
            let Some(pc) = pe.children() else { continue };
            let name = str_leaf(pc, "name").unwrap_or_default();
            if matches!(leaf(pc, "identifier"), Some(Value::Ident(i)) if **i == BGP) {
                let ppath = format!(
                    "{path}/protocols/protocol[identifier={}][name={}]",
                    BGP.name,
                    esc(name)
                );
                p.mirror(pc, "identifier", &ppath);
                p.mirror(pc, "name", &ppath);
                if !is_default || name != BGP_PROTOCOL {
                    p.add(
                        &ppath,
                        format!(
                            "BGP is protocol [identifier=BGP][name={BGP_PROTOCOL}] of the \
                             default network instance; {ni}/{name} is not served"
                        ),
                    );
                } else if bgp_entry.replace(pc).is_some() {
                    p.add(&ppath, "BGP is given twice");
                }
                continue;
            }
            let ppath = format!(
                "{path}/protocols/protocol[identifier={}][name={}]",
                STATIC.name,
                esc(name)
            );
            p.mirror(pc, "identifier", &ppath);
            p.mirror(pc, "name", &ppath);
            if name != STATIC_PROTOCOL {
                p.add(
                    &ppath,
                    format!(
                        "the static routes of a network instance are protocol \
                         [identifier=STATIC][name={STATIC_PROTOCOL}]; name {name:?} is not served"
                    ),
                );
                continue;
            }
            let statics = container(pc, "static-routes").map_or(&[][..], |c| entries(c, "static"));
            for se in statics {
                if let Some(r) = route_from(se, ni, vrf.as_deref(), old, interfaces, p) {
                    routes.push(r);
                }
            }
        }
    }

    let mut vrfs = Vec::new();
    for o in &old.vrfs {
        if let Some(i) = vrf_names.iter().position(|n| *n == o.name) {
            vrfs.push(VrfConfig {
                name: vrf_names.remove(i),
            });
        }
    }
    vrfs.extend(vrf_names.into_iter().map(|name| VrfConfig { name }));

    let mut ordered = Vec::with_capacity(routes.len());
    for o in &old.static_routes {
        if let Some(i) = routes
            .iter()
            .position(|r| r.vrf_name() == o.vrf_name() && r.prefix == o.prefix)
        {
            ordered.push(routes.remove(i));
        }
    }
    ordered.extend(routes);
    (vrfs, ordered)
}

fn route_from(
    entry: &Data,
    ni: &str,
    vrf: Option<&str>,
    old: &Config,
    interfaces: &[InterfaceConfig],
    p: &mut Problems,
) -> Option<StaticRouteConfig> {
    let sc = entry.children()?;
    let prefix: IpNet = str_leaf(sc, "prefix")?.parse().ok()?;
    let path = static_path(ni, &prefix);
    p.mirror(sc, "prefix", &path);
    let vrf_name = vrf.unwrap_or(DEFAULT_VRF);
    let old_route = old
        .static_routes
        .iter()
        .find(|r| r.vrf_name() == vrf_name && r.prefix == prefix);

    let mut blackhole = false;
    let mut next_hops = Vec::new();
    let mut preferences: BTreeMap<u64, String> = BTreeMap::new();
    let hops = container(sc, "next-hops").map_or(&[][..], |c| entries(c, "next-hop"));
    for he in hops {
        let Some(hc) = he.children() else { continue };
        let Some(index) = str_leaf(hc, "index") else {
            continue;
        };
        let hpath = format!("{path}/next-hops/next-hop[index={}]", esc(index));
        p.mirror(hc, "index", &hpath);
        let empty = Children::new();
        let cfg = container(hc, "config").unwrap_or(&empty);
        let next_hop = match leaf(cfg, "next-hop") {
            Some(v) => Some(v.clone()),
            // A next hop may be given by its index alone.
            None => crate::schema::Type::NextHop.parse_str(index).ok(),
        };
        let Some(next_hop) = next_hop else {
            p.add(
                &format!("{hpath}/config/next-hop"),
                "a next hop needs next-hop: an IP address, or DROP",
            );
            continue;
        };
        if next_hop.key_string() != index {
            p.add(
                &hpath,
                format!(
                    "this server names each static next hop by its address: next-hop {} \
                     needs index {}",
                    next_hop.key_string(),
                    next_hop.key_string()
                ),
            );
            continue;
        }
        if let Some(pref) = uint_leaf(cfg, "preference") {
            preferences.insert(pref, format!("{hpath}/config/preference"));
        }
        match next_hop {
            Value::Ident(i) if *i == DROP => blackhole = true,
            Value::Str(a) => {
                let Ok(address) = a.parse::<IpAddr>() else {
                    continue;
                };
                let old_hop =
                    old_route.and_then(|r| r.next_hops.iter().find(|h| h.address == address));
                let interface = interface_ref(hc, &hpath, interfaces, old_hop, p)?;
                next_hops.push(StaticNextHop {
                    address,
                    interface,
                    weight: old_hop.map_or(1, |h| h.weight),
                });
            }
            _ => continue,
        }
    }
    if blackhole && !next_hops.is_empty() {
        p.add(
            &format!("{path}/next-hops"),
            "a DROP next hop discards the traffic and cannot be combined with other next hops",
        );
    }

    let distance = match preferences.len() {
        0 => DEFAULT_DISTANCE,
        1 => {
            let (pref, ppath) = preferences.iter().next()?;
            match u8::try_from(*pref) {
                Ok(d) if d >= 1 => d,
                _ => {
                    p.add(
                        ppath,
                        format!(
                            "preference {pref} is outside 1..=255 (the route's administrative \
                             distance)"
                        ),
                    );
                    DEFAULT_DISTANCE
                }
            }
        }
        _ => {
            let listed: Vec<String> = preferences.keys().map(u64::to_string).collect();
            p.add(
                &format!("{path}/next-hops"),
                format!(
                    "the next hops have different preferences ({}); this server keeps one \
                     administrative distance per route",
                    listed.join(", ")
                ),
            );
            DEFAULT_DISTANCE
        }
    };
    Some(StaticRouteConfig {
        prefix,
        vrf: vrf.map(str::to_owned),
        next_hops,
        blackhole,
        distance,
    })
}

/// The router interface a next hop's `interface-ref` names. Without one, a
/// next hop keeps an interface the served models cannot name (a VLAN
/// interface). `None` (the outer option) when the reference is wrong.
fn interface_ref(
    hop: &Children,
    hpath: &str,
    interfaces: &[InterfaceConfig],
    old_hop: Option<&StaticNextHop>,
    p: &mut Problems,
) -> Option<Option<String>> {
    let cfg = container(hop, "interface-ref").and_then(|c| container(c, "config"));
    let port = cfg.and_then(|c| str_leaf(c, "interface"));
    let index = cfg.and_then(|c| uint_leaf(c, "subinterface"));
    let Some(port) = port else {
        if index.is_some() {
            p.add(
                &format!("{hpath}/interface-ref/config/interface"),
                "subinterface is set but interface is not",
            );
            return None;
        }
        let kept = old_hop
            .and_then(|h| h.interface.as_deref())
            .filter(|n| interfaces.iter().any(|i| i.name == *n && i.port.is_none()));
        return Some(kept.map(str::to_owned));
    };
    let index = index.unwrap_or(0);
    let vlan = u16::try_from(index).ok().filter(|v| *v != 0);
    match interfaces.iter().find(|i| {
        i.port.as_deref() == Some(port) && i.vlan == vlan && (index == 0 || vlan.is_some())
    }) {
        Some(i) => Some(Some(i.name.clone())),
        None => {
            p.add(
                &format!("{hpath}/interface-ref/config"),
                format!(
                    "interface {port} has no subinterface {index}; configure it under \
                     /interfaces first"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/router.yaml");

    #[test]
    fn the_example_config_survives_a_round_trip() {
        let config = Config::from_yaml(EXAMPLE).expect("example parses");
        let tree = render(&config, None);
        let back = to_config(&tree, &config).expect("converts back");
        assert_eq!(back, config);
    }

    #[test]
    fn only_paths_that_can_reach_afts_read_them() {
        use crate::proto::gnmi::{Path, PathElem};
        let elems = |names: &[&str]| {
            let p = Path {
                elem: names
                    .iter()
                    .map(|n| PathElem {
                        name: (*n).to_owned(),
                        key: Default::default(),
                    })
                    .collect(),
                ..Default::default()
            };
            crate::path::join(None, Some(&p)).expect("path").elems
        };
        assert!(reaches_afts(&elems(&[])));
        assert!(reaches_afts(&elems(&["network-instances"])));
        assert!(reaches_afts(&elems(&[
            "network-instances",
            "network-instance"
        ])));
        assert!(reaches_afts(&elems(&[
            "network-instances",
            "network-instance",
            "afts",
            "ipv4-unicast"
        ])));
        assert!(reaches_afts(&elems(&["*", "*", "afts"])));
        assert!(reaches_afts(&elems(&["...", "next-hop-group"])));
        assert!(!reaches_afts(&elems(&["system", "config", "hostname"])));
        assert!(!reaches_afts(&elems(&[
            "network-instances",
            "network-instance",
            "protocols"
        ])));
        assert!(!reaches_afts(&elems(&["interfaces", "*"])));

        let rib = [
            "network-instances",
            "network-instance",
            "protocols",
            "protocol",
            "bgp",
            "rib",
        ];
        assert!(reaches_rib(&elems(&[])));
        assert!(reaches_rib(&elems(&rib[..4])));
        assert!(reaches_rib(&elems(
            &[&rib[..], &["afi-safis", "afi-safi"]].concat()
        )));
        assert!(reaches_rib(&elems(&["*", "*", "*", "*", "*", "rib"])));
        assert!(reaches_rib(&elems(&["...", "route"])));
        assert!(!reaches_rib(&elems(&[&rib[..5], &["neighbors"]].concat())));
        assert!(!reaches_rib(&elems(&[
            "network-instances",
            "network-instance",
            "afts"
        ])));
        assert!(!reaches_rib(&elems(&["interfaces"])));
        let t = Tables::reached([&elems(&["system"])[..], &elems(&rib)[..]]);
        assert_eq!(
            t,
            Tables {
                afts: false,
                rib: true
            }
        );
    }

    #[test]
    fn config_error_paths_map_to_openconfig_paths() {
        let config = Config::from_yaml(EXAMPLE).expect("example parses");
        assert_eq!(
            gnmi_path_of(&config, "interfaces[2].ipv4[0]").as_deref(),
            Some(
                "/interfaces/interface[name=eth2]/subinterfaces/subinterface[index=100]/ipv4/addresses/address[ip=198.18.1.1]"
            )
        );
        assert_eq!(
            gnmi_path_of(&config, "ports[3].mtu").as_deref(),
            Some("/interfaces/interface[name=eth4]/config/mtu")
        );
        assert_eq!(
            gnmi_path_of(&config, "static_routes[4].next_hops[0].address").as_deref(),
            Some(
                "/network-instances/network-instance[name=tenant]/protocols/protocol[identifier=STATIC][name=STATIC]/static-routes/static[prefix=198.18.64.0/18]/next-hops/next-hop[index=198.18.1.2]"
            )
        );
        assert_eq!(gnmi_path_of(&config, "interfaces[3].ipv4[0]"), None);
        assert_eq!(gnmi_path_of(&config, "acl[0].name"), None);
    }
}
