//! Load benchmark of the EC2 frontend: `cargo bench -p cms-server --bench ec2`.
//!
//! One signed `DescribeInstances` answering 100 instances, at 64 keep-alive connections,
//! against three servers in the same run, on the same machine:
//!
//! - cms: the release `cms-server` (Cargo builds it for the benchmark) on the memory
//!   cloud with no delays, 100 instances launched by a signed `RunInstances`;
//! - moto: moto's EC2 server (`MotoServer`, from the workspace's `.venv`) holding 100
//!   instances, the Python implementation many EC2 tests run against;
//! - with `CMS_BENCH_BASELINE=/path/to/cms-server`, that binary (an earlier build), with
//!   the same instances and load;
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

use std::net::SocketAddr;

use cms_driver_ec2::moto::{self, MotoServer};

mod common;
use common::load::{
    call, count, cpu, cpu_tree, first, measure, pid_of, print_table, rate_of, Target, DRAIN_CAP,
};
use common::nginx::{start_nginx, NGINX_WORKERS};
use common::{peak_rss_kib, start_server, TempDir};

/// The development tenant's EC2 keys (`CMS_DEV_ACCESS_KEY_ID`, `CMS_DEV_SECRET_ACCESS_KEY`).
const ACCESS_KEY_ID: &str = "AKIACMSBENCH0000EC2";
const SECRET_ACCESS_KEY: &str = "cms-bench-secret-0123456789abcdef";
/// The environment that gives the development tenant those keys.
const DEV_KEYS: &[(&str, &str)] = &[
    ("CMS_DEV_ACCESS_KEY_ID", ACCESS_KEY_ID),
    ("CMS_DEV_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
];
const CONNECTIONS: usize = 64;
const INSTANCES: usize = 100;
const DESCRIBE: &str = "Action=DescribeInstances&Version=2016-11-15";
/// Signatures are reused for the whole row; the server accepts them for 15 minutes.
const MAX_SECONDS: f64 = 600.0;
const AIM_MOTO: f64 = 300.0;
const AIM_NGINX: f64 = 0.5;

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
/// Launches the instances into a cms server (from its first image) and answers its
/// DescribeInstances.
async fn seed_cms(addr: SocketAddr) -> String {
    let keys = (ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let images = Target::signed(
        addr,
        "/ec2/",
        "local",
        keys,
        "Action=DescribeImages&Version=2016-11-15".to_owned(),
    );
    let (status, xml) = call(&images).await;
    assert_eq!(status, 200, "DescribeImages: {xml}");
    let image = first(&xml, "imageId").expect("an image in DescribeImages");
    seed(addr, "/ec2/", "local", keys, &format!("&ImageId={image}")).await;
    describe(addr, "/ec2/", "local", keys).await
}

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
    let cms = start_server(&dir, DEV_KEYS);
    let answer = rt.block_on(seed_cms(cms.addr));

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
    rt.block_on(measure("warm-up", sign_cms(), CONNECTIONS, 1.0, || None));
    rows.push(
        rt.block_on(measure("cms", sign_cms(), CONNECTIONS, secs, || {
            cpu(&cms_pid)
        })),
    );

    // An earlier build, when asked for: the same instances, the same load.
    if let Ok(path) = std::env::var("CMS_BENCH_BASELINE") {
        let old = common::start_with(path.as_ref(), &dir, common::LOCAL, DEV_KEYS);
        rt.block_on(seed_cms(old.addr));
        let old_pid = old.child.id().to_string();
        let sign = || Target::signed(old.addr, "/ec2/", "local", cms_keys, DESCRIBE.to_owned());
        rt.block_on(measure("warm-up", sign(), CONNECTIONS, 1.0, || None));
        rows.push(
            rt.block_on(measure("cms (baseline)", sign(), CONNECTIONS, secs, || {
                cpu(&old_pid)
            })),
        );
    }

    let moto_target = Target::signed(
        moto_server.addr(),
        "/",
        moto::REGION,
        moto_keys,
        DESCRIBE.to_owned(),
    );
    let port = format!("-p {}", moto_server.addr().port());
    let moto_pid = pid_of(&["moto_server", &port]).map(|p| p.to_string());
    rows.push(
        rt.block_on(measure("moto", moto_target, CONNECTIONS, secs, || {
            cpu(moto_pid.as_deref()?)
        })),
    );
    drop(moto_server);

    let nginx_skipped = match start_nginx(
        &dir.0,
        "describe-instances.xml",
        "text/xml",
        answer.as_bytes(),
    ) {
        Ok(nginx) => {
            let t = Target::get(nginx.addr, "/describe-instances.xml");
            let (status, body) = rt.block_on(call(&t));
            assert_eq!(status, 200, "nginx: {body}");
            assert_eq!(body, answer, "nginx serves the cms answer unchanged");
            rt.block_on(measure(
                "warm-up",
                Target::get(nginx.addr, "/describe-instances.xml"),
                CONNECTIONS,
                1.0,
                || None,
            ));
            let pid = nginx.child.id();
            rows.push(
                rt.block_on(measure("nginx (static file)", t, CONNECTIONS, secs, || {
                    cpu_tree(pid)
                })),
            );
            None
        }
        Err(why) => Some(why),
    };

    print_table(&rows);
    if let Some(why) = &nginx_skipped {
        println!("nginx (static file): skipped: {why}");
    }
    println!();
    let rate = |name: &str| rate_of(&rows, name);
    let cms_rate = rate("cms").unwrap_or(0.0);
    if let Some(old) = rate("cms (baseline)") {
        println!("this build / baseline: {:.2}", cms_rate / old);
    }
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
