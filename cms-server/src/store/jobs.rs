//! Durable jobs in `cms_jobs`: work the server carries out in the background and
//! repeats until it is done (see [`crate::jobs`]).
//!
//! - A job is `queued` until a replica takes it ([`Store::take_jobs`]): due (its next
//!   attempt time has come), and not leased by a live replica. Taking it counts an
//!   attempt, marks it `running` and leases it to the replica; on PostgreSQL the
//!   candidates are locked with `FOR UPDATE SKIP LOCKED`, so replicas taking jobs at
//!   once take different ones; on SQLite the write transaction is the lock.
//! - The replica renews the leases of what it runs ([`Store::renew_jobs`]); a job
//!   whose lease ran out belongs to a replica that died, and is due again for anyone.
//! - An attempt ends in one of: done (`succeeded`, with a result), failed, canceled,
//!   or again later (`queued` with a next attempt time and the attempt's error). Each
//!   end is written only by the lease's holder ([`Store::end_job`]), so a replica that
//!   lost its lease (it stalled past it) cannot overwrite its successor's work.
//! - A job may carry a deduplication key: at most one job with a key is active
//!   (`queued` or `running`) at a time; adding another answers the active one.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{err, now_ms, random_id, Dialect, Store, StoreError};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum JobState {
    /// Waiting for its (next) attempt.
    Queued,
    /// An attempt is under way.
    Running,
    /// Done.
    Succeeded,
    /// Ended with an error that repeating would not cure, or past its deadline.
    Failed,
    /// Canceled by its tenant.
    Canceled,
}

impl JobState {
    /// The name stored (and shown).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "canceled" => JobState::Canceled,
            _ => JobState::Failed,
        }
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Canceled
        )
    }
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    /// `job-` and 17 hex digits.
    pub id: String,
    /// What it does (`deployment.apply`, `instance.expire`, …).
    pub kind: String,
    /// Whose it is.
    pub tenant: String,
    /// What it works on (a deployment's or an instance's id).
    pub target: String,
    pub state: JobState,
    /// Its arguments (JSON).
    pub input: String,
    /// What it made, once done (JSON).
    pub result: Option<String>,
    /// Attempts begun so far.
    pub attempts: u32,
    /// When it is due (ms since the epoch).
    pub next_attempt_at: i64,
    /// After this (ms since the epoch) it is not tried again.
    pub deadline: Option<i64>,
    /// The last attempt's error: its kind and message.
    pub error: Option<(String, String)>,
    /// 0 to 100.
    pub progress: u32,
    /// What it is doing now.
    pub message: Option<String>,
    /// Whether its tenant asked it to stop.
    pub cancel_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Which replica holds it, while it runs.
    pub lease_owner: Option<String>,
    /// Grows with every change: a reader sees whether anything changed.
    pub version: i64,
}

/// Whether an attempt may carry on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Yes: this replica holds the job.
    Yes,
    /// Its tenant asked it to stop.
    Canceled,
    /// Another replica holds it now (this one stalled past its lease).
    Lost,
}

/// A job to add.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: &'static str,
    pub tenant: String,
    pub target: String,
    pub input: String,
    /// Not before this (ms since the epoch); now when `None`.
    pub not_before: Option<i64>,
    pub deadline: Option<i64>,
    /// At most one active job with this key.
    pub dedupe: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum JobEnd {
    Succeeded {
        result: String,
    },
    Failed {
        kind: String,
        message: String,
    },
    Canceled,
    /// Due again at `at`, after this error.
    Retry {
        at: i64,
        kind: String,
        message: String,
    },
}

const COLUMNS: &str = "id, kind, tenant, target, state, input, result, attempts, next_attempt_at,
    deadline, error_kind, error_message, progress, message, cancel_requested, created_at,
    updated_at, lease_owner, version";

fn row_to_job(row: &sqlx::any::AnyRow) -> Result<JobRow, sqlx::Error> {
    let kind: Option<String> = row.try_get("error_kind")?;
    let message: Option<String> = row.try_get("error_message")?;
    Ok(JobRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        tenant: row.try_get("tenant")?,
        target: row.try_get("target")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?),
        input: row.try_get("input")?,
        result: row.try_get("result")?,
        attempts: row.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        deadline: row.try_get("deadline")?,
        error: kind.zip(message),
        progress: row.try_get::<i64, _>("progress")?.clamp(0, 100) as u32,
        message: row.try_get("message")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        lease_owner: row.try_get("lease_owner")?,
        version: row.try_get("version")?,
    })
}

/// The job of an optional row.
fn maybe_job(row: Option<sqlx::any::AnyRow>) -> Result<Option<JobRow>, StoreError> {
    row.as_ref()
        .map(row_to_job)
        .transpose()
        .map_err(err("cannot read a job"))
}

/// A page of a tenant's jobs, newest first.
#[derive(Clone, Debug)]
pub struct JobPage {
    pub jobs: Vec<JobRow>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

impl Store {
    /// Adds a job; with a deduplication key that an active job holds, adds nothing.
    /// Answers the job (the new one, or the active one with the key) and whether it
    /// is new.
    pub async fn add_job(&self, job: &NewJob) -> Result<(JobRow, bool), StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(err("cannot connect to add a job"))?;
        add_job_on(&mut conn, job).await
    }

    /// The job `id` of `tenant` (any tenant's when `None`).
    pub async fn job(&self, id: &str, tenant: Option<&str>) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM cms_jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(err("cannot read a job"))?;
        let job = maybe_job(row)?;
        Ok(job.filter(|j| tenant.is_none_or(|t| j.tenant == t)))
    }

    /// The active job with deduplication key `dedupe`.
    pub async fn active_job(&self, dedupe: &str) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cms_jobs WHERE dedupe = $1 AND state IN ('queued', 'running')"
        ))
        .bind(dedupe)
        .fetch_optional(self.pool())
        .await
        .map_err(err("cannot read a job"))?;
        maybe_job(row)
    }

    /// The newest job of one of `kinds` on `target`.
    pub async fn latest_job(
        &self,
        target: &str,
        kinds: &[&str],
    ) -> Result<Option<JobRow>, StoreError> {
        Ok(self.latest_jobs(&[target], kinds).await?.remove(target))
    }

    /// The newest job of one of `kinds` on each of `targets` that has one.
    pub async fn latest_jobs(
        &self,
        targets: &[&str],
        kinds: &[&str],
    ) -> Result<HashMap<String, JobRow>, StoreError> {
        let mut out: HashMap<String, JobRow> = HashMap::new();
        for chunk in targets.chunks(super::BATCH) {
            let sql = format!(
                "SELECT {COLUMNS} FROM cms_jobs WHERE target IN ({}) AND kind IN ({})
                 ORDER BY created_at, id",
                super::placeholders(1, chunk.len()),
                super::placeholders(1 + chunk.len(), kinds.len())
            );
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q.bind(*t);
            }
            for k in kinds {
                q = q.bind(*k);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(err("cannot read jobs"))?;
            // Oldest first: the newest of each target is the one left.
            for row in &rows {
                let j = row_to_job(row).map_err(err("cannot read jobs"))?;
                out.insert(j.target.clone(), j);
            }
        }
        Ok(out)
    }

    /// A page of `tenant`'s jobs, newest first, at most `limit`, after the job
    /// `after` (a previous page's `next`); only those of `target` when given.
    pub async fn list_jobs(
        &self,
        tenant: &str,
        target: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<JobPage, StoreError> {
        let limit = limit.clamp(1, 1000) as i64;
        let mut sql = format!("SELECT {COLUMNS} FROM cms_jobs WHERE tenant = $1");
        let mut n = 1;
        if target.is_some() {
            n += 1;
            sql.push_str(&format!(" AND target = ${n}"));
        }
        if after.is_some() {
            // Newest first: (created_at, id) below the cursor's.
            sql.push_str(&format!(
                " AND (created_at < (SELECT created_at FROM cms_jobs WHERE id = ${a})
                   OR (created_at = (SELECT created_at FROM cms_jobs WHERE id = ${a}) AND id < ${a}))",
                a = n + 1
            ));
            n += 1;
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut q = sqlx::query(&sql).bind(tenant);
        if let Some(t) = target {
            q = q.bind(t);
        }
        if let Some(a) = after {
            q = q.bind(a);
        }
        let rows = q
            .bind(limit + 1)
            .fetch_all(self.pool())
            .await
            .map_err(err("cannot list jobs"))?;
        let mut jobs = rows
            .iter()
            .map(row_to_job)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("cannot list jobs"))?;
        let next = if jobs.len() as i64 > limit {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| j.id.clone())
        } else {
            None
        };
        Ok(JobPage { jobs, next })
    }

    /// Takes up to `n` due jobs for `replica`, leased until `lease_ms` from now; each
    /// counts an attempt.
    pub async fn take_jobs(
        &self,
        replica: &str,
        n: usize,
        lease_ms: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self
            .begin_tx(self.dialect().begin_write(), "take jobs")
            .await?;
        let r = self.take_on(&mut conn, replica, n, lease_ms).await;
        let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = conn.end(end).await;
        let r = r?;
        ended.map_err(err("cannot commit taken jobs"))?;
        Ok(r)
    }

    async fn take_on(
        &self,
        conn: &mut AnyConnection,
        replica: &str,
        n: usize,
        lease_ms: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let now = now_ms();
        let lock = match self.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "SELECT id FROM cms_jobs
             WHERE state IN ('queued', 'running') AND next_attempt_at <= $1 AND lease_until < $1
             ORDER BY next_attempt_at LIMIT $2{lock}"
        ))
        .bind(now)
        .bind(n as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(err("cannot find due jobs"))?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id").map_err(err("cannot find due jobs"))?;
            sqlx::query(
                "UPDATE cms_jobs SET state = 'running', attempts = attempts + 1,
                    lease_owner = $2, lease_until = $3, updated_at = $4, version = version + 1
                 WHERE id = $1",
            )
            .bind(&id)
            .bind(replica)
            .bind(now + lease_ms)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(err("cannot take a job"))?;
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM cms_jobs WHERE id = $1"))
                .bind(&id)
                .fetch_one(&mut *conn)
                .await
                .map_err(err("cannot read a job"))?;
            taken.push(row_to_job(&row).map_err(err("cannot read a job"))?);
        }
        Ok(taken)
    }

    /// Renews `replica`'s leases on `ids`; answers those it still holds.
    pub async fn renew_jobs(
        &self,
        replica: &str,
        ids: &[String],
        lease_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut held = Vec::with_capacity(ids.len());
        let until = now_ms() + lease_ms;
        for id in ids {
            let r = sqlx::query(
                "UPDATE cms_jobs SET lease_until = $3
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(replica)
            .bind(until)
            .execute(self.pool())
            .await
            .map_err(err("cannot renew a job's lease"))?;
            if r.rows_affected() > 0 {
                held.push(id.clone());
            }
        }
        Ok(held)
    }

    /// Gives up `replica`'s leases (at shutdown): its running jobs are due again at
    /// once, for any replica.
    pub async fn release_jobs(&self, replica: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE cms_jobs SET state = 'queued', lease_owner = NULL, lease_until = 0,
                updated_at = $2, version = version + 1
             WHERE lease_owner = $1 AND state = 'running'",
        )
        .bind(replica)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(err("cannot release jobs"))?;
        Ok(r.rows_affected())
    }

    /// Records an attempt's progress (0 to 100) and what it is doing (written only
    /// when it changed), if `replica` still holds the job and nobody asked it to stop.
    pub async fn job_progress(
        &self,
        id: &str,
        replica: &str,
        progress: u32,
        message: &str,
    ) -> Result<Held, StoreError> {
        let r = sqlx::query(
            "UPDATE cms_jobs SET progress = $3, message = $4, updated_at = $5, version = version + 1
             WHERE id = $1 AND lease_owner = $2 AND state = 'running' AND cancel_requested = 0
               AND (progress <> $3 OR message IS NULL OR message <> $4)",
        )
        .bind(id)
        .bind(replica)
        .bind(i64::from(progress.min(100)))
        .bind(message)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(err("cannot record a job's progress"))?;
        if r.rows_affected() > 0 {
            return Ok(Held::Yes);
        }
        // Nothing changed, or the job is no longer this attempt's to carry on.
        let row =
            sqlx::query("SELECT cancel_requested, lease_owner, state FROM cms_jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(err("cannot read a job"))?;
        let Some(row) = row else {
            return Ok(Held::Canceled);
        };
        let canceled = row.try_get::<i64, _>(0).map_err(err("cannot read a job"))? != 0;
        let owner: Option<String> = row.try_get(1).map_err(err("cannot read a job"))?;
        let state: String = row.try_get(2).map_err(err("cannot read a job"))?;
        Ok(if canceled {
            Held::Canceled
        } else if owner.as_deref() != Some(replica) || state != "running" {
            Held::Lost
        } else {
            Held::Yes
        })
    }

    /// Whether the job's tenant asked it to stop.
    pub async fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT cancel_requested FROM cms_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(err("cannot read a job"))?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>(0).map_err(err("cannot read a job"))? != 0,
            None => true,
        })
    }

    /// Ends `replica`'s attempt at job `id`; answers false (writing nothing) when the
    /// replica no longer holds it.
    pub async fn end_job(&self, id: &str, replica: &str, end: &JobEnd) -> Result<bool, StoreError> {
        let now = now_ms();
        let (state, result, kind, message, at, progress) = match end {
            JobEnd::Succeeded { result } => {
                ("succeeded", Some(result.as_str()), None, None, now, 100)
            }
            JobEnd::Failed { kind, message } => (
                "failed",
                None,
                Some(kind.as_str()),
                Some(message.as_str()),
                now,
                -1,
            ),
            JobEnd::Canceled => ("canceled", None, None, None, now, -1),
            JobEnd::Retry { at, kind, message } => (
                "queued",
                None,
                Some(kind.as_str()),
                Some(message.as_str()),
                *at,
                -1,
            ),
        };
        let r = sqlx::query(
            "UPDATE cms_jobs SET state = $3,
                result = COALESCE($4, result),
                error_kind = COALESCE($5, error_kind),
                error_message = COALESCE($6, error_message),
                next_attempt_at = $7,
                progress = CASE WHEN $8 < 0 THEN progress ELSE $8 END,
                lease_owner = NULL, lease_until = 0, updated_at = $9, version = version + 1
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(replica)
        .bind(state)
        .bind(result)
        .bind(kind)
        .bind(message)
        .bind(at)
        .bind(progress)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err("cannot end a job"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Asks `tenant`'s job `id` to stop: a queued one is canceled at once, a running
    /// one at its next step. Answers the job after the request, or `None` when there
    /// is no such job.
    pub async fn cancel_job(&self, id: &str, tenant: &str) -> Result<Option<JobRow>, StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE cms_jobs SET state = 'canceled', cancel_requested = 1, updated_at = $3,
                version = version + 1
             WHERE id = $1 AND tenant = $2 AND state = 'queued'
               AND (lease_owner IS NULL OR lease_until < $3)",
        )
        .bind(id)
        .bind(tenant)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err("cannot cancel a job"))?;
        sqlx::query(
            "UPDATE cms_jobs SET cancel_requested = 1, updated_at = $3, version = version + 1
             WHERE id = $1 AND tenant = $2 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .bind(tenant)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err("cannot cancel a job"))?;
        self.job(id, Some(tenant)).await
    }

    /// Moves the active job with key `dedupe` to be due at `at` (a queued one only);
    /// answers whether there was one.
    pub async fn reschedule_job(&self, dedupe: &str, at: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE cms_jobs SET next_attempt_at = $2, updated_at = $3, version = version + 1
             WHERE dedupe = $1 AND state = 'queued'",
        )
        .bind(dedupe)
        .bind(at)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(err("cannot reschedule a job"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Cancels the queued job with key `dedupe` (a scheduled one no longer wanted).
    pub async fn drop_scheduled_job(&self, dedupe: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE cms_jobs SET state = 'canceled', cancel_requested = 1, updated_at = $2,
                version = version + 1
             WHERE dedupe = $1 AND state = 'queued'",
        )
        .bind(dedupe)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(err("cannot cancel a scheduled job"))?;
        Ok(r.rows_affected() > 0)
    }
}

/// Adds a job on `conn` (inside a caller's transaction, or alone).
pub(crate) async fn add_job_on(
    conn: &mut AnyConnection,
    job: &NewJob,
) -> Result<(JobRow, bool), StoreError> {
    let now = now_ms();
    let id = random_id("job-");
    let r = sqlx::query(
        "INSERT INTO cms_jobs
           (id, kind, tenant, target, state, input, attempts, next_attempt_at, deadline,
            progress, cancel_requested, dedupe, lease_until, created_at, updated_at, version)
         VALUES ($1, $2, $3, $4, 'queued', $5, 0, $6, $7, 0, 0, $8, 0, $9, $9, 0)
         ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(job.kind)
    .bind(&job.tenant)
    .bind(&job.target)
    .bind(&job.input)
    .bind(job.not_before.unwrap_or(now))
    .bind(job.deadline)
    .bind(job.dedupe.as_deref())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(err("cannot add a job"))?;
    let (sql, key) = if r.rows_affected() > 0 {
        (format!("SELECT {COLUMNS} FROM cms_jobs WHERE id = $1"), id)
    } else {
        let Some(d) = &job.dedupe else {
            return Err(StoreError::plain("a job could not be added"));
        };
        (
            format!(
                "SELECT {COLUMNS} FROM cms_jobs WHERE dedupe = $1 AND state IN ('queued', 'running')"
            ),
            d.clone(),
        )
    };
    let row = sqlx::query(&sql)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(err("cannot read a job"))?;
    match row {
        Some(row) => Ok((
            row_to_job(&row).map_err(err("cannot read a job"))?,
            r.rows_affected() > 0,
        )),
        // The active job ended between the insert and the read: try again.
        None => Box::pin(add_job_on(conn, job)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    fn new_job(dedupe: Option<&str>) -> NewJob {
        NewJob {
            kind: "test",
            tenant: "t1".into(),
            target: "x".into(),
            input: "{}".into(),
            not_before: None,
            deadline: None,
            dedupe: dedupe.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn jobs_are_taken_once_leased_and_taken_over() {
        for db in testing::all("jobs").await {
            let store = Store::open(&db.url).await.unwrap();
            let (a, new) = store.add_job(&new_job(Some("k"))).await.unwrap();
            assert!(new);
            let (same, new) = store.add_job(&new_job(Some("k"))).await.unwrap();
            assert_eq!((same.id.as_str(), new), (a.id.as_str(), false));
            let (b, _) = store.add_job(&new_job(None)).await.unwrap();

            // Two replicas at once take different jobs.
            let (x, y) = tokio::join!(
                store.take_jobs("r1", 1, 60_000),
                store.take_jobs("r2", 5, 60_000)
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!(x.len() + y.len(), 2, "{x:?} {y:?}");
            let mut ids: Vec<_> = x.iter().chain(&y).map(|j| j.id.clone()).collect();
            ids.sort();
            let mut want = vec![a.id.clone(), b.id.clone()];
            want.sort();
            assert_eq!(ids, want);
            assert!(store.take_jobs("r3", 5, 60_000).await.unwrap().is_empty());
            // Which replica got which is the race's: r2 may have taken both.
            let taken: Vec<(&str, &JobRow)> = x
                .iter()
                .map(|j| ("r1", j))
                .chain(y.iter().map(|j| ("r2", j)))
                .collect();
            let ((holder, held), (other_holder, other)) = (taken[0], taken[1]);

            // The holder dies: its lease runs out and r3 takes its job over.
            assert!(store
                .renew_jobs(holder, std::slice::from_ref(&held.id), -1)
                .await
                .unwrap()
                .contains(&held.id));
            let over = store.take_jobs("r3", 5, 60_000).await.unwrap();
            assert_eq!(over.len(), 1);
            assert_eq!(
                (over[0].id.as_str(), over[0].attempts),
                (held.id.as_str(), 2)
            );
            // The old holder cannot end what it no longer holds.
            let done = JobEnd::Succeeded { result: "1".into() };
            assert!(!store.end_job(&held.id, holder, &done).await.unwrap());
            assert!(store.end_job(&held.id, "r3", &done).await.unwrap());
            let j = store.job(&held.id, Some("t1")).await.unwrap().unwrap();
            assert_eq!((j.state, j.progress), (JobState::Succeeded, 100));
            assert!(store.job(&held.id, Some("t2")).await.unwrap().is_none());

            // A retry is due later, with its error kept.
            let later = JobEnd::Retry {
                at: now_ms() + 60_000,
                kind: "unavailable".into(),
                message: "busy".into(),
            };
            assert!(store
                .end_job(&other.id, other_holder, &later)
                .await
                .unwrap());
            assert!(store.take_jobs("r2", 5, 60_000).await.unwrap().is_empty());
            let j = store.job(&other.id, None).await.unwrap().unwrap();
            assert_eq!(j.state, JobState::Queued);
            assert_eq!(j.error, Some(("unavailable".into(), "busy".into())));
            // Canceled while queued: at once.
            let c = store.cancel_job(&other.id, "t1").await.unwrap().unwrap();
            assert_eq!(c.state, JobState::Canceled);

            // Released at shutdown: due again at once.
            let (d, _) = store.add_job(&new_job(Some("k2"))).await.unwrap();
            assert_eq!(store.take_jobs("r4", 5, 60_000).await.unwrap().len(), 1);
            assert_eq!(store.release_jobs("r4").await.unwrap(), 1);
            let again = store.take_jobs("r5", 5, 60_000).await.unwrap();
            assert_eq!(again[0].id, d.id);

            let page = store.list_jobs("t1", None, None, 2).await.unwrap();
            assert_eq!(page.jobs.len(), 2);
            let rest = store
                .list_jobs("t1", None, page.next.as_deref(), 2)
                .await
                .unwrap();
            assert_eq!(rest.jobs.len(), 1);
            assert!(rest.next.is_none());
        }
    }
}
