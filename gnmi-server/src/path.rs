//! gNMI paths: origin and prefix handling, module-qualified names, list keys
//! and wildcards, checked against the served schema.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tonic::Code;

use crate::error::Failure;
use crate::proto::gnmi::{Path, PathElem};
use crate::schema::{Node, Value, ROOT};

/// The origins accepted for OpenConfig paths.
const ORIGINS: &[&str] = &["", "openconfig"];

/// One element of a parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// A node name, with the module named in its prefix (if any) and its list
    /// keys as given (a value `*` matches any key value).
    Name {
        name: String,
        module: Option<String>,
        keys: BTreeMap<String, String>,
    },
    /// `*`: any one node (keys, if given, filter the lists among them).
    Any { keys: BTreeMap<String, String> },
    /// `...`: any number of levels, zero included.
    AnyDepth,
}

impl Elem {
    pub(crate) fn is_wildcard(&self) -> bool {
        match self {
            Elem::Name { keys, .. } => keys.values().any(|v| v == "*"),
            Elem::Any { .. } | Elem::AnyDepth => true,
        }
    }
}

/// A path with its prefix applied.
#[derive(Clone, Debug)]
pub(crate) struct GPath {
    pub elems: Vec<Elem>,
    /// The path as the client wrote it (prefix included), for messages.
    pub text: String,
}

impl GPath {
    /// Whether the path can match more than one node: it has `*` or `...`,
    /// or a list element with a key `*` or without all of its keys.
    pub(crate) fn has_wildcards(&self) -> bool {
        let mut node: &'static Node = &ROOT;
        for e in &self.elems {
            if e.is_wildcard() {
                return true;
            }
            let Elem::Name { name, module, keys } = e else {
                return true;
            };
            let Some(child) = node.child(name, module.as_deref()) else {
                return false;
            };
            if child.is_list() && child.keys().iter().any(|k| !keys.contains_key(*k)) {
                return true;
            }
            node = child;
        }
        false
    }
}

/// Renders path elements as `/a/b[k=v]/c`, escaping `]` and `\` in key
/// values as the gNMI path-string convention does.
pub(crate) fn path_text(elems: &[PathElem]) -> String {
    if elems.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for e in elems {
        out.push('/');
        out.push_str(&e.name);
        let keys: BTreeMap<_, _> = e.key.iter().collect();
        for (k, v) in keys {
            let v = v.replace('\\', "\\\\").replace(']', "\\]");
            let _ = write!(out, "[{k}={v}]");
        }
    }
    out
}

/// The origin and elements of `prefix` + `path`, checked for form.
pub(crate) fn join(prefix: Option<&Path>, path: Option<&Path>) -> Result<GPath, Failure> {
    let empty = Path::default();
    let prefix = prefix.unwrap_or(&empty);
    let path = path.unwrap_or(&empty);
    let mut all: Vec<PathElem> = prefix.elem.clone();
    all.extend(path.elem.iter().cloned());
    let text = path_text(&all);
    let bad = |reason: String| Failure::new(Code::InvalidArgument, &text, reason);

    #[allow(deprecated)]
    if !prefix.element.is_empty() || !path.element.is_empty() {
        return Err(bad(
            "the deprecated string `element` form of paths is not supported; use `elem`".into(),
        ));
    }
    let origin = match (prefix.origin.as_str(), path.origin.as_str()) {
        ("", o) | (o, "") => o,
        (a, b) if a == b => a,
        (a, b) => {
            return Err(bad(format!(
                "the prefix has origin {a:?} but the path has origin {b:?}"
            )))
        }
    };
    if !ORIGINS.contains(&origin) {
        return Err(bad(format!(
            "origin {origin:?} is not served; use \"openconfig\" or no origin"
        )));
    }
    if !path.target.is_empty() {
        return Err(bad("`target` may only be set in the prefix".into()));
    }

    let mut elems = Vec::with_capacity(all.len());
    for e in &all {
        let keys: BTreeMap<String, String> =
            e.key.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in &keys {
            if k.is_empty() {
                return Err(bad(format!("element {:?} has a key with no name", e.name)));
            }
            if v.is_empty() {
                return Err(bad(format!("key {k} of element {:?} has no value", e.name)));
            }
        }
        let elem = match e.name.as_str() {
            "" => return Err(bad("the path has an element with no name".into())),
            "..." if !keys.is_empty() => {
                return Err(bad("the `...` wildcard cannot carry keys".into()))
            }
            "..." => Elem::AnyDepth,
            "*" => Elem::Any { keys },
            name => {
                let (module, name) = match name.split_once(':') {
                    Some((m, n)) if !m.is_empty() && !n.is_empty() => {
                        (Some(m.to_owned()), n.to_owned())
                    }
                    Some(_) => {
                        return Err(bad(format!("element name {name:?} is malformed")));
                    }
                    None => (None, name.to_owned()),
                };
                Elem::Name { name, module, keys }
            }
        };
        elems.push(elem);
    }
    Ok(GPath { elems, text })
}

/// One resolved step of a path without wildcards: the schema node and, for a
/// list, its key values in the schema's key order.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub node: &'static Node,
    pub keys: Vec<Value>,
}

/// Parses key `k = v` of `list`.
fn parse_key(list: &'static Node, k: &str, v: &str) -> Result<Value, String> {
    let ty = list
        .key_type(k)
        .ok_or_else(|| format!("{} has no key {k}", list.name))?;
    ty.parse_str(v).map_err(|e| format!("key {k}: {e}"))
}

fn key_names(list: &Node) -> String {
    list.keys().join(", ")
}

/// Checks `keys` against `node`: only lists take keys, and every key named
/// must be one of the list's, with a value of the key's type (or `*`).
fn check_keys(node: &'static Node, keys: &BTreeMap<String, String>) -> Result<(), String> {
    if keys.is_empty() {
        return Ok(());
    }
    if !node.is_list() {
        return Err(format!("{} is not a list and takes no keys", node.name));
    }
    for (k, v) in keys {
        if !node.keys().contains(&k.as_str()) {
            return Err(format!(
                "list {} is keyed by {}, not {k}",
                node.name,
                key_names(node)
            ));
        }
        if v != "*" {
            parse_key(node, k, v)?;
        }
    }
    Ok(())
}

/// Resolves a path without wildcards (Set replace and update). Unknown nodes
/// are NotFound; malformed or wildcard paths and read-only nodes are
/// InvalidArgument.
pub(crate) fn resolve(path: &GPath) -> Result<Vec<Step>, Failure> {
    let invalid = |reason: String| Failure::new(Code::InvalidArgument, &path.text, reason);
    let mut node: &'static Node = &ROOT;
    let mut steps = Vec::with_capacity(path.elems.len());
    for elem in &path.elems {
        let Elem::Name { name, module, keys } = elem else {
            return Err(invalid(
                "wildcards are not allowed in a replace or update path".into(),
            ));
        };
        let Some(child) = node.child(name, module.as_deref()) else {
            return Err(unknown(node, name, module.as_deref(), &path.text));
        };
        if child.state {
            return Err(invalid(format!(
                "{} is read-only state (config false) and cannot be set",
                child.name
            )));
        }
        check_keys(child, keys).map_err(&invalid)?;
        let mut values = Vec::new();
        if child.is_list() {
            for k in child.keys() {
                let Some(v) = keys.get(*k) else {
                    return Err(invalid(format!(
                        "list {} needs all of its keys ({}) here; {k} is missing",
                        child.name,
                        key_names(child)
                    )));
                };
                if v == "*" {
                    return Err(invalid(
                        "wildcards are not allowed in a replace or update path".into(),
                    ));
                }
                values.push(parse_key(child, k, v).map_err(&invalid)?);
            }
        }
        steps.push(Step {
            node: child,
            keys: values,
        });
        node = child;
    }
    Ok(steps)
}

/// The NotFound failure for `name` (in `module`) under `parent`.
fn unknown(parent: &'static Node, name: &str, module: Option<&str>, text: &str) -> Failure {
    let under = if parent.name.is_empty() {
        "at the root".to_owned()
    } else {
        format!("under {}", parent.name)
    };
    let reason = match (module, parent.child(name, None)) {
        (Some(m), Some(c)) => format!("{name} belongs to module {}, not {m}", c.module),
        _ => {
            let names: Vec<&str> = parent.children().iter().map(|c| c.name).collect();
            format!(
                "no node {name} {under} in the served models (served here: {})",
                names.join(", ")
            )
        }
    };
    Failure::new(Code::NotFound, text, reason)
}

/// What a schema walk found: how many schema nodes the path can match, how
/// many of them are configuration, and the first unknown name met.
#[derive(Debug, Default)]
pub(crate) struct SchemaMatch {
    pub matches: usize,
    pub config_matches: usize,
    pub unknown: Option<Failure>,
}

/// Matches a (possibly wildcarded) path against the schema. Malformed keys
/// are an error; unknown names only leave `matches` at zero.
pub(crate) fn check(path: &GPath) -> Result<SchemaMatch, Failure> {
    let mut out = SchemaMatch::default();
    walk_schema(&ROOT, &path.elems, false, path, &mut out)?;
    Ok(out)
}

fn walk_schema(
    node: &'static Node,
    elems: &[Elem],
    in_state: bool,
    path: &GPath,
    out: &mut SchemaMatch,
) -> Result<(), Failure> {
    let Some((first, rest)) = elems.split_first() else {
        out.matches += 1;
        if !in_state {
            out.config_matches += 1;
        }
        return Ok(());
    };
    match first {
        Elem::AnyDepth => {
            walk_schema(node, rest, in_state, path, out)?;
            for c in node.children() {
                walk_schema(c, elems, in_state || c.state, path, out)?;
            }
        }
        Elem::Any { keys } => {
            for c in node.children() {
                if keys.is_empty() || check_keys(c, keys).is_ok() {
                    walk_schema(c, rest, in_state || c.state, path, out)?;
                }
            }
        }
        Elem::Name { name, module, keys } => match node.child(name, module.as_deref()) {
            Some(c) => {
                check_keys(c, keys)
                    .map_err(|e| Failure::new(Code::InvalidArgument, &path.text, e))?;
                walk_schema(c, rest, in_state || c.state, path, out)?;
            }
            None => {
                if out.unknown.is_none() {
                    out.unknown = Some(unknown(node, name, module.as_deref(), &path.text));
                }
            }
        },
    }
    Ok(())
}

/// Whether list entry key `k` with value `actual` matches the path's key
/// (absent or `*` match anything).
pub(crate) fn key_matches(
    list: &'static Node,
    keys: &BTreeMap<String, String>,
    entry_key: &str,
    actual: Option<&Value>,
) -> bool {
    match keys.get(entry_key) {
        None => true,
        Some(v) if v == "*" => true,
        Some(v) => match (parse_key(list, entry_key, v), actual) {
            (Ok(want), Some(have)) => &want == have,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn elem(name: &str, keys: &[(&str, &str)]) -> PathElem {
        PathElem {
            name: name.into(),
            key: keys
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        }
    }

    fn path(origin: &str, elems: Vec<PathElem>) -> Path {
        Path {
            origin: origin.into(),
            elem: elems,
            ..Default::default()
        }
    }

    #[test]
    fn origin_and_module_prefix_resolve_to_the_same_node() {
        for (origin, first) in [
            ("", "interfaces"),
            ("openconfig", "interfaces"),
            ("", "openconfig-interfaces:interfaces"),
        ] {
            let p = path(
                origin,
                vec![
                    elem(first, &[]),
                    elem("interface", &[("name", "eth1")]),
                    elem("config", &[]),
                    elem("mtu", &[]),
                ],
            );
            let g = join(None, Some(&p)).expect("join");
            let steps = resolve(&g).expect("resolve");
            assert_eq!(steps.len(), 4);
            assert_eq!(steps[1].keys, vec![Value::Str("eth1".into())]);
        }
    }

    #[test]
    fn bad_paths_get_the_right_codes() {
        let cases: Vec<(Path, Code)> = vec![
            (
                path("cli", vec![elem("interfaces", &[])]),
                Code::InvalidArgument,
            ),
            (path("", vec![elem("", &[])]), Code::InvalidArgument),
            (path("", vec![elem("bogus", &[])]), Code::NotFound),
            (
                path("", vec![elem("openconfig-system:interfaces", &[])]),
                Code::NotFound,
            ),
            (
                path(
                    "",
                    vec![elem("interfaces", &[]), elem("interface", &[("nom", "x")])],
                ),
                Code::InvalidArgument,
            ),
            (
                path("", vec![elem("interfaces", &[]), elem("interface", &[])]),
                Code::InvalidArgument,
            ),
            (
                path(
                    "",
                    vec![elem("interfaces", &[]), elem("interface", &[("name", "*")])],
                ),
                Code::InvalidArgument,
            ),
            (
                path(
                    "",
                    vec![
                        elem("interfaces", &[]),
                        elem("interface", &[("name", "e")]),
                        elem("state", &[]),
                    ],
                ),
                Code::InvalidArgument,
            ),
            (
                path("", vec![elem("system", &[("name", "x")])]),
                Code::InvalidArgument,
            ),
        ];
        for (p, code) in cases {
            let got = join(None, Some(&p)).and_then(|g| resolve(&g).map(|_| ()));
            let err = got.expect_err("must fail");
            assert_eq!(err.code, code, "{p:?}: {err:?}");
        }
    }

    #[test]
    fn wildcards_match_in_the_schema() {
        let p = path("", vec![elem("...", &[]), elem("oper-status", &[])]);
        let g = join(None, Some(&p)).expect("join");
        let m = check(&g).expect("check");
        // Interface and subinterface state.
        assert_eq!(m.matches, 2);
        assert_eq!(m.config_matches, 0);
    }
}
