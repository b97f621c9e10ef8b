//! Elastic IP addresses: AllocateAddress, DescribeAddresses, AssociateAddress,
//! DisassociateAddress and ReleaseAddress.
//!
//! A cms public address is a VPC Elastic IP: its allocation id is `eipalloc-` and 17
//! hex digits, and while it is associated with an instance its association id is
//! `eipassoc-` and the same digits (an address has one association at a time, so the
//! allocation names it). As on AWS, associating an address that is associated
//! elsewhere needs `AllowReassociation`, and an associated address cannot be released
//! (`InvalidIPAddress.InUse`).
//!
//! A provider whose driver keeps no addresses holds none: DescribeAddresses answers
//! the empty set there (clients such as Libcloud look their instances' addresses up on
//! every listing) and an address asked for by name is not found; the actions that
//! change addresses answer `UnsupportedOperation`.

use std::collections::HashMap;
use std::sync::Arc;

use cms_core::{Address, AddressFilter, AddressSpec, ErrorKind, Operation};

use super::actions::{
    caps, check_filters, check_shape, require, tag_specifications, unsupported, INSTANCE_CODES,
};
use super::error::{mapped, Ec2Error, Result};
use super::families::{listing, public_ids};
use super::params::filters;
use super::xml::Xml;
use super::Call;
use crate::service::{InstanceRef, Kind, ObjectRef, Shown};

const ALLOCATION_CODES: (&str, &str, &str) = (
    "InvalidAllocationID.Malformed",
    "InvalidAllocationID.NotFound",
    "allocation ID",
);

/// The filters of DescribeAddresses (and `tag:KEY`).
const FILTERS: &[&str] = &[
    "allocation-id",
    "association-id",
    "domain",
    "instance-id",
    "network-border-group",
    "network-interface-id",
    "network-interface-owner-id",
    "private-ip-address",
    "public-ip",
    "tag-key",
];

/// The association id of an address (by its allocation id) while it is associated.
fn association_id(allocation: &str) -> String {
    let digits = allocation.split_once('-').map_or(allocation, |(_, d)| d);
    format!("eipassoc-{digits}")
}

/// The allocation id an association id names, if it has the shape of one.
fn allocation_of(association: &str) -> Option<String> {
    let digits = association.strip_prefix("eipassoc-")?;
    let id = format!("eipalloc-{digits}");
    (Kind::of_id(&id) == Some(Kind::Address)).then_some(id)
}

fn address_not_found(ip: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidAddress.NotFound",
        400,
        format!("Address '{ip}' not found."),
    )
}

fn association_not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidAssociationID.NotFound",
        400,
        format!("The association ID '{id}' does not exist"),
    )
}

/// Every address the tenant holds, each with its row.
async fn held(c: &Call<'_>) -> Result<Vec<Shown<Address>>> {
    let filter = AddressFilter::default();
    let (items, _) = listing(c, None, true, |req| {
        let filter = &filter;
        async move {
            c.service
                .list_addresses(c.tenant, c.provider, filter, &req, true)
                .await
        }
    })
    .await?;
    Ok(items)
}

/// One address item of DescribeAddresses.
fn write_address(x: &mut Xml, a: &Address, id: &str, instance: Option<&str>, region: &str) {
    x.open("item")
        .leaf("publicIp", &a.ip)
        .leaf("allocationId", id)
        .leaf("domain", "vpc");
    if a.instance_id.is_some() {
        x.leaf_opt("instanceId", instance)
            .leaf("associationId", &association_id(id));
        x.leaf_opt("privateIpAddress", a.private_ip.as_deref());
    }
    x.tags(
        "tagSet",
        a.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .leaf("publicIpv4Pool", "amazon")
    .leaf("networkBorderGroup", region)
    .close("item");
}

pub(super) async fn describe_addresses(c: &Call<'_>) -> Result<String> {
    let fs = filters(&c.p)?;
    check_filters(&fs, FILTERS, &["tag:"])?;
    let ips = c.p.list("PublicIp")?;
    let allocations = c.p.list("AllocationId")?;
    let all = if caps(c).addresses.list {
        held(c).await?
    } else {
        Vec::new()
    };
    if let Some(ip) = ips.iter().find(|ip| !all.iter().any(|a| a.item.ip == **ip)) {
        return Err(address_not_found(ip));
    }
    let missing: Vec<String> = allocations
        .iter()
        .filter(|id| !all.iter().any(|a| *a.entry().public_id == ***id))
        .map(|id| (*id).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(super::actions::missing_ids(
            ALLOCATION_CODES.1,
            ALLOCATION_CODES.2,
            &missing,
        ));
    }
    let instances: Vec<&str> = all
        .iter()
        .filter_map(|a| a.item.instance_id.as_ref().map(|i| i.as_str()))
        .collect();
    let instances: HashMap<String, Arc<str>> = public_ids(c, Kind::Instance, instances).await?;
    let instance_of = |a: &Address| {
        a.instance_id
            .as_ref()
            .and_then(|i| instances.get(i.as_str()))
            .map(|i| &**i)
    };
    let region = &*c.provider.name;
    let mut rows: Vec<&Shown<Address>> = all
        .iter()
        .filter(|s| {
            (ips.is_empty() || ips.contains(&s.item.ip.as_str()))
                && (allocations.is_empty() || allocations.contains(&&*s.entry().public_id))
        })
        .filter(|s| {
            let a = &s.item;
            let id = &*s.entry().public_id;
            let association = a.instance_id.as_ref().map(|_| association_id(id));
            fs.iter().all(|f| match f.name.as_str() {
                "allocation-id" => f.matches([id]),
                "association-id" => f.matches(association.as_deref()),
                "domain" => f.matches(["vpc"]),
                "instance-id" => f.matches(instance_of(a)),
                "network-border-group" => f.matches([region]),
                // cms shows no network interfaces.
                "network-interface-id" | "network-interface-owner-id" => false,
                "private-ip-address" => f.matches(a.private_ip.as_deref()),
                "public-ip" => f.matches([a.ip.as_str()]),
                _ => f.on_tags(&a.tags).unwrap_or(false),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.entry().public_id.cmp(&b.entry().public_id));
    let mut x = Xml::response("DescribeAddresses", c.request_id, 256 + rows.len() * 400);
    if rows.is_empty() {
        x.empty("addressesSet");
    } else {
        x.open("addressesSet");
        for s in rows {
            write_address(
                &mut x,
                &s.item,
                &s.entry().public_id,
                instance_of(&s.item),
                region,
            );
        }
        x.close("addressesSet");
    }
    Ok(x.finish("DescribeAddresses"))
}

pub(super) async fn allocate_address(c: &Call<'_>) -> Result<String> {
    let ac = caps(c).addresses;
    require(c, ac.allocate, "allocating addresses")?;
    match c.p.get("Domain") {
        None | Some("vpc") => {}
        Some("standard") => {
            return Err(Ec2Error::unsupported(
                "EC2-Classic addresses (Domain=standard) are gone from EC2 and cms has none; allocate with Domain=vpc",
            ))
        }
        Some(d) => {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({d}) for parameter domain is invalid. Valid values: vpc, standard"
            )))
        }
    }
    let tags = tag_specifications(&c.p, "elastic-ip")?;
    if !tags.is_empty() {
        require(c, ac.tags, "tags on addresses")?;
    }
    let made = c
        .service
        .allocate_address(c.tenant, c.provider, &AddressSpec { tags, owner: None })
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::QuotaExceeded, "AddressLimitExceeded")]))?;
    let mut x = Xml::response("AllocateAddress", c.request_id, 512);
    x.leaf("publicIp", &made.item.ip)
        .leaf("domain", "vpc")
        .leaf("allocationId", &made.entry().public_id)
        .leaf("publicIpv4Pool", "amazon")
        .leaf("networkBorderGroup", &c.provider.name);
    Ok(x.finish("AllocateAddress"))
}

/// The address an action names by `AllocationId` or by `PublicIp`: its allocation
/// id and the address.
async fn named(c: &Call<'_>, op: Operation) -> Result<(Arc<str>, Address)> {
    let allocation = c.p.get("AllocationId").filter(|a| !a.is_empty());
    let ip = c.p.get("PublicIp").filter(|a| !a.is_empty());
    match (allocation, ip) {
        (Some(_), Some(_)) => Err(Ec2Error::combination(
            "Name the address by AllocationId or by PublicIp, not both",
        )),
        (Some(id), None) => {
            check_shape(&[id], Kind::Address, ALLOCATION_CODES)?;
            let a = c
                .service
                .address(c.tenant, c.provider, ObjectRef::Public(id), op)
                .await?;
            Ok((Arc::from(id), a.item))
        }
        (None, Some(ip)) => {
            require(c, caps(c).addresses.list, "listing addresses")?;
            held(c)
                .await?
                .into_iter()
                .find(|a| a.item.ip == ip)
                .map(|a| (a.entry().public_id.clone(), a.item))
                .ok_or_else(|| address_not_found(ip))
        }
        (None, None) => Err(Ec2Error::missing("AllocationId")),
    }
}

pub(super) async fn associate_address(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).addresses.associate, "associating addresses")?;
    if c.p.get("NetworkInterfaceId").is_some_and(|n| !n.is_empty()) {
        return Err(unsupported(
            c,
            "network interfaces (cms shows none: associate the address with an InstanceId)",
        ));
    }
    let instance = c.p.required("InstanceId")?;
    check_shape(&[instance], Kind::Instance, INSTANCE_CODES)?;
    let private_ip = c.p.get("PrivateIpAddress").filter(|p| !p.is_empty());
    let allow = c.p.bool("AllowReassociation")?.unwrap_or(false);
    let (id, before) = named(c, Operation::AssociateAddress).await?;
    if let Some(current) = &before.instance_id {
        let on = public_ids(c, Kind::Instance, vec![current.as_str()])
            .await?
            .into_values()
            .next();
        let same_place = on.as_deref() == Some(instance)
            && private_ip.is_none_or(|p| before.private_ip.as_deref() == Some(p));
        if !same_place && !allow {
            return Err(Ec2Error::new(
                "Resource.AlreadyAssociated",
                400,
                format!(
                    "resource {id} is already associated with associate-id {} (give AllowReassociation to move it)",
                    association_id(&id)
                ),
            ));
        }
    }
    c.service
        .associate_address(
            c.tenant,
            c.provider,
            ObjectRef::Public(&id),
            InstanceRef::Public(instance),
            private_ip,
        )
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::InvalidState, "IncorrectInstanceState")]))?;
    let mut x = Xml::response("AssociateAddress", c.request_id, 256);
    x.bool("return", true)
        .leaf("associationId", &association_id(&id));
    Ok(x.finish("AssociateAddress"))
}

pub(super) async fn disassociate_address(c: &Call<'_>) -> Result<String> {
    require(
        c,
        caps(c).addresses.disassociate,
        "disassociating addresses",
    )?;
    let association = c.p.get("AssociationId").filter(|a| !a.is_empty());
    let ip = c.p.get("PublicIp").filter(|a| !a.is_empty());
    let id: Arc<str> = match (association, ip) {
        (Some(_), Some(_)) => {
            return Err(Ec2Error::combination(
                "Name the association by AssociationId or by PublicIp, not both",
            ))
        }
        (Some(assoc), None) => {
            let Some(alloc) = allocation_of(assoc) else {
                return Err(Ec2Error::malformed(
                    "InvalidAssociationID.Malformed",
                    "association ID",
                    assoc,
                ));
            };
            let a = c
                .service
                .address(
                    c.tenant,
                    c.provider,
                    ObjectRef::Public(&alloc),
                    Operation::DisassociateAddress,
                )
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => association_not_found(assoc),
                    _ => e.into(),
                })?;
            if a.item.instance_id.is_none() {
                return Err(association_not_found(assoc));
            }
            Arc::from(alloc.as_str())
        }
        (None, Some(ip)) => {
            let (id, a) = named(c, Operation::DisassociateAddress).await?;
            if a.instance_id.is_none() {
                return Err(Ec2Error::new(
                    "InvalidAssociationID.NotFound",
                    400,
                    format!("Address '{ip}' is not associated"),
                ));
            }
            id
        }
        (None, None) => return Err(Ec2Error::missing("AssociationId")),
    };
    c.service
        .disassociate_address(c.tenant, c.provider, ObjectRef::Public(&id))
        .await?;
    let mut x = Xml::response("DisassociateAddress", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("DisassociateAddress"))
}

pub(super) async fn release_address(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).addresses.release, "releasing addresses")?;
    let (id, a) = named(c, Operation::ReleaseAddress).await?;
    let in_use = || {
        Ec2Error::new(
            "InvalidIPAddress.InUse",
            400,
            format!(
                "Address {} ({id}) is associated ({}); disassociate it first",
                a.ip,
                association_id(&id)
            ),
        )
    };
    if a.instance_id.is_some() {
        return Err(in_use());
    }
    c.service
        .release_address(c.tenant, c.provider, ObjectRef::Public(&id))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidState => in_use(),
            _ => e.into(),
        })?;
    let mut x = Xml::response("ReleaseAddress", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("ReleaseAddress"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_share_the_allocations_digits() {
        assert_eq!(
            association_id("eipalloc-0123456789abcdef0"),
            "eipassoc-0123456789abcdef0"
        );
        assert_eq!(
            allocation_of("eipassoc-0123456789abcdef0").as_deref(),
            Some("eipalloc-0123456789abcdef0")
        );
        assert_eq!(allocation_of("eipassoc-xyz"), None);
        assert_eq!(allocation_of("eipalloc-0123456789abcdef0"), None);
    }
}
