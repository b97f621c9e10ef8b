//! The driver's configuration: where oned is, who to log in as, and the sizes offered
//! as flavors.
//!
//! In a TOML file (the server's `[[providers]]` table, say):
//!
//! ```toml
//! endpoint = "http://one.example.com:2633/RPC2"
//! username = "cms"
//! password_env = "ONE_PASSWORD"        # or: auth_file = "/etc/cms/one_auth"
//! default_network = 0
//! volume_datastore = 1                 # the image datastore volumes are made in
//!
//! [[sizes]]
//! name = "small"
//! cpu = 0.5
//! vcpu = 1
//! memory_mib = 1024
//! ```
//!
//! The password itself is never in the configuration: `password_env` names the
//! environment variable that holds it, or `auth_file` names a file in OpenNebula's
//! `ONE_AUTH` format (`user:password` on its first line).

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use cms_core::{Error, Result};

/// The port and path of oned's XML-RPC endpoint, as the OpenNebula CLI defaults them.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:2633/RPC2";

/// Characters OpenNebula refuses in object names (`PoolObjectSQL::INVALID_NAME_CHARS`).
pub const INVALID_NAME_CHARS: &str = "&|:\\\";/'#{}$<>\t\n\u{b}\u{c}\r";

/// How to reach and use one OpenNebula.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenNebulaConfig {
    /// oned's XML-RPC endpoint, `http://HOST:2633/RPC2`.
    pub endpoint: String,
    /// The OpenNebula user; may be left out with `auth_file`, which names it.
    #[serde(default)]
    pub username: Option<String>,
    /// The name of the environment variable that holds the password (or login token).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file in the `ONE_AUTH` format, `user:password`.
    #[serde(default)]
    pub auth_file: Option<PathBuf>,
    /// Named CPU/memory pairs offered as flavors, besides the capacities of templates.
    #[serde(default)]
    pub sizes: Vec<Size>,
    /// The virtual network (id) instances get when a create names none.
    #[serde(default, deserialize_with = "network_id")]
    pub default_network: Option<i64>,
    /// How long one XML-RPC call may take, in seconds (default 60).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The `VN_MAD` of networks this driver creates (default `bridge`).
    #[serde(default = "default_network_driver")]
    pub network_driver: String,
    /// The image datastore (id) where volumes are made as persistent DATABLOCK images
    /// (default 1, the `default` image datastore of every OpenNebula). Snapshots and
    /// volumes made from them stay in the datastore of the image they copy.
    #[serde(default = "default_volume_datastore")]
    pub volume_datastore: i64,
}

/// A flavor made of a CPU share, a vCPU count and memory.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    /// The flavor id and name (`small`); no `:`.
    pub name: String,
    /// OpenNebula's CPU: the share of physical CPUs (`0.5`).
    pub cpu: f64,
    /// Virtual CPUs the guest sees.
    pub vcpu: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
}

fn default_timeout_secs() -> u64 {
    60
}

fn default_network_driver() -> String {
    "bridge".into()
}

/// The `default` image datastore every OpenNebula installs.
pub const DEFAULT_VOLUME_DATASTORE: i64 = 1;

fn default_volume_datastore() -> i64 {
    DEFAULT_VOLUME_DATASTORE
}

fn network_id<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Int(i64),
        Text(String),
    }
    match Option::<Id>::deserialize(d)? {
        None => Ok(None),
        Some(Id::Int(i)) if i >= 0 => Ok(Some(i)),
        Some(Id::Text(t)) => t
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|i| *i >= 0)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a virtual network id"))),
        Some(Id::Int(i)) => Err(serde::de::Error::custom(format!(
            "`{i}` is not a virtual network id"
        ))),
    }
}

fn bad(key: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid_argument(key, why).with_context("driver", "opennebula")
}

impl OpenNebulaConfig {
    /// A configuration for `endpoint` with the password in the environment variable
    /// `password_env`.
    pub fn new(endpoint: &str, username: &str, password_env: &str) -> OpenNebulaConfig {
        OpenNebulaConfig {
            endpoint: endpoint.into(),
            username: Some(username.into()),
            password_env: Some(password_env.into()),
            auth_file: None,
            sizes: Vec::new(),
            default_network: None,
            timeout_secs: default_timeout_secs(),
            network_driver: default_network_driver(),
            volume_datastore: default_volume_datastore(),
        }
    }

    /// Reads a configuration from any serde format (a TOML table, JSON); errors name
    /// the key that is wrong (`sizes[0].cpu: invalid type …`).
    pub fn from_deserializer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OpenNebulaConfig> {
        let config: OpenNebulaConfig = cms_core::config::read(d, "opennebula")?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<OpenNebulaConfig> {
        OpenNebulaConfig::from_deserializer(toml::Deserializer::new(text))
    }

    /// A configuration from the environment, as the OpenNebula CLI reads it:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `ONE_XMLRPC` | the endpoint | `http://localhost:2633/RPC2` |
    /// | `ONE_AUTH` | the auth file (`user:password`) | `$HOME/.one/one_auth` |
    /// | `CMS_ONE_USERNAME`, `CMS_ONE_PASSWORD_ENV` | user, and the variable holding the password, instead of an auth file | |
    /// | `CMS_ONE_SIZES` | sizes, `name=cpu/vcpu/memory_mib,…` (`small=0.5/1/1024`) | none |
    /// | `CMS_ONE_DEFAULT_NETWORK` | the default network id | none |
    /// | `CMS_ONE_TIMEOUT_SECS` | seconds per call | 60 |
    /// | `CMS_ONE_VOLUME_DATASTORE` | the image datastore id volumes are made in | 1 |
    ///
    /// Errors name the variable that is wrong.
    pub fn from_env() -> Result<OpenNebulaConfig> {
        OpenNebulaConfig::from_vars(|k| std::env::var(k).ok())
    }

    /// [`from_env`](OpenNebulaConfig::from_env) over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<OpenNebulaConfig> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let endpoint = get("ONE_XMLRPC").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let password_env = get("CMS_ONE_PASSWORD_ENV");
        let username = get("CMS_ONE_USERNAME");
        let auth_file = match (&password_env, get("ONE_AUTH")) {
            (_, Some(path)) => Some(PathBuf::from(path)),
            (Some(_), None) => None,
            (None, None) => match get("HOME") {
                Some(home) => Some(PathBuf::from(home).join(".one").join("one_auth")),
                None => {
                    return Err(bad(
                        "ONE_AUTH",
                        "not set, and no HOME to find `~/.one/one_auth` in; \
                         set ONE_AUTH or CMS_ONE_PASSWORD_ENV",
                    ))
                }
            },
        };
        let sizes = match get("CMS_ONE_SIZES") {
            None => Vec::new(),
            Some(text) => parse_sizes(&text).map_err(|why| bad("CMS_ONE_SIZES", why))?,
        };
        let default_network = match get("CMS_ONE_DEFAULT_NETWORK") {
            None => None,
            Some(t) => Some(
                t.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|i| *i >= 0)
                    .ok_or_else(|| {
                        bad(
                            "CMS_ONE_DEFAULT_NETWORK",
                            format!("`{t}` is not a virtual network id"),
                        )
                    })?,
            ),
        };
        let timeout_secs = match get("CMS_ONE_TIMEOUT_SECS") {
            None => default_timeout_secs(),
            Some(t) => t.trim().parse().map_err(|_| {
                bad(
                    "CMS_ONE_TIMEOUT_SECS",
                    format!("`{t}` is not a number of seconds"),
                )
            })?,
        };
        let volume_datastore = match get("CMS_ONE_VOLUME_DATASTORE") {
            None => default_volume_datastore(),
            Some(t) => t
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|i| *i >= 0)
                .ok_or_else(|| {
                    bad(
                        "CMS_ONE_VOLUME_DATASTORE",
                        format!("`{t}` is not a datastore id"),
                    )
                })?,
        };
        let config = OpenNebulaConfig {
            endpoint,
            username,
            password_env: if auth_file.is_some() {
                None
            } else {
                password_env
            },
            auth_file,
            sizes,
            default_network,
            timeout_secs,
            network_driver: default_network_driver(),
            volume_datastore,
        };
        config.validate().map_err(|e| {
            cms_core::config::renamed_to_variable(
                e,
                &[
                    ("endpoint", "ONE_XMLRPC"),
                    ("username", "CMS_ONE_USERNAME"),
                    ("password_env", "CMS_ONE_PASSWORD_ENV"),
                    ("auth_file", "ONE_AUTH"),
                ],
                "opennebula",
            )
        })?;
        Ok(config)
    }

    /// Checks the configuration; errors name the key that is wrong.
    pub fn validate(&self) -> Result<()> {
        let url = reqwest::Url::parse(&self.endpoint).map_err(|e| {
            bad(
                "endpoint",
                format!(
                    "`{}` is not a URL ({e}); expected `http://HOST:2633/RPC2`",
                    self.endpoint
                ),
            )
        })?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "rustls") => {}
            "https" => {
                return Err(bad(
                    "endpoint",
                    "https needs the `rustls` feature of cms-driver-opennebula",
                ))
            }
            other => {
                return Err(bad(
                    "endpoint",
                    format!("scheme `{other}` is not http or https"),
                ))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "endpoint",
                "credentials do not belong in the URL; use username with password_env or auth_file",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("endpoint", "the URL has no host"));
        }
        match (&self.password_env, &self.auth_file) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "password_env",
                    "give either password_env or auth_file, not both",
                ))
            }
            (None, None) => {
                return Err(bad(
                    "password_env",
                    "missing: give password_env (the variable holding the password) or auth_file",
                ))
            }
            (Some(v), None) if v.trim().is_empty() => {
                return Err(bad("password_env", "must name an environment variable"))
            }
            (Some(_), None) if self.username.as_deref().is_none_or(|u| u.trim().is_empty()) => {
                return Err(bad("username", "missing: password_env needs a username"))
            }
            _ => {}
        }
        if let Some(u) = &self.username {
            if u.contains(':') || u.chars().any(char::is_whitespace) || u.is_empty() {
                return Err(bad(
                    "username",
                    format!("`{u}` is not an OpenNebula user name"),
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.sizes.iter().enumerate() {
            let key = format!("sizes[{i}]");
            let why = if s.name.trim().is_empty() {
                Some("name must not be empty".to_owned())
            } else if s.name.contains(':') || s.name.chars().any(char::is_control) {
                Some(format!(
                    "name `{}` must not contain `:` or control characters",
                    s.name
                ))
            } else if !names.insert(s.name.as_str()) {
                Some(format!("name `{}` is given twice", s.name))
            } else if !(s.cpu.is_finite() && s.cpu > 0.0) {
                Some(format!("cpu {} must be a positive number", s.cpu))
            } else if s.vcpu == 0 {
                Some("vcpu must be at least 1".to_owned())
            } else if s.memory_mib == 0 {
                Some("memory_mib must be at least 1".to_owned())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(bad(&key, why));
            }
        }
        if self.timeout_secs == 0 {
            return Err(bad("timeout_secs", "must be at least 1"));
        }
        if self.network_driver.trim().is_empty() {
            return Err(bad("network_driver", "must not be empty"));
        }
        if !(0..=i64::from(i32::MAX)).contains(&self.volume_datastore) {
            return Err(bad(
                "volume_datastore",
                format!(
                    "`{}` is not a datastore id; give the id of an image datastore (default {})",
                    self.volume_datastore, DEFAULT_VOLUME_DATASTORE
                ),
            ));
        }
        Ok(())
    }

    /// The user and password: from `password_env`, or from `auth_file`. Errors name
    /// the key and never show the password or the file's content.
    pub fn credentials(&self) -> Result<(String, String)> {
        self.validate()?;
        if let Some(var) = &self.password_env {
            let password = std::env::var(var).map_err(|_| {
                bad(
                    "password_env",
                    format!("the environment variable `{var}` is not set (or not UTF-8)"),
                )
            })?;
            if password.is_empty() {
                return Err(bad(
                    "password_env",
                    format!("the environment variable `{var}` is empty"),
                ));
            }
            let user = self.username.clone().unwrap_or_default();
            return Ok((user, password));
        }
        let path = self
            .auth_file
            .as_ref()
            .ok_or_else(|| bad("auth_file", "missing"))?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(
                "auth_file",
                format!("cannot read `{}`: {}", path.display(), e.kind()),
            )
        })?;
        let line = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r');
        let (user, password) = line.split_once(':').ok_or_else(|| {
            bad(
                "auth_file",
                format!(
                    "`{}` is not in the ONE_AUTH format `user:password`",
                    path.display()
                ),
            )
        })?;
        if user.is_empty() || password.is_empty() {
            return Err(bad(
                "auth_file",
                format!("`{}` has an empty user or password", path.display()),
            ));
        }
        if let Some(u) = &self.username {
            if u != user {
                return Err(bad(
                    "username",
                    format!(
                        "`{u}` differs from the user `{user}` of auth_file `{}`",
                        path.display()
                    ),
                ));
            }
        }
        Ok((user.to_owned(), password.to_owned()))
    }

    /// The size named `name`.
    pub fn size(&self, name: &str) -> Option<&Size> {
        self.sizes.iter().find(|s| s.name == name)
    }
}

/// `small=0.5/1/1024,large=4/4/8192`.
fn parse_sizes(text: &str) -> std::result::Result<Vec<Size>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (name, rest) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not `name=cpu/vcpu/memory_mib`"))?;
            let parts: Vec<&str> = rest.split('/').map(str::trim).collect();
            let [cpu, vcpu, memory] = parts.as_slice() else {
                return Err(format!("`{item}` is not `name=cpu/vcpu/memory_mib`"));
            };
            Ok(Size {
                name: name.trim().to_owned(),
                cpu: cpu
                    .parse()
                    .map_err(|_| format!("`{item}`: cpu `{cpu}` is not a number"))?,
                vcpu: vcpu
                    .parse()
                    .map_err(|_| format!("`{item}`: vcpu `{vcpu}` is not a whole number"))?,
                memory_mib: memory.parse().map_err(|_| {
                    format!("`{item}`: memory `{memory}` is not a whole number of MiB")
                })?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_from_the_environment_form() {
        let s = parse_sizes("small=0.5/1/1024, large=4/4/8192").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].cpu, 0.5);
        assert_eq!(s[1].memory_mib, 8192);
        assert!(parse_sizes("small=1/1").is_err());
        assert!(parse_sizes("small").is_err());
    }
}
