//! Images captured from instances: capture and delete (listing and reading images are
//! with the rest of the catalogue in [`super::handlers`]).

use cms_core::{Image, ImageSpec, InstanceId, Tags};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::reply::Response;

use super::handlers::{empty, json_response, with_location, Ctx};
use super::openapi::{BodyProblems, ProviderProblems};
use super::problem::ApiError;
use super::query::no_query;
use super::routes::percent_encode_segment;
use crate::service::{InstanceRef, ObjectRef};

/// What instance to capture.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureImageRequest {
    /// The instance (running or stopped).
    #[schema(value_type = String)]
    pub instance_id: InstanceId,
    /// The image's name.
    pub name: String,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

impl CaptureImageRequest {
    /// The model's request (no owner: the service adds it).
    pub fn into_spec(self) -> ImageSpec {
        ImageSpec {
            instance_id: self.instance_id,
            name: self.name,
            description: self.description,
            tags: self.tags,
            owner: None,
        }
    }
}

/// Captures an image of an instance: `pending` until the copy is made, then
/// `available`, and only the caller's to launch from and delete.
#[utoipa::path(post, path = "/v1/providers/{provider}/images", tag = "images",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = CaptureImageRequest,
    responses((status = 201, description = "The image", body = Image,
        headers(("Location" = String, description = "The image's URL"))), ProviderProblems, BodyProblems))]
pub async fn create_image(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let spec = cx.json::<CaptureImageRequest>()?.into_spec();
    let made = cx
        .app
        .service
        .create_image(
            cx.tenant()?,
            p,
            InstanceRef::Backend(spec.instance_id.as_str()),
            &spec,
        )
        .await?;
    let location = format!(
        "/v1/providers/{}/images/{}",
        percent_encode_segment(&p.name),
        percent_encode_segment(made.item.id.as_str())
    );
    Ok(with_location(
        json_response(StatusCode::CREATED, &made.item, 512),
        location,
    ))
}

/// Deletes an image the caller captured (403 for the provider's shared catalogue).
/// Instances made from it go on.
#[utoipa::path(delete, path = "/v1/providers/{provider}/images/{id}", tag = "images",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The image id (percent-encoded)")),
    responses((status = 204, description = "Deleted"), ProviderProblems))]
pub async fn delete_image(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .delete_image(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
