//! # cms-driver-ec2
//!
//! The cms driver for Amazon EC2 and for any EC2-compatible endpoint (moto, private
//! clouds with an EC2 API, cms's own EC2 frontend), built on `aws-sdk-ec2`.
//!
//! | cms | EC2 |
//! |---|---|
//! | instance | instance (RunInstances with `SecurityGroupIds` and `BlockDeviceMappings`, DescribeInstances, Start/Stop/Reboot/TerminateInstances; tags: CreateTags, DeleteTags) |
//! | image | AMI (DescribeImages of the owners in [`Ec2Config::image_owners`] and the account's own; CreateImage, DeregisterImage) |
//! | flavor | instance type (DescribeInstanceTypes) |
//! | network | VPC subnet (Describe/Create/DeleteSubnet) |
//! | location | availability zone (DescribeAvailabilityZones) |
//! | key pair | key pair (Create/Import/Describe/DeleteKeyPair) |
//! | volume | EBS volume (Create/Describe/Attach/Detach/DeleteVolume) |
//! | snapshot | EBS snapshot of the account (`OwnerIds=self`; Create/Describe/DeleteSnapshot) |
//! | security group | VPC security group (Create/Describe/DeleteSecurityGroup, Authorize/RevokeSecurityGroupIngress and Egress) |
//! | address | Elastic IP in the VPC domain (Allocate/Describe/Associate/Disassociate/ReleaseAddress) |
//!
//! States are mapped by one function per resource, each with its table:
//! [`map_state`] (instances), [`map_volume_state`] (a volume's `State` and its
//! attachment's), [`map_snapshot_state`], [`map_image_state`].
//!
//! What the driver adds to EC2, so that it behaves as the cms model says on every
//! EC2-compatible endpoint:
//!
//! - **Names** are the `Name` tag (instances, volumes, snapshots); a name filter is a
//!   `tag:Name` filter. Images and groups have EC2 names of their own; for them, and
//!   for addresses, a `Name` tag is refused (it would not show among the tags).
//! - **Owners** of every resource are the reserved `cms:owner` tag, written in the
//!   create call itself (`TagSpecifications`), and owner filters go down to EC2 as
//!   `tag:cms:owner` filters, as do ids (`volume-id`, `group-id`, …) and tags, so
//!   that pages are exact. A listing that needs two EC2 listings (an owner's images
//!   and the shared ones; an owner's groups and the default ones) reads them one
//!   after the other within one cms listing.
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
//!   `InvalidArgument` with context `reason=idempotent_parameter_mismatch`. Volumes
//!   (CreateVolume's `ClientToken`) work the same way.
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
//! - **Volumes** made with an instance (`InstanceSpec::volumes`) are EBS block device
//!   mappings (`VolumeSize`, `SnapshotId`, `DeleteOnTermination`); EC2 wants a device
//!   name, so one without a device gets the first of `/dev/sdf` … `/dev/sdz` that no
//!   other volume of the spec names (EC2's recommended names for EBS data volumes; an
//!   AMI's root device is `/dev/sda1` or `/dev/xvda`). [`attach_volume`](cms_core::Driver::attach_volume)
//!   without a device likewise takes the first of those the instance does not use. A
//!   volume is made in the spec's zone, else in the region's first available zone.
//!   Instances show their groups (`groupSet`) and their EBS volumes
//!   (`blockDeviceMapping`). An instance made in no group is put in its VPC's
//!   `default` group, as EC2 does (moto would put it in none).
//! - **Images**: an image is `shared` when its `OwnerId` is not the account's (the
//!   account's id is read once, from what it owns), and only the account's own show
//!   an owner (their `cms:owner` tag) and can be deleted (`PermissionDenied`
//!   otherwise). Capture wants a running or stopped instance and a name the account
//!   has not used. The snapshots of an image the driver captured go with it
//!   (`DeleteAssociatedSnapshots`, and the driver deletes those a server leaves).
//! - **Security groups**: a cms network is a subnet and EC2 scopes groups by VPC; a
//!   group is made in the VPC of the spec's network (the driver's VPC without one) and
//!   shows that network (kept in a `cms:network` tag); groups made outside cms show
//!   their VPC's first subnet (see `security_groups.rs`). Rules map to `IpPermissions`
//!   one per (permission, peer), so they read back as added; a rule held already is
//!   not sent again and only held rules are revoked, so adding and removing repeat
//!   harmlessly. New groups keep EC2's egress rule (all traffic to `0.0.0.0/0`),
//!   shown as a rule. EC2 wants a description: an empty one is sent as the name and
//!   shown empty.
//! - **Checks EC2 makes and EC2-compatible servers (moto) skip** are made by the
//!   driver first: attaching a volume attached elsewhere, to an instance of another
//!   zone or one not running or stopped; deleting an attached volume, the default
//!   group, a group instances are in or other groups' rules name; releasing an
//!   associated address; associating with an instance not running or stopped; a
//!   volume from a snapshot that is not completed, or smaller than the snapshot.
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

mod addresses;
#[cfg(feature = "moto")]
pub mod canned;
mod client;
pub mod config;
mod describe;
pub mod driver;
mod images;
mod model;
#[cfg(feature = "moto")]
pub mod moto;
mod security_groups;
mod volumes;

pub use config::{Ec2Config, StaticCredentials};
pub use driver::{
    classify, map_image_state, map_snapshot_state, map_state, map_volume_state, Classified,
    Ec2Driver, Failure,
};
