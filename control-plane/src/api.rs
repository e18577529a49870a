//! The HTTP API for the CLI: deploy, list, show, rollback, delete, cluster, tokens.
//!
//! Every route except `/healthz` needs `Authorization: Bearer <token>`: the bootstrap token
//! (`api.token`, admin) or one made with `POST /v1/tokens`, whose scopes must cover the route
//! (`workers:read|edit` for deployments, `cluster:read` for the node list, `admin` for
//! tokens; decided by `nimbus_proto::auth`, as on the nodes). No token or an unknown one is
//! 401, a token without the scope 403. Errors are JSON `{"error": "…"}` with the status chosen
//! by [`status_of`], the one mapping for this front end.

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
    ApiError, CreateToken, CreatedToken, Deployed, NodeInfo, NodeRollout, RolledBack, RolloutState, TokenInfo,
    WorkerDetail, WorkerSummary,
};
use nimbus_proto::auth;
use nimbus_proto::manifest::{validate_worker_name, WorkerManifest};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct Api {
    pub store: Arc<Store>,
    pub changes: broadcast::Sender<u64>,
    /// SHA-256 of the bootstrap token.
    bootstrap: Arc<str>,
    pub(crate) max_component_bytes: usize,
    pub(crate) js: Arc<JsBuilder>,
    /// The operator's ceilings on manifest limits.
    pub(crate) ceilings: Arc<nimbus_proto::manifest::Limits>,
}

impl Api {
    pub fn new(
        store: Arc<Store>,
        changes: broadcast::Sender<u64>,
        token: &str,
        max_component_bytes: usize,
        js: Arc<JsBuilder>,
        ceilings: nimbus_proto::manifest::Limits,
    ) -> Self {
        Api {
            store,
            changes,
            bootstrap: auth::token_hash(token).into(),
            max_component_bytes,
            js,
            ceilings: Arc::new(ceilings),
        }
    }

    pub fn router(self) -> Router {
        // base64 inflates the component by 4/3, plus room for the manifest.
        let body_limit = self.max_component_bytes / 3 * 4 + 1024 * 1024;
        let authed = Router::new()
            .route("/v1/deployments", get(list))
            .route("/v1/deployments/{name}", get(show).post(deploy).delete(delete))
            .route("/v1/deployments/{name}/rollback", post(rollback))
            .route("/v1/cluster", get(cluster))
            .route("/v1/tokens", get(list_tokens).post(create_token))
            .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
            .merge(crate::pages::routes())
            .layer(middleware::from_fn_with_state(self.clone(), require_token))
            .layer(DefaultBodyLimit::max(body_limit));
        Router::new().route("/healthz", get(|| async { "ok\n" })).merge(authed).with_state(self)
    }

    pub(crate) fn notify(&self, seq: u64) {
        // No receiver just means no node is watching right now.
        let _ = self.changes.send(seq);
    }
}

async fn require_token(State(api): State<Api>, req: Request, next: Next) -> Response {
    let presented = auth::bearer(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()));
    let Some(secret) = presented else { return ControlPlaneError::Unauthorized.into_response() };
    let hash = auth::token_hash(secret);
    let grants = if hash == *api.bootstrap {
        auth::Grants::admin()
    } else {
        match api.store.token_scopes(&hash) {
            Ok(Some(scopes)) => auth::Grants::parse(&scopes).unwrap_or_default(),
            Ok(None) => return ControlPlaneError::Unauthorized.into_response(),
            Err(e) => return e.into_response(),
        }
    };
    let path = req.uri().path();
    let product = if path.starts_with("/v1/deployments") {
        Some(auth::Product::Workers)
    } else if path.starts_with("/v1/pages/") || path == "/v1/pages" {
        Some(auth::Product::Pages)
    } else if path.starts_with("/v1/cluster") {
        Some(auth::Product::Cluster)
    } else {
        None
    };
    let access = auth::Access::of_method(req.method().as_str());
    if !grants.allows(product, access) {
        let wanted = product.map_or("admin".to_string(), |p| {
            format!("{}:{}", p.as_str(), if access == auth::Access::Read { "read" } else { "edit" })
        });
        return ControlPlaneError::Forbidden(wanted).into_response();
    }
    next.run(req).await
}

/// The one mapping from control-plane errors to HTTP statuses.
pub fn status_of(error: &ControlPlaneError) -> StatusCode {
    match error {
        ControlPlaneError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlPlaneError::WorkerNotFound(_)
        | ControlPlaneError::VersionNotFound { .. }
        | ControlPlaneError::TokenNotFound(_)
        | ControlPlaneError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlPlaneError::Unauthorized => StatusCode::UNAUTHORIZED,
        ControlPlaneError::Conflict(_) => StatusCode::CONFLICT,
        ControlPlaneError::Forbidden(_) => StatusCode::FORBIDDEN,
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
    manifest.limits.within(&api.ceilings).map_err(|e| ControlPlaneError::Invalid(format!("manifest: {e}")))?;
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
    let exports = |name: &str| info.exports.iter().any(|e| e.starts_with(name));
    if !manifest.queue_consumers.is_empty() && !exports(crate::validate::QUEUE_HANDLER) {
        return Err(ControlPlaneError::Invalid(format!(
            "the manifest consumes queue `{}` but the component does not export `nimbus:worker/queue-handler` (a `queue` handler: `export default {{ queue(batch, env, ctx) }}` in JavaScript, `nimbus::queue_consumer!` in Rust)",
            manifest.queue_consumers[0].queue
        )));
    }
    if !manifest.crons.is_empty() && !exports(crate::validate::SCHEDULED_HANDLER) {
        return Err(ControlPlaneError::Invalid(
            "the manifest has cron triggers but the component does not export `nimbus:worker/scheduled-handler` (a `scheduled` handler: `export default { scheduled(controller, env, ctx) }` in JavaScript, `nimbus::scheduled!` in Rust)".into(),
        ));
    }
    // A route belongs to one worker: another worker's claim is refused here, not left to
    // each node's tie-break.
    let routes: Vec<String> = manifest.routes.iter().map(|r| nimbus_proto::manifest::route_key(r)).collect();
    for route in &manifest.routes {
        let host = route.split('/').next().unwrap_or("");
        if let Some(project) = api.store.pages_domain_owner(host)? {
            return Err(ControlPlaneError::Conflict(format!(
                "`{host}` is a custom domain of Pages project `{project}`; remove it there first"
            )));
        }
    }
    if !routes.is_empty() {
        let active = api.store.snapshot()?.workers;
        for other in active.iter().filter(|d| d.name != name) {
            let Ok(theirs) = serde_json::from_str::<WorkerManifest>(&other.manifest_json) else { continue };
            if let Some(route) =
                theirs.routes.iter().map(|r| nimbus_proto::manifest::route_key(r)).find(|r| routes.contains(r))
            {
                return Err(ControlPlaneError::Conflict(format!(
                    "route `{route}` is already claimed by worker `{}`; remove it there first",
                    other.name
                )));
            }
        }
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

async fn list_tokens(State(api): State<Api>) -> Result<Json<Vec<TokenInfo>>, ControlPlaneError> {
    Ok(Json(api.store.tokens()?))
}

/// Creates a token: its secret is in this answer and nowhere else (only its hash is kept).
async fn create_token(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedToken>), ControlPlaneError> {
    let req: CreateToken =
        serde_json::from_slice(&body).map_err(|e| ControlPlaneError::Invalid(format!("request body: {e}")))?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ControlPlaneError::Invalid("a token needs a name of 1 to 100 printable characters".into()));
    }
    if req.scopes.is_empty() || req.scopes.len() > 16 {
        return Err(ControlPlaneError::Invalid("a token needs 1 to 16 scopes".into()));
    }
    let grants = auth::Grants::parse(&req.scopes).map_err(|e| ControlPlaneError::Invalid(e.to_string()))?;
    let secret = format!("nmb_{}", crate::random_hex(32)?);
    let info = TokenInfo {
        id: crate::random_hex(8)?,
        name: name.to_string(),
        scopes: grants.scopes(),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let seq = api.store.create_token(&info, &auth::token_hash(&secret))?;
    api.notify(seq);
    tracing::info!(id = %info.id, name = %info.name, scopes = ?info.scopes, "token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token: secret })))
}

async fn revoke_token(State(api): State<Api>, Path(id): Path<String>) -> Result<StatusCode, ControlPlaneError> {
    let seq = api.store.revoke_token(&id)?.ok_or_else(|| ControlPlaneError::TokenNotFound(id.clone()))?;
    api.notify(seq);
    tracing::info!(%id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
