//! The in-memory cloud: a complete cloud in the process, the embedded default.
//!
//! [`MemoryCloud`] implements every operation of the [`Driver`] trait, and declares
//! every capability, with the semantics of a real cloud (EC2's where the model leaves
//! a choice):
//!
//! - It starts with three images (`img-ubuntu-24.04`, `img-debian-12`,
//!   `img-fedora-41`, shared: they cannot be deleted), three flavors (`flv-1cpu-1gb`
//!   small, `flv-2cpu-4gb` medium, `flv-4cpu-8gb` large), a default network
//!   `net-default` (10.0.0.0/16) with its default security group, two locations
//!   (`local-a`, `local-b`) and 253 public addresses (203.0.113.0/24, TEST-NET-3).
//! - Instances move through their states with time: created `pending`, `running`
//!   after [`boot_delay`](MemoryConfig::boot_delay); stop goes through `stopping`,
//!   start through `pending`, reboot through `rebooting`, delete through
//!   `terminating`. A terminated instance stays visible for
//!   [`terminated_retention`](MemoryConfig::terminated_retention), then is gone. A
//!   transition the state does not allow answers `InvalidState`; repeating an action
//!   while the instance is still carrying it out (stop while `stopping`, delete while
//!   `terminating`) answers the instance as it is, so a retry after a lost answer is
//!   harmless.
//! - Volumes are `creating`, then `available`; attaching is `attaching`, then
//!   `in_use` (shown on the volume's `attachments` and the instance's `volumes`),
//!   detaching `detaching`, then `available`; deleting `deleting`, then gone. An
//!   attach names a device or gets the first free of `/dev/sdf` to `/dev/sdz` (a
//!   device the instance uses already is `InvalidArgument`; none free,
//!   `QuotaExceeded`); volumes attach to running or stopped instances of their own
//!   location (otherwise `InvalidState`), and cannot be deleted while attached
//!   (`InvalidState`). A volume is made in the first location unless told, empty or
//!   from a completed snapshot (at least its size; its size by default). Instances
//!   made with volumes ([`InstanceSpec::volumes`]) get them attached (`attaching`
//!   until they boot); when an instance is deleted its volumes are `detaching` until
//!   it is terminated, then those made to go with it are deleted and the others are
//!   `available`. The cloud has no root volumes: an instance shows the volumes
//!   attached to it.
//! - Snapshots are `pending`, their progress growing evenly, then `completed`; any
//!   volume holding data (not `creating`, `deleting`) can be copied, and deleting a
//!   snapshot leaves the volumes made from it.
//! - Images are captured from running or stopped instances: `pending`, then
//!   `available`, the account's (not shared), with the owner given; names are unique
//!   per owner. They launch instances once available and can be deleted.
//! - Every network has a default security group (`default`; all egress to
//!   `0.0.0.0/0` and all ingress from its own members, as EC2's), made and deleted
//!   with the network and never alone. New groups hold EC2's one rule, all egress to
//!   `0.0.0.0/0`; group names are unique per network. Rules are a set, kept in the
//!   order of [`SecurityRule`]'s fields (ingress first, then by protocol, ports and
//!   peer). Instances are put in the groups they name (which must belong to one of
//!   their networks) or in their first network's default group. A group in use by an
//!   instance, or named by another group's rules, cannot be deleted.
//! - Public addresses are allocated from 203.0.113.0/24, up to
//!   [`max_addresses`](MemoryConfig::max_addresses) (`QuotaExceeded` beyond),
//!   associated with a private address of a running or stopped instance (moving them
//!   from wherever they were), shown in its `public_ips`, disassociated when it is
//!   deleted, and released only when not associated.
//! - Ids are a prefix and 16 hex digits (`i-`, `vol-`, `snap-`, `img-`, `sg-`,
//!   `eipalloc-`, `net-`) that grow with every create, so listing in id order is
//!   listing in creation order, and paging neither repeats nor loses anything while
//!   others are created. A page costs O(log n + page size), so the cloud holds
//!   hundreds of thousands of instances. Ids are made of the create's time and a
//!   random salt per cloud: a new cloud (after a restart, or beside another one) never
//!   hands out an id an earlier cloud did, so an id that comes back always names the
//!   same resource.
//! - Every resource keeps its owner ([`InstanceSpec::owner`] and the like); an
//!   owner's listing reads an index of that owner's resources, so its pages hold only
//!   the owner's and cost the same however many others have.
//! - A filtered listing looks at no more than 10,000 resources per page: like EC2,
//!   it may answer a short (even empty) page with a `next` token; page on until
//!   `next` is `None`.
//! - Tags follow the model's rules ([`check_tags`](crate::check_tags)); those of
//!   instances can be changed on any instance still visible, terminated ones included.
//! - A create of an instance or a volume with a client token is idempotent; the same
//!   token with other parameters answers `InvalidArgument`.
//! - Each instance gets a private address from each of its networks; a network whose
//!   range is used up answers `QuotaExceeded`.
//! - Key pairs are generated (Ed25519) or imported from OpenSSH public keys.
//!
//! Every transitional state lasts a configurable delay ([`MemoryConfig`]); the
//! defaults are short (from 200 ms to attach a volume to a second to copy a snapshot
//! or capture an image) but long enough to see each state, and
//! [`MemoryConfig::with_delays`] sets them all at once (zero for immediate changes).
//!
//! ```
//! use std::time::Duration;
//! use cms_core::memory::{MemoryCloud, MemoryConfig};
//! use cms_core::{Driver, InstanceSpec, InstanceState, VolumeSpec, VolumeState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! let cloud = MemoryCloud::with_config(MemoryConfig::with_delays(Duration::ZERO));
//! let vm = cloud
//!     .create_instance(&InstanceSpec::new("img-debian-12", "flv-1cpu-1gb").name("web-1"))
//!     .await?;
//! assert_eq!(vm.state, InstanceState::Running);
//! assert_eq!(vm.private_ips, ["10.0.0.2"]);
//!
//! let err = cloud.start_instance(&vm.id).await.unwrap_err();
//! assert_eq!(err.kind(), cms_core::ErrorKind::InvalidState);
//! assert_eq!(cloud.instance_count(), 1);
//!
//! let data = cloud.create_volume(&VolumeSpec::new(10).name("data")).await?;
//! let attached = cloud.attach_volume(&data.id, &vm.id, None).await?;
//! assert_eq!(attached.state, VolumeState::InUse);
//! assert_eq!(attached.attachments[0].device.as_deref(), Some("/dev/sdf"));
//! assert_eq!(cloud.get_instance(&vm.id).await?.volumes[0].volume_id, data.id);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use crate::model::*;
use crate::{Capabilities, Driver, Error, Operation, Result};

mod catalogue;
mod cidr;
mod keys;
mod paging;
mod state;
#[cfg(test)]
mod tests;

use cidr::Cidr;
use state::State;

/// An in-process cloud (see the [module documentation](self)).
///
/// Cloning is cheap and clones share the same cloud.
#[derive(Clone)]
pub struct MemoryCloud {
    shared: Arc<Shared>,
}

struct Shared {
    config: MemoryConfig,
    capabilities: Capabilities,
    catalogue: Catalogue,
    state: RwLock<State>,
}

/// What never changes: images, flavors, locations.
struct Catalogue {
    images: BTreeMap<String, Image>,
    flavors: BTreeMap<String, Flavor>,
    locations: Vec<Location>,
}

impl Default for MemoryCloud {
    fn default() -> Self {
        MemoryCloud::new()
    }
}

impl fmt::Debug for MemoryCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCloud")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl MemoryCloud {
    /// A cloud with the default configuration and the seeded catalogue.
    pub fn new() -> MemoryCloud {
        MemoryCloud::with_config(MemoryConfig::default())
    }

    /// A cloud behaving per `config`. A page size of 0 counts as 1, the default page
    /// size is cut to the largest, and `max_addresses` to the 253 addresses of the
    /// public range.
    pub fn with_config(config: MemoryConfig) -> MemoryCloud {
        let mut config = config;
        config.max_page_size = config.max_page_size.max(1);
        config.default_page_size = config.default_page_size.clamp(1, config.max_page_size);
        config.max_addresses = config.max_addresses.min(catalogue::PUBLIC_ADDRESSES);
        let mut capabilities = Capabilities::all();
        capabilities.instances.max_page_size = config.max_page_size;
        capabilities.volumes.max_page_size = config.max_page_size;
        MemoryCloud {
            shared: Arc::new(Shared {
                capabilities,
                catalogue: Catalogue {
                    images: catalogue::images(),
                    flavors: catalogue::flavors(),
                    locations: catalogue::locations(),
                },
                state: RwLock::new(State::new(config.clone())),
                config,
            }),
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &MemoryConfig {
        &self.shared.config
    }

    /// How many instances are stored, terminated ones that are still visible included.
    pub fn instance_count(&self) -> usize {
        self.write(Instant::now()).instance_count()
    }

    /// How many volumes are stored, deleted ones that are still visible included.
    pub fn volume_count(&self) -> usize {
        self.write(Instant::now()).volume_count()
    }

    /// A read lock, after removing expired instances if some are due.
    fn read(&self, now: Instant) -> RwLockReadGuard<'_, State> {
        let state = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
        if !state.needs_purge(now) {
            return state;
        }
        drop(state);
        drop(self.write(now));
        self.shared.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A write lock, after removing expired instances.
    fn write(&self, now: Instant) -> RwLockWriteGuard<'_, State> {
        let mut state = self.shared.state.write().unwrap_or_else(|p| p.into_inner());
        state.purge(now);
        state
    }

    fn page_limit(&self, page: &PageRequest) -> usize {
        let c = &self.shared.config;
        let limit = page
            .limit
            .filter(|l| *l > 0)
            .unwrap_or(c.default_page_size)
            .min(c.max_page_size);
        limit as usize
    }

    fn act(&self, id: &InstanceId, action: InstanceAction) -> Result<Instance> {
        let now = Instant::now();
        self.write(now).act(id, action, now)
    }
}

fn check_name(argument: &str, name: &str, required: bool, op: Operation) -> Result<()> {
    crate::check_name(argument, name, required).map_err(|e| e.with_operation(op))
}

#[async_trait]
impl Driver for MemoryCloud {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.shared.capabilities
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let now = Instant::now();
        let limit = self.page_limit(page);
        self.read(now).list_instances(filter, page, limit, now)
    }

    async fn list_instances_shared(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Arc<Instance>>> {
        let now = Instant::now();
        let limit = self.page_limit(page);
        self.read(now)
            .list_instances_shared(filter, page, limit, now)
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        let now = Instant::now();
        self.read(now).get_instance(id, now)
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        crate::check_instance_spec(spec)?;
        let now = Instant::now();
        let created_at = chrono::Utc::now();
        self.write(now)
            .create_instance(spec, &self.shared.catalogue, now, created_at)
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Start)
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Stop)
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Reboot)
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Delete)
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        changes.check()?;
        let now = Instant::now();
        self.write(now).update_tags(id, changes, now)
    }

    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        let now = Instant::now();
        self.read(now).console_output(id, now)
    }

    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        let now = Instant::now();
        let limit = self.page_limit(page);
        self.read(now)
            .list_images(filter, page, limit, &self.shared.catalogue, now)
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        let now = Instant::now();
        self.read(now).get_image(id, &self.shared.catalogue, now)
    }

    async fn create_image(&self, spec: &ImageSpec) -> Result<Image> {
        crate::check_image_spec(spec)?;
        let now = Instant::now();
        self.write(now)
            .create_image(spec, &self.shared.catalogue, now, chrono::Utc::now())
    }

    async fn delete_image(&self, id: &ImageId) -> Result<()> {
        self.write(Instant::now())
            .delete_image(id, &self.shared.catalogue)
    }

    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        paging::page_of(
            &self.shared.catalogue.flavors,
            page.token.as_ref(),
            self.page_limit(page),
            Operation::ListFlavors,
            Flavor::clone,
        )
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        let now = Instant::now();
        self.read(now).list_networks(page, self.page_limit(page))
    }

    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        self.read(Instant::now()).get_network(id)
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        let op = Operation::CreateNetwork;
        crate::check_network_spec(spec)?;
        let cidr = Cidr::parse(&spec.cidr, op)?;
        if let Some(l) = &spec.location_id {
            if !self.shared.catalogue.locations.iter().any(|x| x.id == *l) {
                return Err(Error::not_found("location", l).with_operation(op));
            }
        }
        self.write(Instant::now()).create_network(spec, cidr)
    }

    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        let now = Instant::now();
        self.write(now).delete_network(id, now)
    }

    async fn list_locations(&self) -> Result<Vec<Location>> {
        Ok(self.shared.catalogue.locations.clone())
    }

    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        Ok(self.read(Instant::now()).list_key_pairs())
    }

    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let op = match spec.public_key {
            Some(_) => Operation::ImportKeyPair,
            None => Operation::CreateKeyPair,
        };
        check_name("name", &spec.name, true, op)?;
        // Fail before the work of making a key; the insert checks again under the lock.
        if self.read(Instant::now()).has_key_pair(&spec.name) {
            return Err(state::key_pair_exists(&spec.name, op));
        }
        let key_pair = match &spec.public_key {
            Some(public_key) => keys::import(&spec.name, public_key)?,
            None => keys::generate(&spec.name)?,
        };
        self.write(Instant::now()).insert_key_pair(&key_pair, op)?;
        Ok(key_pair)
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.write(Instant::now()).delete_key_pair(name)
    }

    async fn list_volumes(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
    ) -> Result<Page<Volume>> {
        let now = Instant::now();
        let limit = self.page_limit(page);
        self.read(now).list_volumes(filter, page, limit, now)
    }

    async fn get_volume(&self, id: &VolumeId) -> Result<Volume> {
        let now = Instant::now();
        self.read(now).get_volume(id, now)
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        crate::check_volume_spec(spec)?;
        let now = Instant::now();
        self.write(now)
            .create_volume(spec, &self.shared.catalogue, now, chrono::Utc::now())
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        let now = Instant::now();
        self.write(now).delete_volume(id, now)
    }

    async fn attach_volume(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
    ) -> Result<Volume> {
        let now = Instant::now();
        self.write(now).attach_volume(id, instance, device, now)
    }

    async fn detach_volume(&self, id: &VolumeId) -> Result<Volume> {
        let now = Instant::now();
        self.write(now).detach_volume(id, now)
    }

    async fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        let now = Instant::now();
        let limit = self.page_limit(page);
        self.read(now).list_snapshots(filter, page, limit, now)
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let now = Instant::now();
        self.read(now).get_snapshot(id, now)
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        crate::check_snapshot_spec(spec)?;
        let now = Instant::now();
        self.write(now)
            .create_snapshot(spec, now, chrono::Utc::now())
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.write(Instant::now()).delete_snapshot(id)
    }

    async fn list_security_groups(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        let limit = self.page_limit(page);
        self.read(Instant::now())
            .list_security_groups(filter, page, limit)
    }

    async fn get_security_group(&self, id: &SecurityGroupId) -> Result<SecurityGroup> {
        self.read(Instant::now()).get_security_group(id)
    }

    async fn create_security_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        crate::check_security_group_spec(spec)?;
        self.write(Instant::now()).create_security_group(spec)
    }

    async fn delete_security_group(&self, id: &SecurityGroupId) -> Result<()> {
        let now = Instant::now();
        self.write(now).delete_security_group(id, now)
    }

    async fn add_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        crate::check_security_rules(rules, Operation::AddSecurityRules)?;
        self.write(Instant::now()).add_security_rules(id, rules)
    }

    async fn remove_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        crate::check_security_rules(rules, Operation::RemoveSecurityRules)?;
        self.write(Instant::now()).remove_security_rules(id, rules)
    }

    async fn list_addresses(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Address>> {
        let limit = self.page_limit(page);
        self.read(Instant::now())
            .list_addresses(filter, page, limit)
    }

    async fn get_address(&self, id: &AddressId) -> Result<Address> {
        self.read(Instant::now()).get_address(id)
    }

    async fn allocate_address(&self, spec: &AddressSpec) -> Result<Address> {
        crate::check_address_spec(spec)?;
        self.write(Instant::now()).allocate_address(spec)
    }

    async fn release_address(&self, id: &AddressId) -> Result<()> {
        self.write(Instant::now()).release_address(id)
    }

    async fn associate_address(
        &self,
        id: &AddressId,
        instance: &InstanceId,
        private_ip: Option<&str>,
    ) -> Result<Address> {
        let now = Instant::now();
        self.write(now)
            .associate_address(id, instance, private_ip, now)
    }

    async fn disassociate_address(&self, id: &AddressId) -> Result<Address> {
        self.write(Instant::now()).disassociate_address(id)
    }
}

/// How the memory cloud behaves. Durations are given in milliseconds in
/// configuration files (`boot_delay_ms = 500`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Pending -> Running.
    #[serde(rename = "boot_delay_ms", with = "millis")]
    pub boot_delay: Duration,
    /// Stopping -> Stopped.
    #[serde(rename = "stop_delay_ms", with = "millis")]
    pub stop_delay: Duration,
    /// Pending (after start) -> Running.
    #[serde(rename = "start_delay_ms", with = "millis")]
    pub start_delay: Duration,
    /// Rebooting -> Running.
    #[serde(rename = "reboot_delay_ms", with = "millis")]
    pub reboot_delay: Duration,
    /// Terminating -> Terminated.
    #[serde(rename = "terminate_delay_ms", with = "millis")]
    pub terminate_delay: Duration,
    /// How long a terminated instance stays visible (EC2 keeps them about an hour).
    #[serde(rename = "terminated_retention_ms", with = "millis")]
    pub terminated_retention: Duration,
    /// Volume `creating` -> `available`.
    #[serde(rename = "volume_create_delay_ms", with = "millis")]
    pub volume_create_delay: Duration,
    /// Volume `deleting` -> gone.
    #[serde(rename = "volume_delete_delay_ms", with = "millis")]
    pub volume_delete_delay: Duration,
    /// Volume `attaching` -> `in_use` (volumes made with an instance: its boot delay).
    #[serde(rename = "attach_delay_ms", with = "millis")]
    pub attach_delay: Duration,
    /// Volume `detaching` -> `available`.
    #[serde(rename = "detach_delay_ms", with = "millis")]
    pub detach_delay: Duration,
    /// Snapshot `pending` (its progress growing evenly) -> `completed`.
    #[serde(rename = "snapshot_delay_ms", with = "millis")]
    pub snapshot_delay: Duration,
    /// Captured image `pending` -> `available`.
    #[serde(rename = "image_delay_ms", with = "millis")]
    pub image_delay: Duration,
    /// The most public addresses the cloud holds at once (EC2 allows an account 5 by
    /// default); at most, and by default, the 253 of its range.
    pub max_addresses: u32,
    /// Page size when the caller gives none.
    pub default_page_size: u32,
    /// The largest page; larger requests are cut to it.
    pub max_page_size: u32,
}

impl MemoryConfig {
    /// Every transition (instances, volumes, snapshots, images) takes `delay`; the
    /// rest as by default. `with_delays(Duration::ZERO)` makes every change immediate.
    pub fn with_delays(delay: Duration) -> Self {
        MemoryConfig {
            boot_delay: delay,
            stop_delay: delay,
            start_delay: delay,
            reboot_delay: delay,
            terminate_delay: delay,
            volume_create_delay: delay,
            volume_delete_delay: delay,
            attach_delay: delay,
            detach_delay: delay,
            snapshot_delay: delay,
            image_delay: delay,
            ..MemoryConfig::default()
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            boot_delay: Duration::from_millis(500),
            stop_delay: Duration::from_millis(300),
            start_delay: Duration::from_millis(300),
            reboot_delay: Duration::from_millis(300),
            terminate_delay: Duration::from_millis(300),
            terminated_retention: Duration::from_secs(600),
            volume_create_delay: Duration::from_millis(300),
            volume_delete_delay: Duration::from_millis(200),
            attach_delay: Duration::from_millis(200),
            detach_delay: Duration::from_millis(200),
            snapshot_delay: Duration::from_millis(1000),
            image_delay: Duration::from_millis(1000),
            max_addresses: catalogue::PUBLIC_ADDRESSES,
            default_page_size: 100,
            max_page_size: 1000,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
