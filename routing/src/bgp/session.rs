//! One BGP session: the RFC 4271 finite state machine for one configured peer.
//!
//! Each session is a task that owns its state. It connects (unless passive),
//! accepts connections the listener hands it, runs the OPEN exchange on each
//! connection, resolves connection collisions (RFC 4271 §6.8: the connection
//! initiated by the speaker with the higher BGP Identifier survives), and once
//! Established relays UPDATEs up as [`SessionEvent`]s and sends what the RIB asks
//! for. Hold, keepalive and connect-retry timers run here. Any problem of the
//! peer — bad bytes, a NOTIFICATION, a hold-timer expiry — ends this session's
//! connection and nothing else; the session then returns to Idle and retries.

use super::codec;
use super::msg::*;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

/// FSM states (RFC 4271 §8.2.2), for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// What a session needs to know about its peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub remote_as: u32,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds (0 = no keepalives).
    pub hold_time: u16,
    pub passive: bool,
    pub families: Vec<Family>,
    /// Wait between connection attempts.
    pub connect_retry: Duration,
    /// TCP port of the peer (179 except in tests).
    pub port: u16,
    /// TCP MD5 signature key (RFC 2385).
    pub password: Option<String>,
    /// IP TTL of the session's packets: 1 for single-hop eBGP, the hop count
    /// for eBGP multihop, 255 for iBGP.
    pub ttl: u8,
    /// Graceful restart (RFC 4724) as the restarting speaker: the forwarding
    /// state survives a restart of this process (a P4Runtime target keeps
    /// its entries), so the families are announced with their "forwarding
    /// state preserved" bit and the peer keeps our routes while we restart.
    /// Without it the capability lists no family: the peer drops our routes
    /// at once when the session goes, as our forwarding went with it.
    pub forwarding_survives: bool,
    /// Until when an OPEN says we restarted ("Restart State" bit).
    pub restarted_until: Option<std::time::Instant>,
}

/// The restart time announced in the graceful-restart capability, seconds.
pub const RESTART_TIME: u16 = 120;

/// What a session reports to the RIB.
#[derive(Debug)]
pub enum SessionEvent {
    Established {
        peer: IpAddr,
        peer_open: Open,
        caps: SessionCaps,
        families: Vec<Family>,
        local_address: IpAddr,
    },
    Update {
        peer: IpAddr,
        update: Update,
    },
    RouteRefresh {
        peer: IpAddr,
        family: Family,
    },
    Down {
        peer: IpAddr,
        reason: String,
        /// The connection ended without a NOTIFICATION (the peer's process or
        /// link died): a peer that advertised graceful restart keeps its routes
        /// while it restarts (RFC 4724).
        graceful: bool,
    },
    State {
        peer: IpAddr,
        state: State,
    },
}

/// What the RIB asks a session to do.
#[derive(Debug)]
pub enum SessionCmd {
    Announce {
        attrs: Arc<PathAttrs>,
        prefixes: Vec<IpNet>,
    },
    Withdraw {
        prefixes: Vec<IpNet>,
    },
    EndOfRib(Family),
    RouteRefresh(Family),
    /// A connection the listener accepted from this peer's address.
    Incoming(TcpStream),
    /// Close with Cease/Administrative Shutdown and stop.
    Stop,
}

/// Why an Established session ended.
#[derive(Debug)]
enum End {
    /// We sent this NOTIFICATION.
    Sent(Notification, String),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The connection failed or closed.
    Closed(String),
    /// Asked to stop.
    Stop,
}

impl End {
    /// Whether the peer's routes are kept as for a restart (RFC 4724): the
    /// connection died, or, with the N bit on both sides (RFC 8538), a
    /// NOTIFICATION other than Hard Reset went either way (hold timer
    /// expiry included).
    fn graceful(&self, graceful_notification: bool) -> bool {
        match self {
            End::Closed(_) => true,
            End::Sent(n, _) | End::Received(n) => graceful_notification && !n.is_hard_reset(),
            End::Stop => false,
        }
    }
}

/// One TCP connection with its framing.
struct Conn {
    /// To the writer task: the session never waits on the socket, so its timers
    /// keep running whatever the peer's TCP window.
    writer: mpsc::UnboundedSender<Out>,
    /// The keepalive interval the writer task keeps (None: no keepalives).
    keepalive: watch::Sender<Option<Duration>>,
    reader: mpsc::Receiver<Result<Message, MessageError>>,
    caps_tx: watch::Sender<SessionCaps>,
    outgoing: bool,
    local: IpAddr,
}

enum Out {
    Bytes(Vec<u8>),
    /// Write what is queued, then close the sending side.
    Close,
}

impl Conn {
    fn new(stream: TcpStream, outgoing: bool, ttl: u8) -> std::io::Result<Self> {
        let _ = stream.set_nodelay(true);
        // IPv4 TTL; IPv6 sockets keep the system's hop limit.
        let _ = stream.set_ttl(u32::from(ttl));
        let local = stream.local_addr()?.ip();
        let (r, w) = stream.into_split();
        let (caps_tx, caps_rx) = watch::channel(SessionCaps::default());
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(read_loop(r, caps_rx, tx));
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ka_tx, ka_rx) = watch::channel(None);
        tokio::spawn(write_loop(w, out_rx, ka_rx));
        Ok(Self {
            writer: out_tx,
            keepalive: ka_tx,
            reader: rx,
            caps_tx,
            outgoing,
            local,
        })
    }

    fn send(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.writer
            .send(Out::Bytes(bytes))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed"))
    }

    fn notify(&mut self, n: &Notification) {
        if let Ok(b) = codec::encode(&Message::Notification(n.clone()), &SessionCaps::default()) {
            let _ = self.send(b);
        }
        let _ = self.writer.send(Out::Close);
    }
}

/// Writes queued messages, and a KEEPALIVE whenever the interval passes.
async fn write_loop(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    mut keepalive: watch::Receiver<Option<Duration>>,
) {
    let ka = codec::encode(&Message::Keepalive, &SessionCaps::default()).unwrap_or_default();
    let mut next: Option<Instant> = None;
    let mut ka_open = true;
    loop {
        let wait = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            // Queued messages first: a NOTIFICATION queued before the session
            // let go of the connection must still be written.
            biased;
            m = rx.recv() => match m {
                Some(Out::Bytes(b)) => {
                    if w.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Some(Out::Close) | None => {
                    let _ = w.shutdown().await;
                    return;
                }
            },
            r = keepalive.changed(), if ka_open => {
                if r.is_err() {
                    // The session is gone: no more keepalives; write what is queued.
                    ka_open = false;
                    next = None;
                    continue;
                }
                next = keepalive.borrow_and_update().map(|d| Instant::now() + d);
            }
            _ = sleep_until(wait), if next.is_some() => {
                if w.write_all(&ka).await.is_err() {
                    return;
                }
                next = keepalive.borrow().map(|d| Instant::now() + d);
            }
        }
    }
}

/// Reads framed messages and decodes them; stops after the first error.
async fn read_loop(
    mut r: OwnedReadHalf,
    caps: watch::Receiver<SessionCaps>,
    tx: mpsc::Sender<Result<Message, MessageError>>,
) {
    let mut header = [0u8; codec::HEADER_LEN];
    let mut body = Vec::with_capacity(codec::MAX_MESSAGE_LEN);
    loop {
        if r.read_exact(&mut header).await.is_err() {
            return;
        }
        let (kind, len) = match codec::parse_header(&header) {
            Ok(x) => x,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        body.resize(len - codec::HEADER_LEN, 0);
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let msg = {
            let c = caps.borrow();
            codec::decode(kind, &body, &c)
        };
        let stop = msg.is_err();
        if tx.send(msg).await.is_err() || stop {
            return;
        }
    }
}

/// The session task.
pub struct Session {
    cfg: PeerConfig,
    events: mpsc::Sender<SessionEvent>,
    cmds: mpsc::UnboundedReceiver<SessionCmd>,
    state: State,
    /// A connection that arrived while Established from a peer that restarted
    /// gracefully; the next `establish` takes it first.
    restarted: Option<TcpStream>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.cfg.address)
            .field("state", &self.state)
            .finish()
    }
}

/// The result of the first half of a handshake: OPEN sent and the peer's OPEN received.
struct Opened {
    conn: Conn,
    peer_open: Open,
}

impl Session {
    pub fn new(
        cfg: PeerConfig,
        events: mpsc::Sender<SessionEvent>,
        cmds: mpsc::UnboundedReceiver<SessionCmd>,
    ) -> Self {
        Self {
            cfg,
            events,
            cmds,
            state: State::Idle,
            restarted: None,
        }
    }

    async fn set_state(&mut self, s: State) {
        if self.state != s {
            tracing::debug!(peer = %self.cfg.address, from = ?self.state, to = ?s, "BGP state");
            self.state = s;
            let _ = self
                .events
                .send(SessionEvent::State {
                    peer: self.cfg.address,
                    state: s,
                })
                .await;
        }
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        // The first attempt at once; after a session ends, wait the
        // connect-retry time first, so a peer that resets us cannot make us flap.
        let mut next_connect = Instant::now();
        loop {
            let Some(conn) = self.establish(next_connect).await else {
                tracing::debug!(peer = %self.cfg.address, "BGP session stopped");
                return;
            };
            let graceful_notification = conn.caps.graceful_notification;
            let end = self.established(conn).await;
            let reason = match &end {
                End::Sent(n, why) => format!("sent NOTIFICATION {}/{}: {why}", n.code, n.subcode),
                End::Received(n) => format!("received NOTIFICATION {}/{}", n.code, n.subcode),
                End::Closed(why) => why.clone(),
                End::Stop => "stopped".into(),
            };
            tracing::warn!(peer = %self.cfg.address, "BGP session down: {reason}");
            let _ = self
                .events
                .send(SessionEvent::Down {
                    peer: self.cfg.address,
                    reason,
                    graceful: end.graceful(graceful_notification),
                })
                .await;
            self.set_state(State::Idle).await;
            if matches!(end, End::Stop) {
                return;
            }
            next_connect = Instant::now() + self.cfg.connect_retry;
            if self.restarted.is_some() {
                next_connect = Instant::now();
            }
            // Connect-retry: wait before trying again (incoming connections are
            // still accepted meanwhile, inside `establish`).
        }
    }

    fn our_open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .cfg
            .families
            .iter()
            .map(|f| Capability::MultiProtocol(*f))
            .collect();
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs(self.cfg.local_as));
        // ADD-PATH: we can receive several paths per prefix (RFC 7911).
        caps.push(Capability::AddPath(
            self.cfg.families.iter().map(|f| (*f, 1)).collect(),
        ));
        // Graceful restart: always as the receiving speaker; as the restarting
        // one only when our forwarding survives us (no families otherwise:
        // RFC 4724 4.1).
        caps.push(Capability::GracefulRestart {
            // RFC 8538: NOTIFICATIONs and hold timer expiry end sessions
            // gracefully too (administrative resets send Hard Reset).
            notification: true,
            restarting: self
                .cfg
                .restarted_until
                .is_some_and(|t| std::time::Instant::now() < t),
            restart_time: RESTART_TIME,
            families: if self.cfg.forwarding_survives {
                self.cfg.families.iter().map(|f| (*f, true)).collect()
            } else {
                Vec::new()
            },
        });
        Open {
            version: 4,
            my_as: u16::try_from(self.cfg.local_as).unwrap_or(AS_TRANS),
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            capabilities: caps,
        }
    }

    /// Connects and accepts until one connection reaches Established; returns
    /// None when told to stop.
    async fn establish(&mut self, first_try: Instant) -> Option<Established> {
        let mut handshakes: JoinSet<Attempt> = JoinSet::new();
        let mut confirming: JoinSet<Result<Opened, String>> = JoinSet::new();
        let mut next_connect = if self.cfg.passive {
            None
        } else {
            Some(first_try)
        };
        // Directions with a handshake under way: (outgoing, incoming).
        let mut pending_out = 0usize;
        let mut pending_in = 0usize;
        if let Some(s) = self.restarted.take() {
            // The restarted peer's connection: no connect-retry wait for it.
            pending_in += 1;
            let open = self.our_open();
            let ttl = self.cfg.ttl;
            handshakes.spawn(async move {
                let r = async {
                    let conn = Conn::new(s, false, ttl).map_err(|e| e.to_string())?;
                    open_exchange(conn, open).await
                };
                Attempt::incoming(r.await)
            });
        }
        self.set_state(if self.cfg.passive {
            State::Active
        } else {
            State::Connect
        })
        .await;
        loop {
            let connect_at =
                next_connect.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = sleep_until(connect_at), if next_connect.is_some() && pending_out == 0 => {
                    next_connect = Some(Instant::now() + self.cfg.connect_retry);
                    let addr = SocketAddr::new(self.cfg.address, self.cfg.port);
                    let open = self.our_open();
                    let password = self.cfg.password.clone();
                    let ttl = self.cfg.ttl;
                    pending_out += 1;
                    handshakes.spawn(async move {
                        let mut no_route = false;
                        let r = async {
                            let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
                                .map_err(|e| format!("socket: {e}"))?;
                            if let Some(pw) = &password {
                                super::md5::set_key(sock.as_raw_fd(), addr.is_ipv6(), addr.ip(), pw.as_bytes())
                                    .map_err(|e| e.to_string())?;
                            }
                            let s = tokio::time::timeout(Duration::from_secs(5), sock.connect(addr))
                                .await
                                .map_err(|_| format!("connect to {addr} timed out"))?
                                .map_err(|e| {
                                    // Refused by our own stack before anything was
                                    // sent (a host unreachable may come from the
                                    // network: not counted).
                                    no_route = matches!(
                                        e.kind(),
                                        std::io::ErrorKind::NetworkUnreachable
                                            | std::io::ErrorKind::AddrNotAvailable
                                    );
                                    format!("connect to {addr}: {e}")
                                })?;
                            let conn = Conn::new(s, true, ttl).map_err(|e| e.to_string())?;
                            open_exchange(conn, open).await
                        };
                        let result = r.await;
                        Attempt { outgoing: true, no_route, result }
                    });
                }
                c = self.cmds.recv() => match c {
                    None | Some(SessionCmd::Stop) => return None,
                    Some(SessionCmd::Incoming(s)) => {
                        pending_in += 1;
                        let open = self.our_open();
                        let ttl = self.cfg.ttl;
                        handshakes.spawn(async move {
                            let r = async {
                                let conn = Conn::new(s, false, ttl).map_err(|e| e.to_string())?;
                                open_exchange(conn, open).await
                            };
                            Attempt::incoming(r.await)
                        });
                    }
                    Some(other) => tracing::trace!(peer = %self.cfg.address, ?other, "command ignored: session not established"),
                },
                Some(r) = handshakes.join_next() => {
                    let Ok(Attempt { outgoing, no_route, result: r }) = r else {
                        // A handshake task panicked or was aborted: nothing to count.
                        pending_out = pending_out.min(handshakes.len());
                        pending_in = pending_in.min(handshakes.len());
                        continue;
                    };
                    if outgoing { pending_out = pending_out.saturating_sub(1) } else { pending_in = pending_in.saturating_sub(1) }
                    match r {
                        Err(e) => {
                            tracing::debug!(peer = %self.cfg.address, "connection attempt failed: {e}");
                            if no_route {
                                // No route to the peer yet (the interfaces are
                                // still coming up, typically at start): nothing
                                // went on the wire, so try again soon rather
                                // than after the whole connect-retry time.
                                let soon = Instant::now() + NO_ROUTE_RETRY;
                                next_connect = next_connect.map(|t| t.min(soon));
                            }
                        }
                        Ok(mut o) => {
                            if let Err(n) = self.check_open(&o.peer_open) {
                                tracing::warn!(peer = %self.cfg.address, "OPEN refused: NOTIFICATION {}/{}", n.code, n.subcode);
                                o.conn.notify(&n);
                                continue;
                            }
                            // Collision: the connection initiated by the higher
                            // BGP Identifier wins (RFC 4271 §6.8).
                            let we_win = u32::from(self.cfg.router_id) > u32::from(o.peer_open.router_id);
                            let loser = o.conn.outgoing != we_win;
                            let other_pending = if o.conn.outgoing { pending_in } else { pending_out } + confirming.len();
                            if loser && other_pending > 0 {
                                tracing::info!(peer = %self.cfg.address, "connection collision: closing the {} connection", if o.conn.outgoing { "outgoing" } else { "incoming" });
                                o.conn.notify(&Notification { code: err::CEASE, subcode: err::CONNECTION_COLLISION, data: vec![] });
                                continue;
                            }
                            self.set_state(State::OpenConfirm).await;
                            let caps = negotiate(&self.cfg, &o.peer_open);
                            let _ = o.conn.caps_tx.send(caps);
                            confirming.spawn(keepalive_exchange(o));
                        }
                    }
                    if handshakes.is_empty() && confirming.is_empty() {
                        self.set_state(if self.cfg.passive { State::Active } else { State::Connect }).await;
                    } else {
                        self.set_state(State::OpenSent).await;
                    }
                }
                Some(r) = confirming.join_next() => {
                    match r.unwrap_or_else(|e| Err(format!("handshake task failed: {e}"))) {
                        Err(e) => tracing::debug!(peer = %self.cfg.address, "OPEN confirm failed: {e}"),
                        Ok(o) => {
                            // The first connection to be confirmed is the session;
                            // every other one is a collision that lost.
                            handshakes.abort_all();
                            confirming.abort_all();
                            let caps = negotiate(&self.cfg, &o.peer_open);
                            return Some(Established { conn: o.conn, peer_open: o.peer_open, caps });
                        }
                    }
                }
            }
        }
    }

    /// OPEN checks beyond the codec's: the peer's AS and our families.
    fn check_open(&self, o: &Open) -> Result<(), Notification> {
        if o.asn() != self.cfg.remote_as {
            let mut data = o.my_as.to_be_bytes().to_vec();
            if o.asn() > u32::from(u16::MAX) {
                data = o.asn().to_be_bytes().to_vec();
            }
            return Err(Notification {
                code: err::OPEN,
                subcode: err::BAD_PEER_AS,
                data,
            });
        }
        if o.router_id == self.cfg.router_id && self.cfg.remote_as == self.cfg.local_as {
            return Err(Notification {
                code: err::OPEN,
                subcode: err::BAD_BGP_IDENTIFIER,
                data: o.router_id.octets().to_vec(),
            });
        }
        Ok(())
    }

    async fn established(&mut self, est: Established) -> End {
        let Established {
            mut conn,
            peer_open,
            caps,
        } = est;
        let peer = self.cfg.address;
        let hold = Duration::from_secs(u64::from(self.cfg.hold_time.min(peer_open.hold_time)));
        let keepalive = hold / 3;
        let families: Vec<Family> = {
            let theirs = peer_open.families();
            let mut f: Vec<Family> = self
                .cfg
                .families
                .iter()
                .copied()
                .filter(|f| theirs.contains(f))
                .collect();
            // A peer without the multiprotocol capability speaks IPv4 unicast only.
            if theirs.is_empty() && self.cfg.families.contains(&IPV4_UNICAST) {
                f.push(IPV4_UNICAST);
            }
            f
        };
        tracing::info!(%peer, remote_as = peer_open.asn(), router_id = %peer_open.router_id, hold_s = hold.as_secs(), ?families, "BGP session established");
        self.set_state(State::Established).await;
        let _ = self
            .events
            .send(SessionEvent::Established {
                peer,
                peer_open: peer_open.clone(),
                caps: caps.clone(),
                families: families.clone(),
                local_address: conn.local,
            })
            .await;
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let mut hold_deadline = if hold.is_zero() {
            far
        } else {
            Instant::now() + hold
        };
        // Keepalives are the writer task's job: they go out even while this
        // task waits for the speaker to take an UPDATE.
        let _ = conn.keepalive.send((!hold.is_zero()).then_some(keepalive));
        let refresh_ok = peer_open.has(|c| matches!(c, Capability::RouteRefresh));
        loop {
            tokio::select! {
                // Messages first: one already received resets the hold timer
                // before the timer is looked at.
                biased;
                m = conn.reader.recv() => {
                    let Some(m) = m else { return End::Closed("connection closed by the peer".into()) };
                    if !hold.is_zero() { hold_deadline = Instant::now() + hold; }
                    match m {
                        Err(e) => {
                            tracing::warn!(%peer, "malformed message from peer: {}", e.reason);
                            conn.notify(&e.notification);
                            return End::Sent(e.notification, e.reason);
                        }
                        Ok(Message::Keepalive) => {}
                        Ok(Message::Update(u)) => {
                            for i in &u.issues {
                                tracing::warn!(%peer, attribute = i.code, action = ?i.action, "malformed attribute in UPDATE: {}", i.reason);
                            }
                            if self.events.send(SessionEvent::Update { peer, update: u }).await.is_err() {
                                return End::Stop;
                            }
                        }
                        Ok(Message::RouteRefresh(r)) => {
                            let _ = self.events.send(SessionEvent::RouteRefresh { peer, family: r.family }).await;
                        }
                        Ok(Message::Notification(n)) => {
                            tracing::warn!(%peer, code = n.code, subcode = n.subcode, "NOTIFICATION from peer");
                            return End::Received(n);
                        }
                        Ok(Message::Open(_)) => {
                            let n = Notification { code: err::FSM, subcode: 0, data: vec![] };
                            conn.notify(&n);
                            return End::Sent(n, "OPEN received in Established".into());
                        }
                    }
                }
                c = self.cmds.recv() => {
                    let bytes: Result<Vec<Vec<u8>>, String> = match c {
                        None | Some(SessionCmd::Stop) => {
                            // Stopped on purpose: the peer is to drop our routes,
                            // so with the N bit the Cease goes inside a Hard Reset.
                            let mut n = Notification { code: err::CEASE, subcode: err::ADMIN_SHUTDOWN, data: vec![] };
                            if caps.graceful_notification {
                                n = n.hard_reset();
                            }
                            conn.notify(&n);
                            return End::Stop;
                        }
                        Some(SessionCmd::Incoming(mut s)) => {
                            if peer_open.has(|c| matches!(c, Capability::GracefulRestart { families, .. } if !families.is_empty())) {
                                // RFC 4724: a new connection from a peer that can
                                // restart gracefully means it restarted. End this
                                // session as if the connection had died (its routes
                                // are kept) and take the new one.
                                tracing::info!(%peer, "new connection from a gracefully restarting peer: taking it");
                                let _ = conn.writer.send(Out::Close);
                                self.restarted = Some(s);
                                return End::Closed("the peer restarted and connected again".into());
                            }
                            // A collision with an Established session: the new connection loses.
                            if let Ok(b) = codec::encode(&Message::Notification(Notification { code: err::CEASE, subcode: err::CONNECTION_COLLISION, data: vec![] }), &caps) {
                                let _ = s.write_all(&b).await;
                            }
                            continue;
                        }
                        Some(SessionCmd::Announce { attrs, prefixes }) => codec::encode_updates(&attrs, &prefixes, &caps).map_err(|e| e.to_string()),
                        Some(SessionCmd::Withdraw { prefixes }) => codec::encode_withdrawals(&prefixes, &caps).map_err(|e| e.to_string()),
                        Some(SessionCmd::EndOfRib(f)) => Ok(vec![codec::end_of_rib(f)]),
                        Some(SessionCmd::RouteRefresh(f)) if refresh_ok => codec::encode(&Message::RouteRefresh(RouteRefresh { family: f }), &caps).map(|b| vec![b]).map_err(|e| e.to_string()),
                        Some(SessionCmd::RouteRefresh(_)) => {
                            tracing::warn!(%peer, "peer did not advertise route refresh; not sending one");
                            continue;
                        }
                    };
                    match bytes {
                        Ok(msgs) => {
                            for b in msgs {
                                if let Err(e) = conn.send(b) { return End::Closed(e.to_string()); }
                            }
                        }
                        Err(e) => tracing::error!(%peer, "cannot encode an UPDATE for the peer: {e}"),
                    }
                }
                _ = sleep_until(hold_deadline) => {
                    let n = Notification { code: err::HOLD_TIMER_EXPIRED, subcode: 0, data: vec![] };
                    conn.notify(&n);
                    return End::Sent(n, format!("hold timer expired ({} s without a message)", hold.as_secs()));
                }
            }
        }
    }
}

/// How long to wait before connecting again when the last attempt found no
/// route to the peer.
const NO_ROUTE_RETRY: Duration = Duration::from_secs(1);

/// One connection's handshake, as it ended.
struct Attempt {
    /// We connected (false: the peer did).
    outgoing: bool,
    /// Our own stack had no route to the peer: nothing was sent.
    no_route: bool,
    result: Result<Opened, String>,
}

impl Attempt {
    fn incoming(result: Result<Opened, String>) -> Self {
        Self {
            outgoing: false,
            no_route: false,
            result,
        }
    }
}

struct Established {
    conn: Conn,
    peer_open: Open,
    caps: SessionCaps,
}

/// What both sides support, from our config and the peer's OPEN.
fn negotiate(cfg: &PeerConfig, peer: &Open) -> SessionCaps {
    SessionCaps {
        four_octet_as: peer.has(|c| matches!(c, Capability::FourOctetAs(_))),
        // Path ids come in the families we can receive and the peer sends.
        add_path_rx: peer
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::AddPath(v) => Some(v),
                _ => None,
            })
            .flatten()
            .filter(|(f, dir)| dir & 2 != 0 && cfg.families.contains(f))
            .map(|(f, _)| *f)
            .collect(),
        ebgp: cfg.remote_as != cfg.local_as,
        // We always set the N bit.
        graceful_notification: peer.has(|c| {
            matches!(
                c,
                Capability::GracefulRestart {
                    notification: true,
                    ..
                }
            )
        }),
    }
}

/// Sends our OPEN and waits for the peer's (OpenSent).
async fn open_exchange(mut conn: Conn, ours: Open) -> Result<Opened, String> {
    let b =
        codec::encode(&Message::Open(ours), &SessionCaps::default()).map_err(|e| e.to_string())?;
    conn.send(b).map_err(|e| e.to_string())?;
    // RFC 4271 suggests a large hold timer (4 minutes) while waiting for the OPEN.
    let m = tokio::time::timeout(Duration::from_secs(240), conn.reader.recv())
        .await
        .map_err(|_| "no OPEN within 240 s".to_string())?
        .ok_or_else(|| "connection closed before OPEN".to_string())?;
    match m {
        Ok(Message::Open(o)) => Ok(Opened { conn, peer_open: o }),
        Ok(Message::Notification(n)) => Err(format!(
            "peer sent NOTIFICATION {}/{} instead of OPEN",
            n.code, n.subcode
        )),
        Ok(_) => {
            let n = Notification {
                code: err::FSM,
                subcode: 1,
                data: vec![],
            };
            conn.notify(&n);
            Err("peer sent something other than OPEN".into())
        }
        Err(e) => {
            conn.notify(&e.notification);
            Err(format!("malformed OPEN: {}", e.reason))
        }
    }
}

/// Sends KEEPALIVE and waits for the peer's (OpenConfirm).
async fn keepalive_exchange(mut o: Opened) -> Result<Opened, String> {
    let b =
        codec::encode(&Message::Keepalive, &SessionCaps::default()).map_err(|e| e.to_string())?;
    o.conn.send(b).map_err(|e| e.to_string())?;
    let hold = u64::from(o.peer_open.hold_time.max(3));
    let m = tokio::time::timeout(Duration::from_secs(hold), o.conn.reader.recv())
        .await
        .map_err(|_| "no KEEPALIVE within the hold time".to_string())?
        .ok_or_else(|| "connection closed in OpenConfirm".to_string())?;
    match m {
        Ok(Message::Keepalive) => Ok(o),
        Ok(Message::Notification(n)) => {
            Err(format!("peer sent NOTIFICATION {}/{}", n.code, n.subcode))
        }
        Ok(_) => {
            o.conn.notify(&Notification {
                code: err::FSM,
                subcode: 2,
                data: vec![],
            });
            Err("peer sent something other than KEEPALIVE in OpenConfirm".into())
        }
        Err(e) => {
            o.conn.notify(&e.notification);
            Err(format!("malformed message in OpenConfirm: {}", e.reason))
        }
    }
}
