//! Instances as a tenant sees them: exact pages of its own (or, for an admin, of all),
//! one instance by the id the client knows, state actions and tag changes.
//!
//! A member's listing asks the driver for the tenant's instances only (the owner
//! filter, which the memory cloud answers from an index and EC2 with a tag filter), and
//! fills each page: when the driver answers short pages (a backend that filters late,
//! or a frontend's own filter dropping items), the next driver page is asked for until
//! the page holds `limit` items or the listing ends; a full page looks one item ahead,
//! so that no page with a next token is followed by an empty one. Paging under
//! concurrent creates neither loses nor repeats an instance: the token is the driver's.

use std::sync::Arc;

use cms_core::{
    ConsoleOutput, Error, ErrorKind, Instance, InstanceAction, InstanceFilter, InstanceId,
    InstanceState, Operation, Page, PageRequest, PageToken, TagChanges,
};

use super::keys::shown_key_name;
use super::{Provider, Service};
use crate::auth::Tenant;
use crate::store::{Entry, Kind, Seen};

/// The largest page a listing answers.
pub const MAX_LIMIT: u32 = 1000;
/// The page size when the client gives none.
pub const DEFAULT_LIMIT: u32 = 100;

/// An instance as its tenant sees it (key names without the tenant's prefix), with its
/// row in the id map when the caller asked for public ids.
#[derive(Clone, Debug)]
pub struct Owned {
    /// The instance: the driver's shared view when it listed one and its tenant sees
    /// it as it is (see [`super::views`]).
    pub instance: Arc<Instance>,
    /// Its public id, owner and reservation (shared: a listing moves no copy).
    pub entry: Option<Arc<Entry>>,
}

impl Owned {
    /// The row in the id map (present when public ids were asked for).
    pub fn entry(&self) -> &Entry {
        self.entry
            .as_ref()
            .expect("an instance listed without public ids was asked for its entry")
    }
}

/// An instance as a frontend names it.
#[derive(Clone, Copy, Debug)]
pub enum InstanceRef<'a> {
    /// By the backend's id (the native API).
    Backend(&'a str),
    /// By its public id (`i-…`, the EC2 API).
    Public(&'a str),
}

impl InstanceRef<'_> {
    /// The id as the client named it.
    pub fn shown(&self) -> &str {
        match self {
            InstanceRef::Backend(s) | InstanceRef::Public(s) => s,
        }
    }
}

/// Which instances of a provider a request may touch, and the filter that says so.
fn scoped(tenant: &Tenant, p: &Provider, filter: &InstanceFilter) -> Result<InstanceFilter, Error> {
    let mut f = filter.clone();
    if !tenant.is_admin() {
        if !p.capabilities().instances.owner {
            return Err(no_owners(p));
        }
        f.owner = Some(tenant.name.to_string());
    }
    Ok(f)
}

pub(super) fn no_owners(p: &Provider) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "provider `{}` (driver {}) cannot keep who owns an instance, which the server \
             needs to keep tenants apart; only admin tenants may use its instances",
            p.name, p.driver
        ),
    )
    .with_provider(p.name.to_string())
}

fn not_found(p: &Provider, shown: &str, op: Operation) -> Error {
    Error::not_found("instance", shown)
        .with_operation(op)
        .with_provider(p.name.to_string())
}

/// Whether `tenant` may see `instance` (its row, if any, for instances made before
/// owners were kept on instances).
fn may_see(tenant: &Tenant, instance: &Instance, entry: Option<&Entry>) -> bool {
    if tenant.is_admin() {
        return true;
    }
    match instance.owner.as_deref() {
        Some(o) => o == &*tenant.name,
        None => entry.and_then(|e| e.tenant.as_deref()) == Some(&*tenant.name),
    }
}

/// What the store is told about an instance the backend shows.
fn seen(i: &Instance) -> Seen<'_> {
    Seen {
        backend_id: i.id.as_str(),
        identity: i.client_token.as_deref(),
        tenant: i.owner.as_deref(),
    }
}

/// The instance as its tenant sees it: key names without the owner's prefix.
pub(super) fn shown(mut i: Instance) -> Arc<Instance> {
    show(&mut i);
    Arc::new(i)
}

/// Whether [`show`] changes the instance.
fn show_changes(i: &Instance) -> bool {
    i.key_name
        .as_deref()
        .is_some_and(|k| shown_key_name(i.owner.as_deref(), k).len() != k.len())
}

/// [`shown`] in place.
fn show(i: &mut Instance) {
    if let Some(k) = &i.key_name {
        let s = shown_key_name(i.owner.as_deref(), k);
        if s.len() != k.len() {
            i.key_name = Some(s.to_owned());
        }
    }
}

fn limit_of(p: &Provider, page: &PageRequest) -> usize {
    let cap = match p.capabilities().instances.max_page_size {
        0 => MAX_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    page.limit
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT)
        .min(cap) as usize
}

impl Service {
    /// The instances the backend shows as their tenant sees them, added to `out` (each
    /// instance moved once), with their rows when `entries`; those `keep` refuses are
    /// left out.
    async fn show_into(
        &self,
        p: &Provider,
        mut items: Vec<Arc<Instance>>,
        entries: bool,
        keep: Option<&(dyn Fn(&Owned) -> bool + Send + Sync)>,
        out: &mut Vec<Owned>,
    ) -> Result<(), Error> {
        // Views whose key name the tenant sees otherwise: the shown view is kept as
        // long as the driver's, so that what frontends derive from it can be kept too.
        let changed: Vec<usize> = (0..items.len())
            .filter(|&n| show_changes(&items[n]))
            .collect();
        if !changed.is_empty() {
            let views = p.shown.get_all(changed.iter().map(|&n| &items[n]), |i| {
                let mut i = i.clone();
                show(&mut i);
                Arc::new(i)
            });
            for (n, v) in changed.into_iter().zip(views) {
                items[n] = v;
            }
        }
        let rows = if entries {
            Some(self.entries_of(p, &items).await?)
        } else {
            None
        };
        let mut rows = rows.map(Vec::into_iter);
        out.reserve(items.len());
        for instance in items {
            let entry = rows.as_mut().and_then(Iterator::next);
            out.push(Owned { instance, entry });
            if keep.is_some_and(|k| !k(out.last().expect("just pushed"))) {
                out.pop();
            }
        }
        Ok(())
    }

    /// The rows of `items` in the id map, in order: kept with each shared view (a row
    /// does not change while the view stays the same), asked of the store for the
    /// others.
    async fn entries_of(
        &self,
        p: &Provider,
        items: &[Arc<Instance>],
    ) -> Result<Vec<Arc<Entry>>, Error> {
        let mut rows = p.entries.lookup(items.iter());
        let missing: Vec<usize> = (0..items.len()).filter(|&n| rows[n].is_none()).collect();
        if !missing.is_empty() {
            let seen: Vec<Seen<'_>> = missing.iter().map(|&n| seen(&items[n])).collect();
            let found = self.store.map(&p.name, Kind::Instance, &seen).await?;
            let mut fresh = Vec::with_capacity(missing.len());
            for (n, e) in missing.into_iter().zip(found) {
                let e = Arc::new(e);
                fresh.push((&items[n], e.clone()));
                rows[n] = Some(e);
            }
            p.entries.insert(fresh);
        }
        Ok(rows.into_iter().flatten().collect())
    }

    /// One page of the instances `tenant` may see on `p` that match `filter` (and
    /// `keep`, a frontend's own filter): `limit` items unless it is the last page, never
    /// an empty page with a next token. With `entries`, each carries its public id.
    pub async fn list_instances(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &InstanceFilter,
        page: &PageRequest,
        entries: bool,
        keep: Option<&(dyn Fn(&Owned) -> bool + Send + Sync)>,
    ) -> Result<Page<Owned>, Error> {
        let filter = scoped(tenant, p, filter)?;
        let limit = limit_of(p, page);
        let mut items: Vec<Owned> = Vec::with_capacity(limit.min(256));
        let mut cursor = page.token.clone();
        loop {
            let need = (limit - items.len()) as u32;
            let got = p
                .cloud
                .list_instances_shared(
                    &filter,
                    &PageRequest {
                        limit: Some(need),
                        token: cursor.clone(),
                    },
                )
                .await?;
            let mut got_items = got.items;
            got_items.truncate(need as usize);
            self.show_into(p, got_items, entries, keep, &mut items)
                .await?;
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
        // The page is full: is there anything after it?
        let next = cursor.clone();
        let ahead = if keep.is_some() { limit as u32 } else { 1 };
        let mut peek: Option<PageToken> = cursor;
        loop {
            let got = p
                .cloud
                .list_instances_shared(
                    &filter,
                    &PageRequest {
                        limit: Some(ahead),
                        token: peek.clone(),
                    },
                )
                .await?;
            let more = match keep {
                None => !got.items.is_empty(),
                Some(_) => {
                    let mut ahead = Vec::new();
                    self.show_into(p, got.items, entries, keep, &mut ahead)
                        .await?;
                    !ahead.is_empty()
                }
            };
            if more {
                return Ok(Page { items, next });
            }
            match got.next {
                Some(n) if Some(&n) != peek.as_ref() => peek = Some(n),
                _ => return Ok(Page { items, next: None }),
            }
        }
    }

    /// Every instance `tenant` may see on `p` that matches `filter`.
    pub async fn collect_instances(
        &self,
        tenant: &Tenant,
        p: &Provider,
        filter: &InstanceFilter,
        entries: bool,
    ) -> Result<Vec<Owned>, Error> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(MAX_LIMIT);
        loop {
            let got = self
                .list_instances(tenant, p, filter, &page, entries, None)
                .await?;
            out.extend(got.items);
            match got.next {
                Some(t) => page = PageRequest::after(Some(MAX_LIMIT), t),
                None => return Ok(out),
            }
        }
    }

    /// The backend ids of the instances `public_ids` name, in order, when `tenant` may
    /// see them as far as the store knows (the instance itself decides when it is
    /// fetched); the ids that name none are the error.
    pub async fn resolve_instances(
        &self,
        tenant: &Tenant,
        p: &Provider,
        public_ids: &[&str],
    ) -> Result<Result<Vec<(Arc<str>, Entry)>, Vec<String>>, Error> {
        let mut out = Vec::with_capacity(public_ids.len());
        let mut missing = Vec::new();
        for id in public_ids {
            let r = self.store.resolve(id).await?;
            match r {
                Some(r)
                    if *r.provider == *p.name
                        && r.kind == Kind::Instance
                        && (tenant.is_admin()
                            || r.entry.tenant.as_deref() == Some(&*tenant.name)) =>
                {
                    out.push((r.backend_id, r.entry))
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

    /// The instances of `public_ids` the tenant may see, as they are now, in order;
    /// the ids naming none (unknown, another tenant's, or gone from the backend) are the
    /// error.
    pub async fn instances_by_public_id(
        &self,
        tenant: &Tenant,
        p: &Provider,
        public_ids: &[&str],
        filter: &InstanceFilter,
    ) -> Result<Result<Vec<Owned>, Vec<String>>, Error> {
        let targets = match self.resolve_instances(tenant, p, public_ids).await? {
            Ok(t) => t,
            Err(missing) => return Ok(Err(missing)),
        };
        // The ids alone first (an id of an instance the filter leaves out is no error,
        // an id naming nothing is), then the filter.
        let mut f = scoped(tenant, p, &InstanceFilter::default())?;
        f.ids = targets.iter().map(|(b, _)| InstanceId::new(&**b)).collect();
        let mut found = Vec::with_capacity(targets.len());
        let mut page = PageRequest::first(MAX_LIMIT);
        loop {
            let got = p.cloud.list_instances(&f, &page).await?;
            found.extend(got.items);
            match got.next {
                Some(t) => page = PageRequest::after(Some(MAX_LIMIT), t),
                None => break,
            }
        }
        let mut out = Vec::with_capacity(targets.len());
        let mut missing = Vec::new();
        for ((backend, entry), public) in targets.into_iter().zip(public_ids) {
            match found.iter().find(|i| *i.id.as_str() == *backend) {
                Some(i) if entry.names(&seen(i)) && may_see(tenant, i, Some(&entry)) => {
                    if filter.matches(i) {
                        out.push(Owned {
                            instance: shown(i.clone()),
                            entry: Some(Arc::new(entry)),
                        })
                    }
                }
                // Unknown to the backend, or another object now: the id names nothing.
                _ => missing.push((*public).to_owned()),
            }
        }
        Ok(if missing.is_empty() {
            Ok(out)
        } else {
            Err(missing)
        })
    }

    /// The public ids the store has for instances of `p` (by backend id), in order;
    /// `None` for one it has none for (made outside this server, never listed).
    pub async fn public_ids_of_instances(
        &self,
        p: &Provider,
        backend_ids: &[&str],
    ) -> Result<Vec<Option<String>>, Error> {
        Ok(self
            .store
            .lookup(&p.name, Kind::Instance, backend_ids)
            .await?
            .into_iter()
            .map(|e| e.map(|e| e.public_id.to_string()))
            .collect())
    }

    /// One instance the tenant may see, by the id the client named: `NotFound` (naming
    /// that id) for an unknown one and for one the tenant may not see, alike.
    pub async fn instance(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: InstanceRef<'_>,
        op: Operation,
    ) -> Result<Owned, Error> {
        let (backend, entry): (Arc<str>, Option<Entry>) = match r {
            InstanceRef::Backend(id) => (id.into(), None),
            InstanceRef::Public(id) => match self.resolve_instances(tenant, p, &[id]).await? {
                Ok(mut v) => {
                    let (b, e) = v.remove(0);
                    (b, Some(e))
                }
                Err(_) => return Err(not_found(p, id, op)),
            },
        };
        let got = p
            .cloud
            .get_instance(&InstanceId::new(&*backend))
            .await
            .map_err(|e| e.renamed(&backend, r.shown()));
        let i = match got {
            Ok(i) => i,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(p, r.shown(), op)),
            Err(e) => return Err(e),
        };
        if entry.as_ref().is_some_and(|e| !e.names(&seen(&i))) {
            return Err(not_found(p, r.shown(), op));
        }
        let entry = match entry {
            Some(e) => Some(e),
            // Instances without an owner (made before owners were kept, or outside
            // cms): the store says whose they are.
            None if i.owner.is_none() && !tenant.is_admin() => self
                .store
                .lookup(&p.name, Kind::Instance, &[i.id.as_str()])
                .await?
                .pop()
                .flatten()
                .filter(|e| e.names(&seen(&i))),
            None => None,
        };
        if !may_see(tenant, &i, entry.as_ref()) {
            return Err(not_found(p, r.shown(), op));
        }
        Ok(Owned {
            instance: shown(i),
            entry: entry.map(Arc::new),
        })
    }

    /// Starts, stops, reboots or deletes an instance the tenant may see: its state
    /// before, and the instance after. A deleted instance no longer counts against its
    /// tenant's quota.
    pub async fn act(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: InstanceRef<'_>,
        action: InstanceAction,
    ) -> Result<(InstanceState, Owned), Error> {
        self.act_when(tenant, p, r, action, |_| Ok(true)).await
    }

    /// [`act`](Self::act), asking `when` first, with the instance as it is: `true`
    /// acts, `false` answers the instance as it is (an action that has nothing to do),
    /// an error is the answer. When the backend refuses the action for the state the
    /// instance is in (it changed since), `when` is asked again with the new state:
    /// a frontend with its own rules for each state (EC2's) keeps them even then.
    pub async fn act_when<E: From<Error>>(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: InstanceRef<'_>,
        action: InstanceAction,
        when: impl Fn(&Instance) -> Result<bool, E>,
    ) -> Result<(InstanceState, Owned), E> {
        let op = action.operation();
        if !p.capabilities().supports(op) {
            return Err(Error::unsupported(op, p.driver)
                .with_provider(p.name.to_string())
                .into());
        }
        let mut before = self.instance(tenant, p, r, op).await?;
        let mut retried = false;
        loop {
            if !when(&before.instance)? {
                return Ok((before.instance.state, before));
            }
            let id = before.instance.id.clone();
            let c = &p.cloud;
            let done = match action {
                InstanceAction::Start => c.start_instance(&id).await,
                InstanceAction::Stop => c.stop_instance(&id).await,
                InstanceAction::Reboot => c.reboot_instance(&id).await,
                InstanceAction::Delete => c.delete_instance(&id).await,
            };
            let after = match done {
                Ok(after) => after,
                Err(e) if e.kind() == ErrorKind::InvalidState && !retried => {
                    retried = true;
                    let now = self.instance(tenant, p, r, op).await?;
                    if now.instance.state == before.instance.state {
                        return Err(e.renamed(id.as_str(), r.shown()).into());
                    }
                    before = now;
                    continue;
                }
                Err(e) => return Err(e.renamed(id.as_str(), r.shown()).into()),
            };
            if action == InstanceAction::Delete {
                self.store
                    .mark_ended(&p.name, Kind::Instance, &[id.as_str()])
                    .await
                    .map_err(Error::from)?;
            }
            return Ok((
                before.instance.state,
                Owned {
                    instance: shown(after),
                    entry: before.entry,
                },
            ));
        }
    }

    /// What the console of an instance the tenant may see showed.
    pub async fn console_output(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: InstanceRef<'_>,
    ) -> Result<(Owned, ConsoleOutput), Error> {
        let op = Operation::GetConsoleOutput;
        if !p.capabilities().supports(op) {
            return Err(Error::unsupported(op, p.driver).with_provider(p.name.to_string()));
        }
        let o = self.instance(tenant, p, r, op).await?;
        let out = p
            .cloud
            .console_output(&o.instance.id)
            .await
            .map_err(|e| e.renamed(o.instance.id.as_str(), r.shown()))?;
        Ok((o, out))
    }

    /// The user data an instance was launched with through cms (`None`: none, or not
    /// launched through cms).
    pub async fn user_data(&self, o: &Owned) -> Result<Option<String>, Error> {
        match &o.entry {
            Some(e) => Ok(self
                .store
                .attribute(&e.public_id, crate::store::details::USER_DATA)
                .await?),
            None => Ok(None),
        }
    }

    /// Changes the tags of an instance the tenant may see.
    pub async fn update_tags(
        &self,
        tenant: &Tenant,
        p: &Provider,
        r: InstanceRef<'_>,
        changes: &TagChanges,
    ) -> Result<Owned, Error> {
        let op = Operation::UpdateInstanceTags;
        let before = self.instance(tenant, p, r, op).await?;
        let id = before.instance.id.clone();
        let after = p
            .cloud
            .update_instance_tags(&id, changes)
            .await
            .map_err(|e| e.renamed(id.as_str(), r.shown()))?;
        Ok(Owned {
            instance: shown(after),
            entry: before.entry,
        })
    }
}
