//! Load benchmark of the EC2 frontend: `cargo bench -p cms-server --bench ec2`.
//!
//! One signed `DescribeInstances` answering 100 instances, at 64 keep-alive connections,
//! against three servers in the same run, on the same machine:
//!
//! - cms: the release `cms-server` (Cargo builds it for the benchmark) on the memory
//!   cloud with no delays, 100 instances launched by a signed `RunInstances`;
//! - moto: moto's EC2 server (`MotoServer`, from the workspace's `.venv`) holding 100
//!   instances, the Python implementation many EC2 tests run against;
//! - nginx: the Debian package (`scripts/bench-deps` installs it), serving the bytes of
//!   one of cms's own `DescribeInstances` answers as a static file: the ceiling for those
//!   bytes over HTTP/1.1 on this machine. Skipped, with the reason, when not installed.
//!
//! Requests to cms and moto are SigV4-signed by `aws-sigv4` once per target and sent
//! unchanged (a signature is good for 15 minutes; the server still verifies each one).
//! Every connection sends back to back until the deadline (`CMS_BENCH_SECONDS`, 10 s by
//! default), then waits for its answer in flight (at most [`DRAIN_CAP`] more);
//! throughput is answers divided by the time until the last one. Prints a table, the
//! ratios cms/moto and cms/nginx against the aims, CPU per request and cms's peak RSS.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use cms_driver_ec2::moto::{self, MotoServer};
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

mod common;
use common::{peak_rss_kib, start_server, TempDir};

/// The development tenant's EC2 keys (`CMS_DEV_ACCESS_KEY_ID`, `CMS_DEV_SECRET_ACCESS_KEY`).
const ACCESS_KEY_ID: &str = "AKIACMSBENCH0000EC2";
const SECRET_ACCESS_KEY: &str = "cms-bench-secret-0123456789abcdef";
const CONNECTIONS: usize = 64;
const INSTANCES: usize = 100;
const DESCRIBE: &str = "Action=DescribeInstances&Version=2016-11-15";
/// How long connections may wait for their last answer after the deadline.
const DRAIN_CAP: Duration = Duration::from_secs(60);
/// Signatures are reused for the whole row; the server accepts them for 15 minutes.
const MAX_SECONDS: f64 = 600.0;
const AIM_MOTO: f64 = 300.0;
const AIM_NGINX: f64 = 0.25;
const NGINX: &str = "/usr/sbin/nginx";
const NGINX_WORKERS: usize = 2;

/// nginx as a foreground child with a configuration of its own; stopped on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
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

/// Serves `body` at `/describe-instances.xml` as `text/xml`; `Err` says why not.
fn start_nginx(dir: &Path, body: &[u8]) -> Result<Nginx, String> {
    if !Path::new(NGINX).exists() {
        return Err(format!("{NGINX} not found; run scripts/bench-deps"));
    }
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("html")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("html/describe-instances.xml"), body).map_err(|e| e.to_string())?;
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
         location = /describe-instances.xml {{ types {{ }} default_type text/xml; }}\n\
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

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// One request, sent unchanged as often as wanted.
struct Target {
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Target {
    /// A form POST signed with SigV4 for service `ec2` in `region`.
    fn signed(
        addr: SocketAddr,
        path: &str,
        region: &str,
        keys: (&str, &str),
        body: String,
    ) -> Target {
        let host = addr.to_string();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let identity = Credentials::new(keys.0, keys.1, None, None, "cms-bench").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("signing parameters")
            .into();
        let url = format!("http://{host}{path}");
        let signable = SignableRequest::new(
            "POST",
            url,
            [("host", host.as_str()), ("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("signable request");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            HeaderValue::from_str(&host).expect("host"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        for (name, value) in instructions.headers() {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        Target {
            addr,
            method: Method::POST,
            path: path.to_owned(),
            headers,
            body: body.into(),
        }
    }

    fn get(addr: SocketAddr, path: &str) -> Target {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            HeaderValue::from_str(&addr.to_string()).expect("host"),
        );
        Target {
            addr,
            method: Method::GET,
            path: path.to_owned(),
            headers,
            body: Bytes::new(),
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.parse().expect("path");
        *req.headers_mut() = self.headers.clone();
        req
    }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// Sends `t` once on a new connection: status and body.
async fn call(t: &Target) -> (u16, String) {
    let mut send = connect(t.addr)
        .await
        .unwrap_or_else(|| panic!("cannot connect to {}", t.addr));
    let resp = send.send_request(t.request()).await.expect("answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn first<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

fn count(xml: &str, tag: &str) -> usize {
    xml.matches(&format!("<{tag}>")).count()
}

/// Launches `INSTANCES` instances with one signed RunInstances.
async fn seed(addr: SocketAddr, path: &str, region: &str, keys: (&str, &str), extra: &str) {
    let body = format!(
        "Action=RunInstances&Version=2016-11-15&MinCount={INSTANCES}&MaxCount={INSTANCES}{extra}"
    );
    let (status, xml) = call(&Target::signed(addr, path, region, keys, body)).await;
    assert_eq!(status, 200, "RunInstances on {addr}: {xml}");
    assert_eq!(
        count(&xml, "instanceId"),
        INSTANCES,
        "RunInstances on {addr}"
    );
}

/// Fetches one DescribeInstances answer and checks it lists every instance.
async fn describe(addr: SocketAddr, path: &str, region: &str, keys: (&str, &str)) -> String {
    let t = Target::signed(addr, path, region, keys, DESCRIBE.to_owned());
    let (status, xml) = call(&t).await;
    assert_eq!(status, 200, "DescribeInstances on {addr}: {xml}");
    assert_eq!(
        count(&xml, "instanceId"),
        INSTANCES,
        "DescribeInstances on {addr}"
    );
    xml
}

struct Run {
    /// Answers received, whatever their status.
    requests: u64,
    /// 200 answers.
    ok: u64,
    /// Non-200 answers, transport failures and answers still missing at the cap.
    errors: u64,
    bytes: u64,
    latency: Histogram<u64>,
    finished: Instant,
}

impl Run {
    fn new() -> Run {
        Run {
            requests: 0,
            ok: 0,
            errors: 0,
            bytes: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram"),
            finished: Instant::now(),
        }
    }
}

/// One connection sending `t` back to back until `until`, then waiting for the answer
/// in flight until `cap` at most. Failed, non-200 and unanswered requests are errors; a
/// connection the server closes is opened again.
async fn connection(t: Arc<Target>, until: Instant, cap: Instant) -> Run {
    let mut run = Run::new();
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < until {
        let send = match &mut conn {
            Some(s) if !s.is_closed() => s,
            _ => match connect(t.addr).await {
                Some(s) => conn.insert(s),
                None => {
                    run.errors += 1;
                    break;
                }
            },
        };
        if send.ready().await.is_err() {
            conn = None;
            continue;
        }
        let started = Instant::now();
        let answer = tokio::time::timeout_at(cap.into(), async {
            let resp = send.send_request(t.request()).await?;
            let ok = resp.status() == 200;
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((ok, body.len()))
        })
        .await;
        match answer {
            Ok(Ok((ok, len))) => {
                let micros = started.elapsed().as_micros() as u64;
                run.latency.record(micros.max(1)).ok();
                run.requests += 1;
                if ok {
                    run.ok += 1;
                    run.bytes += len as u64;
                } else {
                    run.errors += 1;
                }
            }
            Ok(Err(_)) => {
                run.errors += 1;
                conn = None;
            }
            Err(_) => {
                run.errors += 1;
                break;
            }
        }
    }
    run.finished = Instant::now();
    run
}

/// CPU time (user + system) of process `pid`, from /proc (USER_HZ = 100 on Linux).
fn cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Busy CPU time of the whole machine (all but idle and iowait), from /proc/stat.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let busy = ticks.iter().sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    Some(Duration::from_millis(busy * 10))
}

/// The process whose command line holds every one of `words` (moto's Python).
fn pid_of(words: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        words.iter().all(|w| cmd.contains(w)).then_some(pid)
    })
}

/// A process and its children (nginx's workers).
fn cpu_tree(pid: u32) -> Option<Duration> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut total = cpu(&pid.to_string())?;
    for c in children.split_whitespace() {
        total += cpu(c)?;
    }
    Some(total)
}

struct Row {
    name: &'static str,
    run: Run,
    seconds: f64,
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
    /// CPU time of every other process on the machine meanwhile.
    others_cpu: Option<Duration>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.run.ok as f64 / self.seconds
    }
}

/// `CONNECTIONS` connections on `t` for `secs`; `server` measures the server's CPU.
async fn measure(
    name: &'static str,
    t: Target,
    secs: f64,
    server: impl Fn() -> Option<Duration>,
) -> Row {
    let t = Arc::new(t);
    let (server_before, client_before, busy_before) = (server(), cpu("self"), machine_busy());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(connection(t.clone(), until, until + DRAIN_CAP)))
        .collect();
    let mut total = Run::new();
    let mut last = started;
    for task in tasks {
        let r = task.await.expect("connection task");
        total.requests += r.requests;
        total.ok += r.ok;
        total.errors += r.errors;
        total.bytes += r.bytes;
        total.latency.add(&r.latency).expect("merge");
        last = last.max(r.finished);
    }
    let since = |now: Option<Duration>, before: Option<Duration>| now?.checked_sub(before?);
    let server_cpu = since(server(), server_before);
    let client_cpu = since(cpu("self"), client_before);
    let busy = since(machine_busy(), busy_before);
    Row {
        name,
        run: total,
        seconds: (last - started).as_secs_f64(),
        server_cpu,
        client_cpu,
        others_cpu: (|| Some(busy?.saturating_sub(server_cpu? + client_cpu?)))(),
    }
}

fn per_request(cpu: Option<Duration>, row: &Row) -> String {
    match cpu {
        Some(c) if row.run.requests > 0 => {
            format!("{:.0}", c.as_secs_f64() * 1e6 / row.run.requests as f64)
        }
        _ => "n/a".to_owned(),
    }
}

fn verdict(ratio: f64, aim: f64) -> &'static str {
    if ratio >= aim {
        "met"
    } else {
        "NOT met"
    }
}

fn main() {
    let secs: f64 = std::env::var("CMS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    assert!(
        secs > 0.0 && secs <= MAX_SECONDS,
        "CMS_BENCH_SECONDS must be in (0, {MAX_SECONDS}]: signatures are reused for a whole row"
    );
    let dir = TempDir::new("ec2");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cms_keys = (ACCESS_KEY_ID, SECRET_ACCESS_KEY);

    // cms: 100 instances from the memory cloud's first image.
    let cms = start_server(
        &dir,
        &[
            ("CMS_DEV_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("CMS_DEV_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ],
    );
    let answer = rt.block_on(async {
        let images = Target::signed(
            cms.addr,
            "/ec2/",
            "local",
            cms_keys,
            "Action=DescribeImages&Version=2016-11-15".to_owned(),
        );
        let (status, xml) = call(&images).await;
        assert_eq!(status, 200, "DescribeImages: {xml}");
        let image = first(&xml, "imageId").expect("an image in DescribeImages");
        seed(
            cms.addr,
            "/ec2/",
            "local",
            cms_keys,
            &format!("&ImageId={image}"),
        )
        .await;
        describe(cms.addr, "/ec2/", "local", cms_keys).await
    });

    // moto: 100 instances.
    let moto_server = rt.block_on(MotoServer::start());
    let moto_keys = ("testing", "testing");
    let moto_answer = rt.block_on(async {
        let extra = format!("&ImageId={}&InstanceType={}", moto::IMAGE_ID, moto::FLAVOR);
        seed(moto_server.addr(), "/", moto::REGION, moto_keys, &extra).await;
        describe(moto_server.addr(), "/", moto::REGION, moto_keys).await
    });

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "DescribeInstances, {INSTANCES} instances, {CONNECTIONS} keep-alive connections, {secs} s per row \
         (then up to {} s for the answers in flight); servers and client on the same {cores} cores",
        DRAIN_CAP.as_secs()
    );
    println!(
        "answers: cms {} bytes, moto {} bytes; nginx serves the cms answer's bytes with {NGINX_WORKERS} workers",
        answer.len(),
        moto_answer.len()
    );
    println!();

    let cms_pid = cms.child.id().to_string();
    let mut rows = Vec::new();
    // Warm up cms (and the client) briefly, then measure.
    let sign_cms = || Target::signed(cms.addr, "/ec2/", "local", cms_keys, DESCRIBE.to_owned());
    rt.block_on(measure("warm-up", sign_cms(), 1.0, || None));
    rows.push(rt.block_on(measure("cms", sign_cms(), secs, || cpu(&cms_pid))));

    let moto_target = Target::signed(
        moto_server.addr(),
        "/",
        moto::REGION,
        moto_keys,
        DESCRIBE.to_owned(),
    );
    let port = format!("-p {}", moto_server.addr().port());
    let moto_pid = pid_of(&["moto_server", &port]).map(|p| p.to_string());
    rows.push(rt.block_on(measure("moto", moto_target, secs, || {
        cpu(moto_pid.as_deref()?)
    })));
    drop(moto_server);

    let nginx_skipped = match start_nginx(&dir.0, answer.as_bytes()) {
        Ok(nginx) => {
            let t = Target::get(nginx.addr, "/describe-instances.xml");
            let (status, body) = rt.block_on(call(&t));
            assert_eq!(status, 200, "nginx: {body}");
            assert_eq!(body, answer, "nginx serves the cms answer unchanged");
            rt.block_on(measure(
                "warm-up",
                Target::get(nginx.addr, "/describe-instances.xml"),
                1.0,
                || None,
            ));
            let pid = nginx.child.id();
            rows.push(rt.block_on(measure("nginx (static file)", t, secs, || cpu_tree(pid))));
            None
        }
        Err(why) => Some(why),
    };

    println!("| target | connections | requests | s | req/s | p50 ms | p99 ms | errors | answer bytes | server CPU µs/req | client CPU µs/req | other processes' CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let r = &row.run;
        let q = |p: f64| r.latency.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "| {} | {CONNECTIONS} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            row.name,
            r.requests,
            row.seconds,
            row.rate(),
            q(0.5),
            q(0.99),
            r.errors,
            r.bytes / r.ok.max(1),
            per_request(row.server_cpu, row),
            per_request(row.client_cpu, row),
            row.others_cpu.map_or("n/a".to_owned(), |c| format!(
                "{:.0}%",
                c.as_secs_f64() * 100.0 / (row.seconds * cores.max(1) as f64)
            )),
        );
    }
    if let Some(why) = &nginx_skipped {
        println!("| nginx (static file) | skipped: {why} |");
    }
    println!();
    println!(
        "req/s: 200 answers / s (until the last answer); CPU: user + system from /proc; \
         other processes' CPU: share of the machine's {cores} cores used by anything but \
         the server and this client during the row (builds or tests running alongside)"
    );
    println!();
    let rate = |name: &str| {
        rows.iter()
            .find(|r| r.name.starts_with(name))
            .map(Row::rate)
    };
    let cms_rate = rate("cms").unwrap_or(0.0);
    match rate("moto") {
        Some(m) if m > 0.0 => {
            let ratio = cms_rate / m;
            println!(
                "cms / moto:  {ratio:.0}x   (aim >= {AIM_MOTO:.0}x: {})",
                verdict(ratio, AIM_MOTO)
            );
        }
        _ => println!("cms / moto:  n/a (moto answered nothing)"),
    }
    match rate("nginx") {
        Some(n) if n > 0.0 => {
            let ratio = cms_rate / n;
            println!(
                "cms / nginx: {ratio:.2}    (aim >= {AIM_NGINX}: {})",
                verdict(ratio, AIM_NGINX)
            );
        }
        _ => println!(
            "cms / nginx: n/a ({})",
            nginx_skipped.as_deref().unwrap_or("nginx answered nothing")
        ),
    }
    let rss = peak_rss_kib(cms.child.id()).unwrap_or(0);
    println!("cms peak RSS: {:.1} MiB", rss as f64 / 1024.0);
}
