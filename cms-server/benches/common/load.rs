//! Load on one server: one request (signed once, resent unchanged), from many
//! keep-alive HTTP/1.1 connections back to back for a while, with the CPU the server,
//! the client and everything else used meanwhile; and the table of the rows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long connections may wait for their last answer after the deadline.
pub const DRAIN_CAP: Duration = Duration::from_secs(60);

/// One request, sent unchanged as often as wanted.
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Target {
    /// A form POST signed with SigV4 for service `ec2` in `region`.
    pub fn signed(
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

    pub fn get(addr: SocketAddr, path: &str) -> Target {
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

    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.parse().expect("path");
        *req.headers_mut() = self.headers.clone();
        req
    }
}

pub async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// Sends `t` once on a new connection: status and body.
pub async fn call(t: &Target) -> (u16, String) {
    let mut send = connect(t.addr)
        .await
        .unwrap_or_else(|| panic!("cannot connect to {}", t.addr));
    let resp = send.send_request(t.request()).await.expect("answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The text of the first `<tag>…</tag>` in `xml`.
pub fn first<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

pub fn count(xml: &str, tag: &str) -> usize {
    xml.matches(&format!("<{tag}>")).count()
}

pub struct Run {
    /// Answers received, whatever their status.
    pub requests: u64,
    /// 200 answers.
    pub ok: u64,
    /// Non-200 answers, transport failures and answers still missing at the cap.
    pub errors: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
    pub finished: Instant,
}

impl Run {
    pub fn new() -> Run {
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
pub async fn connection(t: Arc<Target>, until: Instant, cap: Instant) -> Run {
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
pub fn cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Busy CPU time of the whole machine (all but idle and iowait), from /proc/stat.
pub fn machine_busy() -> Option<Duration> {
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
pub fn pid_of(words: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        words.iter().all(|w| cmd.contains(w)).then_some(pid)
    })
}

/// A process and its children (nginx's workers).
pub fn cpu_tree(pid: u32) -> Option<Duration> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut total = cpu(&pid.to_string())?;
    for c in children.split_whitespace() {
        total += cpu(c)?;
    }
    Some(total)
}

pub struct Row {
    pub name: String,
    pub connections: usize,
    pub run: Run,
    pub seconds: f64,
    pub server_cpu: Option<Duration>,
    pub client_cpu: Option<Duration>,
    /// CPU time of every other process on the machine meanwhile.
    pub others_cpu: Option<Duration>,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.run.ok as f64 / self.seconds
    }
}

/// `connections` connections on `t` for `secs`; `server` measures the server's CPU.
pub async fn measure(
    name: &str,
    t: Target,
    connections: usize,
    secs: f64,
    server: impl Fn() -> Option<Duration>,
) -> Row {
    let t = Arc::new(t);
    let (server_before, client_before, busy_before) = (server(), cpu("self"), machine_busy());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..connections)
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
        name: name.to_owned(),
        connections,
        run: total,
        seconds: (last - started).as_secs_f64(),
        server_cpu,
        client_cpu,
        others_cpu: (|| Some(busy?.saturating_sub(server_cpu? + client_cpu?)))(),
    }
}

pub fn per_request(cpu: Option<Duration>, row: &Row) -> String {
    match cpu {
        Some(c) if row.run.requests > 0 => {
            format!("{:.0}", c.as_secs_f64() * 1e6 / row.run.requests as f64)
        }
        _ => "n/a".to_owned(),
    }
}

/// Prints the rows as a table, with the CPU columns and what they mean.
pub fn print_table(rows: &[Row]) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("| target | connections | requests | s | req/s | p50 ms | p99 ms | errors | answer bytes | server CPU µs/req | client CPU µs/req | other processes' CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let r = &row.run;
        let q = |p: f64| r.latency.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
            row.name,
            row.connections,
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
    println!();
    println!(
        "req/s: 200 answers / s (until the last answer); CPU: user + system from /proc; \
         other processes' CPU: share of the machine's {cores} cores used by anything but \
         the server and this client during the row (builds or tests running alongside)"
    );
}

/// The rate of the first row whose name starts with `name`.
pub fn rate_of(rows: &[Row], name: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.name.starts_with(name))
        .map(Row::rate)
}
