//! The CIMI frontend driven by a client written from the DMTF CIMI standard (DSP0263)
//! alone: `tests/cimi/client_suite.py`, Python's standard library and nothing else.
//!
//! The test starts the real `cms-server` with three providers: `local` (the memory
//! cloud, whose transitions take 300 ms, long enough for a client to see a Job running
//! and a machine between states), `onprem` (OpenNebula, the fake oned) and `aws` (EC2,
//! moto), and two tenants with API keys, alice and bob. The suite runs from each
//! provider's entry point (`/cimi/cloudEntryPoint`, the tenant's first provider, then
//! `/cimi/onprem/cloudEntryPoint` and `/cimi/aws/cloudEntryPoint`), once in JSON and
//! once in XML, with HTTP Basic authentication, and proves that a CIMI client can:
//!
//! - discover everything from the cloud entry point: it never builds a URL, and
//!   every URL it requests came from an `href`, an `id`, a `Location` or a
//!   `CIMI-Job-URI` header of an earlier answer (only a query string is added to a
//!   collection's URL for `$filter`, `$first` and `$last`);
//! - read every collection the entry point references (`count` matches the members);
//! - be refused with a Basic challenge without credentials;
//! - create a Credential from an OpenSSH key, a MachineTemplate of references, and
//!   machines both by reference to that template and by value, following each Job
//!   until the machine is STARTED;
//! - stop, start and restart a machine through the operations it offers, which
//!   change with its state;
//! - not see or read another tenant's machine;
//! - filter and page a collection, and be told where a malformed filter is wrong;
//! - delete machines, templates and credentials through their `delete` operations.
//!
//! The suite's output is printed when it fails. It runs in its own process group,
//! killed whole if it outlives its time limit.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const ALICE_KEY: &str = "alice-cimi-key-0123456789abcdef";
const BOB_KEY: &str = "bob-cimi-key-abcdef0123456789ab";

/// The providers: the memory cloud with 300 ms transitions, then OpenNebula and EC2
/// (appended by the test, which knows their endpoints); alice and bob may use all.
const CONFIG: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 300
stop_delay_ms = 300
start_delay_ms = 300
reboot_delay_ms = 300
terminate_delay_ms = 300

[[tenants]]
name = "alice"
api_key = "alice-cimi-key-0123456789abcdef"
providers = ["*"]

[[tenants]]
name = "bob"
api_key = "bob-cimi-key-abcdef0123456789ab"
providers = ["*"]
"#;

/// How long the suite may run before it is killed.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn cimi_client_suite() {
    use cms_driver_ec2::moto::{MotoServer, IMAGE_OWNER, REGION};
    use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned};
    let moto = MotoServer::start().await;
    let oned = FakeOned::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(200)),
        ..FakeConfig::default()
    });
    let config = format!(
        r#"{CONFIG}
{one}
[[providers]]
name = "aws"
driver = "ec2"
region = "{REGION}"
endpoint = "{endpoint}"
access_key_id_env = "CMS_TEST_MOTO_KEY_ID"
secret_access_key_env = "CMS_TEST_MOTO_SECRET"
image_owners = ["{IMAGE_OWNER}"]
"#,
        one = opennebula_provider(&oned, ""),
        endpoint = moto.endpoint(),
    );
    let s = Server::start(Options {
        config: Some(config),
        env: vec![
            opennebula_env(&oned),
            ("CMS_TEST_MOTO_KEY_ID".into(), "testing".into()),
            ("CMS_TEST_MOTO_SECRET".into(), "testing".into()),
        ],
        ..Options::default()
    });
    let entries = [
        format!("{}/cimi/cloudEntryPoint", s.base),
        format!("{}/cimi/onprem/cloudEntryPoint", s.base),
        format!("{}/cimi/aws/cloudEntryPoint", s.base),
    ];
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cimi/client_suite.py");
    let mut cmd = Command::new(python_env().join("python"));
    cmd.arg(script)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("CMS_CIMI_ENTRY", entries.join(" "))
        .env("CMS_ALICE_TENANT", "alice")
        .env("CMS_ALICE_KEY", ALICE_KEY)
        .env("CMS_BOB_TENANT", "bob")
        .env("CMS_BOB_KEY", BOB_KEY);
    let run = tokio::task::spawn_blocking(move || run_in_group(cmd, SUITE_LIMIT))
        .await
        .unwrap();
    run.assert_passed("tests/cimi/client_suite.py", SUITE_LIMIT, &s);
}
