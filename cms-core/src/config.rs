//! What every driver's configuration shares: reading it from any serde format with
//! errors that name the key that is wrong.

use serde::Deserialize;

use crate::{Error, Result};

/// Reads a driver configuration `T` from `d` (a TOML table, JSON, …); an error is
/// `InvalidArgument` naming the key (`sizes[0].cpu: invalid type …`, context
/// `argument`) and the driver (context `driver`).
pub fn read<'de, T, D>(d: D, driver: &str) -> Result<T>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(d).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            "configuration".to_owned()
        } else {
            path
        };
        Error::invalid_argument(&key, e.inner()).with_context("driver", driver)
    })
}

/// An error about a configuration key, restated about the environment variable that
/// filled it (`vars`: key, variable), for configurations read from the environment;
/// other errors as they are.
pub fn renamed_to_variable(e: Error, vars: &[(&str, &str)], driver: &str) -> Error {
    let Some(var) = e
        .context_value("argument")
        .and_then(|k| vars.iter().find(|(key, _)| *key == k))
        .map(|(_, v)| *v)
    else {
        return e;
    };
    let why = e
        .message()
        .split_once(": ")
        .map(|(_, w)| w)
        .unwrap_or(e.message());
    Error::invalid_argument(var, why).with_context("driver", driver)
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct C {
        size: Vec<S>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        cpu: f64,
    }

    #[test]
    fn errors_name_the_key() {
        let json = serde_json::json!({"size": [{"cpu": "lots"}]});
        let e = super::read::<C, _>(json, "x").unwrap_err();
        assert_eq!(e.context_value("argument"), Some("size[0].cpu"), "{e}");
        assert_eq!(e.context_value("driver"), Some("x"));
        let e = super::read::<C, _>(serde_json::json!(3), "x").unwrap_err();
        assert_eq!(e.context_value("argument"), Some("configuration"), "{e}");
        let e = crate::Error::invalid_argument("endpoint", "not a URL");
        let e = super::renamed_to_variable(e, &[("endpoint", "X_URL")], "x");
        assert_eq!(e.context_value("argument"), Some("X_URL"));
        assert_eq!(e.message(), "`X_URL`: not a URL");
    }
}
