//! Golden wire bytes, derived by hand from the field numbers and wire types
//! in the specifications, so that a wrong field number or type in our protos
//! fails here rather than against a real client.
//!
//! A field key is `(field_number << 3) | wire_type`; wire type 0 is a varint,
//! 1 a 64-bit value, 2 length-delimited (strings, bytes, messages, packed
//! repeated scalars). A map entry is a message with key = 1 and value = 2.

use std::collections::HashMap;

use gnmi_server::proto::gnmi::{
    typed_value, CapabilityResponse, Encoding, ModelData, Path, PathElem, TypedValue,
};
use gnmi_server::proto::gnoi::system::{RebootMethod, RebootRequest};
use prost::Message;

fn check<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, golden: &[u8]) {
    assert_eq!(msg.encode_to_vec(), golden, "encoding of {msg:?}");
    assert_eq!(&M::decode(golden).expect("decode"), msg);
}

/// `Path { origin: "oc", elem: [PathElem { name: "if", key: {"name": "e0"} }] }`
#[test]
fn path_with_one_keyed_elem() {
    let path = Path {
        origin: "oc".into(),
        elem: vec![PathElem {
            name: "if".into(),
            key: HashMap::from([("name".to_owned(), "e0".to_owned())]),
        }],
        ..Default::default()
    };
    #[rustfmt::skip]
    let golden = [
        0x12, 0x02, b'o', b'c',                   // origin = 2, "oc"
        0x1a, 0x10,                               // elem = 3, 16 bytes:
          0x0a, 0x02, b'i', b'f',                 //   name = 1, "if"
          0x12, 0x0a,                             //   key = 2, one entry, 10 bytes:
            0x0a, 0x04, b'n', b'a', b'm', b'e',   //     key = 1, "name"
            0x12, 0x02, b'e', b'0',               //     value = 2, "e0"
    ];
    check(&path, &golden);
}

/// The message Capabilities answers with.
#[test]
fn capability_response() {
    let caps = CapabilityResponse {
        supported_models: vec![ModelData {
            name: "m".into(),
            organization: "o".into(),
            version: "1".into(),
        }],
        supported_encodings: vec![Encoding::JsonIetf as i32],
        g_nmi_version: "0.10.0".into(),
        extension: vec![],
    };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x09,                                // supported_models = 1, 9 bytes:
          0x0a, 0x01, b'm',                        //   name = 1
          0x12, 0x01, b'o',                        //   organization = 2
          0x1a, 0x01, b'1',                        //   version = 3
        0x12, 0x01, 0x04,                          // supported_encodings = 2, packed, JSON_IETF = 4
        0x1a, 0x06, b'0', b'.', b'1', b'0', b'.', b'0', // gNMI_version = 3
    ];
    check(&caps, &golden);
}

/// `double_val` is field 14, a 64-bit little-endian IEEE double.
#[test]
fn typed_value_double() {
    let value = TypedValue {
        value: Some(typed_value::Value::DoubleVal(1.5)),
    };
    let golden = [0x71, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]; // (14 << 3) | 1, then 1.5
    check(&value, &golden);
}

/// A gNOI message: `RebootRequest { method: COLD, message: "x" }`.
#[test]
fn gnoi_reboot_request() {
    let req = RebootRequest {
        method: RebootMethod::Cold as i32,
        message: "x".into(),
        ..Default::default()
    };
    let golden = [
        0x08, 0x01, // method = 1, COLD = 1
        0x1a, 0x01, b'x', // message = 3
    ];
    check(&req, &golden);
}
