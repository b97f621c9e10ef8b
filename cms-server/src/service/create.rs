//! Creating instances: journaled first, owned from the first backend call, counted
//! against the tenant's quota, and settled after a crash.
//!
//! 1. An idempotency key (EC2 `ClientToken`, native `Idempotency-Key`) is claimed with
//!    a fingerprint of the request; the same key with another request is refused.
//! 2. Each instance of the request gets a client token, derived from the key (so a
//!    repeat, on any replica, gets the same tokens) or random.
//! 3. The creates are journaled with the tenant's quota checked, in one transaction
//!    ([`Store::begin_creates`](crate::store::Store::begin_creates)). A create whose
//!    token another request has journaled (the same key sent to two replicas at once)
//!    is waited for, not repeated, so one key makes one instance on every backend,
//!    even those that ignore client tokens.
//! 4. The backend is asked with the tenant as owner and the client token: the
//!    instance carries both from its first moment, so a tenant sees it even if this
//!    server dies before it answers.
//! 5. The object is recorded and the journal entry removed, in one transaction. A
//!    create that failed is removed from the journal; one whose outcome is unknown (the
//!    backend did not answer) stays for the settling below.
//!
//! A journal entry whose replica stopped renewing its lease (the process died) is
//! settled by another replica, or by the same server after a restart: the instance its
//! token made, if any, is recorded (with the reservation and launch index of the
//! request); if the backend has none, the entry is removed. Nothing is created then:
//! the client never got an answer, and repeats the request with its key if it wants it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cms_core::{Error, ErrorKind, Instance, InstanceFilter, InstanceId, InstanceSpec, Operation};
use sha2::{Digest, Sha256};

use super::instances::{no_owners, shown, Owned};
use super::{Provider, Service};
use crate::auth::Tenant;
use crate::store::details::USER_DATA;
use crate::store::{
    creates::CreateToken, random_id, Begin, CreateSlot, Entry, Kind, PendingCreate, Quota,
    QuotaScope, Record,
};

/// Instances created at once for one request.
const CONCURRENCY: usize = 8;
/// How often a request waits for another one carrying out the same create.
const WAIT_POLL: Duration = Duration::from_millis(100);
/// How long it waits at most.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// An idempotency key and what the request asked for, in a form the frontend chose
/// (a hash of its parameters).
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// Whose keys these are (`native`, `ec2`): each frontend's keys are apart.
    pub scope: &'static str,
    /// The client's key.
    pub key: String,
    /// The request's fingerprint: a repeat with the key must have the same.
    pub fingerprint: String,
}

/// What to create.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The instance (every one of the launch): its key name is the tenant's name for
    /// it; the owner and client token are the service's.
    pub spec: InstanceSpec,
    /// At least this many, or none.
    pub min: u32,
    /// At most this many (as many as the quota allows).
    pub max: u32,
    /// The client's idempotency key.
    pub idempotency: Option<Idempotency>,
    /// Without an idempotency key: the client tokens derive from this, unclaimed (the
    /// caller makes sure a repeat asks for the same: a deployment, whose instances'
    /// places are written down before they are made).
    pub seed: Option<String>,
}

/// What a create made: one reservation, its instances in launch order.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The reservation (`r-` and 17 hex digits).
    pub reservation: String,
    /// The instances, with their rows.
    pub instances: Vec<Owned>,
}

/// The client token of instance `i` of a request with idempotency key `key`:
/// `cms-` and 32 hex digits (EC2 takes at most 64 characters).
pub(super) fn derived_token(tenant: &str, provider: &str, key: &str, i: u32) -> String {
    let mut h = Sha256::new();
    for part in [tenant, provider, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(i.to_be_bytes());
    let d = h.finalize();
    let mut out = String::with_capacity(36);
    out.push_str("cms-");
    for b in &d[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether a failed create may have made its instance anyway (the backend did the
/// work but its answer was lost).
fn outcome_unknown(e: &Error) -> bool {
    !e.is_not_executed()
        && matches!(
            e.kind(),
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Backend
        )
}

fn quota_exceeded(
    tenant: &Tenant,
    p: &Provider,
    scope: QuotaScope,
    limit: u32,
    used: u32,
    wanted: u32,
) -> Error {
    let (where_, key) = match scope {
        QuotaScope::Total => (String::new(), "max_instances"),
        QuotaScope::Provider => (
            format!(" on provider `{}`", p.name),
            "max_instances_by_provider",
        ),
    };
    Error::new(
        ErrorKind::QuotaExceeded,
        format!(
            "tenant `{}` may have at most {limit} instances{where_} and has {used}; \
             {wanted} more were asked for (delete instances, or raise `{key}`)",
            tenant.name
        ),
    )
    .with_operation(Operation::CreateInstance)
    .with_provider(p.name.to_string())
    .with_context("reason", "instance_limit")
    .with_context("limit", limit.to_string())
    .temporary(false)
}

/// Counts a create this replica carries out while it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Service {
    fn quota(&self, tenant: &Tenant, p: &Provider) -> Quota {
        Quota {
            total: tenant.max_instances,
            provider: tenant.max_instances_on.get(p.index).copied().flatten(),
        }
    }

    /// Creates the instances of `req` for `tenant` on `p` (see the [module](self)).
    pub async fn create_instances(
        &self,
        tenant: &Tenant,
        p: &Provider,
        req: &CreateRequest,
    ) -> Result<Launch, Error> {
        let op = Operation::CreateInstance;
        let caps = p.capabilities().instances;
        if !caps.create {
            return Err(Error::unsupported(op, p.driver).with_provider(p.name.to_string()));
        }
        if !caps.owner {
            return Err(no_owners(p));
        }
        if req.min == 0 || req.min > req.max {
            return Err(Error::invalid_argument(
                "count",
                format!(
                    "at least {} and at most {} instances asked for",
                    req.min, req.max
                ),
            )
            .with_operation(op)
            .with_provider(p.name.to_string()));
        }
        cms_core::check_instance_spec(&req.spec)
            .map_err(|e| e.with_provider(p.name.to_string()))?;
        self.check_instance_references(tenant, p, &req.spec).await?;
        let mut spec = req.spec.clone();
        let shown_key = spec.key_name.clone();
        if let Some(k) = &shown_key {
            spec.key_name = Some(self.key_for_create(tenant, p, k).await?);
        }
        spec.owner = Some(tenant.name.to_string());
        spec.client_token = None;

        // The reservation, and a client token per instance.
        let mut reservation = random_id("r-");
        let scoped_key = req
            .idempotency
            .as_ref()
            .map(|i| format!("{}:{}", i.scope, i.key));
        if let (Some(idem), Some(key)) = (&req.idempotency, &scoped_key) {
            let claim = self
                .store
                .claim_token(&tenant.name, &p.name, key, &idem.fingerprint, &reservation)
                .await?;
            if !claim.same_request {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the idempotency key `{}` was used before with other parameters; \
                         repeat that request unchanged, or use a new key for a new request",
                        idem.key
                    ),
                )
                .with_operation(op)
                .with_provider(p.name.to_string())
                .with_context("argument", "client_token")
                .with_context("reason", "idempotent_parameter_mismatch"));
            }
            reservation = claim.reservation;
        }
        let seed = scoped_key
            .or_else(|| req.seed.as_ref().map(|s| format!("seed:{s}")))
            .unwrap_or_else(|| reservation.clone());
        let tokens: Vec<CreateToken> = (0..req.max)
            .map(|i| CreateToken {
                token: derived_token(&tenant.name, &p.name, &seed, i),
                launch_index: i,
            })
            .collect();

        let slots = self
            .journal(tenant, p, &reservation, &tokens, req.min as usize)
            .await?;

        // The creates, a few at a time.
        let mut results: Vec<Option<Result<Owned, Error>>> = vec![None; tokens.len()];
        let work: Vec<usize> = (0..tokens.len())
            .filter(|&i| slots[i] != CreateSlot::Skipped)
            .collect();
        for chunk in work.chunks(CONCURRENCY) {
            let done =
                futures::future::join_all(chunk.iter().map(|&i| {
                    self.settle_slot(tenant, p, &spec, &reservation, &tokens[i], &slots[i])
                }))
                .await;
            for (&i, r) in chunk.iter().zip(done) {
                results[i] = Some(r);
            }
        }
        let mut made = Vec::new();
        let mut failure = None;
        for r in results.into_iter().flatten() {
            match r {
                Ok(o) => made.push(o),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if made.len() < req.min as usize {
            // Fewer than asked for at least: undo, as EC2 launches none.
            for o in &made {
                let id = &o.instance.id;
                match p.cloud.delete_instance(id).await {
                    Ok(_) => {
                        let _ = self
                            .store
                            .mark_ended(&p.name, Kind::Instance, &[id.as_str()])
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "could not delete an instance of a failed launch")
                    }
                }
            }
            let e = failure.unwrap_or_else(|| {
                Error::new(ErrorKind::Backend, "the launch failed").with_operation(op)
            });
            let e = match (&shown_key, &spec.key_name) {
                (Some(s), Some(b)) => e.renamed(b, s),
                _ => e,
            };
            return Err(e.with_provider(p.name.to_string()));
        }
        made.sort_by_key(|o| o.entry().launch_index);
        Ok(Launch {
            reservation,
            instances: made,
        })
    }

    /// Journals the creates; when the quota is short, counts again what really lives
    /// (instances may have ended outside cms) and tries once more.
    async fn journal(
        &self,
        tenant: &Tenant,
        p: &Provider,
        reservation: &str,
        tokens: &[CreateToken],
        min: usize,
    ) -> Result<Vec<CreateSlot>, Error> {
        let quota = self.quota(tenant, p);
        for attempt in 0..2 {
            let begin = self
                .store
                .begin_creates(
                    &tenant.name,
                    &p.name,
                    reservation,
                    tokens,
                    min,
                    quota,
                    &self.replica,
                    self.lease,
                )
                .await?;
            match begin {
                Begin::Slots(s) => return Ok(s),
                Begin::Short {
                    scope,
                    limit,
                    used,
                    wanted,
                } => {
                    if attempt == 0 && self.recount(tenant).await? > 0 {
                        continue;
                    }
                    return Err(quota_exceeded(tenant, p, scope, limit, used, wanted));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Carries out one create of a request, or waits for the request that does.
    async fn settle_slot(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &InstanceSpec,
        reservation: &str,
        t: &CreateToken,
        slot: &CreateSlot,
    ) -> Result<Owned, Error> {
        let mut slot = slot.clone();
        let started = Instant::now();
        loop {
            match slot {
                CreateSlot::Acquired => {
                    return self.create_one(tenant, p, spec, reservation, t).await;
                }
                CreateSlot::Made(backend, entry) => {
                    let i = p
                        .cloud
                        .get_instance(&InstanceId::new(&*backend))
                        .await
                        .map_err(|e| e.renamed(&backend, &entry.public_id))?;
                    return Ok(Owned {
                        instance: shown(i),
                        entry: Some(Arc::new(entry)),
                    });
                }
                CreateSlot::Skipped => unreachable!("skipped slots are not settled"),
                CreateSlot::Held => {}
            }
            // Another request carries this create out: wait until it is done, or until
            // its replica is gone and its lease can be taken over.
            if started.elapsed() > WAIT_LIMIT {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "another request with the same idempotency key is still being carried \
                     out; repeat this one later",
                )
                .with_operation(Operation::CreateInstance));
            }
            tokio::time::sleep(WAIT_POLL).await;
            slot = match self.store.create_state(&p.name, &t.token).await? {
                Some(true) => {
                    if self
                        .store
                        .take_create(&p.name, &t.token, &self.replica, self.lease)
                        .await?
                    {
                        CreateSlot::Acquired
                    } else {
                        CreateSlot::Held
                    }
                }
                Some(false) => CreateSlot::Held,
                None => {
                    // Done: made (then recorded), or failed (then this request tries).
                    let again = self
                        .store
                        .begin_creates(
                            &tenant.name,
                            &p.name,
                            reservation,
                            std::slice::from_ref(t),
                            1,
                            self.quota(tenant, p),
                            &self.replica,
                            self.lease,
                        )
                        .await?;
                    match again {
                        Begin::Slots(mut s) => s.remove(0),
                        Begin::Short {
                            scope,
                            limit,
                            used,
                            wanted,
                        } => return Err(quota_exceeded(tenant, p, scope, limit, used, wanted)),
                    }
                }
            };
        }
    }

    /// Asks the backend for one journaled create and records what it answered.
    async fn create_one(
        &self,
        tenant: &Tenant,
        p: &Provider,
        spec: &InstanceSpec,
        reservation: &str,
        t: &CreateToken,
    ) -> Result<Owned, Error> {
        let mut spec = spec.clone();
        spec.client_token = Some(t.token.clone());
        let _flying = InFlight::new(&self.in_flight);
        match p.cloud.create_instance(&spec).await {
            Ok(i) => {
                let user_data = spec.user_data.as_deref().map(|u| (USER_DATA, u));
                let attributes: Vec<(&str, &str)> = user_data.into_iter().collect();
                let entry = self
                    .store
                    .finish_create(
                        &p.name,
                        &t.token,
                        i.id.as_str(),
                        &Record {
                            tenant: Some(&tenant.name),
                            identity: Some(&t.token),
                            reservation: Some(reservation),
                            launch_index: t.launch_index,
                            attributes: &attributes,
                            tenant_tags: &[],
                        },
                    )
                    .await?;
                Ok(Owned {
                    instance: shown(i),
                    entry: Some(Arc::new(entry)),
                })
            }
            Err(e) => {
                if outcome_unknown(&e) {
                    // Perhaps made: settled once the backend has had time to finish.
                    self.store
                        .defer_create(&p.name, &t.token, self.lease)
                        .await?;
                } else {
                    self.store.drop_create(&p.name, &t.token).await?;
                }
                Err(e)
            }
        }
    }

    /// Marks the tenant's instances that ended outside cms (terminated, gone, or
    /// replaced by another object) as ended; answers how many.
    pub async fn recount(&self, tenant: &Tenant) -> Result<usize, Error> {
        let live = self.store.live_instances(&tenant.name).await?;
        let mut by_provider: BTreeMap<Arc<str>, Vec<(Arc<str>, Entry)>> = BTreeMap::new();
        for (provider, backend, entry) in live {
            by_provider
                .entry(provider)
                .or_default()
                .push((backend, entry));
        }
        let mut ended = 0;
        for (provider, rows) in by_provider {
            let Some(&i) = self.by_name.get(&provider) else {
                continue;
            };
            let p = &self.providers[i];
            for chunk in rows.chunks(100) {
                let filter = InstanceFilter {
                    ids: chunk.iter().map(|(b, _)| InstanceId::new(&**b)).collect(),
                    ..InstanceFilter::default()
                };
                let found = p.cloud.collect_instances(&filter).await?;
                let gone: Vec<&str> = chunk
                    .iter()
                    .filter(|(b, e)| {
                        !found.iter().any(|i| {
                            *i.id.as_str() == **b
                                && i.state != cms_core::InstanceState::Terminated
                                && e.names(&crate::store::Seen {
                                    backend_id: b,
                                    identity: i.client_token.as_deref(),
                                    tenant: i.owner.as_deref(),
                                })
                        })
                    })
                    .map(|(b, _)| &**b)
                    .collect();
                if !gone.is_empty() {
                    self.store
                        .mark_ended(&p.name, Kind::Instance, &gone)
                        .await?;
                    ended += gone.len();
                }
            }
        }
        Ok(ended)
    }

    /// Settles the journaled creates whose replica is gone (see the [module](self)).
    pub async fn recover(&self) {
        let pending = match self.store.expired_creates(20).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the journal of creates");
                return;
            }
        };
        for c in pending {
            match self
                .store
                .take_create(&c.provider, &c.token, &self.replica, self.lease)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not take over a create");
                    continue;
                }
            }
            if let Err(e) = self.settle(&c).await {
                tracing::warn!(provider = %c.provider, tenant = %c.tenant, error = %e,
                    "could not settle an interrupted create; trying again later");
                let _ = self
                    .store
                    .defer_create(&c.provider, &c.token, self.lease)
                    .await;
            }
        }
    }

    async fn settle(&self, c: &PendingCreate) -> Result<(), Error> {
        let Some(&i) = self.by_name.get(c.provider.as_str()) else {
            tracing::warn!(provider = %c.provider, "an interrupted create names a provider no longer configured; forgetting it");
            self.store.drop_create(&c.provider, &c.token).await?;
            return Ok(());
        };
        let p = &self.providers[i];
        let filter = InstanceFilter {
            owner: Some(c.tenant.clone()),
            ..InstanceFilter::default()
        };
        let found: Option<Instance> = p
            .cloud
            .collect_instances(&filter)
            .await?
            .into_iter()
            .find(|i| i.client_token.as_deref() == Some(c.token.as_str()));
        match found {
            Some(i) => {
                let e = self
                    .store
                    .finish_create(
                        &c.provider,
                        &c.token,
                        i.id.as_str(),
                        &Record {
                            tenant: Some(&c.tenant),
                            identity: Some(&c.token),
                            reservation: Some(&c.reservation),
                            launch_index: c.launch_index,
                            // The spec is not journaled: the user data of an
                            // interrupted create is not known here.
                            attributes: &[],
                            tenant_tags: &[],
                        },
                    )
                    .await?;
                tracing::info!(provider = %c.provider, tenant = %c.tenant, instance = %e.public_id,
                    "recorded the instance of an interrupted create");
            }
            None => {
                self.store.drop_create(&c.provider, &c.token).await?;
                tracing::info!(provider = %c.provider, tenant = %c.tenant,
                    "an interrupted create made no instance; forgot it");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_and_distinct() {
        let a = derived_token("t", "p", "key", 0);
        assert_eq!(a.len(), 36);
        assert_eq!(a, derived_token("t", "p", "key", 0));
        assert_ne!(a, derived_token("t", "p", "key", 1));
        assert_ne!(a, derived_token("u", "p", "key", 0));
        assert_ne!(a, derived_token("t", "q", "key", 0));
    }

    #[test]
    fn unknown_outcomes_are_kept_for_later() {
        assert!(outcome_unknown(&Error::new(ErrorKind::Timeout, "slow")));
        assert!(!outcome_unknown(
            &Error::new(ErrorKind::Unavailable, "refused").not_executed(true)
        ));
        assert!(!outcome_unknown(&Error::not_found("image", "x")));
    }
}
