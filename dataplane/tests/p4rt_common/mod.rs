//! The harness of the P4Runtime target tests: a target on a detached x86
//! dataplane served on an ephemeral loopback port, the generated client,
//! controller streams, and builders of entries resolved by name from the
//! committed nos.p4 P4Info. Each `p4rt_*` test includes it as `mod p4rt_common`.
#![allow(dead_code)]

use dataplane::p4rt::{Options, PacketInRelay, PortConfig, Server};
use dataplane::X86Backend;
use p4::p4_runtime_client::P4RuntimeClient;
use p4runtime_proto::google::rpc;
use p4runtime_proto::p4::config::v1 as cfg;
use p4runtime_proto::p4::v1 as p4;
use p4runtime_proto::prost::Message;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

pub const DEVICE: u64 = 1;
pub const PORTS: [u32; 3] = [1, 2, 3];

pub fn p4info() -> cfg::P4Info {
    static INFO: std::sync::OnceLock<cfg::P4Info> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        let text = include_str!("../../../p4/programs/nos.p4info.txtpb");
        p4runtime_proto::text_format::p4info_from_text(text).expect("nos.p4info.txtpb parses")
    })
    .clone()
}

fn info() -> &'static cfg::P4Info {
    static INFO: std::sync::OnceLock<cfg::P4Info> = std::sync::OnceLock::new();
    INFO.get_or_init(p4info)
}

#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub server: Server<X86Backend>,
    pub relay: PacketInRelay,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Target {
    pub async fn start() -> Target {
        let relay = PacketInRelay::new();
        let options = Options {
            device_id: DEVICE,
            ports: PORTS
                .iter()
                .map(|p| PortConfig {
                    id: *p,
                    ifname: format!("test{p}"),
                    mtu: 1500,
                })
                .collect(),
        };
        let server =
            Server::new(options, X86Backend::detached(), relay.clone()).expect("target starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            dataplane::p4rt::transport()
                .add_service(server.clone().into_service())
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Target {
            addr,
            server,
            relay,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> P4RuntimeClient<Channel> {
        P4RuntimeClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    pub async fn stop(mut self) {
        self.server.close_streams();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("server stops")
                .expect("server task")
                .expect("server");
        }
    }
}

pub fn uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

/// One controller's StreamChannel.
#[derive(Debug)]
pub struct Controller {
    tx: mpsc::Sender<p4::StreamMessageRequest>,
    rx: Streaming<p4::StreamMessageResponse>,
}

impl Controller {
    pub async fn open(client: &mut P4RuntimeClient<Channel>) -> Controller {
        let (tx, rx) = mpsc::channel(64);
        let rx = client
            .stream_channel(ReceiverStream::new(rx))
            .await
            .expect("StreamChannel")
            .into_inner();
        Controller { tx, rx }
    }

    pub async fn send(&self, u: p4::stream_message_request::Update) {
        self.tx
            .send(p4::StreamMessageRequest { update: Some(u) })
            .await
            .expect("stream open");
    }

    pub async fn arbitrate(&self, device: u64, election_id: Option<u128>) {
        self.send(p4::stream_message_request::Update::Arbitration(
            p4::MasterArbitrationUpdate {
                device_id: device,
                election_id: election_id.map(uint128),
                ..Default::default()
            },
        ))
        .await;
    }

    /// The next message (an error if the stream ended with one); panics
    /// after 5 s.
    pub async fn next(&mut self) -> Result<Option<p4::StreamMessageResponse>, Status> {
        tokio::time::timeout(Duration::from_secs(5), self.rx.message())
            .await
            .expect("a stream message within 5 s")
    }

    /// Whether nothing arrives within `ms` milliseconds.
    pub async fn quiet(&mut self, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), self.rx.message())
            .await
            .is_err()
    }

    pub async fn next_update(&mut self) -> p4::stream_message_response::Update {
        self.next()
            .await
            .expect("no stream error")
            .expect("stream open")
            .update
            .expect("an update")
    }

    /// The next arbitration update's status code and election id.
    pub async fn arbitration(&mut self) -> (Code, Option<u128>) {
        match self.next_update().await {
            p4::stream_message_response::Update::Arbitration(a) => (
                Code::from(a.status.expect("status").code),
                a.election_id
                    .map(|e| (u128::from(e.high) << 64) | u128::from(e.low)),
            ),
            other => panic!("expected an arbitration update, got {other:?}"),
        }
    }

    /// Opens a stream and wins arbitration with `election_id`.
    pub async fn primary(client: &mut P4RuntimeClient<Channel>, election_id: u128) -> Controller {
        let mut c = Controller::open(client).await;
        c.arbitrate(DEVICE, Some(election_id)).await;
        assert_eq!(c.arbitration().await.0, Code::Ok, "becomes primary");
        c
    }
}

pub async fn set_pipeline(
    client: &mut P4RuntimeClient<Channel>,
    election_id: u128,
    action: p4::set_forwarding_pipeline_config_request::Action,
    info: Option<cfg::P4Info>,
    cookie: Option<u64>,
) -> Result<(), Status> {
    client
        .set_forwarding_pipeline_config(p4::SetForwardingPipelineConfigRequest {
            device_id: DEVICE,
            election_id: Some(uint128(election_id)),
            action: action as i32,
            config: info.map(|i| p4::ForwardingPipelineConfig {
                p4info: Some(i),
                p4_device_config: b"x86".to_vec(),
                cookie: cookie.map(|c| p4::forwarding_pipeline_config::Cookie { cookie: c }),
            }),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// A target with a primary controller (election id 10) and the nos.p4
/// pipeline committed.
pub async fn ready() -> (Target, P4RuntimeClient<Channel>, Controller) {
    let t = Target::start().await;
    let mut client = t.client().await;
    let c = Controller::primary(&mut client, 10).await;
    set_pipeline(
        &mut client,
        10,
        p4::set_forwarding_pipeline_config_request::Action::VerifyAndCommit,
        Some(p4info()),
        Some(7),
    )
    .await
    .expect("pipeline");
    (t, client, c)
}

pub async fn write_as(
    client: &mut P4RuntimeClient<Channel>,
    election_id: Option<u128>,
    updates: Vec<p4::Update>,
    atomicity: p4::write_request::Atomicity,
) -> Result<(), Status> {
    client
        .write(p4::WriteRequest {
            device_id: DEVICE,
            election_id: election_id.map(uint128),
            updates,
            atomicity: atomicity as i32,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// Writes as the primary of [`ready`].
pub async fn write(
    client: &mut P4RuntimeClient<Channel>,
    updates: Vec<p4::Update>,
) -> Result<(), Status> {
    write_as(
        client,
        Some(10),
        updates,
        p4::write_request::Atomicity::ContinueOnError,
    )
    .await
}

/// The per-element errors of a batch status (code UNKNOWN).
pub fn details(s: &Status) -> Vec<(Code, String)> {
    assert_eq!(s.code(), Code::Unknown, "a batch failure: {s:?}");
    let st = rpc::Status::decode(s.details()).expect("details hold a google.rpc.Status");
    assert_eq!(st.code, Code::Unknown as i32);
    st.details
        .iter()
        .map(|a| {
            let e: p4::Error = a.to_msg().expect("a p4.v1.Error");
            (Code::from(e.canonical_code), e.message)
        })
        .collect()
}

pub fn codes(s: &Status) -> Vec<Code> {
    details(s).into_iter().map(|(c, _)| c).collect()
}

/// Reads; returns the entities and the final error, if the stream ended
/// with one.
pub async fn read_all(
    client: &mut P4RuntimeClient<Channel>,
    entities: Vec<p4::Entity>,
) -> Result<(Vec<p4::Entity>, Option<Status>), Status> {
    let mut s = client
        .read(p4::ReadRequest {
            device_id: DEVICE,
            entities,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    loop {
        match s.message().await {
            Ok(Some(r)) => out.extend(r.entities),
            Ok(None) => return Ok((out, None)),
            Err(e) => return Ok((out, Some(e))),
        }
    }
}

pub async fn read_tables(
    client: &mut P4RuntimeClient<Channel>,
    filters: Vec<p4::TableEntry>,
) -> Vec<p4::TableEntry> {
    let (entities, err) = read_all(
        client,
        filters
            .into_iter()
            .map(|t| p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(t)),
            })
            .collect(),
    )
    .await
    .expect("Read");
    assert!(err.is_none(), "read failed: {err:?}");
    entities
        .into_iter()
        .map(|e| match e.entity {
            Some(p4::entity::Entity::TableEntry(t)) => t,
            other => panic!("expected a table entry, got {other:?}"),
        })
        .collect()
}

// ---- entries, by name ----

fn pre(p: &Option<cfg::Preamble>) -> (u32, &str) {
    let p = p.as_ref().expect("preamble");
    (p.id, p.name.as_str())
}

pub fn table_id(name: &str) -> u32 {
    info()
        .tables
        .iter()
        .map(|t| pre(&t.preamble))
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("no table {name}"))
        .0
}

pub fn field_id(table: &str, field: &str) -> u32 {
    let info = info();
    let t = info
        .tables
        .iter()
        .find(|t| pre(&t.preamble).1 == table)
        .unwrap_or_else(|| panic!("no table {table}"));
    t.match_fields
        .iter()
        .find(|f| f.name == field)
        .unwrap_or_else(|| panic!("no field {table}.{field}"))
        .id
}

pub fn action_id(name: &str) -> u32 {
    info()
        .actions
        .iter()
        .map(|a| pre(&a.preamble))
        .find(|(_, n)| *n == name)
        .unwrap_or_else(|| panic!("no action {name}"))
        .0
}

pub fn param_id(action: &str, param: &str) -> u32 {
    let info = info();
    let a = info
        .actions
        .iter()
        .find(|a| pre(&a.preamble).1 == action)
        .unwrap_or_else(|| panic!("no action {action}"));
    a.params
        .iter()
        .find(|p| p.name == param)
        .unwrap_or_else(|| panic!("no param {action}.{param}"))
        .id
}

pub fn packet_meta_id(header: &str, field: &str) -> u32 {
    let info = info();
    let h = info
        .controller_packet_metadata
        .iter()
        .find(|h| pre(&h.preamble).1 == header)
        .unwrap_or_else(|| panic!("no header {header}"));
    h.metadata
        .iter()
        .find(|m| m.name == field)
        .unwrap_or_else(|| panic!("no field {header}.{field}"))
        .id
}

/// A match value as the shortest big-endian bytes.
pub fn b(v: u128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let start = bytes.iter().position(|x| *x != 0).unwrap_or(15);
    bytes[start..].to_vec()
}

pub fn mac(s: &str) -> u128 {
    s.split(':').fold(0u128, |acc, h| {
        (acc << 8) | u128::from(u8::from_str_radix(h, 16).unwrap())
    })
}

pub fn ip4(s: &str) -> u128 {
    u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()))
}

pub fn ip6(s: &str) -> u128 {
    u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
}

/// An IPv4 address as the 128-bit `neighbor_ip` (IPv4-mapped).
pub fn mapped(s: &str) -> u128 {
    0xffff_0000_0000 | ip4(s)
}

pub fn exact(table: &str, field: &str, v: Vec<u8>) -> p4::FieldMatch {
    p4::FieldMatch {
        field_id: field_id(table, field),
        field_match_type: Some(p4::field_match::FieldMatchType::Exact(
            p4::field_match::Exact { value: v },
        )),
    }
}

pub fn lpm(table: &str, field: &str, v: Vec<u8>, len: i32) -> p4::FieldMatch {
    p4::FieldMatch {
        field_id: field_id(table, field),
        field_match_type: Some(p4::field_match::FieldMatchType::Lpm(p4::field_match::Lpm {
            value: v,
            prefix_len: len,
        })),
    }
}

pub fn ternary(table: &str, field: &str, v: Vec<u8>, m: Vec<u8>) -> p4::FieldMatch {
    p4::FieldMatch {
        field_id: field_id(table, field),
        field_match_type: Some(p4::field_match::FieldMatchType::Ternary(
            p4::field_match::Ternary { value: v, mask: m },
        )),
    }
}

pub fn range(table: &str, field: &str, low: u128, high: u128) -> p4::FieldMatch {
    p4::FieldMatch {
        field_id: field_id(table, field),
        field_match_type: Some(p4::field_match::FieldMatchType::Range(
            p4::field_match::Range {
                low: b(low),
                high: b(high),
            },
        )),
    }
}

pub fn call(action: &str, params: &[(&str, Vec<u8>)]) -> p4::Action {
    p4::Action {
        action_id: action_id(action),
        params: params
            .iter()
            .map(|(n, v)| p4::action::Param {
                param_id: param_id(action, n),
                value: v.clone(),
            })
            .collect(),
    }
}

pub fn direct(action: &str, params: &[(&str, Vec<u8>)]) -> Option<p4::TableAction> {
    Some(p4::TableAction {
        r#type: Some(p4::table_action::Type::Action(call(action, params))),
    })
}

pub fn entry(
    table: &str,
    matches: Vec<p4::FieldMatch>,
    action: Option<p4::TableAction>,
    priority: i32,
) -> p4::TableEntry {
    p4::TableEntry {
        table_id: table_id(table),
        r#match: matches,
        action,
        priority,
        ..Default::default()
    }
}

fn update(ty: p4::update::Type, te: p4::TableEntry) -> p4::Update {
    p4::Update {
        r#type: ty as i32,
        entity: Some(p4::Entity {
            entity: Some(p4::entity::Entity::TableEntry(te)),
        }),
    }
}

pub fn insert(te: p4::TableEntry) -> p4::Update {
    update(p4::update::Type::Insert, te)
}

pub fn modify(te: p4::TableEntry) -> p4::Update {
    update(p4::update::Type::Modify, te)
}

pub fn delete(te: p4::TableEntry) -> p4::Update {
    update(p4::update::Type::Delete, te)
}

// The entries of a routed interface, the contract's canonical encoding.

pub fn router_interface(rif: u32, port: u32, src_mac: &str) -> p4::TableEntry {
    entry(
        "router_interface",
        vec![exact("router_interface", "rif_id", b(rif.into()))],
        direct(
            "set_port_and_src_mac",
            &[("port", b(port.into())), ("src_mac", b(mac(src_mac)))],
        ),
        0,
    )
}

pub fn ingress_rif(port: u32, vlan: u32, rif: u32, vrf: u32) -> p4::TableEntry {
    entry(
        "ingress_rif",
        vec![
            exact("ingress_rif", "in_port", b(port.into())),
            exact("ingress_rif", "vlan_id", b(vlan.into())),
        ],
        direct(
            "set_ingress_rif",
            &[("rif_id", b(rif.into())), ("vrf_id", b(vrf.into()))],
        ),
        0,
    )
}

pub fn l3_admit(dst_mac: &str, priority: i32) -> p4::TableEntry {
    entry(
        "l3_admit",
        vec![ternary(
            "l3_admit",
            "dst_mac",
            b(mac(dst_mac)),
            b(0xffff_ffff_ffff),
        )],
        direct("admit_to_l3", &[]),
        priority,
    )
}

pub fn neighbor(rif: u32, ip: u128, dst_mac: &str) -> p4::TableEntry {
    entry(
        "neighbor",
        vec![
            exact("neighbor", "rif_id", b(rif.into())),
            exact("neighbor", "neighbor_ip", b(ip)),
        ],
        direct("set_dst_mac", &[("dst_mac", b(mac(dst_mac)))]),
        0,
    )
}

pub fn nexthop(id: u32, rif: u32, ip: u128) -> p4::TableEntry {
    entry(
        "nexthop",
        vec![exact("nexthop", "nexthop_id", b(id.into()))],
        direct(
            "set_ip_nexthop",
            &[("rif_id", b(rif.into())), ("neighbor_ip", b(ip))],
        ),
        0,
    )
}

pub fn route4(vrf: u32, prefix: &str, len: i32, action: Option<p4::TableAction>) -> p4::TableEntry {
    let mut m = vec![exact("ipv4_lpm", "vrf_id", b(vrf.into()))];
    if len > 0 {
        m.push(lpm("ipv4_lpm", "ipv4_dst", b(ip4(prefix)), len));
    }
    entry("ipv4_lpm", m, action, 0)
}

pub fn to_nexthop(id: u32) -> Option<p4::TableAction> {
    direct("set_nexthop_id", &[("nexthop_id", b(id.into()))])
}

pub fn to_group(id: u32) -> Option<p4::TableAction> {
    direct("set_wcmp_group_id", &[("wcmp_group_id", b(id.into()))])
}

pub fn wcmp_group(id: u32, members: &[(u32, i32)]) -> p4::TableEntry {
    entry(
        "wcmp_group",
        vec![exact("wcmp_group", "wcmp_group_id", b(id.into()))],
        Some(p4::TableAction {
            r#type: Some(p4::table_action::Type::ActionProfileActionSet(
                p4::ActionProfileActionSet {
                    action_profile_actions: members
                        .iter()
                        .map(|(nh, w)| p4::ActionProfileAction {
                            action: Some(call(
                                "set_nexthop_id",
                                &[("nexthop_id", b((*nh).into()))],
                            )),
                            weight: *w,
                            watch_kind: None,
                        })
                        .collect(),
                    ..Default::default()
                },
            )),
        }),
        0,
    )
}

/// Router interfaces 1 (port 1, 02:00:00:00:00:01, 192.0.2.0/24 side) and
/// 2 (port 2, 02:00:00:00:00:02) in VRF 0, each with its ingress and admit
/// entries.
pub fn two_interfaces() -> Vec<p4::Update> {
    vec![
        insert(router_interface(1, 1, "02:00:00:00:00:01")),
        insert(ingress_rif(1, 0, 1, 0)),
        insert(l3_admit("02:00:00:00:00:01", 1)),
        insert(router_interface(2, 2, "02:00:00:00:00:02")),
        insert(ingress_rif(2, 0, 2, 0)),
        insert(l3_admit("02:00:00:00:00:02", 1)),
    ]
}
