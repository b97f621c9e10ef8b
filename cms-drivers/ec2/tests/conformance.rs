//! The conformance kit against moto, a third-party EC2 implementation.

use std::time::Duration;

use cms_core::testkit::{self, KitConfig};
use cms_core::{Cloud, FlavorId, ImageId};
use cms_driver_ec2::moto::{self, MotoServer};
use cms_driver_ec2::Ec2Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_moto() {
    let server = MotoServer::start().await;
    let driver = Ec2Driver::new(server.config()).await.expect("driver");
    let cloud = Cloud::builder(driver).provider("aws").build();
    let kit = KitConfig {
        image: Some(ImageId::new(moto::IMAGE_ID)),
        flavor: Some(FlavorId::new(moto::FLAVOR)),
        state_timeout: Duration::from_secs(30),
        // Inside the default VPC (172.31.0.0/16), as EC2 requires.
        network_cidr: "172.31.96.0/24".into(),
        ..KitConfig::default()
    };
    let report = testkit::run(&cloud, &kit).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.instances_created > 0, "the kit created nothing");
}
