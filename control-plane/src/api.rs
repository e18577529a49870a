//! The HTTP API for the CLI: deploy, list, show, rollback, delete, cluster.
//!
//! Every route except `/healthz` needs `Authorization: Bearer <token>`. Errors are JSON
//! `{"error": "…"}` with the status chosen by [`status_of`], the one mapping for this front end.

use crate::error::ControlPlaneError;
use crate::js::{JsBuilder, Script};
use crate::store::Store;
use crate::validate::validate_component;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use nimbus_api::control::{
    ApiError, Deployed, NodeInfo, NodeRollout, RolledBack, RolloutState, WorkerDetail, WorkerSummary,
};
use nimbus_proto::manifest::{validate_worker_name, WorkerManifest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Api {
    pub store: Arc<Store>,
    pub changes: broadcast::Sender<u64>,
    token: Arc<str>,
    max_component_bytes: usize,
    js: Arc<JsBuilder>,
}

impl Api {
    pub fn new(
        store: Arc<Store>,
        changes: broadcast::Sender<u64>,
        token: &str,
        max_component_bytes: usize,
        js: Arc<JsBuilder>,
    ) -> Self {
        Api { store, changes, token: token.into(), max_component_bytes, js }
    }

    pub fn router(self) -> Router {
        // base64 inflates the component by 4/3, plus room for the manifest.
        let body_limit = self.max_component_bytes / 3 * 4 + 1024 * 1024;
        let authed = Router::new()
            .route("/v1/deployments", get(list))
            .route("/v1/deployments/{name}", get(show).post(deploy).delete(delete))
            .route("/v1/deployments/{name}/rollback", post(rollback))
            .route("/v1/cluster", get(cluster))
            .layer(middleware::from_fn_with_state(self.clone(), require_token))
            .layer(DefaultBodyLimit::max(body_limit));
        Router::new().route("/healthz", get(|| async { "ok\n" })).merge(authed).with_state(self)
    }

    fn notify(&self, seq: u64) {
        // No receiver just means no node is watching right now.
        let _ = self.changes.send(seq);
    }
}

async fn require_token(State(api): State<Api>, req: Request, next: Next) -> Response {
    let presented =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let ok = presented.is_some_and(|t| constant_time_eq(t.as_bytes(), api.token.as_bytes()));
    if !ok {
        return ControlPlaneError::Unauthorized.into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The one mapping from control-plane errors to HTTP statuses.
pub fn status_of(error: &ControlPlaneError) -> StatusCode {
    match error {
        ControlPlaneError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlPlaneError::WorkerNotFound(_) | ControlPlaneError::VersionNotFound { .. } => StatusCode::NOT_FOUND,
        ControlPlaneError::Unauthorized => StatusCode::UNAUTHORIZED,
        ControlPlaneError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ControlPlaneError::Database(_) | ControlPlaneError::Io { .. } | ControlPlaneError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for ControlPlaneError {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        if status.is_server_error() {
            tracing::error!("api error: {self}");
        }
        (status, Json(ApiError { error: self.to_string() })).into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub manifest: serde_json::Value,
    /// The component, base64 (standard alphabet); or else `script`.
    #[serde(default)]
    pub component: Option<String>,
    /// A JavaScript worker's ES modules, pre-initialised into the JS engine at deploy.
    #[serde(default)]
    pub script: Option<Script>,
    #[serde(default)]
    pub message: Option<String>,
}

async fn deploy(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Deployed>), ControlPlaneError> {
    validate_worker_name(&name).map_err(|e| ControlPlaneError::Invalid(e.0))?;
    let req: DeployRequest =
        serde_json::from_slice(&body).map_err(|e| ControlPlaneError::Invalid(format!("request body: {e}")))?;
    let manifest: WorkerManifest =
        serde_json::from_value(req.manifest).map_err(|e| ControlPlaneError::Invalid(format!("manifest: {e}")))?;
    manifest.validate().map_err(|e| ControlPlaneError::Invalid(format!("manifest: {e}")))?;
    let (component, runtime) = match (req.component, req.script) {
        (Some(component), None) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(component.as_bytes())
                .map_err(|e| ControlPlaneError::Invalid(format!("component is not valid base64: {e}")))?;
            (bytes, "wasm")
        }
        (None, Some(script)) => {
            let size: usize = script.modules.iter().map(|m| m.source.len()).sum();
            if size > api.max_component_bytes {
                return Err(ControlPlaneError::Invalid(format!(
                    "the script is {size} bytes, over the limit of {} bytes",
                    api.max_component_bytes
                )));
            }
            (api.js.build(&script, &manifest).await?, "js")
        }
        (Some(_), Some(_)) => {
            return Err(ControlPlaneError::Invalid("a deploy carries either a component or a script, not both".into()))
        }
        (None, None) => return Err(ControlPlaneError::Invalid("a deploy needs a component or a script".into())),
    };
    if component.len() > api.max_component_bytes {
        return Err(ControlPlaneError::Invalid(format!(
            "component is {} bytes, over the limit of {} bytes",
            component.len(),
            api.max_component_bytes
        )));
    }
    let info = tokio::task::spawn_blocking({
        let component = component.clone();
        move || validate_component(&component)
    })
    .await
    .map_err(|e| ControlPlaneError::Internal(e.to_string()))??;
    let classes = manifest.durable_object_classes();
    if !classes.is_empty() && !info.exports.iter().any(|e| e.starts_with(crate::validate::DURABLE_OBJECT_HANDLER)) {
        return Err(ControlPlaneError::Invalid(format!(
            "the manifest binds Durable Object class(es) {} but the component does not export `nimbus:worker/durable-object` (define them with `nimbus::durable_objects!`)",
            classes.join(", ")
        )));
    }
    let hash = hex::encode(Sha256::digest(&component));
    let manifest_json = serde_json::to_string(&manifest).map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
    let (version, seq) = api.store.deploy(&name, &hash, &component, &manifest_json, req.message.as_deref())?;
    api.notify(seq);
    tracing::info!(worker = %name, version, seq, %hash, runtime, "deployed");
    Ok((
        StatusCode::CREATED,
        Json(Deployed {
            name,
            version,
            seq,
            component_hash: hash,
            component_size: component.len() as u64,
            imports: info.imports,
            runtime: runtime.into(),
        }),
    ))
}

async fn list(State(api): State<Api>) -> Result<Json<Vec<WorkerSummary>>, ControlPlaneError> {
    Ok(Json(api.store.list()?))
}

async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<WorkerDetail>, ControlPlaneError> {
    let active_version =
        api.store.active_version(&name)?.ok_or_else(|| ControlPlaneError::WorkerNotFound(name.clone()))?;
    let rollout = api
        .store
        .rollout(&name)?
        .into_iter()
        .map(|ack| {
            let state = match (ack.ok, ack.version == active_version) {
                (false, true) => RolloutState::Failed,
                (true, true) => RolloutState::Current,
                _ => RolloutState::Behind,
            };
            NodeRollout { ack, state }
        })
        .collect();
    Ok(Json(WorkerDetail { versions: api.store.versions(&name)?, name, active_version, rollout }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to serve; default: the one before the active version.
    #[serde(default)]
    pub version: Option<u64>,
}

async fn rollback(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RolledBack>, ControlPlaneError> {
    let req: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ControlPlaneError::Invalid(format!("request body: {e}")))?
    };
    let active = api.store.active_version(&name)?.ok_or_else(|| ControlPlaneError::WorkerNotFound(name.clone()))?;
    let target = match req.version {
        Some(v) => v,
        None => api.store.versions(&name)?.into_iter().map(|v| v.version).find(|v| *v < active).ok_or_else(|| {
            ControlPlaneError::Invalid(format!("worker `{name}` has no version before {active} to roll back to"))
        })?,
    };
    let seq = api.store.rollback(&name, target)?;
    api.notify(seq);
    tracing::info!(worker = %name, from = active, to = target, "rolled back");
    Ok(Json(RolledBack { name, version: target, previous_version: active, seq }))
}

async fn delete(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, ControlPlaneError> {
    let seq = api.store.delete(&name)?;
    api.notify(seq);
    Ok(StatusCode::NO_CONTENT)
}

async fn cluster(State(api): State<Api>) -> Result<Json<Vec<NodeInfo>>, ControlPlaneError> {
    Ok(Json(api.store.nodes()?))
}
