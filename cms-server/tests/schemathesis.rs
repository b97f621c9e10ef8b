//! schemathesis (PyPI), a tester no one here wrote, against the native API's own
//! OpenAPI document: every phase (the document's examples, coverage of its
//! constraints, fuzzing, and stateful sequences that follow the links from a create to
//! the operations on what it made) with every check. It fails on any finding: a
//! request the document allows and the server refuses, one it forbids and the server
//! takes, an answer or status the document does not describe, a server error.
//!
//! The memory provider deletes at once (`terminated_retention_ms = 0`,
//! `volume_delete_delay_ms = 0`): schemathesis expects a resource gone after its
//! DELETE, where the memory cloud by default keeps a terminated instance visible for a
//! while, and a volume `deleting`, as EC2 does.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const KEY: &str = "schemathesis-key-0123456789abcdef01";
const LIMIT: Duration = Duration::from_secs(600);

const CONFIG: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 0
stop_delay_ms = 0
start_delay_ms = 0
reboot_delay_ms = 0
terminate_delay_ms = 0
terminated_retention_ms = 0
volume_delete_delay_ms = 0
"#;

#[test]
fn schemathesis_finds_nothing() {
    if std::env::var("CMS_TEST_STATE").is_ok_and(|v| v == "postgres") {
        // The document and the server's answers do not depend on the store: once per
        // test command is enough (the SQLite pass runs it).
        eprintln!("schemathesis runs in the SQLite pass only");
        return;
    }
    let s = Server::start(Options {
        config: Some(CONFIG.to_owned()),
        env: vec![
            ("CMS_DEV_API_KEY".into(), KEY.into()),
            ("RUST_LOG".into(), "info".into()),
        ],
        key: Some(KEY.into()),
        ..Options::default()
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis");
    let report = TempDir::new("schemathesis");
    let mut cmd = Command::new(python_env().join("schemathesis"));
    cmd.current_dir(&report.0)
        .arg("--config-file")
        .arg(format!("{dir}/schemathesis.toml"))
        .args(["run", &format!("{}/v1/openapi.json", s.base)])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--checks", "all"])
        .arg("--no-color")
        .env("CMS_SCHEMATHESIS_KEY", KEY)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_in_group(cmd, LIMIT);
    eprintln!("{}", tail(&run.stdout, 30));
    run.assert_passed("schemathesis", LIMIT, &s);
    // It got past the errors: it made instances and acted on them through the links.
    let log = s.stderr.text();
    let count = |route: &str, status: u16| {
        log.lines()
            .filter(|l| l.contains(&format!("route=\"{route}\" status={status} ")))
            .count()
    };
    let made = count("/v1/providers/{provider}/instances", 201);
    let read = count("/v1/providers/{provider}/instances/{id}", 200);
    let deleted = count("/v1/providers/{provider}/instances/{id}", 202);
    let acted = ["start", "stop", "reboot"]
        .iter()
        .map(|a| {
            count(
                &format!("/v1/providers/{{provider}}/instances/{{id}}/{a}"),
                202,
            )
        })
        .sum::<usize>();
    eprintln!("instances made {made}, read {read}, deleted {deleted}, acted on {acted}");
    assert!(
        made > 0 && read > 0 && deleted > 0 && acted > 0,
        "schemathesis never got to the instances: made {made}, read {read}, deleted {deleted}, acted on {acted}"
    );
}
