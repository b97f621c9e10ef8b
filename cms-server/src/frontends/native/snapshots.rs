//! Snapshots of volumes: list, get, create, delete.

use cms_core::{Operation, Snapshot, SnapshotFilter, SnapshotSpec, Tags, VolumeId};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::reply::Response;

use super::handlers::{empty, json_response, page_response, with_location, Ctx, ListResponse};
use super::openapi::{BodyProblems, ProviderProblems};
use super::problem::ApiError;
use super::query::{no_query, page_query, PageQuery};
use super::routes::percent_encode_segment;
use crate::service::ObjectRef;

/// What volume to snapshot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    /// The volume to copy.
    #[schema(value_type = String)]
    pub volume_id: VolumeId,
    /// A name for the snapshot.
    #[serde(default)]
    pub name: String,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

impl CreateSnapshotRequest {
    /// The model's request (no owner: the service adds it).
    pub fn into_spec(self) -> SnapshotSpec {
        SnapshotSpec {
            volume_id: self.volume_id,
            name: self.name,
            description: self.description,
            tags: self.tags,
            owner: None,
        }
    }
}

/// One page of the caller's snapshots.
#[utoipa::path(get, path = "/v1/providers/{provider}/snapshots", tag = "snapshots",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of snapshots", body = ListResponse<Snapshot>), ProviderProblems))]
pub async fn list_snapshots(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx
        .app
        .service
        .list_snapshots(cx.tenant()?, p, &SnapshotFilter::default(), &page, false)
        .await?;
    Ok(page_response(page, 384))
}

/// Starts a snapshot of a volume: `pending` with its progress, then `completed`.
#[utoipa::path(post, path = "/v1/providers/{provider}/snapshots", tag = "snapshots",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = CreateSnapshotRequest,
    responses((status = 201, description = "The snapshot", body = Snapshot,
        headers(("Location" = String, description = "The snapshot's URL"))), ProviderProblems, BodyProblems))]
pub async fn create_snapshot(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let spec = cx.json::<CreateSnapshotRequest>()?.into_spec();
    let made = cx
        .app
        .service
        .create_snapshot(
            cx.tenant()?,
            p,
            ObjectRef::Backend(spec.volume_id.as_str()),
            &spec,
        )
        .await?;
    let location = format!(
        "/v1/providers/{}/snapshots/{}",
        percent_encode_segment(&p.name),
        percent_encode_segment(made.item.id.as_str())
    );
    Ok(with_location(
        json_response(StatusCode::CREATED, &made.item, 512),
        location,
    ))
}

/// One snapshot.
#[utoipa::path(get, path = "/v1/providers/{provider}/snapshots/{id}", tag = "snapshots",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The snapshot id (percent-encoded)")),
    responses((status = 200, description = "The snapshot", body = Snapshot), ProviderProblems))]
pub async fn get_snapshot(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let s = cx
        .app
        .service
        .snapshot(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            Operation::GetSnapshot,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &s.item, 512))
}

/// Deletes a snapshot; volumes made from it go on.
#[utoipa::path(delete, path = "/v1/providers/{provider}/snapshots/{id}", tag = "snapshots",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The snapshot id (percent-encoded)")),
    responses((status = 204, description = "Deleted"), ProviderProblems))]
pub async fn delete_snapshot(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .delete_snapshot(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
