//! Checks of the families a backend may lack: volumes and snapshots, image capture,
//! security groups, public addresses. Each is chosen by the declared capabilities and
//! relies only on the [`Driver`](crate::Driver) contract: states are waited for (a
//! backend may take its time), rules are compared by containment (a backend may add
//! its own to a new group), and what a check made is deleted at its end, or by the
//! final sweep ([`Ctx::sweep`]) when it failed half way.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;

use super::{expect_kind, skip, Check, Ctx, Fail};
use crate::model::*;
use crate::{ErrorKind, Result};

/// What the checks made beyond instances (which [`Ctx::create`] keeps), for the final
/// sweep.
#[derive(Debug, Default)]
pub(super) struct Made {
    volumes: Vec<VolumeId>,
    snapshots: Vec<SnapshotId>,
    images: Vec<ImageId>,
    groups: Vec<SecurityGroupId>,
    addresses: Vec<AddressId>,
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Fail::Failed(format!($($msg)+)));
        }
    };
}

const RUN_TAG: &str = "cms-kit-run";

impl Ctx<'_> {
    fn made(&self) -> std::sync::MutexGuard<'_, Made> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name(&self, what: &str) -> String {
        format!("kit-{}-{what}", self.run)
    }

    /// Tags marking what this run made, when the family keeps tags.
    fn run_tags(&self, tags: bool) -> Tags {
        let mut t = Tags::new();
        if tags {
            t.insert(RUN_TAG.into(), self.run.clone());
        }
        t
    }

    /// A filter on this run's tag (every resource when the family keeps no tags).
    fn run_filter<Id>(&self, tags: bool) -> ResourceFilter<Id> {
        let mut f = ResourceFilter::default();
        if tags {
            f.tags.insert(RUN_TAG.into(), Some(self.run.clone()));
        }
        f
    }

    fn volume_spec(&self, name: &str) -> VolumeSpec {
        VolumeSpec {
            tags: self.run_tags(self.caps().volumes.tags),
            ..VolumeSpec::new(self.config.volume_size_gib).name(self.name(name))
        }
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        let v = self.cloud.create_volume(spec).await?;
        self.made().volumes.push(v.id.clone());
        Ok(v)
    }

    /// A volume made and waited for until `available`.
    async fn available_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        let v = self.create_volume(spec).await?;
        self.wait_volume(&v.id, VolumeState::Available).await
    }

    async fn wait_volume(&self, id: &VolumeId, state: VolumeState) -> Result<Volume> {
        self.cloud
            .wait_for_volume_state(id, state, self.config.state_timeout)
            .await
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        let s = self.cloud.create_snapshot(spec).await?;
        self.made().snapshots.push(s.id.clone());
        Ok(s)
    }

    async fn create_image(&self, spec: &ImageSpec) -> Result<Image> {
        let i = self.cloud.create_image(spec).await?;
        self.made().images.push(i.id.clone());
        Ok(i)
    }

    async fn create_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        let g = self.cloud.create_security_group(spec).await?;
        self.made().groups.push(g.id.clone());
        Ok(g)
    }

    fn group_spec(&self, name: &str) -> SecurityGroupSpec {
        SecurityGroupSpec {
            tags: self.run_tags(self.caps().security_groups.tags),
            ..SecurityGroupSpec::new(self.name(name), "made by the cms conformance kit")
        }
    }

    async fn allocate(&self, spec: &AddressSpec) -> Result<Address> {
        let a = self.cloud.allocate_address(spec).await?;
        self.made().addresses.push(a.id.clone());
        Ok(a)
    }

    fn address_spec(&self) -> AddressSpec {
        AddressSpec {
            tags: self.run_tags(self.caps().addresses.tags),
            owner: None,
        }
    }

    /// Polls `still_there` (with growing pauses) until it answers false, within the
    /// state timeout.
    async fn until_gone<F, Fut>(&self, what: &str, still_there: F) -> Check
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if !still_there().await? {
                return Ok(());
            }
            if started.elapsed() >= self.config.state_timeout {
                return Err(Fail::Failed(format!(
                    "{what} is still there {:?} after it was deleted",
                    self.config.state_timeout
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits until a deleted volume is gone (`NotFound`, or `deleted`).
    async fn volume_gone(&self, id: &VolumeId) -> Check {
        self.until_gone(&format!("volume `{id}`"), || async {
            match self.cloud.get_volume(id).await {
                Ok(v) => Ok(v.state != VolumeState::Deleted),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn delete_volume_and_wait(&self, id: &VolumeId) -> Check {
        self.cloud.delete_volume(id).await?;
        self.volume_gone(id).await
    }

    /// Deletes what the checks made and left (a check that failed half way): addresses,
    /// images, snapshots, volumes (detached first), groups. Instances go before, in
    /// [`Ctx::cleanup`]. Errors are ignored: this is best effort.
    pub(super) async fn sweep(&self) {
        let made = std::mem::take(&mut *self.made());
        let caps = *self.caps();
        let c = self.cloud;
        if caps.addresses.release {
            for a in &made.addresses {
                if caps.addresses.disassociate {
                    let _ = c.disassociate_address(a).await;
                }
                let _ = c.release_address(a).await;
            }
        }
        if caps.images.delete {
            for i in &made.images {
                let _ = c.delete_image(i).await;
            }
        }
        if caps.snapshots.delete {
            for s in &made.snapshots {
                let _ = c.delete_snapshot(s).await;
            }
        }
        if caps.volumes.delete {
            join_all(made.volumes.iter().map(|v| async move {
                let Ok(vol) = c.get_volume(v).await else {
                    return;
                };
                if vol.state == VolumeState::Deleting {
                    return;
                }
                if !vol.attachments.is_empty() && caps.volumes.detach {
                    let _ = c.detach_volume(v).await;
                }
                if vol.state != VolumeState::Available {
                    let _ = self.wait_volume(v, VolumeState::Available).await;
                }
                let _ = c.delete_volume(v).await;
            }))
            .await;
        }
        if caps.security_groups.delete {
            for g in &made.groups {
                // Groups of instances still terminating may be refused for a while.
                let _ = self
                    .until_gone("security group", || async {
                        match c.delete_security_group(g).await {
                            Ok(()) => Ok(false),
                            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                            Err(e) if e.kind() == ErrorKind::InvalidState => Ok(true),
                            Err(e) => Err(e),
                        }
                    })
                    .await;
            }
        }
    }
}

/// `NotFound` for every operation of the optional families on ids the backend does
/// not know ([`KitConfig`](super::KitConfig)'s `unknown_*` ids).
pub(super) async fn unknown_ids(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let c = ctx.cloud;
    let cfg = ctx.config;
    let (volume, snapshot) = (&cfg.unknown_volume_id, &cfg.unknown_snapshot_id);
    let (group, address) = (&cfg.unknown_security_group_id, &cfg.unknown_address_id);
    let instance = &cfg.unknown_instance_id;
    let rule = [SecurityRule::tcp_in(22, 22, "0.0.0.0/0")];
    let nf = ErrorKind::NotFound;
    let mut checked = 0;
    macro_rules! unknown {
        ($declared:expr, $call:expr, $what:expr) => {
            if $declared {
                expect_kind($call.await, nf, $what)?;
                checked += 1;
            }
        };
    }
    unknown!(
        caps.volumes.get,
        c.get_volume(volume),
        "get an unknown volume"
    );
    unknown!(
        caps.volumes.delete,
        c.delete_volume(volume),
        "delete an unknown volume"
    );
    unknown!(
        caps.volumes.attach,
        c.attach_volume(volume, instance, None),
        "attach an unknown volume to an unknown instance"
    );
    unknown!(
        caps.volumes.detach,
        c.detach_volume(volume),
        "detach an unknown volume"
    );
    unknown!(
        caps.snapshots.get,
        c.get_snapshot(snapshot),
        "get an unknown snapshot"
    );
    unknown!(
        caps.snapshots.delete,
        c.delete_snapshot(snapshot),
        "delete an unknown snapshot"
    );
    unknown!(
        caps.snapshots.create,
        ctx.create_snapshot(&SnapshotSpec::new(volume.clone()).name(ctx.name("nf"))),
        "snapshot an unknown volume"
    );
    unknown!(
        caps.volumes.create && caps.volumes.from_snapshot,
        ctx.create_volume(&VolumeSpec {
            name: ctx.name("nf"),
            ..VolumeSpec::from_snapshot(snapshot.clone())
        }),
        "make a volume from an unknown snapshot"
    );
    unknown!(
        caps.images.delete,
        c.delete_image(&cfg.unknown_image_id),
        "delete an unknown image"
    );
    unknown!(
        caps.images.create,
        ctx.create_image(&ImageSpec::new(instance.clone(), ctx.name("nf"))),
        "capture an image of an unknown instance"
    );
    unknown!(
        caps.security_groups.get,
        c.get_security_group(group),
        "get an unknown security group"
    );
    unknown!(
        caps.security_groups.delete,
        c.delete_security_group(group),
        "delete an unknown security group"
    );
    unknown!(
        caps.security_groups.update_rules,
        c.add_security_rules(group, &rule),
        "add rules to an unknown security group"
    );
    unknown!(
        caps.security_groups.update_rules,
        c.remove_security_rules(group, &rule),
        "remove rules from an unknown security group"
    );
    unknown!(
        caps.addresses.get,
        c.get_address(address),
        "get an unknown address"
    );
    unknown!(
        caps.addresses.release,
        c.release_address(address),
        "release an unknown address"
    );
    unknown!(
        caps.addresses.associate,
        c.associate_address(address, instance, None),
        "associate an unknown address with an unknown instance"
    );
    unknown!(
        caps.addresses.disassociate,
        c.disassociate_address(address),
        "disassociate an unknown address"
    );
    if checked == 0 {
        return skip("no volume, snapshot, image, security group or address operation");
    }
    Ok(())
}

/// A volume is made (`creating`, then `available`) with what was asked, is listed,
/// and once deleted is gone: `NotFound`.
pub(super) async fn volume_lifecycle(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().volumes;
    if !(caps.create && caps.get && caps.delete) {
        return skip("needs volume create, get and delete");
    }
    let c = ctx.cloud;
    let spec = ctx.volume_spec("life");
    let made = ctx.create_volume(&spec).await?;
    ensure!(
        matches!(made.state, VolumeState::Creating | VolumeState::Available),
        "a new volume is {} ({}), not creating or available",
        made.state,
        made.raw_state
    );
    ensure!(!made.raw_state.is_empty(), "raw_state is empty");
    ensure!(
        made.size_gib == ctx.config.volume_size_gib,
        "a volume of {} GiB was asked, {} GiB made",
        ctx.config.volume_size_gib,
        made.size_gib
    );
    let v = ctx.wait_volume(&made.id, VolumeState::Available).await?;
    ensure!(v.id == made.id, "get volume answered `{}`", v.id);
    ensure!(
        v.name == spec.name,
        "volume name `{}` != `{}`",
        v.name,
        spec.name
    );
    ensure!(
        v.attachments.is_empty(),
        "a new volume is attached: {:?}",
        v.attachments
    );
    for (k, val) in &spec.tags {
        ensure!(
            v.tags.get(k) == Some(val),
            "tag {k}={val} missing: {:?}",
            v.tags
        );
    }
    if caps.list {
        let filter = VolumeFilter {
            ids: vec![v.id.clone()],
            ..ctx.run_filter(caps.tags)
        };
        let listed = c.collect_volumes(&filter).await?;
        ensure!(
            listed.len() == 1 && listed[0].id == v.id,
            "listing by id and run tag answered {:?}",
            listed.iter().map(|v| &v.id).collect::<Vec<_>>()
        );
    }
    c.delete_volume(&v.id).await?;
    ctx.volume_gone(&v.id).await?;
    expect_kind(
        c.get_volume(&v.id).await,
        ErrorKind::NotFound,
        "get a deleted volume",
    )?;
    expect_kind(
        c.delete_volume(&v.id).await,
        ErrorKind::NotFound,
        "delete a deleted volume",
    )
}

/// Attaching shows the attachment on both sides with its device (`attaching`, then
/// `in_use`), a repeated attach or detach answers the volume as it is, an attached
/// volume cannot be deleted (`InvalidState`), and detaching leaves it `available`.
pub(super) async fn volume_attach(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let v = caps.volumes;
    let i = caps.instances;
    if !(v.create && v.get && v.delete && v.attach && v.detach) {
        return skip("needs volume create, get, delete, attach and detach");
    }
    if !(i.create && i.get && i.delete) {
        return skip("needs instance create, get and delete");
    }
    let c = ctx.cloud;
    let vm = ctx.create_running("vol-attach").await?;
    let vol = ctx
        .available_volume(&VolumeSpec {
            location_id: vm.location_id.clone(),
            ..ctx.volume_spec("attach")
        })
        .await?;
    let device = ctx.config.device.as_deref();
    let attached = c.attach_volume(&vol.id, &vm.id, device).await?;
    ensure!(
        matches!(attached.state, VolumeState::Attaching | VolumeState::InUse),
        "attach answered a volume {} ({})",
        attached.state,
        attached.raw_state
    );
    let in_use = ctx.wait_volume(&vol.id, VolumeState::InUse).await?;
    let shown = match in_use.attachments.as_slice() {
        [a] if a.instance_id == vm.id => a.device.clone(),
        other => {
            return Err(Fail::Failed(format!(
                "a volume attached to `{}` shows the attachments {other:?}",
                vm.id
            )))
        }
    };
    ensure!(
        shown.as_deref().is_some_and(|d| !d.is_empty()),
        "the attachment shows no device"
    );
    if let Some(d) = device {
        ensure!(
            shown.as_deref() == Some(d),
            "attached at `{d}`, shown at {shown:?}"
        );
    }
    if i.volumes {
        let got = c.get_instance(&vm.id).await?;
        let seen = got.volumes.iter().find(|x| x.volume_id == vol.id);
        ensure!(
            seen.is_some_and(|x| x.device == shown),
            "the instance shows its volumes as {:?}, without `{}` at {shown:?}",
            got.volumes,
            vol.id
        );
    }
    let again = c.attach_volume(&vol.id, &vm.id, device).await?;
    ensure!(
        again.state == VolumeState::InUse && again.attachments.len() == 1,
        "attaching again answered {} with {:?}",
        again.state,
        again.attachments
    );
    expect_kind(
        c.delete_volume(&vol.id).await,
        ErrorKind::InvalidState,
        "delete an attached volume",
    )?;
    let detached = c.detach_volume(&vol.id).await?;
    ensure!(
        matches!(
            detached.state,
            VolumeState::Detaching | VolumeState::Available
        ),
        "detach answered {} ({})",
        detached.state,
        detached.raw_state
    );
    let again = c.detach_volume(&vol.id).await?;
    ensure!(
        matches!(again.state, VolumeState::Detaching | VolumeState::Available),
        "detaching again answered {}",
        again.state
    );
    let free = ctx.wait_volume(&vol.id, VolumeState::Available).await?;
    ensure!(
        free.attachments.is_empty(),
        "a detached volume shows {:?}",
        free.attachments
    );
    if i.volumes {
        let got = c.get_instance(&vm.id).await?;
        ensure!(
            got.volumes.iter().all(|x| x.volume_id != vol.id),
            "the instance still shows the detached volume: {:?}",
            got.volumes
        );
    }
    ctx.delete_volume_and_wait(&vol.id).await?;
    c.delete_instance(&vm.id).await?;
    ctx.wait_gone(&vm.id).await
}

/// An instance made with a volume shows it attached; deleted with the instance when
/// asked to be.
pub(super) async fn instance_volumes(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    if !caps.instances.volumes {
        return skip("needs instances made with volumes");
    }
    if !(caps.instances.create && caps.instances.get && caps.instances.delete) {
        return skip("needs instance create, get and delete");
    }
    let c = ctx.cloud;
    let size = ctx.config.volume_size_gib;
    let bd = BlockDevice {
        device: ctx.config.device.clone(),
        size_gib: Some(size),
        snapshot_id: None,
        delete_on_termination: true,
    };
    let made = ctx.create(&ctx.spec("with-volume").volume(bd)).await?;
    let vm = ctx.wait(&made.id, InstanceState::Running).await?;
    // The instance may show its root volume too: look for the one asked for.
    let mut found = None;
    for x in &vm.volumes {
        if let Some(d) = &ctx.config.device {
            if x.device.as_ref() != Some(d) {
                continue;
            }
        }
        if !caps.volumes.get {
            found = Some(x.volume_id.clone());
            break;
        }
        let v = c.get_volume(&x.volume_id).await?;
        if v.size_gib == size && v.attachments.iter().any(|a| a.instance_id == vm.id) {
            ensure!(
                matches!(v.state, VolumeState::InUse | VolumeState::Attaching),
                "the volume made with a running instance is {}",
                v.state
            );
            found = Some(v.id);
            break;
        }
    }
    let Some(vol) = found else {
        return Err(Fail::Failed(format!(
            "an instance made with a {size} GiB volume shows {:?}",
            vm.volumes
        )));
    };
    c.delete_instance(&vm.id).await?;
    ctx.wait_gone(&vm.id).await?;
    if caps.volumes.get {
        // Made to go with the instance: it goes.
        ctx.volume_gone(&vol).await?;
    }
    Ok(())
}

/// A snapshot of a volume completes (progress 100), a volume made from it has its
/// size (a smaller one is `InvalidArgument`), and deleting the snapshot leaves that
/// volume.
pub(super) async fn snapshots(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let (v, s) = (caps.volumes, caps.snapshots);
    if !(v.create && v.get && v.delete && s.create && s.get && s.delete) {
        return skip("needs volume and snapshot create, get and delete");
    }
    let c = ctx.cloud;
    let vol = ctx.available_volume(&ctx.volume_spec("snap-src")).await?;
    let spec = SnapshotSpec {
        tags: ctx.run_tags(s.tags),
        ..SnapshotSpec::new(vol.id.clone()).name(ctx.name("snap"))
    };
    let snap = ctx.create_snapshot(&spec).await?;
    ensure!(
        matches!(
            snap.state,
            SnapshotState::Pending | SnapshotState::Completed
        ),
        "a new snapshot is {} ({})",
        snap.state,
        snap.raw_state
    );
    ensure!(
        snap.volume_id.as_ref().is_none_or(|x| *x == vol.id),
        "a snapshot of `{}` names volume {:?}",
        vol.id,
        snap.volume_id
    );
    ensure!(
        snap.size_gib == vol.size_gib,
        "a snapshot of a {} GiB volume has {} GiB",
        vol.size_gib,
        snap.size_gib
    );
    ensure!(snap.progress <= 100, "progress {}", snap.progress);
    let done = c
        .wait_for_snapshot(&snap.id, ctx.config.state_timeout)
        .await?;
    ensure!(
        done.progress == 100,
        "a completed snapshot is {}% done",
        done.progress
    );
    if s.list {
        let filter = SnapshotFilter {
            ids: vec![snap.id.clone()],
            ..ctx.run_filter(s.tags)
        };
        let listed = c.collect_snapshots(&filter).await?;
        ensure!(
            listed.len() == 1 && listed[0].id == snap.id,
            "listing the snapshot by id and run tag answered {listed:?}"
        );
    }
    let mut copy = None;
    if v.from_snapshot {
        let from = ctx
            .create_volume(&VolumeSpec {
                name: ctx.name("from-snap"),
                location_id: vol.location_id.clone(),
                tags: ctx.run_tags(v.tags),
                ..VolumeSpec::from_snapshot(snap.id.clone())
            })
            .await?;
        ensure!(
            from.size_gib == snap.size_gib,
            "a volume made from a {} GiB snapshot has {} GiB",
            snap.size_gib,
            from.size_gib
        );
        ensure!(
            from.snapshot_id.as_ref() == Some(&snap.id),
            "a volume made from `{}` names snapshot {:?}",
            snap.id,
            from.snapshot_id
        );
        ctx.wait_volume(&from.id, VolumeState::Available).await?;
        if snap.size_gib > 1 {
            let smaller = VolumeSpec {
                name: ctx.name("too-small"),
                size_gib: Some(snap.size_gib - 1),
                location_id: vol.location_id.clone(),
                ..VolumeSpec::from_snapshot(snap.id.clone())
            };
            expect_kind(
                ctx.create_volume(&smaller).await,
                ErrorKind::InvalidArgument,
                "make a volume smaller than its snapshot",
            )?;
        }
        copy = Some(from.id);
    }
    c.delete_snapshot(&snap.id).await?;
    ctx.until_gone(&format!("snapshot `{}`", snap.id), || async {
        match c.get_snapshot(&snap.id).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await?;
    if let Some(copy) = copy {
        let still = c.get_volume(&copy).await?;
        ensure!(
            still.state == VolumeState::Available,
            "after its snapshot was deleted, a volume made from it is {}",
            still.state
        );
        ctx.delete_volume_and_wait(&copy).await?;
    }
    ctx.delete_volume_and_wait(&vol.id).await
}

/// An image captured from an instance becomes `available`, is the account's (not
/// shared), is listed (by owner, exactly, when owners are kept), launches an
/// instance, and is gone once deleted; a shared image cannot be deleted.
pub(super) async fn image_capture(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let im = caps.images;
    if !(im.create && im.get && im.delete) {
        return skip("needs image create, get and delete");
    }
    let i = caps.instances;
    if !(i.create && i.get && i.delete) {
        return skip("needs instance create, get and delete");
    }
    let c = ctx.cloud;
    let vm = ctx.create_running("capture").await?;
    let owner = ctx.name("image-owner");
    let mut spec = ImageSpec::new(vm.id.clone(), ctx.name("image"));
    if im.owner {
        spec = spec.owner(owner.clone());
    }
    let made = ctx.create_image(&spec).await?;
    ensure!(
        matches!(made.state, ImageState::Pending | ImageState::Available),
        "a new image is {} ({})",
        made.state,
        made.raw_state
    );
    ensure!(
        made.name == spec.name,
        "image name `{}` != `{}`",
        made.name,
        spec.name
    );
    ensure!(!made.shared, "a captured image is marked shared");
    ensure!(
        made.source_instance_id.as_ref().is_none_or(|s| *s == vm.id),
        "an image of `{}` names source {:?}",
        vm.id,
        made.source_instance_id
    );
    if im.owner {
        ensure!(
            made.owner.as_deref() == Some(owner.as_str()),
            "an image made for {owner} has owner {:?}",
            made.owner
        );
    }
    let image = c.wait_for_image(&made.id, ctx.config.state_timeout).await?;
    if im.list {
        let by_id = ImageFilter {
            ids: vec![image.id.clone()],
            ..Default::default()
        };
        let listed = c.collect_images_matching(&by_id).await?;
        ensure!(
            listed.len() == 1 && listed[0].id == image.id,
            "listing the image by id answered {:?}",
            listed.iter().map(|i| &i.id).collect::<Vec<_>>()
        );
        if im.owner {
            let mine = ImageFilter {
                owner: Some(owner.clone()),
                ..Default::default()
            };
            let listed = c.collect_images_matching(&mine).await?;
            ensure!(
                listed.len() == 1 && listed[0].id == image.id,
                "images of owner {owner}: {:?}",
                listed.iter().map(|i| &i.id).collect::<Vec<_>>()
            );
            let usable = c
                .collect_images_matching(&ImageFilter::usable_by(owner.clone()))
                .await?;
            ensure!(
                usable.iter().any(|i| i.id == image.id)
                    && usable
                        .iter()
                        .all(|i| i.shared || i.owner.as_deref() == Some(&owner)),
                "images usable by {owner}: {:?}",
                usable
                    .iter()
                    .map(|i| (&i.id, i.shared, &i.owner))
                    .collect::<Vec<_>>()
            );
            let nobody = ImageFilter {
                owner: Some(ctx.name("image-nobody")),
                ..Default::default()
            };
            let listed = c.collect_images_matching(&nobody).await?;
            ensure!(
                listed.is_empty(),
                "an owner with no images lists {listed:?}"
            );
        }
    }
    let launched = ctx
        .create(&InstanceSpec {
            image_id: image.id.clone(),
            ..ctx.spec("from-image")
        })
        .await?;
    let launched = ctx.wait(&launched.id, InstanceState::Running).await?;
    ensure!(
        launched.image_id.as_ref() == Some(&image.id),
        "an instance launched from `{}` shows image {:?}",
        image.id,
        launched.image_id
    );
    c.delete_instance(&launched.id).await?;
    ctx.wait_gone(&launched.id).await?;
    c.delete_image(&image.id).await?;
    ctx.until_gone(&format!("image `{}`", image.id), || async {
        match c.get_image(&image.id).await {
            Ok(i) => Ok(i.state != ImageState::Deleted),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await?;
    let shared = c.get_image(&ctx.image).await?;
    if shared.shared {
        expect_kind(
            c.delete_image(&ctx.image).await,
            ErrorKind::PermissionDenied,
            "delete a shared image",
        )?;
    }
    c.delete_instance(&vm.id).await?;
    ctx.wait_gone(&vm.id).await
}

fn rule(
    direction: RuleDirection,
    protocol: RuleProtocol,
    ports: (Option<u16>, Option<u16>),
    peer: RulePeer,
) -> SecurityRule {
    SecurityRule {
        direction,
        protocol,
        from_port: ports.0,
        to_port: ports.1,
        peer,
    }
}

fn missing<'r>(have: &[SecurityRule], want: &'r [SecurityRule]) -> Vec<&'r SecurityRule> {
    want.iter().filter(|r| !have.contains(r)).collect()
}

fn doubled(rules: &[SecurityRule]) -> bool {
    rules.iter().collect::<HashSet<_>>().len() != rules.len()
}

/// Rules round-trip exactly (TCP, a UDP range, ICMP; a group peer and egress when
/// declared), adding them again doubles none, removing some leaves the rest; names
/// are unique; bad rules and unknown peers are refused.
pub(super) async fn security_group_rules(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().security_groups;
    if !(caps.create && caps.get && caps.delete && caps.update_rules) {
        return skip("needs security group create, get, delete and rule updates");
    }
    let c = ctx.cloud;
    let spec = ctx.group_spec("rules");
    let g = ctx.create_group(&spec).await?;
    ensure!(
        g.name == spec.name,
        "group name `{}` != `{}`",
        g.name,
        spec.name
    );
    ensure!(!g.is_default, "a new group is marked default");
    ensure!(
        !doubled(&g.rules),
        "a new group holds a rule twice: {:?}",
        g.rules
    );
    for (k, v) in &spec.tags {
        ensure!(
            g.tags.get(k) == Some(v),
            "tag {k}={v} missing: {:?}",
            g.tags
        );
    }
    expect_kind(
        c.create_security_group(&spec).await,
        ErrorKind::AlreadyExists,
        "create a group whose name its network has",
    )?;
    let initial = g.rules.clone();
    use RuleDirection::*;
    use RuleProtocol::*;
    let anywhere = || RulePeer::Cidr("0.0.0.0/0".into());
    let ssh = SecurityRule::tcp_in(22, 22, "0.0.0.0/0");
    let udp = rule(
        Ingress,
        Udp,
        (Some(5000), Some(5100)),
        RulePeer::Cidr("10.0.0.0/8".into()),
    );
    let ping = rule(Ingress, Icmp, (Some(8), None), anywhere());
    let mut rules = vec![ssh.clone(), udp.clone(), ping.clone()];
    if caps.group_peers {
        rules.push(rule(
            Ingress,
            Tcp,
            (Some(443), Some(443)),
            RulePeer::Group(g.id.clone()),
        ));
    }
    if caps.egress {
        rules.push(rule(
            Egress,
            Tcp,
            (Some(443), Some(443)),
            RulePeer::Cidr("192.0.2.0/24".into()),
        ));
    }
    let added = c.add_security_rules(&g.id, &rules).await?;
    let lost = missing(&added.rules, &rules);
    ensure!(
        lost.is_empty(),
        "added rules not answered: {lost:?}; answered {:?}",
        added.rules
    );
    let got = c.get_security_group(&g.id).await?;
    let lost = missing(&got.rules, &rules);
    ensure!(
        lost.is_empty(),
        "added rules not kept: {lost:?}; kept {:?}",
        got.rules
    );
    let lost = missing(&got.rules, &initial);
    ensure!(
        lost.is_empty(),
        "adding rules lost the group's first ones: {lost:?}"
    );
    ensure!(
        !doubled(&got.rules),
        "a rule is held twice: {:?}",
        got.rules
    );
    let again = c.add_security_rules(&g.id, &rules).await?;
    ensure!(
        again.rules.len() == got.rules.len() && !doubled(&again.rules),
        "adding the same rules again went from {} to {} rules: {:?}",
        got.rules.len(),
        again.rules.len(),
        again.rules
    );
    expect_kind(
        c.add_security_rules(&g.id, &[SecurityRule::tcp_in(23, 22, "0.0.0.0/0")])
            .await,
        ErrorKind::InvalidArgument,
        "add a rule whose port range ends before it starts",
    )?;
    if caps.group_peers {
        let unknown = rule(
            Ingress,
            Tcp,
            (Some(80), Some(80)),
            RulePeer::Group(ctx.config.unknown_security_group_id.clone()),
        );
        expect_kind(
            c.add_security_rules(&g.id, &[unknown]).await,
            ErrorKind::NotFound,
            "add a rule naming an unknown group",
        )?;
    }
    let gone = [ssh, udp];
    let after = c.remove_security_rules(&g.id, &gone).await?;
    ensure!(
        gone.iter().all(|r| !after.rules.contains(r)),
        "removed rules still held: {:?}",
        after.rules
    );
    let rest: Vec<SecurityRule> = rules[2..].to_vec();
    let lost = missing(&after.rules, &rest);
    ensure!(lost.is_empty(), "removing two rules lost others: {lost:?}");
    let lost = missing(&after.rules, &initial);
    ensure!(
        lost.is_empty(),
        "removing rules lost the group's first ones: {lost:?}"
    );
    let again = c.remove_security_rules(&g.id, &gone).await?;
    ensure!(
        again.rules.len() == after.rules.len(),
        "removing rules no longer held changed the group: {:?}",
        again.rules
    );
    c.delete_security_group(&g.id).await?;
    ctx.until_gone(&format!("security group `{}`", g.id), || async {
        match c.get_security_group(&g.id).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

/// An instance made in a group shows it (one made in none shows the backend's
/// default); a group in use cannot be deleted; an unknown group is `NotFound`.
pub(super) async fn security_group_instances(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    if !caps.instances.security_groups {
        return skip("needs instances made in security groups");
    }
    let (i, g) = (caps.instances, caps.security_groups);
    if !(i.create && i.get && i.delete && g.create && g.delete) {
        return skip("needs instance create, get and delete, and group create and delete");
    }
    let c = ctx.cloud;
    let group = ctx.create_group(&ctx.group_spec("members")).await?;
    expect_kind(
        ctx.create(
            &ctx.spec("no-group")
                .security_group(ctx.config.unknown_security_group_id.clone()),
        )
        .await,
        ErrorKind::NotFound,
        "create an instance in an unknown security group",
    )?;
    let made = ctx
        .create(&ctx.spec("in-group").security_group(group.id.clone()))
        .await?;
    let vm = ctx.wait(&made.id, InstanceState::Running).await?;
    ensure!(
        vm.security_group_ids.contains(&group.id),
        "an instance made in `{}` shows the groups {:?}",
        group.id,
        vm.security_group_ids
    );
    let plain = ctx.create_named("default-group".into()).await?;
    let plain = c.get_instance(&plain.id).await?;
    ensure!(
        !plain.security_group_ids.is_empty(),
        "an instance made in no group shows none (the backend's default group was expected)"
    );
    expect_kind(
        c.delete_security_group(&group.id).await,
        ErrorKind::InvalidState,
        "delete a group an instance is in",
    )?;
    c.delete_instance(&vm.id).await?;
    ctx.wait_gone(&vm.id).await?;
    // A backend may let go of the instance's membership a little after it is gone.
    ctx.until_gone(&format!("security group `{}`", group.id), || async {
        match c.delete_security_group(&group.id).await {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == ErrorKind::InvalidState => Ok(true),
            Err(e) => Err(e),
        }
    })
    .await?;
    c.delete_instance(&plain.id).await?;
    ctx.wait_gone(&plain.id).await
}

/// An address is allocated, associated with an instance (which shows it), moved
/// nowhere by a repeat, refused release while associated, disassociated (twice, the
/// second answering as it is), released, and then unknown.
pub(super) async fn addresses(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let a = caps.addresses;
    if !(a.allocate && a.release && a.get) {
        return skip("needs address allocate, get and release");
    }
    let c = ctx.cloud;
    let addr = ctx.allocate(&ctx.address_spec()).await?;
    ensure!(
        addr.ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "allocated address `{}` is not an IPv4 address",
        addr.ip
    );
    ensure!(
        addr.instance_id.is_none(),
        "a new address is associated with {:?}",
        addr.instance_id
    );
    let got = c.get_address(&addr.id).await?;
    ensure!(
        got.ip == addr.ip,
        "get answered ip {} for {}",
        got.ip,
        addr.ip
    );
    if a.list {
        let filter = AddressFilter {
            ids: vec![addr.id.clone()],
            ..ctx.run_filter(a.tags)
        };
        let listed = c.collect_addresses(&filter).await?;
        ensure!(
            listed.len() == 1 && listed[0].id == addr.id,
            "listing the address by id and run tag answered {listed:?}"
        );
    }
    let i = caps.instances;
    if a.associate && a.disassociate && i.create && i.get && i.delete {
        let vm = ctx.create_running("address").await?;
        let on = c.associate_address(&addr.id, &vm.id, None).await?;
        ensure!(
            on.instance_id.as_ref() == Some(&vm.id),
            "associate answered instance {:?}",
            on.instance_id
        );
        ensure!(
            on.private_ip
                .as_ref()
                .is_none_or(|p| vm.private_ips.contains(p)),
            "associated with {:?}, not one of the instance's {:?}",
            on.private_ip,
            vm.private_ips
        );
        let shown = c.get_instance(&vm.id).await?;
        ensure!(
            shown.public_ips.contains(&addr.ip),
            "the instance shows the public addresses {:?}, not {}",
            shown.public_ips,
            addr.ip
        );
        let again = c.associate_address(&addr.id, &vm.id, None).await?;
        ensure!(
            again.instance_id.as_ref() == Some(&vm.id),
            "associating again answered instance {:?}",
            again.instance_id
        );
        expect_kind(
            c.release_address(&addr.id).await,
            ErrorKind::InvalidState,
            "release an associated address",
        )?;
        let off = c.disassociate_address(&addr.id).await?;
        ensure!(
            off.instance_id.is_none(),
            "disassociate answered instance {:?}",
            off.instance_id
        );
        let shown = c.get_instance(&vm.id).await?;
        ensure!(
            !shown.public_ips.contains(&addr.ip),
            "a disassociated address is still shown: {:?}",
            shown.public_ips
        );
        let again = c.disassociate_address(&addr.id).await?;
        ensure!(
            again.instance_id.is_none(),
            "disassociating again answered instance {:?}",
            again.instance_id
        );
        c.delete_instance(&vm.id).await?;
        ctx.wait_gone(&vm.id).await?;
    }
    c.release_address(&addr.id).await?;
    expect_kind(
        c.get_address(&addr.id).await,
        ErrorKind::NotFound,
        "get a released address",
    )
}

/// Paging through volumes neither repeats nor loses one.
pub(super) async fn volume_pagination(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().volumes;
    if !(caps.create && caps.list && caps.delete) {
        return skip("needs volume create, list and delete");
    }
    let c = ctx.cloud;
    let n = ctx.config.pagination_volumes;
    let made: Vec<Volume> = join_all((0..n).map(|k| async move {
        ctx.create_volume(&ctx.volume_spec(&format!("vpage-{k}")))
            .await
    }))
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let limit = match caps.max_page_size {
        0 => None,
        max => Some(ctx.config.page_size.min(max)),
    };
    let filter: VolumeFilter = ctx.run_filter(caps.tags);
    let mut seen = Vec::new();
    let mut page = PageRequest { limit, token: None };
    loop {
        let p = c.list_volumes(&filter, &page).await?;
        if let Some(l) = limit {
            ensure!(
                p.items.len() <= l as usize,
                "a page of limit {l} held {} volumes",
                p.items.len()
            );
        }
        seen.extend(p.items.into_iter().map(|v| v.id));
        match p.next {
            Some(t) => page = PageRequest::after(limit, t),
            None => break,
        }
    }
    let distinct: HashSet<&VolumeId> = seen.iter().collect();
    ensure!(
        distinct.len() == seen.len(),
        "a volume was listed twice: {seen:?}"
    );
    let lost: Vec<_> = made
        .iter()
        .filter(|v| !distinct.contains(&v.id))
        .map(|v| &v.id)
        .collect();
    ensure!(lost.is_empty(), "made but not listed: {lost:?}");
    for v in &made {
        if caps.get {
            ctx.wait_volume(&v.id, VolumeState::Available).await?;
        }
        c.delete_volume(&v.id).await?;
    }
    if caps.get {
        for v in &made {
            ctx.volume_gone(&v.id).await?;
        }
    }
    Ok(())
}

/// A volume create repeated with its client token makes one volume; the token with
/// another request is `InvalidArgument`.
pub(super) async fn volume_client_token(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().volumes;
    if !(caps.create && caps.client_token) {
        return skip("needs volume create with client token");
    }
    let c = ctx.cloud;
    let token = ctx.name("vtoken");
    let spec = ctx.volume_spec("token").client_token(token.clone());
    let first = ctx.create_volume(&spec).await?;
    let second = ctx.create_volume(&spec).await?;
    ensure!(
        first.id == second.id,
        "the same client token made two volumes: {} and {}",
        first.id,
        second.id
    );
    for r in join_all((0..4).map(|_| ctx.create_volume(&spec))).await {
        let v = r?;
        ensure!(
            v.id == first.id,
            "a concurrent create with the token made {}",
            v.id
        );
    }
    let other = ctx.volume_spec("token-other").client_token(token);
    expect_kind(
        c.create_volume(&other).await,
        ErrorKind::InvalidArgument,
        "the same client token with another request",
    )?;
    if caps.delete && caps.get {
        ctx.wait_volume(&first.id, VolumeState::Available).await?;
        ctx.delete_volume_and_wait(&first.id).await?;
    }
    Ok(())
}

/// Lists every page of `list` with the kit's page size, checking that every page but
/// the last is full; answers the ids.
async fn exact_pages<T, Id, F, Fut>(
    ctx: &Ctx<'_>,
    max_page_size: u32,
    list: F,
    id: impl Fn(&T) -> Id,
) -> std::result::Result<Vec<Id>, Fail>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let limit = match max_page_size {
        0 => None,
        max => Some(ctx.config.page_size.min(max)),
    };
    let mut page = PageRequest { limit, token: None };
    let mut ids = Vec::new();
    loop {
        let p = list(page.clone()).await?;
        ids.extend(p.items.iter().map(&id));
        match p.next {
            Some(t) => {
                if let Some(l) = limit {
                    ensure!(
                        p.items.len() == l as usize,
                        "a page of an owner's listing held {} of {l} items and was not the last",
                        p.items.len()
                    );
                }
                page = PageRequest::after(limit, t);
            }
            None => return Ok(ids),
        }
    }
}

fn same_set<T: Ord + Clone + std::fmt::Debug>(mut got: Vec<T>, want: &[T], what: &str) -> Check {
    let mut want = want.to_vec();
    got.sort();
    want.sort();
    ensure!(got == want, "{what}: listed {got:?}, made {want:?}");
    Ok(())
}

/// Each family that declares owners keeps the owner given at creation, and its
/// listings filtered by owner hold exactly that owner's resources, in full pages.
pub(super) async fn family_owners(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let c = ctx.cloud;
    let (mine, theirs) = (ctx.name("fam-owner-a"), ctx.name("fam-owner-b"));
    let mut checked = false;

    let v = caps.volumes;
    if v.owner && v.create && v.list && v.delete {
        checked = true;
        let n = ctx.config.page_size as usize + 1;
        let specs: Vec<VolumeSpec> = (0..=n)
            .map(|k| {
                let owner = if k < n { &mine } else { &theirs };
                ctx.volume_spec(&format!("own-{k}")).owner(owner.clone())
            })
            .collect();
        let made: Vec<Volume> = join_all(specs.iter().map(|s| ctx.create_volume(s)))
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        for (vol, spec) in made.iter().zip(&specs) {
            ensure!(
                vol.owner == spec.owner,
                "a volume made for {:?} answered owner {:?}",
                spec.owner,
                vol.owner
            );
        }
        let filter = VolumeFilter::owned_by(mine.clone());
        let listed = exact_pages(
            ctx,
            v.max_page_size,
            |p| {
                let filter = filter.clone();
                async move { c.list_volumes(&filter, &p).await }
            },
            |x: &Volume| x.id.clone(),
        )
        .await?;
        let want: Vec<VolumeId> = made[..n].iter().map(|x| x.id.clone()).collect();
        same_set(listed, &want, &format!("volumes of owner {mine}"))?;
        let by_ids = VolumeFilter {
            ids: vec![made[0].id.clone(), made[n].id.clone()],
            owner: Some(theirs.clone()),
            ..Default::default()
        };
        let got: Vec<VolumeId> = c
            .collect_volumes(&by_ids)
            .await?
            .into_iter()
            .map(|x| x.id)
            .collect();
        ensure!(
            got == vec![made[n].id.clone()],
            "volumes by ids and owner {theirs}: {got:?}"
        );
        expect_kind(
            c.create_volume(&ctx.volume_spec("own-bad").owner("not an owner"))
                .await,
            ErrorKind::InvalidArgument,
            "create a volume for owner `not an owner`",
        )?;
        if v.get {
            for x in &made {
                ctx.wait_volume(&x.id, VolumeState::Available).await?;
            }
        }
        for x in &made {
            c.delete_volume(&x.id).await?;
        }
    }

    let s = caps.snapshots;
    if s.owner && s.create && s.list && s.delete && v.create && v.get && v.delete {
        checked = true;
        let vol = ctx
            .available_volume(&ctx.volume_spec("own-snap-src"))
            .await?;
        let a = ctx
            .create_snapshot(
                &SnapshotSpec::new(vol.id.clone())
                    .name(ctx.name("own-snap-a"))
                    .owner(mine.clone()),
            )
            .await?;
        let b = ctx
            .create_snapshot(
                &SnapshotSpec::new(vol.id.clone())
                    .name(ctx.name("own-snap-b"))
                    .owner(theirs.clone()),
            )
            .await?;
        ensure!(
            a.owner.as_deref() == Some(mine.as_str()),
            "a snapshot made for {mine} answered owner {:?}",
            a.owner
        );
        let listed: Vec<SnapshotId> = c
            .collect_snapshots(&SnapshotFilter::owned_by(mine.clone()))
            .await?
            .into_iter()
            .map(|x| x.id)
            .collect();
        same_set(
            listed,
            std::slice::from_ref(&a.id),
            &format!("snapshots of owner {mine}"),
        )?;
        for x in [&a, &b] {
            c.wait_for_snapshot(&x.id, ctx.config.state_timeout).await?;
            c.delete_snapshot(&x.id).await?;
        }
        ctx.delete_volume_and_wait(&vol.id).await?;
    }

    let g = caps.security_groups;
    if g.owner && g.create && g.list && g.delete {
        checked = true;
        let a = ctx
            .create_group(&ctx.group_spec("own-sg-a").owner(mine.clone()))
            .await?;
        let b = ctx
            .create_group(&ctx.group_spec("own-sg-b").owner(theirs.clone()))
            .await?;
        ensure!(
            a.owner.as_deref() == Some(mine.as_str()),
            "a group made for {mine} answered owner {:?}",
            a.owner
        );
        let listed: Vec<SecurityGroupId> = c
            .collect_security_groups(&SecurityGroupFilter::owned_by(mine.clone()))
            .await?
            .into_iter()
            .map(|x| x.id)
            .collect();
        same_set(
            listed,
            std::slice::from_ref(&a.id),
            &format!("security groups of owner {mine}"),
        )?;
        let usable = c
            .collect_security_groups(&SecurityGroupFilter::usable_by(mine.clone()))
            .await?;
        ensure!(
            usable.iter().any(|x| x.id == a.id)
                && usable
                    .iter()
                    .all(|x| x.is_default || x.owner.as_deref() == Some(mine.as_str())),
            "security groups usable by {mine}: {:?}",
            usable
                .iter()
                .map(|x| (&x.id, x.is_default, &x.owner))
                .collect::<Vec<_>>()
        );
        for x in [&a, &b] {
            c.delete_security_group(&x.id).await?;
        }
    }

    let ad = caps.addresses;
    if ad.owner && ad.allocate && ad.list && ad.release {
        checked = true;
        let a = ctx
            .allocate(&AddressSpec {
                owner: Some(mine.clone()),
                ..ctx.address_spec()
            })
            .await?;
        let b = ctx
            .allocate(&AddressSpec {
                owner: Some(theirs.clone()),
                ..ctx.address_spec()
            })
            .await?;
        ensure!(
            a.owner.as_deref() == Some(mine.as_str()),
            "an address allocated for {mine} answered owner {:?}",
            a.owner
        );
        let listed: Vec<AddressId> = c
            .collect_addresses(&AddressFilter::owned_by(mine.clone()))
            .await?
            .into_iter()
            .map(|x| x.id)
            .collect();
        same_set(
            listed,
            std::slice::from_ref(&a.id),
            &format!("addresses of owner {mine}"),
        )?;
        for x in [&a, &b] {
            c.release_address(&x.id).await?;
        }
    }
    if !checked {
        return skip("no volume, snapshot, security group or address family with owners");
    }
    Ok(())
}
