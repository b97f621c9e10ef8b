//! The server's configuration: a TOML file of providers and tenants.
//!
//! ```toml
//! listen = "127.0.0.1:8080"        # optional; --listen / CMS_LISTEN win
//! aggregate_timeout_ms = 10000     # per provider, for GET /v1/instances
//! state = "sqlite://cms.db"        # the server's SQL store; CMS_STATE wins
//! lease_ms = 10000                 # a create in flight whose replica died is settled after this
//! cached_objects = 100000          # id-map rows the process keeps in memory at most
//!
//! [[providers]]
//! name = "local"
//! driver = "memory"                # the driver's own keys follow (memory: MemoryConfig)
//! boot_delay_ms = 50
//! timeout_ms = 30000               # each driver call (default 30000)
//! retry_attempts = 3               # tries in all (default 3)
//! concurrency_limit = 64           # optional
//!
//! [providers.chaos]                # optional fault injection (cms_core::layers::ChaosConfig)
//! fault_rate = 0.0
//! rate_limit_rate = 0.0
//! latency_ms = 0                 # added latency: up to this
//! latency_min_ms = 0             # and at least this
//! seed = 1
//!
//! [rate_limits]                    # optional: every tenant's, per route class
//! read = { per_second = 100, burst = 200 }   # GET/HEAD, EC2 Describe*/Get*
//! write = { per_second = 10, burst = 20 }    # everything else
//!
//! [jobs]                           # optional: durable jobs and deployments (JobsConfig)
//! workers = 16                     # jobs one replica runs at once
//! creates_per_provider = 16        # a deployment's creates at once on one provider
//! check_interval_ms = 30000        # how often deployments are checked for healing
//!
//! [[tenants]]
//! name = "team-a"
//! api_key_env = "TEAM_A_KEY"       # or api_key = "…" (at most one of them)
//! access_key_id = "AKIATEAMA0000001" # for the EC2 frontend (SigV4)
//! secret_access_key_env = "TEAM_A_SECRET" # or secret_access_key = "…"
//! providers = ["*"]                # or a list of provider names
//! role = "member"                  # or "admin": sees and acts on every instance of its providers
//! max_instances = 20               # optional: instances on all providers at most
//! [tenants.max_instances_by_provider] # optional: per provider
//! local = 5
//! [tenants.rate_limits]            # optional: replaces `[rate_limits]` class by class
//! write = { per_second = 2, burst = 5 }
//! ```
//!
//! A tenant needs an API key (native API), an access key pair (EC2 frontend), or
//! both. Unknown keys are errors naming the key and its line. Secrets never appear in
//! `Debug` output.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cms_core::layers::{ChaosConfig, RetryPolicy};
use cms_core::memory::MemoryConfig;
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The name of the provider used when the configuration names none.
pub const DEFAULT_PROVIDER: &str = "local";
/// The name of the development tenant used when the configuration names none.
pub const DEV_TENANT: &str = "dev";
/// The store used when the configuration names none: a SQLite file in the working
/// directory.
pub const DEFAULT_STATE: &str = "sqlite://cms.db";

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen; the command line (`--listen`, `CMS_LISTEN`) wins.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// How long `GET /v1/instances` waits for each provider (default 10000).
    #[serde(default = "default_aggregate_timeout_ms")]
    pub aggregate_timeout_ms: u64,
    /// The SQL store (`sqlite://path`, `postgres://…`); default [`DEFAULT_STATE`];
    /// `CMS_STATE` wins.
    #[serde(default)]
    pub state: Option<String>,
    /// Named providers; one `local` memory provider when empty.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Tenants; one development tenant `dev` when empty.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// How long a replica's lease on a create in flight lasts unrenewed (default
    /// 10000): when a server dies mid-create, another replica (or the same server,
    /// restarted) finds out what became of the create this long after.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How many rows of the id map (public id ↔ backend id, owner) the process keeps
    /// in memory at most (default 100000, about 60 MiB when full); the ones it used
    /// least lately are read from the store again when needed. Listings that touch
    /// more objects than this read part of them from the store each time.
    #[serde(default = "default_cached_objects")]
    pub cached_objects: usize,
    /// Every tenant's request rate limits, per route class (see [`crate::limits`]).
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    /// Durable jobs and deployments (see [`crate::jobs`]).
    #[serde(default)]
    pub jobs: JobsConfig,
    /// The URL clients reach the server at (`https://cms.example.com`), when it is not
    /// what they send as `Host` (behind a proxy, or with several replicas): the CIMI
    /// frontend's `id`s and `href`s start with it.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// `[jobs]`: how a replica runs durable jobs and watches deployments.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs one replica runs at once (default 16).
    pub workers: usize,
    /// How often an idle replica looks for due jobs (default 500).
    pub poll_ms: u64,
    /// A running job's lease (default 10000): a job whose replica died is taken over
    /// this long after its last renewal.
    pub lease_ms: u64,
    /// The first pause before an attempt after a temporary error (default 500); it
    /// doubles with each attempt, with jitter, up to `backoff_max_ms` (default 60000).
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
    /// Instances a deployment creates at once on one provider (default 16).
    pub creates_per_provider: usize,
    /// How often each deployment's instances are checked for healing (default 30000).
    pub check_interval_ms: u64,
    /// How often a job waiting for instances looks at them again (default 500).
    pub wait_poll_ms: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 16,
            poll_ms: 500,
            lease_ms: 10_000,
            backoff_ms: 500,
            backoff_max_ms: 60_000,
            creates_per_provider: 16,
            check_interval_ms: 30_000,
            wait_poll_ms: 500,
        }
    }
}

impl JobsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v, min) in [
            ("workers", self.workers as u64, 1),
            ("poll_ms", self.poll_ms, 10),
            ("lease_ms", self.lease_ms, 100),
            ("backoff_ms", self.backoff_ms, 1),
            ("backoff_max_ms", self.backoff_max_ms, self.backoff_ms),
            ("creates_per_provider", self.creates_per_provider as u64, 1),
            ("check_interval_ms", self.check_interval_ms, 100),
            ("wait_poll_ms", self.wait_poll_ms, 10),
        ] {
            if v < min {
                return Err(ConfigError::new(format!(
                    "`jobs.{key}` must be at least {min}, not {v}"
                )));
            }
        }
        Ok(())
    }
}

/// A token bucket: bursts of up to `burst` requests, `per_second` on average.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests per second, on average (may be below 1: `0.5` is one every 2 s).
    pub per_second: f64,
    /// Requests at once after a quiet time (at least 1).
    pub burst: u32,
}

/// Rate limits per route class; a class without one is not limited.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Reads: the native API's GET and HEAD, EC2's Describe* and Get*.
    #[serde(default)]
    pub read: Option<RateConfig>,
    /// Everything else.
    #[serde(default)]
    pub write: Option<RateConfig>,
}

impl RateLimitsConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        for (class, r) in [("read", self.read), ("write", self.write)] {
            let Some(r) = r else { continue };
            if !(r.per_second.is_finite() && r.per_second > 0.0) {
                return Err(ConfigError::new(format!(
                    "{at}.{class}.per_second` must be a positive number"
                )));
            }
            if r.burst == 0 {
                return Err(ConfigError::new(format!(
                    "{at}.{class}.burst` must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

fn default_lease_ms() -> u64 {
    10_000
}

fn default_cached_objects() -> usize {
    crate::store::objects::DEFAULT_CACHED_OBJECTS
}

impl Default for Config {
    /// No file: one `local` memory provider, a development tenant.
    fn default() -> Self {
        Config {
            listen: None,
            aggregate_timeout_ms: default_aggregate_timeout_ms(),
            state: None,
            providers: Vec::new(),
            tenants: Vec::new(),
            lease_ms: default_lease_ms(),
            cached_objects: default_cached_objects(),
            rate_limits: RateLimitsConfig::default(),
            jobs: JobsConfig::default(),
            public_url: None,
        }
    }
}

fn default_aggregate_timeout_ms() -> u64 {
    10_000
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_retry_attempts() -> u32 {
    3
}

/// One provider: a named driver and the layers around it.
///
/// The driver's own keys sit beside the common ones (flattened), chosen by `driver`.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderConfig {
    /// The name clients use in URLs (`[A-Za-z0-9_.-]+`).
    pub name: String,
    /// Each driver call is bounded to this many milliseconds (each try, under retry).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Tries in all for temporary errors (1: no retry).
    #[serde(default = "default_retry_attempts")]
    pub retry_attempts: u32,
    /// At most this many driver calls in flight.
    #[serde(default)]
    pub concurrency_limit: Option<usize>,
    /// Fault injection, for testing what sits above the driver.
    #[serde(default)]
    pub chaos: Option<ChaosSettings>,
    /// The driver and its own settings.
    #[serde(flatten)]
    pub driver: DriverConfig,
}

/// The drivers the server knows, tagged by the `driver` key.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "driver", rename_all = "snake_case")]
pub enum DriverConfig {
    /// The in-memory cloud (`cms_core::memory`), with its [`MemoryConfig`] keys.
    Memory(MemoryConfig),
    /// Amazon EC2 or an EC2-compatible endpoint (`cms_driver_ec2::Ec2Config` keys:
    /// `region`, `endpoint`, `access_key_id_env`, …).
    #[cfg(feature = "ec2")]
    Ec2(cms_driver_ec2::Ec2Config),
    /// OpenNebula over XML-RPC (`cms_driver_opennebula::OpenNebulaConfig` keys:
    /// `endpoint`, `username`, `password_env`, …).
    #[cfg(feature = "opennebula")]
    Opennebula(cms_driver_opennebula::OpenNebulaConfig),
    /// OpenStack (`cms_driver_openstack::OpenStackConfig` keys: `auth_url`,
    /// `username`, `password_env`, `project_name`, … or `cloud`).
    #[cfg(feature = "openstack")]
    Openstack(cms_driver_openstack::OpenStackConfig),
    /// A provider of another cms server (`cms_driver_remote::RemoteConfig` keys:
    /// `endpoint`, `provider`, `api_key_env`, `timeout_secs`).
    #[cfg(feature = "remote")]
    #[serde(rename = "cms")]
    Remote(cms_driver_remote::RemoteConfig),
}

impl DriverConfig {
    /// The driver names accepted in `driver = "…"`.
    pub const KNOWN: &'static [&'static str] = &[
        "memory",
        #[cfg(feature = "ec2")]
        "ec2",
        #[cfg(feature = "opennebula")]
        "opennebula",
        #[cfg(feature = "openstack")]
        "openstack",
        #[cfg(feature = "remote")]
        "cms",
    ];

    /// The driver's name.
    pub fn name(&self) -> &'static str {
        match self {
            DriverConfig::Memory(_) => "memory",
            #[cfg(feature = "ec2")]
            DriverConfig::Ec2(_) => "ec2",
            #[cfg(feature = "opennebula")]
            DriverConfig::Opennebula(_) => "opennebula",
            #[cfg(feature = "openstack")]
            DriverConfig::Openstack(_) => "openstack",
            #[cfg(feature = "remote")]
            DriverConfig::Remote(_) => cms_driver_remote::DRIVER,
        }
    }
}

/// `[providers.chaos]`: what the chaos layer injects (see
/// [`ChaosConfig`](cms_core::layers::ChaosConfig)).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChaosSettings {
    /// Seed of the random choices.
    #[serde(default)]
    pub seed: u64,
    /// Probability (0..=1) of an `Unavailable` fault per call.
    #[serde(default)]
    pub fault_rate: f64,
    /// Probability (0..=1) of a `RateLimited` answer per call.
    #[serde(default)]
    pub rate_limit_rate: f64,
    /// Retry-after of injected rate limits, in milliseconds (default 1000).
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Added latency per call: uniformly up to this many milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Added latency per call: at least this many milliseconds (default 0).
    #[serde(default)]
    pub latency_min_ms: u64,
    /// Probability (0..=1) of added latency (default 1 when `latency_ms` is set).
    #[serde(default)]
    pub latency_rate: Option<f64>,
    /// Holds back answers this many milliseconds after the driver did the work.
    #[serde(default)]
    pub answer_delay_ms: u64,
    /// The operations whose answers are held back (`create_instance`, …; all when
    /// empty).
    #[serde(default)]
    pub answer_delay_operations: Vec<String>,
}

impl ChaosSettings {
    /// The core layer's configuration.
    pub fn to_chaos_config(&self) -> ChaosConfig {
        ChaosConfig {
            seed: self.seed,
            fault_rate: self.fault_rate,
            rate_limit_rate: self.rate_limit_rate,
            retry_after: Duration::from_millis(self.retry_after_ms.unwrap_or(1000)),
            latency_rate: self
                .latency_rate
                .unwrap_or(if self.latency_ms > 0 { 1.0 } else { 0.0 }),
            min_latency: Duration::from_millis(self.latency_min_ms.min(self.latency_ms)),
            max_latency: Duration::from_millis(self.latency_ms),
            answer_delay: Duration::from_millis(self.answer_delay_ms),
            answer_delay_ops: self
                .answer_delay_operations
                .iter()
                .filter_map(|o| cms_core::Operation::from_name(o))
                .collect(),
        }
    }
}

impl ProviderConfig {
    /// The default provider: `local` on the memory cloud with default settings.
    pub fn default_local() -> Self {
        ProviderConfig {
            name: DEFAULT_PROVIDER.to_owned(),
            timeout_ms: default_timeout_ms(),
            retry_attempts: default_retry_attempts(),
            concurrency_limit: None,
            chaos: None,
            driver: DriverConfig::Memory(MemoryConfig::default()),
        }
    }

    /// The retry policy of the provider's retry layer.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry_attempts.max(1),
            ..RetryPolicy::default()
        }
    }
}

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself: use it, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One tenant: a name, its API key and the providers it may use.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name (appears in logs; not a secret).
    pub name: String,
    /// The API key itself (prefer `api_key_env`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The name of an environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The access key id EC2 clients sign with (not a secret).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret access key (prefer `secret_access_key_env`).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// The name of an environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Provider names it may use; `["*"]` for all.
    pub providers: Vec<String>,
    /// `member` (default): its own instances; `admin`: every instance of its
    /// providers, other tenants' and those made outside cms included.
    #[serde(default)]
    pub role: crate::auth::Role,
    /// At most this many instances on all its providers together.
    #[serde(default)]
    pub max_instances: Option<u32>,
    /// At most this many instances on a provider, by provider name.
    #[serde(default)]
    pub max_instances_by_provider: std::collections::BTreeMap<String, u32>,
    /// Its own rate limits, replacing the server's `[rate_limits]` class by class.
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
}

/// A configuration error, with a message that names the key (and line) that is wrong.
#[derive(Debug)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A configuration error with `msg`.
pub fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::new(msg)
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("cannot read config file `{}`: {e}", path.display()))
        })?;
        Config::from_toml(&text)
            .map_err(|e| ConfigError::new(format!("config file `{}`: {e}", path.display())))
    }

    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| explain(text, e))?;
        config.validate()?;
        Ok(config)
    }

    /// The providers to build: the configured ones, or the default `local` one.
    pub fn effective_providers(&self) -> Vec<ProviderConfig> {
        if self.providers.is_empty() {
            vec![ProviderConfig::default_local()]
        } else {
            self.providers.clone()
        }
    }

    /// Checks what the types cannot: names, ranges, references.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.aggregate_timeout_ms == 0 {
            return Err(ConfigError::new("`aggregate_timeout_ms` must be positive"));
        }
        if self.lease_ms < 100 {
            return Err(ConfigError::new("`lease_ms` must be at least 100"));
        }
        if self.cached_objects < 1000 {
            return Err(ConfigError::new("`cached_objects` must be at least 1000"));
        }
        self.rate_limits.validate("`rate_limits")?;
        self.jobs.validate()?;
        if let Some(u) = &self.public_url {
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"))
                .unwrap_or("");
            let host = rest.trim_end_matches('/');
            if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
                return Err(ConfigError::new(format!(
                    "`public_url` must be http:// or https:// and a host (with its port), as https://cms.example.com; not `{u}`"
                )));
            }
        }
        let mut names = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}] (`{}`)", p.name);
            if !valid_name(&p.name) {
                return Err(ConfigError::new(format!(
                    "{at}: `name` must be 1 to 64 characters of A-Z, a-z, 0-9, `_`, `.`, `-`"
                )));
            }
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::new(format!(
                    "{at}: provider name `{}` is used twice",
                    p.name
                )));
            }
            if p.timeout_ms == 0 {
                return Err(ConfigError::new(format!(
                    "{at}: `timeout_ms` must be positive"
                )));
            }
            if p.retry_attempts == 0 {
                return Err(ConfigError::new(format!(
                    "{at}: `retry_attempts` must be at least 1"
                )));
            }
            if p.concurrency_limit == Some(0) {
                return Err(ConfigError::new(format!(
                    "{at}: `concurrency_limit` must be at least 1"
                )));
            }
            if let Some(c) = &p.chaos {
                for (key, v) in [
                    ("fault_rate", Some(c.fault_rate)),
                    ("rate_limit_rate", Some(c.rate_limit_rate)),
                    ("latency_rate", c.latency_rate),
                ] {
                    if let Some(v) = v {
                        if !(0.0..=1.0).contains(&v) {
                            return Err(ConfigError::new(format!(
                                "{at}: `chaos.{key}` must be between 0 and 1, not {v}"
                            )));
                        }
                    }
                }
                if let Some(o) = c
                    .answer_delay_operations
                    .iter()
                    .find(|o| cms_core::Operation::from_name(o).is_none())
                {
                    let known: Vec<&str> = cms_core::Operation::ALL
                        .iter()
                        .map(|o| o.as_str())
                        .collect();
                    return Err(ConfigError::new(format!(
                        "{at}: `chaos.answer_delay_operations` names unknown operation `{o}` (known: {})",
                        known.join(", ")
                    )));
                }
                if c.fault_rate + c.rate_limit_rate > 1.0 {
                    return Err(ConfigError::new(format!(
                        "{at}: `chaos.fault_rate` + `chaos.rate_limit_rate` must not exceed 1"
                    )));
                }
            }
        }
        let provider_names: HashSet<&str> = if self.providers.is_empty() {
            [DEFAULT_PROVIDER].into_iter().collect()
        } else {
            names
        };
        let mut tenant_names = HashSet::new();
        let mut access_keys = std::collections::HashMap::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let at = format!("tenants[{i}] (`{}`)", t.name);
            t.rate_limits.validate(&format!("{at}: `rate_limits"))?;
            if !valid_name(&t.name) {
                return Err(ConfigError::new(format!(
                    "{at}: `name` must be 1 to 64 characters of A-Z, a-z, 0-9, `_`, `.`, `-`"
                )));
            }
            if !tenant_names.insert(t.name.as_str()) {
                return Err(ConfigError::new(format!(
                    "{at}: tenant name `{}` is used twice",
                    t.name
                )));
            }
            match (&t.api_key, &t.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(format!(
                        "{at}: set exactly one of `api_key` and `api_key_env`, not both"
                    )))
                }
                (Some(k), None) if k.expose().is_empty() => {
                    return Err(ConfigError::new(format!("{at}: `api_key` is empty")))
                }
                (None, Some(v)) if v.is_empty() => {
                    return Err(ConfigError::new(format!("{at}: `api_key_env` is empty")))
                }
                _ => {}
            }
            match (
                &t.access_key_id,
                &t.secret_access_key,
                &t.secret_access_key_env,
            ) {
                (None, None, None) => {}
                (Some(_), Some(_), Some(_)) => {
                    return Err(ConfigError::new(format!(
                        "{at}: set exactly one of `secret_access_key` and `secret_access_key_env`, not both"
                    )))
                }
                (Some(id), s, e) if s.is_some() || e.is_some() => {
                    if !valid_access_key_id(id) {
                        return Err(ConfigError::new(format!(
                            "{at}: `access_key_id` must be 16 to 128 characters of A-Z and 0-9"
                        )));
                    }
                    if s.as_ref().is_some_and(|s| s.expose().len() < 16) {
                        return Err(ConfigError::new(format!(
                            "{at}: `secret_access_key` must be at least 16 characters"
                        )));
                    }
                    if e.as_ref().is_some_and(|e| e.is_empty()) {
                        return Err(ConfigError::new(format!(
                            "{at}: `secret_access_key_env` is empty"
                        )));
                    }
                    if let Some(other) = access_keys.insert(id.as_str(), t.name.as_str()) {
                        return Err(ConfigError::new(format!(
                            "{at}: `access_key_id` is also tenant `{other}`'s"
                        )));
                    }
                }
                (Some(_), _, _) => {
                    return Err(ConfigError::new(format!(
                        "{at}: `access_key_id` needs `secret_access_key_env` (or `secret_access_key`)"
                    )))
                }
                (None, _, _) => {
                    return Err(ConfigError::new(format!(
                        "{at}: a secret access key needs its `access_key_id`"
                    )))
                }
            }
            if t.api_key.is_none() && t.api_key_env.is_none() && t.access_key_id.is_none() {
                return Err(ConfigError::new(format!(
                    "{at}: set one of `api_key` or `api_key_env` (native API), or `access_key_id` with `secret_access_key_env` (EC2 API), or both"
                )));
            }
            if t.providers.is_empty() {
                return Err(ConfigError::new(format!(
                    "{at}: `providers` is empty; list provider names or [\"*\"]"
                )));
            }
            for p in t.max_instances_by_provider.keys() {
                if !provider_names.contains(p.as_str()) {
                    let mut known: Vec<&str> = provider_names.iter().copied().collect();
                    known.sort_unstable();
                    return Err(ConfigError::new(format!(
                        "{at}: `max_instances_by_provider` names unknown provider `{p}` (configured: {})",
                        known.join(", ")
                    )));
                }
            }
            for p in &t.providers {
                if p != "*" && !provider_names.contains(p.as_str()) {
                    let mut known: Vec<&str> = provider_names.iter().copied().collect();
                    known.sort_unstable();
                    return Err(ConfigError::new(format!(
                        "{at}: `providers` names unknown provider `{p}` (configured: {})",
                        known.join(", ")
                    )));
                }
            }
        }
        if let Some(state) = &self.state {
            if !(state.starts_with("sqlite:")
                || state.starts_with("postgres://")
                || state.starts_with("postgresql://"))
            {
                return Err(ConfigError::new(
                    "`state` must be a `sqlite://path` or `postgres://…` URL",
                ));
            }
        }
        Ok(())
    }

    /// The store's URL: `CMS_STATE` (given as `env`), else `state`, else
    /// [`DEFAULT_STATE`].
    pub fn state_url(&self, env: Option<String>) -> String {
        env.filter(|s| !s.is_empty())
            .or_else(|| self.state.clone())
            .unwrap_or_else(|| DEFAULT_STATE.to_owned())
    }
}

fn from_env(tenant: &str, var: &str, key: &str) -> Result<Secret, ConfigError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        Ok(_) => Err(ConfigError::new(format!(
            "tenant `{tenant}`: environment variable `{var}` ({key}) is empty"
        ))),
        Err(_) => Err(ConfigError::new(format!(
            "tenant `{tenant}`: environment variable `{var}` ({key}) is not set"
        ))),
    }
}

impl TenantConfig {
    /// The tenant's API key: `api_key`, or the value of the `api_key_env` variable;
    /// `None` when it has neither (an EC2-only tenant).
    pub fn resolve_key(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(k) = &self.api_key {
            return Ok(Some(k.clone()));
        }
        match self.api_key_env.as_deref() {
            Some(var) => from_env(&self.name, var, "api_key_env").map(Some),
            None => Ok(None),
        }
    }

    /// The tenant's access key id and secret access key, when it has them.
    pub fn resolve_access_key(&self) -> Result<Option<(String, Secret)>, ConfigError> {
        let Some(id) = &self.access_key_id else {
            return Ok(None);
        };
        let secret = match (&self.secret_access_key, &self.secret_access_key_env) {
            (Some(s), _) => s.clone(),
            (None, Some(var)) => from_env(&self.name, var, "secret_access_key_env")?,
            (None, None) => {
                return Err(ConfigError::new(format!(
                    "tenant `{}`: `access_key_id` needs `secret_access_key_env`",
                    self.name
                )))
            }
        };
        if secret.expose().len() < 16 {
            return Err(ConfigError::new(format!(
                "tenant `{}`: the secret access key must be at least 16 characters",
                self.name
            )));
        }
        Ok(Some((id.clone(), secret)))
    }
}

fn valid_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The keys every `[[providers]]` table takes besides its driver's own.
pub const PROVIDER_KEYS: &[&str] = &[
    "name",
    "driver",
    "timeout_ms",
    "retry_attempts",
    "concurrency_limit",
    "chaos",
];

/// Makes a TOML error say where the wrong key is and what is accepted: errors inside a
/// `[[providers]]` table (whose driver keys are flattened) point at the table, so find
/// the key's own line. The line itself is not quoted (toml's own rendering shows it),
/// since it may hold a secret.
fn explain(text: &str, e: toml::de::Error) -> ConfigError {
    let mut msg = match e.span() {
        Some(span) => {
            let at = span.start.min(text.len());
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            // What the line is about, without its value: the key before `=`, or the
            // table header.
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let whole = text[start..].lines().next().unwrap_or("").trim();
            let about = match whole.split_once('=') {
                Some((key, _))
                    if key.trim().bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b' ')
                    }) =>
                {
                    format!(" (key `{}`)", key.trim())
                }
                None if whole.starts_with('[') && !whole.contains(['"', '\'']) => {
                    format!(" (table `{whole}`)")
                }
                _ => String::new(),
            };
            format!(
                "TOML parse error at line {line}, column {column}{about}: {}",
                e.message().trim_end()
            )
        }
        None => format!("TOML parse error: {}", e.message().trim_end()),
    };
    let unknown = msg
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key.to_owned());
    if let (Some(key), Some(span)) = (unknown, e.span()) {
        let start_line = text[..span.start.min(text.len())].lines().count().max(1);
        let found = text
            .lines()
            .enumerate()
            .skip(start_line.saturating_sub(1))
            .find(|(_, l)| {
                let l = l.trim_start();
                l.strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
        if let Some((i, _)) = found {
            msg.push_str(&format!("\n`{key}` is on line {}", i + 1));
        }
        if text[span.start.min(text.len())..].starts_with("[[providers]]") {
            msg.push_str(&format!(
                "\na provider takes {} and its driver's keys",
                PROVIDER_KEYS.join(", ")
            ));
        }
    } else if msg.contains("unknown variant") {
        msg.push_str(&format!(
            "\n`driver` must be one of the known drivers: {}",
            DriverConfig::KNOWN.join(", ")
        ));
    }
    ConfigError::new(msg)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let c = Config::from_toml(
            r#"
            listen = "127.0.0.1:0"
            aggregate_timeout_ms = 500
            [[providers]]
            name = "a"
            driver = "memory"
            boot_delay_ms = 50
            timeout_ms = 100
            retry_attempts = 1
            concurrency_limit = 4
            [providers.chaos]
            fault_rate = 1.0
            seed = 7
            [[tenants]]
            name = "t"
            api_key = "sekrit-sekrit"
            providers = ["*"]
            "#,
        )
        .unwrap();
        assert_eq!(c.providers.len(), 1);
        let p = &c.providers[0];
        assert_eq!(p.timeout_ms, 100);
        assert_eq!(p.concurrency_limit, Some(4));
        let DriverConfig::Memory(m) = &p.driver else {
            panic!("a memory provider")
        };
        assert_eq!(m.boot_delay, Duration::from_millis(50));
        assert_eq!(p.chaos.as_ref().unwrap().fault_rate, 1.0);
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn parse_errors_do_not_quote_the_line_that_may_hold_a_secret() {
        let e = err("[[tenants]]\nname = \"t\"\napi_key = \"sekrit-sekrit\nproviders = [\"*\"]\n");
        assert!(e.contains("line 3, column"), "{e}");
        assert!(!e.contains("sekrit"), "{e}");
        let e = err("[[tenants]]\nname = \"t\"\napi_key = sekrit\n");
        assert!(e.contains("line 3") && e.contains("key `api_key`"), "{e}");
        assert!(!e.contains("sekrit"), "{e}");
        let e = err("[[tenants]]\nname = \"t\"\nproviders = [\n  \"sek=rit\", 5]\n");
        assert!(!e.contains("sek"), "{e}");
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_toml("[[providers]]\nname = \"x\"\ndriver = \"memory\"\n").unwrap();
        assert_eq!(c.providers[0].timeout_ms, 30_000);
        assert_eq!(c.providers[0].retry_attempts, 3);
        assert_eq!(c.aggregate_timeout_ms, 10_000);
        let DriverConfig::Memory(m) = &c.providers[0].driver else {
            panic!("a memory provider")
        };
        assert_eq!(*m, MemoryConfig::default());
    }

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn rate_limits_parse_and_are_checked() {
        let c = Config::from_toml(
            "[rate_limits]\nread = { per_second = 0.5, burst = 1 }\n\
             [[tenants]]\nname = \"a\"\napi_key = \"k-0123456789abcdef0123\"\n\
             providers = [\"*\"]\n[tenants.rate_limits]\nwrite = { per_second = 2, burst = 3 }\n",
        )
        .unwrap();
        assert_eq!(
            c.rate_limits.read,
            Some(RateConfig {
                per_second: 0.5,
                burst: 1
            })
        );
        assert_eq!(c.rate_limits.write, None);
        assert_eq!(c.tenants[0].rate_limits.write.map(|r| r.burst), Some(3));
        let e = err("[rate_limits]\nwrite = { per_second = 0, burst = 1 }\n");
        assert!(
            e.contains("`rate_limits.write.per_second` must be a positive"),
            "{e}"
        );
        let e = err("[rate_limits]\nread = { per_second = 1, burst = 0 }\n");
        assert!(
            e.contains("`rate_limits.read.burst` must be at least 1"),
            "{e}"
        );
        let e = err("[rate_limits]\nreads = { per_second = 1, burst = 1 }\n");
        assert!(e.contains("reads"), "{e}");
        let e = err(
            "[[tenants]]\nname = \"a\"\napi_key = \"k-0123456789abcdef0123\"\n\
             providers = [\"*\"]\n[tenants.rate_limits]\nwrite = { per_second = -1, burst = 1 }\n",
        );
        assert!(
            e.contains("tenants[0] (`a`): `rate_limits.write.per_second`"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = err("listen = \"127.0.0.1:0\"\nbogus = 1\n");
        assert!(e.contains("bogus") && e.contains("line 2"), "{e}");
        let e = err("[[providers]]\nname = \"x\"\ndriver = \"nope\"\n");
        assert!(e.contains("nope") && e.contains("memory"), "{e}");
        let e = err("[[providers]]\nname = \"x\"\ndriver = \"memory\"\nboot_dely_ms = 5\n");
        assert!(e.contains("boot_dely_ms") && e.contains("line 4"), "{e}");
        assert!(e.contains("timeout_ms"), "{e}");
        let e = err("[[providers]]\nname = \"x\"\n");
        assert!(e.contains("driver"), "{e}");
        let e =
            err("[[providers]]\nname = \"x\"\ndriver = \"memory\"\n[providers.chaos]\nfault = 1\n");
        assert!(e.contains("fault") && e.contains("line 5"), "{e}");
        let e = err("[[tenants]]\nname = \"t\"\nproviders = [\"*\"]\n");
        assert!(e.contains("api_key"), "{e}");
        let e = err("[[tenants]]\nname = \"t\"\napi_key = \"k\"\napi_key_env = \"K\"\nproviders = [\"*\"]\n");
        assert!(e.contains("exactly one"), "{e}");
        let e = err("[[tenants]]\nname = \"t\"\napi_key = \"k\"\nproviders = [\"zzz\"]\n");
        assert!(e.contains("zzz") && e.contains("local"), "{e}");
        let e = err("[[providers]]\nname = \"a b\"\ndriver = \"memory\"\n");
        assert!(e.contains("name"), "{e}");
        let e = err("listen = 5\n");
        assert!(e.contains("listen"), "{e}");
        let e = err("cached_objects = 10\n");
        assert!(e.contains("`cached_objects` must be at least 1000"), "{e}");
    }
}
