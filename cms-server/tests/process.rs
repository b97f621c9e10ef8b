//! The `cms-server` process: startup, configuration errors, the development key,
//! secrets kept out of the output, graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_after_requests_in_flight() {
    // `sluggish` answers after 3 s, so the aggregated listing below runs into its 1.5 s bound and is in flight when
    // the signal arrives.
    let config = r#"
        aggregate_timeout_ms = 1500
        [[providers]]
        name = "local"
        driver = "memory"
        [[providers]]
        name = "sluggish"
        driver = "memory"
        [providers.chaos]
        latency_ms = 3000
        latency_min_ms = 3000
        [[tenants]]
        name = "alice"
        api_key = "alice-key-0123456789abcdef0123"
        providers = ["*"]
    "#;
    let mut s = Server::start(Options {
        config: Some(config.into()),
        key: Some(ALICE.into()),
        ..Options::default()
    });
    let request = s.get("/v1/instances").send();
    let pending = tokio::spawn(async move {
        let r = request.await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    let status = tokio::task::block_in_place(|| s.terminate(Duration::from_secs(10)))
        .expect("cms-server did not exit within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let (r, answered) = pending.await.unwrap();
    let r = r.expect("the request in flight was answered");
    assert!(
        answered > signalled,
        "the request was not in flight at the signal"
    );
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["items"].is_array(), "{v}");
    // New connections are refused after the stop.
    assert!(reqwest::get(s.url("/healthz")).await.is_err());
    assert!(s.stderr.text().contains("shutdown"), "{}", s.stderr.text());
}

#[test]
fn idle_server_stops_on_sigterm_with_status_0() {
    let mut s = Server::start(Options::default());
    let status = s
        .terminate(Duration::from_secs(10))
        .expect("exited after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_configs_exit_non_zero_naming_the_problem() {
    let cases = [
        ("listen = \n", "line 1"),
        ("[[providers]]\nname = \"x\"\ndriver = \"memory\"\nboot_dely_ms = 5\n", "boot_dely_ms"),
        ("[[providers]]\nname = \"x\"\ndriver = \"cloudy\"\n", "cloudy"),
        ("[[providers]]\nname = \"x\"\ndriver = \"cloudy\"\n", "memory"),
        ("colour = \"red\"\n", "colour"),
        ("[[providers]]\nname = \"x\"\n", "driver"),
        ("[[tenants]]\nname = \"t\"\nproviders = [\"*\"]\n", "api_key"),
        (
            "[[tenants]]\nname = \"t\"\napi_key_env = \"CMS_TEST_UNSET_VARIABLE\"\nproviders = [\"*\"]\n",
            "CMS_TEST_UNSET_VARIABLE",
        ),
        (
            "[[tenants]]\nname = \"t\"\napi_key = \"k\"\nproviders = [\"elsewhere\"]\n",
            "elsewhere",
        ),
    ];
    for (config, needle) in cases {
        let file = TempFile::new(config);
        let path = file.0.to_str().unwrap();
        let (status, _out, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--config", path], &[]);
        assert!(!status.success(), "{config:?} was accepted");
        assert_eq!(status.code(), Some(2), "{config:?}");
        assert!(
            err.contains(needle),
            "{config:?}: stderr does not name `{needle}`:\n{err}"
        );
    }
    let (status, _, err) = run_to_exit(&["--config", "/nonexistent/cms.toml"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("/nonexistent/cms.toml"), "{err}");
    let (status, _, err) = run_to_exit(&["--listen", "not-an-address"], &[]);
    assert!(!status.success());
    assert!(err.contains("not-an-address"), "{err}");
}

#[tokio::test]
async fn generated_dev_key_is_printed_once_and_never_logged() {
    let s = Server::start(Options {
        env: vec![
            ("RUST_LOG".into(), "debug".into()),
            ("CMS_LOG_FORMAT".into(), "json".into()),
        ],
        ..Options::default()
    });
    let out = s.stdout.text();
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("development API key: "))
        .expect("the development key is printed")
        .trim()
        .to_owned();
    assert!(key.len() >= 32, "{key}");

    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&key);
    let r = auth(s.client.get(s.url("/v1/providers")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["items"][0]["name"], "local");
    let (image, flavor) = {
        let i: Value = auth(s.client.get(s.url("/v1/providers/local/images")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let f: Value = auth(s.client.get(s.url("/v1/providers/local/flavors")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (i["items"][0]["id"].clone(), f["items"][0]["id"].clone())
    };
    let r = auth(s.client.post(s.url("/v1/providers/local/instances")))
        .header("Idempotency-Key", "secret-test")
        .json(&serde_json::json!({"image_id": image, "flavor_id": flavor}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A wrong key close to the right one, and errors.
    let wrong = format!("{key}x");
    let r = s
        .client
        .get(s.url("/v1/providers"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = auth(s.client.get(s.url("/v1/providers/local/instances/i-nope")))
        .send()
        .await
        .unwrap();
    let _ = auth(s.client.get(s.url("/v1/instances")))
        .send()
        .await
        .unwrap();
    // Logs are written in batches by a logging thread: wait for the access lines
    // (providers, images, flavors, create, 401, get, aggregated).
    let access_lines = |err: &str| {
        err.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "request")
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while access_lines(&s.stderr.text()).len() < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = s.stdout.text();
    let err = s.stderr.text();
    assert_eq!(out.matches(&key).count(), 1, "stdout:\n{out}");
    assert_eq!(err.matches(&key).count(), 0, "the key leaked into the logs");
    assert!(
        !err.contains(&wrong[8..]),
        "a presented key leaked into the logs"
    );
    assert!(
        !err.to_lowercase().contains("bearer "),
        "an Authorization header was logged"
    );
    // The logs are JSON lines, one per request, with a request id and the route.
    let access = access_lines(&err);
    assert_eq!(access.len(), 7, "{err}");
    for a in &access {
        assert!(
            a["request_id"].is_string() && a["route"].is_string() && a["status"].is_number(),
            "{a}"
        );
        assert!(a["latency_ms"].is_number(), "{a}");
    }
    assert!(access
        .iter()
        .any(|a| a["route"] == "/v1/providers/{provider}/instances/{id}"));
}

#[tokio::test]
async fn dev_key_from_environment_and_env_config() {
    let key = "env-dev-key-0123456789abcdef0123456789";
    let file = TempFile::new("[[providers]]\nname = \"edge\"\ndriver = \"memory\"\n");
    let mut cmd_env = vec![
        ("CMS_DEV_API_KEY".to_owned(), key.to_owned()),
        ("CMS_CONFIG".to_owned(), file.0.to_str().unwrap().to_owned()),
    ];
    cmd_env.push(("RUST_LOG".to_owned(), "debug".to_owned()));
    let s = Server::start(Options {
        env: cmd_env,
        key: Some(key.to_owned()),
        ..Options::default()
    });
    let v: Value = s
        .get("/v1/providers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["items"][0]["name"], "edge");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.stdout.text().contains(key));
    assert!(!s.stderr.text().contains(key));
}

/// A test CA and server certificates it signs (for `localhost` and 127.0.0.1).
struct Pki {
    dir: TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cms test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let dir = TempDir::new("tls");
        std::fs::write(dir.0.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.0.join(name)
    }

    /// Writes a new server certificate and key as `cert.pem` and `key.pem`; answers
    /// the certificate's DER.
    fn issue(&self, name: &str) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.path("cert.pem"), cert.pem()).unwrap();
        std::fs::write(self.path("key.pem"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    /// A client that trusts only the test CA.
    fn client(&self) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(self.path("ca.pem")).unwrap()).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .tls_info(true)
            .build()
            .unwrap()
    }
}

/// The certificate the server presents to a new connection.
async fn presented(client: &reqwest::Client, base: &str) -> Vec<u8> {
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .expect("the server's certificate")
        .to_vec()
}

const TLS_CONFIG: &str = r#"
[[tenants]]
name = "alice"
api_key = "alice-key-0123456789abcdef0123"
access_key_id = "AKIACMSTLSALICE00001"
secret_access_key = "alice-tls-secret-0123456789abcdefghijkl"
providers = ["*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_to_real_clients_and_reloads_its_certificate_on_sighup() {
    let pki = Pki::new();
    let first = pki.issue("cms first");
    let s = Server::start(Options {
        config: Some(TLS_CONFIG.into()),
        env: vec![
            (
                "CMS_TLS_CERT".into(),
                pki.path("cert.pem").display().to_string(),
            ),
            (
                "CMS_TLS_KEY".into(),
                pki.path("key.pem").display().to_string(),
            ),
        ],
        key: Some(ALICE.into()),
        ..Options::default()
    });
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    assert!(
        s.stdout.text().contains("native API: https://"),
        "{}",
        s.stdout.text()
    );
    let client = pki.client();
    assert_eq!(presented(&client, &s.base).await, first);
    let r = client
        .get(s.url("/v1/providers"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port gets no answer.
    let plain = s.base.replace("https://", "http://");
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());

    // curl, with the CA.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(pki.path("ca.pem"))
        .arg(s.url("/healthz"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // boto3 with `verify=` the CA: the EC2 API over TLS, signed.
    let script = r#"
import os, sys, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["ENDPOINT"], region_name="local",
                   aws_access_key_id=os.environ["KEY_ID"], aws_secret_access_key=os.environ["SECRET"],
                   verify=os.environ["CA"])
image = ec2.describe_images()["Images"][0]["ImageId"]
kind = ec2.describe_instance_types()["InstanceTypes"][0]["InstanceType"]
made = ec2.run_instances(ImageId=image, InstanceType=kind, MinCount=1, MaxCount=1)["Instances"][0]
listed = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
assert made["InstanceId"] in listed, listed
# Without the CA, boto3 refuses the server's certificate.
strict = boto3.client("ec2", endpoint_url=os.environ["ENDPOINT"], region_name="local",
                      aws_access_key_id=os.environ["KEY_ID"], aws_secret_access_key=os.environ["SECRET"])
try:
    strict.describe_instances()
except Exception as e:
    assert "SSL" in repr(e) or "certificate" in repr(e).lower(), repr(e)
else:
    sys.exit("boto3 trusted a certificate it has no CA for")
print("ok")
"#;
    let out = std::process::Command::new(python_env().join("python"))
        .args(["-c", script])
        .env("ENDPOINT", s.url("/ec2"))
        .env("KEY_ID", "AKIACMSTLSALICE00001")
        .env("SECRET", "alice-tls-secret-0123456789abcdefghijkl")
        .env("CA", pki.path("ca.pem"))
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run boto3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "boto3 over TLS failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A new certificate, then SIGHUP: new connections get it.
    let second = pki.issue("cms second");
    assert_ne!(first, second);
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
    };
    hup(s.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client: a fresh connection.
        if presented(&pki.client(), &s.base).await == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A reload that fails changes nothing, and says so.
    std::fs::write(pki.path("cert.pem"), "not a certificate").unwrap();
    hup(s.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .stderr
        .text()
        .contains("cannot reload the TLS certificate")
    {
        assert!(Instant::now() < deadline, "{}", s.stderr.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(presented(&pki.client(), &s.base).await, second);
    assert!(!s.stderr.text().contains("PRIVATE KEY"));
}

#[test]
fn tls_files_that_cannot_serve_stop_the_start() {
    let pki = Pki::new();
    pki.issue("cms");
    let cert = pki.path("cert.pem").display().to_string();
    let key = pki.path("key.pem").display().to_string();
    // One without the other.
    let (status, _, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--tls-cert", &cert], &[]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    // A key that is not the certificate's.
    let other = TempDir::new("tls-other");
    let wrong = rcgen::KeyPair::generate().unwrap();
    std::fs::write(other.0.join("key.pem"), wrong.serialize_pem()).unwrap();
    let wrong_key = other.0.join("key.pem").display().to_string();
    let missing = pki.path("missing.pem").display().to_string();
    for (cert, key, says) in [
        (&cert, &wrong_key, "does not belong to the certificate"),
        (&missing, &key, "cannot read the TLS certificate"),
        (&key, &key, "holds no certificate"),
        (&cert, &cert, "holds no private key"),
    ] {
        let (status, _, err) = run_to_exit(
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
            &[],
        );
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{says}: {err}");
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
}

/// Every secret the configuration and the environment give, each distinct so that a
/// leak names its source.
struct Secrets;

impl Secrets {
    const ALICE_KEY: &'static str = "alice-SECRET-apikey-0001-abcdefghijkl";
    const BOB_KEY: &'static str = "bob-SECRET-apikey-0002-abcdefghijklmn";
    const ALICE_ACCESS: &'static str = "AKIASECRETALICE00001";
    const ALICE_SECRET: &'static str = "aliceSECRETaccesskey0003abcdefghijklmnop";
    const BOB_ACCESS: &'static str = "AKIASECRETBOB0000002";
    const BOB_SECRET: &'static str = "bobSECRETaccesskey0004abcdefghijklmnopqr";
    const ONE_PASSWORD: &'static str = "onePASSWORD-SECRET-0005";
    const ONE_WRONG_PASSWORD: &'static str = "oneWRONGPASSWORD-SECRET-0006";
    const EC2_SECRET: &'static str = "ec2SECRETbackendkey0007abcdefghijklmnopq";
    const REMOTE_KEY: &'static str = "remote-SECRET-apikey-0008-abcdefghijk";
    const REMOTE_WRONG_KEY: &'static str = "remote-WRONG-SECRET-apikey-0009-abcdef";

    const ALL: [&'static str; 11] = [
        Self::ALICE_KEY,
        Self::BOB_KEY,
        Self::ALICE_ACCESS,
        Self::ALICE_SECRET,
        Self::BOB_ACCESS,
        Self::BOB_SECRET,
        Self::ONE_PASSWORD,
        Self::ONE_WRONG_PASSWORD,
        Self::EC2_SECRET,
        Self::REMOTE_KEY,
        Self::REMOTE_WRONG_KEY,
    ];

    /// Fails naming every secret found in `text` (seen as `what`). Access key ids are
    /// not secret (they are shown to identify a key, as AWS does), but the test keeps
    /// them out of everything but the places that must name them: checked separately.
    fn assert_absent(what: &str, text: &str) {
        let found: Vec<&str> = Self::ALL
            .iter()
            .copied()
            .filter(|s| !s.starts_with("AKIA") && text.contains(s))
            .collect();
        assert!(found.is_empty(), "{what} shows {found:?}:\n{text}");
    }
}

/// Everything a client sees of an answer: status, headers, body.
async fn seen(r: reqwest::Response) -> String {
    let mut out = format!("{}\n", r.status());
    for (k, v) in r.headers() {
        out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    out.push_str(&r.text().await.unwrap_or_default());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_errors_or_metrics_on_any_error_path() {
    use aws_credential_types::Credentials;

    let oned =
        cms_driver_opennebula::fake::FakeOned::start(cms_driver_opennebula::fake::FakeConfig {
            password: Secrets::ONE_PASSWORD.into(),
            ..Default::default()
        });
    // The remote provider's upstream: another server, whose development tenant's key
    // is the remote driver's token.
    let upstream = Server::start(Options {
        env: vec![("CMS_DEV_API_KEY".into(), Secrets::REMOTE_KEY.into())],
        key: Some(Secrets::REMOTE_KEY.into()),
        ..Options::default()
    });
    let providers = format!(
        r#"
[[providers]]
name = "local"
driver = "memory"
boot_delay_ms = 20

[[providers]]
name = "one"
driver = "opennebula"
endpoint = "{one}"
username = "{user}"
password_env = "CMS_TEST_ONE_PASSWORD"
retry_attempts = 1
[[providers.sizes]]
name = "small"
cpu = 0.5
vcpu = 1
memory_mib = 512

[[providers]]
name = "one-wrong"
driver = "opennebula"
endpoint = "{one}"
username = "{user}"
password_env = "CMS_TEST_ONE_WRONG_PASSWORD"
retry_attempts = 1

[[providers]]
name = "ec2"
driver = "ec2"
region = "us-east-1"
endpoint = "http://127.0.0.1:9"
access_key_id_env = "CMS_TEST_EC2_ACCESS"
secret_access_key_env = "CMS_TEST_EC2_SECRET"
connect_timeout_ms = 200
retry_attempts = 1

[[providers]]
name = "remote"
driver = "cms"
endpoint = "{upstream}"
provider = "local"
api_key_env = "CMS_TEST_REMOTE_KEY"
"#,
        one = oned.endpoint(),
        user = oned.username(),
        upstream = upstream.base,
    );
    let tenants = format!(
        r#"
[[tenants]]
name = "alice"
api_key = "{alice_key}"
access_key_id = "{alice_access}"
secret_access_key = "{alice_secret}"
providers = ["*"]

[[tenants]]
name = "bob"
api_key_env = "CMS_TEST_BOB_KEY"
access_key_id = "{bob_access}"
secret_access_key_env = "CMS_TEST_BOB_SECRET"
providers = ["local"]
"#,
        alice_key = Secrets::ALICE_KEY,
        alice_access = Secrets::ALICE_ACCESS,
        alice_secret = Secrets::ALICE_SECRET,
        bob_access = Secrets::BOB_ACCESS,
    );
    let env = |remote_key: &str| -> Vec<(String, String)> {
        vec![
            ("CMS_TEST_ONE_PASSWORD".into(), Secrets::ONE_PASSWORD.into()),
            (
                "CMS_TEST_ONE_WRONG_PASSWORD".into(),
                Secrets::ONE_WRONG_PASSWORD.into(),
            ),
            ("CMS_TEST_EC2_ACCESS".into(), "AKIABACKEND000000001".into()),
            ("CMS_TEST_EC2_SECRET".into(), Secrets::EC2_SECRET.into()),
            ("CMS_TEST_REMOTE_KEY".into(), remote_key.into()),
            ("CMS_TEST_BOB_KEY".into(), Secrets::BOB_KEY.into()),
            ("CMS_TEST_BOB_SECRET".into(), Secrets::BOB_SECRET.into()),
            ("RUST_LOG".into(), "trace".into()),
        ]
    };
    let s = Server::start(Options {
        config: Some(format!("{providers}{tenants}")),
        env: env(Secrets::REMOTE_KEY),
        key: Some(Secrets::ALICE_KEY.into()),
        ..Options::default()
    });
    let mut answers = String::new();

    // Native API: authentication failures.
    for auth in [
        None,
        Some("Bearer not-a-key".to_owned()),
        Some(format!("Bearer {}x", Secrets::ALICE_KEY)),
        Some(format!("Basic {}", Secrets::ALICE_KEY)),
        Some(format!("Bearer  {}", Secrets::BOB_KEY)),
    ] {
        let mut r = s.client.get(s.url("/v1/providers"));
        if let Some(a) = &auth {
            r = r.header("Authorization", a);
        }
        answers += &seen(r.send().await.unwrap()).await;
    }
    // Every provider: listings, a create that fails on the body, one that fails in
    // the backend or on an unknown image, an unknown instance.
    for p in ["local", "one", "one-wrong", "ec2", "remote"] {
        for path in [
            "images",
            "flavors",
            "networks",
            "instances",
            "instances/nope",
            "volumes",
            "volumes/nope",
            "snapshots",
            "security-groups",
            "addresses",
        ] {
            let r = s
                .get(&format!("/v1/providers/{p}/{path}"))
                .send()
                .await
                .unwrap();
            answers += &seen(r).await;
        }
        for body in [
            serde_json::json!({"image_id": "nope", "flavor_id": "small"}),
            serde_json::json!({"image_id": "image:0", "flavor_id": "small", "name": "x"}),
            serde_json::json!({"colour": "red"}),
        ] {
            let r = s
                .post(&format!("/v1/providers/{p}/instances"))
                .json(&body)
                .send()
                .await
                .unwrap();
            answers += &seen(r).await;
        }
        // Creates of the other families, which fail in the backend or on the body.
        for (path, body) in [
            ("volumes", serde_json::json!({"size_gib": 1})),
            ("snapshots", serde_json::json!({"volume_id": "nope"})),
            ("security-groups", serde_json::json!({"name": "web"})),
            ("addresses", serde_json::json!({})),
            (
                "images",
                serde_json::json!({"instance_id": "nope", "name": "x"}),
            ),
        ] {
            let r = s
                .post(&format!("/v1/providers/{p}/{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            answers += &seen(r).await;
        }
    }
    // The aggregate (with a failing provider), bob outside his providers, limits.
    answers += &seen(s.get("/v1/instances").send().await.unwrap()).await;
    let bob = s
        .client
        .get(s.url("/v1/providers/one/instances"))
        .bearer_auth(Secrets::BOB_KEY)
        .send()
        .await
        .unwrap();
    answers += &seen(bob).await;
    let huge = "x".repeat(40 * 1024);
    let r = s
        .get("/v1/providers")
        .header("X-Filler", &huge)
        .send()
        .await
        .unwrap();
    answers += &seen(r).await;
    let r = s
        .post("/v1/providers/local/instances")
        .header("Content-Type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "y".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    answers += &seen(r).await;
    answers += &seen(s.get("/metrics").send().await.unwrap()).await;
    answers += &seen(s.client.get(s.url("/metrics")).send().await.unwrap()).await;

    // EC2 frontend, through aws-sdk-ec2: right and wrong secrets, unknown key, bob
    // outside his providers, backend failures.
    let ec2 = |region: &str, id: &str, secret: &str| {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
            .endpoint_url(format!("{}/ec2", s.base))
            .credentials_provider(Credentials::new(id, secret, None, None, "test"))
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    };
    let clients = [
        ec2("local", Secrets::ALICE_ACCESS, Secrets::ALICE_SECRET),
        ec2("one", Secrets::ALICE_ACCESS, Secrets::ALICE_SECRET),
        ec2("one-wrong", Secrets::ALICE_ACCESS, Secrets::ALICE_SECRET),
        ec2("ec2", Secrets::ALICE_ACCESS, Secrets::ALICE_SECRET),
        ec2("remote", Secrets::ALICE_ACCESS, Secrets::ALICE_SECRET),
        ec2("local", Secrets::ALICE_ACCESS, Secrets::BOB_SECRET),
        ec2("local", "AKIANOBODY0000000000", Secrets::ALICE_SECRET),
        ec2("one", Secrets::BOB_ACCESS, Secrets::BOB_SECRET),
    ];
    for c in &clients {
        let d = c.describe_instances().send().await;
        answers += &format!("{d:?}\n");
        let r = c
            .run_instances()
            .image_id("ami-00000000000000000")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await;
        answers += &format!("{r:?}\n");
        let k = c
            .import_key_pair()
            .key_name("k")
            .public_key_material(aws_sdk_ec2::primitives::Blob::new("not a key"))
            .send()
            .await;
        answers += &format!("{k:?}\n");
    }
    // The error paths were taken: authentication failures on both frontends, the
    // backend that refuses its password, the backend that cannot be reached.
    for expected in [
        "401 Unauthorized",
        "431 Request Header Fields Too Large",
        "413 Payload Too Large",
        "SignatureDoesNotMatch",
        "AuthFailure",
        r#"cms_driver_errors_total{provider="one-wrong",operation="list_images",kind="unauthenticated"}"#,
        r#"cms_driver_errors_total{provider="ec2",operation="list_images""#,
    ] {
        assert!(
            answers.contains(expected),
            "no `{expected}` among the answers:\n{answers}"
        );
    }
    Secrets::assert_absent("the answers", &answers);

    // Logs are written by a logging thread: give it a moment, then read everything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Secrets::assert_absent("the server's log (RUST_LOG=trace)", &s.stderr.text());
    Secrets::assert_absent("the server's standard output", &s.stdout.text());
    Secrets::assert_absent("the upstream's log", &upstream.stderr.text());

    // Start-up failures: wrong backend credentials, TOML and validation errors on
    // the lines that hold secrets.
    let failing = [
        (
            format!("{providers}{tenants}"),
            env(Secrets::REMOTE_WRONG_KEY),
        ),
        (
            format!("{tenants}[[tenants]]\nname = \"carol\"\napi_key = \"{}\"\nproviders = [\"*\"]\n", Secrets::ALICE_KEY),
            env(Secrets::REMOTE_KEY),
        ),
        (
            format!("[[tenants]]\nname = \"t\"\napi_key = \"{}\nproviders = [\"*\"]\n", Secrets::ALICE_KEY),
            vec![],
        ),
        (
            format!("[[tenants]]\nname = \"t\"\napi_key = {}\nproviders = [\"*\"]\n", Secrets::ALICE_KEY),
            vec![],
        ),
        (
            format!(
                "[[tenants]]\nname = \"t\"\napi_key = \"{}\"\napi_key_env = \"CMS_TEST_BOB_KEY\"\nproviders = [\"*\"]\n",
                Secrets::ALICE_KEY
            ),
            env(Secrets::REMOTE_KEY),
        ),
        (
            format!(
                "[[tenants]]\nname = \"t\"\naccess_key_id = \"AKIAT\"\nsecret_access_key = \"{}\"\nsecret_access_key_env = \"CMS_TEST_BOB_SECRET\"\nproviders = [\"*\"]\n",
                Secrets::ALICE_SECRET
            ),
            env(Secrets::REMOTE_KEY),
        ),
        (
            format!("[[tenants]]\nname = \"t\"\napi_key = [\"{}\"]\nproviders = [\"*\"]\n", Secrets::ALICE_KEY),
            vec![],
        ),
    ];
    for (config, env) in failing {
        let file = TempFile::new(&config);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, out, err) = run_to_exit(
            &[
                "--listen",
                "127.0.0.1:0",
                "--config",
                file.0.to_str().unwrap(),
            ],
            &env,
        );
        assert!(!status.success(), "started with:\n{config}\nstderr:\n{err}");
        Secrets::assert_absent(
            &format!("a failed start's output for\n{config}\n"),
            &format!("{out}\n{err}"),
        );
    }
}
