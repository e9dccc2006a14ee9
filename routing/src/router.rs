//! The router task: owns the RIB (the committed configuration plus the learned
//! neighbors, compiled into the desired forwarding state) and sends the changes
//! down as ordered deltas.

use crate::bgp::speaker::{BgpRibChange, BgpRoute};
use crate::compile::{Compiled, Compiler, LearnedNeighbor, RibEntry};
use crate::host::{HostView, NeighborEvent};
use ipnet::IpNet;
use nos_core::config::Config;
use nos_core::{diff, Delta, RifId};
use std::collections::BTreeMap;
use std::net::IpAddr;
use tokio::sync::{mpsc, oneshot, watch};

/// Queries the router task answers.
#[derive(Debug)]
pub enum RouterQuery {
    Rib(oneshot::Sender<Vec<RibEntry>>),
}

/// The router task's state.
#[derive(Debug, Default)]
pub struct Router {
    compiler: Compiler,
    config: Config,
    neighbors: BTreeMap<(RifId, IpAddr), LearnedNeighbor>,
    bgp: BTreeMap<IpNet, BgpRoute>,
    current: Compiled,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Recompiles and returns the deltas from the previous desired state, plus the
    /// new view for the host stack.
    pub fn recompute(&mut self) -> (Vec<Delta>, HostView) {
        match self
            .compiler
            .compile(&self.config, &self.neighbors, &self.bgp)
        {
            Ok(next) => {
                let deltas = diff(&self.current.state, &next.state);
                self.current = next;
                (deltas, self.view())
            }
            Err(e) => {
                // Validation runs before every commit, so this means a bug; keep
                // forwarding with the previous state and say so loudly.
                tracing::error!(
                    "configuration could not be compiled, keeping the previous state: {e}"
                );
                (Vec::new(), self.view())
            }
        }
    }

    fn view(&self) -> HostView {
        HostView {
            interfaces: self.current.interfaces.clone(),
            resolve: self.current.resolve.clone(),
        }
    }

    pub fn set_config(&mut self, c: Config) {
        self.config = c;
    }

    /// Applies a neighbor event; returns whether anything changed.
    pub fn neighbor(&mut self, e: NeighborEvent) -> bool {
        match e {
            NeighborEvent::Up { rif, ip, mac, port } => {
                let n = LearnedNeighbor { mac, port };
                self.neighbors.insert((rif, ip), n) != Some(n)
            }
            NeighborEvent::Down { rif, ip } => self.neighbors.remove(&(rif, ip)).is_some(),
        }
    }

    /// Applies Loc-RIB changes from the BGP speaker.
    pub fn bgp(&mut self, changes: Vec<BgpRibChange>) {
        for c in changes {
            match c {
                BgpRibChange::Set(r) => {
                    self.bgp.insert(r.prefix, r);
                }
                BgpRibChange::Remove(p) => {
                    self.bgp.remove(&p);
                }
            }
        }
    }

    pub fn rib(&self) -> Vec<RibEntry> {
        self.current.rib.clone()
    }

    /// Runs the task until the configuration channel closes or shutdown fires.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        mut self,
        mut config: watch::Receiver<Config>,
        mut neighbors: mpsc::Receiver<NeighborEvent>,
        mut bgp: mpsc::UnboundedReceiver<Vec<BgpRibChange>>,
        mut queries: mpsc::Receiver<RouterQuery>,
        fib: mpsc::UnboundedSender<Vec<Delta>>,
        view: watch::Sender<HostView>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.set_config(config.borrow_and_update().clone());
        let push = |r: &mut Router| {
            let (deltas, v) = r.recompute();
            if !deltas.is_empty() {
                tracing::debug!(deltas = deltas.len(), "forwarding state changed");
                let _ = fib.send(deltas);
            }
            view.send_if_modified(|old| {
                let changed = *old != v;
                *old = v;
                changed
            });
        };
        push(&mut self);
        loop {
            tokio::select! {
                r = config.changed() => {
                    if r.is_err() { break; }
                    let c = config.borrow_and_update().clone();
                    self.set_config(c);
                    push(&mut self);
                }
                Some(e) = neighbors.recv() => {
                    let mut changed = self.neighbor(e);
                    // Take every event already waiting before recompiling once.
                    while let Ok(e) = neighbors.try_recv() {
                        changed |= self.neighbor(e);
                    }
                    if changed { push(&mut self); }
                }
                Some(c) = bgp.recv() => {
                    self.bgp(c);
                    while let Ok(c) = bgp.try_recv() {
                        self.bgp(c);
                    }
                    push(&mut self);
                }
                Some(q) = queries.recv() => match q {
                    RouterQuery::Rib(tx) => { let _ = tx.send(self.rib()); }
                },
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!("router task stopped");
    }
}
