//! A BGP session task against a hand-driven peer over real TCP on loopback:
//! the OPEN exchange, keepalives, and what malformed messages do (RFC 7606
//! treat-as-withdraw keeps the session; session-reset errors send the right
//! NOTIFICATION). Every malformed message here is raw bytes on the wire.

use routing::bgp::msg::*;
use routing::bgp::session::{PeerConfig, Session, SessionCmd, SessionEvent};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

struct Peer {
    sock: TcpStream,
    /// The session's OPEN body.
    open: Vec<u8>,
    events: mpsc::Receiver<SessionEvent>,
    _cmds: mpsc::UnboundedSender<SessionCmd>,
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

async fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 19];
    timeout(T, s.read_exact(&mut h)).await.ok()?.ok()?;
    let len = u16::from_be_bytes([h[16], h[17]]) as usize;
    let mut body = vec![0u8; len.checked_sub(19)?];
    timeout(T, s.read_exact(&mut body)).await.ok()?.ok()?;
    Some((h[18], body))
}

/// An OPEN body: version, AS, hold time, BGP id, capabilities (MP IPv4 unicast,
/// 4-octet AS).
fn open_body(version: u8, asn: u16, hold: u16, id: [u8; 4]) -> Vec<u8> {
    let caps: Vec<u8> = vec![
        1,
        4,
        0,
        1,
        0,
        1, // multiprotocol IPv4 unicast
        65,
        4,
        0,
        0,
        (asn >> 8) as u8,
        asn as u8, // 4-octet AS
    ];
    let mut b = vec![version];
    b.extend_from_slice(&asn.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push((caps.len() + 2) as u8);
    b.push(2);
    b.push(caps.len() as u8);
    b.extend_from_slice(&caps);
    b
}

/// An eBGP session of AS 64500 with AS 64501 at `address`:`port`, IPv4
/// unicast, hold time 9 s, connect-retry 30 s (longer than any test).
fn peer_config(address: &str, port: u16) -> PeerConfig {
    PeerConfig {
        address: address.parse().unwrap(),
        remote_as: 64501,
        local_as: 64500,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: 9,
        passive: false,
        families: vec![IPV4_UNICAST],
        connect_retry: Duration::from_secs(30),
        port,
        password: None,
        ttl: 1,
        forwarding_survives: false,
        restarted_until: None,
    }
}

/// Starts a session for 127.0.0.1 and accepts its connection; returns the peer
/// side after it has read the session's OPEN.
async fn connect() -> Peer {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let cfg = peer_config("127.0.0.1", port);
    let (ev_tx, events) = mpsc::channel(64);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(Session::new(cfg, ev_tx, cmd_rx).run());
    let (mut sock, _) = timeout(T, l.accept()).await.unwrap().unwrap();
    let (kind, body) = read_msg(&mut sock).await.expect("the session's OPEN");
    assert_eq!(kind, 1);
    assert_eq!(body[0], 4, "BGP version 4");
    Peer {
        sock,
        open: body,
        events,
        _cmds: cmd_tx,
    }
}

/// Completes the OPEN exchange and waits for Established.
async fn establish() -> Peer {
    let mut p = connect().await;
    p.sock
        .write_all(&frame(1, &open_body(4, 64501, 9, [198, 51, 100, 2])))
        .await
        .unwrap();
    p.sock.write_all(&frame(4, &[])).await.unwrap();
    let (kind, _) = read_msg(&mut p.sock).await.expect("KEEPALIVE after OPEN");
    assert_eq!(kind, 4);
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Established { caps, .. } => {
                assert!(caps.four_octet_as);
                return p;
            }
            SessionEvent::State { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// An UPDATE body with the given path attributes and NLRI 203.0.113.0/24.
fn update(attrs: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(&[24, 203, 0, 113]);
    b
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH_64501: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfb, 0xf5];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 198, 51, 100, 2];

fn attrs(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The next Update event, skipping state changes.
async fn next_update(p: &mut Peer) -> Update {
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Update { update, .. } => return update,
            SessionEvent::State { .. } => {}
            other => panic!("expected an UPDATE event, got {other:?}"),
        }
    }
}

/// Expects a NOTIFICATION with `code` on the wire and the session to go down.
async fn expect_reset(p: &mut Peer, code: u8) -> u8 {
    let (kind, body) = read_msg(&mut p.sock).await.expect("a NOTIFICATION");
    assert_eq!(kind, 3, "NOTIFICATION expected, got type {kind}");
    assert_eq!(body[0], code, "error code (subcode {})", body[1]);
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Down { .. } => return body[1],
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_well_formed_update_arrives_and_keepalives_flow() {
    let mut p = establish().await;
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP])),
        ))
        .await
        .unwrap();
    let u = next_update(&mut p).await;
    assert!(!u.treat_as_withdraw);
    assert_eq!(u.announced.len(), 1);
    assert_eq!(u.announced[0].prefix, "203.0.113.0/24".parse().unwrap());
    let a = u.attrs.unwrap();
    assert_eq!(a.as_path, vec![AsSegment::Sequence(vec![64501])]);
    assert_eq!(a.next_hop, Some("198.51.100.2".parse().unwrap()));
    // Hold time 9 s: a KEEPALIVE within 3 s or so.
    let (kind, _) = read_msg(&mut p.sock).await.expect("a KEEPALIVE");
    assert_eq!(kind, 4);
}

#[tokio::test]
async fn invalid_origin_is_treat_as_withdraw_and_the_session_stays() {
    let mut p = establish().await;
    let bad_origin = [0x40, 1, 1, 7];
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&bad_origin, &AS_PATH_64501, &NEXT_HOP])),
        ))
        .await
        .unwrap();
    let u = next_update(&mut p).await;
    assert!(u.treat_as_withdraw, "{u:?}");
    assert!(
        u.issues.iter().any(|i| i.code == 1),
        "the issue names ORIGIN: {:?}",
        u.issues
    );
    // Still up: a good UPDATE afterwards is taken.
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP])),
        ))
        .await
        .unwrap();
    assert!(!next_update(&mut p).await.treat_as_withdraw);
}

#[tokio::test]
async fn malformed_as_path_is_treat_as_withdraw() {
    let mut p = establish().await;
    // Segment type 9 does not exist.
    let bad_path = [0x40, 2, 6, 9, 1, 0, 0, 0xfb, 0xf5];
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&ORIGIN_IGP, &bad_path, &NEXT_HOP])),
        ))
        .await
        .unwrap();
    let u = next_update(&mut p).await;
    assert!(u.treat_as_withdraw, "{u:?}");
    assert!(u.issues.iter().any(|i| i.code == 2), "{:?}", u.issues);
}

#[tokio::test]
async fn bad_next_hop_length_is_treat_as_withdraw() {
    let mut p = establish().await;
    let bad_nh = [0x40, 3, 3, 198, 51, 100];
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &bad_nh])),
        ))
        .await
        .unwrap();
    let u = next_update(&mut p).await;
    assert!(u.treat_as_withdraw, "{u:?}");
}

#[tokio::test]
async fn bad_attribute_flags_are_treat_as_withdraw() {
    let mut p = establish().await;
    // ORIGIN marked optional: a flags error.
    let bad_flags = [0xc0, 1, 1, 0];
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&bad_flags, &AS_PATH_64501, &NEXT_HOP])),
        ))
        .await
        .unwrap();
    let u = next_update(&mut p).await;
    assert!(u.treat_as_withdraw, "{u:?}");
}

#[tokio::test]
async fn unrecognized_well_known_attribute_does_not_kill_the_session() {
    let mut p = establish().await;
    // Type 99 flagged well-known (not optional).
    let unknown = [0x40, 99, 2, 1, 2];
    p.sock
        .write_all(&frame(
            2,
            &update(&attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP, &unknown])),
        ))
        .await
        .unwrap();
    let u = next_update(&mut p).await;
    assert!(u.treat_as_withdraw, "{u:?}");
}

#[tokio::test]
async fn truncated_nlri_resets_the_session_with_an_update_error() {
    let mut p = establish().await;
    let mut body = vec![0, 0];
    let a = attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP]);
    body.extend_from_slice(&(a.len() as u16).to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(&[24, 203, 0]); // a /24 with only two of its three octets
    p.sock.write_all(&frame(2, &body)).await.unwrap();
    expect_reset(&mut p, err::UPDATE).await;
}

#[tokio::test]
async fn attribute_length_overrunning_the_message_resets_or_withdraws() {
    let mut p = establish().await;
    // NEXT_HOP claims 40 bytes; the attribute list cannot be walked.
    let mut body = vec![0, 0];
    let a = attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &[0x40, 3, 40, 1, 2, 3, 4]]);
    body.extend_from_slice(&(a.len() as u16).to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(&[24, 203, 0, 113]);
    p.sock.write_all(&frame(2, &body)).await.unwrap();
    // RFC 7606 §4: when the attribute list cannot be parsed, session reset or
    // treat-as-withdraw are both allowed; either way nothing is installed.
    tokio::select! {
        m = read_msg(&mut p.sock) => {
            let (kind, body) = m.expect("a message");
            assert_eq!((kind, body[0]), (3, err::UPDATE));
        }
        e = p.events.recv() => match e.unwrap() {
            SessionEvent::Update { update, .. } => assert!(update.treat_as_withdraw),
            SessionEvent::Down { .. } | SessionEvent::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn open_with_a_wrong_version_gets_unsupported_version() {
    let mut p = connect().await;
    p.sock
        .write_all(&frame(1, &open_body(3, 64501, 9, [198, 51, 100, 2])))
        .await
        .unwrap();
    let (kind, body) = read_msg(&mut p.sock).await.expect("a NOTIFICATION");
    assert_eq!(
        (kind, body[0], body[1]),
        (3, err::OPEN, err::UNSUPPORTED_VERSION)
    );
}

#[tokio::test]
async fn open_from_the_wrong_as_gets_bad_peer_as() {
    let mut p = connect().await;
    p.sock
        .write_all(&frame(1, &open_body(4, 64999, 9, [198, 51, 100, 2])))
        .await
        .unwrap();
    let (kind, body) = read_msg(&mut p.sock).await.expect("a NOTIFICATION");
    assert_eq!((kind, body[0], body[1]), (3, err::OPEN, err::BAD_PEER_AS));
}

#[tokio::test]
async fn open_with_hold_time_one_is_refused() {
    let mut p = connect().await;
    p.sock
        .write_all(&frame(1, &open_body(4, 64501, 1, [198, 51, 100, 2])))
        .await
        .unwrap();
    let (kind, body) = read_msg(&mut p.sock).await.expect("a NOTIFICATION");
    assert_eq!(
        (kind, body[0], body[1]),
        (3, err::OPEN, err::UNACCEPTABLE_HOLD_TIME)
    );
}

#[tokio::test]
async fn a_bad_marker_gets_connection_not_synchronized() {
    let mut p = establish().await;
    let mut m = frame(4, &[]);
    m[3] = 0;
    p.sock.write_all(&m).await.unwrap();
    let sub = expect_reset(&mut p, err::HEADER).await;
    assert_eq!(sub, err::CONNECTION_NOT_SYNCHRONIZED);
}

#[tokio::test]
async fn hold_timer_expiry_sends_a_notification() {
    // Hold time 3 s: stay silent after Established.
    let mut p = connect().await;
    p.sock
        .write_all(&frame(1, &open_body(4, 64501, 3, [198, 51, 100, 2])))
        .await
        .unwrap();
    p.sock.write_all(&frame(4, &[])).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let (kind, body) = read_msg(&mut p.sock)
            .await
            .expect("messages until the NOTIFICATION");
        if kind == 3 {
            assert_eq!(body[0], err::HOLD_TIMER_EXPIRED);
            break;
        }
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "not before the hold time"
    );
}

#[tokio::test]
async fn add_path_is_negotiated_and_path_ids_are_decoded() {
    let mut p = connect().await;
    // Our OPEN: multiprotocol IPv4 unicast, 4-octet AS, ADD-PATH IPv4 unicast send (2).
    let mut body = open_body(4, 64501, 9, [198, 51, 100, 2]);
    let extra = [69u8, 4, 0, 1, 1, 2];
    body[9] += extra.len() as u8; // optional parameters length
    body[11] += extra.len() as u8; // capabilities parameter length
    body.extend_from_slice(&extra);
    p.sock.write_all(&frame(1, &body)).await.unwrap();
    p.sock.write_all(&frame(4, &[])).await.unwrap();
    let (kind, _) = read_msg(&mut p.sock).await.expect("KEEPALIVE");
    assert_eq!(kind, 4);
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Established { caps, .. } => {
                assert_eq!(
                    caps.add_path_rx,
                    vec![IPV4_UNICAST],
                    "we receive path ids in IPv4 unicast"
                );
                break;
            }
            SessionEvent::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Two paths for one prefix, then a withdrawal of path 7 only.
    let attrs = attrs(&[&ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP]);
    let mut u = vec![0, 0];
    u.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    u.extend_from_slice(&attrs);
    u.extend_from_slice(&[0, 0, 0, 7, 24, 203, 0, 113, 0, 0, 0, 9, 24, 203, 0, 113]);
    p.sock.write_all(&frame(2, &u)).await.unwrap();
    let got = next_update(&mut p).await;
    let ids: Vec<Option<u32>> = got.announced.iter().map(|n| n.path_id).collect();
    assert_eq!(ids, vec![Some(7), Some(9)]);
    let w = [0u8, 8, 0, 0, 0, 7, 24, 203, 0, 113, 0, 0];
    p.sock.write_all(&frame(2, &w)).await.unwrap();
    let got = next_update(&mut p).await;
    assert_eq!(got.withdrawn.len(), 1);
    assert_eq!(got.withdrawn[0].path_id, Some(7));
}

#[tokio::test]
async fn a_gracefully_restarting_peer_that_reconnects_gets_a_new_session() {
    let mut p = connect().await;
    // OPEN with graceful restart: restart time 120 s, IPv4 unicast, forwarding preserved.
    let mut body = open_body(4, 64501, 9, [198, 51, 100, 2]);
    let gr = [64u8, 6, 0x00, 0x78, 0, 1, 1, 0x80];
    body[9] += gr.len() as u8;
    body[11] += gr.len() as u8;
    body.extend_from_slice(&gr);
    p.sock.write_all(&frame(1, &body)).await.unwrap();
    p.sock.write_all(&frame(4, &[])).await.unwrap();
    let _ = read_msg(&mut p.sock).await.expect("KEEPALIVE");
    loop {
        if let SessionEvent::Established { .. } =
            timeout(T, p.events.recv()).await.unwrap().unwrap()
        {
            break;
        }
    }
    // The peer "reboots": a new connection arrives while the old one is still up.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, _) = l.accept().await.unwrap();
    p._cmds.send(SessionCmd::Incoming(server)).unwrap();
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Down { graceful, .. } => {
                assert!(
                    graceful,
                    "the old session ends as a graceful restart (routes kept)"
                );
                break;
            }
            SessionEvent::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // A fresh OPEN exchange on the new connection.
    let (kind, _) = read_msg(&mut client)
        .await
        .expect("our OPEN on the new connection");
    assert_eq!(kind, 1);
    client.write_all(&frame(1, &body)).await.unwrap();
    client.write_all(&frame(4, &[])).await.unwrap();
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Established { .. } => break,
            SessionEvent::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The capabilities in an OPEN body, as (code, value).
fn capabilities(open: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let params = &open[10..10 + open[9] as usize];
    let mut caps = Vec::new();
    let mut i = 0;
    while i + 2 <= params.len() {
        let (kind, len) = (params[i], params[i + 1] as usize);
        let value = &params[i + 2..i + 2 + len];
        if kind == 2 {
            let mut j = 0;
            while j + 2 <= value.len() {
                let l = value[j + 1] as usize;
                caps.push((value[j], value[j + 2..j + 2 + l].to_vec()));
                j += 2 + l;
            }
        }
        i += 2 + len;
    }
    caps
}

/// Completes the OPEN exchange with an OPEN carrying graceful restart (restart
/// time 120 s, IPv4 unicast with forwarding preserved) and, if `n_bit`, RFC
/// 8538's N bit; `hold` is the peer's hold time.
async fn establish_gr(n_bit: bool, hold: u16) -> Peer {
    let mut p = connect().await;
    let mut body = open_body(4, 64501, hold, [198, 51, 100, 2]);
    let gr = [64u8, 6, if n_bit { 0x40 } else { 0 }, 0x78, 0, 1, 1, 0x80];
    body[9] += gr.len() as u8;
    body[11] += gr.len() as u8;
    body.extend_from_slice(&gr);
    p.sock.write_all(&frame(1, &body)).await.unwrap();
    p.sock.write_all(&frame(4, &[])).await.unwrap();
    let _ = read_msg(&mut p.sock).await.expect("KEEPALIVE");
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Established { caps, .. } => {
                assert_eq!(caps.graceful_notification, n_bit, "N bit negotiated");
                return p;
            }
            SessionEvent::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Waits for the session's Down event; returns whether it was graceful.
async fn down_graceful(p: &mut Peer) -> bool {
    loop {
        match timeout(T, p.events.recv()).await.unwrap().unwrap() {
            SessionEvent::Down { graceful, .. } => return graceful,
            SessionEvent::State { .. } | SessionEvent::Update { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn our_open_sets_the_graceful_notification_bit() {
    let p = connect().await;
    let gr = capabilities(&p.open)
        .into_iter()
        .find(|(code, _)| *code == 64)
        .expect("a graceful restart capability");
    assert_eq!(gr.1[0] & 0x40, 0x40, "N bit (RFC 8538) in {:?}", gr.1);
    assert_eq!(gr.1[0] & 0x80, 0, "not restarting");
}

#[tokio::test]
async fn with_the_n_bit_a_notification_ends_the_session_gracefully() {
    // Received Cease/Administrative Shutdown: graceful with the N bit...
    let mut p = establish_gr(true, 9).await;
    p.sock.write_all(&frame(3, &[6, 2])).await.unwrap();
    assert!(
        down_graceful(&mut p).await,
        "Cease with the N bit keeps routes"
    );
    // ...not without it (RFC 4724 alone)...
    let mut p = establish_gr(false, 9).await;
    p.sock.write_all(&frame(3, &[6, 2])).await.unwrap();
    assert!(
        !down_graceful(&mut p).await,
        "Cease without the N bit drops routes"
    );
    // ...and never for a Hard Reset.
    let mut p = establish_gr(true, 9).await;
    p.sock.write_all(&frame(3, &[6, 9, 6, 4])).await.unwrap();
    assert!(!down_graceful(&mut p).await, "Hard Reset drops routes");
}

#[tokio::test]
async fn with_the_n_bit_hold_timer_expiry_is_graceful() {
    // Hold time 3 s and a silent peer: our NOTIFICATION 4/0, then a graceful end.
    let mut p = establish_gr(true, 3).await;
    loop {
        let (kind, body) = read_msg(&mut p.sock)
            .await
            .expect("messages until the NOTIFICATION");
        if kind == 3 {
            assert_eq!((body[0], body[1]), (err::HOLD_TIMER_EXPIRED, 0));
            break;
        }
    }
    assert!(
        down_graceful(&mut p).await,
        "hold timer expiry with the N bit keeps routes"
    );
}

#[tokio::test]
async fn stopping_a_session_with_the_n_bit_sends_a_hard_reset() {
    let mut p = establish_gr(true, 9).await;
    p._cmds.send(SessionCmd::Stop).unwrap();
    loop {
        let (kind, body) = read_msg(&mut p.sock).await.expect("a NOTIFICATION");
        if kind == 3 {
            // Cease/Hard Reset carrying Cease/Administrative Shutdown.
            assert_eq!(body, vec![6, 9, 6, 2]);
            break;
        }
    }
    assert!(!down_graceful(&mut p).await);
    // Without the N bit: a plain Cease.
    let mut p = establish_gr(false, 9).await;
    p._cmds.send(SessionCmd::Stop).unwrap();
    loop {
        let (kind, body) = read_msg(&mut p.sock).await.expect("a NOTIFICATION");
        if kind == 3 {
            assert_eq!(body, vec![6, 2]);
            break;
        }
    }
}

#[test]
fn a_peer_without_a_route_yet_is_tried_again_within_seconds() {
    // A network namespace of this thread's own, where 10.1.1.1 has no route
    // until the test adds it (as when nosd starts before its interfaces are
    // up). The connect-retry time is 30 s: the session must not wait it out.
    std::thread::spawn(|| {
        // SAFETY: unshare(2) with CLONE_NEWNET changes only this thread's
        // network namespace; no memory is involved.
        #[allow(unsafe_code)]
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                std::env::var_os("CI").is_none(),
                "needs root for a network namespace: {e}"
            );
            eprintln!("SKIPPED: needs root for a network namespace: {e}");
            return;
        }
        let ip = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "ip {args:?}");
        };
        ip(&["link", "set", "lo", "up"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cfg = peer_config("10.1.1.1", 1179);
            let (ev_tx, mut events) = mpsc::channel(64);
            let (_cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            tokio::spawn(Session::new(cfg, ev_tx, cmd_rx).run());
            // The first attempt fails at once: no route.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ip(&["addr", "add", "10.1.1.1/32", "dev", "lo"]);
            let l = TcpListener::bind("10.1.1.1:1179").await.unwrap();
            let (mut sock, _) = timeout(Duration::from_secs(10), l.accept())
                .await
                .expect("the session connects again long before its connect-retry time")
                .unwrap();
            let (kind, _) = read_msg(&mut sock).await.expect("the session's OPEN");
            assert_eq!(kind, 1);
            while let Ok(Some(e)) = timeout(Duration::from_millis(10), events.recv()).await {
                assert!(matches!(e, SessionEvent::State { .. }), "{e:?}");
            }
        });
    })
    .join()
    .expect("the test thread");
}
