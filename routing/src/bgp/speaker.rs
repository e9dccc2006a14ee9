//! The BGP speaker task: owns every peer's Adj-RIB-In and Adj-RIB-Out and the
//! Loc-RIB, runs import and export policy and the decision process, and sends
//! the selected routes to the router task.
//!
//! Sessions are separate tasks (see [`super::session`]); they report events here
//! and take commands from here. A listener task hands accepted connections to
//! the session of the peer they come from.

use super::msg::*;
use super::policy::Policy;
use super::session::{PeerConfig, Session, SessionCmd, SessionEvent, State};
use super::sharded::ShardedMap;
use ipnet::IpNet;
use nos_core::config::{AddressFamily, BgpConfig, Config, UpstreamRole};
use serde::Serialize;
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Hash maps of the RIBs: prefixes and attributes come from peers, so the
/// hash is seeded per map (foldhash's random state), and fast.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// A Loc-RIB route handed to the router task: where to forward a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpRoute {
    pub prefix: IpNet,
    /// Where it goes: shared by every prefix that goes the same way (a full
    /// table from a few upstreams has a handful of these, not a million).
    pub via: Arc<BgpVia>,
}

/// Where a Loc-RIB route forwards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BgpVia {
    /// The next hops of the best path and of every equal-cost path (multipath).
    pub next_hops: Vec<IpAddr>,
    /// Weights of `next_hops` (same order; empty means all equal): load-sharing
    /// upstreams share traffic in proportion to their configured weights.
    pub weights: Vec<u32>,
    /// Learned over eBGP (administrative distance 20) or iBGP (200).
    pub ebgp: bool,
    /// The next hop of the best path from another peer: where traffic goes at
    /// once if every selected next hop is lost (BGP PIC), before the prefix
    /// itself has converged.
    pub backup: Vec<IpAddr>,
}

impl BgpRoute {
    /// A route with a `via` of its own (the speaker shares them; see
    /// [`Speaker`]).
    pub fn new(
        prefix: IpNet,
        next_hops: Vec<IpAddr>,
        weights: Vec<u32>,
        ebgp: bool,
        backup: Vec<IpAddr>,
    ) -> Self {
        BgpRoute {
            prefix,
            via: Arc::new(BgpVia {
                next_hops,
                weights,
                ebgp,
                backup,
            }),
        }
    }
}

impl std::ops::Deref for BgpRoute {
    type Target = BgpVia;
    fn deref(&self) -> &BgpVia {
        &self.via
    }
}

/// A change of the Loc-RIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BgpRibChange {
    Set(BgpRoute),
    Remove(IpNet),
    /// A session was lost: its next hops are gone. Sent before the per-prefix
    /// changes, so forwarding can move to the backups in one write per group.
    NextHopsDown(Vec<IpAddr>),
}

/// `show bgp summary` / `show bgp neighbor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NeighborSummary {
    pub address: IpAddr,
    pub remote_as: u32,
    pub description: Option<String>,
    pub state: String,
    /// Seconds in the current state.
    pub state_for_s: u64,
    pub router_id: Option<String>,
    pub hold_time_s: Option<u16>,
    pub families: Vec<String>,
    /// Prefixes received (before import policy) and accepted into Adj-RIB-In.
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
    pub import_policy: Option<String>,
    pub export_policy: Option<String>,
    pub last_error: Option<String>,
    /// Per negotiated family: prefixes in Adj-RIB-In (after import policy),
    /// in Adj-RIB-Out, and selected as best into the Loc-RIB.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<FamilyPrefixes>,
    /// Graceful restart with this peer: what its OPEN said, and the routes
    /// kept for it while it restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<GracefulRestartInfo>,
}

/// A neighbor's graceful restart (RFC 4724, RFC 8538).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GracefulRestartInfo {
    /// The peer's restart time, from its OPEN (while the session is up).
    pub restart_time_s: Option<u16>,
    /// Families whose forwarding the peer keeps while it restarts.
    pub preserved: Vec<String>,
    /// The peer's OPEN said it had just restarted (Restart State bit).
    pub peer_restarted: bool,
    /// Both sides set the N bit: NOTIFICATIONs and hold timer expiry end
    /// the session gracefully (RFC 8538).
    pub notification: bool,
    /// Routes of the peer kept (stale) while it restarts.
    pub stale_routes: u64,
}

/// Prefix counts of one neighbor in one address family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FamilyPrefixes {
    /// `ipv4-unicast`, `ipv6-unicast`.
    pub family: String,
    pub received: u64,
    pub sent: u64,
    pub installed: u64,
}

/// `show bgp summary`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    pub asn: u32,
    pub router_id: String,
    pub loc_rib_prefixes: u64,
    pub neighbors: Vec<NeighborSummary>,
}

/// A path in `show bgp routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RouteRow {
    pub prefix: String,
    pub best: bool,
    pub multipath: bool,
    pub next_hop: String,
    pub peer: String,
    pub local_pref: u32,
    pub med: Option<u32>,
    pub as_path: String,
    pub origin: String,
}

/// Queries the speaker answers.
#[derive(Debug)]
pub enum BgpQuery {
    Summary(oneshot::Sender<Option<Summary>>),
    Routes(Option<IpNet>, oneshot::Sender<Vec<RouteRow>>),
}

/// Where a Loc-RIB path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Local,
    Peer(IpAddr),
}

/// A prefix's selected paths, the best first: almost always one, kept inline
/// (a full table is a million of them; equal-cost paths are boxed).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Selected {
    One(Source),
    /// None, or several equal-cost paths.
    Many(Box<[Source]>),
}

impl Selected {
    fn new() -> Self {
        Selected::Many(Box::default())
    }
}

impl Default for Selected {
    fn default() -> Self {
        Selected::new()
    }
}

impl std::ops::Deref for Selected {
    type Target = [Source];
    fn deref(&self) -> &[Source] {
        match self {
            Selected::One(s) => std::slice::from_ref(s),
            Selected::Many(all) => all,
        }
    }
}

impl FromIterator<Source> for Selected {
    fn from_iter<I: IntoIterator<Item = Source>>(iter: I) -> Self {
        let all: SmallVec<[Source; 2]> = iter.into_iter().collect();
        match all.as_slice() {
            [one] => Selected::One(*one),
            _ => Selected::Many(all.into_iter().collect()),
        }
    }
}

struct UpInfo {
    peer_open: Open,
    families: Vec<Family>,
    local_address: IpAddr,
    hold: u16,
}

/// Routes as a peer sent them, by (prefix, ADD-PATH path id).
type PrePolicy = HashMap<(IpNet, Option<u32>), Arc<PathAttrs>>;

struct Peer {
    cfg: PeerConfig,
    description: Option<String>,
    import: Option<Policy>,
    export: Option<Policy>,
    /// Commands to the session. Unbounded: the speaker never waits on a
    /// session (a session waits on the speaker for its events).
    cmd: mpsc::UnboundedSender<SessionCmd>,
    state: State,
    since: Instant,
    up: Option<UpInfo>,
    /// Per prefix, the path this peer offers to the decision process.
    adj_in: ShardedMap<IpNet, Arc<PathAttrs>>,
    /// ADD-PATH (RFC 7911): every path of the peer per prefix, by path id; the
    /// best of them is the one in `adj_in`.
    paths: HashMap<IpNet, Vec<(u32, Arc<PathAttrs>)>>,
    /// Soft reconfiguration inbound: the pre-policy Adj-RIB-In, every route as
    /// the peer sent it, by (prefix, ADD-PATH path id). `None` when not
    /// configured: a new import policy then needs a ROUTE-REFRESH.
    adj_in_pre: Option<PrePolicy>,
    /// Whether `adj_in_pre` holds everything the peer sent this session (it
    /// existed when the session came up). A copy started mid-session is filled
    /// only by a ROUTE-REFRESH answer, so until the next session a new import
    /// policy still asks the peer for its routes.
    pre_complete: bool,
    adj_out: ShardedMap<IpNet, Arc<PathAttrs>>,
    received: u64,
    last_error: Option<String>,
    warned_8212: bool,
    /// Graceful restart of the peer (RFC 4724): the routes it had when its
    /// session died, kept until it re-sends them (End-of-RIB) or the deadline.
    stale: HashSet<IpNet>,
    stale_until: Option<Instant>,
    /// The upstream role and weight, when the peer belongs to an upstream ISP.
    role: Option<(UpstreamRole, u32)>,
    next_hop_self: bool,
}

impl Peer {
    /// Records an UPDATE in the pre-policy Adj-RIB-In, when there is one.
    fn record_pre_policy(&mut self, u: &Update) {
        let Some(pre) = self.adj_in_pre.as_mut() else {
            return;
        };
        for w in &u.withdrawn {
            pre.remove(&(w.prefix, w.path_id));
        }
        for n in &u.announced {
            let key = (n.prefix, n.path_id);
            match &u.attrs {
                Some(a) if !u.treat_as_withdraw => {
                    pre.insert(key, a.clone());
                }
                _ => {
                    pre.remove(&key);
                }
            }
        }
    }

    /// Forgets `gone` prefixes (every path id) in the pre-policy Adj-RIB-In.
    fn forget_pre_policy(&mut self, gone: &HashSet<IpNet>) {
        if let Some(pre) = self.adj_in_pre.as_mut() {
            pre.retain(|k, _| !gone.contains(&k.0));
        }
    }

    fn ebgp(&self) -> bool {
        self.cfg.remote_as != self.cfg.local_as
    }
}

/// Prefixes being decided again because a route their next hops resolve
/// through changed: a work list, and how often each was queued (a chain of
/// routes resolving through each other has no stable answer, so each prefix
/// is decided again a bounded number of times).
#[derive(Default)]
struct Cascade {
    queue: std::collections::VecDeque<IpNet>,
    queued: HashMap<IpNet, u8>,
}

/// How many times one change may have a prefix decided again.
const MAX_REDECIDE: u8 = crate::compile::MAX_RECURSION + 2;

/// The speaker's state.
#[derive(Default)]
pub struct Speaker {
    config: Option<BgpConfig>,
    peers: BTreeMap<IpAddr, Peer>,
    /// Selected paths per prefix: the best first, then equal-cost ones.
    loc: ShardedMap<IpNet, Selected>,
    local: BTreeMap<IpNet, Arc<PathAttrs>>,
    interned: HashSet<Arc<PathAttrs>>,
    /// The intern table's size after its last sweep.
    interned_after_sweep: usize,
    /// Where routes forward, interned like attribute sets.
    vias: HashSet<Arc<BgpVia>>,
    /// The last one handed out: consecutive prefixes mostly go the same way.
    last_via: Option<Arc<BgpVia>>,
    /// The via table's size after its last sweep.
    vias_after_sweep: usize,
    listener_port: Option<u16>,
    /// The listening socket, for per-peer TCP MD5 keys (it lives as long as
    /// its accept task, i.e. as long as the speaker).
    listener_fd: Option<std::os::fd::RawFd>,
    /// Where Loc-RIB changes go; used directly for the urgent ones.
    rib: Option<mpsc::UnboundedSender<Vec<BgpRibChange>>>,
    /// Neighbors that get a default route while an upstream is up.
    default_to: Vec<IpAddr>,
    /// Where next hops can be resolved: the default VRF's connected subnets
    /// and static-route prefixes. A path whose next hop is in none of them is
    /// left out of the decision process (RFC 4271 9.1.2.1).
    reachable: Vec<IpNet>,
    /// Static-route prefixes of the default VRF (a next hop anywhere under one
    /// is reachable; unlike a connected subnet, the prefix's own address too).
    reachable_static: Vec<IpNet>,
    /// Next hops of paths that are on no connected subnet (reached through a
    /// static or a Loc-RIB route, or not at all), each with the prefixes that
    /// have such a path: when a Loc-RIB route covering one changes, those
    /// prefixes are decided again.
    nh_users: BTreeMap<IpAddr, HashSet<IpNet>>,
    /// The tracked next hops per prefix (`nh_users` the other way round).
    nh_of: HashMap<IpNet, SmallVec<[IpAddr; 2]>>,
    /// While prefixes are decided again because a covering route changed:
    /// see [`Speaker::decide_dependents`].
    cascade: Option<Cascade>,
    /// Whether an upstream session is established (the default route is sent).
    default_up: bool,
    /// Until when sessions say we restarted (graceful restart's "Restart
    /// State" bit): the restart time after a start that followed an unclean
    /// stop.
    restarted_until: Option<std::time::Instant>,
    /// Route selection deferred after a restart (RFC 4724 4.1).
    deferral: Option<Deferral>,
}

/// RFC 4724 4.1: after a restart with forwarding preserved, route selection
/// waits until every peer that can restart gracefully has sent End-of-RIB,
/// or the deferral time passes. The preserved forwarding state stands
/// meanwhile, and each peer gets our table, then our End-of-RIB, once.
#[derive(Default)]
struct Deferral {
    until: Option<Instant>,
    /// Prefixes touched meanwhile, decided when the deferral ends.
    pending: HashSet<IpNet>,
    /// End-of-RIB still awaited, per peer and family.
    awaiting: HashSet<(IpAddr, Family)>,
    /// Peers whose session has come up meanwhile.
    heard: HashSet<IpAddr>,
    /// Peers up meanwhile, with their families: owed our End-of-RIB.
    owed_eor: HashMap<IpAddr, Vec<Family>>,
    /// How many (peer, family) End-of-RIBs were waited for in all.
    waited: usize,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker")
            .field("peers", &self.peers.len())
            .field("loc_rib", &self.loc.len())
            .finish()
    }
}

/// Pending outbound messages of one batch of events, flushed together. Per
/// peer and prefix only the last word counts (announce with these attributes,
/// or withdraw), so the order of events within a batch cannot leave a peer
/// with a route we withdrew or with older attributes.
#[derive(Default)]
struct Outbox {
    changes: HashMap<IpAddr, HashMap<IpNet, Option<Arc<PathAttrs>>>>,
    /// End-of-RIB markers, sent after everything else queued for the peer.
    eor: HashMap<IpAddr, Vec<Family>>,
}

impl Outbox {
    fn announce(&mut self, peer: IpAddr, prefix: IpNet, attrs: Arc<PathAttrs>) {
        self.changes
            .entry(peer)
            .or_default()
            .insert(prefix, Some(attrs));
    }

    fn withdraw(&mut self, peer: IpAddr, prefix: IpNet) {
        self.changes.entry(peer).or_default().insert(prefix, None);
    }
}

impl Speaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A speaker started after its predecessor stopped without closing its
    /// sessions (a crash, a kill): for the restart time, its OPENs say it
    /// restarted (RFC 4724), so peers that kept our routes keep them until
    /// our End-of-RIB.
    pub fn restarted(mut self) -> Self {
        self.restarted_until = Some(
            std::time::Instant::now()
                + Duration::from_secs(u64::from(super::session::RESTART_TIME)),
        );
        self
    }

    /// After a restart whose forwarding state survived (a P4Runtime target
    /// forwarding on), defers route selection (RFC 4724 4.1) until every
    /// configured peer has come up and each that can restart gracefully (and
    /// is not restarting itself) has sent End-of-RIB, for at most the
    /// restart time. Without preserved forwarding there is nothing to wait
    /// for.
    fn defer_selection(&mut self, forwarding_survives: bool) {
        if self.restarted_until.is_none() || !forwarding_survives {
            return;
        }
        let wait = Duration::from_secs(u64::from(super::session::RESTART_TIME));
        tracing::info!(
            max_wait_s = wait.as_secs(),
            "graceful restart: route selection deferred until every peer's End-of-RIB; the forwarding state stands meanwhile"
        );
        self.deferral = Some(Deferral {
            until: Some(Instant::now() + wait),
            ..Default::default()
        });
    }

    /// Ends the deferral once its conditions hold: every prefix touched
    /// meanwhile is decided (and exported), then every peer that came up
    /// gets our End-of-RIB.
    fn end_deferral_if_done(&mut self, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        let Some(d) = &self.deferral else {
            return;
        };
        let all_heard = self.peers.keys().all(|a| d.heard.contains(a));
        let timed_out = d.until.is_some_and(|t| Instant::now() >= t);
        if !(timed_out || (all_heard && d.awaiting.is_empty())) {
            return;
        }
        let Some(d) = self.deferral.take() else {
            return;
        };
        if timed_out {
            let silent: Vec<String> = self
                .peers
                .keys()
                .filter(|a| !d.heard.contains(a))
                .map(|a| a.to_string())
                .chain(
                    d.awaiting
                        .iter()
                        .map(|(a, f)| format!("{a} {}", family_name(*f))),
                )
                .collect();
            tracing::warn!(waiting_for = %silent.join(", "), prefixes = d.pending.len(), "graceful restart: deferral time over; selecting routes without them");
        } else if d.waited > 0 {
            tracing::info!(
                prefixes = d.pending.len(),
                "graceful restart: End-of-RIB from every peer; selecting routes"
            );
        } else {
            tracing::info!(
                prefixes = d.pending.len(),
                "graceful restart: every peer is up, none to wait for (they cannot restart gracefully, or are restarting too); selecting routes"
            );
        }
        for pfx in d.pending {
            self.decide(pfx, changes, out);
        }
        // The conditional default route too, before the End-of-RIBs (a peer
        // that kept ours stale would otherwise sweep it).
        self.refresh_default(out);
        for (peer, families) in d.owed_eor {
            if self.peers.get(&peer).is_some_and(|p| p.up.is_some()) {
                for d in DEFAULTS {
                    self.export_one(peer, d.parse().expect("a valid prefix"), out);
                }
                out.eor.entry(peer).or_default().extend(families);
            }
        }
    }

    /// Runs until shutdown.
    pub async fn run(
        mut self,
        mut config: watch::Receiver<Config>,
        rib: mpsc::UnboundedSender<Vec<BgpRibChange>>,
        mut queries: mpsc::Receiver<BgpQuery>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.rib = Some(rib.clone());
        let (ev_tx, mut ev_rx) = mpsc::channel::<SessionEvent>(1024);
        let (in_tx, mut in_rx) = mpsc::channel::<(TcpStream, SocketAddr)>(64);
        let first = config.borrow_and_update().clone();
        self.defer_selection(forwarding_survives(&first));
        self.configure(&first, &ev_tx, &in_tx, &rib).await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                r = config.changed() => {
                    if r.is_err() { break; }
                    let c = config.borrow_and_update().clone();
                    self.configure(&c, &ev_tx, &in_tx, &rib).await;
                }
                Some(e) = ev_rx.recv() => {
                    let mut changes = Vec::new();
                    let mut out = Outbox::default();
                    self.event(e, &mut changes, &mut out);
                    // Take what else is already waiting: one flush, one RIB update.
                    while let Ok(e) = ev_rx.try_recv() {
                        self.event(e, &mut changes, &mut out);
                    }
                    self.end_deferral_if_done(&mut changes, &mut out);
                    self.flush(out).await;
                    if !changes.is_empty() { let _ = rib.send(changes); }
                }
                Some((stream, from)) = in_rx.recv() => {
                    let ip = from.ip().to_canonical();
                    match self.peers.get(&ip) {
                        Some(p) => { let _ = p.cmd.send(SessionCmd::Incoming(stream)); }
                        None => tracing::info!(%ip, "BGP connection from an unconfigured address refused"),
                    }
                }
                Some(q) = queries.recv() => self.query(q),
                _ = tick.tick() => {
                    let mut changes = Vec::new();
                    let mut out = Outbox::default();
                    self.expire_stale(&mut changes, &mut out);
                    self.end_deferral_if_done(&mut changes, &mut out);
                    self.flush(out).await;
                    if !changes.is_empty() { let _ = rib.send(changes); }
                }
                _ = shutdown.changed() => break,
            }
        }
        for p in self.peers.values() {
            let _ = p.cmd.send(SessionCmd::Stop);
        }
    }

    async fn configure(
        &mut self,
        config: &Config,
        ev_tx: &mpsc::Sender<SessionEvent>,
        in_tx: &mpsc::Sender<(TcpStream, SocketAddr)>,
        rib: &mpsc::UnboundedSender<Vec<BgpRibChange>>,
    ) {
        let reachable: Vec<IpNet> = config
            .interfaces
            .iter()
            .filter(|i| i.vrf_name() == nos_core::config::DEFAULT_VRF && i.enabled)
            .flat_map(|i| i.addresses())
            .collect();
        let reachable_static: Vec<IpNet> = config
            .static_routes
            .iter()
            .filter(|r| r.vrf_name() == nos_core::config::DEFAULT_VRF && !r.blackhole)
            .map(|r| r.prefix)
            .collect();
        let reachability_changed =
            reachable != self.reachable || reachable_static != self.reachable_static;
        self.reachable = reachable;
        self.reachable_static = reachable_static;
        let Some(bgp) = config.bgp.clone() else {
            if self.config.is_some() {
                tracing::info!("BGP removed from the configuration: stopping every session");
            }
            let mut changes = Vec::new();
            let mut out = Outbox::default();
            let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
            for a in addrs {
                self.remove_peer(a, &mut changes, &mut out).await;
            }
            self.local.clear();
            self.config = None;
            if !changes.is_empty() {
                let _ = rib.send(changes);
            }
            return;
        };
        if self.listener_port != Some(bgp.port) && !bgp.neighbors.is_empty() {
            match TcpListener::bind(SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                bgp.port,
            ))
            .await
            {
                Ok(l) => {
                    tracing::info!(port = bgp.port, "BGP listening");
                    self.listener_port = Some(bgp.port);
                    self.listener_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&l));
                    let tx = in_tx.clone();
                    tokio::spawn(async move {
                        while let Ok(c) = l.accept().await {
                            if tx.send(c).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => tracing::error!(
                    port = bgp.port,
                    "cannot listen for BGP: {e}; only outgoing sessions will work"
                ),
            }
        }
        let policies: HashMap<&str, Policy> = bgp
            .policies
            .iter()
            .map(|p| (p.name.as_str(), Policy::compile(p)))
            .collect();
        let mut changes = Vec::new();
        let mut out = Outbox::default();
        let mut replays = Vec::new();
        // Peers whose session parameters changed are restarted; removed ones stop.
        // A P4Runtime target forwards on while nosd restarts; the in-process
        // dataplane stops with it.
        let forwarding_survives = forwarding_survives(config);
        let wanted: HashMap<IpAddr, PeerConfig> = bgp
            .neighbors
            .iter()
            .map(|n| {
                let families = if n.families.is_empty() {
                    vec![if n.address.is_ipv4() {
                        IPV4_UNICAST
                    } else {
                        IPV6_UNICAST
                    }]
                } else {
                    n.families
                        .iter()
                        .map(|f| match f {
                            AddressFamily::Ipv4Unicast => IPV4_UNICAST,
                            AddressFamily::Ipv6Unicast => IPV6_UNICAST,
                        })
                        .collect()
                };
                (
                    n.address,
                    PeerConfig {
                        address: n.address,
                        remote_as: n.remote_as,
                        local_as: bgp.asn,
                        router_id: bgp.router_id,
                        hold_time: n.hold_time,
                        passive: n.passive,
                        families,
                        connect_retry: Duration::from_secs(5),
                        port: bgp.port,
                        password: n.password.clone(),
                        // A multihop peer is reached through our own forwarding
                        // pipeline, which takes one hop of the TTL itself.
                        ttl: if n.remote_as == bgp.asn {
                            255
                        } else {
                            n.ebgp_multihop.map_or(1, |h| h.saturating_add(1))
                        },
                        forwarding_survives,
                        restarted_until: self.restarted_until,
                    },
                )
            })
            .collect();
        // TCP MD5 keys on the listening socket, so keyed peers can connect to us.
        if let Some(fd) = self.listener_fd {
            for n in &bgp.neighbors {
                let key = n.password.as_deref().unwrap_or("");
                let had = self
                    .peers
                    .get(&n.address)
                    .and_then(|p| p.cfg.password.clone());
                if key.is_empty() && had.is_none() {
                    continue;
                }
                if let Err(e) = super::md5::set_key(fd, true, n.address, key.as_bytes()) {
                    tracing::error!(peer = %n.address, "cannot set the TCP MD5 key on the listener: {e}");
                }
            }
        }
        let existing: Vec<IpAddr> = self.peers.keys().copied().collect();
        for a in existing {
            if wanted.get(&a) != self.peers.get(&a).map(|p| &p.cfg) {
                self.remove_peer(a, &mut changes, &mut out).await;
            }
        }
        for n in &bgp.neighbors {
            let import = n
                .import_policy
                .as_deref()
                .and_then(|p| policies.get(p))
                .cloned();
            let export = n
                .export_policy
                .as_deref()
                .and_then(|p| policies.get(p))
                .cloned();
            if let Some(p) = self.peers.get_mut(&n.address) {
                // Same session; policies or description may have changed.
                let mut refilter = p.import != import;
                p.import = import;
                p.export = export;
                p.description = n.description.clone();
                p.next_hop_self = n.next_hop_self;
                let soft = n.soft_reconfiguration_inbound;
                if soft != p.adj_in_pre.is_some() {
                    // Turned on: the pre-policy copy starts empty, so the peer
                    // is asked for its routes to fill it. Turned off: dropped.
                    p.adj_in_pre = soft.then(HashMap::default);
                    p.pre_complete = soft && p.up.is_none();
                    refilter |= soft;
                } else if refilter && p.pre_complete {
                    // Replayed once the rest of the configuration (upstream
                    // roles, which set LOCAL_PREF) is in place, below.
                    replays.push(n.address);
                    continue;
                }
                if refilter && p.up.is_some() {
                    tracing::info!(peer = %n.address, "import policy changed: asking the peer to send its routes again");
                    for f in
                        p.up.as_ref()
                            .map(|u| u.families.clone())
                            .unwrap_or_default()
                    {
                        let _ = p.cmd.send(SessionCmd::RouteRefresh(f));
                    }
                }
                continue;
            }
            let Some(cfg) = wanted.get(&n.address).cloned() else {
                continue;
            };
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            tokio::spawn(Session::new(cfg.clone(), ev_tx.clone(), cmd_rx).run());
            tracing::info!(peer = %n.address, remote_as = n.remote_as, "BGP neighbor configured");
            self.peers.insert(
                n.address,
                Peer {
                    cfg,
                    description: n.description.clone(),
                    import,
                    export,
                    cmd: cmd_tx,
                    state: State::Idle,
                    since: Instant::now(),
                    up: None,
                    adj_in: ShardedMap::default(),
                    paths: HashMap::default(),
                    adj_in_pre: n.soft_reconfiguration_inbound.then(HashMap::default),
                    pre_complete: n.soft_reconfiguration_inbound,
                    adj_out: ShardedMap::default(),
                    received: 0,
                    last_error: None,
                    warned_8212: false,
                    stale: HashSet::default(),
                    stale_until: None,
                    role: None,
                    next_hop_self: n.next_hop_self,
                },
            );
        }
        // Upstream roles.
        for p in self.peers.values_mut() {
            p.role = bgp
                .upstreams
                .iter()
                .find(|u| u.neighbors.contains(&p.cfg.address))
                .map(|u| (u.role, u.weight));
        }
        // Neighbors added to or removed from the default route's list get it
        // sent or withdrawn once the new list is in place (below).
        let old_default_to = std::mem::take(&mut self.default_to);
        self.default_to = bgp
            .default_route
            .as_ref()
            .map(|d| d.to.clone())
            .unwrap_or_default();
        // Originated networks.
        let want_local: BTreeMap<IpNet, Arc<PathAttrs>> = bgp
            .networks
            .iter()
            .map(|n| (*n, Arc::new(PathAttrs::new(Origin::Igp, Vec::new(), None))))
            .collect();
        let gone: Vec<IpNet> = self
            .local
            .keys()
            .filter(|k| !want_local.contains_key(k))
            .copied()
            .collect();
        let added: Vec<IpNet> = want_local
            .keys()
            .filter(|k| !self.local.contains_key(k))
            .copied()
            .collect();
        self.local = want_local;
        self.config = Some(bgp);
        self.refresh_default(&mut out);
        let mut listed = old_default_to;
        listed.extend(self.default_to.iter().copied());
        for peer in listed {
            for d in DEFAULTS {
                let pfx: IpNet = d.parse().expect("a valid prefix");
                if !self.default_to.contains(&peer) {
                    // No longer a default-route neighbor: back to the Loc-RIB's view.
                    if let Some(p) = self.peers.get_mut(&peer) {
                        if p.adj_out.remove(&pfx).is_some() {
                            out.withdraw(peer, pfx);
                        }
                    }
                }
                self.export_one(peer, pfx, &mut out);
            }
        }
        for p in gone.into_iter().chain(added) {
            self.decide(p, &mut changes, &mut out);
        }
        for peer in replays {
            tracing::info!(%peer, "import policy changed: applying it to the routes kept before policy (soft reconfiguration inbound)");
            self.reimport(peer, &mut changes, &mut out);
        }
        if reachability_changed {
            // Next hops may have become (un)reachable: decide every prefix again.
            let mut all: Vec<IpNet> = self
                .peers
                .values()
                .flat_map(|p| p.adj_in.keys().copied())
                .collect();
            all.sort();
            all.dedup();
            for p in all {
                self.decide(p, &mut changes, &mut out);
            }
        }
        // Export policy changes: re-evaluate what every peer is sent.
        let up: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.up.is_some())
            .map(|(a, _)| *a)
            .collect();
        let prefixes: Vec<IpNet> = self.loc.keys().copied().collect();
        for a in up {
            for pfx in &prefixes {
                self.export_one(a, *pfx, &mut out);
            }
        }
        self.flush(out).await;
        if !changes.is_empty() {
            let _ = rib.send(changes);
        }
    }

    async fn remove_peer(&mut self, a: IpAddr, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        if let Some(d) = self.deferral.as_mut() {
            // A neighbor configured again starts over: it is waited for anew.
            d.heard.remove(&a);
            d.awaiting.retain(|(p, _)| *p != a);
            d.owed_eor.remove(&a);
        }
        if let Some(p) = self.peers.remove(&a) {
            let _ = p.cmd.send(SessionCmd::Stop);
            for pfx in p.adj_in.keys() {
                self.decide(*pfx, changes, out);
            }
            tracing::info!(peer = %a, "BGP neighbor removed");
        }
    }

    fn event(&mut self, e: SessionEvent, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        match e {
            SessionEvent::State { peer, state } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.state = state;
                    p.since = Instant::now();
                }
            }
            SessionEvent::Established {
                peer,
                peer_open,
                families,
                local_address,
                ..
            } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.pre_complete = p.adj_in_pre.is_some();
                let peer_restarts =
                    peer_open.has(|c| matches!(c, Capability::GracefulRestart { .. }));
                if !p.stale.is_empty() {
                    if peer_restarts {
                        // Wait for its End-of-RIB, at most the stale-path time.
                        p.stale_until = Some(Instant::now() + Duration::from_secs(360));
                        tracing::info!(%peer, stale = p.stale.len(), "peer back after a graceful restart; keeping its routes until End-of-RIB");
                    } else {
                        p.stale_until = Some(Instant::now());
                    }
                }
                p.up = Some(UpInfo {
                    hold: p.cfg.hold_time.min(peer_open.hold_time),
                    peer_open,
                    families: families.clone(),
                    local_address,
                });
                p.last_error = None;
                p.adj_out.clear();
                if p.ebgp() && p.export.is_none() {
                    tracing::warn!(%peer, "eBGP neighbor has no export policy: announcing nothing to it (RFC 8212)");
                }
                if let Some(d) = self.deferral.as_mut() {
                    // Our table and End-of-RIB go when selection resumes. We
                    // wait for this peer's End-of-RIB only if it can restart
                    // gracefully and is not restarting itself (RFC 4724 4.1).
                    d.heard.insert(peer);
                    let waits = p.up.as_ref().is_some_and(|u| {
                        u.peer_open.has(|c| {
                            matches!(
                                c,
                                Capability::GracefulRestart {
                                    restarting: false,
                                    ..
                                }
                            )
                        })
                    });
                    if waits {
                        d.awaiting.extend(families.iter().map(|f| (peer, *f)));
                        d.waited += families.len();
                    }
                    d.owed_eor.insert(peer, families);
                    return;
                }
                let prefixes: Vec<IpNet> = self.loc.keys().copied().collect();
                for pfx in prefixes {
                    self.export_one(peer, pfx, out);
                }
                self.refresh_default(out);
                for d in DEFAULTS {
                    self.export_one(peer, d.parse().expect("a valid prefix"), out);
                }
                // End-of-RIB goes after the initial table.
                out.eor.entry(peer).or_default().extend(families);
            }
            SessionEvent::Down {
                peer,
                reason,
                graceful,
            } => {
                if let Some(d) = self.deferral.as_mut() {
                    d.awaiting.retain(|(a, _)| *a != peer);
                    d.owed_eor.remove(&peer);
                }
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let restart = p.up.as_ref().and_then(|u| {
                    u.peer_open.capabilities.iter().find_map(|c| match c {
                        Capability::GracefulRestart {
                            restart_time,
                            families,
                            ..
                        } if !families.is_empty() => Some(*restart_time),
                        _ => None,
                    })
                });
                p.up = None;
                p.last_error = Some(reason);
                p.adj_out.clear();
                if let (true, Some(secs)) = (graceful, restart) {
                    // Helper mode: the peer is restarting and forwarding on; keep
                    // its routes (stale) and its next hops while it comes back.
                    p.stale = p.adj_in.keys().copied().collect();
                    // ADD-PATH ids do not survive a restart: the stale routes are
                    // the peer's best paths, replaced as new paths arrive.
                    p.paths.clear();
                    if let Some(pre) = p.adj_in_pre.as_mut() {
                        pre.retain(|k, _| k.1.is_none());
                    }
                    p.stale_until = Some(Instant::now() + Duration::from_secs(u64::from(secs)));
                    tracing::info!(%peer, routes = p.stale.len(), restart_time_s = secs, "peer restarting gracefully: keeping its routes");
                    self.refresh_default(out);
                    return;
                }
                p.stale.clear();
                p.stale_until = None;
                // The next hops this peer gave us are gone (unless another peer
                // is one of them). Say so first: forwarding can switch every
                // affected group to its backup before each prefix converges.
                let mut dead: Vec<IpAddr> = p.adj_in.values().filter_map(|a| a.next_hop).collect();
                dead.push(peer);
                dead.sort();
                dead.dedup();
                // A next hop another up peer still uses (a route server's
                // third-party next hop, say) is not down.
                dead.retain(|nh| {
                    *nh == peer
                        || !self.peers.iter().any(|(a, q)| {
                            *a != peer
                                && q.up.is_some()
                                && (*a == *nh || q.adj_in.values().any(|x| x.next_hop == Some(*nh)))
                        })
                });
                // Sent at once, ahead of everything queued in `changes`: the
                // router moves traffic to the backups before any prefix converges.
                match &self.rib {
                    Some(tx) => {
                        let _ = tx.send(vec![BgpRibChange::NextHopsDown(dead)]);
                    }
                    None => changes.push(BgpRibChange::NextHopsDown(dead)),
                }
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.paths.clear();
                if let Some(pre) = p.adj_in_pre.as_mut() {
                    pre.clear();
                }
                let lost: Vec<IpNet> = p.adj_in.drain().map(|(k, _)| k).collect();
                p.received = 0;
                for pfx in lost {
                    self.decide(pfx, changes, out);
                }
                self.refresh_default(out);
            }
            SessionEvent::RouteRefresh { peer, family } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                // Send this family again: forget what the peer was told of it.
                let keys: Vec<IpNet> = p
                    .adj_out
                    .keys()
                    .filter(|k| family_of(k) == family)
                    .copied()
                    .collect();
                p.adj_out.retain(|k, _| family_of(k) != family);
                let mut prefixes: Vec<IpNet> = self.loc.keys().copied().collect();
                prefixes.extend(keys);
                prefixes.retain(|p| family_of(p) == family);
                prefixes.sort();
                prefixes.dedup();
                for pfx in prefixes {
                    self.export_one(peer, pfx, out);
                }
            }
            SessionEvent::Update { peer, update } => self.update(peer, update, changes, out),
        }
    }

    fn update(
        &mut self,
        peer: IpAddr,
        u: Update,
        changes: &mut Vec<BgpRibChange>,
        out: &mut Outbox,
    ) {
        let local_as = self.config.as_ref().map(|c| c.asn).unwrap_or(0);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.record_pre_policy(&u);
        let mut touched = Vec::with_capacity(u.withdrawn.len() + u.announced.len());
        for w in &u.withdrawn {
            match w.path_id {
                Some(id) => {
                    if remove_path(p, w.prefix, id) {
                        touched.push(w.prefix);
                    }
                }
                None => {
                    if p.adj_in.remove(&w.prefix).is_some() {
                        touched.push(w.prefix);
                    }
                }
            }
        }
        if let Some(attrs) = &u.attrs {
            p.received += u.announced.len() as u64;
            let ebgp = p.ebgp();
            // LOCAL_PREF is not meaningful from another AS (RFC 4271 5.1.5).
            let base: Arc<PathAttrs> = if ebgp && attrs.local_pref.is_some() {
                let mut a = (**attrs).clone();
                a.local_pref = None;
                Arc::new(a)
            } else {
                attrs.clone()
            };
            // An upstream's role sets the default local-pref (the import policy
            // may still set another).
            let base: Arc<PathAttrs> = match p.role {
                Some((role, _)) if ebgp => {
                    let mut a = (*base).clone();
                    a.local_pref = Some(match role {
                        UpstreamRole::Primary => 200,
                        UpstreamRole::Backup => 50,
                        UpstreamRole::LoadShare => 100,
                    });
                    Arc::new(a)
                }
                _ => base,
            };
            let own_loop = base.as_path.iter().any(|s| match s {
                AsSegment::Sequence(v) | AsSegment::Set(v) => v.contains(&local_as),
                _ => false,
            });
            if ebgp && p.import.is_none() && !p.warned_8212 {
                tracing::warn!(%peer, "eBGP neighbor has no import policy: accepting none of its routes (RFC 8212)");
                p.warned_8212 = true;
            }
            // The policy output is usually the same for every prefix of an UPDATE:
            // intern it once.
            let mut last: Option<(PathAttrs, Arc<PathAttrs>)> = None;
            for n in &u.announced {
                let accepted = if u.treat_as_withdraw || own_loop {
                    None
                } else {
                    match (&p.import, ebgp) {
                        (Some(pol), _) => pol.apply(&n.prefix, &base, local_as),
                        (None, true) => None,
                        (None, false) => Some((*base).clone()),
                    }
                };
                match accepted {
                    Some(a) => {
                        let arc = match &last {
                            Some((prev, arc)) if *prev == a => arc.clone(),
                            _ => {
                                let arc = intern(&mut self.interned, a.clone());
                                last = Some((a, arc.clone()));
                                arc
                            }
                        };
                        match n.path_id {
                            Some(id) => set_path(p, n.prefix, id, arc),
                            None => {
                                p.adj_in.insert(n.prefix, arc);
                            }
                        }
                        touched.push(n.prefix);
                    }
                    None => {
                        let removed = match n.path_id {
                            Some(id) => remove_path(p, n.prefix, id),
                            None => p.adj_in.remove(&n.prefix).is_some(),
                        };
                        if removed {
                            touched.push(n.prefix);
                        }
                    }
                }
            }
        } else if u.treat_as_withdraw {
            for n in &u.announced {
                let removed = match n.path_id {
                    Some(id) => remove_path(p, n.prefix, id),
                    None => p.adj_in.remove(&n.prefix).is_some(),
                };
                if removed {
                    touched.push(n.prefix);
                }
            }
        }
        if !p.stale.is_empty() {
            for n in &u.announced {
                p.stale.remove(&n.prefix);
            }
        }
        if let Some(f) = u.end_of_rib {
            tracing::info!(%peer, family = ?f, "End-of-RIB received");
            if let Some(d) = self.deferral.as_mut() {
                d.awaiting.remove(&(peer, f));
            }
            if p.stale_until.is_some() {
                // The restarted peer has sent this family again: what it did not
                // re-send is gone.
                let gone: Vec<IpNet> = p
                    .stale
                    .iter()
                    .filter(|x| family_of(x) == f)
                    .copied()
                    .collect();
                for g in &gone {
                    p.stale.remove(g);
                    p.paths.remove(g);
                    if p.adj_in.remove(g).is_some() {
                        touched.push(*g);
                    }
                }
                p.forget_pre_policy(&gone.iter().copied().collect());
                tracing::info!(%peer, family = ?f, removed = gone.len(), "graceful restart: stale routes swept after End-of-RIB");
                if p.stale.is_empty() {
                    p.stale_until = None;
                }
            }
        }
        for pfx in touched {
            self.decide(pfx, changes, out);
        }
    }

    /// Runs the peer's pre-policy Adj-RIB-In through its (new) import policy, as
    /// if the peer had sent every route again.
    fn reimport(&mut self, peer: IpAddr, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(pre) = &p.adj_in_pre else {
            return;
        };
        // One synthetic UPDATE per attribute set; paths the peer no longer
        // offers are withdrawn by the policy result (accepted or not) below.
        let mut by_attrs: HashMap<*const PathAttrs, (Arc<PathAttrs>, Vec<Nlri>)> =
            HashMap::default();
        for ((prefix, path_id), a) in pre {
            by_attrs
                .entry(Arc::as_ptr(a))
                .or_insert_with(|| (a.clone(), Vec::new()))
                .1
                .push(Nlri {
                    prefix: *prefix,
                    path_id: *path_id,
                });
        }
        let (received, stale) = (p.received, p.stale.clone());
        for (_, (attrs, announced)) in by_attrs {
            let u = Update {
                announced,
                attrs: Some(attrs),
                ..Default::default()
            };
            self.update(peer, u, changes, out);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            // A replay is not news from the peer.
            p.received = received;
            p.stale = stale;
        }
    }

    /// Whether a next hop is on a connected subnet (IPv6 link-local next hops
    /// are on-link by definition).
    fn on_subnet(&self, nh: IpAddr) -> bool {
        nos_core::is_link_local(nh)
            || self
                .reachable
                .iter()
                .any(|n| n.contains(&nh) && n.addr() != nh)
    }

    /// Whether a next hop of a path for `own` can be reached: on a connected
    /// subnet, or through the longest route covering it, a static route (which
    /// wins a tie) or a Loc-RIB route whose own next hops can be reached (at
    /// most `MAX_RECURSION` routes deep), but not when that longest route
    /// would be `own` itself (RFC 4271 9.1.2.1). The router resolves next hops
    /// by the same rules (`Compiler::resolve_next_hop`).
    fn resolvable(&self, nh: IpAddr, own: &IpNet) -> bool {
        self.resolves(nh, own, crate::compile::MAX_RECURSION)
    }

    fn resolves(&self, nh: IpAddr, own: &IpNet, depth: u8) -> bool {
        if self.on_subnet(nh) {
            return true;
        }
        let fixed = self
            .reachable_static
            .iter()
            .filter(|n| n.contains(&nh))
            .map(|n| n.prefix_len())
            .max();
        let learned = self.covering_route(nh, own);
        let learned_len = learned.map(|(p, _)| p.prefix_len());
        if own.contains(&nh) && Some(own.prefix_len()) > fixed.max(learned_len) {
            return false;
        }
        match (fixed, learned) {
            (Some(f), l) if l.is_none_or(|(p, _)| f >= p.prefix_len()) => true,
            (_, Some((p, sel))) if depth > 0 => sel.iter().any(|src| match src {
                Source::Peer(a) => self
                    .peers
                    .get(a)
                    .and_then(|peer| peer.adj_in.get(&p))
                    .is_some_and(|at| self.resolves(at.next_hop.unwrap_or(*a), &p, depth - 1)),
                Source::Local => false,
            }),
            _ => false,
        }
    }

    /// The longest Loc-RIB route that forwards (its best path is a peer's)
    /// covering `addr`, other than the one for `own`.
    fn covering_route(&self, addr: IpAddr, own: &IpNet) -> Option<(IpNet, &Selected)> {
        if self.loc.is_empty() {
            return None;
        }
        crate::compile::covering_prefixes(addr, *own).find_map(|p| {
            self.loc
                .get(&p)
                .filter(|sel| matches!(sel.first(), Some(Source::Peer(_))))
                .map(|sel| (p, sel))
        })
    }

    /// Records the next hops off every connected subnet that `pfx`'s paths
    /// have now (`tracked`).
    fn track_next_hops(&mut self, pfx: IpNet, tracked: SmallVec<[IpAddr; 2]>) {
        let old = if tracked.is_empty() {
            self.nh_of.remove(&pfx).unwrap_or_default()
        } else {
            self.nh_of.insert(pfx, tracked.clone()).unwrap_or_default()
        };
        for nh in old.iter().filter(|nh| !tracked.contains(nh)) {
            if let Some(users) = self.nh_users.get_mut(nh) {
                users.remove(&pfx);
                if users.is_empty() {
                    self.nh_users.remove(nh);
                }
            }
        }
        for nh in tracked {
            self.nh_users.entry(nh).or_default().insert(pfx);
        }
    }

    /// Decides again the prefixes whose paths have a next hop under `pfx`,
    /// whose Loc-RIB route just changed: they may be reached through it, or
    /// no longer. Their own changes queue their dependents in turn (each
    /// prefix at most [`MAX_REDECIDE`] times per change). When the queue is
    /// empty, a last sweep takes out of the Loc-RIB any route of the cascade
    /// whose selected paths no longer resolve (what the bound may have left).
    fn decide_dependents(&mut self, pfx: IpNet, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        let mut range = self
            .nh_users
            .range(crate::compile::addresses_of(pfx))
            .peekable();
        if range.peek().is_none() {
            return;
        }
        let mut dependents: Vec<IpNet> = range
            .flat_map(|(_, users)| users.iter().copied())
            .filter(|d| *d != pfx)
            .collect();
        // The sets' order is random: decide in a fixed one.
        dependents.sort_unstable();
        dependents.dedup();
        let top = self.cascade.is_none();
        let cascade = self.cascade.get_or_insert_with(Cascade::default);
        for d in dependents {
            let n = cascade.queued.entry(d).or_insert(0);
            if *n < MAX_REDECIDE {
                *n += 1;
                cascade.queue.push_back(d);
            }
        }
        if !top {
            return;
        }
        while let Some(d) = self.cascade.as_mut().and_then(|c| c.queue.pop_front()) {
            self.decide(d, changes, out);
        }
        // The sweep decides again only what no longer resolves (dependents
        // its decisions queue are not run, only noted as touched), pass after
        // pass, until nothing is left to take out.
        let passes = self.cascade.as_ref().map_or(0, |c| c.queued.len()) + 1;
        for _ in 0..passes {
            let mut broken: Vec<IpNet> = self
                .cascade
                .as_ref()
                .map(|c| {
                    c.queued
                        .keys()
                        .copied()
                        .filter(|p| self.selected_unresolvable(p))
                        .collect()
                })
                .unwrap_or_default();
            if broken.is_empty() {
                break;
            }
            broken.sort_unstable();
            for p in broken {
                self.decide(p, changes, out);
            }
            if let Some(c) = self.cascade.as_mut() {
                c.queue.clear();
            }
        }
        self.cascade = None;
    }

    /// Whether `pfx` is in the Loc-RIB through a peer's path that does not
    /// resolve any more.
    fn selected_unresolvable(&self, pfx: &IpNet) -> bool {
        self.loc.get(pfx).is_some_and(|sel| {
            sel.iter().any(|src| match src {
                Source::Peer(a) => self
                    .peers
                    .get(a)
                    .and_then(|p| p.adj_in.get(pfx))
                    .is_some_and(|at| !self.resolvable(at.next_hop.unwrap_or(*a), pfx)),
                Source::Local => false,
            })
        })
    }

    /// Drops the stale routes of peers whose graceful restart took too long.
    fn expire_stale(&mut self, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (a, p) in self.peers.iter_mut() {
            if p.stale_until.is_some_and(|t| now >= t) {
                tracing::warn!(peer = %a, routes = p.stale.len(), "graceful restart not completed in time: removing the peer's stale routes");
                let stale = std::mem::take(&mut p.stale);
                p.forget_pre_policy(&stale);
                for pfx in stale {
                    p.paths.remove(&pfx);
                    if p.adj_in.remove(&pfx).is_some() {
                        gone.push(pfx);
                    }
                }
                p.stale_until = None;
            }
        }
        for pfx in gone {
            self.decide(pfx, changes, out);
        }
    }

    fn attrs_of(&self, s: Source, pfx: &IpNet) -> Option<&Arc<PathAttrs>> {
        match s {
            Source::Local => self.local.get(pfx),
            Source::Peer(a) => self.peers.get(&a)?.adj_in.get(pfx),
        }
    }

    /// The decision process (RFC 4271 9.1.2) over every path for `pfx`.
    fn decide(&mut self, pfx: IpNet, changes: &mut Vec<BgpRibChange>, out: &mut Outbox) {
        if let Some(d) = self.deferral.as_mut() {
            d.pending.insert(pfx);
            return;
        }
        let mut cands: SmallVec<[Source; 4]> = SmallVec::new();
        if self.local.contains_key(&pfx) {
            cands.push(Source::Local);
        }
        let mut off_subnet: SmallVec<[IpAddr; 2]> = SmallVec::new();
        for (a, p) in &self.peers {
            if let Some(attrs) = p.adj_in.get(&pfx) {
                let nh = attrs.next_hop.unwrap_or(*a);
                let on_subnet = self.on_subnet(nh);
                if !on_subnet && !off_subnet.contains(&nh) {
                    off_subnet.push(nh);
                }
                if on_subnet || self.resolvable(nh, &pfx) {
                    cands.push(Source::Peer(*a));
                }
            }
        }
        if !off_subnet.is_empty() || (!self.nh_of.is_empty() && self.nh_of.contains_key(&pfx)) {
            self.track_next_hops(pfx, off_subnet);
        }
        // Deterministic MED: MED only orders paths from the same neighbor AS, so
        // first pick the best of each neighbor AS, then compare those winners
        // without MED; the order cannot depend on arrival order.
        let first_as = |s: &Self, c: &Source| match c {
            Source::Local => None,
            Source::Peer(_) => s.attrs_of(*c, &pfx).and_then(|a| a.first_as()),
        };
        // One path (the usual case of a full table from one peer): nothing
        // to order.
        if cands.len() > 1 {
            let mut by_as: BTreeMap<Option<u32>, Vec<Source>> = BTreeMap::new();
            for c in cands.drain(..) {
                by_as.entry(first_as(self, &c)).or_default().push(c);
            }
            let mut winners: SmallVec<[Source; 4]> = SmallVec::new();
            let mut others: SmallVec<[Source; 4]> = SmallVec::new();
            for (_, mut group) in by_as {
                group.sort_by(|a, b| self.compare_with(&pfx, *a, *b, true));
                let mut it = group.into_iter();
                winners.extend(it.next());
                others.extend(it);
            }
            winners.sort_by(|a, b| self.compare_with(&pfx, *a, *b, false));
            others.sort_by(|a, b| self.compare_with(&pfx, *a, *b, true));
            cands = winners;
            cands.extend(others);
        }
        let selected: Selected = match cands.first() {
            None => Selected::new(),
            Some(best) => {
                let best = *best;
                cands
                    .iter()
                    .copied()
                    .filter(|c| *c == best || self.equal_cost(&pfx, best, *c))
                    .collect()
            }
        };
        // The backup: the best path from a peer none of the selected paths uses,
        // or else the selected peer's second ADD-PATH path.
        let second_path = |s: &Self| -> Option<IpAddr> {
            let Some(Source::Peer(a)) = selected.first() else {
                return None;
            };
            let p = s.peers.get(a)?;
            let best = p.adj_in.get(&pfx)?.next_hop;
            p.paths
                .get(&pfx)?
                .iter()
                .filter_map(|(_, x)| x.next_hop)
                .find(|nh| Some(*nh) != best)
        };
        let backup: Option<IpAddr> = cands
            .iter()
            .filter(|c| !selected.contains(c) && !matches!(c, Source::Local))
            .find_map(|c| match c {
                Source::Peer(a) => {
                    Some(self.peers.get(a)?.adj_in.get(&pfx)?.next_hop.unwrap_or(*a))
                }
                Source::Local => None,
            })
            .or_else(|| second_path(self));
        if selected.is_empty() && !self.loc.contains_key(&pfx) {
            return;
        }
        if selected.is_empty() {
            self.loc.remove(&pfx);
        } else {
            self.loc.insert(pfx, selected.clone());
        }
        // What forwarding needs: next hops of the selected peer paths.
        let fwd: SmallVec<[(IpAddr, bool, u32); 2]> = selected
            .iter()
            .filter_map(|s| match s {
                Source::Local => None,
                Source::Peer(a) => {
                    let p = self.peers.get(a)?;
                    let nh = p.adj_in.get(&pfx)?.next_hop.unwrap_or(*a);
                    let weight = match p.role {
                        Some((UpstreamRole::LoadShare, w)) => w,
                        _ => 1,
                    };
                    Some((nh, p.ebgp(), weight))
                }
            })
            .collect();
        if selected.first() == Some(&Source::Local) || fwd.is_empty() {
            changes.push(BgpRibChange::Remove(pfx));
        } else {
            let mut hops: SmallVec<[(IpAddr, u32); 2]> =
                fwd.iter().map(|(n, _, w)| (*n, *w)).collect();
            hops.sort();
            hops.dedup_by_key(|h| h.0);
            let backup: SmallVec<[IpAddr; 1]> = backup
                .into_iter()
                .filter(|b| !hops.iter().any(|h| h.0 == *b))
                .collect();
            let via = self.via(&hops, fwd[0].1, &backup);
            changes.push(BgpRibChange::Set(BgpRoute { prefix: pfx, via }));
        }
        let peers: SmallVec<[IpAddr; 8]> = self.peers.keys().copied().collect();
        for a in peers {
            self.export_one(a, pfx, out);
        }
        if !self.nh_users.is_empty() {
            self.decide_dependents(pfx, changes, out);
        }
    }

    /// The shared [`BgpVia`] for `hops` (next hops with their weights, sorted,
    /// one per address), `ebgp` and `backup`.
    fn via(&mut self, hops: &[(IpAddr, u32)], ebgp: bool, backup: &[IpAddr]) -> Arc<BgpVia> {
        let unweighted = hops.iter().all(|h| h.1 == 1);
        let same = |v: &BgpVia| {
            v.ebgp == ebgp
                && v.backup == backup
                && v.next_hops.len() == hops.len()
                && v.next_hops.iter().zip(hops).all(|(n, h)| *n == h.0)
                && if unweighted {
                    v.weights.is_empty()
                } else {
                    v.weights.iter().eq(hops.iter().map(|h| &h.1))
                }
        };
        if let Some(v) = self.last_via.as_ref().filter(|v| same(v)) {
            return v.clone();
        }
        let via = BgpVia {
            next_hops: hops.iter().map(|h| h.0).collect(),
            weights: if unweighted {
                Vec::new()
            } else {
                hops.iter().map(|h| h.1).collect()
            },
            ebgp,
            backup: backup.to_vec(),
        };
        let arc = match self.vias.get(&via) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(via);
                self.vias.insert(a.clone());
                a
            }
        };
        self.last_via = Some(arc.clone());
        arc
    }

    /// RFC 4271 9.1.2 order (lower is better); `med` includes the MED step,
    /// which only orders paths from the same neighbor AS.
    fn compare_with(&self, pfx: &IpNet, a: Source, b: Source, med: bool) -> Ordering {
        // Locally originated routes first.
        match (a, b) {
            (Source::Local, Source::Local) => return Ordering::Equal,
            (Source::Local, _) => return Ordering::Less,
            (_, Source::Local) => return Ordering::Greater,
            _ => {}
        }
        let (Some(x), Some(y)) = (self.attrs_of(a, pfx), self.attrs_of(b, pfx)) else {
            return Ordering::Equal;
        };
        let pa = |s: Source| match s {
            Source::Peer(addr) => self.peers.get(&addr),
            Source::Local => None,
        };
        let (Some(p), Some(q)) = (pa(a), pa(b)) else {
            return Ordering::Equal;
        };
        y.local_pref
            .unwrap_or(100)
            .cmp(&x.local_pref.unwrap_or(100))
            .then(x.as_path_len().cmp(&y.as_path_len()))
            .then(x.origin.cmp(&y.origin))
            .then_with(|| {
                if med && x.first_as() == y.first_as() {
                    x.med.unwrap_or(0).cmp(&y.med.unwrap_or(0))
                } else {
                    Ordering::Equal
                }
            })
            .then(q.ebgp().cmp(&p.ebgp()))
            .then_with(|| {
                let id = |p: &Peer, at: &PathAttrs| {
                    at.originator_id
                        .map(u32::from)
                        .or_else(|| p.up.as_ref().map(|u| u32::from(u.peer_open.router_id)))
                        .unwrap_or(u32::MAX)
                };
                id(p, x).cmp(&id(q, y))
            })
            .then(p.cfg.address.cmp(&q.cfg.address))
    }

    /// Equal for multipath: same up to the IGP-cost step, and both eBGP or both iBGP.
    fn equal_cost(&self, pfx: &IpNet, a: Source, b: Source) -> bool {
        let (Source::Peer(pa), Source::Peer(pb)) = (a, b) else {
            return false;
        };
        let (Some(x), Some(y)) = (self.attrs_of(a, pfx), self.attrs_of(b, pfx)) else {
            return false;
        };
        let (Some(p), Some(q)) = (self.peers.get(&pa), self.peers.get(&pb)) else {
            return false;
        };
        let shared = |p: &Peer| matches!(p.role, Some((UpstreamRole::LoadShare, _)));
        if shared(p) && shared(q) {
            // Load-sharing upstreams share whatever their AS paths.
            return x.local_pref.unwrap_or(100) == y.local_pref.unwrap_or(100);
        }
        // As FRR without multipath-relax: paths through the same neighbor AS.
        x.local_pref.unwrap_or(100) == y.local_pref.unwrap_or(100)
            && x.first_as() == y.first_as()
            && x.as_path_len() == y.as_path_len()
            && x.origin == y.origin
            && x.med.unwrap_or(0) == y.med.unwrap_or(0)
            && p.ebgp() == q.ebgp()
    }

    /// Brings what `peer` was told about `pfx` in line with the Loc-RIB and its export policy.
    fn export_one(&mut self, peer: IpAddr, pfx: IpNet, out: &mut Outbox) {
        let local_as = self.config.as_ref().map(|c| c.asn).unwrap_or(0);
        if pfx.prefix_len() == 0 && self.default_to.contains(&peer) {
            return self.export_default(peer, pfx, local_as, out);
        }
        let best = self.loc.get(&pfx).and_then(|v| v.first().copied());
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(up) = &p.up else { return };
        let family = family_of(&pfx);
        let want: Option<PathAttrs> = (|| {
            if !up.families.contains(&family) {
                return None;
            }
            let best = best?;
            let attrs = self.attrs_of(best, &pfx)?;
            // Well-known communities (RFC 1997): NO_ADVERTISE goes to no peer,
            // NO_EXPORT and NO_EXPORT_SUBCONFED to no eBGP peer.
            const NO_EXPORT: u32 = 0xFFFF_FF01;
            const NO_ADVERTISE: u32 = 0xFFFF_FF02;
            const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;
            if attrs.communities.contains(&NO_ADVERTISE) {
                return None;
            }
            if p.ebgp()
                && (attrs.communities.contains(&NO_EXPORT)
                    || attrs.communities.contains(&NO_EXPORT_SUBCONFED))
            {
                return None;
            }
            if let Source::Peer(src) = best {
                if src == peer {
                    return None;
                }
                // No iBGP-to-iBGP (no route reflection).
                if !p.ebgp() && !self.peers.get(&src)?.ebgp() {
                    return None;
                }
            }
            let mut a = (**attrs).clone();
            if p.ebgp() {
                match a.as_path.first_mut() {
                    Some(AsSegment::Sequence(v)) => v.insert(0, local_as),
                    _ => a.as_path.insert(0, AsSegment::Sequence(vec![local_as])),
                }
                a.local_pref = None;
                // MED learned from another AS is not passed on (RFC 4271 5.1.4).
                if matches!(best, Source::Peer(_)) {
                    a.med = None;
                }
                a.next_hop = Some(self_address(up, family)?);
                a.link_local_next_hop = None;
            } else {
                a.local_pref = Some(a.local_pref.unwrap_or(100));
                if a.next_hop.is_none() || best == Source::Local || p.next_hop_self {
                    a.next_hop = Some(self_address(up, family)?);
                }
            }
            match (&p.export, p.ebgp()) {
                (Some(pol), _) => pol.apply(&pfx, &a, local_as),
                (None, true) => None,
                (None, false) => Some(a),
            }
        })();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        offer(p, &mut self.interned, peer, pfx, want, out);
    }

    /// Sends or withdraws the conditional default route to one neighbor.
    fn export_default(&mut self, peer: IpAddr, pfx: IpNet, local_as: u32, out: &mut Outbox) {
        let up = self.default_up;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let family = family_of(&pfx);
        let want = p
            .up
            .as_ref()
            .filter(|u| up && u.families.contains(&family))
            .and_then(|u| {
                let mut a = PathAttrs::new(Origin::Igp, Vec::new(), Some(self_address(u, family)?));
                if p.cfg.remote_as != local_as {
                    a.as_path = vec![AsSegment::Sequence(vec![local_as])];
                } else {
                    a.local_pref = Some(100);
                }
                Some(a)
            });
        offer(p, &mut self.interned, peer, pfx, want, out);
    }

    /// Re-evaluates whether an upstream is up; on a change, sends or withdraws
    /// the default route to the configured neighbors.
    fn refresh_default(&mut self, out: &mut Outbox) {
        // A peer in graceful restart still forwards: it counts as up.
        let up = self
            .peers
            .values()
            .any(|p| p.role.is_some() && (p.up.is_some() || p.stale_until.is_some()));
        if up == self.default_up {
            return;
        }
        self.default_up = up;
        tracing::info!(
            upstream_up = up,
            "conditional default route {}",
            if up { "originated" } else { "withdrawn" }
        );
        for peer in self.default_to.clone() {
            for d in DEFAULTS {
                self.export_one(peer, d.parse().expect("a valid prefix"), out);
            }
        }
    }

    async fn flush(&mut self, out: Outbox) {
        for (peer, changes) in out.changes {
            let Some(p) = self.peers.get(&peer) else {
                continue;
            };
            let mut withdraw: [Vec<IpNet>; 2] = Default::default();
            let mut announce: HashMap<(Arc<PathAttrs>, usize), Vec<IpNet>> = HashMap::default();
            for (prefix, attrs) in changes {
                let fam = usize::from(family_of(&prefix) == IPV6_UNICAST);
                match attrs {
                    None => withdraw[fam].push(prefix),
                    Some(a) => announce.entry((a, fam)).or_default().push(prefix),
                }
            }
            for prefixes in withdraw.into_iter().filter(|w| !w.is_empty()) {
                let _ = p.cmd.send(SessionCmd::Withdraw { prefixes });
            }
            for ((attrs, _), prefixes) in announce {
                let _ = p.cmd.send(SessionCmd::Announce { attrs, prefixes });
            }
        }
        for (peer, families) in out.eor {
            if let Some(p) = self.peers.get(&peer) {
                for f in families {
                    let _ = p.cmd.send(SessionCmd::EndOfRib(f));
                }
            }
        }
        // Attribute sets and vias nobody refers to any more are dropped from
        // their intern tables.
        sweep(&mut self.interned, &mut self.interned_after_sweep);
        sweep(&mut self.vias, &mut self.vias_after_sweep);
    }

    fn query(&self, q: BgpQuery) {
        match q {
            BgpQuery::Summary(tx) => {
                let _ = tx.send(self.summary());
            }
            BgpQuery::Routes(filter, tx) => {
                let _ = tx.send(self.routes(filter));
            }
        }
    }

    fn summary(&self) -> Option<Summary> {
        let c = self.config.as_ref()?;
        // Best paths per peer and family (IPv4, IPv6), in one pass.
        let mut installed: HashMap<IpAddr, [u64; 2]> = HashMap::default();
        for (pfx, sel) in &self.loc {
            if let Some(Source::Peer(a)) = sel.first() {
                installed.entry(*a).or_default()[usize::from(!pfx.addr().is_ipv4())] += 1;
            }
        }
        let count = |m: &ShardedMap<IpNet, Arc<PathAttrs>>| -> [u64; 2] {
            let v4 = m.keys().filter(|p| p.addr().is_ipv4()).count() as u64;
            [v4, m.len() as u64 - v4]
        };
        Some(Summary {
            asn: c.asn,
            router_id: c.router_id.to_string(),
            loc_rib_prefixes: self.loc.len() as u64,
            neighbors: self
                .peers
                .values()
                .map(|p| NeighborSummary {
                    address: p.cfg.address,
                    remote_as: p.cfg.remote_as,
                    description: p.description.clone(),
                    state: format!("{:?}", p.state),
                    state_for_s: p.since.elapsed().as_secs(),
                    router_id: p.up.as_ref().map(|u| u.peer_open.router_id.to_string()),
                    hold_time_s: p.up.as_ref().map(|u| u.hold),
                    families: p
                        .up
                        .as_ref()
                        .map(|u| u.families.iter().map(|f| family_name(*f)).collect())
                        .unwrap_or_default(),
                    received: p.received,
                    accepted: p.adj_in.len() as u64,
                    advertised: p.adj_out.len() as u64,
                    import_policy: p.import.as_ref().map(|x| x.name.clone()),
                    export_policy: p.export.as_ref().map(|x| x.name.clone()),
                    last_error: p.last_error.clone(),
                    graceful_restart: {
                        let cap = p.up.as_ref().and_then(|u| {
                            u.peer_open.capabilities.iter().find_map(|c| match c {
                                Capability::GracefulRestart {
                                    restarting,
                                    notification,
                                    restart_time,
                                    families,
                                } => Some((*restarting, *notification, *restart_time, families)),
                                _ => None,
                            })
                        });
                        let stale = p.stale.len() as u64;
                        match cap {
                            Some((restarted, notification, time, families)) => {
                                Some(GracefulRestartInfo {
                                    restart_time_s: Some(time),
                                    preserved: families
                                        .iter()
                                        .filter(|(_, f)| *f)
                                        .map(|(fam, _)| family_name(*fam))
                                        .collect(),
                                    peer_restarted: restarted,
                                    notification,
                                    stale_routes: stale,
                                })
                            }
                            None if stale > 0 => Some(GracefulRestartInfo {
                                restart_time_s: None,
                                preserved: Vec::new(),
                                peer_restarted: false,
                                notification: false,
                                stale_routes: stale,
                            }),
                            None => None,
                        }
                    },
                    prefixes: {
                        let (rx, tx) = (count(&p.adj_in), count(&p.adj_out));
                        let best = installed.get(&p.cfg.address).copied().unwrap_or_default();
                        p.up.as_ref()
                            .map(|u| {
                                u.families
                                    .iter()
                                    .filter_map(|f| {
                                        let i = match *f {
                                            IPV4_UNICAST => 0,
                                            IPV6_UNICAST => 1,
                                            _ => return None,
                                        };
                                        Some(FamilyPrefixes {
                                            family: family_name(*f),
                                            received: rx[i],
                                            sent: tx[i],
                                            installed: best[i],
                                        })
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    },
                })
                .collect(),
        })
    }

    fn routes(&self, filter: Option<IpNet>) -> Vec<RouteRow> {
        let mut prefixes: Vec<IpNet> = self
            .peers
            .values()
            .flat_map(|p| p.adj_in.keys())
            .chain(self.local.keys())
            .filter(|p| filter.is_none_or(|f| f.contains(*p)))
            .copied()
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let mut rows = Vec::new();
        for pfx in prefixes {
            let sel: &[Source] = self.loc.get(&pfx).map_or(&[], |s| s);
            let mut srcs: Vec<Source> = Vec::new();
            if self.local.contains_key(&pfx) {
                srcs.push(Source::Local);
            }
            srcs.extend(
                self.peers
                    .iter()
                    .filter(|(_, p)| p.adj_in.contains_key(&pfx))
                    .map(|(a, _)| Source::Peer(*a)),
            );
            for s in srcs {
                let Some(a) = self.attrs_of(s, &pfx) else {
                    continue;
                };
                rows.push(RouteRow {
                    prefix: pfx.to_string(),
                    best: sel.first() == Some(&s),
                    multipath: sel.contains(&s),
                    next_hop: match s {
                        Source::Local => "0.0.0.0".into(),
                        Source::Peer(p) => a.next_hop.unwrap_or(p).to_string(),
                    },
                    peer: match s {
                        Source::Local => "local".into(),
                        Source::Peer(p) => p.to_string(),
                    },
                    local_pref: a.local_pref.unwrap_or(100),
                    med: a.med,
                    as_path: as_path_string(&a.as_path),
                    origin: match a.origin {
                        Origin::Igp => "i",
                        Origin::Egp => "e",
                        Origin::Incomplete => "?",
                    }
                    .into(),
                });
            }
        }
        rows
    }
}

/// Brings the peer's Adj-RIB-Out entry for `pfx` to `want` (announce these
/// attributes, or withdraw), queuing a message only when it changes.
fn offer(
    p: &mut Peer,
    interned: &mut HashSet<Arc<PathAttrs>>,
    peer: IpAddr,
    pfx: IpNet,
    want: Option<PathAttrs>,
    out: &mut Outbox,
) {
    match want {
        Some(a) => {
            if p.adj_out.get(&pfx).is_some_and(|old| **old == a) {
                return;
            }
            let arc = intern(interned, a);
            p.adj_out.insert(pfx, arc.clone());
            out.announce(peer, pfx, arc);
        }
        None => {
            if p.adj_out.remove(&pfx).is_some() {
                out.withdraw(peer, pfx);
            }
        }
    }
}

/// Stores one ADD-PATH path and makes the peer's best path the one it offers.
fn set_path(p: &mut Peer, prefix: IpNet, id: u32, attrs: Arc<PathAttrs>) {
    let v = p.paths.entry(prefix).or_default();
    match v.iter_mut().find(|(i, _)| *i == id) {
        Some(slot) => slot.1 = attrs,
        None => v.push((id, attrs)),
    }
    elect_path(p, prefix);
}

/// Removes one ADD-PATH path; returns whether the peer had it.
fn remove_path(p: &mut Peer, prefix: IpNet, id: u32) -> bool {
    let Some(v) = p.paths.get_mut(&prefix) else {
        return false;
    };
    let before = v.len();
    v.retain(|(i, _)| *i != id);
    let removed = v.len() != before;
    elect_path(p, prefix);
    removed
}

/// The peer's best path for `prefix` among its ADD-PATH paths (RFC 4271 order
/// up to MED; then the lowest path id) becomes its entry in Adj-RIB-In.
fn elect_path(p: &mut Peer, prefix: IpNet) {
    let best = p.paths.get(&prefix).and_then(|v| {
        v.iter()
            .min_by(|(i, x), (j, y)| {
                y.local_pref
                    .unwrap_or(100)
                    .cmp(&x.local_pref.unwrap_or(100))
                    .then(x.as_path_len().cmp(&y.as_path_len()))
                    .then(x.origin.cmp(&y.origin))
                    .then(x.med.unwrap_or(0).cmp(&y.med.unwrap_or(0)))
                    .then(i.cmp(j))
            })
            .map(|(_, a)| a.clone())
    });
    match best {
        Some(a) => {
            p.adj_in.insert(prefix, a);
        }
        None => {
            p.paths.remove(&prefix);
            p.adj_in.remove(&prefix);
        }
    }
}

/// The default routes of both families.
const DEFAULTS: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// A P4Runtime target forwards on while nosd restarts; the in-process
/// dataplane stops with it.
fn forwarding_survives(config: &Config) -> bool {
    matches!(
        config.dataplane.backend,
        nos_core::config::BackendKind::P4Runtime
    )
}

/// Drops the values of an intern table that only the table holds. A sweep
/// costs the table's size, so it runs only once the table has doubled since
/// the last one (`after` is its size then).
fn sweep<T: Eq + std::hash::Hash>(set: &mut HashSet<Arc<T>>, after: &mut usize) {
    if set.len() > 1024 && set.len() >= 2 * *after {
        set.retain(|v| Arc::strong_count(v) > 1);
        *after = set.len().max(512);
    }
}

fn intern(set: &mut HashSet<Arc<PathAttrs>>, a: PathAttrs) -> Arc<PathAttrs> {
    if let Some(x) = set.get(&a) {
        return x.clone();
    }
    let arc = Arc::new(a);
    set.insert(arc.clone());
    arc
}

fn family_of(p: &IpNet) -> Family {
    match p {
        IpNet::V4(_) => IPV4_UNICAST,
        IpNet::V6(_) => IPV6_UNICAST,
    }
}

fn family_name(f: Family) -> String {
    match f {
        IPV4_UNICAST => "ipv4-unicast".into(),
        IPV6_UNICAST => "ipv6-unicast".into(),
        (a, s) => format!("afi {a} safi {s}"),
    }
}

/// Our address on the session, as a next hop for `family`.
fn self_address(up: &UpInfo, family: Family) -> Option<IpAddr> {
    match (up.local_address, family) {
        (a @ IpAddr::V4(_), IPV4_UNICAST) | (a @ IpAddr::V6(_), IPV6_UNICAST) => Some(a),
        (IpAddr::V6(v6), IPV4_UNICAST) => v6.to_ipv4_mapped().map(IpAddr::V4),
        _ => None,
    }
}

/// An AS path as FRR prints it: `64501 64502 {64503,64504}`.
pub fn as_path_string(path: &[AsSegment]) -> String {
    path.iter()
        .map(|s| {
            let join = |v: &[u32], sep: &str| {
                v.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(sep)
            };
            match s {
                AsSegment::Sequence(v) => join(v, " "),
                AsSegment::Set(v) => format!("{{{}}}", join(v, ",")),
                AsSegment::ConfedSequence(v) => format!("({})", join(v, " ")),
                AsSegment::ConfedSet(v) => format!("[{}]", join(v, ",")),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISP1: &str = "198.51.100.2";
    const ISP2: &str = "198.18.1.2";
    const CUSTOMER: &str = "192.0.2.2";

    fn config(roles: &str) -> Config {
        Config::from_yaml(&format!(
            r#"
ports: [{{ name: eth1 }}, {{ name: eth2 }}, {{ name: eth3 }}]
interfaces:
  - {{ name: eth1, port: eth1, ipv4: [192.0.2.1/24] }}
  - {{ name: eth2, port: eth2, ipv4: [198.51.100.1/24] }}
  - {{ name: eth3, port: eth3, ipv4: [198.18.1.1/24] }}
bgp:
  asn: 64500
  router_id: 192.0.2.1
  port: 0
  neighbors:
    - {{ address: {ISP1}, remote_as: 64501, import_policy: all, export_policy: all }}
    - {{ address: {ISP2}, remote_as: 64502, import_policy: all, export_policy: all }}
    - {{ address: {CUSTOMER}, remote_as: 64510, import_policy: all, export_policy: none }}
    - {{ address: 192.0.2.3, remote_as: 64500, next_hop_self: true }}
    - {{ address: 192.0.2.4, remote_as: 64500 }}
  policies:
    - {{ name: all, rules: [{{ action: accept }}] }}
    - {{ name: none, rules: [] }}
{roles}  default_route: {{ to: [{CUSTOMER}] }}
"#
        ))
        .unwrap()
    }

    fn open(asn: u32, id: [u8; 4]) -> Open {
        Open {
            version: 4,
            my_as: asn as u16,
            hold_time: 90,
            router_id: id.into(),
            capabilities: vec![
                Capability::MultiProtocol(IPV4_UNICAST),
                Capability::FourOctetAs(asn),
            ],
        }
    }

    fn up(peer: &str, asn: u32, local: &str) -> SessionEvent {
        SessionEvent::Established {
            peer: peer.parse().unwrap(),
            peer_open: open(asn, [10, 0, 0, asn as u8]),
            caps: SessionCaps::default(),
            families: vec![IPV4_UNICAST],
            local_address: local.parse().unwrap(),
        }
    }

    fn announce(peer: &str, path: Vec<u32>, prefix: &str) -> SessionEvent {
        let mut a = PathAttrs::new(
            Origin::Igp,
            vec![AsSegment::Sequence(path)],
            Some(peer.parse().unwrap()),
        );
        a.med = None;
        SessionEvent::Update {
            peer: peer.parse().unwrap(),
            update: Update {
                announced: vec![Nlri {
                    prefix: prefix.parse().unwrap(),
                    path_id: None,
                }],
                attrs: Some(Arc::new(a)),
                ..Default::default()
            },
        }
    }

    async fn speaker(roles: &str) -> (Speaker, mpsc::UnboundedReceiver<Vec<BgpRibChange>>) {
        // The default route needs an upstream; ISP2 serves when a test names none.
        let fallback =
            format!("  upstreams:\n    - {{ name: isp2, neighbors: [{ISP2}], role: backup }}\n");
        let roles = if roles.is_empty() {
            fallback.as_str()
        } else {
            roles
        };
        let (ev_tx, _ev_rx) = mpsc::channel(16);
        let (in_tx, _in_rx) = mpsc::channel(16);
        let (rib_tx, rib_rx) = mpsc::unbounded_channel();
        let mut s = Speaker::new();
        s.configure(&config(roles), &ev_tx, &in_tx, &rib_tx).await;
        (s, rib_rx)
    }

    fn last_set(changes: &[BgpRibChange], prefix: &str) -> Option<BgpRoute> {
        let p: IpNet = prefix.parse().unwrap();
        changes.iter().rev().find_map(|c| match c {
            BgpRibChange::Set(r) if r.prefix == p => Some(r.clone()),
            _ => None,
        })
    }

    fn default_sent_to(out: &Outbox, peer: &str) -> bool {
        let peer: IpAddr = peer.parse().unwrap();
        out.changes
            .get(&peer)
            .is_some_and(|m| m.iter().any(|(p, a)| p.prefix_len() == 0 && a.is_some()))
    }

    #[test]
    fn a_loc_rib_entry_stays_small() {
        // A full table holds a million: one path inline, a pointer otherwise.
        assert!(std::mem::size_of::<(IpNet, Selected)>() <= 48);
        let one: Selected = [Source::Peer(ISP1.parse().unwrap())].into_iter().collect();
        assert!(matches!(one, Selected::One(_)));
        let two: Selected = [Source::Local, Source::Peer(ISP1.parse().unwrap())]
            .into_iter()
            .collect();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0], Source::Local);
        assert!(Selected::new().is_empty());
    }

    #[tokio::test]
    async fn prefixes_going_the_same_way_share_one_via() {
        let (mut s, _rib) = speaker("").await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        for (peer, prefix) in [
            (ISP1, "203.0.113.0/24"),
            (ISP2, "198.19.0.0/16"),
            (ISP1, "192.0.2.128/25"),
        ] {
            s.event(announce(peer, vec![65000], prefix), &mut changes, &mut out);
        }
        let via = |changes: &[BgpRibChange], p: &str| last_set(changes, p).unwrap().via;
        let (a, b, c) = (
            via(&changes, "203.0.113.0/24"),
            via(&changes, "198.19.0.0/16"),
            via(&changes, "192.0.2.128/25"),
        );
        assert_eq!(a.next_hops, vec![ISP1.parse::<IpAddr>().unwrap()]);
        assert_eq!(b.next_hops, vec![ISP2.parse::<IpAddr>().unwrap()]);
        assert!(Arc::ptr_eq(&a, &c), "one shared via, not a copy per prefix");
        assert!(!Arc::ptr_eq(&a, &b));

        // One after the other through ISP1: with ISP2 as the backup, then
        // without one. The second is not the first's via.
        s.event(
            announce(ISP2, vec![64502, 65000], "198.18.128.0/17"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce(ISP1, vec![65000], "198.18.128.0/17"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce(ISP1, vec![65000], "198.18.64.0/18"),
            &mut changes,
            &mut out,
        );
        let (with, without) = (
            via(&changes, "198.18.128.0/17"),
            via(&changes, "198.18.64.0/18"),
        );
        assert_eq!(with.next_hops, without.next_hops);
        assert_eq!(with.backup, vec![ISP2.parse::<IpAddr>().unwrap()]);
        assert!(without.backup.is_empty());
        assert!(
            Arc::ptr_eq(&without, &a),
            "found again once the backup is gone"
        );
    }

    #[tokio::test]
    async fn the_primary_wins_over_a_shorter_backup_path_and_the_backup_is_precomputed() {
        let roles = format!(
            "  upstreams:\n    - {{ name: isp1, neighbors: [{ISP1}], role: primary }}\n    - {{ name: isp2, neighbors: [{ISP2}], role: backup }}\n"
        );
        let (mut s, _rib) = speaker(&roles).await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        s.event(
            announce(ISP1, vec![64501, 64999, 64998], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce(ISP2, vec![64502], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        let r = last_set(&changes, "203.0.113.0/24").unwrap();
        assert_eq!(
            r.next_hops,
            vec![ISP1.parse::<IpAddr>().unwrap()],
            "primary despite the longer AS path"
        );
        assert_eq!(
            r.backup,
            vec![ISP2.parse::<IpAddr>().unwrap()],
            "backup precomputed for PIC"
        );
    }

    #[tokio::test]
    async fn load_sharing_upstreams_share_by_weight() {
        let roles = format!(
            "  upstreams:\n    - {{ name: isp1, neighbors: [{ISP1}], role: load_share, weight: 3 }}\n    - {{ name: isp2, neighbors: [{ISP2}], role: load_share, weight: 1 }}\n"
        );
        let (mut s, _rib) = speaker(&roles).await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        s.event(
            announce(ISP1, vec![64501, 64999], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce(ISP2, vec![64502], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        let r = last_set(&changes, "203.0.113.0/24").unwrap();
        let isp1: IpAddr = ISP1.parse().unwrap();
        let isp2: IpAddr = ISP2.parse().unwrap();
        let mut got: Vec<(IpAddr, u32)> = r
            .next_hops
            .iter()
            .copied()
            .zip(r.weights.iter().copied())
            .collect();
        got.sort();
        let mut want = vec![(isp1, 3), (isp2, 1)];
        want.sort();
        assert_eq!(got, want);
    }

    fn announced_next_hop(out: &Outbox, peer: &str, prefix: &str) -> Option<IpAddr> {
        let peer: IpAddr = peer.parse().unwrap();
        let prefix: IpNet = prefix.parse().unwrap();
        out.changes.get(&peer)?.get(&prefix)?.as_ref()?.next_hop
    }

    #[tokio::test]
    async fn ibgp_next_hop_self_is_per_neighbor() {
        let roles =
            format!("  upstreams:\n    - {{ name: isp1, neighbors: [{ISP1}], role: primary }}\n");
        let (mut s, _rib) = speaker(&roles).await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up("192.0.2.3", 64500, "192.0.2.1"), &mut changes, &mut out);
        s.event(up("192.0.2.4", 64500, "192.0.2.1"), &mut changes, &mut out);
        let mut out = Outbox::default();
        s.event(
            announce(ISP1, vec![64501], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        assert_eq!(
            announced_next_hop(&out, "192.0.2.3", "203.0.113.0/24"),
            Some("192.0.2.1".parse().unwrap()),
            "next-hop-self"
        );
        assert_eq!(
            announced_next_hop(&out, "192.0.2.4", "203.0.113.0/24"),
            Some(ISP1.parse().unwrap()),
            "next hop kept"
        );
    }

    fn path(peer: &str, id: u32, next_hop: &str, prefix: &str, withdraw: bool) -> SessionEvent {
        let nlri = vec![Nlri {
            prefix: prefix.parse().unwrap(),
            path_id: Some(id),
        }];
        let update = if withdraw {
            Update {
                withdrawn: nlri,
                ..Default::default()
            }
        } else {
            Update {
                announced: nlri,
                attrs: Some(Arc::new(PathAttrs::new(
                    Origin::Igp,
                    vec![AsSegment::Sequence(vec![64501])],
                    Some(next_hop.parse().unwrap()),
                ))),
                ..Default::default()
            }
        };
        SessionEvent::Update {
            peer: peer.parse().unwrap(),
            update,
        }
    }

    #[tokio::test]
    async fn add_path_paths_are_kept_and_withdrawn_one_by_one() {
        let (mut s, _rib) = speaker("").await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(
            path(ISP1, 1, "198.51.100.7", "203.0.113.0/24", false),
            &mut changes,
            &mut out,
        );
        s.event(
            path(ISP1, 2, "198.51.100.8", "203.0.113.0/24", false),
            &mut changes,
            &mut out,
        );
        let r = last_set(&changes, "203.0.113.0/24").unwrap();
        assert_eq!(
            r.next_hops,
            vec!["198.51.100.7".parse::<IpAddr>().unwrap()],
            "lowest path id wins a tie"
        );
        assert_eq!(
            r.backup,
            vec!["198.51.100.8".parse::<IpAddr>().unwrap()],
            "the second path is the PIC backup"
        );
        // Withdrawing path 1 leaves path 2.
        changes.clear();
        s.event(
            path(ISP1, 1, "", "203.0.113.0/24", true),
            &mut changes,
            &mut out,
        );
        let r = last_set(&changes, "203.0.113.0/24").unwrap();
        assert_eq!(r.next_hops, vec!["198.51.100.8".parse::<IpAddr>().unwrap()]);
        // Withdrawing path 2 removes the prefix.
        changes.clear();
        s.event(
            path(ISP1, 2, "", "203.0.113.0/24", true),
            &mut changes,
            &mut out,
        );
        assert!(changes.iter().any(|c| matches!(c, BgpRibChange::Remove(p) if *p == "203.0.113.0/24".parse::<IpNet>().unwrap())));
    }

    #[tokio::test]
    async fn deterministic_med_picks_the_same_best_path_in_any_arrival_order() {
        // A: customer, AS path 100, MED 0, highest router id; B: ISP1, AS path
        // 100, MED 10, lowest id; C: ISP2, AS path 200, middle id. Plain
        // pairwise MED makes A<B, B<C, C<A; deterministic MED gives C.
        let with_med = |peer: &str, first: u32, med: u32| {
            let mut a = PathAttrs::new(
                Origin::Igp,
                vec![AsSegment::Sequence(vec![first])],
                Some(peer.parse().unwrap()),
            );
            a.med = Some(med);
            SessionEvent::Update {
                peer: peer.parse().unwrap(),
                update: Update {
                    announced: vec![Nlri {
                        prefix: "203.0.113.0/24".parse().unwrap(),
                        path_id: None,
                    }],
                    attrs: Some(Arc::new(a)),
                    ..Default::default()
                },
            }
        };
        let orders: [[usize; 3]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        // An upstream none of these three belongs to (roles would set local-pref).
        let roles = "  upstreams:\n    - { name: other, neighbors: [192.0.2.3], role: primary }\n";
        for order in orders {
            let (mut s, _rib) = speaker(roles).await;
            let (mut changes, mut out) = (Vec::new(), Outbox::default());
            s.event(up(CUSTOMER, 64510, "192.0.2.1"), &mut changes, &mut out);
            s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
            s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
            let paths = [
                with_med(CUSTOMER, 100, 0),
                with_med(ISP1, 100, 10),
                with_med(ISP2, 200, 0),
            ];
            let mut paths: Vec<Option<SessionEvent>> = paths.into_iter().map(Some).collect();
            for i in order {
                s.event(paths[i].take().unwrap(), &mut changes, &mut out);
            }
            let r = last_set(&changes, "203.0.113.0/24").unwrap();
            assert_eq!(
                r.next_hops,
                vec![ISP2.parse::<IpAddr>().unwrap()],
                "order {order:?}"
            );
        }
    }

    /// ISP1 keeps its routes before policy (soft reconfiguration inbound), ISP2
    /// does not; both start with an import policy that takes 100.64.1.0/24 only.
    fn soft_config(policy_takes_all: bool) -> Config {
        let rules = if policy_takes_all {
            "[{ action: accept }]"
        } else {
            "[{ match: { prefixes: [{ prefix: 100.64.1.0/24 }] }, action: accept }]"
        };
        Config::from_yaml(&format!(
            r#"
ports: [{{ name: eth2 }}, {{ name: eth3 }}]
interfaces:
  - {{ name: eth2, port: eth2, ipv4: [198.51.100.1/24] }}
  - {{ name: eth3, port: eth3, ipv4: [198.18.1.1/24] }}
bgp:
  asn: 64500
  router_id: 198.51.100.1
  port: 0
  neighbors:
    - {{ address: {ISP1}, remote_as: 64501, import_policy: in, soft_reconfiguration_inbound: true }}
    - {{ address: {ISP2}, remote_as: 64502, import_policy: in }}
  policies:
    - {{ name: in, rules: {rules} }}
"#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn soft_reconfiguration_inbound_applies_a_new_import_policy_to_kept_routes() {
        let (ev_tx, _ev_rx) = mpsc::channel(16);
        let (in_tx, _in_rx) = mpsc::channel(16);
        let (rib_tx, mut rib_rx) = mpsc::unbounded_channel();
        let mut s = Speaker::new();
        s.configure(&soft_config(false), &ev_tx, &in_tx, &rib_tx)
            .await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        for (peer, asn) in [(ISP1, 64501), (ISP2, 64502)] {
            for prefix in ["100.64.1.0/24", "100.64.2.0/24"] {
                s.event(announce(peer, vec![asn], prefix), &mut changes, &mut out);
            }
        }
        assert!(last_set(&changes, "100.64.1.0/24").is_some());
        assert!(
            last_set(&changes, "100.64.2.0/24").is_none(),
            "refused by policy"
        );
        let isp1: IpAddr = ISP1.parse().unwrap();
        let kept = s.peers[&isp1].adj_in_pre.as_ref().map(HashMap::len);
        assert_eq!(kept, Some(2), "both routes kept before policy");
        assert!(s.peers[&ISP2.parse::<IpAddr>().unwrap()]
            .adj_in_pre
            .is_none());
        let received = s.peers[&isp1].received;

        // The new policy takes everything: ISP1's kept route is accepted at once
        // (configure hands its Loc-RIB changes to the router channel); ISP2's
        // needs the route refresh the speaker asks it for.
        s.configure(&soft_config(true), &ev_tx, &in_tx, &rib_tx)
            .await;
        let mut replayed = Vec::new();
        while let Ok(batch) = rib_rx.try_recv() {
            replayed.extend(batch);
        }
        let r = last_set(&replayed, "100.64.2.0/24").expect("accepted from the kept routes");
        assert_eq!(r.next_hops, vec![isp1], "only ISP1 kept its routes");
        assert_eq!(
            s.peers[&isp1].received, received,
            "a replay is not counted as received"
        );
        assert_eq!(s.peers[&isp1].adj_in.len(), 2);
        assert_eq!(s.peers[&ISP2.parse::<IpAddr>().unwrap()].adj_in.len(), 1);

        // And back: the stricter policy drops the route it no longer takes,
        // from the kept copy again.
        s.configure(&soft_config(false), &ev_tx, &in_tx, &rib_tx)
            .await;
        let mut replayed = Vec::new();
        while let Ok(batch) = rib_rx.try_recv() {
            replayed.extend(batch);
        }
        assert!(
            replayed.iter().any(|c| matches!(c, BgpRibChange::Remove(p) if *p == "100.64.2.0/24".parse::<IpNet>().unwrap())),
            "{replayed:?}"
        );
        assert_eq!(s.peers[&isp1].adj_in.len(), 1);
        s.configure(&soft_config(true), &ev_tx, &in_tx, &rib_tx)
            .await;
        assert_eq!(s.peers[&isp1].adj_in.len(), 2);

        // A withdrawal reaches the kept copy too.
        s.event(
            SessionEvent::Update {
                peer: isp1,
                update: Update {
                    withdrawn: vec![Nlri {
                        prefix: "100.64.2.0/24".parse().unwrap(),
                        path_id: None,
                    }],
                    ..Default::default()
                },
            },
            &mut changes,
            &mut out,
        );
        assert_eq!(
            s.peers[&isp1].adj_in_pre.as_ref().map(HashMap::len),
            Some(1)
        );
    }

    #[tokio::test]
    async fn soft_reconfiguration_turned_on_mid_session_does_not_replay_a_partial_copy() {
        let (ev_tx, _ev_rx) = mpsc::channel(16);
        let (in_tx, _in_rx) = mpsc::channel(16);
        let (rib_tx, _rib_rx) = mpsc::unbounded_channel();
        let mut s = Speaker::new();
        // ISP2 (no soft reconfiguration) is up with both routes, one refused.
        s.configure(&soft_config(false), &ev_tx, &in_tx, &rib_tx)
            .await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        for prefix in ["100.64.1.0/24", "100.64.2.0/24"] {
            s.event(announce(ISP2, vec![64502], prefix), &mut changes, &mut out);
        }
        let isp2: IpAddr = ISP2.parse().unwrap();
        assert_eq!(s.peers[&isp2].adj_in.len(), 1);
        // Turned on for ISP2 now: its copy is empty and incomplete, so a new
        // policy must not be "applied" to it (that would change nothing and
        // leave the peer's routes as the old policy judged them).
        let mut cfg = soft_config(false);
        cfg.bgp.as_mut().unwrap().neighbors[1].soft_reconfiguration_inbound = true;
        s.configure(&cfg, &ev_tx, &in_tx, &rib_tx).await;
        assert!(s.peers[&isp2].adj_in_pre.is_some());
        assert!(!s.peers[&isp2].pre_complete);
        cfg.bgp.as_mut().unwrap().policies[0].rules.clear();
        s.configure(&cfg, &ev_tx, &in_tx, &rib_tx).await;
        assert_eq!(
            s.peers[&isp2].adj_in.len(),
            1,
            "no replay of a partial copy: the peer is asked to send its routes again"
        );
        // After the session comes up again the copy is complete.
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        assert!(s.peers[&isp2].pre_complete);
    }

    /// Upstream roles naming neither ISP (the default route needs one).
    const OTHER_UPSTREAM: &str =
        "  upstreams:\n    - { name: other, neighbors: [192.0.2.3], role: primary }\n";

    /// A speaker whose sessions with both ISPs are up, and empty change and
    /// outbox buffers (the Loc-RIB channel's receiver is kept alive).
    async fn two_isps_up() -> (
        Speaker,
        mpsc::UnboundedReceiver<Vec<BgpRibChange>>,
        Vec<BgpRibChange>,
        Outbox,
    ) {
        let (mut s, rib) = speaker(OTHER_UPSTREAM).await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        (s, rib, changes, out)
    }

    #[tokio::test]
    async fn a_path_with_an_unreachable_next_hop_is_left_out() {
        let (mut s, _rib, mut changes, mut out) = two_isps_up().await;
        // ISP1's path is better (shorter) but its next hop is on no subnet.
        let mut a = PathAttrs::new(
            Origin::Igp,
            vec![AsSegment::Sequence(vec![64501])],
            Some("10.9.9.9".parse().unwrap()),
        );
        a.med = None;
        s.event(
            SessionEvent::Update {
                peer: ISP1.parse().unwrap(),
                update: Update {
                    announced: vec![Nlri {
                        prefix: "203.0.113.0/24".parse().unwrap(),
                        path_id: None,
                    }],
                    attrs: Some(Arc::new(a)),
                    ..Default::default()
                },
            },
            &mut changes,
            &mut out,
        );
        assert!(
            last_set(&changes, "203.0.113.0/24").is_none(),
            "no route through an unreachable next hop"
        );
        s.event(
            announce(ISP2, vec![64502, 64999], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        let r = last_set(&changes, "203.0.113.0/24").unwrap();
        assert_eq!(r.next_hops, vec![ISP2.parse::<IpAddr>().unwrap()]);
    }

    /// An UPDATE from `peer` announcing `prefix` with next hop `nh`.
    fn announce_via(peer: &str, path: Vec<u32>, prefix: &str, nh: &str) -> SessionEvent {
        let mut a = PathAttrs::new(
            Origin::Igp,
            vec![AsSegment::Sequence(path)],
            Some(nh.parse().unwrap()),
        );
        a.med = None;
        SessionEvent::Update {
            peer: peer.parse().unwrap(),
            update: Update {
                announced: vec![Nlri {
                    prefix: prefix.parse().unwrap(),
                    path_id: None,
                }],
                attrs: Some(Arc::new(a)),
                ..Default::default()
            },
        }
    }

    fn withdrawal(peer: &str, prefix: &str) -> SessionEvent {
        SessionEvent::Update {
            peer: peer.parse().unwrap(),
            update: Update {
                withdrawn: vec![Nlri {
                    prefix: prefix.parse().unwrap(),
                    path_id: None,
                }],
                ..Default::default()
            },
        }
    }

    fn last_removed(changes: &[BgpRibChange], prefix: &str) -> bool {
        let p: IpNet = prefix.parse().unwrap();
        changes
            .iter()
            .rev()
            .find_map(|c| match c {
                BgpRibChange::Set(r) if r.prefix == p => Some(false),
                BgpRibChange::Remove(r) if *r == p => Some(true),
                _ => None,
            })
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn a_next_hop_reached_through_a_learned_route_follows_that_route() {
        let (mut s, _rib, mut changes, mut out) = two_isps_up().await;
        // ISP2's path has a next hop on no subnet, which nothing reaches yet.
        s.event(
            announce_via(ISP2, vec![64502], "10.1.0.0/16", "198.19.3.9"),
            &mut changes,
            &mut out,
        );
        assert!(last_set(&changes, "10.1.0.0/16").is_none());
        // ISP1 announces a route covering that next hop: the path is now
        // reached through it, without ISP2 sending anything again.
        s.event(
            announce(ISP1, vec![64501], "198.19.3.0/24"),
            &mut changes,
            &mut out,
        );
        let r = last_set(&changes, "10.1.0.0/16").expect("the path is selected");
        assert_eq!(r.next_hops, vec!["198.19.3.9".parse::<IpAddr>().unwrap()]);
        // The covering route is withdrawn: so is the path that needed it.
        s.event(withdrawal(ISP1, "198.19.3.0/24"), &mut changes, &mut out);
        assert!(last_removed(&changes, "198.19.3.0/24"));
        assert!(last_removed(&changes, "10.1.0.0/16"));
        // Once the path has gone, nothing is tracked for it any more.
        s.event(withdrawal(ISP2, "10.1.0.0/16"), &mut changes, &mut out);
        assert!(s.nh_users.is_empty() && s.nh_of.is_empty());
    }

    const PREFIXES: [&str; 6] = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.1.0/24",
        "172.16.0.0/16",
        "172.16.5.0/24",
        "1.2.0.0/16",
    ];
    /// Next hops under the prefixes above (and one under none); index 0 is
    /// the announcing peer itself, on a connected subnet.
    const VIA: [&str; 5] = ["", "10.1.1.1", "10.0.0.5", "172.16.5.5", "10.9.0.1"];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever routes resolving through each other come and go, every
        /// route the speaker hands the router resolves there: nosd never
        /// selects (or advertises) a route it cannot forward.
        #[test]
        fn the_router_resolves_every_route_the_speaker_selects(
            events in proptest::collection::vec((0usize..2, 0usize..6, 0usize..5, proptest::bool::ANY), 1..30)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let failure = rt.block_on(async move {
                let (mut s, _rib, mut changes, mut out) = two_isps_up().await;
                let mut router = crate::router::Router::new();
                router.set_config(config(OTHER_UPSTREAM));
                router.recompute();
                for (peer, p, via, announce) in events {
                    let (peer, asn) = [(ISP1, 64501), (ISP2, 64502)][peer];
                    let nh = if via == 0 { peer } else { VIA[via] };
                    let e = if announce {
                        announce_via(peer, vec![asn], PREFIXES[p], nh)
                    } else {
                        withdrawal(peer, PREFIXES[p])
                    };
                    s.event(e, &mut changes, &mut out);
                    let (_, full) = router.bgp(std::mem::take(&mut changes));
                    if full {
                        router.recompute();
                    }
                    for entry in router.rib() {
                        if entry.next_hops.iter().any(|n| n.interface == "unreachable") {
                            return Some(format!("{} selected, the router cannot reach it", entry.prefix));
                        }
                    }
                    if s.cascade.is_some() {
                        return Some("a cascade was left open".to_string());
                    }
                }
                None
            });
            proptest::prop_assert!(failure.is_none(), "{:?}", failure);
        }
    }

    /// A cascade where a dependent is decided before the route it resolves
    /// through has failed over: it is decided again once that route has.
    #[tokio::test]
    async fn a_dependent_follows_its_covering_route_through_a_failover() {
        let (mut s, _rib, mut changes, mut out) = two_isps_up().await;
        s.event(
            announce(ISP1, vec![64501], "10.0.0.0/8"),
            &mut changes,
            &mut out,
        );
        // 10.1.0.0/16: best through 10.9.0.1 (under 10.0.0.0/8), second on a subnet.
        s.event(
            announce_via(ISP1, vec![64501], "10.1.0.0/16", "10.9.0.1"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce(ISP2, vec![64502, 64999], "10.1.0.0/16"),
            &mut changes,
            &mut out,
        );
        // 1.2.0.0/16 (decided before 10.1.0.0/16: it sorts first) resolves
        // through 10.1.0.0/16.
        s.event(
            announce_via(ISP2, vec![64502], "1.2.0.0/16", "10.1.0.5"),
            &mut changes,
            &mut out,
        );
        assert!(last_set(&changes, "1.2.0.0/16").is_some());
        s.event(withdrawal(ISP1, "10.0.0.0/8"), &mut changes, &mut out);
        let e = last_set(&changes, "10.1.0.0/16").expect("10.1.0.0/16 stays");
        assert_eq!(
            e.next_hops,
            vec![ISP2.parse::<IpAddr>().unwrap()],
            "failed over"
        );
        assert!(
            !last_removed(&changes, "1.2.0.0/16"),
            "the dependent is back through the failed-over route"
        );
        assert!(s.loc.contains_key(&"1.2.0.0/16".parse().unwrap()));
    }

    /// Two routes that each resolve through the other once both are in the
    /// Loc-RIB: deciding them ends, and neither stays selected unresolvable.
    #[tokio::test]
    async fn routes_resolving_through_each_other_end_unselected() {
        let (mut s, _rib, mut changes, mut out) = two_isps_up().await;
        s.event(
            announce(ISP1, vec![64501], "10.1.0.0/16"),
            &mut changes,
            &mut out,
        );
        // A: 10.0.0.0/8 via 10.1.1.1 (through 10.1.0.0/16 at first).
        s.event(
            announce_via(ISP2, vec![64502], "10.0.0.0/8", "10.1.1.1"),
            &mut changes,
            &mut out,
        );
        assert!(last_set(&changes, "10.0.0.0/8").is_some());
        // B: 10.1.1.0/24 via 10.0.0.5, which only A covers; and B is now
        // the longest match for A's next hop: A through B through A.
        s.event(
            announce_via(ISP2, vec![64502], "10.1.1.0/24", "10.0.0.5"),
            &mut changes,
            &mut out,
        );
        for p in ["10.0.0.0/8", "10.1.1.0/24"] {
            let p: IpNet = p.parse().unwrap();
            assert!(
                !s.selected_unresolvable(&p),
                "{p} selected though unresolvable"
            );
            assert_eq!(
                s.loc.contains_key(&p),
                !last_removed(&changes, &p.to_string())
                    && last_set(&changes, &p.to_string()).is_some(),
                "{p}: the router was told what the Loc-RIB holds"
            );
        }
        assert!(s.cascade.is_none());
    }

    #[tokio::test]
    async fn a_route_is_not_reached_through_itself_or_a_loop() {
        let (mut s, _rib, mut changes, mut out) = two_isps_up().await;
        // Its next hop is under its own prefix and under a shorter route:
        // the route itself would be the longest match.
        s.event(
            announce(ISP1, vec![64501], "10.0.0.0/8"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce_via(ISP2, vec![64502], "10.5.0.0/16", "10.5.0.1"),
            &mut changes,
            &mut out,
        );
        assert!(last_set(&changes, "10.5.0.0/16").is_none());
        // A longer route covering the next hop reaches it.
        s.event(
            announce(ISP1, vec![64501], "10.5.0.0/24"),
            &mut changes,
            &mut out,
        );
        assert!(last_set(&changes, "10.5.0.0/16").is_some());
        // Two routes reached only through each other are both left out, and
        // deciding them terminates.
        s.event(
            announce_via(ISP2, vec![64502], "172.16.1.0/24", "172.16.2.1"),
            &mut changes,
            &mut out,
        );
        s.event(
            announce_via(ISP2, vec![64502], "172.16.2.0/24", "172.16.1.1"),
            &mut changes,
            &mut out,
        );
        assert!(last_set(&changes, "172.16.1.0/24").is_none());
        assert!(last_set(&changes, "172.16.2.0/24").is_none());
    }

    /// An OPEN that can restart gracefully (not restarting now).
    fn gr_up(peer: &str, asn: u32, local: &str) -> SessionEvent {
        let mut e = up(peer, asn, local);
        if let SessionEvent::Established { peer_open, .. } = &mut e {
            peer_open.capabilities.push(Capability::GracefulRestart {
                restarting: false,
                notification: true,
                restart_time: 120,
                families: vec![(IPV4_UNICAST, true)],
            });
        }
        e
    }

    fn end_of_rib(peer: &str) -> SessionEvent {
        SessionEvent::Update {
            peer: peer.parse().unwrap(),
            update: Update {
                end_of_rib: Some(IPV4_UNICAST),
                ..Default::default()
            },
        }
    }

    /// A speaker after a restart with forwarding preserved, with ISP1 and
    /// CUSTOMER as neighbors and 192.0.2.0/24 as its own network.
    async fn restarted_speaker() -> Speaker {
        let cfg = Config::from_yaml(&format!(
            r#"
ports: [{{ name: eth1 }}, {{ name: eth2 }}]
interfaces:
  - {{ name: eth1, port: eth1, ipv4: [192.0.2.1/24] }}
  - {{ name: eth2, port: eth2, ipv4: [198.51.100.1/24] }}
bgp:
  asn: 64500
  router_id: 192.0.2.1
  port: 0
  networks: [192.0.2.0/24]
  neighbors:
    - {{ address: {ISP1}, remote_as: 64501, import_policy: all, export_policy: all }}
    - {{ address: {CUSTOMER}, remote_as: 64510, import_policy: all, export_policy: all }}
  policies:
    - {{ name: all, rules: [{{ action: accept }}] }}
  upstreams:
    - {{ name: isp1, neighbors: [{ISP1}], role: primary }}
  default_route: {{ to: [{CUSTOMER}] }}
"#
        ))
        .unwrap();
        let (ev_tx, _ev_rx) = mpsc::channel(16);
        let (in_tx, _in_rx) = mpsc::channel(16);
        let (rib_tx, _rib_rx) = mpsc::unbounded_channel();
        let mut s = Speaker::new().restarted();
        s.defer_selection(true);
        s.configure(&cfg, &ev_tx, &in_tx, &rib_tx).await;
        s
    }

    fn sent(out: &Outbox, peer: &str, prefix: &str) -> bool {
        let (peer, prefix): (IpAddr, IpNet) = (peer.parse().unwrap(), prefix.parse().unwrap());
        out.changes
            .get(&peer)
            .is_some_and(|m| m.get(&prefix).is_some_and(|a| a.is_some()))
    }

    #[tokio::test]
    async fn a_restarted_speaker_selects_routes_after_every_peers_end_of_rib() {
        let mut s = restarted_speaker().await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(gr_up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(gr_up(CUSTOMER, 64510, "192.0.2.1"), &mut changes, &mut out);
        s.event(
            announce(ISP1, vec![64501], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        s.event(end_of_rib(ISP1), &mut changes, &mut out);
        s.end_deferral_if_done(&mut changes, &mut out);
        assert!(
            last_set(&changes, "203.0.113.0/24").is_none(),
            "no selection before CUSTOMER's End-of-RIB"
        );
        assert!(!sent(&out, CUSTOMER, "203.0.113.0/24"));
        assert!(!sent(&out, ISP1, "192.0.2.0/24"), "nor our own network");
        assert!(!default_sent_to(&out, CUSTOMER), "nor the default route");
        assert!(out.eor.is_empty(), "no End-of-RIB of ours yet");

        s.event(end_of_rib(CUSTOMER), &mut changes, &mut out);
        s.end_deferral_if_done(&mut changes, &mut out);
        assert!(s.deferral.is_none());
        let r = last_set(&changes, "203.0.113.0/24").expect("selected");
        assert_eq!(r.next_hops, vec![ISP1.parse::<IpAddr>().unwrap()]);
        assert!(sent(&out, CUSTOMER, "203.0.113.0/24"), "table exported");
        assert!(
            default_sent_to(&out, CUSTOMER),
            "the conditional default route goes before our End-of-RIB"
        );
        assert!(sent(&out, ISP1, "192.0.2.0/24"));
        assert!(sent(&out, CUSTOMER, "192.0.2.0/24"));
        for peer in [ISP1, CUSTOMER] {
            assert_eq!(
                out.eor.get(&peer.parse::<IpAddr>().unwrap()),
                Some(&vec![IPV4_UNICAST]),
                "End-of-RIB to {peer}, after the table"
            );
        }
    }

    #[tokio::test]
    async fn deferral_skips_peers_without_graceful_restart_and_ends_at_its_deadline() {
        // CUSTOMER cannot restart gracefully: its End-of-RIB is not awaited.
        let mut s = restarted_speaker().await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(gr_up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(CUSTOMER, 64510, "192.0.2.1"), &mut changes, &mut out);
        s.event(
            announce(ISP1, vec![64501], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        s.end_deferral_if_done(&mut changes, &mut out);
        assert!(s.deferral.is_some(), "ISP1's End-of-RIB is awaited");
        s.event(end_of_rib(ISP1), &mut changes, &mut out);
        s.end_deferral_if_done(&mut changes, &mut out);
        assert!(last_set(&changes, "203.0.113.0/24").is_some());

        // CUSTOMER never comes up: selection waits until the deadline.
        let mut s = restarted_speaker().await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(gr_up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(
            announce(ISP1, vec![64501], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        s.event(end_of_rib(ISP1), &mut changes, &mut out);
        s.end_deferral_if_done(&mut changes, &mut out);
        assert!(last_set(&changes, "203.0.113.0/24").is_none());
        if let Some(d) = s.deferral.as_mut() {
            d.until = Some(Instant::now());
        }
        s.end_deferral_if_done(&mut changes, &mut out);
        assert!(s.deferral.is_none());
        assert!(last_set(&changes, "203.0.113.0/24").is_some());
        assert!(out.eor.contains_key(&ISP1.parse::<IpAddr>().unwrap()));
    }

    #[tokio::test]
    async fn the_summary_shows_graceful_restart_and_the_stale_routes() {
        let (mut s, _rib) = speaker("").await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(gr_up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        s.event(up(ISP2, 64502, "198.18.1.1"), &mut changes, &mut out);
        s.event(
            announce(ISP1, vec![64501], "203.0.113.0/24"),
            &mut changes,
            &mut out,
        );
        let of = |s: &Speaker, peer: &str| {
            let peer: IpAddr = peer.parse().unwrap();
            s.summary()
                .unwrap()
                .neighbors
                .into_iter()
                .find(|n| n.address == peer)
                .unwrap()
                .graceful_restart
        };
        assert_eq!(
            of(&s, ISP1),
            Some(GracefulRestartInfo {
                restart_time_s: Some(120),
                preserved: vec![family_name(IPV4_UNICAST)],
                peer_restarted: false,
                notification: true,
                stale_routes: 0,
            })
        );
        assert_eq!(of(&s, ISP2), None, "no graceful restart capability");
        // ISP1's connection dies: its route is kept, stale.
        s.event(
            SessionEvent::Down {
                peer: ISP1.parse().unwrap(),
                reason: "connection closed".into(),
                graceful: true,
            },
            &mut changes,
            &mut out,
        );
        let gr = of(&s, ISP1).expect("stale routes shown");
        assert_eq!((gr.restart_time_s, gr.stale_routes), (None, 1));
    }

    #[tokio::test]
    async fn without_preserved_forwarding_a_restart_defers_nothing() {
        let mut s = Speaker::new().restarted();
        s.defer_selection(false);
        assert!(s.deferral.is_none());
        let mut s = Speaker::new();
        s.defer_selection(true);
        assert!(s.deferral.is_none(), "a clean start defers nothing");
    }

    #[tokio::test]
    async fn the_default_route_follows_the_upstreams() {
        let roles =
            format!("  upstreams:\n    - {{ name: isp1, neighbors: [{ISP1}], role: primary }}\n");
        let (mut s, _rib) = speaker(&roles).await;
        let (mut changes, mut out) = (Vec::new(), Outbox::default());
        s.event(up(CUSTOMER, 64510, "192.0.2.1"), &mut changes, &mut out);
        assert!(
            !default_sent_to(&out, CUSTOMER),
            "no upstream yet: no default"
        );
        let mut out = Outbox::default();
        s.event(up(ISP1, 64501, "198.51.100.1"), &mut changes, &mut out);
        assert!(default_sent_to(&out, CUSTOMER), "upstream up: default sent");
        let mut out = Outbox::default();
        s.event(
            SessionEvent::Down {
                peer: ISP1.parse().unwrap(),
                reason: "test".into(),
                graceful: false,
            },
            &mut changes,
            &mut out,
        );
        let customer: IpAddr = CUSTOMER.parse().unwrap();
        assert!(
            out.changes
                .get(&customer)
                .is_some_and(|m| m.iter().any(|(p, a)| p.prefix_len() == 0 && a.is_none())),
            "last upstream down: default withdrawn"
        );
    }
}
