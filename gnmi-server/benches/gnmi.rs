//! gNMI server figures, over real gRPC on loopback:
//!
//! 1. ON_CHANGE throughput: one STREAM subscriber to every interface
//!    counter of a 1,000-port configuration (8,000 leaves) while the state
//!    changes every counter again and again; updates per second received
//!    by the client, which decodes each response down to its `Update`s
//!    (kept as bytes: the client's own parsing of paths into hash maps
//!    would otherwise share the two cores with the server).
//! 2. Set latency: 1,000 Sets, each changing one leaf (a port
//!    description) of a 64-port configuration, each one commit of a real
//!    sled store (flushed); p50/p99 as the client sees them, next to the
//!    bare `ConfigStore::commit` of the same change (the anchor: what the
//!    store alone costs).
//!
//! Run with `cargo bench -p gnmi-server --bench gnmi` (`-- on_change` or
//! `-- set` for one part).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gnmi_server::proto::gnmi::{
    subscribe_request, subscription_list, typed_value, Path, PathElem, SetRequest,
    SubscribeRequest, Subscription, SubscriptionList, SubscriptionMode, TypedValue, Update,
};
use gnmi_server::{
    GnmiClient, GnmiService, InterfaceCounters, InterfaceState, OperStatus, State, StoreBackend,
};
use nos_core::config::Config;
use nos_core::store::ConfigStore;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, Server};

const STREAM_PORTS: usize = 1_000;
const STREAM_SECONDS: u64 = 5;
/// Changes the producer may be ahead of the client.
const IN_FLIGHT: u64 = 4;
const SET_PORTS: usize = 64;
const SETS: usize = 1_000;

fn config(ports: usize) -> Config {
    let mut yaml = String::from("system:\n  hostname: bench\nports:\n");
    for i in 0..ports {
        yaml.push_str(&format!(
            "  - name: eth{i}\n    linux: e{i}\n    description: port {i}\n"
        ));
    }
    yaml.push_str("interfaces:\n");
    for i in 0..ports.min(200) {
        yaml.push_str(&format!(
            "  - name: eth{i}\n    port: eth{i}\n    ipv4: [10.{}.{}.1/24]\n",
            i / 256,
            i % 256
        ));
    }
    Config::from_yaml(&yaml).expect("the bench config is valid")
}

fn state(ports: usize, n: u64) -> State {
    let interfaces: BTreeMap<String, InterfaceState> = (0..ports)
        .map(|i| {
            let c = n * 10 + i as u64;
            (
                format!("eth{i}"),
                InterfaceState {
                    oper_status: OperStatus::Up,
                    counters: Some(InterfaceCounters {
                        in_octets: c * 1500,
                        in_pkts: c,
                        in_errors: c,
                        in_discards: c,
                        out_octets: c * 1400,
                        out_pkts: c + 1,
                        out_errors: c + 2,
                        out_discards: c + 3,
                    }),
                },
            )
        })
        .collect();
    State {
        interfaces,
        boot_time_ns: Some(1),
        ..Default::default()
    }
}

fn path(elems: &[(&str, Option<(&str, &str)>)]) -> Path {
    Path {
        elem: elems
            .iter()
            .map(|(name, key)| PathElem {
                name: (*name).to_owned(),
                key: key
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

async fn serve_at(backend: Arc<StoreBackend>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        Server::builder()
            .add_service(GnmiService::new(backend).into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

async fn serve(backend: Arc<StoreBackend>) -> GnmiClient<Channel> {
    let addr = serve_at(backend).await;
    GnmiClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
}

/// `gnmi.SubscribeResponse` as the counting client reads it: the
/// notification's updates as undecoded bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct CountedResponse {
    #[prost(message, optional, tag = "1")]
    update: Option<CountedNotification>,
    #[prost(bool, tag = "3")]
    sync_response: bool,
}

/// `gnmi.Notification` with its `update` field (4) as bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct CountedNotification {
    #[prost(bytes = "bytes", repeated, tag = "4")]
    update: Vec<prost::bytes::Bytes>,
}

/// Opens Subscribe with `request` and returns the responses, decoded as
/// [`CountedResponse`].
async fn counting_subscribe(
    addr: std::net::SocketAddr,
    request: SubscribeRequest,
) -> tonic::Streaming<CountedResponse> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<SubscribeRequest, CountedResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/gnmi.gNMI/Subscribe");
    // The request stream stays open: closing it is allowed, but keep the
    // RPC a plain long-lived subscription.
    let requests = tokio_stream::iter(vec![request]).chain(tokio_stream::pending());
    grpc.streaming(tonic::Request::new(requests), path, codec)
        .await
        .expect("Subscribe")
        .into_inner()
}

async fn on_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ConfigStore::open(&dir.path().join("store")).expect("store");
    store
        .commit(&config(STREAM_PORTS), Some("bench"))
        .expect("commit");
    let backend = Arc::new(StoreBackend::new(store).expect("backend"));
    backend.set_state(state(STREAM_PORTS, 0));
    let addr = serve_at(backend.clone()).await;

    let list = SubscriptionList {
        mode: subscription_list::Mode::Stream as i32,
        subscription: vec![Subscription {
            path: Some(path(&[
                ("interfaces", None),
                ("interface", None),
                ("state", None),
                ("counters", None),
            ])),
            mode: SubscriptionMode::OnChange as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = counting_subscribe(
        addr,
        SubscribeRequest {
            request: Some(subscribe_request::Request::Subscribe(list)),
            ..Default::default()
        },
    )
    .await;

    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let r = received.clone();
    let p = progress.clone();
    let reader = tokio::spawn(async move {
        let mut synced = false;
        while let Some(msg) = stream.message().await.expect("the stream goes on") {
            if msg.sync_response {
                synced = true;
            } else if let (Some(n), true) = (msg.update, synced) {
                r.fetch_add(n.update.len() as u64, Ordering::Relaxed);
                p.notify_one();
            }
        }
    });
    // Wait for the initial values and sync.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let per_change = STREAM_PORTS as u64 * 8;
    let start = Instant::now();
    let mut changes = 0u64;
    let received_at_start = received.load(Ordering::Relaxed);
    while start.elapsed() < Duration::from_secs(STREAM_SECONDS) {
        // Stay at most IN_FLIGHT changes ahead of what the client has read.
        while changes * per_change
            > received.load(Ordering::Relaxed) - received_at_start + IN_FLIGHT * per_change
        {
            if tokio::time::timeout(Duration::from_secs(10), progress.notified())
                .await
                .is_err()
            {
                panic!("the subscriber stalled");
            }
        }
        changes += 1;
        backend.set_state(state(STREAM_PORTS, changes));
    }
    let elapsed = start.elapsed();
    let got = received.load(Ordering::Relaxed) - received_at_start;
    reader.abort();
    println!(
        "ON_CHANGE to one subscriber: {STREAM_PORTS} ports x 8 counters, every counter changing"
    );
    println!(
        "  {:>10.0} updates/s on the wire ({got} updates in {:.2} s; {changes} state changes \
         announced, coalesced as they come)",
        got as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

fn description_update(text: &str) -> Update {
    Update {
        path: Some(path(&[
            ("interfaces", None),
            ("interface", Some(("name", "eth0"))),
            ("config", None),
            ("description", None),
        ])),
        val: Some(TypedValue {
            value: Some(typed_value::Value::JsonVal(
                serde_json::to_vec(text).expect("encode"),
            )),
        }),
        ..Default::default()
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (pct(0.5), pct(0.99), v[v.len() - 1])
}

async fn set_latency() {
    let base = config(SET_PORTS);

    // The anchor: the store's own commit of the same change.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ConfigStore::open(&dir.path().join("store")).expect("store");
    let mut bare = Vec::with_capacity(SETS);
    for i in 0..SETS {
        let mut c = base.clone();
        c.ports[0].description = Some(format!("revision {i}"));
        let t = Instant::now();
        store.commit(&c, Some("bench")).expect("commit");
        bare.push(t.elapsed());
    }
    drop(store);

    let dir = tempfile::tempdir().expect("temp dir");
    let store = ConfigStore::open(&dir.path().join("store")).expect("store");
    store.commit(&base, Some("bench")).expect("commit");
    let backend = Arc::new(StoreBackend::new(store).expect("backend"));
    let mut client = serve(backend.clone()).await;
    let mut sets = Vec::with_capacity(SETS);
    for i in 0..SETS {
        let req = SetRequest {
            update: vec![description_update(&format!("revision {i}"))],
            ..Default::default()
        };
        let t = Instant::now();
        client.set(req).await.expect("Set");
        sets.push(t.elapsed());
    }
    assert_eq!(
        backend.store().history().expect("history").len(),
        SETS + 1,
        "one commit per Set"
    );

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50, p99, max) = percentiles(sets);
    let (b50, b99, bmax) = percentiles(bare);
    println!("Set of one leaf, one sled commit each ({SETS} Sets, {SET_PORTS}-port configuration)");
    println!(
        "  gNMI Set       p50 {:>7.0} us   p99 {:>7.0} us   max {:>7.0} us",
        us(p50),
        us(p99),
        us(max)
    );
    println!(
        "  store commit   p50 {:>7.0} us   p99 {:>7.0} us   max {:>7.0} us   (anchor: ConfigStore::commit alone)",
        us(b50),
        us(b99),
        us(bmax)
    );
    println!(
        "  ratio          p50 {:>7.2}x     p99 {:>7.2}x",
        us(p50) / us(b50),
        us(p99) / us(b99)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // `-- on_change` or `-- set` runs one part only.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!("cargo bench -p gnmi-server --bench gnmi");
    rt.block_on(async {
        if run("on_change") {
            on_change().await;
        }
        if run("set") {
            set_latency().await;
        }
    });
}
