//! The error every P4Runtime operation of the target reports: a canonical
//! gRPC code and a message for the controller's operator.

use p4runtime_proto::google::rpc;
use p4runtime_proto::p4::v1 as p4;
use p4runtime_proto::prost::Message;
use p4runtime_proto::prost_types::Any;
use tonic::{Code, Status};

/// A refused request, update or stream message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    pub code: Code,
    pub message: String,
}

impl RpcError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(Code::OutOfRange, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }

    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// The same error with `context` in front of its message.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The per-update (or per-read-request) detail of a batch status.
    pub fn to_p4_error(&self) -> p4::Error {
        p4::Error {
            canonical_code: self.code as i32,
            message: self.message.clone(),
            ..Default::default()
        }
    }

    /// The stream error reported for a refused stream message.
    pub fn to_stream_error(&self, details: Option<p4::stream_error::Details>) -> p4::StreamError {
        p4::StreamError {
            canonical_code: self.code as i32,
            message: self.message.clone(),
            details,
            ..Default::default()
        }
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        Status::new(e.code, e.message)
    }
}

/// The status of a batch RPC (`Write`, `Read`) some of whose elements failed:
/// code UNKNOWN, and in its details one `p4.v1.Error` per element, in order,
/// with code OK for the elements that succeeded.
pub fn batch_status(results: &[Result<(), RpcError>], what: &str) -> Status {
    let failed = results.iter().filter(|r| r.is_err()).count();
    let message = match results.iter().find_map(|r| r.as_ref().err()) {
        Some(first) if failed == 1 => {
            format!("1 of {} {what}s failed: {}", results.len(), first.message)
        }
        Some(first) => format!(
            "{failed} of {} {what}s failed; the first: {}",
            results.len(),
            first.message
        ),
        None => format!("{what} batch failed"),
    };
    let details = results
        .iter()
        .map(|r| {
            let e = match r {
                Ok(()) => p4::Error::default(),
                Err(e) => e.to_p4_error(),
            };
            Any::from_msg(&e).unwrap_or_default()
        })
        .collect();
    let status = rpc::Status {
        code: Code::Unknown as i32,
        message: message.clone(),
        details,
    };
    Status::with_details(
        Code::Unknown,
        message,
        tonic::codegen::Bytes::from(status.encode_to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_status_carries_one_error_per_element() {
        let s = batch_status(
            &[
                Ok(()),
                Err(RpcError::already_exists("entry exists")),
                Ok(()),
            ],
            "update",
        );
        assert_eq!(s.code(), Code::Unknown);
        let st = rpc::Status::decode(s.details()).unwrap();
        assert_eq!(st.code, Code::Unknown as i32);
        let errs: Vec<p4::Error> = st.details.iter().map(|a| a.to_msg().unwrap()).collect();
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0].canonical_code, 0);
        assert!(errs[0].message.is_empty());
        assert_eq!(errs[1].canonical_code, Code::AlreadyExists as i32);
        assert_eq!(errs[1].message, "entry exists");
        assert_eq!(errs[2].canonical_code, 0);
        assert!(s.message().contains("1 of 3 updates failed"));
    }
}
