//! Listing 1,000 servers: `cargo bench -p cms-driver-openstack --bench list`.
//!
//! Starts the fake OpenStack ([`cms_driver_openstack::fake`]) with 1,000 ACTIVE servers
//! (`CMS_BENCH_SERVERS` to change) shaped like Nova's samples (addresses, flavor,
//! image, metadata, security groups, the `OS-EXT-*` fields) and Nova's default
//! `max_limit` of 1,000, so one `/servers/detail` answers them all. Every client lists
//! them from that one endpoint, in the same run:
//!
//! - **cms**: `OpenStackDriver::list_instances` of a page of 1,000 (cms instances,
//!   networks resolved to ids), `CMS_BENCH_RUNS` times (default 20, after a warm-up);
//! - from the project's Python environment (`scripts/python-env`), in one Python
//!   process, `CMS_BENCH_PY_RUNS` times each (default 10): **Libcloud**'s
//!   `OpenStack_2_NodeDriver.list_nodes()` and **openstacksdk**'s
//!   `compute.servers()` (all pages, read to the end).
//!
//! The fake makes its `/servers/detail` answer once and serves the same bytes again
//! (`reuse_listings`: nothing changes between the listings), so that what is timed is
//! each client's own work (HTTP, parsing, its model), not the fake's rendering. Each
//! client logs in once before it is timed. Prints the median and fastest run of
//! each, the ratio of each to cms, and whether the aim (cms at least 20 times faster
//! than Libcloud) is met.

use std::time::{Duration, Instant};

use cms_core::{Driver, InstanceFilter, PageRequest};
use cms_driver_openstack::config::{Credentials, Interface, Project, Resolved, Secret};
use cms_driver_openstack::fake::{FakeConfig, FakeDelays, FakeOpenStack};
use cms_driver_openstack::OpenStackDriver;

/// cms at least this many times faster than Libcloud.
const AIM_LIBCLOUD: f64 = 20.0;

const PYTHON: &str = r#"
import importlib.metadata, json, sys, time
auth_url, user, password, project, runs, expect = sys.argv[1:7]
runs, expect = int(runs), int(expect)
out = {}

def timed(name, call):
    times = []
    for k in range(runs + 1):
        t = time.perf_counter()
        n = call()
        dt = time.perf_counter() - t
        if n != expect:
            raise SystemExit(f"{name} listed {n} servers, not {expect}")
        if k:
            times.append(dt)
    out[name] = times

try:
    import libcloud
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider
    base = auth_url.rsplit("/v3", 1)[0]
    d = get_driver(Provider.OPENSTACK)(
        user, password, ex_force_auth_url=base, ex_force_auth_version="3.x_password",
        ex_tenant_name=project, ex_domain_name="Default", ex_force_service_region="RegionOne",
        api_version="2.2")
    timed(f"Libcloud {libcloud.__version__} OpenStack_2_NodeDriver.list_nodes", lambda: len(d.list_nodes()))
except ImportError as e:
    out["missing libcloud"] = str(e)

try:
    import openstack
    conn = openstack.connect(auth_url=auth_url, username=user, password=password,
                             project_name=project, user_domain_name="Default",
                             project_domain_name="Default", region_name="RegionOne")
    timed(f"openstacksdk {importlib.metadata.version('openstacksdk')} compute.servers", lambda: sum(1 for _ in conn.compute.servers()))
except ImportError as e:
    out["missing openstacksdk"] = str(e)

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

struct Row {
    client: String,
    times: Vec<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_num("CMS_BENCH_SERVERS", 1000);
    let runs = env_num("CMS_BENCH_RUNS", 20);
    let py_runs = env_num("CMS_BENCH_PY_RUNS", 10);
    let cloud = FakeOpenStack::start(FakeConfig {
        servers: n,
        max_servers: n + 100,
        max_limit: 1000,
        delays: FakeDelays::instant(),
        reuse_listings: true,
        ..FakeConfig::default()
    });
    let driver = OpenStackDriver::with_resolved(Resolved {
        credentials: Credentials::Password {
            auth_url: cloud.auth_url(),
            username: cloud.username().into(),
            user_domain: "Default".into(),
            password: Secret::new(cloud.password()),
            project: Project::Name {
                name: cloud.project_name().into(),
                domain: "Default".into(),
            },
        },
        region: Some("RegionOne".into()),
        interface: Interface::Public,
        network: None,
        microversion: (2, 100),
        timeout: Duration::from_secs(60),
    })
    .expect("driver");
    let page = PageRequest::first(1000);
    let filter = InstanceFilter::default();
    let mut rows = Vec::new();
    let first = driver.list_instances(&filter, &page).await.expect("list");
    assert_eq!(first.items.len(), n.min(1000));
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let got = driver.list_instances(&filter, &page).await.expect("list");
        times.push(t.elapsed());
        assert_eq!(std::hint::black_box(got).items.len(), n.min(1000));
    }
    rows.push(Row {
        client: "cms OpenStackDriver::list_instances".into(),
        times,
    });

    let out = tokio::process::Command::new(cms_driver_openstack::testbed::python())
        .args([
            "-c",
            PYTHON,
            &cloud.auth_url(),
            cloud.username(),
            cloud.password(),
            cloud.project_name(),
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
    let mut notes = Vec::new();
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
        "\nListing {n} servers from the fake OpenStack on 127.0.0.1 (one /servers/detail of {n})\n"
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
}
