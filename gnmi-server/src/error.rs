//! Failures reported to clients: a gRPC code and a message naming the path.

use tonic::{Code, Status};

/// Something wrong with a request (or, for `Internal`, with the server),
/// with the path it concerns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    pub code: Code,
    /// The offending path as text (`/a/b[k=v]`); empty when none applies.
    pub path: String,
    pub reason: String,
}

impl Failure {
    pub(crate) fn new(code: Code, path: &str, reason: impl Into<String>) -> Self {
        Self {
            code,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Self::new(Code::Internal, "", reason)
    }

    /// `path: reason`.
    pub(crate) fn message(&self) -> String {
        if self.path.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path, self.reason)
        }
    }

    pub(crate) fn status(&self) -> Status {
        Status::new(self.code, self.message())
    }
}

/// `google.rpc.Status` (google/rpc/status.proto), the message gRPC carries in
/// the `grpc-status-details-bin` trailer. Declared here by hand because it is
/// the only google.rpc message this crate needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}
