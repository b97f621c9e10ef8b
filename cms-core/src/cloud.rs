//! The handle users hold: a layered driver plus conveniences.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::time::Instant;

use crate::layers::*;
use crate::model::*;
use crate::{Driver, Error, ErrorKind, Result};

/// A clonable handle on a provider: a driver wrapped in layers.
///
/// It dereferences to [`Driver`], so every driver operation is a method of the handle,
/// and adds what is convenient to users but has no place in the trait: waiting for a
/// state, creating and waiting, listing every page.
#[derive(Clone)]
pub struct Cloud {
    driver: Arc<dyn Driver>,
    provider: Arc<str>,
    metrics: Option<Arc<DriverMetrics>>,
}

impl fmt::Debug for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloud")
            .field("provider", &self.provider)
            .field("driver", &self.driver.name())
            .finish()
    }
}

impl Deref for Cloud {
    type Target = dyn Driver;

    fn deref(&self) -> &Self::Target {
        self.driver.as_ref()
    }
}

impl Cloud {
    /// A handle on `driver` with only the context layer (errors name the provider,
    /// here the driver's name).
    pub fn new(driver: impl Driver) -> Cloud {
        Cloud::builder(driver).build()
    }

    /// Starts a handle on `driver`; choose layers, then [`build`](CloudBuilder::build).
    pub fn builder(driver: impl Driver) -> CloudBuilder {
        CloudBuilder::new(Arc::new(driver))
    }

    /// The provider name errors carry.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The layered driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The metrics layer's counters, when the handle has one.
    pub fn metrics(&self) -> Option<&Arc<DriverMetrics>> {
        self.metrics.as_ref()
    }

    /// Polls the instance until it is in `state`, with growing pauses (50 ms up to 2 s).
    ///
    /// Fails with `Timeout` (naming the last state seen) when `timeout` passes first,
    /// and with `InvalidState` when the instance reaches a state it cannot leave on its
    /// own towards `state` (error, terminated, or stopped while waiting for running).
    pub async fn wait_for_state(
        &self,
        id: &InstanceId,
        state: InstanceState,
        timeout: Duration,
    ) -> Result<Instance> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let instance = self.get_instance(id).await?;
            if instance.state == state {
                return Ok(instance);
            }
            if is_dead_end(instance.state, state) {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    format!(
                        "instance `{id}` is {} ({}) and will not become {state} by itself",
                        instance.state, instance.raw_state
                    ),
                )
                .with_resource(format!("instance {id}"))
                .with_provider(self.provider.to_string()));
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "instance `{id}` still {} ({}) after {timeout:?}, waiting for {state}",
                        instance.state, instance.raw_state
                    ),
                )
                .with_resource(format!("instance {id}"))
                .with_provider(self.provider.to_string()));
            }
            tokio::time::sleep(pause.min(timeout - elapsed)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Creates an instance and waits until it runs.
    pub async fn create_and_wait(
        &self,
        spec: &InstanceSpec,
        timeout: Duration,
    ) -> Result<Instance> {
        let started = Instant::now();
        let created = self.create_instance(spec).await?;
        if created.state == InstanceState::Running {
            return Ok(created);
        }
        let left = timeout.saturating_sub(started.elapsed());
        self.wait_for_state(&created.id, InstanceState::Running, left)
            .await
    }

    /// Every instance matching `filter`, page after page, as a stream.
    pub fn list_all_instances(
        &self,
        filter: InstanceFilter,
    ) -> BoxStream<'static, Result<Instance>> {
        let cloud = self.clone();
        all_pages(move |page| {
            let cloud = cloud.clone();
            let filter = filter.clone();
            async move { cloud.list_instances(&filter, &page).await }
        })
    }

    /// Every instance matching `filter`, collected.
    pub async fn collect_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>> {
        self.list_all_instances(filter.clone()).try_collect().await
    }

    /// Every image, collected.
    pub async fn collect_images(&self) -> Result<Vec<Image>> {
        self.collect_images_matching(&ImageFilter::default()).await
    }

    /// Every image matching `filter`, collected.
    pub async fn collect_images_matching(&self, filter: &ImageFilter) -> Result<Vec<Image>> {
        self.collect_filtered(filter, |c, f, p| async move { c.list_images(&f, &p).await })
            .await
    }

    /// Every volume matching `filter`, collected.
    pub async fn collect_volumes(&self, filter: &VolumeFilter) -> Result<Vec<Volume>> {
        self.collect_filtered(
            filter,
            |c, f, p| async move { c.list_volumes(&f, &p).await },
        )
        .await
    }

    /// Every snapshot matching `filter`, collected.
    pub async fn collect_snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<Snapshot>> {
        self.collect_filtered(
            filter,
            |c, f, p| async move { c.list_snapshots(&f, &p).await },
        )
        .await
    }

    /// Every security group matching `filter`, collected.
    pub async fn collect_security_groups(
        &self,
        filter: &SecurityGroupFilter,
    ) -> Result<Vec<SecurityGroup>> {
        self.collect_filtered(filter, |c, f, p| async move {
            c.list_security_groups(&f, &p).await
        })
        .await
    }

    /// Every address matching `filter`, collected.
    pub async fn collect_addresses(&self, filter: &AddressFilter) -> Result<Vec<Address>> {
        self.collect_filtered(
            filter,
            |c, f, p| async move { c.list_addresses(&f, &p).await },
        )
        .await
    }

    /// Polls the volume until it is in `state` (as [`wait_for_state`](Cloud::wait_for_state)
    /// polls instances); `InvalidState` when it reaches `error` or `deleted` first.
    pub async fn wait_for_volume_state(
        &self,
        id: &VolumeId,
        state: VolumeState,
        timeout: Duration,
    ) -> Result<Volume> {
        let what = format!("volume `{id}`");
        self.poll(&what, state.as_str(), timeout, || async {
            let v = self.get_volume(id).await?;
            let dead =
                v.state != state && matches!(v.state, VolumeState::Error | VolumeState::Deleted);
            let raw = v.raw_state.clone();
            Ok(Polled::of(v.state == state, dead, v.state.as_str(), raw, v))
        })
        .await
    }

    /// Polls the snapshot until it is `completed`; `InvalidState` when it fails.
    pub async fn wait_for_snapshot(&self, id: &SnapshotId, timeout: Duration) -> Result<Snapshot> {
        let what = format!("snapshot `{id}`");
        self.poll(&what, "completed", timeout, || async {
            let s = self.get_snapshot(id).await?;
            let done = s.state == SnapshotState::Completed;
            let dead = s.state == SnapshotState::Error;
            let raw = s.raw_state.clone();
            Ok(Polled::of(done, dead, s.state.as_str(), raw, s))
        })
        .await
    }

    /// Polls the image until it is `available`; `InvalidState` when it fails.
    pub async fn wait_for_image(&self, id: &ImageId, timeout: Duration) -> Result<Image> {
        let what = format!("image `{id}`");
        self.poll(&what, "available", timeout, || async {
            let i = self.get_image(id).await?;
            let done = i.state == ImageState::Available;
            let dead = matches!(i.state, ImageState::Error | ImageState::Deleted);
            let raw = i.raw_state.clone();
            Ok(Polled::of(done, dead, i.state.as_str(), raw, i))
        })
        .await
    }

    /// Calls `get` with growing pauses (50 ms up to 2 s) until it is done, at a dead
    /// end (`InvalidState`), or `timeout` passed (`Timeout`).
    async fn poll<T, F, Fut>(
        &self,
        what: &str,
        wanted: &str,
        timeout: Duration,
        get: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Polled<T>>>,
    {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let p = get().await?;
            if p.done {
                return Ok(p.value);
            }
            if p.dead {
                return Err(Error::new(
                    ErrorKind::InvalidState,
                    format!(
                        "{what} is {} ({}) and will not become {wanted} by itself",
                        p.state, p.raw_state
                    ),
                )
                .with_resource(what.replace('`', ""))
                .with_provider(self.provider.to_string()));
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} still {} ({}) after {timeout:?}, waiting for {wanted}",
                        p.state, p.raw_state
                    ),
                )
                .with_resource(what.replace('`', ""))
                .with_provider(self.provider.to_string()));
            }
            tokio::time::sleep(pause.min(timeout - elapsed)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Every flavor, collected.
    pub async fn collect_flavors(&self) -> Result<Vec<Flavor>> {
        self.collect_pages(|c, p| async move { c.list_flavors(&p).await })
            .await
    }

    /// Every network, collected.
    pub async fn collect_networks(&self) -> Result<Vec<Network>> {
        self.collect_pages(|c, p| async move { c.list_networks(&p).await })
            .await
    }

    /// Every page of a listing by `filter`, collected.
    async fn collect_filtered<Fl, T, F, Fut>(&self, filter: &Fl, list: F) -> Result<Vec<T>>
    where
        Fl: Clone + Send + Sync + 'static,
        T: Send + 'static,
        F: Fn(Cloud, Fl, PageRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Page<T>>> + Send + 'static,
    {
        let filter = filter.clone();
        self.collect_pages(move |c, p| list(c, filter.clone(), p))
            .await
    }

    async fn collect_pages<T, F, Fut>(&self, fetch: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(Cloud, PageRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Page<T>>> + Send + 'static,
    {
        let cloud = self.clone();
        all_pages(move |page| fetch(cloud.clone(), page))
            .try_collect()
            .await
    }
}

/// One look at a resource being waited for.
struct Polled<T> {
    done: bool,
    dead: bool,
    state: &'static str,
    raw_state: String,
    value: T,
}

impl<T> Polled<T> {
    fn of(done: bool, dead: bool, state: &'static str, raw_state: String, value: T) -> Self {
        Polled {
            done,
            dead,
            state,
            raw_state,
            value,
        }
    }
}

fn is_dead_end(now: InstanceState, wanted: InstanceState) -> bool {
    use InstanceState::*;
    match now {
        Error | Terminated => true,
        Terminating => wanted != Terminated,
        Stopped | Suspended => matches!(wanted, Running | Rebooting),
        _ => false,
    }
}

/// Streams every item of a paginated listing, fetching the next page when the previous
/// one is consumed. A token repeated by a driver ends the stream with an error rather
/// than looping.
pub fn all_pages<T, F, Fut>(fetch: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: Fn(PageRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Page<T>>> + Send + 'static,
{
    enum State {
        Start,
        Next(PageToken),
        Done,
    }
    let fetch = Arc::new(fetch);
    stream::unfold(State::Start, move |state| {
        let fetch = fetch.clone();
        async move {
            let (request, previous) = match state {
                State::Start => (PageRequest::default(), None),
                State::Next(t) => (PageRequest::after(None, t.clone()), Some(t)),
                State::Done => return None,
            };
            match fetch(request).await {
                Ok(page) => {
                    let next = match page.next {
                        Some(t) if Some(&t) == previous.as_ref() => {
                            let e = Error::new(
                                ErrorKind::Backend,
                                format!("the backend returned page token `{t}` twice"),
                            );
                            return Some((stream::iter(vec![Err(e)]), State::Done));
                        }
                        Some(t) => State::Next(t),
                        None => State::Done,
                    };
                    let items: Vec<Result<T>> = page.items.into_iter().map(Ok).collect();
                    Some((stream::iter(items), next))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), State::Done)),
            }
        }
    })
    .flatten()
    .boxed()
}

/// Chooses the layers of a [`Cloud`]. Each is optional; the order is fixed and right:
/// context, metrics, retry, timeout, limit, chaos, driver (outermost first).
pub struct CloudBuilder {
    driver: Arc<dyn Driver>,
    provider: Option<String>,
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
    limit: Option<usize>,
    metrics: bool,
    chaos: Option<ChaosLayer>,
}

impl CloudBuilder {
    /// Starts from an already shared driver.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        CloudBuilder {
            driver,
            provider: None,
            retry: None,
            timeout: None,
            limit: None,
            metrics: false,
            chaos: None,
        }
    }

    /// The provider name errors and metrics carry (default: the driver's name).
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.provider = Some(name.into());
        self
    }

    /// Retries temporary errors per `policy`.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Bounds each driver call (each try, under retry) to `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// At most `n` driver calls in flight.
    pub fn concurrency_limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Counts calls, errors and latency (see [`Cloud::metrics`]) and traces each call.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Injects faults per `config`, just above the driver.
    pub fn chaos(mut self, config: ChaosConfig) -> Self {
        self.chaos = Some(ChaosLayer::new(config));
        self
    }

    /// Injects faults with an existing layer (to read its [`ChaosStats`] afterwards).
    pub fn chaos_layer(mut self, layer: ChaosLayer) -> Self {
        self.chaos = Some(layer);
        self
    }

    /// Stacks the layers.
    pub fn build(self) -> Cloud {
        let provider = self
            .provider
            .unwrap_or_else(|| self.driver.name().to_owned());
        let mut d = self.driver;
        if let Some(chaos) = self.chaos {
            d = Arc::new(Layered::new(d, chaos));
        }
        if let Some(n) = self.limit {
            d = Arc::new(Layered::new(d, LimitLayer::new(n)));
        }
        if let Some(t) = self.timeout {
            d = Arc::new(Layered::new(d, TimeoutLayer::new(t)));
        }
        if let Some(p) = self.retry {
            d = Arc::new(Layered::new(d, RetryLayer::new(p)));
        }
        let metrics = self
            .metrics
            .then(|| Arc::new(DriverMetrics::new(provider.clone())));
        if let Some(m) = &metrics {
            d = Arc::new(Layered::new(d, MetricsLayer::new(m.clone())));
        }
        d = Arc::new(Layered::new(d, ContextLayer::new(provider.clone())));
        Cloud {
            driver: d,
            provider: provider.into(),
            metrics,
        }
    }
}
