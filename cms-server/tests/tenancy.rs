//! The tenant-scoped service through the native API: exact pages whatever other
//! tenants hold, ownership that survives a SIGKILL between the backend's create and the
//! answer, roles, quotas, key pairs per tenant, errors in the client's names, and
//! request ids.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use common::*;
use serde_json::{json, Value};

const ALICE_KEY: &str = "alice-key-0123456789abcdef0123";
const BOB_KEY: &str = "bob-key-abcdef0123456789abcdef";
const OPS_KEY: &str = "ops-key-0123456789abcdef01234567";

fn tenants(extra_alice: &str) -> String {
    format!(
        r#"
        [[tenants]]
        name = "alice"
        api_key = "{ALICE_KEY}"
        providers = ["*"]
        {extra_alice}

        [[tenants]]
        name = "bob"
        api_key = "{BOB_KEY}"
        providers = ["*"]

        [[tenants]]
        name = "ops"
        api_key = "{OPS_KEY}"
        providers = ["*"]
        role = "admin"
        "#
    )
}

const MEMORY: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 10
stop_delay_ms = 10
start_delay_ms = 10
terminate_delay_ms = 10

[[providers]]
name = "other"
driver = "memory"
boot_delay_ms = 10
"#;

fn memory_server(extra_alice: &str) -> Server {
    Server::start(Options {
        config: Some(format!("{MEMORY}{}", tenants(extra_alice))),
        key: Some(ALICE_KEY.into()),
        ..Options::default()
    })
}

async fn create(
    s: &Server,
    key: &str,
    provider: &str,
    name: impl Into<String>,
) -> reqwest::Response {
    let name: String = name.into();
    s.client
        .post(s.url(&format!("/v1/providers/{provider}/instances")))
        .bearer_auth(key)
        .json(&json!({"name": name, "image_id": "img-debian-12", "flavor_id": "flv-1cpu-1gb"}))
        .send()
        .await
        .unwrap()
}

async fn created(s: &Server, key: &str, provider: &str, name: impl Into<String>) -> Value {
    let name: String = name.into();
    let r = create(s, key, provider, name.clone()).await;
    assert_eq!(r.status(), 201, "create {name}");
    r.json().await.unwrap()
}

async fn get_json(s: &Server, key: &str, path: &str) -> (u16, Value) {
    let r = s
        .client
        .get(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Every page of a listing: (page sizes, ids, whether a page with a next token was
/// short or followed by an empty one).
async fn walk(s: &Server, key: &str, path: &str, limit: u32) -> (Vec<usize>, Vec<String>) {
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(t) = &token {
            url.push_str(&format!("&page_token={}", urlencode(t)));
        }
        let (status, page) = get_json(s, key, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        ids.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return (sizes, ids),
        }
    }
}

/// A page is full unless it is the last, and no page with a next token is followed by
/// an empty one.
fn assert_exact(sizes: &[usize], limit: usize) {
    let (last, full) = sizes.split_last().unwrap();
    assert!(
        full.iter().all(|n| *n == limit),
        "short page before the end: {sizes:?}"
    );
    assert!(
        *last > 0 || sizes.len() == 1,
        "an empty page after a next token: {sizes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_exact_whatever_other_tenants_hold() {
    let s = memory_server("");
    for i in 0..3 {
        created(&s, ALICE_KEY, "local", format!("alice-{i}")).await;
    }
    // Bob's 600, a few at a time.
    for chunk in 0..60 {
        futures::future::join_all(
            (0..10).map(|i| created(&s, BOB_KEY, "local", format!("bob-{chunk}-{i}"))),
        )
        .await;
    }
    // Alice's 3 come in one request, with no next token.
    let (sizes, ids) = walk(&s, ALICE_KEY, "/v1/providers/local/instances", 10).await;
    assert_eq!(sizes, vec![3], "{ids:?}");
    // Bob's 600 in pages of 10, each full, none repeated.
    let (sizes, ids) = walk(&s, BOB_KEY, "/v1/providers/local/instances", 10).await;
    assert_exact(&sizes, 10);
    assert_eq!(ids.len(), 600);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 600);
    // A filter the driver cannot push down entirely still gives full pages.
    let (sizes, ids) = walk(
        &s,
        BOB_KEY,
        "/v1/providers/local/instances?name=bob-7-3",
        10,
    )
    .await;
    assert_eq!((sizes, ids.len()), (vec![1], 1));
    // The admin sees all 603, in full pages.
    let (sizes, ids) = walk(&s, OPS_KEY, "/v1/providers/local/instances", 100).await;
    assert_exact(&sizes, 100);
    assert_eq!(ids.len(), 603);
    // Every instance carries its owner.
    let (_, page) = get_json(&s, ALICE_KEY, "/v1/providers/local/instances").await;
    for i in page["items"].as_array().unwrap() {
        assert_eq!(i["owner"], "alice", "{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_while_others_create_neither_loses_nor_repeats() {
    let s = memory_server("");
    let mut before = Vec::new();
    for i in 0..40 {
        before.push(
            created(&s, BOB_KEY, "local", format!("b-{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let creating = async {
        for i in 0..30 {
            created(
                &s,
                if i % 2 == 0 { BOB_KEY } else { ALICE_KEY },
                "local",
                format!("late-{i}"),
            )
            .await;
        }
    };
    let ((sizes, ids), ()) = tokio::join!(
        walk(&s, BOB_KEY, "/v1/providers/local/instances", 7),
        creating
    );
    assert_exact(&sizes, 7);
    let seen: HashSet<&String> = ids.iter().collect();
    assert_eq!(seen.len(), ids.len(), "an instance was listed twice");
    for id in &before {
        assert!(
            seen.contains(id),
            "{id} existed before the listing and was not listed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_ids_are_never_reused_after_a_restart() {
    let state = StateDb::new("restart");
    let start = || {
        Server::start(Options {
            config: Some(format!("{MEMORY}{}", tenants(""))),
            key: Some(ALICE_KEY.into()),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let mut s = start();
    let a = created(&s, ALICE_KEY, "local", "a").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.kill();
    let s = start();
    // The memory cloud is new: alice's instance is gone, and nobody gets its id.
    let b = created(&s, BOB_KEY, "local", "b").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a2 = created(&s, ALICE_KEY, "local", "a2").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(a != b && a != a2 && b != a2, "{a} {b} {a2}");
    let (status, _) = get_json(&s, ALICE_KEY, &format!("/v1/providers/local/instances/{a}")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&s, ALICE_KEY, &format!("/v1/providers/local/instances/{b}")).await;
    assert_eq!(status, 404, "alice must not see bob's instance");
    let (_, page) = get_json(&s, ALICE_KEY, "/v1/providers/local/instances").await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a2.as_str()]);
    let r = s
        .client
        .post(s.url(&format!("/v1/providers/local/instances/{b}/stop")))
        .bearer_auth(ALICE_KEY)
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_in_all_and_per_provider() {
    let s = memory_server("max_instances = 3\n[tenants.max_instances_by_provider]\nlocal = 2");
    let a = created(&s, ALICE_KEY, "local", "q1").await;
    created(&s, ALICE_KEY, "local", "q2").await;
    let p = expect_problem(
        create(&s, ALICE_KEY, "local", "q3").await,
        403,
        "quota_exceeded",
    )
    .await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("at most 2") && detail.contains("`local`"),
        "{detail}"
    );
    created(&s, ALICE_KEY, "other", "q3").await;
    let p = expect_problem(
        create(&s, ALICE_KEY, "other", "q4").await,
        403,
        "quota_exceeded",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("at most 3"), "{p}");
    // Nothing was made by the refused creates.
    let (_, all) = get_json(&s, ALICE_KEY, "/v1/instances").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");
    // Bob has no limit; deleting frees a place.
    created(&s, BOB_KEY, "local", "bob").await;
    let id = a["id"].as_str().unwrap();
    let r = s
        .delete(&format!("/v1/providers/local/instances/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    created(&s, ALICE_KEY, "local", "q5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_take_the_quota_once() {
    let s = memory_server("max_instances = 4");
    let tries =
        futures::future::join_all((0..12).map(|i| create(&s, ALICE_KEY, "local", format!("c{i}"))))
            .await;
    let statuses: Vec<u16> = tries.iter().map(|r| r.status().as_u16()).collect();
    let ok = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 403).count();
    if (ok, refused) != (4, 8) {
        for r in tries {
            eprintln!("{}: {}", r.status(), r.text().await.unwrap_or_default());
        }
        panic!("statuses {statuses:?}; server log:\n{}", s.stderr.text());
    }
    let (_, page) = get_json(&s, ALICE_KEY, "/v1/providers/local/instances").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pairs_are_the_tenants_own_and_errors_use_their_names() {
    let s = memory_server("");
    let mk = |key: &'static str| {
        s.client
            .post(s.url("/v1/providers/local/key-pairs"))
            .bearer_auth(key)
            .json(&json!({"name": "web"}))
            .send()
    };
    let r = mk(ALICE_KEY).await.unwrap();
    assert_eq!(r.status(), 201);
    let k: Value = r.json().await.unwrap();
    assert_eq!(k["name"], "web");
    assert!(k["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
    // Bob has his own namespace: he sees none, and may make his own `web`.
    let (_, keys) = get_json(&s, BOB_KEY, "/v1/providers/local/key-pairs").await;
    assert_eq!(keys["items"], json!([]));
    assert_eq!(mk(BOB_KEY).await.unwrap().status(), 201);
    let p = expect_problem(mk(ALICE_KEY).await.unwrap(), 409, "already_exists").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`web`") && !detail.contains('@'),
        "{detail}"
    );
    let (_, keys) = get_json(&s, ALICE_KEY, "/v1/providers/local/key-pairs").await;
    let names: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["web"]);

    // An instance with the key shows the tenant's name for it.
    let r = s
        .post("/v1/providers/local/instances")
        .json(&json!({"image_id": "img-debian-12", "flavor_id": "flv-1cpu-1gb", "key_name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let vm: Value = r.json().await.unwrap();
    assert_eq!(vm["key_name"], "web");
    let (_, listed) = get_json(&s, ALICE_KEY, "/v1/providers/local/instances").await;
    assert_eq!(listed["items"][0]["key_name"], "web");

    // Errors name the key as the client named it.
    let r = s
        .post("/v1/providers/local/instances")
        .json(
            &json!({"image_id": "img-debian-12", "flavor_id": "flv-1cpu-1gb", "key_name": "nokey"}),
        )
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 404, "not_found").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`nokey`") && !detail.contains("alice@"),
        "{detail}"
    );
    let r = s
        .delete("/v1/providers/local/key-pairs/nokey")
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 404, "not_found").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`nokey`") && !detail.contains("alice@"),
        "{detail}"
    );
    let r = s
        .delete("/v1/providers/local/key-pairs/web")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, keys) = get_json(&s, BOB_KEY, "/v1/providers/local/key-pairs").await;
    assert_eq!(
        keys["items"].as_array().unwrap().len(),
        1,
        "bob's `web` stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_only_when_short_and_plain() {
    let s = memory_server("");
    for (given, kept) in [
        ("trace-0123:abcd/ef+=", true),
        ("x".repeat(64).as_str(), true),
        ("x".repeat(65).as_str(), false),
        ("has space", false),
        ("quote\"d", false),
        ("<xml>", false),
    ] {
        let r = s
            .get("/v1/providers")
            .header("x-request-id", given)
            .send()
            .await
            .unwrap();
        let got = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(got == given, kept, "{given:?} answered {got:?}");
        assert!(!got.is_empty() && got.len() <= 64);
    }
}

fn one_config(oned: &FakeOned, chaos: &str, extra_alice: &str) -> String {
    format!(
        "lease_ms = 500\n{}{}",
        opennebula_provider(oned, &format!("timeout_ms = 20000\n{chaos}")),
        tenants(extra_alice)
    )
}

async fn one_image(s: &Server) -> String {
    let (_, images) = get_json(s, ALICE_KEY, "/v1/providers/onprem/images").await;
    images["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "disk")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The server is killed after OpenNebula made the VM and before the create answered:
/// the VM carries its owner, so after the restart its tenant sees it (and nobody else
/// does), the same idempotency key answers the same VM, and the interrupted create is
/// settled (it counts against the tenant's quota).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_the_backends_create_and_the_answer_loses_no_instance() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(20)),
        ..FakeConfig::default()
    });
    let state = StateDb::new("sigkill-create");
    let env = vec![(
        "CMS_TEST_ONE_PASSWORD".to_owned(),
        oned.password().to_owned(),
    )];
    let slow = "[providers.chaos]\nanswer_delay_ms = 30000\nanswer_delay_operations = [\"create_instance\"]\n";
    let start = |chaos: &str| {
        Server::start(Options {
            config: Some(one_config(&oned, chaos, "max_instances = 1")),
            env: env.clone(),
            key: Some(ALICE_KEY.into()),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let mut s = start(slow);
    let image = one_image(&s).await;
    let body = json!({"name": "survivor", "image_id": image, "flavor_id": "small"});
    let request = s
        .post("/v1/providers/onprem/instances")
        .header("Idempotency-Key", "survivor-1")
        .json(&body);
    let pending = tokio::spawn(request.send());
    // Wait until OpenNebula has the VM, then kill the server before it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while oned.calls("one.template.instantiate") + oned.calls("one.vm.allocate") == 0 {
        assert!(
            Instant::now() < deadline,
            "the create never reached OpenNebula"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.kill();
    assert!(
        pending.await.unwrap().is_err(),
        "the create must not have answered"
    );
    let made = oned.calls("one.template.instantiate") + oned.calls("one.vm.allocate");

    let s = start("");
    // Alice sees it at once: the VM itself says whose it is.
    let (_, page) = get_json(&s, ALICE_KEY, "/v1/providers/onprem/instances").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(
        (items[0]["name"].as_str(), items[0]["owner"].as_str()),
        (Some("survivor"), Some("alice"))
    );
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let (_, page) = get_json(&s, BOB_KEY, "/v1/providers/onprem/instances").await;
    assert_eq!(page["items"], json!([]), "bob must not see it");
    let (status, _) = get_json(&s, BOB_KEY, &format!("/v1/providers/onprem/instances/{id}")).await;
    assert_eq!(status, 404);
    // The same key answers the same VM, and makes none.
    let r = s
        .post("/v1/providers/onprem/instances")
        .header("Idempotency-Key", "survivor-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(
        oned.calls("one.template.instantiate") + oned.calls("one.vm.allocate"),
        made
    );
    // It counts: alice's one place is taken.
    let r = s
        .post("/v1/providers/onprem/instances")
        .json(&json!({"name": "second", "image_id": image, "flavor_id": "small"}))
        .send()
        .await
        .unwrap();
    expect_problem(r, 403, "quota_exceeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_see_and_act_on_every_instance() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(10)),
        ..FakeConfig::default()
    });
    let outside = oned.add_running_vms(2);
    let s = Server::start(Options {
        config: Some(one_config(&oned, "", "")),
        env: vec![(
            "CMS_TEST_ONE_PASSWORD".to_owned(),
            oned.password().to_owned(),
        )],
        key: Some(ALICE_KEY.into()),
        ..Options::default()
    });
    let image = one_image(&s).await;
    let r = s
        .post("/v1/providers/onprem/instances")
        .json(&json!({"name": "alices", "image_id": image, "flavor_id": "small"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mine: Value = r.json().await.unwrap();
    let mine_id = mine["id"].as_str().unwrap().to_owned();
    // A VM still in PROLOG or BOOT refuses deletion (a temporary 409): the admin acts
    // on it once it runs, as a user would.
    wait_state(
        &s,
        &format!("/v1/providers/onprem/instances/{mine_id}"),
        "running",
    )
    .await;

    let (_, page) = get_json(&s, ALICE_KEY, "/v1/providers/onprem/instances").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let (_, page) = get_json(&s, OPS_KEY, "/v1/providers/onprem/instances").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    let owners: HashSet<Option<&str>> = items.iter().map(|i| i["owner"].as_str()).collect();
    assert_eq!(owners, HashSet::from([Some("alice"), None]));
    // The admin acts on alice's instance and on one made outside cms.
    let outside_id = outside[0].to_string();
    for id in [&mine_id, &outside_id] {
        let (status, _) =
            get_json(&s, OPS_KEY, &format!("/v1/providers/onprem/instances/{id}")).await;
        assert_eq!(status, 200, "{id}");
        let r = s
            .client
            .delete(s.url(&format!("/v1/providers/onprem/instances/{id}")))
            .bearer_auth(OPS_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{id}");
    }
    // Members never see what was made outside cms.
    let (status, _) = get_json(
        &s,
        ALICE_KEY,
        &format!("/v1/providers/onprem/instances/{}", outside[1]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get_json(
        &s,
        BOB_KEY,
        &format!("/v1/providers/onprem/instances/{mine_id}"),
    )
    .await;
    assert_eq!(status, 404);
}
