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
//! - Change notifications ([`gnmi_server::Backend::changes`]), which drive
//!   ON_CHANGE subscriptions: every commit the config task publishes, every
//!   port the driver installs or removes, and a counter refresh every
//!   [`COUNTER_REFRESH`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gnmi_server::{
    CommitError, Generation, GnmiService, InterfaceCounters, InterfaceState, OperStatus, State,
};
use nos_core::config::Config;
use nos_core::driver::DriverHandle;
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
        State {
            interfaces,
            boot_time_ns: Some(self.boot_time_ns),
        }
    }

    fn changes(&self) -> watch::Receiver<Generation> {
        self.changes.clone()
    }
}

/// Starts the gNMI server on `addr`; it stops when `shutdown` turns true
/// (streams still open a second later are cut). Fails when the address
/// cannot be bound.
pub async fn start(
    addr: SocketAddr,
    backend: Arc<dyn gnmi_server::Backend>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for gNMI on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::warn!(
        address = %local,
        "gNMI server is INSECURE: plain-text gRPC without TLS or authentication; anyone who \
         can reach this address can read and change the configuration"
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = GnmiService::new(backend).into_server();
    let mut stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        let serve = Server::builder()
            .add_service(service)
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
