//! The wasmtime pieces that both the node's runtime and the control plane's deploy-time
//! checks use, so neither keeps a copy: wasmtime's incremental compilation cache in memory,
//! and the policy that decides which outbound HTTP requests a guest may make.
//!
//! Must never: depend on another Nimbus crate, or hold a worker's state.
//!
//! # Layout
//! - [`FunctionCache`]: compiled functions by the hash of their IR, for the life of the process.
//! - [`OutboundPolicy`]: `wasi:http/outgoing-handler` by allow-list; an empty list refuses all.
//! - [`outbound`]: the address guard (public addresses only, unless the operator lists
//!   others) and the connection to the address it checked.

pub mod outbound;

pub use outbound::AddressGuard;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::WasiHttpHooks;

/// Wasmtime's incremental compilation cache: compiled functions by the hash of their IR, in
/// memory for the life of the process (a second component built from the same engine, such
/// as every JavaScript worker, compiles only what is new).
#[derive(Debug, Default)]
pub struct FunctionCache(Mutex<HashMap<Vec<u8>, Vec<u8>>>);

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(key).map(|value| Cow::Owned(value.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(key.to_vec(), value);
        true
    }
}

/// Decides which outbound requests leave: only to a host the allow-list names (exactly, with
/// its port, or by a `*.suffix` pattern; `*` allows any public host), and then only to
/// addresses the [`AddressGuard`] permits. Any other request is refused before a connection
/// is made (`HttpRequestDenied`, or `DestinationIpProhibited` for a refused address).
pub struct OutboundPolicy {
    /// Host patterns (a manifest's `allowed_outbound_hosts`).
    allowed: Arc<[String]>,
    guard: Arc<AddressGuard>,
}

impl OutboundPolicy {
    pub fn new(allowed: Arc<[String]>, guard: Arc<AddressGuard>) -> Self {
        OutboundPolicy { allowed, guard }
    }

    /// A policy that refuses every request.
    pub fn deny_all() -> Self {
        OutboundPolicy { allowed: Arc::from(Vec::new()), guard: Arc::default() }
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

    fn policy(allowed: &[&str]) -> OutboundPolicy {
        OutboundPolicy { allowed: allowed.iter().map(|s| s.to_string()).collect(), guard: Arc::default() }
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
