//! The EC2-compatible frontend: the AWS Query protocol under `/ec2`, so that boto3,
//! the AWS CLI and aws-sdk-rust drive any cms provider unchanged.
//!
//! - Requests are `GET` or form-encoded `POST` with `Action` and `Version`, signed
//!   with SigV4 ([`sigv4`]) by a tenant's access key pair; the signature's region
//!   names the provider (`aws ec2 describe-instances --region local`).
//! - Backend ids are shown as EC2-shaped public ids (`i-…`, `ami-…`, `subnet-…`,
//!   `vpc-…`, `vol-…`, `snap-…`, `sg-…`, `eipalloc-…`) that the
//!   [service](crate::service) hands out; a tenant sees only its own instances,
//!   volumes, snapshots, captured images, security groups and addresses (an admin
//!   tenant, all), and another's id answers exactly as an id that does not exist.
//! - An action the provider's driver does not declare answers `UnsupportedOperation`
//!   (DescribeAddresses excepted: a provider without addresses holds none, and
//!   answers the empty set).
//! - Answers are XML in the `2016-11-15` namespace, shaped as in the botocore
//!   service model; errors are `<Response><Errors><Error>…` documents.
//!
//! The actions are listed in [`Action`].

mod account;
mod actions;
mod addresses;
mod attributes;
mod catalogue;
pub mod error;
mod families;
pub(crate) mod fuzz;
mod images;
mod instances;
pub(crate) mod keymat;
mod keys;
pub mod params;
mod security_groups;
pub mod sigv4;
mod tags;
mod volumes;
pub mod xml;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures::Stream;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::app::App;
use crate::auth::Tenant;
use crate::frontends::body;
use crate::limits::RouteClass;
use crate::service::{Provider, Service};
use error::Ec2Error;
use params::{Params, View};

/// The path the frontend is served under.
pub const PREFIX: &str = "/ec2";

/// Whether a request path is the frontend's.
pub fn is_ec2_path(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// Whether a request is the frontend's: its path is (see [`is_ec2_path`]), or it is
/// an EC2 Query request sent to the root, as clients whose endpoint is the server's
/// address alone send them (Libcloud, an SDK given `http://host:port`): a GET naming
/// an `Action`, or a form-encoded POST.
pub fn is_ec2_request(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> bool {
    if is_ec2_path(path) {
        return true;
    }
    if path != "/" {
        return false;
    }
    let names_action = query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("Action"));
    let form_post = *method == Method::POST
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(body::is_form);
    names_action || form_post
}

macro_rules! actions {
    ($($name:ident),* $(,)?) => {
        /// The actions served.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Action { $($name),* }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$name),*];

            /// The action's name.
            pub fn as_str(self) -> &'static str {
                match self { $(Action::$name => stringify!($name)),* }
            }

            /// The action named `s`.
            pub fn from_name(s: &str) -> Option<Action> {
                match s { $(stringify!($name) => Some(Action::$name),)* _ => None }
            }
        }
    };
}

actions!(
    RunInstances,
    DescribeInstances,
    DescribeInstanceStatus,
    StartInstances,
    StopInstances,
    RebootInstances,
    TerminateInstances,
    DescribeImages,
    DescribeInstanceTypes,
    DescribeRegions,
    DescribeAvailabilityZones,
    DescribeVpcs,
    DescribeSubnets,
    CreateTags,
    DeleteTags,
    DescribeTags,
    CreateKeyPair,
    ImportKeyPair,
    DescribeKeyPairs,
    DeleteKeyPair,
    DescribeAccountAttributes,
    DescribeAddresses,
    AllocateAddress,
    AssociateAddress,
    DisassociateAddress,
    ReleaseAddress,
    DescribeInstanceAttribute,
    GetConsoleOutput,
    CreateVolume,
    DescribeVolumes,
    AttachVolume,
    DetachVolume,
    DeleteVolume,
    CreateSnapshot,
    DescribeSnapshots,
    DeleteSnapshot,
    CreateImage,
    DeregisterImage,
    CreateSecurityGroup,
    DescribeSecurityGroups,
    DeleteSecurityGroup,
    AuthorizeSecurityGroupIngress,
    AuthorizeSecurityGroupEgress,
    RevokeSecurityGroupIngress,
    RevokeSecurityGroupEgress,
);

/// What the server logs of an EC2 request.
#[derive(Debug)]
pub struct Outcome {
    /// The answer.
    pub response: Response,
    /// The tenant, once authenticated.
    pub tenant: Option<Arc<str>>,
    /// The action, when known.
    pub action: Option<&'static str>,
    /// The error code, when the answer is an error.
    pub error: Option<Cow<'static, str>>,
}

/// One authenticated call: who, where, what.
pub(crate) struct Call<'a> {
    pub service: &'a Service,
    pub tenant: &'a Tenant,
    pub provider: &'a Provider,
    pub p: View<'a>,
    pub request_id: &'a str,
    pub host: &'a str,
}

fn xml_response(status: u16, body: String) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

/// Serves one request to the frontend. `body` has been read whole.
pub async fn handle(
    app: &App,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    request_id: &str,
) -> Outcome {
    let mut out = Outcome {
        response: Response::default(),
        tenant: None,
        action: None,
        error: None,
    };
    let result = serve(
        app, method, path, query, headers, &body, request_id, &mut out,
    )
    .await;
    match result {
        Ok(xml) => out.response = xml_response(200, xml),
        Err(e) => {
            let mut r = xml_response(e.status, e.to_xml(request_id));
            if e.status == 503 {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            out.response = r;
            out.error = Some(e.code);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    app: &App,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    out: &mut Outcome,
) -> error::Result<String> {
    if *method != Method::GET && *method != Method::POST {
        return Err(Ec2Error::new(
            "InvalidHttpMethod",
            405,
            format!("the EC2 API takes GET and POST, not {method}"),
        ));
    }
    if path != PREFIX && path != "/ec2/" && path != "/" {
        return Err(Ec2Error::new(
            "InvalidAction",
            400,
            format!("no EC2 API at `{path}`; send requests to `{PREFIX}/`"),
        ));
    }
    let mut params = Params::default();
    params.add_form(query)?;
    if !body.is_empty() {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(body::is_form);
        if !form {
            return Err(Ec2Error::invalid_value(
                "a POST body must be application/x-www-form-urlencoded",
            ));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| Ec2Error::invalid_value("the request body is not UTF-8 text"))?;
        params.add_form(text)?;
    }

    // Authentication comes first: nothing about the request is looked at, let alone
    // done, for a caller who is not known.
    let verified = sigv4::verify(
        &sigv4::Request {
            method: method.as_str(),
            path,
            query,
            headers,
            body,
        },
        chrono::Utc::now(),
        |id| app.tenants().by_access_key(id).map(|(s, _)| s.expose()),
    )
    .map_err(|e| Ec2Error::new(e.code(), e.status(), e.message()))?;
    let Some((_, tenant)) = app.tenants().by_access_key(&verified.access_key_id) else {
        return Err(Ec2Error::new(
            "AuthFailure",
            401,
            "AWS was not able to validate the provided access credentials",
        ));
    };
    out.tenant = Some(tenant.name.clone());
    let service = app.service();
    let provider = match service.provider(tenant, &verified.region) {
        Ok(p) => p,
        Err(_) => {
            let mut names: Vec<&str> = service.providers_of(tenant).map(|p| &*p.name).collect();
            names.sort_unstable();
            return Err(Ec2Error::new(
                "AuthFailure",
                401,
                format!(
                    "Credential should be scoped to a valid region, not '{}'. This account's regions (cms providers) are: {}",
                    verified.region,
                    names.join(", ")
                ),
            ));
        }
    };

    let p = params.view();
    let name = p.required("Action").map_err(|_| {
        Ec2Error::new(
            "MissingAction",
            400,
            "The request must contain the parameter Action",
        )
    })?;
    let Some(action) = Action::from_name(name) else {
        return Err(Ec2Error::new(
            "InvalidAction",
            400,
            format!("The action {name} is not valid for this web service."),
        ));
    };
    out.action = Some(action.as_str());
    // Over the tenant's rate limit: refused before anything is done, as EC2 does.
    tenant
        .rate_limits
        .check(RouteClass::of_ec2_action(action.as_str()))
        .map_err(|l| Ec2Error::from_core(&l.error(&tenant.name), "InvalidParameterValue"))?;
    // Nothing a client sends is ignored: a parameter the action does not take is
    // refused, before anything is done, as EC2 does.
    if let Some(unknown) = params.unknown(&[actions::COMMON, actions::parameters(action)]) {
        return Err(Ec2Error::new(
            "UnknownParameter",
            400,
            format!(
                "The parameter {unknown} is not recognized (by {} here; see the EC2 API's documentation in the cms README for what it takes)",
                action.as_str()
            ),
        ));
    }
    p.required("Version")?;
    if p.bool("DryRun")? == Some(true) {
        return Err(Ec2Error::new(
            "DryRunOperation",
            412,
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let call = Call {
        service,
        tenant,
        provider,
        p,
        request_id,
        host,
    };
    actions::run(action, &call).await
}

/// Serves one request to the frontend, with the same body limits, metrics and access
/// log as the native API.
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
    let read = match body::headers_too_large(&headers) {
        Some(detail) => Err(Ec2Error::new("RequestHeaderSectionTooLarge", 431, detail)),
        None => body::read(&headers, body.as_mut()).await.map_err(|e| {
            let (code, status) = match e {
                body::BodyError::TooLarge => ("RequestEntityTooLarge", 413),
                body::BodyError::Unreadable(_) => ("InvalidRequest", 400),
            };
            Ec2Error::new(code, status, e.detail())
        }),
    };
    let outcome = match read {
        Ok(bytes) => handle(app, &method, path, query, &headers, bytes, &request_id).await,
        Err(err) => {
            if body::declares_body(&headers) {
                body::drain(body.as_mut()).await;
            }
            Outcome {
                response: xml_response(err.status, err.to_xml(&request_id)),
                tenant: None,
                action: None,
                error: Some(err.code),
            }
        }
    };
    let mut response = outcome.response;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v.clone());
        response.headers_mut().insert("x-request-id", v);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics
        .record(crate::metrics::ec2_template(), &method, status, elapsed);
    tracing::info!(
        target: "cms_server::access",
        request_id = %request_id,
        method = %method,
        route = PREFIX,
        action = outcome.action.unwrap_or("-"),
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        tenant = outcome.tenant.as_deref().unwrap_or("-"),
        problem = outcome.error.as_deref().unwrap_or("-"),
        "request"
    );
    response
}
