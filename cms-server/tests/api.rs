//! End-to-end tests of the native API: the real `cms-server` binary driven over HTTP.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

async fn create(s: &Server, provider: &str, body: Value) -> reqwest::Response {
    s.post(&format!("/v1/providers/{provider}/instances"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn instance_lifecycle_over_http() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;

    let r = create(
        &s,
        "local",
        json!({"name": "web-1", "image_id": image, "flavor_id": flavor, "tags": {"env": "test"}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("x-request-id"));
    let vm: Value = r.json().await.unwrap();
    let id = vm["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/providers/local/instances/{id}"));
    assert_eq!(vm["name"], "web-1");
    assert_eq!(vm["tags"]["env"], "test");
    assert!(["pending", "running"].contains(&vm["state"].as_str().unwrap()));

    let got: Value = s.get(&location).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["id"], id);
    wait_state(&s, &location, "running").await;

    let r = s.post(&format!("{location}/stop")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert!(
        ["stopping", "stopped"].contains(&v["state"].as_str().unwrap()),
        "{v}"
    );
    wait_state(&s, &location, "stopped").await;

    let r = s.post(&format!("{location}/start")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_state(&s, &location, "running").await;

    let r = s.post(&format!("{location}/reboot")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert!(
        ["rebooting", "running"].contains(&v["state"].as_str().unwrap()),
        "{v}"
    );
    wait_state(&s, &location, "running").await;

    // The console shows the boot and every action, oldest first.
    let r = s.get(&format!("{location}/console")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let console: Value = r.json().await.unwrap();
    let text = console["text"].as_str().unwrap();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the console:\n{text}"))
    };
    assert!(at("boots image") < at("stop requested"), "{text}");
    assert!(at("stop requested") < at("start requested"), "{text}");
    assert!(at("start requested") < at("reboot requested"), "{text}");
    assert!(console["updated_at"].is_string(), "{console}");
    let r = s
        .get("/v1/providers/local/instances/nope/console")
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;

    let r = s.delete(&location).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert!(
        ["terminating", "terminated"].contains(&v["state"].as_str().unwrap()),
        "{v}"
    );
    wait_state(&s, &location, "terminated").await;

    let list: Value = s
        .get("/v1/providers/local/instances?state=terminated")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id));
}

#[tokio::test]
async fn listing_filters_and_pagination() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let mut ids = BTreeSet::new();
    for k in 0..23 {
        let env = if k % 2 == 0 { "prod" } else { "dev" };
        let mut tags = json!({"env": env});
        if k % 5 == 0 {
            tags["team"] = json!("core");
        }
        let r = create(
            &s,
            "local",
            json!({"name": format!("vm-{k}"), "image_id": image, "flavor_id": flavor, "tags": tags}),
        )
        .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }

    // Page through 5 at a time: every instance exactly once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v1/providers/local/instances?limit=5".to_owned();
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={}", urlencode(t)));
        }
        let r = s.get(&path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 5);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        pages += 1;
        assert!(pages < 50, "pagination does not end");
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => {
                assert!(page["next_page_token"].is_null());
                break;
            }
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    assert_eq!(unique, ids, "lost or extra instances");
    assert!(pages >= 5);

    let count = |q: &'static str| {
        let s = &s;
        async move {
            let r = s
                .get(&format!("/v1/providers/local/instances?limit=1000&{q}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{q}");
            let v: Value = r.json().await.unwrap();
            v["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("tag=env=prod").await, 12);
    assert_eq!(count("tag=env%3Ddev").await, 11);
    assert_eq!(count("tag=team").await, 5);
    assert_eq!(count("tag=team&tag=env=prod").await, 3);
    assert_eq!(count("name=vm-7").await, 1);
    assert_eq!(count("name=nope").await, 0);
    assert_eq!(count("state=pending,running").await, 23);
    assert_eq!(count("state=pending&state=running").await, 23);
    assert_eq!(count("state=stopped").await, 0);

    // The aggregated listing takes the same filters.
    let agg: Value = s
        .get("/v1/instances?tag=team&tag=env=prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let local: Vec<_> = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["provider"] == "local")
        .collect();
    assert_eq!(local.len(), 3);
}

#[tokio::test]
async fn idempotency_key() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let body = json!({"name": "idem", "image_id": image, "flavor_id": flavor});
    let send = |key: &'static str, tenant: &'static str, body: Value| {
        let s = &s;
        async move {
            s.client
                .post(s.url("/v1/providers/local/instances"))
                .bearer_auth(tenant)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r1 = send("key-1", ALICE, body.clone()).await;
    assert_eq!(r1.status(), 201);
    let v1: Value = r1.json().await.unwrap();
    let r2 = send("key-1", ALICE, body.clone()).await;
    assert!(r2.status().is_success());
    let v2: Value = r2.json().await.unwrap();
    assert_eq!(v1["id"], v2["id"], "same key, same body: same instance");

    // Same key, another body: a problem, and no second instance.
    let other = json!({"name": "other", "image_id": image, "flavor_id": flavor});
    let r3 = send("key-1", ALICE, other).await;
    let p = expect_problem(r3, 409, "idempotency_conflict").await;
    assert_eq!(p["provider"], "local");

    // Another tenant's same key is another instance.
    let r4 = send("key-1", BOB, body.clone()).await;
    assert_eq!(r4.status(), 201);
    let v4: Value = r4.json().await.unwrap();
    assert_ne!(v4["id"], v1["id"]);

    // A fresh key is a fresh instance.
    let r5 = send("key-2", ALICE, body).await;
    let v5: Value = r5.json().await.unwrap();
    assert_ne!(v5["id"], v1["id"]);

    let list: Value = s
        .get("/v1/providers/local/instances?name=idem")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Alice sees her two; bob's is his alone, and hers are "not found" to him.
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let id = v1["id"].as_str().unwrap();
    let r = s
        .client
        .get(s.url(&format!("/v1/providers/local/instances/{id}")))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;

    let r = s
        .post("/v1/providers/local/instances")
        .header("Idempotency-Key", "x".repeat(300))
        .json(&json!({"image_id": image, "flavor_id": flavor}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "invalid_header").await;
}

#[tokio::test]
async fn aggregated_listing_reports_failing_providers() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let r = create(&s, "local", json!({"image_id": image, "flavor_id": flavor})).await;
    assert_eq!(r.status(), 201);
    let vm: Value = r.json().await.unwrap();

    let r = s.get("/v1/instances").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["provider"], "local");
    assert_eq!(items[0]["id"], vm["id"]);
    assert!(items[0]["state"].is_string());

    let errors = v["errors"].as_array().unwrap();
    let by_provider = |p: &str| {
        errors
            .iter()
            .find(|e| e["provider"] == p)
            .unwrap_or_else(|| panic!("no error for {p}: {v}"))
            .clone()
    };
    let broken = by_provider("broken");
    assert_eq!(broken["status"], 503);
    assert_eq!(broken["kind"], "unavailable");
    assert_eq!(broken["type"], "urn:cms:problem:unavailable");
    assert!(broken["detail"].as_str().unwrap().contains("broken"));
    let limited = by_provider("limited");
    assert_eq!(limited["status"], 429);
    assert_eq!(limited["kind"], "rate_limited");
    let slow = by_provider("slow");
    assert_eq!(slow["status"], 504);
    assert_eq!(slow["kind"], "timeout");
    assert_eq!(errors.len(), 3, "{v}");

    // Bob may use only `local`: nothing fails for him.
    let r = s
        .client
        .get(s.url("/v1/instances"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{v}");
    // ... and alice's instance is not his to see.
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");

    let r = s.get("/v1/instances?limit=5").send().await.unwrap();
    expect_problem(r, 400, "invalid_query").await;
}

#[tokio::test]
async fn aggregated_listing_bounds_each_provider_in_time() {
    let config = r#"
        aggregate_timeout_ms = 300
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
    let s = Server::start(Options {
        config: Some(config.into()),
        key: Some(ALICE.into()),
        ..Options::default()
    });
    let started = std::time::Instant::now();
    let r = s.get("/v1/instances").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["provider"], "sluggish");
    assert_eq!(errors[0]["status"], 504);
    assert_eq!(errors[0]["kind"], "timeout");
}

#[tokio::test]
async fn error_answers_are_problems() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;

    // 401: no key, a wrong key, another scheme.
    let r = s.client.get(s.url("/v1/providers")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"cms\"");
    expect_problem(r, 401, "unauthenticated").await;
    let r = s
        .client
        .get(s.url("/v1/providers/local/instances"))
        .bearer_auth("not-a-key")
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "unauthenticated").await;
    let r = s
        .client
        .get(s.url("/v1/providers"))
        .basic_auth("alice", Some(ALICE))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "unauthenticated").await;

    // 403: bob may not use `broken`; his provider list has only `local`.
    let r = s
        .client
        .get(s.url("/v1/providers/broken/instances"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 403, "permission_denied").await;
    assert!(p["detail"].as_str().unwrap().contains("broken"));
    let v: Value = s
        .client
        .get(s.url("/v1/providers"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("local")]);

    // 404: unknown provider (named), instance, route.
    let r = s
        .get("/v1/providers/nowhere/instances")
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 404, "not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("nowhere"), "{p}");
    assert_eq!(p["provider"], "nowhere");
    let r = s
        .get("/v1/providers/local/instances/i-nope")
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 404, "not_found").await;
    assert_eq!(p["operation"], "get_instance");
    let r = s.get("/v1/nothing/here").send().await.unwrap();
    expect_problem(r, 404, "route_not_found").await;
    let r = s.client.get(s.url("/")).send().await.unwrap();
    expect_problem(r, 404, "route_not_found").await;

    // 405 with Allow.
    let r = s
        .req(reqwest::Method::PUT, "/v1/providers/local/instances")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET, POST");
    expect_problem(r, 405, "method_not_allowed").await;
    let r = s
        .req(reqwest::Method::PATCH, "/healthz")
        .send()
        .await
        .unwrap();
    expect_problem(r, 405, "method_not_allowed").await;

    // 400: bodies.
    let post_raw = |body: &'static str, ctype: Option<&'static str>| {
        let s = &s;
        async move {
            let mut r = s.post("/v1/providers/local/instances").body(body);
            if let Some(c) = ctype {
                r = r.header("content-type", c);
            }
            r.send().await.unwrap()
        }
    };
    let json_ct = Some("application/json");
    let p = expect_problem(
        post_raw("{\"image_id\": ", json_ct).await,
        400,
        "malformed_body",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("not valid JSON"),
        "{p}"
    );
    let body = format!(r#"{{"image_id":"{image}","flavor_id":"{flavor}","colour":"red"}}"#);
    let r = s
        .post("/v1/providers/local/instances")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 400, "malformed_body").await;
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");
    let r = create(&s, "local", json!({"image_id": image, "flavor_id": 42})).await;
    let p = expect_problem(r, 400, "malformed_body").await;
    assert!(p["detail"].as_str().unwrap().contains("flavor_id"), "{p}");
    let r = create(&s, "local", json!({"image_id": image})).await;
    let p = expect_problem(r, 400, "malformed_body").await;
    assert!(p["detail"].as_str().unwrap().contains("flavor_id"), "{p}");
    let r = create(&s, "local", json!([1, 2])).await;
    expect_problem(r, 400, "malformed_body").await;
    expect_problem(post_raw("", None).await, 400, "malformed_body").await;
    let r = create(
        &s,
        "local",
        json!({"image_id": "img-none", "flavor_id": flavor}),
    )
    .await;
    assert!([400, 404].contains(&r.status().as_u16()));

    // 415: not JSON.
    let p = expect_problem(
        post_raw("{}", Some("text/plain")).await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("text/plain"));

    // 400: query parameters.
    for (q, kind, needle) in [
        ("state=sleeping", "invalid_query", "sleeping"),
        ("limit=0", "invalid_query", "limit"),
        ("limit=1001", "invalid_query", "limit"),
        ("limit=ten", "invalid_query", "limit"),
        ("colour=red", "invalid_query", "colour"),
        ("page_token=has%20space", "invalid_query", "page_token"),
        ("tag=%3Dv", "invalid_query", "tag"),
        ("name=a%07b", "invalid_query", "name"),
    ] {
        let r = s
            .get(&format!("/v1/providers/local/instances?{q}"))
            .send()
            .await
            .unwrap();
        let p = expect_problem(r, 400, kind).await;
        assert!(p["detail"].as_str().unwrap().contains(needle), "{q}: {p}");
    }
    // 404: a well-formed page token the listing never handed out names no page.
    for path in [
        "/v1/providers/local/images?page_token=zzz",
        "/v1/providers/local/instances?page_token=garbage",
    ] {
        let r = s.get(path).send().await.unwrap();
        let p = expect_problem(r, 404, "page_not_found").await;
        assert!(p["detail"].as_str().unwrap().contains("page_token"), "{p}");
    }

    // 413: a body over 64 KiB.
    let big = format!(
        r#"{{"image_id":"{image}","flavor_id":"{flavor}","user_data":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let r = s
        .post("/v1/providers/local/instances")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_problem(r, 413, "payload_too_large").await;
    // Just under the limit is fine (padded with JSON whitespace).
    let ok = format!(
        r#"{{"image_id":"{image}",{}"flavor_id":"{flavor}"}}"#,
        " ".repeat(60 * 1024)
    );
    let r = s
        .post("/v1/providers/local/instances")
        .header("content-type", "application/json")
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // 409: an impossible transition.
    let r = create(&s, "local", json!({"image_id": image, "flavor_id": flavor})).await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    wait_state(&s, &location, "running").await;
    let r = s.post(&format!("{location}/start")).send().await.unwrap();
    let p = expect_problem(r, 409, "invalid_state").await;
    assert_eq!(p["operation"], "start_instance");

    // 429 with Retry-After (1.5 s rounds up to 2).
    let r = s
        .get("/v1/providers/limited/instances")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "2");
    let p = expect_problem(r, 429, "rate_limited").await;
    assert_eq!(p["provider"], "limited");
    assert_eq!(p["retry_after"], 2);

    // 503 from a provider that fails; 504 from one that does not answer in time.
    let r = s.get("/v1/providers/broken/flavors").send().await.unwrap();
    let p = expect_problem(r, 503, "unavailable").await;
    assert_eq!(p["operation"], "list_flavors");
    let r = s.get("/v1/providers/slow/images").send().await.unwrap();
    expect_problem(r, 504, "timeout").await;

    // The request id is echoed, and carried in problems.
    let r = s
        .get("/v1/providers/local/instances/i-nope")
        .header("x-request-id", "req-12345")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-12345");
    let p = expect_problem(r, 404, "not_found").await;
    assert_eq!(p["request_id"], "req-12345");
}

#[tokio::test]
async fn networks_key_pairs_images_locations() {
    let s = Server::with_test_config();

    let images: Value = s
        .get("/v1/providers/local/images")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image_id = images["items"][0]["id"].as_str().unwrap();
    let r = s
        .get(&format!("/v1/providers/local/images/{image_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let img: Value = r.json().await.unwrap();
    assert_eq!(img["id"], image_id);
    let r = s
        .get("/v1/providers/local/images/nope")
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;

    let locs: Value = s
        .get("/v1/providers/local/locations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!locs["items"].as_array().unwrap().is_empty());
    assert!(locs["next_page_token"].is_null());

    // Networks: create (201 + Location), get, list, delete (204), gone.
    let r = s
        .post("/v1/providers/local/networks")
        .json(&json!({"name": "backend", "cidr": "10.42.0.0/24", "tags": {"tier": "db"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let net: Value = r.json().await.unwrap();
    assert_eq!(net["cidr"], "10.42.0.0/24");
    assert_eq!(
        location,
        format!(
            "/v1/providers/local/networks/{}",
            net["id"].as_str().unwrap()
        )
    );
    let got: Value = s.get(&location).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["name"], "backend");
    let list: Value = s
        .get("/v1/providers/local/networks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == net["id"]));
    let r = s
        .post("/v1/providers/local/networks")
        .json(&json!({"name": "bad", "cidr": "not-a-cidr"}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "invalid_argument").await;
    let r = s
        .post("/v1/providers/local/networks")
        .json(&json!({"name": "bad", "cidr": "10.0.0.0/24", "vlan": 4}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "malformed_body").await;
    let r = s.delete(&location).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = s.get(&location).send().await.unwrap();
    expect_problem(r, 404, "not_found").await;

    // Key pairs: generated (private key once), imported, listed, deleted.
    let r = s
        .post("/v1/providers/local/key-pairs")
        .json(&json!({"name": "gen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let kp: Value = r.json().await.unwrap();
    assert!(
        kp["private_key"]
            .as_str()
            .is_some_and(|k| k.contains("PRIVATE KEY")),
        "{kp}"
    );
    let public = kp["public_key"].as_str().unwrap().to_owned();
    let r = s
        .post("/v1/providers/local/key-pairs")
        .json(&json!({"name": "imported", "public_key": public}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let imported: Value = r.json().await.unwrap();
    assert!(imported.get("private_key").is_none_or(|k| k.is_null()));
    let r = s
        .post("/v1/providers/local/key-pairs")
        .json(&json!({"name": "gen"}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 409, "already_exists").await;
    let list: Value = s
        .get("/v1/providers/local/key-pairs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: BTreeSet<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains("gen") && names.contains("imported"));
    assert!(list["next_page_token"].is_null());
    assert!(
        !list.to_string().contains("PRIVATE KEY"),
        "private keys are shown only once"
    );
    let r = s
        .delete("/v1/providers/local/key-pairs/gen")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .delete("/v1/providers/local/key-pairs/gen")
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn health_and_metrics() {
    let s = Server::with_test_config();
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");

    for _ in 0..3 {
        let r = s.get("/v1/providers/local/instances").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let _ = s
        .get("/v1/providers/local/instances/i-nope")
        .send()
        .await
        .unwrap();
    let _ = s
        .get("/v1/providers/broken/instances")
        .send()
        .await
        .unwrap();
    let _ = s.client.get(s.url("/no/such/route")).send().await.unwrap();

    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for needle in [
        "# TYPE cms_http_requests_total counter",
        r#"cms_http_requests_total{route="/v1/providers/{provider}/instances",method="GET",status="200"} 3"#,
        r#"cms_http_requests_total{route="/v1/providers/{provider}/instances/{id}",method="GET",status="404"} 1"#,
        r#"cms_http_requests_total{route="/v1/providers/{provider}/instances",method="GET",status="503"} 1"#,
        r#"cms_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        "# TYPE cms_http_request_duration_seconds histogram",
        r#"cms_http_request_duration_seconds_bucket{route="/v1/providers/{provider}/instances",le="+Inf"}"#,
        r#"cms_http_request_duration_seconds_count{route="/v1/providers/{provider}/instances"} 4"#,
        "# TYPE cms_driver_calls_total counter",
        r#"cms_driver_calls_total{provider="local",operation="list_instances"} 3"#,
        r#"cms_driver_errors_total{provider="broken",operation="list_instances",kind="unavailable"} 1"#,
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains("i-nope"), "raw paths must not be labels");
}

#[tokio::test]
async fn tags_change_by_merge_patch_and_instances_list_by_id() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let body = json!({"image_id": image, "flavor_id": flavor, "tags": {"env": "demo", "old": "x"}});
    let a: Value = create(&s, "local", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let b: Value = create(&s, "local", body).await.json().await.unwrap();
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let tags = format!("/v1/providers/local/instances/{a}/tags");
    let patch = |path: &str, body: &str| {
        s.req(reqwest::Method::PATCH, path)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_owned())
    };
    let r = patch(&tags, r#"{"team": "web", "old": null, "absent": null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], json!({"env": "demo", "team": "web"}));
    // Repeating it changes nothing; an empty patch answers the instance as it is.
    let v: Value = json_of(patch(&tags, r#"{"team": "web", "old": null}"#)).await;
    assert_eq!(v["tags"], json!({"env": "demo", "team": "web"}));
    let v: Value = json_of(patch(&tags, "{}")).await;
    assert_eq!(v["tags"], json!({"env": "demo", "team": "web"}));
    // Bad patches, unknown and foreign instances.
    for (body, kind, status) in [
        (r#"{"": "x"}"#, "invalid_argument", 400),
        (r#"{"k": 3}"#, "malformed_body", 400),
        (r#"["k"]"#, "malformed_body", 400),
    ] {
        let r = patch(&tags, body).send().await.unwrap();
        expect_problem(r, status, kind).await;
    }
    let many: serde_json::Map<String, Value> =
        (0..51).map(|k| (format!("k{k}"), json!("v"))).collect();
    let r = patch(&tags, &Value::Object(many).to_string())
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 400, "malformed_body").await;
    assert!(p["detail"].as_str().unwrap().contains("at most 50"), "{p}");
    let r = patch(
        "/v1/providers/local/instances/i-0000000000000dead/tags",
        "{}",
    )
    .send()
    .await
    .unwrap();
    expect_problem(r, 404, "not_found").await;
    let r = s
        .client
        .patch(s.url(&tags))
        .bearer_auth(BOB)
        .json(&json!({"x": "y"}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
    let r = s.post(&tags).json(&json!({})).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "PATCH");
    expect_problem(r, 405, "method_not_allowed").await;

    // `id` picks instances out of a listing, with the other filters.
    let list = |q: String| {
        let s = &s;
        async move {
            let v: Value = json_of(s.get(&format!("/v1/providers/local/instances?{q}"))).await;
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let mut both = list(format!("id={a}&id={b}")).await;
    both.sort();
    let mut want = vec![a.to_owned(), b.to_owned()];
    want.sort();
    assert_eq!(both, want);
    assert_eq!(list(format!("id={a}&id={b}&tag=team%3Dweb")).await, [a]);
    assert_eq!(
        list("id=i-0000000000000dead".into()).await,
        Vec::<String>::new()
    );
    let r = s
        .get("/v1/providers/local/instances?id=")
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "invalid_query").await;
}

/// Rate limits per tenant and route class: alice's writes are limited (her own
/// limit), everyone's reads by the server's; bob's writes are not.
#[tokio::test]
async fn tenants_are_rate_limited_per_route_class() {
    let config = TEST_CONFIG
        .replacen(
            "[[tenants]]\nname = \"alice\"",
            "[rate_limits]\nread = { per_second = 1000, burst = 1000 }\n\n\
             [[tenants]]\nname = \"alice\"",
            1,
        )
        .replacen(
            "providers = [\"*\"]\n",
            "providers = [\"*\"]\n[tenants.rate_limits]\nwrite = { per_second = 2, burst = 2 }\n",
            1,
        );
    let s = Server::start(Options {
        config: Some(config),
        env: vec![("CMS_TEST_BOB_KEY".into(), BOB.into())],
        key: Some(ALICE.to_owned()),
        ..Options::default()
    });
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let body = json!({"name": "limited", "image_id": image, "flavor_id": flavor});
    for _ in 0..2 {
        assert_eq!(create(&s, "local", body.clone()).await.status(), 201);
    }
    let r = create(&s, "local", body.clone()).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let p = expect_problem(r, 429, "rate_limited").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("tenant `alice`")
            && detail.contains("write requests (2 per second, bursts of 2)"),
        "{detail}"
    );
    assert_eq!(p["temporary"], true);
    // Reads are another class: not refused.
    let r = s.get("/v1/providers/local/instances").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Another tenant is not limited by alice's requests, nor by a write limit of its
    // own (it has none).
    for _ in 0..4 {
        let r = s
            .client
            .post(s.url("/v1/providers/local/instances"))
            .bearer_auth(BOB)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // After the wait it was told, alice may write again.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(create(&s, "local", body).await.status(), 201);
    // Unauthenticated requests count against no one.
    let r = s
        .client
        .post(s.url("/v1/providers/local/instances"))
        .bearer_auth("not-a-key")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Header fields over 32 KiB in all are refused with 431 on both APIs, each in its
/// own format.
#[tokio::test]
async fn oversized_headers_and_request_lines_are_refused_clearly() {
    let s = Server::with_test_config();
    let big = "b".repeat(33 * 1024);
    let r = s
        .get("/v1/providers")
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 431, "headers_too_large").await;
    assert!(
        p["detail"].as_str().unwrap().contains("more than 32768"),
        "{p}"
    );
    let r = s
        .get("/v1/providers")
        .header("x-padding", "b".repeat(30 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The EC2 API answers in its own format.
    let r = s
        .client
        .post(s.url("/ec2/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-padding", &big)
        .body("Action=DescribeInstances&Version=2016-11-15")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<Code>RequestHeaderSectionTooLarge</Code>"),
        "{text}"
    );
}

/// Polls `path` until it answers 404 (10 s at most): an object on its way out.
async fn wait_gone(s: &Server, path: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = s.get(path).send().await.unwrap();
        if r.status() == 404 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} still there after 10 s: {}",
            r.text().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The ids of a listing's items.
fn item_ids(listing: &Value) -> Vec<&str> {
    listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

async fn send_json(rb: reqwest::RequestBuilder, body: Value) -> (u16, Value) {
    let r = rb.json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Volumes, snapshots, captured images, security groups and addresses over HTTP: a
/// database's volume that outlives its instance, a web server's open port and the
/// address that stays, as a tenant sees them and another does not.
#[tokio::test]
async fn volumes_snapshots_images_groups_and_addresses() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let base = "/v1/providers/local";
    let bob = |m: reqwest::Method, path: &str| s.client.request(m, s.url(path)).bearer_auth(BOB);
    use reqwest::Method as M;

    // A volume: made, then available.
    let (st, vol) = send_json(
        s.post(&format!("{base}/volumes")),
        json!({"name": "db-data", "size_gib": 2, "tags": {"role": "db"}}),
    )
    .await;
    assert_eq!(st, 201, "{vol}");
    let vol_id = vol["id"].as_str().unwrap().to_owned();
    let vol_path = format!("{base}/volumes/{vol_id}");
    assert_eq!(vol["size_gib"], 2);
    assert_eq!(vol["owner"], "alice");
    assert_eq!(vol["tags"]["role"], "db");
    wait_state(&s, &vol_path, "available").await;

    // An instance to attach it to.
    let r = create(
        &s,
        "local",
        json!({"name": "db-1", "image_id": image, "flavor_id": flavor}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let vm: Value = r.json().await.unwrap();
    let vm_id = vm["id"].as_str().unwrap().to_owned();
    let vm_path = format!("{base}/instances/{vm_id}");
    wait_state(&s, &vm_path, "running").await;

    // Attach: the attachment shows on both sides.
    let (st, v) = send_json(
        s.post(&format!("{vol_path}/attach")),
        json!({"instance_id": vm_id, "device": "/dev/sdf"}),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let v = wait_state(&s, &vol_path, "in_use").await;
    assert_eq!(v["attachments"][0]["instance_id"], vm_id.as_str(), "{v}");
    assert_eq!(v["attachments"][0]["device"], "/dev/sdf", "{v}");
    let i: Value = s.get(&vm_path).send().await.unwrap().json().await.unwrap();
    assert!(
        i["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["volume_id"] == vol_id.as_str() && a["device"] == "/dev/sdf"),
        "{i}"
    );
    // Attaching again to the same instance answers it as it is.
    let (st, _) = send_json(
        s.post(&format!("{vol_path}/attach")),
        json!({"instance_id": vm_id, "device": "/dev/sdf"}),
    )
    .await;
    assert_eq!(st, 202);
    // A volume in use cannot be deleted.
    let r = s.delete(&vol_path).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:cms:problem:invalid_state", "{p}");

    // A snapshot, then a volume made from it, of its size.
    let (st, snap) = send_json(
        s.post(&format!("{base}/snapshots")),
        json!({"volume_id": vol_id, "name": "nightly"}),
    )
    .await;
    assert_eq!(st, 201, "{snap}");
    let snap_id = snap["id"].as_str().unwrap().to_owned();
    let snap_path = format!("{base}/snapshots/{snap_id}");
    let done = wait_state(&s, &snap_path, "completed").await;
    assert_eq!(done["progress"], 100);
    assert_eq!(done["volume_id"], vol_id.as_str());
    let (st, copy) = send_json(
        s.post(&format!("{base}/volumes")),
        json!({"snapshot_id": snap_id}),
    )
    .await;
    assert_eq!(st, 201, "{copy}");
    assert_eq!(copy["size_gib"], 2);
    assert_eq!(copy["snapshot_id"], snap_id.as_str());
    let copy_path = format!("{base}/volumes/{}", copy["id"].as_str().unwrap());
    wait_state(&s, &copy_path, "available").await;

    // Capture an image of the instance, then launch from it.
    let (st, img) = send_json(
        s.post(&format!("{base}/images")),
        json!({"instance_id": vm_id, "name": "db-golden", "description": "after setup"}),
    )
    .await;
    assert_eq!(st, 201, "{img}");
    let img_id = img["id"].as_str().unwrap().to_owned();
    let img_path = format!("{base}/images/{img_id}");
    assert_eq!(img["shared"], false);
    assert_eq!(img["owner"], "alice");
    wait_state(&s, &img_path, "available").await;
    let listed: Value = s
        .get(&format!("{base}/images"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = item_ids(&listed);
    assert!(ids.contains(&img_id.as_str()) && ids.contains(&image.as_str()));
    let r = create(
        &s,
        "local",
        json!({"name": "db-2", "image_id": img_id, "flavor_id": flavor}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let clone: Value = r.json().await.unwrap();
    assert_eq!(clone["image_id"], img_id.as_str());
    // Bob sees the catalogue but not alice's image.
    let theirs: Value = bob(M::GET, &format!("{base}/images"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = item_ids(&theirs);
    assert!(!ids.contains(&img_id.as_str()) && ids.contains(&image.as_str()));
    assert_eq!(bob(M::GET, &img_path).send().await.unwrap().status(), 404);
    // The catalogue is not a tenant's to delete.
    let r = s
        .delete(&format!("{base}/images/{image}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A security group with port 22 open; rules are held once.
    let (st, sg) = send_json(
        s.post(&format!("{base}/security-groups")),
        json!({"name": "web", "description": "ssh and http"}),
    )
    .await;
    assert_eq!(st, 201, "{sg}");
    let sg_id = sg["id"].as_str().unwrap().to_owned();
    let sg_path = format!("{base}/security-groups/{sg_id}");
    let ssh = json!({"direction": "ingress", "protocol": "tcp", "from_port": 22, "to_port": 22,
        "peer": {"cidr": "0.0.0.0/0"}});
    let (st, g) = send_json(
        s.post(&format!("{sg_path}/add-rules")),
        json!({"rules": [ssh]}),
    )
    .await;
    assert_eq!(st, 200, "{g}");
    let count = |g: &Value| g["rules"].as_array().unwrap().len();
    let with_ssh = count(&g);
    assert!(g["rules"].as_array().unwrap().contains(&ssh), "{g}");
    let (_, again) = send_json(
        s.post(&format!("{sg_path}/add-rules")),
        json!({"rules": [ssh]}),
    )
    .await;
    assert_eq!(count(&again), with_ssh, "{again}");
    // A rule that breaks the model's rules is refused, naming it.
    let (st, p) = send_json(
        s.post(&format!("{sg_path}/add-rules")),
        json!({"rules": [{"direction": "ingress", "protocol": "tcp", "from_port": 80,
            "to_port": 22, "peer": {"cidr": "0.0.0.0/0"}}]}),
    )
    .await;
    assert_eq!(st, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("80-22"), "{p}");
    // An instance launched into it shows it; the group cannot go while it is used.
    let r = create(
        &s,
        "local",
        json!({"name": "web-1", "image_id": image, "flavor_id": flavor,
            "security_group_ids": [sg_id]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let web: Value = r.json().await.unwrap();
    assert_eq!(web["security_group_ids"], json!([sg_id]), "{web}");
    let web_path = format!("{base}/instances/{}", web["id"].as_str().unwrap());
    assert_eq!(s.delete(&sg_path).send().await.unwrap().status(), 409);
    // Bob cannot launch into alice's group, nor see it; the default group is everyone's
    // to use and no member's to change.
    let r = bob(M::POST, &format!("{base}/instances"))
        .json(&json!({"image_id": image, "flavor_id": flavor, "security_group_ids": [sg_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let groups: Value = bob(M::GET, &format!("{base}/security-groups"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = groups["items"].as_array().unwrap();
    assert!(groups.iter().all(|g| g["id"] != sg_id.as_str()));
    let default = groups
        .iter()
        .find(|g| g["is_default"] == true)
        .expect("a default group");
    let default_id = default["id"].as_str().unwrap();
    let (st, p) = send_json(
        bob(
            M::POST,
            &format!("{base}/security-groups/{default_id}/add-rules"),
        ),
        json!({"rules": [ssh]}),
    )
    .await;
    assert_eq!(st, 403, "{p}");

    // A public address that follows the instance.
    let (st, addr) = send_json(s.post(&format!("{base}/addresses")), json!({})).await;
    assert_eq!(st, 201, "{addr}");
    let ip = addr["ip"].as_str().unwrap().to_owned();
    let addr_path = format!("{base}/addresses/{}", addr["id"].as_str().unwrap());
    wait_state(&s, &web_path, "running").await;
    let (st, a) = send_json(
        s.post(&format!("{addr_path}/associate")),
        json!({"instance_id": web["id"]}),
    )
    .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["instance_id"], web["id"]);
    let w: Value = s.get(&web_path).send().await.unwrap().json().await.unwrap();
    assert!(
        w["public_ips"].as_array().unwrap().contains(&json!(ip)),
        "{w}"
    );
    assert_eq!(s.delete(&addr_path).send().await.unwrap().status(), 409);
    assert_eq!(bob(M::GET, &addr_path).send().await.unwrap().status(), 404);
    let (st, a) = send_json(s.post(&format!("{addr_path}/disassociate")), json!({})).await;
    assert_eq!(st, 200, "{a}");
    assert!(a["instance_id"].is_null(), "{a}");
    assert_eq!(s.delete(&addr_path).send().await.unwrap().status(), 204);
    assert_eq!(s.get(&addr_path).send().await.unwrap().status(), 404);

    // Another tenant's volume is not found, whatever it is asked.
    assert_eq!(bob(M::GET, &vol_path).send().await.unwrap().status(), 404);
    let (st, _) = send_json(
        bob(M::POST, &format!("{base}/snapshots")),
        json!({"volume_id": vol_id}),
    )
    .await;
    assert_eq!(st, 404);
    let theirs: Value = bob(M::GET, &format!("{base}/volumes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]), "{theirs}");

    // Detach, then the volume goes; the snapshot and its copy stay.
    let (st, _) = send_json(s.post(&format!("{vol_path}/detach")), json!({})).await;
    assert_eq!(st, 202);
    wait_state(&s, &vol_path, "available").await;
    assert_eq!(s.delete(&vol_path).send().await.unwrap().status(), 204);
    wait_gone(&s, &vol_path).await;
    assert_eq!(s.get(&snap_path).send().await.unwrap().status(), 200);
    assert_eq!(s.delete(&snap_path).send().await.unwrap().status(), 204);
    assert_eq!(s.get(&copy_path).send().await.unwrap().status(), 200);
    // The captured image goes; the instance made from it stays.
    assert_eq!(s.delete(&img_path).send().await.unwrap().status(), 204);
    wait_gone(&s, &img_path).await;
    let clone_path = format!("{base}/instances/{}", clone["id"].as_str().unwrap());
    assert_eq!(s.get(&clone_path).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn volume_creates_are_idempotent_and_checked() {
    let s = Server::with_test_config();
    let base = "/v1/providers/local";
    let make = |key: &str, body: Value| {
        s.post(&format!("{base}/volumes"))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first: Value = make("vol-key", json!({"size_gib": 1}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again: Value = make("vol-key", json!({"size_gib": 1}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["id"], again["id"]);
    let r = make("vol-key", json!({"size_gib": 3})).await.unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:cms:problem:idempotency_conflict", "{p}");
    // Bob's key of the same name is his own.
    let r = s
        .client
        .post(s.url(&format!("{base}/volumes")))
        .bearer_auth(BOB)
        .header("Idempotency-Key", "vol-key")
        .json(&json!({"size_gib": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let listed: Value = s
        .get(&format!("{base}/volumes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

    // Bad requests say what is wrong.
    for (body, what) in [
        (json!({}), "size_gib"),
        (json!({"size_gib": 0}), "size_gib"),
        (json!({"size_gib": 20000}), "size_gib"),
        (json!({"size_gib": 1, "colour": "red"}), "colour"),
        (
            json!({"snapshot_id": "snap-0cafe0000cafe0000"}),
            "snap-0cafe0000cafe0000",
        ),
    ] {
        let r = s
            .post(&format!("{base}/volumes"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let p: Value = r.json().await.unwrap();
        assert!([400, 404].contains(&status), "{body}: {status} {p}");
        assert!(p["detail"].as_str().unwrap().contains(what), "{body}: {p}");
    }
    for path in [
        "volumes/vol-0cafe0000cafe0000",
        "snapshots/snap-0cafe0000cafe0000",
        "security-groups/sg-0cafe0000cafe0000",
        "addresses/eipalloc-0cafe0000cafe0000",
    ] {
        let r = s.get(&format!("{base}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // A provider that fails answers as it fails, for the new routes too.
    let r = s.get("/v1/providers/broken/volumes").send().await.unwrap();
    assert_eq!(r.status(), 503);
}
