//! The server's state: the service (providers and store), tenants, metrics, the
//! OpenAPI document.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cms_core::memory::MemoryCloud;
use cms_core::Cloud;
use rand::Rng;

use crate::auth::{generate_access_key, generate_key, Tenant, Tenants};
use crate::config::{Config, ConfigError, DriverConfig, ProviderConfig, Secret, DEV_TENANT};
use crate::limits::RateLimits;
use crate::metrics::HttpMetrics;
use crate::service::{Provider, Service};
use crate::store::Store;

/// Everything a request needs, shared by all requests.
pub struct App {
    pub(crate) service: Service,
    pub(crate) tenants: Tenants,
    pub(crate) metrics: HttpMetrics,
    pub(crate) aggregate_timeout: Duration,
    pub(crate) openapi: Bytes,
    pub(crate) jobs: crate::jobs::Jobs,
    /// `public_url` of the configuration: where clients reach the server.
    pub(crate) public_url: Option<String>,
    /// Whether the listener speaks TLS (hrefs then start with `https://`).
    pub tls: bool,
    request_prefix: u32,
    request_counter: AtomicU64,
}

/// What the process environment says at start: the development tenant's keys and
/// the store's URL, when set.
#[derive(Clone, Default)]
pub struct Env {
    /// `CMS_DEV_API_KEY`.
    pub dev_api_key: Option<String>,
    /// `CMS_DEV_ACCESS_KEY_ID`.
    pub dev_access_key_id: Option<String>,
    /// `CMS_DEV_SECRET_ACCESS_KEY`.
    pub dev_secret_access_key: Option<String>,
    /// `CMS_STATE`: wins over the configuration's `state`.
    pub state: Option<String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("state", &self.state.as_deref().map(crate::store::redact))
            .finish_non_exhaustive()
    }
}

impl Env {
    /// Reads the variables from the process environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            dev_api_key: var("CMS_DEV_API_KEY"),
            dev_access_key_id: var("CMS_DEV_ACCESS_KEY_ID"),
            dev_secret_access_key: var("CMS_DEV_SECRET_ACCESS_KEY"),
            state: var("CMS_STATE"),
        }
    }
}

/// Where one of the development tenant's secrets came from.
#[derive(Debug)]
pub enum Origin {
    /// From the environment.
    FromEnv,
    /// Generated at start: the caller prints it, once.
    Generated(Secret),
}

/// The development tenant, when there is one.
#[derive(Debug)]
pub enum DevKey {
    /// Tenants are configured: there is no development tenant.
    None,
    /// The development tenant `dev` and where its keys came from.
    Dev {
        /// Its API key (`CMS_DEV_API_KEY`).
        api_key: Origin,
        /// Its access key id (`CMS_DEV_ACCESS_KEY_ID`, not a secret).
        access_key_id: String,
        /// Its secret access key (`CMS_DEV_SECRET_ACCESS_KEY`).
        secret_access_key: Origin,
    },
}

/// Builds the provider's layered handle from its configuration.
pub async fn build_cloud(p: &ProviderConfig) -> Result<Cloud, ConfigError> {
    let builder = match &p.driver {
        DriverConfig::Memory(m) => Cloud::builder(MemoryCloud::with_config(m.clone())),
        #[cfg(feature = "ec2")]
        DriverConfig::Ec2(c) => Cloud::builder(
            cms_driver_ec2::Ec2Driver::new(c.clone())
                .await
                .map_err(|e| provider_error(p, e))?,
        ),
        #[cfg(feature = "opennebula")]
        DriverConfig::Opennebula(c) => Cloud::builder(
            cms_driver_opennebula::OpenNebulaDriver::new(c.clone())
                .map_err(|e| provider_error(p, e))?,
        ),
        #[cfg(feature = "openstack")]
        DriverConfig::Openstack(c) => Cloud::builder(
            cms_driver_openstack::OpenStackDriver::new(c.clone())
                .map_err(|e| provider_error(p, e))?,
        ),
        #[cfg(feature = "remote")]
        DriverConfig::Remote(c) => Cloud::builder(
            cms_driver_remote::RemoteDriver::connect(c)
                .await
                .map_err(|e| provider_error(p, e))?,
        ),
    };
    let mut b = builder
        .provider(p.name.clone())
        .retry(p.retry_policy())
        .timeout(Duration::from_millis(p.timeout_ms))
        .metrics();
    if let Some(n) = p.concurrency_limit {
        b = b.concurrency_limit(n);
    }
    if let Some(c) = &p.chaos {
        b = b.chaos(c.to_chaos_config());
    }
    Ok(b.build())
}

#[cfg(any(
    feature = "ec2",
    feature = "opennebula",
    feature = "openstack",
    feature = "remote"
))]
fn provider_error(p: &ProviderConfig, e: cms_core::Error) -> ConfigError {
    config_error(format!(
        "provider `{}` (driver {}): {e}",
        p.name,
        p.driver.name()
    ))
}

impl App {
    /// Builds the state from a checked configuration and what the environment says
    /// (see [`Env`]); opens and migrates the store.
    pub async fn new(config: &Config, env: Env) -> Result<(App, DevKey), ConfigError> {
        config.validate()?;
        let state = config.state_url(env.state.clone());
        let store = Store::open(&state)
            .await
            .map_err(|e| config_error(e.to_string()))?
            .with_cached_objects(config.cached_objects);
        let mut providers = Vec::new();
        for (i, p) in config.effective_providers().iter().enumerate() {
            providers.push(Provider::new(
                &p.name,
                p.driver.name(),
                build_cloud(p).await?,
                i,
            ));
        }
        let mut tenants = Tenants::default();
        let dev = if config.tenants.is_empty() {
            let (key, api_key) = match env.dev_api_key {
                Some(k) => (Secret::new(k), Origin::FromEnv),
                None => {
                    let k = generate_key();
                    (k.clone(), Origin::Generated(k))
                }
            };
            let (access_key_id, secret, secret_access_key) =
                match (env.dev_access_key_id, env.dev_secret_access_key) {
                    (Some(id), Some(s)) => (id, Secret::new(s), Origin::FromEnv),
                    (None, None) => {
                        let (id, s) = generate_access_key();
                        (id, s.clone(), Origin::Generated(s))
                    }
                    _ => return Err(config_error(
                        "set both CMS_DEV_ACCESS_KEY_ID and CMS_DEV_SECRET_ACCESS_KEY, or neither"
                            .to_owned(),
                    )),
                };
            let tenant = Tenant {
                rate_limits: RateLimits::new(&config.rate_limits, &Default::default()),
                ..Tenant::member(DEV_TENANT, providers.len())
            };
            tenants
                .add_with(Some(&key), Some((access_key_id.clone(), secret)), tenant)
                .map_err(config_error)?;
            DevKey::Dev {
                api_key,
                access_key_id,
                secret_access_key,
            }
        } else {
            for t in &config.tenants {
                let key = t.resolve_key()?;
                let access = t.resolve_access_key()?;
                let all = t.providers.iter().any(|p| p == "*");
                let allowed = providers
                    .iter()
                    .map(|p| all || t.providers.iter().any(|n| **n == *p.name))
                    .collect();
                let tenant = Tenant {
                    name: t.name.as_str().into(),
                    allowed,
                    role: t.role,
                    max_instances: t.max_instances,
                    max_instances_on: providers
                        .iter()
                        .map(|p| t.max_instances_by_provider.get(&*p.name).copied())
                        .collect(),
                    rate_limits: RateLimits::new(&config.rate_limits, &t.rate_limits),
                };
                tenants
                    .add_with(key.as_ref(), access, tenant)
                    .map_err(config_error)?;
            }
            DevKey::None
        };
        let openapi = Bytes::from(crate::frontends::native::openapi::document_json());
        let app = App {
            service: Service::new(providers, store, Duration::from_millis(config.lease_ms)),
            tenants,
            metrics: HttpMetrics::new(),
            aggregate_timeout: Duration::from_millis(config.aggregate_timeout_ms),
            openapi,
            jobs: crate::jobs::Jobs::new(config.jobs),
            public_url: config.public_url.clone(),
            tls: false,
            request_prefix: rand::thread_rng().gen(),
            request_counter: AtomicU64::new(0),
        };
        Ok((app, dev))
    }

    /// The tenant-scoped service.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The tenants.
    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// A new request id: 24 hex characters, unique in this process.
    pub fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{n:016x}", self.request_prefix)
    }
}

fn config_error(msg: String) -> ConfigError {
    crate::config::invalid(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tenants_see_their_providers_only() {
        let config = Config::from_toml(
            r#"
            state = "sqlite::memory:"
            [[providers]]
            name = "a"
            driver = "memory"
            [[providers]]
            name = "b"
            driver = "memory"
            [[tenants]]
            name = "all"
            api_key = "key-all"
            providers = ["*"]
            [[tenants]]
            name = "only-b"
            api_key = "key-b"
            providers = ["b"]
            "#,
        )
        .unwrap();
        let env = Env {
            dev_api_key: Some("ignored".into()),
            ..Env::default()
        };
        let (app, dev) = App::new(&config, env).await.unwrap();
        assert!(matches!(dev, DevKey::None));
        let all = app.tenants.by_api_key("key-all").unwrap();
        let only_b = app.tenants.by_api_key("key-b").unwrap();
        let s = app.service();
        assert!(s.provider(all, "a").is_ok());
        assert!(s.provider(only_b, "b").is_ok());
        let kind = |r: Result<&Provider, cms_core::Error>| r.unwrap_err().kind();
        assert_eq!(
            kind(s.provider(only_b, "a")),
            cms_core::ErrorKind::PermissionDenied
        );
        assert_eq!(kind(s.provider(all, "zzz")), cms_core::ErrorKind::NotFound);
        assert_eq!(all.role, crate::auth::Role::Member);
        assert_ne!(app.next_request_id(), app.next_request_id());
    }

    #[tokio::test]
    async fn without_tenants_there_is_a_dev_tenant() {
        let memory = Env {
            state: Some("sqlite::memory:".into()),
            ..Env::default()
        };
        let (app, dev) = App::new(&Config::default(), memory.clone()).await.unwrap();
        let DevKey::Dev {
            api_key: Origin::Generated(key),
            access_key_id,
            secret_access_key: Origin::Generated(secret),
        } = dev
        else {
            panic!("no generated keys")
        };
        let (s, t) = app.tenants.by_access_key(&access_key_id).unwrap();
        assert_eq!((s.expose(), &*t.name), (secret.expose(), "dev"));
        assert_eq!(app.service().providers().len(), 1);
        assert_eq!(&*app.service().providers()[0].name, "local");
        let t = app.tenants.by_api_key(key.expose()).unwrap();
        assert_eq!(&*t.name, "dev");
        let env = Env {
            dev_api_key: Some("from-env".into()),
            dev_access_key_id: Some("AKIDEXAMPLE00000".into()),
            dev_secret_access_key: Some("a-secret-from-the-environment".into()),
            ..memory.clone()
        };
        let (app, dev) = App::new(&Config::default(), env).await.unwrap();
        assert!(matches!(
            dev,
            DevKey::Dev {
                api_key: Origin::FromEnv,
                secret_access_key: Origin::FromEnv,
                ..
            }
        ));
        assert!(app.tenants.by_access_key("AKIDEXAMPLE00000").is_some());
        let half = Env {
            dev_access_key_id: Some("AKIDEXAMPLE00000".into()),
            ..memory
        };
        assert!(App::new(&Config::default(), half).await.is_err());
    }
}
