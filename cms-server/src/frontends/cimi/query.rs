//! Collection queries: `$filter`, `$orderby`, `$first`/`$last` (1-based, inclusive),
//! `$select` and `$expand`, applied to the members of a collection in that order
//! (`count` is the number of members the filter keeps, before `$first`/`$last`).

use super::doc::{members_field, Node, Obj, NS};
use super::filter::{Filter, OrderBy, Scalar, Subject};
use super::{CimiError, Cx};
use crate::frontends::url::query_decode;

/// What `$expand` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expand {
    /// Nothing: references stay references.
    #[default]
    None,
    /// `*`: every reference that can be expanded.
    All,
    /// These attributes.
    Some(Vec<String>),
}

impl Expand {
    /// Whether the attribute `name` is to be expanded.
    pub fn wants(&self, name: &str) -> bool {
        match self {
            Expand::None => false,
            Expand::All => true,
            Expand::Some(v) => v.iter().any(|n| n == name),
        }
    }
}

/// The query of a request.
#[derive(Debug, Default)]
pub struct Query {
    pub filter: Option<Filter>,
    pub orderby: Option<OrderBy>,
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// The attributes to show (`None`: all).
    pub select: Option<Vec<String>>,
    pub expand: Expand,
}

fn names(v: &str, param: &str) -> Result<Vec<String>, CimiError> {
    let mut out = Vec::new();
    for n in v.split(',') {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        let ok = n == "*"
            || (n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !ok {
            return Err(CimiError::bad(format!(
                "`{param}` lists attribute names separated by commas; `{n}` is not one"
            )));
        }
        out.push(n.to_owned());
    }
    if out.is_empty() {
        return Err(CimiError::bad(format!(
            "`{param}` is empty: list attribute names separated by commas, or `*`"
        )));
    }
    Ok(out)
}

fn position(v: &str, param: &str) -> Result<u64, CimiError> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            CimiError::bad(format!(
                "`{param}` must be a position from 1 (the first member), not `{v}`"
            ))
        })
}

/// Reads the query string; `collection` says whether the collection parameters
/// (`$filter`, `$orderby`, `$first`, `$last`) are allowed.
pub fn parse(raw: &str, collection: bool) -> Result<Query, CimiError> {
    let mut q = Query::default();
    let mut filters: Vec<String> = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = query_decode(k);
        let v = query_decode(v);
        match &*k {
            "$filter" if collection => {
                Filter::parse(&v).map_err(|e| {
                    CimiError::new(
                        http::StatusCode::BAD_REQUEST,
                        "invalid_filter",
                        format!("`$filter` is not valid {e}"),
                    )
                })?;
                filters.push(format!("({v})"));
            }
            "$orderby" if collection => {
                q.orderby = Some(OrderBy::parse(&v).map_err(|e| {
                    CimiError::bad(format!("`$orderby` is not valid {e}"))
                })?)
            }
            "$first" if collection => q.first = Some(position(&v, "$first")?),
            "$last" if collection => q.last = Some(position(&v, "$last")?),
            "$select" => {
                let mut n = names(&v, "$select")?;
                if n.iter().any(|x| x == "*") {
                    q.select = None;
                } else {
                    q.select.get_or_insert_with(Vec::new).append(&mut n);
                }
            }
            "$expand" => {
                let n = names(&v, "$expand")?;
                q.expand = if n.iter().any(|x| x == "*") {
                    Expand::All
                } else {
                    match std::mem::take(&mut q.expand) {
                        Expand::Some(mut prev) => {
                            prev.extend(n);
                            Expand::Some(prev)
                        }
                        Expand::All => Expand::All,
                        Expand::None => Expand::Some(n),
                    }
                };
            }
            "$filter" | "$orderby" | "$first" | "$last" => {
                return Err(CimiError::bad(format!(
                    "`{k}` applies to collections only"
                )))
            }
            other => {
                return Err(CimiError::bad(format!(
                    "unknown query parameter `{other}`: CIMI takes $filter, $orderby, $first, $last, $select and $expand"
                )))
            }
        }
    }
    // Several `$filter`s must all hold. Each was checked alone above, so that an
    // error's position is in the text the client wrote.
    if !filters.is_empty() {
        let joined = filters.join(" and ");
        q.filter = Some(Filter::parse(&joined).map_err(|e| {
            CimiError::new(
                http::StatusCode::BAD_REQUEST,
                "invalid_filter",
                format!("the `$filter`s together are not valid {e}"),
            )
        })?);
    }
    Ok(q)
}

/// A document as a filter reads it.
struct Doc<'a>(&'a Obj);

impl Subject for Doc<'_> {
    fn attribute(&self, name: &str) -> Option<Scalar<'_>> {
        match self.0.get(name)? {
            Node::Str(s) => Some(Scalar::Str(s)),
            Node::Int(i) => Some(Scalar::Int(*i)),
            Node::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }

    fn property(&self, key: &str) -> Option<&str> {
        self.0
            .props()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Query {
    /// Whether `doc` passes the filter.
    pub fn keeps(&self, doc: &Obj) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(&Doc(doc)))
    }

    /// Keeps the fields `$select` asks for (and always `id` and `resourceURI`).
    pub fn select(&self, doc: &mut Obj) {
        if let Some(sel) = &self.select {
            doc.retain(|k| k == "id" || k == "resourceURI" || sel.iter().any(|s| s == k));
        }
    }

    /// Checks that `$select`, `$expand` and `$filter` name attributes the type has
    /// (`known`), so that a typo is an error rather than an empty answer.
    pub fn check(&self, known: &[&str], expandable: &[&str]) -> Result<(), CimiError> {
        let unknown = |n: &str| !known.contains(&n);
        if let Some(sel) = &self.select {
            if let Some(n) = sel.iter().find(|n| unknown(n)) {
                return Err(CimiError::bad(format!(
                    "`$select` names `{n}`, which is not an attribute here; there are: {}",
                    known.join(", ")
                )));
            }
        }
        if let Expand::Some(e) = &self.expand {
            if let Some(n) = e.iter().find(|n| !expandable.contains(&n.as_str())) {
                return Err(CimiError::bad(format!(
                    "`$expand` names `{n}`, which cannot be expanded here; {}",
                    if expandable.is_empty() {
                        "nothing can".to_owned()
                    } else {
                        format!("these can: {}", expandable.join(", "))
                    }
                )));
            }
        }
        if let Some(f) = &self.filter {
            if let Some(n) = f.attributes().into_iter().find(|n| unknown(n)) {
                return Err(CimiError::new(
                    http::StatusCode::BAD_REQUEST,
                    "invalid_filter",
                    format!(
                        "`$filter` names `{n}`, which is not an attribute here; there are: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The collection `name` (`machines`) of members of type `ty` (`Machine`): the
    /// filter, order, window and selection applied; `add` when members can be made.
    pub fn collection(
        &self,
        cx: &Cx<'_>,
        name: &str,
        ty: &'static str,
        members: Vec<Obj>,
        add: bool,
    ) -> Obj {
        let mut w = self.window();
        for d in members {
            w.push(d);
        }
        w.finish(cx, name, ty, add)
    }

    /// A collection to fill member by member (see [`Window`]).
    pub fn window(&self) -> Window<'_> {
        Window {
            q: self,
            count: 0,
            kept: Vec::new(),
        }
    }
}

/// A collection being filled: members the filter drops are dropped at once and, unless
/// they must be ordered first, only those inside `$first`..`$last` are kept, so that a
/// listing read page by page holds one page and the window, not the whole collection.
pub struct Window<'a> {
    q: &'a Query,
    count: usize,
    kept: Vec<Obj>,
}

impl Window<'_> {
    /// Adds the next member.
    pub fn push(&mut self, d: Obj) {
        if !self.q.keeps(&d) {
            return;
        }
        self.count += 1;
        if self.q.orderby.is_some() {
            self.kept.push(d);
            return;
        }
        let first = self.q.first.unwrap_or(1);
        let pos = self.count as u64;
        if pos >= first && self.q.last.is_none_or(|l| pos <= l) {
            self.kept.push(d);
        }
    }

    /// The collection document.
    pub fn finish(self, cx: &Cx<'_>, name: &str, ty: &'static str, add: bool) -> Obj {
        let q = self.q;
        let count = self.count;
        let mut kept = self.kept;
        if let Some(o) = &q.orderby {
            kept.sort_by(|a, b| o.compare(&Doc(a), &Doc(b)));
            let first = q.first.unwrap_or(1) as usize;
            let last = q.last.map_or(count, |l| (l as usize).min(count));
            kept = if first > last {
                Vec::new()
            } else {
                kept.into_iter()
                    .skip(first - 1)
                    .take(last + 1 - first)
                    .collect()
            };
        }
        let window = kept
            .into_iter()
            .map(|mut d| {
                q.select(&mut d);
                Node::Obj(d)
            })
            .collect();
        collection_doc(cx, name, ty, count, window, add)
    }
}

/// A collection document: `id`, `count`, the members, and its operations.
pub fn collection_doc(
    cx: &Cx<'_>,
    name: &str,
    ty: &'static str,
    count: usize,
    members: Vec<Node>,
    add: bool,
) -> Obj {
    let id = cx.href(&[name]);
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/{ty}Collection"))
        .text("id", id.clone())
        .with("count", Node::Int(count as i64));
    if !members.is_empty() {
        doc = doc.with(&members_field(ty), Node::Members(ty, members));
    }
    if add {
        doc = doc.with(
            "operations",
            Node::List(vec![Node::Obj(
                Obj::new().text("rel", "add").text("href", id),
            )]),
        );
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parameters() {
        let q = parse(
            "$filter=name%3D%27a%27&$first=2&$last=3&$select=name,state&$expand=*&$orderby=name:desc",
            true,
        )
        .unwrap();
        assert!(q.filter.is_some());
        assert_eq!((q.first, q.last), (Some(2), Some(3)));
        assert_eq!(q.select, Some(vec!["name".to_owned(), "state".to_owned()]));
        assert_eq!(q.expand, Expand::All);
        assert!(q.orderby.is_some());
        for bad in [
            "$first=0",
            "$last=x",
            "$select=",
            "$select=a-b",
            "$filter=name%3D",
            "$nope=1",
            "limit=3",
        ] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
        assert!(parse("$first=1", false).is_err());
        assert!(parse("$select=name", false).is_ok());
    }

    #[test]
    fn several_filters_must_all_hold() {
        let q = parse("$filter=name%3D%27a%27&$filter=state%3D%27STARTED%27", true).unwrap();
        let a = Obj::new().text("name", "a").text("state", "STARTED");
        let b = Obj::new().text("name", "a").text("state", "STOPPED");
        assert!(q.keeps(&a));
        assert!(!q.keeps(&b));
    }
}
