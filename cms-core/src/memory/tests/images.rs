//! Image capture, launching from captured images, listings by owner.

use super::*;

fn ids(page: &Page<Image>) -> Vec<&str> {
    page.items.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn an_image_is_captured_then_launched_then_deleted() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let vm = cloud.create_instance(&spec("src")).await.unwrap();
    // Pending instances cannot be captured yet.
    let e = cloud
        .create_image(&ImageSpec::new(vm.id.clone(), "golden"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(e.context_value("state"), Some("pending"));
    sleep(DELAY).await;

    let before = chrono::Utc::now();
    let spec_ = ImageSpec {
        description: Some("web server".into()),
        tags: Tags::from([("k".to_owned(), "v".to_owned())]),
        ..ImageSpec::new(vm.id.clone(), "golden").owner("ann")
    };
    let img = cloud.create_image(&spec_).await.unwrap();
    assert!(img.id.as_str().starts_with("img-") && img.id.as_str().len() == 20);
    assert_eq!(
        (img.state, img.raw_state.as_str()),
        (ImageState::Pending, "pending")
    );
    assert_eq!(img.name, "golden");
    assert_eq!(img.description.as_deref(), Some("web server"));
    assert!(!img.shared);
    assert_eq!(img.owner.as_deref(), Some("ann"));
    assert_eq!(img.source_instance_id, Some(vm.id.clone()));
    assert!(img.created_at.is_some_and(|t| t >= before));
    // What it was made from carries over.
    assert_eq!(
        (img.os.as_deref(), img.min_disk_gib),
        (Some("linux"), Some(4))
    );
    assert_eq!(img.tags.get("k").map(String::as_str), Some("v"));
    // The same name for the same owner is taken; another owner may have it.
    assert_eq!(
        kind(cloud.create_image(&spec_).await),
        ErrorKind::AlreadyExists
    );
    let bobs = cloud
        .create_image(&ImageSpec::new(vm.id.clone(), "golden").owner("bob"))
        .await
        .unwrap();
    // Launching waits for the copy.
    let from = InstanceSpec::new(img.id.clone(), "flv-1cpu-1gb");
    let e = cloud.create_instance(&from).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    sleep(DELAY).await;
    assert_eq!(
        cloud.get_image(&img.id).await.unwrap().state,
        ImageState::Available
    );
    let launched = cloud.create_instance(&from).await.unwrap();
    assert_eq!(launched.image_id, Some(img.id.clone()));
    // An image of an image knows what it came from too.
    sleep(DELAY).await;
    let second = cloud
        .create_image(&ImageSpec::new(launched.id.clone(), "second"))
        .await
        .unwrap();
    assert_eq!(second.min_disk_gib, Some(4));

    cloud.delete_image(&img.id).await.unwrap();
    assert_eq!(kind(cloud.get_image(&img.id).await), ErrorKind::NotFound);
    assert_eq!(kind(cloud.delete_image(&img.id).await), ErrorKind::NotFound);
    assert_eq!(
        kind(cloud.create_instance(&from).await),
        ErrorKind::NotFound
    );
    // Instances made from it go on.
    assert_eq!(state_of(&cloud, &launched.id).await, InstanceState::Running);
    cloud.delete_image(&bobs.id).await.unwrap();

    let e = cloud
        .delete_image(&"img-debian-12".into())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(cloud.get_image(&"img-debian-12".into()).await.is_ok());
    assert_eq!(
        kind(
            cloud
                .create_image(&ImageSpec::new("i-0000000000000099", "x"))
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            cloud
                .create_image(&ImageSpec::new(vm.id.clone(), " "))
                .await
        ),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn stopped_instances_are_captured_and_terminated_ones_are_not() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let vm = cloud.create_instance(&spec("s")).await.unwrap();
    cloud.stop_instance(&vm.id).await.unwrap();
    let img = cloud
        .create_image(&ImageSpec::new(vm.id.clone(), "cold"))
        .await
        .unwrap();
    assert_eq!(img.state, ImageState::Available, "no delay");
    cloud.delete_instance(&vm.id).await.unwrap();
    let e = cloud
        .create_image(&ImageSpec::new(vm.id.clone(), "late"))
        .await
        .unwrap_err();
    assert_eq!(e.context_value("state"), Some("terminated"));
}

#[tokio::test]
async fn image_listings_follow_the_filter_exactly() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let vm = cloud.create_instance(&spec("src")).await.unwrap();
    let mut made = BTreeMap::new();
    for (name, owner) in [("a1", "ann"), ("b1", "bob"), ("a2", "ann"), ("a3", "ann")] {
        let i = cloud
            .create_image(&ImageSpec::new(vm.id.clone(), name).owner(owner))
            .await
            .unwrap();
        made.insert(name, i.id);
    }
    let catalogue = ["img-debian-12", "img-fedora-41", "img-ubuntu-24.04"];
    let page_through = |filter: ImageFilter, limit: u32| {
        let cloud = cloud.clone();
        async move {
            let mut all = Vec::new();
            let mut page = PageRequest::first(limit);
            loop {
                let p = cloud.list_images(&filter, &page).await.unwrap();
                if p.next.is_some() {
                    assert_eq!(
                        p.items.len(),
                        limit as usize,
                        "a page that is not the last is full"
                    );
                }
                all.extend(ids(&p).into_iter().map(str::to_owned));
                match p.next {
                    Some(t) => page = PageRequest::after(Some(limit), t),
                    None => return all,
                }
            }
        }
    };
    let anns: Vec<String> = ["a1", "a2", "a3"].map(|n| made[n].to_string()).to_vec();
    assert_eq!(
        page_through(
            ImageFilter {
                owner: Some("ann".into()),
                ..Default::default()
            },
            2
        )
        .await,
        anns
    );
    // Captured ids sort before the catalogue's names: the merge keeps id order.
    let mut usable = anns.clone();
    usable.extend(catalogue.map(String::from));
    assert_eq!(page_through(ImageFilter::usable_by("ann"), 2).await, usable);
    let everything = page_through(ImageFilter::default(), 3).await;
    assert_eq!(everything.len(), 7);
    assert!(everything.windows(2).all(|w| w[0] < w[1]), "{everything:?}");
    assert!(page_through(
        ImageFilter {
            owner: Some("eve".into()),
            ..Default::default()
        },
        2
    )
    .await
    .is_empty());
    assert_eq!(
        page_through(ImageFilter::usable_by("eve"), 2).await,
        catalogue
    );
    let by_ids = ImageFilter {
        ids: vec!["img-fedora-41".into(), made["b1"].clone()],
        ..Default::default()
    };
    assert_eq!(
        page_through(by_ids, 1).await,
        [made["b1"].to_string(), "img-fedora-41".into()]
    );
}
