//! The server with an `ec2` provider in front of moto (a third-party EC2): what is done
//! through the native API is seen by an independent EC2 client (boto3, against moto).
//! And the EC2 frontend's acceptance scenario with the AWS CLI (volumes, snapshots,
//! captured images, security groups, Elastic IPs: `Scenario` in
//! `tests/ec2_clients/cli_suite.py`) on that provider and on one in front of the fake
//! OpenNebula, the families a driver does not declare skipped with the reason printed
//! (after checking that the frontend refuses them with `UnsupportedOperation`).

mod common;

use std::process::Command;
use std::time::Duration;

use cms_driver_ec2::moto::{MotoServer, FLAVOR, IMAGE_ID, IMAGE_OWNER, REGION};
use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
use common::*;
use serde_json::{json, Value};

const KEY: &str = "ec2-e2e-key-0123456789abcdef01234";

fn describe(moto: &MotoServer, id: &str) -> Value {
    boto3(
        moto,
        &format!(
            "r = ec2.describe_instances(InstanceIds=['{id}'])\n\
             i = r['Reservations'][0]['Instances'][0]\n\
             print(json.dumps({{'image': i['ImageId'], 'type': i['InstanceType'],\n\
                 'state': i['State']['Name'],\n\
                 'tags': {{t['Key']: t['Value'] for t in i.get('Tags', [])}}}}))"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_made_through_cms_are_seen_by_boto3() {
    let moto = MotoServer::start().await;
    let config = format!(
        r#"
        [[providers]]
        name = "aws"
        driver = "ec2"
        region = "{REGION}"
        endpoint = "{}"
        access_key_id_env = "CMS_TEST_MOTO_KEY_ID"
        secret_access_key_env = "CMS_TEST_MOTO_SECRET"
        image_owners = ["{IMAGE_OWNER}"]
        "#,
        moto.endpoint()
    );
    let s = Server::start(Options {
        config: Some(config),
        env: vec![
            ("CMS_DEV_API_KEY".into(), KEY.into()),
            ("CMS_TEST_MOTO_KEY_ID".into(), "testing".into()),
            ("CMS_TEST_MOTO_SECRET".into(), "testing".into()),
        ],
        key: Some(KEY.into()),
        ..Options::default()
    });

    let providers: Value = s
        .get("/v1/providers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers["items"][0]["driver"], "ec2", "{providers}");

    let r = s
        .post("/v1/providers/aws/instances")
        .json(&json!({
            "name": "e2e-web",
            "image_id": IMAGE_ID,
            "flavor_id": FLAVOR,
            "tags": {"team": "cms", "env": "e2e"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let vm: Value = r.json().await.unwrap();
    let id = vm["id"].as_str().expect("instance id").to_owned();
    assert!(id.starts_with("i-"), "{vm}");

    // The same instance, as an EC2 client sees it.
    let seen = describe(&moto, &id);
    assert_eq!(seen["image"], IMAGE_ID);
    assert_eq!(seen["type"], FLAVOR);
    assert_eq!(seen["tags"]["team"], "cms", "{seen}");
    assert_eq!(seen["tags"]["env"], "e2e", "{seen}");
    assert_eq!(seen["tags"]["Name"], "e2e-web", "{seen}");

    // cms lists it, with the state EC2 reports.
    let listed: Value = s
        .get("/v1/providers/aws/instances?tag=team=cms")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["raw_state"], seen["state"]);

    // Terminated through cms, terminated for EC2.
    let r = s
        .delete(&format!("/v1/providers/aws/instances/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let seen = describe(&moto, &id);
    assert!(
        seen["state"] == "terminated" || seen["state"] == "shutting-down",
        "{seen}"
    );

    // An unknown instance is a 404 problem, classified from EC2's error code.
    let r = s
        .get("/v1/providers/aws/instances/i-0123456789abcdef0")
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
}

const ALICE_ID: &str = "AKIASCENARIOALICE001";
const ALICE_SECRET: &str = "alice-scenario-secret-0123456789abcdef";
const ALICE_KEY: &str = "alice-scenario-native-key-0123456789";
const BOB_ID: &str = "AKIASCENARIOBOB00001";
const BOB_SECRET: &str = "bob-scenario-secret-0123456789abcdefgh";

/// How long the scenario may run (the CLI's waiters poll every 15 s).
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);

/// The tenants of the scenario: alice (with a native API key, to read the provider's
/// capabilities) and bob, both on every provider.
fn scenario_tenants() -> String {
    format!(
        r#"
[[tenants]]
name = "alice"
api_key = "{ALICE_KEY}"
access_key_id = "{ALICE_ID}"
secret_access_key_env = "CMS_TEST_SCENARIO_ALICE_SECRET"
providers = ["*"]

[[tenants]]
name = "bob"
access_key_id = "{BOB_ID}"
secret_access_key_env = "CMS_TEST_SCENARIO_BOB_SECRET"
providers = ["*"]
"#
    )
}

fn scenario_env() -> Vec<(String, String)> {
    vec![
        ("CMS_TEST_SCENARIO_ALICE_SECRET".into(), ALICE_SECRET.into()),
        ("CMS_TEST_SCENARIO_BOB_SECRET".into(), BOB_SECRET.into()),
    ]
}

/// The families of the scenario that `caps` (a provider's capabilities, as the native
/// API shows them) do not declare, each with the flags it lacks.
fn unsupported(caps: &Value) -> Value {
    let families: [(&str, &[(&str, &str)]); 5] = [
        (
            "volumes",
            &[
                ("volumes", "create"),
                ("volumes", "list"),
                ("volumes", "attach"),
                ("volumes", "detach"),
                ("volumes", "delete"),
            ],
        ),
        (
            "snapshots",
            &[
                ("snapshots", "create"),
                ("snapshots", "list"),
                ("snapshots", "delete"),
            ],
        ),
        ("images", &[("images", "create"), ("images", "delete")]),
        (
            "groups",
            &[
                ("security_groups", "create"),
                ("security_groups", "list"),
                ("security_groups", "update_rules"),
                ("security_groups", "delete"),
                ("instances", "security_groups"),
            ],
        ),
        (
            "addresses",
            &[
                ("addresses", "allocate"),
                ("addresses", "list"),
                ("addresses", "associate"),
                ("addresses", "disassociate"),
                ("addresses", "release"),
            ],
        ),
    ];
    let mut out = serde_json::Map::new();
    for (family, flags) in families {
        let missing: Vec<String> = flags
            .iter()
            .filter(|(group, flag)| caps[group][flag] != true)
            .map(|(group, flag)| format!("{group}.{flag}"))
            .collect();
        if !missing.is_empty() {
            out.insert(
                family.into(),
                format!(
                    "the provider's driver does not declare {}",
                    missing.join(", ")
                )
                .into(),
            );
        }
    }
    Value::Object(out)
}

/// Runs the CLI scenario against provider `region` of `s`, with instance type `itype`.
async fn cli_scenario(s: &Server, region: &str, itype: &str) {
    let providers: Value = s
        .client
        .get(s.url("/v1/providers"))
        .bearer_auth(ALICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = providers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == region)
        .unwrap_or_else(|| panic!("no provider {region}: {providers}"));
    let skip = unsupported(&p["capabilities"]);
    eprintln!("{region}: the scenario skips {skip}");
    let suite = format!(
        "{}/tests/ec2_clients/cli_suite.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut cmd = Command::new(python_env().join("python"));
    cmd.arg(&suite).arg("-v").arg("Scenario");
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AWS_")) {
            cmd.env_remove(&k);
        }
    }
    let nowhere = std::env::temp_dir().join(format!("cms-no-aws-config-{}", std::process::id()));
    cmd.env("AWS_CONFIG_FILE", nowhere.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("CMS_EC2_ENDPOINT", format!("{}/ec2", s.base))
        .env("CMS_EC2_REGION", region)
        .env("CMS_EC2_OTHER_REGION", region)
        .env("CMS_EC2_INSTANCE_TYPE", itype)
        .env("CMS_SCENARIO_UNSUPPORTED", skip.to_string())
        .env("CMS_ALICE_ID", ALICE_ID)
        .env("CMS_ALICE_SECRET", ALICE_SECRET)
        .env("CMS_BOB_ID", BOB_ID)
        .env("CMS_BOB_SECRET", BOB_SECRET);
    let run = run_in_group(cmd, SCENARIO_LIMIT);
    eprintln!("{}", run.stderr);
    run.assert_passed(
        &format!("cli_suite.py Scenario on {region}"),
        SCENARIO_LIMIT,
        s,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_scenario_over_moto() {
    let moto = MotoServer::start().await;
    let config = format!(
        r#"
        [[providers]]
        name = "aws"
        driver = "ec2"
        region = "{REGION}"
        endpoint = "{}"
        access_key_id_env = "CMS_TEST_MOTO_KEY_ID"
        secret_access_key_env = "CMS_TEST_MOTO_SECRET"
        image_owners = ["{IMAGE_OWNER}"]
        {}
        "#,
        moto.endpoint(),
        scenario_tenants()
    );
    let mut env = scenario_env();
    env.push(("CMS_TEST_MOTO_KEY_ID".into(), "testing".into()));
    env.push(("CMS_TEST_MOTO_SECRET".into(), "testing".into()));
    let s = Server::start(Options {
        config: Some(config),
        env,
        ..Options::default()
    });
    cli_scenario(&s, "aws", FLAVOR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_scenario_over_opennebula() {
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(40)),
        ..FakeConfig::default()
    });
    // OpenNebula puts VMs in security groups through their NICs: instances launched
    // without a subnet get one on the default network, as EC2's go to the default VPC.
    let config = format!(
        "{}{}",
        opennebula_provider(&oned, "default_network = 0\n"),
        scenario_tenants()
    );
    let mut env = scenario_env();
    env.push(opennebula_env(&oned));
    let s = Server::start(Options {
        config: Some(config),
        env,
        ..Options::default()
    });
    cli_scenario(&s, "onprem", "small").await;
}
