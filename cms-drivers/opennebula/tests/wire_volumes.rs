//! Volumes and snapshots on the wire: what the driver writes into OpenNebula's images
//! and VMs, the hot-plug states, and the errors of oned's rules — over real sockets
//! against the fake oned.

mod common;

use std::time::Duration;

use cms_core::{
    BlockDevice, Driver, ErrorKind, InstanceId, InstanceSpec, InstanceState, Operation,
    PageRequest, SnapshotFilter, SnapshotSpec, SnapshotState, Volume, VolumeFilter, VolumeId,
    VolumeSpec, VolumeState,
};
use cms_driver_opennebula::driver::{ATTR_INSTANCE, ATTR_NAME};
use cms_driver_opennebula::fake::{Fault, FaultKind};
use cms_driver_opennebula::model::{Image, Vm};
use cms_driver_opennebula::xmlrpc::Value;
use cms_driver_opennebula::OpenNebulaDriver;

use common::*;

async fn image_doc(driver: &OpenNebulaDriver, id: &str) -> Image {
    let id: i64 = id.trim_start_matches("image:").parse().unwrap();
    match driver
        .client()
        .call("one.image.info", &[Value::Int(id)])
        .await
    {
        Ok(Value::Str(s)) => Image::from_xml(&s).unwrap(),
        other => panic!("one.image.info {id}: {other:?}"),
    }
}

async fn vm_doc(driver: &OpenNebulaDriver, id: &InstanceId) -> Vm {
    let id: i64 = id.as_str().parse().unwrap();
    match driver.client().call("one.vm.info", &[Value::Int(id)]).await {
        Ok(Value::Str(s)) => Vm::from_xml(&s).unwrap(),
        other => panic!("one.vm.info {id}: {other:?}"),
    }
}

async fn wait_volume(driver: &OpenNebulaDriver, id: &VolumeId, state: VolumeState) -> Volume {
    for _ in 0..500 {
        if let Ok(v) = driver.get_volume(id).await {
            if v.state == state {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("volume {id} did not become {state}");
}

async fn running(driver: &OpenNebulaDriver, name: &str) -> InstanceId {
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small").name(name))
        .await
        .unwrap();
    wait(driver, &vm.id, InstanceState::Running).await;
    vm.id
}

#[tokio::test]
async fn a_volume_is_a_persistent_datablock_image() {
    let (oned, driver) = start(quick_config());
    let spec = VolumeSpec::new(2)
        .name("data: \"a/b\"")
        .tag("env", "prod")
        .owner("team-a")
        .client_token("tok-v1")
        .location("0");
    let v = driver.create_volume(&spec).await.unwrap();
    assert_eq!(
        (v.state, v.raw_state.as_str()),
        (VolumeState::Creating, "LOCKED")
    );
    assert_eq!(v.name, "data: \"a/b\"");
    assert_eq!(v.size_gib, 2);
    assert_eq!(v.location_id.as_ref().map(|l| l.as_str()), Some("0"));
    let img = image_doc(&driver, v.id.as_str()).await;
    assert_eq!(
        (img.image_type, img.persistent, img.size_mb),
        (2, true, 2048)
    );
    assert_eq!(img.datastore_id, 1, "the default volume_datastore");
    assert_eq!(
        img.name, "data_ _a_b_",
        "the characters OpenNebula refuses, replaced"
    );
    let t = &img.template;
    assert_eq!(t.get(ATTR_NAME), Some("data: \"a/b\""));
    assert_eq!(t.get("CMS_OWNER"), Some("team-a"));
    assert_eq!(t.get("CMS_CLIENT_TOKEN"), Some("tok-v1"));
    assert_eq!(t.get("CMS_TAGS"), Some(r#"{"env":"prod"}"#));
    assert_eq!(t.get("CMS_LOCATION"), Some("0"));
    let v = wait_volume(&driver, &v.id, VolumeState::Available).await;
    assert_eq!(v.raw_state, "READY");

    // The same name again: another image NAME, the same cms name.
    let twin = driver
        .create_volume(&VolumeSpec::new(1).name("data: \"a/b\""))
        .await
        .unwrap();
    assert_eq!(twin.name, v.name);
    let twin_img = image_doc(&driver, twin.id.as_str()).await;
    assert!(
        twin_img.name.starts_with("data_ _a_b_-"),
        "{}",
        twin_img.name
    );
    // The token makes one volume; with another spec it is refused.
    let again = driver.create_volume(&spec).await.unwrap();
    assert_eq!(again.id, v.id);
    let e = driver
        .create_volume(&VolumeSpec {
            size_gib: Some(3),
            ..spec.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(e.context_value("argument"), Some("client_token"));

    // Volumes are the user's persistent DATABLOCKs only: not the OS images, not the
    // catalogue's DATABLOCK (image 2), not snapshots.
    let listed = cloud(driver.clone())
        .collect_volumes(&VolumeFilter::default())
        .await
        .unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
    ids.sort();
    let mut want = vec![v.id.as_str(), twin.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    for not_a_volume in ["0", "2", "77"] {
        let e = driver.get_volume(&not_a_volume.into()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{not_a_volume}: {e}");
        assert_eq!(e.operation(), Some(Operation::GetVolume));
    }
    assert!(oned.calls("one.image.allocate") >= 2);

    // A cluster whose datastores do not hold the volume datastore is refused, naming it.
    let e = driver
        .create_volume(&VolumeSpec::new(1).location("100"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.message().contains("volume_datastore"), "{e}");
    let e = driver
        .create_volume(&VolumeSpec::new(1).location("55"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn the_volume_datastore_comes_from_the_configuration() {
    let oned = cms_driver_opennebula::fake::FakeOned::start(quick_config());
    for (ds, why) in [(7, "not found"), (0, "image datastore")] {
        let mut config = config_for(&oned);
        config.volume_datastore = ds;
        let driver = driver_with(&oned, config);
        let e = driver.create_volume(&VolumeSpec::new(1)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(e.context_value("argument"), Some("volume_datastore"), "{e}");
        assert!(
            e.message().contains(&format!("datastore `{ds}`")),
            "{why}: {e}"
        );
    }
}

#[tokio::test]
async fn attach_and_detach_hot_plug_disks() {
    // Hot-plugs long enough to be seen under way.
    let (oned, driver) = start(cms_driver_opennebula::fake::FakeConfig {
        delays: cms_driver_opennebula::fake::FakeDelays {
            hotplug: Duration::from_millis(300),
            ..cms_driver_opennebula::fake::FakeDelays::uniform(Duration::from_millis(10))
        },
        ..quick_config()
    });
    let vm = running(&driver, "host").await;
    let vol = driver.create_volume(&VolumeSpec::new(1)).await.unwrap();

    // A volume still being made cannot be attached (OpenNebula: "it is locked").
    let e = driver.attach_volume(&vol.id, &vm, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    wait_volume(&driver, &vol.id, VolumeState::Available).await;

    let attached = driver
        .attach_volume(&vol.id, &vm, Some("/dev/vdc"))
        .await
        .unwrap();
    assert_eq!(
        (attached.state, attached.raw_state.as_str()),
        (VolumeState::Attaching, "USED_PERS/HOTPLUG")
    );
    let doc = vm_doc(&driver, &vm).await;
    assert_eq!(doc.lcm_state, 17, "HOTPLUG");
    let disk = doc
        .disks()
        .find(|d| d.get("IMAGE_ID") == Some(vol.id.as_str()))
        .unwrap();
    assert_eq!(disk.get("TARGET"), Some("vdc"), "the device without /dev/");
    assert_eq!(disk.get("ATTACH"), Some("YES"));
    assert_eq!(
        driver.get_instance(&vm).await.unwrap().state,
        InstanceState::Running,
        "a hot-plug leaves the instance running"
    );
    let used = wait_volume(&driver, &vol.id, VolumeState::InUse).await;
    assert_eq!(used.raw_state, "USED_PERS");
    assert_eq!(used.attachments[0].instance_id, vm);
    assert_eq!(used.attachments[0].device.as_deref(), Some("vdc"));
    let inst = driver.get_instance(&vm).await.unwrap();
    assert_eq!(inst.volumes.len(), 1);
    assert_eq!(inst.volumes[0].device.as_deref(), Some("vdc"));

    // Attached elsewhere, or deleted while attached: refused without asking oned.
    let other = running(&driver, "other").await;
    let e = driver
        .attach_volume(&vol.id, &other, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    let deletes = oned.calls("one.image.delete");
    let e = driver.delete_volume(&vol.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert_eq!(oned.calls("one.image.delete"), deletes);

    let detaching = driver.detach_volume(&vol.id).await.unwrap();
    assert_eq!(detaching.state, VolumeState::Detaching);
    let doc = vm_doc(&driver, &vm).await;
    assert_eq!(
        doc.last_history().map(|h| h.action),
        Some(22),
        "DISK_DETACH_ACTION"
    );
    let free = wait_volume(&driver, &vol.id, VolumeState::Available).await;
    assert!(free.attachments.is_empty());
    assert!(vm_doc(&driver, &vm)
        .await
        .disks()
        .all(|d| d.get("IMAGE_ID") != Some(vol.id.as_str())));

    // A powered-off VM takes disks too (HOTPLUG_PROLOG_POWEROFF); a suspended one,
    // or one still pending, does not.
    driver.stop_instance(&other).await.unwrap();
    wait(&driver, &other, InstanceState::Stopped).await;
    driver.attach_volume(&vol.id, &other, None).await.unwrap();
    assert_eq!(vm_doc(&driver, &other).await.lcm_state, 33);
    let on_stopped = wait_volume(&driver, &vol.id, VolumeState::InUse).await;
    assert_eq!(on_stopped.attachments[0].device.as_deref(), Some("vdb"));
    driver.detach_volume(&vol.id).await.unwrap();
    assert_eq!(vm_doc(&driver, &other).await.lcm_state, 34);
    wait_volume(&driver, &vol.id, VolumeState::Available).await;

    assert!(oned.set_vm_state(vm.as_str().parse().unwrap(), 5, 0));
    let e = driver.attach_volume(&vol.id, &vm, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert!(e.message().contains("RUNNING or POWEROFF"), "{e}");
    let pending = driver
        .create_instance(&InstanceSpec {
            location_id: Some("100".into()),
            ..InstanceSpec::new("image:0", "small")
        })
        .await
        .unwrap();
    let e = driver
        .attach_volume(&vol.id, &pending.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");

    // oned's own refusal, asked directly, is classified the same.
    let e = driver
        .client()
        .call(
            "one.vm.attach",
            &[
                Value::Int(vm.as_str().parse().unwrap()),
                Value::from(format!(
                    "<TEMPLATE><DISK><IMAGE_ID>{}</IMAGE_ID></DISK></TEMPLATE>",
                    vol.id
                )),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(0x800), "{e}");
    assert!(e.to_string().contains("wrong state SUSPENDED"), "{e}");

    driver.delete_volume(&vol.id).await.unwrap();
    let gone = driver.get_volume(&vol.id).await;
    assert!(
        matches!(&gone, Ok(v) if v.state == VolumeState::Deleting)
            || matches!(&gone, Err(e) if e.kind() == ErrorKind::NotFound),
        "{gone:?}"
    );
    // Deleting one already deleting answers as it is.
    if gone.is_ok() {
        driver.delete_volume(&vol.id).await.unwrap();
    }
}

#[tokio::test]
async fn volumes_made_with_an_instance_are_its_disks() {
    let (oned, driver) = start(quick_config());
    let spec = InstanceSpec::new("image:0", "small")
        .name("db")
        .owner("team-a")
        .volume(BlockDevice::new("/dev/vdb", 1))
        .volume(BlockDevice {
            delete_on_termination: false,
            ..BlockDevice::new("vdc", 2)
        });
    let vm = driver.create_instance(&spec).await.unwrap();
    let doc = vm_doc(&driver, &vm.id).await;
    let disks: Vec<(Option<&str>, Option<&str>, Option<&str>)> = doc
        .disks()
        .map(|d| {
            (
                d.get("TARGET"),
                d.get("PERSISTENT"),
                d.get("CMS_DELETE_ON_TERMINATION"),
            )
        })
        .collect();
    assert_eq!(
        disks,
        [
            (Some("vda"), None, None),
            (Some("vdb"), Some("YES"), Some("YES")),
            (Some("vdc"), Some("YES"), Some("NO")),
        ]
    );
    let shown: Vec<(Option<&str>, bool)> = vm
        .volumes
        .iter()
        .map(|v| (v.device.as_deref(), v.delete_on_termination))
        .collect();
    assert_eq!(shown, [(Some("vdb"), true), (Some("vdc"), false)]);
    let (goes, stays) = (
        vm.volumes[0].volume_id.clone(),
        vm.volumes[1].volume_id.clone(),
    );
    // The one that goes is marked with its VM; both are the instance owner's.
    let goes_img = image_doc(&driver, goes.as_str()).await;
    assert_eq!(goes_img.template.get(ATTR_INSTANCE), Some(vm.id.as_str()));
    assert_eq!(
        image_doc(&driver, stays.as_str())
            .await
            .template
            .get(ATTR_INSTANCE),
        None
    );
    let v = driver.get_volume(&goes).await.unwrap();
    assert_eq!(v.owner.as_deref(), Some("team-a"));
    assert!(v.attachments[0].delete_on_termination);

    wait(&driver, &vm.id, InstanceState::Running).await;
    driver.delete_instance(&vm.id).await.unwrap();
    wait(&driver, &vm.id, InstanceState::Terminated).await;
    // Released by OpenNebula; the driver deletes the one that goes when it sees it.
    let deletes = oned.calls("one.image.delete");
    let v = driver.get_volume(&goes).await.unwrap();
    assert_eq!(
        (v.state, v.raw_state.as_str()),
        (VolumeState::Deleting, "DELETE")
    );
    assert_eq!(oned.calls("one.image.delete"), deletes + 1);
    for _ in 0..200 {
        if driver.get_volume(&goes).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        driver.get_volume(&goes).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let kept = wait_volume(&driver, &stays, VolumeState::Available).await;
    assert!(kept.attachments.is_empty());

    // A create that fails at the allocation leaves no volume behind.
    let before = cloud(driver.clone())
        .collect_volumes(&VolumeFilter::default())
        .await
        .unwrap()
        .len();
    oned.inject(Fault::new(
        "one.vm.allocate",
        1,
        FaultKind::OpenNebula {
            code: 0x4000,
            message: "Error allocating a new virtual machine. Something broke.".into(),
        },
    ));
    driver.create_instance(&spec).await.unwrap_err();
    let after = cloud(driver.clone())
        .collect_volumes(&VolumeFilter::default())
        .await
        .unwrap();
    assert_eq!(
        after
            .iter()
            .filter(|v| v.state != VolumeState::Deleting)
            .count(),
        before
    );
}

#[tokio::test]
async fn snapshots_are_copies_of_volumes() {
    let (oned, driver) = start(quick_config());
    let vol = driver
        .create_volume(&VolumeSpec::new(1).name("src").owner("team-a"))
        .await
        .unwrap();
    wait_volume(&driver, &vol.id, VolumeState::Available).await;
    let snap = driver
        .create_snapshot(
            &SnapshotSpec::new(vol.id.clone())
                .name("nightly")
                .tag("k", "v")
                .owner("team-b"),
        )
        .await
        .unwrap();
    assert_eq!(oned.calls("one.image.clone"), 1);
    assert_eq!((snap.state, snap.progress), (SnapshotState::Pending, 0));
    assert_eq!(snap.volume_id.as_ref(), Some(&vol.id));
    assert_eq!(
        snap.owner.as_deref(),
        Some("team-b"),
        "not the volume's owner"
    );
    assert_eq!(snap.name, "nightly");
    let img = image_doc(&driver, snap.id.as_str()).await;
    assert_eq!((img.image_type, img.persistent), (2, false));
    assert_eq!(img.template.get("CMS_CLIENT_TOKEN"), None);
    // The volume is OpenNebula's CLONE meanwhile; another copy may start.
    let v = driver.get_volume(&vol.id).await.unwrap();
    assert_eq!(v.raw_state, "CLONE");
    let second = driver
        .create_snapshot(&SnapshotSpec::new(vol.id.clone()))
        .await
        .unwrap();
    let done = cloud(driver.clone())
        .wait_for_snapshot(&snap.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((done.progress, done.raw_state.as_str()), (100, "READY"));
    assert_eq!(
        cloud(driver.clone())
            .collect_snapshots(&SnapshotFilter::owned_by("team-b"))
            .await
            .unwrap()
            .len(),
        1
    );

    // A volume from it: a persistent copy, of its size only.
    let e = driver
        .create_volume(&VolumeSpec {
            size_gib: Some(2),
            ..VolumeSpec::from_snapshot(snap.id.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let copy = driver
        .create_volume(&VolumeSpec::from_snapshot(snap.id.clone()).name("restored"))
        .await
        .unwrap();
    assert_eq!(copy.snapshot_id.as_ref(), Some(&snap.id));
    assert_eq!(copy.owner, None, "the snapshot's owner is not copied");
    let img = image_doc(&driver, copy.id.as_str()).await;
    assert!(img.persistent);
    assert_eq!(img.template.get("CMS_VOLUME_ID"), None);
    wait_volume(&driver, &copy.id, VolumeState::Available).await;

    // Deleting the snapshot leaves the volume made from it.
    driver.delete_snapshot(&snap.id).await.unwrap();
    wait_volume(&driver, &copy.id, VolumeState::Available).await;

    // An attached volume cannot be copied: refused before any clone.
    let vm = running(&driver, "snap-host").await;
    wait_volume(&driver, &vol.id, VolumeState::Available).await;
    driver.attach_volume(&vol.id, &vm, None).await.unwrap();
    let clones = oned.calls("one.image.clone");
    let e = driver
        .create_snapshot(&SnapshotSpec::new(vol.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert!(e.message().contains("detach it first"), "{e}");
    assert_eq!(oned.calls("one.image.clone"), clones);
    // A snapshot still pending makes no volume.
    let _ = second;
    let e = driver
        .create_volume(&VolumeSpec::from_snapshot("999"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn a_copy_left_half_made_is_deleted() {
    let (oned, driver) = start(quick_config());
    let vol = driver.create_volume(&VolumeSpec::new(1)).await.unwrap();
    wait_volume(&driver, &vol.id, VolumeState::Available).await;
    oned.inject(Fault::new(
        "one.image.update",
        1,
        FaultKind::OpenNebula {
            code: 0x2000,
            message: "Cannot update template. Internal error".into(),
        },
    ));
    driver
        .create_snapshot(&SnapshotSpec::new(vol.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(oned.calls("one.image.delete"), 1);
    let left = driver
        .list_snapshots(&SnapshotFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert!(
        left.items.iter().all(|s| s.raw_state == "DELETE"),
        "{:?}",
        left.items
    );
}
