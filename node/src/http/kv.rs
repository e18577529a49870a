//! The KV REST API on every node: `/v1/kv/{namespace}/values/{key}` (GET, PUT, DELETE) and
//! `/v1/kv/{namespace}/keys?prefix=&limit=&cursor=`. [`kv_response`] maps KV errors to HTTP,
//! the one place for this API.

use super::Edge;
use crate::kv::{KvError, PutOptions, MAX_LIST_LIMIT, MAX_VALUE_BYTES};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<Edge> {
    Router::new()
        .route("/v1/kv/{namespace}/values/{*key}", get(get_value).put(put_value).delete(delete_value))
        .route("/v1/kv/{namespace}/keys", get(list_keys))
        // One byte over the limit still arrives, so the store can say it is too large.
        .layer(DefaultBodyLimit::max(MAX_VALUE_BYTES + 1))
}

fn kv_response(error: KvError) -> Response {
    let status = match &error {
        KvError::ValueTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        e if e.is_client_error() => StatusCode::BAD_REQUEST,
        _ => {
            tracing::error!("kv: {error}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, Json(serde_json::json!({ "error": error.to_string() }))).into_response()
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
        Ok(None) => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("key `{key}` not found") })))
            .into_response(),
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
    let store = edge.kv.clone();
    let written = tokio::task::spawn_blocking(move || store.put(&namespace, &key, body.to_vec(), options)).await;
    match written {
        Ok(Ok(entry)) => Json(serde_json::json!({ "version": entry.version })).into_response(),
        Ok(Err(e)) => kv_response(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn delete_value(State(edge): State<Edge>, Path((namespace, key)): Path<(String, String)>) -> Response {
    let store = edge.kv.clone();
    match tokio::task::spawn_blocking(move || store.delete(&namespace, &key)).await {
        Ok(Ok(entry)) => Json(serde_json::json!({ "version": entry.version })).into_response(),
        Ok(Err(e)) => kv_response(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
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
