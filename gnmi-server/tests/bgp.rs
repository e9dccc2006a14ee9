//! BGP (openconfig-network-instance's `bgp`, with its Loc-RIB), the
//! installed forwarding table (`afts`), routing policy and the ARP/ND
//! neighbors (openconfig-if-ip) over real gRPC on a real store.

mod common;

use std::collections::BTreeMap;

use common::*;
use gnmi_server::proto::gnmi::{get_request::DataType, Encoding};
use gnmi_server::{
    Aft, AftNextHop, Backend, BgpFamily, BgpNeighborState, BgpOrigin, BgpPrefixes, BgpRoute,
    BgpState, LocRib, Neighbor, NeighborOrigin, NeighborState, SessionState, State,
};
use nos_core::config::Config;
use serde_json::json;
use tonic::Code;

const BGP: &str = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=BGP]/bgp";
const NEIGHBOR: &str = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=BGP]/bgp/neighbors/neighbor[neighbor-address=192.0.2.2]";

const WITH_BGP: &str = r#"
bgp:
  asn: 65000
  router_id: 192.0.2.1
  neighbors:
    - address: 192.0.2.2
      remote_as: 65001
      description: transit
      hold_time: 30
      families: [ipv4_unicast]
      import_policy: in
      ebgp_multihop: 2
      password: s3cret-key
  policies:
    - name: in
      rules:
        - match:
            prefixes: [{prefix: 198.18.0.0/15, ge: 16, le: 24}]
            community: "65000:100"
            as_path_contains: 65001
          set: {local_pref: 200, communities_add: ["65000:7"]}
          action: accept
        - action: reject
"#;

/// Commits BASE with the `bgp:` section above and sets BGP, neighbor, AFT
/// and Loc-RIB state.
async fn with_bgp() -> Running {
    let server = common::start().await;
    set_up(&server).await;
    server
}

async fn set_up(server: &Running) {
    let (_, head) = server.backend.config().await;
    let config = Config::from_yaml(&format!("{BASE}{WITH_BGP}")).expect("config");
    server
        .backend
        .commit(config, "bgp".into(), head)
        .await
        .expect("commit");
    let mut families = BTreeMap::new();
    families.insert(
        BgpFamily::Ipv4Unicast,
        BgpPrefixes {
            received: 5,
            sent: 2,
            installed: 4,
        },
    );
    let mut neighbors = BTreeMap::new();
    neighbors.insert(
        "192.0.2.2".parse().expect("ip"),
        BgpNeighborState {
            session_state: SessionState::Established,
            negotiated_hold_time: Some(30),
            families,
        },
    );
    let mut aft = Aft::default();
    aft.entries
        .insert("198.18.0.0/16".parse().expect("prefix"), Some(7));
    aft.entries
        .insert("192.0.2.1/32".parse().expect("prefix"), None);
    aft.next_hop_groups
        .insert(7, [(3u64, 1u64), (4, 2)].into_iter().collect());
    aft.next_hops.insert(
        3,
        AftNextHop {
            ip_address: Some("192.0.2.2".parse().expect("ip")),
            mac_address: Some("02:00:00:00:00:02".into()),
            interface: Some(("eth1".into(), 0)),
        },
    );
    let mut uplink = BTreeMap::new();
    uplink.insert(
        "192.0.2.2".parse().expect("ip"),
        Neighbor {
            link_layer_address: Some("02:00:00:00:00:02".into()),
            origin: NeighborOrigin::Dynamic,
            state: NeighborState::Reachable,
        },
    );
    uplink.insert(
        "2001:db8:1::2".parse().expect("ip"),
        Neighbor {
            link_layer_address: Some("02:00:00:00:00:02".into()),
            origin: NeighborOrigin::Dynamic,
            state: NeighborState::Probe,
        },
    );
    let mut v20 = BTreeMap::new();
    v20.insert(
        "198.51.100.2".parse().expect("ip"),
        Neighbor {
            link_layer_address: None,
            origin: NeighborOrigin::Dynamic,
            state: NeighborState::Incomplete,
        },
    );
    server.backend.set_state(State {
        bgp: Some(BgpState {
            total_prefixes: 4,
            neighbors,
        }),
        neighbors: [("uplink".to_owned(), uplink), ("eth1-v20".to_owned(), v20)]
            .into_iter()
            .collect(),
        ..Default::default()
    });
    server
        .backend
        .set_afts([("default".to_owned(), aft)].into_iter().collect());
    server.backend.set_loc_rib(loc_rib());
}

/// Two paths from neighbors (one per family) and an originated network.
fn loc_rib() -> LocRib {
    vec![
        BgpRoute {
            prefix: "198.18.0.0/16".parse().expect("prefix"),
            peer: Some("192.0.2.2".parse().expect("ip")),
            path_id: 0,
            origin: BgpOrigin::Igp,
            next_hop: Some("192.0.2.2".parse().expect("ip")),
            local_pref: Some(200),
            med: Some(10),
        },
        BgpRoute {
            prefix: "203.0.113.0/24".parse().expect("prefix"),
            peer: None,
            path_id: 0,
            origin: BgpOrigin::Igp,
            next_hop: None,
            local_pref: Some(100),
            med: None,
        },
        BgpRoute {
            prefix: "2001:db8:99::/48".parse().expect("prefix"),
            peer: Some("2001:db8:1::2".parse().expect("ip")),
            path_id: 0,
            origin: BgpOrigin::Incomplete,
            next_hop: Some("2001:db8:1::2".parse().expect("ip")),
            local_pref: Some(100),
            med: None,
        },
    ]
}

#[tokio::test]
async fn bgp_config_and_state_are_served() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    assert_eq!(
        get_one(&mut c, &format!("{BGP}/global/config/as")).await,
        json!(65000)
    );
    assert_eq!(
        get_one(&mut c, &format!("{BGP}/global/state/router-id")).await,
        json!("192.0.2.1")
    );
    let cfg = get_one(&mut c, &format!("{NEIGHBOR}/config")).await;
    assert_eq!(cfg["peer-as"], json!(65001));
    assert_eq!(cfg["description"], json!("transit"));
    assert_eq!(cfg["enabled"], json!(true));
    assert!(cfg.get("auth-password").is_none(), "{cfg}");
    assert_eq!(
        get_one(&mut c, &format!("{NEIGHBOR}/state/session-state")).await,
        json!("ESTABLISHED")
    );
    assert_eq!(
        get_one(&mut c, &format!("{NEIGHBOR}/timers/config/hold-time")).await,
        json!(30.0)
    );
    let ietf = get_typed(
        &mut c,
        &format!("{NEIGHBOR}/timers/state/hold-time"),
        DataType::All,
        Encoding::JsonIetf,
    )
    .await;
    assert_eq!(ietf[0].1, json!("30.0"));
    assert_eq!(
        get_one(
            &mut c,
            &format!("{NEIGHBOR}/ebgp-multihop/config/multihop-ttl")
        )
        .await,
        json!(2)
    );
    assert_eq!(
        get_one(
            &mut c,
            &format!("{NEIGHBOR}/apply-policy/config/import-policy")
        )
        .await,
        json!(["in"])
    );
    let prefixes = get_one(
        &mut c,
        &format!("{NEIGHBOR}/afi-safis/afi-safi[afi-safi-name=IPV4_UNICAST]/state/prefixes"),
    )
    .await;
    assert_eq!(prefixes, json!({"received": 5, "sent": 2, "installed": 4}));

    // Wildcards.
    let states = get(
        &mut c,
        "/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/state/session-state",
    )
    .await;
    assert_eq!(states.len(), 1, "{states:?}");
    assert!(states[0].0.contains("neighbor[neighbor-address=192.0.2.2]"));

    // The password is never returned, whatever is asked.
    let everything = get(&mut c, "/").await;
    let text = format!("{everything:?}");
    assert!(!text.contains("s3cret-key"), "the password leaked");
    assert!(get(&mut c, &format!("{NEIGHBOR}/config/auth-password"))
        .await
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_installed_forwarding_table_is_served() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let afts = "/network-instances/network-instance[name=DEFAULT]/afts";
    assert_eq!(
        get_one(
            &mut c,
            &format!("{afts}/ipv4-unicast/ipv4-entry[prefix=198.18.0.0/16]/state/next-hop-group")
        )
        .await,
        json!(7)
    );
    let weights = get(
        &mut c,
        &format!(
            "{afts}/next-hop-groups/next-hop-group[id=7]/next-hops/next-hop[index=*]/state/weight"
        ),
    )
    .await;
    let w: Vec<serde_json::Value> = weights.into_iter().map(|(_, v)| v).collect();
    assert_eq!(w, [json!(1), json!(2)]);
    let hop = get_one(&mut c, &format!("{afts}/next-hops/next-hop[index=3]")).await;
    assert_eq!(hop["state"]["ip-address"], json!("192.0.2.2"));
    assert_eq!(hop["state"]["mac-address"], json!("02:00:00:00:00:02"));
    assert_eq!(hop["interface-ref"]["state"]["interface"], json!("eth1"));
    // A to-CPU entry has no next-hop group.
    let local = get_one(
        &mut c,
        &format!("{afts}/ipv4-unicast/ipv4-entry[prefix=192.0.2.1/32]/state"),
    )
    .await;
    assert_eq!(local, json!({"prefix": "192.0.2.1/32"}));
    // The table is state: a CONFIG Get of it finds nothing.
    let config_only = get_typed(&mut c, afts, DataType::Config, Encoding::Json).await;
    assert!(config_only.is_empty(), "{config_only:?}");
    server.stop().await;
}

#[tokio::test]
async fn routing_policy_follows_the_policy_model() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let stmt = "/routing-policy/policy-definitions/policy-definition[name=in]/statements/statement[name=1]";
    assert_eq!(
        get_one(
            &mut c,
            &format!("{stmt}/conditions/match-prefix-set/config/prefix-set")
        )
        .await,
        json!("in/1")
    );
    assert_eq!(
        get_one(&mut c, &format!("{stmt}/actions/config/policy-result")).await,
        json!("ACCEPT_ROUTE")
    );
    assert_eq!(
        get_one(
            &mut c,
            &format!("{stmt}/actions/bgp-actions/config/set-local-pref")
        )
        .await,
        json!(200)
    );
    assert_eq!(
        get_one(
            &mut c,
            "/routing-policy/policy-definitions/policy-definition[name=in]/statements/statement[name=2]/actions/config/policy-result"
        )
        .await,
        json!("REJECT_ROUTE")
    );
    let ranges = get(
        &mut c,
        "/routing-policy/defined-sets/prefix-sets/prefix-set[name=*]/prefixes/prefix[ip-prefix=*][masklength-range=*]/config/masklength-range",
    )
    .await;
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].1, json!("16..24"));
    let members = get(
        &mut c,
        "/routing-policy/defined-sets/bgp-defined-sets/community-sets/community-set[community-set-name=*]/config/community-member",
    )
    .await;
    assert_eq!(members[0].1, json!(["65000:100"]));
    let as_paths = get(
        &mut c,
        "/routing-policy/defined-sets/bgp-defined-sets/as-path-sets/as-path-set[as-path-set-name=*]/config/as-path-set-member",
    )
    .await;
    assert_eq!(as_paths[0].1, json!(["(^|_)65001(_|$)"]));

    // Set on routing policy: UNIMPLEMENTED, nothing committed.
    let before = server.history().len();
    let err = c
        .set(set_request(
            &[],
            vec![],
            vec![json_update(
                "/routing-policy/policy-definitions/policy-definition[name=out]/config/name",
                json!("out"),
            )],
        ))
        .await
        .expect_err("routing policy is read-only");
    assert_eq!(err.code(), Code::Unimplemented, "{}", err.message());
    assert!(
        err.message().contains("/routing-policy"),
        "{}",
        err.message()
    );
    assert_eq!(server.history().len(), before);
    server.stop().await;
}

#[tokio::test]
async fn set_changes_bgp_in_one_commit() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let before = server.history().len();
    c.set(set_request(
        &[],
        vec![],
        vec![
            json_update(&format!("{NEIGHBOR}/config/peer-as"), json!(65010)),
            json_update(
                &format!("{NEIGHBOR}/config/auth-password"),
                json!("new-key"),
            ),
            json_update(
                &format!("{NEIGHBOR}/transport/config/passive-mode"),
                json!(true),
            ),
            json_update(
                &format!("{BGP}/neighbors/neighbor[neighbor-address=2001:db8:1::2]/config"),
                json!({"neighbor-address": "2001:db8:1::2", "peer-as": 65020}),
            ),
        ],
    ))
    .await
    .expect("Set");
    assert_eq!(server.history().len(), before + 1, "one commit");
    let bgp = server.config().await.bgp.expect("bgp");
    let n = &bgp.neighbors[0];
    assert_eq!(n.remote_as, 65010);
    assert_eq!(n.password.as_deref(), Some("new-key"));
    assert!(n.passive);
    assert_eq!(n.import_policy.as_deref(), Some("in"), "kept");
    assert_eq!(bgp.neighbors[1].remote_as, 65020);
    assert_eq!(bgp.policies.len(), 1, "policies kept");
    let cfg = get_one(&mut c, &format!("{NEIGHBOR}/config")).await;
    assert!(cfg.get("auth-password").is_none());

    // Deleting the password removes it.
    c.set(set_request(
        &[&format!("{NEIGHBOR}/config/auth-password")],
        vec![],
        vec![],
    ))
    .await
    .expect("delete");
    let bgp = server.config().await.bgp.expect("bgp");
    assert_eq!(bgp.neighbors[0].password, None);
    server.stop().await;
}

#[tokio::test]
async fn bad_bgp_input_is_refused_naming_the_path() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let before = server.history().len();
    let cases = [
        (format!("{NEIGHBOR}/config/peer-as"), json!("many")),
        (
            format!("{BGP}/neighbors/neighbor[address=192.0.2.2]/config/peer-as"),
            json!(1),
        ),
        (
            format!("{BGP}/neighbors/neighbor[neighbor-address=not-an-ip]/config/peer-as"),
            json!(1),
        ),
        (format!("{NEIGHBOR}/timers/config/hold-time"), json!(1.5)),
        (format!("{NEIGHBOR}/config/enabled"), json!(false)),
        (
            format!("{NEIGHBOR}/apply-policy/config/import-policy"),
            json!(["in", "in"]),
        ),
        (
            format!("{NEIGHBOR}/apply-policy/config/export-policy"),
            json!(["nope"]),
        ),
    ];
    for (p, v) in cases {
        let err = c
            .set(set_request(&[], vec![], vec![json_update(&p, v.clone())]))
            .await
            .expect_err(&p);
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{p} {v}: {}",
            err.message()
        );
        assert!(err.message().contains("neighbor"), "{p}: {}", err.message());
    }
    // A policy the document lacks: the document's check, named by both
    // paths.
    let p = format!("{NEIGHBOR}/apply-policy/config/export-policy");
    let err = c
        .set(set_request(
            &[],
            vec![],
            vec![json_update(&p, json!(["nope"]))],
        ))
        .await
        .expect_err("no such policy");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(&p.replace("name=default", "name=DEFAULT"))
            && err.message().contains("bgp.neighbors[0].export_policy"),
        "{}",
        err.message()
    );

    // An unknown node is NOT_FOUND (as everywhere in the served tree).
    let p = format!("{NEIGHBOR}/config/colour");
    let err = c
        .set(set_request(
            &[],
            vec![],
            vec![json_update(&p, json!("red"))],
        ))
        .await
        .expect_err("unknown leaf");
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().contains(&p), "{}", err.message());
    assert_eq!(server.history().len(), before, "nothing applied");
    server.stop().await;
}

// ---------------------------------------------------------------- Subscribe

mod stream {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use gnmi_server::proto::gnmi::{
        subscribe_request, subscribe_response, subscription_list, Encoding, SubscribeRequest,
        SubscribeResponse, Subscription, SubscriptionList, SubscriptionMode,
    };
    use gnmi_server::GnmiClient;
    use serde_json::Value as Json;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;
    use tonic::Streaming;

    use super::common::{json_of, path, text};

    /// An open Subscribe RPC (the request stream stays open while held).
    pub struct Sub {
        _requests: mpsc::Sender<SubscribeRequest>,
        responses: Streaming<SubscribeResponse>,
    }

    /// One response: the updates (path → value), or `None` for a
    /// sync_response; `Err(())` when the RPC ended.
    pub type Msg = Result<Option<BTreeMap<String, Json>>, ()>;

    impl Sub {
        pub async fn next(&mut self) -> Msg {
            let r = tokio::time::timeout(Duration::from_secs(5), self.responses.message())
                .await
                .expect("a response within 5 s")
                .expect("the subscription failed");
            let Some(r) = r else { return Err(()) };
            Ok(match r.response.expect("a response") {
                subscribe_response::Response::SyncResponse(_) => None,
                subscribe_response::Response::Update(n) => Some(
                    n.update
                        .iter()
                        .map(|u| (text(u.path.as_ref().expect("path")), json_of(&u.val)))
                        .collect(),
                ),
                other => panic!("unexpected {other:?}"),
            })
        }
    }

    pub async fn open(
        client: &mut GnmiClient<Channel>,
        mode: subscription_list::Mode,
        sub_mode: SubscriptionMode,
        sample_ms: u64,
        p: &str,
    ) -> Sub {
        let (requests, rx) = mpsc::channel(4);
        requests
            .send(SubscribeRequest {
                request: Some(subscribe_request::Request::Subscribe(SubscriptionList {
                    mode: mode as i32,
                    encoding: Encoding::Json as i32,
                    subscription: vec![Subscription {
                        path: Some(path(p)),
                        mode: sub_mode as i32,
                        sample_interval: sample_ms * 1_000_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                ..Default::default()
            })
            .await
            .expect("queue");
        let responses = client
            .subscribe(ReceiverStream::new(rx))
            .await
            .expect("Subscribe")
            .into_inner();
        Sub {
            _requests: requests,
            responses,
        }
    }
}

use gnmi_server::proto::gnmi::{subscription_list::Mode, SubscriptionMode};

#[tokio::test]
async fn subscribe_once_returns_prefix_counts_and_ends() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let mut sub = stream::open(
        &mut c,
        Mode::Once,
        SubscriptionMode::TargetDefined,
        0,
        &format!("{BGP}/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/state/prefixes/received"),
    )
    .await;
    let first = sub.next().await.expect("open").expect("an update");
    let values: Vec<&serde_json::Value> = first.values().collect();
    assert_eq!(values, [&json!(5)], "{first:?}");
    assert_eq!(sub.next().await, Ok(None), "sync_response");
    assert_eq!(sub.next().await, Err(()), "ONCE ends");
    server.stop().await;
}

#[tokio::test]
async fn on_change_follows_the_session_state() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let p = format!("{NEIGHBOR}/state/session-state");
    let mut sub = stream::open(&mut c, Mode::Stream, SubscriptionMode::OnChange, 0, &p).await;
    let first = sub.next().await.expect("open").expect("an update");
    assert_eq!(first.values().next(), Some(&json!("ESTABLISHED")));
    assert_eq!(sub.next().await, Ok(None), "sync_response");

    let mut state = gnmi_server::Backend::state(server.backend.as_ref()).await;
    let bgp = state.bgp.as_mut().expect("bgp");
    bgp.neighbors
        .values_mut()
        .for_each(|n| n.session_state = SessionState::Active);
    server.backend.set_state(state);
    let change = sub.next().await.expect("open").expect("an update");
    assert_eq!(change.len(), 1, "{change:?}");
    assert_eq!(change.values().next(), Some(&json!("ACTIVE")));
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn sample_reads_the_forwarding_table_each_interval() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let p = "/network-instances/network-instance[name=DEFAULT]/afts/ipv4-unicast/ipv4-entry[prefix=*]/state/next-hop-group";
    let mut sub = stream::open(&mut c, Mode::Stream, SubscriptionMode::Sample, 100, p).await;
    let first = sub.next().await.expect("open").expect("an update");
    assert_eq!(first.values().collect::<Vec<_>>(), [&json!(7)], "{first:?}");
    assert_eq!(sub.next().await, Ok(None), "sync_response");

    let mut afts = gnmi_server::Backend::afts(server.backend.as_ref()).await;
    let aft = afts.get_mut("default").expect("default table");
    aft.entries
        .insert("198.18.0.0/16".parse().expect("prefix"), Some(9));
    server.backend.set_afts(afts);
    let mut seen = Vec::new();
    for _ in 0..20 {
        let m = sub.next().await.expect("open").expect("an update");
        seen.extend(m.into_values());
        if seen.last() == Some(&json!(9)) {
            break;
        }
    }
    assert_eq!(seen.last(), Some(&json!(9)), "{seen:?}");
    drop(sub);
    server.stop().await;
}

#[tokio::test]
async fn set_creates_and_removes_bgp() {
    let server = common::start().await;
    let mut c = server.client().await;
    let protocol = "/network-instances/network-instance[name=DEFAULT]/protocols/protocol[identifier=BGP][name=BGP]";

    // Without a router-id: refused, naming the global config.
    let err = c
        .set(set_request(
            &[],
            vec![],
            vec![json_update(
                &format!("{protocol}/bgp/global/config/as"),
                json!(65100),
            )],
        ))
        .await
        .expect_err("no router-id");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("/bgp/global/config"),
        "{}",
        err.message()
    );
    assert!(server.config().await.bgp.is_none());

    // Created with JSON_IETF (module-qualified identities).
    let before = server.history().len();
    c.set(set_request(
        &[],
        vec![ietf_update(
            protocol,
            json!({
                "openconfig-network-instance:identifier": "openconfig-policy-types:BGP",
                "name": "BGP",
                "config": {"identifier": "openconfig-policy-types:BGP", "name": "BGP"},
                "bgp": {
                    "global": {"config": {"as": 65100, "router-id": "192.0.2.1"}},
                    "neighbors": {"neighbor": [{
                        "neighbor-address": "2001:db8:1::2",
                        "config": {"neighbor-address": "2001:db8:1::2", "peer-as": 65200},
                        "timers": {"config": {"hold-time": "9.00"}},
                        "afi-safis": {"afi-safi": [{
                            "afi-safi-name": "openconfig-bgp-types:IPV6_UNICAST",
                            "config": {
                                "afi-safi-name": "openconfig-bgp-types:IPV6_UNICAST",
                                "enabled": true
                            }
                        }]}
                    }]}
                }
            }),
        )],
        vec![],
    ))
    .await
    .expect("create BGP");
    assert_eq!(server.history().len(), before + 1);
    let bgp = server.config().await.bgp.expect("bgp");
    assert_eq!(
        (bgp.asn, bgp.router_id.to_string()),
        (65100, "192.0.2.1".into())
    );
    let n = &bgp.neighbors[0];
    assert_eq!(n.remote_as, 65200);
    assert_eq!(n.hold_time, 9);
    assert_eq!(
        n.families,
        [nos_core::config::AddressFamily::Ipv6Unicast],
        "{n:?}"
    );

    // Removed by deleting the protocol.
    c.set(set_request(&[protocol], vec![], vec![]))
        .await
        .expect("delete BGP");
    assert!(server.config().await.bgp.is_none());
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn bgp_with_policies_is_not_removed_behind_their_back() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let before = server.history().len();
    let err = c
        .set(set_request(
            &["/network-instances/network-instance[name=DEFAULT]/protocols/protocol[identifier=BGP][name=BGP]"],
            vec![],
            vec![],
        ))
        .await
        .expect_err("policies would go too");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("policies"), "{}", err.message());
    assert_eq!(server.history().len(), before);
    server.stop().await;
}

const UPLINK: &str = "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=0]";
const LOC_RIB_V4: &str = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=BGP]/bgp/rib/afi-safis/afi-safi[afi-safi-name=IPV4_UNICAST]/ipv4-unicast/loc-rib/routes";

#[tokio::test]
async fn neighbors_are_served_per_subinterface() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    assert_eq!(
        get_one(
            &mut c,
            &format!("{UPLINK}/ipv4/neighbors/neighbor[ip=192.0.2.2]/state")
        )
        .await,
        json!({"ip": "192.0.2.2", "link-layer-address": "02:00:00:00:00:02", "origin": "DYNAMIC"})
    );
    assert_eq!(
        get_one(
            &mut c,
            &format!("{UPLINK}/ipv6/neighbors/neighbor[ip=2001:db8:1::2]/state")
        )
        .await,
        json!({
            "ip": "2001:db8:1::2",
            "link-layer-address": "02:00:00:00:00:02",
            "origin": "DYNAMIC",
            "neighbor-state": "PROBE"
        })
    );
    // An unresolved neighbor on the VLAN 20 subinterface: no address yet.
    let v20 = get_one(
        &mut c,
        "/interfaces/interface[name=eth1]/subinterfaces/subinterface[index=20]/ipv4/neighbors/neighbor[ip=198.51.100.2]/state",
    )
    .await;
    assert_eq!(v20, json!({"ip": "198.51.100.2", "origin": "DYNAMIC"}));
    // Every neighbor, by wildcard; each in its own family.
    let all = get(
        &mut c,
        "/interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/*/neighbors/neighbor[ip=*]/state/ip",
    )
    .await;
    let ips: Vec<&serde_json::Value> = all.iter().map(|(_, v)| v).collect();
    assert_eq!(
        ips,
        [
            &json!("192.0.2.2"),
            &json!("2001:db8:1::2"),
            &json!("198.51.100.2")
        ],
        "{all:?}"
    );
    assert!(all[1].0.contains("/ipv6/"), "{all:?}");
    // The addresses are still there next to them.
    assert_eq!(
        get_one(
            &mut c,
            &format!("{UPLINK}/ipv4/addresses/address[ip=192.0.2.1]/config/prefix-length")
        )
        .await,
        json!(24)
    );
    // State only: a CONFIG Get finds none.
    let config_only = get_typed(
        &mut c,
        &format!("{UPLINK}/ipv4/neighbors"),
        DataType::Config,
        Encoding::Json,
    )
    .await;
    assert!(config_only.is_empty(), "{config_only:?}");
    server.stop().await;
}

#[tokio::test]
async fn neighbors_and_the_loc_rib_are_read_only() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let before = server.history().len();
    for (p, v) in [
        (
            format!("{UPLINK}/ipv4/neighbors/neighbor[ip=192.0.2.9]/state/link-layer-address"),
            json!("02:00:00:00:00:09"),
        ),
        (
            format!("{UPLINK}/ipv4/neighbors"),
            json!({"neighbor": [{"ip": "192.0.2.9"}]}),
        ),
        (
            format!("{LOC_RIB_V4}/route[prefix=198.18.0.0/16][origin=192.0.2.2][path-id=0]/state/valid-route"),
            json!(false),
        ),
    ] {
        let err = c
            .set(set_request(&[], vec![], vec![json_update(&p, v)]))
            .await
            .expect_err("read-only");
        assert_eq!(err.code(), Code::InvalidArgument, "{p}: {}", err.message());
        assert!(err.message().contains("read-only"), "{p}: {}", err.message());
    }
    let err = c
        .set(set_request(
            &[&format!("{UPLINK}/ipv4/neighbors/neighbor[ip=192.0.2.2]")],
            vec![],
            vec![],
        ))
        .await
        .expect_err("read-only");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("read-only"), "{}", err.message());
    assert_eq!(server.history().len(), before, "nothing committed");
    server.stop().await;
}

#[tokio::test]
async fn the_loc_rib_is_served_per_family() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let route = get_one(
        &mut c,
        &format!("{LOC_RIB_V4}/route[prefix=198.18.0.0/16][origin=192.0.2.2][path-id=0]/state"),
    )
    .await;
    assert_eq!(route["prefix"], json!("198.18.0.0/16"));
    assert_eq!(route["origin"], json!("192.0.2.2"));
    assert_eq!(route["path-id"], json!(0));
    assert_eq!(route["valid-route"], json!(true));
    // Its attributes, through its attribute set.
    let index = route["attr-index"].as_u64().expect("attr-index");
    let rib = "/network-instances/network-instance[name=DEFAULT]/protocols/protocol[identifier=BGP][name=BGP]/bgp/rib";
    let attrs = get_one(
        &mut c,
        &format!("{rib}/attr-sets/attr-set[index={index}]/state"),
    )
    .await;
    assert_eq!(attrs["next-hop"], json!("192.0.2.2"));
    assert_eq!(attrs["local-pref"], json!(200));
    assert_eq!(attrs["med"], json!(10));
    assert_eq!(attrs["origin"], json!("IGP"));

    // A network this speaker originates: origin BGP.
    let local = get(
        &mut c,
        &format!("{LOC_RIB_V4}/route[prefix=203.0.113.0/24]/state/origin"),
    )
    .await;
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0].1, json!("BGP"));
    assert!(local[0].0.contains("[origin=BGP]"), "{local:?}");

    // IPv6 routes only under IPV6_UNICAST.
    let v4: Vec<serde_json::Value> = get(&mut c, &format!("{LOC_RIB_V4}/route/state/prefix"))
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(v4, [json!("198.18.0.0/16"), json!("203.0.113.0/24")]);
    let v6 = get(
        &mut c,
        &format!("{rib}/afi-safis/afi-safi[afi-safi-name=IPV6_UNICAST]/ipv6-unicast/loc-rib/routes/route/state"),
    )
    .await;
    assert_eq!(v6.len(), 1, "{v6:?}");
    assert_eq!(v6[0].1["prefix"], json!("2001:db8:99::/48"));
    let ietf = get_typed(
        &mut c,
        &format!("{LOC_RIB_V4}/route[prefix=203.0.113.0/24]/state/origin"),
        DataType::All,
        Encoding::JsonIetf,
    )
    .await;
    assert_eq!(ietf[0].1, json!("openconfig-policy-types:BGP"));
    server.stop().await;
}

#[tokio::test]
async fn only_requests_that_can_reach_the_rib_read_it() {
    let (server, counting) = start_counting().await;
    set_up(&server).await;
    let mut c = server.client().await;
    let _ = get(&mut c, &format!("{BGP}/neighbors")).await;
    let _ = get(&mut c, "/interfaces").await;
    let _ = get(&mut c, &format!("{UPLINK}/ipv4/neighbors")).await;
    assert_eq!(counting.rib_reads(), 0);
    let mut sub = stream::open(
        &mut c,
        Mode::Once,
        SubscriptionMode::TargetDefined,
        0,
        &format!("{BGP}/global"),
    )
    .await;
    while sub.next().await.is_ok() {}
    assert_eq!(counting.rib_reads(), 0);
    let rows = get(&mut c, &format!("{LOC_RIB_V4}/route/state/prefix")).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(counting.rib_reads(), 1);
    let _ = get(&mut c, "/").await;
    assert_eq!(counting.rib_reads(), 2);
    server.stop().await;
}

#[tokio::test]
async fn subscribe_once_and_sample_serve_neighbors_and_the_loc_rib() {
    let server = with_bgp().await;
    let mut c = server.client().await;
    let mut sub = stream::open(
        &mut c,
        Mode::Once,
        SubscriptionMode::TargetDefined,
        0,
        &format!("{UPLINK}/ipv6/neighbors/neighbor[ip=*]/state/neighbor-state"),
    )
    .await;
    let first = sub.next().await.expect("open").expect("an update");
    assert_eq!(
        first.values().collect::<Vec<_>>(),
        [&json!("PROBE")],
        "{first:?}"
    );
    assert_eq!(sub.next().await, Ok(None), "sync_response");
    assert_eq!(sub.next().await, Err(()), "ONCE ends");

    let mut sub = stream::open(
        &mut c,
        Mode::Stream,
        SubscriptionMode::Sample,
        100,
        &format!("{LOC_RIB_V4}/route[prefix=*][origin=*][path-id=*]/state/prefix"),
    )
    .await;
    let first = sub.next().await.expect("open").expect("an update");
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(sub.next().await, Ok(None), "sync_response");
    let mut rib = loc_rib();
    rib.push(BgpRoute {
        prefix: "198.19.0.0/16".parse().expect("prefix"),
        ..rib[0].clone()
    });
    server.backend.set_loc_rib(rib);
    let mut seen = Vec::new();
    for _ in 0..20 {
        let m = sub.next().await.expect("open").expect("an update");
        seen.extend(m.into_values());
        if seen.contains(&json!("198.19.0.0/16")) {
            break;
        }
    }
    assert!(seen.contains(&json!("198.19.0.0/16")), "{seen:?}");
    drop(sub);
    server.stop().await;
}
