//! Nova's compute API v2.1 under `/compute`: version documents, microversions, and the
//! resources other than servers (flavors, key pairs, availability zones, limits).

use base64::Engine as _;
use hyper::Method;
use md5::{Digest as _, Md5};
use serde_json::{json, Map, Value};

use super::http::{iso_micros_naive, urlencode, Reply, Req};
use super::keystone;
use super::servers;
use super::world::{Flavor, Keypair, World};

/// A compute API microversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mv(pub u32, pub u32);

impl Mv {
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= Mv(major, minor)
    }
}

impl std::fmt::Display for Mv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Nova's fault body: `{"<name>": {"code", "message"}}`, the name after the status.
pub(crate) fn fault(code: u16, message: impl Into<String>) -> Reply {
    let name = match code {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    };
    let message: String = message.into();
    Reply::json(code, &json!({ name: {"code": code, "message": message} }))
}

pub(crate) fn not_found() -> Reply {
    fault(404, "The resource could not be found.")
}

/// A JSON-schema error as Nova words it.
pub(crate) fn invalid(field: &str, value: &Value, why: &str) -> Reply {
    fault(
        400,
        format!("Invalid input for field/attribute {field}. Value: {value}. {why}"),
    )
}

fn version_document(w: &World) -> Value {
    let (major, minor) = w.settings.max_microversion;
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("{major}.{minor}"),
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": format!("{}/compute/v2.1/", w.base)},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1"
        }]
    })
}

/// The microversion a request asks for (`OpenStack-API-Version: compute X.Y`, else the
/// legacy `X-OpenStack-Nova-API-Version`; none is 2.1), or Nova's refusal.
fn microversion(w: &World, req: &Req) -> Result<Mv, Reply> {
    let (max_major, max_minor) = w.settings.max_microversion;
    let max = Mv(max_major, max_minor);
    let mut asked = None;
    for value in req.headers.get_all("openstack-api-version") {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut words = part.split_whitespace();
            if words
                .next()
                .is_some_and(|s| s.eq_ignore_ascii_case("compute"))
            {
                asked = Some(words.collect::<Vec<_>>().join(" "));
            }
        }
    }
    if asked.is_none() {
        asked = req
            .header("x-openstack-nova-api-version")
            .map(|s| s.trim().to_owned());
    }
    let Some(asked) = asked else {
        return Ok(Mv(2, 1));
    };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(max);
    }
    let parsed = asked
        .split_once('.')
        .and_then(|(a, b)| Some(Mv(a.parse().ok()?, b.parse().ok()?)));
    let Some(v) = parsed else {
        return Err(fault(
            400,
            format!(
                "API Version String {asked} is of invalid format. Must be of format \
                 MajorNum.MinorNum."
            ),
        ));
    };
    if v < Mv(2, 1) || v > max {
        return Err(fault(
            406,
            format!(
                "Version {v} is not supported by the API. Minimum is 2.1 and maximum is {max}."
            ),
        ));
    }
    Ok(v)
}

pub(crate) fn handle(w: &mut World, req: &Req) -> Reply {
    let seg = req.segments("/compute");
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match seg.as_slice() {
        [] if req.method == Method::GET => {
            let mut doc = version_document(w);
            if let Some(o) = doc.as_object_mut() {
                o.remove("media-types");
                if let Some(links) = o.get_mut("links").and_then(Value::as_array_mut) {
                    links.truncate(1);
                }
            }
            Reply::json(200, &json!({ "versions": [doc] }))
        }
        ["v2.1"] if req.method == Method::GET => {
            Reply::json(200, &json!({ "version": version_document(w) }))
        }
        ["v2.1", rest @ ..] if !rest.is_empty() => {
            if !w.token_valid(req.token()) {
                return keystone::unauthorized(w);
            }
            let mv = match microversion(w, req) {
                Ok(v) => v,
                Err(r) => return r,
            };
            w.settle();
            let reply = api(w, req, rest, mv);
            reply
                .with_header("openstack-api-version", &format!("compute {mv}"))
                .with_header("x-openstack-nova-api-version", &mv.to_string())
                .with_header(
                    "vary",
                    "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
                )
        }
        _ => not_found(),
    }
}

fn api(w: &mut World, req: &Req, seg: &[&str], mv: Mv) -> Reply {
    let m = &req.method;
    match seg {
        ["servers", ..] => servers::handle(w, req, &seg[1..], mv),
        ["flavors"] if m == Method::GET => list_flavors(w, req, mv, false),
        ["flavors", "detail"] if m == Method::GET => list_flavors(w, req, mv, true),
        ["flavors", id] if m == Method::GET => match w.flavors.iter().find(|f| f.id == *id) {
            Some(f) => Reply::json(200, &json!({ "flavor": flavor_view(w, f, mv, true) })),
            None => fault(404, format!("Flavor {id} could not be found.")),
        },
        ["flavors", id, "os-extra_specs"] if m == Method::GET => {
            match w.flavors.iter().find(|f| f.id == *id) {
                Some(f) => Reply::json(200, &json!({ "extra_specs": f.extra_specs })),
                None => fault(404, format!("Flavor {id} could not be found.")),
            }
        }
        ["os-keypairs"] if m == Method::GET => list_keypairs(w, req, mv),
        ["os-keypairs"] if m == Method::POST => create_keypair(w, req, mv),
        ["os-keypairs", name] if m == Method::GET => match w.keypairs.get(*name) {
            Some(k) => Reply::json(200, &json!({ "keypair": keypair_view(w, k, mv, true) })),
            None => keypair_not_found(w, name),
        },
        ["os-keypairs", name] if m == Method::DELETE => {
            if w.keypairs.remove(*name).is_none() {
                return keypair_not_found(w, name);
            }
            Reply::empty(if mv.at_least(2, 2) { 204 } else { 202 })
        }
        ["os-availability-zone"] if m == Method::GET => Reply::json(
            200,
            &json!({"availabilityZoneInfo": [
                {"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}
            ]}),
        ),
        ["os-availability-zone", "detail"] if m == Method::GET => fault(
            403,
            "Policy doesn't allow os_compute_api:os-availability-zone:detail to be performed.",
        ),
        ["limits"] if m == Method::GET => limits(w, mv),
        _ => not_found(),
    }
}

/// Nova's `limit` and `marker` query parameters: the page size (capped at the
/// configured maximum) and the marker.
pub(crate) fn page_params<'a>(w: &World, req: &'a Req) -> Result<(usize, Option<&'a str>), Reply> {
    let max = w.settings.max_limit;
    let limit = match req.param("limit") {
        None => max,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return Err(fault(400, "limit param must be positive")),
            Ok(n) => (n as usize).min(max),
            Err(_) => return Err(fault(400, "limit param must be an integer")),
        },
    };
    Ok((limit, req.param("marker")))
}

/// The `next` link of a full page: the request's parameters, sorted, with `marker`
/// set (Nova's `_get_next_link`).
pub(crate) fn next_link(w: &World, req: &Req, collection: &str, marker: &str) -> Value {
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in &req.query {
        match params.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v.clone(),
            None => params.push((k.clone(), v.clone())),
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    match params.iter_mut().find(|(k, _)| k == "marker") {
        Some(p) => p.1 = marker.to_owned(),
        None => params.push(("marker".into(), marker.to_owned())),
    }
    json!([{
        "rel": "next",
        "href": format!("{}/compute/v2.1/{collection}?{}", w.base, urlencode(&params))
    }])
}

fn links(w: &World, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/compute/v2.1/{collection}/{id}", w.base)},
        {"rel": "bookmark", "href": format!("{}/compute/{collection}/{id}", w.base)}
    ])
}

fn flavor_view(w: &World, f: &Flavor, mv: Mv, detail: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(f.id));
    o.insert("links".into(), links(w, "flavors", &f.id));
    o.insert("name".into(), json!(f.name));
    if mv.at_least(2, 55) {
        o.insert("description".into(), json!(f.description));
    }
    if detail {
        o.insert("vcpus".into(), json!(f.vcpus));
        o.insert("ram".into(), json!(f.ram));
        o.insert("disk".into(), json!(f.disk));
        o.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(f.ephemeral));
        o.insert("os-flavor-access:is_public".into(), json!(true));
        let swap = if f.swap == 0 && !mv.at_least(2, 75) {
            json!("")
        } else {
            json!(f.swap)
        };
        o.insert("swap".into(), swap);
        if !mv.at_least(2, 102) {
            o.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
            o.insert("rxtx_factor".into(), json!(1.0));
        }
        if mv.at_least(2, 61) {
            o.insert("extra_specs".into(), json!(f.extra_specs));
        }
    }
    Value::Object(o)
}

fn list_flavors(w: &World, req: &Req, mv: Mv, detail: bool) -> Reply {
    let (limit, marker) = match page_params(w, req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let min = |name: &str| req.param(name).and_then(|v| v.parse::<u32>().ok());
    let (min_disk, min_ram) = (min("minDisk"), min("minRam"));
    let mut flavors: Vec<&Flavor> = w.flavors.iter().collect();
    flavors.sort_by(|a, b| a.id.cmp(&b.id));
    let start = match marker {
        Some(m) => match flavors.iter().position(|f| f.id == m) {
            Some(i) => i + 1,
            None => return fault(400, format!("marker [{m}] not found")),
        },
        None => 0,
    };
    let page: Vec<&Flavor> = flavors[start..]
        .iter()
        .filter(|f| min_disk.is_none_or(|d| f.disk >= d) && min_ram.is_none_or(|r| f.ram >= r))
        .take(limit)
        .copied()
        .collect();
    let mut body = json!({
        "flavors": page.iter().map(|f| flavor_view(w, f, mv, detail)).collect::<Vec<_>>()
    });
    if limit > 0 && page.len() == limit {
        if let Some(last) = page.last() {
            let collection = if detail { "flavors/detail" } else { "flavors" };
            body["flavors_links"] = next_link(w, req, collection, &last.id);
        }
    }
    Reply::json(200, &body)
}

fn keypair_not_found(w: &World, name: &str) -> Reply {
    fault(
        404,
        format!("Keypair {name} not found for user {}", w.user.id),
    )
}

fn keypair_view(w: &World, k: &Keypair, mv: Mv, full: bool) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(k.name));
    o.insert("public_key".into(), json!(k.public_key));
    o.insert("fingerprint".into(), json!(k.fingerprint));
    if mv.at_least(2, 2) {
        o.insert("type".into(), json!(k.kind));
    }
    if full {
        o.insert("user_id".into(), json!(w.user.id));
        o.insert("deleted".into(), json!(false));
        o.insert("created_at".into(), json!(iso_micros_naive(&k.created)));
        o.insert("updated_at".into(), Value::Null);
        o.insert("deleted_at".into(), Value::Null);
        o.insert("id".into(), json!(k.id));
    }
    Value::Object(o)
}

fn list_keypairs(w: &World, req: &Req, mv: Mv) -> Reply {
    let (limit, marker) = if mv.at_least(2, 35) {
        match page_params(w, req) {
            Ok(p) => p,
            Err(r) => return r,
        }
    } else {
        (usize::MAX, None)
    };
    let iter: Box<dyn Iterator<Item = &Keypair>> = match marker {
        Some(m) => {
            if !w.keypairs.contains_key(m) {
                return fault(400, format!("Marker {m} could not be found."));
            }
            Box::new(
                w.keypairs
                    .range::<str, _>((std::ops::Bound::Excluded(m), std::ops::Bound::Unbounded))
                    .map(|(_, k)| k),
            )
        }
        None => Box::new(w.keypairs.values()),
    };
    let page: Vec<&Keypair> = iter.take(limit).collect();
    let mut body = json!({
        "keypairs": page
            .iter()
            .map(|k| json!({ "keypair": keypair_view(w, k, mv, false) }))
            .collect::<Vec<_>>()
    });
    if mv.at_least(2, 35) && limit > 0 && page.len() == limit {
        if let Some(last) = page.last() {
            body["keypairs_links"] = next_link(w, req, "os-keypairs", &last.name);
        }
    }
    Reply::json(200, &body)
}

/// Nova's key pair fingerprint: the MD5 of the key blob, hex pairs joined by colons.
pub(crate) fn fingerprint(public_key: &str) -> Option<String> {
    ssh_key::PublicKey::from_openssh(public_key.trim()).ok()?;
    let blob = public_key.split_whitespace().nth(1)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Md5::digest(&raw);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn create_keypair(w: &mut World, req: &Req, mv: Mv) -> Reply {
    let body = match req.json() {
        Ok(b) => b,
        Err(_) => return fault(400, "Malformed request body"),
    };
    let Some(kp) = body.get("keypair").and_then(Value::as_object) else {
        return invalid("keypair", &body, "'keypair' is a required property");
    };
    let mut allowed = vec!["name", "public_key"];
    if mv.at_least(2, 2) {
        allowed.push("type");
    }
    if mv.at_least(2, 10) {
        allowed.push("user_id");
    }
    if let Some(extra) = kp.keys().find(|k| !allowed.contains(&k.as_str())) {
        return invalid(
            "keypair",
            &body["keypair"],
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        );
    }
    let Some(name_value) = kp.get("name") else {
        return invalid("keypair", &body["keypair"], "'name' is a required property");
    };
    let Some(name) = name_value.as_str() else {
        return invalid(
            "name",
            name_value,
            &format!("{name_value} is not of type 'string'"),
        );
    };
    let (pattern, ok) = if mv.at_least(2, 92) {
        (
            "^[a-zA-Z0-9 @._-]+$",
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || " @._-".contains(c)),
        )
    } else {
        (
            "^[a-zA-Z0-9 _-]+$",
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || " _-".contains(c)),
        )
    };
    if name.is_empty() || name.len() > 255 || !ok {
        return invalid(
            "name",
            name_value,
            &format!("'{name}' does not match '{pattern}'"),
        );
    }
    let kind = kp.get("type").and_then(Value::as_str).unwrap_or("ssh");
    if kind != "ssh" && kind != "x509" {
        return invalid(
            "type",
            &kp["type"],
            &format!("'{kind}' is not one of ['ssh', 'x509']"),
        );
    }
    if let Some(uid) = kp.get("user_id").and_then(Value::as_str) {
        if uid != w.user.id {
            return fault(
                403,
                "Policy doesn't allow os_compute_api:os-keypairs:create to be performed.",
            );
        }
    }
    if w.keypairs.contains_key(name) {
        return fault(409, format!("Key pair '{name}' already exists."));
    }
    if w.keypairs.len() >= 100 {
        return fault(403, "Quota exceeded, too many key pairs.");
    }
    let (public_key, private_key) = match kp.get("public_key") {
        Some(Value::String(pk)) => (pk.clone(), None),
        Some(other) => {
            return invalid(
                "public_key",
                other,
                &format!("{other} is not of type 'string'"),
            )
        }
        None if mv.at_least(2, 92) => {
            return invalid(
                "keypair",
                &body["keypair"],
                "'public_key' is a required property",
            )
        }
        None => match generate(w) {
            Some((public, private)) => (public, Some(private)),
            None => return fault(500, "Unexpected API Error."),
        },
    };
    if kind == "x509" {
        return fault(
            400,
            "Keypair data is invalid: failed to generate fingerprint",
        );
    }
    let Some(fp) = fingerprint(&public_key) else {
        return fault(
            400,
            "Keypair data is invalid: failed to generate fingerprint",
        );
    };
    w.keypair_seq += 1;
    let k = Keypair {
        id: w.keypair_seq,
        name: name.to_owned(),
        kind: kind.to_owned(),
        public_key,
        fingerprint: fp,
        created: chrono::Utc::now(),
    };
    let mut view = keypair_view(w, &k, mv, false);
    view["user_id"] = json!(w.user.id);
    if let Some(p) = private_key {
        view["private_key"] = json!(p);
    }
    w.keypairs.insert(k.name.clone(), k);
    Reply::json(
        if mv.at_least(2, 2) { 201 } else { 200 },
        &json!({ "keypair": view }),
    )
}

/// A new key pair (Ed25519; Nova makes RSA ones, which take long to generate): the
/// OpenSSH public key and the private key.
fn generate(w: &mut World) -> Option<(String, String)> {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&w.ids.bytes());
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = ssh_key::PrivateKey::from(pair);
    key.set_comment("Generated-by-Nova");
    let private = key.to_openssh(ssh_key::LineEnding::LF).ok()?;
    let public = key.public_key().to_openssh().ok()?;
    Some((format!("{public}\n"), private.as_str().to_owned()))
}

fn limits(w: &World, mv: Mv) -> Reply {
    let cores: u32 = w.servers.values().map(|s| s.flavor.vcpus).sum();
    let ram: u32 = w.servers.values().map(|s| s.flavor.ram).sum();
    let mut absolute = json!({
        "maxServerMeta": super::world::MAX_METADATA_ITEMS,
        "maxTotalCores": 20 * w.settings.max_servers,
        "maxTotalInstances": w.settings.max_servers,
        "maxTotalKeypairs": 100,
        "maxTotalRAMSize": 51200 * w.settings.max_servers,
        "maxServerGroups": 10,
        "maxServerGroupMembers": 10,
        "totalCoresUsed": cores,
        "totalInstancesUsed": w.server_count(),
        "totalRAMUsed": ram,
        "totalServerGroupsUsed": 0
    });
    if !mv.at_least(2, 57) {
        absolute["maxPersonality"] = json!(5);
        absolute["maxPersonalitySize"] = json!(10240);
    }
    if !mv.at_least(2, 39) {
        absolute["maxImageMeta"] = json!(128);
    }
    if !mv.at_least(2, 36) {
        for (k, v) in [
            ("maxSecurityGroupRules", 20),
            ("maxSecurityGroups", 10),
            ("maxTotalFloatingIps", 10),
            ("totalFloatingIpsUsed", 0),
            ("totalSecurityGroupsUsed", 0),
        ] {
            absolute[k] = json!(v);
        }
    }
    Reply::json(200, &json!({"limits": {"absolute": absolute, "rate": []}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_novas() {
        // The import sample of Nova's API reference and the fingerprint it answers.
        let key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDx8nkQv/zgGgB4rMYmIf+6A4l6Rr+o/6lHBQdW5aYd44bd8JttDCE/F/pNRr0lRE+PiqSPO8nDPHw0010JeMH9gYgnnFlyY3/OcJ02RhIPyyxYpv9FhY+2YiUkpwFOcLImyrxEsYXpD/0d3ac30bNH6Sw9JD9UZHYcpSxsIbECHw== Generated-by-Nova";
        assert_eq!(
            fingerprint(key).as_deref(),
            Some("1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c")
        );
        assert_eq!(fingerprint("ssh-rsa not-base64"), None);
    }
}
