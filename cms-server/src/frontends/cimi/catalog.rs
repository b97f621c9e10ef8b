//! Everything but machines and jobs: the entry point, machine images (the images the
//! tenant may launch from), machine configurations (flavors), machine templates
//! (kept by the server per tenant), credentials (key pairs), networks and their
//! configuration, volumes and their configurations, and the resource metadata that
//! says, from the provider's capabilities, what each type offers.

use cms_core::{
    Flavor, Image, ImageFilter, ImageState, KeyPairSpec, Network, NetworkSpec, Operation, Volume,
    VolumeFilter, VolumeSpec, VolumeState,
};
use http::StatusCode;
use warp::reply::Response;

use super::doc::{self, Node, Obj, NS};
use super::jobs::action_uri;
use super::machines;
use super::query;
use super::{empty, respond, with_header, CimiError, Cx};
use crate::jobs::instances::rfc3339;
use crate::service::keys::KeyPairExtra;
use crate::service::InstanceRef;

/// The collections besides machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Images,
    Configs,
    Templates,
    Credentials,
    Networks,
    NetworkConfigs,
    Volumes,
    VolumeConfigs,
    Metadata,
}

impl Family {
    /// The collection's path segment (and CloudEntryPoint attribute).
    pub fn collection(self) -> &'static str {
        match self {
            Family::Images => "machineImages",
            Family::Configs => "machineConfigs",
            Family::Templates => "machineTemplates",
            Family::Credentials => "credentials",
            Family::Networks => "networks",
            Family::NetworkConfigs => "networkConfigs",
            Family::Volumes => "volumes",
            Family::VolumeConfigs => "volumeConfigs",
            Family::Metadata => "resourceMetadata",
        }
    }

    /// The type of the members.
    pub fn member_type(self) -> &'static str {
        match self {
            Family::Images => "MachineImage",
            Family::Configs => "MachineConfiguration",
            Family::Templates => "MachineTemplate",
            Family::Credentials => "Credential",
            Family::Networks => "Network",
            Family::NetworkConfigs => "NetworkConfiguration",
            Family::Volumes => "Volume",
            Family::VolumeConfigs => "VolumeConfiguration",
            Family::Metadata => "ResourceMetadata",
        }
    }

    /// The attributes a member may show.
    pub fn attributes(self) -> &'static [&'static str] {
        macro_rules! attrs {
            ($($extra:literal),*) => {
                &["resourceURI", "id", "name", "description", "created", "properties",
                  "operations" $(, $extra)*]
            };
        }
        match self {
            Family::Images => attrs!("state", "type", "architecture", "os"),
            Family::Configs => attrs!("cpu", "memory", "disks"),
            Family::Templates => attrs!(
                "machineConfig",
                "machineImage",
                "credential",
                "networkInterfaces",
                "userData"
            ),
            Family::Credentials => attrs!("key", "fingerprint"),
            Family::Networks => attrs!("state", "networkType", "cidr", "location", "providerState"),
            Family::NetworkConfigs => attrs!("networkType", "cidr"),
            Family::Volumes => attrs!(
                "state",
                "type",
                "capacity",
                "bootable",
                "location",
                "attachments",
                "providerState"
            ),
            Family::VolumeConfigs => attrs!("format", "capacity", "type"),
            Family::Metadata => attrs!("typeURI", "attributes", "actions", "capabilities"),
        }
    }

    /// Whether the provider serves the family.
    fn served(self, cx: &Cx<'_>) -> bool {
        let c = cx.provider.capabilities();
        match self {
            Family::Images => c.images.list,
            Family::Configs => c.flavors.list,
            Family::Templates | Family::Metadata => true,
            Family::Credentials => c.key_pairs.list,
            Family::Networks => c.networks.list,
            Family::NetworkConfigs => c.networks.create,
            Family::Volumes => c.volumes.list,
            Family::VolumeConfigs => c.volumes.create,
        }
    }

    /// Whether members can be made.
    fn addable(self, cx: &Cx<'_>) -> bool {
        let c = cx.provider.capabilities();
        match self {
            Family::Templates => true,
            Family::Credentials => c.key_pairs.create || c.key_pairs.import,
            Family::Networks => c.networks.create,
            Family::Volumes => c.volumes.create,
            _ => false,
        }
    }
}

fn unsupported(cx: &Cx<'_>, what: &str) -> CimiError {
    CimiError::unsupported(format!(
        "provider {} ({}) does not serve {what}",
        cx.provider.name, cx.provider.driver
    ))
}

fn delete_op(href: &str) -> Node {
    Node::List(vec![Node::Obj(
        Obj::new().text("rel", "delete").text("href", href),
    )])
}

fn props(tags: &cms_core::Tags) -> Option<Node> {
    (!tags.is_empty())
        .then(|| Node::Props(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
}

fn with_props(doc: Obj, tags: &cms_core::Tags) -> Obj {
    match props(tags) {
        Some(p) => doc.with("properties", p),
        None => doc,
    }
}

// ---- documents ----

/// An image as a MachineImage.
pub fn image_doc(cx: &Cx<'_>, i: &Image) -> Obj {
    let href = cx.href(&["machineImages", i.id.as_str()]);
    let state = match i.state {
        ImageState::Pending => "CREATING",
        ImageState::Available => "AVAILABLE",
        ImageState::Deleted => "DELETING",
        ImageState::Error | ImageState::Unknown => "ERROR",
    };
    let doc = Obj::new()
        .text("resourceURI", format!("{NS}/MachineImage"))
        .text("id", href.clone())
        .text("name", i.name.clone())
        .opt("description", i.description.clone())
        .opt(
            "created",
            i.created_at.map(|t| rfc3339(t.timestamp_millis())),
        );
    let mut doc = with_props(doc, &i.tags)
        .text("state", state)
        .text("type", "IMAGE")
        .opt("architecture", i.architecture.clone())
        .opt("os", i.os.clone());
    if !i.shared && cx.provider.capabilities().images.delete {
        doc = doc.with("operations", delete_op(&href));
    }
    doc
}

/// A flavor as a MachineConfiguration.
pub fn config_doc(cx: &Cx<'_>, f: &Flavor) -> Obj {
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/MachineConfiguration"))
        .text("id", cx.href(&["machineConfigs", f.id.as_str()]))
        .text("name", f.name.clone())
        .with("cpu", Node::Int(i64::from(f.vcpus)))
        .with(
            "memory",
            Node::Int((f.memory_mib as i64).saturating_mul(1024)),
        );
    if let Some(gib) = f.disk_gib {
        doc = doc.with(
            "disks",
            Node::List(vec![Node::Obj(
                Obj::new().with("capacity", Node::Int(i64::from(gib) * 1024 * 1024)),
            )]),
        );
    }
    doc
}

fn credential_doc(cx: &Cx<'_>, k: &cms_core::KeyPair) -> Obj {
    let href = cx.href(&["credentials", &k.name]);
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/Credential"))
        .text("id", href.clone())
        .text("name", k.name.clone())
        .opt("key", k.public_key.clone())
        .text("fingerprint", k.fingerprint.clone());
    if cx.provider.capabilities().key_pairs.delete {
        doc = doc.with("operations", delete_op(&href));
    }
    doc
}

fn network_doc(cx: &Cx<'_>, n: &Network) -> Obj {
    let href = cx.href(&["networks", n.id.as_str()]);
    let doc = Obj::new()
        .text("resourceURI", format!("{NS}/Network"))
        .text("id", href.clone())
        .text("name", n.name.clone());
    let mut doc = with_props(doc, &n.tags)
        .text("state", "STARTED")
        .text(
            "networkType",
            if n.is_default { "PUBLIC" } else { "PRIVATE" },
        )
        .opt("cidr", n.cidr.clone())
        .opt(
            "location",
            n.location_id.as_ref().map(|l| l.as_str().to_owned()),
        )
        .text("providerState", n.raw_state.clone());
    if cx.provider.capabilities().networks.delete {
        doc = doc.with("operations", delete_op(&href));
    }
    doc
}

fn volume_doc(cx: &Cx<'_>, v: &Volume) -> Obj {
    let href = cx.href(&["volumes", v.id.as_str()]);
    let state = match v.state {
        VolumeState::Creating => "CREATING",
        VolumeState::Available => "AVAILABLE",
        VolumeState::Attaching => "ATTACHING",
        VolumeState::InUse => "IN-USE",
        VolumeState::Detaching => "DETACHING",
        VolumeState::Deleting | VolumeState::Deleted => "DELETING",
        VolumeState::Error | VolumeState::Unknown => "ERROR",
    };
    let doc = Obj::new()
        .text("resourceURI", format!("{NS}/Volume"))
        .text("id", href.clone())
        .text("name", v.name.clone())
        .opt(
            "created",
            v.created_at.map(|t| rfc3339(t.timestamp_millis())),
        );
    let attachments: Vec<Node> = v
        .attachments
        .iter()
        .map(|a| {
            Node::Obj(Obj::href(cx.href(&[
                "machines",
                a.instance_id.as_str(),
                "volumes",
                v.id.as_str(),
            ])))
        })
        .collect();
    let mut doc = with_props(doc, &v.tags)
        .text("state", state)
        .text("type", format!("{NS}/mapped"))
        .with("capacity", Node::Int(i64::from(v.size_gib) * 1024 * 1024))
        .with("bootable", Node::Bool(false))
        .opt(
            "location",
            v.location_id.as_ref().map(|l| l.as_str().to_owned()),
        )
        .text("providerState", v.raw_state.clone());
    if !attachments.is_empty() {
        doc = doc.with("attachments", Node::List(attachments));
    }
    if cx.provider.capabilities().volumes.delete {
        doc = doc.with("operations", delete_op(&href));
    }
    doc
}

/// The volume sizes offered as VolumeConfigurations, in GiB (any size can be asked
/// for by value).
const VOLUME_SIZES: [u32; 6] = [1, 5, 10, 50, 100, 500];

fn volume_config_doc(cx: &Cx<'_>, gib: u32) -> Obj {
    Obj::new()
        .text("resourceURI", format!("{NS}/VolumeConfiguration"))
        .text("id", cx.href(&["volumeConfigs", &format!("{gib}GiB")]))
        .text("name", format!("{gib}GiB"))
        .text("description", format!("a volume of {gib} GiB"))
        .text("type", format!("{NS}/mapped"))
        .with("capacity", Node::Int(i64::from(gib) * 1024 * 1024))
}

fn network_config_doc(cx: &Cx<'_>) -> Obj {
    Obj::new()
        .text("resourceURI", format!("{NS}/NetworkConfiguration"))
        .text("id", cx.href(&["networkConfigs", "private"]))
        .text("name", "private")
        .text(
            "description",
            "a private network; give its IPv4 range as `cidr` (10.1.0.0/24) in the NetworkCreate's networkConfig",
        )
        .text("networkType", "PRIVATE")
}

/// A stored template as a document: its references made absolute.
fn template_doc(cx: &Cx<'_>, row: &crate::store::TemplateRow) -> Obj {
    let href = cx.href(&["machineTemplates", &row.id]);
    let stored = doc::read_json(row.body.as_bytes()).unwrap_or_default();
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/MachineTemplate"))
        .text("id", href.clone())
        .text("name", row.name.clone())
        .text("created", rfc3339(row.created_at));
    for (k, v) in stored.0 {
        if matches!(k.as_str(), "resourceURI" | "id" | "name" | "created") {
            continue;
        }
        doc.0.push((k, absolute(&cx.origin, v)));
    }
    doc.with("operations", delete_op(&href))
}

/// `node` with every `href` that is a path made absolute.
fn absolute(origin: &str, node: Node) -> Node {
    match node {
        Node::Obj(o) => Node::Obj(Obj(o
            .0
            .into_iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("href", Node::Str(s)) if s.starts_with('/') => {
                    (k, Node::Str(format!("{origin}{s}")))
                }
                (_, v) => (k, absolute(origin, v)),
            })
            .collect())),
        Node::List(items) => Node::List(items.into_iter().map(|i| absolute(origin, i)).collect()),
        other => other,
    }
}

// ---- the entry point ----

/// `GET …/cloudEntryPoint`.
pub async fn entry_point(cx: &Cx<'_>) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, false)?;
    let id = cx.href(&["cloudEntryPoint"]);
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/CloudEntryPoint"))
        .text("id", id)
        .text("name", cx.provider.name.to_string())
        .text(
            "description",
            format!(
                "cms provider {} ({} driver) for tenant {}",
                cx.provider.name, cx.provider.driver, cx.tenant.name
            ),
        )
        .text("baseURI", cx.base.clone());
    if cx.provider.capabilities().instances.list {
        doc = doc.with("machines", Node::Obj(Obj::href(cx.href(&["machines"]))));
    }
    for f in [
        Family::Templates,
        Family::Configs,
        Family::Images,
        Family::Credentials,
        Family::Volumes,
        Family::VolumeConfigs,
        Family::Networks,
        Family::NetworkConfigs,
    ] {
        if f.served(cx) {
            doc = doc.with(
                f.collection(),
                Node::Obj(Obj::href(cx.href(&[f.collection()]))),
            );
        }
    }
    doc = doc
        .with("jobs", Node::Obj(Obj::href(cx.href(&["jobs"]))))
        .with(
            "resourceMetadata",
            Node::Obj(Obj::href(cx.href(&["resourceMetadata"]))),
        )
        .text("driver", cx.provider.driver)
        .text("provider", cx.provider.name.to_string());
    q.select(&mut doc);
    Ok(respond(StatusCode::OK, &doc, "CloudEntryPoint", cx.format))
}

// ---- listing and reading ----

/// Every member of the family, as documents.
async fn members(cx: &Cx<'_>, f: Family) -> Result<Vec<Obj>, CimiError> {
    let s = &cx.app.service;
    Ok(match f {
        Family::Images => s
            .collect_images(cx.tenant, cx.provider, &ImageFilter::default())
            .await?
            .iter()
            .map(|i| image_doc(cx, i))
            .collect(),
        Family::Configs => s
            .collect_flavors(cx.provider)
            .await?
            .iter()
            .map(|f| config_doc(cx, f))
            .collect(),
        Family::Templates => s
            .templates(cx.tenant, cx.provider)
            .await?
            .iter()
            .map(|r| template_doc(cx, r))
            .collect(),
        Family::Credentials => s
            .list_key_pairs(cx.tenant, cx.provider)
            .await?
            .iter()
            .map(|(k, _)| credential_doc(cx, k))
            .collect(),
        Family::Networks => s
            .collect_networks(cx.provider)
            .await?
            .iter()
            .map(|n| network_doc(cx, n))
            .collect(),
        Family::NetworkConfigs => vec![network_config_doc(cx)],
        Family::Volumes => s
            .collect_volumes(cx.tenant, cx.provider, &VolumeFilter::default(), false)
            .await?
            .iter()
            .map(|v| volume_doc(cx, &v.item))
            .collect(),
        Family::VolumeConfigs => VOLUME_SIZES
            .iter()
            .map(|g| volume_config_doc(cx, *g))
            .collect(),
        Family::Metadata => metadata(cx),
    })
}

fn check_served(cx: &Cx<'_>, f: Family) -> Result<(), CimiError> {
    if f.served(cx) {
        Ok(())
    } else {
        Err(unsupported(cx, f.collection()))
    }
}

/// `GET …/{collection}`.
pub async fn list(cx: &Cx<'_>, f: Family) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, true)?;
    q.check(f.attributes(), &[])?;
    check_served(cx, f)?;
    let docs = members(cx, f).await?;
    let doc = q.collection(cx, f.collection(), f.member_type(), docs, f.addable(cx));
    Ok(respond(StatusCode::OK, &doc, "Collection", cx.format))
}

/// The tenant's credential (key pair) `name`.
pub async fn credential(cx: &Cx<'_>, name: &str) -> Result<cms_core::KeyPair, CimiError> {
    cx.app
        .service
        .list_key_pairs(cx.tenant, cx.provider)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k.name == name)
        .ok_or_else(|| CimiError::not_found(format!("credential {name} not found")))
}

/// One member as a document.
async fn member(cx: &Cx<'_>, f: Family, id: &str) -> Result<Obj, CimiError> {
    let s = &cx.app.service;
    let missing = || CimiError::not_found(format!("{} {id} not found", f.member_type()));
    Ok(match f {
        Family::Images => image_doc(
            cx,
            &s.image(
                cx.tenant,
                cx.provider,
                InstanceRef::Backend(id),
                Operation::GetImage,
            )
            .await?
            .item,
        ),
        Family::Templates => template_doc(cx, &s.template(cx.tenant, cx.provider, id).await?),
        Family::Credentials => credential_doc(cx, &credential(cx, id).await?),
        Family::Networks => network_doc(cx, &s.get_network(cx.provider, &id.into()).await?),
        Family::Volumes => volume_doc(
            cx,
            &s.volume(
                cx.tenant,
                cx.provider,
                InstanceRef::Backend(id),
                Operation::GetVolume,
            )
            .await?
            .item,
        ),
        _ => {
            let want = cx.href(&[f.collection(), id]);
            members(cx, f)
                .await?
                .into_iter()
                .find(|d| d.str("id").as_deref() == Some(want.as_str()))
                .ok_or_else(missing)?
        }
    })
}

/// `GET …/{collection}/{id}`.
pub async fn get(cx: &Cx<'_>, f: Family, id: &str) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, false)?;
    q.check(f.attributes(), &[])?;
    check_served(cx, f)?;
    let mut doc = member(cx, f, id).await?;
    q.select(&mut doc);
    Ok(respond(StatusCode::OK, &doc, f.member_type(), cx.format))
}

/// `DELETE …/{collection}/{id}`.
pub async fn delete(cx: &Cx<'_>, f: Family, id: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    check_served(cx, f)?;
    let s = &cx.app.service;
    match f {
        Family::Images => {
            s.delete_image(cx.tenant, cx.provider, InstanceRef::Backend(id))
                .await?;
        }
        Family::Templates => s.delete_template(cx.tenant, cx.provider, id).await?,
        Family::Credentials => s.delete_key_pair(cx.tenant, cx.provider, id).await?,
        Family::Networks => s.delete_network(cx.provider, &id.into()).await?,
        Family::Volumes => {
            s.delete_volume(cx.tenant, cx.provider, InstanceRef::Backend(id))
                .await?;
        }
        _ => {
            return Err(CimiError::not_allowed(
                format!("{}s cannot be deleted", f.member_type()),
                "GET",
            ))
        }
    }
    Ok(empty(StatusCode::OK))
}

fn created(cx: &Cx<'_>, doc: &Obj, ty: &str) -> Response {
    let href = doc.str("id").unwrap_or_default();
    with_header(
        respond(StatusCode::CREATED, doc, ty, cx.format),
        "location",
        &href,
    )
}

fn expect_type(body: &Obj, allowed: &[&str]) -> Result<(), CimiError> {
    match body.resource_type() {
        Some(t) if !allowed.contains(&t.as_str()) => Err(CimiError::bad(format!(
            "expected a {} document, not a {t}",
            allowed.join(" or ")
        ))),
        _ => Ok(()),
    }
}

fn name_of(body: &Obj) -> Result<String, CimiError> {
    body.str("name")
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CimiError::bad("`name` is required"))
}

// ---- creating ----

/// Imports `key` as the tenant's key pair `name`.
pub async fn import_key(
    cx: &Cx<'_>,
    name: &str,
    key: &str,
) -> Result<cms_core::KeyPair, CimiError> {
    let (k, _) = cx
        .app
        .service
        .create_key_pair(
            cx.tenant,
            cx.provider,
            &KeyPairSpec {
                name: name.to_owned(),
                public_key: Some(key.trim().to_owned()),
            },
            &KeyPairExtra {
                attributes: &[],
                tags: None,
            },
        )
        .await?;
    Ok(k)
}

/// `POST …/credentials`: a CredentialCreate whose `credentialTemplate` holds `key`
/// (an OpenSSH public key) to import; without a key one is generated, and its
/// `privateKey` is in this answer only.
pub async fn create_credential(cx: &Cx<'_>) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let body = cx.document()?;
    expect_type(&body, &["CredentialCreate", "Credential"])?;
    let name = name_of(&body)?;
    let template = body.obj("credentialTemplate").cloned().unwrap_or_default();
    let key = template
        .str("key")
        .or_else(|| body.str("key"))
        .filter(|k| !k.trim().is_empty());
    let caps = cx.provider.capabilities().key_pairs;
    let k = match key {
        Some(key) if caps.import => import_key(cx, &name, &key).await?,
        None if caps.create => {
            cx.app
                .service
                .create_key_pair(
                    cx.tenant,
                    cx.provider,
                    &KeyPairSpec {
                        name: name.clone(),
                        public_key: None,
                    },
                    &KeyPairExtra {
                        attributes: &[],
                        tags: None,
                    },
                )
                .await?
                .0
        }
        Some(_) => return Err(unsupported(cx, "imported credentials")),
        None => {
            return Err(CimiError::bad(format!(
                "provider {} cannot generate keys: give `credentialTemplate.key`, an OpenSSH public key",
                cx.provider.name
            )))
        }
    };
    let mut doc = credential_doc(cx, &k);
    if let Some(private) = &k.private_key {
        doc = doc.text("privateKey", private.clone());
    }
    Ok(created(cx, &doc, "Credential"))
}

/// `POST …/machineTemplates`: a MachineTemplate (or a MachineTemplateCreate with
/// `machineTemplate`); its references are checked now and kept for the tenant.
pub async fn create_template(cx: &Cx<'_>) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let body = cx.document()?;
    expect_type(&body, &["MachineTemplate", "MachineTemplateCreate"])?;
    let t = match body.obj("machineTemplate") {
        Some(inner) => inner.clone(),
        None => body.clone(),
    };
    let name = name_of(&body).or_else(|_| name_of(&t))?;
    let r = machines::read_template(cx, &t, "machineTemplate")?;
    // The references must name what exists now.
    let s = &cx.app.service;
    // References are kept as paths: the origin is each request's.
    let rel = |parts: &[&str]| cx.path(parts);
    let mut stored = Obj::new();
    if let Some(d) = body.str("description").filter(|d| !d.is_empty()) {
        stored = stored.text("description", d);
    }
    if let Some(p) = body.get("properties") {
        stored = stored.with("properties", p.clone());
    }
    if let Some(i) = &r.image {
        s.image(
            cx.tenant,
            cx.provider,
            InstanceRef::Backend(i),
            Operation::GetImage,
        )
        .await
        .map_err(|e| bad_reference(e, "machineImage"))?;
        stored = stored.with(
            "machineImage",
            Node::Obj(Obj::href(rel(&["machineImages", i]))),
        );
    }
    match (&r.flavor, &r.config) {
        (Some(f), _) => {
            let all = s.collect_flavors(cx.provider).await?;
            if !all.iter().any(|x| x.id.as_str() == f) {
                return Err(CimiError::bad(format!(
                    "`machineConfig` refers to machine configuration {f}, which provider {} does not have",
                    cx.provider.name
                )));
            }
            stored = stored.with(
                "machineConfig",
                Node::Obj(Obj::href(rel(&["machineConfigs", f]))),
            );
        }
        (None, Some((cpu, memory))) => {
            stored = stored.with(
                "machineConfig",
                Node::Obj(
                    Obj::new()
                        .with("cpu", Node::Int(i64::from(*cpu)))
                        .with("memory", Node::Int(*memory as i64)),
                ),
            );
        }
        (None, None) => {}
    }
    if let Some(c) = &r.credential {
        credential(cx, c)
            .await
            .map_err(|e| CimiError::bad(format!("`credential`: {}", e.message)))?;
        stored = stored.with("credential", Node::Obj(Obj::href(rel(&["credentials", c]))));
    } else if let Some(k) = &r.key {
        stored = stored.with("credential", Node::Obj(Obj::new().text("key", k.clone())));
    }
    if !r.networks.is_empty() {
        let mut nics = Vec::new();
        for n in &r.networks {
            s.get_network(cx.provider, &n.as_str().into())
                .await
                .map_err(|e| bad_reference(e, "networkInterfaces.network"))?;
            nics.push(Node::Obj(
                Obj::new().with("network", Node::Obj(Obj::href(rel(&["networks", n])))),
            ));
        }
        stored = stored.with("networkInterfaces", Node::List(nics));
    }
    if let Some(u) = &r.user_data {
        stored = stored.text("userData", u.clone());
    }
    let json = doc::render(&stored, "MachineTemplate", doc::Format::Json);
    let row = s.add_template(cx.tenant, cx.provider, &name, &json).await?;
    Ok(created(cx, &template_doc(cx, &row), "MachineTemplate"))
}

/// A reference that names nothing: the client's mistake (400), saying which.
fn bad_reference(e: cms_core::Error, field: &str) -> CimiError {
    if e.kind() == cms_core::ErrorKind::NotFound {
        CimiError::bad(format!("`{field}` refers to nothing: {}", e.message()))
    } else {
        e.into()
    }
}

/// `POST …/networks`: a NetworkCreate whose `networkTemplate.networkConfig` gives
/// the IPv4 range (`cidr`) by value.
pub async fn create_network(cx: &Cx<'_>) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let body = cx.document()?;
    expect_type(&body, &["NetworkCreate", "Network"])?;
    if !cx.provider.capabilities().networks.create {
        return Err(unsupported(cx, "network creation"));
    }
    let name = name_of(&body)?;
    let config = body
        .obj("networkTemplate")
        .and_then(|t| t.obj("networkConfig"))
        .cloned()
        .unwrap_or_default();
    let cidr = config
        .str("cidr")
        .or_else(|| body.str("cidr"))
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            CimiError::bad(
                "a NetworkCreate gives the network's IPv4 range: `networkTemplate.networkConfig.cidr` (10.1.0.0/24)",
            )
        })?;
    let spec = NetworkSpec {
        name,
        cidr,
        location_id: None,
        tags: body.props().iter().cloned().collect(),
    };
    let n = cx.app.service.create_network(cx.provider, &spec).await?;
    Ok(created(cx, &network_doc(cx, &n), "Network"))
}

/// `POST …/volumes`: a VolumeCreate whose `volumeTemplate.volumeConfig` is a
/// reference to a VolumeConfiguration or gives `capacity` (KiB) by value.
pub async fn create_volume(cx: &Cx<'_>) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let body = cx.document()?;
    expect_type(&body, &["VolumeCreate", "Volume"])?;
    if !cx.provider.capabilities().volumes.create {
        return Err(unsupported(cx, "volume creation"));
    }
    let config = body
        .obj("volumeTemplate")
        .and_then(|t| t.obj("volumeConfig"))
        .cloned()
        .ok_or_else(|| {
            CimiError::bad(
                "a VolumeCreate needs `volumeTemplate.volumeConfig`: a reference (`href`) or `{capacity}` in KiB",
            )
        })?;
    let kib: u64 = match config.str("href") {
        Some(href) => {
            let id = cx.ref_id(&href, "volumeConfigs", "volumeTemplate.volumeConfig.href")?;
            id.strip_suffix("GiB")
                .and_then(|g| g.parse::<u32>().ok())
                .filter(|g| VOLUME_SIZES.contains(g))
                .map(|g| u64::from(g) * 1024 * 1024)
                .ok_or_else(|| {
                    CimiError::bad(format!("volume configuration `{id}` does not exist"))
                })?
        }
        None => {
            let c = config.str("capacity").unwrap_or_default();
            c.trim()
                .parse::<u64>()
                .ok()
                .filter(|k| *k > 0)
                .ok_or_else(|| {
                    CimiError::bad(format!(
                        "`volumeConfig.capacity` must be a size in KiB, not `{c}`"
                    ))
                })?
        }
    };
    // Sizes are whole GiB: a capacity between two is rounded up.
    let gib = kib.div_ceil(1024 * 1024);
    let spec = VolumeSpec {
        name: body.str("name").unwrap_or_default(),
        size_gib: Some(u32::try_from(gib).unwrap_or(u32::MAX)),
        tags: body.props().iter().cloned().collect(),
        ..VolumeSpec::default()
    };
    let v = cx
        .app
        .service
        .create_volume(cx.tenant, cx.provider, &spec, None, None)
        .await?;
    Ok(created(cx, &volume_doc(cx, &v.item), "Volume"))
}

// ---- resource metadata ----

fn attr(name: &str, ty: &str, required: bool) -> Node {
    Node::Obj(
        Obj::new()
            .text("name", name)
            .text("namespace", NS)
            .text("type", ty)
            .with("required", Node::Bool(required)),
    )
}

fn capability(name: &str, value: bool) -> Node {
    Node::Obj(
        Obj::new()
            .text("name", name)
            .text("uri", format!("{NS}/capability/{name}"))
            .text("value", value.to_string()),
    )
}

/// What each resource type offers on this provider.
fn metadata(cx: &Cx<'_>) -> Vec<Obj> {
    let caps = cx.provider.capabilities();
    let i = &caps.instances;
    let one = |ty: &str, attrs: Vec<Node>, actions: Vec<(&str, bool)>, capabilities: Vec<Node>| {
        let mut o = Obj::new()
            .text("resourceURI", format!("{NS}/ResourceMetadata"))
            .text("id", cx.href(&["resourceMetadata", ty]))
            .text("name", ty)
            .text("typeURI", format!("{NS}/{ty}"))
            .with("attributes", Node::List(attrs));
        let actions: Vec<Node> = actions
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(a, _)| {
                Node::Obj(
                    Obj::new()
                        .text("name", a)
                        .text("uri", action_uri(a))
                        .text("method", "POST")
                        .text("inputMessage", "application/json, application/xml")
                        .text("outputMessage", "application/json, application/xml"),
                )
            })
            .collect();
        if !actions.is_empty() {
            o = o.with("actions", Node::List(actions));
        }
        o.with("capabilities", Node::List(capabilities))
    };
    vec![
        one(
            "Machine",
            vec![
                attr("name", "string", false),
                attr("description", "string", false),
                attr("state", "string", false),
                attr("cpu", "integer", false),
                attr("memory", "integer", false),
                attr("properties", "map", false),
            ],
            vec![
                ("start", i.start),
                ("stop", i.stop),
                ("restart", i.reboot),
                ("capture", caps.images.create),
            ],
            vec![
                capability("create", i.create),
                capability("delete", i.delete),
                capability("userData", i.user_data),
                capability("properties", i.tags),
                capability("attachVolume", caps.volumes.attach),
            ],
        ),
        one(
            "MachineImage",
            vec![
                attr("name", "string", false),
                attr("state", "string", false),
            ],
            vec![],
            vec![
                capability("create", caps.images.create),
                capability("delete", caps.images.delete),
            ],
        ),
        one(
            "MachineConfiguration",
            vec![
                attr("cpu", "integer", true),
                attr("memory", "integer", true),
            ],
            vec![],
            vec![capability("list", caps.flavors.list)],
        ),
        one(
            "MachineTemplate",
            vec![
                attr("name", "string", true),
                attr("machineImage", "ref", true),
                attr("machineConfig", "ref", true),
                attr("credential", "ref", false),
                attr("userData", "string", false),
            ],
            vec![],
            vec![capability("create", true), capability("delete", true)],
        ),
        one(
            "Credential",
            vec![attr("name", "string", true), attr("key", "string", false)],
            vec![],
            vec![
                capability("generate", caps.key_pairs.create),
                capability("import", caps.key_pairs.import),
                capability("delete", caps.key_pairs.delete),
            ],
        ),
        one(
            "Network",
            vec![attr("name", "string", true), attr("cidr", "string", true)],
            vec![],
            vec![
                capability("create", caps.networks.create),
                capability("delete", caps.networks.delete),
            ],
        ),
        one(
            "Volume",
            vec![
                attr("name", "string", false),
                attr("capacity", "integer", true),
            ],
            vec![],
            vec![
                capability("create", caps.volumes.create),
                capability("delete", caps.volumes.delete),
                capability("attach", caps.volumes.attach),
            ],
        ),
        one(
            "Job",
            vec![
                attr("state", "string", false),
                attr("progress", "integer", false),
            ],
            vec![("stop", true)],
            vec![capability("stop", true)],
        ),
    ]
}
