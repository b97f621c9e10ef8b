//! nginx (the Debian package; `scripts/bench-deps` installs it) serving a file of
//! bytes a benchmark's server answered: the ceiling for those bytes over HTTP/1.1 on
//! this machine, measured in the same run.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts nginx.
pub const NGINX: &str = "/usr/sbin/nginx";
/// nginx's worker processes.
pub const NGINX_WORKERS: usize = 2;

/// nginx as a foreground child with a configuration of its own; stopped on drop.
pub struct Nginx {
    pub child: Child,
    pub addr: SocketAddr,
    args: Vec<String>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL would orphan the workers: ask the master to stop them.
        let _ = Command::new(NGINX)
            .args(&self.args)
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `body` at `/{file}` as `content_type`; `Err` says why not (nginx missing).
pub fn start_nginx(
    dir: &Path,
    file: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Nginx, String> {
    if !Path::new(NGINX).exists() {
        return Err(format!("{NGINX} not found; run scripts/bench-deps"));
    }
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("html")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("html").join(file), body).map_err(|e| e.to_string())?;
    let version = Command::new(NGINX)
        .arg("-V")
        .output()
        .map_err(|e| format!("cannot run {NGINX}: {e}"))?;
    let built = String::from_utf8_lossy(&version.stderr).into_owned();
    // Temp paths in the temp dir, so that nginx needs nothing of /var when not root.
    let mut temp = format!("client_body_temp_path {0}/body;\n", root.display());
    for m in ["proxy", "fastcgi", "uwsgi", "scgi"] {
        if !built.contains(&format!("--without-http_{m}_module")) {
            temp += &format!("{m}_temp_path {}/{m};\n", root.display());
        }
    }
    let port = free_port();
    let r = root.display();
    let conf = format!(
        "worker_processes {NGINX_WORKERS};\n\
         daemon off;\n\
         pid {r}/nginx.pid;\n\
         error_log {r}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         access_log off;\n\
         sendfile on;\n\
         tcp_nodelay on;\n\
         keepalive_timeout 75s;\n\
         keepalive_requests 100000000;\n\
         {temp}\
         server {{\n\
         listen 127.0.0.1:{port};\n\
         root {r}/html;\n\
         location = /{file} {{ types {{ }} default_type {content_type}; }}\n\
         }}\n\
         }}\n"
    );
    std::fs::write(root.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let args: Vec<String> = vec![
        "-p".into(),
        format!("{r}/"),
        "-c".into(),
        format!("{r}/nginx.conf"),
        "-e".into(),
        format!("{r}/error.log"),
    ];
    let child = Command::new(NGINX)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {NGINX}: {e}"))?;
    let mut nginx = Nginx {
        child,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        args,
    };
    let log = || std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            return Err(format!("nginx exited with {status}: {}", log()));
        }
        if std::net::TcpStream::connect(nginx.addr).is_ok() {
            return Ok(nginx);
        }
        if Instant::now() > until {
            return Err(format!("nginx did not listen within 10 s: {}", log()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
