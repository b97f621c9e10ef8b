//! Load benchmark of the native API: `cargo bench -p cms-server --bench server`.
//!
//! Starts the release `cms-server` (Cargo builds it for the benchmark) on the memory
//! cloud, creates 100 instances, then sends `GET /v1/providers/local/instances?limit=100`
//! back to back from 1, 16 and 64 keep-alive connections for a while (10 s per row by
//! default; `CMS_BENCH_SECONDS` to change). In the same run, at 64 connections:
//!
//! - nginx (the Debian package; `scripts/bench-deps` installs it) serving the bytes of
//!   one of cms's own answers as a static `application/json` file: the ceiling for those
//!   bytes over HTTP/1.1 on this machine (skipped, with the reason, when not installed);
//! - with `CMS_BENCH_BASELINE=/path/to/cms-server`, that binary (an earlier build) with
//!   the same instances, so that two builds are compared under the same conditions.
//!
//! Prints the table (throughput, p50/p99 latency, CPU per request of the server, the
//! client and everything else), the ratio cms/nginx and the server's peak RSS.

use std::time::Duration;

use reqwest::Client;

mod common;
use common::load::{cpu, cpu_tree, measure, print_table, rate_of, Row, Target};
use common::nginx::{start_nginx, NGINX_WORKERS};
use common::{peak_rss_kib, start_with, Server, TempDir, LOCAL};

const KEY: &str = "bench-key-0123456789abcdef0123456789";
const INSTANCES: usize = 100;
const PATH: &str = "/v1/providers/local/instances?limit=100";
const AIM_NGINX: f64 = 0.5;

/// Creates `n` instances through the API.
async fn seed(s: &Server, n: usize) {
    let client = Client::new();
    let url = format!("http://{}/v1/providers/local/instances", s.addr);
    for k in 0..n {
        let body = serde_json::json!({
            "name": format!("bench-{k}"), "image_id": "img-debian-12",
            "flavor_id": "flv-1cpu-1gb", "tags": {"bench": "yes"}
        });
        let r = client
            .post(&url)
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201, "seeding instance {k}");
    }
}

/// One answer of the listing.
async fn answer(s: &Server) -> Vec<u8> {
    let r = Client::new()
        .get(format!("http://{}{PATH}", s.addr))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.expect("body").to_vec();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(INSTANCES));
    body
}

fn target(s: &Server) -> Target {
    let mut t = Target::get(s.addr, PATH);
    t.headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {KEY}").parse().expect("header"),
    );
    t
}

fn main() {
    let secs: f64 = std::env::var("CMS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let baseline = std::env::var("CMS_BENCH_BASELINE").ok();
    let dir = TempDir::new("native");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let env = [("CMS_DEV_API_KEY", KEY)];
    let this = start_with(env!("CARGO_BIN_EXE_cms-server").as_ref(), &dir, LOCAL, &env);
    rt.block_on(seed(&this, INSTANCES));
    let bytes = rt.block_on(answer(&this));
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "GET {PATH} ({INSTANCES} instances, {} bytes of JSON), {secs} s per row, servers and client on the same {cores} cores",
        bytes.len()
    );
    println!();

    let mut rows: Vec<Row> = Vec::new();
    let pid = this.child.id().to_string();
    rt.block_on(measure("warm-up", target(&this), 4, 1.0, || None));
    for conns in [1, 16, 64] {
        rows.push(rt.block_on(measure("cms", target(&this), conns, secs, || cpu(&pid))));
    }
    if let Some(path) = &baseline {
        let old = start_with(path.as_ref(), &dir, LOCAL, &env);
        rt.block_on(seed(&old, INSTANCES));
        let old_bytes = rt.block_on(answer(&old));
        println!("baseline {path}: answers of {} bytes", old_bytes.len());
        let old_pid = old.child.id().to_string();
        rt.block_on(measure("warm-up", target(&old), 4, 1.0, || None));
        rows.push(
            rt.block_on(measure("cms (baseline)", target(&old), 64, secs, || {
                cpu(&old_pid)
            })),
        );
    }
    let nginx_skipped = match start_nginx(&dir.0, "instances.json", "application/json", &bytes) {
        Ok(nginx) => {
            let t = || Target::get(nginx.addr, "/instances.json");
            rt.block_on(measure("warm-up", t(), 4, 1.0, || None));
            let pid = nginx.child.id();
            rows.push(rt.block_on(measure(
                &format!("nginx (static file, {NGINX_WORKERS} workers)"),
                t(),
                64,
                secs,
                || cpu_tree(pid),
            )));
            None
        }
        Err(why) => Some(why),
    };
    print_table(&rows);
    if let Some(why) = &nginx_skipped {
        println!("nginx (static file): skipped: {why}");
    }
    println!();
    let at64 = rows
        .iter()
        .find(|r| r.name == "cms" && r.connections == 64)
        .map(Row::rate)
        .unwrap_or(0.0);
    match rate_of(&rows, "nginx") {
        Some(n) if n > 0.0 => println!(
            "cms / nginx at 64 connections: {:.2}    (aim >= {AIM_NGINX}: {})",
            at64 / n,
            if at64 / n >= AIM_NGINX {
                "met"
            } else {
                "NOT met"
            }
        ),
        _ => println!("cms / nginx: n/a"),
    }
    if let Some(old) = rate_of(&rows, "cms (baseline)") {
        println!("this build / baseline at 64 connections: {:.2}", at64 / old);
    }
    let rss = peak_rss_kib(this.child.id()).unwrap_or(0);
    println!("server peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    // Give the servers a moment to exit before the directory goes.
    drop(this);
    std::thread::sleep(Duration::from_millis(50));
}
