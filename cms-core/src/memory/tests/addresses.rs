//! Public addresses: allocation, association, release, the quota.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_address_is_associated_moved_and_released() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let a = cloud
        .allocate_address(&AddressSpec {
            tags: Tags::from([("k".to_owned(), "v".to_owned())]),
            owner: Some("ann".into()),
        })
        .await
        .unwrap();
    assert!(a.id.as_str().starts_with("eipalloc-"));
    assert_eq!(a.ip, "203.0.113.2");
    assert_eq!((a.instance_id.clone(), a.private_ip.clone()), (None, None));
    assert_eq!(a.owner.as_deref(), Some("ann"));
    assert_eq!(cloud.get_address(&a.id).await.unwrap(), a);

    let vm = cloud.create_instance(&spec("one")).await.unwrap();
    let e = cloud
        .associate_address(&a.id, &vm.id, None)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidState,
        "pending instances take none"
    );
    sleep(DELAY).await;
    let on = cloud.associate_address(&a.id, &vm.id, None).await.unwrap();
    assert_eq!(on.instance_id, Some(vm.id.clone()));
    assert_eq!(on.private_ip.as_deref(), Some(vm.private_ips[0].as_str()));
    assert_eq!(
        cloud.get_instance(&vm.id).await.unwrap().public_ips,
        std::slice::from_ref(&a.ip)
    );
    assert_eq!(
        cloud.associate_address(&a.id, &vm.id, None).await.unwrap(),
        on
    );
    let e = cloud
        .associate_address(&a.id, &vm.id, Some("10.9.9.9"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("argument"), Some("private_ip"));

    // Released only when not associated.
    let e = cloud.release_address(&a.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().contains("disassociate it first"), "{e}");

    // Moving it to another (stopped) instance takes it from the first.
    let other = cloud.create_instance(&spec("two")).await.unwrap();
    sleep(DELAY).await;
    cloud.stop_instance(&other.id).await.unwrap();
    sleep(DELAY).await;
    let moved = cloud
        .associate_address(&a.id, &other.id, Some(other.private_ips[0].as_str()))
        .await
        .unwrap();
    assert_eq!(moved.instance_id, Some(other.id.clone()));
    assert!(cloud
        .get_instance(&vm.id)
        .await
        .unwrap()
        .public_ips
        .is_empty());
    assert_eq!(
        cloud.get_instance(&other.id).await.unwrap().public_ips,
        std::slice::from_ref(&a.ip)
    );

    // A second address on the same private address takes the place of the first.
    let b = cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap();
    assert_eq!(b.ip, "203.0.113.3");
    cloud
        .associate_address(&b.id, &other.id, None)
        .await
        .unwrap();
    assert_eq!(
        cloud.get_instance(&other.id).await.unwrap().public_ips,
        std::slice::from_ref(&b.ip)
    );
    assert_eq!(cloud.get_address(&a.id).await.unwrap().instance_id, None);

    let off = cloud.disassociate_address(&b.id).await.unwrap();
    assert_eq!((off.instance_id, off.private_ip), (None, None));
    assert!(cloud
        .get_instance(&other.id)
        .await
        .unwrap()
        .public_ips
        .is_empty());
    assert_eq!(
        cloud.disassociate_address(&b.id).await.unwrap().instance_id,
        None
    );

    cloud.release_address(&a.id).await.unwrap();
    assert_eq!(kind(cloud.get_address(&a.id).await), ErrorKind::NotFound);
    assert_eq!(
        kind(cloud.release_address(&a.id).await),
        ErrorKind::NotFound
    );
    // Its address is handed out again.
    let c = cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap();
    assert_eq!(c.ip, a.ip);
    let unknown = AddressId::new("eipalloc-0000000000000099");
    assert_eq!(
        kind(cloud.associate_address(&unknown, &vm.id, None).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(cloud.disassociate_address(&unknown).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            cloud
                .associate_address(&c.id, &"i-0000000000000099".into(), None)
                .await
        ),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn deleting_an_instance_lets_its_addresses_go() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let vm = cloud.create_instance(&spec("x")).await.unwrap();
    let a = cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap();
    cloud.associate_address(&a.id, &vm.id, None).await.unwrap();
    let d = cloud.delete_instance(&vm.id).await.unwrap();
    assert!(d.public_ips.is_empty());
    assert_eq!(cloud.get_address(&a.id).await.unwrap().instance_id, None);
    assert_eq!(
        kind(cloud.associate_address(&a.id, &vm.id, None).await),
        ErrorKind::InvalidState
    );
    cloud.release_address(&a.id).await.unwrap();
}

#[tokio::test]
async fn the_cloud_holds_at_most_max_addresses() {
    let cloud = MemoryCloud::with_config(MemoryConfig {
        max_addresses: 2,
        ..MemoryConfig::default()
    });
    let a = cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap();
    cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap();
    let e = cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
    assert!(e.message().contains("holds 2 addresses"), "{e}");
    cloud.release_address(&a.id).await.unwrap();
    cloud
        .allocate_address(&AddressSpec::default())
        .await
        .unwrap();

    // The range itself: 253 addresses, 203.0.113.2 to .254.
    let cloud = MemoryCloud::with_config(MemoryConfig {
        max_addresses: 1000,
        ..MemoryConfig::default()
    });
    assert_eq!(cloud.config().max_addresses, 253);
    let mut last = None;
    for _ in 0..253 {
        last = Some(
            cloud
                .allocate_address(&AddressSpec::default())
                .await
                .unwrap(),
        );
    }
    assert_eq!(last.unwrap().ip, "203.0.113.254");
    assert_eq!(
        kind(cloud.allocate_address(&AddressSpec::default()).await),
        ErrorKind::QuotaExceeded
    );
}

#[tokio::test]
async fn addresses_are_listed_by_owner() {
    let cloud = MemoryCloud::new();
    let mut anns = Vec::new();
    for k in 0..5 {
        let owner = if k % 2 == 0 { "ann" } else { "bob" };
        let a = cloud
            .allocate_address(&AddressSpec {
                owner: Some(owner.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if owner == "ann" {
            anns.push(a.id);
        }
    }
    let first = cloud
        .list_addresses(&AddressFilter::owned_by("ann"), &PageRequest::first(2))
        .await
        .unwrap();
    let rest = cloud
        .list_addresses(
            &AddressFilter::owned_by("ann"),
            &PageRequest::after(Some(2), first.next.clone().unwrap()),
        )
        .await
        .unwrap();
    let got: Vec<_> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(got, anns);
    assert_eq!(rest.next, None);
    let e = cloud
        .allocate_address(&AddressSpec {
            owner: Some("not ok".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}
