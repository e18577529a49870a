//! The `r2` binding: a worker's objects in the bucket its `[[r2_buckets]]` entry names, through
//! the node's R2 handle, with the same guarantees as the S3 API (reads see every write
//! acknowledged before them, from any node; a write is whole or absent).
//!
//! Bodies never pass through the guest unless it reads them: a `get` puts an [`ObjectStream`]
//! in the instance's resource table (a `wasi:io` input stream the guest may splice straight
//! into its response), and a `put` given a stream (the request's body, another object's)
//! takes it out of the table and reads it here. Errors never trap: R2's client errors are
//! `invalid-input` led by their S3 code, busy or leaderless nodes `unavailable`.

use super::nimbus::worker::r2::{
    self as wit, Body, Conditions, GetOptions, GetResult, HttpMetadata, ListOptions, Listing, ObjectBody, PutOptions,
    UploadedPart,
};
use super::{BindingError, Host};
use bytes::Bytes;
use futures::StreamExt;
use nimbus_proto::manifest::Binding;
use nimbus_r2::meta::{self, Object};
use nimbus_r2::{conditions, BodyStream, Got, R2Error, R2};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, InputStream, Pollable, StreamError, StreamResult};

/// Bytes taken from a guest's stream per read.
const READ_BYTES: usize = 1 << 20;
/// Keys one `delete` may name, as R2's binding.
const MAX_DELETE_KEYS: usize = 1000;
/// Objects one `list` returns at most (and by default), as R2's binding.
const MAX_LIST: u32 = 1000;

/// The one mapping from R2's errors to what a guest sees.
fn binding_error(error: R2Error) -> BindingError {
    let text = format!("{}: {error}", error.s3_code());
    match error.s3_code() {
        "InternalError" => {
            tracing::error!("r2 binding: {error}");
            BindingError::Internal(text)
        }
        _ if error.is_retryable() => BindingError::Unavailable(text),
        _ => BindingError::InvalidInput(text),
    }
}

fn invalid(message: impl Into<String>) -> BindingError {
    BindingError::InvalidInput(message.into())
}

impl Host {
    /// Drops the bodies of every object the event opened and the guest still holds: their
    /// chunks and transfer permits go now, and the streams read as failed from then on.
    pub(crate) fn release_r2_bodies(&mut self) {
        for slot in self.r2_bodies.drain(..) {
            lock(&slot).take();
        }
    }

    /// The R2 handle and the bucket behind a binding.
    fn r2_bucket(&self, name: &str) -> Result<(R2, String), BindingError> {
        match self.declared.get(name, "r2")? {
            Binding::R2 { bucket_name, .. } => Ok((self.stores.r2.clone(), bucket_name.clone())),
            _ => Err(BindingError::UnknownBinding(format!("binding `{name}` is not an R2 binding"))),
        }
    }

    /// A guest's body as R2 reads it: bytes as they are, a stream taken out of the table.
    fn body_of(&mut self, body: Body) -> Result<(BodyStream, Option<u64>), BindingError> {
        match body {
            Body::Bytes(bytes) => {
                let length = bytes.len() as u64;
                let stream: BodyStream = Box::pin(futures::stream::once(async move { Ok(Bytes::from(bytes)) }));
                Ok((stream, Some(length)))
            }
            Body::Stream(resource) => {
                let stream = self
                    .table
                    .delete(resource)
                    .map_err(|e| BindingError::Internal(format!("the body stream is not in the table: {e}")))?;
                Ok((guest_stream(stream), None))
            }
        }
    }
}

/// Reads a guest's input stream to its end.
fn guest_stream(stream: DynInputStream) -> BodyStream {
    Box::pin(futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match stream.blocking_read(READ_BYTES).await {
            Ok(bytes) => Some((Ok(bytes), Some(stream))),
            Err(StreamError::Closed) => None,
            Err(e) => Some((Err(R2Error::InvalidRequest(format!("the body stream failed: {e}"))), None)),
        }
    }))
}

/// Where an [`ObjectStream`]'s body lives: shared with the instance's [`Host`], which empties
/// it when the event ends, so a body the guest never dropped (a leaked handle in a pooled
/// instance) cannot keep its chunks and the node's transfer permit past its request.
pub type BodySlot = Arc<Mutex<Option<BodyStream>>>;

/// An object's bytes as a `wasi:io` input stream: the next chunk is fetched when the guest
/// waits for one, and handed out in slices of the size it asks for, without copies.
pub struct ObjectStream {
    body: BodySlot,
    buffered: Bytes,
    failed: Option<String>,
    done: bool,
}

impl ObjectStream {
    fn new(body: BodyStream) -> Self {
        ObjectStream { body: Arc::new(Mutex::new(Some(body))), buffered: Bytes::new(), failed: None, done: false }
    }

    fn slot(&self) -> BodySlot {
        self.body.clone()
    }
}

fn lock(slot: &BodySlot) -> std::sync::MutexGuard<'_, Option<BodyStream>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait::async_trait]
impl Pollable for ObjectStream {
    async fn ready(&mut self) {
        if !self.buffered.is_empty() || self.done || self.failed.is_some() {
            return;
        }
        // Out of the slot while awaiting (no lock across an await); events do not overlap,
        // so the host cannot be emptying the slot meanwhile.
        let Some(mut body) = lock(&self.body).take() else {
            self.failed = Some("the request that read this object has ended".into());
            return;
        };
        match body.next().await {
            Some(Ok(bytes)) => self.buffered = bytes,
            Some(Err(e)) => self.failed = Some(e.to_string()),
            None => self.done = true,
        }
        if !self.done && self.failed.is_none() {
            *lock(&self.body) = Some(body);
        }
    }
}

impl InputStream for ObjectStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if !self.buffered.is_empty() {
            let n = size.min(self.buffered.len());
            return Ok(self.buffered.split_to(n));
        }
        if let Some(message) = self.failed.take() {
            self.done = true;
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!("r2: {message}")));
        }
        if self.done {
            return Err(StreamError::Closed);
        }
        Ok(Bytes::new())
    }
}

fn to_conditions(only_if: Conditions) -> conditions::Conditions {
    conditions::Conditions {
        if_match: only_if.etag_matches,
        if_none_match: only_if.etag_does_not_match,
        if_modified_since: only_if.uploaded_after,
        if_unmodified_since: only_if.uploaded_before,
    }
}

fn to_http(http: HttpMetadata) -> meta::HttpMetadata {
    meta::HttpMetadata {
        content_type: http.content_type,
        content_language: http.content_language,
        content_disposition: http.content_disposition,
        content_encoding: http.content_encoding,
        cache_control: http.cache_control,
        expires: http.cache_expiry,
    }
}

fn to_wit_http(http: meta::HttpMetadata) -> HttpMetadata {
    HttpMetadata {
        content_type: http.content_type,
        content_language: http.content_language,
        content_disposition: http.content_disposition,
        content_encoding: http.content_encoding,
        cache_control: http.cache_control,
        cache_expiry: http.expires,
    }
}

fn to_custom(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

fn to_wit_object(object: Object) -> wit::Object {
    // A single write's ETag is its MD5; a multipart one (`<hex>-<n>`) is not.
    let md5 = if object.etag.contains('-') { None } else { hex::decode(&object.etag).ok() };
    wit::Object {
        key: object.key,
        version: object.version,
        size: object.size,
        etag: object.etag,
        uploaded_ms: object.uploaded_ms,
        http_metadata: to_wit_http(object.http),
        custom_metadata: object.custom.into_iter().collect(),
        md5,
        sha256: object.sha256.map(|digest| digest.to_vec()),
    }
}

fn digest<const N: usize>(what: &str, bytes: Option<Vec<u8>>) -> Result<Option<[u8; N]>, BindingError> {
    bytes
        .map(|b| {
            <[u8; N]>::try_from(b.as_slice()).map_err(|_| invalid(format!("{what} must be {N} bytes, not {}", b.len())))
        })
        .transpose()
}

/// A listing's cursor: the hex of the last key (or common prefix) it returned.
fn cursor_of(last: &str) -> String {
    hex::encode(last.as_bytes())
}

fn resume_after(cursor: &str) -> Result<String, BindingError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| invalid(format!("`{cursor}` is not a cursor this bucket's listings return")))
}

impl wit::Host for Host {
    async fn head(&mut self, binding: String, key: String) -> Result<Option<wit::Object>, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        match r2.head(&bucket, &key).await {
            Ok(object) => Ok(Some(to_wit_object(object))),
            Err(R2Error::NoSuchKey(_)) => Ok(None),
            Err(e) => Err(binding_error(e)),
        }
    }

    async fn get(&mut self, binding: String, key: String, options: GetOptions) -> Result<GetResult, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        let conditions = to_conditions(options.only_if);
        let got = match r2.get_unless(&bucket, &key, options.range.as_deref(), &conditions).await {
            Ok(got) => got,
            Err(R2Error::NoSuchKey(_)) => return Ok(GetResult::NotFound),
            Err(e) => return Err(binding_error(e)),
        };
        match got {
            Got::NotModified(object) => Ok(GetResult::Unmet(to_wit_object(object))),
            Got::Body(found) => {
                let range = found.range.map(|r| wit::ByteRange { offset: r.first, length: r.len() });
                let stream = ObjectStream::new(found.body);
                self.r2_bodies.push(stream.slot());
                let stream: DynInputStream = Box::new(stream);
                let body: Resource<DynInputStream> = self
                    .table
                    .push(stream)
                    .map_err(|e| BindingError::Internal(format!("cannot hand out the body: {e}")))?;
                Ok(GetResult::Found(ObjectBody { object: to_wit_object(found.object), range, body }))
            }
        }
    }

    async fn put(
        &mut self,
        binding: String,
        key: String,
        body: Body,
        options: PutOptions,
    ) -> Result<Option<wit::Object>, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        let (body, known) = self.body_of(body)?;
        let options = nimbus_r2::PutOptions {
            http: to_http(options.http_metadata),
            custom: to_custom(options.custom_metadata),
            conditions: to_conditions(options.only_if),
            content_length: options.length.or(known),
            md5: digest("md5", options.md5)?,
            sha256: digest("sha256", options.sha256)?,
        };
        match r2.put(&bucket, &key, body, options).await {
            Ok(object) => Ok(Some(to_wit_object(object))),
            Err(R2Error::PreconditionFailed) => Ok(None),
            Err(e) => Err(binding_error(e)),
        }
    }

    async fn delete(&mut self, binding: String, keys: Vec<String>) -> Result<(), BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        if keys.len() > MAX_DELETE_KEYS {
            return Err(invalid(format!("delete takes at most {MAX_DELETE_KEYS} keys; got {}", keys.len())));
        }
        r2.delete(&bucket, keys).await.map_err(binding_error)
    }

    async fn list(&mut self, binding: String, options: ListOptions) -> Result<Listing, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        let limit = options.limit.unwrap_or(MAX_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(invalid(format!("limit must be 1 to {MAX_LIST}; got {limit}")));
        }
        let after = match &options.cursor {
            Some(cursor) => Some(resume_after(cursor)?),
            None => options.start_after.clone(),
        };
        let prefix = options.prefix.unwrap_or_default();
        let delimiter = options.delimiter.filter(|d| !d.is_empty());
        let listing = r2
            .list(&bucket, &prefix, delimiter.as_deref(), after.as_deref(), limit as usize)
            .await
            .map_err(binding_error)?;
        let cursor = if listing.truncated { listing.last.as_deref().map(cursor_of) } else { None };
        Ok(Listing {
            objects: listing.objects.into_iter().map(to_wit_object).collect(),
            delimited_prefixes: listing.prefixes,
            truncated: listing.truncated,
            cursor,
        })
    }

    async fn create_multipart_upload(
        &mut self,
        binding: String,
        key: String,
        http_metadata: HttpMetadata,
        custom_metadata: Vec<(String, String)>,
    ) -> Result<String, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        let upload = r2
            .create_upload(&bucket, &key, to_http(http_metadata), to_custom(custom_metadata))
            .await
            .map_err(binding_error)?;
        Ok(upload.id)
    }

    async fn upload_part(
        &mut self,
        binding: String,
        key: String,
        upload_id: String,
        part_number: u32,
        body: Body,
        length: Option<u64>,
    ) -> Result<UploadedPart, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        let (body, known) = self.body_of(body)?;
        let part = r2
            .upload_part(&bucket, &key, &upload_id, part_number, body, length.or(known), None, None)
            .await
            .map_err(binding_error)?;
        Ok(UploadedPart { part_number: part.number, etag: part.etag })
    }

    async fn complete_multipart_upload(
        &mut self,
        binding: String,
        key: String,
        upload_id: String,
        parts: Vec<UploadedPart>,
    ) -> Result<wit::Object, BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        let parts = parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
        let object = r2
            .complete_upload(&bucket, &key, &upload_id, parts, conditions::Conditions::default())
            .await
            .map_err(binding_error)?;
        Ok(to_wit_object(object))
    }

    async fn abort_multipart_upload(
        &mut self,
        binding: String,
        key: String,
        upload_id: String,
    ) -> Result<(), BindingError> {
        let (r2, bucket) = self.r2_bucket(&binding)?;
        r2.abort_upload(&bucket, &key, &upload_id).await.map_err(binding_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(chunks: Vec<Result<&'static [u8], R2Error>>) -> ObjectStream {
        let items: Vec<Result<Bytes, R2Error>> = chunks.into_iter().map(|c| c.map(Bytes::from_static)).collect();
        ObjectStream::new(Box::pin(futures::stream::iter(items)))
    }

    #[tokio::test]
    async fn an_object_stream_hands_out_slices_then_closes() {
        let mut stream = stream_of(vec![Ok(b"hello "), Ok(b"world")]);
        assert!(stream.read(4).expect("nothing yet").is_empty(), "nothing is read before ready()");
        let mut out = Vec::new();
        loop {
            stream.ready().await;
            match stream.read(4) {
                Ok(bytes) => {
                    assert!(bytes.len() <= 4);
                    out.extend_from_slice(&bytes);
                }
                Err(StreamError::Closed) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn a_failed_chunk_fails_the_stream_after_the_bytes_before_it() {
        let mut stream = stream_of(vec![Ok(b"abc"), Err(R2Error::ChunkMissing("c1".into()))]);
        stream.ready().await;
        assert_eq!(&stream.read(10).expect("bytes")[..], b"abc");
        stream.ready().await;
        match stream.read(10) {
            Err(StreamError::LastOperationFailed(e)) => assert!(e.to_string().contains("c1"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(stream.read(10), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn a_body_released_by_the_host_fails_the_stream_and_frees_it() {
        let mut stream = stream_of(vec![Ok(b"one"), Ok(b"two")]);
        let slot = stream.slot();
        stream.ready().await;
        assert_eq!(&stream.read(10).expect("bytes")[..], b"one");
        lock(&slot).take();
        stream.ready().await;
        match stream.read(10) {
            Err(StreamError::LastOperationFailed(e)) => assert!(e.to_string().contains("ended"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let key = "photos/2026/ä.jpg";
        assert_eq!(resume_after(&cursor_of(key)).expect("cursor"), key);
        assert!(matches!(resume_after("zz"), Err(BindingError::InvalidInput(_))));
    }

    #[test]
    fn r2_errors_keep_their_s3_code() {
        match binding_error(R2Error::NoSuchBucket("media".into())) {
            BindingError::InvalidInput(m) => assert!(m.starts_with("NoSuchBucket: "), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(binding_error(R2Error::SlowDown), BindingError::Unavailable(_)));
        assert!(matches!(binding_error(R2Error::Internal("x".into())), BindingError::Internal(_)));
    }
}
