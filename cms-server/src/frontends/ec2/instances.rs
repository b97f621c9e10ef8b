//! Instances: RunInstances, DescribeInstances, DescribeInstanceStatus and the state
//! changes (Start/Stop/Reboot/TerminateInstances).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use cms_core::{
    BlockDevice, FlavorId, ImageId, Instance, InstanceAction, InstanceFilter, InstanceSpec,
    InstanceState, NetworkId, Page, PageRequest, SnapshotId, VolumeFilter, VolumeId, VolumeState,
    MAX_VOLUME_GIB,
};

use super::actions::{
    account_id, caps, check_filters, check_shape, derived_id, ec2_state, max_results, missing_ids,
    next_token, page_token, paging_error, refs, require, resolve_catalogue, shown_tags,
    tag_specifications, Memo, Refs, DEFAULT_GROUP, IMAGE_CODES, INSTANCE_CODES, MAX_LAUNCH,
    ROOT_DEVICE, SUBNET_CODES,
};
use super::error::{Ec2Error, Result};
use super::families::{ec2_device, idempotency, listing, public_ids, resolve_owned, zone};
use super::params::{filters, Filter, View};
use super::security_groups::{launch_groups, names_of, usable_group_names, GroupNames};
use super::volumes::SNAPSHOT_CODES;
use super::xml::{id_leaf, leaf, time_bytes, time_text, Xml};
use super::{Action, Call};
use crate::service::{CreateRequest, InstanceRef, Owned};
use crate::service::{Entry, Kind};

/// Creates in flight at once for one state change of many instances.
const CONCURRENCY: usize = 8;

/// What the answers of a page of instances name besides their image and network,
/// loaded once for the page: their security groups (their public ids and names) and
/// their volumes (public ids, states, creation times). Nothing is asked when no
/// instance of the page names any.
#[derive(Default)]
pub(super) struct Related {
    /// Groups by backend id, when the provider keeps security groups (otherwise each
    /// instance shows its VPC's derived default group).
    groups: Option<GroupNames>,
    /// Volumes by backend id.
    volumes: HashMap<String, VolumeInfo>,
}

/// A volume an instance shows in its `blockDeviceMapping`.
struct VolumeInfo {
    public: Arc<str>,
    state: Option<VolumeState>,
    created: Option<chrono::DateTime<chrono::Utc>>,
}

impl Related {
    /// What `vms` name, in one listing per family.
    pub(super) async fn of(c: &Call<'_>, vms: &[&Instance]) -> Result<Related> {
        let mut r = Related::default();
        if caps(c).security_groups.list {
            let ids: Vec<&str> = vms
                .iter()
                .flat_map(|vm| vm.security_group_ids.iter().map(|g| g.as_str()))
                .collect();
            r.groups = Some(names_of(c, ids).await?);
        }
        let mut ids: Vec<&str> = vms
            .iter()
            .flat_map(|vm| vm.volumes.iter().map(|v| v.volume_id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(r);
        }
        if caps(c).volumes.list {
            let filter = VolumeFilter {
                ids: ids.iter().map(|i| VolumeId::new(*i)).collect(),
                ..VolumeFilter::default()
            };
            let listed = listing(c, None, true, |req| {
                let filter = &filter;
                async move {
                    c.service
                        .list_volumes(c.tenant, c.provider, filter, &req, true)
                        .await
                }
            })
            .await;
            // Volumes a member may not list (its provider keeps no owners of volumes)
            // are shown by id alone.
            let listed = match listed {
                Ok((listed, _)) => listed,
                Err(e) if e.code == "UnsupportedOperation" => Vec::new(),
                Err(e) => return Err(e),
            };
            for v in listed {
                r.volumes.insert(
                    v.item.id.to_string(),
                    VolumeInfo {
                        public: v.entry().public_id.clone(),
                        state: Some(v.item.state),
                        created: v.item.created_at,
                    },
                );
            }
        }
        let unseen: Vec<&str> = ids
            .into_iter()
            .filter(|i| !r.volumes.contains_key(*i))
            .collect();
        for (b, public) in public_ids(c, Kind::Volume, unseen).await? {
            r.volumes.insert(
                b,
                VolumeInfo {
                    public,
                    state: None,
                    created: None,
                },
            );
        }
        Ok(r)
    }

    /// The public ids and names of an instance's groups (`None`: the provider keeps
    /// no groups).
    fn groups_of<'a>(
        &'a self,
        vm: &'a Instance,
    ) -> Option<impl Iterator<Item = (&'a str, &'a str)>> {
        let groups = self.groups.as_ref()?;
        Some(
            vm.security_group_ids
                .iter()
                .filter_map(move |g| groups.get(g.as_str()).map(|(id, name)| (&**id, &**name))),
        )
    }
}

/// Writes one instance `<item>`.
pub(super) fn write_instance(x: &mut Xml, vm: &Instance, e: &Entry, r: &Refs, rel: &Related) {
    // The hot path of DescribeInstances: constant runs are written in one piece.
    let (code, name) = ec2_state(vm.state);
    id_leaf!(x.raw("<item>"), "instanceId", &e.public_id);
    if let Some(i) = r.image {
        id_leaf!(x, "imageId", i);
    }
    x.raw("<instanceState>").num("code", code);
    leaf!(x, "name", name).raw("</instanceState>");
    let private_ip = vm.private_ips.first().map(String::as_str);
    let public_ip = vm.public_ips.first().map(String::as_str);
    match private_ip {
        Some(ip) => x.private_dns("privateDnsName", ip),
        None => x.raw("<privateDnsName/>"),
    };
    x.raw("<dnsName/><reason/>");
    if let Some(k) = vm.key_name.as_deref() {
        leaf!(x, "keyName", k);
    }
    x.num("amiLaunchIndex", e.launch_index)
        .raw("<productCodes/>");
    if let Some(f) = &vm.flavor_id {
        leaf!(x, "instanceType", f.as_str());
    }
    // The launch time is also the root volume's attach time: written once.
    let launched = vm.created_at.as_ref().map(time_bytes);
    let launched = launched
        .as_ref()
        .map(|b| std::str::from_utf8(b).unwrap_or_default());
    x.leaf_opt("launchTime", launched);
    let zone = vm.location_id.as_ref().map(|l| l.as_str()).unwrap_or("");
    leaf!(x.raw("<placement>"), "availabilityZone", zone).raw(
        "<groupName/><tenancy>default</tenancy></placement>\
             <monitoring><state>disabled</state></monitoring>",
    );
    if let Some(s) = r.subnet {
        id_leaf!(x, "subnetId", s);
    }
    if let Some(v) = r.vpc {
        id_leaf!(x, "vpcId", v);
    }
    if let Some(ip) = private_ip {
        leaf!(x, "privateIpAddress", ip);
    }
    if let Some(ip) = public_ip {
        leaf!(x, "ipAddress", ip);
    }
    x.raw("<sourceDestCheck>true</sourceDestCheck>");
    write_groups(x, vm, r, rel);
    if vm.state == InstanceState::Error {
        x.raw("<stateReason><code>Server.InternalError</code>")
            .leaf("message", &state_reason(vm))
            .raw("</stateReason>");
    }
    x.raw(
        "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>\
         <rootDeviceName>/dev/sda1</rootDeviceName>",
    );
    write_devices(x, vm, e, launched, rel);
    x.raw("<virtualizationType>hvm</virtualizationType>");
    x.tags("tagSet", shown_tags(vm));
    x.raw(
        "<hypervisor>xen</hypervisor><networkInterfaceSet/>\
         <ebsOptimized>false</ebsOptimized><platformDetails>Linux/UNIX</platformDetails></item>",
    );
}

/// `groupSet`: the instance's security groups, where the provider keeps them;
/// otherwise its VPC's default group (an instance outside any VPC has none).
pub(super) fn write_groups(x: &mut Xml, vm: &Instance, r: &Refs, rel: &Related) {
    if let Some(groups) = rel.groups_of(vm) {
        let mut opened = false;
        for (id, name) in groups {
            if !opened {
                x.raw("<groupSet>");
                opened = true;
            }
            id_leaf!(x.raw("<item>"), "groupId", id);
            leaf!(x, "groupName", name).raw("</item>");
        }
        x.raw(if opened { "</groupSet>" } else { "<groupSet/>" });
        return;
    }
    match r.group {
        Some(g) => id_leaf!(x.raw("<groupSet><item>"), "groupId", g)
            .raw("<groupName>default</groupName></item></groupSet>"),
        None => x.raw("<groupSet/>"),
    };
}

/// Whether an instance shows the root volume cms derives for it, as EBS shows one:
/// attached at launch, deleted on termination (so a terminated instance has none),
/// unless the backend shows the volume at the root device itself.
pub(super) fn root_volume(vm: &Instance) -> bool {
    vm.state != InstanceState::Terminated
        && !vm
            .volumes
            .iter()
            .any(|v| v.device.as_deref().map(ec2_device).as_deref() == Some(ROOT_DEVICE))
}

/// EBS's status of an attachment of a volume in `state` to `vm`.
fn attachment_status(vm: &Instance, state: Option<VolumeState>) -> &'static str {
    match state {
        Some(VolumeState::Attaching) => "attaching",
        Some(VolumeState::Detaching) => "detaching",
        _ if vm.state == InstanceState::Terminating => "detaching",
        _ => "attached",
    }
}

/// `blockDeviceMapping`: the root volume, attached when the instance was launched
/// (`launched`, as EC2 writes times), then the volumes the backend shows attached.
/// The model keeps no attach time: a volume's is the later of the launch and its
/// creation (exact for volumes made with the instance or for it).
pub(super) fn write_devices(
    x: &mut Xml,
    vm: &Instance,
    e: &Entry,
    launched: Option<&str>,
    rel: &Related,
) {
    let root = root_volume(vm);
    if !root && vm.volumes.is_empty() {
        x.raw("<blockDeviceMapping/>");
        return;
    }
    x.raw("<blockDeviceMapping>");
    if root {
        x.raw("<item><deviceName>/dev/sda1</deviceName><ebs>")
            .derived_id("volumeId", "vol", &e.public_id)
            .raw(volume_status(vm).1);
        if let Some(t) = launched {
            leaf!(x, "attachTime", t);
        }
        x.raw("<deleteOnTermination>true</deleteOnTermination></ebs></item>");
    }
    for v in &vm.volumes {
        let info = rel.volumes.get(v.volume_id.as_str());
        x.raw("<item>");
        leaf!(
            x,
            "deviceName",
            &ec2_device(v.device.as_deref().unwrap_or(""))
        );
        x.raw("<ebs>");
        if let Some(i) = info {
            id_leaf!(x, "volumeId", &i.public);
        }
        leaf!(
            x,
            "status",
            attachment_status(vm, info.and_then(|i| i.state))
        );
        let attached = match (vm.created_at, info.and_then(|i| i.created)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = &attached {
            x.time("attachTime", t);
        }
        x.bool("deleteOnTermination", v.delete_on_termination)
            .raw("</ebs></item>");
    }
    x.raw("</blockDeviceMapping>");
}

/// The root volume's status, and its `<status>` element.
fn volume_status(vm: &Instance) -> (&'static str, &'static str) {
    match vm.state {
        InstanceState::Terminating => ("detaching", "<status>detaching</status>"),
        _ => ("attached", "<status>attached</status>"),
    }
}

/// Every DescribeInstances filter of the EC2 API (its 2016-11-15 model), so that
/// one cms does not serve is told apart from a misspelt one.
const EC2_INSTANCE_FILTERS: &[&str] = &[
    "affinity", "architecture", "availability-zone", "availability-zone-id",
    "block-device-mapping.attach-time", "block-device-mapping.delete-on-termination",
    "block-device-mapping.device-name", "block-device-mapping.status",
    "block-device-mapping.volume-id", "boot-mode", "capacity-reservation-id",
    "capacity-reservation-specification.capacity-reservation-preference",
    "capacity-reservation-specification.capacity-reservation-target.capacity-reservation-id",
    "capacity-reservation-specification.capacity-reservation-target.capacity-reservation-resource-group-arn",
    "client-token", "current-instance-boot-mode", "dns-name", "ebs-optimized", "ena-support",
    "enclave-options.enabled", "hibernation-options.configured", "host-id", "hypervisor",
    "iam-instance-profile.arn", "iam-instance-profile.id", "image-id", "instance-id",
    "instance-lifecycle", "instance-state-code", "instance-state-name", "instance-type",
    "instance.group-id", "instance.group-name", "ip-address", "ipv6-address", "kernel-id",
    "key-name", "launch-index", "launch-time", "maintenance-options.auto-recovery",
    "metadata-options.http-endpoint", "metadata-options.http-protocol-ipv4",
    "metadata-options.http-protocol-ipv6", "metadata-options.http-put-response-hop-limit",
    "metadata-options.http-tokens", "metadata-options.instance-metadata-tags",
    "metadata-options.state", "monitoring-state", "network-performance-options.bandwidth-weighting",
    "operator.managed", "operator.principal", "outpost-arn", "owner-id", "placement-group-name",
    "placement-partition-number", "platform", "platform-details", "private-dns-name",
    "private-dns-name-options.enable-resource-name-dns-a-record",
    "private-dns-name-options.enable-resource-name-dns-aaaa-record",
    "private-dns-name-options.hostname-type", "private-ip-address", "product-code",
    "product-code.type", "ramdisk-id", "reason", "requester-id", "reservation-id",
    "root-device-name", "root-device-type", "source-dest-check", "spot-instance-request-id",
    "state-reason-code", "state-reason-message", "subnet-id", "tag-key", "tenancy",
    "tpm-support", "usage-operation", "usage-operation-update-time", "virtualization-type",
    "vpc-id",
];

/// The DescribeInstances filters on what cms shows (and `tag:KEY`), each read by
/// [`instance_field`].
const SERVED: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "image-id",
    "instance-type",
    "key-name",
    "availability-zone",
    "availability-zone-id",
    "subnet-id",
    "vpc-id",
    "instance.group-id",
    "instance.group-name",
    "group-id",
    "group-name",
    "reservation-id",
    "launch-index",
    "private-ip-address",
    "private-dns-name",
    "ip-address",
    "dns-name",
    "reason",
    "launch-time",
    "owner-id",
    "architecture",
    "hypervisor",
    "virtualization-type",
    "tenancy",
    "monitoring-state",
    "platform-details",
    "root-device-type",
    "root-device-name",
    "source-dest-check",
    "ebs-optimized",
    "block-device-mapping.device-name",
    "block-device-mapping.volume-id",
    "block-device-mapping.status",
    "block-device-mapping.delete-on-termination",
    "block-device-mapping.attach-time",
    "state-reason-code",
    "state-reason-message",
    "tag-key",
    "tag-value",
];

/// Filters on what no cms instance has (spot requests, kernels, dedicated hosts, …):
/// served, and they match no instance, as on EC2 for instances without it.
const ABSENT: &[&str] = &[
    "affinity",
    "capacity-reservation-id",
    "host-id",
    "iam-instance-profile.arn",
    "iam-instance-profile.id",
    "instance-lifecycle",
    "ipv6-address",
    "kernel-id",
    "outpost-arn",
    "placement-group-name",
    "placement-partition-number",
    "platform",
    "product-code",
    "product-code.type",
    "ramdisk-id",
    "requester-id",
    "spot-instance-request-id",
];

/// The error for a DescribeInstances filter cms does not serve: one EC2 has
/// (naming what cms lacks) or a name EC2 does not know.
fn unserved_filter(name: &str) -> Ec2Error {
    if name.starts_with("network-interface.") {
        return Ec2Error::invalid_value(format!(
            "The filter '{name}' is not supported here: cms shows no network interfaces \
             (filter by private-ip-address, ip-address, subnet-id or vpc-id instead)"
        ));
    }
    if EC2_INSTANCE_FILTERS.contains(&name) {
        return Ec2Error::invalid_value(format!(
            "The filter '{name}' is not supported here: cms instances do not show it"
        ));
    }
    super::params::unknown_filter(name)
}

/// The public ids of the catalogue a request's filters compare with (loaded only when
/// a filter names images or networks).
#[derive(Default)]
struct CatalogueIds {
    images: HashMap<Arc<str>, Arc<str>>,
    networks: HashMap<Arc<str>, (Arc<str>, Arc<str>)>,
    /// Security groups the tenant may use, by backend id: public id and name (when
    /// the provider keeps groups and a filter names them).
    groups: Option<GroupNames>,
    /// The tenant's volumes by backend id (when a filter names volume ids).
    volumes: HashMap<String, Arc<str>>,
}

impl CatalogueIds {
    async fn for_filters(c: &Call<'_>, fs: &[Filter]) -> Result<CatalogueIds> {
        let mut ids = CatalogueIds::default();
        let s = c.service;
        if fs.iter().any(|f| f.name == "image-id") {
            let images = s
                .collect_images(c.tenant, c.provider, &cms_core::ImageFilter::default())
                .await?;
            let backend: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
            let public = s.public_ids(c.provider, Kind::Image, &backend).await?;
            ids.images = backend.into_iter().map(Arc::from).zip(public).collect();
        }
        let names_groups = |f: &Filter| {
            matches!(
                f.name.as_str(),
                "instance.group-id" | "instance.group-name" | "group-id" | "group-name"
            )
        };
        let groups_kept = caps(c).security_groups.list;
        if groups_kept && fs.iter().any(names_groups) {
            ids.groups = Some(usable_group_names(c).await?);
        }
        if fs
            .iter()
            .any(|f| f.name == "block-device-mapping.volume-id")
            && caps(c).volumes.list
        {
            let filter = VolumeFilter::default();
            let (listed, _) = listing(c, None, true, |req| {
                let filter = &filter;
                async move {
                    c.service
                        .list_volumes(c.tenant, c.provider, filter, &req, true)
                        .await
                }
            })
            .await?;
            ids.volumes = listed
                .into_iter()
                .map(|v| (v.item.id.to_string(), v.entry().public_id.clone()))
                .collect();
        }
        if fs.iter().any(|f| {
            matches!(f.name.as_str(), "subnet-id" | "vpc-id") || (!groups_kept && names_groups(f))
        }) {
            let nets = s.collect_networks(c.provider).await?;
            let backend: Vec<&str> = nets.iter().map(|n| n.id.as_str()).collect();
            let subnets = s.public_ids(c.provider, Kind::Subnet, &backend).await?;
            let vpcs = s.public_ids(c.provider, Kind::Vpc, &backend).await?;
            ids.networks = backend
                .into_iter()
                .map(Arc::from)
                .zip(subnets.into_iter().zip(vpcs))
                .collect();
        }
        Ok(ids)
    }
}

/// The value(s) a DescribeInstances filter looks at; `None`: not a filter cms
/// serves. Every value is as the answer shows it.
fn instance_field(f: &str, o: &Owned, ids: &CatalogueIds) -> Option<Vec<String>> {
    let vm = &o.instance;
    let e = o.entry();
    let one = |s: Option<&str>| s.map(|s| vec![s.to_owned()]).unwrap_or_default();
    let is = |s: &str| vec![s.to_owned()];
    let net = vm
        .network_ids
        .first()
        .and_then(|n| ids.networks.get(n.as_str()));
    let root = root_volume(vm);
    let when = |b: bool, v: Vec<String>| if b { v } else { Vec::new() };
    Some(match f {
        "instance-id" => vec![e.public_id.to_string()],
        "instance-state-name" => is(ec2_state(vm.state).1),
        "instance-state-code" => vec![ec2_state(vm.state).0.to_string()],
        "image-id" => one(vm
            .image_id
            .as_ref()
            .and_then(|i| ids.images.get(i.as_str()))
            .map(|s| &**s)),
        "instance-type" => one(vm.flavor_id.as_ref().map(|f| f.as_str())),
        "key-name" => one(vm.key_name.as_deref()),
        "availability-zone" | "availability-zone-id" => {
            one(vm.location_id.as_ref().map(|l| l.as_str()))
        }
        "subnet-id" => one(net.map(|(s, _)| &**s)),
        "vpc-id" => one(net.map(|(_, v)| &**v)),
        "instance.group-id" | "group-id" => match &ids.groups {
            Some(groups) => vm
                .security_group_ids
                .iter()
                .filter_map(|g| groups.get(g.as_str()))
                .map(|(id, _)| id.to_string())
                .collect(),
            None => one(net.map(|(_, v)| derived_id("sg", v)).as_deref()),
        },
        "instance.group-name" | "group-name" => match &ids.groups {
            Some(groups) => vm
                .security_group_ids
                .iter()
                .filter_map(|g| groups.get(g.as_str()))
                .map(|(_, name)| name.to_string())
                .collect(),
            None => when(net.is_some(), is(DEFAULT_GROUP)),
        },
        "reservation-id" => one(e.reservation.as_deref()),
        "launch-index" => vec![e.launch_index.to_string()],
        "private-ip-address" => vm.private_ips.clone(),
        "private-dns-name" => vm
            .private_ips
            .first()
            .map(|ip| private_dns(ip))
            .into_iter()
            .collect(),
        "ip-address" => vm.public_ips.clone(),
        // cms shows no public DNS names (`<dnsName/>`) and no reason.
        "dns-name" | "reason" => is(""),
        "launch-time" => vm.created_at.as_ref().map(time_text).into_iter().collect(),
        "owner-id" => one(owner_of(o).map(account_id).as_deref()),
        "architecture" => is("x86_64"),
        "hypervisor" => is("xen"),
        "virtualization-type" => is("hvm"),
        "tenancy" => is("default"),
        "monitoring-state" => is("disabled"),
        "platform-details" => is("Linux/UNIX"),
        "root-device-type" => is("ebs"),
        "root-device-name" => is(ROOT_DEVICE),
        "source-dest-check" => is("true"),
        "ebs-optimized" => is("false"),
        "block-device-mapping.device-name" => when(root, is(ROOT_DEVICE))
            .into_iter()
            .chain(
                vm.volumes
                    .iter()
                    .filter_map(|v| v.device.as_deref().map(|d| ec2_device(d).into_owned())),
            )
            .collect(),
        "block-device-mapping.volume-id" => when(root, vec![derived_id("vol", &e.public_id)])
            .into_iter()
            .chain(
                vm.volumes
                    .iter()
                    .filter_map(|v| ids.volumes.get(v.volume_id.as_str()))
                    .map(|p| p.to_string()),
            )
            .collect(),
        "block-device-mapping.status" => when(root, is(volume_status(vm).0))
            .into_iter()
            .chain(
                vm.volumes
                    .iter()
                    .map(|_| attachment_status(vm, None).to_owned()),
            )
            .collect(),
        "block-device-mapping.delete-on-termination" => when(root, is("true"))
            .into_iter()
            .chain(
                vm.volumes
                    .iter()
                    .map(|v| v.delete_on_termination.to_string()),
            )
            .collect(),
        "block-device-mapping.attach-time" => when(
            root,
            vm.created_at.as_ref().map(time_text).into_iter().collect(),
        ),
        "state-reason-code" => when(vm.state == InstanceState::Error, is("Server.InternalError")),
        "state-reason-message" => when(vm.state == InstanceState::Error, vec![state_reason(vm)]),
        "tag-key" => shown_tags(vm).iter().map(|(k, _)| k.to_string()).collect(),
        "tag-value" => shown_tags(vm).iter().map(|(_, v)| v.to_string()).collect(),
        absent if ABSENT.contains(&absent) => Vec::new(),
        _ => {
            let key = f.strip_prefix("tag:")?;
            shown_tags(vm)
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .collect()
        }
    })
}

/// The private DNS name EC2 gives an address.
/// EC2's private DNS name of an address, as [`Xml::private_dns`] writes it (for
/// filters).
fn private_dns(ip: &str) -> String {
    if ip.parse::<std::net::Ipv4Addr>().is_ok() {
        format!("ip-{}.ec2.internal", ip.replace('.', "-"))
    } else {
        ip.to_owned()
    }
}

fn state_reason(vm: &Instance) -> String {
    format!(
        "Server.InternalError: the backend reports `{}`",
        vm.raw_state
    )
}

/// The tenant an instance belongs to, when known.
fn owner_of(o: &Owned) -> Option<&str> {
    o.instance
        .owner
        .as_deref()
        .or_else(|| o.entry.as_ref().and_then(|e| e.tenant.as_deref()))
}

/// What of the EC2 filters the driver can do itself: states, and tags (the name)
/// with one plain value. The frontend checks every filter again.
fn pushdown(fs: &[Filter]) -> InstanceFilter {
    let mut f = InstanceFilter::default();
    let plain = |v: &str| !v.contains(['*', '?']);
    for flt in fs {
        match flt.name.as_str() {
            "instance-state-name" => {
                let states: Vec<InstanceState> = InstanceState::ALL
                    .into_iter()
                    .filter(|s| flt.matches([ec2_state(*s).1]))
                    .collect();
                f.states = match f.states.is_empty() {
                    true => states,
                    false => f
                        .states
                        .into_iter()
                        .filter(|s| states.contains(s))
                        .collect(),
                };
            }
            name => {
                if let (Some(key), [value]) = (name.strip_prefix("tag:"), flt.values.as_slice()) {
                    if plain(key) && plain(value) {
                        if key == "Name" {
                            f.name = Some(value.clone());
                        } else {
                            f.tags.insert(key.to_owned(), Some(value.clone()));
                        }
                    }
                }
            }
        }
    }
    f
}

/// The tenant's instances a Describe* request selects: one page (with `MaxResults`) or
/// all, by `InstanceId.N` (known ids only) or by the listing, and `keep`.
async fn select(
    c: &Call<'_>,
    pushed: &InstanceFilter,
    max: Option<usize>,
    keep: Option<&(dyn Fn(&Owned) -> bool + Send + Sync)>,
) -> Result<Page<Owned>> {
    let ids = c.p.list("InstanceId")?;
    let s = c.service;
    if !ids.is_empty() {
        check_shape(&ids, Kind::Instance, INSTANCE_CODES)?;
        let found = s
            .instances_by_public_id(c.tenant, c.provider, &ids, pushed)
            .await?;
        let items = match found {
            Ok(items) => items,
            Err(missing) => return Err(missing_ids(INSTANCE_CODES.1, INSTANCE_CODES.2, &missing)),
        };
        return Ok(Page::last(
            items
                .into_iter()
                .filter(|o| keep.is_none_or(|k| k(o)))
                .collect(),
        ));
    }
    match max {
        Some(n) => {
            let page = PageRequest {
                limit: Some(n as u32),
                token: page_token(&c.p)?,
            };
            s.list_instances(c.tenant, c.provider, pushed, &page, true, keep)
                .await
                .map_err(paging_error)
        }
        None => {
            let mut all = Vec::new();
            let mut page = PageRequest {
                limit: None,
                token: page_token(&c.p)?,
            };
            loop {
                let got = s
                    .list_instances(c.tenant, c.provider, pushed, &page, true, keep)
                    .await
                    .map_err(paging_error)?;
                all.extend(got.items);
                match got.next {
                    Some(t) => page = PageRequest::after(None, t),
                    None => return Ok(Page::last(all)),
                }
            }
        }
    }
}

pub(super) async fn describe_instances(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).instances.list, "listing instances")?;
    let fs = filters(&c.p)?;
    for f in &fs {
        if !f.name.starts_with("tag:")
            && !SERVED.contains(&f.name.as_str())
            && !ABSENT.contains(&f.name.as_str())
        {
            return Err(unserved_filter(&f.name));
        }
    }
    let max = max_results(&c.p, 5..=1000)?;
    if max.is_some() && !c.p.list("InstanceId")?.is_empty() {
        return Err(Ec2Error::combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let ids = CatalogueIds::for_filters(c, &fs).await?;
    let keep = |o: &Owned| {
        fs.iter().all(|f| {
            instance_field(&f.name, o, &ids)
                .is_some_and(|vals| f.matches(vals.iter().map(String::as_str)))
        })
    };
    // Without filters, every instance the driver lists is kept: no filter to apply.
    let keep: Option<&(dyn Fn(&Owned) -> bool + Send + Sync)> =
        if fs.is_empty() { None } else { Some(&keep) };
    let page = select(c, &pushdown(&fs), max, keep).await?;
    // The same request over the same views (and next token) has the same answer, but
    // for its request id.
    let pages = c.provider.describe_pages();
    let key = page_key(c);
    let views = || page.items.iter().map(|o| &o.instance);
    if let Some(kept) = pages.get(&key, views(), page.next.as_ref()) {
        let mut x = Xml::response("DescribeInstances", c.request_id, kept.body.len() + 256);
        x.append(&kept.body);
        return Ok(x.finish("DescribeInstances"));
    }
    // One reservation per launch, in the order its first instance appears (ids
    // borrowed from the rows: no shared count moves).
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    // Instances of one launch are mostly listed one after the other: the last
    // reservation is compared before the map is asked.
    let mut last: Option<(&str, Vec<usize>)> = None;
    for (i, o) in page.items.iter().enumerate() {
        let r = o
            .entry()
            .reservation
            .as_deref()
            .unwrap_or("r-00000000000000000");
        match &mut last {
            Some((l, members)) if *l == r => members.push(i),
            _ => {
                if let Some((l, members)) = last.take() {
                    groups.insert(l, members);
                }
                let mut members = groups.remove(r).unwrap_or_else(|| {
                    order.push(r);
                    Vec::new()
                });
                members.push(i);
                last = Some((r, members));
            }
        }
    }
    if let Some((l, members)) = last {
        groups.insert(l, members);
    }
    let items = &page.items;
    // Each instance's `item`, kept with its view while it stays the same (its row,
    // image, network and groups do not change either) and lent to the answer; written
    // for the others, and again for any the cache lets go of in between.
    let kept = c.provider.instance_xml();
    let mut made: Vec<Option<Box<str>>> = vec![None; items.len()];
    let mut missing: Vec<usize> = {
        let r = kept.read();
        (0..items.len())
            .filter(|&i| r.get(&items[i].instance).is_none())
            .collect()
    };
    let x = loop {
        if !missing.is_empty() {
            let vms: Vec<&Instance> = missing.iter().map(|&i| &*items[i].instance).collect();
            let related = Related::of(c, &vms).await?;
            let mut memo = Memo::default();
            for &i in &missing {
                let o = &items[i];
                let refs = refs(c, &o.instance, &mut memo).await?;
                let mut item = Xml::fragment(2048);
                write_instance(&mut item, &o.instance, o.entry(), &refs, &related);
                made[i] = Some(item.into_markup().into_boxed_str());
            }
            kept.insert(
                missing
                    .iter()
                    .filter_map(|&i| Some((&items[i].instance, made[i].clone()?))),
            );
        }
        let r = kept.read();
        let item = |i: usize| {
            made[i]
                .as_deref()
                .or_else(|| r.get(&items[i].instance).map(|b| &**b))
        };
        missing = (0..items.len()).filter(|&i| item(i).is_none()).collect();
        if !missing.is_empty() {
            continue;
        }
        let size: usize = (0..items.len()).filter_map(item).map(str::len).sum();
        let mut x = Xml::response(
            "DescribeInstances",
            c.request_id,
            512 + size + items.len() * 128,
        );
        let start = x.position();
        write_reservations(c, &mut x, items, &order, &mut groups, &item);
        break (x, start);
    };
    let (mut x, start) = x;
    x.leaf_opt("nextToken", next_token(page.next.as_ref()).as_deref());
    pages.insert(key, views(), page.next.as_ref(), x.since(start));
    Ok(x.finish("DescribeInstances"))
}

/// Where [`Pages`] keeps a `DescribeInstances` answer: the tenant and the request's
/// parameters, as sent (the signature's aside). The key only picks a place: an answer
/// is served again only for the same views and next token, of which (with the tenant,
/// for reservations without an owner) it is made.
///
/// [`Pages`]: crate::service::views::Pages
fn page_key(c: &Call<'_>) -> String {
    let mut key = String::with_capacity(128);
    key.push_str(&c.tenant.name);
    for (k, v) in c.p.entries() {
        if k.starts_with("X-Amz-") {
            continue;
        }
        key.push('\n');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

/// The `reservationSet` of a `DescribeInstances` answer: one reservation per launch,
/// in `order`, its instances by launch index, each `item` as written before.
fn write_reservations<'a>(
    c: &Call<'_>,
    x: &mut Xml,
    items: &[Owned],
    order: &[&str],
    groups: &mut HashMap<&str, Vec<usize>>,
    item: &dyn Fn(usize) -> Option<&'a str>,
) {
    if items.is_empty() {
        x.empty("reservationSet");
    } else {
        x.open("reservationSet");
        for &r in order {
            let mut members = groups.remove(r).unwrap_or_default();
            members.sort_by_key(|&i| items[i].entry().launch_index);
            let owner = owner_of(&items[members[0]]).unwrap_or(&c.tenant.name);
            id_leaf!(x.open("item"), "reservationId", r)
                .leaf("ownerId", &account_id(owner))
                .empty("groupSet")
                .open("instancesSet");
            for i in members {
                x.append(item(i).unwrap_or_default());
            }
            x.close("instancesSet").close("item");
        }
        x.close("reservationSet");
    }
}

pub(super) async fn describe_instance_status(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).instances.list, "listing instances")?;
    let fs = filters(&c.p)?;
    const KNOWN: &[&str] = &[
        "availability-zone",
        "instance-state-name",
        "instance-state-code",
        "instance-status.status",
        "system-status.status",
    ];
    check_filters(&fs, KNOWN, &[])?;
    let max = max_results(&c.p, 5..=1000)?;
    if max.is_some() && !c.p.list("InstanceId")?.is_empty() {
        return Err(Ec2Error::combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let include_all = c.p.bool("IncludeAllInstances")?.unwrap_or(false);
    let status = |vm: &Instance| match vm.state {
        InstanceState::Running | InstanceState::Rebooting => "ok",
        InstanceState::Error => "impaired",
        _ => "not-applicable",
    };
    let keep = |o: &Owned| {
        let vm = &o.instance;
        (include_all || vm.state == InstanceState::Running)
            && fs.iter().all(|f| {
                let (code, name) = ec2_state(vm.state);
                let code = code.to_string();
                let v: Vec<&str> = match f.name.as_str() {
                    "availability-zone" => vm.location_id.iter().map(|l| l.as_str()).collect(),
                    "instance-state-name" => vec![name],
                    "instance-state-code" => vec![code.as_str()],
                    _ => vec![status(vm)],
                };
                f.matches(v)
            })
    };
    let mut pushed = pushdown(&fs);
    if !include_all && pushed.states.is_empty() {
        pushed.states = vec![InstanceState::Running];
    }
    let page = select(c, &pushed, max, Some(&keep)).await?;
    let mut x = Xml::response(
        "DescribeInstanceStatus",
        c.request_id,
        256 + page.items.len() * 500,
    );
    x.open("instanceStatusSet");
    for o in &page.items {
        let vm = &o.instance;
        let (code, name) = ec2_state(vm.state);
        let s = status(vm);
        x.open("item")
            .leaf("instanceId", &o.entry().public_id)
            .leaf(
                "availabilityZone",
                vm.location_id.as_ref().map(|l| l.as_str()).unwrap_or(""),
            )
            .open("instanceState")
            .num("code", code)
            .leaf("name", name)
            .close("instanceState");
        for set in ["systemStatus", "instanceStatus"] {
            x.open(set).leaf("status", s).open("details");
            x.open("item")
                .leaf("name", "reachability")
                .leaf("status", if s == "ok" { "passed" } else { "initializing" })
                .close("item");
            x.close("details").close(set);
        }
        x.close("item");
    }
    x.close("instanceStatusSet");
    x.leaf_opt("nextToken", next_token(page.next.as_ref()).as_deref());
    Ok(x.finish("DescribeInstanceStatus"))
}

/// What EC2 does with a state change asked of an instance in a state: act, answer
/// the instance as it is (nothing to do), or refuse. This is the table of the EC2
/// frontend's documentation (README, "EC2 state changes"), in AWS's words; states
/// cms has and EC2 lacks go by the EC2 state they are shown as, except `error` and
/// `unknown`, which the backend decides.
fn ec2_step(action: Action, vm: &Instance, id: &str) -> Result<bool> {
    let refuse = |message: String| Err(Ec2Error::new("IncorrectInstanceState", 400, message));
    if matches!(vm.state, InstanceState::Error | InstanceState::Unknown) {
        return Ok(true);
    }
    let state = ec2_state(vm.state).1;
    match (action, state) {
        (Action::StartInstances, "stopped") => Ok(true),
        (Action::StartInstances, "pending" | "running") => Ok(false),
        (Action::StartInstances, _) => refuse(format!(
            "The instance '{id}' is not in a state from which it can be started."
        )),
        (Action::StopInstances, "running") => Ok(true),
        (Action::StopInstances, "stopping" | "stopped") => Ok(false),
        (Action::StopInstances, "pending") => refuse(format!(
            "Instance '{id}' cannot be stopped as it has never reached the 'running' state."
        )),
        (Action::StopInstances, _) => refuse(format!(
            "This instance '{id}' is not in a state from which it can be stopped."
        )),
        // A reboot is queued: one under way already is the one asked for, and a
        // pending instance is booting anyway; those of terminated instances are ignored.
        (Action::RebootInstances, "running") => Ok(vm.state != InstanceState::Rebooting),
        (Action::RebootInstances, "pending" | "shutting-down" | "terminated") => Ok(false),
        (Action::RebootInstances, _) => refuse(format!(
            "The instance '{id}' is not in a state from which it can be rebooted."
        )),
        (_, "shutting-down" | "terminated") => Ok(false),
        _ => Ok(true),
    }
}

pub(super) async fn change_state(c: &Call<'_>, action: Action) -> Result<String> {
    let ic = &caps(c).instances;
    let (supported, what, act) = match action {
        Action::StartInstances => (ic.start, "starting instances", InstanceAction::Start),
        Action::StopInstances => (ic.stop, "stopping instances", InstanceAction::Stop),
        Action::RebootInstances => (ic.reboot, "rebooting instances", InstanceAction::Reboot),
        _ => (ic.delete, "terminating instances", InstanceAction::Delete),
    };
    require(c, supported && ic.get, what)?;
    if action == Action::StopInstances && c.p.bool("Hibernate")? == Some(true) {
        return Err(Ec2Error::unsupported(
            "cms instances do not hibernate (Hibernate=true); stop them without it",
        ));
    }
    // `Force` asks to stop without a clean shutdown; cms drivers stop as their backend
    // does, which a forced stop may also be.
    c.p.bool("Force")?;
    let ids = c.p.list("InstanceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId.1"));
    }
    check_shape(&ids, Kind::Instance, INSTANCE_CODES)?;
    // Every id and every instance's state is checked before anything is done: a
    // refused request changes nothing.
    let found = c
        .service
        .instances_by_public_id(c.tenant, c.provider, &ids, &InstanceFilter::default())
        .await?;
    let found = match found {
        Ok(found) => found,
        Err(missing) => return Err(missing_ids(INSTANCE_CODES.1, INSTANCE_CODES.2, &missing)),
    };
    for (id, o) in ids.iter().zip(&found) {
        ec2_step(action, &o.instance, id)?;
    }
    let mut results: Vec<(InstanceState, Owned)> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CONCURRENCY) {
        let done = futures::future::join_all(chunk.iter().map(|id| {
            c.service.act_when(
                c.tenant,
                c.provider,
                InstanceRef::Public(id),
                act,
                |vm: &Instance| ec2_step(action, vm, id),
            )
        }))
        .await;
        for r in done {
            results.push(r?);
        }
    }
    let name = action.as_str();
    let mut x = Xml::response(name, c.request_id, 256 + results.len() * 300);
    if action == Action::RebootInstances {
        x.bool("return", true);
        return Ok(x.finish(name));
    }
    x.open("instancesSet");
    for (id, (before, after)) in ids.iter().zip(&results) {
        let (pc, pn) = ec2_state(*before);
        let (cc, cn) = ec2_state(after.instance.state);
        x.open("item")
            .leaf("instanceId", id)
            .open("currentState")
            .num("code", cc)
            .leaf("name", cn)
            .close("currentState")
            .open("previousState")
            .num("code", pc)
            .leaf("name", pn)
            .close("previousState")
            .close("item");
    }
    x.close("instancesSet");
    Ok(x.finish(name))
}

/// The launch options cms takes in their EC2 default only: detailed monitoring,
/// EBS optimization, termination and stop protection, and what a shutdown from
/// inside the instance does. Another value is refused, never ignored.
fn launch_options(p: &View<'_>) -> Result<()> {
    let refuse = |name: &str, what: &str| {
        Err(Ec2Error::unsupported(format!(
            "{name}: cms instances have no {what}; leave it out or give its default"
        )))
    };
    for (name, what) in [
        ("Monitoring.Enabled", "detailed monitoring"),
        ("EbsOptimized", "EBS optimization"),
        ("DisableApiTermination", "termination protection"),
        ("DisableApiStop", "stop protection"),
    ] {
        if p.bool(name)? == Some(true) {
            return refuse(name, what);
        }
    }
    match p.get("InstanceInitiatedShutdownBehavior") {
        None | Some("stop") => Ok(()),
        Some("terminate") => refuse(
            "InstanceInitiatedShutdownBehavior",
            "other shutdown behaviour than `stop`",
        ),
        Some(v) => Err(Ec2Error::invalid_value(format!(
            "Value ({v}) for parameter InstanceInitiatedShutdownBehavior is invalid. Expected stop or terminate."
        ))),
    }
}

/// `SecurityGroupId.N` and `SecurityGroup.N` of a launch on a provider that keeps no
/// security groups: each VPC has one, its `default` one, which every instance is in;
/// naming it is fine, naming another is `InvalidGroup.NotFound`.
async fn check_groups(c: &Call<'_>, network: Option<&NetworkId>) -> Result<()> {
    let ids = c.p.list("SecurityGroupId")?;
    let names = c.p.list("SecurityGroup")?;
    if ids.is_empty() && names.is_empty() {
        return Ok(());
    }
    let backend = match network {
        Some(n) => Some(n.as_str().to_owned()),
        None if caps(c).networks.list => c
            .service
            .collect_networks(c.provider)
            .await?
            .into_iter()
            .find(|n| n.is_default)
            .map(|n| n.id.to_string()),
        None => None,
    };
    let vpc = match backend {
        Some(b) => Some(
            c.service
                .public_ids(c.provider, Kind::Vpc, &[b.as_str()])
                .await?
                .remove(0),
        ),
        None => None,
    };
    let group = vpc.as_deref().map(|v| derived_id("sg", v));
    let missing = |what: &str| {
        Ec2Error::new(
            "InvalidGroup.NotFound",
            400,
            match &vpc {
                Some(v) => format!(
                    "The security group '{what}' does not exist in VPC '{v}' (cms has one group per VPC, `default`, {})",
                    group.as_deref().unwrap_or_default()
                ),
                None => format!("The security group '{what}' does not exist"),
            },
        )
    };
    for id in ids {
        if Some(id) != group.as_deref() {
            return Err(missing(id));
        }
    }
    for name in names {
        if name != DEFAULT_GROUP || group.is_none() {
            return Err(missing(name));
        }
    }
    Ok(())
}

/// The EBS volume types a block device mapping may name (cms volumes are shown as
/// `gp2`).
const VOLUME_TYPES: &[&str] = &["standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"];

/// `BlockDeviceMapping.N` of a launch: new EBS volumes made with the instance, and
/// the snapshots they name (backend id, public id). The root volume is the image's:
/// a mapping for the root device is refused (cms cannot resize or replace it), as are
/// encrypted volumes; instance-store devices are not taken at all.
async fn block_devices(c: &Call<'_>) -> Result<(Vec<BlockDevice>, Vec<(String, String)>)> {
    let mut out: Vec<BlockDevice> = Vec::new();
    let mut snapshots = Vec::new();
    for m in c.p.structs("BlockDeviceMapping")? {
        let device = m.required("DeviceName")?;
        if device == ROOT_DEVICE {
            return Err(Ec2Error::unsupported(format!(
                "{}: {ROOT_DEVICE} is the root volume, made from the image; cms cannot resize or \
                 replace it (map data volumes at /dev/sdf to /dev/sdp)",
                m.full_name("DeviceName")
            )));
        }
        if out.iter().any(|b| b.device.as_deref() == Some(device)) {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid block device mapping: the device name {device} is mapped twice"
            )));
        }
        let ebs = m.nested("Ebs");
        if let Some(t) = ebs.get("VolumeType") {
            if !VOLUME_TYPES.contains(&t) {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({t}) for parameter {} is invalid. Valid values: {}",
                    ebs.full_name("VolumeType"),
                    VOLUME_TYPES.join(", ")
                )));
            }
        }
        if ebs.bool("Encrypted")? == Some(true) {
            return Err(Ec2Error::unsupported(format!(
                "{}: cms volumes are not encrypted",
                ebs.full_name("Encrypted")
            )));
        }
        let size = ebs.int("VolumeSize", 1..=i64::from(MAX_VOLUME_GIB))?;
        let snapshot = match ebs.get("SnapshotId").filter(|s| !s.is_empty()) {
            Some(s) => {
                let b = resolve_owned(c, Kind::Snapshot, &[s], SNAPSHOT_CODES)
                    .await?
                    .remove(0);
                snapshots.push((b.to_string(), s.to_owned()));
                Some(SnapshotId::new(&*b))
            }
            None => None,
        };
        if size.is_none() && snapshot.is_none() {
            return Err(Ec2Error::missing(&ebs.full_name("VolumeSize")));
        }
        out.push(BlockDevice {
            device: Some(device.to_owned()),
            size_gib: size.map(|s| s as u32),
            snapshot_id: snapshot,
            delete_on_termination: ebs.bool("DeleteOnTermination")?.unwrap_or(true),
        });
    }
    Ok((out, snapshots))
}

pub(super) async fn run_instances(c: &Call<'_>) -> Result<String> {
    let ic = &caps(c).instances;
    require(c, ic.create, "launching instances")?;
    let p = &c.p;
    let s = c.service;
    let min = p
        .int("MinCount", 1..=MAX_LAUNCH)?
        .ok_or_else(|| Ec2Error::missing("MinCount"))?;
    let max = p
        .int("MaxCount", 1..=MAX_LAUNCH)?
        .ok_or_else(|| Ec2Error::missing("MaxCount"))?;
    if min > max {
        return Err(Ec2Error::invalid_value(format!(
            "MinCount ({min}) must not be more than MaxCount ({max})"
        )));
    }
    let image_ec2 = p.required("ImageId")?;
    // The catalogue's images and the tenant's own: another tenant's is not found.
    let image = resolve_owned(c, Kind::Image, &[image_ec2], IMAGE_CODES)
        .await?
        .remove(0);
    let flavors = s
        .collect_flavors(c.provider)
        .await
        .map_err(|e| Ec2Error::from_core(&e, "InvalidInstanceType"))?;
    let flavor = match p.get("InstanceType") {
        Some(t) => {
            if !flavors.iter().any(|f| f.id.as_str() == t) {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid value '{t}' for InstanceType. DescribeInstanceTypes lists the types of region `{}`.",
                    c.provider.name
                )));
            }
            FlavorId::new(t)
        }
        // EC2 picks a small default type; here, the smallest the provider has.
        None => flavors
            .iter()
            .min_by_key(|f| (f.vcpus, f.memory_mib))
            .map(|f| f.id.clone())
            .ok_or_else(|| Ec2Error::missing("InstanceType"))?,
    };
    launch_options(p)?;
    let key_name = p
        .get("KeyName")
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let mut network_ids: Vec<NetworkId> = match p.get("SubnetId").filter(|s| !s.is_empty()) {
        Some(sn) => resolve_catalogue(c, Kind::Subnet, &[sn], SUBNET_CODES)
            .await?
            .into_iter()
            .map(|n| NetworkId::new(&*n))
            .collect(),
        None => Vec::new(),
    };
    let security_group_ids = if caps(c).security_groups.list {
        let (groups, their_network) = launch_groups(c, network_ids.first()).await?;
        network_ids.extend(their_network);
        groups
    } else {
        check_groups(c, network_ids.first()).await?;
        Vec::new()
    };
    let (volumes, snapshots) = block_devices(c).await?;
    let location_id = zone(c, p.nested("Placement").get("AvailabilityZone")).await?;
    let user_data = match p.get("UserData").filter(|u| !u.is_empty()) {
        Some(u) => {
            require(c, ic.user_data, "user data")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .map_err(|_| Ec2Error::invalid_value("Invalid BASE64 encoding of user data."))?;
            Some(String::from_utf8(bytes).map_err(|_| {
                Ec2Error::invalid_value(
                    "UserData must be base64 of UTF-8 text (cms passes user data as text)",
                )
            })?)
        }
        None => None,
    };
    let mut tags = tag_specifications(p, "instance")?;
    if !tags.is_empty() {
        require(c, ic.tags, "tags")?;
    }
    let name = tags.remove("Name").unwrap_or_default();
    let idem = idempotency(c)?;
    let token = idem.as_ref().map(|i| i.key.clone());
    let req = CreateRequest {
        spec: InstanceSpec {
            name,
            image_id: ImageId::new(&*image),
            flavor_id: flavor,
            network_ids,
            location_id,
            key_name,
            user_data,
            tags,
            client_token: None,
            owner: None,
            security_group_ids,
            volumes,
        },
        min: min as u32,
        max: max as u32,
        idempotency: idem,
        seed: None,
    };
    let launch = s
        .create_instances(c.tenant, c.provider, &req)
        .await
        .map_err(|e| {
            let e = snapshots
                .iter()
                .fold(e, |e, (backend, public)| e.renamed(backend, public));
            match e.context_value("reason") {
                Some("idempotent_parameter_mismatch") => Ec2Error::new(
                    "IdempotentParameterMismatch",
                    400,
                    format!(
                        "The client token '{}' was used before with other parameters; use a new token for a new request",
                        token.as_deref().unwrap_or_default()
                    ),
                ),
                _ => e.into(),
            }
        })?;
    let mut x = Xml::response(
        "RunInstances",
        c.request_id,
        512 + launch.instances.len() * 1600,
    );
    x.leaf("reservationId", &launch.reservation)
        .leaf("ownerId", &account_id(&c.tenant.name))
        .empty("groupSet")
        .open("instancesSet");
    let mut memo = Memo::default();
    let mut seen = HashSet::new();
    let vms: Vec<&Instance> = launch.instances.iter().map(|o| &*o.instance).collect();
    let related = Related::of(c, &vms).await?;
    for o in &launch.instances {
        if !seen.insert(o.entry().public_id.clone()) {
            continue;
        }
        let r = refs(c, &o.instance, &mut memo).await?;
        write_instance(&mut x, &o.instance, o.entry(), &r, &related);
    }
    x.close("instancesSet");
    Ok(x.finish("RunInstances"))
}
