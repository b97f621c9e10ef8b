//! The server with an `opennebula` provider in front of the fake oned: the native API
//! drives a VM through OpenNebula's real life cycle over XML-RPC.

mod common;

use std::time::Duration;

use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use common::*;
use serde_json::{json, Value};

const KEY: &str = "one-e2e-key-0123456789abcdef012345";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_api_over_opennebula() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(40)),
        ..FakeConfig::default()
    });
    let config = opennebula_provider(&oned, "");
    let s = Server::start(Options {
        config: Some(config),
        env: vec![
            ("CMS_DEV_API_KEY".into(), KEY.into()),
            opennebula_env(&oned),
        ],
        key: Some(KEY.into()),
        ..Options::default()
    });

    let images: Value = s
        .get("/v1/providers/onprem/images")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = images["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"disk") && kinds.contains(&"template"),
        "{images}"
    );
    let image = images["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "disk")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let flavors: Value = s
        .get("/v1/providers/onprem/flavors")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        flavors["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "small"),
        "{flavors}"
    );

    let r = s
        .post("/v1/providers/onprem/instances")
        .header("Idempotency-Key", "one-e2e-1")
        .json(&json!({"name": "one-vm", "image_id": image, "flavor_id": "small", "tags": {"app": "db"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let vm: Value = r.json().await.unwrap();
    let path = format!(
        "/v1/providers/onprem/instances/{}",
        vm["id"].as_str().unwrap()
    );
    assert_eq!(vm["state"], "pending", "{vm}");

    // A retried POST with the same key answers the same VM.
    let again: Value = s
        .post("/v1/providers/onprem/instances")
        .header("Idempotency-Key", "one-e2e-1")
        .json(&json!({"name": "one-vm", "image_id": image, "flavor_id": "small", "tags": {"app": "db"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], vm["id"]);

    let running = wait_state(&s, &path, "running").await;
    assert_eq!(running["raw_state"], "ACTIVE/RUNNING", "{running}");
    assert_eq!(running["tags"]["app"], "db");

    let r = s.post(&format!("{path}/stop")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let stopped = wait_state(&s, &path, "stopped").await;
    assert_eq!(stopped["raw_state"], "POWEROFF");

    // Stopping a stopped VM is an invalid transition: 409.
    let r = s.post(&format!("{path}/stop")).send().await.unwrap();
    expect_problem(r, 409, "invalid_state").await;

    let r = s.delete(&path).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let done = wait_state(&s, &path, "terminated").await;
    assert_eq!(done["raw_state"], "DONE");

    let r = s
        .get("/v1/providers/onprem/instances/999999")
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
}
