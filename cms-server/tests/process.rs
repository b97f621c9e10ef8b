//! The `cms-server` process: startup, configuration errors, the development key,
//! secrets kept out of the output, graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_after_requests_in_flight() {
    // `sluggish` answers after 3 s, so the aggregated listing below runs into its 1.5 s bound and is in flight when
    // the signal arrives.
    let config = r#"
        aggregate_timeout_ms = 1500
        [[providers]]
        name = "local"
        driver = "memory"
        [[providers]]
        name = "sluggish"
        driver = "memory"
        [providers.chaos]
        latency_ms = 3000
        latency_min_ms = 3000
        [[tenants]]
        name = "alice"
        api_key = "alice-key-0123456789abcdef0123"
        providers = ["*"]
    "#;
    let mut s = Server::start(Options {
        config: Some(config.into()),
        key: Some(ALICE.into()),
        ..Options::default()
    });
    let request = s.get("/v1/instances").send();
    let pending = tokio::spawn(async move {
        let r = request.await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    let status = tokio::task::block_in_place(|| s.terminate(Duration::from_secs(10)))
        .expect("cms-server did not exit within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let (r, answered) = pending.await.unwrap();
    let r = r.expect("the request in flight was answered");
    assert!(
        answered > signalled,
        "the request was not in flight at the signal"
    );
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["items"].is_array(), "{v}");
    // New connections are refused after the stop.
    assert!(reqwest::get(s.url("/healthz")).await.is_err());
    assert!(s.stderr.text().contains("shutdown"), "{}", s.stderr.text());
}

#[test]
fn idle_server_stops_on_sigterm_with_status_0() {
    let mut s = Server::start(Options::default());
    let status = s
        .terminate(Duration::from_secs(10))
        .expect("exited after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_configs_exit_non_zero_naming_the_problem() {
    let cases = [
        ("listen = \n", "line 1"),
        ("[[providers]]\nname = \"x\"\ndriver = \"memory\"\nboot_dely_ms = 5\n", "boot_dely_ms"),
        ("[[providers]]\nname = \"x\"\ndriver = \"cloudy\"\n", "cloudy"),
        ("[[providers]]\nname = \"x\"\ndriver = \"cloudy\"\n", "memory"),
        ("colour = \"red\"\n", "colour"),
        ("[[providers]]\nname = \"x\"\n", "driver"),
        ("[[tenants]]\nname = \"t\"\nproviders = [\"*\"]\n", "api_key"),
        (
            "[[tenants]]\nname = \"t\"\napi_key_env = \"CMS_TEST_UNSET_VARIABLE\"\nproviders = [\"*\"]\n",
            "CMS_TEST_UNSET_VARIABLE",
        ),
        (
            "[[tenants]]\nname = \"t\"\napi_key = \"k\"\nproviders = [\"elsewhere\"]\n",
            "elsewhere",
        ),
    ];
    for (config, needle) in cases {
        let file = TempFile::new(config);
        let path = file.0.to_str().unwrap();
        let (status, _out, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--config", path], &[]);
        assert!(!status.success(), "{config:?} was accepted");
        assert_eq!(status.code(), Some(2), "{config:?}");
        assert!(
            err.contains(needle),
            "{config:?}: stderr does not name `{needle}`:\n{err}"
        );
    }
    let (status, _, err) = run_to_exit(&["--config", "/nonexistent/cms.toml"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("/nonexistent/cms.toml"), "{err}");
    let (status, _, err) = run_to_exit(&["--listen", "not-an-address"], &[]);
    assert!(!status.success());
    assert!(err.contains("not-an-address"), "{err}");
}

#[tokio::test]
async fn generated_dev_key_is_printed_once_and_never_logged() {
    let s = Server::start(Options {
        env: vec![
            ("RUST_LOG".into(), "debug".into()),
            ("CMS_LOG_FORMAT".into(), "json".into()),
        ],
        ..Options::default()
    });
    let out = s.stdout.text();
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("development API key: "))
        .expect("the development key is printed")
        .trim()
        .to_owned();
    assert!(key.len() >= 32, "{key}");

    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&key);
    let r = auth(s.client.get(s.url("/v1/providers")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["items"][0]["name"], "local");
    let (image, flavor) = {
        let i: Value = auth(s.client.get(s.url("/v1/providers/local/images")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let f: Value = auth(s.client.get(s.url("/v1/providers/local/flavors")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (i["items"][0]["id"].clone(), f["items"][0]["id"].clone())
    };
    let r = auth(s.client.post(s.url("/v1/providers/local/instances")))
        .header("Idempotency-Key", "secret-test")
        .json(&serde_json::json!({"image_id": image, "flavor_id": flavor}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A wrong key close to the right one, and errors.
    let wrong = format!("{key}x");
    let r = s
        .client
        .get(s.url("/v1/providers"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = auth(s.client.get(s.url("/v1/providers/local/instances/i-nope")))
        .send()
        .await
        .unwrap();
    let _ = auth(s.client.get(s.url("/v1/instances")))
        .send()
        .await
        .unwrap();
    // Logs are written in batches by a logging thread: wait for the access lines
    // (providers, images, flavors, create, 401, get, aggregated).
    let access_lines = |err: &str| {
        err.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "request")
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while access_lines(&s.stderr.text()).len() < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = s.stdout.text();
    let err = s.stderr.text();
    assert_eq!(out.matches(&key).count(), 1, "stdout:\n{out}");
    assert_eq!(err.matches(&key).count(), 0, "the key leaked into the logs");
    assert!(
        !err.contains(&wrong[8..]),
        "a presented key leaked into the logs"
    );
    assert!(
        !err.to_lowercase().contains("bearer "),
        "an Authorization header was logged"
    );
    // The logs are JSON lines, one per request, with a request id and the route.
    let access = access_lines(&err);
    assert_eq!(access.len(), 7, "{err}");
    for a in &access {
        assert!(
            a["request_id"].is_string() && a["route"].is_string() && a["status"].is_number(),
            "{a}"
        );
        assert!(a["latency_ms"].is_number(), "{a}");
    }
    assert!(access
        .iter()
        .any(|a| a["route"] == "/v1/providers/{provider}/instances/{id}"));
}

#[tokio::test]
async fn dev_key_from_environment_and_env_config() {
    let key = "env-dev-key-0123456789abcdef0123456789";
    let file = TempFile::new("[[providers]]\nname = \"edge\"\ndriver = \"memory\"\n");
    let mut cmd_env = vec![
        ("CMS_DEV_API_KEY".to_owned(), key.to_owned()),
        ("CMS_CONFIG".to_owned(), file.0.to_str().unwrap().to_owned()),
    ];
    cmd_env.push(("RUST_LOG".to_owned(), "debug".to_owned()));
    let s = Server::start(Options {
        env: cmd_env,
        key: Some(key.to_owned()),
        ..Options::default()
    });
    let v: Value = s
        .get("/v1/providers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["items"][0]["name"], "edge");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.stdout.text().contains(key));
    assert!(!s.stderr.text().contains(key));
}
