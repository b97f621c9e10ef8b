//! Deployments: a number of instances of one template spread over partitions
//! (provider, location), kept at that number by jobs.
//!
//! - **Apply** ([`apply`]): one job per deployment at a time (the deduplication key
//!   `deployment:ID`) brings it to its count: it settles what an earlier attempt left
//!   (members written down but not yet made are asked for again, with the same client
//!   token), places the missing instances by the policy, creates them concurrently
//!   (at most `jobs.creates_per_provider` at once on each provider), removes the
//!   surplus (the newest first, from the last partition first), and waits until every
//!   instance runs. It repeats until the deployment wants nothing it does not have, so
//!   a change made while it runs is carried out by it or by a job added after it.
//! - **Placement**: `one-after-another` fills the partitions in their order;
//!   `round-robin` puts each instance on the open partition with the fewest (the first
//!   of those in order). A partition is closed for the rest of an attempt when it
//!   answers `quota_exceeded`, when its `max` is reached, or when it has answered
//!   `unavailable` for longer than `burst_after_ms`: the instance goes to the next
//!   partition (bursting). Every attempt starts from the first partition again, so
//!   later scale-ups go back to a partition that has room again.
//! - **Healing**: every replica checks the deployments due for a check (every
//!   `jobs.check_interval_ms`, each deployment by one replica); an instance that went
//!   to `error` or disappeared is replaced by an apply job, at most
//!   `heal_limit_per_hour` times an hour; each replacement is in the history.
//! - **Expiry**: a deployment with `expires_at` is deleted then ([`expire`]).
//! - **Delete** ([`delete`]): stops the apply job, deletes every instance the
//!   deployment made, then forgets the deployment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cms_core::{
    Error, ErrorKind, FlavorId, ImageId, InstanceAction, InstanceFilter, InstanceSpec,
    InstanceState, LocationId, NetworkId, SecurityGroupId,
};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use super::{result_json, JobCx, Stop};
use crate::app::App;
use crate::auth::Tenant;
use crate::service::{CreateRequest, InstanceRef};
use crate::store::{now_ms, DeploymentRow, JobRow, JobState, MemberRow, NewJob};

/// Brings a deployment to what it wants.
pub const APPLY: &str = "deployment.apply";
/// Deletes a deployment's instances, then the deployment.
pub const DELETE: &str = "deployment.delete";
/// Deletes a deployment whose expiry time came.
pub const EXPIRE: &str = "deployment.expire";
/// How long an apply waits for its instances to run before trying again later.
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// The replacements allowed per hour when a deployment names none.
pub const DEFAULT_HEAL_LIMIT: u32 = 10;
/// How long a partition may answer `unavailable` before instances go elsewhere,
/// when a deployment names no `burst_after_ms`.
pub const DEFAULT_BURST_AFTER_MS: u64 = 60_000;

/// How instances are spread over the partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each instance on the open partition with the fewest, the first in order of
    /// those.
    #[default]
    RoundRobin,
    /// The first open partition until it is full, then the next.
    OneAfterAnother,
}

/// A place for instances: a provider, optionally a location and a limit, and the
/// template's ids as this provider knows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// The provider's name.
    pub provider: String,
    /// Where on it; the provider's choice when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub location_id: Option<LocationId>,
    /// At most this many of the deployment's instances here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "cms_core::model::whole::u32"
    )]
    #[schema(minimum = 0)]
    pub max: Option<u32>,
    /// The image here, if not the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub image_id: Option<ImageId>,
    /// The size here, if not the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub flavor_id: Option<FlavorId>,
    /// The networks here, if not the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub network_ids: Option<Vec<NetworkId>>,
    /// The key pair here, if not the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The security groups here, if not the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub security_group_ids: Option<Vec<SecurityGroupId>>,
}

/// What a deployment makes and where: kept in the store with the deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// Every instance's template (image and flavor may come from the partitions).
    pub template: Template,
    pub partitions: Vec<Partition>,
    pub policy: Policy,
    /// The fewest instances that make the deployment a success when the partitions
    /// have no room for all.
    pub min: Option<u32>,
    pub heal_limit_per_hour: u32,
    pub burst_after_ms: u64,
}

/// The instance template of a deployment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The instances' name; the deployment's name and the instance's index when empty.
    #[serde(default)]
    pub name: String,
    /// The image (or each partition's `image_id`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub image_id: Option<ImageId>,
    /// The size (or each partition's `flavor_id`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub flavor_id: Option<FlavorId>,
    /// Networks; the provider's default when empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub network_ids: Vec<NetworkId>,
    /// A key pair to install.
    #[serde(default)]
    pub key_name: Option<String>,
    /// User data, as text.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Tags.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub tags: cms_core::Tags,
    /// Security groups; the network's default group when empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub security_group_ids: Vec<SecurityGroupId>,
}

impl DeploymentSpec {
    /// The instance of index `index` on partition `part` of deployment `name`.
    pub fn instance_spec(
        &self,
        name: &str,
        part: usize,
        index: u32,
    ) -> Result<InstanceSpec, Error> {
        let p = &self.partitions[part];
        let t = &self.template;
        let image = p.image_id.clone().or_else(|| t.image_id.clone());
        let flavor = p.flavor_id.clone().or_else(|| t.flavor_id.clone());
        let (Some(image), Some(flavor)) = (image, flavor) else {
            return Err(Error::invalid_argument(
                "template",
                format!(
                    "partition {part} (provider `{}`) has no image_id or no flavor_id, and the template gives none",
                    p.provider
                ),
            ));
        };
        let mut spec = InstanceSpec::new(image, flavor);
        spec.name = if t.name.is_empty() {
            // The deployment's name, cut so that the index fits.
            let suffix = format!("-{index}");
            let keep = cms_core::MAX_NAME.saturating_sub(suffix.len());
            let base: String = name.chars().take(keep).collect();
            format!("{base}{suffix}")
        } else {
            t.name.clone()
        };
        spec.network_ids = p
            .network_ids
            .clone()
            .unwrap_or_else(|| t.network_ids.clone());
        spec.location_id = p.location_id.clone();
        spec.key_name = p.key_name.clone().or_else(|| t.key_name.clone());
        spec.user_data = t.user_data.clone();
        spec.tags = t.tags.clone();
        spec.security_group_ids = p
            .security_group_ids
            .clone()
            .unwrap_or_else(|| t.security_group_ids.clone());
        Ok(spec)
    }

    /// Where the next `n` instances go, in order (fewer when no open partition has
    /// room): `counts`, the instances on each partition, grows with them.
    pub fn places(&self, counts: &mut [u32], n: u32, closed: &HashSet<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(p) = self.place(counts, closed) else {
                break;
            };
            counts[p as usize] += 1;
            out.push(p);
        }
        out
    }

    /// How `count` instances spread when every partition has room but for its `max`.
    pub fn desired(&self, count: u32) -> Vec<u32> {
        let mut c = vec![0; self.partitions.len()];
        self.places(&mut c, count, &HashSet::new());
        c
    }

    /// Where the next instance goes: `counts` are the instances on each partition,
    /// `closed` the partitions that take none now.
    pub fn place(&self, counts: &[u32], closed: &HashSet<u32>) -> Option<u32> {
        let open = |i: usize| {
            !closed.contains(&(i as u32)) && self.partitions[i].max.is_none_or(|m| counts[i] < m)
        };
        let n = self.partitions.len();
        match self.policy {
            Policy::OneAfterAnother => (0..n).find(|&i| open(i)),
            Policy::RoundRobin => (0..n).filter(|&i| open(i)).min_by_key(|&i| (counts[i], i)),
        }
        .map(|i| i as u32)
    }
}

/// The deduplication key of a deployment's apply job.
pub fn apply_key(id: &str) -> String {
    format!("deployment:{id}")
}

/// The deduplication key of a deployment's delete job.
pub fn delete_key(id: &str) -> String {
    format!("deployment-delete:{id}")
}

/// The deduplication key of a deployment's expiry job.
pub fn expire_key(id: &str) -> String {
    format!("deployment-expire:{id}")
}

/// The apply job of deployment `id`.
pub fn apply_job(tenant: &str, id: &str, deadline: Option<i64>) -> NewJob {
    NewJob {
        kind: APPLY,
        tenant: tenant.to_owned(),
        target: id.to_owned(),
        input: "{}".into(),
        not_before: None,
        deadline,
        dedupe: Some(apply_key(id)),
    }
}

/// The delete job of deployment `id`.
pub fn delete_job(tenant: &str, id: &str) -> NewJob {
    NewJob {
        kind: DELETE,
        tenant: tenant.to_owned(),
        target: id.to_owned(),
        input: "{}".into(),
        not_before: None,
        deadline: None,
        dedupe: Some(delete_key(id)),
    }
}

/// The expiry job of deployment `id`, due at `at`.
pub fn expire_job(tenant: &str, id: &str, at: i64) -> NewJob {
    NewJob {
        kind: EXPIRE,
        tenant: tenant.to_owned(),
        target: id.to_owned(),
        input: "{}".into(),
        not_before: Some(at),
        deadline: None,
        dedupe: Some(expire_key(id)),
    }
}

/// One instance of a deployment as an apply job reports it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// The instance's public id, once made.
    pub id: Option<String>,
    /// The instance's id on its provider, once made.
    pub backend_id: Option<String>,
    /// Its position in the deployment.
    pub index: u32,
    /// Its partition's position in the deployment's list.
    pub partition: u32,
    pub provider: String,
    /// The instance's state (`creating` until it is made).
    pub state: String,
}

/// What an apply job reports when it ends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    pub deployment: String,
    /// The version of the deployment this result is for.
    pub generation: i64,
    pub count: u32,
    pub running: u32,
    /// Instances wanted that no partition had room for (at least `min` were made).
    pub shortfall: u32,
    pub instances: Vec<MemberView>,
}

fn stop_permanent(kind: ErrorKind, msg: String) -> Stop {
    Stop::Error(Error::new(kind, msg).temporary(false))
}

fn parse_spec(d: &DeploymentRow) -> Result<DeploymentSpec, Stop> {
    serde_json::from_str(&d.spec).map_err(|e| {
        stop_permanent(
            ErrorKind::Backend,
            format!("deployment {} cannot be read: {e}", d.id),
        )
    })
}

/// What a look at a deployment's made instances found.
#[derive(Default)]
struct Survey {
    /// State of each made instance by public id.
    states: HashMap<String, InstanceState>,
    /// Members whose instance went to error or disappeared.
    lost: Vec<(usize, String)>,
}

/// Looks at the made (`created`) members' instances.
async fn survey(app: &App, tenant: &Tenant, members: &[MemberRow]) -> Result<Survey, Error> {
    let mut by_provider: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        if m.state == "created" && m.public_id.is_some() {
            by_provider.entry(m.provider.clone()).or_default().push(i);
        }
    }
    let mut out = Survey::default();
    for (provider, idx) in by_provider {
        let p = app.service.provider(tenant, &provider)?;
        let ids: Vec<String> = idx
            .iter()
            .filter_map(|&i| members[i].public_id.clone())
            .collect();
        let mut missing: Vec<String> = Vec::new();
        for chunk_start in (0..ids.len()).step_by(500) {
            let mut chunk: Vec<String> =
                ids[chunk_start..(chunk_start + 500).min(ids.len())].to_vec();
            // An id that names nothing any more makes the whole lookup answer the
            // missing ones: look again without them.
            for _ in 0..3 {
                let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let got = app
                    .service
                    .instances_by_public_id(tenant, p, &names, &InstanceFilter::default())
                    .boxed()
                    .await?;
                match got {
                    Ok(found) => {
                        for o in found {
                            if let Some(e) = &o.entry {
                                out.states.insert(e.public_id.to_string(), o.instance.state);
                            }
                        }
                        break;
                    }
                    Err(gone) => {
                        chunk.retain(|id| !gone.iter().any(|g| g == id));
                        missing.extend(gone);
                    }
                }
            }
        }
        for &i in &idx {
            let pid = members[i].public_id.as_deref().unwrap_or_default();
            let why = match out.states.get(pid) {
                None if missing.iter().any(|m| m == pid) => Some("disappeared".to_owned()),
                None => None,
                Some(InstanceState::Error) => Some("went to state error".to_owned()),
                Some(s @ (InstanceState::Terminated | InstanceState::Terminating)) => {
                    Some(format!("is {} (not by this deployment)", s.as_str()))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                out.lost.push((i, why));
            }
        }
    }
    Ok(out)
}

/// The states of a deployment's made instances now (those whose provider does not
/// answer are left out: they show their recorded state).
pub async fn live_states(
    app: &App,
    tenant: &Tenant,
    members: &[MemberRow],
) -> HashMap<String, InstanceState> {
    match survey(app, tenant, members).await {
        Ok(s) => s.states,
        Err(e) => {
            tracing::info!(error = %e, "could not look at a deployment's instances");
            HashMap::new()
        }
    }
}

/// Whether the deployment may replace another instance this hour.
async fn may_heal(app: &App, d: &DeploymentRow, spec: &DeploymentSpec) -> Result<bool, Error> {
    let since = now_ms() - 3_600_000;
    let n = app
        .service
        .store()
        .count_history(&d.id, "replaced", since)
        .await?;
    Ok(n < spec.heal_limit_per_hour)
}

/// Marks lost members, each replaced later by the apply; fails when the healing limit
/// is reached.
async fn mark_lost(
    cx: &JobCx<'_>,
    d: &DeploymentRow,
    spec: &DeploymentSpec,
    members: &mut [MemberRow],
    lost: &[(usize, String)],
) -> Result<(), Stop> {
    let store = cx.app.service.store();
    for (i, why) in lost {
        if !may_heal(cx.app, d, spec).await? {
            return Err(stop_permanent(
                ErrorKind::QuotaExceeded,
                format!(
                    "deployment {} replaced {} instances in the last hour (heal_limit_per_hour); instance {} {why} and is not replaced",
                    d.id,
                    spec.heal_limit_per_hour,
                    members[*i].public_id.as_deref().unwrap_or("?")
                ),
            ));
        }
        let m = &mut members[*i];
        m.state = "lost".into();
        let detail = format!(
            "instance {} (index {}, provider `{}`) {why}; a replacement follows",
            m.public_id.as_deref().unwrap_or("?"),
            m.index,
            m.provider
        );
        store
            .set_member(&d.id, m, Some(("replaced", &detail)))
            .await?;
        if let Some(pid) = &m.public_id {
            store.add_history(pid, "lost", &detail).await?;
        }
        tracing::info!(deployment = %d.id, "{detail}");
    }
    Ok(())
}

/// Creates (or finds, when an earlier attempt made it) a member's instance: the member
/// as it is now, to be written down by the caller (see [`made_notes`]).
async fn create_member(
    app: &App,
    tenant: &Tenant,
    d: &DeploymentRow,
    spec: &DeploymentSpec,
    mut m: MemberRow,
) -> Result<MemberRow, Error> {
    let p = app.service.provider(tenant, &m.provider)?;
    let instance = spec.instance_spec(&d.name, m.partition as usize, m.index)?;
    let launch = app
        .service
        .create_instances(
            tenant,
            p,
            &CreateRequest {
                spec: instance,
                min: 1,
                max: 1,
                idempotency: None,
                seed: Some(format!("{}/{}", d.id, m.index)),
            },
        )
        .await?;
    let o = launch
        .instances
        .into_iter()
        .next()
        .ok_or_else(|| Error::new(ErrorKind::Backend, "the create made no instance"))?;
    m.public_id = o.entry.as_ref().map(|e| e.public_id.to_string());
    m.backend_id = Some(o.instance.id.as_str().to_owned());
    m.state = "created".into();
    Ok(m)
}

/// The history entries of made members: each instance's own `created`.
fn made_notes(d: &DeploymentRow, made: &[MemberRow]) -> Vec<(String, String, String)> {
    made.iter()
        .filter_map(|m| {
            let pid = m.public_id.as_ref()?;
            Some((
                pid.clone(),
                "created".to_owned(),
                format!(
                    "instance {pid} (index {}) made on provider `{}` for deployment {}",
                    m.index, m.provider, d.id
                ),
            ))
        })
        .collect()
}

fn counts(spec: &DeploymentSpec, members: &[MemberRow]) -> Vec<u32> {
    let mut c = vec![0u32; spec.partitions.len()];
    for m in members.iter().filter(|m| m.is_live()) {
        if let Some(x) = c.get_mut(m.partition as usize) {
            *x += 1;
        }
    }
    c
}

/// The partitions that have answered `unavailable` for longer than the deployment
/// allows.
fn unavailable_too_long(cx: &JobCx<'_>, d: &DeploymentRow, spec: &DeploymentSpec) -> HashSet<u32> {
    let now = now_ms();
    let map = cx
        .app
        .jobs
        .unavailable
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    (0..spec.partitions.len() as u32)
        .filter(|p| {
            map.get(&(d.id.clone(), *p))
                .is_some_and(|since| now - since >= spec.burst_after_ms as i64)
        })
        .collect()
}

/// Makes the members written down but not made yet, moving those a partition has no
/// room for to the next one. Answers how many no partition had room for.
async fn create_pending(
    cx: &JobCx<'_>,
    d: &DeploymentRow,
    spec: &DeploymentSpec,
    members: &mut [MemberRow],
) -> Result<u32, Stop> {
    let store = cx.app.service.store();
    let mut closed = unavailable_too_long(cx, d, spec);
    let limit = cx.app.jobs.config.creates_per_provider;
    let mut unplaced = 0;
    loop {
        let pending: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].state == "creating")
            .collect();
        if pending.is_empty() {
            return Ok(unplaced);
        }
        cx.progress(
            progress_of(members, d.count, 0),
            &format!("creating {} instances", pending.len()),
        )
        .await?;
        let semaphores: HashMap<String, Arc<Semaphore>> = pending
            .iter()
            .map(|&i| (members[i].provider.clone(), Arc::new(Semaphore::new(limit))))
            .collect();
        let (app, tenant) = (cx.app, cx.tenant);
        let mut work = Vec::with_capacity(pending.len());
        for &i in &pending {
            let m = members[i].clone();
            let sem = semaphores[&m.provider].clone();
            work.push(
                async move {
                    let _permit = sem.acquire_owned().await;
                    (i, create_member(app, tenant, d, spec, m).await)
                }
                .boxed(),
            );
        }
        let results: Vec<(usize, Result<MemberRow, Error>)> = futures::stream::iter(work)
            .buffer_unordered(limit * semaphores.len().max(1))
            .collect()
            .await;
        let mut to_move = Vec::new();
        let mut temporary: Option<Error> = None;
        let mut permanent: Option<Error> = None;
        let mut made = Vec::new();
        for (i, r) in results {
            let part = members[i].partition;
            match r {
                Ok(m) => {
                    cx.app
                        .jobs
                        .unavailable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(d.id.clone(), part));
                    members[i] = m.clone();
                    made.push(m);
                }
                Err(e) if e.kind() == ErrorKind::QuotaExceeded => {
                    closed.insert(part);
                    to_move.push((
                        i,
                        format!("provider `{}` answered: {e}", members[i].provider),
                    ));
                }
                Err(e) if super::retryable(&e) => {
                    let now = now_ms();
                    let since = *cx
                        .app
                        .jobs
                        .unavailable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry((d.id.clone(), part))
                        .or_insert(now);
                    if e.kind() == ErrorKind::Unavailable
                        && now - since >= spec.burst_after_ms as i64
                    {
                        closed.insert(part);
                        to_move.push((
                            i,
                            format!(
                                "provider `{}` has been unavailable for {} s",
                                members[i].provider,
                                (now - since) / 1000
                            ),
                        ));
                    } else {
                        temporary.get_or_insert(e);
                    }
                }
                Err(e) => {
                    let m = &mut members[i];
                    m.state = "failed".into();
                    let detail = format!(
                        "instance index {} could not be made on provider `{}`: {e}",
                        m.index, m.provider
                    );
                    store
                        .set_member(&d.id, m, Some(("failed", &detail)))
                        .await?;
                    permanent.get_or_insert(e);
                }
            }
        }
        // What was made, written down at once (one transaction per round).
        store
            .set_members(&d.id, &made, &made_notes(d, &made))
            .await?;
        if let Some(e) = permanent {
            return Err(Stop::Error(e.temporary(false)));
        }
        for (i, why) in to_move {
            let mut c = counts(spec, members);
            let from = members[i].partition as usize;
            c[from] = c[from].saturating_sub(1);
            let m = &mut members[i];
            match spec.place(&c, &closed) {
                Some(to) => {
                    let detail = format!(
                        "instance index {} goes to partition {to} (provider `{}`): {why}",
                        m.index, spec.partitions[to as usize].provider
                    );
                    m.partition = to;
                    m.provider = spec.partitions[to as usize].provider.clone();
                    store.set_member(&d.id, m, Some(("burst", &detail))).await?;
                    tracing::info!(deployment = %d.id, "{detail}");
                }
                None => {
                    m.state = "unplaced".into();
                    let detail = format!(
                        "instance index {} has no partition with room: {why}",
                        m.index
                    );
                    store
                        .set_member(&d.id, m, Some(("unplaced", &detail)))
                        .await?;
                    unplaced += 1;
                }
            }
        }
        if let Some(e) = temporary {
            return Err(e.into());
        }
    }
}

/// Deletes a member's instance; one already gone is no error.
async fn delete_one(app: &App, tenant: &Tenant, m: &MemberRow) -> Result<(), Error> {
    let p = app.service.provider(tenant, &m.provider)?;
    let Some(pid) = &m.public_id else {
        return Ok(());
    };
    match app
        .service
        .act(tenant, p, InstanceRef::Public(pid), InstanceAction::Delete)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes members' instances (already marked `deleting`), concurrently.
async fn delete_members(
    cx: &JobCx<'_>,
    d: &DeploymentRow,
    members: &mut [MemberRow],
    targets: &[usize],
    why: &str,
) -> Result<(), Stop> {
    let limit = cx.app.jobs.config.creates_per_provider;
    let (app, tenant) = (cx.app, cx.tenant);
    let mut work = Vec::with_capacity(targets.len());
    for &i in targets {
        let m = members[i].clone();
        work.push(async move { (i, delete_one(app, tenant, &m).await) }.boxed());
    }
    let results: Vec<(usize, Result<(), Error>)> = futures::stream::iter(work)
        .buffer_unordered(limit)
        .collect()
        .await;
    let store = cx.app.service.store();
    let mut first = None;
    let (mut gone, mut notes) = (Vec::new(), Vec::new());
    for (i, r) in results {
        match r {
            Ok(()) => {
                let m = &mut members[i];
                m.state = "deleted".into();
                if let Some(pid) = &m.public_id {
                    notes.push((
                        pid.clone(),
                        "deleted".to_owned(),
                        format!(
                            "instance {pid} (index {}, provider `{}`) deleted: {why}",
                            m.index, m.provider
                        ),
                    ));
                }
                gone.push(m.clone());
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    store.set_members(&d.id, &gone, &notes).await?;
    match first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn progress_of(members: &[MemberRow], count: u32, running: u32) -> u32 {
    let made = members.iter().filter(|m| m.state == "created").count() as u32;
    if count == 0 {
        return 90;
    }
    // Made counts half, running the other half.
    ((made.min(count) * 45 + running.min(count) * 45) / count).min(90)
}

/// The live members as shown: the instance's state when `states` has it, else the
/// member's own (`creating`).
pub fn member_views(
    members: &[MemberRow],
    states: &HashMap<String, InstanceState>,
) -> Vec<MemberView> {
    members
        .iter()
        .filter(|m| m.is_live())
        .map(|m| MemberView {
            id: m.public_id.clone(),
            backend_id: m.backend_id.clone(),
            index: m.index,
            partition: m.partition,
            provider: m.provider.clone(),
            state: match m.public_id.as_ref().and_then(|p| states.get(p)) {
                Some(s) => s.as_str().to_owned(),
                None => m.state.clone(),
            },
        })
        .collect()
}

/// Brings a deployment to its count, its instances running (see the [module](self)).
pub async fn apply(cx: &JobCx<'_>) -> Result<String, Stop> {
    let store = cx.app.service.store();
    let id = cx.job.target.as_str();
    loop {
        let Some(d) = store.deployment(id, None).await? else {
            return Ok(result_json(
                &serde_json::json!({ "deployment": id, "gone": true }),
            ));
        };
        if d.state != "active" {
            return Ok(result_json(
                &serde_json::json!({ "deployment": id, "state": d.state }),
            ));
        }
        let spec = parse_spec(&d)?;
        let mut members = store.members(id).await?;

        // What earlier attempts and the world did: instances gone or broken.
        let s = survey(cx.app, cx.tenant, &members).await?;
        mark_lost(cx, &d, &spec, &mut members, &s.lost).await?;

        // Surplus first: the newest, from the last partition first.
        let live: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].is_live())
            .collect();
        let mut victims: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].state == "deleting")
            .collect();
        if live.len() as u32 > d.count {
            let mut made: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| members[i].state == "created")
                .collect();
            made.sort_by_key(|&i| std::cmp::Reverse((members[i].partition, members[i].index)));
            let surplus = live.len() - d.count as usize;
            let (mut going, mut notes) = (Vec::new(), Vec::new());
            for &i in made.iter().take(surplus) {
                members[i].state = "deleting".into();
                notes.push((
                    id.to_owned(),
                    "scaled-down".to_owned(),
                    format!(
                        "scale down to {}: instance {} (index {}, provider `{}`) goes",
                        d.count,
                        members[i].public_id.as_deref().unwrap_or("-"),
                        members[i].index,
                        members[i].provider
                    ),
                ));
                going.push(members[i].clone());
                victims.push(i);
            }
            store.set_members(id, &going, &notes).await?;
        }
        if !victims.is_empty() {
            cx.progress(
                progress_of(&members, d.count, 0),
                &format!("deleting {} instances", victims.len()),
            )
            .await?;
            delete_members(cx, &d, &mut members, &victims, "the deployment scaled down").await?;
        }

        // The missing ones, placed by the policy.
        let live = members.iter().filter(|m| m.is_live()).count() as u32;
        if live < d.count {
            let mut c = counts(&spec, &members);
            let closed = unavailable_too_long(cx, &d, &spec);
            let places: Vec<(u32, String)> = spec
                .places(&mut c, d.count - live, &closed)
                .into_iter()
                .map(|p| (p, spec.partitions[p as usize].provider.clone()))
                .collect();
            if !places.is_empty() {
                let added = store.add_members(id, &places).await?;
                members.extend(added);
            }
        }
        let unplaced = create_pending(cx, &d, &spec, &mut members).await?;
        let live = members.iter().filter(|m| m.is_live()).count() as u32;
        let shortfall = d.count.saturating_sub(live);
        if shortfall > 0 {
            let min = spec.min.unwrap_or(d.count);
            if live < min {
                return Err(stop_permanent(
                    ErrorKind::QuotaExceeded,
                    format!(
                        "deployment {id} has {live} of its {} instances and needs at least {min}: \
                         no partition has room for more ({unplaced} could not be placed)",
                        d.count
                    ),
                ));
            }
        }

        // Until every instance runs.
        let started = Instant::now();
        let poll = Duration::from_millis(cx.app.jobs.config.wait_poll_ms);
        let (states, healed) = loop {
            let s = survey(cx.app, cx.tenant, &members).await?;
            if !s.lost.is_empty() {
                mark_lost(cx, &d, &spec, &mut members, &s.lost).await?;
                break (s.states, true);
            }
            let running = s
                .states
                .values()
                .filter(|st| **st == InstanceState::Running)
                .count() as u32;
            if running >= live {
                break (s.states, false);
            }
            if started.elapsed() > BOOT_LIMIT {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{running} of {live} instances of deployment {id} run after {} s",
                        BOOT_LIMIT.as_secs()
                    ),
                )
                .temporary(true)
                .into());
            }
            cx.progress(
                progress_of(&members, d.count, running),
                &format!("{running} of {live} instances running"),
            )
            .await?;
            cx.sleep(poll).await?;
        };
        if healed {
            continue;
        }
        // Changed meanwhile (scaled, deleted)? Then once more.
        match store.deployment(id, None).await? {
            Some(now) if now.generation == d.generation => {
                let running = states
                    .values()
                    .filter(|s| **s == InstanceState::Running)
                    .count() as u32;
                let applied = Applied {
                    deployment: id.to_owned(),
                    generation: d.generation,
                    count: d.count,
                    running,
                    shortfall,
                    instances: member_views(&members, &states),
                };
                return Ok(result_json(&applied));
            }
            _ => continue,
        }
    }
}

/// After an apply job succeeded: when the deployment changed after the version the
/// job brought about (a change whose job was the running one), another apply.
pub async fn after_apply(app: &App, job: &JobRow, result: &str) {
    let Ok(applied) = serde_json::from_str::<Applied>(result) else {
        return;
    };
    match app.service.store().deployment(&job.target, None).await {
        Ok(Some(d)) if d.state == "active" && d.generation > applied.generation => {
            if let Err(e) = super::enqueue(app, &apply_job(&d.tenant, &d.id, None)).await {
                tracing::warn!(deployment = %d.id, error = %e, "could not add an apply job");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read a deployment after its job"),
    }
}

/// Deletes a deployment's instances, then the deployment.
pub async fn delete(cx: &JobCx<'_>) -> Result<String, Stop> {
    let store = cx.app.service.store();
    let id = cx.job.target.as_str();
    let Some(d) = store.deployment(id, None).await? else {
        return Ok(result_json(
            &serde_json::json!({ "deployment": id, "deleted": 0 }),
        ));
    };
    // The apply job stops first.
    if let Some(a) = store.active_job(&apply_key(id)).await? {
        store.cancel_job(&a.id, &d.tenant).await?;
        if a.state == JobState::Running {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("waiting for job {} of deployment {id} to stop", a.id),
            )
            .temporary(true)
            .into());
        }
    }
    let spec = parse_spec(&d)?;
    let mut members = store.members(id).await?;
    // Members written down but perhaps not made: settled first (the same client
    // token finds what an interrupted attempt made), then deleted with the rest.
    for m in members.iter_mut().filter(|m| m.state == "creating") {
        match create_member(cx.app, cx.tenant, &d, &spec, m.clone()).await {
            Ok(made) => {
                store
                    .set_members(
                        id,
                        std::slice::from_ref(&made),
                        &made_notes(&d, std::slice::from_ref(&made)),
                    )
                    .await?;
                *m = made;
            }
            Err(e) if !super::retryable(&e) => {
                m.state = "deleted".into();
                store.set_member(id, m, None).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let targets: Vec<usize> = (0..members.len())
        .filter(|&i| matches!(members[i].state.as_str(), "created" | "deleting"))
        .collect();
    for &i in &targets {
        members[i].state = "deleting".into();
        store.set_member(id, &members[i], None).await?;
    }
    cx.progress(50, &format!("deleting {} instances", targets.len()))
        .await?;
    delete_members(cx, &d, &mut members, &targets, "the deployment was deleted").await?;
    store.drop_scheduled_job(&expire_key(id)).await?;
    store.remove_deployment(id).await?;
    cx.app
        .jobs
        .unavailable
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(d, _), _| d != id);
    tracing::info!(deployment = %id, instances = targets.len(), "deployment deleted");
    Ok(result_json(&serde_json::json!({
        "deployment": id,
        "deleted": targets.len(),
    })))
}

/// Deletes a deployment whose expiry time came.
pub async fn expire(cx: &JobCx<'_>) -> Result<String, Stop> {
    let store = cx.app.service.store();
    let id = cx.job.target.as_str();
    let changed = store
        .change_deployment(
            id,
            None,
            Some("deleting"),
            None,
            (
                "expired",
                "its expiry time came: the deployment and its instances are deleted",
            ),
            Some(&delete_job(&cx.tenant.name, id)),
        )
        .await?;
    cx.app.jobs.wake();
    Ok(result_json(&serde_json::json!({
        "deployment": id,
        "delete_job": changed.and_then(|(_, j)| j).map(|j| j.id),
    })))
}

/// Checks the deployments due for a check (each by one replica): one whose instances
/// are not what it wants gets an apply job.
pub async fn check_due(app: &App) {
    let store = app.service.store();
    let before = now_ms() - app.jobs.config.check_interval_ms as i64;
    let due = match store.claim_checks(before, 100).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not find deployments to check");
            return;
        }
    };
    for id in due {
        if let Err(e) = check_one(app, &id).await {
            tracing::warn!(deployment = %id, error = %e, "could not check a deployment");
        }
    }
}

async fn check_one(app: &App, id: &str) -> Result<(), Error> {
    let store = app.service.store();
    let Some(d) = store.deployment(id, None).await? else {
        return Ok(());
    };
    if d.state != "active" {
        return Ok(());
    }
    match store.latest_job(id, &[APPLY, DELETE]).await? {
        // One is under way.
        Some(j) if !j.state.is_final() => return Ok(()),
        // The last one failed, and nothing changed since: trying again would fail
        // the same way (a change of the deployment starts a new one).
        Some(j) if j.state == JobState::Failed && d.updated_at <= j.created_at => return Ok(()),
        _ => {}
    }
    let Some(tenant) = app.tenants.iter().find(|t| *t.name == *d.tenant) else {
        return Ok(());
    };
    let members = store.members(id).await?;
    let live = members.iter().filter(|m| m.is_live()).count() as u32;
    let s = survey(app, tenant, &members).await?;
    if s.lost.is_empty() && live == d.count {
        return Ok(());
    }
    let spec: DeploymentSpec = match serde_json::from_str(&d.spec) {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
    if !s.lost.is_empty() && !may_heal(app, &d, &spec).await? {
        return Ok(());
    }
    tracing::info!(deployment = %id, lost = s.lost.len(), live, count = d.count,
        "a deployment is not what it wants; applying it again");
    super::enqueue(app, &apply_job(&d.tenant, id, None)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: Policy, maxes: &[Option<u32>]) -> DeploymentSpec {
        DeploymentSpec {
            template: Template::default(),
            partitions: maxes
                .iter()
                .enumerate()
                .map(|(i, m)| Partition {
                    provider: format!("p{i}"),
                    location_id: None,
                    max: *m,
                    image_id: None,
                    flavor_id: None,
                    network_ids: None,
                    key_name: None,
                    security_group_ids: None,
                })
                .collect(),
            policy,
            min: None,
            heal_limit_per_hour: DEFAULT_HEAL_LIMIT,
            burst_after_ms: DEFAULT_BURST_AFTER_MS,
        }
    }

    fn spread(s: &DeploymentSpec, n: u32, closed: &HashSet<u32>) -> Vec<u32> {
        let mut c = vec![0; s.partitions.len()];
        s.places(&mut c, n, closed);
        c
    }

    #[test]
    fn policies_place_as_documented() {
        let none = HashSet::new();
        let rr = spec(Policy::RoundRobin, &[None, None, None]);
        assert_eq!(spread(&rr, 7, &none), vec![3, 2, 2]);
        let oao = spec(Policy::OneAfterAnother, &[Some(5), None]);
        assert_eq!(spread(&oao, 12, &none), vec![5, 7]);
        let capped = spec(Policy::RoundRobin, &[Some(1), Some(2)]);
        assert_eq!(spread(&capped, 10, &none), vec![1, 2]);
        // A closed partition takes none; the next one does.
        let closed: HashSet<u32> = [0].into_iter().collect();
        assert_eq!(spread(&oao, 4, &closed), vec![0, 4]);
    }

    #[test]
    fn partitions_override_the_template() {
        let mut s = spec(Policy::RoundRobin, &[None, None]);
        s.template.image_id = Some(ImageId::new("img-a"));
        s.template.flavor_id = Some(FlavorId::new("small"));
        s.partitions[1].image_id = Some(ImageId::new("img-b"));
        let a = s.instance_spec("web", 0, 3).unwrap();
        let b = s.instance_spec("web", 1, 4).unwrap();
        assert_eq!((a.image_id.as_str(), a.name.as_str()), ("img-a", "web-3"));
        assert_eq!(
            (b.image_id.as_str(), b.flavor_id.as_str()),
            ("img-b", "small")
        );
        let long = "x".repeat(cms_core::MAX_NAME);
        let named = s.instance_spec(&long, 1, 123).unwrap();
        assert_eq!(named.name.chars().count(), cms_core::MAX_NAME);
        assert!(named.name.ends_with("x-123"));
        s.template.flavor_id = None;
        let e = s.instance_spec("web", 0, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
