use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

/// Why the runtime could not serve a request or load a worker. Variants say what happened to
/// whom; `http::error_response` is the one place that turns them into a status.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no worker answers for host `{host}` and path `{path}`")]
    NoRoute { host: String, path: String },
    #[error("request body is larger than this worker's limit of {limit} bytes")]
    RequestTooLarge { limit: u64 },
    #[error("worker `{worker}` exceeded its CPU limit of {limit_ms} ms")]
    CpuLimit { worker: String, limit_ms: u64 },
    #[error("worker `{worker}` exceeded its memory limit of {limit_mb} MiB")]
    MemoryLimit { worker: String, limit_mb: u64 },
    #[error("worker `{worker}` did not finish within {limit_ms} ms")]
    WallTimeout { worker: String, limit_ms: u64 },
    #[error("worker `{worker}` trapped: {message}")]
    Trap { worker: String, message: String },
    #[error("worker `{worker}` returned without sending a response")]
    NoResponse { worker: String },
    #[error("worker `{worker}` sent a response body over its limit of {limit} bytes")]
    ResponseTooLarge { worker: String, limit: u64 },
    #[error("worker `{worker}` sent an invalid response: {code:?}")]
    BadResponse { worker: String, code: ErrorCode },
    /// Every instance slot of the node is in use; the client may retry.
    #[error("node is at its instance limit; retry shortly")]
    Overloaded,
    /// This worker already serves its most requests at once on this node; the client may retry.
    #[error("worker `{worker}` is serving {limit} requests on this node, its limit (runtime.max_concurrent_per_worker); retry shortly")]
    WorkerBusy { worker: String, limit: usize },
    #[error("component {hash} is not valid: {message}")]
    Compile { hash: String, message: String },
    #[error("component of worker `{worker}` cannot be linked: {message}")]
    Link { worker: String, message: String },
    #[error("component {hash} is neither cached on this node nor available from the control plane")]
    ComponentMissing { hash: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("internal runtime error: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// The metrics label of a failed request.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeError::NoRoute { .. } => "no_route",
            RuntimeError::RequestTooLarge { .. } => "request_too_large",
            RuntimeError::CpuLimit { .. } => "cpu_limit",
            RuntimeError::MemoryLimit { .. } => "memory_limit",
            RuntimeError::WallTimeout { .. } => "wall_timeout",
            RuntimeError::Trap { .. } => "trap",
            RuntimeError::NoResponse { .. } => "no_response",
            RuntimeError::BadResponse { .. } => "bad_response",
            RuntimeError::ResponseTooLarge { .. } => "response_too_large",
            RuntimeError::Overloaded => "overloaded",
            RuntimeError::WorkerBusy { .. } => "worker_busy",
            RuntimeError::Compile { .. } => "compile",
            RuntimeError::Link { .. } => "link",
            RuntimeError::ComponentMissing { .. } => "component_missing",
            RuntimeError::Io { .. } => "io",
            RuntimeError::Internal(_) => "internal",
        }
    }

    /// True when the instance that produced this error must not serve again.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, RuntimeError::NoRoute { .. } | RuntimeError::RequestTooLarge { .. })
    }
}
