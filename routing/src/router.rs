//! The router task: owns the RIB (the committed configuration plus the learned
//! neighbors, compiled into the desired forwarding state) and sends the changes
//! down as ordered deltas.

use crate::bgp::speaker::{BgpRibChange, BgpRoute, BgpVia};
use crate::compile::{
    addresses_of, bgp_rank, connected, Compiled, Compiler, HostInterface, LearnedNeighbor,
    RibEntry, RibNextHop,
};
use crate::host::{HostView, NeighborEvent};
use ipnet::IpNet;
use nos_core::config::Config;
use nos_core::{
    diff, Delta, ForwardingState, GroupId, NextHopId, Object, ObjectKey, RifId, Route, RouteAction,
    RouteKey, VrfId,
};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
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
    /// Next hops of BGP routes that are not on a connected subnet (reached
    /// through a static or BGP route, or not at all), each with the prefixes
    /// whose routes use it: when a BGP route covering one changes, those
    /// prefixes are programmed again.
    recursive: BTreeMap<IpAddr, BTreeSet<IpNet>>,
    /// During one [`Router::bgp`] call: the action of each shared `BgpVia`
    /// whose next hops and backups are all on connected subnets (then it is
    /// the same for every prefix using it), keyed by its address (the entry
    /// holds the `Arc`, so the address is not reused meanwhile).
    via_actions: HashMap<usize, (Arc<BgpVia>, RouteAction)>,
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
                let subnets_changed = next.interfaces != self.current.interfaces;
                self.current = next;
                if subnets_changed {
                    // Which next hops are on a connected subnet may have changed.
                    self.recursive.clear();
                    for r in self.bgp.values() {
                        track(
                            &self.current.interfaces,
                            &mut self.recursive,
                            r.prefix,
                            Some(r),
                            None,
                        );
                    }
                }
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
            // Every next hop in the table, BGP's included.
            resolve: self
                .current
                .state
                .next_hops()
                .values()
                .map(|n| (n.rif, n.ip))
                .collect(),
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

    /// Applies Loc-RIB changes from the BGP speaker to the desired state
    /// incrementally, returning the deltas in dependency order, and whether a
    /// full compile must follow (a BGP route for a prefix that also has a
    /// configured or connected route). The deltas are already applied to the
    /// desired state: they must be sent even when a full compile follows.
    ///
    /// `NextHopsDown` rewrites every group using a lost next hop to its backup
    /// first — one write per group whatever the number of prefixes (BGP PIC) —
    /// and those deltas come first in the result.
    pub fn bgp(&mut self, changes: Vec<BgpRibChange>) -> (Vec<Delta>, bool) {
        let mut out = Vec::new();
        let mut full = false;
        for c in changes {
            let prefix = match c {
                BgpRibChange::NextHopsDown(dead) => {
                    // Groups are rewritten in place (same ids): a cached action
                    // would still be right, but nothing is assumed about them.
                    self.via_actions.clear();
                    let s = &mut self.current.state;
                    out.extend(self.compiler.fail_next_hops(s, &dead));
                    let ids: Vec<NextHopId> = s
                        .next_hops()
                        .values()
                        .filter(|n| dead.contains(&n.ip))
                        .map(|n| n.id)
                        .collect();
                    collect_next_hops(&self.compiler, s, ids, &mut out);
                    continue;
                }
                BgpRibChange::Set(r) => {
                    let p = r.prefix;
                    let interfaces = &self.current.interfaces;
                    let fresh = needs_resolution(interfaces, &r);
                    let old = self.bgp.insert(p, r);
                    let stale = old
                        .as_ref()
                        .is_some_and(|o| needs_resolution(interfaces, o));
                    if fresh || stale {
                        track(
                            interfaces,
                            &mut self.recursive,
                            p,
                            self.bgp.get(&p),
                            old.as_ref(),
                        );
                    }
                    p
                }
                BgpRibChange::Remove(p) => {
                    if let Some(old) = self.bgp.remove(&p) {
                        let interfaces = &self.current.interfaces;
                        if needs_resolution(interfaces, &old) {
                            track(interfaces, &mut self.recursive, p, None, Some(&old));
                        }
                    }
                    p
                }
            };
            if full {
                continue;
            }
            if let Err(e) = self.program_with_dependents(prefix, &mut out) {
                tracing::debug!("incremental BGP update needs a full compile: {e}");
                full = true;
            }
        }
        self.via_actions.clear();
        (out, full)
    }

    /// Programs `prefix`, then every prefix whose next hop a route it
    /// changed covers (those routes resolve through it), and so on down the
    /// chain, each prefix once.
    fn program_with_dependents(
        &mut self,
        prefix: IpNet,
        out: &mut Vec<Delta>,
    ) -> Result<(), String> {
        self.program(prefix, out)?;
        if self.recursive.is_empty() {
            return Ok(());
        }
        let mut done = HashSet::from([prefix]);
        let mut queue = vec![prefix];
        while let Some(p) = queue.pop() {
            let mut range = self.recursive.range(addresses_of(p)).peekable();
            if range.peek().is_none() {
                continue;
            }
            let dependents: Vec<IpNet> = range
                .flat_map(|(_, users)| users.iter().copied())
                .filter(|d| !done.contains(d))
                .collect();
            for d in dependents {
                if done.insert(d) {
                    self.program(d, out)?;
                    queue.push(d);
                }
            }
        }
        Ok(())
    }

    /// Brings one BGP prefix's route (and the objects it uses) in line with the
    /// BGP table.
    fn program(&mut self, prefix: IpNet, out: &mut Vec<Delta>) -> Result<(), String> {
        let key = RouteKey {
            vrf: VrfId::DEFAULT,
            prefix,
        };
        let s = &mut self.current.state;
        let route = self.bgp.get(&prefix);
        if self.current.base_ranks.contains_key(&key) {
            // A configured or connected route for the same prefix: which one is
            // installed, before and after, is the full compile's decision.
            return Err(format!("{prefix} competes with a configured route"));
        }
        let want = match route {
            Some(r) => {
                let interfaces = &self.current.interfaces;
                // Not merely "needs no resolution": a link-local next hop
                // off every subnet resolves through a covering route, which
                // depends on the prefix (never through itself).
                let shared = r
                    .next_hops
                    .iter()
                    .chain(&r.backup)
                    .all(|nh| connected(interfaces, *nh).is_some());
                let key = Arc::as_ptr(&r.via) as usize;
                // The group may have been collected since (a prefix left it).
                let cached = self
                    .via_actions
                    .get(&key)
                    .map(|(_, a)| *a)
                    .filter(|a| match a {
                        RouteAction::Group(g) => s.contains(&ObjectKey::Group(*g)),
                        _ => true,
                    });
                match cached {
                    Some(a) if shared => Some(a),
                    _ => {
                        let a = self
                            .compiler
                            .bgp_objects(s, interfaces, &self.bgp, r, out)
                            .map_err(|e| e.to_string())?
                            .map(|(a, _)| a);
                        if let (Some(a), true) = (a, shared) {
                            self.via_actions.insert(key, (r.via.clone(), a));
                        }
                        a
                    }
                }
            }
            None => None,
        };
        let obj = |action| {
            Object::Route(Route {
                vrf: key.vrf,
                prefix,
                action,
            })
        };
        // One search of the route table: the upsert or removal gives back
        // what was there.
        let old = match want {
            Some(a) => {
                let prev = s.upsert(obj(a)).map_err(|e| e.to_string())?;
                let old = match prev {
                    Some(Object::Route(r)) => Some(r.action),
                    _ => None,
                };
                match old {
                    None => out.push(Delta::Create(obj(a))),
                    Some(o) if o == a => {}
                    Some(_) => out.push(Delta::Modify(obj(a))),
                }
                old
            }
            None => {
                let k = ObjectKey::Route(key);
                match s.remove(&k) {
                    Ok(prev) => {
                        out.push(Delta::Delete(k));
                        match prev {
                            Object::Route(r) => Some(r.action),
                            _ => None,
                        }
                    }
                    Err(nos_core::ModelError::NotFound(_)) => None,
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        if let Some(RouteAction::Group(g)) = old {
            if want != old {
                collect_group(&self.compiler, s, g, out);
            }
        }
        Ok(())
    }

    /// The RIB: configured and connected routes, and the BGP table's selected routes.
    pub fn rib(&self) -> Vec<RibEntry> {
        let mut rib = self.current.rib.clone();
        for r in self.bgp.values() {
            let (distance, protocol) = bgp_rank(r);
            rib.push(RibEntry {
                vrf: nos_core::config::DEFAULT_VRF.to_string(),
                prefix: r.prefix,
                protocol,
                distance,
                next_hops: r
                    .next_hops
                    .iter()
                    .enumerate()
                    .map(|(i, nh)| RibNextHop {
                        address: Some(*nh),
                        interface: self.reached_by(r.prefix, *nh),
                        weight: r.weights.get(i).copied().unwrap_or(1),
                    })
                    .collect(),
                blackhole: false,
            });
        }
        rib.sort_by(|a, b| (&a.vrf, a.prefix).cmp(&(&b.vrf, b.prefix)));
        rib
    }

    /// How a BGP next hop is reached, for display: the interface, with the
    /// next hop it resolves to when that is another address.
    fn reached_by(&self, prefix: IpNet, nh: IpAddr) -> String {
        let via = self
            .compiler
            .resolve_next_hop(&self.current.interfaces, &self.bgp, prefix, nh);
        if via.is_empty() {
            return "unreachable".into();
        }
        via.iter()
            .map(|(_, name, ip)| {
                if *ip == nh {
                    name.clone()
                } else {
                    format!("{name} via {ip}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
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
                    let mut deltas = Vec::new();
                    let mut full = false;
                    let mut batch = Some(c);
                    // Take what else is waiting, up to a bound, so a full table
                    // arrives in large batches without starving other events.
                    let mut n = 0;
                    while let Some(c) = batch.take() {
                        let (d, f) = self.bgp(c);
                        deltas.extend(d);
                        full |= f;
                        n += 1;
                        if n < 64 {
                            batch = bgp.try_recv().ok();
                        }
                    }
                    if !deltas.is_empty() {
                        let _ = fib.send(deltas);
                    }
                    if full {
                        push(&mut self);
                    } else {
                        let v = self.view();
                        view.send_if_modified(|old| {
                            let changed = *old != v;
                            *old = v;
                            changed
                        });
                    }
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

/// Whether a next hop must be resolved through a route: it is on no connected
/// subnet (an IPv6 link-local next hop is on its link).
fn off_subnet(interfaces: &[HostInterface], nh: IpAddr) -> bool {
    !nos_core::is_link_local(nh) && connected(interfaces, nh).is_none()
}

/// Whether a BGP route has a next hop (or backup) off every connected subnet.
fn needs_resolution(interfaces: &[HostInterface], r: &BgpRoute) -> bool {
    r.next_hops
        .iter()
        .chain(&r.backup)
        .any(|nh| off_subnet(interfaces, *nh))
}

/// Records in `recursive` that the route for `prefix` now has `new`'s next
/// hops where it had `old`'s, for those off every connected subnet.
fn track(
    interfaces: &[HostInterface],
    recursive: &mut BTreeMap<IpAddr, BTreeSet<IpNet>>,
    prefix: IpNet,
    new: Option<&BgpRoute>,
    old: Option<&BgpRoute>,
) {
    let hops = |r: Option<&BgpRoute>| -> SmallVec<[IpAddr; 2]> {
        r.map(|r| {
            r.next_hops
                .iter()
                .chain(&r.backup)
                .copied()
                .filter(|nh| off_subnet(interfaces, *nh))
                .collect()
        })
        .unwrap_or_default()
    };
    let (new, old) = (hops(new), hops(old));
    for nh in old.iter().filter(|nh| !new.contains(nh)) {
        if let Some(users) = recursive.get_mut(nh) {
            users.remove(&prefix);
            if users.is_empty() {
                recursive.remove(nh);
            }
        }
    }
    for nh in new {
        recursive.entry(nh).or_default().insert(prefix);
    }
}

/// Deletes group `g` if nothing uses it any more, then those of its members and
/// backups that nothing uses either.
fn collect_group(c: &Compiler, s: &mut ForwardingState, g: GroupId, out: &mut Vec<Delta>) {
    let key = ObjectKey::Group(g);
    if s.users_of(&key) > 0 {
        return;
    }
    let backups = c.backups_of(g);
    let Ok(Object::Group(old)) = s.remove(&key) else {
        return;
    };
    out.push(Delta::Delete(key));
    collect_next_hops(
        c,
        s,
        old.members.iter().map(|m| m.next_hop).chain(backups),
        out,
    );
}

/// Deletes those of `ids` that no route, group or neighbor uses and that no
/// remaining group keeps as its backup.
fn collect_next_hops(
    c: &Compiler,
    s: &mut ForwardingState,
    ids: impl IntoIterator<Item = NextHopId>,
    out: &mut Vec<Delta>,
) {
    for nh in ids {
        let k = ObjectKey::NextHop(nh);
        if s.contains(&k) && s.users_of(&k) == 0 && !c.is_backup(s, nh) && s.remove(&k).is_ok() {
            out.push(Delta::Delete(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CONFIG: &str = r#"
ports: [{ name: eth1 }, { name: eth2 }, { name: eth3 }]
interfaces:
  - { name: eth1, port: eth1, ipv4: [192.0.2.1/24] }
  - { name: eth2, port: eth2, ipv4: [198.51.100.1/24] }
  - { name: eth3, port: eth3, ipv4: [198.18.1.1/24] }
static_routes:
  - { prefix: 203.0.113.0/24, next_hops: [{ address: 192.0.2.2 }] }
"#;

    /// ISP next hops on the three subnets, one that nothing reaches, and one
    /// that only BGP routes reach (198.19.3.0/24 and the 198.19.0.0/16 the
    /// generator also announces).
    const HOPS: [&str; 5] = [
        "198.51.100.2",
        "198.18.1.2",
        "192.0.2.9",
        "10.9.9.9",
        "198.19.3.9",
    ];

    fn router() -> Router {
        let mut r = Router::new();
        r.set_config(Config::from_yaml(CONFIG).unwrap());
        r.recompute();
        r
    }

    /// Shares equal `BgpVia`s between prefixes, as the speaker does.
    #[derive(Default)]
    struct Vias(HashMap<BgpVia, Arc<BgpVia>>);

    impl Vias {
        fn route(&mut self, r: BgpRoute) -> BgpRoute {
            let via = self.0.entry((*r.via).clone()).or_insert(r.via).clone();
            BgpRoute {
                prefix: r.prefix,
                via,
            }
        }
    }

    fn change(sel: (u8, u8, u8, u8, bool)) -> BgpRibChange {
        let (p, nh_mask, backup, kind, ebgp) = sel;
        // Prefix 203.0.113.0/24 collides with the static route on purpose.
        let prefix: IpNet = match p {
            0 => "203.0.113.0/24".parse().unwrap(),
            12 => "198.19.0.0/16".parse().unwrap(),
            p => format!("198.19.{p}.0/24").parse().unwrap(),
        };
        if kind == 0 {
            return BgpRibChange::Remove(prefix);
        }
        let mut next_hops: Vec<IpAddr> = (0..HOPS.len())
            .filter(|i| nh_mask & (1 << i) != 0)
            .map(|i| HOPS[i].parse().unwrap())
            .collect();
        if next_hops.is_empty() {
            next_hops.push(HOPS[0].parse().unwrap());
        }
        let b: IpAddr = HOPS[usize::from(backup) % HOPS.len()].parse().unwrap();
        let backup = if next_hops.contains(&b) {
            vec![]
        } else {
            vec![b]
        };
        BgpRibChange::Set(BgpRoute::new(prefix, next_hops, Vec::new(), ebgp, backup))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Incremental BGP updates are valid deltas and end where a full compile does.
        #[test]
        fn incremental_bgp_matches_a_full_compile(
            batches in prop::collection::vec(
                prop::collection::vec((0u8..13, 0u8..32, any::<u8>(), 0u8..3, any::<bool>()), 1..20),
                1..8,
            )
        ) {
            let mut r = router();
            let mut vias = Vias::default();
            for batch in batches {
                let before = r.current.state.clone();
                // Only 203.0.113.0/24 (a static route's prefix) needs a full
                // compile: when the batch sets it, or it resolves through a
                // route the batch changes.
                let competes = batch.iter().any(|sel| sel.0 == 0)
                    || r.bgp.contains_key(&"203.0.113.0/24".parse::<IpNet>().unwrap());
                let changes: Vec<BgpRibChange> = batch
                    .into_iter()
                    .map(|sel| match change(sel) {
                        BgpRibChange::Set(r) => BgpRibChange::Set(vias.route(r)),
                        c => c,
                    })
                    .collect();
                let (deltas, full) = r.bgp(changes);
                prop_assert!(!full || competes, "a full compile without a competing prefix");
                let mut s = before;
                for d in &deltas {
                    prop_assert!(s.apply(d).is_ok(), "delta {:?} does not apply", d);
                }
                prop_assert_eq!(&s, &r.current.state);
                if full {
                    let (more, _) = r.recompute();
                    for d in &more {
                        prop_assert!(s.apply(d).is_ok(), "full-compile delta {:?} does not apply", d);
                    }
                    prop_assert_eq!(&s, &r.current.state);
                }
                let full = r.compiler.compile(&r.config, &r.neighbors, &r.bgp).unwrap();
                let d = diff(&r.current.state, &full.state);
                prop_assert!(d.is_empty(), "incremental and full differ: {:?}", d);
            }
        }
    }

    fn bgp_route(prefix: &str, nh: &str) -> BgpRoute {
        BgpRoute::new(
            prefix.parse().unwrap(),
            vec![nh.parse().unwrap()],
            Vec::new(),
            false,
            Vec::new(),
        )
    }

    #[test]
    fn a_shared_via_whose_group_went_is_programmed_again() {
        let mut r = router();
        let mut vias = Vias::default();
        let mut set = |prefix: &str, nh: &str| BgpRibChange::Set(vias.route(bgp_route(prefix, nh)));
        // 198.19.1.0/24 creates the group of the first via, leaves it (the
        // group is collected), and 198.19.2.0/24 then uses that via again in
        // the same batch.
        let batch = vec![
            set("198.19.1.0/24", "198.51.100.2"),
            set("198.19.1.0/24", "198.18.1.2"),
            set("198.19.2.0/24", "198.51.100.2"),
            set("198.19.3.0/24", "198.51.100.2"),
        ];
        let before = r.current.state.clone();
        let (deltas, full) = r.bgp(batch);
        assert!(!full, "no full compile needed");
        let mut s = before;
        for d in &deltas {
            s.apply(d).unwrap();
        }
        assert_eq!(s, r.current.state);
        let isp1: IpAddr = "198.51.100.2".parse().unwrap();
        let isp2: IpAddr = "198.18.1.2".parse().unwrap();
        assert_eq!(forwards_via(&r, "198.19.1.0/24"), Some(vec![isp2]));
        assert_eq!(forwards_via(&r, "198.19.2.0/24"), Some(vec![isp1]));
        assert_eq!(forwards_via(&r, "198.19.3.0/24"), Some(vec![isp1]));
        // Both prefixes on the first via share one group.
        let key = |p: &str| RouteKey {
            vrf: VrfId::DEFAULT,
            prefix: p.parse().unwrap(),
        };
        let routes = r.current.state.routes();
        assert_eq!(routes[&key("198.19.2.0/24")], routes[&key("198.19.3.0/24")]);
    }

    /// The next hop addresses a route forwards to, if it is installed.
    fn forwards_via(r: &Router, prefix: &str) -> Option<Vec<IpAddr>> {
        let s = &r.current.state;
        let key = RouteKey {
            vrf: VrfId::DEFAULT,
            prefix: prefix.parse().unwrap(),
        };
        let action = s.routes().get(&key)?;
        let ids = match action {
            RouteAction::NextHop(n) => vec![*n],
            RouteAction::Group(g) => s.groups()[g].members.iter().map(|m| m.next_hop).collect(),
            _ => return Some(Vec::new()),
        };
        Some(ids.iter().map(|id| s.next_hops()[id].ip).collect())
    }

    /// Sends one BGP route to the router; returns what `Router::bgp` does.
    fn set(r: &mut Router, prefix: &str, nh: &str) -> (Vec<Delta>, bool) {
        r.bgp(vec![BgpRibChange::Set(bgp_route(prefix, nh))])
    }

    /// How `show routes` says the first next hop of `prefix` is reached.
    fn shown_via(r: &Router, prefix: &str) -> String {
        let p: IpNet = prefix.parse().unwrap();
        let e = r.rib().into_iter().find(|e| e.prefix == p).unwrap();
        e.next_hops[0].interface.clone()
    }

    #[test]
    fn a_next_hop_resolves_through_a_bgp_route_and_follows_it() {
        let mut r = router();
        let isp1: IpAddr = "198.51.100.2".parse().unwrap();
        let isp2: IpAddr = "198.18.1.2".parse().unwrap();
        // An iBGP route whose next hop (a loopback) is reached through an
        // eBGP route; the order they arrive in does not matter.
        let (_, full) = set(&mut r, "10.1.0.0/16", "198.19.3.9");
        assert!(!full);
        assert_eq!(
            forwards_via(&r, "10.1.0.0/16"),
            None,
            "nothing reaches its next hop yet"
        );
        set(&mut r, "198.19.3.0/24", "198.51.100.2");
        assert_eq!(forwards_via(&r, "10.1.0.0/16"), Some(vec![isp1]));
        assert_eq!(shown_via(&r, "10.1.0.0/16"), "eth2 via 198.51.100.2");

        // The covering route moves to the other ISP: the dependent follows
        // without being announced again.
        let (deltas, _) = set(&mut r, "198.19.3.0/24", "198.18.1.2");
        assert_eq!(forwards_via(&r, "10.1.0.0/16"), Some(vec![isp2]));
        let dependent = ObjectKey::Route(RouteKey {
            vrf: VrfId::DEFAULT,
            prefix: "10.1.0.0/16".parse().unwrap(),
        });
        assert!(
            deltas.iter().any(|d| d.key() == dependent),
            "the dependent was rewritten: {deltas:?}"
        );

        // A longer covering route takes over; its removal gives the next hop
        // back to the shorter one; with none left the dependent goes.
        set(&mut r, "198.19.3.8/29", "192.0.2.9");
        assert_eq!(
            forwards_via(&r, "10.1.0.0/16"),
            Some(vec!["192.0.2.9".parse().unwrap()])
        );
        r.bgp(vec![BgpRibChange::Remove("198.19.3.8/29".parse().unwrap())]);
        assert_eq!(forwards_via(&r, "10.1.0.0/16"), Some(vec![isp2]));
        r.bgp(vec![BgpRibChange::Remove("198.19.3.0/24".parse().unwrap())]);
        assert_eq!(forwards_via(&r, "10.1.0.0/16"), None);
        assert_eq!(shown_via(&r, "10.1.0.0/16"), "unreachable");
    }

    #[test]
    fn a_route_is_not_reached_through_itself() {
        let mut r = router();
        // The next hop is only under the route's own prefix.
        set(&mut r, "10.5.0.0/16", "10.5.0.1");
        assert_eq!(forwards_via(&r, "10.5.0.0/16"), None);
        // A shorter route covering the next hop does not help: the route
        // itself would be the longest match.
        set(&mut r, "10.0.0.0/8", "198.51.100.2");
        assert_eq!(forwards_via(&r, "10.5.0.0/16"), None);
        // A longer one does.
        set(&mut r, "10.5.0.0/24", "198.18.1.2");
        assert_eq!(
            forwards_via(&r, "10.5.0.0/16"),
            Some(vec!["198.18.1.2".parse().unwrap()])
        );
        // Two routes reached only through each other are both left out.
        r.bgp(vec![
            BgpRibChange::Set(bgp_route("172.16.1.0/24", "172.16.2.1")),
            BgpRibChange::Set(bgp_route("172.16.2.0/24", "172.16.1.1")),
        ]);
        assert_eq!(forwards_via(&r, "172.16.1.0/24"), None);
        assert_eq!(forwards_via(&r, "172.16.2.0/24"), None);
        // What the updates built is what a full compile builds.
        let full = r.compiler.compile(&r.config, &r.neighbors, &r.bgp).unwrap();
        assert!(diff(&r.current.state, &full.state).is_empty());
    }

    #[test]
    fn resolution_goes_four_bgp_routes_deep_and_a_static_wins_a_tie() {
        let mut r = router();
        // 10.0.k.0/24 via 10.0.(k-1).1: route k resolves through k BGP routes.
        let mut chain = vec![BgpRibChange::Set(bgp_route("10.0.0.0/24", "198.51.100.2"))];
        for k in 1..=5 {
            chain.push(BgpRibChange::Set(bgp_route(
                &format!("10.0.{k}.0/24"),
                &format!("10.0.{}.1", k - 1),
            )));
        }
        // Announced last first: every route waits for the ones below it.
        chain.reverse();
        r.bgp(chain);
        let isp1: IpAddr = "198.51.100.2".parse().unwrap();
        for k in 0..=4 {
            assert_eq!(
                forwards_via(&r, &format!("10.0.{k}.0/24")),
                Some(vec![isp1]),
                "{k} deep"
            );
        }
        assert_eq!(forwards_via(&r, "10.0.5.0/24"), None, "5 deep is too deep");

        // A BGP route for the static route's prefix (203.0.113.0/24): a next
        // hop under it goes the static route's way.
        let (_, full) = r.bgp(vec![
            BgpRibChange::Set(bgp_route("203.0.113.0/24", "198.18.1.2")),
            BgpRibChange::Set(bgp_route("10.7.0.0/16", "203.0.113.7")),
        ]);
        if full {
            r.recompute();
        }
        assert_eq!(
            forwards_via(&r, "10.7.0.0/16"),
            Some(vec!["192.0.2.2".parse().unwrap()])
        );
    }

    #[test]
    fn losing_an_isp_rewrites_each_group_once_whatever_the_number_of_prefixes() {
        let mut r = router();
        let isp1: IpAddr = "198.51.100.2".parse().unwrap();
        let isp2: IpAddr = "198.18.1.2".parse().unwrap();
        let changes: Vec<BgpRibChange> = (0..5000u32)
            .map(|i| {
                BgpRibChange::Set(BgpRoute::new(
                    format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap(),
                    vec![isp1],
                    Vec::new(),
                    true,
                    vec![isp2],
                ))
            })
            .collect();
        assert!(!r.bgp(changes).1);
        let groups = r.current.state.groups().len();
        assert_eq!(groups, 1, "all prefixes share one path-list group");
        let (deltas, full) = r.bgp(vec![BgpRibChange::NextHopsDown(vec![isp1])]);
        assert!(!full);
        let group_writes = deltas
            .iter()
            .filter(|d| matches!(d, Delta::Modify(Object::Group(_))))
            .count();
        assert_eq!(group_writes, 1, "one write moves every prefix: {deltas:?}");
        assert!(
            deltas
                .iter()
                .all(|d| !matches!(d.key(), ObjectKey::Route(_))),
            "no route is written"
        );
        let g = r.current.state.groups().values().next().unwrap();
        let nh = &r.current.state.next_hops()[&g.members[0].next_hop];
        assert_eq!(nh.ip, isp2, "the group now forwards to the backup");
    }
}
