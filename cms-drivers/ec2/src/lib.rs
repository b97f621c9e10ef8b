//! # cms-driver-ec2
//!
//! The cms driver for Amazon EC2 and for any EC2-compatible endpoint (moto, private
//! clouds with an EC2 API, cms's own EC2 frontend), built on `aws-sdk-ec2`.
//!
//! | cms | EC2 |
//! |---|---|
//! | instance | instance (RunInstances, DescribeInstances, Start/Stop/Reboot/TerminateInstances; tags: CreateTags, DeleteTags) |
//! | image | AMI (DescribeImages, owners from [`Ec2Config::image_owners`]) |
//! | flavor | instance type (DescribeInstanceTypes) |
//! | network | VPC subnet (Describe/Create/DeleteSubnet) |
//! | location | availability zone (DescribeAvailabilityZones) |
//! | key pair | key pair (Create/Import/Describe/DeleteKeyPair) |
//!
//! What the driver adds to EC2, so that it behaves as the cms model says on every
//! EC2-compatible endpoint:
//!
//! - **Names** are the `Name` tag; a name filter is a `tag:Name` filter.
//! - **Tags** of the user are the instance's tags but `Name` and the driver's own
//!   `cms:` tags, which are never shown, set or removed through cms (`aws:` keys are
//!   EC2's and refused too). A tag update is CreateTags and DeleteTags (by key, so a
//!   tag goes whatever its value) after a DescribeInstances that answers `NotFound`
//!   for an unknown instance, which some EC2-compatible servers would tag anyway.
//! - **State rules**: starting a running instance, stopping a stopped one or rebooting
//!   a stopped one answer `InvalidState` (EC2 lets the first two pass, moto all
//!   three); the driver looks at the state first (see [`Ec2Driver`]'s `decide` table
//!   in `driver.rs`).
//! - **Client tokens**: `ClientToken` is sent, and the instance is also tagged
//!   `cms:client-token` (with `cms:request-hash`, a hash of the request), and looked
//!   up by that tag before a create, because some EC2-compatible servers record
//!   `ClientToken` without enforcing it. The same token with another request answers
//!   `InvalidArgument` with context `reason=idempotent_parameter_mismatch`.
//! - **Paging**: every `NextToken` is followed; cms pages of any size are cut from
//!   EC2 pages (which are 5 to 1000 items, or everything when a server ignores
//!   `MaxResults`); page tokens are checked, so a foreign token is `InvalidArgument`.
//! - **Errors** are classified once from EC2 error codes ([`classify`]); the code is
//!   kept in the error's context (`ec2_code`). A 200 answer that cannot be read is a
//!   `Backend` error that says why.
//! - **Listing** reads `DescribeInstances` answers with the driver's own reader
//!   (quick-xml, only the fields cms maps, text borrowed from the answer), five to six
//!   times faster than the SDK's reader of the whole `Instance` shape; the SDK still
//!   signs, sends, times out and reads every error. It reads as the SDK does (tested
//!   against it on moto's answers and on answers written from botocore's EC2 model),
//!   except that a malformed field cms does not use does not fail the listing, and an
//!   answer that is not well-formed XML (cut short, say) is an error, where the SDK
//!   would list the instances before the cut.
//! - **Deletes** of an unknown key pair answer `NotFound` (EC2 succeeds silently), and
//!   of a subnet still in use `InvalidState`.
//!
//! The SDK's own retries are off: wrap the driver in cms's retry layer.
//!
//! ```no_run
//! use std::time::Duration;
//! use cms_core::{layers::RetryPolicy, Cloud, InstanceSpec};
//! use cms_driver_ec2::{Ec2Config, Ec2Driver};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cms_core::Result<()> {
//! // Region and endpoint from CMS_EC2_REGION / CMS_EC2_ENDPOINT, credentials from the
//! // standard AWS chain.
//! let driver = Ec2Driver::new(Ec2Config::from_env()?).await?;
//! let cloud = Cloud::builder(driver)
//!     .provider("aws")
//!     .retry(RetryPolicy::default())
//!     .timeout(Duration::from_secs(30))
//!     .build();
//! let spec = InstanceSpec::new("ami-0123456789abcdef0", "t3.micro")
//!     .name("web-1")
//!     .client_token("web-1-create");
//! let vm = cloud.create_and_wait(&spec, Duration::from_secs(300)).await?;
//! println!("{} is {} ({})", vm.id, vm.state, vm.raw_state);
//! cloud.delete_instance(&vm.id).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Tests run against moto, a third-party EC2 implementation, which the `moto`
//! feature's `moto::MotoServer` installs and starts; `canned::CannedEc2` serves
//! answers recorded from it, for the listing benchmark (`cargo bench -p
//! cms-driver-ec2 --bench list`) and the reader's tests.

#[cfg(feature = "moto")]
pub mod canned;
mod client;
pub mod config;
mod describe;
pub mod driver;
mod model;
#[cfg(feature = "moto")]
pub mod moto;

pub use config::{Ec2Config, StaticCredentials};
pub use driver::{classify, map_state, Classified, Ec2Driver, Failure};
