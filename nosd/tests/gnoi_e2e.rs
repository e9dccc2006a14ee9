//! End-to-end: the real `nosd` serving gNMI and gNOI over TLS with its
//! generated certificate and a configured user; a gNOI reboot restarts the
//! daemon in place and the certificate survives it.
//!
//! Like gnmi_e2e.rs, nosd runs in the current network namespace with no
//! ports and no host interface.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gnmi_server::proto::gnmi::{
    get_request::DataType, typed_value, CapabilityRequest, Encoding, GetRequest, Path as GPath,
    PathElem,
};
use gnmi_server::proto::gnoi::system::{
    system_client::SystemClient, PingRequest, RebootMethod, RebootRequest, RebootStatusRequest,
    TimeRequest,
};
use gnmi_server::security::hash_password;
use gnmi_server::GnmiClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request, Status};

const NOSD: &str = env!("CARGO_BIN_EXE_nosd");
const NOSCTL: &str = env!("CARGO_BIN_EXE_nosctl");

struct Nosd {
    child: Child,
    socket: PathBuf,
    state: PathBuf,
    gnmi: SocketAddr,
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn config(users: &[(&str, &str)]) -> String {
    let mut c = String::from("system:\n  hostname: gnoi-test\nmanagement:\n  users:\n");
    for (name, password) in users {
        c.push_str(&format!(
            "    - name: {name}\n      password_hash: '{}'\n",
            hash_password(password).expect("hash")
        ));
    }
    c
}

impl Nosd {
    fn start() -> Nosd {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config(&[("ops", "s3cret")])).expect("write config");
        let socket = dir.path().join("nosd.sock");
        let log = dir.path().join("nosd.log");
        let state = dir.path().join("state");
        let gnmi = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(NOSD)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--state-dir")
            .arg(&state)
            .arg("--socket")
            .arg(&socket)
            .args(["--host-interface", "none"])
            .arg("--gnmi-addr")
            .arg(gnmi.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start nosd");
        Nosd {
            child,
            socket,
            state,
            gnmi,
            log,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn cert(&self) -> String {
        std::fs::read_to_string(self.state.join("gnmi-cert.pem")).unwrap_or_default()
    }

    /// A TLS channel trusting the generated certificate, once the server
    /// answers Capabilities with `ops`'s password (within 20 s).
    async fn channel(&mut self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nosd exited with {status}:\n{}", self.log());
            }
            let cert = self.cert();
            if !cert.is_empty() {
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&cert))
                    .domain_name("localhost");
                let ch = Channel::from_shared(format!("https://{}", self.gnmi))
                    .expect("uri")
                    .tls_config(tls)
                    .expect("tls")
                    .connect()
                    .await;
                if let Ok(ch) = ch {
                    let ok = gnmi(ch.clone(), "ops", "s3cret")
                        .capabilities(CapabilityRequest::default())
                        .await
                        .is_ok();
                    if ok {
                        return ch;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nosd did not start serving gNMI over TLS:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
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

type Creds = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;

fn creds(user: &str, password: &str) -> Creds {
    let u: MetadataValue<_> = user.parse().expect("ascii");
    let p: MetadataValue<_> = password.parse().expect("ascii");
    Box::new(move |mut r: Request<()>| {
        r.metadata_mut().insert("username", u.clone());
        r.metadata_mut().insert("password", p.clone());
        Ok(r)
    })
}

fn gnmi(ch: Channel, user: &str, password: &str) -> GnmiClient<InterceptedService<Channel, Creds>> {
    GnmiClient::with_interceptor(ch, creds(user, password))
}

fn system(
    ch: Channel,
    user: &str,
    password: &str,
) -> SystemClient<InterceptedService<Channel, Creds>> {
    SystemClient::with_interceptor(ch, creds(user, password))
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

/// The value of one leaf, as JSON.
async fn leaf(ch: &Channel, elems: &[&str]) -> serde_json::Value {
    let resp = gnmi(ch.clone(), "ops", "s3cret")
        .get(GetRequest {
            path: vec![path(elems)],
            r#type: DataType::All as i32,
            encoding: Encoding::Json as i32,
            ..Default::default()
        })
        .await
        .expect("Get")
        .into_inner();
    match resp.notification[0].update[0]
        .val
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(typed_value::Value::JsonVal(b)) => serde_json::from_slice(b).expect("JSON"),
        other => panic!("not JSON: {other:?}"),
    }
}

fn sha256_line(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("gnmi-cert.pem") && l.contains("sha256"))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_users_gnoi_and_a_reboot_in_place() {
    let mut nosd = Nosd::start();
    let ch = nosd.channel().await;
    let pid = nosd.child.id();
    let log = nosd.log();
    let line = sha256_line(&log).unwrap_or_else(|| panic!("no fingerprint logged:\n{log}"));
    assert!(line.contains("generated a self-signed"), "{line}");
    let cert = nosd.cert();
    let fingerprint = gnmi_server::security::ServerIdentity::load(
        &nosd.state.join("gnmi-cert.pem"),
        &nosd.state.join("gnmi-key.pem"),
    )
    .expect("the generated certificate and key")
    .fingerprint;
    assert!(line.contains(&fingerprint), "{line} vs {fingerprint}");

    // Credentials.
    assert_eq!(
        leaf(&ch, &["system", "config", "hostname"]).await,
        "gnoi-test"
    );
    let err = gnmi(ch.clone(), "ops", "wrong")
        .capabilities(CapabilityRequest::default())
        .await
        .expect_err("a wrong password");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = GnmiClient::new(ch.clone())
        .capabilities(CapabilityRequest::default())
        .await
        .expect_err("no credentials");
    assert_eq!(err.code(), Code::Unauthenticated);

    // A user committed with nosctl can log in at once.
    let file = nosd.dir.path().join("more-users.yaml");
    std::fs::write(&file, config(&[("ops", "s3cret"), ("noc", "other")])).expect("write");
    let out = Command::new(NOSCTL)
        .arg("--socket")
        .arg(&nosd.socket)
        .args(["config", "commit"])
        .arg(&file)
        .output()
        .expect("nosctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gnmi(ch.clone(), "noc", "other")
            .capabilities(CapabilityRequest::default())
            .await;
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new user was not accepted: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // gNOI Time and Ping from the daemon.
    let mut sys = system(ch.clone(), "ops", "s3cret");
    assert!(
        sys.time(TimeRequest {})
            .await
            .expect("Time")
            .into_inner()
            .time
            > 0
    );
    let mut stream = sys
        .ping(PingRequest {
            destination: "127.0.0.1".into(),
            count: 2,
            interval: 100_000_000,
            ..Default::default()
        })
        .await
        .expect("Ping")
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = stream.message().await.expect("ping stream") {
        got.push(r);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((got[2].sent, got[2].received), (2, 2));

    // A COLD reboot restarts nosd in the same process; the certificate and
    // the configuration stay.
    let boot = leaf(&ch, &["system", "state", "boot-time"]).await;
    let status = sys
        .reboot_status(RebootStatusRequest::default())
        .await
        .expect("RebootStatus")
        .into_inner();
    assert_eq!(status.count, 0);
    sys.reboot(RebootRequest {
        method: RebootMethod::Cold as i32,
        message: "e2e test".into(),
        ..Default::default()
    })
    .await
    .expect("Reboot");
    // Wait for the restart: the log says so, then the server is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nosd.log().contains("starting nosd again") {
        assert!(Instant::now() < deadline, "no restart:\n{}", nosd.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ch = nosd.channel().await;
    assert_eq!(nosd.child.id(), pid, "the same process");
    assert!(
        nosd.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    let new_boot = leaf(&ch, &["system", "state", "boot-time"]).await;
    assert_ne!(new_boot, boot, "a new boot time after the reboot");
    let mut sys = system(ch.clone(), "ops", "s3cret");
    let status = sys
        .reboot_status(RebootStatusRequest::default())
        .await
        .expect("RebootStatus")
        .into_inner();
    assert!(!status.active);
    assert_eq!(status.count, 1, "{status:?}");
    // The certificate was loaded, not generated again.
    assert_eq!(nosd.cert(), cert);
    let log = nosd.log();
    assert_eq!(
        log.matches("generated a self-signed").count(),
        1,
        "generated once:\n{log}"
    );
    // The user of the configuration file still logs in.
    let r = gnmi(ch.clone(), "ops", "s3cret")
        .capabilities(CapabilityRequest::default())
        .await;
    assert!(r.is_ok(), "{r:?}");

    nosd.stop();
}
