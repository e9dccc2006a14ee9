//! `P4RuntimeBackend` (the `nos_core::Backend` over P4Runtime) against the
//! x86 target over real gRPC: programming a state, per-update errors mapped
//! to deltas, reconciliation (nothing written when nothing changed, only
//! the difference otherwise, everything after a target restart), a deposed
//! primary, packets, and a P4Info missing a table.

mod common;

use common::*;
use nos_core::backend::{BackendErrorKind, PacketDest, PacketIn, PacketOut, PuntReason};
use nos_core::{
    Backend, Delta, ForwardingState, NextHopId, Object, ObjectKey, PortId, RouteAction,
};
use p4::{P4RuntimeBackend, P4RuntimeConfig, SessionState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A runtime for the target, apart from the backend's own.
fn runtime() -> tokio::runtime::Runtime {
    init_logs();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(t: &Target) -> P4RuntimeConfig {
    let mut c = P4RuntimeConfig::new(t.client_config(), pipeline());
    c.audit_every = None;
    c.reconnect_initial = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(400);
    c
}

fn start(c: P4RuntimeConfig) -> P4RuntimeBackend {
    let b = P4RuntimeBackend::start(c).expect("backend starts");
    assert!(b.wait_ready(WAIT), "ready: {:?}", b.state());
    b
}

fn all_ok(r: &[Result<(), nos_core::BackendError>]) {
    for (i, x) in r.iter().enumerate() {
        assert!(x.is_ok(), "delta {i}: {x:?}");
    }
}

/// The target's own model agrees with `s` on what P4 entries carry.
fn target_holds(t: &Target, s: &ForwardingState) {
    let m = t.server.model();
    assert_eq!(m.routes(), s.routes());
    assert_eq!(m.next_hops(), s.next_hops());
    assert_eq!(m.groups(), s.groups());
    assert_eq!(m.neighbors(), s.neighbors());
    assert_eq!(
        m.rifs().keys().collect::<Vec<_>>(),
        s.rifs().keys().collect::<Vec<_>>()
    );
    for (id, r) in s.rifs() {
        assert_eq!(m.rifs()[id].mac, r.mac);
        assert_eq!(m.rifs()[id].kind, r.kind);
    }
    assert_eq!(m.acls().len(), s.acls().len());
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn programs_a_state_and_reads_it_back() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let mut b = start(config(&t));
    let s = state();
    let r = b.apply(&deltas(&s));
    all_ok(&r);
    target_holds(&t, &s);
    assert_eq!(b.read().unwrap(), s);
    let audit = b.audit(false).unwrap();
    assert!(!audit.diverged(), "{audit:?}");
    let stats = b.stats();
    assert_eq!(stats.pipeline_pushes, 1);
    assert_eq!(stats.updates_failed, 0);
    // One route moves to the group and back: one write each.
    let before = b.stats().updates_written;
    let moved = route("203.0.113.0/24", RouteAction::Group(nos_core::GroupId(10)));
    all_ok(&b.apply(&[Delta::Modify(moved)]));
    assert_eq!(b.stats().updates_written, before + 1);
    assert_eq!(
        t.server.model().routes()[&nos_core::RouteKey {
            vrf: nos_core::VrfId(0),
            prefix: "203.0.113.0/24".parse().unwrap()
        }],
        RouteAction::Group(nos_core::GroupId(10))
    );
    // Tearing everything down in the diff's order works too.
    let now = b.read().unwrap();
    all_ok(&b.apply(&nos_core::diff(&now, &ForwardingState::new())));
    assert!(t.server.model().routes().is_empty());
    assert!(t.server.model().rifs().is_empty());
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn refused_updates_fail_their_deltas_and_show_as_not_installed() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let mut b = start(config(&t));
    let s = state();
    all_ok(&b.apply(&deltas(&s)));
    // An interface on port 9 (the target has ports 1-3), a next hop and a
    // route through it, and two changes that are fine.
    let batch = vec![
        Delta::Create(port(9)),
        Delta::Create(rif(9, 9)),
        Delta::Create(next_hop(9, 9, "192.0.2.99")),
        Delta::Create(route(
            "198.51.100.128/25",
            RouteAction::NextHop(NextHopId(9)),
        )),
        Delta::Create(route(
            "198.51.100.64/26",
            RouteAction::NextHop(NextHopId(2)),
        )),
        Delta::Modify(route("0.0.0.0/0", RouteAction::ToCpu)),
    ];
    let r = b.apply(&batch);
    assert!(r[0].is_ok(), "ports have no entries: {:?}", r[0]);
    let e = r[1].as_ref().unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::InvalidArgument, "{e}");
    assert!(e.message.contains("port 9"), "{e}");
    assert_eq!(r[2].as_ref().unwrap_err().kind, BackendErrorKind::NotFound);
    assert_eq!(r[3].as_ref().unwrap_err().kind, BackendErrorKind::NotFound);
    assert!(r[4].is_ok() && r[5].is_ok(), "{r:?}");
    // Not installed: neither in the backend's model nor on the target.
    let m = b.read().unwrap();
    assert!(!m.contains(&ObjectKey::Rif(nos_core::RifId(9))));
    assert!(!m.contains(&ObjectKey::NextHop(NextHopId(9))));
    assert!(m.contains(&ObjectKey::Port(PortId(9))));
    assert_eq!(m.routes().len(), s.routes().len() + 1);
    assert_eq!(t.server.model().routes(), m.routes());
    // A retry of the same deltas fails the same way, and nothing is left
    // half-installed for the audit to find.
    let again = b.apply(&batch[1..4]);
    assert!(again.iter().all(|x| x.is_err()));
    let a = b.audit(false).unwrap();
    assert!(!a.diverged(), "{a:?}");
    // Something the compiler refuses never reaches the target.
    let before = b.stats().updates_written;
    let r = b.apply(&[Delta::Create(group(11, &[(1, 200), (2, 100)]))]);
    assert!(r[0].as_ref().unwrap_err().message.contains("300"), "{r:?}");
    assert_eq!(b.stats().updates_written, before);
    drop(b);
    rt.block_on(t.stop());
}

/// A batch of several slices (the backend compiles the next slice while the
/// target takes the one before): what a later slice depends on, created in
/// an earlier one, is in place first, and a refusal in a later slice fails
/// its own delta only.
#[test]
fn a_batch_of_many_slices_keeps_its_order_and_per_delta_errors() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let mut b = start(config(&t));
    let s = state();
    all_ok(&b.apply(&deltas(&s)));
    let prefix = |i: usize| format!("10.{}.{}.0/24", i >> 8, i & 255);
    // An interface on a port the target lacks: refused, and so is what
    // stands on it.
    let mut batch = vec![
        Delta::Create(port(9)),
        Delta::Create(rif(9, 9)),
        Delta::Create(next_hop(9, 9, "192.0.2.99")),
    ];
    for i in 0..30_000 {
        let r = route(&prefix(i), RouteAction::NextHop(NextHopId(2)));
        batch.push(Delta::Create(r));
    }
    // A next hop in the second slice, used by every route after it.
    batch.push(Delta::Create(next_hop(50, 1, "192.0.2.50")));
    for i in 30_000..60_000 {
        let r = route(&prefix(i), RouteAction::NextHop(NextHopId(50)));
        batch.push(Delta::Create(r));
    }
    let refused = batch.len();
    batch.push(Delta::Create(route(
        "172.16.0.0/16",
        RouteAction::NextHop(NextHopId(9)),
    )));
    let r = b.apply(&batch);
    assert_eq!(r.len(), batch.len());
    assert_eq!(
        r[1].as_ref().unwrap_err().kind,
        BackendErrorKind::InvalidArgument
    );
    assert_eq!(r[2].as_ref().unwrap_err().kind, BackendErrorKind::NotFound);
    assert_eq!(
        r[refused].as_ref().unwrap_err().kind,
        BackendErrorKind::NotFound
    );
    let failed: Vec<usize> = (0..r.len()).filter(|i| r[*i].is_err()).collect();
    assert_eq!(failed, vec![1, 2, refused]);
    let m = t.server.model();
    assert_eq!(m.routes().len(), s.routes().len() + 60_000);
    assert_eq!(
        m.routes()[&nos_core::RouteKey {
            vrf: nos_core::VrfId(0),
            prefix: prefix(59_999).parse().unwrap()
        }],
        RouteAction::NextHop(NextHopId(50))
    );
    assert_eq!(b.read().unwrap().routes(), m.routes());
    let a = b.audit(false).unwrap();
    assert!(!a.diverged(), "{a:?}");
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn a_reconnect_with_nothing_changed_writes_nothing() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let mut b = start(config(&t));
    all_ok(&b.apply(&deltas(&state())));
    let before = b.stats();
    // The stream drops (the target keeps its entries).
    t.server.close_streams();
    wait_until("a second connection", || {
        b.stats().connects == 2 && matches!(b.state(), SessionState::Ready { .. })
    });
    let after = b.stats();
    assert_eq!(after.reconciles, before.reconciles + 1);
    assert_eq!(after.pipeline_pushes, 1, "same cookie: no push");
    assert_eq!(after.updates_written, before.updates_written, "zero writes");
    target_holds(&t, &state());
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn a_restarted_controller_writes_only_the_difference() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let s = state();
    let mut b = start(config(&t));
    all_ok(&b.apply(&deltas(&s)));
    drop(b);

    // Same state: the new controller takes the entries over, writing
    // nothing.
    let mut b = start(config(&t));
    assert_eq!(b.stats().updates_written, 0);
    all_ok(&b.apply(&deltas(&s)));
    let st = b.stats();
    assert_eq!(st.updates_written, 0, "{st:?}");
    assert!(st.adopted > 0);
    assert!(!b.audit(true).unwrap().diverged());
    assert_eq!(b.stats().updates_written, 0);
    drop(b);

    // A changed state: one route changed, one new, one gone.
    let mut s2 = s.clone();
    s2.upsert(route("203.0.113.0/24", RouteAction::NextHop(NextHopId(2))))
        .unwrap();
    s2.upsert(route("198.51.100.0/28", RouteAction::Drop))
        .unwrap();
    s2.remove(&ObjectKey::Route(nos_core::RouteKey {
        vrf: nos_core::VrfId(0),
        prefix: "192.0.2.1/32".parse().unwrap(),
    }))
    .unwrap();
    let mut b = start(config(&t));
    all_ok(&b.apply(&deltas(&s2)));
    assert_eq!(b.stats().updates_written, 2, "one MODIFY, one INSERT");
    // The leftover route goes at the next audit.
    let a = b.audit(true).unwrap();
    assert_eq!(
        (a.missing, a.different, a.extra, a.written),
        (0, 0, 1, 1),
        "{a:?}"
    );
    assert_eq!(b.stats().updates_written, 3);
    target_holds(&t, &s2);
    assert!(!b.audit(false).unwrap().diverged());
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn periodic_audits_leave_a_restarts_leftovers_until_adopt_for_has_passed() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let s = state();
    let mut b = start(config(&t));
    all_ok(&b.apply(&deltas(&s)));
    drop(b);

    // The restarted controller has learned all but one route so far (BGP
    // still deferring, say); audits run every 100 ms.
    let mut part = s.clone();
    part.remove(&ObjectKey::Route(nos_core::RouteKey {
        vrf: nos_core::VrfId(0),
        prefix: "192.0.2.1/32".parse().unwrap(),
    }))
    .unwrap();
    let mut c = config(&t);
    c.audit_every = Some(Duration::from_millis(100));
    c.adopt_for = Duration::from_secs(5);
    let restarted = Instant::now();
    let mut b = start(c);
    all_ok(&b.apply(&deltas(&part)));
    std::thread::sleep(Duration::from_millis(600));
    assert!(b.stats().audits >= 2, "{:?}", b.stats());
    target_holds(&t, &s);
    // A reconnect within adopt_for keeps them as well.
    t.server.close_streams();
    wait_until("a second connection", || {
        b.stats().connects == 2 && matches!(b.state(), SessionState::Ready { .. })
    });
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "too slow to tell"
    );
    target_holds(&t, &s);
    // Once adopt_for has passed, the next audit deletes the leftover.
    wait_until("the leftover route deleted", || {
        t.server.model().routes() == part.routes()
    });
    assert!(restarted.elapsed() >= Duration::from_secs(5));
    target_holds(&t, &part);
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn a_restarted_target_gets_everything_again() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let addr = t.addr;
    let s = state();
    let mut b = start(config(&t));
    all_ok(&b.apply(&deltas(&s)));
    let written = b.stats().updates_written;
    rt.block_on(t.stop());
    // While the target is away, changes fail as unavailable.
    wait_until("the loss to be noticed", || {
        !matches!(b.state(), SessionState::Ready { .. })
    });
    let r = b.apply(&[Delta::Create(route("198.51.100.0/28", RouteAction::Drop))]);
    assert_eq!(
        r[0].as_ref().unwrap_err().kind,
        BackendErrorKind::Unavailable
    );

    let t = rt.block_on(Target::start_at(addr));
    wait_until("the backend to come back", || {
        matches!(b.state(), SessionState::Ready { .. })
    });
    let st = b.stats();
    assert_eq!(st.pipeline_pushes, 2, "a new target has no pipeline");
    assert!(st.connects >= 2);
    assert_eq!(
        st.updates_written,
        written * 2,
        "a full replay, nothing more"
    );
    target_holds(&t, &s);
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn a_deposed_primary_reconciles_when_it_is_primary_again() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let s = state();
    let mut b = start(config(&t));
    all_ok(&b.apply(&deltas(&s)));
    // Another controller takes over, deletes a route and adds one.
    let rogue = rt.block_on(p4::Client::connect(t.client_config())).unwrap();
    rt.block_on(rogue.wait_for(WAIT, |m| matches!(m, p4::Mastership::Primary { .. })))
        .unwrap();
    wait_until("the backend to step down", || {
        matches!(b.state(), SessionState::Connected { .. })
    });
    let r = b.apply(&[Delta::Create(route("198.51.100.0/28", RouteAction::Drop))]);
    assert_eq!(
        r[0].as_ref().unwrap_err().kind,
        BackendErrorKind::Unavailable
    );
    let info = rt.block_on(rogue.target_p4info()).unwrap().unwrap();
    let compiler = p4::Compiler::new(Arc::new(p4::Schema::from_p4info(&info).unwrap()), None);
    let mut m = s.clone();
    let mut ups = Vec::new();
    for d in [
        Delta::Delete(ObjectKey::Route(nos_core::RouteKey {
            vrf: nos_core::VrfId(0),
            prefix: "203.0.113.0/24".parse().unwrap(),
        })),
        Delta::Create(route("198.18.0.0/24", RouteAction::Drop)),
    ] {
        ups.extend(compiler.delta(&mut m, &d).unwrap().updates);
    }
    let w = rt.block_on(p4::write::write_ordered(&rogue, ups, Default::default()));
    assert_eq!(w.failures(), 0);
    let written = b.stats().updates_written;
    drop(rogue);
    // No primary: the backend claims the role and repairs the two entries.
    wait_until("the backend to be primary again", || {
        matches!(b.state(), SessionState::Ready { .. })
    });
    assert_eq!(b.stats().updates_written, written + 2);
    target_holds(&t, &s);
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn packets_go_through_the_backend() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let got: Arc<Mutex<Vec<PacketIn>>> = Arc::default();
    let g = got.clone();
    let mut c = config(&t);
    c.packet_in = Some(Arc::new(move |p| g.lock().unwrap().push(p)));
    let b = start(c);
    (t.relay.sink())(PacketIn {
        port: PortId(2),
        reason: PuntReason::Arp,
        frame: vec![0xff; 42],
    });
    wait_until("the packet-in", || !got.lock().unwrap().is_empty());
    let p = got.lock().unwrap()[0].clone();
    assert_eq!(
        (p.port, p.reason, p.frame.len()),
        (PortId(2), PuntReason::Arp, 42)
    );

    let sent: Arc<Mutex<Vec<PacketOut>>> = Arc::default();
    let s = sent.clone();
    t.server.set_packet_sender(Arc::new(move |p| {
        s.lock().unwrap().push(p);
        Ok(())
    }));
    let send = b.packet_sender().unwrap();
    send(PacketOut {
        dest: PacketDest::Ingress(PortId(3)),
        frame: vec![7; 60],
    })
    .unwrap();
    send(PacketOut {
        dest: PacketDest::Port(PortId(1)),
        frame: vec![8; 60],
    })
    .unwrap();
    wait_until("the packet-outs", || sent.lock().unwrap().len() == 2);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent[0].dest, PacketDest::Ingress(PortId(3)));
    assert_eq!(sent[1].dest, PacketDest::Port(PortId(1)));
    assert_eq!(sent[1].frame, vec![8; 60]);
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn a_p4info_missing_a_table_is_refused_at_start_naming_it() {
    let mut info = p4::nos_p4info().unwrap();
    info.tables
        .retain(|t| t.preamble.as_ref().unwrap().name != "wcmp_group");
    info.actions
        .retain(|a| a.preamble.as_ref().unwrap().name != "to_cpu");
    let c = P4RuntimeConfig::new(
        p4::ClientConfig::new("127.0.0.1:1", DEVICE),
        p4::PipelineConfig::new(info, b"x86".to_vec()),
    );
    let e = P4RuntimeBackend::start(c).unwrap_err().to_string();
    assert!(e.contains("table `wcmp_group` is missing"), "{e}");
    assert!(e.contains("action `to_cpu` is missing"), "{e}");
}

#[test]
fn the_periodic_audit_runs_and_finds_nothing_to_repair() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let mut c = config(&t);
    c.audit_every = Some(Duration::from_millis(100));
    let mut b = start(c);
    all_ok(&b.apply(&deltas(&state())));
    let written = b.stats().updates_written;
    wait_until("three audits", || b.stats().audits >= 3);
    assert_eq!(b.stats().updates_written, written);
    drop(b);
    rt.block_on(t.stop());
}

#[test]
fn objects_without_entries_and_admin_state() {
    let rt = runtime();
    let t = rt.block_on(Target::start());
    let mut b = start(config(&t));
    let s = state();
    all_ok(&b.apply(&deltas(&s)));
    // Port 1 goes down: interface 1 receives nothing (its ingress entry
    // goes), the rest stays.
    let mut down = match s.get(&ObjectKey::Port(PortId(1))).unwrap() {
        Object::Port(p) => p,
        _ => unreachable!(),
    };
    down.admin_up = false;
    all_ok(&b.apply(&[Delta::Modify(Object::Port(down.clone()))]));
    let m = t.server.model();
    match &m.rifs()[&nos_core::RifId(1)].kind {
        nos_core::RifKind::Vlan { members, .. } => assert!(members.is_empty(), "{members:?}"),
        other => {
            panic!("an interface without ingress is a member-less VLAN to the target: {other:?}")
        }
    }
    assert!(!b.audit(false).unwrap().diverged());
    down.admin_up = true;
    all_ok(&b.apply(&[Delta::Modify(Object::Port(down))]));
    target_holds(&t, &s);
    drop(b);
    rt.block_on(t.stop());
}
