//! Tags: CreateTags, DeleteTags and DescribeTags, on instances (the catalogue is
//! shared, not the tenant's to tag).

use std::sync::Arc;

use cms_core::{InstanceFilter, TagChanges};

use super::actions::{
    caps, check_filters, check_shape, max_results, missing_ids, paginate, require, shown_tags,
    INSTANCE_CODES,
};
use super::error::{Ec2Error, Result};
use super::params::filters;
use super::xml::Xml;
use super::Call;
use crate::service::InstanceRef;
use crate::service::Kind;

/// The instance ids of `ResourceId.N`, checked: instances only, every one the
/// tenant's.
async fn tag_targets<'a>(c: &Call<'a>) -> Result<Vec<&'a str>> {
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
    check_shape(&ids, Kind::Instance, INSTANCE_CODES)?;
    if let Err(missing) = c
        .service
        .resolve_instances(c.tenant, c.provider, &ids)
        .await?
    {
        return Err(missing_ids(INSTANCE_CODES.1, INSTANCE_CODES.2, &missing));
    }
    Ok(ids)
}

pub(super) async fn change_tags(c: &Call<'_>, create: bool) -> Result<String> {
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
    let s = c.service;
    // Every instance is checked before any is changed: a refused request changes
    // nothing.
    let mut plans: Vec<(&str, TagChanges)> = Vec::with_capacity(targets.len());
    for id in &targets {
        let vm = s
            .instance(
                c.tenant,
                c.provider,
                InstanceRef::Public(id),
                cms_core::Operation::UpdateInstanceTags,
            )
            .await?
            .instance;
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
                        "the Name tag of {id} is its cms name ('{}'), which cannot be changed or deleted",
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
        if changes.is_empty() {
            continue;
        }
        s.update_tags(c.tenant, c.provider, InstanceRef::Public(id), changes)
            .await?;
    }
    let name = if create { "CreateTags" } else { "DeleteTags" };
    let mut x = Xml::response(name, c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish(name))
}

pub(super) async fn describe_tags(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).instances.list, "listing instances")?;
    let fs = filters(&c.p)?;
    check_filters(
        &fs,
        &["resource-id", "resource-type", "key", "value"],
        &["tag:"],
    )?;
    let max = max_results(&c.p, 5..=1000)?;
    let mut rows: Vec<(Arc<str>, String, String)> = Vec::new();
    let owned = c
        .service
        .collect_instances(c.tenant, c.provider, &InstanceFilter::default(), true)
        .await?;
    for o in &owned {
        let e = o.entry();
        for (k, v) in shown_tags(&o.instance) {
            let keep = fs.iter().all(|f| match f.name.as_str() {
                "resource-id" => f.matches([&*e.public_id]),
                "resource-type" => f.matches(["instance"]),
                "key" => f.matches([k]),
                "value" => f.matches([v]),
                other => other.strip_prefix("tag:") == Some(k) && f.matches([v]),
            });
            if keep {
                rows.push((e.public_id.clone(), k.to_owned(), v.to_owned()));
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
