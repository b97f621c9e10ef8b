//! The DMTF CIMI frontend (DSP0263) under `/cimi`: the standard cloud API over every
//! provider, in JSON and XML.
//!
//! - `/cimi/cloudEntryPoint` is the entry point of the tenant's first provider,
//!   `/cimi/{provider}/cloudEntryPoint` each provider's; every `id` and `href` is an
//!   absolute URL under the provider's `baseURI` (`public_url` in the configuration,
//!   else the request's `Host`).
//! - Authentication: `Authorization: Basic tenant:api_key` (what CIMI clients send) or
//!   the native `Bearer` API key; 401 carries `WWW-Authenticate: Basic realm="cms"`.
//! - The representation is chosen by `Accept`: `application/xml` (or `text/xml`) gives
//!   XML, `application/json` JSON; a missing `Accept`, `*/*` or `application/*` give
//!   JSON; an `Accept` naming neither is 406. Request bodies are read by their
//!   `Content-Type` (parameters such as `charset` ignored; without one, a body that
//!   starts with `<` is XML).
//! - Operations that take time (creating a machine, its actions, deleting it) are the
//!   server's durable jobs, shown as CIMI Jobs: 202 with `CIMI-Job-URI`.
//!
//! The resources are in [`machines`] (machines, their actions and parts), [`catalog`]
//! (images, configurations, templates, credentials, networks, volumes, metadata and
//! the entry point) and [`jobs`]; collection queries in [`query`], documents in
//! [`doc`].

pub mod catalog;
pub mod doc;
pub mod filter;
pub mod jobs;
pub mod machines;
pub mod query;

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use base64::Engine as _;
use bytes::{Buf, Bytes};
use cms_core::ErrorKind;
use futures::{FutureExt, Stream};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::app::App;
use crate::auth::Tenant;
use crate::frontends::body::{self, BodyError};
use crate::frontends::url::{percent_decode, percent_encode_segment};
use crate::limits::RouteClass;
use crate::service::Provider;
use doc::{Format, Node, Obj, NS};

/// The path the frontend is served under.
pub const PREFIX: &str = "/cimi";

/// The version of the specification answered in `CIMI-Specification-Version`.
pub const SPEC_VERSION: &str = "1.1.0";

/// Whether a request path is the frontend's.
pub fn is_cimi_path(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// An error as a CIMI client reads it: a status and what is wrong.
#[derive(Debug)]
pub struct CimiError {
    pub status: StatusCode,
    /// A stable name of the error (`not_found`, `invalid_filter`…).
    pub code: Cow<'static, str>,
    pub message: String,
    /// The methods allowed, for 405.
    pub allow: Option<String>,
    /// For 429 and 503: when to try again, in seconds.
    pub retry_after: Option<u64>,
}

impl CimiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> CimiError {
        CimiError {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad(message: impl Into<String>) -> CimiError {
        CimiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: there is no such resource (for this tenant).
    pub fn not_found(message: impl Into<String>) -> CimiError {
        CimiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the resource does not offer the operation (now).
    pub fn not_allowed(message: impl Into<String>, allow: &str) -> CimiError {
        let mut e = CimiError::new(StatusCode::METHOD_NOT_ALLOWED, "not_allowed", message);
        e.allow = Some(allow.to_owned());
        e
    }

    /// 501: the provider does not support it.
    pub fn unsupported(message: impl Into<String>) -> CimiError {
        CimiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", message)
    }

    fn unauthenticated(message: impl Into<String>) -> CimiError {
        CimiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
}

/// The status of an error of `kind`.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::InvalidState => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied | ErrorKind::QuotaExceeded => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Backend => StatusCode::BAD_GATEWAY,
    }
}

impl From<cms_core::Error> for CimiError {
    fn from(e: cms_core::Error) -> CimiError {
        let status = status_of(e.kind());
        let mut message = e.message().to_owned();
        if let Some(p) = e.provider() {
            if !message.contains(p) {
                message = format!("{message} (provider {p})");
            }
        }
        CimiError {
            status,
            code: Cow::Borrowed(e.kind().as_str()),
            message,
            allow: None,
            retry_after: e.retry_after().map(|d| d.as_secs().max(1)),
        }
    }
}

impl From<doc::ReadError> for CimiError {
    fn from(e: doc::ReadError) -> CimiError {
        CimiError::new(StatusCode::BAD_REQUEST, "malformed_body", e.0)
    }
}

/// What a handler sees of a request.
pub struct Cx<'a> {
    pub app: &'a App,
    pub tenant: &'a Tenant,
    pub provider: &'a Provider,
    /// Where clients reach the server (`http://host:port`).
    pub origin: String,
    /// `{origin}/cimi/{provider}/`: the base of every href.
    pub base: String,
    pub format: Format,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

impl Cx<'_> {
    /// The href of `parts` under the base, each percent-encoded.
    pub fn href(&self, parts: &[&str]) -> String {
        format!("{}{}", self.origin, self.path(parts))
    }

    /// The path of [`href`](Self::href) (`/cimi/{provider}/…`), what the server keeps
    /// of a reference: the origin may differ from one request to the next.
    pub fn path(&self, parts: &[&str]) -> String {
        let mut s = format!("{PREFIX}/{}", percent_encode_segment(&self.provider.name));
        for p in parts {
            s.push('/');
            s.push_str(&percent_encode_segment(p));
        }
        s
    }

    /// The request body as a document, read by its `Content-Type`.
    pub fn document(&self) -> Result<Obj, CimiError> {
        if self.body.is_empty() {
            return Err(CimiError::bad("the request needs a body (a CIMI document)"));
        }
        let format = match body::media_type(self.headers).as_deref() {
            Some("application/json") | Some("text/json") => Format::Json,
            Some(t) if t.ends_with("+json") => Format::Json,
            Some("application/xml") | Some("text/xml") => Format::Xml,
            Some(t) if t.ends_with("+xml") => Format::Xml,
            None | Some("") => {
                if self.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
                    Format::Xml
                } else {
                    Format::Json
                }
            }
            Some(other) => {
                return Err(CimiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!(
                        "the body's Content-Type `{other}` is neither application/json nor application/xml"
                    ),
                ))
            }
        };
        Ok(doc::read(&self.body, format)?)
    }

    /// The id a reference names in `collection` of this provider: `href` is one this
    /// frontend handed out (absolute, or a path from `/cimi/`), or a bare id.
    pub fn ref_id(&self, href: &str, collection: &str, field: &str) -> Result<String, CimiError> {
        let path = match href.find("://") {
            Some(i) => match href[i + 3..].find('/') {
                Some(j) => &href[i + 3 + j..],
                None => "",
            },
            None => href,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let bad = || {
            CimiError::bad(format!(
                "`{field}` must refer to one of provider {}'s {collection} ({}{collection}/…), not `{href}`",
                self.provider.name, self.base
            ))
        };
        if !path.contains('/') {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(percent_decode(path).into_owned());
        }
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let at = segs.iter().position(|s| *s == "cimi").ok_or_else(bad)?;
        match &segs[at + 1..] {
            [p, c, id] if *c == collection && !id.is_empty() => {
                if percent_decode(p) != *self.provider.name {
                    return Err(CimiError::bad(format!(
                        "`{field}` refers to provider {}, but this request is to provider {}: a machine is made of one provider's resources",
                        percent_decode(p),
                        self.provider.name
                    )));
                }
                Ok(percent_decode(id).into_owned())
            }
            _ => Err(bad()),
        }
    }
}

/// The representation `Accept` asks for.
fn negotiate(headers: &HeaderMap) -> Result<Format, CimiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    let mut best: Option<(f32, usize, Format)> = None;
    for (i, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/json" | "text/json" | "*/*" | "application/*" => Format::Json,
            m if m.ends_with("+json") => Format::Json,
            "application/xml" | "text/xml" | "text/*" => Format::Xml,
            m if m.ends_with("+xml") => Format::Xml,
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        // The highest q wins; of equal ones, the first listed.
        if best.is_none_or(|(bq, _, _)| q > bq) {
            best = Some((q, i, format));
        }
    }
    best.map(|(_, _, f)| f).ok_or_else(|| {
        CimiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            format!("`Accept: {accept}` names neither application/json nor application/xml"),
        )
    })
}

/// The tenant the request's credentials name: Basic `tenant:api_key`, or the
/// native `Bearer` API key.
fn authenticate<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a Tenant, CimiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(CimiError::unauthenticated(
            "missing credentials: send `Authorization: Basic base64(tenant:api_key)`",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return app
            .tenants
            .by_api_key(rest.trim())
            .ok_or_else(|| CimiError::unauthenticated("the API key is not valid"));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(CimiError::unauthenticated(
            "the `Authorization` header must be `Basic base64(tenant:api_key)` or `Bearer <api key>`",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            CimiError::unauthenticated("the Basic credentials are not base64 of `tenant:api_key`")
        })?;
    let (user, key) = decoded.split_once(':').ok_or_else(|| {
        CimiError::unauthenticated("the Basic credentials must be `tenant:api_key`")
    })?;
    match app.tenants.by_api_key(key) {
        Some(t) if *t.name == *user => Ok(t),
        _ => Err(CimiError::unauthenticated(
            "the tenant name or API key is not valid",
        )),
    }
}

/// The origin (`http://host:port`) hrefs start with.
fn origin(app: &App, headers: &HeaderMap) -> String {
    if let Some(u) = &app.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if app.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// A rendered document with `status`.
pub fn respond(status: StatusCode, doc: &Obj, ty: &str, format: Format) -> Response {
    let mut r = Response::new(doc::render(doc, ty, format).into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    r
}

/// An answer without a body.
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Bytes::new().into());
    *r.status_mut() = status;
    r
}

/// Adds a header whose value was made here (an href, a job's URL).
pub fn with_header(mut r: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

fn error_response(e: &CimiError, format: Format, request_id: &str) -> Response {
    let doc = Obj::new()
        .text("resourceURI", format!("{NS}/Error"))
        .with("status", Node::Int(i64::from(e.status.as_u16())))
        .text("code", e.code.clone())
        .text("message", e.message.clone())
        .text("requestId", request_id);
    let mut r = respond(e.status, &doc, "Error", format);
    let h = r.headers_mut();
    if e.status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"cms\""),
        );
    }
    if let Some(a) = e
        .allow
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        h.insert(header::ALLOW, a);
    }
    if let Some(s) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Whether a request with `method` carries a body to read.
fn takes_body(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT
}

/// Serves one request of the frontend.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle_http<S, B>(
    app: &App,
    method: Method,
    path: &str,
    query: &str,
    headers: HeaderMap,
    mut body: std::pin::Pin<&mut S>,
    request_id: String,
    started: Instant,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    // Errors are answered in JSON when `Accept` names no representation served.
    let (format, unacceptable) = match negotiate(&headers) {
        Ok(f) => (f, None),
        Err(e) => (Format::Json, Some(e)),
    };
    let mut tenant_name: Option<std::sync::Arc<str>> = None;
    let result = async {
        if let Some(e) = unacceptable {
            return Err(e);
        }
        if let Some(detail) = body::headers_too_large(&headers) {
            return Err(CimiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                detail,
            ));
        }
        let tenant = authenticate(app, &headers)?;
        tenant_name = Some(tenant.name.clone());
        tenant
            .rate_limits
            .check(RouteClass::of_method(&method))
            .map_err(|l| CimiError::from(l.error(&tenant.name)))?;
        let rest = path.strip_prefix(PREFIX).unwrap_or("");
        let segs: Vec<Cow<'_, str>> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        if segs.len() > 6 {
            return Err(CimiError::not_found(format!(
                "no CIMI resource at `{path}`"
            )));
        }
        // `/cimi/cloudEntryPoint` is the first provider's; `/cimi/{provider}/…` each one's.
        let (provider_name, rest): (String, Vec<&str>) = match segs.first().map(|s| &**s) {
            None | Some("cloudEntryPoint") => {
                let first = app.service.providers_of(tenant).next().ok_or_else(|| {
                    CimiError::new(
                        StatusCode::FORBIDDEN,
                        "permission_denied",
                        format!("tenant {} may use no provider", tenant.name),
                    )
                })?;
                (first.name.to_string(), vec!["cloudEntryPoint"])
            }
            Some(p) => (p.to_owned(), segs[1..].iter().map(|s| &**s).collect()),
        };
        if segs.len() > 1 && segs[0] == "cloudEntryPoint" {
            return Err(CimiError::not_found(format!(
                "no CIMI resource at `{path}`"
            )));
        }
        let provider = app.service.provider(tenant, &provider_name)?;
        let body = if takes_body(&method) {
            body::read(&headers, body.as_mut())
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge => CimiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        e.detail(),
                    ),
                    BodyError::Unreadable(_) => CimiError::bad(e.detail()),
                })?
        } else {
            Bytes::new()
        };
        let origin = origin(app, &headers);
        let base = format!(
            "{origin}{PREFIX}/{}/",
            percent_encode_segment(&provider.name)
        );
        let cx = Cx {
            app,
            tenant,
            provider,
            origin,
            base,
            format,
            query,
            headers: &headers,
            body,
        };
        match AssertUnwindSafe(route(&cx, &method, &rest))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(request_id = %request_id, path, "CIMI handler panicked");
                Err(CimiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed while handling the request",
                ))
            }
        }
    }
    .await;
    if body::declares_body(&headers) {
        body::drain(body.as_mut()).await;
    }
    let (mut response, code) = match result {
        Ok(r) => (r, None),
        Err(e) => (
            error_response(&e, format, &request_id),
            Some(e.code.into_owned()),
        ),
    };
    let h = response.headers_mut();
    h.insert(
        "cimi-specification-version",
        HeaderValue::from_static(SPEC_VERSION),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics
        .record(crate::metrics::cimi_template(), &method, status, elapsed);
    tracing::info!(
        target: "cms_server::access",
        request_id = %request_id,
        method = %method,
        route = PREFIX,
        path,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        tenant = tenant_name.as_deref().unwrap_or("-"),
        problem = code.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// The methods a path answers (for 405), when it names a resource.
fn allowed(rest: &[&str]) -> Option<&'static str> {
    const COLLECTIONS: &[&str] = &[
        "machines",
        "machineTemplates",
        "credentials",
        "networks",
        "volumes",
    ];
    const READ_ONLY: &[&str] = &[
        "cloudEntryPoint",
        "machineImages",
        "machineConfigs",
        "networkConfigs",
        "volumeConfigs",
        "jobs",
        "resourceMetadata",
    ];
    Some(match rest {
        [c] if READ_ONLY.contains(c) => "GET",
        [c] if COLLECTIONS.contains(c) => "GET, POST",
        ["machines", _] => "GET, PUT, POST, DELETE",
        ["jobs", _] => "GET, DELETE",
        ["cloudEntryPoint", _] => return None,
        [c, _] if READ_ONLY.contains(c) || COLLECTIONS.contains(c) => "GET, DELETE",
        ["machines", _, "volumes"] => "GET, POST",
        ["machines", _, _] => "GET, POST",
        ["machines", _, "volumes", _] => "GET, DELETE",
        ["machines", _, "disks" | "networkInterfaces", _] => "GET",
        ["jobs", _, "stop"] => "POST",
        _ => return None,
    })
}

async fn route(cx: &Cx<'_>, method: &Method, rest: &[&str]) -> Result<Response, CimiError> {
    use machines as m;
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let delete = *method == Method::DELETE;
    match rest {
        ["cloudEntryPoint"] if get => catalog::entry_point(cx).await,
        ["machines"] if get => m::list(cx).await,
        ["machines"] if post => m::create(cx).await,
        ["machines", id] if get => m::get(cx, id).await,
        ["machines", id] if delete => m::delete(cx, id).await,
        ["machines", id] if *method == Method::PUT => m::edit(cx, id).await,
        ["machines", id] if post => m::act(cx, id, None).await,
        ["machines", id, part @ ("disks" | "volumes" | "networkInterfaces")] if get => {
            m::part(cx, id, part).await
        }
        ["machines", id, "volumes"] if post => m::attach(cx, id).await,
        ["machines", id, "volumes", vid] if get => m::attachment(cx, id, vid).await,
        ["machines", id, "volumes", vid] if delete => m::detach(cx, id, vid).await,
        ["machines", id, part @ ("disks" | "networkInterfaces"), n] if get => {
            m::part_item(cx, id, part, n).await
        }
        ["machines", id, action] if post => m::act(cx, id, Some(action)).await,
        ["machineImages"] if get => catalog::list(cx, catalog::Family::Images).await,
        ["machineImages", id] if get => catalog::get(cx, catalog::Family::Images, id).await,
        ["machineImages", id] if delete => catalog::delete(cx, catalog::Family::Images, id).await,
        ["machineConfigs"] if get => catalog::list(cx, catalog::Family::Configs).await,
        ["machineConfigs", id] if get => catalog::get(cx, catalog::Family::Configs, id).await,
        ["machineTemplates"] if get => catalog::list(cx, catalog::Family::Templates).await,
        ["machineTemplates"] if post => catalog::create_template(cx).await,
        ["machineTemplates", id] if get => catalog::get(cx, catalog::Family::Templates, id).await,
        ["machineTemplates", id] if delete => {
            catalog::delete(cx, catalog::Family::Templates, id).await
        }
        ["credentials"] if get => catalog::list(cx, catalog::Family::Credentials).await,
        ["credentials"] if post => catalog::create_credential(cx).await,
        ["credentials", id] if get => catalog::get(cx, catalog::Family::Credentials, id).await,
        ["credentials", id] if delete => {
            catalog::delete(cx, catalog::Family::Credentials, id).await
        }
        ["networks"] if get => catalog::list(cx, catalog::Family::Networks).await,
        ["networks"] if post => catalog::create_network(cx).await,
        ["networks", id] if get => catalog::get(cx, catalog::Family::Networks, id).await,
        ["networks", id] if delete => catalog::delete(cx, catalog::Family::Networks, id).await,
        ["networkConfigs"] if get => catalog::list(cx, catalog::Family::NetworkConfigs).await,
        ["networkConfigs", id] if get => {
            catalog::get(cx, catalog::Family::NetworkConfigs, id).await
        }
        ["volumes"] if get => catalog::list(cx, catalog::Family::Volumes).await,
        ["volumes"] if post => catalog::create_volume(cx).await,
        ["volumes", id] if get => catalog::get(cx, catalog::Family::Volumes, id).await,
        ["volumes", id] if delete => catalog::delete(cx, catalog::Family::Volumes, id).await,
        ["volumeConfigs"] if get => catalog::list(cx, catalog::Family::VolumeConfigs).await,
        ["volumeConfigs", id] if get => catalog::get(cx, catalog::Family::VolumeConfigs, id).await,
        ["jobs"] if get => jobs::list(cx).await,
        ["jobs", id] if get => jobs::get(cx, id).await,
        ["jobs", id] if delete => jobs::stop(cx, id).await,
        ["jobs", id, "stop"] if post => jobs::stop(cx, id).await,
        ["resourceMetadata"] if get => catalog::list(cx, catalog::Family::Metadata).await,
        ["resourceMetadata", id] if get => catalog::get(cx, catalog::Family::Metadata, id).await,
        _ => Err(match allowed(rest) {
            Some(allow) => CimiError::not_allowed(
                format!(
                    "{} is not an operation of `{}{}`",
                    method,
                    cx.base,
                    rest.join("/")
                ),
                allow,
            ),
            None => CimiError::not_found(format!(
                "no CIMI resource at `{}{}`",
                cx.base,
                rest.join("/")
            )),
        }),
    }
}
