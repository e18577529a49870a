//! The Worker runtime: runs WebAssembly components on wasmtime and answers HTTP with them.
//!
//! Owns the engine, the on-disk component cache and the set of installed workers. Guarantees:
//! a worker's component is compiled once per node (then mapped from the cache); every request
//! runs with the worker's CPU, memory, wall-time and body limits; a trap, a limit hit or a
//! missing response ends that request alone with a clear error, and the instance involved
//! never serves again; swapping a worker's version never interrupts requests in flight (they
//! finish on the version they started with).
//!
//! Built after the stores it binds ([`Stores`]), with the [`Workers`] table that Durable
//! Objects were given before it (the table runs their classes, see `durable_class`).
//! Must never: serve HTTP itself (the node's edge does), or reach a store other than through
//! [`Stores`].
//!
//! # Layout
//! - `engine`: engine configuration (pooling allocator, copy-on-write images, epochs), and
//!   the compiler, which compiles with an engine of its own.
//! - `cache`: components by content hash, source and compiled; compiled functions (for the
//!   next deployment from the same toolchain) in `components/functions`.
//! - [`bindings`]: what a guest can reach, one file per binding (WASI without files, env or
//!   sockets; outbound HTTP by allow-list; `kv`, `d1`, `durable-objects`, `storage`,
//!   `websocket`, `console`, `r2`, `queue`).
//! - `durable_class`: Durable Object classes as [`nimbus_durable`] runs them.
//! - `events`: queue batches and cron ticks as [`nimbus_queues`] runs them.
//! - `limits`: CPU budget and memory guard.
//! - `pool`: warm instances per worker.
//! - `routes`: which worker answers a host and path.

pub mod bindings;
mod cache;
mod durable_class;
mod engine;
mod error;
mod events;
mod limits;
mod pool;
mod routes;

pub use bindings::{ResponseBody, Stores};
pub use cache::content_hash;
pub use error::RuntimeError;
pub use routes::RouteTable;

use bindings::{Declared, Host};
use cache::ComponentCache;
use http_body_util::BodyExt;
use nimbus_proto::manifest::{Isolation, WorkerManifest};
use nimbus_util::config::{NodeConfig, RuntimeConfig};
use nimbus_util::metrics::{Metrics, WorkerMetrics};
use nimbus_wasm::FunctionCache;
use pool::{Instance, Pool};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::WasiHttpView;

/// What the node needs to run one version of a worker; persisted by `deploy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub name: String,
    pub version: u64,
    pub component_hash: String,
    pub manifest: WorkerManifest,
}

/// The most compiled functions a node keeps on disk for later deployments (about 25 JavaScript
/// engines' worth).
const FUNCTION_CACHE_BYTES: u64 = 256 << 20;

pub struct Runtime {
    /// Runs every worker; never compiles (see [`engine`]).
    engine: Engine,
    compiler: engine::Compiler,
    /// WASI, wasi:http and the Nimbus bindings; shared by every worker.
    linker: Linker<Host>,
    cache: ComponentCache,
    config: RuntimeConfig,
    host_suffix: String,
    metrics: Arc<Metrics>,
    /// The node's services, handed to every instance for its bindings.
    stores: Stores,
    workers: Workers,
    outbound_guard: Arc<nimbus_wasm::AddressGuard>,
}

/// The workers installed on this node and their routes. Made before Durable Objects (which
/// run their classes through it) and filled by the [`Runtime`] built after them.
#[derive(Clone)]
pub struct Workers {
    /// Replaced whole on every change, so a request reads one consistent snapshot without
    /// holding a lock while it runs.
    installed: Arc<RwLock<Arc<Installed>>>,
}

struct Installed {
    workers: HashMap<String, Arc<Worker>>,
    routes: RouteTable,
}

impl Workers {
    pub fn new(host_suffix: &str) -> Self {
        Workers {
            installed: Arc::new(RwLock::new(Arc::new(Installed {
                workers: HashMap::new(),
                routes: RouteTable::build(host_suffix, []),
            }))),
        }
    }

    fn snapshot(&self) -> Arc<Installed> {
        match self.installed.read() {
            Ok(installed) => installed.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn get(&self, name: &str) -> Option<Arc<Worker>> {
        self.snapshot().workers.get(name).cloned()
    }
}

/// Limits in force for one worker: the node's defaults overridden by its manifest.
#[derive(Debug, Clone)]
struct Limits {
    cpu: Duration,
    memory_bytes: usize,
    wall: Duration,
    max_request_body: u64,
    max_response_body: u64,
}

/// One installed version of a worker.
pub struct Worker {
    pub spec: WorkerSpec,
    name: Arc<str>,
    declared: Declared,
    pre: ProxyPre<Host>,
    pool: Pool,
    /// Requests in flight; at `runtime.max_concurrent_per_worker` the next one is a 503, so
    /// one worker's slow clients cannot hold every instance slot of the node.
    concurrency: Arc<tokio::sync::Semaphore>,
    concurrency_limit: usize,
    /// Which addresses outbound fetch may reach (the node's, shared by every worker).
    outbound_guard: Arc<nimbus_wasm::AddressGuard>,
    limits: Limits,
    pool_config: nimbus_util::config::PoolConfig,
    metrics: WorkerMetrics,
    stores: Stores,
    /// The Durable Object handlers, when the manifest binds classes of this worker.
    durable_pre: Option<bindings::DurableClassPre<Host>>,
    /// For events other than HTTP requests (queue batches, cron ticks): each runs on a fresh
    /// instance of the component, with the handler found by `events`.
    instance_pre: wasmtime::component::InstancePre<Host>,
    events: events::Handlers,
}

impl Runtime {
    pub fn new(
        config: &NodeConfig,
        metrics: Arc<Metrics>,
        workers: Workers,
        stores: Stores,
    ) -> Result<Self, RuntimeError> {
        let components = config.data_dir.join("components");
        let functions =
            FunctionCache::in_dir(components.join("functions"), FUNCTION_CACHE_BYTES).map_err(|source| {
                RuntimeError::Io { context: format!("opening {}/functions", components.display()), source }
            })?;
        let (engine, compiler) = engine::build(&config.runtime, Arc::new(functions))?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| RuntimeError::Internal(format!("building the linker: {e}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        bindings::add_to_linker(&mut linker).map_err(link)?;
        let outbound_guard = nimbus_wasm::AddressGuard::new(&config.runtime.outbound_private_allowed)
            .map_err(|e| RuntimeError::Internal(format!("runtime.outbound_private_allowed: {e}")))?;
        Ok(Runtime {
            outbound_guard: Arc::new(outbound_guard),
            cache: ComponentCache::open(components)?,
            engine,
            compiler,
            linker,
            config: config.runtime.clone(),
            host_suffix: config.http.worker_host_suffix.clone(),
            metrics,
            stores,
            workers,
        })
    }

    pub fn has_component(&self, hash: &str) -> bool {
        self.cache.has_source(hash)
    }

    pub fn store_component(&self, hash: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
        self.cache.store_source(hash, bytes)
    }

    /// Compiles (or maps from cache) and links a worker without installing it.
    pub async fn prepare(self: &Arc<Self>, spec: WorkerSpec) -> Result<Arc<Worker>, RuntimeError> {
        let runtime = self.clone();
        tokio::task::spawn_blocking(move || runtime.prepare_blocking(spec))
            .await
            .map_err(|e| RuntimeError::Internal(format!("compile task failed: {e}")))?
    }

    fn prepare_blocking(&self, spec: WorkerSpec) -> Result<Arc<Worker>, RuntimeError> {
        let component = self.cache.load(&self.engine, &self.compiler, &spec.component_hash)?;
        let link_error =
            |e: wasmtime::Error| RuntimeError::Link { worker: spec.name.clone(), message: format!("{e:#}") };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(link_error)?;
        let pre = ProxyPre::new(instance_pre.clone()).map_err(link_error)?;
        let classes = spec.manifest.durable_object_classes();
        let durable_pre = if classes.is_empty() {
            None
        } else {
            Some(bindings::DurableClassPre::new(instance_pre.clone()).map_err(|e| RuntimeError::Link {
                worker: spec.name.clone(),
                message: format!(
                    "it binds Durable Object class(es) {} but its component does not export nimbus:worker/durable-object ({e:#})",
                    classes.join(", ")
                ),
            })?)
        };
        let events = events::Handlers::find(&instance_pre);
        let m = &spec.manifest.limits;
        let d = &self.config;
        let limits = Limits {
            cpu: Duration::from_millis(m.cpu_ms.unwrap_or(d.cpu_ms)),
            memory_bytes: usize::try_from(m.memory_mb.unwrap_or(d.memory_mb) << 20).unwrap_or(usize::MAX),
            wall: Duration::from_millis(d.wall_ms),
            max_request_body: m.max_request_body.unwrap_or(d.max_request_body),
            max_response_body: m.max_response_body.unwrap_or(d.max_response_body),
        };
        let max_idle = if spec.manifest.isolation == Isolation::Request { 0 } else { d.pool.max_idle };
        let name: Arc<str> = spec.name.as_str().into();
        Ok(Arc::new(Worker {
            declared: Declared::new(name.clone(), spec.manifest.bindings.clone().into()),
            name,
            metrics: self.metrics.worker(&spec.name),
            spec,
            pre,
            pool: Pool::new(max_idle),
            concurrency: Arc::new(tokio::sync::Semaphore::new(d.max_concurrent_per_worker.max(1))),
            concurrency_limit: d.max_concurrent_per_worker.max(1),
            outbound_guard: self.outbound_guard.clone(),
            limits,
            pool_config: d.pool.clone(),
            stores: self.stores.clone(),
            durable_pre,
            instance_pre,
            events,
        }))
    }

    /// Makes `worker` the version that answers its name and routes, after declaring the KV
    /// namespaces its bindings name and creating the D1 databases and R2 buckets they name
    /// when missing (a deployment is one of the ways to create one). The queues it names are
    /// created by Queues' dispatcher (and by a send that finds one missing).
    pub fn install(&self, worker: Arc<Worker>) {
        let Stores { kv, d1, r2, .. } = &self.stores;
        for binding in &worker.spec.manifest.bindings {
            match binding {
                nimbus_proto::manifest::Binding::Kv { namespace_id, .. } => {
                    if let Err(e) = kv.declare_namespace(namespace_id, None) {
                        tracing::warn!(worker = %worker.spec.name, namespace = %namespace_id, "declaring a KV namespace: {e}");
                    }
                }
                nimbus_proto::manifest::Binding::D1 { database_name, .. } if !d1.has_database(database_name) => {
                    let (d1, name, worker) = (d1.clone(), database_name.clone(), worker.spec.name.clone());
                    tokio::spawn(async move {
                        if let Err(e) = d1.create(&name).await {
                            tracing::warn!(%worker, database = %name, "creating a D1 database: {e}");
                        }
                    });
                }
                nimbus_proto::manifest::Binding::R2 { bucket_name, .. }
                    if matches!(r2.metadata().bucket(bucket_name), Ok(None)) =>
                {
                    let (r2, name, worker) = (r2.clone(), bucket_name.clone(), worker.spec.name.clone());
                    tokio::spawn(async move {
                        match r2.create_bucket(&name).await {
                            Ok(()) | Err(nimbus_r2::R2Error::BucketAlreadyOwnedByYou(_)) => {}
                            Err(e) => tracing::warn!(%worker, bucket = %name, "creating an R2 bucket: {e}"),
                        }
                    });
                }
                _ => {}
            }
        }
        self.update(|workers| {
            workers.insert(worker.spec.name.clone(), worker);
        });
    }

    pub fn remove(&self, name: &str) {
        self.update(|workers| {
            workers.remove(name);
        });
    }

    fn update(&self, change: impl FnOnce(&mut HashMap<String, Arc<Worker>>)) {
        let Ok(mut installed) = self.workers.installed.write() else {
            tracing::error!("worker table lock poisoned");
            return;
        };
        let mut workers = installed.workers.clone();
        change(&mut workers);
        let routes = RouteTable::build(
            &self.host_suffix,
            workers.values().map(|w| (w.spec.name.as_str(), w.spec.manifest.routes.as_slice())),
        );
        self.metrics.workers.set(i64::try_from(workers.len()).unwrap_or(i64::MAX));
        *installed = Arc::new(Installed { workers, routes });
    }

    /// The worker that answers `host` + `path`, if any.
    pub fn route(&self, host: &str, path: &str) -> Option<Arc<Worker>> {
        let installed = self.workers.snapshot();
        let name = installed.routes.lookup(host, path)?;
        installed.workers.get(name).cloned()
    }

    pub fn claims_host(&self, host: &str) -> bool {
        self.workers.snapshot().routes.claims_host(host)
    }

    pub fn workers(&self) -> Vec<WorkerSpec> {
        let mut specs: Vec<WorkerSpec> = self.workers.snapshot().workers.values().map(|w| w.spec.clone()).collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    pub fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.workers.get(name)
    }

    /// Reaps idle instances until `shutdown`: those idle past `runtime.pool.idle_timeout_ms`,
    /// then the longest idle of any worker while all idle instances hold more linear memory
    /// than `runtime.idle_memory_mb`. Freed heap goes back to the OS.
    pub async fn reap_idle(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let idle_timeout = Duration::from_millis(self.config.pool.idle_timeout_ms.max(1));
        let every = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let dropped = self.reap_once(idle_timeout);
            if dropped > 0 {
                tracing::debug!(dropped, "idle instances reaped");
                release_free_heap();
            }
        }
    }

    /// One pass of [`Runtime::reap_idle`]; how many instances it dropped.
    pub fn reap_once(&self, idle_timeout: Duration) -> usize {
        let workers: Vec<Arc<Worker>> = self.workers.snapshot().workers.values().cloned().collect();
        let mut dropped: usize = workers.iter().map(|w| w.pool.reap(idle_timeout)).sum();
        let budget = usize::try_from(self.config.idle_memory_mb << 20).unwrap_or(usize::MAX);
        let mut held: usize = workers.iter().map(|w| w.pool.idle_memory().0).sum();
        while held > budget {
            let oldest = workers
                .iter()
                .filter_map(|w| w.pool.idle_memory().1.map(|since| (since, w)))
                .min_by_key(|(since, _)| *since);
            let Some((_, worker)) = oldest else { break };
            held = held.saturating_sub(worker.pool.drop_oldest());
            dropped += 1;
        }
        dropped
    }
}

/// Hands the allocator's free pages back to the OS (glibc keeps them after a burst of
/// requests; the node's resident memory would stay at its peak).
#[allow(unsafe_code)]
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A request body the edge hands to a worker (axum's, hyper's, or a test's).
pub trait RequestBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> RequestBody for B where
    B: http_body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

type IncomingBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, wasmtime_wasi_http::Error>;

impl Worker {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn idle_instances(&self) -> usize {
        self.pool.idle()
    }

    /// A store for one instance of this worker, with its limits and bindings.
    fn new_store(&self, object: Option<nimbus_durable::ObjectContext>) -> Store<Host> {
        let host = Host::new(
            self.declared.clone(),
            self.spec.manifest.allowed_outbound_hosts.clone().into(),
            self.outbound_guard.clone(),
            self.limits.memory_bytes,
            self.stores.clone(),
            object,
        );
        let mut store = Store::new(self.pre.engine(), host);
        store.limiter(|host| &mut host.memory);
        store.epoch_deadline_callback(|mut ctx| {
            if ctx.data_mut().cpu.charge() {
                Ok(UpdateDeadline::Yield(1))
            } else {
                Ok(UpdateDeadline::Interrupt)
            }
        });
        // Instantiation runs start functions: give it the request's budget too.
        store.data_mut().cpu.reset(self.limits.cpu);
        store.set_epoch_deadline(1);
        store
    }

    async fn instantiate(&self) -> Result<Instance, RuntimeError> {
        let started = Instant::now();
        let mut store = self.new_store(None);
        let proxy = self.pre.instantiate_async(&mut store).await.map_err(|e| {
            let message = format!("{e:#}");
            if message.contains("maximum concurrent") || message.contains("pooling") {
                RuntimeError::Overloaded
            } else {
                self.classify(&store, e)
            }
        })?;
        self.metrics.instantiation.observe(started.elapsed().as_secs_f64());
        Ok(Instance { store, proxy, served: 0, born: Instant::now() })
    }

    /// Serves one request; the response head is returned as soon as the guest sets it, while
    /// the body keeps streaming from the guest.
    pub async fn handle<B: RequestBody>(
        self: &Arc<Self>,
        req: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, RuntimeError> {
        let started = Instant::now();
        let result = self.dispatch(req).await;
        if let Err(e) = &result {
            self.metrics.failure(e.kind());
        }
        self.metrics.latency.observe(started.elapsed().as_secs_f64());
        result
    }

    /// Counts the status the edge finally sent for this worker (errors included).
    pub fn record_status(&self, status: u16) {
        self.metrics.response(status);
    }

    async fn dispatch<B: RequestBody>(
        self: &Arc<Self>,
        req: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, RuntimeError> {
        let limit = self.limits.max_request_body;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(RuntimeError::RequestTooLarge { limit });
        }
        let req = req.map(|body| -> IncomingBody {
            http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                .map_err(move |e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit))
                    } else {
                        wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
                    }
                })
                .boxed_unsync()
        });

        let permit = self
            .concurrency
            .clone()
            .try_acquire_owned()
            .map_err(|_| RuntimeError::WorkerBusy { worker: self.name.to_string(), limit: self.concurrency_limit })?;
        let mut instance = match self.pool.take() {
            Some(instance) => instance,
            None => self.instantiate().await?,
        };
        instance.store.data_mut().cpu.reset(self.limits.cpu);
        instance.store.data_mut().memory.hit = false;
        instance.store.set_epoch_deadline(1);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let internal = |e: wasmtime::Error| RuntimeError::Internal(format!("{e:#}"));
        let request = instance.store.data_mut().http().new_incoming_request(Scheme::Http, req).map_err(internal)?;
        let out = instance.store.data_mut().http().new_response_outparam(sender).map_err(internal)?;

        let worker = self.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let Instance { store, proxy, .. } = &mut instance;
            let call = proxy.wasi_http_incoming_handler().call_handle(&mut *store, request, out);
            let outcome = match tokio::time::timeout(worker.limits.wall, call).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(worker.classify(store, e)),
                Err(_) => Err(RuntimeError::WallTimeout {
                    worker: worker.name.to_string(),
                    limit_ms: worker.limits.wall.as_millis() as u64,
                }),
            };
            store.data_mut().release_r2_bodies();
            match &outcome {
                Ok(()) => {
                    instance.served += 1;
                    if worker.keeps(&instance) {
                        worker.pool.put(instance);
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %worker.name, error = %e, "request ended by the runtime; instance retired")
                }
            }
            outcome
        });

        match receiver.await {
            Ok(Ok(response)) => self.bound_response(response),
            Ok(Err(code)) => Err(RuntimeError::BadResponse { worker: self.name.to_string(), code }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(RuntimeError::NoResponse { worker: self.name.to_string() }),
                Err(e) => Err(RuntimeError::Internal(format!("request task failed: {e}"))),
            },
        }
    }

    /// Names what ended a guest call: a limit if one was hit, otherwise the trap itself.
    fn classify(&self, store: &Store<Host>, error: wasmtime::Error) -> RuntimeError {
        let host = store.data();
        if host.cpu.exceeded {
            RuntimeError::CpuLimit { worker: self.name.to_string(), limit_ms: self.limits.cpu.as_millis() as u64 }
        } else if host.memory.hit {
            RuntimeError::MemoryLimit {
                worker: self.name.to_string(),
                limit_mb: (self.limits.memory_bytes >> 20) as u64,
            }
        } else {
            let message = match error.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{error:#}"),
            };
            RuntimeError::Trap { worker: self.name.to_string(), message }
        }
    }

    /// Whether a cleanly finished instance may serve another request. One that hit its memory
    /// bound is retired even when the guest survived the refused growth (QuickJS turns it into
    /// a JS `out of memory` error): its heap may be in any state.
    fn keeps(&self, instance: &Instance) -> bool {
        let pool = &self.pool_config;
        !instance.store.data().memory.hit
            && instance.served < pool.max_requests
            && instance.born.elapsed() < Duration::from_secs(pool.max_age_secs)
            && (instance.store.data().memory.current as u64) <= pool.retire_memory_mb << 20
    }

    /// Refuses a response that declares a body over the worker's limit, and cuts one that
    /// streams past it.
    fn bound_response(
        &self,
        response: http::Response<ResponseBody>,
    ) -> Result<http::Response<ResponseBody>, RuntimeError> {
        let limit = self.limits.max_response_body;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(RuntimeError::ResponseTooLarge { worker: self.name.to_string(), limit });
        }
        let worker = self.name.clone();
        Ok(response.map(move |body| LimitedBody { inner: body, remaining: limit, limit, worker }.boxed_unsync()))
    }
}

/// A response body that fails once more than `limit` bytes have passed.
struct LimitedBody {
    inner: ResponseBody,
    remaining: u64,
    limit: u64,
    worker: Arc<str>,
}

impl http_body::Body for LimitedBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if len > self.remaining {
                    tracing::warn!(worker = %self.worker, limit = self.limit, "response body over the limit; stream cut");
                    return std::task::Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseBodySize(Some(
                        self.limit,
                    )))));
                }
                self.remaining -= len;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
