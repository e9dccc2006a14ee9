//! UPDATE encoding and packing.
//!
//! Messages are framed here. The attributes bgp-rs writes correctly go through
//! `bgp_rs::PathAttribute::encode`; AS_PATH/AS4_PATH (width from the
//! capability, not the values), AGGREGATOR/AS4_AGGREGATOR (bgp-rs always
//! writes 2 octets), ATOMIC_AGGREGATE and LARGE_COMMUNITIES (bgp-rs panics on
//! them), MP_REACH_NLRI/MP_UNREACH_NLRI and raw attributes are written here.
//! RFC 7606 section 5.1: MP_REACH_NLRI/MP_UNREACH_NLRI come first.

use super::update::{code, FLAG_EXTENDED, FLAG_OPTIONAL, FLAG_PARTIAL, FLAG_TRANSITIVE};
use super::{aspath, frame, nlri, EncodeError, HEADER_LEN, MAX_MESSAGE_LEN, MSG_UPDATE};
use crate::bgp::msg::{
    Family, Nlri, PathAttrs, RawAttribute, SessionCaps, Update, AFI_IPV6, AS_TRANS, IPV4_UNICAST,
    IPV6_UNICAST, SAFI_UNICAST,
};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Octets of an UPDATE besides its three variable fields: header, Withdrawn
/// Routes Length, Total Path Attribute Length.
const UPDATE_OVERHEAD: usize = HEADER_LEN + 4;
/// Room for an attribute header with extended length.
const ATTR_HEADER_MAX: usize = 4;

/// Appends one attribute, with the extended length bit when the value needs it.
fn put(out: &mut Vec<u8>, flags: u8, c: u8, value: &[u8]) -> Result<(), EncodeError> {
    let flags = flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE | FLAG_PARTIAL);
    if let Ok(len) = u8::try_from(value.len()) {
        out.extend_from_slice(&[flags, c, len]);
    } else {
        let len =
            u16::try_from(value.len()).map_err(|_| EncodeError::AttributesTooLong(value.len()))?;
        out.extend_from_slice(&[flags | FLAG_EXTENDED, c]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(value);
    Ok(())
}

/// Appends an attribute written by bgp-rs. `value_len` is what the value will
/// take; anything beyond one message is refused before bgp-rs could truncate
/// its 2-octet length.
fn put_bgprs(
    out: &mut Vec<u8>,
    value_len: usize,
    attr: bgp_rs::PathAttribute,
) -> Result<(), EncodeError> {
    if value_len > MAX_MESSAGE_LEN {
        return Err(EncodeError::AttributesTooLong(value_len));
    }
    attr.encode(out)
        .map_err(|e| EncodeError::BgpRs(e.to_string()))
}

/// Codes written from [`PathAttrs`] fields (or by the framing) and so not
/// accepted as raw attributes.
fn owned_code(c: u8) -> bool {
    matches!(c, 1..=10 | 14..=18 | 32)
}

/// Writes raw attributes with codes below `below`, in code order.
fn flush_raw(
    out: &mut Vec<u8>,
    raw: &mut std::iter::Peekable<std::vec::IntoIter<&RawAttribute>>,
    below: u16,
) -> Result<(), EncodeError> {
    while let Some(r) = raw.next_if(|r| u16::from(r.code) < below) {
        put(out, r.flags, r.code, &r.value)?;
    }
    Ok(())
}

/// The attributes of `attrs` except MP_REACH_NLRI, in type code order, with
/// NEXT_HOP when `next_hop` is given (IPv4 NLRI in the NLRI field).
pub(super) fn common_attrs(
    attrs: &PathAttrs,
    caps: &SessionCaps,
    next_hop: Option<Ipv4Addr>,
) -> Result<Vec<u8>, EncodeError> {
    let four = caps.four_octet_as;
    let mut raw: Vec<&RawAttribute> = attrs.unknown.iter().collect();
    if let Some(r) = raw.iter().find(|r| owned_code(r.code)) {
        return Err(EncodeError::ReservedAttributeCode(r.code));
    }
    raw.sort_by_key(|r| r.code);
    let mut raw = raw.into_iter().peekable();
    let mut out = Vec::with_capacity(64);

    put_bgprs(
        &mut out,
        1,
        bgp_rs::PathAttribute::ORIGIN(match attrs.origin {
            crate::bgp::msg::Origin::Igp => bgp_rs::Origin::IGP,
            crate::bgp::msg::Origin::Egp => bgp_rs::Origin::EGP,
            crate::bgp::msg::Origin::Incomplete => bgp_rs::Origin::INCOMPLETE,
        }),
    )?;

    let mut path = Vec::with_capacity(16);
    aspath::write(&mut path, &attrs.as_path, four)?;
    put(&mut out, FLAG_TRANSITIVE, code::AS_PATH, &path)?;

    if let Some(nh) = next_hop {
        put_bgprs(&mut out, 4, bgp_rs::PathAttribute::NEXT_HOP(IpAddr::V4(nh)))?;
    }
    if let Some(med) = attrs.med {
        put_bgprs(&mut out, 4, bgp_rs::PathAttribute::MULTI_EXIT_DISC(med))?;
    }
    // RFC 4271 section 5.1.5: never sent to external peers.
    if let Some(pref) = attrs.local_pref.filter(|_| !caps.ebgp) {
        put_bgprs(&mut out, 4, bgp_rs::PathAttribute::LOCAL_PREF(pref))?;
    }
    if attrs.atomic_aggregate {
        put(&mut out, FLAG_TRANSITIVE, code::ATOMIC_AGGREGATE, &[])?;
    }
    let mut as4_aggregator = None;
    if let Some((asn, ip)) = attrs.aggregator {
        let mut v = Vec::with_capacity(8);
        if four {
            v.extend_from_slice(&asn.to_be_bytes());
        } else {
            let two = u16::try_from(asn).unwrap_or_else(|_| {
                as4_aggregator = Some((asn, ip));
                AS_TRANS
            });
            v.extend_from_slice(&two.to_be_bytes());
        }
        v.extend_from_slice(&ip.octets());
        put(
            &mut out,
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            code::AGGREGATOR,
            &v,
        )?;
    }
    flush_raw(&mut out, &mut raw, u16::from(code::COMMUNITIES))?;
    if !attrs.communities.is_empty() {
        put_bgprs(
            &mut out,
            attrs.communities.len() * 4,
            bgp_rs::PathAttribute::COMMUNITY(attrs.communities.clone()),
        )?;
    }
    if let Some(id) = attrs.originator_id {
        put_bgprs(
            &mut out,
            4,
            bgp_rs::PathAttribute::ORIGINATOR_ID(u32::from(id)),
        )?;
    }
    if !attrs.cluster_list.is_empty() {
        put_bgprs(
            &mut out,
            attrs.cluster_list.len() * 4,
            bgp_rs::PathAttribute::CLUSTER_LIST(
                attrs.cluster_list.iter().map(|&a| u32::from(a)).collect(),
            ),
        )?;
    }
    flush_raw(&mut out, &mut raw, u16::from(code::EXTENDED_COMMUNITIES))?;
    if !attrs.extended_communities.is_empty() {
        put_bgprs(
            &mut out,
            attrs.extended_communities.len() * 8,
            bgp_rs::PathAttribute::EXTENDED_COMMUNITIES(attrs.extended_communities.clone()),
        )?;
    }
    if !four && aspath::needs_as4_path(&attrs.as_path) {
        let mut v = Vec::with_capacity(32);
        aspath::write(&mut v, &aspath::without_confed(&attrs.as_path), true)?;
        put(
            &mut out,
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            code::AS4_PATH,
            &v,
        )?;
    }
    if let Some((asn, ip)) = as4_aggregator {
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(&asn.to_be_bytes());
        v.extend_from_slice(&ip.octets());
        put(
            &mut out,
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            code::AS4_AGGREGATOR,
            &v,
        )?;
    }
    flush_raw(&mut out, &mut raw, u16::from(code::LARGE_COMMUNITIES))?;
    if !attrs.large_communities.is_empty() {
        let mut v = Vec::with_capacity(attrs.large_communities.len() * 12);
        for &(g, l1, l2) in &attrs.large_communities {
            v.extend_from_slice(&g.to_be_bytes());
            v.extend_from_slice(&l1.to_be_bytes());
            v.extend_from_slice(&l2.to_be_bytes());
        }
        put(
            &mut out,
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            code::LARGE_COMMUNITIES,
            &v,
        )?;
    }
    flush_raw(&mut out, &mut raw, 256)?;
    Ok(out)
}

/// Assembles an UPDATE from its three fields.
fn message(withdrawn: &[u8], attrs: &[&[u8]], nlri_field: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let alen: usize = attrs.iter().map(|a| a.len()).sum();
    let body = 4 + withdrawn.len() + alen + nlri_field.len();
    if body + HEADER_LEN > MAX_MESSAGE_LEN {
        return Err(EncodeError::MessageTooLong(body + HEADER_LEN));
    }
    let mut out = frame(MSG_UPDATE, body);
    // Both lengths are below 4096 here.
    out.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(withdrawn);
    out.extend_from_slice(&u16::try_from(alen).unwrap_or(0).to_be_bytes());
    for a in attrs {
        out.extend_from_slice(a);
    }
    out.extend_from_slice(nlri_field);
    Ok(out)
}

/// The fixed part of an MP_REACH_NLRI value for IPv6 unicast: AFI, SAFI,
/// next hop length and next hop(s) (RFC 2545 section 3), reserved octet.
fn mp_reach_v6_head(next_hop: Ipv6Addr, link_local: Option<Ipv6Addr>) -> Vec<u8> {
    let mut v = Vec::with_capacity(37);
    v.extend_from_slice(&AFI_IPV6.to_be_bytes());
    v.push(SAFI_UNICAST);
    v.push(if link_local.is_some() { 32 } else { 16 });
    v.extend_from_slice(&next_hop.octets());
    if let Some(ll) = link_local {
        v.extend_from_slice(&ll.octets());
    }
    v.push(0);
    v
}

fn mp_unreach_head(family: Family) -> Vec<u8> {
    let mut v = Vec::with_capacity(3);
    v.extend_from_slice(&family.0.to_be_bytes());
    v.push(family.1);
    v
}

fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

fn v4_next_hop(attrs: &PathAttrs) -> Result<Ipv4Addr, EncodeError> {
    match attrs.next_hop {
        Some(IpAddr::V4(a)) => Ok(a),
        Some(other) => Err(EncodeError::NextHopFamily(other)),
        None => Err(EncodeError::MissingNextHop),
    }
}

fn v6_next_hop(attrs: &PathAttrs) -> Result<Ipv6Addr, EncodeError> {
    match attrs.next_hop {
        Some(IpAddr::V6(a)) => Ok(a),
        Some(other) => Err(EncodeError::NextHopFamily(other)),
        None => Err(EncodeError::MissingNextHop),
    }
}

/// Splits `prefixes` into runs whose encodings fit in `room` octets.
fn pack<'p>(
    prefixes: &'p [IpNet],
    room: usize,
) -> impl Iterator<Item = Result<Vec<u8>, EncodeError>> + 'p {
    let mut rest = prefixes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut buf = Vec::with_capacity(room);
        let mut taken = 0;
        for p in rest {
            if buf.len() + nlri::wire_len(p) > room {
                break;
            }
            nlri::write(&mut buf, p, None);
            taken += 1;
        }
        if taken == 0 {
            rest = &[];
            return Some(Err(EncodeError::AttributesTooLong(room)));
        }
        rest = rest.get(taken..).unwrap_or(&[]);
        Some(Ok(buf))
    })
}

/// Packs `prefixes` (all of one family) announced with `attrs` into as few
/// UPDATE messages as fit: IPv4 in the NLRI field with NEXT_HOP, IPv6 in an
/// MP_REACH_NLRI with `attrs.next_hop` and the optional link-local next hop.
/// No path identifiers are written.
pub fn encode_updates(
    attrs: &PathAttrs,
    prefixes: &[IpNet],
    caps: &SessionCaps,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let Some(first) = prefixes.first() else {
        return Ok(Vec::new());
    };
    let v6 = is_v6(first);
    if prefixes.iter().any(|p| is_v6(p) != v6) {
        return Err(EncodeError::MixedFamilies);
    }
    if !v6 {
        let block = common_attrs(attrs, caps, Some(v4_next_hop(attrs)?))?;
        let room = (MAX_MESSAGE_LEN - UPDATE_OVERHEAD)
            .checked_sub(block.len())
            .filter(|&r| r >= 5)
            .ok_or(EncodeError::AttributesTooLong(block.len()))?;
        pack(prefixes, room)
            .map(|nlri_field| message(&[], &[&block], &nlri_field?))
            .collect()
    } else {
        let head = mp_reach_v6_head(v6_next_hop(attrs)?, attrs.link_local_next_hop);
        let block = common_attrs(attrs, caps, None)?;
        let fixed = block.len() + ATTR_HEADER_MAX + head.len();
        let room = (MAX_MESSAGE_LEN - UPDATE_OVERHEAD)
            .checked_sub(fixed)
            .filter(|&r| r >= 17)
            .ok_or(EncodeError::AttributesTooLong(fixed))?;
        pack(prefixes, room)
            .map(|nlri_bytes| {
                let mut mp = Vec::with_capacity(ATTR_HEADER_MAX + head.len() + room);
                let mut value = head.clone();
                value.extend_from_slice(&nlri_bytes?);
                put(&mut mp, FLAG_OPTIONAL, code::MP_REACH_NLRI, &value)?;
                message(&[], &[&mp, &block], &[])
            })
            .collect()
    }
}

/// Withdrawals of `prefixes` (one family): IPv4 in Withdrawn Routes, IPv6 in
/// MP_UNREACH_NLRI; packed into as few messages as fit. No path identifiers.
pub fn encode_withdrawals(
    prefixes: &[IpNet],
    _caps: &SessionCaps,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let Some(first) = prefixes.first() else {
        return Ok(Vec::new());
    };
    let v6 = is_v6(first);
    if prefixes.iter().any(|p| is_v6(p) != v6) {
        return Err(EncodeError::MixedFamilies);
    }
    if !v6 {
        pack(prefixes, MAX_MESSAGE_LEN - UPDATE_OVERHEAD)
            .map(|w| message(&w?, &[], &[]))
            .collect()
    } else {
        let head = mp_unreach_head(IPV6_UNICAST);
        let room = MAX_MESSAGE_LEN - UPDATE_OVERHEAD - ATTR_HEADER_MAX - head.len();
        pack(prefixes, room)
            .map(|nlri_bytes| {
                let mut value = head.clone();
                value.extend_from_slice(&nlri_bytes?);
                let mut mp = Vec::with_capacity(ATTR_HEADER_MAX + value.len());
                put(&mut mp, FLAG_OPTIONAL, code::MP_UNREACH_NLRI, &value)?;
                message(&[], &[&mp], &[])
            })
            .collect()
    }
}

/// Writes prefixes, with path identifiers when `add_path`; a path identifier
/// without ADD-PATH is refused rather than dropped.
fn write_nlri(out: &mut Vec<u8>, list: &[&Nlri], add_path: bool) -> Result<(), EncodeError> {
    for n in list {
        match (add_path, n.path_id) {
            (true, id) => nlri::write(out, &n.prefix, Some(id.unwrap_or(0))),
            (false, None) => nlri::write(out, &n.prefix, None),
            (false, Some(_)) => return Err(EncodeError::PathIdNotNegotiated(n.prefix)),
        }
    }
    Ok(())
}

/// One UPDATE as given (it must fit in one message).
pub(super) fn update(
    u: &Update,
    caps: &SessionCaps,
    send_path_ids: &[Family],
) -> Result<Vec<u8>, EncodeError> {
    if let Some(family) = u.end_of_rib {
        if !u.withdrawn.is_empty() || !u.announced.is_empty() {
            return Err(EncodeError::EndOfRibNotEmpty);
        }
        return Ok(super::end_of_rib(family));
    }
    let v4_ap = send_path_ids.contains(&IPV4_UNICAST);
    let v6_ap = send_path_ids.contains(&IPV6_UNICAST);
    let (w6, w4): (Vec<&Nlri>, Vec<&Nlri>) = u.withdrawn.iter().partition(|n| is_v6(&n.prefix));
    let (a6, a4): (Vec<&Nlri>, Vec<&Nlri>) = u.announced.iter().partition(|n| is_v6(&n.prefix));

    let mut withdrawn_field = Vec::new();
    write_nlri(&mut withdrawn_field, &w4, v4_ap)?;
    let mut nlri_field = Vec::new();
    write_nlri(&mut nlri_field, &a4, v4_ap)?;

    let mut mp_reach = Vec::new();
    let mut mp_unreach = Vec::new();
    let mut common = Vec::new();
    if !u.announced.is_empty() {
        let attrs = u.attrs.as_deref().ok_or(EncodeError::MissingAttributes)?;
        if !a4.is_empty() && !a6.is_empty() {
            return Err(EncodeError::MixedFamilies);
        }
        if a6.is_empty() {
            common = common_attrs(attrs, caps, Some(v4_next_hop(attrs)?))?;
        } else {
            let mut value = mp_reach_v6_head(v6_next_hop(attrs)?, attrs.link_local_next_hop);
            write_nlri(&mut value, &a6, v6_ap)?;
            put(&mut mp_reach, FLAG_OPTIONAL, code::MP_REACH_NLRI, &value)?;
            common = common_attrs(attrs, caps, None)?;
        }
    }
    if !w6.is_empty() {
        let mut value = mp_unreach_head((AFI_IPV6, SAFI_UNICAST));
        write_nlri(&mut value, &w6, v6_ap)?;
        put(
            &mut mp_unreach,
            FLAG_OPTIONAL,
            code::MP_UNREACH_NLRI,
            &value,
        )?;
    }
    message(
        &withdrawn_field,
        &[&mp_reach, &mp_unreach, &common],
        &nlri_field,
    )
}
