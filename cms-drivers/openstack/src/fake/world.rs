//! The fake's state: Keystone's user, project, application credential and tokens;
//! Nova's servers, flavors and key pairs; Glance's images; Neutron's networks, subnets
//! and ports. Servers move through Nova's states as time passes: each carries the steps
//! still ahead of it, applied by [`World::settle`] when a request looks.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::http::IdGen;
use super::{FakeConfig, FakeDelays};

/// Nova's power states (`nova.compute.power_state`).
pub(crate) const NOSTATE: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const SHUTDOWN: u8 = 4;

/// Nova's limit on metadata items per server (the `metadata_items` quota).
pub(crate) const MAX_METADATA_ITEMS: usize = 128;

/// What the fake was started with and does not change.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub max_limit: usize,
    pub max_microversion: (u32, u32),
    pub delays: FakeDelays,
    pub token_lifetime: Duration,
    pub max_servers: usize,
}

pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub password: String,
}

pub(crate) struct Project {
    pub id: String,
    pub name: String,
}

pub(crate) struct AppCredential {
    pub id: String,
    pub name: String,
    pub secret: String,
}

/// A service of the catalog, with its public, internal and admin endpoints' ids.
pub(crate) struct CatalogEntry {
    pub id: String,
    pub kind: &'static str,
    pub name: &'static str,
    pub url: String,
    pub endpoint_ids: [String; 3],
}

pub(crate) struct Token {
    pub expires: SystemTime,
}

#[derive(Clone, Debug)]
pub(crate) struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram: u32,
    pub disk: u32,
    pub ephemeral: u32,
    pub swap: u32,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Image {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub visibility: &'static str,
    pub size: u64,
    pub virtual_size: u64,
    pub disk_format: &'static str,
    pub min_disk: u32,
    pub min_ram: u32,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub checksum: String,
    pub hash: String,
    pub properties: BTreeMap<String, String>,
}

pub(crate) struct Keypair {
    pub id: u64,
    pub name: String,
    pub kind: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created: DateTime<Utc>,
}

pub(crate) struct Network {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub shared: bool,
    pub external: bool,
    pub admin_state_up: bool,
    pub mtu: u32,
    pub description: String,
    pub subnets: Vec<String>,
    /// Neutron's standard-attribute tags.
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub revision: u64,
}

pub(crate) struct Subnet {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub project_id: String,
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub pool: (u32, u32),
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<String>,
    pub description: String,
    pub created: DateTime<Utc>,
    pub used: BTreeSet<u32>,
    /// Where the next allocation starts looking (addresses are handed out in turn).
    pub cursor: u32,
}

impl Subnet {
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    fn allocate(&mut self) -> Option<u32> {
        let (lo, hi) = self.pool;
        if hi < lo || self.used.len() as u64 > u64::from(hi - lo) {
            return None;
        }
        let mut ip = self.cursor.clamp(lo, hi);
        loop {
            if !self.used.contains(&ip) {
                self.used.insert(ip);
                self.cursor = if ip == hi { lo } else { ip + 1 };
                return Some(ip);
            }
            ip = if ip == hi { lo } else { ip + 1 };
        }
    }
}

pub(crate) struct Port {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub project_id: String,
    pub device_id: String,
    pub device_owner: String,
    pub mac: String,
    pub fixed_ips: Vec<(String, Ipv4Addr)>,
    pub created: DateTime<Utc>,
}

/// What happens when a step is reached, besides the new states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// Placed on a host, its ports bound: `hostId` and `addresses` appear.
    Wire,
    /// First boot done: `launched_at` is set.
    Launch,
    /// The build failed (no address left on a network): vm_state error with a fault.
    Fail,
    /// Deleted: the server and its ports are gone.
    Gone,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    pub at: Instant,
    pub vm: &'static str,
    pub task: Option<&'static str>,
    pub power: u8,
    pub effect: Effect,
}

pub(crate) struct Server {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub launched_at: Option<DateTime<Utc>>,
    pub image_id: String,
    pub flavor: Flavor,
    pub key_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub availability_zone: String,
    pub pinned_availability_zone: Option<String>,
    pub user_data: Option<String>,
    pub disk_config: String,
    pub access_ipv4: String,
    pub access_ipv6: String,
    pub config_drive: String,
    pub admin_pass: String,
    pub vm_state: &'static str,
    pub task_state: Option<&'static str>,
    pub power_state: u8,
    pub host: Option<String>,
    /// Its ports, in the order of the networks asked for.
    pub ports: Vec<String>,
    pub security_groups: Vec<String>,
    pub fault: Option<String>,
    pub steps: VecDeque<Step>,
    /// Created-at in microseconds: with the id, its place in Nova's default order.
    pub sort: i64,
}

impl Server {
    /// Nova's `status` for its vm_state and task_state (`common._STATE_MAP`).
    pub fn status(&self) -> &'static str {
        status_of(self.vm_state, self.task_state)
    }
}

/// Nova's `status` from a vm_state and task_state.
pub(crate) fn status_of(vm: &str, task: Option<&str>) -> &'static str {
    match (vm, task) {
        ("active", Some("rebooting" | "reboot_pending" | "reboot_started")) => "REBOOT",
        ("active", Some("rebooting_hard" | "reboot_pending_hard" | "reboot_started_hard")) => {
            "HARD_REBOOT"
        }
        ("active", _) => "ACTIVE",
        ("building", _) => "BUILD",
        ("stopped", _) => "SHUTOFF",
        ("error", _) => "ERROR",
        ("deleted", _) => "DELETED",
        _ => "UNKNOWN",
    }
}

/// What a new server is made of (the request, checked).
pub(crate) struct NewServer {
    pub name: String,
    pub description: Option<String>,
    pub image_id: String,
    pub flavor: Flavor,
    pub key_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub availability_zone: Option<String>,
    pub user_data: Option<String>,
    pub disk_config: String,
    pub access_ipv4: String,
    pub access_ipv6: String,
    pub config_drive: String,
    pub networks: Vec<String>,
    pub security_groups: Vec<String>,
}

/// The fake's whole state, behind one mutex.
pub(crate) struct World {
    pub settings: Settings,
    pub ids: IdGen,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub user: User,
    pub project: Project,
    /// The cloud admin's project: owns the shared networks and public images.
    pub admin_project_id: String,
    pub app_credential: AppCredential,
    /// The project's Neutron security group `default`, on every server's port.
    pub default_security_group: String,
    pub catalog: Vec<CatalogEntry>,
    pub tokens: HashMap<String, Token>,
    pub servers: HashMap<String, Server>,
    /// Servers in Nova's default order, read backwards: (created µs, id) ascending.
    pub order: BTreeSet<(i64, String)>,
    /// Deleted servers' places in that order: Nova accepts them as markers.
    pub tombstones: HashMap<String, i64>,
    /// Servers with steps ahead.
    pub busy: BTreeSet<String>,
    pub flavors: Vec<Flavor>,
    pub images: Vec<Image>,
    pub networks: BTreeMap<String, Network>,
    pub subnets: BTreeMap<String, Subnet>,
    pub ports: BTreeMap<String, Port>,
    pub keypairs: BTreeMap<String, Keypair>,
    pub keypair_seq: u64,
    /// The compute host servers land on.
    pub host: String,
}

impl World {
    pub fn new(config: &FakeConfig, base: &str) -> World {
        let mut ids = IdGen::new();
        let now = Utc::now();
        let user = User {
            id: ids.hex_id(),
            name: config.username.clone(),
            password: config.password.clone(),
        };
        let project = Project {
            id: ids.hex_id(),
            name: config.project_name.clone(),
        };
        let admin_project_id = ids.hex_id();
        let other_project_id = ids.hex_id();
        let app_credential = AppCredential {
            id: ids.hex_id(),
            name: "cms-fake".into(),
            secret: format!("{}{}", ids.hex_id(), ids.hex_id()),
        };
        let default_security_group = ids.uuid();
        let mut catalog = Vec::new();
        for (kind, name, path) in [
            ("identity", "keystone", "/identity"),
            ("compute", "nova", "/compute/v2.1"),
            ("image", "glance", "/image"),
            ("network", "neutron", "/network"),
        ] {
            catalog.push(CatalogEntry {
                id: ids.hex_id(),
                kind,
                name,
                url: format!("{base}{path}"),
                endpoint_ids: [ids.hex_id(), ids.hex_id(), ids.hex_id()],
            });
        }
        let flavor = |id: &str, name: &str, vcpus, ram, disk| Flavor {
            id: id.into(),
            name: name.into(),
            vcpus,
            ram,
            disk,
            ephemeral: 0,
            swap: 0,
            description: None,
            extra_specs: BTreeMap::new(),
        };
        let flavors = vec![
            flavor("1", "m1.tiny", 1, 512, 1),
            flavor("2", "m1.small", 1, 2048, 20),
            flavor("3", "m1.medium", 2, 4096, 40),
            flavor("4", "m1.large", 4, 8192, 80),
            flavor("5", "m1.xlarge", 8, 16384, 160),
        ];
        let days = |d: i64| now - chrono::Duration::days(d);
        let mut image = |name: &str, owner: &str, visibility, size, created, distro: &str| {
            let b = ids.bytes();
            let mut properties = BTreeMap::new();
            properties.insert("hw_architecture".to_owned(), "x86_64".to_owned());
            properties.insert("os_distro".to_owned(), distro.to_owned());
            Image {
                id: ids.uuid(),
                name: name.into(),
                owner: owner.into(),
                visibility,
                size,
                virtual_size: size * 4,
                disk_format: "qcow2",
                min_disk: 0,
                min_ram: 0,
                created,
                updated: created,
                checksum: super::http::hex(&b[..16]),
                hash: format!("{}{}", super::http::hex(&b), super::http::hex(&ids.bytes())),
                properties,
            }
        };
        let images = vec![
            image(
                "cirros",
                &admin_project_id,
                "public",
                21_430_272,
                days(30),
                "cirros",
            ),
            image(
                "ubuntu-24.04",
                &admin_project_id,
                "public",
                614_465_536,
                days(20),
                "ubuntu",
            ),
            image(
                "other-project-image",
                &other_project_id,
                "private",
                1_073_741_824,
                days(10),
                "debian",
            ),
        ];
        let mut world = World {
            settings: Settings {
                max_limit: config.max_limit.max(1),
                max_microversion: config.max_microversion,
                delays: config.delays,
                token_lifetime: config.token_lifetime,
                max_servers: config.max_servers,
            },
            ids,
            base: base.to_owned(),
            user,
            project,
            admin_project_id,
            app_credential,
            default_security_group,
            catalog,
            tokens: HashMap::new(),
            servers: HashMap::new(),
            order: BTreeSet::new(),
            tombstones: HashMap::new(),
            busy: BTreeSet::new(),
            flavors,
            images,
            networks: BTreeMap::new(),
            subnets: BTreeMap::new(),
            ports: BTreeMap::new(),
            keypairs: BTreeMap::new(),
            keypair_seq: 0,
            host: "compute-1".into(),
        };
        // The private network's subnet is a /24 unless more servers are seeded than
        // it has addresses for.
        let mut prefix = 24u8;
        while prefix > 8 && (1u64 << (32 - prefix)) < config.servers as u64 + 64 {
            prefix -= 1;
        }
        let admin = world.admin_project_id.clone();
        let private = world.add_network("private", &admin, true, false, days(40));
        world.add_subnet(
            &private,
            "private-subnet",
            &admin,
            Ipv4Addr::new(10, 0, 0, 0),
            prefix,
            days(40),
        );
        let public = world.add_network("public", &admin, false, true, days(40));
        world.add_subnet(
            &public,
            "public-subnet",
            &admin,
            Ipv4Addr::new(172, 24, 4, 0),
            24,
            days(40),
        );
        world.seed_servers(config.servers, &private);
        world
    }

    fn seed_servers(&mut self, n: usize, network: &str) {
        let now = Utc::now();
        let Some(flavor) = self.flavors.iter().find(|f| f.name == "m1.small").cloned() else {
            return;
        };
        let images: Vec<String> = self
            .images
            .iter()
            .filter(|i| i.visibility == "public")
            .map(|i| i.id.clone())
            .collect();
        for i in 0..n {
            let mut metadata = BTreeMap::new();
            metadata.insert("purpose".to_owned(), "seeded".to_owned());
            metadata.insert("index".to_owned(), (i + 1).to_string());
            let spec = NewServer {
                name: format!("server-{:04}", i + 1),
                description: None,
                image_id: images[i % images.len().max(1)].clone(),
                flavor: flavor.clone(),
                key_name: None,
                metadata,
                tags: Vec::new(),
                availability_zone: None,
                user_data: None,
                disk_config: "MANUAL".into(),
                access_ipv4: String::new(),
                access_ipv6: String::new(),
                config_drive: String::new(),
                networks: vec![network.to_owned()],
                security_groups: vec!["default".into()],
            };
            // One second apart, the last one newest.
            let created = now - chrono::Duration::seconds((n - i) as i64);
            let id = self.add_server(spec, created);
            if let Some(s) = self.servers.get_mut(&id) {
                s.steps.clear();
                s.vm_state = "active";
                s.task_state = None;
                s.power_state = RUNNING;
                s.host = Some(self.host.clone());
                s.launched_at = Some(created + chrono::Duration::seconds(1));
                s.updated = created + chrono::Duration::seconds(1);
            }
            self.busy.remove(&id);
        }
    }

    pub fn add_network(
        &mut self,
        name: &str,
        project_id: &str,
        shared: bool,
        external: bool,
        created: DateTime<Utc>,
    ) -> String {
        let id = self.ids.uuid();
        self.networks.insert(
            id.clone(),
            Network {
                id: id.clone(),
                name: name.into(),
                project_id: project_id.into(),
                shared,
                external,
                admin_state_up: true,
                mtu: 1442,
                description: String::new(),
                subnets: Vec::new(),
                tags: Vec::new(),
                created,
                updated: created,
                revision: 1,
            },
        );
        id
    }

    /// A subnet whose gateway is the first address and pool the rest.
    pub fn add_subnet(
        &mut self,
        network_id: &str,
        name: &str,
        project_id: &str,
        network: Ipv4Addr,
        prefix: u8,
        created: DateTime<Utc>,
    ) -> String {
        let base = u32::from(network);
        let size = 1u64 << (32 - u32::from(prefix.min(32)));
        let last = (u64::from(base) + size - 1).min(u64::from(u32::MAX)) as u32;
        let (gateway, pool) = if size >= 4 {
            (Some(Ipv4Addr::from(base + 1)), (base + 2, last - 1))
        } else {
            (None, (base, last))
        };
        self.add_subnet_with(
            network_id, name, project_id, network, prefix, gateway, pool, created,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_subnet_with(
        &mut self,
        network_id: &str,
        name: &str,
        project_id: &str,
        network: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        pool: (u32, u32),
        created: DateTime<Utc>,
    ) -> String {
        let id = self.ids.uuid();
        let mut used = BTreeSet::new();
        if let Some(g) = gateway {
            used.insert(u32::from(g));
        }
        self.subnets.insert(
            id.clone(),
            Subnet {
                id: id.clone(),
                name: name.into(),
                network_id: network_id.into(),
                project_id: project_id.into(),
                network,
                prefix,
                gateway,
                pool,
                enable_dhcp: true,
                dns_nameservers: Vec::new(),
                description: String::new(),
                created,
                used,
                cursor: pool.0,
            },
        );
        if let Some(n) = self.networks.get_mut(network_id) {
            n.subnets.push(id.clone());
            n.revision += 1;
            n.updated = created;
        }
        id
    }

    /// A port on `network_id` for server `device_id`, with an address from the first of
    /// the network's subnets that has one left; `None` when none has.
    fn add_port(&mut self, network_id: &str, device_id: &str) -> Option<String> {
        let subnets = self.networks.get(network_id)?.subnets.clone();
        let mut fixed = None;
        for sid in subnets {
            if let Some(s) = self.subnets.get_mut(&sid) {
                if let Some(ip) = s.allocate() {
                    fixed = Some((sid, Ipv4Addr::from(ip)));
                    break;
                }
            }
        }
        let fixed = fixed?;
        let id = self.ids.uuid();
        let b = self.ids.bytes();
        let port = Port {
            id: id.clone(),
            name: String::new(),
            network_id: network_id.into(),
            project_id: self.project.id.clone(),
            device_id: device_id.into(),
            device_owner: "compute:nova".into(),
            mac: format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]),
            fixed_ips: vec![fixed],
            created: Utc::now(),
        };
        self.ports.insert(id.clone(), port);
        Some(id)
    }

    pub fn remove_port(&mut self, id: &str) {
        if let Some(p) = self.ports.remove(id) {
            for (sid, ip) in p.fixed_ips {
                if let Some(s) = self.subnets.get_mut(&sid) {
                    s.used.remove(&u32::from(ip));
                }
            }
        }
    }

    /// Adds a server in BUILD, with its ports, and its build steps ahead; answers its id.
    pub fn add_server(&mut self, spec: NewServer, created: DateTime<Utc>) -> String {
        let id = self.ids.uuid();
        let mut ports = Vec::new();
        let mut failed = false;
        for net in &spec.networks {
            match self.add_port(net, &id) {
                Some(p) => ports.push(p),
                None => failed = true,
            }
        }
        let pass: String = self.ids.hex_id().chars().take(12).collect();
        let sort = created.timestamp_micros();
        let server = Server {
            id: id.clone(),
            name: spec.name,
            description: spec.description,
            created,
            updated: created,
            launched_at: None,
            image_id: spec.image_id,
            flavor: spec.flavor,
            key_name: spec.key_name,
            metadata: spec.metadata,
            tags: spec.tags,
            availability_zone: spec
                .availability_zone
                .clone()
                .unwrap_or_else(|| "nova".into()),
            pinned_availability_zone: spec.availability_zone,
            user_data: spec.user_data,
            disk_config: spec.disk_config,
            access_ipv4: spec.access_ipv4,
            access_ipv6: spec.access_ipv6,
            config_drive: spec.config_drive,
            admin_pass: pass,
            vm_state: "building",
            task_state: Some("scheduling"),
            power_state: NOSTATE,
            host: None,
            ports,
            security_groups: if spec.networks.is_empty() {
                Vec::new()
            } else {
                spec.security_groups
            },
            fault: None,
            steps: VecDeque::new(),
            sort,
        };
        self.order.insert((sort, id.clone()));
        self.servers.insert(id.clone(), server);
        let build = self.settings.delays.build;
        let plan: Vec<(Duration, &'static str, Option<&'static str>, u8, Effect)> = if failed {
            vec![
                (
                    build / 3,
                    "building",
                    Some("networking"),
                    NOSTATE,
                    Effect::Wire,
                ),
                (build - build / 3, "error", None, NOSTATE, Effect::Fail),
            ]
        } else {
            vec![
                (
                    build / 3,
                    "building",
                    Some("networking"),
                    NOSTATE,
                    Effect::Wire,
                ),
                (
                    build / 3,
                    "building",
                    Some("spawning"),
                    NOSTATE,
                    Effect::None,
                ),
                (
                    build - 2 * (build / 3),
                    "active",
                    None,
                    RUNNING,
                    Effect::Launch,
                ),
            ]
        };
        self.plan(&id, &plan);
        id
    }

    /// Sets the steps ahead of server `id`: each after the one before, by its delay.
    pub fn plan(
        &mut self,
        id: &str,
        steps: &[(Duration, &'static str, Option<&'static str>, u8, Effect)],
    ) {
        let Some(s) = self.servers.get_mut(id) else {
            return;
        };
        s.steps.clear();
        let mut at = Instant::now();
        for &(d, vm, task, power, effect) in steps {
            at += d;
            s.steps.push_back(Step {
                at,
                vm,
                task,
                power,
                effect,
            });
        }
        if !s.steps.is_empty() {
            self.busy.insert(id.to_owned());
        }
    }

    /// Sets a server's states now (an action accepted), then plans what follows.
    pub fn begin(
        &mut self,
        id: &str,
        task: Option<&'static str>,
        steps: &[(Duration, &'static str, Option<&'static str>, u8, Effect)],
    ) {
        if let Some(s) = self.servers.get_mut(id) {
            s.task_state = task;
            s.updated = Utc::now();
        }
        self.plan(id, steps);
    }

    /// Applies every step whose time has come.
    pub fn settle(&mut self) {
        if self.busy.is_empty() {
            return;
        }
        let now = Instant::now();
        let busy: Vec<String> = self.busy.iter().cloned().collect();
        for id in busy {
            let mut gone = false;
            let mut idle = true;
            if let Some(s) = self.servers.get_mut(&id) {
                while let Some(step) = s.steps.front().copied() {
                    if step.at > now {
                        break;
                    }
                    s.steps.pop_front();
                    s.vm_state = step.vm;
                    s.task_state = step.task;
                    s.power_state = step.power;
                    s.updated = Utc::now();
                    match step.effect {
                        Effect::None => {}
                        Effect::Wire => s.host = Some(self.host.clone()),
                        Effect::Launch => s.launched_at = Some(Utc::now()),
                        Effect::Fail => {
                            s.fault = Some(format!(
                                "Build of instance {id} aborted: Failed to allocate the \
                                 network(s), not rescheduling."
                            ))
                        }
                        Effect::Gone => {
                            gone = true;
                            break;
                        }
                    }
                }
                idle = s.steps.is_empty();
            }
            if gone {
                self.remove_server(&id);
            }
            if idle || gone {
                self.busy.remove(&id);
            }
        }
    }

    fn remove_server(&mut self, id: &str) {
        if let Some(s) = self.servers.remove(id) {
            self.order.remove(&(s.sort, s.id.clone()));
            self.tombstones.insert(s.id.clone(), s.sort);
            for p in &s.ports {
                self.remove_port(p);
            }
        }
    }

    pub fn issue_token(&mut self) -> (String, DateTime<Utc>) {
        let token = format!("gAAAAA{}{}", self.ids.hex_id(), self.ids.hex_id());
        let lifetime = self.settings.token_lifetime;
        let expires = SystemTime::now() + lifetime;
        self.tokens.insert(token.clone(), Token { expires });
        let at = Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default();
        (token, at)
    }

    pub fn token_valid(&self, token: Option<&str>) -> bool {
        match token.and_then(|t| self.tokens.get(t)) {
            Some(t) => t.expires > SystemTime::now(),
            None => false,
        }
    }

    /// Servers of the project that count against its quota (not yet gone).
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    pub fn image_visible(&self, image: &Image) -> bool {
        image.visibility == "public"
            || image.visibility == "community"
            || image.owner == self.project.id
    }

    /// Networks the project may see: its own, shared and external ones.
    pub fn network_visible(&self, n: &Network) -> bool {
        n.project_id == self.project.id || n.shared || n.external
    }
}
