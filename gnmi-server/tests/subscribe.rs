//! Subscribe over real gRPC: ONCE, POLL, STREAM with ON_CHANGE and SAMPLE
//! (suppress_redundant, heartbeat), updates_only, several subscribers, a
//! subscriber too slow to keep up, and refused requests.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use gnmi_server::proto::gnmi::{
    subscribe_request, subscribe_response, subscription_list, Encoding, Path, Poll,
    SubscribeRequest, SubscribeResponse, Subscription, SubscriptionList, SubscriptionMode,
};
use gnmi_server::{GnmiClient, InterfaceCounters, InterfaceState, OperStatus, State};
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

/// How long a test waits for something that must come.
const PATIENCE: Duration = Duration::from_secs(5);

/// One response, decoded.
#[derive(Debug, PartialEq)]
enum Msg {
    Update {
        timestamp: i64,
        prefix: Option<Path>,
        updates: BTreeMap<String, Json>,
        deletes: Vec<String>,
    },
    Sync,
}

impl Msg {
    fn updates(&self) -> &BTreeMap<String, Json> {
        match self {
            Msg::Update { updates, .. } => updates,
            Msg::Sync => panic!("a sync_response, not an update"),
        }
    }
}

fn decode(r: SubscribeResponse) -> Msg {
    match r.response.expect("a response") {
        subscribe_response::Response::SyncResponse(true) => Msg::Sync,
        subscribe_response::Response::Update(n) => Msg::Update {
            timestamp: n.timestamp,
            prefix: n.prefix.clone(),
            updates: n
                .update
                .iter()
                .map(|u| (text(u.path.as_ref().expect("path")), json_of(&u.val)))
                .collect(),
            deletes: n.delete.iter().map(text).collect(),
        },
        other => panic!("unexpected response {other:?}"),
    }
}

/// A Subscribe RPC: its request stream stays open until dropped.
struct Sub {
    requests: mpsc::Sender<SubscribeRequest>,
    responses: Streaming<SubscribeResponse>,
}

impl Sub {
    /// The next response, or the status that ended the RPC (`Ok(None)`
    /// when it ended with OK); fails the test after [`PATIENCE`].
    async fn next(&mut self) -> Result<Option<Msg>, Status> {
        match tokio::time::timeout(PATIENCE, self.responses.message()).await {
            Ok(r) => r.map(|m| m.map(decode)),
            Err(_) => panic!("no response within {PATIENCE:?}"),
        }
    }

    /// The next update or sync (the RPC must go on).
    async fn msg(&mut self) -> Msg {
        self.next()
            .await
            .expect("the subscription failed")
            .expect("the subscription ended")
    }

    /// The next response within `d`, if any.
    async fn within(&mut self, d: Duration) -> Option<Msg> {
        match tokio::time::timeout(d, self.responses.message()).await {
            Ok(r) => Some(decode(r.expect("status").expect("ended"))),
            Err(_) => None,
        }
    }

    /// Updates until the sync_response, merged.
    async fn until_sync(&mut self) -> BTreeMap<String, Json> {
        let mut all = BTreeMap::new();
        loop {
            match self.msg().await {
                Msg::Sync => return all,
                Msg::Update { updates, .. } => all.extend(updates),
            }
        }
    }

    async fn poll(&self) {
        self.requests
            .send(SubscribeRequest {
                request: Some(subscribe_request::Request::Poll(Poll {})),
                ..Default::default()
            })
            .await
            .expect("send poll");
    }
}

async fn subscribe_on(
    client: &mut GnmiClient<Channel>,
    list: SubscriptionList,
) -> Result<Sub, Status> {
    let (requests, rx) = mpsc::channel(8);
    requests
        .send(SubscribeRequest {
            request: Some(subscribe_request::Request::Subscribe(list)),
            ..Default::default()
        })
        .await
        .expect("queue the request");
    let responses = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Sub {
        requests,
        responses,
    })
}

async fn subscribe(client: &mut GnmiClient<Channel>, list: SubscriptionList) -> Sub {
    subscribe_on(client, list).await.expect("Subscribe")
}

fn list(mode: subscription_list::Mode, subs: Vec<Subscription>) -> SubscriptionList {
    SubscriptionList {
        mode: mode as i32,
        subscription: subs,
        encoding: Encoding::Json as i32,
        ..Default::default()
    }
}

fn entry(p: &str) -> Subscription {
    Subscription {
        path: Some(path(p)),
        ..Default::default()
    }
}

fn on_change(p: &str) -> Subscription {
    Subscription {
        mode: SubscriptionMode::OnChange as i32,
        ..entry(p)
    }
}

fn sample(p: &str, every: Duration, suppress: bool, heartbeat: Option<Duration>) -> Subscription {
    Subscription {
        mode: SubscriptionMode::Sample as i32,
        sample_interval: every.as_nanos() as u64,
        suppress_redundant: suppress,
        heartbeat_interval: heartbeat.map_or(0, |h| h.as_nanos() as u64),
        ..entry(p)
    }
}

const HOSTNAME: &str = "/system/config/hostname";
const ETH1_DESCRIPTION: &str = "/interfaces/interface[name=eth1]/config/description";
const ETH1_COUNTERS: &str = "/interfaces/interface[name=eth1]/state/counters";

/// Commits a new hostname through the backend, as the daemon's other
/// writers (nosctl) would.
async fn commit_hostname(server: &Running, name: &str) {
    let (mut config, head) = gnmi_server::Backend::config(server.backend.as_ref()).await;
    config.system.hostname = name.into();
    gnmi_server::Backend::commit(server.backend.as_ref(), config, "test".into(), head)
        .await
        .expect("commit");
}

fn counters(n: u64) -> InterfaceCounters {
    InterfaceCounters {
        in_octets: 100 * n,
        in_pkts: n,
        in_errors: 0,
        in_discards: 0,
        out_octets: 200 * n,
        out_pkts: 2 * n,
        out_errors: 0,
        out_discards: 0,
    }
}

/// eth1..eth3 with `oper` for eth1 and counters from `n`.
fn state(oper: OperStatus, n: u64) -> State {
    let mut interfaces = BTreeMap::new();
    for (i, name) in ["eth1", "eth2", "eth3"].into_iter().enumerate() {
        interfaces.insert(
            name.to_owned(),
            InterfaceState {
                oper_status: if i == 0 { oper } else { OperStatus::Down },
                counters: Some(counters(n + i as u64)),
            },
        );
    }
    State {
        interfaces,
        boot_time_ns: Some(1_700_000_000_000_000_000),
        ..Default::default()
    }
}

#[tokio::test]
async fn once_sends_the_values_then_sync_and_ends() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut sub = subscribe(
        &mut client,
        list(
            subscription_list::Mode::Once,
            vec![
                entry(HOSTNAME),
                entry("/interfaces/interface[name=eth1]/config"),
            ],
        ),
    )
    .await;
    let got = sub.until_sync().await;
    assert_eq!(got.get(HOSTNAME), Some(&json!("r1")));
    assert_eq!(got.get(ETH1_DESCRIPTION), Some(&json!("uplink")));
    assert_eq!(
        got.get("/interfaces/interface[name=eth1]/config/mtu"),
        Some(&json!(1500))
    );
    assert!(
        got.keys()
            .all(|k| k == HOSTNAME || k.starts_with("/interfaces/interface[name=eth1]/config/")),
        "{got:?}"
    );
    assert!(sub.next().await.expect("OK").is_none(), "the RPC ends");

    // updates_only: the sync_response alone.
    let mut only = list(subscription_list::Mode::Once, vec![entry(HOSTNAME)]);
    only.updates_only = true;
    let mut sub = subscribe(&mut client, only).await;
    assert_eq!(sub.msg().await, Msg::Sync);
    assert!(sub.next().await.expect("OK").is_none());
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn once_with_a_prefix_and_target_answers_relative_paths() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut prefix = path("/interfaces/interface[name=eth1]");
    prefix.target = "dut".into();
    let mut l = list(
        subscription_list::Mode::Once,
        vec![entry("/config/description")],
    );
    l.prefix = Some(prefix.clone());
    l.encoding = Encoding::JsonIetf as i32;
    let mut sub = subscribe(&mut client, l).await;
    match sub.msg().await {
        Msg::Update {
            prefix: p, updates, ..
        } => {
            assert_eq!(p, Some(prefix));
            assert_eq!(
                updates,
                BTreeMap::from([("/config/description".to_owned(), json!("uplink"))])
            );
        }
        Msg::Sync => panic!("no update"),
    }
    assert_eq!(sub.msg().await, Msg::Sync);
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn poll_answers_each_poll_with_the_current_values() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut sub = subscribe(
        &mut client,
        list(subscription_list::Mode::Poll, vec![entry(HOSTNAME)]),
    )
    .await;
    assert_eq!(sub.until_sync().await.get(HOSTNAME), Some(&json!("r1")));
    // Nothing comes unasked.
    commit_hostname(&server, "r2").await;
    assert_eq!(sub.within(Duration::from_millis(300)).await, None);
    sub.poll().await;
    assert_eq!(sub.until_sync().await.get(HOSTNAME), Some(&json!("r2")));
    sub.poll().await;
    assert_eq!(sub.until_sync().await.get(HOSTNAME), Some(&json!("r2")));

    // A second SubscriptionList on the same RPC is refused.
    sub.requests
        .send(SubscribeRequest {
            request: Some(subscribe_request::Request::Subscribe(list(
                subscription_list::Mode::Poll,
                vec![entry(HOSTNAME)],
            ))),
            ..Default::default()
        })
        .await
        .expect("send");
    let err = sub.next().await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Closing the request stream ends a POLL subscription.
    let mut sub = subscribe(
        &mut client,
        list(subscription_list::Mode::Poll, vec![entry(HOSTNAME)]),
    )
    .await;
    sub.until_sync().await;
    let Sub {
        requests,
        mut responses,
    } = sub;
    drop(requests);
    let end = tokio::time::timeout(PATIENCE, responses.message())
        .await
        .expect("ends");
    assert!(matches!(end, Ok(None)), "{end:?}");
    drop(responses);
    server.stop().await;
}

#[tokio::test]
async fn stream_on_change_sees_commits_and_sets() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut sub = subscribe(
        &mut client,
        list(
            subscription_list::Mode::Stream,
            vec![on_change(HOSTNAME), on_change(ETH1_DESCRIPTION)],
        ),
    )
    .await;
    let initial = sub.until_sync().await;
    assert_eq!(
        initial,
        BTreeMap::from([
            (HOSTNAME.to_owned(), json!("r1")),
            (ETH1_DESCRIPTION.to_owned(), json!("uplink")),
        ])
    );

    // A commit through the backend (as nosctl's would be).
    let before = now_ns();
    commit_hostname(&server, "r2").await;
    match sub.msg().await {
        Msg::Update {
            timestamp,
            updates,
            deletes,
            ..
        } => {
            assert_eq!(
                updates,
                BTreeMap::from([(HOSTNAME.to_owned(), json!("r2"))])
            );
            assert!(deletes.is_empty());
            assert!(timestamp >= before, "{timestamp} < {before}");
        }
        Msg::Sync => panic!("a second sync_response"),
    }

    // A gNMI Set of the interface description, from another client.
    let mut other = server.client().await;
    other
        .set(set_request(
            &[],
            vec![],
            vec![json_update(ETH1_DESCRIPTION, json!("to the core"))],
        ))
        .await
        .expect("Set");
    assert_eq!(
        sub.msg().await.updates(),
        &BTreeMap::from([(ETH1_DESCRIPTION.to_owned(), json!("to the core"))])
    );

    // Deleting it is a delete.
    other
        .set(set_request(&[ETH1_DESCRIPTION], vec![], vec![]))
        .await
        .expect("Set delete");
    match sub.msg().await {
        Msg::Update {
            updates, deletes, ..
        } => {
            assert!(updates.is_empty(), "{updates:?}");
            assert_eq!(deletes, vec![ETH1_DESCRIPTION.to_owned()]);
        }
        Msg::Sync => panic!("a second sync_response"),
    }

    // A change elsewhere sends nothing here.
    other
        .set(set_request(
            &[],
            vec![],
            vec![json_update(
                "/interfaces/interface[name=eth2]/config/mtu",
                json!(9000),
            )],
        ))
        .await
        .expect("Set mtu");
    assert_eq!(sub.within(Duration::from_millis(300)).await, None);
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn stream_on_change_follows_interface_state() {
    let server = common::start().await;
    server.backend.set_state(state(OperStatus::Down, 1));
    let mut client = server.client().await;
    let oper = "/interfaces/interface[name=eth1]/state/oper-status";
    let mut sub = subscribe(
        &mut client,
        list(subscription_list::Mode::Stream, vec![on_change(oper)]),
    )
    .await;
    assert_eq!(sub.until_sync().await.get(oper), Some(&json!("DOWN")));
    server.backend.set_state(state(OperStatus::Up, 1));
    assert_eq!(
        sub.msg().await.updates(),
        &BTreeMap::from([(oper.to_owned(), json!("UP"))])
    );
    // Counters moving do not touch this subscription.
    server.backend.set_state(state(OperStatus::Up, 2));
    assert_eq!(sub.within(Duration::from_millis(300)).await, None);
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn a_path_that_does_not_exist_yet_is_followed_until_it_does() {
    let server = common::start().await;
    let mut client = server.client().await;
    let eth9 = "/interfaces/interface[name=eth9]/config/description";
    let mut sub = subscribe(
        &mut client,
        list(subscription_list::Mode::Stream, vec![on_change(eth9)]),
    )
    .await;
    assert!(sub.until_sync().await.is_empty());
    client
        .set(set_request(
            &[],
            vec![],
            vec![json_update(
                "/interfaces/interface[name=eth9]/config",
                json!({"name": "eth9", "description": "new port"}),
            )],
        ))
        .await
        .expect("Set");
    assert_eq!(
        sub.msg().await.updates(),
        &BTreeMap::from([(eth9.to_owned(), json!("new port"))])
    );
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn absurd_intervals_are_served_without_harm() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut hb = on_change(HOSTNAME);
    hb.heartbeat_interval = u64::MAX;
    let mut s = sample(HOSTNAME, Duration::from_millis(100), true, None);
    s.sample_interval = u64::MAX;
    s.heartbeat_interval = u64::MAX;
    let mut sub = subscribe(
        &mut client,
        list(subscription_list::Mode::Stream, vec![hb, s]),
    )
    .await;
    assert_eq!(sub.until_sync().await.get(HOSTNAME), Some(&json!("r1")));
    commit_hostname(&server, "r3").await;
    assert_eq!(sub.msg().await.updates().get(HOSTNAME), Some(&json!("r3")));
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn stream_updates_only_starts_with_sync() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut l = list(subscription_list::Mode::Stream, vec![on_change(HOSTNAME)]);
    l.updates_only = true;
    let mut sub = subscribe(&mut client, l).await;
    assert_eq!(sub.msg().await, Msg::Sync);
    assert_eq!(sub.within(Duration::from_millis(200)).await, None);
    commit_hostname(&server, "r9").await;
    assert_eq!(
        sub.msg().await.updates(),
        &BTreeMap::from([(HOSTNAME.to_owned(), json!("r9"))])
    );
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn sample_sends_everything_every_interval() {
    let server = common::start().await;
    server.backend.set_state(state(OperStatus::Up, 1));
    let mut client = server.client().await;
    let every = Duration::from_millis(100);
    let mut sub = subscribe(
        &mut client,
        list(
            subscription_list::Mode::Stream,
            vec![sample(ETH1_COUNTERS, every, false, None)],
        ),
    )
    .await;
    let initial = sub.until_sync().await;
    assert_eq!(initial.len(), 8, "{initial:?}");
    assert_eq!(
        initial.get(&format!("{ETH1_COUNTERS}/in-pkts")),
        Some(&json!(1))
    );
    // Samples fall on the interval's grid from the subscription on; one
    // taken late (a busy machine) is not made up for, so only samples two
    // apart are sure to be a full interval apart.
    let mut stamps = Vec::new();
    for _ in 0..4 {
        match sub.msg().await {
            Msg::Update {
                timestamp, updates, ..
            } => {
                assert_eq!(updates.len(), 8, "every leaf, every time: {updates:?}");
                stamps.push(timestamp);
            }
            Msg::Sync => panic!("a second sync_response"),
        }
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    assert!(stamps[3] - stamps[1] >= 100_000_000, "{stamps:?}");
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn sample_with_suppress_redundant_sends_changed_leaves_and_heartbeats() {
    let server = common::start().await;
    server.backend.set_state(state(OperStatus::Up, 1));
    let mut client = server.client().await;
    let every = Duration::from_millis(100);
    let mut sub = subscribe(
        &mut client,
        list(
            subscription_list::Mode::Stream,
            vec![sample(ETH1_COUNTERS, every, true, None)],
        ),
    )
    .await;
    assert_eq!(sub.until_sync().await.len(), 8);
    // Nothing changes: several intervals pass in silence.
    assert_eq!(sub.within(Duration::from_millis(450)).await, None);
    // One counter moves: only it is sent.
    let mut s = state(OperStatus::Up, 1);
    if let Some(c) = s
        .interfaces
        .get_mut("eth1")
        .and_then(|i| i.counters.as_mut())
    {
        c.in_errors = 7;
    }
    server.backend.set_state(s);
    assert_eq!(
        sub.msg().await.updates(),
        &BTreeMap::from([(format!("{ETH1_COUNTERS}/in-errors"), json!(7))])
    );
    assert_eq!(sub.within(Duration::from_millis(300)).await, None);
    drop(sub);

    // With a heartbeat, everything again once per heartbeat interval.
    let mut sub = subscribe(
        &mut client,
        list(
            subscription_list::Mode::Stream,
            vec![sample(
                ETH1_COUNTERS,
                every,
                true,
                Some(Duration::from_millis(300)),
            )],
        ),
    )
    .await;
    assert_eq!(sub.until_sync().await.len(), 8);
    let start = Instant::now();
    let beat = sub.msg().await;
    assert_eq!(beat.updates().len(), 8, "{beat:?}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(3),
        "heartbeat after {elapsed:?}"
    );
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn on_change_heartbeat_repeats_unchanged_values() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut hb = on_change(HOSTNAME);
    hb.heartbeat_interval = Duration::from_millis(200).as_nanos() as u64;
    let mut sub = subscribe(&mut client, list(subscription_list::Mode::Stream, vec![hb])).await;
    sub.until_sync().await;
    for _ in 0..2 {
        assert_eq!(
            sub.msg().await.updates(),
            &BTreeMap::from([(HOSTNAME.to_owned(), json!("r1"))])
        );
    }
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn two_subscribers_see_the_same_change() {
    let server = common::start().await;
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let mut a = subscribe(
        &mut c1,
        list(subscription_list::Mode::Stream, vec![on_change(HOSTNAME)]),
    )
    .await;
    let mut b = subscribe(
        &mut c2,
        list(subscription_list::Mode::Stream, vec![on_change("/system")]),
    )
    .await;
    a.until_sync().await;
    assert_eq!(b.until_sync().await.get(HOSTNAME), Some(&json!("r1")));
    commit_hostname(&server, "both").await;
    assert_eq!(a.msg().await.updates().get(HOSTNAME), Some(&json!("both")));
    // The /system subscriber may also see the clock tick; it sees the
    // hostname in the same change.
    let mut seen = None;
    while seen.is_none() {
        seen = b.msg().await.updates().get(HOSTNAME).cloned();
    }
    assert_eq!(seen, Some(json!("both")));
    // One leaves; the other goes on.
    drop(a);
    commit_hostname(&server, "one").await;
    let mut seen = None;
    while seen.is_none() {
        seen = b.msg().await.updates().get(HOSTNAME).cloned();
    }
    assert_eq!(seen, Some(json!("one")));
    drop(b);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_subscriber_is_cut_off_alone() {
    let server = common::start_with_queue(4).await;
    server.backend.set_state(state(OperStatus::Up, 0));
    // The slow client gets a small HTTP/2 window, so that what it does not
    // read soon backs up into its queue on the server.
    let slow_channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .expect("connect");
    let mut slow_client = GnmiClient::new(slow_channel);
    let mut fast_client = server.client().await;
    let counters = "/interfaces/interface[name=*]/state/counters";
    let mut slow = subscribe(
        &mut slow_client,
        list(subscription_list::Mode::Stream, vec![on_change(counters)]),
    )
    .await;
    let mut fast = subscribe(
        &mut fast_client,
        list(subscription_list::Mode::Stream, vec![on_change(counters)]),
    )
    .await;
    assert_eq!(fast.until_sync().await.len(), 24);

    // Counters move; the fast subscriber reads each change before the next
    // one is made. The slow one reads nothing.
    let key = "/interfaces/interface[name=eth1]/state/counters/in-pkts";
    let rounds = 300;
    let start = Instant::now();
    for n in 1..=rounds {
        server.backend.set_state(state(OperStatus::Up, n));
        loop {
            let msg = fast.msg().await;
            if msg.updates().get(key) == Some(&json!(n)) {
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "{rounds} changes took {elapsed:?}"
    );

    // The slow subscriber finds what was already on its way, then the end.
    let mut received = 0;
    let status = loop {
        match slow.next().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the slow subscription ended with OK after {received}"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("too slow"), "{status:?}");
    assert!(received < rounds as usize, "{received} responses arrived");

    // The fast one carries on, and new subscribers are served.
    server.backend.set_state(state(OperStatus::Up, 5000));
    loop {
        if fast.msg().await.updates().get(key) == Some(&json!(5000)) {
            break;
        }
    }
    let mut again = subscribe(
        &mut slow_client,
        list(subscription_list::Mode::Once, vec![entry(key)]),
    )
    .await;
    assert_eq!(again.until_sync().await.get(key), Some(&json!(5000)));
    drop((fast, again));
    server.stop().await;
}

#[tokio::test]
async fn bad_subscriptions_are_refused_with_the_right_code() {
    let server = common::start().await;
    let mut client = server.client().await;
    let cases: Vec<(SubscriptionList, Code)> = vec![
        (
            list(subscription_list::Mode::Stream, vec![]),
            Code::InvalidArgument,
        ),
        (
            list(subscription_list::Mode::Once, vec![entry("/bogus/path")]),
            Code::InvalidArgument,
        ),
        (
            list(
                subscription_list::Mode::Stream,
                vec![sample(HOSTNAME, Duration::from_millis(1), false, None)],
            ),
            Code::InvalidArgument,
        ),
        (
            SubscriptionList {
                encoding: Encoding::Proto as i32,
                ..list(subscription_list::Mode::Once, vec![entry(HOSTNAME)])
            },
            Code::Unimplemented,
        ),
        (
            SubscriptionList {
                mode: 7,
                ..list(subscription_list::Mode::Once, vec![entry(HOSTNAME)])
            },
            Code::InvalidArgument,
        ),
    ];
    for (l, code) in cases {
        let got = match subscribe_on(&mut client, l.clone()).await {
            Err(s) => s,
            Ok(mut sub) => sub.next().await.expect_err("refused"),
        };
        assert_eq!(got.code(), code, "{l:?}: {got:?}");
    }

    // A Poll before any subscription.
    let (tx, rx) = mpsc::channel(1);
    tx.send(SubscribeRequest {
        request: Some(subscribe_request::Request::Poll(Poll {})),
        ..Default::default()
    })
    .await
    .expect("send");
    let got = match client.subscribe(ReceiverStream::new(rx)).await {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.expect_err("refused"),
    };
    assert_eq!(got.code(), Code::InvalidArgument, "{got:?}");

    // A second request on a STREAM subscription ends it; others go on.
    let mut other = subscribe(
        &mut client,
        list(subscription_list::Mode::Stream, vec![on_change(HOSTNAME)]),
    )
    .await;
    other.until_sync().await;
    let mut sub = subscribe(
        &mut client,
        list(subscription_list::Mode::Stream, vec![on_change(HOSTNAME)]),
    )
    .await;
    sub.until_sync().await;
    sub.poll().await;
    assert_eq!(
        sub.next().await.expect_err("refused").code(),
        Code::InvalidArgument
    );
    commit_hostname(&server, "still").await;
    assert_eq!(
        other.msg().await.updates().get(HOSTNAME),
        Some(&json!("still"))
    );
    drop((other, sub));
    server.stop().await;
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
