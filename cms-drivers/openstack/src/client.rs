//! The transport: one authenticated `openstack` crate session (osauth) for every call,
//! the compute microversion negotiated once, and OpenStack's errors classified once.
//!
//! The session does Keystone v3 authentication, the catalog and the endpoint choice by
//! service type, region and interface, and renews its token before it expires (ten
//! minutes ahead). A call answered 401 anyway (a token revoked or expired early) makes
//! it authenticate again (a new session) and repeat the call once; a second 401 is
//! `Unauthenticated`.
//!
//! | answer | kind |
//! |---|---|
//! | 400 | `InvalidArgument` |
//! | 401 (after one new token) | `Unauthenticated` |
//! | 403 | `PermissionDenied`; `QuotaExceeded` when the message says "Quota exceeded" |
//! | 404 | `NotFound` |
//! | 409 | `AlreadyExists` when the message says "already exists" (or Neutron's `…Exists`); `QuotaExceeded` for Neutron's `OverQuota`; else `InvalidState` |
//! | 413, 429 | `RateLimited` (temporary, `Retry-After` or Nova's `retryAfter`); a 413 saying "Quota exceeded" without either is `QuotaExceeded` |
//! | 5xx, transport failures | `Unavailable` (temporary) |
//!
//! Messages come from the fault body (Nova's `{"itemNotFound": {"code", "message"}}`,
//! Keystone's `{"error": {…}}`, Neutron's `{"NeutronError": {…}}`, Glance's text);
//! the request id (`x-openstack-request-id`, else `x-compute-request-id`) is in the
//! error's context as `request_id`, with `status` and `call` (`GET compute
//! /servers/detail`).

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::{OnceCell, RwLock};

use cms_core::{Error, ErrorKind, Result};
use openstack::session::Session;
use osauth::services::{COMPUTE, IMAGE, NETWORK};

use crate::config::{Credentials, Interface, Project, Resolved};

/// The services the driver calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Compute,
    Image,
    Network,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Network => "network",
        }
    }
}

/// One HTTP call to a service: the path below the service's versioned endpoint
/// (`["servers", "detail"]`), the query, a JSON body, and for compute the microversion.
#[derive(Clone, Debug)]
pub struct Call {
    pub service: Service,
    pub method: Method,
    pub path: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
    pub microversion: Option<(u32, u32)>,
}

impl Call {
    pub fn new(service: Service, method: Method, path: &[&str]) -> Call {
        Call {
            service,
            method,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            microversion: None,
        }
    }

    pub fn get(service: Service, path: &[&str]) -> Call {
        Call::new(service, Method::GET, path)
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Call {
        self.query.push((key, value.into()));
        self
    }

    pub fn json(mut self, body: serde_json::Value) -> Call {
        self.body = Some(body);
        self
    }

    pub fn microversion(mut self, v: (u32, u32)) -> Call {
        self.microversion = Some(v);
        self
    }

    /// `GET compute /servers/detail`, for errors and logs (no query: it may hold names).
    pub fn describe(&self) -> String {
        format!(
            "{} {} /{}",
            self.method,
            self.service.name(),
            self.path.join("/")
        )
    }
}

/// An answer: status, headers and body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON of type `T`; a body that is not is a `Backend` error naming the
    /// call (never a panic).
    pub fn parse<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                ErrorKind::Backend,
                format!(
                    "{} answered a document the driver cannot read: {e}",
                    call.describe()
                ),
            )
            .with_context("call", call.describe())
            .with_context("request_id", request_id(&self.headers).unwrap_or_default())
        })
    }
}

/// The transport (see the [module documentation](self)).
pub struct Api {
    resolved: Resolved,
    http: reqwest::Client,
    /// The session and its generation (a new session replaces one whose token a
    /// service refused).
    session: RwLock<Option<(u64, Session)>>,
    compute: OnceCell<(u32, u32)>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("auth_url", &self.resolved.credentials.auth_url())
            .field("region", &self.resolved.region)
            .finish_non_exhaustive()
    }
}

fn osauth_error(e: osauth::Error, what: &str) -> Error {
    use osauth::ErrorKind as K;
    let kind = match e.kind() {
        K::AuthenticationFailed => ErrorKind::Unauthenticated,
        K::AccessDenied => ErrorKind::PermissionDenied,
        K::ResourceNotFound | K::EndpointNotFound => ErrorKind::NotFound,
        K::InvalidInput | K::InvalidConfig | K::IncompatibleApiVersion => {
            ErrorKind::InvalidArgument
        }
        K::Conflict => ErrorKind::InvalidState,
        K::OperationTimedOut => ErrorKind::Timeout,
        K::ProtocolError | K::InternalServerError => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    };
    let message = if e.kind() == K::EndpointNotFound {
        format!("{what}: the catalog has no such endpoint ({e}); check region and interface")
    } else {
        format!("{what}: {e}")
    };
    Error::new(kind, message)
}

impl Api {
    /// A transport for resolved settings; nothing is sent before the first call.
    pub fn new(resolved: Resolved) -> Result<Api> {
        // Connections idle longer than WSGI servers keep them (gunicorn: 2 s) are not
        // reused.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(resolved.timeout))
            .timeout(resolved.timeout)
            .pool_idle_timeout(Duration::from_millis(1500))
            .build()
            .map_err(|e| Error::new(ErrorKind::Backend, format!("HTTP client: {e}")))?;
        Ok(Api {
            resolved,
            http,
            session: RwLock::new(None),
            compute: OnceCell::new(),
        })
    }

    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// A new session: authenticates with Keystone (a new token).
    async fn build_session(&self) -> Result<Session> {
        {
            {
                let r = &self.resolved;
                let session = match &r.credentials {
                    Credentials::Password {
                        auth_url,
                        username,
                        user_domain,
                        password,
                        project,
                    } => {
                        let auth = osauth::identity::Password::new(
                            auth_url,
                            username.clone(),
                            password.expose(),
                            user_domain.clone(),
                        )
                        .map_err(|e| osauth_error(e, "auth_url"))?;
                        let auth = match project {
                            Project::Id(id) => auth
                                .with_project_scope(osauth::common::IdOrName::Id(id.clone()), None),
                            Project::Name { name, domain } => auth.with_project_scope(
                                osauth::common::IdOrName::Name(name.clone()),
                                osauth::common::IdOrName::Name(domain.clone()),
                            ),
                        };
                        Session::new_with_client(self.http.clone(), auth).await
                    }
                    Credentials::ApplicationCredential {
                        auth_url,
                        id,
                        secret,
                    } => {
                        let auth = osauth::identity::ApplicationCredential::new(
                            auth_url,
                            id.clone(),
                            secret.expose(),
                        )
                        .map_err(|e| osauth_error(e, "auth_url"))?;
                        Session::new_with_client(self.http.clone(), auth).await
                    }
                }
                .map_err(|e| {
                    osauth_error(e, "authenticating with Keystone")
                        .with_context("call", "POST identity /auth/tokens")
                })?;
                let interface = match r.interface {
                    Interface::Public => osauth::InterfaceType::Public,
                    Interface::Internal => osauth::InterfaceType::Internal,
                    Interface::Admin => osauth::InterfaceType::Admin,
                };
                let mut session = session.with_endpoint_interface(interface);
                if let Some(region) = &r.region {
                    session = session.with_region(region.clone());
                }
                Ok(session)
            }
        }
    }

    /// The session (and its generation), authenticating the first time (again after a
    /// failure).
    pub async fn session(&self) -> Result<(u64, Session)> {
        if let Some((g, s)) = self.session.read().await.as_ref() {
            return Ok((*g, s.clone()));
        }
        let mut slot = self.session.write().await;
        if let Some((g, s)) = slot.as_ref() {
            return Ok((*g, s.clone()));
        }
        let s = self.build_session().await?;
        *slot = Some((0, s.clone()));
        Ok((0, s))
    }

    /// A new token after a service refused the one of session `generation` (401): a
    /// new session replaces it, once however many calls were refused together. (The
    /// session's own forced refresh keeps a token that has not reached its expiry
    /// time, so it cannot be used for this.)
    async fn renew(&self, generation: u64) -> Result<()> {
        let mut slot = self.session.write().await;
        if let Some((g, _)) = slot.as_ref() {
            if *g != generation {
                return Ok(());
            }
        }
        tracing::debug!(target: "cms_driver_openstack", "token refused (401): authenticating again");
        let s = self.build_session().await?;
        *slot = Some((generation + 1, s));
        Ok(())
    }

    /// The compute microversion in use: the highest both the cloud (its version
    /// document) and the driver (and the configuration) know; 2.1 when the cloud
    /// announces none.
    pub async fn compute_version(&self) -> Result<(u32, u32)> {
        self.compute
            .get_or_try_init(|| async {
                let (_, session) = self.session().await?;
                let versions = session
                    .get_api_versions(COMPUTE)
                    .await
                    .map_err(|e| osauth_error(e, "reading the compute version document"))?;
                let cap = self.resolved.microversion;
                Ok(match versions {
                    None => (2, 1),
                    Some((min, max)) => {
                        let max = (u32::from(max.0), u32::from(max.1));
                        let min = (u32::from(min.0), u32::from(min.1));
                        let chosen = max.min(cap);
                        if chosen < min {
                            return Err(Error::new(
                                ErrorKind::Backend,
                                format!(
                                    "the cloud's compute API needs microversion {}.{} or later; \
                                     this driver speaks up to {}.{}",
                                    min.0, min.1, cap.0, cap.1
                                ),
                            ));
                        }
                        chosen
                    }
                })
            })
            .await
            .copied()
    }

    /// Sends a call; a 401 gets a new token and one more try. Any status is answered
    /// (see [`Api::call`] for one that classifies failures).
    async fn send(&self, call: &Call) -> Result<Answer> {
        let mut renewed = false;
        let mut resent = false;
        loop {
            let (generation, session) = self.session().await?;
            let sent = match call.service {
                Service::Compute => send_to(&session, COMPUTE, call).await,
                Service::Image => send_to(&session, IMAGE, call).await,
                Service::Network => send_to(&session, NETWORK, call).await,
            };
            let answer = match sent {
                Ok(a) => a,
                // A kept-alive connection the server closed as the request went out
                // (WSGI servers close idle ones after a few seconds): a GET is sent
                // once more, on a new connection. Other methods are left to the retry
                // layer, which knows which operations may be repeated.
                Err(e)
                    if call.method == Method::GET
                        && !resent
                        && e.kind() == ErrorKind::Unavailable =>
                {
                    resent = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if answer.status == StatusCode::UNAUTHORIZED && !renewed {
                self.renew(generation).await?;
                renewed = true;
                continue;
            }
            return Ok(answer);
        }
    }

    /// Sends a call and classifies a failure (see the [module documentation](self)).
    pub async fn call(&self, call: &Call) -> Result<Answer> {
        let answer = self.send(call).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(classify(call, answer.status, &answer.headers, &answer.body))
        }
    }

    /// Sends a call and reads its JSON answer.
    pub async fn fetch<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let answer = self.call(call).await?;
        answer.parse(call)
    }
}

async fn send_to<S>(session: &Session, service: S, call: &Call) -> Result<Answer>
where
    S: osauth::services::ServiceType + Send + Clone,
{
    let mut rb = session.request(service, call.method.clone(), &call.path);
    if !call.query.is_empty() {
        rb = rb.query(&call.query);
    }
    if let Some(body) = &call.body {
        rb = rb.json(body);
    }
    if let Some((major, minor)) = call.microversion {
        rb = rb
            .header("OpenStack-API-Version", format!("compute {major}.{minor}"))
            .header("X-OpenStack-Nova-API-Version", format!("{major}.{minor}"));
    }
    finish(rb.send_unchecked().await, call).await
}

async fn finish(
    sent: std::result::Result<reqwest::Response, osauth::Error>,
    call: &Call,
) -> Result<Answer> {
    let response = sent.map_err(|e| {
        let timed_out = e.to_string().contains("timed out");
        let mut err = osauth_error(e, &call.describe()).with_context("call", call.describe());
        if timed_out {
            err = Error::new(ErrorKind::Timeout, err.message().to_owned())
                .with_context("call", call.describe());
        }
        err
    })?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("{}: the answer broke off: {e}", call.describe()),
        )
        .with_context("call", call.describe())
    })?;
    Ok(Answer {
        status,
        headers,
        body: body.to_vec(),
    })
}

/// The request id OpenStack gave the call.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-openstack-request-id")
        .or_else(|| headers.get("x-compute-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What a fault body says: (fault name or type, message, Nova's retryAfter).
pub fn fault_of(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        // Nova: {"itemNotFound": {"code": 404, "message": "…"}}; Keystone:
        // {"error": {"code", "title", "message"}}; Neutron: {"NeutronError": {"type",
        // "message", "detail"}}; Glance (JSON form): {"code", "title", "message"}.
        for (name, inner) in &map {
            if let serde_json::Value::Object(inner) = inner {
                let text = |k: &str| inner.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                let message = text("message").or_else(|| text("title"));
                if message.is_some() {
                    let fault = if name == "NeutronError" {
                        text("type").or(Some(name.clone()))
                    } else if name == "error" {
                        text("title")
                    } else {
                        Some(name.clone())
                    };
                    let retry = inner.get("retryAfter").map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    return (fault, message, retry);
                }
            }
        }
        let text = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        if let Some(m) = text("message").or_else(|| text("detail")) {
            return (text("title").or_else(|| text("type")), Some(m), None);
        }
    }
    // Glance and WSGI middleware answer text or HTML: keep its words.
    let text = String::from_utf8_lossy(body);
    let mut plain = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                plain.push(' ');
            }
            _ if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    let joined = words.join(" ");
    let message = if joined.is_empty() {
        None
    } else {
        Some(joined.chars().take(500).collect())
    };
    (None, message, None)
}

fn retry_after(headers: &HeaderMap, body_retry: Option<&str>) -> Option<Duration> {
    let header = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    header
        .or_else(|| body_retry.and_then(|s| s.trim().parse::<u64>().ok()))
        .map(Duration::from_secs)
}

/// Classifies a failed answer (see the [module documentation](self)).
pub fn classify(call: &Call, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let (fault, message, body_retry) = fault_of(body);
    let message =
        message.unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    let says = |s: &str| message.to_ascii_lowercase().contains(s);
    let fault_is = |names: &[&str]| fault.as_deref().is_some_and(|f| names.contains(&f));
    let code = status.as_u16();
    let retry = retry_after(headers, body_retry.as_deref());
    let kind = match code {
        400 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 if says("quota exceeded") => ErrorKind::QuotaExceeded,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 if says("already exists")
            || fault.as_deref().is_some_and(|f| f.ends_with("Exists")) =>
        {
            ErrorKind::AlreadyExists
        }
        409 if fault_is(&["OverQuota"]) || says("quota exceeded") => ErrorKind::QuotaExceeded,
        409 => ErrorKind::InvalidState,
        413 if retry.is_none() && says("quota exceeded") => ErrorKind::QuotaExceeded,
        413 | 429 => ErrorKind::RateLimited,
        406 => ErrorKind::InvalidArgument,
        405 | 501 => ErrorKind::Unsupported,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    };
    let what = call.describe();
    let mut e = Error::new(kind, format!("{what} answered {code}: {message}"))
        .with_context("status", code.to_string())
        .with_context("call", what);
    if let Some(f) = fault {
        e = e.with_context("fault", f);
    }
    if let Some(id) = request_id(headers) {
        e = e.with_context("request_id", id);
    }
    if kind == ErrorKind::RateLimited {
        e = e.with_retry_after(retry.unwrap_or(Duration::from_secs(1)));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call::get(Service::Compute, &["servers", "x"])
    }

    fn kind_of(status: u16, body: &str) -> Error {
        let mut headers = HeaderMap::new();
        headers.insert("x-openstack-request-id", "req-1".parse().unwrap());
        classify(
            &call(),
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    }

    #[test]
    fn faults_are_classified_once() {
        let e = kind_of(
            404,
            r#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.message().contains("Instance x could not be found."),
            "{e}"
        );
        assert_eq!(e.context_value("request_id"), Some("req-1"));
        assert_eq!(e.context_value("fault"), Some("itemNotFound"));
        let e = kind_of(
            409,
            r#"{"conflictingRequest": {"code": 409, "message": "Cannot 'os-stop' instance x while it is in task_state powering-off"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidState);
        let e = kind_of(
            409,
            r#"{"conflictingRequest": {"code": 409, "message": "Key pair 'k' already exists."}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let e = kind_of(
            403,
            r#"{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
        let e = kind_of(
            403,
            r#"{"forbidden": {"code": 403, "message": "Policy doesn't allow x"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let e = kind_of(
            413,
            r#"{"overLimit": {"code": 413, "message": "This request was rate-limited.", "retryAfter": "7"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_temporary());
        let e = kind_of(
            400,
            r#"{"badRequest": {"code": 400, "message": "marker [m] not found"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = kind_of(
            401,
            r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        let e = kind_of(
            409,
            r#"{"NeutronError": {"type": "NetworkInUse", "message": "Unable to complete operation on network n. There are one or more ports still in use on the network.", "detail": ""}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidState);
        assert_eq!(e.context_value("fault"), Some("NetworkInUse"));
        let e = kind_of(
            409,
            r#"{"NeutronError": {"type": "OverQuota", "message": "Quota exceeded for resources: ['network'].", "detail": ""}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
        let e = kind_of(
            503,
            "<html><body><h1>503 Service Unavailable</h1>No server is available</body></html>",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert!(
            e.message()
                .contains("503 Service Unavailable No server is available"),
            "{e}"
        );
        let e = kind_of(404, "404 Not Found\n\nNo image found with ID abc\n\n");
        assert!(e.message().ends_with("No image found with ID abc"), "{e}");
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        let e = classify(
            &call(),
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"slow down",
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}
