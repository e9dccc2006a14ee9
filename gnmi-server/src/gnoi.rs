//! gNOI `system.System`: Time, Ping, Traceroute, Reboot, RebootStatus and
//! CancelReboot.
//!
//! - **Time**: the target's clock, in nanoseconds since the Unix epoch.
//! - **Ping**: ICMP echo sent by the target itself, with the system's `ping`
//!   (iputils) run in the daemon's network namespace, so the probes leave
//!   the way the router's own traffic does (for nosd, through its host
//!   interface into the dataplane). One `PingResponse` per reply as it
//!   arrives, then the summary. `count` 0 means 5 and -1 means "until the
//!   RPC is cancelled"; `interval` (ns, default 1 s; -1 = every 2 ms),
//!   `wait` (ns per reply), `size`, `source` (address or interface),
//!   `do_not_fragment`, `do_not_resolve` and `l3protocol` are honoured.
//!   Only the default network instance is served.
//! - **Reboot**: COLD and WARM restart the NOS, HALT and POWERDOWN stop it
//!   (what they mean is up to the [`RebootHook`] the daemon gives; nosd
//!   restarts its process, see its documentation). `delay` is honoured, and
//!   an immediate reboot is carried out [`IMMEDIATE_GRACE`] after the
//!   response is sent, so that the client receives it. While one is pending
//!   another is refused with FAILED_PRECONDITION; CancelReboot cancels it.
//!   Rebooting subcomponents is not supported.
//!
//! SetPackage, SwitchControlProcessor and KillProcess answer UNIMPLEMENTED.

use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::gnoi::system::{
    reboot_status,
    system_server::{System, SystemServer},
    CancelRebootRequest, CancelRebootResponse, KillProcessRequest, KillProcessResponse,
    PingRequest, PingResponse, RebootMethod, RebootRequest, RebootResponse, RebootStatus,
    RebootStatusRequest, RebootStatusResponse, SetPackageRequest, SetPackageResponse,
    SwitchControlProcessorRequest, SwitchControlProcessorResponse, TimeRequest, TimeResponse,
    TracerouteRequest, TracerouteResponse,
};
use crate::proto::gnoi::types::L3Protocol;
use crate::security::{Authenticator, Caller};

/// How long after answering an immediate Reboot the reboot happens.
pub const IMMEDIATE_GRACE: Duration = Duration::from_millis(500);

/// The packets a Ping sends when its count is 0.
pub const DEFAULT_PING_COUNT: i32 = 5;

/// The largest ICMP payload a Ping may ask for.
pub const MAX_PING_SIZE: i32 = 65_507;

/// What a reboot does to the NOS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootKind {
    /// COLD or WARM: stop and start again.
    Restart,
    /// HALT or POWERDOWN: stop.
    Halt,
}

/// A reboot whose time has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebootOrder {
    pub kind: RebootKind,
    /// The method the client asked for.
    pub method: RebootMethod,
    pub message: String,
}

/// Carries out a reboot (called once its delay has passed).
pub type RebootHook = Arc<dyn Fn(RebootOrder) + Send + Sync>;

/// A reboot waiting for its time.
struct Pending {
    method: RebootMethod,
    message: String,
    /// When it happens.
    at: SystemTime,
    /// Dropping it cancels the reboot.
    _cancel: oneshot::Sender<()>,
}

#[derive(Default)]
struct RebootState {
    pending: Option<Pending>,
    /// Reboots carried out through this service since the target started.
    count: u32,
    last: Option<(RebootMethod, String)>,
}

/// The gNOI System service.
#[derive(Clone)]
pub struct SystemService {
    auth: Option<Arc<Authenticator>>,
    hook: RebootHook,
    state: Arc<Mutex<RebootState>>,
    ping: String,
}

impl fmt::Debug for SystemService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemService")
            .field("ping", &self.ping)
            .finish_non_exhaustive()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl SystemService {
    /// A service whose reboots call `hook`.
    pub fn new(hook: RebootHook) -> Self {
        Self {
            auth: None,
            hook,
            state: Arc::new(Mutex::new(RebootState::default())),
            ping: "ping".into(),
        }
    }

    /// Checks every RPC's credentials with `auth`.
    pub fn with_authenticator(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// How many reboots this target went through before this process
    /// started (reported by RebootStatus as `count`).
    pub fn with_reboot_count(self, count: u32) -> Self {
        self.lock().count = count;
        self
    }

    /// Wraps the service for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> SystemServer<Self> {
        SystemServer::new(self)
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        match &self.auth {
            Some(a) => a.check(request).await,
            None => Ok(Caller::Anonymous),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RebootState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedule(&self, req: RebootRequest, caller: &Caller) -> Result<(), Status> {
        let method = RebootMethod::try_from(req.method).map_err(|_| {
            Status::invalid_argument(format!("reboot method {} is unknown", req.method))
        })?;
        let kind = match method {
            RebootMethod::Cold | RebootMethod::Warm => RebootKind::Restart,
            RebootMethod::Halt | RebootMethod::Powerdown => RebootKind::Halt,
            RebootMethod::Unknown => {
                return Err(Status::invalid_argument(
                    "the reboot method is UNKNOWN: ask for COLD, WARM, HALT or POWERDOWN",
                ))
            }
            RebootMethod::Nsf | RebootMethod::Powerup => {
                return Err(Status::unimplemented(format!(
                    "reboot method {} is not supported: use COLD, WARM, HALT or POWERDOWN",
                    method.as_str_name()
                )))
            }
        };
        if !req.subcomponents.is_empty() {
            return Err(Status::unimplemented(
                "rebooting subcomponents is not supported: this target reboots as a whole",
            ));
        }
        let delay = Duration::from_nanos(req.delay);
        let wait = if delay.is_zero() {
            IMMEDIATE_GRACE
        } else {
            delay
        };
        let mut state = self.lock();
        if let Some(p) = &state.pending {
            return Err(Status::failed_precondition(format!(
                "a {} reboot is already pending ({} ns from now); cancel it first",
                p.method.as_str_name(),
                nanos(p.at).saturating_sub(nanos(SystemTime::now()))
            )));
        }
        let at = SystemTime::now() + wait;
        let (cancel, cancelled) = oneshot::channel::<()>();
        let message = if req.message.is_empty() {
            format!("gNOI Reboot ({})", method.as_str_name())
        } else {
            req.message.clone()
        };
        state.pending = Some(Pending {
            method,
            message: message.clone(),
            at,
            _cancel: cancel,
        });
        drop(state);
        tracing::warn!(
            method = method.as_str_name(),
            delay_ns = req.delay,
            user = caller.name().unwrap_or("-"),
            message = %message,
            "gNOI reboot scheduled"
        );
        let state = self.state.clone();
        let hook = self.hook.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancelled => {}
                () = tokio::time::sleep(wait) => {
                    {
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        s.pending = None;
                        s.count = s.count.saturating_add(1);
                        s.last = Some((method, message.clone()));
                    }
                    tracing::warn!(method = method.as_str_name(), message = %message, "gNOI reboot now");
                    hook(RebootOrder { kind, method, message });
                }
            }
        });
        Ok(())
    }
}

#[tonic::async_trait]
impl System for SystemService {
    type PingStream = BoxStream<PingResponse>;

    async fn ping(
        &self,
        request: Request<PingRequest>,
    ) -> Result<Response<Self::PingStream>, Status> {
        self.authenticate(&request).await?;
        let args = ping_args(&request.into_inner())?;
        let rx = run_ping(&self.ping, args).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type TracerouteStream = BoxStream<TracerouteResponse>;

    async fn traceroute(
        &self,
        request: Request<TracerouteRequest>,
    ) -> Result<Response<Self::TracerouteStream>, Status> {
        self.authenticate(&request).await?;
        Err(Status::unimplemented("Traceroute is not supported yet"))
    }

    async fn time(&self, request: Request<TimeRequest>) -> Result<Response<TimeResponse>, Status> {
        self.authenticate(&request).await?;
        Ok(Response::new(TimeResponse {
            time: nanos(SystemTime::now()),
        }))
    }

    async fn set_package(
        &self,
        request: Request<Streaming<SetPackageRequest>>,
    ) -> Result<Response<SetPackageResponse>, Status> {
        self.authenticate(&request).await?;
        Err(Status::unimplemented(
            "SetPackage is not supported: install software with the ONIE installer",
        ))
    }

    async fn switch_control_processor(
        &self,
        request: Request<SwitchControlProcessorRequest>,
    ) -> Result<Response<SwitchControlProcessorResponse>, Status> {
        self.authenticate(&request).await?;
        Err(Status::unimplemented(
            "SwitchControlProcessor is not supported: this target has one control processor",
        ))
    }

    async fn reboot(
        &self,
        request: Request<RebootRequest>,
    ) -> Result<Response<RebootResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        self.schedule(request.into_inner(), &caller)?;
        Ok(Response::new(RebootResponse {}))
    }

    async fn reboot_status(
        &self,
        request: Request<RebootStatusRequest>,
    ) -> Result<Response<RebootStatusResponse>, Status> {
        self.authenticate(&request).await?;
        if !request.get_ref().subcomponents.is_empty() {
            return Err(Status::unimplemented(
                "subcomponents are not supported: this target reboots as a whole",
            ));
        }
        let state = self.lock();
        let now = SystemTime::now();
        let resp = match &state.pending {
            Some(p) => RebootStatusResponse {
                active: true,
                wait: nanos(p.at).saturating_sub(nanos(now)),
                when: nanos(p.at),
                reason: p.message.clone(),
                count: state.count,
                method: p.method as i32,
                status: None,
            },
            None => RebootStatusResponse {
                active: false,
                count: state.count,
                method: state.last.as_ref().map_or(0, |(m, _)| *m as i32),
                reason: state
                    .last
                    .as_ref()
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default(),
                status: (state.count > 0).then(|| RebootStatus {
                    status: reboot_status::Status::Success as i32,
                    message: String::new(),
                }),
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn cancel_reboot(
        &self,
        request: Request<CancelRebootRequest>,
    ) -> Result<Response<CancelRebootResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        let req = request.into_inner();
        if !req.subcomponents.is_empty() {
            return Err(Status::unimplemented(
                "subcomponents are not supported: this target reboots as a whole",
            ));
        }
        match self.lock().pending.take() {
            Some(p) => {
                tracing::warn!(
                    method = p.method.as_str_name(),
                    user = caller.name().unwrap_or("-"),
                    message = %req.message,
                    "gNOI reboot cancelled"
                );
                Ok(Response::new(CancelRebootResponse {}))
            }
            None => Err(Status::failed_precondition("no reboot is pending")),
        }
    }

    async fn kill_process(
        &self,
        request: Request<KillProcessRequest>,
    ) -> Result<Response<KillProcessResponse>, Status> {
        self.authenticate(&request).await?;
        Err(Status::unimplemented("KillProcess is not supported"))
    }
}

// ---------------------------------------------------------------- Ping

/// Whether `s` may be given to ping/traceroute as a host or interface: a
/// host name, an address (with an optional `%zone`) or an interface name,
/// never something the tool would take as an option.
pub(crate) fn host_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'_' | b'%'))
}

/// Whether `name` is the default network instance (or none).
pub(crate) fn default_instance(name: &str) -> bool {
    name.is_empty() || name.eq_ignore_ascii_case("default")
}

/// Seconds with millisecond precision, as ping takes them.
fn seconds(ns: i64) -> String {
    let ms = (ns + 999_999) / 1_000_000;
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The ping arguments for a request, or why it is refused.
pub(crate) fn ping_args(req: &PingRequest) -> Result<Vec<String>, Status> {
    let bad = |s: String| Err(Status::invalid_argument(s));
    if req.destination.is_empty() {
        return bad("the destination is empty".into());
    }
    if !host_ok(&req.destination) {
        return bad(format!(
            "destination {:?} is not a host name or address",
            req.destination
        ));
    }
    if !default_instance(&req.network_instance) {
        return Err(Status::unimplemented(format!(
            "network instance {:?}: pings are sent from the default network instance only",
            req.network_instance
        )));
    }
    let mut args: Vec<String> = Vec::new();
    match L3Protocol::try_from(req.l3protocol) {
        Ok(L3Protocol::Unspecified) => {}
        Ok(L3Protocol::Ipv4) => args.push("-4".into()),
        Ok(L3Protocol::Ipv6) => args.push("-6".into()),
        Err(_) => return bad(format!("l3protocol {} is unknown", req.l3protocol)),
    }
    match req.count {
        -1 => {}
        0 => args.extend(["-c".into(), DEFAULT_PING_COUNT.to_string()]),
        n if n > 0 => args.extend(["-c".into(), n.to_string()]),
        n => {
            return bad(format!(
                "count {n}: give a positive count, 0 (5) or -1 (until cancelled)"
            ))
        }
    }
    match req.interval {
        0 => {}
        -1 => args.extend(["-i".into(), "0.002".into()]),
        n if n >= 1_000_000 => args.extend(["-i".into(), seconds(n)]),
        n => {
            return bad(format!(
                "interval {n} ns: give at least 1 ms, 0 (1 s) or -1 (flood)"
            ))
        }
    }
    match req.wait {
        0 => {}
        n if n >= 1_000_000 => args.extend(["-W".into(), seconds(n)]),
        n => {
            return bad(format!(
                "wait {n} ns: give at least 1 ms, or 0 for the default"
            ))
        }
    }
    match req.size {
        0 => {}
        n if (1..=MAX_PING_SIZE).contains(&n) => args.extend(["-s".into(), n.to_string()]),
        n => return bad(format!("size {n}: give 1 to {MAX_PING_SIZE} bytes")),
    }
    if !req.source.is_empty() {
        if !host_ok(&req.source) {
            return bad(format!(
                "source {:?} is not an address or interface",
                req.source
            ));
        }
        args.extend(["-I".into(), req.source.clone()]);
    }
    if req.do_not_fragment {
        args.extend(["-M".into(), "do".into()]);
    }
    if req.do_not_resolve {
        args.push("-n".into());
    }
    args.push("--".into());
    args.push(req.destination.clone());
    Ok(args)
}

/// One line of ping's output that matters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PingLine {
    Reply {
        source: String,
        bytes: i32,
        sequence: i32,
        ttl: i32,
        time_ns: i64,
    },
    /// `N packets transmitted, M received, ..., time Tms`
    Totals {
        sent: i32,
        received: i32,
        time_ns: i64,
    },
    /// `rtt min/avg/max/mdev = a/b/c/d ms`
    Rtt {
        min: i64,
        avg: i64,
        max: i64,
        mdev: i64,
    },
}

/// Milliseconds written as a decimal (`0.045`) in nanoseconds.
fn ms_to_ns(s: &str) -> Option<i64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let mut frac_ns: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_ns += i64::from(b - b'0') * 10i64.pow(5 - i as u32);
    }
    int.checked_mul(1_000_000)?.checked_add(frac_ns)
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(rest.split([' ', ',']).next().unwrap_or(rest))
}

/// Parses one line of iputils ping output; `None` for the lines that carry
/// nothing a PingResponse reports (the header, errors, blank lines).
pub(crate) fn parse_ping_line(line: &str) -> Option<PingLine> {
    let line = line.trim();
    if let Some((bytes, rest)) = line.split_once(" bytes from ") {
        let bytes: i32 = bytes.trim().parse().ok()?;
        let (from, rest) = rest.split_once(": icmp_seq=")?;
        // `name (address)` when resolving, `address` otherwise.
        let source = match from.split_once(" (") {
            Some((name, _)) => name.to_owned(),
            None => from.to_owned(),
        };
        let sequence: i32 = rest.split(' ').next()?.parse().ok()?;
        let ttl: i32 = field(rest, "ttl=")?.parse().ok()?;
        let time_ns = ms_to_ns(field(rest, "time=")?)?;
        return Some(PingLine::Reply {
            source,
            bytes,
            sequence,
            ttl,
            time_ns,
        });
    }
    if let Some((sent, rest)) = line.split_once(" packets transmitted, ") {
        let sent: i32 = sent.trim().parse().ok()?;
        let received: i32 = rest.split(' ').next()?.parse().ok()?;
        let time_ns = match field(rest, "time ") {
            Some(t) => ms_to_ns(t.trim_end_matches("ms"))?,
            None => 0,
        };
        return Some(PingLine::Totals {
            sent,
            received,
            time_ns,
        });
    }
    if let Some(rest) = line.strip_prefix("rtt min/avg/max/mdev = ") {
        let values = rest.strip_suffix(" ms")?;
        let v: Vec<i64> = values.split('/').map(ms_to_ns).collect::<Option<_>>()?;
        let [min, avg, max, mdev] = v.as_slice() else {
            return None;
        };
        return Some(PingLine::Rtt {
            min: *min,
            avg: *avg,
            max: *max,
            mdev: *mdev,
        });
    }
    None
}

/// How a failed ping before any reply maps to a status.
fn ping_failure(stderr: &str) -> Status {
    let text = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("ping: "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let lower = text.to_ascii_lowercase();
    if lower.contains("name or service not known")
        || lower.contains("failure in name resolution")
        || lower.contains("no address associated")
        || lower.contains("address family for hostname not supported")
    {
        Status::invalid_argument(format!("cannot resolve the destination: {text}"))
    } else if lower.contains("bad address")
        || lower.contains("invalid argument")
        || lower.contains("cannot assign requested address")
        || lower.contains("unknown iface")
        || lower.contains("invalid source")
    {
        Status::invalid_argument(text)
    } else if lower.contains("network is unreachable") {
        Status::unavailable(format!("the destination is unreachable: {text}"))
    } else {
        Status::internal(format!("ping failed: {text}"))
    }
}

/// Starts ping and streams its replies and summary.
async fn run_ping(
    program: &str,
    args: Vec<String>,
) -> Result<mpsc::Receiver<Result<PingResponse, Status>>, Status> {
    let mut child = tokio::process::Command::new(program)
        .args(&args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Status::internal(format!("cannot run {program}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Status::internal("ping has no output"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| Status::internal("ping has no error output"))?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut summary = PingResponse::default();
        let mut totals = false;
        loop {
            let line = tokio::select! {
                l = lines.next_line() => l,
                () = tx.closed() => {
                    // The client left: stop ping and reap it, so no process
                    // (not even a zombie) outlives the request.
                    let _ = child.kill().await;
                    return;
                }
            };
            let line = match line {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("reading ping: {e}"))))
                        .await;
                    return;
                }
            };
            match parse_ping_line(&line) {
                Some(PingLine::Reply {
                    source,
                    bytes,
                    sequence,
                    ttl,
                    time_ns,
                }) => {
                    let r = PingResponse {
                        source,
                        time: time_ns,
                        bytes,
                        sequence,
                        ttl,
                        ..Default::default()
                    };
                    if tx.send(Ok(r)).await.is_err() {
                        return;
                    }
                }
                Some(PingLine::Totals {
                    sent,
                    received,
                    time_ns,
                }) => {
                    totals = true;
                    summary.sent = sent;
                    summary.received = received;
                    summary.time = time_ns;
                }
                Some(PingLine::Rtt {
                    min,
                    avg,
                    max,
                    mdev,
                }) => {
                    summary.min_time = min;
                    summary.avg_time = avg;
                    summary.max_time = max;
                    summary.std_dev = mdev;
                }
                None => {}
            }
        }
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        let status = child.wait().await;
        if totals {
            let _ = tx.send(Ok(summary)).await;
        } else {
            let why = match status {
                Ok(s) if err.trim().is_empty() => format!("ping exited with {s}"),
                Ok(_) => err,
                Err(e) => format!("ping failed: {e}"),
            };
            let _ = tx.send(Err(ping_failure(&why))).await;
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_lines() {
        assert_eq!(
            parse_ping_line("64 bytes from 192.0.2.2: icmp_seq=3 ttl=63 time=0.045 ms"),
            Some(PingLine::Reply {
                source: "192.0.2.2".into(),
                bytes: 64,
                sequence: 3,
                ttl: 63,
                time_ns: 45_000
            })
        );
        assert_eq!(
            parse_ping_line("64 bytes from localhost (::1): icmp_seq=1 ttl=64 time=12.5 ms"),
            Some(PingLine::Reply {
                source: "localhost".into(),
                bytes: 64,
                sequence: 1,
                ttl: 64,
                time_ns: 12_500_000
            })
        );
        assert_eq!(
            parse_ping_line("64 bytes from 2001:db8::1: icmp_seq=2 ttl=64 time=1 ms"),
            Some(PingLine::Reply {
                source: "2001:db8::1".into(),
                bytes: 64,
                sequence: 2,
                ttl: 64,
                time_ns: 1_000_000
            })
        );
        assert_eq!(
            parse_ping_line("5 packets transmitted, 4 received, 20% packet loss, time 4005ms"),
            Some(PingLine::Totals {
                sent: 5,
                received: 4,
                time_ns: 4_005_000_000
            })
        );
        assert_eq!(
            parse_ping_line(
                "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2030ms"
            ),
            Some(PingLine::Totals {
                sent: 3,
                received: 0,
                time_ns: 2_030_000_000
            })
        );
        assert_eq!(
            parse_ping_line("rtt min/avg/max/mdev = 0.034/0.045/0.056/0.009 ms"),
            Some(PingLine::Rtt {
                min: 34_000,
                avg: 45_000,
                max: 56_000,
                mdev: 9_000
            })
        );
        for junk in [
            "PING 192.0.2.2 (192.0.2.2) 56(84) bytes of data.",
            "From 192.0.2.1 icmp_seq=1 Destination Host Unreachable",
            "",
            "64 bytes from x: icmp_seq=a ttl=1 time=1 ms",
            "64 bytes from x: icmp_seq=1 ttl=1 time=-1 ms",
            "rtt min/avg/max/mdev = 1/2/3 ms",
        ] {
            assert_eq!(parse_ping_line(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn ping_arguments() {
        let req = |f: &dyn Fn(&mut PingRequest)| {
            let mut r = PingRequest {
                destination: "192.0.2.1".into(),
                ..Default::default()
            };
            f(&mut r);
            ping_args(&r)
        };
        assert_eq!(req(&|_| {}).expect("ok"), ["-c", "5", "--", "192.0.2.1"]);
        assert_eq!(
            req(&|r| {
                r.count = 2;
                r.interval = 200_000_000;
                r.wait = 1_500_000_000;
                r.size = 100;
                r.source = "192.0.2.9".into();
                r.do_not_fragment = true;
                r.do_not_resolve = true;
                r.l3protocol = L3Protocol::Ipv4 as i32;
            })
            .expect("ok"),
            [
                "-4",
                "-c",
                "2",
                "-i",
                "0.200",
                "-W",
                "1.500",
                "-s",
                "100",
                "-I",
                "192.0.2.9",
                "-M",
                "do",
                "-n",
                "--",
                "192.0.2.1"
            ]
        );
        assert_eq!(req(&|r| r.count = -1).expect("ok"), ["--", "192.0.2.1"]);
        let code = |f: &dyn Fn(&mut PingRequest)| req(f).expect_err("refused").code();
        assert_eq!(
            code(&|r| r.destination = "-f".into()),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(&|r| r.destination = "a b".into()),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(&|r| r.destination.clear()),
            tonic::Code::InvalidArgument
        );
        assert_eq!(code(&|r| r.count = -2), tonic::Code::InvalidArgument);
        assert_eq!(code(&|r| r.interval = 5), tonic::Code::InvalidArgument);
        assert_eq!(code(&|r| r.size = 70_000), tonic::Code::InvalidArgument);
        assert_eq!(
            code(&|r| r.source = "--x".into()),
            tonic::Code::InvalidArgument
        );
        assert_eq!(code(&|r| r.l3protocol = 9), tonic::Code::InvalidArgument);
        assert_eq!(
            code(&|r| r.network_instance = "blue".into()),
            tonic::Code::Unimplemented
        );
        assert!(req(&|r| r.network_instance = "DEFAULT".into()).is_ok());
    }
}
