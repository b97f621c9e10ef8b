//! The native API under `/v1` (and `/healthz`, `/metrics`): JSON resources, bearer
//! API keys, RFC 9457 problems, an OpenAPI document generated from the handlers.
//!
//! A request is routed by the one route table ([`routes::ROUTES`]), authenticated,
//! handed to its handler ([`handlers`]), which calls the
//! [service](crate::service), and rendered; every error is a problem document
//! ([`problem`]).

pub mod addresses;
pub mod deployments;
pub mod fastjson;
pub mod handlers;
pub mod images;
pub mod jobs;
pub mod openapi;
pub mod problem;
pub mod query;
pub mod routes;
pub mod security_groups;
pub mod snapshots;
pub mod volumes;

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures::{FutureExt, Stream};
use http::{header, HeaderMap, HeaderValue, Method};
use warp::reply::Response;

use crate::app::App;
use crate::auth::{Tenant, Tenants};
use crate::frontends::body::{self, BodyError};
use crate::limits::RouteClass;
use handlers::Ctx;
use problem::{ApiError, ServerKind, PROBLEM_JSON};
use routes::Match;

/// The tenant whose API key the request carries (`Authorization: Bearer <key>`).
pub fn authenticate<'a>(tenants: &'a Tenants, headers: &HeaderMap) -> Result<&'a Tenant, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthenticated(
            "missing `Authorization: Bearer <api key>` header",
        ));
    };
    let value = value.to_str().unwrap_or("");
    let key = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => {
            return Err(ApiError::unauthenticated(
                "the `Authorization` header must be `Bearer <api key>`",
            ))
        }
    };
    tenants
        .by_api_key(key)
        .ok_or_else(|| ApiError::unauthenticated("the API key is not valid"))
}

fn body_error(e: BodyError) -> ApiError {
    match e {
        BodyError::TooLarge => ApiError::server(ServerKind::PayloadTooLarge, e.detail()),
        BodyError::Unreadable(_) => ApiError::server(ServerKind::MalformedBody, e.detail()),
    }
}

/// Serves one request of the native API.
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
    let mut tenant: Option<&str> = None;
    let (template, result) = match routes::find(&method, path) {
        Match::Found(route, template, params) => {
            let r = async {
                if let Some(detail) = body::headers_too_large(&headers) {
                    return Err(ApiError::server(ServerKind::HeadersTooLarge, detail));
                }
                let t = if route.auth {
                    Some(authenticate(&app.tenants, &headers)?)
                } else {
                    None
                };
                tenant = t.map(|t| &*t.name);
                if let Some(t) = t {
                    // Over the tenant's rate limit: refused before anything is read.
                    t.rate_limits
                        .check(RouteClass::of_method(&method))
                        .map_err(|l| ApiError::from(l.error(&t.name)))?;
                }
                let body = if handlers::reads_body(route.id) {
                    body::read(&headers, body.as_mut())
                        .await
                        .map_err(body_error)?
                } else {
                    Bytes::new()
                };
                let cx = Ctx {
                    app,
                    tenant: t,
                    params: &params,
                    query,
                    headers: &headers,
                    body,
                };
                match AssertUnwindSafe(handlers::dispatch(route.id, &cx))
                    .catch_unwind()
                    .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::error!(request_id = %request_id, route = route.template, "handler panicked");
                        Err(ApiError::server(
                            ServerKind::Internal,
                            "the server failed while handling the request",
                        ))
                    }
                }
            }
            .await;
            (template, r)
        }
        Match::MethodNotAllowed(template, allow) => (
            template,
            Err(ApiError::method_not_allowed(method.as_str(), path, allow)),
        ),
        Match::NotFound => (
            crate::metrics::unmatched_template(),
            Err(ApiError::server(
                ServerKind::RouteNotFound,
                format!("no route for {} `{path}`", method.as_str()),
            )),
        ),
    };
    if body::declares_body(&headers) {
        body::drain(body.as_mut()).await;
    }
    let (mut response, problem) = match result {
        Ok(r) => (r, None),
        Err(e) => (
            problem_response(&e, path, Some(&request_id)),
            Some(e.kind().to_owned()),
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics.record(template, &method, status, elapsed);
    let route = crate::metrics::template_name(template);
    tracing::info!(
        target: "cms_server::access",
        request_id = %request_id,
        method = %method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        tenant = tenant.unwrap_or("-"),
        problem = problem.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// Renders a problem for a request to `path`.
pub fn problem_response(e: &ApiError, path: &str, request_id: Option<&str>) -> Response {
    let body = serde_json::to_vec(&e.to_problem(path, request_id)).unwrap_or_default();
    let mut r = Response::new(body.into());
    *r.status_mut() = e.status();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(secs) = e.retry_after_secs() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = e.allow().and_then(|a| HeaderValue::from_str(a).ok()) {
        h.insert(header::ALLOW, allow);
    }
    if e.www_authenticate() {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"cms\""),
        );
    }
    r
}
