//! The server with an `ec2` provider in front of moto (a third-party EC2): what is done
//! through the native API is seen by an independent EC2 client (boto3, against moto).

mod common;

use std::path::PathBuf;
use std::process::Command;

use cms_driver_ec2::moto::{MotoServer, FLAVOR, IMAGE_ID, IMAGE_OWNER, REGION};
use common::*;
use serde_json::{json, Value};

const KEY: &str = "ec2-e2e-key-0123456789abcdef01234";

/// Runs a boto3 script against moto and parses what it prints as JSON.
fn boto3(moto: &MotoServer, script: &str) -> Value {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let out = Command::new(python)
        .arg("-c")
        .arg(format!(
            "import boto3, json\n\
             ec2 = boto3.client('ec2', region_name='{REGION}', endpoint_url='{}',\n\
                 aws_access_key_id='testing', aws_secret_access_key='testing')\n{script}",
            moto.endpoint()
        ))
        .output()
        .expect("run boto3 (installed by scripts/python-env)");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("boto3 printed JSON")
}

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
