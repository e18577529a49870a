use nimbus_runtime::RuntimeError;
use nimbus_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("control plane url is invalid: {0}")]
    BadUrl(String),
    #[error("cannot reach the control plane: {0}")]
    Unreachable(#[from] tonic::transport::Error),
    #[error("control plane call failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("deployment manifest is not valid JSON: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("internal error: {0}")]
    Internal(String),
}
