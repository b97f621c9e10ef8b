//! The native API's handlers, one per route of [`ROUTES`](super::routes::ROUTES),
//! each documented with `#[utoipa::path]`, and the bodies they take and answer.

use bytes::Bytes;
use cms_core::{
    BlockDevice, Capabilities, Flavor, FlavorId, Image, ImageFilter, ImageId, Instance,
    InstanceAction, InstanceSpec, KeyPair, KeyPairSpec, Location, LocationId, Network, NetworkId,
    NetworkSpec, Operation, Page, PageToken, SecurityGroupId, Tags,
};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use warp::reply::Response;

use super::openapi::{AuthProblems, BodyProblems, OpenProblems, ProviderProblems};
use super::problem::{status_of, type_uri, ApiError, ServerKind};
use super::query::{
    instance_query, no_query, page_query, wait_query, AggregateQuery, InstanceListQuery, PageQuery,
};
use super::routes::{percent_encode_segment, Params, RouteId};
use super::{addresses, deployments, images, jobs, security_groups, snapshots, volumes};
use crate::app::App;
use crate::auth::Tenant;
use crate::service::{CreateRequest, Idempotency, InstanceRef, ObjectRef, Provider};

/// A listing: one page of items and the token of the next page (`null` on the last).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; `null` on the last page.
    #[schema(value_type = Option<String>)]
    pub next_page_token: Option<PageToken>,
}

impl<T> From<Page<T>> for ListResponse<T> {
    fn from(p: Page<T>) -> Self {
        ListResponse {
            items: p.items,
            next_page_token: p.next,
        }
    }
}

/// A listing's answer: a page of shown objects, about `per_item` bytes each.
pub(super) fn page_response<T: Serialize>(
    page: Page<crate::service::Shown<T>>,
    per_item: usize,
) -> Response {
    let cap = 128 + page.items.len() * per_item;
    let listing = ListResponse {
        items: page.items.into_iter().map(|s| s.item).collect(),
        next_page_token: page.next,
    };
    json_response(StatusCode::OK, &listing, cap)
}

impl<T> ListResponse<T> {
    fn all(items: Vec<T>) -> Self {
        ListResponse {
            items,
            next_page_token: None,
        }
    }
}

/// A provider the caller may use.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderInfo {
    /// The name used in URLs.
    pub name: String,
    /// The driver behind it (`memory`, …).
    pub driver: String,
    /// What it supports.
    pub capabilities: Capabilities,
}

/// An instance and the provider it lives on.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderInstance {
    /// The provider's name.
    pub provider: String,
    #[serde(flatten)]
    pub instance: Instance,
}

/// Why a provider is missing from an aggregated listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderError {
    /// The provider's name.
    pub provider: String,
    /// The HTTP status the error would have on its own.
    pub status: u16,
    /// The problem type (`urn:cms:problem:<kind>`).
    #[serde(rename = "type")]
    pub type_: String,
    /// The error kind (`unavailable`, `timeout`, …).
    pub kind: String,
    /// What went wrong.
    pub detail: String,
}

/// The instances of every provider the caller may use; providers that failed are
/// listed under `errors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateResponse {
    pub items: Vec<ProviderInstance>,
    pub errors: Vec<ProviderError>,
}

/// What instance to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    /// A name for the instance.
    #[serde(default)]
    pub name: String,
    /// The image to boot.
    #[schema(value_type = String)]
    pub image_id: ImageId,
    /// The size.
    #[schema(value_type = String)]
    pub flavor_id: FlavorId,
    /// Networks to attach; the provider's default when empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub network_ids: Vec<NetworkId>,
    /// Where to place it; the provider's choice when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub location_id: Option<LocationId>,
    /// A key pair to install.
    #[serde(default)]
    pub key_name: Option<String>,
    /// User data (cloud-init and the like), as text.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Tags,
    /// Security groups to put it in; the network's default group when empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub security_group_ids: Vec<SecurityGroupId>,
    /// Volumes to make with it and attach: each of `size_gib`, or from a
    /// `snapshot_id`, at `device` (the provider's choice when absent), deleted with
    /// the instance unless `delete_on_termination` is false.
    #[serde(default)]
    pub volumes: Vec<BlockDevice>,
    /// When the instance is terminated (RFC 3339): a job does it then.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

impl CreateInstanceRequest {
    /// The model's request (no client token or owner: the service adds them).
    pub fn into_spec(self) -> InstanceSpec {
        InstanceSpec {
            name: self.name,
            image_id: self.image_id,
            flavor_id: self.flavor_id,
            network_ids: self.network_ids,
            location_id: self.location_id,
            key_name: self.key_name,
            user_data: self.user_data,
            tags: self.tags,
            client_token: None,
            owner: None,
            security_group_ids: self.security_group_ids,
            volumes: self.volumes,
        }
    }
}

/// What network to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetworkRequest {
    pub name: String,
    /// The IPv4 range, `10.1.0.0/24`.
    pub cidr: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub location_id: Option<LocationId>,
    #[serde(default)]
    pub tags: Tags,
}

impl CreateNetworkRequest {
    /// The model's request.
    pub fn into_spec(self) -> NetworkSpec {
        NetworkSpec {
            name: self.name,
            cidr: self.cidr,
            location_id: self.location_id,
            tags: self.tags,
        }
    }
}

/// What key pair to create: generated (no `public_key`; the answer carries the
/// private key, only this once) or imported.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyPairRequest {
    pub name: String,
    /// An OpenSSH public key to import; absent to have one generated.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// What a handler sees of a request.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub tenant: Option<&'a Tenant>,
    pub params: &'a Params<'a>,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

impl Ctx<'_> {
    pub(super) fn tenant(&self) -> Result<&Tenant, ApiError> {
        self.tenant
            .ok_or_else(|| ApiError::unauthenticated("this route needs an API key"))
    }

    /// The provider named by the first path parameter.
    pub(super) fn provider(&self) -> Result<&Provider, ApiError> {
        let name = self.params.get(0);
        self.app
            .service
            .provider(self.tenant()?, name)
            .map_err(|e| ApiError::from(e).with_provider(name))
    }

    /// The second path parameter: the id of the object the route names.
    pub(super) fn id(&self) -> &str {
        self.params.get(1)
    }

    /// The instance named by the second path parameter, if the caller may see it:
    /// another tenant's instance is "not found", exactly as one that does not exist.
    async fn instance(&self, p: &Provider, op: Operation) -> Result<Instance, ApiError> {
        Ok(std::sync::Arc::unwrap_or_clone(
            self.app
                .service
                .instance(self.tenant()?, p, InstanceRef::Backend(self.id()), op)
                .await?
                .instance,
        ))
    }

    async fn act(&self, action: InstanceAction) -> Result<Response, ApiError> {
        let p = self.provider()?;
        if wait_query(self.query)? {
            // Seen by the caller now (404 otherwise), then followed by a job.
            let vm = self.instance(p, action.operation()).await?;
            let input = crate::jobs::instances::InstanceJob {
                provider: p.name.to_string(),
                id: Some(vm.id.as_str().to_owned()),
                spec: None,
                expires_at: None,
                idempotency: None,
                scope: None,
            };
            return job_accepted(self, Some(action), vm.id.as_str(), input).await;
        }
        let (_, after) = self
            .app
            .service
            .act(self.tenant()?, p, InstanceRef::Backend(self.id()), action)
            .await?;
        Ok(json_response(StatusCode::ACCEPTED, &after.instance, 1024))
    }

    /// The body as JSON of type `T`, checked for media type and shape.
    pub(super) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(self.headers, &self.body)
    }

    /// The request's `Idempotency-Key`, with the fingerprint of `request` (what it
    /// asks for: the same key with another request is refused).
    pub(super) fn idempotency<T: Serialize>(
        &self,
        request: &T,
    ) -> Result<Option<Idempotency>, ApiError> {
        let Some(v) = self.headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = v
            .to_str()
            .ok()
            .filter(|k| valid_idempotency_key(k))
            .ok_or_else(|| {
                ApiError::server(
                    ServerKind::InvalidHeader,
                    "header `Idempotency-Key` must be 1 to 255 visible ASCII characters",
                )
            })?;
        let fingerprint = serde_json::to_vec(request)
            .map(|b| hex(&Sha256::digest(&b)))
            .unwrap_or_default();
        Ok(Some(Idempotency {
            scope: "native",
            key: key.to_owned(),
            fingerprint,
        }))
    }
}

/// Whether the route's handler reads the request body.
pub fn reads_body(id: RouteId) -> bool {
    matches!(
        id,
        RouteId::CreateInstance
            | RouteId::CreateNetwork
            | RouteId::CreateKeyPair
            | RouteId::UpdateInstanceTags
            | RouteId::CreateImage
            | RouteId::CreateVolume
            | RouteId::AttachVolume
            | RouteId::CreateSnapshot
            | RouteId::CreateSecurityGroup
            | RouteId::AddSecurityRules
            | RouteId::RemoveSecurityRules
            | RouteId::AllocateAddress
            | RouteId::AssociateAddress
            | RouteId::UpdateInstance
            | RouteId::CreateDeployment
            | RouteId::UpdateDeployment
    )
}

/// Parses a JSON body: `application/json` (or `+json`), well-formed, of type `T`;
/// errors name what is wrong and where.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let ctype = crate::frontends::body::media_type(headers);
    match ctype.as_deref() {
        Some("application/json") => {}
        Some(t) if t.starts_with("application/") && t.ends_with("+json") => {}
        None if body.is_empty() => return Err(ApiError::server(
            ServerKind::MalformedBody,
            "the request body is empty; expected a JSON object (Content-Type: application/json)",
        )),
        other => {
            return Err(ApiError::server(
                ServerKind::UnsupportedMediaType,
                format!(
                    "the request body must be `application/json`, not `{}`",
                    other.unwrap_or("(no Content-Type)")
                ),
            ))
        }
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::server(
                ServerKind::MalformedBody,
                "the request body is empty; expected a JSON object",
            ))
        }
        // Every body is an object; serde alone would also read a struct from an array
        // of its fields.
        Some(b) if *b != b'{' && serde_json::from_slice::<serde_json::Value>(body).is_ok() => {
            return Err(ApiError::server(
                ServerKind::MalformedBody,
                "the request body must be a JSON object",
            ))
        }
        Some(_) => {}
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("the request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("the request body is not the expected object: {inner}")
        } else {
            format!("field `{path}`: {inner}")
        };
        ApiError::server(ServerKind::MalformedBody, what)
    })?;
    de.end().map_err(|e| {
        ApiError::server(
            ServerKind::MalformedBody,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// An answer of already serialized JSON.
pub(super) fn raw_json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON answer; `capacity` is a guess of its size.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T, capacity: usize) -> Response {
    let mut buf = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => raw_json(status, buf),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an answer");
            super::problem_response(
                &ApiError::server(ServerKind::Internal, "cannot serialize the answer"),
                "",
                None,
            )
        }
    }
}

fn text_response(content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(super) fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Bytes::new().into());
    *r.status_mut() = status;
    r
}

pub(super) fn with_location(mut r: Response, location: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Runs the handler of `id`.
pub async fn dispatch(id: RouteId, cx: &Ctx<'_>) -> Result<Response, ApiError> {
    match id {
        RouteId::Healthz => healthz(cx).await,
        RouteId::Metrics => metrics(cx).await,
        RouteId::OpenApi => openapi(cx).await,
        RouteId::ListProviders => list_providers(cx).await,
        RouteId::ListAllInstances => list_all_instances(cx).await,
        RouteId::ListInstances => list_instances(cx).await,
        RouteId::CreateInstance => create_instance(cx).await,
        RouteId::GetInstance => get_instance(cx).await,
        RouteId::DeleteInstance => delete_instance(cx).await,
        RouteId::StartInstance => start_instance(cx).await,
        RouteId::StopInstance => stop_instance(cx).await,
        RouteId::RebootInstance => reboot_instance(cx).await,
        RouteId::GetConsoleOutput => get_console_output(cx).await,
        RouteId::UpdateInstanceTags => update_instance_tags(cx).await,
        RouteId::ListImages => list_images(cx).await,
        RouteId::GetImage => get_image(cx).await,
        RouteId::ListFlavors => list_flavors(cx).await,
        RouteId::ListNetworks => list_networks(cx).await,
        RouteId::CreateNetwork => create_network(cx).await,
        RouteId::GetNetwork => get_network(cx).await,
        RouteId::DeleteNetwork => delete_network(cx).await,
        RouteId::ListLocations => list_locations(cx).await,
        RouteId::ListKeyPairs => list_key_pairs(cx).await,
        RouteId::CreateKeyPair => create_key_pair(cx).await,
        RouteId::DeleteKeyPair => delete_key_pair(cx).await,
        RouteId::CreateImage => images::create_image(cx).await,
        RouteId::DeleteImage => images::delete_image(cx).await,
        RouteId::ListVolumes => volumes::list_volumes(cx).await,
        RouteId::CreateVolume => volumes::create_volume(cx).await,
        RouteId::GetVolume => volumes::get_volume(cx).await,
        RouteId::DeleteVolume => volumes::delete_volume(cx).await,
        RouteId::AttachVolume => volumes::attach_volume(cx).await,
        RouteId::DetachVolume => volumes::detach_volume(cx).await,
        RouteId::ListSnapshots => snapshots::list_snapshots(cx).await,
        RouteId::CreateSnapshot => snapshots::create_snapshot(cx).await,
        RouteId::GetSnapshot => snapshots::get_snapshot(cx).await,
        RouteId::DeleteSnapshot => snapshots::delete_snapshot(cx).await,
        RouteId::ListSecurityGroups => security_groups::list_security_groups(cx).await,
        RouteId::CreateSecurityGroup => security_groups::create_security_group(cx).await,
        RouteId::GetSecurityGroup => security_groups::get_security_group(cx).await,
        RouteId::DeleteSecurityGroup => security_groups::delete_security_group(cx).await,
        RouteId::AddSecurityRules => security_groups::add_security_rules(cx).await,
        RouteId::RemoveSecurityRules => security_groups::remove_security_rules(cx).await,
        RouteId::ListAddresses => addresses::list_addresses(cx).await,
        RouteId::AllocateAddress => addresses::allocate_address(cx).await,
        RouteId::GetAddress => addresses::get_address(cx).await,
        RouteId::ReleaseAddress => addresses::release_address(cx).await,
        RouteId::AssociateAddress => addresses::associate_address(cx).await,
        RouteId::DisassociateAddress => addresses::disassociate_address(cx).await,
        RouteId::UpdateInstance => update_instance(cx).await,
        RouteId::GetInstanceHistory => get_instance_history(cx).await,
        RouteId::ListJobs => jobs::list_jobs(cx).await,
        RouteId::GetJob => jobs::get_job(cx).await,
        RouteId::CancelJob => jobs::cancel_job(cx).await,
        RouteId::JobEvents => jobs::job_events(cx).await,
        RouteId::ListDeployments => deployments::list_deployments(cx).await,
        RouteId::CreateDeployment => deployments::create_deployment(cx).await,
        RouteId::GetDeployment => deployments::get_deployment(cx).await,
        RouteId::UpdateDeployment => deployments::update_deployment(cx).await,
        RouteId::DeleteDeployment => deployments::delete_deployment(cx).await,
    }
}

/// Liveness: `ok`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The server is up", body = String, content_type = "text/plain"), OpenProblems))]
pub async fn healthz(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    Ok(text_response("text/plain; charset=utf-8", "ok"))
}

/// Prometheus metrics: HTTP requests by route, latency, and driver calls per provider.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4"), OpenProblems))]
pub async fn metrics(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let mut out = String::with_capacity(16 * 1024);
    cx.app.metrics.write_prometheus(
        &mut out,
        cx.app
            .service
            .providers()
            .iter()
            .filter_map(|p| p.metrics().map(|m| m.as_ref())),
    );
    Ok(text_response(
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    ))
}

/// This document: the OpenAPI 3 description of the native API.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object), OpenProblems))]
pub async fn openapi(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    Ok(text_response("application/json", cx.app.openapi.clone()))
}

/// The providers the caller may use, with their drivers and capabilities.
#[utoipa::path(get, path = "/v1/providers", tag = "providers",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's providers", body = ListResponse<ProviderInfo>), AuthProblems))]
pub async fn list_providers(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    no_query(cx.query)?;
    let tenant = cx.tenant()?;
    let items: Vec<ProviderInfo> = cx
        .app
        .service
        .providers_of(tenant)
        .map(|p| ProviderInfo {
            name: p.name.to_string(),
            driver: p.driver.to_owned(),
            capabilities: *p.capabilities(),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &ListResponse::all(items),
        1024,
    ))
}

/// Every instance of every provider the caller may use, queried concurrently; a
/// provider that fails or does not answer in time is listed under `errors`.
#[utoipa::path(get, path = "/v1/instances", tag = "instances",
    security(("bearer" = [])),
    params(AggregateQuery),
    responses((status = 200, description = "Instances of all providers, and the providers that failed",
        body = AggregateResponse), AuthProblems))]
pub async fn list_all_instances(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (filter, _) = instance_query(cx.query, false)?;
    let tenant = cx.tenant()?;
    let (found, failed) = cx
        .app
        .service
        .instances_everywhere(tenant, &filter, cx.app.aggregate_timeout)
        .await;
    let items: Vec<ProviderInstance> = found
        .into_iter()
        .map(|(p, instance)| ProviderInstance {
            provider: p.name.to_string(),
            instance,
        })
        .collect();
    let errors = failed
        .into_iter()
        .map(|(p, e)| {
            let kind = e.kind();
            ProviderError {
                provider: p.name.to_string(),
                status: status_of(kind).as_u16(),
                type_: type_uri(kind.as_str()),
                kind: kind.as_str().to_owned(),
                detail: e.to_string(),
            }
        })
        .collect();
    let cap = 256 + items.len() * 512;
    Ok(json_response(
        StatusCode::OK,
        &AggregateResponse { items, errors },
        cap,
    ))
}

/// One page of a provider's instances, filtered.
#[utoipa::path(get, path = "/v1/providers/{provider}/instances", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), InstanceListQuery),
    responses((status = 200, description = "One page of instances", body = ListResponse<Instance>), ProviderProblems))]
pub async fn list_instances(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let (filter, page) = instance_query(cx.query, true)?;
    let page = cx
        .app
        .service
        .list_instances(cx.tenant()?, p, &filter, &page, false, None)
        .await?;
    // The hot path: written by hand, byte for byte what serde would write, each
    // instance's JSON kept while its view stays the same (and lent, not cloned).
    let kept = p.instance_json();
    let made = kept.make_missing(page.items.iter().map(|o| &o.instance), |i| {
        let mut b = Vec::with_capacity(512);
        super::fastjson::write_instance(&mut b, i);
        b.into_boxed_slice()
    });
    let r = kept.read();
    let len: usize = page
        .items
        .iter()
        .zip(&made)
        .map(|(o, m)| {
            m.as_ref()
                .or_else(|| r.get(&o.instance))
                .map_or(512, |b| b.len() + 1)
        })
        .sum();
    let mut buf = Vec::with_capacity(64 + len);
    super::fastjson::write_page_with(
        &mut buf,
        page.items.iter().zip(&made),
        page.next.as_ref(),
        |out, (o, m)| match m.as_ref().or_else(|| r.get(&o.instance)) {
            Some(b) => out.extend_from_slice(b),
            // Let go of since it was looked up (the cache was full): written again.
            None => super::fastjson::write_instance(out, &o.instance),
        },
    );
    drop(r);
    Ok(raw_json(StatusCode::OK, buf))
}

/// Creates an instance. With an `Idempotency-Key`, creating again with the same key
/// and the same body answers the same instance; with another body, 400.
#[utoipa::path(post, path = "/v1/providers/{provider}/instances", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Makes the create idempotent per tenant (1 to 255 visible ASCII characters)")),
    request_body = CreateInstanceRequest,
    responses((status = 201, description = "The instance, usually pending", body = InstanceView,
        headers(("Location" = String, description = "The instance's URL"))),
        (status = 202, description = "With `wait=false`: the job that creates the instance and follows it until it runs", body = super::jobs::JobView,
        headers(("Location" = String, description = "The job's URL"))),
        ProviderProblems, BodyProblems))]
pub async fn create_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let background = wait_query(cx.query)?;
    let req = cx.json::<CreateInstanceRequest>()?;
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|v| time_field("expires_at", v))
        .transpose()?;
    let spec = req.into_spec();
    let idempotency = cx.idempotency(&spec)?;
    if background {
        cms_core::check_instance_spec(&spec)
            .map_err(|e| ApiError::from(e.with_provider(p.name.to_string())))?;
        let input = crate::jobs::instances::InstanceJob {
            provider: p.name.to_string(),
            id: None,
            spec: Some(spec),
            expires_at,
            idempotency: idempotency.map(|i| (i.key, i.fingerprint)),
            scope: None,
        };
        return job_accepted(cx, None, &p.name, input).await;
    }
    let launch = cx
        .app
        .service
        .create_instances(
            cx.tenant()?,
            p,
            &CreateRequest {
                spec,
                min: 1,
                max: 1,
                idempotency,
                seed: None,
            },
        )
        .await?;
    let made = launch
        .instances
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::server(ServerKind::Internal, "the create made no instance"))?;
    if let (Some(at), Some(e)) = (expires_at, &made.entry) {
        crate::jobs::instances::set_expiry(
            cx.app,
            cx.tenant()?,
            &p.name,
            &e.public_id,
            made.instance.id.as_str(),
            Some(at),
        )
        .await?;
    }
    let vm = made.instance;
    let location = format!(
        "/v1/providers/{}/instances/{}",
        percent_encode_segment(&p.name),
        percent_encode_segment(vm.id.as_str())
    );
    let view = InstanceView {
        instance: &vm,
        expires_at: expires_at.map(crate::jobs::instances::rfc3339),
    };
    Ok(with_location(
        json_response(StatusCode::CREATED, &view, 1024),
        location,
    ))
}

/// An instance, with when it expires (if it does).
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView<'a> {
    #[serde(flatten)]
    #[schema(inline)]
    pub instance: &'a Instance,
    /// When a job terminates it (RFC 3339); absent when it does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A change of an instance: when it expires (`null`: never).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInstanceRequest {
    /// When a job terminates it (RFC 3339); `null` removes the expiry.
    #[schema(format = DateTime, nullable)]
    pub expires_at: Option<String>,
}

/// An RFC 3339 time of a body field, in ms since the epoch.
pub(super) fn time_field(field: &str, v: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::server(
                ServerKind::MalformedBody,
                format!("`{field}` must be an RFC 3339 time, as 2030-01-31T12:00:00Z: {e}"),
            )
        })
}

/// Adds an instance job and answers 202 with it.
async fn job_accepted(
    cx: &Ctx<'_>,
    action: Option<InstanceAction>,
    target: &str,
    input: crate::jobs::instances::InstanceJob,
) -> Result<Response, ApiError> {
    let tenant = cx.tenant()?;
    let job = crate::jobs::NewJob {
        kind: crate::jobs::instances::kind_of(action),
        tenant: tenant.name.to_string(),
        target: target.to_owned(),
        input: crate::jobs::result_json(&input),
        not_before: None,
        deadline: None,
        dedupe: None,
    };
    let (job, _) = crate::jobs::enqueue(cx.app, &job).await?;
    Ok(with_location(
        json_response(
            StatusCode::ACCEPTED,
            &super::jobs::JobView::from(&job),
            1024,
        ),
        format!("/v1/jobs/{}", job.id),
    ))
}

/// A native instance the caller may see (404 otherwise), and its public id when the
/// store has one.
async fn seen_instance(cx: &Ctx<'_>, p: &Provider) -> Result<(Instance, Option<String>), ApiError> {
    let o = cx
        .app
        .service
        .instance(
            cx.tenant()?,
            p,
            InstanceRef::Backend(cx.id()),
            Operation::GetInstance,
        )
        .await?;
    let id = match &o.entry {
        Some(e) => Some(e.public_id.to_string()),
        None => cx
            .app
            .service
            .public_ids_of_instances(p, &[o.instance.id.as_str()])
            .await?
            .pop()
            .flatten(),
    };
    Ok((std::sync::Arc::unwrap_or_clone(o.instance), id))
}

/// The public id of a native instance the caller may see (404 otherwise); an
/// instance made outside this server has none here (409).
async fn public_id_of(cx: &Ctx<'_>, p: &Provider) -> Result<(Instance, String), ApiError> {
    let (vm, id) = seen_instance(cx, p).await?;
    let id = id.ok_or_else(|| {
        ApiError::from(cms_core::Error::new(
            cms_core::ErrorKind::InvalidState,
            format!(
                "instance {} was not made through this server: it has no expiry or history here",
                cx.id()
            ),
        ))
    })?;
    Ok((vm, id))
}

/// Sets or removes when an instance expires: a job terminates it then (exactly once,
/// on one of the replicas, after restarts too); its history says so.
#[utoipa::path(patch, path = "/v1/providers/{provider}/instances/{id}", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    request_body = UpdateInstanceRequest,
    responses((status = 200, description = "The instance", body = InstanceView), ProviderProblems, BodyProblems))]
pub async fn update_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let req: UpdateInstanceRequest = cx.json()?;
    let at = req
        .expires_at
        .as_deref()
        .map(|v| time_field("expires_at", v))
        .transpose()?;
    let (vm, public_id) = public_id_of(cx, p).await?;
    crate::jobs::instances::set_expiry(
        cx.app,
        cx.tenant()?,
        &p.name,
        &public_id,
        vm.id.as_str(),
        at,
    )
    .await?;
    let view = InstanceView {
        instance: &vm,
        expires_at: at.map(crate::jobs::instances::rfc3339),
    };
    Ok(json_response(StatusCode::OK, &view, 1024))
}

/// What happened to an instance: made for a deployment, replaced, expiry set,
/// expired, deleted by a deployment (oldest first, the latest 100).
#[utoipa::path(get, path = "/v1/providers/{provider}/instances/{id}/history", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 200, description = "The instance's history", body = Vec<crate::jobs::HistoryEntry>), ProviderProblems))]
pub async fn get_instance_history(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let (_, public_id) = public_id_of(cx, p).await?;
    let h = crate::jobs::requests::instance_history(cx.app, &public_id).await?;
    Ok(json_response(StatusCode::OK, &h, 256 * h.len() + 2))
}

/// Whether an `Idempotency-Key` is 1 to 255 visible ASCII characters.
pub fn valid_idempotency_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One instance.
#[utoipa::path(get, path = "/v1/providers/{provider}/instances/{id}", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 200, description = "The instance", body = InstanceView), ProviderProblems))]
pub async fn get_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let (vm, public_id) = seen_instance(cx, p).await?;
    let expires_at = match &public_id {
        Some(id) => crate::jobs::instances::expiry(cx.app, id).await?,
        None => None,
    };
    let view = InstanceView {
        instance: &vm,
        expires_at: expires_at.map(crate::jobs::instances::rfc3339),
    };
    Ok(json_response(StatusCode::OK, &view, 1024))
}

/// What the instance's console showed: the latest part the backend keeps (at most
/// 64 KiB), as text.
#[utoipa::path(get, path = "/v1/providers/{provider}/instances/{id}/console", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 200, description = "The console output", body = cms_core::ConsoleOutput), ProviderProblems))]
pub async fn get_console_output(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let (_, out) = cx
        .app
        .service
        .console_output(cx.tenant()?, p, InstanceRef::Backend(cx.id()))
        .await?;
    Ok(json_response(StatusCode::OK, &out, 256 + out.text.len()))
}

/// A change of tags as a JSON merge patch (RFC 7396): a key with a string sets that
/// tag (adding it or overwriting its value), a key with `null` removes it (a tag the
/// instance does not carry is no error); keys not named stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct TagPatch(pub std::collections::BTreeMap<String, Option<String>>);

impl TagPatch {
    /// The changes it asks for: a string sets, `null` removes; at most
    /// [`cms_core::MAX_TAGS`] of them.
    pub fn into_changes(self) -> Result<cms_core::TagChanges, ApiError> {
        if self.0.len() > cms_core::MAX_TAGS {
            return Err(ApiError::server(
                ServerKind::MalformedBody,
                format!(
                    "{} tag changes given, at most {} per request",
                    self.0.len(),
                    cms_core::MAX_TAGS
                ),
            ));
        }
        let mut changes = cms_core::TagChanges::new();
        for (k, v) in self.0 {
            match v {
                Some(v) => {
                    changes.set.insert(k, v);
                }
                None => changes.remove.push(k),
            }
        }
        Ok(changes)
    }
}

/// Changes an instance's tags (a JSON merge patch of them, at most 50 keys) and
/// answers the instance as it is after the change.
#[utoipa::path(patch, path = "/v1/providers/{provider}/instances/{id}/tags", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    request_body(content(
            (TagPatch = "application/merge-patch+json"),
            (TagPatch = "application/json")),
        description = "`{\"team\": \"web\", \"old\": null}` sets `team` and removes `old`"),
    responses((status = 200, description = "The instance with its new tags", body = Instance),
        ProviderProblems, BodyProblems))]
pub async fn update_instance_tags(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let changes = cx.json::<TagPatch>()?.into_changes()?;
    let after = cx
        .app
        .service
        .update_tags(cx.tenant()?, p, InstanceRef::Backend(cx.id()), &changes)
        .await?;
    Ok(json_response(StatusCode::OK, &after.instance, 1024))
}

/// Deletes (terminates) an instance; it goes through `terminating` to `terminated`.
#[utoipa::path(delete, path = "/v1/providers/{provider}/instances/{id}", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 202, description = "Deletion accepted: the instance as it is now", body = Instance), ProviderProblems))]
pub async fn delete_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    cx.act(InstanceAction::Delete).await
}

/// Starts a stopped instance.
#[utoipa::path(post, path = "/v1/providers/{provider}/instances/{id}/start", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 202, description = "Start accepted: the instance as it is now", body = Instance), ProviderProblems))]
pub async fn start_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    cx.act(InstanceAction::Start).await
}

/// Stops a running instance.
#[utoipa::path(post, path = "/v1/providers/{provider}/instances/{id}/stop", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 202, description = "Stop accepted: the instance as it is now", body = Instance), ProviderProblems))]
pub async fn stop_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    cx.act(InstanceAction::Stop).await
}

/// Reboots a running instance.
#[utoipa::path(post, path = "/v1/providers/{provider}/instances/{id}/reboot", tag = "instances",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The instance id (percent-encoded)")),
    responses((status = 202, description = "Reboot accepted: the instance as it is now", body = Instance), ProviderProblems))]
pub async fn reboot_instance(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    cx.act(InstanceAction::Reboot).await
}

/// One page of images.
#[utoipa::path(get, path = "/v1/providers/{provider}/images", tag = "images",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of images", body = ListResponse<Image>), ProviderProblems))]
pub async fn list_images(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx
        .app
        .service
        .list_images(cx.tenant()?, p, &ImageFilter::default(), &page, false)
        .await?;
    Ok(page_response(page, 256))
}

/// One image.
#[utoipa::path(get, path = "/v1/providers/{provider}/images/{id}", tag = "images",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The image id (percent-encoded)")),
    responses((status = 200, description = "The image", body = Image), ProviderProblems))]
pub async fn get_image(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let image = cx
        .app
        .service
        .image(
            cx.tenant()?,
            p,
            ObjectRef::Backend(cx.id()),
            Operation::GetImage,
        )
        .await?
        .item;
    Ok(json_response(StatusCode::OK, &image, 512))
}

/// One page of flavors (instance sizes).
#[utoipa::path(get, path = "/v1/providers/{provider}/flavors", tag = "flavors",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of flavors", body = ListResponse<Flavor>), ProviderProblems))]
pub async fn list_flavors(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx.app.service.list_flavors(p, &page).await?;
    let cap = 128 + page.items.len() * 128;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse::from(page),
        cap,
    ))
}

/// One page of networks.
#[utoipa::path(get, path = "/v1/providers/{provider}/networks", tag = "networks",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"), PageQuery),
    responses((status = 200, description = "One page of networks", body = ListResponse<Network>), ProviderProblems))]
pub async fn list_networks(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    let page = page_query(cx.query)?;
    let page = cx.app.service.list_networks(p, &page).await?;
    let cap = 128 + page.items.len() * 256;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse::from(page),
        cap,
    ))
}

/// Creates a network.
#[utoipa::path(post, path = "/v1/providers/{provider}/networks", tag = "networks",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = CreateNetworkRequest,
    responses((status = 201, description = "The network", body = Network,
        headers(("Location" = String, description = "The network's URL"))), ProviderProblems, BodyProblems))]
pub async fn create_network(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let spec = cx.json::<CreateNetworkRequest>()?.into_spec();
    let net = cx.app.service.create_network(p, &spec).await?;
    let location = format!(
        "/v1/providers/{}/networks/{}",
        percent_encode_segment(&p.name),
        percent_encode_segment(net.id.as_str())
    );
    Ok(with_location(
        json_response(StatusCode::CREATED, &net, 512),
        location,
    ))
}

/// One network.
#[utoipa::path(get, path = "/v1/providers/{provider}/networks/{id}", tag = "networks",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The network id (percent-encoded)")),
    responses((status = 200, description = "The network", body = Network), ProviderProblems))]
pub async fn get_network(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let net = cx
        .app
        .service
        .get_network(p, &NetworkId::new(cx.id()))
        .await?;
    Ok(json_response(StatusCode::OK, &net, 512))
}

/// Deletes a network (409 while instances use it).
#[utoipa::path(delete, path = "/v1/providers/{provider}/networks/{id}", tag = "networks",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("id" = String, Path, description = "The network id (percent-encoded)")),
    responses((status = 204, description = "Deleted"), ProviderProblems))]
pub async fn delete_network(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .delete_network(p, &NetworkId::new(cx.id()))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Every location (availability zone, cluster, VDC).
#[utoipa::path(get, path = "/v1/providers/{provider}/locations", tag = "locations",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "Every location (`next_page_token` is null)", body = ListResponse<Location>), ProviderProblems))]
pub async fn list_locations(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let items = cx.app.service.list_locations(p).await?;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse::all(items),
        512,
    ))
}

/// Every key pair.
#[utoipa::path(get, path = "/v1/providers/{provider}/key-pairs", tag = "key-pairs",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "Every key pair (`next_page_token` is null)", body = ListResponse<KeyPair>), ProviderProblems))]
pub async fn list_key_pairs(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let items: Vec<KeyPair> = cx
        .app
        .service
        .list_key_pairs(cx.tenant()?, p)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let cap = 128 + items.len() * 512;
    Ok(json_response(
        StatusCode::OK,
        &ListResponse::all(items),
        cap,
    ))
}

/// Creates (generates) or imports a key pair. A generated key's `private_key` appears
/// in this answer only.
#[utoipa::path(post, path = "/v1/providers/{provider}/key-pairs", tag = "key-pairs",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = CreateKeyPairRequest,
    responses((status = 201, description = "The key pair (with `private_key` when generated)", body = KeyPair),
        ProviderProblems, BodyProblems))]
pub async fn create_key_pair(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    let req: CreateKeyPairRequest = cx.json()?;
    let spec = KeyPairSpec {
        name: req.name,
        public_key: req.public_key,
    };
    let (kp, _) = cx
        .app
        .service
        .create_key_pair(cx.tenant()?, p, &spec, &Default::default())
        .await?;
    Ok(json_response(StatusCode::CREATED, &kp, 2048))
}

/// Deletes a key pair.
#[utoipa::path(delete, path = "/v1/providers/{provider}/key-pairs/{name}", tag = "key-pairs",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's name"),
        ("name" = String, Path, description = "The key pair's name (percent-encoded)")),
    responses((status = 204, description = "Deleted"), ProviderProblems))]
pub async fn delete_key_pair(cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let p = cx.provider()?;
    no_query(cx.query)?;
    cx.app
        .service
        .delete_key_pair(cx.tenant()?, p, cx.id())
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
