//! The conformance kit against the fake oned, through `Cloud::builder(driver).provider("one")`.

mod common;

use std::time::Duration;

use cms_core::layers::RetryPolicy;
use cms_core::testkit::{self, KitConfig, Outcome};
use cms_core::{Cloud, FlavorId, ImageId};
use cms_driver_opennebula::fake::{FakeConfig, Fault, FaultKind};

use common::*;

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
    // Everything is declared, so only the `unsupported` check may be skipped.
    for c in &report.checks {
        if let Outcome::Skipped(why) = &c.outcome {
            assert_eq!(c.name, "unsupported", "{} skipped: {why}", c.name);
        }
    }
    assert!(report.instances_created > 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_from_disk_images() {
    let (_oned, driver) = start(quick_config());
    let cloud = cloud(driver);
    run(&cloud, &kit()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_from_vm_templates() {
    let (_oned, driver) = start(quick_config());
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
    let (_oned, driver) = start(FakeConfig {
        list_order_desc: true,
        ..quick_config()
    });
    let cloud = cloud(driver);
    run(&cloud, &kit()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_through_injected_faults_with_the_retry_layer() {
    let (oned, driver) = start(quick_config());
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
    oned.inject(Fault::new("one.vmpool.info", 1, FaultKind::Http(503)));
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
