//! XML-RPC values and the `methodCall` / `methodResponse` envelopes.
//!
//! Written here rather than taken from a crate: the protocol is small (a dozen lines
//! of grammar), OpenNebula needs only its common subset, and owning the codec lets
//! the client name the method in every decoding error, tolerate xmlrpc-c's `<i8>` /
//! `<ex:i8>` extensions, and never copy a request (which carries the session) into an
//! error. The fake oned decodes calls and encodes answers with the same code.

use base64::Engine;

use crate::xml::{escape, Element};

/// An XML-RPC value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `<i4>`, `<int>`, `<i8>` or `<ex:i8>`.
    Int(i64),
    /// `<boolean>`.
    Bool(bool),
    /// `<string>`, or a `<value>` without a type.
    Str(String),
    /// `<double>`.
    Double(f64),
    /// `<base64>`, decoded.
    Base64(Vec<u8>),
    /// `<dateTime.iso8601>`, as written.
    DateTime(String),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<struct>`, members in order.
    Struct(Vec<(String, Value)>),
    /// `<nil/>` or `<ex:nil/>`.
    Nil,
}

impl Value {
    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "boolean",
            Value::Str(_) => "string",
            Value::Double(_) => "double",
            Value::Base64(_) => "base64",
            Value::DateTime(_) => "dateTime",
            Value::Array(_) => "array",
            Value::Struct(_) => "struct",
            Value::Nil => "nil",
        }
    }

    /// The integer, if the value is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if the value is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn write(&self, out: &mut String) {
        out.push_str("<value>");
        match self {
            Value::Int(i) if i32::try_from(*i).is_ok() => {
                out.push_str(&format!("<i4>{i}</i4>"));
            }
            Value::Int(i) => out.push_str(&format!("<i8>{i}</i8>")),
            Value::Bool(b) => out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            }),
            Value::Str(s) => {
                out.push_str("<string>");
                out.push_str(&escape(s));
                out.push_str("</string>");
            }
            Value::Double(d) => out.push_str(&format!("<double>{d}</double>")),
            Value::Base64(b) => {
                out.push_str("<base64>");
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
                out.push_str("</base64>");
            }
            Value::DateTime(d) => {
                out.push_str("<dateTime.iso8601>");
                out.push_str(&escape(d));
                out.push_str("</dateTime.iso8601>");
            }
            Value::Array(items) => {
                out.push_str("<array><data>");
                for v in items {
                    v.write(out);
                }
                out.push_str("</data></array>");
            }
            Value::Struct(members) => {
                out.push_str("<struct>");
                for (name, v) in members {
                    out.push_str("<member><name>");
                    out.push_str(&escape(name));
                    out.push_str("</name>");
                    v.write(out);
                    out.push_str("</member>");
                }
                out.push_str("</struct>");
            }
            Value::Nil => out.push_str("<nil/>"),
        }
        out.push_str("</value>");
    }

    /// Reads a `<value>` element.
    pub fn from_element(value: &Element) -> Result<Value, String> {
        if value.name != "value" {
            return Err(format!("expected <value>, found <{}>", value.name));
        }
        let typed = match value.children.as_slice() {
            [] => return Ok(Value::Str(value.text.clone())),
            [one] => one,
            more => {
                return Err(format!(
                    "<value> holds {} elements, expected one",
                    more.len()
                ))
            }
        };
        let text = typed.text.as_str();
        let int = |t: &str| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| format!("<{}> holds `{}`, not an integer", typed.name, t.trim()))
        };
        Ok(match typed.name.as_str() {
            "i4" | "int" | "i8" | "ex:i8" | "i2" | "i1" => Value::Int(int(text)?),
            "boolean" => match text.trim() {
                "1" | "true" => Value::Bool(true),
                "0" | "false" => Value::Bool(false),
                other => return Err(format!("<boolean> holds `{other}`")),
            },
            "string" => Value::Str(text.to_owned()),
            "double" => Value::Double(
                text.trim()
                    .parse()
                    .map_err(|_| format!("<double> holds `{}`", text.trim()))?,
            ),
            "base64" => Value::Base64(
                base64::engine::general_purpose::STANDARD
                    .decode(text.split_whitespace().collect::<String>())
                    .map_err(|e| format!("<base64>: {e}"))?,
            ),
            "dateTime.iso8601" => Value::DateTime(text.trim().to_owned()),
            "nil" | "ex:nil" => Value::Nil,
            "array" => {
                let data = typed.child("data").ok_or("<array> without <data>")?;
                Value::Array(
                    data.children
                        .iter()
                        .map(Value::from_element)
                        .collect::<Result<_, _>>()?,
                )
            }
            "struct" => {
                let mut members = Vec::new();
                for m in typed.children_named("member") {
                    let name = m.text_of("name").ok_or("<member> without <name>")?;
                    let v = m.child("value").ok_or("<member> without <value>")?;
                    members.push((name.to_owned(), Value::from_element(v)?));
                }
                Value::Struct(members)
            }
            other => return Err(format!("unknown value type <{other}>")),
        })
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// A `methodCall` document.
pub fn encode_call(method: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    out.push_str(&escape(method));
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        p.write(&mut out);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// Reads a `methodCall` document: the method name and the parameters.
pub fn decode_call(xml: &str) -> Result<(String, Vec<Value>), String> {
    let root = Element::parse(xml).map_err(|e| e.to_string())?;
    if root.name != "methodCall" {
        return Err(format!("expected <methodCall>, found <{}>", root.name));
    }
    let method = root
        .text_of("methodName")
        .ok_or("<methodCall> without <methodName>")?
        .trim()
        .to_owned();
    let mut params = Vec::new();
    if let Some(ps) = root.child("params") {
        for p in ps.children_named("param") {
            let v = p.child("value").ok_or("<param> without <value>")?;
            params.push(Value::from_element(v)?);
        }
    }
    Ok((method, params))
}

/// What a `methodResponse` carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// The one return value.
    Value(Value),
    /// An XML-RPC fault (a protocol-level error, not an OpenNebula error answer).
    Fault { code: i64, message: String },
}

/// A `methodResponse` with a value.
pub fn encode_response(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n<param>",
    );
    value.write(&mut out);
    out.push_str("</param>\r\n</params>\r\n</methodResponse>\r\n");
    out
}

/// A `methodResponse` with a fault.
pub fn encode_fault(code: i64, message: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<fault>\r\n");
    Value::Struct(vec![
        ("faultCode".into(), Value::Int(code)),
        ("faultString".into(), Value::Str(message.into())),
    ])
    .write(&mut out);
    out.push_str("\r\n</fault>\r\n</methodResponse>\r\n");
    out
}

/// Reads a `methodResponse` document.
pub fn decode_response(xml: &str) -> Result<Response, String> {
    let root = Element::parse(xml).map_err(|e| e.to_string())?;
    if root.name != "methodResponse" {
        return Err(format!("expected <methodResponse>, found <{}>", root.name));
    }
    if let Some(fault) = root.child("fault") {
        let v = fault.child("value").ok_or("<fault> without <value>")?;
        let Value::Struct(members) = Value::from_element(v)? else {
            return Err("<fault> does not hold a struct".into());
        };
        let get = |n: &str| members.iter().find(|(k, _)| k == n).map(|(_, v)| v);
        let code = get("faultCode").and_then(Value::as_int).unwrap_or(0);
        let message = match get("faultString") {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        };
        return Ok(Response::Fault { code, message });
    }
    let value = root
        .child("params")
        .and_then(|p| p.child("param"))
        .and_then(|p| p.child("value"))
        .ok_or("<methodResponse> holds neither <params><param><value> nor <fault>")?;
    Ok(Response::Value(Value::from_element(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_round_trips() {
        let params = vec![
            Value::from("user:secret & <more>"),
            Value::Int(-3),
            Value::Int(1 << 40),
            Value::Bool(true),
            Value::Double(1.5),
            Value::Array(vec![Value::Int(1), Value::from("x")]),
            Value::Struct(vec![("a".into(), Value::Nil)]),
            Value::Base64(b"hi".to_vec()),
        ];
        let xml = encode_call("one.vm.info", &params);
        let (method, back) = decode_call(&xml).unwrap();
        assert_eq!(method, "one.vm.info");
        assert_eq!(back, params);
    }

    #[test]
    fn reads_oned_answers() {
        // As xmlrpc-c writes them: i4, i8 and untyped strings, CRLF between tags.
        let ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n<param><value><array><data>\r\n<value><boolean>1</boolean></value>\r\n<value><string>&lt;VM&gt;&lt;ID&gt;1&lt;/ID&gt;&lt;/VM&gt;</string></value>\r\n<value><i4>0</i4></value>\r\n</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n";
        let Response::Value(Value::Array(a)) = decode_response(ok).unwrap() else {
            panic!("not an array");
        };
        assert_eq!(a[0], Value::Bool(true));
        assert_eq!(a[1], Value::from("<VM><ID>1</ID></VM>"));
        let err = "<methodResponse><params><param><value><array><data><value><boolean>0</boolean></value><value>[one.vm.info] Error getting virtual machine [7].</value><value><i4>1024</i4></value><value><i4>7</i4></value><value><ex:i8>0</ex:i8></value></data></array></value></param></params></methodResponse>";
        let Response::Value(Value::Array(a)) = decode_response(err).unwrap() else {
            panic!("not an array");
        };
        assert_eq!(a[2], Value::Int(0x400));
        assert_eq!(a[4], Value::Int(0));
    }

    #[test]
    fn reads_faults() {
        let xml = encode_fault(-501, "Type mismatch");
        assert_eq!(
            decode_response(&xml).unwrap(),
            Response::Fault {
                code: -501,
                message: "Type mismatch".into()
            }
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "<html>503</html>",
            "<methodResponse/>",
            "<methodResponse><params><param><value><i4>x</i4></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><bogus/></value></param></params></methodResponse>",
        ] {
            assert!(decode_response(bad).is_err(), "{bad:?} decoded");
        }
    }
}
