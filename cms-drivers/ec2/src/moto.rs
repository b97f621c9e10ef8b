//! Test support (feature `moto`): moto's EC2 server on 127.0.0.1, installed and
//! started by the test itself.
//!
//! [`MotoServer::start`] runs `scripts/python-env` (which installs the pinned moto
//! into the workspace's `.venv` the first time, and does nothing afterwards), picks
//! a free port on 127.0.0.1, spawns `moto_server -H 127.0.0.1 -p PORT`, waits until
//! it answers, and kills it when the `MotoServer` is dropped. Each server is a fresh,
//! empty EC2 (one account, every region), so tests do not see each other.
//!
//! moto is started with its optional validations on (`MOTO_ENABLE_AMI_VALIDATION`,
//! `MOTO_ENABLE_KEYPAIR_VALIDATION`, `MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION`), so
//! that, as on EC2, an instance cannot be made from an unknown image, key pair or
//! instance type.
//!
//! ```no_run
//! # async fn demo() -> cms_core::Result<()> {
//! use cms_driver_ec2::{moto::MotoServer, Ec2Driver};
//! let moto = MotoServer::start().await;
//! let driver = Ec2Driver::new(moto.config()).await?;
//! # Ok(()) }
//! ```

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Ec2Config, StaticCredentials};

/// The region tests use.
pub const REGION: &str = "us-east-1";
/// An AMI moto knows in every region (Ubuntu 14.04 from its default catalogue,
/// owned by Canonical's account), for tests that boot something.
pub const IMAGE_ID: &str = "ami-1e749f67";
/// The account that owns [`IMAGE_ID`] (Canonical's, as on AWS): listing its images
/// shows two. (Owner `amazon` lists moto's whole catalogue, about 1,300 images, and
/// takes moto seconds per call.)
pub const IMAGE_OWNER: &str = "099720109477";
/// An instance type moto knows.
pub const FLAVOR: &str = "t2.micro";
/// The default VPC's range in moto (as on EC2): networks created in tests go inside.
pub const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";

/// How long moto may take to answer after it is spawned.
const STARTUP: Duration = Duration::from_secs(60);

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
    endpoint: String,
    log: PathBuf,
}

impl MotoServer {
    /// Installs moto if needed and starts a fresh server. Panics (it is test support)
    /// with the reason and the server's log when it cannot.
    pub async fn start() -> MotoServer {
        let venv = python_env().await;
        let moto_server = venv.join("bin").join("moto_server");
        let mut last_failure = String::new();
        // A port picked free may be taken before moto binds it: try a few.
        for _ in 0..3 {
            match Self::spawn(&moto_server).await {
                Ok(server) => return server,
                Err(why) => last_failure = why,
            }
        }
        panic!("moto_server did not start: {last_failure}");
    }

    async fn spawn(moto_server: &Path) -> Result<MotoServer, String> {
        let port = free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::env::temp_dir().join(format!("cms-moto-{}-{port}.log", std::process::id()));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let child = Command::new(moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            // Fake credentials for moto's own boto calls; never real ones.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", REGION)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", moto_server.display()))?;
        let mut server = MotoServer {
            child,
            addr,
            endpoint: format!("http://{addr}"),
            log,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "it exited with {status}; its log:\n{}",
                    server.log_tail()
                ));
            }
            if answers(addr).await {
                return Ok(server);
            }
            if started.elapsed() > STARTUP {
                return Err(format!(
                    "it did not answer on {addr} within {STARTUP:?}; its log:\n{}",
                    server.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The credentials moto accepts (any; these are `testing`/`testing`).
    pub fn credentials(&self) -> StaticCredentials {
        StaticCredentials::new("testing", "testing")
    }

    /// A driver configuration for this server: [`REGION`], the endpoint, the
    /// credentials, and the images of [`IMAGE_OWNER`] listed (a fresh moto account
    /// owns no image, so the default owner `self` would list none).
    pub fn config(&self) -> Ec2Config {
        Ec2Config::new(REGION)
            .endpoint(self.endpoint())
            .credentials(self.credentials())
            .image_owners([IMAGE_OWNER])
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The workspace root: this crate lives in `cms-drivers/ec2`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Runs `scripts/python-env` (which installs the pinned Python tools into `.venv`
/// the first time, and does nothing afterwards) and answers the environment's path.
pub async fn python_env() -> PathBuf {
    let root = workspace_root();
    let script = root.join("scripts").join("python-env");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}); see its output above",
        script.display(),
        out.status
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if path.is_empty() {
        root.join(".venv")
    } else {
        PathBuf::from(path)
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether an HTTP server answers on `addr`.
async fn answers(addr: SocketAddr) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"HTTP/")
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
