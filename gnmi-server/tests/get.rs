//! Get over real gRPC: configuration and state paths, origins and module
//! prefixes, wildcards, data types, encodings, prefixes and errors.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use gnmi_server::proto::gnmi::{get_request::DataType, Encoding, GetRequest, ModelData, Path};
use gnmi_server::{InterfaceCounters, InterfaceState, OperStatus, State};
use serde_json::json;
use tonic::Code;

fn with_state(server: &Running) {
    let mut interfaces = BTreeMap::new();
    interfaces.insert(
        "eth1".to_owned(),
        InterfaceState {
            oper_status: OperStatus::Up,
            counters: Some(InterfaceCounters {
                in_octets: 1000,
                in_pkts: 10,
                in_errors: 1,
                in_discards: 2,
                out_octets: 2000,
                out_pkts: 20,
                out_errors: 3,
                out_discards: 4,
            }),
        },
    );
    interfaces.insert(
        "eth2".to_owned(),
        InterfaceState {
            oper_status: OperStatus::Down,
            counters: None,
        },
    );
    server.backend.set_state(State {
        interfaces,
        boot_time_ns: Some(1_700_000_000_000_000_000),
        ..Default::default()
    });
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_config_leaf_with_and_without_origin_or_module_prefix() {
    let server = common::start().await;
    let mut client = server.client().await;
    for (origin, p) in [
        ("", "/interfaces/interface[name=eth3]/config/mtu"),
        ("openconfig", "/interfaces/interface[name=eth3]/config/mtu"),
        (
            "",
            "/openconfig-interfaces:interfaces/interface[name=eth3]/config/mtu",
        ),
        (
            "",
            "/openconfig-interfaces:interfaces/openconfig-interfaces:interface[name=eth3]/config/mtu",
        ),
    ] {
        let before = now_ns();
        let resp = client
            .get(GetRequest {
                path: vec![path_in(origin, p)],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{origin} {p}: {e}"))
            .into_inner();
        assert_eq!(resp.notification.len(), 1);
        let n = &resp.notification[0];
        // Nanoseconds since the epoch, taken during the call.
        assert!(n.timestamp >= before - 1_000_000_000 && n.timestamp <= now_ns());
        let u = updates(n);
        assert_eq!(
            u,
            vec![(
                "/interfaces/interface[name=eth3]/config/mtu".to_owned(),
                json!(9000)
            )]
        );
        assert_eq!(n.update[0].path.as_ref().map(|p| p.origin.as_str()), Some(origin));
    }
    server.stop().await;
}

#[tokio::test]
async fn one_notification_per_path_and_the_prefix_is_applied() {
    let server = common::start().await;
    with_state(&server);
    let mut client = server.client().await;
    let prefix = Path {
        target: "r1".into(),
        ..path(ETH1)
    };
    let resp = client
        .get(GetRequest {
            prefix: Some(prefix.clone()),
            path: vec![
                path("config/description"),
                path("state/oper-status"),
                path("subinterfaces/subinterface[index=0]/ipv4/addresses/address[ip=192.0.2.1]/config/prefix-length"),
            ],
            ..Default::default()
        })
        .await
        .expect("Get")
        .into_inner();
    assert_eq!(resp.notification.len(), 3);
    for n in &resp.notification {
        assert_eq!(
            n.prefix.as_ref(),
            Some(&prefix),
            "the prefix and its target are echoed"
        );
    }
    assert_eq!(
        updates(&resp.notification[0]),
        vec![("/config/description".to_owned(), json!("uplink"))]
    );
    assert_eq!(
        updates(&resp.notification[1]),
        vec![("/state/oper-status".to_owned(), json!("UP"))]
    );
    assert_eq!(
        updates(&resp.notification[2]),
        vec![(
            "/subinterfaces/subinterface[index=0]/ipv4/addresses/address[ip=192.0.2.1]/config/prefix-length".to_owned(),
            json!(24)
        )]
    );
    server.stop().await;
}

#[tokio::test]
async fn an_interface_subtree_in_json_and_json_ietf() {
    let server = common::start().await;
    let mut client = server.client().await;

    let v = get_typed(&mut client, ETH1, DataType::Config, Encoding::Json).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, ETH1);
    assert_eq!(
        v[0].1,
        json!({
            "name": "eth1",
            "config": {
                "name": "eth1",
                "type": "ethernetCsmacd",
                "mtu": 1500,
                "enabled": true,
                "description": "uplink"
            },
            "subinterfaces": {"subinterface": [
                {
                    "index": 0,
                    "config": {"index": 0, "enabled": true},
                    "ipv4": {"addresses": {"address": [
                        {"ip": "192.0.2.1", "config": {"ip": "192.0.2.1", "prefix-length": 24}}
                    ]}},
                    "ipv6": {"addresses": {"address": [
                        {"ip": "2001:db8:1::1", "config": {"ip": "2001:db8:1::1", "prefix-length": 64}}
                    ]}}
                },
                {
                    "index": 20,
                    "config": {"index": 20, "enabled": true},
                    "ipv4": {"addresses": {"address": [
                        {"ip": "198.51.100.1", "config": {"ip": "198.51.100.1", "prefix-length": 24}}
                    ]}}
                }
            ]}
        })
    );

    // RFC 7951: top-level members qualified, and wherever the module changes
    // (ipv4 is openconfig-if-ip's augment of a subinterface); identities
    // qualified.
    let v = get_typed(
        &mut client,
        "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=20]",
        DataType::Config,
        Encoding::JsonIetf,
    )
    .await;
    assert_eq!(
        v[0].1,
        json!({
            "openconfig-interfaces:index": 20,
            "openconfig-interfaces:config": {"index": 20, "enabled": true},
            "openconfig-if-ip:ipv4": {"addresses": {"address": [
                {"ip": "198.51.100.1", "config": {"ip": "198.51.100.1", "prefix-length": 24}}
            ]}}
        })
    );
    let v = get_typed(
        &mut client,
        "/interfaces/interface[name=eth1]/config/type",
        DataType::All,
        Encoding::JsonIetf,
    )
    .await;
    assert_eq!(v[0].1, json!("iana-if-type:ethernetCsmacd"));
    server.stop().await;
}

#[tokio::test]
async fn interface_state_and_the_data_types() {
    let server = common::start().await;
    with_state(&server);
    let mut client = server.client().await;

    let state = get_one(&mut client, "/interfaces/interface[name=eth1]/state").await;
    assert_eq!(
        state,
        json!({
            "name": "eth1",
            "type": "ethernetCsmacd",
            "mtu": 1500,
            "enabled": true,
            "description": "uplink",
            "admin-status": "UP",
            "oper-status": "UP",
            "counters": {
                "in-octets": 1000, "in-pkts": 10, "in-errors": 1, "in-discards": 2,
                "out-octets": 2000, "out-pkts": 20, "out-errors": 3, "out-discards": 4
            }
        })
    );
    // counter64 is a string in RFC 7951.
    let v = get_typed(
        &mut client,
        "/interfaces/interface[name=eth1]/state/counters/in-octets",
        DataType::All,
        Encoding::JsonIetf,
    )
    .await;
    assert_eq!(v[0].1, json!("1000"));

    // A disabled port, and a port the daemon reports nothing about.
    let v = get(
        &mut client,
        "/interfaces/interface[name=eth3]/state/admin-status",
    )
    .await;
    assert_eq!(v[0].1, json!("DOWN"));
    let v = get(
        &mut client,
        "/interfaces/interface[name=eth3]/state/oper-status",
    )
    .await;
    assert_eq!(v[0].1, json!("UNKNOWN"));
    let v = get(
        &mut client,
        "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=0]/state/oper-status",
    )
    .await;
    assert_eq!(v[0].1, json!("UP"));

    // STATE: only config-false data, with the list keys.
    let v = get_typed(
        &mut client,
        "/interfaces/interface[name=eth2]",
        DataType::State,
        Encoding::Json,
    )
    .await;
    assert_eq!(
        v[0].1,
        json!({
            "name": "eth2",
            "state": {
                "name": "eth2", "type": "ethernetCsmacd", "mtu": 1500, "enabled": true,
                "admin-status": "UP", "oper-status": "DOWN"
            }
        })
    );
    // OPERATIONAL: no copies of the configuration.
    let v = get_typed(
        &mut client,
        "/interfaces/interface[name=eth2]",
        DataType::Operational,
        Encoding::Json,
    )
    .await;
    assert_eq!(
        v[0].1,
        json!({"name": "eth2", "state": {"admin-status": "UP", "oper-status": "DOWN"}})
    );
    // CONFIG of a state leaf: the path exists, nothing to return.
    let v = get_typed(
        &mut client,
        "/interfaces/interface[name=eth2]/state/oper-status",
        DataType::Config,
        Encoding::Json,
    )
    .await;
    assert!(v.is_empty(), "{v:?}");
    server.stop().await;
}

#[tokio::test]
async fn wildcards() {
    let server = common::start().await;
    with_state(&server);
    let mut client = server.client().await;

    let expect_oper = vec![
        (
            "/interfaces/interface[name=eth1]/state/oper-status".to_owned(),
            json!("UP"),
        ),
        (
            "/interfaces/interface[name=eth2]/state/oper-status".to_owned(),
            json!("DOWN"),
        ),
        (
            "/interfaces/interface[name=eth3]/state/oper-status".to_owned(),
            json!("UNKNOWN"),
        ),
    ];
    // `*` as a key value, a missing key, `*` as a name.
    assert_eq!(
        get(
            &mut client,
            "/interfaces/interface[name=*]/state/oper-status"
        )
        .await,
        expect_oper
    );
    assert_eq!(
        get(&mut client, "/interfaces/interface/state/oper-status").await,
        expect_oper
    );
    assert_eq!(
        get(&mut client, "/interfaces/*/*/oper-status").await,
        expect_oper
    );

    // `...`: any depth (interface and subinterface oper-status).
    let v = get(&mut client, "/interfaces/.../oper-status").await;
    let paths: Vec<&str> = v.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/interfaces/interface[name=eth1]/state/oper-status",
            "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=0]/state/oper-status",
            "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=20]/state/oper-status",
            "/interfaces/interface[name=eth2]/state/oper-status",
            "/interfaces/interface[name=eth3]/state/oper-status",
        ]
    );

    // Every address of every interface, in every family.
    let v = get(
        &mut client,
        "/interfaces/interface/subinterfaces/subinterface/*/addresses/address/config/ip",
    )
    .await;
    let ips: Vec<&serde_json::Value> = v.iter().map(|(_, j)| j).collect();
    assert_eq!(
        ips,
        [
            &json!("192.0.2.1"),
            &json!("2001:db8:1::1"),
            &json!("198.51.100.1")
        ]
    );

    // A wildcard that matches no data is an empty notification, not an error.
    let v = get(
        &mut client,
        "/interfaces/interface[name=eth2]/subinterfaces/subinterface/config/index",
    )
    .await;
    assert!(v.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn network_instances_and_static_routes() {
    let server = common::start().await;
    let mut client = server.client().await;
    // `default` and `DEFAULT` name the same instance.
    for name in ["default", "DEFAULT", "Default"] {
        let v = get(
            &mut client,
            &format!("/network-instances/network-instance[name={name}]/config"),
        )
        .await;
        assert_eq!(
            v,
            vec![(
                "/network-instances/network-instance[name=DEFAULT]/config".to_owned(),
                json!({"name": "DEFAULT", "type": "DEFAULT_INSTANCE"})
            )]
        );
    }
    let v = get(
        &mut client,
        "/network-instances/network-instance/config/type",
    )
    .await;
    assert_eq!(
        v,
        vec![
            (
                "/network-instances/network-instance[name=DEFAULT]/config/type".to_owned(),
                json!("DEFAULT_INSTANCE")
            ),
            (
                "/network-instances/network-instance[name=blue]/config/type".to_owned(),
                json!("L3VRF")
            ),
        ]
    );
    let routes = get_typed(
        &mut client,
        DEFAULT_STATIC,
        DataType::Config,
        Encoding::Json,
    )
    .await;
    assert_eq!(routes.len(), 1);
    let routes = &routes[0].1;
    assert_eq!(
        routes,
        &json!({"static": [
            {
                "prefix": "0.0.0.0/0",
                "config": {"prefix": "0.0.0.0/0"},
                "next-hops": {"next-hop": [{
                    "index": "192.0.2.254",
                    "config": {"index": "192.0.2.254", "next-hop": "192.0.2.254", "preference": 1}
                }]}
            },
            {
                "prefix": "172.16.0.0/12",
                "config": {"prefix": "172.16.0.0/12"},
                "next-hops": {"next-hop": [{
                    "index": "DROP",
                    "config": {"index": "DROP", "next-hop": "DROP", "preference": 1}
                }]}
            }
        ]})
    );
    let v = get_typed(
        &mut client,
        "/network-instances/network-instance[name=blue]/protocols/protocol[identifier=openconfig-policy-types:STATIC][name=STATIC]/static-routes/static[prefix=10.0.0.0/8]/next-hops/next-hop[index=198.51.100.2]",
        DataType::Config,
        Encoding::JsonIetf,
    )
    .await;
    assert_eq!(
        v[0].1,
        json!({
            "openconfig-network-instance:index": "198.51.100.2",
            "openconfig-network-instance:config": {
                "index": "198.51.100.2", "next-hop": "198.51.100.2", "preference": 20
            },
            "openconfig-network-instance:interface-ref": {
                "config": {"interface": "eth1", "subinterface": 20}
            }
        })
    );
    server.stop().await;
}

#[tokio::test]
async fn system_config_and_state() {
    let server = common::start().await;
    with_state(&server);
    let mut client = server.client().await;
    assert_eq!(
        get_one(&mut client, "/system/config/hostname").await,
        json!("r1")
    );
    let state = get_one(&mut client, "/system/state").await;
    assert_eq!(state["hostname"], json!("r1"));
    assert_eq!(state["boot-time"], json!(1_700_000_000_000_000_000u64));
    let dt = state["current-datetime"].as_str().expect("a string");
    assert_eq!(dt.len(), 20, "{dt}");
    assert!(dt.ends_with('Z') && dt.as_bytes()[10] == b'T', "{dt}");

    // The root with JSON_IETF: every top-level member qualified.
    let resp = client
        .get(get_request(
            &[Path::default()],
            DataType::Config,
            Encoding::JsonIetf,
        ))
        .await
        .expect("Get /")
        .into_inner();
    let v = updates(&resp.notification[0]);
    let root = v[0].1.as_object().expect("object");
    let mut keys: Vec<&str> = root.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "openconfig-interfaces:interfaces",
            "openconfig-network-instance:network-instances",
            "openconfig-system:system"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn use_models_restricts_the_data() {
    let server = common::start().await;
    let mut client = server.client().await;
    let resp = client
        .get(GetRequest {
            path: vec![path(
                "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=0]",
            )],
            r#type: DataType::Config as i32,
            use_models: vec![ModelData {
                name: "openconfig-interfaces".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("Get")
        .into_inner();
    let v = updates(&resp.notification[0]);
    assert_eq!(
        v[0].1,
        json!({"index": 0, "config": {"index": 0, "enabled": true}})
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_right_codes() {
    let server = common::start().await;
    let mut client = server.client().await;
    let cases: Vec<(GetRequest, Code, &str)> = vec![
        // Not in the served models.
        (
            get_request(
                &[path("/interfaces/interface[name=eth1]/config/speed")],
                DataType::All,
                Encoding::Json,
            ),
            Code::InvalidArgument,
            "/interfaces/interface[name=eth1]/config/speed",
        ),
        // Valid, but there is no such interface.
        (
            get_request(
                &[path("/interfaces/interface[name=eth9]/config")],
                DataType::All,
                Encoding::Json,
            ),
            Code::NotFound,
            "/interfaces/interface[name=eth9]/config",
        ),
        // Malformed: unknown key, key value of the wrong type, keys on a container.
        (
            get_request(
                &[path("/interfaces/interface[nom=eth1]")],
                DataType::All,
                Encoding::Json,
            ),
            Code::InvalidArgument,
            "/interfaces/interface[nom=eth1]",
        ),
        (
            get_request(
                &[path(
                    "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=x]",
                )],
                DataType::All,
                Encoding::Json,
            ),
            Code::InvalidArgument,
            "subinterface[index=x]",
        ),
        (
            get_request(&[path("/system[name=x]")], DataType::All, Encoding::Json),
            Code::InvalidArgument,
            "/system[name=x]",
        ),
        (
            get_request(
                &[path_in("cli", "/interfaces")],
                DataType::All,
                Encoding::Json,
            ),
            Code::InvalidArgument,
            "origin",
        ),
        // Unsupported encodings.
        (
            get_request(&[path("/system")], DataType::All, Encoding::Proto),
            Code::Unimplemented,
            "PROTO",
        ),
        (
            get_request(&[path("/system")], DataType::All, Encoding::Ascii),
            Code::Unimplemented,
            "ASCII",
        ),
    ];
    for (req, code, needle) in cases {
        let err = client.get(req.clone()).await.expect_err("must fail");
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{needle:?} not in {:?}",
            err.message()
        );
    }
    server.stop().await;
}
