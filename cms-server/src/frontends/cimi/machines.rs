//! Machines: the tenant's instances on the provider, their operations by state,
//! creation (by template reference, by value with references, fully by value),
//! actions as durable jobs, and their parts (disks, volumes, network interfaces).
//!
//! | cms state | CIMI state | operations |
//! |---|---|---|
//! | pending | CREATING | delete |
//! | running | STARTED | stop, restart, capture, delete |
//! | stopping | STOPPING | delete |
//! | stopped | STOPPED | start, capture, delete |
//! | rebooting | STARTING | delete |
//! | suspended | SUSPENDED | start, delete |
//! | terminating | DELETING | (none) |
//! | error, unknown | ERROR | delete |
//!
//! and `edit` (properties and description) in every state but DELETING.
//!
//! A terminated machine is gone: it is not listed and reads 404. An operation the
//! provider's driver does not declare is not offered (and is 501 when asked for); one
//! the machine does not offer in its state is 405.

use std::collections::BTreeMap;
use std::sync::Arc;

use cms_core::{
    Flavor, ImageSpec, Instance, InstanceAction, InstanceFilter, InstanceSpec, InstanceState,
    Operation, PageRequest,
};
use http::StatusCode;
use sha2::{Digest, Sha256};
use warp::reply::Response;

use super::catalog;
use super::doc::{Node, Obj, NS};
use super::jobs::{action_uri, document as job_document};
use super::query::{self, Expand, Query};
use super::{respond, with_header, CimiError, Cx};
use crate::jobs::instances::{kind_of, rfc3339, InstanceJob};
use crate::service::instances::MAX_LIMIT;
use crate::service::{CreateRequest, Idempotency, InstanceRef};

/// The tag that keeps a machine's description (not shown among its properties).
pub const DESCRIPTION_TAG: &str = "cimi:description";

/// The attributes of a Machine.
pub const ATTRIBUTES: &[&str] = &[
    "resourceURI",
    "id",
    "name",
    "description",
    "created",
    "updated",
    "properties",
    "state",
    "cpu",
    "memory",
    "disks",
    "volumes",
    "networkInterfaces",
    "machineImage",
    "machineConfig",
    "credential",
    "location",
    "providerState",
    "operations",
];

/// What a Machine's `$expand` can open.
pub const EXPANDABLE: &[&str] = &["disks", "volumes", "networkInterfaces"];

/// CIMI's name of an instance state.
pub fn state_of(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Pending => "CREATING",
        InstanceState::Running => "STARTED",
        InstanceState::Stopping => "STOPPING",
        InstanceState::Stopped => "STOPPED",
        InstanceState::Rebooting => "STARTING",
        InstanceState::Suspended => "SUSPENDED",
        InstanceState::Terminating | InstanceState::Terminated => "DELETING",
        InstanceState::Error | InstanceState::Unknown => "ERROR",
    }
}

/// The actions (by their short names) a machine offers in state `s` on `cx`'s
/// provider, and whether it may be deleted.
fn offered(cx: &Cx<'_>, s: InstanceState) -> (Vec<&'static str>, bool) {
    let caps = cx.provider.capabilities();
    let i = &caps.instances;
    let capture = caps.images.create;
    let mut actions = Vec::new();
    match s {
        InstanceState::Running => {
            if i.stop {
                actions.push("stop");
            }
            if i.reboot {
                actions.push("restart");
            }
            if capture {
                actions.push("capture");
            }
        }
        InstanceState::Stopped => {
            if i.start {
                actions.push("start");
            }
            if capture {
                actions.push("capture");
            }
        }
        InstanceState::Suspended if i.start => actions.push("start"),
        _ => {}
    }
    let delete = i.delete && !matches!(s, InstanceState::Terminating | InstanceState::Terminated);
    (actions, delete)
}

/// The operations of machine `id` in state `s`.
fn operations(cx: &Cx<'_>, id: &str, s: InstanceState) -> Node {
    let (actions, delete) = offered(cx, s);
    let mut ops: Vec<Node> = actions
        .iter()
        .map(|a| {
            Node::Obj(
                Obj::new()
                    .text("rel", action_uri(a))
                    .text("href", cx.href(&["machines", id, a])),
            )
        })
        .collect();
    let live = !matches!(s, InstanceState::Terminating | InstanceState::Terminated);
    if live && cx.provider.capabilities().instances.update_tags {
        ops.push(Node::Obj(
            Obj::new()
                .text("rel", "edit")
                .text("href", cx.href(&["machines", id])),
        ));
    }
    if delete {
        ops.push(Node::Obj(
            Obj::new()
                .text("rel", "delete")
                .text("href", cx.href(&["machines", id])),
        ));
    }
    Node::List(ops)
}

/// A machine as a CIMI document; references to its parts expanded as `expand` asks.
pub fn document(cx: &Cx<'_>, vm: &Instance, flavors: &[Flavor], expand: &Expand) -> Obj {
    let id = vm.id.as_str();
    let mut props: Vec<(String, String)> = Vec::new();
    let mut description = None;
    for (k, v) in &vm.tags {
        if k == DESCRIPTION_TAG {
            description = Some(v.clone());
        } else {
            props.push((k.clone(), v.clone()));
        }
    }
    let flavor = flavor_of(vm, flavors);
    let mut doc = Obj::new()
        .text("resourceURI", format!("{NS}/Machine"))
        .text("id", cx.href(&["machines", id]))
        .text("name", vm.name.clone())
        .opt("description", description)
        .opt(
            "created",
            vm.created_at.map(|t| rfc3339(t.timestamp_millis())),
        );
    if !props.is_empty() {
        doc = doc.with("properties", Node::Props(props));
    }
    doc = doc.text("state", state_of(vm.state));
    if let Some(f) = flavor {
        doc = doc.with("cpu", Node::Int(i64::from(f.vcpus))).with(
            "memory",
            Node::Int((f.memory_mib as i64).saturating_mul(1024)),
        );
    }
    for part in EXPANDABLE {
        let node = if expand.wants(part) {
            Node::Obj(part_collection(cx, vm, flavor, part))
        } else {
            Node::Obj(Obj::href(cx.href(&["machines", id, part])))
        };
        doc = doc.with(part, node);
    }
    if let Some(i) = &vm.image_id {
        doc = doc.with(
            "machineImage",
            Node::Obj(Obj::href(cx.href(&["machineImages", i.as_str()]))),
        );
    }
    if let Some(f) = &vm.flavor_id {
        doc = doc.with(
            "machineConfig",
            Node::Obj(Obj::href(cx.href(&["machineConfigs", f.as_str()]))),
        );
    }
    if let Some(k) = &vm.key_name {
        doc = doc.with(
            "credential",
            Node::Obj(Obj::href(cx.href(&["credentials", k]))),
        );
    }
    doc = doc
        .opt(
            "location",
            vm.location_id.as_ref().map(|l| l.as_str().to_owned()),
        )
        .text("providerState", vm.raw_state.clone())
        .with("operations", operations(cx, id, vm.state));
    doc
}

/// The members of a machine's part: its disks (from its configuration), its volumes
/// (attachments) or its network interfaces (with their addresses).
fn part_members(cx: &Cx<'_>, vm: &Instance, flavor: Option<&Flavor>, part: &str) -> Vec<Obj> {
    let id = vm.id.as_str();
    match part {
        "disks" => flavor
            .and_then(|f| f.disk_gib)
            .map(|gib| {
                vec![Obj::new()
                    .text("resourceURI", format!("{NS}/Disk"))
                    .text("id", cx.href(&["machines", id, "disks", "0"]))
                    .text("name", "root")
                    .with("capacity", Node::Int(i64::from(gib) * 1024 * 1024))]
            })
            .unwrap_or_default(),
        "volumes" => vm
            .volumes
            .iter()
            .map(|v| attachment_doc(cx, id, v.volume_id.as_str(), v.device.as_deref()))
            .collect(),
        _ => interfaces(vm)
            .into_iter()
            .enumerate()
            .map(|(n, (network, addrs))| {
                let mut o = Obj::new()
                    .text("resourceURI", format!("{NS}/MachineNetworkInterface"))
                    .text(
                        "id",
                        cx.href(&["machines", id, "networkInterfaces", &n.to_string()]),
                    );
                if let Some(net) = network {
                    o = o.with(
                        "network",
                        Node::Obj(Obj::href(cx.href(&["networks", &net]))),
                    );
                }
                let addresses = addrs
                    .into_iter()
                    .map(|(ip, public)| {
                        Node::Obj(
                            Obj::new()
                                .text("ip", ip)
                                .text("protocol", "IPv4")
                                .text("allocation", "dynamic")
                                .text("type", if public { "public" } else { "private" }),
                        )
                    })
                    .collect();
                o.text("state", "ACTIVE")
                    .with("addresses", Node::List(addresses))
            })
            .collect(),
    }
}

/// A network interface: its network, and its addresses (whether each is public).
type Interface = (Option<String>, Vec<(String, bool)>);

/// A machine's network interfaces: one per network, the private addresses in order
/// and the public ones on the first.
fn interfaces(vm: &Instance) -> Vec<Interface> {
    let mut out: Vec<Interface> = vm
        .network_ids
        .iter()
        .map(|n| (Some(n.as_str().to_owned()), Vec::new()))
        .collect();
    if out.is_empty() && (!vm.private_ips.is_empty() || !vm.public_ips.is_empty()) {
        out.push((None, Vec::new()));
    }
    let n = out.len();
    for (i, ip) in vm.private_ips.iter().enumerate() {
        if let Some(slot) = out.get_mut(i.min(n.saturating_sub(1))) {
            slot.1.push((ip.clone(), false));
        }
    }
    if let Some(first) = out.first_mut() {
        first
            .1
            .extend(vm.public_ips.iter().map(|ip| (ip.clone(), true)));
    }
    out
}

/// A volume attached to machine `id`.
fn attachment_doc(cx: &Cx<'_>, id: &str, volume: &str, device: Option<&str>) -> Obj {
    let href = cx.href(&["machines", id, "volumes", volume]);
    Obj::new()
        .text("resourceURI", format!("{NS}/MachineVolume"))
        .text("id", href.clone())
        .opt("initialLocation", device.map(str::to_owned))
        .with(
            "volume",
            Node::Obj(Obj::href(cx.href(&["volumes", volume]))),
        )
        .with(
            "operations",
            Node::List(vec![Node::Obj(
                Obj::new().text("rel", "delete").text("href", href),
            )]),
        )
}

fn part_type(part: &str) -> &'static str {
    match part {
        "disks" => "Disk",
        "volumes" => "MachineVolume",
        _ => "MachineNetworkInterface",
    }
}

fn part_collection(cx: &Cx<'_>, vm: &Instance, flavor: Option<&Flavor>, part: &str) -> Obj {
    let mut doc = part_doc(cx, vm, flavor, part, &Query::default());
    let href = cx.href(&["machines", vm.id.as_str(), part]);
    doc.0.insert(0, ("href".into(), Node::Str(href)));
    doc
}

/// A machine's part as a collection under the machine, `q` applied.
fn part_doc(cx: &Cx<'_>, vm: &Instance, flavor: Option<&Flavor>, part: &str, q: &Query) -> Obj {
    let members = part_members(cx, vm, flavor, part);
    let add = part == "volumes" && cx.provider.capabilities().volumes.attach;
    let mut doc = q.collection(cx, part, part_type(part), members, add);
    // The collection's own href is under the machine.
    let href = cx.href(&["machines", vm.id.as_str(), part]);
    doc.set("id", Node::Str(href.clone()));
    if add {
        doc.set(
            "operations",
            Node::List(vec![Node::Obj(
                Obj::new().text("rel", "add").text("href", href),
            )]),
        );
    }
    doc
}

/// The flavor of `vm` among `flavors`.
fn flavor_of<'a>(vm: &Instance, flavors: &'a [Flavor]) -> Option<&'a Flavor> {
    vm.flavor_id
        .as_ref()
        .and_then(|f| flavors.iter().find(|x| x.id == *f))
}

/// The instance `id` if the tenant may see it and it is not gone.
async fn machine(cx: &Cx<'_>, id: &str, op: Operation) -> Result<Instance, CimiError> {
    let o = cx
        .app
        .service
        .instance(cx.tenant, cx.provider, InstanceRef::Backend(id), op)
        .await?;
    if o.instance.state == InstanceState::Terminated {
        return Err(CimiError::not_found(format!(
            "machine {id} not found (it was deleted)"
        )));
    }
    Ok(Arc::unwrap_or_clone(o.instance))
}

async fn flavors(cx: &Cx<'_>) -> Vec<Flavor> {
    if !cx.provider.capabilities().flavors.list {
        return Vec::new();
    }
    // A machine shows its cpu and memory when the flavors can be read; without them
    // it is still shown.
    cx.app
        .service
        .collect_flavors(cx.provider)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(provider = %cx.provider.name, error = %e, "cannot read flavors");
            Vec::new()
        })
}

/// `GET …/machines`.
pub async fn list(cx: &Cx<'_>) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, true)?;
    q.check(ATTRIBUTES, EXPANDABLE)?;
    let caps = cx.provider.capabilities();
    if !caps.instances.list {
        return Err(CimiError::unsupported(format!(
            "provider {} cannot list machines",
            cx.provider.name
        )));
    }
    // Page by page through the service's exact pages of the tenant's machines: only
    // one page and the window are held.
    let flavors = flavors(cx).await;
    let mut w = q.window();
    let mut page = PageRequest::first(MAX_LIMIT);
    loop {
        let got = cx
            .app
            .service
            .list_instances(
                cx.tenant,
                cx.provider,
                &InstanceFilter::default(),
                &page,
                false,
                None,
            )
            .await?;
        for o in got
            .items
            .iter()
            .filter(|o| o.instance.state != InstanceState::Terminated)
        {
            w.push(document(cx, &o.instance, &flavors, &q.expand));
        }
        match got.next {
            Some(t) => page = PageRequest::after(Some(MAX_LIMIT), t),
            None => break,
        }
    }
    let doc = w.finish(cx, "machines", "Machine", caps.instances.create);
    Ok(respond(StatusCode::OK, &doc, "Collection", cx.format))
}

/// `GET …/machines/{id}`.
pub async fn get(cx: &Cx<'_>, id: &str) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, false)?;
    q.check(ATTRIBUTES, EXPANDABLE)?;
    let vm = machine(cx, id, Operation::GetInstance).await?;
    let mut doc = document(cx, &vm, &flavors(cx).await, &q.expand);
    q.select(&mut doc);
    Ok(respond(StatusCode::OK, &doc, "Machine", cx.format))
}

/// `GET …/machines/{id}/{disks|volumes|networkInterfaces}`.
pub async fn part(cx: &Cx<'_>, id: &str, part: &str) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, true)?;
    let vm = machine(cx, id, Operation::GetInstance).await?;
    let flavors = flavors(cx).await;
    let doc = part_doc(cx, &vm, flavor_of(&vm, &flavors), part, &q);
    Ok(respond(StatusCode::OK, &doc, "Collection", cx.format))
}

/// `GET …/machines/{id}/{disks|networkInterfaces}/{n}`.
pub async fn part_item(cx: &Cx<'_>, id: &str, part: &str, n: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let vm = machine(cx, id, Operation::GetInstance).await?;
    let flavors = flavors(cx).await;
    let wanted = cx.href(&["machines", id, part, n]);
    let item = part_members(cx, &vm, flavor_of(&vm, &flavors), part)
        .into_iter()
        .find(|d| d.str("id").as_deref() == Some(wanted.as_str()))
        .ok_or_else(|| CimiError::not_found(format!("machine {id} has no {part} `{n}`")))?;
    Ok(respond(StatusCode::OK, &item, part_type(part), cx.format))
}

/// `GET …/machines/{id}/volumes/{volume}`.
pub async fn attachment(cx: &Cx<'_>, id: &str, volume: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let vm = machine(cx, id, Operation::GetInstance).await?;
    let v = vm
        .volumes
        .iter()
        .find(|v| v.volume_id.as_str() == volume)
        .ok_or_else(|| {
            CimiError::not_found(format!("volume {volume} is not attached to machine {id}"))
        })?;
    let doc = attachment_doc(cx, id, volume, v.device.as_deref());
    Ok(respond(StatusCode::OK, &doc, "MachineVolume", cx.format))
}

/// `POST …/machines/{id}/volumes`: attaches a volume (a `MachineVolume` naming it by
/// `volume.href`, and where it appears by `initialLocation`).
pub async fn attach(cx: &Cx<'_>, id: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let body = cx.document()?;
    // In XML, `<volume href=…/>` reads as the one item of a list of volumes.
    let listed = match body.get("volumes") {
        Some(Node::List(items)) if items.len() == 1 => match &items[0] {
            Node::Obj(o) => o.str("href"),
            _ => None,
        },
        _ => None,
    };
    let href = body
        .href_of("volume")
        .or(listed)
        .ok_or_else(|| CimiError::bad("a MachineVolume names its volume: `volume: {href}`"))?;
    let volume = cx.ref_id(&href, "volumes", "volume.href")?;
    let device = body.str("initialLocation").filter(|d| !d.is_empty());
    cx.app
        .service
        .attach_volume(
            cx.tenant,
            cx.provider,
            InstanceRef::Backend(&volume),
            InstanceRef::Backend(id),
            device.as_deref(),
        )
        .await?;
    let doc = attachment_doc(cx, id, &volume, device.as_deref());
    let href = doc.str("id").unwrap_or_default();
    Ok(with_header(
        respond(StatusCode::CREATED, &doc, "MachineVolume", cx.format),
        "location",
        &href,
    ))
}

/// `DELETE …/machines/{id}/volumes/{volume}`: detaches it.
pub async fn detach(cx: &Cx<'_>, id: &str, volume: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let vm = machine(cx, id, Operation::DetachVolume).await?;
    if !vm.volumes.iter().any(|v| v.volume_id.as_str() == volume) {
        return Err(CimiError::not_found(format!(
            "volume {volume} is not attached to machine {id}"
        )));
    }
    cx.app
        .service
        .detach_volume(cx.tenant, cx.provider, InstanceRef::Backend(volume))
        .await?;
    Ok(super::empty(StatusCode::OK))
}

/// The input of a job that carries out an operation on machine `id`.
fn operation_job(cx: &Cx<'_>, id: &str) -> InstanceJob {
    InstanceJob {
        provider: cx.provider.name.to_string(),
        id: Some(id.to_owned()),
        spec: None,
        expires_at: None,
        idempotency: None,
        scope: None,
    }
}

/// Adds an instance job and answers 202 with it (`CIMI-Job-URI`, and the machine as
/// `Location`).
async fn job_accepted(
    cx: &Cx<'_>,
    action: Option<InstanceAction>,
    machine: &str,
    input: InstanceJob,
    body: Option<(&Obj, &str)>,
) -> Result<Response, CimiError> {
    let job = crate::jobs::NewJob {
        kind: kind_of(action),
        tenant: cx.tenant.name.to_string(),
        target: machine.to_owned(),
        input: crate::jobs::result_json(&input),
        not_before: None,
        deadline: None,
        dedupe: None,
    };
    let (job, _) = crate::jobs::enqueue(cx.app, &job).await?;
    let job_href = cx.href(&["jobs", &job.id]);
    let r = match body {
        Some((doc, ty)) => respond(StatusCode::ACCEPTED, doc, ty, cx.format),
        None => respond(
            StatusCode::ACCEPTED,
            &job_document(cx, &job),
            "Job",
            cx.format,
        ),
    };
    let r = with_header(r, "cimi-job-uri", &job_href);
    Ok(with_header(r, "location", &cx.href(&["machines", machine])))
}

/// `POST …/machines/{id}/{action}` (or `POST …/machines/{id}` with the action in
/// the body): an `Action` document; the operation's href decides, when it names one.
pub async fn act(cx: &Cx<'_>, id: &str, action: Option<&str>) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    const NAMES: [&str; 4] = ["start", "stop", "restart", "capture"];
    if let Some(a) = action {
        if !NAMES.contains(&a) {
            return Err(CimiError::not_found(format!(
                "machine operations are {}; `{a}` is not one",
                NAMES.join(", ")
            )));
        }
    }
    let body = if cx.body.is_empty() && action.is_some() {
        Obj::new()
    } else {
        cx.document()?
    };
    let name = match action {
        Some(a) => a.to_owned(),
        None => {
            let uri = body.str("action").ok_or_else(|| {
                CimiError::bad(format!(
                    "an Action names what to do: `action` is one of {}",
                    NAMES.map(action_uri).join(", ")
                ))
            })?;
            let short = uri.rsplit('/').next().unwrap_or("").to_owned();
            if !NAMES.contains(&short.as_str()) {
                return Err(CimiError::bad(format!(
                    "unknown action `{uri}`: machines offer {}",
                    NAMES.map(action_uri).join(", ")
                )));
            }
            short
        }
    };
    let (op, act) = match name.as_str() {
        "start" => (Operation::StartInstance, Some(InstanceAction::Start)),
        "stop" => (Operation::StopInstance, Some(InstanceAction::Stop)),
        "restart" => (Operation::RebootInstance, Some(InstanceAction::Reboot)),
        _ => (Operation::CreateImage, None),
    };
    if !cx.provider.capabilities().supports(op) {
        return Err(CimiError::unsupported(format!(
            "provider {} ({}) cannot {name} machines",
            cx.provider.name, cx.provider.driver
        )));
    }
    let vm = machine(cx, id, op).await?;
    let (offered, _) = offered(cx, vm.state);
    if !offered.contains(&name.as_str()) {
        return Err(CimiError::not_allowed(
            format!(
                "machine {id} is {}: it offers {} now, not {name}",
                state_of(vm.state),
                if offered.is_empty() {
                    "no action".to_owned()
                } else {
                    offered.join(", ")
                }
            ),
            "GET",
        ));
    }
    match act {
        Some(a) => job_accepted(cx, Some(a), id, operation_job(cx, id), None).await,
        None => capture(cx, &vm, &body).await,
    }
}

/// Captures a machine as an image: 202, the image (usually pending) at `Location`.
async fn capture(cx: &Cx<'_>, vm: &Instance, body: &Obj) -> Result<Response, CimiError> {
    // The image may be described in the Action's `properties`, or named by `name`.
    let name = body
        .str("name")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-capture-{}", vm.name, chrono::Utc::now().timestamp()));
    let spec = ImageSpec {
        instance_id: vm.id.clone(),
        name,
        description: body.str("description"),
        tags: body.props().iter().cloned().collect(),
        owner: None,
    };
    let image = cx
        .app
        .service
        .create_image(
            cx.tenant,
            cx.provider,
            InstanceRef::Backend(vm.id.as_str()),
            &spec,
        )
        .await?;
    let doc = catalog::image_doc(cx, &image.item);
    let href = doc.str("id").unwrap_or_default();
    Ok(with_header(
        respond(StatusCode::ACCEPTED, &doc, "MachineImage", cx.format),
        "location",
        &href,
    ))
}

/// `PUT …/machines/{id}` (the `edit` operation): a Machine document. As CIMI
/// updates, the attributes it may change (`properties`, `description`) are all
/// replaced by the body's, or, with `$select`, those named: one the body leaves out is
/// removed. The name is the provider's: a different one is 400.
pub async fn edit(cx: &Cx<'_>, id: &str) -> Result<Response, CimiError> {
    let q = query::parse(cx.query, false)?;
    q.check(ATTRIBUTES, &[])?;
    const UPDATABLE: [&str; 2] = ["properties", "description"];
    let updated: Vec<&str> = match &q.select {
        None => UPDATABLE.to_vec(),
        Some(sel) => {
            if let Some(n) = sel
                .iter()
                .find(|n| !UPDATABLE.contains(&n.as_str()) && *n != "name")
            {
                return Err(CimiError::bad(format!(
                    "`{n}` of a machine cannot be changed; its {} can",
                    UPDATABLE.join(" and ")
                )));
            }
            UPDATABLE
                .into_iter()
                .filter(|u| sel.iter().any(|n| n == u))
                .collect()
        }
    };
    if !cx.provider.capabilities().instances.update_tags {
        return Err(CimiError::unsupported(format!(
            "provider {} ({}) cannot change a machine's properties",
            cx.provider.name, cx.provider.driver
        )));
    }
    let body = cx.document()?;
    if let Some(t) = body.resource_type() {
        if t != "Machine" {
            return Err(CimiError::bad(format!(
                "a machine is edited with a Machine document, not a {t}"
            )));
        }
    }
    let vm = machine(cx, id, Operation::UpdateInstanceTags).await?;
    if let Some(n) = body.str("name") {
        if n.trim() != vm.name {
            return Err(CimiError::bad(format!(
                "a machine's name cannot change: {id} is `{}`, not `{}`",
                vm.name,
                n.trim()
            )));
        }
    }
    let mut changes = cms_core::TagChanges::new();
    if updated.contains(&"properties") {
        let wanted: BTreeMap<String, String> = body.props().iter().cloned().collect();
        for k in vm.tags.keys() {
            if k != DESCRIPTION_TAG && !wanted.contains_key(k) {
                changes.remove.push(k.clone());
            }
        }
        changes.set.extend(wanted);
    }
    if updated.contains(&"description") {
        match body.str("description").filter(|d| !d.is_empty()) {
            Some(d) => {
                changes.set.insert(DESCRIPTION_TAG.into(), d);
            }
            None if vm.tags.contains_key(DESCRIPTION_TAG) => {
                changes.remove.push(DESCRIPTION_TAG.into())
            }
            None => {}
        }
    }
    let after = if changes.set.is_empty() && changes.remove.is_empty() {
        vm
    } else {
        Arc::unwrap_or_clone(
            cx.app
                .service
                .update_tags(cx.tenant, cx.provider, InstanceRef::Backend(id), &changes)
                .await?
                .instance,
        )
    };
    let doc = document(cx, &after, &flavors(cx).await, &Expand::None);
    Ok(respond(StatusCode::OK, &doc, "Machine", cx.format))
}

/// `DELETE …/machines/{id}`: 202 with the job that deletes it.
pub async fn delete(cx: &Cx<'_>, id: &str) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    if !cx.provider.capabilities().instances.delete {
        return Err(CimiError::unsupported(format!(
            "provider {} cannot delete machines",
            cx.provider.name
        )));
    }
    let vm = machine(cx, id, Operation::DeleteInstance).await?;
    if vm.state == InstanceState::Terminating {
        return Err(CimiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!("machine {id} is DELETING already"),
        ));
    }
    job_accepted(
        cx,
        Some(InstanceAction::Delete),
        id,
        operation_job(cx, id),
        None,
    )
    .await
}

/// What a MachineCreate's template says, its references resolved.
#[derive(Debug, Default)]
pub struct Resolved {
    pub image: Option<String>,
    pub flavor: Option<String>,
    /// By value: CPUs and memory (KiB) a flavor must have at least.
    pub config: Option<(u32, u64)>,
    pub credential: Option<String>,
    /// By value: an OpenSSH public key.
    pub key: Option<String>,
    pub networks: Vec<String>,
    pub user_data: Option<String>,
}

/// Reads a template (a MachineCreate's `machineTemplate` by value, or a
/// MachineTemplate document) into references.
pub fn read_template(cx: &Cx<'_>, t: &Obj, at: &str) -> Result<Resolved, CimiError> {
    let mut r = Resolved::default();
    if let Some(img) = t.obj("machineImage") {
        let href = img.str("href").ok_or_else(|| {
            CimiError::bad(format!(
                "`{at}.machineImage` must refer to an image by `href`: images cannot be given by value"
            ))
        })?;
        r.image = Some(cx.ref_id(&href, "machineImages", &format!("{at}.machineImage"))?);
    }
    if let Some(cfg) = t.obj("machineConfig") {
        match cfg.str("href") {
            Some(href) => {
                r.flavor =
                    Some(cx.ref_id(&href, "machineConfigs", &format!("{at}.machineConfig"))?)
            }
            None => {
                let num = |k: &str| -> Result<Option<u64>, CimiError> {
                    cfg.str(k)
                        .map(|v| {
                            v.trim().parse::<u64>().map_err(|_| {
                                CimiError::bad(format!(
                                    "`{at}.machineConfig.{k}` must be a whole number, not `{v}`"
                                ))
                            })
                        })
                        .transpose()
                };
                let cpu = num("cpu")?.unwrap_or(1);
                let memory = num("memory")?.unwrap_or(0);
                r.config = Some((u32::try_from(cpu).unwrap_or(u32::MAX), memory));
            }
        }
    }
    if let Some(c) = t.obj("credential") {
        match c.str("href") {
            Some(href) => {
                r.credential = Some(cx.ref_id(&href, "credentials", &format!("{at}.credential"))?)
            }
            None => {
                r.key = Some(
                    c.str("key")
                        .filter(|k| !k.trim().is_empty())
                        .ok_or_else(|| {
                            CimiError::bad(format!(
                                "`{at}.credential` by value needs `key`, an OpenSSH public key"
                            ))
                        })?,
                )
            }
        }
    }
    if let Some(Node::List(nics)) = t.get("networkInterfaces") {
        for (i, n) in nics.iter().enumerate() {
            let Node::Obj(n) = n else {
                return Err(CimiError::bad(format!(
                    "`{at}.networkInterfaces[{i}]` must be an object"
                )));
            };
            if let Some(href) = n.href_of("network") {
                r.networks.push(cx.ref_id(
                    &href,
                    "networks",
                    &format!("{at}.networkInterfaces[{i}].network"),
                )?);
            }
        }
    }
    r.user_data = t.str("userData").filter(|u| !u.is_empty());
    Ok(r)
}

/// The smallest flavor with at least `cpu` CPUs and `memory_kib` of memory.
fn fitting_flavor(flavors: &[Flavor], cpu: u32, memory_kib: u64) -> Option<&Flavor> {
    flavors
        .iter()
        .filter(|f| f.vcpus >= cpu && f.memory_mib.saturating_mul(1024) >= memory_kib)
        .min_by_key(|f| (f.vcpus, f.memory_mib, f.id.as_str().to_owned()))
}

/// The key pair a by-value credential becomes: imported once, named after the key.
async fn key_for(cx: &Cx<'_>, key: &str) -> Result<String, CimiError> {
    let digest = Sha256::digest(key.trim().as_bytes());
    let name = format!(
        "cimi-{}",
        digest[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let exists = cx
        .app
        .service
        .list_key_pairs(cx.tenant, cx.provider)
        .await?
        .into_iter()
        .any(|(k, _)| k.name == name);
    if !exists {
        catalog::import_key(cx, &name, key).await?;
    }
    Ok(name)
}

/// `POST …/machines`: a MachineCreate. The machine is asked for at once and a job
/// follows it until it runs: 202 with the machine (usually `CREATING`), its URL in
/// `Location` and the job's in `CIMI-Job-URI`.
pub async fn create(cx: &Cx<'_>) -> Result<Response, CimiError> {
    query::parse(cx.query, false)?;
    let body = cx.document()?;
    if let Some(t) = body.resource_type() {
        if t != "MachineCreate" && t != "Machine" {
            return Err(CimiError::bad(format!(
                "machines are made from a MachineCreate document, not a {t}"
            )));
        }
    }
    let template = body.obj("machineTemplate").ok_or_else(|| {
        CimiError::bad(
            "a MachineCreate needs `machineTemplate`: a reference (`href`) or the template by value",
        )
    })?;
    // By reference: the stored template, with what the body adds by value.
    let mut r = match template.str("href") {
        Some(href) => {
            let id = cx.ref_id(&href, "machineTemplates", "machineTemplate.href")?;
            let row = cx.app.service.template(cx.tenant, cx.provider, &id).await?;
            let stored = super::doc::read_json(row.body.as_bytes())?;
            read_template(cx, &stored, "machineTemplate")?
        }
        None => Resolved::default(),
    };
    let extra = read_template(cx, template, "machineTemplate")?;
    r.image = extra.image.or(r.image);
    if extra.flavor.is_some() || extra.config.is_some() {
        r.flavor = extra.flavor;
        r.config = extra.config;
    }
    if extra.credential.is_some() || extra.key.is_some() {
        r.credential = extra.credential;
        r.key = extra.key;
    }
    if !extra.networks.is_empty() {
        r.networks = extra.networks;
    }
    r.user_data = extra.user_data.or(r.user_data);
    if let Some(u) = body.str("userData").filter(|u| !u.is_empty()) {
        r.user_data = Some(u);
    }
    let image = r.image.ok_or_else(|| {
        CimiError::bad("the machine's template names no image: give `machineImage: {href}`")
    })?;
    // Read once: for a configuration given by value, and for the answer.
    let all_flavors = flavors(cx).await;
    let flavor = match (r.flavor, r.config) {
        (Some(f), _) => f,
        (None, Some((cpu, memory))) => {
            fitting_flavor(&all_flavors, cpu, memory)
                .map(|f| f.id.as_str().to_owned())
                .ok_or_else(|| {
                    CimiError::bad(format!(
                        "provider {} has no machine configuration with {cpu} CPUs and {memory} KiB of memory or more",
                        cx.provider.name
                    ))
                })?
        }
        (None, None) => {
            return Err(CimiError::bad(
                "the machine's template names no configuration: give `machineConfig: {href}` or `{cpu, memory}`",
            ))
        }
    };
    let key_name = match (r.credential, r.key) {
        (Some(c), _) => {
            // The credential must be one of the tenant's.
            catalog::credential(cx, &c).await?;
            Some(c)
        }
        (None, Some(k)) => Some(key_for(cx, &k).await?),
        (None, None) => None,
    };
    let mut tags: BTreeMap<String, String> = body.props().iter().cloned().collect();
    if let Some(d) = body.str("description").filter(|d| !d.is_empty()) {
        tags.insert(DESCRIPTION_TAG.into(), d);
    }
    let spec = InstanceSpec {
        name: body.str("name").unwrap_or_default(),
        image_id: image.into(),
        flavor_id: flavor.into(),
        network_ids: r.networks.into_iter().map(Into::into).collect(),
        key_name,
        user_data: r.user_data,
        tags: tags.into_iter().collect(),
        ..InstanceSpec::default()
    };
    cms_core::check_instance_spec(&spec)
        .map_err(|e| e.with_provider(cx.provider.name.to_string()))?;
    // Made now (so that its id is known), then followed by a job whose repeated
    // create finds it by the same key.
    let key = crate::store::random_id("cimi-");
    let fingerprint = "cimi".to_owned();
    let launch = cx
        .app
        .service
        .create_instances(
            cx.tenant,
            cx.provider,
            &CreateRequest {
                spec: spec.clone(),
                min: 1,
                max: 1,
                idempotency: Some(Idempotency {
                    scope: "cimi",
                    key: key.clone(),
                    fingerprint: fingerprint.clone(),
                }),
                seed: None,
            },
        )
        .await?;
    let made = launch.instances.into_iter().next().ok_or_else(|| {
        CimiError::new(
            StatusCode::BAD_GATEWAY,
            "backend",
            "the provider accepted the create but made no machine",
        )
    })?;
    let vm = made.instance;
    let doc = document(cx, &vm, &all_flavors, &Expand::None);
    let input = InstanceJob {
        provider: cx.provider.name.to_string(),
        id: None,
        spec: Some(spec),
        expires_at: None,
        idempotency: Some((key, fingerprint)),
        scope: Some("cimi".into()),
    };
    job_accepted(cx, None, vm.id.as_str(), input, Some((&doc, "Machine"))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_maps_to_cimi() {
        let cimi = [
            "CREATING",
            "STARTING",
            "STARTED",
            "STOPPING",
            "STOPPED",
            "PAUSED",
            "SUSPENDED",
            "CAPTURING",
            "DELETING",
            "ERROR",
        ];
        for s in InstanceState::ALL {
            assert!(cimi.contains(&state_of(s)), "{s:?}");
        }
        assert_eq!(state_of(InstanceState::Running), "STARTED");
        assert_eq!(state_of(InstanceState::Stopped), "STOPPED");
    }

    #[test]
    fn the_smallest_fitting_flavor_is_chosen() {
        let f = |id: &str, vcpus, memory_mib| Flavor {
            id: id.into(),
            name: id.into(),
            vcpus,
            memory_mib,
            disk_gib: None,
        };
        let all = [f("big", 8, 32768), f("small", 1, 1024), f("mid", 2, 4096)];
        assert_eq!(
            fitting_flavor(&all, 1, 1024 * 1024).unwrap().id.as_str(),
            "small"
        );
        assert_eq!(fitting_flavor(&all, 2, 1024).unwrap().id.as_str(), "mid");
        assert_eq!(
            fitting_flavor(&all, 1, 5000 * 1024).unwrap().id.as_str(),
            "big"
        );
        assert!(fitting_flavor(&all, 16, 0).is_none());
    }
}
