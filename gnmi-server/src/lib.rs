//! gNMI and gNOI management services on OpenConfig paths.
//!
//! What exists so far:
//!
//! - [`proto`]: the gNMI (`gnmi`, `gnmi_ext`) and gNOI (`gnoi.system`,
//!   `gnoi.types`, `gnoi.common`) protos, written for this project from the
//!   published specifications and compiled at build time with `protox` (no
//!   system `protoc`), with tonic clients and servers.
//! - [`GnmiService`]: a gNMI server answering **Capabilities**, **Get**,
//!   **Set** and **Subscribe** on the configuration and state the daemon
//!   exposes through a [`Backend`].
//! - [`gnoi`]: the gNOI System service (Time, Ping, Reboot, RebootStatus,
//!   CancelReboot).
//! - [`security`]: TLS identities (including a generated self-signed
//!   certificate), mutual TLS, password hashes and the [`security::Authenticator`]
//!   both services check every RPC with (metadata `username` and `password`).
//!
//! # Paths
//!
//! Paths may carry no origin or the origin `openconfig`, and any element may
//! be qualified with its module (`openconfig-interfaces:interfaces`). Get,
//! Subscribe and Set's delete accept the wildcards `*` (any one element, or any key
//! value) and `...` (any number of levels); a list element without some of
//! its keys matches every value of the missing ones. Served (r = read, w =
//! write, "…" = the path above):
//!
//! | path | | backed by |
//! |---|---|---|
//! | `/interfaces/interface[name=P]/config/{name,type,mtu,description,enabled}` | rw | port `P` |
//! | `/interfaces/interface[name=P]/state/{name,type,mtu,description,enabled,admin-status,oper-status}` | r | port `P`, [`State`] |
//! | `/interfaces/interface[name=P]/state/counters/{in,out}-{octets,pkts,errors,discards}` | r | [`State`] |
//! | `…/subinterfaces/subinterface[index=N]/config/{index,description,enabled}` (+ `state`, with `admin-status`, `oper-status`) | rw | the router interface on `P` (N = 0) or on `P` VLAN N |
//! | `…/subinterface[index=N]/ipv4/addresses/address[ip=A]/config/{ip,prefix-length}` (+ `state`, with `origin`), and `ipv6` | rw | that interface's addresses |
//! | `…/subinterface[index=N]/ipv4/neighbors/neighbor[ip=A]/state/{ip,link-layer-address,origin}`, and `ipv6` (+ `neighbor-state`) | r | [`State::neighbors`] (`nosctl show neighbors`) |
//! | `/network-instances/network-instance[name=DEFAULT or V]/config/{name,type}` (+ `state`) | rw | the default VRF, `vrfs[]` |
//! | `…/protocols/protocol[identifier=STATIC][name=STATIC]/config/{identifier,name}` (+ `state`) | rw | |
//! | `…/static-routes/static[prefix=X]/config/prefix` (+ `state`) | rw | `static_routes[]` |
//! | `…/static[prefix=X]/next-hops/next-hop[index=A]/config/{index,next-hop,preference}` (+ `state`) | rw | its next hops (index = next-hop; `DROP` = blackhole; preference = distance) |
//! | `…/next-hop[index=A]/interface-ref/config/{interface,subinterface}` (+ `state`) | rw | the next hop's interface |
//! | `…/protocol[identifier=BGP][name=BGP]/bgp/{global,neighbors}` | rw | `bgp` (see `mapping_bgp.rs`), session state and prefix counts from [`State`] |
//! | `…/bgp/rib/afi-safis/afi-safi[afi-safi-name=F]/{ipv4,ipv6}-unicast/loc-rib/routes/route[prefix][origin][path-id]/state/{prefix,origin,path-id,attr-index,valid-route}`, `…/bgp/rib/attr-sets/attr-set[index]/state/{index,origin,next-hop,med,local-pref}` | r | [`Backend::loc_rib`] (`nosctl show bgp routes`), read only by requests that can reach `rib` |
//! | `/network-instances/network-instance[name=N]/afts/...` | r | [`Backend::afts`], read only by requests that can reach `afts` |
//! | `/system/config/hostname`, `/system/state/hostname` | rw, r | `system.hostname` |
//! | `/system/state/{current-datetime,boot-time}` | r | the clock, [`State`] |
//!
//! `default` (any case) names the default network instance, which Get calls
//! `DEFAULT`. The mapping to the configuration document is described in
//! `mapping.rs`.
//!
//! # Set
//!
//! A Set applies its deletes, then its replaces, then its updates to the
//! configuration as OpenConfig data, turns the result back into a
//! configuration document, validates it and commits it through
//! [`Backend::commit`] as one commit — or changes nothing. A failed Set
//! returns the failing operation's code (InvalidArgument for a malformed path
//! or a bad value, NotFound for a path outside the served models,
//! Unimplemented for an unsupported encoding) with a message naming the
//! path; its status details hold a `SetResponse` whose `UpdateResult`s carry
//! each operation's error, Aborted for the operations that did not fail (see
//! [`set_failure_details`]).
//!
//! # Subscribe
//!
//! ONCE, POLL and STREAM subscription lists; in a STREAM list, ON_CHANGE
//! (TARGET_DEFINED is ON_CHANGE here) and SAMPLE entries, with
//! `sample_interval` (at least [`MIN_SAMPLE_INTERVAL`]; 0 asks for it),
//! `suppress_redundant` and `heartbeat_interval`; `updates_only`,
//! `use_models`, a prefix (with `target` echoed) and JSON or JSON_IETF.
//! Updates are sent per leaf, at most [`MAX_UPDATES`] per notification;
//! removed leaves are sent as deletes. The initial values end with a
//! `sync_response` (after every poll too).
//!
//! ON_CHANGE is driven by [`Backend::changes`]: on each notification one
//! shared reader (started by the first streaming subscription, stopped with
//! the last) reads the configuration and state once, computes which leaves
//! changed and hands that to every streaming subscription, which sends the
//! leaves it covers. A SAMPLE entry reads the data at its own interval.
//!
//! Each subscriber has a bounded queue ([`DEFAULT_SUBSCRIBER_QUEUE`]
//! responses, see [`GnmiService::with_subscriber_queue`]). Streaming
//! updates never wait for a subscriber: one whose queue is full is ended
//! with RESOURCE_EXHAUSTED ("subscriber too slow") and the others go on.
//! Initial values and poll answers, which the client asked for, wait for
//! room instead.

pub mod proto {
    //! Generated protobuf messages, tonic clients and tonic servers, one
    //! module per protobuf package.

    /// Package `gnmi`: the gNMI service and its messages.
    #[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    pub mod gnmi {
        include!(concat!(env!("OUT_DIR"), "/gnmi.rs"));
    }

    /// Package `gnmi_ext`: extensions carried by gNMI messages.
    #[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    pub mod gnmi_ext {
        include!(concat!(env!("OUT_DIR"), "/gnmi_ext.rs"));
    }

    /// gNOI packages.
    pub mod gnoi {
        /// Package `gnoi.system`: the System service (Time, Ping, Reboot...).
        #[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
        pub mod system {
            include!(concat!(env!("OUT_DIR"), "/gnoi.system.rs"));
        }

        /// Package `gnoi.types`: types shared by gNOI services.
        #[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
        pub mod types {
            include!(concat!(env!("OUT_DIR"), "/gnoi.types.rs"));
        }

        /// Package `gnoi.common`: messages shared by gNOI services.
        #[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
        pub mod common {
            include!(concat!(env!("OUT_DIR"), "/gnoi.common.rs"));
        }
    }
}

mod backend;
mod capabilities;
mod error;
pub mod gnoi;
mod mapping;
mod mapping_bgp;
mod path;
mod schema;
pub mod security;
mod service;
mod subscribe;
mod telemetry;
mod tree;

pub use backend::{
    Aft, AftNextHop, Afts, Backend, BgpFamily, BgpNeighborState, BgpOrigin, BgpPrefixes, BgpRoute,
    BgpState, CommitError, Generation, InterfaceCounters, InterfaceState, LocRib, Neighbor,
    NeighborOrigin, NeighborState, OperStatus, SessionState, State, StoreBackend,
};
pub use capabilities::{
    capability_response, Model, GNMI_VERSION, OPENCONFIG_ORGANIZATION, SUPPORTED_ENCODINGS,
    SUPPORTED_MODELS,
};
pub use error::RpcStatus;
/// The tonic client of the `gnmi.gNMI` service.
pub use proto::gnmi::g_nmi_client::GNmiClient as GnmiClient;
/// The tonic server trait of the `gnmi.gNMI` service.
pub use proto::gnmi::g_nmi_server::GNmi as Gnmi;
/// The tonic server wrapper for a [`Gnmi`] implementation.
pub use proto::gnmi::g_nmi_server::GNmiServer as GnmiServer;
pub use service::{set_failure_details, GnmiService, SET_RESPONSE_TYPE_URL};
pub use subscribe::{DEFAULT_SUBSCRIBER_QUEUE, MAX_UPDATES, MIN_SAMPLE_INTERVAL};
