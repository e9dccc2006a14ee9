//! Instance data on the served schema: the tree Get reads from and Set
//! edits, its JSON encodings, path matching with wildcards, and the edit
//! operations (delete, replace, update).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value as Json};
use tonic::Code;

use crate::error::Failure;
use crate::path::{key_matches, Elem, Step};
use crate::proto::gnmi::PathElem;
use crate::schema::{Kind, Node, Value, ROOT};

/// The children of a container or list entry, by schema name.
pub(crate) type Children = BTreeMap<&'static str, Data>;

/// A node of instance data. Which schema node it instantiates is known from
/// where it sits.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    Leaf(Value),
    /// A container or a list entry.
    Container(Children),
    /// A list's entries, each a `Container` holding its key leaves.
    List(Vec<Data>),
}

impl Data {
    pub(crate) fn empty() -> Data {
        Data::Container(Children::new())
    }

    pub(crate) fn children(&self) -> Option<&Children> {
        match self {
            Data::Container(c) => Some(c),
            _ => None,
        }
    }
}

/// The key values of list entry `entry`, in the list's key order.
pub(crate) fn entry_keys<'a>(list: &'static Node, entry: &'a Data) -> Vec<Option<&'a Value>> {
    let children = entry.children();
    list.keys()
        .iter()
        .map(|k| match children.and_then(|c| c.get(k)) {
            Some(Data::Leaf(v)) => Some(v),
            _ => None,
        })
        .collect()
}

/// The path element naming list entry `entry`.
fn entry_elem(list: &'static Node, entry: &Data) -> PathElem {
    let key = list
        .keys()
        .iter()
        .zip(entry_keys(list, entry))
        .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v.key_string())))
        .collect();
    PathElem {
        name: list.name.to_owned(),
        key,
    }
}

fn plain_elem(node: &Node) -> PathElem {
    PathElem {
        name: node.name.to_owned(),
        key: Default::default(),
    }
}

// ---------------------------------------------------------------- reading

/// Which data a Get returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    All,
    /// `config true` leaves.
    Config,
    /// `config false` leaves.
    State,
    /// `config false` leaves marked operational.
    Operational,
}

/// How to encode data for a Get.
#[derive(Debug)]
pub(crate) struct Render<'a> {
    /// RFC 7951 (JSON_IETF) rather than plain JSON.
    pub ietf: bool,
    pub filter: Filter,
    /// Only nodes of these modules (Get's `use_models`), when given.
    pub models: Option<&'a HashSet<String>>,
}

impl Render<'_> {
    fn keep(&self, in_state: bool, operational: bool) -> bool {
        match self.filter {
            Filter::All => true,
            Filter::Config => !in_state,
            Filter::State => in_state,
            Filter::Operational => in_state && operational,
        }
    }

    pub(crate) fn allowed(&self, node: &Node) -> bool {
        self.models.is_none_or(|m| m.contains(node.module))
    }

    /// The value of a matched node: a bare JSON value for a leaf, an object
    /// for a container or list entry (whose members are module-qualified in
    /// JSON_IETF, as RFC 7951 requires of a top-level object). `None` when
    /// the filter leaves nothing.
    pub(crate) fn value(&self, hit: &Hit<'_>) -> Option<Json> {
        if hit.node.secret {
            // Write-only: never returned.
            return None;
        }
        match (&hit.node.kind, hit.data) {
            (Kind::Leaf(t), Data::Leaf(v)) => self
                .keep(hit.in_state, hit.operational)
                .then(|| t.to_json(v, self.ietf)),
            (_, Data::Container(c)) => self
                .object(hit.node, c, hit.in_state, hit.operational, None)
                .map(Json::Object),
            _ => None,
        }
    }

    fn member_name(&self, node: &Node, parent_module: Option<&str>) -> String {
        if self.ietf && parent_module != Some(node.module) {
            format!("{}:{}", node.module, node.name)
        } else {
            node.name.to_owned()
        }
    }

    /// The members of container or list entry `node`; an entry's keys are
    /// included only when something else is.
    fn object(
        &self,
        node: &'static Node,
        children: &Children,
        in_state: bool,
        operational: bool,
        parent_module: Option<&str>,
    ) -> Option<Map<String, Json>> {
        let keys = node.keys();
        let mut out = Map::new();
        for c in node.children() {
            if keys.contains(&c.name) || !self.allowed(c) || c.secret {
                continue;
            }
            let Some(d) = children.get(c.name) else {
                continue;
            };
            let (st, op) = (in_state || c.state, operational || c.operational);
            let value = match (&c.kind, d) {
                (Kind::Leaf(t), Data::Leaf(v)) => {
                    self.keep(st, op).then(|| t.to_json(v, self.ietf))
                }
                (Kind::Container(_), Data::Container(cc)) => {
                    self.object(c, cc, st, op, Some(c.module)).map(Json::Object)
                }
                (Kind::List { .. }, Data::List(entries)) => {
                    let items: Vec<Json> = entries
                        .iter()
                        .filter_map(|e| e.children())
                        .filter_map(|e| self.object(c, e, st, op, Some(c.module)))
                        .map(Json::Object)
                        .collect();
                    (!items.is_empty()).then_some(Json::Array(items))
                }
                _ => None,
            };
            if let Some(v) = value {
                out.insert(self.member_name(c, parent_module), v);
            }
        }
        if out.is_empty() {
            return None;
        }
        for k in keys {
            if let (Some(Data::Leaf(v)), Some(c)) = (children.get(k), node.child(k, None)) {
                if let Some(t) = c.leaf_type() {
                    out.insert(self.member_name(c, parent_module), t.to_json(v, self.ietf));
                }
            }
        }
        Some(out)
    }
}

/// A node a path matched.
#[derive(Debug)]
pub(crate) struct Hit<'a> {
    /// The node's concrete path.
    pub elems: Vec<PathElem>,
    pub node: &'static Node,
    pub data: &'a Data,
    pub in_state: bool,
    pub operational: bool,
}

/// Every node of `root` that `elems` matches (wildcards expanded).
pub(crate) fn select<'a>(root: &'a Data, elems: &[Elem], render: &Render<'_>) -> Vec<Hit<'a>> {
    let mut out = Vec::new();
    let mut acc = Vec::new();
    select_at(
        &ROOT,
        root,
        elems,
        &mut acc,
        (false, false),
        render,
        &mut out,
    );
    // `...` can reach one node along several expansions.
    let mut seen = HashSet::new();
    out.retain(|h| seen.insert(crate::path::path_text(&h.elems)));
    out
}

fn select_at<'a>(
    node: &'static Node,
    data: &'a Data,
    elems: &[Elem],
    acc: &mut Vec<PathElem>,
    flags: (bool, bool),
    render: &Render<'_>,
    out: &mut Vec<Hit<'a>>,
) {
    let Some((first, rest)) = elems.split_first() else {
        out.push(Hit {
            elems: acc.clone(),
            node,
            data,
            in_state: flags.0,
            operational: flags.1,
        });
        return;
    };
    if *first == Elem::AnyDepth {
        select_at(node, data, rest, acc, flags, render, out);
    }
    let Some(children) = data.children() else {
        return;
    };
    for c in node.children() {
        if !render.allowed(c) {
            continue;
        }
        let keys = match first {
            Elem::AnyDepth => None,
            Elem::Any { keys } => Some(keys),
            Elem::Name { name, module, keys } => {
                if c.name != name || module.as_deref().is_some_and(|m| m != c.module) {
                    continue;
                }
                Some(keys)
            }
        };
        // After `...` the same elements apply one level down.
        let next = if keys.is_none() { elems } else { rest };
        let Some(d) = children.get(c.name) else {
            continue;
        };
        let f = (flags.0 || c.state, flags.1 || c.operational);
        match d {
            Data::List(entries) => {
                if let Some(keys) = keys {
                    if keys.keys().any(|k| !c.keys().contains(&k.as_str())) {
                        continue;
                    }
                }
                for e in entries {
                    let ok = keys.is_none_or(|keys| {
                        c.keys()
                            .iter()
                            .zip(entry_keys(c, e))
                            .all(|(k, v)| key_matches(c, keys, k, v))
                    });
                    if ok {
                        acc.push(entry_elem(c, e));
                        select_at(c, e, next, acc, f, render, out);
                        acc.pop();
                    }
                }
            }
            _ => {
                if keys.is_some_and(|k| !k.is_empty()) {
                    continue;
                }
                acc.push(plain_elem(c));
                select_at(c, d, next, acc, f, render, out);
                acc.pop();
            }
        }
    }
}

// ---------------------------------------------------------------- editing

/// Deletes every node `elems` matches; returns how many were removed.
/// Deleting a list entry's key leaf on its own is refused.
pub(crate) fn delete(root: &mut Data, elems: &[Elem], text: &str) -> Result<usize, Failure> {
    if elems.is_empty() {
        let n = root.children().map_or(0, BTreeMap::len);
        *root = Data::empty();
        return Ok(n);
    }
    delete_at(&ROOT, root, elems, text)
}

fn delete_at(
    node: &'static Node,
    data: &mut Data,
    elems: &[Elem],
    text: &str,
) -> Result<usize, Failure> {
    let Some((first, rest)) = elems.split_first() else {
        return Ok(0);
    };
    let own_keys = node.keys();
    let mut removed = 0;
    if *first == Elem::AnyDepth {
        if rest.is_empty() {
            let Data::Container(children) = data else {
                return Ok(0);
            };
            // Everything below this node (an entry keeps its keys).
            let before = children.len();
            children.retain(|k, _| own_keys.contains(k));
            return Ok(before - children.len());
        }
        removed += delete_at(node, data, rest, text)?;
    }
    let Data::Container(children) = data else {
        return Ok(removed);
    };
    for c in node.children() {
        let keys = match first {
            Elem::AnyDepth => None,
            Elem::Any { keys } => Some(keys),
            Elem::Name { name, module, keys } => {
                if c.name != name || module.as_deref().is_some_and(|m| m != c.module) {
                    continue;
                }
                Some(keys)
            }
        };
        let next = if keys.is_none() { elems } else { rest };
        let terminal = keys.is_some() && rest.is_empty();
        let Some(d) = children.get_mut(c.name) else {
            continue;
        };
        match d {
            Data::List(entries) => {
                if let Some(keys) = keys {
                    if keys.keys().any(|k| !c.keys().contains(&k.as_str())) {
                        continue;
                    }
                }
                let matches = |e: &Data| {
                    keys.is_none_or(|keys| {
                        c.keys()
                            .iter()
                            .zip(entry_keys(c, e))
                            .all(|(k, v)| key_matches(c, keys, k, v))
                    })
                };
                if terminal {
                    let before = entries.len();
                    entries.retain(|e| !matches(e));
                    removed += before - entries.len();
                } else {
                    for e in entries.iter_mut() {
                        if matches(e) {
                            removed += delete_at(c, e, next, text)?;
                        }
                    }
                }
            }
            _ => {
                if keys.is_some_and(|k| !k.is_empty()) {
                    continue;
                }
                if terminal {
                    if own_keys.contains(&c.name) {
                        return Err(Failure::new(
                            Code::InvalidArgument,
                            text,
                            format!(
                                "{} is a key of {}; delete the list entry instead",
                                c.name, node.name
                            ),
                        ));
                    }
                    children.remove(c.name);
                    removed += 1;
                } else if keys.is_none() && own_keys.contains(&c.name) {
                    // `...` does not descend into key leaves.
                } else {
                    removed += delete_at(c, d, next, text)?;
                }
            }
        }
    }
    Ok(removed)
}

/// A new list entry holding only its keys.
fn new_entry(list: &'static Node, keys: &[Value]) -> Data {
    let mut c = Children::new();
    for (k, v) in list.keys().iter().zip(keys) {
        c.insert(k, Data::Leaf(v.clone()));
    }
    Data::Container(c)
}

fn position(list: &'static Node, entries: &[Data], keys: &[Value]) -> Option<usize> {
    entries.iter().position(|e| {
        entry_keys(list, e)
            .into_iter()
            .zip(keys)
            .all(|(have, want)| have == Some(want))
    })
}

/// Replaces (`replace`) or merges (update) `value` at the node `steps`
/// name, creating the containers and list entries on the way.
pub(crate) fn write(
    root: &mut Data,
    steps: &[Step],
    value: Data,
    replace: bool,
) -> Result<(), Failure> {
    let Some((last, parents)) = steps.split_last() else {
        if replace {
            *root = value;
        } else {
            merge(&ROOT, root, value);
        }
        return Ok(());
    };
    let broken = || Failure::internal("the data tree does not match the schema");
    let mut cur: &mut Children = match root {
        Data::Container(c) => c,
        _ => return Err(broken()),
    };
    for step in parents {
        let slot = cur.entry(step.node.name).or_insert_with(|| {
            if step.node.is_list() {
                Data::List(Vec::new())
            } else {
                Data::empty()
            }
        });
        let next = match slot {
            Data::List(entries) => {
                let i = match position(step.node, entries, &step.keys) {
                    Some(i) => i,
                    None => {
                        entries.push(new_entry(step.node, &step.keys));
                        entries.len() - 1
                    }
                };
                &mut entries[i]
            }
            other => other,
        };
        cur = match next {
            Data::Container(c) => c,
            _ => return Err(broken()),
        };
    }
    let node = last.node;
    if node.is_list() {
        let slot = cur
            .entry(node.name)
            .or_insert_with(|| Data::List(Vec::new()));
        let Data::List(entries) = slot else {
            return Err(broken());
        };
        match position(node, entries, &last.keys) {
            Some(i) if replace => entries[i] = value,
            Some(i) => merge(node, &mut entries[i], value),
            None => entries.push(value),
        }
    } else {
        match cur.get_mut(node.name) {
            Some(existing) if !replace => merge(node, existing, value),
            _ => {
                cur.insert(node.name, value);
            }
        }
    }
    Ok(())
}

/// Merges `src` into `dst` (both instances of `node`): leaves are
/// overwritten, containers merged member by member, list entries merged by
/// key or added.
fn merge(node: &'static Node, dst: &mut Data, src: Data) {
    match (dst, src) {
        (Data::Container(d), Data::Container(s)) => {
            for (k, v) in s {
                match (d.get_mut(k), node.child(k, None)) {
                    (Some(existing), Some(child)) => merge(child, existing, v),
                    _ => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (Data::List(d), Data::List(s)) => {
            for e in s {
                let keys: Vec<Value> = entry_keys(node, &e)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                match position(node, d, &keys) {
                    Some(i) => merge(node, &mut d[i], e),
                    None => d.push(e),
                }
            }
        }
        (d, s) => *d = s,
    }
}

// ---------------------------------------------------------------- decoding

fn child_text(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Splits a JSON member name into its module (RFC 7951 qualification) and
/// name.
fn split_member(member: &str) -> (Option<&str>, &str) {
    match member.split_once(':') {
        Some((m, n)) => (Some(m), n),
        None => (None, member),
    }
}

/// Decodes `json` as an instance of `node` at path `text`. `keys` are the
/// path's keys when `node` is a list (the value is then one entry).
pub(crate) fn decode(
    node: &'static Node,
    json: &Json,
    text: &str,
    keys: &[Value],
) -> Result<Data, Failure> {
    match &node.kind {
        Kind::Leaf(t) => t
            .decode_json(json)
            .map(Data::Leaf)
            .map_err(|e| Failure::new(Code::InvalidArgument, text, e)),
        Kind::List { .. } => decode_entry(node, json, text, Some(keys)),
        Kind::Container(_) => match json {
            Json::Object(o) => decode_members(node, o, text).map(Data::Container),
            other => Err(Failure::new(
                Code::InvalidArgument,
                text,
                format!(
                    "{} is a container: its value must be a JSON object, not {}",
                    if node.name.is_empty() { "/" } else { node.name },
                    json_kind(other)
                ),
            )),
        },
    }
}

fn decode_members(
    node: &'static Node,
    obj: &Map<String, Json>,
    text: &str,
) -> Result<Children, Failure> {
    let invalid = |path: &str, reason: String| Failure::new(Code::InvalidArgument, path, reason);
    let mut out = Children::new();
    for (member, v) in obj {
        let (module, name) = split_member(member);
        let Some(c) = node.child(name, module) else {
            let served: Vec<&str> = node
                .children()
                .iter()
                .filter(|c| !c.state)
                .map(|c| c.name)
                .collect();
            return Err(invalid(
                text,
                format!(
                    "the value has member {member:?}, which is not in the served model here \
                     (configurable members: {})",
                    served.join(", ")
                ),
            ));
        };
        let path = child_text(text, c.name);
        if c.state {
            return Err(invalid(
                &path,
                "read-only state (config false) cannot be set".into(),
            ));
        }
        let data = match (&c.kind, v) {
            (Kind::Leaf(t), v) => Data::Leaf(t.decode_json(v).map_err(|e| invalid(&path, e))?),
            (Kind::Container(_), Json::Object(o)) => Data::Container(decode_members(c, o, &path)?),
            (Kind::List { .. }, Json::Array(items)) => {
                let mut entries: Vec<Data> = Vec::with_capacity(items.len());
                for item in items {
                    let e = decode_entry(c, item, &path, None)?;
                    let keys: Vec<Value> =
                        entry_keys(c, &e).into_iter().flatten().cloned().collect();
                    if position(c, &entries, &keys).is_some() {
                        return Err(invalid(
                            &path,
                            format!(
                                "the list has two entries with key {}",
                                keys.iter()
                                    .map(Value::key_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                    entries.push(e);
                }
                Data::List(entries)
            }
            (Kind::Container(_), other) => {
                return Err(invalid(
                    &path,
                    format!("expected a JSON object, got {}", json_kind(other)),
                ))
            }
            (Kind::List { .. }, other) => {
                return Err(invalid(
                    &path,
                    format!(
                        "expected a JSON array of list entries, got {}",
                        json_kind(other)
                    ),
                ))
            }
        };
        out.insert(c.name, data);
    }
    Ok(out)
}

/// Finds member `name` of `obj`, bare or module-qualified.
fn member<'a>(obj: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    obj.iter()
        .find(|(k, _)| split_member(k).1 == name)
        .map(|(_, v)| v)
}

/// Decodes one entry of `list`. Its keys come from the entry's key leaves,
/// else from its `config` container (OpenConfig keys mirror `config/<key>`),
/// else from the path (`expected`); keys given twice must agree.
fn decode_entry(
    list: &'static Node,
    json: &Json,
    text: &str,
    expected: Option<&[Value]>,
) -> Result<Data, Failure> {
    let invalid = |path: &str, reason: String| Failure::new(Code::InvalidArgument, path, reason);
    let Json::Object(obj) = json else {
        return Err(invalid(
            text,
            format!(
                "an entry of list {} must be a JSON object, not {}",
                list.name,
                json_kind(json)
            ),
        ));
    };
    let mut keys = Vec::new();
    for (i, k) in list.keys().iter().enumerate() {
        let ty = list
            .key_type(k)
            .ok_or_else(|| Failure::internal(format!("list {} lacks key leaf {k}", list.name)))?;
        let given = member(obj, k).or_else(|| match member(obj, "config") {
            Some(Json::Object(c)) => member(c, k),
            _ => None,
        });
        let given = given
            .map(|v| {
                ty.decode_json(v)
                    .map_err(|e| invalid(&child_text(text, k), e))
            })
            .transpose()?;
        let from_path = expected.and_then(|e| e.get(i));
        let value = match (given, from_path) {
            (Some(g), Some(p)) if g != *p => {
                return Err(invalid(
                    text,
                    format!(
                        "key {k} is {} in the value but {} in the path",
                        g.key_string(),
                        p.key_string()
                    ),
                ))
            }
            (Some(g), _) => g,
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(invalid(
                    text,
                    format!("an entry of list {} lacks its key {k}", list.name),
                ))
            }
        };
        keys.push(value);
    }
    let entry_text = if expected.is_some() {
        text.to_owned()
    } else {
        let mut t = text.to_owned();
        for (k, v) in list.keys().iter().zip(&keys) {
            t.push_str(&format!("[{k}={}]", v.key_string()));
        }
        t
    };
    let mut children = decode_members(list, obj, &entry_text)?;
    for (k, v) in list.keys().iter().zip(keys) {
        children.insert(k, Data::Leaf(v));
    }
    Ok(Data::Container(children))
}
