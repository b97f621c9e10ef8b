//! The actions: each reads its parameters, calls the [service](crate::service) and
//! writes the answer. The actions live beside this file by resource (`instances`,
//! `tags`, `keys`, `catalogue`, `account`, `volumes`, `images`, `security_groups`,
//! `addresses`); what they share is here, and in `families` what the families of
//! tenant-owned objects besides instances share.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use cms_core::{Capabilities, Instance, InstanceState, PageToken, Tags};
use sha2::{Digest, Sha256};

use super::error::{Ec2Error, Result};
use super::params::{unknown_filter, Filter, View};
use super::{Action, Call};
use crate::service::Kind;

/// Instances launched by one RunInstances at most (EC2 has account limits instead).
pub(super) const MAX_LAUNCH: i64 = 100;

pub(super) async fn run(action: Action, c: &Call<'_>) -> Result<String> {
    use super::{
        account, addresses, attributes, catalogue, images, instances, keys, security_groups, tags,
        volumes,
    };
    match action {
        Action::RunInstances => instances::run_instances(c).await,
        Action::DescribeInstances => instances::describe_instances(c).await,
        Action::DescribeInstanceStatus => instances::describe_instance_status(c).await,
        Action::StartInstances
        | Action::StopInstances
        | Action::RebootInstances
        | Action::TerminateInstances => instances::change_state(c, action).await,
        Action::DescribeImages => catalogue::describe_images(c).await,
        Action::DescribeInstanceTypes => catalogue::describe_instance_types(c).await,
        Action::DescribeRegions => catalogue::describe_regions(c),
        Action::DescribeAvailabilityZones => catalogue::describe_zones(c).await,
        Action::DescribeVpcs => catalogue::describe_networks(c, Kind::Vpc).await,
        Action::DescribeSubnets => catalogue::describe_networks(c, Kind::Subnet).await,
        Action::CreateTags => tags::change_tags(c, true).await,
        Action::DeleteTags => tags::change_tags(c, false).await,
        Action::DescribeTags => tags::describe_tags(c).await,
        Action::CreateKeyPair => keys::create_key_pair(c, false).await,
        Action::ImportKeyPair => keys::create_key_pair(c, true).await,
        Action::DescribeKeyPairs => keys::describe_key_pairs(c).await,
        Action::DeleteKeyPair => keys::delete_key_pair(c).await,
        Action::DescribeAccountAttributes => account::describe_account_attributes(c).await,
        Action::DescribeAddresses => addresses::describe_addresses(c).await,
        Action::AllocateAddress => addresses::allocate_address(c).await,
        Action::AssociateAddress => addresses::associate_address(c).await,
        Action::DisassociateAddress => addresses::disassociate_address(c).await,
        Action::ReleaseAddress => addresses::release_address(c).await,
        Action::DescribeInstanceAttribute => attributes::describe_instance_attribute(c).await,
        Action::GetConsoleOutput => attributes::get_console_output(c).await,
        Action::CreateVolume => volumes::create_volume(c).await,
        Action::DescribeVolumes => volumes::describe_volumes(c).await,
        Action::AttachVolume => volumes::attach_volume(c).await,
        Action::DetachVolume => volumes::detach_volume(c).await,
        Action::DeleteVolume => volumes::delete_volume(c).await,
        Action::CreateSnapshot => volumes::create_snapshot(c).await,
        Action::DescribeSnapshots => volumes::describe_snapshots(c).await,
        Action::DeleteSnapshot => volumes::delete_snapshot(c).await,
        Action::CreateImage => images::create_image(c).await,
        Action::DeregisterImage => images::deregister_image(c).await,
        Action::CreateSecurityGroup => security_groups::create_security_group(c).await,
        Action::DescribeSecurityGroups => security_groups::describe_security_groups(c).await,
        Action::DeleteSecurityGroup => security_groups::delete_security_group(c).await,
        Action::AuthorizeSecurityGroupIngress
        | Action::AuthorizeSecurityGroupEgress
        | Action::RevokeSecurityGroupIngress
        | Action::RevokeSecurityGroupEgress => security_groups::change_rules(c, action).await,
    }
}

/// The parameters every action takes: the action, the API version, `DryRun`, and
/// those of a presigned (query-string) SigV4 signature.
pub(super) const COMMON: &[&str] = &[
    "Action",
    "Version",
    "DryRun",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

const FILTERS: [&str; 2] = ["Filter.N.Name", "Filter.N.Value.N"];
const PAGES: [&str; 2] = ["MaxResults", "NextToken"];
const TAG_SPECS: [&str; 3] = [
    "TagSpecification.N.ResourceType",
    "TagSpecification.N.Tag.N.Key",
    "TagSpecification.N.Tag.N.Value",
];
/// The rules of Authorize/RevokeSecurityGroup* (IPv4 ranges and group peers), in the
/// structured form and in the legacy top-level one.
const PERMISSIONS: [&str; 15] = [
    "IpPermissions.N.IpProtocol",
    "IpPermissions.N.FromPort",
    "IpPermissions.N.ToPort",
    "IpPermissions.N.IpRanges.N.CidrIp",
    "IpPermissions.N.IpRanges.N.Description",
    "IpPermissions.N.Groups.N.GroupId",
    "IpPermissions.N.Groups.N.GroupName",
    "IpPermissions.N.Groups.N.UserId",
    "IpPermissions.N.Groups.N.Description",
    "CidrIp",
    "IpProtocol",
    "FromPort",
    "ToPort",
    "SourceSecurityGroupName",
    "SourceSecurityGroupOwnerId",
];

/// The parameters each action takes beyond [`COMMON`], as patterns (`N`: a list
/// position; see [`describes`](super::params::describes)). Each is read by the action;
/// any other is refused with `UnknownParameter`.
pub(super) fn parameters(action: Action) -> &'static [&'static str] {
    macro_rules! with_filters {
        ($($p:expr),* $(,)?) => {{
            const P: &[&str] = &[FILTERS[0], FILTERS[1], $($p),*];
            P
        }};
    }
    macro_rules! with_tag_specs {
        ($($p:expr),* $(,)?) => {{
            const P: &[&str] = &[TAG_SPECS[0], TAG_SPECS[1], TAG_SPECS[2], $($p),*];
            P
        }};
    }
    macro_rules! with_rules {
        ($($p:expr),* $(,)?) => {{
            const P: &[&str] = &[
        PERMISSIONS[0], PERMISSIONS[1], PERMISSIONS[2], PERMISSIONS[3], PERMISSIONS[4], PERMISSIONS[5], PERMISSIONS[6], PERMISSIONS[7], PERMISSIONS[8], PERMISSIONS[9], PERMISSIONS[10], PERMISSIONS[11], PERMISSIONS[12], PERMISSIONS[13], PERMISSIONS[14],
                $($p),*
            ];
            P
        }};
    }
    macro_rules! with_pages {
        ($($p:expr),* $(,)?) => {
            with_filters!(PAGES[0], PAGES[1], $($p),*)
        };
    }
    match action {
        Action::RunInstances => &[
            "ImageId",
            "InstanceType",
            "MinCount",
            "MaxCount",
            "KeyName",
            "UserData",
            "SubnetId",
            "Placement.AvailabilityZone",
            "SecurityGroupId.N",
            "SecurityGroup.N",
            "BlockDeviceMapping.N.DeviceName",
            "BlockDeviceMapping.N.Ebs.VolumeSize",
            "BlockDeviceMapping.N.Ebs.SnapshotId",
            "BlockDeviceMapping.N.Ebs.DeleteOnTermination",
            "BlockDeviceMapping.N.Ebs.VolumeType",
            "BlockDeviceMapping.N.Ebs.Encrypted",
            "TagSpecification.N.ResourceType",
            "TagSpecification.N.Tag.N.Key",
            "TagSpecification.N.Tag.N.Value",
            "ClientToken",
            "Monitoring.Enabled",
            "EbsOptimized",
            "DisableApiTermination",
            "DisableApiStop",
            "InstanceInitiatedShutdownBehavior",
        ],
        Action::DescribeInstances => with_pages!("InstanceId.N"),
        Action::DescribeInstanceStatus => with_pages!("InstanceId.N", "IncludeAllInstances"),
        Action::StartInstances | Action::RebootInstances | Action::TerminateInstances => {
            &["InstanceId.N"]
        }
        Action::StopInstances => &["InstanceId.N", "Force", "Hibernate"],
        Action::DescribeImages => with_pages!(
            "ImageId.N",
            "Owner.N",
            "ExecutableBy.N",
            "IncludeDeprecated",
            "IncludeDisabled",
        ),
        Action::DescribeInstanceTypes => with_pages!("InstanceType.N"),
        Action::DescribeRegions => with_filters!("RegionName.N", "AllRegions"),
        Action::DescribeAvailabilityZones => {
            with_filters!("ZoneName.N", "ZoneId.N", "AllAvailabilityZones")
        }
        Action::DescribeVpcs => with_pages!("VpcId.N"),
        Action::DescribeSubnets => with_pages!("SubnetId.N"),
        Action::CreateTags | Action::DeleteTags => &["ResourceId.N", "Tag.N.Key", "Tag.N.Value"],
        Action::DescribeTags => with_pages!(),
        Action::CreateKeyPair => &[
            "KeyName",
            "KeyType",
            "KeyFormat",
            "TagSpecification.N.ResourceType",
            "TagSpecification.N.Tag.N.Key",
            "TagSpecification.N.Tag.N.Value",
        ],
        Action::ImportKeyPair => &[
            "KeyName",
            "PublicKeyMaterial",
            "TagSpecification.N.ResourceType",
            "TagSpecification.N.Tag.N.Key",
            "TagSpecification.N.Tag.N.Value",
        ],
        Action::DescribeKeyPairs => with_filters!("KeyName.N", "KeyPairId.N", "IncludePublicKey"),
        Action::DeleteKeyPair => &["KeyName", "KeyPairId"],
        Action::DescribeAccountAttributes => &["AttributeName.N"],
        Action::DescribeAddresses => with_filters!("PublicIp.N", "AllocationId.N"),
        Action::AllocateAddress => with_tag_specs!("Domain"),
        Action::AssociateAddress => &[
            "AllocationId",
            "PublicIp",
            "InstanceId",
            "PrivateIpAddress",
            "AllowReassociation",
            "NetworkInterfaceId",
        ],
        Action::DisassociateAddress => &["AssociationId", "PublicIp"],
        Action::ReleaseAddress => &["AllocationId", "PublicIp"],
        Action::CreateVolume => with_tag_specs!(
            "AvailabilityZone",
            "Size",
            "SnapshotId",
            "VolumeType",
            "Encrypted",
            "ClientToken"
        ),
        Action::DescribeVolumes => with_pages!("VolumeId.N"),
        Action::AttachVolume => &["VolumeId", "InstanceId", "Device"],
        Action::DetachVolume => &["VolumeId", "InstanceId", "Device", "Force"],
        Action::DeleteVolume => &["VolumeId"],
        Action::CreateSnapshot => with_tag_specs!("VolumeId", "Description"),
        Action::DescribeSnapshots => with_pages!("SnapshotId.N", "Owner.N"),
        Action::DeleteSnapshot => &["SnapshotId"],
        Action::CreateImage => with_tag_specs!("InstanceId", "Name", "Description", "NoReboot"),
        Action::DeregisterImage => &["ImageId", "DeleteAssociatedSnapshots"],
        Action::CreateSecurityGroup => with_tag_specs!("GroupName", "GroupDescription", "VpcId"),
        Action::DescribeSecurityGroups => with_pages!("GroupId.N", "GroupName.N"),
        Action::DeleteSecurityGroup => &["GroupId", "GroupName"],
        Action::AuthorizeSecurityGroupIngress => with_rules!(
            "GroupId",
            "GroupName",
            TAG_SPECS[0],
            TAG_SPECS[1],
            TAG_SPECS[2],
        ),
        Action::AuthorizeSecurityGroupEgress => {
            with_rules!("GroupId", TAG_SPECS[0], TAG_SPECS[1], TAG_SPECS[2],)
        }
        Action::RevokeSecurityGroupIngress => {
            with_rules!("GroupId", "GroupName", "SecurityGroupRuleId.N",)
        }
        Action::RevokeSecurityGroupEgress => with_rules!("GroupId", "SecurityGroupRuleId.N",),
        Action::DescribeInstanceAttribute => &["InstanceId", "Attribute"],
        Action::GetConsoleOutput => &["InstanceId", "Latest"],
    }
}

/// A tenant's 12-digit account id (stable, derived from its name).
pub(super) fn account_id(tenant: &str) -> String {
    let d = Sha256::digest(tenant.as_bytes());
    let n =
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 1_000_000_000_000;
    format!("{n:012}")
}

/// The account id that owns the shared catalogue of a provider.
pub(super) fn catalogue_owner(c: &Call<'_>) -> String {
    account_id(&format!("provider:{}", c.provider.name))
}

/// The EC2 state of a cms state: (code, name). cms states EC2 lacks take the nearest
/// EC2 one: rebooting is running, suspended and error are stopped (error with a
/// state reason), unknown is pending.
pub(super) fn ec2_state(s: InstanceState) -> (u32, &'static str) {
    match s {
        InstanceState::Pending | InstanceState::Unknown => (0, "pending"),
        InstanceState::Running | InstanceState::Rebooting => (16, "running"),
        InstanceState::Terminating => (32, "shutting-down"),
        InstanceState::Terminated => (48, "terminated"),
        InstanceState::Stopping => (64, "stopping"),
        InstanceState::Stopped | InstanceState::Suspended | InstanceState::Error => (80, "stopped"),
    }
}

pub(super) fn unsupported(c: &Call<'_>, what: &str) -> Ec2Error {
    Ec2Error::unsupported(format!(
        "provider `{}` (driver {}) does not support {what}",
        c.provider.name, c.provider.driver
    ))
}

pub(super) fn caps<'a>(c: &'a Call<'_>) -> &'a Capabilities {
    c.provider.capabilities()
}

pub(super) fn require(c: &Call<'_>, supported: bool, what: &str) -> Result<()> {
    if supported {
        Ok(())
    } else {
        Err(unsupported(c, what))
    }
}

/// `MaxResults` within `range`, or `None`.
pub(super) fn max_results(
    p: &View<'_>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<usize>> {
    Ok(p.int("MaxResults", range)?.map(|n| n as usize))
}

const TOKEN_PREFIX: &str = "cms1:";

fn encode_token(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{key}"))
}

fn decode_token(token: &str) -> Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(TOKEN_PREFIX).map(str::to_owned))
        .ok_or_else(bad_token)
}

fn bad_token() -> Ec2Error {
    Ec2Error::new(
        "InvalidPaginationToken",
        400,
        "The specified pagination token (NextToken) is not valid",
    )
}

/// The `NextToken` of a service page: the page token, wrapped.
pub(super) fn next_token(t: Option<&PageToken>) -> Option<String> {
    t.map(|t| encode_token(t.as_str()))
}

/// The page token a `NextToken` carries.
pub(super) fn page_token(p: &View<'_>) -> Result<Option<PageToken>> {
    match p.get("NextToken").filter(|t| !t.is_empty()) {
        Some(t) => Ok(Some(PageToken::new(decode_token(t)?))),
        None => Ok(None),
    }
}

/// A service error about paging: a token the service does not know is the client's
/// `NextToken` gone wrong.
pub(super) fn paging_error(e: cms_core::Error) -> Ec2Error {
    if e.context_value("argument") == Some("page_token") {
        bad_token()
    } else {
        e.into()
    }
}

/// Cuts a page out of `items`, sorted by `key`: those after the `NextToken`'s key,
/// at most `max`. Answers the page and the next token.
pub(super) fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    max: Option<usize>,
    p: &View<'_>,
) -> Result<(Vec<T>, Option<String>)> {
    if let Some(token) = p.get("NextToken").filter(|t| !t.is_empty()) {
        let after = decode_token(token)?;
        items.retain(|i| key(i) > after);
    }
    match max {
        Some(n) if items.len() > n => {
            items.truncate(n);
            let next = items.last().map(|i| encode_token(&key(i)));
            Ok((items, next))
        }
        _ => Ok((items, None)),
    }
}

pub(super) fn check_filters(fs: &[Filter], known: &[&str], prefixes: &[&str]) -> Result<()> {
    for f in fs {
        if !known.contains(&f.name.as_str()) && !prefixes.iter().any(|p| f.name.starts_with(p)) {
            return Err(unknown_filter(&f.name));
        }
    }
    Ok(())
}

/// The error of public ids that name nothing: one id, or a list of them.
pub(super) fn missing_ids(code: &'static str, what: &str, missing: &[String]) -> Ec2Error {
    match missing {
        [one] => Ec2Error::not_found(code, what, one),
        many => Ec2Error::new(
            code,
            400,
            format!("The {what}s '{}' do not exist", many.join(", ")),
        ),
    }
}

pub(super) const IMAGE_CODES: (&str, &str, &str) = (
    "InvalidAMIID.Malformed",
    "InvalidAMIID.NotFound",
    "image id",
);

pub(super) const INSTANCE_CODES: (&str, &str, &str) = (
    "InvalidInstanceID.Malformed",
    "InvalidInstanceID.NotFound",
    "instance ID",
);

pub(super) const SUBNET_CODES: (&str, &str, &str) = (
    "InvalidSubnetID.Malformed",
    "InvalidSubnetID.NotFound",
    "subnet ID",
);

/// Checks the shape of public ids of `kind` (`Malformed` otherwise).
pub(super) fn check_shape(
    ids: &[&str],
    kind: Kind,
    codes: (&'static str, &str, &str),
) -> Result<()> {
    match ids.iter().find(|id| Kind::of_id(id) != Some(kind)) {
        Some(id) => Err(Ec2Error::malformed(codes.0, codes.2, id)),
        None => Ok(()),
    }
}

/// The backend ids of shared objects (images, subnets) by their public ids, in order.
pub(super) async fn resolve_catalogue(
    c: &Call<'_>,
    kind: Kind,
    ids: &[&str],
    codes: (&'static str, &'static str, &str),
) -> Result<Vec<Arc<str>>> {
    check_shape(ids, kind, codes)?;
    match c.service.resolve_public(c.provider, kind, ids).await? {
        Ok(b) => Ok(b),
        Err(missing) => Err(missing_ids(codes.1, codes.2, &missing)),
    }
}

/// The id of something cms shows for an object without keeping it apart: an
/// instance's root volume (`vol-`), a VPC's default security group on a provider that
/// keeps no groups (`sg-`), an image's root snapshot (`snap-`). It is the object's own id with the other prefix
/// (the 17 digits are the object's, so the id is as stable and as unique as it).
pub(super) fn derived_id(prefix: &str, of: &str) -> String {
    let digits = of.split_once('-').map(|(_, d)| d).unwrap_or(of);
    format!("{prefix}-{digits}")
}

/// The name of the security group every VPC has (on a provider that keeps no security
/// groups, the one its instances are shown in).
pub(super) const DEFAULT_GROUP: &str = "default";

/// The device name of the root volume cms shows for every instance and image.
pub(super) const ROOT_DEVICE: &str = "/dev/sda1";

/// EC2 ids of an instance's image and first network, for answers: lent by the
/// request's [`Memo`], so that writing an instance moves no reference count of ids the
/// whole server shares (two cores counting the same `Arc` made a listing slow).
pub(super) struct Refs<'m> {
    pub image: Option<&'m str>,
    pub subnet: Option<&'m str>,
    pub vpc: Option<&'m str>,
    /// The VPC's default security group.
    pub group: Option<&'m str>,
}

/// The EC2 ids of the images and networks a request has met, so that a listing of
/// instances sharing an image asks once.
/// The last image and network met are kept apart: instances listed together mostly
/// share them, and comparing two ids costs less than hashing one.
#[derive(Default)]
pub(super) struct Memo {
    images: HashMap<Arc<str>, Arc<str>>,
    networks: HashMap<Arc<str>, NetworkIds>,
    last_image: Option<(Arc<str>, Arc<str>)>,
    last_network: Option<(Arc<str>, NetworkIds)>,
}

/// A network's subnet, VPC and default security group ids.
type NetworkIds = (Arc<str>, Arc<str>, Arc<str>);

pub(super) async fn refs<'m>(c: &Call<'_>, vm: &Instance, memo: &'m mut Memo) -> Result<Refs<'m>> {
    let s = c.service;
    let p = c.provider;
    if let Some(i) = &vm.image_id {
        if memo
            .last_image
            .as_ref()
            .is_none_or(|(k, _)| **k != *i.as_str())
        {
            let id = match memo.images.get(i.as_str()) {
                Some(id) => id.clone(),
                None => {
                    let id = s.public_ids(p, Kind::Image, &[i.as_str()]).await?.remove(0);
                    memo.images.insert(i.as_str().into(), id.clone());
                    id
                }
            };
            memo.last_image = Some((i.as_str().into(), id));
        }
    }
    if let Some(n) = vm.network_ids.first() {
        if memo
            .last_network
            .as_ref()
            .is_none_or(|(k, _)| **k != *n.as_str())
        {
            let ids = match memo.networks.get(n.as_str()) {
                Some(ids) => ids.clone(),
                None => {
                    let vpc = s.public_ids(p, Kind::Vpc, &[n.as_str()]).await?.remove(0);
                    let ids = (
                        s.public_ids(p, Kind::Subnet, &[n.as_str()])
                            .await?
                            .remove(0),
                        vpc.clone(),
                        Arc::from(derived_id("sg", &vpc)),
                    );
                    memo.networks.insert(n.as_str().into(), ids.clone());
                    ids
                }
            };
            memo.last_network = Some((n.as_str().into(), ids));
        }
    }
    let memo = &*memo;
    let network = vm
        .network_ids
        .first()
        .and(memo.last_network.as_ref())
        .map(|(_, ids)| ids);
    Ok(Refs {
        image: vm
            .image_id
            .as_ref()
            .and(memo.last_image.as_ref())
            .map(|(_, id)| &**id),
        subnet: network.map(|(s, _, _)| &**s),
        vpc: network.map(|(_, v, _)| &**v),
        group: network.map(|(_, _, g)| &**g),
    })
}

/// A digest of a request's parameters (but its client token, version, dry-run flag
/// and signature): what tells a repeated request with a `ClientToken` from another.
pub(super) fn request_hash(p: &View<'_>) -> String {
    let mut h = Sha256::new();
    for (k, v) in p.entries() {
        if matches!(k, "ClientToken" | "Version" | "DryRun") || k.starts_with("X-Amz-") {
            continue;
        }
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tags shown for an instance: `Name` is its name (cms has a name where EC2 has
/// the `Name` tag), then its other tags.
pub(super) fn shown_tags(vm: &Instance) -> Vec<(&str, &str)> {
    let mut t: Vec<(&str, &str)> = Vec::with_capacity(vm.tags.len() + 1);
    if !vm.name.is_empty() {
        t.push(("Name", vm.name.as_str()));
    }
    t.extend(
        vm.tags
            .iter()
            .filter(|(k, _)| k.as_str() != "Name")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    t
}

/// `TagSpecification.N` tags for `resource_type`, the one thing the action makes;
/// specifications for other resource types are refused (RunInstances tags no volumes
/// or interfaces it makes), never silently dropped.
pub(super) fn tag_specifications(p: &View<'_>, resource_type: &str) -> Result<Tags> {
    let mut tags = Tags::new();
    for spec in p.structs("TagSpecification")? {
        let t = spec.required("ResourceType")?;
        if t != resource_type {
            return Err(Ec2Error::invalid_value(format!(
                "{}: this action makes a `{resource_type}`, not a `{t}`",
                spec.full_name("ResourceType")
            )));
        }
        for tag in spec.structs("Tag")? {
            let key = tag.required("Key")?;
            tags.insert(key.to_owned(), tag.get("Value").unwrap_or("").to_owned());
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_ec2() {
        assert_eq!(ec2_state(InstanceState::Running), (16, "running"));
        assert_eq!(ec2_state(InstanceState::Terminating), (32, "shutting-down"));
        assert_eq!(ec2_state(InstanceState::Terminated), (48, "terminated"));
        assert_eq!(ec2_state(InstanceState::Stopped), (80, "stopped"));
        assert_eq!(ec2_state(InstanceState::Stopping), (64, "stopping"));
        assert_eq!(ec2_state(InstanceState::Pending), (0, "pending"));
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_fail() {
        let t = encode_token("i-0123");
        assert_eq!(decode_token(&t).unwrap(), "i-0123");
        assert_eq!(
            decode_token("garbage!").unwrap_err().code,
            "InvalidPaginationToken"
        );
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("other:x");
        assert!(decode_token(&other).is_err());
    }

    #[test]
    fn account_ids_have_12_digits() {
        let a = account_id("team-a");
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(a, account_id("team-b"));
    }
}
