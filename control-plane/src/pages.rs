//! Pages: projects, their immutable deployments, and the content-addressed blobs (manifests
//! and files) they are made of. `PAGES.md` argues the design.
//!
//! Guarantees: a blob is stored once per SHA-256, written to a temporary file, fsynced and
//! renamed, so a name on disk always holds exactly the bytes it names; a deployment is
//! accepted only when its manifest checks (`nimbus_pages::site::Site::new`: Cloudflare's
//! limits, the rules files with file and line) and every file's blob is stored, and it
//! commits in one transaction with the event that carries the project to the nodes.
//! Must never: make a file name of anything but a checked hash.
//!
//! Tables: `pages_projects` (name → production branch, production deployment) and
//! `pages_deployments` (project, id → branch, commit, manifest hash, sizes). The events are
//! `events` rows whose `worker` is `pages/<project>` (no worker can be named so).

use crate::api::Api;
use crate::error::ControlPlaneError;
use crate::store::Store;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use nimbus_api::pages::{
    CheckMissing, CreateDeployment, CreateProject, DeploymentInfo, Missing, PagesDeployed, ProjectInfo, ProjectList,
    Rollback,
};
use nimbus_pages::blobs::BlobError;
use nimbus_pages::site::{branch_slug, is_hash, Manifest, Site, MAX_FILE_BYTES};
use nimbus_proto::deploy::{PagesDeployment, PagesProject};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

mod functions;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pages_projects (
    name TEXT PRIMARY KEY,
    production_branch TEXT NOT NULL,
    production TEXT,
    domains TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pages_deployments (
    project TEXT NOT NULL REFERENCES pages_projects(name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_hash TEXT,
    commit_message TEXT,
    manifest_hash TEXT NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    worker TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, id)
);
";

/// The `events.worker` prefix of a Pages project's events.
pub const EVENT_PREFIX: &str = "pages/";
/// The deployments a project keeps (and every node holds): the newest, and production.
pub const MAX_DEPLOYMENTS: usize = 100;
/// The most custom domains a project has.
const MAX_DOMAINS: usize = 100;
/// The most hashes one check-missing call asks about.
const MAX_CHECK: usize = nimbus_pages::site::MAX_FILES + 1;
/// The longest commit message kept (the rest is cut).
const MAX_COMMIT_MESSAGE: usize = 4096;

/// The longest project name: its Functions run as worker `pages-<project>-<id>`, at most 63.
pub const MAX_PROJECT_NAME: usize = 48;

/// Checks a project name: as a worker's (it is a DNS label of its hosts), at most 48 bytes.
pub fn check_project_name(name: &str) -> Result<(), ControlPlaneError> {
    let invalid = |why: String| ControlPlaneError::Invalid(format!("project name: {why}"));
    nimbus_proto::manifest::validate_worker_name(name).map_err(|e| invalid(e.0))?;
    if name.len() > MAX_PROJECT_NAME {
        return Err(invalid(format!("`{name}` is longer than {MAX_PROJECT_NAME} bytes")));
    }
    Ok(())
}

fn check_branch(branch: &str) -> Result<(), ControlPlaneError> {
    if branch.is_empty() || branch.len() > 255 || branch.chars().any(char::is_control) || branch_slug(branch).is_empty()
    {
        return Err(ControlPlaneError::Invalid(format!("branch {branch:?} has no letter or digit to alias it by")));
    }
    Ok(())
}

/// How often unreferenced blobs are collected, and how old one must be to go.
pub const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
pub const BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Collects unreferenced blobs every [`COLLECT_EVERY`] until `stop`.
pub async fn collect_blobs_forever(store: std::sync::Arc<Store>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(COLLECT_EVERY) => {}
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.collect_blobs(BLOB_GRACE)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "Pages blobs no deployment references were deleted"),
            Ok(Err(e)) => tracing::warn!("collecting Pages blobs: {e}"),
            Err(e) => tracing::warn!("collecting Pages blobs: {e}"),
        }
    }
}

impl Store {
    /// Whether the blob `hash` is stored.
    pub fn has_blob(&self, hash: &str) -> bool {
        self.blobs.has(hash)
    }

    /// Stores `bytes` as the blob `hash`, refusing bytes of another hash.
    pub fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), ControlPlaneError> {
        self.blobs.put(hash, bytes).map_err(blob_error)
    }

    /// The blob `hash`, if stored.
    pub fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>, ControlPlaneError> {
        self.blobs.get(hash).map_err(blob_error)
    }

    /// Deletes the blobs no kept deployment references (its manifest or one of its files)
    /// and that are older than `grace`: an upload in flight (blobs first, the manifest last)
    /// is younger than that. Returns how many went.
    pub fn collect_blobs(&self, grace: std::time::Duration) -> Result<usize, ControlPlaneError> {
        let manifests: Vec<String> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare("SELECT DISTINCT manifest_hash FROM pages_deployments")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut referenced: std::collections::HashSet<String> = manifests.iter().cloned().collect();
        for hash in &manifests {
            // A manifest that cannot be read keeps everything: never delete on a guess.
            let Some(bytes) = self.blob(hash)? else { return Ok(0) };
            let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else { return Ok(0) };
            referenced.extend(manifest.files.into_values().map(|f| f.hash));
        }
        Ok(self.blobs.sweep(&referenced, grace))
    }

    pub fn create_project(&self, name: &str, production_branch: &str) -> Result<u64, ControlPlaneError> {
        check_project_name(name)?;
        check_branch(production_branch)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let t = crate::store::now();
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO pages_projects (name, production_branch, created_at) VALUES (?1, ?2, ?3)",
            params![name, production_branch, t],
        )?;
        if inserted == 0 {
            return Err(ControlPlaneError::Conflict(format!("Pages project `{name}` exists")));
        }
        let seq = pages_event(&tx, name, true)?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn delete_project(&self, name: &str) -> Result<u64, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM pages_deployments WHERE project = ?1", [name])?;
        if tx.execute("DELETE FROM pages_projects WHERE name = ?1", [name])? == 0 {
            return Err(ControlPlaneError::NotFound(format!("no Pages project `{name}`")));
        }
        let seq = pages_event(&tx, name, false)?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn projects(&self) -> Result<Vec<ProjectInfo>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT name, production_branch, production, created_at, domains FROM pages_projects ORDER BY name",
        )?;
        let rows = stmt.query_map([], project_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A project with its deployments, newest first.
    pub fn project(&self, name: &str) -> Result<ProjectInfo, ControlPlaneError> {
        let conn = self.conn()?;
        project_info(&conn, name)
    }

    /// Records deployment `id` whose manifest blob and file blobs (and Functions `worker`)
    /// are stored; production serves it when its branch is the production branch. Keeps
    /// [`MAX_DEPLOYMENTS`]; returns the workers of the deployments that went.
    pub fn add_deployment(
        &self,
        project: &str,
        id: &str,
        request: &CreateDeployment,
        manifest: &Manifest,
        manifest_hash: &str,
        worker: Option<&str>,
    ) -> Result<(DeploymentInfo, u64, Vec<String>), ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let production_branch: String = tx
            .query_row("SELECT production_branch FROM pages_projects WHERE name = ?1", [project], |r| r.get(0))
            .optional()?
            .ok_or_else(|| ControlPlaneError::NotFound(format!("no Pages project `{project}`")))?;
        let branch = request.branch.clone().unwrap_or_else(|| production_branch.clone());
        check_branch(&branch)?;
        let message = request.commit_message.as_deref().map(|m| m.chars().take(MAX_COMMIT_MESSAGE).collect::<String>());
        let bytes: u64 = manifest.files.values().map(|f| f.size).sum();
        let t = crate::store::now();
        tx.execute(
            "INSERT INTO pages_deployments
               (project, id, branch, commit_hash, commit_message, manifest_hash, files, bytes, worker, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                project,
                id,
                branch,
                request.commit_hash,
                message,
                manifest_hash,
                manifest.files.len() as i64,
                bytes as i64,
                worker,
                t
            ],
        )?;
        if branch == production_branch {
            tx.execute("UPDATE pages_projects SET production = ?2 WHERE name = ?1", params![project, id])?;
        }
        // The oldest beyond the bound go, never production.
        let beyond = "project = ?1 AND id NOT IN (
                 SELECT id FROM pages_deployments WHERE project = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2)
               AND id IS NOT (SELECT production FROM pages_projects WHERE name = ?1)";
        let pruned: Vec<String> = {
            let mut stmt =
                tx.prepare(&format!("SELECT worker FROM pages_deployments WHERE {beyond} AND worker IS NOT NULL"))?;
            let rows = stmt.query_map(params![project, MAX_DEPLOYMENTS as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute(&format!("DELETE FROM pages_deployments WHERE {beyond}"), params![project, MAX_DEPLOYMENTS as i64])?;
        let seq = pages_event(&tx, project, true)?;
        let info = project_info(&tx, project)?
            .deployments
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ControlPlaneError::Internal("a deployment vanished as it was made".into()))?;
        tx.commit()?;
        Ok((info, seq, pruned))
    }

    /// Adds (or removes) custom domain `domain` to `project`; refused when another project
    /// has it.
    pub fn set_domain(&self, project: &str, domain: &str, add: bool) -> Result<u64, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let mut info = project_info(&tx, project)?;
        if add {
            if let Some(owner) = domain_owner(&tx, domain)?.filter(|o| o != project) {
                return Err(ControlPlaneError::Conflict(format!("`{domain}` is a domain of Pages project `{owner}`")));
            }
            if !info.domains.iter().any(|d| d == domain) {
                if info.domains.len() >= MAX_DOMAINS {
                    return Err(ControlPlaneError::Invalid(format!("a project has at most {MAX_DOMAINS} domains")));
                }
                info.domains.push(domain.to_owned());
            }
        } else if let Some(at) = info.domains.iter().position(|d| d == domain) {
            info.domains.remove(at);
        } else {
            return Err(ControlPlaneError::NotFound(format!("`{project}` has no domain `{domain}`")));
        }
        let domains = serde_json::to_string(&info.domains).map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
        tx.execute("UPDATE pages_projects SET domains = ?2 WHERE name = ?1", params![project, domains])?;
        let seq = pages_event(&tx, project, true)?;
        tx.commit()?;
        Ok(seq)
    }

    /// The project that has custom domain `domain`, if any.
    pub fn pages_domain_owner(&self, domain: &str) -> Result<Option<String>, ControlPlaneError> {
        let conn = self.conn()?;
        domain_owner(&conn, domain)
    }

    /// The Functions workers of a project's deployments.
    pub fn project_workers(&self, project: &str) -> Result<Vec<String>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT worker FROM pages_deployments WHERE project = ?1 AND worker IS NOT NULL")?;
        let rows = stmt.query_map([project], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Production serves `deployment` (a production-branch one); by default the production
    /// deployment made before the current one.
    pub fn rollback_pages(&self, project: &str, deployment: Option<&str>) -> Result<(String, u64), ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let info = project_info(&tx, project)?;
        let on_production: Vec<&DeploymentInfo> =
            info.deployments.iter().filter(|d| d.branch == info.production_branch).collect();
        let target = match deployment {
            Some(id) => on_production.iter().find(|d| d.id == id).map(|d| d.id.clone()).ok_or_else(|| {
                ControlPlaneError::NotFound(format!(
                    "`{project}` has no deployment `{id}` of its production branch `{}`",
                    info.production_branch
                ))
            })?,
            None => {
                let current = info.production.as_deref().unwrap_or("");
                let at = on_production.iter().position(|d| d.id == current).map_or(0, |at| at + 1);
                on_production.get(at).map(|d| d.id.clone()).ok_or_else(|| {
                    ControlPlaneError::Invalid(format!("`{project}` has no earlier production deployment"))
                })?
            }
        };
        tx.execute("UPDATE pages_projects SET production = ?2 WHERE name = ?1", params![project, target])?;
        let seq = pages_event(&tx, project, true)?;
        tx.commit()?;
        Ok((target, seq))
    }
}

fn domain_owner(conn: &rusqlite::Connection, domain: &str) -> Result<Option<String>, ControlPlaneError> {
    Ok(conn
        .query_row(
            "SELECT name FROM pages_projects WHERE EXISTS (SELECT 1 FROM json_each(domains) WHERE value = ?1)",
            [domain],
            |r| r.get(0),
        )
        .optional()?)
}

/// A custom domain: a lowercase host name of letters, digits, `-` and dots.
pub fn check_domain(domain: &str) -> Result<(), ControlPlaneError> {
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if domain.len() <= 253 && domain.contains('.') && labels_ok {
        Ok(())
    } else {
        Err(ControlPlaneError::Invalid(format!("{domain:?} is not a lowercase host name such as docs.example.com")))
    }
}

fn blob_error(error: BlobError) -> ControlPlaneError {
    match error {
        BlobError::Io { context, source } => ControlPlaneError::Io { context, source },
        other => ControlPlaneError::Invalid(other.to_string()),
    }
}

/// Appends the event of a project's change (`live`: upsert, else deletion); its seq.
fn pages_event(tx: &rusqlite::Transaction<'_>, project: &str, live: bool) -> Result<u64, ControlPlaneError> {
    tx.execute(
        "INSERT INTO events (worker, version, created_at) VALUES (?1, ?2, ?3)",
        params![format!("{EVENT_PREFIX}{project}"), live.then_some(1), crate::store::now()],
    )?;
    Ok(tx.last_insert_rowid() as u64)
}

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectInfo> {
    Ok(ProjectInfo {
        name: r.get(0)?,
        production_branch: r.get(1)?,
        production: r.get(2)?,
        created_ms: r.get::<_, i64>(3)? as u64,
        domains: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        deployments: Vec::new(),
    })
}

fn project_info(conn: &rusqlite::Connection, name: &str) -> Result<ProjectInfo, ControlPlaneError> {
    let mut info = conn
        .query_row(
            "SELECT name, production_branch, production, created_at, domains FROM pages_projects WHERE name = ?1",
            [name],
            project_row,
        )
        .optional()?
        .ok_or_else(|| ControlPlaneError::NotFound(format!("no Pages project `{name}`")))?;
    let mut stmt = conn.prepare(
        "SELECT id, branch, commit_hash, commit_message, files, bytes, created_at, worker FROM pages_deployments
         WHERE project = ?1 ORDER BY created_at DESC, rowid DESC",
    )?;
    let production = info.production.clone().unwrap_or_default();
    let rows = stmt.query_map([name], |r| {
        let id: String = r.get(0)?;
        let branch: String = r.get(1)?;
        Ok(DeploymentInfo {
            production: id == production,
            alias: branch_slug(&branch),
            id,
            branch,
            commit_hash: r.get(2)?,
            commit_message: r.get(3)?,
            files: r.get::<_, i64>(4)? as u64,
            bytes: r.get::<_, i64>(5)? as u64,
            created_ms: r.get::<_, i64>(6)? as u64,
            worker: r.get(7)?,
        })
    })?;
    info.deployments = rows.collect::<Result<_, _>>()?;
    Ok(info)
}

/// A project as the nodes get it (`None`: deleted).
pub fn project_message(conn: &rusqlite::Connection, name: &str) -> Result<Option<PagesProject>, ControlPlaneError> {
    let project = conn
        .query_row("SELECT production_branch, production, domains FROM pages_projects WHERE name = ?1", [name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?))
        })
        .optional()?;
    let Some((production_branch, production, domains)) = project else { return Ok(None) };
    let mut stmt = conn.prepare(
        "SELECT id, branch, manifest_hash, worker FROM pages_deployments WHERE project = ?1 ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map([name], |r| {
        Ok(PagesDeployment {
            id: r.get(0)?,
            branch: r.get(1)?,
            manifest_hash: r.get(2)?,
            worker: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        })
    })?;
    Ok(Some(PagesProject {
        name: name.to_owned(),
        production_branch,
        production: production.unwrap_or_default(),
        deployments: rows.collect::<Result<_, _>>()?,
        domains: serde_json::from_str(&domains).unwrap_or_default(),
    }))
}

/// Every project as the nodes get it.
pub fn all_projects(conn: &rusqlite::Connection) -> Result<Vec<PagesProject>, ControlPlaneError> {
    let names: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM pages_projects ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut projects = Vec::with_capacity(names.len());
    for name in names {
        projects.extend(project_message(conn, &name)?);
    }
    Ok(projects)
}

/// The Pages routes of the control plane's API (scope `pages`).
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/pages/projects", get(list_projects).post(create_project))
        .route("/v1/pages/projects/{name}", get(show_project).delete(delete_project))
        .route("/v1/pages/projects/{name}/deployments", post(deploy))
        .route("/v1/pages/projects/{name}/rollback", post(rollback))
        .route("/v1/pages/projects/{name}/domains/{domain}", put(add_domain).delete(remove_domain))
        .route("/v1/pages/assets/check-missing", post(check_missing))
        // An upload is one file: refused past Cloudflare's 25 MiB before it is buffered.
        .route("/v1/pages/assets/{hash}", put(upload).layer(DefaultBodyLimit::max(MAX_FILE_BYTES as usize + 1)))
}

async fn list_projects(State(api): State<Api>) -> Result<Json<ProjectList>, ControlPlaneError> {
    Ok(Json(ProjectList { projects: api.store.projects()? }))
}

async fn create_project(
    State(api): State<Api>,
    Json(request): Json<CreateProject>,
) -> Result<Response, ControlPlaneError> {
    let branch = request.production_branch.as_deref().unwrap_or("main");
    let seq = api.store.create_project(&request.name, branch)?;
    api.notify(seq);
    tracing::info!(project = %request.name, "Pages project created");
    Ok((StatusCode::CREATED, Json(api.store.project(&request.name)?)).into_response())
}

async fn show_project(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<ProjectInfo>, ControlPlaneError> {
    Ok(Json(api.store.project(&name)?))
}

async fn delete_project(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, ControlPlaneError> {
    let workers = api.store.project_workers(&name)?;
    let seq = api.store.delete_project(&name)?;
    api.notify(seq);
    remove_workers(&api, &workers);
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the Functions workers of deployments that are gone (after the project's event, so
/// no node serves a deployment whose worker it has dropped).
fn remove_workers(api: &Api, workers: &[String]) {
    for worker in workers {
        match api.store.delete(worker) {
            Ok(seq) => api.notify(seq),
            Err(e) => tracing::warn!(%worker, "removing a Pages Functions worker: {e}"),
        }
    }
}

async fn check_missing(
    State(api): State<Api>,
    Json(request): Json<CheckMissing>,
) -> Result<Json<Missing>, ControlPlaneError> {
    if request.hashes.len() > MAX_CHECK {
        return Err(ControlPlaneError::Invalid(format!("at most {MAX_CHECK} hashes per call")));
    }
    if let Some(bad) = request.hashes.iter().find(|h| !is_hash(h)) {
        return Err(ControlPlaneError::Invalid(format!("{bad:?} is not a SHA-256 in lowercase hex")));
    }
    let store = api.store.clone();
    let missing = tokio::task::spawn_blocking(move || {
        request.hashes.into_iter().filter(|h| !store.has_blob(h)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
    Ok(Json(Missing { missing }))
}

async fn upload(
    State(api): State<Api>,
    Path(hash): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ControlPlaneError> {
    if body.len() as u64 > MAX_FILE_BYTES {
        return Err(ControlPlaneError::Invalid(format!("{} bytes; a Pages file is at most 25 MiB", body.len())));
    }
    let store = api.store.clone();
    tokio::task::spawn_blocking(move || store.put_blob(&hash, &body))
        .await
        .map_err(|e| ControlPlaneError::Internal(e.to_string()))??;
    Ok(StatusCode::CREATED)
}

async fn deploy(
    State(api): State<Api>,
    Path(project): Path<String>,
    Json(mut request): Json<CreateDeployment>,
) -> Result<Response, ControlPlaneError> {
    let mut manifest: Manifest = serde_json::from_value(request.manifest.clone())
        .map_err(|e| ControlPlaneError::Invalid(format!("manifest: {e}")))?;
    Site::new(manifest.clone()).map_err(|e| ControlPlaneError::Invalid(e.to_string()))?;
    api.store.project(&project)?;
    let store = api.store.clone();
    let paths: Vec<(String, String)> = manifest.files.iter().map(|(p, f)| (p.clone(), f.hash.clone())).collect();
    let absent = tokio::task::spawn_blocking(move || paths.into_iter().find(|(_, hash)| !store.has_blob(hash)))
        .await
        .map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
    if let Some((path, hash)) = absent {
        return Err(ControlPlaneError::Invalid(format!("{path}: its content ({hash}) was not uploaded")));
    }
    let id = crate::random_hex(4)?;
    let worker = match request.functions.take() {
        Some(upload) => Some(functions::build(&api, &project, &id, upload, &mut manifest.routes).await?),
        None => None,
    };
    let site = Site::new(manifest).map_err(|e| ControlPlaneError::Invalid(e.to_string()))?;
    let manifest = site.manifest();
    let bytes = serde_json::to_vec(manifest).map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
    let manifest_hash = hex::encode(Sha256::digest(&bytes));
    api.store.put_blob(&manifest_hash, &bytes)?;
    let (deployment, seq, pruned) =
        api.store.add_deployment(&project, &id, &request, manifest, &manifest_hash, worker.as_deref())?;
    api.notify(seq);
    remove_workers(&api, &pruned);
    tracing::info!(%project, id = %deployment.id, branch = %deployment.branch, files = deployment.files, "Pages deployment");
    Ok((StatusCode::CREATED, Json(PagesDeployed { project, deployment, seq })).into_response())
}

async fn add_domain(
    State(api): State<Api>,
    Path((project, domain)): Path<(String, String)>,
) -> Result<Json<ProjectInfo>, ControlPlaneError> {
    check_domain(&domain)?;
    // A worker's route on the host would shadow it, or it the route: one owner per host.
    for worker in api.store.snapshot()?.workers {
        let Ok(manifest) = serde_json::from_str::<nimbus_proto::manifest::WorkerManifest>(&worker.manifest_json) else {
            continue;
        };
        if manifest.routes.iter().any(|r| r.split('/').next() == Some(domain.as_str())) {
            return Err(ControlPlaneError::Conflict(format!(
                "worker `{}` has a route on `{domain}`; remove it there first",
                worker.name
            )));
        }
    }
    let seq = api.store.set_domain(&project, &domain, true)?;
    api.notify(seq);
    Ok(Json(api.store.project(&project)?))
}

async fn remove_domain(
    State(api): State<Api>,
    Path((project, domain)): Path<(String, String)>,
) -> Result<Json<ProjectInfo>, ControlPlaneError> {
    let seq = api.store.set_domain(&project, &domain, false)?;
    api.notify(seq);
    Ok(Json(api.store.project(&project)?))
}

async fn rollback(
    State(api): State<Api>,
    Path(project): Path<String>,
    Json(request): Json<Rollback>,
) -> Result<Json<ProjectInfo>, ControlPlaneError> {
    let (id, seq) = api.store.rollback_pages(&project, request.deployment.as_deref())?;
    api.notify(seq);
    tracing::info!(%project, %id, "Pages production rolled back");
    Ok(Json(api.store.project(&project)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_production_and_rollback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        store.create_project("site", "main").expect("creates");
        assert!(matches!(store.create_project("site", "main"), Err(ControlPlaneError::Conflict(_))));
        let bytes = b"<h1>hi</h1>";
        let hash = hex::encode(Sha256::digest(bytes));
        assert!(!store.has_blob(&hash));
        assert!(matches!(store.put_blob(&hash, b"other bytes"), Err(ControlPlaneError::Invalid(_))));
        store.put_blob(&hash, bytes).expect("stores");
        assert_eq!(store.blob(&hash).expect("reads").as_deref(), Some(&bytes[..]));
        let mut manifest = Manifest::default();
        manifest.files.insert("/index.html".into(), nimbus_pages::site::File { hash: hash.clone(), size: 11 });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
        let mhash = hex::encode(Sha256::digest(&manifest_bytes));
        store.put_blob(&mhash, &manifest_bytes).expect("stores");
        let request = |branch: Option<&str>| CreateDeployment {
            manifest: serde_json::Value::Null,
            branch: branch.map(String::from),
            commit_hash: None,
            commit_message: Some("m".into()),
            functions: None,
        };
        let (first, ..) =
            store.add_deployment("site", "aaaa0001", &request(None), &manifest, &mhash, None).expect("deploys");
        let (preview, ..) = store
            .add_deployment("site", "aaaa0002", &request(Some("fix/api")), &manifest, &mhash, Some("w"))
            .expect("deploys");
        assert_eq!(preview.alias, "fix-api");
        assert!(first.production && !preview.production);
        let (second, ..) =
            store.add_deployment("site", "aaaa0003", &request(None), &manifest, &mhash, None).expect("deploys");
        assert_eq!(store.project_workers("site").expect("reads"), ["w"]);
        assert_eq!(store.project("site").expect("reads").production.as_deref(), Some(second.id.as_str()));
        // Rollback: the production deployment before the current one, never a preview.
        assert_eq!(store.rollback_pages("site", None).expect("rolls back").0, first.id);
        assert!(matches!(store.rollback_pages("site", Some(&preview.id)), Err(ControlPlaneError::NotFound(_))));
        let conn = store.conn().expect("conn");
        let message = project_message(&conn, "site").expect("reads").expect("exists");
        assert_eq!(message.production, first.id);
        assert_eq!(
            message.deployments.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [&first.id, &preview.id, &second.id]
        );
        drop(conn);
        // Unreferenced blobs go once old enough; referenced ones and young ones stay.
        let orphan = hex::encode(Sha256::digest(b"orphan"));
        store.put_blob(&orphan, b"orphan").expect("stores");
        assert_eq!(store.collect_blobs(std::time::Duration::from_secs(3600)).expect("collects"), 0, "too young");
        assert_eq!(store.collect_blobs(std::time::Duration::ZERO).expect("collects"), 1);
        assert!(!store.has_blob(&orphan) && store.has_blob(&hash) && store.has_blob(&mhash));
        store.delete_project("site").expect("deletes");
        assert!(matches!(store.project("site"), Err(ControlPlaneError::NotFound(_))));
    }
}
