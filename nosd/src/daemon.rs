//! Wiring of the daemon: which task owns what, and the channels between them.
//!
//! ```text
//!  nosctl ──unix socket──► mgmt ──► config task (owns the sled store) ──watch──► router task
//!                            │                                                   │ deltas
//!                            ├──► router task (RIB)                              ▼
//!                            ├──► host stack (neighbors) ◄──punts── x86 dataplane ◄── driver thread
//!                            └──► driver thread (installed model, counters)        (owns the backend)
//! ```

use crate::api::*;
use anyhow::{bail, Context};
use dataplane::{IoOptions, PortBinder, PortBinding, X86Backend};
use nos_core::backend::{PacketIn, PacketInSink, PacketSender};
use nos_core::config::{BackendKind, Config};
use nos_core::driver::{Driver, DriverEvent, DriverHandle};
use nos_core::store::{ConfigStore, StoreError};
use nos_core::{Backend, ForwardingState, ObjectKey, Port, RifKind, RouteAction};
use routing::bgp::speaker::{BgpQuery, Speaker};
use routing::host::{HostQuery, HostStack, HostTimers, HostView};
use routing::router::{Router, RouterQuery};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

/// How `nosd run` was started.
#[derive(Clone, Debug)]
pub struct Options {
    /// A configuration file committed at start when it differs from the newest commit.
    pub config: Option<PathBuf>,
    /// Where the sled config store lives.
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// The TUN device holding the router's addresses for its own traffic (BGP,
    /// pings to the router); `None` to answer pings in the host stack and run no
    /// kernel stack.
    pub host_interface: Option<String>,
    /// Where and how the gNMI/gNOI server listens; `None` leaves it off.
    pub gnmi: Option<crate::gnmi::GnmiOptions>,
    /// How many times the daemon was restarted by a gNOI reboot before this
    /// start (gNOI RebootStatus reports it).
    pub reboots: u32,
}

/// How the daemon ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// On SIGTERM or SIGINT, or a gNOI HALT or POWERDOWN reboot.
    Stopped,
    /// A gNOI COLD or WARM reboot: the caller starts the daemon again.
    Restart,
}

/// Reads and validates a configuration file, with every error's field path.
pub fn load_config_file(path: &Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Config::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a valid configuration:\n{e}", path.display()))
}

pub(crate) enum ConfigCmd {
    Commit {
        yaml: String,
        message: Option<String>,
        reply: oneshot::Sender<Response>,
    },
    Rollback {
        commit: u64,
        message: Option<String>,
        reply: oneshot::Sender<Response>,
    },
    Read(Request, oneshot::Sender<Response>),
    /// A commit computed from commit `expected_head` (a gNMI Set): refused
    /// with `Conflict` when another commit landed since.
    CommitAt {
        config: Box<Config>,
        message: String,
        expected_head: Option<u64>,
        reply: oneshot::Sender<Result<u64, gnmi_server::CommitError>>,
    },
}

/// Runs the daemon until SIGTERM or SIGINT, or a gNOI reboot.
pub async fn run(opts: Options) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create state directory {}", opts.state_dir.display()))?;
    // Present while nosd runs: found at start, the nosd before this one
    // stopped without closing its BGP sessions (graceful restart).
    let running = opts.state_dir.join("running");
    let restarted = running.exists();
    std::fs::write(&running, std::process::id().to_string())
        .with_context(|| format!("cannot write {}", running.display()))?;
    let db = opts.state_dir.join("config.db");
    let store = ConfigStore::open(&db)
        .with_context(|| format!("cannot open config store {}", db.display()))?;
    let head = store.head()?;
    let (config, head) = match (&opts.config, head) {
        (Some(path), head) => {
            let file = load_config_file(path)?;
            match head {
                Some(h) if h.config == file => {
                    tracing::info!(
                        commit = h.info.number,
                        "configuration file matches the newest commit"
                    );
                    (file, Some(h.info.number))
                }
                _ => {
                    let info = store.commit(
                        &file,
                        Some(&format!("loaded from {} at start", path.display())),
                    )?;
                    tracing::info!(commit = info.number, file = %path.display(), "configuration file committed");
                    (file, Some(info.number))
                }
            }
        }
        (None, Some(h)) => {
            tracing::info!(commit = h.info.number, "resuming from the newest commit");
            (h.config, Some(h.info.number))
        }
        (None, None) => {
            tracing::warn!(
                "no configuration file and an empty store: starting with an empty configuration"
            );
            (Config::default(), None)
        }
    };
    tracing::info!(hostname = %config.system.hostname, backend = ?config.dataplane.backend, "starting");

    // How the dataplane's workers and ports run, fixed at start.
    let io = IoOptions {
        workers: config.dataplane.worker_count(),
        eal_args: config.dataplane.eal_args().to_vec(),
        start_dpdk: config.uses_dpdk() && dataplane::DPDK_BUILT,
    };
    if config.uses_dpdk() && !dataplane::DPDK_BUILT {
        tracing::error!(
            "ports are bound to DPDK devices (dataplane.dpdk.ports), but this nosd was built \
             without DPDK support; those ports will be refused. Rebuild with \
             `--features dataplane/dpdk` (libdpdk-dev installed) or remove them from dataplane.dpdk.ports"
        );
    }

    // The newest commit with its number, for the gNMI server.
    let (head_tx, head_rx) = watch::channel(crate::gnmi::Head {
        config: config.clone(),
        commit: head,
    });
    let (config_tx, config_rx) = watch::channel(config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // The dataplane: ports resolve to Linux interfaces through the newest config.
    let (punt_tx, punt_rx) = mpsc::channel::<PacketIn>(4096);
    let punt: PacketInSink = Arc::new(move |p| {
        if punt_tx.try_send(p).is_err() {
            tracing::trace!("punt queue full: packet to the control plane dropped");
        }
    });
    let initial = config_rx.borrow().clone();
    let mut p4_session = None;
    let (backend, sender): (Box<dyn Backend>, PacketSender) = match initial.dataplane.backend {
        BackendKind::P4Runtime => {
            // Packet-ins to the host stack, its packets out by packet-out.
            let backend = crate::p4rt::start(&initial, config_rx.clone(), punt)?;
            if let Some(t) = &initial.dataplane.p4runtime {
                p4_session = Some((t.address.clone(), backend.monitor()));
            }
            let Some(sender) = backend.packet_sender() else {
                bail!("the P4Runtime backend started without packet I/O");
            };
            (Box::new(backend), sender)
        }
        BackendKind::X86 => {
            let cfg = config_rx.clone();
            let binder: PortBinder = Arc::new(move |port: &Port| {
                let c = cfg.borrow();
                let p = c.ports.iter().find(|p| p.name == port.name)?;
                Some(match c.dpdk_device(&p.name) {
                    Some(device) => PortBinding::Dpdk(device),
                    None => PortBinding::AfPacket(p.linux_name().to_string()),
                })
            });
            let workers = io.workers;
            let backend = X86Backend::start_with(binder, punt, io)
                .context("cannot start the x86 dataplane")?;
            tracing::info!(
                workers,
                dpdk = dataplane::DPDK_BUILT,
                "x86 dataplane started"
            );
            let Some(sender) = backend.packet_sender() else {
                bail!("the x86 dataplane started without packet I/O");
            };
            (Box::new(backend), sender)
        }
    };

    let (installed_tx, installed_rx) = mpsc::unbounded_channel();
    // Counts ports entering and leaving the target (their oper-status, for gNMI).
    let (port_events_tx, port_events_rx) = watch::channel(0u64);
    // Changes the target refused (and the driver retries), for `show fib`;
    // only the driver thread touches it (events and queries run there).
    let refused: Refused = Arc::default();
    let refused_events = refused.clone();
    let driver = Driver::spawn(backend, Duration::from_secs(5), move |e| {
        match &e {
            DriverEvent::Failed { key, error } => {
                lock(&refused_events).insert(*key, error.to_string());
            }
            DriverEvent::Installed(k) | DriverEvent::Removed(k) => {
                lock(&refused_events).remove(k);
            }
        }
        if let DriverEvent::Installed(ObjectKey::Port(_))
        | DriverEvent::Removed(ObjectKey::Port(_)) = e
        {
            port_events_tx.send_modify(|n| *n = n.wrapping_add(1));
        }
        if let DriverEvent::Installed(ObjectKey::Neighbor(rif, ip)) = e {
            let _ = installed_tx.send((rif, ip));
        }
    })?;
    let dh = driver.handle();
    let p4_watch = p4_session.map(|(address, monitor)| {
        tokio::spawn(crate::p4rt::watch_session(
            address,
            monitor,
            dh.clone(),
            shutdown_rx.clone(),
        ))
    });

    let (fib_tx, mut fib_rx) = mpsc::unbounded_channel();
    let fwd = dh.clone();
    tokio::spawn(async move {
        while let Some(d) = fib_rx.recv().await {
            if !fwd.apply(d) {
                break;
            }
        }
    });
    let (view_tx, view_rx) = watch::channel(HostView::default());
    let (neigh_tx, neigh_rx) = mpsc::channel(1024);
    let (router_q_tx, router_q_rx) = mpsc::channel(16);
    let (host_q_tx, host_q_rx) = mpsc::channel(16);
    let (bgp_rib_tx, bgp_rib_rx) = mpsc::unbounded_channel();
    let (bgp_q_tx, bgp_q_rx) = mpsc::channel(16);
    let speaker = if restarted {
        tracing::info!(
            "the previous nosd stopped without closing its sessions: BGP sessions say we restarted (graceful restart)"
        );
        Speaker::new().restarted()
    } else {
        Speaker::new()
    };
    let speaker =
        tokio::spawn(speaker.run(config_rx.clone(), bgp_rib_tx, bgp_q_rx, shutdown_rx.clone()));
    let router = tokio::spawn(Router::new().run(
        config_rx.clone(),
        neigh_rx,
        bgp_rib_rx,
        router_q_rx,
        fib_tx,
        view_tx,
        shutdown_rx.clone(),
    ));
    let kernel = match &opts.host_interface {
        Some(name) => {
            let k = crate::hostif::start(name, config_rx.clone(), shutdown_rx.clone())
                .with_context(|| format!("cannot set up the host interface {name}"))?;
            tracing::info!(device = %name, "host interface ready: the router's own traffic uses the kernel stack");
            Some(k)
        }
        None => None,
    };
    let host = tokio::spawn(HostStack::new(sender, neigh_tx, HostTimers::default()).run(
        punt_rx,
        kernel,
        view_rx,
        installed_rx,
        host_q_rx,
        shutdown_rx.clone(),
    ));

    let (cfg_cmd_tx, cfg_cmd_rx) = mpsc::channel(16);
    let config_task = tokio::spawn(config_task(
        store,
        config_tx,
        head_tx,
        cfg_cmd_rx,
        shutdown_rx.clone(),
    ));
    let (reboot_tx, mut reboot_rx) = mpsc::unbounded_channel::<gnmi_server::gnoi::RebootOrder>();
    let gnmi = match &opts.gnmi {
        Some(g) => {
            let backend = crate::gnmi::DaemonBackend::start(
                cfg_cmd_tx.clone(),
                head_rx.clone(),
                dh.clone(),
                bgp_q_tx.clone(),
                host_q_tx.clone(),
                port_events_rx,
                shutdown_rx.clone(),
            );
            Some(
                crate::gnmi::start(
                    g,
                    &opts.state_dir,
                    Arc::new(backend),
                    head_rx,
                    reboot_tx,
                    opts.reboots,
                    shutdown_rx.clone(),
                )
                .await?,
            )
        }
        None => None,
    };

    if let Some(dir) = opts.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&opts.socket);
    let listener = UnixListener::bind(&opts.socket)
        .with_context(|| format!("cannot listen on {}", opts.socket.display()))?;
    tracing::info!(socket = %opts.socket.display(), "management socket ready");
    let ctx = Arc::new(Mgmt {
        config: cfg_cmd_tx,
        router: router_q_tx,
        host: host_q_tx,
        bgp: bgp_q_tx,
        driver: dh,
        config_rx,
        refused,
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut connections = tokio::task::JoinSet::new();
    let mut exit = Exit::Stopped;
    loop {
        tokio::select! {
            Some(order) = reboot_rx.recv() => {
                use gnmi_server::gnoi::RebootKind;
                exit = match order.kind {
                    RebootKind::Restart => Exit::Restart,
                    RebootKind::Halt => Exit::Stopped,
                };
                tracing::warn!(method = order.method.as_str_name(), message = %order.message, "gNOI reboot: shutting down");
                break;
            }
            c = listener.accept() => match c {
                Ok((stream, _)) => { connections.spawn(serve(ctx.clone(), stream)); }
                Err(e) => tracing::warn!("management accept failed: {e}"),
            },
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
        }
    }
    let _ = shutdown_tx.send(true);
    // Open management connections must not hold the daemon up.
    connections.abort_all();
    drop(ctx);
    let _ = std::fs::remove_file(&opts.socket);
    let _ = tokio::join!(router, host, config_task, speaker);
    if let Some(w) = p4_watch {
        let _ = w.await;
    }
    if let Some(g) = gnmi {
        let _ = g.await;
    }
    tokio::task::spawn_blocking(move || driver.stop()).await?;
    let _ = std::fs::remove_file(&running);
    tracing::info!("stopped");
    Ok(exit)
}

/// The owner of the config store: every commit and rollback goes through here, in order.
async fn config_task(
    store: ConfigStore,
    tx: watch::Sender<Config>,
    head_tx: watch::Sender<crate::gnmi::Head>,
    mut rx: mpsc::Receiver<ConfigCmd>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Every commit below publishes the new head, changed or not.
    let publish = |config: &Config, number: u64| {
        head_tx.send_replace(crate::gnmi::Head {
            config: config.clone(),
            commit: Some(number),
        });
    };
    loop {
        let cmd = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => break },
            _ = shutdown.changed() => break,
        };
        let st = store.clone();
        match cmd {
            ConfigCmd::Commit {
                yaml,
                message,
                reply,
            } => {
                let config = match Config::from_yaml(&yaml) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = reply.send(Response::Error {
                            message: "the configuration is invalid; nothing was committed".into(),
                            errors: e.0,
                        });
                        continue;
                    }
                };
                let changed = *tx.borrow() != config;
                let c2 = config.clone();
                let r =
                    tokio::task::spawn_blocking(move || st.commit(&c2, message.as_deref())).await;
                let resp = match r {
                    Ok(Ok(info)) => {
                        tracing::info!(commit = info.number, "configuration committed");
                        publish(&config, info.number);
                        tx.send_replace(config);
                        Response::ok(&Committed {
                            commit: info,
                            changed,
                        })
                    }
                    Ok(Err(e)) => store_error(e),
                    Err(e) => Response::error(format!("commit task failed: {e}")),
                };
                let _ = reply.send(resp);
            }
            ConfigCmd::Rollback {
                commit,
                message,
                reply,
            } => {
                let r = tokio::task::spawn_blocking(move || {
                    let info = st.rollback(commit, message.as_deref())?;
                    let c = st.get(info.number)?;
                    Ok::<_, StoreError>((info, c.config))
                })
                .await;
                let resp = match r {
                    Ok(Ok((info, config))) => {
                        tracing::info!(commit = info.number, to = commit, "rolled back");
                        let changed = *tx.borrow() != config;
                        publish(&config, info.number);
                        tx.send_replace(config);
                        Response::ok(&Committed {
                            commit: info,
                            changed,
                        })
                    }
                    Ok(Err(e)) => store_error(e),
                    Err(e) => Response::error(format!("rollback task failed: {e}")),
                };
                let _ = reply.send(resp);
            }
            ConfigCmd::Read(req, reply) => {
                let r = tokio::task::spawn_blocking(move || read_store(&st, req)).await;
                let _ = reply
                    .send(r.unwrap_or_else(|e| Response::error(format!("store read failed: {e}"))));
            }
            ConfigCmd::CommitAt {
                config,
                message,
                expected_head,
                reply,
            } => {
                use gnmi_server::CommitError;
                let head = head_tx.borrow().commit;
                if head != expected_head {
                    let _ = reply.send(Err(CommitError::Conflict { head }));
                    continue;
                }
                let config = *config;
                let c2 = config.clone();
                let r = tokio::task::spawn_blocking(move || st.commit(&c2, Some(&message))).await;
                let result = match r {
                    Ok(Ok(info)) => {
                        tracing::info!(commit = info.number, "configuration committed (gNMI)");
                        publish(&config, info.number);
                        tx.send_replace(config);
                        Ok(info.number)
                    }
                    Ok(Err(StoreError::Invalid(errors))) => Err(CommitError::Invalid(errors)),
                    Ok(Err(e)) => Err(CommitError::Failed(e.to_string())),
                    Err(e) => Err(CommitError::Failed(format!("commit task failed: {e}"))),
                };
                let _ = reply.send(result);
            }
        }
    }
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(errs) => Response::Error {
            message: "the configuration is invalid; nothing was committed".into(),
            errors: errs.0,
        },
        other => Response::error(other.to_string()),
    }
}

fn read_store(st: &ConfigStore, req: Request) -> Response {
    let r = match req {
        Request::ConfigHistory => st.history().map(|h| Response::ok(&h)),
        Request::ConfigDiff { from, to } => st.diff(from, to).map(|d| Response::ok(&d)),
        Request::ShowConfig { commit: Some(n) } => st.get(n).map(|c| {
            Response::ok(&ShownConfig {
                commit: Some(c.info),
                yaml: c.config.to_yaml(),
            })
        }),
        Request::ShowConfig { commit: None } => st.head().map(|h| match h {
            Some(c) => Response::ok(&ShownConfig {
                commit: Some(c.info),
                yaml: c.config.to_yaml(),
            }),
            None => Response::ok(&ShownConfig {
                commit: None,
                yaml: Config::default().to_yaml(),
            }),
        }),
        other => Ok(Response::error(format!("not a store request: {other:?}"))),
    };
    r.unwrap_or_else(store_error)
}

struct Mgmt {
    config: mpsc::Sender<ConfigCmd>,
    router: mpsc::Sender<RouterQuery>,
    host: mpsc::Sender<HostQuery>,
    bgp: mpsc::Sender<BgpQuery>,
    driver: DriverHandle,
    config_rx: watch::Receiver<Config>,
    refused: Refused,
}

/// Objects whose last change the target refused, with the error.
type Refused = Arc<std::sync::Mutex<HashMap<ObjectKey, String>>>;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(ctx: Arc<Mgmt>, stream: UnixStream) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => handle(&ctx, req).await,
            Err(e) => Response::error(format!("malformed request: {e}")),
        };
        let mut out = serde_json::to_string(&resp)
            .unwrap_or_else(|e| format!("{{\"status\":\"error\",\"message\":\"{e}\"}}"));
        out.push('\n');
        if wr.write_all(out.as_bytes()).await.is_err() {
            break;
        }
    }
}

const GONE: &str = "the daemon is shutting down";

async fn handle(ctx: &Mgmt, req: Request) -> Response {
    match req {
        Request::ConfigCommit { yaml, message } => {
            let (tx, rx) = oneshot::channel();
            if ctx
                .config
                .send(ConfigCmd::Commit {
                    yaml,
                    message,
                    reply: tx,
                })
                .await
                .is_err()
            {
                return Response::error(GONE);
            }
            rx.await.unwrap_or_else(|_| Response::error(GONE))
        }
        Request::ConfigRollback { commit, message } => {
            let (tx, rx) = oneshot::channel();
            if ctx
                .config
                .send(ConfigCmd::Rollback {
                    commit,
                    message,
                    reply: tx,
                })
                .await
                .is_err()
            {
                return Response::error(GONE);
            }
            rx.await.unwrap_or_else(|_| Response::error(GONE))
        }
        r @ (Request::ConfigHistory | Request::ConfigDiff { .. } | Request::ShowConfig { .. }) => {
            let (tx, rx) = oneshot::channel();
            if ctx.config.send(ConfigCmd::Read(r, tx)).await.is_err() {
                return Response::error(GONE);
            }
            rx.await.unwrap_or_else(|_| Response::error(GONE))
        }
        Request::ShowRoutes => {
            let (tx, rx) = oneshot::channel();
            if ctx.router.send(RouterQuery::Rib(tx)).await.is_err() {
                return Response::error(GONE);
            }
            match rx.await {
                Ok(rib) => Response::ok(&rib.into_iter().map(route_row).collect::<Vec<_>>()),
                Err(_) => Response::error(GONE),
            }
        }
        Request::ShowNeighbors => {
            let (tx, rx) = oneshot::channel();
            if ctx.host.send(HostQuery::Neighbors(tx)).await.is_err() {
                return Response::error(GONE);
            }
            let Ok(rows) = rx.await else {
                return Response::error(GONE);
            };
            let Some(installed) = driver_query(&ctx.driver, |s, _| s.clone()).await else {
                return Response::error(GONE);
            };
            let ports: HashMap<_, _> = installed
                .ports()
                .values()
                .map(|p| (p.id, p.name.clone()))
                .collect();
            let out: Vec<NeighborRow> = rows
                .into_iter()
                .map(|r| {
                    let inst = installed
                        .rifs()
                        .values()
                        .find(|x| x.name == r.interface)
                        .is_some_and(|x| installed.neighbors().contains_key(&(x.id, r.address)));
                    NeighborRow {
                        address: r.address.to_string(),
                        mac: r.mac.map(|m| m.to_string()),
                        interface: r.interface,
                        port: r.port.and_then(|p| ports.get(&p).cloned()),
                        state: r.state.to_string(),
                        age_s: r.age_s,
                        installed: inst,
                    }
                })
                .collect();
            Response::ok(&out)
        }
        Request::ShowBgpSummary => {
            let (tx, rx) = oneshot::channel();
            if ctx.bgp.send(BgpQuery::Summary(tx)).await.is_err() {
                return Response::error(GONE);
            }
            match rx.await {
                Ok(Some(s)) => Response::ok(&s),
                Ok(None) => Response::error(
                    "BGP is not configured (no `bgp:` section in the configuration)",
                ),
                Err(_) => Response::error(GONE),
            }
        }
        Request::ShowBgpNeighbor { address } => {
            let (tx, rx) = oneshot::channel();
            if ctx.bgp.send(BgpQuery::Summary(tx)).await.is_err() {
                return Response::error(GONE);
            }
            match rx.await {
                Ok(Some(s)) => match s.neighbors.into_iter().find(|n| n.address == address) {
                    Some(n) => Response::ok(&n),
                    None => Response::error(format!("{address} is not a configured BGP neighbor")),
                },
                Ok(None) => Response::error(
                    "BGP is not configured (no `bgp:` section in the configuration)",
                ),
                Err(_) => Response::error(GONE),
            }
        }
        Request::ShowBgpRoutes { prefix } => {
            let (tx, rx) = oneshot::channel();
            if ctx.bgp.send(BgpQuery::Routes(prefix, tx)).await.is_err() {
                return Response::error(GONE);
            }
            match rx.await {
                Ok(r) => Response::ok(&r),
                Err(_) => Response::error(GONE),
            }
        }
        Request::ShowFib => {
            let refused = ctx.refused.clone();
            let (tx, rx) = oneshot::channel();
            if ctx.router.send(RouterQuery::Rib(tx)).await.is_err() {
                return Response::error(GONE);
            }
            let Ok(rib) = rx.await else {
                return Response::error(GONE);
            };
            match driver_query(&ctx.driver, move |s, _| {
                let mut rows = fib_rows(s, &lock(&refused));
                rows.extend(refused_routes(s, &lock(&refused), &rib));
                rows
            })
            .await
            {
                Some(rows) => Response::ok(&rows),
                None => Response::error(GONE),
            }
        }
        Request::ShowCounters => match driver_query(&ctx.driver, |_, b| b.drop_counters()).await {
            Some(c) => Response::ok(&c),
            None => Response::error(GONE),
        },
        Request::ShowInterfaces => {
            let config = ctx.config_rx.borrow().clone();
            match driver_query(&ctx.driver, move |s, b| interfaces(&config, s, b)).await {
                Some(i) => Response::ok(&i),
                None => Response::error(GONE),
            }
        }
    }
}

async fn driver_query<T: Send + 'static>(
    d: &DriverHandle,
    f: impl FnOnce(&ForwardingState, &mut dyn Backend) -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    if !d.query(move |s, b| {
        let _ = tx.send(f(s, b));
    }) {
        return None;
    }
    rx.await.ok()
}

fn route_row(e: routing::compile::RibEntry) -> RouteRow {
    let next_hops = if e.blackhole {
        vec!["blackhole".to_string()]
    } else {
        e.next_hops
            .iter()
            .map(|n| match n.address {
                Some(a) if e.next_hops.len() > 1 => {
                    format!("{a} via {} (weight {})", n.interface, n.weight)
                }
                Some(a) => format!("{a} via {}", n.interface),
                None => format!("directly connected, {}", n.interface),
            })
            .collect()
    };
    RouteRow {
        vrf: e.vrf,
        prefix: e.prefix.to_string(),
        protocol: format!("{:?}", e.protocol).to_lowercase(),
        distance: e.distance,
        next_hops,
    }
}

/// Routes the target refused and does not hold: `not installed`, with the
/// target's error and the RIB's next hops.
fn refused_routes(
    s: &ForwardingState,
    refused: &HashMap<ObjectKey, String>,
    rib: &[routing::compile::RibEntry],
) -> Vec<FibRow> {
    let mut rows: Vec<FibRow> = refused
        .iter()
        .filter_map(|(k, error)| {
            let ObjectKey::Route(rk) = k else {
                return None;
            };
            if s.routes().contains_key(rk) {
                return None;
            }
            let vrf = s
                .vrfs()
                .get(&rk.vrf)
                .map(|v| v.name.clone())
                .unwrap_or_else(|| format!("#{}", rk.vrf.0));
            // Only routes the control plane still wants (a refused route
            // removed since leaves no event behind).
            let wanted: Vec<_> = rib
                .iter()
                .filter(|e| e.vrf == vrf && e.prefix == rk.prefix)
                .collect();
            if wanted.is_empty() {
                return None;
            }
            let mut next_hops: Vec<String> = wanted
                .into_iter()
                .flat_map(|e| route_row(e.clone()).next_hops)
                .collect();
            next_hops.push(format!("refused: {error}"));
            Some(FibRow {
                vrf,
                prefix: rk.prefix.to_string(),
                action: "not installed".into(),
                next_hops,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.vrf, &a.prefix).cmp(&(&b.vrf, &b.prefix)));
    rows
}

fn fib_rows(s: &ForwardingState, refused: &HashMap<ObjectKey, String>) -> Vec<FibRow> {
    let nh = |id| -> String {
        let Some(n) = s.next_hops().get(&id) else {
            return format!("next-hop {id} missing");
        };
        let rif = s.rifs().get(&n.rif).map(|r| r.name.as_str()).unwrap_or("?");
        match s.neighbors().get(&(n.rif, n.ip)) {
            Some(nb) => format!("{} {rif} {}", n.ip, nb.mac),
            None => format!("{} {rif} unresolved", n.ip),
        }
    };
    s.routes()
        .iter()
        .map(|(k, a)| {
            let (action, next_hops) = match a {
                RouteAction::NextHop(id) => ("forward", vec![nh(*id)]),
                RouteAction::Group(g) => (
                    "ecmp",
                    s.groups()
                        .get(g)
                        .map(|g| {
                            g.members
                                .iter()
                                .map(|m| format!("{} weight {}", nh(m.next_hop), m.weight))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                RouteAction::Drop => ("drop", vec![]),
                RouteAction::ToCpu => ("cpu", vec![]),
            };
            let mut next_hops = next_hops;
            if let Some(e) = refused.get(&ObjectKey::Route(*k)) {
                next_hops.push(format!("change refused: {e}"));
            }
            FibRow {
                vrf: s
                    .vrfs()
                    .get(&k.vrf)
                    .map(|v| v.name.clone())
                    .unwrap_or_default(),
                prefix: k.prefix.to_string(),
                action: action.into(),
                next_hops,
            }
        })
        .collect()
}

fn interfaces(config: &Config, s: &ForwardingState, b: &mut dyn Backend) -> Interfaces {
    let counters: HashMap<_, _> = b.port_counters().into_iter().map(|c| (c.port, c)).collect();
    let by_name: HashMap<_, _> = s.ports().values().map(|p| (p.name.as_str(), p)).collect();
    let ports = config
        .ports
        .iter()
        .map(|p| {
            let inst = by_name.get(p.name.as_str());
            let c = inst
                .and_then(|i| counters.get(&i.id))
                .cloned()
                .unwrap_or_default();
            PortRow {
                name: p.name.clone(),
                linux: p.linux_name().to_string(),
                admin_up: p.enabled,
                installed: inst.is_some(),
                mtu: p.mtu,
                rx_packets: c.rx_packets,
                rx_bytes: c.rx_bytes,
                tx_packets: c.tx_packets,
                tx_bytes: c.tx_bytes,
                rx_drops: c.rx_drops,
                tx_drops: c.tx_drops,
            }
        })
        .collect();
    let port_name = |id| {
        s.ports()
            .get(&id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    };
    let interfaces = config
        .interfaces
        .iter()
        .map(|i| {
            let rif = s.rifs().values().find(|r| r.name == i.name);
            let on = match rif.map(|r| &r.kind) {
                Some(RifKind::Port { port }) => format!("port {}", port_name(*port)),
                Some(RifKind::SubPort { port, vlan }) => {
                    format!("{} vlan {vlan}", port_name(*port))
                }
                Some(RifKind::Vlan { vlan, members }) => format!(
                    "vlan {vlan} ({})",
                    members
                        .iter()
                        .map(|m| format!(
                            "{}{}",
                            port_name(m.port),
                            if m.tagged { " tagged" } else { "" }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => match (&i.port, i.vlan) {
                    (Some(p), Some(v)) => format!("{p} vlan {v}"),
                    (Some(p), None) => format!("port {p}"),
                    (None, Some(v)) => format!("vlan {v}"),
                    (None, None) => "-".into(),
                },
            };
            InterfaceRow {
                name: i.name.clone(),
                on,
                vrf: i.vrf_name().to_string(),
                mac: rif
                    .map(|r| r.mac)
                    .unwrap_or_else(|| i.mac.unwrap_or(config.router_mac()))
                    .to_string(),
                mtu: rif.map(|r| r.mtu).unwrap_or(0),
                admin_up: i.enabled,
                installed: rif.is_some(),
                addresses: i.addresses().map(|a| a.to_string()).collect(),
            }
        })
        .collect();
    Interfaces { ports, interfaces }
}
