//! TLS (with the generated self-signed certificate, and mutual TLS with a
//! client CA) and username/password authentication, over real gRPC.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gnmi_server::gnoi::SystemService;
use gnmi_server::proto::gnmi::{
    get_request::DataType, subscribe_request, subscription_list, CapabilityRequest, Encoding,
    SubscribeRequest, Subscription, SubscriptionList,
};
use gnmi_server::proto::gnoi::system::{system_client::SystemClient, TimeRequest};
use gnmi_server::security::{
    hash_password, Authenticator, ClientCa, ServerIdentity, User, WithoutUsers,
};
use gnmi_server::{GnmiClient, GnmiService, StoreBackend};
use nos_core::config::Config;
use nos_core::store::ConfigStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server};
use tonic::{Code, Request, Status};

use common::{get_request, json_update, path, set_request, BASE};

struct Secured {
    addr: SocketAddr,
    identity: ServerIdentity,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Secured {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A TLS server with the generated certificate and one user `ops` whose
/// password is `s3cret`; with `client_ca`, mutual TLS.
async fn start(client_ca: Option<&str>) -> Secured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = ConfigStore::open(&dir.path().join("store")).expect("store");
    store
        .commit(&Config::from_yaml(BASE).expect("base"), Some("base"))
        .expect("commit");
    let backend = Arc::new(StoreBackend::new(store).expect("backend"));
    let identity =
        ServerIdentity::load_or_generate(&dir.path().join("tls"), &[]).expect("certificate");
    assert!(identity.generated);
    let ca = client_ca.map(|pem| {
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, pem).expect("write CA");
        ClientCa::load(&p).expect("CA")
    });
    let users = vec![User {
        name: "ops".into(),
        password_hash: hash_password("s3cret").expect("hash"),
    }];
    let auth = Arc::new(Authenticator::fixed(users, WithoutUsers::Refuse));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Server::builder()
        .tls_config(identity.tls_config(ca.as_ref()))
        .expect("TLS config")
        .add_service(
            GnmiService::new(backend)
                .with_authenticator(auth.clone())
                .into_server(),
        )
        .add_service(
            SystemService::new(Arc::new(|_| {}))
                .with_authenticator(auth)
                .into_server(),
        );
    tokio::spawn(
        server.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stopped.await;
        }),
    );
    Secured {
        addr,
        identity,
        stop: Some(stop),
        _dir: dir,
    }
}

/// A channel trusting `ca_pem` (the server's certificate), presenting
/// `identity` when given.
async fn channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(id);
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

type Creds = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;

fn with_credentials(user: Option<&str>, password: Option<&str>) -> Creds {
    let user: Option<MetadataValue<_>> = user.map(|u| u.parse().expect("ascii"));
    let password: Option<MetadataValue<_>> = password.map(|p| p.parse().expect("ascii"));
    Box::new(move |mut req: Request<()>| {
        if let Some(u) = &user {
            req.metadata_mut().insert("username", u.clone());
        }
        if let Some(p) = &password {
            req.metadata_mut().insert("password", p.clone());
        }
        Ok(req)
    })
}

fn gnmi(ch: Channel, creds: Creds) -> GnmiClient<InterceptedService<Channel, Creds>> {
    GnmiClient::with_interceptor(ch, creds)
}

async fn capabilities_code(ch: &Channel, user: Option<&str>, password: Option<&str>) -> Code {
    match gnmi(ch.clone(), with_credentials(user, password))
        .capabilities(CapabilityRequest::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn tls_with_the_generated_certificate_and_passwords() {
    let server = start(None).await;
    let ch = channel(server.addr, &server.identity.cert_pem, None)
        .await
        .expect("TLS handshake with the generated certificate");

    // Right password: every service answers.
    assert_eq!(
        capabilities_code(&ch, Some("ops"), Some("s3cret")).await,
        Code::Ok
    );
    let mut client = gnmi(ch.clone(), with_credentials(Some("ops"), Some("s3cret")));
    let got = client
        .get(get_request(
            &[path("/system/config/hostname")],
            DataType::All,
            Encoding::Json,
        ))
        .await
        .expect("Get with the right password")
        .into_inner();
    assert_eq!(got.notification.len(), 1);
    let mut system =
        SystemClient::with_interceptor(ch.clone(), with_credentials(Some("ops"), Some("s3cret")));
    assert!(
        system
            .time(TimeRequest {})
            .await
            .expect("Time")
            .into_inner()
            .time
            > 0
    );

    // Missing or wrong credentials: UNAUTHENTICATED, on every RPC.
    for (user, password) in [
        (None, None),
        (Some("ops"), None),
        (None, Some("s3cret")),
        (Some("ops"), Some("wrong")),
        (Some("ops"), Some("s3cret ")),
        (Some("root"), Some("s3cret")),
    ] {
        assert_eq!(
            capabilities_code(&ch, user, password).await,
            Code::Unauthenticated,
            "{user:?} / {password:?}"
        );
    }
    let mut anonymous = gnmi(ch.clone(), with_credentials(None, None));
    assert_eq!(
        code(
            anonymous
                .get(get_request(
                    &[path("/system")],
                    DataType::All,
                    Encoding::Json
                ))
                .await
        ),
        Err(Code::Unauthenticated)
    );
    let mut wrong = gnmi(ch.clone(), with_credentials(Some("ops"), Some("nope")));
    assert_eq!(
        code(
            wrong
                .set(set_request(
                    &[],
                    vec![],
                    vec![json_update("/system/config/hostname", "hacked".into())],
                ))
                .await
        ),
        Err(Code::Unauthenticated)
    );
    let sub = SubscribeRequest {
        request: Some(subscribe_request::Request::Subscribe(SubscriptionList {
            mode: subscription_list::Mode::Once as i32,
            subscription: vec![Subscription {
                path: Some(path("/system")),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(
        code(anonymous.subscribe(tokio_stream::iter(vec![sub])).await),
        Err(Code::Unauthenticated)
    );
    let mut system = SystemClient::with_interceptor(ch.clone(), with_credentials(None, None));
    assert_eq!(
        code(system.time(TimeRequest {}).await),
        Err(Code::Unauthenticated)
    );
    // Nothing was changed by the refused Set.
    let got = client
        .get(get_request(
            &[path("/system/config/hostname")],
            DataType::All,
            Encoding::Json,
        ))
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(
        common::updates(&got.notification[0])[0].1,
        serde_json::json!("r1")
    );

    // A client that does not trust the certificate, or speaks plain text,
    // gets nowhere.
    let (other, _) = gnmi_server::security::self_signed(&[]).expect("another certificate");
    let untrusting = channel(server.addr, &other, None).await;
    if let Ok(ch) = untrusting {
        assert_ne!(
            capabilities_code(&ch, Some("ops"), Some("s3cret")).await,
            Code::Ok
        );
    }
    if let Ok(plain) = GnmiClient::connect(format!("http://{}", server.addr)).await {
        let mut plain = plain;
        assert!(plain
            .capabilities(CapabilityRequest::default())
            .await
            .is_err());
    }
}

fn code<T>(r: Result<tonic::Response<T>, Status>) -> Result<(), Code> {
    r.map(|_| ()).map_err(|e| e.code())
}

/// A CA and a client certificate it signed (PEM), plus a client certificate
/// signed by nobody the server trusts.
fn client_pki() -> (String, Identity, Identity) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");

    let client = |signer: Option<(&rcgen::Certificate, &KeyPair)>| {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["ops-client".to_owned()]).expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = match signer {
            Some((ca, ca_key)) => params.signed_by(&key, ca, ca_key),
            None => params.self_signed(&key),
        }
        .expect("client certificate");
        Identity::from_pem(cert.pem(), key.serialize_pem())
    };
    (ca.pem(), client(Some((&ca, &ca_key))), client(None))
}

#[tokio::test]
async fn mutual_tls_when_a_client_ca_is_configured() {
    let (ca, signed, unsigned) = client_pki();
    let server = start(Some(&ca)).await;
    let cert = server.identity.cert_pem.clone();

    // A certificate from the CA, and the password: in.
    let ch = channel(server.addr, &cert, Some(signed))
        .await
        .expect("mutual TLS handshake");
    assert_eq!(
        capabilities_code(&ch, Some("ops"), Some("s3cret")).await,
        Code::Ok
    );
    // The certificate does not replace the password.
    assert_eq!(
        capabilities_code(&ch, Some("ops"), Some("bad")).await,
        Code::Unauthenticated
    );

    // No client certificate, or one the CA did not sign: refused by TLS
    // (at the handshake, or on the first request with TLS 1.3).
    for identity in [None, Some(unsigned)] {
        let refused = match channel(server.addr, &cert, identity).await {
            Err(_) => true,
            Ok(ch) => capabilities_code(&ch, Some("ops"), Some("s3cret")).await != Code::Ok,
        };
        assert!(refused, "a client without a certificate from the CA got in");
    }
}
