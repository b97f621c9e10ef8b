//! The fake's state: the user, VMs, images, VM templates, virtual networks, security
//! groups, clusters and hosts; the VM and image life cycles; and the documents,
//! written as oned writes them (template values in CDATA, template attributes in name
//! order, elements in the order of OpenNebula's XSDs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{FakeConfig, FakeDelays};
use crate::xml::{cdata, escape, Element};
use crate::xmlrpc::Value;

mod secgroups;
mod storage;

use secgroups::{group_document, GroupRec};
use storage::{image_document, ImageEvent};

/// How a call failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Failure {
    /// `[false, message, code, id, 0]`.
    One { code: i64, message: String, id: i64 },
    /// An XML-RPC fault.
    Fault { code: i64, message: String },
}

type Answer = Result<Value, Failure>;

const AUTHORIZATION: i64 = 0x200;
const NO_EXISTS: i64 = 0x400;
const ACTION: i64 = 0x800;
const RPC_API: i64 = 0x1000;
const INTERNAL: i64 = 0x2000;
const ALLOCATE: i64 = 0x4000;

const ACTIVE: i64 = 3;
const DONE: i64 = 6;

/// The VM TEMPLATE attributes the fake keeps in TEMPLATE, in the order of vm.xsd;
/// every other attribute of a request goes to USER_TEMPLATE, as in oned.
const VM_TEMPLATE_ORDER: [&str; 13] = [
    "AUTOMATIC_REQUIREMENTS",
    "CONTEXT",
    "CPU",
    "DISK",
    "GRAPHICS",
    "MEMORY",
    "NIC",
    "OS",
    "SECURITY_GROUP_RULE",
    "TEMPLATE_ID",
    "TM_MAD_SYSTEM",
    "VCPU",
    "VMID",
];

/// The top-level VM attributes oned.conf restricts (`VM_RESTRICTED_ATTR`) to users
/// outside the oneadmin group, as the fake's user is.
const VM_RESTRICTED_ATTRS: [&str; 7] = [
    "DEPLOY_ID",
    "CPU_COST",
    "MEMORY_COST",
    "DISK_COST",
    "PCI",
    "EMULATOR",
    "USER_PRIORITY",
];

const INVALID_NAME_CHARS: &str = "&|:\\\";/'#{}$<>\t\n\u{b}\u{c}\r";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// oned's `state_str()`: the LCM_STATE name for ACTIVE VMs, else the STATE name (the
/// states the fake reaches by itself; others by number).
fn vm_state_name(state: i64, lcm: i64) -> String {
    let name = match (state, lcm) {
        (0, _) => "INIT",
        (1, _) => "PENDING",
        (2, _) => "HOLD",
        (4, _) => "STOPPED",
        (5, _) => "SUSPENDED",
        (6, _) => "DONE",
        (8, _) => "POWEROFF",
        (9, _) => "UNDEPLOYED",
        (10, _) => "CLONING",
        (11, _) => "CLONING_FAILURE",
        (ACTIVE, 0) => "LCM_INIT",
        (ACTIVE, 1) => "PROLOG",
        (ACTIVE, 2) => "BOOT",
        (ACTIVE, 3) => "RUNNING",
        (ACTIVE, 5) => "SAVE_STOP",
        (ACTIVE, 6) => "SAVE_SUSPEND",
        (ACTIVE, 9) => "PROLOG_RESUME",
        (ACTIVE, 10) => "EPILOG_STOP",
        (ACTIVE, 11) => "EPILOG",
        (ACTIVE, 12) => "SHUTDOWN",
        (ACTIVE, 16) => "UNKNOWN",
        (ACTIVE, 17) => "HOTPLUG",
        (ACTIVE, 18) => "SHUTDOWN_POWEROFF",
        (ACTIVE, 19) => "BOOT_UNKNOWN",
        (ACTIVE, 20) => "BOOT_POWEROFF",
        (ACTIVE, 21) => "BOOT_SUSPENDED",
        (ACTIVE, 22) => "BOOT_STOPPED",
        (ACTIVE, 23) => "CLEANUP_DELETE",
        (ACTIVE, 26) => "HOTPLUG_SAVEAS",
        (ACTIVE, 27) => "HOTPLUG_SAVEAS_POWEROFF",
        (ACTIVE, 28) => "HOTPLUG_SAVEAS_SUSPENDED",
        (ACTIVE, 29) => "SHUTDOWN_UNDEPLOY",
        (ACTIVE, 30) => "EPILOG_UNDEPLOY",
        (ACTIVE, 31) => "PROLOG_UNDEPLOY",
        (ACTIVE, 32) => "BOOT_UNDEPLOY",
        (ACTIVE, 33) => "HOTPLUG_PROLOG_POWEROFF",
        (ACTIVE, 34) => "HOTPLUG_EPILOG_POWEROFF",
        (ACTIVE, l) => return format!("LCM_STATE {l}"),
        (s, _) => return format!("STATE {s}"),
    };
    name.to_owned()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    None,
    /// Placed on its host: a history record starts.
    Deploy,
    /// DONE: leases, images and security groups released.
    Done,
    /// The disk hot-plug under way is done.
    Hotplug,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    at: Instant,
    state: i64,
    lcm: i64,
    effect: Effect,
}

#[derive(Clone, Debug)]
struct Hist {
    seq: i64,
    hid: i64,
    hostname: String,
    cid: i64,
    stime: i64,
    etime: i64,
    action: i64,
}

#[derive(Clone, Debug)]
struct VmRec {
    id: i64,
    uid: i64,
    gid: i64,
    uname: String,
    gname: String,
    name: String,
    state: i64,
    lcm: i64,
    prev_state: i64,
    prev_lcm: i64,
    stime: i64,
    etime: i64,
    steps: VecDeque<Step>,
    template: Vec<Element>,
    user_template: Vec<Element>,
    history: Vec<Hist>,
    host: Option<i64>,
    leases: Vec<(i64, u32)>,
    /// A disk hot-plug under way: the DISK_ID, and whether it is an attach.
    hotplug: Option<(i64, bool)>,
}

impl VmRec {
    fn set(&mut self, state: i64, lcm: i64) {
        self.prev_state = self.state;
        self.prev_lcm = self.lcm;
        self.state = state;
        self.lcm = lcm;
    }

    /// Goes to (state, lcm) now, then through `next` (each after its delay).
    fn go(&mut self, state: i64, lcm: i64, next: &[(Duration, i64, i64, Effect)]) {
        self.set(state, lcm);
        self.steps.clear();
        let mut at = Instant::now();
        for (d, s, l, e) in next {
            at += *d;
            self.steps.push_back(Step {
                at,
                state: *s,
                lcm: *l,
                effect: *e,
            });
        }
    }

    fn set_action(&mut self, action: i64) {
        if let Some(h) = self.history.last_mut() {
            h.action = action;
        }
    }

    fn state_str(&self) -> String {
        vm_state_name(self.state, self.lcm)
    }
}

#[derive(Clone, Debug)]
struct UserRec {
    id: i64,
    gid: i64,
    name: String,
    gname: String,
    password_hash: String,
    template: Vec<Element>,
}

#[derive(Clone, Debug)]
struct ImageRec {
    id: i64,
    uid: i64,
    gid: i64,
    uname: String,
    gname: String,
    name: String,
    itype: i64,
    persistent: bool,
    size_mb: i64,
    regtime: i64,
    state: i64,
    prev_state: i64,
    /// DATASTORE_ID.
    ds: i64,
    format: String,
    /// The VMs using it.
    vms: BTreeSet<i64>,
    /// The images being cloned from it.
    clones: BTreeSet<i64>,
    /// The image it is being cloned from (-1: none).
    cloning_id: i64,
    template: Vec<Element>,
}

#[derive(Clone, Debug)]
struct TemplateRec {
    id: i64,
    name: String,
    regtime: i64,
    template: Vec<Element>,
}

#[derive(Clone, Debug)]
struct ArRec {
    ip: u32,
    size: u32,
    /// Lease index -> VM id.
    leases: BTreeMap<u32, i64>,
}

#[derive(Clone, Debug)]
struct VnetRec {
    id: i64,
    uid: i64,
    gid: i64,
    uname: String,
    gname: String,
    name: String,
    cluster: i64,
    bridge: String,
    vn_mad: String,
    template: Vec<Element>,
    ar: Option<ArRec>,
}

impl VnetRec {
    fn used(&self) -> usize {
        self.ar.as_ref().map(|a| a.leases.len()).unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
struct HostRec {
    id: i64,
    name: String,
    state: i64,
    cluster: i64,
}

/// Arguments of a call (the session removed), read as xmlrpc-c reads them.
struct Args<'a> {
    params: &'a [Value],
}

impl Args<'_> {
    fn get(&self, i: usize) -> Result<&Value, Failure> {
        self.params.get(i).ok_or_else(|| Failure::Fault {
            code: -502,
            message: format!("Not enough parameters: parameter {} is missing", i + 2),
        })
    }

    fn mismatch(i: usize, want: &str, got: &Value) -> Failure {
        Failure::Fault {
            code: -501,
            message: format!(
                "Type mismatch: parameter {} is a {}, expected {want}",
                i + 2,
                got.type_name()
            ),
        }
    }

    fn int(&self, i: usize) -> Result<i64, Failure> {
        let v = self.get(i)?;
        v.as_int().ok_or_else(|| Self::mismatch(i, "int", v))
    }

    fn str(&self, i: usize) -> Result<&str, Failure> {
        let v = self.get(i)?;
        v.as_str().ok_or_else(|| Self::mismatch(i, "string", v))
    }

    fn opt_bool(&self, i: usize, default: bool) -> Result<bool, Failure> {
        match self.params.get(i) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Self::mismatch(i, "boolean", v)),
        }
    }

    fn opt_int(&self, i: usize, default: i64) -> Result<i64, Failure> {
        match self.params.get(i) {
            None => Ok(default),
            Some(v) => v.as_int().ok_or_else(|| Self::mismatch(i, "int", v)),
        }
    }

    fn opt_str(&self, i: usize) -> Result<&str, Failure> {
        match self.params.get(i) {
            None => Ok(""),
            Some(v) => v.as_str().ok_or_else(|| Self::mismatch(i, "string", v)),
        }
    }
}

fn fail(method: &str, code: i64, message: impl std::fmt::Display) -> Failure {
    Failure::One {
        code,
        message: format!("[{method}] {message}"),
        id: -1,
    }
}

fn no_exists(method: &str, object: &str, id: i64) -> Failure {
    Failure::One {
        code: NO_EXISTS,
        message: format!("[{method}] Error getting {object} [{id}]."),
        id,
    }
}

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

fn attr<'a>(attrs: &'a [Element], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|e| e.name == name && e.is_leaf())
        .map(|e| e.text.as_str())
}

/// Sets a single attribute, replacing every attribute of that name.
fn replace_attr(attrs: &mut Vec<Element>, name: &str, value: String) {
    attrs.retain(|e| e.name != name);
    attrs.push(Element::leaf(name, value));
}

/// A template from a request: OpenNebula's XML form, read as oned reads it
/// (`Template::rebuild_attributes`): an element without text is no attribute, a
/// vector keeps its sub-attributes that have text.
fn parse_template(method: &str, text: &str) -> Result<Vec<Element>, Failure> {
    if !text.trim_start().starts_with('<') {
        return Err(fail(
            method,
            INTERNAL,
            "Parse error: the fake oned reads templates in XML form only",
        ));
    }
    let root = Element::parse(text)
        .map_err(|_| fail(method, INTERNAL, "Parse error: XML Template malformed."))?;
    Ok(root
        .children
        .into_iter()
        .filter_map(|e| {
            if e.is_leaf() {
                (!e.text.is_empty()).then_some(e)
            } else {
                let children = e
                    .children
                    .into_iter()
                    .filter(|c| c.is_leaf() && !c.text.is_empty())
                    .collect();
                Some(Element {
                    name: e.name,
                    text: String::new(),
                    children,
                })
            }
        })
        .collect())
}

/// The ids of a comma-separated list (`"0,101"`).
fn id_set(text: &str) -> BTreeSet<i64> {
    text.split(',')
        .filter_map(|i| i.trim().parse().ok())
        .collect()
}

/// `0,101`.
fn join_ids(ids: &BTreeSet<i64>) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Whether a pool call with filter flag `flag` lists an object of user `uid`
/// (`public`: one every user may use, such as oneadmin's catalogue).
fn visible(flag: i64, user: i64, uid: i64, public: bool) -> bool {
    match flag {
        -2 => uid == user || public,
        -4 | -3 | -1 => uid == user,
        n => n == uid && (uid == user || public),
    }
}

fn not_authorized(method: &str, user: i64, object: &str, id: i64) -> Failure {
    Failure::One {
        code: AUTHORIZATION,
        message: format!("[{method}] User [{user}] not authorized to perform action on {object}."),
        id,
    }
}

fn name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Invalid NAME, it cannot be empty".into());
    }
    if let Some(c) = name.chars().find(|c| INVALID_NAME_CHARS.contains(*c)) {
        return Some(format!("Invalid NAME, char '{c}' is not allowed"));
    }
    if name.len() > 128 {
        return Some("Invalid NAME, max length is 128 chars".into());
    }
    None
}

/// The fake's world.
pub(crate) struct World {
    delays: FakeDelays,
    desc: bool,
    vm_quota: Option<usize>,
    user: UserRec,
    vms: BTreeMap<i64, VmRec>,
    next_vm: i64,
    /// VMs with steps ahead.
    moving: BTreeSet<i64>,
    images: BTreeMap<i64, ImageRec>,
    next_image: i64,
    /// Images whose datastore operation ends: (when, image, what then).
    image_events: Vec<(Instant, i64, ImageEvent)>,
    templates: BTreeMap<i64, TemplateRec>,
    groups: BTreeMap<i64, GroupRec>,
    next_group: i64,
    vnets: BTreeMap<i64, VnetRec>,
    next_vnet: i64,
    clusters: BTreeMap<i64, String>,
    hosts: BTreeMap<i64, HostRec>,
}

impl World {
    pub(crate) fn new(config: &FakeConfig) -> World {
        let t = now_secs();
        let leaf = |k: &str, v: &str| Element::leaf(k, v);
        let mut w = World {
            delays: config.delays,
            desc: config.list_order_desc,
            vm_quota: config.vm_quota,
            user: UserRec {
                id: 2,
                gid: 1,
                name: config.username.clone(),
                gname: "users".into(),
                password_hash: Sha256::digest(config.password.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                template: vec![leaf("TOKEN_PASSWORD", "0123456789abcdef")],
            },
            vms: BTreeMap::new(),
            next_vm: 0,
            moving: BTreeSet::new(),
            images: BTreeMap::new(),
            next_image: 4,
            image_events: Vec::new(),
            templates: BTreeMap::new(),
            groups: BTreeMap::new(),
            next_group: 100,
            vnets: BTreeMap::new(),
            next_vnet: 2,
            clusters: BTreeMap::from([(0, "default".to_owned()), (100, "edge".to_owned())]),
            hosts: BTreeMap::from([
                (
                    0,
                    HostRec {
                        id: 0,
                        name: "node01".into(),
                        state: 2,
                        cluster: 0,
                    },
                ),
                (
                    1,
                    HostRec {
                        id: 1,
                        name: "node02".into(),
                        state: 2,
                        cluster: 0,
                    },
                ),
                (
                    2,
                    HostRec {
                        id: 2,
                        name: "edge01".into(),
                        state: 4,
                        cluster: 100,
                    },
                ),
            ]),
        };
        for (id, name, itype, size, desc) in [
            (0, "ubuntu-24.04", 0, 2252, "Ubuntu 24.04 LTS"),
            (1, "debian-12", 0, 2048, "Debian 12 <bookworm> & friends"),
            (2, "scratch-data", 2, 10240, "an empty data disk"),
            (3, "alpine-3.20", 0, 256, ""),
        ] {
            let mut template = vec![leaf("DEV_PREFIX", "vd")];
            if !desc.is_empty() {
                template.push(leaf("DESCRIPTION", desc));
            }
            w.images.insert(
                id,
                ImageRec {
                    id,
                    uid: 0,
                    gid: 0,
                    uname: "oneadmin".into(),
                    gname: "oneadmin".into(),
                    name: name.into(),
                    itype,
                    persistent: false,
                    size_mb: size,
                    regtime: t - 86_400,
                    state: 1,
                    prev_state: 1,
                    ds: 1,
                    format: "qcow2".into(),
                    vms: BTreeSet::new(),
                    clones: BTreeSet::new(),
                    cloning_id: -1,
                    template,
                },
            );
        }
        let context = || {
            vector(
                "CONTEXT",
                vec![
                    ("NETWORK", "YES".into()),
                    ("SSH_PUBLIC_KEY", "$USER[SSH_PUBLIC_KEY]".into()),
                    ("SET_HOSTNAME", "$NAME".into()),
                ],
            )
        };
        w.templates.insert(
            0,
            TemplateRec {
                id: 0,
                name: "ubuntu-small".into(),
                regtime: t - 3600,
                template: vec![
                    context(),
                    leaf("CPU", "0.5"),
                    leaf("DESCRIPTION", "Ubuntu, small"),
                    vector("DISK", vec![("IMAGE_ID", "0".into())]),
                    vector(
                        "GRAPHICS",
                        vec![("LISTEN", "0.0.0.0".into()), ("TYPE", "VNC".into())],
                    ),
                    leaf("LOGO", "images/logos/ubuntu.png"),
                    leaf("MEMORY", "1024"),
                    vector("NIC", vec![("NETWORK_ID", "0".into())]),
                    vector("OS", vec![("ARCH", "x86_64".into())]),
                    leaf("VCPU", "1"),
                ],
            },
        );
        w.templates.insert(
            1,
            TemplateRec {
                id: 1,
                name: "debian-large".into(),
                regtime: t - 3000,
                template: vec![
                    context(),
                    leaf("CPU", "2"),
                    vector("DISK", vec![("IMAGE_ID", "1".into())]),
                    leaf("MEMORY", "8192"),
                    vector("OS", vec![("ARCH", "aarch64".into())]),
                    leaf("VCPU", "4"),
                ],
            },
        );
        w.templates.insert(
            2,
            TemplateRec {
                id: 2,
                name: "bare".into(),
                regtime: t - 2000,
                template: vec![vector("DISK", vec![("IMAGE_ID", "3".into())])],
            },
        );
        let public = VnetRec {
            id: 0,
            uid: 0,
            gid: 0,
            uname: "oneadmin".into(),
            gname: "oneadmin".into(),
            name: "public".into(),
            cluster: 0,
            bridge: "br0".into(),
            vn_mad: "bridge".into(),
            template: vec![
                leaf("DNS", "10.0.0.1"),
                leaf("GATEWAY", "10.0.0.1"),
                leaf("NETWORK_ADDRESS", "10.0.0.0"),
                leaf("NETWORK_MASK", "255.255.255.0"),
                leaf("SECURITY_GROUPS", "0"),
            ],
            ar: Some(ArRec {
                ip: u32::from(Ipv4Addr::new(10, 0, 0, 2)),
                size: 253,
                leases: BTreeMap::new(),
            }),
        };
        let private = VnetRec {
            id: 1,
            name: "private".into(),
            bridge: "br1".into(),
            template: vec![
                leaf("DESCRIPTION", "no NETWORK_ADDRESS: the range tells"),
                leaf("SECURITY_GROUPS", "0"),
            ],
            ar: Some(ArRec {
                ip: u32::from(Ipv4Addr::new(192, 168, 100, 10)),
                size: 100,
                leases: BTreeMap::new(),
            }),
            ..public.clone()
        };
        w.vnets.insert(0, public);
        w.vnets.insert(1, private);
        // oned's default security group, which every network adds to its NICs.
        w.groups.insert(0, GroupRec::default_group());
        // A VM of another user, which the user must not see.
        let other = w.add_vm_record(3, 1, "someone-else", "users", "not-yours");
        if let Some(vm) = w.vms.get_mut(&other) {
            vm.set(ACTIVE, 3);
            vm.host = Some(0);
        }
        w.deploy(other);
        w
    }

    fn add_vm_record(&mut self, uid: i64, gid: i64, uname: &str, gname: &str, name: &str) -> i64 {
        let id = self.next_vm;
        self.next_vm += 1;
        self.vms.insert(
            id,
            VmRec {
                id,
                uid,
                gid,
                uname: uname.into(),
                gname: gname.into(),
                name: name.into(),
                state: 1,
                lcm: 0,
                prev_state: 1,
                prev_lcm: 0,
                stime: now_secs(),
                etime: 0,
                steps: VecDeque::new(),
                template: vec![
                    Element::leaf("CPU", "1"),
                    Element::leaf("MEMORY", "128"),
                    Element::leaf("TM_MAD_SYSTEM", ""),
                    Element::leaf("VMID", id.to_string()),
                ],
                user_template: Vec::new(),
                history: Vec::new(),
                host: None,
                leases: Vec::new(),
                hotplug: None,
            },
        );
        id
    }

    pub(crate) fn add_running_vms(&mut self, n: usize) -> Vec<i64> {
        let (uid, gid, uname, gname) = (
            self.user.id,
            self.user.gid,
            self.user.name.clone(),
            self.user.gname.clone(),
        );
        (0..n)
            .map(|k| {
                let id = self.add_vm_record(uid, gid, &uname, &gname, &format!("bulk-{k}"));
                if let Some(vm) = self.vms.get_mut(&id) {
                    vm.set(ACTIVE, 3);
                    vm.host = Some(0);
                }
                self.deploy(id);
                id
            })
            .collect()
    }

    pub(crate) fn set_vm_state(&mut self, id: i64, state: i64, lcm: i64) -> bool {
        let Some(vm) = self.vms.get_mut(&id) else {
            return false;
        };
        vm.go(state, lcm, &[]);
        self.moving.remove(&id);
        if state == DONE {
            self.finish(id);
        }
        true
    }

    /// Moves every VM whose next steps are due.
    fn settle(&mut self) {
        let now = Instant::now();
        let ids: Vec<i64> = self.moving.iter().copied().collect();
        for id in ids {
            loop {
                let step = match self.vms.get_mut(&id) {
                    Some(vm) if vm.steps.front().is_some_and(|s| s.at <= now) => {
                        vm.steps.pop_front()
                    }
                    _ => None,
                };
                let Some(step) = step else {
                    if self.vms.get(&id).is_none_or(|vm| vm.steps.is_empty()) {
                        self.moving.remove(&id);
                    }
                    break;
                };
                if let Some(vm) = self.vms.get_mut(&id) {
                    vm.set(step.state, step.lcm);
                }
                match step.effect {
                    Effect::None => {}
                    Effect::Deploy => self.deploy(id),
                    Effect::Done => self.finish(id),
                    Effect::Hotplug => self.hotplug_done(id),
                }
            }
        }
        self.settle_images(now);
    }

    /// Schedules VM `id` to go to (state, lcm) and then through `next`.
    fn go(&mut self, id: i64, state: i64, lcm: i64, next: &[(Duration, i64, i64, Effect)]) {
        if let Some(vm) = self.vms.get_mut(&id) {
            vm.go(state, lcm, next);
            if next.is_empty() {
                self.moving.remove(&id);
            } else {
                self.moving.insert(id);
            }
        }
    }

    /// The scheduler placed the VM: a history record on its host.
    fn deploy(&mut self, id: i64) {
        let Some(vm) = self.vms.get_mut(&id) else {
            return;
        };
        let Some(host) = vm.host.and_then(|h| self.hosts.get(&h)) else {
            return;
        };
        let t = now_secs();
        if let Some(h) = vm.history.last_mut() {
            h.etime = t;
        }
        vm.history.push(Hist {
            seq: vm.history.len() as i64,
            hid: host.id,
            hostname: host.name.clone(),
            cid: host.cluster,
            stime: t,
            etime: 0,
            action: 0,
        });
        replace_attr(&mut vm.template, "TM_MAD_SYSTEM", "shared".into());
        sort_vm_template(&mut vm.template);
    }

    /// The VM is DONE: its leases and images are released.
    fn finish(&mut self, id: i64) {
        let Some(vm) = self.vms.get_mut(&id) else {
            return;
        };
        let t = now_secs();
        vm.etime = t;
        if let Some(h) = vm.history.last_mut() {
            h.etime = t;
        }
        let leases = std::mem::take(&mut vm.leases);
        vm.hotplug = None;
        let images: Vec<i64> = vm
            .template
            .iter()
            .filter(|e| e.name == "DISK")
            .filter_map(|d| attr(&d.children, "IMAGE_ID").and_then(|i| i.trim().parse().ok()))
            .collect();
        for (vnet, index) in leases {
            if let Some(ar) = self.vnets.get_mut(&vnet).and_then(|v| v.ar.as_mut()) {
                ar.leases.remove(&index);
            }
        }
        for i in images {
            self.release(i, id);
        }
        for g in self.groups.values_mut() {
            g.vms.remove(&id);
        }
    }

    /// Serves one call (the session already checked).
    pub(crate) fn call(&mut self, method: &str, params: &[Value]) -> Answer {
        self.settle();
        let a = Args { params };
        match method {
            "one.system.version" => Ok(Value::from("7.0.0")),
            "one.vmpool.info" => self.vm_pool(method, &a, false),
            "one.vmpool.infoextended" => self.vm_pool(method, &a, true),
            "one.vm.attach" => {
                let id = a.int(0)?;
                let text = a.str(1)?.to_owned();
                self.vm_attach(method, id, &text)
            }
            "one.vm.detach" => {
                let id = a.int(0)?;
                let disk = a.int(1)?;
                self.vm_detach(method, id, disk)
            }
            "one.vm.disksaveas" => {
                let id = a.int(0)?;
                let disk = a.int(1)?;
                let name = a.str(2)?.to_owned();
                let itype = a.opt_str(3)?.to_owned();
                a.opt_int(4, -1)?;
                self.vm_disksaveas(method, id, disk, &name, &itype)
            }
            "one.vm.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                let vm = self.own_vm(method, id)?;
                Ok(Value::Str(vm_document(vm)))
            }
            "one.vm.allocate" => {
                let template = parse_template(method, a.str(0)?)?;
                let hold = a.opt_bool(1, false)?;
                self.create_vm(method, None, template, None, hold)
                    .map(Value::Int)
            }
            "one.template.instantiate" => {
                let tid = a.int(0)?;
                let name = a.str(1)?.to_owned();
                let hold = a.opt_bool(2, false)?;
                let extra = match a.opt_str(3)? {
                    "" => Vec::new(),
                    text => parse_template(method, text)?,
                };
                a.opt_bool(4, false)?;
                let t = self
                    .templates
                    .get(&tid)
                    .ok_or_else(|| no_exists(method, "virtual machine template", tid))?;
                let mut merged = t.template.clone();
                for e in &extra {
                    merged.retain(|m| m.name != e.name);
                }
                merged.extend(extra);
                let prefix = t.name.clone();
                let name = if name.is_empty() { None } else { Some(name) };
                self.create_vm(method, name, merged, Some((tid, prefix)), hold)
                    .map(Value::Int)
            }
            "one.vm.update" => {
                let id = a.int(0)?;
                let text = a.str(1)?.to_owned();
                let update_type = a.opt_int(2, 0)?;
                self.vm_update(method, id, &text, update_type)
            }
            "one.vm.action" => {
                let action = a.str(0)?.to_owned();
                let id = a.int(1)?;
                self.vm_action(method, &action, id)
            }
            "one.imagepool.info" => {
                let (flag, start, end) = pool_args(method, &a)?;
                let user = self.user.id;
                let mut out = String::from("<IMAGE_POOL>");
                for img in page(&self.images, self.desc, start, end, |i| {
                    visible(flag, user, i.uid, i.uid == 0)
                }) {
                    image_document(&mut out, img);
                }
                out.push_str("</IMAGE_POOL>");
                Ok(Value::Str(out))
            }
            "one.image.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                let img = self.usable_image(method, id)?;
                let mut out = String::new();
                image_document(&mut out, img);
                Ok(Value::Str(out))
            }
            "one.image.allocate" => {
                let text = a.str(0)?.to_owned();
                let ds = a.int(1)?;
                a.opt_bool(2, false)?;
                self.image_allocate(method, &text, ds)
            }
            "one.image.clone" => {
                let id = a.int(0)?;
                let name = a.str(1)?.to_owned();
                let ds = a.opt_int(2, -1)?;
                self.image_clone(method, id, &name, ds)
            }
            "one.image.persistent" => {
                let id = a.int(0)?;
                let persistent = a.get(1)?;
                let persistent = persistent
                    .as_bool()
                    .ok_or_else(|| Args::mismatch(1, "boolean", persistent))?;
                self.image_persistent(method, id, persistent)
            }
            "one.image.update" => {
                let id = a.int(0)?;
                let text = a.str(1)?.to_owned();
                let update_type = a.opt_int(2, 0)?;
                self.image_update(method, id, &text, update_type)
            }
            "one.image.delete" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                self.image_delete(method, id)
            }
            "one.secgrouppool.info" => {
                let (flag, start, end) = pool_args(method, &a)?;
                let user = self.user.id;
                let mut out = String::from("<SECURITY_GROUP_POOL>");
                for g in page(&self.groups, self.desc, start, end, |g| {
                    visible(flag, user, g.uid, g.id == 0)
                }) {
                    group_document(&mut out, g);
                }
                out.push_str("</SECURITY_GROUP_POOL>");
                Ok(Value::Str(out))
            }
            "one.secgroup.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                let g = self.usable_group(method, id)?;
                let mut out = String::new();
                group_document(&mut out, g);
                Ok(Value::Str(out))
            }
            "one.secgroup.allocate" => {
                let text = a.str(0)?.to_owned();
                self.group_allocate(method, &text)
            }
            "one.secgroup.update" => {
                let id = a.int(0)?;
                let text = a.str(1)?.to_owned();
                let update_type = a.opt_int(2, 0)?;
                self.group_update(method, id, &text, update_type)
            }
            "one.secgroup.delete" => {
                let id = a.int(0)?;
                self.group_delete(method, id)
            }
            "one.template.delete" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                if !self.templates.contains_key(&id) {
                    return Err(no_exists(method, "virtual machine template", id));
                }
                // Every template of the fake is oneadmin's.
                Err(not_authorized(
                    method,
                    self.user.id,
                    "virtual machine template",
                    id,
                ))
            }
            "one.templatepool.info" => {
                let (_, start, end) = pool_args(method, &a)?;
                let mut out = String::from("<VMTEMPLATE_POOL>");
                for t in page(&self.templates, self.desc, start, end, |_| true) {
                    template_document(&mut out, t);
                }
                out.push_str("</VMTEMPLATE_POOL>");
                Ok(Value::Str(out))
            }
            "one.template.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                a.opt_bool(2, false)?;
                let t = self
                    .templates
                    .get(&id)
                    .ok_or_else(|| no_exists(method, "virtual machine template", id))?;
                let mut out = String::new();
                template_document(&mut out, t);
                Ok(Value::Str(out))
            }
            "one.vnpool.info" => {
                let (_, start, end) = pool_args(method, &a)?;
                let mut out = String::from("<VNET_POOL>");
                for v in page(&self.vnets, self.desc, start, end, |_| true) {
                    vnet_document(&mut out, v, false);
                }
                out.push_str("</VNET_POOL>");
                Ok(Value::Str(out))
            }
            "one.vn.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                let v = self
                    .vnets
                    .get(&id)
                    .ok_or_else(|| no_exists(method, "virtual network", id))?;
                let mut out = String::new();
                vnet_document(&mut out, v, true);
                Ok(Value::Str(out))
            }
            "one.vn.allocate" => {
                let template = parse_template(method, a.str(0)?)?;
                let cluster = a.opt_int(1, -1)?;
                self.vnet_allocate(method, template, cluster)
            }
            "one.vn.delete" => {
                let id = a.int(0)?;
                let v = self
                    .vnets
                    .get(&id)
                    .ok_or_else(|| no_exists(method, "virtual network", id))?;
                if v.uid != self.user.id {
                    return Err(fail(
                        method,
                        AUTHORIZATION,
                        format!(
                            "User [{}] not authorized to perform action on virtual network.",
                            self.user.id
                        ),
                    ));
                }
                if v.used() > 0 {
                    return Err(fail(
                        method,
                        ACTION,
                        "Cannot delete virtual network. Can not remove a virtual network with leases in use",
                    ));
                }
                self.vnets.remove(&id);
                Ok(Value::Int(id))
            }
            "one.clusterpool.info" => {
                let mut out = String::from("<CLUSTER_POOL>");
                for id in self.clusters.keys() {
                    self.cluster_document(&mut out, *id);
                }
                out.push_str("</CLUSTER_POOL>");
                Ok(Value::Str(out))
            }
            "one.cluster.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                if !self.clusters.contains_key(&id) {
                    return Err(no_exists(method, "cluster", id));
                }
                let mut out = String::new();
                self.cluster_document(&mut out, id);
                Ok(Value::Str(out))
            }
            "one.hostpool.info" => {
                let mut out = String::from("<HOST_POOL>");
                for h in self.hosts.values() {
                    self.host_document(&mut out, h);
                }
                out.push_str("</HOST_POOL>");
                Ok(Value::Str(out))
            }
            "one.user.info" => {
                let id = a.int(0)?;
                a.opt_bool(1, false)?;
                self.check_self(method, id)?;
                Ok(Value::Str(self.user_document()))
            }
            "one.user.update" => {
                let id = a.int(0)?;
                let template = parse_template(method, a.str(1)?)?;
                let append = a.opt_int(2, 0)?;
                self.check_self(method, id)?;
                match append {
                    0 => self.user.template = template,
                    1 => {
                        for e in &template {
                            self.user.template.retain(|m| m.name != e.name);
                        }
                        self.user.template.extend(template);
                    }
                    _ => return Err(fail(method, RPC_API, "Wrong update type")),
                }
                Ok(Value::Int(self.user.id))
            }
            _ => Err(Failure::Fault {
                code: -506,
                message: format!("Requested method '{method}' not found"),
            }),
        }
    }

    fn check_self(&self, method: &str, id: i64) -> Result<(), Failure> {
        if id == -1 || id == self.user.id {
            Ok(())
        } else if !(0..=10).contains(&id) {
            Err(no_exists(method, "user", id))
        } else {
            Err(fail(
                method,
                AUTHORIZATION,
                format!(
                    "User [{}] not authorized to perform action on user.",
                    self.user.id
                ),
            ))
        }
    }

    fn own_vm(&self, method: &str, id: i64) -> Result<&VmRec, Failure> {
        let vm = self
            .vms
            .get(&id)
            .ok_or_else(|| no_exists(method, "virtual machine", id))?;
        if vm.uid != self.user.id {
            return Err(Failure::One {
                code: AUTHORIZATION,
                message: format!(
                    "[{method}] User [{}] not authorized to perform action on virtual machine [{id}].",
                    self.user.id
                ),
                id,
            });
        }
        Ok(vm)
    }

    fn vm_pool(&self, method: &str, a: &Args<'_>, extended: bool) -> Answer {
        let (flag, start, end) = pool_args(method, a)?;
        let state = a.int(3)?;
        if !(-2..=11).contains(&state) {
            return Err(fail(
                method,
                RPC_API,
                format!("Incorrect state filter {state}"),
            ));
        }
        if !a.opt_str(4)?.is_empty() {
            return Err(fail(
                method,
                INTERNAL,
                "JSON query search is not supported by the SQL backend",
            ));
        }
        let user = &self.user;
        let mut out = String::from("<VM_POOL>");
        let visible = |vm: &VmRec| {
            let owner = match flag {
                -4 => vm.gid == user.gid && vm.uid == user.id,
                -3..=-1 => vm.uid == user.id,
                uid => vm.uid == uid && uid == user.id,
            };
            owner
                && match state {
                    -2 => true,
                    -1 => vm.state != DONE,
                    s => vm.state == s,
                }
        };
        for vm in page(&self.vms, self.desc, start, end, visible) {
            if extended {
                out.push_str(&vm_document(vm));
            } else {
                vm_pool_entry(&mut out, vm);
            }
        }
        out.push_str("</VM_POOL>");
        Ok(Value::Str(out))
    }

    fn create_vm(
        &mut self,
        method: &str,
        name: Option<String>,
        attrs: Vec<Element>,
        template: Option<(i64, String)>,
        hold: bool,
    ) -> Result<i64, Failure> {
        let object = "virtual machine";
        let alloc = |msg: String| {
            fail(
                method,
                ALLOCATE,
                format!("Error allocating a new {object}. {msg}"),
            )
        };
        if let Some(q) = self.vm_quota {
            let used = self
                .vms
                .values()
                .filter(|v| v.uid == self.user.id && v.state != DONE)
                .count();
            if used >= q {
                return Err(fail(
                    method,
                    AUTHORIZATION,
                    format!(
                        "User [{0}] : user [{0}] limit of {q} reached for VMS quota in VM.",
                        self.user.id
                    ),
                ));
            }
        }
        let mut known = Vec::new();
        let mut user_template = Vec::new();
        let mut name = name.or_else(|| attr(&attrs, "NAME").map(str::to_owned));
        for e in attrs {
            if e.name == "NAME" {
                continue;
            }
            if VM_TEMPLATE_ORDER.contains(&e.name.as_str()) && e.name != "VMID" {
                known.push(e);
            } else {
                user_template.push(e);
            }
        }
        let memory = attr(&known, "MEMORY").and_then(|m| m.trim().parse::<i64>().ok());
        if memory.is_none_or(|m| m <= 0) {
            return Err(alloc(
                "MEMORY attribute must be a positive integer value.".into(),
            ));
        }
        let cpu = attr(&known, "CPU").and_then(|c| c.trim().parse::<f64>().ok());
        if cpu.is_none_or(|c| c.is_nan() || c <= 0.0) {
            return Err(alloc(
                "CPU attribute must be a positive float or integer value.".into(),
            ));
        }
        if let Some(v) = attr(&known, "VCPU") {
            if v.trim().parse::<i64>().ok().is_none_or(|v| v <= 0) {
                return Err(alloc("VCPU must be an integer greater than 0".into()));
            }
        }
        // Disks: each names an existing image the user may use.
        let mut images = Vec::new();
        for d in known.iter().filter(|e| e.name == "DISK") {
            let Some(iid) =
                attr(&d.children, "IMAGE_ID").and_then(|i| i.trim().parse::<i64>().ok())
            else {
                continue;
            };
            if !self
                .images
                .get(&iid)
                .is_some_and(|i| i.uid == self.user.id || i.uid == 0)
            {
                return Err(alloc(format!("Image with ID: {iid} does not exist")));
            }
            images.push(iid);
        }
        // NICs: each names an existing network with a free lease.
        let mut wanted = Vec::new();
        for n in known.iter().filter(|e| e.name == "NIC") {
            let Some(vid) =
                attr(&n.children, "NETWORK_ID").and_then(|i| i.trim().parse::<i64>().ok())
            else {
                return Err(alloc(
                    "NIC without NETWORK_ID is not supported by the fake".into(),
                ));
            };
            let Some(v) = self.vnets.get(&vid) else {
                return Err(alloc(format!("Virtual network {vid} does not exist")));
            };
            let taken = wanted.iter().filter(|w| **w == vid).count();
            let free =
                v.ar.as_ref()
                    .map(|ar| ar.size as usize - ar.leases.len())
                    .unwrap_or(0);
            if free <= taken {
                return Err(alloc(format!(
                    "Cannot get IP/MAC lease from virtual network {vid}."
                )));
            }
            wanted.push(vid);
        }
        let id = self.next_vm;
        let name = match name.take().filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => format!(
                "{}-{id}",
                template.as_ref().map(|t| t.1.as_str()).unwrap_or("one")
            ),
        };
        if let Some(why) = name_error(&name) {
            return Err(alloc(why));
        }
        // Placement: SCHED_REQUIREMENTS = "CLUSTER_ID = N", else the first cluster.
        let cluster = attr(&user_template, "SCHED_REQUIREMENTS")
            .and_then(|r| r.split('=').nth(1))
            .and_then(|c| c.trim().trim_matches('"').parse::<i64>().ok())
            .unwrap_or(0);
        let host = self
            .hosts
            .values()
            .filter(|h| h.cluster == cluster && h.state == 2)
            .map(|h| h.id)
            .nth(id as usize % 2)
            .or_else(|| {
                self.hosts
                    .values()
                    .find(|h| h.cluster == cluster && h.state == 2)
                    .map(|h| h.id)
            });

        // The images, acquired as oned acquires them for a new VM (LOCKED ones too:
        // the VM waits for them).
        let mut acquired = Vec::new();
        for iid in &images {
            if let Err(why) = self.acquire(*iid, id, false) {
                for a in &acquired {
                    self.release(*a, id);
                }
                return Err(alloc(why));
            }
            acquired.push(*iid);
        }

        let (uid, gid, uname, gname) = (
            self.user.id,
            self.user.gid,
            self.user.name.clone(),
            self.user.gname.clone(),
        );
        self.add_vm_record(uid, gid, &uname, &gname, &name);

        // Expand disks and NICs as oned does, take the leases.
        let mut template_attrs: Vec<Element> = Vec::new();
        let mut disk_id = 0;
        let mut nic_id = 0;
        let mut leases = Vec::new();
        let mut nic_context = Vec::new();
        let mut targets = Vec::new();
        let mut groups = BTreeSet::new();
        for e in known {
            match e.name.as_str() {
                "DISK" => {
                    template_attrs.push(self.expand_disk(e.children, disk_id, &mut targets));
                    disk_id += 1;
                }
                "NIC" => {
                    let mut n = e.children.clone();
                    let vid = attr(&n, "NETWORK_ID")
                        .and_then(|i| i.trim().parse::<i64>().ok())
                        .unwrap_or(-1);
                    if let Some(v) = self.vnets.get_mut(&vid) {
                        if let Some(ar) = v.ar.as_mut() {
                            let index = (0..ar.size)
                                .find(|i| !ar.leases.contains_key(i))
                                .unwrap_or(0);
                            ar.leases.insert(index, id);
                            leases.push((vid, index));
                            let ip = Ipv4Addr::from(ar.ip + index);
                            replace_attr(&mut n, "IP", ip.to_string());
                            replace_attr(&mut n, "MAC", mac_of(ip));
                            replace_attr(&mut n, "AR_ID", "0".into());
                            nic_context.push((nic_id, ip));
                        }
                        replace_attr(&mut n, "NETWORK", v.name.clone());
                        replace_attr(&mut n, "NETWORK_UNAME", v.uname.clone());
                        replace_attr(&mut n, "BRIDGE", v.bridge.clone());
                        replace_attr(&mut n, "VN_MAD", v.vn_mad.clone());
                        // The NIC's groups and the network's (group 0, by default).
                        let mut sgs = id_set(attr(&n, "SECURITY_GROUPS").unwrap_or_default());
                        sgs.extend(id_set(
                            attr(&v.template, "SECURITY_GROUPS").unwrap_or_default(),
                        ));
                        if !sgs.is_empty() {
                            replace_attr(&mut n, "SECURITY_GROUPS", join_ids(&sgs));
                        }
                        groups.extend(sgs);
                    }
                    replace_attr(&mut n, "NIC_ID", nic_id.to_string());
                    replace_attr(&mut n, "TARGET", format!("one-{id}-{nic_id}"));
                    n.sort_by(|a, b| a.name.cmp(&b.name));
                    nic_id += 1;
                    template_attrs.push(Element {
                        name: "NIC".into(),
                        text: String::new(),
                        children: n,
                    });
                }
                _ => template_attrs.push(e),
            }
        }
        // The context: the user's keys resolved, the NICs' addresses.
        let keys = attr(&self.user.template, "SSH_PUBLIC_KEY")
            .unwrap_or_default()
            .to_owned();
        if let Some(ctx) = template_attrs.iter_mut().find(|e| e.name == "CONTEXT") {
            for c in ctx.children.iter_mut() {
                c.text = c
                    .text
                    .replace("$USER[SSH_PUBLIC_KEY]", &keys)
                    .replace("$NAME", &name);
            }
            for (n, ip) in &nic_context {
                replace_attr(&mut ctx.children, &format!("ETH{n}_IP"), ip.to_string());
                replace_attr(&mut ctx.children, &format!("ETH{n}_MAC"), mac_of(*ip));
            }
            replace_attr(&mut ctx.children, "DISK_ID", disk_id.to_string());
            replace_attr(&mut ctx.children, "TARGET", "hda".into());
            ctx.children.sort_by(|a, b| a.name.cmp(&b.name));
        }
        // The groups' rules, and the VM in each group (unknown groups are skipped, as
        // oned skips them).
        for g in &groups {
            if let Some(group) = self.groups.get_mut(g) {
                group.vms.insert(id);
                template_attrs.extend(group.vm_rules());
            }
        }
        template_attrs.retain(|e| e.name != "TEMPLATE_ID");
        if let Some((tid, _)) = &template {
            template_attrs.push(Element::leaf("TEMPLATE_ID", tid.to_string()));
        }
        template_attrs.push(Element::leaf(
            "AUTOMATIC_REQUIREMENTS",
            "!(PUBLIC_CLOUD = YES)",
        ));
        template_attrs.push(Element::leaf("TM_MAD_SYSTEM", ""));
        template_attrs.push(Element::leaf("VMID", id.to_string()));
        sort_vm_template(&mut template_attrs);
        user_template.sort_by(|a, b| a.name.cmp(&b.name));

        let d = self.delays;
        if let Some(vm) = self.vms.get_mut(&id) {
            vm.template = template_attrs;
            vm.user_template = user_template;
            vm.leases = leases;
            vm.host = host;
        }
        if hold {
            self.go(id, 2, 0, &[]);
        } else if host.is_some() {
            self.go(
                id,
                1,
                0,
                &[
                    (d.schedule, ACTIVE, 1, Effect::Deploy),
                    (d.prolog, ACTIVE, 2, Effect::None),
                    (d.boot, ACTIVE, 3, Effect::None),
                ],
            );
        }
        Ok(id)
    }

    fn vm_action(&mut self, method: &str, action: &str, id: i64) -> Answer {
        let vm = self.own_vm(method, id)?;
        let (state, lcm) = (vm.state, vm.lcm);
        let state_str = vm.state_str();
        let has_host = vm.host.is_some();
        let d = self.delays;
        let wrong = || {
            Err(fail(
                method,
                ACTION,
                format!(
                    "Error performing action \"{action}\": This action is not available for state {state_str}"
                ),
            ))
        };
        let hard = action.ends_with("-hard");
        match action {
            "terminate" | "terminate-hard" => {
                let act = if hard { 28 } else { 27 };
                match (state, lcm) {
                    (4 | 5 | 8 | 9, _) => {
                        self.go(id, ACTIVE, 11, &[(d.epilog, DONE, 0, Effect::Done)]);
                    }
                    (0 | 1 | 2 | 10 | 11, _) => {
                        self.go(id, DONE, 0, &[]);
                        self.finish(id);
                    }
                    (DONE, _) | (7, _) => {}
                    (ACTIVE, 3 | 16) => self.go(
                        id,
                        ACTIVE,
                        12,
                        &[
                            (d.shutdown, ACTIVE, 11, Effect::None),
                            (d.epilog, DONE, 0, Effect::Done),
                        ],
                    ),
                    (ACTIVE, 12) if hard => self.go(
                        id,
                        ACTIVE,
                        12,
                        &[
                            (d.shutdown / 2, ACTIVE, 11, Effect::None),
                            (d.epilog, DONE, 0, Effect::Done),
                        ],
                    ),
                    (ACTIVE, 36..=42 | 44 | 46..=50 | 61) => {
                        self.go(id, ACTIVE, 23, &[(d.epilog, DONE, 0, Effect::Done)])
                    }
                    _ => {
                        return Err(fail(
                            method,
                            ACTION,
                            format!(
                                "Error performing action \"{action}\": Could not terminate VM {id}, wrong state {state_str}."
                            ),
                        ))
                    }
                }
                self.mark(id, act);
            }
            "poweroff" | "poweroff-hard" => match (state, lcm) {
                (ACTIVE, 3 | 16) => {
                    self.go(id, ACTIVE, 18, &[(d.shutdown, 8, 0, Effect::None)]);
                    self.mark(id, if hard { 20 } else { 19 });
                }
                (ACTIVE, 18) if hard => {
                    self.go(id, ACTIVE, 18, &[(d.shutdown / 2, 8, 0, Effect::None)]);
                    self.mark(id, 20);
                }
                _ => return wrong(),
            },
            "resume" => {
                match (state, lcm) {
                    (4, _) | (9, _) if has_host => {
                        let (prolog, boot) = if state == 4 { (9, 22) } else { (31, 32) };
                        self.go(
                            id,
                            1,
                            0,
                            &[
                                (d.schedule, ACTIVE, prolog, Effect::Deploy),
                                (d.prolog, ACTIVE, boot, Effect::None),
                                (d.boot, ACTIVE, 3, Effect::None),
                            ],
                        );
                    }
                    (5, _) => self.go(id, ACTIVE, 21, &[(d.boot, ACTIVE, 3, Effect::None)]),
                    (8, _) => self.go(id, ACTIVE, 20, &[(d.boot, ACTIVE, 3, Effect::None)]),
                    (ACTIVE, 16) => self.go(id, ACTIVE, 19, &[(d.boot, ACTIVE, 3, Effect::None)]),
                    _ => return wrong(),
                }
                self.mark(id, 11);
            }
            "reboot" | "reboot-hard" => match (state, lcm) {
                (ACTIVE, 3) => self.mark(id, if hard { 16 } else { 15 }),
                _ => return wrong(),
            },
            "suspend" => match (state, lcm) {
                (ACTIVE, 3) => {
                    self.go(id, ACTIVE, 6, &[(d.shutdown, 5, 0, Effect::None)]);
                    self.mark(id, 10);
                }
                _ => return wrong(),
            },
            "stop" => match (state, lcm) {
                (ACTIVE, 3) | (5, _) => {
                    self.go(
                        id,
                        ACTIVE,
                        5,
                        &[
                            (d.shutdown, ACTIVE, 10, Effect::None),
                            (d.epilog, 4, 0, Effect::None),
                        ],
                    );
                    self.mark(id, 9);
                }
                _ => return wrong(),
            },
            "undeploy" | "undeploy-hard" => {
                match (state, lcm) {
                    (8, _) => self.go(id, ACTIVE, 30, &[(d.epilog, 9, 0, Effect::None)]),
                    (ACTIVE, 3 | 16) => self.go(
                        id,
                        ACTIVE,
                        29,
                        &[
                            (d.shutdown, ACTIVE, 30, Effect::None),
                            (d.epilog, 9, 0, Effect::None),
                        ],
                    ),
                    _ => return wrong(),
                }
                self.mark(id, if hard { 6 } else { 5 });
            }
            "hold" => match state {
                1 => self.go(id, 2, 0, &[]),
                _ => return wrong(),
            },
            "release" => match state {
                2 if has_host => self.go(
                    id,
                    1,
                    0,
                    &[
                        (d.schedule, ACTIVE, 1, Effect::Deploy),
                        (d.prolog, ACTIVE, 2, Effect::None),
                        (d.boot, ACTIVE, 3, Effect::None),
                    ],
                ),
                2 => self.go(id, 1, 0, &[]),
                _ => return wrong(),
            },
            _ => {
                return Err(fail(
                    method,
                    ACTION,
                    format!("Action \"{action}\" is not supported"),
                ))
            }
        }
        Ok(Value::Int(id))
    }

    /// `one.vm.update` as oned does it (VirtualMachineAPI::update): authorization, the
    /// update type (0 replace, 1 merge), the template (a parse error is ACTION), the
    /// restricted attributes a user outside oneadmin may not set (INTERNAL), then the
    /// USER_TEMPLATE replaced or merged (each attribute named replaces every attribute
    /// of that name). Any state will do, DONE included.
    fn vm_update(&mut self, method: &str, id: i64, text: &str, update_type: i64) -> Answer {
        let vm = self.own_vm(method, id)?;
        if !(0..=1).contains(&update_type) {
            return Err(fail(method, RPC_API, "Wrong update type"));
        }
        let template = parse_template(method, text).map_err(|f| match f {
            Failure::One { message, id, .. } => Failure::One {
                code: ACTION,
                message,
                id,
            },
            other => other,
        })?;
        let unchanged = |e: &Element| {
            vm.user_template
                .iter()
                .any(|old| old.name == e.name && old.text == e.text)
        };
        let restricted = template
            .iter()
            .find(|e| VM_RESTRICTED_ATTRS.contains(&e.name.as_str()))
            .filter(|e| update_type == 1 || !unchanged(e));
        if let Some(e) = restricted {
            let why = if update_type == 1 {
                format!("User Template includes a restricted attribute {}", e.name)
            } else {
                format!("Tried to change restricted attribute: {}", e.name)
            };
            return Err(fail(
                method,
                INTERNAL,
                format!("Cannot update template. {why}"),
            ));
        }
        let Some(vm) = self.vms.get_mut(&id) else {
            return Err(no_exists(method, "virtual machine", id));
        };
        if update_type == 0 {
            vm.user_template = template;
        } else {
            for e in &template {
                vm.user_template.retain(|m| m.name != e.name);
            }
            vm.user_template.extend(template);
        }
        vm.user_template.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Value::Int(id))
    }

    fn mark(&mut self, id: i64, action: i64) {
        if let Some(vm) = self.vms.get_mut(&id) {
            vm.set_action(action);
        }
    }

    fn vnet_allocate(&mut self, method: &str, template: Vec<Element>, cluster: i64) -> Answer {
        let alloc = |msg: String| {
            fail(
                method,
                ALLOCATE,
                format!("Error allocating a new virtual network. {msg}"),
            )
        };
        let cluster = if cluster == -1 { 0 } else { cluster };
        if !self.clusters.contains_key(&cluster) {
            return Err(no_exists(method, "cluster", cluster));
        }
        let Some(name) = attr(&template, "NAME").map(str::to_owned) else {
            return Err(alloc("No NAME in template.".into()));
        };
        if let Some(why) = name_error(&name) {
            return Err(alloc(why));
        }
        let Some(vn_mad) = attr(&template, "VN_MAD").map(str::to_owned) else {
            return Err(alloc("No VN_MAD in template.".into()));
        };
        if let Some(taken) = self
            .vnets
            .values()
            .find(|v| v.name == name && v.uid == self.user.id)
        {
            return Err(alloc(format!("NAME is already taken by NET {}.", taken.id)));
        }
        let ar = match template.iter().find(|e| e.name == "AR") {
            None => None,
            Some(ar) => {
                let kind = attr(&ar.children, "TYPE").unwrap_or_default();
                let ip = attr(&ar.children, "IP").and_then(|i| i.trim().parse::<Ipv4Addr>().ok());
                let size = attr(&ar.children, "SIZE").and_then(|s| s.trim().parse::<u32>().ok());
                match (kind, ip, size) {
                    ("IP4", Some(ip), Some(size)) if size > 0 => Some(ArRec {
                        ip: u32::from(ip),
                        size,
                        leases: BTreeMap::new(),
                    }),
                    _ => {
                        return Err(alloc(
                            "Invalid AR definition: the fake takes TYPE IP4 with IP and SIZE"
                                .into(),
                        ))
                    }
                }
            }
        };
        let id = self.next_vnet;
        self.next_vnet += 1;
        let bridge = attr(&template, "BRIDGE")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("onebr{id}"));
        // Every network adds the default security group (VirtualNetwork::insert).
        let mut groups = id_set(attr(&template, "SECURITY_GROUPS").unwrap_or_default());
        groups.insert(0);
        let mut kept: Vec<Element> = template
            .into_iter()
            .filter(|e| e.name != "NAME" && e.name != "AR" && e.name != "SECURITY_GROUPS")
            .collect();
        kept.push(Element::leaf("SECURITY_GROUPS", join_ids(&groups)));
        kept.sort_by(|a, b| a.name.cmp(&b.name));
        self.vnets.insert(
            id,
            VnetRec {
                id,
                uid: self.user.id,
                gid: self.user.gid,
                uname: self.user.name.clone(),
                gname: self.user.gname.clone(),
                name,
                cluster,
                bridge,
                vn_mad,
                template: kept,
                ar,
            },
        );
        Ok(Value::Int(id))
    }

    // ---- documents ----

    fn cluster_document(&self, out: &mut String, id: i64) {
        let name = self
            .clusters
            .get(&id)
            .map(String::as_str)
            .unwrap_or_default();
        let _ = write!(
            out,
            "<CLUSTER><ID>{id}</ID><NAME>{}</NAME><HOSTS>",
            escape(name)
        );
        for h in self.hosts.values().filter(|h| h.cluster == id) {
            let _ = write!(out, "<ID>{}</ID>", h.id);
        }
        // The default cluster holds every datastore; the others only the system one.
        out.push_str(if id == 0 {
            "</HOSTS><DATASTORES><ID>0</ID><ID>1</ID><ID>2</ID></DATASTORES><VNETS>"
        } else {
            "</HOSTS><DATASTORES><ID>0</ID></DATASTORES><VNETS>"
        });
        for v in self.vnets.values().filter(|v| v.cluster == id) {
            let _ = write!(out, "<ID>{}</ID>", v.id);
        }
        out.push_str("</VNETS><TEMPLATE>");
        write_attrs(
            out,
            &[
                Element::leaf("RESERVED_CPU", ""),
                Element::leaf("RESERVED_MEM", ""),
            ],
        );
        out.push_str("</TEMPLATE></CLUSTER>");
    }

    fn host_document(&self, out: &mut String, h: &HostRec) {
        let cluster = self
            .clusters
            .get(&h.cluster)
            .map(String::as_str)
            .unwrap_or_default();
        let vms: Vec<i64> = self
            .vms
            .values()
            .filter(|v| v.host == Some(h.id) && v.state == ACTIVE)
            .map(|v| v.id)
            .collect();
        let _ = write!(
            out,
            "<HOST><ID>{id}</ID><NAME>{name}</NAME><STATE>{state}</STATE><PREV_STATE>{state}</PREV_STATE>\
             <IM_MAD>{mad}</IM_MAD><VM_MAD>{mad}</VM_MAD><CLUSTER_ID>{cid}</CLUSTER_ID><CLUSTER>{cluster}</CLUSTER>\
             <HOST_SHARE><MEM_USAGE>{mem}</MEM_USAGE><CPU_USAGE>{cpu}</CPU_USAGE><TOTAL_MEM>16777216</TOTAL_MEM>\
             <TOTAL_CPU>800</TOTAL_CPU><MAX_MEM>16777216</MAX_MEM><MAX_CPU>800</MAX_CPU><RUNNING_VMS>{running}</RUNNING_VMS>\
             <VMS_THREAD>1</VMS_THREAD><DATASTORES><DISK_USAGE>0</DISK_USAGE><FREE_DISK>102400</FREE_DISK>\
             <MAX_DISK>204800</MAX_DISK><USED_DISK>102400</USED_DISK></DATASTORES><PCI_DEVICES></PCI_DEVICES>\
             <NUMA_NODES></NUMA_NODES></HOST_SHARE><VMS>",
            id = h.id,
            name = escape(&h.name),
            state = h.state,
            mad = "kvm",
            cid = h.cluster,
            cluster = escape(cluster),
            mem = vms.len() * 131_072,
            cpu = vms.len() * 100,
            running = vms.len(),
        );
        for v in &vms {
            let _ = write!(out, "<ID>{v}</ID>");
        }
        out.push_str("</VMS><TEMPLATE>");
        write_attrs(
            out,
            &[
                Element::leaf("ARCH", "x86_64"),
                Element::leaf("HYPERVISOR", "kvm"),
            ],
        );
        let _ = write!(
            out,
            "</TEMPLATE><MONITORING><TIMESTAMP>{}</TIMESTAMP><ID>{}</ID></MONITORING></HOST>",
            now_secs(),
            h.id
        );
    }

    fn user_document(&self) -> String {
        let u = &self.user;
        let mut out = format!(
            "<USER><ID>{}</ID><GID>{}</GID><GROUPS><ID>{}</ID></GROUPS><GNAME>{}</GNAME>\
             <NAME>{}</NAME><PASSWORD>{}</PASSWORD><AUTH_DRIVER>core</AUTH_DRIVER>\
             <ENABLED>1</ENABLED><TEMPLATE>",
            u.id,
            u.gid,
            u.gid,
            escape(&u.gname),
            escape(&u.name),
            u.password_hash
        );
        write_attrs(&mut out, &u.template);
        out.push_str("</TEMPLATE><DEFAULT_USER_QUOTAS></DEFAULT_USER_QUOTAS></USER>");
        out
    }
}

fn mac_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Orders a VM TEMPLATE as vm.xsd wants it; stable within a name.
fn sort_vm_template(attrs: &mut [Element]) {
    attrs.sort_by_key(|e| {
        VM_TEMPLATE_ORDER
            .iter()
            .position(|n| *n == e.name)
            .unwrap_or(usize::MAX)
    });
}

/// `(filter flag, start, end)` of a pool call.
fn pool_args(method: &str, a: &Args<'_>) -> Result<(i64, i64, i64), Failure> {
    let flag = a.int(0)?;
    let start = a.int(1)?;
    let end = a.int(2)?;
    if flag < -4 {
        return Err(fail(method, RPC_API, "Incorrect filter_flag"));
    }
    Ok((flag, start, end))
}

/// The objects a pool call returns: by id ascending (or descending), filtered; with an
/// end below -1, `start` is an offset and `-end` the page size (`LIMIT start, -end`);
/// otherwise an id range (`start` -1: everything).
fn page<T>(
    objects: &BTreeMap<i64, T>,
    desc: bool,
    start: i64,
    end: i64,
    keep: impl Fn(&T) -> bool,
) -> Vec<&T> {
    let in_range = |id: i64| {
        if end < -1 || start == -1 {
            true
        } else {
            id >= start && (end == -1 || id <= end)
        }
    };
    let mut all: Vec<&T> = objects
        .iter()
        .filter(|(id, o)| in_range(**id) && keep(o))
        .map(|(_, o)| o)
        .collect();
    if desc {
        all.reverse();
    }
    if end < -1 {
        all.into_iter()
            .skip(start.max(0) as usize)
            .take(end.unsigned_abs() as usize)
            .collect()
    } else {
        all
    }
}

/// Template attributes as oned writes them: values in CDATA, vectors nested.
fn write_attrs(out: &mut String, attrs: &[Element]) {
    for e in attrs {
        out.push('<');
        out.push_str(&e.name);
        out.push('>');
        if e.is_leaf() {
            out.push_str(&cdata(&e.text));
        } else {
            write_attrs(out, &e.children);
        }
        out.push_str("</");
        out.push_str(&e.name);
        out.push('>');
    }
}

fn permissions(out: &mut String, owner_manage: bool, others_use: bool) {
    let _ = write!(
        out,
        "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>{}</OWNER_M><OWNER_A>0</OWNER_A>\
         <GROUP_U>{u}</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>\
         <OTHER_U>{u}</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>",
        u8::from(owner_manage),
        u = u8::from(others_use)
    );
}

fn vm_header(out: &mut String, vm: &VmRec) {
    let _ = write!(
        out,
        "<ID>{}</ID><UID>{}</UID><GID>{}</GID><UNAME>{}</UNAME><GNAME>{}</GNAME><NAME>{}</NAME>",
        vm.id,
        vm.uid,
        vm.gid,
        escape(&vm.uname),
        escape(&vm.gname),
        escape(&vm.name)
    );
}

fn deploy_id(vm: &VmRec) -> String {
    if vm.history.is_empty() {
        String::new()
    } else {
        format!("one-{}", vm.id)
    }
}

/// The full `VM` document (`one.vm.info`), per vm.xsd.
fn vm_document(vm: &VmRec) -> String {
    let mut out = String::from("<VM>");
    vm_header(&mut out, vm);
    permissions(&mut out, true, false);
    let _ = write!(
        out,
        "<LAST_POLL>{}</LAST_POLL><STATE>{}</STATE><LCM_STATE>{}</LCM_STATE>\
         <PREV_STATE>{}</PREV_STATE><PREV_LCM_STATE>{}</PREV_LCM_STATE><RESCHED>0</RESCHED>\
         <STIME>{}</STIME><ETIME>{}</ETIME><DEPLOY_ID>{}</DEPLOY_ID>\
         <MONITORING></MONITORING><SCHED_ACTIONS></SCHED_ACTIONS><TEMPLATE>",
        now_secs(),
        vm.state,
        vm.lcm,
        vm.prev_state,
        vm.prev_lcm,
        vm.stime,
        vm.etime,
        deploy_id(vm)
    );
    write_attrs(&mut out, &vm.template);
    out.push_str("</TEMPLATE><USER_TEMPLATE>");
    write_attrs(&mut out, &vm.user_template);
    out.push_str("</USER_TEMPLATE><HISTORY_RECORDS>");
    for h in &vm.history {
        let _ = write!(
            out,
            "<HISTORY><OID>{id}</OID><SEQ>{seq}</SEQ><HOSTNAME>{host}</HOSTNAME><HID>{hid}</HID>\
             <CID>{cid}</CID><STIME>{st}</STIME><ETIME>{et}</ETIME><VM_MAD>kvm</VM_MAD>\
             <TM_MAD>shared</TM_MAD><DS_ID>0</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID>\
             <PSTIME>{st}</PSTIME><PETIME>{st}</PETIME><RSTIME>{st}</RSTIME><RETIME>{et}</RETIME>\
             <ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>{action}</ACTION><UID>{uid}</UID>\
             <GID>{gid}</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY>",
            id = vm.id,
            seq = h.seq,
            host = escape(&h.hostname),
            hid = h.hid,
            cid = h.cid,
            st = h.stime,
            et = h.etime,
            action = h.action,
            uid = vm.uid,
            gid = vm.gid,
        );
    }
    out.push_str(
        "</HISTORY_RECORDS><BACKUPS><BACKUP_CONFIG></BACKUP_CONFIG><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>",
    );
    out
}

/// A VM in its `VM_POOL` (short) form, as oned's `VirtualMachine::to_xml_short` writes
/// it: CPU, MEMORY, VCPU, the DISKs and NICs in their short forms and GRAPHICS; a
/// USER_TEMPLATE of only the attributes Sunstone and the scheduler need (not the
/// others, the driver's `CMS_*` among them); the last history record only.
fn vm_pool_entry(out: &mut String, vm: &VmRec) {
    out.push_str("<VM>");
    vm_header(out, vm);
    let _ = write!(
        out,
        "<LAST_POLL>{}</LAST_POLL><STATE>{}</STATE><LCM_STATE>{}</LCM_STATE><RESCHED>0</RESCHED>\
         <STIME>{}</STIME><ETIME>{}</ETIME><DEPLOY_ID>{}</DEPLOY_ID><TEMPLATE>",
        now_secs(),
        vm.state,
        vm.lcm,
        vm.stime,
        vm.etime,
        deploy_id(vm)
    );
    let single = |out: &mut String, name: &str| {
        let v = attr(&vm.template, name).unwrap_or_default();
        let _ = write!(out, "<{name}>{}</{name}>", escape(v));
    };
    single(out, "CPU");
    single(out, "MEMORY");
    single(out, "VCPU");
    let short = |out: &mut String, e: &Element, names: &[&str]| {
        out.push('<');
        out.push_str(&e.name);
        out.push('>');
        for n in names {
            if let Some(v) = attr(&e.children, n).filter(|v| !v.is_empty()) {
                let _ = write!(out, "<{n}>{}</{n}>", cdata(v));
            }
        }
        out.push_str("</");
        out.push_str(&e.name);
        out.push('>');
    };
    for d in vm.template.iter().filter(|e| e.name == "DISK") {
        short(out, d, &SHORT_DISK);
    }
    for n in vm.template.iter().filter(|e| e.name == "NIC") {
        short(out, n, &SHORT_NIC);
    }
    let graphics: Vec<Element> = vm
        .template
        .iter()
        .filter(|e| e.name == "GRAPHICS")
        .cloned()
        .collect();
    write_attrs(out, &graphics);
    out.push_str("</TEMPLATE><MONITORING/>");
    let kept: Vec<&Element> = vm
        .user_template
        .iter()
        .filter(|e| SHORT_USER_TEMPLATE.contains(&e.name.as_str()))
        .collect();
    if kept.is_empty() {
        out.push_str("<USER_TEMPLATE/>");
    } else {
        out.push_str("<USER_TEMPLATE>");
        for e in kept {
            write_attrs(out, std::slice::from_ref(e));
        }
        out.push_str("</USER_TEMPLATE>");
    }
    out.push_str("<HISTORY_RECORDS>");
    if let Some(h) = vm.history.last() {
        let _ = write!(
            out,
            "<HISTORY><OID>{}</OID><SEQ>{}</SEQ><HOSTNAME>{}</HOSTNAME><HID>{}</HID><CID>{}</CID>\
             <DS_ID>0</DS_ID><VM_MAD>kvm</VM_MAD><TM_MAD>shared</TM_MAD><ACTION>{}</ACTION></HISTORY>",
            vm.id,
            h.seq,
            escape(&h.hostname),
            h.hid,
            h.cid,
            h.action
        );
    }
    out.push_str("</HISTORY_RECORDS></VM>");
}

/// The DISK attributes of the short form (`VirtualMachineDisk::to_xml_short`).
const SHORT_DISK: [&str; 11] = [
    "DISK_ID",
    "DATASTORE",
    "DATASTORE_ID",
    "IMAGE",
    "IMAGE_ID",
    "SIZE",
    "TYPE",
    "CLONE",
    "CLONE_TARGET",
    "LN_TARGET",
    "DISK_SNAPSHOT_TOTAL_SIZE",
];

/// The NIC attributes of the short form (`VirtualMachineNic::to_xml_short`).
const SHORT_NIC: [&str; 14] = [
    "IP",
    "EXTERNAL_IP",
    "IP6",
    "IP6_ULA",
    "IP6_LINK",
    "IP6_GLOBAL",
    "NETWORK_MODE",
    "SCHED_REQUIREMENTS",
    "SCHED_RANK",
    "MAC",
    "NETWORK",
    "NETWORK_ID",
    "NIC_ID",
    "SECURITY_GROUPS",
];

/// The USER_TEMPLATE attributes of the short form
/// (`VirtualMachineTemplate::to_xml_short`).
const SHORT_USER_TEMPLATE: [&str; 9] = [
    "LABELS",
    "ERROR",
    "SCHED_MESSAGE",
    "SCHED_RANK",
    "SCHED_DS_RANK",
    "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS",
    "USER_PRIORITY",
    "SCHED_ACTION",
];

/// A `VMTEMPLATE` document, per vmtemplate.xsd.
fn template_document(out: &mut String, t: &TemplateRec) {
    let _ = write!(
        out,
        "<VMTEMPLATE><ID>{}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>\
         <NAME>{}</NAME>",
        t.id,
        escape(&t.name)
    );
    permissions(out, true, true);
    let _ = write!(out, "<REGTIME>{}</REGTIME><TEMPLATE>", t.regtime);
    write_attrs(out, &t.template);
    out.push_str("</TEMPLATE></VMTEMPLATE>");
}

/// A `VNET` document, per vnet.xsd (`full`) or in its vnet_pool.xsd form.
fn vnet_document(out: &mut String, v: &VnetRec, full: bool) {
    let _ = write!(
        out,
        "<VNET><ID>{}</ID><UID>{}</UID><GID>{}</GID><UNAME>{}</UNAME><GNAME>{}</GNAME><NAME>{}</NAME>",
        v.id,
        v.uid,
        v.gid,
        escape(&v.uname),
        escape(&v.gname),
        escape(&v.name)
    );
    permissions(out, true, v.uid == 0);
    let _ = write!(
        out,
        "<CLUSTERS><ID>{}</ID></CLUSTERS><BRIDGE>{}</BRIDGE><BRIDGE_TYPE>linux</BRIDGE_TYPE>\
         <STATE>1</STATE><PREV_STATE>0</PREV_STATE><PARENT_NETWORK_ID></PARENT_NETWORK_ID>\
         <TEMPLATE_ID>-1</TEMPLATE_ID><VN_MAD>{}</VN_MAD><PHYDEV></PHYDEV><VLAN_ID></VLAN_ID>\
         <OUTER_VLAN_ID></OUTER_VLAN_ID><VLAN_ID_AUTOMATIC>0</VLAN_ID_AUTOMATIC>\
         <OUTER_VLAN_ID_AUTOMATIC>0</OUTER_VLAN_ID_AUTOMATIC><USED_LEASES>{}</USED_LEASES>\
         <VROUTERS></VROUTERS><UPDATED_VMS></UPDATED_VMS><OUTDATED_VMS></OUTDATED_VMS>\
         <UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS><TEMPLATE>",
        v.cluster,
        escape(&v.bridge),
        escape(&v.vn_mad),
        v.used()
    );
    write_attrs(out, &v.template);
    out.push_str("</TEMPLATE><AR_POOL>");
    if let Some(ar) = &v.ar {
        let first = Ipv4Addr::from(ar.ip);
        let last = Ipv4Addr::from(ar.ip + ar.size - 1);
        let _ = write!(
            out,
            "<AR><AR_ID><![CDATA[0]]></AR_ID><IP><![CDATA[{first}]]></IP><MAC><![CDATA[{}]]></MAC>\
             <NEXT_INDEX>{}</NEXT_INDEX><SIZE>{}</SIZE><TYPE><![CDATA[IP4]]></TYPE>",
            mac_of(first),
            ar.leases.len(),
            ar.size
        );
        if full {
            let _ = write!(
                out,
                "<MAC_END><![CDATA[{}]]></MAC_END><IP_END><![CDATA[{last}]]></IP_END>\
                 <USED_LEASES>{}</USED_LEASES><LEASES>",
                mac_of(last),
                ar.leases.len()
            );
            for (index, vm) in &ar.leases {
                let ip = Ipv4Addr::from(ar.ip + index);
                let _ = write!(
                    out,
                    "<LEASE><IP><![CDATA[{ip}]]></IP><MAC><![CDATA[{}]]></MAC><VM>{vm}</VM></LEASE>",
                    mac_of(ip)
                );
            }
            out.push_str("</LEASES>");
        }
        out.push_str("</AR>");
    }
    out.push_str("</AR_POOL></VNET>");
}
