//! R2's metadata: buckets, objects, multipart uploads and their parts, CORS rules, access
//! keys and chunk reference counts, in one SQLite file every replica writes from the Raft log.
//!
//! This is the state machine half. Commands ([`Command`]) are typed, never SQL from a user,
//! and carry everything that must be chosen once (versions, upload ids, times), so `apply` is
//! deterministic: every replica checks the same preconditions on the same state and gives
//! the same [`Reply`]. A refused command is a [`Refusal`] in the reply and changes nothing.
//! Reads ([`Metadata::object`], [`Metadata::list`] …) run on the local file; the caller
//! linearizes first (the leader's read index) when it promises R2's strong consistency.
//!
//! Commands are idempotent where a retry can repeat them (a proposal retried after a leader
//! change): a PUT or completion that finds its own version already in place answers as if it
//! had just applied.
//!
//! Keys are stored as BLOBs so they order as S3 lists them (by UTF-8 bytes).

use super::conditions::{Conditions, Verdict};
use super::{ChunkId, R2Error};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The application's name in the Raft group.
pub const APP: &str = "r2";
/// How many keys a listing returns at most (S3's `max-keys` ceiling).
pub const MAX_LIST_KEYS: usize = 1000;

/// Bucket names as R2 allows them: 3 to 63 of lowercase letters, digits and `-`, starting and
/// ending with a letter or digit.
pub fn check_bucket_name(name: &str) -> Result<(), R2Error> {
    let bytes = name.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(R2Error::InvalidBucketName(name.to_owned()))
    }
}

/// One chunk of an object, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub size: u64,
}

/// The HTTP metadata R2 keeps with an object and sends back as headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpMetadata {
    pub content_type: Option<String>,
    pub content_language: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
}

impl HttpMetadata {
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("content-type", &self.content_type),
            ("content-language", &self.content_language),
            ("content-disposition", &self.content_disposition),
            ("content-encoding", &self.content_encoding),
            ("cache-control", &self.cache_control),
            ("expires", &self.expires),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
    }
}

/// An object as R2 describes it (`R2Object`), with where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub key: String,
    /// Chosen by the node that took the write: 32 hex digits, new for every write.
    pub version: String,
    pub size: u64,
    /// Without quotes: the hex MD5, or `<hex>-<parts>` for a multipart upload.
    pub etag: String,
    pub uploaded_ms: u64,
    pub http: HttpMetadata,
    pub custom: BTreeMap<String, String>,
    pub chunks: Vec<ChunkRef>,
    /// The SHA-256 of the whole body, when known (single PUTs).
    pub sha256: Option<[u8; 32]>,
    /// The bytes themselves, for an object small enough to live in the metadata
    /// ([`INLINE_MAX_BYTES`]); `chunks` is then empty.
    pub inline: Option<Vec<u8>>,
}

/// Objects up to this size are kept in the metadata itself: one Raft commit (on a quorum,
/// fsynced) instead of chunk files on three nodes plus the commit, and a read served from the
/// local replica. Larger objects are chunks. (garage inlines below 3 KiB.)
pub const INLINE_MAX_BYTES: usize = 8 * 1024;

/// A part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    pub md5: [u8; 16],
    pub uploaded_ms: u64,
    pub chunks: Vec<ChunkRef>,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub created_ms: u64,
    pub http: HttpMetadata,
    pub custom: BTreeMap<String, String>,
}

/// What a write must find in place of the source of a copy: the version it read. A copy
/// commits only if the source still holds those bytes, so its chunks cannot be collected
/// between the read and the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCheck {
    pub bucket: String,
    pub key: String,
    pub version: String,
}

/// A command in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateBucket {
        name: String,
        time_ms: u64,
    },
    DeleteBucket {
        name: String,
    },
    PutObject {
        bucket: String,
        object: Box<Object>,
        conditions: Conditions,
        source: Option<SourceCheck>,
    },
    DeleteObjects {
        bucket: String,
        keys: Vec<String>,
    },
    CreateUpload {
        upload: Upload,
    },
    PutPart {
        bucket: String,
        key: String,
        upload_id: String,
        part: Part,
        source: Option<SourceCheck>,
    },
    CompleteUpload {
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String)>,
        version: String,
        time_ms: u64,
        conditions: Conditions,
    },
    AbortUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    PutCors {
        bucket: String,
        rules: Option<String>,
    },
    PutAccessKey {
        key: AccessKey,
    },
    DeleteAccessKey {
        id: String,
    },
    /// Aborts every upload created before `before_ms` (the leader's clock minus the expiry).
    ExpireUploads {
        before_ms: u64,
    },
}

/// An S3 access key. The secret is what SigV4 signs with, so it is kept (never logged, never
/// listed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub name: String,
    pub created_ms: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// Why a command changed nothing; every replica refuses alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    NoSuchBucket(String),
    BucketNotEmpty(String),
    NoSuchKey(String),
    NoSuchUpload(String),
    PreconditionFailed,
    /// The source of a copy changed between its read and this commit.
    SourceChanged,
    /// A part the completion lists is missing or has another ETag.
    InvalidPart(u32),
    Limit {
        code: String,
        message: String,
    },
    NoSuchAccessKey(String),
    Malformed(String),
}

impl From<Refusal> for R2Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoSuchBucket(name) => R2Error::NoSuchBucket(name),
            Refusal::BucketNotEmpty(name) => R2Error::BucketNotEmpty(name),
            Refusal::NoSuchKey(key) => R2Error::NoSuchKey(key),
            Refusal::NoSuchUpload(id) => R2Error::NoSuchUpload(id),
            Refusal::PreconditionFailed => R2Error::PreconditionFailed,
            Refusal::SourceChanged => {
                R2Error::Conflict("the copy's source changed while it was copied; try again".into())
            }
            Refusal::InvalidPart(part) => R2Error::InvalidPart(part),
            Refusal::Limit { code, message } => R2Error::Limit { code, message },
            Refusal::NoSuchAccessKey(id) => R2Error::NoSuchAccessKey(id),
            Refusal::Malformed(why) => R2Error::Internal(format!("a metadata command did not decode: {why}")),
        }
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    /// `CreateBucket`: whether it is new.
    Created(bool),
    /// The object a write left in place.
    Object(Box<Object>),
    /// `ExpireUploads`: how many it aborted.
    Expired(u64),
    Refused(Refusal),
}

/// A listing's page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub objects: Vec<Object>,
    pub prefixes: Vec<String>,
    /// More keys follow; the next page starts after [`Listing::last`].
    pub truncated: bool,
    /// The last key or common prefix this page returned.
    pub last: Option<String>,
}

/// A bucket as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub created_ms: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 0), applied_index INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES (0, 0);
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, cors TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (bucket TEXT NOT NULL, key BLOB NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key BLOB NOT NULL,
    created_ms INTEGER NOT NULL, record BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, id);
CREATE TABLE IF NOT EXISTS parts (upload TEXT NOT NULL, number INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (upload, number)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunk_refs (id BLOB PRIMARY KEY, refs INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_keys (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
";

/// The metadata file of this replica.
pub struct Metadata {
    path: PathBuf,
    conn: Mutex<Connection>,
}

type Sql<T> = rusqlite::Result<T>;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding our own types to a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Sql<T> {
    postcard::from_bytes(bytes).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn open_connection(path: &Path) -> Sql<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The Raft log is the durable record (see D1's files): a machine crash loses at most what
    // the log replays.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, if any.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

impl Metadata {
    /// Opens (creating if absent) the metadata file at `path`.
    pub fn open(path: &Path) -> Result<Self, R2Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(R2Error::io_at("creating", dir))?;
        }
        let conn = open_connection(path).map_err(R2Error::sql)?;
        Ok(Metadata { path: path.to_owned(), conn: Mutex::new(conn) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state machine's entry point: decodes and applies the command of log entry `index`.
    /// `Err` only when the file itself fails.
    pub fn apply(&self, index: u64, commands: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, R2Error> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(R2Error::sql)?;
        let applied: i64 = tx.query_row("SELECT applied_index FROM state", [], |r| r.get(0)).map_err(R2Error::sql)?;
        if index <= applied as u64 {
            // A replay after a crash: this file holds the entry already; nobody waits on it.
            return Ok(commands.iter().map(|_| encode(&Reply::Done)).collect());
        }
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            let reply = match postcard::from_bytes::<Command>(command) {
                Ok(command) => apply(&tx, command).map_err(R2Error::sql)?,
                Err(e) => Reply::Refused(Refusal::Malformed(e.to_string())),
            };
            replies.push(encode(&reply));
        }
        tx.execute("UPDATE state SET applied_index = ?1", [index as i64]).map_err(R2Error::sql)?;
        tx.commit().map_err(R2Error::sql)?;
        Ok(replies)
    }

    /// A copy of the whole file, taken with SQLite's backup API.
    pub fn snapshot(&self) -> Result<Vec<u8>, R2Error> {
        let copy = self.path.with_extension("snapshot");
        remove_files(&copy);
        self.lock().backup(rusqlite::MAIN_DB, &copy, None).map_err(R2Error::sql)?;
        let bytes = std::fs::read(&copy).map_err(R2Error::io_at("reading", &copy))?;
        remove_files(&copy);
        Ok(bytes)
    }

    /// Replaces the whole state with a snapshot's (`None`: empty).
    pub fn restore(&self, image: Option<&[u8]>) -> Result<(), R2Error> {
        let mut conn = self.lock();
        let incoming = self.path.with_extension("incoming");
        remove_files(&incoming);
        if let Some(bytes) = image {
            std::fs::write(&incoming, bytes).map_err(R2Error::io_at("writing", &incoming))?;
        }
        let fresh = open_connection(&incoming).map_err(R2Error::sql)?;
        // Copy into the live file (backup replaces its pages), so the path never changes.
        let target = rusqlite::backup::Backup::new(&fresh, &mut conn).map_err(R2Error::sql)?;
        target.run_to_completion(1024, std::time::Duration::ZERO, None).map_err(R2Error::sql)?;
        drop(target);
        drop(fresh);
        remove_files(&incoming);
        Ok(())
    }

    pub fn applied_index(&self) -> Result<u64, R2Error> {
        let conn = self.lock();
        conn.query_row("SELECT applied_index FROM state", [], |r| r.get::<_, i64>(0))
            .map(|i| i as u64)
            .map_err(R2Error::sql)
    }

    pub fn bucket(&self, name: &str) -> Result<Option<Bucket>, R2Error> {
        let conn = self.lock();
        conn.query_row("SELECT created_ms FROM buckets WHERE name = ?1", [name], |r| r.get::<_, i64>(0))
            .optional()
            .map(|created| created.map(|ms| Bucket { name: name.to_owned(), created_ms: ms as u64 }))
            .map_err(R2Error::sql)
    }

    pub fn buckets(&self) -> Result<Vec<Bucket>, R2Error> {
        let conn = self.lock();
        let mut statement =
            conn.prepare_cached("SELECT name, created_ms FROM buckets ORDER BY name").map_err(R2Error::sql)?;
        let rows = statement
            .query_map([], |r| Ok(Bucket { name: r.get(0)?, created_ms: r.get::<_, i64>(1)? as u64 }))
            .map_err(R2Error::sql)?;
        rows.collect::<Sql<Vec<_>>>().map_err(R2Error::sql)
    }

    pub fn cors(&self, bucket: &str) -> Result<Option<String>, R2Error> {
        let conn = self.lock();
        let cors: Option<Option<String>> = conn
            .query_row("SELECT cors FROM buckets WHERE name = ?1", [bucket], |r| r.get(0))
            .optional()
            .map_err(R2Error::sql)?;
        cors.ok_or_else(|| R2Error::NoSuchBucket(bucket.to_owned()))
    }

    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<Object>, R2Error> {
        let conn = self.lock();
        object(&conn, bucket, key).map_err(R2Error::sql)
    }

    /// A page of `bucket`'s keys after `after` (exclusive) that start with `prefix`, keys
    /// sharing a prefix up to `delimiter` rolled into one common prefix, at most `max` entries.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<Listing, R2Error> {
        let conn = self.lock();
        if conn
            .query_row("SELECT 1 FROM buckets WHERE name = ?1", [bucket], |_| Ok(()))
            .optional()
            .map_err(R2Error::sql)?
            .is_none()
        {
            return Err(R2Error::NoSuchBucket(bucket.to_owned()));
        }
        let max = max.min(MAX_LIST_KEYS);
        let mut listing = Listing::default();
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let end = successor(prefix.as_bytes());
        // The scan runs from `from`, leaving out `excluded` (the key it last returned).
        let (mut from, mut excluded): (Vec<u8>, Option<Vec<u8>>) = match after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => {
                // A page that ended on a common prefix resumes after every key under it.
                let rolled = delimiter.filter(|_| after.starts_with(prefix)).and_then(|d| {
                    after[prefix.len()..].find(d).map(|at| &after.as_bytes()[..prefix.len() + at + d.len()])
                });
                match rolled.and_then(successor) {
                    Some(next) => (next, None),
                    None => (after.as_bytes().to_vec(), Some(after.as_bytes().to_vec())),
                }
            }
            _ => (prefix.as_bytes().to_vec(), None),
        };
        let page = (max + 1) as i64;
        let mut statement = conn
            .prepare_cached(
                "SELECT key, record FROM objects WHERE bucket = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                 AND (?4 IS NULL OR key <> ?4) ORDER BY key LIMIT ?5",
            )
            .map_err(R2Error::sql)?;
        'scan: loop {
            let rows: Vec<(Vec<u8>, Vec<u8>)> = statement
                .query_map(params![bucket, from, end, excluded, page], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(R2Error::sql)?
                .collect::<Sql<_>>()
                .map_err(R2Error::sql)?;
            let last_page = (rows.len() as i64) < page;
            for (key_bytes, record) in rows {
                if listing.objects.len() + listing.prefixes.len() == max {
                    listing.truncated = true;
                    break 'scan;
                }
                let key = String::from_utf8(key_bytes).map_err(|e| R2Error::Internal(e.to_string()))?;
                let rolled = delimiter
                    .and_then(|d| key[prefix.len()..].find(d).map(|at| key[..prefix.len() + at + d.len()].to_owned()));
                match rolled {
                    Some(common) => {
                        // Jump past every key under this common prefix.
                        let next = successor(common.as_bytes());
                        listing.last = Some(common.clone());
                        listing.prefixes.push(common);
                        match next {
                            Some(next) => {
                                (from, excluded) = (next, None);
                                continue 'scan;
                            }
                            None => break 'scan,
                        }
                    }
                    None => {
                        let mut object: Object = decode(&record).map_err(R2Error::sql)?;
                        object.key = key.clone();
                        (from, excluded) = (key.as_bytes().to_vec(), Some(key.as_bytes().to_vec()));
                        listing.last = Some(key);
                        listing.objects.push(object);
                    }
                }
            }
            if last_page {
                break;
            }
        }
        Ok(listing)
    }

    pub fn upload(&self, id: &str) -> Result<Option<Upload>, R2Error> {
        let conn = self.lock();
        upload(&conn, id).map_err(R2Error::sql)
    }

    /// The uploads in progress in `bucket` whose key starts with `prefix`, oldest key first.
    pub fn uploads(&self, bucket: &str, prefix: &str, max: usize) -> Result<Vec<Upload>, R2Error> {
        let conn = self.lock();
        let end = successor(prefix.as_bytes());
        let mut statement = conn
            .prepare_cached(
                "SELECT record FROM uploads WHERE bucket = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                 ORDER BY key, id LIMIT ?4",
            )
            .map_err(R2Error::sql)?;
        let rows = statement
            .query_map(params![bucket, prefix.as_bytes(), end, max as i64], |r| r.get::<_, Vec<u8>>(0))
            .map_err(R2Error::sql)?;
        rows.map(|row| row.and_then(|bytes| decode(&bytes))).collect::<Sql<_>>().map_err(R2Error::sql)
    }

    /// The parts of an upload, by number.
    pub fn parts(&self, upload_id: &str) -> Result<Vec<Part>, R2Error> {
        let conn = self.lock();
        parts(&conn, upload_id).map_err(R2Error::sql)
    }

    pub fn access_key(&self, id: &str) -> Result<Option<AccessKey>, R2Error> {
        let conn = self.lock();
        let record: Option<Vec<u8>> = conn
            .query_row("SELECT record FROM access_keys WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(R2Error::sql)?;
        record.map(|bytes| decode(&bytes)).transpose().map_err(R2Error::sql)
    }

    pub fn access_keys(&self) -> Result<Vec<AccessKey>, R2Error> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached("SELECT record FROM access_keys ORDER BY id").map_err(R2Error::sql)?;
        let rows = statement.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(R2Error::sql)?;
        rows.map(|row| row.and_then(|bytes| decode(&bytes))).collect::<Sql<_>>().map_err(R2Error::sql)
    }

    /// Whether any upload was created before `ms` (so expiring them is worth a log entry).
    pub fn has_uploads_before(&self, ms: u64) -> Result<bool, R2Error> {
        let conn = self.lock();
        conn.query_row("SELECT 1 FROM uploads WHERE created_ms < ?1 LIMIT 1", [ms as i64], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(R2Error::sql)
    }

    /// Whether any object or part references the chunk.
    pub fn is_referenced(&self, id: &ChunkId) -> Result<bool, R2Error> {
        let conn = self.lock();
        conn.query_row("SELECT 1 FROM chunk_refs WHERE id = ?1", [id.as_bytes().as_slice()], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(R2Error::sql)
    }

    /// Referenced chunks after `after`, in id order, at most `max` (the repair scan's pages).
    pub fn referenced_chunks(&self, after: Option<&ChunkId>, max: usize) -> Result<Vec<ChunkId>, R2Error> {
        let conn = self.lock();
        let after = after.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let mut statement = conn
            .prepare_cached("SELECT id FROM chunk_refs WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(R2Error::sql)?;
        let rows = statement.query_map(params![after, max as i64], |r| r.get::<_, Vec<u8>>(0)).map_err(R2Error::sql)?;
        let mut ids = Vec::new();
        for row in rows {
            ids.push(ChunkId::from_bytes(&row.map_err(R2Error::sql)?)?);
        }
        Ok(ids)
    }
}

fn object(conn: &Connection, bucket: &str, key: &str) -> Sql<Option<Object>> {
    let record: Option<Vec<u8>> = conn
        .query_row("SELECT record FROM objects WHERE bucket = ?1 AND key = ?2", params![bucket, key.as_bytes()], |r| {
            r.get(0)
        })
        .optional()?;
    record
        .map(|bytes| {
            decode::<Object>(&bytes).map(|mut object| {
                object.key = key.to_owned();
                object
            })
        })
        .transpose()
}

fn upload(conn: &Connection, id: &str) -> Sql<Option<Upload>> {
    let record: Option<Vec<u8>> =
        conn.query_row("SELECT record FROM uploads WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    record.map(|bytes| decode(&bytes)).transpose()
}

fn parts(conn: &Connection, upload_id: &str) -> Sql<Vec<Part>> {
    let mut statement = conn.prepare_cached("SELECT record FROM parts WHERE upload = ?1 ORDER BY number")?;
    let rows = statement.query_map([upload_id], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|row| row.and_then(|bytes| decode(&bytes))).collect()
}

fn bucket_exists(tx: &Transaction<'_>, name: &str) -> Sql<bool> {
    Ok(tx.query_row("SELECT 1 FROM buckets WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some())
}

/// Adds `delta` references to each chunk (a chunk listed twice counts twice).
fn reference(tx: &Transaction<'_>, chunks: &[ChunkRef], delta: i64) -> Sql<()> {
    for chunk in chunks {
        let id = chunk.id.as_bytes().as_slice();
        tx.execute(
            "INSERT INTO chunk_refs (id, refs) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET refs = refs + ?2",
            params![id, delta],
        )?;
        tx.execute("DELETE FROM chunk_refs WHERE id = ?1 AND refs <= 0", [id])?;
    }
    Ok(())
}

fn store_object(tx: &Transaction<'_>, bucket: &str, object: &Object) -> Sql<()> {
    let mut record = object.clone();
    let key = std::mem::take(&mut record.key);
    tx.execute(
        "INSERT OR REPLACE INTO objects (bucket, key, record) VALUES (?1, ?2, ?3)",
        params![bucket, key.as_bytes(), encode(&record)],
    )?;
    Ok(())
}

fn source_holds(tx: &Transaction<'_>, source: &Option<SourceCheck>) -> Sql<bool> {
    let Some(source) = source else { return Ok(true) };
    Ok(object(tx, &source.bucket, &source.key)?.is_some_and(|o| o.version == source.version))
}

fn drop_upload(tx: &Transaction<'_>, id: &str) -> Sql<()> {
    for part in parts(tx, id)? {
        reference(tx, &part.chunks, -1)?;
    }
    tx.execute("DELETE FROM parts WHERE upload = ?1", [id])?;
    tx.execute("DELETE FROM uploads WHERE id = ?1", [id])?;
    Ok(())
}

fn refused(refusal: Refusal) -> Sql<Reply> {
    Ok(Reply::Refused(refusal))
}

fn apply(tx: &Transaction<'_>, command: Command) -> Sql<Reply> {
    match command {
        Command::CreateBucket { name, time_ms } => {
            if check_bucket_name(&name).is_err() {
                return refused(Refusal::Malformed(format!("invalid bucket name {name:?}")));
            }
            let created = tx.execute(
                "INSERT OR IGNORE INTO buckets (name, created_ms) VALUES (?1, ?2)",
                params![name, time_ms as i64],
            )?;
            Ok(Reply::Created(created == 1))
        }
        Command::DeleteBucket { name } => {
            if !bucket_exists(tx, &name)? {
                return refused(Refusal::NoSuchBucket(name));
            }
            let has_objects =
                tx.query_row("SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1", [&name], |_| Ok(())).optional()?;
            let has_uploads =
                tx.query_row("SELECT 1 FROM uploads WHERE bucket = ?1 LIMIT 1", [&name], |_| Ok(())).optional()?;
            if has_objects.is_some() || has_uploads.is_some() {
                return refused(Refusal::BucketNotEmpty(name));
            }
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&name])?;
            Ok(Reply::Done)
        }
        Command::PutObject { bucket, object: new, conditions, source } => {
            if !bucket_exists(tx, &bucket)? {
                return refused(Refusal::NoSuchBucket(bucket));
            }
            let current = object(tx, &bucket, &new.key)?;
            if let Some(current) = &current {
                if current.version == new.version {
                    return Ok(Reply::Object(Box::new(current.clone())));
                }
            }
            if conditions.for_write(current.as_ref().map(|o| (o.etag.as_str(), o.uploaded_ms))) != Verdict::Proceed {
                return refused(Refusal::PreconditionFailed);
            }
            if !source_holds(tx, &source)? {
                return refused(Refusal::SourceChanged);
            }
            if let Some(current) = &current {
                reference(tx, &current.chunks, -1)?;
            }
            reference(tx, &new.chunks, 1)?;
            store_object(tx, &bucket, &new)?;
            Ok(Reply::Object(new))
        }
        Command::DeleteObjects { bucket, keys } => {
            if !bucket_exists(tx, &bucket)? {
                return refused(Refusal::NoSuchBucket(bucket));
            }
            for key in keys {
                if let Some(current) = object(tx, &bucket, &key)? {
                    reference(tx, &current.chunks, -1)?;
                    tx.execute("DELETE FROM objects WHERE bucket = ?1 AND key = ?2", params![bucket, key.as_bytes()])?;
                }
            }
            Ok(Reply::Done)
        }
        Command::CreateUpload { upload } => {
            if !bucket_exists(tx, &upload.bucket)? {
                return refused(Refusal::NoSuchBucket(upload.bucket));
            }
            tx.execute(
                "INSERT OR IGNORE INTO uploads (id, bucket, key, created_ms, record) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![upload.id, upload.bucket, upload.key.as_bytes(), upload.created_ms as i64, encode(&upload)],
            )?;
            Ok(Reply::Done)
        }
        Command::PutPart { bucket, key, upload_id, part, source } => {
            match upload(tx, &upload_id)? {
                Some(found) if found.bucket == bucket && found.key == key => {}
                _ => return refused(Refusal::NoSuchUpload(upload_id)),
            }
            if !source_holds(tx, &source)? {
                return refused(Refusal::SourceChanged);
            }
            let previous: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT record FROM parts WHERE upload = ?1 AND number = ?2",
                    params![upload_id, part.number],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(previous) = previous {
                let previous: Part = decode(&previous)?;
                reference(tx, &previous.chunks, -1)?;
            }
            reference(tx, &part.chunks, 1)?;
            tx.execute(
                "INSERT OR REPLACE INTO parts (upload, number, record) VALUES (?1, ?2, ?3)",
                params![upload_id, part.number, encode(&part)],
            )?;
            Ok(Reply::Done)
        }
        Command::CompleteUpload { bucket, key, upload_id, parts: listed, version, time_ms, conditions } => {
            let Some(found) = upload(tx, &upload_id)?.filter(|u| u.bucket == bucket && u.key == key) else {
                // A retried completion whose first try applied finds its own version.
                return match object(tx, &bucket, &key)? {
                    Some(done) if done.version == version => Ok(Reply::Object(Box::new(done))),
                    _ => refused(Refusal::NoSuchUpload(upload_id)),
                };
            };
            let stored: BTreeMap<u32, Part> = parts(tx, &upload_id)?.into_iter().map(|p| (p.number, p)).collect();
            let mut chosen = Vec::with_capacity(listed.len());
            for (number, etag) in &listed {
                match stored.get(number) {
                    Some(part) if part.etag == etag.trim_matches('"') => chosen.push(part),
                    _ => return refused(Refusal::InvalidPart(*number)),
                }
            }
            let sizes: Vec<(u32, u64)> = chosen.iter().map(|p| (p.number, p.size)).collect();
            if let Err(e) = super::limits::check_completion(&sizes) {
                return refused(Refusal::Limit { code: e.s3_code().to_owned(), message: e.to_string() });
            }
            let current = object(tx, &bucket, &found.key)?;
            if conditions.for_write(current.as_ref().map(|o| (o.etag.as_str(), o.uploaded_ms))) != Verdict::Proceed {
                return refused(Refusal::PreconditionFailed);
            }
            let md5s: Vec<[u8; 16]> = chosen.iter().map(|p| p.md5).collect();
            let completed = Object {
                key: found.key.clone(),
                version,
                size: chosen.iter().map(|p| p.size).sum(),
                etag: super::limits::multipart_etag(&md5s),
                uploaded_ms: time_ms,
                http: found.http.clone(),
                custom: found.custom.clone(),
                chunks: chosen.iter().flat_map(|p| p.chunks.iter().copied()).collect(),
                sha256: None,
                inline: None,
            };
            if let Some(current) = &current {
                reference(tx, &current.chunks, -1)?;
            }
            reference(tx, &completed.chunks, 1)?;
            store_object(tx, &bucket, &completed)?;
            drop_upload(tx, &upload_id)?;
            Ok(Reply::Object(Box::new(completed)))
        }
        Command::AbortUpload { bucket, key, upload_id } => {
            match upload(tx, &upload_id)? {
                Some(found) if found.bucket == bucket && found.key == key => drop_upload(tx, &upload_id)?,
                _ => return refused(Refusal::NoSuchUpload(upload_id)),
            }
            Ok(Reply::Done)
        }
        Command::PutCors { bucket, rules } => {
            if tx.execute("UPDATE buckets SET cors = ?2 WHERE name = ?1", params![bucket, rules])? == 0 {
                return refused(Refusal::NoSuchBucket(bucket));
            }
            Ok(Reply::Done)
        }
        Command::PutAccessKey { key } => {
            tx.execute(
                "INSERT OR REPLACE INTO access_keys (id, record) VALUES (?1, ?2)",
                params![key.id, encode(&key)],
            )?;
            Ok(Reply::Done)
        }
        Command::DeleteAccessKey { id } => {
            if tx.execute("DELETE FROM access_keys WHERE id = ?1", [&id])? == 0 {
                return refused(Refusal::NoSuchAccessKey(id));
            }
            Ok(Reply::Done)
        }
        Command::ExpireUploads { before_ms } => {
            let ids: Vec<String> = {
                let mut statement = tx.prepare("SELECT id FROM uploads WHERE created_ms < ?1")?;
                let rows = statement.query_map([before_ms as i64], |r| r.get(0))?;
                rows.collect::<Sql<_>>()?
            };
            for id in &ids {
                drop_upload(tx, id)?;
            }
            Ok(Reply::Expired(ids.len() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = Metadata::open(&dir.path().join("meta.sqlite")).expect("open");
        (dir, meta)
    }

    struct Log<'a> {
        meta: &'a Metadata,
        index: u64,
    }

    impl Log<'_> {
        fn apply(&mut self, command: Command) -> Reply {
            self.index += 1;
            let mut replies = self.meta.apply(self.index, &[encode(&command)]).expect("apply");
            postcard::from_bytes(&replies.remove(0)).expect("reply")
        }
    }

    fn chunk(n: u8) -> ChunkRef {
        ChunkRef { id: ChunkId::of(&[n]), size: 1 }
    }

    fn object(key: &str, version: &str, chunks: Vec<ChunkRef>) -> Object {
        Object {
            key: key.into(),
            version: version.into(),
            size: chunks.len() as u64,
            etag: format!("etag-{version}"),
            uploaded_ms: 1_000,
            http: HttpMetadata::default(),
            custom: BTreeMap::new(),
            chunks,
            sha256: None,
            inline: None,
        }
    }

    fn put(bucket: &str, object: Object) -> Command {
        Command::PutObject {
            bucket: bucket.into(),
            object: Box::new(object),
            conditions: Conditions::default(),
            source: None,
        }
    }

    #[test]
    fn listing_rolls_up_prefixes_and_pages_resume_where_they_ended() {
        let (_dir, meta) = open();
        let mut log = Log { meta: &meta, index: 0 };
        log.apply(Command::CreateBucket { name: "media".into(), time_ms: 1 });
        let keys = ["a/1", "a/2", "a/3", "b", "c/x/1", "c/y", "d", "é/1"];
        for (i, key) in keys.iter().enumerate() {
            log.apply(put("media", object(key, &format!("v{i}"), vec![])));
        }
        let all = meta.list("media", "", None, None, 100).expect("list");
        assert_eq!(all.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), keys);
        assert!(!all.truncated);

        // Pages of two with a delimiter: every entry once, in order, resuming after a prefix.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = meta.list("media", "", Some("/"), after.as_deref(), 2).expect("page");
            seen.extend(page.prefixes.iter().cloned());
            seen.extend(page.objects.iter().map(|o| o.key.clone()));
            if !page.truncated {
                break;
            }
            after = page.last.clone();
        }
        seen.sort();
        assert_eq!(seen, ["a/", "b", "c/", "d", "é/"]);

        let under_c = meta.list("media", "c/", Some("/"), None, 100).expect("list c/");
        assert_eq!(under_c.prefixes, ["c/x/"]);
        assert_eq!(under_c.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["c/y"]);
        let after_a2 = meta.list("media", "a/", None, Some("a/2"), 100).expect("start after");
        assert_eq!(after_a2.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a/3"]);
        assert!(matches!(meta.list("nope", "", None, None, 10), Err(R2Error::NoSuchBucket(_))));
    }

    #[test]
    fn writes_are_idempotent_and_preconditions_are_decided_in_the_log() {
        let (_dir, meta) = open();
        let mut log = Log { meta: &meta, index: 0 };
        assert_eq!(log.apply(Command::CreateBucket { name: "media".into(), time_ms: 1 }), Reply::Created(true));
        assert_eq!(log.apply(Command::CreateBucket { name: "media".into(), time_ms: 2 }), Reply::Created(false));
        let first = object("k", "v1", vec![chunk(1)]);
        assert_eq!(log.apply(put("media", first.clone())), Reply::Object(Box::new(first.clone())));
        // A retried proposal finds its own version: answered again, applied once.
        assert_eq!(log.apply(put("media", first.clone())), Reply::Object(Box::new(first.clone())));
        let create_only = Conditions { if_none_match: Some("*".into()), ..Conditions::default() };
        let refused = log.apply(Command::PutObject {
            bucket: "media".into(),
            object: Box::new(object("k", "v2", vec![chunk(2)])),
            conditions: create_only,
            source: None,
        });
        assert_eq!(refused, Reply::Refused(Refusal::PreconditionFailed));
        assert_eq!(meta.object("media", "k").expect("read"), Some(first));
        assert_eq!(
            log.apply(put("ghost", object("k", "v3", vec![]))),
            Reply::Refused(Refusal::NoSuchBucket("ghost".into()))
        );
        assert_eq!(
            log.apply(Command::DeleteBucket { name: "media".into() }),
            Reply::Refused(Refusal::BucketNotEmpty("media".into()))
        );
        // A replayed entry (an index the file holds) changes nothing.
        let replay =
            meta.apply(1, &[encode(&Command::DeleteObjects { bucket: "media".into(), keys: vec!["k".into()] })]);
        assert!(replay.is_ok());
        assert!(meta.object("media", "k").expect("read").is_some());
        // A command that does not decode is refused, not a failure of the replica.
        log.index += 1;
        let mut replies = meta.apply(log.index, &[b"\xff\xff\xff".to_vec()]).expect("apply");
        let garbage: Reply = postcard::from_bytes(&replies.remove(0)).expect("reply");
        assert!(matches!(garbage, Reply::Refused(Refusal::Malformed(_))));
        // Commands committed together apply in order, each with its reply.
        log.index += 1;
        let batch = [
            encode(&Command::DeleteObjects { bucket: "media".into(), keys: vec!["k".into()] }),
            encode(&Command::DeleteBucket { name: "media".into() }),
        ];
        let replies: Vec<Reply> = meta
            .apply(log.index, &batch)
            .expect("apply")
            .iter()
            .map(|r| postcard::from_bytes(r).expect("reply"))
            .collect();
        assert_eq!(replies, [Reply::Done, Reply::Done], "the delete made the bucket empty for the next command");
        assert!(meta.bucket("media").expect("read").is_none());
    }

    #[test]
    fn chunk_references_follow_overwrites_copies_uploads_and_deletes() {
        let (_dir, meta) = open();
        let mut log = Log { meta: &meta, index: 0 };
        log.apply(Command::CreateBucket { name: "media".into(), time_ms: 1 });
        let referenced = |n: u8| meta.is_referenced(&chunk(n).id).expect("refs");
        log.apply(put("media", object("a", "v1", vec![chunk(1), chunk(2)])));
        log.apply(put("media", object("a", "v2", vec![chunk(2), chunk(3)])));
        assert!(!referenced(1) && referenced(2) && referenced(3), "the overwrite released chunk 1");
        let copy = Command::PutObject {
            bucket: "media".into(),
            object: Box::new(object("b", "v3", vec![chunk(2), chunk(3)])),
            conditions: Conditions::default(),
            source: Some(SourceCheck { bucket: "media".into(), key: "a".into(), version: "v1".into() }),
        };
        assert_eq!(log.apply(copy), Reply::Refused(Refusal::SourceChanged), "the source moved on since it was read");
        let copy = Command::PutObject {
            bucket: "media".into(),
            object: Box::new(object("b", "v3", vec![chunk(2), chunk(3)])),
            conditions: Conditions::default(),
            source: Some(SourceCheck { bucket: "media".into(), key: "a".into(), version: "v2".into() }),
        };
        assert!(matches!(log.apply(copy), Reply::Object(_)));
        log.apply(Command::DeleteObjects { bucket: "media".into(), keys: vec!["a".into()] });
        assert!(referenced(2) && referenced(3), "the copy still holds them");

        let upload = Upload {
            id: "u1".into(),
            bucket: "media".into(),
            key: "big".into(),
            created_ms: 10,
            http: HttpMetadata::default(),
            custom: BTreeMap::new(),
        };
        log.apply(Command::CreateUpload { upload });
        let part = |number: u32, n: u8, size: u64| Part {
            number,
            etag: format!("p{number}"),
            size,
            md5: [number as u8; 16],
            uploaded_ms: 11,
            chunks: vec![chunk(n)],
        };
        for (number, n, size) in [(1, 4, 5 << 20), (2, 5, 1), (3, 6, 5 << 20)] {
            let command = Command::PutPart {
                bucket: "media".into(),
                key: "big".into(),
                upload_id: "u1".into(),
                part: part(number, n, size),
                source: None,
            };
            assert_eq!(log.apply(command), Reply::Done);
        }
        let complete = |parts: Vec<(u32, &str)>, version: &str| Command::CompleteUpload {
            bucket: "media".into(),
            key: "big".into(),
            upload_id: "u1".into(),
            parts: parts.into_iter().map(|(n, e)| (n, e.to_owned())).collect(),
            version: version.into(),
            time_ms: 12,
            conditions: Conditions::default(),
        };
        assert_eq!(log.apply(complete(vec![(1, "p1"), (3, "wrong")], "v9")), Reply::Refused(Refusal::InvalidPart(3)));
        let small = log.apply(complete(vec![(2, "p2"), (3, "p3")], "v9"));
        assert!(
            matches!(small, Reply::Refused(Refusal::Limit { ref code, .. }) if code == "EntityTooSmall"),
            "{small:?}"
        );
        let Reply::Object(done) = log.apply(complete(vec![(1, "p1"), (3, "p3")], "v9")) else { panic!("completes") };
        assert_eq!(done.etag, super::super::limits::multipart_etag(&[[1; 16], [3; 16]]));
        assert_eq!(done.chunks, vec![chunk(4), chunk(6)]);
        assert!(!referenced(5), "the part left out of the completion is released");
        // A retried completion answers with the object it made.
        assert_eq!(log.apply(complete(vec![(1, "p1"), (3, "p3")], "v9")), Reply::Object(done));
        assert!(meta.upload("u1").expect("read").is_none());
    }

    #[test]
    fn snapshots_restore_the_whole_state_and_none_empties_it() {
        let (_dir, meta) = open();
        let mut log = Log { meta: &meta, index: 0 };
        log.apply(Command::CreateBucket { name: "media".into(), time_ms: 1 });
        log.apply(put("media", object("k", "v1", vec![chunk(1)])));
        let image = meta.snapshot().expect("snapshot");
        let (_other_dir, other) = open();
        other.restore(Some(&image)).expect("restore");
        assert_eq!(other.object("media", "k").expect("read"), meta.object("media", "k").expect("read"));
        assert_eq!(other.applied_index().expect("index"), 2);
        other.restore(None).expect("empty");
        assert!(other.buckets().expect("buckets").is_empty());
        assert_eq!(other.applied_index().expect("index"), 0);
    }
}
