//! Capabilities over real gRPC: a tonic server on an ephemeral loopback port
//! and the generated client.

mod common;

use gnmi_server::proto::gnmi::{CapabilityRequest, Encoding, SubscribeRequest};
use gnmi_server::{GNMI_VERSION, OPENCONFIG_ORGANIZATION, SUPPORTED_MODELS};

#[tokio::test]
async fn capabilities_over_grpc() {
    let server = common::start().await;
    let mut client = server.client().await;

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
            "openconfig-bgp-policy",
            "openconfig-system",
            "openconfig-aft",
            "openconfig-rib-bgp",
        ]
    );
    for (got, want) in caps.supported_models.iter().zip(SUPPORTED_MODELS) {
        assert_eq!(got.organization, OPENCONFIG_ORGANIZATION);
        assert_eq!(got.organization, "OpenConfig working group");
        assert_eq!(got.version, want.version);
        assert!(!got.version.is_empty());
    }

    server.stop().await;
}

/// Subscribe is served (see subscribe.rs); a request without a
/// SubscriptionList is refused.
#[tokio::test]
async fn subscribe_without_a_subscription_list_is_refused() {
    let server = common::start().await;
    let mut client = server.client().await;
    let refused = client
        .subscribe(tokio_stream::iter([SubscribeRequest::default()]))
        .await
        .expect_err("no SubscriptionList");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}
