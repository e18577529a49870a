//! The wasmtime pieces that both the node's runtime and the control plane's deploy-time
//! checks use, so neither keeps a copy: wasmtime's incremental compilation cache (in memory
//! or in a directory), and the policy that decides which outbound HTTP requests a guest may make.
//!
//! Must never: depend on another Nimbus crate, or hold a worker's state.
//!
//! # Layout
//! - [`FunctionCache`]: compiled functions by the hash of their IR, in memory for the life of
//!   the process or in a bounded directory that outlives it.
//! - [`OutboundPolicy`]: `wasi:http/outgoing-handler` by allow-list; an empty list refuses all.
//!   Requests to [`ASSETS_HOST`] go to the [`LocalService`] the node hands in, never out.
//! - [`outbound`]: the address guard (public addresses only, unless the operator lists
//!   others) and the connection to the address it checked.

pub mod outbound;

pub use outbound::AddressGuard;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::WasiHttpHooks;

/// Wasmtime's incremental compilation cache: compiled functions by the hash of their IR, so a
/// second component built from the same engine (every JavaScript worker is the same engine
/// with other data) compiles only what is new.
///
/// In memory ([`FunctionCache::default`], for the life of the process: the control plane's
/// deploy-time checks), or in a directory ([`FunctionCache::in_dir`]: a node, whose heap should
/// not hold megabytes of machine code it reads only when a deployment arrives; the cache also
/// survives a restart). The directory is bounded: once it holds `max_bytes`, new functions are
/// compiled and not kept.
#[derive(Debug)]
pub struct FunctionCache(Store);

#[derive(Debug)]
enum Store {
    Memory(Mutex<HashMap<Vec<u8>, Vec<u8>>>),
    Dir { dir: PathBuf, bytes: AtomicU64, max_bytes: u64 },
}

/// Cranelift's keys are 32-byte hashes; anything longer is not cached (it would make a long
/// file name).
const MAX_KEY_BYTES: usize = 64;

impl Default for FunctionCache {
    /// In memory.
    fn default() -> Self {
        FunctionCache(Store::Memory(Mutex::default()))
    }
}

impl FunctionCache {
    /// A cache in `dir` (created if missing) that stops growing at `max_bytes`.
    pub fn in_dir(dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut bytes = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().contains(".tmp") {
                // Left by a node that stopped mid-write.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            bytes += entry.metadata()?.len();
        }
        Ok(FunctionCache(Store::Dir { dir, bytes: AtomicU64::new(bytes), max_bytes }))
    }

    fn path(dir: &Path, key: &[u8]) -> Option<PathBuf> {
        use std::fmt::Write;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return None;
        }
        let mut name = String::with_capacity(key.len() * 2);
        for byte in key {
            let _ = write!(name, "{byte:02x}");
        }
        Some(dir.join(name))
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        match &self.0 {
            Store::Memory(map) => {
                let map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                map.get(key).map(|value| Cow::Owned(value.clone()))
            }
            // A file that cannot be read, or that was damaged, only costs a compile: cranelift
            // checks what it gets back and compiles the function when it does not fit.
            Store::Dir { dir, .. } => std::fs::read(Self::path(dir, key)?).ok().map(Cow::Owned),
        }
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        match &self.0 {
            Store::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                map.insert(key.to_vec(), value);
                true
            }
            Store::Dir { dir, bytes, max_bytes } => {
                let Some(path) = Self::path(dir, key) else { return false };
                let size = value.len() as u64;
                if bytes.fetch_add(size, Ordering::Relaxed) + size > *max_bytes {
                    bytes.fetch_sub(size, Ordering::Relaxed);
                    return false;
                }
                // Written under a temporary name and renamed: a reader never sees half a file.
                static WRITES: AtomicU64 = AtomicU64::new(0);
                let tmp = path.with_extension(format!("tmp{}", WRITES.fetch_add(1, Ordering::Relaxed)));
                let written = std::fs::write(&tmp, &value).and_then(|()| std::fs::rename(&tmp, &path));
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                    bytes.fetch_sub(size, Ordering::Relaxed);
                }
                written.is_ok()
            }
        }
    }
}

/// The host a Pages Functions worker reaches its deployment's static assets on
/// (`env.ASSETS.fetch`): answered in-process by the [`LocalService`], never resolved.
pub const ASSETS_HOST: &str = "assets.pages.internal";
/// The largest request body a worker may send to [`ASSETS_HOST`].
const MAX_LOCAL_BODY: usize = 1024 * 1024;

/// Answers a worker's requests to [`ASSETS_HOST`]: the node's Pages, which knows which
/// deployment's assets the worker (by name) may read.
pub trait LocalService: Send + Sync + 'static {
    fn serve(
        &self,
        worker: &str,
        request: http::Request<bytes::Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = http::Response<bytes::Bytes>> + Send>>;
}

/// Decides which outbound requests leave: only to a host the allow-list names (exactly, with
/// its port, or by a `*.suffix` pattern; `*` allows any public host), and then only to
/// addresses the [`AddressGuard`] permits. Any other request is refused before a connection
/// is made (`HttpRequestDenied`, or `DestinationIpProhibited` for a refused address).
pub struct OutboundPolicy {
    /// Host patterns (a manifest's `allowed_outbound_hosts`).
    allowed: Arc<[String]>,
    guard: Arc<AddressGuard>,
    /// What answers [`ASSETS_HOST`], and the worker asking.
    local: Option<(Arc<dyn LocalService>, Arc<str>)>,
}

impl OutboundPolicy {
    pub fn new(allowed: Arc<[String]>, guard: Arc<AddressGuard>) -> Self {
        OutboundPolicy { allowed, guard, local: None }
    }

    /// Requests to [`ASSETS_HOST`] from `worker` go to `service`.
    pub fn with_local(mut self, service: Arc<dyn LocalService>, worker: Arc<str>) -> Self {
        self.local = Some((service, worker));
        self
    }

    /// A policy that refuses every request.
    pub fn deny_all() -> Self {
        OutboundPolicy { allowed: Arc::from(Vec::new()), guard: Arc::default(), local: None }
    }

    pub fn allows(&self, authority: &str) -> bool {
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
        if let (Some((service, worker)), true) = (&self.local, authority.eq_ignore_ascii_case(ASSETS_HOST)) {
            let (service, worker) = (service.clone(), worker.clone());
            return Box::new(async move {
                use http_body_util::BodyExt as _;
                let (parts, body) = request.into_parts();
                let limited = http_body_util::Limited::new(body, MAX_LOCAL_BODY);
                let body = limited.collect().await.map_err(|_| wasmtime_wasi_http::Error::HttpRequestBodySize(None))?;
                let response = service.serve(&worker, http::Request::from_parts(parts, body.to_bytes())).await;
                let response = response
                    .map(|bytes| http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed_unsync());
                let io: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response, io))
            });
        }
        if !self.allows(&authority) {
            tracing::warn!(%authority, "outbound request denied: host not in allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let _ = fut;
        let guard = self.guard.clone();
        Box::new(async move {
            let (response, io) = outbound::send_checked(request, options, guard).await?;
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn the_function_cache_directory_keeps_functions_across_restarts_and_stops_growing_at_its_bound() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("functions");
        let cache = FunctionCache::in_dir(path.clone(), 100).expect("open");
        assert_eq!(cache.get(&[1; 32]), None);
        assert!(cache.insert(&[1; 32], vec![7; 60]));
        assert_eq!(cache.get(&[1; 32]).as_deref(), Some(&[7u8; 60][..]));
        // 60 + 60 > 100: compiled, not kept.
        assert!(!cache.insert(&[2; 32], vec![8; 60]));
        assert_eq!(cache.get(&[2; 32]), None);
        // A key too long to be a file name is not kept either.
        assert!(!cache.insert(&[3; 65], vec![9; 1]));

        // A restarted node finds what it kept, counts it against the bound, and drops what a
        // write cut short left behind.
        std::fs::write(path.join("0101.tmp3"), b"half").expect("leftover");
        drop(cache);
        let cache = FunctionCache::in_dir(path.clone(), 100).expect("reopen");
        assert_eq!(cache.get(&[1; 32]).as_deref(), Some(&[7u8; 60][..]));
        assert!(!path.join("0101.tmp3").exists());
        assert!(!cache.insert(&[2; 32], vec![8; 60]));
        assert!(cache.insert(&[2; 32], vec![8; 40]));
    }

    fn policy(allowed: &[&str]) -> OutboundPolicy {
        OutboundPolicy { allowed: allowed.iter().map(|s| s.to_string()).collect(), guard: Arc::default(), local: None }
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
        assert!(!OutboundPolicy::deny_all().allows("api.example.com"));
        assert!(policy(&["*"]).allows("anything:1"));
    }
}
