//! The conformance kit against the fake oned, through `Cloud::builder(driver).provider("one")`.

mod common;

use std::time::Duration;

use cms_core::layers::RetryPolicy;
use cms_core::testkit::{self, KitConfig, Outcome};
use cms_core::{Cloud, FlavorId, ImageId};
use cms_driver_opennebula::fake::{FakeConfig, FakeOned, Fault, FaultKind};
use cms_driver_opennebula::OpenNebulaDriver;

use common::*;

/// A fake and a driver whose instances get a NIC in network 0 when they name none
/// (OpenNebula puts VMs in security groups through their NICs).
fn start_kit(config: FakeConfig) -> (FakeOned, OpenNebulaDriver) {
    let oned = FakeOned::start(config);
    let mut c = config_for(&oned);
    c.default_network = Some(0);
    let driver = driver_with(&oned, c);
    (oned, driver)
}

fn kit() -> KitConfig {
    KitConfig {
        state_timeout: Duration::from_secs(30),
        ..KitConfig::default()
    }
}

async fn run(cloud: &Cloud, config: &KitConfig) {
    let report = testkit::run(cloud, config).await;
    println!("{report}");
    report.assert_passed();
    // Everything but public addresses (and console output) is declared, so only the
    // `addresses` check may be skipped (and `unsupported` has nothing left to check).
    for c in &report.checks {
        if let Outcome::Skipped(why) = &c.outcome {
            assert!(
                ["unsupported", "addresses"].contains(&c.name),
                "{} skipped: {why}",
                c.name
            );
        }
    }
    assert!(report.instances_created > 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_from_disk_images() {
    let (_oned, driver) = start_kit(quick_config());
    let cloud = cloud(driver);
    run(&cloud, &kit()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_from_vm_templates() {
    let (_oned, driver) = start_kit(quick_config());
    let cloud = cloud(driver);
    let config = KitConfig {
        image: Some(ImageId::new("template:0")),
        flavor: Some(FlavorId::new("template:1")),
        ..kit()
    };
    run(&cloud, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_when_pools_list_in_descending_order() {
    let (_oned, driver) = start_kit(FakeConfig {
        list_order_desc: true,
        ..quick_config()
    });
    let cloud = cloud(driver);
    run(&cloud, &kit()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_through_injected_faults_with_the_retry_layer() {
    let (oned, driver) = start_kit(quick_config());
    let locked = |method: &str, times| {
        Fault::new(
            method,
            times,
            FaultKind::OpenNebula {
                code: 0x8000,
                message: "The resource virtual machine is locked.".into(),
            },
        )
    };
    // At most two hits per call, so that no operation meets more than the retry
    // layer's five repeats.
    oned.inject(locked("one.vm.info", 2));
    oned.inject(locked("one.vm.allocate", 1));
    oned.inject(Fault::new(
        "one.vmpool.infoextended",
        1,
        FaultKind::Http(503),
    ));
    // The new families: a volume allocation refused as locked is repeated; an attach
    // and a rule update whose answers are lost are repeated (both are idempotent).
    oned.inject(locked("one.image.allocate", 1));
    oned.inject(Fault::new("one.image.info", 1, FaultKind::Http(502)));
    oned.inject(Fault::new("one.vm.attach", 1, FaultKind::Close));
    oned.inject(Fault::new("one.secgroup.update", 1, FaultKind::Close));
    oned.inject(Fault::new("one.vm.action", 2, FaultKind::Close));
    oned.inject(Fault::new("one.vm.update", 1, FaultKind::Close));
    // A create whose answer is lost is not repeated, but one refused as locked is.
    oned.inject(locked("one.vn.allocate", 1));
    oned.inject(Fault::new(
        "one.imagepool.info",
        1,
        FaultKind::OpenNebula {
            code: 0x2000,
            message: "Cannot process request, oned cluster in election mode".into(),
        },
    ));
    oned.inject(Fault::new("one.user.info", 1, FaultKind::Http(502)));
    let cloud = Cloud::builder(driver)
        .provider("one")
        .retry(RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(20)),
        })
        .timeout(Duration::from_secs(10))
        .build();
    run(&cloud, &kit()).await;
    assert_eq!(oned.pending_faults(), 0, "every injected fault was met");
}
