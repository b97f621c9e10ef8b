//! CIMI documents, one tree for both representations: what a handler builds is
//! rendered as JSON or XML, and what a client sends in either is read into the same
//! tree, so that every reader and writer is written once.
//!
//! The XML conventions of CIMI 1 (DSP0263) as implementations read them:
//! - the root element is named after the type (`<Machine>`), in the namespace
//!   [`NS`]; a collection is `<Collection resourceURI="…/MachineCollection">`;
//! - a reference is an empty element whose attributes are its fields
//!   (`<machineImage href="…"/>`, `<operation rel="…" href="…"/>`);
//! - `properties` are `<property key="k">v</property>` elements;
//! - a list is its items repeated under the singular name (`operations` as
//!   `<operation>`, `disks` as `<disk>`), and a collection's members are named after
//!   their type (`<Machine>`).
//!
//! Reading is liberal: namespace prefixes and whitespace are ignored, as is an
//! element's namespace.

use std::fmt::Write as _;

use quick_xml::events::Event;

/// The CIMI 1 namespace; every `resourceURI` starts with it.
pub const NS: &str = "http://schemas.dmtf.org/cimi/1";

/// The deepest a request document may nest.
const MAX_DEPTH: usize = 32;

/// A value of a document.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    Obj(Obj),
    /// A list: in XML, its items under the field's singular name.
    List(Vec<Node>),
    /// A collection's members: in XML, each under the member type's name.
    Members(&'static str, Vec<Node>),
    /// `properties`: a map of text in JSON, `<property key="k">v</property>` in XML.
    Props(Vec<(String, String)>),
}

/// An object: fields in the order they are written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Obj(pub Vec<(String, Node)>);

impl Obj {
    /// An empty object.
    pub fn new() -> Obj {
        Obj(Vec::new())
    }

    /// A reference: `{"href": …}`.
    pub fn href(href: impl Into<String>) -> Obj {
        Obj::new().with("href", Node::Str(href.into()))
    }

    /// Adds a field.
    pub fn with(mut self, k: &str, v: Node) -> Obj {
        self.0.push((k.to_owned(), v));
        self
    }

    /// Adds a text field.
    pub fn text(self, k: &str, v: impl Into<String>) -> Obj {
        self.with(k, Node::Str(v.into()))
    }

    /// Adds a text field when there is a value.
    pub fn opt(self, k: &str, v: Option<impl Into<String>>) -> Obj {
        match v {
            Some(v) => self.text(k, v),
            None => self,
        }
    }

    /// Adds or replaces a field.
    pub fn set(&mut self, k: &str, v: Node) {
        match self.0.iter_mut().find(|(n, _)| n == k) {
            Some((_, old)) => *old = v,
            None => self.0.push((k.to_owned(), v)),
        }
    }

    /// The field `k`.
    pub fn get(&self, k: &str) -> Option<&Node> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    /// The field `k` when it is text (a number or a boolean as its text too).
    pub fn str(&self, k: &str) -> Option<String> {
        match self.get(k)? {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The field `k` when it is an object.
    pub fn obj(&self, k: &str) -> Option<&Obj> {
        match self.get(k)? {
            Node::Obj(o) => Some(o),
            _ => None,
        }
    }

    /// The `href` of the reference in field `k`.
    pub fn href_of(&self, k: &str) -> Option<String> {
        self.obj(k)?.str("href")
    }

    /// The properties (tags), when there are any.
    pub fn props(&self) -> &[(String, String)] {
        match self.get("properties") {
            Some(Node::Props(p)) => p,
            _ => &[],
        }
    }

    /// The type named by `resourceURI` (`Machine`), when it is CIMI's.
    pub fn resource_type(&self) -> Option<String> {
        let uri = self.str("resourceURI")?;
        uri.strip_prefix(NS)
            .and_then(|t| t.strip_prefix('/'))
            .map(str::to_owned)
            .or_else(|| uri.rsplit('/').next().map(str::to_owned))
    }

    /// Keeps only the fields `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|(k, _)| keep(k));
    }
}

/// A representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// The media type answers carry.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml",
        }
    }
}

// ---- writing ----

/// The document `doc` of type `ty` (`Machine`, or `Collection` for collections) in
/// `format`.
pub fn render(doc: &Obj, ty: &str, format: Format) -> String {
    match format {
        Format::Json => {
            let mut out = String::with_capacity(1024);
            json_obj(&mut out, doc);
            out
        }
        Format::Xml => {
            let mut out = String::with_capacity(1024);
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            out.push('<');
            out.push_str(ty);
            let _ = write!(out, " xmlns=\"{NS}\"");
            if ty == "Collection" {
                if let Some(uri) = doc.str("resourceURI") {
                    out.push_str(" resourceURI=\"");
                    escape(&mut out, &uri);
                    out.push('"');
                }
            }
            out.push('>');
            for (k, v) in &doc.0 {
                if k != "resourceURI" {
                    xml_field(&mut out, k, v);
                }
            }
            let _ = write!(out, "</{ty}>");
            out
        }
    }
}

fn json_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON needs; writing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn json_obj(out: &mut String, o: &Obj) {
    out.push('{');
    for (i, (k, v)) in o.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, k);
        out.push(':');
        json_node(out, v);
    }
    out.push('}');
}

fn json_node(out: &mut String, n: &Node) {
    match n {
        Node::Str(s) => json_str(out, s),
        Node::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Obj(o) => json_obj(out, o),
        Node::List(items) | Node::Members(_, items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_node(out, item);
            }
            out.push(']');
        }
        Node::Props(p) => {
            out.push('{');
            for (i, (k, v)) in p.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, k);
                out.push(':');
                json_str(out, v);
            }
            out.push('}');
        }
    }
}

/// Escapes text for a double-quoted attribute.
fn escape(out: &mut String, s: &str) {
    escape_as(out, s, true)
}

/// Escapes an element's text.
fn escape_text(out: &mut String, s: &str) {
    escape_as(out, s, false)
}

fn escape_as(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' | '\t' if attribute => out.push_str(if c == '\n' { "&#10;" } else { "&#9;" }),
            c => out.push(c),
        }
    }
}

fn is_scalar(n: &Node) -> bool {
    matches!(n, Node::Str(_) | Node::Int(_) | Node::Bool(_))
}

fn scalar_text(n: &Node) -> String {
    match n {
        Node::Str(s) => s.clone(),
        Node::Int(i) => i.to_string(),
        Node::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The element name of one item of the list field `k`.
pub fn singular(k: &str) -> String {
    match k {
        "properties" => "property".into(),
        "addresses" => "address".into(),
        "affectedResources" => "affectedResource".into(),
        _ => k.strip_suffix('s').unwrap_or(k).to_owned(),
    }
}

/// The list field whose items are the elements named `name`, when `name` is one of
/// the singular names CIMI repeats.
fn plural(name: &str) -> Option<&'static str> {
    Some(match name {
        "operation" => "operations",
        "disk" => "disks",
        "volume" => "volumes",
        "networkInterface" => "networkInterfaces",
        "meter" => "meters",
        "affectedResource" => "affectedResources",
        "nestedJob" => "nestedJobs",
        "eventLog" => "eventLogs",
        _ => return None,
    })
}

fn xml_field(out: &mut String, k: &str, v: &Node) {
    match v {
        Node::Str(_) | Node::Int(_) | Node::Bool(_) => {
            let _ = write!(out, "<{k}>");
            escape_text(out, &scalar_text(v));
            let _ = write!(out, "</{k}>");
        }
        Node::Props(p) => {
            for (key, value) in p {
                out.push_str("<property key=\"");
                escape(out, key);
                out.push_str("\">");
                escape_text(out, value);
                out.push_str("</property>");
            }
        }
        Node::List(items) => {
            let name = singular(k);
            for item in items {
                xml_field(out, &name, item);
            }
        }
        Node::Members(ty, items) => {
            // A member's element is named after its type: its `resourceURI` says no
            // more.
            for item in items {
                match item {
                    Node::Obj(o) => {
                        let mut o = o.clone();
                        o.retain(|f| f != "resourceURI");
                        xml_field(out, ty, &Node::Obj(o));
                    }
                    other => xml_field(out, ty, other),
                }
            }
        }
        Node::Obj(o) => {
            let all_scalar = o.0.iter().all(|(_, v)| is_scalar(v));
            let has_href = o.get("href").is_some();
            let _ = write!(out, "<{k}");
            for (name, value) in &o.0 {
                // An embedded collection's `resourceURI` is an attribute, as the
                // root collection's.
                let attribute = name == "href" || (name == "resourceURI" && is_scalar(value));
                if (all_scalar && has_href) || attribute {
                    let _ = write!(out, " {name}=\"");
                    escape(out, &scalar_text(value));
                    out.push('"');
                }
            }
            if all_scalar && has_href {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (name, value) in &o.0 {
                if name != "href" && name != "resourceURI" {
                    xml_field(out, name, value);
                }
            }
            let _ = write!(out, "</{k}>");
        }
    }
}

// ---- reading ----

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError(pub String);

/// Reads a JSON document (an object).
pub fn read_json(body: &[u8]) -> Result<Obj, ReadError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ReadError(format!("the body is not valid JSON: {e}")))?;
    match from_json(v, 0)? {
        Node::Obj(o) => Ok(o),
        _ => Err(ReadError("the body must be a JSON object".into())),
    }
}

fn from_json(v: serde_json::Value, depth: usize) -> Result<Node, ReadError> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(ReadError(format!(
            "the document nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(match v {
        Value::Null => Node::Str(String::new()),
        Value::Bool(b) => Node::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Node::Int(i),
            None => Node::Str(n.to_string()),
        },
        Value::String(s) => Node::Str(s),
        Value::Array(items) => Node::List(
            items
                .into_iter()
                .map(|i| from_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut o = Obj::new();
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                if k == "properties" {
                    let Value::Object(props) = v else {
                        return Err(ReadError(
                            "`properties` must be an object of text values".into(),
                        ));
                    };
                    let mut p = Vec::with_capacity(props.len());
                    for (pk, pv) in props {
                        match pv {
                            Value::String(s) => p.push((pk, s)),
                            Value::Number(n) => p.push((pk, n.to_string())),
                            Value::Bool(b) => p.push((pk, b.to_string())),
                            _ => {
                                return Err(ReadError(format!(
                                    "property `{pk}` must be text, not {pv}"
                                )))
                            }
                        }
                    }
                    o.0.push((k, Node::Props(p)));
                } else {
                    o.0.push((k, from_json(v, depth + 1)?));
                }
            }
            Node::Obj(o)
        }
    })
}

/// An element as read.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

/// The part of a qualified name after its prefix.
fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => name.into_owned(),
    }
}

fn parse_tree(body: &[u8]) -> Result<Element, ReadError> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.trim_text_start = false;
    config.trim_text_end = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut buf = Vec::new();
    let bad = |e: &dyn std::fmt::Display, at: u64| {
        ReadError(format!(
            "the body is not well-formed XML (at byte {at}): {e}"
        ))
    };
    loop {
        let at = reader.buffer_position();
        let ev = reader.read_event_into(&mut buf).map_err(|e| bad(&e, at))?;
        match ev {
            Event::Start(e) | Event::Empty(e) if stack.len() > MAX_DEPTH => {
                let _ = e;
                return Err(ReadError(format!(
                    "the document nests deeper than {MAX_DEPTH} levels"
                )));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let mut el = Element {
                    name: local(e.name().as_ref()),
                    ..Element::default()
                };
                for a in e.attributes() {
                    let a = a.map_err(|e| bad(&e, at))?;
                    let key = a.key.as_ref();
                    if key == b"xmlns" || key.starts_with(b"xmlns:") {
                        continue;
                    }
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| bad(&e, at))?
                        .into_owned();
                    el.attrs.push((local(key), value));
                }
                if matches!(ev, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| ReadError("the body is not well-formed XML".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| bad(&e, at))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(ReadError("text outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| bad(&e, at))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| bad(&e, at))?;
                        match &*name {
                            "lt" => "<",
                            "gt" => ">",
                            "amp" => "&",
                            "quot" => "\"",
                            "apos" => "'",
                            other => {
                                return Err(ReadError(format!(
                                    "unknown XML entity `&{other};` (at byte {at})"
                                )))
                            }
                        }
                        .to_owned()
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c);
                }
            }
            Event::CData(t) => {
                let s = t.xml10_content().map_err(|e| bad(&e, at))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::Eof => {
                return Err(ReadError(if stack.is_empty() {
                    "the body holds no XML element".into()
                } else {
                    format!("the XML body ends inside <{}>", stack[stack.len() - 1].name)
                }))
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
        buf.clear();
    }
}

fn element_node(el: Element) -> Node {
    if el.children.is_empty() {
        if el.attrs.is_empty() {
            return Node::Str(el.text.trim().to_owned());
        }
        let mut o = Obj::new();
        for (k, v) in el.attrs {
            o.0.push((k, Node::Str(v)));
        }
        let text = el.text.trim();
        if !text.is_empty() {
            o.0.push(("value".into(), Node::Str(text.to_owned())));
        }
        return Node::Obj(o);
    }
    Node::Obj(element_obj(el))
}

/// An element's attributes and children as an object's fields.
fn element_obj(el: Element) -> Obj {
    let mut o = Obj::new();
    for (k, v) in el.attrs {
        o.0.push((k, Node::Str(v)));
    }
    for child in el.children {
        if child.name == "property" {
            let key = child
                .attrs
                .iter()
                .find(|(k, _)| k == "key")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let value = child.text.trim().to_owned();
            match o.0.iter_mut().find(|(k, _)| k == "properties") {
                Some((_, Node::Props(p))) => p.push((key, value)),
                _ => {
                    o.0.push(("properties".into(), Node::Props(vec![(key, value)])))
                }
            }
            continue;
        }
        // `<address>` is a list's item when it has parts (a network interface's
        // addresses), a plain value when it is text (a template's `address`).
        let parts = !child.children.is_empty() || !child.attrs.is_empty();
        let list = plural(&child.name)
            .map(str::to_owned)
            .or_else(|| (child.name == "address" && parts).then(|| "addresses".to_owned()))
            .or_else(|| {
                // A member of an embedded collection: named after its type.
                child
                    .name
                    .chars()
                    .next()
                    .filter(char::is_ascii_uppercase)
                    .map(|_| members_field(&child.name))
            });
        match list {
            Some(field) => {
                let member = plural(&child.name).is_none() && child.name != "address";
                let ty = child.name.clone();
                let mut node = element_node(child);
                // A collection's member is named after its type, as a root is.
                if let (true, Node::Obj(o)) = (member, &mut node) {
                    if o.get("resourceURI").is_none() {
                        o.0.insert(0, ("resourceURI".into(), Node::Str(format!("{NS}/{ty}"))));
                    }
                }
                match o.0.iter_mut().find(|(k, _)| *k == field) {
                    Some((_, Node::List(items))) => items.push(node),
                    _ => o.0.push((field, Node::List(vec![node]))),
                }
            }
            None => {
                let name = child.name.clone();
                let node = element_node(child);
                // A name that repeats is a list.
                match o.0.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, Node::List(items))) => items.push(node),
                    Some((_, old)) => {
                        let first = std::mem::replace(old, Node::List(Vec::new()));
                        *old = Node::List(vec![first, node]);
                    }
                    None => o.0.push((name, node)),
                }
            }
        }
    }
    o
}

/// The JSON field of a collection's members of type `ty`: `Machine` → `machines`.
pub fn members_field(ty: &str) -> String {
    let mut c = ty.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    };
    if !out.ends_with("Metadata") {
        out.push('s');
    }
    out
}

/// Reads an XML document: the root's name becomes its `resourceURI` (unless it says
/// one itself).
pub fn read_xml(body: &[u8]) -> Result<Obj, ReadError> {
    let root = parse_tree(body)?;
    let name = root.name.clone();
    let mut o = element_obj(root);
    if o.get("resourceURI").is_none() {
        o.0.insert(0, ("resourceURI".into(), Node::Str(format!("{NS}/{name}"))));
    }
    Ok(o)
}

/// Reads a request document in `format`.
pub fn read(body: &[u8], format: Format) -> Result<Obj, ReadError> {
    match format {
        Format::Json => read_json(body),
        Format::Xml => read_xml(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_json_read_alike() {
        let xml = br#"<c:MachineCreate xmlns:c="http://schemas.dmtf.org/cimi/1">
            <c:name> m1 </c:name>
            <c:property key="a">b</c:property>
            <c:machineTemplate>
              <c:machineConfig href="http://h/c/1"/>
              <c:machineImage href="http://h/i/1"/>
            </c:machineTemplate>
          </c:MachineCreate>"#;
        let json = br#"{"resourceURI": "http://schemas.dmtf.org/cimi/1/MachineCreate",
            "name": "m1", "properties": {"a": "b"},
            "machineTemplate": {"machineConfig": {"href": "http://h/c/1"},
                                "machineImage": {"href": "http://h/i/1"}}}"#;
        let x = read_xml(xml).unwrap();
        let j = read_json(json).unwrap();
        for o in [&x, &j] {
            assert_eq!(o.resource_type().as_deref(), Some("MachineCreate"));
            assert_eq!(o.str("name").unwrap().trim(), "m1");
            assert_eq!(o.props(), &[("a".to_owned(), "b".to_owned())]);
            let t = o.obj("machineTemplate").unwrap();
            assert_eq!(t.href_of("machineConfig").as_deref(), Some("http://h/c/1"));
            assert_eq!(t.href_of("machineImage").as_deref(), Some("http://h/i/1"));
        }
    }

    #[test]
    fn renders_references_lists_and_properties() {
        let doc = Obj::new()
            .text("resourceURI", format!("{NS}/Machine"))
            .text("id", "http://h/m/1")
            .with("properties", Node::Props(vec![("k".into(), "v&w".into())]))
            .with("memory", Node::Int(1024))
            .with("disks", Node::Obj(Obj::href("http://h/m/1/disks")))
            .with(
                "operations",
                Node::List(vec![Node::Obj(
                    Obj::new()
                        .text("rel", "delete")
                        .text("href", "http://h/m/1"),
                )]),
            );
        let xml = render(&doc, "Machine", Format::Xml);
        assert!(xml.contains("<Machine xmlns=\"http://schemas.dmtf.org/cimi/1\">"));
        assert!(xml.contains("<property key=\"k\">v&amp;w</property>"));
        assert!(xml.contains("<disks href=\"http://h/m/1/disks\"/>"));
        assert!(xml.contains("<operation rel=\"delete\" href=\"http://h/m/1\"/>"));
        assert!(xml.contains("<memory>1024</memory>"));
        let back = read_xml(xml.as_bytes()).unwrap();
        assert_eq!(back.href_of("disks").as_deref(), Some("http://h/m/1/disks"));
        assert_eq!(back.props(), &[("k".to_owned(), "v&w".to_owned())]);
        let json = render(&doc, "Machine", Format::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["memory"], 1024);
        assert_eq!(v["properties"]["k"], "v&w");
        assert_eq!(v["operations"][0]["rel"], "delete");
    }

    #[test]
    fn collection_members_are_named_after_their_type() {
        let member = Obj::new()
            .text("resourceURI", format!("{NS}/Machine"))
            .text("id", "http://h/m/1");
        let doc = Obj::new()
            .text("resourceURI", format!("{NS}/MachineCollection"))
            .text("id", "http://h/m")
            .with("count", Node::Int(1))
            .with(
                "machines",
                Node::Members("Machine", vec![Node::Obj(member)]),
            );
        let xml = render(&doc, "Collection", Format::Xml);
        assert!(xml.contains(&format!(
            "<Collection xmlns=\"{NS}\" resourceURI=\"{NS}/MachineCollection\">"
        )));
        assert!(
            xml.contains("<Machine><id>http://h/m/1</id></Machine>"),
            "{xml}"
        );
        let back = read_xml(xml.as_bytes()).unwrap();
        assert_eq!(back.resource_type().as_deref(), Some("MachineCollection"));
        let Some(Node::List(items)) = back.get("machines") else {
            panic!("{back:?}")
        };
        let Node::Obj(m) = &items[0] else { panic!() };
        assert_eq!(m.resource_type().as_deref(), Some("Machine"));
        assert_eq!(m.str("id").as_deref(), Some("http://h/m/1"));
    }

    #[test]
    fn malformed_xml_is_an_error() {
        for bad in [&b""[..], b"<a>", b"<a></b>", b"not xml", b"<a x='1></a>"] {
            assert!(read_xml(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(read_xml(deep.as_bytes()).is_err());
    }
}
