//! Volumes: made empty, from a snapshot, or with an instance; attached, detached and
//! deleted, each through its transitional state.
//!
//! A volume stores its phase (as instances do) and its last attachment. The
//! attachment counts while the volume is `attaching`, `in_use` or `detaching`; once a
//! detach completes (with time, no write) the volume is `available` and the stale
//! attachment is ignored, and replaced at the next attach.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::family::Owned;
use super::{parse_instance_id, Catalogue, Phase, State};
use crate::model::*;
use crate::{Error, ErrorKind, Operation, Result};

/// The devices the cloud chooses from, in order, when an attach names none: EC2's
/// recommended names for data volumes, `/dev/sdf` to `/dev/sdp`, then on to `/dev/sdz`.
pub(super) const DEVICES: [&str; 21] = [
    "/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi", "/dev/sdj", "/dev/sdk", "/dev/sdl", "/dev/sdm",
    "/dev/sdn", "/dev/sdo", "/dev/sdp", "/dev/sdq", "/dev/sdr", "/dev/sds", "/dev/sdt", "/dev/sdu",
    "/dev/sdv", "/dev/sdw", "/dev/sdx", "/dev/sdy", "/dev/sdz",
];

#[derive(Debug)]
pub(in crate::memory) struct VolumeRecord {
    /// What does not change; state, raw state and attachments are made at reading.
    volume: Volume,
    phase: Phase<VolumeState>,
    attachment: Option<Attachment>,
    /// When a deleted volume disappears.
    gone_at: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Attachment {
    instance_id: InstanceId,
    device: String,
    delete_on_termination: bool,
}

impl Owned for VolumeRecord {
    fn owner(&self) -> Option<&str> {
        self.volume.owner.as_deref()
    }
}

/// The memory cloud's own word for a state: the model's, with EC2's `in-use`.
fn raw_state(state: VolumeState) -> &'static str {
    match state {
        VolumeState::InUse => "in-use",
        other => other.as_str(),
    }
}

impl VolumeRecord {
    fn visible(&self, now: Instant) -> bool {
        self.gone_at.is_none_or(|g| now < g)
    }

    fn state(&self, now: Instant) -> VolumeState {
        self.phase.state(now)
    }

    /// The attachment, while it counts.
    fn attached(&self, now: Instant) -> Option<&Attachment> {
        let live = matches!(
            self.state(now),
            VolumeState::Attaching | VolumeState::InUse | VolumeState::Detaching
        );
        self.attachment.as_ref().filter(|_| live)
    }

    fn view(&self, now: Instant) -> Volume {
        let state = self.state(now);
        let mut v = self.volume.clone();
        v.state = state;
        v.raw_state = raw_state(state).to_owned();
        v.attachments = self
            .attached(now)
            .map(|a| VolumeAttachment {
                instance_id: a.instance_id.clone(),
                device: Some(a.device.clone()),
                delete_on_termination: a.delete_on_termination,
            })
            .into_iter()
            .collect();
        v
    }
}

/// A volume to make with an instance, checked.
#[derive(Debug)]
pub(super) struct Planned {
    device: String,
    size_gib: u32,
    snapshot_id: Option<SnapshotId>,
    delete_on_termination: bool,
}

fn refused(op: Operation, id: &VolumeId, why: String, state: VolumeState) -> Error {
    Error::new(ErrorKind::InvalidState, why)
        .with_operation(op)
        .with_resource(format!("volume {id}"))
        .with_context("state", state.as_str())
}

fn later(now: Instant, delay: Duration) -> Option<Instant> {
    now.checked_add(delay)
}

impl State {
    fn visible_volume(&self, id: &VolumeId, now: Instant, op: Operation) -> Result<&VolumeRecord> {
        self.volumes
            .get(id)
            .filter(|r| r.visible(now))
            .ok_or_else(|| Error::not_found("volume", id).with_operation(op))
    }

    pub(in crate::memory) fn get_volume(&self, id: &VolumeId, now: Instant) -> Result<Volume> {
        Ok(self
            .visible_volume(id, now, Operation::GetVolume)?
            .view(now))
    }

    pub(in crate::memory) fn list_volumes(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
        limit: usize,
        now: Instant,
    ) -> Result<Page<Volume>> {
        self.volumes.page(
            &filter.ids,
            filter.owner.as_deref(),
            page,
            limit,
            Operation::ListVolumes,
            |id, r| {
                (r.visible(now) && filter.matches(id, r.owner(), &r.volume.tags))
                    .then(|| r.view(now))
            },
        )
    }

    /// The size of a volume made from `snapshot` (`size` when given): the snapshot must
    /// exist (`NotFound`) and be completed (`InvalidState`), and `size` be at least
    /// its size (`InvalidArgument`).
    fn size_from_snapshot(
        &self,
        snapshot: &SnapshotId,
        size: Option<u32>,
        argument: &str,
        op: Operation,
        now: Instant,
    ) -> Result<u32> {
        let snap = self.snapshot_view(snapshot, now, op)?;
        if snap.state != SnapshotState::Completed {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "snapshot `{snapshot}` is {} ({}% done); make volumes from it once it is \
                     completed",
                    snap.state, snap.progress
                ),
            )
            .with_operation(op)
            .with_resource(format!("snapshot {snapshot}"))
            .with_context("state", snap.state.as_str()));
        }
        match size {
            Some(s) if s < snap.size_gib => Err(Error::invalid_argument(
                argument,
                format!(
                    "{s} GiB is smaller than snapshot `{snapshot}` ({} GiB); \
                     give at least its size, or none",
                    snap.size_gib
                ),
            )
            .with_operation(op)),
            Some(s) => Ok(s),
            None => Ok(snap.size_gib),
        }
    }

    /// Makes a volume (the spec already checked by the model's rules).
    pub(in crate::memory) fn create_volume(
        &mut self,
        spec: &VolumeSpec,
        catalogue: &Catalogue,
        now: Instant,
        created_at: DateTime<Utc>,
    ) -> Result<Volume> {
        let op = Operation::CreateVolume;
        self.purge(now);
        if let Some(token) = &spec.client_token {
            if let Some((id, first)) = self.volume_tokens.get(token) {
                if !first.same_request(spec) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "client token `{token}` was already used to create volume `{id}` \
                             with different parameters; repeat that request unchanged, or \
                             use a new client token for a new volume"
                        ),
                    )
                    .with_operation(op)
                    .with_resource(format!("volume {id}"))
                    .with_context("argument", "client_token")
                    .with_context("reason", "idempotent_parameter_mismatch"));
                }
                if let Some(r) = self.volumes.get(id) {
                    return Ok(r.view(now));
                }
            }
        }
        let size_gib = match &spec.snapshot_id {
            Some(s) => self.size_from_snapshot(s, spec.size_gib, "size_gib", op, now)?,
            // The model's check makes a size required without a snapshot.
            None => spec.size_gib.unwrap_or(1),
        };
        let location_id = match &spec.location_id {
            Some(l) => {
                let loc = catalogue
                    .locations
                    .iter()
                    .find(|x| x.id == *l)
                    .ok_or_else(|| Error::not_found("location", l).with_operation(op))?;
                if !loc.available {
                    return Err(Error::new(
                        ErrorKind::InvalidState,
                        format!("location `{l}` does not accept new volumes"),
                    )
                    .with_operation(op)
                    .with_resource(format!("location {l}")));
                }
                l.clone()
            }
            None => catalogue
                .locations
                .first()
                .map(|l| l.id.clone())
                .ok_or_else(|| {
                    Error::new(ErrorKind::Unavailable, "the cloud has no location")
                        .with_operation(op)
                })?,
        };
        let id = self.volumes.next_id();
        let record = VolumeRecord {
            volume: Volume {
                id: id.clone(),
                name: spec.name.clone(),
                size_gib,
                state: VolumeState::Creating,
                raw_state: String::new(),
                location_id: Some(location_id),
                attachments: Vec::new(),
                snapshot_id: spec.snapshot_id.clone(),
                tags: spec.tags.clone(),
                created_at: Some(created_at),
                client_token: spec.client_token.clone(),
                owner: spec.owner.clone(),
            },
            phase: Phase::begin(
                VolumeState::Creating,
                VolumeState::Available,
                now,
                self.config.volume_create_delay,
            ),
            attachment: None,
            gone_at: None,
        };
        let view = record.view(now);
        self.volumes.insert(id.clone(), record);
        if let Some(token) = &spec.client_token {
            self.volume_tokens.insert(token.clone(), (id, spec.clone()));
        }
        Ok(view)
    }

    /// Deletes an available volume: `deleting`, then gone.
    pub(in crate::memory) fn delete_volume(&mut self, id: &VolumeId, now: Instant) -> Result<()> {
        let op = Operation::DeleteVolume;
        self.purge(now);
        let r = self.visible_volume(id, now, op)?;
        let state = r.state(now);
        let why = match (state, r.attached(now)) {
            (VolumeState::Deleting, _) => return Ok(()),
            (VolumeState::Available | VolumeState::Error, _) => None,
            (VolumeState::Detaching, Some(a)) => Some(format!(
                "it is detaching from instance `{}`; wait until it is available",
                a.instance_id
            )),
            (_, Some(a)) => Some(format!(
                "it is attached to instance `{}`; detach it first",
                a.instance_id
            )),
            (s, None) => Some(format!("it is {s}; wait until it is available")),
        };
        if let Some(why) = why {
            return Err(refused(
                op,
                id,
                format!("cannot delete volume `{id}`: {why}"),
                state,
            ));
        }
        let gone_at = later(now, self.config.volume_delete_delay);
        if let Some(r) = self.volumes.get_mut(id) {
            r.phase = Phase::settled(VolumeState::Deleting);
            r.gone_at = gone_at;
        }
        if let Some(at) = gone_at {
            self.volume_expiries.insert((at, id.clone()));
        }
        Ok(())
    }

    /// Removes a deleted volume for good.
    pub(super) fn remove_volume(&mut self, id: &VolumeId) {
        let Some(r) = self.volumes.remove(id) else {
            return;
        };
        if let Some(t) = &r.volume.client_token {
            if self.volume_tokens.get(t).is_some_and(|(v, _)| v == id) {
                self.volume_tokens.remove(t);
            }
        }
        if let Some(a) = &r.attachment {
            if let Some(x) = parse_instance_id(a.instance_id.as_str()).and_then(|k| {
                self.instances
                    .get_mut(&k)
                    .and_then(|s| s.extras.as_deref_mut())
            }) {
                x.volumes.retain(|v| v != id);
            }
        }
    }

    /// The devices of the volumes attached to an instance (attaching and detaching
    /// ones too).
    fn devices_in_use(&self, key: u64, now: Instant) -> Vec<&str> {
        let Some(s) = self.instances.get(&key) else {
            return Vec::new();
        };
        let Some(x) = &s.extras else {
            return Vec::new();
        };
        x.volumes
            .iter()
            .filter_map(|v| self.volumes.get(v)?.attached(now))
            .filter(|a| a.instance_id == s.id)
            .map(|a| a.device.as_str())
            .collect()
    }

    /// Attaches an available volume to a running or stopped instance of its location.
    pub(in crate::memory) fn attach_volume(
        &mut self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
        now: Instant,
    ) -> Result<Volume> {
        let op = Operation::AttachVolume;
        self.purge(now);
        if let Some(d) = device {
            check_device(d).map_err(|e| e.with_operation(op))?;
        }
        let r = self.visible_volume(id, now, op)?;
        let key = self
            .visible_instance(instance, now)
            .ok_or_else(|| Error::not_found("instance", instance).with_operation(op))?;
        let state = r.state(now);
        let why = match (state, r.attached(now)) {
            (VolumeState::Available, _) => None,
            // A repeat (a retry after a lost answer) answers the volume as it is.
            (VolumeState::Attaching | VolumeState::InUse, Some(a))
                if a.instance_id == *instance =>
            {
                return Ok(r.view(now))
            }
            (VolumeState::Detaching, Some(a)) => Some(format!(
                "it is detaching from instance `{}`; wait until it is available",
                a.instance_id
            )),
            (_, Some(a)) => Some(format!(
                "it is attached to instance `{}`; detach it first",
                a.instance_id
            )),
            (s, None) => Some(format!("it is {s}; wait until it is available")),
        };
        if let Some(why) = why {
            return Err(refused(
                op,
                id,
                format!("cannot attach volume `{id}` to instance `{instance}`: {why}"),
                state,
            ));
        }
        let Some(s) = self.instances.get(&key) else {
            return Err(Error::not_found("instance", instance).with_operation(op));
        };
        let instance_state = s.phase.state(now);
        if !matches!(
            instance_state,
            InstanceState::Running | InstanceState::Rebooting | InstanceState::Stopped
        ) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot attach volume `{id}` to instance `{instance}`: the instance is \
                     {instance_state}; volumes attach to running or stopped instances"
                ),
            )
            .with_operation(op)
            .with_resource(format!("instance {instance}"))
            .with_context("state", instance_state.as_str()));
        }
        if r.volume.location_id.as_ref() != Some(&s.location_id) {
            return Err(refused(
                op,
                id,
                format!(
                    "cannot attach volume `{id}` to instance `{instance}`: the volume is in \
                     location `{}`, the instance in `{}`",
                    r.volume.location_id.as_ref().map_or("", |l| l.as_str()),
                    s.location_id
                ),
                state,
            ));
        }
        let used = self.devices_in_use(key, now);
        let device = match device {
            Some(d) if used.contains(&d) => {
                return Err(Error::invalid_argument(
                    "device",
                    format!("device `{d}` of instance `{instance}` is in use; name another"),
                )
                .with_operation(op)
                .with_resource(format!("volume {id}")))
            }
            Some(d) => d.to_owned(),
            None => DEVICES
                .iter()
                .find(|d| !used.contains(d))
                .map(|d| (*d).to_owned())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::QuotaExceeded,
                        format!(
                            "instance `{instance}` has no free device from {} to {}; \
                             name a device",
                            DEVICES[0],
                            DEVICES[DEVICES.len() - 1]
                        ),
                    )
                    .with_operation(op)
                    .with_resource(format!("instance {instance}"))
                })?,
        };
        // The stale attachment of an earlier detach goes from its instance's list.
        let stale = r.attachment.as_ref().map(|a| a.instance_id.clone());
        if let Some(old) = stale.and_then(|i| parse_instance_id(i.as_str())) {
            if let Some(x) = self
                .instances
                .get_mut(&old)
                .and_then(|s| s.extras.as_deref_mut())
            {
                x.volumes.retain(|v| v != id);
            }
        }
        let live: Vec<VolumeId> = self
            .instances
            .get(&key)
            .and_then(|s| s.extras.as_deref())
            .map(|x| {
                x.volumes
                    .iter()
                    .filter(|v| {
                        self.volumes
                            .get(v)
                            .and_then(|r| r.attached(now))
                            .is_some_and(|a| a.instance_id == *instance)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(x) = self.extras_mut(key) {
            x.volumes = live;
            x.volumes.push(id.clone());
        }
        let delay = self.config.attach_delay;
        let r = self
            .volumes
            .get_mut(id)
            .ok_or_else(|| Error::not_found("volume", id).with_operation(op))?;
        r.attachment = Some(Attachment {
            instance_id: instance.clone(),
            device,
            delete_on_termination: false,
        });
        r.phase = Phase::begin(VolumeState::Attaching, VolumeState::InUse, now, delay);
        Ok(r.view(now))
    }

    /// Detaches a volume in use: `detaching`, then `available`.
    pub(in crate::memory) fn detach_volume(
        &mut self,
        id: &VolumeId,
        now: Instant,
    ) -> Result<Volume> {
        let op = Operation::DetachVolume;
        self.purge(now);
        let r = self.visible_volume(id, now, op)?;
        let state = r.state(now);
        match state {
            VolumeState::InUse => {}
            VolumeState::Attaching => {
                return Err(refused(
                    op,
                    id,
                    format!(
                        "cannot detach volume `{id}`: it is attaching; wait until it is in use"
                    ),
                    state,
                ))
            }
            // Detaching, or not attached: nothing to do.
            _ => return Ok(r.view(now)),
        }
        let delay = self.config.detach_delay;
        let r = self
            .volumes
            .get_mut(id)
            .ok_or_else(|| Error::not_found("volume", id).with_operation(op))?;
        r.phase = Phase::begin(VolumeState::Detaching, VolumeState::Available, now, delay);
        Ok(r.view(now))
    }

    /// A volume as an instance shows it, while attached to `instance`.
    pub(super) fn instance_volume(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        now: Instant,
    ) -> Option<InstanceVolume> {
        let a = self
            .volumes
            .get(id)
            .filter(|r| r.visible(now))?
            .attached(now)
            .filter(|a| a.instance_id == *instance)?;
        Some(InstanceVolume {
            volume_id: id.clone(),
            device: Some(a.device.clone()),
            delete_on_termination: a.delete_on_termination,
        })
    }

    /// Lets go of an instance's volumes when it is deleted: those attached (or
    /// attaching) are `detaching` until it is terminated (`terminated_at`), then
    /// `available`, or `deleting` and gone after the delete delay when they were made
    /// to go with it.
    pub(super) fn release_volumes(
        &mut self,
        instance: &InstanceId,
        volumes: &[VolumeId],
        terminated_at: Option<Instant>,
        now: Instant,
    ) {
        let delete_delay = self.config.volume_delete_delay;
        for id in volumes {
            let Some(r) = self.volumes.get_mut(id) else {
                continue;
            };
            let holds = matches!(r.state(now), VolumeState::Attaching | VolumeState::InUse)
                && r.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == *instance);
            if !holds {
                continue;
            }
            let goes = r
                .attachment
                .as_ref()
                .is_some_and(|a| a.delete_on_termination);
            if goes {
                r.phase = Phase {
                    from: VolumeState::Detaching,
                    to: VolumeState::Deleting,
                    at: terminated_at,
                };
                r.gone_at = terminated_at.and_then(|t| t.checked_add(delete_delay));
                if let Some(at) = r.gone_at {
                    self.volume_expiries.insert((at, id.clone()));
                }
            } else {
                r.phase = Phase {
                    from: VolumeState::Detaching,
                    to: VolumeState::Available,
                    at: terminated_at,
                };
            }
        }
    }

    /// Checks the volumes an instance create asks for and chooses their devices: the
    /// ones named, and for the others the first free of [`DEVICES`].
    pub(super) fn plan_block_devices(
        &self,
        spec: &InstanceSpec,
        now: Instant,
    ) -> Result<Vec<Planned>> {
        let op = Operation::CreateInstance;
        let named: Vec<&str> = spec
            .volumes
            .iter()
            .filter_map(|b| b.device.as_deref())
            .collect();
        let mut free = DEVICES.iter().filter(|d| !named.contains(d));
        let mut planned = Vec::with_capacity(spec.volumes.len());
        for b in &spec.volumes {
            let size_gib = match &b.snapshot_id {
                Some(s) => self.size_from_snapshot(s, b.size_gib, "volumes", op, now)?,
                None => b.size_gib.unwrap_or(1),
            };
            let device = match &b.device {
                Some(d) => d.clone(),
                None => free.next().map(|d| (*d).to_owned()).ok_or_else(|| {
                    Error::invalid_argument(
                        "volumes",
                        "too many volumes without a device; name their devices",
                    )
                    .with_operation(op)
                })?,
            };
            planned.push(Planned {
                device,
                size_gib,
                snapshot_id: b.snapshot_id.clone(),
                delete_on_termination: b.delete_on_termination,
            });
        }
        Ok(planned)
    }

    /// Makes the volumes of a new instance, attached (`attaching` until it has booted,
    /// then `in_use`), in its location, for its owner.
    pub(super) fn make_block_devices(
        &mut self,
        planned: Vec<Planned>,
        instance: &InstanceId,
        location: &LocationId,
        owner: Option<&String>,
        now: Instant,
        created_at: DateTime<Utc>,
    ) -> Vec<VolumeId> {
        let boot = self.config.boot_delay;
        let mut ids = Vec::with_capacity(planned.len());
        for p in planned {
            let id = self.volumes.next_id();
            let record = VolumeRecord {
                volume: Volume {
                    id: id.clone(),
                    name: String::new(),
                    size_gib: p.size_gib,
                    state: VolumeState::Attaching,
                    raw_state: String::new(),
                    location_id: Some(location.clone()),
                    attachments: Vec::new(),
                    snapshot_id: p.snapshot_id,
                    tags: Tags::new(),
                    created_at: Some(created_at),
                    client_token: None,
                    owner: owner.cloned(),
                },
                phase: Phase::begin(VolumeState::Attaching, VolumeState::InUse, now, boot),
                attachment: Some(Attachment {
                    instance_id: instance.clone(),
                    device: p.device,
                    delete_on_termination: p.delete_on_termination,
                }),
                gone_at: None,
            };
            self.volumes.insert(id.clone(), record);
            ids.push(id);
        }
        ids
    }

    /// The volumes stored, deleted ones not yet removed included.
    pub(in crate::memory) fn volume_count(&self) -> usize {
        self.volumes.len()
    }
}
