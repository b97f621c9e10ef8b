//! The HTTP side: one warp filter that hands every request to the route table,
//! authentication, body limits, problem rendering, metrics and access logs; and the
//! entry points that bind, serve and shut down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use futures::{FutureExt, Stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method};
use warp::filters::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::api::{self, Ctx, MAX_BODY_BYTES};
use crate::app::{App, DevKey, Env, Origin};
use crate::config::{Config, DEFAULT_LISTEN};
use crate::problem::{ApiError, ServerKind, PROBLEM_JSON};
use crate::routes::{self, Match};

/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The most bytes of an oversized body read (and dropped) before answering 413, so
/// that the client, still sending, reads the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// The warp filter serving every route of the native API. It never rejects: every
/// answer, errors included, is a response.
pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: FullPath, query: String, headers: HeaderMap, body| {
                let app = app.clone();
                async move { handle(&app, method, path.as_str(), &query, headers, body).await }
            },
        )
        .recover(|r: Rejection| async move { Ok::<_, Infallible>(rejection_response(&r)) })
        .unify()
}

/// Turns a warp rejection into a problem (the filter above does not reject; this
/// covers what warp itself might).
fn rejection_response(r: &Rejection) -> Response {
    use warp::reject::{
        InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader,
        PayloadTooLarge, UnsupportedMediaType,
    };
    let (kind, detail) = if r.is_not_found() {
        (ServerKind::RouteNotFound, "no such route".to_owned())
    } else if r.find::<MethodNotAllowed>().is_some() {
        (
            ServerKind::MethodNotAllowed,
            "method not allowed".to_owned(),
        )
    } else if r.find::<PayloadTooLarge>().is_some() {
        (ServerKind::PayloadTooLarge, too_large().detail().to_owned())
    } else if r.find::<UnsupportedMediaType>().is_some() {
        (
            ServerKind::UnsupportedMediaType,
            "unsupported content type".to_owned(),
        )
    } else if r.find::<LengthRequired>().is_some() {
        (
            ServerKind::MalformedBody,
            "a Content-Length header is required".to_owned(),
        )
    } else if r.find::<InvalidQuery>().is_some() {
        (ServerKind::InvalidQuery, "invalid query string".to_owned())
    } else if let Some(h) = r.find::<InvalidHeader>() {
        (
            ServerKind::InvalidHeader,
            format!("invalid header `{}`", h.name()),
        )
    } else if let Some(h) = r.find::<MissingHeader>() {
        (
            ServerKind::InvalidHeader,
            format!("missing header `{}`", h.name()),
        )
    } else {
        (
            ServerKind::Internal,
            "the request could not be handled".to_owned(),
        )
    };
    problem_response(&ApiError::server(kind, detail), "", None)
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

fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

async fn handle<S, B>(
    app: &App,
    method: Method,
    path: &str,
    query: &str,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let started = Instant::now();
    let mut body = std::pin::pin!(body);
    let request_id = match headers.get("x-request-id").and_then(valid_request_id) {
        Some(id) => id.to_owned(),
        None => app.next_request_id(),
    };
    if crate::ec2::is_ec2_path(path) {
        return handle_ec2(
            app,
            method,
            path,
            query,
            headers,
            body.as_mut(),
            request_id,
            started,
        )
        .await;
    }
    let mut tenant: Option<&str> = None;
    let (template, result) = match routes::find(&method, path) {
        Match::Found(route, template, params) => {
            let r = async {
                let t = if route.auth {
                    Some(app.tenants.authenticate(&headers)?)
                } else {
                    None
                };
                tenant = t.map(|t| &*t.name);
                let body = if api::reads_body(route.id) {
                    read_body(&headers, body.as_mut()).await?
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
                match AssertUnwindSafe(api::dispatch(route.id, &cx))
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
            routes::template_count() - 1,
            Err(ApiError::server(
                ServerKind::RouteNotFound,
                format!("no route for {} `{path}`", method.as_str()),
            )),
        ),
    };
    // A body nobody read (an error came first, or the route takes none) is dropped
    // here, within bounds: closing a connection with unread data resets it, and the
    // client, still sending, would lose the answer.
    if declares_body(&headers) {
        drain(body.as_mut()).await;
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
    let route = routes::template_name(template);
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

/// Serves a request to the EC2 frontend, with the same body limits, metrics and access
/// log as the native API.
#[allow(clippy::too_many_arguments)]
async fn handle_ec2<S, B>(
    app: &App,
    method: Method,
    path: &str,
    query: &str,
    headers: HeaderMap,
    body: std::pin::Pin<&mut S>,
    request_id: String,
    started: Instant,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let mut body = body;
    let outcome = match read_body(&headers, body.as_mut()).await {
        Ok(bytes) => {
            crate::ec2::handle(app, &method, path, query, &headers, bytes, &request_id).await
        }
        Err(e) => {
            if declares_body(&headers) {
                drain(body.as_mut()).await;
            }
            let err = crate::ec2::error::Ec2Error::new(
                if e.status().as_u16() == 413 {
                    "RequestEntityTooLarge"
                } else {
                    "InvalidRequest"
                },
                e.status().as_u16(),
                e.detail().to_owned(),
            );
            let mut r = Response::new(err.to_xml(&request_id).into());
            *r.status_mut() = e.status();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml;charset=UTF-8"),
            );
            crate::ec2::Outcome {
                response: r,
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
        .record(routes::ec2_template(), &method, status, elapsed);
    tracing::info!(
        target: "cms_server::access",
        request_id = %request_id,
        method = %method,
        route = crate::ec2::PREFIX,
        action = outcome.action.unwrap_or("-"),
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        tenant = outcome.tenant.as_deref().unwrap_or("-"),
        problem = outcome.error.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// Whether the request announces a body worth draining (not empty, not huge).
fn declares_body(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0 && n <= DRAIN_LIMIT as u64),
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn too_large() -> ApiError {
    ApiError::server(
        ServerKind::PayloadTooLarge,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads the body, at most [`MAX_BODY_BYTES`]; 413 beyond (after dropping what the
/// client is still sending, up to a bound).
async fn read_body<S, B>(
    headers: &HeaderMap,
    mut body: std::pin::Pin<&mut S>,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::server(
                ServerKind::MalformedBody,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if buf.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buf.put(chunk);
    }
    Ok(buf.freeze())
}

async fn drain<S, B>(mut body: std::pin::Pin<&mut S>)
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let mut seen = 0usize;
    // Usually the body was read already: no timer for that.
    loop {
        match body.next().now_or_never() {
            Some(Some(Ok(c))) => seen += c.remaining(),
            Some(_) => return,
            None => break,
        }
        if seen > DRAIN_LIMIT {
            return;
        }
    }
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(Ok(c)) => {
                    seen += c.remaining();
                    if seen > DRAIN_LIMIT {
                        return;
                    }
                }
                _ => return,
            },
            _ = &mut deadline => return,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests
/// in flight.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(filter(app))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    match ShutdownSignals::install() {
        Ok(s) => s.recv().await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for signals; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

/// SIGINT and SIGTERM handlers, installed when this is made (before the server says
/// it is listening, so that a signal sent right after is never the default "die").
pub struct ShutdownSignals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Resolves at the first signal.
    pub async fn recv(self) {
        #[cfg(unix)]
        {
            let ShutdownSignals { mut int, mut term } = self;
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The command line of `cms-server`.
#[derive(Debug, Parser)]
#[command(name = "cms-server", version, about = "The cms REST facade")]
pub struct Args {
    /// Address to listen on (`host:port`; port 0 picks a free port). Default: the
    /// config file's `listen`, else 127.0.0.1:8080.
    #[arg(long, env = "CMS_LISTEN")]
    pub listen: Option<String>,
    /// The TOML configuration file. Default: one `local` memory provider and a
    /// development tenant.
    #[arg(long, env = "CMS_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Sets up logging: `RUST_LOG` (default `info`), `CMS_LOG_FORMAT=json` for JSON lines,
/// to stderr. Lines are formatted on the request's thread and written by a logging
/// thread in batches (one write per batch, not per line); keep the returned guard
/// alive until exit, so that its drop flushes what is left.
pub fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CMS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    installed.ok().map(|_| guard)
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("cms-server: error: {msg}");
    ExitCode::from(code)
}

/// The whole program: parse arguments, load the config, bind, print the address,
/// serve until SIGINT/SIGTERM. Exit codes: 0 after a graceful stop, 2 for a bad
/// configuration or command line, 1 when the address cannot be bound.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let _log_guard = init_logging();
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => return fail(2, e),
        },
        None => Config::default(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(run(args, config))
}

/// Builds the state, binds, and serves until a signal; see [`main`].
pub async fn run(args: Args, config: Config) -> ExitCode {
    let (app, dev) = match App::new(&config, Env::from_process()).await {
        Ok(x) => x,
        Err(e) => return fail(2, e),
    };
    let listen = args
        .listen
        .clone()
        .or_else(|| config.listen.map(|a| a.to_string()))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => return fail(1, format!("cannot listen on `{listen}`: {e}")),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(1, format!("cannot read the bound address: {e}")),
    };
    let signals = match ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => return fail(1, format!("cannot install signal handlers: {e}")),
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // The one place secrets are ever printed: keys generated for this run.
        if let DevKey::Dev {
            api_key,
            access_key_id,
            secret_access_key,
        } = &dev
        {
            match api_key {
                Origin::Generated(k) => {
                    let _ = writeln!(out, "development API key: {}", k.expose());
                }
                Origin::FromEnv => {
                    let _ = writeln!(
                        out,
                        "development tenant `dev` uses the API key from CMS_DEV_API_KEY"
                    );
                }
            }
            let _ = writeln!(out, "development access key id: {access_key_id}");
            match secret_access_key {
                Origin::Generated(k) => {
                    let _ = writeln!(out, "development secret access key: {}", k.expose());
                }
                Origin::FromEnv => {
                    let _ = writeln!(
                        out,
                        "development secret access key: from CMS_DEV_SECRET_ACCESS_KEY"
                    );
                }
            }
        }
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(
        %addr,
        providers = app.providers().len(),
        tenants = app.tenants.iter().count(),
        "cms-server started"
    );
    let app = Arc::new(app);
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutdown signal received; finishing requests in flight");
        let _ = tx.send(true);
    });
    let mut rx2 = rx.clone();
    let graceful = async move {
        let _ = rx2.wait_for(|v| *v).await;
    };
    let server = serve(app, listener, graceful);
    let forced = async move {
        let _ = rx.wait_for(|v| *v).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = server => {
            tracing::info!("cms-server stopped");
            ExitCode::SUCCESS
        }
        _ = forced => {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
            ExitCode::SUCCESS
        }
    }
}
