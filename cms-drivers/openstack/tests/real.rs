//! The conformance kit against real OpenStack (Keystone, Nova with its fake virt
//! driver, Placement, Glance, Neutron, on 127.0.0.1: see `cms_driver_openstack::testbed`),
//! whose listings page by 3: once as it is, once through the chaos layer (a third of
//! the calls fail before reaching OpenStack) with the retry layer.

use std::time::Duration;

use cms_core::layers::{ChaosConfig, RetryPolicy};
use cms_core::testkit::{self, KitConfig, Outcome};
use cms_core::{
    AddressId, Cloud, Driver, ImageFilter, ImageId, InstanceId, NetworkId, PageRequest,
    SecurityGroupId, SnapshotId, VolumeId,
};
use cms_driver_openstack::config::OpenStackConfig;
use cms_driver_openstack::{testbed, OpenStackDriver};

fn driver() -> OpenStackDriver {
    let clouds = testbed::clouds_yaml().to_path_buf();
    let mut config = OpenStackConfig::cloud(testbed::CLOUD);
    config.network = Some(testbed::NETWORK.into());
    let resolved = config
        .resolve_with(|k| std::env::var(k).ok(), || Some(clouds.clone()))
        .expect("the testbed's clouds.yaml");
    OpenStackDriver::with_resolved(resolved).unwrap()
}

async fn kit(driver: &OpenStackDriver, cidr: &str) -> KitConfig {
    let images = driver
        .list_images(&ImageFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    let image = images
        .items
        .iter()
        .find(|i| i.name == testbed::IMAGE)
        .expect("the testbed's image");
    let flavors = driver.list_flavors(&PageRequest::default()).await.unwrap();
    let flavor = flavors
        .items
        .iter()
        .find(|f| f.name == testbed::FLAVOR)
        .expect("the testbed's flavor");
    let unknown = "0cafe000-0000-4000-8000-00000000cafe";
    KitConfig {
        image: Some(image.id.clone()),
        flavor: Some(flavor.id.clone()),
        state_timeout: Duration::from_secs(120),
        concurrent_creates: 6,
        unknown_instance_id: InstanceId::new(unknown),
        unknown_image_id: ImageId::new(unknown),
        unknown_network_id: NetworkId::new(unknown),
        unknown_volume_id: VolumeId::new(unknown),
        unknown_snapshot_id: SnapshotId::new(unknown),
        unknown_security_group_id: SecurityGroupId::new(unknown),
        unknown_address_id: AddressId::new(unknown),
        network_cidr: cidr.into(),
        ..KitConfig::default()
    }
}

/// The families the driver declares unsupported are the only checks skipped.
fn only_undeclared_skipped(report: &testkit::Report) {
    for c in &report.checks {
        if let Outcome::Skipped(why) = &c.outcome {
            assert!(
                [
                    "unknown_ids",
                    "volume_lifecycle",
                    "volume_attach",
                    "volume_pagination",
                    "volume_client_token",
                    "instance_volumes",
                    "snapshots",
                    "image_capture",
                    "security_group_rules",
                    "security_group_instances",
                    "addresses",
                    "family_owners",
                ]
                .contains(&c.name),
                "{} skipped: {why}",
                c.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_on_real_openstack() {
    let driver = driver();
    let config = kit(&driver, "10.77.0.0/24").await;
    let cloud = Cloud::builder(driver).provider("openstack").build();
    let report = testkit::run(&cloud, &config).await;
    println!("{report}");
    report.assert_passed();
    only_undeclared_skipped(&report);
    assert!(report.instances_created > 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_passes_on_real_openstack_through_chaos_with_retry() {
    let driver = driver();
    let config = kit(&driver, "10.78.0.0/24").await;
    let cloud = Cloud::builder(driver)
        .provider("openstack")
        .chaos(ChaosConfig::faults(11, 0.3))
        .retry(RetryPolicy {
            max_attempts: 12,
            // Repeats come while the first try's task still runs (Nova's fake driver
            // stops a server in about half a second).
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(120)),
        })
        .build();
    let report = testkit::run(&cloud, &config).await;
    println!("{report}");
    report.assert_passed();
    only_undeclared_skipped(&report);
}
