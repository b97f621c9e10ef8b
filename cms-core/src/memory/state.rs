//! Everything of the memory cloud that changes, kept behind one lock.
//!
//! Instance states move with time without any background task: each instance stores
//! the transition it is in (from, to, and when it completes), and every read computes
//! the state at the moment of reading. Reads therefore never write, and a listing only
//! needs a read lock.
//!
//! Terminated instances stay visible for `terminated_retention`. Each delete records
//! the moment its instance expires in `expiries`, ordered by time; an expired instance
//! is invisible at once, and writes (and reads that notice an expiry is due) remove the
//! expired ones from the front of that queue. Each instance is removed once, so the
//! purge costs O(log n) per instance and never a scan of the whole store. Deleted
//! volumes leave the same way, through `volume_expiries`.
//!
//! The other families live in child modules, one per family (`volumes`, `snapshots`,
//! `images`, `groups`, `addresses`), each adding its methods to [`State`]; `family`
//! holds what they share: ids, the owner index and exact pages.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::ops::{Bound, Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::cidr::{AddressPool, Cidr};
use super::paging::{page_of, parse_token, token_after};
use super::{Catalogue, MemoryConfig};
use crate::model::*;
use crate::{Error, ErrorKind, Operation, Result};

mod addresses;
mod family;
mod groups;
mod images;
mod snapshots;
mod volumes;

use addresses::AddressRecord;
use family::Family;
use groups::GroupRecord;
use images::ImageRecord;
use snapshots::SnapshotRecord;
use volumes::VolumeRecord;

/// At most this many instances are looked at for one page of a filtered listing; when
/// it is reached the page is answered as it is (possibly short, even empty) with a
/// token to continue, as EC2 does. It keeps the cost of a page bounded.
pub(super) const SCAN_BUDGET: usize = 10_000;

/// `i-` and 16 hex digits of the instance's key: ids sort in creation order.
pub(super) fn instance_id(key: u64) -> String {
    format!("i-{key:016x}")
}

/// The counter behind an instance id; `None` for any id this cloud never makes.
pub(super) fn parse_instance_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("i-")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Keys of instances and networks, unique across restarts and across clouds.
///
/// A key is the time of the create in microseconds since 1970, shifted left by 8 bits,
/// with this cloud's random salt in those 8 bits; a create in the same microsecond as
/// the previous one takes the next free key (+256, the salt kept). So keys grow within
/// a cloud (listing in key order is listing in creation order), a restarted cloud never
/// hands out a key the previous one did (its clock has moved on), and two clouds started
/// at once (replicas, each with its own memory cloud) differ in the salt. A backend id
/// that comes back after a restart therefore always names the same instance.
#[derive(Debug)]
pub(super) struct KeyClock {
    salt: u64,
    last: u64,
}

impl KeyClock {
    pub(super) fn new() -> KeyClock {
        KeyClock {
            salt: u64::from(rand::random::<u8>()),
            last: 0,
        }
    }

    pub(super) fn next(&mut self) -> u64 {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let now = (micros << 8) | self.salt;
        self.last = now.max(self.last.saturating_add(256));
        self.last
    }
}

/// A state change that completes by itself: `from` until `at`, then `to`. Instances,
/// volumes and images move this way.
#[derive(Clone, Copy, Debug)]
struct Phase<S = InstanceState> {
    from: S,
    to: S,
    /// `None` when the delay is too long to represent: never completes.
    at: Option<Instant>,
}

impl<S: Copy> Phase<S> {
    fn begin(from: S, to: S, now: Instant, delay: Duration) -> Phase<S> {
        Phase {
            from,
            to,
            at: now.checked_add(delay),
        }
    }

    /// A state that stays.
    fn settled(state: S) -> Phase<S> {
        Phase {
            from: state,
            to: state,
            at: None,
        }
    }

    fn state(&self, now: Instant) -> S {
        match self.at {
            Some(at) if now >= at => self.to,
            _ => self.from,
        }
    }
}

/// An instance as stored: what cannot be derived at reading time.
#[derive(Debug)]
struct Stored {
    /// Kept formatted, as are the addresses: views clone rather than format.
    id: InstanceId,
    name: String,
    image_id: ImageId,
    flavor_id: FlavorId,
    location_id: LocationId,
    network_ids: Vec<NetworkId>,
    /// One private address per network, in the same order.
    addresses: Vec<u32>,
    private_ips: Vec<String>,
    key_name: Option<String>,
    /// Sorted by key; a vector takes far less room than a one-entry `BTreeMap`.
    tags: Vec<(String, String)>,
    created_at: DateTime<Utc>,
    client_token: Option<String>,
    owner: Option<String>,
    phase: Phase,
    /// When a deleted instance disappears.
    expires_at: Option<Instant>,
    /// The actions taken since the create, for the console (`None` until the first:
    /// most instances never have one, and a box costs them one word where a `Vec`
    /// would cost three).
    #[allow(clippy::box_collection)]
    history: Option<Box<Vec<Event>>>,
    /// Security groups named at creation, volumes, addresses (`None` for the many
    /// instances in their network's default group with neither: one word each).
    extras: Option<Box<Extras>>,
}

/// How many instances keep their shared views (see [`Kept`]) once the purge has run:
/// listing 100,000 instances leaves no more than this many behind.
pub(super) const VIEWS_KEPT: usize = 10_000;

/// A stored instance and the shared views it has handed out
/// ([`State::list_instances_shared`]): one for before its phase completes, one for
/// after, each made at the first listing that needs it and read without a lock. Any
/// mutable access (`DerefMut`) forgets them, so a view never outlives what it shows,
/// whichever method changed the instance; so does the purge, for all but the
/// [`VIEWS_KEPT`] instances viewed last.
#[derive(Debug)]
struct Kept {
    stored: Stored,
    views: [OnceLock<Arc<Instance>>; 2],
}

impl Kept {
    fn new(stored: Stored) -> Kept {
        Kept {
            stored,
            views: Default::default(),
        }
    }

    fn forget_views(&mut self) {
        self.views = Default::default();
    }

    /// Whether its view is shown from what it stores alone (and the static default
    /// group of its network): attached volumes and associated addresses change with
    /// their own families and with time, so such instances are viewed afresh.
    fn shareable(&self) -> bool {
        self.extras
            .as_ref()
            .is_none_or(|x| x.volumes.is_empty() && x.addresses.is_empty())
    }
}

impl Deref for Kept {
    type Target = Stored;

    fn deref(&self) -> &Stored {
        &self.stored
    }
}

impl DerefMut for Kept {
    fn deref_mut(&mut self) -> &mut Stored {
        self.forget_views();
        &mut self.stored
    }
}

/// What only some instances have.
#[derive(Debug, Default)]
struct Extras {
    /// The security groups named at creation; empty: the default group of the first
    /// network, looked up when the instance is shown. Shared with every view of the
    /// instance (a listing clones no list).
    groups: Arc<[SecurityGroupId]>,
    /// Volumes attached, being attached or being detached, in attach order. An entry
    /// whose volume has since been detached (a detach completes with time) is skipped
    /// when the instance is shown, and dropped at its next attach.
    volumes: Vec<VolumeId>,
    /// Addresses associated, in association order.
    addresses: Vec<AddressId>,
}

/// An action on an instance, as its console tells it.
#[derive(Debug)]
struct Event {
    action: InstanceAction,
    at: DateTime<Utc>,
    /// When the state it leads to is reached.
    done: DateTime<Utc>,
}

impl Stored {
    /// The console of the simulated instance: a line when it boots (and gets its SSH
    /// key), and one for each action asked and each state reached, up to `wall`.
    fn console(&self, boot_delay: Duration, wall: DateTime<Utc>) -> ConsoleOutput {
        let mut lines: Vec<(DateTime<Utc>, String)> = Vec::new();
        let id = &self.id;
        lines.push((
            self.created_at,
            format!(
                "{id} boots image {} on flavor {} in {}",
                self.image_id, self.flavor_id, self.location_id
            ),
        ));
        if self.key_name.is_some() {
            lines.push((
                self.created_at,
                "an SSH public key is installed for the default user".into(),
            ));
        }
        let after = |t: DateTime<Utc>, d: Duration| {
            t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
        };
        let events = self.history.as_deref().map(Vec::as_slice).unwrap_or(&[]);
        // A state is reached unless the next action came first.
        let reached = |done: DateTime<Utc>, next: Option<&Event>| {
            done <= wall && next.is_none_or(|n| done <= n.at)
        };
        let boot_done = after(self.created_at, boot_delay);
        if reached(boot_done, events.first()) {
            lines.push((boot_done, format!("{id} is running")));
        }
        for (i, e) in events.iter().enumerate() {
            let (asked, state) = match e.action {
                InstanceAction::Start => ("start", "running"),
                InstanceAction::Stop => ("stop", "stopped"),
                InstanceAction::Reboot => ("reboot", "running"),
                InstanceAction::Delete => ("shutdown", "terminated"),
            };
            lines.push((e.at, format!("{asked} requested")));
            if reached(e.done, events.get(i + 1)) {
                lines.push((e.done, format!("{id} is {state}")));
            }
        }
        lines.retain(|(t, _)| *t <= wall);
        let updated_at = lines.last().map(|(t, _)| *t);
        let mut text = String::new();
        for (t, line) in &lines {
            text.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            text.push_str(" cms memory cloud: ");
            text.push_str(line);
            text.push('\n');
        }
        ConsoleOutput::latest(&text, updated_at)
    }

    fn visible(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    /// What the instance shows without looking elsewhere: [`State::view`] adds its
    /// security groups, volumes and public addresses.
    fn view(&self, now: Instant) -> Instance {
        let state = self.phase.state(now);
        Instance {
            id: self.id.clone(),
            name: self.name.clone(),
            state,
            raw_state: state.as_str().to_owned(),
            image_id: Some(self.image_id.clone()),
            flavor_id: Some(self.flavor_id.clone()),
            location_id: Some(self.location_id.clone()),
            network_ids: self.network_ids.clone(),
            key_name: self.key_name.clone(),
            private_ips: self.private_ips.clone(),
            public_ips: Vec::new(),
            tags: self.tags.iter().cloned().collect(),
            created_at: Some(self.created_at),
            client_token: self.client_token.clone(),
            owner: self.owner.clone(),
            security_group_ids: Arc::default(),
            volumes: Vec::new(),
        }
    }

    /// Whether the stored instance passes `filter`, ids aside (the listing takes the
    /// candidates by id): states, name, owner and tags, with no allocation.
    fn may_match(&self, filter: &InstanceFilter, state: InstanceState) -> bool {
        (filter.states.is_empty() || filter.states.contains(&state))
            && filter.name.as_ref().is_none_or(|n| *n == self.name)
            && filter
                .owner
                .as_ref()
                .is_none_or(|o| self.owner.as_ref() == Some(o))
            && filter.tags.iter().all(|(k, want)| {
                match self.tags.binary_search_by(|(have, _)| have.as_str().cmp(k)) {
                    Ok(i) => want.as_ref().is_none_or(|w| *w == self.tags[i].1),
                    Err(_) => false,
                }
            })
    }
}

/// A request that created an instance with a client token.
#[derive(Debug)]
struct TokenEntry {
    key: u64,
    spec: InstanceSpec,
}

/// A network and the bookkeeping of its addresses and instances.
#[derive(Debug)]
pub(super) struct NetRecord {
    network: Network,
    pool: AddressPool,
    /// Stored instances attached to it (terminated ones included until purged).
    members: HashSet<u64>,
    /// Its default security group, made with it.
    default_group: SecurityGroupId,
    /// The same, as the list an instance in it shows (shared by all of them).
    default_groups: Arc<[SecurityGroupId]>,
}

#[derive(Debug)]
pub(super) struct State {
    config: MemoryConfig,
    // Boxed: map nodes stay small and full, which halves the memory per instance.
    instances: BTreeMap<u64, Box<Kept>>,
    instance_keys: KeyClock,
    /// The keys of each owner's instances: an owner's listing costs the same however
    /// many instances others have.
    by_owner: HashMap<String, BTreeSet<u64>>,
    tokens: HashMap<String, TokenEntry>,
    /// (when it disappears, instance) for every deleted instance still stored.
    expiries: BTreeSet<(Instant, u64)>,
    networks: BTreeMap<String, NetRecord>,
    network_keys: KeyClock,
    key_pairs: BTreeMap<String, KeyPair>,
    volumes: Family<VolumeId, VolumeRecord>,
    /// Client token -> the volume it made and the request.
    volume_tokens: HashMap<String, (VolumeId, VolumeSpec)>,
    /// (when it disappears, volume) for every deleted volume still stored.
    volume_expiries: BTreeSet<(Instant, VolumeId)>,
    snapshots: Family<SnapshotId, SnapshotRecord>,
    /// Captured images (the catalogue's are in [`Catalogue`]).
    images: Family<ImageId, ImageRecord>,
    groups: Family<SecurityGroupId, GroupRecord>,
    addresses: Family<AddressId, AddressRecord>,
    /// Free public addresses.
    public_pool: AddressPool,
    /// The instances that made a shared view, oldest first (an instance may be in it
    /// twice); the purge keeps the last [`VIEWS_KEPT`].
    viewed: Mutex<VecDeque<u64>>,
    /// Its length, read without the lock.
    viewed_count: AtomicUsize,
}

impl State {
    pub(super) fn new(config: MemoryConfig) -> State {
        let (network, cidr) = super::catalogue::default_network();
        let mut state = State {
            config,
            instances: BTreeMap::new(),
            instance_keys: KeyClock::new(),
            by_owner: HashMap::new(),
            tokens: HashMap::new(),
            expiries: BTreeSet::new(),
            networks: BTreeMap::new(),
            network_keys: KeyClock::new(),
            key_pairs: BTreeMap::new(),
            volumes: Family::new("vol-"),
            volume_tokens: HashMap::new(),
            volume_expiries: BTreeSet::new(),
            snapshots: Family::new("snap-"),
            images: Family::new("img-"),
            groups: Family::new("sg-"),
            addresses: Family::new("eipalloc-"),
            public_pool: super::catalogue::public_addresses().pool(),
            viewed: Mutex::new(VecDeque::new()),
            viewed_count: AtomicUsize::new(0),
        };
        state.insert_network(network, cidr);
        state
    }

    /// Stores a network with its default security group.
    fn insert_network(&mut self, network: Network, cidr: Cidr) {
        let default_group = self.make_default_group(&network.id);
        self.networks.insert(
            network.id.to_string(),
            NetRecord {
                network,
                pool: cidr.pool(),
                members: HashSet::new(),
                default_groups: Arc::from([default_group.clone()]),
                default_group,
            },
        );
    }

    // ---- purge ----

    /// Whether an expired instance or a deleted volume waits to be removed, or more
    /// than [`VIEWS_KEPT`] instances keep views.
    pub(super) fn needs_purge(&self, now: Instant) -> bool {
        self.viewed_count.load(Ordering::Relaxed) > VIEWS_KEPT
            || self.expiries.first().is_some_and(|(at, _)| *at <= now)
            || self
                .volume_expiries
                .first()
                .is_some_and(|(at, _)| *at <= now)
    }

    /// Removes the instances whose retention is over and the volumes deleted, and the
    /// views of all but the instances viewed last.
    pub(super) fn purge(&mut self, now: Instant) {
        let viewed = self.viewed.get_mut().unwrap_or_else(|p| p.into_inner());
        while viewed.len() > VIEWS_KEPT {
            if let Some(k) = viewed.pop_front().and_then(|k| self.instances.get_mut(&k)) {
                k.forget_views();
            }
        }
        *self.viewed_count.get_mut() = viewed.len();
        while let Some(&(at, key)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            self.remove_instance(key);
        }
        while self
            .volume_expiries
            .first()
            .is_some_and(|(at, _)| *at <= now)
        {
            if let Some((_, id)) = self.volume_expiries.pop_first() {
                self.remove_volume(&id);
            }
        }
    }

    fn remove_instance(&mut self, key: u64) {
        let Some(s) = self.instances.remove(&key) else {
            return;
        };
        if let Some(t) = &s.client_token {
            if self.tokens.get(t).is_some_and(|e| e.key == key) {
                self.tokens.remove(t);
            }
        }
        if let Some(o) = &s.owner {
            if let Some(keys) = self.by_owner.get_mut(o) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.by_owner.remove(o);
                }
            }
        }
        for (net, addr) in s.network_ids.iter().zip(&s.addresses) {
            if let Some(n) = self.networks.get_mut(net.as_str()) {
                n.members.remove(&key);
                n.pool.give_back(*addr);
            }
        }
        if let Some(x) = &s.extras {
            for g in x.groups.iter() {
                if let Some(r) = self.groups.get_mut(g) {
                    r.members.remove(&key);
                }
            }
        }
    }

    /// An instance as shown: what it stores, and its security groups, volumes and
    /// public addresses. An instance with no extras costs one lookup of its first
    /// network (for the default group) more than it did before those families.
    fn view(&self, s: &Stored, now: Instant) -> Instance {
        let mut i = s.view(now);
        i.security_group_ids = match &s.extras {
            Some(x) if !x.groups.is_empty() => x.groups.clone(),
            _ => s
                .network_ids
                .first()
                .and_then(|n| self.networks.get(n.as_str()))
                .map(|r| r.default_groups.clone())
                .unwrap_or_default(),
        };
        if let Some(x) = &s.extras {
            i.volumes = x
                .volumes
                .iter()
                .filter_map(|v| self.instance_volume(v, &s.id, now))
                .collect();
            i.public_ips = x
                .addresses
                .iter()
                .filter_map(|a| self.addresses.get(a).map(|r| r.address.ip.clone()))
                .collect();
        }
        i
    }

    /// The view of the stored instance of `key`.
    fn view_key(&self, key: u64, now: Instant) -> Option<Instance> {
        self.instances.get(&key).map(|s| self.view(s, now))
    }

    /// The key of a visible instance.
    fn visible_instance(&self, id: &InstanceId, now: Instant) -> Option<u64> {
        parse_instance_id(id.as_str())
            .filter(|k| self.instances.get(k).is_some_and(|s| s.visible(now)))
    }

    /// Instances stored, terminated ones still visible included.
    pub(super) fn instance_count(&self) -> usize {
        self.instances.len()
    }

    // ---- instances ----

    pub(super) fn console_output(&self, id: &InstanceId, now: Instant) -> Result<ConsoleOutput> {
        parse_instance_id(id.as_str())
            .and_then(|key| self.instances.get(&key))
            .filter(|s| s.visible(now))
            .map(|s| s.console(self.config.boot_delay, Utc::now()))
            .ok_or_else(|| {
                Error::not_found("instance", id).with_operation(Operation::GetConsoleOutput)
            })
    }

    pub(super) fn get_instance(&self, id: &InstanceId, now: Instant) -> Result<Instance> {
        parse_instance_id(id.as_str())
            .and_then(|key| self.instances.get(&key))
            .filter(|s| s.visible(now))
            .map(|s| self.view(s, now))
            .ok_or_else(|| Error::not_found("instance", id).with_operation(Operation::GetInstance))
    }

    /// One page in id order. Unfiltered, a page costs O(log n + page); filtered, it
    /// looks at no more than [`SCAN_BUDGET`] instances.
    pub(super) fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
        limit: usize,
        now: Instant,
    ) -> Result<Page<Instance>> {
        self.page_of_instances(filter, page, limit, now, |_, s| self.view(s, now))
    }

    /// [`list_instances`](State::list_instances) with views shared between listings:
    /// an instance's view is made once per phase and handed out until the instance
    /// changes (see [`Kept`]).
    pub(super) fn list_instances_shared(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
        limit: usize,
        now: Instant,
    ) -> Result<Page<Arc<Instance>>> {
        self.page_of_instances(filter, page, limit, now, |key, s| {
            if !s.shareable() {
                return Arc::new(self.view(s, now));
            }
            let after = s.phase.at.is_some_and(|at| now >= at);
            let slot = &s.views[usize::from(after)];
            if let Some(view) = slot.get() {
                return view.clone();
            }
            let mut made = false;
            let view = slot
                .get_or_init(|| {
                    made = true;
                    Arc::new(self.view(s, now))
                })
                .clone();
            if made {
                // Remembered, so that the purge can let go of the oldest views.
                self.viewed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(key);
                self.viewed_count.fetch_add(1, Ordering::Relaxed);
            }
            view
        })
    }

    fn page_of_instances<T>(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
        limit: usize,
        now: Instant,
        view: impl Fn(u64, &Kept) -> T,
    ) -> Result<Page<T>> {
        let after = parse_token(
            page.token.as_ref(),
            Operation::ListInstances,
            parse_instance_id,
        )?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let candidates: Box<dyn Iterator<Item = (u64, &Kept)> + '_> = if !filter.ids.is_empty() {
            self.by_ids(filter, after)
        } else if let Some(owner) = &filter.owner {
            // The owner's index: the page costs what the owner has, not what all have.
            match self.by_owner.get(owner) {
                Some(keys) => Box::new(
                    keys.range((lower, Bound::Unbounded))
                        .filter_map(|k| self.instances.get(k).map(|s| (*k, &**s))),
                ),
                None => Box::new(std::iter::empty()),
            }
        } else {
            Box::new(
                self.instances
                    .range((lower, Bound::Unbounded))
                    .map(|(k, s)| (*k, &**s)),
            )
        };

        let budget = SCAN_BUDGET.max(limit + 1);
        let mut items = Vec::with_capacity(limit.min(self.instances.len()));
        let mut last_scanned = None;
        let mut last_returned = None;
        let mut next = None;
        for (scanned, (key, s)) in candidates.enumerate() {
            if scanned == budget {
                // More remain but this page has looked far enough.
                next = if items.len() == limit {
                    last_returned
                } else {
                    last_scanned
                };
                break;
            }
            if !s.visible(now) {
                last_scanned = Some(key);
                continue;
            }
            let state = s.phase.state(now);
            // `may_match` checks everything of the filter but the ids, which chose the
            // candidates: no view is made of an instance that does not match.
            let view = s.may_match(filter, state).then(|| view(key, s));
            let Some(view) = view else {
                last_scanned = Some(key);
                continue;
            };
            if items.len() == limit {
                // One more match exists: the page is full and not the last.
                next = last_returned;
                break;
            }
            items.push(view);
            last_returned = Some(key);
            last_scanned = Some(key);
        }
        Ok(Page {
            items,
            next: next.map(|k| token_after(instance_id(k))),
        })
    }

    /// The stored instances of a filter's ids after `after`, in key order (ids this
    /// cloud could not have made match nothing).
    fn by_ids<'s>(
        &'s self,
        filter: &InstanceFilter,
        after: Option<u64>,
    ) -> Box<dyn Iterator<Item = (u64, &'s Kept)> + 's> {
        let mut keys: Vec<u64> = filter
            .ids
            .iter()
            .filter_map(|id| parse_instance_id(id.as_str()))
            .filter(|k| after.is_none_or(|a| *k > a))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Box::new(
            keys.into_iter()
                .filter_map(|k| self.instances.get(&k).map(|s| (k, &**s))),
        )
    }

    pub(super) fn create_instance(
        &mut self,
        spec: &InstanceSpec,
        catalogue: &Catalogue,
        now: Instant,
        created_at: DateTime<Utc>,
    ) -> Result<Instance> {
        let op = Operation::CreateInstance;
        self.purge(now);

        // The token check and the insert below happen under the same lock.
        if let Some(token) = &spec.client_token {
            if let Some(entry) = self.tokens.get(token) {
                let id = instance_id(entry.key);
                if !entry.spec.same_request(spec) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "client token `{token}` was already used to create instance \
                             `{id}` with different parameters; repeat that request \
                             unchanged, or use a new client token for a new instance"
                        ),
                    )
                    .with_operation(op)
                    .with_resource(format!("instance {id}"))
                    .with_context("argument", "client_token")
                    .with_context("reason", "idempotent_parameter_mismatch"));
                }
                if let Some(view) = self.view_key(entry.key, now) {
                    return Ok(view);
                }
            }
        }

        let min_disk_gib = self.launchable_image(&spec.image_id, catalogue, now)?;
        let flavor = catalogue
            .flavors
            .get(spec.flavor_id.as_str())
            .ok_or_else(|| Error::not_found("flavor", &spec.flavor_id).with_operation(op))?;
        if let (Some(need), Some(have)) = (min_disk_gib, flavor.disk_gib) {
            if have < need {
                return Err(Error::invalid_argument(
                    "flavor_id",
                    format!(
                        "flavor `{}` has a {have} GiB disk, image `{}` needs at least {need} GiB",
                        flavor.id, spec.image_id
                    ),
                )
                .with_operation(op));
            }
        }
        if let Some(k) = &spec.key_name {
            if !self.key_pairs.contains_key(k) {
                return Err(Error::not_found("key pair", k).with_operation(op));
            }
        }

        let network_ids = self.networks_for(spec)?;
        let location_id = match &spec.location_id {
            Some(l) => {
                let loc = catalogue
                    .locations
                    .iter()
                    .find(|x| x.id == *l)
                    .ok_or_else(|| Error::not_found("location", l).with_operation(op))?;
                if !loc.available {
                    return Err(Error::new(
                        ErrorKind::InvalidState,
                        format!("location `{l}` does not accept new instances"),
                    )
                    .with_operation(op)
                    .with_resource(format!("location {l}")));
                }
                l.clone()
            }
            None => network_ids
                .iter()
                .find_map(|n| self.networks.get(n.as_str())?.network.location_id.clone())
                .or_else(|| catalogue.locations.first().map(|l| l.id.clone()))
                .ok_or_else(|| {
                    Error::new(ErrorKind::Unavailable, "the cloud has no location")
                        .with_operation(op)
                })?,
        };
        for n in &network_ids {
            if let Some(at) = self
                .networks
                .get(n.as_str())
                .and_then(|r| r.network.location_id.as_ref())
            {
                if *at != location_id {
                    return Err(Error::invalid_argument(
                        "network_ids",
                        format!("network `{n}` is in location `{at}`, not in `{location_id}`"),
                    )
                    .with_operation(op));
                }
            }
        }
        let groups = self.groups_for(spec, &network_ids)?;
        let block_devices = self.plan_block_devices(spec, now)?;

        // Everything is valid: take addresses (giving them back if one network is full).
        let mut addresses = Vec::with_capacity(network_ids.len());
        for n in &network_ids {
            let taken = self
                .networks
                .get_mut(n.as_str())
                .and_then(|r| r.pool.take());
            let Some(a) = taken else {
                for (n, a) in network_ids.iter().zip(&addresses) {
                    if let Some(r) = self.networks.get_mut(n.as_str()) {
                        r.pool.give_back(*a);
                    }
                }
                let cidr = self
                    .networks
                    .get(n.as_str())
                    .and_then(|r| r.network.cidr.clone())
                    .unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::QuotaExceeded,
                    format!(
                        "network `{n}` ({cidr}) has no free private address left; \
                         delete instances or use another network"
                    ),
                )
                .with_operation(op)
                .with_resource(format!("network {n}"))
                .with_context("reason", "insufficient_free_addresses"));
            };
            addresses.push(a);
        }

        let key = self.instance_keys.next();
        for n in &network_ids {
            if let Some(r) = self.networks.get_mut(n.as_str()) {
                r.members.insert(key);
            }
        }
        if let Some(token) = &spec.client_token {
            self.tokens.insert(
                token.clone(),
                TokenEntry {
                    key,
                    spec: spec.clone(),
                },
            );
        }
        let stored = Stored {
            id: InstanceId::new(instance_id(key)),
            name: spec.name.clone(),
            image_id: spec.image_id.clone(),
            flavor_id: spec.flavor_id.clone(),
            location_id,
            network_ids,
            private_ips: addresses
                .iter()
                .map(|a| Ipv4Addr::from(*a).to_string())
                .collect(),
            addresses,
            key_name: spec.key_name.clone(),
            tags: spec
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_at,
            client_token: spec.client_token.clone(),
            owner: spec.owner.clone(),
            phase: Phase::begin(
                InstanceState::Pending,
                InstanceState::Running,
                now,
                self.config.boot_delay,
            ),
            expires_at: None,
            history: None,
            extras: None,
        };
        if let Some(o) = &spec.owner {
            self.by_owner.entry(o.clone()).or_default().insert(key);
        }
        let id = stored.id.clone();
        let location_id = stored.location_id.clone();
        self.instances.insert(key, Box::new(Kept::new(stored)));
        for g in &groups {
            if let Some(r) = self.groups.get_mut(g) {
                r.members.insert(key);
            }
        }
        let volumes = self.make_block_devices(
            block_devices,
            &id,
            &location_id,
            spec.owner.as_ref(),
            now,
            created_at,
        );
        if !groups.is_empty() || !volumes.is_empty() {
            if let Some(s) = self.instances.get_mut(&key) {
                s.extras = Some(Box::new(Extras {
                    groups: groups.into(),
                    volumes,
                    addresses: Vec::new(),
                }));
            }
        }
        self.view_key(key, now)
            .ok_or_else(|| Error::not_found("instance", &id).with_operation(op))
    }

    /// The extras of a stored instance, made when it has none yet.
    fn extras_mut(&mut self, key: u64) -> Option<&mut Extras> {
        let s = self.instances.get_mut(&key)?;
        Some(s.extras.get_or_insert_with(Default::default))
    }

    /// The networks a create attaches to: those named (each once, each known), or the
    /// default network.
    fn networks_for(&self, spec: &InstanceSpec) -> Result<Vec<NetworkId>> {
        let op = Operation::CreateInstance;
        if spec.network_ids.is_empty() {
            return self
                .networks
                .values()
                .find(|r| r.network.is_default)
                .map(|r| vec![r.network.id.clone()])
                .ok_or_else(|| {
                    Error::invalid_argument(
                        "network_ids",
                        "none given and the cloud has no default network; name a network",
                    )
                    .with_operation(op)
                });
        }
        let mut seen = HashSet::new();
        for n in &spec.network_ids {
            if !seen.insert(n) {
                return Err(Error::invalid_argument(
                    "network_ids",
                    format!("network `{n}` is named more than once"),
                )
                .with_operation(op));
            }
            if !self.networks.contains_key(n.as_str()) {
                return Err(Error::not_found("network", n).with_operation(op));
            }
        }
        Ok(spec.network_ids.clone())
    }

    /// Starts, stops, reboots or deletes an instance, when its current state allows.
    pub(super) fn act(
        &mut self,
        id: &InstanceId,
        action: InstanceAction,
        now: Instant,
    ) -> Result<Instance> {
        use InstanceState::{
            Pending, Rebooting, Running, Stopped, Stopping, Terminated, Terminating,
        };
        let op = action.operation();
        self.purge(now);
        let key = parse_instance_id(id.as_str())
            .filter(|k| self.instances.get(k).is_some_and(|s| s.visible(now)))
            .ok_or_else(|| Error::not_found("instance", id).with_operation(op))?;
        let cfg = &self.config;
        let Some(s) = self.instances.get_mut(&key) else {
            return Err(Error::not_found("instance", id).with_operation(op));
        };
        let current = s.phase.state(now);
        let delay = match action {
            InstanceAction::Start => cfg.start_delay,
            InstanceAction::Stop => cfg.stop_delay,
            InstanceAction::Reboot => cfg.reboot_delay,
            InstanceAction::Delete => cfg.terminate_delay,
        };
        let phase = match action.decide(current) {
            // Repeating an action under way answers the instance as it is (as EC2
            // does), so a caller that lost the answer may safely try again.
            ActionDecision::AsIs => {
                return self
                    .view_key(key, now)
                    .ok_or_else(|| Error::not_found("instance", id).with_operation(op))
            }
            ActionDecision::Refuse(hint) => return Err(action.refusal(id, current, hint)),
            ActionDecision::Proceed => match action {
                InstanceAction::Start => Phase::begin(Pending, Running, now, cfg.start_delay),
                InstanceAction::Stop => Phase::begin(Stopping, Stopped, now, cfg.stop_delay),
                InstanceAction::Reboot => Phase::begin(Rebooting, Running, now, cfg.reboot_delay),
                InstanceAction::Delete => {
                    Phase::begin(Terminating, Terminated, now, cfg.terminate_delay)
                }
            },
        };
        s.phase = phase;
        let at = Utc::now();
        s.history.get_or_insert_default().push(Event {
            action,
            at,
            done: at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
        });
        if action == InstanceAction::Delete {
            s.expires_at = phase
                .at
                .and_then(|at| at.checked_add(cfg.terminated_retention));
            if let Some(e) = s.expires_at {
                self.expiries.insert((e, key));
            }
            // What it holds is let go: volumes when it is terminated, addresses now.
            if let Some(x) = &mut s.extras {
                let volumes = x.volumes.clone();
                let addresses = std::mem::take(&mut x.addresses);
                let instance = s.id.clone();
                self.release_volumes(&instance, &volumes, phase.at, now);
                self.release_addresses(&addresses);
            }
        }
        self.view_key(key, now)
            .ok_or_else(|| Error::not_found("instance", id).with_operation(op))
    }

    /// Sets and removes tags of a visible instance (the change already checked).
    pub(super) fn update_tags(
        &mut self,
        id: &InstanceId,
        changes: &TagChanges,
        now: Instant,
    ) -> Result<Instance> {
        let op = Operation::UpdateInstanceTags;
        self.purge(now);
        let not_found = || Error::not_found("instance", id).with_operation(op);
        let key = self.visible_instance(id, now).ok_or_else(not_found)?;
        let s = self.instances.get_mut(&key).ok_or_else(not_found)?;
        let current: Tags = s.tags.iter().cloned().collect();
        // A map iterates in key order: the vector stays sorted for `may_match`.
        s.tags = changes.apply(&current)?.into_iter().collect();
        self.view_key(key, now).ok_or_else(not_found)
    }

    // ---- networks ----

    pub(super) fn list_networks(&self, page: &PageRequest, limit: usize) -> Result<Page<Network>> {
        page_of(
            &self.networks,
            page.token.as_ref(),
            limit,
            Operation::ListNetworks,
            |r| r.network.clone(),
        )
    }

    pub(super) fn get_network(&self, id: &NetworkId) -> Result<Network> {
        self.networks
            .get(id.as_str())
            .map(|r| r.network.clone())
            .ok_or_else(|| Error::not_found("network", id).with_operation(Operation::GetNetwork))
    }

    pub(super) fn create_network(&mut self, spec: &NetworkSpec, cidr: Cidr) -> Result<Network> {
        if let Some(other) = self.networks.values().find(|r| r.network.name == spec.name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "a network named `{}` already exists (`{}`)",
                    spec.name, other.network.id
                ),
            )
            .with_operation(Operation::CreateNetwork)
            .with_resource(format!("network {}", other.network.id)));
        }
        let network = Network {
            id: NetworkId::new(format!("net-{:016x}", self.network_keys.next())),
            name: spec.name.clone(),
            cidr: Some(cidr.to_string()),
            location_id: spec.location_id.clone(),
            is_default: false,
            raw_state: "available".into(),
            tags: spec.tags.clone(),
        };
        self.insert_network(network.clone(), cidr);
        Ok(network)
    }

    pub(super) fn delete_network(&mut self, id: &NetworkId, now: Instant) -> Result<()> {
        let op = Operation::DeleteNetwork;
        self.purge(now);
        let record = self
            .networks
            .get(id.as_str())
            .ok_or_else(|| Error::not_found("network", id).with_operation(op))?;
        let in_use = record
            .members
            .iter()
            .filter(|k| {
                self.instances
                    .get(k)
                    .is_some_and(|s| s.phase.state(now) != InstanceState::Terminated)
            })
            .count();
        if in_use > 0 {
            let plural = if in_use == 1 { "" } else { "s" };
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "network `{id}` is in use by {in_use} instance{plural}; \
                     delete them first"
                ),
            )
            .with_operation(op)
            .with_resource(format!("network {id}"))
            .with_context("instances", in_use.to_string()));
        }
        let default_group = record.default_group.clone();
        self.check_network_groups_deletable(id, &default_group)?;
        self.networks.remove(id.as_str());
        self.groups.remove(&default_group);
        Ok(())
    }

    // ---- key pairs ----

    pub(super) fn has_key_pair(&self, name: &str) -> bool {
        self.key_pairs.contains_key(name)
    }

    pub(super) fn list_key_pairs(&self) -> Vec<KeyPair> {
        self.key_pairs.values().cloned().collect()
    }

    /// Stores `key_pair` without its private key; `AlreadyExists` when the name is taken.
    pub(super) fn insert_key_pair(&mut self, key_pair: &KeyPair, op: Operation) -> Result<()> {
        if self.key_pairs.contains_key(&key_pair.name) {
            return Err(key_pair_exists(&key_pair.name, op));
        }
        self.key_pairs.insert(
            key_pair.name.clone(),
            KeyPair {
                private_key: None,
                ..key_pair.clone()
            },
        );
        Ok(())
    }

    pub(super) fn delete_key_pair(&mut self, name: &str) -> Result<()> {
        self.key_pairs.remove(name).map(drop).ok_or_else(|| {
            Error::not_found("key pair", name).with_operation(Operation::DeleteKeyPair)
        })
    }
}

pub(super) fn key_pair_exists(name: &str, op: Operation) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("a key pair named `{name}` already exists; delete it first or choose another name"),
    )
    .with_operation(op)
    .with_resource(format!("key pair {name}"))
}
