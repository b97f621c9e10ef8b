//! The soak: minutes of mixed load on both frontends (native JSON and EC2 signed by
//! aws-sdk-ec2) from several tenants, over the memory cloud and the fake oned, both
//! under chaos (temporary faults, rate limits, latency), with per-tenant rate limits,
//! while the server is killed with SIGKILL at random moments and started again on the
//! same port and store. Not a test: it runs for as long as it is told and prints what
//! it saw, for RELIABILITY.md.
//!
//! ```sh
//! cargo bench -p cms-server --bench soak                 # 20 minutes
//! cargo bench -p cms-server --bench soak -- --minutes 2  # a short run
//! ```
//!
//! Options: `--minutes M` (20), `--kill-every MIN-MAX` seconds between kills (120-240;
//! `0-0`: never, for one long life whose memory can be watched), `--workers N` per
//! tenant (3), `--seed S`, `--cached-objects N` the server's id-map cache bound (5000,
//! small so that the bound is reached within minutes; `0` leaves the server's default
//! and the key unset), `--server PATH` another build of `cms-server` to soak (to
//! compare builds under the same load).
//!
//! It checks and prints: answers by status (no 500; the only 5xx are the faults the
//! chaos layer injects, passed through as 502/503/504), what each tenant's listing
//! holds against what that tenant's clients know they made (nothing lost, nothing
//! twice, nothing of another tenant's), the server's RSS and open files over time, and
//! p99 latency per route. It exits non-zero when a check fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use common::TempDir;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const TENANTS: [&str; 3] = ["alice", "bob", "carol"];
const PROVIDERS: [&str; 2] = ["mem", "one"];
/// Instances a tenant keeps at most per provider; beyond, workers delete.
const MAX_LIVE: usize = 25;

struct Args {
    minutes: f64,
    kill_every: (u64, u64),
    workers: usize,
    seed: u64,
    cached_objects: usize,
    server: std::path::PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        minutes: 20.0,
        kill_every: (120, 240),
        workers: 3,
        seed: 1,
        cached_objects: 5000,
        server: env!("CARGO_BIN_EXE_cms-server").into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--minutes" => a.minutes = value("--minutes").parse().expect("--minutes M"),
            "--kill-every" => {
                let v = value("--kill-every");
                let (lo, hi) = v.split_once('-').expect("--kill-every MIN-MAX");
                a.kill_every = (lo.parse().expect("MIN"), hi.parse().expect("MAX"));
            }
            "--workers" => a.workers = value("--workers").parse().expect("--workers N"),
            "--seed" => a.seed = value("--seed").parse().expect("--seed S"),
            "--cached-objects" => {
                a.cached_objects = value("--cached-objects")
                    .parse()
                    .expect("--cached-objects N")
            }
            "--server" => a.server = value("--server").into(),
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn key(tenant: &str) -> String {
    format!("soak-{tenant}-key-0123456789abcdef")
}

fn access(tenant: &str) -> String {
    format!("AKIASOAK{:0<12}", tenant.to_uppercase())
}

fn secret(tenant: &str) -> String {
    format!("soak{tenant}secret0123456789abcdefghijklmnop")
}

fn config(oned: &FakeOned, cached_objects: usize) -> String {
    let mut c = if cached_objects > 0 {
        format!("cached_objects = {cached_objects}\n")
    } else {
        String::new()
    };
    c += &format!(
        r#"
[rate_limits]
read = {{ per_second = 80, burst = 160 }}
write = {{ per_second = 20, burst = 40 }}

[[providers]]
name = "mem"
driver = "memory"
boot_delay_ms = 100
stop_delay_ms = 100
start_delay_ms = 100
terminate_delay_ms = 100
# Terminated instances stay listed for a minute (not ten), so that the memory cloud
# reaches its steady size early and the server's RSS can be judged flat.
terminated_retention_ms = 60000
retry_attempts = 2
[providers.chaos]
seed = 7
fault_rate = 0.04
rate_limit_rate = 0.02
retry_after_ms = 200
latency_ms = 20

[[providers]]
name = "one"
driver = "opennebula"
endpoint = "{}"
username = "{}"
password_env = "SOAK_ONE_PASSWORD"
retry_attempts = 2
concurrency_limit = 16
[[providers.sizes]]
name = "small"
cpu = 0.5
vcpu = 1
memory_mib = 512
[providers.chaos]
seed = 8
fault_rate = 0.03
latency_ms = 10
"#,
        oned.endpoint(),
        oned.username()
    );
    for t in TENANTS {
        c += &format!(
            "\n[[tenants]]\nname = \"{t}\"\napi_key = \"{}\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\nproviders = [\"*\"]\n",
            key(t),
            access(t),
            secret(t)
        );
    }
    c
}

// ---- the server, killed and started again ----

struct Process {
    child: Child,
    addr: SocketAddr,
}

fn start(
    server: &std::path::Path,
    dir: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    password: &str,
) -> Process {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut child = Command::new(server)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(config)
            .env(
                "CMS_STATE",
                format!("sqlite://{}", dir.join("state.db").display()),
            )
            .env("SOAK_ONE_PASSWORD", password)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cms-server");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut lines = lines.map_while(Result::ok);
        let addr = lines.find_map(|l| {
            l.strip_prefix("listening on http://")
                .map(|a| a.trim().parse::<SocketAddr>().expect("an address"))
        });
        std::thread::spawn(move || for _ in lines {});
        match addr {
            Some(addr) => return Process { child, addr },
            None => {
                // The port may still be held by the killed process's sockets.
                let _ = child.wait();
                assert!(Instant::now() < deadline, "cms-server does not start again");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn proc_value(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---- what the clients know ----

#[derive(Default)]
struct Stats {
    /// (route, status and problem kind, or EC2 code) → count.
    answers: BTreeMap<(&'static str, String), u64>,
    /// Requests that reached no server (it was down).
    unreachable: u64,
    latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Seconds since start, RSS KiB, open files, server generation.
    samples: Vec<(u64, u64, usize, u32)>,
}

impl Stats {
    fn record(&mut self, route: &'static str, outcome: String, took: Duration) {
        *self.answers.entry((route, outcome)).or_default() += 1;
        self.latency
            .entry(route)
            .or_insert_with(|| Histogram::new_with_bounds(1, 600_000_000, 3).expect("a histogram"))
            .saturating_record(took.as_micros() as u64);
    }
}

#[derive(Clone, Debug)]
struct Made {
    provider: &'static str,
    id: Option<String>,
    /// The server generation (restarts so far) when it was made: a memory cloud's
    /// instances go with the process that held them.
    generation: u32,
    /// The create was answered with success.
    acknowledged: bool,
    /// A delete was answered with success.
    deleted: bool,
    /// A create or delete whose answer was lost: either outcome is right.
    uncertain: bool,
}

impl Made {
    /// A create about to be asked for: its outcome not known yet.
    fn asked(provider: &'static str, generation: u32) -> Made {
        Made {
            provider,
            id: None,
            generation,
            acknowledged: false,
            deleted: false,
            uncertain: true,
        }
    }
}

struct World {
    base: String,
    generation: Mutex<u32>,
    stats: Mutex<Stats>,
    /// Per tenant: name → what its clients know.
    ledgers: BTreeMap<&'static str, Mutex<BTreeMap<String, Made>>>,
    seq: std::sync::atomic::AtomicU64,
    http: reqwest::Client,
    stop: std::sync::atomic::AtomicBool,
}

impl World {
    fn generation(&self) -> u32 {
        *self.generation.lock().unwrap()
    }

    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One native request; `None` when no server answered.
async fn native(
    w: &World,
    tenant: &str,
    route: &'static str,
    req: reqwest::RequestBuilder,
) -> Option<(u16, Value, Option<u64>)> {
    let t0 = Instant::now();
    let r = req.bearer_auth(key(tenant)).send().await;
    let took = t0.elapsed();
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = r.bytes().await.ok()?;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let outcome = match v["kind"].as_str() {
                Some(kind) if status >= 400 => format!("{status} {kind}"),
                _ => status.to_string(),
            };
            w.stats.lock().unwrap().record(route, outcome, took);
            Some((status, v, retry))
        }
        Err(_) => {
            w.stats.lock().unwrap().unreachable += 1;
            None
        }
    }
}

/// Whether a status is worth trying again (with the same idempotency key).
fn temporary(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

async fn pause(retry_after: Option<u64>, attempt: u32) {
    let ms = retry_after
        .map(|s| s * 1000)
        .unwrap_or(100 << attempt.min(5));
    tokio::time::sleep(Duration::from_millis(ms.min(3000))).await;
}

async fn create_native(w: &World, tenant: &'static str, provider: &'static str) {
    let n = w.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{tenant}-n{n}");
    let (image, flavor) = match provider {
        "mem" => ("img-ubuntu-24.04", "flv-1cpu-1gb"),
        _ => ("image:0", "small"),
    };
    let mut made = Made::asked(provider, w.generation());
    // Known before it is asked for, so that a listing meanwhile may show it.
    w.ledgers[tenant]
        .lock()
        .unwrap()
        .insert(name.clone(), made.clone());
    for attempt in 0..8 {
        let req = w
            .http
            .post(format!("{}/v1/providers/{provider}/instances", w.base))
            .header("Idempotency-Key", &name)
            .json(
                &json!({"name": name, "image_id": image, "flavor_id": flavor,
                          "tags": {"soak": tenant}}),
            );
        match native(w, tenant, "native create", req).await {
            Some((201, v, _)) => {
                made.id = v["id"].as_str().map(str::to_owned);
                made.acknowledged = true;
                made.uncertain = false;
                break;
            }
            Some((s, _, retry)) if temporary(s) => pause(retry, attempt).await,
            Some((_, _, _)) => {
                // Refused for good (say, a quota): nothing was made.
                made.uncertain = false;
                break;
            }
            None => pause(None, attempt).await,
        }
    }
    w.ledgers[tenant].lock().unwrap().insert(name, made);
}

async fn delete_native(w: &World, tenant: &'static str, name: &str, id: &str, provider: &str) {
    for attempt in 0..6 {
        let req = w.http.delete(format!(
            "{}/v1/providers/{provider}/instances/{}",
            w.base,
            urlencode(id)
        ));
        match native(w, tenant, "native delete", req).await {
            Some((202 | 404, _, _)) => {
                if let Some(m) = w.ledgers[tenant].lock().unwrap().get_mut(name) {
                    m.deleted = true;
                }
                return;
            }
            Some((s, _, retry)) if temporary(s) => pause(retry, attempt).await,
            _ => pause(None, attempt).await,
        }
    }
    if let Some(m) = w.ledgers[tenant].lock().unwrap().get_mut(name) {
        m.uncertain = true;
        m.deleted = true;
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every instance a tenant's listing of `provider` holds (name → count), following
/// pages; `None` when the listing could not be completed. Instances the ledger knows
/// without their id (made through the EC2 frontend) get it.
async fn list_all(
    w: &World,
    tenant: &'static str,
    provider: &str,
) -> Option<BTreeMap<String, usize>> {
    let names = list_pages(w, tenant, provider).await?;
    let mut ledger = w.ledgers[tenant].lock().unwrap();
    Some(
        names
            .into_iter()
            .map(|(name, (count, id))| {
                if let Some(m) = ledger.get_mut(&name) {
                    if m.id.is_none() && m.acknowledged {
                        m.id = Some(id);
                    }
                }
                (name, count)
            })
            .collect(),
    )
}

async fn list_pages(
    w: &World,
    tenant: &'static str,
    provider: &str,
) -> Option<BTreeMap<String, (usize, String)>> {
    let mut names = BTreeMap::new();
    let mut token: Option<String> = None;
    let mut failures = 0;
    loop {
        let mut url = format!("{}/v1/providers/{provider}/instances?limit=50", w.base);
        if let Some(t) = &token {
            url += &format!("&page_token={}", urlencode(t));
        }
        match native(w, tenant, "native list", w.http.get(url)).await {
            Some((200, v, _)) => {
                for i in v["items"].as_array().into_iter().flatten() {
                    if i["state"] != "terminated" {
                        let name = i["name"].as_str().unwrap_or_default().to_owned();
                        let id = i["id"].as_str().unwrap_or_default().to_owned();
                        names.entry(name).or_insert((0, id)).0 += 1;
                    }
                }
                match v["next_page_token"].as_str() {
                    Some(t) => token = Some(t.to_owned()),
                    None => return Some(names),
                }
            }
            Some((s, _, retry)) if temporary(s) && failures < 20 => {
                failures += 1;
                pause(retry, failures).await
            }
            None if failures < 20 => {
                failures += 1;
                pause(None, failures).await
            }
            _ => return None,
        }
    }
}

/// The EC2 frontend, as aws-sdk-ec2 drives it (with its standard retries).
fn ec2(w: &World, tenant: &str, region: &str) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
        .endpoint_url(format!("{}/ec2", w.base))
        .credentials_provider(Credentials::new(
            access(tenant),
            secret(tenant),
            None,
            None,
            "soak",
        ))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

fn ec2_outcome<E, R>(r: &Result<impl Sized, aws_sdk_ec2::error::SdkError<E, R>>) -> Option<String>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    match r {
        Ok(_) => Some("200".into()),
        Err(aws_sdk_ec2::error::SdkError::ServiceError(e)) => {
            Some(e.err().code().unwrap_or("unknown").to_owned())
        }
        Err(_) => None,
    }
}

async fn ec2_op(w: &World, tenant: &'static str, rng: &mut SmallRng) {
    let provider = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
    let client = ec2(w, tenant, provider);
    let t0 = Instant::now();
    let (route, outcome) = if rng.gen_bool(0.8) {
        let r = client.describe_instances().send().await;
        if let Ok(out) = &r {
            // Only this tenant's instances, each named by its own clients.
            let foreign = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .flat_map(|i| i.tags())
                .filter(|t| t.key() == Some("Name"))
                .filter(|t| {
                    !t.value()
                        .unwrap_or_default()
                        .starts_with(&format!("{tenant}-"))
                })
                .count();
            if foreign > 0 {
                w.stats.lock().unwrap().record(
                    "ec2 describe",
                    "FOREIGN INSTANCE".into(),
                    Duration::ZERO,
                );
            }
        }
        ("ec2 describe", ec2_outcome(&r))
    } else {
        let n = w.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{tenant}-e{n}");
        let (image, itype) = images(provider);
        w.ledgers[tenant]
            .lock()
            .unwrap()
            .insert(name.clone(), Made::asked(provider, w.generation()));
        let r = client
            .run_instances()
            .image_id(image)
            .instance_type(itype)
            .min_count(1)
            .max_count(1)
            .client_token(&name)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("Name")
                            .value(&name)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
        let acknowledged = r.is_ok();
        let refused = matches!(&r, Err(aws_sdk_ec2::error::SdkError::ServiceError(e))
            if !matches!(e.raw().status().as_u16(), 429 | 500..=599));
        w.ledgers[tenant].lock().unwrap().insert(
            name,
            Made {
                provider,
                id: None,
                generation: w.generation(),
                acknowledged,
                deleted: false,
                uncertain: !acknowledged && !refused,
            },
        );
        ("ec2 run", ec2_outcome(&r))
    };
    let took = t0.elapsed();
    let mut stats = w.stats.lock().unwrap();
    match outcome {
        Some(o) => stats.record(route, o, took),
        None => stats.unreachable += 1,
    }
}

/// The EC2 image and instance type of each provider (the frontend's public ids),
/// learned once by [`learn_catalogue`].
fn images(provider: &str) -> (String, aws_sdk_ec2::types::InstanceType) {
    let c = CATALOGUE.lock().unwrap();
    let (image, itype) = c.get(provider).cloned().unwrap_or_default();
    (
        image,
        aws_sdk_ec2::types::InstanceType::from(itype.as_str()),
    )
}

static CATALOGUE: Mutex<BTreeMap<String, (String, String)>> = Mutex::new(BTreeMap::new());

async fn learn_catalogue(w: &World) {
    for p in PROVIDERS {
        let client = ec2(w, "alice", p);
        loop {
            let images = client.describe_images().send().await;
            let types = client.describe_instance_types().send().await;
            if let (Ok(i), Ok(t)) = (images, types) {
                let image = i.images().iter().find_map(|i| i.image_id());
                let itype = t
                    .instance_types()
                    .iter()
                    .find_map(|t| t.instance_type())
                    .map(|t| t.as_str().to_owned());
                if let (Some(image), Some(itype)) = (image, itype) {
                    CATALOGUE
                        .lock()
                        .unwrap()
                        .insert(p.to_owned(), (image.to_owned(), itype));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn worker(w: Arc<World>, tenant: &'static str, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while !w.stopped() {
        let provider = PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
        let roll: f64 = rng.gen();
        let live: Vec<(String, String)> = w.ledgers[tenant]
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| {
                m.provider == provider && m.acknowledged && !m.deleted && m.id.is_some()
            })
            .map(|(n, m)| (n.clone(), m.id.clone().unwrap_or_default()))
            .collect();
        if roll < 0.30 {
            let _ = list_all(&w, tenant, provider).await;
        } else if roll < 0.45 {
            if let Some((_, id)) = live.get(rng.gen_range(0..live.len().max(1))) {
                let req = w.http.get(format!(
                    "{}/v1/providers/{provider}/instances/{}",
                    w.base,
                    urlencode(id)
                ));
                let _ = native(&w, tenant, "native get", req).await;
            }
        } else if roll < 0.60 && live.len() < MAX_LIVE {
            create_native(&w, tenant, provider).await;
        } else if roll < 0.70 || live.len() >= MAX_LIVE {
            if let Some((name, id)) = live.get(rng.gen_range(0..live.len().max(1))) {
                delete_native(&w, tenant, name, id, provider).await;
            }
        } else if roll < 0.78 {
            if let Some((_, id)) = live.get(rng.gen_range(0..live.len().max(1))) {
                let req = w
                    .http
                    .patch(format!(
                        "{}/v1/providers/{provider}/instances/{}/tags",
                        w.base,
                        urlencode(id)
                    ))
                    .header("Content-Type", "application/merge-patch+json")
                    .body(format!("{{\"round\":\"{}\"}}", rng.gen_range(0..100)));
                let _ = native(&w, tenant, "native tags", req).await;
            }
        } else {
            ec2_op(&w, tenant, &mut rng).await;
        }
    }
}

/// Compares each tenant's listings with its ledger; the failures found.
async fn verify(w: &World, final_check: bool, report: &mut Vec<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let generation = w.generation();
    for tenant in TENANTS {
        for provider in PROVIDERS {
            let Some(listed) = list_all(w, tenant, provider).await else {
                problems.push(format!(
                    "{tenant}/{provider}: the listing could not be completed"
                ));
                continue;
            };
            let ledger = w.ledgers[tenant].lock().unwrap().clone();
            let mine: BTreeMap<&String, &Made> = ledger
                .iter()
                .filter(|(_, m)| m.provider == provider)
                .collect();
            let expected: BTreeSet<&String> = mine
                .iter()
                .filter(|(_, m)| m.acknowledged && !m.deleted && !m.uncertain)
                // The memory cloud forgets with its process.
                .filter(|(_, m)| provider != "mem" || m.generation == generation)
                .map(|(n, _)| *n)
                .collect();
            let lost: Vec<&&String> = expected
                .iter()
                .filter(|n| !listed.contains_key(**n))
                .collect();
            let twice: Vec<&String> = listed
                .iter()
                .filter(|(_, c)| **c > 1)
                .map(|(n, _)| n)
                .collect();
            let foreign: Vec<&String> = listed
                .keys()
                .filter(|n| !n.starts_with(&format!("{tenant}-")))
                .collect();
            if final_check {
                report.push(format!(
                    "| {tenant} | {provider} | {} | {} | {} | {} | {} | {} |",
                    mine.values().filter(|m| m.acknowledged).count(),
                    mine.values().filter(|m| m.deleted).count(),
                    expected.len(),
                    listed.len(),
                    lost.len(),
                    twice.len() + foreign.len(),
                ));
            }
            if !lost.is_empty() {
                problems.push(format!("{tenant}/{provider}: lost {lost:?}"));
            }
            if !twice.is_empty() {
                problems.push(format!("{tenant}/{provider}: listed twice {twice:?}"));
            }
            if !foreign.is_empty() {
                problems.push(format!("{tenant}/{provider}: another tenant's {foreign:?}"));
            }
            // Deleted instances may linger (terminating) and may be listed; instances
            // nobody made are not.
            let nobody: Vec<&String> = listed
                .keys()
                .filter(|n| n.starts_with(&format!("{tenant}-")) && !ledger.contains_key(*n))
                .collect();
            if !nobody.is_empty() {
                problems.push(format!("{tenant}/{provider}: made by nobody {nobody:?}"));
            }
        }
    }
    problems
}

fn percentile(h: &Histogram<u64>, q: f64) -> String {
    format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // The fake oned serves from this runtime, beside the clients.
    let _entered = rt.enter();
    let dir = TempDir::new("soak");
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(50)),
        ..FakeConfig::default()
    });
    let config_file = dir.0.join("cms.toml");
    std::fs::write(&config_file, config(&oned, a.cached_objects)).expect("write the config");
    let password = oned.password().to_owned();
    let first = start(&a.server, &dir.0, &config_file, 0, &password);
    let port = first.addr.port();
    let process = Arc::new(Mutex::new(first));
    let w = Arc::new(World {
        base: format!("http://127.0.0.1:{port}"),
        generation: Mutex::new(0),
        stats: Mutex::new(Stats::default()),
        ledgers: TENANTS
            .iter()
            .map(|t| (*t, Mutex::new(BTreeMap::new())))
            .collect(),
        seq: std::sync::atomic::AtomicU64::new(0),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client"),
        stop: std::sync::atomic::AtomicBool::new(false),
    });
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    println!(
        "soak: {} minutes, {} tenants × {} workers, SIGKILL every {}-{} s, server on port {port}",
        a.minutes,
        TENANTS.len(),
        a.workers,
        a.kill_every.0,
        a.kill_every.1
    );
    let began = Instant::now();
    let mut problems: Vec<String> = Vec::new();
    let mut report = Vec::new();
    let mut kills = Vec::new();
    rt.block_on(async {
        learn_catalogue(&w).await;
        let mut tasks = Vec::new();
        for (i, t) in TENANTS.iter().enumerate() {
            for k in 0..a.workers {
                tasks.push(tokio::spawn(worker(
                    w.clone(),
                    t,
                    a.seed * 1000 + (i * 10 + k) as u64,
                )));
            }
        }
        let mut rng = SmallRng::seed_from_u64(a.seed);
        let mut next_kill =
            began + Duration::from_secs(rng.gen_range(a.kill_every.0..=a.kill_every.1));
        let mut next_sample = began;
        let mut next_progress = began + Duration::from_secs(60);
        while began.elapsed() < total {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = Instant::now();
            if now >= next_sample {
                let pid = process.lock().unwrap().child.id();
                let sample = (
                    began.elapsed().as_secs(),
                    proc_value(pid, "VmRSS:").unwrap_or(0),
                    open_files(pid),
                    w.generation(),
                );
                w.stats.lock().unwrap().samples.push(sample);
                next_sample = now + Duration::from_secs(5);
            }
            if now >= next_progress {
                let s = w.stats.lock().unwrap();
                let n: u64 = s.answers.values().sum();
                println!(
                    "soak: {} s, {n} answers, {} unreachable, {} restarts",
                    began.elapsed().as_secs(),
                    s.unreachable,
                    w.generation()
                );
                next_progress = now + Duration::from_secs(60);
            }
            let kills_on = a.kill_every.1 > 0;
            if kills_on && now >= next_kill && began.elapsed() + Duration::from_secs(20) < total {
                let at = began.elapsed().as_secs();
                let process = process.clone();
                tokio::task::spawn_blocking({
                    let dir = dir.0.clone();
                    let config_file = config_file.clone();
                    let password = password.clone();
                    let server = a.server.clone();
                    move || {
                        let mut p = process.lock().unwrap();
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        *p = start(&server, &dir, &config_file, port, &password);
                    }
                })
                .await
                .expect("restart");
                *w.generation.lock().unwrap() += 1;
                kills.push(at);
                // What was acknowledged before the kill is all still there.
                let found = verify(&w, false, &mut report).await;
                for p in &found {
                    println!("soak: after the kill at {at} s: {p}");
                }
                problems.extend(found);
                next_kill = Instant::now()
                    + Duration::from_secs(rng.gen_range(a.kill_every.0..=a.kill_every.1));
            }
        }
        w.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        // Let transitions settle, then the final comparison.
        tokio::time::sleep(Duration::from_secs(2)).await;
        problems.extend(verify(&w, true, &mut report).await);
    });

    let s = w.stats.lock().unwrap();
    println!(
        "\nsoak: {:.0} s, server killed at {:?} s ({} restarts)\n",
        began.elapsed().as_secs_f64(),
        kills,
        kills.len()
    );
    println!("| route | answer | count |\n|---|---|---:|");
    let mut bad = 0;
    for ((route, outcome), n) in &s.answers {
        println!("| {route} | {outcome} | {n} |");
        let status = outcome.split(' ').next().unwrap_or_default();
        if outcome == "InternalError" || outcome == "FOREIGN INSTANCE" {
            bad += n;
        }
        if status.starts_with('5') && !matches!(status, "502" | "503" | "504") {
            bad += n;
        }
    }
    println!(
        "| (any) | no server listening (restarts) | {} |",
        s.unreachable
    );
    println!("\n| tenant | provider | made | deleted | expected | listed | lost | duplicate or foreign |\n|---|---|---:|---:|---:|---:|---:|---:|");
    for line in &report {
        println!("{line}");
    }
    println!("\n| route | requests | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|");
    for (route, h) in &s.latency {
        println!(
            "| {route} | {} | {} | {} | {:.1} |",
            h.len(),
            percentile(h, 0.5),
            percentile(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }
    println!("\n| server life | minutes | RSS first min MiB | RSS at end MiB | max open files |\n|---|---:|---:|---:|---:|");
    for g in 0..=kills.len() as u32 {
        let life: Vec<&(u64, u64, usize, u32)> = s.samples.iter().filter(|x| x.3 == g).collect();
        let (Some(first), Some(last)) = (life.first(), life.last()) else {
            continue;
        };
        let early = life
            .iter()
            .filter(|x| x.0 <= first.0 + 60)
            .map(|x| x.1)
            .max()
            .unwrap_or(0);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} |",
            g + 1,
            (last.0 - first.0) as f64 / 60.0,
            early as f64 / 1024.0,
            last.1 as f64 / 1024.0,
            life.iter().map(|x| x.2).max().unwrap_or(0)
        );
    }
    // The longest life, every two minutes: memory that grows shows here.
    if let Some(g) =
        (0..=kills.len() as u32).max_by_key(|g| s.samples.iter().filter(|x| x.3 == *g).count())
    {
        println!(
            "\n| minute of life {} | RSS MiB | open files |\n|---:|---:|---:|",
            g + 1
        );
        let life: Vec<&(u64, u64, usize, u32)> = s.samples.iter().filter(|x| x.3 == g).collect();
        let start = life.first().map(|x| x.0).unwrap_or(0);
        let mut next = start;
        for x in &life {
            if x.0 >= next {
                println!(
                    "| {} | {:.1} | {} |",
                    (x.0 - start) / 60,
                    x.1 as f64 / 1024.0,
                    x.2
                );
                next = x.0 + 120;
            }
        }
    }
    drop(s);
    if let Ok(mut p) = process.lock() {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    drop(oned);
    drop(dir);
    if bad > 0 || !problems.is_empty() {
        println!("\nsoak: FAILED: {bad} answers that must not happen");
        for p in &problems {
            println!("soak: {p}");
        }
        std::process::exit(1);
    }
    println!("\nsoak: passed: no 500, no loss, no duplicate, no cross-tenant instance");
}
