//! What the actions on volumes, snapshots, captured images, security groups and
//! addresses share: listing a family in EC2's pages, resolving the tenant's public ids,
//! mapping references between objects to public ids in one batch, tags with the
//! `Name` tag, owners as account ids, client tokens and zones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use cms_core::{LocationId, NetworkId, Page, PageRequest, Tags};

use super::actions::{
    account_id, caps, check_shape, missing_ids, next_token, page_token, paginate, paging_error,
    request_hash,
};
use super::error::{Ec2Error, Result};
use super::Call;
use crate::service::instances::MAX_LIMIT;
use crate::service::{Idempotency, Kind, Shown};

/// The items a Describe* action of a family lists. With `whole`, every item from the
/// start, for the action to filter, sort and cut into pages itself ([`finish`]);
/// otherwise the service's own pages: one of `max` items from the `NextToken` (every
/// one from it without `max`), with the token of the next. Each item carries its row.
pub(super) async fn listing<T, F, Fut>(
    c: &Call<'_>,
    max: Option<usize>,
    whole: bool,
    list: F,
) -> Result<(Vec<Shown<T>>, Option<String>)>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = std::result::Result<Page<Shown<T>>, cms_core::Error>>,
{
    let limit = if whole { None } else { max.map(|n| n as u32) };
    let mut req = PageRequest {
        limit: Some(limit.unwrap_or(MAX_LIMIT)),
        token: if whole { None } else { page_token(&c.p)? },
    };
    let mut items = Vec::new();
    loop {
        let got = list(req).await.map_err(paging_error)?;
        items.extend(got.items);
        match (got.next, limit) {
            (next, Some(_)) => return Ok((items, next_token(next.as_ref()))),
            (Some(t), None) => req = PageRequest::after(Some(MAX_LIMIT), t),
            (None, None) => return Ok((items, None)),
        }
    }
}

/// The page a Describe* action answers: with `whole` (see [`listing`]), `rows` in
/// public id order cut at the `NextToken` and `max`; otherwise `rows` as listed, with
/// the listing's next token.
pub(super) fn finish<T>(
    c: &Call<'_>,
    rows: Vec<Shown<T>>,
    whole: bool,
    next: Option<String>,
    max: Option<usize>,
) -> Result<(Vec<Shown<T>>, Option<String>)> {
    if !whole {
        return Ok((rows, next));
    }
    let mut rows = rows;
    rows.sort_by(|a, b| a.entry().public_id.cmp(&b.entry().public_id));
    paginate(rows, |r| r.entry().public_id.to_string(), max, &c.p)
}

/// The backend ids of objects of `kind` the tenant may see, by the public ids a
/// request names: `Malformed` for an id of another shape, `NotFound` for one that
/// names nothing of the tenant's (another tenant's id alike).
pub(super) async fn resolve_owned(
    c: &Call<'_>,
    kind: Kind,
    ids: &[&str],
    codes: (&'static str, &'static str, &str),
) -> Result<Vec<Arc<str>>> {
    check_shape(ids, kind, codes)?;
    match c
        .service
        .resolve_objects(c.tenant, c.provider, kind, ids)
        .await?
    {
        Ok(b) => Ok(b),
        Err(missing) => Err(missing_ids(codes.1, codes.2, &missing)),
    }
}

/// The public ids of objects of `kind` that other objects name (a volume's instance,
/// a rule's group), by backend id, in one batch.
pub(super) async fn public_ids(
    c: &Call<'_>,
    kind: Kind,
    mut ids: Vec<&str>,
) -> Result<HashMap<String, Arc<str>>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let public = c.service.public_ids_of(c.provider, kind, &ids).await?;
    Ok(ids
        .into_iter()
        .map(str::to_owned)
        .zip(public)
        .filter(|(_, p)| !p.is_empty())
        .collect())
}

/// A device name as EC2 shows it: a path (`/dev/sdf`). Backends that name devices
/// without their folder (OpenNebula's `sdf`, `vdb`) are shown under `/dev/`; what a
/// client asks for is passed to the backend as given.
pub(super) fn ec2_device(device: &str) -> std::borrow::Cow<'_, str> {
    if device.starts_with('/') || device.is_empty() {
        device.into()
    } else {
        format!("/dev/{device}").into()
    }
}

/// The tags shown for an object with a name: `Name` is its name (cms has a name where
/// EC2 has the `Name` tag), then its other tags.
pub(super) fn named_tags<'a>(name: &'a str, tags: &'a Tags) -> Vec<(&'a str, &'a str)> {
    let mut t: Vec<(&str, &str)> = Vec::with_capacity(tags.len() + 1);
    if !name.is_empty() {
        t.push(("Name", name));
    }
    t.extend(
        tags.iter()
            .filter(|(k, _)| name.is_empty() || k.as_str() != "Name")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    t
}

/// [`named_tags`] as a map, for the `tag:` filters.
pub(super) fn tags_with_name(name: &str, tags: &Tags) -> Tags {
    named_tags(name, tags)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The account id of an object's owner: the tenant it was made for, else the caller.
pub(super) fn owner_account(c: &Call<'_>, owner: Option<&str>) -> String {
    account_id(owner.unwrap_or(&c.tenant.name))
}

/// Whether an `Owner.N` value names the caller (`self`, or its account id).
pub(super) fn is_self(c: &Call<'_>, who: &str) -> bool {
    who == "self" || who == account_id(&c.tenant.name)
}

/// The `ClientToken` of a create, checked (at most 64 ASCII characters, as EC2 takes),
/// as the service's idempotency key: the same token with other parameters is
/// `IdempotentParameterMismatch`.
pub(super) fn idempotency(c: &Call<'_>) -> Result<Option<Idempotency>> {
    let Some(t) = c.p.get("ClientToken").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if t.len() > 64 || !t.is_ascii() {
        return Err(Ec2Error::invalid_value(
            "ClientToken must be at most 64 ASCII characters",
        ));
    }
    Ok(Some(Idempotency {
        scope: "ec2",
        key: t.to_owned(),
        fingerprint: request_hash(&c.p),
    }))
}

/// The availability zone a request names, checked against the provider's locations.
pub(super) async fn zone(c: &Call<'_>, given: Option<&str>) -> Result<Option<LocationId>> {
    let Some(z) = given.filter(|z| !z.is_empty()) else {
        return Ok(None);
    };
    let zones = c.service.list_locations(c.provider).await?;
    if !zones.iter().any(|l| l.id.as_str() == z) {
        return Err(Ec2Error::invalid_value(format!(
            "Invalid availability zone: [{z}]"
        )));
    }
    Ok(Some(LocationId::new(z)))
}

/// The zone shown for objects whose backend says none: the provider's first.
pub(super) async fn default_zone(c: &Call<'_>) -> Result<String> {
    if !caps(c).locations.list {
        return Ok(String::new());
    }
    Ok(c.service
        .list_locations(c.provider)
        .await?
        .first()
        .map(|l| l.id.to_string())
        .unwrap_or_default())
}

/// The provider's default network (EC2's default VPC), when it lists networks.
pub(super) async fn default_network(c: &Call<'_>) -> Result<Option<NetworkId>> {
    if !caps(c).networks.list {
        return Ok(None);
    }
    Ok(c.service
        .collect_networks(c.provider)
        .await?
        .into_iter()
        .find(|n| n.is_default)
        .map(|n| n.id))
}

/// The VPC ids of networks, by backend id, in one batch.
pub(super) async fn vpc_ids(c: &Call<'_>, mut ids: Vec<&str>) -> Result<HashMap<String, Arc<str>>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let public = c.service.public_ids(c.provider, Kind::Vpc, &ids).await?;
    Ok(ids.into_iter().map(str::to_owned).zip(public).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_shown_as_paths() {
        assert_eq!(ec2_device("/dev/sdf"), "/dev/sdf");
        assert_eq!(ec2_device("vdb"), "/dev/vdb");
        assert_eq!(ec2_device(""), "");
    }

    #[test]
    fn the_name_tag_is_the_name() {
        let tags = Tags::from([
            ("Name".to_owned(), "ignored".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]);
        assert_eq!(
            named_tags("data", &tags),
            [("Name", "data"), ("env", "prod")]
        );
        assert_eq!(named_tags("", &Tags::new()), []);
    }
}
