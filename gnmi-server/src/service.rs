//! The gNMI service: Capabilities, Get, Set and Subscribe (see
//! `subscribe.rs`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nos_core::config::{Config, ConfigErrors};
use prost::Message as _;
use serde_json::Value as Json;
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::backend::{Backend, CommitError};
use crate::capabilities::{capability_response, SUPPORTED_MODELS};
use crate::error::{Failure, RpcStatus};
use crate::mapping::{self, StateView};
use crate::path::{self, Elem, GPath, Step};
use crate::proto::gnmi::{
    g_nmi_server::{GNmi, GNmiServer},
    get_request::DataType,
    typed_value, update_result, CapabilityRequest, CapabilityResponse, Encoding, Error, GetRequest,
    GetResponse, ModelData, Notification, Path, SetRequest, SetResponse, SubscribeRequest,
    SubscribeResponse, TypedValue, Update, UpdateResult,
};
use crate::schema::{Kind, Node, ROOT};
use crate::security::{Authenticator, Caller};
use crate::subscribe::{self, DEFAULT_SUBSCRIBER_QUEUE};
use crate::telemetry::HubSlot;
use crate::tree::{self, Data, Filter, Render};

/// How many times a Set is recomputed when another commit lands between
/// reading the configuration and committing the change.
const COMMIT_ATTEMPTS: usize = 3;

/// The `type_url` of the `SetResponse` packed into the status details of a
/// failed Set.
pub const SET_RESPONSE_TYPE_URL: &str = "type.googleapis.com/gnmi.SetResponse";

/// The gNMI service on a [`Backend`].
#[derive(Clone)]
pub struct GnmiService {
    backend: Arc<dyn Backend>,
    /// Sets are computed and committed one at a time.
    set_lock: Arc<tokio::sync::Mutex<()>>,
    /// The reader shared by streaming subscriptions.
    hub: Arc<HubSlot>,
    /// Responses a subscriber may leave unread before it is cut off.
    subscriber_queue: usize,
    /// Checks every RPC's credentials; `None` accepts every request.
    auth: Option<Arc<Authenticator>>,
}

impl fmt::Debug for GnmiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GnmiService").finish_non_exhaustive()
    }
}

impl GnmiService {
    /// A service reading and committing through `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            set_lock: Arc::new(tokio::sync::Mutex::new(())),
            hub: Arc::new(HubSlot::default()),
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
            auth: None,
        }
    }

    /// Makes every RPC present credentials that `auth` accepts (without
    /// one, the service accepts every request: for tests and in-process
    /// use only).
    pub fn with_authenticator(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        match &self.auth {
            Some(a) => a.check(request).await,
            None => Ok(Caller::Anonymous),
        }
    }

    /// Sets how many responses a subscriber may leave unread (at least 1;
    /// [`DEFAULT_SUBSCRIBER_QUEUE`] unless set) before its subscription is
    /// ended with RESOURCE_EXHAUSTED.
    pub fn with_subscriber_queue(mut self, responses: usize) -> Self {
        self.subscriber_queue = responses.max(1);
        self
    }

    /// Wraps the service for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> GNmiServer<Self> {
        GNmiServer::new(self)
    }

    /// The Capabilities answer.
    pub fn capabilities(&self) -> CapabilityResponse {
        capability_response()
    }
}

/// Nanoseconds since the Unix epoch.
fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether `encoding` is JSON_IETF (true) or JSON (false); anything else is
/// Unimplemented.
pub(crate) fn json_encoding(encoding: i32) -> Result<bool, Failure> {
    match Encoding::try_from(encoding) {
        Ok(Encoding::Json) => Ok(false),
        Ok(Encoding::JsonIetf) => Ok(true),
        Ok(other) => Err(Failure::new(
            Code::Unimplemented,
            "",
            format!(
                "encoding {} is not supported; use JSON or JSON_IETF",
                other.as_str_name()
            ),
        )),
        Err(_) => Err(Failure::new(
            Code::Unimplemented,
            "",
            format!("encoding {encoding} is unknown; use JSON or JSON_IETF"),
        )),
    }
}

// ---------------------------------------------------------------- Get

impl GnmiService {
    async fn do_get(&self, req: GetRequest) -> Result<GetResponse, Failure> {
        let ietf = json_encoding(req.encoding)?;
        let filter = match DataType::try_from(req.r#type) {
            Ok(DataType::All) => Filter::All,
            Ok(DataType::Config) => Filter::Config,
            Ok(DataType::State) => Filter::State,
            Ok(DataType::Operational) => Filter::Operational,
            Err(_) => {
                return Err(Failure::new(
                    Code::InvalidArgument,
                    "",
                    format!("data type {} is unknown", req.r#type),
                ))
            }
        };
        let models = use_models(&req.use_models)?;
        let render = Render {
            ietf,
            filter,
            models: models.as_ref(),
        };

        let requested: Vec<Option<&Path>> = if req.path.is_empty() {
            vec![None]
        } else {
            req.path.iter().map(Some).collect()
        };
        let mut paths = Vec::with_capacity(requested.len());
        for p in requested {
            let mut g = path::join(req.prefix.as_ref(), p)?;
            // A trailing `...` adds nothing: a Get returns whole subtrees.
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
            paths.push((g, p));
        }

        let (config, _) = self.backend.config().await;
        // State is rendered for every data type, so that a path exists or
        // not whatever the type asked for.
        let state = self.backend.state().await;
        let tables = mapping::Tables::reached(paths.iter().map(|(g, _)| &g.elems[..]));
        let afts = if tables.afts {
            Some(self.backend.afts().await)
        } else {
            None
        };
        let loc_rib = if tables.rib {
            Some(self.backend.loc_rib().await)
        } else {
            None
        };
        let now = SystemTime::now();
        let view = StateView {
            state: &state,
            now,
            afts: afts.as_ref(),
            loc_rib: loc_rib.as_ref(),
        };
        let data = mapping::render(&config, Some(&view));
        let timestamp = nanos(now);

        let (resp_prefix, skip) = response_prefix(req.prefix.as_ref())?;

        let mut notification = Vec::with_capacity(paths.len());
        for (g, p) in paths {
            let hits = tree::select(&data, &g.elems, &render);
            if hits.is_empty() && !g.has_wildcards() {
                return Err(Failure::new(
                    Code::NotFound,
                    &g.text,
                    "no data at this path",
                ));
            }
            let origin = p.map(|p| p.origin.clone()).unwrap_or_default();
            let update = hits
                .iter()
                .filter_map(|h| {
                    let value = render.value(h)?;
                    let bytes = serde_json::to_vec(&value).ok()?;
                    let val = if ietf {
                        typed_value::Value::JsonIetfVal(bytes)
                    } else {
                        typed_value::Value::JsonVal(bytes)
                    };
                    Some(Update {
                        path: Some(Path {
                            origin: origin.clone(),
                            elem: h.elems.get(skip..).unwrap_or_default().to_vec(),
                            ..Default::default()
                        }),
                        val: Some(TypedValue { value: Some(val) }),
                        ..Default::default()
                    })
                })
                .collect();
            notification.push(Notification {
                timestamp,
                prefix: resp_prefix.clone(),
                update,
                ..Default::default()
            });
        }
        Ok(GetResponse {
            notification,
            ..Default::default()
        })
    }
}

/// The prefix of the notifications answering a request with `prefix`, and
/// how many leading elements of each path it stands for. Paths in the answer
/// are relative to the request's prefix, unless the prefix has wildcards
/// (its concrete values then go in each path).
pub(crate) fn response_prefix(prefix: Option<&Path>) -> Result<(Option<Path>, usize), Failure> {
    Ok(match prefix {
        None => (None, 0),
        Some(pre) => {
            let wild = path::join(Some(pre), None)?.has_wildcards();
            if wild {
                let bare = Path {
                    origin: pre.origin.clone(),
                    target: pre.target.clone(),
                    ..Default::default()
                };
                (Some(bare), 0)
            } else {
                (Some(pre.clone()), pre.elem.len())
            }
        }
    })
}

/// The modules a request is restricted to (`use_models`), or `None`.
pub(crate) fn use_models(models: &[ModelData]) -> Result<Option<HashSet<String>>, Failure> {
    if models.is_empty() {
        return Ok(None);
    }
    let mut out = HashSet::new();
    for m in models {
        if !SUPPORTED_MODELS.iter().any(|s| s.name == m.name) {
            return Err(Failure::new(
                Code::InvalidArgument,
                "",
                format!("model {} is not supported (see Capabilities)", m.name),
            ));
        }
        out.insert(m.name.clone());
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------- Set

/// One operation of a SetRequest.
#[derive(Debug)]
struct Op {
    kind: update_result::Operation,
    /// The path as the client sent it.
    given: Option<Path>,
    path: Result<GPath, Failure>,
    update: Option<Update>,
}

impl Op {
    /// The path in canonical form (keys normalized), for matching problems
    /// found after all operations ran back to the operations.
    fn canonical(&self) -> Option<String> {
        let p = self.path.as_ref().ok()?;
        match path::resolve(p) {
            Ok(steps) => Some(canonical_text(&steps)),
            Err(_) => Some(p.text.clone()),
        }
    }
}

fn canonical_text(steps: &[Step]) -> String {
    if steps.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for s in steps {
        out.push('/');
        out.push_str(s.node.name);
        for (k, v) in s.node.keys().iter().zip(&s.keys) {
            let v = v.key_string().replace('\\', "\\\\").replace(']', "\\]");
            out.push_str(&format!("[{k}={v}]"));
        }
    }
    out
}

/// Whether one path is a prefix of the other, element-wise.
fn overlaps(a: &str, b: &str) -> bool {
    let prefix_of = |p: &str, q: &str| {
        p == "/" || (q.starts_with(p) && (q.len() == p.len() || q.as_bytes()[p.len()] == b'/'))
    };
    prefix_of(a, b) || prefix_of(b, a)
}

/// Decodes an update's value for schema node `node` (a list entry when
/// `keys` is not empty).
fn decode_value(
    node: &'static Node,
    keys: &[crate::schema::Value],
    update: &Update,
    text: &str,
) -> Result<Data, Failure> {
    let invalid = |reason: String| Failure::new(Code::InvalidArgument, text, reason);
    let Some(value) = update.val.as_ref().and_then(|v| v.value.as_ref()) else {
        return Err(invalid("the update carries no value (val)".into()));
    };
    let scalar = |json: Json, what: &str| match &node.kind {
        Kind::Leaf(t) => t.decode_json(&json).map(Data::Leaf).map_err(invalid),
        _ => Err(invalid(format!(
            "{} is not a leaf: set it with a JSON value, not {what}",
            if node.name.is_empty() { "/" } else { node.name }
        ))),
    };
    use typed_value::Value as V;
    match value {
        V::JsonVal(bytes) | V::JsonIetfVal(bytes) => {
            let json: Json = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("the value is not valid JSON: {e}")))?;
            tree::decode(node, &json, text, keys)
        }
        V::StringVal(s) => match &node.kind {
            Kind::Leaf(t) => t.parse_str(s).map(Data::Leaf).map_err(invalid),
            _ => scalar(Json::Null, "a string_val"),
        },
        V::UintVal(n) => scalar(Json::from(*n), "a uint_val"),
        V::IntVal(n) => scalar(Json::from(*n), "an int_val"),
        V::BoolVal(b) => scalar(Json::Bool(*b), "a bool_val"),
        V::AsciiVal(_) => Err(Failure::new(
            Code::Unimplemented,
            text,
            "the ASCII encoding is not supported; use JSON or JSON_IETF",
        )),
        V::BytesVal(_) => Err(Failure::new(
            Code::Unimplemented,
            text,
            "the BYTES encoding is not supported; use JSON or JSON_IETF",
        )),
        V::ProtoBytes(_) | V::AnyVal(_) => Err(Failure::new(
            Code::Unimplemented,
            text,
            "the PROTO encoding is not supported; use JSON or JSON_IETF",
        )),
        #[allow(deprecated)]
        V::FloatVal(_) | V::DoubleVal(_) | V::DecimalVal(_) => {
            Err(invalid("a floating-point value fits no served leaf".into()))
        }
        V::LeaflistVal(_) => Err(invalid("no served leaf is a leaf-list".into())),
    }
}

/// Applies one operation to the configuration tree.
fn apply(data: &mut Data, op: &Op) -> Result<(), Failure> {
    let path = op.path.clone()?;
    match op.kind {
        update_result::Operation::Delete => {
            let m = path::check(&path)?;
            if m.matches == 0 {
                return Err(m.unknown.unwrap_or_else(|| {
                    Failure::new(Code::NotFound, &path.text, "the path matches nothing")
                }));
            }
            if m.config_matches == 0 {
                return Err(Failure::new(
                    Code::InvalidArgument,
                    &path.text,
                    "read-only state (config false) cannot be deleted",
                ));
            }
            // Deleting what does not exist is accepted silently (gNMI 3.4.6).
            tree::delete(data, &path.elems, &path.text).map(|_| ())
        }
        update_result::Operation::Replace | update_result::Operation::Update => {
            let steps = path::resolve(&path)?;
            let (node, keys): (&'static Node, &[crate::schema::Value]) = match steps.last() {
                Some(s) => (s.node, &s.keys),
                None => (&ROOT, &[]),
            };
            let empty = Update::default();
            let update = op.update.as_ref().unwrap_or(&empty);
            let value = decode_value(node, keys, update, &path.text)?;
            let replace = op.kind == update_result::Operation::Replace;
            tree::write(data, &steps, value, replace)
        }
        _ => Err(Failure::internal("unexpected operation")),
    }
}

/// Why a Set failed, and which of its operations failed (the others are
/// reported as Aborted).
#[derive(Debug)]
struct SetFailure {
    failure: Failure,
    culprits: Vec<usize>,
}

impl SetFailure {
    fn at(i: usize, failure: Failure) -> Self {
        Self {
            failure,
            culprits: vec![i],
        }
    }

    /// A failure found once every operation had run: blamed on the
    /// operations whose paths overlap `paths`, or on all of them.
    fn overall(ops: &[Op], failure: Failure, paths: &[String]) -> Self {
        let canonical: Vec<Option<String>> = ops.iter().map(Op::canonical).collect();
        let mut culprits: Vec<usize> = (0..ops.len())
            .filter(|i| {
                canonical[*i]
                    .as_deref()
                    .is_some_and(|c| paths.iter().any(|p| overlaps(c, p)))
            })
            .collect();
        if culprits.is_empty() {
            culprits = (0..ops.len()).collect();
        }
        Self { failure, culprits }
    }
}

/// The failure for a configuration the store refuses.
fn invalid_config(ops: &[Op], new: &Config, errors: &ConfigErrors) -> SetFailure {
    let mut paths = Vec::new();
    let described: Vec<String> = errors
        .0
        .iter()
        .map(|e| match mapping::gnmi_path_of(new, &e.path) {
            Some(g) => {
                let d = format!("{g} ({}): {}", e.path, e.reason);
                paths.push(g);
                d
            }
            None => format!("{}: {}", e.path, e.reason),
        })
        .collect();
    let failure = Failure::new(
        Code::InvalidArgument,
        "",
        format!(
            "the configuration this Set would produce is invalid: {}",
            described.join("; ")
        ),
    );
    SetFailure::overall(ops, failure, &paths)
}

/// The status of a failed Set: the failing operation's code and message,
/// with a `SetResponse` in the details whose `UpdateResult`s carry each
/// operation's own error (Aborted for those that did not fail), as gNMI
/// 3.4.7 describes.
#[allow(deprecated)]
fn set_status(prefix: Option<Path>, ops: &[Op], f: &SetFailure) -> Status {
    let message = if ops.len() > 1 {
        format!("{} (the Set was not applied)", f.failure.message())
    } else {
        f.failure.message()
    };
    let response = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let (code, text) = if f.culprits.contains(&i) {
                (f.failure.code, f.failure.message())
            } else {
                (
                    Code::Aborted,
                    "not applied: another operation of the Set failed".to_owned(),
                )
            };
            UpdateResult {
                path: op.given.clone(),
                op: op.kind as i32,
                message: Some(Error {
                    code: code as u32,
                    message: text,
                    data: None,
                }),
                ..Default::default()
            }
        })
        .collect();
    let set_response = SetResponse {
        prefix,
        response,
        timestamp: nanos(SystemTime::now()),
        ..Default::default()
    };
    let details = RpcStatus {
        code: f.failure.code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: SET_RESPONSE_TYPE_URL.to_owned(),
            value: set_response.encode_to_vec(),
        }],
    };
    Status::with_details(
        f.failure.code,
        message,
        prost::bytes::Bytes::from(details.encode_to_vec()),
    )
}

/// The per-operation results of a failed Set, from its status details.
pub fn set_failure_details(status: &Status) -> Option<SetResponse> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|a| a.type_url == SET_RESPONSE_TYPE_URL)?;
    SetResponse::decode(any.value.as_slice()).ok()
}

impl GnmiService {
    async fn do_set(&self, req: SetRequest, message: String) -> Result<SetResponse, Status> {
        if !req.union_replace.is_empty() {
            return Err(Status::unimplemented(
                "union_replace is not supported; use delete, replace and update",
            ));
        }
        let prefix = req.prefix.as_ref();
        let mut ops = Vec::new();
        for d in &req.delete {
            ops.push(Op {
                kind: update_result::Operation::Delete,
                given: Some(d.clone()),
                path: path::join(prefix, Some(d)),
                update: None,
            });
        }
        for (kind, list) in [
            (update_result::Operation::Replace, &req.replace),
            (update_result::Operation::Update, &req.update),
        ] {
            for u in list {
                ops.push(Op {
                    kind,
                    given: u.path.clone(),
                    path: path::join(prefix, u.path.as_ref()),
                    update: Some(u.clone()),
                });
            }
        }

        let _one_at_a_time = self.set_lock.lock().await;
        for _ in 0..COMMIT_ATTEMPTS {
            let (config, head) = self.backend.config().await;
            let fail = |f: SetFailure| set_status(req.prefix.clone(), &ops, &f);
            let mut data = mapping::render(&config, None);
            for (i, op) in ops.iter().enumerate() {
                apply(&mut data, op).map_err(|e| fail(SetFailure::at(i, e)))?;
            }
            let new = match mapping::to_config(&data, &config) {
                Ok(c) => c,
                Err(problems) => {
                    let paths: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
                    let text: Vec<String> = problems.iter().map(Failure::message).collect();
                    // UNIMPLEMENTED when a problem is a path served
                    // read-only, else INVALID_ARGUMENT.
                    let code = if problems.iter().any(|p| p.code == Code::Unimplemented) {
                        Code::Unimplemented
                    } else {
                        Code::InvalidArgument
                    };
                    let failure = Failure::new(code, "", text.join("; "));
                    return Err(fail(SetFailure::overall(&ops, failure, &paths)));
                }
            };
            let done = |ops: &[Op]| SetResponse {
                prefix: req.prefix.clone(),
                response: ops
                    .iter()
                    .map(|op| UpdateResult {
                        path: op.given.clone(),
                        op: op.kind as i32,
                        ..Default::default()
                    })
                    .collect(),
                timestamp: nanos(SystemTime::now()),
                ..Default::default()
            };
            if new == config {
                // Nothing changes: no commit.
                return Ok(done(&ops));
            }
            // The backend validates (and reports CommitError::Invalid).
            match self
                .backend
                .commit(new.clone(), message.clone(), head)
                .await
            {
                Ok(_) => return Ok(done(&ops)),
                Err(CommitError::Conflict { .. }) => continue,
                Err(CommitError::Invalid(errors)) => {
                    return Err(fail(invalid_config(&ops, &new, &errors)))
                }
                Err(CommitError::Failed(e)) => {
                    let f = SetFailure::overall(
                        &ops,
                        Failure::new(Code::Internal, "", format!("the commit failed: {e}")),
                        &[],
                    );
                    return Err(fail(f));
                }
            }
        }
        Err(Status::aborted(
            "the configuration kept changing while this Set was applied; nothing was applied, \
             retry the Set",
        ))
    }
}

/// The commit message of a Set: who sent it and from where (the
/// authenticated user, else the `username` the client gave).
fn commit_message<T>(request: &Request<T>, caller: &Caller) -> String {
    let user = caller.name().or_else(|| {
        request
            .metadata()
            .get("username")
            .and_then(|v| v.to_str().ok())
            .filter(|u| !u.is_empty())
    });
    match (user, request.remote_addr()) {
        (Some(u), Some(a)) => format!("gNMI Set by {u} from {a}"),
        (Some(u), None) => format!("gNMI Set by {u}"),
        (None, Some(a)) => format!("gNMI Set by {a}"),
        (None, None) => "gNMI Set".to_owned(),
    }
}

#[tonic::async_trait]
impl GNmi for GnmiService {
    async fn capabilities(
        &self,
        request: Request<CapabilityRequest>,
    ) -> Result<Response<CapabilityResponse>, Status> {
        self.authenticate(&request).await?;
        Ok(Response::new(GnmiService::capabilities(self)))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.authenticate(&request).await?;
        self.do_get(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|f| f.status())
    }

    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        let caller = self.authenticate(&request).await?;
        let message = commit_message(&request, &caller);
        self.do_set(request.into_inner(), message)
            .await
            .map(Response::new)
    }

    type SubscribeStream = BoxStream<SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.authenticate(&request).await?;
        let stream = subscribe::start(
            self.backend.clone(),
            self.hub.clone(),
            self.subscriber_queue,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_element_wise() {
        assert!(overlaps("/", "/a"));
        assert!(overlaps("/a/b[k=1]", "/a/b[k=1]/c"));
        assert!(overlaps("/a/b[k=1]/c", "/a/b[k=1]"));
        assert!(!overlaps("/a/b[k=1]", "/a/b[k=10]"));
        assert!(!overlaps("/a/bc", "/a/b"));
    }
}
