//! The part of the OpenConfig schema this server serves, as a static tree.
//!
//! Node names, list keys, leaf types and the `config false` subtrees follow
//! the OpenConfig YANG modules (openconfig/public `release/models`):
//! openconfig-interfaces, openconfig-if-ip (the `ipv4`/`ipv6` augments of a
//! subinterface: addresses and neighbors), openconfig-network-instance with
//! the static routes of openconfig-local-routing, BGP (with the
//! openconfig-rib-bgp Loc-RIB) and openconfig-aft, and openconfig-system. Only the leaves the
//! router's configuration and state can back are listed; every other node of
//! those modules is "not served" (a path to it is unknown to this server).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Module names, used for JSON_IETF member names and to check module
/// prefixes on path elements.
pub(crate) const IF: &str = "openconfig-interfaces";
pub(crate) const IP: &str = "openconfig-if-ip";
pub(crate) const NI: &str = "openconfig-network-instance";
pub(crate) const SYS: &str = "openconfig-system";
pub(crate) const RP: &str = "openconfig-routing-policy";
pub(crate) const BGP_POL: &str = "openconfig-bgp-policy";

/// A YANG identity: the module defining it and its name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ident {
    pub module: &'static str,
    pub name: &'static str,
}

pub(crate) const ETHERNET_CSMACD: Ident = Ident {
    module: "iana-if-type",
    name: "ethernetCsmacd",
};
pub(crate) const STATIC: Ident = Ident {
    module: "openconfig-policy-types",
    name: "STATIC",
};
pub(crate) const BGP: Ident = Ident {
    module: "openconfig-policy-types",
    name: "BGP",
};
pub(crate) const IPV4_UNICAST: Ident = Ident {
    module: "openconfig-bgp-types",
    name: "IPV4_UNICAST",
};
pub(crate) const IPV6_UNICAST: Ident = Ident {
    module: "openconfig-bgp-types",
    name: "IPV6_UNICAST",
};
pub(crate) const DEFAULT_INSTANCE: Ident = Ident {
    module: "openconfig-network-instance-types",
    name: "DEFAULT_INSTANCE",
};
pub(crate) const L3VRF: Ident = Ident {
    module: "openconfig-network-instance-types",
    name: "L3VRF",
};
pub(crate) const DROP: Ident = Ident {
    module: "openconfig-local-routing",
    name: "DROP",
};

/// The name this server gives the default network instance (`default` is
/// accepted as well, in any case).
pub(crate) const DEFAULT_NI: &str = "DEFAULT";
/// The name of the one static-routes protocol instance of a network instance.
pub(crate) const STATIC_PROTOCOL: &str = "STATIC";
/// The name of the one BGP protocol instance (of the default instance).
pub(crate) const BGP_PROTOCOL: &str = "BGP";

/// The type of a leaf, as far as parsing and encoding need it.
#[derive(Debug)]
pub(crate) enum Type {
    String,
    Bool,
    /// An unsigned integer in `min..=max`; `wide` for 64-bit types, which
    /// RFC 7951 encodes as JSON strings.
    Uint {
        min: u64,
        max: u64,
        wide: bool,
    },
    Enum(&'static [&'static str]),
    /// An identityref restricted to the identities this server supports.
    Identity(&'static [Ident]),
    Ipv4,
    Ipv6,
    /// `inet:ip-prefix`, IPv4 or IPv6.
    IpPrefix,
    /// The next-hop union of a static route: an IP address or `DROP`.
    NextHop,
    /// `oc-yang:date-and-time` (read-only here).
    DateTime,
    /// A network-instance name: `default` in any case means [`DEFAULT_NI`].
    InstanceName,
    /// A protocol instance name: `static` in any case means
    /// [`STATIC_PROTOCOL`], `bgp` [`BGP_PROTOCOL`].
    ProtocolName,
    /// `inet:ip-address`, IPv4 or IPv6.
    IpAddress,
    /// `decimal64 { fraction-digits 2; }` seconds, holding whole seconds
    /// (the configuration document keeps integer seconds) up to `max`.
    Seconds {
        max: u64,
    },
    /// A `leaf-list` of strings (encoded as a JSON array).
    StrList,
    /// The origin of a BGP Loc-RIB route (openconfig-rib-bgp): the
    /// neighbor's address, or the protocol that put it there (`BGP` for a
    /// network the speaker originates).
    RouteOrigin,
}

const fn uint(bits: u32) -> Type {
    Type::Uint {
        min: 0,
        max: if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        },
        wide: bits >= 64,
    }
}

const fn uint_range(min: u64, max: u64) -> Type {
    Type::Uint {
        min,
        max,
        wide: false,
    }
}

/// A leaf value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Str(String),
    Bool(bool),
    Uint(u64),
    Ident(&'static Ident),
    /// A leaf-list's values, in order.
    Strs(Vec<String>),
}

impl Value {
    /// The value as a path key or a message shows it (identities without
    /// their module).
    pub(crate) fn key_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Uint(n) => n.to_string(),
            Value::Ident(i) => i.name.to_owned(),
            Value::Strs(v) => v.join(","),
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn find_ident(allowed: &'static [Ident], s: &str) -> Result<&'static Ident, String> {
    let (module, name) = match s.split_once(':') {
        Some((m, n)) => (Some(m), n),
        None => (None, s),
    };
    allowed
        .iter()
        .find(|i| i.name == name && module.is_none_or(|m| m == i.module))
        .ok_or_else(|| {
            let names: Vec<String> = allowed
                .iter()
                .map(|i| format!("{}:{}", i.module, i.name))
                .collect();
            format!(
                "{s:?} is not a supported identity here (supported: {})",
                names.join(", ")
            )
        })
}

impl Type {
    /// Parses the lexical (string) form of a value: a path key, or a
    /// `string_val`.
    pub(crate) fn parse_str(&self, s: &str) -> Result<Value, String> {
        match self {
            Type::String | Type::DateTime => Ok(Value::Str(s.to_owned())),
            Type::Bool => match s {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("{s:?} is not a boolean (true or false)")),
            },
            Type::Uint { min, max, .. } => match s.parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(Value::Uint(n)),
                _ => Err(format!("{s:?} is not an integer in {min}..={max}")),
            },
            Type::Enum(names) => names
                .iter()
                .find(|n| **n == s)
                .map(|n| Value::Str((*n).to_owned()))
                .ok_or_else(|| format!("{s:?} is not one of {}", names.join(", "))),
            Type::Identity(allowed) => find_ident(allowed, s).map(Value::Ident),
            Type::Ipv4 => s
                .parse::<Ipv4Addr>()
                .map(|a| Value::Str(a.to_string()))
                .map_err(|_| format!("{s:?} is not an IPv4 address")),
            Type::Ipv6 => s
                .parse::<Ipv6Addr>()
                .map(|a| Value::Str(a.to_string()))
                .map_err(|_| format!("{s:?} is not an IPv6 address")),
            Type::IpPrefix => s
                .parse::<IpNet>()
                .map(|p| Value::Str(p.to_string()))
                .map_err(|_| format!("{s:?} is not an IP prefix (address/length)")),
            Type::NextHop => match s.parse::<IpAddr>() {
                Ok(a) => Ok(Value::Str(a.to_string())),
                Err(_) => find_ident(&[DROP], s).map(Value::Ident).map_err(|_| {
                    format!(
                        "{s:?} is neither an IP address nor DROP (the only local next hop served)"
                    )
                }),
            },
            Type::RouteOrigin => match s.parse::<IpAddr>() {
                Ok(a) => Ok(Value::Str(a.to_string())),
                Err(_) => find_ident(&[BGP], s)
                    .map(Value::Ident)
                    .map_err(|_| format!("{s:?} is neither an IP address nor BGP")),
            },
            Type::InstanceName => {
                if s.is_empty() {
                    Err("a network-instance name cannot be empty".into())
                } else if s.eq_ignore_ascii_case("default") {
                    Ok(Value::Str(DEFAULT_NI.to_owned()))
                } else {
                    Ok(Value::Str(s.to_owned()))
                }
            }
            Type::ProtocolName => {
                if s.eq_ignore_ascii_case(STATIC_PROTOCOL) {
                    Ok(Value::Str(STATIC_PROTOCOL.to_owned()))
                } else if s.eq_ignore_ascii_case(BGP_PROTOCOL) {
                    Ok(Value::Str(BGP_PROTOCOL.to_owned()))
                } else {
                    Ok(Value::Str(s.to_owned()))
                }
            }
            Type::IpAddress => s
                .parse::<IpAddr>()
                .map(|a| Value::Str(a.to_string()))
                .map_err(|_| format!("{s:?} is not an IP address")),
            Type::Seconds { max } => {
                let (int, frac) = s.split_once('.').unwrap_or((s, ""));
                let whole = frac.len() <= 2 && frac.bytes().all(|c| c == b'0');
                match int.parse::<u64>() {
                    Ok(n) if whole && n <= *max && !int.starts_with('+') => Ok(Value::Uint(n)),
                    _ => Err(format!(
                        "{s:?} is not a whole number of seconds in 0..={max} \
                         (decimal64, 2 fraction digits)"
                    )),
                }
            }
            Type::StrList => Ok(Value::Strs(vec![s.to_owned()])),
        }
    }

    /// Decodes a JSON value (RFC 7159 for JSON, RFC 7951 for JSON_IETF; both
    /// forms of identities and of 64-bit integers are accepted either way).
    pub(crate) fn decode_json(&self, v: &serde_json::Value) -> Result<Value, String> {
        match (self, v) {
            (Type::Bool, serde_json::Value::Bool(b)) => Ok(Value::Bool(*b)),
            (Type::Bool, other) => Err(format!("expected a boolean, got {}", json_kind(other))),
            (Type::Uint { min, max, wide }, v) => {
                let n = match v {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) if *wide => s.parse::<u64>().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if (*min..=*max).contains(&n) => Ok(Value::Uint(n)),
                    _ => Err(format!(
                        "expected an integer in {min}..={max}, got {}",
                        match v {
                            serde_json::Value::Number(n) => n.to_string(),
                            other => json_kind(other).to_owned(),
                        }
                    )),
                }
            }
            (Type::Seconds { max }, serde_json::Value::Number(n)) => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= *max as f64 => {
                    Ok(Value::Uint(f as u64))
                }
                _ => Err(format!(
                    "expected a whole number of seconds in 0..={max}, got {n}"
                )),
            },
            (Type::StrList, serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "expected an array of strings, got {} in it",
                        json_kind(other)
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Strs),
            (_, serde_json::Value::String(s)) => self.parse_str(s),
            (_, other) => Err(format!("expected a string, got {}", json_kind(other))),
        }
    }

    /// Encodes a value; `ietf` selects RFC 7951 (64-bit integers as strings,
    /// identities qualified with their module).
    pub(crate) fn to_json(&self, v: &Value, ietf: bool) -> serde_json::Value {
        match v {
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Strs(v) => serde_json::Value::from(v.clone()),
            Value::Uint(n) => match self {
                Type::Uint { wide: true, .. } if ietf => serde_json::Value::String(n.to_string()),
                // RFC 7951: decimal64 as a string; canonical form.
                Type::Seconds { .. } if ietf => serde_json::Value::String(format!("{n}.0")),
                Type::Seconds { .. } => serde_json::Value::from(*n as f64),
                _ => serde_json::Value::from(*n),
            },
            Value::Ident(i) if ietf => {
                serde_json::Value::String(format!("{}:{}", i.module, i.name))
            }
            Value::Ident(i) => serde_json::Value::String(i.name.to_owned()),
        }
    }
}

/// What a schema node is.
#[derive(Debug)]
pub(crate) enum Kind {
    Container(&'static [Node]),
    List {
        keys: &'static [&'static str],
        children: &'static [Node],
    },
    Leaf(Type),
}

/// A schema node.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: &'static str,
    /// The module whose namespace the node is in.
    pub module: &'static str,
    pub kind: Kind,
    /// `config false`: this node and everything below it is read-only state.
    pub state: bool,
    /// Operational data (OpenConfig's `oc-ext:operational`): what a Get of
    /// type OPERATIONAL returns. Inherited by everything below.
    pub operational: bool,
    /// Write-only (a password): settable by Set, never returned by Get or
    /// Subscribe.
    pub secret: bool,
}

impl Node {
    pub(crate) fn children(&'static self) -> &'static [Node] {
        match &self.kind {
            Kind::Container(c) => c,
            Kind::List { children, .. } => children,
            Kind::Leaf(_) => &[],
        }
    }

    /// The child called `name`, optionally checking its module.
    pub(crate) fn child(&'static self, name: &str, module: Option<&str>) -> Option<&'static Node> {
        self.children()
            .iter()
            .find(|c| c.name == name && module.is_none_or(|m| m == c.module))
    }

    pub(crate) fn keys(&self) -> &'static [&'static str] {
        match &self.kind {
            Kind::List { keys, .. } => keys,
            _ => &[],
        }
    }

    pub(crate) fn is_list(&self) -> bool {
        matches!(self.kind, Kind::List { .. })
    }

    pub(crate) fn leaf_type(&self) -> Option<&Type> {
        match &self.kind {
            Kind::Leaf(t) => Some(t),
            _ => None,
        }
    }

    /// The type of key leaf `key` of this list.
    pub(crate) fn key_type(&'static self, key: &str) -> Option<&'static Type> {
        match self.child(key, None)?.kind {
            Kind::Leaf(ref t) => Some(t),
            _ => None,
        }
    }
}

const fn leaf(name: &'static str, module: &'static str, ty: Type) -> Node {
    Node {
        name,
        module,
        kind: Kind::Leaf(ty),
        state: false,
        operational: false,
        secret: false,
    }
}

const fn container(name: &'static str, module: &'static str, children: &'static [Node]) -> Node {
    Node {
        name,
        module,
        kind: Kind::Container(children),
        state: false,
        operational: false,
        secret: false,
    }
}

const fn list(
    name: &'static str,
    module: &'static str,
    keys: &'static [&'static str],
    children: &'static [Node],
) -> Node {
    Node {
        name,
        module,
        kind: Kind::List { keys, children },
        state: false,
        operational: false,
        secret: false,
    }
}

/// A `config false` container.
const fn state(module: &'static str, children: &'static [Node]) -> Node {
    Node {
        state: true,
        ..container("state", module, children)
    }
}

const fn secret(node: Node) -> Node {
    Node {
        secret: true,
        ..node
    }
}

const fn operational(node: Node) -> Node {
    Node {
        operational: true,
        ..node
    }
}

const COUNTER64: Type = uint(64);
const ADMIN_STATUS: Type = Type::Enum(&["UP", "DOWN", "TESTING"]);
const OPER_STATUS: Type = Type::Enum(&[
    "UP",
    "DOWN",
    "TESTING",
    "UNKNOWN",
    "DORMANT",
    "NOT_PRESENT",
    "LOWER_LAYER_DOWN",
]);
const ADDRESS_ORIGIN: Type = Type::Enum(&["OTHER", "STATIC", "DHCP", "LINK_LAYER", "RANDOM"]);

// ---- openconfig-interfaces (+ openconfig-if-ip) ----

const COUNTERS: Node = operational(container(
    "counters",
    IF,
    &[
        leaf("in-octets", IF, COUNTER64),
        leaf("in-pkts", IF, COUNTER64),
        leaf("in-errors", IF, COUNTER64),
        leaf("in-discards", IF, COUNTER64),
        leaf("out-octets", IF, COUNTER64),
        leaf("out-pkts", IF, COUNTER64),
        leaf("out-errors", IF, COUNTER64),
        leaf("out-discards", IF, COUNTER64),
    ],
));

const INTERFACE_TYPE: Type = Type::Identity(&[ETHERNET_CSMACD]);

const INTERFACE: Node = list(
    "interface",
    IF,
    &["name"],
    &[
        leaf("name", IF, Type::String),
        container(
            "config",
            IF,
            &[
                leaf("name", IF, Type::String),
                leaf("type", IF, INTERFACE_TYPE),
                leaf("mtu", IF, uint(16)),
                leaf("description", IF, Type::String),
                leaf("enabled", IF, Type::Bool),
            ],
        ),
        state(
            IF,
            &[
                leaf("name", IF, Type::String),
                leaf("type", IF, INTERFACE_TYPE),
                leaf("mtu", IF, uint(16)),
                leaf("description", IF, Type::String),
                leaf("enabled", IF, Type::Bool),
                operational(leaf("admin-status", IF, ADMIN_STATUS)),
                operational(leaf("oper-status", IF, OPER_STATUS)),
                COUNTERS,
            ],
        ),
        container("subinterfaces", IF, &[SUBINTERFACE]),
    ],
);

const SUBINTERFACE: Node = list(
    "subinterface",
    IF,
    &["index"],
    &[
        leaf("index", IF, uint(32)),
        container(
            "config",
            IF,
            &[
                leaf("index", IF, uint(32)),
                leaf("description", IF, Type::String),
                leaf("enabled", IF, Type::Bool),
            ],
        ),
        state(
            IF,
            &[
                leaf("index", IF, uint(32)),
                leaf("description", IF, Type::String),
                leaf("enabled", IF, Type::Bool),
                operational(leaf("admin-status", IF, ADMIN_STATUS)),
                operational(leaf("oper-status", IF, OPER_STATUS)),
            ],
        ),
        container(
            "ipv4",
            IP,
            &[
                container("addresses", IP, &[ADDRESS_V4]),
                container("neighbors", IP, &[NEIGHBOR_V4]),
            ],
        ),
        container(
            "ipv6",
            IP,
            &[
                container("addresses", IP, &[ADDRESS_V6]),
                container("neighbors", IP, &[NEIGHBOR_V6]),
            ],
        ),
    ],
);

const NEIGHBOR_ORIGIN: Type = Type::Enum(&["OTHER", "STATIC", "DYNAMIC"]);
const NEIGHBOR_STATE: Type = Type::Enum(&["INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE"]);

/// An ARP entry: served as state only (no static neighbors are
/// configured), so the list is read-only as a whole.
const NEIGHBOR_V4: Node = Node {
    state: true,
    operational: true,
    ..list(
        "neighbor",
        IP,
        &["ip"],
        &[
            leaf("ip", IP, Type::Ipv4),
            state(
                IP,
                &[
                    leaf("ip", IP, Type::Ipv4),
                    leaf("link-layer-address", IP, Type::String),
                    leaf("origin", IP, NEIGHBOR_ORIGIN),
                ],
            ),
        ],
    )
};

/// A neighbor-discovery entry (read-only, like [`NEIGHBOR_V4`]).
const NEIGHBOR_V6: Node = Node {
    state: true,
    operational: true,
    ..list(
        "neighbor",
        IP,
        &["ip"],
        &[
            leaf("ip", IP, Type::Ipv6),
            state(
                IP,
                &[
                    leaf("ip", IP, Type::Ipv6),
                    leaf("link-layer-address", IP, Type::String),
                    leaf("origin", IP, NEIGHBOR_ORIGIN),
                    leaf("neighbor-state", IP, NEIGHBOR_STATE),
                ],
            ),
        ],
    )
};

const ADDRESS_V4: Node = list(
    "address",
    IP,
    &["ip"],
    &[
        leaf("ip", IP, Type::Ipv4),
        container(
            "config",
            IP,
            &[
                leaf("ip", IP, Type::Ipv4),
                leaf("prefix-length", IP, uint_range(0, 32)),
            ],
        ),
        state(
            IP,
            &[
                leaf("ip", IP, Type::Ipv4),
                leaf("prefix-length", IP, uint_range(0, 32)),
                operational(leaf("origin", IP, ADDRESS_ORIGIN)),
            ],
        ),
    ],
);

const ADDRESS_V6: Node = list(
    "address",
    IP,
    &["ip"],
    &[
        leaf("ip", IP, Type::Ipv6),
        container(
            "config",
            IP,
            &[
                leaf("ip", IP, Type::Ipv6),
                leaf("prefix-length", IP, uint_range(0, 128)),
            ],
        ),
        state(
            IP,
            &[
                leaf("ip", IP, Type::Ipv6),
                leaf("prefix-length", IP, uint_range(0, 128)),
                operational(leaf("origin", IP, ADDRESS_ORIGIN)),
            ],
        ),
    ],
);

// ---- openconfig-network-instance (static routes from openconfig-local-routing) ----

const NI_TYPE: Type = Type::Identity(&[DEFAULT_INSTANCE, L3VRF]);
const PROTOCOL_ID: Type = Type::Identity(&[STATIC, BGP]);

const NEXT_HOP: Node = list(
    "next-hop",
    NI,
    &["index"],
    &[
        leaf("index", NI, Type::String),
        container(
            "config",
            NI,
            &[
                leaf("index", NI, Type::String),
                leaf("next-hop", NI, Type::NextHop),
                leaf("preference", NI, uint(32)),
            ],
        ),
        state(
            NI,
            &[
                leaf("index", NI, Type::String),
                leaf("next-hop", NI, Type::NextHop),
                leaf("preference", NI, uint(32)),
            ],
        ),
        container(
            "interface-ref",
            NI,
            &[
                container(
                    "config",
                    NI,
                    &[
                        leaf("interface", NI, Type::String),
                        leaf("subinterface", NI, uint(32)),
                    ],
                ),
                state(
                    NI,
                    &[
                        leaf("interface", NI, Type::String),
                        leaf("subinterface", NI, uint(32)),
                    ],
                ),
            ],
        ),
    ],
);

const STATIC_ROUTE: Node = list(
    "static",
    NI,
    &["prefix"],
    &[
        leaf("prefix", NI, Type::IpPrefix),
        container("config", NI, &[leaf("prefix", NI, Type::IpPrefix)]),
        state(NI, &[leaf("prefix", NI, Type::IpPrefix)]),
        container("next-hops", NI, &[NEXT_HOP]),
    ],
);

const PROTOCOL: Node = list(
    "protocol",
    NI,
    &["identifier", "name"],
    &[
        leaf("identifier", NI, PROTOCOL_ID),
        leaf("name", NI, Type::ProtocolName),
        container(
            "config",
            NI,
            &[
                leaf("identifier", NI, PROTOCOL_ID),
                leaf("name", NI, Type::ProtocolName),
            ],
        ),
        state(
            NI,
            &[
                leaf("identifier", NI, PROTOCOL_ID),
                leaf("name", NI, Type::ProtocolName),
            ],
        ),
        container("static-routes", NI, &[STATIC_ROUTE]),
        container(
            "bgp",
            NI,
            &[
                BGP_GLOBAL,
                container("neighbors", NI, &[BGP_NEIGHBOR]),
                BGP_RIB,
            ],
        ),
    ],
);

const NETWORK_INSTANCE: Node = list(
    "network-instance",
    NI,
    &["name"],
    &[
        leaf("name", NI, Type::InstanceName),
        container(
            "config",
            NI,
            &[
                leaf("name", NI, Type::InstanceName),
                leaf("type", NI, NI_TYPE),
            ],
        ),
        state(
            NI,
            &[
                leaf("name", NI, Type::InstanceName),
                leaf("type", NI, NI_TYPE),
            ],
        ),
        container("protocols", NI, &[PROTOCOL]),
        AFTS,
    ],
);

// ---- openconfig-bgp (as used by openconfig-network-instance) ----

const SESSION_STATE: Type = Type::Enum(&[
    "IDLE",
    "CONNECT",
    "ACTIVE",
    "OPENSENT",
    "OPENCONFIRM",
    "ESTABLISHED",
]);
const AFI_SAFI: Type = Type::Identity(&[IPV4_UNICAST, IPV6_UNICAST]);
/// BGP hold time: 0 or 3..=65535 seconds (RFC 4271); the document checks
/// the lower bound.
const HOLD_TIME: Type = Type::Seconds { max: 65535 };

const BGP_GLOBAL_LEAVES: [Node; 2] = [leaf("as", NI, uint(32)), leaf("router-id", NI, Type::Ipv4)];

const BGP_GLOBAL: Node = container(
    "global",
    NI,
    &[
        container("config", NI, &BGP_GLOBAL_LEAVES),
        state(
            NI,
            &[
                leaf("as", NI, uint(32)),
                leaf("router-id", NI, Type::Ipv4),
                operational(leaf("total-prefixes", NI, uint(32))),
            ],
        ),
    ],
);

const NEIGHBOR_PREFIXES: Node = operational(container(
    "prefixes",
    NI,
    &[
        leaf("received", NI, uint(32)),
        leaf("sent", NI, uint(32)),
        leaf("installed", NI, uint(32)),
    ],
));

const NEIGHBOR_AFI_SAFI: Node = list(
    "afi-safi",
    NI,
    &["afi-safi-name"],
    &[
        leaf("afi-safi-name", NI, AFI_SAFI),
        container(
            "config",
            NI,
            &[
                leaf("afi-safi-name", NI, AFI_SAFI),
                leaf("enabled", NI, Type::Bool),
            ],
        ),
        state(
            NI,
            &[
                leaf("afi-safi-name", NI, AFI_SAFI),
                leaf("enabled", NI, Type::Bool),
                operational(leaf("active", NI, Type::Bool)),
                NEIGHBOR_PREFIXES,
            ],
        ),
    ],
);

const BGP_NEIGHBOR: Node = list(
    "neighbor",
    NI,
    &["neighbor-address"],
    &[
        leaf("neighbor-address", NI, Type::IpAddress),
        container(
            "config",
            NI,
            &[
                leaf("neighbor-address", NI, Type::IpAddress),
                leaf("peer-as", NI, uint(32)),
                leaf("description", NI, Type::String),
                leaf("enabled", NI, Type::Bool),
                secret(leaf("auth-password", NI, Type::String)),
            ],
        ),
        state(
            NI,
            &[
                leaf("neighbor-address", NI, Type::IpAddress),
                leaf("peer-as", NI, uint(32)),
                leaf("description", NI, Type::String),
                leaf("enabled", NI, Type::Bool),
                operational(leaf("session-state", NI, SESSION_STATE)),
            ],
        ),
        container(
            "timers",
            NI,
            &[
                container("config", NI, &[leaf("hold-time", NI, HOLD_TIME)]),
                state(
                    NI,
                    &[
                        leaf("hold-time", NI, HOLD_TIME),
                        operational(leaf("negotiated-hold-time", NI, HOLD_TIME)),
                    ],
                ),
            ],
        ),
        container(
            "transport",
            NI,
            &[
                container("config", NI, &[leaf("passive-mode", NI, Type::Bool)]),
                state(NI, &[leaf("passive-mode", NI, Type::Bool)]),
            ],
        ),
        container(
            "ebgp-multihop",
            NI,
            &[
                container("config", NI, &MULTIHOP_LEAVES),
                state(NI, &MULTIHOP_LEAVES),
            ],
        ),
        container(
            "apply-policy",
            NI,
            &[
                container("config", NI, &APPLY_POLICY_LEAVES),
                state(NI, &APPLY_POLICY_LEAVES),
            ],
        ),
        container("afi-safis", NI, &[NEIGHBOR_AFI_SAFI]),
    ],
);

const MULTIHOP_LEAVES: [Node; 2] = [
    leaf("enabled", NI, Type::Bool),
    leaf("multihop-ttl", NI, uint(8)),
];

const APPLY_POLICY_LEAVES: [Node; 2] = [
    leaf("import-policy", NI, Type::StrList),
    leaf("export-policy", NI, Type::StrList),
];

// ---- openconfig-rib-bgp (as used by openconfig-network-instance; all state) ----

const BGP_ORIGIN: Type = Type::Enum(&["IGP", "EGP", "INCOMPLETE"]);

const ATTR_SET: Node = list(
    "attr-set",
    NI,
    &["index"],
    &[
        leaf("index", NI, uint(64)),
        state(
            NI,
            &[
                leaf("index", NI, uint(64)),
                leaf("origin", NI, BGP_ORIGIN),
                leaf("next-hop", NI, Type::IpAddress),
                leaf("med", NI, uint(32)),
                leaf("local-pref", NI, uint(32)),
            ],
        ),
    ],
);

const LOC_RIB_ROUTE: Node = list(
    "route",
    NI,
    &["prefix", "origin", "path-id"],
    &[
        leaf("prefix", NI, Type::IpPrefix),
        leaf("origin", NI, Type::RouteOrigin),
        leaf("path-id", NI, uint(32)),
        state(
            NI,
            &[
                leaf("prefix", NI, Type::IpPrefix),
                leaf("origin", NI, Type::RouteOrigin),
                leaf("path-id", NI, uint(32)),
                leaf("attr-index", NI, uint(64)),
                leaf("valid-route", NI, Type::Bool),
            ],
        ),
    ],
);

const LOC_RIB: [Node; 1] = [container(
    "loc-rib",
    NI,
    &[container("routes", NI, &[LOC_RIB_ROUTE])],
)];

const RIB_AFI_SAFI: Node = list(
    "afi-safi",
    NI,
    &["afi-safi-name"],
    &[
        leaf("afi-safi-name", NI, AFI_SAFI),
        state(NI, &[leaf("afi-safi-name", NI, AFI_SAFI)]),
        container("ipv4-unicast", NI, &LOC_RIB),
        container("ipv6-unicast", NI, &LOC_RIB),
    ],
);

/// The BGP RIB (`config false` as a whole): its Loc-RIB and the attribute
/// sets its routes refer to.
const BGP_RIB: Node = Node {
    state: true,
    operational: true,
    ..container(
        "rib",
        NI,
        &[
            container("attr-sets", NI, &[ATTR_SET]),
            container("afi-safis", NI, &[RIB_AFI_SAFI]),
        ],
    )
};

// ---- openconfig-aft (as used by openconfig-network-instance; all state) ----

const AFT_ENTRY_V4: Node = list(
    "ipv4-entry",
    NI,
    &["prefix"],
    &[
        leaf("prefix", NI, Type::IpPrefix),
        state(
            NI,
            &[
                leaf("prefix", NI, Type::IpPrefix),
                leaf("next-hop-group", NI, uint(64)),
            ],
        ),
    ],
);

const AFT_ENTRY_V6: Node = list(
    "ipv6-entry",
    NI,
    &["prefix"],
    &[
        leaf("prefix", NI, Type::IpPrefix),
        state(
            NI,
            &[
                leaf("prefix", NI, Type::IpPrefix),
                leaf("next-hop-group", NI, uint(64)),
            ],
        ),
    ],
);

const AFT_NHG: Node = list(
    "next-hop-group",
    NI,
    &["id"],
    &[
        leaf("id", NI, uint(64)),
        state(NI, &[leaf("id", NI, uint(64))]),
        container(
            "next-hops",
            NI,
            &[list(
                "next-hop",
                NI,
                &["index"],
                &[
                    leaf("index", NI, uint(64)),
                    state(
                        NI,
                        &[leaf("index", NI, uint(64)), leaf("weight", NI, uint(64))],
                    ),
                ],
            )],
        ),
    ],
);

const AFT_NH: Node = list(
    "next-hop",
    NI,
    &["index"],
    &[
        leaf("index", NI, uint(64)),
        state(
            NI,
            &[
                leaf("index", NI, uint(64)),
                leaf("ip-address", NI, Type::IpAddress),
                leaf("mac-address", NI, Type::String),
            ],
        ),
        container(
            "interface-ref",
            NI,
            &[state(
                NI,
                &[
                    leaf("interface", NI, Type::String),
                    leaf("subinterface", NI, uint(32)),
                ],
            )],
        ),
    ],
);

/// The installed forwarding table (`config false` as a whole).
const AFTS: Node = Node {
    state: true,
    operational: true,
    ..container(
        "afts",
        NI,
        &[
            container("ipv4-unicast", NI, &[AFT_ENTRY_V4]),
            container("ipv6-unicast", NI, &[AFT_ENTRY_V6]),
            container("next-hop-groups", NI, &[AFT_NHG]),
            container("next-hops", NI, &[AFT_NH]),
        ],
    )
};

// ---- openconfig-routing-policy (+ openconfig-bgp-policy) ----

const PREFIX_SET_MODE: Type = Type::Enum(&["IPV4", "IPV6", "MIXED"]);
const MATCH_SET_OPTIONS: Type = Type::Enum(&["ANY", "ALL", "INVERT"]);
const MATCH_SET_OPTIONS_RESTRICTED: Type = Type::Enum(&["ANY", "INVERT"]);
const POLICY_RESULT: Type = Type::Enum(&["ACCEPT_ROUTE", "REJECT_ROUTE"]);
const SET_COMMUNITY_METHOD: Type = Type::Enum(&["INLINE", "REFERENCE"]);
const SET_COMMUNITY_OPTIONS: Type = Type::Enum(&["ADD", "REMOVE", "REPLACE"]);

const PREFIX_SET_LEAVES: [Node; 2] = [
    leaf("name", RP, Type::String),
    leaf("mode", RP, PREFIX_SET_MODE),
];
const PREFIX_LEAVES: [Node; 2] = [
    leaf("ip-prefix", RP, Type::IpPrefix),
    leaf("masklength-range", RP, Type::String),
];

const PREFIX_SET: Node = list(
    "prefix-set",
    RP,
    &["name"],
    &[
        leaf("name", RP, Type::String),
        container("config", RP, &PREFIX_SET_LEAVES),
        state(RP, &PREFIX_SET_LEAVES),
        container(
            "prefixes",
            RP,
            &[list(
                "prefix",
                RP,
                &["ip-prefix", "masklength-range"],
                &[
                    leaf("ip-prefix", RP, Type::IpPrefix),
                    leaf("masklength-range", RP, Type::String),
                    container("config", RP, &PREFIX_LEAVES),
                    state(RP, &PREFIX_LEAVES),
                ],
            )],
        ),
    ],
);

const COMMUNITY_SET_LEAVES: [Node; 3] = [
    leaf("community-set-name", BGP_POL, Type::String),
    leaf("community-member", BGP_POL, Type::StrList),
    leaf("match-set-options", BGP_POL, MATCH_SET_OPTIONS),
];
const AS_PATH_SET_LEAVES: [Node; 2] = [
    leaf("as-path-set-name", BGP_POL, Type::String),
    leaf("as-path-set-member", BGP_POL, Type::StrList),
];

const BGP_DEFINED_SETS: Node = container(
    "bgp-defined-sets",
    BGP_POL,
    &[
        container(
            "community-sets",
            BGP_POL,
            &[list(
                "community-set",
                BGP_POL,
                &["community-set-name"],
                &[
                    leaf("community-set-name", BGP_POL, Type::String),
                    container("config", BGP_POL, &COMMUNITY_SET_LEAVES),
                    state(BGP_POL, &COMMUNITY_SET_LEAVES),
                ],
            )],
        ),
        container(
            "as-path-sets",
            BGP_POL,
            &[list(
                "as-path-set",
                BGP_POL,
                &["as-path-set-name"],
                &[
                    leaf("as-path-set-name", BGP_POL, Type::String),
                    container("config", BGP_POL, &AS_PATH_SET_LEAVES),
                    state(BGP_POL, &AS_PATH_SET_LEAVES),
                ],
            )],
        ),
    ],
);

const NAME_LEAF: [Node; 1] = [leaf("name", RP, Type::String)];
const MATCH_PREFIX_SET_LEAVES: [Node; 2] = [
    leaf("prefix-set", RP, Type::String),
    leaf("match-set-options", RP, MATCH_SET_OPTIONS_RESTRICTED),
];
const BGP_CONDITION_LEAVES: [Node; 1] = [leaf("community-set", BGP_POL, Type::String)];
const MATCH_AS_PATH_SET_LEAVES: [Node; 2] = [
    leaf("as-path-set", BGP_POL, Type::String),
    leaf("match-set-options", BGP_POL, MATCH_SET_OPTIONS),
];
const POLICY_RESULT_LEAVES: [Node; 1] = [leaf("policy-result", RP, POLICY_RESULT)];
const BGP_ACTION_LEAVES: [Node; 3] = [
    leaf("set-local-pref", BGP_POL, uint(32)),
    leaf("set-med", BGP_POL, uint(32)),
    leaf("set-next-hop", BGP_POL, Type::IpAddress),
];
const PREPEND_LEAVES: [Node; 1] = [leaf("repeat-n", BGP_POL, uint_range(1, 255))];
const SET_COMMUNITY_LEAVES: [Node; 2] = [
    leaf("method", BGP_POL, SET_COMMUNITY_METHOD),
    leaf("options", BGP_POL, SET_COMMUNITY_OPTIONS),
];
const INLINE_LEAVES: [Node; 1] = [leaf("communities", BGP_POL, Type::StrList)];

const fn cs(module: &'static str, leaves: &'static [Node]) -> [Node; 2] {
    [container("config", module, leaves), state(module, leaves)]
}

const MATCH_PREFIX_SET_CS: [Node; 2] = cs(RP, &MATCH_PREFIX_SET_LEAVES);
const MATCH_AS_PATH_SET_CS: [Node; 2] = cs(BGP_POL, &MATCH_AS_PATH_SET_LEAVES);
const PREPEND_CS: [Node; 2] = cs(BGP_POL, &PREPEND_LEAVES);
const INLINE_CS: [Node; 2] = cs(BGP_POL, &INLINE_LEAVES);

const STATEMENT: Node = list(
    "statement",
    RP,
    &["name"],
    &[
        leaf("name", RP, Type::String),
        container("config", RP, &NAME_LEAF),
        state(RP, &NAME_LEAF),
        container(
            "conditions",
            RP,
            &[
                container("match-prefix-set", RP, &MATCH_PREFIX_SET_CS),
                container(
                    "bgp-conditions",
                    BGP_POL,
                    &[
                        container("config", BGP_POL, &BGP_CONDITION_LEAVES),
                        state(BGP_POL, &BGP_CONDITION_LEAVES),
                        container("match-as-path-set", BGP_POL, &MATCH_AS_PATH_SET_CS),
                    ],
                ),
            ],
        ),
        container(
            "actions",
            RP,
            &[
                container("config", RP, &POLICY_RESULT_LEAVES),
                state(RP, &POLICY_RESULT_LEAVES),
                container(
                    "bgp-actions",
                    BGP_POL,
                    &[
                        container("config", BGP_POL, &BGP_ACTION_LEAVES),
                        state(BGP_POL, &BGP_ACTION_LEAVES),
                        container("set-as-path-prepend", BGP_POL, &PREPEND_CS),
                        container(
                            "set-community",
                            BGP_POL,
                            &[
                                container("config", BGP_POL, &SET_COMMUNITY_LEAVES),
                                state(BGP_POL, &SET_COMMUNITY_LEAVES),
                                container("inline", BGP_POL, &INLINE_CS),
                            ],
                        ),
                    ],
                ),
            ],
        ),
    ],
);

const ROUTING_POLICY: Node = container(
    "routing-policy",
    RP,
    &[
        container(
            "defined-sets",
            RP,
            &[
                container("prefix-sets", RP, &[PREFIX_SET]),
                BGP_DEFINED_SETS,
            ],
        ),
        container(
            "policy-definitions",
            RP,
            &[list(
                "policy-definition",
                RP,
                &["name"],
                &[
                    leaf("name", RP, Type::String),
                    container("config", RP, &NAME_LEAF),
                    state(RP, &NAME_LEAF),
                    container("statements", RP, &[STATEMENT]),
                ],
            )],
        ),
    ],
);

// ---- openconfig-system ----

const SYSTEM: Node = container(
    "system",
    SYS,
    &[
        container("config", SYS, &[leaf("hostname", SYS, Type::String)]),
        state(
            SYS,
            &[
                leaf("hostname", SYS, Type::String),
                operational(leaf("current-datetime", SYS, Type::DateTime)),
                operational(leaf("boot-time", SYS, uint(64))),
            ],
        ),
    ],
);

/// The root of the data tree.
pub(crate) static ROOT: Node = container(
    "",
    "",
    &[
        container("interfaces", IF, &[INTERFACE]),
        container("network-instances", NI, &[NETWORK_INSTANCE]),
        ROUTING_POLICY,
        SYSTEM,
    ],
);

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(node: &'static Node, path: &mut Vec<&'static str>, out: &mut Vec<String>) {
        for c in node.children() {
            path.push(c.name);
            out.push(path.join("/"));
            if let Kind::List { keys, .. } = c.kind {
                for k in keys {
                    assert!(
                        c.key_type(k).is_some(),
                        "list {} lacks key leaf {k}",
                        path.join("/")
                    );
                }
            }
            walk(c, path, out);
            path.pop();
        }
    }

    #[test]
    fn every_list_has_its_key_leaves_and_names_are_unique_per_parent() {
        let mut out = Vec::new();
        walk(&ROOT, &mut Vec::new(), &mut out);
        let n = out.len();
        out.sort();
        out.dedup();
        assert_eq!(out.len(), n, "duplicate child names");
        assert!(out.contains(&"interfaces/interface/subinterfaces/subinterface/ipv4/addresses/address/config/prefix-length".to_owned()));
    }

    fn modules(node: &'static Node, out: &mut std::collections::BTreeSet<&'static str>) {
        for c in node.children() {
            out.insert(c.module);
            modules(c, out);
        }
    }

    #[test]
    fn capabilities_advertise_exactly_the_served_modules() {
        let mut served = std::collections::BTreeSet::new();
        modules(&ROOT, &mut served);
        // openconfig-aft's nodes take openconfig-network-instance's
        // namespace (it `uses` the AFT groupings); it is advertised for the
        // structure they follow.
        served.insert("openconfig-aft");
        // Likewise openconfig-rib-bgp for the BGP `rib`.
        served.insert("openconfig-rib-bgp");
        let advertised: std::collections::BTreeSet<&str> = crate::capabilities::SUPPORTED_MODELS
            .iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(advertised, served);
    }

    #[test]
    fn types_parse_and_encode() {
        assert_eq!(uint(16).parse_str("9000"), Ok(Value::Uint(9000)));
        assert!(uint(16).parse_str("70000").is_err());
        assert!(uint(16).decode_json(&serde_json::json!("9000")).is_err());
        assert_eq!(
            uint(64).decode_json(&serde_json::json!("18446744073709551615")),
            Ok(Value::Uint(u64::MAX))
        );
        assert_eq!(
            uint(64).to_json(&Value::Uint(5), true),
            serde_json::json!("5")
        );
        assert_eq!(
            uint(64).to_json(&Value::Uint(5), false),
            serde_json::json!(5)
        );
        assert_eq!(
            Type::NextHop.parse_str("openconfig-local-routing:DROP"),
            Ok(Value::Ident(&DROP))
        );
        assert_eq!(
            Type::NextHop.parse_str("2001:DB8::1"),
            Ok(Value::Str("2001:db8::1".into()))
        );
        assert!(INTERFACE_TYPE
            .parse_str("iana-if-type:ieee8023adLag")
            .is_err());
        assert_eq!(
            Type::InstanceName.parse_str("default"),
            Ok(Value::Str("DEFAULT".into()))
        );
    }
}
