//! Load benchmark of the native API: `cargo bench -p cms-server --bench server`.
//!
//! Starts the release `cms-server` (Cargo builds it for the benchmark) on the memory cloud with 100 instances, then for
//! 1, 16 and 64 keep-alive connections sends `GET /v1/providers/local/instances` back
//! to back for a while (10 s each by default; `CMS_BENCH_SECONDS` to change) and prints
//! throughput, p50/p99 latency and the server's peak RSS as a table.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

mod common;
use common::{peak_rss_kib, start_server, TempDir};

const KEY: &str = "bench-key-0123456789abcdef0123456789";

async fn seed(addr: SocketAddr, n: usize) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/providers/local/images");
    let images: serde_json::Value = client
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image = images["items"][0]["id"].as_str().unwrap().to_owned();
    let url = format!("http://{addr}/v1/providers/local/flavors");
    let flavors: serde_json::Value = client
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flavor = flavors["items"][0]["id"].as_str().unwrap().to_owned();
    let url = format!("http://{addr}/v1/providers/local/instances");
    for k in 0..n {
        let body = serde_json::json!({
            "name": format!("bench-{k}"), "image_id": image, "flavor_id": flavor,
            "tags": {"bench": "yes"}
        });
        let r = client
            .post(&url)
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "seeding instance {k}");
    }
}

struct Run {
    requests: u64,
    errors: u64,
    bytes: u64,
    latency: Histogram<u64>,
}

/// One connection sending requests back to back until `until`.
async fn connection(addr: SocketAddr, path: &'static str, until: Instant) -> Run {
    let mut run = Run {
        requests: 0,
        errors: 0,
        bytes: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    };
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let auth = format!("Bearer {KEY}");
    while Instant::now() < until {
        let req = Request::get(path)
            .header("host", addr.to_string())
            .header("authorization", &auth)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let started = Instant::now();
        match send.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status() == 200;
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                let micros = started.elapsed().as_micros() as u64;
                run.latency.record(micros.max(1)).ok();
                run.requests += 1;
                match body {
                    Ok(b) if ok => run.bytes += b.len() as u64,
                    _ => run.errors += 1,
                }
            }
            Err(_) => {
                run.errors += 1;
                break;
            }
        }
    }
    run
}

async fn measure(addr: SocketAddr, path: &'static str, conns: usize, secs: f64) -> Run {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(connection(addr, path, until)))
        .collect();
    let mut total = Run {
        requests: 0,
        errors: 0,
        bytes: 0,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    };
    for t in tasks {
        let r = t.await.expect("connection task");
        total.requests += r.requests;
        total.errors += r.errors;
        total.bytes += r.bytes;
        total.latency.add(&r.latency).expect("merge");
    }
    total
}

fn main() {
    let secs: f64 = std::env::var("CMS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let dir = TempDir::new("native");
    let server = start_server(&dir, &[("CMS_DEV_API_KEY", KEY)]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(seed(server.addr, 100));
    let path = "/v1/providers/local/instances";
    // Warm up.
    rt.block_on(measure(server.addr, path, 4, 1.0));

    println!(
        "GET {path} (100 instances), {secs} s per row, server and client on the same {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();
    println!("| connections | requests | req/s | p50 ms | p99 ms | max ms | errors | body bytes |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for conns in [1, 16, 64] {
        let r = rt.block_on(measure(server.addr, path, conns, secs));
        let q = |p: f64| r.latency.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "| {conns} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.requests,
            r.requests as f64 / secs,
            q(0.5),
            q(0.99),
            r.latency.max() as f64 / 1000.0,
            r.errors,
            r.bytes / r.requests.max(1),
        );
    }
    let rss = peak_rss_kib(server.child.id()).unwrap_or(0);
    println!();
    println!("server peak RSS: {:.1} MiB", rss as f64 / 1024.0);
}
