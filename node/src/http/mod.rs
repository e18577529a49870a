//! The node's two HTTP planes: the public edge and the management API.
//!
//! The **edge** ([`Edge::router`]) serves Pages sites (`<project>.<pages suffix>` and its
//! subdomains, see `crate::pages`), workers (by host, `<name>.<suffix>` or a declared route)
//! and `/healthz`, nothing else, under any Host: no `/v1` path and no `/metrics` is
//! reachable on it. The **management API** ([`Edge::management_router`], its own listener,
//! loopback by default) serves the REST APIs (`kv`, `d1`, `r2`), the node's status, the cluster
//! view, fault injection and `/metrics`, each behind `Authorization: Bearer <token>` with the
//! scope [`required_scope`] names; `/healthz` alone is open. [`error_response`] is the one
//! place where a runtime error becomes an HTTP status.

mod d1;
#[cfg(fuzzing)]
pub use d1::fuzz_query_body;
mod kv;
mod queues;
mod r2;
mod websocket;

use crate::auth::Tokens;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, Request, StatusCode};
use nimbus_api::node::{NodeStatus, WorkerStatus};
use nimbus_cluster::faults::{LinkShape, ShapingStats};
use nimbus_cluster::{MemberView, Membership};
use nimbus_kv::KvStore;
use nimbus_proto::auth::{self, Access, Product};
use nimbus_runtime::{Runtime, RuntimeError};
use nimbus_util::config::NodeConfig;
use nimbus_util::metrics::Metrics;
use std::sync::Arc;

#[derive(Clone)]
pub struct Edge {
    pub runtime: Arc<Runtime>,
    pub metrics: Arc<Metrics>,
    pub membership: Membership,
    pub kv: KvStore,
    pub d1: nimbus_d1::D1,
    pub durable: nimbus_durable::Durable,
    pub r2: nimbus_r2::R2,
    pub queues: nimbus_queues::Queues,
    pub pages: crate::pages::Pages,
    pub node_id: Arc<str>,
    pub region: Arc<str>,
    colo_header: header::HeaderValue,
    node_header: header::HeaderValue,
    platform: Router,
}

/// The region (colo) of the node a request entered through, on every request a worker sees.
pub const COLO_HEADER: &str = "x-nimbus-colo";
/// The node a request entered through.
pub const NODE_HEADER: &str = "x-nimbus-node";

/// The stores the management API serves, and the Pages sites the edge serves.
pub struct Stores {
    pub kv: KvStore,
    pub d1: nimbus_d1::D1,
    pub durable: nimbus_durable::Durable,
    pub r2: nimbus_r2::R2,
    pub queues: nimbus_queues::Queues,
    pub pages: crate::pages::Pages,
}

impl Edge {
    pub fn new(
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        membership: Membership,
        stores: Stores,
        config: &NodeConfig,
    ) -> Self {
        let Stores { kv, d1, durable, r2, queues, pages } = stores;
        let mut edge = Edge {
            runtime,
            metrics,
            membership,
            kv,
            d1,
            durable,
            r2,
            queues,
            pages,
            node_id: config.node_id.as_str().into(),
            region: config.region.as_str().into(),
            colo_header: header::HeaderValue::from_str(&config.region)
                .unwrap_or_else(|_| header::HeaderValue::from_static("unknown")),
            node_header: header::HeaderValue::from_str(&config.node_id)
                .unwrap_or_else(|_| header::HeaderValue::from_static("unknown")),
            platform: Router::new(),
        };
        let mut platform = Router::new()
            .route("/metrics", get(metrics_text))
            .route("/v1/node", get(node_status))
            .route("/v1/cluster", get(cluster_members))
            .route("/v1/node/durable", get(durable_status))
            .merge(kv::routes())
            .merge(d1::routes())
            .merge(r2::routes())
            .merge(queues::routes());
        if config.admin.fault_injection {
            platform = platform.route("/v1/admin/faults", post(set_faults).get(get_faults));
        }
        let platform = platform.fallback(|| async {
            (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no such management route" })))
        });
        edge.platform = platform.with_state(edge.clone());
        edge
    }

    /// The public edge: workers and `/healthz`.
    pub fn router(self) -> Router {
        // Shared, not cloned per request: the edge's hot path pays one reference count.
        Router::new().fallback(dispatch).with_state(Arc::new(self))
    }

    /// The management API: `/healthz` open, everything else behind a token with the scope
    /// the route needs.
    pub fn management_router(self, tokens: Tokens) -> Router {
        let authed = self.platform.clone().layer(axum::middleware::from_fn_with_state(tokens, require_token));
        Router::new().route("/healthz", get(|| async { "ok\n" })).merge(authed)
    }
}

/// The scope a management route needs: `None` for `admin` itself (fault injection).
pub fn required_scope(method: &http::Method, path: &str) -> (Option<Product>, Access) {
    let access = Access::of_method(method.as_str());
    let product = if path.starts_with("/v1/kv/") || path == "/v1/node/kv" {
        Some(Product::Kv)
    } else if path.starts_with("/v1/d1/") || path == "/v1/node/d1" {
        Some(Product::D1)
    } else if path.starts_with("/v1/r2/") {
        Some(Product::R2)
    } else if path == "/v1/queues" || path.starts_with("/v1/queues/") {
        Some(Product::Queues)
    } else if path.starts_with("/v1/cron/") {
        Some(Product::Workers)
    } else if path.starts_with("/v1/admin/") {
        None
    } else {
        // `/metrics`, `/v1/node`, `/v1/node/durable`, `/v1/cluster`, and unknown paths (which
        // then answer 404 only to a caller allowed to look).
        Some(Product::Cluster)
    };
    (product, access)
}

/// 401 without a known token, 403 when its scopes do not cover the route.
async fn require_token(State(tokens): State<Tokens>, req: Request<Body>, next: axum::middleware::Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(grants) = auth::bearer(header).and_then(|secret| tokens.grants(secret)) else {
        let body = Json(serde_json::json!({ "error": "missing or unknown token: send Authorization: Bearer <token>" }));
        let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    };
    let (product, access) = required_scope(req.method(), req.uri().path());
    if !grants.allows(product, access) {
        let wanted = match (product, access) {
            (None, _) => "admin".to_string(),
            (Some(p), Access::Read) => format!("{}:read", p.as_str()),
            (Some(p), Access::Edit) => format!("{}:edit", p.as_str()),
        };
        let body = Json(serde_json::json!({ "error": format!("this token lacks the `{wanted}` scope") }));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    next.run(req).await
}

/// The live Durable Objects on this node and the view placement runs on.
async fn durable_status(State(edge): State<Edge>) -> Json<nimbus_durable::DurableStatus> {
    Json(edge.durable.status())
}

async fn dispatch(State(edge): State<Arc<Edge>>, mut req: Request<Body>) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if let Some(route) = edge.pages.route(host) {
        return edge.pages.serve(route, req, &edge.runtime).await;
    }
    let host = host.to_string();
    if let Some(worker) = edge.runtime.route(&host, req.uri().path()) {
        // Where the request entered the cluster, as Cloudflare's `request.cf.colo`; set here
        // so a client cannot claim another region.
        let headers = req.headers_mut();
        headers.insert(COLO_HEADER, edge.colo_header.clone());
        headers.insert(NODE_HEADER, edge.node_header.clone());
        if websocket::is_upgrade(&req) {
            let response = websocket::serve(&edge, &worker, req).await;
            worker.record_status(response.status().as_u16());
            return response;
        }
        let response = match worker.handle(req).await {
            Ok(response) => response.map(Body::new),
            Err(e) => error_response(&e),
        };
        worker.record_status(response.status().as_u16());
        return response;
    }
    if req.uri().path() == "/healthz" {
        return "ok\n".into_response();
    }
    edge.metrics.unrouted.inc();
    error_response(&RuntimeError::NoRoute { host, path: req.uri().path().to_string() })
}

/// The one mapping from runtime errors to HTTP responses: a status, a one-line body that says
/// what happened, and `x-nimbus-error` with the machine-readable kind.
pub fn error_response(error: &RuntimeError) -> Response {
    let status = match error {
        RuntimeError::NoRoute { .. } => StatusCode::NOT_FOUND,
        RuntimeError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RuntimeError::CpuLimit { .. }
        | RuntimeError::MemoryLimit { .. }
        | RuntimeError::Overloaded
        | RuntimeError::WorkerBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RuntimeError::WallTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        RuntimeError::NoResponse { .. } | RuntimeError::BadResponse { .. } | RuntimeError::ResponseTooLarge { .. } => {
            StatusCode::BAD_GATEWAY
        }
        RuntimeError::Trap { .. }
        | RuntimeError::Compile { .. }
        | RuntimeError::Link { .. }
        | RuntimeError::ComponentMissing { .. }
        | RuntimeError::Io { .. }
        | RuntimeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match error {
        RuntimeError::NoRoute { host, .. } => format!("no worker is deployed for host `{host}` on this node\n"),
        other => format!("{other}\n"),
    };
    let mut response = (status, message).into_response();
    if let Ok(kind) = header::HeaderValue::from_str(error.kind()) {
        response.headers_mut().insert("x-nimbus-error", kind);
    }
    if matches!(error, RuntimeError::Overloaded | RuntimeError::WorkerBusy { .. }) {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

async fn metrics_text(State(edge): State<Edge>) -> Response {
    let d1 = edge.d1.status();
    let gauges = &edge.metrics.d1;
    gauges.term.set(d1.term as i64);
    gauges.is_leader.set(i64::from(d1.state == "Leader"));
    gauges.commit_index.set(d1.commit_index as i64);
    gauges.applied_index.set(d1.applied_index as i64);
    gauges.snapshots_installed.set(d1.snapshots_installed as i64);
    let durable = edge.durable.status();
    let gauges = &edge.metrics.durable;
    gauges.live.set(durable.live.len() as i64);
    gauges.activations.set(durable.activations as i64);
    gauges.evictions.set(durable.evictions as i64);
    gauges.websockets.set(durable.websockets as i64);
    // Queue figures come from the replicated state; they go before OpenMetrics' `# EOF`.
    let mut text = edge.metrics.encode();
    let queues = edge.queues.metrics_text();
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &queues),
        None => text.push_str(&queues),
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn node_status(State(edge): State<Edge>) -> Json<NodeStatus> {
    let workers = edge
        .runtime
        .workers()
        .into_iter()
        .map(|spec| WorkerStatus {
            idle_instances: edge.runtime.worker(&spec.name).map_or(0, |w| w.idle_instances()),
            name: spec.name,
            version: spec.version,
            component_hash: spec.component_hash,
        })
        .collect();
    Json(NodeStatus { node_id: edge.node_id.to_string(), region: edge.region.to_string(), workers })
}

#[derive(serde::Serialize)]
struct ClusterView {
    node_id: String,
    members: Vec<MemberView>,
}

async fn cluster_members(State(edge): State<Edge>) -> Response {
    match edge.membership.members().await {
        Ok(members) => Json(ClusterView { node_id: edge.node_id.to_string(), members }).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// The faults in force on this node; a POST replaces all of them (an absent field clears it).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSet {
    /// Gossip addresses whose traffic is dropped, both ways.
    #[serde(default)]
    blocked: Vec<std::net::SocketAddr>,
    /// Delay, jitter and loss added to every outgoing peer link, on top of the latency matrix.
    #[serde(default)]
    spike: LinkShape,
    /// What the simulated network (matrix and spike) has done so far; ignored in a POST.
    #[serde(default, skip_deserializing)]
    shaped: ShapingStats,
}

async fn set_faults(State(edge): State<Edge>, Json(faults): Json<FaultSet>) -> Response {
    let spike = faults.spike;
    if !(spike.delay_ms >= 0.0 && spike.jitter_ms >= 0.0 && (0.0..=1.0).contains(&spike.loss)) {
        return (StatusCode::BAD_REQUEST, "spike: delay_ms and jitter_ms must be ≥ 0 and loss in [0, 1]\n")
            .into_response();
    }
    tracing::warn!(blocked = ?faults.blocked, ?spike, "fault injection: peer traffic dropped or shaped");
    edge.membership.faults.set_blocked(faults.blocked);
    edge.membership.faults.set_spike(spike);
    get_faults(State(edge)).await.into_response()
}

async fn get_faults(State(edge): State<Edge>) -> Json<FaultSet> {
    let faults = &edge.membership.faults;
    Json(FaultSet { blocked: faults.blocked(), spike: faults.spike(), shaped: faults.stats() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_routes_need_the_queues_scope_and_cron_routes_the_workers_scope() {
        let scope = |method: &str, path: &str| required_scope(&method.parse().expect("a method"), path);
        assert_eq!(scope("GET", "/v1/queues"), (Some(Product::Queues), Access::Read));
        assert_eq!(scope("POST", "/v1/queues"), (Some(Product::Queues), Access::Edit));
        assert_eq!(scope("GET", "/v1/queues/emails/messages/peek"), (Some(Product::Queues), Access::Read));
        assert_eq!(scope("POST", "/v1/queues/emails/messages/pull"), (Some(Product::Queues), Access::Edit));
        assert_eq!(scope("GET", "/v1/cron/mailer"), (Some(Product::Workers), Access::Read));
        assert_eq!(scope("POST", "/v1/cron/mailer/trigger"), (Some(Product::Workers), Access::Edit));
        // A prefix that only looks alike is not the queues API.
        assert_eq!(scope("GET", "/v1/queuesx").0, Some(Product::Cluster));
    }
}
