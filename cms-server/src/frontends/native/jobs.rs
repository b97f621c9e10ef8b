//! Jobs: list, get, cancel, and a job's progress as server-sent events.

use std::convert::Infallible;

use http::StatusCode;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use warp::reply::{Reply, Response};

use super::handlers::{json_response, Ctx};
use super::openapi::JobProblems;
use super::problem::ApiError;
use super::query::{cursor_query, no_query, unknown_page};
use crate::jobs::instances::rfc3339;
use crate::jobs::requests;
use crate::jobs::{JobRow, JobState};

/// The error of a job's last attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobError {
    /// Its kind (`unavailable`, `quota_exceeded`, …).
    pub kind: String,
    /// What the server or the provider said.
    pub message: String,
}

/// A durable job: work the server carries out and repeats until it is done.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// `job-` and 17 hex digits.
    pub id: String,
    /// What it does: `deployment.apply`, `deployment.delete`, `deployment.expire`,
    /// `instance.create`, `instance.start`, `instance.stop`, `instance.reboot`,
    /// `instance.delete`, `instance.expire`.
    pub kind: String,
    /// What it works on: a deployment's id, an instance's public id, a provider.
    pub target: String,
    pub state: JobState,
    /// Attempts begun so far (an attempt interrupted by a server's death counts).
    pub attempts: u32,
    /// 0 to 100.
    pub progress: u32,
    /// What it is doing now.
    pub message: Option<String>,
    /// The error of its last failed attempt (kept while it is tried again).
    pub error: Option<JobError>,
    /// What it made, once it succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Whether it was asked to stop.
    pub cancel_requested: bool,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    /// When it is due again, while it is queued.
    pub next_attempt_at: Option<String>,
    /// After this it is not tried again.
    pub deadline: Option<String>,
}

impl From<&JobRow> for JobView {
    fn from(j: &JobRow) -> Self {
        JobView {
            id: j.id.clone(),
            kind: j.kind.clone(),
            target: j.target.clone(),
            state: j.state,
            attempts: j.attempts,
            progress: j.progress,
            message: j.message.clone(),
            error: j.error.as_ref().map(|(k, m)| JobError {
                kind: k.clone(),
                message: m.clone(),
            }),
            result: j
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            cancel_requested: j.cancel_requested,
            created_at: rfc3339(j.created_at),
            updated_at: rfc3339(j.updated_at),
            next_attempt_at: (j.state == JobState::Queued).then(|| rfc3339(j.next_attempt_at)),
            deadline: j.deadline.map(rfc3339),
        }
    }
}

/// One server-sent event of a job's stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEvent {
    /// Always `job`.
    pub event: String,
    /// The job as `GET /v1/jobs/{id}` shows it, as JSON text.
    pub data: String,
    /// Grows with every change of the job.
    pub id: String,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<JobView>,
    /// Pass as `page_token` for the next page; `null` on the last.
    pub next_page_token: Option<String>,
}

/// Paging and filter of the job listing.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct JobQuery {
    /// Only the jobs of this target (a deployment's id, an instance's public id).
    #[param(min_length = 1, max_length = 255)]
    target: Option<String>,
    /// At most this many (1 to 1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// The caller's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    security(("bearer" = [])),
    params(JobQuery),
    responses((status = 200, description = "One page of jobs", body = JobList), JobProblems))]
pub async fn list_jobs(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let tenant = cx.tenant()?;
    let (limit, token, target) = cursor_query(cx.query, true)?;
    let page = requests::list_jobs(cx.app, tenant, target.as_deref(), token.as_deref(), limit)
        .await?
        .ok_or_else(unknown_page)?;
    let list = JobList {
        items: page.jobs.iter().map(JobView::from).collect(),
        next_page_token: page.next,
    };
    Ok(json_response(
        StatusCode::OK,
        &list,
        512 * list.items.len() + 64,
    ))
}

/// One job: its state, progress, attempts and the error of its last attempt.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = JobView), JobProblems))]
pub async fn get_job(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let job = requests::job(cx.app, cx.tenant()?, cx.params.get(0)).await?;
    Ok(json_response(StatusCode::OK, &JobView::from(&job), 1024))
}

/// Cancels a job: a queued one at once, a running one at its next step (its state
/// says when). An ended job cannot be canceled (409).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 202, description = "Cancel asked for: the job as it is now", body = JobView),
        JobProblems))]
pub async fn cancel_job(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let after = requests::cancel(cx.app, cx.tenant()?, cx.params.get(0)).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &JobView::from(&after),
        1024,
    ))
}

/// A job's progress as server-sent events (`text/event-stream`): an event `job`
/// with the job (as `GET /v1/jobs/{id}` shows it) now and after every change; the
/// stream ends after the event that shows the job ended.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "Events `job`, each with the job as JSON, until it ends",
        content_type = "text/event-stream", body = JobEvent), JobProblems))]
pub async fn job_events(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let first = requests::job(cx.app, cx.tenant()?, cx.params.get(0)).await?;
    let rx = requests::follow(cx.app, first);
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|job| (Ok::<_, Infallible>(event_of(&job)), rx))
    });
    let mut r = warp::sse::reply(events).into_response();
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    Ok(r)
}

fn event_of(job: &JobRow) -> warp::sse::Event {
    let data = serde_json::to_string(&JobView::from(job)).unwrap_or_default();
    warp::sse::Event::default()
        .event("job")
        .id(job.version.to_string())
        .data(data)
}
