//! The `cms` command line, the built binary against a real server: output in each
//! format, waits, pages, contexts, errors and exit codes, completions, and a terminal
//! (a pty) for the spinner and Ctrl-C.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::*;

const CONFIG: &str = r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 50
stop_delay_ms = 50
start_delay_ms = 50
reboot_delay_ms = 50
terminate_delay_ms = 50

# Slow enough to watch (and interrupt) a wait.
[[providers]]
name = "slowboot"
driver = "memory"
boot_delay_ms = 1500
stop_delay_ms = 4000

# Every call fails with Unavailable (503).
[[providers]]
name = "broken"
driver = "memory"
retry_attempts = 1
[providers.chaos]
fault_rate = 1.0

[[tenants]]
name = "alice"
api_key = "alice-key-0123456789abcdef0123"
providers = ["*"]

[[tenants]]
name = "bob"
api_key = "bob-key-abcdef0123456789abcdef"
providers = ["local"]
"#;

fn server() -> Server {
    Server::start(Options {
        config: Some(CONFIG.to_owned()),
        key: Some(ALICE.to_owned()),
        ..Options::default()
    })
}

/// A create on the fast provider, to which a test adds its own flags.
const CREATE: &str = "instances create -p local --image img-debian-12 --flavor flv-1cpu-1gb";

/// The words of a command line (none holds a space).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// What one run of `cms` did.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    fn ok(&self) -> &Out {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn fails(&self, code: i32, needle: &str) -> &Out {
        assert_eq!(
            self.code, code,
            "exit code; stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "`{needle}` not in stderr: {}",
            self.stderr
        );
        self
    }
}

/// Runs `cms` against `s` as alice, in a home of its own (no config file), with
/// stdout and stderr piped (not a terminal).
fn cms(s: &Server, args: &[&str]) -> Out {
    cms_with(s, args, &[])
}

fn cms_with(s: &Server, args: &[&str], env: &[(&str, &str)]) -> Out {
    let home = std::env::temp_dir().join(format!("cms-cli-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cms"));
    cmd.args(args)
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CMS_CLI_CONFIG")
        .env_remove("CMS_PROVIDER")
        .env_remove("CMS_CONTEXT")
        .env("CMS_URL", &s.base)
        .env("CMS_API_KEY", ALICE)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cms");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn yaml_as_json(text: &str) -> Value {
    let out = Command::new(python_env().join("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run python");
    assert!(
        out.status.success(),
        "PyYAML refused the output: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_format_prints_the_same_data() {
    let s = server();
    let made = cms(
        &s,
        &[
            words(CREATE),
            vec!["--name", "yes", "--tag", "n=1.0", "--tag", "note=a: b # c"],
        ]
        .concat(),
    )
    .json();
    // Piped, the default is JSON; YAML is the same data, as a YAML parser reads it.
    for what in [
        &["providers"][..],
        &["images", "-p", "local"],
        &["flavors", "-p", "local"],
        &["instances", "list", "-p", "local"],
        &[
            "instances",
            "get",
            "-p",
            "local",
            made["id"].as_str().unwrap(),
        ],
    ] {
        let json = cms(&s, what).json();
        let mut args = what.to_vec();
        args.extend(["-o", "yaml"]);
        let yaml = cms(&s, &args);
        yaml.ok();
        assert_eq!(yaml_as_json(&yaml.stdout), json, "{what:?}");
        let mut args = what.to_vec();
        args.extend(["-o", "json"]);
        assert_eq!(cms(&s, &args).json(), json, "{what:?}");
    }
    let providers = cms(&s, &["providers"]).json();
    let names: Vec<&str> = providers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "slowboot", "broken"]);
    let ids = cms(&s, &["providers", "-o", "ids"]);
    assert_eq!(ids.ok().stdout, "local\nslowboot\nbroken\n");
    let table = cms(&s, &["providers", "-o", "table"]);
    let lines: Vec<&str> = table.ok().stdout.lines().collect();
    assert_eq!(lines[0], "NAME      DRIVER");
    assert_eq!(lines[1], "local     memory");
    let table = cms(&s, &words("instances list -p local -o table"));
    assert!(table.ok().stdout.starts_with("ID "), "{}", table.stdout);
    assert!(
        table.stdout.contains("n=1.0,note=a: b # c"),
        "{}",
        table.stdout
    );
}

#[test]
fn the_tour_with_cms_alone() {
    let s = server();
    let c = |args: &[&str]| cms_with(&s, args, &[("CMS_PROVIDER", "local")]);
    let images = c(&["images", "-o", "ids"]);
    assert!(images.ok().stdout.lines().any(|l| l == "img-ubuntu-24.04"));
    let flavors = c(&["flavors"]).json();
    assert_eq!(flavors[0]["id"], "flv-1cpu-1gb");
    assert!(c(&["locations"])
        .json()
        .as_array()
        .is_some_and(|l| !l.is_empty()));

    let made = c(&words("instances create --image img-ubuntu-24.04 --flavor flv-1cpu-1gb --name web-1 --tag env=demo --idempotency-key tour-web-1 --wait"));
    let vm = made.json();
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["owner"], "alice");
    assert_eq!(made.stderr, "", "no spinner when stderr is not a terminal");
    let id = vm["id"].as_str().unwrap().to_owned();
    let again = c(&words("instances create --image img-ubuntu-24.04 --flavor flv-1cpu-1gb --name web-1 --tag env=demo --idempotency-key tour-web-1 -o ids"));
    assert_eq!(
        again.ok().stdout.trim(),
        id,
        "the same key, the same instance"
    );

    let listed = c(&words(
        "instances list --state running --tag env=demo -o ids",
    ));
    assert_eq!(listed.ok().stdout.trim(), id);
    let none = c(&words(
        "instances list --state stopped --tag env=demo -o ids",
    ));
    assert_eq!(none.ok().stdout, "");
    let tagged = c(&[
        "instances",
        "tag",
        &id,
        "--set",
        "team=web",
        "--remove",
        "env",
    ])
    .json();
    assert_eq!(tagged["tags"], serde_json::json!({"team": "web"}));

    let stopped = c(&["instances", "stop", &id, "--wait"]).json();
    assert_eq!(stopped[0]["state"], "stopped");
    let started = c(&["instances", "start", &id, "--wait"]).json();
    assert_eq!(started[0]["state"], "running");
    let rebooted = c(&["instances", "reboot", &id, "--wait"]).json();
    assert_eq!(rebooted[0]["state"], "running");
    let console = c(&["instances", "console", &id, "-o", "table"]);
    assert!(
        console.ok().stdout.contains(&format!("{id} is running")),
        "{}",
        console.stdout
    );

    let net = c(&["networks", "create", "backend", "--cidr", "10.9.0.0/24"]).json();
    let net_id = net["id"].as_str().unwrap().to_owned();
    assert!(c(&["networks", "-o", "ids"]).ok().stdout.contains(&net_id));
    c(&["networks", "delete", &net_id]).ok();
    c(&["networks", "get", &net_id]).fails(3, "not found");

    let dir = TempDir::new("cms-cli-keys");
    let pem = dir.0.join("deploy.pem");
    let kp = c(&[
        "key-pairs",
        "create",
        "deploy",
        "--private-key-file",
        pem.to_str().unwrap(),
    ]);
    assert!(
        kp.json().get("private_key").is_none(),
        "the key went to the file only"
    );
    let text = std::fs::read_to_string(&pem).unwrap();
    assert!(text.contains("PRIVATE KEY"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    c(&[
        "key-pairs",
        "create",
        "deploy2",
        "--private-key-file",
        pem.to_str().unwrap(),
    ])
    .fails(2, "exists");
    let public = dir.0.join("laptop.pub");
    std::fs::write(
        &public,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjeiXREAM6bENP+0LXDY4pfk44C2N30tUNZZ0j1VIZj me@laptop\n",
    )
    .unwrap();
    let imported = c(&[
        "key-pairs",
        "import",
        "laptop",
        "--public-key-file",
        public.to_str().unwrap(),
    ])
    .json();
    assert!(imported["fingerprint"]
        .as_str()
        .is_some_and(|f| !f.is_empty()));
    assert_eq!(
        c(&["key-pairs", "-o", "ids"]).ok().stdout,
        "deploy\nlaptop\n"
    );
    c(&["key-pairs", "delete", "deploy"]).ok();
    c(&["key-pairs", "delete", "deploy"]).fails(3, "not found");

    let deleted = c(&["instances", "delete", &id, "--wait"]).json();
    assert_eq!(deleted[0]["state"], "terminated");
}

#[test]
fn listings_follow_every_page() {
    let s = server();
    for k in 0..5 {
        let name = format!("batch-{k}");
        cms(
            &s,
            &[words(CREATE), vec!["--name", &name, "--tag", "batch=pages"]].concat(),
        )
        .ok();
    }
    let all = cms(
        &s,
        &words("instances list -p local --tag batch=pages --page-size 2 -o ids"),
    );
    let mut ids: Vec<&str> = all.ok().stdout.lines().collect();
    assert_eq!(ids.len(), 5, "{}", all.stdout);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "no instance twice");
    let images = cms(&s, &words("images -p local --page-size 1 -o ids"));
    assert_eq!(images.ok().stdout.lines().count(), 3);
    // Without a provider, every provider is listed; one that fails is named, and the
    // exit code says the listing is incomplete.
    let every = cms(&s, &["instances", "list", "--tag", "batch=pages"]);
    assert_eq!(every.code, 5, "{}", every.stderr);
    assert!(
        every.stderr.contains("provider `broken` is missing"),
        "{}",
        every.stderr
    );
    let v: Value = serde_json::from_str(&every.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["provider"] == "local"));
}

#[test]
fn errors_say_what_happened_and_exit_with_their_code() {
    let s = server();
    let running = cms(&s, &[words(CREATE), words("--wait -o ids")].concat());
    let id = running.ok().stdout.trim().to_owned();

    let e = cms(
        &s,
        &["instances", "get", "-p", "local", "i-0000000000000dead"],
    );
    e.fails(3, "instance `i-0000000000000dead` not found");
    assert!(e.stderr.contains("\nrequest id: "), "{}", e.stderr);
    assert_eq!(e.stdout, "");
    cms(&s, &["instances", "start", "-p", "local", &id]).fails(4, "nothing to start");
    cms(
        &s,
        &[words(CREATE), words("--idempotency-key k-1")].concat(),
    )
    .ok();
    cms(
        &s,
        &words("instances create -p local --image img-fedora-41 --flavor flv-1cpu-1gb --idempotency-key k-1"),
    )
    .fails(4, "idempotency key");
    cms(
        &s,
        &words("instances create -p local --image nope --flavor flv-1cpu-1gb"),
    )
    .fails(3, "image `nope` not found");
    cms(&s, &["instances", "list", "-p", "broken"]).fails(
        5,
        "injected fault (request refused) (this may be temporary: try again)",
    );
    cms_with(
        &s,
        &["providers"],
        &[("CMS_API_KEY", "wrong-key-0123456789abcdef0123")],
    )
    .fails(6, "API key");
    cms_with(
        &s,
        &["instances", "list", "-p", "broken"],
        &[("CMS_API_KEY", BOB)],
    )
    .fails(2, "has: local");
    cms(&s, &["instances", "list", "--state", "sleeping"]).fails(2, "sleeping");
    cms(&s, &["instances", "lsit"]).fails(2, "unrecognized subcommand");
    cms(&s, &["instances", "tag", "-p", "local", &id]).fails(2, "nothing to change");
    cms(&s, &["instances", "get", &id]).fails(2, "choose a provider");
    cms_with(&s, &["providers"], &[("CMS_API_KEY", "")]).fails(2, "no API key");
    cms_with(&s, &["providers"], &[("CMS_URL", "http://127.0.0.1:9")])
        .fails(5, "cannot be reached");
    cms_with(&s, &["providers"], &[("CMS_URL", "ftp://x")]).fails(2, "http");
    // The key never shows, whatever fails.
    let e = cms_with(
        &s,
        &["providers"],
        &[("CMS_API_KEY", "wrong-key-0123456789abcdef0123")],
    );
    assert!(!e.stderr.contains("wrong-key"), "{}", e.stderr);
}

#[test]
fn contexts_come_from_the_config_file() {
    let s = server();
    let dir = TempDir::new("cms-cli-config");
    let file = dir.0.join("config.toml");
    std::fs::write(
        &file,
        format!(
            r#"current_context = "dev"

[contexts.dev]
url = "{}"
api_key_env = "MY_CMS_KEY"
provider = "local"
output = "yaml"

[contexts.prod]
url = "http://127.0.0.1:9"
api_key = "prod-key"
"#,
            s.base
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let with = |args: &[&str], extra: &[(&str, &str)]| {
        let mut env = vec![("CMS_CLI_CONFIG", f), ("CMS_URL", ""), ("CMS_API_KEY", "")];
        env.extend_from_slice(extra);
        cms_with(&s, args, &env)
    };
    let out = with(&["flavors"], &[("MY_CMS_KEY", ALICE)]);
    assert!(
        out.ok().stdout.starts_with("- "),
        "the context's YAML: {}",
        out.stdout
    );
    assert_eq!(yaml_as_json(&out.stdout)[0]["id"], "flv-1cpu-1gb");
    with(&["flavors"], &[]).fails(2, "MY_CMS_KEY");
    with(&["--context", "prod", "providers"], &[]).fails(5, "127.0.0.1:9");
    with(&["--context", "staging", "providers"], &[]).fails(2, "it has: dev, prod");
    // Flags win over the context.
    let out = with(
        &[
            "--context",
            "prod",
            "--url",
            &s.base,
            "--api-key",
            ALICE,
            "providers",
            "-o",
            "ids",
        ],
        &[],
    );
    assert_eq!(out.ok().stdout.lines().next(), Some("local"));
    std::fs::write(&file, "contexts = 3\n").unwrap();
    with(&["providers"], &[]).fails(2, "not a cms CLI config");
}

#[test]
fn completions_and_help() {
    let s = server();
    for shell in ["bash", "zsh", "fish"] {
        let out = cms(&s, &["completion", shell]);
        assert!(out.ok().stdout.contains("instances"), "{shell}");
        assert!(out.stdout.contains("key-pairs"), "{shell}");
    }
    let bash = cms(&s, &["completion", "bash"]);
    let dir = TempDir::new("cms-cli-completion");
    let script = dir.0.join("cms.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success(), "bash -n refused the completion script");
    let help = cms(&s, &["instances", "create", "--help"]);
    assert!(
        help.ok()
            .stdout
            .contains("Example:\n  cms instances create"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("--idempotency-key"));
    let top = cms(&s, &["--help"]);
    assert!(
        top.ok().stdout.contains("Exit codes: 0 done"),
        "{}",
        top.stdout
    );
}

#[test]
fn a_terminal_shows_the_spinner_and_ctrl_c_stops_only_the_wait() {
    let s = server();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/pty_suite.py");
    let mut cmd = Command::new(python_env().join("python"));
    cmd.arg(script)
        .args([
            env!("CARGO_BIN_EXE_cms"),
            &s.base,
            ALICE,
            "img-ubuntu-24.04",
            "flv-1cpu-1gb",
        ])
        .env_remove("CMS_CLI_CONFIG")
        .env("HOME", std::env::temp_dir());
    let run = run_in_group(cmd, Duration::from_secs(120));
    run.assert_passed("the pty suite", Duration::from_secs(120), &s);
}
