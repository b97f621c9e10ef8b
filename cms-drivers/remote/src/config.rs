//! The driver's configuration: which cms server, which of its providers, and the API
//! key to call it with.
//!
//! In a TOML file (the server's `[[providers]]` table, with `driver = "cms"`):
//!
//! ```toml
//! endpoint = "https://cms.example.com"   # the other server's base URL
//! provider = "local"                     # one of its providers
//! api_key_env = "UPSTREAM_CMS_KEY"       # the variable holding a tenant's API key
//! timeout_secs = 30                      # each HTTP request (default 30)
//! ```
//!
//! The key itself is never in the configuration: `api_key_env` names the environment
//! variable that holds it. Programs that have the key in hand (the `cms` command line
//! reads it from its own config) give it with [`RemoteConfig::with_api_key`].

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use cms_core::{Error, Result};

/// An API key, shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach one provider of another cms server.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The server's base URL (`http://HOST:8080`, or with a path prefix when it sits
    /// behind a proxy: `https://gw.example.com/cms`).
    pub endpoint: String,
    /// The provider of that server this driver stands for.
    pub provider: String,
    /// The environment variable holding the API key (`Authorization: Bearer`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds one HTTP request may take (default 30).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// A key given by the program rather than read from the environment.
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
}

fn default_timeout_secs() -> u64 {
    30
}

pub(crate) fn bad(key: &str, why: impl fmt::Display) -> Error {
    Error::invalid_argument(key, why).with_context("driver", crate::DRIVER)
}

impl RemoteConfig {
    /// A configuration for `provider` of the server at `endpoint`, with the API key in
    /// the environment variable `api_key_env`.
    pub fn new(endpoint: &str, provider: &str, api_key_env: &str) -> RemoteConfig {
        RemoteConfig {
            endpoint: endpoint.into(),
            provider: provider.into(),
            api_key_env: Some(api_key_env.into()),
            timeout_secs: default_timeout_secs(),
            api_key: None,
        }
    }

    /// The same, with the key given rather than read from `api_key_env`.
    pub fn with_api_key(mut self, key: ApiKey) -> RemoteConfig {
        self.api_key = Some(key);
        self.api_key_env = None;
        self
    }

    /// Reads a configuration from any serde format (a TOML table, JSON); errors name
    /// the key that is wrong (`timeout_secs: invalid type …`).
    pub fn from_deserializer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RemoteConfig> {
        let config: RemoteConfig = cms_core::config::read(d, crate::DRIVER)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<RemoteConfig> {
        RemoteConfig::from_deserializer(toml::Deserializer::new(text))
    }

    /// A configuration from the environment, as the `cms` command line reads it:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `CMS_URL` | the server's base URL | `http://127.0.0.1:8080` |
    /// | `CMS_PROVIDER` | the provider | `local` |
    /// | `CMS_API_KEY` | the API key itself | (required) |
    /// | `CMS_TIMEOUT_SECS` | seconds per request | 30 |
    ///
    /// Errors name the variable that is wrong.
    pub fn from_env() -> Result<RemoteConfig> {
        RemoteConfig::from_vars(|k| std::env::var(k).ok())
    }

    /// [`from_env`](RemoteConfig::from_env) over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<RemoteConfig> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let timeout_secs = match get("CMS_TIMEOUT_SECS") {
            None => default_timeout_secs(),
            Some(t) => t.trim().parse().map_err(|_| {
                bad(
                    "CMS_TIMEOUT_SECS",
                    format!("`{t}` is not a number of seconds"),
                )
            })?,
        };
        if get("CMS_API_KEY").is_none() {
            return Err(bad(
                "CMS_API_KEY",
                "not set; it holds the API key of a tenant of the server",
            ));
        }
        let config = RemoteConfig {
            endpoint: get("CMS_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            provider: get("CMS_PROVIDER").unwrap_or_else(|| "local".into()),
            api_key_env: Some("CMS_API_KEY".into()),
            timeout_secs,
            api_key: None,
        };
        config.validate().map_err(|e| {
            cms_core::config::renamed_to_variable(
                e,
                &[
                    ("endpoint", "CMS_URL"),
                    ("provider", "CMS_PROVIDER"),
                    ("timeout_secs", "CMS_TIMEOUT_SECS"),
                ],
                crate::DRIVER,
            )
        })?;
        Ok(config)
    }

    /// Checks the configuration; errors name the key that is wrong.
    pub fn validate(&self) -> Result<()> {
        check_endpoint(&self.endpoint)?;
        if self.provider.trim().is_empty() {
            return Err(bad("provider", "must name one of the server's providers"));
        }
        if self.api_key.is_none()
            && self
                .api_key_env
                .as_deref()
                .is_none_or(|v| v.trim().is_empty())
        {
            return Err(bad(
                "api_key_env",
                "must name the environment variable that holds the server's API key",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(bad("timeout_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// The API key: the one given, or the value of `api_key_env`.
    pub fn resolve_api_key(&self) -> Result<ApiKey> {
        if let Some(k) = &self.api_key {
            return Ok(k.clone());
        }
        let var = self.api_key_env.as_deref().unwrap_or_default();
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(ApiKey::new(v.trim())),
            _ => Err(bad(
                "api_key_env",
                format!("the environment variable `{var}` is not set or empty"),
            )),
        }
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Checks a server base URL: http or https, a host, no credentials, no query.
pub fn check_endpoint(endpoint: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| {
        bad(
            "endpoint",
            format!("`{endpoint}` is not a URL ({e}); expected `http://HOST:8080`"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "endpoint",
            format!("`{endpoint}` must be an http:// or https:// URL"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "endpoint",
            "must not carry credentials; give the API key by `api_key_env`",
        ));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "endpoint",
            format!("`{endpoint}` must be a base URL with a host and no query"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_and_names_wrong_keys() {
        let c = RemoteConfig::from_toml(
            "endpoint = \"http://h:8080\"\nprovider = \"local\"\napi_key_env = \"K\"\n",
        )
        .unwrap();
        assert_eq!(c.timeout_secs, 30);
        assert_eq!(c.provider, "local");
        for (text, key) in [
            (
                "endpoint = \"h\"\nprovider = \"p\"\napi_key_env = \"K\"",
                "endpoint",
            ),
            (
                "endpoint = \"ftp://h\"\nprovider = \"p\"\napi_key_env = \"K\"",
                "endpoint",
            ),
            (
                "endpoint = \"http://u:secret@h\"\nprovider = \"p\"\napi_key_env = \"K\"",
                "endpoint",
            ),
            ("endpoint = \"http://h\"\nprovider = \"p\"", "api_key_env"),
            ("endpoint = \"http://h\"\napi_key_env = \"K\"", "provider"),
            (
                "endpoint = \"http://h\"\nprovider = \"p\"\napi_key_env = \"K\"\ntimeout_secs = 0",
                "timeout_secs",
            ),
            (
                "endpoint = \"http://h\"\nprovider = \"p\"\napi_key_env = \"K\"\napi_key = \"x\"",
                "api_key",
            ),
        ] {
            let e = RemoteConfig::from_toml(text).unwrap_err();
            let named = e.context_value("argument") == Some(key)
                || e.message().contains(&format!("`{key}`"));
            assert!(named, "{key} not named in {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn reads_the_environment_and_names_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = RemoteConfig::from_vars(vars(&[("CMS_API_KEY", "k")])).unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:8080");
        assert_eq!(c.provider, "local");
        let e = RemoteConfig::from_vars(vars(&[])).unwrap_err();
        assert_eq!(e.context_value("argument"), Some("CMS_API_KEY"));
        let e = RemoteConfig::from_vars(vars(&[("CMS_API_KEY", "k"), ("CMS_URL", "nope")]))
            .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("CMS_URL"), "{e}");
        let e = RemoteConfig::from_vars(vars(&[("CMS_API_KEY", "k"), ("CMS_TIMEOUT_SECS", "x")]))
            .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("CMS_TIMEOUT_SECS"));
    }

    #[test]
    fn keys_never_show() {
        let c = RemoteConfig::new("http://h", "p", "K").with_api_key(ApiKey::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
