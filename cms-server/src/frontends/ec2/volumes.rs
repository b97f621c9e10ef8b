//! Block storage: CreateVolume, DescribeVolumes, AttachVolume, DetachVolume,
//! DeleteVolume, CreateSnapshot, DescribeSnapshots and DeleteSnapshot.
//!
//! A cms volume is an EBS volume of type `gp2`, unencrypted, attached to one instance
//! at most. Its states are EBS's (`creating`, `available`, `in-use`, `deleting`,
//! `deleted`, `error`); cms's `attaching` and `detaching` are `in-use` with the
//! attachment's status saying which. The model keeps no attach time, so attachments
//! show none. AWS's rules are the frontend's: attaching a volume that is attached
//! (even to the same instance) is `VolumeInUse`, detaching one that is not is
//! `IncorrectState`, deleting an attached one is `VolumeInUse`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cms_core::{
    ErrorKind, Operation, Snapshot, SnapshotFilter, SnapshotId, SnapshotSpec, SnapshotState,
    Volume, VolumeFilter, VolumeId, VolumeSpec, VolumeState, MAX_VOLUME_GIB,
};

use super::actions::{
    caps, check_shape, max_results, require, tag_specifications, unsupported, INSTANCE_CODES,
};
use super::error::{mapped, Ec2Error, Result};
use super::families::{
    default_zone, ec2_device, finish, idempotency, is_self, listing, named_tags, owner_account,
    public_ids, resolve_owned, tags_with_name, zone,
};
use super::params::{filters, Filter};
use super::xml::Xml;
use super::Call;
use crate::service::{InstanceRef, Kind, ObjectRef, Shown};

pub(super) const VOLUME_CODES: (&str, &str, &str) = (
    "InvalidVolume.Malformed",
    "InvalidVolume.NotFound",
    "volume",
);

pub(super) const SNAPSHOT_CODES: (&str, &str, &str) = (
    "InvalidSnapshot.Malformed",
    "InvalidSnapshot.NotFound",
    "snapshot",
);

/// The EBS volume types; cms volumes are shown as `gp2`, and a create may name any.
const VOLUME_TYPES: &[&str] = &["standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"];

/// EBS's state of a cms volume state, and the status of its attachment.
pub(super) fn ec2_volume_state(s: VolumeState) -> (&'static str, &'static str) {
    match s {
        VolumeState::Creating => ("creating", "attached"),
        VolumeState::Available => ("available", "detached"),
        VolumeState::Attaching => ("in-use", "attaching"),
        VolumeState::InUse => ("in-use", "attached"),
        VolumeState::Detaching => ("in-use", "detaching"),
        VolumeState::Deleting => ("deleting", "detached"),
        VolumeState::Deleted => ("deleted", "detached"),
        VolumeState::Error | VolumeState::Unknown => ("error", "attached"),
    }
}

/// Whether a volume in state `s` is attached to an instance.
fn attached(s: VolumeState) -> bool {
    matches!(
        s,
        VolumeState::Attaching | VolumeState::InUse | VolumeState::Detaching
    )
}

/// EBS's state of a cms snapshot state.
fn ec2_snapshot_state(s: SnapshotState) -> &'static str {
    match s {
        SnapshotState::Pending | SnapshotState::Unknown => "pending",
        SnapshotState::Completed => "completed",
        SnapshotState::Error => "error",
    }
}

/// The public ids a volume answer names: instances and snapshots; and the zone of
/// volumes whose backend names none.
struct VolumeRefs {
    instances: HashMap<String, Arc<str>>,
    snapshots: HashMap<String, Arc<str>>,
    zone: String,
}

impl VolumeRefs {
    async fn of(c: &Call<'_>, vols: &[&Volume]) -> Result<VolumeRefs> {
        let instances: Vec<&str> = vols
            .iter()
            .flat_map(|v| v.attachments.iter().map(|a| a.instance_id.as_str()))
            .collect();
        let instances = public_ids(c, Kind::Instance, instances).await?;
        let snapshots: Vec<&str> = vols
            .iter()
            .filter_map(|v| v.snapshot_id.as_ref().map(|s| s.as_str()))
            .collect();
        let snapshots = public_ids(c, Kind::Snapshot, snapshots).await?;
        let zone = if vols.iter().any(|v| v.location_id.is_none()) {
            default_zone(c).await?
        } else {
            String::new()
        };
        Ok(VolumeRefs {
            instances,
            snapshots,
            zone,
        })
    }

    fn zone<'a>(&'a self, v: &'a Volume) -> &'a str {
        v.location_id
            .as_ref()
            .map(|l| l.as_str())
            .unwrap_or(&self.zone)
    }

    fn snapshot(&self, v: &Volume) -> &str {
        v.snapshot_id
            .as_ref()
            .and_then(|s| self.snapshots.get(s.as_str()))
            .map(|s| &**s)
            .unwrap_or("")
    }
}

/// The fields of a volume (the content of CreateVolume's answer and of each
/// DescribeVolumes item).
fn write_volume(x: &mut Xml, v: &Volume, id: &str, r: &VolumeRefs) {
    let (state, attachment) = ec2_volume_state(v.state);
    x.leaf("volumeId", id)
        .num("size", v.size_gib)
        .leaf("snapshotId", r.snapshot(v))
        .leaf("availabilityZone", r.zone(v))
        .leaf("status", state);
    if let Some(t) = &v.created_at {
        x.time("createTime", t);
    }
    if v.attachments.is_empty() {
        x.empty("attachmentSet");
    } else {
        x.open("attachmentSet");
        for a in &v.attachments {
            x.open("item").leaf("volumeId", id);
            x.leaf_opt(
                "instanceId",
                r.instances.get(a.instance_id.as_str()).map(|i| &**i),
            );
            x.leaf_opt("device", a.device.as_deref().map(ec2_device).as_deref())
                .leaf("status", attachment)
                .bool("deleteOnTermination", a.delete_on_termination)
                .close("item");
        }
        x.close("attachmentSet");
    }
    x.tags("tagSet", named_tags(&v.name, &v.tags))
        .leaf("volumeType", "gp2")
        .bool("encrypted", false)
        .bool("multiAttachEnabled", false);
}

/// The DescribeVolumes filters served (and `tag:KEY`).
const VOLUME_FILTERS: &[&str] = &[
    "volume-id",
    "status",
    "size",
    "snapshot-id",
    "availability-zone",
    "create-time",
    "volume-type",
    "encrypted",
    "multi-attach-enabled",
    "attachment.instance-id",
    "attachment.device",
    "attachment.status",
    "attachment.delete-on-termination",
    "tag-key",
];

/// DescribeVolumes filters of the EC2 API that cms has no data for.
const VOLUME_UNSERVED: &[&str] = &[
    "attachment.attach-time",
    "availability-zone-id",
    "fast-restored",
    "operator.managed",
    "operator.principal",
];

/// Refuses a filter that is neither `served` nor `tag:KEY`: one of EC2's that cms
/// lacks (`unserved`), or a name EC2 does not know.
fn check_served(fs: &[Filter], served: &[&str], unserved: &[&str]) -> Result<()> {
    for f in fs {
        let name = f.name.as_str();
        if name.starts_with("tag:") || served.contains(&name) {
            continue;
        }
        if unserved.contains(&name) {
            return Err(Ec2Error::invalid_value(format!(
                "The filter '{name}' is not supported here: cms does not keep it"
            )));
        }
        return Err(super::params::unknown_filter(name));
    }
    Ok(())
}

/// The values a DescribeVolumes filter looks at, as the answer shows them.
fn volume_field(f: &str, v: &Volume, id: &str, r: &VolumeRefs) -> Vec<String> {
    let (state, attachment) = ec2_volume_state(v.state);
    let is = |s: &str| vec![s.to_owned()];
    match f {
        "volume-id" => is(id),
        "status" => is(state),
        "size" => vec![v.size_gib.to_string()],
        "snapshot-id" => is(r.snapshot(v)),
        "availability-zone" => is(r.zone(v)),
        "create-time" => v
            .created_at
            .as_ref()
            .map(super::xml::time_text)
            .into_iter()
            .collect(),
        "volume-type" => is("gp2"),
        "encrypted" | "multi-attach-enabled" => is("false"),
        "attachment.instance-id" => v
            .attachments
            .iter()
            .filter_map(|a| r.instances.get(a.instance_id.as_str()))
            .map(|i| i.to_string())
            .collect(),
        "attachment.device" => v
            .attachments
            .iter()
            .filter_map(|a| a.device.as_deref().map(|d| ec2_device(d).into_owned()))
            .collect(),
        "attachment.status" => v.attachments.iter().map(|_| attachment.into()).collect(),
        "attachment.delete-on-termination" => v
            .attachments
            .iter()
            .map(|a| a.delete_on_termination.to_string())
            .collect(),
        "tag-key" => named_tags(&v.name, &v.tags)
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `tags` match a `tag:KEY` filter or the others by `field`.
fn matches(f: &Filter, tags: &cms_core::Tags, field: impl FnOnce() -> Vec<String>) -> bool {
    if f.name.starts_with("tag:") {
        return f.on_tags(tags).unwrap_or(false);
    }
    f.matches(field().iter().map(String::as_str))
}

/// The tag filters a driver can apply itself: `tag:KEY` (not `Name`, which is the
/// object's name) with one plain value, and `tag-key` with one plain value.
fn pushed_tags(fs: &[Filter]) -> std::collections::BTreeMap<String, Option<String>> {
    let plain = |v: &str| !v.contains(['*', '?', '\\']);
    let mut out = std::collections::BTreeMap::new();
    for f in fs {
        match (f.name.strip_prefix("tag:"), f.values.as_slice()) {
            (Some(k), [v]) if k != "Name" && plain(k) && plain(v) => {
                out.insert(k.to_owned(), Some(v.clone()));
            }
            (None, [k]) if f.name == "tag-key" && k != "Name" && plain(k) => {
                out.entry(k.clone()).or_insert(None);
            }
            _ => {}
        }
    }
    out
}

/// The named public ids that a listing did not show (gone since): `NotFound`.
fn check_listed<T>(
    ids: &[&str],
    listed: &[Shown<T>],
    codes: (&'static str, &'static str, &str),
) -> Result<()> {
    let seen: HashSet<&str> = listed.iter().map(|s| &*s.entry().public_id).collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !seen.contains(**id))
        .map(|id| (*id).to_owned())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(super::actions::missing_ids(codes.1, codes.2, &missing))
    }
}

pub(super) async fn describe_volumes(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).volumes.list, "listing volumes")?;
    let fs = filters(&c.p)?;
    check_served(&fs, VOLUME_FILTERS, VOLUME_UNSERVED)?;
    let max = max_results(&c.p, 5..=1000)?;
    let ids = c.p.list("VolumeId")?;
    if max.is_some() && !ids.is_empty() {
        return Err(Ec2Error::combination(
            "The parameter volumeSet cannot be used with the parameter maxResults",
        ));
    }
    let mut filter = VolumeFilter {
        tags: pushed_tags(&fs),
        ..VolumeFilter::default()
    };
    if !ids.is_empty() {
        filter.ids = resolve_owned(c, Kind::Volume, &ids, VOLUME_CODES)
            .await?
            .iter()
            .map(|b| VolumeId::new(&**b))
            .collect();
    }
    let whole = !fs.is_empty();
    let (items, next) = listing(c, max, whole, |req| {
        let filter = &filter;
        async move {
            c.service
                .list_volumes(c.tenant, c.provider, filter, &req, true)
                .await
        }
    })
    .await?;
    check_listed(&ids, &items, VOLUME_CODES)?;
    let vols: Vec<&Volume> = items.iter().map(|s| &s.item).collect();
    let r = VolumeRefs::of(c, &vols).await?;
    let rows: Vec<Shown<Volume>> = items
        .into_iter()
        .filter(|s| {
            let v = &s.item;
            let id = &*s.entry().public_id;
            let tags = tags_with_name(&v.name, &v.tags);
            fs.iter()
                .all(|f| matches(f, &tags, || volume_field(&f.name, v, id, &r)))
        })
        .collect();
    let (page, next) = finish(c, rows, whole, next, max)?;
    let mut x = Xml::response("DescribeVolumes", c.request_id, 256 + page.len() * 600);
    x.open("volumeSet");
    for s in &page {
        x.open("item");
        write_volume(&mut x, &s.item, &s.entry().public_id, &r);
        x.close("item");
    }
    x.close("volumeSet");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeVolumes"))
}

pub(super) async fn create_volume(c: &Call<'_>) -> Result<String> {
    let vc = caps(c).volumes;
    require(c, vc.create, "creating volumes")?;
    let p = &c.p;
    let size = p.int("Size", 1..=i64::from(MAX_VOLUME_GIB))?;
    let snapshot = p.get("SnapshotId").filter(|s| !s.is_empty());
    // The snapshot's backend id, to name it as the client does in errors.
    let snapshot_backend = match snapshot {
        Some(s) => {
            require(c, vc.from_snapshot, "volumes made from snapshots")?;
            Some(
                resolve_owned(c, Kind::Snapshot, &[s], SNAPSHOT_CODES)
                    .await?
                    .remove(0),
            )
        }
        None if size.is_none() => return Err(Ec2Error::missing("Size")),
        None => None,
    };
    if let Some(t) = p.get("VolumeType") {
        if !VOLUME_TYPES.contains(&t) {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({t}) for parameter volumeType is invalid. Valid values: {}",
                VOLUME_TYPES.join(", ")
            )));
        }
    }
    if p.bool("Encrypted")? == Some(true) {
        return Err(unsupported(c, "encrypted volumes (Encrypted=true)"));
    }
    let location_id = zone(c, p.get("AvailabilityZone")).await?;
    let mut tags = tag_specifications(p, "volume")?;
    if !tags.is_empty() {
        require(c, vc.tags, "tags on volumes")?;
    }
    let name = tags.remove("Name").unwrap_or_default();
    let idem = idempotency(c)?;
    let spec = VolumeSpec {
        name,
        size_gib: size.map(|s| s as u32),
        snapshot_id: None,
        location_id,
        tags,
        client_token: None,
        owner: None,
    };
    let made = c
        .service
        .create_volume(
            c.tenant,
            c.provider,
            &spec,
            snapshot.map(ObjectRef::Public),
            idem.as_ref(),
        )
        .await
        .map_err(|e| {
            let e = match (&snapshot_backend, snapshot) {
                (Some(b), Some(s)) => e.renamed(b, s),
                _ => e,
            };
            mapped(
                e,
                &[
                    (ErrorKind::InvalidState, "IncorrectState"),
                    (ErrorKind::QuotaExceeded, "VolumeLimitExceeded"),
                ],
            )
        })?;
    let r = VolumeRefs::of(c, &[&made.item]).await?;
    let mut x = Xml::response("CreateVolume", c.request_id, 1024);
    write_volume(&mut x, &made.item, &made.entry().public_id, &r);
    Ok(x.finish("CreateVolume"))
}

/// The volume a one-volume action names, the tenant's.
async fn one_volume(c: &Call<'_>, op: Operation) -> Result<(String, Shown<Volume>)> {
    let id = c.p.required("VolumeId")?;
    check_shape(&[id], Kind::Volume, VOLUME_CODES)?;
    let v = c
        .service
        .volume(c.tenant, c.provider, ObjectRef::Public(id), op)
        .await?;
    Ok((id.to_owned(), v))
}

/// The public id of the instance a volume is attached to.
async fn attached_instance(c: &Call<'_>, v: &Volume) -> Result<Option<Arc<str>>> {
    let Some(a) = v.attachments.first() else {
        return Ok(None);
    };
    Ok(public_ids(c, Kind::Instance, vec![a.instance_id.as_str()])
        .await?
        .into_values()
        .next())
}

/// An attachment answer (AttachVolume, DetachVolume).
fn write_attachment(
    x: &mut Xml,
    volume: &str,
    instance: &str,
    device: Option<&str>,
    v: &Volume,
    at: Option<chrono::DateTime<chrono::Utc>>,
) {
    let (_, status) = ec2_volume_state(v.state);
    x.leaf("volumeId", volume).leaf("instanceId", instance);
    x.leaf_opt("device", device).leaf("status", status);
    if let Some(t) = &at {
        x.time("attachTime", t);
    }
    let delete = v
        .attachments
        .first()
        .is_some_and(|a| a.delete_on_termination);
    x.bool("deleteOnTermination", delete);
}

pub(super) async fn attach_volume(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).volumes.attach, "attaching volumes")?;
    let instance = c.p.required("InstanceId")?;
    check_shape(&[instance], Kind::Instance, INSTANCE_CODES)?;
    let device = c.p.required("Device")?;
    let (id, before) = one_volume(c, Operation::AttachVolume).await?;
    let (state, _) = ec2_volume_state(before.item.state);
    if attached(before.item.state) {
        let on = attached_instance(c, &before.item).await?;
        return Err(Ec2Error::new(
            "VolumeInUse",
            400,
            match on {
                Some(i) => format!("{id} is already attached to an instance ({i})"),
                None => format!("{id} is already attached to an instance"),
            },
        ));
    }
    if before.item.state != VolumeState::Available {
        return Err(Ec2Error::new(
            "IncorrectState",
            400,
            format!("Volume '{id}' is in the '{state}' state."),
        ));
    }
    let after = c
        .service
        .attach_volume(
            c.tenant,
            c.provider,
            ObjectRef::Public(&id),
            InstanceRef::Public(instance),
            Some(device),
        )
        .await
        .map_err(|e| {
            if e.kind() == ErrorKind::InvalidState
                && e.resource().is_some_and(|r| r.starts_with("instance "))
            {
                return Ec2Error::new("IncorrectInstanceState", 400, e.to_string());
            }
            mapped(
                e,
                &[
                    (ErrorKind::InvalidState, "IncorrectState"),
                    (ErrorKind::AlreadyExists, "InvalidParameterValue"),
                ],
            )
        })?;
    let shown_device = after
        .item
        .attachments
        .first()
        .and_then(|a| a.device.as_deref())
        .map(ec2_device)
        .unwrap_or(device.into());
    let mut x = Xml::response("AttachVolume", c.request_id, 512);
    write_attachment(
        &mut x,
        &id,
        instance,
        Some(&shown_device),
        &after.item,
        Some(chrono::Utc::now()),
    );
    Ok(x.finish("AttachVolume"))
}

pub(super) async fn detach_volume(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).volumes.detach, "detaching volumes")?;
    // `Force` detaches without the instance's consent on EC2; cms detaches as its
    // backend does, which a forced detach may also be.
    c.p.bool("Force")?;
    let named_instance = c.p.get("InstanceId").filter(|i| !i.is_empty());
    if let Some(i) = named_instance {
        check_shape(&[i], Kind::Instance, INSTANCE_CODES)?;
    }
    let named_device = c.p.get("Device").filter(|d| !d.is_empty());
    let (id, before) = one_volume(c, Operation::DetachVolume).await?;
    let (state, _) = ec2_volume_state(before.item.state);
    if !attached(before.item.state) {
        return Err(Ec2Error::new(
            "IncorrectState",
            400,
            format!("Volume '{id}' is in the '{state}' state."),
        ));
    }
    let on = attached_instance(c, &before.item).await?;
    let device = before
        .item
        .attachments
        .first()
        .and_then(|a| a.device.as_deref())
        .map(|d| ec2_device(d).into_owned());
    let wrong_instance = named_instance.is_some_and(|i| on.as_deref() != Some(i));
    let wrong_device = named_device.is_some_and(|d| device.as_deref() != Some(&*ec2_device(d)));
    if wrong_instance || wrong_device {
        return Err(Ec2Error::new(
            "InvalidAttachment.NotFound",
            400,
            format!(
                "Volume '{id}' is not attached to {}{}",
                named_instance
                    .map(|i| format!("instance '{i}'"))
                    .unwrap_or_else(|| "its instance".into()),
                named_device
                    .map(|d| format!(" at '{d}'"))
                    .unwrap_or_default()
            ),
        ));
    }
    let after = c
        .service
        .detach_volume(c.tenant, c.provider, ObjectRef::Public(&id))
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::InvalidState, "IncorrectState")]))?;
    let mut x = Xml::response("DetachVolume", c.request_id, 512);
    let mut shown = after.item.clone();
    if shown.attachments.is_empty() {
        // Detached at once: the answer still names what it was detached from.
        shown.attachments = before.item.attachments.clone();
    }
    write_attachment(
        &mut x,
        &id,
        on.as_deref().unwrap_or(""),
        device.as_deref(),
        &shown,
        None,
    );
    Ok(x.finish("DetachVolume"))
}

pub(super) async fn delete_volume(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).volumes.delete, "deleting volumes")?;
    let (id, before) = one_volume(c, Operation::DeleteVolume).await?;
    if attached(before.item.state) {
        let on = attached_instance(c, &before.item).await?;
        return Err(Ec2Error::new(
            "VolumeInUse",
            400,
            format!(
                "Volume {id} is currently attached to {}",
                on.as_deref().unwrap_or("an instance")
            ),
        ));
    }
    c.service
        .delete_volume(c.tenant, c.provider, ObjectRef::Public(&id))
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::InvalidState, "IncorrectState")]))?;
    let mut x = Xml::response("DeleteVolume", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("DeleteVolume"))
}

// ---- snapshots ----

/// The fields of a snapshot (CreateSnapshot's answer, each DescribeSnapshots item).
fn write_snapshot(x: &mut Xml, s: &Snapshot, id: &str, volume: Option<&str>, owner: &str) {
    x.leaf("snapshotId", id);
    x.leaf_opt("volumeId", volume)
        .leaf("status", ec2_snapshot_state(s.state));
    if let Some(t) = &s.created_at {
        x.time("startTime", t);
    }
    x.leaf("progress", &format!("{}%", s.progress.min(100)))
        .leaf("ownerId", owner)
        .num("volumeSize", s.size_gib)
        .leaf("description", s.description.as_deref().unwrap_or(""))
        .bool("encrypted", false)
        .leaf("storageTier", "standard")
        .tags("tagSet", named_tags(&s.name, &s.tags));
}

/// The DescribeSnapshots filters served (and `tag:KEY`).
const SNAPSHOT_FILTERS: &[&str] = &[
    "description",
    "encrypted",
    "owner-alias",
    "owner-id",
    "progress",
    "snapshot-id",
    "start-time",
    "status",
    "storage-tier",
    "volume-id",
    "volume-size",
    "tag-key",
];

pub(super) async fn describe_snapshots(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).snapshots.list, "listing snapshots")?;
    let fs = filters(&c.p)?;
    check_served(&fs, SNAPSHOT_FILTERS, &["transfer-type"])?;
    let max = max_results(&c.p, 5..=1000)?;
    let ids = c.p.list("SnapshotId")?;
    let owners = c.p.list("Owner")?;
    let mut filter = SnapshotFilter {
        tags: pushed_tags(&fs),
        ..SnapshotFilter::default()
    };
    if !ids.is_empty() {
        filter.ids = resolve_owned(c, Kind::Snapshot, &ids, SNAPSHOT_CODES)
            .await?
            .iter()
            .map(|b| SnapshotId::new(&**b))
            .collect();
    }
    // `Owner.N` selects by owner: the caller (`self`, its account id) or another account;
    // `amazon` and other aliases own none of a cms provider's snapshots.
    let whole = !fs.is_empty() || !owners.is_empty();
    let (items, next) = listing(c, max, whole, |req| {
        let filter = &filter;
        async move {
            c.service
                .list_snapshots(c.tenant, c.provider, filter, &req, true)
                .await
        }
    })
    .await?;
    check_listed(&ids, &items, SNAPSHOT_CODES)?;
    let volumes: Vec<&str> = items
        .iter()
        .filter_map(|s| s.item.volume_id.as_ref().map(|v| v.as_str()))
        .collect();
    let volumes = public_ids(c, Kind::Volume, volumes).await?;
    let volume_of = |s: &Snapshot| {
        s.volume_id
            .as_ref()
            .and_then(|v| volumes.get(v.as_str()))
            .map(|v| v.to_string())
    };
    let rows: Vec<Shown<Snapshot>> = items
        .into_iter()
        .filter(|sh| {
            let s = &sh.item;
            let owner = owner_account(c, s.owner.as_deref());
            let owner_ok = owners
                .iter()
                .any(|o| *o == owner || (is_self(c, o) && owner == owner_account(c, None)))
                || owners.is_empty();
            let tags = tags_with_name(&s.name, &s.tags);
            owner_ok
                && fs.iter().all(|f| {
                    matches(f, &tags, || {
                        let is = |v: &str| vec![v.to_owned()];
                        match f.name.as_str() {
                            "description" => is(s.description.as_deref().unwrap_or("")),
                            "encrypted" => is("false"),
                            "owner-alias" => Vec::new(),
                            "owner-id" => vec![owner.clone()],
                            "progress" => vec![format!("{}%", s.progress.min(100))],
                            "snapshot-id" => is(&sh.entry().public_id),
                            "start-time" => s
                                .created_at
                                .as_ref()
                                .map(super::xml::time_text)
                                .into_iter()
                                .collect(),
                            "status" => is(ec2_snapshot_state(s.state)),
                            "storage-tier" => is("standard"),
                            "volume-id" => volume_of(s).into_iter().collect(),
                            "volume-size" => vec![s.size_gib.to_string()],
                            _ => named_tags(&s.name, &s.tags)
                                .into_iter()
                                .map(|(k, _)| k.to_owned())
                                .collect(),
                        }
                    })
                })
        })
        .collect();
    let (page, next) = finish(c, rows, whole, next, max)?;
    let mut x = Xml::response("DescribeSnapshots", c.request_id, 256 + page.len() * 500);
    x.open("snapshotSet");
    for sh in &page {
        x.open("item");
        write_snapshot(
            &mut x,
            &sh.item,
            &sh.entry().public_id,
            volume_of(&sh.item).as_deref(),
            &owner_account(c, sh.item.owner.as_deref()),
        );
        x.close("item");
    }
    x.close("snapshotSet");
    x.leaf_opt("nextToken", next.as_deref());
    Ok(x.finish("DescribeSnapshots"))
}

pub(super) async fn create_snapshot(c: &Call<'_>) -> Result<String> {
    let sc = caps(c).snapshots;
    require(c, sc.create, "creating snapshots")?;
    let volume = c.p.required("VolumeId")?;
    check_shape(&[volume], Kind::Volume, VOLUME_CODES)?;
    let mut tags = tag_specifications(&c.p, "snapshot")?;
    if !tags.is_empty() {
        require(c, sc.tags, "tags on snapshots")?;
    }
    let name = tags.remove("Name").unwrap_or_default();
    let spec = SnapshotSpec {
        volume_id: VolumeId::new(""),
        name,
        description: c
            .p
            .get("Description")
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        tags,
        owner: None,
    };
    let made = c
        .service
        .create_snapshot(c.tenant, c.provider, ObjectRef::Public(volume), &spec)
        .await
        .map_err(|e| {
            mapped(
                e,
                &[
                    (ErrorKind::InvalidState, "IncorrectState"),
                    (ErrorKind::QuotaExceeded, "SnapshotLimitExceeded"),
                ],
            )
        })?;
    let mut x = Xml::response("CreateSnapshot", c.request_id, 1024);
    write_snapshot(
        &mut x,
        &made.item,
        &made.entry().public_id,
        Some(volume),
        &owner_account(c, made.item.owner.as_deref()),
    );
    Ok(x.finish("CreateSnapshot"))
}

pub(super) async fn delete_snapshot(c: &Call<'_>) -> Result<String> {
    require(c, caps(c).snapshots.delete, "deleting snapshots")?;
    let id = c.p.required("SnapshotId")?;
    check_shape(&[id], Kind::Snapshot, SNAPSHOT_CODES)?;
    c.service
        .delete_snapshot(c.tenant, c.provider, ObjectRef::Public(id))
        .await
        .map_err(|e| mapped(e, &[(ErrorKind::InvalidState, "InvalidSnapshot.InUse")]))?;
    let mut x = Xml::response("DeleteSnapshot", c.request_id, 256);
    x.bool("return", true);
    Ok(x.finish("DeleteSnapshot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_states_are_ebs_states() {
        assert_eq!(
            ec2_volume_state(VolumeState::Attaching),
            ("in-use", "attaching")
        );
        assert_eq!(ec2_volume_state(VolumeState::InUse), ("in-use", "attached"));
        assert_eq!(ec2_volume_state(VolumeState::Available).0, "available");
        assert_eq!(ec2_snapshot_state(SnapshotState::Completed), "completed");
    }

    #[test]
    fn only_plain_tag_filters_are_pushed_down() {
        let f = |name: &str, values: &[&str]| Filter {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let pushed = pushed_tags(&[
            f("tag:env", &["prod"]),
            f("tag:Name", &["data"]),
            f("tag:team", &["bl*"]),
            f("tag:two", &["a", "b"]),
            f("tag-key", &["owner"]),
        ]);
        assert_eq!(
            pushed.into_iter().collect::<Vec<_>>(),
            [
                ("env".to_owned(), Some("prod".to_owned())),
                ("owner".to_owned(), None)
            ]
        );
    }
}
