//! Public addresses that outlive instances (EC2 Elastic IPs, Neutron floating IPs).

use serde::{Deserialize, Serialize};

use super::{check_owner, check_tags, InstanceId, Tags};

id_type!(
    /// The backend's id of a public address (EC2 `eipalloc-…`, a Neutron floating IP UUID).
    AddressId
);

/// A public IPv4 address held by the account, which can be moved between instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Address {
    /// The backend's id.
    pub id: AddressId,
    /// The address (`203.0.113.25`).
    pub ip: String,
    /// The instance it is associated with.
    #[serde(default)]
    pub instance_id: Option<InstanceId>,
    /// The instance's private address it leads to.
    #[serde(default)]
    pub private_ip: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who it was allocated for ([`AddressSpec::owner`]).
    #[serde(default)]
    pub owner: Option<String>,
}

/// What to allocate: the arguments of
/// [`Driver::allocate_address`](crate::Driver::allocate_address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressSpec {
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who the address is for, kept by the backend with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Checks an address spec: the owner and tags. Errors are `InvalidArgument` for
/// [`Operation::AllocateAddress`](crate::Operation::AllocateAddress).
pub fn check_address_spec(spec: &AddressSpec) -> crate::Result<()> {
    let check = || -> crate::Result<()> {
        if let Some(o) = &spec.owner {
            check_owner(o)?;
        }
        check_tags(&spec.tags)
    };
    check().map_err(|e| e.with_operation(crate::Operation::AllocateAddress))
}
