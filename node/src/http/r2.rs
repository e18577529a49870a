//! R2's management API on every node: `/v1/r2/buckets` (GET lists, POST creates,
//! `DELETE …/{name}`), `/v1/r2/buckets/{bucket}/objects?prefix=&delimiter=&cursor=&limit=`
//! (a page), `/v1/r2/buckets/{bucket}/objects/{*key}` (GET, PUT, DELETE; bodies streamed),
//! `/v1/r2/keys` (S3 access keys: GET lists ids, POST creates and shows the secret once,
//! `DELETE …/{id}`), and `/v1/r2/maintain` (a round of repair and garbage collection now).
//! Scope `r2`. [`r2_response`] maps R2 errors to HTTP, the one place for this API.

use super::Edge;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::StreamExt;
use nimbus_api::control::ApiError;
use nimbus_api::r2::{
    AccessKeyCreated, AccessKeyInfo, AccessKeys, Bucket, Buckets, CreateAccessKey, CreateBucket, MaintenanceRound,
    ObjectInfo, ObjectPage,
};
use nimbus_r2::meta::{HttpMetadata, Object};
use nimbus_r2::{Got, PutOptions, R2Error};
use serde::Deserialize;

pub fn routes() -> Router<Edge> {
    Router::new()
        .route("/v1/r2/buckets", get(list_buckets).post(create_bucket))
        .route("/v1/r2/buckets/{bucket}", delete(delete_bucket))
        .route("/v1/r2/buckets/{bucket}/objects", get(list_objects))
        .route("/v1/r2/buckets/{bucket}/objects/{*key}", get(get_object).put(put_object).delete(delete_object))
        .route("/v1/r2/keys", get(list_keys).post(create_key))
        .route("/v1/r2/keys/{id}", delete(delete_key))
        .route("/v1/r2/maintain", post(maintain))
}

fn r2_response(error: R2Error) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!("r2: {error}");
    }
    (status, Json(ApiError { error: error.to_string() })).into_response()
}

fn info(object: &Object) -> ObjectInfo {
    ObjectInfo {
        key: object.key.clone(),
        version: object.version.clone(),
        size: object.size,
        etag: object.etag.clone(),
        uploaded_ms: object.uploaded_ms,
        content_type: object.http.content_type.clone(),
        custom_metadata: object.custom.clone(),
        chunks: object.chunks.len(),
    }
}

async fn list_buckets(State(edge): State<Edge>) -> Response {
    match edge.r2.buckets().await {
        Ok(buckets) => Json(Buckets {
            buckets: buckets.into_iter().map(|b| Bucket { name: b.name, created_ms: b.created_ms }).collect(),
        })
        .into_response(),
        Err(e) => r2_response(e),
    }
}

async fn create_bucket(State(edge): State<Edge>, Json(request): Json<CreateBucket>) -> Response {
    match edge.r2.create_bucket(&request.name).await {
        Ok(()) => (StatusCode::CREATED, Json(request)).into_response(),
        Err(e) => r2_response(e),
    }
}

async fn delete_bucket(State(edge): State<Edge>, Path(bucket): Path<String>) -> Response {
    match edge.r2.delete_bucket(&bucket).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => r2_response(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    delimiter: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list_objects(
    State(edge): State<Edge>,
    Path(bucket): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(nimbus_r2::meta::MAX_LIST_KEYS);
    let listing =
        edge.r2.list(&bucket, &query.prefix, query.delimiter.as_deref(), query.cursor.as_deref(), limit).await;
    match listing {
        Ok(listing) => Json(ObjectPage {
            objects: listing.objects.iter().map(info).collect(),
            delimited_prefixes: listing.prefixes,
            cursor: listing.truncated.then_some(listing.last).flatten(),
            truncated: listing.truncated,
        })
        .into_response(),
        Err(e) => r2_response(e),
    }
}

async fn get_object(
    State(edge): State<Edge>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match edge.r2.get(&bucket, &key, range, &Default::default()).await {
        Ok(Got::Body(found)) => {
            let length = found.range.map_or(found.object.size, |r| r.len());
            let body = Body::from_stream(found.body.map(|chunk| chunk.map_err(std::io::Error::other)));
            let mut response = Response::new(body);
            if found.range.is_some() {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            }
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", found.object.etag)) {
                headers.insert(header::ETAG, etag);
            }
            let content_type = found.object.http.content_type.as_deref().unwrap_or("application/octet-stream");
            if let Ok(value) = HeaderValue::from_str(content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Ok(Got::NotModified(_)) => StatusCode::NOT_MODIFIED.into_response(),
        Err(e) => r2_response(e),
    }
}

async fn put_object(
    State(edge): State<Edge>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let options = PutOptions {
        http: HttpMetadata { content_type: text(header::CONTENT_TYPE), ..HttpMetadata::default() },
        content_length: text(header::CONTENT_LENGTH).and_then(|l| l.parse().ok()),
        ..PutOptions::default()
    };
    let stream =
        body.into_data_stream().map(|data| data.map_err(|e| R2Error::InvalidRequest(format!("the body: {e}"))));
    match edge.r2.put(&bucket, &key, Box::pin(stream), options).await {
        Ok(object) => (StatusCode::CREATED, Json(info(&object))).into_response(),
        Err(e) => r2_response(e),
    }
}

async fn delete_object(State(edge): State<Edge>, Path((bucket, key)): Path<(String, String)>) -> Response {
    match edge.r2.delete(&bucket, vec![key]).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => r2_response(e),
    }
}

async fn list_keys(State(edge): State<Edge>) -> Response {
    match edge.r2.access_keys().await {
        Ok(keys) => Json(AccessKeys {
            keys: keys
                .into_iter()
                .map(|k| AccessKeyInfo { access_key_id: k.id, name: k.name, created_ms: k.created_ms })
                .collect(),
        })
        .into_response(),
        Err(e) => r2_response(e),
    }
}

async fn create_key(State(edge): State<Edge>, Json(request): Json<CreateAccessKey>) -> Response {
    if request.name.len() > 128 {
        return r2_response(R2Error::InvalidRequest("a key's name is at most 128 bytes".into()));
    }
    match edge.r2.create_access_key(&request.name).await {
        Ok(key) => (
            StatusCode::CREATED,
            Json(AccessKeyCreated { access_key_id: key.id, secret_access_key: key.secret, name: key.name }),
        )
            .into_response(),
        Err(e) => r2_response(e),
    }
}

async fn delete_key(State(edge): State<Edge>, Path(id): Path<String>) -> Response {
    match edge.r2.delete_access_key(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => r2_response(e),
    }
}

async fn maintain(State(edge): State<Edge>) -> Response {
    match edge.r2.maintain().await {
        Ok(round) => Json(MaintenanceRound {
            repaired: round.repaired,
            missing: round.missing,
            collected: round.collected,
            expired_uploads: round.expired_uploads,
            chunks_here: edge.r2.chunk_count(),
        })
        .into_response(),
        Err(e) => r2_response(e),
    }
}
