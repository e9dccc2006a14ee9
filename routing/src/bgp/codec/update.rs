//! UPDATE decoding (RFC 4271 section 4.3) with the revised error handling of
//! RFC 7606.
//!
//! The attributes are walked here (flags, type, extended length, per-attribute
//! length and flag checks, duplicates); values are decoded by
//! `bgp_rs::PathAttribute::parse` only for codes it reads correctly and only
//! after their length has been checked. AS_PATH, AS4_PATH, MP_REACH_NLRI,
//! MP_UNREACH_NLRI and all NLRI are decoded here.
//!
//! What each error gets (RFC 7606 unless noted):
//!
//! | error | action |
//! | --- | --- |
//! | Withdrawn Routes Length / Total Path Attribute Length past the message | reset 3/1 |
//! | Withdrawn Routes or NLRI field unparsable (length > 32/128, overrun) | reset 3/10 |
//! | attribute overruns the attribute field, or < 3 octets left | treat-as-withdraw; reset 3/1 if no NLRI was located (no NLRI field, no MP attribute seen) |
//! | MP_REACH/MP_UNREACH overrunning the attribute field, or repeated | reset 3/1 |
//! | any other attribute repeated | later ones discarded |
//! | Optional/Transitive flags wrong | MP_*: reset 3/4 (data = attribute); AS4_*: discard; others: treat-as-withdraw |
//! | ORIGIN length != 1 or value > 2 | treat-as-withdraw |
//! | AS_PATH malformed (segment type, zero length, overrun, underrun), AS 0 (RFC 7607), confederation segments from eBGP | treat-as-withdraw |
//! | NEXT_HOP length != 4; 0/8, 127/8, 224/4, 240/4 with NLRI field prefixes (RFC 4271 6.3) | treat-as-withdraw |
//! | MULTI_EXIT_DISC length != 4 | treat-as-withdraw |
//! | LOCAL_PREF from eBGP | discard; from iBGP with length != 4: treat-as-withdraw |
//! | ATOMIC_AGGREGATE length != 0 | discard |
//! | AGGREGATOR length != 6 (2-octet) / 8 (4-octet), AS 0 | discard |
//! | COMMUNITIES, CLUSTER_LIST length not a non-zero multiple of 4; ORIGINATOR_ID != 4 | treat-as-withdraw |
//! | EXTENDED_COMMUNITIES (8), LARGE_COMMUNITIES (12, RFC 8092) likewise | treat-as-withdraw |
//! | AS4_PATH / AS4_AGGREGATOR malformed, AS 0, or from a 4-octet peer (RFC 6793) | discard |
//! | MP_REACH shorter than its fixed part / no reserved octet; MP_UNREACH < 3 | reset 3/5 (data = attribute) |
//! | MP_REACH next hop length wrong for the family (IPv4 4; IPv6 16 or 32) | reset 3/9 (data = attribute) |
//! | MP_REACH/MP_UNREACH NLRI unparsable | reset 3/10 |
//! | MP_REACH/MP_UNREACH of a family other than IPv4/IPv6 unicast | its NLRI ignored (issue listed) |
//! | MP_REACH global next hop unspecified/loopback/multicast | treat-as-withdraw |
//! | unrecognized well-known attribute | treat-as-withdraw |
//! | unrecognized optional transitive / non-transitive | kept with Partial set / ignored |
//! | ORIGIN or AS_PATH missing with prefixes announced; NEXT_HOP missing with NLRI field prefixes | treat-as-withdraw |
//! | NLRI field and MP_REACH_NLRI announcing with different next hops | treat-as-withdraw (one attribute set cannot carry both) |

use super::{aspath, length_error, nlri};
use crate::bgp::msg::{
    err, AsSegment, AttrIssue, ErrorAction, Family, MessageError, Nlri, Origin, PathAttrs,
    RawAttribute, SessionCaps, Update, AS_TRANS, IPV4_UNICAST, IPV6_UNICAST,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

pub(super) const FLAG_OPTIONAL: u8 = 0x80;
pub(super) const FLAG_TRANSITIVE: u8 = 0x40;
pub(super) const FLAG_PARTIAL: u8 = 0x20;
pub(super) const FLAG_EXTENDED: u8 = 0x10;

/// Path attribute type codes (IANA "BGP Path Attributes").
pub(super) mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// The Optional and Transitive bits each recognised attribute must carry;
/// `None` for codes this codec does not recognise.
pub(super) fn expected_flags(c: u8) -> Option<u8> {
    const WELL_KNOWN: u8 = FLAG_TRANSITIVE;
    const OPT_TRANS: u8 = FLAG_OPTIONAL | FLAG_TRANSITIVE;
    const OPT_NON_TRANS: u8 = FLAG_OPTIONAL;
    Some(match c {
        code::ORIGIN | code::AS_PATH | code::NEXT_HOP | code::LOCAL_PREF => WELL_KNOWN,
        code::ATOMIC_AGGREGATE => WELL_KNOWN,
        code::MULTI_EXIT_DISC | code::ORIGINATOR_ID | code::CLUSTER_LIST => OPT_NON_TRANS,
        code::MP_REACH_NLRI | code::MP_UNREACH_NLRI => OPT_NON_TRANS,
        code::AGGREGATOR | code::COMMUNITIES | code::EXTENDED_COMMUNITIES => OPT_TRANS,
        code::AS4_PATH | code::AS4_AGGREGATOR | code::LARGE_COMMUNITIES => OPT_TRANS,
        _ => return None,
    })
}

/// A name for log lines ("attribute" for codes this codec does not know).
pub fn attr_name(c: u8) -> &'static str {
    match c {
        code::ORIGIN => "ORIGIN",
        code::AS_PATH => "AS_PATH",
        code::NEXT_HOP => "NEXT_HOP",
        code::MULTI_EXIT_DISC => "MULTI_EXIT_DISC",
        code::LOCAL_PREF => "LOCAL_PREF",
        code::ATOMIC_AGGREGATE => "ATOMIC_AGGREGATE",
        code::AGGREGATOR => "AGGREGATOR",
        code::COMMUNITIES => "COMMUNITIES",
        code::ORIGINATOR_ID => "ORIGINATOR_ID",
        code::CLUSTER_LIST => "CLUSTER_LIST",
        code::MP_REACH_NLRI => "MP_REACH_NLRI",
        code::MP_UNREACH_NLRI => "MP_UNREACH_NLRI",
        code::EXTENDED_COMMUNITIES => "EXTENDED_COMMUNITIES",
        code::AS4_PATH => "AS4_PATH",
        code::AS4_AGGREGATOR => "AS4_AGGREGATOR",
        code::LARGE_COMMUNITIES => "LARGE_COMMUNITIES",
        _ => "attribute",
    }
}

/// bgp-rs wants its capability set for attribute parsing; none of the codes
/// handed to it depend on it.
fn bgprs_caps() -> &'static bgp_rs::Capabilities {
    static CAPS: OnceLock<bgp_rs::Capabilities> = OnceLock::new();
    CAPS.get_or_init(bgp_rs::Capabilities::default)
}

/// Decodes one attribute (flags, type, length, value) whose length and
/// framing were checked, through bgp-rs.
fn bgprs_value(whole: &[u8]) -> Option<bgp_rs::PathAttribute> {
    let mut reader = whole;
    bgp_rs::PathAttribute::parse(&mut reader, bgprs_caps()).ok()
}

fn reset(subcode: u8, data: Vec<u8>, reason: impl Into<String>) -> MessageError {
    MessageError::new(err::UPDATE, subcode, data, reason)
}

/// RFC 4271 section 6.3 "semantically incorrect" next hops, and addresses that
/// can never be one: this network, loopback, multicast, class E/broadcast.
fn martian_v4(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first == 0 || a.is_loopback() || a.is_multicast() || first >= 240
}

fn martian_v6(a: Ipv6Addr) -> bool {
    a.is_unspecified() || a.is_loopback() || a.is_multicast()
}

/// The next hops an MP_REACH_NLRI carried.
#[derive(Debug, Clone, Copy)]
struct MpNextHop {
    global: IpAddr,
    link_local: Option<Ipv6Addr>,
}

/// A break in the attribute framing (RFC 7606 section 4).
#[derive(Debug)]
struct FramingError {
    code: u8,
    reason: String,
}

/// State gathered while walking one UPDATE's attributes.
#[derive(Debug)]
struct Walk<'c> {
    caps: &'c SessionCaps,
    issues: Vec<AttrIssue>,
    withdraw: bool,
    seen: [u64; 4],
    count: usize,

    origin: Option<Origin>,
    as_path: Option<Vec<AsSegment>>,
    as4_path: Option<Vec<AsSegment>>,
    next_hop: Option<Ipv4Addr>,
    med: Option<u32>,
    local_pref: Option<u32>,
    atomic_aggregate: bool,
    aggregator: Option<(u32, Ipv4Addr)>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
    communities: Vec<u32>,
    extended_communities: Vec<u64>,
    large_communities: Vec<(u32, u32, u32)>,
    originator_id: Option<Ipv4Addr>,
    cluster_list: Vec<Ipv4Addr>,
    unknown: Vec<RawAttribute>,

    /// An MP_REACH_NLRI was found (of any family).
    mp_reach: bool,
    mp_next_hop: Option<MpNextHop>,
    mp_announced: Vec<Nlri>,
    /// The family of the MP_UNREACH_NLRI, and whether it listed no prefixes.
    mp_unreach: Option<(Family, bool)>,
    mp_withdrawn: Vec<Nlri>,
}

impl<'c> Walk<'c> {
    fn new(caps: &'c SessionCaps) -> Self {
        Self {
            caps,
            issues: Vec::new(),
            withdraw: false,
            seen: [0; 4],
            count: 0,
            origin: None,
            as_path: None,
            as4_path: None,
            next_hop: None,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            as4_aggregator: None,
            communities: Vec::new(),
            extended_communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            unknown: Vec::new(),
            mp_reach: false,
            mp_next_hop: None,
            mp_announced: Vec::new(),
            mp_unreach: None,
            mp_withdrawn: Vec::new(),
        }
    }

    fn seen(&self, c: u8) -> bool {
        let (word, bit) = (usize::from(c / 64), c % 64);
        self.seen.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn mark(&mut self, c: u8) {
        let (word, bit) = (usize::from(c / 64), c % 64);
        if let Some(w) = self.seen.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    fn treat_as_withdraw(&mut self, c: u8, reason: String) {
        self.withdraw = true;
        self.issues.push(AttrIssue {
            code: c,
            action: ErrorAction::TreatAsWithdraw,
            reason,
        });
    }

    fn discard(&mut self, c: u8, reason: String) {
        self.issues.push(AttrIssue {
            code: c,
            action: ErrorAction::AttributeDiscard,
            reason,
        });
    }

    fn add_path(&self, family: Family) -> bool {
        self.caps.add_path_rx.contains(&family)
    }

    /// Walks the Path Attributes field. `Ok(Some(_))` reports a framing break
    /// after which nothing more could be read.
    fn walk(&mut self, mut a: &[u8]) -> Result<Option<FramingError>, MessageError> {
        while !a.is_empty() {
            let Some((&[flags, c], rest)) = a.split_first_chunk::<2>() else {
                return Ok(Some(FramingError {
                    code: 0,
                    reason: "a single octet left where an attribute should start".into(),
                }));
            };
            let header = if flags & FLAG_EXTENDED != 0 {
                rest.split_first_chunk::<2>()
                    .map(|(l, r)| (usize::from(u16::from_be_bytes(*l)), r))
            } else {
                rest.split_first().map(|(&l, r)| (usize::from(l), r))
            };
            let Some((len, rest)) = header else {
                return Ok(Some(FramingError {
                    code: c,
                    reason: format!("{} (type {c}): attribute header truncated", attr_name(c)),
                }));
            };
            let Some((value, rest)) = rest.split_at_checked(len) else {
                let reason = format!(
                    "{} (type {c}) of length {len} overruns the path attributes",
                    attr_name(c)
                );
                if c == code::MP_REACH_NLRI || c == code::MP_UNREACH_NLRI {
                    return Err(reset(err::MALFORMED_ATTRIBUTE_LIST, Vec::new(), reason));
                }
                return Ok(Some(FramingError { code: c, reason }));
            };
            let whole = a.get(..a.len() - rest.len()).unwrap_or(a);
            self.attribute(flags, c, value, whole)?;
            a = rest;
        }
        Ok(None)
    }

    /// One framed attribute.
    fn attribute(
        &mut self,
        flags: u8,
        c: u8,
        value: &[u8],
        whole: &[u8],
    ) -> Result<(), MessageError> {
        self.count += 1;
        let name = attr_name(c);
        if self.seen(c) {
            if c == code::MP_REACH_NLRI || c == code::MP_UNREACH_NLRI {
                return Err(reset(
                    err::MALFORMED_ATTRIBUTE_LIST,
                    Vec::new(),
                    format!("{name} appears more than once"),
                ));
            }
            self.discard(
                c,
                format!("{name} (type {c}) repeated: all but the first discarded"),
            );
            return Ok(());
        }
        self.mark(c);

        if c == code::LOCAL_PREF && self.caps.ebgp {
            self.discard(c, "LOCAL_PREF from an external peer".into());
            return Ok(());
        }

        if let Some(expected) = expected_flags(c) {
            let got = flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE);
            if got != expected {
                let reason = format!(
                    "{name}: attribute flags {flags:#04x} (optional/transitive must be {expected:#04x})"
                );
                match c {
                    code::MP_REACH_NLRI | code::MP_UNREACH_NLRI => {
                        return Err(reset(err::ATTRIBUTE_FLAGS, whole.to_vec(), reason));
                    }
                    // RFC 6793 section 6: a bad AS4 attribute is discarded.
                    code::AS4_PATH | code::AS4_AGGREGATOR => self.discard(c, reason),
                    _ => self.treat_as_withdraw(c, reason),
                }
                return Ok(());
            }
        }

        let len = value.len();
        let bad_length = |expected: &str| format!("{name}: length {len}, expected {expected}");
        // bgp-rs only sees values whose length has been checked.
        let checked = |length_ok: bool| {
            if length_ok {
                bgprs_value(whole)
            } else {
                None
            }
        };
        match c {
            code::ORIGIN => {
                if len != 1 {
                    self.treat_as_withdraw(c, bad_length("1"));
                } else {
                    match checked(true) {
                        Some(bgp_rs::PathAttribute::ORIGIN(o)) => {
                            self.origin = Some(match o {
                                bgp_rs::Origin::IGP => Origin::Igp,
                                bgp_rs::Origin::EGP => Origin::Egp,
                                bgp_rs::Origin::INCOMPLETE => Origin::Incomplete,
                            })
                        }
                        _ => self.treat_as_withdraw(
                            c,
                            format!("ORIGIN: undefined value {}", value.first().unwrap_or(&0)),
                        ),
                    }
                }
            }
            code::AS_PATH => match aspath::parse(value, self.caps.four_octet_as) {
                Err(why) => self.treat_as_withdraw(c, format!("malformed AS_PATH: {why}")),
                Ok(path) => {
                    if path.iter().any(|s| aspath::asns(s).contains(&0)) {
                        self.treat_as_withdraw(c, "AS_PATH contains AS 0 (RFC 7607)".into());
                    } else if self.caps.ebgp && path.iter().any(aspath::is_confed) {
                        self.treat_as_withdraw(
                            c,
                            "AS_PATH has confederation segments from an external peer".into(),
                        );
                    } else {
                        self.as_path = Some(path);
                    }
                }
            },
            code::NEXT_HOP => match checked(len == 4) {
                Some(bgp_rs::PathAttribute::NEXT_HOP(IpAddr::V4(a))) => self.next_hop = Some(a),
                _ => self.treat_as_withdraw(c, bad_length("4")),
            },
            code::MULTI_EXIT_DISC => match checked(len == 4) {
                Some(bgp_rs::PathAttribute::MULTI_EXIT_DISC(v)) => self.med = Some(v),
                _ => self.treat_as_withdraw(c, bad_length("4")),
            },
            code::LOCAL_PREF => match checked(len == 4) {
                Some(bgp_rs::PathAttribute::LOCAL_PREF(v)) => self.local_pref = Some(v),
                _ => self.treat_as_withdraw(c, bad_length("4")),
            },
            code::ATOMIC_AGGREGATE => match checked(len == 0) {
                Some(bgp_rs::PathAttribute::ATOMIC_AGGREGATOR) => self.atomic_aggregate = true,
                _ => self.discard(c, bad_length("0")),
            },
            code::AGGREGATOR => {
                let expected = if self.caps.four_octet_as { 8 } else { 6 };
                match checked(len == expected) {
                    Some(bgp_rs::PathAttribute::AGGREGATOR((0, _))) => {
                        self.discard(c, "AGGREGATOR with AS 0 (RFC 7607)".into())
                    }
                    Some(bgp_rs::PathAttribute::AGGREGATOR(agg)) => self.aggregator = Some(agg),
                    _ => self.discard(c, bad_length(&expected.to_string())),
                }
            }
            code::COMMUNITIES => match checked(len > 0 && len.is_multiple_of(4)) {
                Some(bgp_rs::PathAttribute::COMMUNITY(v)) => self.communities = v,
                _ => self.treat_as_withdraw(c, bad_length("a non-zero multiple of 4")),
            },
            code::ORIGINATOR_ID => match checked(len == 4) {
                Some(bgp_rs::PathAttribute::ORIGINATOR_ID(v)) => {
                    self.originator_id = Some(Ipv4Addr::from(v))
                }
                _ => self.treat_as_withdraw(c, bad_length("4")),
            },
            code::CLUSTER_LIST => match checked(len > 0 && len.is_multiple_of(4)) {
                Some(bgp_rs::PathAttribute::CLUSTER_LIST(v)) => {
                    self.cluster_list = v.into_iter().map(Ipv4Addr::from).collect()
                }
                _ => self.treat_as_withdraw(c, bad_length("a non-zero multiple of 4")),
            },
            code::EXTENDED_COMMUNITIES => match checked(len > 0 && len.is_multiple_of(8)) {
                Some(bgp_rs::PathAttribute::EXTENDED_COMMUNITIES(v)) => {
                    self.extended_communities = v
                }
                _ => self.treat_as_withdraw(c, bad_length("a non-zero multiple of 8")),
            },
            code::LARGE_COMMUNITIES => match checked(len > 0 && len.is_multiple_of(12)) {
                Some(bgp_rs::PathAttribute::LARGE_COMMUNITY(v)) => self.large_communities = v,
                _ => self.treat_as_withdraw(c, bad_length("a non-zero multiple of 12")),
            },
            code::AS4_PATH => self.as4_path(value),
            code::AS4_AGGREGATOR => {
                if self.caps.four_octet_as {
                    self.discard(
                        c,
                        "AS4_AGGREGATOR from a peer using 4-octet AS numbers".into(),
                    );
                } else {
                    match checked(len == 8) {
                        Some(bgp_rs::PathAttribute::AS4_AGGREGATOR((0, _))) => {
                            self.discard(c, "AS4_AGGREGATOR with AS 0 (RFC 7607)".into())
                        }
                        Some(bgp_rs::PathAttribute::AS4_AGGREGATOR(agg)) => {
                            self.as4_aggregator = Some(agg)
                        }
                        _ => self.discard(c, bad_length("8")),
                    }
                }
            }
            code::MP_REACH_NLRI => self.mp_reach_nlri(value, whole)?,
            code::MP_UNREACH_NLRI => self.mp_unreach_nlri(value, whole)?,
            _ => {
                if flags & FLAG_OPTIONAL == 0 {
                    // RFC 4271 6.3 "Unrecognized Well-known Attribute"; RFC 7606
                    // section 3 turns attribute errors into treat-as-withdraw.
                    self.treat_as_withdraw(
                        c,
                        format!("unrecognized well-known attribute type {c} (flags {flags:#04x})"),
                    );
                } else if flags & FLAG_TRANSITIVE != 0 {
                    // Passed on with the Partial bit set (RFC 4271 section 5).
                    self.unknown.push(RawAttribute {
                        flags: (flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE | FLAG_PARTIAL))
                            | FLAG_PARTIAL,
                        code: c,
                        value: value.to_vec(),
                    });
                }
                // Unrecognized optional non-transitive: quietly ignored.
            }
        }
        Ok(())
    }

    fn as4_path(&mut self, value: &[u8]) {
        let c = code::AS4_PATH;
        if self.caps.four_octet_as {
            self.discard(c, "AS4_PATH from a peer using 4-octet AS numbers".into());
            return;
        }
        match aspath::parse(value, true) {
            Err(why) => self.discard(c, format!("malformed AS4_PATH: {why}")),
            Ok(path) if path.iter().any(|s| aspath::asns(s).contains(&0)) => {
                self.discard(c, "AS4_PATH contains AS 0 (RFC 7607)".into())
            }
            Ok(path) => {
                if path.iter().any(aspath::is_confed) {
                    // RFC 6793 section 6: drop those segments, keep the rest.
                    self.discard(c, "confederation segments removed from AS4_PATH".into());
                    self.as4_path = Some(aspath::without_confed(&path));
                } else {
                    self.as4_path = Some(path);
                }
            }
        }
    }

    /// MP_REACH_NLRI (RFC 4760 section 3). Any malformation resets the session
    /// (RFC 7606 sections 3 and 7.11): the NLRI cannot be trusted.
    fn mp_reach_nlri(&mut self, value: &[u8], whole: &[u8]) -> Result<(), MessageError> {
        self.mp_reach = true;
        let Some((&[a0, a1, safi, nh_len], rest)) = value.split_first_chunk::<4>() else {
            return Err(reset(
                err::ATTRIBUTE_LENGTH,
                whole.to_vec(),
                format!("MP_REACH_NLRI of {} octets is too short", value.len()),
            ));
        };
        let family = (u16::from_be_bytes([a0, a1]), safi);
        let bad_next_hop = || {
            reset(
                err::OPTIONAL_ATTRIBUTE,
                whole.to_vec(),
                format!(
                    "MP_REACH_NLRI: next hop length {nh_len} is wrong for AFI {} SAFI {safi}",
                    family.0
                ),
            )
        };
        let Some((nh, rest)) = rest.split_at_checked(usize::from(nh_len)) else {
            return Err(bad_next_hop());
        };
        // One reserved octet (RFC 4760), ignored.
        let Some((_reserved, nlri_bytes)) = rest.split_first() else {
            return Err(reset(
                err::ATTRIBUTE_LENGTH,
                whole.to_vec(),
                "MP_REACH_NLRI ends before its reserved octet",
            ));
        };
        let nlri_error = |e: nlri::NlriError| {
            reset(
                err::INVALID_NETWORK_FIELD,
                Vec::new(),
                format!("MP_REACH_NLRI: {e}"),
            )
        };
        match family {
            IPV4_UNICAST => {
                let &[o0, o1, o2, o3] = nh else {
                    return Err(bad_next_hop());
                };
                self.mp_next_hop = Some(MpNextHop {
                    global: IpAddr::V4(Ipv4Addr::new(o0, o1, o2, o3)),
                    link_local: None,
                });
                nlri::parse_v4(nlri_bytes, self.add_path(family), &mut self.mp_announced)
                    .map_err(nlri_error)?;
            }
            IPV6_UNICAST => {
                // RFC 2545 section 3: global, or global followed by link-local.
                let (global, link_local) = match nh.len() {
                    16 | 32 => {
                        let (g, l) = nh.split_at(16);
                        let g: [u8; 16] = g.try_into().map_err(|_| bad_next_hop())?;
                        let l = <[u8; 16]>::try_from(l)
                            .ok()
                            .map(Ipv6Addr::from)
                            .filter(|a| !a.is_unspecified());
                        (Ipv6Addr::from(g), l)
                    }
                    _ => return Err(bad_next_hop()),
                };
                self.mp_next_hop = Some(MpNextHop {
                    global: IpAddr::V6(global),
                    link_local,
                });
                nlri::parse_v6(nlri_bytes, self.add_path(family), &mut self.mp_announced)
                    .map_err(nlri_error)?;
            }
            (afi, safi) => self.discard(
                code::MP_REACH_NLRI,
                format!("MP_REACH_NLRI for AFI {afi} SAFI {safi} is not supported: ignored"),
            ),
        }
        Ok(())
    }

    /// MP_UNREACH_NLRI (RFC 4760 section 4).
    fn mp_unreach_nlri(&mut self, value: &[u8], whole: &[u8]) -> Result<(), MessageError> {
        let Some((&[a0, a1, safi], nlri_bytes)) = value.split_first_chunk::<3>() else {
            return Err(reset(
                err::ATTRIBUTE_LENGTH,
                whole.to_vec(),
                format!("MP_UNREACH_NLRI of {} octets is too short", value.len()),
            ));
        };
        let family = (u16::from_be_bytes([a0, a1]), safi);
        self.mp_unreach = Some((family, nlri_bytes.is_empty()));
        let nlri_error = |e: nlri::NlriError| {
            reset(
                err::INVALID_NETWORK_FIELD,
                Vec::new(),
                format!("MP_UNREACH_NLRI: {e}"),
            )
        };
        match family {
            IPV4_UNICAST => {
                nlri::parse_v4(nlri_bytes, self.add_path(family), &mut self.mp_withdrawn)
                    .map_err(nlri_error)?
            }
            IPV6_UNICAST => {
                nlri::parse_v6(nlri_bytes, self.add_path(family), &mut self.mp_withdrawn)
                    .map_err(nlri_error)?
            }
            (afi, safi) if !nlri_bytes.is_empty() => self.discard(
                code::MP_UNREACH_NLRI,
                format!("MP_UNREACH_NLRI for AFI {afi} SAFI {safi} is not supported: ignored"),
            ),
            _ => {}
        }
        Ok(())
    }

    /// The attributes of announced prefixes, or `None` when an error calls for
    /// treat-as-withdraw. `field_v4`: the NLRI field listed prefixes;
    /// `mp_prefixes`: MP_REACH_NLRI did.
    fn attrs(&mut self, field_v4: bool, mp_prefixes: bool) -> Option<PathAttrs> {
        for c in [code::ORIGIN, code::AS_PATH] {
            if !self.seen(c) {
                self.treat_as_withdraw(c, format!("missing well-known attribute {}", attr_name(c)));
            }
        }
        if field_v4 {
            match self.next_hop {
                None if !self.seen(code::NEXT_HOP) => self.treat_as_withdraw(
                    code::NEXT_HOP,
                    "missing well-known attribute NEXT_HOP".into(),
                ),
                Some(a) if martian_v4(a) => self.treat_as_withdraw(
                    code::NEXT_HOP,
                    format!("NEXT_HOP {a} is not a usable address"),
                ),
                _ => {}
            }
        }
        if mp_prefixes {
            if let Some(mp) = self.mp_next_hop {
                let martian = match mp.global {
                    IpAddr::V4(a) => martian_v4(a),
                    IpAddr::V6(a) => martian_v6(a),
                };
                if martian {
                    self.treat_as_withdraw(
                        code::MP_REACH_NLRI,
                        format!(
                            "MP_REACH_NLRI next hop {} is not a usable address",
                            mp.global
                        ),
                    );
                }
                let same =
                    self.next_hop.map(IpAddr::V4) == Some(mp.global) && mp.link_local.is_none();
                if field_v4 && !same {
                    // One attribute set cannot carry two next hops.
                    self.treat_as_withdraw(
                        code::MP_REACH_NLRI,
                        "NLRI field and MP_REACH_NLRI announce with different next hops".into(),
                    );
                }
            }
        }
        if self.withdraw {
            return None;
        }

        let (next_hop, link_local_next_hop) = match self.mp_next_hop {
            Some(mp) if mp_prefixes => (Some(mp.global), mp.link_local),
            _ => (self.next_hop.map(IpAddr::V4), None),
        };
        let mut as_path = self.as_path.take().unwrap_or_default();
        let mut aggregator = self.aggregator;
        if !self.caps.four_octet_as {
            let mut as4_path = self.as4_path.take();
            // RFC 6793 section 4.2.3.
            match (self.aggregator, self.as4_aggregator) {
                (Some((asn, _)), Some(_)) if asn != u32::from(AS_TRANS) => {
                    self.discard(
                        code::AS4_PATH,
                        format!(
                            "AS4_PATH and AS4_AGGREGATOR ignored: AGGREGATOR carries AS {asn}, not AS_TRANS"
                        ),
                    );
                    as4_path = None;
                }
                (Some(_), Some(as4)) => aggregator = Some(as4),
                _ => {}
            }
            if let Some(as4) = as4_path {
                as_path = aspath::merge_as4(as_path, as4);
            }
        }
        // Attributes are sent in type code order (RFC 4271 section 5): keep
        // the unrecognized ones that way too.
        self.unknown.sort_by_key(|r| r.code);
        Some(PathAttrs {
            origin: self.origin.unwrap_or(Origin::Incomplete),
            as_path,
            next_hop,
            link_local_next_hop,
            med: self.med,
            local_pref: self.local_pref,
            atomic_aggregate: self.atomic_aggregate,
            aggregator,
            communities: std::mem::take(&mut self.communities),
            large_communities: std::mem::take(&mut self.large_communities),
            extended_communities: std::mem::take(&mut self.extended_communities),
            originator_id: self.originator_id,
            cluster_list: std::mem::take(&mut self.cluster_list),
            unknown: std::mem::take(&mut self.unknown),
        })
    }
}

/// Decodes an UPDATE body.
pub(super) fn decode(body: &[u8], caps: &SessionCaps) -> Result<Update, MessageError> {
    let malformed_list = |reason: String| reset(err::MALFORMED_ATTRIBUTE_LIST, Vec::new(), reason);
    let Some((wl, rest)) = body.split_first_chunk::<2>() else {
        return Err(length_error(body.len(), "UPDATE shorter than 23 octets"));
    };
    let wlen = usize::from(u16::from_be_bytes(*wl));
    let Some((withdrawn_field, rest)) = rest.split_at_checked(wlen) else {
        return Err(malformed_list(format!(
            "Withdrawn Routes Length {wlen} exceeds the message"
        )));
    };
    let Some((al, rest)) = rest.split_first_chunk::<2>() else {
        return Err(malformed_list(
            "no room for the Total Path Attribute Length".into(),
        ));
    };
    let alen = usize::from(u16::from_be_bytes(*al));
    let Some((attr_field, nlri_field)) = rest.split_at_checked(alen) else {
        return Err(malformed_list(format!(
            "Total Path Attribute Length {alen} exceeds the message"
        )));
    };

    let v4_add_path = caps.add_path_rx.contains(&IPV4_UNICAST);
    let mut withdrawn = Vec::new();
    nlri::parse_v4(withdrawn_field, v4_add_path, &mut withdrawn).map_err(|e| {
        reset(
            err::INVALID_NETWORK_FIELD,
            Vec::new(),
            format!("Withdrawn Routes: {e}"),
        )
    })?;
    let mut announced = Vec::new();
    nlri::parse_v4(nlri_field, v4_add_path, &mut announced)
        .map_err(|e| reset(err::INVALID_NETWORK_FIELD, Vec::new(), format!("NLRI: {e}")))?;

    let mut walk = Walk::new(caps);
    if let Some(broken) = walk.walk(attr_field)? {
        // RFC 7606 section 4: treat-as-withdraw, with the Total Path Attribute
        // Length locating the NLRI; but if no NLRI has been located at all, an
        // MP_REACH_NLRI may be lost in the unreadable part: reset.
        if announced.is_empty() && !walk.mp_reach && walk.mp_unreach.is_none() {
            return Err(malformed_list(broken.reason));
        }
        walk.treat_as_withdraw(broken.code, broken.reason);
    }

    let field_v4 = !announced.is_empty();
    let mp_prefixes = !walk.mp_announced.is_empty();
    announced.append(&mut walk.mp_announced);
    withdrawn.append(&mut walk.mp_withdrawn);

    // RFC 4724 section 2.
    let end_of_rib = if body.len() == 4 {
        Some(IPV4_UNICAST)
    } else {
        match walk.mp_unreach {
            Some((family, true))
                if withdrawn_field.is_empty()
                    && nlri_field.is_empty()
                    && walk.count == 1
                    && !walk.withdraw =>
            {
                Some(family)
            }
            _ => None,
        }
    };

    let attrs = if announced.is_empty() {
        None
    } else {
        walk.attrs(field_v4, mp_prefixes).map(Arc::new)
    };
    let treat_as_withdraw = walk.withdraw && !announced.is_empty();
    Ok(Update {
        withdrawn,
        announced,
        attrs,
        end_of_rib,
        // With nothing announced there is nothing to treat as withdrawn (RFC
        // 7606 section 5.2); the issues are still listed.
        treat_as_withdraw,
        issues: walk.issues,
    })
}
