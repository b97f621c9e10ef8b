//! Behaviour specific to the memory cloud. The conformance testkit checks the rest.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tokio::time::sleep;

use super::*;
use crate::ErrorKind;

mod addresses;
mod groups;
mod images;
mod snapshots;
mod volumes;

const DELAY: Duration = Duration::from_millis(50);
const MS: Duration = Duration::from_millis(1);

/// Every transition takes `DELAY`, terminated instances stay `DELAY * 4`.
fn config() -> MemoryConfig {
    MemoryConfig {
        terminated_retention: DELAY * 4,
        ..MemoryConfig::with_delays(DELAY)
    }
}

/// Every transition is immediate.
fn instant_config() -> MemoryConfig {
    MemoryConfig::with_delays(Duration::ZERO)
}

fn spec(name: &str) -> InstanceSpec {
    InstanceSpec::new("img-debian-12", "flv-1cpu-1gb").name(name)
}

async fn state_of(cloud: &MemoryCloud, id: &InstanceId) -> InstanceState {
    cloud.get_instance(id).await.expect("get instance").state
}

fn kind<T: fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

#[tokio::test]
async fn seeded_catalogue_and_capabilities() {
    let cloud = MemoryCloud::new();
    assert_eq!(cloud.name(), "memory");
    let mut want = Capabilities::all();
    want.instances.max_page_size = 1000;
    assert_eq!(*cloud.capabilities(), want);
    let small = MemoryCloud::with_config(MemoryConfig {
        max_page_size: 7,
        ..MemoryConfig::default()
    });
    assert_eq!(small.capabilities().instances.max_page_size, 7);

    let images = cloud
        .list_images(&crate::ImageFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    let names: Vec<_> = images.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["debian-12", "fedora-41", "ubuntu-24.04"]);
    assert_eq!(images.next, None);
    let ubuntu = cloud.get_image(&"img-ubuntu-24.04".into()).await.unwrap();
    assert_eq!(ubuntu.kind, ImageKind::Disk);
    assert_eq!(ubuntu.raw_state, "available");
    assert_eq!(ubuntu.os.as_deref(), Some("linux"));
    assert_eq!(ubuntu.architecture.as_deref(), Some("x86_64"));
    let e = cloud.get_image(&"img-nope".into()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "get image: image `img-nope` not found");

    let flavors = cloud.list_flavors(&PageRequest::default()).await.unwrap();
    let sizes: Vec<_> = flavors
        .items
        .iter()
        .map(|f| (f.name.as_str(), f.vcpus, f.memory_mib))
        .collect();
    assert_eq!(
        sizes,
        [("small", 1, 1024), ("medium", 2, 4096), ("large", 4, 8192)]
    );

    let nets = cloud.list_networks(&PageRequest::default()).await.unwrap();
    assert_eq!(nets.items.len(), 1);
    let net = &nets.items[0];
    assert!(net.is_default);
    assert_eq!(net.cidr.as_deref(), Some("10.0.0.0/16"));
    assert_eq!(net.raw_state, "available");

    let locations = cloud.list_locations().await.unwrap();
    let ids: Vec<_> = locations.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["local-a", "local-b"]);
    assert!(locations
        .iter()
        .all(|l| l.available && l.region.as_deref() == Some("local")));
}

#[tokio::test]
async fn catalogue_pages_with_tokens() {
    let cloud = MemoryCloud::new();
    let first = cloud
        .list_images(&crate::ImageFilter::default(), &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.next.expect("a second page");
    let second = cloud
        .list_images(
            &crate::ImageFilter::default(),
            &PageRequest::after(Some(2), token),
        )
        .await
        .unwrap();
    let names: Vec<_> = second.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["ubuntu-24.04"]);
    assert_eq!(second.next, None);
    // A page that ends exactly at the end has no token.
    let all = cloud.list_flavors(&PageRequest::first(3)).await.unwrap();
    assert_eq!((all.items.len(), all.next), (3, None));
    for bad in ["x", "after:", "before:img-debian-12"] {
        let page = PageRequest::after(None, PageToken::new(bad));
        let e = cloud
            .list_images(&crate::ImageFilter::default(), &page)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        assert_eq!(e.context_value("argument"), Some("page_token"));
        let e = cloud.list_networks(&page).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn create_keeps_the_request_and_allocates_addresses() {
    let cloud = MemoryCloud::with_config(config());
    let before = chrono::Utc::now();
    let a = cloud
        .create_instance(&spec("web-1").tag("tier", "web").client_token("tok-a"))
        .await
        .unwrap();
    let b = cloud.create_instance(&spec("web-2")).await.unwrap();
    assert_eq!(a.state, InstanceState::Pending);
    assert_eq!(a.raw_state, "pending");
    assert_eq!(a.name, "web-1");
    assert_eq!(a.tags.get("tier").map(String::as_str), Some("web"));
    assert_eq!(a.image_id, Some("img-debian-12".into()));
    assert_eq!(a.flavor_id, Some("flv-1cpu-1gb".into()));
    assert_eq!(a.location_id, Some("local-a".into()));
    assert_eq!(a.network_ids, vec![NetworkId::new("net-default")]);
    assert_eq!(a.client_token.as_deref(), Some("tok-a"));
    assert!(a.created_at.is_some_and(|t| t >= before));
    assert_eq!(a.private_ips, ["10.0.0.2"]);
    assert_eq!(b.private_ips, ["10.0.0.3"]);
    // Ids are distinct and sort in creation order.
    assert!(a.id.as_str().starts_with("i-") && a.id.as_str().len() == 18);
    assert!(a.id < b.id);
    assert_eq!(cloud.get_instance(&a.id).await.unwrap(), a);
    assert_eq!(cloud.instance_count(), 2);

    let on_b = cloud
        .create_instance(&InstanceSpec {
            location_id: Some("local-b".into()),
            ..spec("placed")
        })
        .await
        .unwrap();
    assert_eq!(on_b.location_id, Some("local-b".into()));
}

#[tokio::test]
async fn create_rejects_what_does_not_exist() {
    let cloud = MemoryCloud::new();
    let cases: Vec<(InstanceSpec, ErrorKind, &str)> = vec![
        (
            InstanceSpec::new("img-nope", "flv-1cpu-1gb"),
            ErrorKind::NotFound,
            "image `img-nope` not found",
        ),
        (
            InstanceSpec::new("img-debian-12", "flv-nope"),
            ErrorKind::NotFound,
            "flavor `flv-nope` not found",
        ),
        (
            InstanceSpec {
                network_ids: vec!["net-nope".into()],
                ..spec("x")
            },
            ErrorKind::NotFound,
            "network `net-nope` not found",
        ),
        (
            InstanceSpec {
                location_id: Some("mars".into()),
                ..spec("x")
            },
            ErrorKind::NotFound,
            "location `mars` not found",
        ),
        (
            InstanceSpec {
                key_name: Some("nokey".into()),
                ..spec("x")
            },
            ErrorKind::NotFound,
            "key pair `nokey` not found",
        ),
        (spec(&"n".repeat(256)), ErrorKind::InvalidArgument, "`name`"),
        (spec("bad\nname"), ErrorKind::InvalidArgument, "`name`"),
        (spec("x").tag("", "v"), ErrorKind::InvalidArgument, "`tags`"),
        (
            InstanceSpec {
                network_ids: vec!["net-default".into(), "net-default".into()],
                ..spec("x")
            },
            ErrorKind::InvalidArgument,
            "more than once",
        ),
        (
            spec("x").client_token(""),
            ErrorKind::InvalidArgument,
            "`client_token`",
        ),
    ];
    for (spec, want, text) in cases {
        let e = cloud.create_instance(&spec).await.unwrap_err();
        assert_eq!(e.kind(), want, "{e}");
        assert!(e.to_string().contains(text), "`{e}` does not say {text}");
        assert!(e.to_string().starts_with("create instance: "), "{e}");
    }
    assert_eq!(cloud.instance_count(), 0);
    // The name limit is in characters, not bytes.
    cloud
        .create_instance(&spec(&"é".repeat(255)))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn states_move_with_time() {
    use InstanceState::*;
    let cloud = MemoryCloud::with_config(config());
    let vm = cloud.create_instance(&spec("life")).await.unwrap();
    let id = &vm.id;
    assert_eq!(vm.state, Pending);
    sleep(DELAY - MS).await;
    assert_eq!(state_of(&cloud, id).await, Pending);
    sleep(MS).await;
    assert_eq!(state_of(&cloud, id).await, Running);

    let s = cloud.stop_instance(id).await.unwrap();
    assert_eq!((s.state, s.raw_state.as_str()), (Stopping, "stopping"));
    sleep(DELAY - MS).await;
    assert_eq!(state_of(&cloud, id).await, Stopping);
    sleep(MS).await;
    assert_eq!(state_of(&cloud, id).await, Stopped);

    assert_eq!(cloud.start_instance(id).await.unwrap().state, Pending);
    sleep(DELAY - MS).await;
    assert_eq!(state_of(&cloud, id).await, Pending);
    sleep(MS).await;
    assert_eq!(state_of(&cloud, id).await, Running);

    let r = cloud.reboot_instance(id).await.unwrap();
    assert_eq!((r.state, r.raw_state.as_str()), (Rebooting, "rebooting"));
    sleep(DELAY - MS).await;
    assert_eq!(state_of(&cloud, id).await, Rebooting);
    sleep(MS).await;
    assert_eq!(state_of(&cloud, id).await, Running);

    let d = cloud.delete_instance(id).await.unwrap();
    assert_eq!(
        (d.state, d.raw_state.as_str()),
        (Terminating, "terminating")
    );
    sleep(DELAY - MS).await;
    assert_eq!(state_of(&cloud, id).await, Terminating);
    sleep(MS).await;
    assert_eq!(state_of(&cloud, id).await, Terminated);
    // Deleting again answers it as it is.
    assert_eq!(cloud.delete_instance(id).await.unwrap().state, Terminated);
    let listed = cloud
        .list_instances(&InstanceFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].state, Terminated);
    assert_eq!(cloud.instance_count(), 1);

    // Retention over: gone everywhere, and no longer stored.
    sleep(DELAY * 4 - MS).await;
    assert_eq!(state_of(&cloud, id).await, Terminated);
    sleep(MS).await;
    let e = cloud.get_instance(id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.message(), format!("instance `{id}` not found"));
    let listed = cloud
        .list_instances(&InstanceFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    assert_eq!(kind(cloud.delete_instance(id).await), ErrorKind::NotFound);
    assert_eq!(cloud.instance_count(), 0);
}

#[tokio::test]
async fn states_move_with_the_real_clock() {
    let cloud = MemoryCloud::with_config(MemoryConfig {
        boot_delay: Duration::from_millis(20),
        ..MemoryConfig::default()
    });
    let vm = cloud.create_instance(&spec("real")).await.unwrap();
    assert_eq!(vm.state, InstanceState::Pending);
    sleep(Duration::from_millis(30)).await;
    assert_eq!(state_of(&cloud, &vm.id).await, InstanceState::Running);
}

#[tokio::test]
async fn zero_delays_are_immediate() {
    let cloud = MemoryCloud::with_config(MemoryConfig {
        terminated_retention: Duration::ZERO,
        ..instant_config()
    });
    let vm = cloud.create_instance(&spec("now")).await.unwrap();
    assert_eq!(vm.state, InstanceState::Running);
    let id = &vm.id;
    assert_eq!(
        cloud.stop_instance(id).await.unwrap().state,
        InstanceState::Stopped
    );
    assert_eq!(
        cloud.start_instance(id).await.unwrap().state,
        InstanceState::Running
    );
    assert_eq!(
        cloud.reboot_instance(id).await.unwrap().state,
        InstanceState::Running
    );
    assert_eq!(
        cloud.delete_instance(id).await.unwrap().state,
        InstanceState::Terminated
    );
    // With no retention it is gone at once.
    assert_eq!(kind(cloud.get_instance(id).await), ErrorKind::NotFound);
    assert_eq!(cloud.instance_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn impossible_transitions_are_invalid_state() {
    let cloud = MemoryCloud::with_config(config());
    let vm = cloud.create_instance(&spec("x")).await.unwrap();
    let id = &vm.id;
    let check = |r: Result<Instance>, action: &str, state: &str| {
        let e = r.expect_err("expected invalid_state");
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
        let want = format!("cannot {action} instance `{id}`: it is {state}");
        assert!(
            e.message().starts_with(&want),
            "`{e}` does not start with `{want}`"
        );
        assert_eq!(e.resource(), Some(format!("instance {id}").as_str()));
        assert_eq!(e.context_value("state"), Some(state));
    };
    // Pending: starting is already under way (the trait's rule), the rest must wait.
    assert_eq!(
        cloud.start_instance(id).await.unwrap().state,
        InstanceState::Pending
    );
    check(cloud.stop_instance(id).await, "stop", "pending");
    check(cloud.reboot_instance(id).await, "reboot", "pending");
    sleep(DELAY).await;
    // Running.
    check(cloud.start_instance(id).await, "start", "running");
    cloud.stop_instance(id).await.unwrap();
    // Stopping.
    check(cloud.start_instance(id).await, "start", "stopping");
    check(cloud.reboot_instance(id).await, "reboot", "stopping");
    sleep(DELAY).await;
    // Stopped.
    check(cloud.stop_instance(id).await, "stop", "stopped");
    check(cloud.reboot_instance(id).await, "reboot", "stopped");
    cloud.delete_instance(id).await.unwrap();
    check(cloud.start_instance(id).await, "start", "terminating");
    sleep(DELAY).await;
    check(cloud.start_instance(id).await, "start", "terminated");
    check(cloud.stop_instance(id).await, "stop", "terminated");
    check(cloud.reboot_instance(id).await, "reboot", "terminated");
    // The state did not change through any of it.
    assert_eq!(state_of(&cloud, id).await, InstanceState::Terminated);
    // Unknown and malformed ids are not found.
    for bad in [
        "i-0000000000000099",
        "i-00000000000000001",
        "i-000000000000000A",
        "x",
    ] {
        let bad = InstanceId::new(bad);
        assert_eq!(kind(cloud.start_instance(&bad).await), ErrorKind::NotFound);
        assert_eq!(kind(cloud.get_instance(&bad).await), ErrorKind::NotFound);
    }
}

#[tokio::test(start_paused = true)]
async fn repeating_an_action_in_progress_answers_the_instance() {
    use InstanceState::*;
    let cloud = MemoryCloud::with_config(config());
    let id = &cloud.create_instance(&spec("again")).await.unwrap().id;
    sleep(DELAY).await;
    let steps: [(InstanceAction, InstanceState, InstanceState); 3] = [
        (InstanceAction::Stop, Stopping, Stopped),
        (InstanceAction::Start, Pending, Running),
        (InstanceAction::Reboot, Rebooting, Running),
    ];
    for (action, during, after) in steps {
        let run = || async {
            match action {
                InstanceAction::Stop => cloud.stop_instance(id).await,
                InstanceAction::Start => cloud.start_instance(id).await,
                _ => cloud.reboot_instance(id).await,
            }
        };
        assert_eq!(run().await.unwrap().state, during);
        sleep(DELAY / 2).await;
        // A repeat (say, a retry after a lost answer) changes nothing…
        assert_eq!(run().await.unwrap().state, during, "{action:?} repeated");
        // …not even when the transition ends.
        sleep(DELAY / 2).await;
        assert_eq!(state_of(&cloud, id).await, after, "{action:?}");
    }
    // Once it is over, the same action is judged on the new state.
    cloud.stop_instance(id).await.unwrap();
    sleep(DELAY).await;
    assert_eq!(kind(cloud.stop_instance(id).await), ErrorKind::InvalidState);
}

#[tokio::test(start_paused = true)]
async fn client_token_makes_one_instance() {
    let cloud = MemoryCloud::with_config(config());
    let first = cloud
        .create_instance(&spec("t").client_token("abc"))
        .await
        .unwrap();
    let again = cloud
        .create_instance(&spec("t").client_token("abc"))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(cloud.instance_count(), 1);

    let e = cloud
        .create_instance(&spec("other").client_token("abc"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        e.context_value("reason"),
        Some("idempotent_parameter_mismatch")
    );
    assert!(e.message().contains("client token `abc`"), "{e}");
    assert!(e.message().contains(first.id.as_str()), "{e}");
    assert_eq!(cloud.instance_count(), 1);

    // The answer is the instance's current state, not the one it was created in.
    cloud.delete_instance(&first.id).await.unwrap();
    let after = cloud
        .create_instance(&spec("t").client_token("abc"))
        .await
        .unwrap();
    assert_eq!(
        (after.id, after.state),
        (first.id, InstanceState::Terminating)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_token_make_one_instance() {
    let cloud = MemoryCloud::with_config(config());
    let tasks: Vec<_> = (0..32)
        .map(|k| {
            let cloud = cloud.clone();
            tokio::spawn(async move {
                // Half of them use the token, the other half make their own instance.
                let s = if k % 2 == 0 {
                    spec("same").client_token("shared")
                } else {
                    spec(&format!("own-{k}"))
                };
                cloud.create_instance(&s).await.unwrap().id
            })
        })
        .collect();
    let mut token_ids = HashSet::new();
    let mut all_ids = HashSet::new();
    for (k, t) in tasks.into_iter().enumerate() {
        let id = t.await.unwrap();
        if k % 2 == 0 {
            token_ids.insert(id.clone());
        }
        all_ids.insert(id);
    }
    assert_eq!(token_ids.len(), 1);
    assert_eq!(all_ids.len(), 17);
    assert_eq!(cloud.instance_count(), 17);
}

async fn list_all_ids(cloud: &MemoryCloud, filter: &InstanceFilter, limit: u32) -> Vec<InstanceId> {
    let mut ids = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let p = cloud.list_instances(filter, &page).await.unwrap();
        assert!(p.items.len() <= limit as usize);
        ids.extend(p.items.into_iter().map(|i| i.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(limit), t),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_neither_repeats_nor_loses_while_creating() {
    let cloud = MemoryCloud::with_config(instant_config());
    let mut before = Vec::new();
    for k in 0..2_500 {
        before.push(
            cloud
                .create_instance(&spec(&format!("p-{k}")))
                .await
                .unwrap()
                .id,
        );
    }
    // A creator running on another thread all through the listing…
    let background = {
        let cloud = cloud.clone();
        tokio::spawn(async move {
            for k in 0..500 {
                cloud
                    .create_instance(&spec(&format!("bg-{k}")))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    // …and creates between every two pages.
    let mut seen: BTreeMap<InstanceId, usize> = BTreeMap::new();
    let mut page = PageRequest::first(97);
    let mut pages = 0;
    loop {
        let p = cloud
            .list_instances(&InstanceFilter::default(), &page)
            .await
            .unwrap();
        assert!(p.items.len() <= 97);
        pages += 1;
        for i in p.items {
            *seen.entry(i.id).or_default() += 1;
        }
        for k in 0..3 {
            cloud
                .create_instance(&spec(&format!("between-{pages}-{k}")))
                .await
                .unwrap();
        }
        match p.next {
            Some(t) => page = PageRequest::after(Some(97), t),
            None => break,
        }
    }
    background.await.unwrap();
    assert!(pages >= 2_500 / 97);
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "listed twice: {repeated:?}");
    let missing: Vec<_> = before.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never listed: {missing:?}");
    // Listed in id order, which is creation order.
    let total = cloud.instance_count();
    let all = list_all_ids(&cloud, &InstanceFilter::default(), 1000).await;
    assert_eq!(all.len(), total);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(&all[..2_500], &before[..]);
}

#[tokio::test]
async fn page_sizes_and_the_end_of_a_listing() {
    let cloud = MemoryCloud::with_config(MemoryConfig {
        default_page_size: 4,
        max_page_size: 6,
        ..instant_config()
    });
    for k in 0..10 {
        cloud
            .create_instance(&spec(&format!("s-{k}")))
            .await
            .unwrap();
    }
    let all = InstanceFilter::default();
    let list = |page: PageRequest| {
        let cloud = cloud.clone();
        let all = all.clone();
        async move { cloud.list_instances(&all, &page).await.unwrap() }
    };
    assert_eq!(list(PageRequest::default()).await.items.len(), 4);
    assert_eq!(list(PageRequest::first(0)).await.items.len(), 4);
    assert_eq!(list(PageRequest::first(100)).await.items.len(), 6);
    // Five and five: the second page ends exactly at the end, and says so.
    let first = list(PageRequest::first(5)).await;
    let second = list(PageRequest::after(Some(5), first.next.unwrap())).await;
    assert_eq!((second.items.len(), second.next), (5, None));
}

#[tokio::test]
async fn bad_page_tokens_are_invalid_arguments() {
    let cloud = MemoryCloud::with_config(instant_config());
    cloud.create_instance(&spec("a")).await.unwrap();
    for bad in [
        "%%no such token%%",
        "after:",
        "after:i-1",
        "after:img-debian-12",
        "i-0000000000000001",
    ] {
        let page = PageRequest::after(None, PageToken::new(bad));
        let e = cloud
            .list_instances(&InstanceFilter::default(), &page)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        assert_eq!(e.context_value("argument"), Some("page_token"));
        assert!(e.to_string().contains("page_token"), "{e}");
    }
}

#[tokio::test]
async fn filters_apply_to_the_current_state() {
    let cloud = MemoryCloud::with_config(instant_config());
    let a = cloud
        .create_instance(&spec("a").tag("tier", "web"))
        .await
        .unwrap();
    let b = cloud
        .create_instance(&spec("b").tag("tier", "db"))
        .await
        .unwrap();
    let c = cloud.create_instance(&spec("a")).await.unwrap();
    cloud.stop_instance(&b.id).await.unwrap();
    let ids = |f: InstanceFilter| {
        let cloud = cloud.clone();
        async move { list_all_ids(&cloud, &f, 2).await }
    };
    let by_state = InstanceFilter {
        states: vec![InstanceState::Stopped],
        ..Default::default()
    };
    assert_eq!(ids(by_state).await, vec![b.id.clone()]);
    let by_name = InstanceFilter {
        name: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(ids(by_name).await, [a.id.clone(), c.id.clone()]);
    let mut by_tag = InstanceFilter::default();
    by_tag.tags.insert("tier".into(), Some("web".into()));
    assert_eq!(ids(by_tag).await, vec![a.id.clone()]);
    let mut by_key = InstanceFilter::default();
    by_key.tags.insert("tier".into(), None);
    assert_eq!(ids(by_key).await, [a.id.clone(), b.id.clone()]);
    let by_ids = InstanceFilter {
        ids: vec![c.id.clone(), "junk".into(), a.id.clone(), c.id.clone()],
        ..Default::default()
    };
    assert_eq!(ids(by_ids).await, [a.id.clone(), c.id.clone()]);
}

#[tokio::test]
async fn tag_updates_keep_filters_right_and_the_limits() {
    let cloud = MemoryCloud::with_config(config());
    let vm = cloud
        .create_instance(&spec("t").tag("m", "1").tag("z", "1"))
        .await
        .unwrap();
    // Keys that sort before, between and after the ones there: filters (which search
    // the stored tags by key) still find each.
    let changes = TagChanges::new()
        .set_tag("a", "2")
        .set_tag("q", "2")
        .set_tag("zz", "2")
        .remove_tag("z");
    let after = cloud.update_instance_tags(&vm.id, &changes).await.unwrap();
    for (k, want) in [
        ("a", true),
        ("m", true),
        ("q", true),
        ("zz", true),
        ("z", false),
    ] {
        let mut f = InstanceFilter::default();
        f.tags.insert(k.into(), None);
        let found = list_all_ids(&cloud, &f, 10).await == vec![vm.id.clone()];
        assert_eq!(found, want, "filter on tag key {k}");
    }
    // At most 50 tags after the change; nothing changes when it is refused.
    let many = (0..49).fold(TagChanges::new(), |c, k| c.set_tag(format!("k{k:02}"), "v"));
    let e = cloud.update_instance_tags(&vm.id, &many).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().starts_with("update instance tags: "), "{e}");
    assert_eq!(cloud.get_instance(&vm.id).await.unwrap().tags, after.tags);
    // A terminated instance, while visible, still takes tags; then it is gone.
    cloud.delete_instance(&vm.id).await.unwrap();
    sleep(DELAY + MS * 10).await;
    let t = TagChanges::new().set_tag("why", "audit");
    let gone = cloud.update_instance_tags(&vm.id, &t).await.unwrap();
    assert_eq!(gone.state, InstanceState::Terminated);
    assert_eq!(gone.tags.get("why").map(String::as_str), Some("audit"));
    sleep(DELAY * 4).await;
    assert_eq!(
        kind(cloud.update_instance_tags(&vm.id, &t).await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_filtered_page_looks_at_a_bounded_number_of_instances() {
    let cloud = MemoryCloud::with_config(instant_config());
    let n = state::SCAN_BUDGET + 2_000;
    for k in 0..n {
        cloud
            .create_instance(&spec(&format!("f-{k}")))
            .await
            .unwrap();
    }
    let wanted = cloud.create_instance(&spec("needle")).await.unwrap();
    let filter = InstanceFilter {
        name: Some("needle".into()),
        ..Default::default()
    };
    let first = cloud
        .list_instances(&filter, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(first.items.is_empty());
    let token = first.next.expect("a token to continue after the budget");
    let second = cloud
        .list_instances(&filter, &PageRequest::after(Some(10), token))
        .await
        .unwrap();
    let got: Vec<_> = second.items.into_iter().map(|i| i.id).collect();
    assert_eq!(got, [wanted.id]);
    assert_eq!(second.next, None);
}

#[tokio::test]
async fn network_cidrs_are_validated() {
    let cloud = MemoryCloud::new();
    let net = |name: &str, cidr: &str| NetworkSpec {
        name: name.into(),
        cidr: cidr.into(),
        ..Default::default()
    };
    for bad in [
        "",
        "10.0.0.0",
        "10.0.0.300/24",
        "10.0.0.0/7",
        "10.0.0.0/31",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/024",
        "10.0.0.0/08",
        "10.0.0/24",
        "010.0.0.0/24",
        "::/64",
        "10.0.0.0/24/1",
    ] {
        let e = cloud.create_network(&net("n", bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
        assert_eq!(e.context_value("argument"), Some("cidr"), "{bad}");
    }
    // Host bits are cleared: the range is the one the address is in.
    let n = cloud
        .create_network(&net("host-bits", "10.9.2.3/16"))
        .await
        .unwrap();
    assert_eq!(n.cidr.as_deref(), Some("10.9.0.0/16"));
    cloud.delete_network(&n.id).await.unwrap();
    let e = cloud
        .create_network(&net(" ", "10.1.0.0/16"))
        .await
        .unwrap_err();
    assert_eq!(e.context_value("argument"), Some("name"));

    let a = cloud
        .create_network(&net("a", "10.1.0.0/16"))
        .await
        .unwrap();
    assert_eq!(a.cidr.as_deref(), Some("10.1.0.0/16"));
    assert!(!a.is_default);
    assert_eq!(a.raw_state, "available");
    assert_eq!(cloud.get_network(&a.id).await.unwrap(), a);
    for ok in ["192.168.0.0/30", "10.0.0.0/8"] {
        cloud.create_network(&net(ok, ok)).await.unwrap();
    }
    let e = cloud
        .create_network(&net("a", "10.2.0.0/16"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.message().contains(a.id.as_str()), "{e}");
    let listed = cloud.list_networks(&PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.len(), 4);
    let e = cloud
        .create_network(&NetworkSpec {
            location_id: Some("mars".into()),
            ..net("m", "10.3.0.0/16")
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn networks_in_use_cannot_be_deleted() {
    let cloud = MemoryCloud::with_config(config());
    let net = cloud
        .create_network(&NetworkSpec {
            name: "apps".into(),
            cidr: "10.77.0.0/24".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let on = |name: &str| InstanceSpec {
        network_ids: vec![net.id.clone()],
        ..spec(name)
    };
    let a = cloud.create_instance(&on("a")).await.unwrap();
    let b = cloud.create_instance(&on("b")).await.unwrap();
    assert_eq!(a.network_ids, vec![net.id.clone()]);
    assert_eq!(a.private_ips, ["10.77.0.2"]);
    assert_eq!(b.private_ips, ["10.77.0.3"]);

    let e = cloud.delete_network(&net.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(
        e.message(),
        format!(
            "network `{}` is in use by 2 instances; delete them first",
            net.id
        )
    );
    cloud.delete_instance(&a.id).await.unwrap();
    cloud.delete_instance(&b.id).await.unwrap();
    // Terminating instances still use it.
    assert_eq!(
        kind(cloud.delete_network(&net.id).await),
        ErrorKind::InvalidState
    );
    sleep(DELAY).await;
    cloud.delete_network(&net.id).await.unwrap();
    assert_eq!(kind(cloud.get_network(&net.id).await), ErrorKind::NotFound);
    assert_eq!(
        kind(cloud.delete_network(&net.id).await),
        ErrorKind::NotFound
    );
    // Its terminated instances stay visible until their retention ends.
    assert_eq!(state_of(&cloud, &a.id).await, InstanceState::Terminated);
    sleep(DELAY * 4).await;
    assert_eq!(cloud.instance_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_network_refuses_instances_until_addresses_come_back() {
    let cloud = MemoryCloud::with_config(config());
    let net = cloud
        .create_network(&NetworkSpec {
            name: "tiny".into(),
            cidr: "192.168.9.0/30".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let on = InstanceSpec {
        network_ids: vec![net.id.clone()],
        ..spec("t")
    };
    let a = cloud.create_instance(&on).await.unwrap();
    assert_eq!(a.private_ips, ["192.168.9.2"]);
    let e = cloud.create_instance(&on).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
    assert!(e.message().contains("no free private address"), "{e}");
    assert_eq!(cloud.instance_count(), 1);
    cloud.delete_instance(&a.id).await.unwrap();
    sleep(DELAY * 5).await;
    let b = cloud.create_instance(&on).await.unwrap();
    assert_eq!(b.private_ips, ["192.168.9.2"]);
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn key_pairs_are_generated_imported_and_deleted() {
    let cloud = MemoryCloud::new();
    let generated = cloud
        .create_key_pair(&KeyPairSpec {
            name: "gen".into(),
            public_key: None,
        })
        .await
        .unwrap();
    let private = generated.private_key.as_deref().expect("the private key");
    assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    let parsed = ssh_key::PrivateKey::from_openssh(private).unwrap();
    assert_eq!(parsed.algorithm(), ssh_key::Algorithm::Ed25519);
    let public = parsed.public_key();
    assert_eq!(generated.public_key, Some(public.to_openssh().unwrap()));
    assert!(generated.fingerprint.starts_with("SHA256:"));
    assert_eq!(
        generated.fingerprint,
        public.fingerprint(ssh_key::HashAlg::Sha256).to_string()
    );

    // Import the public half of a key made here.
    let other =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let line = other.public_key().to_openssh().unwrap();
    let imported = cloud
        .create_key_pair(&KeyPairSpec {
            name: "imp".into(),
            public_key: Some(format!("  {line}\n")),
        })
        .await
        .unwrap();
    assert_eq!(imported.private_key, None);
    assert_eq!(imported.public_key.as_deref(), Some(line.as_str()));
    assert_eq!(
        imported.fingerprint,
        other
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    );

    for bad in ["", "ssh-ed25519 not-base64!", "hello", private] {
        let e = cloud
            .create_key_pair(&KeyPairSpec {
                name: "bad".into(),
                public_key: Some(bad.into()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.context_value("argument"), Some("public_key"));
        assert_eq!(e.operation(), Some(Operation::ImportKeyPair));
    }
    for (name, public_key) in [("gen", None), ("imp", Some(line.clone()))] {
        let e = cloud
            .create_key_pair(&KeyPairSpec {
                name: name.into(),
                public_key,
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    }
    for name in [String::new(), "k".repeat(256)] {
        let e = cloud
            .create_key_pair(&KeyPairSpec {
                name,
                public_key: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.context_value("argument"), Some("name"));
    }

    let listed = cloud.list_key_pairs().await.unwrap();
    let names: Vec<_> = listed.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["gen", "imp"]);
    assert!(listed.iter().all(|k| k.private_key.is_none()));

    // An instance may name a key pair that exists.
    let vm = cloud
        .create_instance(&InstanceSpec {
            key_name: Some("gen".into()),
            ..spec("k")
        })
        .await
        .unwrap();
    assert_eq!(vm.key_name.as_deref(), Some("gen"));

    cloud.delete_key_pair("gen").await.unwrap();
    let e = cloud.delete_key_pair("gen").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.message(), "key pair `gen` not found");
    let names: Vec<_> = cloud
        .list_key_pairs()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["imp"]);
}

#[test]
fn config_reads_milliseconds_and_refuses_unknown_keys() {
    let c: MemoryConfig =
        serde_json::from_str(r#"{"boot_delay_ms": 5, "max_page_size": 50}"#).unwrap();
    assert_eq!(c.boot_delay, Duration::from_millis(5));
    assert_eq!(c.max_page_size, 50);
    assert_eq!(c.stop_delay, MemoryConfig::default().stop_delay);
    let c: MemoryConfig = serde_json::from_str(
        r#"{"volume_create_delay_ms": 1, "volume_delete_delay_ms": 2, "attach_delay_ms": 3,
            "detach_delay_ms": 4, "snapshot_delay_ms": 5, "image_delay_ms": 6,
            "max_addresses": 5}"#,
    )
    .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(
        [
            c.volume_create_delay,
            c.volume_delete_delay,
            c.attach_delay,
            c.detach_delay
        ],
        [ms(1), ms(2), ms(3), ms(4)]
    );
    assert_eq!(
        (c.snapshot_delay, c.image_delay, c.max_addresses),
        (ms(5), ms(6), 5)
    );
    // The defaults: short, but long enough to see each transitional state.
    let d = MemoryConfig::default();
    assert!(d.volume_create_delay > Duration::ZERO && d.snapshot_delay > d.attach_delay);
    assert_eq!(d.max_addresses, 253);
    let zero = MemoryConfig::with_delays(Duration::ZERO);
    assert_eq!(
        (zero.boot_delay, zero.image_delay),
        (Duration::ZERO, Duration::ZERO)
    );
    assert_eq!(zero.terminated_retention, d.terminated_retention);
    assert!(serde_json::from_str::<MemoryConfig>(r#"{"boot_delay": 5}"#).is_err());
}

#[test]
fn debug_shows_the_config() {
    let text = format!("{:?}", MemoryCloud::new());
    assert!(
        text.starts_with("MemoryCloud { config: MemoryConfig {"),
        "{text}"
    );
}

/// Shared views: the same `Arc` while nothing changed; a new one when the instance
/// changes and when its phase completes. Each equals the copied view.
#[tokio::test]
async fn shared_views_last_while_held_and_the_instance_is_unchanged() {
    let cloud = MemoryCloud::with_config(config());
    let id = cloud.create_instance(&spec("a")).await.unwrap().id;
    let all = InstanceFilter::default();
    let first = PageRequest::default();
    let shared = |n: usize| {
        let cloud = cloud.clone();
        let (all, first) = (all.clone(), first.clone());
        async move {
            let page = cloud.list_instances_shared(&all, &first).await.unwrap();
            assert_eq!(page.items.len(), n);
            let copied = cloud.list_instances(&all, &first).await.unwrap();
            for (s, c) in page.items.iter().zip(&copied.items) {
                assert_eq!(**s, *c, "a shared view is the instance as listed");
            }
            page.items
        }
    };
    let pending = shared(1).await.remove(0);
    assert_eq!(pending.state, InstanceState::Pending);
    let again = shared(1).await.remove(0);
    assert!(
        Arc::ptr_eq(&pending, &again),
        "unchanged and held: the same view"
    );
    drop(again);

    // The phase completes: another view, with the new state.
    sleep(DELAY + 10 * MS).await;
    let running = shared(1).await.remove(0);
    assert_eq!(running.state, InstanceState::Running);
    assert!(!Arc::ptr_eq(&pending, &running));

    // A change (tags) makes a new view at once.
    let changes = TagChanges {
        set: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        remove: Vec::new(),
    };
    cloud.update_instance_tags(&id, &changes).await.unwrap();
    let tagged = shared(1).await.remove(0);
    assert!(!Arc::ptr_eq(&running, &tagged));
    assert_eq!(Arc::strong_count(&pending), 1, "a change forgets the views");
    assert_eq!(Arc::strong_count(&running), 1, "a change forgets the views");
    assert_eq!(tagged.tags.get("k").map(String::as_str), Some("v"));

    // An instance with an attached volume is viewed afresh each time.
    let vol = cloud.create_volume(&VolumeSpec::new(1)).await.unwrap().id;
    sleep(DELAY + 10 * MS).await;
    cloud
        .attach_volume(&vol, &id, Some("/dev/sdf"))
        .await
        .unwrap();
    let a = shared(1).await.remove(0);
    let b = shared(1).await.remove(0);
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(a, b);
}

/// Only the instances viewed last keep a shared view: listing more instances than
/// that leaves no more views behind.
#[tokio::test]
async fn shared_views_are_kept_for_the_instances_viewed_last_only() {
    let cloud = MemoryCloud::with_config(instant_config());
    let n = super::state::VIEWS_KEPT + 10;
    for k in 0..n {
        cloud
            .create_instance(&spec(&format!("v{k}")))
            .await
            .unwrap();
    }
    let all = InstanceFilter::default();
    let mut page = PageRequest::first(1000);
    let mut first: Option<std::sync::Weak<Instance>> = None;
    let mut seen = 0;
    let last = loop {
        let got = cloud.list_instances_shared(&all, &page).await.unwrap();
        seen += got.items.len();
        first.get_or_insert_with(|| Arc::downgrade(&got.items[0]));
        match got.next {
            Some(t) => page = PageRequest::after(Some(1000), t),
            None => break got.items.last().cloned(),
        }
    };
    assert_eq!(seen, n);
    // Any call after the listing lets go of the oldest views.
    cloud
        .get_instance(&last.as_ref().unwrap().id)
        .await
        .unwrap();
    assert!(
        first.unwrap().upgrade().is_none(),
        "the first instance's view went when {} more were viewed",
        super::state::VIEWS_KEPT
    );
    let last = last.unwrap();
    assert_eq!(Arc::strong_count(&last), 2, "the last one's view is kept");
}
