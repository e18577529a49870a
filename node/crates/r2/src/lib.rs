//! R2: object storage with Cloudflare R2's behaviour and an S3 API. `R2.md` (next to
//! `ARCHITECTURE.md`) is the design and its arguments; this crate grows along it.
//!
//! Owns `<data_dir>/r2/chunks`. Guarantees, for what is built so far:
//! - a chunk is stored under the SHA-256 of its bytes, written to a temporary name, fsynced,
//!   renamed and its directory fsynced: once [`ChunkStore::put`] returns, the chunk survives a
//!   crash, and no crash leaves a partial chunk under a real name;
//! - a chunk read back is hashed before it is returned: damaged bytes are an error
//!   ([`R2Error::ChunkCorrupt`]), never data;
//! - a chunk id from anywhere (a peer, a metadata row) is 64 lowercase hex digits before it
//!   becomes a path;
//! - R2's limits (key, metadata, single PUT and part sizes, part count, equal parts) are
//!   checked in one place, each violation the S3 error code clients expect.
//!
//! Must never: depend on a sibling store (D1, KV, Durable Objects) or the runtime; serve HTTP
//! itself; buffer a whole object.
//!
//! # Layout
//! - [`body`]: bodies cut into chunks as they stream in (with their MD5 and SHA-256), and
//!   the chunks a byte range covers.
//! - [`chunks`]: content-addressed chunk files on this node, and which members hold a chunk.
//! - [`conditions`]: `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`
//!   (and the binding's `onlyIf`) as S3 evaluates them.
//! - [`limits`]: R2's limits, and the ETags S3 clients check (single and multipart).
//! - [`meta`]: the metadata state machine (buckets, objects, uploads, keys, chunk references)
//!   that the Raft log feeds on every replica, and its local reads.
//! - [`sigv4`]: AWS Signature Version 4, in the header or presigned, checked in constant time.
//! - [`R2Error`]: every failure, with its S3 error code and HTTP status.

pub mod body;
pub mod chunks;
pub mod conditions;
mod error;
pub mod limits;
pub mod maintain;
pub mod meta;
mod peer;
pub mod server;
pub mod sigv4;

pub use chunks::{holders, ChunkId, ChunkStore};
pub use error::R2Error;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, Stream, StreamExt};
use meta::{AccessKey, ChunkRef, Command, HttpMetadata, Metadata, Object, Part, Reply, SourceCheck, Upload};
use nimbus_cluster::peers::PeerChannels;
use nimbus_cluster::Membership;
use nimbus_util::config::R2Config;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Copies of a chunk fsynced before a write is acknowledged (fewer only when fewer members
/// are alive).
pub const REQUIRED_COPIES: usize = 2;

/// How R2 reaches the Raft group that orders its metadata: handed in at construction (the
/// node adapts D1's group, which R2 must not depend on).
#[async_trait::async_trait]
pub trait MetadataLog: Send + Sync + 'static {
    /// Commits an encoded [`Command`] through the leader; the encoded [`Reply`].
    async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, R2Error>;
    /// Returns once this replica has applied every command committed before the call.
    async fn linearize(&self) -> Result<(), R2Error>;
    /// Whether this node leads the group now (it proposes the upload expiry).
    fn leads(&self) -> bool;
}

/// Opens this node's metadata file (before the Raft group starts, which feeds it).
pub fn open_metadata(data_dir: &Path) -> Result<Arc<Metadata>, R2Error> {
    Metadata::open(&data_dir.join("r2").join("meta.sqlite")).map(Arc::new)
}

/// A body as it streams in or out.
pub type BodyStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, R2Error>> + Send>>;

/// What a write of an object carries besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub http: HttpMetadata,
    pub custom: BTreeMap<String, String>,
    pub conditions: conditions::Conditions,
    /// The length the request declared, checked before any byte is read and at the end.
    pub content_length: Option<u64>,
    /// Digests the client declared (`Content-MD5`, the binding's `md5` / `sha256`, a signed
    /// `x-amz-content-sha256`): the write fails with `BadDigest` unless the body has them.
    pub md5: Option<[u8; 16]>,
    pub sha256: Option<[u8; 32]>,
}

/// An object's bytes on their way out.
pub struct ObjectBody {
    pub object: Object,
    /// The range served, if the request named one.
    pub range: Option<body::ByteRange>,
    pub body: BodyStream,
}

/// What a GET found.
pub enum Got {
    Body(ObjectBody),
    /// A condition says 304.
    NotModified(Object),
}

/// The R2 handle every front end (S3 API, worker binding, management API) uses.
#[derive(Clone)]
pub struct R2 {
    inner: Arc<Inner>,
}

struct Inner {
    membership: Membership,
    peers: PeerChannels,
    chunks: Arc<ChunkStore>,
    meta: Arc<Metadata>,
    log: Arc<dyn MetadataLog>,
    config: R2Config,
    /// Bounds the bodies in flight on this node (`r2.max_transfers`).
    transfers: Arc<tokio::sync::Semaphore>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A new version or upload id: 32 hex digits nobody else will choose.
fn fresh_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl R2 {
    pub fn new(
        config: &R2Config,
        data_dir: &Path,
        membership: Membership,
        peers: PeerChannels,
        meta: Arc<Metadata>,
        log: Arc<dyn MetadataLog>,
    ) -> Result<R2, R2Error> {
        let chunks = Arc::new(ChunkStore::open(data_dir.join("r2").join("chunks"))?);
        let transfers = Arc::new(tokio::sync::Semaphore::new(config.max_transfers.max(1)));
        Ok(R2 { inner: Arc::new(Inner { membership, peers, chunks, meta, log, config: config.clone(), transfers }) })
    }

    /// This node's chunk files (for the `R2Peer` service).
    pub fn chunk_store(&self) -> Arc<ChunkStore> {
        self.inner.chunks.clone()
    }

    /// How many chunk files this node holds.
    pub fn chunk_count(&self) -> u64 {
        self.inner.chunks.list().map_or(0, |chunks| chunks.len() as u64)
    }

    pub fn metadata(&self) -> &Metadata {
        &self.inner.meta
    }

    async fn propose(&self, command: Command) -> Result<Reply, R2Error> {
        let bytes = postcard::to_allocvec(&command).map_err(|e| R2Error::Internal(e.to_string()))?;
        let reply = self.inner.log.propose(bytes).await?;
        let reply: Reply =
            postcard::from_bytes(&reply).map_err(|e| R2Error::Internal(format!("a metadata reply: {e}")))?;
        match reply {
            Reply::Refused(refusal) => Err(refusal.into()),
            other => Ok(other),
        }
    }

    async fn linearize(&self) -> Result<(), R2Error> {
        self.inner.log.linearize().await
    }

    /// Runs a read of the local metadata on the blocking pool (it takes a lock and SQLite).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Metadata) -> Result<T, R2Error> + Send + 'static,
    ) -> Result<T, R2Error> {
        let meta = self.inner.meta.clone();
        tokio::task::spawn_blocking(move || read(&meta)).await.map_err(|e| R2Error::Internal(e.to_string()))?
    }

    // Buckets.

    /// Creates a bucket; `BucketAlreadyOwnedByYou` if it exists.
    pub async fn create_bucket(&self, name: &str) -> Result<(), R2Error> {
        meta::check_bucket_name(name)?;
        match self.propose(Command::CreateBucket { name: name.to_owned(), time_ms: now_ms() }).await? {
            Reply::Created(true) => Ok(()),
            Reply::Created(false) => Err(R2Error::BucketAlreadyOwnedByYou(name.to_owned())),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<(), R2Error> {
        self.propose(Command::DeleteBucket { name: name.to_owned() }).await.map(|_| ())
    }

    pub async fn buckets(&self) -> Result<Vec<meta::Bucket>, R2Error> {
        self.linearize().await?;
        self.read(|meta| meta.buckets()).await
    }

    pub async fn bucket(&self, name: &str) -> Result<meta::Bucket, R2Error> {
        self.linearize().await?;
        let name = name.to_owned();
        self.read(move |meta| meta.bucket(&name)?.ok_or(R2Error::NoSuchBucket(name))).await
    }

    pub async fn cors(&self, bucket: &str) -> Result<Option<String>, R2Error> {
        self.linearize().await?;
        let bucket = bucket.to_owned();
        self.read(move |meta| meta.cors(&bucket)).await
    }

    /// Sets (or with `None` removes) a bucket's CORS rules, as the S3 XML document.
    pub async fn put_cors(&self, bucket: &str, rules: Option<String>) -> Result<(), R2Error> {
        self.propose(Command::PutCors { bucket: bucket.to_owned(), rules }).await.map(|_| ())
    }

    // Objects.

    /// The object's description, or `NoSuchKey`.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Object, R2Error> {
        limits::check_key(key)?;
        self.linearize().await?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.read(move |meta| {
            if meta.bucket(&bucket)?.is_none() {
                return Err(R2Error::NoSuchBucket(bucket));
            }
            meta.object(&bucket, &key)?.ok_or(R2Error::NoSuchKey(key))
        })
        .await
    }

    /// Reads an object (a range of it, if `range` is a `Range` header), after its conditions.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
        conditions: &conditions::Conditions,
    ) -> Result<Got, R2Error> {
        match self.describe(bucket, key, range, conditions).await? {
            Got::Body(ObjectBody { object, range, .. }) => self.send(object, range),
            not_modified => Ok(not_modified),
        }
    }

    /// The binding's `get`: like [`R2::get`], except that any failed condition answers the
    /// object without its bytes ([`Got::NotModified`]), as R2's binding does with `onlyIf`.
    pub async fn get_unless(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
        conditions: &conditions::Conditions,
    ) -> Result<Got, R2Error> {
        match self.judge(bucket, key, range, conditions).await? {
            (object, conditions::Verdict::Proceed, range) => self.send(object, range),
            (object, _, _) => Ok(Got::NotModified(object)),
        }
    }

    /// `object`'s bytes on their way out, holding one of the node's transfers until the
    /// stream is dropped.
    fn send(&self, object: Object, range: Option<body::ByteRange>) -> Result<Got, R2Error> {
        let permit = self.transfer_permit()?;
        let body = Box::pin(self.body(&object, range).map(move |chunk| {
            let _held = &permit;
            chunk
        }));
        Ok(Got::Body(ObjectBody { object, range, body }))
    }

    /// What a GET would answer, without its bytes (HEAD): conditions and range checked.
    pub async fn describe(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
        conditions: &conditions::Conditions,
    ) -> Result<Got, R2Error> {
        match self.judge(bucket, key, range, conditions).await? {
            (object, conditions::Verdict::Proceed, range) => {
                Ok(Got::Body(ObjectBody { object, range, body: Box::pin(futures::stream::empty()) }))
            }
            (object, conditions::Verdict::NotModified, _) => Ok(Got::NotModified(object)),
            (_, conditions::Verdict::PreconditionFailed, _) => Err(R2Error::PreconditionFailed),
        }
    }

    /// The object, what its conditions say of a read, and the range asked of it (checked
    /// only when the read proceeds).
    async fn judge(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
        conditions: &conditions::Conditions,
    ) -> Result<(Object, conditions::Verdict, Option<body::ByteRange>), R2Error> {
        let object = self.head(bucket, key).await?;
        let verdict = conditions.for_read(&object.etag, object.uploaded_ms);
        let range = match verdict {
            conditions::Verdict::Proceed => range.map(|header| body::parse_range(header, object.size)).transpose()?,
            _ => None,
        };
        Ok((object, verdict, range))
    }

    /// One of the node's body transfers (each holds a few chunks in memory): `SlowDown`
    /// when `r2.max_transfers` are running, which S3 clients retry with backoff.
    fn transfer_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, R2Error> {
        self.inner.transfers.clone().try_acquire_owned().map_err(|_| R2Error::SlowDown)
    }

    /// The bytes of `object` (or of `range` of it), fetched a few chunks ahead.
    pub fn body(&self, object: &Object, range: Option<body::ByteRange>) -> BodyStream {
        if object.size == 0 {
            return Box::pin(futures::stream::empty());
        }
        let whole = body::ByteRange { first: 0, last: object.size - 1 };
        if let Some(inline) = &object.inline {
            let range = range.unwrap_or(whole);
            let (first, last) = (range.first as usize, range.last as usize);
            let bytes = match inline.get(first..=last) {
                Some(bytes) => Ok(Bytes::copy_from_slice(bytes)),
                None => Err(R2Error::Internal(format!("object {} holds fewer bytes than its size", object.key))),
            };
            return Box::pin(futures::stream::once(async move { bytes }));
        }
        let sizes: Vec<u64> = object.chunks.iter().map(|c| c.size).collect();
        let slices = body::slices(&sizes, range.unwrap_or(whole));
        let ids: Vec<ChunkId> = object.chunks.iter().map(|c| c.id).collect();
        let r2 = self.clone();
        let ahead = self.inner.config.chunks_in_flight.max(1);
        Box::pin(
            futures::stream::iter(slices)
                .map(move |slice| {
                    let (r2, id) = (r2.clone(), ids[slice.index]);
                    async move {
                        let data = r2.read_chunk(id).await?;
                        let (start, end) = (slice.start as usize, slice.end as usize);
                        if end > data.len() || start > end {
                            return Err(R2Error::Internal(format!("chunk {id} is shorter than its metadata says")));
                        }
                        Ok(data.slice(start..end))
                    }
                })
                .buffered(ahead),
        )
    }

    /// Streams `body` into chunks on their holders, checking limits and digests; the chunks,
    /// what the body hashed to, and (when `inline` allows and the body is at most
    /// [`meta::INLINE_MAX_BYTES`]) the bytes themselves instead of a chunk. Nothing is
    /// committed here.
    async fn take_body(
        &self,
        mut body: BodyStream,
        declared: Option<u64>,
        max: u64,
        what: &'static str,
        inline: bool,
        sha256: bool,
    ) -> Result<(Vec<ChunkRef>, body::Digests, Option<Vec<u8>>), R2Error> {
        if let Some(size) = declared.filter(|size| *size > max) {
            return Err(R2Error::EntityTooLarge { what, size, max });
        }
        // The whole body's SHA-256 only when one was declared to check it against.
        let mut chunker = if sha256 { body::Chunker::default() } else { body::Chunker::default().without_sha256() };
        let mut writing = FuturesOrdered::new();
        let mut chunks = Vec::new();
        let mut received = 0u64;
        let in_flight = self.inner.config.chunks_in_flight.max(1);
        while let Some(data) = body.next().await {
            let data = data?;
            received += data.len() as u64;
            if received > max {
                return Err(R2Error::EntityTooLarge { what, size: received, max });
            }
            for chunk in chunker.push(&data) {
                writing.push_back(self.write_chunk(chunk));
                while writing.len() >= in_flight {
                    if let Some(done) = writing.next().await {
                        chunks.push(done?);
                    }
                }
            }
        }
        let (last, digests) = chunker.finish();
        let small = inline && chunks.is_empty() && writing.is_empty() && digests.size <= meta::INLINE_MAX_BYTES as u64;
        let mut kept = None;
        match last {
            Some(chunk) if small => kept = Some(chunk),
            Some(chunk) => writing.push_back(self.write_chunk(chunk)),
            None if small => kept = Some(Vec::new()),
            None => {}
        }
        while let Some(done) = writing.next().await {
            chunks.push(done?);
        }
        if let Some(size) = declared.filter(|size| *size != digests.size) {
            return Err(R2Error::InvalidRequest(format!(
                "the body has {} bytes, and the request declared {size}",
                digests.size
            )));
        }
        Ok((chunks, digests, kept))
    }

    fn write_chunk(&self, chunk: Vec<u8>) -> impl std::future::Future<Output = Result<ChunkRef, R2Error>> + Send {
        let r2 = self.clone();
        async move {
            let size = chunk.len() as u64;
            let data = Bytes::from(chunk);
            let id = tokio::task::spawn_blocking({
                let data = data.clone();
                move || ChunkId::of(&data)
            })
            .await
            .map_err(|e| R2Error::Internal(e.to_string()))?;
            r2.store_chunk(id, data).await?;
            Ok(ChunkRef { id, size })
        }
    }

    /// Writes an object: its bytes to their holders, then its metadata in one commit. Until
    /// that commit, readers see the previous version whole.
    pub async fn put(&self, bucket: &str, key: &str, body: BodyStream, options: PutOptions) -> Result<Object, R2Error> {
        limits::check_key(key)?;
        check_metadata(&options.http, &options.custom)?;
        // Fail early on a bucket that does not exist (the commit checks again).
        if self.inner.meta.bucket(bucket)?.is_none() {
            self.bucket(bucket).await?;
        }
        let _permit = self.transfer_permit()?;
        let sha256 = options.sha256.is_some();
        let (chunks, digests, inline) =
            self.take_body(body, options.content_length, limits::MAX_OBJECT_BYTES, "the object", true, sha256).await?;
        check_digests(&options, &digests)?;
        let object = Object {
            key: key.to_owned(),
            version: fresh_id(),
            size: digests.size,
            etag: hex::encode(digests.md5),
            uploaded_ms: now_ms(),
            http: options.http,
            custom: options.custom,
            chunks,
            sha256: digests.sha256,
            inline,
        };
        let command = Command::PutObject {
            bucket: bucket.to_owned(),
            object: Box::new(object),
            conditions: options.conditions,
            source: None,
        };
        match self.propose(command).await? {
            Reply::Object(object) => Ok(*object),
            other => Err(unexpected(other)),
        }
    }

    /// Copies an object (its chunks are shared, not copied). `metadata`: `None` keeps the
    /// source's, `Some` replaces it (S3's `x-amz-metadata-directive: REPLACE`).
    pub async fn copy(
        &self,
        source: (&str, &str),
        source_conditions: &conditions::Conditions,
        target: (&str, &str),
        metadata: Option<(HttpMetadata, BTreeMap<String, String>)>,
        target_conditions: conditions::Conditions,
    ) -> Result<Object, R2Error> {
        limits::check_key(target.1)?;
        let from = self.head(source.0, source.1).await?;
        if source_conditions.for_read(&from.etag, from.uploaded_ms) != conditions::Verdict::Proceed {
            return Err(R2Error::PreconditionFailed);
        }
        let (http, custom) = metadata.unwrap_or((from.http.clone(), from.custom.clone()));
        check_metadata(&http, &custom)?;
        let object = Object {
            key: target.1.to_owned(),
            version: fresh_id(),
            size: from.size,
            etag: from.etag.clone(),
            uploaded_ms: now_ms(),
            http,
            custom,
            chunks: from.chunks.clone(),
            sha256: from.sha256,
            inline: from.inline.clone(),
        };
        let source = SourceCheck { bucket: source.0.to_owned(), key: source.1.to_owned(), version: from.version };
        let command = Command::PutObject {
            bucket: target.0.to_owned(),
            object: Box::new(object),
            conditions: target_conditions,
            source: Some(source),
        };
        match self.propose(command).await? {
            Reply::Object(object) => Ok(*object),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes keys; a key that does not exist is not an error (S3's and R2's rule).
    pub async fn delete(&self, bucket: &str, keys: Vec<String>) -> Result<(), R2Error> {
        for key in &keys {
            limits::check_key(key)?;
        }
        self.propose(Command::DeleteObjects { bucket: bucket.to_owned(), keys }).await.map(|_| ())
    }

    /// A page of a bucket's listing (see [`Metadata::list`]).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<meta::Listing, R2Error> {
        self.linearize().await?;
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let (delimiter, after) = (delimiter.map(str::to_owned), after.map(str::to_owned));
        self.read(move |meta| meta.list(&bucket, &prefix, delimiter.as_deref(), after.as_deref(), max)).await
    }

    // Multipart uploads.

    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        http: HttpMetadata,
        custom: BTreeMap<String, String>,
    ) -> Result<Upload, R2Error> {
        limits::check_key(key)?;
        check_metadata(&http, &custom)?;
        let upload = Upload {
            id: fresh_id(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            created_ms: now_ms(),
            http,
            custom,
        };
        self.propose(Command::CreateUpload { upload: upload.clone() }).await?;
        Ok(upload)
    }

    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Upload, R2Error> {
        let id = upload_id.to_owned();
        let found = match self
            .read({
                let id = id.clone();
                move |meta| meta.upload(&id)
            })
            .await?
        {
            Some(found) => Some(found),
            None => {
                self.linearize().await?;
                self.read(move |meta| meta.upload(&id)).await?
            }
        };
        found.filter(|u| u.bucket == bucket && u.key == key).ok_or_else(|| R2Error::NoSuchUpload(upload_id.to_owned()))
    }

    /// Uploads one part; its ETag (the hex MD5 of its bytes).
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: BodyStream,
        content_length: Option<u64>,
        md5: Option<[u8; 16]>,
        sha256: Option<[u8; 32]>,
    ) -> Result<Part, R2Error> {
        limits::check_part(number, content_length.unwrap_or(0))?;
        self.upload(bucket, key, upload_id).await?;
        let _permit = self.transfer_permit()?;
        let (chunks, digests, _) =
            self.take_body(body, content_length, limits::MAX_PART_BYTES, "a part", false, sha256.is_some()).await?;
        let options = PutOptions { md5, sha256, ..PutOptions::default() };
        check_digests(&options, &digests)?;
        let part = Part {
            number,
            etag: hex::encode(digests.md5),
            size: digests.size,
            md5: digests.md5,
            uploaded_ms: now_ms(),
            chunks,
        };
        self.commit_part(bucket, key, upload_id, part, None).await
    }

    /// Uploads a part whose bytes are (a range of) another object, sharing whole chunks and
    /// copying only the partial chunks at the range's ends.
    pub async fn upload_part_copy(
        &self,
        target: (&str, &str, &str),
        number: u32,
        source: (&str, &str),
        range: Option<&str>,
        source_conditions: &conditions::Conditions,
    ) -> Result<Part, R2Error> {
        let (bucket, key, upload_id) = target;
        limits::check_part(number, 0)?;
        self.upload(bucket, key, upload_id).await?;
        let from = self.head(source.0, source.1).await?;
        if source_conditions.for_read(&from.etag, from.uploaded_ms) != conditions::Verdict::Proceed {
            return Err(R2Error::PreconditionFailed);
        }
        let range = match range {
            Some(header) => Some(body::parse_range(header, from.size)?),
            None => None,
        };
        // The bytes go through a chunker again: a part's chunks must be whole 4 MiB chunks
        // from its own start, and the MD5 (its ETag) needs every byte anyway.
        let _permit = self.transfer_permit()?;
        let data = self.body(&from, range);
        let size = range.map_or(from.size, |r| r.len());
        let (chunks, digests, _) =
            self.take_body(data, Some(size), limits::MAX_PART_BYTES, "a part", false, false).await?;
        let part = Part {
            number,
            etag: hex::encode(digests.md5),
            size: digests.size,
            md5: digests.md5,
            uploaded_ms: now_ms(),
            chunks,
        };
        let check = SourceCheck { bucket: source.0.to_owned(), key: source.1.to_owned(), version: from.version };
        self.commit_part(bucket, key, upload_id, part, Some(check)).await
    }

    async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: Part,
        source: Option<SourceCheck>,
    ) -> Result<Part, R2Error> {
        let command = Command::PutPart {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            part: part.clone(),
            source,
        };
        self.propose(command).await?;
        Ok(part)
    }

    /// Completes an upload from the listed (part number, ETag) pairs: the object appears in
    /// one commit, or nothing changes.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
        conditions: conditions::Conditions,
    ) -> Result<Object, R2Error> {
        if parts.is_empty() {
            return Err(R2Error::NoParts);
        }
        if parts.windows(2).any(|pair| pair[1].0 <= pair[0].0) {
            return Err(R2Error::InvalidPartOrder);
        }
        let command = Command::CompleteUpload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            parts,
            version: fresh_id(),
            time_ms: now_ms(),
            conditions,
        };
        match self.propose(command).await? {
            Reply::Object(object) => Ok(*object),
            other => Err(unexpected(other)),
        }
    }

    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), R2Error> {
        let command =
            Command::AbortUpload { bucket: bucket.to_owned(), key: key.to_owned(), upload_id: upload_id.to_owned() };
        self.propose(command).await.map(|_| ())
    }

    pub async fn parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<Part>, R2Error> {
        self.linearize().await?;
        self.upload(bucket, key, upload_id).await?;
        let id = upload_id.to_owned();
        self.read(move |meta| meta.parts(&id)).await
    }

    pub async fn uploads(&self, bucket: &str, prefix: &str, max: usize) -> Result<Vec<Upload>, R2Error> {
        self.bucket(bucket).await?;
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        self.read(move |meta| meta.uploads(&bucket, &prefix, max)).await
    }

    // Access keys.

    /// Creates an access key; the secret is returned here and never again.
    pub async fn create_access_key(&self, name: &str) -> Result<AccessKey, R2Error> {
        let id = format!("{:020X}", rand::random::<u128>() >> 48);
        let secret_bytes: [u8; 32] = rand::random();
        let key = AccessKey { id, secret: hex::encode(secret_bytes), name: name.to_owned(), created_ms: now_ms() };
        self.propose(Command::PutAccessKey { key: key.clone() }).await?;
        Ok(key)
    }

    pub async fn delete_access_key(&self, id: &str) -> Result<(), R2Error> {
        self.propose(Command::DeleteAccessKey { id: id.to_owned() }).await.map(|_| ())
    }

    /// Every access key (with secrets: the caller shows only ids and names).
    pub async fn access_keys(&self) -> Result<Vec<AccessKey>, R2Error> {
        self.linearize().await?;
        self.read(|meta| meta.access_keys()).await
    }

    /// The secret of an access key, for checking a signature: from this replica, and if it
    /// does not know the key yet (created a moment ago through another node), after
    /// catching up with the leader.
    pub async fn secret_of(&self, id: &str) -> Result<Option<String>, R2Error> {
        let lookup = |id: String| move |meta: &Metadata| meta.access_key(&id).map(|k| k.map(|k| k.secret));
        if let Some(secret) = self.read(lookup(id.to_owned())).await? {
            return Ok(Some(secret));
        }
        self.linearize().await?;
        self.read(lookup(id.to_owned())).await
    }

    pub fn config(&self) -> &R2Config {
        &self.inner.config
    }

    pub(crate) fn log(&self) -> &Arc<dyn MetadataLog> {
        &self.inner.log
    }

    pub(crate) fn chunks(&self) -> &Arc<ChunkStore> {
        &self.inner.chunks
    }

    pub(crate) fn meta(&self) -> &Arc<Metadata> {
        &self.inner.meta
    }

    /// Waits `every`, or returns false once `shutdown` fires.
    pub(crate) async fn pause(every: Duration, shutdown: &tokio_util::sync::CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(every) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

fn unexpected(reply: Reply) -> R2Error {
    R2Error::Internal(format!("unexpected metadata reply {reply:?}"))
}

fn check_metadata(http: &HttpMetadata, custom: &BTreeMap<String, String>) -> Result<(), R2Error> {
    let mut pairs: Vec<(&str, &str)> = http.pairs().collect();
    pairs.extend(custom.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    limits::check_metadata(pairs)
}

fn check_digests(options: &PutOptions, digests: &body::Digests) -> Result<(), R2Error> {
    if options.md5.is_some_and(|md5| md5 != digests.md5) {
        return Err(R2Error::BadDigest { algorithm: "MD5" });
    }
    if options.sha256.is_some_and(|sha| Some(sha) != digests.sha256) {
        return Err(R2Error::BadDigest { algorithm: "SHA-256" });
    }
    Ok(())
}
