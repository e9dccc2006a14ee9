//! The P4Runtime target over real gRPC: Capabilities, arbitration on the
//! stream, the pipeline RPCs, the preconditions of Write and Read, and
//! packet-in/out.

mod p4rt_common;

/// In a module named after the target, so `cargo test p4rt` selects them.
mod p4rt {
    use super::p4rt_common::*;
    use nos_core::backend::{PacketDest, PacketIn, PacketOut, PuntReason};
    use nos_core::PortId;
    use p4::set_forwarding_pipeline_config_request::Action as Cfg;
    use p4::stream_message_request::Update as Req;
    use p4::stream_message_response::Update as Resp;
    use p4runtime_proto::p4::v1 as p4;
    use std::sync::{Arc, Mutex};
    use tonic::Code;

    #[tokio::test]
    async fn capabilities_reports_the_api_version() {
        let t = Target::start().await;
        let mut client = t.client().await;
        let caps = client
            .capabilities(p4::CapabilitiesRequest { device_id: DEVICE })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(caps.p4runtime_api_version, "1.6.0");
        t.stop().await;
    }

    #[tokio::test]
    async fn arbitration_primary_backup_and_takeover() {
        let t = Target::start().await;
        let mut client = t.client().await;

        let mut c1 = Controller::open(&mut client).await;
        c1.arbitrate(DEVICE, Some(10)).await;
        assert_eq!(c1.arbitration().await, (Code::Ok, Some(10)));

        // A lower id is a backup; only it is told.
        let mut c2 = Controller::open(&mut client).await;
        c2.arbitrate(DEVICE, Some(5)).await;
        assert_eq!(c2.arbitration().await, (Code::AlreadyExists, Some(10)));
        // No election id: a backup for good.
        let mut c3 = Controller::open(&mut client).await;
        c3.arbitrate(DEVICE, None).await;
        assert_eq!(c3.arbitration().await, (Code::AlreadyExists, Some(10)));
        assert!(c1.quiet(100).await, "the primary hears nothing of backups");

        // A backup may not write or set the pipeline.
        let e = write_as(
            &mut client,
            Some(5),
            vec![],
            p4::write_request::Atomicity::ContinueOnError,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = set_pipeline(&mut client, 5, Cfg::VerifyAndCommit, Some(p4info()), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

        // A higher id takes over; everyone is told.
        c2.arbitrate(DEVICE, Some(20)).await;
        assert_eq!(c1.arbitration().await, (Code::AlreadyExists, Some(20)));
        assert_eq!(c3.arbitration().await, (Code::AlreadyExists, Some(20)));
        assert_eq!(c2.arbitration().await, (Code::Ok, Some(20)));
        let e = write_as(
            &mut client,
            Some(10),
            vec![],
            p4::write_request::Atomicity::ContinueOnError,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.code(),
            Code::PermissionDenied,
            "the old primary lost its rights"
        );

        // The primary leaves: the backups learn there is no primary.
        drop(c2);
        assert_eq!(c1.arbitration().await, (Code::NotFound, Some(20)));
        assert_eq!(c3.arbitration().await, (Code::NotFound, Some(20)));
        let e = write_as(
            &mut client,
            Some(20),
            vec![],
            p4::write_request::Atomicity::ContinueOnError,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);

        // A backup is promoted by claiming an id at least as high as any seen.
        c1.arbitrate(DEVICE, Some(10)).await;
        assert_eq!(c1.arbitration().await, (Code::NotFound, Some(20)));
        c1.arbitrate(DEVICE, Some(21)).await;
        assert_eq!(c3.arbitration().await, (Code::AlreadyExists, Some(21)));
        assert_eq!(c1.arbitration().await, (Code::Ok, Some(21)));
        // The new primary passes arbitration (and meets the next check).
        let e = write_as(
            &mut client,
            Some(21),
            vec![],
            p4::write_request::Atomicity::ContinueOnError,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        t.stop().await;
    }

    #[tokio::test]
    async fn bad_arbitration_ends_the_stream() {
        let t = Target::start().await;
        let mut client = t.client().await;

        let mut wrong = Controller::open(&mut client).await;
        wrong.arbitrate(DEVICE + 1, Some(1)).await;
        assert_eq!(wrong.next().await.unwrap_err().code(), Code::NotFound);

        let _first = Controller::primary(&mut client, 3).await;
        let mut dup = Controller::open(&mut client).await;
        dup.arbitrate(DEVICE, Some(3)).await;
        assert_eq!(dup.next().await.unwrap_err().code(), Code::InvalidArgument);

        let mut role = Controller::open(&mut client).await;
        role.send(Req::Arbitration(p4::MasterArbitrationUpdate {
            device_id: DEVICE,
            role: Some(p4::Role {
                name: "sdn-fabric".into(),
                ..Default::default()
            }),
            election_id: Some(uint128(9)),
            ..Default::default()
        }))
        .await;
        let e = role.next().await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().contains("sdn-fabric"), "{e:?}");

        // A live controller cannot switch devices.
        let mut live = Controller::open(&mut client).await;
        live.arbitrate(DEVICE, Some(1)).await;
        assert_eq!(live.arbitration().await.0, Code::AlreadyExists);
        live.arbitrate(DEVICE + 1, Some(1)).await;
        assert_eq!(
            live.next().await.unwrap_err().code(),
            Code::FailedPrecondition
        );
        t.stop().await;
    }

    #[tokio::test]
    async fn write_and_read_need_a_pipeline_and_the_right_device() {
        let t = Target::start().await;
        let mut client = t.client().await;
        let _c = Controller::primary(&mut client, 10).await;

        let e = write(&mut client, two_interfaces()).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        let e = read_all(
            &mut client,
            vec![p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(Default::default())),
            }],
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        let got = client
            .get_forwarding_pipeline_config(p4::GetForwardingPipelineConfigRequest {
                device_id: DEVICE,
                response_type: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.config, None, "no pipeline yet");

        let e = client
            .write(p4::WriteRequest {
                device_id: 99,
                election_id: Some(uint128(10)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = client
            .get_forwarding_pipeline_config(p4::GetForwardingPipelineConfigRequest {
                device_id: 99,
                response_type: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = client
            .write(p4::WriteRequest {
                device_id: DEVICE,
                role: "other".into(),
                election_id: Some(uint128(10)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "unknown role");
        t.stop().await;
    }

    #[tokio::test]
    async fn a_p4info_missing_a_table_is_refused_naming_it() {
        let t = Target::start().await;
        let mut client = t.client().await;
        let _c = Controller::primary(&mut client, 10).await;
        let mut info = p4info();
        info.tables
            .retain(|t| t.preamble.as_ref().unwrap().name != "neighbor");
        let e = set_pipeline(&mut client, 10, Cfg::VerifyAndCommit, Some(info), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("table `neighbor` is missing"), "{e:?}");

        let e = set_pipeline(&mut client, 10, Cfg::Verify, None, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "VERIFY needs a config");
        let e = set_pipeline(&mut client, 10, Cfg::Unspecified, Some(p4info()), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        t.stop().await;
    }

    async fn get_config(
        client: &mut p4::p4_runtime_client::P4RuntimeClient<tonic::transport::Channel>,
        ty: p4::get_forwarding_pipeline_config_request::ResponseType,
    ) -> Option<p4::ForwardingPipelineConfig> {
        client
            .get_forwarding_pipeline_config(p4::GetForwardingPipelineConfigRequest {
                device_id: DEVICE,
                response_type: ty as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .config
    }

    #[tokio::test]
    async fn pipeline_actions_and_get_response_types() {
        use p4::get_forwarding_pipeline_config_request::ResponseType as R;
        let t = Target::start().await;
        let mut client = t.client().await;
        let _c = Controller::primary(&mut client, 10).await;

        set_pipeline(&mut client, 10, Cfg::Verify, Some(p4info()), Some(1))
            .await
            .unwrap();
        assert_eq!(
            get_config(&mut client, R::All).await,
            None,
            "VERIFY changes nothing"
        );
        let e = set_pipeline(&mut client, 10, Cfg::Commit, None, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "nothing saved to commit");

        set_pipeline(&mut client, 10, Cfg::VerifyAndSave, Some(p4info()), Some(2))
            .await
            .unwrap();
        assert_eq!(
            get_config(&mut client, R::All).await,
            None,
            "saved, not committed"
        );
        let e = set_pipeline(&mut client, 10, Cfg::Commit, Some(p4info()), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "COMMIT takes no config");
        set_pipeline(&mut client, 10, Cfg::Commit, None, None)
            .await
            .unwrap();

        let all = get_config(&mut client, R::All).await.unwrap();
        assert_eq!(all.cookie.unwrap().cookie, 2);
        assert_eq!(all.p4info, Some(p4info()));
        assert_eq!(all.p4_device_config, b"x86".to_vec());
        let cookie = get_config(&mut client, R::CookieOnly).await.unwrap();
        assert_eq!(
            (
                cookie.cookie.unwrap().cookie,
                cookie.p4info,
                cookie.p4_device_config.len()
            ),
            (2, None, 0)
        );
        let info = get_config(&mut client, R::P4infoAndCookie).await.unwrap();
        assert!(info.p4info.is_some() && info.p4_device_config.is_empty());
        let dev = get_config(&mut client, R::DeviceConfigAndCookie)
            .await
            .unwrap();
        assert!(dev.p4info.is_none() && dev.p4_device_config == b"x86".to_vec());

        // Entries survive RECONCILE_AND_COMMIT, even with other ids, and are
        // read back with the new ones; VERIFY_AND_COMMIT clears them.
        write(&mut client, two_interfaces()).await.unwrap();
        let mut renumbered = p4info();
        for t in &mut renumbered.tables {
            let p = t.preamble.as_mut().unwrap();
            if p.name == "router_interface" {
                p.id = 0x0200_0099;
            }
        }
        set_pipeline(
            &mut client,
            10,
            Cfg::ReconcileAndCommit,
            Some(renumbered),
            Some(3),
        )
        .await
        .unwrap();
        let back = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: 0x0200_0099,
                ..Default::default()
            }],
        )
        .await;
        assert_eq!(back.len(), 2, "both router interfaces kept");
        assert!(back.iter().all(|e| e.table_id == 0x0200_0099));
        assert_eq!(t.server.model().rifs().len(), 2);

        set_pipeline(
            &mut client,
            10,
            Cfg::VerifyAndCommit,
            Some(p4info()),
            Some(4),
        )
        .await
        .unwrap();
        assert!(read_tables(&mut client, vec![Default::default()])
            .await
            .is_empty());
        assert!(t.server.model().rifs().is_empty());
        let state = t
            .server
            .with_backend(|b| nos_core::Backend::read(b).unwrap());
        assert_eq!(state.ports().len(), 3, "ports stay");
        assert_eq!(state.rifs().len(), 0);
        t.stop().await;
    }

    fn packet_in_fields(p: &p4::PacketIn) -> Vec<(u32, Vec<u8>)> {
        let mut m: Vec<(u32, Vec<u8>)> = p
            .metadata
            .iter()
            .map(|m| (m.metadata_id, m.value.clone()))
            .collect();
        m.sort();
        m
    }

    #[tokio::test]
    async fn packet_in_reaches_the_primary_only() {
        let (t, mut client, mut primary) = ready().await;
        let mut backup = Controller::open(&mut client).await;
        backup.arbitrate(DEVICE, Some(1)).await;
        assert_eq!(backup.arbitration().await.0, Code::AlreadyExists);

        let sink = t.relay.sink();
        sink(PacketIn {
            port: PortId(2),
            reason: PuntReason::Arp,
            frame: vec![0xff; 60],
        });
        match primary.next_update().await {
            Resp::Packet(p) => {
                assert_eq!(p.payload, vec![0xff; 60]);
                assert_eq!(
                    packet_in_fields(&p),
                    vec![
                        (packet_meta_id("packet_in", "ingress_port"), vec![2]),
                        (packet_meta_id("packet_in", "punt_reason"), vec![1]),
                        (packet_meta_id("packet_in", "unused_pad"), vec![0]),
                    ]
                );
            }
            other => panic!("expected a packet-in, got {other:?}"),
        }
        assert!(backup.quiet(200).await, "backups get no packet-ins");
        sink(PacketIn {
            port: PortId(3),
            reason: PuntReason::TtlExpired,
            frame: vec![1, 2, 3],
        });
        match primary.next_update().await {
            Resp::Packet(p) => assert!(packet_in_fields(&p)
                .contains(&(packet_meta_id("packet_in", "punt_reason"), vec![5]))),
            other => panic!("expected a packet-in, got {other:?}"),
        }
        t.stop().await;
    }

    fn packet_out(egress: u32, ingress: u32, submit: u32) -> Req {
        Req::Packet(p4::PacketOut {
            payload: vec![0xaa; 64],
            metadata: vec![
                p4::PacketMetadata {
                    metadata_id: packet_meta_id("packet_out", "egress_port"),
                    value: b(egress.into()),
                },
                p4::PacketMetadata {
                    metadata_id: packet_meta_id("packet_out", "ingress_port"),
                    value: b(ingress.into()),
                },
                p4::PacketMetadata {
                    metadata_id: packet_meta_id("packet_out", "submit_to_ingress"),
                    value: b(submit.into()),
                },
                p4::PacketMetadata {
                    metadata_id: packet_meta_id("packet_out", "unused_pad"),
                    value: vec![0],
                },
            ],
        })
    }

    #[tokio::test]
    async fn packet_out_to_a_port_or_through_the_pipeline() {
        let (t, mut client, mut primary) = ready().await;
        let sent: Arc<Mutex<Vec<PacketOut>>> = Arc::default();
        let s = sent.clone();
        t.server.set_packet_sender(Arc::new(move |p| {
            s.lock().unwrap().push(p);
            Ok(())
        }));

        primary.send(packet_out(2, 0, 0)).await;
        primary.send(packet_out(0, 3, 1)).await;
        // Unknown port: refused with a stream error naming the packet.
        primary.send(packet_out(9, 0, 0)).await;
        match primary.next_update().await {
            Resp::Error(e) => {
                assert_eq!(Code::from(e.canonical_code), Code::InvalidArgument);
                assert!(matches!(
                    e.details,
                    Some(p4::stream_error::Details::PacketOut(p4::PacketOutError {
                        packet_out: Some(_)
                    }))
                ));
            }
            other => panic!("expected a stream error, got {other:?}"),
        }
        // Missing metadata.
        primary
            .send(Req::Packet(p4::PacketOut {
                payload: vec![1],
                metadata: vec![],
            }))
            .await;
        match primary.next_update().await {
            Resp::Error(e) => assert_eq!(Code::from(e.canonical_code), Code::InvalidArgument),
            other => panic!("expected a stream error, got {other:?}"),
        }
        {
            let sent = sent.lock().unwrap();
            assert_eq!(sent.len(), 2);
            assert_eq!(sent[0].dest, PacketDest::Port(PortId(2)));
            assert_eq!(sent[0].frame, vec![0xaa; 64]);
            assert_eq!(sent[1].dest, PacketDest::Ingress(PortId(3)));
        }

        // A backup's packet-out is dropped with PERMISSION_DENIED.
        let mut backup = Controller::open(&mut client).await;
        backup.arbitrate(DEVICE, Some(1)).await;
        assert_eq!(backup.arbitration().await.0, Code::AlreadyExists);
        backup.send(packet_out(1, 0, 0)).await;
        match backup.next_update().await {
            Resp::Error(e) => assert_eq!(Code::from(e.canonical_code), Code::PermissionDenied),
            other => panic!("expected a stream error, got {other:?}"),
        }
        assert_eq!(sent.lock().unwrap().len(), 2);
        t.stop().await;
    }

    #[tokio::test]
    async fn a_detached_dataplane_has_no_packet_io() {
        let (t, _client, mut primary) = ready().await;
        primary.send(packet_out(1, 0, 0)).await;
        match primary.next_update().await {
            Resp::Error(e) => assert_eq!(Code::from(e.canonical_code), Code::Unavailable),
            other => panic!("expected a stream error, got {other:?}"),
        }
        t.stop().await;
    }
}
