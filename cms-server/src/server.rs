//! The HTTP side: one warp filter that gives every request an id and hands it to its
//! frontend (the EC2 API under `/ec2`, CIMI under `/cimi`, the native API everywhere
//! else); and the entry
//! points that bind, serve, keep the service's background work going and shut down
//! gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use clap::Parser;
use futures::Stream;
use http::{HeaderMap, HeaderValue, Method};
use warp::filters::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::app::{App, DevKey, Env, Origin};
use crate::config::{Config, DEFAULT_LISTEN};
use crate::frontends::native::problem::{ApiError, ServerKind};
use crate::frontends::{body, cimi, ec2, native};
use crate::tls::{Tls, TlsFiles};

/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
        (
            ServerKind::PayloadTooLarge,
            body::BodyError::TooLarge.detail(),
        )
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
    native::problem_response(&ApiError::server(kind, detail), "", None)
}

/// The longest client-given request id that is kept.
pub const MAX_REQUEST_ID: usize = 64;

/// A client's `X-Request-Id`, when it is short (1 to [`MAX_REQUEST_ID`] bytes) and made
/// only of letters, digits and `.`, `_`, `-`, `:`, `/`, `+`, `=` (UUIDs, trace ids, base64):
/// safe to echo in headers, JSON, XML and logs. Anything else gets a fresh id.
pub fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_REQUEST_ID
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'+' | b'=')
        });
    ok.then_some(s)
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
    let body = std::pin::pin!(body);
    let request_id = match headers.get("x-request-id").and_then(valid_request_id) {
        Some(id) => id.to_owned(),
        None => app.next_request_id(),
    };
    if ec2::is_ec2_request(&method, path, query, &headers) {
        ec2::handle_http(app, method, path, query, headers, body, request_id, started).await
    } else if cimi::is_cimi_path(path) {
        cimi::handle_http(app, method, path, query, headers, body, request_id, started).await
    } else {
        native::handle_http(app, method, path, query, headers, body, request_id, started).await
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests
/// in flight. With `tls`, connections are TLS (HTTP/1.1 inside).
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let background = {
        let app = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            app.service
                .maintain(async {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let jobs = {
        let app = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            crate::jobs::run(app, async {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        })
    };
    match tls {
        None => {
            warp::serve(filter(app))
                .incoming(listener)
                .graceful(shutdown)
                .run()
                .await
        }
        Some(tls) => serve_tls(app, listener, &tls, shutdown).await,
    }
    let _ = stop.send(true);
    let _ = background.await;
    let _ = jobs.await;
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS listener: each connection's handshake in its own task, then HTTP/1.1 over
/// it; at `shutdown`, no new connections, and the open ones finish their requests.
async fn serve_tls(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: &Tls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let service = hyper_util::service::TowerToHyperService::new(warp::service(filter(app)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let acceptor = tls.acceptor();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake not finished in time");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

/// Reads the TLS files again at each SIGHUP (installed now, before the server says it
/// is listening); a reload that fails is logged and changes nothing.
fn reload_on_sighup(tls: Arc<Tls>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.files().cert.display(),
                        "SIGHUP: TLS certificate and key read again; new connections get them"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: cannot reload the TLS certificate; still serving the previous one"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
    Ok(())
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
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first).
    /// Needs `--tls-key`. Both files are read again on SIGHUP.
    #[arg(long, env = "CMS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CMS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match Tls::load(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => return fail(2, e),
        },
        _ => None,
    };
    let (mut app, dev) = match App::new(&config, Env::from_process()).await {
        Ok(x) => x,
        Err(e) => return fail(2, e),
    };
    app.tls = tls.is_some();
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
    if let Some(tls) = &tls {
        if let Err(e) = reload_on_sighup(tls.clone()) {
            return fail(1, format!("cannot install the SIGHUP handler: {e}"));
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
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
        // Where each API is, as a client is told to reach it (an unspecified address
        // is reached on loopback).
        let reach = if addr.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let mut regions: Vec<&str> = app.service.providers().iter().map(|p| &*p.name).collect();
        regions.sort_unstable();
        let _ = writeln!(
            out,
            "native API: {scheme}://{reach}/v1 (OpenAPI document: {scheme}://{reach}/v1/openapi.json)"
        );
        let _ = writeln!(
            out,
            "EC2 API: --endpoint-url {scheme}://{reach}/ec2 (or {scheme}://{reach}), SigV4 region = the provider: {}",
            regions.join(", ")
        );
        let _ = writeln!(
            out,
            "CIMI API: {scheme}://{reach}/cimi/cloudEntryPoint (HTTP Basic tenant:api_key)"
        );
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
    }
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        providers = app.service.providers().len(),
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
    let server = serve(app, listener, tls, graceful);
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
