//! R2 from a Rust worker, shaped like Cloudflare's `R2Bucket`.
//!
//! ```ignore
//! let bucket = nimbus::Bucket::new("MEDIA");
//! // Stream the request's body into the bucket (the handler sets STREAM_REQUEST_BODY):
//! let length = req.content_length();
//! let body = req.take_body_stream().ok_or("no body")?;
//! bucket.put("video.mp4", r2::Body::Stream(body), r2::PutOptions { length, ..Default::default() })?;
//! // And back out, without the bytes passing through the worker:
//! match bucket.get("video.mp4")? {
//!     Some(object) => Ok(object.into_response()),
//!     None => Ok(nimbus::Response::new(404, "not found")),
//! }
//! ```
//!
//! Errors are [`BindingError`]s; those in R2's terms start with their S3 code
//! (`NoSuchBucket: …`, `EntityTooLarge: …`).

use crate::r2::{self, Body, Conditions, GetOptions, GetResult, HttpMetadata, ListOptions, Listing, PutOptions};
use crate::{BindingError, InputStream, Response};
use std::io::Read;

impl Default for HttpMetadata {
    fn default() -> Self {
        HttpMetadata {
            content_type: None,
            content_language: None,
            content_disposition: None,
            content_encoding: None,
            cache_control: None,
            cache_expiry: None,
        }
    }
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions { etag_matches: None, etag_does_not_match: None, uploaded_before: None, uploaded_after: None }
    }
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions { only_if: Conditions::default(), range: None }
    }
}

impl Default for PutOptions {
    fn default() -> Self {
        PutOptions {
            http_metadata: HttpMetadata::default(),
            custom_metadata: Vec::new(),
            only_if: Conditions::default(),
            md5: None,
            sha256: None,
            length: None,
        }
    }
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions { prefix: None, cursor: None, delimiter: None, start_after: None, limit: None }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Bytes(bytes)
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Body::Bytes(text.as_bytes().to_vec())
    }
}

impl From<InputStream> for Body {
    fn from(stream: InputStream) -> Self {
        Body::Stream(stream)
    }
}

impl r2::Object {
    /// The ETag quoted, as HTTP sends it.
    pub fn http_etag(&self) -> String {
        format!("\"{}\"", self.etag)
    }

    /// The object's HTTP metadata as response headers (`content-type`, `cache-control`, …).
    pub fn write_http_metadata(&self, headers: &mut Vec<(String, Vec<u8>)>) {
        let http = &self.http_metadata;
        let fields = [
            ("content-type", &http.content_type),
            ("content-language", &http.content_language),
            ("content-disposition", &http.content_disposition),
            ("content-encoding", &http.content_encoding),
            ("cache-control", &http.cache_control),
            ("expires", &http.cache_expiry),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                headers.push((name.to_string(), value.clone().into_bytes()));
            }
        }
    }
}

/// An object with its bytes, as a stream the host fills.
#[derive(Debug)]
pub struct ObjectBody {
    pub object: r2::Object,
    /// The bytes served, when a range was asked.
    pub range: Option<r2::ByteRange>,
    pub body: InputStream,
}

impl ObjectBody {
    /// The number of bytes the stream holds.
    pub fn len(&self) -> u64 {
        self.range.as_ref().map_or(self.object.size, |r| r.length)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every byte, read into the worker's memory.
    pub fn bytes(mut self) -> Result<Vec<u8>, BindingError> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.body.read_to_end(&mut out).map_err(|e| BindingError::Internal(format!("reading the object: {e}")))?;
        Ok(out)
    }

    pub fn text(self) -> Result<String, BindingError> {
        String::from_utf8(self.bytes()?)
            .map_err(|e| BindingError::InvalidInput(format!("the object is not UTF-8: {e}")))
    }

    /// A 200 (206 for a range) streaming the object, with its ETag and HTTP metadata.
    pub fn into_response(self) -> Response {
        let length = self.len();
        let status = if self.range.is_some() { 206 } else { 200 };
        let mut response = Response::from_stream(status, self.body, Some(length));
        response.headers.push(("etag".into(), self.object.http_etag().into_bytes()));
        if let Some(range) = &self.range {
            let last = range.offset + range.length.saturating_sub(1);
            let value = format!("bytes {}-{last}/{}", range.offset, self.object.size);
            response.headers.push(("content-range".into(), value.into_bytes()));
        }
        self.object.write_http_metadata(&mut response.headers);
        response
    }
}

/// What a conditional get found.
#[derive(Debug)]
pub enum Got {
    Body(ObjectBody),
    /// A condition failed: the object, without its bytes.
    Unmet(r2::Object),
}

/// An R2 bucket, by the name of its binding.
#[derive(Debug, Clone)]
pub struct Bucket {
    binding: String,
}

impl Bucket {
    pub fn new(binding: impl Into<String>) -> Self {
        Bucket { binding: binding.into() }
    }

    pub fn head(&self, key: &str) -> Result<Option<r2::Object>, BindingError> {
        r2::head(&self.binding, key)
    }

    /// The object and its bytes, or `None`.
    pub fn get(&self, key: &str) -> Result<Option<ObjectBody>, BindingError> {
        match self.get_with(key, &GetOptions::default())? {
            Some(Got::Body(body)) => Ok(Some(body)),
            Some(Got::Unmet(_)) | None => Ok(None),
        }
    }

    /// A get with `onlyIf` conditions and a range.
    pub fn get_with(&self, key: &str, options: &GetOptions) -> Result<Option<Got>, BindingError> {
        Ok(match r2::get(&self.binding, key, options)? {
            GetResult::NotFound => None,
            GetResult::Unmet(object) => Some(Got::Unmet(object)),
            GetResult::Found(found) => {
                Some(Got::Body(ObjectBody { object: found.object, range: found.range, body: found.body }))
            }
        })
    }

    /// Writes `body` under `key`; `None` when a condition of `options.only_if` failed.
    pub fn put(
        &self,
        key: &str,
        body: impl Into<Body>,
        options: PutOptions,
    ) -> Result<Option<r2::Object>, BindingError> {
        r2::put(&self.binding, key, body.into(), &options)
    }

    pub fn delete(&self, keys: &[String]) -> Result<(), BindingError> {
        r2::delete(&self.binding, keys)
    }

    pub fn list(&self, options: &ListOptions) -> Result<Listing, BindingError> {
        r2::list(&self.binding, options)
    }

    pub fn create_multipart_upload(
        &self,
        key: &str,
        http: &HttpMetadata,
        custom: &[(String, String)],
    ) -> Result<MultipartUpload, BindingError> {
        let upload_id = r2::create_multipart_upload(&self.binding, key, http, custom)?;
        Ok(self.resume_multipart_upload(key, &upload_id))
    }

    pub fn resume_multipart_upload(&self, key: &str, upload_id: &str) -> MultipartUpload {
        MultipartUpload { binding: self.binding.clone(), key: key.to_string(), upload_id: upload_id.to_string() }
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    binding: String,
    pub key: String,
    pub upload_id: String,
}

impl MultipartUpload {
    pub fn upload_part(
        &self,
        part_number: u32,
        body: impl Into<Body>,
        length: Option<u64>,
    ) -> Result<r2::UploadedPart, BindingError> {
        r2::upload_part(&self.binding, &self.key, &self.upload_id, part_number, body.into(), length)
    }

    pub fn complete(&self, parts: &[r2::UploadedPart]) -> Result<r2::Object, BindingError> {
        r2::complete_multipart_upload(&self.binding, &self.key, &self.upload_id, parts)
    }

    pub fn abort(&self) -> Result<(), BindingError> {
        r2::abort_multipart_upload(&self.binding, &self.key, &self.upload_id)
    }
}
