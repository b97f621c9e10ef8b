//! Error classification on the wire: a tiny EC2 responder on 127.0.0.1 answers
//! canned EC2 error documents, and the driver must classify each one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cms_core::{Driver, ErrorKind, InstanceId};
use cms_driver_ec2::{Ec2Config, Ec2Driver, StaticCredentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the responder answers: a status and a body, or silence.
#[derive(Clone)]
enum Answer {
    Http(u16, String),
    Silence,
}

/// An HTTP server on 127.0.0.1 that answers every request the same way.
struct Responder {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    async fn start(answer: Answer) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &answer).await;
                });
            }
        });
        Responder { addr, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, answer: &Answer) -> std::io::Result<()> {
    // Read the request head, then as much body as it announces.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match answer {
        Answer::Silence => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        Answer::Http(status, body) => {
            let response = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: text/xml;charset=UTF-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        }
    }
}

fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors>\
         <RequestID>5f1c0c1e-0000-4000-8000-000000000001</RequestID></Response>"
    )
}

async fn driver_for(endpoint: &str, timeout_ms: u64) -> Ec2Driver {
    let mut config = Ec2Config::new("us-east-1")
        .endpoint(endpoint)
        .credentials(StaticCredentials::new("AKIDTEST", "secret-never-shown"));
    config.request_timeout_ms = timeout_ms;
    config.connect_timeout_ms = timeout_ms;
    Ec2Driver::new(config).await.expect("driver")
}

#[tokio::test]
async fn every_ec2_error_class_is_classified() {
    // (EC2 code, HTTP status, kind, temporary, not executed)
    let cases = [
        (
            "InvalidInstanceID.NotFound",
            400,
            ErrorKind::NotFound,
            false,
            false,
        ),
        (
            "InvalidAMIID.NotFound",
            400,
            ErrorKind::NotFound,
            false,
            false,
        ),
        (
            "InvalidKeyPair.NotFound",
            400,
            ErrorKind::NotFound,
            false,
            false,
        ),
        (
            "InvalidSubnetID.NotFound",
            400,
            ErrorKind::NotFound,
            false,
            false,
        ),
        (
            "InvalidKeyPair.Duplicate",
            400,
            ErrorKind::AlreadyExists,
            false,
            false,
        ),
        (
            "IncorrectInstanceState",
            400,
            ErrorKind::InvalidState,
            false,
            false,
        ),
        ("AuthFailure", 401, ErrorKind::Unauthenticated, false, false),
        (
            "UnauthorizedOperation",
            403,
            ErrorKind::PermissionDenied,
            false,
            false,
        ),
        (
            "InstanceLimitExceeded",
            400,
            ErrorKind::QuotaExceeded,
            false,
            false,
        ),
        (
            "RequestLimitExceeded",
            503,
            ErrorKind::RateLimited,
            true,
            true,
        ),
        ("Throttling", 400, ErrorKind::RateLimited, true, true),
        (
            "InvalidParameterValue",
            400,
            ErrorKind::InvalidArgument,
            false,
            false,
        ),
        (
            "MissingParameter",
            400,
            ErrorKind::InvalidArgument,
            false,
            false,
        ),
        (
            "InvalidParameterCombination",
            400,
            ErrorKind::InvalidArgument,
            false,
            false,
        ),
        (
            "InvalidInstanceID.Malformed",
            400,
            ErrorKind::InvalidArgument,
            false,
            false,
        ),
        (
            "IdempotentParameterMismatch",
            400,
            ErrorKind::InvalidArgument,
            false,
            false,
        ),
        ("InternalError", 500, ErrorKind::Unavailable, true, false),
        ("Unavailable", 503, ErrorKind::Unavailable, true, false),
    ];
    for (code, status, kind, temporary, not_executed) in cases {
        let responder =
            Responder::start(Answer::Http(status, ec2_error(code, "canned by the test"))).await;
        let driver = driver_for(&responder.endpoint(), 5_000).await;
        let err = driver
            .get_instance(&InstanceId::new("i-0123456789abcdef0"))
            .await
            .expect_err(code);
        assert_eq!(err.kind(), kind, "{code}: {err}");
        assert_eq!(err.is_temporary(), temporary, "{code}: temporary");
        assert_eq!(err.is_not_executed(), not_executed, "{code}: not executed");
        assert_eq!(err.context_value("ec2_code"), Some(code), "{code}");
        assert_eq!(
            err.context_value("http_status"),
            Some(status.to_string().as_str())
        );
        assert!(err.to_string().contains("canned by the test"), "{err}");
        assert!(!format!("{err:?}").contains("secret-never-shown"));
        if code == "IdempotentParameterMismatch" {
            assert_eq!(
                err.context_value("reason"),
                Some("idempotent_parameter_mismatch")
            );
        }
    }
}

/// The codes of the volume, snapshot, image, security group and address calls, each
/// through an operation of its family (the responder answers every call with it).
#[tokio::test]
async fn the_families_error_codes_are_classified() {
    use cms_core::{
        AddressId, AddressSpec, ImageId, ImageSpec, SecurityGroupId, SecurityGroupSpec,
        SecurityRule, SnapshotId, VolumeId, VolumeSpec,
    };
    let volume = VolumeId::new("vol-0123456789abcdef0");
    let snapshot = SnapshotId::new("snap-0123456789abcdef0");
    let group = SecurityGroupId::new("sg-0123456789abcdef0");
    let address = AddressId::new("eipalloc-0123456789abcdef0");
    let image = ImageId::new("ami-0123456789abcdef0");
    let instance = InstanceId::new("i-0123456789abcdef0");
    let ssh = [SecurityRule::tcp_in(22, 22, "0.0.0.0/0")];
    for (code, kind) in [
        ("InvalidVolume.NotFound", ErrorKind::NotFound),
        ("InvalidSnapshot.NotFound", ErrorKind::NotFound),
        ("InvalidGroup.NotFound", ErrorKind::NotFound),
        ("InvalidGroup.Duplicate", ErrorKind::AlreadyExists),
        ("InvalidPermission.Duplicate", ErrorKind::AlreadyExists),
        ("InvalidPermission.NotFound", ErrorKind::NotFound),
        ("VolumeInUse", ErrorKind::InvalidState),
        ("IncorrectState", ErrorKind::InvalidState),
        ("AddressLimitExceeded", ErrorKind::QuotaExceeded),
        ("VolumeLimitExceeded", ErrorKind::QuotaExceeded),
        ("InvalidAllocationID.NotFound", ErrorKind::NotFound),
        ("InvalidAssociationID.NotFound", ErrorKind::NotFound),
        ("DependencyViolation", ErrorKind::InvalidState),
        ("CannotDelete", ErrorKind::InvalidState),
        ("InvalidAMIID.Unavailable", ErrorKind::NotFound),
        ("InvalidAMIName.Duplicate", ErrorKind::AlreadyExists),
        ("InvalidIPAddress.InUse", ErrorKind::InvalidState),
        ("InvalidSnapshot.InUse", ErrorKind::InvalidState),
        ("Resource.AlreadyAssociated", ErrorKind::InvalidState),
        ("InvalidVolume.ZoneMismatch", ErrorKind::InvalidArgument),
        ("InvalidGroupId.Malformed", ErrorKind::InvalidArgument),
    ] {
        let responder =
            Responder::start(Answer::Http(400, ec2_error(code, "canned by the test"))).await;
        let d = driver_for(&responder.endpoint(), 5_000).await;
        let family = code.split('.').next().unwrap_or(code);
        let err = match family {
            "InvalidVolume" | "VolumeInUse" => d.delete_volume(&volume).await.err(),
            "IncorrectState" => d.detach_volume(&volume).await.err(),
            "VolumeLimitExceeded" => d.create_volume(&VolumeSpec::new(1)).await.err(),
            "InvalidSnapshot" => d.delete_snapshot(&snapshot).await.err(),
            "InvalidGroup" if code.ends_with("Duplicate") => d
                .create_security_group(&SecurityGroupSpec::new("web", "web"))
                .await
                .err(),
            "InvalidGroup" | "InvalidGroupId" => d.get_security_group(&group).await.err(),
            "InvalidPermission" if code.ends_with("Duplicate") => {
                d.add_security_rules(&group, &ssh).await.err()
            }
            "InvalidPermission" => d.remove_security_rules(&group, &ssh).await.err(),
            "DependencyViolation" | "CannotDelete" => d.delete_security_group(&group).await.err(),
            "AddressLimitExceeded" => d.allocate_address(&AddressSpec::default()).await.err(),
            "InvalidAllocationID" | "InvalidIPAddress" => d.release_address(&address).await.err(),
            "InvalidAssociationID" => d.disassociate_address(&address).await.err(),
            "Resource" => d.associate_address(&address, &instance, None).await.err(),
            "InvalidAMIID" => d.delete_image(&image).await.err(),
            "InvalidAMIName" => d
                .create_image(&ImageSpec::new(instance.clone(), "golden"))
                .await
                .err(),
            _ => d.get_volume(&volume).await.err(),
        }
        .unwrap_or_else(|| panic!("{code}: no error"));
        assert_eq!(err.kind(), kind, "{code}: {err}");
        assert_eq!(err.context_value("ec2_code"), Some(code), "{code}");
        assert!(!err.is_temporary(), "{code}");
    }
}

#[tokio::test]
async fn a_5xx_without_an_ec2_document_is_unavailable() {
    let responder = Responder::start(Answer::Http(502, "<html>bad gateway</html>".into())).await;
    let driver = driver_for(&responder.endpoint(), 5_000).await;
    let err = driver.list_locations().await.expect_err("502");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_not_executed() {
    // A port that was free a moment ago: nothing listens there.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let driver = driver_for(&format!("http://{addr}"), 5_000).await;
    let err = driver.list_locations().await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    assert!(err.is_not_executed(), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn a_silent_endpoint_times_out_as_unavailable() {
    let responder = Responder::start(Answer::Silence).await;
    let driver = driver_for(&responder.endpoint(), 300).await;
    let started = std::time::Instant::now();
    let err = driver.list_locations().await.expect_err("silence");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    // The request reached the server: it may have been carried out.
    assert!(!err.is_not_executed());
}
