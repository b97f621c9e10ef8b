//! The server with an `openstack` provider in front of real OpenStack (Keystone, Nova
//! with its fake virt driver, Glance, Neutron: `scripts/openstack`): an instance made
//! through the native API and one made by boto3 through `/ec2` are seen by OpenStack's
//! own clients (`openstack server show`, openstacksdk) with the same image, flavor,
//! metadata and state, and so are their stop, start and delete.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use cms_driver_openstack::testbed;
use common::*;
use serde_json::{json, Value};

const KEY: &str = "os-e2e-key-0123456789abcdef0123456";
const ACCESS_KEY_ID: &str = "AKIACMSOPENSTACK0001";
const SECRET: &str = "os-e2e-secret-0123456789abcdefghijklmn";

fn config() -> String {
    format!(
        r#"
[[providers]]
name = "os"
driver = "openstack"
cloud = "{}"
network = "{}"
timeout_ms = 120000

[[tenants]]
name = "demo"
api_key = "{KEY}"
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key_env = "CMS_TEST_OS_SECRET"
providers = ["os"]
"#,
        testbed::CLOUD,
        testbed::NETWORK
    )
}

/// What `openstack server show` and openstacksdk say of a server.
fn look(id: &str) -> Value {
    let clouds = testbed::clouds_yaml();
    let out = Command::new(testbed::venv_bin().join("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openstack/look.py"
        ))
        .arg(id)
        .env("OS_CLIENT_CONFIG_FILE", clouds)
        .env("OS_CLOUD", testbed::CLOUD)
        .output()
        .expect("run look.py with .venv-openstack's python");
    assert!(
        out.status.success(),
        "look.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("look.py printed JSON")
}

/// Waits until both clients see `status` (or, for `None`, no server).
fn wait_seen(id: &str, status: Option<&str>) -> Value {
    let start = Instant::now();
    loop {
        let seen = look(id);
        let ok = |c: &Value| match status {
            Some(s) => c["status"] == s,
            None => c["missing"] == true,
        };
        if ok(&seen["osc"]) && ok(&seen["sdk"]) {
            return seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "OpenStack's clients never saw {status:?}: {seen}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn boto3(s: &Server, script: &str) -> Value {
    let out = Command::new(python_env().join("python"))
        .arg("-c")
        .arg(format!(
            "import boto3, json\n\
             ec2 = boto3.client('ec2', region_name='os', endpoint_url='{}/ec2',\n\
                 aws_access_key_id='{ACCESS_KEY_ID}', aws_secret_access_key='{SECRET}')\n\
             {script}",
            s.base
        ))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run boto3 (installed by scripts/python-env)");
    assert!(
        out.status.success(),
        "boto3 failed: {}\n---- cms-server ----\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&s.stderr.text(), 40)
    );
    serde_json::from_slice(&out.stdout).expect("boto3 printed JSON")
}

fn check_same(
    seen: &Value,
    image: &str,
    flavor_id: &str,
    flavor_name: &str,
    tags: &[(&str, &str)],
) {
    for client in ["osc", "sdk"] {
        let c = &seen[client];
        assert_eq!(c["image"], image, "{client}: {seen}");
        for (k, v) in tags {
            assert_eq!(c["properties"][k], *v, "{client}: {seen}");
        }
    }
    assert_eq!(seen["osc"]["flavor"], flavor_id, "{seen}");
    assert_eq!(seen["sdk"]["flavor"], flavor_name, "{seen}");
}

/// The id of the `kind` (images, flavors) named `name`, as the native API lists them.
async fn named_id(s: &Server, kind: &str, name: &str) -> String {
    let listed: Value = s
        .get(&format!("/v1/providers/os/{kind}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}: {listed}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_api_and_boto3_over_real_openstack() {
    let clouds = testbed::clouds_yaml();
    let s = Server::start(Options {
        config: Some(config()),
        env: vec![
            (
                "OS_CLIENT_CONFIG_FILE".into(),
                clouds.to_string_lossy().into_owned(),
            ),
            ("CMS_TEST_OS_SECRET".into(), SECRET.into()),
        ],
        key: Some(KEY.into()),
        ..Options::default()
    });

    // The catalogue through the native API (images and flavors paged by 3 in
    // Glance and Nova, in one answer here).
    let image = named_id(&s, "images", testbed::IMAGE).await;
    let flavor = named_id(&s, "flavors", testbed::FLAVOR).await;

    // An instance made through the native API.
    let r = s
        .post("/v1/providers/os/instances")
        .header("Idempotency-Key", "os-e2e-1")
        .json(
            &json!({"name": "os-native", "image_id": image, "flavor_id": flavor,
                      "tags": {"app": "web", "tier": "front"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let vm: Value = r.json().await.unwrap();
    let id = vm["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/providers/os/instances/{id}");
    let running = wait_state(&s, &path, "running").await;
    assert_eq!(running["raw_state"], "ACTIVE", "{running}");
    let seen = wait_seen(&id, Some("ACTIVE"));
    check_same(
        &seen,
        &image,
        &flavor,
        testbed::FLAVOR,
        &[("app", "web"), ("tier", "front")],
    );
    assert_eq!(seen["osc"]["name"], "os-native");
    // The owner is kept with the server, where OpenStack's clients see it too.
    assert_eq!(seen["sdk"]["properties"]["cms:owner"], "demo", "{seen}");

    let r = s.post(&format!("{path}/stop")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_state(&s, &path, "stopped").await;
    wait_seen(&id, Some("SHUTOFF"));
    let r = s.post(&format!("{path}/stop")).send().await.unwrap();
    expect_problem(r, 409, "invalid_state").await;
    let r = s.post(&format!("{path}/start")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_state(&s, &path, "running").await;
    wait_seen(&id, Some("ACTIVE"));

    // boto3 through the EC2 frontend, on the same cloud (instance types are flavor ids).
    let launched = boto3(
        &s,
        &format!(
            "imgs = ec2.describe_images(Filters=[{{'Name': 'name', 'Values': ['{}']}}])['Images']\n\
             r = ec2.run_instances(ImageId=imgs[0]['ImageId'], InstanceType='{flavor}', MinCount=1, MaxCount=1,\n\
                 TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'Name', 'Value': 'os-boto3'}}, {{'Key': 'env', 'Value': 'e2e'}}]}}])\n\
             iid = r['Instances'][0]['InstanceId']\n\
             ec2.get_waiter('instance_running').wait(InstanceIds=[iid], WaiterConfig={{'Delay': 1, 'MaxAttempts': 120}})\n\
             print(json.dumps({{'iid': iid}}))",
            testbed::IMAGE,
        ),
    );
    let iid = launched["iid"].as_str().unwrap().to_owned();
    let listed: Value = s
        .get("/v1/providers/os/instances?tag=env=e2e")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "os-boto3")
        .unwrap_or_else(|| panic!("the boto3 instance is not listed natively: {listed}"))
        .clone();
    let nova_id = made["id"].as_str().unwrap().to_owned();
    let seen = wait_seen(&nova_id, Some("ACTIVE"));
    check_same(&seen, &image, &flavor, testbed::FLAVOR, &[("env", "e2e")]);
    assert_eq!(seen["sdk"]["name"], "os-boto3", "{seen}");

    boto3(
        &s,
        &format!(
            "ec2.stop_instances(InstanceIds=['{iid}'])\n\
             ec2.get_waiter('instance_stopped').wait(InstanceIds=['{iid}'], WaiterConfig={{'Delay': 1, 'MaxAttempts': 120}})\n\
             print('{{}}')"
        ),
    );
    wait_seen(&nova_id, Some("SHUTOFF"));
    boto3(
        &s,
        &format!(
            "ec2.terminate_instances(InstanceIds=['{iid}'])\n\
             ec2.get_waiter('instance_terminated').wait(InstanceIds=['{iid}'], WaiterConfig={{'Delay': 1, 'MaxAttempts': 120}})\n\
             print('{{}}')"
        ),
    );
    wait_seen(&nova_id, None);

    let r = s.delete(&path).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_state(&s, &path, "terminated").await;
    wait_seen(&id, None);
}
