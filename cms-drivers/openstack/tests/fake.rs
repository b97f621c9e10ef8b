//! The fake OpenStack over its socket with a plain HTTP client: Keystone, paging,
//! microversions, the server state machine, Glance, Neutron and injected faults.

use std::time::{Duration, Instant};

use cms_driver_openstack::fake::{FakeConfig, FakeDelays, FakeOpenStack, Fault, FaultKind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A client holding a token of the fake's user.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    microversion: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn password_auth(cloud: &FakeOpenStack) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": cloud.username(), "domain": {"name": "Default"},
            "password": cloud.password()}}},
        "scope": {"project": {"name": cloud.project_name(), "domain": {"id": "default"}}}
    }})
}

impl Api {
    async fn new(cloud: &FakeOpenStack) -> Api {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/auth/tokens", cloud.auth_url()))
            .json(&password_auth(cloud))
            .send()
            .await
            .expect("keystone answers");
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        Api {
            http,
            base: cloud.auth_url().replace("/identity/v3", ""),
            token,
            microversion: None,
        }
    }

    fn at(mut self, microversion: &str) -> Api {
        self.microversion = Some(microversion.to_owned());
        self
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut rb = self
            .http
            .request(method, url)
            .header("X-Auth-Token", &self.token)
            .header("Accept", "application/json");
        if let Some(v) = &self.microversion {
            rb = rb.header("OpenStack-API-Version", format!("compute {v}"));
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("the fake answers");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn instant(servers: usize) -> FakeConfig {
    FakeConfig {
        servers,
        delays: FakeDelays::instant(),
        ..FakeConfig::default()
    }
}

/// Polls a server until its status is `want` (or it is gone, for `"gone"`).
async fn wait_status(api: &Api, id: &str, want: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = api.get(&format!("/compute/v2.1/servers/{id}")).await;
        if (want == "gone" && a.status == 404) || a.body["server"]["status"] == want {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "server {id} never became {want}: {}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn keystone_issues_tokens_with_a_catalog_of_this_server() {
    let cloud = FakeOpenStack::start(FakeConfig::default());
    let http = reqwest::Client::new();
    let tokens = format!("{}/auth/tokens", cloud.auth_url());

    let r = http.get(cloud.auth_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["version"]["status"], "stable");
    let root = cloud.auth_url().replace("/v3", "");
    let r = http.get(&root).send().await.unwrap();
    assert_eq!(r.status(), 300);

    let r = http
        .post(&tokens)
        .json(&password_auth(&cloud))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("x-subject-token"));
    let body: Value = r.json().await.unwrap();
    let token = &body["token"];
    assert_eq!(token["project"]["name"], cloud.project_name());
    assert_eq!(token["project"]["id"], cloud.project_id());
    let catalog = token["catalog"].as_array().unwrap();
    let base = cloud.auth_url().replace("/identity/v3", "");
    for (kind, path) in [
        ("identity", "/identity"),
        ("compute", "/compute/v2.1"),
        ("image", "/image"),
        ("network", "/network"),
    ] {
        let service = catalog.iter().find(|s| s["type"] == kind).unwrap();
        let endpoints = service["endpoints"].as_array().unwrap();
        let mut interfaces: Vec<&str> = endpoints
            .iter()
            .map(|e| e["interface"].as_str().unwrap())
            .collect();
        interfaces.sort();
        assert_eq!(interfaces, ["admin", "internal", "public"]);
        for e in endpoints {
            assert_eq!(e["url"], format!("{base}{path}"));
            assert_eq!(e["region_id"], "RegionOne");
        }
    }

    // Wrong password: Keystone's 401.
    let mut wrong = password_auth(&cloud);
    wrong["auth"]["identity"]["password"]["user"]["password"] = json!("nope");
    let r = http.post(&tokens).json(&wrong).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["title"], "Unauthorized");

    // Another project: 401 as well.
    let mut other = password_auth(&cloud);
    other["auth"]["scope"]["project"]["name"] = json!("admin");
    let r = http.post(&tokens).json(&other).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Application credential, unscoped request.
    let (id, secret) = cloud.application_credential();
    let ac = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret}
    }}});
    let r = http.post(&tokens).json(&ac).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token"]["methods"], json!(["application_credential"]));
    assert_eq!(body["token"]["application_credential"]["id"], id);
    let mut bad = ac.clone();
    bad["auth"]["identity"]["application_credential"]["secret"] = json!("x");
    let r = http.post(&tokens).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn every_service_wants_a_valid_token() {
    let cloud = FakeOpenStack::start(instant(1));
    let http = reqwest::Client::new();
    let base = cloud.auth_url().replace("/identity/v3", "");
    for path in [
        "/compute/v2.1/servers",
        "/image/v2/images",
        "/network/v2.0/networks",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .header("X-Auth-Token", "forged")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Keystone uri="));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 401, "{path}");
    }
    // Version documents need none.
    for path in ["/compute/", "/compute/v2.1", "/image", "/network"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(r.status().is_success() || r.status() == 300, "{path}");
    }

    let api = Api::new(&cloud).await;
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
    cloud.expire_tokens();
    let a = api.get("/compute/v2.1/servers").await;
    assert_eq!(a.status, 401);
    let api = Api::new(&cloud).await;
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let cloud = FakeOpenStack::start(FakeConfig {
        token_lifetime: Duration::from_millis(200),
        ..instant(0)
    });
    let api = Api::new(&cloud).await;
    assert_eq!(api.get("/network/v2.0/networks").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.get("/network/v2.0/networks").await.status, 401);
}

#[tokio::test]
async fn nova_answers_at_the_microversion_asked_for() {
    let cloud = FakeOpenStack::start(instant(1));
    let api = Api::new(&cloud).await;

    let doc = api.get("/compute/v2.1").await;
    assert_eq!(doc.body["version"]["version"], "2.96");
    assert_eq!(doc.body["version"]["min_version"], "2.1");
    let root = api.get("/compute/").await;
    assert_eq!(root.body["versions"][0]["id"], "v2.1");

    let a = api.get("/compute/v2.1/servers/detail").await;
    assert_eq!(a.header("openstack-api-version"), Some("compute 2.1"));
    assert_eq!(a.header("x-openstack-nova-api-version"), Some("2.1"));
    assert!(a.header("vary").unwrap().contains("OpenStack-API-Version"));
    assert!(a
        .header("x-compute-request-id")
        .unwrap()
        .starts_with("req-"));
    let s = &a.body["servers"][0];
    assert_eq!(s["flavor"]["id"], cloud.flavor_id("m1.small"));
    assert!(s.get("tags").is_none());
    assert!(s.get("locked").is_none());
    assert!(s.get("OS-EXT-SRV-ATTR:host").is_none());

    let api = api.at("2.47");
    let s = &api.get("/compute/v2.1/servers/detail").await.body["servers"][0];
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    assert_eq!(s["flavor"]["ram"], 2048);
    assert_eq!(s["tags"], json!([]));
    assert_eq!(s["description"], Value::Null);
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(s["OS-EXT-AZ:availability_zone"], "nova");
    assert!(s["addresses"]["private"][0]["addr"]
        .as_str()
        .unwrap()
        .starts_with("10.0.0."));
    assert_eq!(s["hostId"].as_str().unwrap().len(), 56);
    assert!(s.get("pinned_availability_zone").is_none());

    let api = api.at("latest");
    let a = api.get("/compute/v2.1/servers/detail").await;
    assert_eq!(a.header("openstack-api-version"), Some("compute 2.96"));
    let s = &a.body["servers"][0];
    assert_eq!(s["pinned_availability_zone"], Value::Null);
    assert_eq!(s["OS-EXT-SRV-ATTR:hostname"], "server-0001");
    assert_eq!(s["server_groups"], json!([]));

    let a = api.at("2.97").get("/compute/v2.1/servers").await;
    assert_eq!(a.status, 406);
    assert!(a.body["computeFault"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum is 2.96"));
    let api = Api::new(&cloud).await.at("two");
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 400);

    // The legacy header.
    let api = Api::new(&cloud).await;
    let r = api
        .http
        .get(format!("{}/compute/v2.1/flavors/detail", api.base))
        .header("X-Auth-Token", &api.token)
        .header("X-OpenStack-Nova-API-Version", "2.61")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-openstack-nova-api-version"], "2.61");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["flavors"][0]["extra_specs"], json!({}));
    assert_eq!(body["flavors"][0]["swap"], "");
    let seen = cloud.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.nova_api_version.as_deref(), Some("2.61"));
    assert!(last.token);
    assert_eq!(last.status, 200);
}

#[tokio::test]
async fn servers_are_listed_newest_first_a_page_at_a_time() {
    let cloud = FakeOpenStack::start(FakeConfig {
        max_limit: 3,
        ..instant(7)
    });
    let api = Api::new(&cloud).await;
    let mut ids = Vec::new();
    let mut url = "/compute/v2.1/servers/detail".to_owned();
    let mut pages = 0;
    loop {
        let a = api.get(&url).await;
        assert_eq!(a.status, 200, "{}", a.text);
        pages += 1;
        for s in a.body["servers"].as_array().unwrap() {
            ids.push(s["id"].as_str().unwrap().to_owned());
        }
        match a.body["servers_links"][0]["href"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&format!("{}/compute/v2.1/servers/detail?", api.base)));
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, cloud.server_ids());
    let names: Vec<String> = {
        let a = api.get("/compute/v2.1/servers?limit=2").await;
        assert!(a.body["servers_links"][0]["href"]
            .as_str()
            .unwrap()
            .contains("limit=2&marker="));
        a.body["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names, ["server-0007", "server-0006"]);

    let a = api.get("/compute/v2.1/servers?marker=nope").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["badRequest"]["message"], "marker [nope] not found");
    let a = api.get("/compute/v2.1/servers?limit=-1").await;
    assert_eq!(a.status, 400);

    // A deleted server is still a valid marker.
    let gone = ids[2].clone();
    let d = api
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{gone}"),
            None,
        )
        .await;
    assert_eq!(d.status, 204);
    wait_status(&api, &gone, "gone").await;
    let a = api
        .get(&format!("/compute/v2.1/servers?marker={gone}"))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["servers"][0]["id"], ids[3]);

    // Filters.
    let a = api.get("/compute/v2.1/servers?name=^server-000[12]$").await;
    assert_eq!(a.body["servers"].as_array().unwrap().len(), 2);
    let a = api.get("/compute/v2.1/servers?status=SHUTOFF").await;
    assert_eq!(a.body["servers"], json!([]));
}

#[tokio::test]
async fn a_server_goes_through_novas_states() {
    let cloud = FakeOpenStack::start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(150)),
        ..FakeConfig::default()
    });
    let api = Api::new(&cloud).await.at("2.52");
    let a = api
        .post(
            "/compute/v2.1/servers",
            json!({"server": {
                "name": "web",
                "imageRef": cloud.image_id("cirros"),
                "flavorRef": cloud.flavor_id("m1.tiny"),
                "networks": [{"uuid": cloud.network_id("private")}],
                "metadata": {"role": "web"},
                "tags": ["blue"],
                "user_data": "I2Nsb3VkLWNvbmZpZwo="
            }}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["server"]["id"].as_str().unwrap().to_owned();
    assert!(a.body["server"]["adminPass"].is_string());
    assert_eq!(a.body["server"]["security_groups"][0]["name"], "default");
    assert_eq!(
        cloud.server_user_data(&id).as_deref(),
        Some("I2Nsb3VkLWNvbmZpZwo=")
    );

    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s.body["server"]["status"], "BUILD");
    assert_eq!(s.body["server"]["OS-EXT-STS:task_state"], "scheduling");
    assert_eq!(s.body["server"]["addresses"], json!({}));
    let s = wait_status(&api, &id, "ACTIVE").await;
    assert_eq!(s.body["server"]["tags"], json!(["blue"]));
    assert_eq!(s.body["server"]["metadata"]["role"], "web");
    assert!(s.body["server"]["OS-SRV-USG:launched_at"].is_string());
    let ports = api
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await;
    let port = &ports.body["ports"][0];
    assert_eq!(
        port["fixed_ips"][0]["ip_address"],
        s.body["server"]["addresses"]["private"][0]["addr"]
    );
    assert_eq!(
        port["mac_address"],
        s.body["server"]["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"]
    );

    let action = format!("/compute/v2.1/servers/{id}/action");
    let a = api.post(&action, json!({"os-stop": null})).await;
    assert_eq!(a.status, 202);
    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s.body["server"]["status"], "ACTIVE");
    assert_eq!(s.body["server"]["OS-EXT-STS:task_state"], "powering-off");
    let a = api.post(&action, json!({"os-stop": null})).await;
    assert_eq!(a.status, 409);
    assert_eq!(
        a.body["conflictingRequest"]["message"],
        format!("Cannot 'stop' instance {id} while it is in task_state powering-off")
    );
    let s = wait_status(&api, &id, "SHUTOFF").await;
    assert_eq!(s.body["server"]["OS-EXT-STS:power_state"], 4);
    let a = api.post(&action, json!({"os-stop": null})).await;
    assert_eq!(
        a.body["conflictingRequest"]["message"],
        format!("Cannot 'stop' instance {id} while it is in vm_state stopped")
    );
    let a = api.post(&action, json!({"reboot": {"type": "SOFT"}})).await;
    assert_eq!(a.status, 409);

    assert_eq!(
        api.post(&action, json!({"os-start": null})).await.status,
        202
    );
    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s.body["server"]["OS-EXT-STS:task_state"], "powering-on");
    wait_status(&api, &id, "ACTIVE").await;

    assert_eq!(
        api.post(&action, json!({"reboot": {"type": "SOFT"}}))
            .await
            .status,
        202
    );
    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s.body["server"]["status"], "REBOOT");
    wait_status(&api, &id, "ACTIVE").await;
    assert_eq!(
        api.post(&action, json!({"reboot": {"type": "HARD"}}))
            .await
            .status,
        202
    );
    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s.body["server"]["status"], "HARD_REBOOT");
    wait_status(&api, &id, "ACTIVE").await;
    let a = api.post(&action, json!({"reboot": {"type": "WARM"}})).await;
    assert_eq!(a.status, 400);

    let a = api
        .post(&action, json!({"os-getConsoleOutput": {"length": 2}}))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["output"].as_str().unwrap().lines().count(), 2);

    let d = api
        .call(Method::DELETE, &format!("/compute/v2.1/servers/{id}"), None)
        .await;
    assert_eq!(d.status, 204);
    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(s.body["server"]["OS-EXT-STS:task_state"], "deleting");
    let gone = wait_status(&api, &id, "gone").await;
    assert_eq!(
        gone.body["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );
    let ports = api
        .get(&format!("/network/v2.0/ports?device_id={id}"))
        .await;
    assert_eq!(ports.body["ports"], json!([]));
    assert_eq!(cloud.server_count(), 0);
}

async fn create(api: &Api, server: Value) -> Answer {
    api.post("/compute/v2.1/servers", json!({ "server": server }))
        .await
}

#[tokio::test]
async fn a_create_is_checked_as_nova_checks_it() {
    let cloud = FakeOpenStack::start(FakeConfig {
        max_servers: 2,
        ..instant(1)
    });
    let image = cloud.image_id("cirros");
    let flavor = cloud.flavor_id("m1.tiny");
    let private = cloud.network_id("private");

    let message =
        |a: &Answer, kind: &str| a.body[kind]["message"].as_str().unwrap_or("").to_owned();

    let api = Api::new(&cloud).await.at("2.51");
    let a = create(&api, json!({"name": "x", "imageRef": image, "flavorRef": flavor, "networks": "none", "tags": ["a"]})).await;
    assert_eq!(a.status, 400);
    assert!(message(&a, "badRequest")
        .contains("Additional properties are not allowed ('tags' was unexpected)"));
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": flavor}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(message(&a, "badRequest").contains("'networks' is a required property"));

    let api = Api::new(&cloud).await.at("2.1");
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": flavor, "networks": "none"}),
    )
    .await;
    assert_eq!(a.status, 400, "networks as a string before 2.37");
    let a = create(&api, json!({"name": "x", "imageRef": cloud.image_id("other-project-image"), "flavorRef": flavor})).await;
    assert_eq!(message(&a, "badRequest"), "Can not find requested image");
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": "99"}),
    )
    .await;
    assert_eq!(message(&a, "badRequest"), "Flavor 99 could not be found.");
    let missing = "5f3c2b1a-0000-4000-8000-000000000000";
    let a = create(&api, json!({"name": "x", "imageRef": image, "flavorRef": flavor, "networks": [{"uuid": missing}]})).await;
    assert_eq!(
        message(&a, "badRequest"),
        format!("Network {missing} could not be found.")
    );
    let public = cloud.network_id("public");
    let a = create(&api, json!({"name": "x", "imageRef": image, "flavorRef": flavor, "networks": [{"uuid": public}]})).await;
    assert_eq!(a.status, 403);
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": flavor, "key_name": "nope"}),
    )
    .await;
    assert_eq!(message(&a, "badRequest"), "Invalid key_name provided.");
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": flavor, "availability_zone": "mars"}),
    )
    .await;
    assert_eq!(a.status, 400);
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": flavor, "user_data": "not base64!"}),
    )
    .await;
    assert_eq!(a.status, 400);
    let a = create(
        &api,
        json!({"name": "x", "imageRef": image, "flavorRef": flavor, "metadata": {"k": 1}}),
    )
    .await;
    assert_eq!(a.status, 400);

    // Without networks before 2.37: the one network the project may use.
    let a = create(
        &api,
        json!({"name": "ok", "imageRef": image, "flavorRef": format!("http://x/flavors/{flavor}")}),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.text);
    let id = a.body["server"]["id"].as_str().unwrap().to_owned();
    let s = api.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert!(s.body["server"]["addresses"]["private"].is_array());

    // The quota: 2 servers.
    let a = create(&api, json!({"name": "x", "imageRef": image, "flavorRef": flavor, "networks": [{"uuid": private}]})).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        message(&a, "forbidden"),
        "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    );
}

#[tokio::test]
async fn key_pairs_flavors_zones_metadata_and_tags() {
    let cloud = FakeOpenStack::start(FakeConfig {
        max_limit: 2,
        ..instant(1)
    });
    let api = Api::new(&cloud).await.at("2.2");
    // Its MD5 fingerprint as `ssh-keygen -l -E md5` prints it.
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGHWTXwIrkBmCeY3x0L+AQ2rJ2KuAjyhPHZ01ZZ1tqLH me@host";
    let a = api
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "mine", "public_key": key}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(
        a.body["keypair"]["fingerprint"],
        "41:ca:94:d7:b7:26:c0:f2:aa:f1:3d:ba:1e:cf:7c:1b"
    );
    assert_eq!(a.body["keypair"]["type"], "ssh");
    let a = api
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "mine", "public_key": key}}),
        )
        .await;
    assert_eq!(a.status, 409);
    assert_eq!(
        a.body["conflictingRequest"]["message"],
        "Key pair 'mine' already exists."
    );
    let a = api
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "made"}}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert!(a.body["keypair"]["private_key"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    let a = api
        .at("2.92")
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "other"}}),
        )
        .await;
    assert_eq!(a.status, 400);
    let api = Api::new(&cloud).await.at("2.35");
    let a = api.get("/compute/v2.1/os-keypairs").await;
    assert_eq!(a.body["keypairs"][0]["keypair"]["name"], "made");
    assert!(a.body["keypairs_links"][0]["href"]
        .as_str()
        .unwrap()
        .contains("marker=mine"));
    let a = api.get("/compute/v2.1/os-keypairs/mine").await;
    assert_eq!(a.body["keypair"]["public_key"], key);
    assert_eq!(
        api.call(Method::DELETE, "/compute/v2.1/os-keypairs/mine", None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/compute/v2.1/os-keypairs/mine").await.status, 404);

    // Flavors, two a page.
    let a = api.get("/compute/v2.1/flavors/detail").await;
    assert_eq!(a.body["flavors"].as_array().unwrap().len(), 2);
    let next = a.body["flavors_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.ends_with("flavors/detail?marker=2"));
    let a = api.get(&next).await;
    assert_eq!(a.body["flavors"][0]["name"], "m1.medium");
    assert_eq!(api.get("/compute/v2.1/flavors/42").await.status, 404);

    let a = api.get("/compute/v2.1/os-availability-zone").await;
    assert_eq!(a.body["availabilityZoneInfo"][0]["zoneName"], "nova");

    // Metadata and tags of the seeded server.
    let id = cloud.server_ids()[0].clone();
    let meta = format!("/compute/v2.1/servers/{id}/metadata");
    let a = api.post(&meta, json!({"metadata": {"a": "1"}})).await;
    assert_eq!(a.body["metadata"]["a"], "1");
    assert_eq!(a.body["metadata"]["purpose"], "seeded");
    let a = api
        .call(Method::PUT, &meta, Some(json!({"metadata": {"b": "2"}})))
        .await;
    assert_eq!(a.body["metadata"], json!({"b": "2"}));
    let a = api
        .call(
            Method::PUT,
            &format!("{meta}/c"),
            Some(json!({"meta": {"c": "3"}})),
        )
        .await;
    assert_eq!(a.body["meta"], json!({"c": "3"}));
    assert_eq!(api.get(&format!("{meta}/c")).await.body["meta"]["c"], "3");
    assert_eq!(
        api.call(Method::DELETE, &format!("{meta}/b"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("{meta}/b"), None)
            .await
            .status,
        404
    );

    let tags = format!("/compute/v2.1/servers/{id}/tags");
    assert_eq!(api.at("2.25").get(&tags).await.status, 404);
    let api = Api::new(&cloud).await.at("2.26");
    assert_eq!(
        api.call(Method::PUT, &format!("{tags}/red"), None)
            .await
            .status,
        201
    );
    assert_eq!(
        api.call(Method::PUT, &format!("{tags}/red"), None)
            .await
            .status,
        204
    );
    let a = api
        .call(Method::PUT, &tags, Some(json!({"tags": ["x", "y"]})))
        .await;
    assert_eq!(a.body["tags"], json!(["x", "y"]));
    assert_eq!(api.get(&format!("{tags}/x")).await.status, 204);
    assert_eq!(api.get(&format!("{tags}/red")).await.status, 404);
    let a = api.get("/compute/v2.1/servers?tags=x,y").await;
    assert_eq!(a.body["servers"].as_array().unwrap().len(), 1);
    let a = api.get("/compute/v2.1/servers?tags-any=z").await;
    assert_eq!(a.body["servers"], json!([]));
    assert_eq!(
        api.call(Method::DELETE, &format!("{tags}/x"), None)
            .await
            .status,
        204
    );
    assert_eq!(api.get(&tags).await.body["tags"], json!(["y"]));
}

#[tokio::test]
async fn glance_lists_what_the_project_may_see() {
    let cloud = FakeOpenStack::start(FakeConfig {
        max_limit: 1,
        ..instant(0)
    });
    let api = Api::new(&cloud).await;
    let r = api
        .http
        .get(format!("{}/image", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 300);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["versions"][0]["status"], "CURRENT");

    let a = api.get("/image/v2/images").await;
    assert_eq!(a.body["images"][0]["name"], "ubuntu-24.04");
    assert_eq!(a.body["first"], "/v2/images");
    let next = a.body["next"].as_str().unwrap();
    assert_eq!(
        next,
        format!("/v2/images?marker={}", cloud.image_id("ubuntu-24.04"))
    );
    let a = api.get(&format!("/image{next}")).await;
    assert_eq!(a.body["images"][0]["name"], "cirros");
    let a = api
        .get(&format!(
            "/image/v2/images?marker={}",
            cloud.image_id("cirros")
        ))
        .await;
    assert_eq!(a.body["images"], json!([]));
    assert!(a.body.get("next").is_none());

    let hidden = cloud.image_id("other-project-image");
    let a = api.get(&format!("/image/v2/images/{hidden}")).await;
    assert_eq!(a.status, 404);
    assert!(a.text.contains(&format!("No image found with ID {hidden}")));
    let a = api
        .get(&format!("/image/v2/images/{}", cloud.image_id("cirros")))
        .await;
    assert_eq!(a.body["visibility"], "public");
    assert_eq!(a.body["status"], "active");
}

#[tokio::test]
async fn neutron_networks_subnets_and_ports() {
    let cloud = FakeOpenStack::start(FakeConfig {
        max_limit: 1,
        ..instant(0)
    });
    let api = Api::new(&cloud).await;
    assert_eq!(api.get("/network").await.body["versions"][0]["id"], "v2.0");

    let a = api.get("/network/v2.0/networks").await;
    assert_eq!(a.body["networks"].as_array().unwrap().len(), 1);
    let links = a.body["networks_links"].as_array().unwrap();
    let next = links.iter().find(|l| l["rel"] == "next").unwrap()["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = api.get(&next).await;
    assert_eq!(b.body["networks"].as_array().unwrap().len(), 1);
    assert_ne!(a.body["networks"][0]["id"], b.body["networks"][0]["id"]);
    let a = api.get("/network/v2.0/networks?router:external=true").await;
    assert_eq!(a.body["networks"][0]["name"], "public");
    let a = api.get("/network/v2.0/networks?marker=nope").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["NeutronError"]["type"], "NetworkNotFound");
    let a = api.get("/network/v2.0/networks?colour=blue").await;
    assert_eq!(a.status, 400);

    // Not the project's: 403.
    let private = cloud.network_id("private");
    let a = api
        .call(
            Method::DELETE,
            &format!("/network/v2.0/networks/{private}"),
            None,
        )
        .await;
    assert_eq!(a.status, 403);

    let a = api
        .post(
            "/network/v2.0/networks",
            json!({"network": {"name": "lab"}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let net = a.body["network"]["id"].as_str().unwrap().to_owned();
    let a = api
        .post("/network/v2.0/subnets", json!({"subnet": {"network_id": net, "ip_version": 4, "cidr": "192.168.7.0/24", "name": "lab-v4"}}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["subnet"]["gateway_ip"], "192.168.7.1");
    let subnet = a.body["subnet"]["id"].as_str().unwrap().to_owned();
    let a = api
        .post(
            "/network/v2.0/subnets",
            json!({"subnet": {"network_id": net, "ip_version": 4, "cidr": "192.168.7.128/25"}}),
        )
        .await;
    assert_eq!(a.status, 400);

    // A server on it holds a port: the network cannot go.
    let s = api
        .at("2.37")
        .post("/compute/v2.1/servers", json!({"server": {"name": "n", "imageRef": cloud.image_id("cirros"), "flavorRef": "1", "networks": [{"uuid": net}]}}))
        .await;
    assert_eq!(s.status, 202, "{}", s.text);
    let server = s.body["server"]["id"].as_str().unwrap().to_owned();
    let api = Api::new(&cloud).await;
    let a = api
        .get(&format!("/network/v2.0/ports?network_id={net}"))
        .await;
    assert_eq!(a.body["ports"][0]["device_id"], server);
    assert_eq!(
        a.body["ports"][0]["fixed_ips"][0]["ip_address"],
        "192.168.7.2"
    );
    let a = api
        .call(
            Method::DELETE,
            &format!("/network/v2.0/networks/{net}"),
            None,
        )
        .await;
    assert_eq!(a.status, 409);
    assert_eq!(a.body["NeutronError"]["type"], "NetworkInUse");
    let a = api
        .call(
            Method::DELETE,
            &format!("/network/v2.0/subnets/{subnet}"),
            None,
        )
        .await;
    assert_eq!(a.status, 409);
    api.call(
        Method::DELETE,
        &format!("/compute/v2.1/servers/{server}"),
        None,
    )
    .await;
    wait_status(&api, &server, "gone").await;
    let a = api
        .call(
            Method::DELETE,
            &format!("/network/v2.0/networks/{net}"),
            None,
        )
        .await;
    assert_eq!(a.status, 204);
    let a = api.get(&format!("/network/v2.0/subnets/{subnet}")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["NeutronError"]["type"], "SubnetNotFound");
}

#[tokio::test]
async fn injected_faults_answer_in_each_services_shape() {
    let cloud = FakeOpenStack::start(instant(2));
    let api = Api::new(&cloud).await;

    cloud.inject(Fault::new(
        "GET",
        "/servers/detail",
        1,
        FaultKind::Status(500),
    ));
    let a = api.get("/compute/v2.1/servers/detail").await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body["computeFault"]["code"], 500);
    assert!(a.header("x-compute-request-id").is_some());
    assert_eq!(api.get("/compute/v2.1/servers/detail").await.status, 200);

    cloud.inject(Fault::new(
        "*",
        "/compute/",
        1,
        FaultKind::RateLimited {
            retry_after_secs: 3,
        },
    ));
    let a = api.get("/compute/v2.1/flavors").await;
    assert_eq!(a.status, 413);
    assert_eq!(a.body["overLimit"]["retryAfter"], "3");
    assert_eq!(a.header("retry-after"), Some("3"));

    cloud.inject(Fault::new(
        "GET",
        "/image/v2/images",
        1,
        FaultKind::RateLimited {
            retry_after_secs: 1,
        },
    ));
    let a = api.get("/image/v2/images").await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("1"));

    cloud.inject(Fault::new("GET", "/networks", 2, FaultKind::Unavailable));
    assert_eq!(cloud.pending_faults(), 2);
    let a = api.get("/network/v2.0/networks").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["NeutronError"]["type"], "HTTPServiceUnavailable");
    assert_eq!(cloud.pending_faults(), 1);
    cloud.clear_faults();
    assert_eq!(api.get("/network/v2.0/networks").await.status, 200);

    cloud.inject(Fault::new(
        "POST",
        "/auth/tokens",
        1,
        FaultKind::Status(503),
    ));
    let r = api
        .http
        .post(format!("{}/auth/tokens", cloud.auth_url()))
        .json(&password_auth(&cloud))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 503);

    cloud.inject(Fault::new("GET", "/servers", 1, FaultKind::Reset));
    let r = api
        .http
        .get(format!("{}/compute/v2.1/servers", api.base))
        .header("X-Auth-Token", &api.token)
        .send()
        .await;
    assert!(r.is_err(), "the connection should have been closed");
    assert_eq!(cloud.requests().last().unwrap().status, 0);
    assert_eq!(api.get("/compute/v2.1/servers").await.status, 200);
}

#[tokio::test]
async fn a_thousand_servers_list_in_pages() {
    let cloud = FakeOpenStack::start(FakeConfig {
        max_servers: 2000,
        ..instant(1000)
    });
    let api = Api::new(&cloud).await.at("2.96");
    let mut url = "/compute/v2.1/servers/detail?limit=100".to_owned();
    let mut seen = std::collections::HashSet::new();
    loop {
        let a = api.get(&url).await;
        for s in a.body["servers"].as_array().unwrap() {
            assert_eq!(s["status"], "ACTIVE");
            assert!(seen.insert(s["id"].as_str().unwrap().to_owned()));
        }
        match a.body["servers_links"][0]["href"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    // Addresses stay distinct with a wider private subnet.
    let a = api.get("/network/v2.0/subnets?name=private-subnet").await;
    assert_eq!(a.body["subnets"][0]["cidr"], "10.0.0.0/21");
}
