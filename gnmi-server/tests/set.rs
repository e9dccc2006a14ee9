//! Set over real gRPC: every Set that changes something is exactly one new
//! commit in the config store, visible in Get; a failed Set changes nothing
//! and reports the specification's codes.

mod common;

use std::sync::Arc;

use common::*;
use gnmi_server::proto::gnmi::{
    typed_value, update_result::Operation, Path, SetRequest, SetResponse, UpdateResult,
};
use gnmi_server::{set_failure_details, Backend, CommitError, State, StoreBackend};
use nos_core::config::Config;
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

type Client = gnmi_server::GnmiClient<Channel>;

/// Runs a Set that must succeed and checks it made exactly one commit.
async fn set_ok(server: &Running, client: &mut Client, req: SetRequest) -> SetResponse {
    let before = server.history().len();
    let resp = client
        .set(req.clone())
        .await
        .unwrap_or_else(|e| panic!("Set {req:?}: {e}"))
        .into_inner();
    let history = server.history();
    assert_eq!(history.len(), before + 1, "one Set, one commit");
    let last = history.last().expect("a commit");
    let message = last.message.as_deref().unwrap_or_default();
    assert!(message.starts_with("gNMI Set by "), "{message}");
    // The store's newest commit is what the backend serves.
    assert_eq!(
        server.store().head().expect("head").expect("commit").config,
        server.config().await
    );
    resp
}

/// The code of a Get of `p` that must fail.
async fn get_code(client: &mut Client, p: &str) -> Code {
    client
        .get(get_request(
            &[path(p)],
            Default::default(),
            Default::default(),
        ))
        .await
        .expect_err("the Get must fail")
        .code()
}

/// Runs a Set that must fail, checks nothing changed and returns the status
/// and the per-operation results from its details.
async fn set_err(
    server: &Running,
    client: &mut Client,
    req: SetRequest,
) -> (tonic::Status, Vec<UpdateResult>) {
    let history = server.history();
    let config = server.config().await;
    let err = client
        .set(req.clone())
        .await
        .expect_err("the Set must fail");
    assert_eq!(server.history(), history, "a failed Set commits nothing");
    assert_eq!(
        server.config().await,
        config,
        "a failed Set changes nothing"
    );
    let results = set_failure_details(&err)
        .map(|r| r.response)
        .unwrap_or_default();
    (err, results)
}

#[allow(deprecated)]
fn codes(results: &[UpdateResult]) -> Vec<(Operation, Code)> {
    results
        .iter()
        .map(|r| {
            let code = r
                .message
                .as_ref()
                .map_or(Code::Ok, |m| Code::from(m.code as i32));
            (
                Operation::try_from(r.op).unwrap_or(Operation::Invalid),
                code,
            )
        })
        .collect()
}

#[tokio::test]
async fn update_replace_and_delete_an_interface_description() {
    let server = common::start().await;
    let mut client = server.client().await;
    let desc = "/interfaces/interface[name=eth1]/config/description";

    let resp = set_ok(
        &server,
        &mut client,
        set_request(&[], vec![], vec![json_update(desc, json!("to the core"))]),
    )
    .await;
    assert_eq!(resp.response.len(), 1);
    assert_eq!(resp.response[0].op, Operation::Update as i32);
    assert_eq!(resp.response[0].path, Some(path(desc)));
    assert!(resp.timestamp > 0);
    assert_eq!(get_one(&mut client, desc).await, json!("to the core"));
    assert_eq!(
        server.config().await.ports[0].description.as_deref(),
        Some("to the core")
    );

    // A scalar string_val works as well.
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![typed_update(
                desc,
                typed_value::Value::StringVal("edge".into()),
            )],
            vec![],
        ),
    )
    .await;
    assert_eq!(get_one(&mut client, desc).await, json!("edge"));

    let resp = set_ok(&server, &mut client, set_request(&[desc], vec![], vec![])).await;
    assert_eq!(resp.response[0].op, Operation::Delete as i32);
    assert_eq!(server.config().await.ports[0].description, None);
    assert_eq!(get_code(&mut client, desc).await, Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn mtu_by_update_and_by_replacing_the_config_container() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mtu = "/interfaces/interface[name=eth1]/config/mtu";

    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![typed_update(mtu, typed_value::Value::UintVal(9000))],
        ),
    )
    .await;
    assert_eq!(get_one(&mut client, mtu).await, json!(9000));
    assert_eq!(server.config().await.ports[0].mtu, 9000);

    // Replace: what the value leaves out goes back to its default or away.
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![ietf_update(
                "/interfaces/interface[name=eth1]/config",
                json!({"openconfig-interfaces:mtu": 4000, "openconfig-interfaces:type": "iana-if-type:ethernetCsmacd"}),
            )],
            vec![],
        ),
    )
    .await;
    let port = server.config().await.ports[0].clone();
    assert_eq!(
        (port.mtu, port.enabled, port.description),
        (4000, true, None)
    );
    assert_eq!(get_one(&mut client, mtu).await, json!(4000));

    // Deleting the leaf restores the default.
    set_ok(&server, &mut client, set_request(&[mtu], vec![], vec![])).await;
    assert_eq!(get_one(&mut client, mtu).await, json!(1500));
    server.stop().await;
}

#[tokio::test]
async fn an_ipv4_address_added_changed_and_deleted() {
    let server = common::start().await;
    let mut client = server.client().await;
    let sub = "/interfaces/interface[name=eth2]/subinterfaces/subinterface[index=0]";
    let addr = format!("{sub}/ipv4/addresses/address[ip=100.64.0.1]");

    // eth2 has no router interface yet: the update creates one.
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![json_update(
                &addr,
                json!({"config": {"ip": "100.64.0.1", "prefix-length": 24}}),
            )],
        ),
    )
    .await;
    assert_eq!(
        get_one(&mut client, &format!("{addr}/config/prefix-length")).await,
        json!(24)
    );
    let config = server.config().await;
    let itf = config
        .interfaces
        .iter()
        .find(|i| i.port.as_deref() == Some("eth2"))
        .expect("a router interface on eth2");
    assert_eq!((itf.name.as_str(), itf.vlan), ("eth2", None));
    assert_eq!(itf.ipv4, vec!["100.64.0.1/24".parse().expect("net")]);

    // An address overlapping eth1's 192.0.2.1/24 is refused by validation,
    // naming both the OpenConfig path and the configuration path.
    let overlapping = format!("{sub}/ipv4/addresses/address[ip=192.0.2.129]");
    let (err, results) = set_err(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![json_update(
                &overlapping,
                json!({"config": {"prefix-length": 25}}),
            )],
        ),
    )
    .await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains(&overlapping), "{}", err.message());
    assert!(
        err.message().contains("interfaces[") && err.message().contains("overlaps"),
        "{}",
        err.message()
    );
    assert_eq!(
        codes(&results),
        vec![(Operation::Update, Code::InvalidArgument)]
    );

    // An IPv6 address on a new sub-port.
    let v6 = "/interfaces/interface[name=eth2]/subinterfaces/subinterface[index=30]/ipv6/addresses/address[ip=2001:db8:30::1]";
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![json_update(v6, json!({"config": {"prefix-length": 64}}))],
        ),
    )
    .await;
    let config = server.config().await;
    let sub30 = config
        .interfaces
        .iter()
        .find(|i| i.vlan == Some(30))
        .expect("sub-port");
    assert_eq!(sub30.name, "eth2.30");
    assert_eq!(sub30.ipv6, vec!["2001:db8:30::1/64".parse().expect("net")]);

    set_ok(&server, &mut client, set_request(&[&addr], vec![], vec![])).await;
    assert_eq!(get_code(&mut client, &addr).await, Code::NotFound);
    let config = server.config().await;
    let itf = config
        .interfaces
        .iter()
        .find(|i| i.name == "eth2")
        .expect("interface stays");
    assert!(itf.ipv4.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_static_route_added_replaced_and_deleted() {
    let server = common::start().await;
    let mut client = server.client().await;
    let route = format!("{DEFAULT_STATIC}/static[prefix=198.18.0.0/15]");

    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![json_update(
                &route,
                json!({
                    "prefix": "198.18.0.0/15",
                    "config": {"prefix": "198.18.0.0/15"},
                    "next-hops": {"next-hop": [
                        {"index": "192.0.2.10", "config": {"index": "192.0.2.10", "next-hop": "192.0.2.10", "preference": 5}},
                        {"index": "192.0.2.11", "config": {"next-hop": "192.0.2.11"}}
                    ]}
                }),
            )],
        ),
    )
    .await;
    let v = get(
        &mut client,
        &format!("{route}/next-hops/next-hop/config/next-hop"),
    )
    .await;
    assert_eq!(v.len(), 2);
    let config = server.config().await;
    let r = config
        .static_routes
        .iter()
        .find(|r| r.prefix.to_string() == "198.18.0.0/15")
        .expect("route");
    assert_eq!(
        (r.vrf.as_deref(), r.distance, r.next_hops.len()),
        (None, 5, 2)
    );

    // Replace the route by a blackhole.
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![json_update(
                &route,
                json!({"next-hops": {"next-hop": [{"index": "DROP", "config": {"next-hop": "openconfig-local-routing:DROP"}}]}}),
            )],
            vec![],
        ),
    )
    .await;
    let v = get(&mut client, &format!("{route}/next-hops")).await;
    assert_eq!(
        v[0].1["next-hop"],
        json!([{
            "index": "DROP",
            "config": {"index": "DROP", "next-hop": "DROP", "preference": 1},
            "state": {"index": "DROP", "next-hop": "DROP", "preference": 1}
        }])
    );
    let config = server.config().await;
    let r = config
        .static_routes
        .iter()
        .find(|r| r.prefix.to_string() == "198.18.0.0/15")
        .expect("route");
    assert!(
        r.blackhole && r.next_hops.is_empty() && r.distance == 1,
        "{r:?}"
    );

    set_ok(&server, &mut client, set_request(&[&route], vec![], vec![])).await;
    assert_eq!(get_code(&mut client, &route).await, Code::NotFound);
    assert!(!server
        .config()
        .await
        .static_routes
        .iter()
        .any(|r| r.prefix.to_string() == "198.18.0.0/15"));

    // A route in a VRF, through a named subinterface; the weight of an
    // existing next hop (not in the model) is kept.
    let blue = "/network-instances/network-instance[name=blue]/protocols/protocol[identifier=STATIC][name=STATIC]/static-routes/static[prefix=10.0.0.0/8]/next-hops/next-hop[index=198.51.100.3]";
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![json_update(
                blue,
                json!({"config": {"next-hop": "198.51.100.3"}, "interface-ref": {"config": {"interface": "eth1", "subinterface": 20}}}),
            )],
        ),
    )
    .await;
    let config = server.config().await;
    let r = config
        .static_routes
        .iter()
        .find(|r| r.vrf.as_deref() == Some("blue"))
        .expect("route");
    assert_eq!(r.next_hops.len(), 2);
    assert_eq!(r.next_hops[1].interface.as_deref(), Some("eth1-v20"));
    assert_eq!(r.distance, 20);
    let default_route = &config.static_routes[0];
    assert_eq!(
        default_route.next_hops[0].weight, 3,
        "the weight survives Sets"
    );
    server.stop().await;
}

#[tokio::test]
async fn operations_run_delete_replace_update_in_one_commit() {
    let server = common::start().await;
    let mut client = server.client().await;
    let desc = "/interfaces/interface[name=eth2]/config/description";
    let resp = set_ok(
        &server,
        &mut client,
        SetRequest {
            delete: vec![path(desc)],
            replace: vec![json_update(desc, json!("replaced"))],
            update: vec![
                json_update(desc, json!("updated")),
                json_update("/system/config/hostname", json!("r2")),
            ],
            ..Default::default()
        },
    )
    .await;
    let ops: Vec<i32> = resp.response.iter().map(|r| r.op).collect();
    assert_eq!(
        ops,
        [
            Operation::Delete,
            Operation::Replace,
            Operation::Update,
            Operation::Update
        ]
        .map(|o| o as i32)
    );
    assert_eq!(get_one(&mut client, desc).await, json!("updated"));
    assert_eq!(
        get_one(&mut client, "/system/state/hostname").await,
        json!("r2")
    );

    // JSON_IETF at the root, with module-qualified members.
    set_ok(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![ietf_update(
                "/",
                json!({"openconfig-system:system": {"config": {"hostname": "r3"}}}),
            )],
        ),
    )
    .await;
    assert_eq!(server.config().await.system.hostname, "r3");
    server.stop().await;
}

#[tokio::test]
async fn a_set_that_changes_nothing_commits_nothing() {
    let server = common::start().await;
    let mut client = server.client().await;
    let history = server.history();
    // Deleting what does not exist is accepted silently (gNMI 3.4.6).
    let resp = client
        .set(set_request(
            &[
                "/interfaces/interface[name=eth9]",
                "/interfaces/interface[name=eth2]/config/description",
            ],
            vec![],
            vec![json_update("/system/config/hostname", json!("r1"))],
        ))
        .await
        .expect("Set")
        .into_inner();
    assert_eq!(resp.response.len(), 3);
    assert_eq!(server.history(), history);
    server.stop().await;
}

#[tokio::test]
async fn wildcard_delete() {
    let server = common::start().await;
    let mut client = server.client().await;
    let all_v4 =
        "/interfaces/interface[name=eth1]/subinterfaces/subinterface/ipv4/addresses/address[ip=*]";
    let default_route = format!("{DEFAULT_STATIC}/static[prefix=0.0.0.0/0]");

    // Without eth1's IPv4 subnets the default route's next hop is
    // unreachable: validation refuses, naming the route.
    let (err, results) =
        set_err(&server, &mut client, set_request(&[all_v4], vec![], vec![])).await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains(&format!(
            "{default_route}/next-hops/next-hop[index=192.0.2.254]"
        )),
        "{}",
        err.message()
    );
    assert_eq!(
        codes(&results),
        vec![(Operation::Delete, Code::InvalidArgument)]
    );

    // Together with the route, it goes through.
    set_ok(
        &server,
        &mut client,
        set_request(&[&default_route, all_v4], vec![], vec![]),
    )
    .await;
    let config = server.config().await;
    let on_eth1: Vec<_> = config
        .interfaces
        .iter()
        .filter(|i| i.port.as_deref() == Some("eth1"))
        .collect();
    assert_eq!(on_eth1.len(), 2, "the interfaces stay");
    assert!(on_eth1.iter().all(|i| i.ipv4.is_empty()));
    assert_eq!(on_eth1[0].ipv6.len(), 1, "IPv6 untouched");
    server.stop().await;
}

#[tokio::test]
async fn a_set_mixing_a_valid_and_an_invalid_operation_changes_nothing() {
    let server = common::start().await;
    let mut client = server.client().await;
    let desc = "/interfaces/interface[name=eth1]/config/description";
    let mtu = "/interfaces/interface[name=eth1]/config/mtu";

    let (err, results) = set_err(
        &server,
        &mut client,
        set_request(
            &[],
            vec![],
            vec![
                json_update(desc, json!("changed")),
                json_update(mtu, json!("abc")),
            ],
        ),
    )
    .await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains(mtu), "{}", err.message());
    assert_eq!(
        codes(&results),
        vec![
            (Operation::Update, Code::Aborted),
            (Operation::Update, Code::InvalidArgument)
        ]
    );
    assert_eq!(results[1].path, Some(path(mtu)));
    assert_eq!(get_one(&mut client, desc).await, json!("uplink"));

    // An unknown path after a valid delete: NotFound for it, Aborted for the delete.
    let (err, results) = set_err(
        &server,
        &mut client,
        set_request(
            &[desc],
            vec![json_update(
                "/interfaces/interface[name=eth1]/config/speed",
                json!(10),
            )],
            vec![],
        ),
    )
    .await;
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .contains("/interfaces/interface[name=eth1]/config/speed"),
        "{}",
        err.message()
    );
    assert_eq!(
        codes(&results),
        vec![
            (Operation::Delete, Code::Aborted),
            (Operation::Replace, Code::NotFound)
        ]
    );
    assert_eq!(get_one(&mut client, desc).await, json!("uplink"));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_code_names_the_path_and_changes_nothing() {
    let server = common::start().await;
    let mut client = server.client().await;
    let cases: Vec<(SetRequest, Code, &str)> = vec![
        // Malformed paths.
        (SetRequest { delete: vec![empty_elem()], ..Default::default() }, Code::InvalidArgument, "no name"),
        (set_request(&[], vec![], vec![json_update("/interfaces/interface[nom=eth1]/config/mtu", json!(1))]),
            Code::InvalidArgument, "/interfaces/interface[nom=eth1]/config/mtu"),
        (set_request(&[], vec![], vec![json_update("/interfaces/interface/config/mtu", json!(1600))]),
            Code::InvalidArgument, "/interfaces/interface/config/mtu"),
        (set_request(&[], vec![], vec![json_update("/interfaces/interface[name=*]/config/mtu", json!(1600))]),
            Code::InvalidArgument, "wildcards"),
        (set_request(&[], vec![], vec![json_update("/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=-1]", json!({}))]),
            Code::InvalidArgument, "subinterface[index=-1]"),
        (set_request(&[], vec![], vec![json_update(&format!("{DEFAULT_STATIC}/static[prefix=10.0.0.0/99]"), json!({}))]),
            Code::InvalidArgument, "prefix=10.0.0.0/99"),
        // Unknown paths.
        (set_request(&["/interfaces/interface[name=eth1]/bogus"], vec![], vec![]),
            Code::NotFound, "/interfaces/interface[name=eth1]/bogus"),
        (set_request(&[], vec![], vec![json_update("/openconfig-system:interfaces", json!({}))]),
            Code::NotFound, "openconfig-system"),
        // Read-only state.
        (set_request(&[], vec![], vec![json_update("/interfaces/interface[name=eth1]/state/mtu", json!(1600))]),
            Code::InvalidArgument, "read-only"),
        (set_request(&["/interfaces/interface[name=eth1]/state"], vec![], vec![]),
            Code::InvalidArgument, "read-only"),
        // Values of the wrong type or out of range.
        (set_request(&[], vec![], vec![json_update("/interfaces/interface[name=eth1]/config/mtu", json!(70000))]),
            Code::InvalidArgument, "/interfaces/interface[name=eth1]/config/mtu"),
        (set_request(&[], vec![], vec![typed_update("/interfaces/interface[name=eth1]/config/enabled", typed_value::Value::UintVal(1))]),
            Code::InvalidArgument, "/interfaces/interface[name=eth1]/config/enabled"),
        (set_request(&[], vec![], vec![json_update(ETH1, json!({"config": {"mtu": true}}))]),
            Code::InvalidArgument, "/interfaces/interface[name=eth1]/config/mtu"),
        (set_request(&[], vec![], vec![json_update(ETH1, json!({"config": {"type": "iana-if-type:softwareLoopback"}}))]),
            Code::InvalidArgument, "/interfaces/interface[name=eth1]/config/type"),
        (set_request(&[], vec![], vec![json_update(ETH1, json!("eth1"))]),
            Code::InvalidArgument, "JSON object"),
        (set_request(&[], vec![], vec![raw_json_update(ETH1, b"{not json")]),
            Code::InvalidArgument, "not valid JSON"),
        // JSON that does not fit the model.
        (set_request(&[], vec![], vec![json_update(ETH1, json!({"config": {"speed": 10}}))]),
            Code::InvalidArgument, "/interfaces/interface[name=eth1]/config"),
        (set_request(&[], vec![], vec![json_update(ETH1, json!({"state": {"mtu": 10}}))]),
            Code::InvalidArgument, "/interfaces/interface[name=eth1]/state"),
        (set_request(&[], vec![], vec![json_update(ETH1, json!({"name": "eth2"}))]),
            Code::InvalidArgument, "key name is eth2 in the value but eth1 in the path"),
        (set_request(&[], vec![], vec![json_update(ETH1, json!({"config": {"name": "eth2"}}))]),
            Code::InvalidArgument, "key name is eth2"),
        (set_request(&[], vec![], vec![json_update("/interfaces", json!({"interface": [{"config": {"mtu": 1600}}]}))]),
            Code::InvalidArgument, "lacks its key name"),
        (set_request(&[], vec![], vec![json_update(
            "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=0]/ipv4/addresses/address[ip=192.0.2.9]",
            json!({"config": {"ip": "192.0.2.9"}}))]),
            Code::InvalidArgument, "address[ip=192.0.2.9]/config/prefix-length"),
        (set_request(&[], vec![], vec![json_update(
            "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=5000]/config/enabled", json!(true))]),
            Code::InvalidArgument, "subinterface[index=5000]"),
        (set_request(&[], vec![], vec![json_update(
            &format!("{DEFAULT_STATIC}/static[prefix=10.1.0.0/16]/next-hops/next-hop[index=0]/config/next-hop"), json!("192.0.2.7"))]),
            Code::InvalidArgument, "needs index 192.0.2.7"),
        (set_request(&[], vec![], vec![json_update(
            &format!("{DEFAULT_STATIC}/static[prefix=10.1.0.0/16]/next-hops/next-hop[index=192.0.2.7]/config/preference"), json!(300))]),
            Code::InvalidArgument, "preference 300"),
        // Configuration validation: a next hop no interface reaches.
        (set_request(&[], vec![], vec![json_update(
            &format!("{DEFAULT_STATIC}/static[prefix=10.1.0.0/16]/next-hops/next-hop[index=10.9.9.9]"), json!({}))]),
            Code::InvalidArgument, "next-hop[index=10.9.9.9] (static_routes[3].next_hops[0].address)"),
        // Unsupported encodings.
        (set_request(&[], vec![], vec![typed_update("/system/config/hostname", typed_value::Value::AsciiVal("x".into()))]),
            Code::Unimplemented, "ASCII"),
        (set_request(&[], vec![], vec![typed_update("/system/config/hostname", typed_value::Value::BytesVal(b"x".to_vec()))]),
            Code::Unimplemented, "BYTES"),
    ];
    for (req, code, needle) in cases {
        let (err, results) = set_err(&server, &mut client, req.clone()).await;
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{needle:?} not in {:?}",
            err.message()
        );
        assert_eq!(results.len(), 1, "{req:?}");
        assert_eq!(codes(&results)[0].1, code);
    }
    server.stop().await;
}

/// `/interfaces//config`: an element with no name.
fn empty_elem() -> Path {
    let mut p = path("/interfaces/x/config");
    p.elem[1].name.clear();
    p
}

fn raw_json_update(p: &str, bytes: &[u8]) -> gnmi_server::proto::gnmi::Update {
    typed_update(p, typed_value::Value::JsonVal(bytes.to_vec()))
}

/// A backend on which someone else commits between the Set's read and its
/// commit, once.
struct Interfering {
    inner: Arc<StoreBackend>,
    done: std::sync::atomic::AtomicBool,
}

#[tonic::async_trait]
impl Backend for Interfering {
    async fn config(&self) -> (Config, Option<u64>) {
        self.inner.config().await
    }

    async fn commit(
        &self,
        config: Config,
        message: String,
        expected: Option<u64>,
    ) -> Result<u64, CommitError> {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (mut other, head) = self.inner.config().await;
            other.system.hostname = "someone-else".into();
            self.inner
                .commit(other, "nosctl".into(), head)
                .await
                .expect("interfering commit");
        }
        self.inner.commit(config, message, expected).await
    }

    async fn state(&self) -> State {
        self.inner.state().await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<gnmi_server::Generation> {
        self.inner.changes()
    }
}

#[tokio::test]
async fn a_set_racing_another_commit_is_applied_on_top_of_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = nos_core::store::ConfigStore::open(&dir.path().join("store")).expect("store");
    store
        .commit(&Config::from_yaml(BASE).expect("base"), Some("base"))
        .expect("base commit");
    let inner = Arc::new(StoreBackend::new(store).expect("backend"));
    let racing = Arc::new(Interfering {
        inner: inner.clone(),
        done: Default::default(),
    });
    let server = start_with(inner, racing, dir).await;
    let mut client = server.client().await;
    client
        .set(set_request(
            &[],
            vec![],
            vec![json_update(
                "/interfaces/interface[name=eth2]/config/mtu",
                json!(1600),
            )],
        ))
        .await
        .expect("Set");
    let config = server.config().await;
    assert_eq!(config.system.hostname, "someone-else");
    assert_eq!(config.ports[1].mtu, 1600);
    let messages: Vec<String> = server
        .history()
        .into_iter()
        .map(|c| c.message.unwrap_or_default())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[1], "nosctl");
    assert!(
        messages[2].starts_with("gNMI Set by 127.0.0.1:"),
        "{messages:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_username_is_in_the_commit_message() {
    let server = common::start().await;
    let mut client = server.client().await;
    let mut req = tonic::Request::new(set_request(
        &[],
        vec![],
        vec![json_update("/system/config/hostname", json!("r9"))],
    ));
    req.metadata_mut()
        .insert("username", "alice".parse().expect("ascii"));
    client.set(req).await.expect("Set");
    let last = server.history().pop().expect("commit");
    let message = last.message.unwrap_or_default();
    assert!(
        message.starts_with("gNMI Set by alice from 127.0.0.1:"),
        "{message}"
    );
    server.stop().await;
}
