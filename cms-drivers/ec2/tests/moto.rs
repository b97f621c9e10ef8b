//! The wire mapping against moto: paging, names and tags, user data, client tokens,
//! the catalogue, key pairs, networks, and the errors moto answers.

use std::collections::{BTreeMap, HashSet};

use cms_core::{
    Driver, ErrorKind, InstanceFilter, InstanceId, InstanceSpec, InstanceState, KeyPairSpec,
    LocationId, NetworkId, NetworkSpec, PageRequest, PageToken, TagChanges,
};
use cms_driver_ec2::moto::{self, MotoServer};
use cms_driver_ec2::Ec2Driver;

async fn driver(server: &MotoServer) -> Ec2Driver {
    Ec2Driver::new(server.config()).await.expect("driver")
}

fn spec(name: &str) -> InstanceSpec {
    InstanceSpec::new(moto::IMAGE_ID, moto::FLAVOR).name(name)
}

/// Every page of `filter` at `limit`, checking each page's size.
async fn page_through(d: &Ec2Driver, filter: &InstanceFilter, limit: u32) -> Vec<InstanceId> {
    let mut seen = Vec::new();
    let mut page = PageRequest::first(limit);
    for _ in 0..1000 {
        let p = d.list_instances(filter, &page).await.expect("list");
        assert!(
            p.items.len() <= limit as usize,
            "a page of limit {limit} held {}",
            p.items.len()
        );
        seen.extend(p.items.into_iter().map(|i| i.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(limit), t),
            None => return seen,
        }
    }
    panic!("paging at limit {limit} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_more_than_one_ec2_page_once() {
    let server = MotoServer::start().await;
    let d = driver(&server).await;
    let n = 23;
    let mut made = Vec::new();
    for k in 0..n {
        let vm = d
            .create_instance(&spec(&format!("page-{k}")).tag("suite", "paging"))
            .await
            .expect("create");
        made.push(vm.id);
    }
    // One instance outside the filter.
    d.create_instance(&spec("other")).await.expect("create");
    let mut filter = InstanceFilter::default();
    filter.tags.insert("suite".into(), Some("paging".into()));
    let want: HashSet<InstanceId> = made.iter().cloned().collect();
    // Below EC2's minimum page (5), at it, odd, and larger than everything.
    for limit in [1, 2, 5, 7, 1000] {
        let seen = page_through(&d, &filter, limit).await;
        let distinct: HashSet<InstanceId> = seen.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "limit {limit}: an instance listed twice"
        );
        assert_eq!(distinct, want, "limit {limit}");
    }
    // moto honours MaxResults: a page of 7 ends on a NextToken of moto's (the page
    // token's last part), not inside one answer of everything (skip > 0).
    let first = d
        .list_instances(&filter, &PageRequest::first(7))
        .await
        .unwrap();
    let token = first.next.expect("a second page").as_str().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!((parts[2], parts[3].is_empty()), ("0", false), "{token}");
    // Without a filter, the 24th instance shows too, once.
    let all = page_through(&d, &InstanceFilter::default(), 6).await;
    assert_eq!(all.len(), n + 1);
    // Ids and pages together (EC2 refuses InstanceIds with MaxResults; the driver
    // filters by instance-id instead).
    let some = InstanceFilter {
        ids: made[3..11].to_vec(),
        ..Default::default()
    };
    let seen = page_through(&d, &some, 3).await;
    assert_eq!(seen, made[3..11].to_vec());
    // An unknown id in a filter matches nothing rather than failing.
    let unknown = InstanceFilter {
        ids: vec![InstanceId::new("i-0cafe0000cafe0000")],
        ..Default::default()
    };
    assert!(page_through(&d, &unknown, 5).await.is_empty());
    // A token from another listing is refused.
    let first = d
        .list_instances(&filter, &PageRequest::first(2))
        .await
        .unwrap();
    let token = first.next.expect("more than one page");
    let err = d
        .list_instances(
            &InstanceFilter::default(),
            &PageRequest::after(Some(2), token),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let err = d
        .list_instances(
            &filter,
            &PageRequest::after(Some(2), PageToken::new("%%no such token%%")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.context_value("argument"), Some("page_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_carry_name_tags_zone_key_and_user_data() {
    let server = MotoServer::start().await;
    let d = driver(&server).await;
    d.create_key_pair(&KeyPairSpec {
        name: "deploy".into(),
        public_key: None,
    })
    .await
    .unwrap();
    let user_data = "#cloud-config\nruncmd: [echo hello]\n";
    let mut s = spec("web-1").tag("env", "test").tag("tier", "web");
    s.location_id = Some(LocationId::new("us-east-1b"));
    s.key_name = Some("deploy".into());
    s.user_data = Some(user_data.into());
    let vm = d.create_instance(&s).await.unwrap();
    let got = d.get_instance(&vm.id).await.unwrap();
    assert!(got.id.as_str().starts_with("i-"), "{}", got.id);
    assert_eq!(got.name, "web-1");
    assert_eq!(got.state, InstanceState::Running);
    assert_eq!(got.raw_state, "running");
    assert_eq!(
        got.image_id.as_ref().map(|i| i.as_str()),
        Some(moto::IMAGE_ID)
    );
    assert_eq!(
        got.flavor_id.as_ref().map(|f| f.as_str()),
        Some(moto::FLAVOR)
    );
    assert_eq!(got.location_id, Some(LocationId::new("us-east-1b")));
    assert_eq!(got.key_name.as_deref(), Some("deploy"));
    assert!(!got.private_ips.is_empty());
    assert!(got.created_at.is_some());
    // Name is the Name tag, and the driver's own tags stay out of `tags`.
    let want: BTreeMap<String, String> = [("env", "test"), ("tier", "web")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(got.tags, want);
    // EC2 got the user data base64-encoded, and gives back what was sent.
    let attr = d
        .client()
        .describe_instance_attribute()
        .instance_id(vm.id.as_str())
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let encoded = attr.user_data().and_then(|u| u.value()).expect("user data");
    let decoded = aws_smithy_types::base64::decode(encoded).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), user_data);
    // The name filter is a tag:Name filter.
    let by_name = InstanceFilter {
        name: Some("web-1".into()),
        ..Default::default()
    };
    d.create_instance(&spec("web-10")).await.unwrap();
    let listed = d
        .list_instances(&by_name, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, vm.id);
    // A reserved tag key is refused before EC2 sees it.
    let err = d
        .create_instance(&spec("bad").tag("cms:client-token", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.context_value("argument"), Some("tags"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_updates_are_create_and_delete_tags_beside_the_drivers_own() {
    let server = MotoServer::start().await;
    let d = driver(&server).await;
    let s = spec("tagged")
        .tag("env", "test")
        .tag("tier", "web")
        .client_token("tag-token");
    let vm = d.create_instance(&s).await.unwrap();
    let changes = TagChanges::new()
        .set_tag("env", "prod")
        .set_tag("team", "a b/c")
        .remove_tag("tier");
    let after = d.update_instance_tags(&vm.id, &changes).await.unwrap();
    let want: BTreeMap<String, String> = [("env", "prod"), ("team", "a b/c")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(after.tags, want);
    assert_eq!(after.name, "tagged");
    assert_eq!(after.client_token.as_deref(), Some("tag-token"));
    // What EC2 holds: the user's tags beside Name and the driver's own, untouched.
    let held = d
        .client()
        .describe_tags()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(vm.id.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = held.tags().iter().filter_map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "Name",
            "cms:client-token",
            "cms:request-hash",
            "env",
            "team"
        ]
    );
    // So the token still finds the instance.
    assert_eq!(d.create_instance(&s).await.unwrap().id, vm.id);
    // DeleteTags names keys only: a tag goes whatever its value.
    let gone = d
        .update_instance_tags(&vm.id, &TagChanges::new().remove_tag("team"))
        .await
        .unwrap();
    assert_eq!(gone.tags.keys().collect::<Vec<_>>(), ["env"]);
    // The driver's keys, EC2's and the name are refused before EC2 sees them.
    for key in ["cms:client-token", "aws:created-by", "Name"] {
        let e = d
            .update_instance_tags(&vm.id, &TagChanges::new().remove_tag(key))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{key}: {e}");
        assert_eq!(e.context_value("tag"), Some(key));
    }
    assert_eq!(
        d.get_instance(&vm.id)
            .await
            .unwrap()
            .client_token
            .as_deref(),
        Some("tag-token")
    );
    // moto tags any id; the driver looks first.
    let e = d
        .update_instance_tags(
            &InstanceId::new("i-0cafe0000cafe0000"),
            &TagChanges::new().set_tag("env", "prod"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.context_value("ec2_code"),
        Some("InvalidInstanceID.NotFound")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_token_makes_one_instance_though_moto_does_not_enforce_it() {
    let server = MotoServer::start().await;
    let d = driver(&server).await;
    // moto records ClientToken but does not enforce it: two RunInstances with one
    // token make two instances. (If this starts failing, moto enforces it now.)
    let run = || {
        d.client()
            .run_instances()
            .image_id(moto::IMAGE_ID)
            .instance_type(aws_sdk_ec2::types::InstanceType::T2Micro)
            .min_count(1)
            .max_count(1)
            .client_token("raw-token")
            .send()
    };
    let a = run().await.unwrap();
    let b = run().await.unwrap();
    assert_ne!(
        a.instances()[0].instance_id(),
        b.instances()[0].instance_id(),
        "moto now enforces ClientToken"
    );
    // Nor does it know EC2's `client-token` filter.
    let filtered = d
        .client()
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("client-token")
                .values("raw-token")
                .build(),
        )
        .send()
        .await;
    assert!(filtered.is_err(), "moto now has the client-token filter");

    // The driver makes it hold anyway, also for creates at the same time.
    let s = spec("tokened").client_token("kit-token-1");
    let first = d.create_instance(&s).await.unwrap();
    assert_eq!(first.client_token.as_deref(), Some("kit-token-1"));
    let again = d.create_instance(&s).await.unwrap();
    assert_eq!(again.id, first.id);
    let s2 = spec("tokened-2").client_token("kit-token-2");
    let together = futures::future::join_all((0..5).map(|_| d.create_instance(&s2))).await;
    let ids: HashSet<InstanceId> = together.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids.len(), 1, "concurrent creates with one token: {ids:?}");
    // The same token with another request.
    let err = d
        .create_instance(&spec("something-else").client_token("kit-token-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        err.context_value("reason"),
        Some("idempotent_parameter_mismatch")
    );
    // A token longer than EC2's 64 characters still works.
    let long = "t".repeat(200);
    let l1 = d
        .create_instance(&spec("long").client_token(long.clone()))
        .await
        .unwrap();
    let l2 = d
        .create_instance(&spec("long").client_token(long.clone()))
        .await
        .unwrap();
    assert_eq!(l1.id, l2.id);
    assert_eq!(l1.client_token.as_deref(), Some(long.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_maps_images_types_zones_and_subnets() {
    let server = MotoServer::start().await;
    // The default owners (`self`): an account's own images, none in a fresh moto.
    let own = Ec2Driver::new(server.config().image_owners(["self"]))
        .await
        .unwrap();
    assert!(own
        .list_images(&cms_core::ImageFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let d = driver(&server).await;
    let cloud = cms_core::Cloud::new(d.clone());
    let images = cloud.collect_images().await.unwrap();
    let ubuntu = images
        .iter()
        .find(|i| i.id.as_str() == moto::IMAGE_ID)
        .expect("the test image is listed");
    assert!(ubuntu.name.contains("ubuntu"), "{ubuntu:?}");
    assert_eq!(ubuntu.os.as_deref(), Some("linux"));
    assert_eq!(ubuntu.raw_state, "available");
    // Pages of one hand out the same images.
    let mut paged = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let p = d
            .list_images(&cms_core::ImageFilter::default(), &page)
            .await
            .unwrap();
        assert!(p.items.len() <= 1);
        paged.extend(p.items.into_iter().map(|i| i.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(1), t),
            None => break,
        }
    }
    assert!(images.len() > 1);
    assert_eq!(
        paged,
        images.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );
    // get_image finds any image by id, whatever the owners.
    assert_eq!(
        d.get_image(&"ami-12c6146b".into())
            .await
            .unwrap()
            .os
            .as_deref(),
        Some("windows")
    );
    let err = d
        .get_image(&"ami-0cafe0000cafe0000".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let flavors = cloud.collect_flavors().await.unwrap();
    let micro = flavors
        .iter()
        .find(|f| f.id.as_str() == "t2.micro")
        .expect("t2.micro");
    assert_eq!((micro.vcpus, micro.memory_mib), (1, 1024));
    assert!(flavors.len() > 1000, "{} instance types", flavors.len());
    // moto answers every instance type at once, whatever MaxResults says: pages of
    // 300 are cut from that one answer, each type handed out once.
    let mut paged = Vec::new();
    let mut page = PageRequest::first(300);
    loop {
        let p = d.list_flavors(&page).await.unwrap();
        assert!(p.items.len() <= 300);
        paged.extend(p.items.into_iter().map(|f| f.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(300), t),
            None => break,
        }
    }
    assert_eq!(
        paged,
        flavors.iter().map(|f| f.id.clone()).collect::<Vec<_>>()
    );

    let zones = d.list_locations().await.unwrap();
    let a = zones
        .iter()
        .find(|z| z.id.as_str() == "us-east-1a")
        .expect("us-east-1a");
    assert_eq!(a.region.as_deref(), Some("us-east-1"));
    assert!(a.available);

    let networks = cloud.collect_networks().await.unwrap();
    assert!(!networks.is_empty());
    assert!(networks.iter().all(|n| n.is_default), "{networks:?}");
    assert!(networks
        .iter()
        .all(|n| n.cidr.as_deref().is_some_and(|c| c.starts_with("172.31."))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_key_pairs_follow_the_model() {
    let server = MotoServer::start().await;
    let d = driver(&server).await;
    // Networks: a subnet in the default VPC, named by its Name tag.
    let net = d
        .create_network(&NetworkSpec {
            name: "backend".into(),
            cidr: "172.31.200.0/24".into(),
            location_id: Some(LocationId::new("us-east-1c")),
            tags: [("team".to_owned(), "db".to_owned())].into(),
        })
        .await
        .unwrap();
    assert!(net.id.as_str().starts_with("subnet-"));
    assert_eq!(net.name, "backend");
    assert!(!net.is_default);
    let got = d.get_network(&net.id).await.unwrap();
    assert_eq!(got.cidr.as_deref(), Some("172.31.200.0/24"));
    assert_eq!(got.location_id, Some(LocationId::new("us-east-1c")));
    assert_eq!(got.tags.get("team").map(String::as_str), Some("db"));
    // Outside the VPC's range: EC2's own InvalidSubnet.Range.
    let err = d
        .create_network(&NetworkSpec {
            name: "outside".into(),
            cidr: "10.9.0.0/24".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.context_value("ec2_code").is_some(), "{err:?}");
    // In use by an instance: InvalidState (moto would let it go).
    let mut s = spec("in-net");
    s.network_ids = vec![net.id.clone()];
    let vm = d.create_instance(&s).await.unwrap();
    assert_eq!(vm.network_ids, vec![net.id.clone()]);
    let err = d.delete_network(&net.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    d.delete_instance(&vm.id).await.unwrap();
    d.delete_network(&net.id).await.unwrap();
    let err = d.get_network(&net.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.context_value("ec2_code"),
        Some("InvalidSubnetID.NotFound")
    );
    let err = d
        .delete_network(&NetworkId::new("subnet-0cafe0000cafe0000"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Key pairs.
    let public =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjeiXREAM6bENP+0LXDY4pfk44C2N30tUNZZ0j1VIZj me@host";
    let imported = d
        .create_key_pair(&KeyPairSpec {
            name: "imported".into(),
            public_key: Some(public.into()),
        })
        .await
        .unwrap();
    assert!(!imported.fingerprint.is_empty());
    assert!(imported.private_key.is_none());
    let err = d
        .create_key_pair(&KeyPairSpec {
            name: "imported".into(),
            public_key: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        err.context_value("ec2_code"),
        Some("InvalidKeyPair.Duplicate")
    );
    let err = d
        .create_key_pair(&KeyPairSpec {
            name: "broken".into(),
            public_key: Some("ssh-ed25519 not-base64!".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let listed = d.list_key_pairs().await.unwrap();
    let found = listed
        .iter()
        .find(|k| k.name == "imported")
        .expect("listed");
    assert_eq!(found.fingerprint, imported.fingerprint);
    assert!(found.private_key.is_none());
    // EC2 deletes an unknown key pair silently; the model wants NotFound.
    let err = d.delete_key_pair("never-made").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    d.delete_key_pair("imported").await.unwrap();
    assert!(d
        .list_key_pairs()
        .await
        .unwrap()
        .iter()
        .all(|k| k.name != "imported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_errors_are_classified() {
    let server = MotoServer::start().await;
    let d = driver(&server).await;
    let unknown = InstanceId::new("i-0cafe0000cafe0000");
    let err = d.get_instance(&unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.context_value("ec2_code"),
        Some("InvalidInstanceID.NotFound")
    );
    assert_eq!(err.resource(), Some("instance i-0cafe0000cafe0000"));
    assert!(!err.is_temporary());
    let err = d.stop_instance(&unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Unknown image, instance type and key pair on create.
    let err = d
        .create_instance(&InstanceSpec::new("ami-0cafe0000cafe0000", moto::FLAVOR))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.context_value("ec2_code"), Some("InvalidAMIID.NotFound"));
    let err = d
        .create_instance(&InstanceSpec::new(moto::IMAGE_ID, "t9.enormous"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidArgument | ErrorKind::NotFound),
        "{err:?}"
    );
    let mut s = spec("keyless");
    s.key_name = Some("no-such-key".into());
    let err = d.create_instance(&s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        err.context_value("ec2_code"),
        Some("InvalidKeyPair.NotFound")
    );

    // Impossible transitions, which moto itself lets through.
    let vm = d.create_instance(&spec("states")).await.unwrap();
    let err = d.start_instance(&vm.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert_eq!(err.context_value("state"), Some("running"));
    let stopped = d.stop_instance(&vm.id).await.unwrap();
    assert!(matches!(
        stopped.state,
        InstanceState::Stopping | InstanceState::Stopped
    ));
    assert_eq!(
        d.stop_instance(&vm.id).await.unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert_eq!(
        d.reboot_instance(&vm.id).await.unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    let started = d.start_instance(&vm.id).await.unwrap();
    assert!(matches!(
        started.state,
        InstanceState::Pending | InstanceState::Running
    ));
    let deleted = d.delete_instance(&vm.id).await.unwrap();
    assert!(deleted.state.is_gone(), "{deleted:?}");
    let again = d.delete_instance(&vm.id).await.unwrap();
    assert!(again.state.is_gone());
    assert_eq!(
        d.start_instance(&vm.id).await.unwrap_err().kind(),
        ErrorKind::InvalidState
    );

    // The server gone: unavailable, worth trying again (tests/errors.rs checks that
    // a refused connection is also marked not carried out).
    drop(server);
    let err = d.list_locations().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary(), "{err:?}");
}
