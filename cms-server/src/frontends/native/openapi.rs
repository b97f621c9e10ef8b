//! The OpenAPI 3 document of the native API, generated from the handlers'
//! `#[utoipa::path]` attributes and the types they take and answer.

use std::collections::BTreeMap;

use super::handlers;
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
    ),
    components(schemas(Problem)),
    modifiers(&Common),
    tags(
        (name = "instances", description = "Virtual machines"),
        (name = "providers", description = "The clouds the caller may use"),
        (name = "images"), (name = "flavors"), (name = "networks"), (name = "locations"),
        (name = "key-pairs"),
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
                            "A request id to echo in the answer and the logs (1 to 128 visible ASCII characters); generated when absent",
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
    "Invalid request: unknown or malformed query parameter or header, malformed body, invalid argument, bad page token";
const UNAUTHENTICATED: &str = "No API key, or an unknown one";
const INTERNAL: &str = "An unexpected server error";

/// Problems of routes that only need an API key.
pub struct AuthProblems;

impl IntoResponses for AuthProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[(400, BAD_REQUEST), (401, UNAUTHENTICATED), (500, INTERNAL)])
    }
}

/// Problems of the open routes.
pub struct OpenProblems;

impl IntoResponses for OpenProblems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        problems(&[(400, "Unknown query parameter"), (500, INTERNAL)])
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
            (404, "Unknown provider or resource (not_found)"),
            (
                409,
                "The resource exists (already_exists) or its state forbids the operation (invalid_state)",
            ),
            (429, "The provider asks to slow down (rate_limited)"),
            (500, INTERNAL),
            (501, "The provider does not support the operation (unsupported)"),
            (502, "The provider failed (backend)"),
            (503, "The provider is unavailable (unavailable)"),
            (504, "The provider did not answer in time (timeout)"),
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

/// The document, serialized.
pub fn document_json() -> Vec<u8> {
    // Serializing a document of plain data cannot fail.
    serde_json::to_vec(&ApiDoc::openapi()).unwrap_or_default()
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
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    documented.insert((m.to_owned(), path.clone()));
                }
            }
            assert!(item.put.is_none() && item.patch.is_none(), "{path}");
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.verb.as_str().to_owned(), r.template.to_owned()))
            .collect();
        assert_eq!(documented, served);
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
