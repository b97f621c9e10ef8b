//! What a new memory cloud offers: images, flavors, locations, a default network and
//! the range of public addresses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::cidr::Cidr;
use crate::model::*;

/// The id of the network a create uses when it names none.
pub(super) const DEFAULT_NETWORK_ID: &str = "net-default";

pub(super) fn images() -> BTreeMap<String, Image> {
    let image = |name: &str, description: &str, min_disk_gib: u32| Image {
        id: ImageId::new(format!("img-{name}")),
        name: name.to_owned(),
        description: Some(description.to_owned()),
        kind: ImageKind::Disk,
        os: Some("linux".into()),
        architecture: Some("x86_64".into()),
        state: ImageState::Available,
        raw_state: "available".into(),
        min_disk_gib: Some(min_disk_gib),
        tags: Tags::new(),
        shared: true,
        owner: None,
        source_instance_id: None,
        created_at: None,
    };
    [
        image("ubuntu-24.04", "Ubuntu 24.04 LTS (Noble Numbat)", 8),
        image("debian-12", "Debian 12 (bookworm)", 4),
        image("fedora-41", "Fedora 41 Cloud Base", 6),
    ]
    .into_iter()
    .map(|i| (i.id.to_string(), i))
    .collect()
}

/// Ids sort from the smallest flavor to the largest, so listings show them that way.
pub(super) fn flavors() -> BTreeMap<String, Flavor> {
    let flavor = |id: &str, name: &str, vcpus: u32, memory_mib: u64, disk_gib: u32| Flavor {
        id: FlavorId::new(id),
        name: name.to_owned(),
        vcpus,
        memory_mib,
        disk_gib: Some(disk_gib),
    };
    [
        flavor("flv-1cpu-1gb", "small", 1, 1024, 10),
        flavor("flv-2cpu-4gb", "medium", 2, 4096, 20),
        flavor("flv-4cpu-8gb", "large", 4, 8192, 40),
    ]
    .into_iter()
    .map(|f| (f.id.to_string(), f))
    .collect()
}

/// In listing order; the first is where a create that names no location goes.
pub(super) fn locations() -> Vec<Location> {
    ["local-a", "local-b"]
        .into_iter()
        .map(|name| Location {
            id: LocationId::new(name),
            name: name.to_owned(),
            region: Some("local".into()),
            available: true,
        })
        .collect()
}

/// The default network, 10.0.0.0/16, spanning every location.
pub(super) fn default_network() -> (Network, Cidr) {
    let cidr = Cidr {
        network: Ipv4Addr::new(10, 0, 0, 0),
        prefix: 16,
    };
    let network = Network {
        id: NetworkId::new(DEFAULT_NETWORK_ID),
        name: "default".into(),
        cidr: Some(cidr.to_string()),
        location_id: None,
        is_default: true,
        raw_state: "available".into(),
        tags: Tags::new(),
    };
    (network, cidr)
}

/// The range public addresses are allocated from: 203.0.113.0/24, TEST-NET-3 (RFC
/// 5737, reserved for documentation, so never anyone's real address). Its pool hands
/// out 203.0.113.2 to 203.0.113.254, [`PUBLIC_ADDRESSES`] of them.
pub(super) fn public_addresses() -> Cidr {
    Cidr {
        network: Ipv4Addr::new(203, 0, 113, 0),
        prefix: 24,
    }
}

/// How many public addresses the cloud has.
pub(super) const PUBLIC_ADDRESSES: u32 = 253;
