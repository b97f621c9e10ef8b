//! The EC2 frontend driven by real EC2 clients no one here wrote: boto3 (client and
//! resource APIs), the AWS CLI (v1) and Apache Libcloud from the pinned Python
//! environment of `scripts/python-env`, and the AWS SDK for JavaScript v3 from
//! `scripts/node-env`.
//!
//! Each test starts the real `cms-server` with two memory providers (`local`, and
//! `other` that only alice may use; the SDK and state-table suites also get `slow`,
//! alice's, whose transitions take 4 s) and two tenants with SigV4 keys, then runs
//! one suite in `tests/ec2_clients/` against `http://127.0.0.1:PORT/ec2`:
//!
//! - `boto3_suite.py`: the life cycle with boto3's own waiters and paginators, every
//!   filter, tags, key pairs, idempotent launches, the catalogue actions, every way
//!   authentication fails (and that nothing is done when it does), malformed requests
//!   and tenant isolation;
//! - `cli_suite.py`: `aws ec2 …` with `--endpoint-url`/`--region`, JSON, text and table
//!   output, `aws ec2 wait`, auto-pagination and the errors the CLI prints;
//! - `libcloud_suite.py`: Libcloud's `EC2NodeDriver` as the README configures it
//!   (sizes, images, locations, nodes with key, user data and metadata, listing by
//!   ids and filters, `wait_until_running`, reboot/stop/start/destroy, every key pair
//!   helper, tags);
//! - `boto3_resource_suite.py`: `boto3.resource("ec2")`: `create_instances`, the
//!   resource waiters, `reboot()` then `stop()`, every served filter through
//!   `instances.filter`, batch actions, `describe_attribute`, key pairs, images;
//! - `js/sdk_suite.mjs`: `@aws-sdk/client-ec2`: every instance waiter, the
//!   paginator, state changes in every order, images, key pairs of both types and
//!   formats, tags;
//! - `state_table_suite.py`: every state-changing action in every instance state,
//!   against AWS's table (the frontend's documentation);
//! - `rate_limits_suite.py`: a tenant over its rate limit gets `RequestLimitExceeded`,
//!   which boto3's standard retry mode backs off from and retries.
//!
//! A suite's output is printed when it fails. The suites read the endpoint and keys
//! from `CMS_EC2_*`, `CMS_ALICE_*` and `CMS_BOB_*`; every other `AWS_*` variable is
//! removed so that nothing configured on the machine leaks in. The suite runs in its
//! own process group, killed whole if it outlives its time limit.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const ALICE_ID: &str = "AKIACMSCLIENTSALICE01";
const ALICE_SECRET: &str = "alice-clients-secret-0123456789abcdefgh";
const BOB_ID: &str = "AKIACMSCLIENTSBOB0001";
const BOB_SECRET: &str = "bob-clients-secret-0123456789abcdefghijk";

/// Two memory providers with short delays (long enough that a client sees `pending`
/// and `stopping` before `running` and `stopped`, a volume `creating` and
/// `attaching`, a snapshot and a captured image `pending`); alice may use both, bob
/// `local`.
const CONFIG: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 300
stop_delay_ms = 300
start_delay_ms = 300
reboot_delay_ms = 300
terminate_delay_ms = 300
volume_create_delay_ms = 300
volume_delete_delay_ms = 200
attach_delay_ms = 300
detach_delay_ms = 300
snapshot_delay_ms = 300
image_delay_ms = 300

[[providers]]
name = "other"
driver = "memory"
boot_delay_ms = 300
stop_delay_ms = 300
start_delay_ms = 300
reboot_delay_ms = 300
terminate_delay_ms = 300
volume_create_delay_ms = 300
volume_delete_delay_ms = 200
attach_delay_ms = 300
detach_delay_ms = 300
snapshot_delay_ms = 300
image_delay_ms = 300

[[tenants]]
name = "alice"
access_key_id = "AKIACMSCLIENTSALICE01"
secret_access_key_env = "CMS_TEST_CLIENTS_ALICE_SECRET"
providers = ["local", "other"]

[[tenants]]
name = "bob"
access_key_id = "AKIACMSCLIENTSBOB0001"
secret_access_key_env = "CMS_TEST_CLIENTS_BOB_SECRET"
providers = ["local"]
"#;

/// A third provider for the suites that act on instances while they change state:
/// every transition takes 4 s.
const SLOW: &str = r#"
[[providers]]
name = "slow"
driver = "memory"
boot_delay_ms = 4000
stop_delay_ms = 4000
start_delay_ms = 4000
reboot_delay_ms = 4000
terminate_delay_ms = 4000
volume_create_delay_ms = 4000
volume_delete_delay_ms = 4000
attach_delay_ms = 4000
detach_delay_ms = 4000
snapshot_delay_ms = 4000
image_delay_ms = 4000
"#;

/// How long a suite may run before it is killed.
const SUITE_LIMIT: Duration = Duration::from_secs(180);

fn start_server() -> Server {
    start_server_with(CONFIG.to_owned())
}

/// The server with the `slow` provider too (alice's).
fn start_slow_server() -> Server {
    let config = CONFIG.replace(
        r#"providers = ["local", "other"]"#,
        r#"providers = ["local", "other", "slow"]"#,
    );
    start_server_with(format!("{SLOW}{config}"))
}

fn start_server_with(config: String) -> Server {
    Server::start(Options {
        config: Some(config),
        env: vec![
            ("CMS_TEST_CLIENTS_ALICE_SECRET".into(), ALICE_SECRET.into()),
            ("CMS_TEST_CLIENTS_BOB_SECRET".into(), BOB_SECRET.into()),
        ],
        ..Options::default()
    })
}

/// Runs `tests/ec2_clients/{suite}` against `s` (see [`run_in_group`]).
fn run_suite(s: &Server, suite: &str) -> Run {
    let path = format!("{}/tests/ec2_clients/{suite}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(python_env().join("python"));
    cmd.arg(&path).arg("-v");
    run_client(cmd, s)
}

/// Runs the JavaScript suite `tests/ec2_clients/js/{suite}` with node's test runner.
fn run_js_suite(s: &Server, suite: &str) -> Run {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ec2_clients/js"));
    let mut cmd = Command::new(node_env());
    cmd.current_dir(dir)
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("--test-concurrency=1")
        .arg(dir.join(suite))
        .env("AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED", "true")
        .env("NO_COLOR", "1");
    run_client(cmd, s)
}

/// Runs a client with the suites' environment and nothing of the machine's AWS one.
fn run_client(mut cmd: Command, s: &Server) -> Run {
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
        .env("CMS_EC2_REGION", "local")
        .env("CMS_EC2_OTHER_REGION", "other")
        .env("CMS_EC2_SLOW_REGION", "slow")
        .env("CMS_ALICE_ID", ALICE_ID)
        .env("CMS_ALICE_SECRET", ALICE_SECRET)
        .env("CMS_BOB_ID", BOB_ID)
        .env("CMS_BOB_SECRET", BOB_SECRET);
    run_in_group(cmd, SUITE_LIMIT)
}

fn check(s: &Server, suite: &str, run: Run) {
    run.assert_passed(suite, SUITE_LIMIT, s);
}

#[test]
fn boto3_rate_limits_suite() {
    let config = CONFIG.replacen(
        "providers = [\"local\", \"other\"]\n",
        "providers = [\"local\", \"other\"]\n\
         [tenants.rate_limits]\nwrite = { per_second = 1, burst = 2 }\n",
        1,
    );
    let s = start_server_with(config);
    let run = run_suite(&s, "rate_limits_suite.py");
    check(&s, "rate_limits_suite.py", run);
}

#[test]
fn boto3_suite() {
    let s = start_server();
    let run = run_suite(&s, "boto3_suite.py");
    check(&s, "boto3_suite.py", run);
}

#[test]
fn aws_cli_suite() {
    let s = start_server();
    let run = run_suite(&s, "cli_suite.py");
    check(&s, "cli_suite.py", run);
}

#[test]
fn libcloud_suite() {
    let s = start_server();
    let run = run_suite(&s, "libcloud_suite.py");
    check(&s, "libcloud_suite.py", run);
}

#[test]
fn boto3_resource_suite() {
    let s = start_server();
    let run = run_suite(&s, "boto3_resource_suite.py");
    check(&s, "boto3_resource_suite.py", run);
}

#[test]
fn aws_sdk_js_suite() {
    let s = start_slow_server();
    let run = run_js_suite(&s, "sdk_suite.mjs");
    check(&s, "js/sdk_suite.mjs", run);
}

#[test]
fn state_table_suite() {
    let s = start_slow_server();
    let run = run_suite(&s, "state_table_suite.py");
    check(&s, "state_table_suite.py", run);
}
