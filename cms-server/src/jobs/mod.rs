//! Durable jobs: work the server carries out in the background, kept in the store
//! ([`crate::store::jobs`]) so that it survives restarts and is shared by replicas.
//!
//! Every replica runs [`run`]: it takes due jobs (at most `jobs.workers` at once),
//! renews their leases while they run, and at shutdown stops them and gives their
//! leases up, so another replica (or the restarted server) takes them at once. A
//! replica that dies (SIGKILL) stops renewing: its jobs are taken over when their
//! leases run out.
//!
//! A job's body may run more than once (at-least-once): every step it repeats is
//! idempotent by construction. Instances are created with client tokens derived from
//! the job's target and the step (a deployment and an instance's index), and their
//! places are written down before they are asked for, so a repeated step finds the
//! instance its first run made.
//!
//! An attempt that ends in a temporary error (`unavailable`, `timeout`,
//! `rate_limited` with its retry-after) is repeated after an exponential backoff with
//! jitter (`jobs.backoff_ms`, doubling up to `jobs.backoff_max_ms`), until it succeeds
//! or its deadline passes; any other error fails the job with the backend's message.
//! A canceled job stops at its next step.
//!
//! The kinds of jobs: [`deployments`] (apply, delete, expire, and the health checks
//! that start them) and [`instances`] (an instance operation followed to its end,
//! an instance's expiry).

pub mod deployments;
pub mod instances;
pub mod requests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cms_core::{Error, ErrorKind};
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::Notify;

use crate::app::App;
use crate::auth::Tenant;
use crate::config::JobsConfig;
use crate::store::{now_ms, Held, JobEnd, StoreError};

/// What frontends show of jobs and deployments (they never touch the store).
pub use crate::store::{DeploymentRow, HistoryEntry, JobRow, JobState, MemberRow, NewJob};

/// A replica's job runner: its settings and what it runs now.
#[derive(Debug)]
pub struct Jobs {
    pub(crate) config: JobsConfig,
    wake: Notify,
    /// Since when a deployment's partition answers `unavailable` (ms since the epoch),
    /// by deployment and partition: past `burst_after_ms`, creates go elsewhere.
    pub(crate) unavailable: Mutex<HashMap<(String, u32), i64>>,
}

impl Jobs {
    /// A runner with `config`.
    pub fn new(config: JobsConfig) -> Jobs {
        Jobs {
            config,
            wake: Notify::new(),
            unavailable: Mutex::default(),
        }
    }

    /// Tells this replica's runner a job was added (it looks at once rather than at
    /// its next poll).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn lease_ms(&self) -> i64 {
        self.config.lease_ms as i64
    }

    /// The pause before attempt `attempts + 1`: `backoff_ms` doubled per attempt,
    /// at most `backoff_max_ms`, with ±25% jitter; at least `retry_after`.
    pub fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.config.backoff_ms as f64;
        let exp = base * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let capped = exp.min(self.config.backoff_max_ms as f64);
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        let d = Duration::from_millis((capped * jitter) as u64);
        retry_after.map_or(d, |r| d.max(r))
    }
}

/// Why a job's attempt stopped short.
#[derive(Debug)]
pub enum Stop {
    /// Its tenant canceled it.
    Canceled,
    /// An error: temporary ones are tried again, others fail the job.
    Error(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Error(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Error(e.into())
    }
}

/// What a job's body has: the server, the job, its tenant.
pub struct JobCx<'a> {
    pub app: &'a App,
    pub job: &'a JobRow,
    pub tenant: &'a Tenant,
}

impl JobCx<'_> {
    /// Records progress (0 to 100) and what the job is doing; stops the job when it
    /// was canceled or its lease lost.
    pub async fn progress(&self, progress: u32, message: &str) -> Result<(), Stop> {
        let held = self
            .app
            .service
            .store()
            .job_progress(&self.job.id, self.app.service.replica(), progress, message)
            .await?;
        match held {
            Held::Yes => Ok(()),
            Held::Canceled => Err(Stop::Canceled),
            // Another replica holds it now: this attempt stops quietly.
            Held::Lost => Err(Stop::Error(
                Error::new(ErrorKind::Unavailable, "the job's lease was lost").temporary(true),
            )),
        }
    }

    /// Stops when the job was canceled.
    pub async fn check_cancel(&self) -> Result<(), Stop> {
        if self
            .app
            .service
            .store()
            .cancel_requested(&self.job.id)
            .await?
        {
            return Err(Stop::Canceled);
        }
        Ok(())
    }

    /// Waits `d`, stopping early when the job is canceled.
    pub async fn sleep(&self, d: Duration) -> Result<(), Stop> {
        tokio::time::sleep(d).await;
        self.check_cancel().await
    }
}

/// Adds a job and wakes this replica's runner.
pub async fn enqueue(app: &App, job: &NewJob) -> Result<(JobRow, bool), Error> {
    let r = app.service.store().add_job(job).await?;
    app.jobs.wake();
    Ok(r)
}

/// A job's result as stored: JSON text.
pub(crate) fn result_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

async fn execute(app: &App, job: &JobRow) -> Result<String, Stop> {
    let Some(tenant) = app.tenants.iter().find(|t| *t.name == *job.tenant) else {
        return Err(Stop::Error(
            Error::new(
                ErrorKind::PermissionDenied,
                format!("tenant `{}` is no longer configured", job.tenant),
            )
            .temporary(false),
        ));
    };
    let cx = JobCx { app, job, tenant };
    cx.check_cancel().await?;
    match job.kind.as_str() {
        deployments::APPLY => deployments::apply(&cx).boxed().await,
        deployments::DELETE => deployments::delete(&cx).boxed().await,
        deployments::EXPIRE => deployments::expire(&cx).boxed().await,
        instances::EXPIRE => instances::expire(&cx).boxed().await,
        k if k.starts_with(instances::PREFIX) => instances::operate(&cx).boxed().await,
        other => Err(Stop::Error(
            Error::new(
                ErrorKind::Unsupported,
                format!("this server does not know jobs of kind `{other}`"),
            )
            .temporary(false),
        )),
    }
}

/// Whether an error is one a later attempt may cure.
fn retryable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::RateLimited
    ) || (e.is_temporary() && e.kind() != ErrorKind::QuotaExceeded)
}

/// Runs one attempt of `job` and writes how it ended.
async fn attempt(app: &App, job: JobRow) {
    let started = std::time::Instant::now();
    let outcome = execute(app, &job).await;
    let replica = app.service.replica();
    let end = match outcome {
        Ok(result) => JobEnd::Succeeded { result },
        Err(Stop::Canceled) => JobEnd::Canceled,
        Err(Stop::Error(e)) => {
            let at = now_ms() + crate::store::ms(app.jobs.backoff(job.attempts, e.retry_after()));
            let past_deadline = job.deadline.is_some_and(|d| at > d);
            if retryable(&e) && !past_deadline {
                tracing::info!(job = %job.id, kind = %job.kind, attempt = job.attempts,
                    error = %e, "job attempt failed; trying again later");
                JobEnd::Retry {
                    at,
                    kind: e.kind().as_str().into(),
                    message: e.to_string(),
                }
            } else {
                let message = if retryable(&e) {
                    format!("{e} (the job's deadline passed)")
                } else {
                    e.to_string()
                };
                tracing::warn!(job = %job.id, kind = %job.kind, error = %message, "job failed");
                JobEnd::Failed {
                    kind: e.kind().as_str().into(),
                    message,
                }
            }
        }
    };
    let ended = app.service.store().end_job(&job.id, replica, &end).await;
    let applied = match &end {
        JobEnd::Succeeded { result } if job.kind == deployments::APPLY => Some(result.clone()),
        _ => None,
    };
    match ended {
        Ok(true) => {
            tracing::debug!(job = %job.id, kind = %job.kind, ms = started.elapsed().as_millis() as u64,
                end = ?std::mem::discriminant(&end), "job attempt ended");
            if let Some(result) = applied {
                deployments::after_apply(app, &job, &result).await;
            }
        }
        Ok(false) => {
            tracing::info!(job = %job.id, "a job's lease was taken over before its attempt ended")
        }
        Err(e) => tracing::warn!(job = %job.id, error = %e, "could not record how a job ended"),
    }
}

/// Runs this replica's jobs until `stop` resolves: takes due jobs, renews their
/// leases, checks deployments (in a task of its own); at `stop`, stops what runs and
/// gives the leases up.
pub async fn run(app: Arc<App>, stop: impl Future<Output = ()>) {
    let cfg = app.jobs.config;
    let replica = app.service.replica().to_owned();
    let lease = app.jobs.lease_ms();
    let renew_every = Duration::from_millis((cfg.lease_ms / 3).max(50));
    let check_every = Duration::from_millis(cfg.check_interval_ms);
    let mut running: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut last_renew = tokio::time::Instant::now();
    // Deployments are checked in a task of their own: a slow provider holds up the
    // checks, never the taking of jobs.
    let checks = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(check_every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                deployments::check_due(&app).await;
            }
        })
    };
    tokio::pin!(stop);
    loop {
        while running.try_join_next().is_some() {}
        let free = cfg.workers.saturating_sub(running.len());
        if free > 0 {
            match app.service.store().take_jobs(&replica, free, lease).await {
                Ok(jobs) => {
                    for job in jobs {
                        let app = app.clone();
                        let ids = ids.clone();
                        ids.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(job.id.clone());
                        running.spawn(async move {
                            let id = job.id.clone();
                            attempt(&app, job).await;
                            ids.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .retain(|j| *j != id);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not take due jobs"),
            }
        }
        if last_renew.elapsed() >= renew_every {
            last_renew = tokio::time::Instant::now();
            let held: Vec<String> = ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if !held.is_empty() {
                if let Err(e) = app.service.store().renew_jobs(&replica, &held, lease).await {
                    tracing::warn!(error = %e, "could not renew the leases of running jobs");
                }
            }
        }
        let poll = Duration::from_millis(cfg.poll_ms).min(renew_every);
        tokio::select! {
            _ = &mut stop => break,
            _ = app.jobs.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    checks.abort();
    let n = running.len();
    running.shutdown().await;
    match app.service.store().release_jobs(&replica).await {
        Ok(released) if n > 0 || released > 0 => {
            tracing::info!(stopped = n, released, "jobs given up at shutdown")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not give up the leases of running jobs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_ceiling() {
        let jobs = Jobs::new(JobsConfig {
            backoff_ms: 100,
            backoff_max_ms: 1000,
            ..JobsConfig::default()
        });
        for _ in 0..50 {
            let first = jobs.backoff(1, None).as_millis();
            assert!((75..=125).contains(&first), "{first}");
            let third = jobs.backoff(3, None).as_millis();
            assert!((300..=500).contains(&third), "{third}");
            let late = jobs.backoff(40, None).as_millis();
            assert!((750..=1250).contains(&late), "{late}");
        }
        let told = jobs.backoff(1, Some(Duration::from_secs(5)));
        assert_eq!(told, Duration::from_secs(5));
        assert!(retryable(&Error::new(ErrorKind::Unavailable, "x")));
        assert!(!retryable(&Error::new(ErrorKind::InvalidArgument, "x")));
        assert!(!retryable(
            &Error::new(ErrorKind::QuotaExceeded, "x").temporary(true)
        ));
    }
}
