//! Images and disks: the image life cycle (`one.image.*`), disks of VMs and their
//! hot-plug (`one.vm.attach`, `one.vm.detach`, `one.vm.disksaveas`), as oned's
//! ImageManager and DispatchManager do them.
//!
//! | operation | image STATE |
//! |---|---|
//! | `one.image.allocate` | LOCKED, READY after the image delay |
//! | `one.image.clone` | the copy LOCKED, then READY; the source CLONE (persistent) or USED meanwhile |
//! | `one.vm.disksaveas` | the new image LOCKED, then READY; the VM in HOTPLUG_SAVEAS* meanwhile |
//! | used by a VM | READY → USED_PERS (persistent) or USED; LOCKED → LOCKED_USED* at a VM's creation |
//! | `one.image.delete` | DELETE, gone after the image delay; refused while VMs use it or it is being cloned |
//!
//! Hot-plug needs a VM in RUNNING (it goes HOTPLUG) or POWEROFF (it goes
//! HOTPLUG_PROLOG_POWEROFF for an attach, HOTPLUG_EPILOG_POWEROFF for a detach); the
//! disk carries `ATTACH = YES` until the hot-plug delay has passed. Other states answer
//! oned's 0x800 error.

use super::*;

/// What happens when an image's datastore operation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageEvent {
    /// LOCKED → READY (LOCKED_USED* → USED*), a clone's source released.
    Ready,
    /// DELETE → gone.
    Gone,
}

const READY: i64 = 1;
const USED: i64 = 2;
const LOCKED: i64 = 4;
const CLONE: i64 = 6;
const DELETE: i64 = 7;
const USED_PERS: i64 = 8;
const LOCKED_USED: i64 = 9;
const LOCKED_USED_PERS: i64 = 10;

/// The prefix of disk targets when neither the disk nor its image names one (oned.conf
/// `DEFAULT_DEVICE_PREFIX`, which the fake sets to `vd`).
const DEFAULT_DEVICE_PREFIX: &str = "vd";

/// oned's `Image::state_to_str`.
fn image_state_str(state: i64) -> &'static str {
    match state {
        0 => "INIT",
        READY => "READY",
        USED => "USED",
        3 => "DISABLED",
        LOCKED => "LOCKED",
        5 => "ERROR",
        CLONE => "CLONE",
        DELETE => "DELETE",
        USED_PERS => "USED_PERS",
        LOCKED_USED => "LOCKED_USED",
        LOCKED_USED_PERS => "LOCKED_USED_PERS",
        _ => "-",
    }
}

fn type_str(t: i64) -> &'static str {
    match t {
        0 => "OS",
        1 => "CDROM",
        2 => "DATABLOCK",
        3 => "KERNEL",
        4 => "RAMDISK",
        5 => "CONTEXT",
        6 => "BACKUP",
        7 => "FILESYSTEM",
        _ => "-",
    }
}

fn type_of(name: &str) -> Option<i64> {
    (0..8).find(|t| type_str(*t).eq_ignore_ascii_case(name.trim()))
}

/// The datastores: (id, name, TYPE 0 image / 1 system / 2 files).
const DATASTORES: [(i64, &str, i64); 3] = [(0, "system", 1), (1, "default", 0), (2, "files", 2)];

impl ImageRec {
    fn set_state(&mut self, state: i64) {
        self.prev_state = self.state;
        self.state = state;
    }
}

/// The next free target of `prefix` (`vdb`), given the targets taken.
fn next_target(prefix: &str, taken: &[String]) -> String {
    (b'a'..=b'z')
        .map(|c| format!("{prefix}{}", c as char))
        .find(|t| !taken.contains(t))
        .unwrap_or_else(|| format!("{prefix}z"))
}

impl World {
    /// Image `id` as a user may see it: the user's, or oneadmin's catalogue.
    pub(super) fn usable_image(&self, method: &str, id: i64) -> Result<&ImageRec, Failure> {
        let img = self
            .images
            .get(&id)
            .ok_or_else(|| no_exists(method, "image", id))?;
        if img.uid != self.user.id && img.uid != 0 {
            return Err(not_authorized(method, self.user.id, "image", id));
        }
        Ok(img)
    }

    /// Image `id` as its owner may manage it.
    fn own_image(&self, method: &str, id: i64) -> Result<&ImageRec, Failure> {
        let img = self.usable_image(method, id)?;
        if img.uid != self.user.id {
            return Err(not_authorized(method, self.user.id, "image", id));
        }
        Ok(img)
    }

    /// `ImageManager::acquire_image`: VM `vm` uses image `id` (`attach`: a hot-plug,
    /// which cannot wait for a LOCKED image).
    pub(super) fn acquire(&mut self, id: i64, vm: i64, attach: bool) -> Result<(), String> {
        let Some(img) = self.images.get_mut(&id) else {
            return Err(format!("Image with ID: {id} does not exist"));
        };
        if !matches!(img.itype, 0..=2) {
            return Err(format!(
                "Image {id} ({}) of type {} cannot be used as DISK.",
                img.name,
                type_str(img.itype)
            ));
        }
        let locked = || format!("Cannot acquire image {id}, it is locked");
        let in_use = || format!("Cannot acquire image {id}, it is persistent and already in use");
        match img.state {
            READY => {
                img.vms.insert(vm);
                img.set_state(if img.persistent { USED_PERS } else { USED });
            }
            LOCKED if attach => return Err(locked()),
            LOCKED => {
                img.vms.insert(vm);
                img.set_state(if img.persistent {
                    LOCKED_USED_PERS
                } else {
                    LOCKED_USED
                });
            }
            USED_PERS | LOCKED_USED_PERS => return Err(in_use()),
            USED => {
                img.vms.insert(vm);
            }
            LOCKED_USED if attach => return Err(locked()),
            LOCKED_USED => {
                img.vms.insert(vm);
            }
            s => {
                return Err(format!(
                    "Cannot acquire image {id}, it is in state: {}",
                    image_state_str(s)
                ))
            }
        }
        Ok(())
    }

    /// `ImageManager::release_image`: VM `vm` no longer uses image `id`.
    pub(super) fn release(&mut self, id: i64, vm: i64) {
        let Some(img) = self.images.get_mut(&id) else {
            return;
        };
        if !img.vms.remove(&vm) {
            return;
        }
        if img.vms.is_empty() {
            match img.state {
                USED | USED_PERS if img.clones.is_empty() => img.set_state(READY),
                LOCKED_USED | LOCKED_USED_PERS => img.set_state(LOCKED),
                _ => {}
            }
        }
    }

    /// The datastore operations that are due.
    pub(super) fn settle_images(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.image_events)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.image_events = later;
        for (_, id, event) in due {
            match event {
                ImageEvent::Gone => {
                    self.images.remove(&id);
                }
                ImageEvent::Ready => {
                    let Some(img) = self.images.get_mut(&id) else {
                        continue;
                    };
                    match img.state {
                        LOCKED => img.set_state(READY),
                        LOCKED_USED => img.set_state(USED),
                        LOCKED_USED_PERS => img.set_state(USED_PERS),
                        _ => {}
                    }
                    let source = std::mem::replace(&mut img.cloning_id, -1);
                    self.release_clone(source, id);
                }
            }
        }
    }

    /// Image `copy` is no longer being cloned from `source`.
    fn release_clone(&mut self, source: i64, copy: i64) {
        let Some(src) = self.images.get_mut(&source) else {
            return;
        };
        src.clones.remove(&copy);
        if src.clones.is_empty() {
            match src.state {
                CLONE => src.set_state(READY),
                USED if src.vms.is_empty() => src.set_state(READY),
                _ => {}
            }
        }
    }

    fn later(&mut self, id: i64, event: ImageEvent) {
        let at = Instant::now() + self.delays.image;
        self.image_events.push((at, id, event));
    }

    /// Checks a new image's NAME: valid and not taken by another image of the user.
    fn check_image_name(&self, name: &str) -> Result<(), String> {
        if let Some(why) = name_error(name) {
            return Err(why);
        }
        if let Some(taken) = self
            .images
            .values()
            .find(|i| i.name == name && i.uid == self.user.id)
        {
            return Err(format!("NAME is already taken by IMAGE {}.", taken.id));
        }
        Ok(())
    }

    /// A new image of the user, LOCKED until its datastore operation is done.
    #[allow(clippy::too_many_arguments)]
    fn new_image(
        &mut self,
        name: String,
        itype: i64,
        persistent: bool,
        size_mb: i64,
        ds: i64,
        template: Vec<Element>,
        cloning_id: i64,
    ) -> i64 {
        let id = self.next_image;
        self.next_image += 1;
        let mut template = template;
        if attr(&template, "DEV_PREFIX").is_none() {
            template.push(Element::leaf("DEV_PREFIX", DEFAULT_DEVICE_PREFIX));
        }
        template.sort_by(|a, b| a.name.cmp(&b.name));
        self.images.insert(
            id,
            ImageRec {
                id,
                uid: self.user.id,
                gid: self.user.gid,
                uname: self.user.name.clone(),
                gname: self.user.gname.clone(),
                name,
                itype,
                persistent,
                size_mb,
                regtime: now_secs(),
                state: LOCKED,
                prev_state: LOCKED,
                ds,
                format: "raw".into(),
                vms: BTreeSet::new(),
                clones: BTreeSet::new(),
                cloning_id,
                template,
            },
        );
        self.later(id, ImageEvent::Ready);
        id
    }

    /// `one.image.allocate` of an empty image (the datastore driver's mkfs).
    pub(super) fn image_allocate(&mut self, method: &str, text: &str, ds: i64) -> Answer {
        let alloc = |msg: String| {
            fail(
                method,
                ALLOCATE,
                format!("Error allocating a new image. {msg}"),
            )
        };
        let template = parse_template(method, text)?;
        let Some((_, _, ds_type)) = DATASTORES.iter().find(|d| d.0 == ds) else {
            return Err(no_exists(method, "datastore", ds));
        };
        if *ds_type == 1 {
            return Err(fail(
                method,
                ALLOCATE,
                "New images can only be allocated in a files or image datastore.",
            ));
        }
        let name = attr(&template, "NAME").unwrap_or_default().to_owned();
        let itype = match attr(&template, "TYPE") {
            None => 0,
            Some(t) => type_of(t).ok_or_else(|| alloc(format!("Unknown image type {t}")))?,
        };
        if matches!(itype, 0..=2) && *ds_type != 0 {
            return Err(alloc(
                "Only IMAGES of type KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS datastore"
                    .into(),
            ));
        }
        if attr(&template, "PATH").is_some() || attr(&template, "SOURCE").is_some() {
            return Err(alloc(
                "the fake oned makes empty images only (no PATH or SOURCE)".into(),
            ));
        }
        let size: i64 =
            match attr(&template, "SIZE") {
                None => {
                    return Err(fail(method, INTERNAL, "Cannot determine image SIZE."));
                }
                Some(s) => s.trim().parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    fail(method, INTERNAL, format!("Cannot parse image SIZE: {s}"))
                })?,
            };
        self.check_image_name(&name).map_err(alloc)?;
        let persistent =
            attr(&template, "PERSISTENT").is_some_and(|p| p.eq_ignore_ascii_case("YES"));
        let kept: Vec<Element> = template
            .into_iter()
            .filter(|e| {
                !["NAME", "TYPE", "PERSISTENT", "SIZE", "FORMAT"].contains(&e.name.as_str())
            })
            .collect();
        let id = self.new_image(name, itype, persistent, size, ds, kept, -1);
        Ok(Value::Int(id))
    }

    /// `one.image.clone`: a copy of the template and the data, in the source's datastore
    /// (or `ds`), persistent as the source is (oned.conf's `DEFAULT_IMAGE_PERSISTENT`
    /// left unset).
    pub(super) fn image_clone(&mut self, method: &str, id: i64, name: &str, ds: i64) -> Answer {
        let alloc = |msg: String| {
            fail(
                method,
                ALLOCATE,
                format!("Error allocating a new image. {msg}"),
            )
        };
        let src = self.usable_image(method, id)?.clone();
        if !matches!(src.itype, 0..=2) {
            return Err(fail(
                method,
                ACTION,
                format!("{} images cannot be cloned.", type_str(src.itype)),
            ));
        }
        let ds = if ds == -1 { src.ds } else { ds };
        match DATASTORES.iter().find(|d| d.0 == ds) {
            None => return Err(no_exists(method, "datastore", ds)),
            Some((_, _, 0)) => {}
            Some(_) => {
                return Err(fail(
                    method,
                    ACTION,
                    "Clone only supported for IMAGE_DS Datastores",
                ))
            }
        }
        self.check_image_name(name).map_err(alloc)?;
        if !matches!(src.state, READY | USED | CLONE) {
            return Err(alloc(format!(
                "Cannot clone image in state: {}",
                image_state_str(src.state)
            )));
        }
        let new = self.new_image(
            name.to_owned(),
            src.itype,
            src.persistent,
            src.size_mb,
            ds,
            src.template.clone(),
            id,
        );
        if let Some(s) = self.images.get_mut(&id) {
            s.clones.insert(new);
            if s.state == READY {
                s.set_state(if s.persistent { CLONE } else { USED });
            }
        }
        Ok(Value::Int(new))
    }

    /// `one.image.persistent`, as `Image::persistent` allows it.
    pub(super) fn image_persistent(&mut self, method: &str, id: i64, persistent: bool) -> Answer {
        self.own_image(method, id)?;
        let Some(img) = self.images.get_mut(&id) else {
            return Err(no_exists(method, "image", id));
        };
        if !matches!(img.itype, 0..=2) {
            return Err(fail(
                method,
                ACTION,
                "KERNEL, RAMDISK and CONTEXT must be non-persistent",
            ));
        }
        if matches!(
            img.state,
            USED | CLONE | USED_PERS | LOCKED_USED | LOCKED_USED_PERS
        ) {
            return Err(fail(
                method,
                INTERNAL,
                format!(
                    "Could not make image {}: Image cannot be in state {}.",
                    if persistent {
                        "persistent"
                    } else {
                        "non-persistent"
                    },
                    image_state_str(img.state)
                ),
            ));
        }
        img.persistent = persistent;
        Ok(Value::Int(id))
    }

    /// `one.image.update`: the TEMPLATE replaced (0) or merged into (1).
    pub(super) fn image_update(
        &mut self,
        method: &str,
        id: i64,
        text: &str,
        update_type: i64,
    ) -> Answer {
        self.own_image(method, id)?;
        if !(0..=1).contains(&update_type) {
            return Err(fail(method, RPC_API, "Wrong update type"));
        }
        let template = parse_template(method, text).map_err(|f| match f {
            Failure::One { message, id, .. } => Failure::One {
                code: INTERNAL,
                message: message.replace("Parse error", "Cannot update template. Parse error"),
                id,
            },
            other => other,
        })?;
        let Some(img) = self.images.get_mut(&id) else {
            return Err(no_exists(method, "image", id));
        };
        if update_type == 0 {
            img.template = template;
        } else {
            for e in &template {
                img.template.retain(|m| m.name != e.name);
            }
            img.template.extend(template);
        }
        img.template.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Value::Int(id))
    }

    /// `one.image.delete`, as `ImageManager::delete_image` refuses or carries it out.
    pub(super) fn image_delete(&mut self, method: &str, id: i64) -> Answer {
        let img = self.own_image(method, id)?;
        let refuse = |why: String| Err(fail(method, ACTION, format!("Cannot delete image. {why}")));
        match img.state {
            READY if !img.vms.is_empty() => {
                return refuse(format!("There are {} VMs using it.", img.vms.len()))
            }
            CLONE => {
                return refuse(format!(
                    "There are {} active clone operations.",
                    img.clones.len()
                ))
            }
            USED if !img.clones.is_empty() && img.vms.is_empty() => {
                return refuse(format!(
                    "There are {} active clone operations.",
                    img.clones.len()
                ))
            }
            USED | USED_PERS | LOCKED_USED | LOCKED_USED_PERS => {
                return refuse(format!("There are {} VMs using it.", img.vms.len()))
            }
            _ => {}
        }
        let cloning_id = img.cloning_id;
        if let Some(img) = self.images.get_mut(&id) {
            img.set_state(DELETE);
            img.cloning_id = -1;
        }
        self.image_events.retain(|(_, i, _)| *i != id);
        if cloning_id != -1 {
            self.release_clone(cloning_id, id);
        }
        // A capture under way ends with its image.
        let saving = self
            .images
            .get(&id)
            .and_then(|i| attr(&i.template, "SAVED_VM_ID"))
            .and_then(|v| v.parse::<i64>().ok());
        for vm in self.vms.values_mut() {
            if matches!((vm.state, vm.lcm), (ACTIVE, 26..=28)) && saving == Some(vm.id) {
                vm.steps.clear();
                match vm.lcm {
                    26 => vm.set(ACTIVE, 3),
                    27 => vm.set(8, 0),
                    _ => vm.set(5, 0),
                }
            }
        }
        self.later(id, ImageEvent::Gone);
        Ok(Value::Int(id))
    }

    /// A DISK of a VM as oned writes it, from the request's attributes: the image's
    /// attributes (`Image::disk_attribute`), DISK_ID, and TARGET (the one asked for,
    /// else the next free one of its DEV_PREFIX).
    pub(super) fn expand_disk(
        &self,
        mut d: Vec<Element>,
        disk_id: i64,
        targets: &mut Vec<String>,
    ) -> Element {
        let image = attr(&d, "IMAGE_ID")
            .and_then(|i| i.trim().parse::<i64>().ok())
            .and_then(|i| self.images.get(&i));
        let mut prefix = attr(&d, "DEV_PREFIX").map(str::to_owned);
        match image {
            Some(img) => {
                if prefix.is_none() {
                    prefix = attr(&img.template, "DEV_PREFIX").map(str::to_owned);
                }
                let (ds_name, _) = DATASTORES
                    .iter()
                    .find(|x| x.0 == img.ds)
                    .map(|x| (x.1, x.2))
                    .unwrap_or(("default", 0));
                replace_attr(&mut d, "IMAGE", img.name.clone());
                replace_attr(&mut d, "IMAGE_UNAME", img.uname.clone());
                replace_attr(&mut d, "IMAGE_STATE", img.state.to_string());
                replace_attr(&mut d, "SIZE", img.size_mb.to_string());
                replace_attr(&mut d, "ORIGINAL_SIZE", img.size_mb.to_string());
                replace_attr(&mut d, "DATASTORE", ds_name.into());
                replace_attr(&mut d, "DATASTORE_ID", img.ds.to_string());
                replace_attr(
                    &mut d,
                    "SOURCE",
                    format!("/var/lib/one/datastores/{}/{}", img.ds, img.id),
                );
                replace_attr(&mut d, "TYPE", "FILE".into());
                replace_attr(&mut d, "READONLY", "NO".into());
                replace_attr(&mut d, "DISK_SNAPSHOT_TOTAL_SIZE", "0".into());
                if img.persistent {
                    replace_attr(&mut d, "PERSISTENT", "YES".into());
                    replace_attr(&mut d, "CLONE", "NO".into());
                    replace_attr(&mut d, "SAVE", "YES".into());
                } else {
                    replace_attr(&mut d, "CLONE", "YES".into());
                    replace_attr(&mut d, "SAVE", "NO".into());
                }
                if matches!(img.state, LOCKED | LOCKED_USED | LOCKED_USED_PERS) {
                    replace_attr(&mut d, "CLONING", "YES".into());
                }
            }
            None => {
                if attr(&d, "TYPE").is_none() {
                    replace_attr(&mut d, "TYPE", "fs".into());
                }
            }
        }
        let prefix = prefix.unwrap_or_else(|| DEFAULT_DEVICE_PREFIX.to_owned());
        replace_attr(&mut d, "DEV_PREFIX", prefix.clone());
        let target = match attr(&d, "TARGET") {
            Some(t) => t.to_owned(),
            None => next_target(&prefix, targets),
        };
        targets.push(target.clone());
        replace_attr(&mut d, "TARGET", target);
        replace_attr(&mut d, "DISK_ID", disk_id.to_string());
        d.sort_by(|a, b| a.name.cmp(&b.name));
        Element {
            name: "DISK".into(),
            text: String::new(),
            children: d,
        }
    }

    /// `one.vm.attach` (`DispatchManager::attach`).
    pub(super) fn vm_attach(&mut self, method: &str, id: i64, text: &str) -> Answer {
        let vm = self.own_vm(method, id)?;
        if vm.history.is_empty() {
            return Err(fail(method, ACTION, "VM is not running in any host"));
        }
        let (state, lcm, state_str) = (vm.state, vm.lcm, vm.state_str());
        let template = parse_template(method, text)?;
        let Some(disk) = template.into_iter().find(|e| e.name == "DISK") else {
            return Err(fail(method, INTERNAL, "Wrong format for DISK attribute"));
        };
        let poweroff = match (state, lcm) {
            (ACTIVE, 3) => false,
            (8, _) => true,
            _ => {
                return Err(fail(
                    method,
                    ACTION,
                    format!("Could not attach a new disk to VM {id}, wrong state {state_str}."),
                ))
            }
        };
        let mut targets: Vec<String> = vm
            .template
            .iter()
            .filter(|e| e.name == "DISK")
            .filter_map(|d| attr(&d.children, "TARGET").map(str::to_owned))
            .collect();
        if let Some(t) = attr(&disk.children, "TARGET") {
            if targets.iter().any(|x| x == t) {
                return Err(fail(
                    method,
                    ACTION,
                    format!("Target {t} is already in use."),
                ));
            }
        }
        let disk_id = vm
            .template
            .iter()
            .filter(|e| e.name == "DISK")
            .filter_map(|d| attr(&d.children, "DISK_ID").and_then(|i| i.parse::<i64>().ok()))
            .max()
            .map(|m| m + 1)
            .unwrap_or(0);
        if let Some(iid) =
            attr(&disk.children, "IMAGE_ID").and_then(|i| i.trim().parse::<i64>().ok())
        {
            self.usable_image(method, iid).map_err(|_| {
                fail(
                    method,
                    ACTION,
                    format!("Image with ID: {iid} does not exist"),
                )
            })?;
            self.acquire(iid, id, true)
                .map_err(|why| fail(method, ACTION, why))?;
        }
        let mut expanded = self.expand_disk(disk.children, disk_id, &mut targets);
        replace_attr(&mut expanded.children, "ATTACH", "YES".into());
        expanded.children.sort_by(|a, b| a.name.cmp(&b.name));
        let d = self.delays;
        if let Some(vm) = self.vms.get_mut(&id) {
            vm.template.push(expanded);
            sort_vm_template(&mut vm.template);
            vm.hotplug = Some((disk_id, true));
        }
        if poweroff {
            self.go(id, ACTIVE, 33, &[(d.hotplug, 8, 0, Effect::Hotplug)]);
        } else {
            self.go(id, ACTIVE, 17, &[(d.hotplug, ACTIVE, 3, Effect::Hotplug)]);
        }
        self.mark(id, 21);
        Ok(Value::Int(id))
    }

    /// `one.vm.detach` (`DispatchManager::detach`).
    pub(super) fn vm_detach(&mut self, method: &str, id: i64, disk_id: i64) -> Answer {
        let vm = self.own_vm(method, id)?;
        let (state, lcm, state_str) = (vm.state, vm.lcm, vm.state_str());
        let poweroff = match (state, lcm) {
            (ACTIVE, 3) => false,
            (8, _) => true,
            _ => {
                return Err(fail(
                    method,
                    ACTION,
                    format!("Could not detach disk from VM {id}, wrong state {state_str}."),
                ))
            }
        };
        let exists = vm.template.iter().any(|e| {
            e.name == "DISK" && attr(&e.children, "DISK_ID") == Some(&disk_id.to_string())
        });
        if !exists {
            return Err(fail(
                method,
                ACTION,
                format!("Could not detach disk with DISK_ID {disk_id}, it does not exist."),
            ));
        }
        let d = self.delays;
        if let Some(vm) = self.vms.get_mut(&id) {
            for e in vm.template.iter_mut().filter(|e| e.name == "DISK") {
                if attr(&e.children, "DISK_ID") == Some(&disk_id.to_string()) {
                    replace_attr(&mut e.children, "ATTACH", "YES".into());
                    e.children.sort_by(|a, b| a.name.cmp(&b.name));
                }
            }
            vm.hotplug = Some((disk_id, false));
        }
        if poweroff {
            self.go(id, ACTIVE, 34, &[(d.hotplug, 8, 0, Effect::Hotplug)]);
        } else {
            self.go(id, ACTIVE, 17, &[(d.hotplug, ACTIVE, 3, Effect::Hotplug)]);
        }
        self.mark(id, 22);
        Ok(Value::Int(id))
    }

    /// The hot-plug of VM `id` is done: an attached disk loses its ATTACH, a detached
    /// one leaves the VM and its image is released.
    pub(super) fn hotplug_done(&mut self, id: i64) {
        let Some(vm) = self.vms.get_mut(&id) else {
            return;
        };
        let Some((disk_id, attach)) = vm.hotplug.take() else {
            return;
        };
        let is_it = |e: &Element| {
            e.name == "DISK" && attr(&e.children, "DISK_ID") == Some(&disk_id.to_string())
        };
        if attach {
            for e in vm.template.iter_mut().filter(|e| is_it(e)) {
                e.children.retain(|c| c.name != "ATTACH");
            }
            return;
        }
        let image = vm
            .template
            .iter()
            .find(|e| is_it(e))
            .and_then(|e| attr(&e.children, "IMAGE_ID"))
            .and_then(|i| i.trim().parse::<i64>().ok());
        vm.template.retain(|e| !is_it(e));
        if let Some(i) = image {
            self.release(i, id);
        }
    }

    /// `one.vm.disksaveas`: a new image of the user from a disk of the VM.
    pub(super) fn vm_disksaveas(
        &mut self,
        method: &str,
        id: i64,
        disk_id: i64,
        name: &str,
        itype: &str,
    ) -> Answer {
        let vm = self.own_vm(method, id)?;
        let (state, lcm) = (vm.state, vm.lcm);
        let (busy, back) = match (state, lcm) {
            (ACTIVE, 3) => (26, (ACTIVE, 3)),
            (8, _) => (27, (8, 0)),
            (5, _) => (28, (5, 0)),
            _ => {
                return Err(fail(
                    method,
                    INTERNAL,
                    "VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.",
                ))
            }
        };
        let disk = vm
            .template
            .iter()
            .find(|e| {
                e.name == "DISK" && attr(&e.children, "DISK_ID") == Some(&disk_id.to_string())
            })
            .map(|e| e.children.clone());
        let Some(disk) = disk else {
            return Err(fail(
                method,
                INTERNAL,
                format!("Cannot use DISK. VM {id} has no DISK with DISK_ID {disk_id}"),
            ));
        };
        let Some(source) = attr(&disk, "IMAGE_ID").and_then(|i| i.trim().parse::<i64>().ok())
        else {
            return Err(fail(
                method,
                INTERNAL,
                format!("Cannot use DISK. DISK {disk_id} is a volatile disk, not an image"),
            ));
        };
        let Some(src) = self.images.get(&source).cloned() else {
            return Err(no_exists(method, "image", source));
        };
        let new_type = if itype.is_empty() {
            src.itype
        } else {
            type_of(itype).ok_or_else(|| {
                fail(
                    method,
                    ALLOCATE,
                    format!("Error allocating a new image. Unknown image type {itype}"),
                )
            })?
        };
        if let Err(why) = self.check_image_name(name) {
            return Err(fail(
                method,
                ALLOCATE,
                format!("Error allocating a new image. {why}"),
            ));
        }
        let size = attr(&disk, "SIZE")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(src.size_mb);
        let mut template = vec![
            Element::leaf("SAVED_DISK_ID", disk_id.to_string()),
            Element::leaf("SAVED_IMAGE_ID", source.to_string()),
            Element::leaf("SAVED_VM_ID", id.to_string()),
            Element::leaf("SAVE_AS_HOT", "YES"),
        ];
        if let Some(p) = attr(&src.template, "DEV_PREFIX") {
            template.push(Element::leaf("DEV_PREFIX", p));
        }
        let new = self.new_image(name.to_owned(), new_type, false, size, src.ds, template, -1);
        let d = self.delays;
        self.go(id, ACTIVE, busy, &[(d.image, back.0, back.1, Effect::None)]);
        self.mark(id, 40);
        Ok(Value::Int(new))
    }
}

/// An `IMAGE` document, per image.xsd (template attributes in name order).
pub(crate) fn image_document(out: &mut String, img: &ImageRec) {
    let _ = write!(
        out,
        "<IMAGE><ID>{id}</ID><UID>{uid}</UID><GID>{gid}</GID><UNAME>{uname}</UNAME><GNAME>{gname}</GNAME>\
         <NAME>{name}</NAME>",
        id = img.id,
        uid = img.uid,
        gid = img.gid,
        uname = escape(&img.uname),
        gname = escape(&img.gname),
        name = escape(&img.name)
    );
    permissions(out, true, img.uid == 0);
    let ds = DATASTORES
        .iter()
        .find(|d| d.0 == img.ds)
        .map(|d| d.1)
        .unwrap_or("default");
    let _ = write!(
        out,
        "<TYPE>{t}</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>{p}</PERSISTENT><REGTIME>{r}</REGTIME>\
         <MODTIME>{r}</MODTIME><SOURCE>/var/lib/one/datastores/{dsid}/{id}</SOURCE><PATH></PATH>\
         <FORMAT>{format}</FORMAT><FS></FS><SIZE>{size}</SIZE><STATE>{state}</STATE>\
         <PREV_STATE>{prev}</PREV_STATE><RUNNING_VMS>{running}</RUNNING_VMS>\
         <CLONING_OPS>{cloning}</CLONING_OPS><CLONING_ID>{cloning_id}</CLONING_ID>\
         <TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>{dsid}</DATASTORE_ID>\
         <DATASTORE>{ds}</DATASTORE><VMS>",
        t = img.itype,
        p = u8::from(img.persistent),
        r = img.regtime,
        dsid = img.ds,
        id = img.id,
        format = escape(&img.format),
        size = img.size_mb,
        state = img.state,
        prev = img.prev_state,
        running = img.vms.len(),
        cloning = img.clones.len(),
        cloning_id = img.cloning_id,
    );
    for v in &img.vms {
        let _ = write!(out, "<ID>{v}</ID>");
    }
    out.push_str("</VMS><CLONES>");
    for c in &img.clones {
        let _ = write!(out, "<ID>{c}</ID>");
    }
    out.push_str("</CLONES><APP_CLONES></APP_CLONES><TEMPLATE>");
    let mut template = img.template.clone();
    template.sort_by(|a, b| a.name.cmp(&b.name));
    write_attrs(out, &template);
    out.push_str(
        "</TEMPLATE><SNAPSHOTS><ALLOW_ORPHANS><![CDATA[NO]]></ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE>\
         <NEXT_SNAPSHOT>0</NEXT_SNAPSHOT></SNAPSHOTS><BACKUP_INCREMENTS></BACKUP_INCREMENTS></IMAGE>",
    );
}
