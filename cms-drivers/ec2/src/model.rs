//! Mapping EC2's shapes to the cms model and back: instances, instance types,
//! subnets, availability zones, key pairs, tags, filters and page tokens. (Images,
//! volumes and snapshots, security groups and addresses are mapped in their own
//! modules, beside their operations.)

use std::collections::BTreeSet;

use aws_sdk_ec2::types as ec2;
use chrono::{DateTime, Utc};
use cms_core::{
    BlockDevice, Error, Flavor, FlavorId, ImageId, Instance, InstanceFilter, InstanceId,
    InstanceSpec, InstanceState, InstanceVolume, KeyPair, Location, LocationId, Network, NetworkId,
    Operation, PageToken, ResourceFilter, Result, SecurityGroupId, TagChanges, Tags, VolumeId,
};
use sha2::{Digest, Sha256};

use crate::describe::Fields;
use crate::driver::map_state;

/// The tag that carries a resource's name (cms `name`).
pub(crate) const NAME_TAG: &str = "Name";
/// Tags the driver writes for itself start with this; users' tags may not.
pub(crate) const INTERNAL_PREFIX: &str = "cms:";
/// The client token an instance was created with, as given to cms.
pub(crate) const TOKEN_TAG: &str = "cms:client-token";
/// A short hash of the spec an instance was created from (see [`request_hash`]).
pub(crate) const HASH_TAG: &str = "cms:request-hash";
/// The owner a resource was created for ([`InstanceSpec::owner`], and the `owner` of
/// every other spec).
pub(crate) const OWNER_TAG: &str = "cms:owner";

/// The users' tags of an EC2 resource: without `Name` (that is the name) and without
/// the driver's own `cms:` tags.
pub(crate) fn user_tags(tags: &[ec2::Tag]) -> Tags {
    user_tags_of(tags.iter().map(|t| (t.key(), t.value())))
}

/// [`user_tags`] of tags as (key, value) pairs, either of which EC2 may leave out.
fn user_tags_of<'a>(tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> Tags {
    tags.filter_map(|(k, v)| Some((k?, v.unwrap_or_default())))
        .filter(|(k, _)| *k != NAME_TAG && !k.starts_with(INTERNAL_PREFIX))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub(crate) fn tag_value<'a>(tags: &'a [ec2::Tag], key: &str) -> Option<&'a str> {
    tag_value_of(tags.iter().map(|t| (t.key(), t.value())), key)
}

fn tag_value_of<'a>(
    mut tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
    key: &str,
) -> Option<&'a str> {
    tags.find(|(k, _)| *k == Some(key))
        .map(|(_, v)| v.unwrap_or_default())
}

pub(crate) fn tag(key: impl Into<String>, value: impl Into<String>) -> ec2::Tag {
    ec2::Tag::builder().key(key).value(value).build()
}

pub(crate) fn filter<I, S>(name: impl Into<String>, values: I) -> ec2::Filter
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    ec2::Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

pub(crate) fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// An EC2 instance as the SDK read it, as a cms instance; `None` when EC2 gave no id.
pub(crate) fn instance(i: &ec2::Instance) -> Option<Instance> {
    instance_from(&Fields::of(i))
}

/// An EC2 instance as a cms instance, from what either reader took of it (the SDK's or
/// [`crate::describe`]'s); `None` when EC2 gave no id.
pub(crate) fn instance_from(i: &Fields<'_>) -> Option<Instance> {
    let id = i.id.as_deref()?;
    let code = i.state_code;
    let raw_state = match &i.state_name {
        Some(n) => n.to_string(),
        None => code.map(|c| c.to_string()).unwrap_or_default(),
    };
    let mut network_ids: Vec<NetworkId> = Vec::new();
    let mut private_ips: Vec<String> = Vec::new();
    let mut public_ips: Vec<String> = Vec::new();
    let push = |v: &mut Vec<String>, ip: Option<&str>| {
        if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
            if !v.iter().any(|x| x == ip) {
                v.push(ip.to_owned());
            }
        }
    };
    push(&mut private_ips, i.private_ip.as_deref());
    push(&mut public_ips, i.public_ip.as_deref());
    let subnets = i
        .subnet_id
        .as_deref()
        .into_iter()
        .chain(i.nics.iter().filter_map(|n| n.subnet_id.as_deref()));
    for s in subnets.filter(|s| !s.is_empty()) {
        if !network_ids.iter().any(|n| n.as_str() == s) {
            network_ids.push(NetworkId::new(s));
        }
    }
    for nic in &i.nics {
        for a in &nic.addresses {
            push(&mut private_ips, a.private_ip.as_deref());
            push(&mut public_ips, a.public_ip.as_deref());
        }
        push(&mut private_ips, nic.private_ip.as_deref());
    }
    let tags = || {
        i.tags
            .iter()
            .map(|t| (t.key.as_deref(), t.value.as_deref()))
    };
    Some(Instance {
        id: InstanceId::new(id),
        name: tag_value_of(tags(), NAME_TAG)
            .unwrap_or_default()
            .to_owned(),
        state: map_state(code, &raw_state),
        raw_state,
        image_id: i.image_id.as_deref().map(ImageId::new),
        flavor_id: i.instance_type.as_deref().map(FlavorId::new),
        location_id: i
            .zone
            .as_deref()
            .filter(|z| !z.is_empty())
            .map(LocationId::new),
        network_ids,
        key_name: i
            .key_name
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(str::to_owned),
        private_ips,
        public_ips,
        tags: user_tags_of(tags()),
        created_at: time(i.launch_time.as_ref()),
        client_token: tag_value_of(tags(), TOKEN_TAG)
            .or(i.client_token.as_deref())
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        owner: tag_value_of(tags(), OWNER_TAG)
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
        security_group_ids: dedup(
            i.groups
                .iter()
                .filter_map(|g| g.as_deref())
                .filter(|g| !g.is_empty())
                .map(SecurityGroupId::new),
        )
        .into(),
        volumes: i
            .block_devices
            .iter()
            .filter_map(|b| {
                let id = b.volume_id.as_deref().filter(|v| !v.is_empty())?;
                Some(InstanceVolume {
                    volume_id: VolumeId::new(id),
                    device: b
                        .device
                        .as_deref()
                        .filter(|d| !d.is_empty())
                        .map(str::to_owned),
                    delete_on_termination: b.delete_on_termination.unwrap_or(false),
                })
            })
            .fold(Vec::new(), |mut out: Vec<InstanceVolume>, v| {
                if !out.iter().any(|o| o.volume_id == v.volume_id) {
                    out.push(v);
                }
                out
            }),
    })
}

/// The items in their first order, each once.
fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// An instance type as a cms flavor; `None` when EC2 gave no name.
pub(crate) fn flavor(t: &ec2::InstanceTypeInfo) -> Option<Flavor> {
    let name = t.instance_type()?.as_str().to_owned();
    Some(Flavor {
        id: FlavorId::new(name.clone()),
        name,
        vcpus: t
            .v_cpu_info()
            .and_then(|v| v.default_v_cpus())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        memory_mib: t
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0),
        disk_gib: t
            .instance_storage_info()
            .and_then(|s| s.total_size_in_gb())
            .and_then(|s| u32::try_from(s).ok()),
    })
}

/// A subnet as a cms network; `None` when EC2 gave no id.
pub(crate) fn network(s: &ec2::Subnet) -> Option<Network> {
    let id = s.subnet_id()?;
    Some(Network {
        id: NetworkId::new(id),
        name: tag_value(s.tags(), NAME_TAG).unwrap_or_default().to_owned(),
        cidr: s.cidr_block().map(str::to_owned),
        location_id: s.availability_zone().map(LocationId::new),
        is_default: s.default_for_az().unwrap_or(false),
        raw_state: s.state().map(|x| x.as_str().to_owned()).unwrap_or_default(),
        tags: user_tags(s.tags()),
    })
}

/// An availability zone as a cms location; `None` when EC2 gave no name.
pub(crate) fn location(z: &ec2::AvailabilityZone) -> Option<Location> {
    let name = z.zone_name()?;
    Some(Location {
        id: LocationId::new(name),
        name: name.to_owned(),
        region: z.region_name().map(str::to_owned),
        available: z
            .state()
            .is_none_or(|s| *s == ec2::AvailabilityZoneState::Available),
    })
}

/// A key pair as cms describes it (never with a private key); `None` without name.
pub(crate) fn key_pair(k: &ec2::KeyPairInfo) -> Option<KeyPair> {
    Some(KeyPair {
        name: k.key_name()?.to_owned(),
        fingerprint: k.key_fingerprint().unwrap_or_default().to_owned(),
        public_key: k
            .public_key()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty()),
        private_key: None,
    })
}

/// The EC2 state names a cms state can come from (see [`map_state`]). Rebooting,
/// Suspended, Error and Unknown come from none: EC2 reports a rebooting instance as
/// running, and has no suspended or error state.
pub(crate) fn ec2_state_names(state: InstanceState) -> &'static [&'static str] {
    match state {
        InstanceState::Pending => &["pending"],
        InstanceState::Running => &["running"],
        InstanceState::Stopping => &["stopping"],
        InstanceState::Stopped => &["stopped"],
        InstanceState::Terminating => &["shutting-down"],
        InstanceState::Terminated => &["terminated"],
        InstanceState::Rebooting
        | InstanceState::Suspended
        | InstanceState::Error
        | InstanceState::Unknown => &[],
    }
}

/// Whether a value can go into an EC2 filter as it is: EC2 reads `*` and `?` as
/// wildcards, and EC2-compatible servers differ in how they take escapes. Values
/// with those characters are matched on this side only.
pub(crate) fn plain(value: &str) -> bool {
    !value.is_empty() && !value.contains(['*', '?', '\\'])
}

/// The filters of a lookup of what a create with client token `token` made: by the
/// driver's token tag, not EC2's `client-token` filter, which EC2-compatible servers
/// (moto) do not keep; its value too when it can go into a filter as it is ([`plain`]).
/// The caller compares the tag's value itself, so any token is found.
pub(crate) fn token_filters(token: &str) -> Vec<ec2::Filter> {
    let mut out = vec![filter("tag-key", [TOKEN_TAG])];
    if plain(token) {
        out.push(filter(format!("tag:{TOKEN_TAG}"), [token]));
    }
    out
}

/// The EC2 filters that push `f` down to the server, or `None` when nothing can match
/// (only states EC2 never reports). The driver still checks every answer against
/// `f` itself, so a filter that cannot be pushed down is only slower, never wrong.
pub(crate) fn instance_filters(f: &InstanceFilter) -> Option<Vec<ec2::Filter>> {
    let mut out = Vec::new();
    if !f.ids.is_empty() {
        // A filter rather than `InstanceIds`: an unknown id then matches nothing
        // instead of failing the whole listing, and `MaxResults` stays allowed.
        out.push(filter("instance-id", f.ids.iter().map(|i| i.as_str())));
    }
    if !f.states.is_empty() {
        let names: BTreeSet<&str> = f
            .states
            .iter()
            .flat_map(|s| ec2_state_names(*s).iter().copied())
            .collect();
        if names.is_empty() {
            return None;
        }
        out.push(filter("instance-state-name", names));
    }
    if let Some(name) = f.name.as_deref().filter(|n| plain(n)) {
        out.push(filter(format!("tag:{NAME_TAG}"), [name]));
    }
    if let Some(owner) = f.owner.as_deref() {
        if !plain(owner) {
            // No owner of the model's form has wildcards: such a filter matches nothing.
            return None;
        }
        out.push(filter(format!("tag:{OWNER_TAG}"), [owner]));
    }
    for (k, v) in &f.tags {
        if !plain(k) {
            continue;
        }
        match v {
            Some(v) if plain(v) => out.push(filter(format!("tag:{k}"), [v.as_str()])),
            Some(_) => out.push(filter("tag-key", [k.as_str()])),
            None => out.push(filter("tag-key", [k.as_str()])),
        }
    }
    Some(out)
}

/// The tags written on a new instance: the user's, `Name`, and the driver's own.
pub(crate) fn instance_tags(spec: &InstanceSpec, token: Option<&str>) -> Vec<ec2::Tag> {
    let mut tags: Vec<ec2::Tag> = spec.tags.iter().map(|(k, v)| tag(k, v)).collect();
    if !spec.name.is_empty() {
        tags.push(tag(NAME_TAG, &spec.name));
    }
    if let Some(owner) = &spec.owner {
        tags.push(tag(OWNER_TAG, owner));
    }
    if let Some(token) = token {
        tags.push(tag(TOKEN_TAG, token));
        tags.push(tag(HASH_TAG, request_hash(spec)));
    }
    tags
}

/// A short hash of everything a create asks for except the client token: two creates
/// with one token and the same hash are the same request.
pub(crate) fn request_hash(spec: &InstanceSpec) -> String {
    hash_of(&InstanceSpec {
        client_token: None,
        ..spec.clone()
    })
}

/// A short hash of a spec (with its client token taken out by the caller).
pub(crate) fn hash_of<T: serde::Serialize>(spec: &T) -> String {
    // Field order is fixed and tags are a BTreeMap, so the encoding is stable.
    let text = serde_json::to_string(spec).unwrap_or_default();
    hex(&Sha256::digest(text.as_bytes())[..8])
}

/// The `ClientToken` sent to EC2 for a cms token: EC2 takes at most 64 ASCII
/// characters, so a longer (or non-ASCII) token is sent as its hash.
pub(crate) fn ec2_client_token(token: &str) -> String {
    if token.len() <= 64 && token.chars().all(|c| c.is_ascii_graphic()) {
        token.to_owned()
    } else {
        format!("cms-{}", hex(&Sha256::digest(token.as_bytes())[..30]))
    }
}

/// Checks what EC2 would refuse or the driver could not keep apart: reserved tag keys,
/// a `Name` tag that disagrees with the name, more than one network.
pub(crate) fn check_spec(spec: &InstanceSpec) -> Result<()> {
    let op = Operation::CreateInstance;
    cms_core::check_instance_spec(spec)?;
    if spec.image_id.as_str().is_empty() {
        return Err(Error::invalid_argument("image_id", "must not be empty").with_operation(op));
    }
    if spec.flavor_id.as_str().is_empty() {
        return Err(Error::invalid_argument("flavor_id", "must not be empty").with_operation(op));
    }
    if let Some(o) = &spec.owner {
        cms_core::check_owner(o).map_err(|e| e.with_operation(op))?;
    }
    if let Some(k) = spec
        .tags
        .keys()
        .find(|k| k.starts_with(INTERNAL_PREFIX) || k.starts_with("aws:"))
    {
        return Err(Error::invalid_argument(
            "tags",
            format!("tag key `{k}` is reserved (keys starting with `cms:` or `aws:`)"),
        )
        .with_operation(op));
    }
    if let Some(v) = spec.tags.get(NAME_TAG) {
        if !spec.name.is_empty() && *v != spec.name {
            return Err(Error::invalid_argument(
                "tags",
                format!(
                    "tag `Name` = `{v}` disagrees with the name `{}`; on EC2 the name is the `Name` tag",
                    spec.name
                ),
            )
            .with_operation(op));
        }
    }
    if spec.network_ids.len() > 1 {
        return Err(Error::invalid_argument(
            "network_ids",
            format!(
                "{} networks given; the EC2 driver attaches one subnet at creation",
                spec.network_ids.len()
            ),
        )
        .with_operation(op));
    }
    if let Some(t) = &spec.client_token {
        if t.is_empty() || t.chars().count() > 255 {
            return Err(
                Error::invalid_argument("client_token", "must be 1 to 255 characters")
                    .with_operation(op),
            );
        }
    }
    Ok(())
}

/// How a resource's name is kept, for [`check_create_tags`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameTag<'a> {
    /// The name is the `Name` tag (instances, volumes, snapshots): a `Name` tag may be
    /// given only with the same value.
    Is(&'a str),
    /// The name is kept elsewhere (an AMI's or a group's own name) or there is none
    /// (addresses): `Name` is refused, since it would not be shown as a tag.
    Refused,
}

/// Checks the tags a create asks for against the keys the driver keeps: `cms:…` and
/// `aws:…` always, `Name` as `name` says. `InvalidArgument` naming the tag otherwise.
pub(crate) fn check_create_tags(tags: &Tags, name: NameTag<'_>, op: Operation) -> Result<()> {
    if let Some(k) = tags
        .keys()
        .find(|k| k.starts_with(INTERNAL_PREFIX) || k.starts_with("aws:"))
    {
        return Err(Error::invalid_argument(
            "tags",
            format!("tag key `{k}` is reserved (keys starting with `cms:` or `aws:`)"),
        )
        .with_context("tag", k.as_str())
        .with_operation(op));
    }
    if let Some(v) = tags.get(NAME_TAG) {
        let why = match name {
            NameTag::Is(n) if n.is_empty() || n == v => None,
            NameTag::Is(n) => Some(format!(
                "tag `Name` = `{v}` disagrees with the name `{n}`; on EC2 the name is the `Name` tag"
            )),
            NameTag::Refused => Some(
                "tag key `Name` is reserved: the EC2 driver keeps it for names".to_owned(),
            ),
        };
        if let Some(why) = why {
            return Err(Error::invalid_argument("tags", why)
                .with_context("tag", NAME_TAG)
                .with_operation(op));
        }
    }
    Ok(())
}

/// The tags written on a new resource: the user's, `Name` (when not empty), the owner,
/// and the driver's own `extra` ones.
pub(crate) fn create_tags(
    user: &Tags,
    name: Option<&str>,
    owner: Option<&str>,
    extra: &[(&str, &str)],
) -> Vec<ec2::Tag> {
    let mut tags: Vec<ec2::Tag> = user.iter().map(|(k, v)| tag(k, v)).collect();
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        if !user.contains_key(NAME_TAG) {
            tags.push(tag(NAME_TAG, n));
        }
    }
    if let Some(o) = owner {
        tags.push(tag(OWNER_TAG, o));
    }
    tags.extend(extra.iter().map(|(k, v)| tag(*k, *v)));
    tags
}

/// One `TagSpecification` for `tags` on a new resource of type `kind`; none without
/// tags (EC2 refuses an empty one).
pub(crate) fn tag_spec(
    kind: ec2::ResourceType,
    tags: Vec<ec2::Tag>,
) -> Option<Vec<ec2::TagSpecification>> {
    (!tags.is_empty()).then(|| {
        vec![ec2::TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags))
            .build()]
    })
}

/// The EC2 filters that push a [`ResourceFilter`] down: the ids as the `id_filter`
/// filter (`volume-id`, …, so that an unknown id matches nothing and `MaxResults`
/// stays allowed), the owner as a `tag:cms:owner` filter, each tag as a `tag:KEY`
/// filter. `None` when nothing can match. A tag value with wildcard characters (see
/// [`plain`]) goes down as a `tag-key` filter, and the caller checks the value.
pub(crate) fn resource_filters<Id: AsRef<str>>(
    f: &ResourceFilter<Id>,
    id_filter: &str,
) -> Option<Vec<ec2::Filter>> {
    let mut out = Vec::new();
    if !f.ids.is_empty() {
        out.push(filter(id_filter, f.ids.iter().map(|i| i.as_ref())));
    }
    if let Some(owner) = f.owner.as_deref() {
        if !plain(owner) {
            return None;
        }
        out.push(filter(format!("tag:{OWNER_TAG}"), [owner]));
    }
    out.extend(tag_filters(&f.tags));
    Some(out)
}

/// The EC2 filters of a tag condition: `tag:KEY` with the value, or `tag-key` for any
/// value (and for a value with wildcard characters, which the caller checks).
pub(crate) fn tag_filters(
    tags: &std::collections::BTreeMap<String, Option<String>>,
) -> Vec<ec2::Filter> {
    tags.iter()
        .filter(|(k, _)| plain(k))
        .map(|(k, v)| match v {
            Some(v) if plain(v) => filter(format!("tag:{k}"), [v.as_str()]),
            _ => filter("tag-key", [k.as_str()]),
        })
        .collect()
}

/// Whether every condition of a [`ResourceFilter`] went down to EC2 (see
/// [`resource_filters`]), so that the answer needs no checking here.
pub(crate) fn pushed_down<Id>(f: &ResourceFilter<Id>) -> bool {
    f.tags
        .iter()
        .all(|(k, v)| plain(k) && v.as_deref().is_none_or(plain))
}

/// The device names the driver gives volumes when the caller names none: `/dev/sdf`
/// to `/dev/sdz`, EC2's recommended names for EBS data volumes on Linux instances
/// (the root device of an AMI is `/dev/sda1` or `/dev/xvda`, which these never meet;
/// Nitro instances show them as NVMe devices, under the same name in the API).
pub(crate) fn data_devices() -> impl Iterator<Item = String> {
    (b'f'..=b'z').map(|c| format!("/dev/sd{}", c as char))
}

/// The first of [`data_devices`] not in `used`.
pub(crate) fn free_device<'a>(used: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    data_devices().find(|d| !used.clone().into_iter().any(|u| u == d))
}

/// The `BlockDeviceMappings` of RunInstances for the volumes an instance is made
/// with: each an EBS volume of its size and snapshot, deleted with the instance as
/// asked; a volume without a device gets the first of [`data_devices`] that no other
/// volume of the spec names.
pub(crate) fn block_device_mappings(volumes: &[BlockDevice]) -> Vec<ec2::BlockDeviceMapping> {
    let named: Vec<&str> = volumes.iter().filter_map(|v| v.device.as_deref()).collect();
    let mut taken: Vec<String> = named.iter().map(|d| (*d).to_owned()).collect();
    volumes
        .iter()
        .map(|v| {
            let device = match &v.device {
                Some(d) => d.clone(),
                None => {
                    let d = free_device(taken.iter().map(String::as_str))
                        .unwrap_or_else(|| "/dev/sdz".to_owned());
                    taken.push(d.clone());
                    d
                }
            };
            ec2::BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(
                    ec2::EbsBlockDevice::builder()
                        .set_volume_size(v.size_gib.and_then(|s| i32::try_from(s).ok()))
                        .set_snapshot_id(v.snapshot_id.as_ref().map(|s| s.as_str().to_owned()))
                        .delete_on_termination(v.delete_on_termination)
                        .build(),
                )
                .build()
        })
        .collect()
}

/// Checks a tag change by the model's rules, and refuses the keys the driver keeps
/// for itself: `cms:…` (its bookkeeping), `aws:…` (EC2's) and `Name` (the name; the
/// model has no rename).
pub(crate) fn check_tag_changes(changes: &TagChanges) -> Result<()> {
    changes.check()?;
    if let Some(k) = changes
        .keys()
        .find(|k| k.starts_with(INTERNAL_PREFIX) || k.starts_with("aws:") || *k == NAME_TAG)
    {
        let why = if k == NAME_TAG {
            "tag key `Name` is reserved: on EC2 it is the instance's name".to_owned()
        } else {
            format!("tag key `{k}` is reserved (keys starting with `cms:` or `aws:`)")
        };
        return Err(Error::invalid_argument("tags", why)
            .with_context("tag", k)
            .with_operation(Operation::UpdateInstanceTags));
    }
    Ok(())
}

/// The tags of a `DeleteTags` that removes `keys` whatever their values: keys without
/// a value (an empty value would remove only tags whose value is empty).
pub(crate) fn tag_keys(keys: &[String]) -> Vec<ec2::Tag> {
    keys.iter()
        .map(|k| ec2::Tag::builder().key(k).build())
        .collect()
}

/// Checks an IPv4 CIDR (`10.1.0.0/24`) before EC2 sees it, for a clear error.
pub(crate) fn check_cidr(cidr: &str) -> Result<()> {
    let invalid = || {
        Error::invalid_argument(
            "cidr",
            format!("`{cidr}` is not an IPv4 range such as `10.1.0.0/24`"),
        )
        .with_operation(Operation::CreateNetwork)
    };
    let (addr, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    addr.parse::<std::net::Ipv4Addr>().map_err(|_| invalid())?;
    match prefix.parse::<u8>() {
        Ok(p) if p <= 32 && !prefix.starts_with('+') => Ok(()),
        _ => Err(invalid()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The EC2 token of a listing made of `parts` EC2 listings one after the other (see
/// `images.rs`, `security_groups.rs`): `PART:TOKEN`, `TOKEN` empty at the start of a
/// part. Answers the part and its EC2 token; the start when `None`.
pub(crate) fn parse_part_token(
    token: Option<&str>,
    parts: usize,
    op: Operation,
) -> Result<(usize, Option<String>)> {
    let Some(token) = token else {
        return Ok((0, None));
    };
    let bad = || {
        Error::invalid_argument(
            "page_token",
            "not a page token of this listing; start again without a token",
        )
        .with_operation(op)
    };
    let (part, rest) = token.split_once(':').ok_or_else(bad)?;
    let part: usize = part.parse().map_err(|_| bad())?;
    if part >= parts {
        return Err(bad());
    }
    Ok((part, Some(rest.to_owned()).filter(|t| !t.is_empty())))
}

/// The EC2 token of a listing made of parts, for [`parse_part_token`].
pub(crate) fn part_token(part: usize, token: Option<&str>) -> String {
    format!("{part}:{}", token.unwrap_or_default())
}

/// Where a listing goes on: the EC2 `NextToken` of the EC2 page to fetch (none for
/// the first) and how many items of that page were already handed out.
///
/// EC2 pages are at least 5 items (and EC2-compatible servers may ignore
/// `MaxResults` and answer everything), while a cms caller may ask for fewer; the
/// driver then hands out part of an EC2 page and continues inside it. The cms token
/// (`c1.<scope>.<skip>.<hex of the EC2 token>`) carries a hash of the listing and
/// its filter, so a token from another listing, or one the driver never gave, is
/// refused as `InvalidArgument` instead of reaching EC2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub ec2_token: Option<String>,
    pub skip: usize,
}

impl Cursor {
    /// The cursor of `token` for the listing `scope`; the start when `None`.
    pub fn decode(token: Option<&PageToken>, scope: &str, op: Operation) -> Result<Cursor> {
        let Some(token) = token else {
            return Ok(Cursor::default());
        };
        let bad = || {
            Error::invalid_argument(
                "page_token",
                format!(
                    "`{token}` is not a page token of this listing; \
                     start again without a token"
                ),
            )
            .with_operation(op)
        };
        let mut parts = token.as_str().splitn(4, '.');
        let (Some("c1"), Some(s), Some(skip), Some(ec2)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if s != scope_hash(scope) {
            return Err(bad());
        }
        let skip = skip.parse::<usize>().map_err(|_| bad())?;
        let ec2_token = if ec2.is_empty() {
            None
        } else {
            Some(String::from_utf8(unhex(ec2).ok_or_else(bad)?).map_err(|_| bad())?)
        };
        Ok(Cursor { ec2_token, skip })
    }

    pub fn encode(&self, scope: &str) -> PageToken {
        PageToken::new(format!(
            "c1.{}.{}.{}",
            scope_hash(scope),
            self.skip,
            hex(self.ec2_token.as_deref().unwrap_or_default().as_bytes())
        ))
    }
}

fn scope_hash(scope: &str) -> String {
    hex(&Sha256::digest(scope.as_bytes())[..4])
}

/// Cuts one EC2 page into a cms page: skips what was handed out, takes at most
/// `limit`, and says where to go on.
pub(crate) fn cut<T>(
    mut items: Vec<T>,
    cursor: &Cursor,
    limit: usize,
    ec2_next: Option<String>,
) -> (Vec<T>, Option<Cursor>) {
    let skip = cursor.skip.min(items.len());
    items.drain(..skip);
    if items.len() > limit {
        items.truncate(limit);
        let next = Cursor {
            ec2_token: cursor.ec2_token.clone(),
            skip: skip + limit,
        };
        return (items, Some(next));
    }
    let next = ec2_next.filter(|t| !t.is_empty()).map(|t| Cursor {
        ec2_token: Some(t),
        skip: 0,
    });
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_foreign_tokens() {
        let c = Cursor {
            ec2_token: Some("eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9".into()),
            skip: 3,
        };
        let t = c.encode("instances|filter");
        assert_eq!(
            Cursor::decode(Some(&t), "instances|filter", Operation::ListInstances).unwrap(),
            c
        );
        let other = Cursor::decode(Some(&t), "instances|other", Operation::ListInstances);
        assert_eq!(
            other.unwrap_err().kind(),
            cms_core::ErrorKind::InvalidArgument
        );
        for junk in ["%%no such token%%", "c1.x.1.", "c1.00000000.1.zz", ""] {
            let e = Cursor::decode(Some(&PageToken::new(junk)), "s", Operation::ListImages)
                .unwrap_err();
            assert_eq!(e.context_value("argument"), Some("page_token"), "{junk}");
        }
        assert_eq!(
            Cursor::decode(None, "s", Operation::ListImages).unwrap(),
            Cursor::default()
        );
    }

    #[test]
    fn part_tokens_are_checked() {
        let op = Operation::ListImages;
        assert_eq!(parse_part_token(None, 2, op).unwrap(), (0, None));
        assert_eq!(
            parse_part_token(Some(&part_token(1, None)), 2, op).unwrap(),
            (1, None)
        );
        assert_eq!(
            parse_part_token(Some(&part_token(0, Some("abc:d"))), 2, op).unwrap(),
            (0, Some("abc:d".to_owned()))
        );
        for bad in ["2:x", "x", "a:b"] {
            assert!(parse_part_token(Some(bad), 2, op).is_err(), "{bad}");
        }
    }

    #[test]
    fn cut_hands_out_an_ec2_page_in_parts() {
        let start = Cursor::default();
        let (a, next) = cut(vec![1, 2, 3, 4, 5], &start, 2, Some("T2".into()));
        assert_eq!(a, [1, 2]);
        let next = next.unwrap();
        assert_eq!(
            next,
            Cursor {
                ec2_token: None,
                skip: 2
            }
        );
        let (b, next) = cut(vec![1, 2, 3, 4, 5], &next, 2, Some("T2".into()));
        assert_eq!(b, [3, 4]);
        let (c, next) = cut(vec![1, 2, 3, 4, 5], &next.unwrap(), 2, Some("T2".into()));
        assert_eq!(c, [5]);
        assert_eq!(
            next.unwrap(),
            Cursor {
                ec2_token: Some("T2".into()),
                skip: 0
            }
        );
        let (d, next) = cut(vec![6], &Cursor::default(), 2, None);
        assert_eq!((d, next), (vec![6], None));
    }

    #[test]
    fn filters_push_down_what_ec2_can_match() {
        let mut f = InstanceFilter {
            ids: vec![InstanceId::new("i-1")],
            states: vec![InstanceState::Running, InstanceState::Terminating],
            name: Some("web".into()),
            ..Default::default()
        };
        f.tags.insert("tier".into(), Some("db".into()));
        f.tags.insert("env".into(), None);
        f.tags.insert("glob".into(), Some("a*b".into()));
        let got: Vec<(String, Vec<String>)> = instance_filters(&f)
            .unwrap()
            .iter()
            .map(|x| (x.name().unwrap().to_owned(), x.values().to_vec()))
            .collect();
        let want = |n: &str, v: &[&str]| (n.to_owned(), v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            got,
            vec![
                want("instance-id", &["i-1"]),
                want("instance-state-name", &["running", "shutting-down"]),
                want("tag:Name", &["web"]),
                want("tag-key", &["env"]),
                want("tag-key", &["glob"]),
                want("tag:tier", &["db"]),
            ]
        );
        let only_rebooting = InstanceFilter {
            states: vec![InstanceState::Rebooting],
            ..Default::default()
        };
        assert!(instance_filters(&only_rebooting).is_none());
    }

    #[test]
    fn request_hash_ignores_the_token_only() {
        let a = InstanceSpec::new("ami-1", "t2.micro")
            .name("a")
            .client_token("x");
        let b = a.clone().client_token("y");
        let c = a.clone().name("c");
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
        assert_eq!(request_hash(&a).len(), 16);
    }

    #[test]
    fn long_client_tokens_are_hashed_for_ec2() {
        assert_eq!(ec2_client_token("abc"), "abc");
        let long = "x".repeat(100);
        let t = ec2_client_token(&long);
        assert!(t.len() <= 64 && t.starts_with("cms-"), "{t}");
        assert_eq!(t, ec2_client_token(&long));
    }

    #[test]
    fn spec_checks() {
        let ok = InstanceSpec::new("ami-1", "t2.micro").name("web");
        check_spec(&ok).unwrap();
        let reserved = ok.clone().tag("cms:client-token", "x");
        assert_eq!(
            check_spec(&reserved).unwrap_err().context_value("argument"),
            Some("tags")
        );
        let clash = ok.clone().tag("Name", "other");
        assert!(check_spec(&clash).is_err());
        check_spec(&ok.clone().tag("Name", "web")).unwrap();
        check_tag_changes(&TagChanges::new().set_tag("env", "prod").remove_tag("x")).unwrap();
        for reserved in ["cms:client-token", "aws:cloudformation:stack", "Name"] {
            let e = check_tag_changes(&TagChanges::new().remove_tag(reserved)).unwrap_err();
            assert_eq!(e.context_value("tag"), Some(reserved));
            let e = check_tag_changes(&TagChanges::new().set_tag(reserved, "v")).unwrap_err();
            assert_eq!(e.kind(), cms_core::ErrorKind::InvalidArgument, "{reserved}");
        }
        assert!(tag_keys(&["env".into()])[0].value().is_none());
        for bad in ["10.0.0.300/99", "10.0.0.0", "10.0.0.0/33", "x/24"] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
        check_cidr("172.31.96.0/24").unwrap();
    }
}
