use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

use super::{Call, Interceptor};
use crate::{ErrorKind, Operation, Result};

/// Upper bounds (seconds) of the latency histogram buckets; the last bucket is +Inf.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// A lock-free latency histogram with the [`LATENCY_BUCKETS`] bounds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the histogram in the Prometheus text format, as `name` with `labels`
    /// (`key="value",…`, without braces; may be empty).
    pub fn write_prometheus(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[derive(Debug, Default)]
struct OpStats {
    calls: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    latency: Histogram,
}

/// Counters of one provider's driver calls: calls, errors by kind and latency, per
/// operation.
#[derive(Debug)]
pub struct DriverMetrics {
    provider: String,
    ops: [OpStats; Operation::ALL.len()],
}

impl DriverMetrics {
    /// Empty counters for `provider`.
    pub fn new(provider: impl Into<String>) -> Self {
        DriverMetrics {
            provider: provider.into(),
            ops: std::array::from_fn(|_| OpStats::default()),
        }
    }

    /// The provider the counters are for.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: Operation) -> u64 {
        self.ops[op.index()].calls.load(Ordering::Relaxed)
    }

    /// Errors of `kind` answered to `op` so far.
    pub fn errors(&self, op: Operation, kind: ErrorKind) -> u64 {
        let k = ErrorKind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
        self.ops[op.index()].errors[k].load(Ordering::Relaxed)
    }

    fn record(&self, op: Operation, elapsed: Duration, error: Option<ErrorKind>) {
        let s = &self.ops[op.index()];
        s.calls.fetch_add(1, Ordering::Relaxed);
        s.latency.observe(elapsed);
        if let Some(kind) = error {
            if let Some(k) = ErrorKind::ALL.iter().position(|x| *x == kind) {
                s.errors[k].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes the samples (no `# HELP`/`# TYPE` lines: see
    /// [`write_prometheus_header`](Self::write_prometheus_header)) of
    /// `cms_driver_calls_total`, `cms_driver_errors_total` and
    /// `cms_driver_call_duration_seconds`, for operations called at least once.
    pub fn write_prometheus(&self, out: &mut String) {
        let provider = escape_label(&self.provider);
        for op in Operation::ALL {
            let s = &self.ops[op.index()];
            let calls = s.calls.load(Ordering::Relaxed);
            if calls == 0 {
                continue;
            }
            let labels = format!("provider=\"{provider}\",operation=\"{}\"", op.as_str());
            let _ = writeln!(out, "cms_driver_calls_total{{{labels}}} {calls}");
            for (k, kind) in ErrorKind::ALL.iter().enumerate() {
                let n = s.errors[k].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "cms_driver_errors_total{{{labels},kind=\"{}\"}} {n}",
                        kind.as_str()
                    );
                }
            }
            s.latency
                .write_prometheus(out, "cms_driver_call_duration_seconds", &labels);
        }
    }

    /// The `# HELP` and `# TYPE` lines of the driver metrics, written once before the
    /// samples of every provider.
    pub fn write_prometheus_header(out: &mut String) {
        out.push_str(
            "# HELP cms_driver_calls_total Driver calls by provider and operation.\n\
             # TYPE cms_driver_calls_total counter\n\
             # HELP cms_driver_errors_total Driver calls that failed, by provider, operation and error kind.\n\
             # TYPE cms_driver_errors_total counter\n\
             # HELP cms_driver_call_duration_seconds Driver call latency.\n\
             # TYPE cms_driver_call_duration_seconds histogram\n",
        );
    }
}

/// Escapes a Prometheus label value.
pub(crate) fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts calls, errors and latency per operation, and wraps each call in a tracing span
/// (`driver_call` with provider and operation); failures are logged at `debug`,
/// their messages carrying no credentials.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<DriverMetrics>,
}

impl MetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<DriverMetrics>) -> Self {
        MetricsLayer { metrics }
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<DriverMetrics> {
        &self.metrics
    }
}

impl Interceptor for MetricsLayer {
    fn intercept<'a, T, F>(&'a self, call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        let span = tracing::debug_span!(
            "driver_call",
            provider = %self.metrics.provider,
            operation = call.op.as_str()
        );
        async move {
            let started = Instant::now();
            let result = run().await;
            let elapsed = started.elapsed();
            let kind = result.as_ref().err().map(|e| e.kind());
            self.metrics.record(call.op, elapsed, kind);
            if let Err(e) = &result {
                tracing::debug!(error = %e, kind = e.kind().as_str(), "driver call failed");
            }
            result
        }
        .instrument(span)
        .boxed()
    }
}
