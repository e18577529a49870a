/// What went wrong in the control plane, named for what the caller should do.
/// `api::status_of` is the one place that maps these to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The request (component, manifest, name) is wrong; nothing was stored.
    #[error("{0}")]
    Invalid(String),
    /// The request collides with what another worker holds (a route); nothing was stored.
    #[error("{0}")]
    Conflict(String),
    #[error("worker `{0}` does not exist")]
    WorkerNotFound(String),
    #[error("worker `{worker}` has no version {version}")]
    VersionNotFound { worker: String, version: u64 },
    #[error("missing or wrong API token")]
    Unauthorized,
    /// The token is valid but lacks the scope the route needs.
    #[error("this token lacks the `{0}` scope")]
    Forbidden(String),
    /// A Pages project or deployment that does not exist (the message names it).
    #[error("{0}")]
    NotFound(String),
    #[error("no token with id `{0}`")]
    TokenNotFound(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// A capability this control plane lacks (e.g. no JavaScript engine); nothing was stored.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}
