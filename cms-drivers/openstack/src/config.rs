//! The driver's configuration: which cloud, who to log in as, and what to default to.
//!
//! Three ways to say it, as OpenStack users already do:
//!
//! ```toml
//! # 1. In full (the server's `[[providers]]` table, say):
//! auth_url = "https://keystone.example.com:5000/v3"
//! username = "demo"
//! password_env = "OS_PASSWORD"          # the variable that holds the password
//! project_name = "demo"                 # or project_id = "…"
//! user_domain_name = "Default"          # the default
//! project_domain_name = "Default"       # the default
//! region = "RegionOne"
//! interface = "public"                  # or internal, admin
//!
//! # 2. With an application credential instead of a user and password:
//! # application_credential_id = "…"
//! # application_credential_secret_env = "OS_APPLICATION_CREDENTIAL_SECRET"
//!
//! # 3. Or a cloud of the user's clouds.yaml:
//! # cloud = "mycloud"
//!
//! # With any of them:
//! network = "private"                   # network (name or id) for creates that name none
//! microversion = "2.100"                # the highest compute microversion to use
//! timeout_secs = 60                     # per HTTP call
//! ```
//!
//! A password or secret is never in the configuration itself: `password_env` and
//! `application_credential_secret_env` name environment variables. A `clouds.yaml` is
//! read as openstacksdk reads it: `$OS_CLIENT_CONFIG_FILE`, else `./clouds.yaml`,
//! `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`, the first that
//! exists, with `secure.yaml` beside it merged in. Every error names the key (or the
//! variable, or the clouds.yaml entry) that is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use cms_core::{Error, Result};

/// The highest compute microversion this driver knows (Nova 2025.2 "Flamingo" offers
/// 2.100); a cloud offering more is spoken to at this one.
pub const MAX_MICROVERSION: (u32, u32) = (2, 100);

/// How to reach and use one OpenStack cloud (see the [module documentation](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStackConfig {
    /// A cloud of the user's `clouds.yaml`, instead of the keys below.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Keystone's v3 endpoint, `https://HOST:5000/v3`.
    #[serde(default)]
    pub auth_url: Option<String>,
    /// The user name (with `password_env`).
    #[serde(default)]
    pub username: Option<String>,
    /// The name of the environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The project to scope tokens to, by name.
    #[serde(default)]
    pub project_name: Option<String>,
    /// The project to scope tokens to, by id.
    #[serde(default)]
    pub project_id: Option<String>,
    /// The user's domain (default `Default`).
    #[serde(default)]
    pub user_domain_name: Option<String>,
    /// The project's domain (default `Default`).
    #[serde(default)]
    pub project_domain_name: Option<String>,
    /// An application credential's id, instead of a user and password.
    #[serde(default)]
    pub application_credential_id: Option<String>,
    /// The variable that holds the application credential's secret.
    #[serde(default)]
    pub application_credential_secret_env: Option<String>,
    /// The region whose endpoints are used (any when absent).
    #[serde(default)]
    pub region: Option<String>,
    /// Which endpoints: `public` (default), `internal` or `admin`.
    #[serde(default)]
    pub interface: Option<String>,
    /// The network (Neutron id or name) for creates that name none; when absent, Nova
    /// is asked to pick (`auto`, microversion 2.37 and later).
    #[serde(default)]
    pub network: Option<String>,
    /// The highest compute microversion to use, `2.N` (default: the highest both the
    /// cloud and this driver know).
    #[serde(default)]
    pub microversion: Option<String>,
    /// How long one HTTP call may take, in seconds (default 60).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A secret (password, application credential secret): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The project a token is scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Project {
    /// By id (unique: no domain needed).
    Id(String),
    /// By name, within `domain` (a domain name).
    Name { name: String, domain: String },
}

/// How to authenticate, resolved from a configuration (and clouds.yaml, and the
/// environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// Keystone's `password` method, scoped to a project.
    Password {
        auth_url: String,
        username: String,
        user_domain: String,
        password: Secret,
        project: Project,
    },
    /// Keystone's `application_credential` method (the credential names its project).
    ApplicationCredential {
        auth_url: String,
        id: String,
        secret: Secret,
    },
}

impl Credentials {
    /// Keystone's v3 endpoint.
    pub fn auth_url(&self) -> &str {
        match self {
            Credentials::Password { auth_url, .. }
            | Credentials::ApplicationCredential { auth_url, .. } => auth_url,
        }
    }
}

/// Everything the driver needs, resolved: credentials, endpoint filters and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub credentials: Credentials,
    pub region: Option<String>,
    pub interface: Interface,
    pub network: Option<String>,
    pub microversion: (u32, u32),
    pub timeout: std::time::Duration,
}

/// Which of a service's endpoints to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    Public,
    Internal,
    Admin,
}

impl Interface {
    fn parse(key: &str, text: &str) -> Result<Interface> {
        match text
            .trim()
            .trim_end_matches("URL")
            .to_ascii_lowercase()
            .as_str()
        {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            other => Err(bad(
                key,
                format!("`{other}` is not an interface; expected public, internal or admin"),
            )),
        }
    }
}

pub(crate) fn bad(key: &str, why: impl fmt::Display) -> Error {
    Error::invalid_argument(key, why).with_context("driver", "openstack")
}

/// Parses `2.N` (or `N.M`) as a microversion.
pub fn parse_microversion(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl OpenStackConfig {
    /// Reads a configuration from any serde format (a TOML table, JSON); errors name
    /// the key that is wrong.
    pub fn from_deserializer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OpenStackConfig> {
        let config: OpenStackConfig = cms_core::config::read(d, "openstack")?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<OpenStackConfig> {
        OpenStackConfig::from_deserializer(toml::Deserializer::new(text))
    }

    /// A configuration for a cloud of the user's `clouds.yaml`.
    pub fn cloud(name: &str) -> OpenStackConfig {
        OpenStackConfig {
            cloud: Some(name.into()),
            ..OpenStackConfig::default()
        }
    }

    /// A configuration from the `OS_*` variables, as the `openstack` CLI reads them:
    /// `OS_CLOUD` (a clouds.yaml cloud), or `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`,
    /// `OS_PROJECT_NAME` / `OS_PROJECT_ID`, `OS_USER_DOMAIN_NAME`,
    /// `OS_PROJECT_DOMAIN_NAME`, or `OS_APPLICATION_CREDENTIAL_ID` and
    /// `OS_APPLICATION_CREDENTIAL_SECRET`; with `OS_REGION_NAME`, `OS_INTERFACE` and
    /// `OS_COMPUTE_API_VERSION` (the highest microversion). The password stays in its
    /// variable (`password_env = "OS_PASSWORD"`). Errors name the variable.
    pub fn from_env() -> Result<OpenStackConfig> {
        OpenStackConfig::from_vars(|k| std::env::var(k).ok())
    }

    /// [`from_env`](OpenStackConfig::from_env) over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<OpenStackConfig> {
        let get = |k: &str| {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut c = OpenStackConfig {
            region: get("OS_REGION_NAME"),
            interface: get("OS_INTERFACE").or_else(|| get("OS_ENDPOINT_TYPE")),
            microversion: get("OS_COMPUTE_API_VERSION").filter(|v| v != "latest"),
            ..OpenStackConfig::default()
        };
        if let Some(cloud) = get("OS_CLOUD") {
            c.cloud = Some(cloud);
        } else {
            c.auth_url = get("OS_AUTH_URL");
            if let Some(id) = get("OS_APPLICATION_CREDENTIAL_ID") {
                c.application_credential_id = Some(id);
                c.application_credential_secret_env =
                    Some("OS_APPLICATION_CREDENTIAL_SECRET".into());
            } else {
                c.username = get("OS_USERNAME");
                c.password_env = Some("OS_PASSWORD".into());
                c.project_name = get("OS_PROJECT_NAME").or_else(|| get("OS_TENANT_NAME"));
                c.project_id = get("OS_PROJECT_ID").or_else(|| get("OS_TENANT_ID"));
                if c.project_name.is_some() && c.project_id.is_some() {
                    c.project_name = None;
                }
                c.user_domain_name = get("OS_USER_DOMAIN_NAME");
                c.project_domain_name = get("OS_PROJECT_DOMAIN_NAME");
            }
        }
        c.validate().map_err(|e| {
            cms_core::config::renamed_to_variable(
                e,
                &[
                    ("cloud", "OS_CLOUD"),
                    ("auth_url", "OS_AUTH_URL"),
                    ("username", "OS_USERNAME"),
                    ("project_name", "OS_PROJECT_NAME"),
                    ("project_id", "OS_PROJECT_ID"),
                    ("region", "OS_REGION_NAME"),
                    ("interface", "OS_INTERFACE"),
                    ("microversion", "OS_COMPUTE_API_VERSION"),
                    ("application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"),
                ],
                "openstack",
            )
        })?;
        Ok(c)
    }

    /// Checks the configuration's shape (not the environment); errors name the key.
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = &self.interface {
            Interface::parse("interface", i)?;
        }
        if let Some(m) = &self.microversion {
            match parse_microversion(m) {
                Some((2, minor)) if minor >= 1 => {}
                _ => {
                    return Err(bad(
                        "microversion",
                        format!("`{m}` is not a compute microversion such as 2.60"),
                    ))
                }
            }
        }
        if self.timeout_secs == Some(0) {
            return Err(bad("timeout_secs", "must be at least 1"));
        }
        if self.cloud.is_some() {
            for (key, v) in self.auth_keys() {
                if v.is_some() {
                    return Err(bad(
                        key,
                        "comes from clouds.yaml when `cloud` is given; leave it out",
                    ));
                }
            }
            if non_empty(&self.cloud).is_none() {
                return Err(bad("cloud", "must not be empty"));
            }
            return Ok(());
        }
        let url = non_empty(&self.auth_url)
            .ok_or_else(|| bad("auth_url", "missing (or give `cloud`)"))?;
        check_url("auth_url", url)?;
        if self.application_credential_id.is_some() {
            if non_empty(&self.application_credential_secret_env).is_none() {
                return Err(bad(
                    "application_credential_secret_env",
                    "missing: name the variable that holds the application credential's secret",
                ));
            }
            for key in ["username", "password_env", "project_name", "project_id"] {
                let set = match key {
                    "username" => &self.username,
                    "password_env" => &self.password_env,
                    "project_name" => &self.project_name,
                    _ => &self.project_id,
                };
                if set.is_some() {
                    return Err(bad(
                        key,
                        "not used with an application credential (it names its project)",
                    ));
                }
            }
            return Ok(());
        }
        if non_empty(&self.username).is_none() {
            return Err(bad("username", "missing"));
        }
        if non_empty(&self.password_env).is_none() {
            return Err(bad(
                "password_env",
                "missing: name the variable that holds the password",
            ));
        }
        match (non_empty(&self.project_name), non_empty(&self.project_id)) {
            (None, None) => Err(bad("project_name", "missing (or give project_id)")),
            (Some(_), Some(_)) => Err(bad(
                "project_id",
                "give project_name or project_id, not both",
            )),
            _ => Ok(()),
        }
    }

    fn auth_keys(&self) -> [(&'static str, &Option<String>); 9] {
        [
            ("auth_url", &self.auth_url),
            ("username", &self.username),
            ("password_env", &self.password_env),
            ("project_name", &self.project_name),
            ("project_id", &self.project_id),
            ("user_domain_name", &self.user_domain_name),
            ("project_domain_name", &self.project_domain_name),
            ("application_credential_id", &self.application_credential_id),
            (
                "application_credential_secret_env",
                &self.application_credential_secret_env,
            ),
        ]
    }

    /// Resolves credentials (reading the variables and, for `cloud`, clouds.yaml) and
    /// defaults.
    pub fn resolve(&self) -> Result<Resolved> {
        self.resolve_with(|k| std::env::var(k).ok(), find_clouds_yaml)
    }

    /// [`resolve`](OpenStackConfig::resolve) with the variables and the clouds.yaml
    /// location given.
    pub fn resolve_with(
        &self,
        var: impl Fn(&str) -> Option<String>,
        clouds_yaml: impl Fn() -> Option<PathBuf>,
    ) -> Result<Resolved> {
        self.validate()?;
        let secret = |key: &str, name: &str| -> Result<Secret> {
            match var(name) {
                Some(v) if !v.is_empty() => Ok(Secret(v)),
                Some(_) => Err(bad(
                    key,
                    format!("the environment variable `{name}` is empty"),
                )),
                None => Err(bad(
                    key,
                    format!("the environment variable `{name}` is not set (or not UTF-8)"),
                )),
            }
        };
        let (credentials, cloud_region, cloud_interface) = match non_empty(&self.cloud) {
            Some(cloud) => {
                let path = clouds_yaml().ok_or_else(|| {
                    bad(
                        "cloud",
                        "no clouds.yaml found ($OS_CLIENT_CONFIG_FILE, ./clouds.yaml, \
                         ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)",
                    )
                })?;
                read_cloud(&path, cloud)?
            }
            None => {
                let auth_url = non_empty(&self.auth_url).unwrap_or_default().to_owned();
                let credentials = match non_empty(&self.application_credential_id) {
                    Some(id) => Credentials::ApplicationCredential {
                        auth_url,
                        id: id.to_owned(),
                        secret: secret(
                            "application_credential_secret_env",
                            non_empty(&self.application_credential_secret_env).unwrap_or_default(),
                        )?,
                    },
                    None => Credentials::Password {
                        auth_url,
                        username: non_empty(&self.username).unwrap_or_default().to_owned(),
                        user_domain: non_empty(&self.user_domain_name)
                            .unwrap_or("Default")
                            .to_owned(),
                        password: secret(
                            "password_env",
                            non_empty(&self.password_env).unwrap_or_default(),
                        )?,
                        project: match non_empty(&self.project_id) {
                            Some(id) => Project::Id(id.to_owned()),
                            None => Project::Name {
                                name: non_empty(&self.project_name).unwrap_or_default().to_owned(),
                                domain: non_empty(&self.project_domain_name)
                                    .unwrap_or("Default")
                                    .to_owned(),
                            },
                        },
                    },
                };
                (credentials, None, None)
            }
        };
        let interface = match non_empty(&self.interface) {
            Some(i) => Interface::parse("interface", i)?,
            None => match cloud_interface {
                Some(i) => Interface::parse("clouds.yaml interface", &i)?,
                None => Interface::Public,
            },
        };
        let microversion = match non_empty(&self.microversion) {
            Some(m) => parse_microversion(m)
                .unwrap_or(MAX_MICROVERSION)
                .min(MAX_MICROVERSION),
            None => MAX_MICROVERSION,
        };
        Ok(Resolved {
            credentials,
            region: non_empty(&self.region).map(str::to_owned).or(cloud_region),
            interface,
            network: non_empty(&self.network).map(str::to_owned),
            microversion,
            timeout: std::time::Duration::from_secs(self.timeout_secs.unwrap_or(60)),
        })
    }
}

fn check_url(key: &str, url: &str) -> Result<()> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| bad(key, format!("`{url}` is not a URL ({e})")))?;
    match parsed.scheme() {
        "http" => {}
        "https" if cfg!(feature = "rustls") => {}
        "https" => {
            return Err(bad(
                key,
                "https needs the `rustls` feature of cms-driver-openstack",
            ))
        }
        other => return Err(bad(key, format!("scheme `{other}` is not http or https"))),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(key, "credentials do not belong in the URL"));
    }
    Ok(())
}

/// Where openstacksdk looks for clouds.yaml, in its order: the first that exists.
pub fn find_clouds_yaml() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".config/openstack/clouds.yaml"));
    }
    candidates.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    candidates.into_iter().find(|p| p.is_file())
}

#[derive(Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: std::collections::BTreeMap<String, CloudEntry>,
}

#[derive(Default, Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth: CloudAuth,
    #[serde(default)]
    auth_type: Option<String>,
    #[serde(default)]
    region_name: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

#[derive(Default, Deserialize)]
struct CloudAuth {
    auth_url: Option<String>,
    username: Option<String>,
    password: Option<String>,
    project_name: Option<String>,
    project_id: Option<String>,
    user_domain_name: Option<String>,
    project_domain_name: Option<String>,
    domain_name: Option<String>,
    application_credential_id: Option<String>,
    application_credential_secret: Option<String>,
}

fn read_yaml(path: &Path) -> Result<Option<CloudsFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(bad(
                "cloud",
                format!("cannot read `{}`: {}", path.display(), e.kind()),
            ))
        }
    };
    serde_yaml::from_str(&text).map(Some).map_err(|e| {
        bad(
            "cloud",
            format!("`{}` is not a clouds.yaml: {e}", path.display()),
        )
    })
}

/// One cloud of a clouds.yaml (with `secure.yaml` beside it merged in).
fn read_cloud(path: &Path, name: &str) -> Result<(Credentials, Option<String>, Option<String>)> {
    let mut file = read_yaml(path)?.unwrap_or(CloudsFile {
        clouds: Default::default(),
    });
    let mut entry = file.clouds.remove(name).ok_or_else(|| {
        bad(
            "cloud",
            format!("`{name}` is not a cloud of `{}`", path.display()),
        )
    })?;
    let secure = path.with_file_name("secure.yaml");
    if let Some(mut s) = read_yaml(&secure)? {
        if let Some(extra) = s.clouds.remove(name) {
            let a = &mut entry.auth;
            let b = extra.auth;
            a.password = a.password.take().or(b.password);
            a.application_credential_secret = a
                .application_credential_secret
                .take()
                .or(b.application_credential_secret);
        }
    }
    let at = |key: &str| format!("clouds.{name}.auth.{key}");
    let a = entry.auth;
    let auth_url = a
        .auth_url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| bad(&at("auth_url"), "missing"))?;
    check_url(&at("auth_url"), &auth_url)?;
    let auth_url = if auth_url.trim_end_matches('/').ends_with("/v3") {
        auth_url
    } else {
        format!("{}/v3", auth_url.trim_end_matches('/'))
    };
    let credentials = match entry.auth_type.as_deref() {
        Some("v3applicationcredential") | Some("applicationcredential") => {
            Credentials::ApplicationCredential {
                auth_url,
                id: a
                    .application_credential_id
                    .ok_or_else(|| bad(&at("application_credential_id"), "missing"))?,
                secret: Secret(
                    a.application_credential_secret
                        .ok_or_else(|| bad(&at("application_credential_secret"), "missing"))?,
                ),
            }
        }
        None | Some("password") | Some("v3password") => {
            let domain = a.domain_name.clone();
            Credentials::Password {
                auth_url,
                username: a.username.ok_or_else(|| bad(&at("username"), "missing"))?,
                user_domain: a
                    .user_domain_name
                    .or_else(|| domain.clone())
                    .unwrap_or_else(|| "Default".into()),
                password: Secret(a.password.ok_or_else(|| bad(&at("password"), "missing"))?),
                project: match (a.project_id, a.project_name) {
                    (Some(id), _) => Project::Id(id),
                    (None, Some(name)) => Project::Name {
                        name,
                        domain: a
                            .project_domain_name
                            .or(domain)
                            .unwrap_or_else(|| "Default".into()),
                    },
                    (None, None) => {
                        return Err(bad(&at("project_name"), "missing (or project_id)"))
                    }
                },
            }
        }
        Some(other) => {
            return Err(bad(
                &format!("clouds.{name}.auth_type"),
                format!("`{other}` is not supported; use password or v3applicationcredential"),
            ))
        }
    };
    Ok((credentials, entry.region_name, entry.interface))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn full_configuration_resolves_with_the_password_from_its_variable() {
        let c = OpenStackConfig::from_toml(
            r#"
            auth_url = "http://127.0.0.1:5000/v3"
            username = "demo"
            password_env = "PW"
            project_name = "demo"
            region = "RegionOne"
            interface = "internal"
            microversion = "2.60"
            "#,
        )
        .unwrap();
        let r = c.resolve_with(vars(&[("PW", "s3cret")]), || None).unwrap();
        assert_eq!(r.interface, Interface::Internal);
        assert_eq!(r.microversion, (2, 60));
        match &r.credentials {
            Credentials::Password {
                password, project, ..
            } => {
                assert_eq!(password.expose(), "s3cret");
                assert_eq!(
                    project,
                    &Project::Name {
                        name: "demo".into(),
                        domain: "Default".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{r:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = OpenStackConfig::from_toml("username = 1").unwrap_err();
        assert_eq!(e.context_value("argument"), Some("username"), "{e}");
        let e = OpenStackConfig::from_toml("auth_url = \"x\"").unwrap_err();
        assert_eq!(e.context_value("argument"), Some("auth_url"), "{e}");
        let e = OpenStackConfig::from_toml(
            "auth_url = \"http://k/v3\"\nusername = \"u\"\npassword_env = \"P\"",
        )
        .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("project_name"), "{e}");
        let e = OpenStackConfig::from_toml("cloud = \"c\"\nusername = \"u\"").unwrap_err();
        assert_eq!(e.context_value("argument"), Some("username"), "{e}");
        let e = OpenStackConfig::from_toml(
            "auth_url = \"http://k/v3\"\nusername = \"u\"\npassword_env = \"P\"\nproject_id = \"p\"\ninterface = \"outer\"",
        )
        .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("interface"), "{e}");
        let c = OpenStackConfig::from_toml(
            "auth_url = \"http://k/v3\"\nusername = \"u\"\npassword_env = \"P\"\nproject_id = \"p\"",
        )
        .unwrap();
        let e = c.resolve_with(vars(&[]), || None).unwrap_err();
        assert_eq!(e.context_value("argument"), Some("password_env"), "{e}");
        assert!(e.message().contains("`P` is not set"), "{e}");
    }

    #[test]
    fn the_environment_reads_as_the_cli_reads_it() {
        let c = OpenStackConfig::from_vars(vars(&[
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_USERNAME", "demo"),
            ("OS_PROJECT_ID", "abc"),
            ("OS_REGION_NAME", "RegionTwo"),
        ]))
        .unwrap();
        assert_eq!(c.password_env.as_deref(), Some("OS_PASSWORD"));
        assert_eq!(c.region.as_deref(), Some("RegionTwo"));
        let e = OpenStackConfig::from_vars(vars(&[("OS_USERNAME", "demo")])).unwrap_err();
        assert_eq!(e.context_value("argument"), Some("OS_AUTH_URL"), "{e}");
        let c = OpenStackConfig::from_vars(vars(&[("OS_CLOUD", "mine")])).unwrap();
        assert_eq!(c.cloud.as_deref(), Some("mine"));
        let c = OpenStackConfig::from_vars(vars(&[
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_APPLICATION_CREDENTIAL_ID", "ac"),
        ]))
        .unwrap();
        assert_eq!(
            c.application_credential_secret_env.as_deref(),
            Some("OS_APPLICATION_CREDENTIAL_SECRET")
        );
    }

    #[test]
    fn clouds_yaml_and_secure_yaml_are_read() {
        let dir = std::env::temp_dir().join(format!("cms-os-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clouds.yaml");
        std::fs::write(
            &path,
            "clouds:\n  lab:\n    auth:\n      auth_url: http://k:5000\n      username: demo\n      project_name: demo\n      user_domain_name: Default\n    region_name: RegionOne\n    interface: internal\n  app:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k:5000/v3\n      application_credential_id: ac1\n      application_credential_secret: sec\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("secure.yaml"),
            "clouds:\n  lab:\n    auth:\n      password: pw\n",
        )
        .unwrap();
        let r = OpenStackConfig::cloud("lab")
            .resolve_with(vars(&[]), || Some(path.clone()))
            .unwrap();
        assert_eq!(r.credentials.auth_url(), "http://k:5000/v3");
        assert_eq!(r.region.as_deref(), Some("RegionOne"));
        assert_eq!(r.interface, Interface::Internal);
        let r = OpenStackConfig::cloud("app")
            .resolve_with(vars(&[]), || Some(path.clone()))
            .unwrap();
        assert!(matches!(
            r.credentials,
            Credentials::ApplicationCredential { .. }
        ));
        let e = OpenStackConfig::cloud("nope")
            .resolve_with(vars(&[]), || Some(path.clone()))
            .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("cloud"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
