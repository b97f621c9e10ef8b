//! Images captured from instances (`pending`, then `available`), listed together with
//! the catalogue's shared images, in id order.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::family::{merge_sorted, scan_page, Owned};
use super::{token_after, Catalogue, Phase, State};
use crate::model::*;
use crate::{Error, ErrorKind, Operation, Result};

#[derive(Debug)]
pub(super) struct ImageRecord {
    /// What does not change; the state is made at reading.
    image: Image,
    phase: Phase<ImageState>,
}

impl Owned for ImageRecord {
    fn owner(&self) -> Option<&str> {
        self.image.owner.as_deref()
    }
}

impl ImageRecord {
    fn view(&self, now: Instant) -> Image {
        let state = self.phase.state(now);
        let mut i = self.image.clone();
        i.state = state;
        i.raw_state = state.as_str().to_owned();
        i
    }
}

/// An image a listing looks at.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    Catalogue(&'a Image),
    Captured(&'a ImageRecord),
}

impl State {
    /// The image an instance boots, as it is now: `NotFound` when unknown,
    /// `InvalidState` while a capture is not done. Answers its minimum disk.
    pub(super) fn launchable_image(
        &self,
        id: &ImageId,
        catalogue: &Catalogue,
        now: Instant,
    ) -> Result<Option<u32>> {
        let op = Operation::CreateInstance;
        if let Some(i) = catalogue.images.get(id.as_str()) {
            return Ok(i.min_disk_gib);
        }
        let r = self
            .images
            .get(id)
            .ok_or_else(|| Error::not_found("image", id).with_operation(op))?;
        let state = r.phase.state(now);
        if state != ImageState::Available {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!("image `{id}` is {state}; launch from it once it is available"),
            )
            .with_operation(op)
            .with_resource(format!("image {id}"))
            .with_context("state", state.as_str()));
        }
        Ok(r.image.min_disk_gib)
    }

    pub(in crate::memory) fn get_image(
        &self,
        id: &ImageId,
        catalogue: &Catalogue,
        now: Instant,
    ) -> Result<Image> {
        if let Some(i) = catalogue.images.get(id.as_str()) {
            return Ok(i.clone());
        }
        self.images
            .get(id)
            .map(|r| r.view(now))
            .ok_or_else(|| Error::not_found("image", id).with_operation(Operation::GetImage))
    }

    /// One page of the catalogue's images and the captured ones, merged in id order.
    /// An owner's page reads the owner's index of captured images (and the few
    /// catalogue images when it includes shared ones).
    pub(in crate::memory) fn list_images(
        &self,
        filter: &ImageFilter,
        page: &PageRequest,
        limit: usize,
        catalogue: &Catalogue,
        now: Instant,
    ) -> Result<Page<Image>> {
        let after = self
            .images
            .after(page.token.as_ref(), Operation::ListImages)?;
        let lower = match &after {
            Some(id) => std::ops::Bound::Excluded(id.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        let shared = catalogue
            .images
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
            .map(|(id, i)| (id.as_str(), Candidate::Catalogue(i)));
        let captured = self
            .images
            .candidates(&filter.ids, filter.owner.as_deref(), after.as_ref())
            .map(|(id, r)| (id.as_str(), Candidate::Captured(r)));
        let merged = merge_sorted(shared, captured);
        Ok(scan_page(
            merged,
            limit,
            |(_, c)| match c {
                Candidate::Catalogue(i) => filter.matches(i).then(|| (*i).clone()),
                // What the filter looks at (id, owner, shared) never changes.
                Candidate::Captured(r) => filter.matches(&r.image).then(|| r.view(now)),
            },
            |(id, _)| token_after(id),
        ))
    }

    /// Captures an image of a running or stopped instance: `pending` for the image
    /// delay, then `available`. Names are unique per owner (as EC2's are per account).
    pub(in crate::memory) fn create_image(
        &mut self,
        spec: &ImageSpec,
        catalogue: &Catalogue,
        now: Instant,
        created_at: DateTime<Utc>,
    ) -> Result<Image> {
        let op = Operation::CreateImage;
        self.purge(now);
        let instance = &spec.instance_id;
        let s = self
            .visible_instance(instance, now)
            .and_then(|k| self.instances.get(&k))
            .ok_or_else(|| Error::not_found("instance", instance).with_operation(op))?;
        let state = s.phase.state(now);
        if !matches!(state, InstanceState::Running | InstanceState::Stopped) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot capture an image of instance `{instance}`: it is {state}; \
                     capture a running or stopped instance"
                ),
            )
            .with_operation(op)
            .with_resource(format!("instance {instance}"))
            .with_context("state", state.as_str()));
        }
        if let Some((id, _)) = self
            .images
            .iter()
            .find(|(_, r)| r.image.name == spec.name && r.image.owner == spec.owner)
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "an image named `{}` already exists (`{id}`); choose another name",
                    spec.name
                ),
            )
            .with_operation(op)
            .with_resource(format!("image {id}")));
        }
        let source = catalogue
            .images
            .get(s.image_id.as_str())
            .or_else(|| self.images.get(&s.image_id).map(|r| &r.image));
        let image = Image {
            id: ImageId::default(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            kind: ImageKind::Disk,
            os: source.and_then(|i| i.os.clone()),
            architecture: source.and_then(|i| i.architecture.clone()),
            state: ImageState::Pending,
            raw_state: String::new(),
            min_disk_gib: source.and_then(|i| i.min_disk_gib),
            tags: spec.tags.clone(),
            shared: false,
            owner: spec.owner.clone(),
            source_instance_id: Some(instance.clone()),
            created_at: Some(created_at),
        };
        let id = self.images.next_id();
        let record = ImageRecord {
            image: Image {
                id: id.clone(),
                ..image
            },
            phase: Phase::begin(
                ImageState::Pending,
                ImageState::Available,
                now,
                self.config.image_delay,
            ),
        };
        let view = record.view(now);
        self.images.insert(id, record);
        Ok(view)
    }

    /// Deletes a captured image; the catalogue's are shared (`PermissionDenied`).
    /// Instances made from it go on.
    pub(in crate::memory) fn delete_image(
        &mut self,
        id: &ImageId,
        catalogue: &Catalogue,
    ) -> Result<()> {
        let op = Operation::DeleteImage;
        if catalogue.images.contains_key(id.as_str()) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "image `{id}` is shared by the cloud's catalogue; only images captured \
                     from instances can be deleted"
                ),
            )
            .with_operation(op)
            .with_resource(format!("image {id}")));
        }
        self.images
            .remove(id)
            .map(drop)
            .ok_or_else(|| Error::not_found("image", id).with_operation(op))
    }
}
