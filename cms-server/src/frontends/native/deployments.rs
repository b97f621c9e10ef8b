//! Deployments: create, list, get, scale (and change expiry), delete. Each change
//! answers 202 with the job that carries it out (see [`crate::jobs::deployments`]).

use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use super::handlers::time_field;
use super::handlers::{json_response, with_location, Ctx};
use super::jobs::JobView;
use super::openapi::{BodyProblems, JobProblems};
use super::problem::{ApiError, ServerKind};
use super::query::no_query;
use super::query::{cursor_query, unknown_page};
use crate::jobs::deployments::{
    DeploymentSpec, MemberView, Partition, Policy, Template, DEFAULT_BURST_AFTER_MS,
    DEFAULT_HEAL_LIMIT,
};
use crate::jobs::instances::rfc3339;
use crate::jobs::requests;
use crate::jobs::{DeploymentRow, HistoryEntry, JobRow};

/// The most instances one deployment may want.
pub const MAX_COUNT: u32 = 1000;
/// The most partitions of one deployment.
pub const MAX_PARTITIONS: usize = 16;

/// What to deploy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentRequest {
    /// A name (not blank, no control characters).
    pub name: String,
    /// How many instances (0 to 1000).
    #[serde(deserialize_with = "whole_u32")]
    #[schema(minimum = 0, maximum = 1000)]
    pub count: u32,
    /// When the partitions have no room for `count`, the deployment succeeds with at
    /// least this many (`count` when absent).
    #[serde(default, deserialize_with = "cms_core::model::whole::u32")]
    #[schema(minimum = 0, maximum = 1000)]
    pub min: Option<u32>,
    /// Every instance's template.
    pub template: Template,
    /// Where the instances go (1 to 16 partitions).
    #[schema(min_items = 1, max_items = 16)]
    pub partitions: Vec<Partition>,
    /// `round-robin` (default) or `one-after-another`.
    #[serde(default)]
    pub policy: Policy,
    /// When the deployment and its instances are deleted (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// After this (RFC 3339) the deployment's job stops trying.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
    /// Instances replaced at most per hour (default 10).
    #[serde(default, deserialize_with = "cms_core::model::whole::u32")]
    #[schema(minimum = 0, maximum = 1000)]
    pub heal_limit_per_hour: Option<u32>,
    /// How long a partition may answer `unavailable` before instances go to the next
    /// (default 60000).
    #[serde(default, deserialize_with = "cms_core::model::whole::u32")]
    #[schema(minimum = 0, maximum = 86400000)]
    pub burst_after_ms: Option<u32>,
}

/// A change of a deployment: its count (scale up or down), its expiry (`null`
/// removes it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeploymentRequest {
    /// How many instances (0 to 1000; not below the deployment's `min`).
    #[serde(default, deserialize_with = "cms_core::model::whole::u32")]
    #[schema(minimum = 0, maximum = 1000)]
    pub count: Option<u32>,
    /// When the deployment is deleted (RFC 3339); `null` removes the expiry.
    #[serde(default, deserialize_with = "present")]
    #[schema(format = DateTime, nullable)]
    pub expires_at: Option<Option<String>>,
}

/// A whole number from 0 to `u32::MAX` (`7.0` is `7`, as JSON has it).
fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error as _;
    cms_core::model::whole::u32(d)?
        .ok_or_else(|| D::Error::custom("invalid type: null, expected a whole number"))
}

/// A field given (perhaps as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// A partition's wanted and actual number of instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionView {
    pub provider: String,
    #[schema(value_type = Option<String>)]
    pub location_id: Option<String>,
    pub max: Option<u32>,
    /// How many of `count` the policy puts here when every partition has room.
    pub desired: u32,
    /// How many of the deployment's instances are here now.
    pub actual: u32,
}

/// A deployment.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    /// `dep-` and 17 hex digits.
    pub id: String,
    pub name: String,
    /// `active`, or `deleting`.
    pub state: String,
    /// `applying` (its job runs), `ready` (its last job succeeded), `failed` (its last
    /// job failed: `job.error` says why; a change starts a new one), `canceled`,
    /// `deleting`.
    pub status: String,
    /// How many instances it wants.
    pub count: u32,
    /// How many it has.
    pub actual: u32,
    pub min: Option<u32>,
    pub policy: Policy,
    pub template: Template,
    pub partitions: Vec<PartitionView>,
    pub heal_limit_per_hour: u32,
    pub burst_after_ms: u64,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The job of its latest change (running, or how it ended).
    pub job: Option<JobView>,
    /// Its instances, each with its partition and state.
    pub instances: Vec<MemberView>,
    /// What happened to it (the latest 100 entries, oldest first).
    pub history: Vec<HistoryEntry>,
}

/// A page of deployments.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentList {
    pub items: Vec<DeploymentView>,
    /// Pass as `page_token` for the next page; `null` on the last.
    pub next_page_token: Option<String>,
}

fn bad(detail: String) -> ApiError {
    ApiError::server(ServerKind::MalformedBody, detail)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty()
        || name.chars().count() > cms_core::MAX_NAME
        || name.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "`name` must be 1 to {} characters, not all blank, without control characters",
            cms_core::MAX_NAME
        )));
    }
    Ok(())
}

fn check_count(field: &str, n: u32) -> Result<(), ApiError> {
    if n > MAX_COUNT {
        return Err(bad(format!(
            "`{field}` must be at most {MAX_COUNT}, not {n}"
        )));
    }
    Ok(())
}

async fn view(cx: &Ctx<'_>, d: DeploymentRow, live: bool) -> Result<DeploymentView, ApiError> {
    Ok(view_of(
        requests::detail(cx.app, cx.tenant()?, d, live).await?,
    ))
}

fn view_of(det: requests::Detail) -> DeploymentView {
    let instances: Vec<MemberView> =
        crate::jobs::deployments::member_views(&det.members, &det.states);
    let mut actual = vec![0u32; det.spec.partitions.len()];
    for m in &instances {
        if let Some(a) = actual.get_mut(m.partition as usize) {
            *a += 1;
        }
    }
    let want = det.spec.desired(det.row.count);
    let status = det.status();
    let (d, spec) = (&det.row, &det.spec);
    DeploymentView {
        id: d.id.clone(),
        name: d.name.clone(),
        state: d.state.clone(),
        status: status.into(),
        count: d.count,
        actual: instances.len() as u32,
        min: spec.min,
        policy: spec.policy,
        partitions: spec
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionView {
                provider: p.provider.clone(),
                location_id: p.location_id.as_ref().map(|l| l.as_str().to_owned()),
                max: p.max,
                desired: want[i],
                actual: actual[i],
            })
            .collect(),
        template: spec.template.clone(),
        heal_limit_per_hour: spec.heal_limit_per_hour,
        burst_after_ms: spec.burst_after_ms,
        expires_at: d.expires_at.map(rfc3339),
        created_at: rfc3339(d.created_at),
        updated_at: rfc3339(d.updated_at),
        job: det.job.as_ref().map(JobView::from),
        instances,
        history: det.history,
    }
}

fn location(id: &str) -> String {
    format!("/v1/deployments/{id}")
}

fn accepted(v: &DeploymentView, job: Option<&JobRow>) -> Response {
    let mut r = json_response(StatusCode::ACCEPTED, v, 4096);
    if let Some(j) = job {
        if let Ok(h) = http::HeaderValue::from_str(&format!("/v1/jobs/{}", j.id)) {
            r.headers_mut().insert("cms-job", h);
        }
    }
    with_location(r, location(&v.id))
}

async fn deployment_of(cx: &Ctx<'_>) -> Result<DeploymentRow, ApiError> {
    Ok(requests::deployment(cx.app, cx.tenant()?, cx.params.get(0)).await?)
}

/// Creates a deployment: `count` instances of `template` over `partitions` by
/// `policy`, made, kept and healed by a job (its id is in `job`, its URL in the
/// `Cms-Job` header).
#[utoipa::path(post, path = "/v1/deployments", tag = "deployments",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes the create idempotent per tenant (1 to 255 visible ASCII characters): the same request again answers the same deployment, another one 409")),
    request_body = CreateDeploymentRequest,
    responses((status = 202, description = "The deployment, its job under way", body = DeploymentView,
        headers(("Location" = String, description = "The deployment's URL"),
            ("Cms-Job" = String, description = "The job's URL"))),
        JobProblems, BodyProblems))]
pub async fn create_deployment(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let tenant = cx.tenant()?;
    let req: CreateDeploymentRequest = cx.json()?;
    let key = cx.idempotency(&())?.map(|i| i.key);
    check_name(&req.name)?;
    check_count("count", req.count)?;
    if let Some(m) = req.min {
        if m > req.count {
            return Err(bad(format!(
                "`min` ({m}) must not exceed `count` ({})",
                req.count
            )));
        }
    }
    if req.partitions.is_empty() || req.partitions.len() > MAX_PARTITIONS {
        return Err(bad(format!(
            "`partitions` must name 1 to {MAX_PARTITIONS} partitions, not {}",
            req.partitions.len()
        )));
    }
    let heal = req.heal_limit_per_hour.unwrap_or(DEFAULT_HEAL_LIMIT);
    check_count("heal_limit_per_hour", heal)?;
    let burst = req.burst_after_ms.map_or(DEFAULT_BURST_AFTER_MS, u64::from);
    if burst > 86_400_000 {
        return Err(bad(format!(
            "`burst_after_ms` must be at most 86400000, not {burst}"
        )));
    }
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|v| time_field("expires_at", v))
        .transpose()?;
    let deadline = req
        .deadline
        .as_deref()
        .map(|v| time_field("deadline", v))
        .transpose()?;
    let spec = DeploymentSpec {
        template: req.template,
        partitions: req.partitions,
        policy: req.policy,
        min: req.min,
        heal_limit_per_hour: heal,
        burst_after_ms: burst,
    };
    for (i, p) in spec.partitions.iter().enumerate() {
        cx.app
            .service
            .provider(tenant, &p.provider)
            .map_err(|e| ApiError::from(e).with_provider(&p.provider))?;
        let s = spec
            .instance_spec(&req.name, i, 0)
            .and_then(|s| cms_core::check_instance_spec(&s).map(|_| s))
            .map_err(|e| {
                bad(format!(
                    "partition {i} (provider `{}`): {}",
                    p.provider,
                    e.message()
                ))
            })?;
        drop(s);
    }
    let (row, job) = requests::create_deployment(
        cx.app,
        tenant,
        key.as_deref(),
        req.name,
        req.count,
        &spec,
        expires_at,
        deadline,
    )
    .await?;
    let mut v = view(cx, row, false).await?;
    v.job = job.as_ref().map(JobView::from);
    Ok(accepted(&v, job.as_ref()))
}

/// The caller's deployments (instances as last recorded; `GET` one for their
/// states now).
#[utoipa::path(get, path = "/v1/deployments", tag = "deployments",
    security(("bearer" = [])),
    params(super::query::PageQuery),
    responses((status = 200, description = "One page of deployments", body = DeploymentList), JobProblems))]
pub async fn list_deployments(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let tenant = cx.tenant()?;
    let (limit, token, _) = cursor_query(cx.query, false)?;
    let (rows, next) = requests::list_deployments(cx.app, tenant, token.as_deref(), limit)
        .await?
        .ok_or_else(unknown_page)?;
    let items = requests::details(cx.app, rows)
        .await?
        .into_iter()
        .map(view_of)
        .collect();
    let list = DeploymentList {
        items,
        next_page_token: next,
    };
    Ok(json_response(StatusCode::OK, &list, 4096))
}

/// One deployment: wanted and actual counts per partition, its instances with their
/// states now, its job while one runs, its history.
#[utoipa::path(get, path = "/v1/deployments/{id}", tag = "deployments",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The deployment's id")),
    responses((status = 200, description = "The deployment", body = DeploymentView), JobProblems))]
pub async fn get_deployment(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let d = deployment_of(cx).await?;
    let v = view(cx, d, true).await?;
    Ok(json_response(StatusCode::OK, &v, 8192))
}

/// Scales a deployment (scaling down removes the newest instances first, from the
/// last partition first) or changes its expiry.
#[utoipa::path(patch, path = "/v1/deployments/{id}", tag = "deployments",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The deployment's id")),
    request_body = UpdateDeploymentRequest,
    responses((status = 202, description = "The deployment, its job under way (a change of `count`)", body = DeploymentView),
        (status = 200, description = "The deployment (a change of `expires_at` alone, or none)", body = DeploymentView),
        JobProblems, BodyProblems))]
pub async fn update_deployment(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let tenant = cx.tenant()?;
    let req: UpdateDeploymentRequest = cx.json()?;
    let d = deployment_of(cx).await?;
    if let Some(c) = req.count {
        check_count("count", c)?;
    }
    let expires = match &req.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(time_field("expires_at", v)?)),
    };
    if req.count.is_none() && expires.is_none() {
        // An empty merge patch changes nothing.
        let v = view(cx, d, false).await?;
        return Ok(json_response(StatusCode::OK, &v, 4096));
    }
    let (after, job) = requests::update_deployment(cx.app, tenant, &d, req.count, expires).await?;
    let v = view(cx, after, false).await?;
    Ok(match &job {
        Some(j) => accepted(&v, Some(j)),
        None => json_response(StatusCode::OK, &v, 4096),
    })
}

/// Deletes a deployment: its job stops, every instance it made is deleted, then the
/// deployment (its `GET` answers 404 when that is done).
#[utoipa::path(delete, path = "/v1/deployments/{id}", tag = "deployments",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The deployment's id")),
    responses((status = 202, description = "The deployment, its deletion under way", body = DeploymentView),
        JobProblems))]
pub async fn delete_deployment(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let tenant = cx.tenant()?;
    let d = deployment_of(cx).await?;
    let (after, job) = requests::delete_deployment(cx.app, tenant, &d).await?;
    let mut v = view(cx, after, false).await?;
    v.job = job.as_ref().map(JobView::from);
    Ok(accepted(&v, job.as_ref()))
}
