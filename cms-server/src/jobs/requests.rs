//! What frontends ask of jobs and deployments, scoped to the calling tenant: they
//! never touch the store themselves. Another tenant's job or deployment is "not
//! found", exactly as one that does not exist.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cms_core::{Error, ErrorKind, InstanceState};

use super::deployments::{
    apply_job, delete_job, expire_job, expire_key, DeploymentSpec, APPLY, DELETE,
};
use crate::app::App;
use crate::auth::Tenant;
use crate::store::{
    now_ms, random_id, DeploymentRow, HistoryEntry, JobPage, JobRow, JobState, MemberRow,
};

/// How often a followed job is looked at.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How long a job is followed at most (a client reconnects for more).
const FOLLOW_LIMIT: Duration = Duration::from_secs(3600);

/// The tenant's job `id`.
pub async fn job(app: &App, tenant: &Tenant, id: &str) -> Result<JobRow, Error> {
    app.service
        .store()
        .job(id, Some(&tenant.name))
        .await?
        .ok_or_else(|| Error::not_found("job", id))
}

/// A page of the tenant's jobs, newest first (of `target` only, when given); `None`
/// when `after` names no job of the tenant (not a token a listing handed out).
pub async fn list_jobs(
    app: &App,
    tenant: &Tenant,
    target: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Option<JobPage>, Error> {
    let store = app.service.store();
    if let Some(t) = after {
        if store.job(t, Some(&tenant.name)).await?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(
        store.list_jobs(&tenant.name, target, after, limit).await?,
    ))
}

/// Asks the tenant's job `id` to stop (see [`crate::store::Store::cancel_job`]); an
/// ended job is `InvalidState`.
pub async fn cancel(app: &App, tenant: &Tenant, id: &str) -> Result<JobRow, Error> {
    let j = job(app, tenant, id).await?;
    if j.state.is_final() {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "job {} has ended ({}); there is nothing to cancel",
                j.id,
                j.state.as_str()
            ),
        ));
    }
    app.service
        .store()
        .cancel_job(&j.id, &tenant.name)
        .await?
        .ok_or_else(|| Error::not_found("job", id))
}

/// The job `first` now and after every change, until it ends, the receiver is
/// dropped, or an hour has passed.
pub fn follow(app: &App, first: JobRow) -> tokio::sync::mpsc::Receiver<JobRow> {
    let store = app.service.store().handle();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last = first.version;
        let done = first.state.is_final();
        if tx.send(first.clone()).await.is_err() || done {
            return;
        }
        while started.elapsed() < FOLLOW_LIMIT {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
            let job = match store.job(&first.id, Some(&first.tenant)).await {
                Ok(Some(j)) => j,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(job = %first.id, error = %e, "could not read a followed job");
                    continue;
                }
            };
            if job.version != last {
                last = job.version;
                let done = job.state.is_final();
                if tx.send(job).await.is_err() || done {
                    return;
                }
            }
        }
    });
    rx
}

/// The tenant's deployment `id`.
pub async fn deployment(app: &App, tenant: &Tenant, id: &str) -> Result<DeploymentRow, Error> {
    app.service
        .store()
        .deployment(id, Some(&tenant.name))
        .await?
        .ok_or_else(|| Error::not_found("deployment", id))
}

/// A deployment with what is known of it.
#[derive(Debug)]
pub struct Detail {
    pub row: DeploymentRow,
    pub spec: DeploymentSpec,
    pub members: Vec<MemberRow>,
    /// The made instances' states now (when asked for).
    pub states: HashMap<String, InstanceState>,
    /// The job of its latest change.
    pub job: Option<JobRow>,
    /// Its latest history (when asked for).
    pub history: Vec<HistoryEntry>,
}

impl Detail {
    /// `applying`, `ready`, `failed`, `canceled` or `deleting`.
    pub fn status(&self) -> &'static str {
        match &self.job {
            _ if self.row.state != "active" => "deleting",
            Some(j) if !j.state.is_final() => "applying",
            Some(j) if j.state == JobState::Failed => "failed",
            Some(j) if j.state == JobState::Canceled => "canceled",
            _ => "ready",
        }
    }
}

/// What is known of deployment `d`; with `live`, its instances' states now and its
/// history.
pub async fn detail(
    app: &App,
    tenant: &Tenant,
    d: DeploymentRow,
    live: bool,
) -> Result<Detail, Error> {
    let mut det = details(app, vec![d]).await?.remove(0);
    if live {
        det.states = super::deployments::live_states(app, tenant, &det.members).await;
        det.history = app.service.store().history(&det.row.id, 100).await?;
    }
    Ok(det)
}

/// What the store knows of deployments (as recorded: no states now, no history),
/// read for all of them at once.
pub async fn details(app: &App, rows: Vec<DeploymentRow>) -> Result<Vec<Detail>, Error> {
    let store = app.service.store();
    let ids: Vec<&str> = rows.iter().map(|d| d.id.as_str()).collect();
    let mut members = store.members_of(&ids).await?;
    let mut jobs = store.latest_jobs(&ids, &[APPLY, DELETE]).await?;
    rows.into_iter()
        .map(|d| {
            let spec: DeploymentSpec = serde_json::from_str(&d.spec).map_err(|e| {
                Error::new(
                    ErrorKind::Backend,
                    format!("deployment {} cannot be read: {e}", d.id),
                )
            })?;
            Ok(Detail {
                members: members.remove(&d.id).unwrap_or_default(),
                job: jobs.remove(&d.id),
                row: d,
                spec,
                states: HashMap::new(),
                history: Vec::new(),
            })
        })
        .collect()
}

/// A page of the tenant's deployments, oldest first; `None` when `after` names none
/// of the tenant's.
pub async fn list_deployments(
    app: &App,
    tenant: &Tenant,
    after: Option<&str>,
    limit: u32,
) -> Result<Option<(Vec<DeploymentRow>, Option<String>)>, Error> {
    let store = app.service.store();
    if let Some(t) = after {
        if store.deployment(t, Some(&tenant.name)).await?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(
        store.list_deployments(&tenant.name, after, limit).await?,
    ))
}

/// The id of the deployment `tenant` creates with idempotency key `key`.
fn keyed_id(tenant: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in ["deployment", tenant, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize()[..9]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("dep-{}", &hex[..17])
}

/// Records a new deployment and its apply job (and its expiry); the job starts at
/// once. With an idempotency key, the deployment's id derives from it: the same
/// request again (same name and template, partitions and policy) answers the
/// deployment it made and its latest job; another request is an idempotency
/// conflict.
#[allow(clippy::too_many_arguments)]
pub async fn create_deployment(
    app: &App,
    tenant: &Tenant,
    key: Option<&str>,
    name: String,
    count: u32,
    spec: &DeploymentSpec,
    expires_at: Option<i64>,
    deadline: Option<i64>,
) -> Result<(DeploymentRow, Option<JobRow>), Error> {
    let now = now_ms();
    let row = DeploymentRow {
        id: key.map_or_else(|| random_id("dep-"), |k| keyed_id(&tenant.name, k)),
        tenant: tenant.name.to_string(),
        name,
        spec: serde_json::to_string(spec)
            .map_err(|e| Error::new(ErrorKind::Backend, e.to_string()))?,
        count,
        state: "active".into(),
        generation: 1,
        expires_at,
        created_at: now,
        updated_at: now,
    };
    let store = app.service.store();
    let Some(job) = store
        .add_deployment(&row, &apply_job(&tenant.name, &row.id, deadline))
        .await?
    else {
        // Made before with this key.
        let Some(first) = store.deployment(&row.id, Some(&tenant.name)).await? else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the deployment of this idempotency key is changing; repeat the request",
            ));
        };
        if first.name != row.name || first.spec != row.spec {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the idempotency key `{}` made deployment {} with other parameters; \
                     repeat that request unchanged, or use a new key for a new deployment",
                    key.unwrap_or_default(),
                    first.id
                ),
            )
            .with_context("argument", "idempotency_key")
            .with_context("reason", "idempotent_parameter_mismatch"));
        }
        let job = store.latest_job(&first.id, &[APPLY, DELETE]).await?;
        return Ok((first, job));
    };
    if let Some(at) = expires_at {
        super::enqueue(app, &expire_job(&tenant.name, &row.id, at)).await?;
    }
    app.jobs.wake();
    Ok((row, Some(job)))
}

/// Changes a deployment's count (a job applies it) and its expiry (`Some(None)`
/// removes it): the deployment after, and the job when there is one.
pub async fn update_deployment(
    app: &App,
    tenant: &Tenant,
    d: &DeploymentRow,
    count: Option<u32>,
    expires: Option<Option<i64>>,
) -> Result<(DeploymentRow, Option<JobRow>), Error> {
    if d.state != "active" {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!("deployment {} is being deleted", d.id),
        ));
    }
    if let Some(c) = count {
        let spec: DeploymentSpec = serde_json::from_str(&d.spec)
            .map_err(|e| Error::new(ErrorKind::Backend, e.to_string()))?;
        if let Some(m) = spec.min.filter(|m| c < *m) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "deployment {} has `min` {m}: its count cannot go below it (asked: {c})",
                    d.id
                ),
            ));
        }
    }
    let store = app.service.store();
    let event = match (count, expires) {
        (Some(c), _) => ("scaled", format!("count {} -> {c}", d.count)),
        (None, Some(Some(at))) => (
            "expiry",
            format!("expires at {}", super::instances::rfc3339(at)),
        ),
        (None, _) => ("expiry", "expiry removed".to_owned()),
    };
    let job = count.map(|_| apply_job(&tenant.name, &d.id, None));
    let (after, job) = store
        .change_deployment(
            &d.id,
            count,
            None,
            expires,
            (event.0, &event.1),
            job.as_ref(),
        )
        .await?
        .ok_or_else(|| Error::not_found("deployment", &d.id))?;
    match expires {
        Some(Some(at)) => {
            let (_, new) = super::enqueue(app, &expire_job(&tenant.name, &d.id, at)).await?;
            if !new {
                store.reschedule_job(&expire_key(&d.id), at).await?;
            }
        }
        Some(None) => {
            store.drop_scheduled_job(&expire_key(&d.id)).await?;
        }
        None => {}
    }
    app.jobs.wake();
    Ok((after, job))
}

/// Starts deleting a deployment: its delete job (the same one when asked again).
pub async fn delete_deployment(
    app: &App,
    tenant: &Tenant,
    d: &DeploymentRow,
) -> Result<(DeploymentRow, Option<JobRow>), Error> {
    let r = app
        .service
        .store()
        .change_deployment(
            &d.id,
            None,
            Some("deleting"),
            None,
            ("delete", "deletion asked for"),
            Some(&delete_job(&tenant.name, &d.id)),
        )
        .await?
        .ok_or_else(|| Error::not_found("deployment", &d.id))?;
    app.jobs.wake();
    Ok(r)
}

/// The latest history of an instance (by public id), oldest first.
pub async fn instance_history(app: &App, public_id: &str) -> Result<Vec<HistoryEntry>, Error> {
    Ok(app.service.store().history(public_id, 100).await?)
}
