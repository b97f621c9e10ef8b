//! Two `cms-server` replicas on one store (PostgreSQL when the run has a server, as
//! the README's test command does; else one SQLite file) and one backend (the fake
//! oned, then moto): a client alternating between them sees the same instances, ids,
//! owners and tokens; one idempotency key sent to both at once makes one instance; a
//! quota holds across them; and SIGKILL of one replica under load loses nothing while
//! the other carries on.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cms_driver_ec2::moto::MotoServer;
use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use common::*;
use serde_json::{json, Value};

const ALICE: &str = "alice-key-0123456789abcdef0123";
const BOB: &str = "bob-key-abcdef0123456789abcdef";

fn tenants() -> &'static str {
    r#"
    [[tenants]]
    name = "alice"
    api_key = "alice-key-0123456789abcdef0123"
    providers = ["*"]
    max_instances = 500

    [[tenants]]
    name = "bob"
    api_key = "bob-key-abcdef0123456789abcdef"
    providers = ["*"]
    max_instances = 3
    "#
}

/// Two replicas started at once (they migrate the fresh store together).
fn replicas(config: &str, env: &[(String, String)], state: &StateDb) -> (Server, Server) {
    let start = || {
        Server::start(Options {
            config: Some(config.to_owned()),
            env: env.to_vec(),
            key: Some(ALICE.into()),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    std::thread::scope(|sc| {
        let a = sc.spawn(start);
        let b = sc.spawn(start);
        (a.join().unwrap(), b.join().unwrap())
    })
}

async fn post(
    s: &Server,
    key: &str,
    path: &str,
    body: &Value,
    idem: Option<&str>,
) -> reqwest::Response {
    let mut r = s.client.post(s.url(path)).bearer_auth(key).json(body);
    if let Some(k) = idem {
        r = r.header("Idempotency-Key", k);
    }
    r.send().await.unwrap()
}

async fn list(s: &Server, key: &str, provider: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("/v1/providers/{provider}/instances?limit=100");
        if let Some(t) = &token {
            url.push_str("&page_token=");
            url.push_str(&urlencode(t));
        }
        let r = s
            .client
            .get(s.url(&url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let page: Value = r.json().await.unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

fn ids(items: &[Value]) -> HashSet<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_store_and_one_opennebula() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(5)),
        ..FakeConfig::default()
    });
    let state = StateDb::shared("replicas");
    let config = format!(
        r#"
        lease_ms = 1000
        {}
        {}
        "#,
        opennebula_provider(&oned, ""),
        tenants()
    );
    let env = vec![opennebula_env(&oned)];
    let (a, b) = replicas(&config, &env, &state);
    let made = || oned.calls("one.template.instantiate") + oned.calls("one.vm.allocate");

    let images: Value = a
        .get("/v1/providers/onprem/images")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image = images["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "disk")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = |name: &str| json!({"name": name, "image_id": image, "flavor_id": "small"});

    // Made on one, seen on the other, with the same id and owner.
    let r = post(
        &a,
        ALICE,
        "/v1/providers/onprem/instances",
        &body("via-a"),
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let via_a: Value = r.json().await.unwrap();
    let seen = list(&b, ALICE, "onprem").await;
    assert_eq!(
        ids(&seen),
        HashSet::from([via_a["id"].as_str().unwrap().to_owned()])
    );
    assert_eq!(seen[0]["owner"], "alice");
    assert!(list(&b, BOB, "onprem").await.is_empty());

    // A key used on one replica answers the same instance on the other.
    let r = post(
        &b,
        ALICE,
        "/v1/providers/onprem/instances",
        &body("keyed"),
        Some("k-1"),
    )
    .await;
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    let r = post(
        &a,
        ALICE,
        "/v1/providers/onprem/instances",
        &body("keyed"),
        Some("k-1"),
    )
    .await;
    assert!(r.status().is_success());
    let again: Value = r.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let r = post(
        &a,
        ALICE,
        "/v1/providers/onprem/instances",
        &body("other"),
        Some("k-1"),
    )
    .await;
    let p = expect_problem(r, 409, "idempotency_conflict").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`k-1`") && !detail.contains("native:"),
        "{detail}"
    );

    // The same key sent to both at once makes one instance, round after round.
    for round in 0..5 {
        let key = format!("race-{round}");
        let race = body("race");
        let before = made();
        let (ra, rb) = tokio::join!(
            post(
                &a,
                ALICE,
                "/v1/providers/onprem/instances",
                &race,
                Some(&key)
            ),
            post(
                &b,
                ALICE,
                "/v1/providers/onprem/instances",
                &race,
                Some(&key)
            ),
        );
        assert!(
            ra.status().is_success() && rb.status().is_success(),
            "{} {}",
            ra.status(),
            rb.status()
        );
        let (va, vb): (Value, Value) = (ra.json().await.unwrap(), rb.json().await.unwrap());
        assert_eq!(va["id"], vb["id"], "round {round}");
        assert_eq!(
            made(),
            before + 1,
            "round {round}: one key made {} VMs",
            made() - before
        );
    }

    // Bob's quota of 3 holds across both replicas.
    let tries = futures::future::join_all((0..10).map(|i| {
        let s = if i % 2 == 0 { &a } else { &b };
        let body = body(&format!("bob-{i}"));
        async move {
            post(s, BOB, "/v1/providers/onprem/instances", &body, None)
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(tries.iter().filter(|s| **s == 201).count(), 3, "{tries:?}");
    assert_eq!(tries.iter().filter(|s| **s == 403).count(), 7, "{tries:?}");
    assert_eq!(list(&a, BOB, "onprem").await.len(), 3);

    // Load on both; replica a is killed in the middle of it.
    let before: HashSet<String> = ids(&list(&b, ALICE, "onprem").await);
    let load = async {
        let mut answered = Vec::new();
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_millis(2500) {
            let s = if i % 2 == 0 { &a } else { &b };
            let name = format!("load-{i}");
            let r = s
                .client
                .post(s.url("/v1/providers/onprem/instances"))
                .bearer_auth(ALICE)
                .json(&body(&name))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == 201 {
                    let v: Value = r.json().await.unwrap();
                    answered.push(v["id"].as_str().unwrap().to_owned());
                }
            }
            i += 1;
        }
        answered
    };
    let kill = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        a.sigkill();
    };
    let (answered, ()) = tokio::join!(load, kill);
    assert!(
        answered.len() > 5,
        "the surviving replica stopped answering: {answered:?}"
    );
    // Every instance the backend made is alice's and visible, on the replica left:
    // those answered, and those whose answer died with replica a.
    let after = ids(&list(&b, ALICE, "onprem").await);
    for id in &answered {
        assert!(after.contains(id), "{id} was answered and is not listed");
    }
    let vms_made = made();
    let visible = after.len() + 3 /* bob's */;
    assert_eq!(
        visible, vms_made,
        "the backend made {vms_made} VMs, {visible} are visible"
    );
    assert!(after.is_superset(&before));
    // And the replica left carries on.
    let r = post(
        &b,
        ALICE,
        "/v1/providers/onprem/instances",
        &body("after"),
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    // The creates replica a was carrying out are settled by replica b.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = b.stderr.text();
    assert!(!log.contains("could not settle"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_store_and_moto() {
    let moto = MotoServer::start().await;
    let state = StateDb::shared("replicas-moto");
    let config = format!(
        r#"
        [[providers]]
        name = "aws"
        driver = "ec2"
        region = "{}"
        endpoint = "{}"
        access_key_id_env = "CMS_TEST_MOTO_KEY_ID"
        secret_access_key_env = "CMS_TEST_MOTO_SECRET"
        image_owners = ["{}"]
        {}
        "#,
        cms_driver_ec2::moto::REGION,
        moto.endpoint(),
        cms_driver_ec2::moto::IMAGE_OWNER,
        tenants()
    );
    let env = vec![
        ("CMS_TEST_MOTO_KEY_ID".to_owned(), "testing".to_owned()),
        ("CMS_TEST_MOTO_SECRET".to_owned(), "testing".to_owned()),
    ];
    let (a, b) = replicas(&config, &env, &state);
    let images: Value = a
        .get("/v1/providers/aws/images")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image = images["items"][0]["id"].as_str().unwrap().to_owned();
    let body = json!({"name": "m", "image_id": image, "flavor_id": cms_driver_ec2::moto::FLAVOR});
    // moto ignores client tokens: one instance per key comes from the service alone.
    for round in 0..3 {
        let key = format!("moto-race-{round}");
        let (ra, rb) = tokio::join!(
            post(&a, ALICE, "/v1/providers/aws/instances", &body, Some(&key)),
            post(&b, ALICE, "/v1/providers/aws/instances", &body, Some(&key)),
        );
        assert!(ra.status().is_success() && rb.status().is_success());
        let (va, vb): (Value, Value) = (ra.json().await.unwrap(), rb.json().await.unwrap());
        assert_eq!(va["id"], vb["id"], "round {round}");
    }
    let on_a = ids(&list(&a, ALICE, "aws").await);
    let on_b = ids(&list(&b, ALICE, "aws").await);
    assert_eq!(on_a.len(), 3, "{on_a:?}");
    assert_eq!(on_a, on_b);
    assert!(list(&b, BOB, "aws").await.is_empty());
}
