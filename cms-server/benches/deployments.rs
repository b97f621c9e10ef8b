//! What a deployment costs: `cargo bench -p cms-server --bench deployments`.
//!
//! The release `cms-server` with two memory providers (boot delay 0), its state in
//! SQLite. Two measurements, each printed as a table:
//!
//! 1. **1,000 instances in one deployment** (round-robin over both providers): the
//!    time from `POST /v1/deployments` until its job has succeeded with all 1,000
//!    running, and the server's CPU per instance. The reference, in the same run on a
//!    fresh server: the same 1,000 instances made by the client itself, one
//!    `POST /v1/providers/{p}/instances` each, 32 at a time (16 per provider, as the
//!    deployment's `jobs.creates_per_provider`), then polled until they run.
//! 2. **100 instances where every backend call takes 50 ms** (the chaos layer's
//!    latency on both providers): one after another that is at least 100 × 50 ms =
//!    5 s of creates alone; the deployment creates 16 at a time on each provider, so
//!    it must take well under that. The reference: the same 100 made by one client one
//!    after another.
//!
//! `CMS_BENCH_COUNT` changes the 1,000.

mod common;

use std::time::{Duration, Instant};

use common::load::cpu;
use common::{start_with, Server, TempDir};
use serde_json::{json, Value};

const KEY: &str = "bench-deploy-key-0123456789abcdef0123";

fn config(latency_ms: u64) -> String {
    let chaos = if latency_ms > 0 {
        format!(
            "[providers.chaos]\nlatency_rate = 1.0\nlatency_ms = {latency_ms}\nlatency_min_ms = {latency_ms}\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"
        [jobs]
        poll_ms = 20
        wait_poll_ms = 20
        [[providers]]
        name = "a"
        driver = "memory"
        boot_delay_ms = 0
        max_page_size = 1000
        {chaos}
        [[providers]]
        name = "b"
        driver = "memory"
        boot_delay_ms = 0
        max_page_size = 1000
        {chaos}
        [[tenants]]
        name = "bench"
        api_key = "{KEY}"
        providers = ["*"]
        "#
    )
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(s: &Server) -> Client {
        Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            base: format!("http://{}", s.addr),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.expect("answer");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn template() -> Value {
    json!({"image_id": "img-debian-12", "flavor_id": "flv-1cpu-1gb"})
}

/// Makes a deployment of `n` and waits for its job: the time it took.
async fn deploy(c: &Client, n: u32) -> Duration {
    let started = Instant::now();
    let (status, d) = c
        .send(
            reqwest::Method::POST,
            "/v1/deployments",
            Some(&json!({
                "name": "bench", "count": n, "template": template(),
                "partitions": [{"provider": "a"}, {"provider": "b"}],
            })),
        )
        .await;
    assert_eq!(status, 202, "{d}");
    let job = d["job"]["id"].as_str().unwrap().to_owned();
    loop {
        let (_, j) = c
            .send(reqwest::Method::GET, &format!("/v1/jobs/{job}"), None)
            .await;
        match j["state"].as_str() {
            Some("succeeded") => {
                assert_eq!(j["result"]["running"].as_u64(), Some(u64::from(n)), "{j}");
                return started.elapsed();
            }
            Some("failed" | "canceled") => panic!("the deployment's job ended: {j}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Makes `n` instances with one create request each (alternating between the
/// providers), `at_once` requests at a time, and waits until all run: the time it
/// took.
async fn direct(c: &Client, n: u32, at_once: usize) -> Duration {
    use futures::StreamExt;
    let started = Instant::now();
    let work = (0..n).map(|i| {
        let p = if i % 2 == 0 { "a" } else { "b" };
        async move {
            let (status, v) = c
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/providers/{p}/instances"),
                    Some(&template()),
                )
                .await;
            assert_eq!(status, 201, "{v}");
        }
    });
    futures::stream::iter(work)
        .buffer_unordered(at_once.max(1))
        .collect::<Vec<()>>()
        .await;
    loop {
        let mut running = 0;
        for p in ["a", "b"] {
            let mut token: Option<String> = None;
            loop {
                let path = match &token {
                    Some(t) => format!(
                        "/v1/providers/{p}/instances?state=running&limit=1000&page_token={t}"
                    ),
                    None => format!("/v1/providers/{p}/instances?state=running&limit=1000"),
                };
                let (_, page) = c.send(reqwest::Method::GET, &path, None).await;
                running += page["items"].as_array().map_or(0, Vec::len);
                match page["next_page_token"].as_str() {
                    Some(t) => token = Some(t.to_owned()),
                    None => break,
                }
            }
        }
        if running >= n as usize {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn row(name: &str, n: u32, took: Duration, cpu: Option<Duration>) {
    let per = cpu.map_or("-".to_owned(), |c| {
        format!("{:.0} µs", c.as_secs_f64() * 1e6 / f64::from(n))
    });
    println!(
        "| {name:<44} | {n:>6} | {:>9.2} s | {:>9.0} /s | {per:>12} |",
        took.as_secs_f64(),
        f64::from(n) / took.as_secs_f64()
    );
}

fn header(title: &str) {
    println!("\n{title}\n");
    println!(
        "| {:<44} | {:>6} | {:>11} | {:>11} | {:>12} |",
        "how", "made", "time", "rate", "CPU/instance"
    );
    println!(
        "|{:-<46}|{:-<8}|{:-<13}|{:-<13}|{:-<14}|",
        "", "", "", "", ""
    );
}

async fn measure<F, Fut>(latency_ms: u64, f: F) -> (Duration, Option<Duration>)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let dir = TempDir::new("deploy");
    let s = start_with(
        env!("CARGO_BIN_EXE_cms-server").as_ref(),
        &dir,
        &config(latency_ms),
        &[],
    );
    let pid = s.child.id().to_string();
    let before = cpu(&pid);
    let took = f(Client::new(&s)).await;
    let used = cpu(&pid).zip(before).map(|(a, b)| a.saturating_sub(b));
    drop(s);
    (took, used)
}

fn main() {
    let n: u32 = std::env::var("CMS_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        header(&format!("{n} instances over two memory providers (boot delay 0)"));
        let (t, c) = measure(0, |c| async move { deploy(&c, n).await }).await;
        row("one deployment (its job makes them)", n, t, c);
        let (t, c) = measure(0, |c| async move { direct(&c, n, 32).await }).await;
        row("one create request each, 32 at a time", n, t, c);

        header("100 instances, every backend call taking 50 ms");
        let (t, c) = measure(50, |c| async move { deploy(&c, 100).await }).await;
        row("one deployment (16 creates at once per provider)", 100, t, c);
        let serial = Duration::from_millis(100 * 50);
        let (r, rc) = measure(50, |c| async move { direct(&c, 100, 1).await }).await;
        row("one create request each, one after another", 100, r, rc);
        println!(
            "\nthe deployment took {:.2} s: {:.1}x faster than the {:.0} s of 100 creates one after another{}",
            t.as_secs_f64(),
            serial.as_secs_f64() / t.as_secs_f64(),
            serial.as_secs_f64(),
            if t < serial { "" } else { " (NOT under it: creates did not run concurrently)" }
        );
    });
}
