//! Nova's `/servers`: listing (paged, filtered, in Nova's default order), show, create,
//! update, delete, actions, metadata and tags; each answer shaped by the microversion.

use base64::Engine as _;
use chrono::Utc;
use hyper::Method;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;

use super::http::{iso_micros_naive, iso_seconds, Reply, Req};
use super::nova::{fault, invalid, next_link, not_found, page_params, Mv};
use super::pattern::Pattern;
use super::world::{Effect, NewServer, Server, World, MAX_METADATA_ITEMS, RUNNING, SHUTDOWN};

const MAX_TAGS: usize = 50;

pub(crate) fn handle(w: &mut World, req: &Req, seg: &[&str], mv: Mv) -> Reply {
    let m = &req.method;
    match seg {
        [] if m == Method::GET => list(w, req, mv, false),
        [] if m == Method::POST => create(w, req, mv),
        ["detail"] if m == Method::GET => list(w, req, mv, true),
        [id, rest @ ..] => {
            let id = *id;
            if !w.servers.contains_key(id) {
                return if rest.is_empty()
                    || matches!(rest, ["action"] | ["metadata", ..] | ["tags", ..] | ["ips"])
                {
                    instance_not_found(id)
                } else {
                    not_found()
                };
            }
            match rest {
                [] if m == Method::GET => show(w, id, mv),
                [] if m == Method::PUT => update(w, req, id, mv),
                [] if m == Method::DELETE => delete(w, id),
                ["action"] if m == Method::POST => action(w, req, id),
                ["ips"] if m == Method::GET => {
                    let s = &w.servers[id];
                    Reply::json(200, &json!({ "addresses": addresses(w, s) }))
                }
                ["metadata", ..] => metadata(w, req, id, &rest[1..]),
                ["tags", ..] if mv.at_least(2, 26) => tags(w, req, id, &rest[1..]),
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn instance_not_found(id: &str) -> Reply {
    fault(404, format!("Instance {id} could not be found."))
}

fn conflict(action: &str, id: &str, attr: &str, state: Option<&str>) -> Reply {
    fault(
        409,
        format!(
            "Cannot '{action}' instance {id} while it is in {attr} {}",
            state.unwrap_or("None")
        ),
    )
}

// ----- views ---------------------------------------------------------------------

fn server_links(w: &World, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/compute/v2.1/servers/{id}", w.base)},
        {"rel": "bookmark", "href": format!("{}/compute/servers/{id}", w.base)}
    ])
}

/// `{"<network name>": [{"version", "addr", "OS-EXT-IPS:type", "OS-EXT-IPS-MAC:mac_addr"}]}`
/// once the server's ports are bound (on a host).
fn addresses(w: &World, s: &Server) -> Value {
    let mut out = Map::new();
    if s.host.is_none() {
        return Value::Object(out);
    }
    for pid in &s.ports {
        let Some(p) = w.ports.get(pid) else { continue };
        let name = w
            .networks
            .get(&p.network_id)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let list = out.entry(name).or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            for (_, ip) in &p.fixed_ips {
                list.push(json!({
                    "version": 4,
                    "addr": ip.to_string(),
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": p.mac
                }));
            }
        }
    }
    Value::Object(out)
}

/// Nova's `hostId`: SHA-224 of the project id and the host, hex; empty without a host.
fn host_id(w: &World, s: &Server) -> String {
    match &s.host {
        Some(h) => {
            let mut d = Sha224::new();
            d.update(w.project.id.as_bytes());
            d.update(h.as_bytes());
            super::http::hex(&d.finalize())
        }
        None => String::new(),
    }
}

fn hostname(name: &str) -> String {
    let mut h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    h = h.trim_matches('-').to_owned();
    h.truncate(63);
    h
}

/// A server as `GET /servers/{id}` and `/servers/detail` show it to a project member at
/// microversion `mv` (no admin-only `OS-EXT-SRV-ATTR:*` fields, nor `host_status`).
pub(crate) fn server_view(w: &World, s: &Server, mv: Mv) -> Value {
    let mut o = Map::new();
    let status = s.status();
    o.insert("id".into(), json!(s.id));
    o.insert("name".into(), json!(s.name));
    o.insert("status".into(), json!(status));
    o.insert("tenant_id".into(), json!(w.project.id));
    o.insert("user_id".into(), json!(w.user.id));
    o.insert("metadata".into(), json!(s.metadata));
    o.insert("hostId".into(), json!(host_id(w, s)));
    let mut image = json!({
        "id": s.image_id,
        "links": [{
            "rel": "bookmark",
            "href": format!("{}/compute/images/{}", w.base, s.image_id)
        }]
    });
    if mv.at_least(2, 98) {
        let props = w
            .images
            .iter()
            .find(|i| i.id == s.image_id)
            .map(|i| json!(i.properties))
            .unwrap_or_else(|| json!({}));
        image["properties"] = props;
    }
    o.insert("image".into(), image);
    let flavor = if mv.at_least(2, 47) {
        json!({
            "vcpus": s.flavor.vcpus,
            "ram": s.flavor.ram,
            "disk": s.flavor.disk,
            "ephemeral": s.flavor.ephemeral,
            "swap": s.flavor.swap,
            "original_name": s.flavor.name,
            "extra_specs": s.flavor.extra_specs
        })
    } else {
        json!({
            "id": s.flavor.id,
            "links": [{
                "rel": "bookmark",
                "href": format!("{}/compute/flavors/{}", w.base, s.flavor.id)
            }]
        })
    };
    o.insert("flavor".into(), flavor);
    o.insert("created".into(), json!(iso_seconds(&s.created)));
    o.insert("updated".into(), json!(iso_seconds(&s.updated)));
    o.insert("addresses".into(), addresses(w, s));
    o.insert("accessIPv4".into(), json!(s.access_ipv4));
    o.insert("accessIPv6".into(), json!(s.access_ipv6));
    o.insert("links".into(), server_links(w, &s.id));
    o.insert("OS-DCF:diskConfig".into(), json!(s.disk_config));
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        o.insert("progress".into(), json!(0));
    }
    let az = if s.host.is_some() {
        s.availability_zone.clone()
    } else {
        s.pinned_availability_zone.clone().unwrap_or_default()
    };
    o.insert("OS-EXT-AZ:availability_zone".into(), json!(az));
    o.insert("config_drive".into(), json!(s.config_drive));
    o.insert("key_name".into(), json!(s.key_name));
    o.insert(
        "OS-SRV-USG:launched_at".into(),
        json!(s.launched_at.as_ref().map(iso_micros_naive)),
    );
    o.insert("OS-SRV-USG:terminated_at".into(), Value::Null);
    if !s.security_groups.is_empty() {
        o.insert(
            "security_groups".into(),
            json!(s
                .security_groups
                .iter()
                .map(|g| json!({ "name": g }))
                .collect::<Vec<_>>()),
        );
    }
    o.insert("OS-EXT-STS:task_state".into(), json!(s.task_state));
    o.insert("OS-EXT-STS:vm_state".into(), json!(s.vm_state));
    o.insert("OS-EXT-STS:power_state".into(), json!(s.power_state));
    o.insert("os-extended-volumes:volumes_attached".into(), json!([]));
    if let Some(message) = &s.fault {
        o.insert(
            "fault".into(),
            json!({"code": 500, "created": iso_seconds(&s.updated), "message": message}),
        );
    }
    if mv.at_least(2, 9) {
        o.insert("locked".into(), json!(false));
    }
    if mv.at_least(2, 19) {
        o.insert("description".into(), json!(s.description));
    }
    if mv.at_least(2, 26) {
        o.insert("tags".into(), json!(s.tags));
    }
    if mv.at_least(2, 63) {
        o.insert("trusted_image_certificates".into(), Value::Null);
    }
    if mv.at_least(2, 71) {
        o.insert("server_groups".into(), json!([]));
    }
    if mv.at_least(2, 73) {
        o.insert("locked_reason".into(), Value::Null);
    }
    if mv.at_least(2, 90) {
        o.insert("OS-EXT-SRV-ATTR:hostname".into(), json!(hostname(&s.name)));
    }
    if mv.at_least(2, 96) {
        o.insert(
            "pinned_availability_zone".into(),
            json!(s.pinned_availability_zone),
        );
    }
    if mv.at_least(2, 100) {
        o.insert("scheduler_hints".into(), json!({}));
    }
    Value::Object(o)
}

fn brief_view(w: &World, s: &Server) -> Value {
    json!({"id": s.id, "name": s.name, "links": server_links(w, &s.id)})
}

// ----- listing -------------------------------------------------------------------

/// The filters of `GET /servers` a project member may use.
struct Filters {
    status: Option<String>,
    name: Option<Pattern>,
    ip: Option<Pattern>,
    image: Option<String>,
    flavor: Option<String>,
    tags: Vec<String>,
    tags_any: Vec<String>,
    not_tags: Vec<String>,
    not_tags_any: Vec<String>,
    availability_zone: Option<String>,
    key_name: Option<String>,
    vm_state: Option<String>,
    task_state: Option<String>,
}

impl Filters {
    fn new(req: &Req, mv: Mv) -> Filters {
        let list = |name: &str| -> Vec<String> {
            if !mv.at_least(2, 26) {
                return Vec::new();
            }
            req.param(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        // Nova 2.83 lets project members filter on these too.
        let v283 = |name: &str| {
            if mv.at_least(2, 83) {
                req.param(name).map(str::to_owned)
            } else {
                None
            }
        };
        Filters {
            status: req.param("status").map(|s| s.to_ascii_uppercase()),
            name: req.param("name").map(Pattern::new),
            ip: req.param("ip").map(Pattern::new),
            image: req.param("image").map(|s| last_segment(s).to_owned()),
            flavor: req.param("flavor").map(|s| last_segment(s).to_owned()),
            tags: list("tags"),
            tags_any: list("tags-any"),
            not_tags: list("not-tags"),
            not_tags_any: list("not-tags-any"),
            availability_zone: v283("availability_zone"),
            key_name: v283("key_name"),
            vm_state: v283("vm_state"),
            task_state: v283("task_state"),
        }
    }

    fn matches(&self, w: &World, s: &Server) -> bool {
        if let Some(st) = &self.status {
            if s.status() != st {
                return false;
            }
        }
        if let Some(p) = &self.name {
            if !p.is_match(&s.name) {
                return false;
            }
        }
        if let Some(p) = &self.ip {
            let hit = s.ports.iter().filter_map(|id| w.ports.get(id)).any(|port| {
                port.fixed_ips
                    .iter()
                    .any(|(_, ip)| p.is_match(&ip.to_string()))
            });
            if !hit {
                return false;
            }
        }
        if self.image.as_ref().is_some_and(|i| *i != s.image_id)
            || self.flavor.as_ref().is_some_and(|f| *f != s.flavor.id)
            || self
                .availability_zone
                .as_ref()
                .is_some_and(|z| *z != s.availability_zone)
            || self
                .key_name
                .as_ref()
                .is_some_and(|k| Some(k) != s.key_name.as_ref())
            || self.vm_state.as_ref().is_some_and(|v| v != s.vm_state)
            || self
                .task_state
                .as_ref()
                .is_some_and(|t| Some(t.as_str()) != s.task_state)
        {
            return false;
        }
        let has = |t: &String| s.tags.contains(t);
        if !self.tags.is_empty() && !self.tags.iter().all(has) {
            return false;
        }
        if !self.tags_any.is_empty() && !self.tags_any.iter().any(has) {
            return false;
        }
        if !self.not_tags.is_empty() && self.not_tags.iter().all(has) {
            return false;
        }
        if !self.not_tags_any.is_empty() && self.not_tags_any.iter().any(has) {
            return false;
        }
        true
    }
}

fn last_segment(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
}

/// `GET /servers[/detail]`: newest first (created_at, then id, descending), `limit`
/// capped, a `servers_links` next link when the page is full.
fn list(w: &World, req: &Req, mv: Mv, detail: bool) -> Reply {
    let (limit, marker) = match page_params(w, req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let filters = Filters::new(req, mv);
    let upper = match marker {
        Some(m) => {
            let sort = match w.servers.get(m) {
                Some(s) => s.sort,
                None => match w.tombstones.get(m) {
                    Some(sort) => *sort,
                    None => return fault(400, format!("marker [{m}] not found")),
                },
            };
            Some((sort, m.to_owned()))
        }
        None => None,
    };
    let keys: Box<dyn Iterator<Item = &(i64, String)>> = match &upper {
        Some(u) => Box::new(w.order.range(..u.clone()).rev()),
        None => Box::new(w.order.iter().rev()),
    };
    let mut page: Vec<&Server> = Vec::new();
    if limit > 0 {
        for (_, id) in keys {
            let Some(s) = w.servers.get(id) else { continue };
            if filters.matches(w, s) {
                page.push(s);
                if page.len() == limit {
                    break;
                }
            }
        }
    }
    let items: Vec<Value> = page
        .iter()
        .map(|s| {
            if detail {
                server_view(w, s, mv)
            } else {
                brief_view(w, s)
            }
        })
        .collect();
    let mut body = Map::new();
    body.insert("servers".into(), Value::Array(items));
    if limit > 0 && page.len() == limit {
        if let Some(last) = page.last() {
            let collection = if detail { "servers/detail" } else { "servers" };
            body.insert(
                "servers_links".into(),
                next_link(w, req, collection, &last.id),
            );
        }
    }
    Reply::raw_json(200, serde_json::to_vec(&body).unwrap_or_default())
}

fn show(w: &World, id: &str, mv: Mv) -> Reply {
    let s = &w.servers[id];
    Reply::json(200, &json!({ "server": server_view(w, s, mv) }))
}

// ----- create --------------------------------------------------------------------

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    let dashed = b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b.iter()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit());
    dashed || (b.len() == 32 && b.iter().all(u8::is_ascii_hexdigit))
}

/// A reference (`"1"`, `7`, or a link ending in the id) as an id.
fn reference(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(last_segment(s).to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn check_metadata(value: &Value) -> Result<BTreeMap<String, String>, Reply> {
    let Some(map) = value.as_object() else {
        return Err(invalid(
            "metadata",
            value,
            &format!("{value} is not of type 'object'"),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if k.is_empty() || k.chars().count() > 255 {
            return Err(invalid(
                "metadata",
                value,
                &format!("'{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"),
            ));
        }
        let Some(s) = v.as_str() else {
            return Err(invalid(
                &format!("metadata/{k}"),
                v,
                &format!("{v} is not of type 'string'"),
            ));
        };
        if s.chars().count() > 255 {
            return Err(invalid(
                &format!("metadata/{k}"),
                v,
                &format!("'{s}' is too long"),
            ));
        }
        out.insert(k.clone(), s.to_owned());
    }
    if out.len() > MAX_METADATA_ITEMS {
        return Err(fault(
            403,
            format!("Maximum number of metadata items exceeds {MAX_METADATA_ITEMS}"),
        ));
    }
    Ok(out)
}

fn check_tag(value: &Value) -> Result<String, Reply> {
    let Some(t) = value.as_str() else {
        return Err(invalid(
            "tags",
            value,
            &format!("{value} is not of type 'string'"),
        ));
    };
    if t.is_empty() || t.chars().count() > 60 || t.contains('/') || t.contains(',') {
        return Err(invalid(
            "tags",
            value,
            &format!("'{t}' does not match '^[^,/]*$'"),
        ));
    }
    Ok(t.to_owned())
}

fn check_tags(value: &Value) -> Result<Vec<String>, Reply> {
    let Some(list) = value.as_array() else {
        return Err(invalid(
            "tags",
            value,
            &format!("{value} is not of type 'array'"),
        ));
    };
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let t = check_tag(t)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(invalid("tags", value, &format!("{value} is too long")));
    }
    Ok(out)
}

/// The properties `POST /servers` accepts in `server` at `mv` (Nova's schema is closed).
fn create_properties(mv: Mv) -> Vec<&'static str> {
    let mut p = vec![
        "name",
        "imageRef",
        "flavorRef",
        "adminPass",
        "metadata",
        "networks",
        "OS-DCF:diskConfig",
        "accessIPv4",
        "accessIPv6",
        "key_name",
        "user_data",
        "availability_zone",
        "block_device_mapping",
        "block_device_mapping_v2",
        "config_drive",
        "security_groups",
        "min_count",
        "max_count",
        "return_reservation_id",
    ];
    if !mv.at_least(2, 57) {
        p.push("personality");
    }
    if mv.at_least(2, 19) {
        p.push("description");
    }
    if mv.at_least(2, 52) {
        p.push("tags");
    }
    if mv.at_least(2, 63) {
        p.push("trusted_image_certificates");
    }
    if mv.at_least(2, 74) {
        p.push("host");
        p.push("hypervisor_hostname");
    }
    if mv.at_least(2, 90) {
        p.push("hostname");
    }
    p
}

/// The networks a server gets when none are named (or `"auto"`): the project's own
/// and the shared ones, external networks left out; more than one is ambiguous.
fn default_networks(w: &World, auto: bool) -> Result<Vec<String>, Reply> {
    let candidates: Vec<&String> = w
        .networks
        .values()
        .filter(|n| n.shared || (n.project_id == w.project.id && !n.external))
        .map(|n| &n.id)
        .collect();
    match candidates.len() {
        0 if auto => Err(fault(
            400,
            format!(
                "Unable to automatically allocate a network for project {}",
                w.project.id
            ),
        )),
        0 => Ok(Vec::new()),
        1 => Ok(vec![candidates[0].clone()]),
        _ => Err(fault(
            409,
            "More than one possible network found. Specify network ID(s) to select which \
             one(s) to connect to.",
        )),
    }
}

fn requested_networks(
    w: &World,
    server: &Map<String, Value>,
    mv: Mv,
) -> Result<Vec<String>, Reply> {
    let value = server.get("networks");
    let value = match value {
        None if mv.at_least(2, 37) => {
            return Err(invalid(
                "server",
                &Value::Object(server.clone()),
                "'networks' is a required property",
            ))
        }
        None => return default_networks(w, false),
        Some(v) => v,
    };
    match value {
        Value::String(s) if mv.at_least(2, 37) && s == "none" => Ok(Vec::new()),
        Value::String(s) if mv.at_least(2, 37) && s == "auto" => default_networks(w, true),
        Value::Array(list) => {
            if list.is_empty() {
                return default_networks(w, false);
            }
            let mut out = Vec::new();
            for item in list {
                let Some(obj) = item.as_object() else {
                    return Err(invalid(
                        "networks",
                        value,
                        &format!("{item} is not of type 'object'"),
                    ));
                };
                if let Some(port) = obj.get("port").and_then(Value::as_str) {
                    return Err(fault(400, format!("Port id {port} could not be found.")));
                }
                let Some(uuid) = obj.get("uuid").and_then(Value::as_str) else {
                    return Err(fault(
                        400,
                        "Bad networks format: network uuid is not in proper format ()",
                    ));
                };
                if !is_uuid(uuid) {
                    return Err(fault(
                        400,
                        format!(
                            "Bad networks format: network uuid is not in proper format ({uuid})"
                        ),
                    ));
                }
                let Some(n) = w.networks.get(uuid).filter(|n| w.network_visible(n)) else {
                    return Err(fault(400, format!("Network {uuid} could not be found.")));
                };
                if n.external && !n.shared && n.project_id != w.project.id {
                    return Err(fault(
                        403,
                        format!(
                            "It is not allowed to create an interface on external network {uuid}"
                        ),
                    ));
                }
                if n.subnets.is_empty() {
                    return Err(fault(
                        400,
                        format!("Network {uuid} requires a subnet in order to boot instances on."),
                    ));
                }
                out.push(uuid.to_owned());
            }
            Ok(out)
        }
        other => {
            let why = if mv.at_least(2, 37) {
                format!("{other} is not valid under any of the given schemas")
            } else {
                format!("{other} is not of type 'array'")
            };
            Err(invalid("networks", other, &why))
        }
    }
}

fn count_param(server: &Map<String, Value>, name: &str) -> Result<Option<usize>, Reply> {
    match server.get(name) {
        None => Ok(None),
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse::<u64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n >= 1 => Ok(Some(n as usize)),
                _ => Err(invalid(
                    name,
                    v,
                    &format!("{v} is less than the minimum of 1"),
                )),
            }
        }
    }
}

fn create(w: &mut World, req: &Req, mv: Mv) -> Reply {
    let body = match req.json() {
        Ok(b) => b,
        Err(_) => return fault(400, "Malformed request body"),
    };
    let Some(server) = body.get("server").and_then(Value::as_object).cloned() else {
        return invalid("server", &body, "'server' is a required property");
    };
    let whole = Value::Object(server.clone());
    let allowed = create_properties(mv);
    if let Some(extra) = server.keys().find(|k| !allowed.contains(&k.as_str())) {
        return invalid(
            "server",
            &whole,
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        );
    }
    // The schema first, as Nova checks it.
    let name = match server.get("name") {
        None => return invalid("server", &whole, "'name' is a required property"),
        Some(Value::String(n)) if !n.is_empty() && n.chars().count() <= 255 => n.clone(),
        Some(v) => return invalid("name", v, &format!("{v} is not a valid name")),
    };
    let Some(flavor_ref) = server.get("flavorRef") else {
        return invalid("server", &whole, "'flavorRef' is a required property");
    };
    let Some(flavor_id) = reference(flavor_ref) else {
        return invalid(
            "flavorRef",
            flavor_ref,
            &format!("{flavor_ref} is not of type 'string', 'integer'"),
        );
    };
    let metadata = match server.get("metadata") {
        Some(v) => match check_metadata(v) {
            Ok(m) => m,
            Err(r) => return r,
        },
        None => BTreeMap::new(),
    };
    let tags = match server.get("tags") {
        Some(v) => match check_tags(v) {
            Ok(t) => t,
            Err(r) => return r,
        },
        None => Vec::new(),
    };
    let description = match server.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() <= 255 => Some(d.clone()),
        Some(v) => return invalid("description", v, &format!("{v} is not a valid description")),
    };
    let user_data = match server.get("user_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => {
            let compact: String = u.chars().filter(|c| !c.is_whitespace()).collect();
            if u.len() > 65535
                || base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .is_err()
            {
                return invalid("user_data", &json!(u), &format!("'{u}' is not a 'base64'"));
            }
            Some(u.clone())
        }
        Some(v) => return invalid("user_data", v, &format!("{v} is not of type 'string'")),
    };
    let disk_config = match server.get("OS-DCF:diskConfig") {
        None => "MANUAL".to_owned(),
        Some(Value::String(d)) if d == "AUTO" || d == "MANUAL" => d.clone(),
        Some(v) => {
            return invalid(
                "OS-DCF:diskConfig",
                v,
                &format!("{v} is not one of ['AUTO', 'MANUAL']"),
            )
        }
    };
    let (min_count, max_count) = match (
        count_param(&server, "min_count"),
        count_param(&server, "max_count"),
    ) {
        (Ok(a), Ok(b)) => {
            let min = a.unwrap_or(1);
            (min, b.unwrap_or(min))
        }
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if min_count > max_count {
        return fault(400, "min_count must be <= max_count");
    }
    let security_groups: Vec<String> = match server.get("security_groups") {
        None => vec!["default".into()],
        Some(Value::Array(list)) => {
            let mut names: Vec<String> = Vec::new();
            for g in list {
                if let Some(n) = g.get("name").and_then(Value::as_str) {
                    if !names.iter().any(|x| x == n) {
                        names.push(n.to_owned());
                    }
                }
            }
            names
        }
        Some(v) => return invalid("security_groups", v, &format!("{v} is not of type 'array'")),
    };
    if let Some(bad) = security_groups.iter().find(|g| g.as_str() != "default") {
        return fault(400, format!("Security group {bad} not found."));
    }
    // Then what the request names.
    let Some(flavor) = w.flavors.iter().find(|f| f.id == flavor_id).cloned() else {
        return fault(400, format!("Flavor {flavor_id} could not be found."));
    };
    let image_id =
        match server.get("imageRef").and_then(reference) {
            Some(i) if !i.is_empty() => i,
            _ => return fault(
                400,
                "Block Device Mapping is Invalid: Boot sequence for the instance and image/block \
                 device mapping combination is not valid.",
            ),
        };
    match w.images.iter().find(|i| i.id == image_id) {
        Some(i) if w.image_visible(i) => {
            if flavor.disk > 0 && i.min_disk > flavor.disk {
                return fault(400, "Flavor's disk is too small for requested image.");
            }
        }
        _ => return fault(400, "Can not find requested image"),
    }
    let key_name = match server.get("key_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => {
            if !w.keypairs.contains_key(k) {
                return fault(400, "Invalid key_name provided.");
            }
            Some(k.clone())
        }
        Some(v) => return invalid("key_name", v, &format!("{v} is not of type 'string'")),
    };
    let availability_zone = match server.get("availability_zone") {
        None | Some(Value::Null) => None,
        Some(Value::String(z)) => {
            let zone = z.split(':').next().unwrap_or("");
            if zone != "nova" {
                return fault(400, "The requested availability zone is not available");
            }
            Some(zone.to_owned())
        }
        Some(v) => {
            return invalid(
                "availability_zone",
                v,
                &format!("{v} is not of type 'string'"),
            )
        }
    };
    let networks = match requested_networks(w, &server, mv) {
        Ok(n) => n,
        Err(r) => return r,
    };
    // Quota: as many as fit, at least min_count.
    let used = w.server_count();
    let max = w.settings.max_servers;
    if used + min_count > max {
        return fault(
            403,
            format!(
                "Quota exceeded for instances: Requested {min_count}, but already used {used} \
                 of {max} instances"
            ),
        );
    }
    let count = max_count.min(max - used);
    let text = |k: &str| {
        server
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let config_drive = match server.get("config_drive") {
        Some(Value::Bool(true)) => "True".to_owned(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let admin_pass = server
        .get("adminPass")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let now = Utc::now();
    let mut first = None;
    for i in 0..count {
        let spec = NewServer {
            name: if count > 1 {
                format!("{name}-{}", i + 1)
            } else {
                name.clone()
            },
            description: description.clone(),
            image_id: image_id.clone(),
            flavor: flavor.clone(),
            key_name: key_name.clone(),
            metadata: metadata.clone(),
            tags: tags.clone(),
            availability_zone: availability_zone.clone(),
            user_data: user_data.clone(),
            disk_config: disk_config.clone(),
            access_ipv4: text("accessIPv4"),
            access_ipv6: text("accessIPv6"),
            config_drive: config_drive.clone(),
            networks: networks.clone(),
            security_groups: security_groups.clone(),
        };
        let id = w.add_server(spec, now);
        if let (Some(p), Some(s)) = (&admin_pass, w.servers.get_mut(&id)) {
            s.admin_pass = p.clone();
        }
        first.get_or_insert(id);
    }
    let Some(id) = first else {
        return fault(500, "Unexpected API Error.");
    };
    if server.get("return_reservation_id") == Some(&Value::Bool(true)) {
        let r = format!("r-{}", &w.ids.hex_id()[..8]);
        return Reply::json(202, &json!({ "reservation_id": r }));
    }
    let s = &w.servers[&id];
    let mut view = json!({
        "id": s.id,
        "links": server_links(w, &s.id),
        "OS-DCF:diskConfig": s.disk_config,
        "adminPass": s.admin_pass,
    });
    if !s.security_groups.is_empty() {
        view["security_groups"] = json!(s
            .security_groups
            .iter()
            .map(|g| json!({ "name": g }))
            .collect::<Vec<_>>());
    }
    Reply::json(202, &json!({ "server": view })).with_header(
        "location",
        &format!("{}/compute/v2.1/servers/{}", w.base, s.id),
    )
}

fn update(w: &mut World, req: &Req, id: &str, mv: Mv) -> Reply {
    let body = match req.json() {
        Ok(b) => b,
        Err(_) => return fault(400, "Malformed request body"),
    };
    let Some(changes) = body.get("server").and_then(Value::as_object).cloned() else {
        return invalid("server", &body, "'server' is a required property");
    };
    let mut allowed = vec!["name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"];
    if mv.at_least(2, 19) {
        allowed.push("description");
    }
    if mv.at_least(2, 90) {
        allowed.push("hostname");
    }
    if let Some(extra) = changes.keys().find(|k| !allowed.contains(&k.as_str())) {
        return invalid(
            "server",
            &body["server"],
            &format!("Additional properties are not allowed ('{extra}' was unexpected)"),
        );
    }
    let Some(s) = w.servers.get_mut(id) else {
        return instance_not_found(id);
    };
    for (k, v) in &changes {
        match (k.as_str(), v) {
            ("name", Value::String(n)) if !n.is_empty() && n.chars().count() <= 255 => {
                s.name = n.clone()
            }
            ("description", Value::Null) => s.description = None,
            ("description", Value::String(d)) if d.chars().count() <= 255 => {
                s.description = Some(d.clone())
            }
            ("accessIPv4", Value::String(a)) => s.access_ipv4 = a.clone(),
            ("accessIPv6", Value::String(a)) => s.access_ipv6 = a.clone(),
            ("OS-DCF:diskConfig", Value::String(d)) if d == "AUTO" || d == "MANUAL" => {
                s.disk_config = d.clone()
            }
            ("hostname", Value::String(_)) => {}
            (k, v) => return invalid(k, v, &format!("{v} is not valid for {k}")),
        }
    }
    s.updated = Utc::now();
    show(w, id, mv)
}

fn delete(w: &mut World, id: &str) -> Reply {
    let s = &w.servers[id];
    if s.task_state == Some("deleting") {
        return Reply::empty(204);
    }
    let (vm, power) = (s.vm_state, s.power_state);
    let d = w.settings.delays.delete;
    w.begin(
        id,
        Some("deleting"),
        &[(d, vm, Some("deleting"), power, Effect::Gone)],
    );
    Reply::empty(204)
}

// ----- actions -------------------------------------------------------------------

fn action(w: &mut World, req: &Req, id: &str) -> Reply {
    let body = match req.json() {
        Ok(b) => b,
        Err(_) => return fault(400, "Malformed request body"),
    };
    let Some(obj) = body.as_object().filter(|o| o.len() == 1) else {
        return fault(400, "Malformed request body");
    };
    let Some((name, arg)) = obj.iter().next() else {
        return fault(400, "Malformed request body");
    };
    let delays = w.settings.delays;
    let s = &w.servers[id];
    let (vm, task, launched) = (s.vm_state, s.task_state, s.launched_at.is_some());
    // Nova's check_instance_state: the vm_state, then the task_state, then launched.
    let check = |action: &str, vms: &[&str], tasks: &[Option<&str>]| -> Option<Reply> {
        if !vms.contains(&vm) {
            return Some(conflict(action, id, "vm_state", Some(vm)));
        }
        if !tasks.contains(&task) {
            return Some(conflict(action, id, "task_state", task));
        }
        if !launched {
            return Some(conflict(action, id, "launched_at", None));
        }
        None
    };
    match name.as_str() {
        "os-stop" => {
            if let Some(r) = check("stop", &["active", "error"], &[None]) {
                return r;
            }
            w.begin(
                id,
                Some("powering-off"),
                &[(delays.stop, "stopped", None, SHUTDOWN, Effect::None)],
            );
            Reply::empty(202)
        }
        "os-start" => {
            if let Some(r) = check("start", &["stopped"], &[None]) {
                return r;
            }
            w.begin(
                id,
                Some("powering-on"),
                &[(delays.start, "active", None, RUNNING, Effect::None)],
            );
            Reply::empty(202)
        }
        "reboot" => {
            let kind = arg
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase);
            let d = delays.reboot;
            let power = w.servers[id].power_state;
            match kind.as_deref() {
                Some("SOFT") => {
                    if let Some(r) = check("reboot", &["active"], &[None]) {
                        return r;
                    }
                    w.begin(
                        id,
                        Some("rebooting"),
                        &[
                            (d / 3, "active", Some("reboot_pending"), power, Effect::None),
                            (d / 3, "active", Some("reboot_started"), power, Effect::None),
                            (d - 2 * (d / 3), "active", None, RUNNING, Effect::None),
                        ],
                    );
                    Reply::empty(202)
                }
                Some("HARD") => {
                    let allowed = [
                        None,
                        Some("rebooting"),
                        Some("reboot_pending"),
                        Some("reboot_started"),
                        Some("resuming"),
                        Some("rebooting_hard"),
                        Some("unpausing"),
                        Some("pausing"),
                        Some("suspending"),
                    ];
                    if let Some(r) = check(
                        "reboot",
                        &["active", "stopped", "paused", "suspended", "error"],
                        &allowed,
                    ) {
                        return r;
                    }
                    w.begin(
                        id,
                        Some("rebooting_hard"),
                        &[
                            (d / 3, vm, Some("reboot_pending_hard"), power, Effect::None),
                            (d / 3, vm, Some("reboot_started_hard"), power, Effect::None),
                            (d - 2 * (d / 3), "active", None, RUNNING, Effect::None),
                        ],
                    );
                    Reply::empty(202)
                }
                _ => invalid(
                    "reboot/type",
                    arg.get("type").unwrap_or(&Value::Null),
                    "is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']",
                ),
            }
        }
        "os-getConsoleOutput" => {
            let length = match arg.get("length") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => match s.parse::<i64>() {
                    Ok(n) => Some(n),
                    Err(_) => return invalid("length", &arg["length"], "is not of type 'integer'"),
                },
                Some(v) => return invalid("length", v, &format!("{v} is not of type 'integer'")),
            };
            let s = &w.servers[id];
            if s.host.is_none() {
                return fault(409, format!("Instance {id} is not ready"));
            }
            Reply::json(200, &json!({ "output": console(w, s, length) }))
        }
        _ => fault(400, format!("There is no such action: {name}")),
    }
}

/// A boot log: cloud-init's lines with the server's name and addresses.
fn console(w: &World, s: &Server, length: Option<i64>) -> String {
    let mut lines = vec![
        format!(
            "[    0.000000] Linux version 6.8.0 (fake) booting {}",
            s.name
        ),
        "[    1.204511] Run /init as init process".to_owned(),
    ];
    for pid in &s.ports {
        if let Some(p) = w.ports.get(pid) {
            for (_, ip) in &p.fixed_ips {
                lines.push(format!(
                    "ci-info: | eth0 | True | {ip} | 255.255.255.0 | global | {} |",
                    p.mac
                ));
            }
        }
    }
    lines.push(format!(
        "Cloud-init v. 24.1 finished. Datasource DataSourceOpenStack. Up {} seconds",
        (Utc::now() - s.created).num_seconds().max(1)
    ));
    lines.push(format!("{} login: ", hostname(&s.name)));
    match length {
        Some(n) if n >= 0 => {
            let n = n as usize;
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        _ => lines.join("\n"),
    }
}

// ----- metadata and tags ---------------------------------------------------------

/// Nova changes metadata only in these vm_states and without a task.
fn metadata_state_ok(s: &Server) -> bool {
    ["active", "paused", "suspended", "stopped"].contains(&s.vm_state) && s.task_state.is_none()
}

fn metadata(w: &mut World, req: &Req, id: &str, rest: &[&str]) -> Reply {
    let m = &req.method;
    let read_body = |key: &str| -> Result<Value, Reply> {
        let body = req
            .json()
            .map_err(|_| fault(400, "Malformed request body"))?;
        body.get(key)
            .cloned()
            .ok_or_else(|| invalid(key, &body, &format!("'{key}' is a required property")))
    };
    let s = &w.servers[id];
    let state_conflict = |action: &str| {
        let (attr, state) = if !["active", "paused", "suspended", "stopped"].contains(&s.vm_state) {
            ("vm_state", Some(s.vm_state))
        } else {
            ("task_state", s.task_state)
        };
        conflict(action, id, attr, state)
    };
    match rest {
        [] if m == Method::GET => Reply::json(200, &json!({ "metadata": s.metadata })),
        [] if m == Method::PUT || m == Method::POST => {
            let new = match read_body("metadata").and_then(|v| check_metadata(&v)) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if !metadata_state_ok(s) {
                return state_conflict("update metadata");
            }
            let mut all = if m == Method::PUT {
                BTreeMap::new()
            } else {
                s.metadata.clone()
            };
            all.extend(new);
            if all.len() > MAX_METADATA_ITEMS {
                return fault(
                    403,
                    format!("Maximum number of metadata items exceeds {MAX_METADATA_ITEMS}"),
                );
            }
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.metadata = all;
            s.updated = Utc::now();
            Reply::json(200, &json!({ "metadata": s.metadata }))
        }
        [key] if m == Method::GET => match s.metadata.get(*key) {
            Some(v) => Reply::json(200, &json!({"meta": { *key: v }})),
            None => fault(404, "Metadata item was not found"),
        },
        [key] if m == Method::PUT => {
            let meta = match read_body("meta").and_then(|v| check_metadata(&v)) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if meta.len() > 1 {
                return fault(400, "Request body contains too many items");
            }
            let Some((k, v)) = meta.into_iter().next() else {
                return fault(400, "Request body and URI mismatch");
            };
            if k != *key {
                return fault(400, "Request body and URI mismatch");
            }
            if !metadata_state_ok(s) {
                return state_conflict("update metadata");
            }
            if !s.metadata.contains_key(&k) && s.metadata.len() >= MAX_METADATA_ITEMS {
                return fault(
                    403,
                    format!("Maximum number of metadata items exceeds {MAX_METADATA_ITEMS}"),
                );
            }
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.metadata.insert(k.clone(), v.clone());
            s.updated = Utc::now();
            Reply::json(200, &json!({"meta": { k: v }}))
        }
        [key] if m == Method::DELETE => {
            if !s.metadata.contains_key(*key) {
                return fault(404, "Metadata item was not found");
            }
            if !metadata_state_ok(s) {
                return state_conflict("delete metadata");
            }
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.metadata.remove(*key);
            s.updated = Utc::now();
            Reply::empty(204)
        }
        _ => not_found(),
    }
}

fn tags(w: &mut World, req: &Req, id: &str, rest: &[&str]) -> Reply {
    let m = &req.method;
    let s = &w.servers[id];
    // Nova's server-tags API: these vm_states, no task; its message names the vm_state.
    let state_ok = [
        "active",
        "paused",
        "suspended",
        "stopped",
        "rescued",
        "shelved",
        "shelved_offloaded",
    ]
    .contains(&s.vm_state)
        && s.task_state.is_none();
    let refuse = |action: &str| conflict(action, id, "vm_state", Some(s.vm_state));
    match rest {
        [] if m == Method::GET => Reply::json(200, &json!({ "tags": s.tags })),
        [] if m == Method::PUT => {
            let body = match req.json() {
                Ok(b) => b,
                Err(_) => return fault(400, "Malformed request body"),
            };
            let Some(list) = body.get("tags") else {
                return invalid("tags", &body, "'tags' is a required property");
            };
            let new = match check_tags(list) {
                Ok(t) => t,
                Err(r) => return r,
            };
            if !state_ok {
                return refuse("update tags");
            }
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.tags = new;
            Reply::json(200, &json!({ "tags": s.tags }))
        }
        [] if m == Method::DELETE => {
            if !state_ok {
                return refuse("delete tags");
            }
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.tags.clear();
            Reply::empty(204)
        }
        [tag] if m == Method::GET => {
            if s.tags.iter().any(|t| t == tag) {
                Reply::empty(204)
            } else {
                fault(404, format!("Instance {id} has no tag '{tag}'"))
            }
        }
        [tag] if m == Method::PUT => {
            let tag = match check_tag(&json!(tag)) {
                Ok(t) => t,
                Err(r) => return r,
            };
            if !state_ok {
                return refuse("update tag");
            }
            if s.tags.contains(&tag) {
                return Reply::empty(204);
            }
            if s.tags.len() >= MAX_TAGS {
                return fault(
                    400,
                    format!("The number of tags exceeded the per-server limit {MAX_TAGS}"),
                );
            }
            let location = format!("{}/compute/v2.1/servers/{id}/tags/{tag}", w.base);
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.tags.push(tag);
            Reply::empty(201).with_header("location", &location)
        }
        [tag] if m == Method::DELETE => {
            if !s.tags.iter().any(|t| t == tag) {
                return fault(404, format!("Instance {id} has no tag '{tag}'"));
            }
            if !state_ok {
                return refuse("delete tag");
            }
            let Some(s) = w.servers.get_mut(id) else {
                return instance_not_found(id);
            };
            s.tags.retain(|t| t != tag);
            Reply::empty(204)
        }
        _ => not_found(),
    }
}
