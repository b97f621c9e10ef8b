//! Configuration: TOML and the environment, errors that name the wrong key, and a
//! password that never shows.

mod common;

use std::collections::HashMap;

use cms_core::{Driver, ErrorKind};
use cms_driver_opennebula::fake::FakeOned;
use cms_driver_opennebula::{driver_from_config, OpenNebulaConfig, OpenNebulaDriver};

use common::*;

fn key_of(e: &cms_core::Error) -> Option<&str> {
    e.context_value("argument")
}

#[test]
fn a_full_toml_configuration_reads() {
    let c = OpenNebulaConfig::from_toml(
        r#"
        endpoint = "http://one.example.com:2633/RPC2"
        username = "cms"
        password_env = "ONE_PASSWORD"
        default_network = "3"
        timeout_secs = 5
        network_driver = "vxlan"

        [[sizes]]
        name = "small"
        cpu = 0.5
        vcpu = 1
        memory_mib = 1024
        "#,
    )
    .unwrap();
    assert_eq!(c.default_network, Some(3));
    assert_eq!(c.sizes[0].cpu, 0.5);
    assert_eq!(c.network_driver, "vxlan");
    assert_eq!(c.size("small").map(|s| s.vcpu), Some(1));
}

#[test]
fn errors_name_the_key_that_is_wrong() {
    let base = r#"endpoint = "http://h:2633/RPC2"
username = "cms"
password_env = "ONE_PASSWORD"
"#;
    let cases = [
        (format!("{base}passwrod = \"x\""), "passwrod"),
        (
            format!("{base}[[sizes]]\nname = \"s\"\ncpu = \"lots\"\nvcpu = 1\nmemory_mib = 1"),
            "sizes[0].cpu",
        ),
        (
            format!("{base}[[sizes]]\nname = \"a:b\"\ncpu = 1.0\nvcpu = 1\nmemory_mib = 1"),
            "sizes[0]",
        ),
        (
            format!("{base}[[sizes]]\nname = \"s\"\ncpu = 0.0\nvcpu = 1\nmemory_mib = 1"),
            "sizes[0]",
        ),
        (format!("{base}default_network = -4"), "default_network"),
        (format!("{base}timeout_secs = 0"), "timeout_secs"),
        (format!("{base}volume_datastore = -1"), "volume_datastore"),
        (
            format!("{base}volume_datastore = \"one\""),
            "volume_datastore",
        ),
        (base.replace("http://h:2633/RPC2", "not a url"), "endpoint"),
        (base.replace("http://h", "ftp://h"), "endpoint"),
        (base.replace("http://h", "http://u:secret@h"), "endpoint"),
        (
            base.replace("password_env = \"ONE_PASSWORD\"\n", ""),
            "password_env",
        ),
        (base.replace("username = \"cms\"\n", ""), "username"),
        (format!("{base}auth_file = \"/x\""), "password_env"),
    ];
    for (text, key) in cases {
        let e = OpenNebulaConfig::from_toml(&text).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{text}");
        let named = key_of(&e) == Some(key) || e.message().contains(&format!("`{key}`"));
        assert!(named, "{key} not named in {e} ({text})");
        assert!(!e.message().contains("secret"), "{e}");
    }
    // https needs the rustls feature.
    let https = base.replace("http://h", "https://h");
    assert_eq!(
        OpenNebulaConfig::from_toml(&https).is_ok(),
        cfg!(feature = "rustls")
    );
}

#[test]
fn the_environment_is_read_as_the_opennebula_cli_reads_it() {
    let vars = |pairs: &[(&str, &str)]| {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    };
    let c = OpenNebulaConfig::from_vars(vars(&[("HOME", "/home/u")])).unwrap();
    assert_eq!(c.endpoint, "http://localhost:2633/RPC2");
    assert_eq!(
        c.auth_file.as_deref(),
        Some(std::path::Path::new("/home/u/.one/one_auth"))
    );
    let c = OpenNebulaConfig::from_vars(vars(&[
        ("ONE_XMLRPC", "http://one:2633/RPC2"),
        ("CMS_ONE_USERNAME", "cms"),
        ("CMS_ONE_PASSWORD_ENV", "MY_PW"),
        ("CMS_ONE_SIZES", "small=0.5/1/1024,big=4/8/16384"),
        ("CMS_ONE_DEFAULT_NETWORK", "2"),
        ("CMS_ONE_VOLUME_DATASTORE", "101"),
    ]))
    .unwrap();
    assert_eq!(c.volume_datastore, 101);
    assert_eq!(
        OpenNebulaConfig::from_vars(vars(&[("HOME", "/h")]))
            .unwrap()
            .volume_datastore,
        1,
        "the default image datastore"
    );
    assert_eq!(c.password_env.as_deref(), Some("MY_PW"));
    assert_eq!(c.sizes.len(), 2);
    assert_eq!(c.default_network, Some(2));
    for (pairs, key) in [
        (
            vec![("HOME", "/h"), ("CMS_ONE_SIZES", "small=1")],
            "CMS_ONE_SIZES",
        ),
        (
            vec![("HOME", "/h"), ("CMS_ONE_DEFAULT_NETWORK", "x")],
            "CMS_ONE_DEFAULT_NETWORK",
        ),
        (vec![("HOME", "/h"), ("ONE_XMLRPC", "nope")], "ONE_XMLRPC"),
        (
            vec![("HOME", "/h"), ("CMS_ONE_TIMEOUT_SECS", "soon")],
            "CMS_ONE_TIMEOUT_SECS",
        ),
        (
            vec![("HOME", "/h"), ("CMS_ONE_VOLUME_DATASTORE", "-2")],
            "CMS_ONE_VOLUME_DATASTORE",
        ),
        (vec![("CMS_ONE_PASSWORD_ENV", "PW")], "CMS_ONE_USERNAME"),
        (vec![], "ONE_AUTH"),
    ] {
        let e = OpenNebulaConfig::from_vars(vars(&pairs)).unwrap_err();
        assert_eq!(key_of(&e), Some(key), "{e}");
    }
}

#[test]
fn credentials_come_from_an_auth_file_or_a_variable() {
    let dir = temp_dir("auth");
    let file = dir.join("one_auth");
    std::fs::write(&file, "oneuser:s3cr3t-value\n").unwrap();
    let mut c = OpenNebulaConfig::new("http://h:2633/RPC2", "oneuser", "X");
    c.password_env = None;
    c.auth_file = Some(file.clone());
    assert_eq!(
        c.credentials().unwrap(),
        ("oneuser".to_owned(), "s3cr3t-value".to_owned())
    );
    c.username = None;
    assert_eq!(c.credentials().unwrap().0, "oneuser");

    c.username = Some("other".into());
    let e = c.credentials().unwrap_err();
    assert_eq!(key_of(&e), Some("username"));

    std::fs::write(&file, "no-colon-s3cr3t-value\n").unwrap();
    c.username = None;
    let e = c.credentials().unwrap_err();
    assert_eq!(key_of(&e), Some("auth_file"));
    assert!(
        !e.to_string().contains("s3cr3t"),
        "the file's content leaked: {e}"
    );

    c.auth_file = Some(dir.join("missing"));
    assert_eq!(key_of(&c.credentials().unwrap_err()), Some("auth_file"));

    // A variable: one that is surely set, and one that is surely not.
    let mut c = OpenNebulaConfig::new("http://h:2633/RPC2", "u", "PATH");
    assert_eq!(c.credentials().unwrap().1, std::env::var("PATH").unwrap());
    c.password_env = Some("CMS_ONE_TEST_SURELY_UNSET_VARIABLE".into());
    let e = OpenNebulaDriver::new(c).unwrap_err();
    assert_eq!(key_of(&e), Some("password_env"));
    assert!(e.message().contains("CMS_ONE_TEST_SURELY_UNSET_VARIABLE"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_driver_comes_from_a_serde_value() {
    let oned = FakeOned::start(quick_config());
    let dir = temp_dir("value");
    let file = dir.join("one_auth");
    std::fs::write(&file, format!("{}:{}", oned.username(), oned.password())).unwrap();
    let value: toml::Value = toml::from_str(&format!(
        "endpoint = \"{}\"\nauth_file = \"{}\"\n",
        oned.endpoint(),
        file.display()
    ))
    .unwrap();
    let driver = driver_from_config(value).unwrap();
    assert_eq!(driver.list_locations().await.unwrap().len(), 2);
    for text in [format!("{driver:?}"), format!("{:?}", driver.config())] {
        assert!(!text.contains(oned.password()), "{text}");
    }
    let bad: toml::Value = toml::from_str("endpoint = 3").unwrap();
    let e = driver_from_config(bad).unwrap_err();
    assert!(e.message().contains("`endpoint`"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}
