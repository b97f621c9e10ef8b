//! The one list of routes the server serves.
//!
//! The router, the metrics labels (route templates) and the OpenAPI consistency tests
//! all read [`ROUTES`]: a route added here and not documented (or documented and not
//! here) fails the tests.

use std::borrow::Cow;
use std::sync::OnceLock;

/// The HTTP methods routes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    /// The method name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// The verb of an HTTP method, if routes use it.
    pub fn from_method(m: &http::Method) -> Option<Verb> {
        match *m {
            http::Method::GET => Some(Verb::Get),
            http::Method::POST => Some(Verb::Post),
            http::Method::PATCH => Some(Verb::Patch),
            http::Method::DELETE => Some(Verb::Delete),
            _ => None,
        }
    }
}

/// What a route does: the handler the dispatcher calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteId {
    Healthz,
    Metrics,
    OpenApi,
    ListProviders,
    ListAllInstances,
    ListInstances,
    CreateInstance,
    GetInstance,
    DeleteInstance,
    StartInstance,
    StopInstance,
    RebootInstance,
    GetConsoleOutput,
    UpdateInstanceTags,
    ListImages,
    GetImage,
    ListFlavors,
    ListNetworks,
    CreateNetwork,
    GetNetwork,
    DeleteNetwork,
    ListLocations,
    ListKeyPairs,
    CreateKeyPair,
    DeleteKeyPair,
    CreateImage,
    DeleteImage,
    ListVolumes,
    CreateVolume,
    GetVolume,
    DeleteVolume,
    AttachVolume,
    DetachVolume,
    ListSnapshots,
    CreateSnapshot,
    GetSnapshot,
    DeleteSnapshot,
    ListSecurityGroups,
    CreateSecurityGroup,
    GetSecurityGroup,
    DeleteSecurityGroup,
    AddSecurityRules,
    RemoveSecurityRules,
    ListAddresses,
    AllocateAddress,
    GetAddress,
    ReleaseAddress,
    AssociateAddress,
    DisassociateAddress,
    UpdateInstance,
    GetInstanceHistory,
    ListJobs,
    GetJob,
    CancelJob,
    JobEvents,
    ListDeployments,
    CreateDeployment,
    GetDeployment,
    UpdateDeployment,
    DeleteDeployment,
}

/// One route: a method, a path template (`{name}` segments are parameters) and
/// whether it needs a bearer API key.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub id: RouteId,
    pub verb: Verb,
    pub template: &'static str,
    pub auth: bool,
}

const fn r(id: RouteId, verb: Verb, template: &'static str, auth: bool) -> Route {
    Route {
        id,
        verb,
        template,
        auth,
    }
}

use RouteId::*;
use Verb::*;

/// Every route the server serves. `/healthz`, `/metrics` and `/v1/openapi.json` are
/// open; everything else needs `Authorization: Bearer <api key>`.
pub const ROUTES: &[Route] = &[
    r(Healthz, Get, "/healthz", false),
    r(Metrics, Get, "/metrics", false),
    r(OpenApi, Get, "/v1/openapi.json", false),
    r(ListProviders, Get, "/v1/providers", true),
    r(ListAllInstances, Get, "/v1/instances", true),
    r(
        ListInstances,
        Get,
        "/v1/providers/{provider}/instances",
        true,
    ),
    r(
        CreateInstance,
        Post,
        "/v1/providers/{provider}/instances",
        true,
    ),
    r(
        GetInstance,
        Get,
        "/v1/providers/{provider}/instances/{id}",
        true,
    ),
    r(
        DeleteInstance,
        Delete,
        "/v1/providers/{provider}/instances/{id}",
        true,
    ),
    r(
        StartInstance,
        Post,
        "/v1/providers/{provider}/instances/{id}/start",
        true,
    ),
    r(
        StopInstance,
        Post,
        "/v1/providers/{provider}/instances/{id}/stop",
        true,
    ),
    r(
        RebootInstance,
        Post,
        "/v1/providers/{provider}/instances/{id}/reboot",
        true,
    ),
    r(
        GetConsoleOutput,
        Get,
        "/v1/providers/{provider}/instances/{id}/console",
        true,
    ),
    r(
        UpdateInstanceTags,
        Patch,
        "/v1/providers/{provider}/instances/{id}/tags",
        true,
    ),
    r(ListImages, Get, "/v1/providers/{provider}/images", true),
    r(GetImage, Get, "/v1/providers/{provider}/images/{id}", true),
    r(ListFlavors, Get, "/v1/providers/{provider}/flavors", true),
    r(ListNetworks, Get, "/v1/providers/{provider}/networks", true),
    r(
        CreateNetwork,
        Post,
        "/v1/providers/{provider}/networks",
        true,
    ),
    r(
        GetNetwork,
        Get,
        "/v1/providers/{provider}/networks/{id}",
        true,
    ),
    r(
        DeleteNetwork,
        Delete,
        "/v1/providers/{provider}/networks/{id}",
        true,
    ),
    r(
        ListLocations,
        Get,
        "/v1/providers/{provider}/locations",
        true,
    ),
    r(
        ListKeyPairs,
        Get,
        "/v1/providers/{provider}/key-pairs",
        true,
    ),
    r(
        CreateKeyPair,
        Post,
        "/v1/providers/{provider}/key-pairs",
        true,
    ),
    r(
        DeleteKeyPair,
        Delete,
        "/v1/providers/{provider}/key-pairs/{name}",
        true,
    ),
    r(CreateImage, Post, "/v1/providers/{provider}/images", true),
    r(
        DeleteImage,
        Delete,
        "/v1/providers/{provider}/images/{id}",
        true,
    ),
    r(ListVolumes, Get, "/v1/providers/{provider}/volumes", true),
    r(CreateVolume, Post, "/v1/providers/{provider}/volumes", true),
    r(
        GetVolume,
        Get,
        "/v1/providers/{provider}/volumes/{id}",
        true,
    ),
    r(
        DeleteVolume,
        Delete,
        "/v1/providers/{provider}/volumes/{id}",
        true,
    ),
    r(
        AttachVolume,
        Post,
        "/v1/providers/{provider}/volumes/{id}/attach",
        true,
    ),
    r(
        DetachVolume,
        Post,
        "/v1/providers/{provider}/volumes/{id}/detach",
        true,
    ),
    r(
        ListSnapshots,
        Get,
        "/v1/providers/{provider}/snapshots",
        true,
    ),
    r(
        CreateSnapshot,
        Post,
        "/v1/providers/{provider}/snapshots",
        true,
    ),
    r(
        GetSnapshot,
        Get,
        "/v1/providers/{provider}/snapshots/{id}",
        true,
    ),
    r(
        DeleteSnapshot,
        Delete,
        "/v1/providers/{provider}/snapshots/{id}",
        true,
    ),
    r(
        ListSecurityGroups,
        Get,
        "/v1/providers/{provider}/security-groups",
        true,
    ),
    r(
        CreateSecurityGroup,
        Post,
        "/v1/providers/{provider}/security-groups",
        true,
    ),
    r(
        GetSecurityGroup,
        Get,
        "/v1/providers/{provider}/security-groups/{id}",
        true,
    ),
    r(
        DeleteSecurityGroup,
        Delete,
        "/v1/providers/{provider}/security-groups/{id}",
        true,
    ),
    r(
        AddSecurityRules,
        Post,
        "/v1/providers/{provider}/security-groups/{id}/add-rules",
        true,
    ),
    r(
        RemoveSecurityRules,
        Post,
        "/v1/providers/{provider}/security-groups/{id}/remove-rules",
        true,
    ),
    r(
        ListAddresses,
        Get,
        "/v1/providers/{provider}/addresses",
        true,
    ),
    r(
        AllocateAddress,
        Post,
        "/v1/providers/{provider}/addresses",
        true,
    ),
    r(
        GetAddress,
        Get,
        "/v1/providers/{provider}/addresses/{id}",
        true,
    ),
    r(
        ReleaseAddress,
        Delete,
        "/v1/providers/{provider}/addresses/{id}",
        true,
    ),
    r(
        AssociateAddress,
        Post,
        "/v1/providers/{provider}/addresses/{id}/associate",
        true,
    ),
    r(
        DisassociateAddress,
        Post,
        "/v1/providers/{provider}/addresses/{id}/disassociate",
        true,
    ),
    r(
        UpdateInstance,
        Patch,
        "/v1/providers/{provider}/instances/{id}",
        true,
    ),
    r(
        GetInstanceHistory,
        Get,
        "/v1/providers/{provider}/instances/{id}/history",
        true,
    ),
    r(ListJobs, Get, "/v1/jobs", true),
    r(GetJob, Get, "/v1/jobs/{id}", true),
    r(CancelJob, Delete, "/v1/jobs/{id}", true),
    r(JobEvents, Get, "/v1/jobs/{id}/events", true),
    r(ListDeployments, Get, "/v1/deployments", true),
    r(CreateDeployment, Post, "/v1/deployments", true),
    r(GetDeployment, Get, "/v1/deployments/{id}", true),
    r(UpdateDeployment, Patch, "/v1/deployments/{id}", true),
    r(DeleteDeployment, Delete, "/v1/deployments/{id}", true),
];

/// The label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

struct Compiled {
    segments: Vec<Seg>,
    /// Index into [`templates`].
    template: usize,
}

enum Seg {
    Lit(&'static str),
    Param,
}

struct Table {
    routes: Vec<Compiled>,
    templates: Vec<&'static str>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut templates: Vec<&'static str> = Vec::new();
        let routes = ROUTES
            .iter()
            .map(|r| {
                let template = match templates.iter().position(|t| *t == r.template) {
                    Some(i) => i,
                    None => {
                        templates.push(r.template);
                        templates.len() - 1
                    }
                };
                let segments = r.template[1..]
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') {
                            Seg::Param
                        } else {
                            Seg::Lit(s)
                        }
                    })
                    .collect();
                Compiled { segments, template }
            })
            .collect();
        Table { routes, templates }
    })
}

/// The distinct path templates, in [`ROUTES`] order; a template's position is its
/// index in metrics (see [`crate::metrics::templates`]).
pub fn templates() -> &'static [&'static str] {
    &table().templates
}

/// Path parameters, percent-decoded, in template order (at most two).
#[derive(Debug, Default)]
pub struct Params<'a> {
    values: [Cow<'a, str>; 2],
    len: usize,
}

impl<'a> Params<'a> {
    /// The `i`th parameter ("" when absent).
    pub fn get(&self, i: usize) -> &str {
        if i < self.len {
            &self.values[i]
        } else {
            ""
        }
    }
}

/// What the router found.
#[derive(Debug)]
pub enum Match<'a> {
    /// A route, its template index and its parameters.
    Found(&'static Route, usize, Params<'a>),
    /// The path exists with other methods: the template index and the `Allow` value.
    MethodNotAllowed(usize, String),
    /// No route has this path.
    NotFound,
}

/// Finds the route of a request.
pub fn find<'a>(method: &http::Method, path: &'a str) -> Match<'a> {
    let t = table();
    let verb = Verb::from_method(method);
    let Some(rest) = path.strip_prefix('/') else {
        return Match::NotFound;
    };
    let mut segs: [&str; 8] = [""; 8];
    let mut n = 0;
    for s in rest.split('/') {
        if n == segs.len() {
            return Match::NotFound;
        }
        segs[n] = s;
        n += 1;
    }
    let segs = &segs[..n];
    let mut allowed: Vec<Verb> = Vec::new();
    let mut path_template = None;
    for (i, c) in t.routes.iter().enumerate() {
        if c.segments.len() != segs.len() {
            continue;
        }
        let fits = c.segments.iter().zip(segs).all(|(seg, s)| match seg {
            Seg::Lit(l) => l == s,
            Seg::Param => !s.is_empty(),
        });
        if !fits {
            continue;
        }
        let route = &ROUTES[i];
        if Some(route.verb) == verb {
            let mut params = Params::default();
            for (seg, s) in c.segments.iter().zip(segs) {
                if matches!(seg, Seg::Param) && params.len < 2 {
                    params.values[params.len] = percent_decode(s);
                    params.len += 1;
                }
            }
            return Match::Found(route, c.template, params);
        }
        path_template.get_or_insert(c.template);
        allowed.push(route.verb);
    }
    match path_template {
        Some(tpl) => {
            allowed.sort();
            allowed.dedup();
            let allow = allowed
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            Match::MethodNotAllowed(tpl, allow)
        }
        None => Match::NotFound,
    }
}

pub use crate::frontends::url::{percent_decode, percent_encode_segment, query_decode};

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn finds_routes_and_params() {
        match find(&Method::GET, "/v1/providers/local/instances/i%2F1") {
            Match::Found(r, _, p) => {
                assert_eq!(r.id, RouteId::GetInstance);
                assert_eq!(p.get(0), "local");
                assert_eq!(p.get(1), "i/1");
            }
            m => panic!("{m:?}"),
        }
        match find(&Method::PUT, "/v1/providers/local/instances") {
            Match::MethodNotAllowed(_, allow) => assert_eq!(allow, "GET, POST"),
            m => panic!("{m:?}"),
        }
        assert!(matches!(find(&Method::GET, "/v1/nope"), Match::NotFound));
        assert!(matches!(
            find(&Method::GET, "/v1/providers//instances"),
            Match::NotFound
        ));
        assert!(matches!(
            find(&Method::GET, "/v1/providers/"),
            Match::NotFound
        ));
        assert!(matches!(
            find(&Method::GET, "/a/b/c/d/e/f/g/h/i/j"),
            Match::NotFound
        ));
    }

    #[test]
    fn templates_are_unique_per_method() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.verb, r.template)), "{r:?}");
        }
    }
}
