//! Images (AMIs): listing with owners pushed down to EC2, capture (CreateImage),
//! deletion (DeregisterImage), and the mapping of an AMI to a cms image.

use aws_sdk_ec2::types as ec2;
use cms_core::{
    check_image_spec, Error, ErrorKind, Image, ImageFilter, ImageId, ImageKind, ImageSpec,
    InstanceId, InstanceState, Operation, Page, PageRequest, Result,
};

use crate::driver::{ec2_page, fetch_parts, listing, map_image_state, Ec2Driver, MAX_PAGE};
use crate::model::{self, NameTag, OWNER_TAG};

/// Marks an image the driver captured (CreateImage), with the instance it was
/// captured from: its snapshots were made by the capture, and go with it.
pub(crate) const CAPTURED_TAG: &str = "cms:captured-from";

/// An AMI as a cms image; `None` when EC2 gave no id. `account` is the account's id:
/// an image another account owns is `shared` (and has no cms owner), one the account
/// owns is not, and shows the owner the driver tagged it with.
pub(crate) fn image(i: &ec2::Image, account: &str) -> Option<Image> {
    let id = i.image_id()?;
    let os = match (i.platform(), i.platform_details()) {
        (Some(p), _) => Some(p.as_str().to_ascii_lowercase()),
        (None, Some(d)) if d.to_ascii_lowercase().contains("windows") => Some("windows".into()),
        (None, Some(d)) if !d.is_empty() => Some("linux".into()),
        // EC2 leaves `platform` empty for Linux/UNIX AMIs.
        (None, _) => Some("linux".into()),
    };
    let root = i.root_device_name();
    let min_disk_gib = i
        .block_device_mappings()
        .iter()
        .filter(|m| root.is_none() || m.device_name() == root)
        .find_map(|m| m.ebs()?.volume_size())
        .and_then(|s| u32::try_from(s).ok());
    let shared = i.owner_id() != Some(account);
    let raw_state = i.state().map(|s| s.as_str()).unwrap_or_default();
    Some(Image {
        id: ImageId::new(id),
        name: i.name().unwrap_or(id).to_owned(),
        description: i.description().filter(|d| !d.is_empty()).map(str::to_owned),
        kind: ImageKind::Disk,
        os,
        architecture: i.architecture().map(|a| a.as_str().to_owned()),
        state: map_image_state(raw_state),
        raw_state: raw_state.to_owned(),
        min_disk_gib,
        tags: model::user_tags(i.tags()),
        shared,
        owner: if shared {
            None
        } else {
            model::tag_value(i.tags(), OWNER_TAG)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
        },
        source_instance_id: i
            .source_instance_id()
            .or_else(|| model::tag_value(i.tags(), CAPTURED_TAG))
            .filter(|s| !s.is_empty())
            .map(InstanceId::new),
        created_at: i
            .creation_date()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc)),
    })
}

/// One `DescribeImages` listing of an image listing: whose images, and which.
#[derive(Debug)]
struct Part {
    owners: Vec<String>,
    filters: Vec<ec2::Filter>,
}

/// The `DescribeImages` listings an image listing is made of, one after the other, so
/// that every condition of `filter` goes down to EC2 and pages are exact:
///
/// | filter | listings |
/// |---|---|
/// | no owner, no ids | the configured owners' images and the account's own (`self`) |
/// | no owner, ids | those images, whoever owns them (as [`Driver::get_image`](cms_core::Driver::get_image) finds any) |
/// | owner | the account's own images tagged with that owner |
/// | owner, shared too | the configured owners' images (but the account's), then the account's own tagged with that owner |
///
/// Ids go down as an `image-id` filter on each.
fn plan(filter: &ImageFilter, configured: &[String], account: &str) -> Vec<Part> {
    let ids: Vec<ec2::Filter> = if filter.ids.is_empty() {
        Vec::new()
    } else {
        vec![model::filter(
            "image-id",
            filter.ids.iter().map(|i| i.as_str()),
        )]
    };
    let own = |owner: &str| Part {
        owners: vec!["self".to_owned()],
        filters: ids
            .iter()
            .cloned()
            .chain([model::filter(format!("tag:{OWNER_TAG}"), [owner])])
            .collect(),
    };
    match &filter.owner {
        None if !filter.ids.is_empty() => vec![Part {
            owners: Vec::new(),
            filters: ids,
        }],
        None => {
            let mut owners = configured.to_vec();
            if !owners.iter().any(|o| o == "self" || o == account) {
                owners.push("self".to_owned());
            }
            vec![Part {
                owners,
                filters: ids,
            }]
        }
        // No owner of the model's form has wildcards: such a filter matches only the
        // shared images.
        Some(o) if !model::plain(o) && !filter.include_shared => Vec::new(),
        Some(o) => {
            let mut parts = Vec::new();
            if filter.include_shared {
                let others: Vec<String> = configured
                    .iter()
                    .filter(|c| *c != "self" && *c != account)
                    .cloned()
                    .collect();
                if !others.is_empty() {
                    parts.push(Part {
                        owners: others,
                        filters: ids.clone(),
                    });
                }
            }
            if model::plain(o) {
                parts.push(own(o));
            }
            parts
        }
    }
}

impl Ec2Driver {
    pub(crate) async fn images_page(
        &self,
        filter: &ImageFilter,
        page: &PageRequest,
    ) -> Result<Page<Image>> {
        let op = Operation::ListImages;
        let configured = &self.config().image_owners;
        let account = self.account(op).await?.to_owned();
        let parts = plan(filter, configured, &account);
        let scope = format!("images|{configured:?}|{filter:?}");
        if parts.is_empty() {
            crate::model::Cursor::decode(page.token.as_ref(), &scope, op)?;
            return Ok(Page::last(Vec::new()));
        }
        let parts = &parts;
        let account = account.as_str();
        listing(
            &self.pages().images,
            &scope,
            page,
            MAX_PAGE,
            op,
            |token, limit| {
                fetch_parts(
                    token,
                    limit,
                    parts.len(),
                    op,
                    move |part, token| async move {
                        let p = &parts[part];
                        let out = self
                            .ec2()
                            .describe_images()
                            .set_owners((!p.owners.is_empty()).then(|| p.owners.clone()))
                            .set_filters((!p.filters.is_empty()).then(|| p.filters.clone()))
                            .max_results(ec2_page(limit, MAX_PAGE))
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(self.fail(op, None))?;
                        let items: Vec<Image> = out
                            .images()
                            .iter()
                            .filter_map(|i| image(i, account))
                            .collect();
                        Ok((items, out.next_token().map(str::to_owned)))
                    },
                )
            },
        )
        .await
    }

    pub(crate) async fn describe_image(&self, id: &ImageId, op: Operation) -> Result<ec2::Image> {
        let out = self
            .ec2()
            .describe_images()
            .image_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("image {id}"))))?;
        out.images()
            .iter()
            .find(|i| i.image_id() == Some(id.as_str()))
            .cloned()
            .ok_or_else(|| Error::not_found("image", id).with_operation(op))
    }

    pub(crate) async fn image_by_id(&self, id: &ImageId, op: Operation) -> Result<Image> {
        let found = self.describe_image(id, op).await?;
        let account = self.account(op).await?;
        image(&found, account).ok_or_else(|| Error::not_found("image", id).with_operation(op))
    }

    /// CreateImage of a running or stopped instance (EC2 reboots it for a consistent
    /// copy, as it does by default), after the checks EC2-compatible servers skip: the
    /// instance's state, and a name the account already gave an image.
    pub(crate) async fn capture(&self, spec: &ImageSpec) -> Result<Image> {
        let op = Operation::CreateImage;
        check_image_spec(spec)?;
        model::check_create_tags(&spec.tags, NameTag::Refused, op)?;
        let instance = self.describe_instance(&spec.instance_id, op).await?;
        if !matches!(
            instance.state,
            InstanceState::Running | InstanceState::Stopped
        ) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "instance `{}` is {} (EC2 state `{}`); an image is captured from a \
                     running or stopped instance",
                    instance.id, instance.state, instance.raw_state
                ),
            )
            .with_operation(op)
            .with_resource(format!("instance {}", instance.id))
            .with_context("state", instance.raw_state.clone()));
        }
        if model::plain(&spec.name) {
            let same = self
                .ec2()
                .describe_images()
                .owners("self")
                .filters(model::filter("name", [spec.name.as_str()]))
                .send()
                .await
                .map_err(self.fail(op, None))?;
            if let Some(other) = same
                .images()
                .iter()
                .find(|i| i.name() == Some(spec.name.as_str()))
            {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "the account has an image named `{}` already (`{}`); EC2 wants \
                         image names unique in an account and region",
                        spec.name,
                        other.image_id().unwrap_or_default()
                    ),
                )
                .with_operation(op)
                .with_resource(format!("image {}", spec.name)));
            }
        }
        let tags = model::create_tags(
            &spec.tags,
            None,
            spec.owner.as_deref(),
            &[(CAPTURED_TAG, spec.instance_id.as_str())],
        );
        let out = self
            .ec2()
            .create_image()
            .instance_id(spec.instance_id.as_str())
            .name(&spec.name)
            .set_description(spec.description.clone())
            .set_tag_specifications(model::tag_spec(ec2::ResourceType::Image, tags))
            .send()
            .await
            .map_err(self.fail(op, Some(format!("instance {}", spec.instance_id))))?;
        let id = out.image_id().map(ImageId::new).ok_or_else(|| {
            Error::new(ErrorKind::Backend, "CreateImage answered no image id").with_operation(op)
        })?;
        match self.image_by_id(&id, op).await {
            Ok(i) => Ok(i),
            // EC2 may not describe an image it has just begun to make.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Image {
                id,
                name: spec.name.clone(),
                description: spec.description.clone().filter(|d| !d.is_empty()),
                kind: ImageKind::Disk,
                os: None,
                architecture: None,
                state: cms_core::ImageState::Pending,
                raw_state: "pending".to_owned(),
                min_disk_gib: None,
                tags: spec.tags.clone(),
                shared: false,
                owner: spec.owner.clone(),
                source_instance_id: Some(spec.instance_id.clone()),
                created_at: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// DeregisterImage of one of the account's images (another account's is
    /// `PermissionDenied`). The snapshots of an image the driver captured go with it:
    /// `DeleteAssociatedSnapshots`, and those an EC2-compatible server left (moto
    /// ignores the flag) are deleted after; an image made outside cms keeps its
    /// snapshots, as EC2 keeps them.
    pub(crate) async fn deregister(&self, id: &ImageId) -> Result<()> {
        let op = Operation::DeleteImage;
        let resource = format!("image {id}");
        let found = self.describe_image(id, op).await?;
        let account = self.account(op).await?;
        if found.owner_id() != Some(account) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "image `{id}` belongs to account `{}` and is shared with this one; \
                     only the account's own images can be deleted",
                    found.owner_id().unwrap_or("unknown")
                ),
            )
            .with_operation(op)
            .with_resource(resource));
        }
        let captured = model::tag_value(found.tags(), CAPTURED_TAG).is_some();
        self.ec2()
            .deregister_image()
            .image_id(id.as_str())
            .set_delete_associated_snapshots(captured.then_some(true))
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        if captured {
            let snapshots: Vec<&str> = found
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs()?.snapshot_id())
                .collect();
            self.delete_left_snapshots(id, &snapshots).await;
        }
        Ok(())
    }

    /// Deletes those of `snapshots` still there after their image went; failures are
    /// logged, not answered (the image is gone either way).
    async fn delete_left_snapshots(&self, image: &ImageId, snapshots: &[&str]) {
        if snapshots.is_empty() {
            return;
        }
        let left = match self
            .ec2()
            .describe_snapshots()
            .filters(model::filter("snapshot-id", snapshots.iter().copied()))
            .send()
            .await
        {
            Ok(out) => out
                .snapshots()
                .iter()
                .filter_map(|s| s.snapshot_id().map(str::to_owned))
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(image = %image, error = %e, "cannot look for the snapshots of a deleted image");
                return;
            }
        };
        for s in left {
            if let Err(e) = self.ec2().delete_snapshot().snapshot_id(&s).send().await {
                tracing::warn!(image = %image, snapshot = %s, error = %e, "cannot delete a snapshot of a deleted image");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parts: &[Part]) -> Vec<(Vec<String>, Vec<String>)> {
        parts
            .iter()
            .map(|p| {
                (
                    p.owners.clone(),
                    p.filters
                        .iter()
                        .map(|f| format!("{}={}", f.name().unwrap_or(""), f.values().join(",")))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn image_listings_push_owners_down() {
        let configured = vec!["099720109477".to_owned()];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&plan(&ImageFilter::default(), &configured, "123")),
            vec![(s(&["099720109477", "self"]), s(&[]))]
        );
        assert_eq!(
            names(&plan(&ImageFilter::default(), &s(&["self"]), "123")),
            vec![(s(&["self"]), s(&[]))]
        );
        let mine = ImageFilter {
            owner: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(
            names(&plan(&mine, &configured, "123")),
            vec![(s(&["self"]), s(&["tag:cms:owner=alice"]))]
        );
        let usable = ImageFilter::usable_by("alice");
        assert_eq!(
            names(&plan(&usable, &s(&["099720109477", "self", "123"]), "123")),
            vec![
                (s(&["099720109477"]), s(&[])),
                (s(&["self"]), s(&["tag:cms:owner=alice"]))
            ]
        );
        let ids = ImageFilter {
            ids: vec![ImageId::new("ami-1")],
            ..Default::default()
        };
        assert_eq!(
            names(&plan(&ids, &configured, "123")),
            vec![(s(&[]), s(&["image-id=ami-1"]))]
        );
        let odd = ImageFilter {
            owner: Some("a*".into()),
            ..Default::default()
        };
        assert!(plan(&odd, &configured, "123").is_empty());
    }

    #[test]
    fn shared_and_owner_follow_the_account() {
        let ami = |owner: &str| {
            ec2::Image::builder()
                .image_id("ami-1")
                .owner_id(owner)
                .state(ec2::ImageState::Pending)
                .source_instance_id("i-1")
                .tags(model::tag(OWNER_TAG, "alice"))
                .tags(model::tag("env", "prod"))
                .build()
        };
        let own = image(&ami("123"), "123").unwrap();
        assert!(!own.shared);
        assert_eq!(own.owner.as_deref(), Some("alice"));
        assert_eq!(own.state, cms_core::ImageState::Pending);
        assert_eq!(own.source_instance_id, Some(InstanceId::new("i-1")));
        assert_eq!(own.tags.len(), 1);
        let other = image(&ami("999"), "123").unwrap();
        assert!(other.shared);
        assert_eq!(other.owner, None);
    }
}
