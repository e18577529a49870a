//! What a guest can reach: the per-instance host state and the Nimbus bindings.
//!
//! A guest gets WASI with no preopened directories, no environment, no arguments and no
//! sockets; `wasi:http/outgoing-handler` only to the hosts its manifest allows; and the
//! `nimbus:worker` binding interfaces. A binding call names a binding; one the deployment did
//! not declare (or declared with another kind) gets `unknown-binding`, and a declared binding
//! whose subsystem this node does not run yet gets `unavailable`. No binding call traps.

use super::limits::{CpuBudget, MemoryGuard};
use crate::kv::{KvError, KvStore};
use nimbus_proto::manifest::Binding;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "nimbus:worker/durable-class",
    imports: { default: async },
    exports: { default: async },
});

use nimbus::worker::types::BindingError;

/// The `T` of every `Store<T>` that runs a worker.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundPolicy,
    pub(super) memory: MemoryGuard,
    pub(super) cpu: CpuBudget,
    /// The bindings the worker's deployment declared, by name.
    bindings: Arc<[Binding]>,
    worker: Arc<str>,
    /// The node's KV store; `None` where the node runs without one (unit tests).
    kv: Option<KvStore>,
    /// The node's D1 handle; `None` where the node runs without one (unit tests).
    pub(super) d1: Option<crate::d1::D1>,
    /// The node's Durable Objects service, for stubs; `None` in unit tests.
    pub(super) durable: Option<crate::durable::Durable>,
    /// The object this instance runs for, when it is an instance of a Durable Object class.
    pub(super) object: Option<crate::durable::ObjectContext>,
}

impl Host {
    pub fn new(
        worker: Arc<str>,
        bindings: Arc<[Binding]>,
        outbound: Arc<[String]>,
        memory_limit: usize,
        kv: Option<KvStore>,
        d1: Option<crate::d1::D1>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // Guest output goes to the node's stderr (the node's log stream), never to stdout,
        // which carries only the node's own readiness line.
        wasi.stdout(wasmtime_wasi::cli::stderr());
        wasi.inherit_stderr();
        wasi.allow_tcp(false);
        wasi.allow_udp(false);
        wasi.allow_ip_name_lookup(false);
        Host {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy { allowed: outbound },
            memory: MemoryGuard::new(memory_limit),
            cpu: CpuBudget::default(),
            bindings,
            worker,
            kv,
            d1,
            durable: None,
            object: None,
        }
    }

    /// The store and namespace behind a KV binding.
    fn kv_namespace(&self, name: &str) -> Result<(KvStore, String), BindingError> {
        let namespace = match self.binding(name, "kv")? {
            Binding::Kv { namespace_id, .. } => namespace_id.clone(),
            _ => return Err(BindingError::UnknownBinding(format!("binding `{name}` is not a KV binding"))),
        };
        match &self.kv {
            Some(store) => Ok((store.clone(), namespace)),
            None => self.unavailable(name, "kv"),
        }
    }

    pub(super) fn binding(&self, name: &str, kind: &'static str) -> Result<&Binding, BindingError> {
        match self.bindings.iter().find(|b| b.name() == name) {
            Some(b) if b.kind() == kind => Ok(b),
            Some(b) => Err(BindingError::UnknownBinding(format!(
                "binding `{name}` of worker `{}` is a {} binding, not {kind}",
                self.worker,
                b.kind()
            ))),
            None => {
                let declared: Vec<&str> =
                    self.bindings.iter().filter(|b| b.kind() == kind).map(Binding::name).collect();
                Err(BindingError::UnknownBinding(format!(
                    "worker `{}` has no {kind} binding named `{name}` (declared: {})",
                    self.worker,
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                )))
            }
        }
    }

    pub(super) fn unavailable<T>(&self, name: &str, kind: &'static str) -> Result<T, BindingError> {
        self.binding(name, kind)?;
        Err(BindingError::Unavailable(format!(
            "{kind} binding `{name}` is declared, but this node does not run the {kind} service yet"
        )))
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

/// Decides which outbound requests leave the node.
struct OutboundPolicy {
    /// Host patterns from the manifest's `allowed_outbound_hosts`.
    allowed: Arc<[String]>,
}

impl OutboundPolicy {
    fn allows(&self, authority: &str) -> bool {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        self.allowed.iter().any(|pattern| {
            pattern == "*"
                || pattern.eq_ignore_ascii_case(authority)
                || pattern.eq_ignore_ascii_case(host)
                || pattern.strip_prefix("*.").is_some_and(|suffix| {
                    host.len() > suffix.len()
                        && host.to_ascii_lowercase().ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
                })
        })
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let authority = request.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        if !self.allows(&authority) {
            tracing::warn!(%authority, "outbound request denied: host not in allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default = wasmtime_wasi_http::default_hooks();
        default.send_request(request, options, fut)
    }
}

/// Keeps the alias in use for readers of `Worker::handle`.
pub type ResponseBody = HyperOutgoingBody;

impl nimbus::worker::types::Host for Host {}

/// Longest console line kept; the rest is cut with a note of how much was dropped.
const MAX_LOG_LINE: usize = 8 * 1024;

impl nimbus::worker::console::Host for Host {
    async fn log(&mut self, level: nimbus::worker::console::Level, message: String) {
        use nimbus::worker::console::Level;
        let message = clip_log_line(message);
        let worker = &*self.worker;
        match level {
            Level::Debug => tracing::debug!(target: "worker", worker, "{message}"),
            Level::Info => tracing::info!(target: "worker", worker, "{message}"),
            Level::Warn => tracing::warn!(target: "worker", worker, "{message}"),
            Level::Error => tracing::error!(target: "worker", worker, "{message}"),
        }
    }
}

fn clip_log_line(mut message: String) -> String {
    if message.len() > MAX_LOG_LINE {
        let dropped = message.len() - MAX_LOG_LINE;
        let mut cut = MAX_LOG_LINE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!(" … ({dropped} more bytes)"));
    }
    message
}

fn kv_error(error: KvError) -> BindingError {
    if error.is_client_error() {
        BindingError::InvalidInput(error.to_string())
    } else {
        tracing::error!("kv: {error}");
        BindingError::Internal(error.to_string())
    }
}

/// Runs a store call that may fsync off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, BindingError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(kv_error),
        Err(e) => Err(BindingError::Internal(format!("kv task failed: {e}"))),
    }
}

impl nimbus::worker::kv::Host for Host {
    async fn get(&mut self, binding: String, key: String) -> Result<Option<nimbus::worker::kv::Entry>, BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        let entry = store.get(&namespace, &key).map_err(kv_error)?;
        Ok(entry.map(|e| nimbus::worker::kv::Entry {
            value: e.value.unwrap_or_default(),
            metadata: e.metadata,
            expiration: e.expiration,
        }))
    }

    async fn put(
        &mut self,
        binding: String,
        key: String,
        value: Vec<u8>,
        options: nimbus::worker::kv::PutOptions,
    ) -> Result<(), BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        let options = crate::kv::PutOptions {
            expiration: options.expiration,
            expiration_ttl: options.expiration_ttl,
            metadata: options.metadata,
        };
        blocking(move || store.put(&namespace, &key, value, options).map(|_| ())).await
    }

    async fn delete(&mut self, binding: String, key: String) -> Result<(), BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        blocking(move || store.delete(&namespace, &key).map(|_| ())).await
    }

    async fn list(
        &mut self,
        binding: String,
        options: nimbus::worker::kv::ListOptions,
    ) -> Result<nimbus::worker::kv::ListResult, BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        let limit = options.limit.map_or(crate::kv::MAX_LIST_LIMIT, |l| l as usize);
        let prefix = options.prefix.unwrap_or_default();
        let page = store.list(&namespace, &prefix, limit, options.cursor.as_deref()).map_err(kv_error)?;
        Ok(nimbus::worker::kv::ListResult {
            keys: page
                .keys
                .into_iter()
                .map(|k| nimbus::worker::kv::KeyInfo { name: k.name, expiration: k.expiration, metadata: k.metadata })
                .collect(),
            list_complete: page.list_complete,
            cursor: page.cursor,
        })
    }
}

impl Host {
    /// The namespace behind a Durable Object binding: the class of this worker it names.
    fn durable_namespace(&self, name: &str) -> Result<crate::durable::Namespace, BindingError> {
        match self.binding(name, "durable_object")? {
            Binding::DurableObject { class_name, .. } => Ok(crate::durable::Namespace::new(&self.worker, class_name)),
            _ => Err(BindingError::UnknownBinding(format!("binding `{name}` is not a Durable Object binding"))),
        }
    }
}

impl nimbus::worker::durable_objects::Host for Host {
    async fn id_from_name(&mut self, binding: String, name: String) -> Result<String, BindingError> {
        Ok(self.durable_namespace(&binding)?.id_from_name(&name).to_string())
    }

    async fn new_unique_id(&mut self, binding: String) -> Result<String, BindingError> {
        Ok(self.durable_namespace(&binding)?.new_unique_id().to_string())
    }

    async fn id_from_string(&mut self, binding: String, id: String) -> Result<String, BindingError> {
        let namespace = self.durable_namespace(&binding)?;
        namespace.id_from_string(&id).map(|id| id.to_string()).map_err(|e| BindingError::InvalidInput(e.to_string()))
    }

    async fn fetch(
        &mut self,
        binding: String,
        id: String,
        request: nimbus::worker::durable_objects::HttpRequest,
    ) -> Result<nimbus::worker::durable_objects::HttpResponse, BindingError> {
        let namespace = self.durable_namespace(&binding)?;
        let id = namespace.id_from_string(&id).map_err(durable_error)?;
        let Some(durable) = self.durable.clone() else {
            return self.unavailable(&binding, "durable_object");
        };
        let message = crate::durable::wire::HttpMessage {
            method: request.method,
            url: request.url,
            status: 0,
            headers: request.headers,
            body: request.body,
        };
        match durable.call(&namespace, id, crate::durable::wire::Event::Fetch(message)).await.map_err(durable_error)? {
            crate::durable::wire::EventOutcome::Response(response) => {
                Ok(nimbus::worker::durable_objects::HttpResponse {
                    status: response.status,
                    headers: response.headers,
                    body: response.body,
                })
            }
            other => Err(BindingError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

fn durable_error(error: crate::durable::DurableError) -> BindingError {
    use crate::durable::DurableError;
    match error {
        e if e.is_client_error() => BindingError::InvalidInput(e.to_string()),
        e @ (DurableError::Unavailable(_) | DurableError::NotOwner | DurableError::Fenced(_)) => {
            BindingError::Unavailable(e.to_string())
        }
        e => BindingError::Internal(e.to_string()),
    }
}

impl Host {
    /// The object behind this instance's `storage` calls.
    fn object(&self) -> Result<&crate::durable::ObjectContext, BindingError> {
        self.object
            .as_ref()
            .ok_or_else(|| BindingError::Unavailable("storage is only available inside a Durable Object".into()))
    }
}

impl nimbus::worker::storage::Host for Host {
    async fn get(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, BindingError> {
        self.object()?.get(&keys).map_err(durable_error)
    }

    async fn list(
        &mut self,
        options: nimbus::worker::storage::ListOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, BindingError> {
        let options = crate::durable::storage::ListOptions {
            start: options.start,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit.map(|l| l as usize),
        };
        self.object()?.list(&options).map_err(durable_error)
    }

    async fn write(&mut self, writes: Vec<nimbus::worker::storage::StorageWrite>) -> Result<(), BindingError> {
        use nimbus::worker::storage::StorageWrite;
        let writes = writes
            .into_iter()
            .map(|w| match w {
                StorageWrite::Put((key, value)) => crate::durable::storage::Write::Put { key, value },
                StorageWrite::Delete(key) => crate::durable::storage::Write::Delete { key },
            })
            .collect();
        self.object()?.write(writes).map_err(durable_error)
    }

    async fn delete_all(&mut self) -> Result<(), BindingError> {
        self.object()?.write(vec![crate::durable::storage::Write::DeleteAll]).map_err(durable_error)
    }

    async fn get_alarm(&mut self) -> Result<Option<i64>, BindingError> {
        self.object()?.alarm().map_err(durable_error)
    }

    async fn set_alarm(&mut self, scheduled_ms: Option<i64>) -> Result<(), BindingError> {
        self.object()?.write(vec![crate::durable::storage::Write::SetAlarm(scheduled_ms)]).map_err(durable_error)
    }
}

impl nimbus::worker::websocket::Host for Host {
    async fn accept(&mut self, tags: Vec<String>) -> Result<u64, BindingError> {
        self.object()?.accept_socket(tags).map_err(durable_error)
    }

    async fn send(&mut self, socket: u64, message: nimbus::worker::websocket::Message) -> Result<(), BindingError> {
        let frame = match message {
            nimbus::worker::websocket::Message::Text(text) => crate::durable::sockets::Frame::Text(text),
            nimbus::worker::websocket::Message::Binary(bytes) => crate::durable::sockets::Frame::Binary(bytes),
        };
        self.object()?.send_socket(socket, frame).map_err(durable_error)
    }

    async fn close(&mut self, socket: u64, code: u16, reason: String) -> Result<(), BindingError> {
        let frame = crate::durable::sockets::Frame::Close { code, reason };
        self.object()?.send_socket(socket, frame).map_err(durable_error)
    }

    async fn sockets(&mut self, tag: Option<String>) -> Result<Vec<u64>, BindingError> {
        Ok(self.object()?.sockets(tag.as_deref()))
    }

    async fn tags(&mut self, socket: u64) -> Result<Vec<String>, BindingError> {
        self.object()?.socket_tags(socket).map_err(durable_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> OutboundPolicy {
        OutboundPolicy { allowed: allowed.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn outbound_allow_list_matches_hosts_ports_and_wildcards() {
        let p = policy(&["api.example.com", "*.internal", "127.0.0.1:9000"]);
        assert!(p.allows("api.example.com"));
        assert!(p.allows("api.example.com:443"));
        assert!(p.allows("db.internal"));
        assert!(!p.allows("internal"));
        assert!(p.allows("127.0.0.1:9000"));
        assert!(!p.allows("127.0.0.1:9001"));
        assert!(!p.allows("evil.com"));
        assert!(!policy(&[]).allows("api.example.com"));
        assert!(policy(&["*"]).allows("anything:1"));
    }

    #[tokio::test]
    async fn durable_object_ids_come_from_the_bound_class() {
        use nimbus::worker::durable_objects::Host as _;
        let mut host = Host::new(
            "app".into(),
            vec![Binding::DurableObject { name: "COUNTER".into(), class_name: "Counter".into() }].into(),
            Arc::from(Vec::new()),
            1 << 20,
            None,
            None,
        );
        let id = host.id_from_name("COUNTER".into(), "room".into()).await.expect("id");
        assert_eq!(id, crate::durable::Namespace::new("app", "Counter").id_from_name("room").to_string());
        assert_eq!(host.id_from_string("COUNTER".into(), id.clone()).await.expect("valid"), id);
        assert!(matches!(
            host.id_from_string("COUNTER".into(), "nope".into()).await,
            Err(BindingError::InvalidInput(_))
        ));
        assert!(matches!(host.id_from_name("NOPE".into(), "x".into()).await, Err(BindingError::UnknownBinding(_))));
    }

    #[test]
    fn binding_errors_name_the_binding_and_the_declared_ones() {
        let host = Host::new(
            "w".into(),
            vec![Binding::Kv { name: "CACHE".into(), namespace_id: "n".into() }].into(),
            Arc::from(Vec::new()),
            1 << 20,
            None,
            None,
        );
        match host.binding("NOPE", "kv") {
            Err(BindingError::UnknownBinding(msg)) => assert!(msg.contains("NOPE") && msg.contains("CACHE"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        match host.unavailable::<()>("CACHE", "kv") {
            Err(BindingError::Unavailable(msg)) => assert!(msg.contains("CACHE"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(host.binding("CACHE", "d1"), Err(BindingError::UnknownBinding(_))));
    }
}
