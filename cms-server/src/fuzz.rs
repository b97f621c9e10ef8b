//! Entry points for the coverage-guided fuzz targets in `fuzz/` (see RELIABILITY.md):
//! each takes arbitrary bytes, runs one of the server's parsers of untrusted input on
//! them as a request would, and says whether the input was accepted. None may panic,
//! hang or allocate without bound, whatever the bytes.
//!
//! The same functions replay every committed corpus file in this crate's unit tests,
//! on the stable toolchain, so a crash once found stays fixed.

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::Config;
use crate::frontends::ec2::sigv4;
use crate::frontends::native::addresses::{AllocateAddressRequest, AssociateAddressRequest};
use crate::frontends::native::handlers::{
    parse_json, CreateInstanceRequest, CreateKeyPairRequest, CreateNetworkRequest, TagPatch,
};
use crate::frontends::native::images::CaptureImageRequest;
use crate::frontends::native::problem::ApiError;
use crate::frontends::native::query;
use crate::frontends::native::routes::{self, Match, RouteId};
use crate::frontends::native::security_groups::{CreateSecurityGroupRequest, SecurityRulesRequest};
use crate::frontends::native::snapshots::CreateSnapshotRequest;
use crate::frontends::native::volumes::{AttachVolumeRequest, CreateVolumeRequest};
use crate::frontends::{body, ec2};

/// The CIMI frontend's readers: a framed request whose query is read as a
/// collection's (`$filter`, `$orderby`, `$first`, `$last`, `$select`, `$expand`) and
/// whose body is read as a CIMI document by its `Content-Type` (XML when it says
/// `xml`, else JSON). An accepted body is filtered, rendered in both representations,
/// and, when its field names are XML names, read back from its XML: it must read.
/// Accepted when both the query and the body (if any) are.
pub fn cimi(data: &[u8]) -> bool {
    use crate::frontends::cimi::{doc, query as cimi_query};
    let Some(r) = frame(data) else {
        return false;
    };
    let q = cimi_query::parse(r.query, true);
    let xml = r
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"));
    let body = if r.body.is_empty() {
        None
    } else if xml {
        Some(doc::read_xml(r.body))
    } else {
        Some(doc::read_json(r.body))
    };
    let body_ok = match &body {
        None => true,
        Some(Ok(d)) => {
            if let Ok(q) = &q {
                let _ = q.keeps(d);
            }
            let _ = doc::render(d, "Machine", doc::Format::Json);
            let out = doc::render(d, "Machine", doc::Format::Xml);
            if names_are_xml(d) {
                if let Err(e) = doc::read_xml(out.as_bytes()) {
                    panic!("a rendered document does not read back: {e:?}\n{out}");
                }
            }
            true
        }
        Some(Err(_)) => false,
    };
    q.is_ok() && body_ok
}

/// Whether every field name of `d` (at any depth) is a plain XML name.
fn names_are_xml(d: &crate::frontends::cimi::doc::Obj) -> bool {
    use crate::frontends::cimi::doc::Node;
    fn node(n: &Node) -> bool {
        match n {
            Node::Obj(o) => names_are_xml(o),
            Node::List(items) | Node::Members(_, items) => items.iter().all(node),
            _ => true,
        }
    }
    d.0.iter().all(|(k, v)| {
        k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && k != "property"
            && node(v)
    })
}

/// The access key id the SigV4 target knows.
pub const FUZZ_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
/// Its secret access key (AWS's published example secret).
pub const FUZZ_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// An HTTP request in the targets' text framing:
///
/// ```text
/// METHOD TARGET\n        (TARGET is the path and query, as sent)
/// Name: value\n          (any number of header lines)
/// \n
/// body bytes
/// ```
struct Framed<'a> {
    method: Method,
    path: &'a str,
    query: &'a str,
    headers: HeaderMap,
    body: &'a [u8],
}

fn frame(data: &[u8]) -> Option<Framed<'_>> {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &data[data.len()..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(Framed {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The moment a request says it was signed (`X-Amz-Date` header or query
/// parameter), so that a well-signed input verifies whenever it is replayed.
fn signed_at(r: &Framed<'_>) -> DateTime<Utc> {
    let from_header = r.headers.get("x-amz-date").and_then(|v| v.to_str().ok());
    let from_query = r
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Date="));
    from_header
        .or(from_query)
        .and_then(|s| sigv4::parse_amz_date(s).ok())
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// SigV4: the `Authorization` header or presigned query of a framed request is
/// parsed and verified against [`FUZZ_ACCESS_KEY_ID`]'s secret at the time the
/// request names; true when the signature verifies.
pub fn sigv4(data: &[u8]) -> bool {
    let Some(r) = frame(data) else {
        return false;
    };
    let _ = ec2::is_ec2_request(&r.method, r.path, r.query, &r.headers);
    let _ = body::headers_too_large(&r.headers);
    let verified = sigv4::verify(
        &sigv4::Request {
            method: r.method.as_str(),
            path: r.path,
            query: r.query,
            headers: &r.headers,
            body: r.body,
        },
        signed_at(&r),
        |id| (id == FUZZ_ACCESS_KEY_ID).then_some(FUZZ_SECRET_ACCESS_KEY),
    );
    match verified {
        Ok(v) => v.access_key_id == FUZZ_ACCESS_KEY_ID,
        Err(e) => {
            let _ = (e.code(), e.status(), e.message());
            false
        }
    }
}

/// The EC2 Query API's parameters: `data` as a form-encoded query or body, read as
/// the actions read it; true when every read succeeded.
pub fn ec2_query(data: &[u8]) -> bool {
    match std::str::from_utf8(data) {
        Ok(form) => ec2::fuzz::parse(form),
        Err(_) => false,
    }
}

/// The native API: a framed request is routed, its query parsed as its route
/// parses it and its body read as the route's JSON document, checked by the model's
/// rules; true when all of it is accepted.
pub fn native(data: &[u8]) -> bool {
    let Some(r) = frame(data) else {
        return false;
    };
    let result = match routes::find(&r.method, r.path) {
        Match::Found(route, _, params) => {
            let _ = (params.get(0), params.get(1));
            route_input(route.id, &r)
        }
        Match::MethodNotAllowed(..) | Match::NotFound => return false,
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            // The problem document carries the client's text: it must render.
            let _ = serde_json::to_vec(&e.to_problem(r.path, Some("fuzz")));
            false
        }
    }
}

fn route_input(id: RouteId, r: &Framed<'_>) -> Result<(), ApiError> {
    match id {
        RouteId::ListInstances => query::instance_query(r.query, true).map(drop),
        RouteId::ListAllInstances => query::instance_query(r.query, false).map(drop),
        RouteId::ListImages
        | RouteId::ListFlavors
        | RouteId::ListNetworks
        | RouteId::ListLocations
        | RouteId::ListKeyPairs
        | RouteId::ListVolumes
        | RouteId::ListSnapshots
        | RouteId::ListSecurityGroups
        | RouteId::ListAddresses => query::page_query(r.query).map(drop),
        RouteId::CreateVolume => {
            let spec = parse_json::<CreateVolumeRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::check_volume_spec(&spec)?)
        }
        RouteId::AttachVolume => {
            let req: AttachVolumeRequest = parse_json(&r.headers, r.body)?;
            match &req.device {
                Some(d) => Ok(cms_core::check_device(d)?),
                None => Ok(()),
            }
        }
        RouteId::CreateSnapshot => {
            let spec = parse_json::<CreateSnapshotRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::check_snapshot_spec(&spec)?)
        }
        RouteId::CreateImage => {
            let spec = parse_json::<CaptureImageRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::check_image_spec(&spec)?)
        }
        RouteId::CreateSecurityGroup => {
            let spec = parse_json::<CreateSecurityGroupRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::check_security_group_spec(&spec)?)
        }
        RouteId::AddSecurityRules | RouteId::RemoveSecurityRules => {
            let req: SecurityRulesRequest = parse_json(&r.headers, r.body)?;
            Ok(cms_core::check_security_rules(
                &req.rules,
                cms_core::Operation::AddSecurityRules,
            )?)
        }
        RouteId::AllocateAddress => {
            let spec = parse_json::<AllocateAddressRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::check_address_spec(&spec)?)
        }
        RouteId::AssociateAddress => {
            parse_json::<AssociateAddressRequest>(&r.headers, r.body).map(drop)
        }
        RouteId::CreateInstance => {
            query::no_query(r.query)?;
            let spec = parse_json::<CreateInstanceRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::model::check_instance_spec(&spec)?)
        }
        RouteId::UpdateInstanceTags => {
            let changes = parse_json::<TagPatch>(&r.headers, r.body)?.into_changes()?;
            Ok(changes.check()?)
        }
        RouteId::CreateNetwork => {
            let spec = parse_json::<CreateNetworkRequest>(&r.headers, r.body)?.into_spec();
            Ok(cms_core::model::check_network_spec(&spec)?)
        }
        RouteId::CreateKeyPair => {
            let req: CreateKeyPairRequest = parse_json(&r.headers, r.body)?;
            if let Some(key) = &req.public_key {
                let _ = ec2::keymat::imported(key);
            }
            Ok(cms_core::model::check_name("name", &req.name, true)?)
        }
        _ => query::no_query(r.query),
    }
}

/// The server's TOML configuration: parsed and validated; true when valid.
pub fn config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match Config::from_toml(text) {
        Ok(c) => {
            let _ = c.effective_providers();
            c.validate().is_ok()
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms_core::testkit::fuzz::replay;

    #[test]
    fn sigv4_corpus_replays() {
        replay("sigv4", sigv4);
    }

    #[test]
    fn ec2_query_corpus_replays() {
        replay("ec2_query", ec2_query);
    }

    #[test]
    fn native_corpus_replays() {
        replay("native", native);
    }

    #[test]
    fn cimi_corpus_replays() {
        replay("cimi", cimi);
    }

    #[test]
    fn config_corpus_replays() {
        replay("config", config);
    }

    #[test]
    fn a_signed_seed_with_one_byte_changed_is_refused() {
        let (_, seed) = cms_core::testkit::fuzz::committed_inputs("sigv4")
            .into_iter()
            .find(|(n, _)| n.ends_with("/ok-run-instances"))
            .expect("the RunInstances seed");
        assert!(sigv4(&seed));
        let tampered = String::from_utf8(seed)
            .unwrap()
            .replace("MaxCount=2", "MaxCount=3");
        assert!(!sigv4(tampered.as_bytes()));
    }
}
