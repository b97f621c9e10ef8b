//! The tenant-scoped service: what every frontend needs, done once. The frontends
//! (native JSON, EC2 Query, …) parse, authenticate and render; this alone talks to the
//! [store](crate::store) and to the providers' [`Cloud`] handles.
//!
//! - **Providers**: a tenant uses the providers its configuration allows
//!   ([`Service::provider`]).
//! - **Ownership travels with the instance**: every create names the tenant as the
//!   instance's owner ([`InstanceSpec::owner`](cms_core::InstanceSpec::owner)), in the
//!   same backend call, so no crash can make an instance its tenant cannot see. A
//!   member tenant's listings filter by owner in the driver (an index in the memory
//!   cloud, a tag filter on EC2), so a page holds the tenant's instances only, is full
//!   unless it is the last, and costs the same however many instances other tenants
//!   have ([`instances`]). An admin tenant sees and acts on every instance of its
//!   providers, those made outside cms included.
//! - **Public ids**: the store maps backend objects to EC2-shaped ids for frontends
//!   that show them, and never lets an old id name a new object.
//! - **Creates are journaled** before the backend is asked, holding a place in the
//!   tenant's quota (`max_instances`, in all and per provider, enforced across
//!   replicas); a create whose server died midway is settled by another replica, or by
//!   the restarted server ([`create`]).
//! - **Key pairs are named per tenant** ([`keys`]): a tenant's `web` is `TENANT@web`
//!   in the backend, and clients only ever see `web`.
//! - **Errors name what the client named**: a driver's error about a backend id or a
//!   backend key name is shown with the client's id or name.

pub mod catalogue;
pub mod create;
pub mod instances;
pub mod keys;
pub mod resources;
pub mod tags;
pub mod templates;
pub mod views;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cms_core::{Capabilities, Cloud, Error, ErrorKind};

use crate::auth::Tenant;
use crate::store::{Store, StoreError};

/// What a public id names, and the row of an object: what frontends that show public
/// ids read (they never touch the store itself).
pub use crate::store::{Entry, Kind};
pub use create::{CreateRequest, Idempotency, Launch};
pub use instances::{InstanceRef, Owned};
pub use resources::{ObjectRef, Shown};

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    /// Its name, as in URLs (and EC2 regions).
    pub name: Arc<str>,
    /// The driver's name (`memory`, `ec2`, …).
    pub driver: &'static str,
    /// The layered handle.
    cloud: Cloud,
    /// Its position in the configuration.
    index: usize,
    /// Its flavors as last read, and when (see [`Service::collect_flavors`]).
    flavors: std::sync::Mutex<Option<(std::time::Instant, Arc<[cms_core::Flavor]>)>>,
    /// Its instances' shared views as their tenants see them (key names without the
    /// tenant's prefix), for the views that show differs from.
    shown: views::Derived<Arc<cms_core::Instance>>,
    /// Each instance's row in the id map (a row never changes while its view stays).
    entries: views::Derived<Arc<Entry>>,
    /// Each instance's JSON as the native API writes it.
    json: views::Derived<Box<[u8]>>,
    /// Each instance's `item` of a `DescribeInstances` answer.
    xml: views::Derived<Box<str>>,
    /// Whole `DescribeInstances` answers but their request ids.
    pages: views::Pages,
}

impl Provider {
    /// A provider named `name` on `cloud`, at position `index` of the configuration.
    pub fn new(name: &str, driver: &'static str, cloud: Cloud, index: usize) -> Provider {
        Provider {
            name: name.into(),
            driver,
            cloud,
            index,
            flavors: std::sync::Mutex::new(None),
            shown: views::Derived::default(),
            entries: views::Derived::default(),
            json: views::Derived::default(),
            xml: views::Derived::default(),
            pages: views::Pages::default(),
        }
    }

    /// What its driver supports.
    pub fn capabilities(&self) -> &Capabilities {
        self.cloud.capabilities()
    }

    /// The driver metrics of its metrics layer.
    pub fn metrics(&self) -> Option<&Arc<cms_core::layers::DriverMetrics>> {
        self.cloud.metrics()
    }

    /// The JSON of its instances' views, kept while the views stay the same (see
    /// [`views`]): what the native API writes for each instance of a listing.
    pub fn instance_json(&self) -> &views::Derived<Box<[u8]>> {
        &self.json
    }

    /// The EC2 `item` of its instances' views in `DescribeInstances` answers, kept
    /// while the views stay the same (see [`views`]).
    pub fn instance_xml(&self) -> &views::Derived<Box<str>> {
        &self.xml
    }

    /// Its `DescribeInstances` answers (all but the request id), kept while their
    /// pages' views stay the same (see [`views::Pages`]).
    pub fn describe_pages(&self) -> &views::Pages {
        &self.pages
    }

    /// Its position in the configuration.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// The service: providers, the store, and this replica's name for its leases.
pub struct Service {
    providers: Vec<Provider>,
    by_name: HashMap<Arc<str>, usize>,
    store: Store,
    replica: String,
    lease: Duration,
    /// Creates this replica is carrying out: their leases need renewing.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("providers", &self.providers.len())
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// The error shown when the store fails: the cause goes to the log.
pub(crate) fn store_error(e: StoreError) -> Error {
    tracing::error!(error = %e, "state store failed");
    Error::new(
        ErrorKind::Unavailable,
        "the server could not read or write its state; try again",
    )
    .with_context("reason", "state_store")
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        store_error(e)
    }
}

impl Service {
    /// A service over `providers` (in configuration order) and `store`; creates in
    /// flight hold leases of `lease`.
    pub fn new(providers: Vec<Provider>, store: Store, lease: Duration) -> Service {
        let by_name = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let replica = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        Service {
            providers,
            by_name,
            store,
            replica,
            lease,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Every provider, in configuration order.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The providers `tenant` may use, in configuration order.
    pub fn providers_of<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = &'a Provider> {
        self.providers.iter().filter(|p| tenant.may_use(p.index))
    }

    /// The provider `name`, if `tenant` may use it: `NotFound` when there is none,
    /// `PermissionDenied` when the tenant may not use it.
    pub fn provider(&self, tenant: &Tenant, name: &str) -> Result<&Provider, Error> {
        match self.by_name.get(name) {
            None => Err(
                Error::new(ErrorKind::NotFound, format!("provider `{name}` not found"))
                    .with_resource(format!("provider {name}")),
            ),
            Some(&i) if !tenant.may_use(i) => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("tenant `{}` may not use provider `{name}`", tenant.name),
            )
            .with_provider(name)),
            Some(&i) => Ok(&self.providers[i]),
        }
    }

    /// The store (for operations and tests: frontends never touch it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This replica's name in the journal of creates.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Keeps this replica's leases alive and settles the creates of replicas that died,
    /// until `stop` resolves. Run once per process.
    pub async fn maintain(&self, stop: impl Future<Output = ()>) {
        let tick = (self.lease / 3).clamp(Duration::from_millis(50), Duration::from_secs(2));
        tokio::pin!(stop);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = interval.tick() => {}
            }
            let busy = self.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0;
            if busy {
                if let Err(e) = self.store.renew_leases(&self.replica, self.lease).await {
                    tracing::warn!(error = %e, "could not renew the leases of creates in flight");
                }
            }
            self.recover().await;
        }
    }
}
