//! One deployment as the nodes serve it: its [`Manifest`] (every file's path, hash and size,
//! and the text of its rules files) and [`Site::resolve`], the answer to a request before any
//! byte is read.
//!
//! The manifest is what the CLI sends and the control plane stores (as a content-addressed
//! blob, like the files). [`Site::new`] checks it: Cloudflare's limits, each error naming the
//! file, and the rules parsed with their file and line. The control plane calls it at deploy,
//! so the nodes never see a manifest that does not check.

use super::headers::{self, Headers};
use super::redirects::{self, Action, Redirects};
use super::routes::{self, Routes};
use super::{assets, RuleError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most files one deployment holds (Cloudflare's limit).
pub const MAX_FILES: usize = 20_000;
/// The largest file (Cloudflare: 25 MiB).
pub const MAX_FILE_BYTES: u64 = 25 * 1024 * 1024;
/// The longest path a file may have.
pub const MAX_PATH_BYTES: usize = 1024;

/// A deployment's files and rules, as the CLI reads them from the output directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Path (`/docs/index.html`, as the URL names it) → file. The rules files are not here.
    pub files: BTreeMap<String, File>,
    /// The text of `_redirects`, `_headers` and `_routes.json`, when the directory has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirects: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<String>,
}

/// One file: its content's SHA-256 (lowercase hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub hash: String,
    pub size: u64,
}

/// What is wrong with a deployment, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{count} files; a Pages deployment holds at most {MAX_FILES}")]
    TooManyFiles { count: usize },
    #[error("{path}: {size} bytes; a Pages file is at most 25 MiB")]
    FileTooLarge { path: String, size: u64 },
    #[error("{path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("{path}: {hash:?} is not a SHA-256 in lowercase hex")]
    BadHash { path: String, hash: String },
}

/// Whether `hash` is a SHA-256 in lowercase hex (what names a blob on disk: nothing else is
/// ever made into a file name).
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A branch's alias label, as Cloudflare makes it: lowercased, every run of other
/// characters one `-` (`fix/api` → `fix-api`), at most 28 bytes.
pub fn branch_slug(branch: &str) -> String {
    let mut slug = String::new();
    for c in branch.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    slug[..slug.len().min(28)].trim_end_matches('-').to_owned()
}

fn check_path(path: &str) -> Result<(), SiteError> {
    let bad = |reason| Err(SiteError::BadPath { path: path.to_owned(), reason });
    if !path.starts_with('/') || path.ends_with('/') {
        return bad("a file's path starts with / and names a file");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("a file's path is at most 1024 bytes");
    }
    if path.split('/').skip(1).any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return bad("a file's path has no empty, . or .. segment");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("a file's path has no control character or backslash");
    }
    Ok(())
}

/// A checked deployment with its rules parsed.
#[derive(Debug, Clone)]
pub struct Site {
    manifest: Manifest,
    redirects: Redirects,
    headers: Headers,
    routes: Option<Routes>,
}

/// What answers a request, before the node reads a byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A redirect, from `_redirects` or Cloudflare's clean-URL rules.
    Redirect { status: u16, location: String },
    /// The file at `path` (its hash and size from the manifest) with `status` (200, or 404
    /// for a `404.html`) and the headers `_headers` gives the request's path.
    Asset { path: String, file: File, status: u16, headers: Vec<(String, String)> },
    /// Nothing answers: a plain 404.
    NotFound,
}

impl Site {
    /// Checks `manifest` (limits, paths, hashes, rules) and parses its rules.
    pub fn new(manifest: Manifest) -> Result<Site, SiteError> {
        if manifest.files.len() > MAX_FILES {
            return Err(SiteError::TooManyFiles { count: manifest.files.len() });
        }
        for (path, file) in &manifest.files {
            check_path(path)?;
            if file.size > MAX_FILE_BYTES {
                return Err(SiteError::FileTooLarge { path: path.clone(), size: file.size });
            }
            if !is_hash(&file.hash) {
                return Err(SiteError::BadHash { path: path.clone(), hash: file.hash.clone() });
            }
        }
        let redirects = redirects::parse(manifest.redirects.as_deref().unwrap_or(""))?;
        let headers = headers::parse(manifest.headers.as_deref().unwrap_or(""))?;
        let routes = manifest.routes.as_deref().map(routes::parse).transpose()?;
        Ok(Site { manifest, redirects, headers, routes })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether `_routes.json` sends `path` to the Functions (`None` without the file: the
    /// Functions' own routes decide).
    pub fn runs_functions(&self, path: &str) -> Option<bool> {
        self.routes.as_ref().map(|r| r.runs_functions(path))
    }

    /// Answers `path` (decoded, starting with `/`) and the request's query: `_redirects`
    /// first (a 200 rewrite serves another path's asset under this URL), then the asset
    /// rules. `_headers` applies to what the request's path serves.
    pub fn resolve(&self, path: &str, query: Option<&str>) -> Resolved {
        let target = match self.redirects.apply(path, query) {
            Some(Action::Redirect { status, location }) => return Resolved::Redirect { status, location },
            // A rewrite serves the file it names (never a clean-URL redirect of it); one to
            // another site is not served (Cloudflare proxies only its own paths).
            Some(Action::Rewrite { path: rewritten }) if rewritten.starts_with('/') => {
                let target = rewritten.split(['?', '#']).next().unwrap_or("/").to_owned();
                let candidates =
                    [target.clone(), format!("{target}.html"), format!("{}/index.html", target.trim_end_matches('/'))];
                if let Some(file) = candidates.iter().find(|c| self.manifest.files.contains_key(c.as_str())) {
                    return self.asset(path, file, 200);
                }
                target
            }
            Some(Action::Rewrite { .. }) => return Resolved::NotFound,
            None => path.to_owned(),
        };
        match assets::lookup(&target, |p| self.manifest.files.contains_key(p)) {
            assets::Lookup::Redirect { location } => {
                let location = match query.filter(|q| !q.is_empty()) {
                    Some(query) => format!("{location}?{query}"),
                    None => location,
                };
                Resolved::Redirect { status: 308, location }
            }
            assets::Lookup::Serve { file, status } => self.asset(path, &file, status),
            assets::Lookup::NotFound => Resolved::NotFound,
        }
    }

    /// `file` answering the request for `path` (whose `_headers` apply).
    fn asset(&self, path: &str, file: &str, status: u16) -> Resolved {
        match self.manifest.files.get(file) {
            Some(entry) => {
                let mut headers = Vec::new();
                self.headers.apply(path, &mut headers);
                Resolved::Asset { path: file.to_owned(), file: entry.clone(), status, headers }
            }
            None => Resolved::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u8) -> File {
        File { hash: format!("{n:02x}").repeat(32), size: 10 }
    }

    fn site(paths: &[&str], redirects: &str, headers: &str) -> Site {
        let files = paths.iter().enumerate().map(|(n, p)| ((*p).to_owned(), file(n as u8))).collect();
        let manifest =
            Manifest { files, redirects: Some(redirects.into()), headers: Some(headers.into()), routes: None };
        Site::new(manifest).expect("checks")
    }

    #[test]
    fn redirects_come_first_then_rewrites_then_the_asset_rules() {
        let s = site(
            &["/index.html", "/about.html", "/app/index.html", "/404.html"],
            "/old /about 301\n/app/* /app/index.html 200\n",
            "/*\n  X-Frame-Options: DENY\n/about\n  ! X-Frame-Options\n",
        );
        assert_eq!(s.resolve("/old", Some("a=1")), Resolved::Redirect { status: 301, location: "/about?a=1".into() });
        assert_eq!(s.resolve("/about.html", None), Resolved::Redirect { status: 308, location: "/about".into() });
        let Resolved::Asset { path, status, headers, .. } = s.resolve("/app/deep/link", None) else { panic!() };
        assert_eq!((path.as_str(), status), ("/app/index.html", 200));
        assert_eq!(headers, [("x-frame-options".to_string(), "DENY".to_string())]);
        let Resolved::Asset { path, headers, .. } = s.resolve("/about", None) else { panic!() };
        assert_eq!(path, "/about.html");
        assert!(headers.is_empty(), "`! X-Frame-Options` removes it: {headers:?}");
        let Resolved::Asset { path, status, .. } = s.resolve("/missing", None) else { panic!() };
        assert_eq!((path.as_str(), status), ("/404.html", 404));
    }

    #[test]
    fn branch_slugs_are_cloudflares() {
        assert_eq!(branch_slug("fix/api"), "fix-api");
        assert_eq!(branch_slug("Feature/New_UI!"), "feature-new-ui");
        assert_eq!(branch_slug("--main--"), "main");
        assert_eq!(branch_slug("a-very-long-branch-name-that-goes-on-and-on").len(), 28);
        assert_eq!(branch_slug("///"), "");
    }

    #[test]
    fn a_bad_manifest_is_refused_naming_the_file() {
        let mut manifest = Manifest::default();
        manifest.files.insert("/big.bin".into(), File { hash: "ab".repeat(32), size: MAX_FILE_BYTES + 1 });
        let error = Site::new(manifest.clone()).expect_err("too large").to_string();
        assert!(error.starts_with("/big.bin: ") && error.contains("25 MiB"), "{error}");
        manifest.files.clear();
        manifest.files.insert("/a/../etc/passwd".into(), file(1));
        assert!(matches!(Site::new(manifest.clone()), Err(SiteError::BadPath { .. })));
        manifest.files.clear();
        manifest.files.insert("/a".into(), File { hash: "../../x".into(), size: 1 });
        assert!(matches!(Site::new(manifest.clone()), Err(SiteError::BadHash { .. })));
        manifest.files.clear();
        manifest.redirects = Some("/a\n".into());
        let error = Site::new(manifest).expect_err("bad rule").to_string();
        assert!(error.starts_with("_redirects:1:"), "{error}");
        let many =
            Manifest { files: (0..=MAX_FILES).map(|n| (format!("/{n}"), file(1))).collect(), ..Manifest::default() };
        assert!(matches!(Site::new(many), Err(SiteError::TooManyFiles { count }) if count == MAX_FILES + 1));
    }
}
