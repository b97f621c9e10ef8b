//! The [`Driver`] over one provider of another cms server.
//!
//! Every operation is one request to the server's native API; pages, page tokens and
//! filters (ids, states, name, tags) pass through, so pages are the server's exact
//! pages. What the model needs and the API does not carry as such:
//!
//! | model | on the other server |
//! |---|---|
//! | `InstanceSpec::owner`, `Instance::owner`, `InstanceFilter::owner` | the tag [`OWNER_TAG`] (this side's tenant), set in the create call, filtered by the server; never shown among the tags |
//! | `TagChanges` | `PATCH …/instances/{id}/tags`, a JSON merge patch (`null` removes) |
//! | `InstanceSpec::client_token`, `Instance::client_token` | the `Idempotency-Key` header of the create (as given when it is 1 to 255 visible ASCII characters, else `sha256:` and its digest), and the tag [`TOKEN_TAG`], which gives it back |
//! | capabilities | those the server declares for the provider; `instances.owner` when it takes tags at create, `instances.client_token` whenever it creates |

use async_trait::async_trait;
use cms_core::{
    Capabilities, ConsoleOutput, Driver, Error, Flavor, Image, ImageFilter, ImageId, Instance,
    InstanceFilter, InstanceId, InstanceSpec, KeyPair, KeyPairSpec, Location, Network, NetworkId,
    NetworkSpec, Operation, Page, PageRequest, PageToken, Result, TagChanges,
};
use reqwest::Method;
use sha2::{Digest, Sha256};

use crate::client::{filter_query, page_params, Call, Client};
use crate::model::{CreateInstanceBody, ListResponse, ProviderInfo, TagPatch};

/// The tag that carries an instance's owner (this side's tenant) on the other server.
pub const OWNER_TAG: &str = "cms-remote-owner";

/// The tag that carries the client token of the create on the other server (which
/// shows a token of its own as the instance's `client_token`).
pub const TOKEN_TAG: &str = "cms-remote-client-token";

/// The tags the driver keeps for itself.
pub const RESERVED_TAGS: [&str; 2] = [OWNER_TAG, TOKEN_TAG];

/// A provider of another cms server, as a driver (`driver = "cms"` in the server's
/// configuration).
#[derive(Clone, Debug)]
pub struct RemoteDriver {
    client: Client,
    provider: String,
    remote_driver: String,
    caps: Capabilities,
    /// Owners as this side's tenants (in [`OWNER_TAG`]), or as the server shows them.
    tagged_owners: bool,
}

impl RemoteDriver {
    /// Connects to the provider `config.provider` of the server at `config.endpoint`:
    /// one request that reads its capabilities.
    pub async fn connect(config: &crate::RemoteConfig) -> Result<RemoteDriver> {
        Client::from_config(config)?.driver(&config.provider).await
    }

    pub(crate) fn from_info(client: Client, info: &ProviderInfo) -> RemoteDriver {
        let mut caps = info.capabilities;
        let i = &mut caps.instances;
        // Owners ride in a tag set at create and filtered by the server.
        i.owner = i.create && i.tags && i.list;
        // The server makes any create idempotent with its Idempotency-Key.
        i.client_token = i.create;
        i.max_page_size = i.max_page_size.clamp(1, crate::MAX_PAGE);
        // The families this driver does not carry over (yet): whatever the upstream
        // serves, they answer `Unsupported` here.
        i.security_groups = false;
        i.volumes = false;
        caps.images.create = false;
        caps.images.delete = false;
        caps.images.owner = false;
        caps.volumes = Default::default();
        caps.snapshots = Default::default();
        caps.security_groups = Default::default();
        caps.addresses = Default::default();
        RemoteDriver {
            client,
            provider: info.name.clone(),
            remote_driver: info.driver.clone(),
            caps,
            tagged_owners: true,
        }
    }

    /// The provider as the key's tenant sees it on the server: owners are the
    /// server's own (the tenant that made each instance there), and creates carry no
    /// owner of this side (`instances.owner` is not declared). What a client of the
    /// server, such as the `cms` command line, shows; a server holding the provider
    /// for its own tenants uses the driver as [`connect`](Self::connect) makes it.
    pub fn as_server_shows(mut self) -> RemoteDriver {
        self.tagged_owners = false;
        self.caps.instances.owner = false;
        self
    }

    /// The provider's name on the other server.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The driver behind the provider on the other server (`memory`, `ec2`, …).
    pub fn remote_driver(&self) -> &str {
        &self.remote_driver
    }

    /// The client this driver calls through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn unsupported(&self, op: Operation) -> Result<()> {
        if self.caps.supports(op) {
            Ok(())
        } else {
            Err(Error::unsupported(op, crate::DRIVER)
                .with_context("remote_provider", self.provider.clone()))
        }
    }

    /// One call on what `tail` names below the provider (`v1/providers/{provider}/…`);
    /// `Unsupported` without a request when the provider does not declare `op`.
    async fn on<T: serde::de::DeserializeOwned>(
        &self,
        op: Operation,
        method: Method,
        tail: &[&str],
        prepare: impl FnOnce(&mut Call<'_>),
    ) -> Result<T> {
        self.unsupported(op)?;
        let mut path = vec!["v1", "providers", self.provider.as_str()];
        path.extend_from_slice(tail);
        let mut call = Call::new(Some(op), method, &path);
        prepare(&mut call);
        self.client.call(call).await
    }

    async fn instance_call(
        &self,
        op: Operation,
        method: Method,
        id: &InstanceId,
        action: Option<&str>,
    ) -> Result<Instance> {
        let mut tail = vec!["instances", id.as_str()];
        tail.extend(action);
        let i: Instance = self.on(op, method, &tail, |_| {}).await?;
        Ok(self.shown(i))
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        op: Operation,
        what: &str,
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let list: ListResponse<T> = self
            .on(op, Method::GET, &[what], |c| {
                page_params(&mut c.query, page)
            })
            .await?;
        Ok(Page {
            items: list.items,
            next: list.next_page_token,
        })
    }

    /// A listing the API answers in one page.
    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        op: Operation,
        what: &str,
    ) -> Result<Vec<T>> {
        let list: ListResponse<T> = self.on(op, Method::GET, &[what], |_| {}).await?;
        Ok(list.items)
    }
}

/// An instance as the other server shows it, with its owner taken from the tag.
fn from_remote(mut i: Instance) -> Instance {
    i.owner = i.tags.remove(OWNER_TAG);
    if let Some(t) = i.tags.remove(TOKEN_TAG) {
        i.client_token = Some(t);
    }
    i
}

/// The most ids the native API takes in one listing request.
const MAX_IDS: usize = 100;

/// `ids:CHUNK:TOKEN` (an empty TOKEN: the chunk's first page).
fn parse_chunk_token(t: &str) -> Option<(usize, Option<String>)> {
    let rest = t.strip_prefix("ids:")?;
    let (chunk, inner) = rest.split_once(':')?;
    let chunk = chunk.parse().ok()?;
    Some((chunk, (!inner.is_empty()).then(|| inner.to_owned())))
}

/// The first reserved key among `keys`.
fn reserved_in<'a>(mut keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    keys.find(|k| RESERVED_TAGS.contains(k))
}

impl RemoteDriver {
    fn shown(&self, i: Instance) -> Instance {
        if self.tagged_owners {
            from_remote(i)
        } else {
            i
        }
    }
}

fn reserved(op: Operation, key: &str) -> Error {
    Error::invalid_argument(
        "tags",
        format!("tag key `{key}` is reserved: it carries the instance's owner or client token"),
    )
    .with_context("tag", key)
    .with_operation(op)
}

/// The `Idempotency-Key` of a client token: the token itself when the server takes it
/// as it is.
fn idempotency_key(token: &str) -> String {
    if !token.is_empty() && token.len() <= 255 && token.bytes().all(|b| b.is_ascii_graphic()) {
        return token.to_owned();
    }
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[async_trait]
impl Driver for RemoteDriver {
    fn name(&self) -> &str {
        crate::DRIVER
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn list_instances(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<Page<Instance>> {
        let op = Operation::ListInstances;
        self.unsupported(op)?;
        if let Some(k) = reserved_in(filter.tags.keys().map(String::as_str)) {
            return Err(reserved(op, k));
        }
        let mut f = filter.clone();
        if let Some(o) = f.owner.take() {
            if !self.tagged_owners {
                return Err(Error::invalid_argument(
                    "owner",
                    "this view of the provider lists the key's tenant's instances only",
                )
                .with_operation(op));
            }
            f.tags.insert(OWNER_TAG.to_owned(), Some(o));
        }
        if f.ids.len() <= MAX_IDS {
            let list: ListResponse<Instance> = self
                .on(op, Method::GET, &["instances"], |c| {
                    c.query = filter_query(&f, page)
                })
                .await?;
            return Ok(Page {
                items: list.items.into_iter().map(|i| self.shown(i)).collect(),
                next: list.next_page_token,
            });
        }
        // More ids than one request may name: the ids in chunks, one after the other;
        // the token says which chunk and where in it (`ids:CHUNK:TOKEN`).
        let (chunk, inner) = match &page.token {
            None => (0, None),
            Some(t) => parse_chunk_token(t.as_str())
                .filter(|(c, _)| *c * MAX_IDS < f.ids.len())
                .ok_or_else(|| {
                    Error::invalid_argument(
                        "page_token",
                        format!("`{t}` is not a page of this listing"),
                    )
                    .with_operation(op)
                })?,
        };
        let all = std::mem::take(&mut f.ids);
        f.ids = all[chunk * MAX_IDS..]
            .iter()
            .take(MAX_IDS)
            .cloned()
            .collect();
        let inner_page = PageRequest {
            limit: page.limit,
            token: inner.map(PageToken::new),
        };
        let list: ListResponse<Instance> = self
            .on(op, Method::GET, &["instances"], |c| {
                c.query = filter_query(&f, &inner_page)
            })
            .await?;
        let next = match list.next_page_token {
            Some(t) => Some(PageToken::new(format!("ids:{chunk}:{t}"))),
            None if (chunk + 1) * MAX_IDS < all.len() => {
                Some(PageToken::new(format!("ids:{}:", chunk + 1)))
            }
            None => None,
        };
        Ok(Page {
            items: list.items.into_iter().map(|i| self.shown(i)).collect(),
            next,
        })
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.instance_call(Operation::GetInstance, Method::GET, id, None)
            .await
    }

    async fn create_instance(&self, spec: &InstanceSpec) -> Result<Instance> {
        let op = Operation::CreateInstance;
        self.unsupported(op)?;
        cms_core::check_instance_spec(spec)?;
        if let Some(k) = reserved_in(spec.tags.keys().map(String::as_str)) {
            return Err(reserved(op, k));
        }
        let mut tags = spec.tags.clone();
        if spec.owner.is_some() && !self.tagged_owners {
            return Err(Error::invalid_argument(
                "owner",
                "this view of the provider creates for the key's tenant only",
            )
            .with_operation(op));
        }
        if self.tagged_owners {
            let kept = usize::from(spec.owner.is_some()) + usize::from(spec.client_token.is_some());
            if tags.len() + kept > cms_core::MAX_TAGS {
                return Err(Error::invalid_argument(
                    "tags",
                    format!(
                        "{} tags given; this instance takes at most {} here \
                         ({kept} tag(s) carry its owner and client token)",
                        tags.len(),
                        cms_core::MAX_TAGS - kept
                    ),
                )
                .with_operation(op));
            }
            if let Some(o) = &spec.owner {
                tags.insert(OWNER_TAG.to_owned(), o.clone());
            }
            if let Some(t) = &spec.client_token {
                tags.insert(TOKEN_TAG.to_owned(), t.clone());
            }
        }
        let body = CreateInstanceBody {
            name: &spec.name,
            image_id: &spec.image_id,
            flavor_id: &spec.flavor_id,
            network_ids: &spec.network_ids,
            location_id: spec.location_id.as_ref(),
            key_name: spec.key_name.as_deref(),
            user_data: spec.user_data.as_deref(),
            tags,
        };
        let i: Instance = self
            .on(op, Method::POST, &["instances"], |c| {
                c.set_body(&body);
                c.idempotency_key = spec.client_token.as_deref().map(idempotency_key);
            })
            .await?;
        Ok(self.shown(i))
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.instance_call(Operation::StartInstance, Method::POST, id, Some("start"))
            .await
    }

    async fn stop_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.instance_call(Operation::StopInstance, Method::POST, id, Some("stop"))
            .await
    }

    async fn reboot_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.instance_call(Operation::RebootInstance, Method::POST, id, Some("reboot"))
            .await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.instance_call(Operation::DeleteInstance, Method::DELETE, id, None)
            .await
    }

    async fn update_instance_tags(
        &self,
        id: &InstanceId,
        changes: &TagChanges,
    ) -> Result<Instance> {
        let op = Operation::UpdateInstanceTags;
        self.unsupported(op)?;
        changes.check()?;
        if let Some(k) = reserved_in(changes.keys()) {
            return Err(reserved(op, k));
        }
        let mut body: TagPatch<'_> = changes.remove.iter().map(|k| (k.as_str(), None)).collect();
        body.extend(
            changes
                .set
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        );
        let i: Instance = self
            .on(
                op,
                Method::PATCH,
                &["instances", id.as_str(), "tags"],
                |c| c.set_body(&body),
            )
            .await?;
        Ok(self.shown(i))
    }

    async fn console_output(&self, id: &InstanceId) -> Result<ConsoleOutput> {
        let tail = ["instances", id.as_str(), "console"];
        self.on(Operation::GetConsoleOutput, Method::GET, &tail, |_| {})
            .await
    }

    async fn list_images(&self, filter: &ImageFilter, page: &PageRequest) -> Result<Page<Image>> {
        // Images are the upstream's catalogue: it keeps no owners of this side's.
        let mut listed: Page<Image> = self.list(Operation::ListImages, "images", page).await?;
        listed
            .items
            .retain(|i| filter.ids.is_empty() || filter.ids.contains(&i.id));
        if filter.owner.is_some() && !filter.include_shared {
            listed.items.clear();
        }
        Ok(listed)
    }

    async fn get_image(&self, id: &ImageId) -> Result<Image> {
        let tail = ["images", id.as_str()];
        self.on(Operation::GetImage, Method::GET, &tail, |_| {})
            .await
    }

    async fn list_flavors(&self, page: &PageRequest) -> Result<Page<Flavor>> {
        self.list(Operation::ListFlavors, "flavors", page).await
    }

    async fn list_networks(&self, page: &PageRequest) -> Result<Page<Network>> {
        self.list(Operation::ListNetworks, "networks", page).await
    }

    async fn get_network(&self, id: &NetworkId) -> Result<Network> {
        let tail = ["networks", id.as_str()];
        self.on(Operation::GetNetwork, Method::GET, &tail, |_| {})
            .await
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<Network> {
        cms_core::check_network_spec(spec)?;
        self.on(Operation::CreateNetwork, Method::POST, &["networks"], |c| {
            c.set_body(spec)
        })
        .await
    }

    async fn delete_network(&self, id: &NetworkId) -> Result<()> {
        let tail = ["networks", id.as_str()];
        self.on(Operation::DeleteNetwork, Method::DELETE, &tail, |_| {})
            .await
    }

    async fn list_locations(&self) -> Result<Vec<Location>> {
        self.all(Operation::ListLocations, "locations").await
    }

    async fn list_key_pairs(&self) -> Result<Vec<KeyPair>> {
        self.all(Operation::ListKeyPairs, "key-pairs").await
    }

    async fn create_key_pair(&self, spec: &KeyPairSpec) -> Result<KeyPair> {
        let op = if spec.public_key.is_some() {
            Operation::ImportKeyPair
        } else {
            Operation::CreateKeyPair
        };
        self.on(op, Method::POST, &["key-pairs"], |c| c.set_body(spec))
            .await
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        let tail = ["key-pairs", name];
        self.on(Operation::DeleteKeyPair, Method::DELETE, &tail, |_| {})
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_become_idempotency_keys() {
        assert_eq!(idempotency_key("web-1"), "web-1");
        let k = idempotency_key("with space");
        assert!(k.starts_with("sha256:") && k.len() == 71, "{k}");
        assert_eq!(k, idempotency_key("with space"));
        assert_ne!(k, idempotency_key("with  space"));
        assert!(idempotency_key(&"x".repeat(300)).starts_with("sha256:"));
    }

    #[test]
    fn the_owner_tag_becomes_the_owner() {
        let mut i = Instance {
            id: InstanceId::new("i-1"),
            name: String::new(),
            state: cms_core::InstanceState::Running,
            raw_state: "running".into(),
            image_id: None,
            flavor_id: None,
            location_id: None,
            network_ids: vec![],
            key_name: None,
            private_ips: vec![],
            public_ips: vec![],
            tags: [(OWNER_TAG.to_owned(), "alice".to_owned())].into(),
            created_at: None,
            client_token: None,
            owner: Some("the-other-servers-tenant".into()),
            security_group_ids: Default::default(),
            volumes: vec![],
        };
        i = from_remote(i);
        assert_eq!(i.owner.as_deref(), Some("alice"));
        assert!(i.tags.is_empty());
        i.tags.insert(TOKEN_TAG.into(), "tok".into());
        i.client_token = Some("the-other-servers-token".into());
        i = from_remote(i);
        assert_eq!(i.client_token.as_deref(), Some("tok"));
        assert_eq!(from_remote(i).owner, None);
    }
}
