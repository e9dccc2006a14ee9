//! Subscribe (gNMI specification 3.5): ONCE, POLL and STREAM subscriptions,
//! the latter with ON_CHANGE, SAMPLE and TARGET_DEFINED entries.
//!
//! Every Subscribe RPC runs as one task that writes its responses into a
//! bounded queue, which the RPC's response stream reads. Updates are leaves
//! (one `Update` per leaf, at most [`MAX_UPDATES`] per notification), encoded
//! as JSON or JSON_IETF values as the subscription list asks.
//!
//! - ONCE: the current values of every subscribed path, a `sync_response`,
//!   and the RPC ends (only the `sync_response` with `updates_only`).
//! - POLL: the same on subscribing, then again for each `Poll` request.
//! - STREAM: the current values (unless `updates_only`), a
//!   `sync_response`, then:
//!   - ON_CHANGE (and TARGET_DEFINED, which is ON_CHANGE here): the leaves
//!     that changed, as the backend announces changes (see
//!     [`Backend::changes`]); removed leaves as deletes. With a
//!     `heartbeat_interval`, every matching leaf again once per interval.
//!   - SAMPLE: every matching leaf once per `sample_interval` (0 means
//!     [`MIN_SAMPLE_INTERVAL`]); with `suppress_redundant` only the leaves
//!     that changed since this subscription last sent them, except once per
//!     `heartbeat_interval`, when all are sent.
//!
//! A subscriber that does not read its stream is not waited for: when its
//! queue is full its subscription ends with RESOURCE_EXHAUSTED, and nothing
//! else notices. The initial values and the answers to polls are the
//! exception: the client asked for them and they are bounded, so they wait
//! for room in the queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status, Streaming};

use crate::backend::Backend;
use crate::error::Failure;
use crate::mapping::Tables;
use crate::path::{self, Elem};
use crate::proto::gnmi::{
    subscribe_request, subscribe_response, subscription_list, typed_value, Notification, Path,
    SubscribeRequest, SubscribeResponse, SubscriptionList, SubscriptionMode, TypedValue, Update,
};
use crate::service::{json_encoding, response_prefix, use_models};
use crate::telemetry::{self, Delta, Hub, HubSlot, Key, Leaf, Leaves};

/// The shortest sample and heartbeat interval served; a `sample_interval`
/// of 0 asks for it.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The most updates (and deletes) one notification carries, which keeps
/// messages well below gRPC's usual 4 MiB limit.
pub const MAX_UPDATES: usize = 500;

/// How many responses a subscriber may leave unread before its
/// subscription is ended, unless the service sets another limit.
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 256;

/// How one STREAM entry reports.
#[derive(Debug)]
enum Mode {
    OnChange,
    Sample { interval: Duration, suppress: bool },
}

/// One subscription of a list.
#[derive(Debug)]
struct Entry {
    elems: Vec<Elem>,
    /// The origin of the path as given, repeated in update paths.
    origin: String,
    mode: Mode,
    heartbeat: Option<Duration>,
    /// SAMPLE: what this entry sent last, for suppress_redundant and to
    /// report removed leaves.
    last: HashMap<Key, Arc<Leaf>>,
    next_sample: Option<Instant>,
    next_heartbeat: Option<Instant>,
}

impl Entry {
    fn is_on_change(&self) -> bool {
        matches!(self.mode, Mode::OnChange)
    }

    /// The soonest instant this entry has something to do.
    fn deadline(&self) -> Option<Instant> {
        match (self.next_sample, self.next_heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A subscription list, checked.
#[derive(Debug)]
struct Subscription {
    mode: subscription_list::Mode,
    entries: Vec<Entry>,
    ietf: bool,
    models: Option<HashSet<String>>,
    updates_only: bool,
    /// The prefix of every notification, and how many leading elements of
    /// each leaf's path it stands for.
    prefix: Option<Path>,
    skip: usize,
}

fn invalid(reason: impl Into<String>) -> Failure {
    Failure::new(Code::InvalidArgument, "", reason)
}

/// An interval in nanoseconds: 0 is `None`; below the minimum is refused.
fn interval(ns: u64, what: &str, text: &str) -> Result<Option<Duration>, Failure> {
    if ns == 0 {
        return Ok(None);
    }
    let d = Duration::from_nanos(ns);
    if d < MIN_SAMPLE_INTERVAL {
        return Err(Failure::new(
            Code::InvalidArgument,
            text,
            format!(
                "{what} {ns} ns is shorter than this target supports ({} ns at least)",
                MIN_SAMPLE_INTERVAL.as_nanos()
            ),
        ));
    }
    Ok(Some(d))
}

impl Subscription {
    /// The large tables (forwarding tables, Loc-RIB) its paths can reach.
    fn tables(&self) -> Tables {
        Tables::reached(self.entries.iter().map(|e| &e.elems[..]))
    }

    fn parse(list: SubscriptionList) -> Result<Subscription, Failure> {
        let ietf = json_encoding(list.encoding)?;
        let mode = subscription_list::Mode::try_from(list.mode)
            .map_err(|_| invalid(format!("subscription list mode {} is unknown", list.mode)))?;
        if list.subscription.is_empty() {
            return Err(invalid(
                "the subscription list has no subscription: name at least one path",
            ));
        }
        let models = use_models(&list.use_models)?;
        let (prefix, skip) = response_prefix(list.prefix.as_ref())?;
        let mut entries = Vec::with_capacity(list.subscription.len());
        for sub in &list.subscription {
            let mut g = path::join(list.prefix.as_ref(), sub.path.as_ref())?;
            // A trailing `...` adds nothing: a subscription covers subtrees.
            while g.elems.last() == Some(&Elem::AnyDepth) {
                g.elems.pop();
            }
            let m = path::check(&g)?;
            if m.matches == 0 {
                let f = m.unknown.unwrap_or_else(|| {
                    Failure::new(Code::InvalidArgument, &g.text, "the path matches nothing")
                });
                return Err(Failure {
                    code: Code::InvalidArgument,
                    ..f
                });
            }
            let (entry_mode, heartbeat) = if mode == subscription_list::Mode::Stream {
                let m = SubscriptionMode::try_from(sub.mode).map_err(|_| {
                    Failure::new(
                        Code::InvalidArgument,
                        &g.text,
                        format!("subscription mode {} is unknown", sub.mode),
                    )
                })?;
                let entry_mode = match m {
                    SubscriptionMode::OnChange | SubscriptionMode::TargetDefined => Mode::OnChange,
                    SubscriptionMode::Sample => Mode::Sample {
                        interval: interval(sub.sample_interval, "sample_interval", &g.text)?
                            .unwrap_or(MIN_SAMPLE_INTERVAL),
                        suppress: sub.suppress_redundant,
                    },
                };
                let heartbeat = interval(sub.heartbeat_interval, "heartbeat_interval", &g.text)?;
                (entry_mode, heartbeat)
            } else {
                (Mode::OnChange, None)
            };
            entries.push(Entry {
                elems: g.elems,
                origin: sub
                    .path
                    .as_ref()
                    .map(|p| p.origin.clone())
                    .unwrap_or_default(),
                mode: entry_mode,
                heartbeat,
                last: HashMap::new(),
                next_sample: None,
                next_heartbeat: None,
            });
        }
        Ok(Subscription {
            mode,
            entries,
            ietf,
            models,
            updates_only: list.updates_only,
            prefix,
            skip,
        })
    }

    fn wanted(&self, entry: &Entry, leaf: &Leaf) -> bool {
        leaf.matches(&entry.elems) && self.models.as_ref().is_none_or(|m| leaf.in_models(m))
    }

    /// The leaves of `leaves` that `entry` covers.
    fn select<'a>(
        &'a self,
        entry: &'a Entry,
        leaves: &'a Leaves,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Leaf>)> + 'a {
        leaves.iter().filter(move |(_, l)| self.wanted(entry, l))
    }

    fn update(&self, origin: &str, leaf: &Leaf) -> Update {
        let bytes = serde_json::to_vec(&leaf.json(self.ietf)).unwrap_or_default();
        let value = if self.ietf {
            typed_value::Value::JsonIetfVal(bytes)
        } else {
            typed_value::Value::JsonVal(bytes)
        };
        Update {
            path: Some(self.path(origin, leaf)),
            val: Some(TypedValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn path(&self, origin: &str, leaf: &Leaf) -> Path {
        Path {
            origin: origin.to_owned(),
            elem: leaf.elems(self.skip),
            ..Default::default()
        }
    }

    /// Notifications for `updates` and `deletes` (path text → origin and
    /// leaf), at most [`MAX_UPDATES`] entries each.
    fn notifications(
        &self,
        time: i64,
        updates: &BTreeMap<&str, (&str, &Arc<Leaf>)>,
        deletes: &BTreeMap<&str, (&str, &Arc<Leaf>)>,
    ) -> Vec<SubscribeResponse> {
        let mut out = Vec::new();
        let mut current = Notification {
            timestamp: time,
            prefix: self.prefix.clone(),
            ..Default::default()
        };
        let mut n = 0;
        let flush = |current: &mut Notification, out: &mut Vec<SubscribeResponse>| {
            let next = Notification {
                timestamp: time,
                prefix: self.prefix.clone(),
                ..Default::default()
            };
            out.push(update_response(std::mem::replace(current, next)));
        };
        for (origin, leaf) in deletes.values() {
            if n == MAX_UPDATES {
                flush(&mut current, &mut out);
                n = 0;
            }
            current.delete.push(self.path(origin, leaf));
            n += 1;
        }
        for (origin, leaf) in updates.values() {
            if n == MAX_UPDATES {
                flush(&mut current, &mut out);
                n = 0;
            }
            current.update.push(self.update(origin, leaf));
            n += 1;
        }
        if n > 0 {
            flush(&mut current, &mut out);
        }
        out
    }

    /// Every leaf of `leaves` that the entries picked by `which` cover.
    fn all<'a>(
        &'a self,
        leaves: &'a Leaves,
        which: impl Fn(&Entry) -> bool,
    ) -> BTreeMap<&'a str, (&'a str, &'a Arc<Leaf>)> {
        let mut out = BTreeMap::new();
        for e in self.entries.iter().filter(|e| which(e)) {
            for (k, l) in self.select(e, leaves) {
                out.entry(&**k).or_insert((e.origin.as_str(), l));
            }
        }
        out
    }
}

fn update_response(n: Notification) -> SubscribeResponse {
    SubscribeResponse {
        response: Some(subscribe_response::Response::Update(n)),
        ..Default::default()
    }
}

fn sync_response() -> SubscribeResponse {
    SubscribeResponse {
        response: Some(subscribe_response::Response::SyncResponse(true)),
        ..Default::default()
    }
}

/// The RPC has ended (the client left, or the subscription was ended).
#[derive(Debug)]
struct Ended;

/// The writing end of a subscription's response stream.
#[derive(Debug)]
struct Out {
    tx: mpsc::Sender<SubscribeResponse>,
    abort: Option<oneshot::Sender<Status>>,
    capacity: usize,
}

impl Out {
    /// Queues `responses`, waiting for room (initial values, polls).
    async fn send(&self, responses: Vec<SubscribeResponse>) -> Result<(), Ended> {
        for r in responses {
            self.tx.send(r).await.map_err(|_| Ended)?;
        }
        Ok(())
    }

    /// Queues `responses` without waiting; a full queue ends the
    /// subscription as too slow.
    fn push(&mut self, responses: Vec<SubscribeResponse>) -> Result<(), Ended> {
        for r in responses {
            match self.tx.try_send(r) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.fail(too_slow(format!(
                        "{} responses were waiting unread",
                        self.capacity
                    )));
                    return Err(Ended);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Ended),
            }
        }
        Ok(())
    }

    /// Ends the RPC with `status` (ahead of anything still queued).
    fn fail(&mut self, status: Status) {
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(status);
        }
    }
}

fn too_slow(why: String) -> Status {
    Status::resource_exhausted(format!(
        "subscriber too slow: {why}; the subscription was ended (subscribe again to resume)"
    ))
}

/// The response stream of a Subscribe RPC.
#[derive(Debug)]
pub(crate) struct ResponseStream {
    rx: mpsc::Receiver<SubscribeResponse>,
    abort: Option<oneshot::Receiver<Status>>,
    done: bool,
}

impl Stream for ResponseStream {
    type Item = Result<SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(abort) = self.abort.as_mut() {
            match Pin::new(abort).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Err(_)) => self.abort = None,
                Poll::Pending => {}
            }
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(r)) => Poll::Ready(Some(Ok(r))),
            Poll::Ready(None) => {
                self.done = true;
                // An abort sent just before the task dropped the queue.
                match self.abort.as_mut().map(|a| a.try_recv()) {
                    Some(Ok(status)) => Poll::Ready(Some(Err(status))),
                    _ => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Starts serving one Subscribe RPC: reads its first request, checks it and
/// spawns the task that answers; the error is the RPC's status when the
/// request is refused.
pub(crate) async fn start(
    backend: Arc<dyn Backend>,
    hubs: Arc<HubSlot>,
    queue: usize,
    mut inbound: Streaming<SubscribeRequest>,
) -> Result<ResponseStream, Status> {
    let first = match inbound.next().await {
        Some(Ok(m)) => m,
        Some(Err(s)) => return Err(s),
        None => {
            return Err(Status::invalid_argument(
                "the request stream ended before a SubscriptionList was sent",
            ))
        }
    };
    let list = match first.request {
        Some(subscribe_request::Request::Subscribe(list)) => list,
        Some(subscribe_request::Request::Poll(_)) => {
            return Err(Status::invalid_argument(
                "a Poll was sent on a non-existent subscription: the first request must \
                 carry a SubscriptionList",
            ))
        }
        None => {
            return Err(Status::invalid_argument(
                "the first request must carry a SubscriptionList (`subscribe`)",
            ))
        }
    };
    let sub = Subscription::parse(list).map_err(|f| f.status())?;
    let hub = if sub.mode == subscription_list::Mode::Stream
        && sub.entries.iter().any(Entry::is_on_change)
    {
        Some(hubs.get(&backend, sub.tables()).await)
    } else {
        None
    };
    let queue = queue.max(1);
    let (tx, rx) = mpsc::channel(queue);
    let (abort_tx, abort_rx) = oneshot::channel();
    let out = Out {
        tx,
        abort: Some(abort_tx),
        capacity: queue,
    };
    tokio::spawn(async move {
        let _ = match sub.mode {
            subscription_list::Mode::Once => once(sub, backend.as_ref(), out).await,
            subscription_list::Mode::Poll => poll(sub, backend.as_ref(), inbound, out).await,
            subscription_list::Mode::Stream => {
                stream(sub, backend.as_ref(), hub, inbound, out).await
            }
        };
    });
    Ok(ResponseStream {
        rx,
        abort: Some(abort_rx),
        done: false,
    })
}

/// The current values of everything subscribed (nothing with
/// `updates_only`), then a sync_response.
async fn initial(sub: &Subscription, backend: &dyn Backend, out: &Out) -> Result<(), Ended> {
    if !sub.updates_only {
        let (time, leaves) = telemetry::read(backend, sub.tables()).await;
        let all = sub.all(&leaves, |_| true);
        out.send(sub.notifications(time, &all, &BTreeMap::new()))
            .await?;
    }
    out.send(vec![sync_response()]).await
}

async fn once(sub: Subscription, backend: &dyn Backend, out: Out) -> Result<(), Ended> {
    initial(&sub, backend, &out).await
    // Dropping `out` ends the RPC with OK.
}

async fn poll(
    mut sub: Subscription,
    backend: &dyn Backend,
    mut inbound: Streaming<SubscribeRequest>,
    mut out: Out,
) -> Result<(), Ended> {
    initial(&sub, backend, &out).await?;
    // Every poll answers with everything, updates_only or not.
    sub.updates_only = false;
    loop {
        let request = tokio::select! {
            r = inbound.next() => r,
            () = out.tx.closed() => return Err(Ended),
        };
        match request {
            Some(Ok(SubscribeRequest {
                request: Some(subscribe_request::Request::Poll(_)),
                ..
            })) => initial(&sub, backend, &out).await?,
            Some(Ok(_)) => {
                out.fail(Status::invalid_argument(
                    "this POLL subscription takes only Poll requests; open another Subscribe \
                     RPC for other paths",
                ));
                return Err(Ended);
            }
            // The client is done polling, or gone.
            None | Some(Err(_)) => return Ok(()),
        }
    }
}

async fn stream(
    mut sub: Subscription,
    backend: &dyn Backend,
    hub: Option<Arc<Hub>>,
    mut inbound: Streaming<SubscribeRequest>,
    mut out: Out,
) -> Result<(), Ended> {
    // Follow the changes before reading the snapshot they apply to.
    let (mut deltas, snapshot) = match &hub {
        Some(h) => {
            let (rx, snap) = h.follow();
            (Some(rx), Some(snap))
        }
        None => (None, None),
    };
    let mut seen = snapshot.as_ref().map_or(0, |s| s.seq);
    let sampled = sub.entries.iter().any(|e| !e.is_on_change());
    let fresh = if sampled {
        Some(telemetry::read(backend, sub.tables()).await)
    } else {
        None
    };

    let mut initial = Vec::new();
    if let Some(snap) = &snapshot {
        if !sub.updates_only {
            let all = sub.all(&snap.leaves, Entry::is_on_change);
            initial.extend(sub.notifications(snap.time, &all, &BTreeMap::new()));
        }
    }
    if let Some((time, leaves)) = &fresh {
        if !sub.updates_only {
            let all = sub.all(leaves, |e| !e.is_on_change());
            initial.extend(sub.notifications(*time, &all, &BTreeMap::new()));
        }
        // What the client now knows, sent or (updates_only) not.
        let mut lasts = Vec::new();
        for e in sub.entries.iter().filter(|e| !e.is_on_change()) {
            lasts.push(
                sub.select(e, leaves)
                    .map(|(k, l)| (k.clone(), l.clone()))
                    .collect::<HashMap<_, _>>(),
            );
        }
        for (e, last) in sub
            .entries
            .iter_mut()
            .filter(|e| !e.is_on_change())
            .zip(lasts)
        {
            e.last = last;
        }
    }
    initial.push(sync_response());
    out.send(initial).await?;

    let start = Instant::now();
    for e in &mut sub.entries {
        if let Mode::Sample { interval, .. } = e.mode {
            e.next_sample = Some(later(start, interval));
        }
        e.next_heartbeat = e.heartbeat.map(|h| later(start, h));
    }

    let mut reading = true;
    loop {
        let deadline = sub.entries.iter().filter_map(Entry::deadline).min();
        tokio::select! {
            r = recv(&mut deltas) => match r {
                Ok(d) => {
                    if d.seq > seen {
                        seen = d.seq;
                        out.push(on_change(&sub, &d))?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    out.fail(too_slow(format!("{n} changes were not taken in time")));
                    return Err(Ended);
                }
                Err(broadcast::error::RecvError::Closed) => {
                    out.fail(Status::unavailable("the gNMI server is stopping"));
                    return Err(Ended);
                }
            },
            () = sleep_until(deadline) => {
                let responses = tick(&mut sub, backend, hub.as_deref()).await;
                out.push(responses)?;
            }
            r = inbound.next(), if reading => match r {
                Some(Ok(_)) => {
                    out.fail(Status::invalid_argument(
                        "this STREAM subscription takes no further requests; open another \
                         Subscribe RPC for other paths",
                    ));
                    return Err(Ended);
                }
                // The client closed its side; the subscription goes on.
                None => reading = false,
                Some(Err(_)) => return Err(Ended),
            },
            () = out.tx.closed() => return Err(Ended),
        }
    }
}

async fn recv(
    deltas: &mut Option<broadcast::Receiver<Arc<Delta>>>,
) -> Result<Arc<Delta>, broadcast::error::RecvError> {
    match deltas {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The ON_CHANGE updates and deletes for one difference.
fn on_change(sub: &Subscription, d: &Delta) -> Vec<SubscribeResponse> {
    fn pick<'a>(
        sub: &'a Subscription,
        list: &'a [(Key, Arc<Leaf>)],
    ) -> BTreeMap<&'a str, (&'a str, &'a Arc<Leaf>)> {
        let mut out = BTreeMap::new();
        for (k, leaf) in list {
            if let Some(e) = sub
                .entries
                .iter()
                .find(|e| e.is_on_change() && sub.wanted(e, leaf))
            {
                out.insert(&**k, (e.origin.as_str(), leaf));
            }
        }
        out
    }
    let (updates, deletes) = (pick(sub, &d.changed), pick(sub, &d.removed));
    if updates.is_empty() && deletes.is_empty() {
        return Vec::new();
    }
    sub.notifications(d.time, &updates, &deletes)
}

/// Runs the samples and heartbeats that are due.
async fn tick(
    sub: &mut Subscription,
    backend: &dyn Backend,
    hub: Option<&Hub>,
) -> Vec<SubscribeResponse> {
    let now = Instant::now();
    let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
    let sample_due = sub
        .entries
        .iter()
        .any(|e| !e.is_on_change() && (due(e.next_sample) || due(e.next_heartbeat)));
    let fresh = if sample_due {
        Some(telemetry::read(backend, sub.tables()).await)
    } else {
        None
    };
    let snapshot = hub.map(Hub::snapshot);

    let mut responses = Vec::new();
    let mut sampled_updates: BTreeMap<Key, (String, Arc<Leaf>)> = BTreeMap::new();
    let mut sampled_deletes: BTreeMap<Key, (String, Arc<Leaf>)> = BTreeMap::new();
    let mut beat: BTreeMap<Key, (String, Arc<Leaf>)> = BTreeMap::new();
    let mut next = Vec::with_capacity(sub.entries.len());
    for e in &sub.entries {
        let heartbeat = due(e.next_heartbeat);
        match e.mode {
            Mode::Sample { suppress, .. } if due(e.next_sample) || heartbeat => {
                let Some((_, leaves)) = &fresh else {
                    next.push(None);
                    continue;
                };
                let current: HashMap<Key, Arc<Leaf>> = sub
                    .select(e, leaves)
                    .map(|(k, l)| (k.clone(), l.clone()))
                    .collect();
                for (k, l) in &current {
                    let changed = e.last.get(k).is_none_or(|old| old.value != l.value);
                    if !suppress || heartbeat || changed {
                        sampled_updates
                            .entry(k.clone())
                            .or_insert_with(|| (e.origin.clone(), l.clone()));
                    }
                }
                for (k, l) in &e.last {
                    if !current.contains_key(k) {
                        sampled_deletes
                            .entry(k.clone())
                            .or_insert_with(|| (e.origin.clone(), l.clone()));
                    }
                }
                next.push(Some(current));
            }
            Mode::OnChange if heartbeat => {
                if let Some(snap) = &snapshot {
                    for (k, l) in sub.select(e, &snap.leaves) {
                        beat.entry(k.clone())
                            .or_insert_with(|| (e.origin.clone(), l.clone()));
                    }
                }
                next.push(None);
            }
            _ => next.push(None),
        }
    }
    // Remember what was sampled and schedule what comes next.
    for (e, current) in sub.entries.iter_mut().zip(next) {
        if let Some(current) = current {
            e.last = current;
        }
        if let (Some(t), Mode::Sample { interval, .. }) = (e.next_sample, &e.mode) {
            if t <= now {
                e.next_sample = Some(advance(t, *interval, now));
            }
        }
        if let (Some(t), Some(h)) = (e.next_heartbeat, e.heartbeat) {
            if t <= now {
                e.next_heartbeat = Some(advance(t, h, now));
            }
        }
    }

    if let Some((time, _)) = &fresh {
        if !sampled_updates.is_empty() || !sampled_deletes.is_empty() {
            let u = borrowed(&sampled_updates);
            let d = borrowed(&sampled_deletes);
            responses.extend(sub.notifications(*time, &u, &d));
        }
    }
    if let Some(snap) = &snapshot {
        if !beat.is_empty() {
            responses.extend(sub.notifications(snap.time, &borrowed(&beat), &BTreeMap::new()));
        }
    }
    responses
}

fn borrowed(m: &BTreeMap<Key, (String, Arc<Leaf>)>) -> BTreeMap<&str, (&str, &Arc<Leaf>)> {
    m.iter()
        .map(|(k, (o, l))| (&**k, (o.as_str(), l)))
        .collect()
}

/// The next instant on the `every` grid after `now`, skipping missed ones.
fn advance(from: Instant, every: Duration, now: Instant) -> Instant {
    let t = later(from, every);
    if t > now {
        return t;
    }
    let behind = now.duration_since(t).as_nanos() / every.as_nanos().max(1);
    let skip = u32::try_from(behind.saturating_add(1)).unwrap_or(u32::MAX);
    later(t, every.saturating_mul(skip))
}

/// `t + d`, or a century on when that does not fit (intervals come from
/// clients and may be absurd).
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_skips_missed_ticks() {
        let t0 = Instant::now();
        let s = Duration::from_millis(100);
        assert_eq!(advance(t0, s, t0), t0 + s);
        assert_eq!(advance(t0, s, t0 + Duration::from_millis(250)), t0 + 3 * s);
    }
}
