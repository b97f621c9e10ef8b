//! The conformance suite against the memory cloud, plain and under injected faults,
//! and against drivers with defects it must see.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use cms_core::layers::{ChaosConfig, ChaosLayer, RetryPolicy};
use cms_core::memory::{MemoryCloud, MemoryConfig};
use cms_core::testkit::{self, KitConfig};
use cms_core::*;

/// Every transition (instances, volumes, snapshots, images) takes `delay_ms`.
fn quick(delay_ms: u64) -> MemoryConfig {
    MemoryConfig::with_delays(Duration::from_millis(delay_ms))
}

fn kit() -> KitConfig {
    KitConfig {
        state_timeout: Duration::from_secs(20),
        ..KitConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_kit() {
    let memory = MemoryCloud::with_config(quick(30));
    let cloud = Cloud::builder(memory.clone())
        .provider("local")
        .metrics()
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    println!("{report}");
    report.assert_passed();
    assert_eq!(report.failures().count(), 0, "every check ran and passed");
    assert!(report.passed_count() >= 11, "{report}");
    assert_eq!(memory.instance_count(), report.instances_created);
    let m = cloud.metrics().expect("metrics layer");
    assert!(m.calls(Operation::CreateInstance) as usize >= report.instances_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_under_chaos_with_retry_passes_the_kit_without_duplicates() {
    // Delays well above the retry pauses, so that a repeated action finds the
    // instance still in its transition (repeating it there is allowed).
    let memory = MemoryCloud::with_config(quick(300));
    let chaos = ChaosLayer::new(ChaosConfig::faults(20261122, 0.3));
    let stats = chaos.stats();
    let cloud = Cloud::builder(memory.clone())
        .provider("chaotic")
        .chaos_layer(chaos)
        .retry(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            multiplier: 2.0,
            deadline: Some(Duration::from_secs(10)),
        })
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    println!("{report}");
    report.assert_passed();
    // Faults of both sorts really were injected, creates among them...
    let before = stats.faults_before.load(Ordering::Relaxed);
    let after = stats.faults_after.load(Ordering::Relaxed);
    let calls = stats.calls.load(Ordering::Relaxed);
    println!("chaos: {calls} calls, {before} refused, {after} answers lost");
    assert!(
        before > 20 && after > 20,
        "too few faults injected: {before}/{after}"
    );
    let rate = (before + after) as f64 / calls as f64;
    assert!((0.2..0.4).contains(&rate), "fault rate {rate}");
    // ...and yet no create made a second instance.
    assert_eq!(memory.instance_count(), report.instances_created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_without_retry_makes_the_kit_fail() {
    // The kit is not blind: the same faults without the retry layer are seen.
    let memory = MemoryCloud::with_config(quick(20));
    let cloud = Cloud::builder(memory)
        .chaos(ChaosConfig::faults(7, 0.3))
        .build();
    let report = testkit::run(&cloud, &kit()).await;
    assert!(!report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out() {
    let memory = MemoryCloud::with_config(quick(20));
    let cloud = Cloud::builder(memory)
        .chaos(ChaosConfig {
            rate_limit_rate: 0.3,
            retry_after: Duration::from_millis(5),
            ..ChaosConfig::calm(99)
        })
        .retry(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
        .build();
    testkit::run(&cloud, &kit()).await.assert_passed();
}

/// A defect a [`Faulty`] driver has, each breaking one promise of the optional
/// families.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Defect {
    /// Attachments do not say their device.
    ForgetsDevices,
    /// A group answers its first rule twice.
    DoublesRules,
    /// Volume listings ignore the owner filter.
    IgnoresVolumeOwners,
    /// Releasing an associated address disassociates it first instead of refusing.
    ReleasesAssociated,
}

/// The memory cloud with one defect: the kit must see each.
#[derive(Debug)]
struct Faulty {
    inner: MemoryCloud,
    defect: Defect,
}

impl Faulty {
    fn volume(&self, mut v: Volume) -> Volume {
        if self.defect == Defect::ForgetsDevices {
            for a in &mut v.attachments {
                a.device = None;
            }
        }
        v
    }

    fn group(&self, mut g: SecurityGroup) -> SecurityGroup {
        if self.defect == Defect::DoublesRules {
            if let Some(r) = g.rules.first().cloned() {
                g.rules.push(r);
            }
        }
        g
    }
}

#[async_trait]
impl Driver for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn list_instances(&self, f: &InstanceFilter, p: &PageRequest) -> Result<Page<Instance>> {
        self.inner.list_instances(f, p).await
    }
    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.inner.get_instance(id).await
    }
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        self.inner.create_instance(spec).await
    }
    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.inner.start_instance(id).await
    }
    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.inner.stop_instance(id).await
    }
    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.inner.reboot_instance(id).await
    }
    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.inner.delete_instance(id).await
    }
    async fn update_instance_tags(&self, id: &InstanceId, c: &TagChanges) -> Result<Instance> {
        self.inner.update_instance_tags(id, c).await
    }
    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        self.inner.console_output(id).await
    }
    async fn list_images(&self, f: &ImageFilter, p: &PageRequest) -> Result<Page<Image>> {
        self.inner.list_images(f, p).await
    }
    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        self.inner.get_image(id).await
    }
    async fn create_image(&self, spec: &ImageSpec) -> Result<Image> {
        self.inner.create_image(spec).await
    }
    async fn delete_image(&self, id: &ImageId) -> Result<()> {
        self.inner.delete_image(id).await
    }
    async fn list_flavors(&self, p: &PageRequest) -> Result<Page<Flavor>> {
        self.inner.list_flavors(p).await
    }
    async fn list_networks(&self, p: &PageRequest) -> Result<Page<Network>> {
        self.inner.list_networks(p).await
    }
    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        self.inner.get_network(id).await
    }
    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        self.inner.create_network(spec).await
    }
    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        self.inner.delete_network(id).await
    }
    async fn list_locations(&self) -> Result<Vec<Location>> {
        self.inner.list_locations().await
    }
    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        self.inner.list_key_pairs().await
    }
    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        self.inner.create_key_pair(spec).await
    }
    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.inner.delete_key_pair(name).await
    }
    async fn list_volumes(&self, f: &VolumeFilter, p: &PageRequest) -> Result<Page<Volume>> {
        let mut f = f.clone();
        if self.defect == Defect::IgnoresVolumeOwners {
            f.owner = None;
        }
        let mut page = self.inner.list_volumes(&f, p).await?;
        page.items = page.items.into_iter().map(|v| self.volume(v)).collect();
        Ok(page)
    }
    async fn get_volume(&self, id: &VolumeId) -> Result<Volume> {
        Ok(self.volume(self.inner.get_volume(id).await?))
    }
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        Ok(self.volume(self.inner.create_volume(spec).await?))
    }
    async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        self.inner.delete_volume(id).await
    }
    async fn attach_volume(
        &self,
        id: &VolumeId,
        i: &InstanceId,
        d: Option<&str>,
    ) -> Result<Volume> {
        Ok(self.volume(self.inner.attach_volume(id, i, d).await?))
    }
    async fn detach_volume(&self, id: &VolumeId) -> Result<Volume> {
        Ok(self.volume(self.inner.detach_volume(id).await?))
    }
    async fn list_snapshots(&self, f: &SnapshotFilter, p: &PageRequest) -> Result<Page<Snapshot>> {
        self.inner.list_snapshots(f, p).await
    }
    async fn get_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.inner.get_snapshot(id).await
    }
    async fn create_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        self.inner.create_snapshot(spec).await
    }
    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.inner.delete_snapshot(id).await
    }
    async fn list_security_groups(
        &self,
        f: &SecurityGroupFilter,
        p: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        let mut page = self.inner.list_security_groups(f, p).await?;
        page.items = page.items.into_iter().map(|g| self.group(g)).collect();
        Ok(page)
    }
    async fn get_security_group(&self, id: &SecurityGroupId) -> Result<SecurityGroup> {
        Ok(self.group(self.inner.get_security_group(id).await?))
    }
    async fn create_security_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        Ok(self.group(self.inner.create_security_group(spec).await?))
    }
    async fn delete_security_group(&self, id: &SecurityGroupId) -> Result<()> {
        self.inner.delete_security_group(id).await
    }
    async fn add_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        Ok(self.group(self.inner.add_security_rules(id, rules).await?))
    }
    async fn remove_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        Ok(self.group(self.inner.remove_security_rules(id, rules).await?))
    }
    async fn list_addresses(&self, f: &AddressFilter, p: &PageRequest) -> Result<Page<Address>> {
        self.inner.list_addresses(f, p).await
    }
    async fn get_address(&self, id: &AddressId) -> Result<Address> {
        self.inner.get_address(id).await
    }
    async fn allocate_address(&self, spec: &AddressSpec) -> Result<Address> {
        self.inner.allocate_address(spec).await
    }
    async fn release_address(&self, id: &AddressId) -> Result<()> {
        if self.defect == Defect::ReleasesAssociated {
            self.inner.disassociate_address(id).await?;
        }
        self.inner.release_address(id).await
    }
    async fn associate_address(
        &self,
        id: &AddressId,
        i: &InstanceId,
        ip: Option<&str>,
    ) -> Result<Address> {
        self.inner.associate_address(id, i, ip).await
    }
    async fn disassociate_address(&self, id: &AddressId) -> Result<Address> {
        self.inner.disassociate_address(id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_sees_defects_in_the_optional_families() {
    let cases = [
        (Defect::ForgetsDevices, "volume_attach"),
        (Defect::DoublesRules, "security_group_rules"),
        (Defect::IgnoresVolumeOwners, "family_owners"),
        (Defect::ReleasesAssociated, "addresses"),
    ];
    let runs = cases.map(|(defect, check)| async move {
        let faulty = Faulty {
            inner: MemoryCloud::with_config(quick(10)),
            defect,
        };
        let report = testkit::run(&Cloud::new(faulty), &kit()).await;
        (defect, check, report)
    });
    for (defect, check, report) in futures::future::join_all(runs).await {
        let failed: Vec<&str> = report.failures().map(|c| c.name).collect();
        assert!(
            failed.contains(&check),
            "{defect:?} should fail `{check}`:\n{report}"
        );
    }
}
