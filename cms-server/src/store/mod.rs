//! What the server must remember, in SQL: the public ids it handed out and what they
//! name ([`objects`]), creates in flight and the quota they hold ([`creates`]), and the
//! idempotency keys of clients ([`tokens`]). Only the [service](crate::service) calls it.
//!
//! SQLite by default (`state = "sqlite://cms.db"`), PostgreSQL when several replicas
//! share the work (`state = "postgres://…"`): the queries use only what both speak
//! (`$N` parameters, `INSERT … ON CONFLICT DO NOTHING`, partial unique indexes, `TEXT`
//! and `BIGINT`). Migrations are applied at start, each once, recorded in
//! `cms_schema_migrations`; replicas starting together take turns (a PostgreSQL
//! advisory lock, SQLite's write lock), so each migration runs once.
//!
//! Public ids are derived from the provider, the kind and the backend id (a SHA-256
//! prefix), so two replicas mapping the same backend resource at once agree; the
//! unique constraints settle any race, and a collision moves to the next salt. A row
//! records who owns the object and what identifies it (the client token it was made
//! with): when a backend id comes back naming another object, the old row is marked
//! replaced and the new object gets a new public id, so an old id never names a new
//! object.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use cms_server::store::{Kind, Record, Store};
//! let dir = std::env::temp_dir().join(format!("cms-store-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let url = format!("sqlite://{}", dir.join("state.db").display());
//! let store = Store::open(&url).await.unwrap();
//! let rec = Record { tenant: Some("team-a"), identity: Some("token-1"), ..Record::default() };
//! let e = store.record("local", Kind::Instance, "vm-1", &rec).await.unwrap();
//! assert!(e.public_id.starts_with("i-") && e.public_id.len() == 19);
//! drop(store);
//! // A new process finds what the first one wrote.
//! let store = Store::open(&url).await.unwrap();
//! let found = store.resolve(&e.public_id).await.unwrap().unwrap();
//! assert_eq!(&*found.backend_id, "vm-1");
//! assert_eq!(found.entry.tenant.as_deref(), Some("team-a"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # }
//! ```

pub mod creates;
pub mod deployments;
pub mod details;
pub mod jobs;
pub mod objects;
pub mod templates;
pub mod tokens;

use std::fmt;
use std::sync::RwLock;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Executor, Row};

pub use creates::{Begin, CreateSlot, PendingCreate, Quota, QuotaScope};
pub use deployments::{DeploymentRow, HistoryEntry, MemberRow};
pub use details::{CREATED, FINGERPRINT, USER_DATA};
pub use jobs::{Held, JobEnd, JobPage, JobRow, JobState, NewJob};
pub use objects::{Entry, Record, Resolved, Seen};
pub use templates::TemplateRow;
pub use tokens::TokenClaim;

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
    // 2: objects know what identifies them and when they ended, and may be replaced
    // by a new object with the same backend id; creates in flight are journaled.
    "CREATE TABLE cms_objects (
        public_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        backend_id TEXT NOT NULL,
        identity TEXT,
        tenant TEXT,
        reservation TEXT,
        launch_index BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        ended_at BIGINT,
        replaced BIGINT NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX cms_objects_current ON cms_objects (provider, kind, backend_id)
        WHERE replaced = 0;
    CREATE INDEX cms_objects_identity ON cms_objects (provider, identity);
    CREATE INDEX cms_objects_live ON cms_objects (tenant, kind, ended_at);
    INSERT INTO cms_objects
        (public_id, provider, kind, backend_id, tenant, reservation, launch_index, created_at)
        SELECT ec2_id, provider, kind, backend_id, tenant, reservation, launch_index, created_at
        FROM cms_resources;
    DROP TABLE cms_resources;
    CREATE TABLE cms_creates (
        provider TEXT NOT NULL,
        token TEXT NOT NULL,
        tenant TEXT NOT NULL,
        reservation TEXT NOT NULL,
        launch_index BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        lease_owner TEXT NOT NULL,
        lease_until BIGINT NOT NULL,
        PRIMARY KEY (provider, token)
    );
    CREATE INDEX cms_creates_tenant ON cms_creates (tenant, provider);
    CREATE INDEX cms_creates_lease ON cms_creates (lease_until);
    CREATE TABLE cms_locks (
        name TEXT PRIMARY KEY,
        n BIGINT NOT NULL DEFAULT 0
    )",
    // 3: what frontends keep beside an object (an instance's user data, a key pair's
    // fingerprint), and each tenant's own tags on objects it does not own alone
    // (images) or whose backend keeps none (key pairs).
    "CREATE TABLE cms_attributes (
        public_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (public_id, name)
    );
    CREATE TABLE cms_tags (
        tenant TEXT NOT NULL,
        public_id TEXT NOT NULL,
        tag_key TEXT NOT NULL,
        tag_value TEXT NOT NULL,
        PRIMARY KEY (tenant, public_id, tag_key)
    )",
    // 4: durable jobs (one active job per deduplication key), deployments, their
    // instances, and the history of deployments and instances.
    "CREATE TABLE cms_jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        input TEXT NOT NULL,
        result TEXT,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        deadline BIGINT,
        error_kind TEXT,
        error_message TEXT,
        progress BIGINT NOT NULL DEFAULT 0,
        message TEXT,
        cancel_requested BIGINT NOT NULL DEFAULT 0,
        dedupe TEXT,
        lease_owner TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX cms_jobs_active ON cms_jobs (dedupe)
        WHERE dedupe IS NOT NULL AND state IN ('queued', 'running');
    CREATE INDEX cms_jobs_due ON cms_jobs (state, next_attempt_at);
    CREATE INDEX cms_jobs_tenant ON cms_jobs (tenant, created_at);
    CREATE INDEX cms_jobs_target ON cms_jobs (target);
    CREATE TABLE cms_deployments (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        count BIGINT NOT NULL,
        state TEXT NOT NULL,
        generation BIGINT NOT NULL,
        next_index BIGINT NOT NULL,
        expires_at BIGINT,
        checked_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX cms_deployments_tenant ON cms_deployments (tenant, id);
    CREATE TABLE cms_members (
        deployment TEXT NOT NULL,
        idx BIGINT NOT NULL,
        part BIGINT NOT NULL,
        provider TEXT NOT NULL,
        public_id TEXT,
        backend_id TEXT,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (deployment, idx)
    );
    CREATE INDEX cms_members_public ON cms_members (public_id);
    CREATE TABLE cms_history (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        at BIGINT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX cms_history_subject ON cms_history (subject, at)",
    // 5: machine templates a tenant keeps for a provider (CIMI's MachineTemplate).
    "CREATE TABLE cms_templates (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        provider TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX cms_templates_tenant ON cms_templates (tenant, provider, id)",
];

/// A key no other program takes: PostgreSQL's advisory lock around migrations.
const MIGRATION_LOCK: i64 = 0x0063_6d73_5f6d_6967; // "cms_mig"

macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident => $prefix:literal, $name:literal;)*) => {
        /// What a public id names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $kind,)*
        }

        const KINDS: usize = [$(Kind::$kind),*].len();

        impl Kind {
            /// The id prefix, dash included.
            pub fn prefix(self) -> &'static str {
                match self {
                    $(Kind::$kind => concat!($prefix, "-"),)*
                }
            }

            /// The name stored in the `kind` column.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)*
                }
            }

            fn from_str(s: &str) -> Option<Kind> {
                match s {
                    $($name => Some(Kind::$kind),)*
                    _ => None,
                }
            }

            fn of_prefix(p: &str) -> Option<Kind> {
                match p {
                    $($prefix => Some(Kind::$kind),)*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// An instance: `i-` and 17 hex digits.
    Instance => "i", "instance";
    /// An image: `ami-` and 17 hex digits.
    Image => "ami", "image";
    /// A network seen as a subnet: `subnet-` and 17 hex digits.
    Subnet => "subnet", "subnet";
    /// A network seen as a VPC: `vpc-` and 17 hex digits.
    Vpc => "vpc", "vpc";
    /// A key pair (backend id: its backend name): `key-` and 17 hex digits.
    KeyPair => "key", "key-pair";
    /// A volume: `vol-` and 17 hex digits.
    Volume => "vol", "volume";
    /// A snapshot: `snap-` and 17 hex digits.
    Snapshot => "snap", "snapshot";
    /// A security group: `sg-` and 17 hex digits.
    SecurityGroup => "sg", "security-group";
    /// A public address (its allocation): `eipalloc-` and 17 hex digits. Its
    /// association is `eipassoc-` and the same digits.
    Address => "eipalloc", "address";
}

impl Kind {
    /// The kind a public id's prefix names, if it has the right shape (prefix and 8 or
    /// 17 lower-case hex digits, as EC2 ids have).
    pub fn of_id(id: &str) -> Option<Kind> {
        let (prefix, hex) = id.split_once('-')?;
        let kind = Kind::of_prefix(prefix)?;
        let ok = matches!(hex.len(), 8 | 17)
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then_some(kind)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A store error: the database could not be opened, migrated, read or written.
#[derive(Debug)]
pub struct StoreError {
    what: String,
    source: Option<sqlx::Error>,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "state store: {}: {s}", self.what),
            None => write!(f, "state store: {}", self.what),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl StoreError {
    pub(crate) fn plain(what: impl Into<String>) -> StoreError {
        StoreError {
            what: what.into(),
            source: None,
        }
    }
}

pub(crate) fn err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError {
        what,
        source: Some(source),
    }
}

/// Which SQL the store speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The statement that opens a write transaction: on SQLite an immediate one,
    /// which takes the write lock at once (another writer waits for it rather than
    /// failing at its first write).
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }
}

/// A connection inside a transaction. [`end`](TxConn::end) commits or rolls it back;
/// one dropped before that (the task carrying it was canceled mid-transaction: a
/// client gone, a job stopped at shutdown) is closed instead of going back to the
/// pool, so its transaction rolls back with it and no lock it took outlives it.
pub(crate) struct TxConn {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    open: bool,
}

impl TxConn {
    /// Ends the transaction with `sql` (`COMMIT` or `ROLLBACK`).
    pub(crate) async fn end(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let conn = self.conn.as_mut().expect("a transaction's connection");
        conn.execute(sql).await?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for TxConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("a transaction's connection")
    }
}

impl std::ops::DerefMut for TxConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("a transaction's connection")
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if self.open {
            if let Some(c) = self.conn.take() {
                drop(c.detach());
            }
        }
    }
}

/// The server's SQL store, with the process's cache of what never changes in it.
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    cache: RwLock<objects::Cache>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

/// `$from, $from+1, …` for `n` values.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store at `url`:
    /// `sqlite://path/to/file.db`, `sqlite::memory:` (tests) or
    /// `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let mut options = AnyPoolOptions::new();
        if dialect == Dialect::Sqlite {
            // One writer at a time is SQLite's rule; the pool's connections wait
            // for each other instead of failing with SQLITE_BUSY. WAL lets readers
            // go on while one writes; NORMAL sync loses nothing when the process
            // dies, only (at worst) the last commits on power loss.
            options = options
                .max_connections(if url.contains(":memory:") { 1 } else { 4 })
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                });
        } else {
            options = options
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10));
        }
        let shown = redact(url);
        let pool = options
            .connect(&with_create_mode(url))
            .await
            .map_err(err(format!("cannot open `{shown}`")))?;
        if dialect == Dialect::Sqlite && !url.contains(":memory:") {
            // Switching to WAL takes the database alone. While another process opens
            // the same new file, SQLite may answer SQLITE_BUSY at once, without
            // waiting for its busy timeout: try again, for as long as that timeout.
            let mut waited = Duration::ZERO;
            loop {
                match sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await
                {
                    Ok(_) => break,
                    Err(e) if sqlite_busy(&e) && waited < Duration::from_secs(10) => {
                        let pause = Duration::from_millis(20);
                        tokio::time::sleep(pause).await;
                        waited += pause;
                    }
                    Err(e) => {
                        return Err(err(format!("cannot set WAL mode on `{shown}`"))(e));
                    }
                }
            }
        }
        let store = Store {
            pool,
            dialect,
            cache: RwLock::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Bounds the process's cache of the id map to `objects` rows (default
    /// [`objects::DEFAULT_CACHED_OBJECTS`]; see [`objects::Cache`]).
    pub fn with_cached_objects(self, objects: usize) -> Store {
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = objects::Cache::new(objects);
        self
    }

    /// Another handle on the same database (the same connections), with a small
    /// cache of its own: for tasks that outlive a request (a stream of a job's
    /// progress).
    pub fn handle(&self) -> Store {
        Store {
            pool: self.pool.clone(),
            dialect: self.dialect,
            cache: RwLock::new(objects::Cache::new(64)),
        }
    }

    /// Which SQL this store speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection in a transaction begun with `begin` (see [`TxConn`]); `what` names
    /// the work in errors.
    pub(crate) async fn begin_tx(&self, begin: &str, what: &str) -> Result<TxConn, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(err(format!("cannot connect to {what}")))?;
        conn.execute(begin)
            .await
            .map_err(err("cannot begin a transaction"))?;
        Ok(TxConn {
            conn: Some(conn),
            open: true,
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(err("cannot connect to migrate"))?;
        if self.dialect == Dialect::Postgres {
            // Replicas starting together migrate one after the other.
            sqlx::query(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await
                .map_err(err("cannot take the migration lock"))?;
        }
        let result = self.migrate_on(&mut conn).await;
        if self.dialect == Dialect::Postgres {
            let _ = sqlx::query(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await;
        }
        result
    }

    async fn migrate_on(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS cms_schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at BIGINT NOT NULL
            )",
        )
        .execute(&mut *conn)
        .await
        .map_err(err("cannot create the migrations table"))?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            // SQLite: an immediate transaction takes the write lock at once, so another
            // process starting now waits here and then sees the migration done.
            conn.execute(self.dialect.begin_write())
                .await
                .map_err(err("cannot begin a migration"))?;
            let applied = self.apply(conn, version, sql).await;
            let end = if applied.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            let ended = conn.execute(end).await;
            applied?;
            ended.map_err(err(format!("cannot commit migration {version}")))?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        version: i64,
        sql: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("SELECT version FROM cms_schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(err("cannot read the applied migrations"))?;
        if done.is_some() {
            return Ok(());
        }
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement)
                .execute(&mut *conn)
                .await
                .map_err(err(format!("migration {version} failed")))?;
        }
        sqlx::query("INSERT INTO cms_schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now_secs())
            .execute(&mut *conn)
            .await
            .map_err(err(format!("cannot record migration {version}")))?;
        tracing::info!(version, "state store migrated");
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
pub(crate) mod testing {
    //! Stores for tests: a fresh SQLite file, and a fresh PostgreSQL database when the
    //! test run has a PostgreSQL server (`CMS_TEST_POSTGRES`, an admin URL; the README's
    //! test command starts one).

    use super::*;

    /// A temporary store location, removed on drop.
    pub struct TestDb {
        pub url: String,
        dir: Option<std::path::PathBuf>,
        drop_db: Option<(String, String)>,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Some(d) = &self.dir {
                let _ = std::fs::remove_dir_all(d);
            }
            if let Some((admin, name)) = self.drop_db.take() {
                // Best effort, on a thread of its own: drop runs inside the test's runtime.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            if let Ok(pool) = AnyPoolOptions::new()
                                .max_connections(1)
                                .connect(&admin)
                                .await
                            {
                                let _ = sqlx::query(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .execute(&pool)
                                .await;
                            }
                        });
                    }
                })
                .join();
            }
        }
    }

    /// A fresh SQLite store location.
    pub fn sqlite(name: &str) -> TestDb {
        let dir = std::env::temp_dir().join(format!(
            "cms-store-{name}-{}-{}",
            std::process::id(),
            random_id("")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestDb {
            url: format!("sqlite://{}", dir.join("state.db").display()),
            dir: Some(dir),
            drop_db: None,
        }
    }

    /// A fresh PostgreSQL database, when the run has a server.
    pub async fn postgres() -> Option<TestDb> {
        let admin = std::env::var("CMS_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())?;
        sqlx::any::install_default_drivers();
        let name = format!("cms_unit_{}", random_id("").replace('-', ""));
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
            .expect("connect to CMS_TEST_POSTGRES");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create a test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(TestDb {
            url: format!("{base}/{name}"),
            dir: None,
            drop_db: Some((admin, name)),
        })
    }

    /// Every store the run can test on: SQLite, and PostgreSQL when there is one.
    pub async fn all(name: &str) -> Vec<TestDb> {
        let mut v = vec![sqlite(name)];
        if let Some(pg) = postgres().await {
            v.push(pg);
        }
        v
    }
}

/// Whether SQLite answered that the database is busy or locked (codes 5 and 6, and
/// their extended codes).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_public_ids() {
        assert_eq!(Kind::of_id("i-1234567"), None);
        assert_eq!(Kind::of_id("i-1234567g"), None);
        assert_eq!(Kind::of_id("i-12345678"), Some(Kind::Instance));
        assert_eq!(Kind::of_id("x-12345678"), None);
        assert_eq!(Kind::of_id("ami-0123456789abcdef0"), Some(Kind::Image));
        assert_eq!(
            Kind::of_id("eipalloc-0123456789abcdef0"),
            Some(Kind::Address)
        );
        assert_eq!(
            Kind::of_id("sg-0123456789abcdef0"),
            Some(Kind::SecurityGroup)
        );
        for k in [Kind::Volume, Kind::Snapshot, Kind::KeyPair] {
            assert_eq!(Kind::from_str(k.as_str()), Some(k));
            assert_eq!(Kind::of_id(&format!("{}01234567", k.prefix())), Some(k));
        }
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
    async fn a_bad_url_is_a_clear_error() {
        let e = Store::open("sqlite:///nonexistent-dir-for-cms/x/state.db")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot open"), "{e}");
    }

    #[tokio::test]
    async fn migrations_run_once_when_stores_open_together() {
        for db in testing::all("migrate").await {
            let opened = futures::future::join_all((0..4).map(|_| Store::open(&db.url))).await;
            for s in opened {
                let s = s.unwrap_or_else(|e| panic!("{}: {e}", redact(&db.url)));
                assert_eq!(s.schema_version().await.unwrap(), MIGRATIONS.len() as i64);
            }
        }
    }

    #[tokio::test]
    async fn a_transaction_dropped_midway_holds_no_lock() {
        for db in testing::all("dropped-tx").await {
            let store = Store::open(&db.url).await.unwrap();
            store.add_history("x", "e", "d").await.unwrap();
            {
                // A task canceled mid-transaction, after its first write.
                let mut tx = store
                    .begin_tx(store.dialect().begin_write(), "test")
                    .await
                    .unwrap();
                sqlx::query("UPDATE cms_history SET detail = 'changed' WHERE subject = 'x'")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            // Others write at once (not after SQLite's busy timeout), and the
            // abandoned write is gone.
            let started = std::time::Instant::now();
            store.add_history("y", "e", "d").await.unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            let h = store.history("x", 10).await.unwrap();
            assert_eq!(h[0].detail, "d");
        }
    }

    #[tokio::test]
    async fn version_1_rows_are_kept() {
        let db = testing::sqlite("v1");
        {
            sqlx::any::install_default_drivers();
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&with_create_mode(&db.url))
                .await
                .unwrap();
            sqlx::query(
                "CREATE TABLE cms_schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            for statement in MIGRATIONS[0].split(';') {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            sqlx::query("INSERT INTO cms_schema_migrations VALUES (1, 0)")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO cms_resources VALUES ('i-0123456789abcdef0', 'p', 'instance', 'vm-1', 't1', 'r-1', 0, 0)",
            )
            .execute(&pool)
            .await
            .unwrap();
        }
        let store = Store::open(&db.url).await.unwrap();
        let r = store.resolve("i-0123456789abcdef0").await.unwrap().unwrap();
        assert_eq!(
            (&*r.backend_id, r.entry.tenant.as_deref()),
            ("vm-1", Some("t1"))
        );
    }
}
