//! The x86 P4Runtime target (`dataplane::p4rt`) in-process, on a detached
//! dataplane, served over real gRPC on a loopback port; and the model
//! objects the tests program into it.
#![allow(dead_code)]

use dataplane::p4rt::{Options, PacketInRelay, PortConfig, Server};
use dataplane::X86Backend;
use nos_core::{
    AclAction, AclId, AclMatch, AclRule, AclStage, Delta, ForwardingState, GroupId, GroupMember,
    MacAddr, Neighbor, NextHop, NextHopGroup, NextHopId, Object, Port, PortId, PortRange, RifId,
    RifKind, Route, RouteAction, RouterInterface, Vrf, VrfId,
};
use p4::{ClientConfig, PipelineConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

pub const DEVICE: u64 = 1;
pub const PORTS: [u32; 3] = [1, 2, 3];

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The committed nos.p4 pipeline, with the x86 target's device config.
pub fn pipeline() -> PipelineConfig {
    PipelineConfig::new(p4::nos_p4info().expect("nos.p4info.txtpb"), b"x86".to_vec())
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
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// A fresh target (nothing installed, no pipeline) on `addr`.
    pub async fn start_at(addr: SocketAddr) -> Target {
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
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("bind");
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

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.addr.to_string(), DEVICE);
        c.connect_timeout = Duration::from_secs(2);
        c
    }

    pub async fn stop(mut self) {
        self.server.close_streams();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

// ---- model objects ----

pub fn mac(last: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, last])
}

pub fn port(id: u32) -> Object {
    Object::Port(Port {
        id: PortId(id),
        name: format!("test{id}"),
        mtu: 1500,
        admin_up: true,
    })
}

pub fn rif(id: u32, port: u32) -> Object {
    Object::from(RouterInterface {
        id: RifId(id),
        name: format!("rif{id}"),
        vrf: VrfId(0),
        kind: RifKind::Port { port: PortId(port) },
        mac: mac(1),
        mtu: 1500,
        admin_up: true,
    })
}

pub fn next_hop(id: u32, rif: u32, ip: &str) -> Object {
    Object::NextHop(NextHop {
        id: NextHopId(id),
        rif: RifId(rif),
        ip: ip.parse().unwrap(),
    })
}

pub fn neighbor(rif: u32, ip: &str, m: u8) -> Object {
    Object::Neighbor(Neighbor {
        rif: RifId(rif),
        ip: ip.parse().unwrap(),
        mac: mac(m),
        port: None,
    })
}

pub fn group(id: u32, members: &[(u32, u32)]) -> Object {
    Object::Group(NextHopGroup {
        id: GroupId(id),
        members: members
            .iter()
            .map(|(n, w)| GroupMember {
                next_hop: NextHopId(*n),
                weight: *w,
            })
            .collect(),
    })
}

pub fn route(prefix: &str, action: RouteAction) -> Object {
    Object::Route(Route {
        vrf: VrfId(0),
        prefix: prefix.parse().unwrap(),
        action,
    })
}

/// Two routed interfaces (ports 1 and 2), a neighbor and a next hop on
/// each, an IPv6 next hop, a weighted group over the IPv4 next hops, routes
/// to a next hop, to the group, IPv6, to the CPU and to nowhere, and an
/// ACL rule.
pub fn state() -> ForwardingState {
    let mut s = ForwardingState::new();
    let objects = vec![
        Object::Vrf(Vrf {
            id: VrfId(0),
            name: "default".into(),
        }),
        port(1),
        port(2),
        port(3),
        rif(1, 1),
        rif(2, 2),
        neighbor(1, "192.0.2.2", 0x11),
        neighbor(2, "198.51.100.2", 0x22),
        next_hop(1, 1, "192.0.2.2"),
        next_hop(2, 2, "198.51.100.2"),
        next_hop(3, 2, "2001:db8::2"),
        group(10, &[(1, 1), (2, 3)]),
        route("203.0.113.0/24", RouteAction::NextHop(NextHopId(1))),
        route("198.18.0.0/15", RouteAction::Group(GroupId(10))),
        route("2001:db8:1::/48", RouteAction::NextHop(NextHopId(3))),
        route("192.0.2.1/32", RouteAction::ToCpu),
        route("0.0.0.0/0", RouteAction::Drop),
        Object::from(AclRule {
            id: AclId(1),
            name: "no-5001".into(),
            stage: AclStage::Ingress,
            priority: 10,
            matches: AclMatch {
                ip_proto: Some(6),
                dst_port: Some(PortRange {
                    first: 5001,
                    last: 5001,
                }),
                ..Default::default()
            },
            action: AclAction::Drop,
        }),
    ];
    for o in objects {
        s.upsert(o).expect("a valid state");
    }
    s
}

/// The deltas that program `s` from nothing.
pub fn deltas(s: &ForwardingState) -> Vec<Delta> {
    nos_core::diff(&ForwardingState::new(), s)
}
