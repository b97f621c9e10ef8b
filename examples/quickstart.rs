//! Embed cms: create an instance on the in-memory cloud, wait until it runs, list,
//! delete. Run with `cargo run --example quickstart`.

use std::time::Duration;

use cms::layers::RetryPolicy;
use cms::memory::MemoryCloud;
use cms::{Cloud, InstanceFilter, InstanceSpec, InstanceState};

#[tokio::main]
async fn main() -> cms::Result<()> {
    // A provider: a driver wrapped in layers (retry, timeout, metrics).
    let cloud = Cloud::builder(MemoryCloud::new())
        .provider("local")
        .retry(RetryPolicy::default())
        .timeout(Duration::from_secs(10))
        .metrics()
        .build();

    let images = cloud.collect_images().await?;
    let flavors = cloud.collect_flavors().await?;
    println!("{} images, {} flavors", images.len(), flavors.len());

    let spec = InstanceSpec::new(images[0].id.clone(), flavors[0].id.clone())
        .name("quickstart-1")
        .tag("owner", "quickstart");
    let vm = cloud
        .create_and_wait(&spec, Duration::from_secs(30))
        .await?;
    println!("{} is {} ({})", vm.id, vm.state, vm.raw_state);

    let mine = InstanceFilter {
        tags: [("owner".to_owned(), Some("quickstart".to_owned()))].into(),
        ..Default::default()
    };
    for i in cloud.collect_instances(&mine).await? {
        println!("listed {} {} {}", i.id, i.name, i.state);
    }

    cloud.delete_instance(&vm.id).await?;
    let gone = cloud
        .wait_for_state(&vm.id, InstanceState::Terminated, Duration::from_secs(30))
        .await?;
    println!("{} is {}", gone.id, gone.state);
    assert_eq!(gone.state, InstanceState::Terminated);
    Ok(())
}
