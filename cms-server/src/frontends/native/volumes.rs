//! Volumes: list, get, create (empty or from a snapshot), delete, attach, detach.

use cms_core::{LocationId, Operation, SnapshotId, Tags, Volume, VolumeFilter, VolumeSpec};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use super::handlers::{empty, json_response, page_response, with_location, Ctx, ListResponse};
use super::openapi::{BodyProblems, ProviderProblems};
use super::problem::ApiError;
use super::query::{no_query, page_query, PageQuery};
use super::routes::percent_encode_segment;
use crate::service::{InstanceRef, ObjectRef};

/// What volume to create: `size_gib`, or a `snapshot_id` to copy (then `size_gib`,
/// when given, is at least the snapshot's).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolumeRequest {
    /// A name for the volume.
    #[serde(default)]
    pub name: String,
    /// Its size in GiB (1 to 16384).
    #[serde(default, deserialize_with = "cms_core::model::whole::u32")]
    pub size_gib: Option<u32>,
    /// The snapshot to make it from.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub snapshot_id: Option<SnapshotId>,
    /// Where to make it; the provider's choice when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub location_id: Option<LocationId>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

/// Where to attach a volume.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachVolumeRequest {
    /// The instance (of the same location).
    pub instance_id: String,
    /// The device the instance sees it as (`/dev/sdf`, `vdb`); the provider's choice
    /// when absent.
    #[serde(default)]
    pub device: Option<String>,
}

impl CreateVolumeRequest {
    /// The model's request (no owner or client token: the service adds them).
    pub fn into_spec(self) -> VolumeSpec {
        VolumeSpec {
            name: self.name,
            size_gib: self.size_gib,
            snapshot_id: self.snapshot_id,
            location_id: self.location_id,
            tags: self.tags,
            client_token: None,
            owner: None,
        }
    }
}

fn location_of(provider: &str, v: &Volume) -> String {
    format!(
        "/v1/providers/{}/volumes/{}",
        percent_encode_segment(provider),
        percent_encode_segment(v.id.as_str())
    )
}

/// One page of the caller's volumes.
#[utoipa::path(get, path = "/v1/providers/{provider}/volumes", tag = "volumes",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of volumes", body = ListResponse<Volume>), ProviderProblems))]
pub async fn list_volumes(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx
        .app
        .service
        .list_volumes(cx.tenant()?, p, &VolumeFilter::default(), &page, false)
        .await?;
    Ok(page_response(page, 384))
}

/// Creates a volume, `creating` at first, then `available`. With an
/// `Idempotency-Key`, creating again with the same key and body answers the same
/// volume; with another body, 409.
#[utoipa::path(post, path = "/v1/providers/{provider}/volumes", tag = "volumes",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Makes the create idempotent per tenant (1 to 255 visible ASCII characters)")),
    request_body = CreateVolumeRequest,
    responses((status = 201, description = "The volume", body = Volume,
        headers(("Location" = String, description = "The volume's URL"))), ProviderProblems, BodyProblems))]
pub async fn create_volume(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let req: CreateVolumeRequest = cx.json()?;
    let idempotency = cx.idempotency(&req)?;
    let mut spec = req.into_spec();
    let snapshot = spec.snapshot_id.take();
    let made = cx
        .app
        .service
        .create_volume(
            cx.tenant()?,
            p,
            &spec,
            snapshot.as_ref().map(|s| ObjectRef::Backend(s.as_str())),
            idempotency.as_ref(),
        )
        .await?;
    Ok(with_location(
        json_response(StatusCode::CREATED, &made.item, 512),
        location_of(&p.name, &made.item),
    ))
}

/// One volume.
#[utoipa::path(get, path = "/v1/providers/{provider}/volumes/{id}", tag = "volumes",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The volume id (percent-encoded)")),
    responses((status = 200, description = "The volume", body = Volume), ProviderProblems))]
pub async fn get_volume(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let v = cx
        .app
        .service
        .volume(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            Operation::GetVolume,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &v.item, 512))
}

/// Deletes a volume (409 while it is attached: detach it first).
#[utoipa::path(delete, path = "/v1/providers/{provider}/volumes/{id}", tag = "volumes",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The volume id (percent-encoded)")),
    responses((status = 204, description = "Deletion accepted"), ProviderProblems))]
pub async fn delete_volume(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .delete_volume(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Attaches a volume to an instance: `attaching`, then `in_use`. Attaching it again
/// to the same instance answers it as it is.
#[utoipa::path(post, path = "/v1/providers/{provider}/volumes/{id}/attach", tag = "volumes",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The volume id (percent-encoded)")),
    request_body = AttachVolumeRequest,
    responses((status = 202, description = "Attachment accepted: the volume as it is now", body = Volume),
        ProviderProblems, BodyProblems))]
pub async fn attach_volume(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let req: AttachVolumeRequest = cx.json()?;
    let v = cx
        .app
        .service
        .attach_volume(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            InstanceRef::Backend(&req.instance_id),
            req.device.as_deref(),
        )
        .await?;
    Ok(json_response(StatusCode::ACCEPTED, &v.item, 512))
}

/// Detaches a volume from its instance: `detaching`, then `available`. Detaching one
/// already detaching or available answers it as it is.
#[utoipa::path(post, path = "/v1/providers/{provider}/volumes/{id}/detach", tag = "volumes",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The volume id (percent-encoded)")),
    responses((status = 202, description = "Detachment accepted: the volume as it is now", body = Volume),
        ProviderProblems))]
pub async fn detach_volume(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let v = cx
        .app
        .service
        .detach_volume(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(json_response(StatusCode::ACCEPTED, &v.item, 512))
}
