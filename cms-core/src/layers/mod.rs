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

    /// [`prepare_create`](Interceptor::prepare_create) for volumes.
    fn prepare_volume_create<'s>(
        &self,
        spec: &'s VolumeSpec,
        _caps: &Capabilities,
    ) -> Cow<'s, VolumeSpec> {
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

    async fn list_instances_shared(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Arc<Instance>>> {
        self.run(Operation::ListInstances, |d| {
            d.list_instances_shared(filter, page)
        })
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

    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        self.run(Operation::ListImages, |d| d.list_images(filter, page))
            .await
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        self.run(Operation::GetImage, |d| d.get_image(id)).await
    }

    async fn create_image(&self, spec: &ImageSpec) -> Result<Image> {
        self.run(Operation::CreateImage, |d| d.create_image(spec))
            .await
    }

    async fn delete_image(&self, id: &ImageId) -> Result<()> {
        self.run(Operation::DeleteImage, |d| d.delete_image(id))
            .await
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

    async fn list_volumes(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
    ) -> Result<Page<Volume>> {
        self.run(Operation::ListVolumes, |d| d.list_volumes(filter, page))
            .await
    }

    async fn get_volume(&self, id: &VolumeId) -> Result<Volume> {
        self.run(Operation::GetVolume, |d| d.get_volume(id)).await
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        let spec = self
            .layer
            .prepare_volume_create(spec, self.inner.capabilities());
        let spec: &VolumeSpec = &spec;
        let call = Call {
            op: Operation::CreateVolume,
            idempotent: spec.client_token.is_some(),
        };
        let inner: &dyn Driver = self.inner.as_ref();
        self.layer
            .intercept(call, move || inner.create_volume(spec))
            .await
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        self.run(Operation::DeleteVolume, |d| d.delete_volume(id))
            .await
    }

    async fn attach_volume(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
    ) -> Result<Volume> {
        self.run(Operation::AttachVolume, |d| {
            d.attach_volume(id, instance, device)
        })
        .await
    }

    async fn detach_volume(&self, id: &VolumeId) -> Result<Volume> {
        self.run(Operation::DetachVolume, |d| d.detach_volume(id))
            .await
    }

    async fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        self.run(Operation::ListSnapshots, |d| d.list_snapshots(filter, page))
            .await
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.run(Operation::GetSnapshot, |d| d.get_snapshot(id))
            .await
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        self.run(Operation::CreateSnapshot, |d| d.create_snapshot(spec))
            .await
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.run(Operation::DeleteSnapshot, |d| d.delete_snapshot(id))
            .await
    }

    async fn list_security_groups(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        self.run(Operation::ListSecurityGroups, |d| {
            d.list_security_groups(filter, page)
        })
        .await
    }

    async fn get_security_group(&self, id: &SecurityGroupId) -> Result<SecurityGroup> {
        self.run(Operation::GetSecurityGroup, |d| d.get_security_group(id))
            .await
    }

    async fn create_security_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        self.run(Operation::CreateSecurityGroup, |d| {
            d.create_security_group(spec)
        })
        .await
    }

    async fn delete_security_group(&self, id: &SecurityGroupId) -> Result<()> {
        self.run(Operation::DeleteSecurityGroup, |d| {
            d.delete_security_group(id)
        })
        .await
    }

    async fn add_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        self.run(Operation::AddSecurityRules, |d| {
            d.add_security_rules(id, rules)
        })
        .await
    }

    async fn remove_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        self.run(Operation::RemoveSecurityRules, |d| {
            d.remove_security_rules(id, rules)
        })
        .await
    }

    async fn list_addresses(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Address>> {
        self.run(Operation::ListAddresses, |d| d.list_addresses(filter, page))
            .await
    }

    async fn get_address(&self, id: &AddressId) -> Result<Address> {
        self.run(Operation::GetAddress, |d| d.get_address(id)).await
    }

    async fn allocate_address(&self, spec: &AddressSpec) -> Result<Address> {
        self.run(Operation::AllocateAddress, |d| d.allocate_address(spec))
            .await
    }

    async fn release_address(&self, id: &AddressId) -> Result<()> {
        self.run(Operation::ReleaseAddress, |d| d.release_address(id))
            .await
    }

    async fn associate_address(
        &self,
        id: &AddressId,
        instance: &InstanceId,
        private_ip: Option<&str>,
    ) -> Result<Address> {
        self.run(Operation::AssociateAddress, |d| {
            d.associate_address(id, instance, private_ip)
        })
        .await
    }

    async fn disassociate_address(&self, id: &AddressId) -> Result<Address> {
        self.run(Operation::DisassociateAddress, |d| {
            d.disassociate_address(id)
        })
        .await
    }
}
