//! The wire mapping: OpenNebula's error codes and transport failures to error kinds,
//! the life cycle as OpenNebula's states, paging over changing pools, and what a
//! create writes into a VM — all over real sockets against the fake oned.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use cms_core::{
    Driver, ErrorKind, Image, ImageId, ImageKind, InstanceFilter, InstanceId, InstanceSpec,
    InstanceState, KeyPairSpec, NetworkId, NetworkSpec, Operation, PageRequest, PageToken,
    TagChanges,
};
use cms_driver_opennebula::client::RpcError;
use cms_driver_opennebula::driver::{ATTR_CLIENT_TOKEN, ATTR_REQUEST_HASH};
use cms_driver_opennebula::fake::{FakeConfig, FakeDelays, FakeOned, Fault, FaultKind};
use cms_driver_opennebula::model::Vm;
use cms_driver_opennebula::xmlrpc::{encode_response, Value};
use cms_driver_opennebula::{driver::ATTR_TAGS, OpenNebulaDriver};

use common::*;

fn id(n: i64) -> InstanceId {
    InstanceId::new(n.to_string())
}

async fn get_error(oned: &FakeOned, driver: &OpenNebulaDriver, kind: FaultKind) -> cms_core::Error {
    oned.inject(Fault::new("one.vm.info", 1, kind));
    driver.get_instance(&id(7)).await.unwrap_err()
}

#[tokio::test]
async fn each_opennebula_error_code_has_its_kind() {
    let (oned, driver) = start(quick_config());
    let cases = [
        (0x100, "User couldn't be authenticated, aborting call.", ErrorKind::Unauthenticated, false),
        (0x200, "User [2] not authorized to perform action on virtual machine.", ErrorKind::PermissionDenied, false),
        (0x200, "User [2] : user [2] limit of 4 reached for VMS quota in VM.", ErrorKind::QuotaExceeded, false),
        (0x400, "Error getting virtual machine [7].", ErrorKind::NotFound, false),
        (0x800, "Error performing action \"poweroff\": This action is not available for state POWEROFF", ErrorKind::InvalidState, false),
        (0x1000, "Incorrect state filter 99", ErrorKind::InvalidArgument, false),
        (0x2000, "Internal error", ErrorKind::Backend, false),
        (0x2000, "Cannot process request, no leader found", ErrorKind::Unavailable, true),
        (0x4000, "Error allocating a new virtual machine. Cannot get IP/MAC lease from virtual network 3.", ErrorKind::QuotaExceeded, false),
        (0x4000, "Error allocating a new virtual machine. Something broke.", ErrorKind::Backend, false),
        (0x8000, "The resource virtual machine is locked. [7].", ErrorKind::InvalidState, true),
        (0x10000, "Error replicating log entry 12.", ErrorKind::Unavailable, true),
    ];
    for (code, message, kind, temporary) in cases {
        let e = get_error(
            &oned,
            &driver,
            FaultKind::OpenNebula {
                code,
                message: message.into(),
            },
        )
        .await;
        let what = format!("code {code:#x} {message:?}: {e:?}");
        assert_eq!(e.kind(), kind, "{what}");
        assert_eq!(e.is_temporary(), temporary, "{what}");
        assert_eq!(e.is_not_executed(), code == 0x8000, "{what}");
        assert_eq!(e.operation(), Some(Operation::GetInstance), "{what}");
        assert_eq!(
            e.context_value("opennebula_error"),
            Some(format!("{code:#x}").as_str()),
            "{what}"
        );
        assert_eq!(e.context_value("method"), Some("one.vm.info"), "{what}");
        assert!(
            e.message()
                .ends_with(&format!("(OpenNebula error {code:#x})"))
                || e.message()
                    .contains(&format!("(OpenNebula error {code:#x});")),
            "{what}"
        );
        assert!(!e.message().contains("[one.vm.info]"), "{what}");
    }
}

#[tokio::test]
async fn a_missing_vm_reads_as_the_conventions_say() {
    let (_oned, driver) = start(quick_config());
    let cloud = cloud(driver);
    let e = cloud.get_instance(&id(42)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "get instance on provider `one`: VM `42` not found (OpenNebula error 0x400)"
    );
    assert_eq!(e.resource(), Some("instance 42"));
    // Ids that cannot be OpenNebula ids are not found without asking.
    for bad in ["i-0cafe", "-1", "1.5", "99999999999"] {
        let e = cloud.get_instance(&InstanceId::new(bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{bad}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_unauthenticated_and_never_shown() {
    let oned = FakeOned::start(quick_config());
    let secret = "Wr0ng-Pa55w0rd-xyz";
    let driver =
        OpenNebulaDriver::with_session(config_for(&oned), oned.username(), secret).unwrap();
    let e = driver.list_locations().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert!(e.message().contains("user `cms`"), "{e}");
    for text in [e.to_string(), format!("{e:?}"), format!("{driver:?}")] {
        assert!(!text.contains(secret), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn another_users_vm_is_permission_denied() {
    let (_oned, driver) = start(quick_config());
    let e = driver.get_instance(&id(0)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = driver.stop_instance(&id(0)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // …and it is not listed.
    let all = cloud(driver)
        .collect_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert!(all.iter().all(|i| i.id != id(0)));
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_not_executed() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let oned = FakeOned::start(quick_config());
    let mut config = config_for(&oned);
    config.endpoint = format!("http://127.0.0.1:{port}/RPC2");
    let driver = driver_with(&oned, config);
    let e = driver.get_instance(&id(1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(e.is_temporary());
    assert!(e.is_not_executed(), "a refused connection sent nothing");
    assert_eq!(e.context_value("transport"), Some("connect"));
    assert!(e.message().contains("one.vm.info"), "{e}");
}

#[tokio::test]
async fn http_failures_are_unavailable() {
    let (oned, driver) = start(quick_config());
    let e = get_error(&oned, &driver, FaultKind::Http(503)).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_temporary());
    assert!(!e.is_not_executed());
    assert_eq!(e.context_value("http_status"), Some("503"));
    assert!(
        e.message().contains("one.vm.info answered HTTP status 503"),
        "{e}"
    );

    // A wrong path: oned is not there, and waiting will not help.
    let mut config = config_for(&oned);
    config.endpoint = config.endpoint.replace("/RPC2", "/RPC3");
    let e = driver_with(&oned, config)
        .get_instance(&id(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(!e.is_temporary());
    assert_eq!(e.context_value("http_status"), Some("404"));

    // A connection closed before the answer: the call may have happened.
    let e = get_error(&oned, &driver, FaultKind::Close).await;
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(e.is_temporary());
    assert!(!e.is_not_executed());
}

#[tokio::test]
async fn a_call_that_takes_too_long_is_unavailable() {
    let oned = FakeOned::start(quick_config());
    let mut config = config_for(&oned);
    config.timeout_secs = 1;
    let driver = driver_with(&oned, config);
    oned.inject(Fault::new(
        "one.vm.info",
        1,
        FaultKind::Delay(Duration::from_secs(3)),
    ));
    let e = driver.get_instance(&id(1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert_eq!(e.context_value("transport"), Some("timeout"));
}

#[tokio::test]
async fn garbage_answers_are_errors_naming_the_method() {
    let (oned, driver) = start(quick_config());
    let garbage = [
        "<html><body>Welcome to nginx</body></html>".to_owned(),
        "%%% not xml at all".to_owned(),
        String::new(),
        encode_response(&Value::Int(5)),
        encode_response(&Value::Array(vec![Value::from("yes")])),
        encode_response(&Value::Array(vec![
            Value::Bool(true),
            Value::from("<VM><ID>x</ID></VM>"),
            Value::Int(0),
        ])),
        encode_response(&Value::Array(vec![
            Value::Bool(true),
            Value::from("<VM><ID>1</ID"),
            Value::Int(0),
        ])),
        encode_response(&Value::Array(vec![
            Value::Bool(true),
            Value::Int(3),
            Value::Int(0),
        ])),
    ];
    for body in garbage {
        let e = get_error(&oned, &driver, FaultKind::Garbage(body.clone())).await;
        assert_eq!(e.kind(), ErrorKind::Backend, "{body:?}: {e:?}");
        assert!(!e.is_temporary());
        assert!(e.message().contains("one.vm.info"), "{body:?}: {e}");
        assert_eq!(e.context_value("method"), Some("one.vm.info"));
    }
    let e = get_error(
        &oned,
        &driver,
        FaultKind::XmlRpcFault {
            code: -501,
            message: "Type mismatch".into(),
        },
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert_eq!(e.context_value("xmlrpc_fault"), Some("-501"));
    assert!(
        e.message()
            .contains("one.vm.info answered XML-RPC fault -501"),
        "{e}"
    );
}

#[tokio::test]
async fn an_answer_that_echoes_the_session_is_redacted() {
    let (oned, driver) = start(quick_config());
    let e = get_error(&oned, &driver, FaultKind::EchoRequest { code: 0x1000 }).await;
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let session = format!("{}:{}", oned.username(), oned.password());
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(text.contains("methodCall"), "the echo is there: {text}");
        assert!(text.contains("***"), "{text}");
        assert!(!text.contains(&session), "the session leaked: {text}");
        assert!(
            !text.contains(oned.password()),
            "the password leaked: {text}"
        );
    }
}

#[tokio::test]
async fn quotas_and_exhausted_networks_are_quota_exceeded() {
    let (_oned, driver) = start(FakeConfig {
        vm_quota: Some(1),
        ..quick_config()
    });
    driver
        .create_instance(&InstanceSpec::new("image:0", "small"))
        .await
        .unwrap();
    let e = driver
        .create_instance(&InstanceSpec::new("image:0", "small"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
    assert!(e.message().contains("limit of 1"), "{e}");

    let (_oned, driver) = start(quick_config());
    let net = driver
        .create_network(&NetworkSpec {
            name: "tiny".into(),
            cidr: "10.8.0.0/30".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let on = |name: &str| InstanceSpec {
        network_ids: vec![net.id.clone()],
        ..InstanceSpec::new("image:0", "small").name(name)
    };
    let first = driver.create_instance(&on("first")).await.unwrap();
    assert_eq!(first.private_ips, ["10.8.0.2"]);
    let e = driver.create_instance(&on("second")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
    // The network is in use: it cannot go.
    let e = driver.delete_network(&net.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
}

#[tokio::test]
async fn network_errors() {
    let (_oned, driver) = start(quick_config());
    let spec = NetworkSpec {
        name: "dup".into(),
        cidr: "10.20.0.0/24".into(),
        ..Default::default()
    };
    driver.create_network(&spec).await.unwrap();
    let e = driver.create_network(&spec).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let e = driver
        .delete_network(&NetworkId::new("0"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = driver
        .create_network(&NetworkSpec {
            location_id: Some("999".into()),
            ..NetworkSpec {
                name: "x".into(),
                cidr: "10.21.0.0/24".into(),
                ..Default::default()
            }
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = driver
        .create_network(&NetworkSpec {
            name: "a:b".into(),
            cidr: "10.22.0.0/24".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.context_value("argument"), Some("name"));
}

/// The raw states an instance goes through until `until`, each once, in order.
async fn states_until(
    driver: &OpenNebulaDriver,
    id: &InstanceId,
    until: &str,
    seen: &mut Vec<(String, InstanceState)>,
) {
    for _ in 0..2000 {
        let i = driver.get_instance(id).await.unwrap();
        if seen.last().map(|(r, _)| r.as_str()) != Some(i.raw_state.as_str()) {
            seen.push((i.raw_state.clone(), i.state));
        }
        if i.raw_state == until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    panic!("never reached {until}: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_life_cycle_goes_through_opennebulas_states() {
    use InstanceState::*;
    let (_oned, driver) = start(FakeConfig {
        delays: FakeDelays::uniform(Duration::from_millis(250)),
        ..FakeConfig::default()
    });
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small").name("cycle"))
        .await
        .unwrap();
    let mut seen = vec![(vm.raw_state.clone(), vm.state)];
    states_until(&driver, &vm.id, "ACTIVE/RUNNING", &mut seen).await;
    let stop = driver.stop_instance(&vm.id).await.unwrap();
    seen.push((stop.raw_state.clone(), stop.state));
    states_until(&driver, &vm.id, "POWEROFF", &mut seen).await;
    let start = driver.start_instance(&vm.id).await.unwrap();
    seen.push((start.raw_state.clone(), start.state));
    states_until(&driver, &vm.id, "ACTIVE/RUNNING", &mut seen).await;
    let reboot = driver.reboot_instance(&vm.id).await.unwrap();
    assert_eq!(
        (reboot.raw_state.as_str(), reboot.state),
        ("ACTIVE/RUNNING", Running)
    );
    let delete = driver.delete_instance(&vm.id).await.unwrap();
    seen.push((delete.raw_state.clone(), delete.state));
    states_until(&driver, &vm.id, "DONE", &mut seen).await;
    seen.dedup();
    let want = [
        ("PENDING", Pending),
        ("ACTIVE/PROLOG", Pending),
        ("ACTIVE/BOOT", Pending),
        ("ACTIVE/RUNNING", Running),
        ("ACTIVE/SHUTDOWN_POWEROFF", Stopping),
        ("POWEROFF", Stopped),
        ("ACTIVE/BOOT_POWEROFF", Pending),
        ("ACTIVE/RUNNING", Running),
        ("ACTIVE/SHUTDOWN", Terminating),
        ("ACTIVE/EPILOG", Terminating),
        ("DONE", Terminated),
    ];
    let got: Vec<(&str, InstanceState)> = seen.iter().map(|(r, s)| (r.as_str(), *s)).collect();
    assert_eq!(got, want);
    // A terminated VM keeps answering, and deleting it again answers it.
    let again = driver.delete_instance(&vm.id).await.unwrap();
    assert_eq!(again.state, Terminated);
}

#[tokio::test]
async fn actions_follow_the_trait_in_every_opennebula_state() {
    use InstanceState::*;
    let (oned, driver) = start(quick_config());
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small"))
        .await
        .unwrap();
    let vid: i64 = vm.id.as_str().parse().unwrap();
    wait(&driver, &vm.id, Running).await;

    let e = driver.start_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(!e.is_temporary());
    assert_eq!(e.context_value("opennebula_state"), Some("ACTIVE/RUNNING"));

    // Busy with a hot-plug: running, but OpenNebula refuses for now.
    oned.set_vm_state(vid, 3, 17);
    let e = driver.reboot_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.is_temporary(), "{e}");

    // Booting: delete must wait, and says so.
    oned.set_vm_state(vid, 3, 2);
    let e = driver.delete_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert!(e.is_temporary(), "{e}");
    assert!(
        driver.start_instance(&vm.id).await.is_ok(),
        "start while booting answers it"
    );

    // A soft power-off under way: stop again answers it.
    oned.set_vm_state(vid, 3, 18);
    assert_eq!(driver.stop_instance(&vm.id).await.unwrap().state, Stopping);

    // Held: start releases it.
    oned.set_vm_state(vid, 2, 0);
    assert_eq!(driver.start_instance(&vm.id).await.unwrap().state, Pending);
    wait(&driver, &vm.id, Running).await;

    // Suspended: start resumes it.
    oned.set_vm_state(vid, 5, 0);
    let i = driver.get_instance(&vm.id).await.unwrap();
    assert_eq!((i.state, i.raw_state.as_str()), (Suspended, "SUSPENDED"));
    let e = driver.stop_instance(&vm.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState);
    assert_eq!(driver.start_instance(&vm.id).await.unwrap().state, Pending);
    wait(&driver, &vm.id, Running).await;

    // Unknown to the hypervisor: stop is still possible.
    oned.set_vm_state(vid, 3, 16);
    assert_eq!(driver.get_instance(&vm.id).await.unwrap().state, Unknown);
    assert_eq!(driver.stop_instance(&vm.id).await.unwrap().state, Stopping);
    wait(&driver, &vm.id, Stopped).await;

    // A soft shutdown under way: delete sends terminate-hard and the VM goes.
    oned.set_vm_state(vid, 3, 12);
    assert_eq!(
        driver.delete_instance(&vm.id).await.unwrap().state,
        Terminating
    );
    wait(&driver, &vm.id, Terminated).await;

    // A failed boot is an error, and can be deleted.
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small"))
        .await
        .unwrap();
    let vid: i64 = vm.id.as_str().parse().unwrap();
    oned.set_vm_state(vid, 3, 36);
    let i = driver.get_instance(&vm.id).await.unwrap();
    assert_eq!(
        (i.state, i.raw_state.as_str()),
        (Error, "ACTIVE/BOOT_FAILURE")
    );
    assert!(driver
        .delete_instance(&vm.id)
        .await
        .unwrap()
        .state
        .is_gone());
    wait(&driver, &vm.id, Terminated).await;

    // Pending VMs are terminated at once.
    let pending = driver
        .create_instance(&InstanceSpec {
            location_id: Some("100".into()),
            ..InstanceSpec::new("image:0", "small")
        })
        .await
        .unwrap();
    assert_eq!(pending.state, Pending);
    assert_eq!(
        driver.delete_instance(&pending.id).await.unwrap().state,
        Terminated
    );
}

async fn all_pages(
    driver: &OpenNebulaDriver,
    filter: &InstanceFilter,
    limit: u32,
    mut between: impl FnMut(usize, &[InstanceId]),
) -> Vec<InstanceId> {
    let mut seen = Vec::new();
    let mut page = PageRequest::first(limit);
    for n in 0.. {
        let p = driver.list_instances(filter, &page).await.unwrap();
        assert!(p.items.len() <= limit as usize);
        seen.extend(p.items.iter().map(|i| i.id.clone()));
        between(n, &seen);
        match p.next {
            Some(t) => page = PageRequest::after(Some(limit), t),
            None => break,
        }
    }
    seen
}

#[tokio::test]
async fn a_large_pool_is_read_in_pages() {
    let (oned, driver) = start(quick_config());
    let made = oned.add_running_vms(1500);
    let cloud = cloud(driver);
    let all = cloud
        .collect_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), made.len());
    let distinct: BTreeSet<_> = all.iter().map(|i| i.id.clone()).collect();
    assert_eq!(distinct.len(), made.len());
    // Listed from the extended pool, whose VMs carry their USER_TEMPLATE (the short
    // form of one.vmpool.info has not the driver's attributes).
    assert!(oned.calls("one.vmpool.infoextended") >= 3);
    assert_eq!(oned.calls("one.vmpool.info"), 0);
    let largest = oned.largest_page("one.vmpool.infoextended");
    assert!(
        (1..=501).contains(&largest),
        "asked for {largest} VMs at once"
    );
}

#[tokio::test]
async fn paging_loses_nothing_when_listed_vms_end() {
    let (oned, driver) = start(quick_config());
    let made = oned.add_running_vms(60);
    let listed = all_pages(&driver, &InstanceFilter::default(), 20, |n, seen| {
        if n == 0 {
            // Fifteen VMs of the first page reach DONE: offsets shift back by 15.
            for i in &seen[..15] {
                oned.finish_vm(i.as_str().parse().unwrap());
            }
        }
    })
    .await;
    let want: Vec<InstanceId> = made.iter().map(|i| id(*i)).collect();
    assert_eq!(listed, want, "every VM once, in order");
}

#[tokio::test]
async fn paging_descending_pools_repeats_nothing_while_vms_are_created() {
    let (oned, driver) = start(FakeConfig {
        list_order_desc: true,
        ..quick_config()
    });
    let made = oned.add_running_vms(30);
    let listed = all_pages(&driver, &InstanceFilter::default(), 10, |n, _| {
        if n == 0 {
            oned.add_running_vms(25);
        }
    })
    .await;
    let want: Vec<InstanceId> = made.iter().rev().map(|i| id(*i)).collect();
    assert_eq!(listed, want);
}

#[tokio::test]
async fn filters_push_down_what_opennebula_can_filter() {
    use InstanceState::*;
    let (oned, driver) = start(quick_config());
    let ids = oned.add_running_vms(6);
    oned.finish_vm(ids[0]);
    oned.set_vm_state(ids[1], 8, 0);
    let cloud = cloud(driver.clone());
    let listed = |states: Vec<InstanceState>| {
        let cloud = cloud.clone();
        async move {
            cloud
                .collect_instances(&InstanceFilter {
                    states,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(vec![Terminated]).await, vec![id(ids[0])]);
    assert_eq!(listed(vec![Stopped]).await, vec![id(ids[1])]);
    assert_eq!(listed(vec![Running]).await.len(), 4);
    assert_eq!(listed(vec![Stopped, Terminated]).await.len(), 2);
    assert_eq!(listed(vec![]).await.len(), 5, "DONE VMs are left out");

    // By ids, a page at a time; unknown ids, and another user's VM 0, are simply not
    // there (as in the pool listing).
    let filter = InstanceFilter {
        ids: vec![
            id(ids[5]),
            id(ids[2]),
            id(ids[3]),
            id(0),
            InstanceId::new("nonsense"),
            id(424_242),
        ],
        ..Default::default()
    };
    let got = all_pages(&driver, &filter, 2, |_, _| {}).await;
    assert_eq!(got, vec![id(ids[2]), id(ids[3]), id(ids[5])]);
}

#[tokio::test]
async fn page_tokens_of_other_listings_are_refused() {
    let (_oned, driver) = start(quick_config());
    let bad = |t: &str| PageRequest::after(Some(5), PageToken::new(t));
    for t in ["vm.x", "image.a0.", "ids.1", "vnet.a1", "", "template.b1.2"] {
        let e = driver
            .list_instances(&InstanceFilter::default(), &bad(t))
            .await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument, "{t:?}");
    }
    for t in ["vm.a0.", "image.zz", "size.99"] {
        assert_eq!(
            driver
                .list_images(&cms_core::ImageFilter::default(), &bad(t))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument,
            "{t}"
        );
        assert_eq!(
            driver.list_networks(&bad(t)).await.unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{t}"
        );
    }
    assert_eq!(
        driver
            .list_flavors(&bad("size.99"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn images_are_os_disk_images_and_vm_templates() {
    let (_oned, driver) = start(quick_config());
    let cloud = cloud(driver.clone());
    let images = cloud.collect_images().await.unwrap();
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "image:0",
            "image:1",
            "image:3",
            "template:0",
            "template:1",
            "template:2"
        ]
    );
    let find = |id: &str| -> &Image { images.iter().find(|i| i.id.as_str() == id).unwrap() };
    assert_eq!(find("image:1").kind, ImageKind::Disk);
    assert_eq!(
        find("image:1").description.as_deref(),
        Some("Debian 12 <bookworm> & friends")
    );
    assert_eq!(find("image:1").min_disk_gib, Some(2));
    assert_eq!(find("image:1").raw_state, "READY");
    assert_eq!(find("template:0").kind, ImageKind::Template);
    assert_eq!(find("template:0").architecture.as_deref(), Some("x86_64"));

    // Small pages cross from images to templates without losing or repeating one.
    let mut paged = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = driver
            .list_images(&cms_core::ImageFilter::default(), &page)
            .await
            .unwrap();
        assert!(p.items.len() <= 2);
        paged.extend(p.items.into_iter().map(|i| i.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(2), t),
            None => break,
        }
    }
    assert_eq!(paged.iter().map(ImageId::as_str).collect::<Vec<_>>(), ids);

    assert_eq!(
        driver.get_image(&"template:1".into()).await.unwrap().name,
        "debian-large"
    );
    for missing in ["image:2", "image:77", "template:77", "ami-1"] {
        let e = driver.get_image(&missing.into()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{missing}: {e}");
    }
}

#[tokio::test]
async fn flavors_are_sizes_and_template_capacities() {
    let (_oned, driver) = start(quick_config());
    let flavors = cloud(driver).collect_flavors().await.unwrap();
    let got: Vec<(&str, u32, u64)> = flavors
        .iter()
        .map(|f| (f.id.as_str(), f.vcpus, f.memory_mib))
        .collect();
    assert_eq!(
        got,
        [
            ("small", 1, 1024),
            ("large", 4, 8192),
            ("template:0", 1, 1024),
            ("template:1", 4, 8192)
        ]
    );
}

#[tokio::test]
async fn locations_are_clusters_and_networks_virtual_networks() {
    let oned = FakeOned::start(quick_config());
    let mut config = config_for(&oned);
    config.default_network = Some(0);
    let driver = driver_with(&oned, config);
    let locations = driver.list_locations().await.unwrap();
    let got: Vec<(&str, &str, bool)> = locations
        .iter()
        .map(|l| (l.id.as_str(), l.name.as_str(), l.available))
        .collect();
    assert_eq!(got, [("0", "default", true), ("100", "edge", false)]);

    let networks = cloud(driver.clone()).collect_networks().await.unwrap();
    let got: Vec<(&str, Option<&str>, bool)> = networks
        .iter()
        .map(|n| (n.id.as_str(), n.cidr.as_deref(), n.is_default))
        .collect();
    assert_eq!(
        got,
        [
            ("0", Some("10.0.0.0/24"), true),
            ("1", Some("192.168.100.0/25"), false)
        ]
    );
    assert_eq!(networks[0].raw_state, "READY");
    assert_eq!(
        networks[0].location_id.as_ref().map(|l| l.as_str()),
        Some("0")
    );

    // No network named: the default one.
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small"))
        .await
        .unwrap();
    assert_eq!(vm.network_ids, [NetworkId::new("0")]);
    assert_eq!(vm.private_ips, ["10.0.0.2"]);
}

/// The full VM document, as oned has it.
async fn vm_doc(driver: &OpenNebulaDriver, id: &InstanceId) -> Vm {
    let v = driver
        .client()
        .call("one.vm.info", &[Value::Int(id.as_str().parse().unwrap())])
        .await
        .unwrap();
    Vm::from_xml(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_create_writes_what_it_was_asked() {
    let (_oned, driver) = start(quick_config());
    let key = driver
        .create_key_pair(&KeyPairSpec {
            name: "ops".into(),
            public_key: Some(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjeiXREAM6bENP+0LXDY4pfk44C2N30tUNZZ0j1VIZj whatever"
                    .into(),
            ),
        })
        .await
        .unwrap();
    assert!(key.private_key.is_none());
    let user_data = "#cloud-config\npackages: [nginx]\n# <&> ]]>\n";
    let spec = InstanceSpec {
        name: "web-1".into(),
        image_id: "image:1".into(),
        flavor_id: "large".into(),
        network_ids: vec!["1".into(), "0".into()],
        location_id: Some("0".into()),
        key_name: Some("ops".into()),
        user_data: Some(user_data.into()),
        tags: [
            ("env".to_owned(), "prod".to_owned()),
            ("Team Name".to_owned(), "a<b>&\"c\"".to_owned()),
        ]
        .into(),
        client_token: Some("tok-1".into()),
        owner: Some("team-a".into()),
        ..Default::default()
    };
    let vm = driver.create_instance(&spec).await.unwrap();
    assert_eq!(vm.name, "web-1");
    assert_eq!(vm.owner.as_deref(), Some("team-a"));
    assert_eq!(vm.tags, spec.tags);
    assert_eq!(vm.key_name.as_deref(), Some("ops"));
    assert_eq!(vm.client_token.as_deref(), Some("tok-1"));
    assert_eq!(vm.network_ids, [NetworkId::new("1"), NetworkId::new("0")]);
    assert_eq!(vm.private_ips, ["192.168.100.10", "10.0.0.2"]);

    let doc = vm_doc(&driver, &vm.id).await;
    assert_eq!(doc.template.get("CPU"), Some("2"));
    assert_eq!(doc.template.get("VCPU"), Some("4"));
    assert_eq!(doc.template.get("MEMORY"), Some("8192"));
    let disks: Vec<_> = doc.disks().filter_map(|d| d.get("IMAGE_ID")).collect();
    assert_eq!(disks, ["1"]);
    let ctx = doc.template.vector("CONTEXT").unwrap();
    assert_eq!(ctx.get("NETWORK"), Some("YES"));
    assert_eq!(ctx.get("SSH_PUBLIC_KEY"), key.public_key.as_deref());
    assert_eq!(ctx.get("USERDATA_ENCODING"), Some("base64"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(ctx.get("USER_DATA").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), user_data);
    let tags: serde_json::Value =
        serde_json::from_str(doc.user_template.get(ATTR_TAGS).unwrap()).unwrap();
    assert_eq!(tags["Team Name"], "a<b>&\"c\"");
    assert_eq!(doc.user_template.get("CMS_OWNER"), Some("team-a"));
    assert_eq!(
        doc.user_template.get("SCHED_REQUIREMENTS"),
        Some("CLUSTER_ID = 0")
    );

    // A second driver (nothing remembered) finds the VM by its token…
    let other = driver_with(&_oned, config_for(&_oned));
    assert_eq!(other.create_instance(&spec).await.unwrap().id, vm.id);
    // …and refuses the token for another request.
    let e = other
        .create_instance(&InstanceSpec {
            name: "web-2".into(),
            ..spec.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        e.context_value("reason"),
        Some("idempotent_parameter_mismatch")
    );
}

#[tokio::test]
async fn a_tag_update_merges_cms_tags_into_the_user_template() {
    let (oned, driver) = start(quick_config());
    let spec = InstanceSpec::new("image:0", "small")
        .name("tagged")
        .tag("env", "test")
        .tag("Team Name", "a")
        .client_token("tag-token");
    let vm = driver.create_instance(&spec).await.unwrap();
    let before = vm_doc(&driver, &vm.id).await;
    let changes = TagChanges::new()
        .set_tag("env", "prod")
        .set_tag("odd", "<a&b> ]]> \"q\"")
        .remove_tag("Team Name");
    let after = driver.update_instance_tags(&vm.id, &changes).await.unwrap();
    let want = changes.apply(&spec.tags).unwrap();
    assert_eq!(after.tags, want);
    assert_eq!(oned.calls("one.vm.update"), 1);

    // One attribute rewritten; the rest of the user template as it was.
    let doc = vm_doc(&driver, &vm.id).await;
    let tags: cms_core::Tags =
        serde_json::from_str(doc.user_template.get(ATTR_TAGS).unwrap()).unwrap();
    assert_eq!(tags, want);
    for attr in [
        ATTR_CLIENT_TOKEN,
        ATTR_REQUEST_HASH,
        "CMS_IMAGE",
        "CMS_FLAVOR",
    ] {
        assert_eq!(
            doc.user_template.get(attr),
            before.user_template.get(attr),
            "{attr}"
        );
    }
    assert_eq!(doc.template.get("MEMORY"), before.template.get("MEMORY"));
    // The token still finds the VM.
    assert_eq!(driver.create_instance(&spec).await.unwrap().id, vm.id);

    // Nothing to change, nothing written; refused changes write nothing either.
    driver.update_instance_tags(&vm.id, &changes).await.unwrap();
    let both = TagChanges::new().set_tag("env", "x").remove_tag("env");
    let e = driver
        .update_instance_tags(&vm.id, &both)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.operation(), Some(Operation::UpdateInstanceTags));
    assert_eq!(oned.calls("one.vm.update"), 1);

    // Every tag removed: an empty object, which reads back as no tags.
    let none = TagChanges::new().remove_tag("env").remove_tag("odd");
    assert!(driver
        .update_instance_tags(&vm.id, &none)
        .await
        .unwrap()
        .tags
        .is_empty());
    let doc = vm_doc(&driver, &vm.id).await;
    assert_eq!(doc.user_template.get(ATTR_TAGS), Some("{}"));

    // OpenNebula takes updates in any state, DONE included.
    wait(&driver, &vm.id, InstanceState::Running).await;
    driver.delete_instance(&vm.id).await.unwrap();
    wait(&driver, &vm.id, InstanceState::Terminated).await;
    let t = TagChanges::new().set_tag("why", "audit");
    let done = driver.update_instance_tags(&vm.id, &t).await.unwrap();
    assert_eq!(done.tags.get("why").map(String::as_str), Some("audit"));

    // Unknown VMs and another user's.
    let e = driver.update_instance_tags(&id(42), &t).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        e.to_string(),
        "update instance tags: VM `42` not found (OpenNebula error 0x400)"
    );
    let e = driver.update_instance_tags(&id(0), &t).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}

#[tokio::test]
async fn the_fake_updates_user_templates_as_oned_does() {
    let (_oned, driver) = start(quick_config());
    let vm = driver
        .create_instance(&InstanceSpec::new("image:0", "small").name("raw"))
        .await
        .unwrap();
    let vid: i64 = vm.id.as_str().parse().unwrap();
    let update = |text: &str, kind: i64| {
        let args = [Value::Int(vid), Value::Str(text.into()), Value::Int(kind)];
        let client = driver.client().clone();
        async move { client.call("one.vm.update", &args).await }
    };
    let code = |r: Result<Value, RpcError>| match r {
        Err(RpcError::OpenNebula { code, .. }) => code,
        other => panic!("expected an OpenNebula error, got {other:?}"),
    };
    // Merge (1) replaces the attributes it names and keeps the others.
    let answer = update("<TEMPLATE><A>1</A><B>2</B></TEMPLATE>", 1).await;
    assert_eq!(answer.unwrap(), Value::Int(vid));
    update("<TEMPLATE><A>3</A></TEMPLATE>", 1).await.unwrap();
    let doc = vm_doc(&driver, &vm.id).await;
    assert_eq!(
        (doc.user_template.get("A"), doc.user_template.get("B")),
        (Some("3"), Some("2"))
    );
    assert!(doc.user_template.get("CMS_IMAGE").is_some());
    // Replace (0) keeps only what it is given.
    update("<TEMPLATE><C>4</C></TEMPLATE>", 0).await.unwrap();
    let doc = vm_doc(&driver, &vm.id).await;
    assert_eq!(doc.user_template.get("C"), Some("4"));
    assert_eq!(doc.user_template.get("A"), None);
    assert_eq!(doc.user_template.get("CMS_IMAGE"), None);
    // oned's refusals.
    assert_eq!(
        code(update("<TEMPLATE><A>1</A></TEMPLATE>", 2).await),
        0x1000
    );
    assert_eq!(code(update("<TEMPLATE><A>1</TEMPLATE>", 1).await), 0x800);
    assert_eq!(
        code(update("<TEMPLATE><CPU_COST>9</CPU_COST></TEMPLATE>", 1).await),
        0x2000
    );
    let args = [
        Value::Int(4242),
        Value::Str("<TEMPLATE/>".into()),
        Value::Int(1),
    ];
    assert_eq!(
        code(driver.client().call("one.vm.update", &args).await),
        0x400
    );
}

#[tokio::test]
async fn a_create_from_a_template_keeps_its_context() {
    let (_oned, driver) = start(quick_config());
    driver
        .create_key_pair(&KeyPairSpec {
            name: "k".into(),
            public_key: None,
        })
        .await
        .unwrap();
    let vm = driver
        .create_instance(&InstanceSpec {
            key_name: Some("k".into()),
            user_data: Some("echo hi".into()),
            ..InstanceSpec::new("template:0", "template:0").name("from-template")
        })
        .await
        .unwrap();
    assert_eq!(vm.image_id, Some("template:0".into()));
    // The template's NIC, capacity and context stay; key and user data are added.
    assert_eq!(vm.network_ids, [NetworkId::new("0")]);
    let doc = vm_doc(&driver, &vm.id).await;
    assert_eq!(doc.template.get("TEMPLATE_ID"), Some("0"));
    assert_eq!(doc.template.get("CPU"), Some("0.5"));
    let ctx = doc.template.vector("CONTEXT").unwrap();
    assert_eq!(ctx.get("SET_HOSTNAME"), Some("from-template"));
    assert!(ctx.get("SSH_PUBLIC_KEY").unwrap().ends_with(" k"));
    assert!(ctx.get("USER_DATA").is_some());
}

#[tokio::test]
async fn a_create_names_what_is_missing() {
    let (_oned, driver) = start(quick_config());
    let base = InstanceSpec::new("image:0", "small");
    let cases = [
        (
            InstanceSpec::new("image:2", "small"),
            ErrorKind::NotFound,
            "image",
        ),
        (
            InstanceSpec::new("image:0", "huge"),
            ErrorKind::NotFound,
            "flavor",
        ),
        (
            InstanceSpec::new("image:0", "template:2"),
            ErrorKind::InvalidArgument,
            "flavor_id",
        ),
        (
            InstanceSpec::new("image:0", "template:77"),
            ErrorKind::NotFound,
            "flavor",
        ),
        (
            InstanceSpec {
                network_ids: vec!["77".into()],
                ..base.clone()
            },
            ErrorKind::NotFound,
            "network",
        ),
        (
            InstanceSpec {
                location_id: Some("999".into()),
                ..base.clone()
            },
            ErrorKind::NotFound,
            "location",
        ),
        (
            InstanceSpec {
                key_name: Some("nope".into()),
                ..base.clone()
            },
            ErrorKind::NotFound,
            "key pair",
        ),
        (base.clone().name("a/b"), ErrorKind::InvalidArgument, "name"),
    ];
    for (spec, kind, what) in cases {
        let e = driver.create_instance(&spec).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{spec:?}: {e}");
        assert!(e.message().contains(what), "{what}: {e}");
        assert_eq!(e.operation(), Some(Operation::CreateInstance));
    }
}

#[tokio::test]
async fn the_short_pool_form_is_what_oned_writes_so_listings_read_the_extended_one() {
    let (_oned, driver) = start(quick_config());
    let vm = driver
        .create_instance(&InstanceSpec {
            network_ids: vec![NetworkId::new("0")],
            owner: Some("team-a".into()),
            ..InstanceSpec::new("image:0", "small").tag("env", "prod")
        })
        .await
        .unwrap();
    let args = |_: ()| {
        vec![
            Value::Int(-3),
            Value::Int(-1),
            Value::Int(-1),
            Value::Int(-1),
        ]
    };
    let short = match driver.client().call("one.vmpool.info", &args(())).await {
        Ok(Value::Str(s)) => s,
        other => panic!("{other:?}"),
    };
    let pool = cms_driver_opennebula::model::VmPool::from_xml(&short).unwrap();
    let v = pool
        .vms
        .iter()
        .find(|v| v.id.to_string() == vm.id.as_str())
        .unwrap();
    // oned's VirtualMachine::to_xml_short: no USER_TEMPLATE attributes but the
    // scheduler's and Sunstone's, no TARGET on disks; the NIC's groups are there.
    assert_eq!(v.user_template.get(ATTR_TAGS), None);
    assert_eq!(v.user_template.get("CMS_OWNER"), None);
    assert!(v.disks().all(|d| d.get("TARGET").is_none()));
    assert_eq!(
        v.nics().next().and_then(|n| n.get("SECURITY_GROUPS")),
        Some("0")
    );
    // The driver lists from the extended pool, and so sees them.
    let listed = cloud(driver.clone())
        .collect_instances(&InstanceFilter {
            owner: Some("team-a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tags["env"], "prod");
}

#[tokio::test]
async fn deleting_the_last_key_empties_the_users_keys() {
    // oned drops an empty attribute from a template it reads, so a merge cannot empty
    // SSH_PUBLIC_KEY: the driver replaces the template without it.
    let (_oned, driver) = start(quick_config());
    driver
        .create_key_pair(&KeyPairSpec {
            name: "only".into(),
            public_key: None,
        })
        .await
        .unwrap();
    driver.delete_key_pair("only").await.unwrap();
    assert!(driver.list_key_pairs().await.unwrap().is_empty());
    let user = match driver
        .client()
        .call("one.user.info", &[Value::Int(-1)])
        .await
    {
        Ok(Value::Str(s)) => cms_driver_opennebula::model::User::from_xml(&s).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(user.template.get("SSH_PUBLIC_KEY"), None);
    assert!(
        user.template.get("TOKEN_PASSWORD").is_some(),
        "the rest stays"
    );
}
