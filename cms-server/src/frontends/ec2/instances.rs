//! Instances: RunInstances, DescribeInstances, DescribeInstanceStatus and the state
//! changes (Start/Stop/Reboot/TerminateInstances).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use cms_core::{
    FlavorId, ImageId, Instance, InstanceAction, InstanceFilter, InstanceSpec, InstanceState,
    LocationId, NetworkId, Page, PageRequest, Tags,
};
use sha2::{Digest, Sha256};

use super::actions::{
    account_id, caps, check_filters, check_shape, ec2_state, max_results, missing_ids, next_token,
    page_token, paging_error, refs, require, resolve_catalogue, shown_tags, Memo, Refs,
    IMAGE_CODES, INSTANCE_CODES, MAX_LAUNCH, SUBNET_CODES,
};
use super::error::{Ec2Error, Result};
use super::params::{filters, Filter, View};
use super::xml::Xml;
use super::{Action, Call};
use crate::service::{CreateRequest, Idempotency, InstanceRef, Owned};
use crate::service::{Entry, Kind};

/// Creates in flight at once for one state change of many instances.
const CONCURRENCY: usize = 8;

/// Writes one instance `<item>`.
pub(super) fn write_instance(x: &mut Xml, vm: &Instance, e: &Entry, r: &Refs) {
    // The hot path of DescribeInstances: constant runs are written in one piece.
    let (code, name) = ec2_state(vm.state);
    x.raw("<item>").leaf("instanceId", &e.public_id);
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
    x.leaf_opt("keyName", vm.key_name.as_deref());
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
    "owner-id",
];

/// The public ids of the catalogue a request's filters compare with (loaded only when
/// a filter names images or networks).
#[derive(Default)]
struct CatalogueIds {
    images: HashMap<Arc<str>, Arc<str>>,
    networks: HashMap<Arc<str>, (Arc<str>, Arc<str>)>,
}

impl CatalogueIds {
    async fn for_filters(c: &Call<'_>, fs: &[Filter]) -> Result<CatalogueIds> {
        let mut ids = CatalogueIds::default();
        let s = c.service;
        if fs.iter().any(|f| f.name == "image-id") {
            let images = s.collect_images(c.provider).await?;
            let backend: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
            let public = s.public_ids(c.provider, Kind::Image, &backend).await?;
            ids.images = backend.into_iter().map(Arc::from).zip(public).collect();
        }
        if fs
            .iter()
            .any(|f| f.name == "subnet-id" || f.name == "vpc-id")
        {
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

/// The value(s) a DescribeInstances filter looks at; `None`: not a filter we know.
fn instance_field(f: &str, o: &Owned, ids: &CatalogueIds) -> Option<Vec<String>> {
    let vm = &o.instance;
    let e = o.entry();
    let one = |s: Option<&str>| s.map(|s| vec![s.to_owned()]).unwrap_or_default();
    let net = vm
        .network_ids
        .first()
        .and_then(|n| ids.networks.get(n.as_str()));
    Some(match f {
        "instance-id" => vec![e.public_id.to_string()],
        "instance-state-name" => vec![ec2_state(vm.state).1.to_owned()],
        "instance-state-code" => vec![ec2_state(vm.state).0.to_string()],
        "image-id" => one(vm
            .image_id
            .as_ref()
            .and_then(|i| ids.images.get(i.as_str()))
            .map(|s| &**s)),
        "instance-type" => one(vm.flavor_id.as_ref().map(|f| f.as_str())),
        "key-name" => one(vm.key_name.as_deref()),
        "availability-zone" => one(vm.location_id.as_ref().map(|l| l.as_str())),
        "subnet-id" => one(net.map(|(s, _)| &**s)),
        "vpc-id" => one(net.map(|(_, v)| &**v)),
        "reservation-id" => one(e.reservation.as_deref()),
        "private-ip-address" => vm.private_ips.clone(),
        "ip-address" => vm.public_ips.clone(),
        "owner-id" => one(owner_of(o).map(account_id).as_deref()),
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
    check_filters(&fs, INSTANCE_FILTERS, &["tag:"])?;
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
    // One reservation per launch, in the order its first instance appears.
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut groups: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
    for (i, o) in page.items.iter().enumerate() {
        let r = o
            .entry()
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
    let items = &page.items;
    let mut x = Xml::response("DescribeInstances", c.request_id, 512 + items.len() * 1200);
    let mut memo = Memo::default();
    if items.is_empty() {
        x.empty("reservationSet");
    } else {
        x.open("reservationSet");
        for r in &order {
            let mut members = groups.remove(r).unwrap_or_default();
            members.sort_by_key(|&i| items[i].entry().launch_index);
            let owner = owner_of(&items[members[0]]).unwrap_or(&c.tenant.name);
            x.open("item")
                .leaf("reservationId", r)
                .leaf("ownerId", &account_id(owner))
                .empty("groupSet")
                .open("instancesSet");
            for i in members {
                let o = &items[i];
                let refs = refs(c, &o.instance, &mut memo).await?;
                write_instance(&mut x, &o.instance, o.entry(), &refs);
            }
            x.close("instancesSet").close("item");
        }
        x.close("reservationSet");
    }
    x.leaf_opt("nextToken", next_token(page.next.as_ref()).as_deref());
    Ok(x.finish("DescribeInstances"))
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

pub(super) async fn change_state(c: &Call<'_>, action: Action) -> Result<String> {
    let ic = &caps(c).instances;
    let (supported, what, act) = match action {
        Action::StartInstances => (ic.start, "starting instances", InstanceAction::Start),
        Action::StopInstances => (ic.stop, "stopping instances", InstanceAction::Stop),
        Action::RebootInstances => (ic.reboot, "rebooting instances", InstanceAction::Reboot),
        _ => (ic.delete, "terminating instances", InstanceAction::Delete),
    };
    require(c, supported && ic.get, what)?;
    let ids = c.p.list("InstanceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId.1"));
    }
    check_shape(&ids, Kind::Instance, INSTANCE_CODES)?;
    // Every id is checked before anything is done.
    if let Err(missing) = c
        .service
        .resolve_instances(c.tenant, c.provider, &ids)
        .await?
    {
        return Err(missing_ids(INSTANCE_CODES.1, INSTANCE_CODES.2, &missing));
    }
    let mut results: Vec<(InstanceState, Owned)> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CONCURRENCY) {
        let done = futures::future::join_all(chunk.iter().map(|id| {
            c.service
                .act(c.tenant, c.provider, InstanceRef::Public(id), act)
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
    let image = resolve_catalogue(c, Kind::Image, &[image_ec2], IMAGE_CODES)
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
    let key_name = p
        .get("KeyName")
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let network_ids = match p.get("SubnetId").filter(|s| !s.is_empty()) {
        Some(sn) => resolve_catalogue(c, Kind::Subnet, &[sn], SUBNET_CODES)
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
            let zones = s.list_locations(c.provider).await?;
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
        },
        min: min as u32,
        max: max as u32,
        idempotency: token.map(|t| Idempotency {
            scope: "ec2",
            key: t.to_owned(),
            fingerprint: request_hash(p),
        }),
    };
    let launch = s
        .create_instances(c.tenant, c.provider, &req)
        .await
        .map_err(|e| match e.context_value("reason") {
            Some("idempotent_parameter_mismatch") => Ec2Error::new(
                "IdempotentParameterMismatch",
                400,
                format!(
                    "The client token '{}' was used before with other parameters; use a new token for a new request",
                    token.unwrap_or_default()
                ),
            ),
            _ => e.into(),
        })?;
    let mut x = Xml::response(
        "RunInstances",
        c.request_id,
        512 + launch.instances.len() * 1200,
    );
    x.leaf("reservationId", &launch.reservation)
        .leaf("ownerId", &account_id(&c.tenant.name))
        .empty("groupSet")
        .open("instancesSet");
    let mut memo = Memo::default();
    let mut seen = HashSet::new();
    for o in &launch.instances {
        if !seen.insert(o.entry().public_id.clone()) {
            continue;
        }
        let r = refs(c, &o.instance, &mut memo).await?;
        write_instance(&mut x, &o.instance, o.entry(), &r);
    }
    x.close("instancesSet");
    Ok(x.finish("RunInstances"))
}
