//! # cms-driver-opennebula
//!
//! The cms driver for OpenNebula: it speaks oned's XML-RPC API (`http://HOST:2633/RPC2`)
//! and offers OpenNebula's VMs, images and VM templates, virtual networks, clusters,
//! the user's SSH keys, DATABLOCK images (as volumes and snapshots) and security groups
//! through the one cms model, so that everything built on
//! [`cms_core::Cloud`] (the layers, the server, its EC2 and CIMI frontends) works on
//! OpenNebula. With the `fake` feature it also carries [`fake::FakeOned`], a
//! wire-level fake of oned for tests.
//!
//! ```
//! use std::time::Duration;
//! use cms_core::{Cloud, InstanceSpec, InstanceState};
//! use cms_driver_opennebula::fake::{FakeConfig, FakeOned};
//! use cms_driver_opennebula::{OpenNebulaConfig, OpenNebulaDriver};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! let oned = FakeOned::start(FakeConfig::default()); // a fake oned on 127.0.0.1
//! let config = OpenNebulaConfig::from_toml(&format!(
//!     r#"
//!     endpoint = "{}"
//!     username = "{}"
//!     password_env = "ONE_PASSWORD"
//!
//!     [[sizes]]
//!     name = "small"
//!     cpu = 0.5
//!     vcpu = 1
//!     memory_mib = 1024
//!     "#,
//!     oned.endpoint(),
//!     oned.username()
//! ))?;
//! // `OpenNebulaDriver::new(config)` reads the password from $ONE_PASSWORD; here the
//! // caller holds it.
//! let driver = OpenNebulaDriver::with_session(config, oned.username(), oned.password())?;
//! let cloud = Cloud::builder(driver).provider("one").build();
//!
//! let spec = InstanceSpec::new("image:0", "small").name("web-1").tag("env", "demo");
//! let vm = cloud.create_and_wait(&spec, Duration::from_secs(10)).await?;
//! assert_eq!(vm.state, InstanceState::Running);
//! assert_eq!(vm.raw_state, "ACTIVE/RUNNING");
//! assert_eq!(vm.tags["env"], "demo");
//!
//! let gone = cloud.delete_instance(&vm.id).await?;
//! assert_eq!(gone.state, InstanceState::Terminating);
//! # Ok(())
//! # }
//! ```
//!
//! ## Rooms
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`OpenNebulaConfig`]: endpoint, user, where the password is, sizes, default network |
//! | [`client`] | the XML-RPC transport ([`client::OneClient`]) and the classification of OpenNebula's errors |
//! | [`xmlrpc`] | XML-RPC values and envelopes |
//! | [`model`] | the documents oned answers (`VM`, `VM_POOL`, `IMAGE_POOL`, …) |
//! | [`paging`] | exact paging over pools that change |
//! | [`driver`] | [`OpenNebulaDriver`], the id scheme, and the STATE/LCM_STATE mapping ([`driver::map_state`]) |
//! | [`driver::volumes`] | volumes and snapshots as DATABLOCK images, hot-plug, their state mapping ([`driver::map_volume_state`]) |
//! | [`driver::security_groups`] | security groups and their RULE vectors ([`driver::rules_of`]) |
//! | [`driver::images`] | images captured from instances (`one.vm.disksaveas`), deleting images |
//! | [`fake`] | the fake oned (feature `fake`) |
//!
//! ## What it covers, and what not
//!
//! | cms | OpenNebula |
//! |---|---|
//! | instances | VMs (`one.vm.*`, listed with `one.vmpool.infoextended`) |
//! | images | OS images and VM templates; captures with `one.vm.disksaveas`; `shared` = another user's |
//! | volumes | persistent DATABLOCK images in the configured `volume_datastore`, attached with `one.vm.attach` / `one.vm.detach` (VMs RUNNING or POWEROFF only) |
//! | snapshots | non-persistent DATABLOCK images: `one.image.clone` copies of volumes (of volumes no VM uses) |
//! | security groups | `one.secgroup.*`; instances are in them through their NICs; group 0 is the default |
//! | flavors, networks, locations, key pairs | configured sizes and template capacities, virtual networks, clusters, the user's `SSH_PUBLIC_KEY` |
//!
//! The capabilities ([`driver::capabilities`]) declare all of it, and leave out:
//! public addresses (OpenNebula's core API has no address that outlives a VM: a NIC's
//! address is a lease of its network), console output (OpenNebula's consoles are VNC
//! and SPICE sessions), security group rules naming other groups (OpenNebula's rules
//! name addresses or networks) and ICMP codes (it filters on ICMP types). Those answer
//! `Unsupported`. A snapshot of an attached volume is `InvalidState` (OpenNebula
//! copies a persistent image only while no VM uses it), and a volume made from a
//! snapshot has the snapshot's size (OpenNebula resizes disks only through a VM).
//!
//! Not covered: OpenNebula's other VM operations (suspend, undeploy, migrate, resize,
//! VM and disk snapshots, NIC hot-plug, backups), virtual routers, VM groups,
//! marketplaces, hooks, ACLs, zones and federation, OpenNebula's gRPC API, and login
//! tokens other than passed as the password. The cms model has no place for them yet.
//! Key pairs live in the user's `SSH_PUBLIC_KEY`, so they are shared by every client
//! logged in as that user, and concurrent changes from two processes may lose one
//! (OpenNebula has no compare-and-set on user templates); the same holds for the rules
//! of a security group changed from two processes.

pub mod client;
pub mod config;
pub mod driver;
#[cfg(feature = "fake")]
pub mod fake;
pub mod fuzz;
pub mod model;
pub mod paging;
pub(crate) mod xml;
pub mod xmlrpc;

pub use config::{OpenNebulaConfig, Size};
pub use driver::OpenNebulaDriver;

/// A driver from configuration in any serde format (the server's TOML provider table,
/// say); the password comes from `password_env` or `auth_file`. Errors name the key
/// that is wrong.
pub fn driver_from_config<'de, D: serde::Deserializer<'de>>(
    config: D,
) -> cms_core::Result<OpenNebulaDriver> {
    OpenNebulaDriver::new(OpenNebulaConfig::from_deserializer(config)?)
}
