//! The driver: Nova servers as instances, Glance images, Nova flavors, Neutron networks,
//! Nova availability zones as locations, Nova key pairs.
//!
//! What it keeps on a server, as metadata (which `openstack server show` lists under
//! `properties`):
//!
//! | key | what |
//! |---|---|
//! | the cms tags | each tag as one metadata item (keys of letters, digits, `-_:. `; values of at most 255 characters: Nova's rules) |
//! | `cms:owner` | the owner ([`InstanceSpec::owner`]) |
//! | `cms:client-token` | the client token of the create that made it |
//! | `cms:request-hash` | a hash of that create's request (the same token with another request is `InvalidArgument`) |
//!
//! and, from microversion 2.52 (Nova tags at create; 2.26 to change them), as Nova
//! tags so that listings can ask Nova to filter: `cms:owner:<hash>`,
//! `cms:token:<hash>`, and `key=value` for each cms tag that fits Nova's tag rules (at
//! most 60 characters, no `,` or `/`). Tag filters on such tags, owner filters and
//! client-token lookups are then pushed down (`tags=`); every filter is also checked on
//! the answer, so a filter Nova cannot take is applied here. Servers tagged by other
//! clients through metadata alone carry no such Nova tags: a tag filter finds them only
//! when it cannot be pushed down.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use cms_core::{
    Capabilities, ConsoleOutput, Driver, Error, ErrorKind, Flavor, FlavorId, Image,
    ImageCapabilities, ImageFilter, ImageId, ImageKind, Instance, InstanceFilter, InstanceId,
    InstanceSpec, KeyPair, KeyPairSpec, Location, LocationId, Network, NetworkId, NetworkSpec,
    Operation, Page, PageRequest, PageToken, Result, TagChanges, Tags,
};

use crate::client::{Api, Call, Service};
use crate::config::OpenStackConfig;
use crate::model::{self, has_next, Server};

/// The metadata key of the owner.
pub const META_OWNER: &str = "cms:owner";
/// The metadata key of the client token.
pub const META_CLIENT_TOKEN: &str = "cms:client-token";
/// The metadata key of the create's request hash.
pub const META_REQUEST_HASH: &str = "cms:request-hash";
/// Tags and metadata keys with this prefix are the driver's: users can neither set nor
/// see them.
pub const RESERVED_PREFIX: &str = "cms:";

/// The largest page asked of Nova, Glance and Neutron (Nova's default `max_limit`); a
/// cloud with a smaller one answers less and the driver asks again.
pub const MAX_PAGE: u32 = 1000;
/// A listing's page when the caller names no limit.
pub const DEFAULT_PAGE: u32 = 100;
/// The highest microversion servers are read at: 2.47 replaced the flavor's id in a
/// server by a copy of the flavor, and the model keeps the flavor's id.
pub const READ_MICROVERSION: (u32, u32) = (2, 46);
/// Microversions that change what the driver sends.
const TAGS_LIST: (u32, u32) = (2, 26);
const NETWORKS_AUTO: (u32, u32) = (2, 37);
const TAGS_AT_CREATE: (u32, u32) = (2, 52);
const KEYPAIR_TYPE: (u32, u32) = (2, 2);
const KEYPAIRS_PAGED: (u32, u32) = (2, 35);
/// Nova's limits.
const MAX_NOVA_TAGS: usize = 50;
const MAX_NOVA_TAG: usize = 60;
const MAX_META_VALUE: usize = 255;
const MAX_NAME: usize = 255;
/// User tags at most: Nova's 50 tags, less the two the driver keeps.
pub const MAX_USER_TAGS: usize = MAX_NOVA_TAGS - 2;
/// Ids remembered with the marker for a page after a vanished one.
const SAME_SECOND_KEPT: usize = 50;
/// Client tokens remembered (token -> server id), before forgetting them all.
const TOKEN_CACHE: usize = 10_000;
/// Lookups of single servers at once (listings by id).
const PARALLEL_GETS: usize = 8;
/// How long servers this driver deleted are answered as terminated after Nova forgot
/// them, and how many at most.
pub const DELETED_KEPT_FOR: Duration = Duration::from_secs(3600);
const DELETED_KEPT: usize = 10_000;
/// How long an accepted start or stop counts as pending (see `power`).
const PENDING_KEPT_FOR: Duration = Duration::from_secs(600);
/// How long a tag change waits for a server to settle, and how often it looks.
const SETTLE_WAIT: Duration = Duration::from_secs(120);
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// How often the network names are read again when a server names an unknown one.
const NETWORK_NAMES_TTL: Duration = Duration::from_secs(5);

/// What the driver declares: every instance operation (owner, client token, tags and
/// their updates, user data, console output), Glance images to list and get, flavors,
/// Neutron networks, availability zones, key pairs. Not (yet): security groups, volumes
/// (Cinder), snapshots, image capture, floating IPs.
pub fn capabilities() -> Capabilities {
    let mut c = Capabilities::all();
    c.instances.security_groups = false;
    c.instances.volumes = false;
    c.instances.max_page_size = MAX_PAGE;
    c.images = ImageCapabilities {
        list: true,
        get: true,
        create: false,
        delete: false,
        owner: false,
    };
    c.volumes = Default::default();
    c.snapshots = Default::default();
    c.security_groups = Default::default();
    c.addresses = Default::default();
    c
}

#[derive(Default)]
struct Locks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() > 10_000 {
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks.entry(key.to_owned()).or_default().clone()
        };
        m.lock_owned().await
    }
}

#[derive(Default)]
struct NetworkNames {
    by_name: HashMap<String, String>,
    read_at: Option<Instant>,
}

struct Inner {
    api: Api,
    capabilities: Capabilities,
    tokens: Mutex<HashMap<String, String>>,
    token_locks: Locks,
    tag_locks: Locks,
    networks: RwLock<NetworkNames>,
    default_network: tokio::sync::OnceCell<Option<String>>,
    /// Servers this driver deleted, as they were: once Nova forgets them (404) they
    /// are answered as terminated for [`DELETED_KEPT_FOR`], as EC2 shows terminated
    /// instances for a while (clients wait for `terminated`).
    deleted: Mutex<HashMap<String, (Instant, Instance)>>,
    /// Start and stop requests Nova accepted whose end nobody was shown yet: server
    /// id -> (the state the action ends in, when it was accepted). See `power`.
    pending: Mutex<HashMap<String, (cms_core::InstanceState, Instant)>>,
    pending_count: std::sync::atomic::AtomicUsize,
}

/// The OpenStack driver (see the [crate documentation](crate)).
///
/// Cloning is cheap; clones share the session, its token and the caches.
#[derive(Clone)]
pub struct OpenStackDriver {
    inner: Arc<Inner>,
}

impl fmt::Debug for OpenStackDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenStackDriver")
            .field("api", &self.inner.api)
            .finish_non_exhaustive()
    }
}

fn with_op(op: Operation) -> impl FnOnce(Error) -> Error {
    move |e| e.with_operation(op).with_context("driver", "openstack")
}

/// A position in a server listing: the last server handed out, when it was created,
/// and the servers handed out that were created in the same second (so that a page
/// after a marker that vanished neither repeats nor loses a server).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Marker {
    id: String,
    created: Option<String>,
    same_second: Vec<String>,
}

impl Marker {
    fn parse(token: &PageToken) -> Option<Marker> {
        let mut parts = token.as_str().split('|');
        let id = parts.next().filter(|s| !s.is_empty())?.to_owned();
        let created = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        let same_second = parts
            .next()
            .map(|s| {
                s.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if parts.next().is_some() {
            return None;
        }
        Some(Marker {
            id,
            created,
            same_second,
        })
    }

    fn token(&self) -> PageToken {
        PageToken::new(format!(
            "{}|{}|{}",
            self.id,
            self.created.as_deref().unwrap_or(""),
            self.same_second.join(",")
        ))
    }

    /// Whether a server comes after this marker in Nova's order (created_at
    /// descending), judged without the marker itself.
    fn is_after(&self, s: &Server) -> bool {
        match (&self.created, &s.created) {
            (Some(mine), Some(theirs)) => {
                let (a, b) = (
                    model::parse_time(Some(mine)),
                    model::parse_time(Some(theirs)),
                );
                match (a, b) {
                    (Some(a), Some(b)) if b < a => true,
                    (Some(a), Some(b)) if b == a => {
                        s.id != self.id && !self.same_second.contains(&s.id)
                    }
                    _ => false,
                }
            }
            _ => true,
        }
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
    page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn owner_tag(owner: &str) -> String {
    format!("cms:owner:{}", short_hash(owner))
}

fn token_tag(token: &str) -> String {
    format!("cms:token:{}", short_hash(token))
}

/// The Nova tag a cms tag is mirrored as, when it fits Nova's rules.
fn mirror_tag(key: &str, value: &str) -> Option<String> {
    let t = format!("{key}={value}");
    (t.chars().count() <= MAX_NOVA_TAG && !t.contains(',') && !t.contains('/') && t.trim() == t)
        .then_some(t)
}

/// The Nova tags a server carries for its cms tags, owner and token.
fn nova_tags(tags: &Tags, owner: Option<&str>, token: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = tags.iter().filter_map(|(k, v)| mirror_tag(k, v)).collect();
    out.extend(owner.map(owner_tag));
    out.extend(token.map(token_tag));
    out.sort();
    out.dedup();
    out
}

fn request_hash(spec: &InstanceSpec) -> String {
    let json = serde_json::to_vec(&InstanceSpec {
        client_token: None,
        ..spec.clone()
    })
    .unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_meta_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:. ".contains(&b))
}

/// The model's tag rules, and Nova's: metadata keys of letters, digits and `-_:. `,
/// values of at most 255 characters, the `cms:` prefix reserved.
fn check_tags(tags: &Tags) -> Result<()> {
    cms_core::check_tags(tags)?;
    if tags.len() > MAX_USER_TAGS {
        return Err(Error::invalid_argument(
            "tags",
            format!(
                "{} tags given; OpenStack servers carry at most {MAX_USER_TAGS} \
                 (Nova's 50 tags, less the two the driver keeps)",
                tags.len()
            ),
        ));
    }
    for (k, v) in tags {
        check_tag_key(k)?;
        if v.chars().count() > MAX_META_VALUE {
            return Err(Error::invalid_argument(
                "tags",
                format!("the value of tag `{k}` is longer than {MAX_META_VALUE} characters (Nova's limit)"),
            )
            .with_context("tag", k.clone()));
        }
    }
    Ok(())
}

fn check_tag_key(k: &str) -> Result<()> {
    if k.starts_with(RESERVED_PREFIX) {
        return Err(Error::invalid_argument(
            "tags",
            format!("tag keys starting with `{RESERVED_PREFIX}` are reserved"),
        )
        .with_context("tag", k));
    }
    if !is_meta_key(k) {
        return Err(Error::invalid_argument(
            "tags",
            format!(
                "tag key `{k}` has characters Nova does not allow in metadata keys \
                 (letters, digits, `-`, `_`, `:`, `.` and space)"
            ),
        )
        .with_context("tag", k));
    }
    Ok(())
}

fn check_spec(spec: &InstanceSpec) -> Result<()> {
    cms_core::check_instance_spec(spec)?;
    check_tags(&spec.tags)?;
    if spec.name.chars().count() > MAX_NAME {
        return Err(Error::invalid_argument(
            "name",
            format!("is longer than {MAX_NAME} characters"),
        ));
    }
    if !spec.security_group_ids.is_empty() {
        return Err(Error::invalid_argument(
            "security_group_ids",
            "security groups are not supported by the OpenStack driver yet",
        ));
    }
    if !spec.volumes.is_empty() {
        return Err(Error::invalid_argument(
            "volumes",
            "volumes are not supported by the OpenStack driver yet",
        ));
    }
    if let Some(t) = &spec.client_token {
        if t.len() > MAX_META_VALUE {
            return Err(Error::invalid_argument(
                "client_token",
                format!("is longer than {MAX_META_VALUE} bytes"),
            ));
        }
    }
    Ok(())
}

/// A 400 Nova answers for a reference it cannot find ("Image X could not be found.",
/// "Invalid imageRef provided.") is the `NotFound` of that reference.
fn reference_not_found(e: Error, spec: &InstanceSpec) -> Error {
    if e.kind() != ErrorKind::InvalidArgument {
        return e;
    }
    let m = e.message().to_ascii_lowercase();
    let missing = m.contains("could not be found")
        || m.contains("can not find")
        || m.contains("cannot find")
        || m.contains("not found");
    let what = if m.contains("image") && (missing || m.contains("invalid imageref")) {
        Some(("image", spec.image_id.to_string()))
    } else if m.contains("flavor") && (missing || m.contains("invalid flavorref")) {
        Some(("flavor", spec.flavor_id.to_string()))
    } else if m.contains("network") && missing {
        Some((
            "network",
            spec.network_ids
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ))
    } else if m.contains("keypair") && m.contains("not found")
        || m.contains("key pair") && m.contains("not found")
    {
        Some(("key pair", spec.key_name.clone().unwrap_or_default()))
    } else if m.contains("availability zone") && (m.contains("invalid") || m.contains("not found"))
    {
        Some((
            "location",
            spec.location_id
                .as_ref()
                .map(|l| l.to_string())
                .unwrap_or_default(),
        ))
    } else {
        None
    };
    match what {
        Some((kind, id)) => {
            let mut n = Error::not_found(kind, id);
            for (k, v) in e.context() {
                n = n.with_context(k, v.clone());
            }
            n
        }
        None => e,
    }
}

impl OpenStackDriver {
    /// A driver for `config`: credentials resolved (variables read, clouds.yaml read)
    /// now; nothing is sent until the first operation.
    pub fn new(config: OpenStackConfig) -> Result<OpenStackDriver> {
        let resolved = config.resolve()?;
        OpenStackDriver::with_resolved(resolved)
    }

    /// A driver for settings already resolved (tests give credentials directly).
    pub fn with_resolved(resolved: crate::config::Resolved) -> Result<OpenStackDriver> {
        Ok(OpenStackDriver {
            inner: Arc::new(Inner {
                api: Api::new(resolved)?,
                capabilities: capabilities(),
                tokens: Mutex::new(HashMap::new()),
                token_locks: Locks::default(),
                tag_locks: Locks::default(),
                networks: RwLock::new(NetworkNames::default()),
                default_network: tokio::sync::OnceCell::new(),
                deleted: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                pending_count: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// The transport (for its negotiated microversion, say).
    pub fn api(&self) -> &Api {
        &self.inner.api
    }

    async fn read_version(&self) -> Result<(u32, u32)> {
        Ok(self
            .inner
            .api
            .compute_version()
            .await?
            .min(READ_MICROVERSION))
    }

    // ---- networks by name (Nova names a server's networks by name) ----

    async fn refresh_network_names(&self, force: bool) -> Result<()> {
        {
            let n = self
                .inner
                .networks
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(at) = n.read_at {
                if !force || at.elapsed() < NETWORK_NAMES_TTL {
                    return Ok(());
                }
            }
        }
        let mut by_name = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let mut call =
                Call::get(Service::Network, &["networks"]).query("limit", MAX_PAGE.to_string());
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let page: model::NeutronNetworks = self.inner.api.fetch(&call).await?;
            let more = has_next(&page.networks_links) && !page.networks.is_empty();
            marker = page.networks.last().map(|n| n.id.clone());
            for n in page.networks {
                by_name.entry(n.name).or_insert(n.id);
            }
            if !more {
                break;
            }
        }
        let mut n = self
            .inner
            .networks
            .write()
            .unwrap_or_else(|p| p.into_inner());
        n.by_name = by_name;
        n.read_at = Some(Instant::now());
        Ok(())
    }

    /// Makes sure every network the servers name is known by id, reading the names
    /// again (at most every few seconds) when one is not.
    async fn know_networks(&self, servers: &[Server]) -> Result<()> {
        let missing = {
            let n = self
                .inner
                .networks
                .read()
                .unwrap_or_else(|p| p.into_inner());
            n.read_at.is_none()
                || servers
                    .iter()
                    .flat_map(|s| s.addresses.keys())
                    .any(|name| !n.by_name.contains_key(name))
        };
        if missing {
            self.refresh_network_names(true).await?;
        }
        Ok(())
    }

    /// The id of the network a create names by id or name.
    async fn network_id(&self, text: &str) -> Result<String> {
        let call = Call::get(Service::Network, &["networks", text]);
        match self.inner.api.fetch::<model::OneNetwork>(&call).await {
            Ok(n) => return Ok(n.network.id),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.refresh_network_names(true).await?;
        let n = self
            .inner
            .networks
            .read()
            .unwrap_or_else(|p| p.into_inner());
        n.by_name
            .get(text)
            .cloned()
            .ok_or_else(|| Error::not_found("network", text))
    }

    async fn default_network(&self) -> Result<Option<String>> {
        self.inner
            .default_network
            .get_or_try_init(|| async {
                match &self.inner.api.resolved().network {
                    None => Ok(None),
                    Some(n) => self
                        .network_id(n)
                        .await
                        .map(Some)
                        .map_err(|e| e.with_context("argument", "network")),
                }
            })
            .await
            .cloned()
    }

    // ---- servers ----

    /// The cms view of a server (its networks known: see `know_networks`).
    pub fn instance_of(&self, s: &Server) -> Instance {
        let names = self
            .inner
            .networks
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut network_ids = Vec::new();
        let mut private_ips = Vec::new();
        let mut public_ips = Vec::new();
        for (name, addrs) in &s.addresses {
            if let Some(id) = names.by_name.get(name) {
                network_ids.push(NetworkId::new(id.clone()));
            }
            for a in addrs {
                if a.kind.as_deref() == Some("floating") {
                    public_ips.push(a.addr.clone());
                } else {
                    private_ips.push(a.addr.clone());
                }
            }
        }
        drop(names);
        let mut tags = Tags::new();
        for (k, v) in &s.metadata {
            if !k.starts_with(RESERVED_PREFIX) {
                tags.insert(k.clone(), v.clone());
            }
        }
        let flavor = s
            .flavor
            .id
            .clone()
            .or_else(|| s.flavor.original_name.clone());
        let i = Instance {
            id: InstanceId::new(s.id.clone()),
            name: s.name.clone(),
            state: model::map_state(&s.status, s.task_state.as_deref()),
            raw_state: model::raw_state(&s.status, s.task_state.as_deref()),
            image_id: s.image.id.clone().map(ImageId::new),
            flavor_id: flavor.map(FlavorId::new),
            location_id: s
                .availability_zone
                .clone()
                .filter(|z| !z.is_empty())
                .map(LocationId::new),
            network_ids,
            key_name: s.key_name.clone().filter(|k| !k.is_empty()),
            private_ips,
            public_ips,
            tags,
            created_at: model::parse_time(s.created.as_deref()),
            client_token: s.metadata.get(META_CLIENT_TOKEN).cloned(),
            owner: s.metadata.get(META_OWNER).cloned(),
            security_group_ids: Arc::from(Vec::new()),
            volumes: Vec::new(),
        };
        self.shown(&i);
        i
    }

    async fn server(&self, id: &str) -> Result<Server> {
        let v = self.read_version().await?;
        let call = Call::get(Service::Compute, &["servers", id]).microversion(v);
        let one: model::OneServer = self
            .inner
            .api
            .fetch(&call)
            .await
            .map_err(|e| not_found_as(e, "instance", id))?;
        Ok(one.server)
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        let s = match self.server(id).await {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return self.terminated(id).ok_or(e);
            }
            Err(e) => return Err(e),
        };
        self.know_networks(std::slice::from_ref(&s)).await?;
        Ok(self.instance_of(&s))
    }

    /// A server this driver deleted and Nova no longer knows, as terminated.
    fn terminated(&self, id: &str) -> Option<Instance> {
        let deleted = self.inner.deleted.lock().unwrap_or_else(|p| p.into_inner());
        let (at, i) = deleted.get(id)?;
        (at.elapsed() < DELETED_KEPT_FOR).then(|| Instance {
            state: cms_core::InstanceState::Terminated,
            raw_state: "DELETED".into(),
            ..i.clone()
        })
    }

    fn remember_deleted(&self, i: &Instance) {
        let mut deleted = self.inner.deleted.lock().unwrap_or_else(|p| p.into_inner());
        if deleted.len() >= DELETED_KEPT {
            deleted.retain(|_, (at, _)| at.elapsed() < DELETED_KEPT_FOR);
            if deleted.len() >= DELETED_KEPT {
                deleted.clear();
            }
        }
        deleted.insert(i.id.to_string(), (Instant::now(), i.clone()));
    }

    /// One page of `/servers/detail` from `marker`, narrowed as Nova can.
    async fn servers_page(
        &self,
        filter: &InstanceFilter,
        marker: Option<&str>,
        limit: usize,
        v: (u32, u32),
    ) -> Result<model::Servers> {
        // Nova's default order is created_at then its internal id, which it may break
        // differently from page to page across cells when servers share a second (its
        // timestamps have seconds only): the uuid makes the order total.
        let mut call = Call::get(Service::Compute, &["servers", "detail"])
            .microversion(v)
            .query("limit", limit.to_string())
            .query("sort_key", "created_at")
            .query("sort_dir", "desc")
            .query("sort_key", "uuid")
            .query("sort_dir", "desc");
        if let Some(m) = marker {
            call = call.query("marker", m.to_owned());
        }
        if let Some(status) = model::status_filter(&filter.states) {
            call = call.query("status", status);
        }
        if let Some(name) = &filter.name {
            call = call.query("name", format!("^{}$", regex_escape(name)));
        }
        if v >= TAGS_LIST {
            let mut tags: Vec<String> = filter
                .tags
                .iter()
                .filter_map(|(k, v)| v.as_ref().and_then(|v| mirror_tag(k, v)))
                .collect();
            tags.extend(filter.owner.as_deref().map(owner_tag));
            if !tags.is_empty() {
                call = call.query("tags", tags.join(","));
            }
        }
        self.inner.api.fetch(&call).await
    }

    async fn list_servers(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let op = Operation::ListInstances;
        if !filter.ids.is_empty() {
            return self.list_by_ids(filter, page).await;
        }
        let limit = page_limit(page);
        let v = self.read_version().await?;
        let mut after = match &page.token {
            None => None,
            Some(t) => Some(Marker::parse(t).ok_or_else(|| bad_token(op, t))?),
        };
        // Set when the marker vanished: the listing starts again from the top and
        // skips what came before it.
        let mut skipping: Option<Marker> = None;
        let mut items: Vec<Instance> = Vec::with_capacity(limit);
        let mut last: Option<Marker> = after.clone();
        let mut nova_marker: Option<String> = after.as_ref().map(|m| m.id.clone());
        loop {
            let answer = match self
                .servers_page(filter, nova_marker.as_deref(), limit, v)
                .await
            {
                Ok(a) => a,
                Err(e)
                    if e.kind() == ErrorKind::InvalidArgument
                        && e.message().contains("marker")
                        && after.as_ref().is_some_and(|m| m.created.is_some())
                        && skipping.is_none() =>
                {
                    tracing::debug!(target: "cms_driver_openstack", "page marker vanished: listing again from the start");
                    skipping = after.take();
                    nova_marker = None;
                    continue;
                }
                Err(e)
                    if e.kind() == ErrorKind::InvalidArgument
                        && e.message().contains("marker")
                        && skipping.is_none() =>
                {
                    let t = page
                        .token
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    return Err(bad_token(op, &PageToken::new(t)));
                }
                Err(e) => return Err(e),
            };
            let more = has_next(&answer.servers_links) && !answer.servers.is_empty();
            self.know_networks(&answer.servers).await?;
            let count = answer.servers.len();
            for (i, s) in answer.servers.iter().enumerate() {
                nova_marker = Some(s.id.clone());
                if let Some(skip) = &skipping {
                    if !skip.is_after(s) {
                        continue;
                    }
                }
                let inst = self.instance_of(s);
                // Track the position of the last server handed out.
                let same = match &last {
                    Some(m) if m.created.is_some() && m.created == s.created => {
                        let mut same = m.same_second.clone();
                        same.push(m.id.clone());
                        if same.len() > SAME_SECOND_KEPT {
                            same.clear();
                        }
                        same
                    }
                    _ => Vec::new(),
                };
                let here = Marker {
                    id: s.id.clone(),
                    created: s.created.clone(),
                    same_second: same,
                };
                if filter.matches(&inst) {
                    items.push(inst);
                    if items.len() == limit {
                        let rest = i + 1 < count || more;
                        let next = rest.then(|| here.token());
                        return Ok(Page { items, next });
                    }
                }
                last = Some(here);
            }
            if !more {
                return Ok(Page { items, next: None });
            }
        }
    }

    async fn list_by_ids(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let op = Operation::ListInstances;
        let mut ids: Vec<&str> = filter.ids.iter().map(|i| i.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let start = match &page.token {
            None => 0,
            Some(t) => t
                .as_str()
                .strip_prefix("ids:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= ids.len())
                .ok_or_else(|| bad_token(op, t))?,
        };
        let limit = page_limit(page);
        let end = (start + limit).min(ids.len());
        let wanted: Vec<String> = ids[start..end].iter().map(|s| (*s).to_owned()).collect();
        let found: Vec<Result<Server, Option<Instance>>> = stream::iter(wanted)
            .map(|id| async move {
                match self.server(&id).await {
                    Ok(s) => Ok(Ok(s)),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(Err(self.terminated(&id))),
                    Err(e) => Err(e),
                }
            })
            .buffered(PARALLEL_GETS)
            .try_collect()
            .await?;
        let servers: Vec<Server> = found
            .iter()
            .filter_map(|f| f.as_ref().ok())
            .cloned()
            .collect();
        self.know_networks(&servers).await?;
        let items = found
            .into_iter()
            .filter_map(|f| match f {
                Ok(s) => Some(self.instance_of(&s)),
                Err(gone) => gone,
            })
            .filter(|i| filter.matches(i))
            .collect();
        let next = (end < ids.len()).then(|| PageToken::new(format!("ids:{end}")));
        Ok(Page { items, next })
    }

    fn remember_token(&self, token: &str, id: &str) {
        let mut tokens = self.inner.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= TOKEN_CACHE {
            tokens.clear();
        }
        tokens.insert(token.to_owned(), id.to_owned());
    }

    /// The server (not being deleted) a create with this client token made.
    async fn find_by_token(&self, token: &str, v: (u32, u32)) -> Result<Option<Server>> {
        let live = |s: &Server| {
            s.metadata.get(META_CLIENT_TOKEN).map(String::as_str) == Some(token)
                && !matches!(
                    model::map_state(&s.status, s.task_state.as_deref()),
                    cms_core::InstanceState::Terminating | cms_core::InstanceState::Terminated
                )
        };
        let cached = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(id) = cached {
            match self.server(&id).await {
                Ok(s) if live(&s) => return Ok(Some(s)),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let read = v.min(READ_MICROVERSION);
        let mut marker: Option<String> = None;
        loop {
            let mut call = Call::get(Service::Compute, &["servers", "detail"])
                .microversion(read)
                .query("limit", MAX_PAGE.to_string());
            if read >= TAGS_LIST {
                call = call.query("tags", token_tag(token));
            }
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let page: model::Servers = self.inner.api.fetch(&call).await?;
            if let Some(s) = page.servers.iter().find(|s| live(s)) {
                self.remember_token(token, &s.id);
                return Ok(Some(s.clone()));
            }
            if !has_next(&page.servers_links) || page.servers.is_empty() {
                return Ok(None);
            }
            marker = page.servers.last().map(|s| s.id.clone());
        }
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        check_spec(spec)?;
        let v = self.inner.api.compute_version().await?;
        let _guard = match &spec.client_token {
            Some(t) => Some(self.inner.token_locks.lock(t).await),
            None => None,
        };
        let hash = request_hash(spec);
        if let Some(token) = &spec.client_token {
            if let Some(s) = self
                .find_by_token(token, v)
                .await
                .map_err(|e| e.not_executed(true))?
            {
                if s.metadata.get(META_REQUEST_HASH) != Some(&hash) {
                    return Err(Error::invalid_argument(
                        "client_token",
                        "was used for another request",
                    ));
                }
                self.know_networks(std::slice::from_ref(&s)).await?;
                return Ok(self.instance_of(&s));
            }
        }
        // The networks asked for: the spec's, else the configured default, else Nova's
        // choice (`auto` from 2.37; before, Nova's own without the key).
        let requested: Vec<NetworkId> = if !spec.network_ids.is_empty() {
            spec.network_ids.clone()
        } else {
            self.default_network()
                .await
                .map_err(|e| e.not_executed(true))?
                .map(NetworkId::new)
                .into_iter()
                .collect()
        };
        let networks: Value = if !requested.is_empty() {
            requested
                .iter()
                .map(|n| json!({"uuid": n.as_str()}))
                .collect()
        } else if v >= NETWORKS_AUTO {
            json!("auto")
        } else {
            Value::Null
        };
        let mut metadata: serde_json::Map<String, Value> = spec
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Some(o) = &spec.owner {
            metadata.insert(META_OWNER.into(), Value::String(o.clone()));
        }
        if let Some(t) = &spec.client_token {
            metadata.insert(META_CLIENT_TOKEN.into(), Value::String(t.clone()));
            metadata.insert(META_REQUEST_HASH.into(), Value::String(hash.clone()));
        }
        let name = if spec.name.is_empty() {
            format!(
                "cms-{}",
                &short_hash(&format!(
                    "{:?}{:?}",
                    std::time::SystemTime::now(),
                    spec.client_token
                ))[..8]
            )
        } else {
            spec.name.clone()
        };
        let mut server = serde_json::Map::new();
        server.insert("name".into(), json!(name));
        server.insert("imageRef".into(), json!(spec.image_id.as_str()));
        server.insert("flavorRef".into(), json!(spec.flavor_id.as_str()));
        if !networks.is_null() {
            server.insert("networks".into(), networks);
        }
        if let Some(k) = &spec.key_name {
            server.insert("key_name".into(), json!(k));
        }
        if let Some(u) = &spec.user_data {
            server.insert(
                "user_data".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(u.as_bytes())),
            );
        }
        if let Some(l) = &spec.location_id {
            server.insert("availability_zone".into(), json!(l.as_str()));
        }
        if !metadata.is_empty() {
            server.insert("metadata".into(), Value::Object(metadata));
        }
        if v >= TAGS_AT_CREATE {
            let tags = nova_tags(
                &spec.tags,
                spec.owner.as_deref(),
                spec.client_token.as_deref(),
            );
            if !tags.is_empty() {
                server.insert("tags".into(), json!(tags));
            }
        }
        let call = Call::new(Service::Compute, Method::POST, &["servers"])
            .microversion(v)
            .json(json!({ "server": server }));
        let created: model::Created = self.inner.api.fetch(&call).await.map_err(|e| {
            let e = reference_not_found(e, spec);
            // A refusal changed nothing: the create may be repeated.
            if matches!(
                e.kind(),
                ErrorKind::InvalidArgument
                    | ErrorKind::NotFound
                    | ErrorKind::QuotaExceeded
                    | ErrorKind::PermissionDenied
                    | ErrorKind::RateLimited
            ) {
                e.not_executed(true)
            } else {
                e
            }
        })?;
        let id = created.server.id;
        if let Some(t) = &spec.client_token {
            self.remember_token(t, &id);
        }
        // Below 2.52 the driver's Nova tags are set after the create.
        if v < TAGS_AT_CREATE && v >= TAGS_LIST {
            let tags = nova_tags(
                &spec.tags,
                spec.owner.as_deref(),
                spec.client_token.as_deref(),
            );
            if !tags.is_empty() {
                let call = Call::new(Service::Compute, Method::PUT, &["servers", &id, "tags"])
                    .microversion(v)
                    .json(json!({ "tags": tags }));
                self.inner.api.call(&call).await?;
            }
        }
        match self.get(&id).await {
            // Until Nova has wired it, a server shows no address: it is on the networks
            // it was asked for.
            Ok(mut i) if i.network_ids.is_empty() => {
                i.network_ids = requested;
                Ok(i)
            }
            Ok(i) => Ok(i),
            // Nova answered the create: the server exists even if a read fails now.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Instance {
                id: InstanceId::new(id),
                name,
                state: cms_core::InstanceState::Pending,
                raw_state: "BUILD".into(),
                image_id: Some(spec.image_id.clone()),
                flavor_id: Some(spec.flavor_id.clone()),
                location_id: spec.location_id.clone(),
                network_ids: requested,
                key_name: spec.key_name.clone(),
                private_ips: Vec::new(),
                public_ips: Vec::new(),
                tags: spec.tags.clone(),
                created_at: None,
                client_token: spec.client_token.clone(),
                owner: spec.owner.clone(),
                security_group_ids: Arc::from(Vec::new()),
                volumes: Vec::new(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The server once no task runs on it and it is built: Nova refuses metadata and
    /// tag changes before (409), where the model lets tags change in any state. Waits
    /// at most [`SETTLE_WAIT`]; a server being deleted is `InvalidState` at once.
    async fn settled(&self, id: &str) -> Result<Server> {
        let started = Instant::now();
        loop {
            let s = self.server(id).await?;
            let busy = s.vm_state.as_deref() == Some("building") || s.task_state.is_some();
            if matches!(
                s.task_state.as_deref(),
                Some("deleting") | Some("soft-deleting")
            ) {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    format!("instance {id} is being deleted"),
                ));
            }
            if !busy {
                return Ok(s);
            }
            if started.elapsed() >= SETTLE_WAIT {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    format!(
                        "instance {id} is still {}: Nova changes no tags until it settles",
                        model::raw_state(&s.status, s.task_state.as_deref())
                    ),
                )
                .temporary(true));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    async fn action(&self, id: &str, body: Value) -> Result<()> {
        let v = self.read_version().await?;
        let call = Call::new(Service::Compute, Method::POST, &["servers", id, "action"])
            .microversion(v)
            .json(body);
        self.inner
            .api
            .call(&call)
            .await
            .map(drop)
            .map_err(|e| not_found_as(e, "instance", id))
    }

    /// Starts or stops a server. A request repeated because its first answer was lost
    /// (the retry layer repeats actions) finds Nova busy with the task it started, or
    /// done with it: Nova refuses it (409), yet it is the same request, so the server
    /// is answered as it is. The driver tells a repeat from a new request by what it
    /// showed since: once a view showed the action's end (`Stopped` after a stop), the
    /// next stop is a new request and refused as Nova refuses it.
    async fn power(
        &self,
        id: &str,
        action: &str,
        task: &str,
        ends: cms_core::InstanceState,
    ) -> Result<Instance> {
        match self.action(id, json!({ action: null })).await {
            Ok(()) => {
                let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                if pending.len() > TOKEN_CACHE {
                    pending.retain(|_, (_, at)| at.elapsed() < PENDING_KEPT_FOR);
                }
                pending.insert(id.to_owned(), (ends, Instant::now()));
                self.inner
                    .pending_count
                    .store(pending.len(), std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::InvalidState => {
                let s = self.server(id).await?;
                let repeat = s.task_state.as_deref() == Some(task)
                    || (s.task_state.is_none()
                        && model::map_state(&s.status, None) == ends
                        && self
                            .inner
                            .pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(id)
                            .is_some_and(|(e, at)| *e == ends && at.elapsed() < PENDING_KEPT_FOR));
                if !repeat {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        self.get(id).await
    }

    /// A view is handed out: an action it shows the end of is no longer pending.
    fn shown(&self, i: &Instance) {
        if self
            .inner
            .pending_count
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            return;
        }
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending
            .get(i.id.as_str())
            .is_some_and(|(ends, _)| *ends == i.state)
        {
            pending.remove(i.id.as_str());
            self.inner
                .pending_count
                .store(pending.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn reboot(&self, id: &str) -> Result<Instance> {
        match self.action(id, json!({"reboot": {"type": "SOFT"}})).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::InvalidState => {
                // A soft reboot is refused in the error state; a hard one is not. One
                // already under way is the answer to a repeated request.
                let s = self.server(id).await?;
                if s.task_state
                    .as_deref()
                    .is_some_and(|t| t.starts_with("reboot"))
                {
                    return self.get(id).await;
                }
                if s.vm_state.as_deref() == Some("error") || s.status == "ERROR" {
                    self.action(id, json!({"reboot": {"type": "HARD"}})).await?;
                } else {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        self.get(id).await
    }

    async fn delete(&self, id: &str) -> Result<Instance> {
        let before = self.get(id).await?;
        let v = self.read_version().await?;
        let call = Call::new(Service::Compute, Method::DELETE, &["servers", id]).microversion(v);
        self.inner
            .api
            .call(&call)
            .await
            .map_err(|e| not_found_as(e, "instance", id))?;
        let status = before.raw_state.split('/').next().unwrap_or("").to_owned();
        let deleting = Instance {
            state: cms_core::InstanceState::Terminating,
            raw_state: model::raw_state(&status, Some("deleting")),
            ..before
        };
        self.remember_deleted(&deleting);
        Ok(deleting)
    }

    async fn update_tags(&self, id: &str, changes: &TagChanges) -> Result<Instance> {
        changes.check()?;
        for k in changes.keys() {
            check_tag_key(k)?;
        }
        let _guard = self.inner.tag_locks.lock(id).await;
        let s = self.settled(id).await?;
        let current: Tags = s
            .metadata
            .iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let wanted = changes.apply(&current)?;
        check_tags(&wanted)?;
        let v = self
            .inner
            .api
            .compute_version()
            .await?
            .min(READ_MICROVERSION);
        let set: serde_json::Map<String, Value> = changes
            .set
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if !set.is_empty() {
            let call = Call::new(Service::Compute, Method::POST, &["servers", id, "metadata"])
                .microversion(v)
                .json(json!({ "metadata": set }));
            self.inner
                .api
                .call(&call)
                .await
                .map_err(|e| not_found_as(e, "instance", id))?;
        }
        for k in &changes.remove {
            if !current.contains_key(k) {
                continue;
            }
            let call = Call::new(
                Service::Compute,
                Method::DELETE,
                &["servers", id, "metadata", k],
            )
            .microversion(v);
            match self.inner.api.call(&call).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if v >= TAGS_LIST {
            let mut tags: Vec<String> = s
                .tags
                .iter()
                .filter(|t| t.starts_with(RESERVED_PREFIX))
                .cloned()
                .collect();
            tags.extend(nova_tags(&wanted, None, None));
            // Tags set by other clients (not ours, not mirrors of metadata) stay.
            tags.extend(
                s.tags
                    .iter()
                    .filter(|t| {
                        !t.starts_with(RESERVED_PREFIX)
                            && !current
                                .iter()
                                .any(|(k, v)| mirror_tag(k, v).as_deref() == Some(t.as_str()))
                    })
                    .cloned(),
            );
            tags.sort();
            tags.dedup();
            tags.truncate(MAX_NOVA_TAGS);
            let call = Call::new(Service::Compute, Method::PUT, &["servers", id, "tags"])
                .microversion(v)
                .json(json!({ "tags": tags }));
            self.inner
                .api
                .call(&call)
                .await
                .map_err(|e| not_found_as(e, "instance", id))?;
        }
        self.get(id).await
    }

    // ---- images, flavors, networks, zones, key pairs ----

    fn image_of(g: &model::GlanceImage) -> Image {
        let tags = tags_of(&g.tags);
        Image {
            id: ImageId::new(g.id.clone()),
            name: g.name.clone(),
            description: g.description.clone(),
            kind: ImageKind::Disk,
            os: g.os_distro.clone(),
            architecture: g.architecture.clone(),
            state: model::image_state(&g.status),
            raw_state: g.status.clone(),
            min_disk_gib: g.min_disk.filter(|d| *d > 0),
            tags,
            shared: matches!(
                g.visibility.as_deref(),
                Some("public") | Some("shared") | Some("community")
            ),
            owner: None,
            source_instance_id: g.instance_uuid.clone().map(InstanceId::new),
            created_at: model::parse_time(g.created_at.as_deref()),
        }
    }

    async fn images_page(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        if !filter.ids.is_empty() {
            let mut items = Vec::new();
            for id in &filter.ids {
                match self.image(id.as_str()).await {
                    Ok(i) if filter.matches(&i) => items.push(i),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Page { items, next: None });
        }
        let limit = page_limit(page);
        let mut marker = page.token.as_ref().map(|t| t.as_str().to_owned());
        let mut items = Vec::new();
        loop {
            let mut call = Call::get(Service::Image, &["images"]).query("limit", limit.to_string());
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let answer: model::GlanceImages = self.inner.api.fetch(&call).await.map_err(|e| {
                if e.kind() == ErrorKind::InvalidArgument && page.token.is_some() {
                    bad_token(
                        Operation::ListImages,
                        page.token.as_ref().unwrap_or(&PageToken::new("")),
                    )
                } else {
                    e
                }
            })?;
            let more = answer.next.is_some() && !answer.images.is_empty();
            let count = answer.images.len();
            for (i, g) in answer.images.iter().enumerate() {
                marker = Some(g.id.clone());
                let image = Self::image_of(g);
                if filter.matches(&image) {
                    items.push(image);
                    if items.len() == limit {
                        let rest = i + 1 < count || more;
                        return Ok(Page {
                            items,
                            next: if rest {
                                marker.map(PageToken::new)
                            } else {
                                None
                            },
                        });
                    }
                }
            }
            if !more {
                return Ok(Page { items, next: None });
            }
        }
    }

    async fn image(&self, id: &str) -> Result<Image> {
        let call = Call::get(Service::Image, &["images", id]);
        let g: model::GlanceImage = self
            .inner
            .api
            .fetch(&call)
            .await
            .map_err(|e| not_found_as(e, "image", id))?;
        Ok(Self::image_of(&g))
    }

    async fn flavors_page(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        let limit = page_limit(page);
        let mut marker = page.token.as_ref().map(|t| t.as_str().to_owned());
        let mut items = Vec::new();
        let v = self.inner.api.compute_version().await?;
        loop {
            let mut call = Call::get(Service::Compute, &["flavors", "detail"])
                .microversion(v)
                .query("limit", (limit - items.len()).to_string());
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let answer: model::Flavors = self.inner.api.fetch(&call).await?;
            let more = has_next(&answer.flavors_links) && !answer.flavors.is_empty();
            for f in &answer.flavors {
                marker = Some(f.id.clone());
                items.push(Flavor {
                    id: FlavorId::new(f.id.clone()),
                    name: f.name.clone(),
                    vcpus: f.vcpus,
                    memory_mib: f.ram,
                    disk_gib: f.disk,
                });
            }
            if items.len() >= limit || !more {
                let next = if more {
                    marker.map(PageToken::new)
                } else {
                    None
                };
                return Ok(Page { items, next });
            }
        }
    }

    async fn subnets_of(
        &self,
        networks: &[model::NeutronNetwork],
    ) -> Result<HashMap<String, String>> {
        let mut cidrs = HashMap::new();
        for chunk in networks.chunks(40) {
            let mut call = Call::get(Service::Network, &["subnets"]);
            for n in chunk {
                call = call.query("network_id", n.id.clone());
            }
            let s: model::Subnets = self.inner.api.fetch(&call).await?;
            for subnet in s.subnets {
                // The first IPv4 subnet of a network is its range.
                if subnet.ip_version.unwrap_or(4) == 4 {
                    cidrs.entry(subnet.network_id).or_insert(subnet.cidr);
                }
            }
        }
        Ok(cidrs)
    }

    /// The cms views of Neutron networks: their ranges read in one call per 40, the
    /// configured default network looked up once.
    async fn networks_of(&self, found: &[model::NeutronNetwork]) -> Result<Vec<Network>> {
        let cidrs = self.subnets_of(found).await?;
        let default = self.default_network().await.ok().flatten();
        Ok(found
            .iter()
            .map(|n| Network {
                id: NetworkId::new(n.id.clone()),
                name: n.name.clone(),
                cidr: cidrs.get(&n.id).cloned(),
                location_id: n.availability_zones.first().cloned().map(LocationId::new),
                is_default: default.as_deref() == Some(n.id.as_str()) || n.is_default == Some(true),
                raw_state: n.status.clone(),
                tags: tags_of(&n.tags),
            })
            .collect())
    }

    async fn networks_page(&self, page: &PageRequest) -> Result<Page<Network>> {
        let limit = page_limit(page);
        let mut marker = page.token.as_ref().map(|t| t.as_str().to_owned());
        let mut found = Vec::new();
        let more = loop {
            let mut call = Call::get(Service::Network, &["networks"])
                .query("limit", (limit - found.len()).to_string());
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let answer: model::NeutronNetworks = self.inner.api.fetch(&call).await?;
            let more = has_next(&answer.networks_links) && !answer.networks.is_empty();
            if let Some(last) = answer.networks.last() {
                marker = Some(last.id.clone());
            }
            found.extend(answer.networks);
            if found.len() >= limit || !more {
                break more;
            }
        };
        Ok(Page {
            items: self.networks_of(&found).await?,
            next: if more {
                marker.map(PageToken::new)
            } else {
                None
            },
        })
    }

    async fn network(&self, id: &str) -> Result<Network> {
        let call = Call::get(Service::Network, &["networks", id]);
        let n: model::OneNetwork = self
            .inner
            .api
            .fetch(&call)
            .await
            .map_err(|e| not_found_as(e, "network", id))?;
        let mut one = self.networks_of(std::slice::from_ref(&n.network)).await?;
        Ok(one.remove(0))
    }

    async fn create_net(&self, spec: &NetworkSpec) -> Result<Network> {
        cms_core::check_network_spec(spec)?;
        let neutron_tags: Vec<String> = spec
            .tags
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if let Some(t) = neutron_tags
            .iter()
            .find(|t| t.len() > 255 || t.contains(',') || t.contains('/'))
        {
            return Err(Error::invalid_argument(
                "tags",
                format!("`{t}` does not fit Neutron's tag rules (at most 255 characters, no `,` or `/`)"),
            ));
        }
        let mut network = json!({"name": spec.name, "admin_state_up": true});
        if let Some(l) = &spec.location_id {
            network["availability_zone_hints"] = json!([l.as_str()]);
        }
        let call = Call::new(Service::Network, Method::POST, &["networks"])
            .json(json!({ "network": network }));
        let made: model::OneNetwork = self
            .inner
            .api
            .fetch(&call)
            .await
            .map_err(|e| e.not_executed(true))?;
        let id = made.network.id.clone();
        let undo = |e: Error| async move {
            let call = Call::new(Service::Network, Method::DELETE, &["networks", &id]);
            if let Err(d) = self.inner.api.call(&call).await {
                tracing::warn!(target: "cms_driver_openstack", network = %id, error = %d, "could not delete a network whose subnet failed");
            }
            e
        };
        let call = Call::new(Service::Network, Method::POST, &["subnets"]).json(json!({
            "subnet": {"network_id": made.network.id, "cidr": spec.cidr, "ip_version": 4, "name": spec.name}
        }));
        if let Err(e) = self.inner.api.call(&call).await {
            return Err(undo(e).await);
        }
        if !neutron_tags.is_empty() {
            let call = Call::new(
                Service::Network,
                Method::PUT,
                &["networks", &made.network.id, "tags"],
            )
            .json(json!({ "tags": neutron_tags }));
            if let Err(e) = self.inner.api.call(&call).await {
                return Err(undo(e).await);
            }
        }
        self.network(&made.network.id).await
    }

    async fn delete_net(&self, id: &str) -> Result<()> {
        let call = Call::new(Service::Network, Method::DELETE, &["networks", id]);
        self.inner
            .api
            .call(&call)
            .await
            .map(drop)
            .map_err(|e| not_found_as(e, "network", id))
    }

    async fn zones(&self) -> Result<Vec<Location>> {
        let v = self.inner.api.compute_version().await?;
        let call = Call::get(Service::Compute, &["os-availability-zone"]).microversion(v);
        let z: model::Zones = self.inner.api.fetch(&call).await?;
        let region = self.inner.api.resolved().region.clone();
        Ok(z.zones
            .into_iter()
            .filter(|z| z.name != "internal")
            .map(|z| Location {
                id: LocationId::new(z.name.clone()),
                name: z.name,
                region: region.clone(),
                available: z.state.available,
            })
            .collect())
    }

    async fn key_pairs(&self) -> Result<Vec<KeyPair>> {
        let v = self.inner.api.compute_version().await?;
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut call = Call::get(Service::Compute, &["os-keypairs"]).microversion(v);
            if v >= KEYPAIRS_PAGED {
                call = call.query("limit", MAX_PAGE.to_string());
                if let Some(m) = &marker {
                    call = call.query("marker", m.clone());
                }
            }
            let page: model::KeyPairs = self.inner.api.fetch(&call).await?;
            let more =
                v >= KEYPAIRS_PAGED && has_next(&page.keypairs_links) && !page.keypairs.is_empty();
            marker = page.keypairs.last().map(|k| k.keypair.name.clone());
            out.extend(page.keypairs.into_iter().map(|k| KeyPair {
                name: k.keypair.name,
                fingerprint: k.keypair.fingerprint,
                public_key: k.keypair.public_key,
                private_key: None,
            }));
            if !more {
                return Ok(out);
            }
        }
    }

    async fn create_key(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let v = self.inner.api.compute_version().await?;
        // Nova stopped generating keys at 2.92: the driver generates an ed25519 pair
        // and imports its public half, at every microversion alike.
        let (public, private) = match &spec.public_key {
            Some(p) => (p.trim().to_owned(), None),
            None => {
                let key = ssh_key::PrivateKey::random(
                    &mut ssh_key::rand_core::OsRng,
                    ssh_key::Algorithm::Ed25519,
                )
                .map_err(|e| Error::new(ErrorKind::Backend, format!("generating a key: {e}")))?;
                let public = key
                    .public_key()
                    .to_openssh()
                    .map_err(|e| Error::new(ErrorKind::Backend, format!("encoding a key: {e}")))?;
                let private = key
                    .to_openssh(ssh_key::LineEnding::LF)
                    .map_err(|e| Error::new(ErrorKind::Backend, format!("encoding a key: {e}")))?;
                (format!("{public} {}", spec.name), Some(private.to_string()))
            }
        };
        let mut keypair = json!({"name": spec.name, "public_key": public});
        if v >= KEYPAIR_TYPE {
            keypair["type"] = json!("ssh");
        }
        let call = Call::new(Service::Compute, Method::POST, &["os-keypairs"])
            .microversion(v)
            .json(json!({ "keypair": keypair }));
        let made: model::KeyPairEntry = self
            .inner
            .api
            .fetch(&call)
            .await
            .map_err(|e| e.not_executed(true))?;
        Ok(KeyPair {
            name: made.keypair.name,
            fingerprint: made.keypair.fingerprint,
            public_key: made.keypair.public_key.or(Some(public)),
            private_key: private,
        })
    }

    async fn delete_key(&self, name: &str) -> Result<()> {
        let v = self.inner.api.compute_version().await?;
        let call =
            Call::new(Service::Compute, Method::DELETE, &["os-keypairs", name]).microversion(v);
        self.inner
            .api
            .call(&call)
            .await
            .map(drop)
            .map_err(|e| not_found_as(e, "key pair", name))
    }

    async fn console(&self, id: &str) -> Result<ConsoleOutput> {
        let v = self.read_version().await?;
        let call = Call::new(Service::Compute, Method::POST, &["servers", id, "action"])
            .microversion(v)
            .json(json!({"os-getConsoleOutput": {"length": null}}));
        let out: model::ConsoleText = self
            .inner
            .api
            .fetch(&call)
            .await
            .map_err(|e| not_found_as(e, "instance", id))?;
        Ok(ConsoleOutput::latest(&out.output.unwrap_or_default(), None))
    }
}

/// A 404 names the resource asked for (its kind and id), keeping the backend's words.
fn not_found_as(e: Error, kind: &str, id: &str) -> Error {
    if e.kind() == ErrorKind::NotFound && e.resource().is_none() {
        e.with_resource(format!("{kind} {id}"))
    } else {
        e
    }
}

/// Glance and Neutron tags (plain strings) as cms tags: `key=value`, or a key alone
/// with an empty value.
fn tags_of(tags: &[String]) -> Tags {
    tags.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect()
}

/// Escapes a name for Nova's `name` filter (a regular expression).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$-/#&~ ".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Driver for OpenStackDriver {
    fn name(&self) -> &str {
        "openstack"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        self.list_servers(filter, page)
            .await
            .map_err(with_op(Operation::ListInstances))
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.get(id.as_str())
            .await
            .map_err(with_op(Operation::GetInstance))
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        self.create(spec)
            .await
            .map_err(with_op(Operation::CreateInstance))
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.power(
            id.as_str(),
            "os-start",
            "powering-on",
            cms_core::InstanceState::Running,
        )
        .await
        .map_err(with_op(Operation::StartInstance))
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.power(
            id.as_str(),
            "os-stop",
            "powering-off",
            cms_core::InstanceState::Stopped,
        )
        .await
        .map_err(with_op(Operation::StopInstance))
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.reboot(id.as_str())
            .await
            .map_err(with_op(Operation::RebootInstance))
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.delete(id.as_str())
            .await
            .map_err(with_op(Operation::DeleteInstance))
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        self.update_tags(id.as_str(), changes)
            .await
            .map_err(with_op(Operation::UpdateInstanceTags))
    }

    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        self.console(id.as_str())
            .await
            .map_err(with_op(Operation::GetConsoleOutput))
    }

    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        self.images_page(filter, page)
            .await
            .map_err(with_op(Operation::ListImages))
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        self.image(id.as_str())
            .await
            .map_err(with_op(Operation::GetImage))
    }

    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        self.flavors_page(page)
            .await
            .map_err(with_op(Operation::ListFlavors))
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        self.networks_page(page)
            .await
            .map_err(with_op(Operation::ListNetworks))
    }

    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        self.network(id.as_str())
            .await
            .map_err(with_op(Operation::GetNetwork))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        self.create_net(spec)
            .await
            .map_err(with_op(Operation::CreateNetwork))
    }

    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        self.delete_net(id.as_str())
            .await
            .map_err(with_op(Operation::DeleteNetwork))
    }

    async fn list_locations(&self) -> Result<Vec<Location>> {
        self.zones()
            .await
            .map_err(with_op(Operation::ListLocations))
    }

    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        self.key_pairs()
            .await
            .map_err(with_op(Operation::ListKeyPairs))
    }

    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        self.create_key(spec)
            .await
            .map_err(with_op(Operation::CreateKeyPair))
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.delete_key(name)
            .await
            .map_err(with_op(Operation::DeleteKeyPair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_judge_order() {
        let m = Marker {
            id: "b".into(),
            created: Some("2024-01-01T00:00:05Z".into()),
            same_second: vec!["a".into()],
        };
        assert_eq!(Marker::parse(&m.token()), Some(m));
        let m = Marker::parse(&PageToken::new("b|2024-01-01T00:00:05Z|a")).unwrap();
        let s = |id: &str, created: &str| -> Server {
            serde_json::from_value(json!({"id": id, "created": created})).unwrap()
        };
        assert!(!m.is_after(&s("c", "2024-01-01T00:00:06Z")));
        assert!(!m.is_after(&s("a", "2024-01-01T00:00:05Z")));
        assert!(!m.is_after(&s("b", "2024-01-01T00:00:05Z")));
        assert!(m.is_after(&s("d", "2024-01-01T00:00:05Z")));
        assert!(m.is_after(&s("e", "2024-01-01T00:00:04Z")));
        assert!(Marker::parse(&PageToken::new("")).is_none());
        assert!(Marker::parse(&PageToken::new("a|b|c|d")).is_none());
    }

    #[test]
    fn tags_mirror_only_when_they_fit() {
        assert_eq!(mirror_tag("env", "prod").as_deref(), Some("env=prod"));
        assert_eq!(mirror_tag("path", "a/b"), None);
        assert_eq!(mirror_tag("list", "a,b"), None);
        assert_eq!(mirror_tag("long", &"x".repeat(60)), None);
        let mut tags = Tags::new();
        tags.insert("env".into(), "prod".into());
        let t = nova_tags(&tags, Some("alice"), Some("tok"));
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|t| t.len() <= MAX_NOVA_TAG));
        assert!(check_tag_key("cms:x").is_err());
        assert!(check_tag_key("a/b").is_err());
        assert!(check_tag_key("Name").is_ok());
        assert_eq!(regex_escape("web.1"), "web\\.1");
    }
}
