//! Pages on the edge: which deployment a host names, and its answer from this node's own
//! copy of the blobs. `PAGES.md` argues the design.
//!
//! Owns `<data_dir>/pages/blobs/<hash[..2]>/<hash>`, filled by the deploy watcher before a
//! project's new state is installed (each blob hash-checked, written to a temporary file,
//! fsynced, renamed), and the in-memory cache of hot files with their compressed forms.
//! Guarantees: a request reads only local files, so a site keeps serving without the
//! control plane; a host answers with a deployment only once all of its files are here; a
//! deployment's URL (`<id>.<project>.<suffix>`) serves the same bytes forever.
//! Must never: open a path built from anything but a checked hash.
//!
//! Hosts: `<project>.<suffix>` (production), `<id>.<project>.<suffix>` (one deployment),
//! `<branch>.<project>.<suffix>` (a branch's newest), and a project's custom domains
//! (production).
//!
//! Order of a request: `_redirects`, then the asset rules (`nimbus_pages::site`), then
//! `_headers` and the defaults Cloudflare sends; ETag / `If-None-Match`, gzip and brotli,
//! HEAD.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use nimbus_pages::blobs::{BlobDir, BlobError};
use nimbus_pages::site::{branch_slug, Manifest, Resolved, Site};
use nimbus_proto::deploy::PagesProject;
use nimbus_util::config::PagesConfig;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Compressing smaller bodies saves less than its headers cost.
const MIN_COMPRESS_BYTES: usize = 1024;

/// What can go wrong while a project's blobs are fetched and checked.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("blob {hash}: {message}")]
    Blob { hash: String, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("deployment {id} of {project}: {message}")]
    Manifest { project: String, id: String, message: String },
}

/// Every Pages project this node serves; cheap to clone.
#[derive(Clone)]
pub struct Pages {
    inner: Arc<Inner>,
}

struct Inner {
    /// `.pages.localhost`: with its leading dot, lowercase.
    suffix: String,
    blobs: BlobDir,
    projects: RwLock<HashMap<String, Arc<Project>>>,
    /// Custom domain → project.
    domains: RwLock<HashMap<String, String>>,
    cache: Mutex<Cache>,
    cache_file_bytes: u64,
}

/// A project's deployments, ready to serve.
struct Project {
    production: Option<Arc<Deployed>>,
    /// By deployment id, and by branch alias (the newest deployment of each branch).
    by_id: HashMap<String, Arc<Deployed>>,
    by_alias: HashMap<String, Arc<Deployed>>,
}

/// One deployment: its files and rules, its manifest's blob, and the worker its Functions
/// run as.
pub struct Deployed {
    site: Site,
    manifest_hash: String,
    worker: Option<String>,
}

/// A file's bytes and, made on first demand, its compressed forms.
struct Cached {
    bytes: Bytes,
    gzip: OnceLock<Bytes>,
    brotli: OnceLock<Bytes>,
}

/// Hot files, first in first out, bounded in bytes: each entry is charged what its caller
/// reserves for it (the file and room for its compressed forms).
#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Arc<Cached>, u64)>,
    order: VecDeque<String>,
    bytes: u64,
    limit: u64,
}

impl Cache {
    fn get(&self, hash: &str) -> Option<Arc<Cached>> {
        self.entries.get(hash).map(|(cached, _)| cached.clone())
    }

    fn insert(&mut self, hash: &str, cached: Arc<Cached>, charge: u64) {
        if charge > self.limit || self.entries.contains_key(hash) {
            return;
        }
        while self.bytes + charge > self.limit {
            let Some(old) = self.order.pop_front() else { break };
            if let Some((_, charged)) = self.entries.remove(&old) {
                self.bytes = self.bytes.saturating_sub(charged);
            }
        }
        self.entries.insert(hash.to_owned(), (cached, charge));
        self.order.push_back(hash.to_owned());
        self.bytes += charge;
    }
}

/// What a Pages host names ([`Pages::route`]).
pub enum Route {
    Deployment {
        deployed: Arc<Deployed>,
        preview: bool,
    },
    /// A Pages host no deployment answers on (the host, for the 404).
    Missing(String),
}

/// Which of a project's deployments a host names.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    project: std::borrow::Cow<'a, str>,
    /// `None`: production; else a deployment id or a branch alias.
    label: Option<&'a str>,
}

impl Pages {
    pub fn new(config: &PagesConfig, data_dir: &Path) -> Pages {
        let suffix = format!(".{}", config.host_suffix.trim_start_matches('.').to_ascii_lowercase());
        Pages {
            inner: Arc::new(Inner {
                suffix,
                blobs: BlobDir::new(data_dir.join("pages").join("blobs")),
                projects: RwLock::default(),
                domains: RwLock::default(),
                cache: Mutex::new(Cache { limit: config.cache_bytes, ..Cache::default() }),
                cache_file_bytes: config.cache_file_bytes,
            }),
        }
    }

    /// Whether `host` (as the request sent it, port and all) is a Pages host.
    pub fn owns(&self, host: &str) -> bool {
        self.target(&host_only(host)).is_some()
    }

    /// What a Pages host (as the request sent it) names, resolved once per request; `None`
    /// when it is not a Pages host.
    pub fn route(&self, host: &str) -> Option<Route> {
        let host = host_only(host);
        let target = self.target(&host)?;
        let projects = self.inner.projects.read().unwrap_or_else(|p| p.into_inner());
        let deployed = match (projects.get(target.project.as_ref()), target.label) {
            (Some(p), None) => p.production.clone(),
            (Some(p), Some(label)) => p.by_id.get(label).or_else(|| p.by_alias.get(label)).cloned(),
            (None, _) => None,
        };
        Some(match deployed {
            Some(deployed) => Route::Deployment { deployed, preview: target.label.is_some() },
            None => Route::Missing(host.into_owned()),
        })
    }

    fn target<'a>(&self, host: &'a str) -> Option<Target<'a>> {
        let Some(rest) = host.strip_suffix(self.inner.suffix.as_str()) else {
            // A custom domain: its project's production.
            let domains = self.inner.domains.read().unwrap_or_else(|p| p.into_inner());
            return domains.get(host).map(|project| Target { project: project.clone().into(), label: None });
        };
        match rest.split_once('.') {
            None if !rest.is_empty() => Some(Target { project: rest.into(), label: None }),
            Some((label, project)) if !label.is_empty() && !project.is_empty() && !project.contains('.') => {
                Some(Target { project: project.into(), label: Some(label) })
            }
            _ => None,
        }
    }

    /// Whether the blob `hash` is on this node.
    pub fn has_blob(&self, hash: &str) -> bool {
        self.inner.blobs.has(hash)
    }

    /// Stores `bytes` as the blob `hash`, refusing bytes of another hash.
    pub fn store_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), PagesError> {
        self.inner.blobs.put(hash, bytes).map_err(|e| match e {
            BlobError::Io { context, source } => PagesError::Io { context, source },
            other => PagesError::Blob { hash: hash.to_owned(), message: other.to_string() },
        })
    }

    /// Deletes the blobs no installed deployment references (manifest or file) and older
    /// than `grace` (a sync in flight fetches files before it installs); how many went.
    pub fn collect_blobs(&self, grace: std::time::Duration) -> usize {
        let referenced: std::collections::HashSet<String> = {
            let projects = self.inner.projects.read().unwrap_or_else(|p| p.into_inner());
            projects
                .values()
                .flat_map(|p| p.by_id.values())
                .flat_map(|d| {
                    let files = d.site.manifest().files.values().map(|f| f.hash.clone());
                    std::iter::once(d.manifest_hash.clone()).chain(files)
                })
                .collect()
        };
        self.inner.blobs.sweep(&referenced, grace)
    }

    /// Collects unreferenced blobs every ten minutes, until `shutdown` (see
    /// [`Pages::collect_blobs`]).
    pub async fn collect_blobs_forever(self, shutdown: tokio_util::sync::CancellationToken) {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
        const GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            let pages = self.clone();
            match tokio::task::spawn_blocking(move || pages.collect_blobs(GRACE)).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "Pages blobs no deployment references were deleted"),
                Err(e) => tracing::warn!("collecting Pages blobs: {e}"),
            }
        }
    }

    /// The manifest of a deployment, from its local blob.
    pub fn manifest(&self, project: &str, id: &str, hash: &str) -> Result<Manifest, PagesError> {
        let manifest_error = |message: String| PagesError::Manifest { project: project.into(), id: id.into(), message };
        if !self.has_blob(hash) {
            return Err(manifest_error(format!("its manifest {hash} is not on this node")));
        }
        let bytes = match self.inner.blobs.get(hash) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(manifest_error(format!("its manifest {hash} is not on this node"))),
            Err(e) => return Err(manifest_error(e.to_string())),
        };
        serde_json::from_slice(&bytes).map_err(|e| manifest_error(format!("its manifest does not parse: {e}")))
    }

    /// Serves `project` as the message describes it. Every manifest and file blob must be
    /// on this node already (the watcher fetched them).
    pub fn install(&self, project: &PagesProject) -> Result<(), PagesError> {
        let mut by_id = HashMap::new();
        let mut by_alias = HashMap::new();
        for deployment in &project.deployments {
            let manifest = self.manifest(&project.name, &deployment.id, &deployment.manifest_hash)?;
            let site = Site::new(manifest).map_err(|e| PagesError::Manifest {
                project: project.name.clone(),
                id: deployment.id.clone(),
                message: e.to_string(),
            })?;
            if let Some((path, file)) = site.manifest().files.iter().find(|(_, f)| !self.has_blob(&f.hash)) {
                return Err(PagesError::Blob {
                    hash: file.hash.clone(),
                    message: format!("{path} is not on this node"),
                });
            }
            let worker = Some(deployment.worker.clone()).filter(|w| !w.is_empty());
            let deployed = Arc::new(Deployed { site, manifest_hash: deployment.manifest_hash.clone(), worker });
            by_id.insert(deployment.id.clone(), deployed.clone());
            // Oldest first: the last of a branch is its newest.
            by_alias.insert(branch_slug(&deployment.branch), deployed);
        }
        let production = by_id.get(&project.production).cloned();
        let serving = Arc::new(Project { production, by_id, by_alias });
        self.inner.projects.write().unwrap_or_else(|p| p.into_inner()).insert(project.name.clone(), serving);
        let mut domains = self.inner.domains.write().unwrap_or_else(|p| p.into_inner());
        domains.retain(|_, owner| *owner != project.name);
        for domain in &project.domains {
            domains.insert(domain.to_ascii_lowercase(), project.name.clone());
        }
        tracing::info!(project = %project.name, deployments = project.deployments.len(), "Pages project installed");
        Ok(())
    }

    pub fn remove(&self, project: &str) {
        self.inner.projects.write().unwrap_or_else(|p| p.into_inner()).remove(project);
        self.inner.domains.write().unwrap_or_else(|p| p.into_inner()).retain(|_, owner| owner != project);
    }

    /// The projects this node serves.
    pub fn projects(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.inner.projects.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }

    /// Answers a request for the Pages host `route` came from: its Functions when
    /// `_routes.json` sends the path there, else its assets.
    pub async fn serve(&self, route: Route, req: Request<Body>, runtime: &nimbus_runtime::Runtime) -> Response {
        let (deployed, preview) = match route {
            Route::Deployment { deployed, preview } => (deployed, preview),
            Route::Missing(host) => {
                return plain(StatusCode::NOT_FOUND, &format!("no Pages deployment answers on {host}\n"));
            }
        };
        if let Some(worker) = &deployed.worker {
            let path = percent_encoding::percent_decode_str(req.uri().path()).decode_utf8_lossy();
            if deployed.site.runs_functions(&path) == Some(true) {
                return match runtime.worker(worker) {
                    Some(worker) => {
                        let response = match worker.handle(req).await {
                            Ok(response) => response.map(Body::new),
                            Err(e) => crate::http::error_response(&e),
                        };
                        worker.record_status(response.status().as_u16());
                        response
                    }
                    None => {
                        plain(StatusCode::SERVICE_UNAVAILABLE, "this deployment's Functions are not on this node yet\n")
                    }
                };
            }
        }
        // The body is never read; the parts are what an asset response depends on.
        let (parts, _) = req.into_parts();
        self.answer(&deployed.site, &parts.method, &parts.uri, &parts.headers, preview).await
    }

    /// What the site's assets answer (`_redirects`, the asset rules, `_headers`).
    async fn answer(
        &self,
        site: &Site,
        method: &Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        preview: bool,
    ) -> Response {
        let head = method == Method::HEAD;
        if method != Method::GET && !head {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
        match site.resolve(&path, uri.query()) {
            Resolved::Redirect { status, location } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
                let mut response = status.into_response();
                if let Ok(location) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response
            }
            Resolved::NotFound => plain(StatusCode::NOT_FOUND, "Not Found\n"),
            Resolved::Asset { path: file_path, file, status, headers: rule_headers } => {
                self.asset(headers, &file_path, &file.hash, status, rule_headers, preview, head).await
            }
        }
    }

    /// The deployment whose Functions run as `worker`.
    fn deployed_of(&self, worker: &str) -> Option<Arc<Deployed>> {
        let projects = self.inner.projects.read().unwrap_or_else(|p| p.into_inner());
        projects.values().flat_map(|p| p.by_id.values()).find(|d| d.worker.as_deref() == Some(worker)).cloned()
    }

    #[allow(clippy::too_many_arguments)]
    async fn asset(
        &self,
        request_headers: &http::HeaderMap,
        file_path: &str,
        hash: &str,
        status: u16,
        rule_headers: Vec<(String, String)>,
        preview: bool,
        head: bool,
    ) -> Response {
        let content_type = nimbus_pages::assets::content_type(file_path);
        let encoding = if nimbus_pages::assets::compressible(content_type) {
            preferred_encoding(request_headers.get(header::ACCEPT_ENCODING))
        } else {
            Encoding::Identity
        };
        let etag = match encoding {
            Encoding::Identity => format!("\"{hash}\""),
            _ => format!("W/\"{hash}\""),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let not_modified = status == StatusCode::OK
            && request_headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| etag_matches(v, hash));
        let mut response = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let cached = match self.read(hash).await {
                Ok(cached) => cached,
                Err(e) => {
                    tracing::error!(%hash, "a Pages file could not be read: {e}");
                    return plain(StatusCode::INTERNAL_SERVER_ERROR, "this file could not be read\n");
                }
            };
            let (body, encoding) = match encoding {
                _ if cached.bytes.len() < MIN_COMPRESS_BYTES => (cached.bytes.clone(), Encoding::Identity),
                Encoding::Brotli => (cached.brotli.get_or_init(|| brotli_of(&cached.bytes)).clone(), encoding),
                Encoding::Gzip => (cached.gzip.get_or_init(|| gzip_of(&cached.bytes)).clone(), encoding),
                Encoding::Identity => (cached.bytes.clone(), encoding),
            };
            let length = body.len();
            let mut response = if head { Response::new(Body::empty()) } else { Response::new(Body::from(body)) };
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            if let Some(value) = encoding.header() {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
            }
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, etag);
        }
        if nimbus_pages::assets::compressible(content_type) {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        for (name, value) in DEFAULT_HEADERS {
            headers.insert(name, value);
        }
        if preview {
            headers.insert(X_ROBOTS_TAG, HeaderValue::from_static("noindex"));
        }
        for (name, value) in rule_headers {
            if let (Ok(name), Ok(value)) =
                (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
            {
                headers.insert(name, value);
            }
        }
        response
    }

    /// A file's bytes: from the cache, or read from disk (and cached when small).
    async fn read(&self, hash: &str) -> Result<Arc<Cached>, std::io::Error> {
        if let Some(cached) = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner()).get(hash) {
            return Ok(cached);
        }
        let path = self.inner.blobs.file(hash).ok_or_else(|| std::io::Error::other("not a blob name"))?;
        let bytes = Bytes::from(tokio::fs::read(path).await?);
        let size = bytes.len() as u64;
        let cached = Arc::new(Cached { bytes, gzip: OnceLock::new(), brotli: OnceLock::new() });
        if size <= self.inner.cache_file_bytes {
            // Room for the compressed forms too: they are at most about the size of the file.
            self.inner.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(hash, cached.clone(), size * 2);
        }
        Ok(cached)
    }
}

/// `env.ASSETS.fetch` of a Functions worker: its own deployment's assets, as the edge
/// serves them (no other project's, whatever the request names).
impl nimbus_wasm::LocalService for Pages {
    fn serve(
        &self,
        worker: &str,
        request: http::Request<Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = http::Response<Bytes>> + Send>> {
        let pages = self.clone();
        let deployed = self.deployed_of(worker);
        Box::pin(async move {
            let Some(deployed) = deployed else {
                let body = Bytes::from_static(b"env.ASSETS is for Pages Functions\n");
                return http::Response::builder().status(StatusCode::NOT_FOUND).body(body).unwrap_or_default();
            };
            let (parts, _) = request.into_parts();
            let response = pages.answer(&deployed.site, &parts.method, &parts.uri, &parts.headers, false).await;
            let (parts, body) = response.into_parts();
            // Bodies here are whole files already in memory.
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            http::Response::from_parts(parts, bytes)
        })
    }
}

/// The headers Cloudflare Pages sends with every asset.
const DEFAULT_HEADERS: [(header::HeaderName, HeaderValue); 4] = [
    (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
    (header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin")),
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=0, must-revalidate")),
];
const X_ROBOTS_TAG: header::HeaderName = header::HeaderName::from_static("x-robots-tag");

/// The host without its port or trailing dot, lowercased (borrowed when it already is).
fn host_only(host: &str) -> std::borrow::Cow<'_, str> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.to_owned()).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }
}

/// Brotli when the client accepts it, else gzip, else none (`q=0` refuses).
fn preferred_encoding(accept: Option<&HeaderValue>) -> Encoding {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else { return Encoding::Identity };
    let accepts = |wanted: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused =
                parts.any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
            name.eq_ignore_ascii_case(wanted) && !refused
        })
    };
    if accepts("br") {
        Encoding::Brotli
    } else if accepts("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// Whether an `If-None-Match` value names this file (weak comparison, `*` matches).
fn etag_matches(value: &str, hash: &str) -> bool {
    value.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == hash
    })
}

fn gzip_of(bytes: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 3), flate2::Compression::new(6));
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    Bytes::from(encoder.finish().unwrap_or_default())
}

fn brotli_of(bytes: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len() / 3);
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        let _ = writer.write_all(bytes);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Pages {
        Pages::new(&PagesConfig::default(), Path::new("/nonexistent"))
    }

    #[test]
    fn hosts_name_production_a_deployment_or_a_branch() {
        let pages = pages();
        assert_eq!(pages.target("site.pages.localhost"), Some(Target { project: "site".into(), label: None }));
        assert_eq!(
            pages.target("fix-api.site.pages.localhost"),
            Some(Target { project: "site".into(), label: Some("fix-api") })
        );
        assert_eq!(pages.target("a.b.site.pages.localhost"), None);
        assert_eq!(pages.target("pages.localhost"), None);
        assert_eq!(pages.target("site.workers.localhost"), None);
        assert!(pages.owns("Site.Pages.Localhost:8080"));
    }

    #[test]
    fn encodings_and_etags() {
        let accept = |v: &'static str| preferred_encoding(Some(&HeaderValue::from_static(v)));
        assert_eq!(accept("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(accept("gzip"), Encoding::Gzip);
        assert_eq!(accept("br;q=0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(accept("identity"), Encoding::Identity);
        assert!(etag_matches("W/\"abc\"", "abc") && etag_matches("\"x\", \"abc\"", "abc") && etag_matches("*", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
        use std::io::Read;
        let text = "hello pages ".repeat(200);
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&gzip_of(text.as_bytes())[..]).read_to_string(&mut unzipped).expect("gunzips");
        assert_eq!(unzipped, text);
        let mut unbrotlied = String::new();
        brotli::Decompressor::new(&brotli_of(text.as_bytes())[..], 4096)
            .read_to_string(&mut unbrotlied)
            .expect("decodes");
        assert_eq!(unbrotlied, text);
    }

    #[test]
    fn collection_keeps_what_an_installed_deployment_references() {
        use sha2::Digest;
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = Pages::new(&PagesConfig::default(), dir.path());
        let hash = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
        let page = b"<p>kept</p>".to_vec();
        let mut manifest = Manifest::default();
        manifest.files.insert("/index.html".into(), nimbus_pages::site::File { hash: hash(&page), size: 11 });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        for bytes in [&page, &manifest, &b"stale"[..].to_vec()] {
            pages.store_blob(&hash(bytes), bytes).expect("stores");
        }
        let deployment = nimbus_proto::deploy::PagesDeployment {
            id: "aaaa0001".into(),
            branch: "main".into(),
            manifest_hash: hash(&manifest),
            worker: String::new(),
        };
        let project = PagesProject {
            name: "site".into(),
            production_branch: "main".into(),
            production: "aaaa0001".into(),
            deployments: vec![deployment],
            domains: Vec::new(),
        };
        pages.install(&project).expect("installs");
        assert_eq!(pages.collect_blobs(std::time::Duration::from_secs(3600)), 0, "too young");
        assert_eq!(pages.collect_blobs(std::time::Duration::ZERO), 1);
        assert!(pages.has_blob(&hash(&page)) && pages.has_blob(&hash(&manifest)) && !pages.has_blob(&hash(b"stale")));
        pages.remove("site");
        assert_eq!(pages.collect_blobs(std::time::Duration::ZERO), 2, "a removed project's blobs go");
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let mut cache = Cache { limit: 100, ..Cache::default() };
        let entry = |n: usize| {
            Arc::new(Cached { bytes: Bytes::from(vec![0; n]), gzip: OnceLock::new(), brotli: OnceLock::new() })
        };
        cache.insert("a", entry(40), 40);
        cache.insert("b", entry(40), 40);
        cache.insert("c", entry(40), 40);
        assert!(cache.get("a").is_none() && cache.get("c").is_some());
        assert!(cache.bytes <= 100);
        cache.insert("huge", entry(200), 200);
        assert!(cache.get("huge").is_none());
    }
}
