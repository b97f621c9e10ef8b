//! Images captured from instances on the wire (`one.vm.disksaveas`), what `shared`
//! and `owner` are, exact image pages by owner, and deleting images — over real sockets
//! against the fake oned.

mod common;

use std::time::Duration;

use cms_core::{
    Driver, ErrorKind, ImageFilter, ImageId, ImageSpec, ImageState, InstanceSpec, InstanceState,
    PageRequest,
};
use cms_driver_opennebula::model::Image;
use cms_driver_opennebula::xmlrpc::Value;

use common::*;

#[tokio::test]
async fn a_capture_saves_the_root_disk_as_an_image_of_the_user() {
    // Copies long enough to be seen under way.
    let (oned, driver) = start(cms_driver_opennebula::fake::FakeConfig {
        delays: cms_driver_opennebula::fake::FakeDelays {
            image: Duration::from_millis(300),
            ..cms_driver_opennebula::fake::FakeDelays::uniform(Duration::from_millis(10))
        },
        ..quick_config()
    });
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small").name("golden"))
        .await
        .unwrap();
    wait(&driver, &vm.id, InstanceState::Running).await;
    let spec = ImageSpec {
        description: Some("web <1>".into()),
        tags: [("k".to_owned(), "v".to_owned())].into(),
        ..ImageSpec::new(vm.id.clone(), "golden-1").owner("team-a")
    };
    let img = driver.create_image(&spec).await.unwrap();
    assert_eq!(oned.calls("one.vm.disksaveas"), 1);
    assert_eq!(
        (img.state, img.raw_state.as_str()),
        (ImageState::Pending, "LOCKED")
    );
    assert!(!img.shared, "the user's own image");
    assert_eq!(img.owner.as_deref(), Some("team-a"));
    assert_eq!(img.source_instance_id.as_ref(), Some(&vm.id));
    assert_eq!(img.description.as_deref(), Some("web <1>"));
    assert_eq!(img.tags["k"], "v");
    assert!(img.created_at.is_some());
    // The VM saves meanwhile, and runs on.
    let id: i64 = vm.id.as_str().parse().unwrap();
    let doc = match driver.client().call("one.vm.info", &[Value::Int(id)]).await {
        Ok(Value::Str(s)) => cms_driver_opennebula::model::Vm::from_xml(&s).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(doc.lcm_state, 26, "HOTPLUG_SAVEAS");
    assert_eq!(
        driver.get_instance(&vm.id).await.unwrap().state,
        InstanceState::Running
    );
    let iid: i64 = img
        .id
        .as_str()
        .trim_start_matches("image:")
        .parse()
        .unwrap();
    let raw = match driver
        .client()
        .call("one.image.info", &[Value::Int(iid)])
        .await
    {
        Ok(Value::Str(s)) => Image::from_xml(&s).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!((raw.image_type, raw.persistent), (0, false));
    assert_eq!(raw.template.get("SAVED_VM_ID"), Some(vm.id.as_str()));
    assert_eq!(raw.template.get("CMS_OWNER"), Some("team-a"));
    let ready = cloud(driver.clone())
        .wait_for_image(&img.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ready.raw_state, "READY");

    // Image names are the user's, once.
    let e = driver.create_image(&spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let e = driver
        .create_image(&ImageSpec::new(vm.id.clone(), "a/b"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // A VM that is not running, powered off or suspended cannot be saved.
    let pending = driver
        .create_instance(&InstanceSpec {
            location_id: Some("100".into()),
            ..InstanceSpec::new("image:0", "small")
        })
        .await
        .unwrap();
    let saves = oned.calls("one.vm.disksaveas");
    let e = driver
        .create_image(&ImageSpec::new(pending.id.clone(), "never"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(oned.calls("one.vm.disksaveas"), saves);
    // …and oned's own answer to that (0x2000, "has to be") reads the same.
    let e = driver
        .client()
        .call(
            "one.vm.disksaveas",
            &[
                Value::Int(pending.id.as_str().parse().unwrap()),
                Value::Int(0),
                Value::from("never"),
                Value::from(""),
                Value::Int(-1),
            ],
        )
        .await
        .unwrap_err();
    let e = e.into_error(&cms_driver_opennebula::client::Target::vm(&pending.id));
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    let e = driver
        .create_image(&ImageSpec::new("99", "nothing"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn images_filter_by_owner_in_exact_pages_and_shared_ones_stay() {
    let (oned, driver) = start(quick_config());
    let vm = driver
        .create_instance(&InstanceSpec::new("image:3", "small"))
        .await
        .unwrap();
    wait(&driver, &vm.id, InstanceState::Running).await;
    let mut mine = Vec::new();
    for k in 0..3 {
        let i = driver
            .create_image(&ImageSpec::new(vm.id.clone(), format!("mine-{k}")).owner("team-a"))
            .await
            .unwrap();
        cloud(driver.clone())
            .wait_for_image(&i.id, Duration::from_secs(5))
            .await
            .unwrap();
        mine.push(i.id);
    }
    let theirs = driver
        .create_image(&ImageSpec::new(vm.id.clone(), "theirs").owner("team-b"))
        .await
        .unwrap();

    // Pages of one hold only what the filter asks for, and lose nothing.
    let filter = ImageFilter {
        owner: Some("team-a".into()),
        ..Default::default()
    };
    let mut got: Vec<ImageId> = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let p = driver.list_images(&filter, &page).await.unwrap();
        assert!(p.items.len() <= 1);
        assert!(p.items.iter().all(|i| i.owner.as_deref() == Some("team-a")));
        got.extend(p.items.into_iter().map(|i| i.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(1), t),
            None => break,
        }
    }
    assert_eq!(got, mine);
    // With the shared ones: the catalogue (oneadmin's images and templates) too.
    let usable = cloud(driver.clone())
        .collect_images_matching(&ImageFilter::usable_by("team-a"))
        .await
        .unwrap();
    assert!(usable
        .iter()
        .any(|i| i.id.as_str() == "image:0" && i.shared));
    assert!(usable
        .iter()
        .any(|i| i.id.as_str() == "template:0" && i.shared));
    assert!(usable.iter().all(|i| i.id != theirs.id));
    let by_id = cloud(driver.clone())
        .collect_images_matching(&ImageFilter {
            ids: vec![theirs.id.clone(), "image:0".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id.len(), 2);

    // Shared images cannot be deleted through this account: refused before oned.
    for shared in ["image:0", "template:0"] {
        let e = driver.delete_image(&shared.into()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{shared}: {e}");
    }
    assert_eq!(oned.calls("one.image.delete"), 0);
    // An image VMs use cannot be deleted (oned: 0x800); others can.
    let from_mine = driver
        .create_instance(&InstanceSpec::new(mine[0].clone(), "small"))
        .await
        .unwrap();
    let e = driver.delete_image(&mine[0]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    driver.delete_image(&mine[1]).await.unwrap();
    let gone = driver.get_image(&mine[1]).await;
    assert!(
        matches!(&gone, Ok(i) if i.state == ImageState::Deleted)
            || matches!(&gone, Err(e) if e.kind() == ErrorKind::NotFound),
        "{gone:?}"
    );
    for missing in ["image:77", "image:2", "vol-1"] {
        let e = driver.delete_image(&missing.into()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{missing}: {e}");
    }
    let _ = from_mine;
}
