//! The HTTP transport: requests to a cms server's native API (`/v1`) with the bearer
//! key, and its RFC 9457 problem documents turned back into [`cms_core::Error`]s.

use std::sync::Arc;
use std::time::Duration;

use cms_core::{Error, ErrorKind, InstanceFilter, Operation, PageRequest, Result};
use reqwest::{header, Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{check_endpoint, ApiKey, RemoteConfig};
use crate::model::{AllInstances, ListResponse, Problem, ProviderInfo};
use crate::RemoteDriver;

/// A client of one cms server's native API: its providers, and a [`RemoteDriver`] for
/// each. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
}

/// A request: what operation it serves (for errors), its method and path segments
/// (each percent-encoded on the way).
pub(crate) struct Call<'a> {
    pub op: Option<Operation>,
    pub method: Method,
    pub path: &'a [&'a str],
    pub query: Vec<(&'static str, String)>,
    /// JSON, serialized once.
    pub body: Option<Vec<u8>>,
    pub idempotency_key: Option<String>,
}

impl<'a> Call<'a> {
    pub fn new(op: Option<Operation>, method: Method, path: &'a [&'a str]) -> Call<'a> {
        Call {
            op,
            method,
            path,
            query: Vec::new(),
            body: None,
            idempotency_key: None,
        }
    }

    pub fn set_body(&mut self, body: &impl Serialize) {
        self.body = serde_json::to_vec(body).ok();
    }
}

impl Client {
    /// A client of the server at `endpoint` (its base URL) calling with `key`; each
    /// request may take `timeout`.
    pub fn new(endpoint: &str, key: ApiKey, timeout: Duration) -> Result<Client> {
        let mut base = check_endpoint(endpoint)?;
        // Paths are appended segment by segment below the base's own path.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("cms-driver-remote/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("cannot set up the HTTP client: {e}"),
                )
            })?;
        Ok(Client {
            inner: Arc::new(Inner { http, base, key }),
        })
    }

    /// A client from a driver configuration (its endpoint, key and timeout).
    pub fn from_config(config: &RemoteConfig) -> Result<Client> {
        config.validate()?;
        Client::new(
            &config.endpoint,
            config.resolve_api_key()?,
            config.timeout(),
        )
    }

    /// The server's base URL.
    pub fn endpoint(&self) -> &Url {
        &self.inner.base
    }

    /// The providers the key's tenant may use, with their drivers and capabilities
    /// (`GET /v1/providers`).
    pub async fn providers(&self) -> Result<Vec<ProviderInfo>> {
        let list: ListResponse<ProviderInfo> = self
            .call(Call::new(None, Method::GET, &["v1", "providers"]))
            .await?;
        Ok(list.items)
    }

    /// Every instance of every provider at once (`GET /v1/instances`), and the
    /// providers that failed to answer.
    pub async fn all_instances(&self, filter: &InstanceFilter) -> Result<AllInstances> {
        let mut call = Call::new(
            Some(Operation::ListInstances),
            Method::GET,
            &["v1", "instances"],
        );
        call.query = filter_query(filter, &PageRequest::default());
        self.call(call).await
    }

    /// A driver for the server's provider `provider`, with the capabilities the server
    /// declares for it; `NotFound` naming the providers there are when it has none of
    /// that name.
    pub async fn driver(&self, provider: &str) -> Result<RemoteDriver> {
        self.driver_among(&self.providers().await?, provider)
    }

    /// [`driver`](Self::driver) among providers already listed by
    /// [`providers`](Self::providers), without asking again.
    pub fn driver_among(&self, providers: &[ProviderInfo], provider: &str) -> Result<RemoteDriver> {
        match providers.iter().find(|p| p.name == provider) {
            Some(p) => Ok(RemoteDriver::from_info(self.clone(), p)),
            None => {
                let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
                Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "the server at {} has no provider `{provider}` for this API key; it has: {}",
                        self.inner.base,
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
                .with_resource(format!("provider {provider}")))
            }
        }
    }

    fn url(&self, path: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend(path);
        }
        url
    }

    /// Sends `call` and reads a JSON answer of type `T` (`()` for 204).
    pub(crate) async fn call<T: DeserializeOwned>(&self, mut call: Call<'_>) -> Result<T> {
        let bytes = self.send(&mut call).await?;
        let text: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(text).map_err(|e| {
            in_op(
                Error::new(
                    ErrorKind::Backend,
                    format!(
                        "the server at {} answered {} {} with a document cms cannot read: {e}",
                        self.inner.base,
                        call.method,
                        call.path.join("/")
                    ),
                )
                .with_source(e),
                call.op,
            )
        })
    }

    async fn send(&self, call: &mut Call<'_>) -> Result<bytes::Bytes> {
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), self.url(call.path))
            .bearer_auth(self.inner.key.expose())
            .header(header::ACCEPT, "application/json");
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(b) = call.body.take() {
            req = req.header(header::CONTENT_TYPE, "application/json").body(b);
        }
        if let Some(k) = &call.idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let what = || format!("{} {}", call.method, call.path.join("/"));
        let resp = req
            .send()
            .await
            .map_err(|e| in_op(transport_error(&self.inner.base, &what(), e), call.op))?;
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| in_op(transport_error(&self.inner.base, &what(), e), call.op))?;
        if status.is_success() {
            return Ok(body);
        }
        let problem: Option<Problem> = serde_json::from_slice(&body).ok();
        Err(in_op(
            problem_error(status, problem, request_id, retry_after, &what()),
            call.op,
        ))
    }
}

fn in_op(e: Error, op: Option<Operation>) -> Error {
    match op {
        Some(op) => e.with_operation(op),
        None => e,
    }
}

/// The query of an instance listing: `id`, `state`, `name`, `tag`, `limit`,
/// `page_token`, as the native API takes them.
pub(crate) fn filter_query(
    filter: &InstanceFilter,
    page: &PageRequest,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    for id in &filter.ids {
        q.push(("id", id.to_string()));
    }
    if !filter.states.is_empty() {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        q.push(("state", states.join(",")));
    }
    if let Some(n) = &filter.name {
        q.push(("name", n.clone()));
    }
    for (k, v) in &filter.tags {
        q.push((
            "tag",
            match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            },
        ));
    }
    page_params(&mut q, page);
    q
}

pub(crate) fn page_params(q: &mut Vec<(&'static str, String)>, page: &PageRequest) {
    if let Some(l) = page.limit {
        q.push(("limit", l.to_string()));
    }
    if let Some(t) = &page.token {
        q.push(("page_token", t.to_string()));
    }
}

fn transport_error(base: &Url, what: &str, e: reqwest::Error) -> Error {
    // reqwest's message names the URL, which carries no credential (the key travels
    // in a header).
    let (kind, how) = if e.is_timeout() {
        (ErrorKind::Timeout, "did not answer in time")
    } else if e.is_connect() {
        (ErrorKind::Unavailable, "cannot be reached")
    } else {
        (ErrorKind::Unavailable, "broke off the exchange")
    };
    Error::new(kind, format!("the server at {base} {how} ({what}): {e}"))
        .temporary(true)
        // A request that never connected was not carried out.
        .not_executed(e.is_connect())
        .with_source(e)
}

/// The kind of a problem's `kind` name: the core's kinds by name, the server's own
/// (`route_not_found`, `malformed_body`, …) by what they mean to a caller.
fn kind_of(name: &str, status: StatusCode) -> ErrorKind {
    if let Some(k) = ErrorKind::ALL.into_iter().find(|k| k.as_str() == name) {
        return k;
    }
    match name {
        // The server has no such route or method: an older server without the
        // operation.
        "route_not_found" | "method_not_allowed" => ErrorKind::Unsupported,
        "malformed_body"
        | "invalid_query"
        | "invalid_header"
        | "unsupported_media_type"
        | "payload_too_large"
        | "idempotency_conflict"
        | "page_not_found" => ErrorKind::InvalidArgument,
        _ => match status.as_u16() {
            400 | 413 | 415 | 422 => ErrorKind::InvalidArgument,
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::InvalidState,
            429 => ErrorKind::RateLimited,
            501 => ErrorKind::Unsupported,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::Timeout,
            _ => ErrorKind::Backend,
        },
    }
}

/// The error of a non-2xx answer: its problem document's kind, detail (without the
/// server's own "operation on provider `p`: " prefix, which this side adds again),
/// temporary flag, retry-after and request id.
fn problem_error(
    status: StatusCode,
    problem: Option<Problem>,
    header_request_id: Option<String>,
    header_retry_after: Option<u64>,
    what: &str,
) -> Error {
    let Some(p) = problem else {
        let kind = kind_of("", status);
        let mut e = Error::new(
            kind,
            format!("the server answered HTTP {} to {what}", status.as_u16()),
        );
        if let Some(id) = header_request_id {
            e = e.with_context("request_id", id);
        }
        if let Some(s) = header_retry_after {
            e = e.with_retry_after(Duration::from_secs(s));
        }
        return e;
    };
    let kind = kind_of(&p.kind, status);
    let mut detail = p.detail.as_str();
    if let (Some(op), Some(provider)) = (&p.operation, &p.provider) {
        let prefix = format!("{} on provider `{provider}`: ", op.replace('_', " "));
        detail = detail.strip_prefix(&prefix).unwrap_or(detail);
    }
    let mut e = Error::new(kind, detail).with_context("problem", p.kind.clone());
    if let Some(t) = p.temporary {
        e = e.temporary(t);
    }
    match p.kind.as_str() {
        // As the server itself words them (see its problem mapping).
        "idempotency_conflict" => {
            e = e.with_context("reason", "idempotent_parameter_mismatch");
        }
        "page_not_found" => e = e.with_context("argument", "page_token"),
        "invalid_query" if p.detail.contains("`page_token`") => {
            e = e.with_context("argument", "page_token");
        }
        _ => {}
    }
    if let Some(s) = p.retry_after.or(header_retry_after) {
        e = e.with_retry_after(Duration::from_secs(s));
    }
    if let Some(id) = p.request_id.or(header_request_id) {
        e = e.with_context("request_id", id);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        Problem {
            kind: kind.into(),
            detail: detail.into(),
            operation: Some("get_instance".into()),
            provider: Some("local".into()),
            request_id: Some("req-1".into()),
            temporary: None,
            retry_after: None,
        }
    }

    #[test]
    fn problems_map_back_to_their_kinds() {
        let e = problem_error(
            StatusCode::NOT_FOUND,
            Some(problem(
                "not_found",
                "get instance on provider `local`: instance `x` not found",
            )),
            None,
            None,
            "GET x",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "instance `x` not found");
        assert_eq!(e.context_value("request_id"), Some("req-1"));
        assert!(!e.is_temporary());

        let mut p = problem("rate_limited", "slow down");
        p.retry_after = Some(3);
        p.temporary = Some(true);
        let e = problem_error(StatusCode::TOO_MANY_REQUESTS, Some(p), None, None, "x");
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(e.is_temporary() && e.is_not_executed());

        let mut p = problem("backend", "the backend said no, for now");
        p.temporary = Some(true);
        let e = problem_error(StatusCode::BAD_GATEWAY, Some(p), None, None, "x");
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.is_temporary(), "the server's temporary flag is kept");

        let e = problem_error(
            StatusCode::CONFLICT,
            Some(problem("idempotency_conflict", "used before")),
            None,
            None,
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            e.context_value("reason"),
            Some("idempotent_parameter_mismatch")
        );
        let e = problem_error(
            StatusCode::NOT_FOUND,
            Some(problem("page_not_found", "no such page")),
            None,
            None,
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.context_value("argument"), Some("page_token"));
        let e = problem_error(
            StatusCode::NOT_FOUND,
            Some(problem("route_not_found", "no route")),
            None,
            None,
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = problem_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            Some("r".into()),
            Some(2),
            "GET v1/providers",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.message().contains("503"), "{e}");
    }
}
