use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Call, Interceptor};
use crate::{Error, ErrorKind, Operation, Result};

/// What the chaos layer injects. Rates are probabilities per call, from 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChaosConfig {
    /// Seed of the random choices, so a run can be repeated.
    pub seed: u64,
    /// Probability of a temporary fault (`Unavailable`). For idempotent calls (reads,
    /// actions, tag updates, creates with a client token) half of them strike before the call
    /// reaches the driver (the request was refused: marked
    /// [not executed](crate::Error::is_not_executed)), half after it ran (the answer
    /// was lost: the operation happened, the caller does not know). For other calls
    /// they all strike before: no layer can recover a lost answer to a create without
    /// client token, so injecting one would only show that the failure surfaces.
    pub fault_rate: f64,
    /// Probability of a `RateLimited` answer (before the call), with `retry_after`.
    pub rate_limit_rate: f64,
    /// The retry-after of injected rate limits.
    pub retry_after: Duration,
    /// Probability of added latency.
    pub latency_rate: f64,
    /// Added latency: at least this...
    pub min_latency: Duration,
    /// ...and at most this (uniformly in between).
    pub max_latency: Duration,
    /// Holds back the answer of every call of [`answer_delay_ops`](Self::answer_delay_ops)
    /// this long after the driver ran: the operation is done, its caller does not know
    /// yet. A window to kill a process in, between a backend's work and its answer.
    pub answer_delay: Duration,
    /// The operations whose answers are held back (all when empty).
    pub answer_delay_ops: OperationSet,
}

/// A set of [`Operation`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationSet(u32);

impl OperationSet {
    /// No operation.
    pub const fn empty() -> Self {
        OperationSet(0)
    }

    /// The set with `op` added.
    pub fn with(self, op: Operation) -> Self {
        OperationSet(self.0 | (1 << op.index()))
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: Operation) -> bool {
        self.0 & (1 << op.index()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Operation> for OperationSet {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        iter.into_iter()
            .fold(OperationSet::empty(), OperationSet::with)
    }
}

impl ChaosConfig {
    /// No injection at all, with the given seed.
    pub fn calm(seed: u64) -> Self {
        ChaosConfig {
            seed,
            fault_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after: Duration::from_millis(10),
            latency_rate: 0.0,
            min_latency: Duration::ZERO,
            max_latency: Duration::ZERO,
            answer_delay: Duration::ZERO,
            answer_delay_ops: OperationSet::empty(),
        }
    }

    /// Temporary faults at `rate`.
    pub fn faults(seed: u64, rate: f64) -> Self {
        ChaosConfig {
            fault_rate: rate,
            ..ChaosConfig::calm(seed)
        }
    }
}

/// What the chaos layer has injected so far.
#[derive(Debug, Default)]
pub struct ChaosStats {
    /// Calls seen.
    pub calls: AtomicU64,
    /// Faults injected before the driver ran.
    pub faults_before: AtomicU64,
    /// Faults injected after the driver ran (the answer was dropped).
    pub faults_after: AtomicU64,
    /// Rate limits injected.
    pub rate_limits: AtomicU64,
    /// Delays injected.
    pub delays: AtomicU64,
}

/// Injects latency, temporary faults and rate limits at configured rates (seeded), to
/// test everything above it. Sits just above the driver.
#[derive(Debug)]
pub struct ChaosLayer {
    config: ChaosConfig,
    rng: Mutex<SmallRng>,
    stats: Arc<ChaosStats>,
}

enum Plan {
    Pass,
    FailBefore,
    FailAfter,
    RateLimit,
}

impl ChaosLayer {
    /// A chaos layer injecting per `config`.
    pub fn new(config: ChaosConfig) -> Self {
        ChaosLayer {
            config,
            rng: Mutex::new(SmallRng::seed_from_u64(config.seed)),
            stats: Arc::new(ChaosStats::default()),
        }
    }

    /// Counters of what was injected.
    pub fn stats(&self) -> Arc<ChaosStats> {
        self.stats.clone()
    }

    fn plan(&self, call: Call) -> (Plan, Option<Duration>) {
        let c = &self.config;
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let delay = (rng.gen_bool(c.latency_rate.clamp(0.0, 1.0))).then(|| {
            let spread = c.max_latency.saturating_sub(c.min_latency);
            c.min_latency + spread.mul_f64(rng.gen_range(0.0..=1.0))
        });
        let x: f64 = rng.gen_range(0.0..1.0);
        let plan = if x < c.rate_limit_rate {
            Plan::RateLimit
        } else if x < c.rate_limit_rate + c.fault_rate / 2.0 {
            Plan::FailBefore
        } else if x < c.rate_limit_rate + c.fault_rate {
            if call.idempotent {
                Plan::FailAfter
            } else {
                Plan::FailBefore
            }
        } else {
            Plan::Pass
        };
        (plan, delay)
    }
}

fn injected(call: Call, what: &str) -> Error {
    Error::new(ErrorKind::Unavailable, format!("injected fault ({what})"))
        .with_operation(call.op)
        .with_context("chaos", what)
}

impl Interceptor for ChaosLayer {
    fn intercept<'a, T, F>(&'a self, call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        let (plan, delay) = self.plan(call);
        let s = &self.stats;
        s.calls.fetch_add(1, Ordering::Relaxed);
        let c = &self.config;
        let hold = (!c.answer_delay.is_zero()
            && (c.answer_delay_ops.is_empty() || c.answer_delay_ops.contains(call.op)))
        .then_some(c.answer_delay);
        async move {
            if let Some(d) = delay {
                s.delays.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d).await;
            }
            match plan {
                Plan::Pass => {
                    let r = run().await;
                    if let Some(d) = hold {
                        s.delays.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(d).await;
                    }
                    r
                }
                Plan::RateLimit => {
                    s.rate_limits.fetch_add(1, Ordering::Relaxed);
                    Err(Error::new(ErrorKind::RateLimited, "injected rate limit")
                        .with_operation(call.op)
                        .with_retry_after(self.config.retry_after)
                        .with_context("chaos", "rate limit"))
                }
                Plan::FailBefore => {
                    s.faults_before.fetch_add(1, Ordering::Relaxed);
                    Err(injected(call, "request refused").not_executed(true))
                }
                Plan::FailAfter => {
                    let _ = run().await;
                    s.faults_after.fetch_add(1, Ordering::Relaxed);
                    Err(injected(call, "answer lost"))
                }
            }
        }
        .boxed()
    }
}
