//! RFC 9457 problem details: every error the server answers.
//!
//! Each error has a stable `type` URI: `urn:cms:problem:<kind>` for the kinds of
//! [`cms_core::ErrorKind`] (`urn:cms:problem:not_found`, …) and for the server's own
//! (`urn:cms:problem:route_not_found`, `malformed_body`, …).

use std::borrow::Cow;
use std::time::Duration;

use cms_core::{Error, ErrorKind};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Server-level problem kinds, beside the core's [`ErrorKind`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// No route has this path (404).
    RouteNotFound,
    /// The path exists but not with this method (405).
    MethodNotAllowed,
    /// The body is not valid JSON of the expected shape (400).
    MalformedBody,
    /// A query parameter is unknown or malformed (400).
    InvalidQuery,
    /// A header is malformed (400).
    InvalidHeader,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The body is larger than the limit (413).
    PayloadTooLarge,
    /// The header fields are larger than the limit (431).
    HeadersTooLarge,
    /// An `Idempotency-Key` used before with another request (409).
    IdempotencyConflict,
    /// A `page_token` that names no page of the listing: not one it handed out, or
    /// one of another listing (404).
    PageNotFound,
    /// Something the server did not expect (500).
    Internal,
}

impl ServerKind {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::RouteNotFound => "route_not_found",
            ServerKind::MethodNotAllowed => "method_not_allowed",
            ServerKind::MalformedBody => "malformed_body",
            ServerKind::InvalidQuery => "invalid_query",
            ServerKind::InvalidHeader => "invalid_header",
            ServerKind::UnsupportedMediaType => "unsupported_media_type",
            ServerKind::PayloadTooLarge => "payload_too_large",
            ServerKind::HeadersTooLarge => "headers_too_large",
            ServerKind::IdempotencyConflict => "idempotency_conflict",
            ServerKind::PageNotFound => "page_not_found",
            ServerKind::Internal => "internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ServerKind::RouteNotFound => StatusCode::NOT_FOUND,
            ServerKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ServerKind::MalformedBody | ServerKind::InvalidQuery | ServerKind::InvalidHeader => {
                StatusCode::BAD_REQUEST
            }
            ServerKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServerKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ServerKind::IdempotencyConflict => StatusCode::CONFLICT,
            ServerKind::PageNotFound => StatusCode::NOT_FOUND,
            ServerKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ServerKind::RouteNotFound => "No such route",
            ServerKind::MethodNotAllowed => "Method not allowed",
            ServerKind::MalformedBody => "Malformed request body",
            ServerKind::InvalidQuery => "Invalid query parameter",
            ServerKind::InvalidHeader => "Invalid header",
            ServerKind::UnsupportedMediaType => "Unsupported media type",
            ServerKind::PayloadTooLarge => "Payload too large",
            ServerKind::HeadersTooLarge => "Request header fields too large",
            ServerKind::IdempotencyConflict => "Idempotency key used for another request",
            ServerKind::PageNotFound => "No such page",
            ServerKind::Internal => "Internal server error",
        }
    }
}

/// The HTTP status of a core error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied | ErrorKind::QuotaExceeded => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::InvalidState => StatusCode::CONFLICT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Backend => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

fn title_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::AlreadyExists => "Already exists",
        ErrorKind::InvalidArgument => "Invalid argument",
        ErrorKind::InvalidState => "Invalid state",
        ErrorKind::Unauthenticated => "Unauthenticated",
        ErrorKind::PermissionDenied => "Permission denied",
        ErrorKind::QuotaExceeded => "Quota exceeded",
        ErrorKind::RateLimited => "Rate limited",
        ErrorKind::Unsupported => "Unsupported operation",
        ErrorKind::Unavailable => "Backend unavailable",
        ErrorKind::Timeout => "Backend timeout",
        ErrorKind::Backend => "Backend error",
    }
}

/// The `type` URI of a problem kind name.
pub fn type_uri(kind: &str) -> String {
    format!("urn:cms:problem:{kind}")
}

/// An RFC 9457 problem details document (`application/problem+json`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:cms:problem:<kind>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:cms:problem:not_found")]
    pub type_: String,
    /// A short summary of the kind of problem.
    pub title: Cow<'static, str>,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, in words.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// The kind of problem, snake_case (`not_found`, `malformed_body`, …).
    pub kind: Cow<'static, str>,
    /// The provider the request was for, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The driver operation that failed, when known (`create_instance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Cow<'static, str>>,
    /// The request id (also in the `X-Request-Id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Whether trying again later may succeed (the backend was unavailable, slow or
    /// rate limited); a client's retry policy looks at this alone.
    pub temporary: bool,
    /// Seconds to wait before trying again (also in `Retry-After`), for 429 answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Methods the path accepts (also in `Allow`), for 405 answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<String>,
}

/// A problem on its way to becoming a response; `instance` and `request_id` are filled
/// in when it is rendered. Boxed, so that results stay small on the hot path.
#[derive(Clone, Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Clone, Debug)]
struct Inner {
    status: StatusCode,
    kind: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: String,
    provider: Option<String>,
    operation: Option<Cow<'static, str>>,
    retry_after: Option<Duration>,
    allow: Option<String>,
    www_authenticate: bool,
    temporary: bool,
}

impl ApiError {
    /// A server-level problem.
    pub fn server(kind: ServerKind, detail: impl Into<String>) -> Self {
        ApiError(Box::new(Inner {
            status: kind.status(),
            kind: Cow::Borrowed(kind.as_str()),
            title: Cow::Borrowed(kind.title()),
            detail: detail.into(),
            provider: None,
            operation: None,
            retry_after: None,
            allow: None,
            www_authenticate: false,
            temporary: false,
        }))
    }

    /// A problem of a core kind raised by the server itself.
    pub fn core(kind: ErrorKind, detail: impl Into<String>) -> Self {
        ApiError(Box::new(Inner {
            status: status_of(kind),
            kind: Cow::Borrowed(kind.as_str()),
            title: Cow::Borrowed(title_of(kind)),
            detail: detail.into(),
            provider: None,
            operation: None,
            retry_after: (kind == ErrorKind::RateLimited).then_some(Duration::from_secs(1)),
            allow: None,
            www_authenticate: kind == ErrorKind::Unauthenticated,
            temporary: kind.default_temporary(),
        }))
    }

    /// 401: no or wrong credentials.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        ApiError::core(ErrorKind::Unauthenticated, detail)
    }

    /// 405 with the methods the path accepts.
    pub fn method_not_allowed(method: &str, path: &str, allow: String) -> Self {
        let mut e = ApiError::server(
            ServerKind::MethodNotAllowed,
            format!("method {method} is not allowed on `{path}`; allowed: {allow}"),
        );
        e.0.allow = Some(allow);
        e
    }

    /// Names the provider, unless one is set.
    pub fn with_provider(mut self, provider: &str) -> Self {
        if self.0.provider.is_none() {
            self.0.provider = Some(provider.to_owned());
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The kind name (`not_found`).
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The detail message.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// Seconds for `Retry-After` (at least 1), for 429.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.0
            .retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }

    /// The `Allow` header value, for 405.
    pub fn allow(&self) -> Option<&str> {
        self.0.allow.as_deref()
    }

    /// Whether the answer carries `WWW-Authenticate`.
    pub fn www_authenticate(&self) -> bool {
        self.0.www_authenticate
    }

    /// The problem document for a request to `path`.
    pub fn to_problem(&self, path: &str, request_id: Option<&str>) -> Problem {
        let e = &self.0;
        Problem {
            type_: type_uri(&e.kind),
            title: e.title.clone(),
            status: e.status.as_u16(),
            detail: e.detail.clone(),
            instance: path.to_owned(),
            kind: e.kind.clone(),
            provider: e.provider.clone(),
            operation: e.operation.clone(),
            request_id: request_id.map(str::to_owned),
            temporary: e.temporary,
            retry_after: self.retry_after_secs(),
            allow: e.allow.clone(),
        }
    }
}

impl From<Error> for ApiError {
    /// A core error: its messages are safe to show (they carry no credentials).
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let mut out = match (kind, e.context_value("reason"), e.context_value("argument")) {
            // The request conflicts with the one first made with its key.
            (ErrorKind::InvalidArgument, Some("idempotent_parameter_mismatch"), _) => {
                ApiError::server(ServerKind::IdempotencyConflict, e.to_string())
            }
            // A well-formed token that names no page of this listing: a page that is
            // not there.
            (ErrorKind::InvalidArgument, _, Some("page_token")) => {
                ApiError::server(ServerKind::PageNotFound, e.to_string())
            }
            _ => ApiError::core(kind, e.to_string()),
        };
        out.0.provider = e.provider().map(str::to_owned);
        out.0.temporary = e.is_temporary();
        out.0.operation = e.operation().map(|o| Cow::Borrowed(o.as_str()));
        if kind == ErrorKind::RateLimited {
            out.0.retry_after = Some(e.retry_after().unwrap_or(Duration::from_secs(1)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let expect = [
            (ErrorKind::InvalidArgument, 400),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::PermissionDenied, 403),
            (ErrorKind::QuotaExceeded, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::AlreadyExists, 409),
            (ErrorKind::InvalidState, 409),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::Unsupported, 501),
            (ErrorKind::Backend, 502),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Timeout, 504),
        ];
        for (k, s) in expect {
            assert_eq!(status_of(k).as_u16(), s, "{k}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_seconds() {
        let e: ApiError = Error::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(10))
            .into();
        assert_eq!(e.retry_after_secs(), Some(1));
        let e: ApiError = Error::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(2500))
            .into();
        assert_eq!(e.retry_after_secs(), Some(3));
        let p = e.to_problem("/v1/x", None);
        assert_eq!(p.type_, "urn:cms:problem:rate_limited");
        assert_eq!(p.status, 429);
    }
}
