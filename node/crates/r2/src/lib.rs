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
//! - [`sigv4`]: AWS Signature Version 4, in the header or presigned, checked in constant time.
//! - [`R2Error`]: every failure, with its S3 error code and HTTP status.

pub mod body;
pub mod chunks;
pub mod conditions;
mod error;
pub mod limits;
pub mod sigv4;

pub use chunks::{holders, ChunkId, ChunkStore};
pub use error::R2Error;
