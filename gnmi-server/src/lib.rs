//! gNMI and gNOI management services on OpenConfig paths.
//!
//! **Work in progress.** What exists so far:
//!
//! - [`proto`]: the gNMI (`gnmi`, `gnmi_ext`) and gNOI (`gnoi.system`,
//!   `gnoi.types`, `gnoi.common`) protos, written for this project from the
//!   published specifications and compiled at build time with `protox` (no
//!   system `protoc`), with tonic clients and servers.
//! - [`GnmiService`]: a gNMI server that answers **Capabilities** only. Get,
//!   Set and Subscribe return `UNIMPLEMENTED`; no path is served yet, and no
//!   gNOI service is implemented yet. `nosd` does not start this server.
//!
//! Until the rest of the management issue lands, `nosctl` over the local
//! management socket remains the only way to manage the NOS.

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

mod capabilities;

pub use capabilities::{
    GnmiService, Model, GNMI_VERSION, OPENCONFIG_ORGANIZATION, SUPPORTED_ENCODINGS,
    SUPPORTED_MODELS,
};
/// The tonic client of the `gnmi.gNMI` service.
pub use proto::gnmi::g_nmi_client::GNmiClient as GnmiClient;
/// The tonic server trait of the `gnmi.gNMI` service.
pub use proto::gnmi::g_nmi_server::GNmi as Gnmi;
/// The tonic server wrapper for a [`Gnmi`] implementation.
pub use proto::gnmi::g_nmi_server::GNmiServer as GnmiServer;
