//! The [`Driver`] implementation over EC2: state mapping, error classification, and
//! every operation.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types as ec2;
use cms_core::{
    ActionDecision, Address, AddressFilter, AddressId, AddressSpec, Capabilities, ConsoleOutput,
    Driver, Error, ErrorKind, Flavor, Image, ImageFilter, ImageId, ImageSpec, ImageState, Instance,
    InstanceAction, InstanceFilter, InstanceId, InstanceSpec, InstanceState, KeyPair, KeyPairSpec,
    Location, Network, NetworkId, NetworkSpec, Operation, Page, PageRequest, Result, SecurityGroup,
    SecurityGroupFilter, SecurityGroupId, SecurityGroupSpec, SecurityRule, Snapshot,
    SnapshotFilter, SnapshotId, SnapshotSpec, SnapshotState, TagChanges, Volume, VolumeFilter,
    VolumeId, VolumeSpec, VolumeState,
};

use crate::config::Ec2Config;
use crate::describe::Capture;
use crate::model::{self, Cursor};

/// Instances in a page when the caller gives no size (catalogue listings default to
/// the largest page).
const DEFAULT_PAGE: u32 = 100;
/// The largest page: EC2's `MaxResults` cap for instances, images, subnets,
/// snapshots and security groups.
pub(crate) const MAX_PAGE: u32 = 1000;
/// EC2's smallest `MaxResults`.
pub(crate) const MIN_EC2_PAGE: u32 = 5;
/// `DescribeInstanceTypes` takes at most 100.
const MAX_INSTANCE_TYPES_PAGE: u32 = 100;

/// The states in which an instance still uses its subnet.
pub(crate) const LIVE_STATES: [&str; 5] =
    ["pending", "running", "shutting-down", "stopping", "stopped"];

/// A driver for Amazon EC2 and EC2-compatible endpoints (moto, private clouds with an
/// EC2 API, cms's own EC2 frontend). See the [crate documentation](crate).
///
/// Cloning is cheap; clones share the SDK client.
#[derive(Clone)]
pub struct Ec2Driver {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_ec2::Client,
    config: Ec2Config,
    capabilities: Capabilities,
    /// One lock per client token in flight, so that concurrent creates with the same
    /// token through this driver make one instance even where the endpoint does not
    /// enforce `ClientToken`.
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The VPC networks are created in, once found.
    vpc: tokio::sync::OnceCell<String>,
    /// The account's id, once found (see [`Ec2Driver::account`]).
    account: tokio::sync::OnceCell<String>,
    /// The zone volumes are made in when the spec names none, once found.
    zone: tokio::sync::OnceCell<String>,
    /// The default security group of the VPC of a subnet (`""`: of no subnet, the
    /// default VPC), once found (see [`Ec2Driver::default_group_for`]).
    default_groups: Mutex<HashMap<String, String>>,
    pages: Pages,
}

/// EC2 pages being handed out in parts, per listing.
pub(crate) struct Pages {
    instances: PageCache<Instance>,
    pub(crate) images: PageCache<Image>,
    flavors: PageCache<Flavor>,
    networks: PageCache<Network>,
    pub(crate) volumes: PageCache<Volume>,
    pub(crate) snapshots: PageCache<Snapshot>,
    pub(crate) security_groups: PageCache<SecurityGroup>,
    pub(crate) addresses: PageCache<Address>,
}

impl fmt::Debug for Ec2Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Driver")
            .field("region", &self.inner.config.region)
            .field("endpoint", &self.inner.config.endpoint)
            .finish_non_exhaustive()
    }
}

impl Ec2Driver {
    /// A driver for `config`: checks it, resolves where credentials come from and
    /// builds the SDK client. Nothing is sent to EC2 yet.
    pub async fn new(config: Ec2Config) -> Result<Ec2Driver> {
        let client = crate::client::build(&config).await?;
        Ok(Ec2Driver::with_client(client, config))
    }

    /// A driver over an SDK client built elsewhere; `config` supplies the image
    /// owners and the VPC. The client should have SDK retries off (cms retries).
    pub fn with_client(client: aws_sdk_ec2::Client, config: Ec2Config) -> Ec2Driver {
        // Every family the model has, each operation carried out on EC2 (see the
        // crate documentation for what the driver adds where EC2 is more lenient).
        let mut capabilities = Capabilities::all();
        capabilities.instances.max_page_size = MAX_PAGE;
        capabilities.volumes.max_page_size = MAX_PAGE;
        Ec2Driver {
            inner: Arc::new(Inner {
                client,
                config,
                capabilities,
                creating: Mutex::new(HashMap::new()),
                vpc: tokio::sync::OnceCell::new(),
                account: tokio::sync::OnceCell::new(),
                zone: tokio::sync::OnceCell::new(),
                default_groups: Mutex::new(HashMap::new()),
                pages: Pages {
                    instances: PageCache::new(),
                    images: PageCache::new(),
                    flavors: PageCache::new(),
                    networks: PageCache::new(),
                    volumes: PageCache::new(),
                    snapshots: PageCache::new(),
                    security_groups: PageCache::new(),
                    addresses: PageCache::new(),
                },
            }),
        }
    }

    /// The SDK client, for what cms does not model.
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.inner.client
    }

    /// The configuration.
    pub fn config(&self) -> &Ec2Config {
        &self.inner.config
    }

    pub(crate) fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.inner.client
    }

    pub(crate) fn pages(&self) -> &Pages {
        &self.inner.pages
    }

    /// Turns an SDK error into a cms error (see [`classify`]).
    pub(crate) fn fail<E>(
        &self,
        op: Operation,
        resource: Option<String>,
    ) -> impl FnOnce(SdkError<E, HttpResponse>) -> Error + '_
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        move |e| sdk_error(e, op, resource, self.inner.config.endpoint.as_deref())
    }

    /// One instance by id, for operation `op`.
    pub(crate) async fn describe_instance(
        &self,
        id: &InstanceId,
        op: Operation,
    ) -> Result<Instance> {
        let resource = format!("instance {id}");
        let out = self
            .ec2()
            .describe_instances()
            .instance_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(resource.clone())))?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.instance_id() == Some(id.as_str()))
            .find_map(model::instance)
            .ok_or_else(|| Error::not_found("instance", id).with_operation(op))
    }

    /// The instance a create with `token` made before, if any.
    async fn find_by_token(&self, token: &str) -> Result<Option<ec2::Instance>> {
        let op = Operation::CreateInstance;
        let mut next: Option<String> = None;
        loop {
            let out = self
                .ec2()
                .describe_instances()
                .set_filters(Some(model::token_filters(token)))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(self.fail(op, None))?;
            let found = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| model::tag_value(i.tags(), model::TOKEN_TAG) == Some(token));
            if let Some(i) = found {
                return Ok(Some(i.clone()));
            }
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_owned()),
                None => return Ok(None),
            }
        }
    }

    /// The lock of a client token in flight; `token` is namespaced by the caller for
    /// families other than instances (`volume:…`).
    pub(crate) fn token_lock(&self, token: &str) -> TokenGuard<'_> {
        let mut map = self
            .inner
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let lock = map.entry(token.to_owned()).or_default().clone();
        TokenGuard {
            driver: self,
            token: token.to_owned(),
            lock,
        }
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        let op = Operation::CreateInstance;
        model::check_spec(spec)?;
        // The permit comes first in the pair, so it is released before the guard
        // looks whether anyone else still waits for the token.
        let mut held = None;
        if let Some(token) = &spec.client_token {
            let guard = self.token_lock(token);
            let permit = guard.lock.clone().lock_owned().await;
            held = Some((permit, guard));
            if let Some(existing) = self.find_by_token(token).await? {
                return answer_existing(&existing, spec, token);
            }
        }
        let tags = model::instance_tags(spec, spec.client_token.as_deref());
        let groups: Vec<String> = if spec.security_group_ids.is_empty() {
            self.default_group_for(spec.network_ids.first())
                .await
                .into_iter()
                .collect()
        } else {
            spec.security_group_ids
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect()
        };
        let mut tag_specs = Vec::new();
        if !tags.is_empty() {
            tag_specs.push(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            );
        }
        // The volumes the launch makes (its root volume, and those the spec asks for)
        // are the owner's too: tagged in the same call, so its volume listings show them.
        if let Some(owner) = &spec.owner {
            tag_specs.push(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::Volume)
                    .tags(
                        ec2::Tag::builder()
                            .key(model::OWNER_TAG)
                            .value(owner)
                            .build(),
                    )
                    .build(),
            );
        }
        let tag_specs = (!tag_specs.is_empty()).then_some(tag_specs);
        let out = self
            .ec2()
            .run_instances()
            .image_id(spec.image_id.as_str())
            .instance_type(ec2::InstanceType::from(spec.flavor_id.as_str()))
            .min_count(1)
            .max_count(1)
            .set_key_name(spec.key_name.clone())
            .set_subnet_id(spec.network_ids.first().map(|n| n.as_str().to_owned()))
            .set_placement(spec.location_id.as_ref().map(|l| {
                ec2::Placement::builder()
                    .availability_zone(l.as_str())
                    .build()
            }))
            .set_user_data(
                spec.user_data
                    .as_ref()
                    .map(|d| aws_smithy_types::base64::encode(d.as_bytes())),
            )
            .set_client_token(spec.client_token.as_deref().map(model::ec2_client_token))
            .set_tag_specifications(tag_specs)
            .set_security_group_ids((!groups.is_empty()).then_some(groups))
            .set_block_device_mappings(
                (!spec.volumes.is_empty()).then(|| model::block_device_mappings(&spec.volumes)),
            )
            .send()
            .await
            .map_err(self.fail(op, None))?;
        drop(held);
        out.instances()
            .iter()
            .find_map(model::instance)
            .ok_or_else(|| {
                Error::new(ErrorKind::Backend, "RunInstances answered no instance")
                    .with_operation(op)
            })
    }

    /// Starts, stops, reboots or terminates, after checking the state against the
    /// model's rules ([`InstanceAction::decide`]): EC2 itself is more lenient (starting
    /// a running instance or stopping a stopped one succeeds there, and moto lets
    /// anything through), so the driver describes the instance first.
    async fn act(&self, id: &InstanceId, action: InstanceAction) -> Result<Instance> {
        let op = action.operation();
        let mut current = self.describe_instance(id, op).await?;
        match action.decide(current.state) {
            ActionDecision::AsIs => return Ok(current),
            ActionDecision::Refuse(hint) => {
                let hint = format!(" (EC2 state `{}`){hint}", current.raw_state);
                return Err(action.refusal(id, current.state, &hint));
            }
            ActionDecision::Proceed => {}
        }
        let resource = Some(format!("instance {id}"));
        let change = match action {
            InstanceAction::Start => self
                .ec2()
                .start_instances()
                .instance_ids(id.as_str())
                .send()
                .await
                .map_err(self.fail(op, resource))?
                .starting_instances()
                .first()
                .cloned(),
            InstanceAction::Stop => self
                .ec2()
                .stop_instances()
                .instance_ids(id.as_str())
                .send()
                .await
                .map_err(self.fail(op, resource))?
                .stopping_instances()
                .first()
                .cloned(),
            InstanceAction::Reboot => {
                self.ec2()
                    .reboot_instances()
                    .instance_ids(id.as_str())
                    .send()
                    .await
                    .map_err(self.fail(op, resource))?;
                None
            }
            InstanceAction::Delete => self
                .ec2()
                .terminate_instances()
                .instance_ids(id.as_str())
                .send()
                .await
                .map_err(self.fail(op, resource))?
                .terminating_instances()
                .first()
                .cloned(),
        };
        if let Some(state) = change.as_ref().and_then(|c| c.current_state()) {
            let raw = state
                .name()
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            current.state = map_state(state.code(), &raw);
            current.raw_state = raw;
        }
        Ok(current)
    }

    /// CreateTags and DeleteTags on an instance, between two DescribeInstances: the
    /// first answers `NotFound` for an unknown instance (EC2-compatible servers such as
    /// moto tag any id) and counts the tags, the second answers the instance as it is.
    async fn update_tags(&self, id: &InstanceId, changes: &TagChanges) -> Result<Instance> {
        let op = Operation::UpdateInstanceTags;
        model::check_tag_changes(changes)?;
        let before = self.describe_instance(id, op).await?;
        // The model's limit on the user's tags; EC2 also counts `Name` and the driver's
        // own, and answers TagLimitExceeded (QuotaExceeded) beyond 50 in all.
        changes.apply(&before.tags)?;
        let resource = format!("instance {id}");
        if !changes.set.is_empty() {
            let tags = changes.set.iter().map(|(k, v)| model::tag(k, v)).collect();
            self.ec2()
                .create_tags()
                .resources(id.as_str())
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(self.fail(op, Some(resource.clone())))?;
        }
        if !changes.remove.is_empty() {
            self.ec2()
                .delete_tags()
                .resources(id.as_str())
                .set_tags(Some(model::tag_keys(&changes.remove)))
                .send()
                .await
                .map_err(self.fail(op, Some(resource)))?;
        }
        self.describe_instance(id, op).await
    }

    /// The VPC to create networks (and security groups without a network) in: the
    /// configured one, else the default VPC.
    pub(crate) async fn vpc(&self, op: Operation) -> Result<&str> {
        self.inner
            .vpc
            .get_or_try_init(|| async {
                if let Some(v) = &self.inner.config.vpc_id {
                    return Ok(v.clone());
                }
                let out = self
                    .ec2()
                    .describe_vpcs()
                    .filters(model::filter("is-default", ["true"]))
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                out.vpcs()
                    .iter()
                    .find_map(|v| v.vpc_id())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidState,
                            "the account has no default VPC in this region; \
                             set `vpc_id` in the EC2 provider's configuration",
                        )
                        .with_operation(op)
                    })
            })
            .await
            .map(String::as_str)
    }

    /// The account's id (`123456789012`), which tells the account's own images from
    /// shared ones and lists the account's own snapshots. EC2 has no call that answers
    /// it (STS does), so it is read from what the account owns: a security group
    /// (every VPC has one), else an image, else a reservation of an instance.
    pub(crate) async fn account(&self, op: Operation) -> Result<&str> {
        self.inner
            .account
            .get_or_try_init(|| async {
                let groups = self
                    .ec2()
                    .describe_security_groups()
                    .max_results(MIN_EC2_PAGE as i32)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                if let Some(id) = groups.security_groups().iter().find_map(|g| g.owner_id()) {
                    return Ok(id.to_owned());
                }
                let images = self
                    .ec2()
                    .describe_images()
                    .owners("self")
                    .max_results(MIN_EC2_PAGE as i32)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                if let Some(id) = images.images().iter().find_map(|i| i.owner_id()) {
                    return Ok(id.to_owned());
                }
                let instances = self
                    .ec2()
                    .describe_instances()
                    .max_results(MIN_EC2_PAGE as i32)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                instances
                    .reservations()
                    .iter()
                    .find_map(|r| r.owner_id())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Backend,
                            "cannot tell the account's id: it owns no security group, \
                             image or instance in this region",
                        )
                        .with_operation(op)
                    })
            })
            .await
            .map(String::as_str)
    }

    pub(crate) fn known_default_group(&self, key: &str) -> Option<String> {
        let map = self
            .inner
            .default_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    pub(crate) fn remember_default_group(&self, key: String, group: String) {
        let mut map = self
            .inner
            .default_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.insert(key, group);
    }

    /// The zone volumes are made in when the spec names none: the first available
    /// zone of the region, by name.
    pub(crate) async fn default_zone(&self, op: Operation) -> Result<&str> {
        self.inner
            .zone
            .get_or_try_init(|| async {
                let out = self
                    .ec2()
                    .describe_availability_zones()
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                out.availability_zones()
                    .iter()
                    .filter_map(model::location)
                    .filter(|z| z.available)
                    .map(|z| z.id.into_string())
                    .min()
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Unavailable,
                            "the region has no available zone to make the volume in",
                        )
                        .with_operation(op)
                    })
            })
            .await
            .map(String::as_str)
    }
}

/// Releases a client token's lock, and forgets it when nobody else waits for it.
pub(crate) struct TokenGuard<'a> {
    driver: &'a Ec2Driver,
    token: String,
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .driver
            .inner
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard hold it: nobody waits.
        if map
            .get(&self.token)
            .is_some_and(|l| Arc::ptr_eq(l, &self.lock) && Arc::strong_count(l) == 2)
        {
            map.remove(&self.token);
        }
    }
}

/// The answer to a repeated create: the instance, when the request is the same.
fn answer_existing(existing: &ec2::Instance, spec: &InstanceSpec, token: &str) -> Result<Instance> {
    let op = Operation::CreateInstance;
    let instance = model::instance(existing).ok_or_else(|| {
        Error::new(ErrorKind::Backend, "EC2 described an instance without id").with_operation(op)
    })?;
    let hash = model::tag_value(existing.tags(), model::HASH_TAG);
    if hash != Some(model::request_hash(spec).as_str()) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "client token `{token}` was already used to create instance `{}` with \
                 different parameters; repeat that request unchanged, or use a new client \
                 token for a new instance",
                instance.id
            ),
        )
        .with_operation(op)
        .with_resource(format!("instance {}", instance.id))
        .with_context("argument", "client_token")
        .with_context("reason", "idempotent_parameter_mismatch"));
    }
    Ok(instance)
}

/// Maps an EC2 instance state to the cms state, by its code (the low byte; the high
/// byte is for AWS's internal use) and, where the code is missing, by its name:
///
/// | EC2 code | EC2 name | cms |
/// |---|---|---|
/// | 0 | pending | Pending |
/// | 16 | running | Running |
/// | 32 | shutting-down | Terminating |
/// | 48 | terminated | Terminated |
/// | 64 | stopping | Stopping |
/// | 80 | stopped | Stopped |
/// | other | other | Unknown |
///
/// EC2 shows no rebooting, suspended or error state: a rebooting instance is
/// `running`, a hibernated one `stopped`. The raw name is kept beside the mapped state
/// ([`Instance::raw_state`]).
pub fn map_state(code: Option<i32>, name: &str) -> InstanceState {
    match code.map(|c| c & 0xff) {
        Some(0) => InstanceState::Pending,
        Some(16) => InstanceState::Running,
        Some(32) => InstanceState::Terminating,
        Some(48) => InstanceState::Terminated,
        Some(64) => InstanceState::Stopping,
        Some(80) => InstanceState::Stopped,
        Some(_) => InstanceState::Unknown,
        None => match name {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "shutting-down" => InstanceState::Terminating,
            "terminated" => InstanceState::Terminated,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            _ => InstanceState::Unknown,
        },
    }
}

/// Maps an EC2 volume's `State`, and where it is `in-use` the state of its
/// attachment, to the cms state (the table of [`VolumeState`]):
///
/// | EC2 `State` | attachment `State` | cms |
/// |---|---|---|
/// | creating | | Creating |
/// | available | | Available |
/// | in-use | attaching | Attaching |
/// | in-use | attached, busy, none | InUse |
/// | in-use | detaching, detached | Detaching |
/// | deleting | | Deleting |
/// | deleted | | Deleted |
/// | error | | Error |
/// | other | | Unknown |
///
/// An `in-use` volume whose attachment says `detached` is on its way back to
/// `available` (EC2 shows the two states for a moment).
pub fn map_volume_state(state: &str, attachment: Option<&str>) -> VolumeState {
    match (state, attachment) {
        ("creating", _) => VolumeState::Creating,
        ("available", _) => VolumeState::Available,
        ("in-use", Some("attaching")) => VolumeState::Attaching,
        ("in-use", Some("detaching" | "detached")) => VolumeState::Detaching,
        ("in-use", _) => VolumeState::InUse,
        ("deleting", _) => VolumeState::Deleting,
        ("deleted", _) => VolumeState::Deleted,
        ("error", _) => VolumeState::Error,
        _ => VolumeState::Unknown,
    }
}

/// Maps an EC2 snapshot's `State` to the cms state (the table of [`SnapshotState`]):
///
/// | EC2 `State` | cms |
/// |---|---|
/// | pending | Pending |
/// | completed | Completed |
/// | error, recoverable | Error |
/// | other (recovering, …) | Unknown |
pub fn map_snapshot_state(state: &str) -> SnapshotState {
    match state {
        "pending" => SnapshotState::Pending,
        "completed" => SnapshotState::Completed,
        "error" | "recoverable" => SnapshotState::Error,
        _ => SnapshotState::Unknown,
    }
}

/// Maps an AMI's `imageState` to the cms state (the table of [`ImageState`]):
///
/// | EC2 `imageState` | cms |
/// |---|---|
/// | pending | Pending |
/// | available | Available |
/// | failed, error, invalid | Error |
/// | deregistered | Deleted |
/// | other (transient, disabled, …) | Unknown |
pub fn map_image_state(state: &str) -> ImageState {
    match state {
        "pending" => ImageState::Pending,
        "available" => ImageState::Available,
        "failed" | "error" | "invalid" => ImageState::Error,
        "deregistered" => ImageState::Deleted,
        _ => ImageState::Unknown,
    }
}

/// What went wrong on the wire, before classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure<'a> {
    /// EC2 answered with an error document: its code and the HTTP status.
    Service { code: &'a str, status: u16 },
    /// No answer within the request timeout: the request may have been carried out.
    Timeout,
    /// No connection, or it broke; `refused` when the endpoint refused to connect
    /// (the request certainly was not carried out).
    Connection { refused: bool },
    /// An answer that is not an EC2 document, with its HTTP status.
    BadResponse { status: u16 },
    /// No credentials could be found or loaded.
    Credentials,
    /// The SDK could not build the request.
    Construction,
}

/// How cms sees a failure: its kind, whether trying again may help, whether the
/// request certainly was not carried out, and why (a `reason` context value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub kind: ErrorKind,
    pub temporary: bool,
    pub not_executed: bool,
    pub reason: Option<&'static str>,
}

/// Classifies an EC2 failure, once for every operation:
///
/// | EC2 error code (or failure) | cms kind | temporary | not executed |
/// |---|---|---|---|
/// | `*.NotFound` (`InvalidVolume.NotFound`, `InvalidSnapshot.NotFound`, `InvalidGroup.NotFound`, `InvalidPermission.NotFound`, `InvalidAllocationID.NotFound`, `InvalidAssociationID.NotFound`, …), `InvalidAMIID.*` (but `.Malformed`), `InvalidInstanceID`, `InvalidKeyPair.NotFound` | NotFound | | |
/// | `*.Duplicate` (`InvalidGroup.Duplicate`, `InvalidPermission.Duplicate`, `InvalidAMIName.Duplicate`, …), `*.AlreadyExists` | AlreadyExists | | |
/// | `IncorrectInstanceState`, `IncorrectState`, `DependencyViolation`, `OperationNotPermitted`, `VolumeInUse`, `CannotDelete`, `*.InUse` (`InvalidIPAddress.InUse`, `InvalidSnapshot.InUse`, …), `*.AlreadyAssociated`, `ResourceAlreadyAssociated` | InvalidState | | |
/// | `AuthFailure`, `SignatureDoesNotMatch`, `InvalidClientTokenId`, `MissingAuthenticationToken`, `IncompleteSignature`, `RequestExpired`, `UnrecognizedClientException`; no credentials | Unauthenticated | | |
/// | `UnauthorizedOperation`, `AccessDenied*`, `OptInRequired`, `Blocked` | PermissionDenied | | |
/// | `RequestLimitExceeded`, `Throttling`, `ThrottlingException`, `RequestThrottled`, `SlowDown` | RateLimited | yes | yes |
/// | `InsufficientInstanceCapacity`, `InsufficientCapacity`, `InsufficientHostCapacity` | Unavailable | yes | yes |
/// | other `*LimitExceeded` (`InstanceLimitExceeded`, `VcpuLimitExceeded`, `AddressLimitExceeded`, `VolumeLimitExceeded`, `SecurityGroupLimitExceeded`, `RulesPerSecurityGroupLimitExceeded`, …) | QuotaExceeded | | |
/// | `IdempotentParameterMismatch` | InvalidArgument, reason `idempotent_parameter_mismatch` | | |
/// | `InvalidParameterValue`, `InvalidParameter`, `MissingParameter`, `InvalidParameterCombination`, `UnknownParameter`, `InvalidRequest`, `ValidationError`, `*.Malformed`, `*.Format`, `*.Range`, `*.Conflict`, other `Invalid*` | InvalidArgument | | |
/// | `UnsupportedOperation`, `Unsupported`, `InvalidAction`, `NotImplemented` | Unsupported | | |
/// | `InternalError`, `InternalFailure`, `ServiceUnavailable`, `Unavailable`; any HTTP 5xx | Unavailable | yes | |
/// | timeout, broken connection | Unavailable | yes | |
/// | connection refused | Unavailable | yes | yes |
/// | anything else | Backend | | |
pub fn classify(failure: Failure<'_>) -> Classified {
    use ErrorKind::*;
    let c = |kind: ErrorKind| Classified {
        kind,
        temporary: kind.default_temporary(),
        not_executed: kind == RateLimited,
        reason: None,
    };
    let (code, status) = match failure {
        Failure::Service { code, status } => (code, status),
        Failure::Timeout => return c(Unavailable),
        Failure::Connection { refused } => {
            return Classified {
                not_executed: refused,
                ..c(Unavailable)
            }
        }
        Failure::BadResponse { status } if status >= 500 => return c(Unavailable),
        Failure::BadResponse { .. } | Failure::Construction => return c(Backend),
        Failure::Credentials => return c(Unauthenticated),
    };
    let kind = match code {
        "IdempotentParameterMismatch" => {
            return Classified {
                reason: Some("idempotent_parameter_mismatch"),
                ..c(InvalidArgument)
            }
        }
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown"
        | "TooManyRequestsException" => RateLimited,
        "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity" => {
            return Classified {
                not_executed: true,
                ..c(Unavailable)
            }
        }
        "IncorrectInstanceState"
        | "IncorrectState"
        | "DependencyViolation"
        | "OperationNotPermitted"
        | "InvalidInstanceState"
        | "VolumeInUse"
        | "CannotDelete"
        | "ResourceAlreadyAssociated" => InvalidState,
        "AuthFailure"
        | "SignatureDoesNotMatch"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "RequestExpired"
        | "UnrecognizedClientException"
        | "InvalidAccessKeyId" => Unauthenticated,
        "UnauthorizedOperation" | "OptInRequired" | "Blocked" | "PendingVerification" => {
            PermissionDenied
        }
        _ if code.starts_with("AccessDenied") => PermissionDenied,
        "UnsupportedOperation" | "Unsupported" | "InvalidAction" | "NotImplemented" => Unsupported,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => Unavailable,
        _ if code.ends_with(".Malformed") || code.ends_with(".Format") => InvalidArgument,
        _ if code.ends_with(".NotFound")
            || code.ends_with(".Unavailable") && code.starts_with("InvalidAMIID")
            || code == "InvalidInstanceID" =>
        {
            NotFound
        }
        _ if code.ends_with(".Duplicate") || code.ends_with(".AlreadyExists") => AlreadyExists,
        _ if code.ends_with(".InUse") || code.ends_with(".AlreadyAssociated") => InvalidState,
        _ if code.ends_with("LimitExceeded") => QuotaExceeded,
        "InvalidParameterValue"
        | "InvalidParameter"
        | "MissingParameter"
        | "InvalidParameterCombination"
        | "UnknownParameter"
        | "InvalidRequest"
        | "ValidationError"
        | "InvalidInput" => InvalidArgument,
        _ if code.starts_with("Invalid") => InvalidArgument,
        _ if status >= 500 => Unavailable,
        _ => Backend,
    };
    c(kind)
}

/// Turns an SDK error into a cms error: classified by [`classify`], with the EC2 code,
/// the HTTP status and the request id in its context, and the SDK error as source.
fn sdk_error<E>(
    err: SdkError<E, HttpResponse>,
    op: Operation,
    resource: Option<String>,
    endpoint: Option<&str>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let at = endpoint.unwrap_or("AWS");
    let mut context: Vec<(&'static str, String)> = Vec::new();
    let (failure_message, classified) = match &err {
        // A 2xx answer the SDK could not read (no EC2 error code): a bad document.
        SdkError::ServiceError(se)
            if se.err().code().is_none() && se.raw().status().is_success() =>
        {
            let status = se.raw().status().as_u16();
            context.push(("http_status", status.to_string()));
            (
                format!(
                    "the EC2 endpoint `{at}` answered HTTP {status} with a document that \
                     cannot be read: {}",
                    chain_text(&err)
                ),
                classify(Failure::BadResponse { status }),
            )
        }
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let status = se.raw().status().as_u16();
            context.push(("ec2_code", code.to_owned()));
            context.push(("http_status", status.to_string()));
            if let Some(id) = err.request_id() {
                context.push(("request_id", id.to_owned()));
            }
            let message = e.message().unwrap_or("no message");
            (
                format!("{message} (EC2 error {code})"),
                classify(Failure::Service { code, status }),
            )
        }
        SdkError::TimeoutError(_) => (
            format!("no answer from the EC2 endpoint `{at}` in time"),
            classify(Failure::Timeout),
        ),
        SdkError::DispatchFailure(d) => {
            if find_in_chain::<aws_credential_types::provider::error::CredentialsError>(&err) {
                (
                    format!(
                        "no usable AWS credentials: {}; set `access_key_id_env` and \
                         `secret_access_key_env`, or configure the standard AWS chain",
                        chain_text(&err)
                    ),
                    classify(Failure::Credentials),
                )
            } else if d.is_timeout() {
                (
                    format!("no answer from the EC2 endpoint `{at}` in time"),
                    classify(Failure::Timeout),
                )
            } else {
                let refused = io_error_in_chain(&err)
                    .is_some_and(|k| k == std::io::ErrorKind::ConnectionRefused);
                let what = if refused {
                    "connection refused".to_owned()
                } else {
                    chain_text(&err)
                };
                (
                    format!("cannot reach the EC2 endpoint `{at}`: {what}"),
                    classify(Failure::Connection { refused }),
                )
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            context.push(("http_status", status.to_string()));
            (
                format!(
                    "the EC2 endpoint `{at}` answered HTTP {status} with something that is \
                     not an EC2 document: {}",
                    chain_text(&err)
                ),
                classify(Failure::BadResponse { status }),
            )
        }
        _ => (
            format!("the request could not be built: {}", chain_text(&err)),
            classify(Failure::Construction),
        ),
    };
    let message = match (&resource, classified.kind) {
        (Some(r), ErrorKind::NotFound) => format!("{r} not found: {failure_message}"),
        _ => failure_message,
    };
    let mut e = Error::new(classified.kind, message)
        .with_operation(op)
        .temporary(classified.temporary)
        .not_executed(classified.not_executed);
    if let Some(r) = resource {
        e = e.with_resource(r);
    }
    for (k, v) in context {
        e = e.with_context(k, v);
    }
    if let Some(reason) = classified.reason {
        e = e.with_context("reason", reason);
    }
    e.with_source(err)
}

fn find_in_chain<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<T>() {
            return true;
        }
        cur = e.source();
    }
    false
}

fn io_error_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// The messages of an error and its sources, joined.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

pub(crate) fn ec2_page(limit: u32, max: u32) -> i32 {
    limit.clamp(MIN_EC2_PAGE, max) as i32
}

/// EC2 pages that a listing hands out in parts, kept for a minute, so that the rest
/// of a page comes from the page itself: consistent, and not fetched again (servers
/// that ignore `MaxResults`, as moto does for images and instance types, answer
/// everything every time).
pub(crate) struct PageCache<T> {
    entries: Mutex<VecDeque<CachedPage<T>>>,
}

struct CachedPage<T> {
    key: String,
    at: Instant,
    items: Arc<Vec<T>>,
    next: Option<String>,
}

/// How long a cached page serves, and how many are kept.
const PAGE_CACHE_TTL: Duration = Duration::from_secs(60);
const PAGE_CACHE_SIZE: usize = 8;

impl<T> PageCache<T> {
    fn new() -> Self {
        PageCache {
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn get(&self, key: &str) -> Option<(Arc<Vec<T>>, Option<String>)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .find(|e| e.key == key && e.at.elapsed() < PAGE_CACHE_TTL)
            .map(|e| (e.items.clone(), e.next.clone()))
    }

    fn put(&self, key: String, items: Arc<Vec<T>>, next: Option<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| e.key != key && e.at.elapsed() < PAGE_CACHE_TTL);
        if entries.len() >= PAGE_CACHE_SIZE {
            entries.pop_front();
        }
        entries.push_back(CachedPage {
            key,
            at: Instant::now(),
            items,
            next,
        });
    }
}

/// The EC2 pages of a listing made of `parts` EC2 listings one after the other (an
/// owner's images, then the shared ones, say), enough for a cms page of `limit`:
/// `fetch_part` gets a page of one part, given the part and its EC2 token. Pages of
/// the next parts are added while fewer than `limit` items came, so that a cms page
/// is full unless it is the last; the token answered names the part it goes on in
/// (see [`model::parse_part_token`]).
pub(crate) async fn fetch_parts<T, F, Fut>(
    token: Option<String>,
    limit: u32,
    parts: usize,
    op: Operation,
    mut fetch_part: F,
) -> Result<(Vec<T>, Option<String>)>
where
    F: FnMut(usize, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let (mut part, mut token) = model::parse_part_token(token.as_deref(), parts, op)?;
    let mut items = Vec::new();
    loop {
        let (mut got, next) = fetch_part(part, token.take()).await?;
        items.append(&mut got);
        let next = match next.filter(|t| !t.is_empty()) {
            Some(t) => Some((part, Some(t))),
            None if part + 1 < parts => Some((part + 1, None)),
            None => None,
        };
        match next {
            Some((p, t)) if items.len() < limit as usize => {
                part = p;
                token = t;
            }
            next => return Ok((items, next.map(|(p, t)| model::part_token(p, t.as_deref())))),
        }
    }
}

/// One cms page of a listing whose EC2 pages `fetch` gets (given the EC2 token and
/// `MaxResults`): decodes the cms token, serves a continuation from the cache or
/// fetches the EC2 page, and cuts it (see [`model::cut`]).
pub(crate) async fn listing<T, F, Fut>(
    cache: &PageCache<T>,
    scope: &str,
    page: &PageRequest,
    default_limit: u32,
    op: Operation,
    fetch: F,
) -> Result<Page<T>>
where
    T: Clone,
    F: FnOnce(Option<String>, u32) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let cursor = Cursor::decode(page.token.as_ref(), scope, op)?;
    let limit = page
        .limit
        .filter(|l| *l > 0)
        .unwrap_or(default_limit)
        .min(MAX_PAGE);
    let key = format!("{scope}|{:?}", cursor.ec2_token);
    let cached = if cursor.skip > 0 {
        cache.get(&key)
    } else {
        None
    };
    let (items, ec2_next) = match cached {
        Some(hit) => hit,
        None => {
            let (items, next) = fetch(cursor.ec2_token.clone(), limit).await?;
            (Arc::new(items), next)
        }
    };
    let (out, next) = model::cut(
        items.as_ref().clone(),
        &cursor,
        limit as usize,
        ec2_next.clone(),
    );
    if next.as_ref().is_some_and(|n| n.skip > 0) {
        cache.put(key, items, ec2_next);
    }
    Ok(Page {
        items: out,
        next: next.map(|c| c.encode(scope)),
    })
}

#[async_trait]
impl Driver for Ec2Driver {
    fn name(&self) -> &str {
        "ec2"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let op = Operation::ListInstances;
        let scope = format!("instances|{filter:?}");
        let Some(filters) = model::instance_filters(filter) else {
            // Only states EC2 never reports: nothing matches. The token is still checked.
            model::Cursor::decode(page.token.as_ref(), &scope, op)?;
            return Ok(Page::last(Vec::new()));
        };
        listing(
            &self.inner.pages.instances,
            &scope,
            page,
            DEFAULT_PAGE,
            op,
            |token, limit| async move {
                // The answer is read by the driver's own reader (crate::describe),
                // or by the SDK's when that one cannot read it.
                let capture = Capture::default();
                let out = self
                    .ec2()
                    .describe_instances()
                    .set_filters((!filters.is_empty()).then_some(filters))
                    .max_results(ec2_page(limit, MAX_PAGE))
                    .set_next_token(token)
                    .customize()
                    .interceptor(capture.interceptor())
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                let items = match capture.take() {
                    Some(read) => read.into_iter().filter(|i| filter.matches(i)).collect(),
                    None => out
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(model::instance)
                        .filter(|i| filter.matches(i))
                        .collect(),
                };
                Ok((items, out.next_token().map(str::to_owned)))
            },
        )
        .await
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.describe_instance(id, Operation::GetInstance).await
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        self.create(spec).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Start).await
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Stop).await
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Reboot).await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Delete).await
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        self.update_tags(id, changes).await
    }

    /// EC2's GetConsoleOutput: the instance's serial console, base64 on the wire.
    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        let op = Operation::GetConsoleOutput;
        // GetConsoleOutput of an unknown id is not always an error on EC2-compatible
        // servers: the instance is looked up first.
        self.describe_instance(id, op).await?;
        let out = self
            .ec2()
            .get_console_output()
            .instance_id(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("instance {id}"))))?;
        let text = match out.output() {
            Some(b64) => {
                let bytes = aws_smithy_types::base64::decode(b64).map_err(|e| {
                    Error::new(
                        ErrorKind::Backend,
                        format!("GetConsoleOutput answered output that is not base64: {e}"),
                    )
                    .with_operation(op)
                })?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            None => String::new(),
        };
        Ok(ConsoleOutput::latest(&text, model::time(out.timestamp())))
    }

    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        self.images_page(filter, page).await
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        self.image_by_id(id, Operation::GetImage).await
    }

    async fn create_image(&self, spec: &ImageSpec) -> Result<Image> {
        self.capture(spec).await
    }

    async fn delete_image(&self, id: &ImageId) -> Result<()> {
        self.deregister(id).await
    }

    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        let op = Operation::ListFlavors;
        listing(
            &self.inner.pages.flavors,
            "flavors",
            page,
            MAX_PAGE,
            op,
            |token, limit| async move {
                let out = self
                    .ec2()
                    .describe_instance_types()
                    .max_results(ec2_page(limit, MAX_INSTANCE_TYPES_PAGE))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                let items = out
                    .instance_types()
                    .iter()
                    .filter_map(model::flavor)
                    .collect();
                Ok((items, out.next_token().map(str::to_owned)))
            },
        )
        .await
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        let op = Operation::ListNetworks;
        let vpc = self.inner.config.vpc_id.as_deref();
        let scope = format!("networks|{vpc:?}");
        listing(
            &self.inner.pages.networks,
            &scope,
            page,
            MAX_PAGE,
            op,
            |token, limit| async move {
                let out = self
                    .ec2()
                    .describe_subnets()
                    .set_filters(vpc.map(|v| vec![model::filter("vpc-id", [v])]))
                    .max_results(ec2_page(limit, MAX_PAGE))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                let items = out.subnets().iter().filter_map(model::network).collect();
                Ok((items, out.next_token().map(str::to_owned)))
            },
        )
        .await
    }

    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        let op = Operation::GetNetwork;
        let out = self
            .ec2()
            .describe_subnets()
            .subnet_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("network {id}"))))?;
        out.subnets()
            .iter()
            .filter(|s| s.subnet_id() == Some(id.as_str()))
            .find_map(model::network)
            .ok_or_else(|| Error::not_found("network", id).with_operation(op))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        let op = Operation::CreateNetwork;
        model::check_cidr(&spec.cidr)?;
        if let Some(k) = spec.tags.keys().find(|k| {
            k.starts_with(model::INTERNAL_PREFIX) || k.starts_with("aws:") || *k == model::NAME_TAG
        }) {
            return Err(Error::invalid_argument(
                "tags",
                format!("tag key `{k}` is reserved (`Name` is the name; `cms:`, `aws:`)"),
            )
            .with_operation(op));
        }
        let vpc = self.vpc(op).await?;
        let mut tags: Vec<ec2::Tag> = spec.tags.iter().map(|(k, v)| model::tag(k, v)).collect();
        if !spec.name.is_empty() {
            tags.push(model::tag(model::NAME_TAG, &spec.name));
        }
        let tag_specs = (!tags.is_empty()).then(|| {
            vec![ec2::TagSpecification::builder()
                .resource_type(ec2::ResourceType::Subnet)
                .set_tags(Some(tags))
                .build()]
        });
        let out = self
            .ec2()
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(&spec.cidr)
            .set_availability_zone(spec.location_id.as_ref().map(|l| l.as_str().to_owned()))
            .set_tag_specifications(tag_specs)
            .send()
            .await
            .map_err(self.fail(op, None))?;
        out.subnet().and_then(model::network).ok_or_else(|| {
            Error::new(ErrorKind::Backend, "CreateSubnet answered no subnet").with_operation(op)
        })
    }

    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        let op = Operation::DeleteNetwork;
        let resource = format!("network {id}");
        // EC2 refuses with DependencyViolation while instances use the subnet, but
        // EC2-compatible servers (moto) do not: look first.
        let users = self
            .ec2()
            .describe_instances()
            .filters(model::filter("subnet-id", [id.as_str()]))
            .filters(model::filter("instance-state-name", LIVE_STATES))
            .max_results(MIN_EC2_PAGE as i32)
            .send()
            .await
            .map_err(self.fail(op, Some(resource.clone())))?;
        let in_use: Vec<&str> = users
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id())
            .collect();
        if !in_use.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "network `{id}` is in use by instance{} {}; delete them first",
                    if in_use.len() == 1 { "" } else { "s" },
                    in_use.join(", ")
                ),
            )
            .with_operation(op)
            .with_resource(resource));
        }
        self.ec2()
            .delete_subnet()
            .subnet_id(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        Ok(())
    }

    async fn list_locations(&self) -> Result<Vec<Location>> {
        let op = Operation::ListLocations;
        let out = self
            .ec2()
            .describe_availability_zones()
            .send()
            .await
            .map_err(self.fail(op, None))?;
        Ok(out
            .availability_zones()
            .iter()
            .filter_map(model::location)
            .collect())
    }

    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        let op = Operation::ListKeyPairs;
        let out = self
            .ec2()
            .describe_key_pairs()
            .include_public_key(true)
            .send()
            .await
            .map_err(self.fail(op, None))?;
        Ok(out.key_pairs().iter().filter_map(model::key_pair).collect())
    }

    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let resource = Some(format!("key pair {}", spec.name));
        let op = match spec.public_key {
            Some(_) => Operation::ImportKeyPair,
            None => Operation::CreateKeyPair,
        };
        if spec.name.trim().is_empty() {
            return Err(Error::invalid_argument("name", "must not be empty").with_operation(op));
        }
        match &spec.public_key {
            Some(public_key) => {
                let public_key = public_key.trim();
                let out = self
                    .ec2()
                    .import_key_pair()
                    .key_name(&spec.name)
                    .public_key_material(Blob::new(public_key.as_bytes()))
                    .send()
                    .await
                    .map_err(self.fail(op, resource))?;
                Ok(KeyPair {
                    name: out.key_name().unwrap_or(&spec.name).to_owned(),
                    fingerprint: out.key_fingerprint().unwrap_or_default().to_owned(),
                    public_key: Some(public_key.to_owned()),
                    private_key: None,
                })
            }
            None => {
                let out = self
                    .ec2()
                    .create_key_pair()
                    .key_name(&spec.name)
                    .send()
                    .await
                    .map_err(self.fail(op, resource))?;
                Ok(KeyPair {
                    name: out.key_name().unwrap_or(&spec.name).to_owned(),
                    fingerprint: out.key_fingerprint().unwrap_or_default().to_owned(),
                    public_key: None,
                    private_key: out.key_material().map(str::to_owned),
                })
            }
        }
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        let op = Operation::DeleteKeyPair;
        let resource = format!("key pair {name}");
        // EC2's DeleteKeyPair of an unknown name succeeds; the model wants NotFound.
        let out = self
            .ec2()
            .describe_key_pairs()
            .key_names(name)
            .send()
            .await
            .map_err(self.fail(op, Some(resource.clone())))?;
        if !out.key_pairs().iter().any(|k| k.key_name() == Some(name)) {
            return Err(Error::not_found("key pair", name).with_operation(op));
        }
        self.ec2()
            .delete_key_pair()
            .key_name(name)
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        Ok(())
    }

    async fn list_volumes(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
    ) -> Result<Page<Volume>> {
        self.volumes_page(filter, page).await
    }

    async fn get_volume(&self, id: &VolumeId) -> Result<Volume> {
        self.describe_volume(id, Operation::GetVolume).await
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        self.make_volume(spec).await
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        self.remove_volume(id).await
    }

    async fn attach_volume(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
    ) -> Result<Volume> {
        self.attach(id, instance, device).await
    }

    async fn detach_volume(&self, id: &VolumeId) -> Result<Volume> {
        self.detach(id).await
    }

    async fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        self.snapshots_page(filter, page).await
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.describe_snapshot(id, Operation::GetSnapshot).await
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        self.make_snapshot(spec).await
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.remove_snapshot(id).await
    }

    async fn list_security_groups(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        self.security_groups_page(filter, page).await
    }

    async fn get_security_group(&self, id: &SecurityGroupId) -> Result<SecurityGroup> {
        self.security_group_by_id(id, Operation::GetSecurityGroup)
            .await
    }

    async fn create_security_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        self.make_security_group(spec).await
    }

    async fn delete_security_group(&self, id: &SecurityGroupId) -> Result<()> {
        self.remove_security_group(id).await
    }

    async fn add_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        self.change_rules(id, rules, true).await
    }

    async fn remove_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        self.change_rules(id, rules, false).await
    }

    async fn list_addresses(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Address>> {
        self.addresses_page(filter, page).await
    }

    async fn get_address(&self, id: &AddressId) -> Result<Address> {
        self.address_by_id(id, Operation::GetAddress).await
    }

    async fn allocate_address(&self, spec: &AddressSpec) -> Result<Address> {
        self.allocate(spec).await
    }

    async fn release_address(&self, id: &AddressId) -> Result<()> {
        self.release(id).await
    }

    async fn associate_address(
        &self,
        id: &AddressId,
        instance: &InstanceId,
        private_ip: Option<&str>,
    ) -> Result<Address> {
        self.associate(id, instance, private_ip).await
    }

    async fn disassociate_address(&self, id: &AddressId) -> Result<Address> {
        self.disassociate(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_by_code_then_name() {
        use InstanceState::*;
        let cases = [
            (0, "pending", Pending),
            (16, "running", Running),
            (32, "shutting-down", Terminating),
            (48, "terminated", Terminated),
            (64, "stopping", Stopping),
            (80, "stopped", Stopped),
            (99, "weird", Unknown),
        ];
        for (code, name, want) in cases {
            assert_eq!(map_state(Some(code), name), want, "{code}");
            // The high byte is AWS's own.
            assert_eq!(map_state(Some(code + 256), name), want, "{code}+256");
            assert_eq!(map_state(None, name), want, "{name}");
        }
    }

    #[test]
    fn volume_snapshot_and_image_states_follow_the_model_tables() {
        use VolumeState as V;
        let volumes = [
            ("creating", None, V::Creating),
            ("available", None, V::Available),
            ("in-use", Some("attaching"), V::Attaching),
            ("in-use", Some("attached"), V::InUse),
            ("in-use", Some("busy"), V::InUse),
            ("in-use", None, V::InUse),
            ("in-use", Some("detaching"), V::Detaching),
            ("in-use", Some("detached"), V::Detaching),
            ("deleting", None, V::Deleting),
            ("deleted", None, V::Deleted),
            ("error", None, V::Error),
            ("optimizing", None, V::Unknown),
        ];
        for (state, attachment, want) in volumes {
            assert_eq!(
                map_volume_state(state, attachment),
                want,
                "{state} {attachment:?}"
            );
        }
        use SnapshotState as S;
        for (state, want) in [
            ("pending", S::Pending),
            ("completed", S::Completed),
            ("error", S::Error),
            ("recoverable", S::Error),
            ("recovering", S::Unknown),
        ] {
            assert_eq!(map_snapshot_state(state), want, "{state}");
        }
        use ImageState as I;
        for (state, want) in [
            ("pending", I::Pending),
            ("available", I::Available),
            ("failed", I::Error),
            ("error", I::Error),
            ("invalid", I::Error),
            ("deregistered", I::Deleted),
            ("disabled", I::Unknown),
            ("transient", I::Unknown),
        ] {
            assert_eq!(map_image_state(state), want, "{state}");
        }
    }

    #[test]
    fn classification_table() {
        use ErrorKind::*;
        let svc = |code, status| classify(Failure::Service { code, status });
        let cases = [
            ("InvalidInstanceID.NotFound", 400, NotFound),
            ("InvalidAMIID.NotFound", 400, NotFound),
            ("InvalidAMIID.Unavailable", 400, NotFound),
            ("InvalidAMIID.Malformed", 400, InvalidArgument),
            ("InvalidKeyPair.NotFound", 400, NotFound),
            ("InvalidSubnetID.NotFound", 400, NotFound),
            ("InvalidKeyPair.Duplicate", 400, AlreadyExists),
            ("InvalidKeyPair.Format", 400, InvalidArgument),
            ("IncorrectInstanceState", 400, InvalidState),
            ("DependencyViolation", 400, InvalidState),
            ("AuthFailure", 401, Unauthenticated),
            ("UnauthorizedOperation", 403, PermissionDenied),
            ("InstanceLimitExceeded", 400, QuotaExceeded),
            ("VcpuLimitExceeded", 400, QuotaExceeded),
            ("RequestLimitExceeded", 503, RateLimited),
            ("Throttling", 400, RateLimited),
            ("InvalidParameterValue", 400, InvalidArgument),
            ("MissingParameter", 400, InvalidArgument),
            ("InvalidParameterCombination", 400, InvalidArgument),
            ("InvalidSubnet.Range", 400, InvalidArgument),
            ("UnsupportedOperation", 400, Unsupported),
            ("InvalidVolume.NotFound", 400, NotFound),
            ("InvalidSnapshot.NotFound", 400, NotFound),
            ("InvalidGroup.NotFound", 400, NotFound),
            ("InvalidGroup.Duplicate", 400, AlreadyExists),
            ("InvalidPermission.Duplicate", 400, AlreadyExists),
            ("InvalidPermission.NotFound", 400, NotFound),
            ("InvalidAMIName.Duplicate", 400, AlreadyExists),
            ("VolumeInUse", 400, InvalidState),
            ("CannotDelete", 400, InvalidState),
            ("InvalidIPAddress.InUse", 400, InvalidState),
            ("InvalidSnapshot.InUse", 400, InvalidState),
            ("Resource.AlreadyAssociated", 400, InvalidState),
            ("ResourceAlreadyAssociated", 400, InvalidState),
            ("AddressLimitExceeded", 400, QuotaExceeded),
            ("RulesPerSecurityGroupLimitExceeded", 400, QuotaExceeded),
            ("InvalidAllocationID.NotFound", 400, NotFound),
            ("InvalidAssociationID.NotFound", 400, NotFound),
            ("InvalidVolume.ZoneMismatch", 400, InvalidArgument),
            ("InternalError", 500, Unavailable),
            ("SomethingNew", 503, Unavailable),
            ("SomethingNew", 400, Backend),
        ];
        for (code, status, kind) in cases {
            assert_eq!(svc(code, status).kind, kind, "{code}");
        }
        let rate = svc("RequestLimitExceeded", 503);
        assert!(rate.temporary && rate.not_executed);
        let internal = svc("InternalError", 500);
        assert!(internal.temporary && !internal.not_executed);
        assert!(!svc("InvalidInstanceID.NotFound", 400).temporary);
        let mismatch = svc("IdempotentParameterMismatch", 400);
        assert_eq!(mismatch.kind, InvalidArgument);
        assert_eq!(mismatch.reason, Some("idempotent_parameter_mismatch"));
        let refused = classify(Failure::Connection { refused: true });
        assert_eq!(
            (refused.kind, refused.temporary, refused.not_executed),
            (Unavailable, true, true)
        );
        let broken = classify(Failure::Connection { refused: false });
        assert!(broken.temporary && !broken.not_executed);
        let timeout = classify(Failure::Timeout);
        assert_eq!(
            (timeout.kind, timeout.temporary, timeout.not_executed),
            (Unavailable, true, false)
        );
        assert_eq!(classify(Failure::Credentials).kind, Unauthenticated);
    }
}
