//! What the server must remember, in SQL: the EC2-shaped ids it handed out, which
//! tenant owns which resource, and the client tokens of idempotent requests.
//!
//! SQLite by default (`state = "sqlite://cms.db"`), PostgreSQL when several replicas
//! share the work (`state = "postgres://…"`): the queries use only what both speak
//! (`$N` parameters, `INSERT … ON CONFLICT DO NOTHING`, `TEXT` and `BIGINT`).
//! Migrations are applied at start, each once, recorded in `cms_schema_migrations`.
//!
//! Rows are written before an answer names them, and never change afterwards, so the
//! process keeps a cache of what it has read or written: a replica that misses asks
//! the database, and the hot path (a listing of ids it has seen) touches no SQL.
//!
//! EC2 ids are derived from the provider, the kind and the backend id (a SHA-256
//! prefix), so two replicas mapping the same backend resource at once agree; the
//! unique constraints settle any race, and a collision moves to the next salt.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use cms_server::store::{Kind, Store};
//! let dir = std::env::temp_dir().join(format!("cms-store-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let url = format!("sqlite://{}", dir.join("state.db").display());
//! let store = Store::open(&url).await.unwrap();
//! let id = store.record_owned("local", Kind::Instance, "vm-1", "team-a", "r-0123456789abcdef0", 0).await.unwrap();
//! assert!(id.starts_with("i-") && id.len() == 19);
//! drop(store);
//! // A new process finds what the first one wrote.
//! let store = Store::open(&url).await.unwrap();
//! let found = store.resolve(&id).await.unwrap().unwrap();
//! assert_eq!(&*found.backend_id, "vm-1");
//! assert_eq!(found.tenant.as_deref(), Some("team-a"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// How long "no such row" is believed before asking the database again: another
/// replica may write the row a moment after this one looked.
const ABSENT_TTL: Duration = Duration::from_secs(2);

/// At most this many values in one `IN (…)` list.
const BATCH: usize = 200;

/// The schema, one migration per entry, applied in order and each only once.
const MIGRATIONS: &[&str] = &[
    // 1: id maps and ownership; client tokens.
    "CREATE TABLE IF NOT EXISTS cms_resources (
        ec2_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        backend_id TEXT NOT NULL,
        tenant TEXT,
        reservation TEXT,
        launch_index BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        UNIQUE (provider, kind, backend_id)
    );
    CREATE TABLE IF NOT EXISTS cms_client_tokens (
        tenant TEXT NOT NULL,
        provider TEXT NOT NULL,
        token TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        reservation TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, provider, token)
    )",
];

/// What an EC2-shaped id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An instance: `i-` and 17 hex digits.
    Instance,
    /// An image: `ami-` and 17 hex digits.
    Image,
    /// A network seen as a subnet: `subnet-` and 17 hex digits.
    Subnet,
    /// A network seen as a VPC: `vpc-` and 17 hex digits.
    Vpc,
    /// A key pair (backend id: its name): `key-` and 17 hex digits.
    KeyPair,
}

const KINDS: usize = 5;

impl Kind {
    /// The id prefix, dash included.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Instance => "i-",
            Kind::Image => "ami-",
            Kind::Subnet => "subnet-",
            Kind::Vpc => "vpc-",
            Kind::KeyPair => "key-",
        }
    }

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Image => "image",
            Kind::Subnet => "subnet",
            Kind::Vpc => "vpc",
            Kind::KeyPair => "key-pair",
        }
    }

    fn from_str(s: &str) -> Option<Kind> {
        Some(match s {
            "instance" => Kind::Instance,
            "image" => Kind::Image,
            "subnet" => Kind::Subnet,
            "vpc" => Kind::Vpc,
            "key-pair" => Kind::KeyPair,
            _ => return None,
        })
    }

    /// The kind an EC2 id's prefix names, if it has the right shape (prefix and 8 or
    /// 17 lower-case hex digits, as EC2 ids have).
    pub fn of_id(id: &str) -> Option<Kind> {
        let (prefix, hex) = id.split_once('-')?;
        let kind = match prefix {
            "i" => Kind::Instance,
            "ami" => Kind::Image,
            "subnet" => Kind::Subnet,
            "vpc" => Kind::Vpc,
            "key" => Kind::KeyPair,
            _ => return None,
        };
        let ok = matches!(hex.len(), 8 | 17)
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then_some(kind)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A mapped resource, as seen from its backend id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its EC2 id.
    pub ec2_id: Arc<str>,
    /// Its owner; `None` for the shared catalogue.
    pub tenant: Option<Arc<str>>,
    /// Instances: the reservation they were launched in.
    pub reservation: Option<Arc<str>>,
    /// Instances: their position in the launch.
    pub launch_index: u32,
}

/// A mapped resource, as seen from its EC2 id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The provider it lives in.
    pub provider: Arc<str>,
    /// What it is.
    pub kind: Kind,
    /// The backend's id.
    pub backend_id: Arc<str>,
    /// Its owner; `None` for the shared catalogue.
    pub tenant: Option<Arc<str>>,
    /// Instances: the reservation they were launched in.
    pub reservation: Option<Arc<str>>,
}

/// What a client token was first used for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaim {
    /// The reservation of the first request with this token.
    pub reservation: String,
    /// Whether this request's hash equals the first one's.
    pub same_request: bool,
}

/// A store error: the database could not be opened, migrated, read or written.
#[derive(Debug)]
pub struct StoreError {
    what: String,
    source: sqlx::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state store: {}: {}", self.what, self.source)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError { what, source }
}

#[derive(Clone, Debug)]
enum Cached {
    Present(Entry),
    Absent(Instant),
}

type ByBackend = HashMap<Arc<str>, [HashMap<Arc<str>, Cached>; KINDS]>;

/// The server's SQL store, with the process's cache of it.
pub struct Store {
    pool: AnyPool,
    by_backend: RwLock<ByBackend>,
    by_ec2: RwLock<HashMap<Arc<str>, Resolved>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The EC2 id of a backend resource, for salt `salt` (0 first, higher after a
/// collision).
fn derive_id(provider: &str, kind: Kind, backend_id: &str, salt: u32) -> String {
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
    let mut id = String::with_capacity(kind.prefix().len() + 17);
    id.push_str(kind.prefix());
    for b in &d[..9] {
        id.push_str(&format!("{b:02x}"));
    }
    id.truncate(kind.prefix().len() + 17);
    id
}

/// A fresh random id with `prefix` and 17 hex digits (reservations: `r-`).
pub fn random_id(prefix: &str) -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    let hex = format!("{n:032x}");
    format!("{prefix}{}", &hex[..17])
}

/// A SQLite URL with `mode=rwc` added when it sets no mode, so that a missing file is
/// created.
fn with_create_mode(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains("mode=") || url.contains(":memory:") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store at `url`:
    /// `sqlite://path/to/file.db`, `sqlite::memory:` (tests) or
    /// `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let mut options = AnyPoolOptions::new();
        if sqlite {
            // One writer at a time is SQLite's rule; the pool's connections wait
            // for each other instead of failing with SQLITE_BUSY. WAL lets readers
            // go on while one writes; NORMAL sync loses nothing when the process
            // dies, only (at worst) the last commits on power loss.
            options = options
                .max_connections(if url.contains(":memory:") { 1 } else { 4 })
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                });
        } else {
            options = options.max_connections(8);
        }
        let shown = redact(url);
        let pool = options
            .connect(&with_create_mode(url))
            .await
            .map_err(err(format!("cannot open `{shown}`")))?;
        if sqlite && !url.contains(":memory:") {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(err(format!("cannot set WAL mode on `{shown}`")))?;
        }
        let store = Store {
            pool,
            by_backend: RwLock::default(),
            by_ec2: RwLock::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS cms_schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at BIGINT NOT NULL
            )",
        )
        .execute(&self.pool)
        .await
        .map_err(err("cannot create the migrations table"))?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(err("cannot begin a migration"))?;
            let done = sqlx::query("SELECT version FROM cms_schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err("cannot read the applied migrations"))?;
            if done.is_some() {
                continue;
            }
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(err(format!("migration {version} failed")))?;
            }
            sqlx::query(
                "INSERT INTO cms_schema_migrations (version, applied_at) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(version)
            .bind(now_secs())
            .execute(&mut *tx)
            .await
            .map_err(err(format!("cannot record migration {version}")))?;
            tx.commit()
                .await
                .map_err(err(format!("cannot commit migration {version}")))?;
        }
        Ok(())
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(version) FROM cms_schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(err("cannot read the schema version"))?;
        Ok(row.try_get::<Option<i64>, _>(0).ok().flatten().unwrap_or(0))
    }

    fn cached(&self, provider: &str, kind: Kind, backend_id: &str) -> Option<Cached> {
        let map = self.by_backend.read().unwrap_or_else(|e| e.into_inner());
        map.get(provider)?[kind.index()].get(backend_id).cloned()
    }

    fn remember(&self, provider: &str, kind: Kind, backend_id: &str, entry: Option<&Entry>) {
        let provider: Arc<str> = provider.into();
        let backend_id: Arc<str> = backend_id.into();
        if let Some(e) = entry {
            let mut by_ec2 = self.by_ec2.write().unwrap_or_else(|e| e.into_inner());
            by_ec2.insert(
                e.ec2_id.clone(),
                Resolved {
                    provider: provider.clone(),
                    kind,
                    backend_id: backend_id.clone(),
                    tenant: e.tenant.clone(),
                    reservation: e.reservation.clone(),
                },
            );
        }
        let mut map = self.by_backend.write().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry(provider).or_default();
        slot[kind.index()].insert(
            backend_id,
            match entry {
                Some(e) => Cached::Present(e.clone()),
                None => Cached::Absent(Instant::now()),
            },
        );
    }

    fn forget_cached(&self, provider: &str, kind: Kind, backend_id: &str, ec2_id: &str) {
        let mut map = self.by_backend.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get_mut(provider) {
            slot[kind.index()].remove(backend_id);
        }
        drop(map);
        let mut by_ec2 = self.by_ec2.write().unwrap_or_else(|e| e.into_inner());
        by_ec2.remove(ec2_id);
    }

    fn entry_of(row: &AnyRow) -> Result<(String, Entry), sqlx::Error> {
        let backend: String = row.try_get("backend_id")?;
        let ec2: String = row.try_get("ec2_id")?;
        let tenant: Option<String> = row.try_get("tenant")?;
        let reservation: Option<String> = row.try_get("reservation")?;
        let launch_index: i64 = row.try_get("launch_index")?;
        Ok((
            backend,
            Entry {
                ec2_id: ec2.into(),
                tenant: tenant.map(Into::into),
                reservation: reservation.map(Into::into),
                launch_index: u32::try_from(launch_index).unwrap_or(0),
            },
        ))
    }

    /// Looks up the entries of `backend_ids` (cache first, then one query per batch of
    /// misses): `None` where the store has no row.
    pub async fn lookup(
        &self,
        provider: &str,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let mut out = Vec::with_capacity(backend_ids.len());
        let mut missing: Vec<usize> = Vec::new();
        {
            let map = self.by_backend.read().unwrap_or_else(|e| e.into_inner());
            let slot = map.get(provider).map(|s| &s[kind.index()]);
            for (i, id) in backend_ids.iter().enumerate() {
                match slot.and_then(|s| s.get(*id)) {
                    Some(Cached::Present(e)) => out.push(Some(e.clone())),
                    Some(Cached::Absent(at)) if at.elapsed() < ABSENT_TTL => out.push(None),
                    _ => {
                        out.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        for chunk in missing.chunks(BATCH) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT ec2_id, backend_id, tenant, reservation, launch_index FROM cms_resources
                 WHERE provider = $1 AND kind = $2 AND backend_id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(provider).bind(kind.as_str());
            for &i in chunk {
                q = q.bind(backend_ids[i]);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(err("cannot read the id map"))?;
            let mut found: HashMap<String, Entry> = HashMap::with_capacity(rows.len());
            for row in &rows {
                let (backend, entry) =
                    Self::entry_of(row).map_err(err("cannot read the id map"))?;
                found.insert(backend, entry);
            }
            for &i in chunk {
                let entry = found.remove(backend_ids[i]);
                self.remember(provider, kind, backend_ids[i], entry.as_ref());
                out[i] = entry;
            }
        }
        Ok(out)
    }

    /// The EC2 ids of shared catalogue resources (images, networks), mapping the
    /// ones never seen before.
    pub async fn catalogue_ids(
        &self,
        provider: &str,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Arc<str>>, StoreError> {
        let found = self.lookup(provider, kind, backend_ids).await?;
        let mut out = Vec::with_capacity(found.len());
        for (entry, id) in found.into_iter().zip(backend_ids) {
            out.push(match entry {
                Some(e) => e.ec2_id,
                None => self.insert(provider, kind, id, None, None, 0).await?.ec2_id,
            });
        }
        Ok(out)
    }

    /// The EC2 id of one shared catalogue resource.
    pub async fn catalogue_id(
        &self,
        provider: &str,
        kind: Kind,
        backend_id: &str,
    ) -> Result<Arc<str>, StoreError> {
        if let Some(Cached::Present(e)) = self.cached(provider, kind, backend_id) {
            return Ok(e.ec2_id);
        }
        let mut ids = self.catalogue_ids(provider, kind, &[backend_id]).await?;
        Ok(ids.pop().unwrap_or_else(|| "".into()))
    }

    /// Records that `tenant` owns the resource (an instance it launched in
    /// `reservation`, a key pair it made) and returns its EC2 id. Recording the same
    /// resource again answers the same id.
    pub async fn record_owned(
        &self,
        provider: &str,
        kind: Kind,
        backend_id: &str,
        tenant: &str,
        reservation: &str,
        launch_index: u32,
    ) -> Result<Arc<str>, StoreError> {
        let reservation = (!reservation.is_empty()).then_some(reservation);
        let e = self
            .insert(
                provider,
                kind,
                backend_id,
                Some(tenant),
                reservation,
                launch_index,
            )
            .await?;
        Ok(e.ec2_id)
    }

    /// Inserts the row of a backend resource (or finds the one there) and caches it.
    async fn insert(
        &self,
        provider: &str,
        kind: Kind,
        backend_id: &str,
        tenant: Option<&str>,
        reservation: Option<&str>,
        launch_index: u32,
    ) -> Result<Entry, StoreError> {
        for salt in 0..16 {
            let ec2_id = derive_id(provider, kind, backend_id, salt);
            sqlx::query(
                "INSERT INTO cms_resources
                   (ec2_id, provider, kind, backend_id, tenant, reservation, launch_index, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&ec2_id)
            .bind(provider)
            .bind(kind.as_str())
            .bind(backend_id)
            .bind(tenant)
            .bind(reservation)
            .bind(i64::from(launch_index))
            .bind(now_secs())
            .execute(&self.pool)
            .await
            .map_err(err("cannot write the id map"))?;
            let row = sqlx::query(
                "SELECT ec2_id, backend_id, tenant, reservation, launch_index FROM cms_resources
                 WHERE provider = $1 AND kind = $2 AND backend_id = $3",
            )
            .bind(provider)
            .bind(kind.as_str())
            .bind(backend_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err("cannot read the id map"))?;
            if let Some(row) = row {
                let (_, entry) = Self::entry_of(&row).map_err(err("cannot read the id map"))?;
                self.remember(provider, kind, backend_id, Some(&entry));
                return Ok(entry);
            }
            // The derived id belongs to another resource: try the next salt.
        }
        Err(StoreError {
            what: format!("no free id for {} `{backend_id}`", kind.as_str()),
            source: sqlx::Error::RowNotFound,
        })
    }

    /// What an EC2 id names, if the store knows it.
    pub async fn resolve(&self, ec2_id: &str) -> Result<Option<Resolved>, StoreError> {
        if let Some(r) = self
            .by_ec2
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ec2_id)
        {
            return Ok(Some(r.clone()));
        }
        let row = sqlx::query(
            "SELECT ec2_id, provider, kind, backend_id, tenant, reservation, launch_index
             FROM cms_resources WHERE ec2_id = $1",
        )
        .bind(ec2_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err("cannot read the id map"))?;
        let Some(row) = row else { return Ok(None) };
        let read = |row: &AnyRow| -> Result<(String, String, Entry), sqlx::Error> {
            let provider: String = row.try_get("provider")?;
            let kind: String = row.try_get("kind")?;
            let (backend, entry) = Self::entry_of(row)?;
            Ok((provider, format!("{kind}\0{backend}"), entry))
        };
        let (provider, kind_backend, entry) = read(&row).map_err(err("cannot read the id map"))?;
        let (kind, backend) = kind_backend.split_once('\0').unwrap_or_default();
        let Some(kind) = Kind::from_str(kind) else {
            return Ok(None);
        };
        self.remember(&provider, kind, backend, Some(&entry));
        Ok(Some(Resolved {
            provider: provider.into(),
            kind,
            backend_id: backend.into(),
            tenant: entry.tenant,
            reservation: entry.reservation,
        }))
    }

    /// Forgets a resource that is gone for good (a deleted key pair, whose name may
    /// be used again).
    pub async fn forget(
        &self,
        provider: &str,
        kind: Kind,
        backend_id: &str,
    ) -> Result<(), StoreError> {
        let ec2 = match self.lookup(provider, kind, &[backend_id]).await?.pop() {
            Some(Some(e)) => e.ec2_id,
            _ => return Ok(()),
        };
        sqlx::query(
            "DELETE FROM cms_resources WHERE provider = $1 AND kind = $2 AND backend_id = $3",
        )
        .bind(provider)
        .bind(kind.as_str())
        .bind(backend_id)
        .execute(&self.pool)
        .await
        .map_err(err("cannot write the id map"))?;
        self.forget_cached(provider, kind, backend_id, &ec2);
        Ok(())
    }

    /// Claims `token` for a request of `request_hash` whose reservation would be
    /// `reservation`; answers the first claim's reservation, and whether the request
    /// is the same.
    pub async fn claim_token(
        &self,
        tenant: &str,
        provider: &str,
        token: &str,
        request_hash: &str,
        reservation: &str,
    ) -> Result<TokenClaim, StoreError> {
        sqlx::query(
            "INSERT INTO cms_client_tokens (tenant, provider, token, request_hash, reservation, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(provider)
        .bind(token)
        .bind(request_hash)
        .bind(reservation)
        .bind(now_secs())
        .execute(&self.pool)
        .await
        .map_err(err("cannot write a client token"))?;
        let row = sqlx::query(
            "SELECT request_hash, reservation FROM cms_client_tokens
             WHERE tenant = $1 AND provider = $2 AND token = $3",
        )
        .bind(tenant)
        .bind(provider)
        .bind(token)
        .fetch_one(&self.pool)
        .await
        .map_err(err("cannot read a client token"))?;
        let hash: String = row
            .try_get("request_hash")
            .map_err(err("cannot read a client token"))?;
        let first: String = row
            .try_get("reservation")
            .map_err(err("cannot read a client token"))?;
        Ok(TokenClaim {
            reservation: first,
            same_request: hash == request_hash,
        })
    }

    /// The instances of `tenant` launched in `reservation`: (backend id, EC2 id,
    /// launch index), in launch order.
    pub async fn reservation_instances(
        &self,
        tenant: &str,
        provider: &str,
        reservation: &str,
    ) -> Result<Vec<(String, String, u32)>, StoreError> {
        let rows = sqlx::query(
            "SELECT ec2_id, backend_id, tenant, reservation, launch_index FROM cms_resources
             WHERE provider = $1 AND kind = $2 AND tenant = $3 AND reservation = $4
             ORDER BY launch_index",
        )
        .bind(provider)
        .bind(Kind::Instance.as_str())
        .bind(tenant)
        .bind(reservation)
        .fetch_all(&self.pool)
        .await
        .map_err(err("cannot read a reservation"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (backend, e) = Self::entry_of(row).map_err(err("cannot read a reservation"))?;
            out.push((backend, e.ec2_id.to_string(), e.launch_index));
        }
        Ok(out)
    }
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:<redacted>{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_url(name: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "cms-store-{name}-{}-{}",
            std::process::id(),
            random_id("")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("state.db").display());
        (dir, url)
    }

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
        assert_eq!(Kind::of_id("i-1234567"), None);
        assert_eq!(Kind::of_id("i-1234567g"), None);
        assert_eq!(Kind::of_id("i-12345678"), Some(Kind::Instance));
        assert_eq!(Kind::of_id("x-12345678"), None);
        let r = random_id("r-");
        assert_eq!(r.len(), 19);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://cms:s3cret@db/cms"),
            "postgres://cms:<redacted>@db/cms"
        );
        assert_eq!(redact("sqlite://cms.db"), "sqlite://cms.db");
    }

    #[tokio::test]
    async fn survives_reopening() {
        let (dir, url) = temp_url("reopen");
        let store = Store::open(&url).await.unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            MIGRATIONS.len() as i64
        );
        let a = store
            .record_owned("p", Kind::Instance, "vm-1", "t1", "r-1", 0)
            .await
            .unwrap();
        let again = store
            .record_owned("p", Kind::Instance, "vm-1", "t1", "r-1", 0)
            .await
            .unwrap();
        assert_eq!(a, again);
        let imgs = store
            .catalogue_ids("p", Kind::Image, &["img-1", "img-2"])
            .await
            .unwrap();
        assert_ne!(imgs[0], imgs[1]);
        let claim = store
            .claim_token("t1", "p", "tok", "h1", "r-1")
            .await
            .unwrap();
        assert!(claim.same_request);
        drop(store);

        let store = Store::open(&url).await.unwrap();
        let r = store.resolve(&a).await.unwrap().unwrap();
        assert_eq!(
            (&*r.provider, r.kind, &*r.backend_id, r.tenant.as_deref()),
            ("p", Kind::Instance, "vm-1", Some("t1"))
        );
        let found = store
            .lookup("p", Kind::Instance, &["vm-1", "vm-2"])
            .await
            .unwrap();
        assert_eq!(found[0].as_ref().unwrap().ec2_id, a);
        assert!(found[1].is_none());
        let again = store
            .catalogue_ids("p", Kind::Image, &["img-2", "img-1"])
            .await
            .unwrap();
        assert_eq!((&again[0], &again[1]), (&imgs[1], &imgs[0]));
        let claim = store
            .claim_token("t1", "p", "tok", "h2", "r-2")
            .await
            .unwrap();
        assert_eq!(claim.reservation, "r-1");
        assert!(!claim.same_request);
        let other = store
            .claim_token("t2", "p", "tok", "h2", "r-3")
            .await
            .unwrap();
        assert_eq!(
            (other.reservation.as_str(), other.same_request),
            ("r-3", true)
        );
        let res = store.reservation_instances("t1", "p", "r-1").await.unwrap();
        assert_eq!(res, vec![("vm-1".to_owned(), a.to_string(), 0)]);
        assert_eq!(
            store.schema_version().await.unwrap(),
            MIGRATIONS.len() as i64
        );

        store.forget("p", Kind::Instance, "vm-1").await.unwrap();
        assert!(store.resolve(&a).await.unwrap().is_none());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn another_writer_is_seen_after_the_absent_ttl() {
        let (dir, url) = temp_url("replicas");
        let a = Store::open(&url).await.unwrap();
        let b = Store::open(&url).await.unwrap();
        assert!(b.lookup("p", Kind::Instance, &["vm-9"]).await.unwrap()[0].is_none());
        let id = a
            .record_owned("p", Kind::Instance, "vm-9", "t", "r-9", 0)
            .await
            .unwrap();
        // b resolves by EC2 id at once (a miss asks the database).
        assert!(b.resolve(&id).await.unwrap().is_some());
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_bad_url_is_a_clear_error() {
        let e = Store::open("sqlite:///nonexistent-dir-for-cms/x/state.db")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot open"), "{e}");
    }
}
