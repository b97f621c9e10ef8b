//! Listing 1,000 instances: `cargo bench -p cms-driver-ec2 --bench list`.
//!
//! Starts moto (installed by `scripts/python-env`), launches 1,000 instances in it
//! (`CMS_BENCH_INSTANCES` to change), records its `DescribeInstances` answer (all of
//! them in one answer, about 3 MB of XML) and its `DescribeAddresses` answer (in
//! AWS's namespace, which moto writes without its final slash), stops it, and serves
//! those bytes from a canned endpoint on 127.0.0.1
//! ([`cms_driver_ec2::canned::CannedEc2`]): what is timed is each client's own work
//! on the same answer (HTTP, parsing, its model), not the server's.
//!
//! Timed, each `CMS_BENCH_RUNS` times (default 20, after a warm-up):
//! - **cms**: `Ec2Driver::list_instances` of a page of 1,000: cms instances;
//! - **aws-sdk-ec2** alone: `describe_instances().send()`, the SDK's own output (what
//!   the driver read before it had its own reader for this answer);
//! - from the project's Python environment (`scripts/python-env`, which moto runs
//!   from too), **Libcloud** `EC2NodeDriver.list_nodes()` (which also asks `DescribeAddresses`)
//!   and **boto3** `describe_instances()`, in one Python process, 10 runs each
//!   (`CMS_BENCH_PY_RUNS`).
//!
//! Prints the median and fastest run of each, the ratio of each to cms, and whether
//! the aim (cms at least 20 times faster than Libcloud) is met.

use std::time::{Duration, Instant};

use cms_core::{Driver, InstanceFilter, PageRequest};
use cms_driver_ec2::canned::{record, CannedEc2};
use cms_driver_ec2::moto::{python_env, MotoServer, FLAVOR, IMAGE_ID};
use cms_driver_ec2::Ec2Driver;

/// cms at least this many times faster than Libcloud.
const AIM_LIBCLOUD: f64 = 20.0;

const PYTHON: &str = r#"
import json, sys, time
host, port, runs, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = {}

def timed(name, call, count):
    times = []
    for k in range(runs + 1):
        t = time.perf_counter()
        got = call()
        dt = time.perf_counter() - t
        n = count(got)
        if n != expect:
            raise SystemExit(f"{name} listed {n} instances, not {expect}")
        if k:
            times.append(dt)
    out[name] = times

try:
    import libcloud
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider
    d = get_driver(Provider.EC2)("testing", "testing", region="us-east-1",
                                 host=host, port=port, secure=False)
    timed(f"Libcloud {libcloud.__version__} list_nodes", d.list_nodes, len)
except ImportError as e:
    out["missing libcloud"] = str(e)

try:
    import boto3
    c = boto3.client("ec2", region_name="us-east-1", endpoint_url=f"http://{host}:{port}",
                     aws_access_key_id="testing", aws_secret_access_key="testing")
    timed(f"boto3 {boto3.__version__} describe_instances", c.describe_instances,
          lambda r: sum(len(x["Instances"]) for x in r["Reservations"]))
except ImportError as e:
    out["missing boto3"] = str(e)

print(json.dumps(out))
"#;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t[t.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn time_runs<F, Fut>(runs: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    call().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(call().await);
        times.push(t.elapsed());
    }
    times
}

/// moto with `n` instances: its DescribeInstances and DescribeAddresses answers.
async fn record_answers(n: usize) -> (Vec<u8>, Vec<u8>) {
    let moto = MotoServer::start().await;
    let driver = Ec2Driver::new(moto.config()).await.expect("driver");
    eprintln!("launching {n} instances in moto…");
    let mut left = n;
    let mut batch = 0;
    while left > 0 {
        let count = left.min(100) as i32;
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("Name")
                    .value(format!("bench-{batch}"))
                    .build(),
            )
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("env")
                    .value("bench")
                    .build(),
            )
            .build();
        driver
            .client()
            .run_instances()
            .image_id(IMAGE_ID)
            .instance_type(FLAVOR.into())
            .min_count(count)
            .max_count(count)
            .tag_specifications(tags)
            .send()
            .await
            .expect("RunInstances on moto");
        left -= count as usize;
        batch += 1;
    }
    let form = "Action=DescribeInstances&Version=2016-11-15";
    let (status, instances) = record(moto.endpoint(), form).await.expect("record");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&instances));
    let form = "Action=DescribeAddresses&Version=2016-11-15";
    let (status, addresses) = record(moto.endpoint(), form).await.expect("record");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&addresses));
    (aws_namespace(instances), aws_namespace(addresses))
}

/// moto names the namespace without AWS's final slash; Libcloud looks elements up
/// in AWS's namespace and would find none. The answers are served as AWS writes it.
fn aws_namespace(answer: Vec<u8>) -> Vec<u8> {
    const MOTO: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"";
    const AWS: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";
    let text = String::from_utf8(answer).expect("UTF-8 answer");
    assert!(
        text.contains(MOTO) || text.contains(AWS),
        "unexpected namespace: {text:.300}"
    );
    text.replacen(MOTO, AWS, 1).into_bytes()
}

struct Row {
    client: String,
    times: Vec<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_num("CMS_BENCH_INSTANCES", 1000);
    let runs = env_num("CMS_BENCH_RUNS", 20);
    let py_runs = env_num("CMS_BENCH_PY_RUNS", 10);
    let (instances, addresses) = record_answers(n).await;
    let count = instances
        .windows(b"<instanceId>".len())
        .filter(|w| w == b"<instanceId>")
        .count();
    assert_eq!(count, n, "moto's answer lists {count} instances");
    eprintln!(
        "moto's DescribeInstances answer: {} instances, {} bytes",
        n,
        instances.len()
    );
    let ec2 = CannedEc2::start([
        ("DescribeInstances", instances.clone()),
        ("DescribeAddresses", addresses),
    ])
    .await;

    let driver = &Ec2Driver::new(ec2.config()).await.expect("driver");
    let page = &PageRequest::first(1000);
    let filter = &InstanceFilter::default();
    let mut rows = Vec::new();
    let times = time_runs(runs, move || async move {
        let got = driver
            .list_instances(filter, page)
            .await
            .expect("list_instances");
        assert_eq!(got.items.len(), n.min(1000));
        got.items.len()
    })
    .await;
    rows.push(Row {
        client: "cms Ec2Driver::list_instances".into(),
        times,
    });
    let times = time_runs(runs, move || async move {
        let out = driver
            .client()
            .describe_instances()
            .send()
            .await
            .expect("DescribeInstances");
        let got: usize = out.reservations().iter().map(|r| r.instances().len()).sum();
        assert_eq!(got, n);
        got
    })
    .await;
    rows.push(Row {
        client: "aws-sdk-ec2 describe_instances (SDK output only)".into(),
        times,
    });

    // moto ran from the project's Python environment: Libcloud and boto3 are there too.
    let python = python_env().await.join("bin").join("python");
    let mut notes = Vec::new();
    let out = tokio::process::Command::new(python)
        .args([
            "-c",
            PYTHON,
            "127.0.0.1",
            &ec2.addr().port().to_string(),
            &py_runs.to_string(),
            &n.to_string(),
        ])
        .output()
        .await
        .expect("run Python");
    if !out.status.success() {
        panic!(
            "the Python clients failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the Python clients' JSON");
    for (name, value) in v.as_object().expect("object") {
        match value.as_array() {
            Some(times) => rows.push(Row {
                client: name.clone(),
                times: times
                    .iter()
                    .filter_map(|t| t.as_f64())
                    .map(Duration::from_secs_f64)
                    .collect(),
            }),
            None => notes.push(format!("{name}: {value}")),
        }
    }

    let cms = median(&rows[0].times);
    println!(
        "\nListing {n} instances ({} bytes of DescribeInstances XML from moto 5.2.5, served \
         from 127.0.0.1)\n",
        instances.len()
    );
    println!("| client | runs | median ms | fastest ms | median / cms |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        let m = median(&r.times);
        let fastest = r.times.iter().min().copied().unwrap_or_default();
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1}x |",
            r.client,
            r.times.len(),
            ms(m),
            ms(fastest),
            m.as_secs_f64() / cms.as_secs_f64()
        );
    }
    println!();
    for n in &notes {
        println!("{n}");
    }
    if let Some(lib) = rows.iter().find(|r| r.client.starts_with("Libcloud")) {
        let ratio = median(&lib.times).as_secs_f64() / cms.as_secs_f64();
        println!(
            "cms / Libcloud: {ratio:.1}x faster (aim >= {AIM_LIBCLOUD}x: {})",
            if ratio >= AIM_LIBCLOUD {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    println!(
        "requests answered by the canned endpoint: {}",
        ec2.requests()
    );
}
