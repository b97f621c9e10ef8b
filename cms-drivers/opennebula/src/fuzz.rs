//! Entry points for the coverage-guided fuzz targets in the repository's `fuzz/`
//! folder (see RELIABILITY.md): arbitrary bytes through the driver's parsers of what
//! oned answers. None may panic, hang or allocate without bound, whatever the bytes.
//! This crate's unit tests replay every committed corpus file through them.

use std::sync::OnceLock;

use crate::model::{
    Cluster, ClusterPool, HostPool, Image, ImagePool, SecurityGroup, SecurityGroupPool, User,
    VirtualNetwork, Vm, VmPool, VmTemplate, VmTemplatePool,
};
use crate::{xmlrpc, OpenNebulaConfig, OpenNebulaDriver};

/// XML-RPC: `data` decoded as a method response (what oned answers) and as a method
/// call (what the fake oned reads); true when either decodes.
pub fn xmlrpc(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let response = xmlrpc::decode_response(text).is_ok();
    let call = xmlrpc::decode_call(text).is_ok();
    response || call
}

/// OpenNebula's documents: `data` read as the document its root element names (a VM
/// or VM pool, mapped to cms instances as a listing maps them, with each disk read as
/// a volume's use; images mapped as images, volumes and snapshots; security groups
/// mapped with their rules; templates, networks, hosts, clusters, users and their
/// pools); true when it is read.
pub fn documents(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match root_name(text) {
        Some("VM") => Vm::from_xml(text).map(|vm| vm_views(&vm)),
        Some("VM_POOL") => VmPool::from_xml(text).map(|pool| pool.vms.iter().for_each(vm_views)),
        Some("IMAGE") => Image::from_xml(text).map(|i| image_views(&i)),
        Some("IMAGE_POOL") => {
            ImagePool::from_xml(text).map(|p| p.images.iter().for_each(image_views))
        }
        Some("SECURITY_GROUP") => {
            SecurityGroup::from_xml(text).map(|g| drop(driver().security_group_of(&g)))
        }
        Some("SECURITY_GROUP_POOL") => SecurityGroupPool::from_xml(text).map(|p| {
            for g in &p.groups {
                drop(driver().security_group_of(g));
            }
        }),
        Some("VMTEMPLATE") => VmTemplate::from_xml(text).map(drop),
        Some("VMTEMPLATE_POOL") => VmTemplatePool::from_xml(text).map(drop),
        Some("VNET") => VirtualNetwork::from_xml(text).map(drop),
        Some("VNET_POOL") => crate::model::VnetPool::from_xml(text).map(drop),
        Some("HOST_POOL") => HostPool::from_xml(text).map(drop),
        Some("CLUSTER") => Cluster::from_xml(text).map(drop),
        Some("CLUSTER_POOL") => ClusterPool::from_xml(text).map(drop),
        Some("USER") => User::from_xml(text).map(drop),
        _ => return false,
    }
    .is_ok()
}

/// A VM as an instance, and its disks as uses of the images they hold.
fn vm_views(vm: &Vm) {
    drop(driver().instance_of(vm));
    for d in vm.disks() {
        if let Some(id) = d.get("IMAGE_ID").and_then(|i| i.trim().parse().ok()) {
            drop(crate::driver::disk_use(vm, id));
        }
    }
}

/// An image as the cms image, volume and snapshot it may be.
fn image_views(img: &Image) {
    let d = driver();
    drop(d.image_of_disk(img));
    drop(d.volume_of(img, &[], None));
    drop(d.snapshot_of(img));
}

/// The name of the first element of `text`, past any declaration and comments.
fn root_name(text: &str) -> Option<&str> {
    let mut rest = text;
    loop {
        let at = rest.find('<')?;
        rest = &rest[at + 1..];
        if !rest.starts_with(['?', '!']) {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
    }
}

/// A driver that maps documents; it never sends anything.
fn driver() -> &'static OpenNebulaDriver {
    static DRIVER: OnceLock<OpenNebulaDriver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let config = OpenNebulaConfig::new("http://127.0.0.1:9/RPC2", "fuzz", "UNUSED");
        OpenNebulaDriver::with_session(config, "fuzz", "fuzz").expect("the fuzz driver")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms_core::testkit::fuzz::replay;

    #[test]
    fn xmlrpc_corpus_replays() {
        replay("opennebula_xmlrpc", xmlrpc);
    }

    #[test]
    fn documents_corpus_replays() {
        replay("opennebula_documents", documents);
    }

    #[test]
    fn the_root_element_is_found_past_the_prolog() {
        assert_eq!(
            root_name("<?xml version=\"1.0\"?><!-- x --><VM_POOL/>"),
            Some("VM_POOL")
        );
        assert_eq!(root_name("<VM>"), Some("VM"));
        assert_eq!(root_name("no element"), None);
    }
}
