//! Protobuf text format for the messages of this crate, through
//! `prost-reflect` and the crate's own descriptor set. P4Info files
//! (`*.p4info.txtpb`, as written by `p4c --p4runtime-files`) are read with
//! [`p4info_from_text`].

use crate::p4::config::v1::P4Info;
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::fmt;
use std::sync::OnceLock;

/// Why text could not be turned into a message, or a message into text.
#[derive(Debug)]
pub enum TextFormatError {
    /// The embedded descriptor set did not load (a build problem).
    Descriptors(String),
    /// The descriptor set has no message of this name.
    UnknownMessage(String),
    /// The text is not valid text format for the message.
    Parse(prost_reflect::text_format::ParseError),
    /// The parsed message did not convert to the generated type.
    Convert(prost::DecodeError),
}

impl fmt::Display for TextFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextFormatError::Descriptors(e) => write!(f, "embedded descriptors: {e}"),
            TextFormatError::UnknownMessage(m) => write!(f, "no descriptor for message {m}"),
            TextFormatError::Parse(e) => write!(f, "text format: {e}"),
            TextFormatError::Convert(e) => write!(f, "converting parsed message: {e}"),
        }
    }
}

impl std::error::Error for TextFormatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TextFormatError::Parse(e) => Some(e),
            TextFormatError::Convert(e) => Some(e),
            _ => None,
        }
    }
}

/// The descriptor pool of this crate's protos (decoded once).
pub fn descriptor_pool() -> Result<DescriptorPool, TextFormatError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .clone()
    .map_err(TextFormatError::Descriptors)
}

fn descriptor<M: prost::Name>() -> Result<prost_reflect::MessageDescriptor, TextFormatError> {
    let name = M::full_name();
    descriptor_pool()?
        .get_message_by_name(&name)
        .ok_or(TextFormatError::UnknownMessage(name))
}

/// Parses a message of type `M` from protobuf text format.
pub fn from_text<M: prost::Message + prost::Name + Default>(
    text: &str,
) -> Result<M, TextFormatError> {
    let msg = DynamicMessage::parse_text_format(descriptor::<M>()?, text)
        .map_err(TextFormatError::Parse)?;
    msg.transcode_to::<M>().map_err(TextFormatError::Convert)
}

/// Writes a message in (multi-line) protobuf text format.
pub fn to_text<M: prost::Message + prost::Name>(msg: &M) -> Result<String, TextFormatError> {
    let dynamic = DynamicMessage::decode(descriptor::<M>()?, msg.encode_to_vec().as_slice())
        .map_err(TextFormatError::Convert)?;
    let options = prost_reflect::text_format::FormatOptions::new().pretty(true);
    Ok(dynamic.to_text_format_with_options(&options))
}

/// Parses a P4Info in text format.
pub fn p4info_from_text(text: &str) -> Result<P4Info, TextFormatError> {
    from_text(text)
}

/// Writes a P4Info in text format.
pub fn p4info_to_text(info: &P4Info) -> Result<String, TextFormatError> {
    to_text(info)
}
