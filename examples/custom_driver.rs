//! A driver of your own in under 200 lines, proven by the conformance kit.
//!
//! `TinyCloud` keeps instances in a vector; they run as soon as they are created and
//! stop, start and reboot at once. It declares what it supports in `Capabilities`;
//! everything else answers `Unsupported`, and the kit checks that too.
//! Run with `cargo run --example custom_driver`.

use std::sync::Mutex;

use async_trait::async_trait;
use cms::testkit::{self, KitConfig};
use cms::*;

#[derive(Debug)]
struct TinyCloud {
    caps: Capabilities,
    instances: Mutex<Vec<Instance>>,
}

impl TinyCloud {
    fn new() -> Self {
        let mut caps = Capabilities::none();
        caps.instances = InstanceCapabilities {
            list: true,
            get: true,
            create: true,
            start: true,
            stop: true,
            reboot: true,
            delete: true,
            tags: true,
            update_tags: true,
            owner: true,
            max_page_size: 50,
            ..Default::default()
        };
        caps.images = ImageCapabilities {
            list: true,
            get: true,
            ..Default::default()
        };
        caps.flavors = FlavorCapabilities { list: true };
        TinyCloud {
            caps,
            instances: Mutex::new(Vec::new()),
        }
    }

    fn image() -> Image {
        Image {
            id: ImageId::new("tiny-linux"),
            name: "Tiny Linux".into(),
            description: None,
            kind: ImageKind::Disk,
            os: Some("linux".into()),
            architecture: Some("x86_64".into()),
            state: ImageState::Available,
            raw_state: "available".into(),
            min_disk_gib: None,
            tags: Tags::new(),
            shared: true,
            owner: None,
            source_instance_id: None,
            created_at: None,
        }
    }

    /// Applies `change` to the instance when its state allows, per the trait's rules.
    fn act(
        &self,
        id: &InstanceId,
        action: &str,
        change: impl Fn(InstanceState) -> Option<InstanceState>,
    ) -> Result<Instance> {
        let mut all = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let i = all
            .iter_mut()
            .find(|i| &i.id == id)
            .ok_or_else(|| Error::not_found("instance", id))?;
        let next = change(i.state).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                format!("cannot {action} instance `{id}`: it is {}", i.state),
            )
        })?;
        i.state = next;
        i.raw_state = next.as_str().to_owned();
        Ok(i.clone())
    }
}

#[async_trait]
impl Driver for TinyCloud {
    fn name(&self) -> &str {
        "tiny"
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        // The token is the index to continue from: the vector only grows, so paging
        // never repeats nor loses an instance.
        let start = match &page.token {
            None => 0,
            Some(t) => t.as_str().parse::<usize>().map_err(|_| {
                Error::invalid_argument(
                    "page_token",
                    format!("`{t}` is not a token of this driver"),
                )
            })?,
        };
        let limit = page.limit.unwrap_or(50).clamp(1, 50) as usize;
        let all = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let mut items = Vec::new();
        let mut pos = start;
        while pos < all.len() && items.len() < limit {
            if filter.matches(&all[pos]) {
                items.push(all[pos].clone());
            }
            pos += 1;
        }
        let next = (pos < all.len()).then(|| PageToken::new(pos.to_string()));
        Ok(Page { items, next })
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        let all = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .find(|i| &i.id == id)
            .cloned()
            .ok_or_else(|| Error::not_found("instance", id))
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        if spec.image_id != Self::image().id {
            return Err(Error::not_found("image", &spec.image_id));
        }
        if let Some(owner) = &spec.owner {
            cms::check_owner(owner)?;
        }
        let mut all = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let instance = Instance {
            id: InstanceId::new(format!("tiny-{}", all.len() + 1)),
            name: spec.name.clone(),
            state: InstanceState::Running,
            raw_state: "running".into(),
            image_id: Some(spec.image_id.clone()),
            flavor_id: Some(spec.flavor_id.clone()),
            location_id: None,
            network_ids: Vec::new(),
            key_name: None,
            private_ips: Vec::new(),
            public_ips: Vec::new(),
            tags: spec.tags.clone(),
            created_at: Some(chrono::Utc::now()),
            client_token: None,
            owner: spec.owner.clone(),
            security_group_ids: Default::default(),
            volumes: Vec::new(),
        };
        all.push(instance.clone());
        Ok(instance)
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, "start", |s| {
            (s == InstanceState::Stopped).then_some(InstanceState::Running)
        })
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, "stop", |s| {
            (s == InstanceState::Running).then_some(InstanceState::Stopped)
        })
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, "reboot", |s| (s == InstanceState::Running).then_some(s))
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.act(id, "delete", |_| Some(InstanceState::Terminated))
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        let mut all = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let i = all
            .iter_mut()
            .find(|i| &i.id == id)
            .ok_or_else(|| Error::not_found("instance", id))?;
        // `apply` checks the change by the model's rules and answers the tags after it.
        i.tags = changes.apply(&i.tags)?;
        Ok(i.clone())
    }

    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        Err(Error::unsupported(Operation::GetConsoleOutput, "tiny").with_resource(id.to_string()))
    }

    async fn list_images(&self, filter: &ImageFilter, _page: &PageRequest) -> Result<Page<Image>> {
        let image = Self::image();
        Ok(Page::last(if filter.matches(&image) {
            vec![image]
        } else {
            Vec::new()
        }))
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        let image = Self::image();
        if *id == image.id {
            Ok(image)
        } else {
            Err(Error::not_found("image", id))
        }
    }

    async fn list_flavors(&self, _page: &PageRequest) -> Result<Page<Flavor>> {
        Ok(Page::last(vec![Flavor {
            id: FlavorId::new("tiny-1"),
            name: "tiny-1".into(),
            vcpus: 1,
            memory_mib: 512,
            disk_gib: Some(5),
        }]))
    }

    // Not declared: each answers Unsupported, naming itself and the driver.
    async fn list_networks(&self, _: &PageRequest) -> Result<Page<Network>> {
        Err(Error::unsupported(Operation::ListNetworks, self.name()))
    }
    async fn get_network(&self, _: &NetworkId) -> Result<Network> {
        Err(Error::unsupported(Operation::GetNetwork, self.name()))
    }
    async fn create_network(&self, _: &NetworkSpec) -> Result<Network> {
        Err(Error::unsupported(Operation::CreateNetwork, self.name()))
    }
    async fn delete_network(&self, _: &NetworkId) -> Result<()> {
        Err(Error::unsupported(Operation::DeleteNetwork, self.name()))
    }
    async fn list_locations(&self) -> Result<Vec<Location>> {
        Err(Error::unsupported(Operation::ListLocations, self.name()))
    }
    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        Err(Error::unsupported(Operation::ListKeyPairs, self.name()))
    }
    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let op = if spec.public_key.is_some() {
            Operation::ImportKeyPair
        } else {
            Operation::CreateKeyPair
        };
        Err(Error::unsupported(op, self.name()))
    }
    async fn delete_key_pair(&self, _: &str) -> Result<()> {
        Err(Error::unsupported(Operation::DeleteKeyPair, self.name()))
    }
}

#[tokio::main]
async fn main() {
    let cloud = Cloud::builder(TinyCloud::new()).provider("tiny").build();
    let report = testkit::run(&cloud, &KitConfig::default()).await;
    println!("{report}");
    if !report.passed() {
        std::process::exit(1);
    }
}
