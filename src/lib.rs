//! # cms
//!
//! One model and one async API over many clouds. This umbrella crate re-exports
//! [`cms_core`] (the model, the [`Driver`] trait, errors, layers and the in-memory
//! cloud); drivers for real backends are enabled by features.
//!
//! ```
//! use cms::{memory::MemoryCloud, Cloud};
//! let cloud = Cloud::builder(MemoryCloud::new()).provider("local").build();
//! assert_eq!(cloud.provider(), "local");
//! ```

pub use cms_core::*;

/// The EC2 driver (feature `ec2`).
#[cfg(feature = "ec2")]
pub use cms_driver_ec2 as ec2;

/// The OpenNebula driver (feature `opennebula`).
#[cfg(feature = "opennebula")]
pub use cms_driver_opennebula as opennebula;
/// The OpenStack driver (feature `openstack`).
#[cfg(feature = "openstack")]
pub use cms_driver_openstack as openstack;

/// The driver for another cms server, and its client (feature `remote`).
#[cfg(feature = "remote")]
pub use cms_driver_remote as remote;
