//! What a tenant's page costs as another tenant's instances grow:
//! `cargo bench -p cms-server --bench tenancy`.
//!
//! The release `cms-server` on the memory cloud; alice owns 150 instances, bob 100,
//! then 10,000, then 100,000 (`CMS_BENCH_SIZES` to change), all made through signed
//! `RunInstances`. At each size, from one keep-alive connection, three rounds of
//! `CMS_BENCH_SECONDS` (5 s by default) each, alice asks for her first page:
//!
//! - native: `GET /v1/providers/local/instances?limit=100`;
//! - EC2: a signed `DescribeInstances` with `MaxResults=100`.
//!
//! Each answer is checked (100 of alice's instances and a next token), and the table
//! gives, for the round of median latency, the mean latency and the server's CPU per
//! request, and the latency as a ratio to the first size (the aim: within 1.5x at
//! 100,000). Rounds repeat because a machine shared with anything else moves single
//! rounds by a fifth or more.
//!
//! Then bob lists all his instances in pages of 1,000, natively and with
//! `DescribeInstances` (`MaxResults=1000`, following `NextToken`), and the server's
//! resident memory is printed before and after each walk, with its peak: a listing
//! streams page by page, so walking 100,000 instances leaves no more behind than the
//! server's bounded caches.

use std::time::Duration;

mod common;
use common::load::{call, count, cpu, first, measure, Row, Target};
use common::{peak_rss_kib, start_with, Server, TempDir};

const API_KEY: &str = "alice-bench-key-0123456789abcdef0123";
const ALICE: (&str, &str) = ("AKIABENCHALICE000001", "alice-bench-secret-0123456789abcd");
const BOB: (&str, &str) = ("AKIABENCHBOB00000001", "bob-bench-secret-0123456789abcdef");
const BOB_API_KEY: &str = "bob-bench-key-0123456789abcdef012345";
const AIM: f64 = 1.5;

/// The server's resident memory now and at its peak, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bob's instances, natively, in pages of 1,000: how many, and how many pages.
async fn walk_native(s: &Server) -> (usize, usize) {
    let client = reqwest::Client::new();
    let (mut n, mut pages) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let url = format!("http://{}/v1/providers/local/instances", s.addr);
        let mut req = client.get(&url).query(&[("limit", "1000")]);
        if let Some(t) = &token {
            req = req.query(&[("page_token", t)]);
        }
        let r = req.bearer_auth(BOB_API_KEY).send().await.expect("list");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("JSON");
        n += v["items"].as_array().map_or(0, Vec::len);
        pages += 1;
        match v["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return (n, pages),
        }
    }
}

/// Bob's instances with `DescribeInstances`, in pages of 1,000.
async fn walk_ec2(s: &Server) -> (usize, usize) {
    let (mut n, mut pages) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let mut body = "Action=DescribeInstances&Version=2016-11-15&MaxResults=1000".to_owned();
        if let Some(t) = &token {
            body.push_str("&NextToken=");
            body.push_str(
                &t.replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D"),
            );
        }
        let (status, xml) = call(&ec2(s, BOB, &body)).await;
        assert_eq!(status, 200, "{xml}");
        n += count(&xml, "instanceId");
        pages += 1;
        match first(&xml, "nextToken") {
            Some(t) => token = Some(t.to_owned()),
            None => return (n, pages),
        }
    }
}

fn config() -> String {
    format!(
        r#"
        [[providers]]
        name = "local"
        driver = "memory"
        boot_delay_ms = 0

        [[tenants]]
        name = "alice"
        api_key = "{API_KEY}"
        access_key_id = "{}"
        secret_access_key = "{}"
        providers = ["*"]

        [[tenants]]
        name = "bob"
        api_key = "{BOB_API_KEY}"
        access_key_id = "{}"
        secret_access_key = "{}"
        providers = ["*"]
        "#,
        ALICE.0, ALICE.1, BOB.0, BOB.1
    )
}

fn ec2(s: &Server, keys: (&str, &str), body: &str) -> Target {
    Target::signed(s.addr, "/ec2/", "local", keys, body.to_owned())
}

/// Launches `n` instances for `keys`, a hundred per request, four requests at a time,
/// spread over `subnets` (a /16 holds 65,533 instances).
async fn launch(s: &Server, keys: (&str, &str), image: &str, subnets: &[String], n: usize) {
    let mut left = n;
    let mut round = 0usize;
    while left > 0 {
        let batch: Vec<usize> = (0..4)
            .map(|_| {
                let k = left.min(100);
                left -= k;
                k
            })
            .filter(|k| *k > 0)
            .collect();
        round += 1;
        let calls = batch.iter().enumerate().map(|(j, k)| async move {
            let subnet = &subnets[(round * 4 + j) % subnets.len()];
            let body = format!(
                "Action=RunInstances&Version=2016-11-15&ImageId={image}&InstanceType=flv-1cpu-1gb&MinCount={k}&MaxCount={k}&SubnetId={subnet}"
            );
            let (status, xml) = call(&ec2(s, keys, &body)).await;
            assert_eq!(status, 200, "RunInstances: {xml}");
            assert_eq!(count(&xml, "instanceId"), *k);
        });
        futures::future::join_all(calls).await;
    }
}

fn native(s: &Server) -> Target {
    let mut t = Target::get(s.addr, "/v1/providers/local/instances?limit=100");
    t.headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {API_KEY}").parse().expect("header"),
    );
    t
}

const DESCRIBE: &str = "Action=DescribeInstances&Version=2016-11-15&MaxResults=100";

/// Checks one answer of each: a full page of alice's, with a next token.
async fn check(s: &Server) {
    let (status, body) = call(&native(s)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 100);
    assert!(items.iter().all(|i| i["owner"] == "alice"));
    assert!(v["next_page_token"].is_string());
    let (status, xml) = call(&ec2(s, ALICE, DESCRIBE)).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(count(&xml, "instanceId"), 100);
    assert!(first(&xml, "nextToken").is_some());
}

struct Sample {
    others: usize,
    native: Row,
    ec2: Row,
}

/// Rounds of measurement per cell.
const ROUNDS: usize = 3;

/// The round of median latency.
fn median(mut rows: Vec<Row>) -> Row {
    rows.sort_by(|a, b| mean_us(a).total_cmp(&mean_us(b)));
    rows.swap_remove(rows.len() / 2)
}

fn mean_us(r: &Row) -> f64 {
    r.seconds * 1e6 / r.run.ok.max(1) as f64
}

fn cpu_us(r: &Row) -> Option<f64> {
    Some(r.server_cpu?.as_secs_f64() * 1e6 / r.run.ok.max(1) as f64)
}

fn main() {
    let secs: f64 = std::env::var("CMS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let sizes: Vec<usize> = std::env::var("CMS_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 10_000, 100_000]);
    let dir = TempDir::new("tenancy");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = start_with(
        env!("CARGO_BIN_EXE_cms-server").as_ref(),
        &dir,
        &config(),
        &[],
    );
    let pid = s.child.id().to_string();
    let image = rt.block_on(async {
        let (status, xml) = call(&ec2(&s, ALICE, "Action=DescribeImages&Version=2016-11-15")).await;
        assert_eq!(status, 200, "{xml}");
        first(&xml, "imageId").expect("an image").to_owned()
    });
    // Room for 100,000: the default network and two more /16 ranges.
    let subnets: Vec<String> = rt.block_on(async {
        for (name, cidr) in [("more-1", "10.1.0.0/16"), ("more-2", "10.2.0.0/16")] {
            let r = reqwest::Client::new()
                .post(format!("http://{}/v1/providers/local/networks", s.addr))
                .bearer_auth(API_KEY)
                .json(&serde_json::json!({"name": name, "cidr": cidr}))
                .send()
                .await
                .expect("create a network");
            assert_eq!(r.status(), 201);
        }
        let (status, xml) =
            call(&ec2(&s, ALICE, "Action=DescribeSubnets&Version=2016-11-15")).await;
        assert_eq!(status, 200, "{xml}");
        xml.split("<subnetId>")
            .skip(1)
            .filter_map(|r| r.split_once("</subnetId>").map(|(id, _)| id.to_owned()))
            .collect()
    });
    assert_eq!(subnets.len(), 3, "{subnets:?}");
    rt.block_on(launch(&s, ALICE, &image, &subnets, 150));
    let mut bobs = 0;
    let mut samples = Vec::new();
    for size in sizes {
        let started = std::time::Instant::now();
        rt.block_on(launch(&s, BOB, &image, &subnets, size.saturating_sub(bobs)));
        bobs = bobs.max(size);
        eprintln!(
            "bob has {bobs} instances (made in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        rt.block_on(check(&s));
        // What the launches left behind (the store's writes) settles first.
        std::thread::sleep(Duration::from_secs(2));
        rt.block_on(measure("warm-up", native(&s), 1, 0.5, || None));
        let native = median(
            (0..ROUNDS)
                .map(|_| rt.block_on(measure("native", native(&s), 1, secs, || cpu(&pid))))
                .collect(),
        );
        rt.block_on(measure("warm-up", ec2(&s, ALICE, DESCRIBE), 1, 0.5, || {
            None
        }));
        let ec2 = median(
            (0..ROUNDS)
                .map(|_| {
                    rt.block_on(measure("ec2", ec2(&s, ALICE, DESCRIBE), 1, secs, || {
                        cpu(&pid)
                    }))
                })
                .collect(),
        );
        samples.push(Sample {
            others: bobs,
            native,
            ec2,
        });
    }

    println!(
        "alice's first page of 100 (of her 150 instances) while bob holds more and more, \
         one connection, the median of {ROUNDS} rounds of {secs} s per cell"
    );
    println!();
    println!("| bob's instances | native µs/req | native server CPU µs/req | ratio | EC2 µs/req | EC2 server CPU µs/req | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let base = samples
        .first()
        .map(|s| (mean_us(&s.native), mean_us(&s.ec2)));
    let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.0}"));
    let mut worst: f64 = 0.0;
    for sample in &samples {
        let (n, e) = (mean_us(&sample.native), mean_us(&sample.ec2));
        let (bn, be) = base.unwrap_or((n, e));
        worst = worst.max(n / bn).max(e / be);
        println!(
            "| {} | {n:.0} | {} | {:.2} | {e:.0} | {} | {:.2} |",
            sample.others,
            fmt(cpu_us(&sample.native)),
            n / bn,
            fmt(cpu_us(&sample.ec2)),
            e / be
        );
    }
    println!();
    println!(
        "largest ratio to the first row: {worst:.2} (aim <= {AIM}: {})",
        if worst <= AIM { "met" } else { "NOT met" }
    );
    let rss = peak_rss_kib(s.child.id()).unwrap_or(0);
    println!(
        "server peak RSS: {:.1} MiB with {} instances",
        rss as f64 / 1024.0,
        bobs + 150
    );
    println!();
    println!("bob walks all his {bobs} instances in pages of 1,000:");
    println!();
    println!(
        "| walk | instances | pages | s | RSS before MiB | RSS after MiB | peak RSS after MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mib = |k: u64| k as f64 / 1024.0;
    for round in 1..=2 {
        for (name, ec2) in [("native", false), ("EC2", true)] {
            let (before, _) = rss_kib(s.child.id());
            let started = std::time::Instant::now();
            let (n, pages) = if ec2 {
                rt.block_on(walk_ec2(&s))
            } else {
                rt.block_on(walk_native(&s))
            };
            assert_eq!(n, bobs, "{name}: every instance, once");
            let (after, peak) = rss_kib(s.child.id());
            println!(
                "| {name} (walk {round}) | {n} | {pages} | {:.1} | {:.1} | {:.1} | {:.1} |",
                started.elapsed().as_secs_f64(),
                mib(before),
                mib(after),
                mib(peak)
            );
        }
    }
    drop(s);
    std::thread::sleep(Duration::from_millis(50));
}
