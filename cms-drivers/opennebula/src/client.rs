//! The XML-RPC transport: calls to oned over HTTP POST, and the one place where
//! OpenNebula's answers are classified into cms errors.
//!
//! Every call sends the session `user:password` as its first parameter and expects
//! OpenNebula's answer shape: an array `[true, body, 0]` on success, or
//! `[false, message, code, …]` on failure, where `code` is one of OpenNebula's error
//! classes (0x100 authentication, 0x200 authorization, 0x400 no such object, 0x800
//! wrong state, 0x1000 bad parameters, 0x2000 internal, 0x4000 allocation, 0x8000
//! locked, 0x10000 replication). The session is a secret: it is never logged, and every
//! text that came back from the wire is redacted before it reaches an error.

use std::fmt;
use std::time::Duration;

use cms_core::{Error, ErrorKind};

use crate::xml::snippet;
use crate::xmlrpc::{decode_response, encode_call, Response, Value};

/// OpenNebula's error classes (the third element of a failed answer).
pub mod codes {
    /// The session was not accepted.
    pub const AUTHENTICATION: i64 = 0x100;
    /// The user may not do this (also how quota limits are reported).
    pub const AUTHORIZATION: i64 = 0x200;
    /// The object does not exist.
    pub const NO_EXISTS: i64 = 0x400;
    /// The object's state does not allow the action.
    pub const ACTION: i64 = 0x800;
    /// A parameter is wrong.
    pub const XML_RPC_API: i64 = 0x1000;
    /// oned failed internally (or cannot serve: no leader, zone disabled).
    pub const INTERNAL: i64 = 0x2000;
    /// Allocating the object failed (quota, leases, bad template).
    pub const ALLOCATE: i64 = 0x4000;
    /// The object is locked.
    pub const LOCKED: i64 = 0x8000;
    /// The HA log could not be replicated.
    pub const REPLICATION: i64 = 0x10000;
}

/// The thing a call is about, named in error messages: "VM `42` not found".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    what: String,
    resource: Option<String>,
}

impl Target {
    /// A VM (a cms instance).
    pub fn vm(id: impl fmt::Display) -> Target {
        Target::object("VM", id, Some("instance"))
    }

    /// A disk image.
    pub fn image(id: impl fmt::Display) -> Target {
        Target::object("image", id, Some("image"))
    }

    /// A persistent DATABLOCK image (a cms volume).
    pub fn volume(id: impl fmt::Display) -> Target {
        Target::object("volume (image)", id, Some("volume"))
    }

    /// A non-persistent DATABLOCK image (a cms snapshot).
    pub fn snapshot(id: impl fmt::Display) -> Target {
        Target::object("snapshot (image)", id, Some("snapshot"))
    }

    /// A security group.
    pub fn security_group(id: impl fmt::Display) -> Target {
        Target::object("security group", id, Some("security group"))
    }

    /// A VM template.
    pub fn template(id: impl fmt::Display) -> Target {
        Target::object("VM template", id, Some("image"))
    }

    /// A virtual network.
    pub fn vnet(id: impl fmt::Display) -> Target {
        Target::object("virtual network", id, Some("network"))
    }

    /// A cluster (a cms location).
    pub fn cluster(id: impl fmt::Display) -> Target {
        Target::object("cluster", id, Some("location"))
    }

    /// An object being created, by its name.
    pub fn new_object(kind: &str, name: &str) -> Target {
        Target {
            what: if name.is_empty() {
                format!("a new {kind}")
            } else {
                format!("new {kind} `{name}`")
            },
            resource: None,
        }
    }

    /// The connected user.
    pub fn user() -> Target {
        Target {
            what: "the OpenNebula user".into(),
            resource: None,
        }
    }

    /// A pool listing ("the VM pool").
    pub fn pool(name: &str) -> Target {
        Target {
            what: format!("the {name} pool"),
            resource: None,
        }
    }

    fn object(what: &str, id: impl fmt::Display, resource: Option<&str>) -> Target {
        Target {
            what: format!("{what} `{id}`"),
            resource: resource.map(|r| format!("{r} {id}")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// How a call failed, before it is classified into a [`cms_core::Error`].
///
/// Every text in it has been redacted: it carries no session or password.
#[derive(Clone, Debug, PartialEq)]
pub enum RpcError {
    /// oned answered `[false, message, code]`.
    OpenNebula {
        method: String,
        code: i64,
        message: String,
        user: String,
    },
    /// The XML-RPC layer answered a fault (unknown method, wrong parameter types).
    Fault {
        method: String,
        code: i64,
        message: String,
    },
    /// The endpoint answered an HTTP status other than 200.
    Http {
        method: String,
        status: u16,
        body: String,
    },
    /// The endpoint could not be reached, or the connection broke.
    Transport {
        method: String,
        /// The connection was never made (refused, unresolvable): nothing was sent.
        connect: bool,
        timeout: bool,
        message: String,
    },
    /// The answer is not XML-RPC, or not OpenNebula's answer shape, or its document
    /// cannot be read.
    Decode { method: String, message: String },
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::OpenNebula {
                method,
                code,
                message,
                ..
            } => write!(f, "{method}: {message} (OpenNebula error {code:#x})"),
            RpcError::Fault {
                method,
                code,
                message,
            } => write!(f, "{method}: XML-RPC fault {code}: {message}"),
            RpcError::Http {
                method,
                status,
                body,
            } => write!(f, "{method}: HTTP status {status}: {body}"),
            RpcError::Transport {
                method, message, ..
            } => write!(f, "{method}: {message}"),
            RpcError::Decode { method, message } => write!(f, "{method}: {message}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// Whether an OpenNebula message speaks of a quota or of exhausted resources.
fn speaks_of_quota(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["quota", "limit of", "lease", "no free", "not enough"]
        .iter()
        .any(|w| m.contains(w))
}

/// Classifies an OpenNebula error answer: the kind, whether trying again later may
/// help, and whether the request certainly was not carried out.
///
/// | code | kind | temporary |
/// |---|---|---|
/// | 0x100 authentication | Unauthenticated | no |
/// | 0x200 authorization | PermissionDenied; QuotaExceeded when the message names a quota (oned reports quota limits this way) | no |
/// | 0x400 no such object | NotFound | no |
/// | 0x800 wrong state | InvalidState | no |
/// | 0x1000 bad parameter | InvalidArgument | no |
/// | 0x2000 internal | Unavailable when oned cannot serve (no leader, election, zone disabled, replicating); AlreadyExists when the name "is already taken" (oned 7 reports some allocations so); InvalidState when a VM "has to be" in another state (`one.vm.disksaveas`); else Backend | yes / no |
/// | 0x4000 allocation | AlreadyExists when the name "is already taken"; InvalidState when an image cannot be cloned "in state" it is in; QuotaExceeded when the message names a quota or leases; else Backend | no |
/// | 0x8000 locked | InvalidState, not carried out | yes |
/// | 0x10000 replication | Unavailable | yes |
/// | other | Backend | no |
pub fn classify(code: i64, message: &str) -> (ErrorKind, bool, bool) {
    use ErrorKind::*;
    match code {
        codes::AUTHENTICATION => (Unauthenticated, false, false),
        codes::AUTHORIZATION if speaks_of_quota(message) => (QuotaExceeded, false, false),
        codes::AUTHORIZATION => (PermissionDenied, false, false),
        codes::NO_EXISTS => (NotFound, false, false),
        codes::ACTION => (InvalidState, false, false),
        codes::XML_RPC_API => (InvalidArgument, false, false),
        codes::INTERNAL => {
            let m = message.to_ascii_lowercase();
            if ["leader", "election", "zone disabled", "replicating"]
                .iter()
                .any(|w| m.contains(w))
            {
                (Unavailable, true, false)
            } else if m.contains("already taken") {
                (AlreadyExists, false, false)
            } else if m.contains("has to be") {
                (InvalidState, false, false)
            } else {
                (Backend, false, false)
            }
        }
        codes::ALLOCATE if message.contains("already taken") => (AlreadyExists, false, false),
        codes::ALLOCATE if message.contains("in state") => (InvalidState, false, false),
        codes::ALLOCATE if speaks_of_quota(message) => (QuotaExceeded, false, false),
        codes::ALLOCATE => (Backend, false, false),
        codes::LOCKED => (InvalidState, true, true),
        codes::REPLICATION => (Unavailable, true, false),
        _ => (Backend, false, false),
    }
}

/// oned prefixes its messages with `[method] `; the cms message names the method
/// elsewhere.
fn strip_method_prefix(message: &str) -> &str {
    match message.strip_prefix('[') {
        Some(rest) => match rest.split_once("] ") {
            Some((_, tail)) => tail,
            None => message,
        },
        None => message,
    }
}

impl RpcError {
    /// The method that failed.
    pub fn method(&self) -> &str {
        match self {
            RpcError::OpenNebula { method, .. }
            | RpcError::Fault { method, .. }
            | RpcError::Http { method, .. }
            | RpcError::Transport { method, .. }
            | RpcError::Decode { method, .. } => method,
        }
    }

    /// OpenNebula's error class, when oned answered one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::OpenNebula { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Turns the failure into a cms error about `target`. This is the one place where
    /// OpenNebula failures become error kinds (see [`classify`]).
    pub fn into_error(self, target: &Target) -> Error {
        let method = self.method().to_owned();
        let mut e = match &self {
            RpcError::OpenNebula {
                code,
                message,
                user,
                ..
            } => {
                let (kind, temporary, not_executed) = classify(*code, message);
                let text = strip_method_prefix(message);
                let msg = match *code {
                    codes::NO_EXISTS => format!("{target} not found (OpenNebula error {code:#x})"),
                    codes::AUTHENTICATION => format!(
                        "OpenNebula did not accept the credentials of user `{user}` \
                         (OpenNebula error {code:#x}); check the username and the password"
                    ),
                    _ => format!("{target}: {text} (OpenNebula error {code:#x})"),
                };
                Error::new(kind, msg)
                    .temporary(temporary)
                    .not_executed(not_executed)
                    .with_context("opennebula_error", format!("{code:#x}"))
                    .with_context("opennebula_message", text)
            }
            RpcError::Fault { code, message, .. } => Error::new(
                ErrorKind::Backend,
                format!(
                    "{target}: {method} answered XML-RPC fault {code}: {message} \
                     (is the endpoint an OpenNebula of a version this driver knows?)"
                ),
            )
            .with_context("xmlrpc_fault", code.to_string()),
            RpcError::Http { status, body, .. } => Error::new(
                ErrorKind::Unavailable,
                format!("{target}: {method} answered HTTP status {status}: {body}"),
            )
            .temporary(*status >= 500 || matches!(*status, 408 | 429))
            .with_context("http_status", status.to_string()),
            RpcError::Transport {
                connect,
                timeout,
                message,
                ..
            } => Error::new(
                ErrorKind::Unavailable,
                format!("{target}: {method}: {message}"),
            )
            .not_executed(*connect)
            .with_context(
                "transport",
                if *connect {
                    "connect"
                } else if *timeout {
                    "timeout"
                } else {
                    "io"
                },
            ),
            RpcError::Decode { message, .. } => {
                Error::new(ErrorKind::Backend, format!("{target}: {method}: {message}"))
            }
        };
        e = e.with_context("method", method);
        if let Some(r) = &target.resource {
            e = e.with_resource(r.clone());
        }
        e.with_source(self)
    }
}

/// The session `user:password`, kept out of every Debug and Display.
#[derive(Clone)]
struct Session {
    user: String,
    password: String,
    joined: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Session({}:<redacted>)", self.user)
    }
}

/// An async XML-RPC client of oned.
#[derive(Clone, Debug)]
pub struct OneClient {
    http: reqwest::Client,
    endpoint: String,
    session: Session,
}

impl OneClient {
    /// A client of the oned at `endpoint` (`http://HOST:2633/RPC2`) with the session
    /// `username:password`; each call may take up to `timeout`.
    pub fn new(
        endpoint: &str,
        username: &str,
        password: &str,
        timeout: Duration,
    ) -> cms_core::Result<OneClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("cms-driver-opennebula/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Backend,
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        Ok(OneClient {
            http,
            endpoint: endpoint.to_owned(),
            session: Session {
                user: username.to_owned(),
                password: password.to_owned(),
                joined: format!("{username}:{password}"),
            },
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The user of the session.
    pub fn username(&self) -> &str {
        &self.session.user
    }

    /// Replaces the session and the password in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.session.joined, "***");
        if !self.session.password.is_empty() {
            out = out.replace(&self.session.password, "***");
        }
        out
    }

    /// Calls `method` with the session followed by `args`, and returns the body of a
    /// successful answer (`[true, body, 0]`).
    pub async fn call(&self, method: &str, args: &[Value]) -> Result<Value, RpcError> {
        let mut params = Vec::with_capacity(args.len() + 1);
        params.push(Value::Str(self.session.joined.clone()));
        params.extend_from_slice(args);
        let body = encode_call(method, &params);
        drop(params);
        tracing::debug!(method, endpoint = %self.endpoint, "XML-RPC call");
        let answer = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(method, &e))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .map_err(|e| self.transport_error(method, &e))?;
        if status != reqwest::StatusCode::OK {
            return Err(RpcError::Http {
                method: method.to_owned(),
                status: status.as_u16(),
                body: self.redact(&snippet(&text, 200)),
            });
        }
        self.interpret(method, &text)
    }

    /// Reads an answer body: the success value, or the failure it reports.
    fn interpret(&self, method: &str, text: &str) -> Result<Value, RpcError> {
        let decode = |message: String| RpcError::Decode {
            method: method.to_owned(),
            message: self.redact(&message),
        };
        let response = decode_response(text).map_err(|why| {
            decode(format!(
                "the answer is not an XML-RPC methodResponse ({why}); it begins `{}`",
                snippet(text, 120)
            ))
        })?;
        let items = match response {
            Response::Fault { code, message } => {
                return Err(RpcError::Fault {
                    method: method.to_owned(),
                    code,
                    message: self.redact(&message),
                })
            }
            Response::Value(Value::Array(items)) => items,
            Response::Value(other) => {
                return Err(decode(format!(
                    "expected OpenNebula's answer array, got a {}",
                    other.type_name()
                )))
            }
        };
        let mut it = items.into_iter();
        match (it.next(), it.next(), it.next()) {
            (Some(Value::Bool(true)), Some(body), _) => Ok(body),
            (Some(Value::Bool(false)), Some(message), code) => Err(RpcError::OpenNebula {
                method: method.to_owned(),
                code: code.as_ref().and_then(Value::as_int).unwrap_or(0),
                message: self.redact(match &message {
                    Value::Str(s) => s,
                    _ => "(no message)",
                }),
                user: self.session.user.clone(),
            }),
            _ => Err(decode(
                "expected OpenNebula's answer array [success, body, code]".into(),
            )),
        }
    }

    fn transport_error(&self, method: &str, e: &reqwest::Error) -> RpcError {
        // The whole chain: reqwest's own text says little ("error sending request").
        let mut message = format!("cannot reach the OpenNebula endpoint `{}`", self.endpoint);
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut last = String::new();
        while let Some(s) = source {
            last = s.to_string();
            source = s.source();
        }
        if e.is_timeout() {
            message.push_str(": the call timed out");
        } else if !last.is_empty() {
            message.push_str(": ");
            message.push_str(&last);
        } else {
            message.push_str(&format!(": {e}"));
        }
        RpcError::Transport {
            method: method.to_owned(),
            connect: e.is_connect(),
            timeout: e.is_timeout(),
            message: self.redact(&message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_kind() {
        use ErrorKind::*;
        let cases = [
            (0x100, "", Unauthenticated, false),
            (0x200, "User [2] : not authorized", PermissionDenied, false),
            (
                0x200,
                "User [2] : limit of 2 reached for VMS quota in VM",
                QuotaExceeded,
                false,
            ),
            (0x400, "", NotFound, false),
            (0x800, "", InvalidState, false),
            (0x1000, "", InvalidArgument, false),
            (0x2000, "Internal error", Backend, false),
            (
                0x2000,
                "NAME is already taken by SecurityGroup 101.",
                AlreadyExists,
                false,
            ),
            (
                0x2000,
                "VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.",
                InvalidState,
                false,
            ),
            (
                0x4000,
                "Error allocating a new image. Cannot clone image in state: USED_PERS",
                InvalidState,
                false,
            ),
            (
                0x2000,
                "Cannot process request, no leader found",
                Unavailable,
                true,
            ),
            (
                0x4000,
                "Error allocating a new virtual machine.",
                Backend,
                false,
            ),
            (
                0x4000,
                "Error allocating a new virtual machine. Cannot get IP/MAC lease",
                QuotaExceeded,
                false,
            ),
            (
                0x4000,
                "Error allocating a new virtual network. NAME is already taken by NET 3.",
                AlreadyExists,
                false,
            ),
            (
                0x8000,
                "The resource virtual machine is locked.",
                InvalidState,
                true,
            ),
            (0x10000, "", Unavailable, true),
            (0x7, "", Backend, false),
        ];
        for (code, msg, kind, temporary) in cases {
            let (k, t, _) = classify(code, msg);
            assert_eq!((k, t), (kind, temporary), "code {code:#x} {msg:?}");
        }
    }

    #[test]
    fn strips_the_method_prefix() {
        assert_eq!(
            strip_method_prefix("[one.vm.action] Error performing action"),
            "Error performing action"
        );
        assert_eq!(strip_method_prefix("no prefix"), "no prefix");
    }

    #[test]
    fn redacts_and_hides_the_session() {
        let c = OneClient::new(
            "http://127.0.0.1:2633/RPC2",
            "alice",
            "s3cret-pw",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.redact("x alice:s3cret-pw y s3cret-pw"), "x *** y ***");
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }
}
