//! A small XML tree over quick-xml, and the escaping the writers need.
//!
//! OpenNebula's documents are element-only (no XML attributes), free-form in places
//! (`TEMPLATE` and `USER_TEMPLATE` are `xs:anyType`) and full of CDATA. Reading them
//! into a tree first and then picking the fields gives uniform handling of CDATA,
//! entities, missing and repeated elements, and errors that name the element. The
//! XML-RPC envelope is read the same way.

use std::borrow::Cow;
use std::fmt;

use quick_xml::events::Event;
use quick_xml::Reader;

/// Deeper documents are refused (OpenNebula's go about six levels deep).
const MAX_DEPTH: usize = 64;

/// An element: its name, its text (CDATA included) and its child elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// The tag name, prefix included (`ex:i8`).
    pub name: String,
    /// The character data directly inside the element, unescaped; whitespace kept.
    pub text: String,
    /// Child elements, in document order.
    pub children: Vec<Element>,
}

/// Why a text is not a well-formed XML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError(pub String);

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

impl Element {
    /// A leaf element with text.
    pub fn leaf(name: impl Into<String>, text: impl Into<String>) -> Element {
        Element {
            name: name.into(),
            text: text.into(),
            children: Vec::new(),
        }
    }

    /// Parses a document and returns its root element.
    pub fn parse(xml: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(xml);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = true;
        config.trim_text_start = false;
        config.trim_text_end = false;
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        let err = |reader: &Reader<&[u8]>, what: String| {
            XmlError(format!("{what} (at byte {})", reader.buffer_position()))
        };
        loop {
            let event = reader
                .read_event()
                .map_err(|e| err(&reader, e.to_string()))?;
            match event {
                Event::Start(start) => {
                    if root.is_some() {
                        return Err(err(&reader, "content after the root element".into()));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(err(&reader, format!("nested deeper than {MAX_DEPTH}")));
                    }
                    let name = std::str::from_utf8(start.name().as_ref())
                        .map_err(|e| err(&reader, format!("element name: {e}")))?
                        .to_owned();
                    stack.push(Element {
                        name,
                        ..Element::default()
                    });
                }
                Event::End(_) => {
                    let done = stack
                        .pop()
                        .ok_or_else(|| err(&reader, "unbalanced end tag".into()))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
                Event::Text(text) => {
                    let content = text
                        .xml10_content()
                        .map_err(|e| err(&reader, e.to_string()))?;
                    match stack.last_mut() {
                        Some(el) => el.text.push_str(&content),
                        None if content.trim().is_empty() => {}
                        None => return Err(err(&reader, "text outside the root element".into())),
                    }
                }
                Event::CData(data) => {
                    let content = data
                        .xml10_content()
                        .map_err(|e| err(&reader, e.to_string()))?;
                    match stack.last_mut() {
                        Some(el) => el.text.push_str(&content),
                        None => return Err(err(&reader, "CDATA outside the root element".into())),
                    }
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference
                        .resolve_char_ref()
                        .map_err(|e| err(&reader, e.to_string()))?
                    {
                        Some(c) => c.to_string(),
                        None => {
                            let name = reference
                                .decode()
                                .map_err(|e| err(&reader, e.to_string()))?;
                            predefined_entity(&name)
                                .ok_or_else(|| err(&reader, format!("unknown entity `&{name};`")))?
                                .to_owned()
                        }
                    };
                    match stack.last_mut() {
                        Some(el) => el.text.push_str(&resolved),
                        None => return Err(err(&reader, "text outside the root element".into())),
                    }
                }
                Event::Eof => break,
                // Declarations, comments, processing instructions, doctypes.
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err(XmlError(format!(
                "the document ends inside element `{}`",
                stack.last().map(|e| e.name.as_str()).unwrap_or_default()
            )));
        }
        root.ok_or_else(|| XmlError("no root element".into()))
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Whether the element has no child elements.
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// Writes the element back as XML (text escaped, no CDATA).
    pub fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        out.push('>');
        if self.children.is_empty() {
            out.push_str(&escape(&self.text));
        }
        for c in &self.children {
            c.write(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

/// Escapes text for element content.
pub fn escape(text: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(text)
}

#[cfg_attr(not(feature = "fake"), allow(dead_code))]
/// Wraps text in CDATA, as OpenNebula writes template values; `]]>` inside the text is
/// split across two sections.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// The first `max` characters of a text, for error messages, on one line.
pub fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        format!("{one_line}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cdata_entities_and_nesting() {
        let doc = "<?xml version=\"1.0\"?>\n<A>\n  <B><![CDATA[x < y ]]]]><![CDATA[> z]]></B>\n  <C>a &amp; b &#65;&#x42;</C><D/></A>";
        let a = Element::parse(doc).unwrap();
        assert_eq!(a.name, "A");
        assert_eq!(a.text_of("B"), Some("x < y ]]> z"));
        assert_eq!(a.text_of("C"), Some("a & b AB"));
        assert_eq!(a.text_of("D"), Some(""));
        assert_eq!(a.children.len(), 3);
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            "",
            "<A>",
            "<A></B>",
            "<A/><B/>",
            "text",
            "<A>&bogus;</A>",
            "<A><B></A>",
        ] {
            assert!(Element::parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(Element::parse(&deep).is_err());
    }

    #[test]
    fn cdata_round_trips_terminators() {
        let text = "a]]>b]]>";
        let doc = format!("<X>{}</X>", cdata(text));
        assert_eq!(Element::parse(&doc).unwrap().text, text);
    }

    #[test]
    fn write_escapes() {
        let mut e = Element::leaf("T", "");
        e.children.push(Element::leaf("N", "<&>"));
        let mut s = String::new();
        e.write(&mut s);
        assert_eq!(s, "<T><N>&lt;&amp;&gt;</N></T>");
        assert_eq!(Element::parse(&s).unwrap(), e);
    }
}
