//! A gNMI server on an ephemeral loopback port, backed by a real config store
//! in a temporary directory, and helpers to talk to it with the generated
//! client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gnmi_server::proto::gnmi::{
    get_request::DataType, typed_value, Encoding, GetRequest, Notification, Path, PathElem,
    SetRequest, TypedValue, Update,
};
use gnmi_server::{Backend, GnmiClient, GnmiService, StoreBackend};
use nos_core::config::Config;
use nos_core::store::{CommitInfo, ConfigStore};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};

/// The configuration every test starts from (commit 1).
pub const BASE: &str = r#"
system:
  hostname: r1
ports:
  - name: eth1
    description: uplink
  - name: eth2
  - name: eth3
    linux: veth3
    mtu: 9000
    enabled: false
vrfs:
  - name: blue
vlans:
  - id: 10
    untagged: [eth3]
interfaces:
  - name: uplink
    port: eth1
    ipv4: [192.0.2.1/24]
    ipv6: ["2001:db8:1::1/64"]
  - name: eth1-v20
    port: eth1
    vlan: 20
    vrf: blue
    ipv4: [198.51.100.1/24]
  - name: users
    vlan: 10
    ipv4: [203.0.113.1/24]
static_routes:
  - prefix: 0.0.0.0/0
    next_hops:
      - address: 192.0.2.254
        weight: 3
  - prefix: 10.0.0.0/8
    vrf: blue
    distance: 20
    next_hops:
      - address: 198.51.100.2
        interface: eth1-v20
  - prefix: 172.16.0.0/12
    blackhole: true
"#;

pub struct Running {
    pub addr: SocketAddr,
    pub backend: Arc<StoreBackend>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("serve");
        }
    }

    pub fn store(&self) -> &ConfigStore {
        self.backend.store()
    }

    pub fn history(&self) -> Vec<CommitInfo> {
        self.store().history().expect("history")
    }

    pub async fn config(&self) -> Config {
        self.backend.config().await.0
    }

    pub async fn client(&self) -> GnmiClient<Channel> {
        GnmiClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }
}

/// Starts a server on a store holding [`BASE`] as commit 1.
pub async fn start() -> Running {
    start_with_queue(gnmi_server::DEFAULT_SUBSCRIBER_QUEUE).await
}

/// [`start`] with a subscriber queue of `queue` responses.
pub async fn start_with_queue(queue: usize) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ConfigStore::open(&dir.path().join("store")).expect("open store");
    let base = Config::from_yaml(BASE).expect("base config");
    store.commit(&base, Some("base")).expect("commit base");
    let backend = Arc::new(StoreBackend::new(store).expect("backend"));
    serve(backend.clone(), backend, dir, queue).await
}

/// Starts a server on `service_backend`; `backend` is the store behind it.
pub async fn start_with(
    backend: Arc<StoreBackend>,
    service_backend: Arc<dyn Backend>,
    dir: tempfile::TempDir,
) -> Running {
    serve(
        backend,
        service_backend,
        dir,
        gnmi_server::DEFAULT_SUBSCRIBER_QUEUE,
    )
    .await
}

async fn serve(
    backend: Arc<StoreBackend>,
    service_backend: Arc<dyn Backend>,
    dir: tempfile::TempDir,
    queue: usize,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        Server::builder()
            .add_service(
                GnmiService::new(service_backend)
                    .with_subscriber_queue(queue)
                    .into_server(),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    Running {
        addr,
        backend,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

/// Parses `/a/b[k=v]/c` (key values may hold `/`) into a gNMI path; a
/// leading `origin:` is not supported here, set `origin` instead.
pub fn path(text: &str) -> Path {
    path_in("", text)
}

pub fn path_in(origin: &str, text: &str) -> Path {
    let mut elems = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for ch in text.chars() {
        match ch {
            '[' => {
                depth += 1;
                cur.push(ch);
            }
            ']' => {
                depth -= 1;
                cur.push(ch);
            }
            '/' if depth == 0 => {
                if !cur.is_empty() {
                    elems.push(elem(&cur));
                    cur.clear();
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        elems.push(elem(&cur));
    }
    Path {
        origin: origin.into(),
        elem: elems,
        ..Default::default()
    }
}

fn elem(text: &str) -> PathElem {
    let (name, rest) = match text.find('[') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let mut key = HashMap::new();
    for part in rest.split(']').filter(|p| !p.is_empty()) {
        let part = part.trim_start_matches('[');
        let (k, v) = part.split_once('=').expect("key=value");
        key.insert(k.to_owned(), v.to_owned());
    }
    PathElem {
        name: name.to_owned(),
        key,
    }
}

/// `/a/b[k=v]` text of a response path (keys sorted).
pub fn text(p: &Path) -> String {
    let mut out = String::new();
    for e in &p.elem {
        out.push('/');
        out.push_str(&e.name);
        let mut keys: Vec<_> = e.key.iter().collect();
        keys.sort();
        for (k, v) in keys {
            out.push_str(&format!("[{k}={v}]"));
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

pub fn get_request(paths: &[Path], kind: DataType, encoding: Encoding) -> GetRequest {
    GetRequest {
        path: paths.to_vec(),
        r#type: kind as i32,
        encoding: encoding as i32,
        ..Default::default()
    }
}

/// The JSON carried by a value (JSON or JSON_IETF).
pub fn json_of(v: &Option<TypedValue>) -> serde_json::Value {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::JsonVal(b)) | Some(typed_value::Value::JsonIetfVal(b)) => {
            serde_json::from_slice(b).expect("valid JSON")
        }
        other => panic!("not a JSON value: {other:?}"),
    }
}

/// The updates of one notification as (path text, JSON).
pub fn updates(n: &Notification) -> Vec<(String, serde_json::Value)> {
    n.update
        .iter()
        .map(|u| (text(u.path.as_ref().expect("path")), json_of(&u.val)))
        .collect()
}

/// Gets one path (JSON, all data) and returns its updates.
pub async fn get(client: &mut GnmiClient<Channel>, p: &str) -> Vec<(String, serde_json::Value)> {
    get_typed(client, p, DataType::All, Encoding::Json).await
}

pub async fn get_typed(
    client: &mut GnmiClient<Channel>,
    p: &str,
    kind: DataType,
    encoding: Encoding,
) -> Vec<(String, serde_json::Value)> {
    let resp = client
        .get(get_request(&[path(p)], kind, encoding))
        .await
        .unwrap_or_else(|e| panic!("Get {p}: {e}"))
        .into_inner();
    assert_eq!(resp.notification.len(), 1);
    updates(&resp.notification[0])
}

/// The one value at leaf or subtree `p`.
pub async fn get_one(client: &mut GnmiClient<Channel>, p: &str) -> serde_json::Value {
    let u = get(client, p).await;
    assert_eq!(u.len(), 1, "{p}: {u:?}");
    u.into_iter().next().map(|(_, v)| v).unwrap_or_default()
}

pub fn json_update(p: &str, value: serde_json::Value) -> Update {
    Update {
        path: Some(path(p)),
        val: Some(TypedValue {
            value: Some(typed_value::Value::JsonVal(
                serde_json::to_vec(&value).expect("encode"),
            )),
        }),
        ..Default::default()
    }
}

pub fn ietf_update(p: &str, value: serde_json::Value) -> Update {
    Update {
        path: Some(path(p)),
        val: Some(TypedValue {
            value: Some(typed_value::Value::JsonIetfVal(
                serde_json::to_vec(&value).expect("encode"),
            )),
        }),
        ..Default::default()
    }
}

pub fn typed_update(p: &str, value: typed_value::Value) -> Update {
    Update {
        path: Some(path(p)),
        val: Some(TypedValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn set_request(delete: &[&str], replace: Vec<Update>, update: Vec<Update>) -> SetRequest {
    SetRequest {
        delete: delete.iter().map(|p| path(p)).collect(),
        replace,
        update,
        ..Default::default()
    }
}

pub const ETH1: &str = "/interfaces/interface[name=eth1]";
pub const DEFAULT_STATIC: &str = "/network-instances/network-instance[name=DEFAULT]/protocols/protocol[identifier=STATIC][name=STATIC]/static-routes";

/// A [`StoreBackend`] that counts how often the large tables (forwarding
/// tables, Loc-RIB) are read.
pub struct Counting {
    pub inner: Arc<StoreBackend>,
    pub afts_reads: std::sync::atomic::AtomicUsize,
    pub rib_reads: std::sync::atomic::AtomicUsize,
}

impl Counting {
    pub fn rib_reads(&self) -> usize {
        self.rib_reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tonic::async_trait]
impl Backend for Counting {
    async fn config(&self) -> (Config, Option<u64>) {
        self.inner.config().await
    }

    async fn commit(
        &self,
        config: Config,
        message: String,
        expected: Option<u64>,
    ) -> Result<u64, gnmi_server::CommitError> {
        self.inner.commit(config, message, expected).await
    }

    async fn state(&self) -> gnmi_server::State {
        self.inner.state().await
    }

    async fn afts(&self) -> gnmi_server::Afts {
        self.afts_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.afts().await
    }

    async fn loc_rib(&self) -> gnmi_server::LocRib {
        self.rib_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.loc_rib().await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<gnmi_server::Generation> {
        self.inner.changes()
    }
}

/// [`start`], the service reading through a [`Counting`] backend.
pub async fn start_counting() -> (Running, Arc<Counting>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ConfigStore::open(&dir.path().join("store")).expect("open store");
    let base = Config::from_yaml(BASE).expect("base config");
    store.commit(&base, Some("base")).expect("commit base");
    let inner = Arc::new(StoreBackend::new(store).expect("backend"));
    let counting = Arc::new(Counting {
        inner: inner.clone(),
        afts_reads: Default::default(),
        rib_reads: Default::default(),
    });
    let server = start_with(inner, counting.clone(), dir).await;
    (server, counting)
}
