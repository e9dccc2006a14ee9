//! End-to-end: the real `nosd` binary serving gNMI, driven by the generated
//! gNMI client, with `nosctl` reading the same commit history.
//!
//! The daemon runs in the current network namespace with a configuration
//! that has no ports, so no interface is touched, and without its host
//! interface, so nothing here needs root. The server is plain text
//! (`--insecure`) with no users configured; TLS and authentication are
//! tested in gnoi_e2e.rs, gnmi_pygnmi.rs and gnmi-server's tests.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gnmi_server::proto::gnmi::{
    get_request::DataType, subscribe_request, subscribe_response, subscription_list, typed_value,
    CapabilityRequest, Encoding, GetRequest, Path as GPath, PathElem, SetRequest, SubscribeRequest,
    SubscribeResponse, Subscription, SubscriptionList, SubscriptionMode, TypedValue, Update,
};
use gnmi_server::GnmiClient;
use serde_json::Value as Json;
use tonic::transport::Channel;
use tonic::Code;

const NOSD: &str = env!("CARGO_BIN_EXE_nosd");
const NOSCTL: &str = env!("CARGO_BIN_EXE_nosctl");

const CONFIG: &str = "system:\n  hostname: gnmi-test\n";

/// A running nosd, stopped with SIGTERM when dropped.
struct Nosd {
    child: Child,
    socket: PathBuf,
    gnmi: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nosd {
    fn start() -> Nosd {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, CONFIG).expect("write config");
        let socket = dir.path().join("nosd.sock");
        let log = dir.path().join("nosd.log");
        // A free port: bound, read and released just before nosd takes it.
        let gnmi = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let child = Command::new(NOSD)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--socket")
            .arg(&socket)
            .args(["--host-interface", "none"])
            .arg("--gnmi-addr")
            .arg(gnmi.to_string())
            .arg("--insecure")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            )
            .spawn()
            .expect("start nosd");
        Nosd {
            child,
            socket,
            gnmi,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A gNMI client, once the server answers (within 20 s).
    async fn client(&mut self) -> GnmiClient<Channel> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nosd exited with {status}:\n{}", self.log());
            }
            if let Ok(c) = GnmiClient::connect(format!("http://{}", self.gnmi)).await {
                if self.socket.exists() {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nosd did not start serving gNMI:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn nosctl(&self, args: &[&str]) -> Json {
        nosctl(&self.socket, args)
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        terminate(&mut self.child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait().expect("wait") {
                Some(status) => {
                    assert!(
                        status.success(),
                        "nosd exited with {status}:\n{}",
                        self.log()
                    );
                    return;
                }
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!("nosd did not stop on SIGTERM:\n{}", self.log());
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Nosd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    // Through kill(1): the workspace forbids `unsafe`, which libc::kill needs.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

fn nosctl(socket: &Path, args: &[&str]) -> Json {
    let out = Command::new(NOSCTL)
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .output()
        .expect("run nosctl");
    assert!(
        out.status.success(),
        "nosctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nosctl JSON")
}

fn path(elems: &[&str]) -> GPath {
    GPath {
        elem: elems
            .iter()
            .map(|e| PathElem {
                name: (*e).to_owned(),
                key: Default::default(),
            })
            .collect(),
        ..Default::default()
    }
}

fn json_update(p: GPath, value: Json) -> Update {
    Update {
        path: Some(p),
        val: Some(TypedValue {
            value: Some(typed_value::Value::JsonVal(
                serde_json::to_vec(&value).expect("encode"),
            )),
        }),
        ..Default::default()
    }
}

fn json_of(v: Option<&TypedValue>) -> Json {
    match v.and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::JsonVal(b)) | Some(typed_value::Value::JsonIetfVal(b)) => {
            serde_json::from_slice(b).expect("JSON value")
        }
        other => panic!("not a JSON value: {other:?}"),
    }
}

async fn get_leaf(client: &mut GnmiClient<Channel>, p: GPath) -> Json {
    let resp = client
        .get(GetRequest {
            path: vec![p],
            r#type: DataType::All as i32,
            encoding: Encoding::Json as i32,
            ..Default::default()
        })
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(resp.notification.len(), 1);
    let updates = &resp.notification[0].update;
    assert_eq!(updates.len(), 1, "{updates:?}");
    json_of(updates[0].val.as_ref())
}

/// The hostname in the next response of a subscription to it (`None` for a
/// sync_response); fails after 10 s.
async fn next_hostname(stream: &mut tonic::Streaming<SubscribeResponse>) -> Option<Json> {
    let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a response within 10 s")
        .expect("the subscription goes on")
        .expect("the subscription goes on");
    match msg.response.expect("a response") {
        subscribe_response::Response::SyncResponse(_) => None,
        subscribe_response::Response::Update(n) => {
            assert_eq!(n.update.len(), 1, "{n:?}");
            Some(json_of(n.update[0].val.as_ref()))
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The commit numbers `nosctl config history` lists.
fn history(nosd: &Nosd) -> Vec<u64> {
    let h = nosd.nosctl(&["config", "history"]);
    h.as_array()
        .expect("history is a list")
        .iter()
        .map(|c| c["number"].as_u64().expect("commit number"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nosd_serves_gnmi_on_its_config_store() {
    let mut nosd = Nosd::start();
    let mut client = nosd.client().await;
    assert!(
        nosd.log().contains("INSECURE"),
        "no warning about the plain-text server:\n{}",
        nosd.log()
    );

    // Capabilities.
    let caps = client
        .capabilities(CapabilityRequest::default())
        .await
        .expect("Capabilities")
        .into_inner();
    assert!(caps
        .supported_models
        .iter()
        .any(|m| m.name == "openconfig-system"));
    assert!(caps.supported_encodings.contains(&(Encoding::Json as i32)));
    assert!(!caps.g_nmi_version.is_empty());

    // The committed configuration, and state from the daemon.
    let hostname = path(&["system", "config", "hostname"]);
    assert_eq!(get_leaf(&mut client, hostname.clone()).await, "gnmi-test");
    let boot = get_leaf(&mut client, path(&["system", "state", "boot-time"])).await;
    let boot = boot
        .as_u64()
        .or_else(|| boot.as_str().and_then(|s| s.parse().ok()))
        .expect("boot-time is a number");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    assert!(
        boot <= now && now - boot < 120_000_000_000,
        "boot-time {boot}"
    );

    // A Set is one commit in the history nosctl shows.
    let before = history(&nosd);
    assert_eq!(before.len(), 1, "the start-up commit only: {before:?}");
    client
        .set(SetRequest {
            update: vec![json_update(hostname.clone(), Json::from("gnmi-new"))],
            ..Default::default()
        })
        .await
        .expect("Set hostname");
    let after = history(&nosd);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    let newest = *after.iter().max().expect("a commit");
    let shown = nosd.nosctl(&["show", "config", &newest.to_string()]);
    let yaml = shown["yaml"].as_str().expect("yaml");
    assert!(yaml.contains("hostname: gnmi-new"), "{yaml}");
    let message = shown["commit"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("gNMI Set"),
        "commit message {message:?}"
    );
    assert_eq!(get_leaf(&mut client, hostname.clone()).await, "gnmi-new");

    // A bad value changes nothing.
    let err = client
        .set(SetRequest {
            update: vec![json_update(hostname.clone(), Json::from("not a hostname!"))],
            ..Default::default()
        })
        .await
        .expect_err("an invalid hostname");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(history(&nosd), after);
    assert_eq!(get_leaf(&mut client, hostname.clone()).await, "gnmi-new");

    // A commit made with nosctl is seen by gNMI, by Get and by an ON_CHANGE
    // subscription.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests
        .send(SubscribeRequest {
            request: Some(subscribe_request::Request::Subscribe(SubscriptionList {
                mode: subscription_list::Mode::Stream as i32,
                subscription: vec![Subscription {
                    path: Some(hostname.clone()),
                    mode: SubscriptionMode::OnChange as i32,
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .expect("queue the subscription");
    let mut stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("Subscribe")
        .into_inner();
    assert_eq!(
        next_hostname(&mut stream).await,
        Some(Json::from("gnmi-new"))
    );
    assert_eq!(next_hostname(&mut stream).await, None, "sync_response");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "system:\n  hostname: from-nosctl\n").expect("write");
    nosd.nosctl(&["config", "commit", file.to_str().expect("utf-8 path")]);
    assert_eq!(
        next_hostname(&mut stream).await,
        Some(Json::from("from-nosctl"))
    );
    assert_eq!(get_leaf(&mut client, hostname.clone()).await, "from-nosctl");
    assert_eq!(history(&nosd).len(), after.len() + 1);

    // BGP committed with nosctl: its neighbor is visible over gNMI, with
    // the speaker's session state, and without its password.
    std::fs::write(
        &file,
        "system:\n  hostname: from-nosctl\nbgp:\n  asn: 65000\n  router_id: 192.0.2.1\n  \
         networks: [198.51.100.0/24]\n  \
         neighbors:\n    - address: 192.0.2.2\n      remote_as: 65001\n      \
         description: transit\n      password: e2e-secret\nstatic_routes:\n  - prefix: \
         203.0.113.0/24\n    blackhole: true\n",
    )
    .expect("write");
    nosd.nosctl(&["config", "commit", file.to_str().expect("utf-8 path")]);
    let neighbor = |leaf: &[&str]| {
        let mut p = path(&["network-instances"]);
        let keyed = |name: &str, keys: &[(&str, &str)]| PathElem {
            name: name.to_owned(),
            key: keys
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        p.elem
            .push(keyed("network-instance", &[("name", "default")]));
        p.elem.push(keyed("protocols", &[]));
        p.elem
            .push(keyed("protocol", &[("identifier", "BGP"), ("name", "BGP")]));
        p.elem.extend(path(&["bgp", "neighbors"]).elem);
        p.elem
            .push(keyed("neighbor", &[("neighbor-address", "192.0.2.2")]));
        p.elem.extend(path(leaf).elem);
        p
    };
    assert_eq!(
        get_leaf(&mut client, neighbor(&["config", "peer-as"])).await,
        Json::from(65001)
    );
    let config = get_leaf(&mut client, neighbor(&["config"])).await;
    assert_eq!(config["description"], "transit", "{config}");
    assert!(
        !config.to_string().contains("e2e-secret"),
        "the password is returned: {config}"
    );
    let state = get_leaf(&mut client, neighbor(&["state", "session-state"])).await;
    assert!(
        ["IDLE", "CONNECT", "ACTIVE", "OPENSENT", "OPENCONFIRM"]
            .contains(&state.as_str().unwrap_or_default()),
        "no session can come up without a host interface: {state}"
    );

    // The forwarding table the driver installed (openconfig-aft): the
    // blackhole route, without a next-hop group.
    let mut entry = path(&["network-instances"]);
    entry.elem.push(PathElem {
        name: "network-instance".into(),
        key: [("name".to_owned(), "default".to_owned())].into(),
    });
    entry.elem.extend(path(&["afts", "ipv4-unicast"]).elem);
    entry.elem.push(PathElem {
        name: "ipv4-entry".into(),
        key: [("prefix".to_owned(), "203.0.113.0/24".to_owned())].into(),
    });
    entry.elem.extend(path(&["state"]).elem);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let installed = loop {
        match client
            .get(GetRequest {
                path: vec![entry.clone()],
                encoding: Encoding::Json as i32,
                ..Default::default()
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == Code::NotFound && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the route never showed in afts: {e}"),
        }
    };
    let value = json_of(installed.notification[0].update[0].val.as_ref());
    assert_eq!(value, serde_json::json!({"prefix": "203.0.113.0/24"}));

    // The speaker's Loc-RIB (openconfig-rib-bgp): the network it
    // originates, as `nosctl show bgp routes` shows it.
    let mut route = neighbor(&[]);
    route.elem.truncate(5);
    route.elem.extend(path(&["rib", "afi-safis"]).elem);
    route.elem.push(PathElem {
        name: "afi-safi".into(),
        key: [("afi-safi-name".to_owned(), "IPV4_UNICAST".to_owned())].into(),
    });
    route
        .elem
        .extend(path(&["ipv4-unicast", "loc-rib", "routes"]).elem);
    route.elem.push(PathElem {
        name: "route".into(),
        key: [
            ("prefix".to_owned(), "198.51.100.0/24".to_owned()),
            ("origin".to_owned(), "BGP".to_owned()),
            ("path-id".to_owned(), "0".to_owned()),
        ]
        .into(),
    });
    route.elem.extend(path(&["state", "valid-route"]).elem);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let valid = loop {
        match client
            .get(GetRequest {
                path: vec![route.clone()],
                encoding: Encoding::Json as i32,
                ..Default::default()
            })
            .await
        {
            Ok(r) => break json_of(r.into_inner().notification[0].update[0].val.as_ref()),
            Err(e) if e.code() == Code::NotFound && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the originated network never showed in the Loc-RIB: {e}"),
        }
    };
    assert_eq!(valid, Json::Bool(true));
    let rows = nosd.nosctl(&["show", "bgp", "routes"]);
    assert!(
        rows.as_array()
            .is_some_and(|r| r.iter().any(|r| r["prefix"] == "198.51.100.0/24")),
        "{rows}"
    );

    // SIGTERM with the subscription still open: nosd still stops cleanly.
    nosd.stop();
    drop((stream, requests, client));
}
