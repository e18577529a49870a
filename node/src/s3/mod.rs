//! The S3 API (`r2.s3.listen`, 9000 in the compose cluster): R2's buckets and objects for S3
//! clients (boto3, the aws CLI, rclone …), on a listener of its own.
//!
//! A third public surface beside the edge and the management API: it serves S3 requests
//! signed with an R2 access key (SigV4 in the `Authorization` header or presigned in the
//! URL) and CORS preflights, nothing else. Path-style (`/bucket/key`) and virtual-host-style
//! (`bucket.<r2.s3.domain>/key`) addressing both work. [`error_response`] is the one place an
//! [`R2Error`] becomes an S3 error document.
//!
//! Bodies stream both ways: a PUT is cut into chunks as it arrives, a GET sends chunks as
//! they are fetched. A signed payload hash (`x-amz-content-sha256`) and `Content-MD5` are
//! checked before the object is committed; nothing is committed from a body that fails them.
//!
//! # Layout
//! - [`xml`]: the documents S3 reads and writes, and its date formats.
//! - [`request`]: what a request addresses and carries (bucket, key, headers → options).
//! - [`cors`]: bucket CORS rules, preflights and the headers on actual responses.

mod cors;
mod request;
pub mod xml;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use nimbus_r2::conditions::Conditions;
use nimbus_r2::meta::{Object, MAX_LIST_KEYS};
use nimbus_r2::{sigv4, BodyStream, Got, PutOptions, R2Error, R2};
use request::{Addressed, Query};
use std::sync::Arc;

/// The most bytes of a request document (a completion lists up to 10,000 parts).
const MAX_DOCUMENT_BYTES: usize = 2 << 20;
/// Keys one DeleteObjects may name (S3's limit).
const MAX_DELETE_KEYS: usize = 1000;

#[derive(Clone)]
pub struct S3 {
    r2: R2,
    /// `<bucket>.<domain>` is virtual-host style; empty: path-style only.
    domain: Arc<str>,
    node_id: Arc<str>,
}

impl S3 {
    pub fn new(r2: R2, domain: &str, node_id: &str) -> S3 {
        S3 { r2, domain: domain.trim_start_matches('.').into(), node_id: node_id.into() }
    }

    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self)
    }
}

/// What a handler answers: a response, or an error that becomes an S3 error document.
type Answer = Result<Response, R2Error>;

async fn handle(State(s3): State<S3>, request: Request<Body>) -> Response {
    // The body is not `Sync`: the rest of the request travels by reference apart from it.
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let addressed = request::address(&parts, &s3.domain);
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let resource = parts.uri.path().to_owned();
    // A stranger learns nothing before the signature: only a preflight (which browsers never
    // sign) is answered unauthenticated.
    let verified = match method {
        Method::OPTIONS => None,
        _ => Some(authenticate(&s3.r2, &parts).await),
    };
    let answer = match (addressed, verified) {
        (_, Some(Err(e))) | (Err(e), _) => Err(e),
        (Ok(addressed), None) => cors::preflight(&s3.r2, &addressed, &parts.headers).await,
        (Ok(addressed), Some(Ok(verified))) => {
            let bucket = addressed.bucket.clone();
            let mut answer = route(&s3, addressed, verified, &parts, body).await;
            if let (Some(origin), Some(bucket), Ok(response)) = (&origin, bucket, &mut answer) {
                cors::decorate(&s3.r2, &bucket, origin, &method, response.headers_mut()).await;
            }
            answer
        }
    };
    let mut response = answer.unwrap_or_else(|e| error_response(&e, &resource, method == Method::HEAD));
    if let Ok(node) = HeaderValue::from_str(&s3.node_id) {
        response.headers_mut().insert("x-amz-request-id", request::request_id());
        response.headers_mut().insert("x-nimbus-node", node);
    }
    response
}

/// The S3 error document for `error` (no body for HEAD, as S3 answers).
pub fn error_response(error: &R2Error, resource: &str, head: bool) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(resource, "s3: {error}");
    }
    if head {
        return status.into_response();
    }
    let mut document = xml::Writer::new("Error");
    document.field("Code", error.s3_code()).field("Message", error).field("Resource", resource);
    let body = document.finish("Error").replace(" xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"", "");
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Checks the request's signature with its access key's secret.
async fn authenticate(r2: &R2, request: &Parts) -> Result<sigv4::Verified, R2Error> {
    let headers: Vec<(&str, &str)> =
        request.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
    let signed = sigv4::Request {
        method: request.method.as_str(),
        path: request.uri.path(),
        query: request.uri.query().unwrap_or(""),
        headers: &headers,
    };
    let Some(key_id) = sigv4::access_key_id(&signed) else {
        return Err(R2Error::AccessDenied("the request is not signed with an R2 access key"));
    };
    let secret = r2.secret_of(&key_id).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    sigv4::verify(&signed, now, |_| secret)
}

async fn route(s3: &S3, addressed: Addressed, verified: sigv4::Verified, request: &Parts, body: Body) -> Answer {
    let r2 = &s3.r2;
    let query = Query::parse(request.uri.query().unwrap_or(""));
    let method = request.method.clone();
    let headers = &request.headers;
    let Some(bucket) = addressed.bucket.clone() else {
        return match method {
            Method::GET => list_buckets(r2).await,
            _ => Err(R2Error::InvalidRequest("only ListBuckets addresses no bucket".into())),
        };
    };
    let Some(key) = addressed.key.clone() else {
        return match method {
            Method::PUT if query.has("cors") => put_cors(r2, &bucket, body).await,
            Method::PUT => {
                r2.create_bucket(&bucket).await?;
                Ok((StatusCode::OK, [(header::LOCATION, format!("/{bucket}"))]).into_response())
            }
            Method::DELETE if query.has("cors") => {
                r2.bucket(&bucket).await?;
                r2.put_cors(&bucket, None).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Method::DELETE => {
                r2.delete_bucket(&bucket).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Method::HEAD => {
                r2.bucket(&bucket).await?;
                Ok((StatusCode::OK, [("x-amz-bucket-region", "auto")]).into_response())
            }
            Method::GET if query.has("location") => {
                r2.bucket(&bucket).await?;
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">auto</LocationConstraint>";
                Ok(xml_response(body.to_owned()))
            }
            Method::GET if query.has("cors") => get_cors(r2, &bucket).await,
            Method::GET if query.has("uploads") => list_uploads(r2, &bucket, &query).await,
            Method::GET if query.get("list-type") == Some("2") => list_objects(r2, &bucket, &query, true).await,
            Method::GET => list_objects(r2, &bucket, &query, false).await,
            Method::POST if query.has("delete") => delete_objects(r2, &bucket, body).await,
            _ => Err(R2Error::InvalidRequest(format!("{method} on a bucket is not an S3 operation R2 serves"))),
        };
    };
    match method {
        Method::PUT if headers.contains_key("x-amz-copy-source") => match query.upload() {
            Some((upload_id, part)) => upload_part_copy(r2, &bucket, &key, &upload_id, part, headers).await,
            None => copy_object(r2, &bucket, &key, headers).await,
        },
        Method::PUT => match query.upload() {
            Some((upload_id, part)) => {
                upload_part(r2, (&bucket, &key, &upload_id), part, &verified, headers, body).await
            }
            None => put_object(r2, &bucket, &key, &verified, headers, body).await,
        },
        Method::GET if query.has("uploadId") => list_parts(r2, &bucket, &key, &query).await,
        Method::GET => get_object(r2, &bucket, &key, &query, headers, false).await,
        Method::HEAD => get_object(r2, &bucket, &key, &query, headers, true).await,
        Method::DELETE if query.has("uploadId") => {
            r2.abort_upload(&bucket, &key, query.get("uploadId").unwrap_or("")).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::DELETE => {
            r2.delete(&bucket, vec![key]).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::POST if query.has("uploads") => {
            let (http, custom) = request::metadata(headers)?;
            let upload = r2.create_upload(&bucket, &key, http, custom).await?;
            let mut document = xml::Writer::new("InitiateMultipartUploadResult");
            document.field("Bucket", &bucket).field("Key", &key).field("UploadId", &upload.id);
            Ok(xml_response(document.finish("InitiateMultipartUploadResult")))
        }
        Method::POST if query.has("uploadId") => {
            complete_upload(r2, &bucket, &key, query.get("uploadId").unwrap_or(""), headers, body).await
        }
        _ => Err(R2Error::InvalidRequest(format!("{method} on an object is not an S3 operation R2 serves"))),
    }
}

fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// A request document, read whole (bounded).
async fn document(body: Body) -> Result<xml::Element, R2Error> {
    let bytes = axum::body::to_bytes(body, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| R2Error::InvalidRequest(format!("the request document: {e}")))?;
    xml::parse(&bytes)
        .ok_or_else(|| R2Error::Limit { code: "MalformedXML".into(), message: "the XML is not well-formed".into() })
}

/// The body as a stream, decoded from `aws-chunked` if the client sent it so.
fn body_stream(verified: &sigv4::Verified, body: Body) -> Result<BodyStream, R2Error> {
    let chunked = verified.payload.starts_with("STREAMING-");
    if chunked && !matches!(verified.payload.as_str(), "STREAMING-UNSIGNED-PAYLOAD-TRAILER" | sigv4::STREAMING_SIGNED) {
        return Err(R2Error::InvalidRequest(format!(
            "x-amz-content-sha256: {} is not supported; send {} (signed chunks), STREAMING-UNSIGNED-PAYLOAD-TRAILER, the payload's SHA-256 or UNSIGNED-PAYLOAD",
            verified.payload,
            sigv4::STREAMING_SIGNED
        )));
    }
    let raw = body.into_data_stream().map(|data| data.map_err(|e| R2Error::InvalidRequest(format!("the body: {e}"))));
    if chunked {
        Ok(request::aws_chunked(Box::pin(raw), verified.chunks.clone()))
    } else {
        Ok(Box::pin(raw))
    }
}

/// The declared body length: `x-amz-decoded-content-length` for aws-chunked bodies.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    value("x-amz-decoded-content-length").or_else(|| value("content-length"))
}

/// The digests a client vouched for.
struct Declared {
    md5: Option<[u8; 16]>,
    sha256: Option<[u8; 32]>,
}

/// The digests the client vouched for: `Content-MD5`, and a signed payload SHA-256.
fn declared_digests(verified: &sigv4::Verified, headers: &HeaderMap) -> Result<Declared, R2Error> {
    let md5 = match headers.get("content-md5") {
        Some(value) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .map_err(|_| R2Error::InvalidRequest("Content-MD5 is not base64".into()))?;
            Some(
                <[u8; 16]>::try_from(bytes.as_slice())
                    .map_err(|_| R2Error::InvalidRequest("Content-MD5 is not 16 bytes".into()))?,
            )
        }
        None => None,
    };
    let mut sha256 = [0u8; 32];
    let sha256 = hex::decode_to_slice(&verified.payload, &mut sha256).ok().map(|()| sha256);
    Ok(Declared { md5, sha256 })
}

async fn put_object(
    r2: &R2,
    bucket: &str,
    key: &str,
    verified: &sigv4::Verified,
    headers: &HeaderMap,
    body: Body,
) -> Answer {
    let (http, custom) = request::metadata(headers)?;
    let Declared { md5, sha256 } = declared_digests(verified, headers)?;
    let options = PutOptions {
        http,
        custom,
        conditions: request::conditions(headers, ""),
        content_length: content_length(headers),
        md5,
        sha256,
    };
    let object = r2.put(bucket, key, body_stream(verified, body)?, options).await?;
    Ok(([(header::ETAG, quoted(&object.etag))], "").into_response())
}

async fn upload_part(
    r2: &R2,
    (bucket, key, upload_id): (&str, &str, &str),
    part: u32,
    verified: &sigv4::Verified,
    headers: &HeaderMap,
    body: Body,
) -> Answer {
    let Declared { md5, sha256 } = declared_digests(verified, headers)?;
    let body = body_stream(verified, body)?;
    let part = r2.upload_part(bucket, key, upload_id, part, body, content_length(headers), md5, sha256).await?;
    Ok(([(header::ETAG, quoted(&part.etag))], "").into_response())
}

/// `x-amz-copy-source`: `bucket/key` (URL-encoded, an optional leading `/`).
fn copy_source(headers: &HeaderMap) -> Result<(String, String), R2Error> {
    let raw = headers.get("x-amz-copy-source").and_then(|v| v.to_str().ok()).unwrap_or("");
    let raw = raw.split('?').next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(raw.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| R2Error::InvalidRequest("x-amz-copy-source is not UTF-8".into()))?;
    match decoded.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok((bucket.to_owned(), key.to_owned())),
        _ => Err(R2Error::InvalidRequest("x-amz-copy-source is <bucket>/<key>".into())),
    }
}

async fn copy_object(r2: &R2, bucket: &str, key: &str, headers: &HeaderMap) -> Answer {
    let (source_bucket, source_key) = copy_source(headers)?;
    let replace =
        headers.get("x-amz-metadata-directive").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"REPLACE"));
    let metadata = if replace { Some(request::metadata(headers)?) } else { None };
    let object = r2
        .copy(
            (&source_bucket, &source_key),
            &request::conditions(headers, "x-amz-copy-source-"),
            (bucket, key),
            metadata,
            Conditions::default(),
        )
        .await?;
    let mut document = xml::Writer::new("CopyObjectResult");
    document.field("LastModified", xml::iso8601(object.uploaded_ms)).field("ETag", quoted(&object.etag));
    Ok(xml_response(document.finish("CopyObjectResult")))
}

async fn upload_part_copy(r2: &R2, bucket: &str, key: &str, upload_id: &str, part: u32, headers: &HeaderMap) -> Answer {
    let (source_bucket, source_key) = copy_source(headers)?;
    let range = headers.get("x-amz-copy-source-range").and_then(|v| v.to_str().ok());
    let part = r2
        .upload_part_copy(
            (bucket, key, upload_id),
            part,
            (&source_bucket, &source_key),
            range,
            &request::conditions(headers, "x-amz-copy-source-"),
        )
        .await?;
    let mut document = xml::Writer::new("CopyPartResult");
    document.field("LastModified", xml::iso8601(part.uploaded_ms)).field("ETag", quoted(&part.etag));
    Ok(xml_response(document.finish("CopyPartResult")))
}

async fn complete_upload(r2: &R2, bucket: &str, key: &str, upload_id: &str, headers: &HeaderMap, body: Body) -> Answer {
    let conditions = request::conditions(headers, "");
    let root = document(body).await?;
    let mut parts = Vec::new();
    for part in root.children("Part") {
        let number = part.text_of("PartNumber").and_then(|n| n.parse::<u32>().ok());
        let etag = part.text_of("ETag");
        match (number, etag) {
            (Some(number), Some(etag)) => parts.push((number, etag.trim_matches('"').to_owned())),
            _ => {
                return Err(R2Error::Limit {
                    code: "MalformedXML".into(),
                    message: "each Part has a PartNumber and an ETag".into(),
                })
            }
        }
    }
    let object = r2.complete_upload(bucket, key, upload_id, parts, conditions).await?;
    let mut document = xml::Writer::new("CompleteMultipartUploadResult");
    document
        .field("Location", format!("/{bucket}/{key}"))
        .field("Bucket", bucket)
        .field("Key", key)
        .field("ETag", quoted(&object.etag));
    Ok(xml_response(document.finish("CompleteMultipartUploadResult")))
}

/// The headers that describe an object (HEAD and GET).
fn object_headers(object: &Object, headers: &mut HeaderMap) {
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    };
    set("etag", &quoted(&object.etag));
    set("last-modified", &xml::http_date(object.uploaded_ms));
    set("accept-ranges", "bytes");
    if object.http.content_type.is_none() {
        set("content-type", "application/octet-stream");
    }
    for (name, value) in object.http.pairs() {
        set(name, value);
    }
    for (name, value) in &object.custom {
        set(&format!("x-amz-meta-{name}"), value);
    }
}

async fn get_object(r2: &R2, bucket: &str, key: &str, query: &Query, headers: &HeaderMap, head: bool) -> Answer {
    let conditions = request::conditions(headers, "");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let got = if head {
        r2.describe(bucket, key, range, &conditions).await?
    } else {
        r2.get(bucket, key, range, &conditions).await?
    };
    match got {
        Got::NotModified(object) => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            object_headers(&object, response.headers_mut());
            Ok(response)
        }
        Got::Body(found) => {
            let size = found.object.size;
            let (status, length) = match found.range {
                Some(range) => (StatusCode::PARTIAL_CONTENT, range.len()),
                None => (StatusCode::OK, size),
            };
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(found.body.map(|chunk: Result<Bytes, R2Error>| chunk.map_err(std::io::Error::other)))
            };
            let mut response = Response::new(body);
            *response.status_mut() = status;
            object_headers(&found.object, response.headers_mut());
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            if let Some(range) = found.range {
                if let Ok(value) = HeaderValue::from_str(&range.content_range(size)) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            request::overrides(query, headers);
            Ok(response)
        }
    }
}

async fn list_buckets(r2: &R2) -> Answer {
    let buckets = r2.buckets().await?;
    let mut document = xml::Writer::new("ListAllMyBucketsResult");
    document.open("Owner").field("ID", "nimbus").field("DisplayName", "nimbus").close("Owner").open("Buckets");
    for bucket in buckets {
        document
            .open("Bucket")
            .field("Name", &bucket.name)
            .field("CreationDate", xml::iso8601(bucket.created_ms))
            .close("Bucket");
    }
    document.close("Buckets");
    Ok(xml_response(document.finish("ListAllMyBucketsResult")))
}

async fn list_objects(r2: &R2, bucket: &str, query: &Query, v2: bool) -> Answer {
    let prefix = query.get("prefix").unwrap_or("");
    let delimiter = query.get("delimiter").filter(|d| !d.is_empty());
    let max = match query.get("max-keys") {
        Some(text) => text.parse::<usize>().map_err(|_| R2Error::InvalidRequest("max-keys is a number".into()))?,
        None => MAX_LIST_KEYS,
    };
    let url = query.get("encoding-type") == Some("url");
    let encode = |text: &str| if url { request::url_encode(text) } else { text.to_owned() };
    let token = match query.get("continuation-token") {
        Some(token) => Some(request::decode_token(token)?),
        None => None,
    };
    let after = if v2 {
        token.clone().or_else(|| query.get("start-after").map(str::to_owned))
    } else {
        query.get("marker").map(str::to_owned)
    };
    let listing = if max == 0 {
        r2.bucket(bucket).await?;
        Default::default()
    } else {
        r2.list(bucket, prefix, delimiter, after.as_deref(), max).await?
    };
    let root = "ListBucketResult";
    let mut document = xml::Writer::new(root);
    document.field("Name", bucket).field("Prefix", encode(prefix)).field("MaxKeys", max.min(MAX_LIST_KEYS));
    if let Some(delimiter) = delimiter {
        document.field("Delimiter", encode(delimiter));
    }
    if url {
        document.field("EncodingType", "url");
    }
    document.field("IsTruncated", listing.truncated);
    if v2 {
        document.field("KeyCount", listing.objects.len() + listing.prefixes.len());
        if let Some(token) = query.get("continuation-token") {
            document.field("ContinuationToken", token);
        }
        if let Some(start_after) = query.get("start-after") {
            document.field("StartAfter", encode(start_after));
        }
        if let (true, Some(last)) = (listing.truncated, &listing.last) {
            document.field("NextContinuationToken", request::encode_token(last));
        }
    } else {
        document.field("Marker", encode(query.get("marker").unwrap_or("")));
        if let (true, Some(last)) = (listing.truncated, &listing.last) {
            document.field("NextMarker", encode(last));
        }
    }
    for object in &listing.objects {
        document
            .open("Contents")
            .field("Key", encode(&object.key))
            .field("LastModified", xml::iso8601(object.uploaded_ms))
            .field("ETag", quoted(&object.etag))
            .field("Size", object.size)
            .field("StorageClass", "STANDARD")
            .close("Contents");
    }
    for prefix in &listing.prefixes {
        document.open("CommonPrefixes").field("Prefix", encode(prefix)).close("CommonPrefixes");
    }
    Ok(xml_response(document.finish(root)))
}

async fn delete_objects(r2: &R2, bucket: &str, body: Body) -> Answer {
    let root = document(body).await?;
    let quiet = root.text_of("Quiet").is_some_and(|q| q.eq_ignore_ascii_case("true"));
    let keys: Vec<String> = root.children("Object").filter_map(|o| o.text_of("Key")).map(str::to_owned).collect();
    if keys.is_empty() || keys.len() > MAX_DELETE_KEYS {
        return Err(R2Error::Limit {
            code: "MalformedXML".into(),
            message: format!("a batch delete names 1 to {MAX_DELETE_KEYS} keys; this one {}", keys.len()),
        });
    }
    let (valid, invalid): (Vec<String>, Vec<String>) =
        keys.into_iter().partition(|key| nimbus_r2::limits::check_key(key).is_ok());
    r2.delete(bucket, valid.clone()).await?;
    let mut document = xml::Writer::new("DeleteResult");
    if !quiet {
        for key in &valid {
            document.open("Deleted").field("Key", key).close("Deleted");
        }
    }
    for key in &invalid {
        document
            .open("Error")
            .field("Key", key)
            .field("Code", "KeyTooLongError")
            .field("Message", "the key is too long")
            .close("Error");
    }
    Ok(xml_response(document.finish("DeleteResult")))
}

async fn list_parts(r2: &R2, bucket: &str, key: &str, query: &Query) -> Answer {
    let upload_id = query.get("uploadId").unwrap_or("");
    let after: u32 = query.get("part-number-marker").and_then(|m| m.parse().ok()).unwrap_or(0);
    let max: usize = query.get("max-parts").and_then(|m| m.parse().ok()).unwrap_or(1000).min(1000);
    let parts = r2.parts(bucket, key, upload_id).await?;
    let page: Vec<_> = parts.iter().filter(|p| p.number > after).take(max).collect();
    let truncated = parts.iter().filter(|p| p.number > after).count() > page.len();
    let mut document = xml::Writer::new("ListPartsResult");
    document
        .field("Bucket", bucket)
        .field("Key", key)
        .field("UploadId", upload_id)
        .field("PartNumberMarker", after)
        .field("MaxParts", max)
        .field("IsTruncated", truncated);
    if let (true, Some(last)) = (truncated, page.last()) {
        document.field("NextPartNumberMarker", last.number);
    }
    for part in page {
        document
            .open("Part")
            .field("PartNumber", part.number)
            .field("LastModified", xml::iso8601(part.uploaded_ms))
            .field("ETag", quoted(&part.etag))
            .field("Size", part.size)
            .close("Part");
    }
    Ok(xml_response(document.finish("ListPartsResult")))
}

async fn list_uploads(r2: &R2, bucket: &str, query: &Query) -> Answer {
    let prefix = query.get("prefix").unwrap_or("");
    let max: usize = query.get("max-uploads").and_then(|m| m.parse().ok()).unwrap_or(1000).min(1000);
    let uploads = r2.uploads(bucket, prefix, max + 1).await?;
    let truncated = uploads.len() > max;
    let mut document = xml::Writer::new("ListMultipartUploadsResult");
    document.field("Bucket", bucket).field("Prefix", prefix).field("MaxUploads", max).field("IsTruncated", truncated);
    for upload in uploads.iter().take(max) {
        document
            .open("Upload")
            .field("Key", &upload.key)
            .field("UploadId", &upload.id)
            .field("Initiated", xml::iso8601(upload.created_ms))
            .field("StorageClass", "STANDARD")
            .close("Upload");
    }
    Ok(xml_response(document.finish("ListMultipartUploadsResult")))
}

async fn put_cors(r2: &R2, bucket: &str, body: Body) -> Answer {
    let root = document(body).await?;
    let rules = cors::Rules::from_xml(&root)?;
    r2.put_cors(bucket, Some(rules.to_json())).await?;
    Ok(StatusCode::OK.into_response())
}

async fn get_cors(r2: &R2, bucket: &str) -> Answer {
    let Some(stored) = r2.cors(bucket).await? else {
        return Err(R2Error::NoSuchCorsConfiguration(bucket.to_owned()));
    };
    Ok(xml_response(cors::Rules::from_json(&stored)?.to_xml()))
}
