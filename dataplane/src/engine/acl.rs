//! Compiled ACL rules and their matching: a scan of the rules of one stage,
//! sorted by priority (highest first, then by rule id), where the first match
//! wins; only the rules that can match the packet's IP protocol are tried.
//!
//! The packet's fields are packed once into a [`Key`] of seven 64-bit words
//! (MACs, ether type, VLAN, port, protocol, DSCP, TCP flags, flags saying
//! which fields the packet has, and the two addresses) and two L4 ports; a
//! rule is a value and a mask over the same words and a range per port, so
//! matching one rule is seven masked compares and two range checks, without
//! branches.

use super::parse::{mac_u64, Addrs, Eth, Ip, PROTO_TCP, PROTO_UDP};
use ipnet::IpNet;
use nos_core::{AclAction, AclId, AclMatch, AclRule, PortId, VrfId};

/// Words of a [`Key`].
const WORDS: usize = 7;

// Word 0: source MAC (bits 0-47), ether type (48-63).
// Word 1: destination MAC (0-47), VLAN id (48-63).
// Word 2: ingress port (0-31), IP protocol (32-39), DSCP (40-47), TCP flags
// (48-55) and the flags below.
const IS_V4: u64 = 1 << 56;
const IS_V6: u64 = 1 << 57;
/// TCP or UDP with its ports.
const HAS_PORTS: u64 = 1 << 58;
/// TCP with its flags.
const HAS_TCP_FLAGS: u64 = 1 << 59;
const HAS_VLAN: u64 = 1 << 60;
// Words 3-4: source address (IPv6: high, low; IPv4: 0, address).
// Words 5-6: destination address, likewise.

/// The packet as the ACL stages compare it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key {
    w: [u64; WORDS],
    src_port: u16,
    dst_port: u16,
}

fn split(a: u128) -> (u64, u64) {
    ((a >> 64) as u64, a as u64)
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

/// One rule, as a value and mask over the words of a [`Key`].
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub id: AclId,
    pub priority: u32,
    value: [u64; WORDS],
    mask: [u64; WORDS],
    /// Port ranges as (first, last - first); an absent range is (0, 65535).
    src_port: (u16, u16),
    dst_port: (u16, u16),
    pub action: RuleAction,
}

/// The packet as the ACL stages see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AclPacket<'a> {
    pub in_port: PortId,
    pub eth: &'a Eth,
    pub ip: &'a Ip,
}

impl AclPacket<'_> {
    /// The packet's fields packed for matching.
    #[inline(always)]
    pub fn key(&self) -> Key {
        let (eth, ip) = (self.eth, self.ip);
        let mut w = [0u64; WORDS];
        w[0] = eth.src | u64::from(eth.ether_type) << 48;
        let mut flags = 0;
        let mut vlan = 0;
        if eth.tagged {
            flags |= HAS_VLAN;
            vlan = u64::from(eth.tci & 0x0fff);
        }
        w[1] = eth.dst | vlan << 48;
        let (src_port, dst_port) = match ip.ports() {
            Some(p) if matches!(ip.proto, PROTO_TCP | PROTO_UDP) => {
                flags |= HAS_PORTS;
                p
            }
            _ => (0, 0),
        };
        let tcp_flags = match ip.tcp_flags() {
            Some(f) if ip.proto == PROTO_TCP => {
                flags |= HAS_TCP_FLAGS;
                f
            }
            _ => 0,
        };
        match ip.addrs {
            Addrs::V4 { src, dst } => {
                flags |= IS_V4;
                w[4] = u64::from(src);
                w[6] = u64::from(dst);
            }
            Addrs::V6 { src, dst } => {
                flags |= IS_V6;
                (w[3], w[4]) = split(src);
                (w[5], w[6]) = split(dst);
            }
        }
        w[2] = u64::from(self.in_port.0)
            | u64::from(ip.proto) << 32
            | u64::from(ip.dscp) << 40
            | u64::from(tcp_flags) << 48
            | flags;
        Key {
            w,
            src_port,
            dst_port,
        }
    }
}

/// Value and mask of an address prefix in words `hi`, `hi + 1`, and the
/// family flag it requires.
fn ip_match(n: &IpNet, value: &mut [u64; WORDS], mask: &mut [u64; WORDS], hi: usize) -> u64 {
    match n {
        IpNet::V4(n) => {
            let m = u32::from(n.netmask());
            mask[hi + 1] = u64::from(m);
            value[hi + 1] = u64::from(u32::from(n.network()) & m);
            mask[hi] = u64::MAX;
            value[hi] = 0;
            IS_V4
        }
        IpNet::V6(n) => {
            let m = u128::from(n.netmask());
            (mask[hi], mask[hi + 1]) = split(m);
            (value[hi], value[hi + 1]) = split(u128::from(n.network()) & m);
            IS_V6
        }
    }
}

impl Rule {
    /// Compiles a rule; `vrf_index` maps a `SetVrf` target to its table index
    /// (`None` makes the rule a no-op `Permit`, which only happens for a VRF the
    /// model would have refused).
    pub fn compile(r: &AclRule, vrf_index: impl Fn(VrfId) -> Option<u32>) -> Rule {
        let m: &AclMatch = &r.matches;
        let mut value = [0u64; WORDS];
        let mut mask = [0u64; WORDS];
        let mut need = 0u64;
        if let Some(x) = &m.src_mac {
            mask[0] |= mac_u64(x.mask.0);
            value[0] |= mac_u64(x.value.0) & mac_u64(x.mask.0);
        }
        if let Some(e) = m.ether_type {
            mask[0] |= u64::from(e.mask) << 48;
            value[0] |= u64::from(e.value & e.mask) << 48;
        }
        if let Some(x) = &m.dst_mac {
            mask[1] |= mac_u64(x.mask.0);
            value[1] |= mac_u64(x.value.0) & mac_u64(x.mask.0);
        }
        if let Some(v) = m.vlan {
            mask[1] |= 0xffff << 48;
            value[1] |= u64::from(v) << 48;
            need |= HAS_VLAN;
        }
        if let Some(p) = m.in_port {
            mask[2] |= 0xffff_ffff;
            value[2] |= u64::from(p.0);
        }
        if let Some(p) = m.ip_proto {
            mask[2] |= 0xff << 32;
            value[2] |= u64::from(p) << 32;
        }
        if let Some(d) = m.dscp {
            mask[2] |= 0xff << 40;
            value[2] |= u64::from(d) << 40;
        }
        if let Some(t) = m.tcp_flags {
            mask[2] |= u64::from(t.mask) << 48;
            value[2] |= u64::from(t.value & t.mask) << 48;
            need |= HAS_TCP_FLAGS;
        }
        // The family: both flags are compared, so a rule whose addresses
        // are of different families (which the model refuses) never matches.
        let mut family = 0;
        if let Some(n) = &m.src_ip {
            family |= ip_match(n, &mut value, &mut mask, 3);
        }
        if let Some(n) = &m.dst_ip {
            family |= ip_match(n, &mut value, &mut mask, 5);
        }
        if family != 0 {
            mask[2] |= IS_V4 | IS_V6;
            value[2] |= family;
        }
        let range = |r: Option<nos_core::PortRange>| match r {
            Some(r) => (r.first, r.last.wrapping_sub(r.first)),
            None => (0, u16::MAX),
        };
        if m.src_port.is_some() || m.dst_port.is_some() {
            need |= HAS_PORTS;
        }
        // An empty range (last < first) matches nothing: a span that wraps
        // is made impossible through a flag no packet has both of.
        let empty = |r: Option<nos_core::PortRange>| r.is_some_and(|r| r.last < r.first);
        if empty(m.src_port) || empty(m.dst_port) {
            mask[2] |= IS_V4 | IS_V6;
            value[2] |= IS_V4 | IS_V6;
        }
        mask[2] |= need;
        value[2] |= need;
        Rule {
            id: r.id,
            priority: r.priority,
            value,
            mask,
            src_port: range(m.src_port),
            dst_port: range(m.dst_port),
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
    pub fn matches(&self, k: &Key) -> bool {
        let mut diff = 0u64;
        for i in 0..WORDS {
            diff |= (k.w[i] & self.mask[i]) ^ self.value[i];
        }
        diff == 0
            && k.src_port.wrapping_sub(self.src_port.0) <= self.src_port.1
            && k.dst_port.wrapping_sub(self.dst_port.0) <= self.dst_port.1
    }
}

/// The rules of one stage, sorted so that the first match is the winner,
/// with an index by IP protocol: for each protocol, a bitmap of the rules
/// that can match a packet of that protocol (rules that set none are in
/// every one). A packet is compared with those rules only, in order, so a
/// stage of rules for other protocols costs one load.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stage {
    rules: Vec<Rule>,
    /// 64-bit words per protocol in `by_proto`.
    words: usize,
    /// 256 rows of `words` words; bit `i` of a row is rule `i`.
    by_proto: Vec<u64>,
    /// Bit `p`: some rule can match protocol `p`.
    any: [u64; 4],
}

/// Bits of the protocol in word 2 of a [`Key`].
const PROTO_SHIFT: u32 = 32;

impl Stage {
    pub fn new(mut rules: Vec<Rule>) -> Self {
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        let words = rules.len().div_ceil(64);
        let mut by_proto = vec![0u64; 256 * words];
        let mut any = [0u64; 4];
        for (i, r) in rules.iter().enumerate() {
            let mask = (r.mask[2] >> PROTO_SHIFT) & 0xff;
            let value = (r.value[2] >> PROTO_SHIFT) & 0xff;
            for p in 0..256u64 {
                if p & mask == value {
                    by_proto[p as usize * words + i / 64] |= 1 << (i % 64);
                    any[p as usize / 64] |= 1 << (p % 64);
                }
            }
        }
        Stage {
            rules,
            words,
            by_proto,
            any,
        }
    }

    /// Whether any rule can match a packet of IP protocol `proto` (if not,
    /// the packet's key need not even be built).
    #[inline]
    pub fn may_match(&self, proto: u8) -> bool {
        (self.any[usize::from(proto) / 64] >> (proto % 64)) & 1 != 0
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The winning rule's action, if any rule matches.
    #[inline]
    pub fn first_match(&self, k: &Key) -> Option<RuleAction> {
        if self.words == 0 {
            return None;
        }
        let proto = ((k.w[2] >> PROTO_SHIFT) & 0xff) as usize;
        let row = self
            .by_proto
            .get(proto * self.words..(proto + 1) * self.words)?;
        for (w, &bits) in row.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                let i = w * 64 + b.trailing_zeros() as usize;
                b &= b - 1;
                if let Some(r) = self.rules.get(i) {
                    if r.matches(k) {
                        return Some(r.action);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use nos_core::{AclStage, MacAddr, Masked, PortRange};
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// The model's meaning of a match, field by field.
    fn reference(m: &AclMatch, in_port: PortId, eth: &Eth, ip: &Ip) -> bool {
        let mac = |x: &Option<Masked<MacAddr>>, a: u64| {
            let a = &a.to_be_bytes()[2..];
            x.as_ref()
                .is_none_or(|x| (0..6).all(|i| a[i] & x.mask.0[i] == x.value.0[i] & x.mask.0[i]))
        };
        let (src, dst) = match ip.addrs {
            Addrs::V4 { src, dst } => (
                IpAddr::from(std::net::Ipv4Addr::from(src)),
                IpAddr::from(std::net::Ipv4Addr::from(dst)),
            ),
            Addrs::V6 { src, dst } => (
                IpAddr::from(std::net::Ipv6Addr::from(src)),
                IpAddr::from(std::net::Ipv6Addr::from(dst)),
            ),
        };
        let net = |n: &Option<IpNet>, a: IpAddr| n.as_ref().is_none_or(|n| n.contains(&a));
        let ports = if m.src_port.is_some() || m.dst_port.is_some() {
            match ip.ports() {
                Some((s, d)) if matches!(ip.proto, PROTO_TCP | PROTO_UDP) => {
                    m.src_port.is_none_or(|r| r.contains(s))
                        && m.dst_port.is_none_or(|r| r.contains(d))
                }
                _ => false,
            }
        } else {
            true
        };
        m.in_port.is_none_or(|p| p == in_port)
            && mac(&m.src_mac, eth.src)
            && mac(&m.dst_mac, eth.dst)
            && m.ether_type
                .is_none_or(|e| eth.ether_type as u16 & e.mask == e.value & e.mask)
            && m.vlan.is_none_or(|v| eth.vlan() == Some(v))
            && net(&m.src_ip, src)
            && net(&m.dst_ip, dst)
            && m.ip_proto.is_none_or(|p| p == ip.proto)
            && ports
            && m.tcp_flags.is_none_or(|t| {
                ip.proto == PROTO_TCP
                    && ip
                        .tcp_flags()
                        .is_some_and(|f| f & t.mask == t.value & t.mask)
            })
            && m.dscp.is_none_or(|d| d == ip.dscp)
    }

    const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 9, 0, 2]];
    const V4: [u32; 3] = [0x0a00_0001, 0x0a00_0102, 0xc000_0201];
    const V6: [u128; 2] = [0x2001_0db8 << 96 | 1, 0x2001_0db8_0001 << 80 | 2];
    const PORTS: [u16; 4] = [53, 80, 443, 5001];

    fn opt<T: std::fmt::Debug + Clone + 'static>(
        s: impl Strategy<Value = T> + 'static,
    ) -> BoxedStrategy<Option<T>> {
        prop_oneof![Just(None), s.prop_map(Some)].boxed()
    }

    fn masked_mac() -> impl Strategy<Value = Masked<MacAddr>> {
        (0..2usize, 0..3usize).prop_map(|(v, m)| Masked {
            value: MacAddr(MACS[v]),
            mask: MacAddr([[0xff; 6], [0xff, 0xff, 0xff, 0, 0, 0], [0; 6]][m]),
        })
    }

    fn net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (0..3usize, prop::sample::select(vec![0u8, 8, 24, 30, 32])).prop_map(|(a, l)| {
                IpNet::V4(ipnet::Ipv4Net::new(V4[a].into(), l).unwrap().trunc())
            }),
            (0..2usize, prop::sample::select(vec![0u8, 32, 64, 128])).prop_map(|(a, l)| {
                IpNet::V6(ipnet::Ipv6Net::new(V6[a].into(), l).unwrap().trunc())
            }),
        ]
    }

    fn range() -> impl Strategy<Value = PortRange> {
        (0..4usize, 0..4usize).prop_map(|(a, b)| PortRange {
            first: PORTS[a.min(b)],
            last: PORTS[a.max(b)],
        })
    }

    prop_compose! {
        fn a_match()(
            in_port in opt(1..3u32),
            src_mac in opt(masked_mac()),
            dst_mac in opt(masked_mac()),
            ether_type in opt(prop::sample::select(vec![0x0800u16, 0x86dd])),
            vlan in opt(prop::sample::select(vec![10u16, 20])),
            src_ip in opt(net()),
            dst_ip in opt(net()),
            ip_proto in opt(prop::sample::select(vec![1u8, 6, 17])),
            src_port in opt(range()),
            dst_port in opt(range()),
            tcp_flags in opt((0u8..4, 0u8..4).prop_map(|(v, m)| Masked { value: v, mask: m })),
            dscp in opt(prop::sample::select(vec![0u8, 46])),
        ) -> AclMatch {
            AclMatch {
                in_port: in_port.map(PortId),
                src_mac,
                dst_mac,
                ether_type: ether_type.map(|v| Masked { value: v, mask: 0xffff }),
                vlan,
                src_ip,
                dst_ip,
                ip_proto,
                src_port,
                dst_port,
                tcp_flags,
                dscp,
            }
        }
    }

    prop_compose! {
        fn a_packet()(
            in_port in 1..3u32,
            macs in (0..2usize, 0..2usize),
            vlan in opt(prop::sample::select(vec![10u16, 20])),
            v6 in any::<bool>(),
            addrs in (0..3usize, 0..3usize),
            proto in prop::sample::select(vec![1u8, 6, 17]),
            ports in opt((0..4usize, 0..4usize)),
            flags in opt(0u8..4),
            dscp in prop::sample::select(vec![0u8, 46]),
        ) -> (PortId, Eth, Ip) {
            let eth = Eth {
                src: mac_u64(MACS[macs.0]),
                dst: mac_u64(MACS[macs.1]),
                tci: u32::from(vlan.unwrap_or(0)),
                tagged: vlan.is_some(),
                ether_type: if v6 { 0x86dd } else { 0x0800 },
                l3: 14,
            };
            let addrs = if v6 {
                Addrs::V6 { src: V6[addrs.0 % 2], dst: V6[addrs.1 % 2] }
            } else {
                Addrs::V4 { src: V4[addrs.0], dst: V4[addrs.1] }
            };
            let ports = ports.map(|(a, b)| u32::from(PORTS[a]) << 16 | u32::from(PORTS[b]));
            let ip = Ip {
                addrs,
                proto,
                dscp,
                ttl: 64,
                len: 40,
                has: if ports.is_some() { parse::HAS_PORTS } else { 0 }
                    | if flags.is_some() { parse::HAS_TCP_FLAGS } else { 0 },
                port_pair: ports.unwrap_or(0),
                tcp_flag_bits: flags.unwrap_or(0),
                icmp6: 0,
            };
            (PortId(in_port), eth, ip)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn compiled_rules_match_exactly_what_the_model_says(
            m in a_match(),
            packets in prop::collection::vec(a_packet(), 16),
        ) {
            let rule = AclRule {
                id: AclId(1),
                name: "r".into(),
                stage: AclStage::Ingress,
                priority: 1,
                matches: m.clone(),
                action: AclAction::Drop,
            };
            let r = Rule::compile(&rule, |_| None);
            for (port, eth, ip) in &packets {
                let key = AclPacket { in_port: *port, eth, ip }.key();
                prop_assert_eq!(
                    r.matches(&key),
                    reference(&m, *port, eth, ip),
                    "{:?} on {:?} {:?} {:?}", m, port, eth, ip
                );
            }
        }

        /// A stage answers what the first matching rule in priority order
        /// says (by the model's meaning), whatever protocols its rules name;
        /// more than 64 rules span several words of the protocol index.
        #[test]
        fn a_stage_picks_the_first_matching_rule_by_priority(
            rules in prop::collection::vec((a_match(), 0u32..8, 0usize..5), 0..140),
            packets in prop::collection::vec(a_packet(), 16),
        ) {
            let actions = [
                AclAction::Permit,
                AclAction::Drop,
                AclAction::Trap,
                AclAction::Copy,
                AclAction::SetVrf(nos_core::VrfId(7)),
            ];
            let model: Vec<AclRule> = rules
                .iter()
                .enumerate()
                .map(|(i, (m, prio, a))| AclRule {
                    id: AclId(i as u32),
                    name: format!("r{i}"),
                    stage: AclStage::Ingress,
                    priority: *prio,
                    matches: m.clone(),
                    action: actions[*a],
                })
                .collect();
            let stage = Stage::new(model.iter().map(|r| Rule::compile(r, |_| Some(3))).collect());
            let mut by_priority: Vec<&AclRule> = model.iter().collect();
            by_priority.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
            for (port, eth, ip) in &packets {
                let key = AclPacket { in_port: *port, eth, ip }.key();
                let want = by_priority
                    .iter()
                    .find(|r| reference(&r.matches, *port, eth, ip))
                    .map(|r| match r.action {
                        AclAction::Permit => RuleAction::Permit,
                        AclAction::Drop => RuleAction::Drop,
                        AclAction::Trap => RuleAction::Trap,
                        AclAction::Copy => RuleAction::Copy,
                        AclAction::SetVrf(_) => RuleAction::SetVrf(3),
                    });
                prop_assert_eq!(stage.first_match(&key), want);
                // A packet a rule matches is never skipped.
                prop_assert!(want.is_none() || stage.may_match(ip.proto));
            }
        }
    }
}
