//! CIMI Jobs: the server's durable jobs on this provider's machines, as their tenant
//! sees them. A job's state follows the operation until it ends: a machine's create,
//! start or restart succeeds when it runs, a stop when it is stopped, a delete when it
//! is gone.

use http::StatusCode;
use warp::reply::Response;

use super::doc::{Node, Obj, NS};
use super::query;
use super::{respond, CimiError, Cx};
use crate::jobs::instances::{rfc3339, InstanceJob};
use crate::jobs::requests;
use crate::store::{JobRow, JobState};

/// The URI of a CIMI action.
pub fn action_uri(name: &str) -> String {
    format!("{NS}/action/{name}")
}

/// The attributes of a Job.
pub const ATTRIBUTES: &[&str] = &[
    "resourceURI",
    "id",
    "name",
    "description",
    "created",
    "updated",
    "targetResource",
    "affectedResources",
    "action",
    "state",
    "progress",
    "returnCode",
    "statusMessage",
    "timeOfStatusChange",
    "isCancellable",
    "operations",
];

/// The provider an instance job works on.
fn provider_of(j: &JobRow) -> Option<String> {
    if !j.kind.starts_with(crate::jobs::instances::PREFIX) {
        return None;
    }
    serde_json::from_str::<InstanceJob>(&j.input)
        .ok()
        .map(|i| i.provider)
}

/// The machine an instance job works on (its backend id), once known.
fn machine_of(j: &JobRow, provider: &str) -> Option<String> {
    if j.kind == "instance.create" {
        if let Some(id) = j
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
        {
            return Some(id);
        }
        // Jobs this frontend adds name the machine they made; the native API's name
        // the provider until their instance exists.
        return (j.target != provider).then(|| j.target.clone());
    }
    if j.kind == crate::jobs::instances::EXPIRE {
        return None;
    }
    Some(j.target.clone())
}

/// CIMI's name of a job's state.
pub fn state_of(j: &JobRow) -> &'static str {
    match j.state {
        JobState::Queued if j.cancel_requested => "STOPPING",
        JobState::Running if j.cancel_requested => "STOPPING",
        JobState::Queued => "QUEUED",
        JobState::Running => "RUNNING",
        JobState::Succeeded => "SUCCESS",
        JobState::Failed => "FAILED",
        JobState::Canceled => "STOPPED",
    }
}

/// A job as a CIMI document.
pub fn document(cx: &Cx<'_>, j: &JobRow) -> Obj {
    let href = cx.href(&["jobs", &j.id]);
    let action = match j.kind.as_str() {
        "instance.create" => "add".to_owned(),
        "instance.delete" => "delete".to_owned(),
        "instance.start" => action_uri("start"),
        "instance.stop" => action_uri("stop"),
        "instance.reboot" => action_uri("restart"),
        "instance.expire" => "delete".to_owned(),
        other => other.to_owned(),
    };
    let target = match machine_of(j, &cx.provider.name) {
        Some(id) => cx.href(&["machines", &id]),
        None => cx.href(&["machines"]),
    };
    let (code, status) = match (&j.state, &j.error) {
        (JobState::Succeeded, _) => (0, "completed".to_owned()),
        (JobState::Canceled, _) => (1, "stopped at its tenant's request".to_owned()),
        (JobState::Failed, Some((kind, msg))) => (
            i64::from(super::status_of(error_kind(kind)).as_u16()),
            format!("{kind}: {msg}"),
        ),
        (JobState::Failed, None) => (500, "failed".to_owned()),
        (_, Some((kind, msg))) => (
            -1,
            format!(
                "{}; the last attempt failed ({kind}: {msg}) and is repeated",
                j.message.as_deref().unwrap_or("waiting")
            ),
        ),
        (_, None) => (-1, j.message.clone().unwrap_or_else(|| "queued".into())),
    };
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/Job"))
        .text("id", href.clone())
        .text("name", j.kind.clone())
        .text("created", rfc3339(j.created_at))
        .text("updated", rfc3339(j.updated_at))
        .with("targetResource", Node::Obj(Obj::href(target.clone())))
        .with(
            "affectedResources",
            Node::List(vec![Node::Obj(Obj::href(target))]),
        )
        .text("action", action)
        .text("state", state_of(j))
        .with("progress", Node::Int(i64::from(j.progress)))
        .with("returnCode", Node::Int(code))
        .text("statusMessage", status)
        .text("timeOfStatusChange", rfc3339(j.updated_at))
        .with("isCancellable", Node::Bool(!j.state.is_final()));
    if !j.state.is_final() && !j.cancel_requested {
        doc = doc.with(
            "operations",
            Node::List(vec![Node::Obj(
                Obj::new()
                    .text("rel", action_uri("stop"))
                    .text("href", cx.href(&["jobs", &j.id, "stop"])),
            )]),
        );
    }
    doc
}

fn error_kind(name: &str) -> cms_core::ErrorKind {
    cms_core::ErrorKind::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
        .unwrap_or(cms_core::ErrorKind::Backend)
}

/// The tenant's job `id`, when it works on this provider.
async fn job(cx: &Cx<'_>, id: &str) -> Result<JobRow, CimiError> {
    let j = requests::job(cx.app, cx.tenant, id).await?;
    if provider_of(&j).as_deref() != Some(&*cx.provider.name) {
        return Err(CimiError::not_found(format!(
            "job {id} not found on provider {}",
            cx.provider.name
        )));
    }
    Ok(j)
}

/// `GET …/jobs`: the tenant's jobs on this provider, newest first.
pub async fn list(cx: &Cx<'_>) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, true)?;
    q.check(ATTRIBUTES, &[])?;
    let mut w = q.window();
    let mut after: Option<String> = None;
    loop {
        let page = requests::list_jobs(cx.app, cx.tenant, None, after.as_deref(), 1000)
            .await?
            .ok_or_else(|| CimiError::bad("the job listing moved under its reader; ask again"))?;
        for j in &page.jobs {
            if provider_of(j).as_deref() == Some(&*cx.provider.name) {
                w.push(document(cx, j));
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let doc = w.finish(cx, "jobs", "Job", false);
    Ok(respond(StatusCode::OK, &doc, "Collection", cx.format))
}

/// `GET …/jobs/{id}`.
pub async fn get(cx: &Cx<'_>, id: &str) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, false)?;
    q.check(ATTRIBUTES, &[])?;
    let j = job(cx, id).await?;
    let mut doc = document(cx, &j);
    q.select(&mut doc);
    Ok(respond(StatusCode::OK, &doc, "Job", cx.format))
}

/// `POST …/jobs/{id}/stop` (or `DELETE …/jobs/{id}`): asks the job to stop at its
/// next step; an ended job is 409.
pub async fn stop(cx: &Cx<'_>, id: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    job(cx, id).await?;
    let j = requests::cancel(cx.app, cx.tenant, id).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &document(cx, &j),
        "Job",
        cx.format,
    ))
}
