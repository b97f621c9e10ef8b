//! # cms-core
//!
//! One model of compute resources (instances, images, flavors, networks, locations,
//! key pairs; volumes and snapshots, security groups, public addresses), one object-safe async [`Driver`] trait with declared [`Capabilities`],
//! one [`Error`], layers that wrap any driver (retry, timeout, concurrency limit,
//! metrics, fault injection), an in-memory cloud ([`memory`]) and, behind the
//! `testkit` feature, the conformance suite every driver passes.
//!
//! ```
//! use std::time::Duration;
//! use cms_core::{memory::MemoryCloud, Cloud, InstanceSpec, InstanceState, InstanceFilter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! let cloud = Cloud::builder(MemoryCloud::new()).provider("local").build();
//! let image = &cloud.list_images(&Default::default(), &Default::default()).await?.items[0];
//! let flavor = &cloud.list_flavors(&Default::default()).await?.items[0];
//!
//! let spec = InstanceSpec::new(image.id.clone(), flavor.id.clone()).name("web-1");
//! let vm = cloud.create_and_wait(&spec, Duration::from_secs(10)).await?;
//! assert_eq!(vm.state, InstanceState::Running);
//!
//! let all = cloud.collect_instances(&InstanceFilter::default()).await?;
//! assert_eq!(all.len(), 1);
//! cloud.delete_instance(&vm.id).await?;
//! # Ok(())
//! # }
//! ```

pub mod capabilities;
pub mod cloud;
pub mod config;
pub mod driver;
pub mod error;
pub mod layers;
pub mod memory;
pub mod model;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use capabilities::*;
pub use cloud::{Cloud, CloudBuilder};
pub use driver::Driver;
pub use error::{Error, ErrorKind, Operation, Result};
pub use model::*;
