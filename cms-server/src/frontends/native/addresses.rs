//! Public addresses: list, get, allocate, release, associate, disassociate.

use cms_core::{Address, AddressFilter, AddressSpec, Operation, Tags};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::reply::Response;

use super::handlers::{empty, json_response, page_response, with_location, Ctx, ListResponse};
use super::openapi::{BodyProblems, ProviderProblems};
use super::problem::ApiError;
use super::query::{no_query, page_query, PageQuery};
use super::routes::percent_encode_segment;
use crate::service::{InstanceRef, ObjectRef};

/// What address to allocate (`{}` for an untagged one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateAddressRequest {
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

impl AllocateAddressRequest {
    /// The model's request (no owner: the service adds it).
    pub fn into_spec(self) -> AddressSpec {
        AddressSpec {
            tags: self.tags,
            owner: None,
        }
    }
}

/// Which instance an address leads to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssociateAddressRequest {
    /// The instance (running or stopped).
    pub instance_id: String,
    /// Which of its private addresses; its first when absent.
    #[serde(default)]
    pub private_ip: Option<String>,
}

/// One page of the caller's public addresses.
#[utoipa::path(get, path = "/v1/providers/{provider}/addresses", tag = "addresses",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of addresses", body = ListResponse<Address>), ProviderProblems))]
pub async fn list_addresses(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx
        .app
        .service
        .list_addresses(cx.tenant()?, p, &AddressFilter::default(), &page, false)
        .await?;
    Ok(page_response(page, 256))
}

/// Allocates a public address to the caller (403 `quota_exceeded` when the provider
/// has none left to give).
#[utoipa::path(post, path = "/v1/providers/{provider}/addresses", tag = "addresses",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = AllocateAddressRequest,
    responses((status = 201, description = "The address", body = Address,
        headers(("Location" = String, description = "The address's URL"))), ProviderProblems, BodyProblems))]
pub async fn allocate_address(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let spec = cx.json::<AllocateAddressRequest>()?.into_spec();
    let made = cx
        .app
        .service
        .allocate_address(cx.tenant()?, p, &spec)
        .await?;
    let location = format!(
        "/v1/providers/{}/addresses/{}",
        percent_encode_segment(&p.name),
        percent_encode_segment(made.item.id.as_str())
    );
    Ok(with_location(
        json_response(StatusCode::CREATED, &made.item, 256),
        location,
    ))
}

/// One address.
#[utoipa::path(get, path = "/v1/providers/{provider}/addresses/{id}", tag = "addresses",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The address id (percent-encoded)")),
    responses((status = 200, description = "The address", body = Address), ProviderProblems))]
pub async fn get_address(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let a = cx
        .app
        .service
        .address(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            Operation::GetAddress,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &a.item, 256))
}

/// Releases an address (409 while it is associated: disassociate it first).
#[utoipa::path(delete, path = "/v1/providers/{provider}/addresses/{id}", tag = "addresses",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The address id (percent-encoded)")),
    responses((status = 204, description = "Released"), ProviderProblems))]
pub async fn release_address(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .release_address(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Associates an address with an instance (moving it from any other) and answers the
/// address; the instance shows it in its `public_ips`.
#[utoipa::path(post, path = "/v1/providers/{provider}/addresses/{id}/associate", tag = "addresses",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The address id (percent-encoded)")),
    request_body = AssociateAddressRequest,
    responses((status = 200, description = "The address", body = Address), ProviderProblems, BodyProblems))]
pub async fn associate_address(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let req: AssociateAddressRequest = cx.json()?;
    let a = cx
        .app
        .service
        .associate_address(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            InstanceRef::Backend(&req.instance_id),
            req.private_ip.as_deref(),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &a.item, 256))
}

/// Disassociates an address from its instance and answers the address (one not
/// associated answers as it is).
#[utoipa::path(post, path = "/v1/providers/{provider}/addresses/{id}/disassociate", tag = "addresses",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The address id (percent-encoded)")),
    responses((status = 200, description = "The address", body = Address), ProviderProblems))]
pub async fn disassociate_address(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let a = cx
        .app
        .service
        .disassociate_address(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(json_response(StatusCode::OK, &a.item, 256))
}
