//! The server's state: providers, tenants, metrics, the OpenAPI document.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cms_core::memory::MemoryCloud;
use cms_core::{Cloud, ErrorKind};
use rand::Rng;

use crate::auth::{generate_key, Tenant, Tenants};
use crate::config::{Config, ConfigError, DriverConfig, ProviderConfig, Secret, DEV_TENANT};
use crate::metrics::HttpMetrics;
use crate::problem::ApiError;

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    /// Its name, as in URLs.
    pub name: Arc<str>,
    /// The driver's name (`memory`).
    pub driver: &'static str,
    /// The layered handle.
    pub cloud: Cloud,
}

/// Everything a request needs, shared by all requests.
pub struct App {
    pub(crate) providers: Vec<Provider>,
    by_name: HashMap<Arc<str>, usize>,
    pub(crate) tenants: Tenants,
    pub(crate) metrics: HttpMetrics,
    pub(crate) aggregate_timeout: Duration,
    pub(crate) openapi: Bytes,
    request_prefix: u32,
    request_counter: AtomicU64,
}

/// Where the development tenant's key came from.
#[derive(Debug)]
pub enum DevKey {
    /// Tenants are configured: there is no development tenant.
    None,
    /// From `CMS_DEV_API_KEY`.
    FromEnv,
    /// Generated at start: the caller prints it, once.
    Generated(Secret),
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

#[cfg(any(feature = "ec2", feature = "opennebula"))]
fn provider_error(p: &ProviderConfig, e: cms_core::Error) -> ConfigError {
    config_error(format!(
        "provider `{}` (driver {}): {e}",
        p.name,
        p.driver.name()
    ))
}

impl App {
    /// Builds the state from a checked configuration. `dev_key` is the value of
    /// `CMS_DEV_API_KEY`, used when no tenants are configured.
    pub async fn new(
        config: &Config,
        dev_key: Option<String>,
    ) -> Result<(App, DevKey), ConfigError> {
        config.validate()?;
        let mut providers = Vec::new();
        for p in config.effective_providers().iter() {
            providers.push(Provider {
                name: p.name.as_str().into(),
                driver: p.driver.name(),
                cloud: build_cloud(p).await?,
            });
        }
        let by_name = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect::<HashMap<_, _>>();
        let mut tenants = Tenants::default();
        let dev = if config.tenants.is_empty() {
            let (key, dev) = match dev_key.filter(|k| !k.is_empty()) {
                Some(k) => (Secret::new(k), DevKey::FromEnv),
                None => {
                    let k = generate_key();
                    (k.clone(), DevKey::Generated(k))
                }
            };
            let tenant = Tenant {
                name: DEV_TENANT.into(),
                allowed: vec![true; providers.len()],
            };
            tenants.add(&key, tenant).map_err(config_error)?;
            dev
        } else {
            for t in &config.tenants {
                let key = t.resolve_key()?;
                let all = t.providers.iter().any(|p| p == "*");
                let allowed = providers
                    .iter()
                    .map(|p| all || t.providers.iter().any(|n| **n == *p.name))
                    .collect();
                let tenant = Tenant {
                    name: t.name.as_str().into(),
                    allowed,
                };
                tenants.add(&key, tenant).map_err(config_error)?;
            }
            DevKey::None
        };
        let openapi = Bytes::from(crate::openapi::document_json());
        let app = App {
            providers,
            by_name,
            tenants,
            metrics: HttpMetrics::new(),
            aggregate_timeout: Duration::from_millis(config.aggregate_timeout_ms),
            openapi,
            request_prefix: rand::thread_rng().gen(),
            request_counter: AtomicU64::new(0),
        };
        Ok((app, dev))
    }

    /// The providers, in configuration order.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The provider `name`, if `tenant` may use it: 404 when unknown, 403 when not
    /// allowed.
    pub fn provider_for(&self, tenant: &Tenant, name: &str) -> Result<&Provider, ApiError> {
        match self.by_name.get(name) {
            None => Err(ApiError::core(
                ErrorKind::NotFound,
                format!("provider `{name}` not found"),
            )
            .with_provider(name)),
            Some(&i) if !tenant.may_use(i) => Err(ApiError::core(
                ErrorKind::PermissionDenied,
                format!("tenant `{}` may not use provider `{name}`", tenant.name),
            )
            .with_provider(name)),
            Some(&i) => Ok(&self.providers[i]),
        }
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

    fn headers(key: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn tenants_see_their_providers_only() {
        let config = Config::from_toml(
            r#"
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
        let (app, dev) = App::new(&config, Some("ignored".into())).await.unwrap();
        assert!(matches!(dev, DevKey::None));
        let all = app.tenants.authenticate(&headers("key-all")).unwrap();
        let only_b = app.tenants.authenticate(&headers("key-b")).unwrap();
        assert!(app.provider_for(all, "a").is_ok());
        assert!(app.provider_for(only_b, "b").is_ok());
        assert_eq!(app.provider_for(only_b, "a").unwrap_err().status(), 403);
        assert_eq!(app.provider_for(all, "zzz").unwrap_err().status(), 404);
        assert_ne!(app.next_request_id(), app.next_request_id());
    }

    #[tokio::test]
    async fn without_tenants_there_is_a_dev_tenant() {
        let (app, dev) = App::new(&Config::default(), None).await.unwrap();
        let DevKey::Generated(key) = dev else {
            panic!("no generated key")
        };
        assert_eq!(app.providers().len(), 1);
        assert_eq!(&*app.providers()[0].name, "local");
        let t = app.tenants.authenticate(&headers(key.expose())).unwrap();
        assert_eq!(&*t.name, "dev");
        let (_, dev) = App::new(&Config::default(), Some("from-env".into()))
            .await
            .unwrap();
        assert!(matches!(dev, DevKey::FromEnv));
    }
}
