//! The control plane's Pages API: projects, deployments, and the blobs they are made of.

use serde::{Deserialize, Serialize};

/// `POST /v1/pages/projects`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    /// The branch whose deployments are production (`main` when absent).
    #[serde(default)]
    pub production_branch: Option<String>,
}

/// A project, as `GET /v1/pages/projects[/{name}]` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub name: String,
    pub production_branch: String,
    /// The deployment production serves, if any.
    pub production: Option<String>,
    /// Custom domains production also answers on.
    #[serde(default)]
    pub domains: Vec<String>,
    pub created_ms: u64,
    /// Newest first (only in `GET /v1/pages/projects/{name}`).
    #[serde(default)]
    pub deployments: Vec<DeploymentInfo>,
}

/// `GET /v1/pages/projects`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectList {
    pub projects: Vec<ProjectInfo>,
}

/// One deployment of a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentInfo {
    /// Short hex id; `<id>.<project>.<suffix>` serves it forever.
    pub id: String,
    pub branch: String,
    /// The branch's alias host label (`fix/api` → `fix-api`).
    pub alias: String,
    pub commit_hash: Option<String>,
    pub commit_message: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// Whether production serves it now.
    pub production: bool,
    /// The worker its Functions (or `_worker.js`) run as, if it has any.
    #[serde(default)]
    pub worker: Option<String>,
    pub created_ms: u64,
}

/// `POST /v1/pages/assets/check-missing`: which of these blobs the control plane lacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckMissing {
    pub hashes: Vec<String>,
}

/// The answer to [`CheckMissing`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Missing {
    pub missing: Vec<String>,
}

/// `POST /v1/pages/projects/{name}/deployments`. Every file's blob must be uploaded first
/// (`PUT /v1/pages/assets/{hash}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// `nimbus_pages::site::Manifest` as JSON.
    pub manifest: serde_json::Value,
    /// The project's production branch when absent.
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit_hash: Option<String>,
    #[serde(default)]
    pub commit_message: Option<String>,
    /// Pages Functions (a `functions/` directory) or a `_worker.js`, with what they import.
    #[serde(default)]
    pub functions: Option<FunctionsUpload>,
}

/// The code of a deployment: compiled by the control plane into one JavaScript worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionsUpload {
    /// Every module, named by its path in the project: `functions/api/[id].ts` (each file
    /// under `functions/` is a route), and what they import (`lib/db.ts`).
    pub modules: Vec<SourceModule>,
    /// Advanced mode: the module (`_worker.js`) whose default export handles every request;
    /// no routing is generated and `functions/` is not used.
    #[serde(default)]
    pub worker_main: Option<String>,
    /// Bindings, vars and limits, as a worker's manifest (`nimbus_proto::manifest::WorkerManifest`).
    #[serde(default)]
    pub manifest: Option<serde_json::Value>,
}

/// One JavaScript or TypeScript module.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceModule {
    pub name: String,
    pub source: String,
}

/// What a deployment created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PagesDeployed {
    pub project: String,
    pub deployment: DeploymentInfo,
    /// The watch sequence number that carries it to the nodes.
    pub seq: u64,
}

/// `POST /v1/pages/projects/{name}/rollback`: production serves this deployment again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The deployment's id; the production deployment before the current one when absent.
    #[serde(default)]
    pub deployment: Option<String>,
}
