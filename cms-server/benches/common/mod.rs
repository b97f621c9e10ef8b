//! What the load benchmarks share: a temporary directory, the release `cms-server`
//! started on the memory cloud with no delays (its state in that directory), load from
//! many connections ([`load`]) and nginx serving the same bytes ([`nginx`]).

#![allow(dead_code)]

pub mod load;
pub mod nginx;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A directory for a run's files, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cms-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the benchmark's temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `cms-server`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The memory provider every benchmark uses: `local`, no delays.
pub const LOCAL: &str = "[[providers]]\nname = \"local\"\ndriver = \"memory\"\nboot_delay_ms = 0\n";

/// Starts the `cms-server` Cargo built for the benchmark: one memory provider `local`
/// with no delays, its store in `dir`, with `env` (the development tenant's keys).
pub fn start_server(dir: &TempDir, env: &[(&str, &str)]) -> Server {
    start_with(env!("CARGO_BIN_EXE_cms-server").as_ref(), dir, LOCAL, env)
}

/// Starts the `cms-server` at `binary` with the configuration `config`, its store in
/// `dir` (a fresh file each start).
pub fn start_with(
    binary: &std::path::Path,
    dir: &TempDir,
    config: &str,
    env: &[(&str, &str)],
) -> Server {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.0.join(format!("cms-{n}.toml"));
    std::fs::write(&file, config).expect("write config");
    let mut cmd = Command::new(binary);
    cmd.args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env(
            "CMS_STATE",
            format!("sqlite://{}", dir.0.join(format!("state-{n}.db")).display()),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start cms-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("cms-server exited before listening")
            .expect("read stdout");
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.trim().parse().expect("address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// The peak resident set of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
