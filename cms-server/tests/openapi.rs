//! The served OpenAPI document describes exactly what the server serves: every
//! documented path and method is answered with a documented status (never "no such
//! route" or 405), and the documented routes are the routes of the router's table.

mod common;

use std::collections::BTreeSet;

use cms_server::frontends::native::routes::ROUTES;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn openapi_document_matches_the_server() {
    let s = Server::with_test_config();
    // The document is open (no key needed).
    let r = s
        .client
        .get(s.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["Instance"].is_object());

    let mut documented = BTreeSet::new();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "delete", "put", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
            check_operation(&s, method, path, op).await;
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.verb.as_str().to_owned(), r.template.to_owned()))
        .collect();
    assert_eq!(
        documented, served,
        "documented routes differ from served routes"
    );
}

/// Calls one documented operation as a client would (parameters filled in, a body
/// when it takes one) and checks the answer is one the document lists.
async fn check_operation(s: &Server, method: &str, template: &str, op: &Value) {
    let secured = op["security"].is_array();
    let path = template
        .replace("{provider}", "local")
        .replace("{id}", "does-not-exist")
        .replace("{name}", "does-not-exist");
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = s.client.request(m.clone(), s.url(&path));
    if secured {
        req = req.bearer_auth(ALICE);
    }
    if op.get("requestBody").is_some() {
        // A body of the documented media type; `{}` misses required fields, which the
        // document lists as a 400 problem.
        let content = op["requestBody"]["content"].as_object().unwrap();
        assert!(
            content.contains_key("application/json"),
            "{method} {template}"
        );
        req = req.json(&json!({}));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.text().await.unwrap();
    let responses = op["responses"].as_object().unwrap();
    assert!(
        responses.contains_key(&status.to_string()),
        "{method} {template} answered {status}, not documented ({:?}): {body}",
        responses.keys().collect::<Vec<_>>()
    );
    assert_ne!(status, 405, "{method} {template}: {body}");
    if ctype == "application/problem+json" {
        let p: Value = serde_json::from_str(&body).unwrap();
        assert_ne!(
            p["type"], "urn:cms:problem:route_not_found",
            "{method} {template}"
        );
        // The documented content type of that status is the problem type.
        assert!(
            responses[&status.to_string()]["content"]
                .get("application/problem+json")
                .is_some(),
            "{method} {template}: {status} is not documented as a problem"
        );
    }
    if secured {
        // Without a key the route answers 401, which is documented.
        let resp = s.client.request(m, s.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {template}");
        assert!(responses.contains_key("401"), "{method} {template}");
    }
    // Every path parameter of the template is documented.
    for seg in template.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let params = op["parameters"].as_array().expect("parameters");
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {template}: path parameter `{name}` undocumented"
            );
        }
    }
}
