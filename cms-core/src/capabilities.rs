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
    /// The largest page the driver returns (0: no pagination, everything at once).
    pub max_page_size: u32,
}

/// What a driver can do with images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageCapabilities {
    pub list: bool,
    pub get: bool,
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
                max_page_size: 1000,
            },
            images: ImageCapabilities {
                list: true,
                get: true,
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
        }
    }
}
