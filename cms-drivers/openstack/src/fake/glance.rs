//! Glance's image API v2 under `/image`: the versions document, listing (paged, newest
//! first) and showing images the project may see.

use hyper::Method;
use serde_json::{json, Map, Value};

use super::http::{iso_seconds, urlencode, Reply, Req};
use super::keystone;
use super::world::{Image, World};

/// Glance's default page size (`limit_param_default`), under the configured cap.
const DEFAULT_LIMIT: usize = 25;

/// An error page as webob writes it for Glance: JSON when the client prefers it, else
/// HTML, or plain text when asked for.
pub(crate) fn error(req: &Req, code: u16, explanation: &str) -> Reply {
    let title = match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let status = format!("{code} {title}");
    let body = format!("{explanation}<br /><br />\n\n\n");
    let accept = req.header("accept").unwrap_or("").to_ascii_lowercase();
    let html_pos = accept.find("text/html").or(accept.find("*/*"));
    let json_pos = accept.find("application/json");
    match (json_pos, html_pos) {
        (Some(j), h) if h.is_none_or(|h| j < h) => Reply::json(
            code,
            &json!({"message": body, "code": status, "title": title}),
        ),
        _ if accept.contains("text/plain") && !accept.contains("text/html") => Reply::text(
            code,
            "text/plain; charset=UTF-8",
            format!("{status}\n\n{}", body.replace("<br />", "\n")),
        ),
        _ => Reply::text(
            code,
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  \
                 <h1>{status}</h1>\n  {body}\n </body>\n</html>"
            ),
        ),
    }
}

fn versions(w: &World) -> Value {
    let href = format!("{}/image/v2/", w.base);
    let list: Vec<Value> = (0..=16)
        .rev()
        .map(|minor| {
            json!({
                "id": format!("v2.{minor}"),
                "status": if minor == 16 { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": href}]
            })
        })
        .collect();
    json!({ "versions": list })
}

pub(crate) fn handle(w: &mut World, req: &Req) -> Reply {
    let seg = req.segments("/image");
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let get = req.method == Method::GET;
    match seg.as_slice() {
        [] if get => Reply::json(300, &versions(w)),
        ["versions"] if get => Reply::json(200, &versions(w)),
        ["v2", rest @ ..] => {
            if !w.token_valid(req.token()) {
                return keystone::unauthorized(w);
            }
            match rest {
                ["images"] if get => list(w, req),
                ["images", id] if get => match w.images.iter().find(|i| i.id == *id) {
                    Some(i) if w.image_visible(i) => Reply::json(200, &view(i)),
                    _ => error(req, 404, &format!("No image found with ID {id}")),
                },
                ["images", ..] => {
                    error(req, 405, "The method is not allowed for the requested URL.")
                }
                _ => error(req, 404, "The resource could not be found."),
            }
        }
        _ => error(req, 404, "The resource could not be found."),
    }
}

fn view(i: &Image) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(i.id));
    o.insert("name".into(), json!(i.name));
    o.insert("status".into(), json!("active"));
    o.insert("visibility".into(), json!(i.visibility));
    o.insert("owner".into(), json!(i.owner));
    o.insert("tags".into(), json!([]));
    o.insert("container_format".into(), json!("bare"));
    o.insert("disk_format".into(), json!(i.disk_format));
    o.insert("created_at".into(), json!(iso_seconds(&i.created)));
    o.insert("updated_at".into(), json!(iso_seconds(&i.updated)));
    o.insert("min_disk".into(), json!(i.min_disk));
    o.insert("min_ram".into(), json!(i.min_ram));
    o.insert("protected".into(), json!(false));
    o.insert("os_hidden".into(), json!(false));
    o.insert("checksum".into(), json!(i.checksum));
    o.insert("os_hash_algo".into(), json!("sha512"));
    o.insert("os_hash_value".into(), json!(i.hash));
    o.insert("size".into(), json!(i.size));
    o.insert("virtual_size".into(), json!(i.virtual_size));
    o.insert("self".into(), json!(format!("/v2/images/{}", i.id)));
    o.insert("file".into(), json!(format!("/v2/images/{}/file", i.id)));
    o.insert("schema".into(), json!("/v2/schemas/image"));
    // Extra properties are top-level string members.
    for (k, v) in &i.properties {
        o.insert(k.clone(), json!(v));
    }
    Value::Object(o)
}

fn list(w: &World, req: &Req) -> Reply {
    let cap = w.settings.max_limit;
    let limit = match req.param("limit") {
        None => DEFAULT_LIMIT.min(cap),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return error(req, 400, "limit param must be positive"),
            Ok(n) => (n as usize).min(cap),
            Err(_) => return error(req, 400, "limit param must be an integer"),
        },
    };
    // Newest first, then id descending (Glance's default sort).
    let mut images: Vec<&Image> = w.images.iter().filter(|i| w.image_visible(i)).collect();
    images.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
    let start = match req.param("marker") {
        Some(m) => match images.iter().position(|i| i.id == m) {
            Some(p) => p + 1,
            None => return error(req, 400, &format!("No image found with ID {m}")),
        },
        None => 0,
    };
    let eq = |name: &str, value: &str| req.param(name).is_none_or(|v| v == value);
    let page: Vec<&Image> = images[start..]
        .iter()
        .filter(|i| {
            eq("name", &i.name)
                && eq("visibility", i.visibility)
                && eq("owner", &i.owner)
                && eq("status", "active")
                && eq("disk_format", i.disk_format)
        })
        .take(limit)
        .copied()
        .collect();
    let mut params: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    let first = if params.is_empty() {
        "/v2/images".to_owned()
    } else {
        format!("/v2/images?{}", urlencode(&params))
    };
    let mut body = json!({
        "images": page.iter().map(|i| view(i)).collect::<Vec<_>>(),
        "first": first,
        "schema": "/v2/schemas/images",
    });
    if limit > 0 && page.len() == limit {
        if let Some(last) = page.last() {
            params.push(("marker".into(), last.id.clone()));
            body["next"] = json!(format!("/v2/images?{}", urlencode(&params)));
        }
    }
    Reply::json(200, &body)
}
