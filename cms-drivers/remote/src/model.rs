//! The native API's documents, as this driver reads and writes them.

use cms_core::{Capabilities, FlavorId, ImageId, Instance, LocationId, NetworkId, PageToken, Tags};
use serde::{Deserialize, Serialize};

/// A listing: one page of items and the token of the next.
#[derive(Debug, Deserialize)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<PageToken>,
}

/// A provider of the server, as `GET /v1/providers` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// Its name, as in URLs.
    pub name: String,
    /// The driver behind it on that server (`memory`, `ec2`, …).
    pub driver: String,
    /// What it supports.
    pub capabilities: Capabilities,
}

/// The part of an RFC 9457 problem document the driver reads.
#[derive(Debug, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub temporary: Option<bool>,
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// An instance and the provider it lives on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderInstance {
    /// The provider's name.
    pub provider: String,
    #[serde(flatten)]
    pub instance: Instance,
}

/// Why a provider is missing from an aggregated listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderError {
    /// The provider's name.
    pub provider: String,
    /// The HTTP status its error would have on its own.
    pub status: u16,
    /// The error kind (`unavailable`, `timeout`, …).
    pub kind: String,
    /// What went wrong.
    pub detail: String,
}

/// Every provider's instances (`GET /v1/instances`), and the providers that failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllInstances {
    pub items: Vec<ProviderInstance>,
    pub errors: Vec<ProviderError>,
}

/// The body of `POST …/instances`.
#[derive(Serialize)]
pub(crate) struct CreateInstanceBody<'a> {
    pub name: &'a str,
    pub image_id: &'a ImageId,
    pub flavor_id: &'a FlavorId,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub network_ids: &'a [NetworkId],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<&'a LocationId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a str>,
    pub tags: Tags,
}

/// The body of `PATCH …/instances/{id}/tags`: a JSON merge patch (a value sets, `null`
/// removes).
pub(crate) type TagPatch<'a> = std::collections::BTreeMap<&'a str, Option<&'a str>>;
