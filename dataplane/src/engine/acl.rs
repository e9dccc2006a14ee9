//! Compiled ACL rules and their matching: a linear scan of the rules of one stage,
//! sorted by priority (highest first, then by rule id), where the first match wins.

use super::parse::{mac_u64, Addrs, Eth, Ip, PROTO_TCP, PROTO_UDP};
use ipnet::IpNet;
use nos_core::{AclAction, AclId, AclMatch, AclRule, PortId, PortRange, VrfId};

/// An address prefix to match, in the packet's family only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IpMatch {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl IpMatch {
    fn new(n: &IpNet) -> Self {
        match n {
            IpNet::V4(n) => {
                let mask = u32::from(n.netmask());
                IpMatch::V4 {
                    net: u32::from(n.network()) & mask,
                    mask,
                }
            }
            IpNet::V6(n) => {
                let mask = u128::from(n.netmask());
                IpMatch::V6 {
                    net: u128::from(n.network()) & mask,
                    mask,
                }
            }
        }
    }

    #[inline]
    fn matches_v4(&self, a: u32) -> bool {
        matches!(*self, IpMatch::V4 { net, mask } if a & mask == net)
    }

    #[inline]
    fn matches_v6(&self, a: u128) -> bool {
        matches!(*self, IpMatch::V6 { net, mask } if a & mask == net)
    }
}

/// What a compiled rule does; a `SetVrf` target is the VRF's index in the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleAction {
    Permit,
    Drop,
    Trap,
    Copy,
    SetVrf(u32),
}

/// One rule, with its fields in the forms the packet is compared in.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub id: AclId,
    pub priority: u32,
    in_port: Option<PortId>,
    src_mac: Option<(u64, u64)>,
    dst_mac: Option<(u64, u64)>,
    ether_type: Option<(u16, u16)>,
    vlan: Option<u16>,
    src_ip: Option<IpMatch>,
    dst_ip: Option<IpMatch>,
    ip_proto: Option<u8>,
    src_port: Option<PortRange>,
    dst_port: Option<PortRange>,
    tcp_flags: Option<(u8, u8)>,
    dscp: Option<u8>,
    pub action: RuleAction,
}

/// The packet as the ACL stages see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AclPacket<'a> {
    pub in_port: PortId,
    pub eth: &'a Eth,
    pub ip: &'a Ip,
}

impl Rule {
    /// Compiles a rule; `vrf_index` maps a `SetVrf` target to its table index
    /// (`None` makes the rule a no-op `Permit`, which only happens for a VRF the
    /// model would have refused).
    pub fn compile(r: &AclRule, vrf_index: impl Fn(VrfId) -> Option<u32>) -> Rule {
        let m: &AclMatch = &r.matches;
        let mac = |x: &nos_core::Masked<nos_core::MacAddr>| {
            let mask = mac_u64(x.mask.0);
            (mac_u64(x.value.0) & mask, mask)
        };
        Rule {
            id: r.id,
            priority: r.priority,
            in_port: m.in_port,
            src_mac: m.src_mac.as_ref().map(mac),
            dst_mac: m.dst_mac.as_ref().map(mac),
            ether_type: m.ether_type.map(|e| (e.value & e.mask, e.mask)),
            vlan: m.vlan,
            src_ip: m.src_ip.as_ref().map(IpMatch::new),
            dst_ip: m.dst_ip.as_ref().map(IpMatch::new),
            ip_proto: m.ip_proto,
            src_port: m.src_port,
            dst_port: m.dst_port,
            tcp_flags: m.tcp_flags.map(|t| (t.value & t.mask, t.mask)),
            dscp: m.dscp,
            action: match r.action {
                AclAction::Permit => RuleAction::Permit,
                AclAction::Drop => RuleAction::Drop,
                AclAction::Trap => RuleAction::Trap,
                AclAction::Copy => RuleAction::Copy,
                AclAction::SetVrf(v) => vrf_index(v).map_or(RuleAction::Permit, RuleAction::SetVrf),
            },
        }
    }

    /// Whether every field the rule sets matches the packet.
    #[inline]
    pub fn matches(&self, p: &AclPacket<'_>) -> bool {
        let ip = p.ip;
        if self.in_port.is_some_and(|x| x != p.in_port) {
            return false;
        }
        if let Some((v, m)) = self.src_mac {
            if mac_u64(p.eth.src) & m != v {
                return false;
            }
        }
        if let Some((v, m)) = self.dst_mac {
            if mac_u64(p.eth.dst) & m != v {
                return false;
            }
        }
        if let Some((v, m)) = self.ether_type {
            if p.eth.ether_type & m != v {
                return false;
            }
        }
        if self.vlan.is_some() && self.vlan != p.eth.vlan {
            return false;
        }
        let ok = match ip.addrs {
            Addrs::V4 { src, dst } => {
                self.src_ip.is_none_or_v4(src) && self.dst_ip.is_none_or_v4(dst)
            }
            Addrs::V6 { src, dst } => {
                self.src_ip.is_none_or_v6(src) && self.dst_ip.is_none_or_v6(dst)
            }
        };
        if !ok {
            return false;
        }
        if self.ip_proto.is_some_and(|x| x != ip.proto) {
            return false;
        }
        if self.src_port.is_some() || self.dst_port.is_some() {
            let Some((sp, dp)) = ip
                .ports
                .filter(|_| matches!(ip.proto, PROTO_TCP | PROTO_UDP))
            else {
                return false;
            };
            if self.src_port.is_some_and(|r| !r.contains(sp))
                || self.dst_port.is_some_and(|r| !r.contains(dp))
            {
                return false;
            }
        }
        if let Some((v, m)) = self.tcp_flags {
            match ip.tcp_flags {
                Some(f) if ip.proto == PROTO_TCP && f & m == v => {}
                _ => return false,
            }
        }
        if self.dscp.is_some_and(|d| d != ip.dscp) {
            return false;
        }
        true
    }
}

trait OptIpMatch {
    fn is_none_or_v4(&self, a: u32) -> bool;
    fn is_none_or_v6(&self, a: u128) -> bool;
}

impl OptIpMatch for Option<IpMatch> {
    #[inline]
    fn is_none_or_v4(&self, a: u32) -> bool {
        match self {
            None => true,
            Some(m) => m.matches_v4(a),
        }
    }

    #[inline]
    fn is_none_or_v6(&self, a: u128) -> bool {
        match self {
            None => true,
            Some(m) => m.matches_v6(a),
        }
    }
}

/// Sorts rules so that the first match is the winner.
pub(crate) fn sort(rules: &mut [Rule]) {
    rules.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
}

/// The winning rule's action, if any rule matches.
#[inline]
pub(crate) fn first_match(rules: &[Rule], p: &AclPacket<'_>) -> Option<RuleAction> {
    rules.iter().find(|r| r.matches(p)).map(|r| r.action)
}
