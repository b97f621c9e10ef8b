//! Tags: CreateTags, DeleteTags and DescribeTags. Instances keep their tags in the
//! backend; images (shared by every tenant of a provider) and key pairs carry each
//! tenant's own tags, which the service keeps ([`crate::service::tags`]).

use std::sync::Arc;

use cms_core::{InstanceFilter, TagChanges, Tags};

use super::actions::{
    caps, check_filters, check_shape, max_results, missing_ids, paginate, require,
    resolve_catalogue, shown_tags, IMAGE_CODES, INSTANCE_CODES,
};
use super::error::{Ec2Error, Result};
use super::params::filters;
use super::xml::Xml;
use super::Call;
use crate::service::InstanceRef;
use crate::service::Kind;

/// What `ResourceId.N` names, checked: the tenant's instances and key pairs, and
/// images of the provider.
struct Targets<'a> {
    instances: Vec<&'a str>,
    /// Images and key pairs: their tags are the tenant's own, kept by the service.
    kept: Vec<&'a str>,
}

/// The EC2 resource type of a public id.
fn resource_type(id: &str) -> &'static str {
    match Kind::of_id(id) {
        Some(Kind::Image) => "image",
        Some(Kind::KeyPair) => "key-pair",
        Some(Kind::Subnet) => "subnet",
        Some(Kind::Vpc) => "vpc",
        Some(Kind::Volume) => "volume",
        Some(Kind::Snapshot) => "snapshot",
        Some(Kind::SecurityGroup) => "security-group",
        Some(Kind::Address) => "elastic-ip",
        _ => "instance",
    }
}

async fn tag_targets<'a>(c: &Call<'a>) -> Result<Targets<'a>> {
    let ids = c.p.list("ResourceId")?;
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId.1"));
    }
    let mut t = Targets {
        instances: Vec::new(),
        kept: Vec::new(),
    };
    let mut images = Vec::new();
    for id in &ids {
        match Kind::of_id(id) {
            Some(Kind::Instance) => t.instances.push(*id),
            Some(Kind::Image) => images.push(*id),
            Some(Kind::KeyPair) => {
                if c.service
                    .key_pair_name(c.tenant, c.provider, id)
                    .await?
                    .is_none()
                {
                    return Err(Ec2Error::not_found(
                        "InvalidKeyPair.NotFound",
                        "key pair ID",
                        id,
                    ));
                }
                t.kept.push(*id);
            }
            Some(Kind::Subnet | Kind::Vpc) => {
                return Err(Ec2Error::unsupported(format!(
                    "cms tags instances, images and key pairs; `{id}` is a {} shared by every tenant of the provider",
                    resource_type(id)
                )))
            }
            Some(_) => {
                return Err(Ec2Error::unsupported(format!(
                    "cms keeps the tags of a {} as they were given when it was made \
                     (TagSpecification); CreateTags and DeleteTags change those of instances, \
                     images and key pairs",
                    resource_type(id)
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
    if !images.is_empty() {
        resolve_catalogue(c, Kind::Image, &images, IMAGE_CODES).await?;
        t.kept.extend(images);
    }
    if !t.instances.is_empty() {
        check_shape(&t.instances, Kind::Instance, INSTANCE_CODES)?;
        if let Err(missing) = c
            .service
            .resolve_instances(c.tenant, c.provider, &t.instances)
            .await?
        {
            return Err(missing_ids(INSTANCE_CODES.1, INSTANCE_CODES.2, &missing));
        }
    }
    Ok(t)
}

/// The change of an object's tags that `given` asks for (CreateTags: set them;
/// DeleteTags: those that match, every tag when `given` is empty).
fn tag_change(create: bool, given: &[(String, Option<String>)], current: &Tags) -> TagChanges {
    let mut changes = TagChanges::default();
    if create {
        for (k, v) in given {
            changes.set.insert(k.clone(), v.clone().unwrap_or_default());
        }
    } else if given.is_empty() {
        changes.remove = current.keys().cloned().collect();
    } else {
        for (k, v) in given {
            if current
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|w| w == have))
            {
                changes.remove.push(k.clone());
            }
        }
    }
    changes
}

pub(super) async fn change_tags(c: &Call<'_>, create: bool) -> Result<String> {
    let targets = tag_targets(c).await?;
    if !targets.instances.is_empty() {
        require(
            c,
            caps(c).instances.update_tags,
            "changing the tags of an instance",
        )?;
    }
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
    let mut plans: Vec<(&str, TagChanges)> = Vec::with_capacity(targets.instances.len());
    for id in &targets.instances {
        let vm = s
            .instance(
                c.tenant,
                c.provider,
                InstanceRef::Public(id),
                cms_core::Operation::UpdateInstanceTags,
            )
            .await?
            .instance;
        for (_, v) in given.iter().filter(|(k, _)| k == "Name") {
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
        }
        // The other tags change as kept tags do; the name stays, it is not a tag in cms.
        let rest: Vec<(String, Option<String>)> =
            given.iter().filter(|(k, _)| k != "Name").cloned().collect();
        let mut changes = if rest.is_empty() && !given.is_empty() {
            TagChanges::default()
        } else {
            tag_change(create, &rest, &vm.tags)
        };
        changes.remove.retain(|k| k != "Name");
        plans.push((id, changes));
    }
    // The tenant's own tags first: the service checks them all before it writes any.
    if !targets.kept.is_empty() {
        let current = s.tenant_tags(c.tenant, &targets.kept).await?;
        let empty = Tags::new();
        let kept: Vec<(&str, TagChanges)> = targets
            .kept
            .iter()
            .map(|id| {
                let have = current.get(*id).unwrap_or(&empty);
                (*id, tag_change(create, &given, have))
            })
            .filter(|(_, ch)| !ch.is_empty())
            .collect();
        s.change_tenant_tags(c.tenant, &kept).await?;
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
    let keep = |id: &str, k: &str, v: &str| {
        fs.iter().all(|f| match f.name.as_str() {
            "resource-id" => f.matches([id]),
            "resource-type" => f.matches([resource_type(id)]),
            "key" => f.matches([k]),
            "value" => f.matches([v]),
            other => other.strip_prefix("tag:") == Some(k) && f.matches([v]),
        })
    };
    for (id, tags) in c.service.tenant_tags_on(c.tenant, c.provider).await? {
        for (k, v) in &tags {
            if keep(&id, k, v) {
                rows.push((id.clone(), k.clone(), v.clone()));
            }
        }
    }
    let owned = c
        .service
        .collect_instances(c.tenant, c.provider, &InstanceFilter::default(), true)
        .await?;
    for o in &owned {
        let e = o.entry();
        for (k, v) in shown_tags(&o.instance) {
            if keep(&e.public_id, k, v) {
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
            .leaf("resourceType", resource_type(id))
            .leaf("key", k)
            .leaf("value", v)
            .close("item");
    }
    x.close("tagSet");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeTags"))
}
