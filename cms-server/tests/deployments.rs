//! Durable jobs and deployments, end to end through the real binary: bursting under
//! injected faults, scaling, healing, expiry, cancel, the event stream (read by curl),
//! and a server killed with SIGKILL in the middle of a deployment over two different
//! clouds (the fake oned and moto, whose state outlives the server), resumed by the
//! restarted server (SQLite) or by another replica (PostgreSQL).

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const KEY: &str = "alice-key-0123456789abcdef0123";

/// GET with retries: the providers of some tests fail 30% of calls on purpose.
async fn get_ok(s: &Server, path: &str) -> Value {
    let mut last = String::new();
    for _ in 0..40 {
        let r = s.get(path).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        if status == 200 {
            return serde_json::from_str(&text).unwrap();
        }
        last = format!("{status}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("GET {path} kept failing: {last}");
}

/// Polls a job until it ends (at most `limit`).
async fn wait_job(s: &Server, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let j = get_ok(s, &format!("/v1/jobs/{id}")).await;
        if matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {} after {limit:?}: {j}",
            j["state"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `check` holds for the deployment (at most `limit`).
async fn wait_deployment(
    s: &Server,
    id: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let d = get_ok(s, &format!("/v1/deployments/{id}")).await;
        if check(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id}: {what} not within {limit:?}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_deployment(s: &Server, body: Value) -> (String, String) {
    let r = s.post("/v1/deployments").json(&body).send().await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/deployments/{id}").as_str())
    );
    (id, v["job"]["id"].as_str().unwrap().to_owned())
}

/// The job an answer names in its `Cms-Job` header.
fn job_in(r: &reqwest::Response) -> String {
    let url = r.headers()["cms-job"].to_str().unwrap();
    url.strip_prefix("/v1/jobs/").unwrap().to_owned()
}

/// Every instance of `provider` the caller sees (all pages), with retries.
async fn all_instances(s: &Server, provider: &str) -> Vec<Value> {
    let v = get_ok(s, &format!("/v1/providers/{provider}/instances?limit=1000")).await;
    assert!(v["next_page_token"].is_null());
    v["items"].as_array().unwrap().clone()
}

fn live(instances: &[Value]) -> Vec<&Value> {
    instances
        .iter()
        .filter(|i| !matches!(i["state"].as_str(), Some("terminated" | "terminating")))
        .collect()
}

fn actual(d: &Value) -> Vec<u64> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actual"].as_u64().unwrap())
        .collect()
}

fn events(d: &Value, event: &str) -> usize {
    d["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == event)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_bursts_past_a_quota_under_faults_and_makes_exactly_its_count() {
    // Two memory providers failing 30% of calls (seeded; no retry layer, so the job
    // sees the faults), and a quota of 5 on the first.
    let config = format!(
        r#"
        lease_ms = 1000
        [jobs]
        backoff_ms = 20
        backoff_max_ms = 200
        check_interval_ms = 60000
        [[providers]]
        name = "a"
        driver = "memory"
        boot_delay_ms = 20
        retry_attempts = 1
        [providers.chaos]
        fault_rate = 0.3
        seed = 11
        [[providers]]
        name = "b"
        driver = "memory"
        boot_delay_ms = 20
        retry_attempts = 1
        [providers.chaos]
        fault_rate = 0.3
        seed = 12
        [[tenants]]
        name = "alice"
        api_key = "{KEY}"
        providers = ["*"]
        [tenants.max_instances_by_provider]
        a = 5
        "#
    );
    let s = Server::start(Options {
        config: Some(config),
        key: Some(KEY.into()),
        ..Options::default()
    });
    let (id, job) = create_deployment(
        &s,
        json!({
            "name": "web",
            "count": 12,
            "policy": "one-after-another",
            "template": {"image_id": "img-debian-12", "flavor_id": "flv-1cpu-1gb"},
            "partitions": [{"provider": "a"}, {"provider": "b"}],
        }),
    )
    .await;
    let j = wait_job(&s, &job, Duration::from_secs(120)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    // The faults were seen and survived: more than one attempt, the last error kept.
    assert!(j["attempts"].as_u64().unwrap() >= 2, "{j}");
    assert_eq!(j["error"]["kind"], "unavailable", "{j}");
    assert_eq!(j["result"]["running"], 12, "{j}");

    let d = get_ok(&s, &format!("/v1/deployments/{id}")).await;
    assert_eq!(
        (d["count"].as_u64(), d["actual"].as_u64()),
        (Some(12), Some(12)),
        "{d}"
    );
    assert_eq!(actual(&d), vec![5, 7], "{d}");
    assert_eq!(d["status"], "ready");
    assert_eq!(events(&d, "burst"), 7, "{d}");

    // No duplicates anywhere: the providers hold exactly these 12, all running.
    let on_a = all_instances(&s, "a").await;
    let on_b = all_instances(&s, "b").await;
    assert_eq!((on_a.len(), on_b.len()), (5, 7));
    let mut ids = HashSet::new();
    for i in on_a.iter().chain(&on_b) {
        assert_eq!(i["state"], "running", "{i}");
        assert!(ids.insert(i["id"].as_str().unwrap().to_owned()));
    }
    let members: HashSet<String> = d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["backend_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_scale_heal_expire_and_jobs_cancel_and_stream() {
    let config = format!(
        r#"
        [jobs]
        backoff_ms = 20
        check_interval_ms = 300
        wait_poll_ms = 50
        poll_ms = 50
        [[providers]]
        name = "a"
        driver = "memory"
        boot_delay_ms = 100
        terminate_delay_ms = 50
        [[providers]]
        name = "b"
        driver = "memory"
        boot_delay_ms = 100
        terminate_delay_ms = 50
        [[providers]]
        name = "slow"
        driver = "memory"
        boot_delay_ms = 600000
        [[providers]]
        name = "broken"
        driver = "memory"
        retry_attempts = 1
        [providers.chaos]
        fault_rate = 1.0
        [[tenants]]
        name = "alice"
        api_key = "{KEY}"
        providers = ["*"]
        "#
    );
    let state = StateDb::new("deploy-life");
    let start = || {
        Server::start(Options {
            config: Some(config.clone()),
            key: Some(KEY.into()),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let mut s = start();
    let template = json!({"image_id": "img-debian-12", "flavor_id": "flv-1cpu-1gb"});
    let (id, job) = create_deployment(
        &s,
        json!({
            "name": "web", "count": 12, "template": template,
            "partitions": [{"provider": "a"}, {"provider": "b"}],
        }),
    )
    .await;

    // The job's progress, as server-sent events read by curl, until it ends.
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {KEY}"))
        .arg(s.url(&format!("/v1/jobs/{job}/events")))
        .output()
        .expect("run curl");
    let stream = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<Value> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert!(seen.len() >= 2, "{stream}");
    assert!(stream
        .lines()
        .any(|l| l.trim() == "event:job" || l.trim() == "event: job"));
    assert_eq!(seen.last().unwrap()["state"], "succeeded", "{stream}");
    let progress: Vec<u64> = seen
        .iter()
        .map(|j| j["progress"].as_u64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(*progress.last().unwrap(), 100);

    let d = get_ok(&s, &format!("/v1/deployments/{id}")).await;
    assert_eq!(actual(&d), vec![6, 6], "round-robin: {d}");
    assert!(d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["state"] == "running"));

    // 12 -> 3: the newest go first, from the last partition first.
    let scale = |n: u64| {
        let s = &s;
        let id = id.clone();
        async move {
            let r = s
                .req(reqwest::Method::PATCH, &format!("/v1/deployments/{id}"))
                .json(&json!({ "count": n }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let job = job_in(&r);
            let j = wait_job(s, &job, Duration::from_secs(60)).await;
            assert_eq!(j["state"], "succeeded", "{j}");
            get_ok(s, &format!("/v1/deployments/{id}")).await
        }
    };
    let d = scale(3).await;
    assert_eq!(actual(&d), vec![3, 0], "{d}");
    // Round-robin put the even indices on `a`: its oldest three stay.
    let mut kept: Vec<u64> = d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_u64().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, vec![0, 2, 4], "{d}");
    // 3 -> 8: round-robin fills the emptier partition first.
    let d = scale(8).await;
    assert_eq!(actual(&d), vec![4, 4], "{d}");
    assert_eq!(live(&all_instances(&s, "a").await).len(), 4);
    assert_eq!(live(&all_instances(&s, "b").await).len(), 4);

    // Healing: an instance deleted behind the deployment's back is replaced.
    let victim = d["instances"][0]["backend_id"].as_str().unwrap().to_owned();
    let victim_provider = d["instances"][0]["provider"].as_str().unwrap().to_owned();
    let r = s
        .delete(&format!(
            "/v1/providers/{victim_provider}/instances/{victim}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = wait_deployment(&s, &id, Duration::from_secs(30), "healed", |d| {
        events(d, "replaced") == 1
            && d["status"] == "ready"
            && d["instances"].as_array().unwrap().len() == 8
            && d["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["state"] == "running")
    })
    .await;
    assert!(d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["backend_id"] != victim.as_str()));
    let victim_history = get_ok(
        &s,
        &format!("/v1/providers/{victim_provider}/instances/{victim}/history"),
    )
    .await;
    assert!(
        victim_history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["event"] == "lost"),
        "{victim_history}"
    );

    // Expiry of one instance, set after its create.
    let r = s
        .post("/v1/providers/a/instances")
        .json(&template)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let vm: Value = r.json().await.unwrap();
    let vm_id = vm["id"].as_str().unwrap().to_owned();
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339();
    let r = s
        .req(
            reqwest::Method::PATCH,
            &format!("/v1/providers/a/instances/{vm_id}"),
        )
        .json(&json!({ "expires_at": soon }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert!(patched["expires_at"].is_string(), "{patched}");
    wait_state(
        &s,
        &format!("/v1/providers/a/instances/{vm_id}"),
        "terminated",
    )
    .await;
    let h = get_ok(&s, &format!("/v1/providers/a/instances/{vm_id}/history")).await;
    let h: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(h, vec!["expiry", "expired"]);

    // A create answered with a job (`wait=false`) that follows it until it runs.
    let r = s
        .post("/v1/providers/b/instances?wait=false")
        .json(&template)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let j: Value = r.json().await.unwrap();
    let j = wait_job(&s, j["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(
        (j["state"].as_str(), j["result"]["state"].as_str()),
        (Some("succeeded"), Some("running")),
        "{j}"
    );
    let r = s
        .post("/v1/providers/b/instances?wait=true")
        .json(&template)
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "invalid_query").await;

    // Expiry of a whole deployment.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (short, _) = create_deployment(
        &s,
        json!({
            "name": "short", "count": 2, "template": template, "expires_at": soon,
            "partitions": [{"provider": "a"}],
        }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .get(&format!("/v1/deployments/{short}"))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {short} did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs = get_ok(&s, &format!("/v1/jobs?target={short}")).await;
    let kinds: Vec<&str> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"deployment.expire") && kinds.contains(&"deployment.delete"),
        "{kinds:?}"
    );
    // The 8 of `web` and the one made with a job remain; the expired ones are gone.
    let on_a = live(&all_instances(&s, "a").await).len();
    let on_b = live(&all_instances(&s, "b").await).len();
    assert_eq!(on_a + on_b, 9, "a {on_a}, b {on_b}");

    // Cancel: a deployment whose instances never boot; its running job stops.
    let (slow, job) = create_deployment(
        &s,
        json!({
            "name": "slow", "count": 2, "template": template,
            "partitions": [{"provider": "slow"}],
        }),
    )
    .await;
    wait_deployment(&s, &slow, Duration::from_secs(10), "instances made", |d| {
        d["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "pending")
            && d["instances"].as_array().unwrap().len() == 2
    })
    .await;
    let r = s.delete(&format!("/v1/jobs/{job}")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let j = wait_job(&s, &job, Duration::from_secs(10)).await;
    assert_eq!(j["state"], "canceled", "{j}");
    let r = s.delete(&format!("/v1/jobs/{job}")).send().await.unwrap();
    expect_problem(r, 409, "invalid_state").await;

    // Deleting a deployment deletes what it made, then itself.
    let r = s
        .delete(&format!("/v1/deployments/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let del = job_in(&r);
    let j = wait_job(&s, &del, Duration::from_secs(30)).await;
    assert_eq!(
        (j["state"].as_str(), j["result"]["deleted"].as_u64()),
        (Some("succeeded"), Some(8)),
        "{j}"
    );
    let r = s
        .get(&format!("/v1/deployments/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let on_a = live(&all_instances(&s, "a").await).len();
    let on_b = live(&all_instances(&s, "b").await).len();
    assert_eq!(on_a + on_b, 1, "only the job's instance remains");

    // A job that keeps meeting temporary errors stops at its deadline.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (_, job) = create_deployment(
        &s,
        json!({
            "name": "doomed", "count": 1, "template": template, "deadline": soon,
            "partitions": [{"provider": "broken"}],
        }),
    )
    .await;
    let j = wait_job(&s, &job, Duration::from_secs(30)).await;
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["attempts"].as_u64().unwrap() >= 2, "{j}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("deadline"),
        "{j}"
    );

    // At shutdown a server gives its running jobs up: the next one takes them at once
    // (not a lease later), and they go on.
    let (slow2, job) = create_deployment(
        &s,
        json!({
            "name": "slow-2", "count": 1, "template": template,
            "partitions": [{"provider": "slow"}],
        }),
    )
    .await;
    wait_deployment(&s, &slow2, Duration::from_secs(10), "instance made", |d| {
        d["instances"].as_array().unwrap().len() == 1
    })
    .await;
    // (The limit is the server's own grace for requests in flight and then some: a
    // loaded machine is slow, and a server that gave nothing up fails below anyway.)
    let stopped = s.terminate(Duration::from_secs(40));
    assert!(
        stopped.is_some(),
        "the server did not stop: {}",
        tail(&s.stderr.text(), 40)
    );
    let s = start();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let j = get_ok(&s, &format!("/v1/jobs/{job}")).await;
        if j["state"] == "running" && j["attempts"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job was not taken over at once: {j}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // With an Idempotency-Key, a repeated create answers the same deployment; the
    // key with another request is a conflict.
    let body = json!({"name": "keyed", "count": 0, "template": template, "partitions": [{"provider": "a"}]});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s
            .post("/v1/deployments")
            .header("Idempotency-Key", "deploy-keyed-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let other = json!({"name": "keyed-2", "count": 0, "template": template, "partitions": [{"provider": "a"}]});
    let r = s
        .post("/v1/deployments")
        .header("Idempotency-Key", "deploy-keyed-1")
        .json(&other)
        .send()
        .await
        .unwrap();
    expect_problem(r, 409, "idempotency_conflict").await;

    // Bad input is refused, clearly.
    for (body, needle) in [
        (
            json!({"name": "x", "count": 2, "template": template, "partitions": []}),
            "partitions",
        ),
        (
            json!({"name": "x", "count": 2, "min": 3, "template": template, "partitions": [{"provider": "a"}]}),
            "min",
        ),
        (
            json!({"name": "x", "count": 2, "template": {}, "partitions": [{"provider": "a"}]}),
            "image_id",
        ),
        (
            json!({"name": "x", "count": 2, "template": template, "expires_at": "tomorrow", "partitions": [{"provider": "a"}]}),
            "RFC 3339",
        ),
    ] {
        let r = s.post("/v1/deployments").json(&body).send().await.unwrap();
        let p = expect_problem(r, 400, "malformed_body").await;
        assert!(p["detail"].as_str().unwrap().contains(needle), "{p}");
    }
    let r = s
        .post("/v1/deployments")
        .json(&json!({"name": "x", "count": 1, "template": template, "partitions": [{"provider": "nowhere"}]}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
}

/// The instances moto holds that are not terminated, with their tags.
fn moto_live(moto: &cms_driver_ec2::moto::MotoServer) -> Vec<Value> {
    let v = boto3(
        moto,
        "out = []\n\
         for page in ec2.get_paginator('describe_instances').paginate():\n\
         \x20   for r in page['Reservations']:\n\
         \x20       for i in r['Instances']:\n\
         \x20           if i['State']['Name'] not in ('terminated', 'shutting-down'):\n\
         \x20               out.append({'id': i['InstanceId'], 'state': i['State']['Name'],\n\
         \x20                   'token': i.get('ClientToken', ''),\n\
         \x20                   'tags': {t['Key']: t['Value'] for t in i.get('Tags', [])}})\n\
         print(json.dumps(out))",
    );
    v.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_over_opennebula_and_ec2_survives_sigkill_and_heals() {
    use cms_driver_ec2::moto::{MotoServer, FLAVOR, IMAGE_ID, IMAGE_OWNER, REGION};
    use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};

    let moto = MotoServer::start().await;
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(30)),
        ..FakeConfig::default()
    });
    // Every call of both clouds takes 150 ms more, and a deployment creates two at a
    // time on each: a deployment of 12 takes long enough to be killed in.
    let chaos = "[providers.chaos]\nlatency_rate = 1.0\nlatency_ms = 150\nlatency_min_ms = 150\n";
    let config = format!(
        r#"
        lease_ms = 1000
        [jobs]
        lease_ms = 1000
        backoff_ms = 50
        backoff_max_ms = 500
        creates_per_provider = 2
        check_interval_ms = 500
        wait_poll_ms = 100
        poll_ms = 100
        [[tenants]]
        name = "alice"
        api_key = "{KEY}"
        providers = ["*"]
        [tenants.max_instances_by_provider]
        onprem = 5
        {one}
        [[providers]]
        name = "aws"
        driver = "ec2"
        region = "{REGION}"
        endpoint = "{endpoint}"
        access_key_id_env = "CMS_TEST_MOTO_KEY_ID"
        secret_access_key_env = "CMS_TEST_MOTO_SECRET"
        image_owners = ["{IMAGE_OWNER}"]
        {chaos}
        "#,
        one = opennebula_provider(&oned, chaos),
        endpoint = moto.endpoint(),
    );
    let env = vec![
        opennebula_env(&oned),
        ("CMS_TEST_MOTO_KEY_ID".into(), "testing".into()),
        ("CMS_TEST_MOTO_SECRET".into(), "testing".into()),
    ];
    let state = StateDb::new("deploy-kill");
    let start = || {
        Server::start(Options {
            config: Some(config.clone()),
            env: env.clone(),
            key: Some(KEY.into()),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let mut first = start();
    let (one_image, one_flavor) = image_and_flavor(&first, "onprem").await;
    let (id, job) = create_deployment(
        &first,
        json!({
            "name": "mixed",
            "count": 12,
            "policy": "one-after-another",
            "template": {"tags": {"app": "mixed"}},
            "partitions": [
                {"provider": "onprem", "image_id": one_image, "flavor_id": one_flavor},
                {"provider": "aws", "image_id": IMAGE_ID, "flavor_id": FLAVOR},
            ],
        }),
    )
    .await;
    // Killed once a few instances are made and before all are.
    wait_deployment(
        &first,
        &id,
        Duration::from_secs(60),
        "some instances made",
        |d| {
            let made = d["instances"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["id"].is_string())
                .count();
            made >= 3
        },
    )
    .await;
    let before = get_ok(&first, &format!("/v1/jobs/{job}")).await;
    assert_eq!(before["state"], "running", "{before}");
    // On PostgreSQL another replica is already running when the first dies: it takes
    // the job over once the dead one's lease runs out. On SQLite the server restarts.
    let second = if state.is_postgres() {
        let second = start();
        first.kill();
        second
    } else {
        first.kill();
        start()
    };
    let j = wait_job(&second, &job, Duration::from_secs(180)).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert!(
        j["attempts"].as_u64().unwrap() >= 2,
        "the attempt cut by SIGKILL counts: {j}"
    );
    let d = get_ok(&second, &format!("/v1/deployments/{id}")).await;
    assert_eq!(actual(&d), vec![5, 7], "{d}");

    // Exactly 12, no duplicate: 5 in OpenNebula, 7 in moto (as boto3 sees it).
    let on_one = live(&all_instances(&second, "onprem").await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(on_one.len(), 5, "{on_one:?}");
    let in_moto = moto_live(&moto);
    assert_eq!(in_moto.len(), 7, "{in_moto:?}");
    let tokens: HashSet<&str> = in_moto
        .iter()
        .map(|i| i["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        tokens.len(),
        7,
        "one client token per instance: {in_moto:?}"
    );
    assert!(in_moto.iter().all(|i| i["tags"]["app"] == "mixed"));

    // Healing over OpenNebula: a VM finished behind cms's back is replaced (the
    // quota of 5 counts the dead one out).
    let victim = d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["provider"] == "onprem")
        .unwrap()["backend_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(oned.finish_vm(victim.parse().unwrap()));
    let d = wait_deployment(&second, &id, Duration::from_secs(60), "healed", |d| {
        events(d, "replaced") == 1 && d["status"] == "ready" && actual(d) == vec![5, 7]
    })
    .await;
    assert!(d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["backend_id"] != victim.as_str()));

    // Scale down over both, then delete: the cloud's own listings agree.
    let r = second
        .req(reqwest::Method::PATCH, &format!("/v1/deployments/{id}"))
        .json(&json!({"count": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = wait_deployment(&second, &id, Duration::from_secs(60), "scaled to 3", |d| {
        d["status"] == "ready" && actual(d) == vec![3, 0]
    })
    .await;
    assert_eq!(d["count"], 3);
    assert!(moto_live(&moto).is_empty());
    let r = second
        .delete(&format!("/v1/deployments/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while second
        .get(&format!("/v1/deployments/{id}"))
        .send()
        .await
        .unwrap()
        .status()
        != 404
    {
        assert!(Instant::now() < deadline, "deployment not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live(&all_instances(&second, "onprem").await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_expires_once_across_two_replicas() {
    use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(20)),
        ..FakeConfig::default()
    });
    let config = format!(
        r#"
        [jobs]
        poll_ms = 50
        [[tenants]]
        name = "alice"
        api_key = "{KEY}"
        providers = ["*"]
        {}
        "#,
        opennebula_provider(&oned, "")
    );
    // Two replicas on one store (PostgreSQL when the run has a server), both running
    // their job workers.
    let state = StateDb::shared("expire-once");
    let start = || {
        Server::start(Options {
            config: Some(config.clone()),
            env: vec![opennebula_env(&oned)],
            key: Some(KEY.into()),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let (a, b) = (start(), start());
    let (image, flavor) = image_and_flavor(&a, "onprem").await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let mut made = Vec::new();
    for i in 0..4 {
        let r = a
            .post("/v1/providers/onprem/instances")
            .json(&json!({"name": format!("short-{i}"), "image_id": image, "flavor_id": flavor, "expires_at": soon}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert!(v["expires_at"].is_string(), "{v}");
        made.push(v["id"].as_str().unwrap().to_owned());
    }
    let actions_before = oned.calls("one.vm.action");
    for id in &made {
        // The other replica shows the expiry too: it is in the shared store.
        let v = get_ok(&b, &format!("/v1/providers/onprem/instances/{id}")).await;
        assert!(v["expires_at"].is_string(), "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &made {
        loop {
            let h = get_ok(&b, &format!("/v1/providers/onprem/instances/{id}/history")).await;
            if h.as_array()
                .unwrap()
                .iter()
                .any(|e| e["event"] == "expired")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {id} did not expire: {h}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Settle, then count: one terminate per instance, whichever replica sent it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(oned.calls("one.vm.action") - actions_before, made.len());
    let jobs = get_ok(&a, "/v1/jobs?limit=100").await;
    let expiries: Vec<&Value> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "instance.expire")
        .collect();
    assert_eq!(expiries.len(), made.len());
    assert!(
        expiries
            .iter()
            .all(|j| j["state"] == "succeeded" && j["attempts"] == 1),
        "{expiries:?}"
    );
}
