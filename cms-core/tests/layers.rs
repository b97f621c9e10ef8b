//! Each layer's behaviour, driven by a scripted layer that injects exact failures.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cms_core::layers::{
    Call, ChaosConfig, Interceptor, Layered, LimitLayer, RetryLayer, RetryPolicy, TimeoutLayer,
};
use cms_core::memory::MemoryCloud;
use cms_core::*;
use futures::future::{join_all, BoxFuture};
use futures::FutureExt;

/// What the scripted layer does with the next call.
#[derive(Clone, Debug)]
enum Step {
    /// Fail without running the call.
    Before(Error),
    /// Run the call, then fail as if the answer was lost.
    After(Error),
    /// Run the call after a pause.
    Slow(Duration),
}

/// A layer that follows a script, then passes calls through; counts what reached the
/// driver and the most calls in flight at once.
#[derive(Debug, Default)]
struct Script {
    steps: Mutex<VecDeque<Step>>,
    reached: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
        Arc::new(Script {
            steps: Mutex::new(steps.into_iter().collect()),
            ..Default::default()
        })
    }
}

#[derive(Debug, Clone)]
struct Scripted(Arc<Script>);

impl Interceptor for Scripted {
    fn intercept<'a, T, F>(&'a self, _call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        let s = &self.0;
        let step = s.steps.lock().unwrap().pop_front();
        async move {
            if let Some(Step::Before(e)) = step {
                return Err(e);
            }
            let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            s.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if let Some(Step::Slow(d)) = &step {
                tokio::time::sleep(*d).await;
            }
            s.reached.fetch_add(1, Ordering::SeqCst);
            let r = run().await;
            s.in_flight.fetch_sub(1, Ordering::SeqCst);
            match step {
                Some(Step::After(e)) => Err(e),
                _ => r,
            }
        }
        .boxed()
    }
}

fn unavailable() -> Error {
    Error::new(ErrorKind::Unavailable, "connection reset")
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        multiplier: 2.0,
        deadline: Some(Duration::from_secs(5)),
    }
}

/// memory <- script <- retry
fn with_retry(memory: &MemoryCloud, script: &Arc<Script>, policy: RetryPolicy) -> Cloud {
    let scripted: Arc<dyn Driver> = Arc::new(Layered::new(
        Arc::new(memory.clone()),
        Scripted(script.clone()),
    ));
    let retried = Layered::new(scripted, RetryLayer::new(policy));
    Cloud::builder(retried).provider("test").build()
}

async fn image_and_flavor(c: &Cloud) -> InstanceSpec {
    let image = c
        .list_images(&cms_core::ImageFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items[0]
        .id
        .clone();
    let flavor = c.list_flavors(&PageRequest::default()).await.unwrap().items[0]
        .id
        .clone();
    InstanceSpec::new(image, flavor)
}

#[tokio::test]
async fn retry_repeats_temporary_errors_until_success() {
    let memory = MemoryCloud::new();
    let script = Script::new([Step::Before(unavailable()), Step::After(unavailable())]);
    let cloud = with_retry(&memory, &script, fast_retry(5));
    let locations = cloud.list_locations().await.expect("third try succeeds");
    assert!(!locations.is_empty());
    assert_eq!(script.reached.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_gives_up_after_max_attempts_with_the_last_error() {
    let memory = MemoryCloud::new();
    let script = Script::new(std::iter::repeat_n(Step::Before(unavailable()), 10));
    let cloud = with_retry(&memory, &script, fast_retry(3));
    let e = cloud.list_locations().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(e.context_value("attempts"), Some("3"));
    assert_eq!(
        e.to_string(),
        "list locations on provider `test`: connection reset"
    );
    assert_eq!(script.steps.lock().unwrap().len(), 7);
}

#[tokio::test]
async fn retry_leaves_permanent_errors_alone() {
    let memory = MemoryCloud::new();
    let script = Script::new([]);
    let cloud = with_retry(&memory, &script, fast_retry(5));
    let e = cloud
        .get_instance(&InstanceId::new("i-nope"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(script.reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retry_gives_creates_a_client_token_so_a_lost_answer_makes_one_instance() {
    let memory = MemoryCloud::new();
    let script = Script::new([]);
    let cloud = with_retry(&memory, &script, fast_retry(5));
    let spec = image_and_flavor(&cloud).await;
    script
        .steps
        .lock()
        .unwrap()
        .extend([Step::After(unavailable()), Step::After(unavailable())]);
    let vm = cloud.create_instance(&spec).await.expect("created");
    assert_eq!(
        script.reached.load(Ordering::SeqCst),
        5,
        "2 lists, 3 creates"
    );
    assert!(vm.client_token.is_some(), "the layer set a client token");
    assert_eq!(memory.instance_count(), 1, "three tries, one instance");
}

#[tokio::test]
async fn retry_never_repeats_a_create_that_may_have_happened() {
    let memory = MemoryCloud::new();
    let script = Script::new([Step::After(unavailable())]);
    let cloud = with_retry(&memory, &script, fast_retry(5));
    let spec = NetworkSpec {
        name: "n1".into(),
        cidr: "10.9.0.0/24".into(),
        ..Default::default()
    };
    let e = cloud.create_network(&spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(script.reached.load(Ordering::SeqCst), 1, "not repeated");
    let named: Vec<_> = cloud
        .collect_networks()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.name == "n1")
        .collect();
    assert_eq!(named.len(), 1, "it did happen, once");
}

#[tokio::test]
async fn retry_repeats_a_create_that_certainly_did_not_happen() {
    let memory = MemoryCloud::new();
    let refused = unavailable().not_executed(true);
    let script = Script::new([Step::Before(refused)]);
    let cloud = with_retry(&memory, &script, fast_retry(5));
    let spec = NetworkSpec {
        name: "n2".into(),
        cidr: "10.8.0.0/24".into(),
        ..Default::default()
    };
    cloud.create_network(&spec).await.expect("second try");
    assert_eq!(script.reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retry_waits_at_least_the_retry_after() {
    let memory = MemoryCloud::new();
    let limited = Error::new(ErrorKind::RateLimited, "slow down")
        .with_retry_after(Duration::from_millis(150));
    let script = Script::new([Step::Before(limited)]);
    let cloud = with_retry(&memory, &script, fast_retry(3));
    let started = Instant::now();
    cloud.list_locations().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn retry_stops_at_its_deadline() {
    let memory = MemoryCloud::new();
    let limited =
        Error::new(ErrorKind::RateLimited, "slow down").with_retry_after(Duration::from_millis(80));
    let script = Script::new(std::iter::repeat_n(Step::Before(limited), 50));
    let policy = RetryPolicy {
        deadline: Some(Duration::from_millis(200)),
        ..fast_retry(50)
    };
    let cloud = with_retry(&memory, &script, policy);
    let e = cloud.list_locations().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    let tries: u32 = e.context_value("attempts").unwrap().parse().unwrap();
    assert!((2..=3).contains(&tries), "{tries} tries within 200 ms");
}

#[tokio::test]
async fn timeout_turns_a_slow_call_into_a_timeout_error() {
    let memory = MemoryCloud::new();
    let script = Script::new([Step::Slow(Duration::from_millis(500))]);
    let slow: Arc<dyn Driver> = Arc::new(Layered::new(Arc::new(memory), Scripted(script.clone())));
    let cloud = Cloud::builder(Layered::new(
        slow,
        TimeoutLayer::new(Duration::from_millis(50)),
    ))
    .provider("slowpoke")
    .build();
    let e = cloud.list_locations().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.is_temporary());
    assert!(e
        .to_string()
        .starts_with("list locations on provider `slowpoke`: no answer within"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_bounds_calls_in_flight() {
    let memory = MemoryCloud::new();
    let script = Script::new(std::iter::repeat_n(
        Step::Slow(Duration::from_millis(30)),
        12,
    ));
    let scripted: Arc<dyn Driver> =
        Arc::new(Layered::new(Arc::new(memory), Scripted(script.clone())));
    let cloud = Cloud::builder(Layered::new(scripted, LimitLayer::new(3))).build();
    join_all((0..12).map(|_| cloud.list_locations())).await;
    assert_eq!(script.reached.load(Ordering::SeqCst), 12);
    assert_eq!(script.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn metrics_count_calls_and_errors_by_kind() {
    let cloud = Cloud::builder(MemoryCloud::new())
        .provider("m")
        .metrics()
        .build();
    cloud.list_locations().await.unwrap();
    cloud.list_locations().await.unwrap();
    let _ = cloud.get_instance(&InstanceId::new("i-x")).await;
    let m = cloud.metrics().unwrap();
    assert_eq!(m.calls(Operation::ListLocations), 2);
    assert_eq!(m.calls(Operation::GetInstance), 1);
    assert_eq!(m.errors(Operation::GetInstance, ErrorKind::NotFound), 1);
    let mut text = String::new();
    m.write_prometheus(&mut text);
    assert!(text.contains("cms_driver_calls_total{provider=\"m\",operation=\"list_locations\"} 2"));
    assert!(text.contains(
        "cms_driver_errors_total{provider=\"m\",operation=\"get_instance\",kind=\"not_found\"} 1"
    ));
    assert!(text.contains(
        "cms_driver_call_duration_seconds_count{provider=\"m\",operation=\"get_instance\"} 1"
    ));
}

#[tokio::test]
async fn chaos_is_repeatable_for_a_seed() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let cloud = Cloud::builder(MemoryCloud::new())
            .chaos(ChaosConfig::faults(seed, 0.5))
            .build();
        let mut v = Vec::new();
        for _ in 0..40 {
            v.push(cloud.list_locations().await.is_ok());
        }
        v
    }
    let a = outcomes(42).await;
    assert_eq!(a, outcomes(42).await);
    assert_ne!(a, outcomes(43).await);
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!((8..=32).contains(&failures), "{failures} of 40 at rate 0.5");
}

#[tokio::test]
async fn wait_for_state_times_out_naming_the_last_state() {
    let memory = MemoryCloud::with_config(cms_core::memory::MemoryConfig {
        boot_delay: Duration::from_secs(30),
        ..Default::default()
    });
    let cloud = Cloud::builder(memory).provider("local").build();
    let spec = image_and_flavor(&cloud).await;
    let vm = cloud.create_instance(&spec).await.unwrap();
    let e = cloud
        .wait_for_state(&vm.id, InstanceState::Running, Duration::from_millis(120))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.message().contains("still pending"), "{e}");
}
