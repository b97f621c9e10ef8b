//! The conformance suite every driver passes (feature `testkit`).
//!
//! [`run`] exercises a [`Cloud`] through the [`Driver`](crate::Driver) trait and checks
//! the behaviour the model promises: the life cycle and its states, `NotFound` for
//! unknown ids, `InvalidState` for impossible transitions, pagination that neither
//! loses nor repeats instances while others are created, filters, tag updates,
//! client-token idempotency, owners (kept and filtered by), concurrent creates,
//! networks, key pairs; then the optional families: volumes (life cycle, attach and
//! detach seen from both sides, volumes made with an instance, pagination, client
//! tokens), snapshots and volumes made from them, image capture, security groups (rules
//! that round-trip as sets, instances in groups), public addresses, owners in each
//! family; and `Unsupported` for every operation the driver does not declare. Checks
//! are chosen from the declared [`Capabilities`](crate::Capabilities) and skipped, with
//! the reason, when a capability they need is not declared; each one cleans up what it
//! created (and a final sweep deletes what a failed check left).
//!
//! The checks rely on the [`Driver`](crate::Driver) contract only: they wait for
//! states with the [`Cloud`]'s `wait_for_*` helpers (up to
//! [`KitConfig::state_timeout`]), and compare a group's rules by containment, so a
//! backend may take its time and may give new groups rules of its own.
//!
//! ```
//! use std::time::Duration;
//! use cms_core::{memory::{MemoryCloud, MemoryConfig}, testkit, Cloud};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Every transition (instances, volumes, snapshots, images) takes 20 ms.
//! let config = MemoryConfig::with_delays(Duration::from_millis(20));
//! let cloud = Cloud::builder(MemoryCloud::with_config(config)).build();
//! let report = testkit::run(&cloud, &testkit::KitConfig::default()).await;
//! report.assert_passed();
//! # }
//! ```

mod families;
pub mod fuzz;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;

use crate::model::*;
use crate::{Cloud, Error, ErrorKind, Operation, Result};
use families::{
    addresses, family_owners, image_capture, instance_volumes, security_group_instances,
    security_group_rules, snapshots, unknown_ids, volume_attach, volume_client_token,
    volume_lifecycle, volume_pagination,
};

/// What the suite creates and how long it waits.
#[derive(Clone, Debug)]
pub struct KitConfig {
    /// The image to boot; the first listed when absent.
    pub image: Option<ImageId>,
    /// The flavor; the first listed when absent.
    pub flavor: Option<FlavorId>,
    /// How long an instance may take to reach a state.
    pub state_timeout: Duration,
    /// Instances created before paging through them.
    pub pagination_instances: usize,
    /// Instances created while paging.
    pub pagination_concurrent: usize,
    /// The page size used to page through them.
    pub page_size: u32,
    /// Instances created at once by the concurrency check.
    pub concurrent_creates: usize,
    /// An instance id the backend accepts as well-formed but does not know.
    pub unknown_instance_id: InstanceId,
    /// An image id the backend accepts as well-formed but does not know.
    pub unknown_image_id: ImageId,
    /// A network id the backend accepts as well-formed but does not know.
    pub unknown_network_id: NetworkId,
    /// A volume id the backend accepts as well-formed but does not know.
    pub unknown_volume_id: VolumeId,
    /// A snapshot id the backend accepts as well-formed but does not know.
    pub unknown_snapshot_id: SnapshotId,
    /// A security group id the backend accepts as well-formed but does not know.
    pub unknown_security_group_id: SecurityGroupId,
    /// An address id the backend accepts as well-formed but does not know.
    pub unknown_address_id: AddressId,
    /// The range of the network the network check creates.
    pub network_cidr: String,
    /// The size of the volumes the checks make, in GiB (more than 1, so that a volume
    /// smaller than a snapshot can be asked for).
    pub volume_size_gib: u32,
    /// The device to attach volumes at; the backend's choice when absent.
    pub device: Option<String>,
    /// Volumes made to page through.
    pub pagination_volumes: usize,
}

impl Default for KitConfig {
    fn default() -> Self {
        KitConfig {
            image: None,
            flavor: None,
            state_timeout: Duration::from_secs(60),
            pagination_instances: 12,
            pagination_concurrent: 6,
            page_size: 5,
            concurrent_creates: 8,
            unknown_instance_id: InstanceId::new("i-0cafe0000cafe0000"),
            unknown_image_id: ImageId::new("ami-0cafe0000cafe0000"),
            unknown_network_id: NetworkId::new("subnet-0cafe0000cafe0000"),
            unknown_volume_id: VolumeId::new("vol-0cafe0000cafe0000"),
            unknown_snapshot_id: SnapshotId::new("snap-0cafe0000cafe0000"),
            unknown_security_group_id: SecurityGroupId::new("sg-0cafe0000cafe0000"),
            unknown_address_id: AddressId::new("eipalloc-0cafe0000cafe0000"),
            network_cidr: "10.77.0.0/24".into(),
            volume_size_gib: 2,
            device: None,
            pagination_volumes: 7,
        }
    }
}

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// What went wrong.
    Failed(String),
    /// Why it did not apply (an undeclared capability).
    Skipped(String),
}

/// One check's result.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub name: &'static str,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// The results of a run.
#[derive(Clone, Debug)]
pub struct Report {
    pub provider: String,
    pub checks: Vec<CheckReport>,
    /// Instances the suite's creates answered (each distinct id counted once).
    pub instances_created: usize,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
    }

    /// Checks that passed.
    pub fn passed_count(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Passed)
            .count()
    }

    /// Panics with the whole report when a check failed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.passed(), "conformance failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of provider `{}`:", self.provider)?;
        for c in &self.checks {
            let ms = c.elapsed.as_millis();
            match &c.outcome {
                Outcome::Passed => writeln!(f, "  PASS {} ({ms} ms)", c.name)?,
                Outcome::Skipped(why) => writeln!(f, "  SKIP {}: {why}", c.name)?,
                Outcome::Failed(why) => writeln!(f, "  FAIL {} ({ms} ms): {why}", c.name)?,
            }
        }
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed_count(),
            self.failures().count(),
            self.checks.len() - self.passed_count() - self.failures().count()
        )
    }
}

enum Fail {
    Failed(String),
    Skipped(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Failed(format!("unexpected error: {e} ({:?})", e.kind()))
    }
}

type Check = std::result::Result<(), Fail>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Fail::Failed(format!($($msg)+)));
        }
    };
}

fn skip(why: impl Into<String>) -> Check {
    Err(Fail::Skipped(why.into()))
}

/// Expects `r` to fail with `kind`.
fn expect_kind<T: fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Check {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(Fail::Failed(format!(
            "{what}: expected {kind}, got {:?}: {e}",
            e.kind()
        ))),
        Ok(v) => Err(Fail::Failed(format!("{what}: expected {kind}, got {v:?}"))),
    }
}

struct Ctx<'a> {
    cloud: &'a Cloud,
    config: &'a KitConfig,
    run: String,
    image: ImageId,
    flavor: FlavorId,
    created: Mutex<Vec<InstanceId>>,
    made: Mutex<families::Made>,
}

impl Ctx<'_> {
    fn caps(&self) -> &crate::Capabilities {
        self.cloud.capabilities()
    }

    fn spec(&self, name: &str) -> InstanceSpec {
        let mut spec = InstanceSpec::new(self.image.clone(), self.flavor.clone())
            .name(format!("kit-{}-{name}", self.run));
        if self.caps().instances.tags {
            spec = spec.tag("cms-kit-run", self.run.clone());
        }
        spec
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Instance> {
        let i = self.cloud.create_instance(spec).await?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(i.id.clone());
        Ok(i)
    }

    async fn create_named(&self, name: String) -> Result<Instance> {
        self.create(&self.spec(&name)).await
    }

    async fn wait(&self, id: &InstanceId, state: InstanceState) -> Result<Instance> {
        self.cloud
            .wait_for_state(id, state, self.config.state_timeout)
            .await
    }

    async fn create_running(&self, name: &str) -> Result<Instance> {
        let i = self.create(&self.spec(name)).await?;
        self.wait(&i.id, InstanceState::Running).await
    }

    /// Waits until the instance is terminated or gone.
    async fn wait_gone(&self, id: &InstanceId) -> Check {
        match self.wait(id, InstanceState::Terminated).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn cleanup(&self) {
        let ids: Vec<InstanceId> = self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !self.caps().instances.delete {
            return;
        }
        join_all(ids.iter().map(|id| self.cloud.delete_instance(id))).await;
    }
}

/// Runs every check that the cloud's capabilities call for, one after the other.
pub async fn run(cloud: &Cloud, config: &KitConfig) -> Report {
    let run = format!("{:08x}", rand::thread_rng().gen::<u32>());
    let mut checks = Vec::new();
    let (image, flavor) = match pick_catalogue(cloud, config).await {
        Ok(v) => v,
        Err(why) => {
            checks.push(CheckReport {
                name: "setup",
                outcome: Outcome::Failed(why),
                elapsed: Duration::ZERO,
            });
            return Report {
                provider: cloud.provider().to_owned(),
                checks,
                instances_created: 0,
            };
        }
    };
    let ctx = Ctx {
        cloud,
        config,
        run,
        image,
        flavor,
        created: Mutex::new(Vec::new()),
        made: Mutex::new(families::Made::default()),
    };
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {
            $( checks.push(timed(stringify!($name), $name(&ctx)).await); )*
        };
    }
    checks!(
        catalogue,
        not_found,
        lifecycle,
        invalid_transitions,
        pagination,
        bad_page_token,
        filters,
        tag_updates,
        client_token,
        owners,
        concurrent_creates,
        networks,
        key_pairs,
        unknown_ids,
        volume_lifecycle,
        volume_attach,
        instance_volumes,
        snapshots,
        volume_pagination,
        volume_client_token,
        image_capture,
        security_group_rules,
        security_group_instances,
        addresses,
        family_owners,
        unsupported,
    );
    ctx.cleanup().await;
    ctx.sweep().await;
    let distinct: HashSet<InstanceId> = ctx
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    Report {
        provider: cloud.provider().to_owned(),
        checks,
        instances_created: distinct.len(),
    }
}

async fn timed(name: &'static str, check: impl Future<Output = Check>) -> CheckReport {
    let started = Instant::now();
    let outcome = match check.await {
        Ok(()) => Outcome::Passed,
        Err(Fail::Failed(why)) => Outcome::Failed(why),
        Err(Fail::Skipped(why)) => Outcome::Skipped(why),
    };
    CheckReport {
        name,
        outcome,
        elapsed: started.elapsed(),
    }
}

async fn pick_catalogue(
    cloud: &Cloud,
    config: &KitConfig,
) -> std::result::Result<(ImageId, FlavorId), String> {
    let image = match &config.image {
        Some(i) => i.clone(),
        None if cloud.capabilities().images.list => cloud
            .list_images(&ImageFilter::default(), &PageRequest::default())
            .await
            .map_err(|e| format!("list images: {e}"))?
            .items
            .first()
            .map(|i| i.id.clone())
            .ok_or("the backend lists no image; set KitConfig::image")?,
        None => ImageId::default(),
    };
    let flavor = match &config.flavor {
        Some(f) => f.clone(),
        None if cloud.capabilities().flavors.list => cloud
            .list_flavors(&PageRequest::default())
            .await
            .map_err(|e| format!("list flavors: {e}"))?
            .items
            .first()
            .map(|f| f.id.clone())
            .ok_or("the backend lists no flavor; set KitConfig::flavor")?,
        None => FlavorId::default(),
    };
    Ok((image, flavor))
}

async fn catalogue(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let c = ctx.cloud;
    if caps.images.list {
        let images = c.collect_images().await?;
        ensure!(!images.is_empty(), "no image listed");
        let ids: HashSet<_> = images.iter().map(|i| &i.id).collect();
        ensure!(ids.len() == images.len(), "an image is listed twice");
        if caps.images.get {
            let got = c.get_image(&images[0].id).await?;
            ensure!(
                got.id == images[0].id,
                "get image `{}` answered image `{}`",
                images[0].id,
                got.id
            );
        }
    }
    if caps.images.get {
        expect_kind(
            c.get_image(&ctx.config.unknown_image_id).await,
            ErrorKind::NotFound,
            "get an unknown image",
        )?;
    }
    if caps.flavors.list {
        let flavors = c.collect_flavors().await?;
        ensure!(!flavors.is_empty(), "no flavor listed");
        ensure!(
            flavors.iter().all(|f| f.vcpus > 0 && f.memory_mib > 0),
            "a flavor has no vCPU or no memory: {flavors:?}"
        );
    }
    if caps.locations.list {
        let locations = c.list_locations().await?;
        ensure!(!locations.is_empty(), "no location listed");
    }
    Ok(())
}

async fn not_found(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    let c = ctx.cloud;
    let id = &ctx.config.unknown_instance_id;
    if caps.get {
        expect_kind(c.get_instance(id).await, ErrorKind::NotFound, "get")?;
    }
    if caps.start {
        expect_kind(c.start_instance(id).await, ErrorKind::NotFound, "start")?;
    }
    if caps.stop {
        expect_kind(c.stop_instance(id).await, ErrorKind::NotFound, "stop")?;
    }
    if caps.reboot {
        expect_kind(c.reboot_instance(id).await, ErrorKind::NotFound, "reboot")?;
    }
    if caps.delete {
        expect_kind(c.delete_instance(id).await, ErrorKind::NotFound, "delete")?;
    }
    if caps.create && ctx.caps().images.list {
        let spec = InstanceSpec {
            image_id: ctx.config.unknown_image_id.clone(),
            ..ctx.spec("bad-image")
        };
        expect_kind(
            ctx.create(&spec).await,
            ErrorKind::NotFound,
            "create from an unknown image",
        )?;
    }
    Ok(())
}

async fn lifecycle(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.get && caps.delete) {
        return skip("needs instance create, get and delete");
    }
    let c = ctx.cloud;
    use InstanceState::*;
    let spec = ctx.spec("life").tag("role", "kit");
    let created = ctx.create(&spec).await?;
    ensure!(
        matches!(created.state, Pending | Running),
        "a new instance is {} ({}), not pending or running",
        created.state,
        created.raw_state
    );
    ensure!(!created.raw_state.is_empty(), "raw_state is empty");
    let got = c.get_instance(&created.id).await?;
    ensure!(got.id == created.id, "get answered another instance");
    ensure!(
        got.name == spec.name,
        "name `{}` != `{}`",
        got.name,
        spec.name
    );
    ensure!(
        got.image_id.as_ref() == Some(&spec.image_id),
        "image {:?} != {}",
        got.image_id,
        spec.image_id
    );
    ensure!(
        got.flavor_id.as_ref() == Some(&spec.flavor_id),
        "flavor {:?} != {}",
        got.flavor_id,
        spec.flavor_id
    );
    if caps.tags {
        for (k, v) in &spec.tags {
            ensure!(
                got.tags.get(k) == Some(v),
                "tag {k}={v} missing: {:?}",
                got.tags
            );
        }
    }
    ctx.wait(&created.id, Running).await?;
    if caps.stop {
        let s = c.stop_instance(&created.id).await?;
        ensure!(
            matches!(s.state, Stopping | Stopped),
            "stop answered {}",
            s.state
        );
        ctx.wait(&created.id, Stopped).await?;
        if caps.start {
            let s = c.start_instance(&created.id).await?;
            ensure!(
                matches!(s.state, Pending | Running),
                "start answered {}",
                s.state
            );
            ctx.wait(&created.id, Running).await?;
        }
    }
    if caps.reboot {
        let s = c.reboot_instance(&created.id).await?;
        ensure!(
            matches!(s.state, Rebooting | Running | Pending),
            "reboot answered {}",
            s.state
        );
        ctx.wait(&created.id, Running).await?;
    }
    let d = c.delete_instance(&created.id).await?;
    ensure!(
        matches!(d.state, Terminating | Terminated),
        "delete answered {}",
        d.state
    );
    ctx.wait_gone(&created.id).await
}

async fn invalid_transitions(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.get && caps.delete) {
        return skip("needs instance create, get and delete");
    }
    let c = ctx.cloud;
    use InstanceState::*;
    let vm = ctx.create_running("invalid").await?;
    if caps.start {
        expect_kind(
            c.start_instance(&vm.id).await,
            ErrorKind::InvalidState,
            "start a running instance",
        )?;
    }
    if caps.stop {
        c.stop_instance(&vm.id).await?;
        ctx.wait(&vm.id, Stopped).await?;
        expect_kind(
            c.stop_instance(&vm.id).await,
            ErrorKind::InvalidState,
            "stop a stopped instance",
        )?;
        if caps.reboot {
            expect_kind(
                c.reboot_instance(&vm.id).await,
                ErrorKind::InvalidState,
                "reboot a stopped instance",
            )?;
        }
    }
    c.delete_instance(&vm.id).await?;
    ctx.wait_gone(&vm.id).await?;
    if caps.start {
        match c.start_instance(&vm.id).await {
            Err(e) if matches!(e.kind(), ErrorKind::InvalidState | ErrorKind::NotFound) => {}
            other => {
                return Err(Fail::Failed(format!(
                "start a terminated instance: expected invalid_state or not_found, got {other:?}"
            )))
            }
        }
    }
    let again = c.delete_instance(&vm.id).await;
    ensure!(
        again.is_ok() || again.as_ref().err().map(|e| e.kind()) == Some(ErrorKind::NotFound),
        "delete a terminated instance again: expected it answered or not_found, got {again:?}"
    );
    Ok(())
}

/// Lists every page of instances of this run, checking no page repeats an id.
async fn page_through(ctx: &Ctx<'_>, filter: &InstanceFilter) -> Result<Vec<InstanceId>> {
    let mut seen = Vec::new();
    let mut page = PageRequest::first(ctx.config.page_size);
    loop {
        let p = ctx.cloud.list_instances(filter, &page).await?;
        if p.items.len() > ctx.config.page_size as usize {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "a page of limit {} held {} items",
                    ctx.config.page_size,
                    p.items.len()
                ),
            ));
        }
        seen.extend(p.items.into_iter().map(|i| i.id));
        match p.next {
            Some(t) => page = PageRequest::after(Some(ctx.config.page_size), t),
            None => return Ok(seen),
        }
    }
}

fn run_filter(ctx: &Ctx<'_>) -> InstanceFilter {
    let mut f = InstanceFilter::default();
    if ctx.caps().instances.tags {
        f.tags.insert("cms-kit-run".into(), Some(ctx.run.clone()));
    }
    f
}

async fn pagination(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.list) {
        return skip("needs instance create and list");
    }
    let n = ctx.config.pagination_instances;
    let before: Vec<Instance> = join_all((0..n).map(|k| ctx.create_named(format!("page-{k}"))))
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let filter = run_filter(ctx);
    let extra = ctx.config.pagination_concurrent;
    let creating = join_all((0..extra).map(|k| async move {
        tokio::time::sleep(Duration::from_millis(3 * k as u64)).await;
        ctx.create_named(format!("page-late-{k}")).await
    }));
    let (listed, late) = tokio::join!(page_through(ctx, &filter), creating);
    let listed = listed?;
    let mut late_ids = Vec::new();
    for l in late {
        late_ids.push(l?.id);
    }
    let mut counts: BTreeMap<&InstanceId, usize> = BTreeMap::new();
    for id in &listed {
        *counts.entry(id).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(repeated.is_empty(), "listed more than once: {repeated:?}");
    let missing: Vec<_> = before
        .iter()
        .filter(|i| !counts.contains_key(&i.id))
        .map(|i| &i.id)
        .collect();
    ensure!(
        missing.is_empty(),
        "created before the listing began but not listed: {missing:?}"
    );
    // Now that creation is over, a second pass sees every instance made here, once.
    let all = page_through(ctx, &filter).await?;
    let made: Vec<&InstanceId> = before
        .iter()
        .map(|i| &i.id)
        .chain(late_ids.iter())
        .collect();
    for id in made {
        let n = all.iter().filter(|x| *x == id).count();
        ensure!(
            n == 1,
            "after creates ended, instance `{id}` was listed {n} times"
        );
    }
    Ok(())
}

async fn bad_page_token(ctx: &Ctx<'_>) -> Check {
    if !ctx.caps().instances.list {
        return skip("needs instance list");
    }
    let page = PageRequest::after(Some(5), PageToken::new("%%no such token%%"));
    expect_kind(
        ctx.cloud
            .list_instances(&InstanceFilter::default(), &page)
            .await,
        ErrorKind::InvalidArgument,
        "list with a page token the driver never gave",
    )
}

async fn filters(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.list && caps.get) {
        return skip("needs instance create, list and get");
    }
    let c = ctx.cloud;
    let a = ctx.create(&ctx.spec("filter-a").tag("tier", "web")).await?;
    let b = ctx.create(&ctx.spec("filter-b").tag("tier", "db")).await?;
    let ids = |v: Vec<Instance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();

    let by_name = InstanceFilter {
        name: Some(a.name.clone()),
        ..Default::default()
    };
    let got = ids(c.collect_instances(&by_name).await?);
    ensure!(got == vec![a.id.clone()], "filter name={}: {got:?}", a.name);

    let by_ids = InstanceFilter {
        ids: vec![b.id.clone()],
        ..Default::default()
    };
    let got = ids(c.collect_instances(&by_ids).await?);
    ensure!(got == vec![b.id.clone()], "filter id={}: {got:?}", b.id);

    if caps.tags {
        let mut by_tag = run_filter(ctx);
        by_tag.tags.insert("tier".into(), Some("db".into()));
        let got = ids(c.collect_instances(&by_tag).await?);
        ensure!(got == vec![b.id.clone()], "filter tier=db: {got:?}");

        let mut by_key = run_filter(ctx);
        by_key.tags.insert("tier".into(), None);
        let mut got = ids(c.collect_instances(&by_key).await?);
        got.sort();
        let mut want = vec![a.id.clone(), b.id.clone()];
        want.sort();
        ensure!(got == want, "filter tag key tier: {got:?}");
    }

    if caps.stop {
        ctx.wait(&a.id, InstanceState::Running).await?;
        c.stop_instance(&a.id).await?;
        ctx.wait(&a.id, InstanceState::Stopped).await?;
        ctx.wait(&b.id, InstanceState::Running).await?;
        let mut stopped = run_filter(ctx);
        stopped.states = vec![InstanceState::Stopped];
        stopped.ids = vec![a.id.clone(), b.id.clone()];
        let got = ids(c.collect_instances(&stopped).await?);
        ensure!(got == vec![a.id.clone()], "filter state=stopped: {got:?}");
    }
    Ok(())
}

/// Sets, overwrites and removes tags of an instance, reads them back with get and
/// list, and checks the errors: a key both set and removed, an unknown instance.
async fn tag_updates(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !caps.update_tags {
        return skip("needs tag updates");
    }
    if !(caps.create && caps.get && caps.list && caps.tags) {
        return skip("needs instance create, get, list and tags");
    }
    let c = ctx.cloud;
    let spec = ctx
        .spec("tags")
        .tag("keep", "same")
        .tag("over", "old")
        .tag("drop", "gone soon");
    let vm = ctx.create(&spec).await?;
    let changes = TagChanges::new()
        .set_tag("added", "new")
        .set_tag("over", "new")
        .remove_tag("drop")
        .remove_tag("never-there");
    let mut want = spec.tags.clone();
    want.remove("drop");
    want.insert("added".into(), "new".into());
    want.insert("over".into(), "new".into());

    let answered = c.update_instance_tags(&vm.id, &changes).await?;
    ensure!(
        answered.id == vm.id,
        "update answered instance `{}`",
        answered.id
    );
    ensure!(
        answered.tags == want,
        "update answered tags {:?}, expected {want:?}",
        answered.tags
    );
    let got = c.get_instance(&vm.id).await?;
    ensure!(
        got.tags == want,
        "after the update, get answered tags {:?}, expected {want:?}",
        got.tags
    );
    let mut by_new_tag = run_filter(ctx);
    by_new_tag.tags.insert("added".into(), Some("new".into()));
    let listed = c.collect_instances(&by_new_tag).await?;
    ensure!(
        listed.len() == 1 && listed[0].id == vm.id,
        "filter on the added tag listed {:?}",
        listed.iter().map(|i| &i.id).collect::<Vec<_>>()
    );
    ensure!(
        listed[0].tags == want,
        "after the update, list answered tags {:?}, expected {want:?}",
        listed[0].tags
    );
    let mut by_removed_tag = run_filter(ctx);
    by_removed_tag.tags.insert("drop".into(), None);
    let listed = c.collect_instances(&by_removed_tag).await?;
    ensure!(
        listed.iter().all(|i| i.id != vm.id),
        "the instance is still listed by the removed tag key `drop`"
    );

    // The same change again changes nothing.
    let again = c.update_instance_tags(&vm.id, &changes).await?;
    ensure!(
        again.tags == want,
        "a repeated update answered {:?}",
        again.tags
    );

    let both = TagChanges::new()
        .set_tag("keep", "changed")
        .remove_tag("keep");
    match c.update_instance_tags(&vm.id, &both).await {
        Err(e) if e.kind() == ErrorKind::InvalidArgument => ensure!(
            e.to_string().contains("keep"),
            "the error for a key both set and removed does not name it: {e}"
        ),
        other => {
            return Err(Fail::Failed(format!(
                "a key both set and removed: expected invalid_argument, got {other:?}"
            )))
        }
    }
    let got = c.get_instance(&vm.id).await?;
    ensure!(
        got.tags == want,
        "a refused update changed the tags to {:?}",
        got.tags
    );
    expect_kind(
        c.update_instance_tags(
            &ctx.config.unknown_instance_id,
            &TagChanges::new().set_tag("added", "new"),
        )
        .await,
        ErrorKind::NotFound,
        "update the tags of an unknown instance",
    )?;
    if caps.delete {
        // Some backends refuse to delete an instance still booting (OpenNebula while
        // BOOT): this check is about tags, so it waits.
        ctx.wait(&vm.id, InstanceState::Running).await?;
        c.delete_instance(&vm.id).await?;
        ctx.wait_gone(&vm.id).await?;
    }
    Ok(())
}

async fn client_token(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.client_token) {
        return skip("needs instance create with client token");
    }
    let token = format!("kit-{}-token", ctx.run);
    let spec = ctx.spec("token").client_token(token.clone());
    let first = ctx.create(&spec).await?;
    let second = ctx.create(&spec).await?;
    ensure!(
        first.id == second.id,
        "the same client token made two instances: {} and {}",
        first.id,
        second.id
    );
    let concurrent = join_all((0..4).map(|_| ctx.create(&spec))).await;
    for r in concurrent {
        let i = r?;
        ensure!(
            i.id == first.id,
            "a concurrent create with the same token made {}",
            i.id
        );
    }
    let other = ctx.spec("token-other").client_token(token);
    match ctx.cloud.create_instance(&other).await {
        Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(()),
        other => Err(Fail::Failed(format!(
            "same token, other request: expected invalid_argument, got {other:?}"
        ))),
    }
}

/// Instances keep the owner they were made for, in the create's answer, in `get` and in
/// listings; a listing filtered by owner holds that owner's instances only, page after
/// full page; an owner that breaks the model's form is refused.
async fn owners(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.list && caps.get && caps.owner) {
        return skip("needs instance create, list and get, with owners");
    }
    let c = ctx.cloud;
    let (mine, theirs) = (
        format!("kit-{}-owner-a", ctx.run),
        format!("kit-{}-owner-b", ctx.run),
    );
    let n = ctx.config.page_size as usize + 2;
    let made: Vec<Instance> = join_all((0..n).map(|k| {
        let spec = ctx.spec(&format!("own-{k}")).owner(mine.clone());
        async move { ctx.create(&spec).await }
    }))
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let other = ctx
        .create(&ctx.spec("own-other").owner(theirs.clone()))
        .await?;
    for i in &made {
        ensure!(
            i.owner.as_deref() == Some(mine.as_str()),
            "create answered owner {:?} for `{}`, made for {mine}",
            i.owner,
            i.id
        );
    }
    let got = c.get_instance(&other.id).await?;
    ensure!(
        got.owner.as_deref() == Some(theirs.as_str()),
        "get answered owner {:?}, made for {theirs}",
        got.owner
    );
    // Paged with the kit's page size: every page but the last is full.
    let filter = InstanceFilter {
        owner: Some(mine.clone()),
        ..Default::default()
    };
    let mut listed = Vec::new();
    let mut page = PageRequest::first(ctx.config.page_size);
    loop {
        let p = c.list_instances(&filter, &page).await?;
        for i in &p.items {
            ensure!(
                i.owner.as_deref() == Some(mine.as_str()),
                "owner filter {mine} listed `{}` of owner {:?}",
                i.id,
                i.owner
            );
        }
        listed.extend(p.items.iter().map(|i| i.id.clone()));
        match p.next {
            Some(t) => {
                ensure!(
                    p.items.len() == ctx.config.page_size as usize,
                    "a page of the owner filter held {} of {} items and was not the last",
                    p.items.len(),
                    ctx.config.page_size
                );
                page = PageRequest::after(Some(ctx.config.page_size), t);
            }
            None => break,
        }
    }
    let mut want: Vec<InstanceId> = made.iter().map(|i| i.id.clone()).collect();
    want.sort();
    listed.sort();
    ensure!(
        listed == want,
        "owner filter {mine}: listed {listed:?}, made {want:?}"
    );
    let by_ids = InstanceFilter {
        ids: vec![made[0].id.clone(), other.id.clone()],
        owner: Some(theirs.clone()),
        ..Default::default()
    };
    let got: Vec<InstanceId> = c
        .collect_instances(&by_ids)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    ensure!(
        got == vec![other.id.clone()],
        "ids and owner {theirs}: {got:?}"
    );
    let nobody = InstanceFilter {
        owner: Some(format!("kit-{}-owner-none", ctx.run)),
        ..Default::default()
    };
    let got = c.collect_instances(&nobody).await?;
    ensure!(got.is_empty(), "an owner with no instances listed {got:?}");
    let bad = ctx.spec("own-bad").owner("not an owner");
    expect_kind(
        c.create_instance(&bad).await,
        ErrorKind::InvalidArgument,
        "create with owner `not an owner`",
    )
}

async fn concurrent_creates(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().instances;
    if !(caps.create && caps.list) {
        return skip("needs instance create and list");
    }
    let n = ctx.config.concurrent_creates;
    let made: Vec<Instance> = join_all((0..n).map(|k| ctx.create_named(format!("conc-{k}"))))
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let ids: HashSet<_> = made.iter().map(|i| i.id.clone()).collect();
    ensure!(
        ids.len() == n,
        "{n} creates answered {} distinct ids",
        ids.len()
    );
    let filter = InstanceFilter {
        ids: ids.iter().cloned().collect(),
        ..Default::default()
    };
    let listed = ctx.cloud.collect_instances(&filter).await?;
    ensure!(
        listed.len() == n,
        "{n} instances created at once, {} listed",
        listed.len()
    );
    Ok(())
}

async fn networks(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().networks;
    let c = ctx.cloud;
    if caps.get {
        expect_kind(
            c.get_network(&ctx.config.unknown_network_id).await,
            ErrorKind::NotFound,
            "get an unknown network",
        )?;
    }
    if caps.delete {
        expect_kind(
            c.delete_network(&ctx.config.unknown_network_id).await,
            ErrorKind::NotFound,
            "delete an unknown network",
        )?;
    }
    if !(caps.create && caps.delete && caps.list && caps.get) {
        if caps.list {
            c.collect_networks().await?;
        }
        return if caps.list || caps.get {
            Ok(())
        } else {
            skip("no network operations")
        };
    }
    let bad = NetworkSpec {
        name: format!("kit-{}-bad", ctx.run),
        cidr: "10.0.0.300/99".into(),
        ..Default::default()
    };
    expect_kind(
        c.create_network(&bad).await,
        ErrorKind::InvalidArgument,
        "create with a bad cidr",
    )?;
    let spec = NetworkSpec {
        name: format!("kit-{}-net", ctx.run),
        cidr: ctx.config.network_cidr.clone(),
        ..Default::default()
    };
    let net = c.create_network(&spec).await?;
    ensure!(
        net.name == spec.name,
        "network name `{}` != `{}`",
        net.name,
        spec.name
    );
    let got = c.get_network(&net.id).await?;
    ensure!(got.id == net.id, "get network answered `{}`", got.id);
    ensure!(
        got.cidr.as_deref() == Some(spec.cidr.as_str()),
        "network cidr {:?} != {}",
        got.cidr,
        spec.cidr
    );
    let listed = c.collect_networks().await?;
    ensure!(
        listed.iter().any(|n| n.id == net.id),
        "the new network is not listed"
    );
    c.delete_network(&net.id).await?;
    expect_kind(
        c.get_network(&net.id).await,
        ErrorKind::NotFound,
        "get a deleted network",
    )
}

/// An Ed25519 public key, valid, generated once for the suite.
const IMPORT_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjeiXREAM6bENP+0LXDY4pfk44C2N30tUNZZ0j1VIZj kit@cms";

async fn key_pairs(ctx: &Ctx<'_>) -> Check {
    let caps = ctx.caps().key_pairs;
    let c = ctx.cloud;
    if !caps.list {
        return skip("needs key pair list");
    }
    if caps.delete {
        expect_kind(
            c.delete_key_pair(&format!("kit-{}-none", ctx.run)).await,
            ErrorKind::NotFound,
            "delete an unknown key pair",
        )?;
    }
    if caps.create {
        let name = format!("kit-{}-gen", ctx.run);
        let kp = c
            .create_key_pair(&KeyPairSpec {
                name: name.clone(),
                public_key: None,
            })
            .await?;
        ensure!(kp.name == name, "key pair name `{}` != `{name}`", kp.name);
        ensure!(
            kp.private_key
                .as_deref()
                .is_some_and(|k| k.contains("PRIVATE KEY")),
            "a generated key pair came without its private key"
        );
        let listed = c.list_key_pairs().await?;
        let found = listed.iter().find(|k| k.name == name);
        ensure!(found.is_some(), "the new key pair is not listed");
        ensure!(
            found.is_some_and(|k| k.private_key.is_none()),
            "a listed key pair carries a private key"
        );
        expect_kind(
            c.create_key_pair(&KeyPairSpec {
                name: name.clone(),
                public_key: None,
            })
            .await,
            ErrorKind::AlreadyExists,
            "create a key pair whose name exists",
        )?;
        if caps.delete {
            c.delete_key_pair(&name).await?;
            let listed = c.list_key_pairs().await?;
            ensure!(
                listed.iter().all(|k| k.name != name),
                "a deleted key pair is listed"
            );
        }
    }
    if caps.import {
        let name = format!("kit-{}-imp", ctx.run);
        expect_kind(
            c.create_key_pair(&KeyPairSpec {
                name: name.clone(),
                public_key: Some("ssh-ed25519 not-base64!".into()),
            })
            .await,
            ErrorKind::InvalidArgument,
            "import a malformed public key",
        )?;
        let kp = c
            .create_key_pair(&KeyPairSpec {
                name: name.clone(),
                public_key: Some(IMPORT_KEY.into()),
            })
            .await?;
        ensure!(
            kp.private_key.is_none(),
            "an imported key pair came with a private key"
        );
        ensure!(
            !kp.fingerprint.is_empty(),
            "an imported key pair has no fingerprint"
        );
        if caps.delete {
            c.delete_key_pair(&name).await?;
        }
    }
    Ok(())
}

/// What the operations of the optional families answer when undeclared (see
/// [`unsupported`]): each is called once on ids the backend does not know.
async fn unsupported_more(ctx: &Ctx<'_>, op: Operation) -> Option<ErrorKind> {
    let c = ctx.cloud;
    let page = PageRequest::default();
    let instance = &ctx.config.unknown_instance_id;
    let volume = ctx.config.unknown_volume_id.clone();
    let snapshot = ctx.config.unknown_snapshot_id.clone();
    let group = ctx.config.unknown_security_group_id.clone();
    let address = ctx.config.unknown_address_id.clone();
    let rule = [SecurityRule::tcp_in(22, 22, "0.0.0.0/0")];
    let name = format!("kit-{}-unsupported", ctx.run);
    let kind = |r: std::result::Result<(), Error>| r.err().map(|e| e.kind());
    match op {
        Operation::ListVolumes => kind(
            c.list_volumes(&VolumeFilter::default(), &page)
                .await
                .map(drop),
        ),
        Operation::GetVolume => kind(c.get_volume(&volume).await.map(drop)),
        Operation::CreateVolume => kind(
            c.create_volume(&VolumeSpec::new(1).name(&name))
                .await
                .map(drop),
        ),
        Operation::DeleteVolume => kind(c.delete_volume(&volume).await),
        Operation::AttachVolume => kind(c.attach_volume(&volume, instance, None).await.map(drop)),
        Operation::DetachVolume => kind(c.detach_volume(&volume).await.map(drop)),
        Operation::ListSnapshots => kind(
            c.list_snapshots(&SnapshotFilter::default(), &page)
                .await
                .map(drop),
        ),
        Operation::GetSnapshot => kind(c.get_snapshot(&snapshot).await.map(drop)),
        Operation::CreateSnapshot => kind(
            c.create_snapshot(&SnapshotSpec::new(volume.clone()).name(&name))
                .await
                .map(drop),
        ),
        Operation::DeleteSnapshot => kind(c.delete_snapshot(&snapshot).await),
        Operation::CreateImage => kind(
            c.create_image(&ImageSpec::new(instance.clone(), &name))
                .await
                .map(drop),
        ),
        Operation::DeleteImage => kind(c.delete_image(&ctx.config.unknown_image_id).await),
        Operation::ListSecurityGroups => kind(
            c.list_security_groups(&SecurityGroupFilter::default(), &page)
                .await
                .map(drop),
        ),
        Operation::GetSecurityGroup => kind(c.get_security_group(&group).await.map(drop)),
        Operation::CreateSecurityGroup => kind(
            c.create_security_group(&SecurityGroupSpec::new(&name, "kit"))
                .await
                .map(drop),
        ),
        Operation::DeleteSecurityGroup => kind(c.delete_security_group(&group).await),
        Operation::AddSecurityRules => kind(c.add_security_rules(&group, &rule).await.map(drop)),
        Operation::RemoveSecurityRules => {
            kind(c.remove_security_rules(&group, &rule).await.map(drop))
        }
        Operation::ListAddresses => kind(
            c.list_addresses(&AddressFilter::default(), &page)
                .await
                .map(drop),
        ),
        Operation::GetAddress => kind(c.get_address(&address).await.map(drop)),
        Operation::AllocateAddress => {
            kind(c.allocate_address(&AddressSpec::default()).await.map(drop))
        }
        Operation::ReleaseAddress => kind(c.release_address(&address).await),
        Operation::AssociateAddress => kind(
            c.associate_address(&address, instance, None)
                .await
                .map(drop),
        ),
        Operation::DisassociateAddress => kind(c.disassociate_address(&address).await.map(drop)),
        other => unreachable!("{other} is one of the core's, checked by `unsupported`"),
    }
}

async fn unsupported(ctx: &Ctx<'_>) -> Check {
    let caps = *ctx.caps();
    let c = ctx.cloud;
    let missing: Vec<Operation> = Operation::ALL
        .into_iter()
        .filter(|op| !caps.supports(*op))
        .collect();
    if missing.is_empty() {
        return skip("every operation is declared");
    }
    let id = &ctx.config.unknown_instance_id;
    let page = PageRequest::default();
    for op in missing {
        let kind = |r: std::result::Result<(), Error>| r.err().map(|e| e.kind());
        let got = match op {
            Operation::ListInstances => kind(
                c.list_instances(&InstanceFilter::default(), &page)
                    .await
                    .map(drop),
            ),
            Operation::GetInstance => kind(c.get_instance(id).await.map(drop)),
            Operation::CreateInstance => {
                kind(c.create_instance(&ctx.spec("unsupported")).await.map(drop))
            }
            Operation::StartInstance => kind(c.start_instance(id).await.map(drop)),
            Operation::StopInstance => kind(c.stop_instance(id).await.map(drop)),
            Operation::RebootInstance => kind(c.reboot_instance(id).await.map(drop)),
            Operation::DeleteInstance => kind(c.delete_instance(id).await.map(drop)),
            Operation::UpdateInstanceTags => kind(
                c.update_instance_tags(id, &TagChanges::new().set_tag("kit", "unsupported"))
                    .await
                    .map(drop),
            ),
            Operation::GetConsoleOutput => kind(c.console_output(id).await.map(drop)),
            Operation::ListImages => kind(
                c.list_images(&ImageFilter::default(), &page)
                    .await
                    .map(drop),
            ),
            Operation::GetImage => kind(c.get_image(&ctx.config.unknown_image_id).await.map(drop)),
            Operation::ListFlavors => kind(c.list_flavors(&page).await.map(drop)),
            Operation::ListNetworks => kind(c.list_networks(&page).await.map(drop)),
            Operation::GetNetwork => kind(
                c.get_network(&ctx.config.unknown_network_id)
                    .await
                    .map(drop),
            ),
            Operation::CreateNetwork => kind(
                c.create_network(&NetworkSpec {
                    name: format!("kit-{}-unsupported", ctx.run),
                    cidr: ctx.config.network_cidr.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            Operation::DeleteNetwork => {
                kind(c.delete_network(&ctx.config.unknown_network_id).await)
            }
            Operation::ListLocations => kind(c.list_locations().await.map(drop)),
            Operation::ListKeyPairs => kind(c.list_key_pairs().await.map(drop)),
            Operation::CreateKeyPair => kind(
                c.create_key_pair(&KeyPairSpec {
                    name: format!("kit-{}-unsupported", ctx.run),
                    public_key: None,
                })
                .await
                .map(drop),
            ),
            Operation::ImportKeyPair => kind(
                c.create_key_pair(&KeyPairSpec {
                    name: format!("kit-{}-unsupported", ctx.run),
                    public_key: Some(IMPORT_KEY.into()),
                })
                .await
                .map(drop),
            ),
            Operation::DeleteKeyPair => kind(
                c.delete_key_pair(&format!("kit-{}-unsupported", ctx.run))
                    .await,
            ),
            other => unsupported_more(ctx, other).await,
        };
        ensure!(
            got == Some(ErrorKind::Unsupported),
            "{op} is not declared, but answered {got:?} instead of unsupported"
        );
    }
    Ok(())
}
