//! Jobs on single instances: an operation followed to its end (`?wait=false` on the
//! native API answers with one), and an instance's expiry.

use std::time::{Duration, Instant};

use cms_core::{Error, ErrorKind, InstanceAction, InstanceSpec, InstanceState, Operation};
use serde::{Deserialize, Serialize};

use super::{result_json, JobCx, Stop};
use crate::app::App;
use crate::auth::Tenant;
use crate::service::{CreateRequest, Idempotency, InstanceRef};
use crate::store::NewJob;

/// The kinds of instance jobs start with this.
pub const PREFIX: &str = "instance.";
/// An instance's expiry: terminated when it is due.
pub const EXPIRE: &str = "instance.expire";
/// How long an operation's job waits for the instance's end state.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// What an instance job works on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceJob {
    /// The provider's name.
    pub provider: String,
    /// The instance's backend id (all but creates).
    #[serde(default)]
    pub id: Option<String>,
    /// What to create (creates).
    #[serde(default)]
    pub spec: Option<InstanceSpec>,
    /// When the created instance expires (ms since the epoch).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The client's idempotency key and request fingerprint (creates).
    #[serde(default)]
    pub idempotency: Option<(String, String)>,
    /// Whose idempotency key it is (`cimi`; the native API's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The job kind of an operation.
pub fn kind_of(action: Option<InstanceAction>) -> &'static str {
    match action {
        None => "instance.create",
        Some(InstanceAction::Start) => "instance.start",
        Some(InstanceAction::Stop) => "instance.stop",
        Some(InstanceAction::Reboot) => "instance.reboot",
        Some(InstanceAction::Delete) => "instance.delete",
    }
}

/// The deduplication key of an instance's expiry job.
pub fn expire_key(public_id: &str) -> String {
    format!("instance-expire:{public_id}")
}

fn bad_input(e: serde_json::Error) -> Stop {
    Stop::Error(
        Error::new(
            ErrorKind::InvalidArgument,
            format!("the job's input is not valid: {e}"),
        )
        .temporary(false),
    )
}

/// Sets (or, with `None`, removes) when an instance expires: a job that terminates it
/// then, one per instance (a new time moves it). Written to the instance's history.
pub async fn set_expiry(
    app: &App,
    tenant: &Tenant,
    provider: &str,
    public_id: &str,
    backend_id: &str,
    at: Option<i64>,
) -> Result<(), Error> {
    let store = app.service.store();
    let key = expire_key(public_id);
    let current = store.active_job(&key).await?;
    match at {
        Some(at) if current.as_ref().is_some_and(|j| j.next_attempt_at == at) => {}
        Some(at) => {
            let job = NewJob {
                kind: EXPIRE,
                tenant: tenant.name.to_string(),
                target: public_id.to_owned(),
                input: result_json(&InstanceJob {
                    provider: provider.to_owned(),
                    id: Some(backend_id.to_owned()),
                    spec: None,
                    expires_at: Some(at),
                    idempotency: None,
                    scope: None,
                }),
                not_before: Some(at),
                deadline: None,
                dedupe: Some(key.clone()),
            };
            let (_, new) = super::enqueue(app, &job).await?;
            if !new && !store.reschedule_job(&key, at).await? {
                // The expiry is under way: it cannot be moved any more.
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    format!(
                        "instance {public_id} is expiring now; its expiry can no longer change"
                    ),
                ));
            }
            store
                .add_history(public_id, "expiry", &format!("expires at {}", rfc3339(at)))
                .await?;
        }
        None => {
            if store.drop_scheduled_job(&key).await? {
                store
                    .add_history(public_id, "expiry", "expiry removed")
                    .await?;
            }
        }
    }
    Ok(())
}

/// When an instance expires, if it does.
pub async fn expiry(app: &App, public_id: &str) -> Result<Option<i64>, Error> {
    Ok(app
        .service
        .store()
        .active_job(&expire_key(public_id))
        .await?
        .map(|j| j.next_attempt_at))
}

/// A time as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Terminates an instance whose time came; a member of a deployment leaves it (the
/// deployment's count goes down by one, so it is not replaced).
pub async fn expire(cx: &JobCx<'_>) -> Result<String, Stop> {
    let input: InstanceJob = serde_json::from_str(&cx.job.input).map_err(bad_input)?;
    let public_id = cx.job.target.as_str();
    let service = &cx.app.service;
    let store = service.store();
    let p = service.provider(cx.tenant, &input.provider)?;
    let detail = match service
        .act(
            cx.tenant,
            p,
            InstanceRef::Public(public_id),
            InstanceAction::Delete,
        )
        .await
    {
        Ok(_) => "terminated: its expiry time came".to_owned(),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            "its expiry time came; it was gone already".to_owned()
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((deployment, m)) = store.member_of(public_id).await? {
        store.expire_member(&deployment, m.index, public_id).await?;
    }
    store.add_history(public_id, "expired", &detail).await?;
    tracing::info!(instance = %public_id, tenant = %cx.tenant.name, "instance expired");
    Ok(result_json(
        &serde_json::json!({ "instance": public_id, "expired": detail }),
    ))
}

/// Carries out an instance operation and follows it until the instance is in its end
/// state (running after a create, start or reboot; stopped; terminated or gone).
pub async fn operate(cx: &JobCx<'_>) -> Result<String, Stop> {
    let input: InstanceJob = serde_json::from_str(&cx.job.input).map_err(bad_input)?;
    let service = &cx.app.service;
    let p = service.provider(cx.tenant, &input.provider)?;
    let action = match cx.job.kind.as_str() {
        "instance.create" => None,
        "instance.start" => Some(InstanceAction::Start),
        "instance.stop" => Some(InstanceAction::Stop),
        "instance.reboot" => Some(InstanceAction::Reboot),
        "instance.delete" => Some(InstanceAction::Delete),
        other => {
            return Err(Stop::Error(
                Error::new(
                    ErrorKind::Unsupported,
                    format!("unknown job kind `{other}`"),
                )
                .temporary(false),
            ))
        }
    };
    let id = match (action, &input.id, &input.spec) {
        (None, _, Some(spec)) => {
            cx.progress(10, "creating the instance").await?;
            // The job's id is the idempotency key: a repeated attempt finds the
            // instance the first one made.
            let launch = service
                .create_instances(
                    cx.tenant,
                    p,
                    &CreateRequest {
                        spec: spec.clone(),
                        min: 1,
                        max: 1,
                        idempotency: Some(match &input.idempotency {
                            Some((key, fingerprint)) => Idempotency {
                                scope: match input.scope.as_deref() {
                                    Some("cimi") => "cimi",
                                    _ => "native",
                                },
                                key: key.clone(),
                                fingerprint: fingerprint.clone(),
                            },
                            None => Idempotency {
                                scope: "job",
                                key: cx.job.id.clone(),
                                fingerprint: "job".into(),
                            },
                        }),
                        seed: None,
                    },
                )
                .await?;
            let o = launch.instances.into_iter().next().ok_or_else(|| {
                Error::new(ErrorKind::Backend, "the create made no instance").temporary(false)
            })?;
            if let (Some(at), Some(e)) = (input.expires_at, &o.entry) {
                set_expiry(
                    cx.app,
                    cx.tenant,
                    &p.name,
                    &e.public_id,
                    o.instance.id.as_str(),
                    Some(at),
                )
                .await?;
            }
            o.instance.id.as_str().to_owned()
        }
        (Some(a), Some(id), _) => {
            cx.progress(10, &format!("asking the provider to {}", a.verb()))
                .await?;
            match service.act(cx.tenant, p, InstanceRef::Backend(id), a).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound && a == InstanceAction::Delete => {}
                Err(e) => return Err(e.into()),
            }
            id.clone()
        }
        _ => {
            return Err(Stop::Error(
                Error::new(ErrorKind::InvalidArgument, "the job names no instance")
                    .temporary(false),
            ))
        }
    };
    let want: &[InstanceState] = match action {
        None | Some(InstanceAction::Start) | Some(InstanceAction::Reboot) => {
            &[InstanceState::Running]
        }
        Some(InstanceAction::Stop) => &[InstanceState::Stopped],
        Some(InstanceAction::Delete) => &[InstanceState::Terminated],
    };
    let started = Instant::now();
    let poll = Duration::from_millis(cx.app.jobs.config.wait_poll_ms);
    loop {
        let got = service
            .instance(
                cx.tenant,
                p,
                InstanceRef::Backend(&id),
                Operation::GetInstance,
            )
            .await;
        let i = match got {
            Ok(o) => o.instance,
            Err(e) if e.kind() == ErrorKind::NotFound && action == Some(InstanceAction::Delete) => {
                return Ok(result_json(
                    &serde_json::json!({ "id": id, "state": "terminated" }),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if want.contains(&i.state) {
            return Ok(result_json(&i));
        }
        // A create is done once the instance left `pending`: one stopped (or
        // rebooted) by its tenant before this job saw it run was made all the same.
        if action.is_none()
            && matches!(
                i.state,
                InstanceState::Stopping | InstanceState::Stopped | InstanceState::Rebooting
            )
        {
            return Ok(result_json(&i));
        }
        if i.state == InstanceState::Error {
            return Err(Stop::Error(
                Error::new(
                    ErrorKind::Backend,
                    format!("instance {id} went to state error"),
                )
                .temporary(false),
            ));
        }
        if started.elapsed() > WAIT_LIMIT {
            return Err(Stop::Error(
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "instance {id} is still {} after {} s",
                        i.state.as_str(),
                        WAIT_LIMIT.as_secs()
                    ),
                )
                .temporary(true),
            ));
        }
        cx.progress(50, &format!("instance {id} is {}", i.state.as_str()))
            .await?;
        cx.sleep(poll).await?;
    }
}
