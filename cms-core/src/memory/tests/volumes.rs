//! Volumes: states with time, attachments on both sides, volumes made with instances.

use super::*;

/// A running instance (zero-delay clouds answer it running at once; others wait).
async fn running(cloud: &MemoryCloud, name: &str) -> Instance {
    let vm = cloud.create_instance(&spec(name)).await.unwrap();
    sleep(cloud.config().boot_delay).await;
    cloud.get_instance(&vm.id).await.unwrap()
}

async fn volume_state(cloud: &MemoryCloud, id: &VolumeId) -> VolumeState {
    cloud.get_volume(id).await.expect("get volume").state
}

#[tokio::test(start_paused = true)]
async fn a_volume_is_created_then_available_then_deleted() {
    use VolumeState::*;
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let before = chrono::Utc::now();
    let v = cloud
        .create_volume(
            &VolumeSpec::new(8)
                .name("data")
                .tag("tier", "db")
                .owner("ann"),
        )
        .await
        .unwrap();
    assert_eq!((v.state, v.raw_state.as_str()), (Creating, "creating"));
    assert!(v.id.as_str().starts_with("vol-") && v.id.as_str().len() == 20);
    assert_eq!(v.size_gib, 8);
    assert_eq!(v.name, "data");
    assert_eq!(v.location_id, Some("local-a".into()), "the first location");
    assert_eq!(v.tags.get("tier").map(String::as_str), Some("db"));
    assert_eq!(v.owner.as_deref(), Some("ann"));
    assert!(v.created_at.is_some_and(|t| t >= before));
    assert!(v.attachments.is_empty() && v.snapshot_id.is_none());
    sleep(DELAY - MS).await;
    assert_eq!(volume_state(&cloud, &v.id).await, Creating);
    // Not deletable while it is made (Cinder's rule).
    assert_eq!(
        kind(cloud.delete_volume(&v.id).await),
        ErrorKind::InvalidState
    );
    sleep(MS).await;
    assert_eq!(volume_state(&cloud, &v.id).await, Available);

    cloud.delete_volume(&v.id).await.unwrap();
    let d = cloud.get_volume(&v.id).await.unwrap();
    assert_eq!((d.state, d.raw_state.as_str()), (Deleting, "deleting"));
    // Deleting again answers as it is.
    cloud.delete_volume(&v.id).await.unwrap();
    assert_eq!(cloud.volume_count(), 1);
    sleep(DELAY).await;
    let e = cloud.get_volume(&v.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!("get volume: volume `{}` not found", v.id)
    );
    assert_eq!(kind(cloud.delete_volume(&v.id).await), ErrorKind::NotFound);
    assert_eq!(cloud.volume_count(), 0);
    let listed = cloud
        .list_volumes(&VolumeFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

#[tokio::test]
async fn volume_creates_are_checked() {
    let cloud = MemoryCloud::with_config(instant_config());
    let cases: Vec<(VolumeSpec, ErrorKind, &str)> = vec![
        (
            VolumeSpec::default(),
            ErrorKind::InvalidArgument,
            "`size_gib`",
        ),
        (VolumeSpec::new(0), ErrorKind::InvalidArgument, "`size_gib`"),
        (
            VolumeSpec::new(1).location("mars"),
            ErrorKind::NotFound,
            "location `mars`",
        ),
        (
            VolumeSpec::from_snapshot("snap-0000000000000001"),
            ErrorKind::NotFound,
            "snapshot `snap-0000000000000001`",
        ),
        (
            VolumeSpec::new(1).owner("a b"),
            ErrorKind::InvalidArgument,
            "`owner`",
        ),
    ];
    for (spec, want, text) in cases {
        let e = cloud.create_volume(&spec).await.unwrap_err();
        assert_eq!(e.kind(), want, "{e}");
        assert!(e.to_string().contains(text), "`{e}` does not say {text}");
        assert!(e.to_string().starts_with("create volume: "), "{e}");
    }
    assert_eq!(cloud.volume_count(), 0);
    let b = cloud
        .create_volume(&VolumeSpec::new(1).location("local-b"))
        .await
        .unwrap();
    assert_eq!(b.location_id, Some("local-b".into()));
    assert_eq!(
        b.state,
        VolumeState::Available,
        "no delay: available at once"
    );
}

#[tokio::test]
async fn a_client_token_makes_one_volume() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let spec = VolumeSpec::new(4).name("t").client_token("tok");
    let first = cloud.create_volume(&spec).await.unwrap();
    let again = cloud.create_volume(&spec).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.client_token.as_deref(), Some("tok"));
    let e = cloud
        .create_volume(&VolumeSpec::new(5).name("t").client_token("tok"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        e.context_value("reason"),
        Some("idempotent_parameter_mismatch")
    );
    assert!(e.message().contains(first.id.as_str()), "{e}");
    assert_eq!(cloud.volume_count(), 1);
    // Once the volume is gone, the token makes a new one.
    cloud.delete_volume(&first.id).await.unwrap();
    let after = cloud.create_volume(&spec).await.unwrap();
    assert_ne!(after.id, first.id);
}

#[tokio::test(start_paused = true)]
async fn attach_and_detach_show_on_both_sides() {
    use VolumeState::*;
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let vm = running(&cloud, "host").await;
    let other = running(&cloud, "other").await;
    let v = cloud.create_volume(&VolumeSpec::new(2)).await.unwrap();
    // Creating: not yet.
    let e = cloud.attach_volume(&v.id, &vm.id, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().contains("it is creating"), "{e}");
    sleep(DELAY).await;

    let a = cloud.attach_volume(&v.id, &vm.id, None).await.unwrap();
    assert_eq!(a.state, Attaching);
    let want = VolumeAttachment {
        instance_id: vm.id.clone(),
        device: Some("/dev/sdf".into()),
        delete_on_termination: false,
    };
    assert_eq!(a.attachments, std::slice::from_ref(&want));
    let seen = InstanceVolume {
        volume_id: v.id.clone(),
        device: Some("/dev/sdf".into()),
        delete_on_termination: false,
    };
    assert_eq!(
        cloud.get_instance(&vm.id).await.unwrap().volumes,
        std::slice::from_ref(&seen)
    );
    // A repeat while attaching, and once in use, answers it as it is.
    assert_eq!(
        cloud
            .attach_volume(&v.id, &vm.id, None)
            .await
            .unwrap()
            .state,
        Attaching
    );
    sleep(DELAY).await;
    let in_use = cloud.attach_volume(&v.id, &vm.id, None).await.unwrap();
    assert_eq!((in_use.state, in_use.raw_state.as_str()), (InUse, "in-use"));
    assert_eq!(in_use.attachments, [want]);
    // The instance lists its volumes too.
    let listed = cloud
        .list_instances(
            &InstanceFilter {
                ids: vec![vm.id.clone()],
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.items[0].volumes, [seen]);

    // Elsewhere, or deleted, while attached: refused.
    let e = cloud
        .attach_volume(&v.id, &other.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(
        e.message()
            .contains(&format!("attached to instance `{}`", vm.id)),
        "{e}"
    );
    let e = cloud.delete_volume(&v.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().ends_with("detach it first"), "{e}");

    // A second volume takes the next device; a device in use is refused.
    let w = cloud.create_volume(&VolumeSpec::new(2)).await.unwrap();
    sleep(DELAY).await;
    let e = cloud
        .attach_volume(&w.id, &vm.id, Some("/dev/sdf"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("argument"), Some("device"));
    let bad = cloud
        .attach_volume(&w.id, &vm.id, Some("sd f"))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidArgument);
    let w2 = cloud.attach_volume(&w.id, &vm.id, None).await.unwrap();
    assert_eq!(w2.attachments[0].device.as_deref(), Some("/dev/sdg"));

    let d = cloud.detach_volume(&v.id).await.unwrap();
    assert_eq!(d.state, Detaching);
    assert_eq!(d.attachments.len(), 1, "shown until detached");
    assert_eq!(cloud.detach_volume(&v.id).await.unwrap().state, Detaching);
    let e = cloud.attach_volume(&v.id, &vm.id, None).await.unwrap_err();
    assert!(e.message().contains("wait until it is available"), "{e}");
    sleep(DELAY).await;
    let free = cloud.get_volume(&v.id).await.unwrap();
    assert_eq!(free.state, Available);
    assert!(free.attachments.is_empty());
    assert_eq!(cloud.detach_volume(&v.id).await.unwrap().state, Available);
    let shown: Vec<_> = cloud
        .get_instance(&vm.id)
        .await
        .unwrap()
        .volumes
        .into_iter()
        .map(|x| x.volume_id)
        .collect();
    assert_eq!(shown, std::slice::from_ref(&w.id));
    // Free again: it attaches elsewhere, at the first free device there.
    let moved = cloud
        .attach_volume(&v.id, &other.id, Some("/dev/xvdb"))
        .await
        .unwrap();
    assert_eq!(moved.attachments[0].instance_id, other.id);
    assert_eq!(moved.attachments[0].device.as_deref(), Some("/dev/xvdb"));
    sleep(DELAY).await;
    assert_eq!(
        cloud.get_instance(&other.id).await.unwrap().volumes.len(),
        1
    );
    assert_eq!(cloud.get_instance(&vm.id).await.unwrap().volumes.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn attach_needs_a_running_or_stopped_instance_of_the_location() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let pending = cloud.create_instance(&spec("p")).await.unwrap();
    let v = cloud.create_volume(&VolumeSpec::new(1)).await.unwrap();
    let far = cloud
        .create_volume(&VolumeSpec::new(1).location("local-b"))
        .await
        .unwrap();
    sleep(DELAY).await;
    let unknown_vm = InstanceId::new("i-0000000000000099");
    assert_eq!(
        kind(cloud.attach_volume(&v.id, &unknown_vm, None).await),
        ErrorKind::NotFound
    );
    let unknown_vol = VolumeId::new("vol-0000000000000099");
    assert_eq!(
        kind(cloud.attach_volume(&unknown_vol, &pending.id, None).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(cloud.detach_volume(&unknown_vol).await),
        ErrorKind::NotFound
    );

    let fresh = cloud.create_instance(&spec("fresh")).await.unwrap();
    let e = cloud
        .attach_volume(&v.id, &fresh.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(e.context_value("state"), Some("pending"));
    sleep(DELAY).await;
    let e = cloud
        .attach_volume(&far.id, &fresh.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().contains("location `local-b`"), "{e}");
    // Stopped instances take volumes.
    cloud.stop_instance(&fresh.id).await.unwrap();
    sleep(DELAY).await;
    let a = cloud.attach_volume(&v.id, &fresh.id, None).await.unwrap();
    assert_eq!(a.state, VolumeState::Attaching);
    // Detaching an attaching volume waits for it to be in use.
    let e = cloud.detach_volume(&v.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    // A terminating instance takes none.
    cloud.delete_instance(&pending.id).await.unwrap();
    let e = cloud
        .attach_volume(&far.id, &pending.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.context_value("state"), Some("terminating"));
}

#[tokio::test]
async fn the_cloud_runs_out_of_device_names() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let vm = cloud.create_instance(&spec("many")).await.unwrap();
    for k in 0..21 {
        let v = cloud.create_volume(&VolumeSpec::new(1)).await.unwrap();
        let a = cloud.attach_volume(&v.id, &vm.id, None).await.unwrap();
        let want = format!("/dev/sd{}", (b'f' + k) as char);
        assert_eq!(a.attachments[0].device.as_deref(), Some(want.as_str()));
    }
    let v = cloud.create_volume(&VolumeSpec::new(1)).await.unwrap();
    let e = cloud.attach_volume(&v.id, &vm.id, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
    assert!(e.message().contains("name a device"), "{e}");
    cloud
        .attach_volume(&v.id, &vm.id, Some("/dev/xvdz"))
        .await
        .unwrap();
    assert_eq!(cloud.get_instance(&vm.id).await.unwrap().volumes.len(), 22);
}

#[tokio::test(start_paused = true)]
async fn volumes_made_with_an_instance_go_or_stay_with_it() {
    use VolumeState::*;
    let cloud = MemoryCloud::with_config(MemoryConfig {
        terminated_retention: DELAY * 10,
        ..MemoryConfig::with_delays(DELAY)
    });
    let keep = BlockDevice {
        device: None,
        size_gib: Some(3),
        snapshot_id: None,
        delete_on_termination: false,
    };
    let vm = cloud
        .create_instance(
            &spec("with-volumes")
                .owner("ann")
                .volume(keep)
                .volume(BlockDevice::new("/dev/sdf", 5)),
        )
        .await
        .unwrap();
    // The named device is kept; the other takes the first one free.
    let devices: Vec<_> = vm
        .volumes
        .iter()
        .map(|x| x.device.clone().unwrap())
        .collect();
    assert_eq!(devices, ["/dev/sdg", "/dev/sdf"]);
    let (kept, gone) = (
        vm.volumes[0].volume_id.clone(),
        vm.volumes[1].volume_id.clone(),
    );
    assert!(!vm.volumes[0].delete_on_termination && vm.volumes[1].delete_on_termination);
    let g = cloud.get_volume(&gone).await.unwrap();
    assert_eq!((g.state, g.size_gib), (Attaching, 5));
    assert_eq!(g.owner.as_deref(), Some("ann"), "the instance's owner");
    assert_eq!(g.location_id, vm.location_id);
    assert!(g.attachments[0].delete_on_termination);
    sleep(DELAY).await;
    assert_eq!(volume_state(&cloud, &gone).await, InUse);
    assert_eq!(volume_state(&cloud, &kept).await, InUse);

    // Deleted: its volumes let go when it is terminated.
    cloud.delete_instance(&vm.id).await.unwrap();
    assert_eq!(volume_state(&cloud, &gone).await, Detaching);
    assert_eq!(volume_state(&cloud, &kept).await, Detaching);
    sleep(DELAY).await;
    assert_eq!(state_of(&cloud, &vm.id).await, InstanceState::Terminated);
    assert!(cloud.get_instance(&vm.id).await.unwrap().volumes.is_empty());
    assert_eq!(volume_state(&cloud, &gone).await, Deleting);
    let k = cloud.get_volume(&kept).await.unwrap();
    assert_eq!((k.state, k.attachments.len()), (Available, 0));
    sleep(DELAY).await;
    assert_eq!(kind(cloud.get_volume(&gone).await), ErrorKind::NotFound);
    // The one kept is the account's to delete.
    cloud.delete_volume(&kept).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_detached_volume_stays_when_its_instance_goes() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(DELAY));
    let vm = cloud
        .create_instance(&spec("x").volume(BlockDevice::new("/dev/sdh", 1)))
        .await
        .unwrap();
    let id = vm.volumes[0].volume_id.clone();
    sleep(DELAY).await;
    cloud.detach_volume(&id).await.unwrap();
    sleep(DELAY).await;
    cloud.delete_instance(&vm.id).await.unwrap();
    sleep(DELAY * 3).await;
    assert_eq!(volume_state(&cloud, &id).await, VolumeState::Available);
}

#[tokio::test]
async fn block_devices_are_checked_before_anything_is_made() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let v = cloud.create_volume(&VolumeSpec::new(6)).await.unwrap();
    let snap = cloud
        .create_snapshot(&SnapshotSpec::new(v.id.clone()))
        .await
        .unwrap();
    let from = |size: Option<u32>, snapshot: &str| BlockDevice {
        device: None,
        size_gib: size,
        snapshot_id: Some(snapshot.into()),
        delete_on_termination: true,
    };
    let cases = [
        (from(None, "snap-0000000000000001"), ErrorKind::NotFound),
        (from(Some(5), snap.id.as_str()), ErrorKind::InvalidArgument),
        (BlockDevice::new("a b", 1), ErrorKind::InvalidArgument),
    ];
    for (bd, want) in cases {
        let e = cloud
            .create_instance(&spec("bd").volume(bd))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), want, "{e}");
        assert_eq!(e.operation(), Some(Operation::CreateInstance));
    }
    assert_eq!((cloud.instance_count(), cloud.volume_count()), (0, 1));
    let vm = cloud
        .create_instance(&spec("bd").volume(from(None, snap.id.as_str())))
        .await
        .unwrap();
    let made = cloud.get_volume(&vm.volumes[0].volume_id).await.unwrap();
    assert_eq!((made.size_gib, made.snapshot_id), (6, Some(snap.id)));
}

#[tokio::test]
async fn volume_pages_are_exact_under_owner_and_tag_filters() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let mut mine = Vec::new();
    for k in 0..23 {
        let owner = if k % 3 == 0 { "ann" } else { "bob" };
        let v = cloud
            .create_volume(
                &VolumeSpec::new(1)
                    .owner(owner)
                    .tag("k", (k % 2).to_string()),
            )
            .await
            .unwrap();
        if owner == "ann" {
            mine.push(v.id);
        }
    }
    let page_through = |filter: VolumeFilter| {
        let cloud = cloud.clone();
        async move {
            let mut ids = Vec::new();
            let mut page = PageRequest::first(3);
            loop {
                let p = cloud.list_volumes(&filter, &page).await.unwrap();
                if p.next.is_some() {
                    assert_eq!(p.items.len(), 3, "a page that is not the last is full");
                }
                ids.extend(p.items.into_iter().map(|v| v.id));
                match p.next {
                    Some(t) => page = PageRequest::after(Some(3), t),
                    None => return ids,
                }
            }
        }
    };
    assert_eq!(page_through(VolumeFilter::owned_by("ann")).await, mine);
    let all = page_through(VolumeFilter::default()).await;
    assert_eq!(all.len(), 23);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in id order");
    let mut odd = VolumeFilter::owned_by("ann");
    odd.tags.insert("k".into(), Some("1".into()));
    let got = page_through(odd).await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(page_through(VolumeFilter::owned_by("nobody"))
        .await
        .is_empty());
    let by_ids = VolumeFilter {
        ids: vec![all[1].clone(), "vol-junk".into(), all[0].clone()],
        ..Default::default()
    };
    assert_eq!(page_through(by_ids).await, [all[0].clone(), all[1].clone()]);
    for bad in ["after:i-0000000000000001", "x"] {
        let page = PageRequest::after(None, PageToken::new(bad));
        let e = cloud
            .list_volumes(&VolumeFilter::default(), &page)
            .await
            .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("page_token"), "{bad}");
    }
    assert_eq!(cloud.capabilities().volumes.max_page_size, 1000);
}
