//! The one trait every backend implements.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::model::*;
use crate::{Capabilities, Error, Operation, Result};

/// A backend: one object-safe async trait, used as `Arc<dyn Driver>`.
///
/// Drivers implement every method of the core (instances, images, flavors, networks,
/// locations, key pairs); an operation the driver does not declare in its
/// [`Capabilities`] returns [`Error::unsupported`](crate::Error::unsupported) and does
/// nothing else. The core has no default methods, so a driver cannot forget one
/// silently.
///
/// The families a backend may lack (image capture, volumes, snapshots, security
/// groups, addresses) have default methods that answer `Unsupported`, matching the
/// capabilities' defaults, so a driver implements the families it declares and no
/// others. The conformance kit checks both ways: every declared operation works, every
/// undeclared one answers `Unsupported`.
/// Users hold a [`Cloud`](crate::Cloud), which wraps a driver in layers and adds
/// conveniences such as waiting for a state.
///
/// Errors are classified once in each driver into [`ErrorKind`](crate::ErrorKind)s,
/// with the temporary ones marked, so layers (retry) never look at backend details.
#[async_trait]
pub trait Driver: Send + Sync + Debug + 'static {
    /// The driver's name (`memory`, `ec2`, `opennebula`, …).
    fn name(&self) -> &str;

    /// What the driver supports.
    fn capabilities(&self) -> &Capabilities;

    /// One page of instances matching `filter`, in a stable order: paging through a
    /// listing while instances are created neither repeats nor loses an instance that
    /// existed when the listing began.
    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>>;

    /// [`list_instances`](Driver::list_instances), each instance behind an `Arc`.
    ///
    /// A driver that keeps its instances in memory (the memory cloud) answers views it
    /// shares between calls: the same `Arc` comes back, listing after listing, until
    /// the instance changes. A caller may therefore keep what it derived from a view
    /// (its JSON, say) for as long as [`Arc::ptr_eq`] holds, and a listing moves no
    /// instance's data. Others answer [`list_instances`](Driver::list_instances)'s
    /// instances, each in a new `Arc` (the default).
    async fn list_instances_shared(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<std::sync::Arc<Instance>>> {
        let page = self.list_instances(filter, page).await?;
        Ok(Page {
            items: page.items.into_iter().map(std::sync::Arc::new).collect(),
            next: page.next,
        })
    }

    /// One instance; `NotFound` when unknown.
    async fn get_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Creates an instance and returns it, usually `Pending`.
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance>;

    /// Starts a stopped instance.
    ///
    /// State actions are safe to repeat while under way: starting a pending instance,
    /// stopping a stopping one, rebooting a rebooting one, deleting a terminating or
    /// terminated one answer the instance as it is. A transition that is impossible
    /// (start a running instance, stop a stopped one, reboot a stopped one, anything
    /// but delete on a terminated one) answers `InvalidState`.
    async fn start_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Stops a running instance (see [`start_instance`](Driver::start_instance) for
    /// repeated and impossible actions).
    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Reboots a running instance (see [`start_instance`](Driver::start_instance) for
    /// repeated and impossible actions).
    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Deletes (terminates) an instance and returns it, usually `Terminating`.
    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Changes the tags of an instance and returns it as it is after the change.
    ///
    /// `changes.set` adds tags or overwrites their values, `changes.remove` deletes keys
    /// (keys the instance does not carry are no error). A key both set and removed, or
    /// one that breaks the model's tag rules ([`TagChanges::check`]) or that the driver
    /// reserves for itself, is `InvalidArgument` naming the key, and nothing changes.
    /// `NotFound` when the instance is unknown. Repeating a change is harmless.
    async fn update_instance_tags(&self, id: &InstanceId, changes: &TagChanges)
        -> Result<Instance>;

    /// What the instance's console showed (its serial console: boot messages and the
    /// like), as the backend keeps it: the latest part, empty when there is none yet.
    /// `NotFound` when the instance is unknown.
    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput>;

    /// One page of images matching `filter` (owners filtered in the backend, so that a
    /// page holds only what the filter asks for), in a stable order.
    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>>;

    /// One image; `NotFound` when unknown.
    async fn get_image(&self, id: &ImageId) -> Result<Image>;

    /// Captures an image of an instance (its root disk; running or stopped, as the
    /// backend allows: `InvalidState` otherwise) and returns it, usually `pending`
    /// until the copy is done, then `available`. `NotFound` when the instance is
    /// unknown; `AlreadyExists` when the backend wants unique names and has the name.
    async fn create_image(&self, _spec: &ImageSpec) -> Result<Image> {
        Err(Error::unsupported(Operation::CreateImage, self.name()))
    }

    /// Deletes an image the account made (`PermissionDenied` for a shared one; an
    /// image still in use by the backend's rules is `InvalidState`). Instances made
    /// from it go on. `NotFound` when unknown.
    async fn delete_image(&self, _id: &ImageId) -> Result<()> {
        Err(Error::unsupported(Operation::DeleteImage, self.name()))
    }

    /// One page of flavors.
    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>>;

    /// One page of networks.
    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>>;

    /// One network; `NotFound` when unknown.
    async fn get_network(&self, id: &NetworkId) -> Result<Network>;

    /// Creates a network.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network>;

    /// Deletes a network; `InvalidState` while instances use it.
    async fn delete_network(&self, id: &NetworkId) -> Result<()>;

    /// Every location.
    async fn list_locations(&self) -> Result<Vec<Location>>;

    /// Every key pair.
    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>>;

    /// Creates a key pair: generated by the backend when `spec.public_key` is `None`
    /// (the answer then carries the private key), imported otherwise.
    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair>;

    /// Deletes a key pair by name; `NotFound` when unknown.
    async fn delete_key_pair(&self, name: &str) -> Result<()>;

    /// One page of volumes matching `filter`, in a stable order (as
    /// [`list_instances`](Driver::list_instances) pages).
    async fn list_volumes(
        &self,
        _filter: &VolumeFilter,
        _page: &PageRequest,
    ) -> Result<Page<Volume>> {
        Err(Error::unsupported(Operation::ListVolumes, self.name()))
    }

    /// One volume; `NotFound` when unknown.
    async fn get_volume(&self, _id: &VolumeId) -> Result<Volume> {
        Err(Error::unsupported(Operation::GetVolume, self.name()))
    }

    /// Creates a volume, empty or from a snapshot (`NotFound` when the snapshot is
    /// unknown, `InvalidState` while it is not completed, `InvalidArgument` when the
    /// size is below the snapshot's), and returns it, usually `creating`, then
    /// `available`. Client tokens as in [`create_instance`](Driver::create_instance).
    async fn create_volume(&self, _spec: &VolumeSpec) -> Result<Volume> {
        Err(Error::unsupported(Operation::CreateVolume, self.name()))
    }

    /// Deletes a volume. An attached volume is `InvalidState` (detach it first); one
    /// already `deleting` answers as it is. `NotFound` when unknown.
    async fn delete_volume(&self, _id: &VolumeId) -> Result<()> {
        Err(Error::unsupported(Operation::DeleteVolume, self.name()))
    }

    /// Attaches a volume to an instance of the same location, at `device` or where the
    /// backend chooses, and returns the volume (`attaching`, then `in_use`).
    /// Attaching it again to the same instance answers it as it is; a volume attached
    /// elsewhere, or not `available`, is `InvalidState`; an instance that cannot take
    /// it now (terminated, or a backend that attaches only to running or stopped
    /// instances) is `InvalidState`. `NotFound` for an unknown volume or instance.
    async fn attach_volume(
        &self,
        _id: &VolumeId,
        _instance: &InstanceId,
        _device: Option<&str>,
    ) -> Result<Volume> {
        Err(Error::unsupported(Operation::AttachVolume, self.name()))
    }

    /// Detaches a volume from its instance and returns it (`detaching`, then
    /// `available`). A volume already `detaching` or `available` answers as it is.
    /// `NotFound` when unknown.
    async fn detach_volume(&self, _id: &VolumeId) -> Result<Volume> {
        Err(Error::unsupported(Operation::DetachVolume, self.name()))
    }

    /// One page of snapshots matching `filter`, in a stable order.
    async fn list_snapshots(
        &self,
        _filter: &SnapshotFilter,
        _page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        Err(Error::unsupported(Operation::ListSnapshots, self.name()))
    }

    /// One snapshot; `NotFound` when unknown.
    async fn get_snapshot(&self, _id: &SnapshotId) -> Result<Snapshot> {
        Err(Error::unsupported(Operation::GetSnapshot, self.name()))
    }

    /// Starts a snapshot of a volume and returns it (`pending` with its progress, then
    /// `completed`). `NotFound` when the volume is unknown; `InvalidState` when the
    /// volume cannot be copied now (creating, deleting, error).
    async fn create_snapshot(&self, _spec: &SnapshotSpec) -> Result<Snapshot> {
        Err(Error::unsupported(Operation::CreateSnapshot, self.name()))
    }

    /// Deletes a snapshot; volumes made from it go on. `NotFound` when unknown.
    async fn delete_snapshot(&self, _id: &SnapshotId) -> Result<()> {
        Err(Error::unsupported(Operation::DeleteSnapshot, self.name()))
    }

    /// One page of security groups matching `filter`, in a stable order.
    async fn list_security_groups(
        &self,
        _filter: &SecurityGroupFilter,
        _page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        Err(Error::unsupported(
            Operation::ListSecurityGroups,
            self.name(),
        ))
    }

    /// One security group; `NotFound` when unknown.
    async fn get_security_group(&self, _id: &SecurityGroupId) -> Result<SecurityGroup> {
        Err(Error::unsupported(Operation::GetSecurityGroup, self.name()))
    }

    /// Creates a security group and returns it, with the rules the backend gives every
    /// new group (EC2 lets all egress through). `AlreadyExists` when its network (or
    /// the account) has a group of that name; `NotFound` for an unknown network.
    async fn create_security_group(&self, _spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        Err(Error::unsupported(
            Operation::CreateSecurityGroup,
            self.name(),
        ))
    }

    /// Deletes a security group. The default group, a group instances are in, or one
    /// another group's rules name, is `InvalidState`. `NotFound` when unknown.
    async fn delete_security_group(&self, _id: &SecurityGroupId) -> Result<()> {
        Err(Error::unsupported(
            Operation::DeleteSecurityGroup,
            self.name(),
        ))
    }

    /// Adds rules to a group and returns the group. Rules it already holds are no
    /// error and are not doubled; a rule naming an unknown group is `NotFound`; an
    /// egress rule where the driver keeps none, or a group peer where it takes none,
    /// is `Unsupported`. Rules are checked by [`check_security_rules`](crate::check_security_rules).
    async fn add_security_rules(
        &self,
        _id: &SecurityGroupId,
        _rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        Err(Error::unsupported(Operation::AddSecurityRules, self.name()))
    }

    /// Removes rules from a group and returns the group; rules it does not hold are no
    /// error.
    async fn remove_security_rules(
        &self,
        _id: &SecurityGroupId,
        _rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        Err(Error::unsupported(
            Operation::RemoveSecurityRules,
            self.name(),
        ))
    }

    /// One page of public addresses matching `filter`, in a stable order.
    async fn list_addresses(
        &self,
        _filter: &AddressFilter,
        _page: &PageRequest,
    ) -> Result<Page<Address>> {
        Err(Error::unsupported(Operation::ListAddresses, self.name()))
    }

    /// One address; `NotFound` when unknown.
    async fn get_address(&self, _id: &AddressId) -> Result<Address> {
        Err(Error::unsupported(Operation::GetAddress, self.name()))
    }

    /// Allocates a public address to the account. `QuotaExceeded` when the account
    /// holds all it may.
    async fn allocate_address(&self, _spec: &AddressSpec) -> Result<Address> {
        Err(Error::unsupported(Operation::AllocateAddress, self.name()))
    }

    /// Releases an address. An associated address is `InvalidState` (disassociate it
    /// first, as EC2 asks in a VPC). `NotFound` when unknown.
    async fn release_address(&self, _id: &AddressId) -> Result<()> {
        Err(Error::unsupported(Operation::ReleaseAddress, self.name()))
    }

    /// Associates an address with an instance (its first private address, or
    /// `private_ip`, which must be one of the instance's), moving it from any instance
    /// it was associated with, and returns it; the instance then shows it in
    /// [`Instance::public_ips`]. Associating it again to the same place answers it as
    /// it is. An instance that is not running or stopped is `InvalidState`.
    /// `NotFound` for an unknown address or instance.
    async fn associate_address(
        &self,
        _id: &AddressId,
        _instance: &InstanceId,
        _private_ip: Option<&str>,
    ) -> Result<Address> {
        Err(Error::unsupported(Operation::AssociateAddress, self.name()))
    }

    /// Disassociates an address from its instance and returns it; an address not
    /// associated answers as it is. `NotFound` when unknown.
    async fn disassociate_address(&self, _id: &AddressId) -> Result<Address> {
        Err(Error::unsupported(
            Operation::DisassociateAddress,
            self.name(),
        ))
    }
}
