//! Volumes and snapshots: OpenNebula's DATABLOCK images.
//!
//! | cms | OpenNebula | made with |
//! |---|---|---|
//! | volume | a persistent DATABLOCK image of the user (`PERSISTENT = YES`) | `one.image.allocate` (TYPE DATABLOCK, SIZE in MiB) in the configured `volume_datastore` |
//! | snapshot | a non-persistent DATABLOCK image of the user: a point-in-time copy of a volume | `one.image.clone` of the volume, then `one.image.persistent` (false) |
//! | volume from a snapshot | a persistent copy of the snapshot | `one.image.clone` of the snapshot, then `one.image.persistent` (true) |
//! | attach, detach | a `DISK` of the VM with the image's `IMAGE_ID` (and `TARGET` = the device) | `one.vm.attach`, `one.vm.detach` (by the DISK_ID in the VM's document) |
//!
//! A clone copies the template of its source, so the copy's own attributes are written
//! right after (`one.image.update`, replacing the template with the source's minus its
//! `CMS_*` attributes plus the copy's). A crash between the calls leaves a copy that
//! reads as a snapshot (or volume) of the source's owner.
//!
//! What cms records in the image's TEMPLATE: `CMS_NAME` (the cms name; OpenNebula wants
//! image names unique per user and without `&|:\";/'#{}$<>`, so the image NAME is the
//! name made acceptable, with a suffix when it is taken), `CMS_OWNER`, `CMS_TAGS`,
//! `CMS_CLIENT_TOKEN` and `CMS_REQUEST_HASH` (volumes), `CMS_LOCATION` (the cluster a
//! volume was asked for), `CMS_SNAPSHOT_ID` (the snapshot a volume was made from),
//! `CMS_VOLUME_ID` (the volume a snapshot copies) and `CMS_INSTANCE` (the VM a volume
//! was made with, see below).
//!
//! Snapshots can only be taken of volumes that no VM uses: OpenNebula clones a
//! persistent image only while it is READY (`Cannot clone image in state: USED_PERS`),
//! so a snapshot of an attached volume is `InvalidState` (detach it first). A volume
//! made from a snapshot has the snapshot's size: OpenNebula resizes disks only through
//! a VM (`one.vm.diskresize`), so another size is `InvalidArgument`.
//!
//! Volumes made with an instance ([`InstanceSpec::volumes`](cms_core::InstanceSpec::volumes))
//! are volumes like the others, made before the VM and named in its template as
//! `DISK = [IMAGE_ID, TARGET, CMS_DELETE_ON_TERMINATION = YES|NO]`. OpenNebula never
//! deletes a persistent image: it releases it when the VM is done. So the driver marks
//! such a volume with the VM (`CMS_INSTANCE`) and deletes it the first time it reads it
//! released while the VM is done and still names it with `CMS_DELETE_ON_TERMINATION =
//! YES` (a volume detached meanwhile is no longer on the VM's disk list, and stays): it
//! then reads as `deleting`, then is gone.

use super::*;

use cms_core::{
    BlockDevice, InstanceVolume, Snapshot, SnapshotFilter, SnapshotId, SnapshotSpec, SnapshotState,
    Volume, VolumeAttachment, VolumeFilter, VolumeId, VolumeSpec, VolumeState,
};

/// Image TYPE 2.
pub(crate) const DATABLOCK: i64 = 2;
/// Image STATE 1.
const READY: i64 = 1;
/// Image STATE 6: a persistent image being copied.
const IMAGE_CLONE: i64 = 6;
/// Image STATE 7.
const IMAGE_DELETE: i64 = 7;
/// History ACTION of a detach (VMActions DISK_DETACH_ACTION).
const DISK_DETACH_ACTION: i64 = 22;

/// The template attribute holding the cms name of a volume or snapshot.
pub const ATTR_NAME: &str = "CMS_NAME";
/// The template attribute holding the cluster a volume was made for.
pub const ATTR_LOCATION: &str = "CMS_LOCATION";
/// The template attribute holding the snapshot a volume was made from.
pub const ATTR_SNAPSHOT_ID: &str = "CMS_SNAPSHOT_ID";
/// The template attribute holding the volume a snapshot copies.
pub const ATTR_VOLUME_ID: &str = "CMS_VOLUME_ID";
/// The template attribute holding the VM a volume was made with.
pub const ATTR_INSTANCE: &str = "CMS_INSTANCE";
/// The DISK attribute saying whether a volume made with a VM goes with it.
pub const ATTR_DELETE_ON_TERMINATION: &str = "CMS_DELETE_ON_TERMINATION";

/// How long the clusters' datastores are remembered (volume locations).
const CLUSTERS_TTL: Duration = Duration::from_secs(30);

/// Whether an image is a cms volume: a persistent DATABLOCK.
pub(crate) fn is_volume(img: &OneImage) -> bool {
    img.image_type == DATABLOCK && img.persistent
}

/// Whether an image is a cms snapshot: a non-persistent DATABLOCK.
pub(crate) fn is_snapshot(img: &OneImage) -> bool {
    img.image_type == DATABLOCK && !img.persistent
}

/// A disk hot-plug under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hotplug {
    Attach,
    Detach,
}

/// A VM's use of an image: one of its DISKs, as the VM's document says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskUse {
    pub vm: i64,
    pub disk_id: Option<i64>,
    /// TARGET (`vdb`).
    pub target: Option<String>,
    pub delete_on_termination: bool,
    pub hotplug: Option<Hotplug>,
}

impl DiskUse {
    /// A use known only from the image's VMS (the VM could not be read).
    fn bare(vm: i64) -> DiskUse {
        DiskUse {
            vm,
            ..DiskUse::default()
        }
    }
}

fn yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("YES"))
}

/// The DISK of `vm` that holds image `image`, read as a [`DiskUse`]. A disk being
/// hot-plugged carries `ATTACH = YES` while the VM is in HOTPLUG (17; an attach or a
/// detach, as the latest history ACTION tells), HOTPLUG_PROLOG_POWEROFF (33, an
/// attach) or HOTPLUG_EPILOG_POWEROFF (34, a detach).
pub fn disk_use(vm: &Vm, image: i64) -> Option<DiskUse> {
    let disk = vm
        .disks()
        .find(|d| d.get("IMAGE_ID").and_then(parse_oid) == Some(image))?;
    let hotplug = if yes(disk.get("ATTACH")) && vm.state == ACTIVE {
        match vm.lcm_state {
            33 => Some(Hotplug::Attach),
            34 => Some(Hotplug::Detach),
            17 if vm.last_history().map(|h| h.action) == Some(DISK_DETACH_ACTION) => {
                Some(Hotplug::Detach)
            }
            17 => Some(Hotplug::Attach),
            _ => None,
        }
    } else {
        None
    };
    Some(DiskUse {
        vm: vm.id,
        disk_id: disk.parse("DISK_ID"),
        target: disk.non_empty("TARGET").map(str::to_owned),
        delete_on_termination: yes(disk.get(ATTR_DELETE_ON_TERMINATION)),
        hotplug,
    })
}

/// The volumes of a VM: its DISKs of persistent images (`PERSISTENT = YES`, or
/// `CLONE = NO` in a pool's short form) but the first one, the root disk.
pub(crate) fn instance_volumes(vm: &Vm) -> Vec<InstanceVolume> {
    vm.disks()
        .filter(|d| d.parse::<i64>("DISK_ID").is_some_and(|i| i > 0))
        .filter(|d| {
            yes(d.get("PERSISTENT"))
                || d.get("CLONE")
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("NO"))
                    && !yes(d.get("READONLY"))
        })
        .filter_map(|d| {
            let image = d.get("IMAGE_ID").and_then(parse_oid)?;
            Some(InstanceVolume {
                volume_id: VolumeId::new(image.to_string()),
                device: d.non_empty("TARGET").map(str::to_owned),
                delete_on_termination: yes(d.get(ATTR_DELETE_ON_TERMINATION)),
            })
        })
        .collect()
}

/// Maps a persistent image's STATE, and a hot-plug of it under way, to the volume
/// state (the OpenNebula column of [`VolumeState`]'s table).
///
/// | cms | image STATE | hot-plug of its disk |
/// |---|---|---|
/// | `creating` | 0 INIT, 4 LOCKED | |
/// | `available` | 1 READY; 6 CLONE (a snapshot of it under way: oned refuses to attach it until the copy is made) | none |
/// | `attaching` | 1 READY, 2 USED, 8 USED_PERS | an attach (VM in HOTPLUG or HOTPLUG_PROLOG_POWEROFF) |
/// | `in_use` | 2 USED, 8 USED_PERS, 9 LOCKED_USED, 10 LOCKED_USED_PERS | none |
/// | `detaching` | 2 USED, 8 USED_PERS | a detach (VM in HOTPLUG or HOTPLUG_EPILOG_POWEROFF) |
/// | `deleting` | 7 DELETE | |
/// | `error` | 3 DISABLED, 5 ERROR | |
/// | `unknown` | any other | |
pub fn map_volume_state(state: i64, hotplug: Option<Hotplug>) -> VolumeState {
    use VolumeState::*;
    match (state, hotplug) {
        (1 | 2 | 8, Some(Hotplug::Attach)) => Attaching,
        (2 | 8, Some(Hotplug::Detach)) => Detaching,
        (0 | 4, _) => Creating,
        (1 | 6, _) => Available,
        (2 | 8 | 9 | 10, _) => InUse,
        (7, _) => Deleting,
        (3 | 5, _) => Error,
        _ => Unknown,
    }
}

/// Maps a non-persistent DATABLOCK's STATE to the snapshot state and progress.
///
/// | cms | image STATE | progress |
/// |---|---|---|
/// | `pending` | 0 INIT, 4 LOCKED (the copy under way), 6 CLONE | 0 (OpenNebula reports none) |
/// | `completed` | 1 READY, 2 USED (a volume being made from it) | 100 |
/// | `error` | 3 DISABLED, 5 ERROR | 0 |
/// | `unknown` | 7 DELETE, any other | 0 |
pub fn map_snapshot_state(state: i64) -> (SnapshotState, u8) {
    match state {
        0 | 4 | 6 => (SnapshotState::Pending, 0),
        1 | 2 => (SnapshotState::Completed, 100),
        3 | 5 => (SnapshotState::Error, 0),
        _ => (SnapshotState::Unknown, 0),
    }
}

/// GiB, rounded up, from MiB.
fn gib_of(mb: i64) -> u32 {
    u32::try_from((mb.max(0) + 1023) / 1024).unwrap_or(u32::MAX)
}

fn created(regtime: i64) -> Option<DateTime<Utc>> {
    (regtime > 0)
        .then(|| DateTime::<Utc>::from_timestamp(regtime, 0))
        .flatten()
}

/// The clusters' datastores, to place volumes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Placement {
    /// Cluster id -> its datastores, by cluster id.
    clusters: Vec<(i64, Vec<i64>)>,
}

impl Placement {
    fn has(&self, cluster: i64, datastore: i64) -> bool {
        self.clusters
            .iter()
            .any(|(c, ds)| *c == cluster && ds.contains(&datastore))
    }

    /// The location of an image: the cluster it was made for, while that cluster still
    /// has its datastore, else the first cluster that has it.
    fn location_of(&self, img: &OneImage) -> Option<LocationId> {
        let asked = img.template.non_empty(ATTR_LOCATION).and_then(parse_oid);
        asked
            .filter(|c| self.has(*c, img.datastore_id))
            .or_else(|| {
                self.clusters
                    .iter()
                    .find(|(_, ds)| ds.contains(&img.datastore_id))
                    .map(|(c, _)| *c)
            })
            .map(|c| LocationId::new(c.to_string()))
    }
}

/// The cms attributes of a volume or snapshot, in the order they are written.
#[derive(Clone, Debug, Default)]
struct CmsAttrs {
    name: String,
    owner: Option<String>,
    tags: Tags,
    client_token: Option<String>,
    request_hash: Option<String>,
    location: Option<i64>,
    snapshot_id: Option<i64>,
    volume_id: Option<i64>,
    description: Option<String>,
}

impl CmsAttrs {
    /// The attributes with a value (OpenNebula drops empty ones).
    fn elements(&self) -> Vec<Element> {
        let mut v = vec![];
        if let Some(d) = self.description.as_ref().filter(|d| !d.is_empty()) {
            v.push(Element::leaf("DESCRIPTION", d.clone()));
        }
        if !self.name.is_empty() {
            v.push(Element::leaf(ATTR_NAME, self.name.clone()));
        }
        let mut opt = |k: &str, val: Option<String>| {
            if let Some(val) = val.filter(|x| !x.is_empty()) {
                v.push(Element::leaf(k, val));
            }
        };
        opt(ATTR_OWNER, self.owner.clone());
        opt(
            ATTR_TAGS,
            (!self.tags.is_empty()).then(|| serde_json::to_string(&self.tags).unwrap_or_default()),
        );
        opt(ATTR_CLIENT_TOKEN, self.client_token.clone());
        opt(ATTR_REQUEST_HASH, self.request_hash.clone());
        opt(ATTR_LOCATION, self.location.map(|l| l.to_string()));
        opt(ATTR_SNAPSHOT_ID, self.snapshot_id.map(|l| l.to_string()));
        opt(ATTR_VOLUME_ID, self.volume_id.map(|l| l.to_string()));
        v
    }
}

/// Every attribute the driver keeps on images, which a copy must not inherit.
const CMS_IMAGE_ATTRS: [&str; 11] = [
    ATTR_NAME,
    ATTR_OWNER,
    ATTR_TAGS,
    ATTR_CLIENT_TOKEN,
    ATTR_REQUEST_HASH,
    ATTR_LOCATION,
    ATTR_SNAPSHOT_ID,
    ATTR_VOLUME_ID,
    ATTR_INSTANCE,
    "DESCRIPTION",
    "SAVED_VM_ID",
];

fn not_a(kind: &str, id: impl fmt::Display, what: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("{kind} `{id}` not found: image {id} is {what}"),
    )
    .with_resource(format!("{kind} {id}"))
}

impl OpenNebulaDriver {
    /// The cms view of a persistent DATABLOCK image, with the VMs' disks that hold it.
    pub fn volume_of(
        &self,
        img: &OneImage,
        uses: &[DiskUse],
        location: Option<LocationId>,
    ) -> Volume {
        let hotplug = uses.iter().find_map(|u| u.hotplug);
        let mut raw = image_state_name(img.state);
        if hotplug.is_some() {
            raw.push_str("/HOTPLUG");
        }
        let t = &img.template;
        Volume {
            id: VolumeId::new(img.id.to_string()),
            name: t
                .get(ATTR_NAME)
                .map(str::to_owned)
                .unwrap_or_else(|| img.name.clone()),
            size_gib: gib_of(img.size_mb),
            state: map_volume_state(img.state, hotplug),
            raw_state: raw,
            location_id: location,
            attachments: uses
                .iter()
                .map(|u| VolumeAttachment {
                    instance_id: InstanceId::new(u.vm.to_string()),
                    device: u.target.clone(),
                    delete_on_termination: u.delete_on_termination,
                })
                .collect(),
            snapshot_id: t
                .non_empty(ATTR_SNAPSHOT_ID)
                .map(|s| SnapshotId::new(s.trim())),
            tags: tags_of(t),
            created_at: created(img.regtime),
            client_token: t.non_empty(ATTR_CLIENT_TOKEN).map(str::to_owned),
            owner: t.non_empty(ATTR_OWNER).map(str::to_owned),
        }
    }

    /// The cms view of a non-persistent DATABLOCK image.
    pub fn snapshot_of(&self, img: &OneImage) -> Snapshot {
        let t = &img.template;
        let (state, progress) = map_snapshot_state(img.state);
        Snapshot {
            id: SnapshotId::new(img.id.to_string()),
            volume_id: t.non_empty(ATTR_VOLUME_ID).map(|v| VolumeId::new(v.trim())),
            name: t
                .get(ATTR_NAME)
                .map(str::to_owned)
                .unwrap_or_else(|| img.name.clone()),
            description: t.non_empty("DESCRIPTION").map(str::to_owned),
            size_gib: gib_of(img.size_mb),
            state,
            raw_state: image_state_name(img.state),
            progress,
            created_at: created(img.regtime),
            tags: tags_of(t),
            owner: t.non_empty(ATTR_OWNER).map(str::to_owned),
        }
    }

    /// The clusters and their datastores (remembered for [`CLUSTERS_TTL`]).
    pub(crate) async fn placement(&self) -> Result<Placement> {
        if let Some((at, p)) = self
            .inner
            .placement
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            if at.elapsed() < CLUSTERS_TTL {
                return Ok(p);
            }
        }
        let pool = self
            .call_doc(
                "one.clusterpool.info",
                &[],
                &Target::pool("cluster"),
                ClusterPool::from_xml,
            )
            .await?;
        let p = Placement {
            clusters: pool
                .clusters
                .into_iter()
                .map(|c| (c.id, c.datastores))
                .collect(),
        };
        *self
            .inner
            .placement
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), p.clone()));
        Ok(p)
    }

    /// One window of the user's own images (`one.imagepool.info`, filter -3).
    pub(crate) async fn own_images(&self, offset: u64, size: u64) -> Result<Vec<OneImage>> {
        self.pool_window_of("one.imagepool.info", "image", -3, offset, size, |x| {
            ImagePool::from_xml(x).map(|p| p.images)
        })
        .await
    }

    /// Image `iid` as `kind` (`volume`, `snapshot`): the user's image that `is` says
    /// it is, else `NotFound` naming what it is.
    async fn image_as(
        &self,
        iid: i64,
        kind: &str,
        target: Target,
        is: fn(&OneImage) -> bool,
    ) -> Result<OneImage> {
        let img = self
            .call_doc(
                "one.image.info",
                &[Value::Int(iid), Value::Bool(false)],
                &target,
                OneImage::from_xml,
            )
            .await?;
        if img.uname != self.inner.client.username() {
            return Err(not_a(kind, iid, "another user's"));
        }
        if !is(&img) {
            let what = match (img.image_type, img.persistent) {
                (DATABLOCK, true) => "a volume (a persistent DATABLOCK)".to_owned(),
                (DATABLOCK, false) => "a snapshot (a non-persistent DATABLOCK)".to_owned(),
                (t, _) => format!("a {} image", image_type_name(t)),
            };
            return Err(not_a(kind, iid, &what));
        }
        Ok(img)
    }

    pub(crate) async fn volume_image(&self, id: &VolumeId) -> Result<OneImage> {
        let iid = parse_oid(id.as_str()).ok_or_else(|| Error::not_found("volume", id))?;
        self.image_as(iid, "volume", Target::volume(iid), is_volume)
            .await
    }

    pub(crate) async fn snapshot_image(&self, id: &SnapshotId) -> Result<OneImage> {
        let iid = parse_oid(id.as_str()).ok_or_else(|| Error::not_found("snapshot", id))?;
        self.image_as(iid, "snapshot", Target::snapshot(iid), is_snapshot)
            .await
    }

    /// The uses of a volume: the disks of the VMs its VMS names; `None` when a VM no
    /// longer holds it (a detach ended since the image was read: read it again).
    async fn uses_of(&self, img: &OneImage) -> Result<Option<Vec<DiskUse>>> {
        let mut uses = Vec::with_capacity(img.vms.len());
        for vm in &img.vms {
            match self.vm_info(*vm).await {
                Ok(doc) => match disk_use(&doc, img.id) {
                    Some(u) => uses.push(u),
                    None => return Ok(None),
                },
                // Another user's VM (a shared volume): known by its id only.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
                    uses.push(DiskUse::bare(*vm))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(uses))
    }

    /// The image and its uses, read consistently (the image again when a use ended
    /// between the reads).
    async fn image_with_uses(&self, mut img: OneImage) -> Result<(OneImage, Vec<DiskUse>)> {
        for _ in 0..3 {
            if let Some(uses) = self.uses_of(&img).await? {
                return Ok((img, uses));
            }
            img = self
                .call_doc(
                    "one.image.info",
                    &[Value::Int(img.id), Value::Bool(false)],
                    &Target::volume(img.id),
                    OneImage::from_xml,
                )
                .await?;
        }
        let uses = img.vms.iter().map(|v| DiskUse::bare(*v)).collect();
        Ok((img, uses))
    }

    /// The volume of image `img` as it is now, after deleting it when it was made with
    /// a VM to go with it and that VM is done (see the module documentation).
    pub(crate) async fn load_volume(&self, img: OneImage, placement: &Placement) -> Result<Volume> {
        let (mut img, uses) = self.image_with_uses(img).await?;
        if img.state == READY && img.vms.is_empty() {
            if let Some(vm) = img.template.non_empty(ATTR_INSTANCE).and_then(parse_oid) {
                if self.reap(&img, vm).await? {
                    img.state = IMAGE_DELETE;
                }
            }
        }
        let location = placement.location_of(&img);
        Ok(self.volume_of(&img, &uses, location))
    }

    /// Deletes the volume `img`, released, when VM `vm` is done and named it to go with
    /// it; whether it did.
    async fn reap(&self, img: &OneImage, vm: i64) -> Result<bool> {
        let doc = match self.vm_info(vm).await {
            Ok(doc) => doc,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let goes =
            doc.state == DONE && disk_use(&doc, img.id).is_some_and(|u| u.delete_on_termination);
        if !goes {
            return Ok(false);
        }
        match self
            .call(
                "one.image.delete",
                &[Value::Int(img.id)],
                &Target::volume(img.id),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(
                    volume = img.id,
                    vm,
                    "deleted a volume that went with its instance"
                );
                Ok(true)
            }
            // Someone else is on it (another reader deleted it first).
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidState) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// One page of the user's own images of one kind (`is_kind`: volumes, or
    /// snapshots) that pass `filter`, with `prefix.cursor` page tokens.
    async fn own_images_page<Id: From<String> + PartialEq>(
        &self,
        filter: &cms_core::ResourceFilter<Id>,
        page: &PageRequest,
        op: Operation,
        prefix: &str,
        is_kind: fn(&OneImage) -> bool,
    ) -> Result<(Vec<OneImage>, Option<PageToken>)> {
        let window = if filter_is_empty(filter) {
            1
        } else {
            FILTER_WINDOW
        };
        let found = scan(
            |offset, size| self.own_images(offset, size),
            phase_cursor(page, op, prefix)?,
            page_limit(page),
            window,
            FILTER_BUDGET,
            |i: &OneImage| {
                is_kind(i)
                    && filter.matches(
                        &Id::from(i.id.to_string()),
                        i.template.non_empty(ATTR_OWNER),
                        &tags_of(&i.template),
                    )
            },
        )
        .await?;
        let next = found
            .next
            .map(|c| PageToken::new(format!("{prefix}.{}", c.encode())));
        Ok((found.items, next))
    }

    // ---- volumes ----

    pub(crate) async fn volumes_page(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
    ) -> Result<Page<Volume>> {
        let (found, next) = self
            .own_images_page(filter, page, Operation::ListVolumes, "vol", is_volume)
            .await?;
        let placement = self.placement().await?;
        let placement = &placement;
        let items: Vec<Volume> = futures::stream::iter(found)
            .map(|img| self.load_volume(img, placement))
            .buffered(PARALLEL_INFO)
            .try_collect()
            .await?;
        Ok(Page { items, next })
    }

    pub(crate) async fn get_volume_(&self, id: &VolumeId) -> Result<Volume> {
        let img = self.volume_image(id).await?;
        let placement = self.placement().await?;
        self.load_volume(img, &placement).await
    }

    /// The user's volume made with client token `token`, if any.
    async fn volume_by_token(&self, token: &str) -> Result<Option<OneImage>> {
        let found = scan(
            |offset, size| self.own_images(offset, size),
            None,
            1,
            TOKEN_WINDOW,
            usize::MAX,
            |i: &OneImage| is_volume(i) && i.template.get(ATTR_CLIENT_TOKEN) == Some(token),
        )
        .await?;
        Ok(found.items.into_iter().next())
    }

    /// Checks that the volume datastore is in cluster `location`.
    async fn check_location(&self, location: &LocationId) -> Result<i64> {
        let cid =
            parse_oid(location.as_str()).ok_or_else(|| Error::not_found("location", location))?;
        let placement = self.placement().await?;
        let ds = self.inner.config.volume_datastore;
        if !placement.clusters.iter().any(|(c, _)| *c == cid) {
            return Err(Error::not_found("location", location));
        }
        if !placement.has(cid, ds) {
            return Err(Error::invalid_argument(
                "location_id",
                format!(
                    "the volume datastore `{ds}` (configuration key `volume_datastore`) is not \
                     in cluster `{cid}`, so volumes cannot be made there"
                ),
            ));
        }
        Ok(cid)
    }

    /// The snapshot a volume is made from, checked: the user's, completed, and of the
    /// size asked for (when one is).
    async fn source_snapshot(&self, id: &SnapshotId, size_gib: Option<u32>) -> Result<OneImage> {
        let snap = self.snapshot_image(id).await?;
        let (state, _) = map_snapshot_state(snap.state);
        if state != SnapshotState::Completed {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "snapshot `{id}` is {state} ({}); a volume can be made from it once it is completed",
                    image_state_name(snap.state)
                ),
            )
            .with_resource(format!("snapshot {id}"))
            .with_context("state", state.as_str()));
        }
        let have = gib_of(snap.size_mb);
        match size_gib {
            Some(s) if s < have => Err(Error::invalid_argument(
                "size_gib",
                format!("{s} GiB is below the {have} GiB of snapshot `{id}`"),
            )),
            Some(s) if s > have => Err(Error::invalid_argument(
                "size_gib",
                format!(
                    "OpenNebula copies snapshot `{id}` at its size, {have} GiB, and resizes \
                     disks only through a VM; leave size_gib out or give {have}"
                ),
            )),
            _ => Ok(snap),
        }
    }

    /// `one.image.allocate` of `template` in `datastore`, with another NAME (the given
    /// one and a suffix) when the NAME is taken; an error about the datastore names the
    /// configuration key.
    async fn allocate_image(
        &self,
        mut template: Vec<Element>,
        name: &str,
        datastore: i64,
    ) -> Result<i64> {
        set_name(&mut template, name.to_owned());
        let mut retried = false;
        loop {
            let r = self
                .call_id(
                    "one.image.allocate",
                    &[
                        Value::Str(template_xml(template.clone())),
                        Value::Int(datastore),
                        Value::Bool(false),
                    ],
                    &Target::new_object("image", name),
                )
                .await;
            match r {
                Ok(id) => return Ok(id),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !retried => {
                    retried = true;
                    set_name(&mut template, suffixed(name));
                }
                Err(e) if speaks_of_datastore(&e) => {
                    return Err(Error::invalid_argument(
                        "volume_datastore",
                        format!(
                            "OpenNebula cannot make volumes in datastore `{datastore}` \
                             (configuration key `volume_datastore`): {}",
                            e.context_value("opennebula_message").unwrap_or(e.message())
                        ),
                    )
                    .with_source(e))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `one.image.clone` of `source` as `name` (with a suffix when the name is taken),
    /// then its persistence set and its cms attributes written in place of the ones it
    /// copied. A failure after the clone deletes the copy.
    async fn copy_image(
        &self,
        source: &OneImage,
        name: &str,
        persistent: bool,
        attrs: &CmsAttrs,
    ) -> Result<i64> {
        let target = Target::image(source.id);
        let mut one = name.to_owned();
        let mut retried = false;
        let id = loop {
            match self
                .call_id(
                    "one.image.clone",
                    &[
                        Value::Int(source.id),
                        Value::Str(one.clone()),
                        Value::Int(-1),
                    ],
                    &target,
                )
                .await
            {
                Ok(id) => break id,
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !retried => {
                    retried = true;
                    one = suffixed(name);
                }
                Err(e) => return Err(e),
            }
        };
        let finish = async {
            self.call(
                "one.image.persistent",
                &[Value::Int(id), Value::Bool(persistent)],
                &Target::image(id),
            )
            .await?;
            let copy = self
                .call_doc(
                    "one.image.info",
                    &[Value::Int(id), Value::Bool(false)],
                    &Target::image(id),
                    OneImage::from_xml,
                )
                .await?;
            let mut template: Vec<Element> = copy
                .template
                .to_elements()
                .into_iter()
                .filter(|e| !CMS_IMAGE_ATTRS.contains(&e.name.as_str()))
                .collect();
            template.extend(attrs.elements());
            self.call(
                "one.image.update",
                &[
                    Value::Int(id),
                    Value::Str(template_xml(template)),
                    Value::Int(0),
                ],
                &Target::image(id),
            )
            .await
        };
        if let Err(e) = finish.await {
            if let Err(d) = self
                .call(
                    "one.image.delete",
                    &[Value::Int(id), Value::Bool(false)],
                    &Target::image(id),
                )
                .await
            {
                tracing::warn!(image = id, error = %d, "cannot delete a copy left half made");
            }
            return Err(e);
        }
        Ok(id)
    }

    pub(crate) async fn create_volume_(&self, spec: &VolumeSpec) -> Result<Volume> {
        cms_core::check_volume_spec(spec)?;
        let _guard = match &spec.client_token {
            Some(t) => Some(self.inner.token_locks.lock(&format!("volume:{t}")).await),
            None => None,
        };
        let hash = hash_of(&VolumeSpec {
            client_token: None,
            ..spec.clone()
        });
        // Reads only, until the allocation.
        let prepared = async {
            if let Some(token) = &spec.client_token {
                if let Some(img) = self.volume_by_token(token).await? {
                    if img.template.get(ATTR_REQUEST_HASH) != Some(hash.as_str()) {
                        return Err(token_mismatch(token, "volume", img.id));
                    }
                    return Ok((Some(img), None, None));
                }
            }
            let location = match &spec.location_id {
                Some(l) => Some(self.check_location(l).await?),
                None => None,
            };
            let snapshot = match &spec.snapshot_id {
                Some(s) => Some(self.source_snapshot(s, spec.size_gib).await?),
                None => None,
            };
            Ok((None, location, snapshot))
        }
        .await
        .map_err(|e: Error| e.not_executed(true))?;
        let (existing, location, snapshot) = prepared;
        let placement = self.placement().await?;
        if let Some(img) = existing {
            return self.load_volume(img, &placement).await;
        }
        let attrs = CmsAttrs {
            name: spec.name.clone(),
            owner: spec.owner.clone(),
            tags: spec.tags.clone(),
            client_token: spec.client_token.clone(),
            request_hash: Some(hash),
            location,
            snapshot_id: snapshot.as_ref().map(|s| s.id),
            ..CmsAttrs::default()
        };
        let one = one_name(&spec.name, "volume");
        let id = match &snapshot {
            Some(snap) => self.copy_image(snap, &one, true, &attrs).await?,
            None => {
                let size = i64::from(spec.size_gib.unwrap_or(1)) * 1024;
                let mut t = vec![
                    Element::leaf("TYPE", "DATABLOCK"),
                    Element::leaf("PERSISTENT", "YES"),
                    Element::leaf("SIZE", size.to_string()),
                ];
                t.extend(attrs.elements());
                self.allocate_image(t, &one, self.inner.config.volume_datastore)
                    .await?
            }
        };
        let img = self
            .image_as(id, "volume", Target::volume(id), is_volume)
            .await?;
        self.load_volume(img, &placement).await
    }

    pub(crate) async fn delete_volume_(&self, id: &VolumeId) -> Result<()> {
        let img = self.volume_image(id).await?;
        if img.state == IMAGE_DELETE {
            return Ok(());
        }
        if let Some(vm) = img.vms.first() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot delete volume `{id}`: it is attached to instance `{vm}` ({}); detach it first",
                    image_state_name(img.state)
                ),
            )
            .with_resource(format!("volume {id}"))
            .with_context("state", VolumeState::InUse.as_str()));
        }
        self.call(
            "one.image.delete",
            &[Value::Int(img.id), Value::Bool(false)],
            &Target::volume(img.id),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn attach_volume_(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
    ) -> Result<Volume> {
        let op_refusal = |why: String, state: VolumeState| {
            Error::new(
                ErrorKind::InvalidState,
                format!("cannot attach volume `{id}` to instance `{instance}`: {why}"),
            )
            .with_resource(format!("volume {id}"))
            .with_context("state", state.as_str())
        };
        if let Some(d) = device {
            cms_core::check_device(d)?;
        }
        let vid =
            parse_oid(instance.as_str()).ok_or_else(|| Error::not_found("instance", instance))?;
        let img = self.volume_image(id).await?;
        let vm = self.vm_info(vid).await?;
        let placement = self.placement().await?;
        let (img, uses) = self.image_with_uses(img).await?;
        let now = self.volume_of(&img, &uses, placement.location_of(&img));
        if let Some(u) = uses.first() {
            if u.vm == vid {
                return Ok(now);
            }
            return Err(op_refusal(
                format!("it is attached to instance `{}`", u.vm),
                now.state,
            ));
        }
        if now.state != VolumeState::Available {
            return Err(op_refusal(
                format!(
                    "it is {} ({}); only an available volume can be attached",
                    now.state, now.raw_state
                ),
                now.state,
            ));
        }
        let hotpluggable = (vm.state == ACTIVE && vm.lcm_state == 3) || vm.state == 8;
        if !hotpluggable {
            let state = map_state(vm.state, vm.lcm_state, vm.last_history().map(|h| h.action));
            return Err(op_refusal(
                format!(
                    "the instance is {state} ({}); OpenNebula hot-plugs disks only into RUNNING or \
                     POWEROFF VMs",
                    raw_state(vm.state, vm.lcm_state)
                ),
                now.state,
            )
            .temporary(state.is_transitional()));
        }
        let mut disk = vec![("IMAGE_ID", img.id.to_string())];
        if let Some(d) = device {
            disk.push(("TARGET", target_of(d)));
        }
        self.call(
            "one.vm.attach",
            &[
                Value::Int(vid),
                Value::Str(template_xml(vec![vector("DISK", disk)])),
            ],
            &Target::vm(vid),
        )
        .await?;
        self.get_volume_(id).await
    }

    pub(crate) async fn detach_volume_(&self, id: &VolumeId) -> Result<Volume> {
        let img = self.volume_image(id).await?;
        let placement = self.placement().await?;
        let Some(vm_id) = img.vms.first().copied() else {
            return self.load_volume(img, &placement).await;
        };
        let vm = self.vm_info(vm_id).await?;
        let Some(u) = disk_use(&vm, img.id) else {
            // Detached since the image was read.
            return self.get_volume_(id).await;
        };
        if u.hotplug == Some(Hotplug::Detach) {
            return self.load_volume(img, &placement).await;
        }
        let Some(disk_id) = u.disk_id else {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("VM `{vm_id}` names volume `{id}` in a DISK without DISK_ID"),
            ));
        };
        let hotpluggable = (vm.state == ACTIVE && vm.lcm_state == 3) || vm.state == 8;
        if !hotpluggable {
            let state = map_state(vm.state, vm.lcm_state, vm.last_history().map(|h| h.action));
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot detach volume `{id}` from instance `{vm_id}`: the instance is {state} \
                     ({}); OpenNebula hot-plugs disks only out of RUNNING or POWEROFF VMs",
                    raw_state(vm.state, vm.lcm_state)
                ),
            )
            .with_resource(format!("volume {id}"))
            .temporary(state.is_transitional() || u.hotplug.is_some()));
        }
        self.call(
            "one.vm.detach",
            &[Value::Int(vm_id), Value::Int(disk_id)],
            &Target::vm(vm_id),
        )
        .await?;
        self.get_volume_(id).await
    }

    // ---- snapshots ----

    pub(crate) async fn snapshots_page(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        let (found, next) = self
            .own_images_page(filter, page, Operation::ListSnapshots, "snap", is_snapshot)
            .await?;
        Ok(Page {
            items: found.iter().map(|i| self.snapshot_of(i)).collect(),
            next,
        })
    }

    pub(crate) async fn create_snapshot_(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        cms_core::check_snapshot_spec(spec)?;
        let volume = self
            .volume_image(&spec.volume_id)
            .await
            .map_err(|e| e.not_executed(true))?;
        let state = map_volume_state(volume.state, None);
        if !volume.vms.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot snapshot volume `{}`: it is attached to instance `{}` ({}); OpenNebula \
                     copies a persistent image only while no VM uses it, detach it first",
                    spec.volume_id,
                    volume.vms[0],
                    image_state_name(volume.state)
                ),
            )
            .with_resource(format!("volume {}", spec.volume_id))
            .with_context("state", state.as_str())
            .not_executed(true));
        }
        // OpenNebula clones a persistent image while it is READY, or CLONE (another
        // copy under way).
        if !matches!(volume.state, READY | IMAGE_CLONE) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot snapshot volume `{}`: it is {state} ({}){}",
                    spec.volume_id,
                    image_state_name(volume.state),
                    if state.is_transitional() {
                        "; wait until it is available"
                    } else {
                        ""
                    }
                ),
            )
            .with_resource(format!("volume {}", spec.volume_id))
            .with_context("state", state.as_str())
            .temporary(state.is_transitional())
            .not_executed(true));
        }
        let attrs = CmsAttrs {
            name: spec.name.clone(),
            owner: spec.owner.clone(),
            tags: spec.tags.clone(),
            volume_id: Some(volume.id),
            description: spec.description.clone(),
            ..CmsAttrs::default()
        };
        let one = one_name(&spec.name, "snapshot");
        let id = self.copy_image(&volume, &one, false, &attrs).await?;
        let img = self
            .image_as(id, "snapshot", Target::snapshot(id), is_snapshot)
            .await?;
        Ok(self.snapshot_of(&img))
    }

    pub(crate) async fn delete_snapshot_(&self, id: &SnapshotId) -> Result<()> {
        let img = self.snapshot_image(id).await?;
        if img.state == IMAGE_DELETE {
            return Ok(());
        }
        self.call(
            "one.image.delete",
            &[Value::Int(img.id), Value::Bool(false)],
            &Target::snapshot(img.id),
        )
        .await?;
        Ok(())
    }

    // ---- volumes made with an instance ----

    /// Checks the volumes an instance spec asks for (the snapshots they come from), and
    /// returns the snapshots, by position.
    pub(crate) async fn prepare_block_devices(
        &self,
        devices: &[BlockDevice],
    ) -> Result<Vec<Option<OneImage>>> {
        let mut out = Vec::with_capacity(devices.len());
        for d in devices {
            out.push(match &d.snapshot_id {
                Some(s) => Some(self.source_snapshot(s, d.size_gib).await?),
                None => None,
            });
        }
        Ok(out)
    }

    /// Makes the volumes of an instance spec and returns their DISK vectors; on a
    /// failure, deletes the ones made.
    pub(crate) async fn make_block_devices(
        &self,
        spec: &InstanceSpec,
        snapshots: &[Option<OneImage>],
    ) -> Result<(Vec<i64>, Vec<Element>)> {
        let mut made = Vec::new();
        let mut disks = Vec::new();
        for (i, (d, snap)) in spec.volumes.iter().zip(snapshots).enumerate() {
            let attrs = CmsAttrs {
                owner: spec.owner.clone(),
                snapshot_id: snap.as_ref().map(|s| s.id),
                ..CmsAttrs::default()
            };
            let base = if spec.name.is_empty() {
                format!("cms-volume-{}", random_hex())
            } else {
                one_name(
                    &format!(
                        "{}-{}",
                        spec.name,
                        d.device
                            .as_deref()
                            .map(target_of)
                            .unwrap_or_else(|| format!("disk{}", i + 1))
                    ),
                    "volume",
                )
            };
            let r = match snap {
                Some(s) => self.copy_image(s, &base, true, &attrs).await,
                None => {
                    let size = i64::from(d.size_gib.unwrap_or(1)) * 1024;
                    let mut t = vec![
                        Element::leaf("TYPE", "DATABLOCK"),
                        Element::leaf("PERSISTENT", "YES"),
                        Element::leaf("SIZE", size.to_string()),
                    ];
                    t.extend(attrs.elements());
                    self.allocate_image(t, &base, self.inner.config.volume_datastore)
                        .await
                }
            };
            match r {
                Ok(id) => {
                    made.push(id);
                    let mut disk = vec![("IMAGE_ID", id.to_string())];
                    if let Some(dev) = &d.device {
                        disk.push(("TARGET", target_of(dev)));
                    }
                    disk.push((
                        ATTR_DELETE_ON_TERMINATION,
                        if d.delete_on_termination { "YES" } else { "NO" }.to_owned(),
                    ));
                    disks.push(vector("DISK", disk));
                }
                Err(e) => {
                    self.drop_images(&made).await;
                    return Err(e);
                }
            }
        }
        Ok((made, disks))
    }

    /// Deletes images made for a create that failed (best effort).
    pub(crate) async fn drop_images(&self, ids: &[i64]) {
        for id in ids {
            if let Err(e) = self
                .call(
                    "one.image.delete",
                    &[Value::Int(*id), Value::Bool(false)],
                    &Target::image(id),
                )
                .await
            {
                tracing::warn!(image = id, error = %e, "cannot delete a volume of a failed create");
            }
        }
    }

    /// Marks the volumes made with VM `vm` that go with it (`CMS_INSTANCE`), so that
    /// they are deleted once it is done (best effort: unmarked, they stay).
    pub(crate) async fn mark_block_devices(&self, vm: i64, spec: &InstanceSpec, made: &[i64]) {
        for (id, d) in made.iter().zip(&spec.volumes) {
            if !d.delete_on_termination {
                continue;
            }
            let xml = template_xml(vec![Element::leaf(ATTR_INSTANCE, vm.to_string())]);
            if let Err(e) = self
                .call(
                    "one.image.update",
                    &[Value::Int(*id), Value::Str(xml), Value::Int(1)],
                    &Target::volume(id),
                )
                .await
            {
                tracing::warn!(volume = id, vm, error = %e, "cannot mark a volume to go with its instance; it will stay");
            }
        }
    }
}

/// The TARGET OpenNebula takes for a device: `/dev/vdb` is `vdb`.
pub(crate) fn target_of(device: &str) -> String {
    device.strip_prefix("/dev/").unwrap_or(device).to_owned()
}

fn set_name(template: &mut Vec<Element>, name: String) {
    template.retain(|e| e.name != "NAME");
    template.insert(0, Element::leaf("NAME", name));
}

fn speaks_of_datastore(e: &Error) -> bool {
    let m = e
        .context_value("opennebula_message")
        .unwrap_or_default()
        .to_ascii_lowercase();
    m.contains("datastore")
}

fn filter_is_empty<Id>(f: &cms_core::ResourceFilter<Id>) -> bool {
    f.ids.is_empty() && f.owner.is_none() && f.tags.is_empty()
}

/// `prefix.cursor` page tokens of a one-phase listing.
fn phase_cursor(page: &PageRequest, op: Operation, prefix: &str) -> Result<Option<Cursor>> {
    match &page.token {
        None => Ok(None),
        Some(t) => t
            .as_str()
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(Cursor::decode)
            .map(Some)
            .ok_or_else(|| bad_token(op, t)),
    }
}

fn token_mismatch(token: &str, kind: &str, id: i64) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "client token `{token}` was already used to create {kind} `{id}` with different \
             parameters; repeat that request unchanged, or use a new client token"
        ),
    )
    .with_resource(format!("{kind} {id}"))
    .with_context("argument", "client_token")
    .with_context("reason", "idempotent_parameter_mismatch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_states_follow_the_table() {
        use VolumeState::*;
        let cases = [
            (0, None, Creating),
            (4, None, Creating),
            (6, None, Available),
            (1, None, Available),
            (1, Some(Hotplug::Attach), Attaching),
            (8, Some(Hotplug::Attach), Attaching),
            (8, None, InUse),
            (2, None, InUse),
            (9, None, InUse),
            (10, None, InUse),
            (8, Some(Hotplug::Detach), Detaching),
            (7, None, Deleting),
            (5, None, Error),
            (3, None, Error),
            (11, None, Unknown),
        ];
        for (s, h, want) in cases {
            assert_eq!(map_volume_state(s, h), want, "{s} {h:?}");
        }
        assert_eq!(map_snapshot_state(4), (SnapshotState::Pending, 0));
        assert_eq!(map_snapshot_state(1), (SnapshotState::Completed, 100));
        assert_eq!(map_snapshot_state(5).0, SnapshotState::Error);
        assert_eq!(map_snapshot_state(7).0, SnapshotState::Unknown);
    }

    #[test]
    fn devices_become_targets() {
        assert_eq!(target_of("/dev/vdb"), "vdb");
        assert_eq!(target_of("sdf"), "sdf");
        assert_eq!(gib_of(1024), 1);
        assert_eq!(gib_of(1025), 2);
        assert_eq!(gib_of(0), 0);
    }
}
