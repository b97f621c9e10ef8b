//! Block storage: volumes, their attachments, and snapshots.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    check_client_token, check_id, check_name, check_owner, check_tags, InstanceId, LocationId, Tags,
};

id_type!(
    /// The backend's id of a volume (EC2 `vol-…`, a Cinder volume UUID, an OpenNebula persistent image number, a vCloud independent disk href).
    VolumeId
);
id_type!(
    /// The backend's id of a snapshot (EC2 `snap-…`, a Cinder snapshot UUID, an OpenNebula image number).
    SnapshotId
);

/// The largest volume the model accepts, in GiB (EC2's limit for most volume types).
pub const MAX_VOLUME_GIB: u32 = 16_384;

/// Where a volume is in its life.
///
/// | cms | memory | EC2 `State` (+ attachment state) | OpenStack Cinder `status` | OpenNebula persistent image `STATE` (+ the VM's disk) | vCloud independent disk `status` (+ running task) |
/// |---|---|---|---|---|---|
/// | `creating` | `creating` | creating | creating, downloading | 0 INIT, 4 LOCKED | 0 UNRESOLVED |
/// | `available` | `available` | available | available | 1 READY; 6 CLONE (a snapshot being copied from it) | 1 RESOLVED, not attached |
/// | `attaching` | `attaching` | in-use + attaching | attaching, reserved | READY or USED while the VM is in HOTPLUG for an attach | attach task |
/// | `in_use` | `in-use` | in-use + attached | in-use | 2 USED, 8 USED_PERS, 9 LOCKED_USED, 10 LOCKED_USED_PERS | attached |
/// | `detaching` | `detaching` | in-use + detaching | detaching | USED while the VM is in HOTPLUG for a detach | detach task |
/// | `deleting` | `deleting` | deleting | deleting | 7 DELETE | delete task |
/// | `deleted` | — | deleted | (404) | (gone) | (404) |
/// | `error` | — | error | error, error_deleting, error_extending, error_restoring | 5 ERROR, 3 DISABLED | -1 FAILED_CREATION |
/// | `unknown` | — | anything else | anything else | anything else | anything else |
///
/// Serialized in snake case (`in_use`); a state this version does not know reads as
/// `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    Creating,
    Available,
    Attaching,
    InUse,
    Detaching,
    Deleting,
    Deleted,
    Error,
    #[serde(other)]
    Unknown,
}

impl VolumeState {
    /// Every state, in declaration order.
    pub const ALL: [VolumeState; 9] = [
        VolumeState::Creating,
        VolumeState::Available,
        VolumeState::Attaching,
        VolumeState::InUse,
        VolumeState::Detaching,
        VolumeState::Deleting,
        VolumeState::Deleted,
        VolumeState::Error,
        VolumeState::Unknown,
    ];

    /// The snake-case name (`in_use`).
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Available => "available",
            VolumeState::Attaching => "attaching",
            VolumeState::InUse => "in_use",
            VolumeState::Detaching => "detaching",
            VolumeState::Deleting => "deleting",
            VolumeState::Deleted => "deleted",
            VolumeState::Error => "error",
            VolumeState::Unknown => "unknown",
        }
    }

    /// Whether the volume is on its way somewhere else.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            VolumeState::Creating
                | VolumeState::Attaching
                | VolumeState::Detaching
                | VolumeState::Deleting
        )
    }
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VolumeState {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VolumeState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                crate::Error::invalid_argument(
                    "state",
                    format!(
                        "unknown volume state `{s}`; expected one of {}",
                        VolumeState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })
    }
}

/// A volume's attachment to an instance, seen from the volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeAttachment {
    /// The instance.
    pub instance_id: InstanceId,
    /// The device the instance sees it as (`/dev/sdf`, `vdb`), when the backend says.
    pub device: Option<String>,
    /// Whether the volume goes with the instance when the instance is deleted (a root
    /// disk, or a volume made with the instance and asked to).
    #[serde(default)]
    pub delete_on_termination: bool,
}

/// A volume attached to an instance, seen from the instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceVolume {
    /// The volume.
    pub volume_id: VolumeId,
    /// The device the instance sees it as, when the backend says.
    pub device: Option<String>,
    /// Whether the volume goes with the instance when the instance is deleted.
    #[serde(default)]
    pub delete_on_termination: bool,
}

/// A block storage volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Volume {
    /// The backend's id.
    pub id: VolumeId,
    /// The name given at creation (empty when the backend has none).
    pub name: String,
    /// Its size in GiB.
    pub size_gib: u32,
    /// The mapped state.
    pub state: VolumeState,
    /// The backend's own status, as it said it (`in-use`, `USED_PERS`).
    pub raw_state: String,
    /// Where it lives (an instance it is attached to lives there too).
    pub location_id: Option<LocationId>,
    /// The instances it is attached to (at most one on most backends).
    #[serde(default)]
    pub attachments: Vec<VolumeAttachment>,
    /// The snapshot it was made from.
    #[serde(default)]
    pub snapshot_id: Option<SnapshotId>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// When it was created, when the backend says.
    pub created_at: Option<DateTime<Utc>>,
    /// The client token it was created with, when the backend keeps it.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Who it was made for ([`VolumeSpec::owner`]); `None` for volumes made without one.
    #[serde(default)]
    pub owner: Option<String>,
}

/// What to create: the arguments of [`Driver::create_volume`](crate::Driver::create_volume).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeSpec {
    /// A name for the volume.
    #[serde(default)]
    pub name: String,
    /// Its size in GiB, 1 to [`MAX_VOLUME_GIB`]; from a snapshot, at least the
    /// snapshot's size (the snapshot's size when absent). Required without a snapshot.
    #[serde(default, deserialize_with = "super::whole::u32")]
    pub size_gib: Option<u32>,
    /// The snapshot to make it from; empty when absent.
    #[serde(default)]
    pub snapshot_id: Option<SnapshotId>,
    /// Where to make it; the backend's choice when absent.
    #[serde(default)]
    pub location_id: Option<LocationId>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// A client token: creating twice with the same token and the same spec makes one
    /// volume; with the same token and another spec, `InvalidArgument`.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Who the volume is for, kept by the backend with the volume (see
    /// [`InstanceSpec::owner`](crate::InstanceSpec::owner)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl VolumeSpec {
    /// An empty volume of `size_gib`.
    pub fn new(size_gib: u32) -> Self {
        VolumeSpec {
            size_gib: Some(size_gib),
            ..Default::default()
        }
    }

    /// A volume made from a snapshot, of the snapshot's size.
    pub fn from_snapshot(snapshot_id: impl Into<SnapshotId>) -> Self {
        VolumeSpec {
            snapshot_id: Some(snapshot_id.into()),
            ..Default::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the location.
    pub fn location(mut self, location: impl Into<LocationId>) -> Self {
        self.location_id = Some(location.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the client token.
    pub fn client_token(mut self, token: impl Into<String>) -> Self {
        self.client_token = Some(token.into());
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Whether two specs ask for the same volume, ignoring the client token.
    pub fn same_request(&self, other: &VolumeSpec) -> bool {
        let strip = |s: &VolumeSpec| VolumeSpec {
            client_token: None,
            ..s.clone()
        };
        strip(self) == strip(other)
    }
}

/// Checks a volume spec by the model's rules: a size of 1 to [`MAX_VOLUME_GIB`] GiB
/// (required without a snapshot), a name of at most 255 characters, ids, the owner
/// ([`check_owner`](crate::check_owner)), the client token, tags by [`check_tags`].
/// Otherwise `InvalidArgument` for
/// [`Operation::CreateVolume`](crate::Operation::CreateVolume) naming the argument.
///
/// ```
/// use cms_core::{check_volume_spec, VolumeSpec};
/// assert!(check_volume_spec(&VolumeSpec::new(8)).is_ok());
/// assert!(check_volume_spec(&VolumeSpec::default()).is_err());
/// assert!(check_volume_spec(&VolumeSpec::new(0)).is_err());
/// ```
pub fn check_volume_spec(spec: &VolumeSpec) -> crate::Result<()> {
    let op = crate::Operation::CreateVolume;
    check_name("name", &spec.name, false).map_err(|e| e.with_operation(op))?;
    match (spec.size_gib, &spec.snapshot_id) {
        (None, None) => {
            return Err(crate::Error::invalid_argument(
                "size_gib",
                "a volume needs a size in GiB, or a snapshot to be made from",
            )
            .with_operation(op))
        }
        (Some(s), _) => check_size(s).map_err(|e| e.with_operation(op))?,
        (None, Some(_)) => {}
    }
    let rest = || -> crate::Result<()> {
        if let Some(s) = &spec.snapshot_id {
            check_id("snapshot_id", s.as_str())?;
        }
        if let Some(l) = &spec.location_id {
            check_id("location_id", l.as_str())?;
        }
        if let Some(o) = &spec.owner {
            check_owner(o)?;
        }
        if let Some(t) = &spec.client_token {
            check_client_token(t)?;
        }
        check_tags(&spec.tags)
    };
    rest().map_err(|e| e.with_operation(op))
}

/// Checks a size in GiB: 1 to [`MAX_VOLUME_GIB`].
pub(crate) fn check_size(size_gib: u32) -> crate::Result<()> {
    if !(1..=MAX_VOLUME_GIB).contains(&size_gib) {
        return Err(crate::Error::invalid_argument(
            "size_gib",
            format!("a volume's size is 1 to {MAX_VOLUME_GIB} GiB, not {size_gib}"),
        ));
    }
    Ok(())
}

/// Checks a device name: 1 to 64 characters of `A-Z a-z 0-9 / _ - .`.
///
/// ```
/// use cms_core::check_device;
/// assert!(check_device("/dev/sdf").is_ok());
/// assert!(check_device("vdb").is_ok());
/// assert!(check_device("/dev/sd f").is_err());
/// ```
pub fn check_device(device: &str) -> crate::Result<()> {
    let ok = !device.is_empty()
        && device.len() <= 64
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid_argument(
            "device",
            format!(
                "device `{}` must be 1 to 64 characters of A-Z, a-z, 0-9, `/`, `_`, `-`, `.`",
                device.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// A volume made with an instance (EC2's block device mapping, Nova's
/// `block_device_mapping_v2`, an OpenNebula `DISK`): part of an
/// [`InstanceSpec`](crate::InstanceSpec).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockDevice {
    /// The device the instance sees it as; the backend's choice when absent.
    #[serde(default)]
    pub device: Option<String>,
    /// Its size in GiB (see [`VolumeSpec::size_gib`]).
    #[serde(default, deserialize_with = "super::whole::u32")]
    pub size_gib: Option<u32>,
    /// The snapshot to make it from; empty when absent.
    #[serde(default)]
    pub snapshot_id: Option<SnapshotId>,
    /// Whether it goes with the instance when the instance is deleted (as EC2's
    /// default, true when absent). A backend that cannot delete it in the same step
    /// (OpenNebula frees a persistent image when its VM ends, and keeps it) deletes it
    /// when it next sees it after the instance ended: it shows `deleting` until then.
    #[serde(default = "yes")]
    pub delete_on_termination: bool,
}

fn yes() -> bool {
    true
}

impl BlockDevice {
    /// An empty volume of `size_gib` at `device`, deleted with the instance.
    pub fn new(device: impl Into<String>, size_gib: u32) -> Self {
        BlockDevice {
            device: Some(device.into()),
            size_gib: Some(size_gib),
            snapshot_id: None,
            delete_on_termination: true,
        }
    }

    /// Checks it as [`check_volume_spec`] checks a volume, and its device name.
    pub fn check(&self) -> crate::Result<()> {
        if let Some(d) = &self.device {
            check_device(d)?;
        }
        match (self.size_gib, &self.snapshot_id) {
            (None, None) => Err(crate::Error::invalid_argument(
                "size_gib",
                "a volume needs a size in GiB, or a snapshot to be made from",
            )),
            (Some(s), _) => check_size(s),
            (None, Some(_)) => Ok(()),
        }
    }
}

/// Where a snapshot is in its life.
///
/// | cms | memory | EC2 `State` | OpenStack Cinder snapshot `status` | OpenNebula | vCloud |
/// |---|---|---|---|---|---|
/// | `pending` | `pending`, with progress | pending | creating | the image copy `LOCKED` | — |
/// | `completed` | `completed` | completed | available | the image copy `READY` | — |
/// | `error` | — | error, recoverable | error, error_deleting | `ERROR` | — |
/// | `unknown` | — | anything else | anything else | anything else | — |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    #[serde(other)]
    Unknown,
}

impl SnapshotState {
    /// The snake-case name (`completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Error => "error",
            SnapshotState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for SnapshotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time copy of a volume, from which volumes are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// The backend's id.
    pub id: SnapshotId,
    /// The volume it copies (absent when the backend no longer says).
    pub volume_id: Option<VolumeId>,
    /// The name given at creation (empty when the backend has none).
    #[serde(default)]
    pub name: String,
    /// The description given at creation.
    #[serde(default)]
    pub description: Option<String>,
    /// The size of the volume it copies, in GiB.
    pub size_gib: u32,
    /// The mapped state.
    pub state: SnapshotState,
    /// The backend's own status.
    pub raw_state: String,
    /// How far the copy is, 0 to 100 (100 when completed).
    pub progress: u8,
    /// When it was started, when the backend says.
    pub created_at: Option<DateTime<Utc>>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who it was made for ([`SnapshotSpec::owner`]).
    #[serde(default)]
    pub owner: Option<String>,
}

/// What to create: the arguments of [`Driver::create_snapshot`](crate::Driver::create_snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotSpec {
    /// The volume to copy.
    pub volume_id: VolumeId,
    /// A name for the snapshot.
    #[serde(default)]
    pub name: String,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who the snapshot is for, kept by the backend with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl SnapshotSpec {
    /// A snapshot of `volume_id`.
    pub fn new(volume_id: impl Into<VolumeId>) -> Self {
        SnapshotSpec {
            volume_id: volume_id.into(),
            ..Default::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
}

/// Checks a snapshot spec: a volume id, a name and description of at most 255
/// characters, the owner ([`check_owner`](crate::check_owner)), tags by [`check_tags`].
pub fn check_snapshot_spec(spec: &SnapshotSpec) -> crate::Result<()> {
    let check = || -> crate::Result<()> {
        check_id("volume_id", spec.volume_id.as_str())?;
        check_name("name", &spec.name, false)?;
        if let Some(d) = &spec.description {
            check_name("description", d, false)?;
        }
        if let Some(o) = &spec.owner {
            check_owner(o)?;
        }
        check_tags(&spec.tags)
    };
    check().map_err(|e| e.with_operation(crate::Operation::CreateSnapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_in_snake_case_and_unknown_ones_read_as_unknown() {
        assert_eq!(
            serde_json::to_string(&VolumeState::InUse).unwrap(),
            "\"in_use\""
        );
        let read = |s: &str| serde_json::from_str::<VolumeState>(s).unwrap();
        assert_eq!(read("\"in_use\""), VolumeState::InUse);
        assert_eq!(read("\"optimizing\""), VolumeState::Unknown);
        assert_eq!("IN_USE".parse::<VolumeState>().unwrap(), VolumeState::InUse);
        assert!("optimizing".parse::<VolumeState>().is_err());
        for s in VolumeState::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        let read = |s: &str| serde_json::from_str::<SnapshotState>(s).unwrap();
        assert_eq!(read("\"completed\""), SnapshotState::Completed);
        assert_eq!(read("\"recoverable\""), SnapshotState::Unknown);
    }

    #[test]
    fn specs_are_checked() {
        let e = check_volume_spec(&VolumeSpec::new(MAX_VOLUME_GIB + 1)).unwrap_err();
        assert_eq!(e.context_value("argument"), Some("size_gib"));
        assert_eq!(e.operation(), Some(crate::Operation::CreateVolume));
        assert!(check_volume_spec(&VolumeSpec::from_snapshot("snap-1")).is_ok());
        assert!(check_volume_spec(&VolumeSpec::from_snapshot("")).is_err());
        let e = check_volume_spec(&VolumeSpec::new(1).name("x".repeat(256))).unwrap_err();
        assert_eq!(e.context_value("argument"), Some("name"));
        assert!(check_snapshot_spec(&SnapshotSpec::new("vol-1")).is_ok());
        assert!(check_snapshot_spec(&SnapshotSpec::default()).is_err());
        let bd = BlockDevice::new("/dev/sdf", 8);
        assert!(bd.check().is_ok());
        let json: BlockDevice = serde_json::from_str(r#"{"size_gib": 2}"#).unwrap();
        assert!(json.delete_on_termination);
        assert!(BlockDevice {
            device: Some("a b".into()),
            ..bd
        }
        .check()
        .is_err());
    }
}
