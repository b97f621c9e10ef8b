//! The documents OpenStack answers, as the driver reads them, and their mapping to the
//! cms model.
//!
//! Only the fields the driver uses are read; unknown fields (every microversion adds
//! some) are ignored, and fields that come and go with microversions are optional, so
//! one reader parses every microversion's documents (the crate's tests parse every Nova
//! sample).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

use cms_core::{ImageState, InstanceState};

/// A reference Nova gives as `{"id": …, "links": …}` (an image or, before 2.47, a
/// flavor), as `""` (a server booted from a volume has no image), or from 2.47 as the
/// flavor's embedded description (`original_name`, no id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ref {
    pub id: Option<String>,
    pub original_name: Option<String>,
}

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ref, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            original_name: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Full(Full),
            Text(#[allow(dead_code)] String),
            Nothing(#[allow(dead_code)] Option<()>),
        }
        Ok(match Either::deserialize(d)? {
            Either::Full(f) => Ref {
                id: f.id.filter(|s| !s.is_empty()),
                original_name: f.original_name,
            },
            Either::Text(_) | Either::Nothing(_) => Ref::default(),
        })
    }
}

/// One address of a server (`addresses.{network name}[]`).
#[derive(Clone, Debug, Deserialize)]
pub struct Address {
    pub addr: String,
    #[serde(default)]
    pub version: Option<u8>,
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub kind: Option<String>,
}

/// A server (`/servers/detail`, `/servers/{id}`).
#[derive(Clone, Debug, Deserialize)]
pub struct Server {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(rename = "OS-EXT-STS:task_state", default)]
    pub task_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
    #[serde(rename = "OS-EXT-AZ:availability_zone", default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub image: Ref,
    #[serde(default)]
    pub flavor: Ref,
    #[serde(default, deserialize_with = "null_default")]
    pub addresses: BTreeMap<String, Vec<Address>>,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created: Option<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A link of a collection (`servers_links`, `flavors_links`, `networks_links`).
#[derive(Clone, Debug, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub rel: String,
    #[serde(default)]
    pub href: String,
}

/// `GET /servers/detail`.
#[derive(Debug, Deserialize)]
pub struct Servers {
    pub servers: Vec<Server>,
    #[serde(default)]
    pub servers_links: Vec<Link>,
}

/// `GET /servers/{id}`, and the answer to a create.
#[derive(Debug, Deserialize)]
pub struct OneServer {
    pub server: Server,
}

/// What `POST /servers` answers.
#[derive(Debug, Deserialize)]
pub struct Created {
    pub server: CreatedServer,
}

#[derive(Debug, Deserialize)]
pub struct CreatedServer {
    pub id: String,
}

/// A flavor (`/flavors/detail`).
#[derive(Clone, Debug, Deserialize)]
pub struct NovaFlavor {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub vcpus: u32,
    #[serde(default)]
    pub ram: u64,
    #[serde(default)]
    pub disk: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Flavors {
    pub flavors: Vec<NovaFlavor>,
    #[serde(default)]
    pub flavors_links: Vec<Link>,
}

/// A key pair (`/os-keypairs`: each wrapped in `{"keypair": …}` when listed).
#[derive(Clone, Debug, Deserialize)]
pub struct NovaKeyPair {
    pub name: String,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct KeyPairEntry {
    pub keypair: NovaKeyPair,
}

#[derive(Debug, Deserialize)]
pub struct KeyPairs {
    pub keypairs: Vec<KeyPairEntry>,
    #[serde(default)]
    pub keypairs_links: Vec<Link>,
}

/// `/os-availability-zone`.
#[derive(Debug, Deserialize)]
pub struct Zones {
    #[serde(rename = "availabilityZoneInfo")]
    pub zones: Vec<Zone>,
}

#[derive(Debug, Deserialize)]
pub struct Zone {
    #[serde(rename = "zoneName")]
    pub name: String,
    #[serde(rename = "zoneState", default)]
    pub state: ZoneState,
}

#[derive(Debug, Default, Deserialize)]
pub struct ZoneState {
    #[serde(default)]
    pub available: bool,
}

/// `os-getConsoleOutput`.
#[derive(Debug, Deserialize)]
pub struct ConsoleText {
    #[serde(default)]
    pub output: Option<String>,
}

/// A Glance v2 image.
#[derive(Clone, Debug, Deserialize)]
pub struct GlanceImage {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub min_disk: Option<u32>,
    #[serde(default)]
    pub os_distro: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Set on images Nova captured from a server.
    #[serde(default)]
    pub instance_uuid: Option<String>,
}

/// `GET /v2/images`.
#[derive(Debug, Deserialize)]
pub struct GlanceImages {
    pub images: Vec<GlanceImage>,
    #[serde(default)]
    pub next: Option<String>,
}

/// A Neutron network.
#[derive(Clone, Debug, Deserialize)]
pub struct NeutronNetwork {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "null_default")]
    pub subnets: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub availability_zones: Vec<String>,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(rename = "router:external", default)]
    pub external: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct NeutronNetworks {
    pub networks: Vec<NeutronNetwork>,
    #[serde(default)]
    pub networks_links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
pub struct OneNetwork {
    pub network: NeutronNetwork,
}

/// A Neutron subnet.
#[derive(Clone, Debug, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub network_id: String,
    #[serde(default)]
    pub cidr: String,
    #[serde(default)]
    pub ip_version: Option<u8>,
}

#[derive(Debug, Deserialize)]
pub struct Subnets {
    pub subnets: Vec<Subnet>,
}

#[derive(Debug, Deserialize)]
pub struct Ports {
    pub ports: Vec<serde_json::Value>,
}

/// Whether a collection answer says there is a next page.
pub fn has_next(links: &[Link]) -> bool {
    links.iter().any(|l| l.rel == "next")
}

/// Nova's and Glance's timestamps (`2024-05-01T12:00:00Z`, also without the zone or
/// with microseconds).
pub fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    let t = text?.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// The cms state of a server (see the state table in the crate documentation).
pub fn map_state(status: &str, task_state: Option<&str>) -> InstanceState {
    use InstanceState::*;
    match task_state {
        Some("deleting") | Some("soft-deleting") => return Terminating,
        Some("powering-off") | Some("shelving") | Some("shelving_offloading") => return Stopping,
        Some("powering-on")
        | Some("unshelving")
        | Some("spawning")
        | Some("scheduling")
        | Some("networking")
        | Some("block_device_mapping") => return Pending,
        Some(t) if t.starts_with("reboot") => return Rebooting,
        _ => {}
    }
    match status {
        "BUILD" | "REBUILD" | "RESIZE" | "REVERT_RESIZE" | "MIGRATING" | "PASSWORD" => Pending,
        "ACTIVE" | "VERIFY_RESIZE" | "RESCUE" => Running,
        "SHUTOFF" | "SHELVED" | "SHELVED_OFFLOADED" | "STOPPED" => Stopped,
        "REBOOT" | "HARD_REBOOT" => Rebooting,
        "SUSPENDED" | "PAUSED" => Suspended,
        "DELETED" | "SOFT_DELETED" => Terminated,
        "ERROR" => Error,
        _ => Unknown,
    }
}

/// The raw state kept beside the cms one: `STATUS`, or `STATUS/task_state` while a
/// task runs (`ACTIVE/powering-off`).
pub fn raw_state(status: &str, task_state: Option<&str>) -> String {
    match task_state {
        Some(t) if !t.is_empty() => format!("{status}/{t}"),
        _ => status.to_owned(),
    }
}

/// The Nova statuses a listing can be narrowed to for these cms states, when exactly
/// one status covers them all (Nova's `status` filter takes one).
pub fn status_filter(states: &[InstanceState]) -> Option<&'static str> {
    use InstanceState::*;
    let mut found: Option<&'static str> = None;
    for s in states {
        let status = match s {
            Running | Stopping => "ACTIVE",
            Error => "ERROR",
            Unknown => "UNKNOWN",
            _ => return None,
        };
        match found {
            None => found = Some(status),
            Some(f) if f == status => {}
            Some(_) => return None,
        }
    }
    found
}

/// A Glance image's cms state.
pub fn image_state(status: &str) -> ImageState {
    match status {
        "active" => ImageState::Available,
        "queued" | "saving" | "importing" | "uploading" => ImageState::Pending,
        "killed" => ImageState::Error,
        "deleted" | "pending_delete" | "deactivated" => ImageState::Deleted,
        _ => ImageState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_table() {
        use InstanceState::*;
        assert_eq!(map_state("ACTIVE", None), Running);
        assert_eq!(map_state("ACTIVE", Some("powering-off")), Stopping);
        assert_eq!(map_state("SHUTOFF", Some("powering-on")), Pending);
        assert_eq!(map_state("ACTIVE", Some("deleting")), Terminating);
        assert_eq!(map_state("REBOOT", Some("reboot_started")), Rebooting);
        assert_eq!(map_state("HARD_REBOOT", None), Rebooting);
        assert_eq!(map_state("BUILD", Some("spawning")), Pending);
        assert_eq!(map_state("SHELVED_OFFLOADED", None), Stopped);
        assert_eq!(map_state("PAUSED", None), Suspended);
        assert_eq!(map_state("SOFT_DELETED", None), Terminated);
        assert_eq!(map_state("ERROR", None), Error);
        assert_eq!(map_state("UNKNOWN", None), Unknown);
        assert_eq!(
            raw_state("ACTIVE", Some("powering-off")),
            "ACTIVE/powering-off"
        );
        assert_eq!(raw_state("SHUTOFF", None), "SHUTOFF");
        assert_eq!(status_filter(&[Running]), Some("ACTIVE"));
        assert_eq!(status_filter(&[Running, Stopping]), Some("ACTIVE"));
        assert_eq!(status_filter(&[Running, Stopped]), None);
        assert_eq!(status_filter(&[Stopped]), None);
    }

    #[test]
    fn references_of_every_shape_parse() {
        let s: Server = serde_json::from_str(
            r#"{"id": "a", "image": "", "flavor": {"original_name": "m1.tiny", "vcpus": 1}}"#,
        )
        .unwrap();
        assert_eq!(s.image.id, None);
        assert_eq!(s.flavor.original_name.as_deref(), Some("m1.tiny"));
        let s: Server = serde_json::from_str(
            r#"{"id": "a", "image": {"id": "i", "links": []}, "flavor": {"id": "1", "links": []}, "metadata": null, "addresses": null}"#,
        )
        .unwrap();
        assert_eq!(s.image.id.as_deref(), Some("i"));
        assert_eq!(s.flavor.id.as_deref(), Some("1"));
        assert_eq!(
            parse_time(Some("2013-09-03T04:01:32Z"))
                .unwrap()
                .to_rfc3339(),
            "2013-09-03T04:01:32+00:00"
        );
        assert!(parse_time(Some("2013-09-03T04:01:32.000000")).is_some());
    }
}
