//! Snapshots: progress with time, volumes made from them.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_snapshot_progresses_then_completes() {
    let cloud = MemoryCloud::with_config(MemoryConfig {
        snapshot_delay: DELAY * 4,
        ..MemoryConfig::with_delays(DELAY)
    });
    let v = cloud.create_volume(&VolumeSpec::new(3)).await.unwrap();
    // Creating volumes hold nothing to copy yet.
    let e = cloud
        .create_snapshot(&SnapshotSpec::new(v.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(e.context_value("state"), Some("creating"));
    sleep(DELAY).await;

    let s = cloud
        .create_snapshot(
            &SnapshotSpec::new(v.id.clone())
                .name("nightly")
                .tag("k", "v")
                .owner("ann"),
        )
        .await
        .unwrap();
    assert!(s.id.as_str().starts_with("snap-"));
    assert_eq!(
        (s.state, s.raw_state.as_str(), s.progress),
        (SnapshotState::Pending, "pending", 0)
    );
    assert_eq!((s.size_gib, s.volume_id.clone()), (3, Some(v.id.clone())));
    assert_eq!(
        (s.name.as_str(), s.owner.as_deref()),
        ("nightly", Some("ann"))
    );
    assert_eq!(s.tags.get("k").map(String::as_str), Some("v"));
    sleep(DELAY * 2).await;
    let half = cloud.get_snapshot(&s.id).await.unwrap();
    assert_eq!((half.state, half.progress), (SnapshotState::Pending, 50));
    // Volumes wait for a completed snapshot.
    let e = cloud
        .create_volume(&VolumeSpec::from_snapshot(s.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.message().contains("50% done"), "{e}");
    sleep(DELAY * 2).await;
    let done = cloud.get_snapshot(&s.id).await.unwrap();
    assert_eq!(
        (done.state, done.raw_state.as_str(), done.progress),
        (SnapshotState::Completed, "completed", 100)
    );

    let e = cloud
        .create_volume(&VolumeSpec {
            size_gib: Some(2),
            ..VolumeSpec::from_snapshot(s.id.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("argument"), Some("size_gib"));
    let same = cloud
        .create_volume(&VolumeSpec::from_snapshot(s.id.clone()))
        .await
        .unwrap();
    assert_eq!(
        (same.size_gib, same.snapshot_id.clone()),
        (3, Some(s.id.clone()))
    );
    let bigger = cloud
        .create_volume(&VolumeSpec {
            size_gib: Some(10),
            ..VolumeSpec::from_snapshot(s.id.clone())
        })
        .await
        .unwrap();
    assert_eq!(bigger.size_gib, 10);

    // Deleting the snapshot leaves its volumes, which keep its id.
    cloud.delete_snapshot(&s.id).await.unwrap();
    assert_eq!(kind(cloud.get_snapshot(&s.id).await), ErrorKind::NotFound);
    assert_eq!(
        kind(cloud.delete_snapshot(&s.id).await),
        ErrorKind::NotFound
    );
    let kept = cloud.get_volume(&same.id).await.unwrap();
    assert_eq!(kept.snapshot_id, Some(s.id.clone()));
    assert_eq!(
        kind(cloud.create_volume(&VolumeSpec::from_snapshot(s.id)).await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn snapshots_need_a_volume_with_data() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    assert_eq!(
        kind(
            cloud
                .create_snapshot(&SnapshotSpec::new("vol-0000000000000001"))
                .await
        ),
        ErrorKind::NotFound
    );
    let v = cloud.create_volume(&VolumeSpec::new(1)).await.unwrap();
    let vm = cloud.create_instance(&spec("x")).await.unwrap();
    cloud.attach_volume(&v.id, &vm.id, None).await.unwrap();
    // In use is fine (EC2 copies what was written).
    let s = cloud
        .create_snapshot(&SnapshotSpec::new(v.id.clone()))
        .await
        .unwrap();
    assert_eq!(
        (s.state, s.progress),
        (SnapshotState::Completed, 100),
        "no delay"
    );
    cloud.detach_volume(&v.id).await.unwrap();
    let slow = MemoryCloud::with_config(MemoryConfig {
        volume_delete_delay: DELAY,
        ..MemoryConfig::with_delays(Duration::ZERO)
    });
    let w = slow.create_volume(&VolumeSpec::new(1)).await.unwrap();
    slow.delete_volume(&w.id).await.unwrap();
    let e = slow
        .create_snapshot(&SnapshotSpec::new(w.id))
        .await
        .unwrap_err();
    assert_eq!(e.context_value("state"), Some("deleting"));
}

#[tokio::test]
async fn snapshots_are_listed_by_owner_and_tag() {
    let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
    let v = cloud.create_volume(&VolumeSpec::new(1)).await.unwrap();
    let mut ann = Vec::new();
    for k in 0..5 {
        let owner = if k % 2 == 0 { "ann" } else { "bob" };
        let s = cloud
            .create_snapshot(
                &SnapshotSpec::new(v.id.clone())
                    .owner(owner)
                    .tag("n", k.to_string()),
            )
            .await
            .unwrap();
        if owner == "ann" {
            ann.push(s.id);
        }
    }
    let first = cloud
        .list_snapshots(&SnapshotFilter::owned_by("ann"), &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        ann[..2]
    );
    let rest = cloud
        .list_snapshots(
            &SnapshotFilter::owned_by("ann"),
            &PageRequest::after(Some(2), first.next.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        ann[2..]
    );
    assert_eq!(rest.next, None);
    let mut by_tag = SnapshotFilter::default();
    by_tag.tags.insert("n".into(), Some("3".into()));
    let got = cloud
        .list_snapshots(&by_tag, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(got.items.len(), 1);
    assert_eq!(got.items[0].owner.as_deref(), Some("bob"));
}
