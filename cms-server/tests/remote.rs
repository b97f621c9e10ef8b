//! The remote driver (`cms-driver-remote`) against a real cms-server: the conformance
//! kit plain and under injected faults with the retry layer, the server's errors
//! mapped back to their kinds, and federation (a server whose provider is another
//! server's) through the native and the EC2 API.

mod common;

use std::time::Duration;

use cms_core::layers::{ChaosConfig, ChaosLayer, RetryPolicy};
use cms_core::testkit::{self, KitConfig, Outcome};
use cms_core::{Cloud, ErrorKind, InstanceFilter, PageRequest};
use cms_driver_remote::{ApiKey, Client, RemoteConfig, RemoteDriver, OWNER_TAG};
use serde_json::{json, Value};

use common::*;

/// One quick memory provider and one tenant.
const UPSTREAM: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 40
stop_delay_ms = 40
start_delay_ms = 40
reboot_delay_ms = 40
terminate_delay_ms = 40

[[tenants]]
name = "federation"
api_key = "federation-key-0123456789abcdef01"
providers = ["*"]
"#;

const KEY: &str = "federation-key-0123456789abcdef01";

fn upstream() -> Server {
    Server::start(Options {
        config: Some(UPSTREAM.to_owned()),
        key: Some(KEY.to_owned()),
        ..Options::default()
    })
}

async fn driver(s: &Server, provider: &str, key: &str) -> cms_core::Result<RemoteDriver> {
    let config =
        RemoteConfig::new(&s.base, provider, "UNUSED").with_api_key(ApiKey::new(key.to_owned()));
    RemoteDriver::connect(&config).await
}

fn kit() -> KitConfig {
    KitConfig {
        state_timeout: Duration::from_secs(30),
        ..KitConfig::default()
    }
}

fn assert_full(report: &testkit::Report) {
    report.assert_passed();
    // Every capability of the instance families is declared; the driver does not
    // carry volumes, snapshots, image capture, security groups and addresses over
    // (they answer `Unsupported`, which the `unsupported` check proves), so only their
    // checks may be skipped.
    const NOT_CARRIED: &[&str] = &[
        "unknown_ids",
        "volume_lifecycle",
        "volume_attach",
        "instance_volumes",
        "snapshots",
        "volume_pagination",
        "volume_client_token",
        "image_capture",
        "security_group_rules",
        "security_group_instances",
        "addresses",
        "family_owners",
    ];
    for c in &report.checks {
        if let Outcome::Skipped(why) = &c.outcome {
            assert!(NOT_CARRIED.contains(&c.name), "{} skipped: {why}", c.name);
        }
    }
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "unsupported" && c.outcome == Outcome::Passed),
        "{report}"
    );
    assert!(report.instances_created > 20, "{report}");
}

/// Every instance the tenant has on the server, terminated ones included.
async fn count_upstream(s: &Server) -> usize {
    let mut n = 0;
    let mut token: Option<String> = None;
    loop {
        let mut path = "/v1/providers/local/instances?limit=1000".to_owned();
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={}", urlencode(t)));
        }
        let page: Value = json_of(s.get(&path)).await;
        n += page["items"].as_array().unwrap().len();
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_passes_against_a_real_server() {
    let s = upstream();
    let d = driver(&s, "local", KEY).await.unwrap();
    assert_eq!(d.remote_driver(), "memory");
    let caps = *cms_core::Driver::capabilities(&d);
    assert!(caps.instances.owner && caps.instances.client_token && caps.instances.update_tags);
    let cloud = Cloud::builder(d).provider("remote").build();
    let report = testkit::run(&cloud, &kit()).await;
    println!("{report}");
    assert_full(&report);
    assert_eq!(count_upstream(&s).await, report.instances_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_passes_under_injected_faults_with_the_retry_layer_and_makes_no_duplicate() {
    let s = upstream();
    let chaos = ChaosLayer::new(ChaosConfig::faults(20261202, 0.25));
    let stats = chaos.stats();
    let cloud = Cloud::builder(driver(&s, "local", KEY).await.unwrap())
        .provider("chaotic-remote")
        .chaos_layer(chaos)
        .retry(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(20)),
        })
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    println!("{report}");
    assert_full(&report);
    let before = stats
        .faults_before
        .load(std::sync::atomic::Ordering::Relaxed);
    let after = stats
        .faults_after
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        before > 10 && after > 10,
        "too few faults: {before}/{after}"
    );
    // Answers were lost after the server did the work, creates among them, and yet
    // the server holds exactly what the kit made.
    assert_eq!(count_upstream(&s).await, report.instances_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_errors_come_back_as_the_same_kinds() {
    let s = Server::with_test_config();
    let list = |d: RemoteDriver| async move {
        cms_core::Driver::list_instances(&d, &InstanceFilter::default(), &PageRequest::first(5))
            .await
            .unwrap_err()
    };
    // `broken` fails every call with a temporary Unavailable (503).
    let e = list(driver(&s, "broken", ALICE).await.unwrap()).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(e.is_temporary());
    assert!(e.context_value("request_id").is_some_and(|r| !r.is_empty()));
    assert!(!e.message().contains("on provider `broken`"), "{e}");
    // `limited` rate-limits with Retry-After.
    let e = list(driver(&s, "limited", ALICE).await.unwrap()).await;
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e:?}");
    assert!(e.is_temporary() && e.is_not_executed());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    // `slow` runs out of time on the server (504).
    let e = list(driver(&s, "slow", ALICE).await.unwrap()).await;
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(e.is_temporary());

    let d = driver(&s, "local", ALICE).await.unwrap();
    let e = cms_core::Driver::get_instance(&d, &"i-0123456789abcdef0".into())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(!e.is_temporary());
    let e = cms_core::Driver::list_instances(
        &d,
        &InstanceFilter::default(),
        &PageRequest::after(Some(2), cms_core::PageToken::new("never-handed-out")),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert_eq!(e.context_value("argument"), Some("page_token"));
    // Owners ride in a reserved tag nobody else may set.
    let spec = cms_core::InstanceSpec::new("img-ubuntu-24.04", "flv-1cpu-1gb").tag(OWNER_TAG, "x");
    let e = cms_core::Driver::create_instance(&d, &spec)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("tag"), Some(OWNER_TAG));

    // A wrong key, a provider the tenant may not use, a server that is not there.
    let e = driver(&s, "local", "wrong-key-0123456789abcdef012345")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e:?}");
    assert!(!format!("{e:?}").contains("wrong-key"), "{e:?}");
    let e = driver(&s, "broken", BOB).await;
    let e = match e {
        Err(e) => e,
        Ok(_) => panic!("bob may not use `broken`"),
    };
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("local"), "names what there is: {e}");
    let gone = Client::new(
        "http://127.0.0.1:9",
        ApiKey::new("k"),
        Duration::from_secs(2),
    )
    .unwrap()
    .providers()
    .await
    .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Unavailable);
    assert!(gone.is_temporary() && gone.is_not_executed());
}

/// A config for the federating server: its own memory provider and `fed`, the
/// upstream server's `local`; two tenants with native and EC2 keys.
fn federating_config(upstream: &Server) -> String {
    format!(
        r#"
[[providers]]
name = "fed"
driver = "cms"
endpoint = "{}"
provider = "local"
api_key_env = "CMS_TEST_UPSTREAM_KEY"

[[providers]]
name = "home"
driver = "memory"
boot_delay_ms = 40

[[tenants]]
name = "alice"
api_key = "alice-key-0123456789abcdef0123"
access_key_id = "AKIAALICE0000000001"
secret_access_key = "alice-secret-0123456789abcdef0123"
providers = ["*"]

[[tenants]]
name = "bob"
api_key = "bob-key-abcdef0123456789abcdef"
providers = ["*"]
"#,
        upstream.base
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_serves_another_servers_instances_through_v1_and_ec2() {
    let up = upstream();
    let s = Server::start(Options {
        config: Some(federating_config(&up)),
        env: vec![("CMS_TEST_UPSTREAM_KEY".into(), KEY.into())],
        key: Some(ALICE.to_owned()),
        ..Options::default()
    });
    let providers: Value = json_of(s.get("/v1/providers")).await;
    let fed = providers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fed")
        .expect("fed listed");
    assert_eq!(fed["driver"], "cms");
    assert_eq!(fed["capabilities"]["instances"]["owner"], true);

    // Alice creates on `fed`: the instance lives on the upstream server.
    let r = s
        .post("/v1/providers/fed/instances")
        .header("idempotency-key", "fed-web-1")
        .json(&json!({"name": "web-1", "image_id": "img-ubuntu-24.04",
                      "flavor_id": "flv-1cpu-1gb", "tags": {"env": "demo"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["owner"], "alice");
    assert_eq!(
        made["tags"],
        json!({"env": "demo"}),
        "the owner tag is hidden"
    );
    let there: Value = json_of(up.get(&format!("/v1/providers/local/instances/{id}"))).await;
    assert_eq!(there["name"], "web-1");
    assert_eq!(there["tags"][OWNER_TAG], "alice");
    assert_eq!(
        there["tags"][cms_driver_remote::TOKEN_TAG],
        made["client_token"]
    );
    // The same key again answers the same instance, through both servers.
    let again: Value = json_of(
        s.post("/v1/providers/fed/instances")
            .header("idempotency-key", "fed-web-1")
            .json(&json!({"name": "web-1", "image_id": "img-ubuntu-24.04",
                      "flavor_id": "flv-1cpu-1gb", "tags": {"env": "demo"}})),
    )
    .await;
    assert_eq!(again["id"], id.as_str());
    wait_state(&s, &format!("/v1/providers/fed/instances/{id}"), "running").await;

    // Bob sees none of it; alice's listing, filtered, finds it.
    let as_bob = |path: &str| s.client.get(s.url(path)).bearer_auth(BOB);
    let bobs: Value = json_of(as_bob("/v1/providers/fed/instances")).await;
    assert_eq!(bobs["items"], json!([]));
    let r = as_bob(&format!("/v1/providers/fed/instances/{id}"))
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
    let mine: Value =
        json_of(s.get("/v1/providers/fed/instances?state=running&tag=env%3Ddemo")).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");

    // Tags and actions pass through; errors keep their kinds.
    let tagged: Value = json_of(
        s.req(
            reqwest::Method::PATCH,
            &format!("/v1/providers/fed/instances/{id}/tags"),
        )
        .json(&json!({"team": "web", "env": null})),
    )
    .await;
    assert_eq!(tagged["tags"], json!({"team": "web"}));
    let r = s
        .post(&format!("/v1/providers/fed/instances/{id}/start"))
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, 409, "invalid_state").await;
    assert!(p["detail"].as_str().unwrap().contains("running"), "{p}");
    assert_eq!(p["temporary"], false);

    // The EC2 API of the federating server serves it too.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("fed"))
        .endpoint_url(format!("{}/ec2", s.base))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIAALICE0000000001",
            "alice-secret-0123456789abcdef0123",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let out = ec2.describe_instances().send().await.unwrap();
    let instances: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(instances.len(), 1);
    let ec2_id = instances[0].instance_id().unwrap().to_owned();
    assert_eq!(
        instances[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str()),
        Some("running")
    );
    let run = ec2
        .run_instances()
        .image_id(
            ec2.describe_images()
                .send()
                .await
                .unwrap()
                .images()
                .iter()
                .find(|i| i.name() == Some("debian-12"))
                .and_then(|i| i.image_id())
                .unwrap(),
        )
        .instance_type(aws_sdk_ec2::types::InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let second = run.instances()[0].instance_id().unwrap().to_owned();
    ec2.terminate_instances()
        .instance_ids(&ec2_id)
        .instance_ids(&second)
        .send()
        .await
        .unwrap();
    // Both are terminating upstream, as the federating server asked.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = json_of(up.get("/v1/providers/local/instances?state=running,pending")).await;
        if v["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running upstream: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_federating_server_whose_upstream_is_down_says_so_at_start() {
    let config = r#"
[[providers]]
name = "fed"
driver = "cms"
endpoint = "http://127.0.0.1:9"
provider = "local"
api_key_env = "CMS_TEST_UPSTREAM_KEY"
"#;
    let file = TempFile::new(config);
    let (status, _out, err) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            file.0.to_str().unwrap(),
        ],
        &[("CMS_TEST_UPSTREAM_KEY", "secret-upstream-key-0123456789")],
    );
    assert!(!status.success());
    assert!(err.contains("provider `fed` (driver cms)"), "{err}");
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(!err.contains("secret-upstream-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_ids_than_one_request_takes_are_asked_in_chunks() {
    let s = upstream();
    let cloud = Cloud::builder(driver(&s, "local", KEY).await.unwrap())
        .provider("remote")
        .build();
    let mut made = Vec::new();
    for k in 0..3 {
        let spec = cms_core::InstanceSpec::new("img-ubuntu-24.04", "flv-1cpu-1gb")
            .name(format!("chunk-{k}"))
            .owner("alice");
        made.push(cloud.create_instance(&spec).await.unwrap().id);
    }
    // 250 ids (three chunks of at most 100), the real ones at the start, in the
    // middle and at the end.
    let mut ids: Vec<cms_core::InstanceId> = (0..247)
        .map(|k| cms_core::InstanceId::new(format!("i-{k:017x}")))
        .collect();
    ids.insert(0, made[0].clone());
    ids.insert(120, made[1].clone());
    ids.push(made[2].clone());
    let filter = InstanceFilter {
        ids,
        owner: Some("alice".into()),
        ..Default::default()
    };
    let mut found: Vec<_> = cloud
        .collect_instances(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    found.sort();
    made.sort();
    assert_eq!(found, made);
    let e = cloud
        .list_instances(
            &filter,
            &PageRequest::after(Some(5), cms_core::PageToken::new("ids:9:")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("argument"), Some("page_token"));
}
