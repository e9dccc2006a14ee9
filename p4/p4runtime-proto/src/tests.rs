//! Wire-level tests: round trips, `Any` packing, and golden bytes derived by
//! hand from the field numbers of the specification.

use crate::google::rpc::{Code, Status};
use crate::p4::config::v1 as cfg;
use crate::p4::v1::{
    action, entity, field_match, table_action, update, write_request, Action, ActionProfileAction,
    ActionProfileActionSet, CapabilitiesResponse, Entity, Error, FieldMatch,
    MasterArbitrationUpdate, PacketIn, PacketMetadata, TableAction, TableEntry, Uint128, Update,
    WriteRequest,
};
use prost::Message;
use prost_types::Any;

fn param(id: u32, value: &[u8]) -> action::Param {
    action::Param {
        param_id: id,
        value: value.to_vec(),
    }
}

/// A route (LPM in a VRF) pointing at a one-shot weighted group.
fn route_to_group() -> WriteRequest {
    let set_nexthop = |nh: u8| Action {
        action_id: 0x0100_0008,
        params: vec![param(1, &[nh])],
    };
    let entry = TableEntry {
        table_id: 0x0200_0006,
        r#match: vec![
            FieldMatch {
                field_id: 1,
                field_match_type: Some(field_match::FieldMatchType::Exact(field_match::Exact {
                    value: vec![7],
                })),
            },
            FieldMatch {
                field_id: 2,
                field_match_type: Some(field_match::FieldMatchType::Lpm(field_match::Lpm {
                    value: vec![198, 51, 100, 0],
                    prefix_len: 24,
                })),
            },
        ],
        action: Some(TableAction {
            r#type: Some(table_action::Type::ActionProfileActionSet(
                ActionProfileActionSet {
                    action_profile_actions: vec![
                        ActionProfileAction {
                            action: Some(set_nexthop(1)),
                            weight: 3,
                            watch_kind: None,
                        },
                        ActionProfileAction {
                            action: Some(set_nexthop(2)),
                            weight: 1,
                            watch_kind: None,
                        },
                    ],
                    ..Default::default()
                },
            )),
        }),
        ..Default::default()
    };
    WriteRequest {
        device_id: 1,
        role: String::new(),
        election_id: Some(Uint128 { high: 0, low: 42 }),
        updates: vec![Update {
            r#type: update::Type::Insert as i32,
            entity: Some(Entity {
                entity: Some(entity::Entity::TableEntry(entry)),
            }),
        }],
        atomicity: write_request::Atomicity::ContinueOnError as i32,
        ..Default::default()
    }
}

#[test]
fn write_request_round_trip() {
    let req = route_to_group();
    let bytes = req.encode_to_vec();
    let back = WriteRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, req);

    let Some(entity::Entity::TableEntry(te)) =
        back.updates[0].entity.as_ref().unwrap().entity.as_ref()
    else {
        panic!("not a table entry");
    };
    match &te.r#match[1].field_match_type {
        Some(field_match::FieldMatchType::Lpm(l)) => {
            assert_eq!(
                (l.value.as_slice(), l.prefix_len),
                (&[198, 51, 100, 0][..], 24)
            );
        }
        other => panic!("expected an LPM match, got {other:?}"),
    }
    match &te.action.as_ref().unwrap().r#type {
        Some(table_action::Type::ActionProfileActionSet(set)) => {
            let weights: Vec<i32> = set
                .action_profile_actions
                .iter()
                .map(|a| a.weight)
                .collect();
            assert_eq!(weights, [3, 1]);
        }
        other => panic!("expected an action set, got {other:?}"),
    }
}

#[test]
fn status_with_p4_errors_in_any_round_trips() {
    let errors = [
        Error {
            canonical_code: Code::Ok as i32,
            ..Default::default()
        },
        Error {
            canonical_code: Code::AlreadyExists as i32,
            message: "entry exists".into(),
            space: "nos-x86".into(),
            code: 17,
            details: None,
        },
    ];
    let status = Status {
        code: Code::Unknown as i32,
        message: "1 of 2 updates failed".into(),
        details: errors.iter().map(|e| Any::from_msg(e).unwrap()).collect(),
    };
    assert!(status
        .details
        .iter()
        .all(|a| a.type_url == "type.googleapis.com/p4.v1.Error"));

    let back = Status::decode(status.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, status);
    let decoded: Vec<Error> = back.details.iter().map(|a| a.to_msg().unwrap()).collect();
    assert_eq!(decoded, errors);
    assert_eq!(
        Code::try_from(decoded[1].canonical_code),
        Ok(Code::AlreadyExists)
    );
}

/// Encodes `msg`, compares with `golden` (written out by hand from the field
/// numbers and wire types), and decodes the golden bytes back to `msg`.
fn assert_golden<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, golden: &[u8]) {
    assert_eq!(msg.encode_to_vec(), golden, "encoding of {msg:?}");
    assert_eq!(&M::decode(golden).unwrap(), msg);
}

#[test]
fn golden_field_match_lpm() {
    // field_id (1, varint) = 1; lpm (4, length-delimited) { value (1, bytes)
    // = 10.0.0.0; prefix_len (2, varint) = 8 }.
    let m = FieldMatch {
        field_id: 1,
        field_match_type: Some(field_match::FieldMatchType::Lpm(field_match::Lpm {
            value: vec![10, 0, 0, 0],
            prefix_len: 8,
        })),
    };
    assert_golden(
        &m,
        &[0x08, 0x01, 0x22, 0x08, 0x0a, 0x04, 10, 0, 0, 0, 0x10, 0x08],
    );
}

#[test]
fn golden_table_entry() {
    // table_id (1) = 0x02000004 as a varint: 84 80 80 10; priority (4) = 10;
    // is_const (13, varint): tag 13 << 3 = 0x68.
    let te = TableEntry {
        table_id: 0x0200_0004,
        priority: 10,
        is_const: true,
        ..Default::default()
    };
    let te_bytes = [0x08, 0x84, 0x80, 0x80, 0x10, 0x20, 0x0a, 0x68, 0x01];
    assert_golden(&te, &te_bytes);

    // Update: type (1) = INSERT; entity (2) { table_entry (2) { ... } }.
    let up = Update {
        r#type: update::Type::Insert as i32,
        entity: Some(Entity {
            entity: Some(entity::Entity::TableEntry(te)),
        }),
    };
    let mut golden = vec![0x08, 0x01, 0x12, 11, 0x12, 9];
    golden.extend_from_slice(&te_bytes);
    assert_golden(&up, &golden);
}

#[test]
fn golden_stream_messages() {
    // device_id (1) = 1; election_id (3) { low (2) = 7 }.
    let arb = MasterArbitrationUpdate {
        device_id: 1,
        election_id: Some(Uint128 { high: 0, low: 7 }),
        ..Default::default()
    };
    assert_golden(&arb, &[0x08, 0x01, 0x1a, 0x02, 0x10, 0x07]);

    // payload (1) = ab; metadata (2) { metadata_id (1) = 2; value (2) = 01 }.
    let pin = PacketIn {
        payload: vec![0xab],
        metadata: vec![PacketMetadata {
            metadata_id: 2,
            value: vec![0x01],
        }],
    };
    assert_golden(
        &pin,
        &[0x0a, 0x01, 0xab, 0x12, 0x05, 0x08, 0x02, 0x12, 0x01, 0x01],
    );

    // p4runtime_api_version (1) = "1.6.0"; experimental (999, length-delimited):
    // tag 999 << 3 | 2 = 7994, varint ba 3e; Any { type_url (1) = "x" }.
    let caps = CapabilitiesResponse {
        p4runtime_api_version: "1.6.0".into(),
        experimental: Some(Any {
            type_url: "x".into(),
            value: vec![],
        }),
    };
    assert_golden(
        &caps,
        &[
            0x0a, 0x05, b'1', b'.', b'6', b'.', b'0', 0xba, 0x3e, 0x03, 0x0a, 0x01, b'x',
        ],
    );
}

#[test]
fn golden_p4info_table() {
    // preamble (1) { id (1) = 1; name (2) = "t" }; match_fields (2) { id (1) = 1;
    // bitwidth (4) = 9; match_type (5) = TERNARY (4) }; size (8) = 8.
    let t = cfg::Table {
        preamble: Some(cfg::Preamble {
            id: 1,
            name: "t".into(),
            ..Default::default()
        }),
        match_fields: vec![cfg::MatchField {
            id: 1,
            bitwidth: 9,
            r#match: Some(cfg::match_field::Match::MatchType(
                cfg::match_field::MatchType::Ternary as i32,
            )),
            ..Default::default()
        }],
        size: 8,
        ..Default::default()
    };
    assert_golden(
        &t,
        &[
            0x0a, 0x05, 0x08, 0x01, 0x12, 0x01, b't', 0x12, 0x06, 0x08, 0x01, 0x20, 0x09, 0x28,
            0x04, 0x40, 0x08,
        ],
    );
}

#[test]
fn text_format_round_trip() {
    let text = r#"
        pkg_info { arch: "v1model" }
        tables {
          preamble { id: 33554433 name: "t" alias: "t" }
          match_fields { id: 1 name: "k" bitwidth: 16 match_type: EXACT }
          action_refs { id: 16777217 }
          size: 64
        }
        actions { preamble { id: 16777217 name: "a" alias: "a" } }
    "#;
    let info = crate::text_format::p4info_from_text(text).unwrap();
    assert_eq!(info.pkg_info.as_ref().unwrap().arch, "v1model");
    assert_eq!(info.tables[0].size, 64);
    let again =
        crate::text_format::p4info_from_text(&crate::text_format::p4info_to_text(&info).unwrap())
            .unwrap();
    assert_eq!(again, info);
    assert!(crate::text_format::p4info_from_text("tables { nonsense: 1 }").is_err());
}
