//! The shared catalogue: DescribeImages, DescribeInstanceTypes, DescribeRegions,
//! DescribeAvailabilityZones, DescribeVpcs and DescribeSubnets. Every cms network is
//! one VPC holding one subnet; locations are availability zones; flavors are instance
//! types.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cms_core::{Flavor, Image, Location, Network};

use super::actions::{
    account_id, caps, catalogue_owner, check_filters, derived_id, max_results, paginate, require,
    resolve_catalogue, IMAGE_CODES, ROOT_DEVICE,
};
use super::error::{Ec2Error, Result};
use super::families::{finish, listing, owner_account, resolve_owned};
use super::images::ec2_image_state;
use super::params::filters;
use super::xml::Xml;
use super::Call;
use crate::service::{Kind, Shown};

/// The backend ids of the public ids a Describe* request names (`None`: it names none,
/// so every object is wanted).
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
        resolve_catalogue(c, kind, ids, codes)
            .await?
            .into_iter()
            .collect(),
    ))
}

pub(super) async fn describe_images(c: &Call<'_>) -> Result<String> {
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
        "owner-alias",
        "creation-date",
        "tag-key",
        "root-device-type",
        "root-device-name",
        "virtualization-type",
        "hypervisor",
        "platform-details",
        "block-device-mapping.device-name",
        "block-device-mapping.delete-on-termination",
        "block-device-mapping.volume-type",
        "block-device-mapping.encrypted",
    ];
    check_filters(&fs, KNOWN, &["tag:"])?;
    let max = max_results(&c.p, 5..=1000)?;
    let me = account_id(&c.tenant.name);
    let catalogue = catalogue_owner(c);
    // The catalogue's images are public, executable by every account (`all`, `self`,
    // any account id); a captured image is private, executable by its owner only.
    let executable_by = c.p.list("ExecutableBy")?;
    for who in &executable_by {
        if *who != "all"
            && *who != "self"
            && !(who.len() == 12 && who.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({who}) for parameter ExecutableBy is invalid: `all`, `self` or a 12-digit account id"
            )));
        }
    }
    c.p.bool("IncludeDeprecated")?;
    c.p.bool("IncludeDisabled")?;
    let ids = c.p.list("ImageId")?;
    let wanted: Option<HashSet<Arc<str>>> = if ids.is_empty() {
        None
    } else {
        Some(
            resolve_owned(c, Kind::Image, &ids, IMAGE_CODES)
                .await?
                .into_iter()
                .collect(),
        )
    };
    let owners = c.p.list("Owner")?;
    let filter = cms_core::ImageFilter::default();
    let (images, _) = listing(c, None, true, |req| {
        let filter = &filter;
        async move {
            c.service
                .list_images(c.tenant, c.provider, filter, &req, true)
                .await
        }
    })
    .await?;
    // Who owns an image, as an account id: the provider for its catalogue, the tenant
    // that captured it otherwise.
    let owner_of = |i: &Image| {
        if i.shared {
            catalogue.clone()
        } else {
            owner_account(c, i.owner.as_deref())
        }
    };
    let owned_by = |i: &Image, who: &str| {
        let owner = owner_of(i);
        match who {
            "self" => !i.shared && owner == me,
            "amazon" | "cms" => i.shared,
            other => owner == other,
        }
    };
    let executable = |i: &Image, who: &str| match who {
        "all" => i.shared,
        "self" => i.shared || owner_of(i) == me,
        other => i.shared || owner_of(i) == other,
    };
    let images: Vec<Shown<Image>> = images
        .into_iter()
        .filter(|s| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(s.item.id.as_str()))
        })
        .filter(|s| owners.is_empty() || owners.iter().any(|o| owned_by(&s.item, o)))
        .filter(|s| {
            executable_by.is_empty() || executable_by.iter().any(|w| executable(&s.item, w))
        })
        .collect();
    let arch = |i: &Image| i.architecture.clone().unwrap_or_else(|| "x86_64".into());
    // The tenant's own tags over the backend's.
    let public: Vec<&str> = images.iter().map(|s| &*s.entry().public_id).collect();
    let mut mine = c.service.tenant_tags(c.tenant, &public).await?;
    let images: Vec<Shown<Image>> = images
        .into_iter()
        .map(|mut s| {
            if let Some(t) = mine.remove(&s.entry().public_id) {
                s.item.tags.extend(t);
            }
            s
        })
        .collect();
    let rows: Vec<Shown<Image>> = images
        .into_iter()
        .filter(|s| {
            let (id, i) = (&*s.entry().public_id, &s.item);
            let created = i.created_at.as_ref().map(super::xml::time_text);
            fs.iter().all(|f| match f.name.as_str() {
                "image-id" => f.matches([id]),
                "name" => f.matches([i.name.as_str()]),
                "description" => f.matches([i.description.as_deref().unwrap_or("")]),
                "state" => f.matches([ec2_image_state(i.state)]),
                "architecture" => f.matches([arch(i).as_str()]),
                "image-type" => f.matches(["machine"]),
                "is-public" => f.matches([if i.shared { "true" } else { "false" }]),
                "owner-id" => f.matches([owner_of(i).as_str()]),
                "owner-alias" => i.shared && f.matches(["amazon"]),
                "creation-date" => f.matches(created.as_deref()),
                "root-device-type" | "block-device-mapping.volume-type" => {
                    f.matches([if f.name == "root-device-type" {
                        "ebs"
                    } else {
                        "gp2"
                    }])
                }
                "root-device-name" | "block-device-mapping.device-name" => f.matches([ROOT_DEVICE]),
                "virtualization-type" => f.matches(["hvm"]),
                "hypervisor" => f.matches(["xen"]),
                "platform-details" => f.matches(["Linux/UNIX"]),
                "block-device-mapping.delete-on-termination" => f.matches(["true"]),
                "block-device-mapping.encrypted" => f.matches(["false"]),
                // `tag-key` and `tag:KEY`, the rest checked above.
                _ => f.on_tags(&i.tags).unwrap_or(false),
            })
        })
        .collect();
    let (page, next) = finish(c, rows, true, None, max)?;
    // The root volume of an image that states no size is the smallest a flavor gives.
    let smallest_disk =
        if page.iter().any(|s| s.item.min_disk_gib.is_none()) && caps(c).flavors.list {
            c.service
                .collect_flavors(c.provider)
                .await?
                .iter()
                .filter_map(|f| f.disk_gib)
                .min()
        } else {
            None
        };
    let mut x = Xml::response("DescribeImages", c.request_id, 256 + page.len() * 700);
    x.open("imagesSet");
    for s in &page {
        let (id, i) = (&*s.entry().public_id, &s.item);
        x.open("item")
            .leaf("imageId", id)
            .leaf("imageLocation", &format!("{}/{}", c.provider.name, i.name))
            .leaf("imageState", ec2_image_state(i.state))
            .leaf("imageOwnerId", &owner_of(i))
            .bool("isPublic", i.shared);
        if let Some(t) = &i.created_at {
            x.leaf("creationDate", &super::xml::time_text(t));
        }
        if i.shared {
            x.leaf("imageOwnerAlias", "amazon");
        }
        x.leaf("architecture", &arch(i))
            .leaf("imageType", "machine")
            .leaf("platformDetails", "Linux/UNIX")
            .leaf("name", &i.name);
        x.leaf_opt("description", i.description.as_deref());
        x.leaf("rootDeviceType", "ebs")
            .leaf("rootDeviceName", ROOT_DEVICE)
            .raw("<blockDeviceMapping><item><deviceName>/dev/sda1</deviceName><ebs>")
            .leaf("snapshotId", &derived_id("snap", id));
        if let Some(size) = i.min_disk_gib.or(smallest_disk) {
            x.num("volumeSize", size);
        }
        x.raw(
            "<deleteOnTermination>true</deleteOnTermination><volumeType>gp2</volumeType>\
             <encrypted>false</encrypted></ebs></item></blockDeviceMapping>",
        )
        .leaf("virtualizationType", "hvm")
        .leaf("hypervisor", "xen");
        if i.state == cms_core::ImageState::Error {
            x.open("stateReason")
                .leaf("code", "Client.ImageCaptureFailed")
                .leaf("message", &format!("the backend reports `{}`", i.raw_state))
                .close("stateReason");
        }
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

pub(super) async fn describe_instance_types(c: &Call<'_>) -> Result<String> {
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
        .service
        .collect_flavors(c.provider)
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

pub(super) fn describe_regions(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(&fs, &["region-name", "endpoint", "opt-in-status"], &[])?;
    let names = c.p.list("RegionName")?;
    let mine: Vec<&str> = c.service.providers_of(c.tenant).map(|p| &*p.name).collect();
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
    c.service
        .list_locations(c.provider)
        .await
        .map_err(|e| Ec2Error::from_core(&e, "InvalidParameterValue"))
}

pub(super) async fn describe_zones(c: &Call<'_>) -> Result<String> {
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
pub(super) async fn describe_networks(c: &Call<'_>, kind: Kind) -> Result<String> {
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
        .service
        .collect_networks(c.provider)
        .await
        .map_err(|e| Ec2Error::from_core(&e, codes.1))?;
    let nets: Vec<Network> = nets
        .into_iter()
        .filter(|n| wanted.as_ref().is_none_or(|w| w.contains(n.id.as_str())))
        .collect();
    let backend: Vec<&str> = nets.iter().map(|n| n.id.as_str()).collect();
    let vpcs = c
        .service
        .public_ids(c.provider, Kind::Vpc, &backend)
        .await?;
    let subnets = c
        .service
        .public_ids(c.provider, Kind::Subnet, &backend)
        .await?;
    let default_zone = if kind == Kind::Subnet && nets.iter().any(|n| n.location_id.is_none()) {
        zones(c).await?.first().map(|l| l.id.to_string())
    } else {
        None
    };
    let owner = catalogue_owner(c);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_count_addresses_as_ec2_does() {
        assert_eq!(available_ips("10.0.0.0/24"), 251);
    }
}
