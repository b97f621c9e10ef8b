//! The documents oned answers, read into typed structs.
//!
//! `one.*.info` calls answer an XML document inside the XML-RPC string: `VM`,
//! `VM_POOL`, `IMAGE`, `IMAGE_POOL`, `VMTEMPLATE_POOL`, `VNET_POOL`, `VNET`,
//! `HOST_POOL`, `CLUSTER_POOL`, `USER`, `SECURITY_GROUP`, `SECURITY_GROUP_POOL` (their
//! schemas are OpenNebula's XSDs, `share/doc/xsd`). Only
//! the fields the driver uses are read; unknown elements are ignored, so newer
//! versions of OpenNebula that add elements still parse. Template sections
//! (`TEMPLATE`, `USER_TEMPLATE`, free-form `xs:anyType`) are kept whole as
//! [`Attributes`]. Pool documents in their short form (`one.vmpool.info`) parse into
//! the same [`Vm`] as the full `one.vm.info` document; fields absent from the short
//! form are `None` or empty. (The short form leaves out most of a VM: its USER_TEMPLATE
//! keeps only LABELS, ERROR and the SCHED_* attributes, its DISKs have no TARGET; the
//! driver lists with `one.vmpool.infoextended`, whose VMs are full documents.)

use std::fmt;

use crate::xml::Element;

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocError {
    /// The document (`VM_POOL`).
    pub document: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} document is malformed: {}",
            self.document, self.message
        )
    }
}

impl std::error::Error for DocError {}

type Result<T> = std::result::Result<T, DocError>;

fn root(xml: &str, document: &'static str) -> Result<Element> {
    let el = Element::parse(xml).map_err(|e| DocError {
        document,
        message: e.to_string(),
    })?;
    if el.name != document {
        return Err(DocError {
            document,
            message: format!("the root element is <{}>", el.name),
        });
    }
    Ok(el)
}

fn missing(document: &'static str, what: &str) -> DocError {
    DocError {
        document,
        message: format!("element {what} is missing"),
    }
}

fn text<'a>(el: &'a Element, name: &str, document: &'static str) -> Result<&'a str> {
    el.text_of(name).ok_or_else(|| missing(document, name))
}

fn int(el: &Element, name: &str, document: &'static str) -> Result<i64> {
    let t = text(el, name, document)?;
    t.trim().parse().map_err(|_| DocError {
        document,
        message: format!("element {name} holds `{t}`, not an integer"),
    })
}

fn opt_int(el: &Element, name: &str) -> Option<i64> {
    el.text_of(name).and_then(|t| t.trim().parse().ok())
}

fn ids(el: Option<&Element>) -> Vec<i64> {
    el.map(|e| {
        e.children_named("ID")
            .filter_map(|i| i.text.trim().parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// One attribute of a template: a single value, or a vector of sub-attributes
/// (`DISK = [ IMAGE_ID = "12" ]`).
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Single(String),
    Vector(Attributes),
}

/// A template section (`TEMPLATE`, `USER_TEMPLATE`, `CONTEXT`, a `NIC`): attributes in
/// document order; a name may repeat (several `DISK`s).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    pub entries: Vec<(String, Attribute)>,
}

impl Attributes {
    /// Reads the children of `el` as attributes.
    pub fn from_element(el: &Element) -> Attributes {
        Attributes {
            entries: el
                .children
                .iter()
                .map(|c| {
                    let value = if c.is_leaf() {
                        Attribute::Single(c.text.clone())
                    } else {
                        Attribute::Vector(Attributes::from_element(c))
                    };
                    (c.name.clone(), value)
                })
                .collect(),
        }
    }

    /// The first single value named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find_map(|(k, v)| match v {
            Attribute::Single(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// The first single value named `name`, parsed.
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.get(name).and_then(|v| v.trim().parse().ok())
    }

    /// Every vector attribute named `name`.
    pub fn vectors<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Attributes> {
        self.entries.iter().filter_map(move |(k, v)| match v {
            Attribute::Vector(a) if k == name => Some(a),
            _ => None,
        })
    }

    /// The first vector attribute named `name`.
    pub fn vector(&self, name: &str) -> Option<&Attributes> {
        self.entries.iter().find_map(|(k, v)| match v {
            Attribute::Vector(a) if k == name => Some(a),
            _ => None,
        })
    }

    /// The first single value named `name`, unless it is empty (the driver writes an
    /// empty value where OpenNebula's merge cannot remove an attribute).
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The attributes as elements, to write a template back (OpenNebula's XML form).
    pub(crate) fn to_elements(&self) -> Vec<Element> {
        self.entries
            .iter()
            .map(|(k, v)| match v {
                Attribute::Single(s) => Element::leaf(k.clone(), s.clone()),
                Attribute::Vector(a) => Element {
                    name: k.clone(),
                    text: String::new(),
                    children: a.to_elements(),
                },
            })
            .collect()
    }
}

/// Objects with an OpenNebula id, as pools list them.
pub trait HasId {
    /// The object's id.
    fn oid(&self) -> i64;
}

/// A history record of a VM: where it ran, and the last action done to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub seq: i64,
    pub hostname: String,
    pub host_id: i64,
    pub cluster_id: i64,
    /// The action (VMActions: 15 reboot, 16 reboot-hard, 19 poweroff, 27 terminate, …).
    pub action: i64,
}

/// A virtual machine (`VM`, alone or inside `VM_POOL`).
#[derive(Clone, Debug, PartialEq)]
pub struct Vm {
    pub id: i64,
    pub uid: i64,
    pub uname: String,
    pub name: String,
    /// STATE (0 INIT … 11 CLONING_FAILURE).
    pub state: i64,
    /// LCM_STATE, meaningful when STATE is 3 ACTIVE.
    pub lcm_state: i64,
    /// Only in the full document.
    pub prev_state: Option<i64>,
    /// Only in the full document.
    pub prev_lcm_state: Option<i64>,
    /// Start time, seconds since the epoch.
    pub stime: i64,
    /// End time (0 while not DONE).
    pub etime: i64,
    /// The lock level, when locked.
    pub lock: Option<i64>,
    pub template: Attributes,
    pub user_template: Attributes,
    pub history: Vec<History>,
    /// STATE and LCM_STATE as written (`STATE/LCM_STATE`), when a pool's VM has one
    /// that cannot be read: its state is then `unknown`, and this is its raw state.
    pub unread_state: Option<String>,
}

impl Vm {
    /// Reads a `VM` document (`one.vm.info`).
    pub fn from_xml(xml: &str) -> Result<Vm> {
        Vm::from_element(&root(xml, "VM")?, "VM")
    }

    fn from_element(el: &Element, document: &'static str) -> Result<Vm> {
        // What a VM needs, strictly; the rest as `read` takes it.
        let id = int(el, "ID", document)?;
        Ok(Vm {
            uid: int(el, "UID", document)?,
            uname: text(el, "UNAME", document)?.to_owned(),
            name: text(el, "NAME", document)?.to_owned(),
            state: int(el, "STATE", document)?,
            lcm_state: int(el, "LCM_STATE", document)?,
            unread_state: None,
            ..Vm::read(el, id)
        })
    }

    /// What can be read of a pool's VM whose document lacks something a VM needs:
    /// its id (without one it cannot be named, and is left out), and whatever else is
    /// there; a STATE that cannot be read is -1, which maps to `unknown`. One odd VM
    /// must not hide every other from the listing.
    fn salvage(el: &Element, why: &DocError) -> Option<Vm> {
        let Some(id) = opt_int(el, "ID") else {
            tracing::warn!(error = %why, "leaving out a VM of the pool that has no readable ID");
            return None;
        };
        tracing::warn!(vm = id, error = %why, "listing a VM of the pool from an incomplete document");
        Some(Vm::read(el, id))
    }

    /// The VM `id` with every field read leniently (missing or unreadable: -1, 0 or
    /// empty; a STATE or LCM_STATE that cannot be read is -1, and kept as written).
    fn read(el: &Element, id: i64) -> Vm {
        let owned = |name: &str| el.text_of(name).unwrap_or_default().to_owned();
        let state = opt_int(el, "STATE");
        let lcm_state = opt_int(el, "LCM_STATE");
        let unread_state = (state.is_none() || lcm_state.is_none()).then(|| {
            format!(
                "{}/{}",
                el.text_of("STATE").unwrap_or_default().trim(),
                el.text_of("LCM_STATE").unwrap_or_default().trim()
            )
        });
        Vm {
            id,
            uid: opt_int(el, "UID").unwrap_or(-1),
            uname: owned("UNAME"),
            name: owned("NAME"),
            state: state.unwrap_or(-1),
            lcm_state: lcm_state.unwrap_or(-1),
            prev_state: opt_int(el, "PREV_STATE"),
            prev_lcm_state: opt_int(el, "PREV_LCM_STATE"),
            stime: opt_int(el, "STIME").unwrap_or(0),
            etime: opt_int(el, "ETIME").unwrap_or(0),
            lock: el.child("LOCK").and_then(|l| opt_int(l, "LOCKED")),
            template: el
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
            user_template: el
                .child("USER_TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
            history: history_of(el),
            unread_state,
        }
    }

    /// The latest history record.
    pub fn last_history(&self) -> Option<&History> {
        self.history.iter().max_by_key(|h| h.seq)
    }

    /// The NICs.
    pub fn nics(&self) -> impl Iterator<Item = &Attributes> {
        self.template.vectors("NIC")
    }

    /// The disks.
    pub fn disks(&self) -> impl Iterator<Item = &Attributes> {
        self.template.vectors("DISK")
    }
}

impl HasId for Vm {
    fn oid(&self) -> i64 {
        self.id
    }
}

/// The history records of a VM, read leniently: nothing in them decides what cms does
/// with the VM but the latest ACTION, so a record that lacks a field (older oned
/// versions write no `CID`) keeps its other fields (-1 or empty for the missing ones).
fn history_of(el: &Element) -> Vec<History> {
    el.child("HISTORY_RECORDS")
        .map(|h| {
            h.children_named("HISTORY")
                .enumerate()
                .map(|(i, r)| History {
                    seq: opt_int(r, "SEQ").unwrap_or(i as i64),
                    hostname: r.text_of("HOSTNAME").unwrap_or_default().to_owned(),
                    host_id: opt_int(r, "HID").unwrap_or(-1),
                    cluster_id: opt_int(r, "CID").unwrap_or(-1),
                    action: opt_int(r, "ACTION").unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `VM_POOL`: `one.vmpool.infoextended` (full VMs) or `one.vmpool.info` (the short form).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmPool {
    pub vms: Vec<Vm>,
}

impl VmPool {
    /// Reads a `VM_POOL` document; a VM that lacks what a VM needs is listed from what
    /// it has (see `Vm::salvage`), with a warning, rather than failing the pool.
    pub fn from_xml(xml: &str) -> Result<VmPool> {
        let el = root(xml, "VM_POOL")?;
        Ok(VmPool {
            vms: el
                .children_named("VM")
                .filter_map(|v| match Vm::from_element(v, "VM_POOL") {
                    Ok(vm) => Some(vm),
                    Err(e) => Vm::salvage(v, &e),
                })
                .collect(),
        })
    }
}

/// A disk image (`IMAGE`): an OS image, a volume (a persistent DATABLOCK) or a
/// snapshot (a non-persistent DATABLOCK), as the driver tells them apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub id: i64,
    pub uid: i64,
    pub uname: String,
    pub name: String,
    /// TYPE: 0 OS, 1 CDROM, 2 DATABLOCK, 3 KERNEL, 4 RAMDISK, 5 CONTEXT, 6 BACKUP, 7 FILESYSTEM.
    pub image_type: i64,
    /// STATE: 0 INIT, 1 READY, 2 USED, 3 DISABLED, 4 LOCKED, 5 ERROR, 6 CLONE, 7 DELETE,
    /// 8 USED_PERS, 9 LOCKED_USED, 10 LOCKED_USED_PERS.
    pub state: i64,
    /// Size in MiB.
    pub size_mb: i64,
    pub persistent: bool,
    pub datastore: String,
    /// DATASTORE_ID (-1 when the document has none).
    pub datastore_id: i64,
    /// Registration time, seconds since the epoch (0 when absent).
    pub regtime: i64,
    /// RUNNING_VMS: how many VMs use it.
    pub running_vms: i64,
    /// VMS: the VMs that use it.
    pub vms: Vec<i64>,
    pub template: Attributes,
}

impl Image {
    /// Reads an `IMAGE` document (`one.image.info`).
    pub fn from_xml(xml: &str) -> Result<Image> {
        Image::from_element(&root(xml, "IMAGE")?, "IMAGE")
    }

    fn from_element(el: &Element, document: &'static str) -> Result<Image> {
        Ok(Image {
            id: int(el, "ID", document)?,
            uid: int(el, "UID", document)?,
            uname: text(el, "UNAME", document)?.to_owned(),
            name: text(el, "NAME", document)?.to_owned(),
            image_type: int(el, "TYPE", document)?,
            state: int(el, "STATE", document)?,
            size_mb: opt_int(el, "SIZE").unwrap_or(0),
            persistent: opt_int(el, "PERSISTENT").unwrap_or(0) != 0,
            datastore: el.text_of("DATASTORE").unwrap_or_default().to_owned(),
            datastore_id: opt_int(el, "DATASTORE_ID").unwrap_or(-1),
            regtime: opt_int(el, "REGTIME").unwrap_or(0),
            running_vms: opt_int(el, "RUNNING_VMS").unwrap_or(0),
            vms: ids(el.child("VMS")),
            template: el
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
        })
    }
}

impl HasId for Image {
    fn oid(&self) -> i64 {
        self.id
    }
}

/// `IMAGE_POOL` (`one.imagepool.info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImagePool {
    pub images: Vec<Image>,
}

impl ImagePool {
    /// Reads an `IMAGE_POOL` document.
    pub fn from_xml(xml: &str) -> Result<ImagePool> {
        let el = root(xml, "IMAGE_POOL")?;
        Ok(ImagePool {
            images: el
                .children_named("IMAGE")
                .map(|i| Image::from_element(i, "IMAGE_POOL"))
                .collect::<Result<_>>()?,
        })
    }
}

/// A security group (`SECURITY_GROUP`, alone or inside `SECURITY_GROUP_POOL`).
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityGroup {
    pub id: i64,
    pub uid: i64,
    pub uname: String,
    pub name: String,
    /// The VMs whose rules are up to date, out of date, being updated, or failed to
    /// update: together, the VMs in the group.
    pub vms: Vec<i64>,
    /// DESCRIPTION, the `RULE` vectors and whatever else the template holds.
    pub template: Attributes,
}

impl SecurityGroup {
    /// Reads a `SECURITY_GROUP` document (`one.secgroup.info`).
    pub fn from_xml(xml: &str) -> Result<SecurityGroup> {
        SecurityGroup::from_element(&root(xml, "SECURITY_GROUP")?, "SECURITY_GROUP")
    }

    fn from_element(el: &Element, document: &'static str) -> Result<SecurityGroup> {
        let mut vms: Vec<i64> = ["UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS"]
            .iter()
            .flat_map(|n| ids(el.child(n)))
            .collect();
        vms.sort_unstable();
        vms.dedup();
        Ok(SecurityGroup {
            id: int(el, "ID", document)?,
            uid: int(el, "UID", document)?,
            uname: text(el, "UNAME", document)?.to_owned(),
            name: text(el, "NAME", document)?.to_owned(),
            vms,
            template: el
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
        })
    }

    /// The `RULE` vectors.
    pub fn rules(&self) -> impl Iterator<Item = &Attributes> {
        self.template.vectors("RULE")
    }
}

impl HasId for SecurityGroup {
    fn oid(&self) -> i64 {
        self.id
    }
}

/// `SECURITY_GROUP_POOL` (`one.secgrouppool.info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecurityGroupPool {
    pub groups: Vec<SecurityGroup>,
}

impl SecurityGroupPool {
    /// Reads a `SECURITY_GROUP_POOL` document.
    pub fn from_xml(xml: &str) -> Result<SecurityGroupPool> {
        let el = root(xml, "SECURITY_GROUP_POOL")?;
        Ok(SecurityGroupPool {
            groups: el
                .children_named("SECURITY_GROUP")
                .map(|g| SecurityGroup::from_element(g, "SECURITY_GROUP_POOL"))
                .collect::<Result<_>>()?,
        })
    }
}

/// A VM template (`VMTEMPLATE`).
#[derive(Clone, Debug, PartialEq)]
pub struct VmTemplate {
    pub id: i64,
    pub uid: i64,
    pub uname: String,
    pub name: String,
    /// Registration time, seconds since the epoch.
    pub regtime: i64,
    pub template: Attributes,
}

impl VmTemplate {
    /// Reads a `VMTEMPLATE` document (`one.template.info`).
    pub fn from_xml(xml: &str) -> Result<VmTemplate> {
        VmTemplate::from_element(&root(xml, "VMTEMPLATE")?, "VMTEMPLATE")
    }

    fn from_element(el: &Element, document: &'static str) -> Result<VmTemplate> {
        Ok(VmTemplate {
            id: int(el, "ID", document)?,
            uid: int(el, "UID", document)?,
            uname: text(el, "UNAME", document)?.to_owned(),
            name: text(el, "NAME", document)?.to_owned(),
            regtime: opt_int(el, "REGTIME").unwrap_or(0),
            template: el
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
        })
    }
}

impl HasId for VmTemplate {
    fn oid(&self) -> i64 {
        self.id
    }
}

/// `VMTEMPLATE_POOL` (`one.templatepool.info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmTemplatePool {
    pub templates: Vec<VmTemplate>,
}

impl VmTemplatePool {
    /// Reads a `VMTEMPLATE_POOL` document.
    pub fn from_xml(xml: &str) -> Result<VmTemplatePool> {
        let el = root(xml, "VMTEMPLATE_POOL")?;
        Ok(VmTemplatePool {
            templates: el
                .children_named("VMTEMPLATE")
                .map(|t| VmTemplate::from_element(t, "VMTEMPLATE_POOL"))
                .collect::<Result<_>>()?,
        })
    }
}

/// An address range of a virtual network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRange {
    pub ar_id: String,
    /// TYPE: IP4, IP6, IP4_6, ETHER, …
    pub kind: String,
    /// The first IPv4 address.
    pub ip: Option<String>,
    pub size: i64,
}

/// A virtual network (`VNET`, alone or inside `VNET_POOL`).
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualNetwork {
    pub id: i64,
    pub uid: i64,
    pub uname: String,
    pub name: String,
    /// STATE: 0 INIT, 1 READY, 2 LOCK_CREATE, 3 LOCK_DELETE, 4 DONE, 5 ERROR, 6 UPDATE_FAILURE.
    pub state: i64,
    pub clusters: Vec<i64>,
    pub used_leases: i64,
    pub template: Attributes,
    pub address_ranges: Vec<AddressRange>,
}

impl VirtualNetwork {
    /// Reads a `VNET` document (`one.vn.info`).
    pub fn from_xml(xml: &str) -> Result<VirtualNetwork> {
        VirtualNetwork::from_element(&root(xml, "VNET")?, "VNET")
    }

    fn from_element(el: &Element, document: &'static str) -> Result<VirtualNetwork> {
        let address_ranges = el
            .child("AR_POOL")
            .map(|p| {
                p.children_named("AR")
                    .map(|ar| AddressRange {
                        ar_id: ar.text_of("AR_ID").unwrap_or_default().to_owned(),
                        kind: ar.text_of("TYPE").unwrap_or_default().to_owned(),
                        ip: ar.text_of("IP").map(str::to_owned),
                        size: opt_int(ar, "SIZE").unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(VirtualNetwork {
            id: int(el, "ID", document)?,
            uid: int(el, "UID", document)?,
            uname: text(el, "UNAME", document)?.to_owned(),
            name: text(el, "NAME", document)?.to_owned(),
            state: opt_int(el, "STATE").unwrap_or(1),
            clusters: ids(el.child("CLUSTERS")),
            used_leases: opt_int(el, "USED_LEASES").unwrap_or(0),
            template: el
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
            address_ranges,
        })
    }
}

impl HasId for VirtualNetwork {
    fn oid(&self) -> i64 {
        self.id
    }
}

/// `VNET_POOL` (`one.vnpool.info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VnetPool {
    pub vnets: Vec<VirtualNetwork>,
}

impl VnetPool {
    /// Reads a `VNET_POOL` document.
    pub fn from_xml(xml: &str) -> Result<VnetPool> {
        let el = root(xml, "VNET_POOL")?;
        Ok(VnetPool {
            vnets: el
                .children_named("VNET")
                .map(|v| VirtualNetwork::from_element(v, "VNET_POOL"))
                .collect::<Result<_>>()?,
        })
    }
}

/// A hypervisor host (`HOST` inside `HOST_POOL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub id: i64,
    pub name: String,
    /// STATE: 0 INIT, 1 MONITORING_MONITORED, 2 MONITORED, 3 ERROR, 4 DISABLED,
    /// 5 MONITORING_ERROR, 6 MONITORING_INIT, 7 MONITORING_DISABLED, 8 OFFLINE.
    pub state: i64,
    pub cluster_id: i64,
    pub cluster: String,
}

impl Host {
    /// Whether the scheduler places VMs on the host.
    pub fn accepts_vms(&self) -> bool {
        matches!(self.state, 0..=2 | 6)
    }
}

/// `HOST_POOL` (`one.hostpool.info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPool {
    pub hosts: Vec<Host>,
}

impl HostPool {
    /// Reads a `HOST_POOL` document.
    pub fn from_xml(xml: &str) -> Result<HostPool> {
        let document = "HOST_POOL";
        let el = root(xml, document)?;
        Ok(HostPool {
            hosts: el
                .children_named("HOST")
                .map(|h| {
                    Ok(Host {
                        id: int(h, "ID", document)?,
                        name: text(h, "NAME", document)?.to_owned(),
                        state: int(h, "STATE", document)?,
                        cluster_id: int(h, "CLUSTER_ID", document)?,
                        cluster: h.text_of("CLUSTER").unwrap_or_default().to_owned(),
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// A cluster (`CLUSTER` inside `CLUSTER_POOL`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    pub hosts: Vec<i64>,
    pub datastores: Vec<i64>,
    pub vnets: Vec<i64>,
    pub template: Attributes,
}

impl Cluster {
    /// Reads a `CLUSTER` document (`one.cluster.info`).
    pub fn from_xml(xml: &str) -> Result<Cluster> {
        Cluster::from_element(&root(xml, "CLUSTER")?, "CLUSTER")
    }

    fn from_element(c: &Element, document: &'static str) -> Result<Cluster> {
        Ok(Cluster {
            id: int(c, "ID", document)?,
            name: text(c, "NAME", document)?.to_owned(),
            hosts: ids(c.child("HOSTS")),
            datastores: ids(c.child("DATASTORES")),
            vnets: ids(c.child("VNETS")),
            template: c
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
        })
    }
}

/// `CLUSTER_POOL` (`one.clusterpool.info`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterPool {
    pub clusters: Vec<Cluster>,
}

impl ClusterPool {
    /// Reads a `CLUSTER_POOL` document.
    pub fn from_xml(xml: &str) -> Result<ClusterPool> {
        let el = root(xml, "CLUSTER_POOL")?;
        Ok(ClusterPool {
            clusters: el
                .children_named("CLUSTER")
                .map(|c| Cluster::from_element(c, "CLUSTER_POOL"))
                .collect::<Result<_>>()?,
        })
    }
}

/// A user (`USER`, `one.user.info`).
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: i64,
    pub gid: i64,
    pub name: String,
    pub template: Attributes,
}

impl User {
    /// Reads a `USER` document. The password hash it carries is not kept.
    pub fn from_xml(xml: &str) -> Result<User> {
        let document = "USER";
        let el = root(xml, document)?;
        Ok(User {
            id: int(&el, "ID", document)?,
            gid: int(&el, "GID", document)?,
            name: text(&el, "NAME", document)?.to_owned(),
            template: el
                .child("TEMPLATE")
                .map(Attributes::from_element)
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_in_order_with_vectors() {
        let el = Element::parse(
            "<TEMPLATE><CPU><![CDATA[1.5]]></CPU><DISK><IMAGE_ID>1</IMAGE_ID></DISK>\
             <DISK><IMAGE_ID>2</IMAGE_ID></DISK><EMPTY/></TEMPLATE>",
        )
        .unwrap();
        let a = Attributes::from_element(&el);
        assert_eq!(a.parse::<f64>("CPU"), Some(1.5));
        let disks: Vec<_> = a
            .vectors("DISK")
            .filter_map(|d| d.get("IMAGE_ID"))
            .collect();
        assert_eq!(disks, ["1", "2"]);
        assert_eq!(a.get("EMPTY"), Some(""));
        assert_eq!(a.get("DISK"), None);
    }

    #[test]
    fn names_what_is_missing() {
        let e = Vm::from_xml("<VM><ID>1</ID></VM>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the VM document is malformed: element UID is missing"
        );
        let e = VmPool::from_xml("<VM/>").unwrap_err();
        assert!(e.to_string().contains("root element is <VM>"), "{e}");
    }

    #[test]
    fn one_odd_vm_does_not_fail_the_pool() {
        // A history record without CID (as older oned versions write it), a VM without
        // UID and LCM_STATE, one whose STATE is not a number, one without ID.
        let pool = VmPool::from_xml(
            "<VM_POOL>\
             <VM><ID>1</ID><UID>0</UID><UNAME>a</UNAME><NAME>old</NAME><STATE>3</STATE>\
               <LCM_STATE>3</LCM_STATE><HISTORY_RECORDS><HISTORY><SEQ>0</SEQ>\
               <HOSTNAME>h</HOSTNAME><HID>2</HID><ACTION>0</ACTION></HISTORY>\
               </HISTORY_RECORDS></VM>\
             <VM><ID>2</ID><NAME>bare</NAME><STATE>8</STATE></VM>\
             <VM><ID>3</ID><NAME>odd</NAME><STATE>later</STATE></VM>\
             <VM><NAME>nameless</NAME></VM>\
             </VM_POOL>",
        )
        .unwrap();
        let ids: Vec<i64> = pool.vms.iter().map(|v| v.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let h = pool.vms[0].last_history().unwrap();
        assert_eq!((h.host_id, h.cluster_id, h.hostname.as_str()), (2, -1, "h"));
        assert_eq!((pool.vms[1].state, pool.vms[1].name.as_str()), (8, "bare"));
        assert_eq!(pool.vms[2].state, -1);
        assert_eq!(
            crate::driver::map_state(pool.vms[2].state, pool.vms[2].lcm_state, None),
            cms_core::InstanceState::Unknown
        );
        // A single VM's document (one.vm.info) stays strict about what a VM needs.
        assert!(Vm::from_xml("<VM><ID>2</ID><NAME>bare</NAME><STATE>8</STATE></VM>").is_err());
    }
}
