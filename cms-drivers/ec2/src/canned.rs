//! Test and benchmark support (feature `moto`): an EC2 endpoint on 127.0.0.1 that
//! answers each action with bytes given in advance.
//!
//! Answers are recorded from a real EC2-compatible server (moto) with
//! [`record`], or written from the EC2 API model, and then served as they are, so
//! that a client's own cost (the SDK's, Libcloud's, boto3's) is measured on the
//! same bytes without the server's, and so that two readers of one answer can be
//! compared. Requests are HTTP/1.1 with keep-alive; the action is read from the
//! `Action` parameter of the form body (or of the query string); an action without
//! an answer gets EC2's `InvalidAction` error, which names it.
//!
//! ```no_run
//! # async fn demo() -> cms_core::Result<()> {
//! use cms_driver_ec2::{canned::CannedEc2, Ec2Driver};
//! let answer = br#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
//!   <requestId>r-1</requestId><reservationSet/></DescribeInstancesResponse>"#;
//! let ec2 = CannedEc2::start([("DescribeInstances", answer.to_vec())]).await;
//! let driver = Ec2Driver::new(ec2.config()).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{Ec2Config, StaticCredentials};

/// The largest request head or body the endpoint reads.
const MAX_REQUEST: usize = 1 << 20;

/// A running canned endpoint; stops when dropped.
#[derive(Debug)]
pub struct CannedEc2 {
    addr: SocketAddr,
    endpoint: String,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CannedEc2 {
    /// Serves `answers` (action name, the whole XML body of a 200 answer) on a free
    /// port of 127.0.0.1.
    pub async fn start<I, A>(answers: I) -> CannedEc2
    where
        I: IntoIterator<Item = (A, Vec<u8>)>,
        A: Into<String>,
    {
        let answers: Arc<HashMap<String, Vec<u8>>> = Arc::new(
            answers
                .into_iter()
                .map(|(a, body)| (a.into(), body))
                .collect(),
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, answers.clone(), counter.clone()));
            }
        });
        CannedEc2 {
            addr,
            endpoint: format!("http://{addr}"),
            requests,
            task,
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

    /// Requests answered so far (any action).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A driver configuration for this endpoint (region `us-east-1`, credentials
    /// `testing`, which nothing checks).
    pub fn config(&self) -> Ec2Config {
        Ec2Config::new(crate::moto::REGION)
            .endpoint(self.endpoint())
            .credentials(StaticCredentials::new("testing", "testing"))
    }
}

impl Drop for CannedEc2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: requests until the client closes it or asks to.
async fn serve(
    mut stream: TcpStream,
    answers: Arc<HashMap<String, Vec<u8>>>,
    requests: Arc<AtomicU64>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        requests.fetch_add(1, Ordering::Relaxed);
        let action = request.action.unwrap_or_default();
        let (status, body): (&str, std::borrow::Cow<'_, [u8]>) = match answers.get(&action) {
            Some(b) => ("200 OK", b.as_slice().into()),
            None => (
                "400 Bad Request",
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                     <Code>InvalidAction</Code><Message>The canned endpoint has no answer \
                     for action `{}`</Message></Error></Errors>\
                     <RequestID>canned</RequestID></Response>",
                    action.replace('&', "&amp;").replace('<', "&lt;")
                )
                .into_bytes()
                .into(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\n\
             Content-Length: {}\r\nx-amzn-requestid: canned\r\n{}\r\n",
            body.len(),
            if request.close {
                "Connection: close\r\n"
            } else {
                ""
            }
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
            || request.close
        {
            return;
        }
    }
}

struct Request {
    action: Option<String>,
    close: bool,
}

/// Reads one request (head and `Content-Length` body) from `stream`; `None` at the
/// end of the stream or on a request this endpoint cannot read.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST || !fill(stream, buf).await {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let target = request_line.split(' ').nth(1)?;
    let mut length = 0usize;
    let mut close = request_line.ends_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Clients of the Query API send form bodies with a length.
            return None;
        }
    }
    if length > MAX_REQUEST {
        return None;
    }
    while buf.len() < head_end + length {
        if !fill(stream, buf).await {
            return None;
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    buf.drain(..head_end + length);
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let action = param(&body, "Action").or_else(|| param(query, "Action"));
    Some(Request { action, close })
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of `name` in a form-encoded string (actions need no decoding).
fn param(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// Sends one Query API request (`form`, already encoded) to an EC2-compatible server
/// that does not check signatures (moto) and answers the status and the body as they
/// came: how answers are recorded for [`CannedEc2`]. The request carries an
/// `Authorization` header with a credential scope (service `ec2`, region
/// [`REGION`](crate::moto::REGION)) and no valid signature: moto routes by it.
pub async fn record(endpoint: &str, form: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut s = TcpStream::connect(&host).await?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded; \
         charset=utf-8\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{}/ec2/\
         aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        crate::moto::REGION,
        form.len()
    );
    s.write_all(request.as_bytes()).await?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let head_end = find(&all, b"\r\n\r\n").ok_or_else(bad)? + 4;
    let head = std::str::from_utf8(&all[..head_end]).map_err(|_| bad())?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = &all[head_end..];
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

/// The payload of a chunked body.
fn dechunk(mut body: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body");
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = find(body, b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| bad())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}
