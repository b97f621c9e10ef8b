//! Volumes, snapshots, captured images, security groups and public addresses as a
//! tenant sees them, by the same rules as instances:
//!
//! - **Ownership travels with the object**: every create names the tenant as the
//!   owner, in the same backend call ([`VolumeSpec::owner`] and its siblings), and a
//!   member tenant's listings ask the driver for its own objects only, so pages are
//!   exact. A provider whose driver cannot keep owners of a family serves that family
//!   to admin tenants only.
//! - **Shared objects**: the images of the provider's catalogue and each network's
//!   default security group are every tenant's to use (launch from, put instances in),
//!   and only admins may change or delete them.
//! - **Another tenant's object is not found**, exactly as one that does not exist, by
//!   whichever id the client named (the backend's, or the public one the EC2 frontend
//!   shows).
//! - **References are checked**: a volume attached to an instance, a snapshot of a
//!   volume, an image of an instance, an address associated with an instance, a rule
//!   naming a group, an instance created in groups or from snapshots: each object
//!   named must be one the tenant may use.
//! - **Idempotency keys** on volume creates are claimed like an instance create's (the
//!   same key with another request is refused) and become the backend's client token.

use std::future::Future;
use std::sync::Arc;

use cms_core::{
    Address, AddressFilter, AddressId, AddressSpec, Error, ErrorKind, Image, ImageFilter, ImageId,
    ImageSpec, InstanceSpec, Operation, Page, PageRequest, PageToken, SecurityGroup,
    SecurityGroupFilter, SecurityGroupId, SecurityGroupSpec, SecurityRule, Snapshot,
    SnapshotFilter, SnapshotId, SnapshotSpec, Volume, VolumeFilter, VolumeId, VolumeSpec,
};

use super::create::{derived_token, Idempotency};
use super::instances::{InstanceRef, DEFAULT_LIMIT, MAX_LIMIT};
use super::{Provider, Service};
use crate::auth::Tenant;
use crate::store::{random_id, Entry, Kind, Seen};

/// An object as a frontend names it: by the backend's id (the native API) or by its
/// public id (the EC2 API).
pub type ObjectRef<'a> = InstanceRef<'a>;

/// An object as its tenant sees it, with its row in the id map when the caller asked
/// for public ids.
#[derive(Clone, Debug)]
pub struct Shown<T> {
    /// The object.
    pub item: T,
    /// Its public id and owner.
    pub entry: Option<Entry>,
}

impl<T> Shown<T> {
    /// The same object as the backend answers it after a change, with its row.
    fn after(self, item: T) -> Shown<T> {
        Shown {
            item,
            entry: self.entry,
        }
    }

    /// The row in the id map (present when public ids were asked for).
    pub fn entry(&self) -> &Entry {
        self.entry
            .as_ref()
            .expect("an object listed without public ids was asked for its entry")
    }
}

/// What the service needs to know of an object of a family.
pub trait Family: Clone + Send + Sync + 'static {
    /// Its kind in the id map.
    const KIND: Kind;
    /// Its name in messages (`volume`).
    const NOUN: &'static str;
    /// The backend's id.
    fn backend_id(&self) -> &str;
    /// Who it was made for.
    fn owner(&self) -> Option<&str>;
    /// What tells it from another object with the same backend id.
    fn identity(&self) -> Option<&str> {
        None
    }
    /// Whether every tenant may use it (a catalogue image, a default group).
    fn shared(&self) -> bool {
        false
    }
}

impl Family for Volume {
    const KIND: Kind = Kind::Volume;
    const NOUN: &'static str = "volume";
    fn backend_id(&self) -> &str {
        self.id.as_str()
    }
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    fn identity(&self) -> Option<&str> {
        self.client_token.as_deref()
    }
}

impl Family for Snapshot {
    const KIND: Kind = Kind::Snapshot;
    const NOUN: &'static str = "snapshot";
    fn backend_id(&self) -> &str {
        self.id.as_str()
    }
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
}

impl Family for Image {
    const KIND: Kind = Kind::Image;
    const NOUN: &'static str = "image";
    fn backend_id(&self) -> &str {
        self.id.as_str()
    }
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    fn shared(&self) -> bool {
        self.shared
    }
}

impl Family for SecurityGroup {
    const KIND: Kind = Kind::SecurityGroup;
    const NOUN: &'static str = "security group";
    fn backend_id(&self) -> &str {
        self.id.as_str()
    }
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    fn shared(&self) -> bool {
        self.is_default
    }
}

impl Family for Address {
    const KIND: Kind = Kind::Address;
    const NOUN: &'static str = "address";
    fn backend_id(&self) -> &str {
        self.id.as_str()
    }
    fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
}

/// Whether `tenant` may see and use `item`.
fn may_see<T: Family>(tenant: &Tenant, item: &T) -> bool {
    tenant.is_admin() || item.shared() || item.owner() == Some(&*tenant.name)
}

/// Whether `tenant` may change or delete `item` (shared objects: admins only).
fn may_change<T: Family>(tenant: &Tenant, item: &T) -> bool {
    tenant.is_admin() || (!item.shared() && item.owner() == Some(&*tenant.name))
}

fn not_found(p: &Provider, noun: &str, shown: &str, op: Operation) -> Error {
    Error::not_found(noun, shown)
        .with_operation(op)
        .with_provider(p.name.to_string())
}

/// What the store is told about an object the backend shows.
fn seen<T: Family>(item: &T) -> Seen<'_> {
    Seen {
        backend_id: item.backend_id(),
        identity: item.identity(),
        tenant: item.owner(),
    }
}

/// The page size of a listing of `p` whose driver pages by `cap` (0: everything).
fn limit_of(cap: u32, page: &PageRequest) -> usize {
    let cap = match cap {
        0 => MAX_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    page.limit
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT)
        .min(cap) as usize
}

/// Fills a page of `limit` items from a driver's pages (which may be short), and
/// looks one item ahead when it is full, so that no page with a next token is followed
/// by an empty one. The token is the driver's, so paging under concurrent creates
/// neither loses nor repeats an object.
async fn fill<T, F, Fut>(limit: usize, token: Option<PageToken>, fetch: F) -> Result<Page<T>, Error>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, Error>>,
{
    let mut items: Vec<T> = Vec::with_capacity(limit.min(256));
    let mut cursor = token;
    loop {
        let need = (limit - items.len()) as u32;
        let got = fetch(PageRequest {
            limit: Some(need),
            token: cursor.clone(),
        })
        .await?;
        let mut got_items = got.items;
        got_items.truncate(need as usize);
        items.extend(got_items);
        match got.next {
            None => return Ok(Page { items, next: None }),
            // A driver that hands back the token it was given would loop forever.
            Some(n) if Some(&n) == cursor.as_ref() => return Ok(Page { items, next: None }),
            Some(n) => cursor = Some(n),
        }
        if items.len() >= limit {
            break;
        }
    }
    let next = cursor.clone();
    let mut peek = cursor;
    loop {
        let got = fetch(PageRequest {
            limit: Some(1),
            token: peek.clone(),
        })
        .await?;
        if !got.items.is_empty() {
            return Ok(Page { items, next });
        }
        match got.next {
            Some(n) if Some(&n) != peek.as_ref() => peek = Some(n),
            _ => return Ok(Page { items, next: None }),
        }
    }
}

/// The client token of a create with idempotency key `key` (see the instance creates'
/// tokens).
fn client_token_of(tenant: &Tenant, p: &Provider, kind: Kind, idem: &Idempotency) -> String {
    derived_token(
        &tenant.name,
        &p.name,
        &format!("{}:{}:{}", kind.as_str(), idem.scope, idem.key),
        0,
    )
}

impl Service {
    /// `Unsupported` when `p`'s driver does not declare `op`.
    fn require(&self, p: &Provider, op: Operation) -> Result<(), Error> {
        if p.capabilities().supports(op) {
            Ok(())
        } else {
            Err(Error::unsupported(op, p.driver).with_provider(p.name.to_string()))
        }
    }

    /// The owner filter of a listing: the tenant's name for members, whose provider
    /// must keep owners of the family (`kept`); none for admins.
    fn owner_scope(
        &self,
        tenant: &Tenant,
        p: &Provider,
        kept: bool,
        noun: &str,
    ) -> Result<Option<String>, Error> {
        if tenant.is_admin() {
            return Ok(None);
        }
        if !kept {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "provider `{}` (driver {}) cannot keep who owns a {noun}, which the server \
                     needs to keep tenants apart; only admin tenants may use its {noun}s",
                    p.name, p.driver
                ),
            )
            .with_provider(p.name.to_string()));
        }
        Ok(Some(tenant.name.to_string()))
    }

    /// The rows of `items` in the id map (made for the ones never seen), for frontends
    /// that show public ids.
    async fn rows<T: Family>(&self, p: &Provider, items: &[T]) -> Result<Vec<Entry>, Error> {
        let seen: Vec<Seen<'_>> = items.iter().map(seen).collect();
        Ok(self.store.map(&p.name, T::KIND, &seen).await?)
    }

    /// One page of `limit` objects filled from the driver's pages by `fetch` (see
    /// [`fill`]), shown, with their rows when `entries`.
    async fn page_of<T, F, Fut>(
        &self,
        p: &Provider,
        limit: usize,
        page: &PageRequest,
        entries: bool,
        fetch: F,
    ) -> Result<Page<Shown<T>>, Error>
    where
        T: Family,
        F: Fn(PageRequest) -> Fut,
        Fut: Future<Output = Result<Page<T>, Error>>,
    {
        let got = fill(limit, page.token.clone(), fetch).await?;
        Ok(Page {
            items: self.shown(p, got.items, entries).await?,
            next: got.next,
        })
    }

    /// `items` shown, with their rows when `entries`.
    async fn shown<T: Family>(
        &self,
        p: &Provider,
        items: Vec<T>,
        entries: bool,
    ) -> Result<Vec<Shown<T>>, Error> {
        let rows = if entries {
            Some(self.rows(p, &items).await?)
        } else {
            None
        };
        let mut rows = rows.map(Vec::into_iter);
        Ok(items
            .into_iter()
            .map(|item| Shown {
                item,
                entry: rows.as_mut().and_then(Iterator::next),
            })
            .collect())
    }

    /// The public ids of objects of `kind` on `p` by their backend ids, in order
    /// (recording the ones never seen, as shared): what frontends that show public ids
    /// write for an object's references (a volume's instance, a rule's group).
    pub async fn public_ids_of(
        &self,
        p: &Provider,
        kind: Kind,
        backend_ids: &[&str],
    ) -> Result<Vec<Arc<str>>, Error> {
        let mut found = self.store.lookup(&p.name, kind, backend_ids).await?;
        let missing: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let ids: Vec<&str> = missing.iter().map(|&i| backend_ids[i]).collect();
            let made = self.store.catalogue_ids(&p.name, kind, &ids).await?;
            for (&i, public_id) in missing.iter().zip(made) {
                found[i] = Some(Entry {
                    public_id,
                    tenant: None,
                    identity: None,
                    reservation: None,
                    launch_index: 0,
                });
            }
        }
        Ok(found
            .into_iter()
            .map(|e| e.map(|e| e.public_id).unwrap_or_else(|| "".into()))
            .collect())
    }

    /// The backend ids of objects of `kind` on `p` named by `public_ids`, in order, as
    /// far as the store knows `tenant` may see them (the object decides when it is
    /// fetched); the ids that name none are the error.
    pub async fn resolve_objects(
        &self,
        tenant: &Tenant,
        p: &Provider,
        kind: Kind,
        public_ids: &[&str],
    ) -> Result<Result<Vec<Arc<str>>, Vec<String>>, Error> {
        let mut out = Vec::with_capacity(public_ids.len());
        let mut missing = Vec::new();
        for id in public_ids {
            match self.store.resolve(id).await? {
                Some(r)
                    if r.kind == kind
                        && *r.provider == *p.name
                        && (tenant.is_admin()
                            || r.entry.tenant.is_none()
                            || r.entry.tenant.as_deref() == Some(&*tenant.name)) =>
                {
                    out.push(r.backend_id)
                }
                _ => missing.push((*id).to_owned()),
            }
        }
        Ok(if missing.is_empty() {
            Ok(out)
        } else {
            Err(missing)
        })
    }

    /// One object of family `T` the tenant may see, by the id the client named:
    /// `NotFound` (naming that id) for an unknown one and for one the tenant may not
    /// see, alike. `get` asks the driver by backend id.
    async fn object<T, F, Fut>(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
        get: F,
    ) -> Result<Shown<T>, Error>
    where
        T: Family,
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (backend, public) = match r {
            ObjectRef::Backend(id) => (id.to_owned(), false),
            ObjectRef::Public(id) => match self.resolve_objects(tenant, p, T::KIND, &[id]).await? {
                Ok(v) => (v[0].to_string(), true),
                Err(_) => return Err(not_found(p, T::NOUN, id, op)),
            },
        };
        let item = match get(backend.clone()).await {
            Ok(item) => item,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(not_found(p, T::NOUN, r.shown(), op))
            }
            Err(e) => return Err(e.renamed(&backend, r.shown())),
        };
        if !may_see(tenant, &item) {
            return Err(not_found(p, T::NOUN, r.shown(), op));
        }
        let entry = if public {
            Some(self.rows(p, std::slice::from_ref(&item)).await?.remove(0))
        } else {
            None
        };
        if let Some(e) = &entry {
            if !e.names(&seen(&item)) {
                return Err(not_found(p, T::NOUN, r.shown(), op));
            }
        }
        Ok(Shown { item, entry })
    }

    /// [`object`](Self::object), for a change: shared objects are refused to members
    /// (`PermissionDenied`), whose use of them is reading and launching.
    async fn object_to_change<T, F, Fut>(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
        get: F,
    ) -> Result<Shown<T>, Error>
    where
        T: Family,
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let o = self.object(tenant, p, r, op, get).await?;
        if !may_change(tenant, &o.item) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} `{}` is shared by every tenant of provider `{}`; only an admin may \
                     change it (make your own)",
                    T::NOUN,
                    r.shown(),
                    p.name
                ),
            )
            .with_operation(op)
            .with_provider(p.name.to_string()));
        }
        Ok(o)
    }

    /// The row of an object just made, for frontends that show public ids.
    async fn made<T: Family>(&self, p: &Provider, item: T) -> Result<Shown<T>, Error> {
        let entry = self.rows(p, std::slice::from_ref(&item)).await?.remove(0);
        Ok(Shown {
            item,
            entry: Some(entry),
        })
    }

    /// Claims an idempotency key for a create of `kind`: the same key with another
    /// request is `InvalidArgument` (reason `idempotent_parameter_mismatch`).
    async fn claim(
        &self,
        tenant: &Tenant,
        p: &Provider,
        kind: Kind,
        idem: &Idempotency,
        op: Operation,
    ) -> Result<String, Error> {
        let scoped = format!("{}:{}:{}", kind.as_str(), idem.scope, idem.key);
        let claim = self
            .store
            .claim_token(
                &tenant.name,
                &p.name,
                &scoped,
                &idem.fingerprint,
                &random_id("r-"),
            )
            .await?;
        if !claim.same_request {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the idempotency key `{}` was used before with other parameters; repeat \
                     that request unchanged, or use a new key for a new request",
                    idem.key
                ),
            )
            .with_operation(op)
            .with_provider(p.name.to_string())
            .with_context("argument", "client_token")
            .with_context("reason", "idempotent_parameter_mismatch"));
        }
        Ok(client_token_of(tenant, p, kind, idem))
    }

    // ---- volumes ----

    /// One page of the volumes `tenant` may see on `p` matching `filter`: `limit`
    /// items unless it is the last page. With `entries`, each carries its public id.
    pub async fn list_volumes(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &VolumeFilter,
        page: &PageRequest,
        entries: bool,
    ) -> Result<Page<Shown<Volume>>, Error> {
        self.require(p, Operation::ListVolumes)?;
        let caps = p.capabilities().volumes;
        let mut f = filter.clone();
        f.owner = self.owner_scope(tenant, p, caps.owner, "volume")?;
        let limit = limit_of(caps.max_page_size, page);
        self.page_of(p, limit, page, entries, |req| {
            let f = &f;
            async move { p.cloud.list_volumes(f, &req).await }
        })
        .await
    }

    /// Every volume `tenant` may see on `p` matching `filter`.
    pub async fn collect_volumes(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &VolumeFilter,
        entries: bool,
    ) -> Result<Vec<Shown<Volume>>, Error> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(MAX_LIMIT);
        loop {
            let got = self.list_volumes(tenant, p, filter, &page, entries).await?;
            out.extend(got.items);
            match got.next {
                Some(t) => page = PageRequest::after(Some(MAX_LIMIT), t),
                None => return Ok(out),
            }
        }
    }

    /// One volume the tenant may see.
    pub async fn volume(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
    ) -> Result<Shown<Volume>, Error> {
        self.require(p, Operation::GetVolume)?;
        self.object(tenant, p, r, op, |id| async move {
            p.cloud.get_volume(&VolumeId::new(id)).await
        })
        .await
    }

    /// Creates a volume for `tenant` (from a snapshot it may see, when one is named).
    pub async fn create_volume(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &VolumeSpec,
        snapshot: Option<ObjectRef<'_>>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Shown<Volume>, Error> {
        let op = Operation::CreateVolume;
        self.require(p, op)?;
        let caps = p.capabilities().volumes;
        self.owner_scope(tenant, p, caps.owner, "volume")?;
        let mut spec = spec.clone();
        if let Some(s) = snapshot {
            let snap = self.snapshot(tenant, p, s, op).await?;
            spec.snapshot_id = Some(snap.item.id);
        }
        spec.owner = Some(tenant.name.to_string());
        spec.client_token = None;
        cms_core::check_volume_spec(&spec).map_err(|e| e.with_provider(p.name.to_string()))?;
        if let Some(idem) = idempotency {
            let token = self.claim(tenant, p, Kind::Volume, idem, op).await?;
            if !caps.client_token {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "provider `{}` (driver {}) cannot make volume creates idempotent; \
                         send the request without an idempotency key",
                        p.name, p.driver
                    ),
                )
                .with_operation(op)
                .with_provider(p.name.to_string()));
            }
            spec.client_token = Some(token);
        }
        let v = p.cloud.create_volume(&spec).await?;
        self.made(p, v).await
    }

    /// Deletes a volume the tenant may see.
    pub async fn delete_volume(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<Volume>, Error> {
        let op = Operation::DeleteVolume;
        self.require(p, op)?;
        let v = self.volume(tenant, p, r, op).await?;
        p.cloud
            .delete_volume(&v.item.id)
            .await
            .map_err(|e| e.renamed(v.item.id.as_str(), r.shown()))?;
        Ok(v)
    }

    /// Attaches a volume the tenant may see to an instance it may see.
    pub async fn attach_volume(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        instance: InstanceRef<'_>,
        device: Option<&str>,
    ) -> Result<Shown<Volume>, Error> {
        let op = Operation::AttachVolume;
        self.require(p, op)?;
        let v = self.volume(tenant, p, r, op).await?;
        if let Some(d) = device {
            cms_core::check_device(d).map_err(|e| e.with_operation(op))?;
        }
        let i = self.instance(tenant, p, instance, op).await?;
        let after = p
            .cloud
            .attach_volume(&v.item.id, &i.instance.id, device)
            .await
            .map_err(|e| {
                e.renamed(v.item.id.as_str(), r.shown())
                    .renamed(i.instance.id.as_str(), instance.shown())
            })?;
        Ok(v.after(after))
    }

    /// Detaches a volume the tenant may see.
    pub async fn detach_volume(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<Volume>, Error> {
        let op = Operation::DetachVolume;
        self.require(p, op)?;
        let v = self.volume(tenant, p, r, op).await?;
        let after = p
            .cloud
            .detach_volume(&v.item.id)
            .await
            .map_err(|e| e.renamed(v.item.id.as_str(), r.shown()))?;
        Ok(v.after(after))
    }

    // ---- snapshots ----

    /// One page of the snapshots `tenant` may see on `p` matching `filter`.
    pub async fn list_snapshots(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &SnapshotFilter,
        page: &PageRequest,
        entries: bool,
    ) -> Result<Page<Shown<Snapshot>>, Error> {
        self.require(p, Operation::ListSnapshots)?;
        let caps = p.capabilities().snapshots;
        let mut f = filter.clone();
        f.owner = self.owner_scope(tenant, p, caps.owner, "snapshot")?;
        let limit = limit_of(0, page);
        self.page_of(p, limit, page, entries, |req| {
            let f = &f;
            async move { p.cloud.list_snapshots(f, &req).await }
        })
        .await
    }

    /// One snapshot the tenant may see.
    pub async fn snapshot(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
    ) -> Result<Shown<Snapshot>, Error> {
        self.require(p, Operation::GetSnapshot)?;
        self.object(tenant, p, r, op, |id| async move {
            p.cloud.get_snapshot(&SnapshotId::new(id)).await
        })
        .await
    }

    /// Starts a snapshot of a volume the tenant may see.
    pub async fn create_snapshot(
        &self,
        tenant: &Tenant,
        p: &Provider,
        volume: ObjectRef<'_>,
        spec: &SnapshotSpec,
    ) -> Result<Shown<Snapshot>, Error> {
        let op = Operation::CreateSnapshot;
        self.require(p, op)?;
        self.owner_scope(tenant, p, p.capabilities().snapshots.owner, "snapshot")?;
        let v = self.volume(tenant, p, volume, op).await?;
        let mut spec = spec.clone();
        spec.volume_id = v.item.id.clone();
        spec.owner = Some(tenant.name.to_string());
        cms_core::check_snapshot_spec(&spec).map_err(|e| e.with_provider(p.name.to_string()))?;
        let s = p
            .cloud
            .create_snapshot(&spec)
            .await
            .map_err(|e| e.renamed(v.item.id.as_str(), volume.shown()))?;
        self.made(p, s).await
    }

    /// Deletes a snapshot the tenant may see.
    pub async fn delete_snapshot(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<Snapshot>, Error> {
        let op = Operation::DeleteSnapshot;
        self.require(p, op)?;
        let s = self.snapshot(tenant, p, r, op).await?;
        p.cloud
            .delete_snapshot(&s.item.id)
            .await
            .map_err(|e| e.renamed(s.item.id.as_str(), r.shown()))?;
        Ok(s)
    }

    // ---- images ----

    /// One page of the images `tenant` may launch from on `p` (the shared catalogue and
    /// the images it captured; every image for an admin) among `ids` (all when empty),
    /// with their public ids when `entries`.
    pub async fn list_images(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &ImageFilter,
        page: &PageRequest,
        entries: bool,
    ) -> Result<Page<Shown<Image>>, Error> {
        self.require(p, Operation::ListImages)?;
        let f = self.image_scope(tenant, p, filter);
        self.page_of(p, limit_of(0, page), page, entries, |req| {
            let f = &f;
            async move { p.cloud.list_images(f, &req).await }
        })
        .await
    }

    /// Every image `tenant` may launch from on `p` matching `filter`.
    pub async fn collect_images(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &ImageFilter,
    ) -> Result<Vec<Image>, Error> {
        self.require(p, Operation::ListImages)?;
        let f = self.image_scope(tenant, p, filter);
        p.cloud.collect_images_matching(&f).await
    }

    /// The filter a listing of `tenant` asks the driver: `filter` within what it may
    /// see (the catalogue and its own images; everything for an admin). A provider
    /// that keeps no owners of images has no captured images a member could own, so
    /// its members see its whole catalogue.
    fn image_scope(&self, tenant: &Tenant, p: &Provider, filter: &ImageFilter) -> ImageFilter {
        let mut f = filter.clone();
        if tenant.is_admin() || !p.capabilities().images.owner {
            return f;
        }
        if f.owner.is_some() {
            // "Only mine": the tenant's own captured images.
            f.owner = Some(tenant.name.to_string());
            f.include_shared = false;
        } else {
            f.owner = Some(tenant.name.to_string());
            f.include_shared = true;
        }
        f
    }

    /// One image the tenant may launch from.
    pub async fn image(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
    ) -> Result<Shown<Image>, Error> {
        self.require(p, Operation::GetImage)?;
        self.object(tenant, p, r, op, |id| async move {
            p.cloud.get_image(&ImageId::new(id)).await
        })
        .await
    }

    /// Captures an image of an instance the tenant may see.
    pub async fn create_image(
        &self,
        tenant: &Tenant,
        p: &Provider,
        instance: InstanceRef<'_>,
        spec: &ImageSpec,
    ) -> Result<Shown<Image>, Error> {
        let op = Operation::CreateImage;
        self.require(p, op)?;
        self.owner_scope(tenant, p, p.capabilities().images.owner, "captured image")?;
        let i = self.instance(tenant, p, instance, op).await?;
        let mut spec = spec.clone();
        spec.instance_id = i.instance.id.clone();
        spec.owner = Some(tenant.name.to_string());
        cms_core::check_image_spec(&spec).map_err(|e| e.with_provider(p.name.to_string()))?;
        let image = p
            .cloud
            .create_image(&spec)
            .await
            .map_err(|e| e.renamed(i.instance.id.as_str(), instance.shown()))?;
        self.made(p, image).await
    }

    /// Deletes an image the tenant captured (shared ones: admins only).
    pub async fn delete_image(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<Image>, Error> {
        let op = Operation::DeleteImage;
        self.require(p, op)?;
        let image = self
            .object_to_change(tenant, p, r, op, |id| async move {
                p.cloud.get_image(&ImageId::new(id)).await
            })
            .await?;
        p.cloud
            .delete_image(&image.item.id)
            .await
            .map_err(|e| e.renamed(image.item.id.as_str(), r.shown()))?;
        Ok(image)
    }

    // ---- security groups ----

    /// One page of the security groups `tenant` may use on `p` matching `filter` (its
    /// own and the default groups; every group for an admin).
    pub async fn list_security_groups(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &SecurityGroupFilter,
        page: &PageRequest,
        entries: bool,
    ) -> Result<Page<Shown<SecurityGroup>>, Error> {
        self.require(p, Operation::ListSecurityGroups)?;
        let caps = p.capabilities().security_groups;
        let mut f = filter.clone();
        if let Some(owner) = self.owner_scope(tenant, p, caps.owner, "security group")? {
            f.owner = Some(owner);
            f.include_default = true;
        }
        self.page_of(p, limit_of(0, page), page, entries, |req| {
            let f = &f;
            async move { p.cloud.list_security_groups(f, &req).await }
        })
        .await
    }

    /// One security group the tenant may use.
    pub async fn security_group(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
    ) -> Result<Shown<SecurityGroup>, Error> {
        self.require(p, Operation::GetSecurityGroup)?;
        self.object(tenant, p, r, op, |id| async move {
            p.cloud.get_security_group(&SecurityGroupId::new(id)).await
        })
        .await
    }

    /// Creates a security group for `tenant`.
    pub async fn create_security_group(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &SecurityGroupSpec,
    ) -> Result<Shown<SecurityGroup>, Error> {
        let op = Operation::CreateSecurityGroup;
        self.require(p, op)?;
        self.owner_scope(
            tenant,
            p,
            p.capabilities().security_groups.owner,
            "security group",
        )?;
        let mut spec = spec.clone();
        spec.owner = Some(tenant.name.to_string());
        cms_core::check_security_group_spec(&spec)
            .map_err(|e| e.with_provider(p.name.to_string()))?;
        let g = p.cloud.create_security_group(&spec).await?;
        self.made(p, g).await
    }

    /// Deletes a security group of the tenant's.
    pub async fn delete_security_group(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<SecurityGroup>, Error> {
        let op = Operation::DeleteSecurityGroup;
        self.require(p, op)?;
        let g = self
            .object_to_change(tenant, p, r, op, |id| async move {
                p.cloud.get_security_group(&SecurityGroupId::new(id)).await
            })
            .await?;
        p.cloud
            .delete_security_group(&g.item.id)
            .await
            .map_err(|e| e.renamed(g.item.id.as_str(), r.shown()))?;
        Ok(g)
    }

    /// Adds (`add`) or removes rules of a security group of the tenant's; the groups
    /// rules name must be ones it may use (their ids are backend ids here: frontends
    /// that show public ids resolve them first).
    pub async fn change_security_rules(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        rules: &[SecurityRule],
        add: bool,
    ) -> Result<Shown<SecurityGroup>, Error> {
        let op = if add {
            Operation::AddSecurityRules
        } else {
            Operation::RemoveSecurityRules
        };
        self.require(p, op)?;
        cms_core::check_security_rules(rules, op)
            .map_err(|e| e.with_provider(p.name.to_string()))?;
        let g = self
            .object_to_change(tenant, p, r, op, |id| async move {
                p.cloud.get_security_group(&SecurityGroupId::new(id)).await
            })
            .await?;
        if add {
            for rule in rules {
                if let cms_core::RulePeer::Group(peer) = &rule.peer {
                    if *peer != g.item.id {
                        self.security_group(tenant, p, ObjectRef::Backend(peer.as_str()), op)
                            .await?;
                    }
                }
            }
        }
        let c = &p.cloud;
        let after = if add {
            c.add_security_rules(&g.item.id, rules).await
        } else {
            c.remove_security_rules(&g.item.id, rules).await
        }
        .map_err(|e| e.renamed(g.item.id.as_str(), r.shown()))?;
        Ok(g.after(after))
    }

    // ---- addresses ----

    /// One page of the addresses `tenant` holds on `p`.
    pub async fn list_addresses(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &AddressFilter,
        page: &PageRequest,
        entries: bool,
    ) -> Result<Page<Shown<Address>>, Error> {
        self.require(p, Operation::ListAddresses)?;
        let caps = p.capabilities().addresses;
        let mut f = filter.clone();
        f.owner = self.owner_scope(tenant, p, caps.owner, "address")?;
        self.page_of(p, limit_of(0, page), page, entries, |req| {
            let f = &f;
            async move { p.cloud.list_addresses(f, &req).await }
        })
        .await
    }

    /// One address the tenant holds.
    pub async fn address(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        op: Operation,
    ) -> Result<Shown<Address>, Error> {
        self.require(p, Operation::GetAddress)?;
        self.object(tenant, p, r, op, |id| async move {
            p.cloud.get_address(&AddressId::new(id)).await
        })
        .await
    }

    /// Allocates an address for `tenant`.
    pub async fn allocate_address(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &AddressSpec,
    ) -> Result<Shown<Address>, Error> {
        let op = Operation::AllocateAddress;
        self.require(p, op)?;
        self.owner_scope(tenant, p, p.capabilities().addresses.owner, "address")?;
        let mut spec = spec.clone();
        spec.owner = Some(tenant.name.to_string());
        cms_core::check_address_spec(&spec).map_err(|e| e.with_provider(p.name.to_string()))?;
        let a = p.cloud.allocate_address(&spec).await?;
        self.made(p, a).await
    }

    /// Releases an address the tenant holds.
    pub async fn release_address(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<Address>, Error> {
        let op = Operation::ReleaseAddress;
        self.require(p, op)?;
        let a = self.address(tenant, p, r, op).await?;
        p.cloud
            .release_address(&a.item.id)
            .await
            .map_err(|e| e.renamed(a.item.id.as_str(), r.shown()))?;
        Ok(a)
    }

    /// Associates an address the tenant holds with an instance it may see.
    pub async fn associate_address(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
        instance: InstanceRef<'_>,
        private_ip: Option<&str>,
    ) -> Result<Shown<Address>, Error> {
        let op = Operation::AssociateAddress;
        self.require(p, op)?;
        let a = self.address(tenant, p, r, op).await?;
        let i = self.instance(tenant, p, instance, op).await?;
        let after = p
            .cloud
            .associate_address(&a.item.id, &i.instance.id, private_ip)
            .await
            .map_err(|e| {
                e.renamed(a.item.id.as_str(), r.shown())
                    .renamed(i.instance.id.as_str(), instance.shown())
            })?;
        Ok(a.after(after))
    }

    /// Disassociates an address the tenant holds.
    pub async fn disassociate_address(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: ObjectRef<'_>,
    ) -> Result<Shown<Address>, Error> {
        let op = Operation::DisassociateAddress;
        self.require(p, op)?;
        let a = self.address(tenant, p, r, op).await?;
        let after = p
            .cloud
            .disassociate_address(&a.item.id)
            .await
            .map_err(|e| e.renamed(a.item.id.as_str(), r.shown()))?;
        Ok(a.after(after))
    }

    // ---- what an instance create names ----

    /// Checks that the security groups and snapshots an instance create names are
    /// ones `tenant` may use (the ids are backend ids), and that the provider can make
    /// instances with them.
    pub(super) async fn check_instance_references(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &InstanceSpec,
    ) -> Result<(), Error> {
        let op = Operation::CreateInstance;
        let caps = p.capabilities().instances;
        if !spec.security_group_ids.is_empty() && !caps.security_groups {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "provider `{}` (driver {}) cannot put instances in security groups",
                    p.name, p.driver
                ),
            )
            .with_operation(op)
            .with_provider(p.name.to_string()));
        }
        if !spec.volumes.is_empty() && !caps.volumes {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "provider `{}` (driver {}) cannot make volumes with an instance",
                    p.name, p.driver
                ),
            )
            .with_operation(op)
            .with_provider(p.name.to_string()));
        }
        for g in &spec.security_group_ids {
            self.security_group(tenant, p, ObjectRef::Backend(g.as_str()), op)
                .await?;
        }
        for v in &spec.volumes {
            if let Some(s) = &v.snapshot_id {
                self.snapshot(tenant, p, ObjectRef::Backend(s.as_str()), op)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_filled_and_never_end_empty() {
        // A driver answering at most 2 items a page, 5 in all.
        let all: Vec<u32> = (0..5).collect();
        let fetch = |req: PageRequest| {
            let all = all.clone();
            async move {
                let start: usize = req.token.map_or(0, |t| t.as_str().parse().unwrap());
                let n = (req.limit.unwrap_or(2) as usize).min(2);
                let end = (start + n).min(all.len());
                Ok::<_, Error>(Page {
                    items: all[start..end].to_vec(),
                    next: (end < all.len()).then(|| PageToken::new(end.to_string())),
                })
            }
        };
        let first = fill(3, None, fetch).await.unwrap();
        assert_eq!(first.items, [0, 1, 2]);
        let second = fill(3, first.next, fetch).await.unwrap();
        assert_eq!(second.items, [3, 4]);
        assert_eq!(second.next, None);
        let exact = fill(5, None, fetch).await.unwrap();
        assert_eq!(exact.items.len(), 5);
        assert_eq!(exact.next, None, "a full last page has no next token");
    }
}
