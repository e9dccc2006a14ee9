//! The daemon's side of the gNMI server: a [`gnmi_server::Backend`] on the
//! daemon's tasks, and the server's startup.
//!
//! - The configuration and its commit number come from the config task, which
//!   publishes every commit it makes (from nosctl, a rollback or gNMI) as a
//!   [`Head`]; reading it needs no round trip.
//! - A gNMI Set is committed by the config task (`ConfigCmd::CommitAt`), so
//!   it lands in the same history as `nosctl config commit`, in order with
//!   every other commit, and is refused when another commit landed since the
//!   Set read the configuration.
//! - Interface state comes from the driver thread: a port is operationally up
//!   when it is installed in the forwarding target and administratively up;
//!   its counters are the target's.
//! - BGP state (session state, prefix counts) comes from the speaker's
//!   summary, its Loc-RIB from the speaker's route rows (`show bgp routes`,
//!   read only for requests that reach `bgp/rib`); the installed forwarding
//!   table (openconfig-aft) from the driver's installed model, read only
//!   for requests that reach it.
//! - Neighbors (openconfig-if-ip `neighbors`) come from the host stack, as
//!   `show neighbors` does.
//! - Change notifications ([`gnmi_server::Backend::changes`]), which drive
//!   ON_CHANGE subscriptions: every commit the config task publishes, every
//!   port the driver installs or removes, and a counter refresh every
//!   [`COUNTER_REFRESH`].
//! - Security ([`start`]): TLS by default, with the certificate and key given
//!   on the command line or a self-signed one generated in the state
//!   directory at first start; an optional client CA for mutual TLS; every
//!   RPC authenticated against `management.users` of the newest commit (a
//!   commit that changes the users takes effect at once); `--insecure` for
//!   labs.
//! - gNOI System (Time, Ping, Reboot...): a reboot order goes to the daemon's
//!   main task, which stops the daemon and, for COLD and WARM, starts it
//!   again (see `nosd run --help`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gnmi_server::gnoi::{RebootHook, RebootOrder, SystemService};
use gnmi_server::security::{Authenticator, ClientCa, ServerIdentity, User, Users, WithoutUsers};
use gnmi_server::{
    AftNextHop, Afts, BgpFamily, BgpNeighborState, BgpOrigin, BgpPrefixes, BgpRoute, BgpState,
    CommitError, Generation, GnmiService, InterfaceCounters, InterfaceState, LocRib, Neighbor,
    NeighborOrigin, NeighborState, OperStatus, SessionState, State,
};
use nos_core::config::{Config, DEFAULT_VRF};
use nos_core::driver::DriverHandle;
use nos_core::model::{ForwardingState, RifKind, RouteAction, VrfId};
use routing::bgp::speaker::{BgpQuery, RouteRow, Summary};
use routing::host::{HostQuery, NeighborRow};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::daemon::ConfigCmd;

/// How long open gNMI streams may take to finish once the daemon stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How often counters are announced as changed, so that ON_CHANGE
/// subscribers to counters see them move (SAMPLE subscribers read them at
/// their own interval).
pub const COUNTER_REFRESH: Duration = Duration::from_secs(1);

/// The newest commit as the config task publishes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub config: Config,
    /// `None` before the first commit.
    pub commit: Option<u64>,
}

/// [`gnmi_server::Backend`] on the running daemon.
#[derive(Debug)]
pub struct DaemonBackend {
    config: mpsc::Sender<ConfigCmd>,
    head: watch::Receiver<Head>,
    driver: DriverHandle,
    /// The BGP speaker's queries (session state, prefix counts, Loc-RIB).
    bgp: mpsc::Sender<BgpQuery>,
    /// The host stack's queries (ARP / neighbor-discovery entries).
    host: mpsc::Sender<HostQuery>,
    boot_time_ns: u64,
    changes: watch::Receiver<Generation>,
}

impl DaemonBackend {
    /// A backend committing through `config` (the config task's queue),
    /// reading the head from `head` and state from `driver`, and announcing
    /// changes from `head`, `port_events` (bumped by the driver's port
    /// events) and a timer until `shutdown`. The boot time is taken now.
    pub(crate) fn start(
        config: mpsc::Sender<ConfigCmd>,
        head: watch::Receiver<Head>,
        driver: DriverHandle,
        bgp: mpsc::Sender<BgpQuery>,
        host: mpsc::Sender<HostQuery>,
        port_events: watch::Receiver<u64>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let boot_time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let (tx, changes) = watch::channel(Generation {
            commit: head.borrow().commit,
            state: 0,
        });
        tokio::spawn(announce(tx, head.clone(), port_events, shutdown));
        Self {
            config,
            head,
            driver,
            bgp,
            host,
            boot_time_ns,
            changes,
        }
    }
}

/// Turns commits, port events and the counter timer into change
/// notifications.
async fn announce(
    tx: watch::Sender<Generation>,
    mut head: watch::Receiver<Head>,
    mut ports: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut counters = tokio::time::interval(COUNTER_REFRESH);
    counters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut port_events = true;
    loop {
        tokio::select! {
            r = head.changed() => {
                if r.is_err() {
                    break;
                }
                let commit = head.borrow_and_update().commit;
                tx.send_modify(|g| g.commit = commit);
            }
            r = ports.changed(), if port_events => {
                if r.is_err() {
                    port_events = false;
                    continue;
                }
                ports.borrow_and_update();
                tx.send_modify(|g| g.state = g.state.wrapping_add(1));
            }
            _ = counters.tick() => tx.send_modify(|g| g.state = g.state.wrapping_add(1)),
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
}

const GONE: &str = "the daemon is shutting down";

#[tonic::async_trait]
impl gnmi_server::Backend for DaemonBackend {
    async fn config(&self) -> (Config, Option<u64>) {
        let head = self.head.borrow();
        (head.config.clone(), head.commit)
    }

    async fn commit(
        &self,
        config: Config,
        message: String,
        expected_head: Option<u64>,
    ) -> Result<u64, CommitError> {
        let (reply, answer) = oneshot::channel();
        let cmd = ConfigCmd::CommitAt {
            config: Box::new(config),
            message,
            expected_head,
            reply,
        };
        if self.config.send(cmd).await.is_err() {
            return Err(CommitError::Failed(GONE.into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(CommitError::Failed(GONE.into())))
    }

    async fn state(&self) -> State {
        // Which ports are configured and administratively up.
        let ports: Vec<(String, bool)> = self
            .head
            .borrow()
            .config
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.enabled))
            .collect();
        let (tx, rx) = oneshot::channel();
        let queued = self.driver.query(move |installed, backend| {
            let counters: HashMap<_, _> = backend
                .port_counters()
                .into_iter()
                .map(|c| (c.port, c))
                .collect();
            let ids: HashMap<&str, _> = installed
                .ports()
                .values()
                .map(|p| (p.name.as_str(), p.id))
                .collect();
            let interfaces: BTreeMap<String, InterfaceState> = ports
                .into_iter()
                .map(|(name, enabled)| {
                    let id = ids.get(name.as_str()).copied();
                    let oper_status = match (id, enabled) {
                        (Some(_), true) => OperStatus::Up,
                        (Some(_), false) | (None, false) => OperStatus::Down,
                        // Configured and enabled but not in the target: its
                        // Linux interface is missing (the driver retries).
                        (None, true) => OperStatus::NotPresent,
                    };
                    let counters = id.and_then(|id| counters.get(&id)).map(|c| {
                        InterfaceCounters {
                            in_octets: c.rx_bytes,
                            in_pkts: c.rx_packets,
                            in_errors: c.rx_errors,
                            in_discards: c.rx_drops,
                            out_octets: c.tx_bytes,
                            out_pkts: c.tx_packets,
                            // The x86 dataplane counts no transmit errors
                            // apart from its drops.
                            out_errors: 0,
                            out_discards: c.tx_drops,
                        }
                    });
                    (
                        name,
                        InterfaceState {
                            oper_status,
                            counters,
                        },
                    )
                })
                .collect();
            let _ = tx.send(interfaces);
        });
        let interfaces = if queued {
            rx.await.unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let bgp = if self.head.borrow().config.bgp.is_some() {
            let (tx, rx) = oneshot::channel();
            match self.bgp.send(BgpQuery::Summary(tx)).await {
                Ok(()) => rx.await.ok().flatten().map(|s| bgp_state(&s)),
                Err(_) => None,
            }
        } else {
            None
        };
        let (tx, rx) = oneshot::channel();
        let neighbors = match self.host.send(HostQuery::Neighbors(tx)).await {
            Ok(()) => neighbors(rx.await.unwrap_or_default()),
            Err(_) => BTreeMap::new(),
        };
        State {
            interfaces,
            boot_time_ns: Some(self.boot_time_ns),
            bgp,
            neighbors,
        }
    }

    async fn loc_rib(&self) -> LocRib {
        if self.head.borrow().config.bgp.is_none() {
            return LocRib::new();
        }
        let (tx, rx) = oneshot::channel();
        match self.bgp.send(BgpQuery::Routes(None, tx)).await {
            Ok(()) => loc_rib(rx.await.unwrap_or_default()),
            Err(_) => LocRib::new(),
        }
    }

    async fn afts(&self) -> Afts {
        let (tx, rx) = oneshot::channel();
        if self.driver.query(move |installed, _| {
            let _ = tx.send(afts(installed));
        }) {
            rx.await.unwrap_or_default()
        } else {
            Afts::new()
        }
    }

    fn changes(&self) -> watch::Receiver<Generation> {
        self.changes.clone()
    }
}

/// The host stack's neighbor rows (what `nosctl show neighbors` shows) by
/// router interface and address. Failed resolutions are left out: they
/// are no neighbor, and openconfig-if-ip has no state for them.
fn neighbors(rows: Vec<NeighborRow>) -> BTreeMap<String, BTreeMap<IpAddr, Neighbor>> {
    let mut out: BTreeMap<String, BTreeMap<IpAddr, Neighbor>> = BTreeMap::new();
    for r in rows {
        let state = match r.state {
            "incomplete" => NeighborState::Incomplete,
            "reachable" => NeighborState::Reachable,
            "probe" => NeighborState::Probe,
            "stale" => NeighborState::Stale,
            "delay" => NeighborState::Delay,
            _ => continue,
        };
        out.entry(r.interface).or_default().insert(
            r.address,
            Neighbor {
                link_layer_address: r.mac.map(|m| m.to_string()),
                // The host stack learns every entry; none is configured.
                origin: NeighborOrigin::Dynamic,
                state,
            },
        );
    }
    out
}

/// The speaker's route rows (what `nosctl show bgp routes` shows) as the
/// Loc-RIB: the paths it selected (best or equal-cost).
fn loc_rib(rows: Vec<RouteRow>) -> LocRib {
    rows.into_iter()
        .filter(|r| r.multipath)
        .filter_map(|r| {
            let prefix = r.prefix.parse().ok()?;
            let peer: Option<IpAddr> = match r.peer.as_str() {
                "local" => None,
                p => Some(p.parse().ok()?),
            };
            Some(BgpRoute {
                prefix,
                peer,
                path_id: 0,
                origin: match r.origin.as_str() {
                    "i" => BgpOrigin::Igp,
                    "e" => BgpOrigin::Egp,
                    _ => BgpOrigin::Incomplete,
                },
                next_hop: peer.and(r.next_hop.parse().ok()),
                local_pref: Some(r.local_pref),
                med: r.med,
            })
        })
        .collect()
}

/// The speaker's summary as the gNMI server's BGP state.
fn bgp_state(s: &Summary) -> BgpState {
    let neighbors = s
        .neighbors
        .iter()
        .map(|n| {
            let session_state = match n.state.as_str() {
                "Connect" => SessionState::Connect,
                "Active" => SessionState::Active,
                "OpenSent" => SessionState::OpenSent,
                "OpenConfirm" => SessionState::OpenConfirm,
                "Established" => SessionState::Established,
                _ => SessionState::Idle,
            };
            let families = n
                .prefixes
                .iter()
                .filter_map(|p| {
                    let f = match p.family.as_str() {
                        "ipv4-unicast" => BgpFamily::Ipv4Unicast,
                        "ipv6-unicast" => BgpFamily::Ipv6Unicast,
                        _ => return None,
                    };
                    Some((
                        f,
                        BgpPrefixes {
                            received: p.received,
                            sent: p.sent,
                            installed: p.installed,
                        },
                    ))
                })
                .collect();
            (
                n.address,
                BgpNeighborState {
                    session_state,
                    negotiated_hold_time: n.hold_time_s,
                    families,
                },
            )
        })
        .collect();
    BgpState {
        total_prefixes: s.loc_rib_prefixes,
        neighbors,
    }
}

/// The id given to the one-member next-hop group of a route that forwards
/// to a single next hop (the model has no group for it): above every
/// group id of the model, which are 32-bit.
fn single_hop_group(next_hop: u32) -> u64 {
    (1u64 << 32) | u64::from(next_hop)
}

/// The installed forwarding table by VRF name, as `nosctl show fib` sees
/// it: routes with their next-hop groups (the model's weighted groups, and
/// one per single next hop), next hops with their resolved MAC address and
/// the port and subinterface they leave through.
fn afts(s: &ForwardingState) -> Afts {
    let mut out = Afts::new();
    let vrf_name = |id: VrfId| -> String {
        match s.vrfs().get(&id) {
            Some(v) => v.name.clone(),
            None if id == VrfId::DEFAULT => DEFAULT_VRF.to_owned(),
            None => id.to_string(),
        }
    };
    let next_hop = |id: nos_core::model::NextHopId| -> AftNextHop {
        let Some(n) = s.next_hops().get(&id) else {
            return AftNextHop::default();
        };
        let rif = s.rifs().get(&n.rif);
        let interface = rif.and_then(|r| {
            let (port, sub) = match r.kind {
                RifKind::Port { port } => (port, 0),
                RifKind::SubPort { port, vlan } => (port, u32::from(vlan)),
                RifKind::Vlan { .. } => return None,
            };
            Some((s.ports().get(&port)?.name.clone(), sub))
        });
        AftNextHop {
            ip_address: Some(n.ip),
            mac_address: s
                .neighbors()
                .get(&(n.rif, n.ip))
                .map(|nb| nb.mac.to_string()),
            interface,
        }
    };
    for (k, a) in s.routes() {
        let aft = out.entry(vrf_name(k.vrf)).or_default();
        let group = match a {
            RouteAction::NextHop(id) => {
                let g = single_hop_group(id.0);
                aft.next_hop_groups
                    .entry(g)
                    .or_default()
                    .insert(u64::from(id.0), 1);
                aft.next_hops
                    .entry(u64::from(id.0))
                    .or_insert_with(|| next_hop(*id));
                Some(g)
            }
            RouteAction::Group(g) => {
                let gid = u64::from(g.0);
                if let Some(group) = s.groups().get(g) {
                    let members = aft.next_hop_groups.entry(gid).or_default();
                    for m in &group.members {
                        members.insert(u64::from(m.next_hop.0), u64::from(m.weight));
                        aft.next_hops
                            .entry(u64::from(m.next_hop.0))
                            .or_insert_with(|| next_hop(m.next_hop));
                    }
                }
                Some(gid)
            }
            RouteAction::Drop | RouteAction::ToCpu => None,
        };
        aft.entries.insert(k.prefix, group);
    }
    out
}

/// How the management server protects its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain-text gRPC (`--insecure`, for labs): no TLS, and no
    /// authentication either while no users are configured.
    Insecure,
    /// TLS (the default) with a certificate and key from files, or the
    /// self-signed one kept in the state directory; with `client_ca`,
    /// clients must present a certificate it signed (mutual TLS).
    Tls {
        cert_key: Option<(PathBuf, PathBuf)>,
        client_ca: Option<PathBuf>,
    },
}

/// Where and how the gNMI/gNOI server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GnmiOptions {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// The users of the newest commit, followed until `shutdown`.
fn users_of(
    mut head: watch::Receiver<Head>,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Users> {
    let users = |h: &Head| -> Users {
        Arc::new(
            h.config
                .management
                .users
                .iter()
                .map(|u| User {
                    name: u.name.clone(),
                    password_hash: u.password_hash.clone(),
                })
                .collect(),
        )
    };
    let (tx, rx) = watch::channel(users(&head.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = head.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let new = users(&head.borrow_and_update());
                    tx.send_if_modified(|old| {
                        if *old == new {
                            false
                        } else {
                            tracing::info!(users = new.len(), "management users changed");
                            *old = new;
                            true
                        }
                    });
                }
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    });
    rx
}

/// Starts the gNMI and gNOI server; it stops when `shutdown` turns true
/// (streams still open a second later are cut). A gNOI reboot is handed
/// to `reboot`. Fails when the address cannot be bound or TLS cannot be
/// set up.
pub async fn start(
    opts: &GnmiOptions,
    state_dir: &Path,
    backend: Arc<dyn gnmi_server::Backend>,
    head: watch::Receiver<Head>,
    reboot: mpsc::UnboundedSender<RebootOrder>,
    reboots: u32,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = opts.addr;
    let hostname = head.borrow().config.system.hostname.clone();
    let users = users_of(head, shutdown.clone());
    let mut server = Server::builder();
    let without_users = match &opts.transport {
        Transport::Insecure => {
            tracing::warn!(
                address = %addr,
                "gNMI/gNOI server is INSECURE (--insecure): plain-text gRPC without TLS; \
                 passwords cross the network in clear, and while no users are configured \
                 anyone who can reach this address can read and change the configuration \
                 and reboot the router"
            );
            WithoutUsers::Allow
        }
        Transport::Tls {
            cert_key,
            client_ca,
        } => {
            let identity = match cert_key {
                Some((cert, key)) => ServerIdentity::load(cert, key)
                    .context("cannot load the gNMI TLS certificate")?,
                None => {
                    let mut names = vec![hostname];
                    if !addr.ip().is_unspecified() {
                        names.push(addr.ip().to_string());
                    }
                    ServerIdentity::load_or_generate(state_dir, &names)
                        .context("cannot set up the gNMI TLS certificate")?
                }
            };
            if identity.generated {
                tracing::warn!(
                    cert = %identity.cert_path.display(),
                    sha256 = %identity.fingerprint,
                    "generated a self-signed gNMI TLS certificate; give clients this file \
                     (or check the fingerprint) to verify the server"
                );
            } else {
                tracing::info!(
                    cert = %identity.cert_path.display(),
                    sha256 = %identity.fingerprint,
                    "gNMI TLS certificate"
                );
            }
            let ca = match client_ca {
                Some(path) => {
                    let ca = ClientCa::load(path).context("cannot load the gNMI client CA")?;
                    tracing::info!(
                        ca = %ca.path.display(),
                        sha256 = %ca.fingerprint,
                        "gNMI clients must present a certificate signed by this CA (mutual TLS)"
                    );
                    Some(ca)
                }
                None => None,
            };
            server = server
                .tls_config(identity.tls_config(ca.as_ref()))
                .context("cannot set up TLS for gNMI")?;
            WithoutUsers::Refuse
        }
    };
    if users.borrow().is_empty() && without_users == WithoutUsers::Refuse {
        tracing::warn!(
            "no management users are configured (management.users): every gNMI/gNOI request \
             will be refused until one is committed; make a password hash with \
             `nosctl hash-password`"
        );
    }
    let auth = Arc::new(Authenticator::new(users, without_users));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for gNMI on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %local, tls = matches!(opts.transport, Transport::Tls { .. }), "gNMI/gNOI server listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let gnmi = GnmiService::new(backend)
        .with_authenticator(auth.clone())
        .into_server();
    let hook: RebootHook = Arc::new(move |order| {
        let _ = reboot.send(order);
    });
    let system = SystemService::new(hook)
        .with_authenticator(auth)
        .with_reboot_count(reboots)
        .into_server();
    let mut stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        let serve = server
            .add_service(gnmi)
            .add_service(system)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        tokio::pin!(serve);
        let cut = async {
            let _ = shutdown.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = &mut serve => match r {
                Ok(()) => tracing::info!("gNMI server stopped"),
                Err(e) => tracing::error!("gNMI server failed: {e}"),
            },
            () = cut => tracing::info!("gNMI server stopped; open streams were cut"),
        }
    }))
}
