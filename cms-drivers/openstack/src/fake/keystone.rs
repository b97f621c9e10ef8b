//! Keystone v3 under `/identity`: the version documents and `/v3/auth/tokens`
//! (password and application credential methods, project scope).

use chrono::Utc;
use hyper::Method;
use serde_json::{json, Value};

use super::http::{iso_micros, Reply, Req};
use super::world::World;

/// Keystone's error body: `{"error": {"code", "title", "message"}}`.
pub(crate) fn error(code: u16, title: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"error": {"code": code, "title": title, "message": message}}),
    )
}

const REQUIRES_AUTH: &str = "The request you have made requires authentication.";

/// The answer of keystonemiddleware (in front of every service) to a request without a
/// valid token.
pub(crate) fn unauthorized(w: &World) -> Reply {
    error(401, "Unauthorized", REQUIRES_AUTH).with_header(
        "www-authenticate",
        &format!("Keystone uri=\"{}/identity\"", w.base),
    )
}

fn v3_document(w: &World) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/identity/v3/", w.base)}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"
        }]
    })
}

pub(crate) fn handle(w: &mut World, req: &Req) -> Reply {
    let seg = req.segments("/identity");
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match (&req.method, seg.as_slice()) {
        (&Method::GET, []) => Reply::json(300, &json!({"versions": {"values": [v3_document(w)]}})),
        (&Method::GET, ["v3"]) => Reply::json(200, &json!({"version": v3_document(w)})),
        (&Method::POST, ["v3", "auth", "tokens"]) => issue(w, req),
        (&Method::GET | &Method::HEAD, ["v3", "auth", "tokens"]) => validate(w, req),
        (&Method::DELETE, ["v3", "auth", "tokens"]) => {
            if !w.token_valid(req.token()) {
                return unauthorized(w);
            }
            match req.header("x-subject-token") {
                Some(t) if w.tokens.remove(t).is_some() => Reply::empty(204),
                Some(t) => error(404, "Not Found", &format!("Could not find token: {t}.")),
                None => error(400, "Bad Request", "X-Subject-Token is missing."),
            }
        }
        (_, ["v3", "auth", "tokens"]) | (_, []) | (_, ["v3"]) => error(
            405,
            "Method Not Allowed",
            "The method is not allowed for the requested URL.",
        ),
        _ => error(404, "Not Found", "The resource could not be found."),
    }
}

fn validate(w: &mut World, req: &Req) -> Reply {
    if !w.token_valid(req.token()) {
        return unauthorized(w);
    }
    let subject = req.header("x-subject-token").unwrap_or("");
    if !w.token_valid(Some(subject)) {
        return error(
            404,
            "Not Found",
            &format!("Could not find token: {subject}."),
        );
    }
    let expires = w
        .tokens
        .get(subject)
        .map(|t| chrono::DateTime::<Utc>::from(t.expires))
        .unwrap_or_else(Utc::now);
    let body = token_body(w, &["password"], &expires, None);
    Reply::json(200, &body).with_header("x-subject-token", subject)
}

fn bad_request(message: &str) -> Reply {
    error(400, "Bad Request", message)
}

/// Which user a `{"id"} | {"name", "domain": {"id"|"name"}}` names; `None` when no
/// such user.
fn user_matches(w: &World, user: &Value) -> bool {
    if let Some(id) = user.get("id").and_then(Value::as_str) {
        return id == w.user.id;
    }
    let name = user.get("name").and_then(Value::as_str);
    name == Some(w.user.name.as_str()) && domain_matches(user.get("domain"))
}

fn domain_matches(domain: Option<&Value>) -> bool {
    match domain {
        Some(d) => {
            d.get("id").and_then(Value::as_str) == Some("default")
                || d.get("name").and_then(Value::as_str) == Some("Default")
        }
        None => false,
    }
}

fn issue(w: &mut World, req: &Req) -> Reply {
    let body = match req.json() {
        Ok(b) => b,
        Err(_) => {
            return bad_request(
                "The server could not comply with the request since it is either malformed \
                 or otherwise incorrect. The client is assumed to be in error.",
            )
        }
    };
    let Some(auth) = body.get("auth") else {
        return bad_request("Expecting to find auth in request body.");
    };
    let Some(identity) = auth.get("identity") else {
        return bad_request("Expecting to find identity in auth.");
    };
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if methods.is_empty() {
        return bad_request("Expecting to find methods in identity.");
    }
    let scope = auth.get("scope");
    let mut app_credential = None;
    for method in &methods {
        let Some(data) = identity.get(*method) else {
            return bad_request(&format!("Expecting to find {method} in identity."));
        };
        let ok = match *method {
            "password" => {
                let user = data.get("user").cloned().unwrap_or(Value::Null);
                user_matches(w, &user)
                    && user.get("password").and_then(Value::as_str)
                        == Some(w.user.password.as_str())
            }
            "application_credential" => {
                let secret = data.get("secret").and_then(Value::as_str);
                let named = match data.get("id").and_then(Value::as_str) {
                    Some(id) => id == w.app_credential.id,
                    None => {
                        data.get("name").and_then(Value::as_str)
                            == Some(w.app_credential.name.as_str())
                            && data.get("user").is_some_and(|u| user_matches(w, u))
                    }
                };
                if named && secret == Some(w.app_credential.secret.as_str()) {
                    if scope.is_some() {
                        return error(
                            401,
                            "Unauthorized",
                            "Error authenticating with application credential: Application \
                             credentials cannot request a scope.",
                        );
                    }
                    app_credential = Some(());
                    true
                } else {
                    false
                }
            }
            "token" => {
                let id = data.get("id").and_then(Value::as_str);
                w.token_valid(id)
            }
            other => {
                return error(
                    401,
                    "Unauthorized",
                    &format!("Attempted to authenticate with an unsupported method: {other}."),
                )
            }
        };
        if !ok {
            return error(401, "Unauthorized", REQUIRES_AUTH);
        }
    }
    // The user has the member role on its project only.
    match scope {
        None => {}
        Some(Value::String(s)) if s == "unscoped" => {}
        Some(s) => match s.get("project") {
            Some(p) => {
                let by_id = p.get("id").and_then(Value::as_str);
                let by_name = p.get("name").and_then(Value::as_str);
                let ok = match (by_id, by_name) {
                    (Some(id), _) => id == w.project.id,
                    (None, Some(name)) => name == w.project.name && domain_matches(p.get("domain")),
                    (None, None) => return bad_request("Expecting to find id or name in project."),
                };
                if !ok {
                    return error(401, "Unauthorized", REQUIRES_AUTH);
                }
            }
            None => return error(401, "Unauthorized", REQUIRES_AUTH),
        },
    }
    let (token, expires) = w.issue_token();
    let body = token_body(w, &methods, &expires, app_credential);
    Reply::json(201, &body)
        .with_header("x-subject-token", &token)
        .with_header("vary", "X-Auth-Token")
}

fn token_body(
    w: &mut World,
    methods: &[&str],
    expires: &chrono::DateTime<Utc>,
    app_credential: Option<()>,
) -> Value {
    let now = Utc::now();
    let audit = w.ids.hex_id()[..22].to_owned();
    let catalog: Vec<Value> = w
        .catalog
        .iter()
        .map(|c| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .zip(c.endpoint_ids.iter())
                .map(|(interface, id)| {
                    json!({
                        "id": id,
                        "interface": interface,
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": c.url,
                    })
                })
                .collect();
            json!({"endpoints": endpoints, "id": c.id, "type": c.kind, "name": c.name})
        })
        .collect();
    let domain = json!({"id": "default", "name": "Default"});
    let mut token = json!({
        "audit_ids": [audit],
        "catalog": catalog,
        "expires_at": iso_micros(expires),
        "issued_at": iso_micros(&now),
        "is_domain": false,
        "methods": methods,
        "project": {"domain": domain, "id": w.project.id, "name": w.project.name},
        "roles": [
            {"id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "member"},
            {"id": "a8d1ab9f4a7b4bd3a5e3b1e6d3c0b9f2", "name": "reader"}
        ],
        "user": {
            "domain": domain,
            "id": w.user.id,
            "name": w.user.name,
            "password_expires_at": null
        }
    });
    if app_credential.is_some() {
        token["application_credential"] = json!({
            "id": w.app_credential.id,
            "name": w.app_credential.name,
            "restricted": true
        });
    }
    json!({ "token": token })
}
