//! Outbound HTTP (`wasi:http/outgoing-handler`): which requests leave the node.
//!
//! A request leaves only to a host the manifest's `allowed_outbound_hosts` names (exactly,
//! with its port, or by a `*.suffix` pattern; `*` allows any host); any other is refused
//! with `HttpRequestDenied` before a connection is made.

use std::sync::Arc;
use wasmtime_wasi_http::WasiHttpHooks;

/// Decides which outbound requests leave the node.
pub(super) struct OutboundPolicy {
    /// Host patterns from the manifest's `allowed_outbound_hosts`.
    allowed: Arc<[String]>,
}

impl OutboundPolicy {
    pub(super) fn new(allowed: Arc<[String]>) -> Self {
        OutboundPolicy { allowed }
    }

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
}
