//! What a driver supports, declared as data.

use serde::{Deserialize, Serialize};

use crate::Operation;

/// What a driver can do with instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceCapabilities {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    pub start: bool,
    pub stop: bool,
    pub reboot: bool,
    pub delete: bool,
    /// A create with the same client token makes at most one instance.
    pub client_token: bool,
    /// Tags can be set at creation and are returned.
    pub tags: bool,
    /// Tags of an existing instance can be set and removed
    /// ([`Driver::update_instance_tags`](crate::Driver::update_instance_tags)).
    #[serde(default)]
    pub update_tags: bool,
    /// User data is passed to the instance.
    pub user_data: bool,
    /// What an instance's console showed can be read
    /// ([`Driver::console_output`](crate::Driver::console_output)).
    #[serde(default)]
    pub console_output: bool,
    /// Instances keep the owner given at creation ([`InstanceSpec::owner`](crate::InstanceSpec::owner)),
    /// in the same backend call, and listings filter by it
    /// ([`InstanceFilter::owner`](crate::InstanceFilter::owner)).
    #[serde(default)]
    pub owner: bool,
    /// Instances are created in the security groups the spec names
    /// ([`InstanceSpec::security_group_ids`](crate::InstanceSpec::security_group_ids))
    /// and show theirs.
    #[serde(default)]
    pub security_groups: bool,
    /// Instances are created with the volumes the spec asks for
    /// ([`InstanceSpec::volumes`](crate::InstanceSpec::volumes)) and show the volumes
    /// attached to them.
    #[serde(default)]
    pub volumes: bool,
    /// The largest page the driver returns (0: no pagination, everything at once).
    pub max_page_size: u32,
}

/// What a driver can do with images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageCapabilities {
    pub list: bool,
    pub get: bool,
    /// Images can be captured from instances ([`Driver::create_image`](crate::Driver::create_image)).
    #[serde(default)]
    pub create: bool,
    /// Images the account made can be deleted.
    #[serde(default)]
    pub delete: bool,
    /// Captured images keep the owner given ([`ImageSpec::owner`](crate::ImageSpec::owner))
    /// and listings filter by it ([`ImageFilter`](crate::ImageFilter)).
    #[serde(default)]
    pub owner: bool,
}

/// What a driver can do with volumes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct VolumeCapabilities {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    pub delete: bool,
    pub attach: bool,
    pub detach: bool,
    /// Volumes can be made from snapshots.
    pub from_snapshot: bool,
    /// A create with the same client token makes at most one volume.
    pub client_token: bool,
    /// Tags can be set at creation and are returned.
    pub tags: bool,
    /// Volumes keep the owner given at creation and listings filter by it.
    pub owner: bool,
    /// The largest page the driver returns (0: everything at once).
    pub max_page_size: u32,
}

/// What a driver can do with snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SnapshotCapabilities {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    pub delete: bool,
    /// Tags can be set at creation and are returned.
    pub tags: bool,
    /// Snapshots keep the owner given at creation and listings filter by it.
    pub owner: bool,
}

/// What a driver can do with security groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SecurityGroupCapabilities {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    pub delete: bool,
    /// Rules can be added and removed.
    pub update_rules: bool,
    /// Egress rules are kept (otherwise only ingress rules are).
    pub egress: bool,
    /// Rules can name another group as their peer.
    pub group_peers: bool,
    /// Tags can be set at creation and are returned.
    pub tags: bool,
    /// Groups keep the owner given at creation and listings filter by it.
    pub owner: bool,
}

/// What a driver can do with public addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AddressCapabilities {
    pub list: bool,
    pub get: bool,
    pub allocate: bool,
    pub release: bool,
    pub associate: bool,
    pub disassociate: bool,
    /// Tags can be set at allocation and are returned.
    pub tags: bool,
    /// Addresses keep the owner given at allocation and listings filter by it.
    pub owner: bool,
}

/// What a driver can do with flavors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlavorCapabilities {
    pub list: bool,
}

/// What a driver can do with networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkCapabilities {
    pub list: bool,
    pub get: bool,
    pub create: bool,
    pub delete: bool,
}

/// What a driver can do with locations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocationCapabilities {
    pub list: bool,
}

/// What a driver can do with key pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPairCapabilities {
    pub list: bool,
    /// The backend generates a key pair and returns its private key.
    pub create: bool,
    /// The backend accepts a public key.
    pub import: bool,
    pub delete: bool,
}

/// Everything a driver declares it supports.
///
/// A driver fills this in once; an operation whose flag is false answers
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), and the conformance
/// testkit checks that it does. Nothing outside a driver asks which backend it is.
///
/// ```
/// use cms_core::{Capabilities, Operation};
/// let caps = Capabilities::all();
/// assert!(caps.supports(Operation::RebootInstance));
/// assert!(!Capabilities::none().supports(Operation::ListImages));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    pub instances: InstanceCapabilities,
    pub images: ImageCapabilities,
    pub flavors: FlavorCapabilities,
    pub networks: NetworkCapabilities,
    pub locations: LocationCapabilities,
    pub key_pairs: KeyPairCapabilities,
    #[serde(default)]
    pub volumes: VolumeCapabilities,
    #[serde(default)]
    pub snapshots: SnapshotCapabilities,
    #[serde(default)]
    pub security_groups: SecurityGroupCapabilities,
    #[serde(default)]
    pub addresses: AddressCapabilities,
}

impl Capabilities {
    /// Nothing supported: the start of a declaration.
    pub fn none() -> Self {
        Capabilities::default()
    }

    /// Everything supported, pages of up to 1000 items.
    pub fn all() -> Self {
        Capabilities {
            instances: InstanceCapabilities {
                list: true,
                get: true,
                create: true,
                start: true,
                stop: true,
                reboot: true,
                delete: true,
                client_token: true,
                tags: true,
                update_tags: true,
                user_data: true,
                console_output: true,
                owner: true,
                security_groups: true,
                volumes: true,
                max_page_size: 1000,
            },
            images: ImageCapabilities {
                list: true,
                get: true,
                create: true,
                delete: true,
                owner: true,
            },
            flavors: FlavorCapabilities { list: true },
            networks: NetworkCapabilities {
                list: true,
                get: true,
                create: true,
                delete: true,
            },
            locations: LocationCapabilities { list: true },
            key_pairs: KeyPairCapabilities {
                list: true,
                create: true,
                import: true,
                delete: true,
            },
            volumes: VolumeCapabilities {
                list: true,
                get: true,
                create: true,
                delete: true,
                attach: true,
                detach: true,
                from_snapshot: true,
                client_token: true,
                tags: true,
                owner: true,
                max_page_size: 1000,
            },
            snapshots: SnapshotCapabilities {
                list: true,
                get: true,
                create: true,
                delete: true,
                tags: true,
                owner: true,
            },
            security_groups: SecurityGroupCapabilities {
                list: true,
                get: true,
                create: true,
                delete: true,
                update_rules: true,
                egress: true,
                group_peers: true,
                tags: true,
                owner: true,
            },
            addresses: AddressCapabilities {
                list: true,
                get: true,
                allocate: true,
                release: true,
                associate: true,
                disassociate: true,
                tags: true,
                owner: true,
            },
        }
    }

    /// Whether the driver declares the operation.
    pub fn supports(&self, op: Operation) -> bool {
        use Operation::*;
        match op {
            ListInstances => self.instances.list,
            GetInstance => self.instances.get,
            CreateInstance => self.instances.create,
            StartInstance => self.instances.start,
            StopInstance => self.instances.stop,
            RebootInstance => self.instances.reboot,
            DeleteInstance => self.instances.delete,
            UpdateInstanceTags => self.instances.update_tags,
            GetConsoleOutput => self.instances.console_output,
            ListImages => self.images.list,
            GetImage => self.images.get,
            ListFlavors => self.flavors.list,
            ListNetworks => self.networks.list,
            GetNetwork => self.networks.get,
            CreateNetwork => self.networks.create,
            DeleteNetwork => self.networks.delete,
            ListLocations => self.locations.list,
            ListKeyPairs => self.key_pairs.list,
            CreateKeyPair => self.key_pairs.create,
            ImportKeyPair => self.key_pairs.import,
            DeleteKeyPair => self.key_pairs.delete,
            ListVolumes => self.volumes.list,
            GetVolume => self.volumes.get,
            CreateVolume => self.volumes.create,
            DeleteVolume => self.volumes.delete,
            AttachVolume => self.volumes.attach,
            DetachVolume => self.volumes.detach,
            ListSnapshots => self.snapshots.list,
            GetSnapshot => self.snapshots.get,
            CreateSnapshot => self.snapshots.create,
            DeleteSnapshot => self.snapshots.delete,
            CreateImage => self.images.create,
            DeleteImage => self.images.delete,
            ListSecurityGroups => self.security_groups.list,
            GetSecurityGroup => self.security_groups.get,
            CreateSecurityGroup => self.security_groups.create,
            DeleteSecurityGroup => self.security_groups.delete,
            AddSecurityRules | RemoveSecurityRules => self.security_groups.update_rules,
            ListAddresses => self.addresses.list,
            GetAddress => self.addresses.get,
            AllocateAddress => self.addresses.allocate,
            ReleaseAddress => self.addresses.release,
            AssociateAddress => self.addresses.associate,
            DisassociateAddress => self.addresses.disassociate,
        }
    }
}
