//! The OpenAPI 3 document of the native API, generated from the handlers'
//! `#[utoipa::path]` attributes and the types they take and answer.

use std::collections::BTreeMap;

use super::handlers;
use serde_json::{json, Value};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::problem::{Problem, PROBLEM_JSON};

/// The native API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cms native API",
        description = "One API over many clouds. Every route but `/healthz`, `/metrics` and \
            `/v1/openapi.json` needs `Authorization: Bearer <api key>`. Errors are RFC 9457 \
            problem documents (`application/problem+json`) whose `type` is \
            `urn:cms:problem:<kind>`. Every request may carry `X-Request-Id`; the answer \
            echoes it (or a generated one).",
    ),
    paths(
        handlers::healthz,
        handlers::metrics,
        handlers::openapi,
        handlers::list_providers,
        handlers::list_all_instances,
        handlers::list_instances,
        handlers::create_instance,
        handlers::get_instance,
        handlers::delete_instance,
        handlers::start_instance,
        handlers::stop_instance,
        handlers::reboot_instance,
        handlers::get_console_output,
        handlers::update_instance_tags,
        handlers::list_images,
        handlers::get_image,
        handlers::list_flavors,
        handlers::list_networks,
        handlers::create_network,
        handlers::get_network,
        handlers::delete_network,
        handlers::list_locations,
        handlers::list_key_pairs,
        handlers::create_key_pair,
        handlers::delete_key_pair,
        super::images::create_image,
        super::images::delete_image,
        super::volumes::list_volumes,
        super::volumes::create_volume,
        super::volumes::get_volume,
        super::volumes::delete_volume,
        super::volumes::attach_volume,
        super::volumes::detach_volume,
        super::snapshots::list_snapshots,
        super::snapshots::create_snapshot,
        super::snapshots::get_snapshot,
        super::snapshots::delete_snapshot,
        super::security_groups::list_security_groups,
        super::security_groups::create_security_group,
        super::security_groups::get_security_group,
        super::security_groups::delete_security_group,
        super::security_groups::add_security_rules,
        super::security_groups::remove_security_rules,
        super::addresses::list_addresses,
        super::addresses::allocate_address,
        super::addresses::get_address,
        super::addresses::release_address,
        super::addresses::associate_address,
        super::addresses::disassociate_address,
        handlers::update_instance,
        handlers::get_instance_history,
        super::jobs::list_jobs,
        super::jobs::get_job,
        super::jobs::cancel_job,
        super::jobs::job_events,
        super::deployments::list_deployments,
        super::deployments::create_deployment,
        super::deployments::get_deployment,
        super::deployments::update_deployment,
        super::deployments::delete_deployment,
    ),
    components(schemas(Problem)),
    modifiers(&Common),
    tags(
        (name = "instances", description = "Virtual machines"),
        (name = "providers", description = "The clouds the caller may use"),
        (name = "images"), (name = "flavors"), (name = "networks"), (name = "locations"),
        (name = "key-pairs"),
        (name = "volumes", description = "Block storage that outlives instances"),
        (name = "snapshots", description = "Point-in-time copies of volumes"),
        (name = "security-groups", description = "Firewall rules instances are put in"),
        (name = "addresses", description = "Public addresses that move between instances"),
        (name = "jobs", description = "Durable background work: deployments, operations followed to their end, expiries"),
        (name = "deployments", description = "Instances of one template spread over providers, kept at their count"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares: the bearer scheme and the `X-Request-Id` header.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The tenant's API key"))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.parameters.get_or_insert_with(Vec::new).push(
                    ParameterBuilder::new()
                        .name("X-Request-Id")
                        .parameter_in(ParameterIn::Header)
                        .required(Required::False)
                        .description(Some(
                            "A request id to echo in the answer and the logs; kept when it has 1 to 64 letters, digits or `.` `_` `-` `:` `/` `+` `=`, else a new one is made",
                        ))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                );
            }
        }
    }
}

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn problems(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
    list.iter()
        .map(|(status, description)| {
            let mut r = problem(description);
            match status {
                401 => r = r.header("WWW-Authenticate", string_header("`Bearer realm=\"cms\"`")),
                429 => {
                    r = r.header(
                        "Retry-After",
                        string_header("Seconds to wait before trying again"),
                    )
                }
                _ => {}
            }
            (status.to_string(), RefOr::T(r.build()))
        })
        .collect()
}

const BAD_REQUEST: &str =
    "Invalid request: unknown or malformed query parameter or header, malformed body, invalid argument";
const UNAUTHENTICATED: &str = "No API key, or an unknown one";
const INTERNAL: &str = "An unexpected server error";
const HEADERS_TOO_LARGE: &str =
    "The request's header fields take more than 32 KiB (headers_too_large)";
const TENANT_RATE_LIMITED: &str =
    "The tenant is over its rate limit (rate_limited; Retry-After says when to try again)";

/// Problems of routes that only need an API key.
pub struct AuthProblems;

impl IntoResponses for AuthProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[
            (400, BAD_REQUEST),
            (401, UNAUTHENTICATED),
            (429, TENANT_RATE_LIMITED),
            (431, HEADERS_TOO_LARGE),
            (500, INTERNAL),
        ])
    }
}

/// Problems of the open routes.
pub struct OpenProblems;

impl IntoResponses for OpenProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[
            (400, "Unknown query parameter"),
            (431, HEADERS_TOO_LARGE),
            (500, INTERNAL),
        ])
    }
}

/// Problems of routes that call a provider: any error kind of the driver may surface.
pub struct ProviderProblems;

impl IntoResponses for ProviderProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[
            (400, BAD_REQUEST),
            (401, UNAUTHENTICATED),
            (
                403,
                "The tenant may not use the provider (permission_denied), or a quota would be exceeded (quota_exceeded)",
            ),
            (
                404,
                "Unknown provider or resource (not_found), or a page token this listing did not hand out (page_not_found)",
            ),
            (
                409,
                "The resource exists (already_exists), its state forbids the operation (invalid_state), or the Idempotency-Key was used for another request (idempotency_conflict)",
            ),
            (
                429,
                "The tenant is over its rate limit, or the provider asks to slow down (rate_limited; Retry-After says when to try again)",
            ),
            (431, HEADERS_TOO_LARGE),
            (500, INTERNAL),
            (501, "The provider does not support the operation (unsupported)"),
            (502, "The provider failed (backend)"),
            (503, "The provider is unavailable (unavailable)"),
            (504, "The provider did not answer in time (timeout)"),
        ])
    }
}

/// Problems of the routes of jobs and deployments (the server's own state, and the
/// providers a deployment names).
pub struct JobProblems;

impl IntoResponses for JobProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[
            (400, BAD_REQUEST),
            (401, UNAUTHENTICATED),
            (
                403,
                "The tenant may not use a provider the deployment names (permission_denied)",
            ),
            (
                404,
                "No such job or deployment of the caller, or provider (not_found), or a page token this listing did not hand out (page_not_found)",
            ),
            (
                409,
                "The job has ended, or the deployment is being deleted or its count would go below its `min` (invalid_state)",
            ),
            (429, TENANT_RATE_LIMITED),
            (431, HEADERS_TOO_LARGE),
            (500, INTERNAL),
            (503, "The server could not read or write its state (unavailable)"),
        ])
    }
}

/// Problems of routes that take a JSON body.
pub struct BodyProblems;

impl IntoResponses for BodyProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[
            (413, "The body is larger than 64 KiB"),
            (415, "The body is not `application/json`"),
        ])
    }
}

/// A string without control characters (Unicode `Cc`), as names are.
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// The same, with at least one character that is not white space.
const NOT_BLANK: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F\uFEFF][^\u0000-\u001F\u007F-\u009F]*$";
/// An IPv4 range `a.b.c.d/n`, no leading zeros, `n` from 8 to 30.
const CIDR: &str = r"^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}/([89]|[12][0-9]|30)$";
/// A `tag` filter: `key` (no `=` in it) or `key=value`.
const TAG_FILTER: &str = r"^[^=]{1,128}(=[\s\S]{0,256})?$";
/// A page token: visible ASCII.
const PAGE_TOKEN: &str = r"^[!-~]{1,1024}$";
/// A provider name.
const PROVIDER: &str = r"^[A-Za-z0-9_.-]{1,64}$";
/// An `Idempotency-Key`.
const IDEMPOTENCY_KEY: &str = r"^[!-~]{1,255}$";
/// A device name, as [`cms_core::check_device`] takes it.
const DEVICE: &str = r"^[A-Za-z0-9/_.-]{1,64}$";
/// An IPv4 range `a.b.c.d/n`, no leading zeros, `n` from 0 to 32 (a rule's peer; it
/// must also be canonical: no host bits set).
const RULE_CIDR: &str = r"^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])$";

/// The rules the server enforces that the types alone do not say, written into the
/// document so that clients (and generators of test requests) know them: the limits
/// are the model's and the service's own constants.
fn constrain(doc: &mut Value) {
    use cms_core::{
        MAX_BLOCK_DEVICES, MAX_ID, MAX_NAME, MAX_NETWORKS, MAX_RULES_PER_CALL, MAX_SECURITY_GROUPS,
        MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE, MAX_USER_DATA, MAX_VOLUME_GIB,
    };
    let text = |min: usize, max: usize, pattern: Option<&str>| {
        let mut v = json!({"minLength": min, "maxLength": max});
        if let Some(p) = pattern {
            v["pattern"] = json!(p);
        }
        v
    };
    let id = text(1, MAX_ID, None);
    let tags = json!({
        "type": "object",
        "description": format!(
            "Tags: at most {MAX_TAGS}, keys of 1 to {MAX_TAG_KEY} characters, values of at most {MAX_TAG_VALUE}"
        ),
        "maxProperties": MAX_TAGS,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_KEY},
        "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE}
    });
    let schemas = &mut doc["components"]["schemas"];
    schemas["Tags"] = tags;
    schemas["TagPatch"] = json!({
        "type": "object",
        "description": format!(
            "A JSON merge patch of tags: a string sets a tag, null removes it; at most {MAX_TAGS} keys of 1 to {MAX_TAG_KEY} characters, values of at most {MAX_TAG_VALUE}"
        ),
        "maxProperties": MAX_TAGS,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_KEY},
        "additionalProperties": {"type": ["string", "null"], "maxLength": MAX_TAG_VALUE}
    });
    let fields: &[(&str, &str, Value)] = &[
        (
            "CreateInstanceRequest",
            "name",
            text(0, MAX_NAME, Some(NO_CONTROL)),
        ),
        ("CreateInstanceRequest", "image_id", id.clone()),
        ("CreateInstanceRequest", "flavor_id", id.clone()),
        ("CreateInstanceRequest", "location_id", id.clone()),
        (
            "CreateInstanceRequest",
            "key_name",
            text(1, MAX_NAME, Some(NOT_BLANK)),
        ),
        (
            "CreateInstanceRequest",
            "user_data",
            json!({"maxLength": MAX_USER_DATA}),
        ),
        (
            "CreateInstanceRequest",
            "network_ids",
            json!({"maxItems": MAX_NETWORKS, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID}}),
        ),
        (
            "CreateNetworkRequest",
            "name",
            text(1, MAX_NAME, Some(NOT_BLANK)),
        ),
        ("CreateNetworkRequest", "cidr", json!({"pattern": CIDR})),
        ("CreateNetworkRequest", "location_id", id.clone()),
        (
            "CreateKeyPairRequest",
            "name",
            text(1, crate::service::keys::MAX_KEY_NAME, Some(NOT_BLANK)),
        ),
        (
            "CreateKeyPairRequest",
            "public_key",
            json!({"format": "openssh-public-key", "minLength": 1, "maxLength": 16384}),
        ),
        (
            "CreateInstanceRequest",
            "security_group_ids",
            json!({"maxItems": MAX_SECURITY_GROUPS, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID}}),
        ),
        (
            "CreateInstanceRequest",
            "volumes",
            json!({"maxItems": MAX_BLOCK_DEVICES}),
        ),
        ("BlockDevice", "device", json!({"pattern": DEVICE})),
        (
            "BlockDevice",
            "size_gib",
            json!({"minimum": 1, "maximum": MAX_VOLUME_GIB}),
        ),
        ("BlockDevice", "snapshot_id", id.clone()),
        (
            "CreateVolumeRequest",
            "name",
            text(0, MAX_NAME, Some(NO_CONTROL)),
        ),
        (
            "CreateVolumeRequest",
            "size_gib",
            json!({"minimum": 1, "maximum": MAX_VOLUME_GIB}),
        ),
        ("CreateVolumeRequest", "snapshot_id", id.clone()),
        ("CreateVolumeRequest", "location_id", id.clone()),
        ("AttachVolumeRequest", "instance_id", id.clone()),
        ("AttachVolumeRequest", "device", json!({"pattern": DEVICE})),
        ("CreateSnapshotRequest", "volume_id", id.clone()),
        (
            "CreateSnapshotRequest",
            "name",
            text(0, MAX_NAME, Some(NO_CONTROL)),
        ),
        (
            "CreateSnapshotRequest",
            "description",
            text(0, MAX_NAME, Some(NO_CONTROL)),
        ),
        ("CaptureImageRequest", "instance_id", id.clone()),
        (
            "CaptureImageRequest",
            "name",
            text(1, MAX_NAME, Some(NOT_BLANK)),
        ),
        (
            "CaptureImageRequest",
            "description",
            text(0, MAX_NAME, Some(NO_CONTROL)),
        ),
        (
            "CreateSecurityGroupRequest",
            "name",
            text(1, MAX_NAME, Some(NOT_BLANK)),
        ),
        (
            "CreateSecurityGroupRequest",
            "description",
            text(0, MAX_NAME, Some(NO_CONTROL)),
        ),
        ("CreateSecurityGroupRequest", "network_id", id.clone()),
        (
            "SecurityRulesRequest",
            "rules",
            json!({"minItems": 1, "maxItems": MAX_RULES_PER_CALL}),
        ),
        (
            "SecurityRule",
            "from_port",
            json!({"minimum": 0, "maximum": 65535}),
        ),
        (
            "SecurityRule",
            "to_port",
            json!({"minimum": 0, "maximum": 65535}),
        ),
        ("AssociateAddressRequest", "instance_id", id.clone()),
        (
            "AssociateAddressRequest",
            "private_ip",
            json!({"format": "ipv4"}),
        ),
    ];
    for (schema, field, extra) in fields {
        let prop = &mut schemas[*schema]["properties"][*field];
        if let (Some(p), Some(e)) = (prop.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
    }
    // A deployment's template and partitions take what an instance's create takes.
    let of_create = |names: &[&str]| -> Vec<(&'static str, Value)> {
        fields
            .iter()
            .filter(|(s, f, _)| *s == "CreateInstanceRequest" && names.contains(f))
            .map(|(_, f, v)| (*f, v.clone()))
            .collect()
    };
    let common = [
        "image_id",
        "flavor_id",
        "key_name",
        "network_ids",
        "security_group_ids",
    ];
    let mut template_fields = of_create(&common);
    template_fields.extend(of_create(&["name", "user_data"]));
    let mut partition_fields = of_create(&common);
    partition_fields.extend(of_create(&["location_id"]));
    partition_fields.push(("provider", text(1, MAX_NAME, None)));
    for (schema, list) in [
        ("Template", template_fields),
        ("Partition", partition_fields),
    ] {
        for (field, extra) in list {
            let prop = &mut schemas[schema]["properties"][field];
            if let (Some(p), Some(e)) = (prop.as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
        }
    }
    if let Some(p) = schemas["CreateDeploymentRequest"]["properties"]["name"].as_object_mut() {
        if let Some(e) = text(1, MAX_NAME, Some(NOT_BLANK)).as_object() {
            p.extend(e.clone());
        }
    }
    // A volume is made of a size, or of a snapshot (either given, not null).
    for schema in ["CreateVolumeRequest", "BlockDevice"] {
        schemas[schema]["anyOf"] = json!([
            {"required": ["size_gib"], "properties": {"size_gib": {"type": "integer"}}},
            {"required": ["snapshot_id"], "properties": {"snapshot_id": {"type": "string"}}}
        ]);
    }
    // The peer of a rule: a range, or a group, and nothing else beside it.
    if let Some(variants) = schemas["RulePeer"]["oneOf"].as_array_mut() {
        for v in variants {
            v["additionalProperties"] = json!(false);
            if v["properties"]["cidr"].is_object() {
                v["properties"]["cidr"]["pattern"] = json!(RULE_CIDR);
            }
            if v["properties"]["group"].is_object() {
                v["properties"]["group"]["minLength"] = json!(1);
                v["properties"]["group"]["maxLength"] = json!(MAX_ID);
            }
        }
    }
    for schema in [
        "CreateInstanceRequest",
        "CreateNetworkRequest",
        "CreateVolumeRequest",
        "CreateSnapshotRequest",
        "CaptureImageRequest",
        "CreateSecurityGroupRequest",
        "AllocateAddressRequest",
        "Template",
    ] {
        let t = &mut schemas[schema]["properties"]["tags"];
        let description = t["description"].clone();
        *t = json!({"$ref": "#/components/schemas/Tags", "description": description});
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let filters_ids = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "id" && p["in"] == "query"));
            if filters_ids {
                // Many long ids make a request line longer than the HTTP server reads.
                op["responses"]["414"] = json!({
                    "description": "The request line is longer than the server reads (64 KiB): name fewer or shorter ids"
                });
            }
            let Some(params) = op["parameters"].as_array_mut() else {
                continue;
            };
            for p in params {
                let extra = match (p["in"].as_str(), p["name"].as_str()) {
                    (Some("query"), Some("name")) => text(0, MAX_NAME, Some(NO_CONTROL)),
                    (Some("query"), Some("id")) => json!({
                        "maxItems": super::query::MAX_IDS,
                        "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID}
                    }),
                    (Some("query"), Some("page_token")) => {
                        text(1, super::query::MAX_PAGE_TOKEN, Some(PAGE_TOKEN))
                    }
                    (Some("query"), Some("tag")) => {
                        json!({"items": {"type": "string", "pattern": TAG_FILTER}})
                    }
                    (Some("path"), Some("provider")) => json!({"pattern": PROVIDER}),
                    (Some("path"), Some(_)) => json!({"minLength": 1}),
                    (Some("header"), Some("Idempotency-Key")) => {
                        json!({"pattern": IDEMPOTENCY_KEY})
                    }
                    _ => continue,
                };
                if let (Some(s), Some(e)) = (p["schema"].as_object_mut(), extra.as_object()) {
                    s.extend(e.clone());
                }
            }
        }
    }
}

/// Links from what a create answers to the operations on what it made, so that a
/// client (or a stateful tester) can follow them.
fn link(doc: &mut Value) {
    let by = |path: &str, method: &str| -> String {
        format!(
            "#/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        )
    };
    let inst = "/v1/providers/{provider}/instances/{id}";
    let net = "/v1/providers/{provider}/networks/{id}";
    let vol = "/v1/providers/{provider}/volumes/{id}";
    let snap = "/v1/providers/{provider}/snapshots/{id}";
    let sg = "/v1/providers/{provider}/security-groups/{id}";
    let addr = "/v1/providers/{provider}/addresses/{id}";
    let img = "/v1/providers/{provider}/images/{id}";
    /// (create path, parameter, value, (link name, target operation)).
    type Links<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, String)>);
    let links: [Links<'_>; 8] = [
        (
            "/v1/providers/{provider}/volumes",
            "id",
            "$response.body#/id",
            vec![
                ("GetVolume", by(vol, "get")),
                ("DeleteVolume", by(vol, "delete")),
                ("DetachVolume", by(&format!("{vol}/detach"), "post")),
            ],
        ),
        (
            "/v1/providers/{provider}/snapshots",
            "id",
            "$response.body#/id",
            vec![
                ("GetSnapshot", by(snap, "get")),
                ("DeleteSnapshot", by(snap, "delete")),
            ],
        ),
        (
            "/v1/providers/{provider}/security-groups",
            "id",
            "$response.body#/id",
            vec![
                ("GetSecurityGroup", by(sg, "get")),
                ("DeleteSecurityGroup", by(sg, "delete")),
                ("AddSecurityRules", by(&format!("{sg}/add-rules"), "post")),
                (
                    "RemoveSecurityRules",
                    by(&format!("{sg}/remove-rules"), "post"),
                ),
            ],
        ),
        (
            "/v1/providers/{provider}/addresses",
            "id",
            "$response.body#/id",
            vec![
                ("GetAddress", by(addr, "get")),
                ("ReleaseAddress", by(addr, "delete")),
                (
                    "DisassociateAddress",
                    by(&format!("{addr}/disassociate"), "post"),
                ),
            ],
        ),
        (
            "/v1/providers/{provider}/images",
            "id",
            "$response.body#/id",
            vec![
                ("GetImage", by(img, "get")),
                ("DeleteImage", by(img, "delete")),
            ],
        ),
        (
            "/v1/providers/{provider}/instances",
            "id",
            "$response.body#/id",
            vec![
                ("GetInstance", by(inst, "get")),
                ("DeleteInstance", by(inst, "delete")),
                ("StartInstance", by(&format!("{inst}/start"), "post")),
                ("StopInstance", by(&format!("{inst}/stop"), "post")),
                ("RebootInstance", by(&format!("{inst}/reboot"), "post")),
                ("UpdateInstanceTags", by(&format!("{inst}/tags"), "patch")),
            ],
        ),
        (
            "/v1/providers/{provider}/networks",
            "id",
            "$response.body#/id",
            vec![
                ("GetNetwork", by(net, "get")),
                ("DeleteNetwork", by(net, "delete")),
            ],
        ),
        (
            "/v1/providers/{provider}/key-pairs",
            "name",
            "$response.body#/name",
            vec![(
                "DeleteKeyPair",
                by("/v1/providers/{provider}/key-pairs/{name}", "delete"),
            )],
        ),
    ];
    for (path, param, value, targets) in links {
        let created = &mut doc["paths"][path]["post"]["responses"]["201"];
        let mut out = serde_json::Map::new();
        for (name, target) in targets {
            out.insert(
                name.to_owned(),
                json!({
                    "operationRef": target,
                    "parameters": {"provider": "$request.path.provider", param: value}
                }),
            );
        }
        created["links"] = Value::Object(out);
    }
}

/// The document, with the server's constraints and links, serialized.
pub fn document_json() -> Vec<u8> {
    // Serializing a document of plain data cannot fail.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    constrain(&mut doc);
    link(&mut doc);
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::routes::ROUTES;
    use super::*;

    /// Every route is documented, and nothing else.
    #[test]
    fn documented_routes_are_the_served_routes() {
        let doc = ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    documented.insert((m.to_owned(), path.clone()));
                }
            }
            assert!(item.put.is_none(), "{path}");
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.verb.as_str().to_owned(), r.template.to_owned()))
            .collect();
        assert_eq!(documented, served);
    }

    /// The document carries the server's own limits and the links of creates.
    #[test]
    fn constraints_and_links_are_documented() {
        let doc: Value = serde_json::from_slice(&document_json()).unwrap();
        let req = &doc["components"]["schemas"]["CreateInstanceRequest"]["properties"];
        assert_eq!(req["name"]["maxLength"], cms_core::MAX_NAME);
        assert_eq!(req["image_id"]["minLength"], 1);
        assert_eq!(req["network_ids"]["uniqueItems"], true);
        assert_eq!(req["tags"]["$ref"], "#/components/schemas/Tags");
        let tags = &doc["components"]["schemas"]["Tags"];
        assert_eq!(tags["maxProperties"], cms_core::MAX_TAGS);
        assert_eq!(tags["propertyNames"]["minLength"], 1);
        let net = &doc["components"]["schemas"]["CreateNetworkRequest"]["properties"];
        assert!(net["cidr"]["pattern"].as_str().unwrap().contains("30"));
        let list = &doc["paths"]["/v1/providers/{provider}/instances"]["get"]["parameters"];
        let token = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "page_token")
            .unwrap();
        assert_eq!(token["schema"]["minLength"], 1);
        let ids = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "id")
            .unwrap();
        assert_eq!(ids["schema"]["items"]["maxLength"], cms_core::MAX_ID);
        assert_eq!(ids["schema"]["maxItems"], super::super::query::MAX_IDS);
        let patch = &doc["components"]["schemas"]["TagPatch"];
        assert_eq!(patch["maxProperties"], cms_core::MAX_TAGS);
        assert_eq!(
            patch["additionalProperties"]["type"],
            json!(["string", "null"])
        );
        let links = &doc["paths"]["/v1/providers/{provider}/instances"]["post"]["responses"]["201"]
            ["links"];
        assert_eq!(
            links["GetInstance"]["parameters"]["id"],
            "$response.body#/id"
        );
        assert!(links["StopInstance"]["operationRef"]
            .as_str()
            .unwrap()
            .ends_with("~1stop/post"));
        // Every operationRef points at an operation of the document.
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                for (_, r) in op["responses"].as_object().into_iter().flatten() {
                    for (_, l) in r["links"].as_object().into_iter().flatten() {
                        let target = l["operationRef"].as_str().unwrap();
                        let pointer = target.trim_start_matches('#');
                        assert!(doc.pointer(pointer).is_some(), "{target}");
                    }
                }
            }
        }
    }

    /// Authenticated routes declare the bearer scheme; open ones do not.
    #[test]
    fn security_matches_auth() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for r in ROUTES {
            let op = &doc["paths"][r.template][r.verb.as_str().to_lowercase()];
            assert_eq!(op["security"].is_array(), r.auth, "{}", r.template);
            assert!(op["responses"]["500"].is_object(), "{}", r.template);
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
    }
}
