//! Creates in flight, journaled in `cms_creates` before the backend is asked: each
//! holds a place in its tenant's quota and a lease of the replica carrying it out.
//!
//! - [`Store::begin_creates`] checks the quota and journals a request's creates in one
//!   transaction, under a per-tenant lock row (an `UPDATE` of `cms_locks`: a row lock
//!   on PostgreSQL, the write lock on SQLite), so replicas creating for one tenant at
//!   once cannot both take its last place. A create whose client token is journaled
//!   already (the same request on another replica) is not journaled twice: the caller
//!   waits for it.
//! - [`Store::finish_create`] records the object and removes the journal entry in one
//!   transaction; [`Store::drop_create`] removes an entry whose create failed.
//! - A replica renews the leases of its creates ([`Store::renew_leases`]); an entry
//!   whose lease ran out belongs to a replica that died (or was killed) mid-create, and
//!   another replica (or the same server, restarted) takes it over
//!   ([`Store::expired_creates`], [`Store::take_create`]) to find out what became of
//!   it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};

use super::objects::{record_on, Entry, Record, Resolved};
use super::{err, ms, now_ms, placeholders, Kind, Store, StoreError};

/// A tenant's instance limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Instances on all providers.
    pub total: Option<u32>,
    /// Instances on this provider.
    pub provider: Option<u32>,
}

/// Which limit a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaScope {
    /// All providers.
    Total,
    /// This provider.
    Provider,
}

/// What became of each create of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateSlot {
    /// Journaled: this replica carries it out.
    Acquired,
    /// Journaled already, by another request with the same client token: wait for it.
    Held,
    /// Made already (the object names this client token): nothing to journal.
    Made(Arc<str>, Entry),
    /// Left out: the quota has no room for it (beyond the request's minimum).
    Skipped,
}

/// The answer of [`Store::begin_creates`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// One slot per token, in order.
    Slots(Vec<CreateSlot>),
    /// The quota has no room for the request's minimum.
    Short {
        scope: QuotaScope,
        limit: u32,
        used: u32,
        wanted: u32,
    },
}

/// A journaled create whose replica is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCreate {
    pub provider: String,
    pub token: String,
    pub tenant: String,
    pub reservation: String,
    pub launch_index: u32,
}

/// One create of a request: its client token and its position in the launch.
#[derive(Clone, Debug)]
pub struct CreateToken {
    pub token: String,
    pub launch_index: u32,
}

impl Store {
    async fn lock_tenant(&self, conn: &mut AnyConnection, tenant: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE cms_locks SET n = n + 1 WHERE name = $1")
            .bind(format!("tenant:{tenant}"))
            .execute(&mut *conn)
            .await
            .map_err(err("cannot take the tenant's lock"))?;
        Ok(())
    }

    /// Checks `tenant`'s quota and journals the creates of one request on `provider`
    /// (see the [module](self)): at least `min` of them, as many as the quota allows.
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_creates(
        &self,
        tenant: &str,
        provider: &str,
        reservation: &str,
        tokens: &[CreateToken],
        min: usize,
        quota: Quota,
        replica: &str,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        sqlx::query("INSERT INTO cms_locks (name, n) VALUES ($1, 0) ON CONFLICT DO NOTHING")
            .bind(format!("tenant:{tenant}"))
            .execute(self.pool())
            .await
            .map_err(err("cannot prepare the tenant's lock"))?;
        let mut conn = self.begin_tx("BEGIN", "journal a create").await?;
        let r = self
            .begin_on(
                &mut conn,
                tenant,
                provider,
                reservation,
                tokens,
                min,
                quota,
                replica,
                lease,
            )
            .await;
        let end = match &r {
            Ok(Begin::Slots(_)) => "COMMIT",
            _ => "ROLLBACK",
        };
        let ended = conn.end(end).await;
        let r = r?;
        ended.map_err(err("cannot commit the journal"))?;
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn begin_on(
        &self,
        conn: &mut AnyConnection,
        tenant: &str,
        provider: &str,
        reservation: &str,
        tokens: &[CreateToken],
        min: usize,
        quota: Quota,
        replica: &str,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        self.lock_tenant(conn, tenant).await?;
        let names: Vec<&str> = tokens.iter().map(|t| t.token.as_str()).collect();
        let held = self.journaled(conn, provider, &names).await?;
        let made = self.made(conn, provider, &names).await?;
        let mut slots: Vec<CreateSlot> = tokens
            .iter()
            .map(|t| {
                if let Some((b, e)) = made
                    .iter()
                    .find(|(_, e)| e.identity.as_deref() == Some(t.token.as_str()))
                {
                    CreateSlot::Made(b.clone(), e.clone())
                } else if held.contains(&t.token) {
                    CreateSlot::Held
                } else {
                    CreateSlot::Acquired
                }
            })
            .collect();
        let new = slots.iter().filter(|s| **s == CreateSlot::Acquired).count();
        let already = slots.len() - new;
        let mut room = new;
        for (scope, limit) in [
            (QuotaScope::Total, quota.total),
            (QuotaScope::Provider, quota.provider),
        ] {
            let Some(limit) = limit else { continue };
            let p = (scope == QuotaScope::Provider).then_some(provider);
            let used = self.used(conn, tenant, p).await?;
            let free = (limit as usize).saturating_sub(used);
            if free + already < min {
                return Ok(Begin::Short {
                    scope,
                    limit,
                    used: used as u32,
                    wanted: min.saturating_sub(already) as u32,
                });
            }
            room = room.min(free);
        }
        let now = now_ms();
        let until = now + ms(lease);
        for (slot, t) in slots.iter_mut().zip(tokens) {
            if *slot != CreateSlot::Acquired {
                continue;
            }
            if room == 0 {
                *slot = CreateSlot::Skipped;
                continue;
            }
            room -= 1;
            sqlx::query(
                "INSERT INTO cms_creates
                   (provider, token, tenant, reservation, launch_index, created_at,
                    lease_owner, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(provider)
            .bind(&t.token)
            .bind(tenant)
            .bind(reservation)
            .bind(i64::from(t.launch_index))
            .bind(now)
            .bind(replica)
            .bind(until)
            .execute(&mut *conn)
            .await
            .map_err(err("cannot journal a create"))?;
        }
        Ok(Begin::Slots(slots))
    }

    /// Which of `tokens` are journaled on `provider`.
    async fn journaled(
        &self,
        conn: &mut AnyConnection,
        provider: &str,
        tokens: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT token FROM cms_creates WHERE provider = $1 AND token IN ({})",
            placeholders(2, tokens.len())
        );
        let mut q = sqlx::query(&sql).bind(provider);
        for t in tokens {
            q = q.bind(*t);
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(err("cannot read the journal"))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("token"))
            .collect::<Result<_, _>>()
            .map_err(err("cannot read the journal"))
    }

    /// The live instances on `provider` made with one of `tokens`.
    async fn made(
        &self,
        conn: &mut AnyConnection,
        provider: &str,
        tokens: &[&str],
    ) -> Result<Vec<(Arc<str>, Entry)>, StoreError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT public_id, provider, kind, backend_id, identity, tenant, reservation,
                    launch_index
             FROM cms_objects
             WHERE provider = $1 AND kind = $2 AND replaced = 0 AND ended_at IS NULL
               AND identity IN ({})",
            placeholders(3, tokens.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(provider)
            .bind(Kind::Instance.as_str());
        for t in tokens {
            q = q.bind(*t);
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(err("cannot read the id map"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = super::objects::read_row(row).map_err(err("cannot read the id map"))?;
            out.push((r.backend_id, r.entry));
        }
        Ok(out)
    }

    /// Instances of `tenant` (on `provider`, or on all) that count against its quota:
    /// live ones and journaled creates, counted in one statement (one snapshot: a
    /// create finishing meanwhile moves from the journal to the objects, and is counted
    /// once either way).
    async fn used(
        &self,
        conn: &mut AnyConnection,
        tenant: &str,
        provider: Option<&str>,
    ) -> Result<usize, StoreError> {
        let sql = match provider {
            None => {
                "SELECT (SELECT COUNT(*) FROM cms_objects
                         WHERE tenant = $1 AND kind = $2 AND ended_at IS NULL AND replaced = 0)
                      + (SELECT COUNT(*) FROM cms_creates WHERE tenant = $1)"
            }
            Some(_) => {
                "SELECT (SELECT COUNT(*) FROM cms_objects
                         WHERE tenant = $1 AND kind = $2 AND ended_at IS NULL AND replaced = 0
                           AND provider = $3)
                      + (SELECT COUNT(*) FROM cms_creates WHERE tenant = $1 AND provider = $3)"
            }
        };
        let mut q = sqlx::query(sql).bind(tenant).bind(Kind::Instance.as_str());
        if let Some(p) = provider {
            q = q.bind(p);
        }
        let used: i64 = q
            .fetch_one(&mut *conn)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(err("cannot count instances"))?;
        Ok(usize::try_from(used).unwrap_or(0))
    }

    /// Records the object a journaled create made and removes the journal entry, in one
    /// transaction.
    pub async fn finish_create(
        &self,
        provider: &str,
        token: &str,
        backend_id: &str,
        rec: &Record<'_>,
    ) -> Result<Entry, StoreError> {
        let mut conn = self
            .begin_tx(self.dialect().begin_write(), "record a create")
            .await?;
        let r: Result<Resolved, StoreError> = async {
            let r = record_on(&mut conn, provider, Kind::Instance, backend_id, rec).await?;
            sqlx::query("DELETE FROM cms_creates WHERE provider = $1 AND token = $2")
                .bind(provider)
                .bind(token)
                .execute(&mut *conn)
                .await
                .map_err(err("cannot write the journal"))?;
            Ok(r)
        }
        .await;
        let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = conn.end(end).await;
        let r = r?;
        ended.map_err(err("cannot commit a create"))?;
        self.remember_resolved(&r);
        Ok(r.entry)
    }

    /// Removes a journal entry: its create failed and made nothing, or what it made is
    /// recorded.
    pub async fn drop_create(&self, provider: &str, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cms_creates WHERE provider = $1 AND token = $2")
            .bind(provider)
            .bind(token)
            .execute(self.pool())
            .await
            .map_err(err("cannot write the journal"))?;
        Ok(())
    }

    /// Keeps a journal entry for later: its create's outcome is unknown (the backend did
    /// not answer). It is looked at again once `after` has passed.
    pub async fn defer_create(
        &self,
        provider: &str,
        token: &str,
        after: Duration,
    ) -> Result<(), StoreError> {
        // Nobody's lease: no replica renews it, and once `after` has passed any replica
        // may take it over.
        sqlx::query(
            "UPDATE cms_creates SET lease_owner = '', lease_until = $1
             WHERE provider = $2 AND token = $3",
        )
        .bind(now_ms() + ms(after))
        .bind(provider)
        .bind(token)
        .execute(self.pool())
        .await
        .map_err(err("cannot write the journal"))?;
        Ok(())
    }

    /// Whether a create is still journaled, and whether its lease ran out.
    pub async fn create_state(
        &self,
        provider: &str,
        token: &str,
    ) -> Result<Option<bool>, StoreError> {
        let row =
            sqlx::query("SELECT lease_until FROM cms_creates WHERE provider = $1 AND token = $2")
                .bind(provider)
                .bind(token)
                .fetch_optional(self.pool())
                .await
                .map_err(err("cannot read the journal"))?;
        match row {
            None => Ok(None),
            Some(r) => {
                let until: i64 = r.try_get(0).map_err(err("cannot read the journal"))?;
                Ok(Some(until < now_ms()))
            }
        }
    }

    /// Takes over a journaled create whose lease ran out; `false` when another replica
    /// was first (or it is gone).
    pub async fn take_create(
        &self,
        provider: &str,
        token: &str,
        replica: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let r = sqlx::query(
            "UPDATE cms_creates SET lease_owner = $1, lease_until = $2
             WHERE provider = $3 AND token = $4 AND lease_until < $5",
        )
        .bind(replica)
        .bind(now + ms(lease))
        .bind(provider)
        .bind(token)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err("cannot write the journal"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends the leases of the creates `replica` carries out.
    pub async fn renew_leases(&self, replica: &str, lease: Duration) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE cms_creates SET lease_until = $1 WHERE lease_owner = $2 AND lease_until >= $3",
        )
        .bind(now_ms() + ms(lease))
        .bind(replica)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(err("cannot renew leases"))?;
        Ok(r.rows_affected())
    }

    /// Journaled creates whose lease ran out, oldest first, at most `limit`.
    pub async fn expired_creates(&self, limit: u32) -> Result<Vec<PendingCreate>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, token, tenant, reservation, launch_index FROM cms_creates
             WHERE lease_until < $1 ORDER BY lease_until LIMIT $2",
        )
        .bind(now_ms())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot read the journal"))?;
        rows.iter()
            .map(|r| {
                let launch_index: i64 = r.try_get("launch_index")?;
                Ok(PendingCreate {
                    provider: r.try_get("provider")?,
                    token: r.try_get("token")?,
                    tenant: r.try_get("tenant")?,
                    reservation: r.try_get("reservation")?,
                    launch_index: u32::try_from(launch_index).unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(err("cannot read the journal"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    fn tokens(prefix: &str, n: u32) -> Vec<CreateToken> {
        (0..n)
            .map(|i| CreateToken {
                token: format!("{prefix}-{i}"),
                launch_index: i,
            })
            .collect()
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn quotas_hold_across_replicas() {
        for db in testing::all("quota").await {
            let a = Store::open(&db.url).await.unwrap();
            let b = Store::open(&db.url).await.unwrap();
            let quota = Quota {
                total: Some(5),
                provider: None,
            };
            // Ten one-instance requests at once from two replicas: five get a place.
            let tries = futures::future::join_all((0..10).map(|i| {
                let s = if i % 2 == 0 { &a } else { &b };
                let t = tokens(&format!("req{i}"), 1);
                async move {
                    s.begin_creates("t", "p", "r-1", &t, 1, quota, "rep", LEASE)
                        .await
                        .unwrap()
                }
            }))
            .await;
            let ok = tries
                .iter()
                .filter(|b| matches!(b, Begin::Slots(s) if s == &[CreateSlot::Acquired]))
                .count();
            assert_eq!(ok, 5, "{tries:?}");
            let short = tries.iter().find(|b| matches!(b, Begin::Short { .. }));
            assert_eq!(
                short,
                Some(&Begin::Short {
                    scope: QuotaScope::Total,
                    limit: 5,
                    used: 5,
                    wanted: 1
                })
            );
            // Finishing one keeps the count; ending it frees the place.
            let won = tries
                .iter()
                .position(|b| matches!(b, Begin::Slots(_)))
                .unwrap();
            let token = format!("req{won}-0");
            a.finish_create(
                "p",
                &token,
                "vm-0",
                &Record {
                    tenant: Some("t"),
                    identity: Some(&token),
                    ..Record::default()
                },
            )
            .await
            .unwrap();
            let again = a
                .begin_creates("t", "p", "r-2", &tokens("more", 1), 1, quota, "rep", LEASE)
                .await
                .unwrap();
            assert!(matches!(again, Begin::Short { .. }), "{again:?}");
            a.mark_ended("p", Kind::Instance, &["vm-0"]).await.unwrap();
            let again = a
                .begin_creates("t", "p", "r-2", &tokens("more", 1), 1, quota, "rep", LEASE)
                .await
                .unwrap();
            assert_eq!(again, Begin::Slots(vec![CreateSlot::Acquired]));
            // Another tenant has a quota of its own.
            let other = a
                .begin_creates("u", "p", "r-3", &tokens("u", 3), 3, quota, "rep", LEASE)
                .await
                .unwrap();
            assert!(matches!(other, Begin::Slots(_)));
        }
    }

    #[tokio::test]
    async fn a_launch_takes_what_fits_and_repeats_are_free() {
        for db in testing::all("launch").await {
            let s = Store::open(&db.url).await.unwrap();
            let quota = Quota {
                total: None,
                provider: Some(3),
            };
            let t = tokens("launch", 5);
            let got = s
                .begin_creates("t", "p", "r-1", &t, 2, quota, "rep", LEASE)
                .await
                .unwrap();
            use CreateSlot::*;
            assert_eq!(
                got,
                Begin::Slots(vec![Acquired, Acquired, Acquired, Skipped, Skipped])
            );
            // The same request again: its creates are journaled already (held).
            let got = s
                .begin_creates("t", "p", "r-1", &t[..3], 3, quota, "rep2", LEASE)
                .await
                .unwrap();
            assert_eq!(got, Begin::Slots(vec![Held, Held, Held]));
            let e = s
                .finish_create(
                    "p",
                    "launch-0",
                    "vm-0",
                    &Record {
                        tenant: Some("t"),
                        identity: Some("launch-0"),
                        reservation: Some("r-1"),
                        launch_index: 0,
                        ..Record::default()
                    },
                )
                .await
                .unwrap();
            let got = s
                .begin_creates("t", "p", "r-1", &t[..1], 1, quota, "rep2", LEASE)
                .await
                .unwrap();
            assert_eq!(got, Begin::Slots(vec![Made("vm-0".into(), e)]));
            // Another provider has room (the limit is per provider).
            let got = s
                .begin_creates("t", "q", "r-9", &tokens("q", 3), 3, quota, "rep", LEASE)
                .await
                .unwrap();
            assert_eq!(got, Begin::Slots(vec![Acquired, Acquired, Acquired]));
        }
    }

    #[tokio::test]
    async fn expired_leases_are_taken_over_once() {
        for db in testing::all("lease").await {
            let s = Store::open(&db.url).await.unwrap();
            let short = Duration::from_millis(200);
            s.begin_creates(
                "t",
                "p",
                "r-1",
                &tokens("dead", 2),
                1,
                Quota::default(),
                "dead-replica",
                short,
            )
            .await
            .unwrap();
            s.begin_creates(
                "t",
                "p",
                "r-2",
                &tokens("alive", 1),
                1,
                Quota::default(),
                "live-replica",
                short,
            )
            .await
            .unwrap();
            assert!(s.expired_creates(10).await.unwrap().is_empty());
            assert_eq!(s.create_state("p", "dead-0").await.unwrap(), Some(false));
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.renew_leases("live-replica", short).await.unwrap();
            }
            let expired = s.expired_creates(10).await.unwrap();
            let names: Vec<&str> = expired.iter().map(|p| p.token.as_str()).collect();
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(names.iter().all(|n| n.starts_with("dead-")), "{names:?}");
            assert_eq!(expired[0].reservation, "r-1");
            assert_eq!(s.create_state("p", "dead-0").await.unwrap(), Some(true));
            let other = Store::open(&db.url).await.unwrap();
            let (x, y) = tokio::join!(
                s.take_create("p", "dead-0", "me", LEASE),
                other.take_create("p", "dead-0", "you", LEASE)
            );
            assert!(x.unwrap() ^ y.unwrap(), "exactly one replica takes it over");
            s.drop_create("p", "dead-0").await.unwrap();
            assert_eq!(s.create_state("p", "dead-0").await.unwrap(), None);
        }
    }
}
