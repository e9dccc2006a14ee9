//! gNOI System over real gRPC: Time, Ping (real ICMP to the loopback
//! addresses) and Reboot / RebootStatus / CancelReboot with a hook that
//! records what it is told.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gnmi_server::gnoi::{RebootKind, RebootOrder, SystemService, IMMEDIATE_GRACE};
use gnmi_server::proto::gnoi::system::{
    system_client::SystemClient, CancelRebootRequest, PingRequest, PingResponse, RebootMethod,
    RebootRequest, RebootStatusRequest, TimeRequest,
};
use gnmi_server::proto::gnoi::types::{L3Protocol, Path as GnoiPath};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::Code;

struct Running {
    addr: SocketAddr,
    reboots: mpsc::UnboundedReceiver<RebootOrder>,
}

async fn start() -> Running {
    let (tx, reboots) = mpsc::unbounded_channel();
    let service = SystemService::new(Arc::new(move |o| {
        let _ = tx.send(o);
    }))
    .with_reboot_count(2);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Running { addr, reboots }
}

async fn client(r: &Running) -> SystemClient<Channel> {
    SystemClient::connect(format!("http://{}", r.addr))
        .await
        .expect("connect")
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

#[tokio::test]
async fn time_is_the_clock() {
    let r = start().await;
    let mut c = client(&r).await;
    let before = now_ns();
    let t = c
        .time(TimeRequest {})
        .await
        .expect("Time")
        .into_inner()
        .time;
    let after = now_ns();
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
}

async fn ping(
    c: &mut SystemClient<Channel>,
    req: PingRequest,
) -> Result<Vec<PingResponse>, tonic::Status> {
    let mut stream = c.ping(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a ping response within 20 s")?
    {
        out.push(r);
    }
    Ok(out)
}

#[tokio::test]
async fn ping_streams_each_reply_then_the_summary() {
    let r = start().await;
    let mut c = client(&r).await;
    let started = Instant::now();
    let got = ping(
        &mut c,
        PingRequest {
            destination: "127.0.0.1".into(),
            count: 3,
            interval: 200_000_000,
            size: 100,
            do_not_resolve: true,
            ..Default::default()
        },
    )
    .await
    .expect("Ping");
    // Two intervals of 200 ms at least between the first and the last.
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(got.len(), 4, "{got:?}");
    for (i, reply) in got[..3].iter().enumerate() {
        assert_eq!(reply.source, "127.0.0.1");
        assert_eq!(reply.sequence, i as i32 + 1);
        assert_eq!(reply.bytes, 108, "100 bytes of payload and the ICMP header");
        assert!(reply.ttl > 0);
        assert!(reply.time > 0 && reply.time < 1_000_000_000, "{reply:?}");
        assert_eq!(reply.sent, 0, "a reply is not the summary");
    }
    let summary = &got[3];
    assert_eq!((summary.sent, summary.received), (3, 3));
    assert!(summary.min_time > 0 && summary.min_time <= summary.avg_time);
    assert!(summary.avg_time <= summary.max_time);
    assert!(summary.time >= 400_000_000, "{summary:?}");

    // IPv6, and count 0 means 5.
    let got = ping(
        &mut c,
        PingRequest {
            destination: "::1".into(),
            interval: 10_000_000,
            l3protocol: L3Protocol::Ipv6 as i32,
            ..Default::default()
        },
    )
    .await
    .expect("Ping ::1");
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[0].source, "::1");
    assert_eq!((got[5].sent, got[5].received), (5, 5));
}

#[tokio::test]
async fn ping_refuses_bad_requests() {
    let r = start().await;
    let mut c = client(&r).await;
    let code = |r: Result<Vec<PingResponse>, tonic::Status>| r.map(|_| ()).map_err(|e| e.code());
    let req = |destination: &str| PingRequest {
        destination: destination.into(),
        count: 1,
        ..Default::default()
    };
    assert_eq!(
        code(ping(&mut c, req("")).await),
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        code(ping(&mut c, req("-f")).await),
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        code(ping(&mut c, req("no-such-host.invalid")).await),
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        code(
            ping(
                &mut c,
                PingRequest {
                    source: "203.0.113.77".into(),
                    ..req("127.0.0.1")
                }
            )
            .await
        ),
        Err(Code::InvalidArgument),
        "a source address the target does not have"
    );
    assert_eq!(
        code(
            ping(
                &mut c,
                PingRequest {
                    network_instance: "blue".into(),
                    ..req("127.0.0.1")
                }
            )
            .await
        ),
        Err(Code::Unimplemented)
    );
}

/// The children of this test process whose command line contains `needle`.
fn children_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name: state, then the parent's pid.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(me) && String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn a_cancelled_ping_stops() {
    let r = start().await;
    let mut c = client(&r).await;
    // A loopback address no other test pings, so this ping can be told apart
    // from theirs (the tests of this file run in one process).
    let dest = "127.0.0.77";
    let mut stream = c
        .ping(PingRequest {
            destination: dest.into(),
            count: -1,
            interval: 100_000_000,
            ..Default::default()
        })
        .await
        .expect("Ping")
        .into_inner();
    for seq in 1..=3 {
        let reply = stream.message().await.expect("reply").expect("more");
        assert_eq!(reply.sequence, seq);
    }
    let pids = children_with(dest);
    assert_eq!(pids.len(), 1, "one ping runs for the request: {pids:?}");
    drop(stream);
    // The server killed and reaped its ping: the process is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{}", pids[0])).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ping {} still exists 5 s after the client left",
            pids[0]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reboot_with_a_delay_can_be_cancelled() {
    let mut r = start().await;
    let mut c = client(&r).await;
    let status = c
        .reboot_status(RebootStatusRequest::default())
        .await
        .expect("RebootStatus")
        .into_inner();
    assert!(!status.active);
    assert_eq!(status.count, 2, "reboots before this start");

    c.reboot(RebootRequest {
        method: RebootMethod::Cold as i32,
        delay: 60_000_000_000,
        message: "maintenance".into(),
        ..Default::default()
    })
    .await
    .expect("Reboot");
    let status = c
        .reboot_status(RebootStatusRequest::default())
        .await
        .expect("RebootStatus")
        .into_inner();
    assert!(status.active);
    assert_eq!(status.reason, "maintenance");
    assert_eq!(status.method, RebootMethod::Cold as i32);
    assert!(
        status.wait > 50_000_000_000 && status.wait <= 60_000_000_000,
        "{status:?}"
    );
    assert!(status.when > now_ns());

    // Another reboot while one is pending is refused.
    let err = c
        .reboot(RebootRequest {
            method: RebootMethod::Warm as i32,
            ..Default::default()
        })
        .await
        .expect_err("a second reboot");
    assert_eq!(err.code(), Code::FailedPrecondition);

    c.cancel_reboot(CancelRebootRequest {
        message: "not now".into(),
        ..Default::default()
    })
    .await
    .expect("CancelReboot");
    assert!(
        !c.reboot_status(RebootStatusRequest::default())
            .await
            .expect("RebootStatus")
            .into_inner()
            .active
    );
    let err = c
        .cancel_reboot(CancelRebootRequest::default())
        .await
        .expect_err("nothing to cancel");
    assert_eq!(err.code(), Code::FailedPrecondition);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        r.reboots.try_recv().is_err(),
        "the cancelled reboot happened"
    );
}

#[tokio::test]
async fn an_immediate_reboot_happens_after_the_answer() {
    let mut r = start().await;
    let mut c = client(&r).await;
    let asked = Instant::now();
    c.reboot(RebootRequest {
        method: RebootMethod::Halt as i32,
        message: "power off".into(),
        ..Default::default()
    })
    .await
    .expect("Reboot");
    assert!(r.reboots.try_recv().is_err(), "not before the answer");
    let order = tokio::time::timeout(Duration::from_secs(5), r.reboots.recv())
        .await
        .expect("the reboot within 5 s")
        .expect("an order");
    assert!(asked.elapsed() >= IMMEDIATE_GRACE);
    assert_eq!(
        order,
        RebootOrder {
            kind: RebootKind::Halt,
            method: RebootMethod::Halt,
            message: "power off".into()
        }
    );
    let status = c
        .reboot_status(RebootStatusRequest::default())
        .await
        .expect("RebootStatus")
        .into_inner();
    assert!(!status.active);
    assert_eq!(status.count, 3);
    assert_eq!(status.reason, "power off");
}

#[tokio::test]
async fn unsupported_reboots_are_refused() {
    let r = start().await;
    let mut c = client(&r).await;
    let code = |m: RebootMethod, sub: bool| {
        let mut c = c.clone();
        async move {
            c.reboot(RebootRequest {
                method: m as i32,
                subcomponents: if sub {
                    vec![GnoiPath::default()]
                } else {
                    vec![]
                },
                ..Default::default()
            })
            .await
            .expect_err("refused")
            .code()
        }
    };
    assert_eq!(
        code(RebootMethod::Unknown, false).await,
        Code::InvalidArgument
    );
    assert_eq!(code(RebootMethod::Nsf, false).await, Code::Unimplemented);
    assert_eq!(code(RebootMethod::Cold, true).await, Code::Unimplemented);
    let err = c
        .reboot(RebootRequest {
            method: 42,
            ..Default::default()
        })
        .await
        .expect_err("unknown method");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        !c.reboot_status(RebootStatusRequest::default())
            .await
            .expect("status")
            .into_inner()
            .active
    );
}
