//! The conformance suite against the memory cloud, plain and under injected faults.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cms_core::layers::{ChaosConfig, ChaosLayer, RetryPolicy};
use cms_core::memory::{MemoryCloud, MemoryConfig};
use cms_core::testkit::{self, KitConfig};
use cms_core::{Cloud, Operation};

fn quick(delay_ms: u64) -> MemoryConfig {
    let d = Duration::from_millis(delay_ms);
    MemoryConfig {
        boot_delay: d,
        stop_delay: d,
        start_delay: d,
        reboot_delay: d,
        terminate_delay: d,
        ..MemoryConfig::default()
    }
}

fn kit() -> KitConfig {
    KitConfig {
        state_timeout: Duration::from_secs(20),
        ..KitConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_kit() {
    let memory = MemoryCloud::with_config(quick(30));
    let cloud = Cloud::builder(memory.clone())
        .provider("local")
        .metrics()
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    println!("{report}");
    report.assert_passed();
    assert_eq!(report.failures().count(), 0, "every check ran and passed");
    assert!(report.passed_count() >= 11, "{report}");
    assert_eq!(memory.instance_count(), report.instances_created);
    let m = cloud.metrics().expect("metrics layer");
    assert!(m.calls(Operation::CreateInstance) as usize >= report.instances_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_under_chaos_with_retry_passes_the_kit_without_duplicates() {
    // Delays well above the retry pauses, so that a repeated action finds the
    // instance still in its transition (repeating it there is allowed).
    let memory = MemoryCloud::with_config(quick(300));
    let chaos = ChaosLayer::new(ChaosConfig::faults(20261122, 0.3));
    let stats = chaos.stats();
    let cloud = Cloud::builder(memory.clone())
        .provider("chaotic")
        .chaos_layer(chaos)
        .retry(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(10)),
        })
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    println!("{report}");
    report.assert_passed();
    // Faults of both sorts really were injected, creates among them...
    let before = stats.faults_before.load(Ordering::Relaxed);
    let after = stats.faults_after.load(Ordering::Relaxed);
    let calls = stats.calls.load(Ordering::Relaxed);
    println!("chaos: {calls} calls, {before} refused, {after} answers lost");
    assert!(
        before > 20 && after > 20,
        "too few faults injected: {before}/{after}"
    );
    let rate = (before + after) as f64 / calls as f64;
    assert!((0.2..0.4).contains(&rate), "fault rate {rate}");
    // ...and yet no create made a second instance.
    assert_eq!(memory.instance_count(), report.instances_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_without_retry_makes_the_kit_fail() {
    // The kit is not blind: the same faults without the retry layer are seen.
    let memory = MemoryCloud::with_config(quick(20));
    let cloud = Cloud::builder(memory)
        .chaos(ChaosConfig::faults(7, 0.3))
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    assert!(!report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out() {
    let memory = MemoryCloud::with_config(quick(20));
    let cloud = Cloud::builder(memory)
        .chaos(ChaosConfig {
            rate_limit_rate: 0.3,
            retry_after: Duration::from_millis(5),
            ..ChaosConfig::calm(99)
        })
        .retry(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
        .build();
    testkit::run(&cloud, &kit()).await.assert_passed();
}
