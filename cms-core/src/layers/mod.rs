//! Cross-cutting behaviour as drivers that wrap drivers.
//!
//! Each layer is an [`Interceptor`]: it sees every call as an [`Operation`] and a
//! closure that performs it, and decides how (and how often) to run it. [`Layered`]
//! turns an interceptor and an inner driver into a driver, so any stack of layers is
//! itself an `Arc<dyn Driver>`. [`CloudBuilder`](crate::CloudBuilder) stacks them in
//! the order that is right (timeout inside retry):
//!
//! ```text
//! context -> metrics -> retry -> timeout -> limit -> chaos -> driver
//! ```

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::model::*;
use crate::{Capabilities, Driver, Operation, Result};

mod chaos;
mod context;
mod limit;
mod metrics;
mod retry;
mod timeout;

pub use chaos::{ChaosConfig, ChaosLayer, ChaosStats, OperationSet};
pub use context::ContextLayer;
pub use limit::LimitLayer;
pub use metrics::{DriverMetrics, Histogram, MetricsLayer, LATENCY_BUCKETS};
pub use retry::{RetryLayer, RetryPolicy};
pub use timeout::TimeoutLayer;

/// One call going through a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// What is being done.
    pub op: Operation,
    /// Whether running it twice is harmless: true for reads, actions and tag updates,
    /// and for a create that carries a client token.
    pub idempotent: bool,
}

/// A layer's behaviour: how to run a call.
///
/// `run` performs the call once per invocation; a layer may invoke it several times
/// (retry), never (chaos, limit), or bound it in time (timeout).
pub trait Interceptor: Send + Sync + Debug + 'static {
    /// Runs `call` through the layer.
    fn intercept<'a, T, F>(&'a self, call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a;

    /// Gives the layer a chance to complete a create before it is sent (the retry
    /// layer adds a client token, so that it may repeat the create safely).
    fn prepare_create<'s>(
        &self,
        spec: &'s InstanceSpec,
        _caps: &Capabilities,
    ) -> Cow<'s, InstanceSpec> {
        Cow::Borrowed(spec)
    }
}

/// A driver wrapped in a layer.
#[derive(Debug)]
pub struct Layered<I> {
    inner: Arc<dyn Driver>,
    layer: I,
}

impl<I: Interceptor> Layered<I> {
    /// Wraps `inner` in `layer`.
    pub fn new(inner: Arc<dyn Driver>, layer: I) -> Self {
        Layered { inner, layer }
    }

    /// The layer.
    pub fn layer(&self) -> &I {
        &self.layer
    }

    fn run<'a, T, F>(&'a self, op: Operation, f: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn(&'a dyn Driver) -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        let call = Call {
            op,
            idempotent: op.is_idempotent(),
        };
        let inner: &'a dyn Driver = self.inner.as_ref();
        self.layer.intercept(call, move || f(inner))
    }
}

#[async_trait]
impl<I: Interceptor> Driver for Layered<I> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        self.run(Operation::ListInstances, |d| d.list_instances(filter, page))
            .await
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(Operation::GetInstance, |d| d.get_instance(id))
            .await
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        let spec = self.layer.prepare_create(spec, self.inner.capabilities());
        let spec: &InstanceSpec = &spec;
        let call = Call {
            op: Operation::CreateInstance,
            idempotent: spec.client_token.is_some(),
        };
        let inner: &dyn Driver = self.inner.as_ref();
        self.layer
            .intercept(call, move || inner.create_instance(spec))
            .await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(Operation::StartInstance, |d| d.start_instance(id))
            .await
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(Operation::StopInstance, |d| d.stop_instance(id))
            .await
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(Operation::RebootInstance, |d| d.reboot_instance(id))
            .await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(Operation::DeleteInstance, |d| d.delete_instance(id))
            .await
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        self.run(Operation::UpdateInstanceTags, |d| {
            d.update_instance_tags(id, changes)
        })
        .await
    }

    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        self.run(Operation::GetConsoleOutput, |d| d.console_output(id))
            .await
    }

    async fn list_images(&self, page: &PageRequest) -> Result<Page<Image>> {
        self.run(Operation::ListImages, |d| d.list_images(page))
            .await
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        self.run(Operation::GetImage, |d| d.get_image(id)).await
    }

    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        self.run(Operation::ListFlavors, |d| d.list_flavors(page))
            .await
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        self.run(Operation::ListNetworks, |d| d.list_networks(page))
            .await
    }

    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        self.run(Operation::GetNetwork, |d| d.get_network(id)).await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        self.run(Operation::CreateNetwork, |d| d.create_network(spec))
            .await
    }

    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        self.run(Operation::DeleteNetwork, |d| d.delete_network(id))
            .await
    }

    async fn list_locations(&self) -> Result<Vec<Location>> {
        self.run(Operation::ListLocations, |d| d.list_locations())
            .await
    }

    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        self.run(Operation::ListKeyPairs, |d| d.list_key_pairs())
            .await
    }

    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let op = if spec.public_key.is_some() {
            Operation::ImportKeyPair
        } else {
            Operation::CreateKeyPair
        };
        self.run(op, |d| d.create_key_pair(spec)).await
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.run(Operation::DeleteKeyPair, |d| d.delete_key_pair(name))
            .await
    }
}
