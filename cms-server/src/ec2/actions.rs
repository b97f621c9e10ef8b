//! The actions: each reads its parameters, calls the provider's driver through the
//! `Cloud` handle, maps ids through the store and writes the answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use cms_core::{
    Capabilities, Flavor, FlavorId, Image, ImageId, Instance, InstanceFilter, InstanceId,
    InstanceSpec, InstanceState, KeyPair, KeyPairSpec, Location, LocationId, Network, NetworkId,
    PageRequest, TagChanges, Tags,
};
use sha2::{Digest, Sha256};

use super::error::{Ec2Error, Result};
use super::params::{filters, unknown_filter, Filter, View};
use super::xml::Xml;
use super::{Action, Call};
use crate::store::{random_id, Entry, Kind};

/// Instances launched by one RunInstances at most (EC2 has account limits instead).
const MAX_LAUNCH: i64 = 100;
/// Creates in flight at once for one RunInstances.
const LAUNCH_CONCURRENCY: usize = 8;

pub(super) async fn run(action: Action, c: &Call<'_>) -> Result<String> {
    match action {
        Action::RunInstances => run_instances(c).await,
        Action::DescribeInstances => describe_instances(c).await,
        Action::DescribeInstanceStatus => describe_instance_status(c).await,
        Action::StartInstances => change_state(c, action).await,
        Action::StopInstances => change_state(c, action).await,
        Action::RebootInstances => change_state(c, action).await,
        Action::TerminateInstances => change_state(c, action).await,
        Action::DescribeImages => describe_images(c).await,
        Action::DescribeInstanceTypes => describe_instance_types(c).await,
        Action::DescribeRegions => describe_regions(c),
        Action::DescribeAvailabilityZones => describe_zones(c).await,
        Action::DescribeVpcs => describe_networks(c, Kind::Vpc).await,
        Action::DescribeSubnets => describe_networks(c, Kind::Subnet).await,
        Action::CreateTags => change_tags(c, true).await,
        Action::DeleteTags => change_tags(c, false).await,
        Action::DescribeTags => describe_tags(c).await,
        Action::CreateKeyPair => create_key_pair(c, false).await,
        Action::ImportKeyPair => create_key_pair(c, true).await,
        Action::DescribeKeyPairs => describe_key_pairs(c).await,
        Action::DeleteKeyPair => delete_key_pair(c).await,
        Action::DescribeAccountAttributes => describe_account_attributes(c).await,
    }
}

// ---------------------------------------------------------------------------------
// Shared pieces.

/// A tenant's 12-digit account id (stable, derived from its name).
pub(super) fn account_id(tenant: &str) -> String {
    let d = Sha256::digest(tenant.as_bytes());
    let n =
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 1_000_000_000_000;
    format!("{n:012}")
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

fn unsupported(c: &Call<'_>, what: &str) -> Ec2Error {
    Ec2Error::unsupported(format!(
        "provider `{}` (driver {}) does not support {what}",
        c.provider.name, c.provider.driver
    ))
}

fn caps<'a>(c: &'a Call<'_>) -> &'a Capabilities {
    c.provider.cloud.capabilities()
}

fn require(c: &Call<'_>, supported: bool, what: &str) -> Result<()> {
    if supported {
        Ok(())
    } else {
        Err(unsupported(c, what))
    }
}

/// `MaxResults` within `range`, or `None`.
fn max_results(p: &View<'_>, range: std::ops::RangeInclusive<i64>) -> Result<Option<usize>> {
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
        .ok_or_else(|| {
            Ec2Error::new(
                "InvalidPaginationToken",
                400,
                "The specified pagination token (NextToken) is not valid",
            )
        })
}

/// Cuts a page out of `items`, sorted by `key`: those after the `NextToken`'s key,
/// at most `max`. Answers the page and the next token.
fn paginate<T>(
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

/// Looks up EC2 ids of `kind` given by the caller: each must be well formed, known,
/// of this provider and (for owned kinds) this tenant's. Answers the backend ids in
/// the order given; unknown ids are one error naming them all.
async fn resolve_ids(
    c: &Call<'_>,
    kind: Kind,
    ids: &[&str],
    codes: (&'static str, &'static str, &str),
) -> Result<Vec<Arc<str>>> {
    let (malformed, not_found, what) = codes;
    let mut out = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        if Kind::of_id(id) != Some(kind) {
            return Err(Ec2Error::malformed(malformed, what, id));
        }
        let r = c.app.store().resolve(id).await?;
        let visible = r.as_ref().is_some_and(|r| {
            *r.provider == *c.provider.name
                && r.kind == kind
                && match &r.tenant {
                    Some(t) => **t == *c.tenant.name,
                    None => true,
                }
        });
        match r {
            Some(r) if visible => out.push(r.backend_id),
            _ => missing.push(*id),
        }
    }
    match missing.len() {
        0 => Ok(out),
        1 => Err(Ec2Error::not_found(not_found, what, missing[0])),
        _ => Err(Ec2Error::new(
            not_found,
            400,
            format!("The {what}s '{}' do not exist", missing.join(", ")),
        )),
    }
}

/// The backend ids of the EC2 ids a Describe* request names (`None`: it names none,
/// so every resource is wanted).
async fn wanted_ids(
    c: &Call<'_>,
    kind: Kind,
    ids: &[&str],
    codes: (&'static str, &'static str, &str),
) -> Result<Option<HashSet<Arc<str>>>> {
    if ids.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        resolve_ids(c, kind, ids, codes)
            .await?
            .into_iter()
            .collect(),
    ))
}

const IMAGE_CODES: (&str, &str, &str) = (
    "InvalidAMIID.Malformed",
    "InvalidAMIID.NotFound",
    "image id",
);

const INSTANCE_CODES: (&str, &str, &str) = (
    "InvalidInstanceID.Malformed",
    "InvalidInstanceID.NotFound",
    "instance ID",
);

/// Every instance of the provider that the tenant launched, with its entry.
async fn owned_instances(c: &Call<'_>, filter: &InstanceFilter) -> Result<Vec<(Instance, Entry)>> {
    require(c, caps(c).instances.list, "listing instances")?;
    // Pages as large as the driver allows: one call for most listings.
    let max = caps(c).instances.max_page_size.max(1);
    let mut vms: Vec<Instance> = Vec::new();
    let mut page = PageRequest::first(max);
    loop {
        let got = c
            .provider
            .cloud
            .list_instances(filter, &page)
            .await
            .map_err(|e| Ec2Error::from_core(&e, "InvalidInstanceID.NotFound"))?;
        if vms.is_empty() {
            vms = got.items;
        } else {
            vms.extend(got.items);
        }
        match got.next {
            Some(t) if Some(&t) != page.token.as_ref() => page = PageRequest::after(Some(max), t),
            _ => break,
        }
    }
    let ids: Vec<&str> = vms.iter().map(|v| v.id.as_str()).collect();
    let entries = c
        .app
        .store()
        .lookup(&c.provider.name, Kind::Instance, &ids)
        .await?;
    Ok(vms
        .into_iter()
        .zip(entries)
        .filter_map(|(vm, e)| match e {
            Some(e) if e.tenant.as_deref() == Some(&*c.tenant.name) => Some((vm, e)),
            _ => None,
        })
        .collect())
}

/// EC2 ids of an instance's image and first network, for answers.
struct Refs {
    image: Option<Arc<str>>,
    subnet: Option<Arc<str>>,
    vpc: Option<Arc<str>>,
}

/// The EC2 ids of the images and networks a request has met, so that a listing of
/// instances sharing an image asks the store once.
#[derive(Default)]
struct Memo {
    images: HashMap<Arc<str>, Arc<str>>,
    networks: HashMap<Arc<str>, (Arc<str>, Arc<str>)>,
}

async fn refs(c: &Call<'_>, vm: &Instance, memo: &mut Memo) -> Result<Refs> {
    let store = c.app.store();
    let p = &c.provider.name;
    let image = match &vm.image_id {
        Some(i) => Some(match memo.images.get(i.as_str()) {
            Some(id) => id.clone(),
            None => {
                let id = store.catalogue_id(p, Kind::Image, i.as_str()).await?;
                memo.images.insert(i.as_str().into(), id.clone());
                id
            }
        }),
        None => None,
    };
    let (subnet, vpc) = match vm.network_ids.first() {
        Some(n) => {
            let (s, v) = match memo.networks.get(n.as_str()) {
                Some(ids) => ids.clone(),
                None => {
                    let ids = (
                        store.catalogue_id(p, Kind::Subnet, n.as_str()).await?,
                        store.catalogue_id(p, Kind::Vpc, n.as_str()).await?,
                    );
                    memo.networks.insert(n.as_str().into(), ids.clone());
                    ids
                }
            };
            (Some(s), Some(v))
        }
        None => (None, None),
    };
    Ok(Refs { image, subnet, vpc })
}

/// The tags shown for an instance: `Name` is its name (cms has a name where EC2 has
/// the `Name` tag), then its other tags.
fn shown_tags(vm: &Instance) -> Vec<(&str, &str)> {
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

/// The name a tenant's key pair has in the backend: key pair names are per tenant
/// (as they are per AWS account), a backend has one namespace per provider.
fn backend_key_name(tenant: &str, name: &str) -> String {
    // `@` is in no tenant name, and every backend takes it in key names (OpenNebula
    // refuses `/` and `:`).
    format!("{tenant}@{name}")
}

/// The name a tenant sees of a backend key pair name.
fn shown_key_name<'a>(tenant: Option<&str>, backend: &'a str) -> &'a str {
    tenant
        .and_then(|t| backend.strip_prefix(t))
        .and_then(|rest| rest.strip_prefix('@'))
        .unwrap_or(backend)
}

fn write_instance(x: &mut Xml, vm: &Instance, e: &Entry, r: &Refs) {
    // The hot path of DescribeInstances: constant runs are written in one piece.
    let (code, name) = ec2_state(vm.state);
    x.raw("<item>").leaf("instanceId", &e.ec2_id);
    x.leaf_opt("imageId", r.image.as_deref());
    x.raw("<instanceState>")
        .num("code", code)
        .leaf("name", name)
        .raw("</instanceState>");
    let private_ip = vm.private_ips.first().map(String::as_str);
    let public_ip = vm.public_ips.first().map(String::as_str);
    match private_ip {
        Some(ip) => x.leaf(
            "privateDnsName",
            &format!("ip-{}.ec2.internal", ip.replace('.', "-")),
        ),
        None => x.raw("<privateDnsName/>"),
    };
    x.raw("<dnsName/><reason/>");
    x.leaf_opt(
        "keyName",
        vm.key_name
            .as_deref()
            .map(|k| shown_key_name(e.tenant.as_deref(), k)),
    );
    x.num("amiLaunchIndex", e.launch_index)
        .raw("<productCodes/>");
    x.leaf_opt("instanceType", vm.flavor_id.as_ref().map(|f| f.as_str()));
    if let Some(t) = &vm.created_at {
        x.time("launchTime", t);
    }
    x.raw("<placement>")
        .leaf(
            "availabilityZone",
            vm.location_id.as_ref().map(|l| l.as_str()).unwrap_or(""),
        )
        .raw(
            "<groupName/><tenancy>default</tenancy></placement>\
             <monitoring><state>disabled</state></monitoring>",
        );
    x.leaf_opt("subnetId", r.subnet.as_deref());
    x.leaf_opt("vpcId", r.vpc.as_deref());
    x.leaf_opt("privateIpAddress", private_ip);
    x.leaf_opt("ipAddress", public_ip);
    x.raw("<sourceDestCheck>true</sourceDestCheck><groupSet/>");
    if vm.state == InstanceState::Error {
        x.raw("<stateReason><code>Server.InternalError</code>")
            .leaf(
                "message",
                &format!(
                    "Server.InternalError: the backend reports `{}`",
                    vm.raw_state
                ),
            )
            .raw("</stateReason>");
    }
    x.raw(
        "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>\
         <rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping/>\
         <virtualizationType>hvm</virtualizationType>",
    );
    x.tags("tagSet", shown_tags(vm));
    x.raw(
        "<hypervisor>xen</hypervisor><networkInterfaceSet/>\
         <ebsOptimized>false</ebsOptimized><platformDetails>Linux/UNIX</platformDetails></item>",
    );
}

// ---------------------------------------------------------------------------------
// Instances.

/// The value(s) a DescribeInstances filter looks at; `None`: not a filter we know.
fn instance_field<'v>(f: &str, vm: &'v Instance, e: &'v Entry, r: &'v Refs) -> Option<Vec<String>> {
    let one = |s: Option<&str>| s.map(|s| vec![s.to_owned()]).unwrap_or_default();
    Some(match f {
        "instance-id" => vec![e.ec2_id.to_string()],
        "instance-state-name" => vec![ec2_state(vm.state).1.to_owned()],
        "instance-state-code" => vec![ec2_state(vm.state).0.to_string()],
        "image-id" => one(r.image.as_deref()),
        "instance-type" => one(vm.flavor_id.as_ref().map(|f| f.as_str())),
        "key-name" => one(vm
            .key_name
            .as_deref()
            .map(|k| shown_key_name(e.tenant.as_deref(), k))),
        "availability-zone" => one(vm.location_id.as_ref().map(|l| l.as_str())),
        "subnet-id" => one(r.subnet.as_deref()),
        "vpc-id" => one(r.vpc.as_deref()),
        "reservation-id" => one(e.reservation.as_deref()),
        "private-ip-address" => vm.private_ips.clone(),
        "ip-address" => vm.public_ips.clone(),
        "tag-key" => shown_tags(vm).iter().map(|(k, _)| k.to_string()).collect(),
        "tag-value" => shown_tags(vm).iter().map(|(_, v)| v.to_string()).collect(),
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

fn check_filters(fs: &[Filter], known: &[&str], prefixes: &[&str]) -> Result<()> {
    for f in fs {
        if !known.contains(&f.name.as_str()) && !prefixes.iter().any(|p| f.name.starts_with(p)) {
            return Err(unknown_filter(&f.name));
        }
    }
    Ok(())
}

const INSTANCE_FILTERS: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "image-id",
    "instance-type",
    "key-name",
    "availability-zone",
    "subnet-id",
    "vpc-id",
    "reservation-id",
    "private-ip-address",
    "ip-address",
    "tag-key",
    "tag-value",
];

/// The tenant's instances a Describe* request selects (by `InstanceId.N` and
/// `Filter.N`), sorted by EC2 id, with their references.
async fn select_instances(c: &Call<'_>, fs: &[Filter]) -> Result<Vec<(Instance, Entry, Refs)>> {
    let ids = c.p.list("InstanceId")?;
    let wanted = wanted_ids(c, Kind::Instance, &ids, INSTANCE_CODES).await?;
    let mut filter = InstanceFilter::default();
    if let Some(w) = &wanted {
        filter.ids = w.iter().map(|id| InstanceId::new(&**id)).collect();
    }
    let mut out = Vec::new();
    let mut memo = Memo::default();
    for (vm, e) in owned_instances(c, &filter).await? {
        if wanted.as_ref().is_some_and(|w| !w.contains(vm.id.as_str())) {
            continue;
        }
        let r = refs(c, &vm, &mut memo).await?;
        let keep = fs.iter().all(|f| {
            instance_field(&f.name, &vm, &e, &r)
                .is_some_and(|vals| f.matches(vals.iter().map(String::as_str)))
        });
        if keep {
            out.push((vm, e, r));
        }
    }
    out.sort_by(|a, b| a.1.ec2_id.cmp(&b.1.ec2_id));
    Ok(out)
}

async fn describe_instances(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(&fs, INSTANCE_FILTERS, &["tag:"])?;
    let max = max_results(&c.p, 5..=1000)?;
    if max.is_some() && !c.p.list("InstanceId")?.is_empty() {
        return Err(Ec2Error::combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let all = select_instances(c, &fs).await?;
    let (page, next) = paginate(all, |(_, e, _)| e.ec2_id.to_string(), max, &c.p)?;
    // One reservation per launch, in the order its first instance appears.
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut groups: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
    for (i, (_, e, _)) in page.iter().enumerate() {
        let r = e
            .reservation
            .clone()
            .unwrap_or_else(|| "r-00000000000000000".into());
        groups
            .entry(r.clone())
            .or_insert_with(|| {
                order.push(r);
                Vec::new()
            })
            .push(i);
    }
    let owner = account_id(&c.tenant.name);
    let mut x = Xml::response("DescribeInstances", c.request_id, 512 + page.len() * 1200);
    if page.is_empty() {
        x.empty("reservationSet");
    } else {
        x.open("reservationSet");
        for r in &order {
            let mut members = groups.remove(r).unwrap_or_default();
            members.sort_by_key(|&i| page[i].1.launch_index);
            x.open("item")
                .leaf("reservationId", r)
                .leaf("ownerId", &owner)
                .empty("groupSet")
                .open("instancesSet");
            for i in members {
                let (vm, e, refs) = &page[i];
                write_instance(&mut x, vm, e, refs);
            }
            x.close("instancesSet").close("item");
        }
        x.close("reservationSet");
    }
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeInstances"))
}

async fn describe_instance_status(c: &Call<'_>) -> Result<String> {
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
    let include_all = c.p.bool("IncludeAllInstances")?.unwrap_or(false);
    let mut all = select_instances(c, &[]).await?;
    all.retain(|(vm, _, _)| include_all || vm.state == InstanceState::Running);
    let status = |vm: &Instance| match vm.state {
        InstanceState::Running | InstanceState::Rebooting => "ok",
        InstanceState::Error => "impaired",
        _ => "not-applicable",
    };
    all.retain(|(vm, _, _)| {
        fs.iter().all(|f| {
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
    });
    let (page, next) = paginate(all, |(_, e, _)| e.ec2_id.to_string(), max, &c.p)?;
    let mut x = Xml::response(
        "DescribeInstanceStatus",
        c.request_id,
        256 + page.len() * 500,
    );
    x.open("instanceStatusSet");
    for (vm, e, _) in &page {
        let (code, name) = ec2_state(vm.state);
        let s = status(vm);
        x.open("item")
            .leaf("instanceId", &e.ec2_id)
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
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeInstanceStatus"))
}

/// One state change: the state before, and the instance after.
async fn act(
    cloud: &cms_core::Cloud,
    action: Action,
    id: InstanceId,
) -> cms_core::Result<(InstanceState, Instance)> {
    let before = cloud.get_instance(&id).await?;
    let after = match action {
        Action::StartInstances => cloud.start_instance(&id).await?,
        Action::StopInstances => cloud.stop_instance(&id).await?,
        Action::RebootInstances => cloud.reboot_instance(&id).await?,
        _ => cloud.delete_instance(&id).await?,
    };
    Ok((before.state, after))
}

async fn change_state(c: &Call<'_>, action: Action) -> Result<String> {
    let caps = &caps(c).instances;
    let (supported, what) = match action {
        Action::StartInstances => (caps.start, "starting instances"),
        Action::StopInstances => (caps.stop, "stopping instances"),
        Action::RebootInstances => (caps.reboot, "rebooting instances"),
        _ => (caps.delete, "terminating instances"),
    };
    require(c, supported && caps.get, what)?;
    let ids = c.p.list("InstanceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId.1"));
    }
    let backend = resolve_ids(c, Kind::Instance, &ids, INSTANCE_CODES).await?;
    let cloud = &c.provider.cloud;
    let mut results: Vec<(InstanceState, Instance)> = Vec::with_capacity(backend.len());
    for chunk in backend.chunks(LAUNCH_CONCURRENCY) {
        let done = futures::future::join_all(
            chunk
                .iter()
                .map(|id| act(cloud, action, InstanceId::new(&**id))),
        )
        .await;
        for r in done {
            results.push(r.map_err(|e| Ec2Error::from_core(&e, "InvalidInstanceID.NotFound"))?);
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
        let (cc, cn) = ec2_state(after.state);
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

/// `TagSpecification.N` tags for `resource_type`; other resource types are refused
/// (cms has no volumes or interfaces to tag), never silently dropped.
fn tag_specifications(p: &View<'_>) -> Result<Tags> {
    let mut tags = Tags::new();
    for spec in p.structs("TagSpecification")? {
        let t = spec.required("ResourceType")?;
        if t != "instance" {
            return Err(Ec2Error::invalid_value(format!(
                "{}: cms tags instances only, not `{t}`",
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

fn request_hash(p: &View<'_>) -> String {
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

async fn run_instances(c: &Call<'_>) -> Result<String> {
    let ic = &caps(c).instances;
    require(c, ic.create, "launching instances")?;
    let p = &c.p;
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
    let image = resolve_ids(c, Kind::Image, &[image_ec2], IMAGE_CODES)
        .await?
        .remove(0);
    let flavors = c
        .provider
        .cloud
        .collect_flavors()
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
    let key_name = match p.get("KeyName").filter(|k| !k.is_empty()) {
        Some(k) => {
            let backend = backend_key_name(&c.tenant.name, k);
            let owned = c
                .app
                .store()
                .lookup(&c.provider.name, Kind::KeyPair, &[&backend])
                .await?
                .pop()
                .flatten()
                .is_some_and(|e| e.tenant.as_deref() == Some(&*c.tenant.name));
            if !owned {
                return Err(Ec2Error::not_found(
                    "InvalidKeyPair.NotFound",
                    "key pair",
                    k,
                ));
            }
            Some(backend)
        }
        None => None,
    };
    let network_ids = match p.get("SubnetId").filter(|s| !s.is_empty()) {
        Some(s) => resolve_ids(
            c,
            Kind::Subnet,
            &[s],
            (
                "InvalidSubnetID.Malformed",
                "InvalidSubnetID.NotFound",
                "subnet ID",
            ),
        )
        .await?
        .into_iter()
        .map(|n| NetworkId::new(&*n))
        .collect(),
        None => Vec::new(),
    };
    let location_id = match p
        .nested("Placement")
        .get("AvailabilityZone")
        .filter(|z| !z.is_empty())
    {
        Some(z) => {
            let zones = c
                .provider
                .cloud
                .list_locations()
                .await
                .map_err(|e| Ec2Error::from_core(&e, "InvalidParameterValue"))?;
            if !zones.iter().any(|l| l.id.as_str() == z) {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid availability zone: [{z}]"
                )));
            }
            Some(LocationId::new(z))
        }
        None => None,
    };
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
    let mut tags = tag_specifications(p)?;
    if !tags.is_empty() {
        require(c, ic.tags, "tags")?;
    }
    let name = tags.remove("Name").unwrap_or_default();
    let token = p.get("ClientToken").filter(|t| !t.is_empty());
    if let Some(t) = token {
        if t.len() > 64 || !t.is_ascii() {
            return Err(Ec2Error::invalid_value(
                "ClientToken must be at most 64 ASCII characters",
            ));
        }
    }

    let store = c.app.store();
    let tenant = &*c.tenant.name;
    let provider = &*c.provider.name;
    let mut reservation = random_id("r-");
    if let Some(t) = token {
        let claim = store
            .claim_token(tenant, provider, t, &request_hash(p), &reservation)
            .await?;
        if !claim.same_request {
            return Err(Ec2Error::new(
                "IdempotentParameterMismatch",
                400,
                format!(
                    "The client token '{t}' was used before with other parameters; use a new token for a new request"
                ),
            ));
        }
        reservation = claim.reservation;
    }
    let base = InstanceSpec {
        name,
        image_id: ImageId::new(&*image),
        flavor_id: flavor,
        network_ids,
        location_id,
        key_name,
        user_data,
        tags,
        client_token: None,
    };
    let cloud = &c.provider.cloud;
    let specs: Vec<InstanceSpec> = (0..max as u32)
        .map(|i| {
            let mut spec = base.clone();
            // Each instance of a launch has its own backend token, derived from the
            // caller's: a repeated request finds the instances of the first.
            spec.client_token = match token {
                Some(t) if ic.client_token => Some(crate::auth::client_token(
                    tenant,
                    &format!("ec2/{provider}/{t}/{i}"),
                )),
                _ => None,
            };
            spec
        })
        .collect();
    let mut results: Vec<cms_core::Result<Instance>> = Vec::with_capacity(specs.len());
    for chunk in specs.chunks(LAUNCH_CONCURRENCY) {
        results.extend(
            futures::future::join_all(chunk.iter().map(|s| cloud.create_instance(s))).await,
        );
    }
    let mut launched = Vec::new();
    let mut failure = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(vm) => {
                let ec2 = store
                    .record_owned(
                        provider,
                        Kind::Instance,
                        vm.id.as_str(),
                        tenant,
                        &reservation,
                        i as u32,
                    )
                    .await?;
                launched.push((vm, ec2, i as u32));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if (launched.len() as i64) < min {
        // Fewer than asked for at least: undo, as EC2 launches none.
        for (vm, _, _) in &launched {
            if let Err(e) = cloud.delete_instance(&vm.id).await {
                tracing::warn!(instance = %vm.id, error = %e, "could not terminate an instance of a failed launch");
            }
        }
        let e = failure.unwrap_or_else(|| {
            cms_core::Error::new(cms_core::ErrorKind::Backend, "the launch failed")
        });
        return Err(Ec2Error::from_core(&e, "InvalidAMIID.NotFound"));
    }
    let mut x = Xml::response("RunInstances", c.request_id, 512 + launched.len() * 1200);
    x.leaf("reservationId", &reservation)
        .leaf("ownerId", &account_id(tenant))
        .empty("groupSet")
        .open("instancesSet");
    let mut memo = Memo::default();
    for (vm, ec2, i) in &launched {
        let r = refs(c, vm, &mut memo).await?;
        let e = Entry {
            ec2_id: ec2.clone(),
            tenant: Some(c.tenant.name.clone()),
            reservation: Some(reservation.as_str().into()),
            launch_index: *i,
        };
        write_instance(&mut x, vm, &e, &r);
    }
    x.close("instancesSet");
    Ok(x.finish("RunInstances"))
}

// ---------------------------------------------------------------------------------
// Tags.

/// The instance ids of `ResourceId.N`: instances only (the catalogue is shared and
/// not the tenant's to tag).
async fn tag_targets(c: &Call<'_>) -> Result<Vec<(String, Arc<str>)>> {
    let ids = c.p.list("ResourceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId.1"));
    }
    for id in &ids {
        match Kind::of_id(id) {
            Some(Kind::Instance) => {}
            Some(_) => {
                return Err(Ec2Error::unsupported(format!(
                    "cms tags instances only; `{id}` is shared by every tenant of the provider"
                )))
            }
            None => {
                return Err(Ec2Error::new(
                    "InvalidID",
                    400,
                    format!("The ID '{id}' is not valid"),
                ))
            }
        }
    }
    let backend = resolve_ids(c, Kind::Instance, &ids, INSTANCE_CODES).await?;
    Ok(ids.iter().map(|s| s.to_string()).zip(backend).collect())
}

async fn change_tags(c: &Call<'_>, create: bool) -> Result<String> {
    require(
        c,
        caps(c).instances.update_tags,
        "changing the tags of an instance",
    )?;
    let targets = tag_targets(c).await?;
    // Key and, for DeleteTags, the value that must match (None: any value).
    let mut given: Vec<(String, Option<String>)> = Vec::new();
    for t in c.p.structs("Tag")? {
        let key = t.required("Key")?.to_owned();
        given.push((key, t.get("Value").map(str::to_owned)));
    }
    if create && given.is_empty() {
        return Err(Ec2Error::missing("Tag.1.Key"));
    }
    let cloud = &c.provider.cloud;
    // Every instance is checked before any is changed: a refused request changes
    // nothing.
    let mut plans: Vec<(InstanceId, TagChanges)> = Vec::with_capacity(targets.len());
    for (ec2_id, backend) in &targets {
        let id = InstanceId::new(&**backend);
        let vm = cloud
            .get_instance(&id)
            .await
            .map_err(|e| Ec2Error::from_core(&e, "InvalidInstanceID.NotFound"))?;
        let mut changes = TagChanges::default();
        for (k, v) in &given {
            if k == "Name" {
                // `Name` is the instance's name in cms, which cannot be changed.
                let unchanged = if create {
                    v.as_deref().unwrap_or("") == vm.name
                } else {
                    vm.name.is_empty() || v.as_deref().is_some_and(|v| v != vm.name)
                };
                if !unchanged {
                    return Err(Ec2Error::unsupported(format!(
                        "the Name tag of {ec2_id} is its cms name ('{}'), which cannot be changed or deleted",
                        vm.name
                    )));
                }
                continue;
            }
            if create {
                changes.set.insert(k.clone(), v.clone().unwrap_or_default());
            } else {
                let matches = match (vm.tags.get(k), v) {
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have == want,
                    (None, _) => false,
                };
                if matches {
                    changes.remove.push(k.clone());
                }
            }
        }
        if !create && given.is_empty() {
            // Every tag: the name stays, it is not a tag in cms.
            changes.remove = vm.tags.keys().filter(|k| *k != "Name").cloned().collect();
        }
        plans.push((id, changes));
    }
    for (id, changes) in &plans {
        if changes.set.is_empty() && changes.remove.is_empty() {
            continue;
        }
        cloud
            .update_instance_tags(id, changes)
            .await
            .map_err(|e| Ec2Error::from_core(&e, "InvalidInstanceID.NotFound"))?;
    }
    let name = if create { "CreateTags" } else { "DeleteTags" };
    let mut x = Xml::response(name, c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish(name))
}

async fn describe_tags(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(
        &fs,
        &["resource-id", "resource-type", "key", "value"],
        &["tag:"],
    )?;
    let max = max_results(&c.p, 5..=1000)?;
    let mut rows: Vec<(Arc<str>, String, String)> = Vec::new();
    for (vm, e) in owned_instances(c, &InstanceFilter::default()).await? {
        for (k, v) in shown_tags(&vm) {
            let keep = fs.iter().all(|f| match f.name.as_str() {
                "resource-id" => f.matches([&*e.ec2_id]),
                "resource-type" => f.matches(["instance"]),
                "key" => f.matches([k]),
                "value" => f.matches([v]),
                other => other.strip_prefix("tag:") == Some(k) && f.matches([v]),
            });
            if keep {
                rows.push((e.ec2_id.clone(), k.to_owned(), v.to_owned()));
            }
        }
    }
    rows.sort();
    let (page, next) = paginate(rows, |(id, k, _)| format!("{id}\u{1}{k}"), max, &c.p)?;
    let mut x = Xml::response("DescribeTags", c.request_id, 256 + page.len() * 200);
    x.open("tagSet");
    for (id, k, v) in &page {
        x.open("item")
            .leaf("resourceId", id)
            .leaf("resourceType", "instance")
            .leaf("key", k)
            .leaf("value", v)
            .close("item");
    }
    x.close("tagSet");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeTags"))
}

// ---------------------------------------------------------------------------------
// The shared catalogue.

async fn describe_images(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).images.list, "listing images")?;
    let fs = filters(&c.p)?;
    const KNOWN: &[&str] = &[
        "image-id",
        "name",
        "description",
        "state",
        "architecture",
        "image-type",
        "is-public",
        "owner-id",
    ];
    check_filters(&fs, KNOWN, &["tag:"])?;
    let max = max_results(&c.p, 5..=1000)?;
    let ids = c.p.list("ImageId")?;
    let wanted = wanted_ids(c, Kind::Image, &ids, IMAGE_CODES).await?;
    let owner = account_id(&format!("provider:{}", c.provider.name));
    let owners = c.p.list("Owner")?;
    let owner_ok = owners.is_empty()
        || owners
            .iter()
            .any(|o| *o == owner || *o == "amazon" || *o == "cms");
    let images = c
        .provider
        .cloud
        .collect_images()
        .await
        .map_err(|e| Ec2Error::from_core(&e, "InvalidAMIID.NotFound"))?;
    let images: Vec<Image> = images
        .into_iter()
        .filter(|i| wanted.as_ref().is_none_or(|w| w.contains(i.id.as_str())))
        .filter(|_| owner_ok)
        .collect();
    let backend: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    let ec2 = c
        .app
        .store()
        .catalogue_ids(&c.provider.name, Kind::Image, &backend)
        .await?;
    let arch = |i: &Image| i.architecture.clone().unwrap_or_else(|| "x86_64".into());
    let mut rows: Vec<(Arc<str>, Image)> = ec2
        .into_iter()
        .zip(images)
        .filter(|(id, i)| {
            fs.iter().all(|f| match f.name.as_str() {
                "image-id" => f.matches([&**id]),
                "name" => f.matches([i.name.as_str()]),
                "description" => f.matches([i.description.as_deref().unwrap_or("")]),
                "state" => f.matches(["available"]),
                "architecture" => f.matches([arch(i).as_str()]),
                "image-type" => f.matches(["machine"]),
                "is-public" => f.matches(["true"]),
                "owner-id" => f.matches([owner.as_str()]),
                other => {
                    let key = other.strip_prefix("tag:").unwrap_or("");
                    f.matches(i.tags.get(key).map(String::as_str))
                }
            })
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(rows, |(id, _)| id.to_string(), max, &c.p)?;
    let mut x = Xml::response("DescribeImages", c.request_id, 256 + page.len() * 700);
    x.open("imagesSet");
    for (id, i) in &page {
        x.open("item")
            .leaf("imageId", id)
            .leaf("imageLocation", &format!("{}/{}", c.provider.name, i.name))
            .leaf("imageState", "available")
            .leaf("imageOwnerId", &owner)
            .bool("isPublic", true)
            .leaf("architecture", &arch(i))
            .leaf("imageType", "machine")
            .leaf("platformDetails", "Linux/UNIX")
            .leaf("name", &i.name);
        x.leaf_opt("description", i.description.as_deref());
        x.leaf("rootDeviceType", "ebs")
            .leaf("rootDeviceName", "/dev/sda1")
            .empty("blockDeviceMapping")
            .leaf("virtualizationType", "hvm")
            .leaf("hypervisor", "xen");
        x.tags(
            "tagSet",
            i.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        x.close("item");
    }
    x.close("imagesSet");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeImages"))
}

async fn describe_instance_types(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).flavors.list, "listing instance types")?;
    let fs = filters(&c.p)?;
    const KNOWN: &[&str] = &[
        "instance-type",
        "vcpu-info.default-vcpus",
        "memory-info.size-in-mib",
        "current-generation",
    ];
    check_filters(&fs, KNOWN, &[])?;
    let max = max_results(&c.p, 5..=100)?;
    let names = c.p.list("InstanceType")?;
    let flavors = c
        .provider
        .cloud
        .collect_flavors()
        .await
        .map_err(|e| Ec2Error::from_core(&e, "InvalidInstanceType"))?;
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !flavors.iter().any(|f| f.id.as_str() == *n))
        .collect();
    if !unknown.is_empty() {
        return Err(Ec2Error::new(
            "InvalidInstanceType",
            400,
            format!(
                "The following supplied instance types do not exist: [{}]",
                unknown.join(", ")
            ),
        ));
    }
    let mut rows: Vec<Flavor> = flavors
        .into_iter()
        .filter(|f| names.is_empty() || names.contains(&f.id.as_str()))
        .filter(|f| {
            fs.iter().all(|flt| match flt.name.as_str() {
                "instance-type" => flt.matches([f.id.as_str()]),
                "vcpu-info.default-vcpus" => flt.matches([f.vcpus.to_string().as_str()]),
                "memory-info.size-in-mib" => flt.matches([f.memory_mib.to_string().as_str()]),
                _ => flt.matches(["true"]),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let (page, next) = paginate(rows, |f| f.id.to_string(), max, &c.p)?;
    let mut x = Xml::response(
        "DescribeInstanceTypes",
        c.request_id,
        256 + page.len() * 900,
    );
    x.open("instanceTypeSet");
    for f in &page {
        x.open("item")
            .leaf("instanceType", f.id.as_str())
            .bool("currentGeneration", true)
            .bool("freeTierEligible", false)
            .open("supportedUsageClasses")
            .leaf("item", "on-demand")
            .close("supportedUsageClasses")
            .open("supportedRootDeviceTypes")
            .leaf("item", "ebs")
            .close("supportedRootDeviceTypes")
            .open("supportedVirtualizationTypes")
            .leaf("item", "hvm")
            .close("supportedVirtualizationTypes")
            .bool("bareMetal", false)
            .leaf("hypervisor", "xen")
            .open("processorInfo")
            .open("supportedArchitectures")
            .leaf("item", "x86_64")
            .close("supportedArchitectures")
            .close("processorInfo")
            .open("vCpuInfo")
            .num("defaultVCpus", f.vcpus)
            .num("defaultCores", f.vcpus)
            .num("defaultThreadsPerCore", 1u32)
            .close("vCpuInfo")
            .open("memoryInfo")
            .num("sizeInMiB", f.memory_mib)
            .close("memoryInfo");
        match f.disk_gib {
            Some(gib) => {
                x.bool("instanceStorageSupported", true)
                    .open("instanceStorageInfo")
                    .num("totalSizeInGB", gib)
                    .close("instanceStorageInfo");
            }
            None => {
                x.bool("instanceStorageSupported", false);
            }
        }
        x.bool("hibernationSupported", false)
            .bool("burstablePerformanceSupported", false)
            .bool("dedicatedHostsSupported", false)
            .bool("autoRecoverySupported", false)
            .close("item");
    }
    x.close("instanceTypeSet");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeInstanceTypes"))
}

fn describe_regions(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(&fs, &["region-name", "endpoint", "opt-in-status"], &[])?;
    let names = c.p.list("RegionName")?;
    let mine: Vec<&str> = c
        .app
        .providers()
        .iter()
        .enumerate()
        .filter(|(i, _)| c.tenant.may_use(*i))
        .map(|(_, p)| &*p.name)
        .collect();
    if let Some(bad) = names.iter().find(|n| !mine.contains(n)) {
        return Err(Ec2Error::invalid_value(format!("Invalid region: {bad}")));
    }
    // Every region is served at the same endpoint; the signature's region chooses.
    let endpoint = |_: &str| format!("{}{}", c.host, super::PREFIX);
    let mut x = Xml::response("DescribeRegions", c.request_id, 512);
    x.open("regionInfo");
    for r in mine {
        if !names.is_empty() && !names.contains(&r) {
            continue;
        }
        let ep = endpoint(r);
        let keep = fs.iter().all(|f| match f.name.as_str() {
            "region-name" => f.matches([r]),
            "endpoint" => f.matches([ep.as_str()]),
            _ => f.matches(["opt-in-not-required"]),
        });
        if keep {
            x.open("item")
                .leaf("regionName", r)
                .leaf("regionEndpoint", &ep)
                .leaf("optInStatus", "opt-in-not-required")
                .close("item");
        }
    }
    x.close("regionInfo");
    Ok(x.finish("DescribeRegions"))
}

async fn zones(c: &Call<'_>) -> Result<Vec<Location>> {
    require(c, caps(c).locations.list, "listing availability zones")?;
    c.provider
        .cloud
        .list_locations()
        .await
        .map_err(|e| Ec2Error::from_core(&e, "InvalidParameterValue"))
}

async fn describe_zones(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    const KNOWN: &[&str] = &["zone-name", "zone-id", "state", "region-name", "zone-type"];
    check_filters(&fs, KNOWN, &[])?;
    let names = c.p.list("ZoneName")?;
    let zone_ids = c.p.list("ZoneId")?;
    let all = zones(c).await?;
    for n in names.iter().chain(&zone_ids) {
        if !all.iter().any(|l| l.id.as_str() == *n) {
            return Err(Ec2Error::invalid_value(format!(
                "The zone '{n}' does not exist."
            )));
        }
    }
    let region = &*c.provider.name;
    let mut x = Xml::response("DescribeAvailabilityZones", c.request_id, 512);
    x.open("availabilityZoneInfo");
    for l in &all {
        let id = l.id.as_str();
        if !names.is_empty() && !names.contains(&id)
            || !zone_ids.is_empty() && !zone_ids.contains(&id)
        {
            continue;
        }
        let state = if l.available {
            "available"
        } else {
            "unavailable"
        };
        let keep = fs.iter().all(|f| match f.name.as_str() {
            "zone-name" | "zone-id" => f.matches([id]),
            "state" => f.matches([state]),
            "region-name" => f.matches([region]),
            _ => f.matches(["availability-zone"]),
        });
        if !keep {
            continue;
        }
        x.open("item")
            .leaf("zoneName", id)
            .leaf("zoneId", id)
            .leaf("zoneState", state)
            .leaf("regionName", region)
            .leaf("zoneType", "availability-zone")
            .leaf("groupName", region)
            .leaf("networkBorderGroup", region)
            .leaf("optInStatus", "opt-in-not-required")
            .empty("messageSet")
            .close("item");
    }
    x.close("availabilityZoneInfo");
    Ok(x.finish("DescribeAvailabilityZones"))
}

/// DescribeVpcs and DescribeSubnets: every cms network is one VPC holding one
/// subnet of the same CIDR.
async fn describe_networks(c: &Call<'_>, kind: Kind) -> Result<String> {
    require(c, caps(c).networks.list, "listing networks")?;
    let fs = filters(&c.p)?;
    let (action, list_param, set, codes): (&str, &str, &str, (&'static str, &'static str, &str)) =
        match kind {
            Kind::Vpc => (
                "DescribeVpcs",
                "VpcId",
                "vpcSet",
                ("InvalidVpcID.Malformed", "InvalidVpcID.NotFound", "vpc ID"),
            ),
            _ => (
                "DescribeSubnets",
                "SubnetId",
                "subnetSet",
                (
                    "InvalidSubnetID.Malformed",
                    "InvalidSubnetID.NotFound",
                    "subnet ID",
                ),
            ),
        };
    const KNOWN: &[&str] = &[
        "vpc-id",
        "subnet-id",
        "cidr-block",
        "cidr",
        "cidrBlock",
        "is-default",
        "default-for-az",
        "defaultForAz",
        "state",
        "availability-zone",
        "availabilityZone",
        "owner-id",
    ];
    check_filters(&fs, KNOWN, &["tag:"])?;
    let max = max_results(&c.p, 5..=1000)?;
    let ids = c.p.list(list_param)?;
    let wanted = wanted_ids(c, kind, &ids, codes).await?;
    let nets = c
        .provider
        .cloud
        .collect_networks()
        .await
        .map_err(|e| Ec2Error::from_core(&e, codes.1))?;
    let nets: Vec<Network> = nets
        .into_iter()
        .filter(|n| wanted.as_ref().is_none_or(|w| w.contains(n.id.as_str())))
        .collect();
    let backend: Vec<&str> = nets.iter().map(|n| n.id.as_str()).collect();
    let store = c.app.store();
    let vpcs = store
        .catalogue_ids(&c.provider.name, Kind::Vpc, &backend)
        .await?;
    let subnets = store
        .catalogue_ids(&c.provider.name, Kind::Subnet, &backend)
        .await?;
    let default_zone = if kind == Kind::Subnet && nets.iter().any(|n| n.location_id.is_none()) {
        zones(c).await?.first().map(|l| l.id.to_string())
    } else {
        None
    };
    let owner = account_id(&format!("provider:{}", c.provider.name));
    // (sort key, VPC id, subnet id, network)
    type Row = (Arc<str>, Arc<str>, Arc<str>, Network);
    let mut rows: Vec<Row> = Vec::new();
    for ((vpc, subnet), n) in vpcs.into_iter().zip(subnets).zip(nets) {
        let key = if kind == Kind::Vpc {
            vpc.clone()
        } else {
            subnet.clone()
        };
        rows.push((key, vpc, subnet, n));
    }
    let zone_of = |n: &Network| {
        n.location_id
            .as_ref()
            .map(|l| l.to_string())
            .or_else(|| default_zone.clone())
            .unwrap_or_default()
    };
    rows.retain(|(_, vpc, subnet, n)| {
        let cidr = n.cidr.as_deref().unwrap_or("");
        let default = if n.is_default { "true" } else { "false" };
        fs.iter().all(|f| match f.name.as_str() {
            "vpc-id" => f.matches([&**vpc]),
            "subnet-id" => f.matches([&**subnet]),
            "cidr-block" | "cidr" | "cidrBlock" => f.matches([cidr]),
            "is-default" | "default-for-az" | "defaultForAz" => f.matches([default]),
            "state" => f.matches(["available"]),
            "availability-zone" | "availabilityZone" => f.matches([zone_of(n).as_str()]),
            "owner-id" => f.matches([owner.as_str()]),
            other => {
                let key = other.strip_prefix("tag:").unwrap_or("");
                let name_tag = (key == "Name").then_some(n.name.as_str());
                f.matches(n.tags.get(key).map(String::as_str).or(name_tag))
            }
        })
    });
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(rows, |r| r.0.to_string(), max, &c.p)?;
    let mut x = Xml::response(action, c.request_id, 256 + page.len() * 600);
    x.open(set);
    for (_, vpc, subnet, n) in &page {
        let cidr = n.cidr.as_deref().unwrap_or("");
        let mut tags: BTreeMap<&str, &str> = n
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !n.name.is_empty() {
            tags.entry("Name").or_insert(n.name.as_str());
        }
        x.open("item");
        if kind == Kind::Vpc {
            x.leaf("vpcId", vpc)
                .leaf("ownerId", &owner)
                .leaf("state", "available")
                .leaf("cidrBlock", cidr)
                .open("cidrBlockAssociationSet")
                .open("item")
                .leaf("associationId", &format!("vpc-cidr-assoc-{}", &vpc[4..]))
                .leaf("cidrBlock", cidr)
                .open("cidrBlockState")
                .leaf("state", "associated")
                .close("cidrBlockState")
                .close("item")
                .close("cidrBlockAssociationSet")
                .leaf("dhcpOptionsId", "default")
                .leaf("instanceTenancy", "default")
                .bool("isDefault", n.is_default);
        } else {
            x.leaf("subnetId", subnet)
                .leaf("state", "available")
                .leaf("vpcId", vpc)
                .leaf("ownerId", &owner)
                .leaf("cidrBlock", cidr)
                .num("availableIpAddressCount", available_ips(cidr))
                .leaf("availabilityZone", &zone_of(n))
                .leaf("availabilityZoneId", &zone_of(n))
                .bool("defaultForAz", n.is_default)
                .bool("mapPublicIpOnLaunch", false)
                .bool("assignIpv6AddressOnCreation", false);
        }
        x.tags("tagSet", tags);
        x.close("item");
    }
    x.close(set);
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish(action))
}

/// Addresses a subnet offers, as EC2 counts them (5 reserved).
fn available_ips(cidr: &str) -> u64 {
    cidr.split_once('/')
        .and_then(|(_, bits)| bits.parse::<u32>().ok())
        .filter(|b| *b <= 32)
        .map(|b| (1u64 << (32 - b)).saturating_sub(5))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------
// Key pairs.

fn key_type(k: &KeyPair) -> &'static str {
    match k.public_key.as_deref() {
        Some(p) if p.starts_with("ssh-rsa") => "rsa",
        _ => "ed25519",
    }
}

async fn owned_key_pairs(c: &Call<'_>) -> Result<Vec<(KeyPair, Entry)>> {
    require(c, caps(c).key_pairs.list, "listing key pairs")?;
    let keys = c
        .provider
        .cloud
        .list_key_pairs()
        .await
        .map_err(|e| Ec2Error::from_core(&e, "InvalidKeyPair.NotFound"))?;
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let entries = c
        .app
        .store()
        .lookup(&c.provider.name, Kind::KeyPair, &names)
        .await?;
    Ok(keys
        .into_iter()
        .zip(entries)
        .filter_map(|(k, e)| match e {
            Some(e) if e.tenant.as_deref() == Some(&*c.tenant.name) => {
                let shown = shown_key_name(Some(&c.tenant.name), &k.name).to_owned();
                Some((KeyPair { name: shown, ..k }, e))
            }
            _ => None,
        })
        .collect())
}

async fn create_key_pair(c: &Call<'_>, import: bool) -> Result<String> {
    let kc = &caps(c).key_pairs;
    require(
        c,
        kc.create && (!import || kc.import),
        if import {
            "importing key pairs"
        } else {
            "creating key pairs"
        },
    )?;
    let name = c.p.required("KeyName")?;
    if name.len() > 255 || !name.is_ascii() {
        return Err(Ec2Error::invalid_value(
            "KeyName must be at most 255 ASCII characters",
        ));
    }
    let public_key = if import {
        let material = c.p.required("PublicKeyMaterial")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(material.trim())
            .map_err(|_| Ec2Error::invalid_value("PublicKeyMaterial is not valid base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Ec2Error::new(
                "InvalidKey.Format",
                400,
                "Key is not in valid OpenSSH public key format",
            )
        })?;
        Some(text.trim().to_owned())
    } else {
        if let Some(t) = c.p.get("KeyType").filter(|t| *t != "ed25519") {
            return Err(Ec2Error::invalid_value(format!(
                "KeyType `{t}`: cms generates ed25519 key pairs; import an RSA key with ImportKeyPair"
            )));
        }
        None
    };
    let store = c.app.store();
    let backend = backend_key_name(&c.tenant.name, name);
    let existing = store
        .lookup(&c.provider.name, Kind::KeyPair, &[&backend])
        .await?
        .pop()
        .flatten();
    if existing.is_some() {
        return Err(Ec2Error::new(
            "InvalidKeyPair.Duplicate",
            400,
            format!("The keypair '{name}' already exists."),
        ));
    }
    let spec = KeyPairSpec {
        name: backend.clone(),
        public_key,
    };
    let key = c
        .provider
        .cloud
        .create_key_pair(&spec)
        .await
        .map_err(|e| match e.kind() {
            cms_core::ErrorKind::AlreadyExists => Ec2Error::new(
                "InvalidKeyPair.Duplicate",
                400,
                format!("The keypair '{name}' already exists."),
            ),
            cms_core::ErrorKind::InvalidArgument if import => {
                Ec2Error::new("InvalidKey.Format", 400, e.to_string())
            }
            _ => Ec2Error::from_core(&e, "InvalidKeyPair.NotFound"),
        })?;
    let id = store
        .record_owned(
            &c.provider.name,
            Kind::KeyPair,
            &key.name,
            &c.tenant.name,
            "",
            0,
        )
        .await?;
    let action = if import {
        "ImportKeyPair"
    } else {
        "CreateKeyPair"
    };
    let mut x = Xml::response(action, c.request_id, 1024);
    x.leaf("keyName", name)
        .leaf("keyFingerprint", &key.fingerprint)
        .leaf("keyPairId", &id);
    if !import {
        x.leaf("keyMaterial", key.private_key.as_deref().unwrap_or(""));
    }
    Ok(x.finish(action))
}

async fn describe_key_pairs(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(
        &fs,
        &["key-name", "fingerprint", "key-pair-id", "key-type"],
        &[],
    )?;
    let names = c.p.list("KeyName")?;
    let ids = c.p.list("KeyPairId")?;
    let include_public = c.p.bool("IncludePublicKey")?.unwrap_or(false);
    let owned = owned_key_pairs(c).await?;
    for n in &names {
        if !owned.iter().any(|(k, _)| k.name == *n) {
            return Err(Ec2Error::not_found(
                "InvalidKeyPair.NotFound",
                "key pair",
                n,
            ));
        }
    }
    for i in &ids {
        if !owned.iter().any(|(_, e)| &*e.ec2_id == *i) {
            return Err(Ec2Error::not_found(
                "InvalidKeyPair.NotFound",
                "key pair ID",
                i,
            ));
        }
    }
    let mut rows: Vec<(KeyPair, Entry)> = owned
        .into_iter()
        .filter(|(k, e)| {
            (names.is_empty() || names.contains(&k.name.as_str()))
                && (ids.is_empty() || ids.contains(&&*e.ec2_id))
                && fs.iter().all(|f| match f.name.as_str() {
                    "key-name" => f.matches([k.name.as_str()]),
                    "fingerprint" => f.matches([k.fingerprint.as_str()]),
                    "key-pair-id" => f.matches([&*e.ec2_id]),
                    _ => f.matches([key_type(k)]),
                })
        })
        .collect();
    rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut x = Xml::response("DescribeKeyPairs", c.request_id, 256 + rows.len() * 300);
    x.open("keySet");
    for (k, e) in &rows {
        x.open("item")
            .leaf("keyPairId", &e.ec2_id)
            .leaf("keyName", &k.name)
            .leaf("keyFingerprint", &k.fingerprint)
            .leaf("keyType", key_type(k));
        if include_public {
            x.leaf_opt("publicKey", k.public_key.as_deref());
        }
        x.close("item");
    }
    x.close("keySet");
    Ok(x.finish("DescribeKeyPairs"))
}

async fn delete_key_pair(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).key_pairs.delete, "deleting key pairs")?;
    let store = c.app.store();
    let provider = &*c.provider.name;
    let name: Option<String> = match (c.p.get("KeyName"), c.p.get("KeyPairId")) {
        (Some(n), _) if !n.is_empty() => Some(backend_key_name(&c.tenant.name, n)),
        (_, Some(id)) if !id.is_empty() => match store.resolve(id).await? {
            Some(r)
                if r.kind == Kind::KeyPair
                    && *r.provider == *provider
                    && r.tenant.as_deref() == Some(&*c.tenant.name) =>
            {
                Some(r.backend_id.to_string())
            }
            _ => {
                return Err(Ec2Error::not_found(
                    "InvalidKeyPair.NotFound",
                    "key pair ID",
                    id,
                ))
            }
        },
        _ => return Err(Ec2Error::missing("KeyName")),
    };
    // As EC2 does, deleting a key pair that is not there succeeds; another tenant's
    // key pair is "not there" and left alone.
    if let Some(name) = name {
        let owned = store
            .lookup(provider, Kind::KeyPair, &[&name])
            .await?
            .pop()
            .flatten()
            .is_some_and(|e| e.tenant.as_deref() == Some(&*c.tenant.name));
        if owned {
            match c.provider.cloud.delete_key_pair(&name).await {
                Ok(()) => {}
                Err(e) if e.kind() == cms_core::ErrorKind::NotFound => {}
                Err(e) => return Err(Ec2Error::from_core(&e, "InvalidKeyPair.NotFound")),
            }
            store.forget(provider, Kind::KeyPair, &name).await?;
        }
    }
    let mut x = Xml::response("DeleteKeyPair", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("DeleteKeyPair"))
}

// ---------------------------------------------------------------------------------
// The account.

async fn describe_account_attributes(c: &Call<'_>) -> Result<String> {
    let wanted = c.p.list("AttributeName")?;
    let default_vpc = if caps(c).networks.list {
        let nets = c
            .provider
            .cloud
            .collect_networks()
            .await
            .map_err(|e| Ec2Error::from_core(&e, "InvalidParameterValue"))?;
        match nets.iter().find(|n| n.is_default) {
            Some(n) => c
                .app
                .store()
                .catalogue_id(&c.provider.name, Kind::Vpc, n.id.as_str())
                .await?
                .to_string(),
            None => "none".to_owned(),
        }
    } else {
        "none".to_owned()
    };
    let attrs: [(&str, Vec<String>); 6] = [
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec![default_vpc]),
        ("max-instances", vec![MAX_LAUNCH.to_string()]),
        ("vpc-max-security-groups-per-interface", vec!["0".into()]),
        ("max-elastic-ips", vec!["0".into()]),
        ("vpc-max-elastic-ips", vec!["0".into()]),
    ];
    for w in &wanted {
        if !attrs.iter().any(|(n, _)| n == w) {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({w}) for parameter AttributeName is invalid"
            )));
        }
    }
    let mut x = Xml::response("DescribeAccountAttributes", c.request_id, 1024);
    x.open("accountAttributeSet");
    for (n, values) in &attrs {
        if !wanted.is_empty() && !wanted.contains(n) {
            continue;
        }
        x.open("item")
            .leaf("attributeName", n)
            .open("attributeValueSet");
        for v in values {
            x.open("item").leaf("attributeValue", v).close("item");
        }
        x.close("attributeValueSet").close("item");
    }
    x.close("accountAttributeSet");
    Ok(x.finish("DescribeAccountAttributes"))
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
        assert_eq!(available_ips("10.0.0.0/24"), 251);
    }
}
