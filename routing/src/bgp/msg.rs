//! BGP messages as the rest of the crate sees them. The wire format lives in
//! [`super::codec`]; nothing outside it touches bytes (or bgp-rs).

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

/// An (AFI, SAFI) pair.
pub type Family = (u16, u8);
pub const IPV4_UNICAST: Family = (AFI_IPV4, SAFI_UNICAST);
pub const IPV6_UNICAST: Family = (AFI_IPV6, SAFI_UNICAST);

/// The AS number used in the 2-octet field when the real one does not fit (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// A capability advertised in an OPEN (RFC 5492).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760.
    MultiProtocol(Family),
    /// RFC 2918.
    RouteRefresh,
    /// RFC 6793.
    FourOctetAs(u32),
    /// RFC 4724, with RFC 8538's N bit.
    GracefulRestart {
        restarting: bool,
        /// RFC 8538: a NOTIFICATION other than Hard Reset ends the session
        /// gracefully (routes kept) when both sides set this bit.
        notification: bool,
        restart_time: u16,
        /// Families with their "forwarding state preserved" bit.
        families: Vec<(Family, bool)>,
    },
    /// RFC 7911: per family, 1 = receive, 2 = send, 3 = both.
    AddPath(Vec<(Family, u8)>),
    /// Anything else, kept as received.
    Unknown { code: u8, value: Vec<u8> },
}

/// An OPEN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS when the AS needs 4 octets).
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The speaker's AS: from the 4-octet capability when present.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    pub fn families(&self) -> Vec<Family> {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::MultiProtocol(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    pub fn has(&self, pred: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(pred)
    }
}

/// A NOTIFICATION message (also what a decode error asks to send).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    /// This NOTIFICATION inside a Cease/Hard Reset (RFC 8538 section 3): the
    /// data is the reason's code, subcode and data.
    pub fn hard_reset(self) -> Self {
        let mut data = Vec::with_capacity(2 + self.data.len());
        data.push(self.code);
        data.push(self.subcode);
        data.extend_from_slice(&self.data);
        Self {
            code: err::CEASE,
            subcode: err::HARD_RESET,
            data,
        }
    }

    /// Cease/Hard Reset: the session ends without graceful restart.
    pub fn is_hard_reset(&self) -> bool {
        self.code == err::CEASE && self.subcode == err::HARD_RESET
    }
}

/// NOTIFICATION error codes (RFC 4271 section 4.5 and later RFCs).
pub mod err {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;

    // Message header error subcodes.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    // OPEN message error subcodes.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;

    // UPDATE message error subcodes.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;

    // Cease subcodes (RFC 4486).
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const CONNECTION_COLLISION: u8 = 7;
    /// RFC 8538: end the session without graceful restart; the data carries
    /// the code, subcode and data of the reason.
    pub const HARD_RESET: u8 = 9;
}

/// A ROUTE-REFRESH message (RFC 2918).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
}

/// One prefix of an UPDATE, with its ADD-PATH path identifier when negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: IpNet,
    pub path_id: Option<u32>,
}

/// ORIGIN values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// An AS_PATH segment (4-octet AS numbers throughout).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
    ConfedSequence(Vec<u32>),
    ConfedSet(Vec<u32>),
}

/// An attribute kept as received: unknown optional transitive attributes are
/// passed on (with the Partial bit set) as RFC 4271 requires.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of a route. Routes share one `Arc<PathAttrs>` per distinct
/// set (the RIB interns them), so a full table holds ~100k sets, not 1M copies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathAttrs {
    pub origin: Origin,
    pub as_path: Vec<AsSegment>,
    /// NEXT_HOP for IPv4 NLRI, or the MP_REACH_NLRI global next hop.
    pub next_hop: Option<IpAddr>,
    /// The link-local next hop of an IPv6 MP_REACH_NLRI, when given.
    pub link_local_next_hop: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
    pub extended_communities: Vec<u64>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub unknown: Vec<RawAttribute>,
}

impl PathAttrs {
    /// A set with only the mandatory attributes, for routes this speaker originates.
    pub fn new(origin: Origin, as_path: Vec<AsSegment>, next_hop: Option<IpAddr>) -> Self {
        Self {
            origin,
            as_path,
            next_hop,
            link_local_next_hop: None,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            extended_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// AS_PATH length for the decision process: a set counts as one (RFC 4271
    /// 9.1.2.2), confederation segments do not count (RFC 5065).
    pub fn as_path_len(&self) -> usize {
        self.as_path
            .iter()
            .map(|s| match s {
                AsSegment::Sequence(v) => v.len(),
                AsSegment::Set(_) => 1,
                AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
            })
            .sum()
    }

    /// The first AS of the path (the neighbor AS for MED comparison).
    pub fn first_as(&self) -> Option<u32> {
        self.as_path.iter().find_map(|s| match s {
            AsSegment::Sequence(v) => v.first().copied(),
            _ => None,
        })
    }
}

/// What RFC 7606 says to do about a malformed attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorAction {
    /// Drop the attribute, keep the route.
    AttributeDiscard,
    /// Treat every prefix of the UPDATE as withdrawn.
    TreatAsWithdraw,
    /// Reset the session with the NOTIFICATION in the error.
    SessionReset,
}

/// A problem found in one attribute, for the log line naming peer and attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrIssue {
    pub code: u8,
    pub action: ErrorAction,
    pub reason: String,
}

/// An UPDATE message, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Withdrawn prefixes: IPv4 from the Withdrawn Routes field, any family from MP_UNREACH_NLRI.
    pub withdrawn: Vec<Nlri>,
    /// Announced prefixes: IPv4 from the NLRI field, any family from MP_REACH_NLRI.
    pub announced: Vec<Nlri>,
    /// The attributes of the announced prefixes (None for a pure withdrawal).
    pub attrs: Option<Arc<PathAttrs>>,
    /// An End-of-RIB marker for this family (RFC 4724).
    pub end_of_rib: Option<Family>,
    /// RFC 7606: an attribute error requires the announced prefixes to be
    /// handled as withdrawn.
    pub treat_as_withdraw: bool,
    /// Attributes discarded or errors that led to treat-as-withdraw, for logging.
    pub issues: Vec<AttrIssue>,
}

/// Any BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// A decode failure that ends the session: the NOTIFICATION to send and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (NOTIFICATION {code}/{subcode})", code = notification.code, subcode = notification.subcode)]
pub struct MessageError {
    pub notification: Notification,
    pub reason: String,
}

impl MessageError {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> Self {
        Self {
            notification: Notification {
                code,
                subcode,
                data,
            },
            reason: reason.into(),
        }
    }
}

/// What decoding depends on, from the capabilities both sides negotiated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCaps {
    /// Both sides sent the 4-octet AS capability: AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
    /// Families in which the peer sends ADD-PATH path identifiers to us.
    pub add_path_rx: Vec<Family>,
    /// The session is external (for RFC 7606 rules such as LOCAL_PREF from eBGP).
    pub ebgp: bool,
    /// Both sides set graceful restart's N bit (RFC 8538): a NOTIFICATION
    /// other than Hard Reset, or the hold timer expiring, ends the session
    /// gracefully.
    pub graceful_notification: bool,
}
