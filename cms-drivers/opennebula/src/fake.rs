//! A wire-level fake of oned (feature `fake`): an XML-RPC server on 127.0.0.1 that
//! speaks OpenNebula's protocol over a real socket, for tests.
//!
//! It serves the methods the driver uses with OpenNebula's real argument lists and
//! answers (`[true, body, 0]`, or `[false, message, code, object id, 0]`), checks the
//! session `user:password` of every call (0x100 when wrong), and moves VMs through
//! OpenNebula's STATE / LCM_STATE sequences as time passes, computed from timestamps
//! when a call looks:
//!
//! | action | sequence |
//! |---|---|
//! | allocate, instantiate | PENDING → ACTIVE/PROLOG → ACTIVE/BOOT → ACTIVE/RUNNING |
//! | `poweroff`, `poweroff-hard` | ACTIVE/SHUTDOWN_POWEROFF → POWEROFF |
//! | `resume` | POWEROFF → ACTIVE/BOOT_POWEROFF → ACTIVE/RUNNING (also from SUSPENDED, STOPPED, UNDEPLOYED, UNKNOWN) |
//! | `reboot`, `reboot-hard` | stays ACTIVE/RUNNING (the hypervisor reboots the guest) |
//! | `terminate`, `terminate-hard` | ACTIVE/SHUTDOWN → ACTIVE/EPILOG → DONE; PENDING and HOLD at once to DONE; POWEROFF through EPILOG |
//! | `suspend`, `stop`, `undeploy`, `hold`, `release` | through SAVE_SUSPEND, SAVE_STOP/EPILOG_STOP, SHUTDOWN_UNDEPLOY/EPILOG_UNDEPLOY |
//!
//! `one.vm.update` replaces (0) or merges into (1) a VM's USER_TEMPLATE, in any state,
//! refusing the attributes oned.conf restricts to oneadmin (`CPU_COST`, `PCI`, …).
//!
//! Images go through oned's image states ([`FakeDelays::image`] each): allocated,
//! cloned (`one.image.clone`) and saved (`one.vm.disksaveas`) images are LOCKED, then
//! READY; images VMs use are USED / USED_PERS (a persistent image in one VM at a
//! time); a clone's persistent source is CLONE meanwhile; deleted images are DELETE,
//! then gone; deleting one in use or being cloned is refused (0x800). Disks are
//! hot-plugged (`one.vm.attach`, `one.vm.detach`) only into RUNNING VMs (HOTPLUG) or
//! POWEROFF ones (HOTPLUG_PROLOG_POWEROFF / HOTPLUG_EPILOG_POWEROFF), for
//! [`FakeDelays::hotplug`]; other states answer 0x800. Security groups
//! (`one.secgroup.*`) check their rules as oned does and hold each once; VMs enter the
//! groups of their NICs (and of their networks: group 0) and leave them when done; a
//! group with VMs, and group 0, cannot be deleted.
//!
//! `one.vmpool.info` answers oned's short form of each VM (`to_xml_short`: no
//! USER_TEMPLATE attributes but the scheduler's, short DISKs and NICs);
//! `one.vmpool.infoextended` the full documents. Templates sent are read as oned reads
//! them: an attribute without a value is dropped.
//!
//! Every document it serves validates against OpenNebula's XSDs (the crate's tests
//! check that with `xmllint`). Templates are accepted in OpenNebula's XML form only
//! (the driver sends no other). Faults can be injected per method
//! ([`FakeOned::inject`]). Dropping the [`FakeOned`] stops the server.
//!
//! It starts with a small catalogue, all oneadmin's: OS images `ubuntu-24.04` (0),
//! `debian-12` (1) and `alpine-3.20` (3), a DATABLOCK image (2), VM templates
//! `ubuntu-small` (0, 0.5 CPU, 1 VCPU, 1024 MiB), `debian-large` (1, 2 CPU, 4 VCPU,
//! 8192 MiB) and `bare` (2, no capacity), virtual networks `public` (0, 10.0.0.0/24)
//! and `private` (1, 192.168.100.10 + 100), both adding security group 0 (`default`:
//! all in, all out), datastores `system` (0), `default` (1, images) and `files` (2),
//! clusters `default` (0, two hosts, every datastore) and `edge` (100, one disabled
//! host, the system datastore only), and one VM (0) that belongs to another user. The
//! user's images start at id 4, its security groups at 100.
//!
//! ```
//! use cms_driver_opennebula::fake::{FakeConfig, FakeOned};
//! use cms_driver_opennebula::{OpenNebulaConfig, OpenNebulaDriver};
//! use cms_core::Driver;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! let oned = FakeOned::start(FakeConfig::default());
//! let config = OpenNebulaConfig::new(&oned.endpoint(), oned.username(), "UNUSED");
//! let driver = OpenNebulaDriver::with_session(config, oned.username(), oned.password())?;
//! assert_eq!(driver.list_locations().await?.len(), 2);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

use crate::xmlrpc::{decode_call, encode_fault, encode_response, Value};

mod world;

use world::{Failure, World};

/// How long each step of a VM's life cycle takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeDelays {
    /// PENDING until the scheduler deploys it.
    pub schedule: Duration,
    /// PROLOG (and EPILOG_STOP, SAVE_* steps).
    pub prolog: Duration,
    /// BOOT and its variants.
    pub boot: Duration,
    /// SHUTDOWN, SHUTDOWN_POWEROFF, SHUTDOWN_UNDEPLOY.
    pub shutdown: Duration,
    /// EPILOG and its variants.
    pub epilog: Duration,
    /// An image's datastore operation: LOCKED until a new image (allocated, cloned or
    /// saved from a VM's disk) is READY; DELETE until a deleted image is gone.
    pub image: Duration,
    /// A disk hot-plug: HOTPLUG (or HOTPLUG_PROLOG_POWEROFF / HOTPLUG_EPILOG_POWEROFF)
    /// until the disk is attached or detached.
    pub hotplug: Duration,
}

impl FakeDelays {
    /// Every step takes `d`.
    pub fn uniform(d: Duration) -> FakeDelays {
        FakeDelays {
            schedule: d,
            prolog: d,
            boot: d,
            shutdown: d,
            epilog: d,
            image: d,
            hotplug: d,
        }
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
    /// The user whose session it accepts.
    pub username: String,
    /// That user's password.
    pub password: String,
    pub delays: FakeDelays,
    /// List pools in descending id order (oned's `API_LIST_ORDER = "DESC"`).
    pub list_order_desc: bool,
    /// The most VMs (not DONE) the user may have; more answer OpenNebula's quota error.
    pub vm_quota: Option<usize>,
}

impl fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeConfig")
            .field("username", &self.username)
            .field("delays", &self.delays)
            .field("list_order_desc", &self.list_order_desc)
            .field("vm_quota", &self.vm_quota)
            .finish_non_exhaustive()
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            username: "cms".into(),
            password: "fake-oned-password".into(),
            delays: FakeDelays::default(),
            list_order_desc: false,
            vm_quota: None,
        }
    }
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// The method it hits (`one.vm.allocate`), or `*` for every method.
    pub method: String,
    /// How many calls it hits.
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    /// The next `times` calls of `method` (or `*`) fail with `kind`.
    pub fn new(method: &str, times: usize, kind: FaultKind) -> Fault {
        Fault {
            method: method.into(),
            times,
            kind,
        }
    }
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// An OpenNebula error answer `[false, message, code]`, before the call is carried out.
    OpenNebula { code: i64, message: String },
    /// An HTTP status with a small HTML body.
    Http(u16),
    /// A 200 answer with this body instead of XML-RPC.
    Garbage(String),
    /// An XML-RPC fault.
    XmlRpcFault { code: i64, message: String },
    /// The connection is closed without an answer.
    Close,
    /// The answer comes after this delay (the call is then carried out).
    Delay(Duration),
    /// An error answer whose message echoes the request body, session included (as a
    /// careless proxy or server might), with this code.
    EchoRequest { code: i64 },
}

struct Shared {
    world: Mutex<World>,
    faults: Mutex<Vec<Fault>>,
    stats: Mutex<HashMap<String, CallStats>>,
    session: String,
}

#[derive(Clone, Copy, Debug, Default)]
struct CallStats {
    calls: usize,
    largest_page: u64,
}

/// A running fake oned. Dropping it stops the server and closes its connections.
pub struct FakeOned {
    addr: SocketAddr,
    config: FakeConfig,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for FakeOned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeOned")
            .field("endpoint", &self.endpoint())
            .field("config", &self.config)
            .finish()
    }
}

impl FakeOned {
    /// Starts a fake on 127.0.0.1 (a port the OS chooses). Needs a tokio runtime.
    ///
    /// # Panics
    ///
    /// When no port can be bound on 127.0.0.1, or outside a tokio runtime: this is test
    /// support, see [`try_start`](FakeOned::try_start) for an error instead.
    pub fn start(config: FakeConfig) -> FakeOned {
        match FakeOned::try_start(config) {
            Ok(f) => f,
            Err(e) => panic!("cannot start the fake oned on 127.0.0.1: {e}"),
        }
    }

    /// Starts a fake on 127.0.0.1, or says why it cannot.
    pub fn try_start(config: FakeConfig) -> std::io::Result<FakeOned> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(&config)),
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(HashMap::new()),
            session: format!("{}:{}", config.username, config.password),
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
        Ok(FakeOned {
            addr,
            config,
            shared,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/RPC2`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/RPC2", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The user it accepts.
    pub fn username(&self) -> &str {
        &self.config.username
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        &self.config.password
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

    /// How many calls of `method` arrived (authenticated or not).
    pub fn calls(&self, method: &str) -> usize {
        lock(&self.shared.stats)
            .get(method)
            .map(|s| s.calls)
            .unwrap_or(0)
    }

    /// The largest page size (`-end`) a call of the pool method `method` asked for; 0
    /// when none paged.
    pub fn largest_page(&self, method: &str) -> u64 {
        lock(&self.shared.stats)
            .get(method)
            .map(|s| s.largest_page)
            .unwrap_or(0)
    }

    /// Puts VM `id` in STATE `state` and LCM_STATE `lcm` at once, cancelling what it
    /// was doing (to test states the driver cannot cause). False when there is no such
    /// VM.
    pub fn set_vm_state(&self, id: i64, state: i64, lcm: i64) -> bool {
        lock(&self.shared.world).set_vm_state(id, state, lcm)
    }

    /// Adds `n` RUNNING VMs of the user directly (no XML-RPC), for large-pool tests;
    /// returns their ids.
    pub fn add_running_vms(&self, n: usize) -> Vec<i64> {
        lock(&self.shared.world).add_running_vms(n)
    }

    /// Terminates VM `id` at once (it becomes DONE), as another client might.
    pub fn finish_vm(&self, id: i64) -> bool {
        lock(&self.shared.world).set_vm_state(id, 6, 0)
    }

    /// Stops the server and waits until it has stopped.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FakeOned {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn xml_answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn one_answer(result: Result<Value, Failure>) -> Response<Full<Bytes>> {
    let body = match result {
        Ok(v) => encode_response(&Value::Array(vec![Value::Bool(true), v, Value::Int(0)])),
        Err(Failure::One { code, message, id }) => encode_response(&Value::Array(vec![
            Value::Bool(false),
            Value::Str(message),
            Value::Int(code),
            Value::Int(id),
            Value::Int(0),
        ])),
        Err(Failure::Fault { code, message }) => encode_fault(code, &message),
    };
    xml_answer(StatusCode::OK, body)
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

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Closed> {
    if req.uri().path() != "/RPC2" {
        return Ok(xml_answer(
            StatusCode::NOT_FOUND,
            "<html>404 Not Found</html>".into(),
        ));
    }
    if req.method() != hyper::Method::POST {
        return Ok(xml_answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "<html>405 Method Not Allowed</html>".into(),
        ));
    }
    let body = match Limited::new(req.into_body(), 16 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(xml_answer(StatusCode::BAD_REQUEST, String::new())),
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let (method, params) = match decode_call(&text) {
        Ok(c) => c,
        Err(why) => {
            return Ok(one_answer(Err(Failure::Fault {
                code: -503,
                message: format!("XML-RPC parse error: {why}"),
            })))
        }
    };
    {
        let mut stats = lock(&shared.stats);
        let s = stats.entry(method.clone()).or_default();
        s.calls += 1;
        if method.ends_with("pool.info") || method.ends_with("pool.infoextended") {
            if let Some(end) = params.get(3).and_then(Value::as_int) {
                if end < -1 {
                    s.largest_page = s.largest_page.max(end.unsigned_abs());
                }
            }
        }
    }
    let fault = {
        let mut faults = lock(&shared.faults);
        match faults
            .iter_mut()
            .position(|f| f.times > 0 && (f.method == method || f.method == "*"))
        {
            Some(i) => {
                faults[i].times -= 1;
                let kind = faults[i].kind.clone();
                if faults[i].times == 0 {
                    faults.remove(i);
                }
                Some(kind)
            }
            None => None,
        }
    };
    match fault {
        None => {}
        Some(FaultKind::OpenNebula { code, message }) => {
            return Ok(one_answer(Err(Failure::One {
                code,
                message: format!("[{method}] {message}"),
                id: -1,
            })))
        }
        Some(FaultKind::Http(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return Ok(xml_answer(
                status,
                format!("<html><body>{status}</body></html>"),
            ));
        }
        Some(FaultKind::Garbage(body)) => return Ok(xml_answer(StatusCode::OK, body)),
        Some(FaultKind::XmlRpcFault { code, message }) => {
            return Ok(one_answer(Err(Failure::Fault { code, message })))
        }
        Some(FaultKind::Close) => return Err(Closed),
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::EchoRequest { code }) => {
            return Ok(one_answer(Err(Failure::One {
                code,
                message: format!("[{method}] cannot process the request {text}"),
                id: -1,
            })))
        }
    }
    let result = match params.first() {
        Some(Value::Str(session)) if *session == shared.session => {
            lock(&shared.world).call(&method, &params[1..])
        }
        Some(Value::Str(_)) => Err(Failure::One {
            code: 0x100,
            message: format!("[{method}] User couldn't be authenticated, aborting call."),
            id: -1,
        }),
        _ => Err(Failure::Fault {
            code: -501,
            message: "Type mismatch: the first parameter (the session) must be a string".into(),
        }),
    };
    Ok(one_answer(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_and_stops() {
        let oned = FakeOned::start(FakeConfig::default());
        let client = reqwest::Client::new();
        let call = crate::xmlrpc::encode_call(
            "one.system.version",
            &[Value::from("cms:fake-oned-password")],
        );
        let r = client
            .post(oned.endpoint())
            .body(call.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let addr = oned.endpoint();
        oned.shutdown().await;
        assert!(client.post(addr).body(call).send().await.is_err());
    }
}
