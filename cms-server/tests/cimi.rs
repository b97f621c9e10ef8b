//! The CIMI frontend end to end, over the real binary, in JSON and in XML:
//!
//! - the CIMI sample documents of `../shared/reference/cimi/samples` (Deltacloud's):
//!   each JSON and XML pair reads into the same document; the request among them is
//!   accepted (once its references name this server); and every field of each
//!   resource sample is in what the server answers for that type, with the same shape
//!   (the fields cms has no data for are listed, with why);
//! - collection queries (`$filter`, `$select`, `$expand`, `$orderby`, `$first`,
//!   `$last`) with valid and invalid values; creates by value (configuration and
//!   credential by value); actions whose Action names another operation than the one
//!   posted to; capture; volumes attached through `MachineVolume`; networks; jobs;
//!   resource metadata; content negotiation and every error status;
//! - a provider without a feature (the remote driver has no volumes and no capture):
//!   501, and its entry point does not offer them.
//!
//! The machine life cycle over memory, OpenNebula and EC2 is proven by an independent
//! client in `cimi_client.rs`.

mod common;

use std::time::{Duration, Instant};

use cms_server::frontends::cimi::doc::{self, Node, Obj};
use common::*;
use reqwest::Method;

const NS: &str = "http://schemas.dmtf.org/cimi/1";

/// A CIMI client of one tenant, speaking one representation.
struct Client<'a> {
    s: &'a Server,
    user: &'static str,
    key: &'static str,
    xml: bool,
}

/// An answer, its document read with the frontend's own reader.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    doc: Obj,
}

impl Answer {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    fn members(&self) -> Vec<Obj> {
        self.doc
            .0
            .iter()
            .filter(|(k, _)| k != "operations")
            .find_map(|(_, v)| match v {
                Node::List(items) | Node::Members(_, items) => Some(
                    items
                        .iter()
                        .filter_map(|i| match i {
                            Node::Obj(o) => Some(o.clone()),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn ops(&self) -> Vec<String> {
        ops_of(&self.doc)
    }
}

fn ops_of(doc: &Obj) -> Vec<String> {
    match doc.get("operations") {
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Node::Obj(o) => o
                    .str("rel")
                    .map(|r| r.rsplit('/').next().unwrap_or("").to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl<'a> Client<'a> {
    fn alice(s: &'a Server, xml: bool) -> Client<'a> {
        Client {
            s,
            user: "alice",
            key: ALICE,
            xml,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            self.s.url(path)
        }
    }

    fn mime(&self) -> &'static str {
        if self.xml {
            "application/xml"
        } else {
            "application/json"
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<String>) -> Answer {
        let mut r = self
            .s
            .client
            .request(method.clone(), self.url(path))
            .basic_auth(self.user, Some(self.key))
            .header("accept", self.mime());
        if let Some(b) = body {
            r = r.header("content-type", self.mime()).body(b);
        }
        let resp = r.send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let doc = if text.is_empty() {
            Obj::new()
        } else if self.xml {
            assert!(
                headers["content-type"].to_str().unwrap().contains("xml"),
                "{method} {path}: {text}"
            );
            doc::read_xml(text.as_bytes()).unwrap_or_else(|e| panic!("{path}: {e:?}: {text}"))
        } else {
            assert!(
                headers["content-type"].to_str().unwrap().contains("json"),
                "{method} {path}: {text}"
            );
            doc::read_json(text.as_bytes()).unwrap_or_else(|e| panic!("{path}: {e:?}: {text}"))
        };
        assert!(headers.contains_key("cimi-specification-version"), "{path}");
        Answer {
            status,
            headers,
            text,
            doc,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let a = self.call(Method::GET, path, None).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        a
    }

    /// A document of type `ty` with `fields` (JSON written as given; XML made from it).
    fn body(&self, ty: &str, json: serde_json::Value) -> String {
        let mut v = json;
        v["resourceURI"] = format!("{NS}/{ty}").into();
        let text = v.to_string();
        if !self.xml {
            return text;
        }
        let o = doc::read_json(text.as_bytes()).unwrap();
        doc::render(&o, ty, doc::Format::Xml)
    }

    async fn post(&self, path: &str, ty: &str, json: serde_json::Value) -> Answer {
        let b = self.body(ty, json);
        self.call(Method::POST, path, Some(b)).await
    }

    /// Follows the job at `href` until it ends; its end state.
    async fn wait_job(&self, href: &str) -> Obj {
        let started = Instant::now();
        loop {
            let a = self.get(href).await;
            let state = a.doc.str("state").unwrap();
            if matches!(state.as_str(), "SUCCESS" | "FAILED" | "STOPPED") {
                return a.doc;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{}", a.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_state(&self, href: &str, want: &str) -> Answer {
        let started = Instant::now();
        loop {
            let a = self.get(href).await;
            if a.doc.str("state").as_deref() == Some(want) {
                return a;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{}", a.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The reference folder, when it is there.
fn samples() -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("CMS_REFERENCE_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference"),
    }
    .join("cimi/samples");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: the CIMI samples are not at {} (set CMS_REFERENCE_DIR)",
            dir.display()
        );
        None
    }
}

/// What a field holds, for comparing shapes: text, a reference, an object, a list or
/// properties.
fn shape(n: &Node) -> &'static str {
    match n {
        Node::Str(_) | Node::Int(_) | Node::Bool(_) => "text",
        Node::Obj(o) if o.get("href").is_some() => "reference",
        Node::Obj(_) => "object",
        Node::List(_) | Node::Members(..) => "list",
        Node::Props(_) => "properties",
    }
}

fn text_of(n: &Node) -> Option<String> {
    match n {
        Node::Str(s) => Some(s.clone()),
        Node::Int(i) => Some(i.to_string()),
        Node::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Asserts that every field of `xml` is in `json` with the same shape and text.
fn same_document(name: &str, json: &Obj, xml: &Obj) {
    for (k, v) in &xml.0 {
        // The XML reader names a member by its element; JSON may say nothing.
        if k == "resourceURI" && json.get(k).is_none() {
            continue;
        }
        let j = json
            .get(k)
            .unwrap_or_else(|| panic!("{name}: `{k}` of the XML is not in the JSON"));
        assert_eq!(shape(j), shape(v), "{name}: `{k}`");
        match (v, j) {
            (Node::Obj(a), Node::Obj(b)) => same_document(&format!("{name}.{k}"), b, a),
            (Node::List(a), Node::List(b)) => {
                assert_eq!(a.len(), b.len(), "{name}.{k}");
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    match (x, y) {
                        (Node::Obj(x), Node::Obj(y)) => {
                            same_document(&format!("{name}.{k}[{i}]"), y, x)
                        }
                        _ => assert_eq!(text_of(x), text_of(y), "{name}.{k}[{i}]"),
                    }
                }
            }
            (Node::Props(a), Node::Props(b)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort();
                b.sort();
                assert_eq!(a, b, "{name}.{k}");
            }
            _ => assert_eq!(text_of(v), text_of(j), "{name}: `{k}`"),
        }
    }
}

/// Fields of the samples that cms has no data for, by type, with why.
const ABSENT: &[(&str, &str, &str)] = &[
    ("Machine", "meters", "cms keeps no meters"),
    (
        "Machine",
        "updated",
        "backends do not say when a machine last changed",
    ),
    (
        "MachineConfiguration",
        "created",
        "flavors have no creation time",
    ),
    (
        "MachineConfiguration",
        "description",
        "flavors have no description",
    ),
    (
        "MachineConfiguration",
        "properties",
        "flavors carry no tags",
    ),
    (
        "MachineImage",
        "imageLocation",
        "backends do not say where an image is stored",
    ),
    (
        "MachineConfiguration",
        "operations",
        "configurations are the provider's: not changed or deleted",
    ),
    (
        "MachineTemplate",
        "volumes",
        "templates do not make volumes",
    ),
    (
        "Credential",
        "username",
        "credentials are SSH key pairs, not passwords",
    ),
    (
        "Credential",
        "password",
        "credentials are SSH key pairs, not passwords",
    ),
    ("Credential", "description", "key pairs have no description"),
    (
        "Credential",
        "created",
        "key pairs have no creation time on every backend",
    ),
    ("Volume", "description", "volumes have no description"),
    (
        "VolumeConfiguration",
        "created",
        "configurations are sizes the server offers",
    ),
    (
        "VolumeConfiguration",
        "format",
        "volumes are raw block devices",
    ),
    (
        "VolumeConfiguration",
        "operations",
        "configurations are sizes the server offers: not changed or deleted",
    ),
];

/// Asserts that `ours` has every field of the sample `sample` (of type `ty`) with
/// the same shape, but those in [`ABSENT`].
fn answers_like(ty: &str, sample: &Obj, ours: &Obj, how: &str) {
    for (k, v) in &sample.0 {
        if ABSENT.iter().any(|(t, f, _)| *t == ty && f == k) {
            continue;
        }
        let o = ours
            .get(k)
            .unwrap_or_else(|| panic!("{ty} ({how}): the server's answer has no `{k}`: {ours:?}"));
        assert_eq!(shape(o), shape(v), "{ty} ({how}): `{k}`");
    }
}

#[tokio::test]
async fn samples_are_read_and_answered_field_by_field() {
    let Some(dir) = samples() else { return };
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    // Each pair reads into the same document (the XML lacks what JSON alone says).
    for name in [
        "container",
        "credential",
        "machine-minimal",
        "machine",
        "machine_configuration",
        "machine_image",
        "machine_template",
        "volume",
        "volume_configuration",
        "volume_image",
        "volume_template",
    ] {
        let j = doc::read_json(&read(&format!("{name}.json"))).unwrap();
        let x = doc::read_xml(&read(&format!("{name}.xml"))).unwrap();
        if name != "container" {
            assert_eq!(j.resource_type(), x.resource_type(), "{name}");
        }
        let mut x = x;
        if name == "container" {
            x.retain(|k| k != "resourceURI");
        }
        same_document(name, &j, &x);
    }

    let s = Server::with_test_config();
    for xml in [false, true] {
        let c = Client::alice(&s, xml);
        // The request: a MachineCreate by value with references, as Deltacloud wrote
        // it. Its references name another server: refused, saying so.
        let by_value = String::from_utf8(read("machine_create_by_value.xml")).unwrap();
        let a = s
            .client
            .post(s.url("/cimi/local/machines"))
            .basic_auth("alice", Some(ALICE))
            .header("content-type", "application/xml")
            .body(by_value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 400);
        let text = a.text().await.unwrap();
        assert!(text.contains("localhost:3001"), "{text}");
        let (image, flavor) = image_and_flavor(&s, "local").await;
        let ours = by_value
            .replace(
                "http://localhost:3001/cimi/machine_configurations/m1-small",
                &s.url(&format!("/cimi/local/machineConfigs/{flavor}")),
            )
            .replace(
                "http://localhost:3001/cimi/machine_images/img2",
                &s.url(&format!("/cimi/local/machineImages/{image}")),
            );
        let a =
            c.s.client
                .post(s.url("/cimi/local/machines"))
                .basic_auth("alice", Some(ALICE))
                .header("content-type", "application/xml; charset=utf-8")
                .header("accept", c.mime())
                .body(ours)
                .send()
                .await
                .unwrap();
        assert_eq!(a.status(), 202);
        let machine = a.headers()["location"].to_str().unwrap().to_owned();
        let m = c.get(&machine).await;
        assert_eq!(m.doc.str("name").as_deref(), Some("xml_machine_by_value"));

        // The resources, as the server answers them, have the samples' fields.
        let how = if xml { "XML" } else { "JSON" };
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq2JmQ8z6Zy0c9m5x1Xv0Ck8mZ0yQeQ2c5v2m3R0q1a sample";
        let cred = c
            .post(
                "/cimi/local/credentials",
                "CredentialCreate",
                serde_json::json!({"name": format!("sample-{how}"), "credentialTemplate": {"key": key}}),
            )
            .await;
        assert_eq!(cred.status, 201, "{}", cred.text);
        let net = c.get("/cimi/local/networks").await.members()[0]
            .str("id")
            .unwrap();
        let tpl = c
            .post(
                "/cimi/local/machineTemplates",
                "MachineTemplate",
                serde_json::json!({
                    "name": format!("sample-{how}"),
                    "description": "a template",
                    "machineConfig": {"href": s.url(&format!("/cimi/local/machineConfigs/{flavor}"))},
                    "machineImage": {"href": s.url(&format!("/cimi/local/machineImages/{image}"))},
                    "credential": {"href": cred.doc.str("id").unwrap()},
                    "networkInterfaces": [{"network": {"href": net}}],
                }),
            )
            .await;
        assert_eq!(tpl.status, 201, "{}", tpl.text);
        let made = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({
                    "name": format!("sample-{how}"),
                    "description": "a machine",
                    "properties": {"owner_id": "mockuser"},
                    "machineTemplate": {"href": tpl.doc.str("id").unwrap()},
                }),
            )
            .await;
        assert_eq!(made.status, 202, "{}", made.text);
        let vol = c
            .post(
                "/cimi/local/volumes",
                "VolumeCreate",
                serde_json::json!({"name": "v", "volumeTemplate": {"volumeConfig": {"href": s.url("/cimi/local/volumeConfigs/1GiB")}}}),
            )
            .await;
        assert_eq!(vol.status, 201, "{}", vol.text);
        let machine = c.wait_state(&made.header("location"), "STARTED").await;
        let cap = c
            .post(
                &format!("{}/capture", made.header("location")),
                "Action",
                serde_json::json!({"name": format!("sample-{how}"), "description": "captured",
                    "properties": {"status": "BUILD"}}),
            )
            .await;
        assert_eq!(cap.status, 202, "{}", cap.text);
        let image_doc = c.wait_state(&cap.header("location"), "AVAILABLE").await.doc;
        let ours = [
            ("Machine", machine.doc.clone()),
            (
                "MachineConfiguration",
                c.get("/cimi/local/machineConfigs").await.members()[0].clone(),
            ),
            ("MachineImage", image_doc),
            ("MachineTemplate", c.get(&tpl.header("location")).await.doc),
            ("Credential", c.get(&cred.header("location")).await.doc),
            ("Volume", c.get(&vol.header("location")).await.doc),
            (
                "VolumeConfiguration",
                c.get("/cimi/local/volumeConfigs").await.members()[0].clone(),
            ),
        ];
        for (file, ty) in [
            ("machine", "Machine"),
            ("machine_configuration", "MachineConfiguration"),
            ("machine_image", "MachineImage"),
            ("machine_template", "MachineTemplate"),
            ("credential", "Credential"),
            ("volume", "Volume"),
            ("volume_configuration", "VolumeConfiguration"),
        ] {
            let ours = &ours.iter().find(|(t, _)| *t == ty).unwrap().1;
            for ext in ["json", "xml"] {
                let f = format!("{file}.{ext}");
                let sample = if ext == "json" {
                    doc::read_json(&read(&f)).unwrap()
                } else {
                    doc::read_xml(&read(&f)).unwrap()
                };
                answers_like(ty, &sample, ours, how);
            }
        }
    }
}

#[tokio::test]
async fn queries_creates_actions_and_errors_in_json_and_xml() {
    let s = Server::with_test_config();
    let (image, flavor) = image_and_flavor(&s, "local").await;
    for xml in [false, true] {
        let c = Client::alice(&s, xml);
        let how = if xml { "x" } else { "j" };
        // Fully by value: the configuration as cpu and memory, the credential as a key.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvZyTnkzX5p7u2lHsdSgUr9xG6wR0rP3Yb4mQz8a1c2 byvalue";
        let a = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({
                    "name": format!("q-{how}-1"),
                    "properties": {"tier": "web"},
                    "machineTemplate": {
                        "machineConfig": {"cpu": 2, "memory": 2 * 1024 * 1024},
                        "machineImage": {"href": s.url(&format!("/cimi/local/machineImages/{image}"))},
                        "credential": {"key": key},
                        "userData": "#cloud-config\n",
                    },
                }),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        let m1 = a.header("location");
        let job = a.header("cimi-job-uri");
        assert!(job.contains("/cimi/local/jobs/job-"), "{job}");
        let done = c.wait_job(&job).await;
        assert_eq!(done.str("state").as_deref(), Some("SUCCESS"));
        assert_eq!(done.str("action").as_deref(), Some("add"));
        assert_eq!(done.href_of("targetResource").as_deref(), Some(m1.as_str()));
        let m = c.wait_state(&m1, "STARTED").await;
        // The smallest configuration with 2 CPUs and 2 GiB: medium (2 CPUs, 4 GiB).
        assert_eq!(m.doc.str("cpu").as_deref(), Some("2"));
        assert_eq!(m.doc.str("memory").as_deref(), Some("4194304"));
        assert!(m
            .doc
            .href_of("credential")
            .unwrap()
            .contains("/credentials/cimi-"));
        assert_eq!(m.ops(), ["stop", "restart", "capture", "edit", "delete"]);
        let a = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({
                    "name": format!("q-{how}-2"),
                    "machineTemplate": {
                        "machineConfig": {"href": s.url(&format!("/cimi/local/machineConfigs/{flavor}"))},
                        "machineImage": {"href": s.url(&format!("/cimi/local/machineImages/{image}"))},
                    },
                }),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        let m2 = a.header("location");
        c.wait_state(&m2, "STARTED").await;

        // An Action posted to the stop operation that says restart: the href decides.
        let a = c
            .post(
                &format!("{m2}/stop"),
                "Action",
                serde_json::json!({"action": format!("{NS}/action/restart")}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        assert_eq!(a.doc.str("action").unwrap(), format!("{NS}/action/stop"));
        let done = c.wait_job(&a.header("cimi-job-uri")).await;
        assert_eq!(done.str("state").as_deref(), Some("SUCCESS"), "{done:?}");
        let stopped = c.wait_state(&m2, "STOPPED").await;
        assert_eq!(stopped.ops(), ["start", "capture", "edit", "delete"]);
        // Not offered when stopped: 405.
        let a = c
            .post(&format!("{m2}/stop"), "Action", serde_json::json!({}))
            .await;
        assert_eq!(a.status, 405, "{}", a.text);
        assert!(a.text.contains("STOPPED"), "{}", a.text);
        // The action named in the body, posted to the machine itself.
        let a = c
            .post(
                &m2,
                "Action",
                serde_json::json!({"action": format!("{NS}/action/start")}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        c.wait_state(&m2, "STARTED").await;
        for (body, want) in [
            (
                serde_json::json!({"action": format!("{NS}/action/explode")}),
                400,
            ),
            (serde_json::json!({"name": "no action"}), 400),
        ] {
            let a = c.post(&m2, "Action", body).await;
            assert_eq!(a.status, want, "{}", a.text);
        }
        let a = c
            .post(&format!("{m2}/explode"), "Action", serde_json::json!({}))
            .await;
        assert_eq!(a.status, 404, "{}", a.text);

        // Capture: the image appears among the machine images.
        let a = c
            .post(
                &format!("{m2}/capture"),
                "Action",
                serde_json::json!({"action": format!("{NS}/action/capture"), "name": format!("cap-{how}")}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.text);
        let img = a.header("location");
        assert!(img.contains("/cimi/local/machineImages/"), "{img}");
        c.wait_state(&img, "AVAILABLE").await;

        // Edit: properties replaced whole, the description set; with $select, only
        // what it names (left out of the body: removed); the name stays.
        let a = c
            .call(
                Method::PUT,
                &m2,
                Some(c.body(
                    "Machine",
                    serde_json::json!({"description": "edited", "properties": {"tier": "db", "k": "v"}}),
                )),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.doc.str("description").as_deref(), Some("edited"));
        let mut props = a.doc.props().to_vec();
        props.sort();
        assert_eq!(
            props,
            [
                ("k".to_owned(), "v".to_owned()),
                ("tier".to_owned(), "db".to_owned())
            ]
        );
        let a = c
            .call(
                Method::PUT,
                &format!("{m2}?$select=properties"),
                Some(c.body("Machine", serde_json::json!({"name": format!("q-{how}-2")}))),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(a.doc.props().is_empty(), "{}", a.text);
        assert_eq!(a.doc.str("description").as_deref(), Some("edited"));
        let a = c
            .call(
                Method::PUT,
                &m2,
                Some(c.body("Machine", serde_json::json!({"name": "renamed"}))),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);

        // $filter over attributes and properties, $orderby, $first/$last, $select.
        let list = |q: &str| format!("/cimi/local/machines?{q}");
        let a = c
            .get(&list("$filter=property%5B%27tier%27%5D%3D%27web%27"))
            .await;
        assert_eq!(a.members().len(), 1, "{}", a.text);
        assert_eq!(a.members()[0].str("id").unwrap(), m1);
        let a = c
            .get(&list(&format!(
                "$filter=(name%3D%27q-{how}-1%27%20or%20name%3D%27q-{how}-2%27)%20and%20cpu%3E%3D1&$orderby=name:desc"
            )))
            .await;
        let names: Vec<String> = a.members().iter().map(|m| m.str("name").unwrap()).collect();
        assert_eq!(names, [format!("q-{how}-2"), format!("q-{how}-1")]);
        let a = c
            .get(&list(&format!(
                "$filter=name%3D%27q-{how}-1%27%20or%20name%3D%27q-{how}-2%27&$orderby=name&$first=2&$last=2&$select=name,state"
            )))
            .await;
        assert_eq!(a.doc.str("count").as_deref(), Some("2"));
        let only = &a.members()[0];
        assert_eq!(only.str("name").unwrap(), format!("q-{how}-2"));
        let fields: Vec<&str> = only.0.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            fields
                .iter()
                .all(|f| ["resourceURI", "id", "name", "state"].contains(f)),
            "{fields:?}"
        );
        let a = c
            .get(&list("$filter=created%3E2000-01-01&$first=1&$last=1"))
            .await;
        assert_eq!(a.members().len(), 1, "{}", a.text);
        let a = c.get(&list("$first=5&$last=3")).await;
        assert!(a.members().is_empty());
        // $expand opens the machine's parts.
        let a = c
            .get(&format!("{m1}?$expand=networkInterfaces,disks"))
            .await;
        let nics = a.doc.obj("networkInterfaces").unwrap();
        assert!(
            nics.str("count").unwrap().parse::<u32>().unwrap() >= 1,
            "{}",
            a.text
        );
        let addr_text = a.text.clone();
        assert!(
            addr_text.contains("\"ip\"") || addr_text.contains("<ip>"),
            "{addr_text}"
        );
        assert!(a.doc.obj("disks").unwrap().get("count").is_some());
        assert_eq!(
            c.get(&format!("{m1}?$expand=*"))
                .await
                .doc
                .obj("volumes")
                .unwrap()
                .get("href")
                .map(|_| ()),
            Some(())
        );
        // Invalid query values: 400, saying where or what.
        for (q, says) in [
            ("$filter=name%3D", "character"),
            ("$filter=(name%3D%27a%27", "')'"),
            ("$filter=nosuch%3D1", "nosuch"),
            ("$first=0", "$first"),
            ("$last=x", "$last"),
            ("$select=nosuch", "nosuch"),
            ("$expand=name", "disks"),
            ("$orderby=name:up", "$orderby"),
            ("$limit=3", "$limit"),
        ] {
            let a = c.call(Method::GET, &list(q), None).await;
            assert_eq!(a.status, 400, "{q}: {}", a.text);
            assert!(a.text.contains(says), "{q}: {}", a.text);
        }

        // Volumes: made, attached through MachineVolume, seen on both sides, detached.
        let v = c
            .post(
                "/cimi/local/volumes",
                "VolumeCreate",
                serde_json::json!({"name": format!("v-{how}"), "volumeTemplate": {"volumeConfig": {"capacity": 1024 * 1024}}}),
            )
            .await;
        assert_eq!(v.status, 201, "{}", v.text);
        let vol = v.header("location");
        c.wait_state(&vol, "AVAILABLE").await;
        let a = c
            .post(
                &format!("{m1}/volumes"),
                "MachineVolume",
                serde_json::json!({"volume": {"href": vol}, "initialLocation": "/dev/sdf"}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        let attachment = a.header("location");
        c.wait_state(&vol, "IN-USE").await;
        let parts = c.get(&format!("{m1}/volumes")).await;
        assert_eq!(parts.members().len(), 1, "{}", parts.text);
        let a = c.call(Method::DELETE, &attachment, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        c.wait_state(&vol, "AVAILABLE").await;
        let a = c.call(Method::DELETE, &vol, None).await;
        assert_eq!(a.status, 200, "{}", a.text);

        // Networks: made with a range, listed, deleted.
        let n = c
            .post(
                "/cimi/local/networks",
                "NetworkCreate",
                serde_json::json!({"name": format!("n-{how}"), "networkTemplate": {"networkConfig": {"cidr": "10.77.0.0/24"}}}),
            )
            .await;
        assert_eq!(n.status, 201, "{}", n.text);
        assert_eq!(n.doc.str("cidr").as_deref(), Some("10.77.0.0/24"));
        let a = c.call(Method::DELETE, &n.header("location"), None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let a = c
            .post(
                "/cimi/local/networks",
                "NetworkCreate",
                serde_json::json!({"name": "x"}),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);

        // Jobs: listed per provider, filtered.
        let all = c.get("/cimi/local/jobs").await;
        // m1's create; m2's create, stop and start (the refused stop made none).
        let mine = all
            .members()
            .iter()
            .filter(|j| [&m1, &m2].contains(&&j.href_of("targetResource").unwrap()))
            .count();
        assert_eq!(mine, 4, "{}", all.text);
        let a = c
            .get("/cimi/local/jobs?$filter=state%3D%27SUCCESS%27")
            .await;
        assert!(!a.members().is_empty(), "{}", a.text);
        assert!(a
            .members()
            .iter()
            .all(|j| j.str("state").as_deref() == Some("SUCCESS")));
        assert!(
            a.members().len() < all.members().len()
                || all
                    .members()
                    .iter()
                    .all(|j| j.str("state").as_deref() == Some("SUCCESS"))
        );
        // Metadata says what machines offer here.
        let md = c.get("/cimi/local/resourceMetadata/Machine").await;
        assert!(
            md.text.contains(&format!("{NS}/action/capture")),
            "{}",
            md.text
        );

        // Errors.
        let a = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({"name": "x"}),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert!(a.text.contains("machineTemplate"), "{}", a.text);
        let a = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({"machineTemplate": {"href": s.url("/cimi/local/machineTemplates/tpl-00000000000000000")}}),
            )
            .await;
        assert_eq!(a.status, 404, "{}", a.text);
        let a = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({"machineTemplate": {
                    "machineConfig": {"cpu": 512},
                    "machineImage": {"href": s.url(&format!("/cimi/local/machineImages/{image}"))}}}),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert!(a.text.contains("512 CPUs"), "{}", a.text);
        let a = c
            .post(
                "/cimi/local/machines",
                "MachineCreate",
                serde_json::json!({"machineTemplate": {
                    "machineConfig": {"href": s.url(&format!("/cimi/broken/machineConfigs/{flavor}"))},
                    "machineImage": {"href": s.url(&format!("/cimi/local/machineImages/{image}"))}}}),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert!(a.text.contains("provider broken"), "{}", a.text);
        let a = c
            .call(
                Method::POST,
                "/cimi/local/machines",
                Some("{\"name\": ".into()),
            )
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        let a = c.call(Method::PATCH, &m1, None).await;
        assert_eq!(a.status, 405, "{}", a.text);
        assert!(!a.header("allow").is_empty());
        let a = c.call(Method::GET, "/cimi/local/nothing", None).await;
        assert_eq!(a.status, 404, "{}", a.text);
        let a = c
            .call(Method::GET, "/cimi/nosuch/cloudEntryPoint", None)
            .await;
        assert_eq!(a.status, 404, "{}", a.text);
        let a = c.call(Method::GET, "/cimi/broken/machines", None).await;
        assert_eq!(a.status, 503, "{}", a.text);

        // Tenant isolation: bob sees none of alice's machines, templates or jobs.
        let bob = Client {
            s: &s,
            user: "bob",
            key: BOB,
            xml,
        };
        assert_eq!(bob.call(Method::GET, &m1, None).await.status, 404);
        assert_eq!(bob.call(Method::GET, &job, None).await.status, 404);
        assert_eq!(bob.call(Method::DELETE, &m1, None).await.status, 404);
        let theirs = bob.get("/cimi/local/machines").await;
        assert!(!theirs.text.contains(&m1));
        let a = bob
            .call(Method::GET, "/cimi/slow/cloudEntryPoint", None)
            .await;
        assert!([403, 404].contains(&a.status), "{}", a.text);

        // Delete both: jobs to SUCCESS, then 404.
        for m in [&m1, &m2] {
            let a = c.call(Method::DELETE, m, None).await;
            assert_eq!(a.status, 202, "{}", a.text);
            let done = c.wait_job(&a.header("cimi-job-uri")).await;
            assert_eq!(done.str("state").as_deref(), Some("SUCCESS"));
            assert_eq!(c.call(Method::GET, m, None).await.status, 404);
        }
    }
}

#[tokio::test]
async fn negotiation_authentication_and_liberal_xml() {
    let s = Server::with_test_config();
    let get = |accept: Option<&'static str>| {
        let mut r = s
            .client
            .get(s.url("/cimi/cloudEntryPoint"))
            .basic_auth("alice", Some(ALICE));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    for (accept, want) in [
        (None, "application/json"),
        (Some("*/*"), "application/json"),
        (Some("application/xml"), "application/xml"),
        (Some("text/xml"), "application/xml"),
        (
            Some("application/json;q=0.5, application/xml"),
            "application/xml",
        ),
        (
            Some("application/xml;q=0.1, application/json"),
            "application/json",
        ),
    ] {
        let r = get(accept).await.unwrap();
        assert_eq!(r.status(), 200, "{accept:?}");
        assert_eq!(r.headers()["content-type"], want, "{accept:?}");
    }
    let r = get(Some("text/html")).await.unwrap();
    assert_eq!(r.status(), 406);
    // The native Bearer key works too; a wrong key or tenant does not.
    let r = s
        .client
        .get(s.url("/cimi/cloudEntryPoint"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (user, key) in [("bob", ALICE), ("alice", "wrong")] {
        let r = s
            .client
            .get(s.url("/cimi/cloudEntryPoint"))
            .basic_auth(user, Some(key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"cms\"");
    }
    // The entry point of the tenant's first provider is `local`'s.
    let ep: serde_json::Value = get(None).await.unwrap().json().await.unwrap();
    assert_eq!(ep["provider"], "local");
    assert_eq!(ep["driver"], "memory");
    assert_eq!(ep["id"], s.url("/cimi/local/cloudEntryPoint"));
    assert_eq!(ep["baseURI"], s.url("/cimi/local/"));

    // XML with a namespace prefix and whitespace, an unknown Content-Type, none.
    let (image, flavor) = image_and_flavor(&s, "local").await;
    let body = format!(
        r#"<?xml version="1.0"?>
        <c:MachineCreate xmlns:c="{NS}">
          <c:name>
            prefixed
          </c:name>
          <c:machineTemplate>
            <c:machineConfig href="{}"/>
            <c:machineImage href="{}"/>
          </c:machineTemplate>
        </c:MachineCreate>"#,
        s.url(&format!("/cimi/local/machineConfigs/{flavor}")),
        s.url(&format!("/cimi/local/machineImages/{image}"))
    );
    let post = |ct: Option<&'static str>, b: String| {
        let mut r = s
            .client
            .post(s.url("/cimi/local/machines"))
            .basic_auth("alice", Some(ALICE));
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.body(b).send()
    };
    let r = post(Some("application/xml;charset=UTF-8"), body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["name"], "prefixed");
    let r = post(None, body.clone()).await.unwrap();
    assert_eq!(r.status(), 202);
    let r = post(Some("text/plain"), body).await.unwrap();
    assert_eq!(r.status(), 415);
    let r = post(
        Some("application/xml"),
        "<MachineCreate><name>x</MachineCreate>".into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_provider_without_a_feature_answers_501() {
    let upstream = Server::with_test_config();
    let config = format!(
        r#"
[[providers]]
name = "fed"
driver = "cms"
endpoint = "{}"
provider = "local"
api_key_env = "CMS_TEST_UPSTREAM_KEY"

[[tenants]]
name = "alice"
api_key = "{ALICE}"
providers = ["*"]
"#,
        upstream.base
    );
    let s = Server::start(Options {
        config: Some(config),
        env: vec![("CMS_TEST_UPSTREAM_KEY".into(), ALICE.into())],
        key: Some(ALICE.into()),
        ..Options::default()
    });
    let c = Client::alice(&s, false);
    let ep = c.get("/cimi/cloudEntryPoint").await;
    assert_eq!(ep.doc.str("driver").as_deref(), Some("cms"));
    assert!(ep.doc.get("volumes").is_none(), "{}", ep.text);
    let a = c.call(Method::GET, "/cimi/fed/volumes", None).await;
    assert_eq!(a.status, 501, "{}", a.text);
    let (image, flavor) = image_and_flavor(&s, "fed").await;
    let a = c
        .post(
            "/cimi/fed/machines",
            "MachineCreate",
            serde_json::json!({"name": "fed-1", "machineTemplate": {
                "machineConfig": {"href": s.url(&format!("/cimi/fed/machineConfigs/{flavor}"))},
                "machineImage": {"href": s.url(&format!("/cimi/fed/machineImages/{image}"))}}}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let m = a.header("location");
    let started = c.wait_state(&m, "STARTED").await;
    // No capture among the operations, and asking for it is 501.
    assert!(
        !started.ops().contains(&"capture".to_owned()),
        "{:?}",
        started.ops()
    );
    let a = c
        .post(&format!("{m}/capture"), "Action", serde_json::json!({}))
        .await;
    assert_eq!(a.status, 501, "{}", a.text);
    let a = c.call(Method::DELETE, &m, None).await;
    assert_eq!(a.status, 202, "{}", a.text);
    let done = c.wait_job(&a.header("cimi-job-uri")).await;
    assert_eq!(done.str("state").as_deref(), Some("SUCCESS"), "{done:?}");
}
