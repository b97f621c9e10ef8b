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
volume_create_delay_ms = 300
volume_delete_delay_ms = 200
attach_delay_ms = 300
detach_delay_ms = 300
snapshot_delay_ms = 600
image_delay_ms = 600

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

// ---- volumes, snapshots, captured images, security groups, addresses ----

/// A memory server with alice and bob, and their SDK clients.
async fn families_server() -> (Server, Client, Client) {
    let s = Server::start(Options {
        config: Some(CONFIG.to_owned()),
        env: env(),
        ..Options::default()
    });
    let alice = client(&s, "local", ALICE_ID, ALICE_SECRET).await;
    let bob = client(&s, "local", BOB_ID, BOB_SECRET).await;
    (s, alice, bob)
}

/// A running instance of `ec2`'s, in `zone` when given.
async fn running_instance(ec2: &Client, zone: Option<&str>) -> String {
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let mut run = ec2
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1);
    if let Some(z) = zone {
        run = run.placement(
            aws_sdk_ec2::types::Placement::builder()
                .availability_zone(z)
                .build(),
        );
    }
    let id = run.send().await.unwrap().instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    wait_running(ec2, &id).await;
    id
}

/// Polls until the instance runs (the SDK's waiter sleeps 15 s between polls).
async fn wait_running(ec2: &Client, id: &str) {
    for _ in 0..100 {
        let d = ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
        let state = d.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .cloned();
        if state == Some(InstanceStateName::Running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never ran");
}

async fn volume(ec2: &Client, id: &str) -> aws_sdk_ec2::types::Volume {
    ec2.describe_volumes()
        .volume_ids(id)
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .clone()
}

/// Polls until the volume is in `state` (then the SDK's waiter succeeds at its first
/// poll, which the tests check too).
async fn settle_volume(ec2: &Client, id: &str, state: aws_sdk_ec2::types::VolumeState) {
    for _ in 0..100 {
        if volume(ec2, id).await.state() == Some(&state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never became {state:?}");
}

fn message<E: ProvideErrorMetadata, R>(e: &aws_sdk_ec2::error::SdkError<E, R>) -> String {
    e.as_service_error()
        .and_then(|s| s.message())
        .unwrap_or("")
        .to_owned()
}

fn is_public_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_volumes_and_snapshots() {
    use aws_sdk_ec2::types::{SnapshotState, VolumeAttachmentState, VolumeState};
    let (_s, ec2, bob) = families_server().await;
    let zones = ec2.describe_availability_zones().send().await.unwrap();
    let zone = zones.availability_zones()[0]
        .zone_name()
        .unwrap()
        .to_owned();

    // CreateVolume: `creating`, then `available`, with its tags and a ClientToken.
    let made = ec2
        .create_volume()
        .size(2)
        .availability_zone(&zone)
        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
        .client_token("vol-token-1")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .tags(Tag::builder().key("Name").value("data").build())
                .tags(Tag::builder().key("team").value("blue").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vol = made.volume_id().unwrap().to_owned();
    assert!(is_public_id(&vol, "vol"), "{vol}");
    assert_eq!(made.state(), Some(&VolumeState::Creating));
    assert_eq!(made.size(), Some(2));
    assert_eq!(made.availability_zone(), Some(zone.as_str()));
    let again = ec2
        .create_volume()
        .size(2)
        .availability_zone(&zone)
        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
        .client_token("vol-token-1")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .tags(Tag::builder().key("Name").value("data").build())
                .tags(Tag::builder().key("team").value("blue").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.volume_id(),
        Some(vol.as_str()),
        "one volume per token"
    );
    let e = ec2
        .create_volume()
        .size(3)
        .availability_zone(&zone)
        .client_token("vol-token-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IdempotentParameterMismatch");
    ec2.wait_until_volume_available()
        .volume_ids(&vol)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let v = volume(&ec2, &vol).await;
    assert_eq!(v.state(), Some(&VolumeState::Available));
    let tags: Vec<(&str, &str)> = v
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags, [("Name", "data"), ("team", "blue")]);

    // Errors: unknown, malformed, another tenant's.
    let e = ec2
        .describe_volumes()
        .volume_ids("vol-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVolume.NotFound");
    assert!(
        message(&e).contains("vol-0123456789abcdef0"),
        "{}",
        message(&e)
    );
    let e = ec2
        .describe_volumes()
        .volume_ids("vol-xyz")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVolume.Malformed");
    let e = ec2
        .create_volume()
        .availability_zone(&zone)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "MissingParameter");
    let e = bob
        .describe_volumes()
        .volume_ids(&vol)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVolume.NotFound");
    let e = bob
        .delete_volume()
        .volume_id(&vol)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVolume.NotFound");
    assert!(bob
        .describe_volumes()
        .send()
        .await
        .unwrap()
        .volumes()
        .is_empty());

    // Paging: seven of alice's volumes in pages of 5, with and without filters.
    let mut batch = Vec::new();
    for _ in 0..6 {
        let v = ec2
            .create_volume()
            .size(1)
            .availability_zone(&zone)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .tags(Tag::builder().key("batch").value("pages").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        batch.push(v.volume_id().unwrap().to_owned());
    }
    for filtered in [false, true] {
        let mut req = ec2.describe_volumes().max_results(5);
        if filtered {
            req = req.filters(
                Filter::builder()
                    .name("size")
                    .values("1")
                    .values("2")
                    .build(),
            );
        }
        let mut pages = req.into_paginator().send();
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.unwrap();
            sizes.push(page.volumes().len());
            seen.extend(
                page.volumes()
                    .iter()
                    .map(|v| v.volume_id().unwrap().to_owned()),
            );
        }
        seen.sort();
        let mut want: Vec<String> = batch.iter().cloned().chain([vol.clone()]).collect();
        want.sort();
        assert_eq!(seen, want, "filtered: {filtered}");
        assert_eq!(sizes, [5, 2], "filtered: {filtered}");
    }
    let tagged = ec2
        .describe_volumes()
        .filters(Filter::builder().name("tag:batch").values("pag*").build())
        .filters(
            Filter::builder()
                .name("status")
                .values("creating")
                .values("available")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.volumes().len(), 6);
    let e = ec2
        .describe_volumes()
        .filters(Filter::builder().name("bogus").values("x").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue");
    // A volume still being made cannot be deleted yet, as on EBS.
    let e = ec2
        .delete_volume()
        .volume_id(&batch[5])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IncorrectState", "{}", message(&e));
    for v in &batch {
        settle_volume(&ec2, v, VolumeState::Available).await;
        ec2.delete_volume().volume_id(v).send().await.unwrap();
    }

    // Attached to an instance in its zone: `attaching` (in-use), then `in-use`.
    let vm = running_instance(&ec2, Some(&zone)).await;
    let bobs = running_instance(&bob, Some(&zone)).await;
    let e = bob
        .attach_volume()
        .volume_id(&vol)
        .instance_id(&bobs)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVolume.NotFound");
    let e = ec2
        .attach_volume()
        .volume_id(&vol)
        .instance_id(&bobs)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");
    let att = ec2
        .attach_volume()
        .volume_id(&vol)
        .instance_id(&vm)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap();
    assert_eq!(att.state(), Some(&VolumeAttachmentState::Attaching));
    assert_eq!(
        (att.instance_id(), att.device()),
        (Some(vm.as_str()), Some("/dev/sdf"))
    );
    assert_eq!(volume(&ec2, &vol).await.state(), Some(&VolumeState::InUse));
    for _ in 0..100 {
        let v = volume(&ec2, &vol).await;
        if v.attachments()[0].state() == Some(&VolumeAttachmentState::Attached) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ec2.wait_until_volume_in_use()
        .volume_ids(&vol)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let v = volume(&ec2, &vol).await;
    let a = &v.attachments()[0];
    assert_eq!(a.state(), Some(&VolumeAttachmentState::Attached));
    assert_eq!(a.instance_id(), Some(vm.as_str()));
    // The instance shows it in its block device mapping, and filters find it.
    let d = ec2
        .describe_instances()
        .instance_ids(&vm)
        .send()
        .await
        .unwrap();
    let inst = &d.reservations()[0].instances()[0];
    let mapped: Vec<(&str, &str)> = inst
        .block_device_mappings()
        .iter()
        .map(|m| {
            (
                m.device_name().unwrap(),
                m.ebs().and_then(|e| e.volume_id()).unwrap(),
            )
        })
        .collect();
    assert!(mapped.contains(&("/dev/sdf", vol.as_str())), "{mapped:?}");
    let by_volume = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("block-device-mapping.volume-id")
                .values(&vol)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&by_volume), std::slice::from_ref(&vm));
    let by_instance = ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&vm)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(by_instance.volumes().len(), 1);
    // AWS's refusals: attached already, deleted while attached.
    let e = ec2
        .attach_volume()
        .volume_id(&vol)
        .instance_id(&vm)
        .device("/dev/sdg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VolumeInUse");
    let e = ec2
        .delete_volume()
        .volume_id(&vol)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VolumeInUse");

    // A snapshot: `pending`, then `completed`; the tenant's alone.
    let snap = ec2
        .create_snapshot()
        .volume_id(&vol)
        .description("before the upgrade")
        .send()
        .await
        .unwrap();
    let snap_id = snap.snapshot_id().unwrap().to_owned();
    assert!(is_public_id(&snap_id, "snap"), "{snap_id}");
    assert_eq!(snap.state(), Some(&SnapshotState::Pending));
    assert_eq!(snap.volume_id(), Some(vol.as_str()));
    assert_eq!(snap.volume_size(), Some(2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    ec2.wait_until_snapshot_completed()
        .snapshot_ids(&snap_id)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let mine = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap();
    let s = &mine.snapshots()[0];
    assert_eq!(s.snapshot_id(), Some(snap_id.as_str()));
    assert_eq!(
        (s.progress(), s.description()),
        (Some("100%"), Some("before the upgrade"))
    );
    let reservation_owner = d.reservations()[0].owner_id().unwrap().to_owned();
    assert_eq!(s.owner_id(), Some(reservation_owner.as_str()));
    assert!(ec2
        .describe_snapshots()
        .owner_ids("amazon")
        .send()
        .await
        .unwrap()
        .snapshots()
        .is_empty());
    let e = bob
        .describe_snapshots()
        .snapshot_ids(&snap_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidSnapshot.NotFound");
    assert!(bob
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap()
        .snapshots()
        .is_empty());
    let e = bob
        .create_volume()
        .snapshot_id(&snap_id)
        .availability_zone(&zone)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidSnapshot.NotFound");
    // A volume made from it has its size.
    let copy = ec2
        .create_volume()
        .snapshot_id(&snap_id)
        .availability_zone(&zone)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (copy.size(), copy.snapshot_id()),
        (Some(2), Some(snap_id.as_str()))
    );
    let copy_id = copy.volume_id().unwrap().to_owned();

    // Detached: `detaching`, then `available`; detaching again is refused.
    let e = ec2
        .detach_volume()
        .volume_id(&vol)
        .instance_id(&bobs)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAttachment.NotFound");
    let det = ec2.detach_volume().volume_id(&vol).send().await.unwrap();
    assert_eq!(det.state(), Some(&VolumeAttachmentState::Detaching));
    assert_eq!(det.instance_id(), Some(vm.as_str()));
    settle_volume(&ec2, &vol, VolumeState::Available).await;
    let e = ec2
        .detach_volume()
        .volume_id(&vol)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "IncorrectState");
    for v in [&vol, &copy_id] {
        settle_volume(&ec2, v, VolumeState::Available).await;
        ec2.delete_volume().volume_id(v).send().await.unwrap();
    }
    ec2.wait_until_volume_deleted()
        .volume_ids(&vol)
        .volume_ids(&copy_id)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    let e = ec2
        .describe_volumes()
        .volume_ids(&vol)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVolume.NotFound");
    ec2.delete_snapshot()
        .snapshot_id(&snap_id)
        .send()
        .await
        .unwrap();
    let e = ec2
        .delete_snapshot()
        .snapshot_id(&snap_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidSnapshot.NotFound");

    // Volumes made with an instance: its block device mapping.
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let launch = |device: &str| {
        ec2.run_instances()
            .image_id(&image)
            .instance_type(InstanceType::from("flv-1cpu-1gb"))
            .min_count(1)
            .max_count(1)
            .block_device_mappings(
                aws_sdk_ec2::types::BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        aws_sdk_ec2::types::EbsBlockDevice::builder()
                            .volume_size(3)
                            .delete_on_termination(true)
                            .volume_type(aws_sdk_ec2::types::VolumeType::Gp2)
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let e = launch("/dev/sda1").await.unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation");
    let run = launch("/dev/sdh").await.unwrap();
    let with = run.instances()[0].instance_id().unwrap().to_owned();
    wait_running(&ec2, &with).await;
    let d = ec2
        .describe_instances()
        .instance_ids(&with)
        .send()
        .await
        .unwrap();
    let data = d.reservations()[0].instances()[0]
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some("/dev/sdh"))
        .expect("the volume made with the instance")
        .clone();
    let ebs = data.ebs().unwrap();
    assert_eq!(ebs.delete_on_termination(), Some(true));
    let made_with = ebs.volume_id().unwrap().to_owned();
    assert_eq!(volume(&ec2, &made_with).await.size(), Some(3));
    ec2.terminate_instances()
        .instance_ids(&vm)
        .instance_ids(&with)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_captured_images() {
    use aws_sdk_ec2::types::ImageState;
    let (_s, ec2, bob) = families_server().await;
    let catalogue = ec2.describe_images().send().await.unwrap();
    let shared = catalogue.images()[0].image_id().unwrap().to_owned();
    let vm = running_instance(&ec2, None).await;
    let made = ec2
        .create_image()
        .instance_id(&vm)
        .name("web-golden-1")
        .description("the web server")
        .no_reboot(true)
        .send()
        .await
        .unwrap();
    let ami = made.image_id().unwrap().to_owned();
    assert!(is_public_id(&ami, "ami"), "{ami}");
    let first = ec2.describe_images().image_ids(&ami).send().await.unwrap();
    let img = &first.images()[0];
    // `pending` while the copy is made (600 ms here), unless the machine is slower.
    assert!(
        matches!(
            img.state(),
            Some(ImageState::Pending | ImageState::Available)
        ),
        "{img:?}"
    );
    assert_eq!(img.public(), Some(false));
    assert_eq!(img.name(), Some("web-golden-1"));
    let reservation_owner = ec2
        .describe_instances()
        .instance_ids(&vm)
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .owner_id()
        .unwrap()
        .to_owned();
    assert_eq!(img.owner_id(), Some(reservation_owner.as_str()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    ec2.wait_until_image_available()
        .image_ids(&ami)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    // Owner=self lists the tenant's images alone; the catalogue is the provider's.
    let mine = ec2.describe_images().owners("self").send().await.unwrap();
    let ids: Vec<&str> = mine.images().iter().filter_map(|i| i.image_id()).collect();
    assert_eq!(ids, [ami.as_str()]);
    let all = ec2.describe_images().send().await.unwrap();
    assert_eq!(all.images().len(), catalogue.images().len() + 1);
    let private = ec2
        .describe_images()
        .filters(Filter::builder().name("is-public").values("false").build())
        .send()
        .await
        .unwrap();
    assert_eq!(private.images().len(), 1);
    let e = ec2
        .create_image()
        .instance_id(&vm)
        .name("web-golden-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAMIName.Duplicate");
    let e = ec2
        .create_image()
        .instance_id(&vm)
        .name("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAMIName.Malformed");

    // Bob neither sees nor launches it.
    let e = bob
        .describe_images()
        .image_ids(&ami)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAMIID.NotFound");
    assert_eq!(
        bob.describe_images().send().await.unwrap().images().len(),
        catalogue.images().len()
    );
    let e = bob
        .run_instances()
        .image_id(&ami)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAMIID.NotFound");
    let e = bob
        .deregister_image()
        .image_id(&ami)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAMIID.NotFound");
    let e = bob
        .create_image()
        .instance_id(&vm)
        .name("stolen")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidInstanceID.NotFound");

    // Alice launches from it, and cannot deregister the catalogue's.
    let run = ec2
        .run_instances()
        .image_id(&ami)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    assert_eq!(run.instances()[0].image_id(), Some(ami.as_str()));
    let e = ec2
        .deregister_image()
        .image_id(&shared)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnauthorizedOperation");
    let r = ec2.deregister_image().image_id(&ami).send().await.unwrap();
    assert_eq!(r.r#return(), Some(true));
    assert!(ec2
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap()
        .images()
        .is_empty());
    let launched = run.instances()[0].instance_id().unwrap().to_owned();
    ec2.terminate_instances()
        .instance_ids(&vm)
        .instance_ids(&launched)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_security_groups() {
    use aws_sdk_ec2::types::{IpPermission, IpRange, UserIdGroupPair};
    let (_s, ec2, bob) = families_server().await;
    let vpc = ec2.describe_vpcs().send().await.unwrap().vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    let default = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let default_id = default.security_groups()[0].group_id().unwrap().to_owned();

    let web = ec2
        .create_security_group()
        .group_name("web")
        .description("web servers")
        .vpc_id(&vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(Tag::builder().key("team").value("blue").build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    assert!(is_public_id(&web, "sg"), "{web}");
    ec2.wait_until_security_group_exists()
        .group_ids(&web)
        .wait(Duration::from_secs(30))
        .await
        .unwrap();
    let e = ec2
        .create_security_group()
        .group_name("web")
        .description("again")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.Duplicate");
    let e = ec2
        .create_security_group()
        .group_name("default")
        .description("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidParameterValue");

    let ssh = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    let added = ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(ssh.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(added.r#return(), Some(true));
    let rule = &added.security_group_rules()[0];
    assert_eq!((rule.from_port(), rule.to_port()), (Some(22), Some(22)));
    assert_eq!(rule.cidr_ipv4(), Some("0.0.0.0/0"));
    assert_eq!(rule.is_egress(), Some(false));
    let rule_id = rule.security_group_rule_id().unwrap().to_owned();
    // AWS refuses a rule the group holds; so does cms.
    let e = ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(ssh.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidPermission.Duplicate");
    // Protocol numbers and group peers; another group's rules may name it.
    let db = ec2
        .create_security_group()
        .group_name("db")
        .description("databases")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    ec2.authorize_security_group_ingress()
        .group_id(&db)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("6")
                .from_port(5432)
                .to_port(5432)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&web).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    ec2.authorize_security_group_egress()
        .group_id(&web)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("udp")
                .from_port(53)
                .to_port(53)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = ec2
        .describe_security_groups()
        .group_ids(&web)
        .group_ids(&db)
        .send()
        .await
        .unwrap();
    let by_id = |id: &str| {
        got.security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
            .unwrap()
            .clone()
    };
    let w = by_id(&web);
    assert_eq!(
        (w.group_name(), w.description()),
        (Some("web"), Some("web servers"))
    );
    assert_eq!(w.vpc_id(), Some(vpc.as_str()));
    let ingress = &w.ip_permissions()[0];
    assert_eq!(ingress.ip_protocol(), Some("tcp"));
    assert_eq!(ingress.ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));
    let egress: Vec<(&str, Option<i32>)> = w
        .ip_permissions_egress()
        .iter()
        .map(|p| (p.ip_protocol().unwrap(), p.from_port()))
        .collect();
    assert!(
        egress.contains(&("udp", Some(53))) && egress.contains(&("-1", None)),
        "{egress:?}"
    );
    let d = by_id(&db);
    let peer = &d.ip_permissions()[0].user_id_group_pairs()[0];
    assert_eq!(peer.group_id(), Some(web.as_str()));
    let by_port = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("ip-permission.from-port")
                .values("22")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = by_port
        .security_groups()
        .iter()
        .filter_map(|g| g.group_name())
        .collect();
    assert_eq!(names, ["web"]);
    // Paginated, every group the tenant may use: its own and the default one(s).
    let mut pages = ec2
        .describe_security_groups()
        .max_results(5)
        .into_paginator()
        .send();
    let mut all = Vec::new();
    while let Some(p) = pages.next().await {
        all.extend(
            p.unwrap()
                .security_groups()
                .iter()
                .map(|g| g.group_id().unwrap().to_owned()),
        );
    }
    assert!(
        all.contains(&web) && all.contains(&db) && all.contains(&default_id),
        "{all:?}"
    );

    // Instances in the group, by id and by name.
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let run = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .security_group_ids(&web)
        .send()
        .await
        .unwrap();
    let vm = run.instances()[0].instance_id().unwrap().to_owned();
    let groups: Vec<(&str, &str)> = run.instances()[0]
        .security_groups()
        .iter()
        .map(|g| (g.group_id().unwrap(), g.group_name().unwrap()))
        .collect();
    assert_eq!(groups, [(web.as_str(), "web")]);
    let by_name = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .security_groups("db")
        .send()
        .await
        .unwrap();
    let vm2 = by_name.instances()[0].instance_id().unwrap().to_owned();
    assert_eq!(
        by_name.instances()[0].security_groups()[0].group_id(),
        Some(db.as_str())
    );
    let in_web = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance.group-id")
                .values(&web)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&in_web), std::slice::from_ref(&vm));
    let in_db = ec2
        .describe_instances()
        .filters(Filter::builder().name("group-name").values("db").build())
        .send()
        .await
        .unwrap();
    assert_eq!(ids_of(&in_db), std::slice::from_ref(&vm2));
    let e = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .security_groups("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.NotFound");

    // Bob sees the default group, not alice's; her ids are not found.
    let his = bob.describe_security_groups().send().await.unwrap();
    let his: Vec<&str> = his
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert!(
        his.contains(&default_id.as_str()) && !his.contains(&web.as_str()),
        "{his:?}"
    );
    let e = bob
        .describe_security_groups()
        .group_ids(&web)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.NotFound");
    let e = bob
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(ssh.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.NotFound");
    let e = bob
        .delete_security_group()
        .group_id(&web)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.NotFound");
    let e = bob
        .run_instances()
        .image_id(&image)
        .instance_type(InstanceType::from("flv-1cpu-1gb"))
        .min_count(1)
        .max_count(1)
        .security_group_ids(&web)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.NotFound");
    // The default group: shared, so a member may not change it, and nobody deletes it.
    let e = ec2
        .authorize_security_group_ingress()
        .group_id(&default_id)
        .ip_permissions(ssh.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnauthorizedOperation");
    let e = ec2
        .delete_security_group()
        .group_id(&default_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "CannotDelete");

    // Revoking: a rule it does not hold, then by rule id.
    let e = ec2
        .revoke_security_group_ingress()
        .group_id(&web)
        .ip_protocol("tcp")
        .from_port(23)
        .to_port(23)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidPermission.NotFound");
    let r = ec2
        .revoke_security_group_ingress()
        .group_id(&web)
        .security_group_rule_ids(&rule_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.r#return(), Some(true));
    let w = ec2
        .describe_security_groups()
        .group_ids(&web)
        .send()
        .await
        .unwrap();
    assert!(w.security_groups()[0].ip_permissions().is_empty());

    // In use, or named by another group's rules: DependencyViolation.
    let e = ec2
        .delete_security_group()
        .group_id(&db)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "DependencyViolation");
    ec2.terminate_instances()
        .instance_ids(&vm)
        .instance_ids(&vm2)
        .send()
        .await
        .unwrap();
    let e = ec2
        .delete_security_group()
        .group_id(&web)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "DependencyViolation", "db's rule names web");
    ec2.revoke_security_group_ingress()
        .group_id(&db)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&web).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    ec2.wait_until_instance_terminated()
        .instance_ids(&vm)
        .instance_ids(&vm2)
        .wait(Duration::from_secs(60))
        .await
        .unwrap();
    // Terminated instances leave their groups (the memory cloud keeps them a while).
    let mut deleted = false;
    for _ in 0..50 {
        match ec2.delete_security_group().group_id(&web).send().await {
            Ok(_) => {
                deleted = true;
                break;
            }
            Err(e) => {
                assert_eq!(code(&e), "DependencyViolation");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(deleted, "web could not be deleted");
    ec2.delete_security_group()
        .group_name("db")
        .send()
        .await
        .unwrap();
    let e = ec2
        .describe_security_groups()
        .group_ids(&web)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidGroup.NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_addresses() {
    use aws_sdk_ec2::types::DomainType;
    let (_s, ec2, bob) = families_server().await;
    let attrs = ec2
        .describe_account_attributes()
        .attribute_names(aws_sdk_ec2::types::AccountAttributeName::DefaultVpc)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.account_attributes().len(), 1);
    let all = ec2.describe_account_attributes().send().await.unwrap();
    let max = all
        .account_attributes()
        .iter()
        .find(|a| a.attribute_name() == Some("max-elastic-ips"))
        .unwrap();
    assert_eq!(max.attribute_values()[0].attribute_value(), Some("5"));

    let a = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .unwrap();
    let alloc = a.allocation_id().unwrap().to_owned();
    let ip = a.public_ip().unwrap().to_owned();
    assert!(is_public_id(&alloc, "eipalloc"), "{alloc}");
    assert_eq!(a.domain(), Some(&DomainType::Vpc));
    let vm = running_instance(&ec2, None).await;
    let other = running_instance(&ec2, None).await;
    let assoc = ec2
        .associate_address()
        .allocation_id(&alloc)
        .instance_id(&vm)
        .send()
        .await
        .unwrap();
    let assoc_id = assoc.association_id().unwrap().to_owned();
    assert_eq!(assoc_id, alloc.replace("eipalloc-", "eipassoc-"));
    let d = ec2
        .describe_instances()
        .instance_ids(&vm)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.reservations()[0].instances()[0].public_ip_address(),
        Some(ip.as_str())
    );
    let listed = ec2
        .describe_addresses()
        .filters(Filter::builder().name("instance-id").values(&vm).build())
        .send()
        .await
        .unwrap();
    let got = &listed.addresses()[0];
    assert_eq!(
        (got.allocation_id(), got.association_id(), got.public_ip()),
        (
            Some(alloc.as_str()),
            Some(assoc_id.as_str()),
            Some(ip.as_str())
        )
    );
    assert!(got.private_ip_address().is_some());
    // Moving it needs AllowReassociation; releasing it, a disassociation first.
    let e = ec2
        .associate_address()
        .allocation_id(&alloc)
        .instance_id(&other)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Resource.AlreadyAssociated");
    ec2.associate_address()
        .public_ip(&ip)
        .instance_id(&other)
        .allow_reassociation(true)
        .send()
        .await
        .unwrap();
    let d = ec2
        .describe_addresses()
        .public_ips(&ip)
        .send()
        .await
        .unwrap();
    assert_eq!(d.addresses()[0].instance_id(), Some(other.as_str()));
    let e = ec2
        .release_address()
        .allocation_id(&alloc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidIPAddress.InUse");
    // Bob: none of it.
    assert!(bob
        .describe_addresses()
        .send()
        .await
        .unwrap()
        .addresses()
        .is_empty());
    let e = bob
        .release_address()
        .allocation_id(&alloc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAllocationID.NotFound");
    let e = bob
        .describe_addresses()
        .public_ips(&ip)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAddress.NotFound");
    let e = bob
        .disassociate_address()
        .association_id(&assoc_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAssociationID.NotFound");

    ec2.disassociate_address()
        .association_id(&assoc_id)
        .send()
        .await
        .unwrap();
    let e = ec2
        .disassociate_address()
        .association_id(&assoc_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAssociationID.NotFound");
    ec2.release_address()
        .allocation_id(&alloc)
        .send()
        .await
        .unwrap();
    let e = ec2
        .describe_addresses()
        .allocation_ids(&alloc)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidAllocationID.NotFound");
    let e = ec2
        .allocate_address()
        .domain(DomainType::Standard)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation");
    ec2.terminate_instances()
        .instance_ids(&vm)
        .instance_ids(&other)
        .send()
        .await
        .unwrap();
}

/// On a provider whose driver does not declare a family (the fake OpenNebula keeps no
/// public addresses, and its rules take no group peers), the actions answer
/// `UnsupportedOperation` and do nothing; DescribeAddresses answers the empty set, as
/// an account without addresses holds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_undeclared_operations_are_unsupported() {
    use aws_sdk_ec2::types::{IpPermission, UserIdGroupPair};
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(20)),
        ..FakeConfig::default()
    });
    let config = format!(
        r#"
        {}
        [[tenants]]
        name = "alice"
        access_key_id = "{ALICE_ID}"
        secret_access_key_env = "CMS_TEST_ALICE_SECRET"
        providers = ["*"]
        "#,
        opennebula_provider(&oned, "default_network = 0\n")
    );
    let mut env = env();
    env.push(opennebula_env(&oned));
    let s = Server::start(Options {
        config: Some(config),
        env,
        ..Options::default()
    });
    let ec2 = client(&s, "onprem", ALICE_ID, ALICE_SECRET).await;
    let e = ec2.allocate_address().send().await.unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation", "{}", message(&e));
    let e = ec2
        .release_address()
        .allocation_id("eipalloc-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation");
    let e = ec2
        .associate_address()
        .allocation_id("eipalloc-0123456789abcdef0")
        .instance_id("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation");
    let e = ec2
        .disassociate_address()
        .association_id("eipassoc-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation");
    assert!(ec2
        .describe_addresses()
        .send()
        .await
        .unwrap()
        .addresses()
        .is_empty());
    let attrs = ec2.describe_account_attributes().send().await.unwrap();
    let max = attrs
        .account_attributes()
        .iter()
        .find(|a| a.attribute_name() == Some("max-elastic-ips"))
        .unwrap();
    assert_eq!(max.attribute_values()[0].attribute_value(), Some("0"));

    // Groups it has; a rule naming a group it does not take.
    let a = ec2
        .create_security_group()
        .group_name("a")
        .description("a")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let b = ec2
        .create_security_group()
        .group_name("b")
        .description("b")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let e = ec2
        .authorize_security_group_ingress()
        .group_id(&a)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(1)
                .to_port(2)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&b).build())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UnsupportedOperation");
    let got = ec2
        .describe_security_groups()
        .group_ids(&a)
        .send()
        .await
        .unwrap();
    assert!(got.security_groups()[0].ip_permissions().is_empty());
    ec2.delete_security_group()
        .group_id(&a)
        .send()
        .await
        .unwrap();
    ec2.delete_security_group()
        .group_id(&b)
        .send()
        .await
        .unwrap();
}
