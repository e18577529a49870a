//! The KV REST API on every node: `/v1/kv/namespaces` (GET lists, `PUT …/{id}` declares),
//! `/v1/kv/{namespace}/values/{key}` (GET, PUT, DELETE), `/v1/kv/{namespace}/keys?prefix=&
//! limit=&cursor=`, and `/v1/node/kv` (this replica's size and digest, to compare nodes).
//! [`kv_response`] maps KV errors to HTTP, the one place for this API.

use super::Edge;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nimbus_api::control::ApiError;
use nimbus_api::kv::{Declared, Namespaces, Replica, ReplicaSummary, WriteVersion, Written};
use nimbus_kv::{KvError, PutOptions, MAX_LIST_LIMIT, MAX_VALUE_BYTES};
use serde::Deserialize;

pub fn routes() -> Router<Edge> {
    Router::new()
        .route("/v1/kv/{namespace}/values/{*key}", get(get_value).put(put_value).delete(delete_value))
        .route("/v1/kv/{namespace}/keys", get(list_keys))
        .route("/v1/kv/namespaces", get(list_namespaces))
        .route("/v1/kv/namespaces/{id}", axum::routing::put(declare_namespace))
        .route("/v1/node/kv", get(replica_summary))
        // One byte over the limit still arrives, so the store can say it is too large.
        .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES + 1))
}

fn kv_response(error: KvError) -> Response {
    let status = match &error {
        KvError::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        KvError::UnknownNamespace(_) => StatusCode::NOT_FOUND,
        e if e.is_client_error() => StatusCode::BAD_REQUEST,
        _ => {
            tracing::error!("kv: {error}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, Json(ApiError { error: error.to_string() })).into_response()
}

fn written(version: nimbus_kv::Version) -> Written {
    Written { version: WriteVersion { hlc: version.hlc, node: version.node } }
}

async fn get_value(State(edge): State<Edge>, Path((namespace, key)): Path<(String, String)>) -> Response {
    match edge.kv.get(&namespace, &key) {
        Ok(Some(entry)) => {
            let mut headers = HeaderMap::new();
            if let Some(metadata) = entry.metadata.as_deref().and_then(|m| HeaderValue::from_str(m).ok()) {
                headers.insert("x-nimbus-metadata", metadata);
            }
            if let Some(expiration) = entry.expiration {
                headers.insert("x-nimbus-expiration", HeaderValue::from(expiration));
            }
            (headers, entry.value.unwrap_or_default()).into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, Json(ApiError { error: format!("key `{key}` not found") })).into_response(),
        Err(e) => kv_response(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    expiration: Option<u64>,
    expiration_ttl: Option<u64>,
    /// JSON text.
    metadata: Option<String>,
}

async fn put_value(
    State(edge): State<Edge>,
    Path((namespace, key)): Path<(String, String)>,
    Query(query): Query<PutQuery>,
    body: Bytes,
) -> Response {
    let options =
        PutOptions { expiration: query.expiration, expiration_ttl: query.expiration_ttl, metadata: query.metadata };
    // KV writes are not synced one by one (see `kv.wal_sync_ms`), so a write is a memtable
    // insert and a WAL append: cheaper inline than a hop to the blocking pool.
    match edge.kv.put(&namespace, &key, body.to_vec(), options) {
        Ok(entry) => Json(written(entry.version)).into_response(),
        Err(e) => kv_response(e),
    }
}

async fn delete_value(State(edge): State<Edge>, Path((namespace, key)): Path<(String, String)>) -> Response {
    match edge.kv.delete(&namespace, &key) {
        Ok(entry) => Json(written(entry.version)).into_response(),
        Err(e) => kv_response(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_keys(
    State(edge): State<Edge>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let prefix = query.prefix.unwrap_or_default();
    match edge.kv.list(&namespace, &prefix, query.limit.unwrap_or(MAX_LIST_LIMIT), query.cursor.as_deref()) {
        Ok(page) => Json(page).into_response(),
        Err(e) => kv_response(e),
    }
}

async fn list_namespaces(State(edge): State<Edge>) -> Response {
    match edge.kv.namespaces() {
        Ok(namespaces) => Json(Namespaces { namespaces }).into_response(),
        Err(e) => kv_response(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeclareBody {
    title: Option<String>,
}

/// Declares a namespace (idempotent): 201 when new, 200 when it existed.
async fn declare_namespace(State(edge): State<Edge>, Path(id): Path<String>, body: Bytes) -> Response {
    let declare: DeclareBody = if body.is_empty() {
        DeclareBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(declare) => declare,
            Err(e) => {
                let error = format!("body must be JSON like {{\"title\": \"…\"}}: {e}");
                return (StatusCode::BAD_REQUEST, Json(ApiError { error })).into_response();
            }
        }
    };
    let store = edge.kv.clone();
    let created = tokio::task::spawn_blocking({
        let id = id.clone();
        move || store.declare_namespace(&id, declare.title.as_deref())
    })
    .await;
    match created {
        Ok(Ok(created)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(Declared { id, created })).into_response()
        }
        Ok(Err(e)) => kv_response(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// How big this node's replica is and a digest of all of it: equal digests on two nodes
/// mean equal replicas.
async fn replica_summary(State(edge): State<Edge>) -> Response {
    let digests = edge.kv.digests();
    Json(Replica {
        node_id: edge.node_id.to_string(),
        summary: ReplicaSummary { entries: digests.entries(), digest: format!("{:016x}", digests.root()) },
    })
    .into_response()
}
