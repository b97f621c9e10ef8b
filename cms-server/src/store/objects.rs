//! The id map: each backend object the server has named gets one public id (EC2-shaped:
//! `i-…`, `ami-…`), its owner and what identifies it, in `cms_objects`.
//!
//! Rows never change but for two marks: `ended_at` (an instance was deleted or seen
//! terminated: it no longer counts against its tenant's quota) and `replaced` (another
//! object now has its backend id). So the process caches rows by backend id and by
//! public id, and the hot path (a listing of objects it has seen) touches no SQL. A
//! cached row is checked against the object it is used for ([`Entry::names`]); when
//! they disagree the database decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{
    err, now_ms, now_secs, placeholders, random_id, Kind, Store, StoreError, BATCH, KINDS,
};

/// How long "no such row" is believed before asking the database again: another
/// replica may write the row a moment after this one looked.
const ABSENT_TTL: Duration = Duration::from_secs(2);

/// A row of the id map, as seen from its backend id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its public id.
    pub public_id: Arc<str>,
    /// Its owner; `None` for the shared catalogue and for instances made outside cms.
    pub tenant: Option<Arc<str>>,
    /// What tells this object from another with the same backend id: the client token
    /// it was created with, when there was one.
    pub identity: Option<Arc<str>>,
    /// Instances: the reservation they were launched in.
    pub reservation: Option<Arc<str>>,
    /// Instances: their position in the launch.
    pub launch_index: u32,
}

impl Entry {
    /// Whether this row names the object `seen` (same backend id assumed): the client
    /// tokens agree when both are known (a row made with a token never names an object
    /// without one), and so do the owners.
    pub fn names(&self, seen: &Seen<'_>) -> bool {
        let identity = match (&self.identity, seen.identity) {
            (Some(a), Some(b)) => **a == *b,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let owner = match (&self.tenant, seen.tenant) {
            (Some(a), Some(b)) => **a == *b,
            _ => true,
        };
        identity && owner
    }
}

/// A row of the id map, as seen from its public id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The provider it lives in.
    pub provider: Arc<str>,
    /// What it is.
    pub kind: Kind,
    /// The backend's id.
    pub backend_id: Arc<str>,
    /// The row.
    pub entry: Entry,
}

/// An object as a backend shows it: its id, and what identifies and owns it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    /// The backend's id.
    pub backend_id: &'a str,
    /// The client token it was made with, when the backend keeps it.
    pub identity: Option<&'a str>,
    /// Its owner, when it carries one.
    pub tenant: Option<&'a str>,
}

/// What to record of a new object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Record<'a> {
    /// Its owner.
    pub tenant: Option<&'a str>,
    /// The client token it was made with.
    pub identity: Option<&'a str>,
    /// Instances: the reservation they were launched in (a fresh one when `None`).
    pub reservation: Option<&'a str>,
    /// Instances: their position in the launch.
    pub launch_index: u32,
    /// What to keep beside it (see [`Store::attributes`]), written with the row.
    pub attributes: &'a [(&'a str, &'a str)],
    /// The owner's own tags on it (see [`Store::tenant_tags`]), written with the row;
    /// checked by the model's tag rules before.
    pub tenant_tags: &'a [(&'a str, &'a str)],
}

#[derive(Clone, Debug)]
enum Cached {
    Present(Entry),
    Absent(Instant),
}

type ByBackend = HashMap<Arc<str>, [HashMap<Arc<str>, Cached>; KINDS]>;

/// The rows the process cached since the generation began.
#[derive(Default)]
struct Generation {
    by_backend: ByBackend,
    by_public: HashMap<Arc<str>, Resolved>,
    /// Rows (and absences) put in it.
    len: usize,
}

impl Generation {
    fn backend(&self, provider: &str, kind: Kind, backend_id: &str) -> Option<&Cached> {
        self.by_backend.get(provider)?[kind.index()].get(backend_id)
    }

    fn forget(&mut self, provider: &str, kind: Kind, backend_id: &str) {
        if let Some(slot) = self.by_backend.get_mut(provider) {
            slot[kind.index()].remove(backend_id);
        }
    }
}

/// The rows cached by default: at most this many, and at least half of it once that
/// many were seen (about 600 bytes each).
pub const DEFAULT_CACHED_OBJECTS: usize = 100_000;

/// What the process knows of the id map: the rows it used lately, bounded.
///
/// Two generations: rows go into the current one; when it holds half the bound, it
/// becomes the previous one and the one before is dropped. A row found only in the
/// previous generation moves back into the current one, so what is in use stays and
/// what was seen once leaves after two turns. Memory stays bounded however many
/// objects a long-lived server meets; a row that left is read from the database again.
pub(crate) struct Cache {
    current: Generation,
    previous: Generation,
    /// Rows per generation.
    half: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(DEFAULT_CACHED_OBJECTS)
    }
}

impl Cache {
    /// A cache of at most `objects` rows (2 at least).
    pub(crate) fn new(objects: usize) -> Cache {
        Cache {
            current: Generation::default(),
            previous: Generation::default(),
            half: (objects / 2).max(1),
        }
    }

    /// Rows held now, absences included, in both generations.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len + self.previous.len
    }

    fn turn_if_full(&mut self) {
        if self.current.len >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
    }

    fn insert(&mut self, r: &Resolved) {
        self.turn_if_full();
        let g = &mut self.current;
        g.len += 1;
        g.by_public.insert(r.entry.public_id.clone(), r.clone());
        let slot = g.by_backend.entry(r.provider.clone()).or_default();
        slot[r.kind.index()].insert(r.backend_id.clone(), Cached::Present(r.entry.clone()));
    }

    /// A row that names a replaced object: known by its public id only.
    fn insert_replaced(&mut self, r: &Resolved) {
        self.turn_if_full();
        self.current.len += 1;
        self.current
            .by_public
            .insert(r.entry.public_id.clone(), r.clone());
    }

    fn insert_absent(&mut self, provider: &str, kind: Kind, backend_id: &str) {
        self.turn_if_full();
        let g = &mut self.current;
        g.len += 1;
        let slot = g.by_backend.entry(provider.into()).or_default();
        slot[kind.index()].insert(backend_id.into(), Cached::Absent(Instant::now()));
    }

    /// The cached row of a backend id, and whether it is only in the previous
    /// generation (then the caller moves it back, see [`Cache::insert`]).
    fn backend(&self, provider: &str, kind: Kind, backend_id: &str) -> Option<(&Cached, bool)> {
        if let Some(c) = self.current.backend(provider, kind, backend_id) {
            return Some((c, false));
        }
        self.previous
            .backend(provider, kind, backend_id)
            .map(|c| (c, true))
    }

    fn public(&self, public_id: &str) -> Option<(&Resolved, bool)> {
        if let Some(r) = self.current.by_public.get(public_id) {
            return Some((r, false));
        }
        self.previous.by_public.get(public_id).map(|r| (r, true))
    }

    fn forget_backend(&mut self, provider: &str, kind: Kind, backend_id: &str) {
        self.current.forget(provider, kind, backend_id);
        self.previous.forget(provider, kind, backend_id);
    }

    fn forget_public(&mut self, public_id: &str) {
        self.current.by_public.remove(public_id);
        self.previous.by_public.remove(public_id);
    }
}

/// The public id of a backend object, for salt `salt` (0 first, higher after a
/// collision or when an earlier object had the same backend id).
pub(crate) fn derive_id(provider: &str, kind: Kind, backend_id: &str, salt: u32) -> String {
    let mut h = Sha256::new();
    h.update(provider.as_bytes());
    h.update([0]);
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(backend_id.as_bytes());
    if salt > 0 {
        h.update([0]);
        h.update(salt.to_be_bytes());
    }
    let d = h.finalize();
    let mut id = String::with_capacity(kind.prefix().len() + 18);
    id.push_str(kind.prefix());
    for b in &d[..9] {
        id.push_str(&format!("{b:02x}"));
    }
    id.truncate(kind.prefix().len() + 17);
    id
}

const COLUMNS: &str =
    "public_id, provider, kind, backend_id, identity, tenant, reservation, launch_index";

pub(crate) fn read_row(row: &AnyRow) -> Result<Resolved, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let kind = Kind::from_str(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "kind".into(),
        source: format!("unknown kind `{kind}`").into(),
    })?;
    let opt = |c: &str| -> Result<Option<Arc<str>>, sqlx::Error> {
        Ok(row.try_get::<Option<String>, _>(c)?.map(Into::into))
    };
    let launch_index: i64 = row.try_get("launch_index")?;
    Ok(Resolved {
        provider: row.try_get::<String, _>("provider")?.into(),
        kind,
        backend_id: row.try_get::<String, _>("backend_id")?.into(),
        entry: Entry {
            public_id: row.try_get::<String, _>("public_id")?.into(),
            tenant: opt("tenant")?,
            identity: opt("identity")?,
            reservation: opt("reservation")?,
            launch_index: u32::try_from(launch_index).unwrap_or(0),
        },
    })
}

impl Store {
    fn cache(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, r: &Resolved) {
        self.cache().insert(r);
    }

    fn remember_absent(&self, provider: &str, kind: Kind, backend_id: &str) {
        self.cache().insert_absent(provider, kind, backend_id);
    }

    /// The current rows of `backend_ids` (cache first, then one query per batch of
    /// misses): `None` where the store has none.
    pub async fn lookup(
        &self,
        provider: &str,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let mut out = Vec::with_capacity(backend_ids.len());
        let mut missing: Vec<usize> = Vec::new();
        // Rows found only in the previous generation, to move back.
        let mut older: Vec<usize> = Vec::new();
        {
            let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
            for (i, id) in backend_ids.iter().enumerate() {
                match c.backend(provider, kind, id) {
                    Some((Cached::Present(e), old)) => {
                        out.push(Some(e.clone()));
                        if old {
                            older.push(i);
                        }
                    }
                    Some((Cached::Absent(at), _)) if at.elapsed() < ABSENT_TTL => out.push(None),
                    _ => {
                        out.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        if !older.is_empty() {
            let provider: Arc<str> = provider.into();
            let mut c = self.cache();
            for i in older {
                if let Some(entry) = out[i].clone() {
                    c.insert(&Resolved {
                        provider: provider.clone(),
                        kind,
                        backend_id: backend_ids[i].into(),
                        entry,
                    });
                }
            }
        }
        let ids: Vec<&str> = missing.iter().map(|&i| backend_ids[i]).collect();
        let found = self.read_current(provider, kind, &ids).await?;
        for (&i, e) in missing.iter().zip(found) {
            out[i] = e;
        }
        Ok(out)
    }

    /// Reads the current rows of `backend_ids` from the database, and caches them.
    async fn read_current(
        &self,
        provider: &str,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let mut out = vec![None; backend_ids.len()];
        for (n, chunk) in backend_ids.chunks(BATCH).enumerate() {
            let sql = format!(
                "SELECT {COLUMNS} FROM cms_objects
                 WHERE provider = $1 AND kind = $2 AND replaced = 0 AND backend_id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(provider).bind(kind.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(err("cannot read the id map"))?;
            let mut found: HashMap<Arc<str>, Resolved> = HashMap::with_capacity(rows.len());
            for row in &rows {
                let r = read_row(row).map_err(err("cannot read the id map"))?;
                found.insert(r.backend_id.clone(), r);
            }
            for (j, id) in chunk.iter().enumerate() {
                match found.remove(*id) {
                    Some(r) => {
                        self.remember(&r);
                        out[n * BATCH + j] = Some(r.entry);
                    }
                    None => self.remember_absent(provider, kind, id),
                }
            }
        }
        Ok(out)
    }

    /// The rows naming `seen` objects, made for the ones never named before (and for
    /// those whose backend id named another object until now: see [`Entry::names`]).
    /// New instance rows get a fresh reservation.
    pub async fn map(
        &self,
        provider: &str,
        kind: Kind,
        seen: &[Seen<'_>],
    ) -> Result<Vec<Entry>, StoreError> {
        let ids: Vec<&str> = seen.iter().map(|s| s.backend_id).collect();
        let mut found = self.lookup(provider, kind, &ids).await?;
        // Cached rows that disagree with the object: the database may know better.
        let stale: Vec<usize> = (0..seen.len())
            .filter(|&i| found[i].as_ref().is_some_and(|e| !e.names(&seen[i])))
            .collect();
        if !stale.is_empty() {
            let ids: Vec<&str> = stale.iter().map(|&i| seen[i].backend_id).collect();
            for (&i, e) in stale
                .iter()
                .zip(self.read_current(provider, kind, &ids).await?)
            {
                found[i] = e;
            }
        }
        let mut out = Vec::with_capacity(seen.len());
        for (s, e) in seen.iter().zip(found) {
            out.push(match e {
                Some(e) if e.names(s) => e,
                _ => {
                    // An instance made by a create whose answer was lost: its journal
                    // entry knows the launch it belongs to.
                    let journaled = match (kind, s.identity) {
                        (Kind::Instance, Some(token)) => {
                            self.journaled_launch(provider, token).await?
                        }
                        _ => None,
                    };
                    let rec = Record {
                        tenant: s.tenant,
                        identity: s.identity,
                        reservation: journaled.as_ref().map(|(r, _)| r.as_str()),
                        launch_index: journaled.as_ref().map_or(0, |(_, i)| *i),
                        attributes: &[],
                        tenant_tags: &[],
                    };
                    self.record(provider, kind, s.backend_id, &rec).await?
                }
            });
        }
        Ok(out)
    }

    /// The reservation and launch index of a journaled create.
    async fn journaled_launch(
        &self,
        provider: &str,
        token: &str,
    ) -> Result<Option<(String, u32)>, StoreError> {
        let row = sqlx::query(
            "SELECT reservation, launch_index FROM cms_creates WHERE provider = $1 AND token = $2",
        )
        .bind(provider)
        .bind(token)
        .fetch_optional(self.pool())
        .await
        .map_err(err("cannot read the journal"))?;
        row.map(|r| -> Result<(String, u32), sqlx::Error> {
            let i: i64 = r.try_get("launch_index")?;
            Ok((r.try_get("reservation")?, u32::try_from(i).unwrap_or(0)))
        })
        .transpose()
        .map_err(err("cannot read the journal"))
    }

    /// The public ids of shared catalogue objects (images, networks), mapping the
    /// ones never seen before.
    pub async fn catalogue_ids(
        &self,
        provider: &str,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Arc<str>>, StoreError> {
        let seen: Vec<Seen<'_>> = backend_ids
            .iter()
            .map(|id| Seen {
                backend_id: id,
                ..Seen::default()
            })
            .collect();
        Ok(self
            .map(provider, kind, &seen)
            .await?
            .into_iter()
            .map(|e| e.public_id)
            .collect())
    }

    /// Records an object and answers its row: the current row when it already names
    /// this object (recording again answers the same), else a new row, the old one
    /// (another object with this backend id) marked replaced.
    pub async fn record(
        &self,
        provider: &str,
        kind: Kind,
        backend_id: &str,
        rec: &Record<'_>,
    ) -> Result<Entry, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(err("cannot connect to write the id map"))?;
        let r = record_on(&mut conn, provider, kind, backend_id, rec).await?;
        self.remember(&r);
        Ok(r.entry)
    }

    pub(crate) fn remember_resolved(&self, r: &Resolved) {
        self.remember(r);
    }

    /// What a public id names, if the store knows it (replaced rows included: their
    /// object is gone, which is for the caller to find out).
    pub async fn resolve(&self, public_id: &str) -> Result<Option<Resolved>, StoreError> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .public(public_id)
            .map(|(r, old)| (r.clone(), old));
        if let Some((r, old)) = cached {
            if old {
                self.remember(&r);
            }
            return Ok(Some(r));
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, replaced FROM cms_objects WHERE public_id = $1"
        ))
        .bind(public_id)
        .fetch_optional(self.pool())
        .await
        .map_err(err("cannot read the id map"))?;
        let Some(row) = row else { return Ok(None) };
        let r = read_row(&row).map_err(err("cannot read the id map"))?;
        let replaced: i64 = row.try_get("replaced").unwrap_or(0);
        if replaced == 0 {
            self.remember(&r);
        } else {
            self.cache().insert_replaced(&r);
        }
        Ok(Some(r))
    }

    /// Forgets an object that is gone for good (a deleted key pair, whose name may be
    /// used again).
    pub async fn forget(
        &self,
        provider: &str,
        kind: Kind,
        backend_id: &str,
    ) -> Result<(), StoreError> {
        let public = self
            .lookup(provider, kind, &[backend_id])
            .await?
            .pop()
            .flatten()
            .map(|e| e.public_id);
        sqlx::query(
            "DELETE FROM cms_objects WHERE provider = $1 AND kind = $2 AND backend_id = $3",
        )
        .bind(provider)
        .bind(kind.as_str())
        .bind(backend_id)
        .execute(self.pool())
        .await
        .map_err(err("cannot write the id map"))?;
        self.cache().forget_backend(provider, kind, backend_id);
        if let Some(p) = &public {
            self.forget_details(p).await?;
            self.cache().forget_public(p);
        }
        Ok(())
    }

    /// Marks instances as ended (deleted, terminated or gone): they no longer count
    /// against their tenant's quota.
    pub async fn mark_ended(
        &self,
        provider: &str,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<(), StoreError> {
        for chunk in backend_ids.chunks(BATCH) {
            let sql = format!(
                "UPDATE cms_objects SET ended_at = $1
                 WHERE provider = $2 AND kind = $3 AND replaced = 0 AND ended_at IS NULL
                   AND backend_id IN ({})",
                placeholders(4, chunk.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(now_ms())
                .bind(provider)
                .bind(kind.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(self.pool())
                .await
                .map_err(err("cannot write the id map"))?;
        }
        Ok(())
    }

    /// The instances of `tenant` not known to have ended: (provider, backend id,
    /// entry), for a recount against the backends.
    pub async fn live_instances(
        &self,
        tenant: &str,
    ) -> Result<Vec<(Arc<str>, Arc<str>, Entry)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cms_objects
             WHERE tenant = $1 AND kind = $2 AND ended_at IS NULL AND replaced = 0"
        ))
        .bind(tenant)
        .bind(Kind::Instance.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot read the id map"))?;
        rows.iter()
            .map(|row| {
                let r = read_row(row).map_err(err("cannot read the id map"))?;
                Ok((r.provider, r.backend_id, r.entry))
            })
            .collect()
    }

    /// The instances of `tenant` launched in `reservation`: (backend id, entry), in
    /// launch order.
    pub async fn reservation_instances(
        &self,
        tenant: &str,
        provider: &str,
        reservation: &str,
    ) -> Result<Vec<(Arc<str>, Entry)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cms_objects
             WHERE provider = $1 AND kind = $2 AND tenant = $3 AND reservation = $4
               AND replaced = 0
             ORDER BY launch_index"
        ))
        .bind(provider)
        .bind(Kind::Instance.as_str())
        .bind(tenant)
        .bind(reservation)
        .fetch_all(self.pool())
        .await
        .map_err(err("cannot read a reservation"))?;
        rows.iter()
            .map(|row| {
                let r = read_row(row).map_err(err("cannot read a reservation"))?;
                Ok((r.backend_id, r.entry))
            })
            .collect()
    }
}

/// [`Store::record`] on a connection (or inside a transaction).
pub(crate) async fn record_on(
    conn: &mut AnyConnection,
    provider: &str,
    kind: Kind,
    backend_id: &str,
    rec: &Record<'_>,
) -> Result<Resolved, StoreError> {
    let r = row_on(conn, provider, kind, backend_id, rec).await?;
    for (name, value) in rec.attributes {
        super::details::set_attribute_on(conn, &r.entry.public_id, name, value).await?;
    }
    if let Some(tenant) = rec.tenant {
        for (key, value) in rec.tenant_tags {
            super::details::set_tenant_tag_on(conn, tenant, &r.entry.public_id, key, value).await?;
        }
    }
    Ok(r)
}

async fn row_on(
    conn: &mut AnyConnection,
    provider: &str,
    kind: Kind,
    backend_id: &str,
    rec: &Record<'_>,
) -> Result<Resolved, StoreError> {
    let seen = Seen {
        backend_id,
        identity: rec.identity,
        tenant: rec.tenant,
    };
    let reservation = match (kind, rec.reservation) {
        (Kind::Instance, None) => Some(random_id("r-")),
        (_, r) => r.map(str::to_owned),
    };
    for salt in 0..16 {
        if let Some(current) = current_on(conn, provider, kind, backend_id).await? {
            if current.entry.names(&seen) {
                return Ok(current);
            }
            // Another object had this backend id: its row stays (its public id now
            // names an object that is gone), marked replaced.
            sqlx::query(
                "UPDATE cms_objects SET replaced = 1, ended_at = COALESCE(ended_at, $1)
                 WHERE public_id = $2 AND replaced = 0",
            )
            .bind(now_ms())
            .bind(&*current.entry.public_id)
            .execute(&mut *conn)
            .await
            .map_err(err("cannot write the id map"))?;
            tracing::info!(
                provider,
                kind = kind.as_str(),
                backend_id,
                old = %current.entry.public_id,
                "a backend id now names another object; the old public id no longer names it"
            );
        }
        let public_id = derive_id(provider, kind, backend_id, salt);
        sqlx::query(
            "INSERT INTO cms_objects
               (public_id, provider, kind, backend_id, identity, tenant, reservation,
                launch_index, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
        )
        .bind(&public_id)
        .bind(provider)
        .bind(kind.as_str())
        .bind(backend_id)
        .bind(rec.identity)
        .bind(rec.tenant)
        .bind(reservation.as_deref())
        .bind(i64::from(rec.launch_index))
        .bind(now_secs())
        .execute(&mut *conn)
        .await
        .map_err(err("cannot write the id map"))?;
        if let Some(current) = current_on(conn, provider, kind, backend_id).await? {
            if current.entry.names(&seen) {
                return Ok(current);
            }
        }
        // The derived id is another object's (or another replica won a race with
        // another object): try the next salt.
    }
    Err(StoreError::plain(format!(
        "no free public id for {} `{backend_id}`",
        kind.as_str()
    )))
}

async fn current_on(
    conn: &mut AnyConnection,
    provider: &str,
    kind: Kind,
    backend_id: &str,
) -> Result<Option<Resolved>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cms_objects
         WHERE provider = $1 AND kind = $2 AND backend_id = $3 AND replaced = 0"
    ))
    .bind(provider)
    .bind(kind.as_str())
    .bind(backend_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(err("cannot read the id map"))?;
    row.map(|r| read_row(&r))
        .transpose()
        .map_err(err("cannot read the id map"))
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    #[test]
    fn ids_have_the_ec2_shape() {
        for kind in [
            Kind::Instance,
            Kind::Image,
            Kind::Subnet,
            Kind::Vpc,
            Kind::KeyPair,
        ] {
            let id = derive_id("p", kind, "x", 0);
            assert_eq!(id.len(), kind.prefix().len() + 17, "{id}");
            assert_eq!(Kind::of_id(&id), Some(kind));
            assert_ne!(id, derive_id("p", kind, "x", 1));
            assert_ne!(id, derive_id("q", kind, "x", 0));
        }
    }

    fn rec<'a>(tenant: &'a str, identity: &'a str) -> Record<'a> {
        Record {
            tenant: Some(tenant),
            identity: Some(identity),
            reservation: Some("r-1"),
            launch_index: 0,
            ..Record::default()
        }
    }

    #[tokio::test]
    async fn the_cache_stays_bounded_and_keeps_the_rows_in_use() {
        for db in testing::all("bounded-cache").await {
            let store = Store::open(&db.url).await.unwrap().with_cached_objects(20);
            let cached = |id: &str| {
                let c = store.cache.read().unwrap();
                c.backend("p", Kind::Instance, id).is_some()
            };
            let hot = store
                .record("p", Kind::Instance, "hot", &rec("t1", "tok-hot"))
                .await
                .unwrap();
            let mut made = Vec::new();
            for i in 0..200 {
                let id = format!("vm-{i}");
                made.push(
                    store
                        .record("p", Kind::Instance, &id, &rec("t1", &format!("tok-{i}")))
                        .await
                        .unwrap(),
                );
                // A listing that shows `hot` every time keeps it cached.
                let seen = store.lookup("p", Kind::Instance, &["hot"]).await.unwrap();
                assert_eq!(seen, [Some(hot.clone())]);
                let held = store.cache.read().unwrap().len();
                assert!(held <= 20, "{held} rows cached, 20 at most");
                assert!(cached("hot"), "after {i}");
            }
            assert!(!cached("vm-0"));
            assert!(cached("vm-199"));
            // What left the cache is read from the store again, by either id.
            let ids: Vec<String> = (0..200).map(|i| format!("vm-{i}")).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let found = store.lookup("p", Kind::Instance, &refs).await.unwrap();
            assert_eq!(found, made.iter().cloned().map(Some).collect::<Vec<_>>());
            for e in &made {
                let r = store.resolve(&e.public_id).await.unwrap().unwrap();
                assert_eq!(&r.entry, e);
            }
            assert!(store.cache.read().unwrap().len() <= 20);
            // A forgotten row leaves both generations.
            store.forget("p", Kind::Instance, "vm-199").await.unwrap();
            assert!(!cached("vm-199"));
            assert_eq!(store.resolve(&made[199].public_id).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn rows_survive_reopening() {
        for db in testing::all("reopen").await {
            let store = Store::open(&db.url).await.unwrap();
            let a = store
                .record("p", Kind::Instance, "vm-1", &rec("t1", "tok-1"))
                .await
                .unwrap();
            let again = store
                .record("p", Kind::Instance, "vm-1", &rec("t1", "tok-1"))
                .await
                .unwrap();
            assert_eq!(a, again);
            let imgs = store
                .catalogue_ids("p", Kind::Image, &["img-1", "img-2"])
                .await
                .unwrap();
            assert_ne!(imgs[0], imgs[1]);
            drop(store);

            let store = Store::open(&db.url).await.unwrap();
            let r = store.resolve(&a.public_id).await.unwrap().unwrap();
            assert_eq!(
                (
                    &*r.provider,
                    r.kind,
                    &*r.backend_id,
                    r.entry.tenant.as_deref()
                ),
                ("p", Kind::Instance, "vm-1", Some("t1"))
            );
            let found = store
                .lookup("p", Kind::Instance, &["vm-1", "vm-2"])
                .await
                .unwrap();
            assert_eq!(found[0].as_ref().unwrap().public_id, a.public_id);
            assert!(found[1].is_none());
            let again = store
                .catalogue_ids("p", Kind::Image, &["img-2", "img-1"])
                .await
                .unwrap();
            assert_eq!((&again[0], &again[1]), (&imgs[1], &imgs[0]));
            let res = store.reservation_instances("t1", "p", "r-1").await.unwrap();
            assert_eq!(res, vec![("vm-1".into(), a.clone())]);

            store.forget("p", Kind::Instance, "vm-1").await.unwrap();
            assert!(store.resolve(&a.public_id).await.unwrap().is_none());
            assert!(store.lookup("p", Kind::Instance, &["vm-1"]).await.unwrap()[0].is_none());
        }
    }

    /// A backend id that comes back naming another object (a backend that started its
    /// ids over) gets a new public id; the old one keeps naming the old object.
    #[tokio::test]
    async fn a_reused_backend_id_is_a_new_object() {
        for db in testing::all("reuse").await {
            let store = Store::open(&db.url).await.unwrap();
            let alice = store
                .record("p", Kind::Instance, "vm-1", &rec("alice", "tok-a"))
                .await
                .unwrap();
            let seen_bob = Seen {
                backend_id: "vm-1",
                identity: Some("tok-b"),
                tenant: Some("bob"),
            };
            let bob = store
                .map("p", Kind::Instance, &[seen_bob])
                .await
                .unwrap()
                .remove(0);
            assert_ne!(alice.public_id, bob.public_id);
            assert_eq!(bob.tenant.as_deref(), Some("bob"));
            // The same tenant with a new token is a new object too.
            let bob2 = store
                .record("p", Kind::Instance, "vm-1", &rec("bob", "tok-c"))
                .await
                .unwrap();
            assert_ne!(bob2.public_id, bob.public_id);
            // The old ids still resolve (to a backend id whose object is gone), and the
            // replaced rows no longer count as live.
            let old = store.resolve(&alice.public_id).await.unwrap().unwrap();
            assert_eq!(old.entry.identity.as_deref(), Some("tok-a"));
            assert!(!old.entry.names(&seen_bob));
            let live = store.live_instances("alice").await.unwrap();
            assert!(live.is_empty(), "{live:?}");
            // Another process, whose cache still has the first row, finds the new one.
            let other = Store::open(&db.url).await.unwrap();
            let got = other
                .map(
                    "p",
                    Kind::Instance,
                    &[Seen {
                        backend_id: "vm-1",
                        identity: Some("tok-c"),
                        tenant: Some("bob"),
                    }],
                )
                .await
                .unwrap();
            assert_eq!(got[0].public_id, bob2.public_id);
        }
    }

    #[tokio::test]
    async fn ended_instances_leave_the_live_set() {
        for db in testing::all("ended").await {
            let store = Store::open(&db.url).await.unwrap();
            for (b, t) in [("vm-1", "tok-1"), ("vm-2", "tok-2")] {
                store
                    .record("p", Kind::Instance, b, &rec("t", t))
                    .await
                    .unwrap();
            }
            assert_eq!(store.live_instances("t").await.unwrap().len(), 2);
            store
                .mark_ended("p", Kind::Instance, &["vm-1"])
                .await
                .unwrap();
            let live = store.live_instances("t").await.unwrap();
            assert_eq!(live.len(), 1);
            assert_eq!(&*live[0].1, "vm-2");
        }
    }

    #[tokio::test]
    async fn another_writer_is_seen_after_the_absent_ttl() {
        for db in testing::all("replicas").await {
            let a = Store::open(&db.url).await.unwrap();
            let b = Store::open(&db.url).await.unwrap();
            assert!(b.lookup("p", Kind::Instance, &["vm-9"]).await.unwrap()[0].is_none());
            let e = a
                .record("p", Kind::Instance, "vm-9", &rec("t", "tok"))
                .await
                .unwrap();
            // b resolves by public id at once (a miss asks the database)...
            assert!(b.resolve(&e.public_id).await.unwrap().is_some());
            // ...and by backend id once its "absent" has expired.
            tokio::time::sleep(ABSENT_TTL + Duration::from_millis(50)).await;
            let got = b.lookup("p", Kind::Instance, &["vm-9"]).await.unwrap();
            assert_eq!(got[0].as_ref().map(|e| &e.public_id), Some(&e.public_id));
        }
    }

    #[tokio::test]
    async fn racing_replicas_agree_on_one_id() {
        for db in testing::all("race").await {
            let stores: Vec<Store> =
                futures::future::join_all((0..3).map(|_| Store::open(&db.url)))
                    .await
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
            let got = futures::future::join_all(stores.iter().map(|s| async move {
                s.record("p", Kind::Instance, "vm-r", &rec("t", "tok-r"))
                    .await
            }))
            .await;
            let ids: std::collections::HashSet<Arc<str>> =
                got.into_iter().map(|e| e.unwrap().public_id).collect();
            assert_eq!(ids.len(), 1, "{ids:?}");
        }
    }
}
