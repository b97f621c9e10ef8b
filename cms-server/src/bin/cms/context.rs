//! Where the command line finds its server: flags, then `CMS_*` variables, then the
//! chosen context of `~/.config/cms/config.toml`:
//!
//! ```toml
//! current_context = "dev"          # used when neither --context nor CMS_CONTEXT says
//!
//! [contexts.dev]
//! url = "http://127.0.0.1:8080"
//! api_key_env = "CMS_DEV_API_KEY"  # the variable holding the key (or api_key = "…")
//! provider = "local"               # the default --provider
//! output = "table"                 # the default -o
//!
//! [contexts.prod]
//! url = "https://cms.example.com"
//! api_key_env = "PROD_CMS_KEY"
//! ```
//!
//! The file is `$CMS_CLI_CONFIG` when set, else `$XDG_CONFIG_HOME/cms/config.toml`,
//! else `~/.config/cms/config.toml`; it may be absent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::output::Format;
use crate::Failure;

/// The file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, Context>,
}

/// One named context.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub output: Option<Format>,
}

/// What the command runs with.
pub struct Resolved {
    pub url: String,
    pub api_key: Option<String>,
    pub provider: Option<String>,
    pub output: Option<Format>,
}

/// The path of the config file.
pub fn path() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("CMS_CLI_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = var("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("cms").join("config.toml"));
    }
    var("HOME").map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("cms")
            .join("config.toml")
    })
}

/// Resolves the server, key, provider and format from the flags (which already hold
/// the `CMS_*` variables) and the context.
pub fn resolve(
    url: Option<String>,
    api_key: Option<String>,
    provider: Option<String>,
    context: Option<String>,
    output: Option<Format>,
) -> Result<Resolved, Failure> {
    // An empty variable (`CMS_URL=`) is an unset one.
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let (url, api_key, provider, context) = (set(url), set(api_key), set(provider), set(context));
    let file_path = path();
    let file = match &file_path {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", p.display())))?;
            toml::from_str::<File>(&text).map_err(|e| {
                Failure::usage(format!("{} is not a cms CLI config: {e}", p.display()))
            })?
        }
        _ => File::default(),
    };
    let shown = || {
        file_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "~/.config/cms/config.toml".into())
    };
    let chosen = context.clone().or(file.current_context.clone());
    let ctx = match &chosen {
        None => Context::default(),
        Some(name) => match file.contexts.get(name) {
            Some(c) => c.clone(),
            None => {
                let names: Vec<&str> = file.contexts.keys().map(String::as_str).collect();
                return Err(Failure::usage(format!(
                    "no context `{name}` in {}; it has: {}",
                    shown(),
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        },
    };
    let key_from_ctx = match (&ctx.api_key_env, &ctx.api_key) {
        (Some(var), _) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
            _ if api_key.is_some() => None,
            _ => {
                return Err(Failure::usage(format!(
                    "context `{}` reads its API key from `{var}`, which is not set",
                    chosen.as_deref().unwrap_or_default()
                )))
            }
        },
        (None, Some(k)) => Some(k.clone()),
        (None, None) => None,
    };
    Ok(Resolved {
        url: url
            .or(ctx.url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        api_key: api_key.or(key_from_ctx),
        provider: provider.or(ctx.provider),
        output: output.or(ctx.output),
    })
}
