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
            R2Error::InvalidChunkId | R2Error::ChunkMissing(_) | R2Error::ChunkCorrupt { .. } | R2Error::Io { .. } => {
                "InternalError"
            }
        }
    }

    /// The HTTP status that goes with [`R2Error::s3_code`].
    pub fn status(&self) -> u16 {
        match self.s3_code() {
            "InternalError" => 500,
            "InvalidRange" => 416,
            "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied" | "RequestTimeTooSkewed" => 403,
            _ => 400,
        }
    }
}
