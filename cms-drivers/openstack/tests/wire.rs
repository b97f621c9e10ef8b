//! The driver over the wire against the fake OpenStack: the conformance kit (also with
//! injected faults and the retry layer, and at microversion 2.1), and what the real
//! services cannot be made to do on demand: a token that expires in the middle of a
//! listing, 409 while a task runs, 413/429 with a retry-after, 503s, a page marker
//! that vanished.

use std::time::Duration;

use cms_core::layers::RetryPolicy;
use cms_core::testkit::{self, KitConfig, Outcome};
use cms_core::{
    AddressId, Cloud, Driver, ErrorKind, ImageId, InstanceFilter, InstanceId, InstanceSpec,
    InstanceState, KeyPairSpec, NetworkId, NetworkSpec, Operation, PageRequest, SecurityGroupId,
    SnapshotId, TagChanges, VolumeId,
};
use cms_driver_openstack::config::{Credentials, Interface, Project, Resolved, Secret};
use cms_driver_openstack::fake::{FakeConfig, FakeDelays, FakeOpenStack, Fault, FaultKind};
use cms_driver_openstack::OpenStackDriver;

fn resolved(cloud: &FakeOpenStack, microversion: (u32, u32)) -> Resolved {
    Resolved {
        credentials: Credentials::Password {
            auth_url: cloud.auth_url(),
            username: cloud.username().into(),
            user_domain: "Default".into(),
            password: Secret::new(cloud.password()),
            project: Project::Name {
                name: cloud.project_name().into(),
                domain: "Default".into(),
            },
        },
        region: Some("RegionOne".into()),
        interface: Interface::Public,
        network: Some("private".into()),
        microversion,
        timeout: Duration::from_secs(10),
    }
}

fn driver(cloud: &FakeOpenStack) -> OpenStackDriver {
    OpenStackDriver::with_resolved(resolved(cloud, (2, 100))).unwrap()
}

fn quick() -> FakeConfig {
    FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(30)),
        max_limit: 4,
        ..FakeConfig::default()
    }
}

fn kit(cloud: &FakeOpenStack) -> KitConfig {
    let unknown = "0cafe000-0000-4000-8000-00000000cafe";
    KitConfig {
        image: Some(ImageId::new(cloud.image_id("cirros"))),
        flavor: Some(cms_core::FlavorId::new(cloud.flavor_id("m1.tiny"))),
        state_timeout: Duration::from_secs(20),
        unknown_instance_id: InstanceId::new(unknown),
        unknown_image_id: ImageId::new(unknown),
        unknown_network_id: NetworkId::new(unknown),
        unknown_volume_id: VolumeId::new(unknown),
        unknown_snapshot_id: SnapshotId::new(unknown),
        unknown_security_group_id: SecurityGroupId::new(unknown),
        unknown_address_id: AddressId::new(unknown),
        ..KitConfig::default()
    }
}

async fn run_kit(cloud: &Cloud, config: &KitConfig) {
    let report = testkit::run(cloud, config).await;
    println!("{report}");
    report.assert_passed();
    for c in &report.checks {
        if let Outcome::Skipped(why) = &c.outcome {
            assert!(
                [
                    "unknown_ids",
                    "volume_lifecycle",
                    "volume_attach",
                    "instance_volumes",
                    "snapshots",
                    "volume_pagination",
                    "volume_client_token",
                    "image_capture",
                    "security_group_rules",
                    "security_group_instances",
                    "addresses",
                    "family_owners",
                ]
                .contains(&c.name),
                "{} skipped: {why}",
                c.name
            );
        }
    }
    assert!(report.instances_created > 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_against_the_fake() {
    let cloud = FakeOpenStack::start(quick());
    let c = Cloud::builder(driver(&cloud)).provider("openstack").build();
    run_kit(&c, &kit(&cloud)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_at_microversion_2_1() {
    let cloud = FakeOpenStack::start(quick());
    let d = OpenStackDriver::with_resolved(resolved(&cloud, (2, 1))).unwrap();
    let c = Cloud::builder(d.clone()).provider("openstack").build();
    run_kit(&c, &kit(&cloud)).await;
    assert_eq!(d.api().compute_version().await.unwrap(), (2, 1));
    // Nothing asked for a microversion above 2.1.
    for seen in cloud.requests() {
        if let Some(v) = &seen.openstack_api_version {
            assert_eq!(v, "compute 2.1", "{seen:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_through_injected_faults_with_the_retry_layer() {
    let cloud = FakeOpenStack::start(quick());
    cloud.inject(Fault::new(
        "GET",
        "/servers/detail",
        2,
        FaultKind::Unavailable,
    ));
    cloud.inject(Fault::new(
        "GET",
        "/servers/",
        2,
        FaultKind::RateLimited {
            retry_after_secs: 0,
        },
    ));
    cloud.inject(Fault::new("POST", "/action", 2, FaultKind::Reset));
    cloud.inject(Fault::new("GET", "/v2/images", 1, FaultKind::Status(503)));
    cloud.inject(Fault::new(
        "GET",
        "/v2.0/networks",
        1,
        FaultKind::RateLimited {
            retry_after_secs: 0,
        },
    ));
    cloud.inject(Fault::new("POST", "/servers", 1, FaultKind::Status(503)));
    let c = Cloud::builder(driver(&cloud))
        .provider("openstack")
        .retry(RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(20)),
        })
        .build();
    run_kit(&c, &kit(&cloud)).await;
    assert_eq!(cloud.pending_faults(), 0, "every injected fault was met");
}

async fn make(d: &OpenStackDriver, cloud: &FakeOpenStack, name: &str) -> cms_core::Instance {
    let spec = InstanceSpec::new(cloud.image_id("cirros"), cloud.flavor_id("m1.tiny")).name(name);
    d.create_instance(&spec).await.unwrap()
}

/// Waits until Nova no longer has the server (the driver then answers it as
/// terminated).
async fn gone(d: &OpenStackDriver, id: &InstanceId) {
    wait(d, id, InstanceState::Terminated).await
}

async fn wait(d: &OpenStackDriver, id: &InstanceId, state: InstanceState) {
    for _ in 0..200 {
        if d.get_instance(id).await.unwrap().state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never reached {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_in_the_middle_of_a_listing_is_renewed_once() {
    let cloud = FakeOpenStack::start(FakeConfig {
        servers: 10,
        max_limit: 3,
        ..quick()
    });
    let d = driver(&cloud);
    let first = d
        .list_instances(&InstanceFilter::default(), &PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    cloud.expire_tokens();
    let mut seen: Vec<String> = first.items.iter().map(|i| i.id.to_string()).collect();
    let mut page = PageRequest::after(Some(3), first.next.unwrap());
    loop {
        let p = d
            .list_instances(&InstanceFilter::default(), &page)
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|i| i.id.to_string()));
        match p.next {
            Some(t) => page = PageRequest::after(Some(3), t),
            None => break,
        }
    }
    assert_eq!(
        seen,
        cloud.server_ids(),
        "every server once, in Nova's order"
    );
    let refused = cloud.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "one 401, then a new token");
    // Wrong credentials are Unauthenticated, and the password is in no error.
    let mut bad = resolved(&cloud, (2, 100));
    if let Credentials::Password { password, .. } = &mut bad.credentials {
        *password = Secret::new("not-the-password");
    }
    let e = OpenStackDriver::with_resolved(bad)
        .unwrap()
        .list_locations()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(!format!("{e:?}").contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_marker_neither_repeats_nor_loses_servers() {
    let cloud = FakeOpenStack::start(FakeConfig {
        servers: 9,
        max_limit: 3,
        ..quick()
    });
    let d = driver(&cloud);
    let all = cloud.server_ids();
    let first = d
        .list_instances(&InstanceFilter::default(), &PageRequest::first(3))
        .await
        .unwrap();
    // The last server of the page goes, and its row is archived: Nova answers 400 for
    // its marker.
    let last = first.items.last().unwrap().id.clone();
    d.delete_instance(&last).await.unwrap();
    gone(&d, &last).await;
    cloud.archive_deleted();
    let mut seen: Vec<String> = first.items.iter().map(|i| i.id.to_string()).collect();
    let mut page = PageRequest::after(Some(3), first.next.unwrap());
    loop {
        let p = d
            .list_instances(&InstanceFilter::default(), &page)
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|i| i.id.to_string()));
        match p.next {
            Some(t) => page = PageRequest::after(Some(3), t),
            None => break,
        }
    }
    assert_eq!(seen, all, "every server once, in order");
    assert!(
        cloud
            .requests()
            .iter()
            .any(|r| r.status == 400 && r.path.contains("marker")),
        "the marker did vanish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_their_kind_request_id_and_retry_after() {
    let cloud = FakeOpenStack::start(FakeConfig {
        delays: FakeDelays {
            stop: Duration::from_millis(800),
            ..FakeDelays::uniform(Duration::from_millis(20))
        },
        ..quick()
    });
    let d = driver(&cloud);
    let vm = make(&d, &cloud, "errs").await;
    wait(&d, &vm.id, InstanceState::Running).await;
    // 409 while a task runs.
    let stopping = d.stop_instance(&vm.id).await.unwrap();
    assert_eq!(stopping.state, InstanceState::Stopping);
    assert_eq!(stopping.raw_state, "ACTIVE/powering-off");
    let e = d.start_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(e.operation(), Some(Operation::StartInstance));
    assert!(
        e.context_value("request_id")
            .is_some_and(|r| r.starts_with("req-")),
        "{e:?}"
    );
    // 413 from Nova, 429 from Glance: rate limits with their retry-after.
    cloud.inject(Fault::new(
        "GET",
        "/servers/",
        1,
        FaultKind::RateLimited {
            retry_after_secs: 7,
        },
    ));
    let e = d.get_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    cloud.inject(Fault::new(
        "GET",
        "/v2/images",
        1,
        FaultKind::RateLimited {
            retry_after_secs: 3,
        },
    ));
    let e = d
        .list_images(&Default::default(), &PageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    // 503 and a dropped connection: temporary.
    cloud.inject(Fault::new("GET", "/flavors", 1, FaultKind::Unavailable));
    let e = d.list_flavors(&PageRequest::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_temporary());
    // A connection dropped under a GET: sent once more on a new one; dropped again:
    // a temporary error.
    cloud.inject(Fault::new(
        "GET",
        "/os-availability-zone",
        1,
        FaultKind::Reset,
    ));
    assert_eq!(d.list_locations().await.unwrap().len(), 1);
    cloud.inject(Fault::new(
        "GET",
        "/os-availability-zone",
        2,
        FaultKind::Reset,
    ));
    let e = d.list_locations().await.unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    // 404s name what was asked for.
    let e = d
        .get_instance(&InstanceId::new("0cafe000-0000-4000-8000-00000000cafe"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // Quota: Nova's 403 "Quota exceeded".
    let small = FakeOpenStack::start(FakeConfig {
        max_servers: 1,
        ..quick()
    });
    let d2 = driver(&small);
    make(&d2, &small, "one").await;
    let spec = InstanceSpec::new(small.image_id("cirros"), small.flavor_id("m1.tiny")).name("two");
    let e = d2.create_instance(&spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
    assert!(e.is_not_executed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_carry_tags_owner_token_and_user_data_as_nova_expects() {
    let cloud = FakeOpenStack::start(quick());
    let d = driver(&cloud);
    let spec = InstanceSpec {
        user_data: Some("#cloud-config\nhostname: web\n".into()),
        key_name: None,
        ..InstanceSpec::new(cloud.image_id("cirros"), cloud.flavor_id("m1.tiny"))
            .name("web-1")
            .tag("env", "prod")
            .tag("path", "a/b")
            .owner("alice")
            .client_token("tok-1")
    };
    let vm = d.create_instance(&spec).await.unwrap();
    assert_eq!(vm.tags.get("env").map(String::as_str), Some("prod"));
    assert_eq!(vm.tags.get("path").map(String::as_str), Some("a/b"));
    assert_eq!(vm.owner.as_deref(), Some("alice"));
    assert_eq!(vm.client_token.as_deref(), Some("tok-1"));
    assert_eq!(
        vm.network_ids,
        vec![NetworkId::new(cloud.network_id("private"))]
    );
    // Sent base64-encoded, as Nova wants it.
    assert_eq!(
        cloud.server_user_data(vm.id.as_str()).as_deref(),
        Some("I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogd2ViCg==")
    );
    // The same token again: the same server; with another request: refused.
    let again = d.create_instance(&spec).await.unwrap();
    assert_eq!(again.id, vm.id);
    let other = InstanceSpec {
        name: "web-2".into(),
        ..spec.clone()
    };
    let e = d.create_instance(&other).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(cloud.server_count(), 1);
    // A new driver (no memory of the token) finds it through Nova's tags.
    let fresh = driver(&cloud);
    cloud.clear_requests();
    assert_eq!(fresh.create_instance(&spec).await.unwrap().id, vm.id);
    assert!(
        cloud
            .requests()
            .iter()
            .any(|r| r.path.contains("tags=cms%3Atoken%3A") || r.path.contains("tags=cms:token:")),
        "{:?}",
        cloud.requests()
    );
    // Filters: pushed down where Nova can (a tag that fits, the owner), checked here.
    let mine = InstanceFilter {
        owner: Some("alice".into()),
        tags: [("env".to_string(), Some("prod".to_string()))].into(),
        ..Default::default()
    };
    let page = d
        .list_instances(&mine, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let theirs = InstanceFilter {
        owner: Some("bob".into()),
        ..Default::default()
    };
    assert!(d
        .list_instances(&theirs, &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let by_path = InstanceFilter {
        tags: [("path".to_string(), Some("a/b".to_string()))].into(),
        ..Default::default()
    };
    assert_eq!(
        d.list_instances(&by_path, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // Tag updates: metadata and the Nova tags follow.
    let changed = d
        .update_instance_tags(
            &vm.id,
            &TagChanges::new().set_tag("env", "dev").remove_tag("path"),
        )
        .await
        .unwrap();
    assert_eq!(changed.tags.len(), 1);
    assert_eq!(changed.tags["env"], "dev");
    assert_eq!(changed.owner.as_deref(), Some("alice"));
    let dev = InstanceFilter {
        tags: [("env".to_string(), Some("dev".to_string()))].into(),
        ..Default::default()
    };
    assert_eq!(
        d.list_instances(&dev, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // Reserved and Nova-refused keys are clear errors.
    let e = d
        .update_instance_tags(&vm.id, &TagChanges::new().set_tag("cms:owner", "bob"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = d
        .update_instance_tags(&vm.id, &TagChanges::new().set_tag("a/b", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // Console output.
    wait(&d, &vm.id, InstanceState::Running).await;
    assert!(!d.console_output(&vm.id).await.unwrap().text.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_key_pairs_over_neutron_and_nova() {
    let cloud = FakeOpenStack::start(quick());
    let d = driver(&cloud);
    let mut spec = NetworkSpec {
        name: "kit-net".into(),
        cidr: "10.9.0.0/24".into(),
        ..Default::default()
    };
    spec.tags.insert("team".into(), "blue".into());
    let n = d.create_network(&spec).await.unwrap();
    assert_eq!(n.cidr.as_deref(), Some("10.9.0.0/24"));
    assert_eq!(n.tags["team"], "blue");
    let vm = d
        .create_instance(&InstanceSpec {
            network_ids: vec![n.id.clone()],
            ..InstanceSpec::new(cloud.image_id("cirros"), cloud.flavor_id("m1.tiny")).name("on-net")
        })
        .await
        .unwrap();
    assert_eq!(vm.network_ids, vec![n.id.clone()]);
    let e = d.delete_network(&n.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    d.delete_instance(&vm.id).await.unwrap();
    gone(&d, &vm.id).await;
    // Nova forgot it; the driver that deleted it answers it as terminated, as EC2 does.
    let after = d.get_instance(&vm.id).await.unwrap();
    assert_eq!(after.state, InstanceState::Terminated);
    assert_eq!(after.raw_state, "DELETED");
    let listed = d
        .list_instances(
            &InstanceFilter {
                ids: vec![vm.id.clone()],
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].state, InstanceState::Terminated);
    // Another driver (which did not delete it) does not know it.
    let e = driver(&cloud).get_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    d.delete_network(&n.id).await.unwrap();
    assert_eq!(
        d.get_network(&n.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A key made here (Nova 2.92+ makes none) and one imported.
    let made = d
        .create_key_pair(&KeyPairSpec {
            name: "made".into(),
            public_key: None,
        })
        .await
        .unwrap();
    assert!(made
        .private_key
        .as_deref()
        .is_some_and(|k| k.contains("OPENSSH PRIVATE KEY")));
    assert!(!made.fingerprint.is_empty());
    let e = d
        .create_key_pair(&KeyPairSpec {
            name: "made".into(),
            public_key: made.public_key.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(d
        .list_key_pairs()
        .await
        .unwrap()
        .iter()
        .any(|k| k.name == "made"));
    d.delete_key_pair("made").await.unwrap();
    assert_eq!(
        d.delete_key_pair("made").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let zones = d.list_locations().await.unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].id.as_str(), "nova");
}
