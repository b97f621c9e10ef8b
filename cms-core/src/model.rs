//! The cms model: instances, images, flavors, networks, locations and key pairs;
//! volumes and snapshots, security groups, public addresses.
//!
//! What each is on each backend (a backend without one declares it unsupported in its
//! [`Capabilities`](crate::Capabilities)):
//!
//! | cms | memory | EC2 | OpenStack | OpenNebula | vCloud Director |
//! |---|---|---|---|---|---|
//! | [`Instance`] | instance | instance | Nova server | VM | the VM of a one-VM vApp |
//! | [`Image`] | catalogue image, or captured | AMI | Glance image | OS image, or VM template | vAppTemplate in a catalog |
//! | image capture ([`ImageSpec`]) | copy of the instance | CreateImage / DeregisterImage | Nova `createImage` / Glance delete | `one.vm.disksaveas` / `one.image.delete` | vApp captured into a catalog |
//! | [`Flavor`] | size | instance type | flavor | template capacity, or configured size | VM sizing policy, or configured size |
//! | [`Network`] | network | VPC subnet | Neutron network | virtual network | org VDC network |
//! | [`Location`] | zone | availability zone | availability zone | cluster | VDC |
//! | [`KeyPair`] | key pair | key pair | keypair | user's `SSH_PUBLIC_KEY` | guest customization |
//! | [`Volume`] | volume | EBS volume | Cinder volume | persistent DATABLOCK image | independent disk |
//! | attach / detach | attachment | AttachVolume / DetachVolume | Nova `os-volume_attachments` | `one.vm.attach` / `one.vm.detach` | `disk:attach` / `disk:detach` actions |
//! | [`Snapshot`] | snapshot | EBS snapshot | Cinder snapshot | a copy of the volume's image | — |
//! | [`SecurityGroup`] | group | security group (of a VPC) | Neutron security group | security group (`one.secgroup.*`) | edge gateway firewall rules |
//! | [`Address`] | public address | Elastic IP | Neutron floating IP | — | edge gateway NAT rule to an external IP |
//!
//! Their states, mapped from each backend's, are in the tables of [`InstanceState`],
//! [`VolumeState`], [`SnapshotState`] and [`ImageState`].
//!
//! Every id is the backend's own id, wrapped in an opaque string newtype. Every
//! resource that has a backend status keeps the raw status string beside the mapped
//! state, so nothing the backend said is lost.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        #[serde(transparent)]
        // Shared text: ids are cloned far more often than made (every listing).
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Wraps a backend id.
            pub fn new(id: impl Into<String>) -> Self {
                $name(std::sync::Arc::from(id.into()))
            }

            /// The backend id.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The backend id, owned.
            pub fn into_string(self) -> String {
                self.0.to_string()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(std::sync::Arc::from(s))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(std::sync::Arc::from(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The backend's id of an instance (EC2 `i-…`, a Nova server UUID, an OpenNebula VM number, a vCloud VM href).
    InstanceId
);
id_type!(
    /// The backend's id of an image (AMI, Glance image, OpenNebula image or template, vAppTemplate).
    ImageId
);
id_type!(
    /// The backend's id of a flavor (instance type, Nova flavor, configured size).
    FlavorId
);
id_type!(
    /// The backend's id of a network (subnet, Neutron network, virtual network, org VDC network).
    NetworkId
);
id_type!(
    /// The backend's id of a location (availability zone, cluster, VDC).
    LocationId
);

mod addresses;
mod security_groups;
mod volumes;

/// Reading optional whole numbers from JSON as JSON has them: `7` and `7.0` are the
/// same number (JSON Schema's `integer` takes both), so a document that writes a size
/// or a port as `7.0` is read, where serde alone refuses it; `7.5`, a negative number
/// or one too large for the type is refused, naming what was given.
pub mod whole {
    use serde::{de::Error as _, Deserialize, Deserializer};

    fn read<'de, D: Deserializer<'de>>(d: D, max: u64) -> Result<Option<u64>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => {
                let v = match (n.as_u64(), n.as_f64()) {
                    (Some(v), _) => Some(v),
                    (None, Some(f)) if f.fract() == 0.0 && (0.0..=max as f64).contains(&f) => {
                        Some(f as u64)
                    }
                    _ => None,
                };
                match v.filter(|v| *v <= max) {
                    Some(v) => Ok(Some(v)),
                    None => Err(D::Error::custom(format!(
                        "invalid value: {n}, expected a whole number from 0 to {max}"
                    ))),
                }
            }
        }
    }

    /// An optional `u32`.
    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        read(d, u64::from(u32::MAX)).map(|v| v.map(|v| v as u32))
    }

    /// An optional `u16`.
    pub fn u16<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
        read(d, u64::from(u16::MAX)).map(|v| v.map(|v| v as u16))
    }
}

pub use addresses::*;
pub use security_groups::*;
pub use volumes::*;

/// Tags: free key/value pairs attached to a resource.
///
/// Every driver applies the model's rules to tags ([`check_tags`]); a driver may
/// reserve some keys for itself (the EC2 driver's `cms:` tags), which users can then
/// neither set nor remove nor see.
pub type Tags = BTreeMap<String, String>;

/// The most tags a resource carries (EC2's limit, applied by every driver).
pub const MAX_TAGS: usize = 50;
/// The longest tag key, in characters (EC2's limit).
pub const MAX_TAG_KEY: usize = 128;
/// The longest tag value, in characters (EC2's limit).
pub const MAX_TAG_VALUE: usize = 256;

/// Checks tags by the model's rules: at most [`MAX_TAGS`] of them, keys of 1 to
/// [`MAX_TAG_KEY`] characters, values of at most [`MAX_TAG_VALUE`] characters.
/// Otherwise `InvalidArgument` (argument `tags`, context `tag` = the key) naming the key.
///
/// ```
/// use cms_core::{check_tags, ErrorKind, Tags};
/// let mut tags = Tags::new();
/// tags.insert("env".into(), "prod".into());
/// assert!(check_tags(&tags).is_ok());
/// tags.insert("long".into(), "x".repeat(300));
/// let e = check_tags(&tags).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.context_value("tag"), Some("long"));
/// ```
pub fn check_tags(tags: &Tags) -> crate::Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(crate::Error::invalid_argument(
            "tags",
            format!("{} tags given, at most {MAX_TAGS} allowed", tags.len()),
        ));
    }
    for (k, v) in tags {
        check_tag_key(k)?;
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(bad_tag(
                k,
                format!("the value of tag `{k}` is longer than {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

fn check_tag_key(k: &str) -> crate::Result<()> {
    if k.is_empty() {
        return Err(bad_tag(k, "a tag key is empty".into()));
    }
    if k.chars().count() > MAX_TAG_KEY {
        return Err(bad_tag(
            k,
            format!(
                "tag key `{}…` is longer than {MAX_TAG_KEY} characters",
                k.chars().take(32).collect::<String>()
            ),
        ));
    }
    Ok(())
}

fn bad_tag(key: &str, why: String) -> crate::Error {
    crate::Error::invalid_argument("tags", why).with_context("tag", key)
}

/// The longest owner, in characters.
pub const MAX_OWNER: usize = 64;

/// Checks an owner ([`InstanceSpec::owner`]): 1 to [`MAX_OWNER`] characters, each a
/// letter, digit or one of `_ . @ -`, so that every backend can keep it as it is (an
/// EC2 tag value, an OpenNebula template attribute, a vCloud metadata value) and filter
/// by it exactly. Otherwise `InvalidArgument` (argument `owner`).
///
/// ```
/// use cms_core::check_owner;
/// assert!(check_owner("team-a").is_ok());
/// assert!(check_owner("").is_err());
/// assert!(check_owner("a b").is_err());
/// ```
pub fn check_owner(owner: &str) -> crate::Result<()> {
    let ok = !owner.is_empty()
        && owner.len() <= MAX_OWNER
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid_argument(
            "owner",
            format!(
                "owner {owner:?} must be 1 to {MAX_OWNER} letters, digits, `_`, `.`, `@` or `-`"
            ),
        ))
    }
}

/// The longest name of an instance, network or key pair, in characters.
pub const MAX_NAME: usize = 255;
/// The longest user data, in characters.
pub const MAX_USER_DATA: usize = 16 * 1024;
/// The longest id a spec may name (image, flavor, network, location), in characters.
pub const MAX_ID: usize = 255;
/// The longest client token, in characters.
pub const MAX_CLIENT_TOKEN: usize = 255;
/// The most networks one instance attaches to.
pub const MAX_NETWORKS: usize = 16;
/// The most security groups one instance is in (EC2's limit per interface).
pub const MAX_SECURITY_GROUPS: usize = 16;
/// The most volumes made with one instance.
pub const MAX_BLOCK_DEVICES: usize = 16;

/// Whether a name has nothing but white space in it (or nothing at all): Unicode's
/// white space and U+FEFF, which JSON Schema's `\s` counts too.
fn blank(name: &str) -> bool {
    name.chars().all(|c| c.is_whitespace() || c == '\u{feff}')
}

/// Checks a name by the model's rules: at most [`MAX_NAME`] characters, no control
/// characters, and not blank when `required`. Otherwise `InvalidArgument` naming
/// `argument`.
///
/// ```
/// use cms_core::check_name;
/// assert!(check_name("name", "web 1", true).is_ok());
/// assert!(check_name("name", "  ", true).is_err());
/// assert!(check_name("name", "", false).is_ok());
/// assert!(check_name("name", "a\u{7}b", false).is_err());
/// ```
pub fn check_name(argument: &str, name: &str, required: bool) -> crate::Result<()> {
    let why = if required && blank(name) {
        Some("must not be empty".to_owned())
    } else if name.chars().count() > MAX_NAME {
        Some(format!(
            "`{}…` is longer than {MAX_NAME} characters",
            name.chars().take(32).collect::<String>()
        ))
    } else if name.chars().any(char::is_control) {
        Some(format!("{name:?} contains control characters"))
    } else {
        None
    };
    match why {
        Some(why) => Err(crate::Error::invalid_argument(argument, why)),
        None => Ok(()),
    }
}

pub(crate) fn check_id(argument: &str, id: &str) -> crate::Result<()> {
    if id.is_empty() || id.chars().count() > MAX_ID {
        return Err(crate::Error::invalid_argument(
            argument,
            format!("must be 1 to {MAX_ID} characters"),
        ));
    }
    Ok(())
}

/// Checks what to create by the model's rules, before any backend sees it: the name
/// ([`check_name`]), tags ([`check_tags`]), the owner ([`check_owner`]), ids of 1 to
/// [`MAX_ID`] characters, at most [`MAX_NETWORKS`] networks, each once, a key name of
/// 1 to [`MAX_NAME`] characters without control characters, user data of at most
/// [`MAX_USER_DATA`] characters, a client token of 1 to [`MAX_CLIENT_TOKEN`]
/// characters, at most [`MAX_SECURITY_GROUPS`] security groups, each once, at most
/// [`MAX_BLOCK_DEVICES`] volumes ([`BlockDevice::check`]), each device once. Errors
/// are `InvalidArgument` for
/// [`Operation::CreateInstance`](crate::Operation::CreateInstance), naming the argument.
pub fn check_instance_spec(spec: &InstanceSpec) -> crate::Result<()> {
    let op = crate::Operation::CreateInstance;
    let check = || -> crate::Result<()> {
        check_name("name", &spec.name, false)?;
        check_tags(&spec.tags)?;
        if let Some(o) = &spec.owner {
            check_owner(o)?;
        }
        check_id("image_id", spec.image_id.as_str())?;
        check_id("flavor_id", spec.flavor_id.as_str())?;
        if let Some(l) = &spec.location_id {
            check_id("location_id", l.as_str())?;
        }
        if spec.network_ids.len() > MAX_NETWORKS {
            return Err(crate::Error::invalid_argument(
                "network_ids",
                format!(
                    "{} networks given, at most {MAX_NETWORKS} allowed",
                    spec.network_ids.len()
                ),
            ));
        }
        for (i, n) in spec.network_ids.iter().enumerate() {
            check_id("network_ids", n.as_str())?;
            if spec.network_ids[..i].contains(n) {
                return Err(crate::Error::invalid_argument(
                    "network_ids",
                    format!("network `{n}` is named more than once"),
                ));
            }
        }
        if let Some(k) = &spec.key_name {
            check_name("key_name", k, true)?;
        }
        if let Some(data) = &spec.user_data {
            let n = data.chars().count();
            if n > MAX_USER_DATA {
                return Err(crate::Error::invalid_argument(
                    "user_data",
                    format!("{n} characters given, at most {MAX_USER_DATA} allowed"),
                ));
            }
        }
        if let Some(token) = &spec.client_token {
            check_client_token(token)?;
        }
        if spec.security_group_ids.len() > MAX_SECURITY_GROUPS {
            return Err(crate::Error::invalid_argument(
                "security_group_ids",
                format!(
                    "{} security groups given, at most {MAX_SECURITY_GROUPS} allowed",
                    spec.security_group_ids.len()
                ),
            ));
        }
        for (i, g) in spec.security_group_ids.iter().enumerate() {
            check_id("security_group_ids", g.as_str())?;
            if spec.security_group_ids[..i].contains(g) {
                return Err(crate::Error::invalid_argument(
                    "security_group_ids",
                    format!("security group `{g}` is named more than once"),
                ));
            }
        }
        if spec.volumes.len() > MAX_BLOCK_DEVICES {
            return Err(crate::Error::invalid_argument(
                "volumes",
                format!(
                    "{} volumes given, at most {MAX_BLOCK_DEVICES} allowed",
                    spec.volumes.len()
                ),
            ));
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            v.check().map_err(|e| {
                crate::Error::invalid_argument("volumes", format!("volume {i}: {}", e.message()))
            })?;
            if let Some(d) = &v.device {
                if spec.volumes[..i]
                    .iter()
                    .any(|o| o.device.as_ref() == Some(d))
                {
                    return Err(crate::Error::invalid_argument(
                        "volumes",
                        format!("device `{d}` is named more than once"),
                    ));
                }
            }
        }
        Ok(())
    };
    check().map_err(|e| e.with_operation(op))
}

/// Checks a client token: 1 to [`MAX_CLIENT_TOKEN`] characters.
pub(crate) fn check_client_token(token: &str) -> crate::Result<()> {
    if token.is_empty() || token.chars().count() > MAX_CLIENT_TOKEN {
        return Err(crate::Error::invalid_argument(
            "client_token",
            format!("must be 1 to {MAX_CLIENT_TOKEN} characters"),
        ));
    }
    Ok(())
}

/// The shortest and longest prefix a network's range may have.
pub const NETWORK_PREFIXES: std::ops::RangeInclusive<u8> = 8..=30;

/// Parses an IPv4 range `a.b.c.d/n` (no leading zeros; `n` in [`NETWORK_PREFIXES`]);
/// host bits may be set (they are cleared): `10.1.2.3/16` is `10.1.0.0/16`.
/// Otherwise `InvalidArgument` naming `cidr`.
///
/// ```
/// use cms_core::parse_cidr;
/// assert_eq!(parse_cidr("10.1.2.3/16").unwrap(), ("10.1.0.0".parse().unwrap(), 16));
/// assert!(parse_cidr("10.1.0.0/31").is_err());
/// assert!(parse_cidr("10.01.0.0/16").is_err());
/// ```
pub fn parse_cidr(text: &str) -> crate::Result<(std::net::Ipv4Addr, u8)> {
    let bad = |why: String| {
        crate::Error::invalid_argument(
            "cidr",
            format!("`{text}` is not a usable IPv4 range: {why}"),
        )
    };
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("expected `a.b.c.d/n`, such as `10.1.0.0/24`".into()))?;
    let network: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| bad(format!("`{addr}` is not an IPv4 address")))?;
    let prefix: u8 = Some(prefix)
        .filter(|p| {
            !p.is_empty()
                && p.len() <= 2
                && p.bytes().all(|b| b.is_ascii_digit())
                && !(p.len() == 2 && p.starts_with('0'))
        })
        .and_then(|p| p.parse().ok())
        .filter(|p| NETWORK_PREFIXES.contains(p))
        .ok_or_else(|| {
            bad(format!(
                "the prefix length `/{prefix}` must be a number from {} to {}",
                NETWORK_PREFIXES.start(),
                NETWORK_PREFIXES.end()
            ))
        })?;
    let mask = u32::MAX << (32 - u32::from(prefix));
    Ok((std::net::Ipv4Addr::from(u32::from(network) & mask), prefix))
}

/// Checks a network to create by the model's rules: a name ([`check_name`],
/// required), tags ([`check_tags`]), a range ([`parse_cidr`]). Errors are
/// `InvalidArgument` for [`Operation::CreateNetwork`](crate::Operation::CreateNetwork).
pub fn check_network_spec(spec: &NetworkSpec) -> crate::Result<()> {
    let check = || -> crate::Result<()> {
        check_name("name", &spec.name, true)?;
        check_tags(&spec.tags)?;
        parse_cidr(&spec.cidr)?;
        if let Some(l) = &spec.location_id {
            check_id("location_id", l.as_str())?;
        }
        Ok(())
    };
    check().map_err(|e| e.with_operation(crate::Operation::CreateNetwork))
}

/// A change to the tags of an existing instance: the argument of
/// [`Driver::update_instance_tags`](crate::Driver::update_instance_tags).
///
/// `set` adds tags or overwrites the value of keys the instance carries; `remove`
/// deletes keys (a key the instance does not carry is no error). A key both set and
/// removed, or a key or value that breaks the rules of [`check_tags`], is
/// `InvalidArgument` naming the key, and nothing changes.
///
/// ```
/// use cms_core::{Tags, TagChanges};
/// let mut tags = Tags::new();
/// tags.insert("env".into(), "test".into());
/// tags.insert("owner".into(), "ann".into());
/// let changes = TagChanges::new().set_tag("env", "prod").remove_tag("owner");
/// let after = changes.apply(&tags).unwrap();
/// assert_eq!(after, Tags::from([("env".into(), "prod".into())]));
/// assert!(TagChanges::new().set_tag("a", "1").remove_tag("a").check().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TagChanges {
    /// Tags to add, or whose value to overwrite.
    #[serde(default)]
    pub set: Tags,
    /// Keys to delete.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl TagChanges {
    /// No change.
    pub fn new() -> Self {
        TagChanges::default()
    }

    /// Adds a tag to set.
    pub fn set_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.insert(key.into(), value.into());
        self
    }

    /// Adds a key to remove.
    pub fn remove_tag(mut self, key: impl Into<String>) -> Self {
        self.remove.push(key.into());
        self
    }

    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Every key the change names, set or removed.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.set
            .keys()
            .map(String::as_str)
            .chain(self.remove.iter().map(String::as_str))
    }

    /// Checks the change by the model's rules (see the [type](TagChanges)): errors are
    /// `InvalidArgument` for [`Operation::UpdateInstanceTags`](crate::Operation::UpdateInstanceTags),
    /// with context `tag` naming the key.
    pub fn check(&self) -> crate::Result<()> {
        let op = crate::Operation::UpdateInstanceTags;
        if let Some(k) = self.remove.iter().find(|k| self.set.contains_key(*k)) {
            return Err(bad_tag(
                k,
                format!("tag `{k}` is both set and removed; do one or the other"),
            )
            .with_operation(op));
        }
        check_tags(&self.set).map_err(|e| e.with_operation(op))?;
        for k in &self.remove {
            check_tag_key(k).map_err(|e| e.with_operation(op))?;
        }
        Ok(())
    }

    /// The tags after the change: [`check`](Self::check)s it, applies it to `tags`, and
    /// checks that the result holds at most [`MAX_TAGS`] tags.
    pub fn apply(&self, tags: &Tags) -> crate::Result<Tags> {
        self.check()?;
        let mut after = tags.clone();
        for k in &self.remove {
            after.remove(k);
        }
        after.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        if after.len() > MAX_TAGS {
            return Err(crate::Error::invalid_argument(
                "tags",
                format!(
                    "the change would leave {} tags, at most {MAX_TAGS} allowed",
                    after.len()
                ),
            )
            .with_operation(crate::Operation::UpdateInstanceTags));
        }
        Ok(after)
    }
}

/// The life-cycle state of an instance, the same for every backend.
///
/// Each driver maps its backend's status into one of these in a single function, and
/// keeps the raw status in [`Instance::raw_state`]. The mapping:
///
/// | cms | memory | EC2 | OpenStack Nova `status` (+`OS-EXT-STS:task_state`) | OpenNebula STATE / LCM_STATE | vCloud VM `status` (+ running task) |
/// |---|---|---|---|---|---|
/// | Pending | `pending` | pending (0) | BUILD; REBUILD, RESIZE, MIGRATING | 0 INIT, 1 PENDING, 2 HOLD, 10 CLONING; ACTIVE + PROLOG/BOOT* | 0 UNRESOLVED, 1 RESOLVED (with a create/deploy task) |
/// | Running | `running` | running (16) | ACTIVE | 3 ACTIVE + LCM 3 RUNNING | 4 POWERED_ON |
/// | Stopping | `stopping` | stopping (64) | ACTIVE + task powering-off | ACTIVE + SHUTDOWN_POWEROFF, SHUTDOWN_UNDEPLOY, EPILOG_STOP | 4 + powerOff/shutdown/undeploy task |
/// | Stopped | `stopped` | stopped (80) | SHUTOFF, SHELVED, SHELVED_OFFLOADED | 8 POWEROFF, 9 UNDEPLOYED, 4 STOPPED | 8 POWERED_OFF, 18 VAPP_UNDEPLOYED, 1 RESOLVED (no task) |
/// | Rebooting | `rebooting` | running (16) | REBOOT, HARD_REBOOT | ACTIVE + LCM BOOT after reboot | 4 + reset/reboot task |
/// | Suspended | — | stopped (80) | SUSPENDED, PAUSED | 5 SUSPENDED | 3 SUSPENDED |
/// | Terminating | `terminating` | shutting-down (32) | task deleting | ACTIVE + SHUTDOWN, EPILOG, CLEANUP_DELETE | delete task |
/// | Terminated | `terminated` (kept visible for a while, as EC2 does) | terminated (48) | DELETED, SOFT_DELETED (or 404) | 6 DONE | gone (404) |
/// | Error | — | — | ERROR | 7 FAILED, 11 CLONING_FAILURE; LCM *_FAILURE | -1 FAILED_CREATION, 9 INCONSISTENT_STATE |
/// | Unknown | — | — | UNKNOWN | LCM 16 UNKNOWN | 6 UNKNOWN, 7 UNRECOGNIZED |
///
/// Serialized in lower case: `pending`, `running`, … `unknown`; a state this version
/// does not know (written by a newer cms server, read by the remote driver) reads as
/// `unknown`, rather than failing the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    Rebooting,
    Suspended,
    Terminating,
    Terminated,
    Error,
    #[serde(other)]
    Unknown,
}

impl InstanceState {
    /// Every state, in declaration order.
    pub const ALL: [InstanceState; 10] = [
        InstanceState::Pending,
        InstanceState::Running,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Rebooting,
        InstanceState::Suspended,
        InstanceState::Terminating,
        InstanceState::Terminated,
        InstanceState::Error,
        InstanceState::Unknown,
    ];

    /// The lower-case name (`running`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Rebooting => "rebooting",
            InstanceState::Suspended => "suspended",
            InstanceState::Terminating => "terminating",
            InstanceState::Terminated => "terminated",
            InstanceState::Error => "error",
            InstanceState::Unknown => "unknown",
        }
    }

    /// Whether the instance is on its way somewhere else (pending, stopping, …).
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            InstanceState::Pending
                | InstanceState::Stopping
                | InstanceState::Rebooting
                | InstanceState::Terminating
        )
    }

    /// Whether the instance is gone or going (terminating, terminated).
    pub fn is_gone(self) -> bool {
        matches!(self, InstanceState::Terminating | InstanceState::Terminated)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InstanceState {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                crate::Error::invalid_argument(
                    "state",
                    format!(
                        "unknown state `{s}`; expected one of {}",
                        InstanceState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })
    }
}

/// A virtual machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// The backend's id.
    pub id: InstanceId,
    /// The name given at creation (empty when the backend has none).
    pub name: String,
    /// The mapped state.
    pub state: InstanceState,
    /// The backend's own status, as it said it (`running`, `ACTIVE/RUNNING`, `POWERED_ON`).
    pub raw_state: String,
    /// The image it was made from.
    pub image_id: Option<ImageId>,
    /// Its flavor.
    pub flavor_id: Option<FlavorId>,
    /// Where it runs.
    pub location_id: Option<LocationId>,
    /// The networks it is attached to.
    pub network_ids: Vec<NetworkId>,
    /// The key pair it was given.
    pub key_name: Option<String>,
    /// Private addresses.
    pub private_ips: Vec<String>,
    /// Public addresses.
    pub public_ips: Vec<String>,
    /// Tags.
    pub tags: Tags,
    /// When it was created, when the backend says.
    pub created_at: Option<DateTime<Utc>>,
    /// The client token it was created with, when the backend keeps it.
    pub client_token: Option<String>,
    /// Who it was made for ([`InstanceSpec::owner`]), as the backend keeps it beside
    /// the instance; `None` for instances made without one (outside cms, say).
    #[serde(default)]
    pub owner: Option<String>,
    /// The security groups it is in. Shared text, like ids: most instances are in
    /// their network's one default group, and a listing clones this list for each
    /// (`vec![…].into()` makes one).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub security_group_ids: std::sync::Arc<[SecurityGroupId]>,
    /// The volumes attached to it (its root volume too, where the backend has one).
    #[serde(default)]
    pub volumes: Vec<InstanceVolume>,
}

/// What an instance's console showed: the answer of
/// [`Driver::console_output`](crate::Driver::console_output).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleOutput {
    /// The text, the latest part the backend keeps (at most [`MAX_CONSOLE_OUTPUT`]
    /// bytes); empty when there is none yet.
    pub text: String,
    /// When it was last written, when the backend says.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The most console output a driver answers, in bytes (the latest part is kept):
/// EC2's own limit.
pub const MAX_CONSOLE_OUTPUT: usize = 64 * 1024;

impl ConsoleOutput {
    /// Keeps the last [`MAX_CONSOLE_OUTPUT`] bytes of `text`, cut at a character
    /// boundary.
    pub fn latest(text: &str, updated_at: Option<DateTime<Utc>>) -> ConsoleOutput {
        let mut start = text.len().saturating_sub(MAX_CONSOLE_OUTPUT);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        ConsoleOutput {
            text: text[start..].to_owned(),
            updated_at,
        }
    }
}

/// What to create: the arguments of [`Driver::create_instance`](crate::Driver::create_instance).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceSpec {
    /// A name for the instance.
    #[serde(default)]
    pub name: String,
    /// The image to boot.
    pub image_id: ImageId,
    /// The size.
    pub flavor_id: FlavorId,
    /// Networks to attach; the backend's default when empty.
    #[serde(default)]
    pub network_ids: Vec<NetworkId>,
    /// Where to place it; the backend's choice when absent.
    #[serde(default)]
    pub location_id: Option<LocationId>,
    /// A key pair to install.
    #[serde(default)]
    pub key_name: Option<String>,
    /// User data (cloud-init and the like), as text.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// A client token: creating twice with the same token and the same spec makes one
    /// instance; with the same token and another spec, an `InvalidArgument` error.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Who the instance is for: a label the backend keeps with the instance, in the
    /// same create call, and that listings filter by ([`InstanceFilter::owner`]).
    /// Multi-tenant callers put the tenant here (the cms server does), so that no
    /// crash between the create and their own bookkeeping can lose who owns it.
    /// Drivers that declare [`InstanceCapabilities::owner`](crate::InstanceCapabilities::owner)
    /// keep it; see [`check_owner`] for its form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Security groups to put it in; the backend's default group when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_ids: Vec<SecurityGroupId>,
    /// Volumes to make with it and attach (empty or from a snapshot).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<BlockDevice>,
}

impl InstanceSpec {
    /// A spec for an image and a flavor, everything else left to the backend.
    pub fn new(image_id: impl Into<ImageId>, flavor_id: impl Into<FlavorId>) -> Self {
        InstanceSpec {
            image_id: image_id.into(),
            flavor_id: flavor_id.into(),
            ..Default::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the client token.
    pub fn client_token(mut self, token: impl Into<String>) -> Self {
        self.client_token = Some(token.into());
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Adds a security group.
    pub fn security_group(mut self, id: impl Into<SecurityGroupId>) -> Self {
        self.security_group_ids.push(id.into());
        self
    }

    /// Adds a volume to make with the instance.
    pub fn volume(mut self, volume: BlockDevice) -> Self {
        self.volumes.push(volume);
        self
    }

    /// Whether two specs ask for the same instance, ignoring the client token.
    pub fn same_request(&self, other: &InstanceSpec) -> bool {
        let strip = |s: &InstanceSpec| InstanceSpec {
            client_token: None,
            ..s.clone()
        };
        strip(self) == strip(other)
    }
}

/// Which instances to list. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only these ids.
    pub ids: Vec<InstanceId>,
    /// Only instances in one of these states.
    pub states: Vec<InstanceState>,
    /// Only instances with exactly this name.
    pub name: Option<String>,
    /// Only instances carrying each of these tags; a `None` value matches any value.
    pub tags: BTreeMap<String, Option<String>>,
    /// Only instances made for exactly this owner ([`InstanceSpec::owner`]).
    pub owner: Option<String>,
}

impl InstanceFilter {
    /// Whether the filter matches everything.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.states.is_empty()
            && self.name.is_none()
            && self.tags.is_empty()
            && self.owner.is_none()
    }

    /// Whether an instance passes the filter (for drivers that filter on the client side).
    pub fn matches(&self, i: &Instance) -> bool {
        (self.ids.is_empty() || self.ids.contains(&i.id))
            && (self.states.is_empty() || self.states.contains(&i.state))
            && self.name.as_ref().is_none_or(|n| *n == i.name)
            && self
                .owner
                .as_ref()
                .is_none_or(|o| i.owner.as_ref() == Some(o))
            && self.tags.iter().all(|(k, v)| match (i.tags.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            })
    }
}

/// What an image is to its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A disk image (AMI, Glance image, OpenNebula image).
    Disk,
    /// A machine template (OpenNebula VM template, vCloud vAppTemplate).
    Template,
}

/// Where an image is in its life.
///
/// | cms | memory | EC2 `imageState` | OpenStack Glance `status` | OpenNebula image `STATE` (templates: always available) | vCloud vAppTemplate `status` |
/// |---|---|---|---|---|---|
/// | `pending` | `pending` (a capture under way) | pending | queued, saving, importing, uploading | 0 INIT, 4 LOCKED, 6 CLONE | 0 UNRESOLVED |
/// | `available` | `available` | available | active | 1 READY, 2 USED, 8 USED_PERS | 8 POWERED_OFF (resolved) |
/// | `error` | — | failed, error, invalid | killed | 5 ERROR, 3 DISABLED | -1 FAILED_CREATION |
/// | `deleted` | — | deregistered | deleted, pending_delete, deactivated | 7 DELETE | (404) |
/// | `unknown` | — | anything else | anything else | anything else | anything else |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    Pending,
    /// Ready to launch from (what images written before image states were kept read as).
    #[default]
    Available,
    Error,
    Deleted,
    #[serde(other)]
    Unknown,
}

impl ImageState {
    /// The snake-case name (`available`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageState::Pending => "pending",
            ImageState::Available => "available",
            ImageState::Error => "error",
            ImageState::Deleted => "deleted",
            ImageState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ImageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bootable image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Image {
    pub id: ImageId,
    pub name: String,
    pub description: Option<String>,
    pub kind: ImageKind,
    /// Operating system family, when known (`linux`, `windows`).
    pub os: Option<String>,
    pub architecture: Option<String>,
    /// The mapped state.
    #[serde(default)]
    pub state: ImageState,
    /// The backend's status (`available`, `active`, `READY`).
    pub raw_state: String,
    pub min_disk_gib: Option<u32>,
    pub tags: Tags,
    /// Whether the image is shared with the account rather than made by it (the
    /// backend's public catalogue, another account's image): such images cannot be
    /// deleted through this account.
    #[serde(default = "shared_by_default")]
    pub shared: bool,
    /// Who it was made for ([`ImageSpec::owner`]); `None` for shared images and for
    /// images the account made outside cms.
    #[serde(default)]
    pub owner: Option<String>,
    /// The instance it was captured from, when the backend says.
    #[serde(default)]
    pub source_instance_id: Option<InstanceId>,
    /// When it was made, when the backend says.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

fn shared_by_default() -> bool {
    true
}

/// Which images to list. The default matches every image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// Only these ids.
    pub ids: Vec<ImageId>,
    /// Only images made for exactly this owner ([`ImageSpec::owner`]), and the shared
    /// ones too when `include_shared`. Every image when absent.
    pub owner: Option<String>,
    /// With `owner`: the shared images as well (what an owner may launch).
    pub include_shared: bool,
}

impl ImageFilter {
    /// The images `owner` may launch: the shared ones and its own.
    pub fn usable_by(owner: impl Into<String>) -> Self {
        ImageFilter {
            ids: Vec::new(),
            owner: Some(owner.into()),
            include_shared: true,
        }
    }

    /// Whether an image passes the filter (for drivers that filter on the client side).
    pub fn matches(&self, i: &Image) -> bool {
        (self.ids.is_empty() || self.ids.contains(&i.id))
            && match &self.owner {
                None => true,
                Some(o) => i.owner.as_ref() == Some(o) || (self.include_shared && i.shared),
            }
    }
}

/// What to capture: the arguments of [`Driver::create_image`](crate::Driver::create_image).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageSpec {
    /// The instance to capture (its root disk, and the backend's choice of the rest).
    pub instance_id: InstanceId,
    /// The image's name (required).
    pub name: String,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Who the image is for, kept by the backend with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ImageSpec {
    /// An image named `name` of `instance_id`.
    pub fn new(instance_id: impl Into<InstanceId>, name: impl Into<String>) -> Self {
        ImageSpec {
            instance_id: instance_id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
}

/// Checks an image spec: the instance id, a name (required) and description by
/// [`check_name`], the owner, tags. Errors are `InvalidArgument` for
/// [`Operation::CreateImage`](crate::Operation::CreateImage).
pub fn check_image_spec(spec: &ImageSpec) -> crate::Result<()> {
    let check = || -> crate::Result<()> {
        check_id("instance_id", spec.instance_id.as_str())?;
        check_name("name", &spec.name, true)?;
        if let Some(d) = &spec.description {
            check_name("description", d, false)?;
        }
        if let Some(o) = &spec.owner {
            check_owner(o)?;
        }
        check_tags(&spec.tags)
    };
    check().map_err(|e| e.with_operation(crate::Operation::CreateImage))
}

/// Which volumes, snapshots, security groups or addresses to list. Empty fields match
/// everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceFilter<Id> {
    /// Only these ids.
    pub ids: Vec<Id>,
    /// Only those made for exactly this owner.
    pub owner: Option<String>,
    /// Only those carrying each of these tags; a `None` value matches any value.
    pub tags: BTreeMap<String, Option<String>>,
}

impl<Id> Default for ResourceFilter<Id> {
    fn default() -> Self {
        ResourceFilter {
            ids: Vec::new(),
            owner: None,
            tags: BTreeMap::new(),
        }
    }
}

impl<Id: PartialEq> ResourceFilter<Id> {
    /// Everything `owner` made.
    pub fn owned_by(owner: impl Into<String>) -> Self {
        ResourceFilter {
            owner: Some(owner.into()),
            ..Default::default()
        }
    }

    /// Whether a resource with this id, owner and tags passes (for drivers that filter
    /// on the client side).
    pub fn matches(&self, id: &Id, owner: Option<&str>, tags: &Tags) -> bool {
        (self.ids.is_empty() || self.ids.contains(id))
            && self.owner.as_deref().is_none_or(|o| owner == Some(o))
            && self.tags.iter().all(|(k, v)| match (tags.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            })
    }
}

/// Which volumes to list.
pub type VolumeFilter = ResourceFilter<VolumeId>;
/// Which snapshots to list.
pub type SnapshotFilter = ResourceFilter<SnapshotId>;
/// Which addresses to list.
pub type AddressFilter = ResourceFilter<AddressId>;

/// An instance size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Flavor {
    pub id: FlavorId,
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: Option<u32>,
}

/// A network instances attach to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Network {
    pub id: NetworkId,
    pub name: String,
    /// The IPv4 range, `10.0.0.0/24`.
    pub cidr: Option<String>,
    pub location_id: Option<LocationId>,
    /// Whether the backend uses it when a create names no network.
    pub is_default: bool,
    /// The backend's status.
    pub raw_state: String,
    pub tags: Tags,
}

/// What to create: the arguments of [`Driver::create_network`](crate::Driver::create_network).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkSpec {
    pub name: String,
    /// The IPv4 range, `10.1.0.0/24`.
    pub cidr: String,
    #[serde(default)]
    pub location_id: Option<LocationId>,
    #[serde(default)]
    pub tags: Tags,
}

/// A place to run instances: availability zone, cluster, VDC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    /// The enclosing region, when the backend has one.
    pub region: Option<String>,
    /// Whether it accepts new instances.
    pub available: bool,
}

/// An SSH key pair known to the backend, identified by its name.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPair {
    pub name: String,
    /// The fingerprint the backend reports (`SHA256:…` or MD5 hex).
    pub fingerprint: String,
    /// The public key in OpenSSH format, when the backend gives it.
    pub public_key: Option<String>,
    /// The private key, only in the answer to a create that generated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .field("public_key", &self.public_key)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What to create: a key pair generated by the backend (no public key), or an imported one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPairSpec {
    pub name: String,
    /// An OpenSSH public key to import; absent to have one generated.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// An opaque position in a listing, handed back to get the next page.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
#[serde(transparent)]
pub struct PageToken(String);

impl PageToken {
    /// Wraps a driver's token.
    pub fn new(token: impl Into<String>) -> Self {
        PageToken(token.into())
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which page to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items; the driver's default (and cap) when absent.
    pub limit: Option<u32>,
    /// Where to continue; the start when absent.
    pub token: Option<PageToken>,
}

impl PageRequest {
    /// The first page, of at most `limit` items.
    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit: Some(limit),
            token: None,
        }
    }

    /// The page after `token`.
    pub fn after(limit: Option<u32>, token: PageToken) -> Self {
        PageRequest {
            limit,
            token: Some(token),
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The token of the next page; `None` on the last page.
    pub next: Option<PageToken>,
}

impl<T> Page<T> {
    /// A last page.
    pub fn last(items: Vec<T>) -> Self {
        Page { items, next: None }
    }
}

/// A state action on an instance: what [`Driver::start_instance`](crate::Driver::start_instance)
/// and its siblings do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstanceAction {
    Start,
    Stop,
    Reboot,
    Delete,
}

/// What a driver does with an action, given the instance's state (see
/// [`InstanceAction::decide`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionDecision {
    /// Send the action to the backend.
    Proceed,
    /// The action is under way or done: answer the instance as it is.
    AsIs,
    /// The transition is impossible: `InvalidState`, with this hint appended to the
    /// message (`"; start it instead"`).
    Refuse(&'static str),
}

impl InstanceAction {
    /// The trait operation.
    pub fn operation(self) -> crate::Operation {
        match self {
            InstanceAction::Start => crate::Operation::StartInstance,
            InstanceAction::Stop => crate::Operation::StopInstance,
            InstanceAction::Reboot => crate::Operation::RebootInstance,
            InstanceAction::Delete => crate::Operation::DeleteInstance,
        }
    }

    /// The verb (`start`).
    pub fn verb(self) -> &'static str {
        match self {
            InstanceAction::Start => "start",
            InstanceAction::Stop => "stop",
            InstanceAction::Reboot => "reboot",
            InstanceAction::Delete => "delete",
        }
    }

    /// The model's rules for actions, the same for every driver: repeating an action
    /// under way answers the instance as it is; an impossible transition is refused.
    ///
    /// | action | pending | running | rebooting | stopping | stopped | terminating | terminated |
    /// |---|---|---|---|---|---|---|---|
    /// | start | as is | refuse | refuse | refuse | **proceed** | refuse | refuse |
    /// | stop | refuse | **proceed** | **proceed** | as is | refuse | refuse | refuse |
    /// | reboot | refuse | **proceed** | as is | refuse | refuse | refuse | refuse |
    /// | delete | **proceed** | **proceed** | **proceed** | **proceed** | **proceed** | as is | as is |
    ///
    /// A reboot leaves the instance running (the reboot only happens inside it), so a
    /// stop right after one proceeds, as on EC2, where a client polling for `running`
    /// has nothing else to wait for. In `suspended`, `error` and `unknown` the backend
    /// judges (proceed). A driver that
    /// knows more than the state (which action a transition came from, a backend's
    /// finer states) may refine this, never contradict it.
    pub fn decide(self, state: InstanceState) -> ActionDecision {
        use ActionDecision::*;
        use InstanceAction::*;
        use InstanceState::*;
        match (self, state) {
            (_, Unknown | Error | Suspended) => Proceed,
            (Delete, Terminating | Terminated) => AsIs,
            (Delete, _) => Proceed,
            (Start, Stopped) | (Stop | Reboot, Running) | (Stop, Rebooting) => Proceed,
            (Start, Pending) | (Stop, Stopping) | (Reboot, Rebooting) => AsIs,
            (Start, Running | Rebooting) => Refuse("; there is nothing to start"),
            (Start, Stopping) => Refuse("; wait until it is stopped"),
            (Stop, Stopped) => Refuse("; there is nothing to stop"),
            (Stop | Reboot, Pending) => Refuse("; wait until it is running"),
            (Reboot, Stopped | Stopping) => Refuse("; start it instead"),
            (_, Terminating | Terminated) => Refuse("; it is gone"),
        }
    }

    /// The `InvalidState` error of a refused action:
    /// "cannot reboot instance `i-1`: it is stopped; start it instead".
    pub fn refusal(self, id: &InstanceId, state: InstanceState, hint: &str) -> crate::Error {
        crate::Error::new(
            crate::ErrorKind::InvalidState,
            format!(
                "cannot {} instance `{id}`: it is {state}{hint}",
                self.verb()
            ),
        )
        .with_operation(self.operation())
        .with_resource(format!("instance {id}"))
        .with_context("state", state.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_of_a_newer_version_reads_as_unknown() {
        let read = |s: &str| serde_json::from_str::<InstanceState>(s).unwrap();
        assert_eq!(read("\"running\""), InstanceState::Running);
        assert_eq!(read("\"hibernated\""), InstanceState::Unknown);
        assert_eq!(
            serde_json::to_string(&InstanceState::Unknown).unwrap(),
            "\"unknown\""
        );
        // Filters are parsed strictly: an unknown state there is the caller's mistake.
        assert!("hibernated".parse::<InstanceState>().is_err());
    }

    #[test]
    fn action_decisions_follow_the_table() {
        use InstanceState::*;
        assert_eq!(
            InstanceAction::Start.decide(Running),
            ActionDecision::Refuse("; there is nothing to start")
        );
        assert_eq!(InstanceAction::Start.decide(Pending), ActionDecision::AsIs);
        assert_eq!(
            InstanceAction::Start.decide(Stopped),
            ActionDecision::Proceed
        );
        assert_eq!(
            InstanceAction::Stop.decide(Stopped),
            ActionDecision::Refuse("; there is nothing to stop")
        );
        assert_eq!(InstanceAction::Stop.decide(Stopping), ActionDecision::AsIs);
        assert_eq!(
            InstanceAction::Stop.decide(Rebooting),
            ActionDecision::Proceed
        );
        assert_eq!(
            InstanceAction::Reboot.decide(Stopped),
            ActionDecision::Refuse("; start it instead")
        );
        assert_eq!(
            InstanceAction::Reboot.decide(Running),
            ActionDecision::Proceed
        );
        assert_eq!(
            InstanceAction::Delete.decide(Terminated),
            ActionDecision::AsIs
        );
        assert_eq!(
            InstanceAction::Delete.decide(Stopped),
            ActionDecision::Proceed
        );
        assert!(matches!(
            InstanceAction::Start.decide(Terminated),
            ActionDecision::Refuse(_)
        ));
    }

    #[test]
    fn tag_changes_are_checked_and_applied() {
        let tags: Tags = [("a", "1"), ("b", "2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let c = TagChanges::new()
            .set_tag("b", "3")
            .set_tag("c", "4")
            .remove_tag("a")
            .remove_tag("absent");
        let want: Tags = [("b", "3"), ("c", "4")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(c.apply(&tags).unwrap(), want);
        assert!(!c.is_empty() && TagChanges::new().is_empty());

        let refused = [
            (TagChanges::new().set_tag("x", "1").remove_tag("x"), "x"),
            (TagChanges::new().set_tag("", "1"), ""),
            (
                TagChanges::new().remove_tag("k".repeat(129)),
                &*"k".repeat(129),
            ),
            (TagChanges::new().set_tag("v", "v".repeat(257)), "v"),
        ];
        for (c, key) in refused {
            let e = c.check().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
            assert_eq!(e.operation(), Some(crate::Operation::UpdateInstanceTags));
            assert_eq!(e.context_value("argument"), Some("tags"));
            assert_eq!(e.context_value("tag"), Some(key), "{e}");
            assert!(e
                .message()
                .contains(&key.chars().take(32).collect::<String>()));
        }
        // Limits count characters, not bytes.
        TagChanges::new()
            .set_tag("é".repeat(128), "é".repeat(256))
            .check()
            .unwrap();
        let full: Tags = (0..50).map(|k| (format!("k{k}"), String::new())).collect();
        assert!(TagChanges::new().set_tag("k0", "x").apply(&full).is_ok());
        let e = TagChanges::new()
            .set_tag("one-more", "x")
            .apply(&full)
            .unwrap_err();
        assert!(e.message().contains("51 tags"), "{e}");
    }

    #[test]
    fn every_action_in_every_state_is_decided_and_refusals_explain() {
        for action in [
            InstanceAction::Start,
            InstanceAction::Stop,
            InstanceAction::Reboot,
            InstanceAction::Delete,
        ] {
            for state in InstanceState::ALL {
                if let ActionDecision::Refuse(hint) = action.decide(state) {
                    let e = action.refusal(&InstanceId::new("i-1"), state, hint);
                    assert_eq!(e.kind(), crate::ErrorKind::InvalidState);
                    assert!(e.message().starts_with(&format!(
                        "cannot {} instance `i-1`: it is {state}",
                        action.verb()
                    )));
                    assert!(
                        !hint.is_empty(),
                        "{action:?} in {state} refused without a hint"
                    );
                }
            }
        }
        assert_eq!(
            InstanceAction::Reboot.decide(InstanceState::Rebooting),
            ActionDecision::AsIs
        );
        assert_eq!(
            InstanceAction::Stop.decide(InstanceState::Unknown),
            ActionDecision::Proceed
        );
    }
}
