//! Neutron's networking API v2.0 under `/network`: networks, subnets and ports, listed
//! in id order with Neutron's native pagination (`limit`, `marker`, `page_reverse`,
//! `*_links` with `next` and `previous`), attribute filters and `fields`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Bound;

use chrono::Utc;
use hyper::Method;
use serde_json::{json, Map, Value};

use super::http::{iso_seconds, urlencode, Reply, Req};
use super::keystone;
use super::world::{Network, Port, Subnet, World};

/// Neutron's error body: `{"NeutronError": {"type", "message", "detail"}}`.
pub(crate) fn error(code: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"NeutronError": {"type": kind, "message": message, "detail": ""}}),
    )
}

fn not_found(kind: &str, id: &str) -> Reply {
    let what = kind.trim_end_matches("NotFound");
    error(404, kind, &format!("{what} {id} could not be found."))
}

fn bad_request(message: &str) -> Reply {
    error(400, "HTTPBadRequest", message)
}

fn policy(rule: &str) -> Reply {
    error(
        403,
        "PolicyNotAuthorized",
        &format!("({rule}) is disallowed by policy"),
    )
}

pub(crate) fn handle(w: &mut World, req: &Req) -> Reply {
    let seg = req.segments("/network");
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let m = &req.method;
    if seg.is_empty() {
        return if *m == Method::GET {
            Reply::json(
                200,
                &json!({"versions": [{
                    "id": "v2.0",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": format!("{}/network/v2.0/", w.base)}]
                }]}),
            )
        } else {
            error(405, "HTTPMethodNotAllowed", "The method is not allowed.")
        };
    }
    if seg[0] != "v2.0" {
        return Reply::text(
            404,
            "text/plain; charset=UTF-8",
            "404 Not Found\n\nThe resource could not be found.\n\n   ".into(),
        );
    }
    if !w.token_valid(req.token()) {
        return keystone::unauthorized(w);
    }
    w.settle();
    match &seg[1..] {
        [] if *m == Method::GET => {
            let resources: Vec<Value> = ["subnet", "network", "port"]
                .iter()
                .map(|r| {
                    json!({
                        "name": r,
                        "collection": format!("{r}s"),
                        "links": [{"rel": "self", "href": format!("{}/network/v2.0/{r}s", w.base)}]
                    })
                })
                .collect();
            Reply::json(200, &json!({ "resources": resources }))
        }
        ["extensions"] if *m == Method::GET => Reply::json(
            200,
            &json!({"extensions": [
                {"alias": "external-net", "name": "Neutron external network", "description": "Adds external network attribute to network resource.", "updated": "2013-01-14T10:00:00-00:00", "links": []},
                {"alias": "standard-attr-timestamp", "name": "Resource timestamps", "description": "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.", "updated": "2016-09-12T10:00:00-00:00", "links": []},
                {"alias": "pagination", "name": "Pagination support", "description": "Extension that indicates that pagination is enabled.", "updated": "2016-06-12T00:00:00-00:00", "links": []},
                {"alias": "sorting", "name": "Sorting support", "description": "Extension that indicates that sorting is enabled.", "updated": "2016-06-12T00:00:00-00:00", "links": []}
            ]}),
        ),
        ["networks"] if *m == Method::GET => list(w, req, "networks", "NetworkNotFound"),
        ["networks"] if *m == Method::POST => create_network(w, req),
        ["networks", id] if *m == Method::GET => match w.networks.get(*id) {
            Some(n) if w.network_visible(n) => {
                Reply::json(200, &json!({ "network": select(req, network_view(w, n)) }))
            }
            _ => not_found("NetworkNotFound", id),
        },
        ["networks", id] if *m == Method::DELETE => delete_network(w, id),
        ["networks", id, "tags"] if *m == Method::PUT => put_tags(w, req, id),
        ["subnets"] if *m == Method::GET => list(w, req, "subnets", "SubnetNotFound"),
        ["subnets"] if *m == Method::POST => create_subnet(w, req),
        ["subnets", id] if *m == Method::GET => match w.subnets.get(*id) {
            Some(s) if subnet_visible(w, s) => {
                Reply::json(200, &json!({ "subnet": select(req, subnet_view(w, s)) }))
            }
            _ => not_found("SubnetNotFound", id),
        },
        ["subnets", id] if *m == Method::DELETE => delete_subnet(w, id),
        ["ports"] if *m == Method::GET => list(w, req, "ports", "PortNotFound"),
        ["ports", id] if *m == Method::GET => match w.ports.get(*id) {
            Some(p) if p.project_id == w.project.id => {
                Reply::json(200, &json!({ "port": select(req, port_view(w, p)) }))
            }
            _ => not_found("PortNotFound", id),
        },
        // No routers here, so no floating IPs either (openstacksdk's cloud layer asks).
        ["floatingips"] if *m == Method::GET => Reply::json(200, &json!({ "floatingips": [] })),
        ["floatingips", id] if *m == Method::GET => not_found("FloatingIPNotFound", id),
        ["networks" | "subnets" | "ports" | "floatingips", ..] => {
            error(405, "HTTPMethodNotAllowed", "The method is not allowed.")
        }
        _ => Reply::text(
            404,
            "text/plain; charset=UTF-8",
            "404 Not Found\n\nThe resource could not be found.\n\n   ".into(),
        ),
    }
}

fn subnet_visible(w: &World, s: &Subnet) -> bool {
    w.networks
        .get(&s.network_id)
        .is_some_and(|n| w.network_visible(n))
}

fn network_view(w: &World, n: &Network) -> Value {
    let _ = w;
    json!({
        "id": n.id,
        "name": n.name,
        "tenant_id": n.project_id,
        "project_id": n.project_id,
        "admin_state_up": n.admin_state_up,
        "mtu": n.mtu,
        "status": "ACTIVE",
        "subnets": n.subnets,
        "shared": n.shared,
        "router:external": n.external,
        "availability_zone_hints": [],
        "availability_zones": ["nova"],
        "ipv4_address_scope": null,
        "ipv6_address_scope": null,
        "description": n.description,
        "port_security_enabled": true,
        "dns_domain": "",
        "qos_policy_id": null,
        "l2_adjacency": true,
        "tags": n.tags,
        "created_at": iso_seconds(&n.created),
        "updated_at": iso_seconds(&n.updated),
        "revision_number": n.revision,
    })
}

fn subnet_view(w: &World, s: &Subnet) -> Value {
    let external = w.networks.get(&s.network_id).is_some_and(|n| n.external);
    json!({
        "id": s.id,
        "name": s.name,
        "tenant_id": s.project_id,
        "project_id": s.project_id,
        "network_id": s.network_id,
        "ip_version": 4,
        "cidr": s.cidr(),
        "gateway_ip": s.gateway.map(|g| g.to_string()),
        "allocation_pools": [{
            "start": Ipv4Addr::from(s.pool.0).to_string(),
            "end": Ipv4Addr::from(s.pool.1).to_string()
        }],
        "enable_dhcp": s.enable_dhcp,
        "dns_nameservers": s.dns_nameservers,
        "host_routes": [],
        "ipv6_address_mode": null,
        "ipv6_ra_mode": null,
        "subnetpool_id": null,
        "segment_id": null,
        "dns_publish_fixed_ip": false,
        "description": s.description,
        "service_types": [],
        "tags": [],
        "router:external": external,
        "created_at": iso_seconds(&s.created),
        "updated_at": iso_seconds(&s.created),
        "revision_number": 0,
    })
}

fn port_view(w: &World, p: &Port) -> Value {
    let bound = w
        .servers
        .get(&p.device_id)
        .is_some_and(|s| s.host.is_some());
    json!({
        "id": p.id,
        "name": p.name,
        "network_id": p.network_id,
        "tenant_id": p.project_id,
        "project_id": p.project_id,
        "mac_address": p.mac,
        "admin_state_up": true,
        "status": if bound { "ACTIVE" } else { "DOWN" },
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": p.fixed_ips.iter().map(|(sid, ip)| json!({
            "subnet_id": sid, "ip_address": ip.to_string()
        })).collect::<Vec<_>>(),
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "security_groups": if p.device_owner.starts_with("compute:") {
            json!([w.default_security_group])
        } else {
            json!([])
        },
        "description": "",
        "binding:vnic_type": "normal",
        "port_security_enabled": true,
        "dns_name": "",
        "ip_allocation": "immediate",
        "propagate_uplink_status": false,
        "tags": [],
        "created_at": iso_seconds(&p.created),
        "updated_at": iso_seconds(&p.created),
        "revision_number": 1,
    })
}

/// Keeps only the `fields` asked for, if any.
fn select(req: &Req, v: Value) -> Value {
    let fields: Vec<&str> = req.params("fields").collect();
    if fields.is_empty() {
        return v;
    }
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    }
}

/// Whether a member's JSON value equals a filter's text.
fn equals(v: &Value, text: &str) -> bool {
    match v {
        Value::String(s) => s == text,
        Value::Bool(b) => text.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == text,
        Value::Null => text.is_empty(),
        Value::Array(items) => items.iter().any(|i| equals(i, text)),
        Value::Object(_) => false,
    }
}

/// The keys of `map` after `marker` (before it, backwards, when `reverse`).
fn ids<'a, T>(
    map: &'a BTreeMap<String, T>,
    marker: Option<&'a str>,
    reverse: bool,
) -> Box<dyn Iterator<Item = &'a String> + 'a> {
    let bounds: (Bound<&str>, Bound<&str>) = match (marker, reverse) {
        (Some(m), false) => (Bound::Excluded(m), Bound::Unbounded),
        (Some(m), true) => (Bound::Unbounded, Bound::Excluded(m)),
        (None, _) => (Bound::Unbounded, Bound::Unbounded),
    };
    let keys = map.range::<str, _>(bounds).map(|(k, _)| k);
    if reverse {
        Box::new(keys.rev())
    } else {
        Box::new(keys)
    }
}

const PAGING: [&str; 6] = [
    "limit",
    "marker",
    "page_reverse",
    "fields",
    "sort_key",
    "sort_dir",
];

/// Lists a collection in id order, a page at a time.
fn list(w: &World, req: &Req, collection: &str, missing: &str) -> Reply {
    let limit = match req.param("limit") {
        None => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 => n as usize,
            _ => {
                return bad_request(&format!(
                    "Limit must be an integer 0 or greater and not '{s}'"
                ))
            }
        },
    };
    let max = w.settings.max_limit;
    let limit = if limit == 0 { max } else { limit.min(max) };
    let reverse = req
        .param("page_reverse")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let marker = req.param("marker");
    let filters: Vec<(&str, Vec<&str>)> = {
        let mut f: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (k, v) in &req.query {
            if !PAGING.contains(&k.as_str()) {
                f.entry(k.as_str()).or_default().push(v.as_str());
            }
        }
        f.into_iter().collect()
    };
    // Renders the item under `id` when the project may see it.
    let render = |id: &str| -> Option<Value> {
        match collection {
            "networks" => w
                .networks
                .get(id)
                .filter(|n| w.network_visible(n))
                .map(|n| network_view(w, n)),
            "subnets" => w
                .subnets
                .get(id)
                .filter(|s| subnet_visible(w, s))
                .map(|s| subnet_view(w, s)),
            _ => w
                .ports
                .get(id)
                .filter(|p| p.project_id == w.project.id)
                .map(|p| port_view(w, p)),
        }
    };
    if let Some(m) = marker {
        if render(m).is_none() {
            return not_found(missing, m);
        }
    }
    // The ids are sorted: the page starts after (or ends before) the marker.
    let range = match collection {
        "networks" => ids(&w.networks, marker, reverse),
        "subnets" => ids(&w.subnets, marker, reverse),
        _ => ids(&w.ports, marker, reverse),
    };
    let mut items: Vec<Value> = Vec::new();
    for id in range {
        let Some(v) = render(id) else { continue };
        let mut keep = true;
        for (k, wanted) in &filters {
            match v.get(*k) {
                Some(val) => {
                    if !wanted.iter().any(|t| equals(val, t)) {
                        keep = false;
                        break;
                    }
                }
                None => return bad_request(&format!("[{k}] is invalid attribute for filtering")),
            }
        }
        if keep {
            items.push(v);
            if items.len() == limit {
                break;
            }
        }
    }
    if reverse {
        items.reverse();
    }
    let links = page_links(w, req, collection, &items, limit, reverse);
    let items: Vec<Value> = items.into_iter().map(|v| select(req, v)).collect();
    let mut body = Map::new();
    body.insert(collection.to_owned(), Value::Array(items));
    if !links.is_empty() {
        body.insert(format!("{collection}_links"), Value::Array(links));
    }
    Reply::raw_json(200, serde_json::to_vec(&body).unwrap_or_default())
}

/// Neutron's `get_pagination_links`: `next` unless a forward page came short,
/// `previous` unless a backward page did.
fn page_links(
    w: &World,
    req: &Req,
    collection: &str,
    items: &[Value],
    limit: usize,
    reverse: bool,
) -> Vec<Value> {
    let mut links = Vec::new();
    let base: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    let url = format!("{}/network/v2.0/{collection}", w.base);
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
    if items.len() >= limit || reverse {
        let mut p: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| k != "page_reverse")
            .cloned()
            .collect();
        if let Some(last) = items.last() {
            p.push(("marker".into(), id_of(last)));
        }
        links.push(json!({"rel": "next", "href": format!("{url}?{}", urlencode(&p))}));
    }
    if items.len() >= limit || !reverse {
        let mut p: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| k != "page_reverse")
            .cloned()
            .collect();
        if let Some(first) = items.first() {
            p.push(("marker".into(), id_of(first)));
        }
        p.push(("page_reverse".into(), "True".into()));
        links.push(json!({"rel": "previous", "href": format!("{url}?{}", urlencode(&p))}));
    }
    links
}

fn body_object(req: &Req, key: &str) -> Result<Map<String, Value>, Reply> {
    let body = req
        .json()
        .map_err(|_| bad_request("Malformed request body"))?;
    body.get(key)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| {
            bad_request(&format!(
                "Resource body required: '{key}' is missing from the request body"
            ))
        })
}

fn unrecognized(obj: &Map<String, Value>, allowed: &[&str]) -> Option<Reply> {
    let extra: Vec<&String> = obj
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if extra.is_empty() {
        return None;
    }
    let names: Vec<String> = extra.iter().map(|k| format!("'{k}'")).collect();
    Some(bad_request(&format!(
        "Unrecognized attribute(s) {}",
        names.join(", ")
    )))
}

fn create_network(w: &mut World, req: &Req) -> Reply {
    let obj = match body_object(req, "network") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let allowed = [
        "name",
        "admin_state_up",
        "shared",
        "mtu",
        "description",
        "port_security_enabled",
        "dns_domain",
        "tenant_id",
        "project_id",
        "availability_zone_hints",
        "router:external",
        "qos_policy_id",
    ];
    if let Some(r) = unrecognized(&obj, &allowed) {
        return r;
    }
    if obj.get("shared") == Some(&Value::Bool(true)) {
        return policy("rule:create_network and rule:create_network:shared");
    }
    if obj.get("router:external") == Some(&Value::Bool(true)) {
        return policy("rule:create_network and rule:create_network:router:external");
    }
    for key in ["tenant_id", "project_id"] {
        if let Some(p) = obj.get(key).and_then(Value::as_str) {
            if p != w.project.id {
                return policy(&format!(
                    "rule:create_network and rule:create_network:{key}"
                ));
            }
        }
    }
    let name = match obj.get("name") {
        None => String::new(),
        Some(Value::String(n)) if n.len() <= 255 => n.clone(),
        Some(v) => {
            return bad_request(&format!(
                "Invalid input for name. Reason: '{v}' is not a valid string."
            ))
        }
    };
    let project = w.project.id.clone();
    let id = w.add_network(&name, &project, false, false, Utc::now());
    if let Some(n) = w.networks.get_mut(&id) {
        if let Some(Value::Bool(up)) = obj.get("admin_state_up") {
            n.admin_state_up = *up;
        }
        if let Some(mtu) = obj.get("mtu").and_then(Value::as_u64) {
            n.mtu = mtu as u32;
        }
        if let Some(d) = obj.get("description").and_then(Value::as_str) {
            n.description = d.to_owned();
        }
    }
    let n = &w.networks[&id];
    Reply::json(201, &json!({ "network": network_view(w, n) }))
}

/// `PUT /v2.0/networks/{id}/tags` (the `standard-attr-tag` extension): replaces the
/// network's tags; each at most 255 characters, no `,` or `/` (they would break the
/// `tags` filter and the tag URLs).
fn put_tags(w: &mut World, req: &Req, id: &str) -> Reply {
    let project = w.project.id.clone();
    let Some(n) = w.networks.get_mut(id) else {
        return not_found("NetworkNotFound", id);
    };
    if n.project_id != project {
        return if n.shared {
            policy("update_networks_tags")
        } else {
            not_found("NetworkNotFound", id)
        };
    }
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return bad_request(&e),
    };
    let Some(list) = body.get("tags").and_then(|t| t.as_array()) else {
        return bad_request("Invalid input for operation: 'tags' is a required list.");
    };
    let mut tags = Vec::new();
    for t in list {
        match t.as_str() {
            Some(t) if !t.is_empty() && t.len() <= 255 && !t.contains(',') && !t.contains('/') => {
                tags.push(t.to_owned())
            }
            _ => {
                return bad_request(&format!(
                    "Invalid input for operation: '{t}' is not a valid tag."
                ))
            }
        }
    }
    tags.sort();
    tags.dedup();
    n.tags = tags.clone();
    n.revision += 1;
    Reply::json(200, &json!({ "tags": tags }))
}

fn delete_network(w: &mut World, id: &str) -> Reply {
    let Some(n) = w.networks.get(id).filter(|n| w.network_visible(n)) else {
        return not_found("NetworkNotFound", id);
    };
    if n.project_id != w.project.id {
        return policy("rule:delete_network");
    }
    if w.ports.values().any(|p| p.network_id == id) {
        return error(
            409,
            "NetworkInUse",
            &format!(
                "Unable to complete operation on network {id}. There are one or more ports \
                 still in use on the network."
            ),
        );
    }
    if let Some(n) = w.networks.remove(id) {
        for s in n.subnets {
            w.subnets.remove(&s);
        }
    }
    Reply::empty(204)
}

/// `a.b.c.d/n` with no host bits set.
fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    Some((addr, prefix))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn create_subnet(w: &mut World, req: &Req) -> Reply {
    let obj = match body_object(req, "subnet") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let allowed = [
        "name",
        "network_id",
        "cidr",
        "ip_version",
        "gateway_ip",
        "allocation_pools",
        "enable_dhcp",
        "dns_nameservers",
        "description",
        "host_routes",
        "tenant_id",
        "project_id",
    ];
    if let Some(r) = unrecognized(&obj, &allowed) {
        return r;
    }
    let Some(network_id) = obj.get("network_id").and_then(Value::as_str) else {
        return bad_request(
            "Failed to parse request. Required attribute 'network_id' not specified",
        );
    };
    match obj.get("ip_version").and_then(Value::as_u64) {
        Some(4) => {}
        Some(6) => {
            return bad_request("Invalid input for operation: the fake supports IPv4 subnets only.")
        }
        _ => {
            return bad_request(
                "Failed to parse request. Required attribute 'ip_version' not specified",
            )
        }
    }
    let Some(cidr_text) = obj.get("cidr").and_then(Value::as_str) else {
        return bad_request(
            "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
        );
    };
    let Some((addr, prefix)) = parse_cidr(cidr_text) else {
        return error(
            400,
            "InvalidInput",
            &format!("Invalid input for cidr. Reason: '{cidr_text}' is not a valid IP subnet."),
        );
    };
    let Some(net) = w.networks.get(network_id).filter(|n| w.network_visible(n)) else {
        return not_found("NetworkNotFound", network_id);
    };
    if net.project_id != w.project.id {
        return policy("rule:create_subnet");
    }
    let base = u32::from(addr) & mask(prefix);
    let size = 1u64 << (32 - u32::from(prefix));
    let last = (u64::from(base) + size - 1) as u32;
    if u32::from(addr) != base {
        return error(
            400,
            "InvalidInput",
            &format!(
                "Invalid input for operation: '{cidr_text}' isn't a recognized IP subnet cidr, \
                 '{}/{prefix}' is recommended.",
                Ipv4Addr::from(base)
            ),
        );
    }
    for sid in &net.subnets {
        if let Some(s) = w.subnets.get(sid) {
            let (sb, sp) = (u32::from(s.network), s.prefix);
            let m = mask(prefix.min(sp));
            if sb & m == base & m {
                return error(
                    400,
                    "InvalidInput",
                    &format!(
                        "Invalid input for operation: Requested subnet with cidr: {cidr_text} \
                         for network: {network_id} overlaps with another subnet."
                    ),
                );
            }
        }
    }
    let gateway = match obj.get("gateway_ip") {
        Some(Value::Null) => None,
        Some(Value::String(g)) => match g.parse::<Ipv4Addr>() {
            Ok(ip) if (u32::from(ip) & mask(prefix)) == base => Some(ip),
            _ => {
                return error(
                    400,
                    "InvalidInput",
                    &format!(
                        "Invalid input for gateway_ip. Reason: '{g}' is not a valid IP address."
                    ),
                )
            }
        },
        _ if size >= 4 => Some(Ipv4Addr::from(base + 1)),
        _ => None,
    };
    let pool = match obj
        .get("allocation_pools")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
    {
        Some(p) => {
            let ip = |k: &str| {
                p.get(k)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                    .map(u32::from)
            };
            match (ip("start"), ip("end")) {
                (Some(a), Some(b)) if a <= b && a >= base && b <= last => (a, b),
                _ => {
                    return error(
                        400,
                        "InvalidAllocationPool",
                        "The allocation pool is not valid for the subnet.",
                    )
                }
            }
        }
        None if size >= 4 => {
            let first = if gateway == Some(Ipv4Addr::from(base + 1)) {
                base + 2
            } else {
                base + 1
            };
            (first, last - 1)
        }
        None => (base, last),
    };
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let project = w.project.id.clone();
    let network_id = network_id.to_owned();
    let id = w.add_subnet_with(
        &network_id,
        &name,
        &project,
        Ipv4Addr::from(base),
        prefix,
        gateway,
        pool,
        Utc::now(),
    );
    if let Some(s) = w.subnets.get_mut(&id) {
        if let Some(Value::Bool(d)) = obj.get("enable_dhcp") {
            s.enable_dhcp = *d;
        }
        if let Some(list) = obj.get("dns_nameservers").and_then(Value::as_array) {
            s.dns_nameservers = list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        if let Some(d) = obj.get("description").and_then(Value::as_str) {
            s.description = d.to_owned();
        }
    }
    let s = &w.subnets[&id];
    Reply::json(201, &json!({ "subnet": subnet_view(w, s) }))
}

fn delete_subnet(w: &mut World, id: &str) -> Reply {
    let Some(s) = w.subnets.get(id).filter(|s| subnet_visible(w, s)) else {
        return not_found("SubnetNotFound", id);
    };
    if s.project_id != w.project.id {
        return policy("rule:delete_subnet");
    }
    if w.ports
        .values()
        .any(|p| p.fixed_ips.iter().any(|(sid, _)| sid == id))
    {
        return error(
            409,
            "SubnetInUse",
            &format!(
                "Unable to complete operation on subnet {id}: One or more ports have an IP \
                 allocation from this subnet."
            ),
        );
    }
    if let Some(s) = w.subnets.remove(id) {
        if let Some(n) = w.networks.get_mut(&s.network_id) {
            n.subnets.retain(|x| x != id);
            n.revision += 1;
            n.updated = Utc::now();
        }
    }
    Reply::empty(204)
}
