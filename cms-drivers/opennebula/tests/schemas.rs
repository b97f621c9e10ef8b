//! Every document the fake oned serves validates against OpenNebula's official XSDs
//! (`xmllint --schema`), so the driver is tested against what a real oned sends.
//!
//! The schemas live in the reference data (`../shared/reference/opennebula/xsd`); the
//! test skips, saying so, where it is absent. `xmllint` comes from Debian's
//! `libxml2-utils`, which the test installs when it is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cms_core::{Driver, InstanceSpec, InstanceState, KeyPairSpec, NetworkSpec, TagChanges};
use cms_driver_opennebula::client::OneClient;
use cms_driver_opennebula::xmlrpc::{self, Value};

use common::*;

/// `xmllint`, installed with apt-get when missing (once per test binary).
fn xmllint() -> PathBuf {
    static XMLLINT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = XMLLINT.get_or_init(|| {
        let works = || {
            Command::new("xmllint")
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if works() {
            return Ok(PathBuf::from("xmllint"));
        }
        eprintln!("xmllint is missing: installing libxml2-utils with apt-get");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "libxml2-utils"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            install();
        }
        if works() {
            Ok(PathBuf::from("xmllint"))
        } else {
            Err(
                "xmllint is missing and `apt-get install -y libxml2-utils` did not install it"
                    .into(),
            )
        }
    });
    match found {
        Ok(p) => p.clone(),
        Err(why) => panic!("{why}"),
    }
}

/// The document with OpenNebula's namespace on its root, as the XSDs expect (oned
/// leaves it out: "the included XML samples are not actual responses … as it does not
/// include the headers").
fn with_namespace(doc: &str) -> String {
    let end = doc.find('>').expect("a root element");
    let (head, tail) = doc.split_at(end);
    let head = head.trim_end_matches('/');
    let slash = if doc[..end].ends_with('/') { "/" } else { "" };
    format!("{head} xmlns=\"http://opennebula.org/XMLSchema\"{slash}{tail}")
}

/// Validates `docs` against `xsd` with one xmllint run; fails naming each invalid one.
fn validate(reference: &Path, xsd: &str, docs: &[(String, String)]) {
    assert!(!docs.is_empty(), "no document to validate against {xsd}");
    for (name, body) in docs {
        let name = format!("ok-{}-{name}", xsd.trim_end_matches(".xsd"));
        fuzz_seed("opennebula_documents", &name, body.as_bytes());
        let response = xmlrpc::encode_response(&Value::Array(vec![
            Value::Bool(true),
            Value::Str(body.clone()),
            Value::Int(0),
        ]));
        fuzz_seed("opennebula_xmlrpc", &name, response.as_bytes());
    }
    let dir = temp_dir("xsd");
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, (label, body))| {
            let file = dir.join(format!("{i}-{}.xml", label.replace(['/', ' '], "_")));
            std::fs::write(&file, with_namespace(body)).expect("write a document");
            file
        })
        .collect();
    let schema = reference.join("opennebula/xsd").join(xsd);
    let out = Command::new(xmllint())
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .args(&files)
        .output()
        .expect("run xmllint");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "documents do not validate against {xsd}:\n{stderr}\n{}",
        docs.iter()
            .map(|(l, d)| format!("--- {l}\n{d}\n"))
            .collect::<String>()
    );
    assert_eq!(
        stderr.matches(" validates").count(),
        docs.len(),
        "xmllint did not validate every document: {stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether one document validates (for the check that the harness can fail).
fn validates(reference: &Path, xsd: &str, doc: &str) -> bool {
    let dir = temp_dir("xsd-neg");
    let file = dir.join("doc.xml");
    std::fs::write(&file, with_namespace(doc)).expect("write a document");
    let ok = Command::new(xmllint())
        .arg("--noout")
        .arg("--schema")
        .arg(reference.join("opennebula/xsd").join(xsd))
        .arg(&file)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let _ = std::fs::remove_dir_all(dir);
    ok
}

async fn body(client: &OneClient, method: &str, args: &[Value]) -> String {
    match client.call(method, args).await {
        Ok(Value::Str(s)) => s,
        other => panic!("{method}: expected a document, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_validates_against_the_official_schemas() {
    let Some(reference) = reference_dir() else {
        return;
    };
    xmllint();
    let (oned, driver) = start(quick_config());
    let client = driver.client().clone();

    // VMs in several states and shapes.
    driver
        .create_key_pair(&KeyPairSpec {
            name: "laptop".into(),
            public_key: None,
        })
        .await
        .unwrap();
    let running = driver
        .create_instance(&InstanceSpec::new("image:0", "small").name("running"))
        .await
        .unwrap();
    let rich = driver
        .create_instance(&InstanceSpec {
            name: "rich".into(),
            image_id: "template:0".into(),
            flavor_id: "large".into(),
            network_ids: vec!["0".into(), "1".into()],
            key_name: Some("laptop".into()),
            user_data: Some("#cloud-config\nruncmd: [\"echo <&> ]]>\"]\n".into()),
            tags: [("team".to_owned(), "<a&b> ]]> \"q\"".to_owned())].into(),
            client_token: Some("schema-token".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = driver
        .create_instance(&InstanceSpec {
            location_id: Some("100".into()),
            ..InstanceSpec::new("image:3", "small").name("never-placed")
        })
        .await
        .unwrap();
    let stopped = driver
        .create_instance(&InstanceSpec::new("image:1", "small").name("stopped"))
        .await
        .unwrap();
    let done = driver
        .create_instance(&InstanceSpec::new("image:0", "small").name("done"))
        .await
        .unwrap();
    for id in [&running.id, &rich.id, &stopped.id, &done.id] {
        wait(&driver, id, InstanceState::Running).await;
    }
    // Tags changed after the create, with characters XML must escape.
    driver
        .update_instance_tags(
            &rich.id,
            &TagChanges::new()
                .set_tag("team", "<b&c> ]]> 'q'")
                .set_tag("added", "x"),
        )
        .await
        .unwrap();
    driver.stop_instance(&stopped.id).await.unwrap();
    driver.reboot_instance(&running.id).await.unwrap();
    wait(&driver, &stopped.id, InstanceState::Stopped).await;
    driver.delete_instance(&done.id).await.unwrap();
    wait(&driver, &done.id, InstanceState::Terminated).await;
    driver
        .update_instance_tags(&done.id, &TagChanges::new().set_tag("after", "done"))
        .await
        .unwrap();
    let net = driver
        .create_network(&NetworkSpec {
            name: "schema-net".into(),
            cidr: "10.9.0.0/29".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let on_net = driver
        .create_instance(&InstanceSpec {
            network_ids: vec![net.id.clone()],
            ..InstanceSpec::new("image:0", "small").name("on-net")
        })
        .await
        .unwrap();

    let mut vms = Vec::new();
    for i in [&running, &rich, &pending, &stopped, &done, &on_net] {
        let id: i64 = i.id.as_str().parse().unwrap();
        vms.push((
            format!("vm {} {}", i.name, id),
            body(&client, "one.vm.info", &[Value::Int(id)]).await,
        ));
    }
    validate(&reference, "vm.xsd", &vms);
    // The harness can fail: without its STATE, or with an element the schema does not
    // know in TEMPLATE, a VM document is refused.
    let no_state = vms[0]
        .1
        .replacen("<STATE>", "<STATUS>", 1)
        .replacen("</STATE>", "</STATUS>", 1);
    assert!(!validates(&reference, "vm.xsd", &no_state));
    let stray = vms[0]
        .1
        .replacen("<TEMPLATE>", "<TEMPLATE><CMS_TAGS>x</CMS_TAGS>", 1);
    assert!(!validates(&reference, "vm.xsd", &stray));

    let pool = |filter: i64, start: i64, end: i64, state: i64| {
        vec![
            Value::Int(filter),
            Value::Int(start),
            Value::Int(end),
            Value::Int(state),
        ]
    };
    validate(
        &reference,
        "vm_pool.xsd",
        &[
            (
                "all".into(),
                body(&client, "one.vmpool.info", &pool(-2, -1, -1, -2)).await,
            ),
            (
                "page".into(),
                body(&client, "one.vmpool.info", &pool(-3, 1, -2, -1)).await,
            ),
            (
                "empty".into(),
                body(&client, "one.vmpool.info", &pool(-3, 500, -10, -1)).await,
            ),
        ],
    );
    let three = [Value::Int(-2), Value::Int(-1), Value::Int(-1)];
    validate(
        &reference,
        "image_pool.xsd",
        &[(
            "images".into(),
            body(&client, "one.imagepool.info", &three).await,
        )],
    );
    validate(
        &reference,
        "image.xsd",
        &[
            (
                "used".into(),
                body(&client, "one.image.info", &[Value::Int(0)]).await,
            ),
            (
                "datablock".into(),
                body(&client, "one.image.info", &[Value::Int(2)]).await,
            ),
        ],
    );
    validate(
        &reference,
        "vmtemplate_pool.xsd",
        &[(
            "templates".into(),
            body(&client, "one.templatepool.info", &three).await,
        )],
    );
    validate(
        &reference,
        "vmtemplate.xsd",
        &[(
            "template 0".into(),
            body(
                &client,
                "one.template.info",
                &[Value::Int(0), Value::Bool(false), Value::Bool(false)],
            )
            .await,
        )],
    );
    validate(
        &reference,
        "vnet_pool.xsd",
        &[(
            "vnets".into(),
            body(&client, "one.vnpool.info", &three).await,
        )],
    );
    let net_id: i64 = net.id.as_str().parse().unwrap();
    validate(
        &reference,
        "vnet.xsd",
        &[
            (
                "public".into(),
                body(&client, "one.vn.info", &[Value::Int(0)]).await,
            ),
            (
                "private".into(),
                body(&client, "one.vn.info", &[Value::Int(1)]).await,
            ),
            (
                "created".into(),
                body(&client, "one.vn.info", &[Value::Int(net_id)]).await,
            ),
        ],
    );
    validate(
        &reference,
        "host_pool.xsd",
        &[(
            "hosts".into(),
            body(&client, "one.hostpool.info", &[]).await,
        )],
    );
    validate(
        &reference,
        "cluster_pool.xsd",
        &[(
            "clusters".into(),
            body(&client, "one.clusterpool.info", &[]).await,
        )],
    );
    validate(
        &reference,
        "cluster.xsd",
        &[(
            "cluster 100".into(),
            body(&client, "one.cluster.info", &[Value::Int(100)]).await,
        )],
    );
    validate(
        &reference,
        "user.xsd",
        &[(
            "user".into(),
            body(&client, "one.user.info", &[Value::Int(-1)]).await,
        )],
    );
    drop(oned);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
