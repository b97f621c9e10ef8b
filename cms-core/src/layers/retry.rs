use std::borrow::Cow;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::Rng;
use tokio::time::Instant;

use super::{Call, Interceptor};
use crate::model::{InstanceSpec, VolumeSpec};
use crate::{Capabilities, Error, Result};

/// How the retry layer retries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The pause before the second try; it doubles (times `multiplier`) after each.
    pub initial_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
    /// How fast the pause grows.
    pub multiplier: f64,
    /// No new try starts after this much time since the first one.
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 5 tries, 50 ms doubling to at most 5 s, within 60 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(60)),
        }
    }
}

impl RetryPolicy {
    /// The pause before try number `attempt + 1` (`attempt` starts at 1): "full jitter",
    /// a random time between zero and the exponential backoff.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.powi(attempt.saturating_sub(1) as i32);
        let cap = self
            .initial_backoff
            .mul_f64(exp.min(1e6))
            .min(self.max_backoff);
        cap.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }
}

/// Retries temporary errors with exponential backoff and jitter, within a deadline.
///
/// - Only errors marked [temporary](Error::is_temporary) are retried.
/// - A `RateLimited` error's retry-after is honoured: the pause is at least that long.
/// - A call that is not idempotent (a create without client token) is retried only
///   after an error that says the request was not carried out
///   ([`Error::is_not_executed`]: a rate limit, a refused connection): a create whose
///   answer was lost may have happened, and repeating it would make a second instance. To make creates safe to retry, the layer gives every instance
///   create a client token when the driver supports them and the caller set none, as
///   the AWS SDKs do.
/// - The last error is returned, with the number of tries in its context.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// Retries with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn may_retry(call: Call, e: &Error) -> bool {
        e.is_temporary() && (call.idempotent || e.is_not_executed())
    }
}

/// A random client token: 32 hex characters.
pub(crate) fn new_client_token() -> String {
    format!("cms-{:032x}", rand::thread_rng().gen::<u128>())
}

impl Interceptor for RetryLayer {
    fn intercept<'a, T, F>(&'a self, call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        async move {
            let p = &self.policy;
            let started = Instant::now();
            let mut attempt = 1;
            loop {
                let err = match run().await {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                };
                if attempt >= p.max_attempts.max(1) || !Self::may_retry(call, &err) {
                    return Err(finish(err, attempt));
                }
                let mut pause = p.backoff(attempt);
                if let Some(after) = err.retry_after() {
                    pause = pause.max(after);
                }
                if let Some(deadline) = p.deadline {
                    if started.elapsed() + pause >= deadline {
                        return Err(finish(err, attempt));
                    }
                }
                tracing::debug!(
                    op = call.op.as_str(),
                    attempt,
                    pause_ms = pause.as_millis() as u64,
                    error = %err,
                    "retrying"
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        }
        .boxed()
    }

    fn prepare_create<'s>(
        &self,
        spec: &'s InstanceSpec,
        caps: &Capabilities,
    ) -> Cow<'s, InstanceSpec> {
        if spec.client_token.is_none() && caps.instances.client_token {
            let mut spec = spec.clone();
            spec.client_token = Some(new_client_token());
            Cow::Owned(spec)
        } else {
            Cow::Borrowed(spec)
        }
    }

    fn prepare_volume_create<'s>(
        &self,
        spec: &'s VolumeSpec,
        caps: &Capabilities,
    ) -> Cow<'s, VolumeSpec> {
        if spec.client_token.is_none() && caps.volumes.client_token {
            let mut spec = spec.clone();
            spec.client_token = Some(new_client_token());
            Cow::Owned(spec)
        } else {
            Cow::Borrowed(spec)
        }
    }
}

fn finish(err: Error, attempts: u32) -> Error {
    if attempts > 1 {
        err.with_context("attempts", attempts.to_string())
    } else {
        err
    }
}
