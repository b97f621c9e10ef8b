//! How the memory cloud scales: the cost of a page, of a page in the middle (continued
//! from a token) and of a get, for 1,000 to 100,000 instances, plus listing throughput
//! from several threads. A plain program printing markdown tables:
//!
//! ```text
//! cargo bench -p cms-core --bench memory
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use cms_core::memory::{MemoryCloud, MemoryConfig};
use cms_core::{
    Driver, InstanceFilter, InstanceId, InstanceSpec, NetworkSpec, PageRequest, PageToken,
};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const PAGE: u32 = 100;
const ROUNDS: u32 = 2_000;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    println!("## memory cloud: cost per call (mean of {ROUNDS} calls, page of {PAGE})\n");
    println!("| instances | create (mean) | list first page | list middle page (token) | list first page, filtered by tag | get instance |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut largest = None;
    for n in SIZES {
        let (cloud, row) = rt.block_on(measure(n));
        println!("{row}");
        largest = Some(cloud);
    }
    println!("\nPeak RSS after {} instances: {}", SIZES[2], peak_rss());

    if let Some(cloud) = largest {
        println!(
            "\n## listing a page of {PAGE} from several threads, {} instances\n",
            SIZES[2]
        );
        println!("| threads | pages/s |");
        println!("|---:|---:|");
        for threads in [1, 4, 8] {
            println!(
                "| {threads} | {:.0} |",
                throughput(&cloud, threads, Duration::from_secs(1))
            );
        }
    }
}

/// Builds a cloud of `n` running instances and times the calls on it.
async fn measure(n: usize) -> (MemoryCloud, String) {
    let cloud = MemoryCloud::with_config(MemoryConfig {
        boot_delay: Duration::ZERO,
        ..MemoryConfig::default()
    });
    // The default network (a /16) holds 65,531 instances; give them a larger one.
    let net = cloud
        .create_network(&NetworkSpec {
            name: "bench".into(),
            cidr: "172.16.0.0/12".into(),
            ..Default::default()
        })
        .await
        .expect("create network");
    let started = Instant::now();
    for k in 0..n {
        let mut spec = InstanceSpec::new("img-debian-12", "flv-1cpu-1gb")
            .name(format!("bench-{k}"))
            .tag("group", (k % 10).to_string());
        spec.network_ids = vec![net.id.clone()];
        cloud.create_instance(&spec).await.expect("create instance");
    }
    let create = started.elapsed() / n as u32;
    assert_eq!(cloud.instance_count(), n);

    let all = InstanceFilter::default();
    let (middle_token, middle_id) = middle(&cloud, n).await;
    let mut by_tag = InstanceFilter::default();
    by_tag.tags.insert("group".into(), Some("3".into()));

    let first = time(|| async {
        let p = cloud
            .list_instances(&all, &PageRequest::first(PAGE))
            .await
            .unwrap();
        assert_eq!(p.items.len(), PAGE as usize);
        black_box(p);
    })
    .await;
    let mid = time(|| async {
        let page = PageRequest::after(Some(PAGE), middle_token.clone());
        let p = cloud.list_instances(&all, &page).await.unwrap();
        assert_eq!(p.items.len(), PAGE as usize);
        black_box(p);
    })
    .await;
    let filtered = time(|| async {
        let p = cloud
            .list_instances(&by_tag, &PageRequest::first(PAGE))
            .await
            .unwrap();
        assert_eq!(p.items.len(), PAGE as usize);
        black_box(p);
    })
    .await;
    let get = time(|| async {
        black_box(cloud.get_instance(&middle_id).await.unwrap());
    })
    .await;
    let row = format!(
        "| {n} | {} | {} | {} | {} | {} |",
        fmt(create),
        fmt(first),
        fmt(mid),
        fmt(filtered),
        fmt(get)
    );
    (cloud, row)
}

/// The token of the page starting in the middle of the listing, and an id there.
async fn middle(cloud: &MemoryCloud, n: usize) -> (PageToken, InstanceId) {
    let all = InstanceFilter::default();
    let step = (n / 10).min(1000) as u32;
    let mut page = PageRequest::first(step);
    let mut seen = 0;
    loop {
        let p = cloud.list_instances(&all, &page).await.unwrap();
        seen += p.items.len();
        let last = p.items.last().map(|i| i.id.clone()).unwrap();
        let next = p.next.expect("more pages");
        if seen >= n / 2 {
            return (next, last);
        }
        page = PageRequest::after(Some(step), next);
    }
}

async fn time<F, Fut>(call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..ROUNDS / 10 {
        call().await;
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        call().await;
    }
    started.elapsed() / ROUNDS
}

/// Pages of `PAGE` listed per second by `threads` threads at once.
fn throughput(cloud: &MemoryCloud, threads: usize, for_how_long: Duration) -> f64 {
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("a tokio runtime");
                    rt.block_on(async {
                        let all = InstanceFilter::default();
                        let started = Instant::now();
                        let mut calls = 0u64;
                        while started.elapsed() < for_how_long {
                            let p = cloud.list_instances(&all, &PageRequest::first(PAGE)).await;
                            black_box(p.unwrap());
                            calls += 1;
                        }
                        calls
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / for_how_long.as_secs_f64()
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// The process's peak resident memory (VmHWM in /proc/self/status).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown (no /proc/self/status)".into())
}
