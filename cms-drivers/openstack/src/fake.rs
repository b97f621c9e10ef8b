//! A wire-level fake OpenStack (feature `fake`): one HTTP/1.1 server on 127.0.0.1
//! that speaks Keystone v3, Nova (compute v2.1 with microversions), Glance v2 and
//! Neutron v2.0 JSON over a real socket, backed by an in-memory state machine, for
//! tests.
//!
//! | service | path | catalog endpoint |
//! |---|---|---|
//! | Keystone | `/identity` (`/identity/v3` is the auth URL) | `http://127.0.0.1:PORT/identity` |
//! | Nova | `/compute` | `http://127.0.0.1:PORT/compute/v2.1` |
//! | Glance | `/image` | `http://127.0.0.1:PORT/image` |
//! | Neutron | `/network` | `http://127.0.0.1:PORT/network` |
//!
//! `POST /identity/v3/auth/tokens` accepts the `password` method (the user by name and
//! domain `Default`, or by id; scoped to the project by name and domain or by id) and
//! the `application_credential` method (by id, or by name and user, and secret); it
//! answers 201 with `X-Subject-Token` and a token whose catalog lists the four services
//! in `RegionOne`, each with public, internal and admin endpoints on this server. Every
//! other call but the version documents needs a valid `X-Auth-Token`, else 401 as
//! keystonemiddleware answers it (`{"error": {"code": 401, …}}` and
//! `WWW-Authenticate`). Tokens expire after [`FakeConfig::token_lifetime`], or at once
//! with [`FakeOpenStack::expire_tokens`].
//!
//! Nova answers at the microversion asked for (`OpenStack-API-Version: compute X.Y`,
//! or `X-OpenStack-Nova-API-Version`; `latest`; none is 2.1; above
//! [`FakeConfig::max_microversion`] is 406) and echoes it with `Vary`. Servers are
//! shown as a project member sees them (no admin-only `OS-EXT-SRV-ATTR:*` fields),
//! with the fields each microversion adds (`locked` 2.9, `description` 2.19, `tags`
//! 2.26, the embedded `flavor` 2.47, `server_groups` 2.71, `OS-EXT-SRV-ATTR:hostname`
//! 2.90, `pinned_availability_zone` 2.96, …). Lists are paged as each service pages
//! them, at most [`FakeConfig::max_limit`] a page: Nova newest first with
//! `servers_links`, Glance newest first with `next`, Neutron by id with
//! `networks_links`. Servers move through Nova's states as time passes, computed when
//! a request looks ([`FakeDelays`] says how long each step takes):
//!
//! | request | status (vm_state / task_state / power_state) |
//! |---|---|
//! | `POST /servers` | BUILD (building / scheduling / 0) → BUILD (building / networking: `hostId`, `addresses` appear) → BUILD (building / spawning) → ACTIVE (active / – / 1) |
//! | `os-stop` (ACTIVE, ERROR) | ACTIVE (active / powering-off / 1) → SHUTOFF (stopped / – / 4) |
//! | `os-start` (SHUTOFF) | SHUTOFF (stopped / powering-on / 4) → ACTIVE (active / – / 1) |
//! | `reboot` SOFT (ACTIVE) | REBOOT (active / rebooting → reboot_pending → reboot_started) → ACTIVE |
//! | `reboot` HARD (also SHUTOFF, ERROR) | HARD_REBOOT (active / rebooting_hard → reboot_pending_hard → reboot_started_hard) → ACTIVE; from SHUTOFF the status stays SHUTOFF until ACTIVE |
//! | `DELETE /servers/{id}` | same status, task deleting → gone: 404 `itemNotFound` (its id stays a valid `marker`) |
//! | `POST /servers`, no address left | BUILD → ERROR (error / – / 0) with a `fault` |
//!
//! An action in the wrong state answers 409 `conflictingRequest` in Nova's words
//! ("Cannot 'stop' instance X while it is in task_state powering-off"). Each server
//! gets a Neutron port on each of its networks (an address from the network's subnet,
//! freed when it is gone); a network with ports cannot be deleted (409 `NetworkInUse`).
//!
//! It starts with flavors `m1.tiny` (1), `m1.small` (2), `m1.medium` (3), `m1.large`
//! (4) and `m1.xlarge` (5); public images `cirros` and `ubuntu-24.04` and a private
//! image of another project the user cannot see; networks `private` (shared, subnet
//! 10.0.0.0/24, wider when many servers are seeded) and `public` (`router:external`,
//! subnet 172.24.4.0/24), both the admin's; availability zone `nova`; and
//! [`FakeConfig::servers`] ACTIVE servers `server-0001`, … on `private`. Image and
//! network ids are new UUIDs at each start: ask [`FakeOpenStack::image_id`] and its
//! siblings.
//!
//! Faults can be injected per method and path ([`FakeOpenStack::inject`]); every
//! request is recorded ([`FakeOpenStack::requests`]). Every answer carries
//! `x-openstack-request-id` (Nova's also `x-compute-request-id`). Dropping the
//! [`FakeOpenStack`] stops the server.
//!
//! ```
//! use cms_driver_openstack::fake::{FakeConfig, FakeOpenStack};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cloud = FakeOpenStack::start(FakeConfig { servers: 3, ..FakeConfig::default() });
//! let http = reqwest::Client::new();
//! let auth = serde_json::json!({"auth": {
//!     "identity": {"methods": ["password"], "password": {"user": {
//!         "name": cloud.username(), "domain": {"name": "Default"},
//!         "password": cloud.password()}}},
//!     "scope": {"project": {"name": cloud.project_name(), "domain": {"name": "Default"}}}
//! }});
//! let answer = http.post(format!("{}/auth/tokens", cloud.auth_url())).json(&auth).send().await?;
//! assert_eq!(answer.status(), 201);
//! let token = answer.headers()["x-subject-token"].to_str()?.to_owned();
//! let compute = cloud.auth_url().replace("/identity/v3", "/compute/v2.1");
//! let servers: serde_json::Value = http
//!     .get(format!("{compute}/servers/detail"))
//!     .header("X-Auth-Token", &token)
//!     .header("OpenStack-API-Version", "compute 2.47")
//!     .send().await?.json().await?;
//! assert_eq!(servers["servers"].as_array().map(Vec::len), Some(3));
//! assert_eq!(servers["servers"][0]["flavor"]["original_name"], "m1.small");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

mod glance;
mod http;
mod keystone;
mod neutron;
mod nova;
mod pattern;
mod servers;
mod world;

use http::{parse_query, Reply, Req};
use world::World;

/// How long each step of a server's life takes (see the module's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeDelays {
    /// From `POST /servers` to ACTIVE (a third scheduling, a third networking, a
    /// third spawning).
    pub build: Duration,
    /// `os-stop`: powering-off until SHUTOFF.
    pub stop: Duration,
    /// `os-start`: powering-on until ACTIVE.
    pub start: Duration,
    /// `reboot`, soft or hard, until ACTIVE again.
    pub reboot: Duration,
    /// `DELETE`: deleting until gone.
    pub delete: Duration,
}

impl FakeDelays {
    /// Every step takes `d`.
    pub fn uniform(d: Duration) -> FakeDelays {
        FakeDelays {
            build: d,
            stop: d,
            start: d,
            reboot: d,
            delete: d,
        }
    }

    /// No waiting: each request sees the end of what the one before started.
    pub fn instant() -> FakeDelays {
        FakeDelays::uniform(Duration::ZERO)
    }
}

impl Default for FakeDelays {
    /// 50 ms a step.
    fn default() -> Self {
        FakeDelays::uniform(Duration::from_millis(50))
    }
}

/// How the fake behaves.
#[derive(Clone)]
pub struct FakeConfig {
    /// The user (in domain `Default`) whose password it accepts.
    pub username: String,
    /// That user's password.
    pub password: String,
    /// The user's project (in domain `Default`), where its servers are.
    pub project_name: String,
    /// The largest page Nova, Glance and Neutron answer (Nova's `[api] max_limit`,
    /// Glance's `api_limit_max`, Neutron's `pagination_max_limit`); default 1000.
    pub max_limit: usize,
    /// The highest compute microversion; default 2.96.
    pub max_microversion: (u32, u32),
    /// How long servers take to change state; default 50 ms a step.
    pub delays: FakeDelays,
    /// How long a token is valid; default one hour.
    pub token_lifetime: Duration,
    /// Servers of the user's project present at start, ACTIVE; default 0.
    pub servers: usize,
    /// The project's instance quota (seeded servers count); default 100.
    pub max_servers: usize,
    /// Serve a `GET …/servers/detail` asked again (same query, microversion and
    /// token) with the bytes made the first time, as long as no other request changed
    /// anything (no request but a GET came since); default false. For benchmarks of
    /// clients, so that what they measure is theirs and not the fake's rendering; only
    /// for worlds that change by requests alone (instant delays, nothing under way).
    pub reuse_listings: bool,
}

impl fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeConfig")
            .field("username", &self.username)
            .field("project_name", &self.project_name)
            .field("max_limit", &self.max_limit)
            .field("max_microversion", &self.max_microversion)
            .field("delays", &self.delays)
            .field("token_lifetime", &self.token_lifetime)
            .field("servers", &self.servers)
            .field("max_servers", &self.max_servers)
            .field("reuse_listings", &self.reuse_listings)
            .finish_non_exhaustive()
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            username: "cms".into(),
            password: "fake-openstack-password".into(),
            project_name: "cms".into(),
            max_limit: 1000,
            max_microversion: (2, 96),
            delays: FakeDelays::default(),
            token_lifetime: Duration::from_secs(3600),
            servers: 0,
            max_servers: 100,
            reuse_listings: false,
        }
    }
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// The HTTP method it hits (`GET`), or `*` for any.
    pub method: String,
    /// A text the request's path (without the query) must contain (`/servers/detail`);
    /// empty for any path.
    pub path_contains: String,
    /// How many requests it hits.
    pub times: usize,
    /// What it does to them.
    pub kind: FaultKind,
}

impl Fault {
    /// The next `times` requests of `method` (or `*`) whose path contains
    /// `path_contains` fail with `kind`.
    pub fn new(method: &str, path_contains: &str, times: usize, kind: FaultKind) -> Fault {
        Fault {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.into(),
            times,
            kind,
        }
    }
}

/// What an injected fault does, before the request is carried out.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// This status, with the service's own error body (Nova's `{"computeFault": …}`
    /// family, Neutron's `NeutronError`, Glance's webob page, Keystone's `error`).
    Status(u16),
    /// Rate limited: Nova answers 413 `overLimit` with `retryAfter`, the others 429;
    /// all with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 503 in the service's error shape.
    Unavailable,
    /// The connection is closed without an answer.
    Reset,
    /// The answer comes after this delay (the request is then carried out).
    Delay(Duration),
}

/// A request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    /// The `OpenStack-API-Version` header, if any.
    pub openstack_api_version: Option<String>,
    /// The `X-OpenStack-Nova-API-Version` header, if any.
    pub nova_api_version: Option<String>,
    /// Whether it carried an `X-Auth-Token`.
    pub token: bool,
    /// The status answered; 0 when the connection was closed instead.
    pub status: u16,
}

/// Listings kept for [`FakeConfig::reuse_listings`]: body, status, headers, request id.
type Listings = std::collections::HashMap<
    String,
    (
        Bytes,
        u16,
        Vec<(hyper::header::HeaderName, HeaderValue)>,
        String,
    ),
>;

struct Shared {
    world: Mutex<World>,
    faults: Mutex<Vec<Fault>>,
    seen: Mutex<Vec<Seen>>,
    /// With [`FakeConfig::reuse_listings`]: listings made, by request, and whether a
    /// request that is not a GET came since.
    listings: Option<Mutex<Listings>>,
}

/// A running fake OpenStack. Dropping it stops the server and closes its connections.
pub struct FakeOpenStack {
    addr: SocketAddr,
    config: FakeConfig,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for FakeOpenStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOpenStack")
            .field("auth_url", &self.auth_url())
            .field("config", &self.config)
            .finish()
    }
}

impl FakeOpenStack {
    /// Starts a fake on 127.0.0.1 (a port the OS chooses). Synchronous, but needs a
    /// tokio runtime: the server is a task of the current runtime.
    ///
    /// # Panics
    ///
    /// When no port can be bound on 127.0.0.1, or outside a tokio runtime: this is test
    /// support, see [`try_start`](FakeOpenStack::try_start) for an error instead.
    pub fn start(config: FakeConfig) -> FakeOpenStack {
        match FakeOpenStack::try_start(config) {
            Ok(f) => f,
            Err(e) => panic!("cannot start the fake OpenStack on 127.0.0.1: {e}"),
        }
    }

    /// Starts a fake on 127.0.0.1, or says why it cannot.
    pub fn try_start(config: FakeConfig) -> std::io::Result<FakeOpenStack> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(&config, &base)),
            faults: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            listings: config.reuse_listings.then(|| Mutex::new(Listings::new())),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = serving.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { handle(&shared, req).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(FakeOpenStack {
            addr,
            config,
            shared,
            task: Some(task),
        })
    }

    /// Keystone's v3 URL, `http://127.0.0.1:PORT/identity/v3`.
    pub fn auth_url(&self) -> String {
        format!("http://{}/identity/v3", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The user name (domain `Default`).
    pub fn username(&self) -> &str {
        &self.config.username
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        &self.config.password
    }

    /// The user's project (domain `Default`).
    pub fn project_name(&self) -> &str {
        &self.config.project_name
    }

    /// The project's id.
    pub fn project_id(&self) -> String {
        lock(&self.shared.world).project.id.clone()
    }

    /// The user's application credential: (id, secret).
    pub fn application_credential(&self) -> (String, String) {
        let w = lock(&self.shared.world);
        (w.app_credential.id.clone(), w.app_credential.secret.clone())
    }

    /// Adds a fault; faults are consumed in the order they were added.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// How many injected fault hits are left.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.faults).iter().map(|f| f.times).sum()
    }

    /// Removes every fault not yet consumed.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every token issued so far answers 401 from now on (new ones can be had).
    pub fn expire_tokens(&self) {
        lock(&self.shared.world).tokens.clear();
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.seen).clear();
    }

    /// The id of image `name` (`cirros`, `ubuntu-24.04`, `other-project-image`).
    ///
    /// # Panics
    ///
    /// When there is no such image.
    pub fn image_id(&self, name: &str) -> String {
        let w = lock(&self.shared.world);
        match w.images.iter().find(|i| i.name == name) {
            Some(i) => i.id.clone(),
            None => panic!("the fake OpenStack has no image named {name:?}"),
        }
    }

    /// The id of flavor `name` (`m1.tiny` … `m1.xlarge`).
    ///
    /// # Panics
    ///
    /// When there is no such flavor.
    pub fn flavor_id(&self, name: &str) -> String {
        let w = lock(&self.shared.world);
        match w.flavors.iter().find(|f| f.name == name) {
            Some(f) => f.id.clone(),
            None => panic!("the fake OpenStack has no flavor named {name:?}"),
        }
    }

    /// The id of network `name` (`private`, `public`, or one created since).
    ///
    /// # Panics
    ///
    /// When there is no such network.
    pub fn network_id(&self, name: &str) -> String {
        let w = lock(&self.shared.world);
        match w.networks.values().find(|n| n.name == name) {
            Some(n) => n.id.clone(),
            None => panic!("the fake OpenStack has no network named {name:?}"),
        }
    }

    /// How many servers the project has (those being deleted included, until gone).
    pub fn server_count(&self) -> usize {
        let mut w = lock(&self.shared.world);
        w.settle();
        w.server_count()
    }

    /// The project's server ids in Nova's default order (newest first).
    pub fn server_ids(&self) -> Vec<String> {
        let mut w = lock(&self.shared.world);
        w.settle();
        w.order.iter().rev().map(|(_, id)| id.clone()).collect()
    }

    /// A server's Nova `status` now (`ACTIVE`, `SHUTOFF`, …); `None` when it is gone.
    pub fn server_status(&self, id: &str) -> Option<String> {
        let mut w = lock(&self.shared.world);
        w.settle();
        w.servers.get(id).map(|s| s.status().to_owned())
    }

    /// The `user_data` a server was created with (base64, as sent); `None` when it
    /// had none or is gone.
    pub fn server_user_data(&self, id: &str) -> Option<String> {
        let w = lock(&self.shared.world);
        w.servers.get(id).and_then(|s| s.user_data.clone())
    }

    /// Forgets where deleted servers stood, as Nova's `db archive_deleted_rows` does:
    /// a page marker naming one of them is then `400 marker [X] not found`.
    pub fn archive_deleted(&self) {
        let mut w = lock(&self.shared.world);
        w.settle();
        w.tombstones.clear();
    }

    /// Stops the server and waits until it has stopped.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FakeOpenStack {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error of a closed connection (hyper closes it when the service fails).
#[derive(Debug)]
struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection closed by an injected fault")
    }
}

impl std::error::Error for Closed {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Keystone,
    Nova,
    Glance,
    Neutron,
    None,
}

fn service_of(path: &str) -> Service {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "identity" => Service::Keystone,
        "compute" => Service::Nova,
        "image" => Service::Glance,
        "network" => Service::Neutron,
        _ => Service::None,
    }
}

/// An error answer of `status` in `service`'s shape.
fn service_error(service: Service, req: &Req, status: u16, message: &str) -> Reply {
    match service {
        Service::Nova => nova::fault(status, message),
        Service::Neutron => {
            let kind = match status {
                400 => "HTTPBadRequest",
                401 => "HTTPUnauthorized",
                403 => "HTTPForbidden",
                404 => "HTTPNotFound",
                409 => "HTTPConflict",
                429 => "HTTPTooManyRequests",
                503 => "HTTPServiceUnavailable",
                _ => "HTTPInternalServerError",
            };
            neutron::error(status, kind, message)
        }
        Service::Glance => glance::error(req, status, message),
        Service::Keystone | Service::None => {
            let title = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            keystone::error(status, title, message)
        }
    }
}

fn fault_reply(service: Service, req: &Req, kind: &FaultKind) -> Option<Reply> {
    match kind {
        FaultKind::Status(status) => {
            let message = match status {
                500 => "Unexpected API Error. Please report this at http://bugs.launchpad.net/ and attach the API log if possible.",
                502 => "Bad Gateway",
                503 => "The server is currently unavailable. Please try again at a later time.",
                504 => "Gateway Timeout",
                _ => "Injected fault",
            };
            Some(service_error(service, req, *status, message))
        }
        FaultKind::Unavailable => Some(service_error(
            service,
            req,
            503,
            "The server is currently unavailable. Please try again at a later time.",
        )),
        FaultKind::RateLimited { retry_after_secs } => {
            let retry = retry_after_secs.to_string();
            let reply = if service == Service::Nova {
                Reply::json(
                    413,
                    &serde_json::json!({"overLimit": {
                        "code": 413,
                        "message": "This request was rate-limited.",
                        "retryAfter": retry
                    }}),
                )
            } else {
                service_error(service, req, 429, "This request was rate-limited.")
            };
            Some(reply.with_header("retry-after", &retry))
        }
        FaultKind::Reset | FaultKind::Delay(_) => None,
    }
}

/// Takes the first fault that matches this request, if any.
fn take_fault(shared: &Shared, method: &str, path: &str) -> Option<FaultKind> {
    let mut faults = lock(&shared.faults);
    let i = faults.iter().position(|f| {
        f.times > 0
            && (f.method == "*" || f.method == method)
            && path.contains(f.path_contains.as_str())
    })?;
    faults[i].times -= 1;
    let kind = faults[i].kind.clone();
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(kind)
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Closed> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut seen = Seen {
        method: parts.method.as_str().to_owned(),
        path: path_and_query,
        openstack_api_version: header("openstack-api-version"),
        nova_api_version: header("x-openstack-nova-api-version"),
        token: parts.headers.contains_key("x-auth-token"),
        status: 0,
    };
    let body = match Limited::new(body, 16 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let req = Req {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    let service = service_of(&req.path);
    // A listing made before, with nothing changed since: the same bytes again.
    let listing_key = match &shared.listings {
        Some(_) if req.method == hyper::Method::GET && req.path.ends_with("/servers/detail") => {
            Some(format!(
                "{}|{:?}|{:?}|{:?}",
                seen.path,
                seen.openstack_api_version,
                seen.nova_api_version,
                req.headers.get("x-auth-token")
            ))
        }
        Some(listings) if req.method != hyper::Method::GET => {
            lock(listings).clear();
            None
        }
        _ => None,
    };
    if let (Some(key), Some(listings)) = (&listing_key, &shared.listings) {
        let kept = lock(listings).get(key).cloned();
        if let Some((body, status, headers, request_id)) = kept {
            seen.status = status;
            lock(&shared.seen).push(seen);
            let reply = Reply {
                status,
                headers,
                content_type: "application/json",
                body,
            };
            return Ok(into_response(reply, service, &request_id));
        }
    }
    let mut reply = None;
    match take_fault(shared, req.method.as_str(), &req.path) {
        None => {}
        Some(FaultKind::Reset) => {
            lock(&shared.seen).push(seen);
            return Err(Closed);
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(kind) => reply = fault_reply(service, &req, &kind),
    }
    let (reply, request_id) = {
        let mut w = lock(&shared.world);
        let reply = match reply {
            Some(r) => r,
            None => match service {
                Service::Keystone => keystone::handle(&mut w, &req),
                Service::Nova => nova::handle(&mut w, &req),
                Service::Glance => glance::handle(&mut w, &req),
                Service::Neutron => neutron::handle(&mut w, &req),
                Service::None => {
                    keystone::error(404, "Not Found", "The resource could not be found.")
                }
            },
        };
        (reply, w.ids.request_id())
    };
    seen.status = reply.status;
    lock(&shared.seen).push(seen);
    if let (Some(key), Some(listings)) = (listing_key, &shared.listings) {
        if reply.status == 200 {
            let kept = (
                reply.body.clone(),
                reply.status,
                reply.headers.clone(),
                request_id.clone(),
            );
            lock(listings).insert(key, kept);
        }
    }
    Ok(into_response(reply, service, &request_id))
}

fn into_response(reply: Reply, service: Service, request_id: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(reply.body));
    *r.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        if service == Service::Nova {
            h.insert("x-compute-request-id", v.clone());
        }
        h.insert("x-openstack-request-id", v);
    }
    for (k, v) in reply.headers {
        h.append(k, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_and_stops() {
        let cloud = FakeOpenStack::start(FakeConfig::default());
        let client = reqwest::Client::new();
        let r = client.get(cloud.auth_url()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["x-openstack-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req-"));
        let url = cloud.auth_url();
        cloud.shutdown().await;
        assert!(client.get(url).send().await.is_err());
    }
}
