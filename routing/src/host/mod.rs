//! The host stack: the control plane's own presence on its interfaces.
//!
//! One task owns the neighbor table. It answers ARP and neighbor solicitations
//! for the router's addresses and ICMP/ICMPv6 echo requests sent to them; it
//! resolves neighbors (ARP requests, neighbor solicitations) with retries, keeps
//! them fresh with probes and expires the silent ones; it queues packets that
//! wait for a resolution and sends them through the pipeline again once the
//! neighbor is installed in the target; and it answers TTL expiry with
//! rate-limited ICMP time-exceeded. Learned and lost neighbors go up to the
//! router task as [`NeighborEvent`]s.

pub mod packet;

use crate::compile::HostInterface;
use nos_core::backend::{PacketDest, PacketIn, PacketOut, PacketSender, PuntReason};
use nos_core::{MacAddr, PortId, RifId};
use packet::*;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// What the host stack needs to know about the router's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostView {
    pub interfaces: Vec<HostInterface>,
    /// Addresses to resolve ahead of traffic (next hops of static routes).
    pub resolve: Vec<(RifId, IpAddr)>,
}

/// A neighbor appeared, changed or disappeared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighborEvent {
    Up {
        rif: RifId,
        ip: IpAddr,
        mac: MacAddr,
        port: Option<PortId>,
    },
    Down {
        rif: RifId,
        ip: IpAddr,
    },
}

/// A row of `show neighbors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NeighborRow {
    pub address: IpAddr,
    pub mac: Option<MacAddr>,
    pub interface: String,
    pub port: Option<PortId>,
    pub state: &'static str,
    /// Seconds since the neighbor last confirmed itself.
    pub age_s: Option<u64>,
}

/// Queries the host stack answers.
#[derive(Debug)]
pub enum HostQuery {
    Neighbors(oneshot::Sender<Vec<NeighborRow>>),
}

/// Timers and limits of neighbor resolution.
#[derive(Clone, Copy, Debug)]
pub struct HostTimers {
    /// Between two requests for an unresolved neighbor.
    pub retransmit: Duration,
    /// Requests (or probes) before giving up.
    pub max_tries: u8,
    /// A neighbor unconfirmed for this long is probed.
    pub reachable: Duration,
    /// After a failed resolution, wait this long before trying again.
    pub failed_hold: Duration,
    /// How long a packet waits for its neighbor.
    pub queue_time: Duration,
    pub queue_limit: usize,
    /// Neighbor entries at most (a flood of spoofed sources cannot grow it further).
    pub max_entries: usize,
    /// ICMP errors sent per second at most.
    pub icmp_rate: u32,
}

impl Default for HostTimers {
    fn default() -> Self {
        Self {
            retransmit: Duration::from_secs(1),
            max_tries: 3,
            reachable: Duration::from_secs(30),
            failed_hold: Duration::from_secs(3),
            queue_time: Duration::from_secs(3),
            queue_limit: 256,
            max_entries: 16384,
            icmp_rate: 100,
        }
    }
}

#[derive(Debug)]
enum State {
    Incomplete {
        tries: u8,
        next: Instant,
    },
    Reachable {
        mac: MacAddr,
        port: Option<PortId>,
        confirmed: Instant,
        probes: u8,
        next: Instant,
    },
    Failed {
        until: Instant,
    },
}

struct Queued {
    since: Instant,
    what: Waiting,
    /// The neighbor it waits for, when known (glean, kernel packets); `None` for
    /// packets whose next hop the target did not name.
    waits_for: Option<(RifId, IpAddr)>,
}

enum Waiting {
    /// A frame punted by the target, to go through the pipeline again.
    Reinject { port: PortId, frame: Vec<u8> },
    /// An IP packet the router's own stack sent, to be framed for the neighbor.
    Kernel(Vec<u8>),
}

/// The router's own IP stack (the kernel, through a TUN device): packets for the
/// router go in, packets from it come out.
#[derive(Debug)]
pub struct KernelPath {
    pub to_kernel: mpsc::Sender<Vec<u8>>,
    pub from_kernel: mpsc::Receiver<Vec<u8>>,
}

/// The host stack task's state.
pub struct HostStack {
    view: HostView,
    timers: HostTimers,
    entries: HashMap<(RifId, IpAddr), State>,
    queue: VecDeque<Queued>,
    send: PacketSender,
    events: mpsc::Sender<NeighborEvent>,
    to_kernel: Option<mpsc::Sender<Vec<u8>>>,
    icmp_budget: u32,
    icmp_refill: Instant,
}

impl std::fmt::Debug for HostStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStack")
            .field("neighbors", &self.entries.len())
            .finish()
    }
}

impl HostStack {
    pub fn new(
        send: PacketSender,
        events: mpsc::Sender<NeighborEvent>,
        timers: HostTimers,
    ) -> Self {
        Self {
            view: HostView::default(),
            timers,
            entries: HashMap::new(),
            queue: VecDeque::new(),
            send,
            events,
            to_kernel: None,
            icmp_budget: timers.icmp_rate,
            icmp_refill: Instant::now(),
        }
    }

    /// Runs until `punts` closes (the target stopped) or `shutdown` fires. With a
    /// kernel path, packets for the router's addresses go to the kernel and the
    /// kernel's packets go out; without one the host stack answers pings itself.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        mut self,
        mut punts: mpsc::Receiver<PacketIn>,
        kernel: Option<KernelPath>,
        mut view: watch::Receiver<HostView>,
        mut installed: mpsc::UnboundedReceiver<(RifId, IpAddr)>,
        mut queries: mpsc::Receiver<HostQuery>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let first = view.borrow_and_update().clone();
        self.set_view(first).await;
        let mut from_kernel = match kernel {
            Some(k) => {
                self.to_kernel = Some(k.to_kernel);
                Some(k.from_kernel)
            }
            None => None,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                p = punts.recv() => match p {
                    Some(p) => self.handle(p).await,
                    None => break,
                },
                r = view.changed() => {
                    if r.is_err() { break; }
                    let v = view.borrow_and_update().clone();
                    self.set_view(v).await;
                }
                Some(key) = installed.recv() => self.release(Some(key)),
                Some(p) = recv_opt(&mut from_kernel) => self.kernel_packet(p),
                Some(q) = queries.recv() => match q {
                    HostQuery::Neighbors(tx) => { let _ = tx.send(self.rows()); }
                },
                _ = tick.tick() => self.timers_fired().await,
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!("host stack stopped");
    }

    async fn set_view(&mut self, v: HostView) {
        self.view = v;
        // Forget neighbors of interfaces that are gone or where they may no
        // longer be learned (the subnet or the configured next hop went; a
        // link-local neighbor stays).
        let stale: Vec<_> = self
            .entries
            .keys()
            .filter(|(rif, ip)| self.interface(*rif).is_none_or(|h| !self.learnable(h, *ip)))
            .copied()
            .collect();
        for k in stale {
            if let Some(State::Reachable { .. }) = self.entries.remove(&k) {
                self.emit(NeighborEvent::Down { rif: k.0, ip: k.1 }).await;
            }
        }
        self.start_wanted();
    }

    fn interface(&self, rif: RifId) -> Option<&HostInterface> {
        self.view.interfaces.iter().find(|h| h.rif.id == rif)
    }

    fn ingress(&self, port: PortId, vlan: Option<u16>) -> Option<&HostInterface> {
        self.view
            .interfaces
            .iter()
            .find(|h| h.rif.receives(port, vlan))
    }

    fn is_mine(&self, vrf: nos_core::VrfId, ip: IpAddr) -> bool {
        self.view
            .interfaces
            .iter()
            .filter(|h| h.rif.vrf == vrf)
            .any(|h| h.addresses.iter().any(|a| a.addr() == ip))
    }

    /// Whether a neighbor with address `ip` may be learned on `hi`: on one of its
    /// subnets, an IPv6 link-local address, or a next hop configured through it.
    fn learnable(&self, hi: &HostInterface, ip: IpAddr) -> bool {
        on_subnet(hi, ip)
            || nos_core::is_link_local(ip)
            || self.view.resolve.contains(&(hi.rif.id, ip))
    }

    async fn emit(&self, e: NeighborEvent) {
        tracing::debug!(?e, "neighbor event");
        let _ = self.events.send(e).await;
    }

    fn out(&self, dest: PacketDest, frame: Vec<u8>) {
        if let Err(e) = (self.send)(PacketOut { dest, frame }) {
            tracing::warn!("packet out failed: {e}");
        }
    }

    async fn handle(&mut self, p: PacketIn) {
        let eth = match parse_eth(&p.frame) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(port = %p.port, "punted frame dropped: {e}");
                return;
            }
        };
        let Some(hi) = self.ingress(p.port, eth.vlan).cloned() else {
            return;
        };
        let payload = &p.frame[eth.payload..];
        let r = match p.reason {
            PuntReason::Arp => self.arp(&hi, p.port, &eth, payload).await,
            PuntReason::NeighborDiscovery => self.nd(&hi, p.port, &eth, payload).await,
            PuntReason::ToMe => self.for_me(&hi, &p, &eth, payload),
            PuntReason::NeighborMiss => {
                self.enqueue(Queued {
                    since: Instant::now(),
                    what: Waiting::Reinject {
                        port: p.port,
                        frame: p.frame.clone(),
                    },
                    waits_for: None,
                });
                Ok(())
            }
            PuntReason::TtlExpired => self.time_exceeded(&hi, p.port, &eth, payload),
            PuntReason::AclTrap => {
                // Trapped traffic for the router reaches its own stack; trapped
                // transit traffic has no consumer yet and is only counted.
                self.for_me_only(&hi, &p, &eth, payload)
            }
            PuntReason::AclCopy => Ok(()),
        };
        if let Err(e) = r {
            tracing::debug!(port = %p.port, reason = ?p.reason, "punted packet ignored: {e}");
        }
    }

    async fn arp(
        &mut self,
        hi: &HostInterface,
        port: PortId,
        eth: &Eth,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        let a = parse_arp(payload)?;
        let target_mine = hi
            .addresses
            .iter()
            .any(|n| n.addr() == IpAddr::V4(a.target_ip));
        let sender = IpAddr::V4(a.sender_ip);
        let known = self.entries.contains_key(&(hi.rif.id, sender));
        // Learn from packets addressed to us, and refresh entries we have
        // (RFC 826); unsolicited traffic for others creates nothing.
        if (target_mine || known) && self.learnable(hi, sender) && !a.sender_mac.is_multicast() {
            self.learn(hi, sender, a.sender_mac, port, true).await;
        }
        if a.op == ARP_REQUEST && target_mine {
            let reply = Arp {
                op: ARP_REPLY,
                sender_mac: hi.rif.mac,
                sender_ip: a.target_ip,
                target_mac: a.sender_mac,
                target_ip: a.sender_ip,
            };
            let f = build_eth(
                a.sender_mac,
                hi.rif.mac,
                eth.vlan,
                ETHERTYPE_ARP,
                &build_arp(&reply),
            );
            self.out(PacketDest::Port(port), f);
        }
        Ok(())
    }

    async fn nd(
        &mut self,
        hi: &HostInterface,
        port: PortId,
        eth: &Eth,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        let ip = parse_ipv6(payload)?;
        let msg = &payload[ip.header_len..ip.total_len];
        let nd = parse_nd(msg)?;
        if ip.ttl != 255 {
            return Err(DecodeError::Malformed(
                "neighbor discovery hop limit (must be 255)",
            ));
        }
        let IpAddr::V6(src) = ip.src else {
            return Err(DecodeError::Malformed("IPv6 source"));
        };
        match nd.kind {
            ICMP6_NEIGHBOR_SOLICIT => {
                // RFC 4861 7.2.3: a solicitation for someone else's address is
                // silently discarded, before anything is learned from it.
                if !hi
                    .addresses
                    .iter()
                    .any(|a| a.addr() == IpAddr::V6(nd.target))
                {
                    return Ok(());
                }
                if !src.is_unspecified() {
                    if let Some(mac) = nd.lladdr {
                        if self.learnable(hi, ip.src) && !mac.is_multicast() {
                            self.learn(hi, ip.src, mac, port, true).await;
                        }
                    }
                }
                if hi
                    .addresses
                    .iter()
                    .any(|a| a.addr() == IpAddr::V6(nd.target))
                {
                    // Router, solicited and override flags; to all nodes for DAD probes.
                    let (dst_ip, dst_mac, flags) = if src.is_unspecified() {
                        (
                            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
                            0xa0,
                        )
                    } else {
                        (src, nd.lladdr.unwrap_or(eth.src), 0xe0)
                    };
                    let m = build_nd(ICMP6_NEIGHBOR_ADVERT, flags, nd.target, hi.rif.mac);
                    let p = build_ipv6(nd.target, dst_ip, PROTO_ICMPV6, 255, &m);
                    self.out(
                        PacketDest::Port(port),
                        build_eth(dst_mac, hi.rif.mac, eth.vlan, ETHERTYPE_IPV6, &p),
                    );
                }
            }
            _ => {
                // RFC 4861 7.2.5: an advertisement only updates an entry we have;
                // without the Override flag it does not replace a known address.
                let target = IpAddr::V6(nd.target);
                let mac = nd.lladdr.unwrap_or(eth.src);
                let override_flag = nd.flags & 0x20 != 0;
                let may = match self.entries.get(&(hi.rif.id, target)) {
                    None => false,
                    Some(State::Reachable { mac: m, .. }) => override_flag || *m == mac,
                    Some(_) => true,
                };
                if may && self.learnable(hi, target) && !mac.is_multicast() {
                    self.learn(hi, target, mac, port, false).await;
                }
            }
        }
        Ok(())
    }

    /// Handles a trapped packet addressed to the router like any packet to it;
    /// anything else is dropped here (the target already counted it).
    fn for_me_only(
        &mut self,
        hi: &HostInterface,
        p: &PacketIn,
        eth: &Eth,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        let ip = match eth.ethertype {
            ETHERTYPE_IPV4 => parse_ipv4(payload)?,
            ETHERTYPE_IPV6 => parse_ipv6(payload)?,
            _ => return Ok(()),
        };
        if self.is_mine(hi.rif.vrf, ip.dst) {
            self.for_me(hi, p, eth, payload)
        } else {
            Ok(())
        }
    }

    fn for_me(
        &mut self,
        hi: &HostInterface,
        p: &PacketIn,
        eth: &Eth,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        let ip = match eth.ethertype {
            ETHERTYPE_IPV4 => parse_ipv4(payload)?,
            ETHERTYPE_IPV6 => parse_ipv6(payload)?,
            _ => return Err(DecodeError::Unsupported("ethertype")),
        };
        if !self.is_mine(hi.rif.vrf, ip.dst) {
            // A connected subnet route punted it: resolve the destination ("glean"),
            // in the ingress VRF first (a pre-ingress ACL may have chosen another).
            let target = self
                .view
                .interfaces
                .iter()
                .filter(|h| h.rif.admin_up)
                .find(|h| h.rif.vrf == hi.rif.vrf && on_subnet(h, ip.dst))
                .or_else(|| {
                    self.view
                        .interfaces
                        .iter()
                        .find(|h| h.rif.admin_up && on_subnet(h, ip.dst))
                })
                .map(|h| h.rif.id);
            if let Some(rif) = target {
                self.enqueue(Queued {
                    since: Instant::now(),
                    what: Waiting::Reinject {
                        port: p.port,
                        frame: p.frame.clone(),
                    },
                    waits_for: Some((rif, ip.dst)),
                });
                self.start(rif, ip.dst);
            }
            return Ok(());
        }
        if let Some(k) = &self.to_kernel {
            if k.try_send(payload[..ip.total_len].to_vec()).is_err() {
                tracing::debug!("kernel path busy: packet for the router dropped");
            }
            return Ok(());
        }
        if ip.fragmented {
            return Ok(());
        }
        let l4 = &payload[ip.header_len..ip.total_len];
        let reply = match (ip.src, ip.dst, ip.proto) {
            (IpAddr::V4(s), IpAddr::V4(d), PROTO_ICMP)
                if l4.first() == Some(&ICMP_ECHO_REQUEST) && l4.len() >= 8 =>
            {
                let icmp = build_icmpv4(ICMP_ECHO_REPLY, 0, &l4[4..]);
                (ETHERTYPE_IPV4, build_ipv4(d, s, PROTO_ICMP, 64, &icmp))
            }
            (IpAddr::V6(s), IpAddr::V6(d), PROTO_ICMPV6)
                if l4.first() == Some(&ICMP6_ECHO_REQUEST) && l4.len() >= 8 =>
            {
                let mut m = vec![ICMP6_ECHO_REPLY, 0, 0, 0];
                m.extend_from_slice(&l4[4..]);
                (ETHERTYPE_IPV6, build_ipv6(d, s, PROTO_ICMPV6, 64, &m))
            }
            _ => return Ok(()),
        };
        let f = build_eth(eth.src, hi.rif.mac, eth.vlan, reply.0, &reply.1);
        self.out(PacketDest::Port(p.port), f);
        Ok(())
    }

    fn time_exceeded(
        &mut self,
        hi: &HostInterface,
        port: PortId,
        eth: &Eth,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        let now = Instant::now();
        if now.duration_since(self.icmp_refill) >= Duration::from_secs(1) {
            self.icmp_budget = self.timers.icmp_rate;
            self.icmp_refill = now;
        }
        if self.icmp_budget == 0 {
            return Ok(());
        }
        let (et, pkt) = match eth.ethertype {
            ETHERTYPE_IPV4 => {
                let ip = parse_ipv4(payload)?;
                let IpAddr::V4(src) = ip.src else {
                    return Ok(());
                };
                // Never answer an ICMP error with another one.
                if ip.proto == PROTO_ICMP
                    && payload
                        .get(ip.header_len)
                        .is_some_and(|t| ![0, 8].contains(t))
                {
                    return Ok(());
                }
                let Some(me) = first_v4(hi) else {
                    return Ok(());
                };
                let quote = &payload[..(ip.header_len + 8).min(ip.total_len)];
                let mut rest = vec![0u8; 4];
                rest.extend_from_slice(quote);
                (
                    ETHERTYPE_IPV4,
                    build_ipv4(
                        me,
                        src,
                        PROTO_ICMP,
                        64,
                        &build_icmpv4(ICMP_TIME_EXCEEDED, 0, &rest),
                    ),
                )
            }
            ETHERTYPE_IPV6 => {
                let ip = parse_ipv6(payload)?;
                let IpAddr::V6(src) = ip.src else {
                    return Ok(());
                };
                if ip.proto == PROTO_ICMPV6 && payload.get(40).is_some_and(|t| *t < 128) {
                    return Ok(());
                }
                let Some(me) = first_v6(hi) else {
                    return Ok(());
                };
                let mut m = vec![ICMP6_TIME_EXCEEDED, 0, 0, 0, 0, 0, 0, 0];
                m.extend_from_slice(&payload[..ip.total_len.min(1232)]);
                (ETHERTYPE_IPV6, build_ipv6(me, src, PROTO_ICMPV6, 64, &m))
            }
            _ => return Ok(()),
        };
        self.icmp_budget -= 1;
        self.out(
            PacketDest::Port(port),
            build_eth(eth.src, hi.rif.mac, eth.vlan, et, &pkt),
        );
        Ok(())
    }

    fn enqueue(&mut self, q: Queued) {
        if self.queue.len() >= self.timers.queue_limit {
            self.queue.pop_front();
        }
        self.queue.push_back(q);
    }

    /// Sends waiting packets through the pipeline again: those waiting for `key`
    /// and those whose neighbor the target did not name.
    fn release(&mut self, key: Option<(RifId, IpAddr)>) {
        let (go, keep): (Vec<_>, Vec<_>) = self
            .queue
            .drain(..)
            .partition(|q| q.waits_for.is_none() || q.waits_for == key);
        self.queue = keep.into();
        for q in go {
            match q.what {
                Waiting::Reinject { port, frame } => self.out(PacketDest::Ingress(port), frame),
                Waiting::Kernel(packet) => {
                    if let Some((rif, nh)) = q.waits_for {
                        self.send_ip(rif, nh, &packet);
                    }
                }
            }
        }
    }

    /// A packet the router's own stack sent: frame it for its neighbor on a
    /// connected subnet and send it, resolving the neighbor first when needed.
    fn kernel_packet(&mut self, packet: Vec<u8>) {
        let dst = match packet.first().map(|b| b >> 4) {
            Some(4) => parse_ipv4(&packet).map(|i| i.dst),
            Some(6) => parse_ipv6(&packet).map(|i| i.dst),
            _ => Err(DecodeError::Unsupported("IP version")),
        };
        let Ok(dst) = dst else { return };
        let Some(rif) = self
            .view
            .interfaces
            .iter()
            .find(|h| on_subnet(h, dst))
            .map(|h| h.rif.id)
        else {
            // Not on a connected subnet (an eBGP multihop peer, say): the
            // forwarding pipeline routes it like any packet, entering on an
            // interface of the default VRF addressed to the router's own MAC.
            let Some(hi) = self
                .view
                .interfaces
                .iter()
                .find(|h| h.rif.vrf == nos_core::VrfId::DEFAULT && h.rif.admin_up)
            else {
                tracing::trace!(%dst, "router's own packet: no interface to route it from; dropped");
                return;
            };
            let et = if dst.is_ipv4() {
                ETHERTYPE_IPV4
            } else {
                ETHERTYPE_IPV6
            };
            if let Some((port, vlan)) = hi.rif.egress(None).first().copied() {
                let frame = build_eth(hi.rif.mac, hi.rif.mac, vlan, et, &packet);
                self.out(PacketDest::Ingress(port), frame);
            }
            return;
        };
        if matches!(self.entries.get(&(rif, dst)), Some(State::Reachable { .. })) {
            self.send_ip(rif, dst, &packet);
        } else {
            self.enqueue(Queued {
                since: Instant::now(),
                what: Waiting::Kernel(packet),
                waits_for: Some((rif, dst)),
            });
            self.start(rif, dst);
        }
    }

    /// Frames an IP packet for the resolved neighbor `nh` on `rif` and sends it.
    fn send_ip(&self, rif: RifId, nh: IpAddr, packet: &[u8]) {
        let (Some(hi), Some(State::Reachable { mac, port, .. })) =
            (self.interface(rif), self.entries.get(&(rif, nh)))
        else {
            return;
        };
        let et = if nh.is_ipv4() {
            ETHERTYPE_IPV4
        } else {
            ETHERTYPE_IPV6
        };
        for (p, vlan) in hi.rif.egress(*port) {
            self.out(
                PacketDest::Port(p),
                build_eth(*mac, hi.rif.mac, vlan, et, packet),
            );
        }
    }

    async fn learn(
        &mut self,
        hi: &HostInterface,
        ip: IpAddr,
        mac: MacAddr,
        port: PortId,
        may_create: bool,
    ) {
        let now = Instant::now();
        let exists = self.entries.contains_key(&(hi.rif.id, ip));
        if !exists && (!may_create || self.entries.len() >= self.timers.max_entries) {
            if may_create {
                tracing::warn!(interface = %hi.rif.name, %ip, "neighbor table full ({} entries): not learned", self.timers.max_entries);
            }
            return;
        }
        let member = matches!(hi.rif.kind, nos_core::RifKind::Vlan { .. }).then_some(port);
        let changed = !matches!(
            self.entries.get(&(hi.rif.id, ip)),
            Some(State::Reachable { mac: m, port: p, .. }) if *m == mac && *p == member
        );
        self.entries.insert(
            (hi.rif.id, ip),
            State::Reachable {
                mac,
                port: member,
                confirmed: now,
                probes: 0,
                next: now + self.timers.reachable,
            },
        );
        if changed {
            tracing::info!(interface = %hi.rif.name, %ip, %mac, "neighbor resolved");
            self.emit(NeighborEvent::Up {
                rif: hi.rif.id,
                ip,
                mac,
                port: member,
            })
            .await;
        }
    }

    /// Starts resolving `ip` on `rif` unless it is already known or being resolved.
    fn start(&mut self, rif: RifId, ip: IpAddr) {
        if self.entries.contains_key(&(rif, ip)) {
            return;
        }
        self.entries.insert(
            (rif, ip),
            State::Incomplete {
                tries: 1,
                next: Instant::now() + self.timers.retransmit,
            },
        );
        self.solicit(rif, ip, None);
    }

    fn start_wanted(&mut self) {
        let wanted = self.view.resolve.clone();
        for (rif, ip) in wanted {
            self.start(rif, ip);
        }
    }

    /// Sends an ARP request or neighbor solicitation: broadcast/multicast, or to
    /// `unicast` (a probe of a known neighbor).
    fn solicit(&mut self, rif: RifId, ip: IpAddr, unicast: Option<(MacAddr, Option<PortId>)>) {
        let Some(hi) = self.interface(rif).cloned() else {
            return;
        };
        if !hi.rif.admin_up {
            return;
        }
        let (member, dst_mac) = match unicast {
            Some((mac, port)) => (port, Some(mac)),
            None => (None, None),
        };
        let frame_for = |vlan: Option<u16>| -> Option<Vec<u8>> {
            match ip {
                IpAddr::V4(t) => {
                    let me = hi
                        .addresses
                        .iter()
                        .find(|a| a.contains(&ip))
                        .and_then(|a| match a.addr() {
                            IpAddr::V4(m) => Some(m),
                            IpAddr::V6(_) => None,
                        })
                        .or_else(|| first_v4(&hi))?;
                    let a = Arp {
                        op: ARP_REQUEST,
                        sender_mac: hi.rif.mac,
                        sender_ip: me,
                        target_mac: MacAddr::ZERO,
                        target_ip: t,
                    };
                    Some(build_eth(
                        dst_mac.unwrap_or(MacAddr::BROADCAST),
                        hi.rif.mac,
                        vlan,
                        ETHERTYPE_ARP,
                        &build_arp(&a),
                    ))
                }
                IpAddr::V6(t) => {
                    let me = hi
                        .addresses
                        .iter()
                        .find(|a| a.contains(&ip))
                        .and_then(|a| match a.addr() {
                            IpAddr::V6(m) => Some(m),
                            IpAddr::V4(_) => None,
                        })
                        .or_else(|| first_v6(&hi))?;
                    let (group, group_mac) = solicited_node(t);
                    let (dst_ip, mac) = match dst_mac {
                        Some(m) => (t, m),
                        None => (group, group_mac),
                    };
                    let m = build_nd(ICMP6_NEIGHBOR_SOLICIT, 0, t, hi.rif.mac);
                    let p = build_ipv6(me, dst_ip, PROTO_ICMPV6, 255, &m);
                    Some(build_eth(mac, hi.rif.mac, vlan, ETHERTYPE_IPV6, &p))
                }
            }
        };
        for (port, vlan) in hi.rif.egress(member) {
            if let Some(f) = frame_for(vlan) {
                self.out(PacketDest::Port(port), f);
            }
        }
    }

    async fn timers_fired(&mut self) {
        let now = Instant::now();
        let t = self.timers;
        let mut resend = Vec::new();
        let mut lost = Vec::new();
        let mut expired = Vec::new();
        for (k, st) in self.entries.iter_mut() {
            match st {
                State::Incomplete { tries, next } if now >= *next => {
                    if *tries >= t.max_tries {
                        tracing::info!(ip = %k.1, rif = %k.0, "neighbor resolution failed");
                        *st = State::Failed {
                            until: now + t.failed_hold,
                        };
                    } else {
                        *tries += 1;
                        *next = now + t.retransmit;
                        resend.push((*k, None));
                    }
                }
                State::Reachable {
                    mac,
                    port,
                    probes,
                    next,
                    ..
                } if now >= *next => {
                    if *probes >= t.max_tries {
                        lost.push(*k);
                    } else {
                        *probes += 1;
                        *next = now + t.retransmit;
                        resend.push((*k, Some((*mac, *port))));
                    }
                }
                State::Failed { until } if now >= *until => expired.push(*k),
                _ => {}
            }
        }
        for ((rif, ip), uni) in resend {
            self.solicit(rif, ip, uni);
        }
        for k in expired {
            self.entries.remove(&k);
        }
        for k in lost {
            self.entries.remove(&k);
            tracing::info!(ip = %k.1, rif = %k.0, "neighbor expired (no answer to probes)");
            self.emit(NeighborEvent::Down { rif: k.0, ip: k.1 }).await;
        }
        // Packets whose neighbor failed or that waited too long are dropped.
        let failed: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, s)| matches!(s, State::Failed { .. }))
            .map(|(k, _)| *k)
            .collect();
        self.queue.retain(|q| {
            now.duration_since(q.since) < t.queue_time
                && q.waits_for.is_none_or(|w| !failed.contains(&w))
        });
        self.start_wanted();
    }

    fn rows(&self) -> Vec<NeighborRow> {
        let now = Instant::now();
        let mut rows: Vec<_> = self
            .entries
            .iter()
            .map(|((rif, ip), st)| {
                let interface = self
                    .interface(*rif)
                    .map(|h| h.rif.name.clone())
                    .unwrap_or_default();
                let (mac, port, state, age) = match st {
                    State::Incomplete { .. } => (None, None, "incomplete", None),
                    State::Failed { .. } => (None, None, "failed", None),
                    State::Reachable {
                        mac,
                        port,
                        confirmed,
                        probes,
                        ..
                    } => (
                        Some(*mac),
                        *port,
                        if *probes > 0 { "probe" } else { "reachable" },
                        Some(now.duration_since(*confirmed).as_secs()),
                    ),
                };
                NeighborRow {
                    address: *ip,
                    mac,
                    interface,
                    port,
                    state,
                    age_s: age,
                }
            })
            .collect();
        rows.sort_by(|a, b| (&a.interface, a.address).cmp(&(&b.interface, b.address)));
        rows
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn on_subnet(h: &HostInterface, ip: IpAddr) -> bool {
    h.addresses
        .iter()
        .any(|a| a.contains(&ip) && a.addr() != ip)
}

fn first_v4(h: &HostInterface) -> Option<Ipv4Addr> {
    h.addresses.iter().find_map(|a| match a.addr() {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    })
}

fn first_v6(h: &HostInterface) -> Option<Ipv6Addr> {
    h.addresses.iter().find_map(|a| match a.addr() {
        IpAddr::V6(v) => Some(v),
        IpAddr::V4(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nos_core::{RifKind, RouterInterface, VrfId};
    use std::sync::{Arc, Mutex};

    const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn view() -> HostView {
        HostView {
            interfaces: vec![HostInterface {
                rif: RouterInterface {
                    id: RifId(1),
                    name: "eth1".into(),
                    vrf: VrfId::DEFAULT,
                    kind: RifKind::Port { port: PortId(1) },
                    mac: ROUTER_MAC,
                    mtu: 1500,
                    admin_up: true,
                },
                addresses: vec![
                    "192.0.2.1/24".parse().unwrap(),
                    "2001:db8::1/64".parse().unwrap(),
                ],
            }],
            resolve: vec![],
        }
    }

    type Sent = Arc<Mutex<Vec<PacketOut>>>;

    fn stack(timers: HostTimers) -> (HostStack, Sent, mpsc::Receiver<NeighborEvent>) {
        let sent: Sent = Arc::default();
        let s2 = sent.clone();
        let sender: PacketSender = Arc::new(move |p| {
            s2.lock().unwrap().push(p);
            Ok(())
        });
        let (tx, rx) = mpsc::channel(64);
        (HostStack::new(sender, tx, timers), sent, rx)
    }

    fn fast() -> HostTimers {
        HostTimers {
            retransmit: Duration::from_millis(10),
            reachable: Duration::from_millis(30),
            failed_hold: Duration::from_millis(30),
            ..HostTimers::default()
        }
    }

    fn arp_frame(op: u16, sender_ip: [u8; 4], target_ip: [u8; 4], dst: MacAddr) -> Vec<u8> {
        let a = Arp {
            op,
            sender_mac: HOST_MAC,
            sender_ip: sender_ip.into(),
            target_mac: if op == ARP_REPLY {
                ROUTER_MAC
            } else {
                MacAddr::ZERO
            },
            target_ip: target_ip.into(),
        };
        build_eth(dst, HOST_MAC, None, ETHERTYPE_ARP, &build_arp(&a))
    }

    fn punt(reason: PuntReason, frame: Vec<u8>) -> PacketIn {
        PacketIn {
            port: PortId(1),
            reason,
            frame,
        }
    }

    /// A neighbor solicitation from the host at `src` for `target`, sent to
    /// its solicited-node group with `hop_limit`, as punted.
    fn solicitation(src: Ipv6Addr, target: Ipv6Addr, hop_limit: u8) -> PacketIn {
        let (group, gmac) = solicited_node(target);
        let ns = build_ipv6(
            src,
            group,
            PROTO_ICMPV6,
            hop_limit,
            &build_nd(ICMP6_NEIGHBOR_SOLICIT, 0, target, HOST_MAC),
        );
        punt(
            PuntReason::NeighborDiscovery,
            build_eth(gmac, HOST_MAC, None, ETHERTYPE_IPV6, &ns),
        )
    }

    fn arps(sent: &Sent) -> Vec<Arp> {
        sent.lock()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let e = parse_eth(&p.frame).ok()?;
                (e.ethertype == ETHERTYPE_ARP).then(|| parse_arp(&p.frame[e.payload..]).ok())?
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_arp_for_its_address_only_and_learns_the_asker() {
        let (mut h, sent, mut ev) = stack(fast());
        h.set_view(view()).await;
        h.handle(punt(
            PuntReason::Arp,
            arp_frame(
                ARP_REQUEST,
                [192, 0, 2, 2],
                [192, 0, 2, 1],
                MacAddr::BROADCAST,
            ),
        ))
        .await;
        let a = arps(&sent);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].op, ARP_REPLY);
        assert_eq!(a[0].sender_mac, ROUTER_MAC);
        assert_eq!(a[0].target_ip, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(
            ev.try_recv().unwrap(),
            NeighborEvent::Up {
                rif: RifId(1),
                ip: "192.0.2.2".parse().unwrap(),
                mac: HOST_MAC,
                port: None
            }
        );
        // A request for someone else's address gets no answer.
        h.handle(punt(
            PuntReason::Arp,
            arp_frame(
                ARP_REQUEST,
                [192, 0, 2, 3],
                [192, 0, 2, 9],
                MacAddr::BROADCAST,
            ),
        ))
        .await;
        assert_eq!(arps(&sent).len(), 1);
    }

    #[tokio::test]
    async fn resolution_retries_then_fails_and_starts_again() {
        let timers = HostTimers {
            failed_hold: Duration::from_millis(300),
            ..fast()
        };
        let (mut h, sent, _ev) = stack(timers);
        let mut v = view();
        v.resolve = vec![(RifId(1), "192.0.2.9".parse().unwrap())];
        h.set_view(v).await;
        for _ in 0..100 {
            if h.rows()[0].state == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            h.timers_fired().await;
        }
        assert_eq!(h.rows()[0].state, "failed");
        let requests = arps(&sent)
            .iter()
            .filter(|a| a.target_ip == Ipv4Addr::new(192, 0, 2, 9))
            .count();
        assert_eq!(requests, 3, "one request and two retransmissions");
        tokio::time::sleep(Duration::from_millis(320)).await;
        h.timers_fired().await;
        assert_eq!(
            h.rows()[0].state,
            "incomplete",
            "resolution starts again after the hold time"
        );
    }

    #[tokio::test]
    async fn silent_neighbors_are_probed_then_expired() {
        let (mut h, sent, mut ev) = stack(fast());
        h.set_view(view()).await;
        h.handle(punt(
            PuntReason::Arp,
            arp_frame(ARP_REPLY, [192, 0, 2, 2], [192, 0, 2, 1], ROUTER_MAC),
        ))
        .await;
        assert!(matches!(ev.try_recv(), Ok(NeighborEvent::Up { .. })));
        for _ in 0..200 {
            if h.rows().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            h.timers_fired().await;
        }
        let probes: Vec<_> = sent
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.frame[..6] == HOST_MAC.0)
            .map(|p| p.frame.clone())
            .collect();
        assert_eq!(probes.len(), 3, "three unicast probes");
        assert_eq!(
            ev.try_recv().unwrap(),
            NeighborEvent::Down {
                rif: RifId(1),
                ip: "192.0.2.2".parse().unwrap()
            }
        );
        assert!(h.rows().is_empty());
    }

    #[tokio::test]
    async fn a_new_view_keeps_link_local_neighbors_and_drops_off_subnet_ones() {
        let (mut h, _sent, mut ev) = stack(fast());
        h.set_view(view()).await;
        let target: Ipv6Addr = "2001:db8::1".parse().unwrap();
        // Neighbor solicitations from a link-local and a global address.
        for src in ["fe80::2", "2001:db8::2"] {
            h.handle(solicitation(src.parse().unwrap(), target, 255))
                .await;
            assert!(matches!(ev.try_recv(), Ok(NeighborEvent::Up { .. })));
        }
        // The same interfaces again (the router recompiled): nothing forgotten.
        h.set_view(view()).await;
        assert!(ev.try_recv().is_err(), "no neighbor went down");
        // The IPv6 subnet removed: the global neighbor goes, the link-local stays.
        let mut v = view();
        v.interfaces[0].addresses.truncate(1);
        h.set_view(v).await;
        assert_eq!(
            ev.try_recv().unwrap(),
            NeighborEvent::Down {
                rif: RifId(1),
                ip: "2001:db8::2".parse().unwrap()
            }
        );
        assert!(ev.try_recv().is_err());
    }

    #[tokio::test]
    async fn answers_neighbor_solicitation_with_an_advertisement() {
        let (mut h, sent, mut ev) = stack(fast());
        h.set_view(view()).await;
        let src: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::1".parse().unwrap();
        h.handle(solicitation(src, target, 255)).await;
        let out = sent.lock().unwrap().clone();
        assert_eq!(out.len(), 1);
        let e = parse_eth(&out[0].frame).unwrap();
        assert_eq!((e.dst, e.src), (HOST_MAC, ROUTER_MAC));
        let ip = parse_ipv6(&out[0].frame[e.payload..]).unwrap();
        let msg = &out[0].frame[e.payload + 40..e.payload + ip.total_len];
        let IpAddr::V6(dst) = ip.dst else { panic!() };
        assert_eq!(icmpv6_checksum(target, dst, msg), 0, "checksum verifies");
        let na = parse_nd(msg).unwrap();
        assert_eq!(
            (na.kind, na.target, na.lladdr),
            (ICMP6_NEIGHBOR_ADVERT, target, Some(ROUTER_MAC))
        );
        assert!(matches!(ev.try_recv(), Ok(NeighborEvent::Up { .. })));
        // The same message with a hop limit other than 255 is ignored (RFC 4861).
        sent.lock().unwrap().clear();
        h.handle(solicitation(src, target, 64)).await;
        assert!(sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn gleaned_packets_wait_for_their_neighbor_then_go_through_the_pipeline() {
        let (mut h, sent, _ev) = stack(fast());
        h.set_view(view()).await;
        let ip = build_ipv4(
            [198, 51, 100, 7].into(),
            [192, 0, 2, 2].into(),
            17,
            64,
            &[0u8; 8],
        );
        let frame = build_eth(ROUTER_MAC, HOST_MAC, None, ETHERTYPE_IPV4, &ip);
        h.handle(punt(PuntReason::ToMe, frame.clone())).await;
        assert_eq!(arps(&sent).len(), 1, "an ARP request for the destination");
        assert!(!sent.lock().unwrap().iter().any(|p| p.frame == frame));
        h.release(Some((RifId(1), "192.0.2.2".parse().unwrap())));
        let out = sent.lock().unwrap().clone();
        let again: Vec<_> = out.iter().filter(|p| p.frame == frame).collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].dest, PacketDest::Ingress(PortId(1)));
    }

    #[tokio::test]
    async fn the_kernels_packets_to_remote_destinations_go_through_the_pipeline() {
        let (mut h, sent, _ev) = stack(fast());
        h.set_view(view()).await;
        let p = build_ipv4(
            [192, 0, 2, 1].into(),
            [203, 0, 113, 1].into(),
            6,
            64,
            &[0u8; 20],
        );
        h.kernel_packet(p.clone());
        let out = sent.lock().unwrap().clone();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].dest, PacketDest::Ingress(PortId(1)));
        assert_eq!(
            &out[0].frame[..6],
            &ROUTER_MAC.0,
            "addressed to the router MAC, so L3 admit takes it"
        );
        assert_eq!(out[0].frame.get(14..14 + p.len()), Some(&p[..]));
    }

    #[tokio::test]
    async fn packets_for_the_router_go_to_the_kernel_and_the_kernels_go_out() {
        let (mut h, sent, _ev) = stack(fast());
        let (ktx, mut krx) = mpsc::channel(8);
        h.to_kernel = Some(ktx);
        h.set_view(view()).await;
        let ip = build_ipv4(
            [192, 0, 2, 2].into(),
            [192, 0, 2, 1].into(),
            6,
            64,
            &[0u8; 20],
        );
        h.handle(punt(
            PuntReason::ToMe,
            build_eth(ROUTER_MAC, HOST_MAC, None, ETHERTYPE_IPV4, &ip),
        ))
        .await;
        assert_eq!(
            krx.try_recv().unwrap(),
            ip,
            "the IP packet, without Ethernet, reaches the kernel"
        );
        // The kernel answers; the neighbor is unknown, so it is resolved first.
        let reply = build_ipv4(
            [192, 0, 2, 1].into(),
            [192, 0, 2, 2].into(),
            6,
            64,
            &[1u8; 20],
        );
        h.kernel_packet(reply.clone());
        assert_eq!(arps(&sent).len(), 1);
        h.handle(punt(
            PuntReason::Arp,
            arp_frame(ARP_REPLY, [192, 0, 2, 2], [192, 0, 2, 1], ROUTER_MAC),
        ))
        .await;
        h.release(Some((RifId(1), "192.0.2.2".parse().unwrap())));
        let out = sent.lock().unwrap().clone();
        let framed: Vec<_> = out
            .iter()
            .filter(|p| p.frame.get(14..14 + reply.len()) == Some(&reply[..]))
            .collect();
        assert_eq!(framed.len(), 1);
        assert_eq!(framed[0].dest, PacketDest::Port(PortId(1)));
        assert_eq!(
            &framed[0].frame[..12],
            &[HOST_MAC.0, ROUTER_MAC.0].concat()[..]
        );
    }

    #[tokio::test]
    async fn answers_echo_requests_to_its_addresses() {
        let (mut h, sent, _ev) = stack(fast());
        h.set_view(view()).await;
        let icmp = build_icmpv4(ICMP_ECHO_REQUEST, 0, &[0, 7, 0, 1, b'h', b'i']);
        let ip = build_ipv4(
            [192, 0, 2, 2].into(),
            [192, 0, 2, 1].into(),
            PROTO_ICMP,
            64,
            &icmp,
        );
        h.handle(punt(
            PuntReason::ToMe,
            build_eth(ROUTER_MAC, HOST_MAC, None, ETHERTYPE_IPV4, &ip),
        ))
        .await;
        let out = sent.lock().unwrap().clone();
        assert_eq!(out.len(), 1);
        let e = parse_eth(&out[0].frame).unwrap();
        let r = parse_ipv4(&out[0].frame[e.payload..]).unwrap();
        assert_eq!(
            (r.src, r.dst),
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap())
        );
        let l4 = &out[0].frame[e.payload + 20..e.payload + r.total_len];
        assert_eq!(l4[0], ICMP_ECHO_REPLY);
        assert_eq!(fold(sum16(0, l4)), 0);
        assert_eq!(&l4[4..], &[0, 7, 0, 1, b'h', b'i']);
    }
}
