//! R2's one error enum. Each variant that a client can cause maps to the S3 error code and
//! status that S3 clients (boto3, the aws CLI) expect.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum R2Error {
    #[error("object keys are 1 to {max} bytes of UTF-8; this one has {len}")]
    KeyTooLong { len: usize, max: usize },
    #[error("object keys are 1 to 1024 bytes of UTF-8")]
    InvalidKey,
    #[error("metadata is at most {max} bytes; this is {len}")]
    MetadataTooLarge { len: usize, max: usize },
    #[error("{what} is {size} bytes; the most is {max}")]
    EntityTooLarge { what: &'static str, size: u64, max: u64 },
    #[error("part {part} is {size} bytes; every part but the last must be at least {min} bytes")]
    EntityTooSmall { part: u32, size: u64, min: u64 },
    #[error("part {part} is {size} bytes; every part but the last must be the same size ({expected} bytes)")]
    UnequalParts { part: u32, size: u64, expected: u64 },
    #[error("part numbers are 1 to {max}; got {part}")]
    InvalidPartNumber { part: u32, max: u32 },
    #[error("the parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    #[error("an upload completes with at least one part")]
    NoParts,
    #[error("the range is not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    #[error("the signature does not match the request and the access key's secret")]
    SignatureDoesNotMatch,
    #[error("no such access key")]
    InvalidAccessKeyId,
    #[error("access denied: {0}")]
    AccessDenied(&'static str),
    #[error("the request's time is more than 15 minutes from the server's")]
    RequestTimeTooSkewed,
    #[error("malformed signature: {0}")]
    AuthorizationMalformed(String),
    #[error("chunk ids are 64 lowercase hex digits")]
    InvalidChunkId,
    #[error("no chunk {0} on this node")]
    ChunkMissing(String),
    #[error("chunk {id} on this node is damaged: its bytes hash to {actual}")]
    ChunkCorrupt { id: String, actual: String },
    #[error("bucket names are 3 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit; got {0:?}")]
    InvalidBucketName(String),
    #[error("no bucket {0}")]
    NoSuchBucket(String),
    #[error("bucket {0} already exists")]
    BucketAlreadyOwnedByYou(String),
    #[error("bucket {0} is not empty (objects or uploads in progress)")]
    BucketNotEmpty(String),
    #[error("no object {0}")]
    NoSuchKey(String),
    #[error("no upload {0} (never created, completed or aborted)")]
    NoSuchUpload(String),
    #[error("a condition of the request does not hold")]
    PreconditionFailed,
    #[error("part {0} is not uploaded, or its ETag differs")]
    InvalidPart(u32),
    #[error("{message}")]
    Limit { code: String, message: String },
    #[error("bucket {0} has no CORS configuration")]
    NoSuchCorsConfiguration(String),
    #[error("no access key {0}")]
    NoSuchAccessKey(String),
    #[error("the body's {algorithm} is not the one the request declared")]
    BadDigest { algorithm: &'static str },
    #[error("the request is malformed: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("this node is moving as many object bodies as it may at once; try again shortly")]
    SlowDown,
    #[error("{0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl R2Error {
    pub(crate) fn io_at<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> R2Error + 'a {
        move |source| R2Error::Io { context: format!("{doing} {}", path.display()), source }
    }

    pub(crate) fn sql(error: rusqlite::Error) -> R2Error {
        R2Error::Internal(format!("r2 metadata: {error}"))
    }

    /// The S3 error code a client sees.
    pub fn s3_code(&self) -> &'static str {
        match self {
            R2Error::KeyTooLong { .. } => "KeyTooLongError",
            R2Error::InvalidKey => "InvalidArgument",
            R2Error::MetadataTooLarge { .. } => "MetadataTooLarge",
            R2Error::EntityTooLarge { .. } => "EntityTooLarge",
            R2Error::EntityTooSmall { .. } => "EntityTooSmall",
            // R2's answer: "All non-trailing parts must have the same length."
            R2Error::UnequalParts { .. } => "InvalidPart",
            R2Error::InvalidPartNumber { .. } => "InvalidArgument",
            R2Error::InvalidPartOrder => "InvalidPartOrder",
            R2Error::NoParts => "MalformedXML",
            R2Error::InvalidRange { .. } => "InvalidRange",
            R2Error::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            R2Error::InvalidAccessKeyId => "InvalidAccessKeyId",
            R2Error::AccessDenied(_) => "AccessDenied",
            R2Error::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            R2Error::AuthorizationMalformed(_) => "AuthorizationHeaderMalformed",
            R2Error::InvalidBucketName(_) => "InvalidBucketName",
            R2Error::NoSuchBucket(_) => "NoSuchBucket",
            R2Error::BucketAlreadyOwnedByYou(_) => "BucketAlreadyOwnedByYou",
            R2Error::BucketNotEmpty(_) => "BucketNotEmpty",
            R2Error::NoSuchKey(_) => "NoSuchKey",
            R2Error::NoSuchUpload(_) => "NoSuchUpload",
            R2Error::PreconditionFailed => "PreconditionFailed",
            R2Error::InvalidPart(_) => "InvalidPart",
            R2Error::Limit { code, .. } => limit_code(code),
            R2Error::NoSuchAccessKey(_) => "NoSuchAccessKey",
            R2Error::NoSuchCorsConfiguration(_) => "NoSuchCORSConfiguration",
            R2Error::BadDigest { algorithm: "SHA-256" } => "XAmzContentSHA256Mismatch",
            R2Error::BadDigest { .. } => "BadDigest",
            R2Error::InvalidRequest(_) => "InvalidRequest",
            R2Error::Conflict(_) => "OperationAborted",
            R2Error::Unavailable(_) => "ServiceUnavailable",
            R2Error::SlowDown => "SlowDown",
            R2Error::InvalidChunkId
            | R2Error::ChunkMissing(_)
            | R2Error::ChunkCorrupt { .. }
            | R2Error::Internal(_)
            | R2Error::Io { .. } => "InternalError",
        }
    }

    /// The HTTP status that goes with [`R2Error::s3_code`].
    pub fn status(&self) -> u16 {
        match self.s3_code() {
            "InternalError" => 500,
            "ServiceUnavailable" | "SlowDown" => 503,
            "InvalidRange" => 416,
            "PreconditionFailed" => 412,
            "NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" | "NoSuchAccessKey" | "NoSuchCORSConfiguration" => 404,
            "BucketAlreadyOwnedByYou" | "BucketNotEmpty" | "OperationAborted" => 409,
            "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied" | "RequestTimeTooSkewed" => 403,
            _ => 400,
        }
    }

    /// Worth trying again (another holder, a later attempt).
    pub fn is_retryable(&self) -> bool {
        matches!(self.s3_code(), "InternalError" | "ServiceUnavailable" | "SlowDown" | "OperationAborted")
    }
}

/// A limit's code as it crossed the log, mapped back to a static S3 code.
fn limit_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "EntityTooLarge",
        "EntityTooSmall",
        "InvalidPart",
        "InvalidPartOrder",
        "InvalidArgument",
        "MalformedXML",
        "KeyTooLongError",
        "MetadataTooLarge",
    ];
    CODES.iter().find(|c| **c == code).copied().unwrap_or("InvalidRequest")
}
