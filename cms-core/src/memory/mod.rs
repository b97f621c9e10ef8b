//! The in-memory cloud: a complete cloud in the process, the embedded default.
//!
//! [`MemoryCloud`] implements every operation of the [`Driver`] trait with the
//! semantics of a real cloud:
//!
//! - It starts with three images (`img-ubuntu-24.04`, `img-debian-12`,
//!   `img-fedora-41`), three flavors (`flv-1cpu-1gb` small, `flv-2cpu-4gb` medium,
//!   `flv-4cpu-8gb` large), a default network `net-default` (10.0.0.0/16) and two
//!   locations (`local-a`, `local-b`).
//! - Instances move through their states with time: created `pending`, `running`
//!   after [`boot_delay`](MemoryConfig::boot_delay); stop goes through `stopping`,
//!   start through `pending`, reboot through `rebooting`, delete through
//!   `terminating`. A terminated instance stays visible for
//!   [`terminated_retention`](MemoryConfig::terminated_retention), then is gone. A
//!   transition the state does not allow answers `InvalidState`; repeating an action
//!   while the instance is still carrying it out (stop while `stopping`, delete while
//!   `terminating`) answers the instance as it is, so a retry after a lost answer is
//!   harmless.
//! - Instance ids (`i-` and 16 hex digits) grow with every create, so listing in id
//!   order is listing in creation order, and paging neither repeats nor loses
//!   instances while others are created. A page costs O(log n + page size), so the
//!   cloud holds hundreds of thousands of instances. Ids are made of the create's time
//!   and a random salt per cloud: a new cloud (after a restart, or beside another one)
//!   never hands out an id an earlier cloud did, so an id that comes back always names
//!   the same instance. Network ids are made the same way.
//! - Instances keep their owner ([`InstanceSpec::owner`]); an owner's listing
//!   ([`InstanceFilter::owner`]) reads an index of that owner's instances, so its pages
//!   cost the same however many instances others have.
//! - A filtered listing looks at no more than 10,000 instances per page: like EC2,
//!   it may answer a short (even empty) page with a `next` token; page on until
//!   `next` is `None`.
//! - Tags follow the model's rules ([`check_tags`](crate::check_tags)) and can be
//!   changed on any instance still visible, terminated ones included.
//! - A create with a client token is idempotent; the same token with other
//!   parameters answers `InvalidArgument`.
//! - Each instance gets a private address from each of its networks; a network whose
//!   range is used up answers `QuotaExceeded`.
//! - Key pairs are generated (Ed25519) or imported from OpenSSH public keys.
//!
//! ```
//! use std::time::Duration;
//! use cms_core::memory::{MemoryCloud, MemoryConfig};
//! use cms_core::{Driver, InstanceSpec, InstanceState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! let cloud = MemoryCloud::with_config(MemoryConfig {
//!     boot_delay: Duration::ZERO,
//!     ..MemoryConfig::default()
//! });
//! let vm = cloud
//!     .create_instance(&InstanceSpec::new("img-debian-12", "flv-1cpu-1gb").name("web-1"))
//!     .await?;
//! assert_eq!(vm.state, InstanceState::Running);
//! assert_eq!(vm.private_ips, ["10.0.0.2"]);
//!
//! let err = cloud.start_instance(&vm.id).await.unwrap_err();
//! assert_eq!(err.kind(), cms_core::ErrorKind::InvalidState);
//! assert_eq!(cloud.instance_count(), 1);
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

    /// A cloud behaving per `config`. A page size of 0 counts as 1, and the default
    /// page size is cut to the largest.
    pub fn with_config(config: MemoryConfig) -> MemoryCloud {
        let mut config = config;
        config.max_page_size = config.max_page_size.max(1);
        config.default_page_size = config.default_page_size.clamp(1, config.max_page_size);
        let mut capabilities = Capabilities::all();
        capabilities.instances.max_page_size = config.max_page_size;
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

    async fn list_images(&self, page: &PageRequest) -> Result<Page<Image>> {
        paging::page_of(
            &self.shared.catalogue.images,
            page.token.as_ref(),
            self.page_limit(page),
            Operation::ListImages,
            Image::clone,
        )
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        self.shared
            .catalogue
            .images
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found("image", id).with_operation(Operation::GetImage))
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
    /// Page size when the caller gives none.
    pub default_page_size: u32,
    /// The largest page; larger requests are cut to it.
    pub max_page_size: u32,
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
