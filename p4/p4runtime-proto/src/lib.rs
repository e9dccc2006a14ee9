//! The P4Runtime v1 protocol (`p4.v1`, `p4.config.v1`) and the `google.rpc`
//! status types it uses, as prost messages with tonic client and server code.
//!
//! The `.proto` files under `proto/` were written for this project from the
//! P4Runtime specification (release 1.6.0; field names and numbers are the
//! wire contract) and are compiled by `build.rs` with `protox`, so building
//! needs no system `protoc`. `google.protobuf.Any` is [`prost_types::Any`].
//!
//! - [`p4::v1`]: the `P4Runtime` service (`p4_runtime_client`,
//!   `p4_runtime_server`) and its messages.
//! - [`p4::config::v1`]: P4Info and the P4 type descriptions.
//! - [`google::rpc`]: `Status` and `Code`.
//! - [`text_format`]: protobuf text format for these messages (P4Info files).
//!
//! Every message implements [`prost::Name`], so it packs into an `Any` with
//! the usual `type.googleapis.com/<full name>` type URL:
//!
//! ```
//! use p4runtime_proto::{google::rpc::Status, p4::v1::Error, prost_types::Any};
//!
//! let detail = Any::from_msg(&Error { canonical_code: 6, ..Default::default() }).unwrap();
//! assert_eq!(detail.type_url, "type.googleapis.com/p4.v1.Error");
//! let status = Status { code: 2, message: "batch failed".into(), details: vec![detail] };
//! let back: Error = status.details[0].to_msg().unwrap();
//! assert_eq!(back.canonical_code, 6);
//! ```

pub use prost;
pub use prost_types;
pub use tonic;

/// The `google.rpc` package.
pub mod google {
    /// `google.rpc.Status` and `google.rpc.Code`.
    pub mod rpc {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// The `p4` packages.
pub mod p4 {
    /// `p4.v1`: the P4Runtime service and its messages.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/p4.v1.rs"));
    }

    /// The `p4.config` package.
    pub mod config {
        /// `p4.config.v1`: P4Info and P4 type descriptions.
        pub mod v1 {
            #![allow(clippy::all, missing_docs)]
            include!(concat!(env!("OUT_DIR"), "/p4.config.v1.rs"));
        }
    }
}

pub mod text_format;

/// The P4Runtime release these definitions follow, in the form servers
/// report in `CapabilitiesResponse.p4runtime_api_version`.
pub const P4RUNTIME_API_VERSION: &str = "1.6.0";

/// The encoded `google.protobuf.FileDescriptorSet` of every proto in this
/// crate and its imports (without source info), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/p4runtime_descriptor_set.bin"));

#[cfg(test)]
mod tests;
