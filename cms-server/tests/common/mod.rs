//! Harness of the end-to-end server tests: builds the real `cms-server` binary once per
//! test process, starts it on a free port with a temporary config, and stops it when
//! the [`Server`] guard is dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The path of the `cms-server` binary Cargo built for these tests.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cms-server"))
}

/// A temporary file, removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Writes `contents` to a fresh file in the temporary directory.
    pub fn new(contents: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cms-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp config");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a server process printed so far.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, line: &str) {
        let mut s = self.0.lock().unwrap();
        s.push_str(line);
        s.push('\n');
    }
}

/// How to start a server.
#[derive(Default)]
pub struct Options {
    /// Config file contents (none: no `--config`).
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Environment variables to remove.
    pub env_remove: Vec<String>,
    /// The bearer key requests carry by default.
    pub key: Option<String>,
    /// The store's URL (`CMS_STATE`); none: a fresh store of the run's kind (see
    /// [`StateDb`]), removed on drop.
    pub state: Option<String>,
}

/// A fresh, empty store for one test: a SQLite file in a temporary directory, or, when
/// the run asks for PostgreSQL (`CMS_TEST_STATE=postgres` with `CMS_TEST_POSTGRES`, an
/// admin URL: the README's test command starts a server and runs the suite once on
/// each), a database of its own. Removed on drop. Servers restarted on the same `url`
/// find what the earlier ones wrote.
pub struct StateDb {
    pub url: String,
    _dir: Option<TempDir>,
    pg: Option<(String, String)>,
}

/// The PostgreSQL admin URL of the run, if it has a server.
pub fn postgres_server() -> Option<String> {
    std::env::var("CMS_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The PostgreSQL admin URL, when the run keeps the servers' state there.
pub fn postgres_admin() -> Option<String> {
    let wanted = std::env::var("CMS_TEST_STATE").is_ok_and(|v| v == "postgres");
    match (wanted, postgres_server()) {
        (true, Some(url)) => Some(url),
        (true, None) => panic!("CMS_TEST_STATE=postgres needs CMS_TEST_POSTGRES (an admin URL)"),
        (false, _) => None,
    }
}

fn psql(admin: &str, sql: &str) {
    let out = Command::new("psql")
        .args([admin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql (CMS_TEST_POSTGRES is set: the PostgreSQL client must be installed)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl StateDb {
    /// A fresh store of the run's kind.
    pub fn new(name: &str) -> StateDb {
        StateDb::on(name, postgres_admin())
    }

    /// A fresh store on PostgreSQL whenever the run has a server (replicas share one),
    /// else in SQLite.
    pub fn shared(name: &str) -> StateDb {
        StateDb::on(name, postgres_server())
    }

    fn on(name: &str, admin: Option<String>) -> StateDb {
        match admin {
            Some(admin) => {
                static N: AtomicUsize = AtomicUsize::new(0);
                let db = format!(
                    "cms_{}_{}_{}",
                    name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                );
                psql(&admin, &format!("CREATE DATABASE {db}"));
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                StateDb {
                    url: format!("{base}/{db}"),
                    _dir: None,
                    pg: Some((admin.clone(), db)),
                }
            }
            None => {
                let dir = TempDir::new(name);
                StateDb {
                    url: dir.sqlite("cms.db"),
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }

    /// Whether it is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }
}

impl Drop for StateDb {
    fn drop(&mut self) {
        if let Some((admin, db)) = &self.pg {
            let _ = Command::new("psql")
                .args([
                    admin.as_str(),
                    "-X",
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                ])
                .output();
        }
    }
}

/// A temporary directory, removed (with what is in it) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cms-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// A SQLite URL for a file in this directory.
    pub fn sqlite(&self, file: &str) -> String {
        format!("sqlite://{}", self.0.join(file).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `cms-server`, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub key: Option<String>,
    pub stdout: Output,
    pub stderr: Output,
    pub client: reqwest::Client,
    _config: Option<TempFile>,
    _state: Option<StateDb>,
}

/// A config for most tests: a fast memory provider `local`, providers that fail on
/// purpose through the chaos layer, and two tenants.
pub const TEST_CONFIG: &str = r#"
aggregate_timeout_ms = 400

[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 50
stop_delay_ms = 50
start_delay_ms = 50
reboot_delay_ms = 50
terminate_delay_ms = 50
volume_create_delay_ms = 50
volume_delete_delay_ms = 50
attach_delay_ms = 50
detach_delay_ms = 50
snapshot_delay_ms = 100
image_delay_ms = 50

# Every call fails with Unavailable (503).
[[providers]]
name = "broken"
driver = "memory"
retry_attempts = 1
[providers.chaos]
fault_rate = 1.0

# Every call is rate limited (429, Retry-After: 2).
[[providers]]
name = "limited"
driver = "memory"
retry_attempts = 1
[providers.chaos]
rate_limit_rate = 1.0
retry_after_ms = 1500

# Calls take at least 5 s but are cut at 20 ms (504).
[[providers]]
name = "slow"
driver = "memory"
retry_attempts = 1
timeout_ms = 20
[providers.chaos]
latency_ms = 5000
latency_min_ms = 5000

[[tenants]]
name = "alice"
api_key = "alice-key-0123456789abcdef0123"
providers = ["*"]

[[tenants]]
name = "bob"
api_key_env = "CMS_TEST_BOB_KEY"
providers = ["local"]
"#;

pub const ALICE: &str = "alice-key-0123456789abcdef0123";
pub const BOB: &str = "bob-key-abcdef0123456789abcdef";

impl Server {
    /// Starts the server with `opts` and waits for its `listening on` line.
    pub fn start(opts: Options) -> Server {
        let config = opts.config.as_deref().map(TempFile::new);
        let (state_dir, state) = match &opts.state {
            Some(url) => (None, url.clone()),
            None => {
                let db = StateDb::new("state");
                let url = db.url.clone();
                (Some(db), url)
            }
        };
        let mut cmd = Command::new(binary());
        cmd.args(["--listen", "127.0.0.1:0"]);
        if let Some(c) = &config {
            cmd.arg("--config").arg(&c.0);
        }
        cmd.env_remove("CMS_LISTEN")
            .env_remove("CMS_CONFIG")
            .env_remove("CMS_DEV_API_KEY")
            .env_remove("CMS_DEV_ACCESS_KEY_ID")
            .env_remove("CMS_DEV_SECRET_ACCESS_KEY")
            .env_remove("CMS_LOG_FORMAT")
            .env("CMS_STATE", &state)
            .env("RUST_LOG", "info");
        for k in &opts.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start cms-server");
        let stdout = Output::default();
        let stderr = Output::default();
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = stdout.clone();
            let pipe = child.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    out.push(&line);
                    let _ = tx.send(line);
                }
            });
        }
        {
            let err = stderr.clone();
            let pipe = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    err.push(&line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "cms-server did not print `listening on`; stdout:\n{}\nstderr:\n{}",
                        stdout.text(),
                        stderr.text()
                    );
                }
            }
        };
        Server {
            child: Some(child),
            base,
            key: opts.key,
            stdout,
            stderr,
            client: reqwest::Client::new(),
            _config: config,
            _state: state_dir,
        }
    }

    /// The test config, authenticated as alice; bob's key in the environment.
    pub fn with_test_config() -> Server {
        Server::start(Options {
            config: Some(TEST_CONFIG.to_owned()),
            env: vec![("CMS_TEST_BOB_KEY".into(), BOB.into())],
            key: Some(ALICE.to_owned()),
            ..Options::default()
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A request with the default key.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.req(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.req(reqwest::Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.req(reqwest::Method::DELETE, path)
    }

    /// Sends SIGKILL without waiting (the process is reaped on drop): for a test that
    /// still has requests in flight to it.
    pub fn sigkill(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
        }
    }

    /// Kills the process with SIGKILL: no graceful anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the binary to completion (for startup failures): exit status, stdout, stderr.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("CMS_LISTEN")
        .env_remove("CMS_CONFIG")
        .env_remove("CMS_DEV_API_KEY")
        .env("CMS_STATE", "sqlite::memory:")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start cms-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cms-server {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, out, err)
}

/// Sends a request and reads its answer as JSON.
pub async fn json_of(r: reqwest::RequestBuilder) -> Value {
    r.send()
        .await
        .expect("send")
        .json()
        .await
        .expect("a JSON answer")
}

/// Asserts `resp` is a problem document with `status` and `kind`, and returns it.
pub async fn expect_problem(resp: reqwest::Response, status: u16, kind: &str) -> Value {
    let got = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = resp.url().path().to_owned();
    let body: Value = resp.json().await.expect("problem body is JSON");
    assert_eq!(got, status, "status; body: {body}");
    assert_eq!(
        ctype, "application/problem+json",
        "content type; body: {body}"
    );
    assert_eq!(body["type"], format!("urn:cms:problem:{kind}"), "{body}");
    assert_eq!(body["kind"], kind, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["instance"], path, "{body}");
    body
}

/// The id of the first image and flavor of `provider`.
pub async fn image_and_flavor(s: &Server, provider: &str) -> (String, String) {
    let images: Value = s
        .get(&format!("/v1/providers/{provider}/images"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flavors: Value = s
        .get(&format!("/v1/providers/{provider}/flavors"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        images["items"][0]["id"].as_str().unwrap().to_owned(),
        flavors["items"][0]["id"].as_str().unwrap().to_owned(),
    )
}

/// Polls the instance until it is in `state` (10 s at most) and returns it.
pub async fn wait_state(s: &Server, path: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        let v: Value = r.json().await.unwrap();
        if v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "instance {path} still {} after 10 s, waiting for {state}",
            v["state"]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs a set-up script of `scripts/` once per test process and answers what it
/// printed (a path); its progress goes to the test's output.
fn setup_script(name: &str) -> PathBuf {
    let script = format!("{}/../scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}); see its output above",
        out.status
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The bin folder of the workspace's Python environment, after `scripts/python-env`
/// made sure the pinned tools (moto, boto3, the AWS CLI, Libcloud, schemathesis) are
/// installed (once per test process; cheap when they already are).
pub fn python_env() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| setup_script("python-env").join("bin"))
}

/// The node (20 or newer) to run the JavaScript suite with, after `scripts/node-env`
/// installed its pinned clients (once per test process; cheap when they already are).
pub fn node_env() -> &'static Path {
    static NODE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    NODE.get_or_init(|| setup_script("node-env"))
}

/// What a program run by [`run_in_group`] did.
pub struct Run {
    /// Its exit status; `None` when it was killed for running too long.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    /// Fails the test, with both outputs and the end of the server's log, unless the
    /// program exited with success.
    pub fn assert_passed(&self, what: &str, limit: Duration, s: &Server) {
        eprintln!("{what}: {:.1} s", self.took.as_secs_f64());
        let passed = self.status.is_some_and(|s| s.success());
        assert!(
            passed,
            "{what} {} after {:.1} s\n\
             ---- stdout ----\n{}\n---- stderr ----\n{}\n\
             ---- cms-server stderr (last 60 lines) ----\n{}",
            match self.status {
                Some(s) => format!("failed ({s})"),
                None => format!("was killed: still running after {} s", limit.as_secs()),
            },
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr,
            tail(&s.stderr.text(), 60)
        );
    }
}

/// Runs `cmd` in a process group of its own, killed whole (with whatever it started)
/// when it ends or when it is still running after `limit`.
pub fn run_in_group(mut cmd: Command, limit: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pgid = child.id();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    // Waited for without being reaped, so that its process group id cannot be reused
    // before the group is killed below.
    let mut timed_out = false;
    while !has_exited(pgid) {
        if started.elapsed() > limit {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let status = child.wait().ok().filter(|_| !timed_out);
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// Reads a pipe to its end on a thread of its own.
pub fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Whether process `pid` (a child not yet waited for) has exited: it is a zombie.
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `[[providers]]` table named `onprem` for the fake oned, with one size `small`;
/// `extra` goes inside the table (a timeout, `[providers.chaos]`…). The password comes
/// from `CMS_TEST_ONE_PASSWORD`: see [`opennebula_env`].
pub fn opennebula_provider(oned: &cms_driver_opennebula::fake::FakeOned, extra: &str) -> String {
    format!(
        r#"
[[providers]]
name = "onprem"
driver = "opennebula"
endpoint = "{}"
username = "{}"
password_env = "CMS_TEST_ONE_PASSWORD"
{extra}
[[providers.sizes]]
name = "small"
cpu = 0.5
vcpu = 1
memory_mib = 512
"#,
        oned.endpoint(),
        oned.username()
    )
}

/// The environment [`opennebula_provider`] needs.
pub fn opennebula_env(oned: &cms_driver_opennebula::fake::FakeOned) -> (String, String) {
    ("CMS_TEST_ONE_PASSWORD".into(), oned.password().into())
}

/// Runs a boto3 script against moto (`ec2` is its client) and parses what it prints
/// as JSON.
pub fn boto3(moto: &cms_driver_ec2::moto::MotoServer, script: &str) -> Value {
    use cms_driver_ec2::moto::REGION;
    let out = Command::new(python_env().join("python"))
        .arg("-c")
        .arg(format!(
            "import boto3, json\n\
             ec2 = boto3.client('ec2', region_name='{REGION}', endpoint_url='{}',\n\
                 aws_access_key_id='testing', aws_secret_access_key='testing')\n{script}",
            moto.endpoint()
        ))
        .output()
        .expect("run boto3 (installed by scripts/python-env)");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("boto3 printed JSON")
}
