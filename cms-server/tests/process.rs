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
