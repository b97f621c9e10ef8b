//! # cms-driver-remote
//!
//! Another cms server as a backend: a [`Driver`](cms_core::Driver) over one provider of
//! its native API (`/v1`), so that a Rust program holds a remote provider exactly as a
//! local one, and a cms server lists another server's provider among its own
//! (`driver = "cms"` in its configuration: federation). The same [`Client`] is what
//! the `cms` command line talks through.
//!
//! ```no_run
//! use cms_core::{Cloud, InstanceFilter};
//! use cms_driver_remote::{RemoteConfig, RemoteDriver};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! // The API key is read from UPSTREAM_KEY; the provider `local` of that server.
//! let config = RemoteConfig::new("http://127.0.0.1:8080", "local", "UPSTREAM_KEY");
//! let cloud = Cloud::builder(RemoteDriver::connect(&config).await?)
//!     .provider("upstream")
//!     .build();
//! for vm in cloud.collect_instances(&InstanceFilter::default()).await? {
//!     println!("{} {}", vm.id, vm.state);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Errors are the server's problem documents turned back into the same
//! [`ErrorKind`](cms_core::ErrorKind)s, with their temporary flag, retry-after and
//! request id (context `request_id`) kept, so the retry layer on this side decides as
//! the other side would. The crate has no fake: its tests run the real server.
//!
//! Rooms, as in every driver crate: `config.rs` (where and how to call), `client.rs`
//! (the HTTP transport and the problem mapping), `model.rs` (the documents),
//! `driver.rs` (the `Driver` impl and what the model maps onto).

mod client;
mod config;
mod driver;
mod model;

pub use client::Client;
pub use config::{check_endpoint, ApiKey, RemoteConfig};
pub use driver::{RemoteDriver, OWNER_TAG, RESERVED_TAGS, TOKEN_TAG};
pub use model::{AllInstances, ProviderError, ProviderInfo, ProviderInstance};

/// The driver's name, as in `driver = "cms"`.
pub const DRIVER: &str = "cms";

/// The largest page the native API serves.
pub const MAX_PAGE: u32 = 1000;

/// Connects to the provider a configuration names (see [`RemoteDriver::connect`]).
pub async fn driver_from_config(config: &RemoteConfig) -> cms_core::Result<RemoteDriver> {
    RemoteDriver::connect(config).await
}
