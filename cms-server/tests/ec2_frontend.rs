//! The EC2 frontend driven by aws-sdk-ec2 (Rust), the AWS SDK no one here wrote: the
//! life cycle with the SDK's own waiters and paginators, tenant isolation, the chain
//! SDK -> cms EC2 frontend -> cms EC2 driver -> moto, and the store surviving SIGKILL.

mod common;

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, ResourceType, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;
use cms_driver_ec2::moto::MotoServer;
use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use common::*;

const ALICE_ID: &str = "AKIAALICE0000000001";
const ALICE_SECRET: &str = "alice-secret-0123456789abcdefghijklmn";
const BOB_ID: &str = "AKIABOB00000000000001";
const BOB_SECRET: &str = "bob-secret-0123456789abcdefghijklmnopq";

const CONFIG: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 100
stop_delay_ms = 100
start_delay_ms = 100
terminate_delay_ms = 100

[[tenants]]
name = "alice"
access_key_id = "AKIAALICE0000000001"
secret_access_key_env = "CMS_TEST_ALICE_SECRET"
providers = ["*"]

[[tenants]]
name = "bob"
access_key_id = "AKIABOB00000000000001"
secret_access_key_env = "CMS_TEST_BOB_SECRET"
providers = ["local"]
"#;

fn env() -> Vec<(String, String)> {
    vec![
        ("CMS_TEST_ALICE_SECRET".into(), ALICE_SECRET.into()),
        ("CMS_TEST_BOB_SECRET".into(), BOB_SECRET.into()),
    ]
}

/// An SDK client for the server's EC2 frontend, as a user would make one.
async fn client(s: &Server, region: &str, id: &str, secret: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(format!("{}/ec2", s.base))
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .load()
        .await;
    Client::new(&config)
}

fn code<E, R>(e: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .unwrap_or("<not a service error>")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_life_cycle_waiters_paginators_and_isolation() {
    let s = Server::start(Options {
        config: Some(CONFIG.to_owned()),
        env: env(),
        ..Options::default()
    });
    let ec2 = client(&s, "local", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "local", BOB_ID, BOB_SECRET).await;

    let images = ec2.describe_images().send().await.unwrap();
    let image = images.images()[0].image_id().unwrap().to_owned();
    assert!(image.starts_with("ami-") && image.len() == 21, "{image}");
    let types = ec2.describe_instance_types().send().await.unwrap();
    let itype = types.instance_types()[0].instance_type().unwrap().clone();

    let run = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(itype.clone())
        .min_count(3)
        .max_count(3)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value("web").build())
                .tags(Tag::builder().key("team").value("blue").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = run
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert!(id.starts_with("i-") && id.len() == 19, "{id}");
    }
    assert!(run.reservation_id().unwrap().starts_with("r-"));

    ec2.wait_until_instance_running()
        .instance_ids(&ids[0])
        .wait(Duration::from_secs(60))
        .await
        .unwrap();

    // The paginator follows NextToken over pages of 5... of 3 instances: pages of
    // MaxResults 5 hold them all, so ask for a filter-narrowed listing too.
    let mut pages = ec2
        .describe_instances()
        .max_results(5)
        .into_paginator()
        .send();
    let mut seen = Vec::new();
    while let Some(page) = pages.next().await {
        for r in page.unwrap().reservations() {
            for i in r.instances() {
                seen.push(i.instance_id().unwrap().to_owned());
            }
        }
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);

    let tagged = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:team").values("bl*").build())
        .filters(
            Filter::builder()
                .name("instance-type")
                .values(itype.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let n: usize = tagged
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(n, 3);
    let inst = &tagged.reservations()[0].instances()[0];
    assert_eq!(inst.image_id(), Some(image.as_str()));
    assert_eq!(inst.instance_type(), Some(&itype));
    assert!(inst
        .tags()
        .iter()
        .any(|t| t.key() == Some("Name") && t.value() == Some("web")));

    // Bob sees none of alice's instances, and her ids are "not found" to him.
    let theirs = bob.describe_instances().send().await.unwrap();
    assert!(theirs.reservations().is_empty());
    let e = bob
        .describe_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
    let e = bob
        .terminate_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
    // ... exactly as an id that never existed.
    let e = ec2
        .describe_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");

    let stop = ec2
        .stop_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap();
    let change = &stop.stopping_instances()[0];
    assert_eq!(
        change.previous_state().unwrap().name(),
        Some(&InstanceStateName::Running)
    );
    ec2.wait_until_instance_stopped()
        .instance_ids(&ids[0])
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let term = ec2
        .terminate_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(term.terminating_instances().len(), 3);
    ec2.wait_until_instance_terminated()
        .set_instance_ids(Some(ids.clone()))
        .wait(Duration::from_secs(60))
        .await
        .unwrap();

    // A region that is not one of the tenant's providers.
    let elsewhere = client(&s, "us-east-1", ALICE_ID, ALICE_SECRET).await;
    let e = elsewhere.describe_instances().send().await.unwrap_err();
    assert_eq!(code(&e), "AuthFailure");
    // A wrong secret.
    let forged = client(&s, "local", ALICE_ID, "not-alices-secret-at-all-0123").await;
    let e = forged.describe_instances().send().await.unwrap_err();
    assert_eq!(code(&e), "SignatureDoesNotMatch");

    let regions = ec2.describe_regions().send().await.unwrap();
    assert_eq!(regions.regions()[0].region_name(), Some("local"));
    let zones = ec2.describe_availability_zones().send().await.unwrap();
    assert!(!zones.availability_zones().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_sdk_to_cms_to_ec2_driver_to_moto() {
    let moto = MotoServer::start().await;
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

        [[tenants]]
        name = "alice"
        access_key_id = "{ALICE_ID}"
        secret_access_key_env = "CMS_TEST_ALICE_SECRET"
        providers = ["aws"]
        "#,
        cms_driver_ec2::moto::REGION,
        moto.endpoint(),
        cms_driver_ec2::moto::IMAGE_OWNER,
    );
    let mut env = env();
    env.push(("CMS_TEST_MOTO_KEY_ID".into(), "testing".into()));
    env.push(("CMS_TEST_MOTO_SECRET".into(), "testing".into()));
    let s = Server::start(Options {
        config: Some(config),
        env,
        ..Options::default()
    });
    let ec2 = client(&s, "aws", ALICE_ID, ALICE_SECRET).await;

    // moto's image, under a cms id.
    let images = ec2
        .describe_images()
        .filters(Filter::builder().name("name").values("*").build())
        .send()
        .await
        .unwrap();
    let image = images
        .images()
        .iter()
        .find(|_| true)
        .and_then(|i| i.image_id())
        .unwrap()
        .to_owned();
    assert!(image.starts_with("ami-") && image.len() == 21, "{image}");
    let run = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from(cms_driver_ec2::moto::FLAVOR))
        .min_count(1)
        .max_count(1)
        .client_token("chain-token-1")
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_owned();
    // The same token and parameters: the same instance, not a second one.
    let again = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from(cms_driver_ec2::moto::FLAVOR))
        .min_count(1)
        .max_count(1)
        .client_token("chain-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.instances()[0].instance_id(), Some(id.as_str()));
    assert_eq!(again.reservation_id(), run.reservation_id());
    let e = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from(cms_driver_ec2::moto::FLAVOR))
        .min_count(2)
        .max_count(2)
        .client_token("chain-token-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IdempotentParameterMismatch");

    ec2.wait_until_instance_running()
        .instance_ids(&id)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let all = ec2.describe_instances().send().await.unwrap();
    let n: usize = all.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(n, 1, "one instance, whatever the retries");
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    ec2.wait_until_instance_terminated()
        .instance_ids(&id)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_sigkill() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(20)),
        ..FakeConfig::default()
    });
    let state = StateDb::new("sigkill");
    let config = format!(
        r#"
        {}
        [[tenants]]
        name = "alice"
        access_key_id = "{ALICE_ID}"
        secret_access_key_env = "CMS_TEST_ALICE_SECRET"
        providers = ["*"]

        [[tenants]]
        name = "bob"
        access_key_id = "{BOB_ID}"
        secret_access_key_env = "CMS_TEST_BOB_SECRET"
        providers = ["*"]
        "#,
        opennebula_provider(&oned, "")
    );
    let mut env = env();
    env.push(opennebula_env(&oned));
    let start = || {
        Server::start(Options {
            config: Some(config.clone()),
            env: env.clone(),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };

    let mut s = start();
    let ec2 = client(&s, "onprem", ALICE_ID, ALICE_SECRET).await;
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let launch = |ec2: &Client, token: &'static str| {
        ec2.run_instances()
            .image_id(&image)
            .instance_type(InstanceType::from("small"))
            .min_count(2)
            .max_count(2)
            .client_token(token)
    };
    let run = launch(&ec2, "survive-1").send().await.unwrap();
    let mut ids: Vec<String> = run
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    ids.sort();
    ec2.create_key_pair()
        .key_name("alice-key")
        .send()
        .await
        .unwrap();

    s.kill();
    let s = start();
    let ec2 = client(&s, "onprem", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "onprem", BOB_ID, BOB_SECRET).await;

    // The same EC2 ids, still alice's.
    let d = ec2.describe_instances().send().await.unwrap();
    let mut seen: Vec<String> = d
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ids);
    assert_eq!(d.reservations()[0].reservation_id(), run.reservation_id());
    // The image keeps its id.
    let again = ec2.describe_images().send().await.unwrap();
    assert!(again
        .images()
        .iter()
        .any(|i| i.image_id() == Some(image.as_str())));
    // The client token is remembered: same request, same instances.
    let repeat = launch(&ec2, "survive-1").send().await.unwrap();
    let mut repeated: Vec<String> = repeat
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    repeated.sort();
    assert_eq!(repeated, ids);
    // Ownership too.
    assert!(bob
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
        .is_empty());
    let keys = ec2.describe_key_pairs().send().await.unwrap();
    assert_eq!(keys.key_pairs()[0].key_name(), Some("alice-key"));
    assert!(bob
        .describe_key_pairs()
        .send()
        .await
        .unwrap()
        .key_pairs()
        .is_empty());

    ec2.terminate_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
}

fn ids_of(d: &aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput) -> Vec<String> {
    d.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

async fn launch(ec2: &Client, n: i32) -> Vec<String> {
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let run = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(n)
        .max_count(n)
        .send()
        .await
        .unwrap();
    run.instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

/// The sequence that once leaked instances across tenants: alice launches on the
/// memory provider, the server restarts (a new memory cloud, the same store), bob
/// launches. Bob's instance gets an id never handed out before; alice no longer sees
/// hers (it went with the old memory cloud): its id is `InvalidInstanceID.NotFound`, and
/// bob's id is not hers to see, stop or terminate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_each_tenant_has_its_own_instances_and_fresh_ids() {
    let state = StateDb::new("restart-ec2");
    let start = || {
        Server::start(Options {
            config: Some(CONFIG.to_owned()),
            env: env(),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let mut s = start();
    let alice = client(&s, "local", ALICE_ID, ALICE_SECRET).await;
    let old = launch(&alice, 1).await.remove(0);
    assert_eq!(
        ids_of(&alice.describe_instances().send().await.unwrap()),
        std::slice::from_ref(&old)
    );
    s.kill();

    let s = start();
    let alice = client(&s, "local", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "local", BOB_ID, BOB_SECRET).await;
    let bobs = launch(&bob, 1).await.remove(0);
    assert_ne!(bobs, old, "bob was given alice's old id");
    assert_eq!(
        ids_of(&bob.describe_instances().send().await.unwrap()),
        std::slice::from_ref(&bobs)
    );
    assert!(ids_of(&alice.describe_instances().send().await.unwrap()).is_empty());
    let e = alice
        .describe_instances()
        .instance_ids(&old)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
    let e = alice
        .stop_instances()
        .instance_ids(&bobs)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
    let e = alice
        .terminate_instances()
        .instance_ids(&bobs)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
    let again = launch(&alice, 1).await.remove(0);
    assert!(again != old && again != bobs, "{again}");
    assert_eq!(
        ids_of(&alice.describe_instances().send().await.unwrap()),
        [again]
    );
}

/// `MaxResults` pages hold the tenant's instances only, full unless last, whatever
/// other tenants hold; errors name the tenant's own ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_results_pages_are_exact_and_errors_name_public_ids() {
    let s = Server::start(Options {
        config: Some(CONFIG.to_owned()),
        env: env(),
        ..Options::default()
    });
    let alice = client(&s, "local", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "local", BOB_ID, BOB_SECRET).await;
    let mine = launch(&alice, 3).await;
    for _ in 0..4 {
        launch(&bob, 50).await;
    }
    let page = alice
        .describe_instances()
        .max_results(5)
        .send()
        .await
        .unwrap();
    let mut got = ids_of(&page);
    got.sort();
    let mut want = mine.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(page.next_token(), None);
    // Bob's 200 in pages of 30: full but for the last, no empty page after a token.
    let mut sizes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = bob
            .describe_instances()
            .max_results(30)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        let ids = ids_of(&page);
        sizes.push(ids.len());
        seen.extend(ids);
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 200);
    assert_eq!(sizes, [30, 30, 30, 30, 30, 30, 20]);
    let status = bob
        .describe_instance_status()
        .include_all_instances(true)
        .max_results(50)
        .send()
        .await
        .unwrap();
    assert_eq!(status.instance_statuses().len(), 50);
    assert!(status.next_token().is_some());

    // An impossible transition names the instance by the client's id.
    alice
        .wait_until_instance_running()
        .instance_ids(&mine[0])
        .wait(Duration::from_secs(30))
        .await
        .unwrap();
    alice
        .stop_instances()
        .instance_ids(&mine[0])
        .send()
        .await
        .unwrap();
    alice
        .wait_until_instance_stopped()
        .instance_ids(&mine[0])
        .wait(Duration::from_secs(30))
        .await
        .unwrap();
    let e = alice
        .reboot_instances()
        .instance_ids(&mine[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IncorrectInstanceState");
    let message = e
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("")
        .to_owned();
    assert!(message.contains(&mine[0]), "{message}");
    // No backend id (the memory cloud's have 16 hex digits; public ids 17).
    for word in message.split(|c: char| !c.is_ascii_alphanumeric() && c != '-') {
        if let Some(hex) = word.strip_prefix("i-") {
            assert_eq!(hex.len(), 17, "a backend id in {message:?}");
        }
    }
    let native = s
        .client
        .get(s.url("/v1/providers/local/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(native.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_key_pairs_are_the_tenants_in_both_apis() {
    let config = r#"
        [[providers]]
        name = "local"
        driver = "memory"
        boot_delay_ms = 10

        [[tenants]]
        name = "alice"
        api_key = "alice-native-key-0123456789abcdef"
        access_key_id = "AKIAALICE0000000001"
        secret_access_key_env = "CMS_TEST_ALICE_SECRET"
        providers = ["*"]
        max_instances = 3

        [[tenants]]
        name = "bob"
        access_key_id = "AKIABOB00000000000001"
        secret_access_key_env = "CMS_TEST_BOB_SECRET"
        providers = ["local"]
    "#;
    let s = Server::start(Options {
        config: Some(config.to_owned()),
        env: env(),
        key: Some("alice-native-key-0123456789abcdef".into()),
        ..Options::default()
    });
    let alice = client(&s, "local", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "local", BOB_ID, BOB_SECRET).await;
    let image = alice.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let run = |min: i32, max: i32| {
        alice
            .run_instances()
            .image_id(&image)
            .instance_type(InstanceType::from("flv-1cpu-1gb"))
            .min_count(min)
            .max_count(max)
            .send()
    };
    // Room for 3: MaxCount 5 launches 3, as EC2 launches what the limit allows.
    let got = run(1, 5).await.unwrap();
    assert_eq!(got.instances().len(), 3);
    let e = run(1, 1).await.unwrap_err();
    assert_eq!(code(&e), "InstanceLimitExceeded");
    assert_eq!(
        ids_of(&alice.describe_instances().send().await.unwrap()).len(),
        3
    );
    let victim = got.instances()[0].instance_id().unwrap().to_owned();
    alice
        .terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .unwrap();
    let e = run(2, 2).await.unwrap_err();
    assert_eq!(
        code(&e),
        "InstanceLimitExceeded",
        "MinCount 2 with room for 1"
    );
    assert_eq!(run(1, 1).await.unwrap().instances().len(), 1);

    // A key made through the native API is alice's in the EC2 API too, and only hers.
    let r = s
        .post("/v1/providers/local/key-pairs")
        .json(&serde_json::json!({"name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let keys = alice.describe_key_pairs().send().await.unwrap();
    let names: Vec<&str> = keys
        .key_pairs()
        .iter()
        .filter_map(|k| k.key_name())
        .collect();
    assert_eq!(names, ["web"]);
    assert!(bob
        .describe_key_pairs()
        .send()
        .await
        .unwrap()
        .key_pairs()
        .is_empty());
    let e = bob
        .describe_key_pairs()
        .key_names("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidKeyPair.NotFound");
    let dup = alice
        .create_key_pair()
        .key_name("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup), "InvalidKeyPair.Duplicate");
    let message = dup
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("")
        .to_owned();
    assert!(
        message.contains("'web'") && !message.contains("alice@"),
        "{message}"
    );
    let e = bob
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .key_name("web")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidKeyPair.NotFound");
    let message = e
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("")
        .to_owned();
    assert!(
        message.contains("'web'") && !message.contains("bob@"),
        "{message}"
    );
    bob.delete_key_pair().key_name("web").send().await.unwrap();
    assert_eq!(
        alice
            .describe_key_pairs()
            .send()
            .await
            .unwrap()
            .key_pairs()
            .len(),
        1
    );
}

/// RunInstances with a ClientToken is killed after OpenNebula made the VMs and before
/// the answer; after the restart, alice's DescribeInstances shows them, and the same
/// token answers the same instances and reservation without making more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_killed_before_its_answer_is_found_again() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(20)),
        ..FakeConfig::default()
    });
    let state = StateDb::new("sigkill-run");
    let config = |chaos: &str| {
        format!(
            r#"
            lease_ms = 500
            {}

            [[tenants]]
            name = "alice"
            access_key_id = "{ALICE_ID}"
            secret_access_key_env = "CMS_TEST_ALICE_SECRET"
            providers = ["*"]

            [[tenants]]
            name = "bob"
            access_key_id = "{BOB_ID}"
            secret_access_key_env = "CMS_TEST_BOB_SECRET"
            providers = ["*"]
            "#,
            opennebula_provider(&oned, &format!("timeout_ms = 20000\n{chaos}"))
        )
    };
    let mut env = env();
    env.push(opennebula_env(&oned));
    let start = |chaos: &str| {
        Server::start(Options {
            config: Some(config(chaos)),
            env: env.clone(),
            state: Some(state.url.clone()),
            ..Options::default()
        })
    };
    let made = || oned.calls("one.template.instantiate") + oned.calls("one.vm.allocate");
    let mut s = start("[providers.chaos]\nanswer_delay_ms = 30000\nanswer_delay_operations = [\"create_instance\"]\n");
    let ec2 = client(&s, "onprem", ALICE_ID, ALICE_SECRET).await;
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let request = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("small"))
        .min_count(2)
        .max_count(2)
        .client_token("killed-launch");
    let pending = tokio::spawn(request.send());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while made() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the launch never reached OpenNebula"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.kill();
    assert!(
        pending.await.unwrap().is_err(),
        "the launch must not have answered"
    );

    let s = start("");
    let ec2 = client(&s, "onprem", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "onprem", BOB_ID, BOB_SECRET).await;
    let mut seen = ids_of(&ec2.describe_instances().send().await.unwrap());
    seen.sort();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(ids_of(&bob.describe_instances().send().await.unwrap()).is_empty());
    // Once the interrupted launch is settled, the token answers it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let repeat = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("small"))
        .min_count(2)
        .max_count(2)
        .client_token("killed-launch")
        .send()
        .await
        .unwrap();
    let mut again: Vec<String> = repeat
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    again.sort();
    assert_eq!(again, seen);
    assert_eq!(made(), 2, "the repeat made new VMs");
    let d = ec2.describe_instances().send().await.unwrap();
    assert_eq!(d.reservations().len(), 1, "one reservation: {d:?}");
    assert_eq!(
        d.reservations()[0].reservation_id(),
        repeat.reservation_id()
    );
}
