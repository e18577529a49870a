//! The D1 REST API on every node:
//! - `GET /v1/d1/databases`, `PUT /v1/d1/databases/{name}` (create, idempotent);
//! - `POST /v1/d1/{db}/query` with `{sql, params}` or `{batch: [{sql, params}…]}`, plus how
//!   to read (see [`read_level`]): rows, meta (who served it, where, whether the primary)
//!   and a bookmark;
//! - `POST /v1/d1/{db}/exec` with `{sql}`: a `;`-separated script as one write;
//! - `GET /v1/d1/{db}/checksum`: this replica's checksum of the data, to compare replicas;
//! - `GET /v1/node/d1`: this node's view of the Raft group.
//!
//! Values travel as JSON: null, numbers (integers stay integers), strings, and blobs as
//! `{"blob": "<base64>"}`; booleans bind as 1 / 0. [`d1_response`] maps D1 errors to HTTP,
//! the one place for this API.

use super::Edge;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use nimbus_api::d1::{
    self as api, Checksum, Created, D1ErrorBody, Databases, Executed, Meta, SqlValue, StatementResult,
};
use nimbus_d1::{Consistency, D1Error, QueryReply, Statement, Value};
use serde::Deserialize;
use serde_json::Value as JsonValue;

pub fn routes() -> Router<Edge> {
    Router::new()
        .route("/v1/d1/databases", get(list_databases))
        .route("/v1/d1/databases/{name}", put(create_database))
        .route("/v1/d1/{database}/query", post(query))
        .route("/v1/d1/{database}/exec", post(exec))
        .route("/v1/d1/{database}/checksum", get(checksum))
        .route("/v1/node/d1", get(status))
        // Room for a full batch of statements at D1's limits; a larger body is a 413.
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
}

fn d1_response(error: D1Error) -> Response {
    let (status, kind) = match &error {
        D1Error::UnknownDatabase(_) => (StatusCode::NOT_FOUND, "unknown-database"),
        D1Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
        D1Error::Sql { .. } => (StatusCode::BAD_REQUEST, "sql"),
        D1Error::InvalidName(_) | D1Error::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        D1Error::BookmarkTimeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "bookmark-timeout"),
        D1Error::Unavailable(_) | D1Error::ForwardToLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        D1Error::Internal(_) | D1Error::Storage(_) => {
            tracing::error!("d1: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    let statement = match &error {
        D1Error::Sql { index, .. } => Some(*index),
        _ => None,
    };
    (status, Json(D1ErrorBody { error: error.to_string(), kind: kind.into(), statement })).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    d1_response(D1Error::Invalid(message.into()))
}

/// A JSON request body, or why it could not be read (answered as a 400 like any bad input).
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn bad_body(rejection: axum::extract::rejection::JsonRejection) -> Response {
    bad_request(format!("bad request body: {}", rejection.body_text()))
}

async fn list_databases(State(edge): State<Edge>) -> Response {
    let d1 = edge.d1.clone();
    match tokio::task::spawn_blocking(move || d1.list()).await {
        Ok(databases) => Json(Databases { databases }).into_response(),
        Err(e) => d1_response(D1Error::Internal(e.to_string())),
    }
}

async fn create_database(State(edge): State<Edge>, Path(name): Path<String>) -> Response {
    match edge.d1.create(&name).await {
        Ok((created, bookmark)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(Created { name, created, bookmark: bookmark.to_string() })).into_response()
        }
        Err(e) => d1_response(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementBody {
    sql: String,
    #[serde(default)]
    params: Vec<JsonValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: Option<String>,
    #[serde(default)]
    params: Vec<JsonValue>,
    batch: Option<Vec<StatementBody>>,
    consistency: Option<Consistency>,
    bookmark: Option<JsonValue>,
    /// A session step, as `withSession` takes it: `first-unconstrained`, `first-primary`, or
    /// the bookmark of the session's previous reply.
    session: Option<String>,
}

fn to_value(json: &JsonValue) -> Result<Value, String> {
    Ok(match json {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Integer(i64::from(*b)),
        JsonValue::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().ok_or_else(|| format!("{n} is not a number SQLite can hold"))?),
        },
        JsonValue::String(s) => Value::Text(s.clone()),
        JsonValue::Object(o) => match o.get("blob").and_then(JsonValue::as_str) {
            Some(b64) if o.len() == 1 => Value::Blob(
                base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("bad base64 blob: {e}"))?,
            ),
            _ => return Err("an object parameter must be {\"blob\": \"<base64>\"}".into()),
        },
        JsonValue::Array(_) => return Err("a parameter cannot be an array".into()),
    })
}

fn to_sql_value(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob { blob: base64::engine::general_purpose::STANDARD.encode(b) },
    }
}

fn statement(sql: String, params: &[JsonValue]) -> Result<Statement, String> {
    Ok(Statement { sql, params: params.iter().map(to_value).collect::<Result<_, _>>()? })
}

fn parse_bookmark(json: &Option<JsonValue>) -> Result<Option<u64>, String> {
    match json {
        None | Some(JsonValue::Null) => Ok(None),
        Some(JsonValue::Number(n)) => n.as_u64().map(Some).ok_or_else(|| format!("`{n}` is not a bookmark")),
        Some(JsonValue::String(s)) => s.parse().map(Some).map_err(|_| format!("`{s}` is not a bookmark")),
        Some(other) => Err(format!("`{other}` is not a bookmark")),
    }
}

/// How a query is read. Without `session` or `consistency` it has primary semantics
/// (Cloudflare's default); a `bookmark` alone continues a session. `session` takes the
/// Workers API's constraints: `first-unconstrained` reads the local replica as it is,
/// `first-primary` reads with primary semantics, a bookmark waits for it here; the reply's
/// `bookmark` is what to send as `session` next. `consistency` names a level outright.
fn read_level(
    consistency: Option<Consistency>,
    bookmark: Option<u64>,
    session: Option<&str>,
) -> Result<(Consistency, Option<u64>), String> {
    match (session, consistency, bookmark) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err("give `session` alone, or `consistency` (with a `bookmark` for `bookmark`)".into())
        }
        (Some("first-unconstrained"), ..) => Ok((Consistency::Local, None)),
        (Some("first-primary"), ..) => Ok((Consistency::Primary, None)),
        (Some(text), ..) => match text.parse() {
            Ok(index) => Ok((Consistency::Bookmark, Some(index))),
            Err(_) => Err(format!(
                "`{text}` is not a session constraint: use first-unconstrained, first-primary or a bookmark"
            )),
        },
        (None, None, None) => Ok((Consistency::Primary, None)),
        (None, None | Some(Consistency::Local), Some(index)) => Ok((Consistency::Bookmark, Some(index))),
        (None, Some(level), bookmark) => Ok((level, bookmark)),
    }
}

/// A query body's statements and how to read them.
fn parse_query(body: QueryBody) -> Result<(Vec<Statement>, Consistency, Option<u64>), String> {
    let statements = match (body.sql, body.batch) {
        (Some(sql), None) => vec![statement(sql, &body.params)?],
        (None, Some(batch)) => batch.into_iter().map(|s| statement(s.sql, &s.params)).collect::<Result<_, _>>()?,
        _ => return Err("give either `sql` (with `params`) or `batch`".into()),
    };
    let bookmark = parse_bookmark(&body.bookmark)?;
    let (consistency, bookmark) = read_level(body.consistency, bookmark, body.session.as_deref())?;
    Ok((statements, consistency, bookmark))
}

/// The D1 query body as the REST API reads it, for the fuzz targets in `fuzz/`: the
/// statements, or why the body is a 400.
#[cfg(fuzzing)]
pub fn fuzz_query_body(bytes: &[u8]) -> Result<Vec<Statement>, String> {
    let body: QueryBody = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    parse_query(body).map(|(statements, _, _)| statements)
}

fn reply_json(reply: QueryReply, consistency: Consistency) -> api::QueryReply {
    let (served_by, region, primary) =
        (reply.served_by.clone(), reply.served_by_region.clone(), reply.served_by_primary);
    let results = reply
        .results
        .into_iter()
        .map(|r| StatementResult {
            columns: r.columns,
            rows: r.rows.into_iter().map(|row| row.into_iter().map(to_sql_value).collect()).collect(),
            meta: Meta {
                changes: r.changes,
                last_row_id: r.last_row_id,
                duration_ms: r.duration_us as f64 / 1000.0,
                served_by: served_by.clone(),
                served_by_region: region.clone(),
                served_by_primary: primary,
            },
        })
        .collect();
    api::QueryReply {
        results,
        bookmark: reply.bookmark.to_string(),
        served_by: reply.served_by,
        served_by_region: reply.served_by_region,
        served_by_primary: reply.served_by_primary,
        wrote: reply.wrote,
        consistency,
        staleness_ms: reply.staleness_ms,
    }
}

async fn query(State(edge): State<Edge>, Path(database): Path<String>, body: JsonBody<QueryBody>) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(e) => return bad_body(e),
    };
    let (statements, consistency, bookmark) = match parse_query(body) {
        Ok(query) => query,
        Err(e) => return bad_request(e),
    };
    match edge.d1.query(&database, statements, consistency, bookmark).await {
        Ok(reply) => Json(reply_json(reply, consistency)).into_response(),
        Err(e) => d1_response(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    sql: String,
}

async fn exec(State(edge): State<Edge>, Path(database): Path<String>, body: JsonBody<ExecBody>) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(e) => return bad_body(e),
    };
    match edge.d1.exec(&database, &body.sql).await {
        Ok((count, bookmark)) => Json(Executed { count, bookmark: bookmark.to_string() }).into_response(),
        Err(e) => d1_response(e),
    }
}

async fn checksum(State(edge): State<Edge>, Path(database): Path<String>) -> Response {
    let applied = edge.d1.status().applied_index;
    match edge.d1.checksum(&database).await {
        Ok(checksum) => Json(Checksum { database, checksum, applied_index: applied }).into_response(),
        Err(e) => d1_response(e),
    }
}

async fn status(State(edge): State<Edge>) -> Response {
    Json(edge.d1.status()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_without_a_session_reads_with_primary_semantics() {
        assert_eq!(read_level(None, None, None), Ok((Consistency::Primary, None)));
    }

    #[test]
    fn sessions_start_as_the_workers_api_starts_them_and_continue_from_a_bookmark() {
        assert_eq!(read_level(None, None, Some("first-unconstrained")), Ok((Consistency::Local, None)));
        assert_eq!(read_level(None, None, Some("first-primary")), Ok((Consistency::Primary, None)));
        assert_eq!(read_level(None, None, Some("42")), Ok((Consistency::Bookmark, Some(42))));
        assert_eq!(read_level(None, Some(42), None), Ok((Consistency::Bookmark, Some(42))));
        assert_eq!(read_level(Some(Consistency::Local), Some(7), None), Ok((Consistency::Bookmark, Some(7))));
        assert_eq!(read_level(Some(Consistency::Local), None, None), Ok((Consistency::Local, None)));
        assert_eq!(read_level(Some(Consistency::Linearizable), None, None), Ok((Consistency::Linearizable, None)));
    }

    #[test]
    fn a_session_with_another_level_or_a_bad_constraint_is_refused() {
        assert!(read_level(Some(Consistency::Local), None, Some("first-primary")).is_err());
        assert!(read_level(None, Some(3), Some("first-primary")).is_err());
        let error = read_level(None, None, Some("first-whatever")).expect_err("a bad constraint");
        assert!(error.contains("first-unconstrained"), "{error}");
    }
}
