//! Write and Read on the P4Runtime target over real gRPC: the
//! specification's error semantics with per-update details, canonical
//! binary strings, wildcard reads, batch atomicity, and entries turning
//! into forwarding state that the x86 engine forwards real frames with.

mod p4rt_common;

/// In a module named after the target, so `cargo test p4rt` selects them.
mod p4rt {
    use super::p4rt_common::*;
    use dataplane::engine::{process, Counters, DropReason, Verdict};
    use ipnet::IpNet;
    use nos_core::backend::PuntReason;
    use nos_core::{
        AclAction, AclStage, Backend, ForwardingState, GroupId, GroupMember, NextHopId, PortId,
        RifId, RifKind, RouteAction, RouteKey, VlanMember, VrfId,
    };
    use p4runtime_proto::p4::v1 as p4;
    use tonic::Code;

    fn backend_state(t: &Target) -> ForwardingState {
        t.server.with_backend(|b| b.read().expect("read"))
    }

    fn route_key(vrf: u32, prefix: &str) -> RouteKey {
        RouteKey {
            vrf: VrfId(vrf),
            prefix: prefix.parse::<IpNet>().unwrap(),
        }
    }

    // ---- frames ----

    fn checksum(h: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in h.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An untagged UDP/IPv4 frame.
    fn udp4(dst_mac: &str, src: &str, dst: &str, sport: u16, dport: u16, ttl: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&b(mac(dst_mac))[..]);
        f.extend_from_slice(&[0x02, 0xbb, 0, 0, 0, 9]);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&28u16.to_be_bytes());
        ip[8] = ttl;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&(ip4(src) as u32).to_be_bytes());
        ip[16..20].copy_from_slice(&(ip4(dst) as u32).to_be_bytes());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&dport.to_be_bytes());
        udp[4..6].copy_from_slice(&8u16.to_be_bytes());
        f.extend_from_slice(&udp);
        f
    }

    fn forward(t: &Target, in_port: u32, frame: &mut Vec<u8>) -> Verdict {
        let tables = t.server.with_backend(|b| b.tables());
        process(&tables, PortId(in_port), frame, &mut Counters::default())
    }

    fn fwd(port: u32) -> Verdict {
        Verdict::Forward {
            port: PortId(port),
            copy: false,
        }
    }

    /// Interfaces 1 and 2, a resolved next hop 1 behind interface 2 and a
    /// route 198.51.100.0/24 → next hop 1.
    fn routed() -> Vec<Vec<p4::Update>> {
        vec![
            two_interfaces(),
            vec![
                insert(neighbor(2, mapped("203.0.113.2"), "02:aa:00:00:00:02")),
                insert(nexthop(1, 2, mapped("203.0.113.2"))),
            ],
            vec![insert(route4(0, "198.51.100.0", 24, to_nexthop(1)))],
        ]
    }

    async fn write_all(
        client: &mut p4::p4_runtime_client::P4RuntimeClient<tonic::transport::Channel>,
        batches: Vec<Vec<p4::Update>>,
    ) {
        for batch in batches {
            write(client, batch).await.expect("write");
        }
    }

    #[tokio::test]
    async fn routed_frames_leave_with_the_neighbor_and_interface_macs() {
        let (t, mut client, _c) = ready().await;
        write_all(&mut client, routed()).await;
        // A next hop without a neighbor, for a second prefix.
        write(
            &mut client,
            vec![insert(nexthop(2, 2, mapped("203.0.113.3")))],
        )
        .await
        .unwrap();
        write(
            &mut client,
            vec![
                insert(route4(0, "198.51.200.0", 24, to_nexthop(2))),
                insert(route4(0, "192.0.2.1", 32, direct("to_cpu", &[]))),
            ],
        )
        .await
        .unwrap();

        // The model the backend holds.
        let s = backend_state(&t);
        assert_eq!(s.rifs()[&RifId(1)].kind, RifKind::Port { port: PortId(1) });
        assert_eq!(
            s.rifs()[&RifId(2)].mac,
            "02:00:00:00:00:02".parse().unwrap()
        );
        assert_eq!(s.neighbors().len(), 1);
        assert_eq!(
            s.next_hops()[&NextHopId(1)].ip,
            "203.0.113.2".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            s.routes()[&route_key(0, "198.51.100.0/24")],
            RouteAction::NextHop(NextHopId(1))
        );
        assert_eq!(
            s.routes()[&route_key(0, "192.0.2.1/32")],
            RouteAction::ToCpu
        );
        assert_eq!(
            s,
            t.server.model(),
            "the backend holds what the entries say"
        );

        // A frame to the routed prefix: out of port 2 with the right MACs.
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.100.7",
            4000,
            53,
            64,
        );
        assert_eq!(forward(&t, 1, &mut f), fwd(2));
        assert_eq!(&f[0..6], &b(mac("02:aa:00:00:00:02"))[..]);
        assert_eq!(&f[6..12], &b(mac("02:00:00:00:00:02"))[..]);
        assert_eq!(f[14 + 8], 63, "TTL decremented");
        assert_eq!(checksum(&f[14..34]), 0, "IPv4 checksum still valid");

        // Not addressed to the interface's MAC; unrouted; unresolved; to us.
        let mut f = udp4(
            "02:00:00:00:00:99",
            "192.0.2.10",
            "198.51.100.7",
            4000,
            53,
            64,
        );
        assert_eq!(forward(&t, 1, &mut f), Verdict::Drop(DropReason::NotForUs));
        let mut f = udp4("02:00:00:00:00:01", "192.0.2.10", "10.1.1.1", 4000, 53, 64);
        assert!(matches!(forward(&t, 1, &mut f), Verdict::Drop(_)));
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.200.1",
            4000,
            53,
            64,
        );
        assert_eq!(
            forward(&t, 1, &mut f),
            Verdict::Punt(PuntReason::NeighborMiss)
        );
        let mut f = udp4("02:00:00:00:00:01", "192.0.2.10", "192.0.2.1", 4000, 53, 64);
        assert_eq!(forward(&t, 1, &mut f), Verdict::Punt(PuntReason::ToMe));
        // A port without an ingress_rif entry receives nothing.
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.100.7",
            4000,
            53,
            64,
        );
        assert_eq!(
            forward(&t, 3, &mut f),
            Verdict::Drop(DropReason::NoRouterInterface)
        );

        // Resolving the neighbor, then moving the route, over gRPC.
        write(
            &mut client,
            vec![insert(neighbor(
                2,
                mapped("203.0.113.3"),
                "02:aa:00:00:00:03",
            ))],
        )
        .await
        .unwrap();
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.200.1",
            4000,
            53,
            64,
        );
        assert_eq!(forward(&t, 1, &mut f), fwd(2));
        assert_eq!(&f[0..6], &b(mac("02:aa:00:00:00:03"))[..]);
        write(
            &mut client,
            vec![modify(route4(0, "198.51.200.0", 24, direct("drop", &[])))],
        )
        .await
        .unwrap();
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.200.1",
            4000,
            53,
            64,
        );
        assert!(matches!(forward(&t, 1, &mut f), Verdict::Drop(_)));
        t.stop().await;
    }

    #[tokio::test]
    async fn weighted_groups_spread_flows_and_read_back_as_written() {
        let (t, mut client, _c) = ready().await;
        write_all(&mut client, routed()).await;
        write(
            &mut client,
            vec![
                insert(neighbor(1, mapped("192.0.2.2"), "02:aa:00:00:00:01")),
                insert(nexthop(3, 1, mapped("192.0.2.2"))),
            ],
        )
        .await
        .unwrap();
        // Member 1 twice: weights add up in the model, the entry reads back as
        // written.
        let group = wcmp_group(5, &[(1, 1), (3, 2), (1, 1)]);
        write(&mut client, vec![insert(group.clone())])
            .await
            .unwrap();
        write(
            &mut client,
            vec![insert(route4(0, "10.0.0.0", 8, to_group(5)))],
        )
        .await
        .unwrap();

        let s = backend_state(&t);
        assert_eq!(
            s.groups()[&GroupId(5)].members,
            vec![
                GroupMember {
                    next_hop: NextHopId(1),
                    weight: 2
                },
                GroupMember {
                    next_hop: NextHopId(3),
                    weight: 2
                }
            ]
        );
        let back = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: table_id("wcmp_group"),
                ..Default::default()
            }],
        )
        .await;
        assert_eq!(back, vec![group]);

        let mut ports = std::collections::BTreeSet::new();
        for sport in 1000..1064 {
            let mut f = udp4("02:00:00:00:00:01", "192.0.2.10", "10.9.8.7", sport, 53, 64);
            match forward(&t, 3 - 2, &mut f) {
                Verdict::Forward { port, .. } => {
                    ports.insert(port.0);
                }
                v => panic!("expected a forward, got {v:?}"),
            }
        }
        assert_eq!(ports, [1, 2].into(), "flows use both members");

        // A group still used by a route cannot go.
        let e = write(&mut client, vec![delete(wcmp_group(5, &[]))])
            .await
            .unwrap_err();
        assert_eq!(codes(&e), vec![Code::FailedPrecondition]);
        t.stop().await;
    }

    #[tokio::test]
    async fn duplicates_and_missing_entries() {
        let (t, mut client, _c) = ready().await;
        write(&mut client, two_interfaces()).await.unwrap();

        let e = write(
            &mut client,
            vec![insert(router_interface(1, 1, "02:00:00:00:00:01"))],
        )
        .await
        .unwrap_err();
        let d = details(&e);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, Code::AlreadyExists);
        assert!(d[0].1.contains("router_interface"), "{d:?}");

        // A route inserted twice (found when stored): the second insert,
        // with another action, is refused and the first stands.
        write(
            &mut client,
            vec![insert(route4(0, "192.0.2.128", 25, direct("drop", &[])))],
        )
        .await
        .unwrap();
        let e = write(
            &mut client,
            vec![insert(route4(0, "192.0.2.128", 25, direct("to_cpu", &[])))],
        )
        .await
        .unwrap_err();
        assert_eq!(codes(&e), vec![Code::AlreadyExists]);
        let key = nos_core::RouteKey {
            vrf: nos_core::VrfId(0),
            prefix: "192.0.2.128/25".parse().unwrap(),
        };
        assert_eq!(
            backend_state(&t).routes()[&key],
            nos_core::RouteAction::Drop
        );
        write(
            &mut client,
            vec![delete(route4(0, "192.0.2.128", 25, None))],
        )
        .await
        .unwrap();

        let e = write(
            &mut client,
            vec![
                modify(neighbor(1, mapped("192.0.2.9"), "02:00:00:00:00:09")),
                delete(route4(0, "198.51.100.0", 24, None)),
                delete(ingress_rif(3, 0, 1, 0)),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(
            codes(&e),
            vec![Code::NotFound, Code::NotFound, Code::NotFound]
        );
        t.stop().await;
    }

    #[tokio::test]
    async fn a_mixed_batch_reports_every_update() {
        let (t, mut client, _c) = ready().await;
        let mut bad_port = router_interface(3, 3, "02:00:00:00:00:03");
        if let Some(p4::table_action::Type::Action(a)) =
            bad_port.action.as_mut().and_then(|a| a.r#type.as_mut())
        {
            a.params[0].value = vec![0x02, 0x00]; // 512 does not fit in 9 bits
        }
        let e = write(
            &mut client,
            vec![
                insert(router_interface(1, 1, "02:00:00:00:00:01")),
                insert(router_interface(1, 1, "02:00:00:00:00:01")),
                insert(ingress_rif(1, 0, 1, 0)),
                insert(bad_port),
                insert(nexthop(9, 77, mapped("192.0.2.1"))),
                insert(nexthop(8, 1, mapped("192.0.2.1"))),
            ],
        )
        .await
        .unwrap_err();
        let d = details(&e);
        let c: Vec<Code> = d.iter().map(|x| x.0).collect();
        assert_eq!(
            c,
            vec![
                Code::Ok,
                Code::AlreadyExists,
                Code::Ok,
                Code::OutOfRange,
                Code::NotFound,
                Code::Ok
            ]
        );
        assert!(d[0].1.is_empty(), "OK details carry no message");
        assert!(d[4].1.contains("router interface 77"), "{:?}", d[4]);
        assert!(e.message().contains("3 of 6 updates failed"), "{e:?}");

        // The good ones are installed.
        let all = read_tables(&mut client, vec![Default::default()]).await;
        assert_eq!(all.len(), 3);
        let s = backend_state(&t);
        assert!(s.rifs().contains_key(&RifId(1)) && s.next_hops().contains_key(&NextHopId(8)));
        assert!(!s.next_hops().contains_key(&NextHopId(9)));
        t.stop().await;
    }

    #[tokio::test]
    async fn malformed_entities_are_refused_with_the_specified_codes() {
        let (t, mut client, _c) = ready().await;
        write(&mut client, two_interfaces()).await.unwrap();

        let mut unknown_table = router_interface(5, 1, "02:00:00:00:00:05");
        unknown_table.table_id = 0x0200_0077;
        let wrong_kind = entry(
            "ipv4_lpm",
            vec![
                exact("ipv4_lpm", "vrf_id", b(0)),
                exact("ipv4_lpm", "ipv4_dst", b(ip4("10.0.0.0"))),
            ],
            to_nexthop(1),
            0,
        );
        let host_bits = route4(0, "10.0.0.1", 8, direct("drop", &[]));
        let missing_exact = entry(
            "ipv4_lpm",
            vec![lpm("ipv4_lpm", "ipv4_dst", b(ip4("10.0.0.0")), 8)],
            direct("drop", &[]),
            0,
        );
        let overflow_match = entry(
            "ipv4_lpm",
            vec![exact("ipv4_lpm", "vrf_id", vec![1, 0, 0, 0, 0])],
            direct("drop", &[]),
            0,
        );
        let empty_value = entry(
            "ipv4_lpm",
            vec![exact("ipv4_lpm", "vrf_id", vec![])],
            direct("drop", &[]),
            0,
        );
        let foreign_action = route4(
            0,
            "10.0.0.0",
            8,
            direct("set_dst_mac", &[("dst_mac", b(1))]),
        );
        let default_only = entry(
            "l3_admit",
            vec![ternary("l3_admit", "dst_mac", b(1), b(0xffff_ffff_ffff))],
            direct("NoAction", &[]),
            1,
        );
        let missing_param = entry(
            "router_interface",
            vec![exact("router_interface", "rif_id", b(6))],
            direct("set_port_and_src_mac", &[("port", b(1))]),
            0,
        );
        let unknown_port = router_interface(7, 9, "02:00:00:00:00:07");
        let default_entry = p4::TableEntry {
            table_id: table_id("ipv4_lpm"),
            action: direct("drop", &[]),
            is_default_action: true,
            ..Default::default()
        };
        let no_action = route4(0, "10.0.0.0", 8, None);
        let no_priority = l3_admit("02:00:00:00:00:09", 0);
        let zero_weight = wcmp_group(1, &[(1, 0)]);
        let heavy = wcmp_group(2, &[(1, 200), (2, 57)]);
        let direct_on_selector = entry(
            "wcmp_group",
            vec![exact("wcmp_group", "wcmp_group_id", b(3))],
            to_nexthop(1),
            0,
        );
        let ttl_acl = entry(
            "acl_ingress",
            vec![ternary("acl_ingress", "ttl", b(1), b(0xff))],
            direct("acl_drop", &[]),
            1,
        );
        let unspecified = p4::Update {
            r#type: 0,
            entity: Some(p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(router_interface(
                    8,
                    1,
                    "02:00:00:00:00:08",
                ))),
            }),
        };
        let member = p4::Update {
            r#type: p4::update::Type::Insert as i32,
            entity: Some(p4::Entity {
                entity: Some(p4::entity::Entity::ActionProfileMember(Default::default())),
            }),
        };
        let counter = p4::Update {
            r#type: p4::update::Type::Modify as i32,
            entity: Some(p4::Entity {
                entity: Some(p4::entity::Entity::CounterEntry(Default::default())),
            }),
        };

        let cases: Vec<(p4::Update, Code)> = vec![
            (insert(unknown_table), Code::InvalidArgument),
            (insert(wrong_kind), Code::InvalidArgument),
            (insert(host_bits), Code::InvalidArgument),
            (insert(missing_exact), Code::InvalidArgument),
            (insert(overflow_match), Code::OutOfRange),
            (insert(empty_value), Code::OutOfRange),
            (insert(foreign_action), Code::InvalidArgument),
            (insert(default_only), Code::PermissionDenied),
            (insert(missing_param), Code::InvalidArgument),
            (insert(unknown_port), Code::InvalidArgument),
            (modify(default_entry.clone()), Code::PermissionDenied),
            (insert(default_entry), Code::InvalidArgument),
            (insert(no_action), Code::InvalidArgument),
            (insert(no_priority), Code::InvalidArgument),
            (insert(zero_weight), Code::InvalidArgument),
            (insert(heavy), Code::InvalidArgument),
            (insert(direct_on_selector), Code::InvalidArgument),
            (insert(ttl_acl), Code::Unimplemented),
            (unspecified, Code::InvalidArgument),
            (member, Code::Unimplemented),
            (counter, Code::Unimplemented),
        ];
        let (updates, want): (Vec<p4::Update>, Vec<Code>) = cases.into_iter().unzip();
        let e = write(&mut client, updates).await.unwrap_err();
        let got = details(&e);
        for (i, ((code, msg), w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(code, w, "update {i}: {msg}");
            assert!(!msg.is_empty(), "update {i} explains itself");
        }
        assert_eq!(got.len(), want.len());
        // Nothing but the interfaces got in.
        assert_eq!(
            read_tables(&mut client, vec![Default::default()])
                .await
                .len(),
            6
        );
        t.stop().await;
    }

    #[tokio::test]
    async fn references_must_exist_and_used_entries_stay() {
        let (t, mut client, _c) = ready().await;
        let e = write(
            &mut client,
            vec![insert(nexthop(1, 2, mapped("203.0.113.2")))],
        )
        .await
        .unwrap_err();
        assert_eq!(codes(&e), vec![Code::NotFound], "no router interface 2 yet");
        write(&mut client, two_interfaces()).await.unwrap();
        write(
            &mut client,
            vec![insert(nexthop(1, 2, mapped("203.0.113.2")))],
        )
        .await
        .unwrap();
        let e = write(
            &mut client,
            vec![
                insert(route4(0, "198.51.100.0", 24, to_nexthop(4))),
                insert(route4(0, "198.51.101.0", 24, to_group(4))),
                insert(neighbor(9, mapped("203.0.113.2"), "02:aa:00:00:00:02")),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(
            codes(&e),
            vec![Code::NotFound, Code::NotFound, Code::NotFound]
        );
        write(
            &mut client,
            vec![insert(route4(0, "198.51.100.0", 24, to_nexthop(1)))],
        )
        .await
        .unwrap();
        let e = write(
            &mut client,
            vec![
                delete(router_interface(2, 2, "02:00:00:00:00:02")),
                delete(nexthop(1, 2, mapped("203.0.113.2"))),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(
            codes(&e),
            vec![Code::FailedPrecondition, Code::FailedPrecondition]
        );
        // Top-down, everything goes.
        write(
            &mut client,
            vec![
                delete(route4(0, "198.51.100.0", 24, None)),
                delete(nexthop(1, 0, 0)),
                delete(router_interface(2, 0, "00:00:00:00:00:00")),
            ],
        )
        .await
        .unwrap();
        let s = backend_state(&t);
        assert!(s.routes().is_empty() && s.next_hops().is_empty());
        assert_eq!(s.rifs().len(), 1);
        t.stop().await;
    }

    #[tokio::test]
    async fn padded_values_are_accepted_and_read_back_canonical() {
        let (t, mut client, _c) = ready().await;
        let padded = p4::TableEntry {
            table_id: table_id("router_interface"),
            r#match: vec![exact(
                "router_interface",
                "rif_id",
                vec![0, 0, 0, 0, 0, 0, 1],
            )],
            action: Some(p4::TableAction {
                r#type: Some(p4::table_action::Type::Action(p4::Action {
                    action_id: action_id("set_port_and_src_mac"),
                    // Parameters out of order, with padding.
                    params: vec![
                        p4::action::Param {
                            param_id: param_id("set_port_and_src_mac", "src_mac"),
                            value: vec![0, 0, 2, 0, 0, 0, 0, 1],
                        },
                        p4::action::Param {
                            param_id: param_id("set_port_and_src_mac", "port"),
                            value: vec![0, 0, 0, 1],
                        },
                    ],
                })),
            }),
            metadata: b"cookie".to_vec(),
            ..Default::default()
        };
        write(&mut client, vec![insert(padded)]).await.unwrap();
        let mut want = router_interface(1, 1, "02:00:00:00:00:01");
        want.metadata = b"cookie".to_vec();
        let back = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: table_id("router_interface"),
                ..Default::default()
            }],
        )
        .await;
        assert_eq!(back, vec![want]);
        // The padded key finds the same entry.
        let e = write(
            &mut client,
            vec![insert(router_interface(1, 1, "02:00:00:00:00:01"))],
        )
        .await
        .unwrap_err();
        assert_eq!(codes(&e), vec![Code::AlreadyExists]);
        t.stop().await;
    }

    #[tokio::test]
    async fn reads_with_wildcards() {
        let (t, mut client, _c) = ready().await;
        write_all(&mut client, routed()).await;
        let n = read_tables(&mut client, vec![Default::default()])
            .await
            .len();
        assert_eq!(n, 9, "every table (table_id 0)");

        let rifs = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: table_id("router_interface"),
                ..Default::default()
            }],
        )
        .await;
        assert_eq!(
            rifs,
            vec![
                router_interface(1, 1, "02:00:00:00:00:01"),
                router_interface(2, 2, "02:00:00:00:00:02")
            ]
        );
        let one = read_tables(
            &mut client,
            vec![router_interface(2, 0, "00:00:00:00:00:00")],
        )
        .await;
        assert_eq!(one, vec![router_interface(2, 2, "02:00:00:00:00:02")]);
        let none = read_tables(
            &mut client,
            vec![router_interface(9, 0, "00:00:00:00:00:00")],
        )
        .await;
        assert!(none.is_empty());

        let default = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: table_id("ipv4_lpm"),
                is_default_action: true,
                ..Default::default()
            }],
        )
        .await;
        assert_eq!(default.len(), 1);
        assert!(default[0].is_default_action);
        assert_eq!(
            default[0].action,
            Some(p4::TableAction {
                r#type: Some(p4::table_action::Type::Action(p4::Action {
                    action_id: action_id("drop"),
                    params: vec![]
                }))
            })
        );

        let by_action = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: table_id("l3_admit"),
                action: direct("admit_to_l3", &[]),
                priority: 1,
                ..Default::default()
            }],
        )
        .await;
        assert_eq!(by_action.len(), 2);
        let by_priority = read_tables(
            &mut client,
            vec![p4::TableEntry {
                table_id: table_id("l3_admit"),
                priority: 5,
                ..Default::default()
            }],
        )
        .await;
        assert!(by_priority.is_empty());

        // Several requests, one bad: the good one's entities, then UNKNOWN with
        // one detail per request.
        let (entities, err) = read_all(
            &mut client,
            vec![
                p4::Entity {
                    entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                        table_id: table_id("nexthop"),
                        ..Default::default()
                    })),
                },
                p4::Entity {
                    entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                        priority: 3,
                        ..Default::default()
                    })),
                },
                p4::Entity { entity: None },
                p4::Entity {
                    entity: Some(p4::entity::Entity::ActionProfileGroup(Default::default())),
                },
            ],
        )
        .await
        .unwrap();
        assert_eq!(entities.len(), 1);
        let err = err.expect("the read ends with an error");
        assert_eq!(
            codes(&err),
            vec![
                Code::Ok,
                Code::InvalidArgument,
                Code::InvalidArgument,
                Code::Unimplemented
            ]
        );
        t.stop().await;
    }

    #[tokio::test]
    async fn clone_sessions_are_kept() {
        let (t, mut client, _c) = ready().await;
        let session = |port: Vec<u8>| p4::Update {
            r#type: p4::update::Type::Insert as i32,
            entity: Some(p4::Entity {
                entity: Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type: Some(
                            p4::packet_replication_engine_entry::Type::CloneSessionEntry(
                                p4::CloneSessionEntry {
                                    session_id: 255,
                                    replicas: vec![p4::Replica {
                                        port_kind: Some(p4::replica::PortKind::Port(port)),
                                        instance: 0,
                                        backup_replicas: vec![],
                                    }],
                                    ..Default::default()
                                },
                            ),
                        ),
                    },
                )),
            }),
        };
        write(&mut client, vec![session(vec![0, 0xff])])
            .await
            .unwrap();
        let e = write(&mut client, vec![session(vec![0xff])])
            .await
            .unwrap_err();
        assert_eq!(codes(&e), vec![Code::AlreadyExists]);
        let (got, err) = read_all(
            &mut client,
            vec![p4::Entity {
                entity: Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    Default::default(),
                )),
            }],
        )
        .await
        .unwrap();
        assert!(err.is_none());
        assert_eq!(got, vec![session(vec![0xff]).entity.unwrap()]);
        t.stop().await;
    }

    #[tokio::test]
    async fn all_or_none_batches() {
        use p4::write_request::Atomicity;
        let (t, mut client, _c) = ready().await;
        let e = write_as(
            &mut client,
            Some(10),
            vec![
                insert(router_interface(1, 1, "02:00:00:00:00:01")),
                insert(ingress_rif(1, 0, 1, 0)),
                insert(router_interface(1, 1, "02:00:00:00:00:01")),
                insert(router_interface(2, 2, "02:00:00:00:00:02")),
            ],
            Atomicity::RollbackOnError,
        )
        .await
        .unwrap_err();
        assert_eq!(
            codes(&e),
            vec![
                Code::Aborted,
                Code::Aborted,
                Code::AlreadyExists,
                Code::Aborted
            ]
        );
        assert!(read_tables(&mut client, vec![Default::default()])
            .await
            .is_empty());
        assert!(backend_state(&t).rifs().is_empty());

        write_as(
            &mut client,
            Some(10),
            two_interfaces(),
            Atomicity::DataplaneAtomic,
        )
        .await
        .unwrap();
        assert_eq!(backend_state(&t).rifs().len(), 2);
        t.stop().await;
    }

    #[tokio::test]
    async fn vlan_interfaces_and_their_constraints() {
        let (t, mut client, _c) = ready().await;
        write(&mut client, two_interfaces()).await.unwrap();
        let tagged = |rif: u32, port: u32, m: &str, vlan: u32| {
            entry(
                "router_interface",
                vec![exact("router_interface", "rif_id", b(rif.into()))],
                direct(
                    "set_port_and_src_mac_and_vlan",
                    &[
                        ("port", b(port.into())),
                        ("src_mac", b(mac(m))),
                        ("vlan_id", b(vlan.into())),
                    ],
                ),
                0,
            )
        };
        write(
            &mut client,
            vec![
                // A sub-port: port 3, VLAN 10.
                insert(tagged(3, 3, "02:00:00:00:00:03", 10)),
                insert(ingress_rif(3, 10, 3, 0)),
                // A VLAN interface: VLAN 20 tagged on ports 1 and 2, in VRF 7.
                insert(tagged(4, 1, "02:00:00:00:00:04", 20)),
                insert(ingress_rif(1, 20, 4, 7)),
                insert(ingress_rif(2, 20, 4, 7)),
            ],
        )
        .await
        .unwrap();
        let s = backend_state(&t);
        assert_eq!(
            s.rifs()[&RifId(3)].kind,
            RifKind::SubPort {
                port: PortId(3),
                vlan: 10
            }
        );
        let r4 = &s.rifs()[&RifId(4)];
        assert_eq!(r4.vrf, VrfId(7));
        assert_eq!(
            r4.kind,
            RifKind::Vlan {
                vlan: 20,
                members: vec![
                    VlanMember {
                        port: PortId(1),
                        tagged: true
                    },
                    VlanMember {
                        port: PortId(2),
                        tagged: true
                    }
                ]
            }
        );
        assert!(s.vrfs().contains_key(&VrfId(7)), "VRF 7 exists while used");

        let e = write(
            &mut client,
            vec![
                // Another VLAN on the sub-port; another VRF on the VLAN interface.
                insert(ingress_rif(3, 30, 3, 0)),
                insert(ingress_rif(3, 20, 4, 0)),
                modify(tagged(3, 3, "02:00:00:00:00:03", 11)),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(
            codes(&e),
            vec![
                Code::Unimplemented,
                Code::Unimplemented,
                Code::Unimplemented
            ]
        );

        // Without its members the VLAN interface leaves VRF 7, which goes.
        write(
            &mut client,
            vec![
                delete(ingress_rif(1, 20, 0, 0)),
                delete(ingress_rif(2, 20, 0, 0)),
            ],
        )
        .await
        .unwrap();
        let s = backend_state(&t);
        assert_eq!(s.rifs()[&RifId(4)].vrf, VrfId(0));
        assert!(!s.vrfs().contains_key(&VrfId(7)));
        t.stop().await;
    }

    #[tokio::test]
    async fn acl_entries_become_rules() {
        let (t, mut client, _c) = ready().await;
        write_all(&mut client, routed()).await;
        let drop_5001 = entry(
            "acl_ingress",
            vec![
                ternary("acl_ingress", "ether_type", b(0x0800), b(0xffff)),
                ternary(
                    "acl_ingress",
                    "dst_ipv4",
                    b(ip4("198.51.100.0")),
                    b(0xffff_ff00),
                ),
                ternary("acl_ingress", "ip_proto", b(17), b(0xff)),
                range("acl_ingress", "l4_dst_port", 5001, 5001),
            ],
            direct("acl_drop", &[]),
            10,
        );
        let to_vrf = entry(
            "acl_pre_ingress",
            vec![ternary("acl_pre_ingress", "in_port", b(3), b(0x1ff))],
            direct("set_vrf", &[("vrf_id", b(9))]),
            1,
        );
        write(&mut client, vec![insert(drop_5001.clone()), insert(to_vrf)])
            .await
            .unwrap();
        let s = backend_state(&t);
        let rules: Vec<_> = s.acls().values().collect();
        assert_eq!(rules.len(), 2);
        assert!(rules
            .iter()
            .any(|r| r.stage == AclStage::PreIngress && r.action == AclAction::SetVrf(VrfId(9))));
        assert!(s.vrfs().contains_key(&VrfId(9)));

        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.100.7",
            4000,
            5001,
            64,
        );
        assert!(matches!(forward(&t, 1, &mut f), Verdict::Drop(_)));
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.100.7",
            4000,
            5002,
            64,
        );
        assert_eq!(forward(&t, 1, &mut f), fwd(2));

        // Masks the engine cannot match are refused, not approximated.
        let partial_port = entry(
            "acl_ingress",
            vec![ternary("acl_ingress", "in_port", b(2), b(0x0fe))],
            direct("acl_drop", &[]),
            2,
        );
        let holey = entry(
            "acl_ingress",
            vec![ternary(
                "acl_ingress",
                "src_ipv4",
                b(ip4("10.0.0.1")),
                b(0xff00_00ff),
            )],
            direct("acl_drop", &[]),
            3,
        );
        let e = write(&mut client, vec![insert(partial_port), insert(holey)])
            .await
            .unwrap_err();
        assert_eq!(codes(&e), vec![Code::Unimplemented, Code::Unimplemented]);

        write(&mut client, vec![delete(drop_5001)]).await.unwrap();
        let mut f = udp4(
            "02:00:00:00:00:01",
            "192.0.2.10",
            "198.51.100.7",
            4000,
            5001,
            64,
        );
        assert_eq!(forward(&t, 1, &mut f), fwd(2));
        assert_eq!(backend_state(&t).acls().len(), 1);
        t.stop().await;
    }
}
