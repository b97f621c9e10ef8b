//! EBS volumes and snapshots: their operations, and the mapping of EC2's `Volume` and
//! `Snapshot` to the cms model.

use aws_sdk_ec2::types as ec2;
use cms_core::{
    check_snapshot_spec, check_volume_spec, Error, ErrorKind, InstanceId, InstanceState,
    LocationId, Operation, Page, PageRequest, Result, Snapshot, SnapshotFilter, SnapshotId,
    SnapshotSpec, SnapshotState, Volume, VolumeAttachment, VolumeFilter, VolumeId, VolumeSpec,
    VolumeState,
};

use crate::driver::{ec2_page, listing, map_snapshot_state, map_volume_state, Ec2Driver, MAX_PAGE};
use crate::model::{self, NameTag, HASH_TAG, NAME_TAG, OWNER_TAG, TOKEN_TAG};

/// EC2's `MaxResults` cap for DescribeVolumes.
const MAX_VOLUMES_PAGE: u32 = 500;

/// An EC2 volume as a cms volume; `None` when EC2 gave no id.
pub(crate) fn volume(v: &ec2::Volume) -> Option<Volume> {
    let id = v.volume_id()?;
    let raw_state = v.state().map(|s| s.as_str()).unwrap_or_default();
    let attachment_state = v
        .attachments()
        .iter()
        .find_map(|a| a.state())
        .map(|s| s.as_str());
    let tags = v.tags();
    Some(Volume {
        id: VolumeId::new(id),
        name: model::tag_value(tags, NAME_TAG)
            .unwrap_or_default()
            .to_owned(),
        size_gib: v.size().and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
        state: map_volume_state(raw_state, attachment_state),
        raw_state: raw_state.to_owned(),
        location_id: v
            .availability_zone()
            .filter(|z| !z.is_empty())
            .map(LocationId::new),
        attachments: v
            .attachments()
            .iter()
            .filter(|a| {
                // A detached attachment is history, not an attachment.
                a.state() != Some(&ec2::VolumeAttachmentState::Detached)
            })
            .filter_map(|a| {
                Some(VolumeAttachment {
                    instance_id: InstanceId::new(a.instance_id().filter(|i| !i.is_empty())?),
                    device: a.device().filter(|d| !d.is_empty()).map(str::to_owned),
                    delete_on_termination: a.delete_on_termination().unwrap_or(false),
                })
            })
            .collect(),
        snapshot_id: v
            .snapshot_id()
            .filter(|s| !s.is_empty())
            .map(SnapshotId::new),
        tags: model::user_tags(tags),
        created_at: model::time(v.create_time()),
        client_token: model::tag_value(tags, TOKEN_TAG)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        owner: model::tag_value(tags, OWNER_TAG)
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
    })
}

/// An EC2 snapshot as a cms snapshot; `None` when EC2 gave no id.
pub(crate) fn snapshot(s: &ec2::Snapshot) -> Option<Snapshot> {
    let id = s.snapshot_id()?;
    let raw_state = s.state().map(|x| x.as_str()).unwrap_or_default();
    let state = map_snapshot_state(raw_state);
    let tags = s.tags();
    // EC2 writes progress as a percentage (`87%`).
    let progress = s
        .progress()
        .and_then(|p| p.trim().trim_end_matches('%').trim().parse::<f64>().ok())
        .map(|p| p.clamp(0.0, 100.0) as u8)
        .unwrap_or(if state == SnapshotState::Completed {
            100
        } else {
            0
        });
    Some(Snapshot {
        id: SnapshotId::new(id),
        volume_id: s
            .volume_id()
            // EC2 shows snapshots copied from elsewhere with this placeholder.
            .filter(|v| !v.is_empty() && *v != "vol-ffffffff")
            .map(VolumeId::new),
        name: model::tag_value(tags, NAME_TAG)
            .unwrap_or_default()
            .to_owned(),
        description: s.description().filter(|d| !d.is_empty()).map(str::to_owned),
        size_gib: s
            .volume_size()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        state,
        raw_state: raw_state.to_owned(),
        progress,
        created_at: model::time(s.start_time()),
        tags: model::user_tags(tags),
        owner: model::tag_value(tags, OWNER_TAG)
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
    })
}

/// The answer of CreateVolume as the volume it describes.
fn created_volume(o: &aws_sdk_ec2::operation::create_volume::CreateVolumeOutput) -> ec2::Volume {
    ec2::Volume::builder()
        .set_volume_id(o.volume_id().map(str::to_owned))
        .set_size(o.size())
        .set_snapshot_id(o.snapshot_id().map(str::to_owned))
        .set_availability_zone(o.availability_zone().map(str::to_owned))
        .set_state(o.state().cloned())
        .set_create_time(o.create_time().copied())
        .set_attachments(Some(o.attachments().to_vec()))
        .set_tags(Some(o.tags().to_vec()))
        .build()
}

/// The answer of CreateSnapshot as the snapshot it describes.
fn created_snapshot(
    o: &aws_sdk_ec2::operation::create_snapshot::CreateSnapshotOutput,
) -> ec2::Snapshot {
    ec2::Snapshot::builder()
        .set_snapshot_id(o.snapshot_id().map(str::to_owned))
        .set_volume_id(o.volume_id().map(str::to_owned))
        .set_volume_size(o.volume_size())
        .set_state(o.state().cloned())
        .set_progress(o.progress().map(str::to_owned))
        .set_start_time(o.start_time().copied())
        .set_description(o.description().map(str::to_owned))
        .set_owner_id(o.owner_id().map(str::to_owned))
        .set_tags(Some(o.tags().to_vec()))
        .build()
}

fn invalid_state(op: Operation, resource: String, state: &str, why: String) -> Error {
    Error::new(ErrorKind::InvalidState, why)
        .with_operation(op)
        .with_resource(resource)
        .with_context("state", state)
}

impl Ec2Driver {
    pub(crate) async fn volumes_page(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
    ) -> Result<Page<Volume>> {
        let op = Operation::ListVolumes;
        let scope = format!("volumes|{filter:?}");
        let Some(filters) = model::resource_filters(filter, "volume-id") else {
            model::Cursor::decode(page.token.as_ref(), &scope, op)?;
            return Ok(Page::last(Vec::new()));
        };
        let exact = model::pushed_down(filter);
        listing(
            &self.pages().volumes,
            &scope,
            page,
            MAX_PAGE,
            op,
            |token, limit| async move {
                let out = self
                    .ec2()
                    .describe_volumes()
                    .set_filters((!filters.is_empty()).then_some(filters))
                    .max_results(ec2_page(limit, MAX_VOLUMES_PAGE))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                let items = out
                    .volumes()
                    .iter()
                    .filter_map(volume)
                    .filter(|v| exact || filter.matches(&v.id, v.owner.as_deref(), &v.tags))
                    .collect();
                Ok((items, out.next_token().map(str::to_owned)))
            },
        )
        .await
    }

    pub(crate) async fn describe_volume(&self, id: &VolumeId, op: Operation) -> Result<Volume> {
        let out = self
            .ec2()
            .describe_volumes()
            .volume_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("volume {id}"))))?;
        out.volumes()
            .iter()
            .filter(|v| v.volume_id() == Some(id.as_str()))
            .find_map(volume)
            .ok_or_else(|| Error::not_found("volume", id).with_operation(op))
    }

    /// The volume a create with `token` made before, if any (by the driver's tag, as
    /// for instances: EC2-compatible servers do not all keep `ClientToken`).
    async fn volume_by_token(&self, token: &str) -> Result<Option<ec2::Volume>> {
        let op = Operation::CreateVolume;
        let mut next: Option<String> = None;
        loop {
            let out = self
                .ec2()
                .describe_volumes()
                .set_filters(Some(model::token_filters(token)))
                .max_results(MAX_VOLUMES_PAGE as i32)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(self.fail(op, None))?;
            if let Some(v) = out
                .volumes()
                .iter()
                .find(|v| model::tag_value(v.tags(), TOKEN_TAG) == Some(token))
            {
                return Ok(Some(v.clone()));
            }
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => next = Some(t.to_owned()),
                None => return Ok(None),
            }
        }
    }

    /// CreateVolume in the spec's zone (else the region's first, see
    /// [`Ec2Driver::default_zone`]), with `ClientToken` and the driver's token tags as
    /// for instances. A snapshot is looked at first, for the model's errors (unknown,
    /// not completed, larger than the size asked) that EC2-compatible servers skip.
    pub(crate) async fn make_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        let op = Operation::CreateVolume;
        check_volume_spec(spec)?;
        model::check_create_tags(&spec.tags, NameTag::Is(&spec.name), op)?;
        let mut held = None;
        let hash = model::hash_of(&VolumeSpec {
            client_token: None,
            ..spec.clone()
        });
        if let Some(token) = &spec.client_token {
            let guard = self.token_lock(&format!("volume:{token}"));
            let permit = guard.lock.clone().lock_owned().await;
            held = Some((permit, guard));
            if let Some(existing) = self.volume_by_token(token).await? {
                let found = volume(&existing).ok_or_else(|| {
                    Error::new(ErrorKind::Backend, "EC2 described a volume without id")
                        .with_operation(op)
                })?;
                if model::tag_value(existing.tags(), HASH_TAG) != Some(hash.as_str()) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "client token `{token}` was already used to create volume `{}` \
                             with different parameters; repeat that request unchanged, or use \
                             a new client token for a new volume",
                            found.id
                        ),
                    )
                    .with_operation(op)
                    .with_resource(format!("volume {}", found.id))
                    .with_context("argument", "client_token")
                    .with_context("reason", "idempotent_parameter_mismatch"));
                }
                return Ok(found);
            }
        }
        if let Some(snap) = &spec.snapshot_id {
            let s = self.describe_snapshot(snap, op).await?;
            if s.state != SnapshotState::Completed {
                return Err(invalid_state(
                    op,
                    format!("snapshot {snap}"),
                    &s.raw_state,
                    format!(
                        "snapshot `{snap}` is {} ({}%); make volumes from completed snapshots",
                        s.state, s.progress
                    ),
                ));
            }
            if let Some(size) = spec.size_gib.filter(|size| *size < s.size_gib) {
                return Err(Error::invalid_argument(
                    "size_gib",
                    format!(
                        "{size} GiB is less than the {} GiB of snapshot `{snap}`",
                        s.size_gib
                    ),
                )
                .with_operation(op));
            }
        }
        let zone = match &spec.location_id {
            Some(l) => l.as_str().to_owned(),
            None => self.default_zone(op).await?.to_owned(),
        };
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if let Some(t) = &spec.client_token {
            extra.push((TOKEN_TAG, t));
            extra.push((HASH_TAG, &hash));
        }
        let tags = model::create_tags(&spec.tags, Some(&spec.name), spec.owner.as_deref(), &extra);
        let resource = spec.snapshot_id.as_ref().map(|s| format!("snapshot {s}"));
        let out = self
            .ec2()
            .create_volume()
            .availability_zone(zone)
            .set_size(spec.size_gib.and_then(|s| i32::try_from(s).ok()))
            .set_snapshot_id(spec.snapshot_id.as_ref().map(|s| s.as_str().to_owned()))
            .set_client_token(spec.client_token.as_deref().map(model::ec2_client_token))
            .set_tag_specifications(model::tag_spec(ec2::ResourceType::Volume, tags))
            .send()
            .await
            .map_err(self.fail(op, resource))?;
        drop(held);
        volume(&created_volume(&out)).ok_or_else(|| {
            Error::new(ErrorKind::Backend, "CreateVolume answered no volume").with_operation(op)
        })
    }

    /// DeleteVolume, after a look: an attached volume is `InvalidState` (EC2's
    /// `VolumeInUse`), one already going answers as it is.
    pub(crate) async fn remove_volume(&self, id: &VolumeId) -> Result<()> {
        let op = Operation::DeleteVolume;
        let v = self.describe_volume(id, op).await?;
        match v.state {
            VolumeState::Deleting | VolumeState::Deleted => return Ok(()),
            _ if !v.attachments.is_empty() => {
                let on: Vec<&str> = v
                    .attachments
                    .iter()
                    .map(|a| a.instance_id.as_str())
                    .collect();
                return Err(invalid_state(
                    op,
                    format!("volume {id}"),
                    &v.raw_state,
                    format!(
                        "volume `{id}` is attached to instance {}; detach it first",
                        on.join(", ")
                    ),
                ));
            }
            _ => {}
        }
        self.ec2()
            .delete_volume()
            .volume_id(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("volume {id}"))))?;
        Ok(())
    }

    /// AttachVolume at `device`, or at the first of `/dev/sdf` … `/dev/sdz` the
    /// instance does not use. The volume must be available and in the instance's zone,
    /// the instance running or stopped (as EC2 wants; moto checks none of it).
    pub(crate) async fn attach(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
    ) -> Result<Volume> {
        let op = Operation::AttachVolume;
        let resource = format!("volume {id}");
        if let Some(d) = device {
            cms_core::check_device(d).map_err(|e| e.with_operation(op))?;
        }
        let v = self.describe_volume(id, op).await?;
        if v.attachments.iter().any(|a| a.instance_id == *instance) {
            return Ok(v);
        }
        if let Some(a) = v.attachments.first() {
            return Err(invalid_state(
                op,
                resource,
                &v.raw_state,
                format!(
                    "volume `{id}` is attached to instance `{}`; detach it first",
                    a.instance_id
                ),
            ));
        }
        if v.state != VolumeState::Available {
            return Err(invalid_state(
                op,
                resource,
                &v.raw_state,
                format!(
                    "volume `{id}` is {}; only an available volume attaches",
                    v.state
                ),
            ));
        }
        let vm = self.describe_instance(instance, op).await?;
        if !matches!(vm.state, InstanceState::Running | InstanceState::Stopped) {
            return Err(invalid_state(
                op,
                format!("instance {instance}"),
                &vm.raw_state,
                format!(
                    "instance `{instance}` is {} (EC2 state `{}`); volumes attach to running \
                     or stopped instances",
                    vm.state, vm.raw_state
                ),
            ));
        }
        if let (Some(a), Some(b)) = (&v.location_id, &vm.location_id) {
            if a != b {
                return Err(Error::invalid_argument(
                    "instance_id",
                    format!(
                        "volume `{id}` is in zone `{a}` and instance `{instance}` in `{b}`; \
                         a volume attaches to instances of its own zone"
                    ),
                )
                .with_operation(op)
                .with_resource(resource));
            }
        }
        let device = match device {
            Some(d) => d.to_owned(),
            None => model::free_device(vm.volumes.iter().filter_map(|v| v.device.as_deref()))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::QuotaExceeded,
                        format!(
                            "instance `{instance}` uses every device from /dev/sdf to /dev/sdz; \
                             name a device"
                        ),
                    )
                    .with_operation(op)
                })?,
        };
        self.ec2()
            .attach_volume()
            .volume_id(id.as_str())
            .instance_id(instance.as_str())
            .device(device)
            .send()
            .await
            .map_err(self.fail(op, Some(resource)))?;
        self.describe_volume(id, op).await
    }

    /// DetachVolume from the instance it is attached to; a volume not attached (or
    /// already detaching) answers as it is.
    pub(crate) async fn detach(&self, id: &VolumeId) -> Result<Volume> {
        let op = Operation::DetachVolume;
        let v = self.describe_volume(id, op).await?;
        let Some(a) = v.attachments.first() else {
            return Ok(v);
        };
        if v.state == VolumeState::Detaching {
            return Ok(v);
        }
        self.ec2()
            .detach_volume()
            .volume_id(id.as_str())
            // moto needs the instance; EC2 takes it.
            .instance_id(a.instance_id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("volume {id}"))))?;
        self.describe_volume(id, op).await
    }

    /// The account's snapshots: `OwnerIds=self`, and an `owner-id` filter for servers
    /// that ignore `OwnerIds` (moto, which would list the snapshots of its whole AMI
    /// catalogue).
    pub(crate) async fn snapshots_page(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        let op = Operation::ListSnapshots;
        let scope = format!("snapshots|{filter:?}");
        let Some(mut filters) = model::resource_filters(filter, "snapshot-id") else {
            model::Cursor::decode(page.token.as_ref(), &scope, op)?;
            return Ok(Page::last(Vec::new()));
        };
        let account = self.account(op).await?;
        filters.push(model::filter("owner-id", [account]));
        let exact = model::pushed_down(filter);
        listing(
            &self.pages().snapshots,
            &scope,
            page,
            MAX_PAGE,
            op,
            |token, limit| async move {
                let out = self
                    .ec2()
                    .describe_snapshots()
                    .owner_ids("self")
                    .set_filters(Some(filters))
                    .max_results(ec2_page(limit, MAX_PAGE))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(self.fail(op, None))?;
                let items = out
                    .snapshots()
                    .iter()
                    .filter_map(snapshot)
                    .filter(|s| exact || filter.matches(&s.id, s.owner.as_deref(), &s.tags))
                    .collect();
                Ok((items, out.next_token().map(str::to_owned)))
            },
        )
        .await
    }

    pub(crate) async fn describe_snapshot(
        &self,
        id: &SnapshotId,
        op: Operation,
    ) -> Result<Snapshot> {
        let out = self
            .ec2()
            .describe_snapshots()
            .snapshot_ids(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("snapshot {id}"))))?;
        out.snapshots()
            .iter()
            .filter(|s| s.snapshot_id() == Some(id.as_str()))
            .find_map(snapshot)
            .ok_or_else(|| Error::not_found("snapshot", id).with_operation(op))
    }

    /// CreateSnapshot of a volume that can be copied now (EC2 copies `available` and
    /// `in-use` volumes; the driver looks first, as moto copies anything).
    pub(crate) async fn make_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        let op = Operation::CreateSnapshot;
        check_snapshot_spec(spec)?;
        model::check_create_tags(&spec.tags, NameTag::Is(&spec.name), op)?;
        let v = self.describe_volume(&spec.volume_id, op).await?;
        if !matches!(
            v.state,
            VolumeState::Available
                | VolumeState::InUse
                | VolumeState::Attaching
                | VolumeState::Detaching
        ) {
            return Err(invalid_state(
                op,
                format!("volume {}", v.id),
                &v.raw_state,
                format!(
                    "volume `{}` is {}; snapshots are made of available or attached volumes",
                    v.id, v.state
                ),
            ));
        }
        let tags = model::create_tags(&spec.tags, Some(&spec.name), spec.owner.as_deref(), &[]);
        let out = self
            .ec2()
            .create_snapshot()
            .volume_id(spec.volume_id.as_str())
            .set_description(spec.description.clone())
            .set_tag_specifications(model::tag_spec(ec2::ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(self.fail(op, Some(format!("volume {}", spec.volume_id))))?;
        snapshot(&created_snapshot(&out)).ok_or_else(|| {
            Error::new(ErrorKind::Backend, "CreateSnapshot answered no snapshot").with_operation(op)
        })
    }

    pub(crate) async fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let op = Operation::DeleteSnapshot;
        self.ec2()
            .delete_snapshot()
            .snapshot_id(id.as_str())
            .send()
            .await
            .map_err(self.fail(op, Some(format!("snapshot {id}"))))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_map_states_attachments_and_tags() {
        let v = ec2::Volume::builder()
            .volume_id("vol-1")
            .size(8)
            .state(ec2::VolumeState::InUse)
            .availability_zone("us-east-1a")
            .snapshot_id("")
            .attachments(
                ec2::VolumeAttachment::builder()
                    .instance_id("i-1")
                    .device("/dev/sdf")
                    .state(ec2::VolumeAttachmentState::Attaching)
                    .delete_on_termination(true)
                    .build(),
            )
            .tags(model::tag("Name", "data"))
            .tags(model::tag(OWNER_TAG, "alice"))
            .tags(model::tag(TOKEN_TAG, "t"))
            .tags(model::tag("env", "prod"))
            .build();
        let got = volume(&v).unwrap();
        assert_eq!(got.state, VolumeState::Attaching);
        assert_eq!(got.raw_state, "in-use");
        assert_eq!(got.name, "data");
        assert_eq!(got.owner.as_deref(), Some("alice"));
        assert_eq!(got.client_token.as_deref(), Some("t"));
        assert_eq!(got.snapshot_id, None);
        assert_eq!(got.tags.keys().collect::<Vec<_>>(), ["env"]);
        assert_eq!(
            got.attachments,
            vec![VolumeAttachment {
                instance_id: InstanceId::new("i-1"),
                device: Some("/dev/sdf".into()),
                delete_on_termination: true,
            }]
        );
    }

    #[test]
    fn snapshots_read_their_progress() {
        let s = |state: ec2::SnapshotState, progress: Option<&str>| {
            snapshot(
                &ec2::Snapshot::builder()
                    .snapshot_id("snap-1")
                    .volume_id("vol-ffffffff")
                    .state(state)
                    .set_progress(progress.map(str::to_owned))
                    .volume_size(4)
                    .build(),
            )
            .unwrap()
        };
        let p = s(ec2::SnapshotState::Pending, Some("37%"));
        assert_eq!(
            (p.state, p.progress, p.size_gib),
            (SnapshotState::Pending, 37, 4)
        );
        assert_eq!(p.volume_id, None);
        assert_eq!(s(ec2::SnapshotState::Completed, None).progress, 100);
        assert_eq!(s(ec2::SnapshotState::Pending, Some("junk")).progress, 0);
        assert_eq!(
            s(ec2::SnapshotState::Recoverable, None).state,
            SnapshotState::Error
        );
    }
}
