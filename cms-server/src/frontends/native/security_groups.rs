//! Security groups: list, get, create, delete, and their rules added and removed.

use cms_core::{
    NetworkId, Operation, SecurityGroup, SecurityGroupFilter, SecurityGroupSpec, SecurityRule, Tags,
};
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

/// What security group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecurityGroupRequest {
    /// Its name, unique in its network.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// The network to make it in, where the provider scopes groups; the default one
    /// when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub network_id: Option<NetworkId>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
}

/// Rules to add to a group or remove from it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityRulesRequest {
    /// 1 to 100 rules.
    pub rules: Vec<SecurityRule>,
}

impl CreateSecurityGroupRequest {
    /// The model's request (no owner: the service adds it).
    pub fn into_spec(self) -> SecurityGroupSpec {
        SecurityGroupSpec {
            name: self.name,
            description: self.description,
            network_id: self.network_id,
            tags: self.tags,
            owner: None,
        }
    }
}

/// One page of the security groups the caller may use: its own and each network's
/// default group.
#[utoipa::path(get, path = "/v1/providers/{provider}/security-groups", tag = "security-groups",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of security groups", body = ListResponse<SecurityGroup>), ProviderProblems))]
pub async fn list_security_groups(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx
        .app
        .service
        .list_security_groups(
            cx.tenant()?,
            p,
            &SecurityGroupFilter::default(),
            &page,
            false,
        )
        .await?;
    Ok(page_response(page, 512))
}

/// Creates a security group, with the rules the provider gives every new group.
#[utoipa::path(post, path = "/v1/providers/{provider}/security-groups", tag = "security-groups",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = CreateSecurityGroupRequest,
    responses((status = 201, description = "The security group", body = SecurityGroup,
        headers(("Location" = String, description = "The group's URL"))), ProviderProblems, BodyProblems))]
pub async fn create_security_group(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let spec = cx.json::<CreateSecurityGroupRequest>()?.into_spec();
    let made = cx
        .app
        .service
        .create_security_group(cx.tenant()?, p, &spec)
        .await?;
    let location = format!(
        "/v1/providers/{}/security-groups/{}",
        percent_encode_segment(&p.name),
        percent_encode_segment(made.item.id.as_str())
    );
    Ok(with_location(
        json_response(StatusCode::CREATED, &made.item, 512),
        location,
    ))
}

/// One security group.
#[utoipa::path(get, path = "/v1/providers/{provider}/security-groups/{id}", tag = "security-groups",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The group id (percent-encoded)")),
    responses((status = 200, description = "The security group", body = SecurityGroup), ProviderProblems))]
pub async fn get_security_group(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let g = cx
        .app
        .service
        .security_group(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            Operation::GetSecurityGroup,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &g.item, 512))
}

/// Deletes a security group (409 while instances are in it or other groups' rules
/// name it; the default groups cannot be deleted).
#[utoipa::path(delete, path = "/v1/providers/{provider}/security-groups/{id}", tag = "security-groups",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The group id (percent-encoded)")),
    responses((status = 204, description = "Deleted"), ProviderProblems))]
pub async fn delete_security_group(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .delete_security_group(cx.tenant()?, p, ObjectRef::Backend(cx.id()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn change_rules(cx: &Ctx<'_>, add: bool) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let req: SecurityRulesRequest = cx.json()?;
    let g = cx
        .app
        .service
        .change_security_rules(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            &req.rules,
            add,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &g.item, 1024))
}

/// Adds rules to a security group and answers the group. A rule the group holds is
/// not added twice (no error).
#[utoipa::path(post, path = "/v1/providers/{provider}/security-groups/{id}/add-rules", tag = "security-groups",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The group id (percent-encoded)")),
    request_body = SecurityRulesRequest,
    responses((status = 200, description = "The security group with the rules", body = SecurityGroup),
        ProviderProblems, BodyProblems))]
pub async fn add_security_rules(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    change_rules(cx, true).await
}

/// Removes rules from a security group and answers the group. A rule the group does
/// not hold is no error.
#[utoipa::path(post, path = "/v1/providers/{provider}/security-groups/{id}/remove-rules", tag = "security-groups",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The group id (percent-encoded)")),
    request_body = SecurityRulesRequest,
    responses((status = 200, description = "The security group without the rules", body = SecurityGroup),
        ProviderProblems, BodyProblems))]
pub async fn remove_security_rules(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    change_rules(cx, false).await
}
