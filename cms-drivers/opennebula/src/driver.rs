//! The [`Driver`] implementation, and the mapping of OpenNebula's VM states.
//!
//! # Ids
//!
//! | cms | OpenNebula | example |
//! |---|---|---|
//! | instance | VM id | `42` |
//! | image | `image:` + image id (an OS disk image), or `template:` + VM template id | `image:12`, `template:7` |
//! | flavor | a configured size by name, or `template:` + VM template id (its CPU, VCPU and MEMORY) | `small`, `template:7` |
//! | network | virtual network id | `3` |
//! | location | cluster id | `0` |
//! | key pair | a line of the user's `SSH_PUBLIC_KEY`, named by its comment | `laptop` |
//! | volume | the id of a persistent DATABLOCK image of the user ([`volumes`]) | `21` |
//! | snapshot | the id of a non-persistent DATABLOCK image of the user ([`volumes`]) | `22` |
//! | security group | security group id ([`security_groups`]) | `101` |
//!
//! Public addresses are not offered: OpenNebula's core API has no address that
//! outlives a VM and moves between VMs (a NIC's address is a lease of its network, an
//! `EXTERNAL_IP` comes from the provider's IPAM), so the capabilities leave them out
//! and every address operation answers `Unsupported`. Nor is console output: the
//! consoles OpenNebula hands out are VNC and SPICE sessions.
//!
//! # What the driver records on a VM
//!
//! Besides what OpenNebula keeps (name, capacity, disks, NICs, context), a create puts
//! these attributes in the VM's user template, where OpenNebula keeps attributes it
//! does not know:
//!
//! | attribute | what |
//! |---|---|
//! | `CMS_TAGS` | the tags, as one JSON object (`{"env":"prod"}`); tag keys keep their case and punctuation, which OpenNebula attribute names could not |
//! | `CMS_CLIENT_TOKEN` | the client token, so that a repeated create finds the VM it made |
//! | `CMS_REQUEST_HASH` | a SHA-256 of the request (without token), to tell a repeat from another request with the same token |
//! | `CMS_IMAGE`, `CMS_FLAVOR`, `CMS_KEY_NAME` | the cms image, flavor and key pair it was made from |
//! | `CMS_OWNER` | the owner it was made for (`InstanceSpec::owner`), written in the same allocation |
//!
//! In its TEMPLATE, OpenNebula's own: a `DISK` per volume made with it (with
//! `CMS_DELETE_ON_TERMINATION`, see [`volumes`]) and `SECURITY_GROUPS` on each `NIC`.
//! An instance shows the groups of all its NICs (group 0, which every network adds,
//! included) and, as its volumes, its disks of persistent images but the root one
//! (DISK_ID 0), with their TARGET as the device.
//!
//! # Listing instances
//!
//! `one.vmpool.infoextended` with filter -3 (the connected user's VMs) and its paging
//! form (offset, `-page size`), so no call fetches the whole pool. (Not
//! `one.vmpool.info`: since OpenNebula 5.8 it answers each VM's short form, whose
//! USER_TEMPLATE keeps none of the `CMS_*` attributes owners, tags and client tokens
//! are read from, and whose disks have no TARGET.) See [`crate::paging`]
//! for how the page token (order, offset, id of the last VM) keeps paging exact while
//! VMs come and go. DONE VMs are left out unless the filter asks for `terminated`.
//! Filters: a state set that only one OpenNebula STATE can produce is pushed down as
//! the state argument (`terminated` → DONE, `suspended` → SUSPENDED, `running` →
//! ACTIVE); names, tags, owners and the remaining state conditions are applied here, on
//! windows of up to 100 VMs, reading at most 2,000 VMs per page before answering a
//! short (possibly empty) page with a token to go on. A filter on ids reads those VMs
//! one by one (`one.vm.info`).
//!
//! # Create
//!
//! From a VM template (`template:N`): `one.template.instantiate`, with an extra
//! template holding the flavor's capacity (unless the flavor is that template), the
//! NICs (when networks are named), the context changes (key, user data) merged into
//! the template's own `CONTEXT`, the placement and the `CMS_*` attributes. From a disk
//! image (`image:N`): `one.vm.allocate` with `DISK = [IMAGE_ID]`, the capacity, one
//! `NIC` per network (the configured default network when none is named), and a
//! `CONTEXT` with `NETWORK = YES`, the key (`$USER[SSH_PUBLIC_KEY]`, all of the user's
//! keys, when no key pair is named) and the user data (`USER_DATA`, base64, with
//! `USERDATA_ENCODING = base64`, as cloud-init reads it). A location becomes
//! `SCHED_REQUIREMENTS = "CLUSTER_ID = N"`. Security groups become `SECURITY_GROUPS`
//! on every NIC (from a VM template without named networks, on the template's own
//! NICs); they are checked to exist first, as oned skips unknown ones silently, and an
//! instance without NICs cannot be put in one (`InvalidArgument`: name a network or
//! configure `default_network`). Volumes asked for are made first and named as extra
//! `DISK`s (see [`volumes`]); a failed allocation deletes them again. Templates are
//! sent in OpenNebula's XML form, so no value needs the template language's quoting;
//! oned drops an attribute without a value from such a template, so the driver never
//! relies on writing an empty one.
//!
//! A client token is looked up first: in what this driver made, then among the user's
//! VMs (`CMS_CLIENT_TOKEN`); creates with the same token are serialized within the
//! driver. A VM that reached DONE no longer holds its token.
//!
//! # Actions
//!
//! `one.vm.action` with `resume` (start; `release` for a VM on hold), `poweroff`
//! (stop), `reboot`, `terminate` (delete). The VM's state is read first, so that the
//! trait's rules hold where OpenNebula would answer otherwise: repeating an action
//! under way answers the VM, an impossible transition answers `InvalidState`
//! (temporary when OpenNebula is only busy with the VM, as during a disk hot-plug or
//! while it boots). Deleting a VM whose soft shutdown is under way sends
//! `terminate-hard` (the only case where OpenNebula accepts the hard action and not the
//! soft one; its disks are going away anyway). A stop repeated during a soft power-off
//! does not escalate to `poweroff-hard`: that would pull the plug on a guest that is
//! being kept.
//!
//! # Images
//!
//! Images are the OS images the user may see (`one.imagepool.info`, filter -2) and VM
//! templates; captures and deletes are in [`images`]. An image is
//! `shared` when it belongs to another OpenNebula user than the driver's (the
//! catalogue): it cannot be deleted through this account and shows no owner. The
//! user's own images show the `CMS_OWNER` of their template. List filters are applied
//! while scanning, so pages hold only what the filter asks for.
//!
//! # Tags
//!
//! An update of an instance's tags reads the VM, applies the change to its `CMS_TAGS`
//! and writes the whole object back with `one.vm.update` in merge mode (1), which
//! replaces that one attribute and leaves the rest of the user template alone. Updates
//! of one VM through a driver go one at a time; a change that changes nothing writes
//! nothing. OpenNebula allows it in every state, DONE included.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use cms_core::{
    AddressCapabilities, Capabilities, ConsoleOutput, Driver, Error, ErrorKind, Flavor, FlavorId,
    Image, ImageCapabilities, ImageFilter, ImageId, ImageKind, ImageSpec, ImageState, Instance,
    InstanceAction, InstanceFilter, InstanceId, InstanceSpec, InstanceState, KeyPair, KeyPairSpec,
    Location, LocationId, Network, NetworkId, NetworkSpec, Operation, Page, PageRequest, PageToken,
    Result, SecurityGroup, SecurityGroupCapabilities, SecurityGroupFilter, SecurityGroupId,
    SecurityGroupSpec, SecurityRule, Snapshot, SnapshotCapabilities, SnapshotFilter, SnapshotId,
    SnapshotSpec, TagChanges, Tags, Volume, VolumeCapabilities, VolumeFilter, VolumeId, VolumeSpec,
};

use crate::client::{OneClient, RpcError, Target};
use crate::config::{OpenNebulaConfig, Size, INVALID_NAME_CHARS};
use crate::model::{
    Attribute, Attributes, ClusterPool, DocError, HasId, HostPool, Image as OneImage, ImagePool,
    User, VirtualNetwork, Vm, VmPool, VmTemplate, VmTemplatePool, VnetPool,
};
use crate::paging::{scan, Cursor, Scan};
use crate::xml::Element;
use crate::xmlrpc::Value;

pub mod images;
pub mod security_groups;
pub mod volumes;

pub use security_groups::{rules_of, DEFAULT_GROUP};
pub use volumes::{
    disk_use, map_snapshot_state, map_volume_state, DiskUse, Hotplug, ATTR_DELETE_ON_TERMINATION,
    ATTR_INSTANCE, ATTR_LOCATION, ATTR_NAME, ATTR_SNAPSHOT_ID, ATTR_VOLUME_ID,
};

/// The user-template attribute holding the tags (JSON).
pub const ATTR_TAGS: &str = "CMS_TAGS";
/// The user-template attribute holding the client token.
pub const ATTR_CLIENT_TOKEN: &str = "CMS_CLIENT_TOKEN";
/// The user-template attribute holding the hash of the create request.
pub const ATTR_REQUEST_HASH: &str = "CMS_REQUEST_HASH";
/// The user-template attribute holding the cms image id.
pub const ATTR_IMAGE: &str = "CMS_IMAGE";
/// The user-template attribute holding the cms flavor id.
pub const ATTR_FLAVOR: &str = "CMS_FLAVOR";
/// The user-template attribute holding the key pair name.
pub const ATTR_KEY_NAME: &str = "CMS_KEY_NAME";
/// The user-template attribute holding the owner the VM was made for.
pub const ATTR_OWNER: &str = "CMS_OWNER";

/// Page size when the caller gives none.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest page.
pub const MAX_PAGE: u32 = 500;
/// Client-side filtering reads windows of this many VMs…
const FILTER_WINDOW: usize = 100;
/// …and at most this many per page.
const FILTER_BUDGET: usize = 2_000;
/// The client-token lookup reads the pool in windows of this many VMs.
const TOKEN_WINDOW: usize = 500;
/// Tokens remembered by one driver.
const TOKEN_CACHE: usize = 10_000;
/// At most this many `one.vm.info` calls at once (listing by ids).
const PARALLEL_INFO: usize = 16;

const MAX_NAME: usize = 128;
const MAX_USER_DATA: usize = 16 * 1024;
const MAX_CLIENT_TOKEN: usize = 255;

/// OpenNebula's VM STATE names, by code (7 FAILED is no longer used).
pub const VM_STATES: [&str; 12] = [
    "INIT",
    "PENDING",
    "HOLD",
    "ACTIVE",
    "STOPPED",
    "SUSPENDED",
    "DONE",
    "FAILED",
    "POWEROFF",
    "UNDEPLOYED",
    "CLONING",
    "CLONING_FAILURE",
];

/// OpenNebula's LCM_STATE names, by code (13, 14, 55 and 58 are no longer used).
pub const LCM_STATES: [&str; 72] = [
    "LCM_INIT",
    "PROLOG",
    "BOOT",
    "RUNNING",
    "MIGRATE",
    "SAVE_STOP",
    "SAVE_SUSPEND",
    "SAVE_MIGRATE",
    "PROLOG_MIGRATE",
    "PROLOG_RESUME",
    "EPILOG_STOP",
    "EPILOG",
    "SHUTDOWN",
    "CANCEL",
    "FAILURE",
    "CLEANUP_RESUBMIT",
    "UNKNOWN",
    "HOTPLUG",
    "SHUTDOWN_POWEROFF",
    "BOOT_UNKNOWN",
    "BOOT_POWEROFF",
    "BOOT_SUSPENDED",
    "BOOT_STOPPED",
    "CLEANUP_DELETE",
    "HOTPLUG_SNAPSHOT",
    "HOTPLUG_NIC",
    "HOTPLUG_SAVEAS",
    "HOTPLUG_SAVEAS_POWEROFF",
    "HOTPLUG_SAVEAS_SUSPENDED",
    "SHUTDOWN_UNDEPLOY",
    "EPILOG_UNDEPLOY",
    "PROLOG_UNDEPLOY",
    "BOOT_UNDEPLOY",
    "HOTPLUG_PROLOG_POWEROFF",
    "HOTPLUG_EPILOG_POWEROFF",
    "BOOT_MIGRATE",
    "BOOT_FAILURE",
    "BOOT_MIGRATE_FAILURE",
    "PROLOG_MIGRATE_FAILURE",
    "PROLOG_FAILURE",
    "EPILOG_FAILURE",
    "EPILOG_STOP_FAILURE",
    "EPILOG_UNDEPLOY_FAILURE",
    "PROLOG_MIGRATE_POWEROFF",
    "PROLOG_MIGRATE_POWEROFF_FAILURE",
    "PROLOG_MIGRATE_SUSPEND",
    "PROLOG_MIGRATE_SUSPEND_FAILURE",
    "BOOT_UNDEPLOY_FAILURE",
    "BOOT_STOPPED_FAILURE",
    "PROLOG_RESUME_FAILURE",
    "PROLOG_UNDEPLOY_FAILURE",
    "DISK_SNAPSHOT_POWEROFF",
    "DISK_SNAPSHOT_REVERT_POWEROFF",
    "DISK_SNAPSHOT_DELETE_POWEROFF",
    "DISK_SNAPSHOT_SUSPENDED",
    "DISK_SNAPSHOT_REVERT_SUSPENDED",
    "DISK_SNAPSHOT_DELETE_SUSPENDED",
    "DISK_SNAPSHOT",
    "DISK_SNAPSHOT_REVERT",
    "DISK_SNAPSHOT_DELETE",
    "PROLOG_MIGRATE_UNKNOWN",
    "PROLOG_MIGRATE_UNKNOWN_FAILURE",
    "DISK_RESIZE",
    "DISK_RESIZE_POWEROFF",
    "DISK_RESIZE_UNDEPLOYED",
    "HOTPLUG_NIC_POWEROFF",
    "HOTPLUG_RESIZE",
    "HOTPLUG_SAVEAS_UNDEPLOYED",
    "HOTPLUG_SAVEAS_STOPPED",
    "BACKUP",
    "BACKUP_POWEROFF",
    "RESTORE",
];

/// STATE 3, the one whose LCM_STATE means something.
const ACTIVE: i64 = 3;
/// STATE 6.
const DONE: i64 = 6;
/// History ACTION codes of a reboot (VMActions REBOOT_ACTION, REBOOT_HARD_ACTION).
const REBOOT_ACTIONS: [i64; 2] = [15, 16];
/// The LCM states from which OpenNebula terminates a VM (DispatchManager::terminate).
const TERMINABLE_FAILURES: [i64; 14] = [36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61];

/// The raw state as cms shows it: `ACTIVE/RUNNING` for ACTIVE VMs, the STATE name
/// otherwise (`POWEROFF`); codes unknown to this driver as numbers (`STATE_12`,
/// `ACTIVE/LCM_80`).
pub fn raw_state(state: i64, lcm_state: i64) -> String {
    let state_name = usize::try_from(state)
        .ok()
        .and_then(|s| VM_STATES.get(s))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("STATE_{state}"));
    if state != ACTIVE {
        return state_name;
    }
    let lcm_name = usize::try_from(lcm_state)
        .ok()
        .and_then(|s| LCM_STATES.get(s))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("LCM_{lcm_state}"));
    format!("{state_name}/{lcm_name}")
}

/// Maps OpenNebula's STATE and LCM_STATE to the cms state; `last_action` is the ACTION
/// of the VM's latest history record.
///
/// | cms | STATE | LCM_STATE (when STATE is 3 ACTIVE) |
/// |---|---|---|
/// | Pending | 0 INIT, 1 PENDING, 2 HOLD, 10 CLONING | 0 LCM_INIT, 1 PROLOG, 2 BOOT, 7 SAVE_MIGRATE, 8 PROLOG_MIGRATE, 9 PROLOG_RESUME, 15 CLEANUP_RESUBMIT, 19 BOOT_UNKNOWN, 20 BOOT_POWEROFF, 21 BOOT_SUSPENDED, 22 BOOT_STOPPED, 31 PROLOG_UNDEPLOY, 32 BOOT_UNDEPLOY, 35 BOOT_MIGRATE, 60 PROLOG_MIGRATE_UNKNOWN |
/// | Running | | 3 RUNNING, 4 MIGRATE (live), 17 HOTPLUG, 24 HOTPLUG_SNAPSHOT, 25 HOTPLUG_NIC, 26 HOTPLUG_SAVEAS, 57 DISK_SNAPSHOT, 58 DISK_SNAPSHOT_REVERT, 59 DISK_SNAPSHOT_DELETE, 62 DISK_RESIZE, 66 HOTPLUG_RESIZE, 69 BACKUP |
/// | Stopping | | 5 SAVE_STOP, 6 SAVE_SUSPEND, 10 EPILOG_STOP, 18 SHUTDOWN_POWEROFF, 29 SHUTDOWN_UNDEPLOY, 30 EPILOG_UNDEPLOY |
/// | Stopped | 4 STOPPED, 8 POWEROFF, 9 UNDEPLOYED | 27 HOTPLUG_SAVEAS_POWEROFF, 33 HOTPLUG_PROLOG_POWEROFF, 34 HOTPLUG_EPILOG_POWEROFF, 43 PROLOG_MIGRATE_POWEROFF, 51 DISK_SNAPSHOT_POWEROFF, 52 DISK_SNAPSHOT_REVERT_POWEROFF, 53 DISK_SNAPSHOT_DELETE_POWEROFF, 63 DISK_RESIZE_POWEROFF, 64 DISK_RESIZE_UNDEPLOYED, 65 HOTPLUG_NIC_POWEROFF, 67 HOTPLUG_SAVEAS_UNDEPLOYED, 68 HOTPLUG_SAVEAS_STOPPED, 70 BACKUP_POWEROFF, 71 RESTORE |
/// | Rebooting | | 2 BOOT when the latest history action is a reboot (15 or 16) |
/// | Suspended | 5 SUSPENDED | 28 HOTPLUG_SAVEAS_SUSPENDED, 45 PROLOG_MIGRATE_SUSPEND, 54 DISK_SNAPSHOT_SUSPENDED, 55 DISK_SNAPSHOT_REVERT_SUSPENDED, 56 DISK_SNAPSHOT_DELETE_SUSPENDED |
/// | Terminating | | 11 EPILOG, 12 SHUTDOWN, 13 CANCEL, 23 CLEANUP_DELETE |
/// | Terminated | 6 DONE | |
/// | Error | 7 FAILED, 11 CLONING_FAILURE | 14 FAILURE, 36 BOOT_FAILURE, 37 BOOT_MIGRATE_FAILURE, 38 PROLOG_MIGRATE_FAILURE, 39 PROLOG_FAILURE, 40 EPILOG_FAILURE, 41 EPILOG_STOP_FAILURE, 42 EPILOG_UNDEPLOY_FAILURE, 44 PROLOG_MIGRATE_POWEROFF_FAILURE, 46 PROLOG_MIGRATE_SUSPEND_FAILURE, 47 BOOT_UNDEPLOY_FAILURE, 48 BOOT_STOPPED_FAILURE, 49 PROLOG_RESUME_FAILURE, 50 PROLOG_UNDEPLOY_FAILURE, 61 PROLOG_MIGRATE_UNKNOWN_FAILURE |
/// | Unknown | any other | 16 UNKNOWN, any other |
///
/// The states of operations on a powered-off or suspended VM (disk snapshots,
/// hot-plugs, backups) stay Stopped or Suspended: the guest does not run meanwhile.
/// OpenNebula carries out a reboot without leaving RUNNING, so Rebooting shows only
/// where a reboot leads through BOOT.
pub fn map_state(state: i64, lcm_state: i64, last_action: Option<i64>) -> InstanceState {
    use InstanceState::*;
    match state {
        0 | 1 | 2 | 10 => Pending,
        ACTIVE => match lcm_state {
            2 if last_action.is_some_and(|a| REBOOT_ACTIONS.contains(&a)) => Rebooting,
            0 | 1 | 2 | 7 | 8 | 9 | 15 | 19..=22 | 31 | 32 | 35 | 60 => Pending,
            3 | 4 | 17 | 24..=26 | 57..=59 | 62 | 66 | 69 => Running,
            5 | 6 | 10 | 18 | 29 | 30 => Stopping,
            27 | 33 | 34 | 43 | 51..=53 | 63..=65 | 67 | 68 | 70 | 71 => Stopped,
            28 | 45 | 54..=56 => Suspended,
            11 | 12 | 13 | 23 => Terminating,
            14 | 36..=42 | 44 | 46..=50 | 61 => Error,
            _ => Unknown,
        },
        4 | 8 | 9 => Stopped,
        5 => Suspended,
        DONE => Terminated,
        7 | 11 => Error,
        _ => Unknown,
    }
}

/// The state a VM is in once OpenNebula accepted an action, when oned's life-cycle
/// manager has not yet moved it (it works asynchronously).
fn accepted_state(action: InstanceAction) -> Option<InstanceState> {
    match action {
        InstanceAction::Start => Some(InstanceState::Pending),
        InstanceAction::Stop => Some(InstanceState::Stopping),
        InstanceAction::Reboot => None,
        InstanceAction::Delete => Some(InstanceState::Terminating),
    }
}

/// What to do for an action, given the VM's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Send `one.vm.action` with this action.
    Call(&'static str),
    /// The action is under way or done: answer the VM as it is.
    AsIs,
    /// The transition is impossible now.
    Refuse { hint: &'static str, temporary: bool },
}

/// Decides an action from the VM's STATE and LCM_STATE: OpenNebula's own rules
/// (DispatchManager) and the trait's (repeats answer, impossible transitions refuse).
pub(crate) fn plan(action: InstanceAction, state: i64, lcm: i64, last_action: Option<i64>) -> Plan {
    use InstanceState as S;
    let mapped = map_state(state, lcm, last_action);
    let busy = || Plan::Refuse {
        hint: "; OpenNebula is busy with it, try again shortly",
        temporary: true,
    };
    let refuse = |hint: &'static str| Plan::Refuse {
        hint,
        temporary: false,
    };
    match action {
        InstanceAction::Start => match (state, lcm) {
            (4 | 5 | 8 | 9, _) | (ACTIVE, 16) => Plan::Call("resume"),
            (2, _) => Plan::Call("release"),
            _ => match mapped {
                S::Pending => Plan::AsIs,
                S::Stopped | S::Suspended => busy(),
                S::Running | S::Rebooting => refuse("; there is nothing to start"),
                S::Stopping => refuse("; wait until it is stopped"),
                S::Terminating | S::Terminated => refuse("; it is terminated"),
                _ => refuse(""),
            },
        },
        InstanceAction::Stop => match (state, lcm) {
            (ACTIVE, 3 | 16) => Plan::Call("poweroff"),
            _ => match mapped {
                S::Stopping => Plan::AsIs,
                S::Running => busy(),
                S::Pending | S::Rebooting => refuse("; wait until it is running"),
                S::Stopped | S::Suspended => refuse("; there is nothing to stop"),
                S::Terminating | S::Terminated => refuse("; it is terminated"),
                _ => refuse(""),
            },
        },
        InstanceAction::Reboot => match (state, lcm) {
            (ACTIVE, 3) => Plan::Call("reboot"),
            _ => match mapped {
                S::Rebooting => Plan::AsIs,
                S::Running => busy(),
                S::Pending => refuse("; wait until it is running"),
                S::Stopped | S::Stopping | S::Suspended => refuse("; start it instead"),
                S::Terminating | S::Terminated => refuse("; it is terminated"),
                _ => refuse(""),
            },
        },
        InstanceAction::Delete => match (state, lcm) {
            (DONE, _) => Plan::AsIs,
            // A soft shutdown under way: the hard one is what OpenNebula accepts.
            (ACTIVE, 12) => Plan::Call("terminate-hard"),
            (ACTIVE, 11 | 13 | 23) => Plan::AsIs,
            (ACTIVE, 3 | 16) => Plan::Call("terminate"),
            (ACTIVE, l) if TERMINABLE_FAILURES.contains(&l) => Plan::Call("terminate"),
            (ACTIVE, _) => Plan::Refuse {
                hint: "; OpenNebula cannot terminate it until the operation under way ends, try again shortly",
                temporary: true,
            },
            (0..=2 | 4 | 5 | 7..=11, _) => Plan::Call("terminate"),
            _ => refuse(""),
        },
    }
}

/// A cms image id, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageRef {
    /// `image:N`
    Disk(i64),
    /// `template:N`
    Template(i64),
}

impl ImageRef {
    pub(crate) fn parse(id: &str) -> Option<ImageRef> {
        if let Some(n) = id.strip_prefix("image:") {
            parse_oid(n).map(ImageRef::Disk)
        } else if let Some(n) = id.strip_prefix("template:") {
            parse_oid(n).map(ImageRef::Template)
        } else {
            None
        }
    }
}

/// An OpenNebula object id: digits, within `int`.
fn parse_oid(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>()
        .ok()
        .filter(|i| *i <= i64::from(i32::MAX))
}

/// A capacity: OpenNebula's CPU share, VCPU and MEMORY (MiB).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Capacity {
    cpu: f64,
    vcpu: Option<u32>,
    memory_mib: u64,
}

impl Capacity {
    fn of_template(t: &Attributes) -> Option<Capacity> {
        let cpu: f64 = t.parse("CPU").filter(|c: &f64| c.is_finite() && *c > 0.0)?;
        let memory_mib: u64 = t.parse("MEMORY").filter(|m| *m > 0)?;
        Some(Capacity {
            cpu,
            vcpu: t.parse("VCPU").filter(|v| *v > 0),
            memory_mib,
        })
    }

    fn of_size(s: &Size) -> Capacity {
        Capacity {
            cpu: s.cpu,
            vcpu: Some(s.vcpu),
            memory_mib: s.memory_mib,
        }
    }

    fn elements(&self) -> Vec<Element> {
        let mut v = vec![Element::leaf("CPU", format_cpu(self.cpu))];
        if let Some(vcpu) = self.vcpu {
            v.push(Element::leaf("VCPU", vcpu.to_string()));
        }
        v.push(Element::leaf("MEMORY", self.memory_mib.to_string()));
        v
    }
}

fn format_cpu(cpu: f64) -> String {
    format!("{cpu}")
}

/// A vector attribute.
fn vector(name: &str, attrs: Vec<(&str, String)>) -> Element {
    Element {
        name: name.into(),
        text: String::new(),
        children: attrs
            .into_iter()
            .map(|(k, v)| Element::leaf(k, v))
            .collect(),
    }
}

/// A template in OpenNebula's XML form.
fn template_xml(children: Vec<Element>) -> String {
    let mut out = String::new();
    Element {
        name: "TEMPLATE".into(),
        text: String::new(),
        children,
    }
    .write(&mut out);
    out
}

/// Serializes work per key: the creates that carry the same client token, the tag
/// updates of one VM.
#[derive(Default)]
struct TokenLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct TokenGuard<'a> {
    owner: &'a TokenLocks,
    token: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl TokenLocks {
    async fn lock(&self, token: &str) -> TokenGuard<'_> {
        let m = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(token.to_owned())
            .or_default()
            .clone();
        TokenGuard {
            owner: self,
            token: token.to_owned(),
            _guard: m.lock_owned().await,
        }
    }
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map's and this guard's: nobody else waits.
        if locks
            .get(&self.token)
            .is_some_and(|m| Arc::strong_count(m) <= 2)
        {
            locks.remove(&self.token);
        }
    }
}

struct Inner {
    client: OneClient,
    config: OpenNebulaConfig,
    capabilities: Capabilities,
    /// Client token -> VM id, for the VMs this driver made.
    tokens: Mutex<HashMap<String, i64>>,
    token_locks: TokenLocks,
    /// Tag updates are read-modify-write of a VM's `CMS_TAGS`, serialized per VM id.
    tag_locks: TokenLocks,
    /// Key pair changes are read-modify-write of the user's template.
    key_lock: tokio::sync::Mutex<()>,
    /// Rule changes are read-modify-write of a group's template, serialized per group.
    group_locks: TokenLocks,
    /// The clusters' datastores, and when they were read (volume locations).
    placement: Mutex<Option<(Instant, volumes::Placement)>>,
}

/// The OpenNebula driver (see the [module documentation](self)).
///
/// Cloning is cheap; clones share the connection pool and the client-token memory.
#[derive(Clone)]
pub struct OpenNebulaDriver {
    inner: Arc<Inner>,
}

impl fmt::Debug for OpenNebulaDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenNebulaDriver")
            .field("endpoint", &self.inner.client.endpoint())
            .field("username", &self.inner.client.username())
            .finish_non_exhaustive()
    }
}

/// What the driver declares: every instance, image, flavor, network, location and key
/// pair operation (console output excepted: OpenNebula keeps none), volumes and
/// snapshots as DATABLOCK images, security groups without group peers; no public
/// addresses (OpenNebula's core API has no floating public IPs: a NIC's address comes
/// with its lease).
pub fn capabilities() -> Capabilities {
    let mut c = Capabilities::all();
    c.instances.max_page_size = MAX_PAGE;
    c.instances.console_output = false;
    c.images = ImageCapabilities {
        list: true,
        get: true,
        create: true,
        delete: true,
        owner: true,
    };
    c.volumes = VolumeCapabilities {
        list: true,
        get: true,
        create: true,
        delete: true,
        attach: true,
        detach: true,
        from_snapshot: true,
        client_token: true,
        tags: true,
        owner: true,
        max_page_size: MAX_PAGE,
    };
    c.snapshots = SnapshotCapabilities {
        list: true,
        get: true,
        create: true,
        delete: true,
        tags: true,
        owner: true,
    };
    c.security_groups = SecurityGroupCapabilities {
        list: true,
        get: true,
        create: true,
        delete: true,
        update_rules: true,
        egress: true,
        group_peers: false,
        tags: true,
        owner: true,
    };
    c.addresses = AddressCapabilities::default();
    c
}

fn with_op(op: Operation) -> impl FnOnce(Error) -> Error {
    move |e| e.with_operation(op).with_context("driver", "opennebula")
}

impl OpenNebulaDriver {
    /// A driver for `config`, with the password from `password_env` or `auth_file`.
    /// Nothing is sent until the first operation.
    pub fn new(config: OpenNebulaConfig) -> Result<OpenNebulaDriver> {
        let (user, password) = config.credentials()?;
        OpenNebulaDriver::with_session(config, &user, &password)
    }

    /// A driver for `config` with a session given by the caller (`password_env` and
    /// `auth_file` are not read).
    pub fn with_session(
        config: OpenNebulaConfig,
        username: &str,
        password: &str,
    ) -> Result<OpenNebulaDriver> {
        let mut checked = config.clone();
        if checked.password_env.is_none() && checked.auth_file.is_none() {
            checked.password_env = Some("UNUSED".into());
        }
        if checked.username.is_none() {
            checked.username = Some(username.to_owned());
        }
        checked.validate()?;
        if username.is_empty() || username.contains(':') || password.is_empty() {
            return Err(Error::invalid_argument(
                "username",
                "the session needs a user name without `:` and a non-empty password",
            ));
        }
        let client = OneClient::new(
            &config.endpoint,
            username,
            password,
            Duration::from_secs(config.timeout_secs),
        )?;
        Ok(OpenNebulaDriver {
            inner: Arc::new(Inner {
                client,
                config,
                capabilities: capabilities(),
                tokens: Mutex::new(HashMap::new()),
                token_locks: TokenLocks::default(),
                tag_locks: TokenLocks::default(),
                key_lock: tokio::sync::Mutex::new(()),
                group_locks: TokenLocks::default(),
                placement: Mutex::new(None),
            }),
        })
    }

    /// The XML-RPC client.
    pub fn client(&self) -> &OneClient {
        &self.inner.client
    }

    /// The configuration.
    pub fn config(&self) -> &OpenNebulaConfig {
        &self.inner.config
    }

    // ---- calls ----

    async fn call(&self, method: &str, args: &[Value], target: &Target) -> Result<Value> {
        self.inner
            .client
            .call(method, args)
            .await
            .map_err(|e| e.into_error(target))
    }

    async fn call_doc<T>(
        &self,
        method: &str,
        args: &[Value],
        target: &Target,
        parse: impl FnOnce(&str) -> std::result::Result<T, DocError>,
    ) -> Result<T> {
        let value = self.call(method, args, target).await?;
        let Value::Str(body) = value else {
            return Err(RpcError::Decode {
                method: method.to_owned(),
                message: format!("expected a document, got a {}", value.type_name()),
            }
            .into_error(target));
        };
        parse(&body).map_err(|e| {
            RpcError::Decode {
                method: method.to_owned(),
                message: self.inner.client.redact(&e.to_string()),
            }
            .into_error(target)
        })
    }

    async fn call_id(&self, method: &str, args: &[Value], target: &Target) -> Result<i64> {
        match self.call(method, args, target).await? {
            Value::Int(id) => Ok(id),
            other => Err(RpcError::Decode {
                method: method.to_owned(),
                message: format!("expected the new object's id, got a {}", other.type_name()),
            }
            .into_error(target)),
        }
    }

    async fn vm_info(&self, id: i64) -> Result<Vm> {
        self.call_doc(
            "one.vm.info",
            &[Value::Int(id), Value::Bool(false)],
            &Target::vm(id),
            Vm::from_xml,
        )
        .await
    }

    /// One window of the user's VMs in the paging form of `one.vmpool.infoextended`,
    /// whose VMs are full documents (`one.vmpool.info` answers the short form, without
    /// the USER_TEMPLATE attributes the driver keeps or the disks' TARGETs).
    async fn vm_window(&self, offset: u64, size: u64, state: i64) -> Result<Vec<Vm>> {
        Ok(self
            .call_doc(
                "one.vmpool.infoextended",
                &[
                    Value::Int(-3),
                    Value::Int(offset as i64),
                    Value::Int(-(size as i64)),
                    Value::Int(state),
                ],
                &Target::pool("VM"),
                VmPool::from_xml,
            )
            .await?
            .vms)
    }

    /// One window of a pool whose info call takes (filter, start, end), filter -2
    /// (everything the user may see).
    async fn pool_window<T>(
        &self,
        method: &str,
        pool: &str,
        offset: u64,
        size: u64,
        parse: fn(&str) -> std::result::Result<Vec<T>, DocError>,
    ) -> Result<Vec<T>> {
        self.pool_window_of(method, pool, -2, offset, size, parse)
            .await
    }

    /// One window of a pool whose info call takes (filter, start, end), with the filter
    /// flag `filter` (-2 everything the user may see, -3 the user's own).
    async fn pool_window_of<T>(
        &self,
        method: &str,
        pool: &str,
        filter: i64,
        offset: u64,
        size: u64,
        parse: fn(&str) -> std::result::Result<Vec<T>, DocError>,
    ) -> Result<Vec<T>> {
        self.call_doc(
            method,
            &[
                Value::Int(filter),
                Value::Int(offset as i64),
                Value::Int(-(size as i64)),
            ],
            &Target::pool(pool),
            parse,
        )
        .await
    }

    async fn image_info(&self, id: i64, cms_id: &str) -> Result<OneImage> {
        self.call_doc(
            "one.image.info",
            &[Value::Int(id), Value::Bool(false)],
            &Target::image(cms_id),
            OneImage::from_xml,
        )
        .await
    }

    async fn template_info(&self, id: i64, cms_id: &str) -> Result<VmTemplate> {
        self.call_doc(
            "one.template.info",
            &[Value::Int(id), Value::Bool(false), Value::Bool(false)],
            &Target::template(cms_id),
            VmTemplate::from_xml,
        )
        .await
    }

    async fn vnet_info(&self, id: i64) -> Result<VirtualNetwork> {
        self.call_doc(
            "one.vn.info",
            &[Value::Int(id), Value::Bool(false)],
            &Target::vnet(id),
            VirtualNetwork::from_xml,
        )
        .await
    }

    async fn user_info(&self) -> Result<User> {
        self.call_doc(
            "one.user.info",
            &[Value::Int(-1), Value::Bool(false)],
            &Target::user(),
            User::from_xml,
        )
        .await
    }

    // ---- conversions ----

    /// The cms view of a VM (short or full document).
    pub fn instance_of(&self, vm: &Vm) -> Instance {
        let last_action = vm.last_history().map(|h| h.action);
        let ut = &vm.user_template;
        let tags = match ut.get(ATTR_TAGS) {
            None => Tags::new(),
            Some(json) => serde_json::from_str(json).unwrap_or_else(|e| {
                tracing::warn!(vm = vm.id, error = %e, "ignoring a CMS_TAGS that is not a JSON object of strings");
                Tags::new()
            }),
        };
        let image_id = ut
            .get(ATTR_IMAGE)
            .filter(|v| !v.is_empty())
            .map(ImageId::new)
            .or_else(|| {
                vm.disks()
                    .find_map(|d| d.get("IMAGE_ID").and_then(parse_oid))
                    .map(|i| ImageId::new(format!("image:{i}")))
            });
        let nics: Vec<&Attributes> = vm.nics().collect();
        Instance {
            id: InstanceId::new(vm.id.to_string()),
            name: vm.name.clone(),
            state: map_state(vm.state, vm.lcm_state, last_action),
            raw_state: vm
                .unread_state
                .clone()
                .unwrap_or_else(|| raw_state(vm.state, vm.lcm_state)),
            image_id,
            flavor_id: ut
                .get(ATTR_FLAVOR)
                .filter(|v| !v.is_empty())
                .map(FlavorId::new),
            location_id: vm
                .last_history()
                .filter(|h| h.cluster_id >= 0)
                .map(|h| LocationId::new(h.cluster_id.to_string())),
            network_ids: nics
                .iter()
                .filter_map(|n| n.get("NETWORK_ID"))
                .filter(|n| !n.is_empty())
                .map(NetworkId::new)
                .collect(),
            key_name: ut
                .get(ATTR_KEY_NAME)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            private_ips: nics
                .iter()
                .filter_map(|n| n.get("IP"))
                .filter(|ip| !ip.is_empty())
                .map(str::to_owned)
                .collect(),
            public_ips: nics
                .iter()
                .filter_map(|n| n.get("EXTERNAL_IP"))
                .filter(|ip| !ip.is_empty())
                .map(str::to_owned)
                .collect(),
            tags,
            created_at: (vm.stime > 0)
                .then(|| DateTime::<Utc>::from_timestamp(vm.stime, 0))
                .flatten(),
            client_token: ut
                .get(ATTR_CLIENT_TOKEN)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            owner: ut
                .get(ATTR_OWNER)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            security_group_ids: groups_of_nics(&nics).into(),
            volumes: volumes::instance_volumes(vm),
        }
    }

    /// The cms view of an OS image (see [`images`] for `shared` and
    /// `owner`).
    pub fn image_of_disk(&self, img: &OneImage) -> Image {
        let shared = img.uname != self.inner.client.username();
        Image {
            id: ImageId::new(format!("image:{}", img.id)),
            name: img.name.clone(),
            description: img
                .template
                .get("DESCRIPTION")
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            kind: ImageKind::Disk,
            os: img
                .template
                .get("OS")
                .filter(|o| !o.is_empty())
                .map(str::to_lowercase),
            architecture: img
                .template
                .get("ARCH")
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            state: map_image_state(img.state),
            raw_state: image_state_name(img.state),
            min_disk_gib: u32::try_from((img.size_mb.max(0) + 1023) / 1024)
                .ok()
                .filter(|g| *g > 0),
            tags: tags_of(&img.template),
            shared,
            owner: (!shared)
                .then(|| img.template.non_empty(ATTR_OWNER).map(str::to_owned))
                .flatten(),
            source_instance_id: (!shared)
                .then(|| {
                    img.template
                        .non_empty("SAVED_VM_ID")
                        .and_then(parse_oid)
                        .map(|v| InstanceId::new(v.to_string()))
                })
                .flatten(),
            created_at: (img.regtime > 0)
                .then(|| DateTime::<Utc>::from_timestamp(img.regtime, 0))
                .flatten(),
        }
    }

    /// The cms view of a VM template.
    pub fn image_of_template(&self, t: &VmTemplate) -> Image {
        let shared = t.uname != self.inner.client.username();
        Image {
            id: ImageId::new(format!("template:{}", t.id)),
            name: t.name.clone(),
            description: t
                .template
                .get("DESCRIPTION")
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            kind: ImageKind::Template,
            os: None,
            architecture: t
                .template
                .vector("OS")
                .and_then(|os| os.get("ARCH"))
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            // Templates have no state in OpenNebula: they can always be instantiated.
            state: ImageState::Available,
            raw_state: String::new(),
            min_disk_gib: None,
            tags: tags_of(&t.template),
            shared,
            owner: (!shared)
                .then(|| t.template.non_empty(ATTR_OWNER).map(str::to_owned))
                .flatten(),
            source_instance_id: None,
            created_at: (t.regtime > 0)
                .then(|| DateTime::<Utc>::from_timestamp(t.regtime, 0))
                .flatten(),
        }
    }

    fn flavor_of_template(t: &VmTemplate) -> Option<Flavor> {
        let c = Capacity::of_template(&t.template)?;
        Some(Flavor {
            id: FlavorId::new(format!("template:{}", t.id)),
            name: t.name.clone(),
            vcpus: c.vcpu.unwrap_or_else(|| c.cpu.ceil().max(1.0) as u32),
            memory_mib: c.memory_mib,
            disk_gib: None,
        })
    }

    fn flavor_of_size(s: &Size) -> Flavor {
        Flavor {
            id: FlavorId::new(s.name.clone()),
            name: s.name.clone(),
            vcpus: s.vcpu,
            memory_mib: s.memory_mib,
            disk_gib: None,
        }
    }

    fn network_of(&self, v: &VirtualNetwork) -> Network {
        Network {
            id: NetworkId::new(v.id.to_string()),
            name: v.name.clone(),
            cidr: network_cidr(v),
            location_id: v.clusters.first().map(|c| LocationId::new(c.to_string())),
            is_default: self.inner.config.default_network == Some(v.id),
            raw_state: vnet_state_name(v.state),
            tags: tags_of(&v.template),
        }
    }

    // ---- instances ----

    async fn list_pool_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
        limit: usize,
    ) -> Result<Page<Instance>> {
        let op = Operation::ListInstances;
        let cursor = match &page.token {
            None => None,
            Some(t) => Some(
                t.as_str()
                    .strip_prefix("vm.")
                    .and_then(Cursor::decode)
                    .ok_or_else(|| bad_token(op, t))?,
            ),
        };
        let state = pushdown_state(&filter.states);
        let client_side = !filter.is_empty();
        let window = if client_side { FILTER_WINDOW } else { 1 };
        let budget = if client_side {
            FILTER_BUDGET
        } else {
            usize::MAX
        };
        let include_done = filter.states.contains(&InstanceState::Terminated);
        let found: Scan<Row<Instance>> = scan(
            |offset, size| async move {
                let vms = self.vm_window(offset, size, state).await?;
                Ok::<_, Error>(
                    vms.iter()
                        .map(|vm| Row {
                            id: vm.id,
                            item: self.instance_of(vm),
                        })
                        .collect(),
                )
            },
            cursor,
            limit,
            window,
            budget,
            |row| {
                (include_done || row.item.state != InstanceState::Terminated)
                    && filter.matches(&row.item)
            },
        )
        .await?;
        Ok(Page {
            items: found.items.into_iter().map(|r| r.item).collect(),
            next: found
                .next
                .map(|c| PageToken::new(format!("vm.{}", c.encode()))),
        })
    }

    async fn list_instances_by_id(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
        limit: usize,
    ) -> Result<Page<Instance>> {
        let op = Operation::ListInstances;
        let after = match &page.token {
            None => -1,
            Some(t) => t
                .as_str()
                .strip_prefix("ids.")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| bad_token(op, t))?,
        };
        let mut ids: Vec<i64> = filter
            .ids
            .iter()
            .filter_map(|i| parse_oid(i.as_str()))
            .filter(|i| *i > after)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let include_done = filter.states.contains(&InstanceState::Terminated);
        let vms: Vec<Option<Vm>> = futures::stream::iter(ids.iter().copied())
            .map(|id| async move {
                match self.vm_info(id).await {
                    Ok(vm) => Ok(Some(vm)),
                    // Not there, or another user's: the pool listing would not
                    // show it either.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::NotFound | ErrorKind::PermissionDenied
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffered(PARALLEL_INFO)
            .try_collect()
            .await?;
        let items = vms
            .iter()
            .flatten()
            .filter(|vm| vm.uname == self.inner.client.username())
            .map(|vm| self.instance_of(vm))
            .filter(|i| (include_done || i.state != InstanceState::Terminated) && filter.matches(i))
            .collect();
        let next = match (more, ids.last()) {
            (true, Some(last)) => Some(PageToken::new(format!("ids.{last}"))),
            _ => None,
        };
        Ok(Page { items, next })
    }

    fn remember_token(&self, token: &str, id: i64) {
        let mut tokens = self.inner.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= TOKEN_CACHE {
            tokens.clear();
        }
        tokens.insert(token.to_owned(), id);
    }

    /// The VM (not DONE) that carries `token`, if any.
    async fn find_by_token(&self, token: &str) -> Result<Option<Vm>> {
        let cached = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .copied();
        if let Some(id) = cached {
            match self.vm_info(id).await {
                Ok(vm)
                    if vm.state != DONE
                        && vm.user_template.get(ATTR_CLIENT_TOKEN) == Some(token) =>
                {
                    return Ok(Some(vm))
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.inner
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(token);
        }
        let found = scan(
            |offset, size| self.vm_window(offset, size, -1),
            None,
            1,
            TOKEN_WINDOW,
            usize::MAX,
            |vm: &Vm| vm.user_template.get(ATTR_CLIENT_TOKEN) == Some(token),
        )
        .await?;
        match found.items.first() {
            None => Ok(None),
            Some(vm) => {
                self.remember_token(token, vm.id);
                Ok(Some(self.vm_info(vm.id).await?))
            }
        }
    }

    fn capacity_of_flavor<'a>(&'a self, flavor: &FlavorId) -> Option<FlavorRef<'a>> {
        match flavor.as_str().strip_prefix("template:") {
            Some(n) => parse_oid(n).map(FlavorRef::Template),
            None => self.inner.config.size(flavor.as_str()).map(FlavorRef::Size),
        }
    }

    async fn resolve_capacity(
        &self,
        spec: &InstanceSpec,
        flavor: FlavorRef<'_>,
    ) -> Result<Capacity> {
        match flavor {
            FlavorRef::Size(s) => Ok(Capacity::of_size(s)),
            FlavorRef::Template(tid) => {
                let t = self
                    .template_info(tid, spec.flavor_id.as_str())
                    .await
                    .map_err(|e| {
                        if e.kind() == ErrorKind::NotFound {
                            Error::not_found("flavor", &spec.flavor_id)
                        } else {
                            e
                        }
                    })?;
                Capacity::of_template(&t.template).ok_or_else(|| {
                    Error::invalid_argument(
                        "flavor_id",
                        format!(
                            "VM template `{}` has no CPU and MEMORY to use as a flavor",
                            spec.flavor_id
                        ),
                    )
                })
            }
        }
    }

    async fn key_line(&self, name: &str) -> Result<String> {
        let user = self.user_info().await?;
        let keys = parse_keys(user.template.get("SSH_PUBLIC_KEY").unwrap_or_default());
        keys.into_iter()
            .find(|k| k.name == name)
            .map(|k| k.line)
            .ok_or_else(|| Error::not_found("key pair", name))
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        check_spec(spec)?;
        let image = ImageRef::parse(spec.image_id.as_str())
            .ok_or_else(|| Error::not_found("image", &spec.image_id))?;
        let flavor = self
            .capacity_of_flavor(&spec.flavor_id)
            .ok_or_else(|| Error::not_found("flavor", &spec.flavor_id))?;
        let mut networks = Vec::with_capacity(spec.network_ids.len());
        for n in &spec.network_ids {
            networks.push(parse_oid(n.as_str()).ok_or_else(|| Error::not_found("network", n))?);
        }
        let location = match &spec.location_id {
            None => None,
            Some(l) => Some(parse_oid(l.as_str()).ok_or_else(|| Error::not_found("location", l))?),
        };
        let _guard = match &spec.client_token {
            Some(t) => Some(self.inner.token_locks.lock(t).await),
            None => None,
        };
        let hash = request_hash(spec);

        // Reads only, until the allocation: a failure here changed nothing, so the
        // create may be repeated even without a client token.
        let prepared = self
            .prepare(spec, image, flavor, &networks, location, &hash)
            .await
            .map_err(|e| e.not_executed(true))?;
        let (key, capacity, source, groups, snapshots) = match prepared {
            Prepared::Existing(vm) => return Ok(self.instance_of(&vm)),
            Prepared::New {
                key,
                capacity,
                source,
                groups,
                snapshots,
            } => (key, capacity, source, groups, snapshots),
        };
        let groups_attr = (!groups.is_empty()).then(|| {
            groups
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        if groups_attr.is_some() {
            let no_nics = match &source {
                Source::Disk(_) => {
                    networks.is_empty() && self.inner.config.default_network.is_none()
                }
                Source::Template(t) => {
                    networks.is_empty() && t.template.vectors("NIC").next().is_none()
                }
            };
            if no_nics {
                return Err(Error::invalid_argument(
                    "security_group_ids",
                    "OpenNebula puts VMs in security groups through their NICs, and this \
                     instance would have none; name a network (or configure default_network)",
                )
                .not_executed(true));
            }
        }

        let mut cms_attrs = vec![
            Element::leaf(ATTR_IMAGE, spec.image_id.as_str()),
            Element::leaf(ATTR_FLAVOR, spec.flavor_id.as_str()),
            Element::leaf(ATTR_REQUEST_HASH, hash),
        ];
        if !spec.tags.is_empty() {
            cms_attrs.push(Element::leaf(
                ATTR_TAGS,
                serde_json::to_string(&spec.tags).unwrap_or_default(),
            ));
        }
        if let Some(t) = &spec.client_token {
            cms_attrs.push(Element::leaf(ATTR_CLIENT_TOKEN, t.clone()));
        }
        if let Some(o) = &spec.owner {
            cms_attrs.push(Element::leaf(ATTR_OWNER, o.clone()));
        }
        if let Some(k) = &spec.key_name {
            cms_attrs.push(Element::leaf(ATTR_KEY_NAME, k.clone()));
        }
        if let Some(l) = location {
            cms_attrs.push(Element::leaf(
                "SCHED_REQUIREMENTS",
                format!("CLUSTER_ID = {l}"),
            ));
        }
        let user_data = spec
            .user_data
            .as_ref()
            .map(|d| base64::engine::general_purpose::STANDARD.encode(d.as_bytes()));
        let with_groups = |mut nic: Element| -> Element {
            if let Some(g) = &groups_attr {
                nic.children.retain(|c| c.name != "SECURITY_GROUPS");
                nic.children
                    .push(Element::leaf("SECURITY_GROUPS", g.clone()));
            }
            nic
        };
        let nics = |ids: &[i64]| -> Vec<Element> {
            ids.iter()
                .map(|n| with_groups(vector("NIC", vec![("NETWORK_ID", n.to_string())])))
                .collect()
        };

        // The volumes to make with it: the first writes.
        let (made, volume_disks) = self.make_block_devices(spec, &snapshots).await?;

        let allocated = match source {
            Source::Disk(iid) => {
                if networks.is_empty() {
                    networks.extend(self.inner.config.default_network);
                }
                let mut context = vec![
                    ("NETWORK", "YES".to_owned()),
                    (
                        "SSH_PUBLIC_KEY",
                        key.clone()
                            .unwrap_or_else(|| "$USER[SSH_PUBLIC_KEY]".into()),
                    ),
                ];
                if let Some(d) = &user_data {
                    context.push(("USER_DATA", d.clone()));
                    context.push(("USERDATA_ENCODING", "base64".into()));
                }
                let mut t = Vec::new();
                if !spec.name.is_empty() {
                    t.push(Element::leaf("NAME", spec.name.clone()));
                }
                t.extend(capacity.elements());
                t.push(vector("DISK", vec![("IMAGE_ID", iid.to_string())]));
                t.extend(volume_disks);
                t.extend(nics(&networks));
                t.push(vector("CONTEXT", context));
                t.extend(cms_attrs);
                self.call_id(
                    "one.vm.allocate",
                    &[Value::Str(template_xml(t)), Value::Bool(false)],
                    &Target::new_object("VM", &spec.name),
                )
                .await
            }
            Source::Template(tmpl) => {
                let tid = tmpl.id;
                let mut t = Vec::new();
                let own = matches!(flavor, FlavorRef::Template(f) if f == tid);
                if !own {
                    t.extend(capacity.elements());
                }
                if networks.is_empty() {
                    if groups_attr.is_some() {
                        // The extra template replaces NICs whole: the template's, in
                        // the groups.
                        t.extend(
                            tmpl.template
                                .entries
                                .iter()
                                .filter(|(k, _)| k == "NIC")
                                .flat_map(|e| {
                                    Attributes {
                                        entries: vec![e.clone()],
                                    }
                                    .to_elements()
                                })
                                .map(with_groups),
                        );
                    }
                } else {
                    t.extend(nics(&networks));
                }
                if !volume_disks.is_empty() {
                    // …and DISKs whole: the template's, then the volumes.
                    t.extend(
                        tmpl.template
                            .entries
                            .iter()
                            .filter(|(k, _)| k == "DISK")
                            .flat_map(|e| {
                                Attributes {
                                    entries: vec![e.clone()],
                                }
                                .to_elements()
                            }),
                    );
                    t.extend(volume_disks);
                }
                if key.is_some() || user_data.is_some() {
                    // The extra template replaces CONTEXT whole: keep the template's.
                    let mut context: Vec<(String, String)> = tmpl
                        .template
                        .vector("CONTEXT")
                        .map(|c| {
                            c.entries
                                .iter()
                                .filter_map(|(k, v)| match v {
                                    Attribute::Single(s) => Some((k.clone(), s.clone())),
                                    Attribute::Vector(_) => None,
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut set =
                        |k: &str, v: String| match context.iter_mut().find(|(n, _)| n == k) {
                            Some(slot) => slot.1 = v,
                            None => context.push((k.to_owned(), v)),
                        };
                    if let Some(k) = &key {
                        set("SSH_PUBLIC_KEY", k.clone());
                    }
                    if let Some(d) = &user_data {
                        set("USER_DATA", d.clone());
                        set("USERDATA_ENCODING", "base64".into());
                    }
                    t.push(Element {
                        name: "CONTEXT".into(),
                        text: String::new(),
                        children: context
                            .into_iter()
                            .map(|(k, v)| Element::leaf(k, v))
                            .collect(),
                    });
                }
                t.extend(cms_attrs);
                self.call_id(
                    "one.template.instantiate",
                    &[
                        Value::Int(tid),
                        Value::Str(spec.name.clone()),
                        Value::Bool(false),
                        Value::Str(template_xml(t)),
                        Value::Bool(false),
                    ],
                    &Target::template(spec.image_id.as_str()),
                )
                .await
            }
        };
        let id = match allocated {
            Ok(id) => id,
            Err(e) => {
                // A VM whose answer was lost may hold the volumes: keep them then.
                if e.is_not_executed() || e.kind() != ErrorKind::Unavailable {
                    self.drop_images(&made).await;
                }
                return Err(e);
            }
        };
        if let Some(t) = &spec.client_token {
            self.remember_token(t, id);
        }
        self.mark_block_devices(id, spec, &made).await;
        let vm = self.vm_info(id).await?;
        Ok(self.instance_of(&vm))
    }

    /// The reads of a create: the VM a client token already made, or what a new VM
    /// needs (and the checks that what the request names exists).
    async fn prepare(
        &self,
        spec: &InstanceSpec,
        image: ImageRef,
        flavor: FlavorRef<'_>,
        networks: &[i64],
        location: Option<i64>,
        hash: &str,
    ) -> Result<Prepared> {
        if let Some(token) = &spec.client_token {
            if let Some(vm) = self.find_by_token(token).await? {
                if vm.user_template.get(ATTR_REQUEST_HASH) != Some(hash) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "client token `{token}` was already used to create instance `{}` \
                             with different parameters; repeat that request unchanged, or use \
                             a new client token for a new instance",
                            vm.id
                        ),
                    )
                    .with_resource(format!("instance {}", vm.id))
                    .with_context("argument", "client_token")
                    .with_context("reason", "idempotent_parameter_mismatch"));
                }
                return Ok(Prepared::Existing(Box::new(vm)));
            }
        }
        let source = match image {
            ImageRef::Disk(iid) => {
                let img = self.image_info(iid, spec.image_id.as_str()).await?;
                if img.image_type != 0 {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "image `{}` not found: it is a {} image, not a bootable OS image",
                            spec.image_id,
                            image_type_name(img.image_type)
                        ),
                    )
                    .with_resource(format!("image {}", spec.image_id)));
                }
                Source::Disk(iid)
            }
            ImageRef::Template(tid) => Source::Template(Box::new(
                self.template_info(tid, spec.image_id.as_str()).await?,
            )),
        };
        for n in networks {
            self.vnet_info(*n).await.map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::not_found("network", n)
                } else {
                    e
                }
            })?;
        }
        if let Some(l) = location {
            self.call(
                "one.cluster.info",
                &[Value::Int(l), Value::Bool(false)],
                &Target::cluster(l),
            )
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::not_found("location", l)
                } else {
                    e
                }
            })?;
        }
        let key = match &spec.key_name {
            Some(k) => Some(self.key_line(k).await?),
            None => None,
        };
        let capacity = self.resolve_capacity(spec, flavor).await?;
        let groups = self.check_groups(&spec.security_group_ids).await?;
        let snapshots = self.prepare_block_devices(&spec.volumes).await?;
        Ok(Prepared::New {
            key,
            capacity,
            source,
            groups,
            snapshots,
        })
    }

    async fn act(&self, id: &InstanceId, action: InstanceAction) -> Result<Instance> {
        let vid = parse_oid(id.as_str()).ok_or_else(|| Error::not_found("instance", id))?;
        let vm = self.vm_info(vid).await?;
        let before = self.instance_of(&vm);
        let last_action = vm.last_history().map(|h| h.action);
        match plan(action, vm.state, vm.lcm_state, last_action) {
            Plan::AsIs => Ok(before),
            Plan::Refuse { hint, temporary } => Err(action
                .refusal(id, before.state, &format!(" ({}){hint}", before.raw_state))
                .temporary(temporary)
                .with_context("opennebula_state", before.raw_state.clone())),
            Plan::Call(one_action) => {
                self.call(
                    "one.vm.action",
                    &[Value::Str(one_action.into()), Value::Int(vid)],
                    &Target::vm(vid),
                )
                .await?;
                let mut after = self.instance_of(&self.vm_info(vid).await?);
                if after.state == before.state {
                    if let Some(s) = accepted_state(action) {
                        after.state = s;
                    }
                }
                Ok(after)
            }
        }
    }

    /// Rewrites the VM's `CMS_TAGS` with the change applied (`one.vm.update`, merge
    /// mode, so the rest of the user template stays as it is), then reads the VM back.
    async fn update_tags(&self, id: &InstanceId, changes: &TagChanges) -> Result<Instance> {
        changes.check()?;
        let vid = parse_oid(id.as_str()).ok_or_else(|| Error::not_found("instance", id))?;
        // OpenNebula has no compare-and-set on templates: updates of one VM through this
        // driver go one at a time, so none is lost. (Other clients may still race.)
        let _guard = self.inner.tag_locks.lock(&vid.to_string()).await;
        let before = self.instance_of(&self.vm_info(vid).await?);
        let tags = changes.apply(&before.tags)?;
        if tags == before.tags {
            return Ok(before);
        }
        let json = serde_json::to_string(&tags).unwrap_or_default();
        self.call(
            "one.vm.update",
            &[
                Value::Int(vid),
                Value::Str(template_xml(vec![Element::leaf(ATTR_TAGS, json)])),
                Value::Int(1),
            ],
            &Target::vm(vid),
        )
        .await?;
        Ok(self.instance_of(&self.vm_info(vid).await?))
    }

    // ---- images and flavors ----

    async fn template_page(
        &self,
        cursor: Option<Cursor>,
        limit: usize,
        window: usize,
        accept: impl FnMut(&VmTemplate) -> bool,
    ) -> Result<Scan<VmTemplate>> {
        scan(
            |offset, size| {
                self.pool_window("one.templatepool.info", "VM template", offset, size, |x| {
                    VmTemplatePool::from_xml(x).map(|p| p.templates)
                })
            },
            cursor,
            limit,
            window,
            FILTER_BUDGET,
            accept,
        )
        .await
    }

    async fn images_page(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        let op = Operation::ListImages;
        let limit = page_limit(page);
        let (phase, cursor) = split_phase(page, op, &["image", "template"])?;
        let window = if filter.ids.is_empty() && filter.owner.is_none() {
            1
        } else {
            FILTER_WINDOW
        };
        let mut items = Vec::new();
        if phase == "image" {
            let found = scan(
                |offset, size| {
                    self.pool_window("one.imagepool.info", "image", offset, size, |x| {
                        ImagePool::from_xml(x).map(|p| p.images)
                    })
                },
                cursor,
                limit,
                window,
                FILTER_BUDGET,
                |i: &OneImage| i.image_type == 0 && filter.matches(&self.image_of_disk(i)),
            )
            .await?;
            items.extend(found.items.iter().map(|i| self.image_of_disk(i)));
            if let Some(next) = found.next {
                return Ok(Page {
                    items,
                    next: Some(PageToken::new(format!("image.{}", next.encode()))),
                });
            }
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next: Some(PageToken::new(format!(
                        "template.{}",
                        Cursor::default().encode()
                    ))),
                });
            }
        }
        let cursor = if phase == "template" { cursor } else { None };
        let found = self
            .template_page(cursor, limit - items.len(), window, |t| {
                filter.matches(&self.image_of_template(t))
            })
            .await?;
        items.extend(found.items.iter().map(|t| self.image_of_template(t)));
        Ok(Page {
            items,
            next: found
                .next
                .map(|c| PageToken::new(format!("template.{}", c.encode()))),
        })
    }

    async fn flavors_page(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        let op = Operation::ListFlavors;
        let limit = page_limit(page);
        let sizes = &self.inner.config.sizes;
        let (phase, cursor, start) = match &page.token {
            None => ("size", None, 0usize),
            Some(t) => match t.as_str().split_once('.') {
                Some(("size", n)) => (
                    "size",
                    None,
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| *n <= sizes.len())
                        .ok_or_else(|| bad_token(op, t))?,
                ),
                Some(("template", c)) => (
                    "template",
                    Some(Cursor::decode(c).ok_or_else(|| bad_token(op, t))?),
                    0,
                ),
                _ => return Err(bad_token(op, t)),
            },
        };
        let mut items: Vec<Flavor> = Vec::new();
        if phase == "size" {
            items.extend(
                sizes
                    .iter()
                    .skip(start)
                    .take(limit)
                    .map(Self::flavor_of_size),
            );
            let end = start + items.len();
            if items.len() == limit {
                let next = if end < sizes.len() {
                    format!("size.{end}")
                } else {
                    format!("template.{}", Cursor::default().encode())
                };
                return Ok(Page {
                    items,
                    next: Some(PageToken::new(next)),
                });
            }
        }
        let found = self
            .template_page(cursor, limit - items.len(), 1, |t| {
                Capacity::of_template(&t.template).is_some()
            })
            .await?;
        items.extend(found.items.iter().filter_map(Self::flavor_of_template));
        Ok(Page {
            items,
            next: found
                .next
                .map(|c| PageToken::new(format!("template.{}", c.encode()))),
        })
    }

    // ---- key pairs ----

    /// Writes the user's keys: merges `SSH_PUBLIC_KEY` into the user's template; with
    /// no key left, replaces the template with the rest of it (OpenNebula drops an
    /// empty attribute from a template it reads, so a merge cannot empty one).
    async fn save_keys(&self, user: &User, lines: &[String]) -> Result<()> {
        let (xml, mode) = if lines.is_empty() {
            let rest: Vec<Element> = user
                .template
                .to_elements()
                .into_iter()
                .filter(|e| e.name != "SSH_PUBLIC_KEY")
                .collect();
            (template_xml(rest), 0)
        } else {
            (
                template_xml(vec![Element::leaf("SSH_PUBLIC_KEY", lines.join("\n"))]),
                1,
            )
        };
        self.call(
            "one.user.update",
            &[Value::Int(user.id), Value::Str(xml), Value::Int(mode)],
            &Target::user(),
        )
        .await?;
        Ok(())
    }
}

/// What the reads of a create found.
enum Prepared {
    /// The VM a repeated client token made.
    Existing(Box<Vm>),
    New {
        key: Option<String>,
        capacity: Capacity,
        source: Source,
        /// The security groups, checked.
        groups: Vec<i64>,
        /// The snapshots the new volumes come from, by position.
        snapshots: Vec<Option<OneImage>>,
    },
}

/// What a new VM is made from.
enum Source {
    Disk(i64),
    Template(Box<VmTemplate>),
}

/// A flavor id, parsed.
#[derive(Clone, Copy, Debug)]
enum FlavorRef<'a> {
    Size(&'a Size),
    Template(i64),
}

/// An object with its id, for paging over converted objects.
struct Row<T> {
    id: i64,
    item: T,
}

impl<T> HasId for Row<T> {
    fn oid(&self) -> i64 {
        self.id
    }
}

fn bad_token(op: Operation, token: &PageToken) -> Error {
    Error::invalid_argument(
        "page_token",
        format!("`{token}` is not a page token of this listing"),
    )
    .with_operation(op)
}

fn page_limit(page: &PageRequest) -> usize {
    page.limit
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_PAGE)
        .min(MAX_PAGE) as usize
}

/// Splits `phase.cursor` tokens; no token is the first phase.
fn split_phase<'a>(
    page: &PageRequest,
    op: Operation,
    phases: &[&'a str],
) -> Result<(&'a str, Option<Cursor>)> {
    let Some(t) = &page.token else {
        return Ok((phases[0], None));
    };
    let (phase, cursor) = t.as_str().split_once('.').ok_or_else(|| bad_token(op, t))?;
    let phase = phases
        .iter()
        .find(|p| **p == phase)
        .ok_or_else(|| bad_token(op, t))?;
    let cursor = Cursor::decode(cursor).ok_or_else(|| bad_token(op, t))?;
    Ok((phase, Some(cursor)))
}

/// The state argument of `one.vmpool.info` for a set of cms states: a STATE when it is
/// the only one that can produce them, -2 (all) when DONE VMs are asked for among
/// others, -1 (all but DONE) otherwise. The rest of the state filter is applied on the
/// client.
fn pushdown_state(states: &[InstanceState]) -> i64 {
    if states.is_empty() {
        return -1;
    }
    if states.contains(&InstanceState::Unknown) {
        // Unknown also stands for STATE codes newer than this driver.
        return if states.contains(&InstanceState::Terminated) {
            -2
        } else {
            -1
        };
    }
    let produces = |st: i64, s: InstanceState| -> bool {
        if st == ACTIVE {
            (0..LCM_STATES.len() as i64 + 1)
                .any(|l| map_state(ACTIVE, l, None) == s || map_state(ACTIVE, l, Some(15)) == s)
        } else {
            map_state(st, 0, None) == s
        }
    };
    let candidates: Vec<i64> = (0..VM_STATES.len() as i64)
        .filter(|st| states.iter().any(|s| produces(*st, *s)))
        .collect();
    match candidates.as_slice() {
        [one] => *one,
        _ if states.contains(&InstanceState::Terminated) => -2,
        _ => -1,
    }
}

fn request_hash(spec: &InstanceSpec) -> String {
    hash_of(&InstanceSpec {
        client_token: None,
        ..spec.clone()
    })
}

fn check_name(argument: &str, name: &str, required: bool) -> Result<()> {
    let why = if required && name.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if name.chars().count() > MAX_NAME {
        Some(format!("is longer than {MAX_NAME} characters"))
    } else {
        name.chars()
            .find(|c| INVALID_NAME_CHARS.contains(*c) || c.is_control())
            .map(|c| format!("{name:?} contains {c:?}, which OpenNebula does not allow in names"))
    };
    match why {
        Some(why) => Err(Error::invalid_argument(argument, why)),
        None => Ok(()),
    }
}

fn check_spec(spec: &InstanceSpec) -> Result<()> {
    cms_core::check_instance_spec(spec)?;
    check_name("name", &spec.name, false)?;
    cms_core::check_tags(&spec.tags)?;
    if let Some(o) = &spec.owner {
        cms_core::check_owner(o)?;
    }
    if let Some(d) = &spec.user_data {
        if d.len() > MAX_USER_DATA {
            return Err(Error::invalid_argument(
                "user_data",
                format!("{} bytes given, at most {MAX_USER_DATA} allowed", d.len()),
            ));
        }
    }
    if let Some(t) = &spec.client_token {
        if t.is_empty() || t.chars().count() > MAX_CLIENT_TOKEN || t.chars().any(char::is_control) {
            return Err(Error::invalid_argument(
                "client_token",
                format!("must be 1 to {MAX_CLIENT_TOKEN} printable characters"),
            ));
        }
    }
    Ok(())
}

fn tags_of(t: &Attributes) -> Tags {
    t.get(ATTR_TAGS)
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// The security groups of a VM: those of all its NICs (`SECURITY_GROUPS = "0,101"`),
/// in id order.
fn groups_of_nics(nics: &[&Attributes]) -> Vec<SecurityGroupId> {
    let mut ids: Vec<i64> = nics
        .iter()
        .filter_map(|n| n.get("SECURITY_GROUPS"))
        .flat_map(|g| g.split(','))
        .filter_map(|g| parse_oid(g.trim()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|g| SecurityGroupId::new(g.to_string()))
        .collect()
}

/// A SHA-256 of a value's JSON, shortened: the request hash of a create.
fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Eight random hex digits.
fn random_hex() -> String {
    use ssh_key::rand_core::RngCore;
    format!("{:08x}", OsRng.next_u32())
}

/// The NAME OpenNebula takes for an image cms names `name` (its cms name is kept
/// exactly in `CMS_NAME`): the characters OpenNebula refuses in names replaced by `_`,
/// at most 119 characters (room for a suffix); `cms-{kind}-{8 hex digits}` for a name
/// with nothing left.
fn one_name(name: &str, kind: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if INVALID_NAME_CHARS.contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(119)
        .collect();
    if clean.trim().is_empty() {
        format!("cms-{kind}-{}", random_hex())
    } else {
        clean.trim().to_owned()
    }
}

/// `name` with a random suffix, for a NAME that is taken.
fn suffixed(name: &str) -> String {
    let base: String = name.chars().take(119).collect();
    format!("{base}-{}", random_hex())
}

/// The IMAGE STATE names.
/// An OpenNebula image `STATE` as a cms image state (the table of
/// [`ImageState`](cms_core::ImageState)).
fn map_image_state(state: i64) -> ImageState {
    match state {
        0 | 4 | 6 => ImageState::Pending,
        1 | 2 | 8 => ImageState::Available,
        3 | 5 => ImageState::Error,
        7 => ImageState::Deleted,
        9 | 10 => ImageState::Available,
        _ => ImageState::Unknown,
    }
}

fn image_state_name(state: i64) -> String {
    const NAMES: [&str; 11] = [
        "INIT",
        "READY",
        "USED",
        "DISABLED",
        "LOCKED",
        "ERROR",
        "CLONE",
        "DELETE",
        "USED_PERS",
        "LOCKED_USED",
        "LOCKED_USED_PERS",
    ];
    code_name(&NAMES, state, "STATE")
}

/// The name of OpenNebula code `code` in `names`, or `PREFIX_code` for a code newer
/// than the table.
fn code_name(names: &[&str], code: i64, prefix: &str) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| names.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{prefix}_{code}"))
}

/// The IMAGE TYPE names.
fn image_type_name(t: i64) -> String {
    const NAMES: [&str; 8] = [
        "OS",
        "CDROM",
        "DATABLOCK",
        "KERNEL",
        "RAMDISK",
        "CONTEXT",
        "BACKUP",
        "FILESYSTEM",
    ];
    code_name(&NAMES, t, "TYPE")
}

/// The VNET STATE names.
fn vnet_state_name(state: i64) -> String {
    const NAMES: [&str; 7] = [
        "INIT",
        "READY",
        "LOCK_CREATE",
        "LOCK_DELETE",
        "DONE",
        "ERROR",
        "UPDATE_FAILURE",
    ];
    code_name(&NAMES, state, "STATE")
}

/// The IPv4 range of a network: `NETWORK_ADDRESS` and `NETWORK_MASK` when set (the
/// driver sets them), else the smallest range holding its first IPv4 address range.
fn network_cidr(v: &VirtualNetwork) -> Option<String> {
    if let (Some(addr), Some(mask)) = (
        v.template.get("NETWORK_ADDRESS"),
        v.template.get("NETWORK_MASK"),
    ) {
        let addr: Ipv4Addr = addr.trim().parse().ok()?;
        let mask = mask.trim();
        let prefix = match mask.parse::<u8>() {
            Ok(p) if p <= 32 => p,
            _ => {
                let m = u32::from(mask.parse::<Ipv4Addr>().ok()?);
                if m.leading_ones() + m.trailing_zeros() != 32 {
                    return None;
                }
                m.leading_ones() as u8
            }
        };
        return Some(format!("{addr}/{prefix}"));
    }
    let ar = v
        .address_ranges
        .iter()
        .find(|a| a.ip.is_some() && a.size > 0 && a.kind.starts_with("IP4"))?;
    let start = u32::from(ar.ip.as_deref()?.parse::<Ipv4Addr>().ok()?);
    let end = start.checked_add(u32::try_from(ar.size - 1).ok()?)?;
    let prefix = (start ^ end).leading_zeros().min(32);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some(format!("{}/{prefix}", Ipv4Addr::from(start & mask)))
}

/// `a.b.c.d/n`, host bits zero, n in 8..=30.
fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = |why: String| {
        Error::invalid_argument(
            "cidr",
            format!("`{text}` is not a usable IPv4 range: {why}"),
        )
    };
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("expected `a.b.c.d/n`, such as `10.1.0.0/24`".into()))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| bad(format!("`{addr}` is not an IPv4 address")))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| {
            bad(format!(
                "the prefix length `/{prefix}` must be a number from 8 to 30"
            ))
        })?;
    let mask = u32::MAX << (32 - u32::from(prefix));
    if u32::from(addr) & !mask != 0 {
        return Err(bad(format!(
            "host bits are set; the range is `{}/{prefix}`",
            Ipv4Addr::from(u32::from(addr) & mask)
        )));
    }
    Ok((addr, prefix))
}

/// One line of a user's `SSH_PUBLIC_KEY`.
struct KeyLine {
    line: String,
    name: String,
    pair: Option<KeyPair>,
}

/// The keys in an `SSH_PUBLIC_KEY` value, one per line; each is named by its comment,
/// or by its fingerprint when it has none. Lines that are not keys are kept (and not
/// listed).
fn parse_keys(text: &str) -> Vec<KeyLine> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| match PublicKey::from_openssh(line) {
            Ok(key) => {
                let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
                let name = match key.comment().trim() {
                    "" => fingerprint.clone(),
                    c => c.to_owned(),
                };
                KeyLine {
                    line: line.to_owned(),
                    pair: Some(KeyPair {
                        name: name.clone(),
                        fingerprint,
                        public_key: Some(line.to_owned()),
                        private_key: None,
                    }),
                    name,
                }
            }
            Err(_) => KeyLine {
                line: line.to_owned(),
                name: String::new(),
                pair: None,
            },
        })
        .collect()
}

#[async_trait]
impl Driver for OpenNebulaDriver {
    fn name(&self) -> &str {
        "opennebula"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let limit = page_limit(page);
        let r = if filter.ids.is_empty() {
            self.list_pool_instances(filter, page, limit).await
        } else {
            self.list_instances_by_id(filter, page, limit).await
        };
        r.map_err(with_op(Operation::ListInstances))
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::GetInstance;
        let vid = parse_oid(id.as_str())
            .ok_or_else(|| Error::not_found("instance", id))
            .map_err(with_op(op))?;
        let vm = self.vm_info(vid).await.map_err(with_op(op))?;
        Ok(self.instance_of(&vm))
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        self.create(spec)
            .await
            .map_err(with_op(Operation::CreateInstance))
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Start)
            .await
            .map_err(with_op(InstanceAction::Start.operation()))
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Stop)
            .await
            .map_err(with_op(InstanceAction::Stop.operation()))
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Reboot)
            .await
            .map_err(with_op(InstanceAction::Reboot.operation()))
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, InstanceAction::Delete)
            .await
            .map_err(with_op(InstanceAction::Delete.operation()))
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        self.update_tags(id, changes)
            .await
            .map_err(with_op(Operation::UpdateInstanceTags))
    }

    /// OpenNebula keeps no serial console output that its API hands out (its
    /// consoles are VNC and SPICE sessions).
    async fn console_output(&self, _id: &InstanceId) -> Result<ConsoleOutput> {
        Err(Error::unsupported(
            Operation::GetConsoleOutput,
            "opennebula",
        ))
    }

    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        self.images_page(filter, page)
            .await
            .map_err(with_op(Operation::ListImages))
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        let op = Operation::GetImage;
        let r = match ImageRef::parse(id.as_str()) {
            None => Err(Error::not_found("image", id)),
            Some(ImageRef::Disk(i)) => match self.image_info(i, id.as_str()).await {
                Ok(img) if img.image_type == 0 => Ok(self.image_of_disk(&img)),
                Ok(img) => Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "image `{id}` not found: it is a {} image, not a bootable OS image",
                        image_type_name(img.image_type)
                    ),
                )
                .with_resource(format!("image {id}"))),
                Err(e) => Err(e),
            },
            Some(ImageRef::Template(t)) => self
                .template_info(t, id.as_str())
                .await
                .map(|t| self.image_of_template(&t)),
        };
        r.map_err(with_op(op))
    }

    async fn create_image(&self, spec: &ImageSpec) -> Result<Image> {
        self.capture(spec)
            .await
            .map_err(with_op(Operation::CreateImage))
    }

    async fn delete_image(&self, id: &ImageId) -> Result<()> {
        self.delete_image_(id)
            .await
            .map_err(with_op(Operation::DeleteImage))
    }

    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        self.flavors_page(page)
            .await
            .map_err(with_op(Operation::ListFlavors))
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        let op = Operation::ListNetworks;
        let limit = page_limit(page);
        let cursor = match &page.token {
            None => None,
            Some(t) => Some(
                t.as_str()
                    .strip_prefix("vnet.")
                    .and_then(Cursor::decode)
                    .ok_or_else(|| bad_token(op, t))?,
            ),
        };
        let found = scan(
            |offset, size| {
                self.pool_window("one.vnpool.info", "virtual network", offset, size, |x| {
                    VnetPool::from_xml(x).map(|p| p.vnets)
                })
            },
            cursor,
            limit,
            1,
            usize::MAX,
            |_| true,
        )
        .await
        .map_err(with_op(op))?;
        Ok(Page {
            items: found.items.iter().map(|v| self.network_of(v)).collect(),
            next: found
                .next
                .map(|c| PageToken::new(format!("vnet.{}", c.encode()))),
        })
    }

    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        let op = Operation::GetNetwork;
        let nid = parse_oid(id.as_str())
            .ok_or_else(|| Error::not_found("network", id))
            .map_err(with_op(op))?;
        let v = self.vnet_info(nid).await.map_err(with_op(op))?;
        Ok(self.network_of(&v))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        let op = Operation::CreateNetwork;
        let r = async {
            check_name("name", &spec.name, true)?;
            cms_core::check_tags(&spec.tags)?;
            let (addr, prefix) = parse_cidr(&spec.cidr)?;
            let cluster = match &spec.location_id {
                None => -1,
                Some(l) => {
                    let cid =
                        parse_oid(l.as_str()).ok_or_else(|| Error::not_found("location", l))?;
                    self.call(
                        "one.cluster.info",
                        &[Value::Int(cid), Value::Bool(false)],
                        &Target::cluster(cid),
                    )
                    .await
                    .map_err(|e| {
                        if e.kind() == ErrorKind::NotFound {
                            Error::not_found("location", l)
                        } else {
                            e.not_executed(true)
                        }
                    })?;
                    cid
                }
            };
            let base = u32::from(addr);
            let mask = u32::MAX << (32 - u32::from(prefix));
            let hosts = (!mask) - 1; // all but network and broadcast
            let mut t = vec![
                Element::leaf("NAME", spec.name.clone()),
                Element::leaf("VN_MAD", self.inner.config.network_driver.clone()),
                Element::leaf("NETWORK_ADDRESS", addr.to_string()),
                Element::leaf("NETWORK_MASK", Ipv4Addr::from(mask).to_string()),
                Element::leaf("GATEWAY", Ipv4Addr::from(base + 1).to_string()),
                vector(
                    "AR",
                    vec![
                        ("TYPE", "IP4".into()),
                        ("IP", Ipv4Addr::from(base + 2).to_string()),
                        // The gateway is not handed out.
                        ("SIZE", (hosts - 1).to_string()),
                    ],
                ),
            ];
            if !spec.tags.is_empty() {
                t.push(Element::leaf(
                    ATTR_TAGS,
                    serde_json::to_string(&spec.tags).unwrap_or_default(),
                ));
            }
            let id = self
                .call_id(
                    "one.vn.allocate",
                    &[Value::Str(template_xml(t)), Value::Int(cluster)],
                    &Target::new_object("virtual network", &spec.name),
                )
                .await?;
            let v = self.vnet_info(id).await?;
            Ok(self.network_of(&v))
        };
        r.await.map_err(with_op(op))
    }

    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        let op = Operation::DeleteNetwork;
        let nid = parse_oid(id.as_str())
            .ok_or_else(|| Error::not_found("network", id))
            .map_err(with_op(op))?;
        self.call("one.vn.delete", &[Value::Int(nid)], &Target::vnet(nid))
            .await
            .map_err(with_op(op))?;
        Ok(())
    }

    async fn list_locations(&self) -> Result<Vec<Location>> {
        let op = Operation::ListLocations;
        let clusters = self
            .call_doc(
                "one.clusterpool.info",
                &[],
                &Target::pool("cluster"),
                ClusterPool::from_xml,
            )
            .await
            .map_err(with_op(op))?;
        let hosts = self
            .call_doc(
                "one.hostpool.info",
                &[],
                &Target::pool("host"),
                HostPool::from_xml,
            )
            .await
            .map_err(with_op(op))?;
        Ok(clusters
            .clusters
            .iter()
            .map(|c| Location {
                id: LocationId::new(c.id.to_string()),
                name: c.name.clone(),
                region: None,
                available: hosts
                    .hosts
                    .iter()
                    .any(|h| h.cluster_id == c.id && h.accepts_vms()),
            })
            .collect())
    }

    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        let user = self
            .user_info()
            .await
            .map_err(with_op(Operation::ListKeyPairs))?;
        Ok(
            parse_keys(user.template.get("SSH_PUBLIC_KEY").unwrap_or_default())
                .into_iter()
                .filter_map(|k| k.pair)
                .collect(),
        )
    }

    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let op = if spec.public_key.is_some() {
            Operation::ImportKeyPair
        } else {
            Operation::CreateKeyPair
        };
        let r = async {
            check_name("name", &spec.name, true)?;
            let (mut public, private) = match &spec.public_key {
                Some(text) => {
                    let key = PublicKey::from_openssh(text.trim()).map_err(|e| {
                        Error::invalid_argument(
                            "public_key",
                            format!(
                                "not a valid OpenSSH public key for key pair `{}` \
                                 (expected a line such as `ssh-ed25519 AAAA… comment`): {e}",
                                spec.name
                            ),
                        )
                    })?;
                    (key, None)
                }
                None => {
                    let failed = |what: &str, e: ssh_key::Error| {
                        Error::new(ErrorKind::Backend, format!("{what} failed: {e}"))
                    };
                    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                        .map_err(|e| failed("generating an Ed25519 key", e))?;
                    key.set_comment(&spec.name);
                    let pem = key
                        .to_openssh(LineEnding::LF)
                        .map_err(|e| failed("encoding the private key", e))?;
                    (key.public_key().clone(), Some(pem.as_str().to_owned()))
                }
            };
            public.set_comment(&spec.name);
            let line = public.to_openssh().map_err(|e| {
                Error::invalid_argument("public_key", format!("cannot encode the key: {e}"))
            })?;
            let _lock = self.inner.key_lock.lock().await;
            // A failed read changed nothing.
            let user = self.user_info().await.map_err(|e| e.not_executed(true))?;
            let keys = parse_keys(user.template.get("SSH_PUBLIC_KEY").unwrap_or_default());
            if keys.iter().any(|k| k.pair.is_some() && k.name == spec.name) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("key pair `{}` already exists", spec.name),
                )
                .with_resource(format!("key pair {}", spec.name)));
            }
            let mut lines: Vec<String> = keys.into_iter().map(|k| k.line).collect();
            lines.push(line.clone());
            self.save_keys(&user, &lines).await?;
            Ok(KeyPair {
                name: spec.name.clone(),
                fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
                public_key: Some(line),
                private_key: private,
            })
        };
        r.await.map_err(with_op(op))
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        let op = Operation::DeleteKeyPair;
        let r = async {
            let _lock = self.inner.key_lock.lock().await;
            // A failed read changed nothing.
            let user = self.user_info().await.map_err(|e| e.not_executed(true))?;
            let keys = parse_keys(user.template.get("SSH_PUBLIC_KEY").unwrap_or_default());
            if !keys.iter().any(|k| k.pair.is_some() && k.name == name) {
                return Err(Error::not_found("key pair", name));
            }
            let lines: Vec<String> = keys
                .into_iter()
                .filter(|k| !(k.pair.is_some() && k.name == name))
                .map(|k| k.line)
                .collect();
            self.save_keys(&user, &lines).await
        };
        r.await.map_err(with_op(op))
    }

    async fn list_volumes(
        &self,
        filter: &VolumeFilter,
        page: &PageRequest,
    ) -> Result<Page<Volume>> {
        self.volumes_page(filter, page)
            .await
            .map_err(with_op(Operation::ListVolumes))
    }

    async fn get_volume(&self, id: &VolumeId) -> Result<Volume> {
        self.get_volume_(id)
            .await
            .map_err(with_op(Operation::GetVolume))
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume> {
        self.create_volume_(spec)
            .await
            .map_err(with_op(Operation::CreateVolume))
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<()> {
        self.delete_volume_(id)
            .await
            .map_err(with_op(Operation::DeleteVolume))
    }

    async fn attach_volume(
        &self,
        id: &VolumeId,
        instance: &InstanceId,
        device: Option<&str>,
    ) -> Result<Volume> {
        self.attach_volume_(id, instance, device)
            .await
            .map_err(with_op(Operation::AttachVolume))
    }

    async fn detach_volume(&self, id: &VolumeId) -> Result<Volume> {
        self.detach_volume_(id)
            .await
            .map_err(with_op(Operation::DetachVolume))
    }

    async fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        self.snapshots_page(filter, page)
            .await
            .map_err(with_op(Operation::ListSnapshots))
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.snapshot_image(id)
            .await
            .map(|i| self.snapshot_of(&i))
            .map_err(with_op(Operation::GetSnapshot))
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> Result<Snapshot> {
        self.create_snapshot_(spec)
            .await
            .map_err(with_op(Operation::CreateSnapshot))
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.delete_snapshot_(id)
            .await
            .map_err(with_op(Operation::DeleteSnapshot))
    }

    async fn list_security_groups(
        &self,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<SecurityGroup>> {
        self.groups_page(filter, page)
            .await
            .map_err(with_op(Operation::ListSecurityGroups))
    }

    async fn get_security_group(&self, id: &SecurityGroupId) -> Result<SecurityGroup> {
        self.get_group(id)
            .await
            .map_err(with_op(Operation::GetSecurityGroup))
    }

    async fn create_security_group(&self, spec: &SecurityGroupSpec) -> Result<SecurityGroup> {
        self.create_group(spec)
            .await
            .map_err(with_op(Operation::CreateSecurityGroup))
    }

    async fn delete_security_group(&self, id: &SecurityGroupId) -> Result<()> {
        self.delete_group(id)
            .await
            .map_err(with_op(Operation::DeleteSecurityGroup))
    }

    async fn add_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        self.change_rules(id, rules, true)
            .await
            .map_err(with_op(Operation::AddSecurityRules))
    }

    async fn remove_security_rules(
        &self,
        id: &SecurityGroupId,
        rules: &[SecurityRule],
    ) -> Result<SecurityGroup> {
        self.change_rules(id, rules, false)
            .await
            .map_err(with_op(Operation::RemoveSecurityRules))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_named() {
        for s in 0..12 {
            assert_ne!(raw_state(s, 0), format!("STATE_{s}"));
        }
        for l in 0..72 {
            assert_ne!(raw_state(3, l), format!("ACTIVE/LCM_{l}"));
        }
        assert_eq!(raw_state(3, 3), "ACTIVE/RUNNING");
        assert_eq!(raw_state(8, 0), "POWEROFF");
        assert_eq!(raw_state(3, 99), "ACTIVE/LCM_99");
        assert_eq!(raw_state(42, 0), "STATE_42");
    }

    #[test]
    fn only_lcm_unknown_and_new_codes_are_unknown() {
        for l in 0..72 {
            let s = map_state(3, l, None);
            assert_eq!(s == InstanceState::Unknown, l == 16, "LCM {l} -> {s}");
        }
        for s in 0..12 {
            assert_ne!(map_state(s, 0, None), InstanceState::Unknown, "STATE {s}");
        }
        assert_eq!(map_state(3, 72, None), InstanceState::Unknown);
        assert_eq!(map_state(12, 0, None), InstanceState::Unknown);
        assert_eq!(map_state(3, 2, Some(15)), InstanceState::Rebooting);
        assert_eq!(map_state(3, 2, Some(0)), InstanceState::Pending);
    }

    #[test]
    fn pushes_down_single_states() {
        use InstanceState::*;
        assert_eq!(pushdown_state(&[]), -1);
        assert_eq!(pushdown_state(&[Terminated]), 6);
        assert_eq!(pushdown_state(&[Running]), 3);
        assert_eq!(pushdown_state(&[Rebooting]), 3);
        assert_eq!(pushdown_state(&[Stopped]), -1);
        assert_eq!(pushdown_state(&[Stopped, Terminated]), -2);
        assert_eq!(pushdown_state(&[Unknown]), -1);
    }

    #[test]
    fn plans_follow_the_trait() {
        use InstanceAction::*;
        assert_eq!(plan(Stop, 3, 3, None), Plan::Call("poweroff"));
        assert_eq!(plan(Stop, 3, 18, None), Plan::AsIs);
        assert!(matches!(
            plan(Stop, 8, 0, None),
            Plan::Refuse {
                temporary: false,
                ..
            }
        ));
        assert_eq!(plan(Start, 8, 0, None), Plan::Call("resume"));
        assert_eq!(plan(Start, 2, 0, None), Plan::Call("release"));
        assert_eq!(plan(Start, 3, 20, None), Plan::AsIs);
        assert!(matches!(
            plan(Start, 3, 3, None),
            Plan::Refuse {
                temporary: false,
                ..
            }
        ));
        assert!(matches!(
            plan(Start, 3, 51, None),
            Plan::Refuse {
                temporary: true,
                ..
            }
        ));
        assert_eq!(plan(Reboot, 3, 3, None), Plan::Call("reboot"));
        assert!(matches!(plan(Reboot, 8, 0, None), Plan::Refuse { .. }));
        assert_eq!(plan(Delete, 6, 0, None), Plan::AsIs);
        assert_eq!(plan(Delete, 3, 11, None), Plan::AsIs);
        assert_eq!(plan(Delete, 3, 12, None), Plan::Call("terminate-hard"));
        assert_eq!(plan(Delete, 1, 0, None), Plan::Call("terminate"));
        assert_eq!(plan(Delete, 3, 39, None), Plan::Call("terminate"));
        assert!(matches!(
            plan(Delete, 3, 2, None),
            Plan::Refuse {
                temporary: true,
                ..
            }
        ));
    }

    #[test]
    fn ids_parse_strictly() {
        assert_eq!(ImageRef::parse("image:12"), Some(ImageRef::Disk(12)));
        assert_eq!(ImageRef::parse("template:7"), Some(ImageRef::Template(7)));
        for bad in [
            "12",
            "image:",
            "image:-1",
            "image:1x",
            "template:99999999999",
            "ami-1",
        ] {
            assert_eq!(ImageRef::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_oid("0"), Some(0));
        assert_eq!(parse_oid("+1"), None);
    }

    #[test]
    fn cidrs_come_back() {
        let mut v = VirtualNetwork {
            id: 1,
            uid: 0,
            uname: String::new(),
            name: "n".into(),
            state: 1,
            clusters: vec![],
            used_leases: 0,
            template: Attributes::default(),
            address_ranges: vec![crate::model::AddressRange {
                ar_id: "0".into(),
                kind: "IP4".into(),
                ip: Some("10.77.0.2".into()),
                size: 253,
            }],
        };
        assert_eq!(network_cidr(&v).as_deref(), Some("10.77.0.0/24"));
        v.template.entries.push((
            "NETWORK_ADDRESS".into(),
            Attribute::Single("10.8.0.0".into()),
        ));
        v.template.entries.push((
            "NETWORK_MASK".into(),
            Attribute::Single("255.255.0.0".into()),
        ));
        assert_eq!(network_cidr(&v).as_deref(), Some("10.8.0.0/16"));
        assert!(parse_cidr("10.0.0.300/99").is_err());
        assert!(parse_cidr("10.0.0.1/24").is_err());
        assert_eq!(parse_cidr("10.1.0.0/24").unwrap().1, 24);
    }
}
