//! The fake OpenStack against openstacksdk (pinned in scripts/requirements-test.txt,
//! installed into `.venv` by `scripts/python-env`): a client no one here wrote must
//! discover the services, authenticate, page through Nova, Glance and Neutron, and take
//! a server through its life. The Python side is tests/openstacksdk_check.py.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cms_driver_openstack::fake::{FakeConfig, FakeDelays, FakeOpenStack};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_lists_and_drives_the_fake() {
    let python = tokio::task::spawn_blocking(cms_driver_openstack::testbed::python)
        .await
        .unwrap();
    let cloud = FakeOpenStack::start(FakeConfig {
        servers: 7,
        max_limit: 3,
        // Long enough a reboot for the check to see REBOOT on its next request.
        delays: FakeDelays {
            reboot: Duration::from_secs(1),
            ..FakeDelays::uniform(Duration::from_millis(100))
        },
        ..FakeConfig::default()
    });
    let names = |list: &[&str], id: &dyn Fn(&str) -> String| -> BTreeMap<String, String> {
        list.iter().map(|n| (n.to_string(), id(n))).collect()
    };
    let expected = json!({
        "server_ids": cloud.server_ids(),
        "images": names(&["cirros", "ubuntu-24.04"], &|n| cloud.image_id(n)),
        "flavors": names(
            &["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"],
            &|n| cloud.flavor_id(n)
        ),
        "networks": names(&["private", "public"], &|n| cloud.network_id(n)),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openstacksdk_check.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("CMS_FAKE_AUTH_URL", cloud.auth_url())
        .env("CMS_FAKE_USERNAME", cloud.username())
        .env("CMS_FAKE_PASSWORD", cloud.password())
        .env("CMS_FAKE_PROJECT", cloud.project_name())
        .env("CMS_FAKE_EXPECTED", expected.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let run = async {
        let mut summary = None;
        while let Some(line) = stdout.next_line().await.expect("read the check's output") {
            if line == "paused" {
                // Between two pages of servers: every token the check holds dies.
                cloud.expire_tokens();
                stdin.write_all(b"go\n").await.expect("write to the check");
                stdin.flush().await.expect("write to the check");
            } else {
                summary = Some(line);
            }
        }
        (summary, child.wait().await.expect("the check ends"))
    };
    let (summary, status) = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the openstacksdk check took over two minutes");
    let stderr = errors.await.unwrap_or_default();
    assert!(
        status.success(),
        "the openstacksdk check failed ({status}):\n{stderr}"
    );
    let summary: Value =
        serde_json::from_str(summary.as_deref().unwrap_or("")).expect("the check's JSON line");
    assert_eq!(summary["servers"], 7);
    assert_eq!(summary["compute_microversion"], "2.96");
    assert!(summary["conflict"]
        .as_str()
        .unwrap_or("")
        .contains("while it is in vm_state active"));

    // What the fake saw of the first listing: a page, a 401 once the tokens expired,
    // the same page again with a new token, the last page.
    let seen = cloud.requests();
    let pages: Vec<_> = seen
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path.starts_with("/compute/v2.1/servers/detail")
                && !r.path.contains("name=")
                && !r.path.contains("tags=")
        })
        .take(4)
        .collect();
    let statuses: Vec<u16> = pages.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200, 200], "{pages:#?}");
    assert_eq!(pages[1].path, pages[2].path);
    assert!(pages[1].path.contains("marker="));
    let tokens = seen
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/auth/tokens") && r.status == 201)
        .count();
    assert!(tokens >= 2, "openstacksdk did not authenticate again");
    // The server calls at the negotiated microversion (openstacksdk sends none for
    // metadata).
    let servers: Vec<_> = seen
        .iter()
        .filter(|r| r.path.starts_with("/compute/v2.1/servers") && !r.path.contains("/metadata"))
        .collect();
    assert!(
        servers
            .iter()
            .all(|r| r.openstack_api_version.as_deref() == Some("compute 2.96")),
        "{servers:#?}"
    );
    assert_eq!(cloud.server_count(), 7);
}
