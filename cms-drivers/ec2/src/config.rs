//! The driver's configuration: a serde struct, or [`Ec2Config::from_env`].

use std::fmt;
use std::time::Duration;

use cms_core::{Error, Result};
use serde::Deserialize;

/// How to reach an EC2 (or EC2-compatible) endpoint.
///
/// Deserialized from the server's provider configuration (unknown keys are refused,
/// naming the key), or read from the environment with [`Ec2Config::from_env`].
/// Secrets are never part of it: credentials come from the standard AWS chain
/// (environment, shared profile files, web identity, container and instance
/// metadata), or from two environment variables that the configuration *names*
/// (`access_key_id_env`, `secret_access_key_env`), or, in code only, from
/// [`credentials`](Ec2Config::credentials).
///
/// ```
/// let config: cms_driver_ec2::Ec2Config = serde_json::from_str(
///     r#"{ "region": "eu-west-1", "image_owners": ["self", "amazon"] }"#,
/// ).unwrap();
/// assert_eq!(config.region, "eu-west-1");
/// assert!(config.endpoint.is_none());
/// config.validate().unwrap();
///
/// let err = serde_json::from_str::<cms_driver_ec2::Ec2Config>(r#"{ "region": "x", "zone": "a" }"#)
///     .unwrap_err();
/// assert!(err.to_string().contains("unknown field `zone`"));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    /// The region (`us-east-1`); with a custom endpoint, the region requests are
    /// signed for.
    pub region: String,
    /// An EC2-compatible endpoint (`http://127.0.0.1:5000` for moto, a private
    /// cloud's EC2 API, or cms's own EC2 frontend); AWS's endpoint for the region
    /// when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The name of the environment variable holding the access key id. With
    /// `secret_access_key_env`; both absent means the standard AWS chain.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// The name of the environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// The name of the environment variable holding a session token, if any.
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// Whose images `list_images` shows (DescribeImages `Owners`): account ids,
    /// `self`, `amazon`, `aws-marketplace`. Never the whole public catalogue.
    #[serde(default = "default_image_owners")]
    pub image_owners: Vec<String>,
    /// The VPC networks are listed in and created in; the default VPC when absent.
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// How long to wait for a connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one request may take, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Credentials given in code (never read from a file): they win over the
    /// environment variables and the standard chain.
    #[serde(skip)]
    pub credentials: Option<StaticCredentials>,
}

fn default_image_owners() -> Vec<String> {
    vec!["self".to_owned()]
}

fn default_connect_timeout_ms() -> u64 {
    3_100
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

/// An access key pair given in code. Its `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl StaticCredentials {
    /// A key pair without session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for Ec2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Config")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id_env", &self.access_key_id_env)
            .field("secret_access_key_env", &self.secret_access_key_env)
            .field("session_token_env", &self.session_token_env)
            .field("image_owners", &self.image_owners)
            .field("vpc_id", &self.vpc_id)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// Where the credentials of a driver come from, once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CredentialSource {
    /// The standard AWS chain.
    Chain,
    /// A key pair (from code or from the named environment variables).
    Static(StaticCredentials),
}

impl Ec2Config {
    /// A configuration for `region` with every other setting at its default.
    pub fn new(region: impl Into<String>) -> Self {
        Ec2Config {
            region: region.into(),
            endpoint: None,
            access_key_id_env: None,
            secret_access_key_env: None,
            session_token_env: None,
            image_owners: default_image_owners(),
            vpc_id: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            credentials: None,
        }
    }

    /// Sets the endpoint.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets credentials in code.
    pub fn credentials(mut self, credentials: StaticCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets whose images are listed.
    pub fn image_owners<I, S>(mut self, owners: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.image_owners = owners.into_iter().map(Into::into).collect();
        self
    }

    /// Reads the configuration from the environment:
    ///
    /// | variable | setting |
    /// |---|---|
    /// | `CMS_EC2_REGION`, else `AWS_REGION`, else `AWS_DEFAULT_REGION` | `region` (required) |
    /// | `CMS_EC2_ENDPOINT` | `endpoint` |
    /// | `CMS_EC2_ACCESS_KEY_ID_ENV`, `CMS_EC2_SECRET_ACCESS_KEY_ENV`, `CMS_EC2_SESSION_TOKEN_ENV` | the names of the credential variables |
    /// | `CMS_EC2_IMAGE_OWNERS` | `image_owners`, comma-separated |
    /// | `CMS_EC2_VPC_ID` | `vpc_id` |
    /// | `CMS_EC2_CONNECT_TIMEOUT_MS`, `CMS_EC2_REQUEST_TIMEOUT_MS` | the timeouts |
    ///
    /// Errors name the variable that is missing or wrong.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Ec2Config::from_env) with another source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let region = get("CMS_EC2_REGION")
            .or_else(|| get("AWS_REGION"))
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                Error::invalid_argument(
                    "CMS_EC2_REGION",
                    "not set (nor AWS_REGION, nor AWS_DEFAULT_REGION): name the EC2 region",
                )
            })?;
        let millis = |k: &str, default: u64| -> Result<u64> {
            match get(k) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    Error::invalid_argument(k, format!("`{v}` is not a number of milliseconds"))
                }),
            }
        };
        let config = Ec2Config {
            region,
            endpoint: get("CMS_EC2_ENDPOINT"),
            access_key_id_env: get("CMS_EC2_ACCESS_KEY_ID_ENV"),
            secret_access_key_env: get("CMS_EC2_SECRET_ACCESS_KEY_ENV"),
            session_token_env: get("CMS_EC2_SESSION_TOKEN_ENV"),
            image_owners: match get("CMS_EC2_IMAGE_OWNERS") {
                Some(v) => v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => default_image_owners(),
            },
            vpc_id: get("CMS_EC2_VPC_ID"),
            connect_timeout_ms: millis("CMS_EC2_CONNECT_TIMEOUT_MS", default_connect_timeout_ms())?,
            request_timeout_ms: millis("CMS_EC2_REQUEST_TIMEOUT_MS", default_request_timeout_ms())?,
            credentials: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values; errors name the key that is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.region.trim().is_empty() {
            return Err(Error::invalid_argument("region", "must not be empty"));
        }
        if !self
            .region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::invalid_argument(
                "region",
                format!("`{}` is not a region name such as `us-east-1`", self.region),
            ));
        }
        if let Some(e) = &self.endpoint {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(Error::invalid_argument(
                    "endpoint",
                    format!("`{e}` is not an http:// or https:// URL"),
                ));
            }
        }
        match (&self.access_key_id_env, &self.secret_access_key_env) {
            (Some(_), None) => return Err(Error::invalid_argument(
                "secret_access_key_env",
                "missing: `access_key_id_env` is set, so name the variable of the secret key too",
            )),
            (None, Some(_)) => return Err(Error::invalid_argument(
                "access_key_id_env",
                "missing: `secret_access_key_env` is set, so name the variable of the key id too",
            )),
            _ => {}
        }
        if self.session_token_env.is_some() && self.access_key_id_env.is_none() {
            return Err(Error::invalid_argument(
                "session_token_env",
                "needs `access_key_id_env` and `secret_access_key_env`",
            ));
        }
        if self.image_owners.is_empty() || self.image_owners.iter().any(|o| o.trim().is_empty()) {
            return Err(Error::invalid_argument(
                "image_owners",
                "must list at least one owner (`self`, `amazon`, an account id), none empty",
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(Error::invalid_argument(
                "connect_timeout_ms",
                "must be more than 0",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(Error::invalid_argument(
                "request_timeout_ms",
                "must be more than 0",
            ));
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Where the credentials come from, reading the named variables through `lookup`.
    /// Errors name the variable, never its value.
    pub(crate) fn credential_source(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<CredentialSource> {
        if let Some(c) = &self.credentials {
            return Ok(CredentialSource::Static(c.clone()));
        }
        let (Some(id_var), Some(secret_var)) =
            (&self.access_key_id_env, &self.secret_access_key_env)
        else {
            return Ok(CredentialSource::Chain);
        };
        let read = |key: &'static str, var: &str| -> Result<String> {
            lookup(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::new(
                    cms_core::ErrorKind::Unauthenticated,
                    format!("the environment variable `{var}` named by `{key}` is not set"),
                )
                .with_context("argument", key)
            })
        };
        let access_key_id = read("access_key_id_env", id_var)?;
        let secret_access_key = read("secret_access_key_env", secret_var)?;
        let session_token = match &self.session_token_env {
            Some(var) => Some(read("session_token_env", var)?),
            None => None,
        };
        Ok(CredentialSource::Static(StaticCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn deserializes_with_defaults() {
        let c: Ec2Config = toml::from_str("region = \"us-east-1\"").unwrap();
        assert_eq!(c, Ec2Config::new("us-east-1"));
        assert_eq!(c.image_owners, ["self"]);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let e = toml::from_str::<Ec2Config>("region = \"x\"\nendpont = \"http://h\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `endpont`"), "{e}");
        let e = toml::from_str::<Ec2Config>("endpoint = \"http://h\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `region`"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |c: Ec2Config| {
            c.validate()
                .unwrap_err()
                .context_value("argument")
                .map(str::to_owned)
        };
        assert_eq!(bad(Ec2Config::new("")).as_deref(), Some("region"));
        assert_eq!(
            bad(Ec2Config::new("us-east-1").endpoint("localhost:5000")).as_deref(),
            Some("endpoint")
        );
        assert_eq!(
            bad(Ec2Config::new("us-east-1").image_owners(Vec::<String>::new())).as_deref(),
            Some("image_owners")
        );
        let mut c = Ec2Config::new("us-east-1");
        c.access_key_id_env = Some("KEY".into());
        assert_eq!(bad(c).as_deref(), Some("secret_access_key_env"));
    }

    #[test]
    fn from_env_reads_variables_and_names_the_wrong_one() {
        let c = Ec2Config::from_lookup(vars(&[
            ("AWS_REGION", "eu-west-1"),
            ("CMS_EC2_ENDPOINT", "http://127.0.0.1:5000"),
            ("CMS_EC2_IMAGE_OWNERS", "self, amazon"),
            ("CMS_EC2_ACCESS_KEY_ID_ENV", "MY_KEY"),
            ("CMS_EC2_SECRET_ACCESS_KEY_ENV", "MY_SECRET"),
        ]))
        .unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.image_owners, ["self", "amazon"]);
        assert_eq!(c.access_key_id_env.as_deref(), Some("MY_KEY"));

        let e = Ec2Config::from_lookup(vars(&[])).unwrap_err();
        assert_eq!(e.context_value("argument"), Some("CMS_EC2_REGION"));
        let e = Ec2Config::from_lookup(vars(&[
            ("CMS_EC2_REGION", "us-east-1"),
            ("CMS_EC2_REQUEST_TIMEOUT_MS", "soon"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.context_value("argument"),
            Some("CMS_EC2_REQUEST_TIMEOUT_MS")
        );
    }

    #[test]
    fn credentials_come_from_the_named_variables_and_never_show() {
        let mut c = Ec2Config::new("us-east-1");
        assert_eq!(
            c.credential_source(vars(&[])).unwrap(),
            CredentialSource::Chain
        );
        c.access_key_id_env = Some("MY_KEY".into());
        c.secret_access_key_env = Some("MY_SECRET".into());
        let src = c
            .credential_source(vars(&[
                ("MY_KEY", "AKIDEXAMPLE"),
                ("MY_SECRET", "s3cr3t-value"),
            ]))
            .unwrap();
        let CredentialSource::Static(creds) = &src else {
            panic!("{src:?}")
        };
        assert_eq!(creds.secret_access_key, "s3cr3t-value");
        assert!(!format!("{src:?}").contains("s3cr3t"));

        let e = c
            .credential_source(vars(&[("MY_KEY", "AKIDEXAMPLE")]))
            .unwrap_err();
        assert_eq!(e.kind(), cms_core::ErrorKind::Unauthenticated);
        assert!(e.to_string().contains("`MY_SECRET`"), "{e}");
        assert!(!e.to_string().contains("AKIDEXAMPLE"), "{e}");

        let with_code =
            Ec2Config::new("us-east-1").credentials(StaticCredentials::new("AKID", "s3cr3t"));
        assert!(!format!("{with_code:?}").contains("s3cr3t"));
    }
}
