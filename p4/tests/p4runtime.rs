//! The P4Runtime client against the x86 target over real gRPC: arbitration,
//! the pipeline and its cookie, writes with per-update errors, wildcard
//! reads, packet-in/out, reconnecting.

mod common;

use common::*;
use nos_core::backend::{PacketDest, PacketIn, PacketOut, PuntReason};
use nos_core::{Delta, ForwardingState, PortId};
use p4::client::{Client, Failover, Mastership, PipelineOutcome, WriteError};
use p4::compile::Compiler;
use p4::p4info::Schema;
use p4runtime_proto::p4::v1 as p4v1;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(5);

fn is_primary(m: &Mastership) -> bool {
    matches!(m, Mastership::Primary { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitration_primary_and_backup() {
    init_logs();
    let t = Target::start().await;
    let a = Client::connect(t.client_config()).await.unwrap();
    let Mastership::Primary { election_id: a_id } = a.mastership() else {
        panic!("the first controller is primary: {:?}", a.mastership());
    };
    a.ensure_pipeline(&pipeline()).await.unwrap();

    // A backup stays a backup and may not write.
    let mut cfg = t.client_config();
    cfg.failover = Failover::Backup;
    let b = Client::connect(cfg).await.unwrap();
    assert_eq!(
        b.mastership(),
        Mastership::Backup {
            primary: Some(a_id)
        }
    );
    let e = b.write(vec![p4v1::Update::default()]).await.unwrap_err();
    assert!(
        matches!(e, WriteError::Request(p4::ClientError::NotPrimary(_))),
        "{e:?}"
    );

    // The primary leaves: the backup takes over with a higher id.
    drop(a);
    let m = b.wait_for(WAIT, is_primary).await.unwrap();
    let Mastership::Primary { election_id: b_id } = m else {
        panic!("the backup took over: {m:?}");
    };
    assert!(b_id > a_id, "election ids only grow");
    assert_eq!(b.pipeline_cookie().await.unwrap(), Some(pipeline().cookie));

    // A controller that wants to be primary claims the role above the
    // current one; the deposed backup-minded controller stays a backup.
    let c = Client::connect(t.client_config()).await.unwrap();
    let m = c.wait_for(WAIT, is_primary).await.unwrap();
    let Mastership::Primary { election_id: c_id } = m else {
        panic!("{m:?}")
    };
    assert!(c_id > b_id);
    let m = b
        .wait_for(WAIT, |m| matches!(m, Mastership::Backup { .. }))
        .await
        .unwrap();
    assert_eq!(
        m,
        Mastership::Backup {
            primary: Some(c_id)
        }
    );
    // Nobody ping-pongs: still the same after a while.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.mastership(), Mastership::Primary { election_id: c_id });

    // A wrong device id: the target ends the stream.
    let mut cfg = t.client_config();
    cfg.device_id = 99;
    let e = Client::connect(cfg).await.unwrap_err();
    assert!(matches!(e, p4::ClientError::StreamClosed(_)), "{e:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_is_pushed_once_per_cookie() {
    init_logs();
    let t = Target::start().await;
    let c = Client::connect(t.client_config()).await.unwrap();
    assert_eq!(c.capabilities().await.unwrap(), "1.6.0");
    assert_eq!(c.pipeline_cookie().await.unwrap(), None);
    let p = pipeline();
    assert_eq!(
        c.ensure_pipeline(&p).await.unwrap(),
        PipelineOutcome::Pushed
    );
    assert_eq!(
        c.ensure_pipeline(&p).await.unwrap(),
        PipelineOutcome::AlreadyInstalled
    );
    // The P4Info the target reports resolves to the same schema.
    let reported = c.target_p4info().await.unwrap().expect("a P4Info");
    assert_eq!(
        Schema::from_p4info(&reported).unwrap(),
        Schema::from_p4info(&p.p4info).unwrap()
    );
    // Entries survive a reconnect that finds the same cookie...
    let s = Arc::new(Schema::from_p4info(&reported).unwrap());
    let compiler = Compiler::new(s, None);
    let mut model = ForwardingState::new();
    let mut ups = Vec::new();
    for d in deltas(&state()) {
        ups.extend(compiler.delta(&mut model, &d).unwrap().updates);
    }
    let r = p4::write::write_ordered(&c, ups, Default::default()).await;
    assert_eq!(r.failures(), 0, "{:?}", r.results);
    drop(c);
    let c = Client::connect(t.client_config()).await.unwrap();
    c.wait_for(WAIT, is_primary).await.unwrap();
    assert_eq!(
        c.ensure_pipeline(&p).await.unwrap(),
        PipelineOutcome::AlreadyInstalled
    );
    assert!(!t.server.model().routes().is_empty());
    // ...and another device config is a new pipeline (which clears them).
    let other = p4::PipelineConfig::new(p.p4info.clone(), b"other".to_vec());
    assert_ne!(other.cookie, p.cookie);
    assert_eq!(
        c.ensure_pipeline(&other).await.unwrap(),
        PipelineOutcome::Pushed
    );
    assert!(t.server.model().routes().is_empty());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_report_per_update_errors_and_reads_take_wildcards() {
    init_logs();
    let t = Target::start().await;
    let c = Client::connect(t.client_config()).await.unwrap();
    c.ensure_pipeline(&pipeline()).await.unwrap();
    let info = c.target_p4info().await.unwrap().unwrap();
    let names = p4::P4Names::new(&info);
    let compiler = Compiler::new(Arc::new(Schema::resolve(&names).unwrap()), None);
    let mut model = ForwardingState::new();
    let mut ups = Vec::new();
    for d in deltas(&state()) {
        ups.extend(compiler.delta(&mut model, &d).unwrap().updates);
    }
    let n = ups.len();
    let r = p4::write::write_ordered(
        &c,
        ups.clone(),
        p4::write::WriteOptions {
            max_batch: 3,
            max_in_flight: 2,
            idempotent: false,
        },
    )
    .await;
    assert_eq!(r.failures(), 0, "{:?}", r.results);
    assert!(r.rpcs >= n / 3, "batches of at most 3: {} RPCs", r.rpcs);

    // The same batch again: every INSERT exists, each reported on its own.
    let inserts: Vec<p4v1::Update> = ups.into_iter().map(|p| p.update).collect();
    match c.write(inserts.clone()).await {
        Err(WriteError::Updates(each)) => {
            assert_eq!(each.len(), inserts.len());
            assert!(each
                .iter()
                .all(|e| matches!(e, Err(e) if e.code == Code::AlreadyExists)));
        }
        other => panic!("{other:?}"),
    }
    // A mixed batch: one good modify, one delete of nothing, one entry on
    // a port the target lacks.
    let mut m2 = model.clone();
    let good = compiler
        .delta(
            &mut m2,
            &Delta::Modify(route("0.0.0.0/0", nos_core::RouteAction::ToCpu)),
        )
        .unwrap()
        .updates;
    let missing = compiler
        .delta(
            &mut m2,
            &Delta::Delete(nos_core::ObjectKey::Route(nos_core::RouteKey {
                vrf: nos_core::VrfId(0),
                prefix: "203.0.113.0/24".parse().unwrap(),
            })),
        )
        .unwrap()
        .updates;
    let mut m3 = ForwardingState::new();
    m3.upsert(port(9)).unwrap();
    m3.upsert(nos_core::Object::Vrf(nos_core::Vrf {
        id: nos_core::VrfId(0),
        name: "d".into(),
    }))
    .unwrap();
    let bad = compiler
        .delta(&mut m3, &Delta::Create(rif(9, 9)))
        .unwrap()
        .updates;
    // Delete the route first so the batch's delete finds nothing.
    c.write(vec![missing[0].update.clone()]).await.unwrap();
    let batch = vec![
        good[0].update.clone(),
        missing[0].update.clone(),
        bad[0].update.clone(),
    ];
    match c.write(batch).await {
        Err(WriteError::Updates(each)) => {
            assert_eq!(each[0], Ok(()));
            assert_eq!(each[1].as_ref().unwrap_err().code, Code::NotFound);
            let e = each[2].as_ref().unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument);
            assert!(e.message.contains("port 9"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }

    // Wildcard reads: every table, then one table.
    let all = c.read_all_tables().await.unwrap();
    assert_eq!(all.len(), n - 1, "one route was deleted");
    let v4 = names.table("ipv4_lpm").unwrap().id;
    let routes = c
        .read(vec![p4v1::Entity {
            entity: Some(p4v1::entity::Entity::TableEntry(p4v1::TableEntry {
                table_id: v4,
                ..Default::default()
            })),
        }])
        .await
        .unwrap();
    assert_eq!(routes.len(), 3, "the IPv4 routes left");
    for e in &routes {
        let (k, _) = p4::canon::canonical(&names, e).unwrap();
        assert_eq!(p4::canon::key_table(&k), v4);
    }
    // A read of a table the P4Info lacks fails as a whole.
    let e = c
        .read(vec![p4v1::Entity {
            entity: Some(p4v1::entity::Entity::TableEntry(p4v1::TableEntry {
                table_id: 12345,
                ..Default::default()
            })),
        }])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_in_and_out_carry_controller_metadata() {
    init_logs();
    let t = Target::start().await;
    let c = Client::connect(t.client_config()).await.unwrap();
    c.ensure_pipeline(&pipeline()).await.unwrap();
    let schema = Schema::from_p4info(&c.target_p4info().await.unwrap().unwrap()).unwrap();
    let mut pins = c.take_packet_ins().unwrap();
    assert!(c.take_packet_ins().is_none(), "taken once");

    (t.relay.sink())(PacketIn {
        port: PortId(3),
        reason: PuntReason::TtlExpired,
        frame: vec![0xab; 60],
    });
    let p = tokio::time::timeout(WAIT, pins.recv())
        .await
        .unwrap()
        .unwrap();
    let back = p4::packet::decode_packet_in(&schema, &p).unwrap();
    assert_eq!(back.port, PortId(3));
    assert_eq!(back.reason, PuntReason::TtlExpired);
    assert_eq!(back.frame, vec![0xab; 60]);

    let sent: Arc<Mutex<Vec<PacketOut>>> = Arc::default();
    let s = sent.clone();
    t.server.set_packet_sender(Arc::new(move |p| {
        s.lock().unwrap().push(p);
        Ok(())
    }));
    for dest in [PacketDest::Port(PortId(2)), PacketDest::Ingress(PortId(1))] {
        let out = p4::packet::encode_packet_out(
            &schema,
            PacketOut {
                dest,
                frame: vec![1, 2, 3],
            },
        )
        .unwrap();
        c.packet_out(out).await.unwrap();
    }
    // A port the target lacks comes back as a stream error.
    let mut errors = c.take_stream_errors().unwrap();
    let bad = p4::packet::encode_packet_out(
        &schema,
        PacketOut {
            dest: PacketDest::Port(PortId(7)),
            frame: vec![],
        },
    )
    .unwrap();
    c.packet_out(bad).await.unwrap();
    let e = tokio::time::timeout(WAIT, errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Code::from(e.canonical_code), Code::InvalidArgument);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent.iter().map(|p| p.dest).collect::<Vec<_>>(),
        vec![PacketDest::Port(PortId(2)), PacketDest::Ingress(PortId(1))]
    );
    assert_eq!(sent[0].frame, vec![1, 2, 3]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_retries_with_backoff_until_the_target_is_up() {
    init_logs();
    // Find a free port, then start the target on it a little later.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let mut cfg = p4::ClientConfig::new(addr.to_string(), DEVICE);
    cfg.connect_timeout = Duration::from_millis(500);
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Target::start_at(addr).await
    });
    let mut attempts = 0;
    let c = Client::connect_with_backoff(
        cfg,
        Duration::from_millis(50),
        Duration::from_millis(200),
        |n, _| {
            attempts = n;
            n > 100
        },
    )
    .await
    .unwrap();
    assert!(attempts >= 1, "it failed before the target was up");
    assert!(is_primary(&c.mastership()));
    starter.await.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_election_id_is_used_as_it_is_and_never_raised() {
    init_logs();
    let t = Target::start().await;
    // A clock-based controller is primary with a far higher id.
    let b = Client::connect(t.client_config()).await.unwrap();
    let Mastership::Primary { election_id: b_id } = b.mastership() else {
        panic!("the first controller is primary: {:?}", b.mastership())
    };
    // One with a fixed id stays a backup instead of claiming above it.
    let mut cfg = t.client_config();
    cfg.election_id = Some(10);
    let a = Client::connect(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.mastership(),
        Mastership::Backup {
            primary: Some(b_id)
        }
    );
    assert_eq!(b.mastership(), Mastership::Primary { election_id: b_id });
    // With the primary gone it does not raise its id either: the target
    // wants at least the highest id it has seen, so there is no primary.
    drop(b);
    let m = a
        .wait_for(WAIT, |m| matches!(m, Mastership::NoPrimary { .. }))
        .await
        .unwrap();
    assert_eq!(
        m,
        Mastership::NoPrimary {
            highest: Some(b_id)
        }
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!is_primary(&a.mastership()));
    drop(a);

    // On a target that has seen no higher id, the fixed id is used as it is.
    let t2 = Target::start().await;
    let mut cfg = t2.client_config();
    cfg.election_id = Some(10);
    let c = Client::connect(cfg).await.unwrap();
    assert_eq!(c.mastership(), Mastership::Primary { election_id: 10 });
    t2.stop().await;
    t.stop().await;
}
