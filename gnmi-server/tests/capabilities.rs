//! Capabilities over real gRPC: a tonic server on an ephemeral loopback port
//! and the generated client.

use std::net::SocketAddr;

use gnmi_server::proto::gnmi::{
    CapabilityRequest, Encoding, GetRequest, SetRequest, SubscribeRequest,
};
use gnmi_server::{
    GnmiClient, GnmiService, GNMI_VERSION, OPENCONFIG_ORGANIZATION, SUPPORTED_MODELS,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        Server::builder()
            .add_service(GnmiService::new().into_server())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    Running { addr, stop, task }
}

async fn client(addr: SocketAddr) -> GnmiClient<Channel> {
    GnmiClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

#[tokio::test]
async fn capabilities_over_grpc() {
    let server = start().await;
    let mut client = client(server.addr).await;

    let caps = client
        .capabilities(CapabilityRequest::default())
        .await
        .expect("Capabilities")
        .into_inner();

    assert_eq!(caps.g_nmi_version, GNMI_VERSION);
    assert_eq!(caps.g_nmi_version, "0.10.0");
    assert_eq!(
        caps.supported_encodings,
        vec![Encoding::Json as i32, Encoding::JsonIetf as i32]
    );
    let names: Vec<&str> = caps
        .supported_models
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "openconfig-interfaces",
            "openconfig-if-ip",
            "openconfig-network-instance",
            "openconfig-routing-policy",
            "openconfig-system",
            "openconfig-aft",
        ]
    );
    for (got, want) in caps.supported_models.iter().zip(SUPPORTED_MODELS) {
        assert_eq!(got.organization, OPENCONFIG_ORGANIZATION);
        assert_eq!(got.organization, "OpenConfig working group");
        assert_eq!(got.version, want.version);
        assert!(!got.version.is_empty());
    }

    server.stop.send(()).expect("server still running");
    server.task.await.expect("join").expect("serve");
}

#[tokio::test]
async fn get_set_and_subscribe_are_not_served_yet() {
    let server = start().await;
    let mut client = client(server.addr).await;

    let get = client
        .get(GetRequest::default())
        .await
        .expect_err("Get is not implemented");
    assert_eq!(get.code(), tonic::Code::Unimplemented);
    assert!(
        get.message().contains("not served yet"),
        "{}",
        get.message()
    );

    let set = client
        .set(SetRequest::default())
        .await
        .expect_err("Set is not implemented");
    assert_eq!(set.code(), tonic::Code::Unimplemented);

    let subscribe = client
        .subscribe(tokio_stream::iter([SubscribeRequest::default()]))
        .await
        .expect_err("Subscribe is not implemented");
    assert_eq!(subscribe.code(), tonic::Code::Unimplemented);

    server.stop.send(()).expect("server still running");
    server.task.await.expect("join").expect("serve");
}
