//! Deployments (`cms_deployments`), the instances each made (`cms_members`) and the
//! history of deployments and instances (`cms_history`); see [`crate::jobs`].
//!
//! A member row is written before its instance is asked for (state `creating`, with
//! its index and partition), so an attempt that is repeated, on this replica or
//! another, finds the same index and asks again with the same client token instead
//! of making a second instance.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::jobs::{add_job_on, JobRow, NewJob};
use super::{err, now_ms, placeholders, Store, StoreError, BATCH};

/// A deployment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRow {
    /// `dep-` and 17 hex digits.
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// Its template, partitions and policy (JSON).
    pub spec: String,
    /// How many instances it should have.
    pub count: u32,
    /// `active`, `deleting`.
    pub state: String,
    /// Grows with every change of what is wanted.
    pub generation: i64,
    /// When it is deleted with its instances (ms since the epoch).
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One instance of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    /// Its position: its client token derives from the deployment and this.
    pub index: u32,
    /// The partition (position in the deployment's list) it is on.
    pub partition: u32,
    pub provider: String,
    /// Its public id, once made.
    pub public_id: Option<String>,
    /// The instance's backend id, once made.
    pub backend_id: Option<String>,
    /// `creating`, `created`, `deleting`, `deleted`, `lost` (went to error or
    /// disappeared), `expired`.
    pub state: String,
    pub created_at: i64,
}

impl MemberRow {
    /// Whether it counts as one of the deployment's instances.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "creating" | "created")
    }
}

/// One entry of a history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// When (ms since the epoch).
    pub at: i64,
    /// What happened (`created`, `replaced`, `expired`, `deleted`, `scaled`, …).
    pub event: String,
    /// In words.
    pub detail: String,
}

const DEPLOYMENT_COLUMNS: &str =
    "id, tenant, name, spec, count, state, generation, expires_at, created_at, updated_at";

fn row_to_deployment(row: &sqlx::any::AnyRow) -> Result<DeploymentRow, sqlx::Error> {
    Ok(DeploymentRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        spec: row.try_get("spec")?,
        count: row.try_get::<i64, _>("count")?.clamp(0, u32::MAX as i64) as u32,
        state: row.try_get("state")?,
        generation: row.try_get("generation")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn row_to_member(row: &sqlx::any::AnyRow) -> Result<MemberRow, sqlx::Error> {
    Ok(MemberRow {
        index: row.try_get::<i64, _>("idx")? as u32,
        partition: row.try_get::<i64, _>("part")? as u32,
        provider: row.try_get("provider")?,
        public_id: row.try_get("public_id")?,
        backend_id: row.try_get("backend_id")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn history_on(
    conn: &mut AnyConnection,
    subject: &str,
    event: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cms_history (id, subject, at, event, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(super::random_id("h-"))
    .bind(subject)
    .bind(now_ms())
    .bind(event)
    .bind(detail)
    .execute(&mut *conn)
    .await
    .map_err(err("cannot write a history entry"))?;
    Ok(())
}

impl Store {
    async fn in_transaction<T, F>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(
            &'c mut AnyConnection,
        ) -> futures::future::BoxFuture<'c, Result<T, StoreError>>,
    {
        let mut conn = self.begin_tx(self.dialect().begin_write(), what).await?;
        let r = f(&mut conn).await;
        let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = conn.end(end).await;
        let r = r?;
        ended.map_err(err(format!("cannot commit ({what})")))?;
        Ok(r)
    }

    /// Records a new deployment and the job that carries it out, in one transaction;
    /// `None` (and nothing written) when a deployment with its id exists.
    pub async fn add_deployment(
        &self,
        d: &DeploymentRow,
        job: &NewJob,
    ) -> Result<Option<JobRow>, StoreError> {
        let d = d.clone();
        let job = job.clone();
        self.in_transaction("add a deployment", move |conn| {
            Box::pin(async move {
                let r = sqlx::query(
                    "INSERT INTO cms_deployments
                       (id, tenant, name, spec, count, state, generation, next_index, expires_at,
                        checked_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 'active', 1, 0, $6, $7, $7, $7)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&d.id)
                .bind(&d.tenant)
                .bind(&d.name)
                .bind(&d.spec)
                .bind(i64::from(d.count))
                .bind(d.expires_at)
                .bind(d.created_at)
                .execute(&mut *conn)
                .await
                .map_err(err("cannot add a deployment"))?;
                if r.rows_affected() == 0 {
                    return Ok(None);
                }
                history_on(
                    conn,
                    &d.id,
                    "created",
                    &format!("deployment `{}` of {} instances", d.name, d.count),
                )
                .await?;
                Ok(Some(add_job_on(conn, &job).await?.0))
            })
        })
        .await
    }

    /// The deployment `id` of `tenant` (any tenant's when `None`).
    pub async fn deployment(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM cms_deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(err("cannot read a deployment"))?;
        let d = row
            .as_ref()
            .map(row_to_deployment)
            .transpose()
            .map_err(err("cannot read a deployment"))?;
        Ok(d.filter(|d| tenant.is_none_or(|t| d.tenant == t)))
    }

    /// `tenant`'s deployments, oldest first, at most `limit`, after `after`.
    pub async fn list_deployments(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<DeploymentRow>, Option<String>), StoreError> {
        let limit = i64::from(limit.clamp(1, 1000));
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM cms_deployments
             WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(tenant)
        .bind(after.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot list deployments"))?;
        let mut v = rows
            .iter()
            .map(row_to_deployment)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("cannot list deployments"))?;
        let next = if v.len() as i64 > limit {
            v.truncate(limit as usize);
            v.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok((v, next))
    }

    /// Changes what a deployment wants (its count, its state, its expiry), with a
    /// history entry, and adds the job `job` (or finds the active one with its key)
    /// in the same transaction. Answers the deployment after the change and the job.
    pub async fn change_deployment(
        &self,
        id: &str,
        count: Option<u32>,
        state: Option<&str>,
        expires_at: Option<Option<i64>>,
        event: (&str, &str),
        job: Option<&NewJob>,
    ) -> Result<Option<(DeploymentRow, Option<JobRow>)>, StoreError> {
        let id = id.to_owned();
        let state = state.map(str::to_owned);
        let (event, detail) = (event.0.to_owned(), event.1.to_owned());
        let job = job.cloned();
        self.in_transaction("change a deployment", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let r = sqlx::query(
                    "UPDATE cms_deployments SET
                        count = COALESCE($2, count),
                        state = COALESCE($3, state),
                        expires_at = CASE WHEN $4 = 1 THEN $5 ELSE expires_at END,
                        generation = generation + 1, updated_at = $6
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(count.map(i64::from))
                .bind(state.as_deref())
                .bind(i64::from(expires_at.is_some()))
                .bind(expires_at.flatten())
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(err("cannot change a deployment"))?;
                if r.rows_affected() == 0 {
                    return Ok(None);
                }
                history_on(conn, &id, &event, &detail).await?;
                let job = match &job {
                    Some(j) => Some(add_job_on(conn, j).await?.0),
                    None => None,
                };
                let row = sqlx::query(&format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM cms_deployments WHERE id = $1"
                ))
                .bind(&id)
                .fetch_one(&mut *conn)
                .await
                .map_err(err("cannot read a deployment"))?;
                let d = row_to_deployment(&row).map_err(err("cannot read a deployment"))?;
                Ok(Some((d, job)))
            })
        })
        .await
    }

    /// Forgets a deployment (its instances are gone): its row, members and history.
    pub async fn remove_deployment(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.in_transaction("remove a deployment", move |conn| {
            Box::pin(async move {
                for sql in [
                    "DELETE FROM cms_members WHERE deployment = $1",
                    "DELETE FROM cms_history WHERE subject = $1",
                    "DELETE FROM cms_deployments WHERE id = $1",
                ] {
                    sqlx::query(sql)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await
                        .map_err(err("cannot remove a deployment"))?;
                }
                Ok(())
            })
        })
        .await
    }

    /// A deployment's members, by index.
    pub async fn members(&self, deployment: &str) -> Result<Vec<MemberRow>, StoreError> {
        Ok(self
            .members_of(&[deployment])
            .await?
            .remove(deployment)
            .unwrap_or_default())
    }

    /// The members of several deployments, by deployment, each by index.
    pub async fn members_of(
        &self,
        deployments: &[&str],
    ) -> Result<HashMap<String, Vec<MemberRow>>, StoreError> {
        let mut out: HashMap<String, Vec<MemberRow>> = HashMap::new();
        for chunk in deployments.chunks(BATCH) {
            let sql = format!(
                "SELECT deployment, idx, part, provider, public_id, backend_id, state, created_at
                 FROM cms_members WHERE deployment IN ({}) ORDER BY deployment, idx",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(*d);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(err("cannot read deployments' instances"))?;
            for row in &rows {
                let d: String = row
                    .try_get("deployment")
                    .map_err(err("cannot read deployments' instances"))?;
                let m = row_to_member(row).map_err(err("cannot read deployments' instances"))?;
                out.entry(d).or_default().push(m);
            }
        }
        Ok(out)
    }

    /// Adds members (state `creating`) on the given partitions, with the next
    /// indices of the deployment; answers them.
    pub async fn add_members(
        &self,
        deployment: &str,
        places: &[(u32, String)],
    ) -> Result<Vec<MemberRow>, StoreError> {
        let deployment = deployment.to_owned();
        let places = places.to_vec();
        self.in_transaction("add instances to a deployment", move |conn| {
            Box::pin(async move {
                let row = sqlx::query("SELECT next_index FROM cms_deployments WHERE id = $1")
                    .bind(&deployment)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(err("cannot read a deployment"))?;
                let first: i64 = row.try_get(0).map_err(err("cannot read a deployment"))?;
                let now = now_ms();
                let mut out = Vec::with_capacity(places.len());
                for (i, (part, provider)) in places.iter().enumerate() {
                    let idx = first + i as i64;
                    sqlx::query(
                        "INSERT INTO cms_members
                           (deployment, idx, part, provider, state, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, 'creating', $5, $5)",
                    )
                    .bind(&deployment)
                    .bind(idx)
                    .bind(i64::from(*part))
                    .bind(provider)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(err("cannot add an instance to a deployment"))?;
                    out.push(MemberRow {
                        index: idx as u32,
                        partition: *part,
                        provider: provider.clone(),
                        public_id: None,
                        backend_id: None,
                        state: "creating".into(),
                        created_at: now,
                    });
                }
                sqlx::query("UPDATE cms_deployments SET next_index = $2 WHERE id = $1")
                    .bind(&deployment)
                    .bind(first + places.len() as i64)
                    .execute(&mut *conn)
                    .await
                    .map_err(err("cannot update a deployment"))?;
                Ok(out)
            })
        })
        .await
    }

    /// Updates a member: where it is, what it is, its state; with a history entry on
    /// the deployment when `event` is given.
    pub async fn set_member(
        &self,
        deployment: &str,
        m: &MemberRow,
        event: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let notes: Vec<(String, String, String)> = event
            .map(|(e, d)| (deployment.to_owned(), e.to_owned(), d.to_owned()))
            .into_iter()
            .collect();
        self.set_members(deployment, std::slice::from_ref(m), &notes)
            .await
    }

    /// Updates members at once (see [`set_member`](Self::set_member)), with the
    /// history entries `notes` (subject, event, detail), in one transaction.
    pub async fn set_members(
        &self,
        deployment: &str,
        members: &[MemberRow],
        notes: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        if members.is_empty() && notes.is_empty() {
            return Ok(());
        }
        let deployment = deployment.to_owned();
        let members = members.to_vec();
        let notes = notes.to_vec();
        self.in_transaction("update a deployment's instances", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                for m in &members {
                    sqlx::query(
                        "UPDATE cms_members SET part = $3, provider = $4, public_id = $5,
                            backend_id = $6, state = $7, updated_at = $8
                         WHERE deployment = $1 AND idx = $2",
                    )
                    .bind(&deployment)
                    .bind(i64::from(m.index))
                    .bind(i64::from(m.partition))
                    .bind(&m.provider)
                    .bind(m.public_id.as_deref())
                    .bind(m.backend_id.as_deref())
                    .bind(&m.state)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(err("cannot update a deployment's instance"))?;
                }
                for (subject, event, detail) in &notes {
                    history_on(conn, subject, event, detail).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The deployment and member an instance (by public id) belongs to.
    pub async fn member_of(
        &self,
        public_id: &str,
    ) -> Result<Option<(String, MemberRow)>, StoreError> {
        let row = sqlx::query(
            "SELECT deployment, idx, part, provider, public_id, backend_id, state, created_at
             FROM cms_members WHERE public_id = $1",
        )
        .bind(public_id)
        .fetch_optional(self.pool())
        .await
        .map_err(err("cannot read a deployment's instance"))?;
        let Some(row) = row else { return Ok(None) };
        let d: String = row.try_get("deployment").map_err(err("cannot read"))?;
        let m = row_to_member(&row).map_err(err("cannot read a deployment's instance"))?;
        Ok(Some((d, m)))
    }

    /// A member's instance expired: it leaves the deployment, whose count goes down by
    /// one (once, however often this is repeated).
    pub async fn expire_member(
        &self,
        deployment: &str,
        index: u32,
        public_id: &str,
    ) -> Result<bool, StoreError> {
        let deployment = deployment.to_owned();
        let public_id = public_id.to_owned();
        self.in_transaction("expire a deployment's instance", move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let r = sqlx::query(
                    "UPDATE cms_members SET state = 'expired', updated_at = $3
                     WHERE deployment = $1 AND idx = $2 AND state IN ('creating', 'created')",
                )
                .bind(&deployment)
                .bind(i64::from(index))
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(err("cannot update a deployment's instance"))?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE cms_deployments SET count = CASE WHEN count > 0 THEN count - 1 ELSE 0 END,
                        generation = generation + 1, updated_at = $2
                     WHERE id = $1",
                )
                .bind(&deployment)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(err("cannot update a deployment"))?;
                history_on(
                    conn,
                    &deployment,
                    "expired",
                    &format!("instance {public_id} (index {index}) expired and left the deployment; its count went down by one"),
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    /// Adds an entry to the history of `subject` (a deployment's or an instance's id).
    pub async fn add_history(
        &self,
        subject: &str,
        event: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(err("cannot connect to write history"))?;
        history_on(&mut conn, subject, event, detail).await
    }

    /// The history of `subject`, oldest first (the latest `limit` entries).
    pub async fn history(
        &self,
        subject: &str,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, event, detail FROM cms_history WHERE subject = $1
             ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(subject)
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot read a history"))?;
        let mut v = rows
            .iter()
            .map(|r| {
                Ok(HistoryEntry {
                    at: r.try_get("at")?,
                    event: r.try_get("event")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(err("cannot read a history"))?;
        v.reverse();
        Ok(v)
    }

    /// How many `event` entries `subject`'s history has since `since`.
    pub async fn count_history(
        &self,
        subject: &str,
        event: &str,
        since: i64,
    ) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM cms_history WHERE subject = $1 AND event = $2 AND at >= $3",
        )
        .bind(subject)
        .bind(event)
        .bind(since)
        .fetch_one(self.pool())
        .await
        .map_err(err("cannot read a history"))?;
        Ok(row
            .try_get::<i64, _>(0)
            .map_err(err("cannot read a history"))? as u32)
    }

    /// Claims up to `n` active deployments last checked before `before` for a
    /// health check by this replica (each claim is won by one replica).
    pub async fn claim_checks(&self, before: i64, n: u32) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, checked_at FROM cms_deployments
             WHERE state = 'active' AND checked_at < $1 ORDER BY checked_at LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(n))
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot find deployments to check"))?;
        let now = now_ms();
        let mut won = Vec::new();
        for row in rows {
            let id: String = row.try_get("id").map_err(err("cannot read"))?;
            let was: i64 = row.try_get("checked_at").map_err(err("cannot read"))?;
            let r = sqlx::query(
                "UPDATE cms_deployments SET checked_at = $3 WHERE id = $1 AND checked_at = $2",
            )
            .bind(&id)
            .bind(was)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(err("cannot claim a deployment's check"))?;
            if r.rows_affected() > 0 {
                won.push(id);
            }
        }
        Ok(won)
    }
}
