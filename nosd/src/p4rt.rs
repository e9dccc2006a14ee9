//! `dataplane: { backend: p4runtime }`: the forwarding state programmed into
//! a P4Runtime target (a P4 switch, bmv2 `simple_switch_grpc`, or
//! `nos-p4rt-target`) by [`p4::P4RuntimeBackend`].
//!
//! The backend takes the place of the x86 dataplane under the same driver
//! thread: packet-ins (ARP, ND, packets to the router, glean, TTL expiry,
//! ACL traps) go to the host stack's punt channel and the host stack's
//! packets leave by packet-out. Ports are numbered by
//! [`nos_core::config::Config::p4_port`] (explicit numbers under
//! `dataplane.p4runtime.ports`, otherwise 1 + the port's position), read
//! from the newest commit when a port is created.

use anyhow::Context;
use nos_core::backend::PacketInSink;
use nos_core::config::{Config, P4RuntimeTargetConfig};
use nos_core::driver::DriverHandle;
use p4::{ClientConfig, Monitor, P4RuntimeBackend, P4RuntimeConfig, PipelineConfig, SessionState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The pipeline nosd makes the target run: the configured P4Info and device
/// config files, or the nos.p4 P4Info built in.
pub fn pipeline(t: &P4RuntimeTargetConfig) -> anyhow::Result<PipelineConfig> {
    let p4info = match &t.p4info {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the P4Info {path}"))?;
            p4runtime_proto::text_format::p4info_from_text(&text)
                .map_err(|e| anyhow::anyhow!("{path} is not a P4Info in text format: {e}"))?
        }
        None => p4::nos_p4info()
            .map_err(|e| anyhow::anyhow!("the built-in nos.p4 P4Info does not parse: {e}"))?,
    };
    let device_config = match &t.device_config {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read the device config {path}"))?
        }
        None => Vec::new(),
    };
    Ok(PipelineConfig::new(p4info, device_config))
}

/// Starts the backend (it connects in the background and keeps retrying);
/// fails when the P4Info lacks a table, action or field the compiler
/// needs, naming each.
pub fn start(
    config: &Config,
    config_rx: watch::Receiver<Config>,
    punt: PacketInSink,
) -> anyhow::Result<P4RuntimeBackend> {
    let t = config
        .dataplane
        .p4runtime
        .as_ref()
        .context("backend p4runtime needs dataplane.p4runtime")?;
    let pipeline = pipeline(t)?;
    let mut client = ClientConfig::new(t.address.clone(), t.device_id);
    client.role = t.role.clone().unwrap_or_default();
    client.election_id = t.election_id.map(u128::from);
    client.connect_timeout = Duration::from_secs(3);
    let mut cfg = P4RuntimeConfig::new(client, pipeline);
    cfg.reconnect_max = Duration::from_secs(2);
    cfg.packet_in = Some(punt);
    cfg.port_numbers = Some(Arc::new(move |name: &str| config_rx.borrow().p4_port(name)));
    tracing::info!(
        address = %t.address,
        device_id = t.device_id,
        election_id = ?t.election_id,
        role = t.role.as_deref().unwrap_or(""),
        "connecting to the P4Runtime target"
    );
    let backend = P4RuntimeBackend::start(cfg).map_err(|e| {
        anyhow::anyhow!(
            "the P4Info {} cannot be used: {e}",
            t.p4info.as_deref().unwrap_or("(built-in nos.p4)")
        )
    })?;
    Ok(backend)
}

/// Logs the session's changes of state (unreachable and retrying, backup,
/// ready, unusable) until `shutdown`. Each time the target becomes ready the
/// driver retries at once what it refused while the target was not (so a
/// restarted nosd's ports, and with them its packet-out, are back within
/// moments rather than at the next reconcile).
pub async fn watch_session(
    address: String,
    monitor: Monitor,
    driver: DriverHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    // 0: not tried yet; then one number per kind of state.
    let mut last = 0u8;
    loop {
        let state = monitor.state();
        let kind = match &state {
            SessionState::Disconnected { .. } if !tried(&state) => 0,
            SessionState::Disconnected { .. } => 1,
            SessionState::Connected { .. } => 2,
            SessionState::Unusable { .. } => 3,
            SessionState::Ready { .. } => 4,
        };
        if last != kind {
            last = kind;
            match &state {
                SessionState::Disconnected { .. } if kind == 0 => {}
                SessionState::Disconnected { reason } => tracing::warn!(
                    %address,
                    "P4Runtime target not connected ({reason}); nosd keeps running and reconnects"
                ),
                // Pending while arbitration runs; Backup or NoPrimary when
                // another controller holds a higher election id.
                SessionState::Connected { mastership } => {
                    tracing::info!(%address, ?mastership, "connected to the P4Runtime target, not primary (yet)")
                }
                SessionState::Unusable { reason } => {
                    tracing::error!(%address, "the P4Runtime target cannot be used: {reason}")
                }
                SessionState::Ready { election_id } => {
                    let s = monitor.stats();
                    tracing::info!(
                        %address,
                        election_id,
                        connects = s.connects,
                        updates_written = s.updates_written,
                        "P4Runtime target ready: primary, pipeline in place, reconciled"
                    );
                    driver.retry();
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether the session has made a connection attempt (its first state's
/// reason is replaced by the attempt's error).
fn tried(s: &SessionState) -> bool {
    !matches!(s, SessionState::Disconnected { reason } if reason == p4::backend::NOT_CONNECTED_YET)
}
